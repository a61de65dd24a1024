package wdpool

/*
#include <stdint.h>
#include "wdpool.h"

wdpool_result wdpool_go_subscribe(uintptr_t, uint64_t *, wdpool_error **);
*/
import "C"

import (
	"sync"
	"time"
)

// EventKind says what happened.
type EventKind int

// Event kinds; the first five are WaterDrop's connection-pool events.
// Unknown kinds may appear with a newer library: ignore them.
const (
	EventCreated              EventKind = C.WDPOOL_EVENT_CREATED
	EventSetup                EventKind = C.WDPOOL_EVENT_SETUP
	EventShutdown             EventKind = C.WDPOOL_EVENT_SHUTDOWN
	EventReload               EventKind = C.WDPOOL_EVENT_RELOAD
	EventReloaded             EventKind = C.WDPOOL_EVENT_RELOADED
	EventCheckoutTimeout      EventKind = C.WDPOOL_EVENT_CHECKOUT_TIMEOUT
	EventProducerReplaced     EventKind = C.WDPOOL_EVENT_PRODUCER_REPLACED
	EventTransactionStarted   EventKind = C.WDPOOL_EVENT_TRANSACTION_STARTED
	EventTransactionCommitted EventKind = C.WDPOOL_EVENT_TRANSACTION_COMMITTED
	EventTransactionAborted   EventKind = C.WDPOOL_EVENT_TRANSACTION_ABORTED
	EventError                EventKind = C.WDPOOL_EVENT_ERROR
	EventStatistics           EventKind = C.WDPOOL_EVENT_STATISTICS
)

// Event is one event, copied out of C.
type Event struct {
	Kind        EventKind
	Name        string // "connection_pool.created", ...
	PoolID      uint64
	Global      bool
	Size        int
	Timeout     time.Duration
	Slot        int // -1 when none
	ProducerID  string
	Waited      time.Duration
	Available   int
	Undelivered uint64
	ErrorCode   int32
	Message     string // error text or statistics JSON
}

func eventFromC(e *C.wdpool_event) Event {
	ev := Event{
		Kind: EventKind(e.kind), Name: C.GoString(e.name), PoolID: uint64(e.pool_id), Global: bool(e.global),
		Size: int(e.size), Timeout: time.Duration(e.timeout_ms) * time.Millisecond, Slot: int(e.slot),
		Waited: time.Duration(e.waited_ms) * time.Millisecond, Available: int(e.available),
		Undelivered: uint64(e.undelivered), ErrorCode: int32(e.error_code),
	}
	if e.producer_id != nil {
		ev.ProducerID = C.GoString(e.producer_id)
	}
	if e.message != nil && e.message_len > 0 {
		ev.Message = C.GoStringN(e.message, C.int(e.message_len))
	}
	return ev
}

type subscription struct {
	fn        func(Event)
	finalized chan struct{}
}

// Subscribe calls fn for every event of every pool, the global one
// included. Lifecycle events run on the goroutine whose call caused them,
// during that call; events born on librdkafka's threads (errors,
// statistics) run on a goroutine of this package that drains wdpool's
// queue while anyone is subscribed. fn may run on several goroutines at
// once; it runs on a goroutine of its own while the goroutine that caused
// the event waits for it, so a panic in it is recovered and printed and
// runtime.Goexit ends only that goroutine. fn must not close, reload or
// free the pool whose created or setup event it handles. The returned
// function unsubscribes; it returns once fn will not be called again
// (unless it is called from inside fn).
func Subscribe(fn func(Event)) (unsubscribe func(), err error) {
	sub := &subscription{fn: fn, finalized: make(chan struct{})}
	h := newHandle(sub)
	var id C.uint64_t
	var cerr *C.wdpool_error
	if err := takeError(C.wdpool_go_subscribe(C.uintptr_t(h), &id, &cerr), cerr); err != nil {
		deleteHandle(h)
		return nil, err
	}
	startDrainer()
	var once sync.Once
	return func() {
		once.Do(func() {
			C.wdpool_unsubscribe(id, nil)
			stopDrainer()
		})
	}, nil
}

// The drainer: one goroutine while at least one subscription is live.
var drainer struct {
	sync.Mutex
	subs int
	stop chan struct{}
	done chan struct{}
}

func startDrainer() {
	drainer.Lock()
	defer drainer.Unlock()
	drainer.subs++
	if drainer.subs > 1 {
		return
	}
	stop, done := make(chan struct{}), make(chan struct{})
	drainer.stop, drainer.done = stop, done
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				C.wdpool_events_drain(0, 1<<20, nil, nil)
				return
			default:
			}
			C.wdpool_events_drain(100, 1024, nil, nil)
		}
	}()
}

// stopDrainer stops the drainer when the last subscription ends. It does
// not wait for the goroutine: an unsubscribe from inside a subscriber
// running on the drainer must not deadlock.
func stopDrainer() {
	drainer.Lock()
	defer drainer.Unlock()
	drainer.subs--
	if drainer.subs == 0 {
		close(drainer.stop)
	}
}

// drainNow delivers what is queued now (after a close, so that a freed
// pool's queued events are seen promptly).
func drainNow() {
	drainer.Lock()
	live := drainer.subs > 0
	drainer.Unlock()
	if live {
		C.wdpool_events_drain(0, 1<<20, nil, nil)
	}
}

// EventQueueStats is the state of wdpool's queue of events born on
// librdkafka's threads.
type EventQueueStats struct {
	Queued, QueuedBytes int
	Dropped             uint64
	MaxEvents, MaxBytes int
}

// EventQueue returns the state of the event queue (Dropped grows when
// subscribers are too slow).
func EventQueue() EventQueueStats {
	var s C.wdpool_events_statistics
	C.wdpool_events_stats(&s, nil)
	return EventQueueStats{Queued: int(s.queued), QueuedBytes: int(s.queued_bytes), Dropped: uint64(s.dropped),
		MaxEvents: int(s.max_events), MaxBytes: int(s.max_bytes)}
}
