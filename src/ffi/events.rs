//! Subscribing to events from C.

use std::ffi::{c_char, c_void, CString};
use std::time::Duration;

use super::result::c_string;
use super::{boundary, null, timeout_arg, wdpool_error, wdpool_result, write_out};
use crate::error::{Error, ErrorKind};
use crate::events::{self, Event, EventKind};

/// What happened. The first five are WaterDrop's connection-pool events.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum wdpool_event_kind {
    /// "connection_pool.created": a pool was created (size, timeout_ms).
    WDPOOL_EVENT_CREATED = 1,
    /// "connection_pool.setup": the global pool was set up (size, timeout_ms).
    WDPOOL_EVENT_SETUP = 2,
    /// "connection_pool.shutdown": a pool was closed (undelivered).
    WDPOOL_EVENT_SHUTDOWN = 3,
    /// "connection_pool.reload": a reload begins (also in a forked child).
    WDPOOL_EVENT_RELOAD = 4,
    /// "connection_pool.reloaded": a reload is done.
    WDPOOL_EVENT_RELOADED = 5,
    /// "connection_pool.checkout_timeout" (waited_ms, available).
    WDPOOL_EVENT_CHECKOUT_TIMEOUT = 6,
    /// "connection_pool.producer_replaced": a broken producer was discarded;
    /// its slot gets a fresh one (slot, producer_id). Broken: a fatal Kafka
    /// error (fenced, ...), a transactional call still retriable after its
    /// retries, or a transactional producer one of whose messages the broker
    /// refused (a delivery report with a broker error code, such as
    /// MSG_SIZE_TOO_LARGE): librdkafka leaves a gap in that producer's
    /// sequence numbers, so it is replaced when checked in (README.md,
    /// "Failure modes").
    WDPOOL_EVENT_PRODUCER_REPLACED = 7,
    /// "transaction.started" (slot, producer_id).
    WDPOOL_EVENT_TRANSACTION_STARTED = 8,
    /// "transaction.committed" (slot, producer_id).
    WDPOOL_EVENT_TRANSACTION_COMMITTED = 9,
    /// "transaction.aborted" (slot, producer_id, message: why, if it failed).
    WDPOOL_EVENT_TRANSACTION_ABORTED = 10,
    /// "error.occurred": librdkafka reported an error (error_code, message).
    /// Queued: delivered by `wdpool_events_drain`.
    WDPOOL_EVENT_ERROR = 11,
    /// "statistics.emitted": librdkafka's statistics JSON in `message`, when
    /// `statistics.interval.ms` is set. Queued: delivered by
    /// `wdpool_events_drain`.
    WDPOOL_EVENT_STATISTICS = 12,
}

/// One event, borrowed for the duration of the subscriber call: copy what
/// you keep. Fields that do not apply are 0, -1 or NULL as stated.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct wdpool_event {
    pub kind: wdpool_event_kind,
    /// The event's name, such as "connection_pool.created".
    pub name: *const c_char,
    /// The pool's id (`wdpool_pool_id`, `wdpool_global_id`).
    pub pool_id: u64,
    /// The event concerns the global pool.
    pub global: bool,
    /// Pool size (created, setup, shutdown, reload, checkout timeout...).
    pub size: usize,
    /// Pool checkout timeout in milliseconds.
    pub timeout_ms: u64,
    /// The producer's slot index, or -1.
    pub slot: i64,
    /// The producer's id, or NULL.
    pub producer_id: *const c_char,
    /// Checkout timeout: how long the caller waited.
    pub waited_ms: u64,
    /// Checkout timeout: producers available when it gave up.
    pub available: usize,
    /// Shutdown: messages not delivered.
    pub undelivered: u64,
    /// librdkafka's error code, or 0.
    pub error_code: i32,
    /// Error text or statistics JSON (NUL-terminated, also `message_len`
    /// bytes long); "" when none.
    pub message: *const c_char,
    pub message_len: usize,
}

/// Receives events. Lifecycle events (created, setup, shutdown, reload,
/// reloaded, checkout timeout, producer replaced, transactions) run on the
/// thread that caused them, during the wdpool call that caused them; queued
/// events (errors, statistics) run on the thread calling
/// `wdpool_events_drain`; the shutdown event of a pool freed without being
/// closed is queued too. Never on a librdkafka thread or a thread of
/// wdpool's. May run on several threads at once. It may call wdpool,
/// including subscribe and unsubscribe, but must not close, reload or free
/// the pool whose event it handles from inside a `created` or `setup`
/// event.
///
/// It must return normally: never unwind or jump out of it (no `longjmp`,
/// no C++ exception, no Ruby non-local exit, no Go panic).
#[allow(non_camel_case_types)]
pub type wdpool_event_cb = Option<unsafe extern "C" fn(user_data: *mut c_void, event: *const wdpool_event)>;

