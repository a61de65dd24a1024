//! LIFO.

use super::*;

#[test]
fn checkout_is_lifo() {
    let pool = new_pool(3);
    let a = checkout_elsewhere(&pool);
    let b = checkout_elsewhere(&pool);
    let (ia, ib) = (a.index(), b.index());
    assert_ne!(ia, ib);
    drop(a);
    drop(b);
    let next = pool.checkout(Some(ZERO)).unwrap();
    assert_eq!(next.index(), ib, "the last connection returned goes out first");
    drop(next);

    // The other way round, so that a fixed preference cannot pass.
    let x = checkout_elsewhere(&pool);
    let y = checkout_elsewhere(&pool);
    assert_eq!((x.index(), y.index()), (ib, ia), "LIFO again");
    drop(x);
    drop(y);
    let next = pool.checkout(Some(ZERO)).unwrap();
    assert_eq!(next.index(), ia);
    drop(next);

    assert_eq!(pool.manager().attempts(), vec![0, 1], "slot 2 was never needed");
}
