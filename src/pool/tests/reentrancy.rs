//! Re-entrancy.

use super::*;

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
