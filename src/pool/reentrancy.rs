//! Which pool slot the current thread holds (for leases owned by a thread),
//! so that a nested checkout on the
//! same thread gets the same connection (a pool of size 1 never deadlocks on
//! itself). The pool validates every hint under its lock: an entry left behind
//! by a lease that was checked in on another thread is simply ignored.

use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicU64, Ordering};

static NEXT_THREAD_TOKEN: AtomicU64 = AtomicU64::new(1);

thread_local! {
    static TOKEN: Cell<u64> = const { Cell::new(0) };
    /// (pool id, slot index) for each pool this thread holds a slot of.
    static HELD: RefCell<Vec<(u64, usize)>> = const { RefCell::new(Vec::new()) };
    /// (pool id, slot index) this thread held last: a hint for its next
    /// checkout (see `last_slot`).
    static LAST: Cell<(u64, usize)> = const { Cell::new((0, 0)) };
}

/// The slot this thread last gave back to `pool`, if that was the last pool
/// it used. Taking it again when it is idle keeps a producer on one thread
/// (and its librdkafka structures in that core's cache) when there are
/// enough producers, instead of rotating every producer through every
/// thread as a plain LIFO does.
pub(crate) fn last_slot(pool: u64) -> Option<usize> {
    LAST.try_with(|last| last.get()).ok().filter(|(p, _)| *p == pool).map(|(_, i)| i)
}

pub(crate) fn set_last_slot(pool: u64, index: usize) {
    let _ = LAST.try_with(|last| last.set((pool, index)));
}

/// A non-zero number unique to the calling thread for the process's life.
pub fn thread_token() -> u64 {
    TOKEN.with(|t| {
        let token = t.get();
        if token != 0 {
            return token;
        }
        let token = NEXT_THREAD_TOKEN.fetch_add(1, Ordering::Relaxed);
        t.set(token);
        token
    })
}

pub(crate) fn held_slot(pool: u64) -> Option<usize> {
    HELD.try_with(|held| held.borrow().iter().find(|(p, _)| *p == pool).map(|(_, i)| *i))
        .ok()
        .flatten()
}

pub(crate) fn hold(pool: u64, index: usize) {
    let _ = HELD.try_with(|held| {
        let mut held = held.borrow_mut();
        held.retain(|(p, _)| *p != pool);
        held.push((pool, index));
    });
}

pub(crate) fn forget(pool: u64) {
    let _ = HELD.try_with(|held| held.borrow_mut().retain(|(p, _)| *p != pool));
}
