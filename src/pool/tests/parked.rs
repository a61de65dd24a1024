//! Parked slots: `with` gives a slot back on its own thread without the
//! pool lock, and takes it back the same way (see "Parked slots" in the
//! pool's docs). Every path that needs the slot must still find it.

use super::*;

/// A `with` that returns (index, serial) of the connection it got.
fn with_index(pool: &TestPool) -> (usize, u64) {
    pool.with(Some(ZERO), |lease| (lease.index(), lease.serial)).expect("with")
}

fn with_elsewhere(pool: &TestPool, timeout: Duration) -> Result<(usize, u64), TestError> {
    let pool = pool.clone();
    thread::spawn(move || pool.with(Some(timeout), |lease| (lease.index(), lease.serial)))
        .join()
        .expect("the with thread panicked")
}

#[test]
fn a_thread_gets_its_parked_slot_back_and_stats_count_it() {
    let pool = new_pool(2);
    assert_eq!(with_index(&pool), (0, 1));
    let s = pool.stats();
    assert_eq!((s.created, s.idle, s.in_use), (1, 1, 0), "parked counts as idle");
    for _ in 0..3 {
        assert_eq!(with_index(&pool), (0, 1), "the same slot, no new connection");
    }
    pool.with(Some(ZERO), |_| {
        let s = pool.stats();
        assert_eq!((s.created, s.idle, s.in_use), (1, 0, 1), "held through the fast path counts as in use");
    })
    .unwrap();
    assert_eq!(pool.manager().attempts(), vec![0]);
}

#[test]
fn another_thread_takes_a_parked_slot_before_creating_one() {
    let pool = new_pool(2);
    assert_eq!(with_index(&pool), (0, 1));
    assert_eq!(with_elsewhere(&pool, ZERO).unwrap(), (0, 1), "the parked slot, not a new one");
    assert_eq!(checkout_elsewhere(&pool).index(), 0, "a checkout finds it too");
    let lease = pool.try_checkout_as(Owner::Key(7)).unwrap().expect("a try finds it too");
    assert_eq!(lease.index(), 0);
    drop(lease);
    assert_eq!(pool.manager().attempts(), vec![0], "slot 1 was never needed");
}

#[test]
fn a_waiter_gets_the_slot_a_fast_with_gives_back() {
    let pool = new_pool(1);
    with_index(&pool); // parked now: the next with is a fast one
    let (tx, rx) = mpsc::channel();
    let waiter_pool = pool.clone();
    pool.with(Some(ZERO), |lease| {
        assert_eq!(lease.epoch, 0, "held through the fast path");
        thread::spawn(move || {
            let _ = tx.send(waiter_pool.checkout(Some(WAIT_FOREVER)).map(|l| l.index()));
        });
        wait_for_waiters(&pool, 1);
    })
    .unwrap();
    assert_eq!(rx.recv_timeout(LONG).expect("the waiter was woken").expect("checked out"), 0);
    assert_eq!(pool.stats().checkout_timeouts, 0);
}

#[test]
fn nested_checkouts_inside_a_fast_with_get_the_same_slot() {
    let pool = new_pool(1);
    with_index(&pool);
    let kept = pool
        .with(Some(ZERO), |outer| {
            assert_eq!(outer.epoch, 0, "held through the fast path");
            let inner = pool.with(Some(ZERO), |inner| (inner.index(), inner.serial)).unwrap();
            assert_eq!(inner, (0, 1), "a nested with: the same slot");
            let kept = pool.checkout(Some(ZERO)).expect("a nested checkout: the same slot");
            assert_eq!((kept.index(), kept.serial), (0, 1));
            assert_eq!(pool.stats().in_use, 1);
            kept
        })
        .unwrap();
    // The nested lease outlives the with: the slot stays held.
    assert_eq!(pool.stats().in_use, 1);
    assert!(expect_timeout(&with_elsewhere(&pool, ZERO).unwrap_err()).1 == 0, "0 available");
    drop(kept);
    let s = pool.stats();
    assert_eq!((s.idle, s.in_use), (1, 0));
    assert_eq!(with_index(&pool), (0, 1));
    assert_eq!(with_elsewhere(&pool, ZERO).unwrap(), (0, 1));
    assert_eq!(pool.manager().attempts(), vec![0]);
}

#[test]
fn close_closes_parked_slots_now_and_fast_held_ones_when_they_return() {
    let pool = new_pool(2);
    with_index(&pool);
    let report = pool.close(false);
    assert_eq!((report.closed, report.in_use), (1, 0), "the parked slot was closed now");
    assert!(matches!(pool.with(Some(ZERO), |_| ()), Err(CheckoutError::Closed)));

    let pool = new_pool(2);
    with_index(&pool);
    let closer = pool.clone();
    pool.with(Some(ZERO), |lease| {
        assert_eq!(lease.epoch, 0);
        let report = thread::spawn(move || closer.close(false)).join().unwrap();
        assert_eq!((report.closed, report.in_use), (0, 1), "held through the fast path: in use");
        assert!(pool.manager().closes().is_empty());
    })
    .unwrap();
    assert_eq!(pool.manager().closes(), vec![CloseRecord { index: 0, serial: 1, force: false }]);
    assert_eq!(pool.stats().created, 0);
}

