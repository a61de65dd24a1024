package wdpool

/*
#include <stdint.h>
#include <stdlib.h>
#include "wdpool.h"

// Declared in cgo.go's preamble, defined there.
wdpool_result wdpool_go_pool_new(size_t, uint64_t, uintptr_t, wdpool_pool **, wdpool_error **);
wdpool_result wdpool_go_setup(size_t, uint64_t, uintptr_t, wdpool_error **);

// The hot path of With: results come back by value, so no Go pointer is
// passed to C (nothing escapes to the heap, nothing for cgocheck to walk).
typedef struct { wdpool_result rc; wdpool_producer *producer; wdpool_error *err; } wdpool_go_checkout_result;
static inline wdpool_go_checkout_result wdpool_go_checkout(const wdpool_pool *pool, wdpool_owner owner, int64_t timeout_ms) {
  wdpool_go_checkout_result r = {WDPOOL_OK, NULL, NULL};
  r.rc = pool != NULL ? wdpool_pool_checkout(pool, owner, timeout_ms, &r.producer, &r.err)
                      : wdpool_checkout(owner, timeout_ms, &r.producer, &r.err);
  return r;
}
// Never waits: the owner's producer, an idle one, or none (producer NULL).
// The hottest calls take their C pointers as uintptr_t: a pointer-typed
// argument costs a cgocheck look per call (4 % of an empty With).
static inline wdpool_go_checkout_result wdpool_go_try_checkout(uintptr_t pool_addr, wdpool_owner owner) {
  const wdpool_pool *pool = (const wdpool_pool *)pool_addr;
  wdpool_go_checkout_result r = {WDPOOL_OK, NULL, NULL};
  r.rc = pool != NULL ? wdpool_pool_try_checkout(pool, owner, &r.producer, &r.err)
                      : wdpool_try_checkout(owner, &r.producer, &r.err);
  return r;
}
typedef struct { wdpool_result rc; wdpool_error *err; } wdpool_go_status;
static inline wdpool_go_status wdpool_go_checkin(uintptr_t producer) {
  wdpool_go_status s = {WDPOOL_OK, NULL};
  s.rc = wdpool_producer_checkin((wdpool_producer *)producer, &s.err);
  return s;
}
*/
import "C"

import (
	"context"
	"errors"
	"math"
	"runtime"
	"sync/atomic"
	"time"
	"unsafe"
)

// Options shape a pool. Zero values take WaterDrop's defaults: Size 5,
// Timeout 5 s. Timeout is how long a checkout waits for a free producer,
// creating it included; a context deadline passed to With shortens it.
type Options struct {
	Size    int
	Timeout time.Duration
	// NoWait makes a checkout fail at once when no producer is free
	// (a Timeout of 0 otherwise means the default).
	NoWait bool
}

func (o *Options) c() (C.size_t, C.uint64_t) {
	size, timeout := C.size_t(C.WDPOOL_DEFAULT_SIZE), C.uint64_t(C.WDPOOL_DEFAULT_TIMEOUT_MS)
	if o != nil {
		if o.Size > 0 {
			size = C.size_t(o.Size)
		} else if o.Size < 0 {
			size = 0 // refused by wdpool with INVALID_ARGUMENT
		}
		if o.Timeout > 0 {
			timeout = C.uint64_t((o.Timeout + time.Millisecond - 1) / time.Millisecond) // rounded up
		}
		if o.NoWait {
			timeout = 0
		}
	}
	return size, timeout
}

// ConfigureFunc configures the producer of one slot. index is the slot's
// zero-based index, stable across reloads and producer replacements (use
// it for transactional.id). An error fails New or Setup and is returned by
// it (errors.Is works). A panic is re-panicked by New or Setup, and
// runtime.Goexit (t.Fatal) ends the goroutine that called them, once the
// C call has returned: the function runs on a goroutine of its own while
// the C callback waits and applies its settings on the callback's thread,
// so nothing ever unwinds over wdpool's frames.
type ConfigureFunc func(config *Config, index int) error

// Config is one producer's configuration, valid only while the
// ConfigureFunc that got it runs (afterwards its setters return
// ErrStaleHandle).
type Config struct {
	ops      chan configOp
	finished chan struct{}
}

