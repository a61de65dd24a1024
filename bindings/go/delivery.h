// C helpers shared by the cgo preambles of the Go binding (not part of
// libwdpool's ABI): results by value, reports without pointers (so Go
// memory may hold them), and Delivery.Wait's common case in one call.
#ifndef WDPOOL_GO_DELIVERY_H
#define WDPOOL_GO_DELIVERY_H

#include <stddef.h>
#include <stdint.h>
#include "wdpool.h"

// A wdpool_report without its topic pointer.
typedef struct {
  int32_t partition;
  int32_t error_code;
  int64_t offset;
  int64_t timestamp_ms;
} wdpool_go_report;

static inline void wdpool_go_report_of(const wdpool_report *r, wdpool_go_report *out) {
  out->partition = r->partition;
  out->error_code = r->error_code;
  out->offset = r->offset;
  out->timestamp_ms = r->timestamp_ms;
}

static inline void wdpool_go_read_report(const wdpool_delivery *d, size_t i, wdpool_go_report *out) {
  wdpool_report r = {NULL, -1, -1, -1, 0};
  wdpool_delivery_report(d, i, &r, NULL);
  wdpool_go_report_of(&r, out);
}

typedef struct {
  wdpool_result rc;
  wdpool_error *err;
  size_t pending;         // reports still missing (rc WDPOOL_DELIVERY_TIMEOUT)
  wdpool_go_report first; // report 0, once every report is in
} wdpool_go_take_result;

// Never blocks. When every report of delivery is in: its outcome (OK, or
// KAFKA with the first failure), report 0 in the result and reports 1 to
// n-1 in rest, and the handle freed. Else DELIVERY_TIMEOUT with how many
// reports are missing (no error allocated), or STALE_HANDLE.
static inline wdpool_go_take_result wdpool_go_delivery_take(uintptr_t delivery, wdpool_go_report *rest, size_t n) {
  const wdpool_delivery *d = (const wdpool_delivery *)delivery;
  wdpool_go_take_result r = {WDPOOL_OK, NULL, 0, {-1, 0, -1, -1}};
  r.pending = wdpool_delivery_pending(d);
  if (r.pending > 0) {
    r.rc = WDPOOL_DELIVERY_TIMEOUT;
    return r;
  }
  r.rc = wdpool_delivery_wait(d, 0, &r.err);
  if (r.rc != WDPOOL_OK && r.rc != WDPOOL_KAFKA) {
    return r;
  }
  wdpool_go_read_report(d, 0, &r.first);
  for (size_t i = 1; i < n; i++) {
    wdpool_go_read_report(d, i, &rest[i - 1]);
  }
  wdpool_delivery_free((wdpool_delivery *)d);
  return r;
}

typedef struct {
  wdpool_result rc;
  wdpool_error *err;
} wdpool_go_wait_result;

static inline wdpool_go_wait_result wdpool_go_delivery_wait(uintptr_t delivery, int64_t timeout_ms) {
  wdpool_go_wait_result r = {WDPOOL_OK, NULL};
  r.rc = wdpool_delivery_wait((const wdpool_delivery *)delivery, timeout_ms, &r.err);
  return r;
}

static inline void wdpool_go_delivery_free(uintptr_t delivery) {
  wdpool_delivery_free((wdpool_delivery *)delivery);
}

#endif
