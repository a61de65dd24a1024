//! `wdpool_delivery`: the delivery reports of an async produce, waited on by
//! the caller. Nothing calls back into the caller from a library thread.

use std::ffi::{c_char, CString};
use std::sync::Arc;
use std::time::Duration;

use super::registry::{Kind, Registry};
use super::result::c_string;
use super::{boundary, guarded, null, timeout_or, wdpool_error, wdpool_result, write_out};
use crate::error::{Error, ErrorKind, Result};
use crate::kafka::{Batch, Report};

/// The outcome of one message.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct wdpool_report {
    /// The message's topic. From a sync produce: the caller's own `topic`
    /// pointer. From `wdpool_report`: owned by the delivery handle,
    /// valid until it is freed.
    pub topic: *const c_char,
    /// -1 when unknown (the message failed before a partition was chosen).
    pub partition: i32,
    /// -1 when not delivered.
    pub offset: i64,
    /// Milliseconds since the epoch; -1 when unknown.
    pub timestamp_ms: i64,
    /// 0: delivered. Otherwise librdkafka's error code (`rd_kafka_resp_err_t`).
    pub error_code: i32,
}

pub(crate) fn report_to_c(topic: *const c_char, report: &Report) -> wdpool_report {
    wdpool_report {
        topic,
        partition: report.partition,
        offset: report.offset,
        timestamp_ms: report.timestamp_ms,
        error_code: error_code_of(report),
    }
}

/// A report's `error_code`: 0 when delivered, else librdkafka's code.
pub(crate) fn error_code_of(report: &Report) -> i32 {
    report.error.as_ref().map_or(0, crate::kafka::delivery::error_code_of)
}

/// The delivery reports of one async produce call (one message, or all the
/// messages of a produce-many): a handle, not a pointer. Owned by the
/// caller: free it with `wdpool_delivery_free`, whether or not it was waited
/// on (freeing does not cancel delivery). It stays valid after the
/// producer's callback returns, and in a forked child (where the reports of
/// the parent's messages never arrive). After it is freed, every call with
/// it fails with WDPOOL_STALE_HANDLE (or returns 0).
///
/// Thread: may be waited on and read from any thread, concurrently.
#[allow(non_camel_case_types)]
pub struct wdpool_delivery {
    _private: [u8; 0],
}

pub(crate) struct Delivery {
    batch: Arc<Batch>,
    topics: Vec<CString>,
    max_wait: Duration,
}

impl Delivery {
    pub(crate) fn new(batch: Arc<Batch>, topics: Vec<CString>, max_wait: Duration) -> Self {
        Delivery { batch, topics, max_wait }
    }
}

pub(crate) static DELIVERIES: Registry<Arc<Delivery>> = Registry::new(Kind::Delivery);

fn delivery_of(delivery: *const wdpool_delivery) -> Result<Arc<Delivery>> {
    if delivery.is_null() {
        return Err(null("delivery"));
    }
    DELIVERIES.with(delivery as usize, |d| Arc::clone(d))
}

/// Waits until every message of `delivery` has its report.
///
/// Blocks:     up to `timeout_ms` (WDPOOL_TIMEOUT_DEFAULT: the producer's
///             `max_wait_timeout`; 0: only checks).
/// Calls back: nothing.
/// Thread:     any, concurrently with other calls on it.
/// Returns:    OK when all were delivered; KAFKA (the first failure;
///             `wdpool_error_kafka_code` has its code) when any failed;
///             DELIVERY_TIMEOUT when some reports are still missing;
///             NULL_PARAMETER; INVALID_ARGUMENT (another kind of handle);
///             STALE_HANDLE (freed).
#[no_mangle]
pub unsafe extern "C" fn wdpool_delivery_wait(
    delivery: *const wdpool_delivery,
    timeout_ms: i64,
    err: *mut *mut wdpool_error,
) -> wdpool_result {
    boundary(err, || {
        let d = delivery_of(delivery)?;
        d.batch.wait(timeout_or(timeout_ms, d.max_wait))?;
        match d.batch.failure() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    })
}

/// How many messages `delivery` covers; 0 for NULL or an invalid handle.
/// Never blocks; any thread.
#[no_mangle]
pub unsafe extern "C" fn wdpool_delivery_count(delivery: *const wdpool_delivery) -> usize {
    guarded(0, || delivery_of(delivery).map_or(0, |d| d.batch.len()))
}

/// How many messages of `delivery` have no report yet; 0 for NULL or an
/// invalid handle. Never blocks; any thread.
#[no_mangle]
pub unsafe extern "C" fn wdpool_delivery_pending(delivery: *const wdpool_delivery) -> usize {
    guarded(0, || delivery_of(delivery).map_or(0, |d| d.batch.pending()))
}

/// Copies the report of message `index` into `*report_out`. Its `topic`
/// points into `delivery` (valid until it is freed).
///
/// Blocks:     never. Calls back: nothing. Thread: any.
/// Returns:    OK (look at `error_code` for the message's outcome), PENDING
///             when that report has not arrived yet, INVALID_ARGUMENT when
///             `index` is out of range (or another kind of handle),
///             NULL_PARAMETER, STALE_HANDLE.
#[no_mangle]
pub unsafe extern "C" fn wdpool_delivery_report(
    delivery: *const wdpool_delivery,
    index: usize,
    report_out: *mut wdpool_report,
    err: *mut *mut wdpool_error,
) -> wdpool_result {
    boundary(err, || {
        let d = delivery_of(delivery)?;
        if report_out.is_null() {
            return Err(super::null("report_out"));
        }
        let count = d.batch.len();
        if index >= count {
            return Err(Error::new(ErrorKind::InvalidArgument, format!("index {index} is out of range (count {count})")));
        }
        let report = d
            .batch
            .report(index)
            .ok_or_else(|| Error::new(ErrorKind::Pending, format!("message {index} has no delivery report yet")))?;
        let topic = d.topics.get(index).map_or(std::ptr::null(), |t| t.as_ptr());
        // SAFETY: checked for NULL; the caller passes a writable report.
        unsafe { write_out(report_out, report_to_c(topic, &report)) };
        Ok(())
    })
}

/// Frees a delivery handle. NULL, a freed handle or another kind of handle
/// does nothing. Messages not yet delivered are still delivered; only their
/// reports are no longer kept. A thread still inside `wdpool_delivery_wait`
/// on it finishes safely.
///
/// Blocks: never. Calls back: nothing. Thread: any (a finalizer's too).
#[no_mangle]
pub unsafe extern "C" fn wdpool_delivery_free(delivery: *mut wdpool_delivery) {
    guarded((), || {
        if !delivery.is_null() {
            let _ = DELIVERIES.remove(delivery as usize);
        }
    })
}

pub(crate) fn topics_of(messages: &[crate::kafka::Message<'_>]) -> Vec<CString> {
    messages.iter().map(|m| c_string(m.topic)).collect()
}
