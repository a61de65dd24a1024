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
	"unsafe"
)

// Delivery is the pending reports of one async produce call. Wait reads
// them; Close stops waiting for them; a Delivery dropped without either is
// released by the garbage collector. Deliveries are allocated in blocks of
// 32, each with an array of report slots in C that librdkafka's delivery
// callback writes a single message's report into (nothing is allocated in
// C per message); a produce-many's Delivery holds a C delivery handle
// instead. What a block holds in C is freed once none of its Deliveries is
// reachable any more.
//
// A Delivery is kept small and, in the common case, without a pointer
// that is not nil: a program keeps many of them pending, and the garbage
// collector follows every pointer of every one. A single message's
// Delivery finds its block (its report slots, its topic) from its slot
// index.
type Delivery struct {
	mu       sync.Mutex
	slot     int32              // a single message's slot (its index in the block); -1: a handle (more.handle)
	closed   bool               // Close was called (slot path)
	done     bool               // every report read (handle freed)
	ownTopic bool               // its topic is more.topic, not the block's
	rep      C.wdpool_go_report // report 0, once done
	err      error              // the outcome, once done
	more     *deliveryMore      // what few Deliveries need
}

// deliveryMore is the part of a Delivery that a single message's rarely
// needs: a produce-many's handle, topics and reports, and a waiter.
type deliveryMore struct {
	topic  string          // report 0's topic, when not the block's
	handle *atomic.Uintptr // a produce-many's wdpool_delivery; 0 once freed
	live   *atomic.Int64   // its shard of the count of live handles
	topics []string        // a produce-many's topics
	rest   []DeliveryReport
	waiter *deliveryWaiter // the goroutine waiting in C for a Wait with a cancellable context
}

func (d *Delivery) extra() *deliveryMore {
	if d.more == nil {
		d.more = &deliveryMore{}
	}
	return d.more
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

// liveSlotArrays is how many C report slot arrays are not freed yet.
var liveSlotArrays atomic.Int64

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
	items   [deliveryBlockSize]Delivery // first: a Delivery finds its block from its index
	handles *blockHandles
	topic   string // the topic of its first single message (most of a block's, usually)
	used    int
}

// block is the block of a single message's Delivery (d.slot >= 0).
func (d *Delivery) block() *deliveryBlock {
	return (*deliveryBlock)(unsafe.Add(unsafe.Pointer(d), -int(d.slot)*int(unsafe.Sizeof(Delivery{}))))
}

// topic is report 0's topic.
func (d *Delivery) topic() string {
	if d.ownTopic {
		return d.more.topic
	}
	return d.block().topic
}

type blockHandles struct {
	h     [deliveryBlockSize]atomic.Uintptr
	live  *atomic.Int64  // the block's shard of the count
	slots uintptr        // the block's wdpool_report_slots (0 until a slot is used)
	array unsafe.Pointer // its wdpool_report_slot array (C memory)
}

// blocks holds blocks with unused Deliveries (sync.Pool: one per P, no lock).
var blocks sync.Pool

func freeBlock(hs *blockHandles) {
	for i := range hs.h {
		if h := hs.h[i].Swap(0); h != 0 {
			freeDelivery(h, hs.live)
		}
	}
	if hs.slots != 0 {
		// Never blocks; messages in flight keep what they write into.
		C.wdpool_go_slots_free(C.uintptr_t(hs.slots))
		liveSlotArrays.Add(-1)
	}
}

// reserve takes the next unused Delivery of a block (with its report
// slots made first when slots is set), for a message to topic.
func reserve(slots bool, topic string) (*deliveryBlock, int, error) {
	b, _ := blocks.Get().(*deliveryBlock)
	if b == nil {
		shard := &liveShards[nextShard.Add(1)%uint32(len(liveShards))].n
		b = &deliveryBlock{handles: &blockHandles{live: shard}}
		runtime.AddCleanup(b, freeBlock, b.handles)
	}
	if slots && b.handles.slots == 0 {
		r := C.wdpool_go_slots_new(deliveryBlockSize)
		if err := takeError(r.rc, r.err); err != nil {
			blocks.Put(b)
			return nil, 0, err
		}
		b.handles.slots = uintptr(r.slots)
		b.handles.array = unsafe.Pointer(r.array)
		liveSlotArrays.Add(1)
	}
	i := b.used
	if i == 0 {
		b.topic = topic // before the block is shared again (blocks.Put)
	}
	d := &b.items[i]
	d.slot = -1
	if !slots || topic != b.topic {
		d.ownTopic = true
		d.more = &deliveryMore{topic: topic}
	}
	b.used++
	if b.used < deliveryBlockSize {
		blocks.Put(b)
	}
	return b, i, nil
}

// reserveSlot is the Delivery of one message to topic, to be produced
// into report slot d.slot of the block's slots (the caller does it).
func reserveSlot(topic string) (*Delivery, *blockHandles, error) {
	b, i, err := reserve(true, topic)
	if err != nil {
		return nil, nil, err
	}
	d := &b.items[i]
	d.slot = int32(i)
	return d, b.handles, nil
}

func newDelivery(h uintptr, topic string, topics []string) *Delivery {
	b, i, _ := reserve(false, topic) // never fails without slots
	d := &b.items[i]
	m := d.more
	m.live, m.handle, m.topics = b.handles.live, &b.handles.h[i], topics
	m.live.Add(1)
	m.handle.Store(h)
	return d
}

