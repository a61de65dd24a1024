//! Waiting.

use super::*;

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

/// Two waiters asleep, two leases returned back to back (the second before
/// the first waiter has run): both waiters get one, the second without
/// waiting for yet another checkin. Repeated, since the window (a woken
/// waiter not yet running) is a matter of scheduling.
#[test]
fn two_returns_wake_two_waiters() {
    let pool = new_pool(2);
    for round in 0..50 {
        let a = checkout_elsewhere(&pool);
        let b = checkout_elsewhere(&pool);
        let (tx, rx) = mpsc::channel();
        let waiters: Vec<_> = (0..2)
            .map(|_| {
                let (p, tx) = (pool.clone(), tx.clone());
                thread::spawn(move || {
                    let _ = tx.send(p.checkout(Some(WAIT_FOREVER)));
                })
            })
            .collect();
        wait_for_waiters(&pool, 2);
        drop(a);
        drop(b);
        let first = rx.recv_timeout(LONG).expect("no waiter was woken").expect("a checkout failed");
        let second = rx
            .recv_timeout(LONG)
            .unwrap_or_else(|_| panic!("round {round}: the second waiter slept on with a slot idle"))
            .expect("a checkout failed");
        assert_ne!(first.index(), second.index(), "two waiters got the same slot");
        drop((first, second));
        for w in waiters {
            w.join().unwrap();
        }
    }
    let s = pool.stats();
    assert_eq!((s.in_use, s.waiting), (0, 0), "{s:?}");
}
