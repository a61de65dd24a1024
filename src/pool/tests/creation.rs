//! Creation.

use super::*;

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
