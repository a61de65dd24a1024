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