// Count is how many messages the Delivery covers.
func (d *Delivery) Count() int {
	if d.more != nil && d.more.topics != nil {
		return len(d.more.topics)
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

// target is what a Wait looks at and waits on: a delivery handle, or a
// report slot (slots set).
type target struct {
	h     uintptr        // wdpool_delivery
	slots uintptr        // wdpool_report_slots
	array unsafe.Pointer // its slots, readable in place
	slot  int32
}

// target of d (ok false once Close freed or dropped it). d.mu is held.
func (d *Delivery) target() (t target, ok bool) {
	if d.slot >= 0 {
		hs := d.block().handles
		return target{slots: hs.slots, array: hs.array, slot: d.slot}, !d.closed
	}
	h := d.more.handle.Load()
	return target{h: h}, h != 0
}

// armed reports whether t's slot holds a message (PENDING or DONE), not
// EMPTY: a refused message leaves its slot EMPTY.
func (t target) armed() bool {
	p := (*C.wdpool_report_slot)(unsafe.Add(t.array, uintptr(t.slot)*C.sizeof_wdpool_report_slot))
	return atomic.LoadUint32((*uint32)(unsafe.Pointer(&p.state))) != C.WDPOOL_SLOT_EMPTY
}

// wait waits in C; nil when every report is in (failed or not).
func (t target) wait(timeout int64) error {
	if t.slots != 0 {
		r := C.wdpool_go_slot_wait(C.uintptr_t(t.slots), C.size_t(t.slot), 0, cTimeout(timeout))
		if r.rc == C.WDPOOL_OK || r.rc == C.WDPOOL_KAFKA || r.rc == C.WDPOOL_FATAL {
			if r.err != nil {
				C.wdpool_error_free(r.err)
			}
			return nil
		}
		return takeError(r.rc, r.err)
	}
	return waitDelivery(t.h, timeout)
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

// takeSlot reads the report of d's slot when it is in (returning 0 and
// the outcome); else it returns 1 (missing). d.mu is held.
func (d *Delivery) takeSlot(t target) (pending int, err error) {
	// The common cases read the slot in place: no cgo call.
	p := (*C.wdpool_report_slot)(unsafe.Add(t.array, uintptr(t.slot)*C.sizeof_wdpool_report_slot))
	switch atomic.LoadUint32((*uint32)(unsafe.Pointer(&p.state))) {
	case C.WDPOOL_SLOT_PENDING:
		return 1, nil
	case C.WDPOOL_SLOT_DONE:
		if p.error_code == 0 {
			d.rep = C.wdpool_go_report{partition: p.partition, offset: p.offset, timestamp_ms: p.timestamp_ms}
			d.done = true
			return 0, nil
		}
	}
	// A failure (its message is read in C), or not a slot in use.
	r := C.wdpool_go_slot_wait(C.uintptr_t(t.slots), C.size_t(t.slot), 1, 0)
	switch r.rc {
	case C.WDPOOL_PENDING:
		return 1, nil
	case C.WDPOOL_OK, C.WDPOOL_KAFKA, C.WDPOOL_FATAL:
	default:
		return 0, takeError(r.rc, r.err)
	}
	err = takeError(r.rc, r.err)
	d.rep = r.report
	d.err, d.done = err, true
	return 0, err
}

// take reads every report and frees the handle when they are all in
// (returning 0 and the outcome); else it returns how many are missing.
// d.mu is held.
func (d *Delivery) take(t target) (pending int, err error) {
	if t.slots != 0 {
		return d.takeSlot(t)
	}
	h := t.h
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
	m := d.more
	m.handle.Store(0)
	m.live.Add(-1)
	d.rep = r.first
	if n > 1 {
		m.rest = make([]DeliveryReport, n-1)
		for i := range rest {
			m.rest[i] = reportFromC(&rest[i], m.topics[i+1])
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
		t, ok := d.target()
		if !ok {
			d.mu.Unlock()
			return &Error{Code: ResultStaleHandle, Message: "delivery closed"}
		}
		pending, err := d.take(t)
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
			if err := t.wait(timeoutOf(ctx)); err != nil {
				return err
			}
			continue
		}
		w := d.extra().waiter
		if w == nil {
			w = &deliveryWaiter{done: make(chan struct{}), closed: make(chan struct{}), timeout: timeoutOf(ctx)}
			callsWaiting.Add(1)
			go func() { // holds the target's values only: d may be collected meanwhile
				w.err = t.wait(w.timeout)
				callsWaiting.Add(-1)
				close(w.done)
			}()
			d.more.waiter = w
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
		if d.more.waiter == w {
			d.more.waiter = nil
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
	first := reportFromC(&d.rep, d.topic())
	if d.more == nil {
		return []DeliveryReport{first}
	}
	return append([]DeliveryReport{first}, d.more.rest...)
}

// Report is the first report (of a single-message ProduceAsync).
func (d *Delivery) Report() DeliveryReport {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.done {
		return DeliveryReport{Partition: -1, Offset: -1}
	}
	return reportFromC(&d.rep, d.topic())
}

// Close frees the C handle without waiting (the messages are still
// delivered). Harmless after Wait and when called twice.
func (d *Delivery) Close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	open := false
	if d.slot >= 0 {
		open, d.closed = !d.closed, true
	} else if h := d.more.handle.Swap(0); h != 0 {
		freeDelivery(h, d.more.live)
		open = true
	}
	if open && d.more != nil && d.more.waiter != nil {
		close(d.more.waiter.closed) // a Wait waiting for it returns now
		d.more.waiter = nil
	}
}
