//! `wdpool_delivery`: the delivery reports of an async produce, waited on by
//! the caller. Nothing calls back into the caller from a library thread.

use std::ffi::{c_char, CString};
use std::sync::Arc;
use std::time::Duration;

use super::result::c_string;
use super::{boundary, guarded, required, timeout_arg, wdpool_error, wdpool_result, write_out};
use crate::error::{Error, ErrorKind};
use crate::kafka::{Batch, Report};

/// librdkafka's generic failure code, for failures it did not number.
const RD_KAFKA_RESP_ERR_FAIL: i32 = -196;

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
        error_code: match &report.error {
            None => 0,
            Some(e) if e.kafka_code != 0 => e.kafka_code,
            Some(_) => RD_KAFKA_RESP_ERR_FAIL,
        },
    }
}

/// The delivery reports of one async produce call (one message, or all the
/// messages of a produce-many). Owned by the caller: free it with
/// `wdpool_delivery_free`, whether or not it was waited on (freeing does not
/// cancel delivery). It stays valid after the producer's callback returns.
/// May be waited on and read from any thread, concurrently.
#[allow(non_camel_case_types)]
pub struct wdpool_delivery {
    batch: Arc<Batch>,
    topics: Vec<CString>,
    max_wait: Duration,
}

impl wdpool_delivery {
    pub(crate) fn new(batch: Arc<Batch>, topics: Vec<CString>, max_wait: Duration) -> Box<Self> {
        Box::new(wdpool_delivery { batch, topics, max_wait })
    }
}

/// Waits until every message of `delivery` has its report, at most
/// `timeout_ms` milliseconds (WDPOOL_TIMEOUT_DEFAULT: the producer's
/// `max_wait_timeout`; 0: do not wait).
///
/// Returns WDPOOL_OK when all were delivered; WDPOOL_KAFKA (the first
/// failure; `wdpool_error_kafka_code` has its code) when any failed;
/// WDPOOL_DELIVERY_TIMEOUT when some reports are still missing;
/// WDPOOL_NULL_PARAMETER. Blocks the calling thread; any thread.
#[no_mangle]
pub unsafe extern "C" fn wdpool_delivery_wait(
    delivery: *const wdpool_delivery,
    timeout_ms: i64,
    err: *mut *mut wdpool_error,
) -> wdpool_result {
    boundary(err, || {
        let d = unsafe { required(delivery, "delivery") }?;
        d.batch.wait(timeout_arg(timeout_ms).unwrap_or(d.max_wait))?;
        match d.batch.failure() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    })
}

/// How many messages `delivery` covers; 0 for NULL.
#[no_mangle]
pub unsafe extern "C" fn wdpool_delivery_count(delivery: *const wdpool_delivery) -> usize {
    guarded(0, || unsafe { delivery.as_ref() }.map_or(0, |d| d.batch.len()))
}

/// How many messages of `delivery` have no report yet; 0 for NULL.
#[no_mangle]
pub unsafe extern "C" fn wdpool_delivery_pending(delivery: *const wdpool_delivery) -> usize {
    guarded(0, || unsafe { delivery.as_ref() }.map_or(0, |d| d.batch.pending()))
}

/// Copies the report of message `index` into `*report_out`. Its `topic`
/// points into `delivery` (valid until it is freed).
///
/// Returns WDPOOL_OK (look at `error_code` for the message's outcome),
/// WDPOOL_PENDING when that report has not arrived yet,
/// WDPOOL_INVALID_ARGUMENT when `index` is out of range,
/// WDPOOL_NULL_PARAMETER. Any thread.
#[no_mangle]
pub unsafe extern "C" fn wdpool_delivery_report(
    delivery: *const wdpool_delivery,
    index: usize,
    report_out: *mut wdpool_report,
    err: *mut *mut wdpool_error,
) -> wdpool_result {
    boundary(err, || {
        let d = unsafe { required(delivery, "delivery") }?;
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
        unsafe { write_out(report_out, report_to_c(topic, &report)) };
        Ok(())
    })
}

/// Frees a delivery handle. NULL does nothing. Messages not yet delivered
/// are still delivered; only their reports are no longer kept.
#[no_mangle]
pub unsafe extern "C" fn wdpool_delivery_free(delivery: *mut wdpool_delivery) {
    guarded((), || {
        if !delivery.is_null() {
            // SAFETY: a pointer from a produce call, freed once.
            drop(unsafe { Box::from_raw(delivery) });
        }
    })
}

pub(crate) fn topics_of(messages: &[crate::kafka::Message<'_>]) -> Vec<CString> {
    messages.iter().map(|m| c_string(m.topic)).collect()
}
