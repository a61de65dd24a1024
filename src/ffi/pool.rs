//! `wdpool_pool` instances and the global pool.

use std::ffi::c_void;
use std::sync::Arc;
use std::time::Duration;

use super::config::{configure_with, wdpool_configure_cb};
use super::producer::{call_back, callback_outcome, lease_handle, wdpool_producer, wdpool_producer_cb};
use super::{boundary, guarded, null, required, timeout_arg, wdpool_error, wdpool_result, write_out};
use crate::error::{Error, ErrorKind, Result};
use crate::kafka::Completion;
use crate::pool::{CloseReport, Options, Stats, DEFAULT_SIZE, DEFAULT_TIMEOUT};
use crate::producer_pool::{self as pools, ProducerPool};

/// WaterDrop's default pool size.
pub const WDPOOL_DEFAULT_SIZE: usize = 5;
/// WaterDrop's default checkout timeout, in milliseconds.
pub const WDPOOL_DEFAULT_TIMEOUT_MS: u64 = 5000;

const _: () = assert!(WDPOOL_DEFAULT_SIZE == DEFAULT_SIZE);
const _: () = assert!(WDPOOL_DEFAULT_TIMEOUT_MS as u128 == DEFAULT_TIMEOUT.as_millis());

/// A pool's shape. Get the defaults from `wdpool_options_default()`.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct wdpool_options {
    /// How many producers (slots); at least 1. Default 5.
    pub size: usize,
    /// How long a checkout waits for a free producer, in milliseconds.
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
    /// Producers closed by this call (the idle ones).
    pub closed: usize,
    /// Messages those producers did not deliver (flush timed out, or purged
    /// by a forced close).
    pub undelivered: u64,
    /// Producers still checked out: each is closed when it comes back.
    pub in_use: usize,
}

/// A pool of producers. Create it with `wdpool_pool_new`, free it with
/// `wdpool_pool_free`. All its functions may be called from any thread,
/// concurrently, until it is freed.
#[allow(non_camel_case_types)]
pub struct wdpool_pool {
    _private: [u8; 0],
}

/// WaterDrop's defaults: size 5, timeout 5000 ms.
///
/// Thread safety: any thread.
#[no_mangle]
pub extern "C" fn wdpool_options_default() -> wdpool_options {
    wdpool_options { size: WDPOOL_DEFAULT_SIZE, timeout_ms: WDPOOL_DEFAULT_TIMEOUT_MS }
}

fn options_of(options: *const wdpool_options) -> Result<Options> {
    // SAFETY: NULL or a readable options struct.
    let Some(o) = (unsafe { options.as_ref() }) else { return Ok(Options::default()) };
    if o.size == 0 {
        return Err(Error::new(ErrorKind::InvalidArgument, "options.size must be at least 1"));
    }
    Ok(Options { size: o.size, timeout: Duration::from_millis(o.timeout_ms) })
}

