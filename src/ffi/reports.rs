//! `wdpool_report_queue`: the delivery reports of many async produces,
//! each tagged with a number the caller chose, taken in batches by one
//! reader (`wdpool_producer_produce_tagged` sends into it). What a
//! `wdpool_delivery` per message costs (a handle, a batch, a copy of the
//! topic, a call to read it and one to free it) is replaced by one tag per
//! message and one take per batch of reports: the way to track every
//! report of a high-rate producer (the Go binding's `ProduceAsync`).

use std::sync::Arc;
use std::time::Duration;

use super::delivery::error_code_of;
use super::registry::{Kind, Registry};
use super::result::error_box;
use super::{boundary, null, wdpool_error, wdpool_result, write_out};
use crate::error::{Error, ErrorKind, Result};
use crate::kafka::{Report, ReportQueue};

/// A queue of tagged delivery reports: a handle, not a pointer. Made by
/// `wdpool_report_queue_new`, owned by the caller, freed with
/// `wdpool_report_queue_free`. Messages sent into it keep what they need:
/// freeing it while some are in flight is safe (their reports are then
/// dropped). It belongs to the process that made it: in a forked child
/// every call with it fails with WDPOOL_STALE_HANDLE.
///
/// Thread: any; any number of producers may send into it concurrently,
/// from any threads, while takers take.
#[allow(non_camel_case_types)]
pub struct wdpool_report_queue {
    _private: [u8; 0],
}

/// One message's delivery report, as `wdpool_report_queue_take` hands it
/// out.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Debug)]
pub struct wdpool_tagged_report {
    /// The tag given to `wdpool_producer_produce_tagged`.
    pub tag: u64,
    /// -1 when unknown (the message failed before a partition was chosen).
    pub partition: i32,
    /// 0: delivered. Otherwise librdkafka's error code
    /// (`rd_kafka_resp_err_t`).
    pub error_code: i32,
    /// -1 when not delivered.
    pub offset: i64,
    /// Milliseconds since the epoch; -1 when unknown.
    pub timestamp_ms: i64,
    /// NULL when delivered. Otherwise the failure (code WDPOOL_KAFKA or
    /// WDPOOL_FATAL, the message, `wdpool_error_kafka_code` and
    /// `wdpool_error_kafka_flags`), owned by the caller: free it with
    /// `wdpool_error_free`.
    pub error: *mut wdpool_error,
}

static QUEUES: Registry<Arc<ReportQueue>> = Registry::new(Kind::ReportQueue);

pub(crate) fn queue_of(queue: *const wdpool_report_queue) -> Result<Arc<ReportQueue>> {
    if queue.is_null() {
        return Err(null("queue"));
    }
    QUEUES.with(queue as usize, |q| Arc::clone(q))
}

/// Runs `f` on the queue behind `queue` without a counted reference (a
/// hazard pin, see `super::pins`), with a way to get its `Arc` when `f`
/// needs one to keep.
pub(crate) fn with_queue<R>(
    queue: *const wdpool_report_queue,
    f: impl FnOnce(&ReportQueue, &dyn Fn() -> Result<Arc<ReportQueue>>) -> Result<R>,
) -> Result<R> {
    if queue.is_null() {
        return Err(null("queue"));
    }
    super::pins::with_pinned(&QUEUES, queue as usize, |q| f(q, &|| queue_of(queue)))
}

fn tagged_to_c(tag: u64, report: Report) -> wdpool_tagged_report {
    let error_code = error_code_of(&report);
    let error = report.error.map_or(std::ptr::null_mut(), error_box);
    wdpool_tagged_report {
        tag,
        partition: report.partition,
        error_code,
        offset: report.offset,
        timestamp_ms: report.timestamp_ms,
        error,
    }
}

/// Makes an empty report queue and stores its handle in `*queue_out`.
///
/// Blocks: never. Calls back: nothing. Thread: any.
/// Returns: OK, NULL_PARAMETER, INVALID_ARGUMENT (too many live queues).
#[no_mangle]
pub unsafe extern "C" fn wdpool_report_queue_new(
    queue_out: *mut *mut wdpool_report_queue,
    err: *mut *mut wdpool_error,
) -> wdpool_result {
    boundary(err, || {
        if queue_out.is_null() {
            return Err(null("queue_out"));
        }
        let token = QUEUES.insert_arc(Arc::new(ReportQueue::new()))?;
        // SAFETY: checked for NULL; the caller passes a writable pointer.
        unsafe { write_out(queue_out, token as *mut wdpool_report_queue) };
        Ok(())
    })
}

