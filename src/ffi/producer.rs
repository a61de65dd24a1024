//! `wdpool_producer`: a checked-out producer, valid while its callback runs
//! or until its lease is checked in. Handles are registry tokens, so using
//! one afterwards fails with WDPOOL_STALE_HANDLE instead of undefined
//! behaviour.

use std::ffi::{c_int, c_void};
use std::mem::ManuallyDrop;
use std::sync::Arc;

use super::frames;
use super::delivery::{report_to_c, topics_of, wdpool_delivery, wdpool_report, Delivery, DELIVERIES};
use super::message::{borrow, borrow_many, wdpool_message};
use super::registry::{Kind, Registered, Registry};
use super::{boundary, deadline_arg, null, timeout_or, wdpool_error, wdpool_result, write_out, WDPOOL_CB_ABORT, WDPOOL_CB_OK};
use crate::error::{Error, ErrorKind, Result};
use crate::kafka::{Completion, Ended, Message, Outcome, Producer};
use crate::pool::{thread_token, OwnerId};
use crate::producer_pool::{ProducerLease, TxnLeftOpenGuard};
use rdkafka::types::RDKafkaRespErr;

/// A producer checked out of a pool: a handle, not a pointer (never
/// dereference it). Handed to a `wdpool_producer_cb` (valid until the
/// callback returns) or returned by `wdpool_pool_checkout` /
/// `wdpool_checkout` (valid until `wdpool_producer_checkin`). Afterwards,
/// and in a process forked after it was made, every call with it fails with
/// WDPOOL_STALE_HANDLE; a handle of another kind fails with
/// WDPOOL_INVALID_ARGUMENT.
///
/// The C type is a pointer to an incomplete struct so that C and C++
/// compilers refuse a handle of another kind; its value is an opaque token.
/// Go's garbage collector does not treat pointers to incomplete C types as
/// pointers, so holding one in Go memory is safe.
///
/// Threads: while valid, it may be used from several threads at once.
/// Transactions belong to an owner (see `wdpool_owner`): a call acts for
/// the lease's owner, or, for a handle of a thread (a callback's, or a
/// checkout with WDPOOL_OWNER_THREAD), for the calling thread. Another
/// owner's transaction is never joined: transactional calls wait for it to
/// end, bounded by their timeout.
///
/// Cost: a callback's handle is cheapest on the callback's own thread. The
/// first time another thread uses a handle of a given callback nesting level
/// of a thread, that call makes one `membarrier` system call (a few
/// microseconds; see README "Performance"); later uses from other threads
/// cost an atomic operation or two, as on the callback's thread.
#[allow(non_camel_case_types)]
pub struct wdpool_producer {
    _private: [u8; 0],
}

/// Work with a checked-out producer. Runs on the calling thread, before the
/// call that takes it returns. Return `WDPOOL_CB_OK` on success; in a
/// transaction `WDPOOL_CB_ABORT` rolls back without an error; anything else
/// is a failure (WDPOOL_CALLBACK_FAILED, and a transaction is rolled back).
///
/// It must return normally: never unwind or jump out of it (no `longjmp`,
/// no C++ exception, no Ruby non-local exit, no Go panic): catch inside and
/// return a failure. Bindings whose blocks can exit non-locally use the
/// checkout / `wdpool_producer_end` calls instead.
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
    /// A transaction is open (or being begun or ended) on it, by any owner.
    pub in_transaction: bool,
    /// How many transaction levels the caller has open: 0 outside its
    /// transaction. The caller is the handle's owner; for a thread's handle,
    /// the calling thread (another thread sharing it sees 0).
    pub depth: u32,
    /// The open transaction can only roll back now (an inner level aborted,
    /// failed or exited early, or a message was refused).
    pub rollback_only: bool,
}

