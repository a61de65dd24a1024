//! Creations that outlive the caller's timeout go on in the background.

use super::*;

#[test]
fn the_caller_times_out_and_the_next_one_gets_the_finished_conn() {
    let pool = new_pool(1);
    let gate = Arc::new(Gate::default());
    pool.manager().unfinished_behind(Arc::clone(&gate));

    let err = expect_err(pool.checkout(Some(Duration::from_millis(30))));
    match &err {
        CheckoutError::Timeout { available, size, creating, pending, .. } => {
            assert_eq!((*available, *size, *creating), (0, 1, 1));
            assert_eq!(pending.as_deref(), Some("slot 0 waits at the gate"));
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(err.to_string().contains("1 still being created in the background"), "{err}");
    let s = pool.stats();
    assert_eq!((s.in_use, s.creating, s.created), (0, 1, 0), "the slot is neither in use nor lost");

    // One caller starts one creation: a second timeout starts none.
    assert!(pool.checkout(Some(ZERO)).is_err());
    assert_eq!(pool.manager().attempts(), vec![0]);

    gate.open(Ok(()));
    wait_until("the background creation to finish", || pool.stats().idle == 1);
    let lease = pool.checkout(Some(ZERO)).expect("the finished connection");
    assert_eq!((lease.index(), lease.serial), (0, 1));
    assert_eq!(pool.stats().creating, 0);
    assert_eq!(pool.stats().creations, 1);
}

#[test]
fn a_waiter_gets_the_conn_when_its_creation_finishes() {
    let pool = new_pool(1);
    let gate = Arc::new(Gate::default());
    pool.manager().unfinished_behind(Arc::clone(&gate));
    let p = pool.clone();
    let waiter = thread::spawn(move || p.checkout(Some(WAIT_FOREVER)).map(|l| l.serial).map_err(|e| e.to_string()));
    wait_until("the creation to go to the background", || pool.stats().creating == 1);
    wait_for_waiters(&pool, 1);
    gate.open(Ok(()));
    assert_eq!(waiter.join().unwrap(), Ok(1));
}

#[test]
fn a_failed_background_creation_frees_the_slot() {
    let pool = new_pool(1);
    let gate = Arc::new(Gate::default());
    pool.manager().unfinished_behind(Arc::clone(&gate));
    assert!(pool.checkout(Some(ZERO)).is_err());
    gate.open(Err("broker unreachable".into()));
    wait_until("the slot to be free again", || pool.stats().creating == 0);
    *lock(&pool.manager().unfinished) = None;
    let lease = pool.checkout(Some(ZERO)).expect("a fresh creation");
    assert_eq!(lease.index(), 0);
}

#[test]
fn a_creation_finishing_after_close_is_closed() {
    let pool = new_pool(1);
    let gate = Arc::new(Gate::default());
    pool.manager().unfinished_behind(Arc::clone(&gate));
    assert!(pool.checkout(Some(ZERO)).is_err());
    let report = pool.close(false);
    assert_eq!(report, CloseReport::default());
    gate.open(Ok(()));
    wait_until("the late connection to be closed", || pool.manager().closes().len() == 1);
    assert!(pool.manager().closes()[0].force);
    assert_eq!(pool.stats().created, 0);
}

/// The time an unfinished creation spent counts against the checkout's
/// timeout: the caller does not wait a second timeout after it.
#[test]
fn the_creation_spends_the_checkouts_timeout() {
    let pool = new_pool(1);
    let gate = Arc::new(Gate::default());
    pool.manager().unfinished_behind(Arc::clone(&gate));
    pool.manager().spend_budget.store(true, SeqCst);
    let timeout = Duration::from_millis(1000);
    let started = Instant::now();
    let err = expect_err(pool.checkout(Some(timeout)));
    let took = started.elapsed();
    assert!(matches!(err, CheckoutError::Timeout { creating: 1, .. }), "{err:?}");
    assert!(took >= timeout, "returned before its timeout: {took:?}");
    // Twice the timeout would mean a second wait after the creation.
    assert!(took < timeout * 19 / 10, "waited {took:?} for a {timeout:?} timeout");
    assert_eq!(pool.stats().total_wait, Duration::ZERO, "creating is not waiting for a free producer");
    gate.open(Ok(()));
}
