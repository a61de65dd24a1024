//! Options, construction, laziness.

use super::*;

#[test]
fn default_options_are_5_conns_and_5000_ms() {
    let options = Options::default();
    assert_eq!(options, Options { size: 5, timeout: Duration::from_millis(5000) });
    assert_eq!(DEFAULT_SIZE, 5);
    assert_eq!(DEFAULT_TIMEOUT, Duration::from_secs(5));

    let pool = Pool::new(Fake::default(), Options::default());
    assert_eq!(pool.options(), options);
    assert_eq!(pool.stats(), Stats { size: 5, ..Stats::default() });
}

#[test]
#[should_panic(expected = "pool size must be 1 to 4096")]
fn size_zero_is_rejected() {
    let _ = new_pool(0);
}

#[test]
fn pool_ids_are_unique_and_leases_go_back_to_their_pool() {
    let a = new_pool(1);
    let b = new_pool(1);
    assert_ne!(a.id(), b.id());
    assert_eq!(a.clone().id(), a.id(), "a clone is the same pool");
    let lease = a.checkout(None).unwrap();
    let lease_b = b.checkout(None).unwrap();
    assert_eq!((a.stats().in_use, b.stats().in_use), (1, 1));
    drop(lease);
    assert_eq!((a.stats().in_use, b.stats().in_use), (0, 1));
    drop(lease_b);
    assert_eq!(b.stats().in_use, 0);
}

#[test]
fn creation_is_lazy_and_slot_indices_start_at_zero() {
    let pool = new_pool(3);
    assert!(pool.manager().attempts().is_empty(), "nothing is created up front");
    assert_eq!(pool.stats(), Stats { size: 3, ..Stats::default() });

    let a = pool.checkout(None).unwrap();
    assert_eq!(a.index(), 0, "slot 0 is created first");
    assert_eq!(pool.manager().attempts(), vec![0]);
    let b = checkout_elsewhere(&pool);
    let c = checkout_elsewhere(&pool);
    assert_eq!((b.index(), c.index()), (1, 2));
    assert_eq!(pool.manager().attempts(), vec![0, 1, 2], "each slot is created with its own index");
    for lease in [&a, &b, &c] {
        // (`lease.index` would be the lease's own field: go through the conn.)
        assert_eq!(lease.conn().index, lease.index(), "the conn was created for the lease's slot");
        assert_eq!(lease.conn().serial, lease.serial, "Deref and conn() agree");
    }
    drop((a, b, c));

    let s = pool.stats();
    assert_eq!((s.created, s.idle, s.in_use, s.creations), (3, 3, 0, 3));
    // Reusing an idle connection creates nothing.
    let again = checkout_elsewhere(&pool);
    drop(again);
    assert_eq!(pool.manager().attempts().len(), 3);
}

#[test]
fn lease_conn_outlives_the_lease() {
    let pool = new_pool(1);
    let lease = pool.checkout(None).unwrap();
    let conn = Arc::clone(lease.conn());
    drop(lease);
    assert_eq!(conn.serial, 1);
    assert!(!conn.closed.load(SeqCst));
    let again = pool.checkout(Some(ZERO)).unwrap();
    assert!(Arc::ptr_eq(&conn, again.conn()), "the same connection went back to the pool");
}