type configOp struct {
	apply func(*C.wdpool_config) error
	reply chan error
}

// do runs apply with the C config on the configure callback's thread.
func (c *Config) do(apply func(*C.wdpool_config) error) error {
	if c == nil {
		return &Error{Code: ResultNullParameter, Message: "nil Config"}
	}
	op := configOp{apply: apply, reply: make(chan error, 1)}
	select {
	case c.ops <- op:
		return <-op.reply
	case <-c.finished:
		return &Error{Code: ResultStaleHandle, Message: "config used after its configure function returned"}
	}
}

type configOutcome struct {
	err        error
	panicked   bool
	panicValue any
	goexit     bool
}

// run is the C callback's side: it starts the user's function on a
// goroutine and serves its setters on this thread until it ends.
func (st *configureState) run(cfg *C.wdpool_config, index int) C.int {
	c := &Config{ops: make(chan configOp), finished: make(chan struct{})}
	done := make(chan configOutcome, 1)
	go func() {
		completed := false
		defer func() {
			if completed {
				return
			}
			if r := recover(); r != nil {
				done <- configOutcome{panicked: true, panicValue: r}
			} else {
				done <- configOutcome{goexit: true}
			}
		}()
		err := st.fn(c, index)
		completed = true
		done <- configOutcome{err: err}
	}()
	for {
		select {
		case op := <-c.ops:
			op.reply <- op.apply(cfg)
		case out := <-done:
			close(c.finished)
			switch {
			case out.panicked:
				st.panicked, st.panicValue = true, out.panicValue
			case out.goexit:
				st.goexit = true
			case out.err != nil:
				st.err = out.err
			default:
				return C.WDPOOL_CB_OK
			}
			return 0
		}
	}
}

// SetKafka sets a librdkafka property, checked at once: an unknown key or
// bad value returns an error (ErrInvalidConfig) naming the key.
func (c *Config) SetKafka(key, value string) error {
	return c.do(func(h *C.wdpool_config) error {
		k, v := C.CString(key), C.CString(value)
		defer C.free(unsafe.Pointer(k))
		defer C.free(unsafe.Pointer(v))
		var cerr *C.wdpool_error
		return takeError(C.wdpool_config_set_kafka(h, k, v, &cerr), cerr)
	})
}

// SetKafkaMap sets several librdkafka properties (in no particular order).
func (c *Config) SetKafkaMap(props map[string]string) error {
	for k, v := range props {
		if err := c.SetKafka(k, v); err != nil {
			return err
		}
	}
	return nil
}

// SetDeliver is WaterDrop's deliver: false builds a producer that
// validates and acknowledges messages without contacting a broker.
func (c *Config) SetDeliver(deliver bool) error {
	return c.do(func(h *C.wdpool_config) error {
		var cerr *C.wdpool_error
		return takeError(C.wdpool_config_set_deliver(h, C.bool(deliver), &cerr), cerr)
	})
}

// SetMaxWaitTimeout is WaterDrop's max_wait_timeout (default 180 s).
func (c *Config) SetMaxWaitTimeout(d time.Duration) error {
	return c.do(func(h *C.wdpool_config) error {
		var cerr *C.wdpool_error
		return takeError(C.wdpool_config_set_max_wait_timeout(h, C.uint64_t(d.Milliseconds()), &cerr), cerr)
	})
}

// SetMaxPayloadSize is WaterDrop's max_payload_size (default 1000012).
func (c *Config) SetMaxPayloadSize(n int) error {
	return c.do(func(h *C.wdpool_config) error {
		var cerr *C.wdpool_error
		return takeError(C.wdpool_config_set_max_payload_size(h, C.size_t(n), &cerr), cerr)
	})
}

// SetID sets the producer's id (used in events and as client.id).
func (c *Config) SetID(id string) error {
	return c.do(func(h *C.wdpool_config) error {
		s := C.CString(id)
		defer C.free(unsafe.Pointer(s))
		var cerr *C.wdpool_error
		return takeError(C.wdpool_config_set_id(h, s, &cerr), cerr)
	})
}