/// How a transaction level's body ended, for `wdpool_producer_end`. Passed
/// as an `int`; other values are refused with WDPOOL_INVALID_ARGUMENT.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum wdpool_txn_outcome {
    /// The body succeeded: commit (when every level did).
    WDPOOL_TXN_COMMIT = 1,
    /// WaterDrop's abort signal: roll the whole transaction back, no error.
    WDPOOL_TXN_ABORT = 2,
    /// The body failed (raised, returned an error): roll back. The caller
    /// reports its own failure.
    WDPOOL_TXN_FAIL = 3,
    /// The body left early (Ruby's break/return/throw, Go's Goexit): roll
    /// back; the outermost level reports WDPOOL_TRANSACTION_EXITED_EARLY.
    WDPOOL_TXN_EXIT = 4,
}

/// What `wdpool_producer_end` did, written to its `ended_out`.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum wdpool_txn_ended {
    /// The transaction was committed.
    WDPOOL_TXN_COMMITTED = 1,
    /// The transaction was rolled back (an abort requested at some level,
    /// or the caller's own failure).
    WDPOOL_TXN_ROLLED_BACK = 2,
    /// A nested level ended; the outermost level decides.
    WDPOOL_TXN_LEVEL_CLOSED = 3,
}

pub(crate) enum Held {
    /// Lent to a callback for its duration.
    /// `producer` aliases the lease's `Arc` without counting (never
    /// dropped): the handle is removed before the callback's lease ends.
    /// `thread` is the thread running the callback.
    Borrowed { producer: ManuallyDrop<Arc<Producer>>, owner: OwnerId, thread: u64 },
    /// Checked out by `wdpool_*checkout`; goes back at checkin.
    Leased { lease: ProducerLease, open_before: bool },
}

static PRODUCERS: Registry<Held> = Registry::new(Kind::Producer);

/// The producer behind a handle for the length of one call.
pub(crate) enum ProducerRef {
    /// The callback's own thread using the callback's handle: the lease
    /// cannot end before this call returns (the callback has not returned),
    /// so an uncounted alias of its `Arc` does.
    Own(ManuallyDrop<Arc<Producer>>),
    /// Any other use: counted, for the handle may end meanwhile (a checkin
    /// or the callback's return on another thread).
    Shared(Arc<Producer>),
}

impl std::ops::Deref for ProducerRef {
    type Target = Arc<Producer>;
    fn deref(&self) -> &Arc<Producer> {
        match self {
            ProducerRef::Own(p) => p,
            ProducerRef::Shared(p) => p,
        }
    }
}

/// The producer behind a handle, and who acts when it is used now.
pub(crate) fn producer_of(handle: *mut wdpool_producer) -> Result<(ProducerRef, OwnerId)> {
    if handle.is_null() {
        return Err(null("producer"));
    }
    if frames::is_frame(handle as usize) {
        return Ok(match frames::resolve(handle as usize)? {
            frames::Resolved::Own(producer, owner) => (ProducerRef::Own(producer), owner.acting()),
            frames::Resolved::Shared(producer, owner) => (ProducerRef::Shared(producer), owner.acting()),
        });
    }
    PRODUCERS.with(handle as usize, |held| match held {
        Held::Borrowed { producer, owner, thread } if *thread == thread_token() => {
            // SAFETY: an alias of the lease's `Arc`, which outlives this
            // call (see `ProducerRef::Own`); never dropped.
            let alias = ManuallyDrop::new(unsafe { Arc::from_raw(Arc::as_ptr(producer)) });
            (ProducerRef::Own(alias), owner.acting())
        }
        Held::Borrowed { producer, owner, .. } => (ProducerRef::Shared(Arc::clone(producer)), owner.acting()),
        Held::Leased { lease, .. } => (ProducerRef::Shared(Arc::clone(lease.conn())), lease.owner().acting()),
    })
}

