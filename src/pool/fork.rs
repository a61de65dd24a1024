//! Noticing that we run in a forked child. A `pthread_atfork` child handler
//! bumps a process-wide counter (an async-signal-safe atomic add); pools
//! compare it with the generation their connections were made in, which costs
//! one relaxed load per checkout instead of a `getpid()` system call.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Once;

static GENERATION: AtomicU64 = AtomicU64::new(0);
static INSTALL: Once = Once::new();

extern "C" fn in_child() {
    GENERATION.fetch_add(1, Ordering::Relaxed);
}

/// How many forks separate this process from the one that first used a pool.
pub fn fork_generation() -> u64 {
    GENERATION.load(Ordering::Relaxed)
}

pub(crate) fn install_handler() {
    INSTALL.call_once(|| {
        // SAFETY: registers a handler that only performs an atomic add.
        unsafe {
            libc::pthread_atfork(None, None, Some(in_child));
        }
    });
}