/// Releases a subscriber's user data once wdpool will not call it again.
/// Runs exactly once, with no lock of wdpool's held, on the thread that
/// unsubscribed or on the thread that finished the last delivery in
/// progress. It may call wdpool (subscribe, unsubscribe, free a pool). It
/// must return normally (no `longjmp`, C++ exception, Ruby non-local exit
/// or Go panic).
#[allow(non_camel_case_types)]
pub type wdpool_finalizer = Option<unsafe extern "C" fn(user_data: *mut c_void)>;

struct Subscriber {
    callback: unsafe extern "C" fn(*mut c_void, *const wdpool_event),
    user_data: *mut c_void,
    finalizer: wdpool_finalizer,
}

// SAFETY: the subscriber's contract (documented on wdpool_subscribe) is
// that callback and user data may be used from any thread.
unsafe impl Send for Subscriber {}
// SAFETY: as above.
unsafe impl Sync for Subscriber {}

impl Drop for Subscriber {
    fn drop(&mut self) {
        if let Some(finalizer) = self.finalizer {
            // SAFETY: the caller's finalizer for its own user data, once.
            unsafe { finalizer(self.user_data) };
        }
    }
}

fn kind_to_c(kind: EventKind) -> wdpool_event_kind {
    use wdpool_event_kind::*;
    match kind {
        EventKind::Created => WDPOOL_EVENT_CREATED,
        EventKind::Setup => WDPOOL_EVENT_SETUP,
        EventKind::Shutdown => WDPOOL_EVENT_SHUTDOWN,
        EventKind::Reload => WDPOOL_EVENT_RELOAD,
        EventKind::Reloaded => WDPOOL_EVENT_RELOADED,
        EventKind::CheckoutTimeout => WDPOOL_EVENT_CHECKOUT_TIMEOUT,
        EventKind::ProducerReplaced => WDPOOL_EVENT_PRODUCER_REPLACED,
        EventKind::TransactionStarted => WDPOOL_EVENT_TRANSACTION_STARTED,
        EventKind::TransactionCommitted => WDPOOL_EVENT_TRANSACTION_COMMITTED,
        EventKind::TransactionAborted => WDPOOL_EVENT_TRANSACTION_ABORTED,
        EventKind::Error => WDPOOL_EVENT_ERROR,
        EventKind::Statistics => WDPOOL_EVENT_STATISTICS,
    }
}

impl Subscriber {
    fn deliver(&self, e: &Event) {
        let name = c_string(e.kind.name());
        let producer_id: Option<CString> = e.producer_id.as_deref().map(c_string);
        let message = c_string(&e.message);
        let event = wdpool_event {
            kind: kind_to_c(e.kind),
            name: name.as_ptr(),
            pool_id: e.pool_id,
            global: e.global,
            size: e.size,
            timeout_ms: e.timeout_ms,
            slot: e.slot.map_or(-1, |s| s as i64),
            producer_id: producer_id.as_ref().map_or(std::ptr::null(), |p| p.as_ptr()),
            waited_ms: e.waited_ms,
            available: e.available,
            undelivered: e.undelivered,
            error_code: e.error_code,
            message_len: message.as_bytes().len(),
            message: message.as_ptr(),
        };
        // SAFETY: the subscriber's callback, with its own user data and an
        // event valid for the call.
        unsafe { (self.callback)(self.user_data, &event) };
    }
}

/// Subscribes `callback` to every event of every pool, the global one
/// included; subscribe before creating a pool to see its `created` event.
/// `callback` and `user_data` must be usable from any thread. `finalizer`
/// (may be NULL) is called with `user_data` exactly once, when wdpool will
/// no longer call `callback`: after `wdpool_unsubscribe`, possibly later, on
/// the thread that finishes the last delivery in progress.
///
/// Blocks:     never. Calls back: nothing now. Thread: any.
/// id_out:     NULL, or where to write the subscription's id (never 0);
///             written only on OK.
/// Returns:    OK, NULL_PARAMETER (callback).
#[no_mangle]
pub unsafe extern "C" fn wdpool_subscribe(
    callback: wdpool_event_cb,
    user_data: *mut c_void,
    finalizer: wdpool_finalizer,
    id_out: *mut u64,
    err: *mut *mut wdpool_error,
) -> wdpool_result {
    boundary(err, || {
        let callback = callback.ok_or_else(|| null("callback"))?;
        let subscriber = Subscriber { callback, user_data, finalizer };
        let id = events::subscribe(Box::new(move |e| subscriber.deliver(e)));
        if !id_out.is_null() {
            // SAFETY: checked for NULL; the caller passes a writable u64.
            unsafe { write_out(id_out, id) };
        }
        Ok(())
    })
}

