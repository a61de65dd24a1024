//! Pool handles (and report queue handles) used without touching a shared
//! reference count.
//!
//! Every `wdpool_pool_with` (and checkout) resolves its pool handle, and
//! every tagged produce its report queue's. Taking
//! a counted reference means a locked registry cell and two atomic
//! read-modify-writes on the pool's reference count, a cache line every
//! thread using the pool shares. The hot exports instead publish the
//! handle as a *hazard* of the calling thread (a slot of its own,
//! `super::frames::hazard`), check that the handle is still live, and use
//! the pool by reference:
//!
//! - Freeing a pool handle removes it from the registry (its cell stops
//!   being live), then looks for the handle among every thread's hazards.
//!   The reader publishes its hazard with a plain store and a compiler
//!   fence; the freeing thread makes every running thread execute a memory
//!   barrier (`super::fence::heavy`) between the removal and the look:
//!   either the reader sees the handle gone (and fails with STALE_HANDLE,
//!   as it would after the free) or the freeing thread sees the hazard.
//! - A pool some thread still uses is *retired*: a thread of wdpool's keeps
//!   the registry's reference and looks again, with a growing pause, until
//!   no hazard names the handle, then drops it. Dropping that last
//!   reference is what starts the pool's background close, as
//!   `wdpool_pool_free` promises: once the last call using the pool has
//!   returned. (`wdpool_pool_free` itself never waits.)
//!
//! In a forked child, hazards of the parent's other threads stay published
//! forever: a pool they were using when the process forked is never
//! dropped there (kept, never freed early).

use std::sync::Arc;
use std::time::Duration;

use super::{fence, frames};
use super::registry::Registry;
use crate::error::Result;

/// Runs `f` on the value behind `token` (a live handle of `registry`, whose
/// values were inserted with `insert_arc` and are retired with [`retire`]),
/// without a counted reference when the thread has a hazard slot free.
pub(crate) fn with_pinned<T: Send + Sync + 'static, R>(
    registry: &'static Registry<Arc<T>>,
    token: usize,
    f: impl FnOnce(&T) -> Result<R>,
) -> Result<R> {
    let Some(hazard) = frames::hazard() else {
        let value = registry.with(token, |v| Arc::clone(v))?;
        return f(&value);
    };
    hazard.publish(token as u64);
    let published = registry.live_ptr(token)?;
    // SAFETY: `insert_arc` published the value's address with the handle,
    // which was live after our hazard was published: the registry's
    // reference (or, once the handle is freed, the retired one) lives until
    // no hazard names the handle, and ours stays until `hazard` drops,
    // after `f`.
    let value = unsafe { &*published.cast::<T>().cast_const() };
    f(value)
}

/// Drops the registry's reference of a freed handle's value: now when no
/// thread uses it, else on a thread of its own once none does.
pub(crate) fn retire<T: Send + Sync + 'static>(token: usize, value: Arc<T>) {
    fence::heavy();
    if !frames::any_hazard(token as u64) {
        return drop(value);
    }
    let spawned = std::thread::Builder::new().name("wdpool-free".into()).spawn(move || {
        let mut pause = Duration::from_micros(50);
        while frames::any_hazard(token as u64) {
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(10));
        }
        drop(value);
    });
    // No thread to be had: keep the value rather than free it under a user.
    if let Err(e) = spawned {
        let _ = e;
    }
}
