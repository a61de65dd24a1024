//! Unit tests of the pool core with a fake, pure-Rust [`Manager`].
//!
//! Nothing here waits for a condition with `thread::sleep`: threads talk
//! through channels with `recv_timeout`, or a condition is polled against a
//! deadline (`wait_until`), so a failure fails instead of hanging.

use super::*;

use std::cell::RefCell;
use std::collections::HashSet;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::Ordering::SeqCst;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

/// A generous bound for anything that should happen "soon".
const LONG: Duration = Duration::from_secs(10);
const ZERO: Duration = Duration::ZERO;
/// The checkout timeout of a waiter that must be woken by a notification:
/// well beyond `LONG`, so that a missed wake-up cannot pass for one.
const WAIT_FOREVER: Duration = Duration::from_secs(120);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

// ---------------------------------------------------------------------------
// The fake manager
// ---------------------------------------------------------------------------

#[derive(Debug)]
struct FakeConn {
    index: usize,
    /// 1, 2, 3... in creation order, unique per manager.
    serial: u64,
    broken: AtomicBool,
    closed: AtomicBool,
    /// What `close` reports as undelivered for this connection.
    undelivered: AtomicU64,
}

impl FakeConn {
    fn new(index: usize, serial: u64) -> Self {
        FakeConn {
            index,
            serial,
            broken: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            undelivered: AtomicU64::new(0),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CloseRecord {
    index: usize,
    serial: u64,
    force: bool,
}

type CreateHook = Arc<dyn Fn(usize) -> Result<(), String> + Send + Sync>;
type CloseHook = Arc<dyn Fn(&FakeConn) + Send + Sync>;
type EventHook = Arc<dyn Fn(&PoolEvent) + Send + Sync>;

#[derive(Default)]
struct Fake {
    next_serial: AtomicU64,
    /// The index of every `create` call, successful or not.
    attempts: Mutex<Vec<usize>>,
    /// (index, serial) of every connection created.
    creations: Mutex<Vec<(usize, u64)>>,
    events: Mutex<Vec<PoolEvent>>,
    closes: Mutex<Vec<CloseRecord>>,
    double_closes: AtomicUsize,
    /// Runs at the start of `create` (without any lock of ours): may block or
    /// fail the creation.
    create_hook: Mutex<Option<CreateHook>>,
    close_hook: Mutex<Option<CloseHook>>,
    event_hook: Mutex<Option<EventHook>>,
    /// When set, `create_within` hands creation back unfinished; the
    /// background finish waits for this gate to open (or fail).
    unfinished: Mutex<Option<Arc<Gate>>>,
    /// `create_within` first waits at the gate for its whole budget.
    spend_budget: AtomicBool,
}

/// A gate the background part of an unfinished creation waits at.
#[derive(Default)]
struct Gate {
    state: Mutex<Option<Result<(), String>>>,
    cv: Condvar,
}

impl Gate {
    fn open(&self, result: Result<(), String>) {
        *lock(&self.state) = Some(result);
        self.cv.notify_all();
    }
    fn pass(&self) -> Result<(), String> {
        self.pass_within(LONG)
    }
    fn pass_within(&self, within: Duration) -> Result<(), String> {
        let mut state = lock(&self.state);
        let deadline = Instant::now() + within;
        while state.is_none() {
            let now = Instant::now();
            if now >= deadline {
                return Err("gate never opened".into());
            }
            state = self.cv.wait_timeout(state, deadline - now).unwrap_or_else(|e| e.into_inner()).0;
        }
        state.clone().expect("opened")
    }
}

impl Fake {
    fn attempts(&self) -> Vec<usize> {
        lock(&self.attempts).clone()
    }
    fn creations(&self) -> Vec<(usize, u64)> {
        lock(&self.creations).clone()
    }
    fn creations_of(&self, index: usize) -> usize {
        lock(&self.creations).iter().filter(|(i, _)| *i == index).count()
    }
    fn events(&self) -> Vec<PoolEvent> {
        lock(&self.events).clone()
    }
    fn closes(&self) -> Vec<CloseRecord> {
        lock(&self.closes).clone()
    }
    fn on_create(&self, hook: impl Fn(usize) -> Result<(), String> + Send + Sync + 'static) {
        *lock(&self.create_hook) = Some(Arc::new(hook));
    }
    fn on_close(&self, hook: impl Fn(&FakeConn) + Send + Sync + 'static) {
        *lock(&self.close_hook) = Some(Arc::new(hook));
    }
    fn on_pool_event(&self, hook: impl Fn(&PoolEvent) + Send + Sync + 'static) {
        *lock(&self.event_hook) = Some(Arc::new(hook));
    }
    /// From now on creations finish in the background, behind `gate`.
    fn unfinished_behind(&self, gate: Arc<Gate>) {
        *lock(&self.unfinished) = Some(gate);
    }
}

impl Manager for Fake {
    type Conn = FakeConn;
    type Error = String;

    fn create(&self, index: usize) -> Result<FakeConn, String> {
        lock(&self.attempts).push(index);
        let hook = lock(&self.create_hook).clone();
        if let Some(hook) = hook {
            hook(index)?;
        }
        let serial = self.next_serial.fetch_add(1, SeqCst) + 1;
        lock(&self.creations).push((index, serial));
        Ok(FakeConn::new(index, serial))
    }

    fn create_within(&self, index: usize, budget: Duration) -> Result<Created<FakeConn, String>, String> {
        let Some(gate) = lock(&self.unfinished).clone() else { return self.create(index).map(Created::Ready) };
        if self.spend_budget.load(SeqCst) {
            // Like init_transactions against a broker that does not answer.
            let _ = gate.pass_within(budget);
        }
        lock(&self.attempts).push(index);
        let serial = self.next_serial.fetch_add(1, SeqCst) + 1;
        let finish = Box::new(move || {
            gate.pass()?;
            Ok(FakeConn::new(index, serial))
        });
        Ok(Created::Unfinished { finish, pending: format!("slot {index} waits at the gate") })
    }

    fn is_broken(&self, conn: &FakeConn) -> bool {
        conn.broken.load(SeqCst)
    }

    fn close(&self, conn: Arc<FakeConn>, force: bool) -> u64 {
        if conn.closed.swap(true, SeqCst) {
            self.double_closes.fetch_add(1, SeqCst);
        }
        lock(&self.closes).push(CloseRecord { index: conn.index, serial: conn.serial, force });
        let hook = lock(&self.close_hook).clone();
        if let Some(hook) = hook {
            hook(&conn);
        }
        conn.undelivered.load(SeqCst)
    }

    fn on_event(&self, event: PoolEvent) {
        lock(&self.events).push(event.clone());
        let hook = lock(&self.event_hook).clone();
        if let Some(hook) = hook {
            hook(&event);
        }
    }
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

type TestPool = Pool<Fake>;
type TestLease = Lease<Fake>;
type TestError = CheckoutError<String>;

fn pool_with(size: usize, timeout: Duration) -> TestPool {
    Pool::new(Fake::default(), Options { size, timeout })
}

fn new_pool(size: usize) -> TestPool {
    pool_with(size, LONG)
}

fn expect_err(result: Result<TestLease, TestError>) -> TestError {
    match result {
        Ok(lease) => panic!("expected a checkout error, got a lease of slot {}", lease.index()),
        Err(e) => e,
    }
}

fn expect_timeout(err: &TestError) -> (Duration, usize, usize) {
    match err {
        CheckoutError::Timeout { waited, available, size, .. } => (*waited, *available, *size),
        other => panic!("expected a timeout, got {other:?}"),
    }
}

/// Checks a lease out on a fresh thread (so without this thread's re-entrancy)
/// and hands it back here. Fails rather than waits if nothing is free.
fn checkout_elsewhere(pool: &TestPool) -> TestLease {
    let pool = pool.clone();
    thread::spawn(move || match pool.checkout(Some(ZERO)) {
        Ok(lease) => lease,
        Err(e) => panic!("checkout on another thread failed: {e:?}"),
    })
    .join()
    .expect("the checkout thread panicked")
}

/// Tries a checkout on another thread with the given timeout and reports
/// whether it failed (with what) and how long it took.
fn try_elsewhere(pool: &TestPool, timeout: Option<Duration>) -> (Result<usize, TestError>, Duration) {
    let pool = pool.clone();
    thread::spawn(move || {
        let start = Instant::now();
        let result = pool.checkout(timeout).map(|lease| lease.index());
        (result, start.elapsed())
    })
    .join()
    .expect("the checkout thread panicked")
}

/// Polls `cond` until it holds; panics after `LONG`.
fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + LONG;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::yield_now();
        thread::park_timeout(Duration::from_micros(200));
    }
}

fn wait_for_waiters(pool: &TestPool, n: usize) {
    wait_until(&format!("{n} waiter(s)"), || pool.stats().waiting == n);
}

/// Runs `f` on a thread and fails if it does not finish within `LONG`.
fn with_watchdog<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    with_watchdog_for(what, LONG, f)
}

/// How long the stress tests (thousands of checkouts by more threads than
/// processors) may take before they count as stuck: on a loaded machine
/// they have taken 8 s, where they usually take 0.2 s.
const STRESS: Duration = Duration::from_secs(60);

/// Starts `threads` threads that each run `body(thread, pool)`, and joins them
/// under a watchdog.
fn hammer(pool: &TestPool, threads: usize, body: impl Fn(usize, &TestPool) + Send + Sync + 'static) {
    let body = Arc::new(body);
    let start = Latch::new(threads);
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (pool, body, start) = (pool.clone(), Arc::clone(&body), Arc::clone(&start));
            thread::spawn(move || {
                start.arrive_and_wait(LONG);
                body(t, &pool);
            })
        })
        .collect();
    with_watchdog_for("the hammering threads", STRESS, move || {
        handles.into_iter().all(|h| h.join().is_ok())
    })
    .then_some(())
    .expect("a hammering thread panicked");
}

