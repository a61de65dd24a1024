//! `wdpool_pool` instances and the global pool.

use std::ffi::c_void;
use std::sync::Arc;
use std::time::Duration;

use super::config::{configure_with, wdpool_configure_cb};
use super::producer::{call_back, callback_outcome, lease_handle, wdpool_producer, wdpool_producer_cb};
use super::{fence, pins};
use super::registry::{Kind, Registry};
use super::{boundary, guarded, null, owner_arg, timeout_arg, wdpool_error, wdpool_owner, wdpool_result, write_out};
use crate::error::{Error, ErrorKind, Result};
use crate::kafka::Completion;
use crate::pool::{CloseReport, Options, Stats, DEFAULT_SIZE, DEFAULT_TIMEOUT, MAX_SIZE};
use crate::producer_pool::{self as pools, ProducerPool};

// cbindgen writes only literal constants into the header, so the C names
// repeat the pool's values, checked equal at compile time.

/// WaterDrop's default pool size.
pub const WDPOOL_DEFAULT_SIZE: usize = 5;
/// WaterDrop's default checkout timeout, in milliseconds.
pub const WDPOOL_DEFAULT_TIMEOUT_MS: u64 = 5000;
/// The largest pool size: each producer runs several librdkafka threads.
pub const WDPOOL_MAX_SIZE: usize = 4096;

const _: () = assert!(WDPOOL_DEFAULT_SIZE == DEFAULT_SIZE);
const _: () = assert!(WDPOOL_DEFAULT_TIMEOUT_MS as u128 == DEFAULT_TIMEOUT.as_millis());
const _: () = assert!(WDPOOL_MAX_SIZE == MAX_SIZE);

/// A pool's shape. Get the defaults from `wdpool_options_default()`.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct wdpool_options {
    /// How many producers (slots): 1 to WDPOOL_MAX_SIZE. Default 5.
    pub size: usize,
    /// How long a checkout waits for a free producer, in milliseconds,
    /// creating the producer included (WaterDrop's connection timeout).
    /// Default 5000; 0 means "fail at once when none is free".
    pub timeout_ms: u64,
}

/// A snapshot of a pool.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct wdpool_statistics {
    /// Slots.
    pub size: usize,
    /// Slots that hold a producer now (idle or in use).
    pub created: usize,
    /// Producers ready to be checked out.
    pub idle: usize,
    /// Producers checked out.
    pub in_use: usize,
    /// Producers whose creation goes on in the background (a checkout's
    /// timeout ran out while, say, `init_transactions` was still waiting).
    pub creating: usize,
    /// Threads waiting for a producer.
    pub waiting: usize,
    /// Checkouts that timed out, over the pool's life.
    pub checkout_timeouts: u64,
    /// Time threads spent waiting for a producer, in microseconds, in all.
    pub total_wait_us: u64,
    /// Producers created, over the pool's life.
    pub creations: u64,
    /// Broken producers replaced, over the pool's life.
    pub replaced: u64,
    /// The pool is closed.
    pub closed: bool,
}

/// What closing a pool did.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct wdpool_close_report {
    /// Producers closed by the close (the idle ones).
    pub closed: usize,
    /// Messages those producers did not deliver (flush timed out, or purged
    /// by a forced close).
    pub undelivered: u64,
    /// Producers still checked out: each is closed when it comes back.
    pub in_use: usize,
}

/// A pool of producers: a handle, not a pointer (never dereference it).
/// Create it with `wdpool_pool_new`, free it with `wdpool_pool_free`. All its
/// functions may be called from any thread, concurrently; after it is freed
/// they fail with WDPOOL_STALE_HANDLE (a handle of another kind:
/// WDPOOL_INVALID_ARGUMENT). It stays usable in a forked child, where it
/// abandons the parent's producers and creates its own.
#[allow(non_camel_case_types)]
pub struct wdpool_pool {
    _private: [u8; 0],
}

/// WaterDrop's defaults: size 5, timeout 5000 ms.
///
/// Blocks: never. Calls back: nothing. Thread: any.
#[no_mangle]
pub extern "C" fn wdpool_options_default() -> wdpool_options {
    wdpool_options { size: WDPOOL_DEFAULT_SIZE, timeout_ms: WDPOOL_DEFAULT_TIMEOUT_MS }
}

