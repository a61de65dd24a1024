//! `wdpool_producer`: a checked-out producer, valid while its callback runs
//! or until its lease is checked in. Handles are registry tokens, so using
//! one afterwards fails with WDPOOL_STALE_HANDLE instead of undefined
//! behaviour.

use std::ffi::{c_int, c_void};
use std::sync::Arc;

use super::delivery::{report_to_c, topics_of, wdpool_delivery, wdpool_report};
use super::message::{borrow_many, wdpool_message};
use super::registry::{Registered, Registry};
use super::{boundary, null, wdpool_error, wdpool_result, write_out, WDPOOL_CB_ABORT, WDPOOL_CB_OK};
use crate::error::{Error, ErrorKind, Result};
use crate::kafka::{Completion, Producer};
use crate::producer_pool::{ProducerLease, TxnLeftOpenGuard};

/// A producer checked out of a pool. Handed to a `wdpool_producer_cb` (valid
/// until the callback returns) or returned by `wdpool_pool_checkout` /
/// `wdpool_checkout` (valid until `wdpool_producer_checkin`). Afterwards
/// every call with it fails with WDPOOL_STALE_HANDLE. While valid it may be
/// used from several threads at once (librdkafka producers are thread-safe);
/// transactions on it are one at a time.
#[allow(non_camel_case_types)]
pub struct wdpool_producer {
    _private: [u8; 0],
}

/// Work with a checked-out producer. Runs on the calling thread, before the
/// call that takes it returns. Return `WDPOOL_CB_OK` on success; in a
/// transaction `WDPOOL_CB_ABORT` rolls back without an error; anything else
/// is a failure (WDPOOL_CALLBACK_FAILED, and a transaction is aborted).
/// Never unwind (C++ exceptions, Ruby non-local exits, Go panics) through it:
/// catch inside and return a failure.
#[allow(non_camel_case_types)]
pub type wdpool_producer_cb =
    Option<unsafe extern "C" fn(user_data: *mut c_void, producer: *mut wdpool_producer) -> c_int>;

/// What a producer handle tells about its producer.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct wdpool_producer_info {
    /// The slot's zero-based index (the one the configure callback got).
    pub index: usize,
    /// The id of the pool it belongs to (see `wdpool_pool_id`).
    pub pool_id: u64,
    /// It has a `transactional.id`.
    pub transactional: bool,
    /// A transaction is open on it.
    pub in_transaction: bool,
}

pub(crate) enum Held {
    /// Lent to a callback for its duration.
    Borrowed(Arc<Producer>),
    /// Checked out by `wdpool_*checkout`; goes back at checkin.
    Leased { lease: ProducerLease, open_before: bool },
}

static PRODUCERS: Registry<Held> = Registry::new("producer");

fn producer_of(handle: *mut wdpool_producer) -> Result<Arc<Producer>> {
    if handle.is_null() {
        return Err(null("producer"));
    }
    PRODUCERS.with(handle as usize, |held| match held {
        Held::Borrowed(p) => Arc::clone(p),
        Held::Leased { lease, .. } => Arc::clone(lease.conn()),
    })
}

/// Calls the user's callback with a handle that goes stale when it returns.
pub(crate) fn call_back(
    producer: &Arc<Producer>,
    callback: unsafe extern "C" fn(*mut c_void, *mut wdpool_producer) -> c_int,
    user_data: *mut c_void,
) -> Result<c_int> {
    let handle = Registered::new(&PRODUCERS, Held::Borrowed(Arc::clone(producer)))?;
    // SAFETY: the caller promised a valid callback and user data.
    Ok(unsafe { callback(user_data, handle.token as *mut wdpool_producer) })
}

pub(crate) fn callback_outcome(rc: c_int) -> Result<Completion> {
    match rc {
        WDPOOL_CB_OK => Ok(Completion::Commit),
        WDPOOL_CB_ABORT => Ok(Completion::Abort),
        rc => Err(Error::new(ErrorKind::CallbackFailed, format!("the callback returned {rc}, not WDPOOL_CB_OK"))),
    }
}

