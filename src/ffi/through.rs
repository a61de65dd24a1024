//! One message through a pool in one call: checkout, produce and checkin
//! without a producer handle. A checkout's handle is a registry entry made,
//! looked up by the produce call and removed at checkin; here the lease
//! never leaves the call, so none of that is needed.

use std::time::Duration;

use super::delivery::wdpool_delivery;
use super::message::{borrow, wdpool_message};
use super::pool::{on_pool, wdpool_pool};
use super::producer::produce_tracked;
use super::reports::{with_queue, wdpool_report_queue};
use super::slots::{slots_of, with_into_messages, wdpool_report_slots};
use super::{boundary, null, owner_arg, timeout_arg, wdpool_error, wdpool_owner, wdpool_result, write_out};
use crate::error::Result;
use crate::kafka::{Message, Producer};
use crate::pool::OwnerId;
use crate::producer_pool::{self as pools, ProducerPool};

/// A timeout argument of the `wdpool_pool_produce_*` and `wdpool_produce_*`
/// calls only: do not wait for a producer; use one only if it is free now
/// (as `wdpool_pool_try_checkout` finds one), else produce nothing and say
/// so in `*produced_out`. Only those calls know it: passed to
/// `wdpool_pool_checkout` (or another call whose negative timeouts mean
/// WDPOOL_TIMEOUT_DEFAULT), it means WDPOOL_TIMEOUT_DEFAULT.
pub const WDPOOL_TIMEOUT_NO_WAIT: i64 = -2;

/// The checkout wait that `timeout_ms` asks for: `None` for no wait.
fn wait_arg(timeout_ms: i64) -> Option<Option<Duration>> {
    (timeout_ms != WDPOOL_TIMEOUT_NO_WAIT).then(|| timeout_arg(timeout_ms))
}

/// Runs `body` on a producer of `pool` checked out for `owner`, and writes
/// whether it ran to `*produced_out` (when not NULL) on success.
///
/// # Safety
/// `produced_out` is NULL or writable.
unsafe fn through(
    pool: &ProducerPool,
    owner: wdpool_owner,
    timeout_ms: i64,
    produced_out: *mut bool,
    body: impl FnOnce(&Producer, OwnerId) -> Result<()>,
) -> Result<()> {
    let done = pool.with_as(owner_arg(owner), wait_arg(timeout_ms), |lease| body(lease, lease.owner().acting()))?;
    if !produced_out.is_null() {
        // SAFETY: not NULL; writable as promised by the caller.
        unsafe { write_out(produced_out, done.is_some()) };
    }
    Ok(())
}

/// `message`, validated: before the checkout, so an invalid message costs
/// none.
///
/// # Safety
/// `message` is NULL or one readable message.
unsafe fn one_message<'a>(message: *const wdpool_message) -> Result<Message<'a>> {
    if message.is_null() {
        return Err(null("message"));
    }
    // SAFETY: not NULL; readable as promised by the caller.
    unsafe { borrow(&*message) }
}

/// Runs `f` on `pool`, or on the global pool when `pool` is `None`.
fn on(pool: Option<*const wdpool_pool>, f: impl FnOnce(&ProducerPool) -> Result<()>) -> Result<()> {
    match pool {
        Some(pool) => on_pool(pool, f),
        None => f(&*pools::global()?),
    }
}

/// # Safety
/// As `wdpool_pool_produce_async`'s contract.
unsafe fn produce_async(
    pool: Option<*const wdpool_pool>,
    owner: wdpool_owner,
    timeout_ms: i64,
    message: *const wdpool_message,
    delivery_out: *mut *mut wdpool_delivery,
    produced_out: *mut bool,
) -> Result<()> {
    // SAFETY: NULL or one readable message, as promised by the caller.
    let msg = unsafe { one_message(message) }?;
    let msgs = std::slice::from_ref(&msg);
    on(pool, |pool| {
        // SAFETY: `produced_out` as promised by the caller.
        unsafe {
            through(pool, owner, timeout_ms, produced_out, |producer, who| {
                if delivery_out.is_null() {
                    producer.produce_async_untracked(who, msgs)
                } else {
                    // SAFETY: not NULL; writable as promised by the caller.
                    produce_tracked(producer, who, msgs, delivery_out)
                }
            })
        }
    })
}