/// # Safety
/// `options` is NULL or readable.
unsafe fn options_of(options: *const wdpool_options) -> Result<Options> {
    // SAFETY: NULL or a readable options struct.
    let Some(o) = (unsafe { options.as_ref() }) else { return Ok(Options::default()) };
    if !(1..=MAX_SIZE).contains(&o.size) {
        return Err(Error::new(
            ErrorKind::InvalidArgument,
            format!("options.size must be 1 to {MAX_SIZE} (WDPOOL_MAX_SIZE), not {}", o.size),
        ));
    }
    Ok(Options { size: o.size, timeout: Duration::from_millis(o.timeout_ms) })
}

fn stats_to_c(s: Stats) -> wdpool_statistics {
    wdpool_statistics {
        size: s.size,
        created: s.created,
        idle: s.idle,
        in_use: s.in_use,
        creating: s.creating,
        waiting: s.waiting,
        checkout_timeouts: s.checkout_timeouts,
        total_wait_us: u64::try_from(s.total_wait.as_micros()).unwrap_or(u64::MAX),
        creations: s.creations,
        replaced: s.replaced,
        closed: s.closed,
    }
}

fn report_to_c(r: CloseReport) -> wdpool_close_report {
    wdpool_close_report { closed: r.closed, undelivered: r.undelivered, in_use: r.in_use }
}

static POOLS: Registry<Arc<ProducerPool>> = Registry::new(Kind::Pool);

fn pool_of(pool: *const wdpool_pool) -> Result<Arc<ProducerPool>> {
    if pool.is_null() {
        return Err(null("pool"));
    }
    POOLS.with(pool as usize, |p| Arc::clone(p))
}

/// Runs `f` on the pool behind a handle without a counted reference (the
/// hot exports: see `super::pins`).
pub(crate) fn on_pool<R>(pool: *const wdpool_pool, f: impl FnOnce(&ProducerPool) -> Result<R>) -> Result<R> {
    if pool.is_null() {
        return Err(null("pool"));
    }
    pins::with_pinned(&POOLS, pool as usize, f)
}

fn run_with(pool: &ProducerPool, timeout_ms: i64, callback: wdpool_producer_cb, user_data: *mut c_void) -> Result<()> {
    let callback = callback.ok_or_else(|| null("callback"))?;
    pool.with(timeout_arg(timeout_ms), |lease| {
        match callback_outcome(call_back(lease.conn(), lease.owner(), callback, user_data)?)? {
            Completion::Commit => Ok(()),
            Completion::Abort => Err(Error::new(
                ErrorKind::CallbackFailed,
                "the callback returned WDPOOL_CB_ABORT outside a transaction",
            )),
        }
    })
}

fn run_transaction(pool: &ProducerPool, timeout_ms: i64, callback: wdpool_producer_cb, user_data: *mut c_void) -> Result<()> {
    let callback = callback.ok_or_else(|| null("callback"))?;
    pool.transaction(timeout_arg(timeout_ms), |lease| {
        callback_outcome(call_back(lease.conn(), lease.owner(), callback, user_data)?)
    })
    .map(drop)
}

/// # Safety
/// `producer_out` is NULL or writable.
unsafe fn checkout(pool: &ProducerPool, owner: wdpool_owner, timeout_ms: i64, producer_out: *mut *mut wdpool_producer) -> Result<()> {
    if producer_out.is_null() {
        return Err(null("producer_out"));
    }
    let handle = lease_handle(pool.checkout_as(owner_arg(owner), timeout_arg(timeout_ms))?)?;
    // SAFETY: checked for NULL; the caller passes a writable pointer.
    unsafe { write_out(producer_out, handle) };
    Ok(())
}

/// # Safety
/// `producer_out` is NULL or writable.
unsafe fn try_checkout(pool: &ProducerPool, owner: wdpool_owner, producer_out: *mut *mut wdpool_producer) -> Result<()> {
    if producer_out.is_null() {
        return Err(null("producer_out"));
    }
    let handle = match pool.try_checkout_as(owner_arg(owner))? {
        Some(lease) => lease_handle(lease)?,
        None => std::ptr::null_mut(),
    };
    // SAFETY: checked for NULL; the caller passes a writable pointer.
    unsafe { write_out(producer_out, handle) };
    Ok(())
}

/// # Safety
/// `report_out` is NULL or writable.
unsafe fn write_report(report_out: *mut wdpool_close_report, report: CloseReport) {
    if !report_out.is_null() {
        // SAFETY: checked for NULL; the caller passes a writable struct.
        unsafe { write_out(report_out, report_to_c(report)) };
    }
}