type configureState struct {
	fn         ConfigureFunc
	err        error
	panicked   bool
	panicValue any
	goexit     bool
}

func (s *configureState) failed() bool { return s.err != nil || s.panicked || s.goexit }

// withConfigure runs call with a handle to configure (0 when nil), then
// deletes the handle, re-panics a panic of configure, and returns
// configure's own error in preference to wdpool's CALLBACK_FAILED.
func withConfigure(configure ConfigureFunc, call func(h C.uintptr_t) error) error {
	if configure == nil {
		return call(0)
	}
	st := &configureState{fn: configure}
	h := newHandle(st)
	err := call(C.uintptr_t(h))
	deleteHandle(h)
	if st.panicked {
		panic(st.panicValue)
	}
	if st.goexit {
		runtime.Goexit()
	}
	if st.err != nil {
		return st.err
	}
	return err
}

// Pool is a pool of Kafka producers. All its methods may be called from
// any goroutine. Close it when done; a Pool that becomes unreachable
// without Close is closed gracefully in the background.
type Pool struct {
	h       *C.wdpool_pool
	cleanup runtime.Cleanup
	closed  atomic.Bool
}

// New creates a pool of opts.Size producers (nil opts: the defaults),
// calling configure once per slot before it returns (nil: default
// producers, brokers from WDPOOL_BROKERS or 127.0.0.1:9092). Producers are
// created on first use.
func New(opts *Options, configure ConfigureFunc) (*Pool, error) {
	size, timeout := opts.c()
	var h *C.wdpool_pool
	err := withConfigure(configure, func(ud C.uintptr_t) error {
		var cerr *C.wdpool_error
		return takeError(C.wdpool_go_pool_new(size, timeout, ud, &h, &cerr), cerr)
	})
	if err != nil {
		return nil, err
	}
	p := &Pool{h: h}
	p.cleanup = runtime.AddCleanup(p, func(h *C.wdpool_pool) { C.wdpool_pool_free(h) }, h)
	return p, nil
}

// ID is the pool's process-unique id, as events report it.
func (p *Pool) ID() uint64 { return uint64(C.wdpool_pool_id(p.h)) }

// With checks out a producer, runs fn with it and returns the producer to
// the pool whatever fn did (returned, panicked or called runtime.Goexit).
// fn's error is returned unchanged; a panic is re-panicked once the
// producer is back.
//
// Owners: a With whose ctx came from p.Context() of an enclosing With (or
// Transaction) on the same owner gets that same producer, so nested calls
// on a pool of 1 never deadlock. A With with any other context is a fresh
// owner and waits for a free producer like any other goroutine.
//
// ctx's deadline bounds the wait for a producer (else the pool's Timeout).
// A ctx already done returns ctx.Err() at once; one cancelled while
// waiting makes With return ctx.Err() as soon as it is, without running
// fn (the checkout it leaves behind gives the producer it gets, if any,
// straight back).
func (p *Pool) With(ctx context.Context, fn func(*Producer) error) error {
	return run(ctx, p, false, fn)
}

// Transaction is With with fn as one transaction: committed when fn
// returns nil, rolled back when it returns ErrAbortTransaction (Transaction
// returns nil), another error (returned unchanged) or panics / calls
// runtime.Goexit (re-panicked after the rollback). A Transaction nested
// through p.Context() is part of the enclosing one.
//
// ctx: as With for the wait for a producer. When fn returns nil but ctx
// is done (cancelled, or its deadline passed), the transaction is rolled
// back and Transaction returns ctx.Err(), as database/sql does. A commit
// once begun cannot be abandoned half-way (librdkafka's commit has no
// cancellation): it is bounded by ctx's deadline (else the producer's
// max_wait_timeout), and a cancellation during it is not noticed:
// Transaction returns the commit's own outcome.
func (p *Pool) Transaction(ctx context.Context, fn func(*Producer) error) error {
	return run(ctx, p, true, fn)
}

