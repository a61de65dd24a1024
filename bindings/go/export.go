package wdpool

/*
#include <stdint.h>
#include "wdpool.h"
*/
import "C"

import (
	"fmt"
	"os"
	"runtime/cgo"
)

// The functions below are called by C. None may let a panic reach C: each
// recovers and reports through its state, and the Go caller re-panics once
// the C call has returned.

//export wdpoolGoConfigure
func wdpoolGoConfigure(ud C.uintptr_t, cfg *C.wdpool_config, index C.size_t) (ret C.int) {
	st := cgo.Handle(ud).Value().(*configureState)
	defer func() {
		if r := recover(); r != nil { // a bug of this package: never unwind into C
			st.panicked, st.panicValue = true, r
			ret = 0
		}
	}()
	if st.failed() {
		return 0
	}
	return st.run(cfg, int(index))
}

//export wdpoolGoEvent
func wdpoolGoEvent(ud C.uintptr_t, e *C.wdpool_event) {
	sub := cgo.Handle(ud).Value().(*subscription)
	ev := eventFromC(e)
	// The subscriber runs on a goroutine of its own while this callback
	// waits: neither a panic nor runtime.Goexit in it can unwind over
	// wdpool's frames. A panic is printed; a Goexit ends only that goroutine.
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer func() {
			if r := recover(); r != nil {
				fmt.Fprintf(os.Stderr, "wdpool: event subscriber panicked on %s: %v\n", ev.Name, r)
			}
		}()
		sub.fn(ev)
	}()
	<-done
}

//export wdpoolGoFinalize
func wdpoolGoFinalize(ud C.uintptr_t) {
	h := cgo.Handle(ud)
	sub := h.Value().(*subscription)
	deleteHandle(h)
	close(sub.finalized)
}
