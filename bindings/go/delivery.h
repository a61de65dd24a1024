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

typedef struct {
  wdpool_result rc;
  wdpool_error *err;
  size_t pending;         // reports still missing (rc WDPOOL_DELIVERY_TIMEOUT)
  wdpool_go_report first; // report 0, once every report is in
} wdpool_go_take_result;

// Never blocks. When every report of delivery is in: its outcome (OK, or
// KAFKA with the first failure), report 0 in the result and reports 1 to
// n-1 in rest, and the handle freed. Else DELIVERY_TIMEOUT with how many
// reports are missing (no error allocated), or the code of the failed
// call (STALE_HANDLE, without an error). Reads the reports first: only a
// failed delivery pays wdpool_delivery_wait's look for its error.
static inline wdpool_go_take_result wdpool_go_delivery_take(uintptr_t delivery, wdpool_go_report *rest, size_t n) {
  const wdpool_delivery *d = (const wdpool_delivery *)delivery;
  wdpool_go_take_result r = {WDPOOL_OK, NULL, 0, {-1, 0, -1, -1}};
  int failed = 0;
  for (size_t i = 0; i < n; i++) {
    wdpool_report rep = {NULL, -1, -1, -1, 0};
    wdpool_result rc = wdpool_delivery_report(d, i, &rep, NULL);
    if (rc == WDPOOL_PENDING) {
      r.pending = wdpool_delivery_pending(d);
      if (r.pending == 0) {
        // Every report came in between the two calls: read them again
        // (a caller told "0 missing" would take reports it never read).
        return wdpool_go_delivery_take(delivery, rest, n);
      }
      r.rc = WDPOOL_DELIVERY_TIMEOUT;
      return r;
    }
    if (rc != WDPOOL_OK) {
      r.rc = rc;
      return r;
    }
    wdpool_go_report_of(&rep, i == 0 ? &r.first : &rest[i - 1]);
    failed |= rep.error_code != 0;
  }
  if (failed) {
    r.rc = wdpool_delivery_wait(d, 0, &r.err); // KAFKA, with the first failure
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

// A report slot read (poll: never waits) or waited on (up to wait_ms,
// WDPOOL_TIMEOUT_DEFAULT included): the report by value when the slot is
// DONE (rc OK, or KAFKA/FATAL with the failure in err).
typedef struct {
  wdpool_result rc;
  wdpool_error *err;
  wdpool_go_report report;
} wdpool_go_slot_result;

static inline wdpool_go_slot_result wdpool_go_slot_wait(uintptr_t slots, size_t index, int poll, int64_t wait_ms) {
  wdpool_go_slot_result r = {WDPOOL_OK, NULL, {-1, 0, -1, -1}};
  wdpool_report rep = {NULL, -1, -1, -1, 0};
  if (poll) {
    r.rc = wdpool_report_slots_poll((const wdpool_report_slots *)slots, index, &rep, &r.err);
  } else {
    r.rc = wdpool_report_slots_wait((const wdpool_report_slots *)slots, index, wait_ms, &rep, &r.err);
  }
  wdpool_go_report_of(&rep, &r.report);
  return r;
}

typedef struct {
  wdpool_result rc;
  wdpool_error *err;
  uintptr_t slots;
  const wdpool_report_slot *array; // C memory, readable until the slots are freed
} wdpool_go_slots_new_result;

static inline wdpool_go_slots_new_result wdpool_go_slots_new(size_t count) {
  wdpool_go_slots_new_result r = {WDPOOL_OK, NULL, 0, NULL};
  wdpool_report_slots *s = NULL;
  size_t n = 0;
  r.rc = wdpool_report_slots_new(count, &s, &r.err);
  if (r.rc != WDPOOL_OK) return r;
  r.rc = wdpool_report_slots_array(s, &r.array, &n, &r.err);
  if (r.rc != WDPOOL_OK || n != count) {
    wdpool_report_slots_free(s);
    if (r.rc == WDPOOL_OK) r.rc = WDPOOL_INVALID_ARGUMENT;
    return r;
  }
  r.slots = (uintptr_t)s;
  return r;
}

static inline void wdpool_go_slots_free(uintptr_t slots) {
  wdpool_report_slots_free((wdpool_report_slots *)slots);
}

static inline void wdpool_go_delivery_free(uintptr_t delivery) {
  wdpool_delivery_free((wdpool_delivery *)delivery);
}

#endif
