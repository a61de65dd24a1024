//! `with` and panics.

use super::*;

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