/// # Safety
/// `stats_out` is NULL or writable.
unsafe fn write_stats(stats_out: *mut wdpool_statistics, stats: Stats) -> Result<()> {
    if stats_out.is_null() {
        return Err(null("stats_out"));
    }
    // SAFETY: checked for NULL; the caller passes a writable struct.
    unsafe { write_out(stats_out, stats_to_c(stats)) };
    Ok(())
}


// ---------------------------------------------------------------------------
// Pool instances.

/// Creates a pool of `options->size` producers (`options` NULL: the
/// defaults). `configure` (NULL: defaults for every producer, brokers from
/// the `WDPOOL_BROKERS` environment variable or 127.0.0.1:9092) is called
/// once per slot before this returns, with `user_data` and the slot's
/// zero-based index; `user_data` is not kept. Producers are created on first
/// use, so no broker needs to be reachable now. Nothing is allocated in
/// proportion to `options->size` before it is checked.
///
/// Blocks:     never on the network; runs `configure` `size` times.
/// Calls back: `configure`, on this thread, in slot order; then the
///             `connection_pool.created` subscribers, on this thread.
/// Thread:     any.
/// pool_out:   receives the new pool, owned by the caller (free it with
///             `wdpool_pool_free`); written only on OK.
/// Returns:    OK, NULL_PARAMETER, INVALID_ARGUMENT (size 0 or above
///             WDPOOL_MAX_SIZE), INVALID_CONFIG (names the key),
///             CALLBACK_FAILED, or the code of a setter that failed inside
///             `configure` (see `wdpool_configure_cb`).
#[no_mangle]
pub unsafe extern "C" fn wdpool_pool_new(
    options: *const wdpool_options,
    configure: wdpool_configure_cb,
    user_data: *mut c_void,
    pool_out: *mut *mut wdpool_pool,
    err: *mut *mut wdpool_error,
) -> wdpool_result {
    boundary(err, || {
        if pool_out.is_null() {
            return Err(null("pool_out"));
        }
        let pool = ProducerPool::new(options_of(options)?, configure_with(configure, user_data), false)?;
        // Before the handle exists: its users' hazards and frames rely on it.
        fence::init();
        let token = POOLS.insert_arc(Arc::new(pool))?;
        // SAFETY: checked for NULL; the caller passes a writable pointer.
        unsafe { write_out(pool_out, token as *mut wdpool_pool) };
        Ok(())
    })
}

/// Checks out a producer for the calling thread, calls `callback(user_data,
/// producer)` on this thread, and returns the producer to the pool whatever
/// the callback did. Re-entrant per thread: a nested call on the same thread
/// gets the same producer (a pool of size 1 does not deadlock). A
/// transaction the callback opened with `wdpool_producer_begin` and left
/// open is rolled back.
///
/// Blocks:     up to `timeout_ms` (WDPOOL_TIMEOUT_DEFAULT: the pool's
///             timeout) for a free producer, creating it included; then for
///             as long as the callback runs; then, when a transaction was
///             left open, for its abort (bounded by `max_wait_timeout`).
/// Calls back: `callback` once, on this thread; event subscribers
///             (checkout timeout, producer replaced, transactions), on this
///             thread.
/// Thread:     any.
/// Returns:    OK, NULL_PARAMETER, INVALID_ARGUMENT, TIMEOUT (the message
///             says how long and how many of how many were available, and
///             whether a creation goes on in the background), CLOSED,
///             CALLBACK_FAILED, TRANSACTION_ABORTED, STALE_HANDLE (a freed
///             pool), and the errors of creating a producer (INVALID_CONFIG,
///             KAFKA, FATAL).
#[no_mangle]
pub unsafe extern "C" fn wdpool_pool_with(
    pool: *const wdpool_pool,
    timeout_ms: i64,
    callback: wdpool_producer_cb,
    user_data: *mut c_void,
    err: *mut *mut wdpool_error,
) -> wdpool_result {
    boundary(err, || on_pool(pool, |p| run_with(p, timeout_ms, callback, user_data)))
}

