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
        Ok(FakeConn {
            index,
            serial,
            broken: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            undelivered: AtomicU64::new(0),
        })
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
        CheckoutError::Timeout { waited, available, size } => (*waited, *available, *size),
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
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(LONG) {
        Ok(value) => value,
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("{what} did not finish within {LONG:?}"),
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

// ---------------------------------------------------------------------------
// Options, construction, laziness
// ---------------------------------------------------------------------------

#[test]
fn default_options_are_5_conns_and_5000_ms() {
    let options = Options::default();
    assert_eq!(options, Options { size: 5, timeout: Duration::from_millis(5000) });
    assert_eq!(DEFAULT_SIZE, 5);
    assert_eq!(DEFAULT_TIMEOUT, Duration::from_secs(5));

    let pool = Pool::new(Fake::default(), Options::default());
    assert_eq!(pool.options(), options);
    assert_eq!(pool.stats(), Stats { size: 5, ..Stats::default() });
}

#[test]
#[should_panic(expected = "pool size must be at least 1")]
fn size_zero_is_rejected() {
    let _ = new_pool(0);
}

#[test]
fn pool_ids_are_unique_and_leases_know_their_pool() {
    let a = new_pool(1);
    let b = new_pool(1);
    assert_ne!(a.id(), b.id());
    assert_eq!(a.clone().id(), a.id(), "a clone is the same pool");
    let lease = a.checkout(None).unwrap();
    assert_eq!(lease.pool_id(), a.id());
    let lease_b = b.checkout(None).unwrap();
    assert_eq!(lease_b.pool_id(), b.id());
}

#[test]
fn creation_is_lazy_and_slot_indices_start_at_zero() {
    let pool = new_pool(3);
    assert!(pool.manager().attempts().is_empty(), "nothing is created up front");
    assert_eq!(pool.stats(), Stats { size: 3, ..Stats::default() });

    let a = pool.checkout(None).unwrap();
    assert_eq!(a.index(), 0, "slot 0 is created first");
    assert_eq!(pool.manager().attempts(), vec![0]);
    let b = checkout_elsewhere(&pool);
    let c = checkout_elsewhere(&pool);
    assert_eq!((b.index(), c.index()), (1, 2));
    assert_eq!(pool.manager().attempts(), vec![0, 1, 2], "each slot is created with its own index");
    for lease in [&a, &b, &c] {
        // (`lease.index` would be the lease's own field: go through the conn.)
        assert_eq!(lease.conn().index, lease.index(), "the conn was created for the lease's slot");
        assert_eq!(lease.conn().serial, lease.serial, "Deref and conn() agree");
    }
    drop((a, b, c));

    let s = pool.stats();
    assert_eq!((s.created, s.idle, s.in_use, s.creations), (3, 3, 0, 3));
    // Reusing an idle connection creates nothing.
    let again = checkout_elsewhere(&pool);
    drop(again);
    assert_eq!(pool.manager().attempts().len(), 3);
}

#[test]
fn lease_conn_outlives_the_lease() {
    let pool = new_pool(1);
    let lease = pool.checkout(None).unwrap();
    let conn = Arc::clone(lease.conn());
    drop(lease);
    assert_eq!(conn.serial, 1);
    assert!(!conn.closed.load(SeqCst));
    let again = pool.checkout(Some(ZERO)).unwrap();
    assert!(Arc::ptr_eq(&conn, again.conn()), "the same connection went back to the pool");
}

// ---------------------------------------------------------------------------
// LIFO
// ---------------------------------------------------------------------------

#[test]
fn checkout_is_lifo() {
    let pool = new_pool(3);
    let a = checkout_elsewhere(&pool);
    let b = checkout_elsewhere(&pool);
    let (ia, ib) = (a.index(), b.index());
    assert_ne!(ia, ib);
    drop(a);
    drop(b);
    let next = pool.checkout(Some(ZERO)).unwrap();
    assert_eq!(next.index(), ib, "the last connection returned goes out first");
    drop(next);

    // The other way round, so that a fixed preference cannot pass.
    let x = checkout_elsewhere(&pool);
    let y = checkout_elsewhere(&pool);
    assert_eq!((x.index(), y.index()), (ib, ia), "LIFO again");
    drop(x);
    drop(y);
    let next = pool.checkout(Some(ZERO)).unwrap();
    assert_eq!(next.index(), ia);
    drop(next);

    assert_eq!(pool.manager().attempts(), vec![0, 1], "slot 2 was never needed");
}

// ---------------------------------------------------------------------------
// Timeouts
// ---------------------------------------------------------------------------

#[test]
fn checkout_times_out_when_everything_is_in_use() {
    let pool = new_pool(1);
    let held = pool.checkout(None).unwrap();

    let (result, elapsed) = try_elsewhere(&pool, Some(Duration::from_millis(50)));
    let err = result.expect_err("the only connection is held");
    let (waited, available, size) = expect_timeout(&err);
    assert!(waited >= Duration::from_millis(50), "waited only {waited:?}");
    assert!(waited < LONG, "waited {waited:?}");
    assert_eq!((available, size), (0, 1));
    assert!(elapsed >= Duration::from_millis(50) && elapsed < LONG, "took {elapsed:?}");

    let msg = err.to_string();
    let ms = msg
        .strip_prefix("no producer available: waited ")
        .and_then(|rest| rest.strip_suffix(" ms, 0/1 available"))
        .unwrap_or_else(|| panic!("unexpected message {msg:?}"));
    assert!(ms.parse::<u64>().expect("a number of ms") >= 50, "{msg}");
    assert_eq!(ms, waited.as_millis().to_string());

    let s = pool.stats();
    assert_eq!(s.checkout_timeouts, 1);
    assert!(s.total_wait >= Duration::from_millis(50), "total_wait {:?}", s.total_wait);
    assert_eq!((s.waiting, s.in_use, s.idle), (0, 1, 0));
    assert_eq!(pool.manager().events(), vec![PoolEvent::CheckoutTimeout { waited, available: 0, size: 1 }]);
    drop(held);
    assert_eq!(pool.stats().idle, 1);
}

#[test]
fn per_call_timeout_overrides_the_pool_default() {
    // A long default, a short per-call timeout.
    let pool = pool_with(1, LONG);
    let _held = pool.checkout(None).unwrap();
    let (result, elapsed) = try_elsewhere(&pool, Some(Duration::from_millis(30)));
    let (waited, _, _) = expect_timeout(&result.expect_err("held"));
    assert!(waited >= Duration::from_millis(30));
    assert!(elapsed < Duration::from_secs(5), "the 10 s default was used: {elapsed:?}");

    // A short default is what `None` uses.
    let pool = pool_with(1, Duration::from_millis(40));
    let _held = pool.checkout(None).unwrap();
    let (result, elapsed) = try_elsewhere(&pool, None);
    let (waited, _, _) = expect_timeout(&result.expect_err("held"));
    assert!(waited >= Duration::from_millis(40));
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
    assert_eq!(pool.stats().checkout_timeouts, 1);

    // A long per-call timeout outlives a short default.
    let pool = pool_with(1, Duration::from_millis(40));
    let held = pool.checkout(None).unwrap();
    let (tx, rx) = mpsc::channel();
    let p = pool.clone();
    let waiter = thread::spawn(move || {
        let _ = tx.send(p.checkout(Some(WAIT_FOREVER)).map(|l| l.index()));
    });
    wait_for_waiters(&pool, 1);
    let since = Instant::now();
    // Not a sleep for a condition: the condition *is* that time passes while
    // the waiter keeps waiting.
    wait_until("200 ms to pass", || since.elapsed() >= Duration::from_millis(200));
    assert!(rx.try_recv().is_err(), "the waiter gave up at the pool default");
    assert_eq!(pool.stats().waiting, 1);
    assert_eq!(pool.stats().checkout_timeouts, 0);
    drop(held);
    assert_eq!(rx.recv_timeout(LONG).expect("woken").expect("checked out"), 0);
    waiter.join().unwrap();
}

#[test]
fn zero_timeout_fails_at_once_when_nothing_is_free() {
    let pool = new_pool(2);
    // A free (empty or idle) slot is handed out even with a zero timeout.
    let a = pool.checkout(Some(ZERO)).expect("an empty slot is free");
    let b = checkout_elsewhere(&pool);
    let (result, elapsed) = try_elsewhere(&pool, Some(ZERO));
    let err = result.expect_err("both held");
    let (waited, available, size) = expect_timeout(&err);
    assert_eq!((available, size), (0, 2));
    assert!(waited < Duration::from_millis(100), "{waited:?}");
    assert!(elapsed < Duration::from_secs(1), "{elapsed:?}");
    assert!(err.to_string().ends_with(", 0/2 available"), "{err}");
    assert_eq!(pool.stats().checkout_timeouts, 1);
    assert_eq!(pool.manager().events().len(), 1);
    drop(b);
    drop(a);
    let idle = checkout_elsewhere(&pool);
    assert_eq!(idle.index(), 0, "an idle slot is handed out with a zero timeout");
}

// ---------------------------------------------------------------------------
// Waiting
// ---------------------------------------------------------------------------

/// Holds the only connection, starts a waiter, runs `release` once the waiter
/// waits and returns what the waiter got.
fn waiter_after(pool: &TestPool, release: impl FnOnce(TestLease)) -> Result<(usize, u64), String> {
    let held = pool.checkout(None).unwrap();
    let (tx, rx) = mpsc::channel();
    let p = pool.clone();
    let waiter = thread::spawn(move || {
        let got = p.checkout(Some(WAIT_FOREVER)).map(|l| (l.index(), l.serial)).map_err(|e| e.to_string());
        let _ = tx.send(got);
    });
    wait_for_waiters(pool, 1);
    assert!(matches!(rx.try_recv(), Err(mpsc::TryRecvError::Empty)), "the waiter should still wait");
    release(held);
    let got = rx.recv_timeout(LONG).expect("the waiter was not woken");
    waiter.join().unwrap();
    got
}

#[test]
fn a_waiter_is_woken_when_a_lease_is_returned() {
    let pool = new_pool(1);
    let got = waiter_after(&pool, drop);
    assert_eq!(got, Ok((0, 1)), "the waiter gets the returned connection");
    let s = pool.stats();
    assert!(s.total_wait > Duration::ZERO, "the wait was accounted");
    assert_eq!((s.waiting, s.in_use, s.idle, s.checkout_timeouts, s.creations), (0, 0, 1, 0, 1));
}

#[test]
fn a_waiter_is_woken_when_a_broken_conn_is_returned() {
    let pool = new_pool(1);
    let got = waiter_after(&pool, |lease| {
        lease.broken.store(true, SeqCst);
        drop(lease);
    });
    assert_eq!(got, Ok((0, 2)), "the waiter gets a fresh connection for slot 0");
    assert_eq!(pool.stats().replaced, 1);
}

#[test]
fn a_waiter_is_woken_when_a_reloaded_conn_is_returned() {
    let pool = new_pool(1);
    let p = pool.clone();
    let got = waiter_after(&pool, move |lease| {
        assert_eq!(p.reload(), 0, "nothing idle to close");
        drop(lease);
    });
    assert_eq!(got, Ok((0, 2)));
    assert_eq!(pool.manager().closes(), vec![CloseRecord { index: 0, serial: 1, force: false }]);
}

#[test]
fn a_waiter_is_woken_when_another_creation_fails() {
    let pool = new_pool(1);
    let (started_tx, started_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let release_rx = Mutex::new(release_rx);
    let calls = AtomicUsize::new(0);
    pool.manager().on_create(move |_| {
        if calls.fetch_add(1, SeqCst) == 0 {
            let _ = started_tx.send(());
            let _ = lock(&release_rx).recv_timeout(LONG);
            return Err("first creation fails".into());
        }
        Ok(())
    });
    let p = pool.clone();
    let creator = thread::spawn(move || p.checkout(None).map(|l| l.index()).map_err(|e| e.to_string()));
    started_rx.recv_timeout(LONG).expect("creation started");

    let (tx, rx) = mpsc::channel();
    let p = pool.clone();
    let waiter = thread::spawn(move || {
        let _ = tx.send(p.checkout(Some(WAIT_FOREVER)).map(|l| l.index()).map_err(|e| e.to_string()));
    });
    wait_for_waiters(&pool, 1);
    release_tx.send(()).unwrap();
    assert_eq!(creator.join().unwrap(), Err("creating a producer failed: first creation fails".into()));
    assert_eq!(rx.recv_timeout(LONG).expect("the waiter was not woken"), Ok(0));
    waiter.join().unwrap();
    assert_eq!(pool.manager().attempts(), vec![0, 0]);
}

// ---------------------------------------------------------------------------
// Re-entrancy
// ---------------------------------------------------------------------------

#[test]
fn nested_checkout_on_the_same_thread_gets_the_same_conn() {
    let pool = new_pool(1);
    // On a helper thread under a watchdog, so that a deadlock fails the test.
    let p = pool.clone();
    let (outer, inner, same, in_use) = with_watchdog("a nested checkout", move || {
        let outer = p.checkout(None).unwrap();
        let inner = p.checkout(Some(ZERO)).expect("a nested checkout must not wait");
        let same = Arc::ptr_eq(outer.conn(), inner.conn());
        (outer.index(), inner.index(), same, p.stats().in_use)
    });
    assert_eq!((outer, inner), (0, 0));
    assert!(same, "the same connection");
    assert_eq!(in_use, 1);
    assert_eq!(pool.manager().attempts(), vec![0]);
    assert_eq!(pool.stats().idle, 1, "both leases were returned");
}

#[test]
fn nesting_depth_keeps_the_conn_until_the_outermost_lease_drops() {
    let pool = new_pool(1);
    let outer = pool.checkout(None).unwrap();
    let middle = pool.checkout(Some(ZERO)).unwrap();
    let inner = pool.checkout(Some(ZERO)).unwrap();
    assert_eq!((outer.index(), middle.index(), inner.index()), (0, 0, 0));
    assert_eq!(pool.stats().in_use, 1, "one slot, however deep");

    drop(inner);
    let s = pool.stats();
    assert_eq!((s.in_use, s.idle), (1, 0), "the outer leases still hold it");
    let (result, _) = try_elsewhere(&pool, Some(Duration::from_millis(20)));
    assert!(matches!(result, Err(CheckoutError::Timeout { .. })), "another thread cannot get it");

    drop(middle);
    assert_eq!(pool.stats().in_use, 1);
    let (result, _) = try_elsewhere(&pool, Some(ZERO));
    assert!(matches!(result, Err(CheckoutError::Timeout { .. })));

    drop(outer);
    let s = pool.stats();
    assert_eq!((s.in_use, s.idle), (0, 1));
    assert_eq!(try_elsewhere(&pool, Some(ZERO)).0.unwrap(), 0, "now another thread gets it");
    assert_eq!(pool.manager().attempts(), vec![0]);
}

#[test]
fn nested_leases_can_drop_in_any_order() {
    let pool = new_pool(1);
    let outer = pool.checkout(None).unwrap();
    let inner = pool.checkout(Some(ZERO)).unwrap();
    drop(outer);
    assert_eq!(pool.stats().in_use, 1, "the inner lease still holds the slot");
    assert!(try_elsewhere(&pool, Some(ZERO)).0.is_err());
    drop(inner);
    assert_eq!(pool.stats().idle, 1);
    assert!(try_elsewhere(&pool, Some(ZERO)).0.is_ok());
}

#[test]
fn nested_checkout_on_a_bigger_pool_does_not_take_a_second_slot() {
    let pool = new_pool(3);
    let outer = pool.checkout(None).unwrap();
    let inner = pool.checkout(None).unwrap();
    assert_eq!(outer.index(), inner.index());
    assert_eq!(pool.stats().in_use, 1);
    assert_eq!(pool.manager().attempts(), vec![0]);
    // Other threads get the other slots meanwhile.
    assert_eq!(try_elsewhere(&pool, Some(ZERO)).0.unwrap(), 1);
}

#[test]
fn reentrancy_is_per_pool() {
    let p1 = new_pool(1);
    let p2 = new_pool(1);
    let l1 = p1.checkout(None).unwrap();
    let l2 = p2.checkout(Some(ZERO)).expect("holding p1 must not affect p2");
    assert_eq!(p2.manager().attempts(), vec![0]);
    let l1b = p1.checkout(Some(ZERO)).expect("still re-entrant on p1");
    assert!(Arc::ptr_eq(l1.conn(), l1b.conn()));
    drop(l1b);
    drop(l1);
    assert_eq!(p1.stats().idle, 1);
    assert_eq!(p2.stats().in_use, 1, "p2 untouched by p1's check-ins");
    let l2b = p2.checkout(Some(ZERO)).expect("re-entrant on p2");
    assert!(Arc::ptr_eq(l2.conn(), l2b.conn()));
}

#[test]
fn with_nests_too() {
    let pool = new_pool(1);
    let (a, b) = pool
        .with(None, |outer| {
            let inner = pool.with(Some(ZERO), |inner| inner.serial).expect("nested with");
            (outer.serial, inner)
        })
        .unwrap();
    assert_eq!((a, b), (1, 1));
    assert_eq!(pool.stats().idle, 1);
}

#[test]
fn a_lease_dropped_on_another_thread_still_returns_the_slot() {
    let pool = new_pool(1);
    let lease = pool.checkout(None).unwrap();
    thread::spawn(move || drop(lease)).join().unwrap();
    let s = pool.stats();
    assert_eq!((s.in_use, s.idle), (0, 1));

    // Another thread can take it: the original thread's re-entrancy hint is stale.
    assert_eq!(try_elsewhere(&pool, Some(ZERO)).0.unwrap(), 0);

    // The original thread checks out afresh, and really holds it (depth 1).
    let again = pool.checkout(Some(ZERO)).expect("the original thread can check out again");
    assert_eq!(again.index(), 0);
    assert!(try_elsewhere(&pool, Some(ZERO)).0.is_err(), "held again");
    drop(again);
    let s = pool.stats();
    assert_eq!((s.in_use, s.idle), (0, 1), "a single drop returns it: the depth was reset");
    assert_eq!(pool.manager().attempts(), vec![0]);
}

#[test]
fn a_stale_reentrancy_hint_does_not_grab_a_slot_held_by_another_thread() {
    let pool = new_pool(1);
    let lease = pool.checkout(None).unwrap();
    thread::spawn(move || drop(lease)).join().unwrap();
    // Another thread now holds slot 0; this thread's old hint points at it.
    let other = checkout_elsewhere(&pool);
    let err = expect_err(pool.checkout(Some(Duration::from_millis(20))));
    assert!(matches!(err, CheckoutError::Timeout { available: 0, size: 1, .. }), "{err:?}");
    assert_eq!(pool.stats().in_use, 1);
    drop(other);
    assert_eq!(pool.checkout(Some(ZERO)).unwrap().index(), 0);
    assert_eq!(pool.stats().in_use, 0);
}

// ---------------------------------------------------------------------------
// `with` and panics
// ---------------------------------------------------------------------------

#[test]
fn with_returns_the_closure_value_and_the_conn() {
    let pool = new_pool(2);
    assert_eq!(pool.with(None, |c| c.index + 40).unwrap(), 40);
    let s = pool.stats();
    assert_eq!((s.in_use, s.idle, s.created), (0, 1, 1));
}

#[test]
fn with_returns_the_conn_when_the_closure_panics() {
    let pool = new_pool(1);
    let result = panic::catch_unwind(AssertUnwindSafe(|| pool.with(None, |_| -> () { panic!("boom") })));
    assert!(result.is_err(), "the panic propagates");
    let s = pool.stats();
    assert_eq!((s.in_use, s.idle, s.created), (0, 1, 1));
    assert!(pool.manager().closes().is_empty());

    // Another thread can have it at once...
    assert_eq!(try_elsewhere(&pool, Some(ZERO)).0.unwrap(), 0);
    // ...and this thread is not left in a stale nested state.
    assert_eq!(pool.with(Some(ZERO), |c| c.serial).unwrap(), 1);
    assert_eq!(pool.stats().in_use, 0);

    // A panic two levels deep unwinds both leases.
    let result = panic::catch_unwind(AssertUnwindSafe(|| {
        pool.with(None, |_| pool.with(None, |_| -> () { panic!("deep boom") }))
    }));
    assert!(result.is_err());
    assert_eq!(pool.stats().in_use, 0);
    assert_eq!(try_elsewhere(&pool, Some(ZERO)).0.unwrap(), 0);
    assert_eq!(pool.manager().attempts(), vec![0]);
}

#[test]
fn with_reports_checkout_errors_without_calling_the_closure() {
    let pool = new_pool(1);
    let _held = checkout_elsewhere(&pool);
    let called = AtomicBool::new(false);
    let err = pool.with(Some(ZERO), |_| called.store(true, SeqCst)).expect_err("nothing free");
    assert!(matches!(err, CheckoutError::Timeout { .. }));
    assert!(!called.load(SeqCst));
}

// ---------------------------------------------------------------------------
// Broken connections
// ---------------------------------------------------------------------------

#[test]
fn a_conn_broken_while_leased_is_replaced_when_returned() {
    let pool = new_pool(1);
    let lease = pool.checkout(None).unwrap();
    assert_eq!(lease.serial, 1);
    lease.broken.store(true, SeqCst);
    drop(lease);

    assert_eq!(pool.manager().closes(), vec![CloseRecord { index: 0, serial: 1, force: true }]);
    assert_eq!(pool.manager().events(), vec![PoolEvent::ConnReplaced { index: 0 }]);
    let s = pool.stats();
    assert_eq!((s.replaced, s.created, s.idle, s.in_use), (1, 0, 0, 0));

    let fresh = pool.checkout(Some(ZERO)).unwrap();
    assert_eq!(fresh.index(), 0, "the same slot");
    assert_eq!(fresh.serial, 2, "a fresh connection");
    assert!(!fresh.closed.load(SeqCst));
    assert_eq!(pool.manager().creations_of(0), 2);
    assert_eq!(pool.manager().double_closes.load(SeqCst), 0);
}

#[test]
fn a_conn_broken_while_idle_is_replaced_at_checkout() {
    let pool = new_pool(1);
    let conn = Arc::clone(pool.checkout(None).unwrap().conn());
    assert_eq!(pool.stats().idle, 1);
    conn.broken.store(true, SeqCst);

    let fresh = pool.checkout(Some(ZERO)).unwrap();
    assert_eq!((fresh.index(), fresh.serial), (0, 2));
    assert!(conn.closed.load(SeqCst), "the broken one was closed");
    assert_eq!(pool.manager().closes(), vec![CloseRecord { index: 0, serial: 1, force: true }]);
    assert_eq!(pool.manager().events(), vec![PoolEvent::ConnReplaced { index: 0 }]);
    assert_eq!(pool.stats().replaced, 1);
    assert_eq!(pool.manager().creations_of(0), 2);
}

#[test]
fn a_broken_idle_conn_is_never_handed_out() {
    let pool = new_pool(2);
    let a = checkout_elsewhere(&pool);
    let b = checkout_elsewhere(&pool);
    let b_conn = Arc::clone(b.conn());
    drop(a);
    drop(b);
    // Slot 1 is on top of the idle stack; it breaks while idle.
    b_conn.broken.store(true, SeqCst);
    let next = pool.checkout(Some(ZERO)).unwrap();
    assert_eq!((next.index(), next.serial), (0, 1), "the broken one is skipped for the next idle one");
    assert_eq!(pool.manager().closes(), vec![CloseRecord { index: 1, serial: 2, force: true }]);
    assert_eq!(pool.manager().events(), vec![PoolEvent::ConnReplaced { index: 1 }]);
    assert_eq!(pool.stats().replaced, 1);
    // Slot 1 gets a fresh connection on demand.
    let other = checkout_elsewhere(&pool);
    assert_eq!((other.index(), other.serial), (1, 3));
    assert_eq!(pool.manager().creations_of(1), 2);
}

#[test]
fn nested_leases_discard_a_broken_conn_only_at_the_outermost_drop() {
    let pool = new_pool(1);
    let outer = pool.checkout(None).unwrap();
    let inner = pool.checkout(None).unwrap();
    inner.broken.store(true, SeqCst);
    drop(inner);
    assert!(pool.manager().closes().is_empty(), "still used by the outer lease");
    assert_eq!(pool.stats().in_use, 1);
    drop(outer);
    assert_eq!(pool.manager().closes().len(), 1);
    assert_eq!(pool.stats().replaced, 1);
}

// ---------------------------------------------------------------------------
// Creation
// ---------------------------------------------------------------------------

#[test]
fn a_failed_creation_is_reported_and_the_slot_stays_usable() {
    let pool = new_pool(1);
    let calls = AtomicUsize::new(0);
    pool.manager().on_create(move |_| {
        if calls.fetch_add(1, SeqCst) == 0 {
            Err("broker down".into())
        } else {
            Ok(())
        }
    });
    let err = expect_err(pool.checkout(Some(ZERO)));
    match &err {
        CheckoutError::Create(msg) => assert_eq!(msg, "broker down"),
        other => panic!("expected Create, got {other:?}"),
    }
    assert_eq!(err.to_string(), "creating a producer failed: broker down");
    let s = pool.stats();
    assert_eq!((s.in_use, s.created, s.idle, s.creations), (0, 0, 0, 0));
    assert!(pool.manager().events().is_empty());

    // The slot is free for anybody, and creation is retried.
    let lease = checkout_elsewhere(&pool);
    assert_eq!((lease.index(), lease.serial), (0, 1));
    assert_eq!(pool.manager().attempts(), vec![0, 0]);
    drop(lease);
    // And this thread did not keep a re-entrancy hint for the failed slot.
    let mine = pool.checkout(Some(ZERO)).unwrap();
    assert!(try_elsewhere(&pool, Some(ZERO)).0.is_err(), "held by this thread");
    drop(mine);
    assert_eq!(pool.stats().creations, 1);
}

#[test]
fn a_slow_creation_does_not_block_other_slots() {
    let pool = new_pool(2);
    let (started_tx, started_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let release_rx = Mutex::new(release_rx);
    pool.manager().on_create(move |index| {
        if index == 0 {
            let _ = started_tx.send(());
            let _ = lock(&release_rx).recv_timeout(LONG);
        }
        Ok(())
    });

    let (a_tx, a_rx) = mpsc::channel();
    let p = pool.clone();
    let a = thread::spawn(move || {
        let _ = a_tx.send(p.checkout(None).map(|l| (l.index(), l.serial)).map_err(|e| e.to_string()));
    });
    started_rx.recv_timeout(LONG).expect("slot 0's creation started");
    let s = pool.stats();
    assert_eq!((s.in_use, s.created), (1, 0), "the slot is reserved while being created");

    let (b_tx, b_rx) = mpsc::channel();
    let p = pool.clone();
    let b = thread::spawn(move || {
        let _ = b_tx.send(p.checkout(Some(ZERO)).map(|l| (l.index(), l.serial)).map_err(|e| e.to_string()));
    });
    let got_b = b_rx.recv_timeout(LONG).expect("B was blocked by A's creation");
    assert_eq!(got_b, Ok((1, 1)));
    assert!(matches!(a_rx.try_recv(), Err(mpsc::TryRecvError::Empty)), "A is still creating");

    release_tx.send(()).unwrap();
    assert_eq!(a_rx.recv_timeout(LONG).expect("A finished"), Ok((0, 2)));
    a.join().unwrap();
    b.join().unwrap();
    assert_eq!(pool.stats().creations, 2);
}

/// A panicking `create` must not leak its slot: with a pool of one, the pool
/// would be dead for good.
#[test]
fn a_panicking_creation_does_not_leak_the_slot() {
    let pool = new_pool(1);
    let calls = AtomicUsize::new(0);
    pool.manager().on_create(move |_| {
        if calls.fetch_add(1, SeqCst) == 0 {
            panic!("create panicked");
        }
        Ok(())
    });
    let result = panic::catch_unwind(AssertUnwindSafe(|| pool.checkout(Some(ZERO)).map(|l| l.index())));
    assert!(result.is_err());
    assert_eq!(pool.stats().in_use, 0, "the reserved slot was not released");
    assert_eq!(try_elsewhere(&pool, Some(ZERO)).0.map_err(|e| e.to_string()), Ok(0));
}

// ---------------------------------------------------------------------------
// Close
// ---------------------------------------------------------------------------

#[test]
fn close_closes_idle_conns_and_reports() {
    let pool = new_pool(3);
    let a = checkout_elsewhere(&pool);
    let b = checkout_elsewhere(&pool);
    let c = checkout_elsewhere(&pool);
    a.undelivered.store(3, SeqCst);
    b.undelivered.store(4, SeqCst);
    c.undelivered.store(100, SeqCst);
    drop(a);
    drop(b);

    let report = pool.close(true);
    assert_eq!(report, CloseReport { closed: 2, undelivered: 7, in_use: 1 });
    let mut closes = pool.manager().closes();
    closes.sort_by_key(|r| r.index);
    assert_eq!(
        closes,
        vec![CloseRecord { index: 0, serial: 1, force: true }, CloseRecord { index: 1, serial: 2, force: true }]
    );
    assert!(pool.is_closed());
    let s = pool.stats();
    assert!(s.closed);
    assert_eq!((s.created, s.idle, s.in_use), (1, 0, 1));

    // No checkout after close, from any thread.
    let err = expect_err(pool.checkout(Some(ZERO)));
    assert!(matches!(err, CheckoutError::Closed), "{err:?}");
    assert_eq!(err.to_string(), "the pool is closed");
    assert!(matches!(try_elsewhere(&pool, None).0, Err(CheckoutError::Closed)));
    assert!(matches!(pool.with(None, |_| ()), Err(CheckoutError::Closed)));

    // The leased one is closed (with the close's force flag) when returned.
    drop(c);
    assert_eq!(pool.manager().closes().len(), 3);
    assert_eq!(pool.manager().closes()[2], CloseRecord { index: 2, serial: 3, force: true });
    let s = pool.stats();
    assert_eq!((s.created, s.idle, s.in_use), (0, 0, 0));
    assert_eq!(pool.manager().double_closes.load(SeqCst), 0);

    // Closing twice reports nothing and closes nothing.
    assert_eq!(pool.close(true), CloseReport::default());
    assert_eq!(pool.close(false), CloseReport::default());
    assert_eq!(pool.manager().closes().len(), 3);
    // Reload after close does nothing either.
    assert_eq!(pool.reload(), 0);
    assert_eq!(pool.manager().closes().len(), 3);
}

#[test]
fn a_graceful_close_passes_force_false_through() {
    let pool = new_pool(2);
    let a = checkout_elsewhere(&pool);
    let b = checkout_elsewhere(&pool);
    drop(a);
    let report = pool.close(false);
    assert_eq!(report, CloseReport { closed: 1, undelivered: 0, in_use: 1 });
    drop(b);
    let closes = pool.manager().closes();
    assert_eq!(closes.len(), 2);
    assert!(closes.iter().all(|r| !r.force), "{closes:?}");
}

#[test]
fn a_second_close_changes_nothing_even_with_leases_out() {
    let pool = new_pool(2);
    let held = checkout_elsewhere(&pool);
    drop(checkout_elsewhere(&pool));
    assert_eq!(pool.close(true), CloseReport { closed: 1, undelivered: 0, in_use: 1 });
    assert_eq!(pool.close(false), CloseReport::default(), "the second close reports nothing");
    assert_eq!(pool.close(true), CloseReport::default());
    drop(held);
    let closes = pool.manager().closes();
    assert_eq!(closes.len(), 2);
    assert!(closes[1].force, "the first close's force flag applies, not the second's");
}

#[test]
fn closing_an_unused_pool_closes_nothing() {
    let pool = new_pool(3);
    assert_eq!(pool.close(true), CloseReport::default());
    assert!(pool.is_closed());
    assert!(pool.manager().closes().is_empty());
    assert!(pool.manager().attempts().is_empty());
}

#[test]
fn close_wakes_a_waiter_with_closed() {
    let pool = new_pool(1);
    let held = pool.checkout(None).unwrap();
    let (tx, rx) = mpsc::channel();
    let p = pool.clone();
    let waiter = thread::spawn(move || {
        let _ = tx.send(p.checkout(Some(WAIT_FOREVER)).map(|l| l.index()).map_err(|e| e.to_string()));
    });
    wait_for_waiters(&pool, 1);
    let report = pool.close(false);
    assert_eq!(report, CloseReport { closed: 0, undelivered: 0, in_use: 1 });
    let got = rx.recv_timeout(Duration::from_secs(5)).expect("the waiter was not woken by close");
    assert_eq!(got, Err("the pool is closed".to_string()));
    waiter.join().unwrap();
    assert_eq!(pool.stats().waiting, 0);
    assert_eq!(pool.stats().checkout_timeouts, 0);
    drop(held);
    assert_eq!(pool.manager().closes(), vec![CloseRecord { index: 0, serial: 1, force: false }]);
}

#[test]
fn close_closes_idle_conns_in_parallel() {
    let pool = new_pool(4);
    let leases: Vec<_> = (0..4).map(|_| checkout_elsewhere(&pool)).collect();
    for lease in &leases {
        lease.undelivered.store(lease.index() as u64 + 1, SeqCst);
    }
    drop(leases);
    assert_eq!(pool.stats().idle, 4);

    // Each close waits for all four to be running at once: closed one after
    // the other they could not all meet.
    let latch = Latch::new(4);
    let met = Arc::new(AtomicUsize::new(0));
    let (l, m) = (Arc::clone(&latch), Arc::clone(&met));
    pool.manager().on_close(move |_| {
        if l.arrive_and_wait(Duration::from_secs(5)) {
            m.fetch_add(1, SeqCst);
        }
    });
    let p = pool.clone();
    let report = with_watchdog("a parallel close", move || p.close(true));
    assert_eq!(met.load(SeqCst), 4, "the closes did not run in parallel");
    assert_eq!(report, CloseReport { closed: 4, undelivered: 1 + 2 + 3 + 4, in_use: 0 });
    let mut indices: Vec<_> = pool.manager().closes().iter().map(|r| r.index).collect();
    indices.sort();
    assert_eq!(indices, vec![0, 1, 2, 3]);
}

#[test]
fn a_conn_being_created_during_close_is_closed_eventually() {
    let pool = new_pool(1);
    let (started_tx, started_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let release_rx = Mutex::new(release_rx);
    pool.manager().on_create(move |_| {
        let _ = started_tx.send(());
        let _ = lock(&release_rx).recv_timeout(LONG);
        Ok(())
    });
    let p = pool.clone();
    let creator = thread::spawn(move || {
        // Whatever the checkout returns, the lease (if any) is dropped here.
        p.checkout(None).map(|l| l.index()).map_err(|e| e.to_string())
    });
    started_rx.recv_timeout(LONG).expect("creation started");
    let report = pool.close(true);
    assert_eq!(report, CloseReport { closed: 0, undelivered: 0, in_use: 1 }, "the creating slot is in use");
    release_tx.send(()).unwrap();
    let _ = creator.join().unwrap();
    assert_eq!(pool.manager().closes(), vec![CloseRecord { index: 0, serial: 1, force: true }]);
    let s = pool.stats();
    assert_eq!((s.created, s.in_use, s.idle), (0, 0, 0));
}

#[test]
fn a_broken_conn_returned_after_close_is_force_closed_once() {
    let pool = new_pool(1);
    let lease = pool.checkout(None).unwrap();
    pool.close(false);
    lease.broken.store(true, SeqCst);
    drop(lease);
    assert_eq!(pool.manager().closes(), vec![CloseRecord { index: 0, serial: 1, force: true }]);
    assert_eq!(pool.manager().double_closes.load(SeqCst), 0);
    assert!(matches!(pool.checkout(Some(ZERO)), Err(CheckoutError::Closed)));
}

// ---------------------------------------------------------------------------
// Reload
// ---------------------------------------------------------------------------

#[test]
fn reload_closes_idle_conns_gracefully_and_recreates_them_on_demand() {
    let pool = new_pool(2);
    let a = checkout_elsewhere(&pool);
    let b = checkout_elsewhere(&pool);
    a.undelivered.store(5, SeqCst);
    b.undelivered.store(6, SeqCst);
    drop((a, b));

    assert_eq!(pool.reload(), 11, "the undelivered counts of the closed conns");
    let mut closes = pool.manager().closes();
    closes.sort_by_key(|r| r.index);
    assert_eq!(
        closes,
        vec![CloseRecord { index: 0, serial: 1, force: false }, CloseRecord { index: 1, serial: 2, force: false }]
    );
    let s = pool.stats();
    assert_eq!((s.created, s.idle, s.in_use, s.closed), (0, 0, 0, false));
    assert!(!pool.is_closed());
    assert!(pool.manager().events().is_empty(), "a reload is not a replacement");
    assert_eq!(s.replaced, 0);

    let c = checkout_elsewhere(&pool);
    let d = checkout_elsewhere(&pool);
    assert_eq!((c.index(), c.serial), (0, 3), "slot 0 is recreated first");
    assert_eq!((d.index(), d.serial), (1, 4));
    assert_eq!(pool.manager().attempts(), vec![0, 1, 0, 1]);
    drop((c, d));
    assert_eq!(pool.stats().idle, 2);
    assert_eq!(pool.manager().closes().len(), 2, "recreated conns go back to the pool");
}

#[test]
fn a_conn_leased_during_reload_is_closed_when_returned() {
    let pool = new_pool(1);
    let lease = pool.checkout(None).unwrap();
    lease.undelivered.store(9, SeqCst);
    assert_eq!(pool.reload(), 0, "nothing idle");
    assert!(pool.manager().closes().is_empty(), "not closed under the user's feet");
    assert_eq!(lease.serial, 1);
    drop(lease);

    assert_eq!(pool.manager().closes(), vec![CloseRecord { index: 0, serial: 1, force: false }]);
    let s = pool.stats();
    assert_eq!((s.created, s.idle, s.in_use, s.replaced), (0, 0, 0, 0));
    let fresh = pool.checkout(Some(ZERO)).unwrap();
    assert_eq!((fresh.index(), fresh.serial), (0, 2));
    drop(fresh);
    assert_eq!(pool.stats().idle, 1, "the fresh one is current and goes back");
    assert_eq!(pool.manager().closes().len(), 1);
}

#[test]
fn a_nested_lease_during_reload_is_closed_at_the_outermost_drop() {
    let pool = new_pool(1);
    let outer = pool.checkout(None).unwrap();
    let inner = pool.checkout(None).unwrap();
    pool.reload();
    drop(inner);
    assert!(pool.manager().closes().is_empty());
    drop(outer);
    assert_eq!(pool.manager().closes().len(), 1);
}

#[test]
fn a_conn_being_created_during_reload_is_replaced_when_returned() {
    let pool = new_pool(1);
    let (started_tx, started_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let release_rx = Mutex::new(release_rx);
    let calls = AtomicUsize::new(0);
    pool.manager().on_create(move |_| {
        if calls.fetch_add(1, SeqCst) == 0 {
            let _ = started_tx.send(());
            let _ = lock(&release_rx).recv_timeout(LONG);
        }
        Ok(())
    });
    let p = pool.clone();
    let creator = thread::spawn(move || p.checkout(None).map(|l| l.serial).map_err(|e| e.to_string()));
    started_rx.recv_timeout(LONG).expect("creation started");
    assert_eq!(pool.reload(), 0);
    release_tx.send(()).unwrap();
    assert_eq!(creator.join().unwrap(), Ok(1));
    assert_eq!(
        pool.manager().closes(),
        vec![CloseRecord { index: 0, serial: 1, force: false }],
        "created from the old configuration: closed when returned"
    );
    assert_eq!(pool.checkout(Some(ZERO)).unwrap().serial, 2);
}

#[test]
fn reload_closes_in_parallel_too() {
    let pool = new_pool(3);
    let leases: Vec<_> = (0..3).map(|_| checkout_elsewhere(&pool)).collect();
    drop(leases);
    let latch = Latch::new(3);
    let met = Arc::new(AtomicUsize::new(0));
    let (l, m) = (Arc::clone(&latch), Arc::clone(&met));
    pool.manager().on_close(move |_| {
        if l.arrive_and_wait(Duration::from_secs(5)) {
            m.fetch_add(1, SeqCst);
        }
    });
    let p = pool.clone();
    assert_eq!(with_watchdog("a parallel reload", move || p.reload()), 0);
    assert_eq!(met.load(SeqCst), 3);
}

// ---------------------------------------------------------------------------
// Stats
// ---------------------------------------------------------------------------

#[test]
fn stats_track_the_pool() {
    let pool = new_pool(3);
    assert_eq!(pool.stats(), Stats { size: 3, ..Stats::default() });

    let a = checkout_elsewhere(&pool);
    let b = checkout_elsewhere(&pool);
    drop(a);
    let s = pool.stats();
    assert_eq!(
        s,
        Stats { size: 3, created: 2, idle: 1, in_use: 1, creations: 2, ..Stats::default() },
        "{s:?}"
    );

    // Two waiters on a full pool.
    let c = checkout_elsewhere(&pool);
    let d = checkout_elsewhere(&pool);
    assert_eq!(pool.stats().in_use, 3);
    let (tx, rx) = mpsc::channel();
    let waiters: Vec<_> = (0..2)
        .map(|_| {
            let (p, tx) = (pool.clone(), tx.clone());
            thread::spawn(move || {
                let _ = tx.send(p.checkout(Some(WAIT_FOREVER)).map(|l| l.index()).map_err(|e| e.to_string()));
            })
        })
        .collect();
    wait_for_waiters(&pool, 2);
    assert_eq!(pool.stats().waiting, 2);
    drop(b);
    drop(c);
    for _ in 0..2 {
        rx.recv_timeout(LONG).expect("a waiter was not woken").expect("checkout");
    }
    for w in waiters {
        w.join().unwrap();
    }
    let s = pool.stats();
    assert_eq!((s.waiting, s.in_use, s.idle, s.created, s.creations), (0, 1, 2, 3, 3), "{s:?}");
    assert!(s.total_wait > Duration::ZERO);

    d.broken.store(true, SeqCst);
    drop(d);
    let s = pool.stats();
    assert_eq!((s.in_use, s.idle, s.created, s.creations, s.replaced), (0, 2, 2, 3, 1), "{s:?}");

    pool.close(false);
    let s = pool.stats();
    assert_eq!((s.closed, s.created, s.idle, s.in_use), (true, 0, 0, 0));
    assert_eq!((s.creations, s.replaced), (3, 1), "lifetime counters survive close");
}

// ---------------------------------------------------------------------------
// Fork
// ---------------------------------------------------------------------------

/// Runs `child` in a forked child process and returns its exit code. The child
/// must stay simple: no new threads, no printing, no panicking (a code says
/// which check failed).
fn in_forked_child(child: impl FnOnce() -> i32) -> i32 {
    // SAFETY: the child only runs `child` (simple operations on memory this
    // test owns) and leaves with `_exit`, running no destructors or atexit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed: {}", std::io::Error::last_os_error());
    if pid == 0 {
        let code = panic::catch_unwind(AssertUnwindSafe(child)).unwrap_or(100);
        unsafe { libc::_exit(code) };
    }
    let deadline = Instant::now() + LONG;
    let mut status = 0;
    loop {
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            break;
        }
        if r < 0 {
            let err = std::io::Error::last_os_error();
            assert_eq!(err.kind(), std::io::ErrorKind::Interrupted, "waitpid failed: {err}");
        }
        if Instant::now() >= deadline {
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            panic!("the forked child {pid} hung");
        }
        thread::park_timeout(Duration::from_millis(1));
    }
    assert!(libc::WIFEXITED(status), "the child died of signal {}", libc::WTERMSIG(status));
    libc::WEXITSTATUS(status)
}

const FORK_EVENTS: [PoolEvent; 2] = [PoolEvent::ForkReload { begin: true }, PoolEvent::ForkReload { begin: false }];

#[test]
fn a_forked_child_abandons_the_parents_conn_and_creates_a_fresh_one() {
    let pool = new_pool(1);
    let parent_serial = pool.checkout(None).unwrap().serial;
    let m = pool.manager();
    let generation = fork_generation();

    let code = in_forked_child(|| {
        if fork_generation() != generation + 1 {
            return 2;
        }
        let lease = match pool.checkout(Some(ZERO)) {
            Ok(lease) => lease,
            Err(_) => return 3,
        };
        if lease.serial == parent_serial || lease.index() != 0 {
            return 4;
        }
        if !m.closes().is_empty() {
            return 5; // destroyed the parent's connection
        }
        if m.creations().len() != 2 {
            return 6;
        }
        if m.events() != FORK_EVENTS {
            return 7;
        }
        let serial = lease.serial;
        drop(lease);
        // The next checkout reuses the child's conn: one reload only.
        let again = match pool.checkout(Some(ZERO)) {
            Ok(lease) => lease,
            Err(_) => return 8,
        };
        if again.serial != serial || m.creations().len() != 2 || m.events().len() != 2 {
            return 9;
        }
        drop(again);
        let s = pool.stats();
        if (s.created, s.idle, s.in_use, s.waiting) != (1, 1, 0, 0) {
            return 10;
        }
        if !m.closes().is_empty() {
            return 11;
        }
        0
    });
    assert_eq!(code, 0, "the child failed check {code}");

    // The parent is untouched.
    let lease = pool.checkout(Some(ZERO)).unwrap();
    assert_eq!(lease.serial, parent_serial);
    assert_eq!(pool.manager().creations().len(), 1);
    assert!(pool.manager().events().is_empty());
    assert!(pool.manager().closes().is_empty());
    assert_eq!(fork_generation(), generation);
}

#[test]
fn a_forked_child_ignores_leases_inherited_from_the_parent() {
    let pool = new_pool(1);
    let held = RefCell::new(Some(pool.checkout(None).unwrap()));
    let parent_serial = held.borrow().as_ref().unwrap().serial;
    let m = pool.manager();

    let code = in_forked_child(|| {
        // The parent's lease holds the only slot, yet the child gets one at once.
        let fresh = match pool.checkout(Some(ZERO)) {
            Ok(lease) => lease,
            Err(_) => return 2,
        };
        if fresh.serial == parent_serial || m.events() != FORK_EVENTS {
            return 3;
        }
        if pool.stats().in_use != 1 {
            return 4;
        }
        // Dropping the inherited lease neither closes nor frees anything.
        drop(held.borrow_mut().take());
        if !m.closes().is_empty() {
            return 5;
        }
        let s = pool.stats();
        if (s.in_use, s.idle) != (1, 0) {
            return 6;
        }
        drop(fresh);
        let s = pool.stats();
        if (s.in_use, s.idle, s.created) != (0, 1, 1) || !m.closes().is_empty() {
            return 7;
        }
        0
    });
    assert_eq!(code, 0, "the child failed check {code}");

    // The parent's lease is still good.
    assert_eq!(pool.stats().in_use, 1);
    drop(held.borrow_mut().take());
    let s = pool.stats();
    assert_eq!((s.in_use, s.idle, s.creations), (0, 1, 1));
    assert!(pool.manager().closes().is_empty());
    assert!(pool.manager().events().is_empty());
}

#[test]
fn close_in_a_forked_child_does_not_close_the_parents_conns() {
    let pool = new_pool(2);
    drop(pool.checkout(None).unwrap());
    let m = pool.manager();
    let code = in_forked_child(|| {
        let report = pool.close(true);
        if !m.closes().is_empty() {
            return 2;
        }
        if report.closed != 0 {
            return 3;
        }
        0
    });
    assert_eq!(code, 0, "the child failed check {code}");
    assert!(pool.manager().closes().is_empty());
    assert!(!pool.is_closed());
}

#[test]
fn reload_in_a_forked_child_does_not_close_the_parents_conns() {
    let pool = new_pool(2);
    drop(pool.checkout(None).unwrap());
    let m = pool.manager();
    let code = in_forked_child(|| {
        pool.reload();
        if !m.closes().is_empty() {
            return 2;
        }
        0
    });
    assert_eq!(code, 0, "the child failed check {code}");
    assert!(pool.manager().closes().is_empty());
}

#[test]
fn dropping_an_inherited_stale_lease_in_a_forked_child_does_not_close_it() {
    let pool = new_pool(1);
    let held = RefCell::new(Some(pool.checkout(None).unwrap()));
    pool.reload(); // the leased conn is now stale: it is closed when returned
    let m = pool.manager();
    let code = in_forked_child(|| {
        drop(held.borrow_mut().take());
        if !m.closes().is_empty() {
            return 2;
        }
        0
    });
    assert_eq!(code, 0, "the child failed check {code}");
    drop(held.borrow_mut().take());
    assert_eq!(pool.manager().closes().len(), 1, "in the parent it is closed as usual");
}

/// The generation is swapped before the state is reset, so between the two
/// another checkout (another thread; here, deterministically, the event
/// observer) sees "no fork" and is handed the parent's connection.
#[test]
fn no_checkout_in_a_forked_child_gets_the_parents_conn() {
    let pool = new_pool(1);
    let parent_serial = pool.checkout(None).unwrap().serial;
    let m = pool.manager();
    let code = in_forked_child(|| {
        let seen = Arc::new(AtomicU64::new(0));
        let (p, s) = (pool.clone(), Arc::clone(&seen));
        let once = AtomicBool::new(false);
        m.on_pool_event(move |event| {
            if *event == (PoolEvent::ForkReload { begin: true }) && !once.swap(true, SeqCst) {
                // Stands for a second thread checking out at this moment.
                let serial = p.checkout(Some(ZERO)).map(|l| l.serial).unwrap_or(u64::MAX);
                s.store(serial, SeqCst);
            }
        });
        let lease = match pool.checkout(Some(ZERO)) {
            Ok(lease) => lease,
            Err(_) => return 2,
        };
        if lease.serial == parent_serial {
            return 3;
        }
        drop(lease);
        if seen.load(SeqCst) == parent_serial {
            return 4; // the racing checkout got the parent's connection
        }
        0
    });
    assert_eq!(code, 0, "the child failed check {code}");
}

// ---------------------------------------------------------------------------
// Concurrency
// ---------------------------------------------------------------------------

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
    with_watchdog("the hammering threads", move || {
        handles.into_iter().map(|h| h.join().is_ok()).all(|ok| ok)
    })
    .then_some(())
    .expect("a hammering thread panicked");
}

#[test]
fn concurrent_checkouts_are_exclusive() {
    const SIZE: usize = 4;
    const THREADS: usize = 16;
    const ITERS: usize = 500;
    let pool = new_pool(SIZE);
    // Make sure every slot gets created, deterministically: SIZE threads each
    // hold a lease until all SIZE are out.
    let warm = Latch::new(SIZE);
    let in_use: Arc<Vec<AtomicBool>> = Arc::new((0..SIZE).map(|_| AtomicBool::new(false)).collect());
    let violations = Arc::new(AtomicUsize::new(0));
    let (flags, bad, warm2) = (Arc::clone(&in_use), Arc::clone(&violations), Arc::clone(&warm));
    hammer(&pool, THREADS, move |t, pool| {
        for i in 0..ITERS {
            let lease = pool.checkout(Some(LONG)).expect("checkout under load");
            let index = lease.index();
            if index >= SIZE || lease.conn().index != index || lease.closed.load(SeqCst) {
                bad.fetch_add(1, SeqCst);
                continue;
            }
            if flags[index].swap(true, SeqCst) {
                bad.fetch_add(1, SeqCst); // somebody else holds this slot
            }
            if i == 0 && t < SIZE && !warm2.arrive_and_wait(LONG) {
                bad.fetch_add(1, SeqCst);
            }
            if i % 7 == 0 {
                let nested = pool.checkout(Some(ZERO)).expect("nested checkout");
                if nested.index() != index || !Arc::ptr_eq(nested.conn(), lease.conn()) {
                    bad.fetch_add(1, SeqCst);
                }
            }
            thread::yield_now();
            if !flags[index].swap(false, SeqCst) {
                bad.fetch_add(1, SeqCst);
            }
            drop(lease);
        }
    });
    assert_eq!(violations.load(SeqCst), 0);
    let s = pool.stats();
    assert_eq!((s.in_use, s.waiting, s.checkout_timeouts, s.replaced), (0, 0, 0, 0), "{s:?}");
    assert!(s.idle <= SIZE);
    assert_eq!(s.idle, SIZE);
    assert_eq!((s.creations, s.created), (SIZE as u64, SIZE));
    assert!(pool.manager().closes().is_empty());
}

#[test]
fn concurrent_checkouts_with_broken_conns_never_hand_out_a_closed_one() {
    const SIZE: usize = 3;
    let pool = new_pool(SIZE);
    let bad = Arc::new(AtomicUsize::new(0));
    let broke = Arc::new(AtomicUsize::new(0));
    let (b, k) = (Arc::clone(&bad), Arc::clone(&broke));
    hammer(&pool, 8, move |t, pool| {
        for i in 0..300 {
            let lease = pool.checkout(Some(LONG)).expect("checkout under load");
            if lease.closed.load(SeqCst) || lease.broken.load(SeqCst) {
                b.fetch_add(1, SeqCst);
            }
            if (i + t) % 37 == 0 {
                lease.broken.store(true, SeqCst);
                k.fetch_add(1, SeqCst);
            }
            thread::yield_now();
        }
    });
    assert_eq!(bad.load(SeqCst), 0, "a closed or broken connection was handed out");
    let m = pool.manager();
    let s = pool.stats();
    let closes = m.closes();
    assert_eq!(s.replaced, broke.load(SeqCst) as u64);
    assert_eq!(closes.len(), broke.load(SeqCst));
    assert!(closes.iter().all(|r| r.force));
    assert_eq!(m.double_closes.load(SeqCst), 0);
    assert_eq!(s.creations, s.replaced + s.created as u64, "every conn is either in the pool or closed");
    assert_eq!(s.in_use, 0);
}

#[test]
fn concurrent_checkouts_and_reloads_close_every_conn_exactly_once() {
    const SIZE: usize = 3;
    let pool = new_pool(SIZE);
    let bad = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let (b, d) = (Arc::clone(&bad), Arc::clone(&done));
    let p = pool.clone();
    let reloader = thread::spawn(move || {
        let mut reloads = 0;
        while d.load(SeqCst) < 6 {
            p.reload();
            reloads += 1;
            thread::yield_now();
        }
        reloads
    });
    let d = Arc::clone(&done);
    hammer(&pool, 6, move |_, pool| {
        for _ in 0..300 {
            let lease = pool.checkout(Some(LONG)).expect("checkout under load");
            if lease.closed.load(SeqCst) {
                b.fetch_add(1, SeqCst);
            }
            thread::yield_now();
        }
        d.fetch_add(1, SeqCst);
    });
    let reloads = reloader.join().unwrap();
    assert!(reloads > 0);
    assert_eq!(bad.load(SeqCst), 0, "a closed connection was handed out");
    let m = pool.manager();
    assert_eq!(m.double_closes.load(SeqCst), 0);
    let s = pool.stats();
    assert_eq!(s.in_use, 0);
    assert_eq!(s.creations, (m.closes().len() + s.created) as u64);
    assert!(m.closes().iter().all(|r| !r.force));
    let serials: HashSet<_> = m.closes().iter().map(|r| r.serial).collect();
    assert_eq!(serials.len(), m.closes().len());

    pool.reload();
    let s = pool.stats();
    assert_eq!(s.created, 0);
    assert_eq!(s.creations, m.closes().len() as u64);
}

#[test]
fn concurrent_checkouts_and_close_close_every_conn_exactly_once() {
    const SIZE: usize = 3;
    let pool = new_pool(SIZE);
    let progress = Arc::new(AtomicUsize::new(0));
    let bad = Arc::new(AtomicUsize::new(0));
    let (pr, b) = (Arc::clone(&progress), Arc::clone(&bad));
    let p = pool.clone();
    let workers = thread::spawn(move || {
        hammer(&p, 6, move |_, pool| loop {
            match pool.checkout(Some(LONG)) {
                Ok(lease) => {
                    if lease.closed.load(SeqCst) {
                        b.fetch_add(1, SeqCst);
                    }
                    pr.fetch_add(1, SeqCst);
                    thread::yield_now();
                }
                Err(CheckoutError::Closed) => break,
                Err(e) => panic!("unexpected {e:?}"),
            }
        })
    });
    wait_until("some progress", || progress.load(SeqCst) >= 200);
    let report = pool.close(false);
    workers.join().expect("the workers failed");
    assert_eq!(bad.load(SeqCst), 0);
    let m = pool.manager();
    let s = pool.stats();
    assert_eq!((s.in_use, s.created, s.idle, s.waiting), (0, 0, 0, 0), "{s:?}");
    assert_eq!(m.closes().len() as u64, s.creations, "every conn was closed");
    assert_eq!(m.double_closes.load(SeqCst), 0);
    assert!(report.closed + report.in_use <= SIZE);
    assert_eq!(report.closed + report.in_use, s.creations as usize);
}