/// # Safety
/// As `wdpool_pool_produce_tagged`'s contract.
unsafe fn produce_tagged(
    pool: Option<*const wdpool_pool>,
    owner: wdpool_owner,
    timeout_ms: i64,
    message: *const wdpool_message,
    queue: *const wdpool_report_queue,
    tag: u64,
    produced_out: *mut bool,
) -> Result<()> {
    // SAFETY: NULL or one readable message, as promised by the caller.
    let msg = unsafe { one_message(message) }?;
    let msgs = std::slice::from_ref(&msg);
    // The queue first: a stale one costs no checkout.
    with_queue(queue, |q, arc| {
        on(pool, |pool| {
            // SAFETY: `produced_out` as promised by the caller.
            unsafe {
                through(pool, owner, timeout_ms, produced_out, |producer, who| {
                    producer.produce_async_queued(who, msgs, q, arc, tag)
                })
            }
        })
    })
}

/// # Safety
/// As `wdpool_pool_produce_into`'s contract.
#[allow(clippy::too_many_arguments)]
unsafe fn produce_into(
    pool: Option<*const wdpool_pool>,
    owner: wdpool_owner,
    timeout_ms: i64,
    messages: *const wdpool_message,
    count: usize,
    slots: *mut wdpool_report_slots,
    first: usize,
    produced_out: *mut bool,
) -> Result<()> {
    let slots = slots_of(slots)?;
    // SAFETY: `count` readable messages and `produced_out` as promised by
    // the caller.
    unsafe {
        with_into_messages(messages, count, |msgs| {
            on(pool, |pool| {
                through(pool, owner, timeout_ms, produced_out, |producer, who| {
                    producer.produce_async_into(who, msgs, &slots, first)
                })
            })
        })
    }
}

/// Produces one message through the pool in one call: checks a producer
/// out for `owner` (as `wdpool_pool_checkout` does: the one `owner` holds,
/// nested, or a free one), produces `message` on it as
/// `wdpool_producer_produce_async` does, and checks it in. No producer
/// handle is made, which makes it cheaper than those three calls. The
/// message is validated (and `queue` or `slots` checked) before the
/// checkout: when that fails, nothing is checked out or sent. The message
/// is copied; the caller may free it when this returns.
///
/// Blocks:       up to `timeout_ms` for a producer, as `wdpool_pool_checkout`
///               (WDPOOL_TIMEOUT_DEFAULT, or any negative value but
///               WDPOOL_TIMEOUT_NO_WAIT: the pool's timeout);
///               WDPOOL_TIMEOUT_NO_WAIT: never for a producer (see
///               `produced_out`). Then as `wdpool_producer_produce_async`,
///               and as `wdpool_producer_checkin` when it gives the producer
///               back.
/// Calls back:   the subscribers that those three calls call, on this
///               thread.
/// Thread:       any.
/// delivery_out: NULL (fire and forget), or where to store a new
///               `wdpool_delivery` to wait on and read the report from; the
///               caller owns it and frees it with `wdpool_delivery_free`.
///               Written only on OK, when the message was produced.
/// produced_out: NULL, or receives whether the message was produced, on
///               OK: always true, except with WDPOOL_TIMEOUT_NO_WAIT when
///               no producer was free now. Then nothing was sent, and
///               nothing counts as a checkout timeout or fires an event (as
///               with `wdpool_pool_try_checkout`).
/// Returns:      OK, NULL_PARAMETER, INVALID_ARGUMENT, INVALID_MESSAGE,
///               TIMEOUT (no producer free in time), CLOSED, STALE_HANDLE
///               (a freed pool); those of `wdpool_producer_produce_async`
///               (KAFKA, FATAL, TRANSACTION_ABORTED...).
#[no_mangle]
pub unsafe extern "C" fn wdpool_pool_produce_async(
    pool: *const wdpool_pool,
    owner: wdpool_owner,
    timeout_ms: i64,
    message: *const wdpool_message,
    delivery_out: *mut *mut wdpool_delivery,
    produced_out: *mut bool,
    err: *mut *mut wdpool_error,
) -> wdpool_result {
    // SAFETY: as documented.
    boundary(err, || unsafe { produce_async(Some(pool), owner, timeout_ms, message, delivery_out, produced_out) })
}

