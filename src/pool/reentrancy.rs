//! What the calling thread holds: which pool slot (for leases owned by a
//! thread), so that a nested checkout on the same thread gets the same
//! connection (a pool of size 1 never deadlocks on itself), and which slot
//! it gave back last. The pool validates every hint: an entry left behind
//! by a lease that was checked in on another thread is simply ignored.
//!
//! Everything lives in one thread-local, so the hot path pays for one
//! thread-local lookup (`__tls_get_addr` in a shared library) per use.

use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicU64, Ordering};

static NEXT_THREAD_TOKEN: AtomicU64 = AtomicU64::new(1);

/// Held slots kept inline; more (a thread holding slots of many pools at
/// once) spill into a vector.
const INLINE: usize = 4;

struct Local {
    token: Cell<u64>,
    /// (pool id, slot index) this thread held last: a hint for its next
    /// checkout (see `last_slot`).
    last: Cell<(u64, usize)>,
    /// (pool id, slot index) for each pool this thread holds a slot of;
    /// pool id 0 (no pool has it) marks a free entry.
    held: [Cell<(u64, usize)>; INLINE],
    more: RefCell<Vec<(u64, usize)>>,
}

thread_local! {
    static LOCAL: Local = const {
        Local {
            token: Cell::new(0),
            last: Cell::new((0, 0)),
            held: [const { Cell::new((0, 0)) }; INLINE],
            more: RefCell::new(Vec::new()),
        }
    };
}

impl Local {
    fn token(&self) -> u64 {
        let token = self.token.get();
        if token != 0 {
            return token;
        }
        let token = NEXT_THREAD_TOKEN.fetch_add(1, Ordering::Relaxed);
        self.token.set(token);
        token
    }

    fn held(&self, pool: u64) -> Option<usize> {
        if let Some(entry) = self.held.iter().find(|e| e.get().0 == pool) {
            return Some(entry.get().1);
        }
        let more = self.more.borrow();
        if more.is_empty() {
            return None;
        }
        more.iter().find(|(p, _)| *p == pool).map(|(_, i)| *i)
    }

    fn forget(&self, pool: u64) {
        if let Some(entry) = self.held.iter().find(|e| e.get().0 == pool) {
            entry.set((0, 0));
            return;
        }
        let mut more = self.more.borrow_mut();
        if !more.is_empty() {
            more.retain(|(p, _)| *p != pool);
        }
    }

    /// Holds no slot of `pool` any more; `index` is the hint for its next
    /// checkout.
    fn release(&self, pool: u64, index: usize) {
        self.forget(pool);
        self.last.set((pool, index));
    }

    fn hold(&self, pool: u64, index: usize) {
        self.forget(pool);
        match self.held.iter().find(|e| e.get().0 == 0) {
            Some(free) => free.set((pool, index)),
            None => self.more.borrow_mut().push((pool, index)),
        }
    }
}

/// A non-zero number unique to the calling thread for the process's life.
pub fn thread_token() -> u64 {
    // (While the thread's locals are being destroyed: a token of its own
    // that matches nothing, rather than a panic.)
    LOCAL.try_with(Local::token).unwrap_or_else(|_| NEXT_THREAD_TOKEN.fetch_add(1, Ordering::Relaxed))
}

/// The slot this thread last gave back to `pool`, if that was the last pool
/// it used. Taking it again when it is idle keeps a producer on one thread
/// (and its librdkafka structures in that core's cache) when there are
/// enough producers, instead of rotating every producer through every
/// thread as a plain LIFO does.
pub(crate) fn last_slot(pool: u64) -> Option<usize> {
    LOCAL.try_with(|l| l.last.get()).ok().filter(|(p, _)| *p == pool).map(|(_, i)| i)
}

/// For the lock-free checkout: (the slot this thread gave back last to
/// `pool`, the thread's token), unless the thread holds a slot of `pool`
/// now (a nested checkout, which the locked path serves). The slot is
/// recorded as held at once (one thread-local look-up for both): a caller
/// that does not get it after all calls `forget`.
#[inline]
pub(crate) fn fast_hint_held(pool: u64) -> Option<(usize, u64)> {
    LOCAL
        .try_with(|l| {
            let (p, index) = l.last.get();
            if p != pool || l.held(pool).is_some() {
                return None;
            }
            l.hold(pool, index);
            Some((index, l.token()))
        })
        .ok()
        .flatten()
}

pub(crate) fn held_slot(pool: u64) -> Option<usize> {
    LOCAL.try_with(|l| l.held(pool)).ok().flatten()
}

#[inline]
pub(crate) fn hold(pool: u64, index: usize) {
    let _ = LOCAL.try_with(|l| l.hold(pool, index));
}

pub(crate) fn forget(pool: u64) {
    let _ = LOCAL.try_with(|l| l.forget(pool));
}

/// `released`, when the calling thread is the one whose token is `token`
/// (a lease may be given back on another thread); one thread-local
/// look-up for both.
#[inline]
pub(crate) fn released_by(token: u64, pool: u64, index: usize) {
    let _ = LOCAL.try_with(|l| {
        if l.token() == token {
            l.release(pool, index);
        }
    });
}

/// The thread gave slot `index` of `pool` back: it holds none of `pool`
/// now, and `index` is its hint for the next checkout.
pub(crate) fn released(pool: u64, index: usize) {
    let _ = LOCAL.try_with(|l| l.release(pool, index));
}
