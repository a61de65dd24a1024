//! Reload.

use super::*;

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
