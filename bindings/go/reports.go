package wdpool

/*
#include <stdint.h>
#include "wdpool.h"

static inline wdpool_result wdpool_go_queue_new(uintptr_t *out, wdpool_error **err) {
  wdpool_report_queue *q = NULL;
  wdpool_result rc = wdpool_report_queue_new(&q, err);
  *out = (uintptr_t)q;
  return rc;
}
static inline wdpool_result wdpool_go_queue_take(uintptr_t q, wdpool_tagged_report *out, size_t capacity,
    int64_t timeout_ms, size_t *count, wdpool_error **err) {
  return wdpool_report_queue_take((const wdpool_report_queue *)q, out, capacity, timeout_ms, count, err);
}
static inline size_t wdpool_go_queue_len(uintptr_t q) {
  return wdpool_report_queue_len((const wdpool_report_queue *)q);
}
static inline void wdpool_go_queue_free(uintptr_t q) { wdpool_report_queue_free((wdpool_report_queue *)q); }
static inline wdpool_result wdpool_go_produce_tagged(wdpool_producer *producer, const wdpool_message *m,
    uintptr_t q, uint64_t tag, wdpool_error **err) {
  return wdpool_producer_produce_tagged(producer, m, (const wdpool_report_queue *)q, tag, err);
}
*/
import "C"

