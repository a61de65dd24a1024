//! The pool's state lock: a spin lock for critical sections of a few dozen
//! instructions (pop or push an index, update a few counters).
//!
//! Why not `std::sync::Mutex`: under contention (4 threads through a pool
//! of 2, one short call per checkout) std's futex mutex marks itself
//! contended and then makes a `futex` wake system call at every unlock,
//! whether or not anybody sleeps: about half a system call per message,
//! which was the largest cost wdpool added to librdkafka's. This lock never
//! makes a system call while its holder runs; it yields the processor only
//! after spinning, when the holder was most likely preempted, and sleeps
//! briefly when that goes on. Threads that wait for a *slot* do not spin
//! here: they sleep on the pool's condition variable (see `Inner::park`).
//!
//! There is no poisoning: the state is consistent at every unlock, and a
//! panic while holding the lock unlocks it as the guard drops.

use std::cell::UnsafeCell;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

pub(crate) struct SpinLock<T> {
    locked: AtomicBool,
    value: UnsafeCell<T>,
}

// SAFETY: the lock gives one thread at a time access to the value, which
// may move between threads.
unsafe impl<T: Send> Send for SpinLock<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Sync for SpinLock<T> {}

/// Spins (with exponential backoff) before the first yield.
const SPIN_ROUNDS: u32 = 7;
/// Yields before sleeping between tries.
const YIELDS: u32 = 16;
const NAP: Duration = Duration::from_micros(50);

impl<T> SpinLock<T> {
    pub(crate) const fn new(value: T) -> Self {
        SpinLock { locked: AtomicBool::new(false), value: UnsafeCell::new(value) }
    }

    #[inline]
    pub(crate) fn lock(&self) -> SpinGuard<'_, T> {
        if self.locked.compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed).is_err() {
            self.lock_contended();
        }
        SpinGuard { lock: self }
    }

    #[cold]
    fn lock_contended(&self) {
        let mut round = 0u32;
        loop {
            if !self.locked.load(Ordering::Relaxed)
                && self.locked.compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed).is_ok()
            {
                return;
            }
            if round < SPIN_ROUNDS {
                for _ in 0..(1u32 << round) {
                    std::hint::spin_loop();
                }
            } else if round < SPIN_ROUNDS + YIELDS {
                std::thread::yield_now();
            } else {
                // Not `thread::sleep`: see `nap`. An early return only
                // means one more look at the lock.
                std::thread::park_timeout(NAP);
            }
            round = round.saturating_add(1);
        }
    }
}

/// Sleeps for `d` (at least), on a deadline of the monotonic clock.
///
/// Not `std::thread::sleep`: it restarts `nanosleep` with the time the
/// kernel says is left after every signal, and a thread that a signal
/// interrupts before it is asleep gets the whole time back. Ruby's timer
/// thread does exactly that to a thread it wants back from native code
/// (after `Thread#raise` or `Thread#kill`, `SIGVTALRM` over and over), and
/// such a sleep never ended: a checkout waiting on the state lock hung for
/// good in the Ruby suite. A wait measured against the clock ends on time
/// whatever the signals do; `park_timeout` returns early on a signal, and
/// the loop goes back to sleep for what is left.
pub(crate) fn nap(d: Duration) {
    let deadline = std::time::Instant::now() + d;
    loop {
        let now = std::time::Instant::now();
        if now >= deadline {
            return;
        }
        std::thread::park_timeout(deadline - now);
    }
}

pub(crate) struct SpinGuard<'a, T> {
    lock: &'a SpinLock<T>,
}

impl<T> Deref for SpinGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard holds the lock.
        unsafe { &*self.lock.value.get() }
    }
}

impl<T> DerefMut for SpinGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the guard holds the lock, exclusively.
        unsafe { &mut *self.lock.value.get() }
    }
}

impl<T> Drop for SpinGuard<'_, T> {
    #[inline]
    fn drop(&mut self) {
        self.lock.locked.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn excludes() {
        let lock = Arc::new(SpinLock::new(0u64));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let lock = Arc::clone(&lock);
                std::thread::spawn(move || {
                    for _ in 0..100_000 {
                        *lock.lock() += 1;
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(*lock.lock(), 400_000);
    }

    #[test]
    fn a_panic_unlocks() {
        let lock = SpinLock::new(1);
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _g = lock.lock();
            panic!("inside");
        }));
        assert!(caught.is_err());
        assert_eq!(*lock.lock(), 1);
    }

    /// A thread that a signal storm hits (as Ruby's timer thread does to a
    /// thread it wants back) still wakes from `nap` on time. The same storm
    /// kept `std::thread::sleep` asleep for good: each signal came before
    /// the kernel put the thread to sleep, and it got the whole time back.
    #[test]
    fn a_nap_ends_under_a_signal_storm() {
        use std::sync::atomic::AtomicBool;
        use std::sync::Arc;
        use std::time::{Duration, Instant};

        extern "C" fn ignore(_: libc::c_int) {}
        // SAFETY: a handler that does nothing, installed without SA_RESTART
        // so that every signal interrupts the sleeping system call.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = ignore as extern "C" fn(libc::c_int) as usize;
            libc::sigemptyset(&mut action.sa_mask);
            assert_eq!(libc::sigaction(libc::SIGURG, &action, std::ptr::null_mut()), 0);
        }
        let done = Arc::new(AtomicBool::new(false));
        let (tx, rx) = std::sync::mpsc::channel();
        let sleeper = {
            let done = Arc::clone(&done);
            std::thread::spawn(move || {
                // SAFETY: pthread_self has no preconditions.
                tx.send(unsafe { libc::pthread_self() }).unwrap();
                let started = Instant::now();
                for _ in 0..20 {
                    super::nap(Duration::from_millis(2));
                }
                done.store(true, Ordering::SeqCst);
                started.elapsed()
            })
        };
        let target = rx.recv().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !done.load(Ordering::SeqCst) {
            assert!(Instant::now() < deadline, "nap never ended under the signal storm");
            // SAFETY: the sleeper has not been joined, so its id is valid.
            unsafe { libc::pthread_kill(target, libc::SIGURG) };
            for _ in 0..50 {
                std::hint::spin_loop();
            }
        }
        let slept = sleeper.join().unwrap();
        assert!(slept >= Duration::from_millis(40), "20 naps of 2 ms took only {slept:?}");
    }
}