fn stats_to_c(s: Stats) -> wdpool_statistics {
    wdpool_statistics {
        size: s.size,
        created: s.created,
        idle: s.idle,
        in_use: s.in_use,
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

fn pool_ref<'a>(pool: *const wdpool_pool) -> Result<&'a ProducerPool> {
    unsafe { required(pool as *const ProducerPool, "pool") }
}

fn run_with(pool: &ProducerPool, timeout_ms: i64, callback: wdpool_producer_cb, user_data: *mut c_void) -> Result<()> {
    let callback = callback.ok_or_else(|| null("callback"))?;
    pool.with(timeout_arg(timeout_ms), |lease| {
        match callback_outcome(call_back(lease.conn(), callback, user_data)?)? {
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
    pool.transaction(timeout_arg(timeout_ms), |lease| callback_outcome(call_back(lease.conn(), callback, user_data)?))
        .map(drop)
}

fn checkout(pool: &ProducerPool, timeout_ms: i64, producer_out: *mut *mut wdpool_producer) -> Result<()> {
    if producer_out.is_null() {
        return Err(null("producer_out"));
    }
    let handle = lease_handle(pool.checkout(timeout_arg(timeout_ms))?)?;
    unsafe { write_out(producer_out, handle) };
    Ok(())
}

fn write_report(report_out: *mut wdpool_close_report, report: CloseReport) {
    if !report_out.is_null() {
        unsafe { write_out(report_out, report_to_c(report)) };
    }
}

fn write_stats(stats_out: *mut wdpool_statistics, stats: Stats) -> Result<()> {
    if stats_out.is_null() {
        return Err(null("stats_out"));
    }
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
/// use, so no broker needs to be reachable now. Fires `connection_pool.created`.
///
/// `pool_out` receives the new pool, owned by the caller (free it with
/// `wdpool_pool_free`); written only on WDPOOL_OK. Returns WDPOOL_OK,
/// WDPOOL_NULL_PARAMETER, WDPOOL_INVALID_ARGUMENT (size 0),
/// WDPOOL_INVALID_CONFIG (names the key), WDPOOL_CALLBACK_FAILED.
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
        unsafe { write_out(pool_out, Arc::into_raw(Arc::new(pool)) as *mut wdpool_pool) };
        Ok(())
    })
}

/// Checks out a producer (waiting at most `timeout_ms`;
/// WDPOOL_TIMEOUT_DEFAULT: the pool's timeout), calls `callback(user_data,
/// producer)` on this thread, and returns the producer to the pool whatever
/// the callback did. Re-entrant: a nested call on the same thread gets the
/// same producer (a pool of size 1 does not deadlock). A transaction the
/// callback opened with `wdpool_producer_begin` and left open is aborted.
///
/// Returns WDPOOL_OK, WDPOOL_NULL_PARAMETER, WDPOOL_TIMEOUT, WDPOOL_CLOSED,
/// WDPOOL_CALLBACK_FAILED, WDPOOL_TRANSACTION_ABORTED, and the errors of
/// creating a producer (WDPOOL_INVALID_CONFIG, WDPOOL_KAFKA, WDPOOL_FATAL).
#[no_mangle]
pub unsafe extern "C" fn wdpool_pool_with(
    pool: *const wdpool_pool,
    timeout_ms: i64,
    callback: wdpool_producer_cb,
    user_data: *mut c_void,
    err: *mut *mut wdpool_error,
) -> wdpool_result {
    boundary(err, || run_with(pool_ref(pool)?, timeout_ms, callback, user_data))
}

/// As `wdpool_pool_with`, inside a transaction: committed when the callback
/// returns WDPOOL_CB_OK, aborted when it returns WDPOOL_CB_ABORT (result
/// WDPOOL_OK) or anything else (WDPOOL_CALLBACK_FAILED).
///
/// Returns those of `wdpool_pool_with`, and WDPOOL_NOT_TRANSACTIONAL,
/// WDPOOL_TRANSACTION_ABORTED (an abortable Kafka error: rolled back),
/// WDPOOL_KAFKA, WDPOOL_FATAL (the producer will be replaced).
#[no_mangle]
pub unsafe extern "C" fn wdpool_pool_transaction(
    pool: *const wdpool_pool,
    timeout_ms: i64,
    callback: wdpool_producer_cb,
    user_data: *mut c_void,
    err: *mut *mut wdpool_error,
) -> wdpool_result {
    boundary(err, || run_transaction(pool_ref(pool)?, timeout_ms, callback, user_data))
}

/// Checks out a producer without a callback (for bindings whose callbacks
/// cannot be trusted to return normally). The caller must give it back with
/// `wdpool_producer_checkin`, on any thread. Re-entrant per OS thread like
/// `wdpool_pool_with`: callers whose tasks move between OS threads (Go
/// goroutines) should use `wdpool_pool_with` or pin their thread.
///
/// `producer_out` is written only on WDPOOL_OK. Returns as
/// `wdpool_pool_with`, without WDPOOL_CALLBACK_FAILED.
#[no_mangle]
pub unsafe extern "C" fn wdpool_pool_checkout(
    pool: *const wdpool_pool,
    timeout_ms: i64,
    producer_out: *mut *mut wdpool_producer,
    err: *mut *mut wdpool_error,
) -> wdpool_result {
    boundary(err, || checkout(pool_ref(pool)?, timeout_ms, producer_out))
}

/// Closes the pool: gracefully (each idle producer flushes, bounded by its
/// `max_wait_timeout`) or, with `force`, purging what is not delivered.
/// Producers close in parallel. Checked-out producers are closed when they
/// come back. Later checkouts fail with WDPOOL_CLOSED (nested ones on a thread
/// that still holds a producer too). Closing again is harmless (reports
/// zeros). Fires `connection_pool.shutdown` once.
///
/// `report_out`: NULL or where to write what was closed. Returns WDPOOL_OK,
/// WDPOOL_NULL_PARAMETER (pool). Blocks until the idle producers are closed.
#[no_mangle]
pub unsafe extern "C" fn wdpool_pool_close(
    pool: *const wdpool_pool,
    force: bool,
    report_out: *mut wdpool_close_report,
    err: *mut *mut wdpool_error,
) -> wdpool_result {
    boundary(err, || {
        write_report(report_out, pool_ref(pool)?.close(force));
        Ok(())
    })
}

/// Reloads the pool: idle producers are closed gracefully and recreated on
/// demand (with the same slot indexes and configuration); checked-out ones
/// are replaced when they come back. Fires `connection_pool.reload` before
/// and `connection_pool.reloaded` after.
///
/// Returns WDPOOL_OK, WDPOOL_NULL_PARAMETER, WDPOOL_CLOSED.
#[no_mangle]
pub unsafe extern "C" fn wdpool_pool_reload(pool: *const wdpool_pool, err: *mut *mut wdpool_error) -> wdpool_result {
    boundary(err, || pool_ref(pool)?.reload().map(drop))
}

/// Writes a snapshot of the pool to `*stats_out`. Works on a closed pool.
///
/// Returns WDPOOL_OK, WDPOOL_NULL_PARAMETER.
#[no_mangle]
pub unsafe extern "C" fn wdpool_pool_stats(
    pool: *const wdpool_pool,
    stats_out: *mut wdpool_statistics,
    err: *mut *mut wdpool_error,
) -> wdpool_result {
    boundary(err, || write_stats(stats_out, pool_ref(pool)?.stats()))
}

/// The pool's process-unique id, as events report it; 0 for NULL.
#[no_mangle]
pub unsafe extern "C" fn wdpool_pool_id(pool: *const wdpool_pool) -> u64 {
    guarded(0, || pool_ref(pool).map_or(0, ProducerPool::id))
}

/// Frees a pool, closing it gracefully first if it is not closed. NULL does
/// nothing. The pool must not be used afterwards; producers still checked
/// out stay valid until they come back, and are then closed.
#[no_mangle]
pub unsafe extern "C" fn wdpool_pool_free(pool: *mut wdpool_pool) {
    guarded((), || {
        if !pool.is_null() {
            // SAFETY: a pointer from `wdpool_pool_new`, freed once.
            drop(unsafe { Arc::from_raw(pool as *const ProducerPool) });
        }
    })
}

// ---------------------------------------------------------------------------
// The global pool.

/// Sets up the process-wide pool, as `wdpool_pool_new` does. A global pool
/// set up before is closed gracefully once the new one is in place. Fires
/// `connection_pool.created` and `connection_pool.setup`.
///
/// Returns as `wdpool_pool_new` (without the out-parameter). Any thread.
#[no_mangle]
pub unsafe extern "C" fn wdpool_setup(
    options: *const wdpool_options,
    configure: wdpool_configure_cb,
    user_data: *mut c_void,
    err: *mut *mut wdpool_error,
) -> wdpool_result {
    boundary(err, || pools::setup(options_of(options)?, configure_with(configure, user_data)))
}

/// `wdpool_pool_with` on the global pool. Also returns WDPOOL_NOT_SET_UP
/// before `wdpool_setup` and WDPOOL_CLOSED after `wdpool_close`.
#[no_mangle]
pub unsafe extern "C" fn wdpool_with(
    timeout_ms: i64,
    callback: wdpool_producer_cb,
    user_data: *mut c_void,
    err: *mut *mut wdpool_error,
) -> wdpool_result {
    boundary(err, || run_with(&*pools::global()?, timeout_ms, callback, user_data))
}

/// `wdpool_pool_transaction` on the global pool; also WDPOOL_NOT_SET_UP.
#[no_mangle]
pub unsafe extern "C" fn wdpool_transaction(
    timeout_ms: i64,
    callback: wdpool_producer_cb,
    user_data: *mut c_void,
    err: *mut *mut wdpool_error,
) -> wdpool_result {
    boundary(err, || run_transaction(&*pools::global()?, timeout_ms, callback, user_data))
}

/// `wdpool_pool_checkout` on the global pool; also WDPOOL_NOT_SET_UP.
#[no_mangle]
pub unsafe extern "C" fn wdpool_checkout(
    timeout_ms: i64,
    producer_out: *mut *mut wdpool_producer,
    err: *mut *mut wdpool_error,
) -> wdpool_result {
    boundary(err, || checkout(&*pools::global()?, timeout_ms, producer_out))
}

/// `wdpool_pool_close` on the global pool. Harmless when there is none or it
/// is closed already (reports zeros). Returns WDPOOL_OK.
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

/// `wdpool_pool_reload` on the global pool; also WDPOOL_NOT_SET_UP.
#[no_mangle]
pub unsafe extern "C" fn wdpool_reload(err: *mut *mut wdpool_error) -> wdpool_result {
    boundary(err, || pools::global()?.reload().map(drop))
}

/// `wdpool_pool_stats` on the global pool; also WDPOOL_NOT_SET_UP and
/// WDPOOL_CLOSED.
#[no_mangle]
pub unsafe extern "C" fn wdpool_stats(stats_out: *mut wdpool_statistics, err: *mut *mut wdpool_error) -> wdpool_result {
    boundary(err, || write_stats(stats_out, pools::global()?.stats()))
}

/// Whether a global pool is set up and not closed (WaterDrop's `active?`).
#[no_mangle]
pub extern "C" fn wdpool_active() -> bool {
    guarded(false, pools::is_active)
}

/// The global pool's id (as events report it), or 0 when none is active.
#[no_mangle]
pub extern "C" fn wdpool_global_id() -> u64 {
    guarded(0, || pools::global().map_or(0, |p| p.id()))
}