/// Registers a lease for the checkout API; returns the handle.
pub(crate) fn lease_handle(lease: ProducerLease) -> Result<*mut wdpool_producer> {
    let open_before = lease.in_transaction();
    Ok(PRODUCERS.insert(Held::Leased { lease, open_before })? as *mut wdpool_producer)
}

/// Produces and waits, writing per-message reports when asked.
fn produce_and_wait(
    producer: &Producer,
    messages: *const wdpool_message,
    count: usize,
    reports_out: *mut wdpool_report,
) -> Result<()> {
    let msgs = unsafe { borrow_many(messages, count) }?;
    producer
        .produce_sync_inspecting(&msgs, |batch| {
            if reports_out.is_null() {
                return;
            }
            for i in 0..count {
                // SAFETY: `messages` has `count` entries (checked by
                // borrow_many) and the caller gave room for `count` reports.
                let topic = unsafe { (*messages.add(i)).topic };
                let report = batch.report(i).map_or(
                    wdpool_report { topic, partition: -1, offset: -1, timestamp_ms: -1, error_code: RD_KAFKA_RESP_ERR_TIMED_OUT },
                    |r| report_to_c(topic, &r),
                );
                unsafe { write_out(reports_out.add(i), report) };
            }
        })
        .map(drop)
}

/// librdkafka's "timed out" code, for reports that did not arrive in time.
const RD_KAFKA_RESP_ERR_TIMED_OUT: i32 = -185;

fn produce_async(
    producer: &Producer,
    messages: *const wdpool_message,
    count: usize,
    delivery_out: *mut *mut wdpool_delivery,
) -> Result<()> {
    let msgs = unsafe { borrow_many(messages, count) }?;
    let batch = producer.produce_async(&msgs)?;
    if !delivery_out.is_null() {
        let handle = wdpool_delivery::new(batch, topics_of(&msgs), producer.max_wait());
        unsafe { write_out(delivery_out, Box::into_raw(handle)) };
    }
    Ok(())
}

/// Produces one message and waits for its delivery report (at most the
/// producer's `max_wait_timeout`). The message is validated first; nothing
/// is sent when it is invalid. On a transactional producer outside a
/// transaction, the message gets a transaction of its own.
///
/// `report_out`: NULL, or where to write the report (its `topic` is
/// `message->topic`); written when the message was sent, even if delivery
/// failed. Returns WDPOOL_OK, WDPOOL_NULL_PARAMETER, WDPOOL_INVALID_MESSAGE,
/// WDPOOL_KAFKA (delivery failed), WDPOOL_DELIVERY_TIMEOUT, WDPOOL_CLOSED,
/// WDPOOL_FATAL, WDPOOL_TRANSACTION_ABORTED (its own transaction failed),
/// WDPOOL_STALE_HANDLE. Blocks; any thread while the handle is valid.
#[no_mangle]
pub unsafe extern "C" fn wdpool_producer_produce_sync(
    producer: *mut wdpool_producer,
    message: *const wdpool_message,
    report_out: *mut wdpool_report,
    err: *mut *mut wdpool_error,
) -> wdpool_result {
    boundary(err, || {
        let p = producer_of(producer)?;
        if message.is_null() {
            return Err(null("message"));
        }
        produce_and_wait(&p, message, 1, report_out)
    })
}

/// Produces `count` messages and waits for all their reports. All are
/// validated first: if any is invalid nothing is sent and the error names
/// its index and field. A transactional producer outside a transaction puts
/// them all in one transaction.
///
/// `reports_out`: NULL, or room for `count` reports, written in message
/// order when the messages were sent, even if some failed. Returns as
/// `wdpool_producer_produce_sync`; WDPOOL_KAFKA says how many failed.
#[no_mangle]
pub unsafe extern "C" fn wdpool_producer_produce_many_sync(
    producer: *mut wdpool_producer,
    messages: *const wdpool_message,
    count: usize,
    reports_out: *mut wdpool_report,
    err: *mut *mut wdpool_error,
) -> wdpool_result {
    boundary(err, || {
        let p = producer_of(producer)?;
        produce_and_wait(&p, messages, count, reports_out)
    })
}

