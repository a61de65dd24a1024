//! `wdpool_report_slots`: an array of places that librdkafka's delivery
//! callback writes reports into directly, one per message in flight
//! (`wdpool_producer_produce_into`). No handle, batch or topic copy per
//! message, and no reader that has to take the reports in order: each
//! slot is read when its owner wants it. The way for a binding to give
//! every message its own future cheaply (the Go binding's `ProduceAsync`).

use std::sync::Arc;

use super::delivery::{report_to_c, wdpool_report};
use super::producer::producer_of;
use super::registry::{Kind, Registry};
use super::{boundary, null, timeout_arg, wdpool_error, wdpool_message, wdpool_producer, wdpool_result, write_out};
use crate::error::{Error, ErrorKind, Result};
use crate::kafka::{Message, ReportSlots, SlotState};

/// An array of report slots: a handle, not a pointer. Made by
/// `wdpool_report_slots_new`, owned by the caller, freed with
/// `wdpool_report_slots_free`.
///
/// Each slot is EMPTY (never used, or its message was refused), PENDING (a
/// message produced into it is in flight) or DONE (its report is in, to be
/// read with `wdpool_report_slots_poll` or `wdpool_report_slots_wait`, as
/// often as wanted). Producing into a slot makes it PENDING; only its
/// report (or the refusal of its message) ends that. A DONE slot may be
/// produced into again, which drops its report.
///
/// Messages in flight keep the memory they report into: freeing the array
/// while some are in flight is safe (their reports are then dropped). It
/// belongs to the process that made it: in a forked child every call with
/// it fails with WDPOOL_STALE_HANDLE.
///
/// Thread: any; any number of producers may produce into different slots
/// of it concurrently, from any threads, while others read or wait.
#[allow(non_camel_case_types)]
pub struct wdpool_report_slots {
    _private: [u8; 0],
}

/// A slot is EMPTY: no message was produced into it, or it was refused.
pub const WDPOOL_SLOT_EMPTY: u32 = 0;
/// A slot is PENDING: its message is in flight.
pub const WDPOOL_SLOT_PENDING: u32 = 1;
/// A slot is DONE: its report is in.
pub const WDPOOL_SLOT_DONE: u32 = 2;

/// One report slot, as `wdpool_report_slots_array` shows it: readable in
/// place, with no call per message (32 bytes, this layout for good).
///
/// Read `state` with an acquire load (C11: `atomic_load_explicit((_Atomic
/// uint32_t *)&slot->state, memory_order_acquire)`; GCC and Clang:
/// `__atomic_load_n(&slot->state, __ATOMIC_ACQUIRE)`; Go: `atomic.LoadUint32`).
/// When it is WDPOOL_SLOT_DONE, the other fields hold the report and stay
/// as they are until the slot is produced into again. Never write to a
/// slot.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct wdpool_report_slot {
    /// WDPOOL_SLOT_EMPTY, WDPOOL_SLOT_PENDING or WDPOOL_SLOT_DONE.
    pub state: u32,
    /// 0: delivered. Otherwise librdkafka's error code
    /// (`rd_kafka_resp_err_t`); `wdpool_report_slots_poll` gives the
    /// failure's message.
    pub error_code: i32,
    /// -1 when unknown (the message failed before a partition was chosen).
    pub partition: i32,
    /// Always 0.
    pub reserved: u32,
    /// -1 when not delivered.
    pub offset: i64,
    /// Milliseconds since the epoch; -1 when unknown.
    pub timestamp_ms: i64,
}

const _: () = assert!(std::mem::size_of::<wdpool_report_slot>() == 32);
const _: () = assert!(std::mem::size_of::<wdpool_report_slot>() == std::mem::size_of::<crate::kafka::slots::PublicSlot>());
const _: () = assert!(std::mem::align_of::<wdpool_report_slot>() == std::mem::align_of::<crate::kafka::slots::PublicSlot>());
const _: () = assert!(crate::kafka::slots::EMPTY == WDPOOL_SLOT_EMPTY);
const _: () = assert!(crate::kafka::slots::PENDING == WDPOOL_SLOT_PENDING);
const _: () = assert!(crate::kafka::slots::DONE == WDPOOL_SLOT_DONE);