import (
	"context"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// ReportQueue collects the delivery reports of messages produced with
// Producer.ProduceTagged, each with the tag it was produced with: the
// throughput path, like confluent-kafka-go's Events channel. Nothing is
// kept per message on the Go side (no Delivery to allocate, wait on and
// collect), and one Take moves up to thousands of reports.
//
// Goroutines: any number of producers (of any pools) may produce into one
// queue while any number of goroutines Take from it; each report is taken
// once. The queue is the caller's: Close it when done (a queue that is no
// longer reachable is closed by the garbage collector). Messages still in
// flight when it is closed are delivered as usual; their reports are
// dropped.
type ReportQueue struct {
	h      uintptr // the C handle (a handle, not a pointer: stale once freed)
	closed atomic.Bool
}

// TaggedReport is the outcome of one message produced with ProduceTagged.
type TaggedReport struct {
	Tag       uint64 // the tag given to ProduceTagged
	Partition int32  // -1 when unknown (failed before a partition was chosen)
	Offset    int64  // -1 when not delivered
	Timestamp time.Time
	Err       error // nil: delivered; else a *KafkaError (librdkafka's code and flags)
}

// NewReportQueue makes an empty report queue.
func NewReportQueue() (*ReportQueue, error) {
	var h C.uintptr_t
	var cerr *C.wdpool_error
	if err := takeError(C.wdpool_go_queue_new(&h, &cerr), cerr); err != nil {
		return nil, err
	}
	q := &ReportQueue{h: uintptr(h)}
	runtime.SetFinalizer(q, (*ReportQueue).Close)
	return q, nil
}

// takeChunk bounds each wait in C, so that a cancelled context is noticed
// within about this long (librdkafka's take cannot be woken otherwise).
const takeChunk = 20 * time.Millisecond

// takeMax is the most reports one call into C moves.
const takeMax = 1024

// takeBufs recycles the buffers C writes reports into (40 KB each at
// takeMax): a Take per delivery batch made one a call, a gigabyte of
// garbage per million messages.
var takeBufs = sync.Pool{New: func() any { return new([takeMax]C.wdpool_tagged_report) }}

// Take waits until at least one report is in the queue, then moves up to
// len(into) of them, oldest first, into into and returns how many. It
// waits at most until ctx is done (a cancellation is noticed within 20
// ms); when none came by then it returns 0 and ctx.Err(). With len(into)
// 0 it returns 0 and nil at once. A Close on another goroutine ends a
// waiting Take: it returns the reports that call had already taken, if
// any; every Take on a closed queue returns 0 and an error matching
// ErrStaleHandle (the reports not taken were dropped by Close).
func (q *ReportQueue) Take(ctx context.Context, into []TaggedReport) (int, error) {
	if len(into) == 0 {
		return 0, nil
	}
	arr := takeBufs.Get().(*[takeMax]C.wdpool_tagged_report)
	defer takeBufs.Put(arr)
	buf := arr[:min(len(into), takeMax)]
	for {
		if q.closed.Load() {
			return 0, q.closedError()
		}
		wait := time.Duration(0)
		if ctx.Err() == nil {
			wait = takeChunk
			if ctx.Done() == nil {
				wait = time.Second // nothing can cancel it: wake up rarely
			}
			if d, ok := ctx.Deadline(); ok {
				wait = min(wait, max(time.Until(d), 0))
			}
		}
		var n C.size_t
		var cerr *C.wdpool_error
		// buf is Go memory holding no Go pointers, written by C for this
		// call only (the reports' error pointers are C memory).
		// Whole milliseconds, rounded up: a deadline under 1 ms away waits
		// in C rather than looking again and again.
		ms := (wait + time.Millisecond - 1) / time.Millisecond
		rc := C.wdpool_go_queue_take(C.uintptr_t(q.h), &buf[0], C.size_t(len(buf)),
			C.int64_t(ms), &n, &cerr)
		runtime.KeepAlive(q)
		if err := takeError(rc, cerr); err != nil {
			if isCode(err, ResultStaleHandle) {
				return 0, q.closedError()
			}
			return 0, err
		}
		if n > 0 {
			for i := range int(n) {
				into[i] = taggedFromC(&buf[i])
			}
			return int(n), nil
		}
		if err := ctx.Err(); err != nil {
			return 0, err
		}
	}
}

func (q *ReportQueue) closedError() error {
	return &Error{Code: ResultStaleHandle, Message: "report queue closed"}
}

// taggedFromC converts one report and frees its C error.
func taggedFromC(r *C.wdpool_tagged_report) TaggedReport {
	t := TaggedReport{Tag: uint64(r.tag), Partition: int32(r.partition), Offset: int64(r.offset)}
	if r.timestamp_ms >= 0 {
		t.Timestamp = time.UnixMilli(int64(r.timestamp_ms))
	}
	if r.error != nil {
		k := &KafkaError{
			Code:    int32(C.wdpool_error_kafka_code(r.error)),
			Message: C.GoString(C.wdpool_error_message(r.error)),
			Flags:   uint32(C.wdpool_error_kafka_flags(r.error)),
		}
		if k.Code == 0 {
			k.Code = int32(r.error_code)
		}
		C.wdpool_error_free(r.error)
		r.error = nil
		t.Err = k
	} else if r.error_code != 0 {
		t.Err = &KafkaError{Code: int32(r.error_code), Message: "delivery failed"}
	}
	return t
}

// Len is how many reports wait to be taken (0 once closed).
func (q *ReportQueue) Len() int {
	n := int(C.wdpool_go_queue_len(C.uintptr_t(q.h)))
	runtime.KeepAlive(q)
	return n
}

// Close frees the queue: a Take waiting on it returns, the reports not
// taken are dropped, and so are those of messages still in flight when
// they come. Never blocks; a second Close does nothing.
func (q *ReportQueue) Close() {
	if q.closed.Swap(true) {
		return
	}
	runtime.SetFinalizer(q, nil)
	C.wdpool_go_queue_free(C.uintptr_t(q.h))
}

// ProduceTagged produces m without waiting; its delivery report comes in q
// with tag (tags are the caller's: wdpool neither checks nor needs them to
// be unique). On nil, exactly one report with tag will come in q, within
// the producer's message.timeout.ms (delivered or failed). On an error the
// message may still get a report (sent, then its implicit transaction
// failed) or none (refused or invalid): ignore tags you do not track.
// Nothing of m is kept after the call. A closed q: an error matching
// ErrStaleHandle; a nil q: ErrInvalidArgument.
func (p *Producer) ProduceTagged(m *Message, q *ReportQueue, tag uint64) error {
	if q == nil {
		return errNilQueue()
	}
	if q.closed.Load() {
		return q.closedError()
	}
	if _, err, ok := p.produceOne(m, false, 0, 0, q.h, tag); ok {
		runtime.KeepAlive(q)
		return q.staleIsClosed(err)
	}
	cm, err := buildMessages([]*Message{m})
	if err != nil {
		return err
	}
	defer cm.free()
	var cerr *C.wdpool_error
	rc := C.wdpool_go_produce_tagged(p.h, cm.msgs, C.uintptr_t(q.h), C.uint64_t(tag), &cerr)
	runtime.KeepAlive(q)
	return q.staleIsClosed(takeError(rc, cerr))
}

// errNilQueue: every ProduceTagged given a nil *ReportQueue.
func errNilQueue() error {
	return &Error{Code: ResultInvalidArgument, Message: "ProduceTagged: a nil *ReportQueue"}
}

// staleIsClosed: a STALE_HANDLE while q is closed names the queue (the
// producer's handle may be the stale one otherwise).
func (q *ReportQueue) staleIsClosed(err error) error {
	if err != nil && q.closed.Load() && isCode(err, ResultStaleHandle) {
		return q.closedError()
	}
	return err
}