/// Produces one message without waiting for its delivery. The message is
/// validated first and copied; the caller may free it when this returns.
///
/// `delivery_out`: NULL (fire and forget), or where to store a new
/// `wdpool_delivery` to wait on and read the report from; the caller owns it
/// and frees it with `wdpool_delivery_free`. Written only on WDPOOL_OK. On a
/// transactional producer outside a transaction the message is committed in
/// its own transaction before this returns. Returns WDPOOL_OK,
/// WDPOOL_NULL_PARAMETER, WDPOOL_INVALID_MESSAGE, WDPOOL_KAFKA (could not be
/// queued), WDPOOL_CLOSED, WDPOOL_FATAL, WDPOOL_TRANSACTION_ABORTED,
/// WDPOOL_STALE_HANDLE.
#[no_mangle]
pub unsafe extern "C" fn wdpool_producer_produce_async(
    producer: *mut wdpool_producer,
    message: *const wdpool_message,
    delivery_out: *mut *mut wdpool_delivery,
    err: *mut *mut wdpool_error,
) -> wdpool_result {
    boundary(err, || {
        let p = producer_of(producer)?;
        if message.is_null() {
            return Err(null("message"));
        }
        produce_async(&p, message, 1, delivery_out)
    })
}

/// Produces `count` messages without waiting; one `wdpool_delivery` covers
/// them all. Validation and ownership as `wdpool_producer_produce_async`;
/// nothing is sent if any message is invalid. If librdkafka refuses one of
/// them (an unknown partition, a queue full for longer than
/// `max_wait_timeout`), the others are still sent, the call returns
/// WDPOOL_KAFKA naming the first refusal, no delivery handle is written, and
/// an open transaction can then only abort.
#[no_mangle]
pub unsafe extern "C" fn wdpool_producer_produce_many_async(
    producer: *mut wdpool_producer,
    messages: *const wdpool_message,
    count: usize,
    delivery_out: *mut *mut wdpool_delivery,
    err: *mut *mut wdpool_error,
) -> wdpool_result {
    boundary(err, || {
        let p = producer_of(producer)?;
        produce_async(&p, messages, count, delivery_out)
    })
}

/// Waits until every message this producer has queued is delivered or
/// failed, at most its `max_wait_timeout`.
///
/// Returns WDPOOL_OK, WDPOOL_NULL_PARAMETER, WDPOOL_DELIVERY_TIMEOUT,
/// WDPOOL_CLOSED, WDPOOL_FATAL, WDPOOL_STALE_HANDLE. Blocks.
#[no_mangle]
pub unsafe extern "C" fn wdpool_producer_flush(producer: *mut wdpool_producer, err: *mut *mut wdpool_error) -> wdpool_result {
    boundary(err, || producer_of(producer)?.flush())
}

/// Runs `callback` in a transaction on this producer: committed when it
/// returns WDPOOL_CB_OK, aborted when it returns WDPOOL_CB_ABORT (then the
/// result is WDPOOL_OK) or anything else (WDPOOL_CALLBACK_FAILED). Inside an
/// open transaction it runs as part of that one; a failure inside makes the
/// outer transaction abort. The callback gets this same handle.
///
/// Returns WDPOOL_OK, WDPOOL_NULL_PARAMETER, WDPOOL_NOT_TRANSACTIONAL,
/// WDPOOL_CALLBACK_FAILED, WDPOOL_TRANSACTION_ABORTED (an abortable Kafka
/// error: aborted), WDPOOL_KAFKA, WDPOOL_FATAL (the producer is replaced),
/// WDPOOL_STALE_HANDLE.
#[no_mangle]
pub unsafe extern "C" fn wdpool_producer_transaction(
    producer: *mut wdpool_producer,
    callback: wdpool_producer_cb,
    user_data: *mut c_void,
    err: *mut *mut wdpool_error,
) -> wdpool_result {
    boundary(err, || {
        let p = producer_of(producer)?;
        let callback = callback.ok_or_else(|| null("callback"))?;
        // SAFETY: the caller promised a valid callback and user data.
        p.transaction(|| callback_outcome(unsafe { callback(user_data, producer) })).map(drop)
    })
}