static SLOTS: Registry<Arc<ReportSlots>> = Registry::new(Kind::ReportSlots);

/// Runs `f` on the array behind a handle (under its registry cell's lock:
/// `f` must not block).
fn with_slots<R>(slots: *const wdpool_report_slots, f: impl FnOnce(&Arc<ReportSlots>) -> R) -> Result<R> {
    if slots.is_null() {
        return Err(null("slots"));
    }
    SLOTS.with(slots as usize, |s| f(s))
}

/// The array behind a handle, for calls that may block.
pub(crate) fn slots_of(slots: *const wdpool_report_slots) -> Result<Arc<ReportSlots>> {
    with_slots(slots, Arc::clone)
}

/// Makes an array of `count` EMPTY report slots (1 to 1,048,576) and
/// stores its handle in `*slots_out`.
///
/// Blocks: never. Calls back: nothing. Thread: any.
/// Returns: OK, NULL_PARAMETER, INVALID_ARGUMENT (`count` out of range, or
/// too many live arrays: at most 131,071).
#[no_mangle]
pub unsafe extern "C" fn wdpool_report_slots_new(
    count: usize,
    slots_out: *mut *mut wdpool_report_slots,
    err: *mut *mut wdpool_error,
) -> wdpool_result {
    boundary(err, || {
        if slots_out.is_null() {
            return Err(null("slots_out"));
        }
        let token = SLOTS.insert(ReportSlots::new(count)?)?;
        // SAFETY: checked for NULL; the caller passes a writable pointer.
        unsafe { write_out(slots_out, token as *mut wdpool_report_slots) };
        Ok(())
    })
}

/// Stores in `*array_out` the address of the array's slots (`count` of
/// them, in `*count_out`), to read reports in place without a call per
/// message (see `wdpool_report_slot`). The address stays valid until
/// `wdpool_report_slots_free`; reading it after that is undefined.
///
/// Blocks: never. Calls back: nothing. Thread: any.
/// Returns: OK, NULL_PARAMETER, INVALID_ARGUMENT (another kind of handle),
/// STALE_HANDLE.
#[no_mangle]
pub unsafe extern "C" fn wdpool_report_slots_array(
    slots: *const wdpool_report_slots,
    array_out: *mut *const wdpool_report_slot,
    count_out: *mut usize,
    err: *mut *mut wdpool_error,
) -> wdpool_result {
    boundary(err, || {
        if array_out.is_null() {
            return Err(null("array_out"));
        }
        if count_out.is_null() {
            return Err(null("count_out"));
        }
        let s = slots_of(slots)?;
        let public = s.public();
        // SAFETY: checked for NULL; the caller passes writable pointers.
        // The array's layout is that of `wdpool_report_slot` (asserted
        // above), and it lives as long as the handle (and its messages).
        unsafe {
            write_out(array_out, public.as_ptr().cast::<wdpool_report_slot>());
            write_out(count_out, public.len());
        }
        Ok(())
    })
}

/// Produces `count` messages without waiting, the report of `messages[i]`
/// to be written into slot `first + i` of `slots`: nothing is allocated per
/// message beyond librdkafka's own copy. The messages are validated first
/// (nothing is sent when one is invalid) and copied; the caller may free
/// them when this returns.
///
/// The slots must exist and none may be PENDING; they are all made PENDING
/// before anything is sent (all or none). OK: each of them gets exactly one
/// report (delivered or failed; librdkafka reports every message it
/// accepted, within its `message.timeout.ms`, or at once when the producer
/// is closed by force). Any other result: the slot of a message that was
/// not sent is EMPTY again when this returns; a message that went out
/// still gets its report (its implicit transaction failed to commit, say).
///
/// Blocks:     as `wdpool_producer_produce_async`.
/// Calls back: as `wdpool_producer_produce_async`.
/// Thread:     any, while the producer handle is valid.
/// Returns:    those of `wdpool_producer_produce_async`; NULL_PARAMETER
///             (`producer`, `slots`, or `messages` with `count` above 0);
///             INVALID_ARGUMENT also when `count` is 0, a slot is out of
///             range or still PENDING; STALE_HANDLE also for `slots`.
#[no_mangle]
pub unsafe extern "C" fn wdpool_producer_produce_into(
    producer: *mut wdpool_producer,
    messages: *const wdpool_message,
    count: usize,
    slots: *mut wdpool_report_slots,
    first: usize,
    err: *mut *mut wdpool_error,
) -> wdpool_result {
    boundary(err, || {
        let (producer, who) = producer_of(producer)?;
        let slots = slots_of(slots)?;
        // SAFETY: `count` readable messages, as promised by the caller.
        unsafe { with_into_messages(messages, count, |msgs| producer.produce_async_into(who, msgs, &slots, first)) }
    })
}

