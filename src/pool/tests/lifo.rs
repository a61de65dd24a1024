//! LIFO, and a thread's own last slot first.

use super::*;

#[test]
fn checkout_is_lifo() {
    // Every checkout on a fresh thread, which has no slot of its own to
    // prefer: the last connection returned goes out first.
    let pool = new_pool(3);
    let a = checkout_elsewhere(&pool);
    let b = checkout_elsewhere(&pool);
    let (ia, ib) = (a.index(), b.index());
    assert_ne!(ia, ib);
    drop(a);
    drop(b);
    let next = checkout_elsewhere(&pool);
    assert_eq!(next.index(), ib, "the last connection returned goes out first");
    drop(next);

    // The other way round, so that a fixed preference cannot pass.
    let x = checkout_elsewhere(&pool);
    let y = checkout_elsewhere(&pool);
    assert_eq!((x.index(), y.index()), (ib, ia), "LIFO again");
    drop(x);
    drop(y);
    let next = checkout_elsewhere(&pool);
    assert_eq!(next.index(), ia);
    drop(next);

    assert_eq!(pool.manager().attempts(), vec![0, 1], "slot 2 was never needed");
}

#[test]
fn a_thread_gets_back_the_slot_it_returned_last_when_idle() {
    let pool = new_pool(3);
    let mine = pool.checkout(Some(ZERO)).unwrap();
    let theirs = checkout_elsewhere(&pool);
    let (im, it) = (mine.index(), theirs.index());
    drop(mine); // this thread's last slot
    drop(theirs); // the top of the idle stack
    let again = pool.checkout(Some(ZERO)).unwrap();
    assert_eq!(again.index(), im, "this thread's own last slot, not the LIFO top");
    // Another thread, with no slot of its own, gets the LIFO top.
    let other = checkout_elsewhere(&pool);
    assert_eq!(other.index(), it);
    drop(other);
    drop(again);

    // Another thread takes the idle slot before this thread's own, which
    // this thread gave back on its own thread (parked: see "Parked slots").
    let taken = checkout_elsewhere(&pool);
    assert_eq!(taken.index(), it, "an idle slot before another thread's parked one");
    let next = pool.checkout(Some(ZERO)).unwrap();
    assert_eq!(next.index(), im, "this thread's own slot again");
    drop(next);
    drop(taken);
    assert_eq!(pool.manager().attempts(), vec![0, 1], "slot 2 was never needed");
}