/// As `wdpool_pool_with`, with the callback as one transaction level (see
/// `wdpool_producer_transaction`): committed when the callback returns
/// WDPOOL_CB_OK, rolled back when it returns WDPOOL_CB_ABORT (result OK) or
/// anything else (CALLBACK_FAILED). OK with WDPOOL_CB_OK means committed.
///
/// Blocks:     as `wdpool_pool_with`, plus commit or abort (bounded by the
///             producer's `max_wait_timeout`).
/// Calls back: as `wdpool_pool_with`.
/// Thread:     any.
/// Returns:    those of `wdpool_pool_with`, and NOT_TRANSACTIONAL,
///             TRANSACTION_ABORTED (an abortable Kafka error: rolled back),
///             TRANSACTION_EXITED_EARLY, KAFKA, FATAL (the producer will be
///             replaced).
#[no_mangle]
pub unsafe extern "C" fn wdpool_pool_transaction(
    pool: *const wdpool_pool,
    timeout_ms: i64,
    callback: wdpool_producer_cb,
    user_data: *mut c_void,
    err: *mut *mut wdpool_error,
) -> wdpool_result {
    boundary(err, || on_pool(pool, |p| run_transaction(p, timeout_ms, callback, user_data)))
}

/// Checks out a producer for `owner` without a callback, for bindings whose
/// callbacks cannot be trusted to return normally (Ruby blocks, Go
/// functions that panic). Give it back with `wdpool_producer_checkin`, from
/// any thread. A nested checkout by the same owner gets the same producer
/// (see `wdpool_owner`): Ruby passes the current Fiber, Go a token carried
/// by its context, C WDPOOL_OWNER_THREAD; WDPOOL_OWNER_NONE is never
/// re-entrant.
///
/// Blocks:       up to `timeout_ms` (WDPOOL_TIMEOUT_DEFAULT: the pool's
///               timeout) for a free producer, creating it included. A
///               creation still waiting (say, for `init_transactions`) when
///               the time is up goes on in the background for the next
///               caller; this one gets TIMEOUT saying so.
/// Calls back:   checkout timeout and producer replaced subscribers, on
///               this thread.
/// Thread:       any.
/// producer_out: receives the handle, written only on OK.
/// Returns:      as `wdpool_pool_with`, without CALLBACK_FAILED and
///               TRANSACTION_ABORTED.
#[no_mangle]
pub unsafe extern "C" fn wdpool_pool_checkout(
    pool: *const wdpool_pool,
    owner: wdpool_owner,
    timeout_ms: i64,
    producer_out: *mut *mut wdpool_producer,
    err: *mut *mut wdpool_error,
) -> wdpool_result {
    // SAFETY: `producer_out` as the caller promised.
    boundary(err, || on_pool(pool, |p| unsafe { checkout(p, owner, timeout_ms, producer_out) }))
}

/// `wdpool_pool_checkout` without waiting: a producer for `owner` if one
/// is free right now (the one `owner` already holds, nested, or an idle
/// one), else none. For bindings that must not block a thread without
/// releasing it first (Ruby's GVL): try first, and only when this finds
/// none, release and call `wdpool_pool_checkout`.
///
/// Unlike `wdpool_pool_checkout` with a timeout of 0, finding none is not a
/// checkout timeout: it is not counted in `checkout_timeouts`, fires no
/// `connection_pool.checkout_timeout` event, and never starts creating a
/// producer (a slot whose producer was never created, or was closed by a
/// reload, does not count as free: the blocking checkout creates it).
///
/// Blocks:       never (a short lock; an idle producer found broken is
///               closed, forcibly, before the next idle one is tried).
/// Calls back:   producer replaced subscribers, on this thread, when an
///               idle producer was found broken.
/// Thread:       any.
/// producer_out: receives the handle, or NULL when no producer was free;
///               written only on OK. A handle goes back with
///               `wdpool_producer_checkin`, as a checkout's does.
/// Returns:      OK (with a handle or NULL), NULL_PARAMETER,
///               INVALID_ARGUMENT, CLOSED, STALE_HANDLE (a freed pool).
#[no_mangle]
pub unsafe extern "C" fn wdpool_pool_try_checkout(
    pool: *const wdpool_pool,
    owner: wdpool_owner,
    producer_out: *mut *mut wdpool_producer,
    err: *mut *mut wdpool_error,
) -> wdpool_result {
    // SAFETY: `producer_out` as the caller promised.
    boundary(err, || on_pool(pool, |p| unsafe { try_checkout(p, owner, producer_out) }))
}