// checkout checks a producer out of p, or of the global pool when p is
// nil, for owner, waiting up to ctx's deadline (else the pool's timeout)
// or until ctx is cancelled.
//
// A context nothing can cancel waits in one C call. Otherwise a producer
// free right now is taken in one C call that never waits, and only when
// none is the blocking checkout made on a goroutine of the package (await):
// a caller that gives up returns ctx.Err() at once, and the producer that
// checkout gets later (before the pool's timeout) goes straight back.
// checkoutYields is how many times a checkout that found no free producer
// yields its P (and looks again) before it waits in C.
const checkoutYields = 4

func checkout(ctx context.Context, p *Pool, owner uint64) (*C.wdpool_producer, error) {
	var h *C.wdpool_pool
	if p != nil {
		h = p.h
	}
	// A free producer (or the owner's own) in one call that never waits.
	// When none is free, yield the P a few times first: the goroutines
	// holding the producers may be runnable without a P (the other Ps held
	// by goroutines waiting in C), and a goroutine blocked in C gives its
	// P up only when sysmon takes it back.
	addr := C.uintptr_t(uintptr(unsafe.Pointer(h)))
	r := C.wdpool_go_try_checkout(addr, C.wdpool_owner(owner))
	for i := 0; i < checkoutYields && r.rc == C.WDPOOL_OK && r.producer == nil; i++ {
		runtime.Gosched()
		r = C.wdpool_go_try_checkout(addr, C.wdpool_owner(owner))
	}
	if r.rc != C.WDPOOL_OK || r.producer != nil {
		runtime.KeepAlive(p)
		return r.producer, takeError(r.rc, r.err)
	}
	if ctx.Done() == nil {
		r := C.wdpool_go_checkout(h, C.wdpool_owner(owner), cTimeout(timeoutOf(ctx)))
		runtime.KeepAlive(p)
		return r.producer, takeError(r.rc, r.err)
	}
	timeout := timeoutOf(ctx)
	r, err := await(ctx, func() C.wdpool_go_checkout_result {
		r := C.wdpool_go_checkout(h, C.wdpool_owner(owner), cTimeout(timeout))
		runtime.KeepAlive(p)
		return r
	}, func(r C.wdpool_go_checkout_result) {
		if takeError(r.rc, r.err) == nil {
			in := C.wdpool_go_checkin(addrOf(r.producer))
			takeError(in.rc, in.err)
		}
	})
	if err != nil {
		return nil, err
	}
	return r.producer, takeError(r.rc, r.err)
}

// CloseReport says what closing a pool did.
type CloseReport struct {
	Closed      int    // idle producers closed
	Undelivered uint64 // messages they did not deliver
	InUse       int    // producers still checked out (closed when they come back)
}

// Close closes the pool gracefully: idle producers flush (bounded by their
// max_wait_timeout) and close in parallel. An error says how many messages
// were not delivered. Closing twice is harmless.
func (p *Pool) Close() error {
	r, err := p.Shutdown(false)
	if err == nil && r.Undelivered > 0 {
		return &Error{Code: ResultDeliveryTimeout, Message: undeliveredMessage(r.Undelivered)}
	}
	return err
}

// Shutdown closes the pool, purging undelivered messages when force is
// true, and reports what it did.
func (p *Pool) Shutdown(force bool) (CloseReport, error) {
	var rep C.wdpool_close_report
	var cerr *C.wdpool_error
	err := takeError(C.wdpool_pool_close(p.h, C.bool(force), &rep, &cerr), cerr)
	runtime.KeepAlive(p)
	drainNow()
	return closeReport(&rep), err
}

func closeReport(r *C.wdpool_close_report) CloseReport {
	return CloseReport{Closed: int(r.closed), Undelivered: uint64(r.undelivered), InUse: int(r.in_use)}
}

func undeliveredMessage(n uint64) string {
	return "close: " + itoa(n) + " message(s) not delivered"
}

func itoa(n uint64) string {
	if n == 0 {
		return "0"
	}
	var b [20]byte
	i := len(b)
	for n > 0 {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
	}
	return string(b[i:])
}

// Reload closes idle producers (gracefully) to be recreated on demand;
// checked-out ones are replaced when they come back.
func (p *Pool) Reload() error {
	var cerr *C.wdpool_error
	err := takeError(C.wdpool_pool_reload(p.h, &cerr), cerr)
	runtime.KeepAlive(p)
	return err
}