/// Opens a transaction (or a nested level inside the open one), for callers
/// that cannot use a callback. Pair it with `wdpool_producer_commit` or
/// `wdpool_producer_abort`. A transaction still open when the handle's
/// callback returns or its lease is checked in is aborted, and that call
/// fails with WDPOOL_TRANSACTION_ABORTED.
///
/// Returns WDPOOL_OK, WDPOOL_NULL_PARAMETER, WDPOOL_NOT_TRANSACTIONAL,
/// WDPOOL_KAFKA, WDPOOL_FATAL, WDPOOL_STALE_HANDLE.
#[no_mangle]
pub unsafe extern "C" fn wdpool_producer_begin(producer: *mut wdpool_producer, err: *mut *mut wdpool_error) -> wdpool_result {
    boundary(err, || producer_of(producer)?.begin_transaction())
}

/// Ends one transaction level; the outermost commits (retrying what Kafka
/// calls retriable). An abortable failure aborts it.
///
/// Returns WDPOOL_OK, WDPOOL_NULL_PARAMETER, WDPOOL_INVALID_ARGUMENT (no
/// transaction open), WDPOOL_TRANSACTION_ABORTED, WDPOOL_KAFKA, WDPOOL_FATAL,
/// WDPOOL_STALE_HANDLE.
#[no_mangle]
pub unsafe extern "C" fn wdpool_producer_commit(producer: *mut wdpool_producer, err: *mut *mut wdpool_error) -> wdpool_result {
    boundary(err, || producer_of(producer)?.commit_transaction())
}

/// Ends one transaction level by aborting; an inner level makes the outer
/// transaction abort when it ends.
///
/// Returns WDPOOL_OK, WDPOOL_NULL_PARAMETER, WDPOOL_INVALID_ARGUMENT (no
/// transaction open), WDPOOL_FATAL, WDPOOL_STALE_HANDLE.
#[no_mangle]
pub unsafe extern "C" fn wdpool_producer_abort(producer: *mut wdpool_producer, err: *mut *mut wdpool_error) -> wdpool_result {
    boundary(err, || producer_of(producer)?.abort_transaction())
}

/// Fills `*info_out` with what the handle's producer is.
///
/// Returns WDPOOL_OK, WDPOOL_NULL_PARAMETER, WDPOOL_STALE_HANDLE.
#[no_mangle]
pub unsafe extern "C" fn wdpool_producer_get_info(
    producer: *mut wdpool_producer,
    info_out: *mut wdpool_producer_info,
    err: *mut *mut wdpool_error,
) -> wdpool_result {
    boundary(err, || {
        let p = producer_of(producer)?;
        if info_out.is_null() {
            return Err(null("info_out"));
        }
        let info = wdpool_producer_info {
            index: p.index(),
            pool_id: p.pool_id(),
            transactional: p.is_transactional(),
            in_transaction: p.in_transaction(),
        };
        unsafe { write_out(info_out, info) };
        Ok(())
    })
}

/// Returns a producer checked out with `wdpool_pool_checkout` or
/// `wdpool_checkout` to its pool; the handle is stale afterwards. A
/// transaction opened on it and still open is aborted (the producer still
/// goes back). A broken producer is replaced; one returned after its pool
/// was closed is closed.
///
/// Returns WDPOOL_OK, WDPOOL_NULL_PARAMETER, WDPOOL_TRANSACTION_ABORTED,
/// WDPOOL_INVALID_ARGUMENT (a handle given to a callback: it goes back when
/// the callback returns), WDPOOL_STALE_HANDLE (already checked in). Any
/// thread.
#[no_mangle]
pub unsafe extern "C" fn wdpool_producer_checkin(producer: *mut wdpool_producer, err: *mut *mut wdpool_error) -> wdpool_result {
    boundary(err, || {
        if producer.is_null() {
            return Err(null("producer"));
        }
        let held = PRODUCERS.remove_if(producer as usize, |held| match held {
            Held::Leased { .. } => Ok(()),
            Held::Borrowed(_) => Err(Error::new(
                ErrorKind::InvalidArgument,
                "this producer was lent to a callback; it goes back when the callback returns",
            )),
        })?;
        match held {
            Held::Leased { lease, open_before } => TxnLeftOpenGuard::resume(&lease, open_before).finish(Ok(())),
            Held::Borrowed(_) => unreachable!("refused above"),
        }
    })
}