/// Ends a subscription. Deliveries already running may still finish; the
/// finalizer tells when the user data is free.
///
/// Blocks:     never.
/// Calls back: the subscription's finalizer, on this thread, when no
///             delivery is running (otherwise on the thread that finishes
///             the last one), with no lock of wdpool's held.
/// Thread:     any, also from inside a subscriber or a finalizer.
/// Returns:    OK, INVALID_ARGUMENT (unknown id).
#[no_mangle]
pub unsafe extern "C" fn wdpool_unsubscribe(id: u64, err: *mut *mut wdpool_error) -> wdpool_result {
    boundary(err, || {
        if events::unsubscribe(id) {
            Ok(())
        } else {
            Err(Error::new(ErrorKind::InvalidArgument, format!("no subscription has id {id}")))
        }
    })
}

/// Delivers queued events (errors and statistics from librdkafka's threads,
/// shutdowns of pools freed without a close) to the subscribers, on the
/// calling thread: waits up to `timeout_ms` for the first (0: do not wait;
/// WDPOOL_TIMEOUT_DEFAULT: 1000 ms), then delivers what is queued, at most
/// `max` in all. Events are queued only while someone is subscribed; past
/// WDPOOL_EVENTS_QUEUE_CAPACITY events or WDPOOL_EVENTS_QUEUE_CAPACITY_BYTES
/// bytes the oldest are dropped (see `wdpool_events_stats`).
///
/// Blocks:     up to `timeout_ms` for the first event, then for as long as
///             the subscribers take. Call it from a thread of your own, in a
///             loop.
/// Calls back: every subscriber, once per event, on this thread.
/// Thread:     any; several threads may drain at once.
/// count_out:  NULL, or where to write how many were delivered.
/// Returns:    OK.
#[no_mangle]
pub unsafe extern "C" fn wdpool_events_drain(
    timeout_ms: i64,
    max: usize,
    count_out: *mut usize,
    err: *mut *mut wdpool_error,
) -> wdpool_result {
    boundary(err, || {
        let timeout = timeout_arg(timeout_ms).unwrap_or(Duration::from_millis(1000));
        let count = events::drain(timeout, max);
        if !count_out.is_null() {
            // SAFETY: checked for NULL; the caller passes a writable size_t.
            unsafe { write_out(count_out, count) };
        }
        Ok(())
    })
}

/// Events the queue holds at most by default (the oldest are dropped
/// beyond); see `wdpool_events_set_limits`.
pub const WDPOOL_EVENTS_QUEUE_CAPACITY: usize = 10000;
/// Bytes the queued events hold at most by default, their text included
/// (the oldest are dropped beyond): 16 MiB.
pub const WDPOOL_EVENTS_QUEUE_CAPACITY_BYTES: usize = 16777216;

const _: () = assert!(WDPOOL_EVENTS_QUEUE_CAPACITY == events::QUEUE_CAPACITY);
const _: () = assert!(WDPOOL_EVENTS_QUEUE_CAPACITY_BYTES == events::QUEUE_CAPACITY_BYTES);

/// The state of the queue that `wdpool_events_drain` empties.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct wdpool_events_statistics {
    /// Events waiting to be drained.
    pub queued: usize,
    /// Bytes they hold.
    pub queued_bytes: usize,
    /// Events dropped because the queue was full, over the process's life:
    /// a binding can warn when it grows.
    pub dropped: u64,
    /// The bounds in force (`wdpool_events_set_limits`).
    pub max_events: usize,
    pub max_bytes: usize,
}

/// Writes the state of the event queue to `*stats_out`.
///
/// Blocks: never. Calls back: nothing. Thread: any.
/// Returns: OK, NULL_PARAMETER.
#[no_mangle]
pub unsafe extern "C" fn wdpool_events_stats(
    stats_out: *mut wdpool_events_statistics,
    err: *mut *mut wdpool_error,
) -> wdpool_result {
    boundary(err, || {
        if stats_out.is_null() {
            return Err(null("stats_out"));
        }
        let q = events::queue_stats();
        let stats = wdpool_events_statistics {
            queued: q.queued,
            queued_bytes: q.queued_bytes,
            dropped: q.dropped,
            max_events: q.max_events,
            max_bytes: q.max_bytes,
        };
        // SAFETY: checked for NULL; the caller passes a writable struct.
        unsafe { write_out(stats_out, stats) };
        Ok(())
    })
}

/// Bounds the queue that `wdpool_events_drain` empties: at most
/// `max_events` events and `max_bytes` bytes (an event weighs its text plus
/// about 200 bytes). 0 events queues nothing. Events beyond the new bounds
/// are dropped at once, oldest first, and counted in `dropped`. The defaults
/// are WDPOOL_EVENTS_QUEUE_CAPACITY and WDPOOL_EVENTS_QUEUE_CAPACITY_BYTES.
///
/// Blocks: never. Calls back: nothing. Thread: any.
/// Returns: OK.
#[no_mangle]
pub unsafe extern "C" fn wdpool_events_set_limits(
    max_events: usize,
    max_bytes: usize,
    err: *mut *mut wdpool_error,
) -> wdpool_result {
    boundary(err, || {
        events::set_queue_limits(max_events, max_bytes);
        Ok(())
    })
}