/// Runs `f` on a thread and fails if it does not finish `within`.
fn with_watchdog_for<T: Send + 'static>(what: &str, within: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(within) {
        Ok(value) => value,
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("{what} did not finish within {within:?}"),
        Err(mpsc::RecvTimeoutError::Disconnected) => panic!("{what} panicked"),
    }
}

/// A rendezvous of `target` parties that gives up after a deadline (unlike
/// `std::sync::Barrier`), so that a failing test never leaves threads stuck.
struct Latch {
    arrived: Mutex<usize>,
    cv: Condvar,
    target: usize,
}

impl Latch {
    fn new(target: usize) -> Arc<Self> {
        Arc::new(Latch { arrived: Mutex::new(0), cv: Condvar::new(), target })
    }

    /// Arrives, then waits for the others; false if they did not all come.
    fn arrive_and_wait(&self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        let mut arrived = lock(&self.arrived);
        *arrived += 1;
        self.cv.notify_all();
        while *arrived < self.target {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            arrived = self.cv.wait_timeout(arrived, deadline - now).unwrap_or_else(|e| e.into_inner()).0;
        }
        true
    }
}

mod construction;
mod lifo;
mod timeouts;
mod waiting;
mod reentrancy;
mod with_panics;
mod broken;
mod creation;
mod close;
mod reload;
mod stats;
mod fork;
mod concurrency;
mod owners;
mod unfinished;
mod try_checkout;
mod parked;
mod fairness;