#[test]
fn reload_replaces_parked_and_fast_held_slots() {
    let pool = new_pool(1);
    with_index(&pool);
    pool.reload();
    assert_eq!(pool.manager().closes().len(), 1, "the parked connection was closed");
    assert_eq!(with_index(&pool), (0, 2), "a fresh connection");
    pool.with(Some(ZERO), |lease| {
        assert_eq!(lease.epoch, 0);
        pool.reload();
    })
    .unwrap();
    assert_eq!(pool.manager().closes().len(), 2, "replaced when it came back");
    assert_eq!(with_index(&pool), (0, 3));
}

#[test]
fn broken_connections_are_replaced_parked_or_fast_held() {
    let pool = new_pool(1);
    let conn = pool.with(Some(ZERO), |lease| Arc::clone(lease.conn())).unwrap();
    conn.broken.store(true, SeqCst);
    assert_eq!(with_index(&pool), (0, 2), "broken while parked: replaced at checkout");
    pool.with(Some(ZERO), |lease| {
        assert_eq!(lease.epoch, 0);
        lease.broken.store(true, SeqCst);
    })
    .unwrap();
    assert_eq!(pool.stats().replaced, 2);
    assert_eq!(with_index(&pool), (0, 3), "broken while held: replaced when it came back");
}

#[test]
fn fast_and_locked_paths_together_stay_exclusive() {
    const SIZE: usize = 2;
    const THREADS: usize = 6;
    const ITERS: usize = 3000;
    let pool = new_pool(SIZE);
    let busy: Arc<Vec<AtomicBool>> = Arc::new((0..SIZE).map(|_| AtomicBool::new(false)).collect());
    let violations = Arc::new(AtomicUsize::new(0));
    let use_slot = {
        let (busy, violations) = (Arc::clone(&busy), Arc::clone(&violations));
        move |index: usize| {
            if busy[index].swap(true, SeqCst) {
                violations.fetch_add(1, SeqCst);
            }
            thread::yield_now();
            busy[index].store(false, SeqCst);
        }
    };
    hammer(&pool, THREADS, move |t, pool| {
        for i in 0..ITERS {
            match (t + i) % 7 {
                // Mostly `with` (fast when its slot is parked).
                0..=3 => pool.with(Some(LONG), |lease| use_slot(lease.index())).unwrap(),
                4 => use_slot(pool.checkout(Some(LONG)).unwrap().index()),
                5 => {
                    if let Some(lease) = pool.try_checkout_as(Owner::Key(t as u64 + 100)).unwrap() {
                        use_slot(lease.index());
                    }
                }
                _ if t == 0 && i % 500 == 0 => {
                    pool.reload();
                }
                _ => {
                    let s = pool.stats();
                    assert!(s.idle + s.in_use <= SIZE, "{s:?}");
                }
            }
        }
    });
    assert_eq!(violations.load(SeqCst), 0, "a slot was used by two at once");
    let s = pool.stats();
    assert_eq!((s.in_use, s.waiting), (0, 0), "{s:?}");
    assert_eq!(s.idle, s.created, "{s:?}");
    assert_eq!(s.checkout_timeouts, 0);
    assert_eq!(pool.manager().double_closes.load(SeqCst), 0);
    let report = pool.close(false);
    assert_eq!(report.in_use, 0);
    assert_eq!(pool.stats().created, 0, "every connection closed");
}

#[test]
fn a_thread_owned_checkout_takes_the_parked_slot_and_may_be_checked_in_elsewhere() {
    let pool = new_pool(1);
    with_index(&pool);
    let lease = pool.checkout(Some(ZERO)).unwrap();
    assert_eq!((lease.index(), lease.epoch), (0, 0), "the parked slot, through the fast path");
    assert_eq!(pool.stats().in_use, 1);
    thread::spawn(move || drop(lease)).join().unwrap();
    let s = pool.stats();
    assert_eq!((s.idle, s.in_use), (1, 0), "given back from another thread");
    // This thread still has its old hint; every path still works.
    assert_eq!(with_index(&pool), (0, 1));
    let lease = pool.try_checkout_as(Owner::Thread).unwrap().expect("idle");
    assert_eq!(lease.index(), 0);
    let nested = pool.checkout(Some(ZERO)).expect("nested, same thread");
    assert_eq!(nested.index(), 0);
    drop(lease);
    assert_eq!(pool.stats().in_use, 1, "the nested lease still holds it");
    drop(nested);
    assert_eq!(pool.stats().in_use, 0);
    assert_eq!(with_elsewhere(&pool, ZERO).unwrap(), (0, 1));
    assert_eq!(pool.manager().attempts(), vec![0]);
}