/// Runs `f` on the `count` messages of a produce-into call, validated
/// (without a vector for one): INVALID_ARGUMENT for a count of 0,
/// NULL_PARAMETER for NULL messages.
///
/// # Safety
/// `messages` is NULL or valid for `count` messages.
pub(crate) unsafe fn with_into_messages<R>(
    messages: *const wdpool_message,
    count: usize,
    f: impl FnOnce(&[Message<'_>]) -> Result<R>,
) -> Result<R> {
    if count == 0 {
        return Err(Error::new(ErrorKind::InvalidArgument, "count is 0: no message to produce"));
    }
    if messages.is_null() {
        return Err(null("messages"));
    }
    if count == 1 {
        // SAFETY: one readable message, as promised by the caller.
        let msg = unsafe { super::message::borrow(&*messages) }?;
        return f(std::slice::from_ref(&msg));
    }
    // SAFETY: `count` readable messages, as promised by the caller.
    let msgs = unsafe { super::message::borrow_many(messages, count) }?;
    f(&msgs)
}

/// What a poll or wait found, as a result: the report is written (when
/// `report_out` is not NULL) for a DONE slot, delivered or not.
fn answer(state: SlotState, index: usize, report_out: *mut wdpool_report, pending: ErrorKind) -> Result<()> {
    match state {
        SlotState::Empty => Err(Error::new(
            ErrorKind::InvalidArgument,
            format!("slot {index} is EMPTY: no message was produced into it, or it was refused"),
        )),
        SlotState::Pending => Err(Error::new(pending, format!("slot {index} has no delivery report yet"))),
        SlotState::Done(report) => {
            if !report_out.is_null() {
                // SAFETY: not NULL; the caller passes a writable report.
                unsafe { write_out(report_out, report_to_c(std::ptr::null(), &report)) };
            }
            report.error.map_or(Ok(()), Err)
        }
    }
}

/// Reads slot `index` without waiting. For a DONE slot, copies its report
/// into `*report_out` (when not NULL; its `topic` is NULL: slots keep no
/// topic). A slot may be read any number of times.
///
/// Blocks:     never. Calls back: nothing.
/// Thread:     any, concurrently with producers and other readers.
/// Returns:    OK (DONE, delivered); KAFKA or FATAL (DONE, failed: the
///             report is written too, and `*err` has the failure with
///             `wdpool_error_kafka_code`); PENDING (in flight);
///             INVALID_ARGUMENT (EMPTY, `index` out of range, or another
///             kind of handle); NULL_PARAMETER; STALE_HANDLE (freed, or
///             made by the parent of a forked child).
#[no_mangle]
pub unsafe extern "C" fn wdpool_report_slots_poll(
    slots: *const wdpool_report_slots,
    index: usize,
    report_out: *mut wdpool_report,
    err: *mut *mut wdpool_error,
) -> wdpool_result {
    boundary(err, || {
        let state = with_slots(slots, |s| s.poll(index))??;
        answer(state, index, report_out, ErrorKind::Pending)
    })
}

/// Waits until slot `index` is no longer PENDING, then answers as
/// `wdpool_report_slots_poll`.
///
/// Blocks:     up to `timeout_ms` (WDPOOL_TIMEOUT_DEFAULT: the
///             `max_wait_timeout` of the producer that produced into it;
///             0: only looks). `wdpool_report_slots_free` on another
///             thread does not end the wait: it ends with the report or
///             the timeout.
/// Calls back: nothing.
/// Thread:     any, concurrently with producers and other readers.
/// Returns:    those of `wdpool_report_slots_poll`, with DELIVERY_TIMEOUT
///             instead of PENDING when the time ran out.
#[no_mangle]
pub unsafe extern "C" fn wdpool_report_slots_wait(
    slots: *const wdpool_report_slots,
    index: usize,
    timeout_ms: i64,
    report_out: *mut wdpool_report,
    err: *mut *mut wdpool_error,
) -> wdpool_result {
    boundary(err, || {
        let s = slots_of(slots)?;
        let state = s.wait(index, timeout_arg(timeout_ms))?;
        answer(state, index, report_out, ErrorKind::DeliveryTimeout)
    })
}

/// Frees an array of report slots: the handle goes stale at once. Messages
/// still in flight keep the memory their reports go into until they come
/// (and are then dropped); a wait on it on another thread ends as it would
/// have. NULL, a freed array or another kind of handle: nothing happens.
///
/// Blocks: never. Calls back: nothing. Thread: any (a finalizer's too).
#[no_mangle]
pub unsafe extern "C" fn wdpool_report_slots_free(slots: *mut wdpool_report_slots) {
    super::guarded((), || {
        if !slots.is_null() {
            let _ = SLOTS.remove(slots as usize);
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::Report;
    use std::time::Duration;

    #[test]
    fn slots_are_made_read_and_freed() {
        let mut h: *mut wdpool_report_slots = std::ptr::null_mut();
        // SAFETY: valid out-pointers.
        assert_eq!(unsafe { wdpool_report_slots_new(2, &mut h, std::ptr::null_mut()) }, wdpool_result::WDPOOL_OK);
        let s = slots_of(h).unwrap();
        let blank = wdpool_report { topic: std::ptr::null(), partition: 0, offset: 0, timestamp_ms: 0, error_code: 0 };
        let poll = |i| {
            let mut r = blank;
            // SAFETY: a live handle and a writable report.
            (unsafe { wdpool_report_slots_poll(h, i, &mut r, std::ptr::null_mut()) }, r)
        };
        assert_eq!(poll(0).0, wdpool_result::WDPOOL_INVALID_ARGUMENT, "EMPTY");
        assert_eq!(poll(2).0, wdpool_result::WDPOOL_INVALID_ARGUMENT, "out of range");
        s.arm(0, 1, Duration::from_millis(1)).unwrap();
        let t = s.ticket(0);
        assert_eq!(poll(0).0, wdpool_result::WDPOOL_PENDING);
        // SAFETY: as above.
        let rc = unsafe { wdpool_report_slots_wait(h, 0, -1, std::ptr::null_mut(), std::ptr::null_mut()) };
        assert_eq!(rc, wdpool_result::WDPOOL_DELIVERY_TIMEOUT, "the producer's max wait (1 ms)");
        t.complete(Report { partition: 3, offset: 4, timestamp_ms: 5, error: None });
        let (rc, r) = poll(0);
        assert_eq!(rc, wdpool_result::WDPOOL_OK);
        assert_eq!((r.partition, r.offset, r.timestamp_ms, r.error_code), (3, 4, 5, 0));
        assert!(r.topic.is_null());
        // SAFETY: a live handle, freed once.
        unsafe { wdpool_report_slots_free(h) };
        let mut r = r;
        // SAFETY: a stale handle is refused, never dereferenced.
        assert_eq!(unsafe { wdpool_report_slots_poll(h, 0, &mut r, std::ptr::null_mut()) }, wdpool_result::WDPOOL_STALE_HANDLE);
        // SAFETY: as above.
        let rc = unsafe { wdpool_report_slots_poll(std::ptr::null(), 0, &mut r, std::ptr::null_mut()) };
        assert_eq!(rc, wdpool_result::WDPOOL_NULL_PARAMETER);
        // SAFETY: twice: nothing.
        unsafe { wdpool_report_slots_free(h) };
        // SAFETY: as above.
        assert_eq!(unsafe { wdpool_report_slots_new(0, &mut h, std::ptr::null_mut()) }, wdpool_result::WDPOOL_INVALID_ARGUMENT);
    }
}