/// Closes the pool: gracefully (each idle producer flushes, bounded by its
/// `max_wait_timeout`) or, with `force`, purging what is not delivered.
/// Producers close in parallel. Checked-out producers are closed when they
/// come back. Later checkouts fail with WDPOOL_CLOSED (nested ones too).
/// Returns only when the pool is closed: a call made while another close
/// runs waits for it, and every call reports the first close's outcome
/// (and its `force`).
///
/// Blocks:     until the idle producers are flushed (graceful: up to their
///             `max_wait_timeout`) or purged (forced: about 500 ms at most).
/// Calls back: the `connection_pool.shutdown` subscribers, once per pool,
///             on the thread of the first close.
/// Thread:     any.
/// report_out: NULL, or where to write what the close did; written on OK.
/// Returns:    OK, NULL_PARAMETER, INVALID_ARGUMENT, STALE_HANDLE.
#[no_mangle]
pub unsafe extern "C" fn wdpool_pool_close(
    pool: *const wdpool_pool,
    force: bool,
    report_out: *mut wdpool_close_report,
    err: *mut *mut wdpool_error,
) -> wdpool_result {
    boundary(err, || {
        write_report(report_out, pool_of(pool)?.close(force));
        Ok(())
    })
}

/// Reloads the pool: idle producers are closed gracefully and recreated on
/// demand (with the same slot indexes and configuration); checked-out ones
/// are replaced when they come back.
///
/// Blocks:     until the idle producers are flushed (up to their
///             `max_wait_timeout`).
/// Calls back: `connection_pool.reload` subscribers before, and
///             `connection_pool.reloaded` after, on this thread.
/// Thread:     any.
/// Returns:    OK, NULL_PARAMETER, INVALID_ARGUMENT, CLOSED, STALE_HANDLE.
#[no_mangle]
pub unsafe extern "C" fn wdpool_pool_reload(pool: *const wdpool_pool, err: *mut *mut wdpool_error) -> wdpool_result {
    boundary(err, || pool_of(pool)?.reload().map(drop))
}

/// Writes a snapshot of the pool to `*stats_out`. Works on a closed pool.
///
/// Blocks:     never (it does not wait for creations, commits or closes in
///             progress).
/// Calls back: nothing.
/// Thread:     any.
/// Returns:    OK, NULL_PARAMETER, INVALID_ARGUMENT, STALE_HANDLE.
#[no_mangle]
pub unsafe extern "C" fn wdpool_pool_stats(
    pool: *const wdpool_pool,
    stats_out: *mut wdpool_statistics,
    err: *mut *mut wdpool_error,
) -> wdpool_result {
    boundary(err, || write_stats(stats_out, pool_of(pool)?.stats()))
}

/// The pool's process-unique id, as events report it; 0 for NULL or an
/// invalid handle. Blocks: never. Calls back: nothing. Thread: any.
#[no_mangle]
pub unsafe extern "C" fn wdpool_pool_id(pool: *const wdpool_pool) -> u64 {
    guarded(0, || pool_of(pool).map_or(0, |p| p.id()))
}

/// Frees a pool handle; safe from a garbage collector's finalizer. NULL, a
/// freed handle or another kind of handle does nothing. The handle is stale
/// at once; calls already running on other threads finish normally.
///
/// When the pool was not closed, a thread of wdpool's closes it gracefully
/// in the background once the last call using it has returned (each
/// producer flushes, up to its `max_wait_timeout`), and its
/// `connection_pool.shutdown` event is queued for `wdpool_events_drain`. To
/// know that everything was delivered, call `wdpool_pool_close` first.
/// Producers still checked out stay valid until they come back, and are
/// then closed. In a forked child, the parent's producers are abandoned,
/// never destroyed.
///
/// Blocks: never. Calls back: nothing. Thread: any.
#[no_mangle]
pub unsafe extern "C" fn wdpool_pool_free(pool: *mut wdpool_pool) {
    guarded((), || {
        if !pool.is_null() {
            if let Ok(removed) = POOLS.remove(pool as usize) {
                pins::retire(pool as usize, removed);
            }
        }
    })
}

// ---------------------------------------------------------------------------
// The global pool.

/// Sets up the process-wide pool, as `wdpool_pool_new` does. A global pool
/// set up before is closed gracefully once the new one is in place.
///
/// Blocks:     as `wdpool_pool_new`, then to close the previous global pool.
/// Calls back: `configure`, then `connection_pool.created` and
///             `connection_pool.setup` subscribers, on this thread.
/// Thread:     any.
/// Returns:    as `wdpool_pool_new`.
#[no_mangle]
pub unsafe extern "C" fn wdpool_setup(
    options: *const wdpool_options,
    configure: wdpool_configure_cb,
    user_data: *mut c_void,
    err: *mut *mut wdpool_error,
) -> wdpool_result {
    boundary(err, || {
        // Before the pool exists: the frames of its callbacks rely on it.
        fence::init();
        pools::setup(options_of(options)?, configure_with(configure, user_data))
    })
}

