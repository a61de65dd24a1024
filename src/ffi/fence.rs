//! Asymmetric fences: a cheap side for the hot path, a heavy side for the
//! rare one.
//!
//! Two protocols here are Dekker-style: one thread stores then loads, the
//! other stores then loads, and at least one must see the other's store.
//! The hazards of `super::pins` (publish a hazard, then check the handle is
//! live / mark the handle dead, then look for hazards) and the frames of
//! `super::frames` (mark a frame dead, then look for pins / pin, then check
//! the frame) are such pairs. Sequentially consistent stores on both sides
//! are correct, but each costs an `xchg` (about 7 ns here) on every
//! `wdpool_pool_with`, while the other side (freeing a pool, or using a
//! callback's producer handle from another thread) is rare.
//!
//! So the hot side does a plain store and a compiler-only fence
//! ([`light_store`]), and the rare side calls [`heavy`], which makes every
//! running thread of the process execute a full memory barrier before it
//! returns: Linux's `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)`. Either
//! the hot thread's store and load both come before its barrier (then the
//! rare side, loading after `heavy`, sees the store) or its load comes
//! after it (then it sees the rare side's store, made before `heavy`).
//! This is the pairing of folly's `asymmetric_thread_fence_light/heavy`.
//!
//! Where `membarrier` is not available (another OS, an old kernel, a
//! sandbox refusing the call), [`light_store`] falls back to a sequentially
//! consistent store and [`heavy`] to a sequentially consistent fence: the
//! mode is decided once, by [`init`], before any hot side can run (a pool
//! is made first), and a hot side that does not see the mode yet takes the
//! sequentially consistent store, which is always correct.

use std::sync::atomic::{compiler_fence, fence, AtomicU64, AtomicU8, Ordering};
use std::sync::OnceLock;

const UNKNOWN: u8 = 0;
/// `membarrier` works: hot sides use compiler fences.
const ASYMMETRIC: u8 = 1;
/// It does not: both sides use sequentially consistent operations.
const SYMMETRIC: u8 = 2;

static MODE: AtomicU8 = AtomicU8::new(UNKNOWN);
static INIT: OnceLock<()> = OnceLock::new();

#[cfg(target_os = "linux")]
mod sys {
    const CMD_QUERY: libc::c_long = 0;
    const CMD_GLOBAL: libc::c_long = 1;
    const CMD_PRIVATE_EXPEDITED: libc::c_long = 1 << 3;
    const CMD_REGISTER_PRIVATE_EXPEDITED: libc::c_long = 1 << 4;

    fn membarrier(cmd: libc::c_long) -> libc::c_long {
        // SAFETY: membarrier takes two integers (cmd, flags) and touches no
        // memory of ours.
        unsafe { libc::syscall(libc::SYS_membarrier, cmd, 0 as libc::c_long) }
    }

    /// Registers the process for expedited private barriers; whether they
    /// (or, failing that, global ones) can be used.
    pub(super) fn register() -> bool {
        let supported = membarrier(CMD_QUERY);
        if supported < 0 {
            return false;
        }
        if supported & CMD_PRIVATE_EXPEDITED != 0 && membarrier(CMD_REGISTER_PRIVATE_EXPEDITED) == 0 {
            return true;
        }
        supported & CMD_GLOBAL != 0
    }

    /// A barrier on every running thread of the process; false if the
    /// kernel refused every way of making one.
    pub(super) fn barrier() -> bool {
        if membarrier(CMD_PRIVATE_EXPEDITED) == 0 {
            return true;
        }
        // Not registered: a forked child (registration belongs to the
        // address space the parent had) or a registration that failed.
        if membarrier(CMD_REGISTER_PRIVATE_EXPEDITED) == 0 && membarrier(CMD_PRIVATE_EXPEDITED) == 0 {
            return true;
        }
        // Slower (it waits for an RCU grace period) but needs no
        // registration.
        membarrier(CMD_GLOBAL) == 0
    }
}

#[cfg(not(target_os = "linux"))]
mod sys {
    pub(super) fn register() -> bool {
        false
    }
    pub(super) fn barrier() -> bool {
        false
    }
}

/// Decides the mode; called before the first hot side can run (when a pool
/// is made) and by every [`heavy`]. Cheap after the first call.
pub(crate) fn init() {
    INIT.get_or_init(|| {
        let mode = if std::env::var_os("WDPOOL_NO_MEMBARRIER").is_none() && sys::register() {
            ASYMMETRIC
        } else {
            SYMMETRIC
        };
        MODE.store(mode, Ordering::SeqCst);
    });
}

/// The hot side: stores `value`, then orders the store before the loads
/// that follow, against a [`heavy`] on another thread.
#[inline]
pub(crate) fn light_store(cell: &AtomicU64, value: u64) {
    if MODE.load(Ordering::Relaxed) == ASYMMETRIC {
        cell.store(value, Ordering::Relaxed);
        compiler_fence(Ordering::SeqCst);
    } else {
        cell.store(value, Ordering::SeqCst);
    }
}

/// The rare side: after the caller's stores, before its loads. Costs a
/// system call (a few microseconds) in the asymmetric mode.
pub(crate) fn heavy() {
    init();
    fence(Ordering::SeqCst);
    if MODE.load(Ordering::SeqCst) == ASYMMETRIC && !sys::barrier() {
        // Hot sides already rely on the barrier: nothing else is correct.
        eprintln!("wdpool: membarrier worked at start and fails now; aborting rather than risk a use after free");
        std::process::abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heavy_after_init_works() {
        init();
        assert_ne!(MODE.load(Ordering::SeqCst), UNKNOWN);
        let cell = AtomicU64::new(0);
        light_store(&cell, 5);
        heavy();
        assert_eq!(cell.load(Ordering::SeqCst), 5);
    }
}
