//! `try_checkout_as`: never waits, never creates, counts nothing.

use super::*;

#[test]
fn a_cold_pool_has_nothing_free_and_creates_nothing() {
    let pool = new_pool(2);
    assert!(pool.try_checkout_as(Owner::Thread).unwrap().is_none());
    let s = pool.stats();
    assert_eq!((s.created, s.checkout_timeouts, s.creating), (0, 0, 0));
    assert!(pool.manager().attempts().is_empty(), "no creation was started");
    assert!(pool.manager().events().is_empty(), "no checkout timeout event");
}

#[test]
fn an_idle_conn_is_taken_and_nested_owners_get_theirs() {
    let pool = new_pool(2);
    drop(pool.checkout(None).unwrap()); // slot 0 created, idle
    let a = pool.try_checkout_as(Owner::Key(7)).unwrap().expect("the idle one");
    assert_eq!(a.index(), 0);
    // Nothing else is idle (slot 1 was never created).
    assert!(pool.try_checkout_as(Owner::Key(8)).unwrap().is_none());
    // The same key nests.
    let nested = pool.try_checkout_as(Owner::Key(7)).unwrap().expect("nested");
    assert_eq!(nested.index(), 0);
    drop(nested);
    drop(a);
    let s = pool.stats();
    assert_eq!((s.in_use, s.idle, s.checkout_timeouts), (0, 1, 0));
    assert_eq!(pool.manager().attempts(), vec![0], "slot 1 was never created");
}

#[test]
fn a_broken_idle_conn_is_replaced_not_handed_out() {
    let pool = new_pool(1);
    let conn = Arc::clone(pool.checkout(None).unwrap().conn());
    conn.broken.store(true, SeqCst);
    assert!(pool.try_checkout_as(Owner::Thread).unwrap().is_none(), "no healthy one, and none created");
    assert!(conn.closed.load(SeqCst));
    assert_eq!(pool.manager().events(), vec![PoolEvent::ConnReplaced { index: 0 }]);
    assert_eq!(pool.stats().created, 0);
}

#[test]
fn a_closed_pool_refuses() {
    let pool = new_pool(1);
    pool.close(false);
    assert!(matches!(pool.try_checkout_as(Owner::Thread), Err(CheckoutError::Closed)));
}
