package wdpool

import (
	"context"
	"errors"
	"sync/atomic"
	"time"
)

// Cancellation. wdpool's C calls that wait (a checkout, produce_sync,
// flush, delivery_wait) take a timeout but cannot be interrupted. A
// context's deadline becomes that timeout; a cancellation is served by
// await: the call runs on a goroutine of the package while the caller
// waits for it or for ctx.Done(), and a caller that gives up leaves the
// call to finish on its own (within its timeout) and to give back what it
// got.

// callsWaiting counts the calls await runs on goroutines that have not
// ended yet, given up or not, an abandoned call's give-back included (for
// tests: a producer is back in its pool once it is 0).
var callsWaiting atomic.Int64

// awaited is one call that await runs on a goroutine.
type awaited[T any] struct {
	done   chan struct{} // closed once result is set, unless abandoned
	state  atomic.Int32
	result T
}

const (
	callRunning int32 = iota
	callFinished
	callAbandoned
)

// await returns call(), or ctx's error as soon as ctx is cancelled.
//
// Without a Done channel (context.Background, context.TODO and values
// derived from them) nothing can cancel ctx: call runs on the calling
// goroutine. Otherwise it runs on a goroutine of its own:
//   - call returns first: its result;
//   - ctx is cancelled first: ctx.Err() at once. The call goes on in C
//     until it ends by itself (within its timeout); then giveBack (if not
//     nil) gets its result, to return what nobody will use (a producer to
//     check in, memory to free).
//   - ctx's deadline passes first: call was given that deadline as its
//     timeout, so its own answer (a timeout saying what was missing) is at
//     most a millisecond away: await waits for it.
//
// call must not touch the caller's memory: it may run after await
// returned.
func await[T any](ctx context.Context, call func() T, giveBack func(T)) (T, error) {
	if ctx.Done() == nil {
		return call(), nil
	}
	a := &awaited[T]{done: make(chan struct{})}
	callsWaiting.Add(1)
	go func() {
		// Decremented last: a caller that gave up sees the call end only
		// once what it got is given back.
		defer callsWaiting.Add(-1)
		r := call()
		a.result = r
		if a.state.CompareAndSwap(callRunning, callFinished) {
			close(a.done)
		} else if giveBack != nil {
			giveBack(r)
		}
	}()
	select {
	case <-a.done:
		return a.result, nil
	case <-ctx.Done():
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		<-a.done
		return a.result, nil
	}
	if a.state.CompareAndSwap(callRunning, callAbandoned) {
		var zero T
		return zero, ctx.Err()
	}
	<-a.done // it finished as ctx was cancelled: its result stands
	return a.result, nil
}

// deadlinePassed reports whether ctx is done or its deadline has come (C's
// clock may run out a moment before ctx's timer fires).
func deadlinePassed(ctx context.Context) bool {
	if ctx.Err() != nil {
		return true
	}
	d, ok := ctx.Deadline()
	return ok && time.Until(d) <= 0
}

// ctxErr is ctx.Err(), or DeadlineExceeded when ctx's deadline has come
// but its timer has not fired yet.
func ctxErr(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if deadlinePassed(ctx) {
		return context.DeadlineExceeded
	}
	return nil
}
