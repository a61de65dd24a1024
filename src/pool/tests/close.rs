//! Close.

use super::*;

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

    // Closing twice closes nothing and reports the first close's outcome.
    assert_eq!(pool.close(true), report);
    assert_eq!(pool.close(false), report);
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
fn a_second_close_changes_nothing_and_reports_the_first() {
    let pool = new_pool(2);
    let held = checkout_elsewhere(&pool);
    drop(checkout_elsewhere(&pool));
    let first = CloseReport { closed: 1, undelivered: 0, in_use: 1 };
    assert_eq!(pool.close(true), first);
    assert_eq!(pool.close(false), first, "a second close reports the first one's outcome");
    assert_eq!(pool.close(true), first);
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

/// A close that arrives while another is still flushing waits for it and
/// reports the same outcome: an exit path that trusts it loses nothing.
#[test]
fn a_close_during_a_close_waits_for_it() {
    let pool = new_pool(1);
    drop(checkout_elsewhere(&pool));
    let (entered_tx, entered_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let release_rx = Mutex::new(release_rx);
    pool.manager().on_close(move |c| {
        c.undelivered.store(4, SeqCst);
        let _ = entered_tx.send(());
        let _ = lock(&release_rx).recv_timeout(LONG);
    });
    let p = pool.clone();
    let first = thread::spawn(move || p.close(false));
    entered_rx.recv_timeout(LONG).expect("the first close is flushing");
    let (second_tx, second_rx) = mpsc::channel();
    let p = pool.clone();
    let second = thread::spawn(move || {
        let _ = second_tx.send(p.close(true));
    });
    assert!(
        second_rx.recv_timeout(Duration::from_millis(200)).is_err(),
        "the second close returned while the first was still flushing"
    );
    assert!(pool.is_closed(), "a closing pool refuses checkouts");
    release_tx.send(()).unwrap();
    let expected = CloseReport { closed: 1, undelivered: 4, in_use: 0 };
    assert_eq!(first.join().unwrap(), expected);
    assert_eq!(second_rx.recv_timeout(LONG).expect("the second close returned"), expected);
    second.join().unwrap();
    assert_eq!(pool.manager().closes().len(), 1, "closed once");
}
