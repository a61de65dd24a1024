//! Broken connections.

use super::*;

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