/// `wdpool_pool_with` on the global pool (blocks, calls back and may be
/// called from any thread as that does). Also returns NOT_SET_UP before
/// `wdpool_setup` and CLOSED after `wdpool_close`.
#[no_mangle]
pub unsafe extern "C" fn wdpool_with(
    timeout_ms: i64,
    callback: wdpool_producer_cb,
    user_data: *mut c_void,
    err: *mut *mut wdpool_error,
) -> wdpool_result {
    boundary(err, || run_with(&*pools::global()?, timeout_ms, callback, user_data))
}

/// `wdpool_pool_transaction` on the global pool (blocks, calls back and may
/// be called from any thread as that does); also NOT_SET_UP.
#[no_mangle]
pub unsafe extern "C" fn wdpool_transaction(
    timeout_ms: i64,
    callback: wdpool_producer_cb,
    user_data: *mut c_void,
    err: *mut *mut wdpool_error,
) -> wdpool_result {
    boundary(err, || run_transaction(&*pools::global()?, timeout_ms, callback, user_data))
}

/// `wdpool_pool_checkout` on the global pool (blocks, calls back and may be
/// called from any thread as that does); also NOT_SET_UP.
#[no_mangle]
pub unsafe extern "C" fn wdpool_checkout(
    owner: wdpool_owner,
    timeout_ms: i64,
    producer_out: *mut *mut wdpool_producer,
    err: *mut *mut wdpool_error,
) -> wdpool_result {
    boundary(err, || checkout(&*pools::global()?, owner, timeout_ms, producer_out))
}

/// `wdpool_pool_try_checkout` on the global pool (never blocks; calls back
/// and may be called from any thread as that does); also NOT_SET_UP.
#[no_mangle]
pub unsafe extern "C" fn wdpool_try_checkout(
    owner: wdpool_owner,
    producer_out: *mut *mut wdpool_producer,
    err: *mut *mut wdpool_error,
) -> wdpool_result {
    boundary(err, || try_checkout(&*pools::global()?, owner, producer_out))
}

/// `wdpool_pool_close` on the global pool. Harmless when there is none
/// (reports zeros); when it is closed or closing, waits for that close and
/// reports its outcome. Blocks, calls back and may be called from any
/// thread as `wdpool_pool_close`. Returns OK.
#[no_mangle]
pub unsafe extern "C" fn wdpool_close(
    force: bool,
    report_out: *mut wdpool_close_report,
    err: *mut *mut wdpool_error,
) -> wdpool_result {
    boundary(err, || {
        write_report(report_out, pools::close_global(force));
        Ok(())
    })
}

/// `wdpool_pool_reload` on the global pool. Without a global pool it is a
/// harmless no-op returning OK, as WaterDrop's `reload` is (so a process may
/// reload unconditionally after `fork()`). Blocks, calls back and may be
/// called from any thread as `wdpool_pool_reload`. Returns OK, CLOSED.
#[no_mangle]
pub unsafe extern "C" fn wdpool_reload(err: *mut *mut wdpool_error) -> wdpool_result {
    boundary(err, || pools::reload_global().map(drop))
}

/// `wdpool_pool_stats` on the global pool; also NOT_SET_UP and CLOSED.
/// Blocks: never. Calls back: nothing. Thread: any.
#[no_mangle]
pub unsafe extern "C" fn wdpool_stats(stats_out: *mut wdpool_statistics, err: *mut *mut wdpool_error) -> wdpool_result {
    boundary(err, || write_stats(stats_out, pools::global()?.stats()))
}

/// Whether a global pool is set up and not closed (WaterDrop's `active?`).
/// Blocks: never. Calls back: nothing. Thread: any.
#[no_mangle]
pub extern "C" fn wdpool_active() -> bool {
    guarded(false, pools::is_active)
}

/// The global pool's id (as events report it), or 0 when none is active.
/// Blocks: never. Calls back: nothing. Thread: any.
#[no_mangle]
pub extern "C" fn wdpool_global_id() -> u64 {
    guarded(0, || pools::global().map_or(0, |p| p.id()))
}