// Stats is a snapshot of a pool.
type Stats struct {
	Size             int
	Created          int
	Idle             int
	InUse            int
	Creating         int
	Waiting          int
	CheckoutTimeouts uint64
	TotalWait        time.Duration
	Creations        uint64
	Replaced         uint64
	Closed           bool
}

// Available is how many producers a checkout could get now without
// waiting: idle ones plus slots not created yet.
func (s Stats) Available() int { return s.Size - s.InUse - s.Creating }

// Stats returns a snapshot of the pool; it never blocks.
func (p *Pool) Stats() (Stats, error) {
	var s C.wdpool_statistics
	var cerr *C.wdpool_error
	err := takeError(C.wdpool_pool_stats(p.h, &s, &cerr), cerr)
	runtime.KeepAlive(p)
	return statsFromC(&s), err
}

func statsFromC(s *C.wdpool_statistics) Stats {
	return Stats{
		Size: int(s.size), Created: int(s.created), Idle: int(s.idle), InUse: int(s.in_use),
		Creating: int(s.creating), Waiting: int(s.waiting), CheckoutTimeouts: uint64(s.checkout_timeouts),
		TotalWait: time.Duration(s.total_wait_us) * time.Microsecond, Creations: uint64(s.creations),
		Replaced: uint64(s.replaced), Closed: bool(s.closed),
	}
}

// ---- owners and the checkout / checkin cycle ----

type ownerKey struct{}

var lastOwner atomic.Uint64

// newOwner returns a token unique in the process, never
// WDPOOL_OWNER_THREAD (0) nor WDPOOL_OWNER_NONE (UINT64_MAX).
func newOwner() uint64 {
	for {
		o := lastOwner.Add(1)
		if o != 0 && o != math.MaxUint64 {
			return o
		}
	}
}

// ownerOf returns ctx's owner, or a new one; owned reports whether ctx
// already carries it.
func ownerOf(ctx context.Context) (owner uint64, owned bool) {
	if ctx != context.Background() { // the common case carries none: no look-up
		if o, ok := ctx.Value(ownerKey{}).(uint64); ok {
			return o, true
		}
	}
	return newOwner(), false
}

// addrOf passes a producer handle (C memory) to C as an integer.
func addrOf(h *C.wdpool_producer) C.uintptr_t { return C.uintptr_t(uintptr(unsafe.Pointer(h))) }

// rawCheckoutCheckin checks out and in n times with one owner and nothing
// else: what the C ABI alone costs (for the benchmarks).
func rawCheckoutCheckin(p *Pool, n int) error {
	owner := C.wdpool_owner(newOwner())
	for i := 0; i < n; i++ {
		var h *C.wdpool_producer
		if rc := C.wdpool_pool_checkout(p.h, owner, -1, &h, nil); rc != C.WDPOOL_OK {
			return &Error{Code: Result(rc)}
		}
		if rc := C.wdpool_producer_checkin(h, nil); rc != C.WDPOOL_OK {
			return &Error{Code: Result(rc)}
		}
	}
	runtime.KeepAlive(p)
	return nil
}

// timeoutOf turns ctx's deadline into a timeout_ms argument: -1 (the
// default) without a deadline, else the milliseconds left, rounded up.
func timeoutOf(ctx context.Context) int64 {
	d, ok := ctx.Deadline()
	if !ok {
		return C.WDPOOL_TIMEOUT_DEFAULT
	}
	left := time.Until(d)
	if left <= 0 {
		return 0
	}
	return int64((left + time.Millisecond - 1) / time.Millisecond)
}