/// Calls the user's callback with a handle that goes stale when it returns:
/// a frame of the calling thread (`frames`), or a registry entry when
/// callbacks nest deeper than the frames go.
pub(crate) fn call_back(
    producer: &Arc<Producer>,
    owner: OwnerId,
    callback: unsafe extern "C" fn(*mut c_void, *mut wdpool_producer) -> c_int,
    user_data: *mut c_void,
) -> Result<c_int> {
    if let Some(frame) = frames::enter(producer, owner) {
        // SAFETY: the caller of the export promised a valid callback and
        // user data; the handle is a token, valid until `frame` drops.
        return Ok(unsafe { callback(user_data, frame.token as *mut wdpool_producer) });
    }
    // SAFETY: an uncounted alias of the lease's `Arc`, which outlives the
    // registration (`handle` is dropped, and the entry removed, at the end
    // of this function).
    let alias = ManuallyDrop::new(unsafe { Arc::from_raw(Arc::as_ptr(producer)) });
    let handle = Registered::new(&PRODUCERS, Held::Borrowed { producer: alias, owner, thread: thread_token() })?;
    // SAFETY: as above.
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
#[inline]
pub(crate) fn lease_handle(lease: ProducerLease) -> Result<*mut wdpool_producer> {
    let open_before = lease.in_transaction();
    Ok(PRODUCERS.insert(Held::Leased { lease, open_before })? as *mut wdpool_producer)
}

/// Produces and waits, writing per-message reports when asked.
///
/// # Safety
/// `messages` is valid for `count` messages and `reports_out` NULL or valid
/// for `count` reports.
unsafe fn produce_and_wait(
    handle: *mut wdpool_producer,
    messages: *const wdpool_message,
    count: usize,
    timeout_ms: i64,
    reports_out: *mut wdpool_report,
) -> Result<()> {
    let (producer, who) = producer_of(handle)?;
    // SAFETY: as promised by the caller.
    let msgs = unsafe { borrow_many(messages, count) }?;
    let timeout = timeout_or(timeout_ms, producer.max_wait());
    producer
        .produce_sync_inspecting(who, &msgs, timeout, |batch| {
            if reports_out.is_null() {
                return;
            }
            for i in 0..count {
                // SAFETY: `messages` has `count` entries (borrow_many read
                // them) and the caller gave room for `count` reports.
                let topic = unsafe { (*messages.add(i)).topic };
                let report = batch.report(i).map_or(
                    wdpool_report {
                        topic,
                        partition: -1,
                        offset: -1,
                        timestamp_ms: -1,
                        error_code: RDKafkaRespErr::RD_KAFKA_RESP_ERR__TIMED_OUT as i32,
                    },
                    |r| report_to_c(topic, &r),
                );
                // SAFETY: index `i < count`, within the caller's array.
                unsafe { write_out(reports_out.add(i), report) };
            }
        })
        .map(drop)
}

/// # Safety
/// `messages` is valid for `count` messages; `delivery_out` NULL or
/// writable.
unsafe fn produce_async(
    handle: *mut wdpool_producer,
    messages: *const wdpool_message,
    count: usize,
    delivery_out: *mut *mut wdpool_delivery,
) -> Result<()> {
    let (producer, who) = producer_of(handle)?;
    if delivery_out.is_null() && count == 1 && !messages.is_null() {
        // Fire and forget one message: no batch, no vector.
        // SAFETY: one readable message, as promised by the caller.
        let msg = unsafe { borrow(&*messages) }?;
        return producer.produce_async_untracked(who, std::slice::from_ref(&msg));
    }
    // SAFETY: as promised by the caller.
    let msgs = unsafe { borrow_many(messages, count) }?;
    if delivery_out.is_null() {
        return producer.produce_async_untracked(who, &msgs);
    }
    // SAFETY: not NULL, and writable as promised by the caller.
    unsafe { produce_tracked(&producer, who, &msgs, delivery_out) }
}

/// Produces `msgs` without waiting, storing a new delivery handle for them
/// in `*delivery_out`.
///
/// # Safety
/// `delivery_out` is not NULL and is writable.
pub(crate) unsafe fn produce_tracked(
    producer: &Producer,
    who: OwnerId,
    msgs: &[Message<'_>],
    delivery_out: *mut *mut wdpool_delivery,
) -> Result<()> {
    let batch = producer.produce_async_as(who, msgs)?;
    let delivery = Delivery::new(batch, topics_of(msgs), producer.max_wait());
    let token = DELIVERIES.insert(Arc::new(delivery))?;
    // SAFETY: as promised by the caller.
    unsafe { write_out(delivery_out, token as *mut wdpool_delivery) };
    Ok(())
}

/// Produces one message and waits for its delivery report.
///
/// The message is validated first; nothing is sent when it is invalid. On a
/// transactional producer outside the caller's transaction, the message
/// gets a transaction of its own, committed before this returns (waiting
/// first, within the timeout, while another owner's transaction is open).
///
/// Blocks:     up to `timeout_ms` in all (WDPOOL_TIMEOUT_DEFAULT: the
///             producer's `max_wait_timeout`; 0: do not wait for the report,
///             which then fails with WDPOOL_DELIVERY_TIMEOUT).
/// Calls back: transaction event subscribers, on this thread, for its own
///             transaction.
/// Thread:     any, while the handle is valid.
/// report_out: NULL, or where to write the report (its `topic` is
///             `message->topic`); written once the message was handed to
///             librdkafka, even when delivery failed or timed out.
/// Returns:    OK, NULL_PARAMETER, INVALID_ARGUMENT (wrong handle kind),
///             INVALID_MESSAGE, KAFKA (delivery failed), DELIVERY_TIMEOUT,
///             TIMEOUT (another owner's transaction did not end in time),
///             CLOSED, FATAL, TRANSACTION_ABORTED (its own transaction
///             failed), STALE_HANDLE.
#[no_mangle]
pub unsafe extern "C" fn wdpool_producer_produce_sync(
    producer: *mut wdpool_producer,
    message: *const wdpool_message,
    timeout_ms: i64,
    report_out: *mut wdpool_report,
    err: *mut *mut wdpool_error,
) -> wdpool_result {
    boundary(err, || {
        if message.is_null() {
            return Err(null("message"));
        }
        // SAFETY: one readable message; `report_out` NULL or writable.
        unsafe { produce_and_wait(producer, message, 1, timeout_ms, report_out) }
    })
}

/// Produces `count` messages and waits for all their reports.
///
/// All are validated first: if any is invalid nothing is sent and the error
/// names its index and field. A transactional producer outside the caller's
/// transaction puts them all in one transaction. `count` 0 does nothing.
///
/// Blocks:      as `wdpool_producer_produce_sync`, one timeout for all.
/// Calls back:  as `wdpool_producer_produce_sync`.
/// Thread:      any, while the handle is valid.
/// reports_out: NULL, or room for `count` reports, written in message order
///              once the messages were handed to librdkafka, even if some
///              failed.
/// Returns:     as `wdpool_producer_produce_sync`; KAFKA says how many
///              failed and the first failure.
#[no_mangle]
pub unsafe extern "C" fn wdpool_producer_produce_many_sync(
    producer: *mut wdpool_producer,
    messages: *const wdpool_message,
    count: usize,
    timeout_ms: i64,
    reports_out: *mut wdpool_report,
    err: *mut *mut wdpool_error,
) -> wdpool_result {
    // SAFETY: as documented: `count` readable messages, room for `count`
    // reports or NULL.
    boundary(err, || unsafe { produce_and_wait(producer, messages, count, timeout_ms, reports_out) })
}

/// Produces one message without waiting for its delivery. The message is
/// validated first and copied; the caller may free it when this returns.
///
/// Blocks:       only while librdkafka's queue is full (up to the producer's
///               `max_wait_timeout`); on a transactional producer outside
///               the caller's transaction, until the message's own
///               transaction is committed (bounded the same way).
/// Calls back:   transaction event subscribers, on this thread, for its own
///               transaction.
/// Thread:       any, while the handle is valid.
/// delivery_out: NULL (fire and forget), or where to store a new
///               `wdpool_delivery` to wait on and read the report from; the
///               caller owns it and frees it with `wdpool_delivery_free`.
///               Written only on OK.
/// Returns:      OK, NULL_PARAMETER, INVALID_ARGUMENT, INVALID_MESSAGE,
///               KAFKA (could not be queued), TIMEOUT, CLOSED, FATAL,
///               TRANSACTION_ABORTED, STALE_HANDLE.
#[no_mangle]
pub unsafe extern "C" fn wdpool_producer_produce_async(
    producer: *mut wdpool_producer,
    message: *const wdpool_message,
    delivery_out: *mut *mut wdpool_delivery,
    err: *mut *mut wdpool_error,
) -> wdpool_result {
    boundary(err, || {
        if message.is_null() {
            return Err(null("message"));
        }
        // SAFETY: one readable message; `delivery_out` NULL or writable.
        unsafe { produce_async(producer, message, 1, delivery_out) }
    })
}

/// Produces one message without waiting, its delivery report to come in
/// `queue` tagged with `tag` (see `wdpool_report_queue`): no delivery
/// handle to make, read and free per message. The message is validated
/// first and copied; the caller may free it when this returns.
///
/// OK: exactly one report with `tag` will come in `queue` (delivered or
/// failed; librdkafka reports every message it accepted, within its
/// `message.timeout.ms`, or at once when the producer is closed by force).
/// Any other result: the message may still get a report (it was sent, then
/// its implicit transaction failed to commit) or none (refused, invalid);
/// a caller ignores tags it does not track. Tags are the caller's: wdpool
/// neither checks nor needs them to be unique.
///
/// Blocks:     as `wdpool_producer_produce_async`.
/// Calls back: as `wdpool_producer_produce_async`.
/// Thread:     any, while the handle is valid.
/// Returns:    those of `wdpool_producer_produce_async`; NULL_PARAMETER
///             and STALE_HANDLE also for `queue`.
#[no_mangle]
pub unsafe extern "C" fn wdpool_producer_produce_tagged(
    producer: *mut wdpool_producer,
    message: *const wdpool_message,
    queue: *const super::wdpool_report_queue,
    tag: u64,
    err: *mut *mut wdpool_error,
) -> wdpool_result {
    boundary(err, || {
        if message.is_null() {
            return Err(null("message"));
        }
        let (producer, who) = producer_of(producer)?;
        // SAFETY: one readable message, as promised by the caller.
        let msg = unsafe { borrow(&*message) }?;
        super::reports::with_queue(queue, |q, arc| {
            producer.produce_async_queued(who, std::slice::from_ref(&msg), q, arc, tag)
        })
    })
}

/// The producer's `max_wait_timeout` in milliseconds, stored in `*ms_out`:
/// what its calls wait at most when given WDPOOL_TIMEOUT_DEFAULT (for a
/// binding that waits for a report itself, as for a `wdpool_report_queue`).
///
/// Blocks: never. Calls back: nothing. Thread: any, while the handle is
/// valid.
/// Returns: OK, NULL_PARAMETER, INVALID_ARGUMENT, STALE_HANDLE.
#[no_mangle]
pub unsafe extern "C" fn wdpool_producer_max_wait_timeout(
    producer: *const wdpool_producer,
    ms_out: *mut u64,
    err: *mut *mut wdpool_error,
) -> wdpool_result {
    boundary(err, || {
        if ms_out.is_null() {
            return Err(null("ms_out"));
        }
        let (producer, _) = producer_of(producer as *mut wdpool_producer)?;
        let ms = u64::try_from(producer.max_wait().as_millis()).unwrap_or(u64::MAX);
        // SAFETY: checked for NULL; the caller passes a writable pointer.
        unsafe { write_out(ms_out, ms) };
        Ok(())
    })
}

/// Produces `count` messages without waiting; one `wdpool_delivery` covers
/// them all. Validation, blocking, threads and ownership as
/// `wdpool_producer_produce_async`; nothing is sent if any message is
/// invalid. If librdkafka refuses one of them (an unknown partition, a
/// queue full for longer than `max_wait_timeout`), the others are still
/// sent, the call returns WDPOOL_KAFKA naming the first refusal, no delivery
/// handle is written, and an open transaction can then only roll back.
///
/// Returns: as `wdpool_producer_produce_async`.
#[no_mangle]
pub unsafe extern "C" fn wdpool_producer_produce_many_async(
    producer: *mut wdpool_producer,
    messages: *const wdpool_message,
    count: usize,
    delivery_out: *mut *mut wdpool_delivery,
    err: *mut *mut wdpool_error,
) -> wdpool_result {
    // SAFETY: as documented: `count` readable messages; `delivery_out` NULL
    // or writable.
    boundary(err, || unsafe { produce_async(producer, messages, count, delivery_out) })
}

/// Waits until every message this producer has queued (by any caller) is
/// delivered or failed.
///
/// Blocks:     up to `timeout_ms` (WDPOOL_TIMEOUT_DEFAULT: the producer's
///             `max_wait_timeout`; 0: only checks).
/// Calls back: nothing.
/// Thread:     any, while the handle is valid.
/// Returns:    OK, NULL_PARAMETER, INVALID_ARGUMENT, DELIVERY_TIMEOUT,
///             CLOSED, FATAL, STALE_HANDLE.
#[no_mangle]
pub unsafe extern "C" fn wdpool_producer_flush(
    producer: *mut wdpool_producer,
    timeout_ms: i64,
    err: *mut *mut wdpool_error,
) -> wdpool_result {
    boundary(err, || {
        let (p, _) = producer_of(producer)?;
        p.flush(timeout_or(timeout_ms, p.max_wait()))
    })
}

/// Runs `callback(user_data, producer)` as one transaction level: begins
/// (or nests inside the caller's open transaction), then ends the level
/// with the callback's result: WDPOOL_CB_OK commits (when every level
/// did), WDPOOL_CB_ABORT rolls the whole transaction back without an error,
/// anything else rolls it back (WDPOOL_CALLBACK_FAILED). A callback that
/// leaves a level of its own open makes this call fail with
/// TRANSACTION_ABORTED; one that tries to end the level it runs in (commit
/// or abort inside it) has that call refused with INVALID_ARGUMENT and
/// makes this call fail with INVALID_ARGUMENT; either way the transaction
/// rolls back. The callback gets this same handle.
///
/// Blocks:     while another owner's transaction is open on the producer,
///             then for commit or abort; each bounded by the producer's
///             `max_wait_timeout`.
/// Calls back: `callback` once, on this thread; transaction event
///             subscribers, on this thread.
/// Thread:     any, while the handle is valid.
/// Returns:    OK (committed, or rolled back on WDPOOL_CB_ABORT at this or
///             an inner level), NULL_PARAMETER, INVALID_ARGUMENT,
///             NOT_TRANSACTIONAL, CALLBACK_FAILED, TRANSACTION_ABORTED
///             (an abortable Kafka error, or an inner level failed),
///             TRANSACTION_EXITED_EARLY (an inner level exited early),
///             TIMEOUT, KAFKA, FATAL (the producer will be replaced),
///             STALE_HANDLE.
#[no_mangle]
pub unsafe extern "C" fn wdpool_producer_transaction(
    producer: *mut wdpool_producer,
    callback: wdpool_producer_cb,
    user_data: *mut c_void,
    err: *mut *mut wdpool_error,
) -> wdpool_result {
    boundary(err, || {
        let (p, who) = producer_of(producer)?;
        let callback = callback.ok_or_else(|| null("callback"))?;
        let deadline = deadline_arg(-1, p.max_wait());
        // SAFETY: the caller promised a valid callback and user data; the
        // handle stays valid for the call.
        p.transaction_as(who, deadline, || callback_outcome(unsafe { callback(user_data, producer) })).map(drop)
    })
}

/// Opens a transaction for the caller (the handle's owner), or a nested
/// level inside the caller's open one, for callers that cannot use a
/// callback. End every level with `wdpool_producer_end` (or `_commit` /
/// `_abort`). A transaction still open when the handle's callback returns
/// or its lease is checked in is rolled back, and that call fails with
/// WDPOOL_TRANSACTION_ABORTED.
///
/// Blocks:     while another owner's transaction is open on this producer,
///             up to `timeout_ms` (WDPOOL_TIMEOUT_DEFAULT: the producer's
///             `max_wait_timeout`); never while holding a lock.
/// Calls back: the `transaction.started` subscribers, on this thread.
/// Thread:     any, while the handle is valid.
/// Returns:    OK, NULL_PARAMETER, INVALID_ARGUMENT, NOT_TRANSACTIONAL,
///             TIMEOUT, KAFKA, FATAL, STALE_HANDLE.
#[no_mangle]
pub unsafe extern "C" fn wdpool_producer_begin(
    producer: *mut wdpool_producer,
    timeout_ms: i64,
    err: *mut *mut wdpool_error,
) -> wdpool_result {
    boundary(err, || {
        let (p, who) = producer_of(producer)?;
        p.begin_as(who, deadline_arg(timeout_ms, p.max_wait()))
    })
}

/// Ends the caller's innermost transaction level with `outcome` (a
/// `wdpool_txn_outcome`), applying the nesting rules once for every
/// binding: an inner level only records its outcome; the outermost level
/// commits when it and every inner level ended with WDPOOL_TXN_COMMIT, and
/// rolls back otherwise. A binding calls this from its `ensure` / `defer`
/// with what happened and raises what it returns.
///
/// What the outermost level returns, by its own outcome: FAIL: OK
/// (ROLLED_BACK; the caller has its own error to report). EXIT:
/// TRANSACTION_EXITED_EARLY. ABORT: OK (ROLLED_BACK). COMMIT: OK
/// (COMMITTED) when no inner level ended otherwise; TRANSACTION_EXITED_EARLY
/// when an inner level exited early; else TRANSACTION_ABORTED when an inner
/// level failed (or a message was refused, or a callback tried to end its
/// own level); else OK (ROLLED_BACK) when an inner level asked to abort.
/// An inner level returns OK (LEVEL_CLOSED) whatever its outcome.
///
/// Whose level: the handle's owner's (the calling thread's for a thread's
/// handle; the lease's unique owner, from any thread, for a checkout with
/// WDPOOL_OWNER_NONE; the key's, from any thread, for a key).
///
/// Blocks:     for commit or abort, up to `timeout_ms` (WDPOOL_TIMEOUT_DEFAULT:
///             the producer's `max_wait_timeout`; retriable errors are
///             retried within it). A commit that cannot finish in time makes
///             the producer unusable: it is replaced (WDPOOL_FATAL).
/// Calls back: `transaction.committed` / `transaction.aborted` subscribers,
///             on this thread.
/// Thread:     any, while the handle is valid.
/// ended_out:  NULL, or where to write a `wdpool_txn_ended`; written on OK.
/// Returns:    OK (committed, rolled back on request or for the caller's
///             own failure, or a nested level closed: see `ended_out`),
///             NULL_PARAMETER, INVALID_ARGUMENT (unknown outcome, no
///             transaction of the caller is open, or the level belongs to a
///             transaction callback still running: refused, and the
///             transaction can only roll back), TRANSACTION_ABORTED (an
///             abortable Kafka error, or an inner level failed: rolled
///             back), TRANSACTION_EXITED_EARLY (WDPOOL_TXN_EXIT at some
///             level: rolled back), KAFKA, FATAL, STALE_HANDLE.
#[no_mangle]
pub unsafe extern "C" fn wdpool_producer_end(
    producer: *mut wdpool_producer,
    outcome: c_int,
    timeout_ms: i64,
    ended_out: *mut c_int,
    err: *mut *mut wdpool_error,
) -> wdpool_result {
    boundary(err, || {
        let outcome = match outcome {
            1 => Outcome::Commit,
            2 => Outcome::Abort,
            3 => Outcome::Fail,
            4 => Outcome::Exit,
            other => {
                return Err(Error::new(ErrorKind::InvalidArgument, format!("{other} is not a wdpool_txn_outcome")))
            }
        };
        let (p, who) = producer_of(producer)?;
        let ended = p.end_as(who, outcome, deadline_arg(timeout_ms, p.max_wait()))?;
        if !ended_out.is_null() {
            let code = match ended {
                Ended::Committed => wdpool_txn_ended::WDPOOL_TXN_COMMITTED,
                Ended::RolledBack => wdpool_txn_ended::WDPOOL_TXN_ROLLED_BACK,
                Ended::LevelClosed => wdpool_txn_ended::WDPOOL_TXN_LEVEL_CLOSED,
            };
            // SAFETY: checked for NULL; the caller passes a writable int.
            unsafe { write_out(ended_out, code as c_int) };
        }
        Ok(())
    })
}

/// `wdpool_producer_end(producer, WDPOOL_TXN_COMMIT, timeout_ms, NULL, err)`:
/// blocks, calls back, may be called from any thread and returns as that.
#[no_mangle]
pub unsafe extern "C" fn wdpool_producer_commit(
    producer: *mut wdpool_producer,
    timeout_ms: i64,
    err: *mut *mut wdpool_error,
) -> wdpool_result {
    // SAFETY: the same contract as `wdpool_producer_end`.
    unsafe { wdpool_producer_end(producer, 1, timeout_ms, std::ptr::null_mut(), err) }
}

/// `wdpool_producer_end(producer, WDPOOL_TXN_ABORT, timeout_ms, NULL, err)`:
/// an inner level makes the whole transaction roll back when the outermost
/// level ends; the outermost rolls back now. Never an error by itself.
/// Blocks, calls back, may be called from any thread and returns as
/// `wdpool_producer_end`.
#[no_mangle]
pub unsafe extern "C" fn wdpool_producer_abort(
    producer: *mut wdpool_producer,
    timeout_ms: i64,
    err: *mut *mut wdpool_error,
) -> wdpool_result {
    // SAFETY: the same contract as `wdpool_producer_end`.
    unsafe { wdpool_producer_end(producer, 2, timeout_ms, std::ptr::null_mut(), err) }
}

/// Fills `*info_out` with what the handle's producer is.
///
/// Blocks:     never (it does not wait for a commit or abort in progress).
/// Calls back: nothing.
/// Thread:     any, while the handle is valid.
/// Returns:    OK, NULL_PARAMETER, INVALID_ARGUMENT, STALE_HANDLE.
#[no_mangle]
pub unsafe extern "C" fn wdpool_producer_get_info(
    producer: *mut wdpool_producer,
    info_out: *mut wdpool_producer_info,
    err: *mut *mut wdpool_error,
) -> wdpool_result {
    boundary(err, || {
        let (p, who) = producer_of(producer)?;
        if info_out.is_null() {
            return Err(null("info_out"));
        }
        let info = wdpool_producer_info {
            index: p.index(),
            pool_id: p.pool_id(),
            transactional: p.is_transactional(),
            in_transaction: p.in_transaction(),
            depth: p.depth_of(who),
            rollback_only: p.is_doomed(),
        };
        // SAFETY: checked for NULL; the caller passes a writable struct.
        unsafe { write_out(info_out, info) };
        Ok(())
    })
}

/// Returns a producer checked out with `wdpool_pool_checkout` or
/// `wdpool_checkout` to its pool; the handle is stale afterwards (also when
/// this fails with TRANSACTION_ABORTED). A transaction opened on it during
/// the lease (by its owner, or by another thread sharing a thread's handle)
/// and left open is rolled back. A broken producer is
/// replaced; one returned after its pool was closed is closed.
///
/// Blocks:     to roll back a transaction left open, and to close the
///             producer when its pool was closed or reloaded meanwhile; each
///             bounded by the producer's `max_wait_timeout`.
/// Calls back: transaction and replacement event subscribers, on this
///             thread.
/// Thread:     any (not only the one that checked it out).
/// Returns:    OK, NULL_PARAMETER, TRANSACTION_ABORTED (a transaction was
///             left open), INVALID_ARGUMENT (a handle given to a callback:
///             it goes back when the callback returns; or another kind of
///             handle), STALE_HANDLE (already checked in).
#[no_mangle]
pub unsafe extern "C" fn wdpool_producer_checkin(producer: *mut wdpool_producer, err: *mut *mut wdpool_error) -> wdpool_result {
    boundary(err, || {
        if producer.is_null() {
            return Err(null("producer"));
        }
        if frames::is_frame(producer as usize) {
            frames::resolve(producer as usize)?;
            return Err(lent_to_callback());
        }
        let held = PRODUCERS.remove_if(producer as usize, |held| match held {
            Held::Leased { .. } => Ok(()),
            Held::Borrowed { .. } => Err(lent_to_callback()),
        })?;
        match held {
            Held::Leased { lease, open_before } => TxnLeftOpenGuard::resume(&lease, open_before).finish(Ok(())),
            Held::Borrowed { .. } => unreachable!("refused above"),
        }
    })
}

fn lent_to_callback() -> Error {
    Error::new(ErrorKind::InvalidArgument, "this producer was lent to a callback; it goes back when the callback returns")
}
