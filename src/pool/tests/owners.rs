//! Owners: who a checkout is for.

use super::*;

#[test]
fn two_keys_on_one_thread_get_two_conns() {
    let pool = new_pool(2);
    let a = pool.checkout_as(Owner::Key(1), Some(ZERO)).unwrap();
    let b = pool.checkout_as(Owner::Key(2), Some(ZERO)).unwrap();
    assert_ne!(a.index(), b.index(), "two owners share a connection");
    assert_eq!(pool.stats().in_use, 2);
}

#[test]
fn on_a_pool_of_one_the_second_key_waits_for_the_first() {
    let pool = new_pool(1);
    let a = pool.checkout_as(Owner::Key(1), None).unwrap();
    let err = expect_err(pool.checkout_as(Owner::Key(2), Some(Duration::from_millis(20))));
    assert_eq!(expect_timeout(&err).1, 0, "0 available");

    let p = pool.clone();
    let waiter = thread::spawn(move || p.checkout_as(Owner::Key(2), Some(WAIT_FOREVER)).map(|l| (l.index(), l.owner())));
    wait_for_waiters(&pool, 1);
    drop(a);
    let (index, owner) = waiter.join().unwrap().expect("woken when the first key checked in");
    assert_eq!((index, owner), (0, OwnerId::Key(2)));
}

#[test]
fn the_same_key_nests_from_any_thread() {
    let pool = new_pool(1);
    let outer = pool.checkout_as(Owner::Key(7), None).unwrap();
    let p = pool.clone();
    let inner_index = with_watchdog("a nested checkout on another thread", move || {
        p.checkout_as(Owner::Key(7), Some(ZERO)).map(|l| l.index()).map_err(|e| e.to_string())
    });
    assert_eq!(inner_index, Ok(outer.index()));
    assert_eq!(pool.stats().in_use, 1);
    drop(outer);
    assert_eq!(pool.stats().in_use, 0);
}

#[test]
fn unique_owners_never_nest() {
    let pool = new_pool(1);
    let _first = pool.checkout_as(Owner::Unique, None).unwrap();
    let err = expect_err(pool.checkout_as(Owner::Unique, Some(ZERO)));
    assert!(matches!(err, CheckoutError::Timeout { .. }));
    // Not even the thread's own re-entrancy applies to it.
    assert!(matches!(expect_err(pool.checkout(Some(ZERO))), CheckoutError::Timeout { .. }));
}

#[test]
fn a_key_does_not_nest_into_a_threads_lease() {
    let pool = new_pool(1);
    let _mine = pool.checkout(None).unwrap();
    assert!(matches!(expect_err(pool.checkout_as(Owner::Key(1), Some(ZERO))), CheckoutError::Timeout { .. }));
    // ...while the thread itself still nests.
    assert_eq!(pool.checkout(Some(ZERO)).unwrap().index(), 0);
}

#[test]
fn a_threads_lease_acts_for_whichever_thread_uses_it() {
    let pool = new_pool(1);
    let lease = pool.checkout(None).unwrap();
    let here = lease.owner().acting();
    assert_eq!(here, lease.owner());
    let elsewhere = thread::scope(|s| s.spawn(|| lease.owner().acting()).join().unwrap());
    assert_ne!(elsewhere, here, "another thread sharing the lease is another owner");
    let keyed = pool.checkout_as(Owner::Key(3), Some(Duration::from_millis(1)));
    assert!(keyed.is_err());
    drop(lease);
    let keyed = pool.checkout_as(Owner::Key(3), None).unwrap();
    let elsewhere = thread::scope(|s| s.spawn(|| keyed.owner().acting()).join().unwrap());
    assert_eq!(elsewhere, OwnerId::Key(3), "a key acts as itself from any thread");
}
