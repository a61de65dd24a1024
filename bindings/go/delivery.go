package wdpool

/*
#include "delivery.h"
*/
import "C"

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// Delivery is the pending reports of one async produce call. Wait reads
// them and frees the C handle; Close frees it without waiting; a Delivery
// dropped without either is freed by the garbage collector (Deliveries are
// allocated in blocks of 32: the handle is freed once none of its block is
// reachable any more).
type Delivery struct {
	mu     sync.Mutex
	handle *atomic.Uintptr // the wdpool_delivery; 0 once freed
	live   *atomic.Int64   // its shard of the count of live handles
	topics []string        // a produce-many's topics (nil for one message)
	first  DeliveryReport  // report 0 (Topic set from the start)
	rest   []DeliveryReport
	err    error
	done   bool            // every report read, handle freed
	waiter *deliveryWaiter // the goroutine waiting in C for a Wait with a cancellable context
}

// The C delivery handles not yet freed are counted (for tests) in shards,
// one per block of Deliveries: a single counter would be a cache line that
// every ProduceAsync and Wait of every core fights over (it cost a fifth
// of an offline ProduceAsync + Wait on two cores).
type liveShard struct {
	n atomic.Int64
	_ [56]byte
}

var (
	liveShards [16]liveShard
	nextShard  atomic.Uint32
)

// liveDeliveries is how many C delivery handles are not freed yet.
func liveDeliveries() int64 {
	var n int64
	for i := range liveShards {
		n += liveShards[i].n.Load()
	}
	return n
}

func freeDelivery(h uintptr, live *atomic.Int64) {
	live.Add(-1)
	C.wdpool_go_delivery_free(C.uintptr_t(h))
}

// Deliveries come from blocks of deliveryBlockSize, with one garbage
// collector cleanup per block instead of one per Delivery (a cleanup is a
// record taken and dropped under a lock of the runtime shared by every
// goroutine). The handles live outside the block, where the cleanup (which
// must not keep the block reachable) finds them.
const deliveryBlockSize = 32

type deliveryBlock struct {
	items   [deliveryBlockSize]Delivery
	handles *blockHandles
	used    int
}

type blockHandles struct {
	h    [deliveryBlockSize]atomic.Uintptr
	live *atomic.Int64 // the block's shard of the count
}

// blocks holds blocks with unused Deliveries (sync.Pool: one per P, no lock).
var blocks sync.Pool

func freeBlock(hs *blockHandles) {
	for i := range hs.h {
		if h := hs.h[i].Swap(0); h != 0 {
			freeDelivery(h, hs.live)
		}
	}
}

func newDelivery(h uintptr, topic string, topics []string) *Delivery {
	b, _ := blocks.Get().(*deliveryBlock)
	if b == nil {
		shard := &liveShards[nextShard.Add(1)%uint32(len(liveShards))].n
		b = &deliveryBlock{handles: &blockHandles{live: shard}}
		runtime.AddCleanup(b, freeBlock, b.handles)
	}
	i := b.used
	b.used++
	if b.used < deliveryBlockSize {
		blocks.Put(b)
	}
	d := &b.items[i]
	d.live = b.handles.live
	d.live.Add(1)
	d.handle = &b.handles.h[i]
	d.handle.Store(h)
	d.topics = topics
	d.first = DeliveryReport{Topic: topic, Partition: -1, Offset: -1}
	return d
}

// Count is how many messages the Delivery covers.
func (d *Delivery) Count() int {
	if d.topics != nil {
		return len(d.topics)
	}
	return 1
}

// deliveryWaiter is a goroutine waiting in C for the reports of one
// Delivery, on behalf of Waits whose context can be cancelled: they wait
// for it or for their context, and a Wait that gives up leaves it to end
// by itself (every report in, or its timeout).
type deliveryWaiter struct {
	done    chan struct{}
	closed  chan struct{} // closed by Delivery.Close: the Waits stop waiting for it
	timeout int64         // the timeout it was given (-1: max_wait_timeout)
	err     error         // once done: nil (every report is in), DELIVERY_TIMEOUT or STALE_HANDLE
}

// waitDelivery waits in C; nil when every report is in (failed or not).
func waitDelivery(h uintptr, timeout int64) error {
	r := C.wdpool_go_delivery_wait(C.uintptr_t(h), cTimeout(timeout))
	if err := takeError(r.rc, r.err); err != nil && !isCode(err, ResultKafka) {
		return err
	}
	return nil
}

func isCode(err error, code Result) bool {
	e, ok := err.(*Error)
	return ok && e.Code == code
}