/// `wdpool_pool_produce_async` with the report to come in `queue`, tagged
/// with `tag`, as `wdpool_producer_produce_tagged` produces.
///
/// Blocks, calls back, may be called from any thread and writes
/// `*produced_out` as `wdpool_pool_produce_async`.
/// Returns: those of `wdpool_pool_produce_async`; NULL_PARAMETER,
/// INVALID_ARGUMENT and STALE_HANDLE also for `queue`.
#[no_mangle]
pub unsafe extern "C" fn wdpool_pool_produce_tagged(
    pool: *const wdpool_pool,
    owner: wdpool_owner,
    timeout_ms: i64,
    message: *const wdpool_message,
    queue: *const wdpool_report_queue,
    tag: u64,
    produced_out: *mut bool,
    err: *mut *mut wdpool_error,
) -> wdpool_result {
    // SAFETY: as documented.
    boundary(err, || unsafe { produce_tagged(Some(pool), owner, timeout_ms, message, queue, tag, produced_out) })
}

/// `wdpool_pool_produce_async` for `count` messages whose reports are to
/// be written into slots `first` to `first + count - 1` of `slots`, as
/// `wdpool_producer_produce_into` produces them (all or none; on any result
/// but OK, the slot of a message that was not sent is EMPTY again; with
/// WDPOOL_TIMEOUT_NO_WAIT and no producer free, the slots are untouched).
///
/// Blocks, calls back, may be called from any thread and writes
/// `*produced_out` as `wdpool_pool_produce_async`.
/// Returns: those of `wdpool_pool_produce_async`; NULL_PARAMETER also for
/// `slots`, and `messages` with `count` above 0; INVALID_ARGUMENT also when
/// `count` is 0, a slot is out of range or still PENDING; STALE_HANDLE also
/// for `slots`.
#[no_mangle]
pub unsafe extern "C" fn wdpool_pool_produce_into(
    pool: *const wdpool_pool,
    owner: wdpool_owner,
    timeout_ms: i64,
    messages: *const wdpool_message,
    count: usize,
    slots: *mut wdpool_report_slots,
    first: usize,
    produced_out: *mut bool,
    err: *mut *mut wdpool_error,
) -> wdpool_result {
    // SAFETY: as documented.
    boundary(err, || unsafe { produce_into(Some(pool), owner, timeout_ms, messages, count, slots, first, produced_out) })
}

/// `wdpool_pool_produce_async` on the global pool (blocks, calls back, may
/// be called from any thread and returns as that does); also NOT_SET_UP.
#[no_mangle]
pub unsafe extern "C" fn wdpool_produce_async(
    owner: wdpool_owner,
    timeout_ms: i64,
    message: *const wdpool_message,
    delivery_out: *mut *mut wdpool_delivery,
    produced_out: *mut bool,
    err: *mut *mut wdpool_error,
) -> wdpool_result {
    // SAFETY: as documented.
    boundary(err, || unsafe { produce_async(None, owner, timeout_ms, message, delivery_out, produced_out) })
}

/// `wdpool_pool_produce_tagged` on the global pool (blocks, calls back,
/// may be called from any thread and returns as that does); also
/// NOT_SET_UP.
#[no_mangle]
pub unsafe extern "C" fn wdpool_produce_tagged(
    owner: wdpool_owner,
    timeout_ms: i64,
    message: *const wdpool_message,
    queue: *const wdpool_report_queue,
    tag: u64,
    produced_out: *mut bool,
    err: *mut *mut wdpool_error,
) -> wdpool_result {
    // SAFETY: as documented.
    boundary(err, || unsafe { produce_tagged(None, owner, timeout_ms, message, queue, tag, produced_out) })
}

/// `wdpool_pool_produce_into` on the global pool (blocks, calls back, may
/// be called from any thread and returns as that does); also NOT_SET_UP.
#[no_mangle]
pub unsafe extern "C" fn wdpool_produce_into(
    owner: wdpool_owner,
    timeout_ms: i64,
    messages: *const wdpool_message,
    count: usize,
    slots: *mut wdpool_report_slots,
    first: usize,
    produced_out: *mut bool,
    err: *mut *mut wdpool_error,
) -> wdpool_result {
    // SAFETY: as documented.
    boundary(err, || unsafe { produce_into(None, owner, timeout_ms, messages, count, slots, first, produced_out) })
}
