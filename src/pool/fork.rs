//! Fork safety. `pthread_atfork` handlers:
//! - before the fork (prepare), every pool's lock is taken, so that no other
//!   thread holds one while the process is copied; after it, the parent and
//!   the child release them;
//! - in the child, a process-wide counter is bumped (an atomic add); pools
//!   compare it with the generation their connections were made in, which
//!   costs one relaxed load per checkout instead of a `getpid()` system call.

use std::any::Any;
use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Once, Weak};

static GENERATION: AtomicU64 = AtomicU64::new(0);
static INSTALL: Once = Once::new();

/// What a fork must not copy while another thread holds it.
pub(crate) trait ForkLocked: Send + Sync {
    /// Takes the lock; dropping the returned value releases it.
    fn hold_for_fork(self: Arc<Self>) -> Box<dyn Any>;
}

type Pools = Vec<Weak<dyn ForkLocked>>;

/// Every live pool. Dead entries are pruned when a pool registers.
static POOLS: Mutex<Pools> = Mutex::new(Vec::new());

thread_local! {
    /// What the prepare handler locked, released by the parent and child
    /// handlers (all three run on the thread that calls fork).
    static HELD: RefCell<Vec<Box<dyn Any>>> = const { RefCell::new(Vec::new()) };
    static REGISTRY: RefCell<Option<MutexGuard<'static, Pools>>> = const { RefCell::new(None) };
}

fn registry() -> MutexGuard<'static, Pools> {
    POOLS.lock().unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn register(pool: Weak<dyn ForkLocked>) {
    install_handlers();
    let mut pools = registry();
    pools.retain(|p| p.strong_count() > 0);
    pools.push(pool);
}

extern "C" fn prepare() {
    let pools = registry();
    let held: Vec<Box<dyn Any>> = pools.iter().filter_map(Weak::upgrade).map(|p| p.hold_for_fork()).collect();
    let _ = HELD.try_with(|h| *h.borrow_mut() = held);
    let _ = REGISTRY.try_with(|r| *r.borrow_mut() = Some(pools));
}

fn release() {
    let _ = HELD.try_with(|h| h.borrow_mut().clear());
    let _ = REGISTRY.try_with(|r| r.borrow_mut().take());
}

extern "C" fn in_parent() {
    release();
}

extern "C" fn in_child() {
    GENERATION.fetch_add(1, Ordering::Relaxed);
    release();
}

/// How many forks separate this process from the one that first used a pool.
pub fn fork_generation() -> u64 {
    GENERATION.load(Ordering::Relaxed)
}

pub(crate) fn install_handlers() {
    INSTALL.call_once(|| {
        // SAFETY: registers plain `extern "C"` functions that take and
        // release locks of ours on the forking thread and bump a counter.
        unsafe {
            libc::pthread_atfork(Some(prepare), Some(in_parent), Some(in_child));
        }
    });
}