// take reads every report and frees the handle when they are all in
// (returning 0 and the outcome); else it returns how many are missing.
// d.mu is held.
func (d *Delivery) take(h uintptr) (pending int, err error) {
	n := d.Count()
	var rest []C.wdpool_go_report
	var restPtr *C.wdpool_go_report
	if n > 1 {
		rest = make([]C.wdpool_go_report, n-1)
		restPtr = &rest[0]
	}
	r := C.wdpool_go_delivery_take(C.uintptr_t(h), restPtr, C.size_t(n))
	if r.rc == C.WDPOOL_DELIVERY_TIMEOUT {
		return int(r.pending), nil
	}
	if r.rc != C.WDPOOL_OK && r.rc != C.WDPOOL_KAFKA {
		return 0, &Error{Code: Result(r.rc), Message: "delivery closed"}
	}
	err = takeError(r.rc, r.err)
	// Every report is in and C freed the handle.
	d.handle.Store(0)
	d.live.Add(-1)
	d.first = reportFromC(&r.first, d.first.Topic)
	if n > 1 {
		d.rest = make([]DeliveryReport, n-1)
		for i := range rest {
			d.rest[i] = reportFromC(&rest[i], d.topics[i+1])
		}
	}
	d.err, d.done = err, true
	return 0, err
}

// Wait waits for every report, up to ctx's deadline (else the producer's
// max_wait_timeout). It returns nil when all were delivered, the first
// failure (a *Error wrapping a *KafkaError) otherwise, or, when reports
// are still missing, a DELIVERY_TIMEOUT error (wrapping
// context.DeadlineExceeded when ctx's deadline came) or ctx.Err() as soon
// as ctx is cancelled; Wait may then be called again. Once all reports are
// in, it frees the C handle; later calls return the same result.
func (d *Delivery) Wait(ctx context.Context) error {
	var started time.Time // read only when a report is missing (a clock read costs)
	for {
		d.mu.Lock()
		if d.done {
			err := d.err
			d.mu.Unlock()
			return err
		}
		h := d.handle.Load()
		if h == 0 {
			d.mu.Unlock()
			return &Error{Code: ResultStaleHandle, Message: "delivery closed"}
		}
		pending, err := d.take(h)
		if pending == 0 {
			d.mu.Unlock()
			return err
		}
		if started.IsZero() {
			started = time.Now()
		}
		if deadlinePassed(ctx) {
			n := d.Count()
			d.mu.Unlock()
			return missing(ctx, pending, n, started)
		}
		if ctx.Done() == nil {
			// Nothing can cancel ctx: wait here.
			d.mu.Unlock()
			if err := waitDelivery(h, timeoutOf(ctx)); err != nil {
				return err
			}
			continue
		}
		w := d.waiter
		if w == nil {
			w = &deliveryWaiter{done: make(chan struct{}), closed: make(chan struct{}), timeout: timeoutOf(ctx)}
			callsWaiting.Add(1)
			go func() { // holds the handle's value only: d may be collected meanwhile
				w.err = waitDelivery(h, w.timeout)
				callsWaiting.Add(-1)
				close(w.done)
			}()
			d.waiter = w
		}
		d.mu.Unlock()
		select {
		case <-w.done:
		case <-w.closed:
			continue // Close freed the handle: the look finds it gone
		case <-ctx.Done():
			if !isDeadline(ctx) {
				return ctx.Err() // cancelled
			}
			continue // the deadline: one last look
		}
		d.mu.Lock()
		if d.waiter == w {
			d.waiter = nil
		}
		d.mu.Unlock()
		if w.err == nil {
			continue
		}
		if !isCode(w.err, ResultDeliveryTimeout) {
			return w.err // STALE_HANDLE: closed meanwhile
		}
		// Its timeout was up. Ours too, unless it had a shorter one.
		if _, ok := ctx.Deadline(); !ok && w.timeout < 0 {
			return w.err
		}
	}
}

// isDeadline: ctx ended because of its deadline.
func isDeadline(ctx context.Context) bool { return ctx.Err() == context.DeadlineExceeded }

// missing is Wait's error when ctx ended with reports still missing.
func missing(ctx context.Context, pending, count int, started time.Time) error {
	err := ctxErr(ctx)
	if err == context.DeadlineExceeded {
		e := &Error{Code: ResultDeliveryTimeout, Message: fmt.Sprintf("%d of %d messages have no delivery report after %d ms",
			pending, count, time.Since(started).Milliseconds())}
		return fmt.Errorf("%w (%w)", e, err)
	}
	return err
}

// Reports returns the reports read by a successful or failed Wait (nil
// before).
func (d *Delivery) Reports() []DeliveryReport {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.done {
		return nil
	}
	return append([]DeliveryReport{d.first}, d.rest...)
}

// Report is the first report (of a single-message ProduceAsync).
func (d *Delivery) Report() DeliveryReport {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.done {
		return DeliveryReport{Partition: -1, Offset: -1}
	}
	return d.first
}

// Close frees the C handle without waiting (the messages are still
// delivered). Harmless after Wait and when called twice.
func (d *Delivery) Close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if h := d.handle.Swap(0); h != 0 {
		freeDelivery(h, d.live)
		if d.waiter != nil {
			close(d.waiter.closed) // a Wait waiting for it returns now
			d.waiter = nil
		}
	}
}
