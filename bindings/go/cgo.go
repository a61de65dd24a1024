package wdpool

/*
#include <stdint.h>
#include <stdlib.h>
#include "wdpool.h"

extern int wdpoolGoConfigure(uintptr_t, wdpool_config *, size_t);
extern void wdpoolGoEvent(uintptr_t, wdpool_event *);
extern void wdpoolGoFinalize(uintptr_t);

static int wdpool_go_configure_shim(void *ud, wdpool_config *c, size_t i) {
  return wdpoolGoConfigure((uintptr_t)ud, c, i);
}
static void wdpool_go_event_shim(void *ud, const wdpool_event *e) {
  wdpoolGoEvent((uintptr_t)ud, (wdpool_event *)e);
}
static void wdpool_go_finalize_shim(void *ud) { wdpoolGoFinalize((uintptr_t)ud); }

wdpool_result wdpool_go_pool_new(size_t size, uint64_t timeout_ms, uintptr_t h,
                                        wdpool_pool **out, wdpool_error **err) {
  wdpool_options o = {size, timeout_ms};
  return wdpool_pool_new(&o, h ? wdpool_go_configure_shim : NULL, (void *)h, out, err);
}
wdpool_result wdpool_go_setup(size_t size, uint64_t timeout_ms, uintptr_t h, wdpool_error **err) {
  wdpool_options o = {size, timeout_ms};
  return wdpool_setup(&o, h ? wdpool_go_configure_shim : NULL, (void *)h, err);
}
wdpool_result wdpool_go_subscribe(uintptr_t h, uint64_t *id, wdpool_error **err) {
  return wdpool_subscribe(wdpool_go_event_shim, (void *)h, wdpool_go_finalize_shim, id, err);
}

*/
import "C"

import (
	"fmt"
	"runtime/cgo"
	"sync/atomic"
)

// ABIVersion is the version of the C ABI this package was written for.
const ABIVersion = 1

func init() {
	if v := uint32(C.wdpool_abi_version()); v != ABIVersion {
		panic(fmt.Sprintf("wdpool: the loaded libwdpool has ABI version %d; this Go package needs ABI version %d (libwdpool.so.%d)", v, ABIVersion, ABIVersion))
	}
}

// Version is the loaded library's version ("0.1.0").
func Version() string { return C.GoString(C.wdpool_version()) }

// Handles carrying Go values through C, counted so tests can prove each is
// deleted exactly once.
var handlesLive atomic.Int64

func newHandle(v any) cgo.Handle {
	handlesLive.Add(1)
	return cgo.NewHandle(v)
}

func deleteHandle(h cgo.Handle) {
	handlesLive.Add(-1)
	h.Delete()
}

// timeoutArg is what a timeout_ms argument gets: -1 (the default) or 0 and
// up from a deadline.
func cTimeout(ms int64) C.int64_t { return C.int64_t(ms) }

// abiVersion is one cgo call that does nothing (for the benchmarks).
func abiVersion() uint32 { return uint32(C.wdpool_abi_version()) }