/// Takes up to `capacity` reports, oldest first, into `reports_out`, and
/// stores how many in `*count_out` (0 when none came in time). Each report
/// is taken once: with several takers, each gets different ones.
///
/// Blocks:     until at least one report is there, at most `timeout_ms`
///             (0: only looks); a `wdpool_report_queue_free` on another
///             thread ends the wait at once (what was there is still
///             taken; the next call fails with STALE_HANDLE).
/// Calls back: nothing.
/// Thread:     any, concurrently with senders and other takers.
/// Ownership:  each report's `error`, when not NULL, is the caller's.
/// Returns:    OK (also with none taken), NULL_PARAMETER (`queue`,
///             `count_out`, or `reports_out` with `capacity` above 0),
///             INVALID_ARGUMENT (another kind of handle; `timeout_ms`
///             negative: the wait is always bounded), STALE_HANDLE (freed,
///             or made by the parent of a forked child).
#[no_mangle]
pub unsafe extern "C" fn wdpool_report_queue_take(
    queue: *const wdpool_report_queue,
    reports_out: *mut wdpool_tagged_report,
    capacity: usize,
    timeout_ms: i64,
    count_out: *mut usize,
    err: *mut *mut wdpool_error,
) -> wdpool_result {
    boundary(err, || {
        if count_out.is_null() {
            return Err(null("count_out"));
        }
        if reports_out.is_null() && capacity > 0 {
            return Err(null("reports_out"));
        }
        let timeout = u64::try_from(timeout_ms).map(Duration::from_millis).map_err(|_| {
            Error::new(ErrorKind::InvalidArgument, format!("timeout_ms must be 0 or more, got {timeout_ms}"))
        })?;
        let q = queue_of(queue)?;
        let mut taken = Vec::new();
        q.take(&mut taken, capacity, timeout);
        let n = taken.len();
        for (i, (tag, report)) in taken.into_iter().enumerate() {
            // SAFETY: the caller gave room for `capacity` reports, and
            // `take` took at most that many.
            unsafe { write_out(reports_out.add(i), tagged_to_c(tag, report)) };
        }
        // SAFETY: checked for NULL; the caller passes a writable pointer.
        unsafe { write_out(count_out, n) };
        Ok(())
    })
}

/// How many reports wait to be taken; 0 for NULL, a freed queue or
/// another kind of handle.
///
/// Blocks: never. Calls back: nothing. Thread: any.
#[no_mangle]
pub unsafe extern "C" fn wdpool_report_queue_len(queue: *const wdpool_report_queue) -> usize {
    super::guarded(0, || queue_of(queue).map_or(0, |q| q.len()))
}

/// Frees a report queue: the handle goes stale, a take waiting on it
/// returns at once, and the reports not taken (and those of messages still
/// in flight, when they come) are dropped. NULL, a freed queue or another
/// kind of handle: nothing happens.
///
/// Blocks: never. Calls back: nothing. Thread: any.
#[no_mangle]
pub unsafe extern "C" fn wdpool_report_queue_free(queue: *mut wdpool_report_queue) {
    super::guarded((), || {
        if !queue.is_null() {
            if let Ok(q) = QUEUES.remove(queue as usize) {
                q.close();
                // A produce may still be using it through a hazard pin.
                super::pins::retire(queue as usize, q);
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_queue_is_made_taken_from_and_freed() {
        let mut q: *mut wdpool_report_queue = std::ptr::null_mut();
        // SAFETY: valid out-pointers.
        assert_eq!(unsafe { wdpool_report_queue_new(&mut q, std::ptr::null_mut()) }, wdpool_result::WDPOOL_OK);
        let queue = queue_of(q).unwrap();
        queue.push(5, Report { partition: 1, offset: 2, timestamp_ms: 3, error: None });
        queue.push(6, Report::failed(Error::new(ErrorKind::Kafka, "boom").with_kafka_code(rdkafka::types::RDKafkaErrorCode::InvalidMessage)));
        // SAFETY: a live handle.
        assert_eq!(unsafe { wdpool_report_queue_len(q) }, 2);
        let mut out: [std::mem::MaybeUninit<wdpool_tagged_report>; 4] = [const { std::mem::MaybeUninit::uninit() }; 4];
        let mut n = 99;
        // SAFETY: room for 4 reports.
        let rc = unsafe { wdpool_report_queue_take(q, out[0].as_mut_ptr(), 4, 0, &mut n, std::ptr::null_mut()) };
        assert_eq!(rc, wdpool_result::WDPOOL_OK);
        assert_eq!(n, 2);
        // SAFETY: the first two were written.
        let (a, b) = unsafe { (out[0].assume_init_read(), out[1].assume_init_read()) };
        assert_eq!((a.tag, a.partition, a.offset, a.timestamp_ms, a.error_code), (5, 1, 2, 3, 0));
        assert!(a.error.is_null());
        assert_eq!((b.tag, b.error_code), (6, 2));
        assert!(!b.error.is_null());
        // SAFETY: an error the take handed over.
        unsafe { super::super::wdpool_error_free(b.error) };
        // SAFETY: as above.
        let rc = unsafe { wdpool_report_queue_take(q, out[0].as_mut_ptr(), 4, -1, &mut n, std::ptr::null_mut()) };
        assert_eq!(rc, wdpool_result::WDPOOL_INVALID_ARGUMENT);
        // SAFETY: a live handle, freed once.
        unsafe { wdpool_report_queue_free(q) };
        // SAFETY: a stale handle is refused, never dereferenced.
        let rc = unsafe { wdpool_report_queue_take(q, out[0].as_mut_ptr(), 4, 0, &mut n, std::ptr::null_mut()) };
        assert_eq!(rc, wdpool_result::WDPOOL_STALE_HANDLE);
        // SAFETY: as above.
        assert_eq!(unsafe { wdpool_report_queue_len(q) }, 0);
        // SAFETY: as above (twice: nothing).
        unsafe { wdpool_report_queue_free(q) };
    }
}