// run is With and Transaction, on p or (nil) the global pool.
func run(ctx context.Context, p *Pool, txn bool, fn func(*Producer) error) (err error) {
	ctx, err = liveCtx(ctx)
	if err != nil {
		return err
	}
	owner, owned := ownerOf(ctx)
	h, err := checkout(ctx, p, owner)
	if err != nil {
		return err
	}
	prod := &Producer{h: h, parent: ctx, owner: owner, owned: owned}
	began := false
	completed := false
	var fnErr error
	defer func() {
		// Runs on return, panic and runtime.Goexit alike; a panic or a
		// Goexit goes on once this returns, with the producer back.
		var endErr, doneErr error
		if began {
			outcome := C.int(C.WDPOOL_TXN_COMMIT)
			timeout := timeoutOf(ctx)
			switch {
			case !completed:
				outcome = C.WDPOOL_TXN_EXIT
			case errors.Is(fnErr, ErrAbortTransaction):
				outcome = C.WDPOOL_TXN_ABORT
			case fnErr != nil:
				outcome = C.WDPOOL_TXN_FAIL
			default:
				if doneErr = ctxErr(ctx); doneErr != nil {
					outcome = C.WDPOOL_TXN_FAIL // ctx is done: roll back, never commit
				}
			}
			if outcome != C.WDPOOL_TXN_COMMIT {
				timeout = C.WDPOOL_TIMEOUT_DEFAULT // a rollback must happen whatever the deadline
			}
			var ended C.int
			var ecerr *C.wdpool_error
			endErr = takeError(C.wdpool_producer_end(h, outcome, cTimeout(timeout), &ended, &ecerr), ecerr)
		}
		in := C.wdpool_go_checkin(addrOf(h))
		checkinErr := takeError(in.rc, in.err)
		if !completed {
			return
		}
		switch {
		case txn && errors.Is(fnErr, ErrAbortTransaction):
			err = endErr
		case fnErr != nil:
			err = fnErr
		case doneErr != nil:
			err = doneErr
		case endErr != nil:
			err = endErr
		default:
			err = checkinErr
		}
	}()
	if txn {
		var bcerr *C.wdpool_error
		if err := takeError(C.wdpool_producer_begin(h, cTimeout(timeoutOf(ctx)), &bcerr), bcerr); err != nil {
			completed = true
			fnErr = err
			return err
		}
		began = true
	}
	fnErr = fn(prod)
	completed = true
	return fnErr
}

// liveCtx is ctx (context.Background for nil), or ctx.Err() when it is
// done already: how every call that checks out begins.
func liveCtx(ctx context.Context) (context.Context, error) {
	if ctx == nil {
		return context.Background(), nil
	}
	return ctx, ctx.Err()
}

// ---- the global pool ----

// Setup sets up the process-wide pool (WaterDrop's ConnectionPool.setup).
// A global pool set up before is closed gracefully once the new one is in
// place.
func Setup(opts *Options, configure ConfigureFunc) error {
	size, timeout := opts.c()
	return withConfigure(configure, func(ud C.uintptr_t) error {
		var cerr *C.wdpool_error
		return takeError(C.wdpool_go_setup(size, timeout, ud, &cerr), cerr)
	})
}

// With is Pool.With on the global pool (ErrNotSetUp before Setup).
func With(ctx context.Context, fn func(*Producer) error) error {
	return run(ctx, nil, false, fn)
}

// Transaction is Pool.Transaction on the global pool.
func Transaction(ctx context.Context, fn func(*Producer) error) error {
	return run(ctx, nil, true, fn)
}

// Close closes the global pool gracefully; harmless without one.
func Close() error {
	r, err := Shutdown(false)
	if err == nil && r.Undelivered > 0 {
		return &Error{Code: ResultDeliveryTimeout, Message: undeliveredMessage(r.Undelivered)}
	}
	return err
}

// Shutdown closes the global pool (force: purge) and reports what it did.
func Shutdown(force bool) (CloseReport, error) {
	var rep C.wdpool_close_report
	var cerr *C.wdpool_error
	err := takeError(C.wdpool_close(C.bool(force), &rep, &cerr), cerr)
	drainNow()
	return closeReport(&rep), err
}

// Reload reloads the global pool; a no-op without one.
func Reload() error {
	var cerr *C.wdpool_error
	return takeError(C.wdpool_reload(&cerr), cerr)
}

// GlobalStats is Pool.Stats of the global pool.
func GlobalStats() (Stats, error) {
	var s C.wdpool_statistics
	var cerr *C.wdpool_error
	err := takeError(C.wdpool_stats(&s, &cerr), cerr)
	return statsFromC(&s), err
}

// Active reports whether a global pool is set up and not closed.
func Active() bool { return bool(C.wdpool_active()) }
