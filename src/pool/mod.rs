//! The pool itself: pure safe Rust, no Kafka, no FFI.
//!
//! A fixed number of slots, each with a stable zero-based index. A slot holds
//! at most one connection, created lazily by the [`Manager`] on the slot's
//! first checkout (without holding the pool lock, so a slow creation never
//! blocks checkouts of other slots; a creation that outlives the caller's
//! timeout goes on in the background and the slot becomes idle when it is
//! done). Checkout is LIFO over idle connections (except that a thread gets
//! back the slot it gave back last when that one is idle, and other threads
//! take such a slot only when no other is idle, so that with enough
//! producers each thread keeps its own) and re-entrant per owner:
//! the calling thread by default, or a key the caller names (a Ruby fiber, a
//! Go context), or nobody. A broken connection is never handed out again;
//! its slot gets a fresh one with the same index.
//!
//! # Parked slots: `with` without the pool lock
//!
//! Every checkout and checkin takes the pool's state lock, a cache line all
//! threads share: with 2 threads on 2 producers, moving that line between
//! cores is most of what an empty `with` costs. So a slot that a thread
//! gives back on its own thread, when nobody waits, is *parked* instead of
//! pushed on the idle list: its word in `Inner::fast` (a cache line of its
//! own) says `PARKED`, and the slot stays outside every list of the state.
//! The next `Pool::with` of that thread takes it back with one
//! compare-and-swap on that word (`Inner::fast_checkout`) and gives it back
//! with another (`Inner::fast_checkin`); a thread that keeps its own
//! producer never touches a shared line that anybody writes.
//!
//! - A slot is in the lock's world (`LOCKED`: idle list, empty list, held
//!   through the lock, being created) or parked, or held through the fast
//!   path by thread `t` (`held_word(t)`). Only a compare-and-swap from
//!   `PARKED` takes a parked slot, so exactly one taker wins.
//! - Any locked path that wants an idle slot and finds none claims a parked
//!   one (`claim_parked`) before creating or waiting. The state knows how
//!   many slots are outside its lists, so it scans only when there are.
//! - A waiter, a close and a reload publish what they do (`waiting_now`,
//!   `open`, `generation_now`, sequentially consistent) and then claim the
//!   parked slots; a fast checkin parks (sequentially consistent
//!   compare-and-swap) and then reads those. Either the claimer sees the
//!   slot parked, or the parker sees the news and unparks the slot itself
//!   into the lock's world (`unpark`), where a checkin would have put it.
//! - A nested checkout on the thread holding a slot fast moves the slot
//!   into the lock's world first (it is held; `Slot::fast_outer` marks the
//!   outer lease, whose checkin then takes the locked path).

mod fork;
pub(crate) mod lock;
mod reentrancy;
#[cfg(test)]
mod tests;

use std::fmt;
use std::mem::ManuallyDrop;
use std::ops::Deref;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use lock::{SpinGuard, SpinLock};
use std::time::{Duration, Instant};

pub use fork::fork_generation;
pub use reentrancy::thread_token;

/// What the pool needs from the things it pools.
pub trait Manager: Send + Sync + 'static {
    type Conn: Send + Sync + 'static;
    type Error: Send + 'static;

    /// Creates the connection for slot `index`. Called without the pool lock.
    fn create(&self, index: usize) -> Result<Self::Conn, Self::Error>;

    /// Creates the connection for slot `index`, spending at most about
    /// `budget` waiting: work that takes longer is handed back as
    /// [`Created::Unfinished`], which the pool finishes in the background.
    fn create_within(&self, index: usize, budget: Duration) -> Result<Created<Self::Conn, Self::Error>, Self::Error> {
        let _ = budget;
        self.create(index).map(Created::Ready)
    }

    /// A broken connection is discarded instead of going back to the pool.
    fn is_broken(&self, conn: &Self::Conn) -> bool;

    /// What `is_broken` can tell without asking anything shared (a flag of
    /// the connection's own): a checkout of an idle or parked slot asks
    /// only this, for the checkin that made it idle asked `is_broken`.
    fn is_known_broken(&self, conn: &Self::Conn) -> bool {
        self.is_broken(conn)
    }

    /// Closes a connection the pool no longer wants, returning how many of its
    /// messages were not delivered. `force` asks to drop pending work.
    fn close(&self, conn: Arc<Self::Conn>, force: bool) -> u64;

    /// Observes what happens inside the pool. Runs on the thread that caused
    /// the event, never with the pool lock held.
    fn on_event(&self, _event: PoolEvent) {}

    /// Runs first on each thread the pool starts (to finish a creation).
    fn on_background_thread(&self) {}
}

/// What [`Manager::create_within`] made of its budget.
pub enum Created<C, E> {
    Ready(C),
    /// Still waiting (say, for `init_transactions`) when the budget ran out.
    Unfinished {
        /// Finishes the creation; runs on a background thread.
        finish: Box<dyn FnOnce() -> Result<C, E> + Send>,
        /// What is still pending, for the caller's timeout error.
        pending: String,
    },
}

/// Who a checkout is for. A nested checkout by the same owner gets the same
/// connection (so a pool of size 1 never deadlocks on itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// The calling OS thread.
    Thread,
    /// Nobody: every checkout is a fresh one, never re-entrant.
    Unique,
    /// A key chosen by the caller (a Ruby fiber, a Go context's token),
    /// whatever thread it calls from.
    Key(u64),
}

/// A resolved owner: who holds a lease, and on whose behalf a transaction
/// runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OwnerId {
    Thread(u64),
    Unique(u64),
    Key(u64),
}

static NEXT_UNIQUE_OWNER: AtomicU64 = AtomicU64::new(1);

impl Owner {
    pub fn resolve(self) -> OwnerId {
        match self {
            Owner::Thread => OwnerId::Thread(thread_token()),
            Owner::Unique => OwnerId::Unique(NEXT_UNIQUE_OWNER.fetch_add(1, Ordering::Relaxed)),
            Owner::Key(key) => OwnerId::Key(key),
        }
    }
}

impl OwnerId {
    /// Who acts when a lease of this owner is used now: a thread's lease
    /// acts for whichever thread uses it (another thread sharing it is
    /// another owner); other leases act for their owner from any thread.
    pub fn acting(self) -> OwnerId {
        match self {
            OwnerId::Thread(_) => OwnerId::Thread(thread_token()),
            other => other,
        }
    }
}

/// Events only the pool core can see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PoolEvent {
    CheckoutTimeout { waited: Duration, available: usize, size: usize },
    /// A broken connection was discarded; the slot will get a fresh one.
    ConnReplaced { index: usize },
    /// The pool noticed it runs in a forked child: it abandons the parent's
    /// connections (`begin`) and is ready to create fresh ones (`!begin`).
    ForkReload { begin: bool },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    pub size: usize,
    pub timeout: Duration,
}

pub const DEFAULT_SIZE: usize = 5;
/// The largest pool: each producer runs several librdkafka threads.
pub const MAX_SIZE: usize = 4096;
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(5000);

impl Default for Options {
    fn default() -> Self {
        Options { size: DEFAULT_SIZE, timeout: DEFAULT_TIMEOUT }
    }
}

/// Why a checkout failed.
#[derive(Debug)]
pub enum CheckoutError<E> {
    /// No connection became free in time. `creating`: slots whose creation
    /// goes on in the background; `pending` says what one of them waits for.
    Timeout { waited: Duration, available: usize, size: usize, creating: usize, pending: Option<String> },
    /// The pool was closed.
    Closed,
    /// Creating the slot's connection failed; the slot stays empty.
    Create(E),
}

impl<E: fmt::Display> fmt::Display for CheckoutError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckoutError::Timeout { waited, available, size, creating, pending } => {
                write!(f, "no producer available: waited {} ms, {}/{} available", waited.as_millis(), available, size)?;
                if *creating > 0 {
                    write!(f, "; {creating} still being created in the background")?;
                }
                if let Some(pending) = pending {
                    write!(f, " ({pending})")?;
                }
                Ok(())
            }
            CheckoutError::Closed => f.write_str("the pool is closed"),
            CheckoutError::Create(e) => write!(f, "creating a producer failed: {e}"),
        }
    }
}

/// A snapshot of the pool.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub size: usize,
    /// Slots that currently hold a connection (idle or in use).
    pub created: usize,
    pub idle: usize,
    pub in_use: usize,
    /// Slots whose connection is being created in the background.
    pub creating: usize,
    pub waiting: usize,
    pub checkout_timeouts: u64,
    /// Total time threads spent waiting for a free connection.
    pub total_wait: Duration,
    /// Connections created over the pool's life.
    pub creations: u64,
    /// Broken connections discarded over the pool's life.
    pub replaced: u64,
    pub closed: bool,
}

/// What closing the pool did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CloseReport {
    /// Connections closed now.
    pub closed: usize,
    /// Messages those connections did not deliver.
    pub undelivered: u64,
    /// Connections still checked out; each is closed when it comes back.
    pub in_use: usize,
}

/// How many times a checkout that found no free slot polls for one coming
/// back before it sleeps (a few microseconds at most).
const CHECKOUT_SPINS: u32 = 100;
/// Then how many times it yields the processor (to the threads holding the
/// slots, when there are more threads than cores) before it sleeps.
const CHECKOUT_YIELDS: u32 = 20;

/// When a waiting checkout turns starving: a quarter of its timeout, at
/// least 1 ms and at most 100 ms. Until then free slots go to whoever
/// takes them first (a caller that is running beats a sleeper that was
/// just woken, which keeps slots busy); after it, to the starving waiters
/// first, so that callers which give a slot back and take one again at
/// once cannot keep a waiter from it for longer than that
/// (`tests/fairness.rs`). (The Go binding's stall of a whole timeout was
/// another matter: goroutines blocked in C holding the Ps the holders
/// needed; the binding yields before it waits.)
fn starving_after(timeout: Duration) -> Duration {
    (timeout / 4).clamp(Duration::from_millis(1), Duration::from_millis(100))
}

pub struct Pool<M: Manager> {
    inner: Arc<Inner<M>>,
}

impl<M: Manager> Clone for Pool<M> {
    fn clone(&self) -> Self {
        Pool { inner: Arc::clone(&self.inner) }
    }
}

struct Inner<M: Manager> {
    id: u64,
    manager: M,
    options: Options,
    state: SpinLock<State<M::Conn>>,
    /// The lock-free side of each slot (see "Parked slots" above).
    fast: Box<[FastSlot<M::Conn>]>,
    /// Mirrors of the state that fast checkins read (written under the
    /// state lock, sequentially consistent; see "Parked slots").
    news: News,
    /// Where threads sleep: checkouts waiting for a slot on `freed`, calls
    /// of `close` waiting for a close in progress on `close_done`. A
    /// sleeper reads `changes` under the state lock, then sleeps only if it
    /// has not moved when checked again under `park` (see `sleep`).
    park: Mutex<()>,
    freed: Condvar,
    close_done: Condvar,
    checkout_timeouts: AtomicU64,
    /// Bumped under the state lock (`State::changed`) by every change a
    /// sleeper may wait for: a slot given back, a creation finished, a
    /// close started or done, a reload.
    changes: AtomicU64,
    total_wait_ns: AtomicU64,
    creations: AtomicU64,
    replaced: AtomicU64,
    /// The process generation this pool's connections belong to.
    fork_generation: AtomicU64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Closing {
    Open,
    /// A close is running; later callers wait for its report.
    InProgress { force: bool },
    Done { force: bool, report: CloseReport },
}

struct State<C> {
    slots: Box<[Slot<C>]>,
    /// Idle slots holding a connection; the last one returned goes out first.
    idle: Vec<usize>,
    /// Free slots without a connection: the next checkout creates one.
    empty: Vec<usize>,
    in_use: usize,
    /// Slots whose creation goes on in the background.
    creating: usize,
    /// What the most recent unfinished creation waits for.
    pending: Option<String>,
    waiting: usize,
    /// A waiting checkout was notified and has not looked at the state yet:
    /// later checkins do not notify again (each notify is a futex system
    /// call, and under contention the slot is usually taken again before
    /// the sleeper runs). The sleeper clears it when it wakes, for any
    /// reason, and passes the wake on if it finds more than one slot free.
    wake_pending: bool,
    /// Waiting checkouts that have waited long enough to be starving (see
    /// `starving_after`): free slots are theirs first. Another caller takes
    /// a free slot only while there are more free slots than starving
    /// waiters, and a checkin wakes every sleeper (one notified at random
    /// could be one that may not take the slot).
    starving: usize,
    closing: Closing,
    /// Bumped by reload: connections of an older generation are replaced.
    generation: u64,
}

/// The word of a slot in the lock's world.
const LOCKED: u64 = 0;
/// The word of a parked slot.
const PARKED: u64 = 1;

/// The word of a slot held through the fast path by thread `token` (even,
/// at least 2: tokens start at 1).
fn held_word(token: u64) -> u64 {
    token << 1
}

/// One slot's lock-free side, alone on its cache line.
#[repr(align(64))]
struct FastSlot<C> {
    /// `LOCKED`, `PARKED` or `held_word(thread)`.
    word: AtomicU64,
    /// The connection (the slot's own `Arc`'s pointee) and its generation,
    /// written before the slot is parked, read by whoever takes it.
    conn: AtomicPtr<C>,
    generation: AtomicU64,
}

#[repr(align(64))]
struct News {
    /// The pool is open.
    open: AtomicBool,
    generation: AtomicU64,
    waiting: AtomicUsize,
}

struct Slot<C> {
    conn: Option<Arc<C>>,
    /// Who holds this slot, `None` when idle.
    owner: Option<OwnerId>,
    depth: u32,
    /// Held, and the outermost lease is a fast one (epoch 0) that a nested
    /// checkout moved into the lock's world.
    fast_outer: bool,
    /// Bumped on every fresh checkout, so a stale lease cannot check in twice.
    epoch: u64,
    generation: u64,
}

static NEXT_POOL_ID: AtomicU64 = AtomicU64::new(1);

impl<M: Manager> Pool<M> {
    /// Builds a pool. No connection is created until it is first needed.
    /// Panics unless `1 <= options.size <= MAX_SIZE` (callers check first).
    pub fn new(manager: M, options: Options) -> Self {
        assert!((1..=MAX_SIZE).contains(&options.size), "pool size must be 1 to {MAX_SIZE}");
        let slots = (0..options.size)
            .map(|_| Slot { conn: None, owner: None, depth: 0, fast_outer: false, epoch: 0, generation: 0 })
            .collect();
        let state = State {
            slots,
            idle: Vec::with_capacity(options.size),
            // Reversed so that slot 0 is created first.
            empty: (0..options.size).rev().collect(),
            in_use: 0,
            creating: 0,
            pending: None,
            waiting: 0,
            wake_pending: false,
            starving: 0,
            closing: Closing::Open,
            generation: 0,
        };
        let inner = Arc::new(Inner {
            id: NEXT_POOL_ID.fetch_add(1, Ordering::Relaxed),
            manager,
            options,
            state: SpinLock::new(state),
            fast: (0..options.size)
                .map(|_| FastSlot {
                    word: AtomicU64::new(LOCKED),
                    conn: AtomicPtr::new(std::ptr::null_mut()),
                    generation: AtomicU64::new(0),
                })
                .collect(),
            news: News { open: AtomicBool::new(true), generation: AtomicU64::new(0), waiting: AtomicUsize::new(0) },
            park: Mutex::new(()),
            freed: Condvar::new(),
            close_done: Condvar::new(),
            checkout_timeouts: AtomicU64::new(0),
            changes: AtomicU64::new(0),
            total_wait_ns: AtomicU64::new(0),
            creations: AtomicU64::new(0),
            replaced: AtomicU64::new(0),
            fork_generation: AtomicU64::new(fork_generation()),
        });
        let held: Arc<dyn fork::ForkLocked> = inner.clone();
        fork::register(Arc::downgrade(&held));
        Pool { inner }
    }

    /// A process-unique id for this pool.
    pub fn id(&self) -> u64 {
        self.inner.id
    }

    pub fn options(&self) -> Options {
        self.inner.options
    }

    pub fn manager(&self) -> &M {
        &self.inner.manager
    }

    /// Checks a connection out for the calling thread, waiting at most
    /// `timeout` (the pool's default when `None`).
    pub fn checkout(&self, timeout: Option<Duration>) -> Result<Lease<M>, CheckoutError<M::Error>> {
        self.checkout_as(Owner::Thread, timeout)
    }

    /// Checks a connection out for `owner`, waiting at most `timeout` (the
    /// pool's default when `None`) for a free one and for its creation.
    #[inline]
    pub fn checkout_as(&self, owner: Owner, timeout: Option<Duration>) -> Result<Lease<M>, CheckoutError<M::Error>> {
        let (index, epoch, me, conn) = self.slot_for(owner, timeout)?;
        Ok(Lease::new(LeasedPool::Owned(Arc::clone(&self.inner)), index, epoch, me, conn))
    }

    /// A slot for `owner`: a thread's through the fast path when it can,
    /// else `checkout_slot`'s.
    #[allow(clippy::type_complexity)]
    #[inline(always)]
    fn slot_for(
        &self,
        owner: Owner,
        timeout: Option<Duration>,
    ) -> Result<(usize, u64, OwnerId, NonNull<M::Conn>), CheckoutError<M::Error>> {
        let fast = if owner == Owner::Thread { self.inner.fast_checkout() } else { None };
        match fast {
            Some(taken) => Ok(taken),
            None => self.checkout_slot(owner, timeout),
        }
    }

    /// Checks a slot out: its index, epoch, owner and connection (a pointer
    /// to the slot's own `Arc`, valid while the slot is held: see [`Lease`]).
    #[allow(clippy::type_complexity)]
    #[inline(always)]
    fn checkout_slot(
        &self,
        owner: Owner,
        timeout: Option<Duration>,
    ) -> Result<(usize, u64, OwnerId, NonNull<M::Conn>), CheckoutError<M::Error>> {
        let me = owner.resolve();
        // The common cases inline: nested, or an idle slot at once.
        let state = match self.start_checkout(me)? {
            Ok(nested) => return Ok(nested),
            Err(state) => state,
        };
        match self.inner.take_idle_slot(state, me, &mut false) {
            Ok(taken) => Ok(taken),
            Err(state) => self.checkout_wait(state, me, timeout),
        }
    }

    /// The rest of a checkout: create a connection, or wait for one.
    #[allow(clippy::type_complexity)]
    #[inline(never)]
    fn checkout_wait<'a>(
        &'a self,
        mut state: SpinGuard<'a, State<M::Conn>>,
        me: OwnerId,
        timeout: Option<Duration>,
    ) -> Result<(usize, u64, OwnerId, NonNull<M::Conn>), CheckoutError<M::Error>> {
        let inner = &self.inner;
        let timeout = timeout.unwrap_or(inner.options.timeout);
        let starve_after = starving_after(timeout);
        // The call's budget runs from when it first needs time (to create
        // or to wait); only the waits count in the pool's total wait time.
        let mut started: Option<Instant> = None;
        let mut blocked = Duration::ZERO;
        // One call starts at most one creation: with an unreachable broker,
        // a caller must not leave a background creation behind per slot.
        let mut may_create = true;
        let mut may_spin = true;
        // Counted in `state.starving` (and uncounted on every way out).
        let mut starving = false;
        let unstarve = |state: &mut SpinGuard<'_, State<M::Conn>>, starving: &mut bool| {
            if std::mem::take(starving) {
                state.starving -= 1;
            }
        };
        loop {
            if state.closing != Closing::Open {
                unstarve(&mut state, &mut starving);
                return Err(CheckoutError::Closed);
            }
            state = match inner.take_idle_slot(state, me, &mut starving) {
                Ok(taken) => {
                    inner.account_wait(blocked);
                    return Ok(taken);
                }
                Err(mut state) if state.closing != Closing::Open => {
                    unstarve(&mut state, &mut starving);
                    return Err(CheckoutError::Closed);
                }
                Err(state) => state,
            };
            let may_pop = may_create && (starving || state.spare());
            if let Some(index) = if may_pop { state.empty.pop() } else { None } {
                // Starving no more: others may take what is left, and may
                // be asleep because they could not.
                let wake = starving && state.waiting > 0 && !state.empty.is_empty();
                unstarve(&mut state, &mut starving);
                if wake {
                    inner.changed(&mut state);
                }
                let waited = started.get_or_insert_with(Instant::now).elapsed();
                may_create = false;
                let epoch = state.take_slot(index, me);
                let generation = state.generation;
                drop(state);
                if wake {
                    inner.wake(&inner.freed, true);
                }
                match inner.create(index, timeout.saturating_sub(waited)) {
                    Ok(conn) => {
                        inner.account_wait(blocked);
                        let ptr = NonNull::from(&*conn);
                        let mut state = inner.lock();
                        let slot = &mut state.slots[index];
                        slot.conn = Some(conn);
                        slot.generation = generation;
                        drop(state);
                        if let OwnerId::Thread(_) = me {
                            reentrancy::hold(inner.id, index);
                        }
                        return Ok((index, epoch, me, ptr));
                    }
                    Err(Some(e)) => return Err(CheckoutError::Create(e)),
                    // Unfinished: it goes on in the background; wait on.
                    Err(None) => {
                        state = inner.lock();
                        continue;
                    }
                }
            }
            let now = Instant::now();
            let waited = now - *started.get_or_insert(now);
            if waited >= timeout {
                unstarve(&mut state, &mut starving);
                inner.account_wait(blocked);
                inner.checkout_timeouts.fetch_add(1, Ordering::Relaxed);
                let size = inner.options.size;
                let available = state.idle.len() + state.empty.len();
                let creating = state.creating;
                let pending = if creating > 0 { state.pending.clone() } else { None };
                drop(state);
                inner.manager.on_event(PoolEvent::CheckoutTimeout { waited, available, size });
                return Err(CheckoutError::Timeout { waited, available, size, creating, pending });
            }
            if !starving && waited >= starve_after {
                // From now on, what is given back is this caller's first. (A
                // waiter turns starving when a checkin wakes it after
                // `starve_after`: slots given back are what it starves for.)
                starving = true;
                state.starving += 1;
                continue;
            }
            if may_spin {
                // Before sleeping (a futex wait, and a futex wake for the
                // thread that gives a slot back), spin briefly: a slot held
                // for one short call comes back within a microsecond or so.
                may_spin = false;
                let seen = inner.changes.load(Ordering::Relaxed);
                drop(state);
                let mut spins = 0;
                while spins < CHECKOUT_SPINS + CHECKOUT_YIELDS && inner.changes.load(Ordering::Relaxed) == seen {
                    if spins < CHECKOUT_SPINS {
                        std::hint::spin_loop();
                    } else {
                        std::thread::yield_now();
                    }
                    spins += 1;
                }
                state = inner.lock();
                if inner.changes.load(Ordering::Relaxed) != seen {
                    continue;
                }
            }
            state.waiting += 1;
            inner.news.waiting.store(state.waiting, Ordering::SeqCst);
            // Registered: a slot parked from now on is unparked for us; one
            // parked before is claimed here.
            if inner.claim_parked(&mut state) {
                state.waiting -= 1;
                inner.news.waiting.store(state.waiting, Ordering::SeqCst);
                continue;
            }
            let seen = inner.changes.load(Ordering::Relaxed);
            drop(state);
            let before = Instant::now();
            inner.sleep(&inner.freed, seen, Some(timeout - waited));
            blocked += before.elapsed();
            state = inner.lock();
            state.waiting -= 1;
            inner.news.waiting.store(state.waiting, Ordering::SeqCst);
            state.wake_pending = false;
        }
    }

    /// A checkout that never waits and never creates a connection: the one
    /// `owner` already holds (nested), or an idle one, or `None`. Nothing
    /// is counted as a checkout timeout and no event fires when there is
    /// none.
    #[inline]
    pub fn try_checkout_as(&self, owner: Owner) -> Result<Option<Lease<M>>, CheckoutError<M::Error>> {
        let taken = self.try_checkout_slot(owner)?;
        Ok(taken.map(|(index, epoch, me, conn)| Lease::new(LeasedPool::Owned(Arc::clone(&self.inner)), index, epoch, me, conn)))
    }

    /// `try_checkout_as`'s slot, if one is free now.
    #[allow(clippy::type_complexity)]
    #[inline(always)]
    fn try_checkout_slot(&self, owner: Owner) -> Result<Option<(usize, u64, OwnerId, NonNull<M::Conn>)>, CheckoutError<M::Error>> {
        if owner == Owner::Thread {
            if let Some(taken) = self.inner.fast_checkout() {
                return Ok(Some(taken));
            }
        }
        let me = owner.resolve();
        match self.start_checkout(me)? {
            Ok(nested) => Ok(Some(nested)),
            Err(state) => match self.inner.take_idle_slot(state, me, &mut false) {
                Ok(taken) => Ok(Some(taken)),
                Err(state) if state.closing != Closing::Open => Err(CheckoutError::Closed),
                Err(_) => Ok(None),
            },
        }
    }

    /// The start of every checkout: the pool open, and a nested checkout
    /// served at once (`Ok(Ok(..))`); otherwise the state, locked.
    #[allow(clippy::type_complexity)]
    #[inline(always)]
    fn start_checkout(
        &self,
        me: OwnerId,
    ) -> Result<Result<(usize, u64, OwnerId, NonNull<M::Conn>), SpinGuard<'_, State<M::Conn>>>, CheckoutError<M::Error>>
    {
        let inner = &self.inner;
        inner.check_fork();
        let mut state = inner.lock();
        if state.closing != Closing::Open {
            return Err(CheckoutError::Closed);
        }
        if let OwnerId::Thread(token) = me {
            if let Some(nested) = inner.nest_in_fast(&mut state, token) {
                return Ok(Ok(nested));
            }
        }
        if let Some(index) = state.held_by(inner.id, me) {
            let slot = &mut state.slots[index];
            if let Some(conn) = slot.conn.as_deref() {
                slot.depth += 1;
                return Ok(Ok((index, slot.epoch, me, NonNull::from(conn))));
            }
        }
        Ok(Err(state))
    }

    /// Runs `f` with a checked-out connection; it goes back to the pool
    /// whatever `f` does, including panicking.
    pub fn with<T>(
        &self,
        timeout: Option<Duration>,
        f: impl FnOnce(&Lease<M>) -> T,
    ) -> Result<T, CheckoutError<M::Error>> {
        let (index, epoch, me, conn) = self.slot_for(Owner::Thread, timeout)?;
        Ok(f(&self.borrowed_lease(index, epoch, me, conn)))
    }

    /// `with` for `owner`. `wait`: `Some(timeout)` waits as `checkout_as`
    /// does; `None` takes only a connection free now, as `try_checkout_as`
    /// does, and returns `Ok(None)` (without calling `f`) when there is none.
    #[inline]
    pub fn with_as<T>(
        &self,
        owner: Owner,
        wait: Option<Option<Duration>>,
        f: impl FnOnce(&Lease<M>) -> T,
    ) -> Result<Option<T>, CheckoutError<M::Error>> {
        let taken = match wait {
            Some(timeout) => self.slot_for(owner, timeout)?,
            None => match self.try_checkout_slot(owner)? {
                Some(taken) => taken,
                None => return Ok(None),
            },
        };
        let (index, epoch, me, conn) = taken;
        Ok(Some(f(&self.borrowed_lease(index, epoch, me, conn))))
    }

    /// A lease that borrows the pool: `self` outlives it, for it never
    /// leaves the call that made it (no count of the pool taken).
    #[inline(always)]
    fn borrowed_lease(&self, index: usize, epoch: u64, me: OwnerId, conn: NonNull<M::Conn>) -> Lease<M> {
        Lease::new(LeasedPool::Borrowed(NonNull::from(&*self.inner)), index, epoch, me, conn)
    }

    /// Closes the pool. Idle connections are closed now, in parallel; checked
    /// out ones when they come back. Returns when the pool is closed: a call
    /// made while another close runs waits for it, and every call reports
    /// the outcome of the first.
    pub fn close(&self, force: bool) -> CloseReport {
        let inner = &self.inner;
        inner.check_fork();
        let mut state = inner.lock();
        loop {
            match state.closing {
                Closing::Open => break,
                Closing::Done { report, .. } => return report,
                Closing::InProgress { .. } => {
                    let seen = inner.changes.load(Ordering::Relaxed);
                    drop(state);
                    inner.sleep(&inner.close_done, seen, None);
                    state = inner.lock();
                }
            }
        }
        state.closing = Closing::InProgress { force };
        inner.news.open.store(false, Ordering::SeqCst);
        inner.claim_all_parked(&mut state);
        let conns = state.take_idle();
        // Held through the fast path, or parked since the claim (by a
        // checkin that will see the close and close it): in use.
        let in_use = state.in_use + inner.fast.iter().filter(|f| f.word.load(Ordering::SeqCst) != LOCKED).count();
        inner.changed(&mut state);
        drop(state);
        inner.wake(&inner.freed, true);
        let closed = conns.len();
        let undelivered = inner.close_all(conns, force);
        let report = CloseReport { closed, undelivered, in_use };
        let mut state = inner.lock();
        state.closing = Closing::Done { force, report };
        inner.changed(&mut state);
        drop(state);
        inner.wake(&inner.close_done, true);
        report
    }

    /// Closed, or closing.
    pub fn is_closed(&self) -> bool {
        self.inner.lock().closing != Closing::Open
    }

    /// Closes idle connections (gracefully) so that they are recreated on
    /// demand; checked-out ones are replaced when they come back. Returns the
    /// number of undelivered messages of the connections closed now.
    pub fn reload(&self) -> u64 {
        self.inner.check_fork();
        let mut state = self.inner.lock();
        if state.closing != Closing::Open {
            return 0;
        }
        state.generation += 1;
        self.inner.news.generation.store(state.generation, Ordering::SeqCst);
        self.inner.claim_all_parked(&mut state);
        let conns = state.take_idle();
        self.inner.changed(&mut state);
        drop(state);
        self.inner.wake(&self.inner.freed, true);
        self.inner.close_all(conns, false)
    }

    /// A snapshot; takes the pool lock only for a few instructions.
    pub fn stats(&self) -> Stats {
        let inner = &self.inner;
        inner.check_fork();
        let state = inner.lock();
        // Each word read once: a slot taken or given back through the fast
        // path between two reads must not count as parked and as held.
        let (mut parked, mut held_fast) = (0, 0);
        if state.outside(inner.options.size) > 0 {
            for f in inner.fast.iter() {
                match f.word.load(Ordering::SeqCst) {
                    PARKED => parked += 1,
                    word if word > PARKED => held_fast += 1,
                    _ => {}
                }
            }
        }
        Stats {
            size: inner.options.size,
            created: state.slots.iter().filter(|s| s.conn.is_some()).count(),
            idle: state.idle.len() + parked,
            in_use: state.in_use + held_fast,
            creating: state.creating,
            waiting: state.waiting,
            checkout_timeouts: inner.checkout_timeouts.load(Ordering::Relaxed),
            total_wait: Duration::from_nanos(inner.total_wait_ns.load(Ordering::Relaxed)),
            creations: inner.creations.load(Ordering::Relaxed),
            replaced: inner.replaced.load(Ordering::Relaxed),
            closed: state.closing != Closing::Open,
        }
    }
}

impl<M: Manager> Inner<M> {
    #[inline]
    fn check_fork(&self) {
        if fork_generation() != self.fork_generation.load(Ordering::Acquire) {
            self.abandon_after_fork();
        }
    }

    /// In a forked child: forget the parent's connections without destroying
    /// them (their librdkafka threads do not exist here), and start afresh.
    /// The check and the reset happen under the state lock, so no other
    /// checkout can see the parent's connections in between.
    #[cold]
    #[inline(never)]
    fn abandon_after_fork(&self) {
        let mut state = self.lock();
        let current = fork_generation();
        if self.fork_generation.load(Ordering::Acquire) == current {
            return;
        }
        state.generation += 1;
        self.news.generation.store(state.generation, Ordering::SeqCst);
        for (slot, fast) in state.slots.iter_mut().zip(self.fast.iter()) {
            if let Some(conn) = slot.conn.take() {
                std::mem::forget(conn);
            }
            slot.owner = None;
            slot.depth = 0;
            slot.fast_outer = false;
            slot.epoch += 1;
            fast.word.store(LOCKED, Ordering::SeqCst);
        }
        state.idle.clear();
        state.empty = (0..self.options.size).rev().collect();
        state.in_use = 0;
        state.creating = 0;
        state.pending = None;
        state.waiting = 0;
        self.news.waiting.store(0, Ordering::SeqCst);
        state.wake_pending = false;
        // A close the parent was running goes on in the parent only.
        if let Closing::InProgress { force } = state.closing {
            state.closing = Closing::Done { force, report: CloseReport::default() };
        }
        self.fork_generation.store(current, Ordering::Release);
        drop(state);
        self.manager.on_event(PoolEvent::ForkReload { begin: true });
        self.manager.on_event(PoolEvent::ForkReload { begin: false });
    }

    fn lock(&self) -> SpinGuard<'_, State<M::Conn>> {
        self.state.lock()
    }

    /// Records a change that sleepers may wait for. Called with the state
    /// locked (hence a plain store), before `wake`.
    fn changed(&self, _locked: &mut SpinGuard<'_, State<M::Conn>>) {
        self.changes.store(self.changes.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
    }

    /// Wakes sleepers on `cv` after `changed`, with the state unlocked.
    fn wake(&self, cv: &Condvar, all: bool) {
        let _park = self.park.lock().unwrap_or_else(|e| e.into_inner());
        if all {
            cv.notify_all();
        } else {
            cv.notify_one();
        }
    }

    /// Sleeps on `cv` until woken or `timeout`, unless `changes` moved from
    /// `seen` (read under the state lock). A waker bumps `changes` before
    /// it takes `park` to notify, so a change made before the sleeper takes
    /// `park` is seen here, and one made after wakes it: none is missed.
    fn sleep(&self, cv: &Condvar, seen: u64, timeout: Option<Duration>) {
        let park = self.park.lock().unwrap_or_else(|e| e.into_inner());
        if self.changes.load(Ordering::Relaxed) != seen {
            return;
        }
        // (The mutex guards nothing but the handshake: poison is moot.)
        match timeout {
            Some(t) => drop(cv.wait_timeout(park, t)),
            None => drop(cv.wait(park)),
        }
    }

    /// Records a change, unlocks, then wakes one waiting checkout if there
    /// is one. Waiters register under the lock, so none is missed; skipping
    /// the wake when nobody waits saves taking `park` (and a futex system
    /// call) on every uncontended checkin.
    fn unlock_and_wake(&self, mut state: SpinGuard<'_, State<M::Conn>>) {
        self.changed(&mut state);
        // With starving waiters, every sleeper: the one notified must be
        // one that may take the slot.
        let all = state.starving > 0;
        let wake = state.waiting > 0 && (all || !state.wake_pending);
        state.wake_pending |= wake;
        drop(state);
        if wake {
            self.wake(&self.freed, all);
        }
    }

    fn account_wait(&self, blocked: Duration) {
        if !blocked.is_zero() {
            let ns = u64::try_from(blocked.as_nanos()).unwrap_or(u64::MAX);
            self.total_wait_ns.fetch_add(ns, Ordering::Relaxed);
        }
    }

    /// Creates slot `index`'s connection (the slot is reserved by the
    /// caller). `Err(None)`: unfinished within `budget`; the slot was handed
    /// to a background thread that finishes it and makes the slot idle. On
    /// failure or panic the slot is given back.
    fn create(self: &Arc<Self>, index: usize, budget: Duration) -> Result<Arc<M::Conn>, Option<M::Error>> {
        let created = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.manager.create_within(index, budget)
        }));
        let created = created.unwrap_or_else(|panic| {
            self.give_back_reserved(index);
            std::panic::resume_unwind(panic)
        });
        match created {
            Ok(Created::Ready(conn)) => {
                self.creations.fetch_add(1, Ordering::Relaxed);
                Ok(Arc::new(conn))
            }
            Ok(Created::Unfinished { finish, pending }) => {
                self.finish_in_background(index, finish, pending);
                Err(None)
            }
            Err(e) => {
                self.give_back_reserved(index);
                Err(Some(e))
            }
        }
    }

    fn give_back_reserved(&self, index: usize) {
        let mut state = self.lock();
        state.release_slot(index);
        state.empty.push(index);
        self.unlock_and_wake(state);
    }

    /// The slot, reserved by a caller whose budget ran out, is no longer in
    /// use but `creating` until `finish` is done on a thread of its own.
    fn finish_in_background(
        self: &Arc<Self>,
        index: usize,
        finish: Box<dyn FnOnce() -> Result<M::Conn, M::Error> + Send>,
        pending: String,
    ) {
        {
            let mut state = self.lock();
            state.release_slot(index);
            state.creating += 1;
            state.pending = Some(pending);
        }
        let inner = Arc::clone(self);
        let spawned = std::thread::Builder::new()
            .name(format!("wdpool-create-{index}"))
            .spawn(move || {
                inner.manager.on_background_thread();
                inner.finished(index, finish)
            });
        if let Err(e) = spawned {
            // No thread to finish it on: the slot is free again. The
            // unfinished creation is dropped (and so destroyed).
            let _ = e;
            let mut state = self.lock();
            state.creating -= 1;
            state.empty.push(index);
            self.unlock_and_wake(state);
        }
    }

    fn finished(&self, index: usize, finish: Box<dyn FnOnce() -> Result<M::Conn, M::Error> + Send>) {
        // (A fork meanwhile does not concern this thread: it exists only in
        // the parent, whose state it updates.)
        let created = std::panic::catch_unwind(std::panic::AssertUnwindSafe(finish));
        let mut state = self.lock();
        state.creating = state.creating.saturating_sub(1);
        if state.creating == 0 {
            state.pending = None;
        }
        match created {
            Ok(Ok(conn)) if state.closing == Closing::Open => {
                self.creations.fetch_add(1, Ordering::Relaxed);
                let generation = state.generation;
                let slot = &mut state.slots[index];
                slot.conn = Some(Arc::new(conn));
                slot.generation = generation;
                state.idle.push(index);
                self.changed(&mut state);
                drop(state);
                // Every waiter: the caller whose creation this was may be
                // among them and would otherwise wait for nothing.
                self.wake(&self.freed, true);
            }
            Ok(Ok(conn)) => {
                // Closed meanwhile: it never served anybody.
                drop(state);
                self.manager.close(Arc::new(conn), true);
            }
            Ok(Err(_)) | Err(_) => {
                state.empty.push(index);
                self.changed(&mut state);
                drop(state);
                self.wake(&self.freed, true);
            }
        }
    }

    fn discard_broken(&self, index: usize, conn: Option<Arc<M::Conn>>) {
        self.replaced.fetch_add(1, Ordering::Relaxed);
        self.manager.on_event(PoolEvent::ConnReplaced { index });
        if let Some(conn) = conn {
            self.manager.close(conn, true);
        }
    }

    /// Closes connections in parallel; the manager bounds each close.
    fn close_all(&self, conns: Vec<Arc<M::Conn>>, force: bool) -> u64 {
        match conns.len() {
            0 => 0,
            1 => self.manager.close(conns.into_iter().next().expect("one"), force),
            _ => std::thread::scope(|scope| {
                let handles: Vec<_> = conns
                    .into_iter()
                    .map(|conn| scope.spawn(move || self.manager.close(conn, force)))
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap_or(0)).sum()
            }),
        }
    }

    /// Takes an idle slot for `me` (replacing broken connections on the
    /// way), or gives the state back, locked, when none is idle (or the
    /// pool closed meanwhile).
    #[allow(clippy::type_complexity)]
    #[inline(always)]
    fn take_idle_slot<'a>(
        &'a self,
        mut state: SpinGuard<'a, State<M::Conn>>,
        me: OwnerId,
        starving: &mut bool,
    ) -> Result<(usize, u64, OwnerId, NonNull<M::Conn>), SpinGuard<'a, State<M::Conn>>> {
        if !*starving && !state.spare() {
            // What is free goes to the starving waiters.
            return Err(state);
        }
        let hint = if let OwnerId::Thread(_) = me { reentrancy::last_slot(self.id) } else { None };
        if let Some(hint) = hint {
            // This thread's own slot, parked: its first choice.
            self.claim_parked_slot(&mut state, hint);
        }
        loop {
            let index = match state.pop_idle(self.id, me) {
                Some(index) => index,
                // Other threads' parked slots come last.
                None if self.claim_parked(&mut state) => continue,
                None => return Err(state),
            };
            let slot = &mut state.slots[index];
            let conn = NonNull::from(slot.conn.as_deref().expect("an idle slot holds a connection"));
            // SAFETY: the slot's own `Arc`, borrowed under the lock. Asked
            // in full (`is_broken`) when it was given back.
            if self.manager.is_known_broken(unsafe { conn.as_ref() }) {
                let broken = slot.conn.take();
                state.empty.push(index);
                drop(state);
                self.discard_broken(index, broken);
                state = self.lock();
                if state.closing != Closing::Open {
                    return Err(state);
                }
                continue;
            }
            let epoch = state.take_slot(index, me);
            if std::mem::take(starving) {
                state.starving -= 1;
            }
            // A sleeper woken for a slot that another caller took: pass the
            // wake on when more slots are free (see `wake_pending`); to
            // every sleeper while some are starving.
            let all = state.starving > 0;
            let chain = state.waiting > 0
                && (all || !state.wake_pending)
                && (!state.idle.is_empty() || !state.empty.is_empty());
            state.wake_pending |= chain;
            drop(state);
            if chain {
                self.wake(&self.freed, all);
            }
            if let OwnerId::Thread(_) = me {
                reentrancy::hold(self.id, index);
            }
            return Ok((index, epoch, me, conn));
        }
    }

    fn checkin(&self, index: usize, epoch: u64, conn: &M::Conn) {
        self.check_fork();
        let mut state = self.lock();
        let slot = &mut state.slots[index];
        // Epoch 0: a fast lease whose slot a nested checkout moved here.
        let current = if epoch == 0 { slot.fast_outer } else { slot.epoch == epoch };
        if !current || slot.depth == 0 {
            // A lease from before a fork (or a reset): nothing to return.
            return;
        }
        if epoch == 0 {
            slot.fast_outer = false;
        }
        slot.depth -= 1;
        if slot.depth > 0 {
            return;
        }
        // (A thread-local look-up only for a thread's lease.)
        let mine = matches!(slot.owner, Some(OwnerId::Thread(t)) if t == thread_token());
        if mine {
            reentrancy::released(self.id, index);
        }
        state.release_slot(index);
        self.settle(state, index, conn, mine);
    }

    /// Puts a slot nobody holds any more where it belongs: parked (when
    /// `park`, the pool open, nobody waiting), on the idle list, or closed
    /// (pool closing, broken, or of an older generation).
    fn settle(&self, mut state: SpinGuard<'_, State<M::Conn>>, index: usize, conn: &M::Conn, park: bool) {
        let closing = state.closing;
        let broken = self.manager.is_broken(conn);
        let stale = state.slots[index].generation != state.generation;
        if closing == Closing::Open && !broken && !stale {
            if park && state.waiting == 0 && state.starving == 0 {
                let slot = &state.slots[index];
                let fast = &self.fast[index];
                let conn = slot.conn.as_deref().expect("a held slot holds a connection");
                fast.conn.store(NonNull::from(conn).as_ptr(), Ordering::Relaxed);
                fast.generation.store(slot.generation, Ordering::Relaxed);
                // (Sequentially consistent: publishes the two above, and
                // spinning checkouts claim it once they look.)
                fast.word.store(PARKED, Ordering::SeqCst);
                self.changed(&mut state);
                return;
            }
            state.idle.push(index);
            self.unlock_and_wake(state);
            return;
        }
        let conn = state.slots[index].conn.take();
        if closing == Closing::Open {
            state.empty.push(index);
        }
        self.unlock_and_wake(state);
        if broken {
            self.discard_broken(index, conn);
        } else if let Some(conn) = conn {
            let force = matches!(closing, Closing::InProgress { force: true } | Closing::Done { force: true, .. });
            self.manager.close(conn, force);
        }
    }

    /// `Pool::with`'s checkout without the pool lock: the slot this thread
    /// gave back last, if it is parked and usable. None sends the caller to
    /// the locked path (nested, nothing parked, pool closed, a fork...).
    #[inline(always)]
    #[allow(clippy::type_complexity)]
    fn fast_checkout(&self) -> Option<(usize, u64, OwnerId, NonNull<M::Conn>)> {
        if fork_generation() != self.fork_generation.load(Ordering::Acquire) {
            return None;
        }
        let (index, token) = reentrancy::fast_hint_held(self.id)?;
        let claimed = self.fast.get(index).filter(|fast| {
            fast.word.compare_exchange(PARKED, held_word(token), Ordering::SeqCst, Ordering::Relaxed).is_ok()
        });
        let Some(fast) = claimed else {
            reentrancy::forget(self.id);
            return None;
        };
        // Written before the slot was parked; the exchange acquired them.
        let conn = NonNull::new(fast.conn.load(Ordering::Relaxed));
        let generation = fast.generation.load(Ordering::Relaxed);
        let usable = conn.is_some_and(|conn| {
            self.news.open.load(Ordering::SeqCst)
                && generation == self.news.generation.load(Ordering::SeqCst)
                // SAFETY: a parked slot's connection is the slot's own
                // `Arc`, which stays while the slot is parked or held.
                // Checked in full when it was parked, by `fast_checkin`.
                && !self.manager.is_known_broken(unsafe { conn.as_ref() })
        });
        if !usable {
            // Let the locked path deal with it (close, replace).
            reentrancy::forget(self.id);
            fast.word.store(PARKED, Ordering::SeqCst);
            self.unpark(index);
            return None;
        }
        Some((index, 0, OwnerId::Thread(token), conn?))
    }

    /// The checkin of a lease of `fast_checkout` (epoch 0) held by thread
    /// `token`, on any thread.
    fn fast_checkin(&self, index: usize, token: u64, conn: &M::Conn) {
        if fork_generation() != self.fork_generation.load(Ordering::Acquire) {
            // The slot was reset with the rest: nothing to give back.
            return self.check_fork();
        }
        let fast = &self.fast[index];
        if fast.word.compare_exchange(held_word(token), PARKED, Ordering::SeqCst, Ordering::Relaxed).is_err() {
            // A nested checkout moved it into the lock's world (where a
            // nested lease may still hold it).
            return self.checkin(index, 0, conn);
        }
        reentrancy::released_by(token, self.id, index);
        let news = &self.news;
        if !news.open.load(Ordering::SeqCst)
            || news.waiting.load(Ordering::SeqCst) > 0
            || fast.generation.load(Ordering::Relaxed) != news.generation.load(Ordering::SeqCst)
            || self.manager.is_broken(conn)
        {
            self.unpark(index);
        }
    }

    /// Moves slot `index` from parked into the lock's world, as a checkin
    /// would, unless somebody took it meanwhile.
    fn unpark(&self, index: usize) {
        let state = self.lock();
        if self.fast[index].word.compare_exchange(PARKED, LOCKED, Ordering::SeqCst, Ordering::Relaxed).is_err() {
            return;
        }
        let conn = NonNull::from(state.slots[index].conn.as_deref().expect("a parked slot holds a connection"));
        // SAFETY: the slot's own `Arc`, which `settle` takes out (if at
        // all) only after its last use of `conn`.
        self.settle(state, index, unsafe { conn.as_ref() }, false);
    }

    /// Claims a parked slot onto the idle list; whether it did.
    fn claim_parked(&self, state: &mut SpinGuard<'_, State<M::Conn>>) -> bool {
        state.outside(self.options.size) > 0 && (0..self.fast.len()).any(|i| self.claim_parked_slot(state, i))
    }

    /// Claims slot `index` onto the idle list if it is parked.
    fn claim_parked_slot(&self, state: &mut SpinGuard<'_, State<M::Conn>>, index: usize) -> bool {
        let Some(fast) = self.fast.get(index) else { return false };
        let claimed = fast.word.load(Ordering::Relaxed) == PARKED
            && fast.word.compare_exchange(PARKED, LOCKED, Ordering::SeqCst, Ordering::Relaxed).is_ok();
        if claimed {
            state.idle.push(index);
        }
        claimed
    }

    /// Claims every parked slot onto the idle list (close, reload).
    fn claim_all_parked(&self, state: &mut SpinGuard<'_, State<M::Conn>>) {
        if state.outside(self.options.size) == 0 {
            return;
        }
        for (index, fast) in self.fast.iter().enumerate() {
            if fast.word.compare_exchange(PARKED, LOCKED, Ordering::SeqCst, Ordering::Relaxed).is_ok() {
                state.idle.push(index);
            }
        }
    }

    /// A nested checkout by thread `token` of the slot it holds through
    /// the fast path: the slot moves into the lock's world, held by the
    /// thread (the fast lease becomes its outermost level), one level up.
    #[allow(clippy::type_complexity)]
    fn nest_in_fast(
        &self,
        state: &mut SpinGuard<'_, State<M::Conn>>,
        token: u64,
    ) -> Option<(usize, u64, OwnerId, NonNull<M::Conn>)> {
        let index = reentrancy::held_slot(self.id)?;
        let fast = self.fast.get(index)?;
        // Only this thread moves its own word away from `held_word(token)`.
        fast.word.compare_exchange(held_word(token), LOCKED, Ordering::SeqCst, Ordering::Relaxed).ok()?;
        let me = OwnerId::Thread(token);
        let epoch = state.take_slot(index, me);
        let slot = &mut state.slots[index];
        slot.fast_outer = true;
        slot.depth += 1;
        let conn = NonNull::from(slot.conn.as_deref().expect("a held slot holds a connection"));
        Some((index, epoch, me, conn))
    }
}

impl<M: Manager> fork::ForkLocked for Inner<M> {
    fn hold_for_fork(self: Arc<Self>) -> Box<dyn std::any::Any> {
        struct Held<M: Manager> {
            // Declared first: dropped (unlocked) before the pool they borrow.
            _park: std::sync::MutexGuard<'static, ()>,
            _guard: SpinGuard<'static, State<M::Conn>>,
            _inner: Arc<Inner<M>>,
        }
        // Both locks, in the order no other code path nests them in (none
        // does): a child must not inherit either held by a parent's thread.
        let guard = self.lock();
        let park = self.park.lock().unwrap_or_else(|e| e.into_inner());
        // SAFETY: the guards borrow locks inside `self`, which the `Arc`
        // stored next to them keeps alive; they are dropped first (field
        // order), so they never outlive the locks.
        let guard: SpinGuard<'static, State<M::Conn>> = unsafe { std::mem::transmute(guard) };
        // SAFETY: as above.
        let park: std::sync::MutexGuard<'static, ()> = unsafe { std::mem::transmute(park) };
        Box::new(Held { _park: park, _guard: guard, _inner: self })
    }
}

impl<C> State<C> {
    /// An idle slot for `owner`: the one the calling thread gave back last
    /// when it is idle (a thread-owned checkout), else the one given back
    /// last by anybody.
    fn pop_idle(&mut self, pool: u64, owner: OwnerId) -> Option<usize> {
        if let OwnerId::Thread(_) = owner {
            if let Some(hint) = reentrancy::last_slot(pool) {
                if let Some(at) = self.idle.iter().rposition(|i| *i == hint) {
                    return Some(self.idle.remove(at));
                }
            }
        }
        self.idle.pop()
    }

    /// More slots are free (idle or empty) than waiters are starving: a
    /// caller that is not starving may take one.
    fn spare(&self) -> bool {
        self.starving == 0 || self.idle.len() + self.empty.len() > self.starving
    }

    /// Marks a free slot as checked out by `owner`; returns its epoch.
    fn take_slot(&mut self, index: usize, owner: OwnerId) -> u64 {
        self.in_use += 1;
        let slot = &mut self.slots[index];
        slot.owner = Some(owner);
        slot.depth = 1;
        slot.epoch += 1;
        slot.epoch
    }

    fn release_slot(&mut self, index: usize) {
        self.in_use -= 1;
        let slot = &mut self.slots[index];
        slot.owner = None;
        slot.depth = 0;
    }

    /// The slot `owner` holds in this pool, if any. Unique owners never
    /// hold one twice; a thread's hint is validated here, under the lock.
    fn held_by(&self, pool: u64, owner: OwnerId) -> Option<usize> {
        let index = match owner {
            OwnerId::Unique(_) => return None,
            OwnerId::Thread(_) => reentrancy::held_slot(pool)?,
            OwnerId::Key(_) => return self.slots.iter().position(|s| s.depth > 0 && s.owner == Some(owner)),
        };
        let slot = &self.slots[index];
        if slot.depth > 0 && slot.owner == Some(owner) {
            Some(index)
        } else {
            reentrancy::forget(pool);
            None
        }
    }

    /// Slots in none of the state's lists and not held through it: parked,
    /// or held through the fast path.
    fn outside(&self, size: usize) -> usize {
        size - self.idle.len() - self.empty.len() - self.in_use - self.creating
    }

    fn take_idle(&mut self) -> Vec<Arc<C>> {
        let mut conns = Vec::with_capacity(self.idle.len());
        while let Some(index) = self.idle.pop() {
            if let Some(conn) = self.slots[index].conn.take() {
                conns.push(conn);
            }
            self.empty.push(index);
        }
        conns
    }
}

/// Where a lease's pool lives.
enum LeasedPool<M: Manager> {
    /// A lease of `Pool::checkout*`: it keeps the pool alive.
    Owned(Arc<Inner<M>>),
    /// A lease of `Pool::with`, which outlives it (no reference count to
    /// touch on the hot path).
    Borrowed(NonNull<Inner<M>>),
}

/// A checked-out connection. Dropping it returns the connection to the pool.
///
/// The lease does not count as a reference to the connection: `conn` is an
/// alias of the slot's own `Arc` (never dropped through the lease). That is
/// sound because a held slot's `Arc` is only ever removed by the checkin
/// that ends the last lease of the slot (after which no lease uses it), or
/// leaked, never dropped, when a forked child abandons its parent's
/// connections. Skipping the count saves two atomic operations on a cache
/// line that every thread using the producer shares.
pub struct Lease<M: Manager> {
    pool: LeasedPool<M>,
    index: usize,
    epoch: u64,
    owner: OwnerId,
    conn: ManuallyDrop<Arc<M::Conn>>,
}

// SAFETY: a lease holds an `Arc` of the pool (or borrows it, within
// `Pool::with`) and an alias of the connection's `Arc`; both are as
// thread-safe as `Arc<Inner<M>>` and `Arc<M::Conn>`, which are Send + Sync
// for `Manager`'s bounds.
unsafe impl<M: Manager> Send for Lease<M> {}
// SAFETY: as above; `&Lease` gives only shared access.
unsafe impl<M: Manager> Sync for Lease<M> {}

impl<M: Manager> Lease<M> {
    fn new(pool: LeasedPool<M>, index: usize, epoch: u64, owner: OwnerId, conn: NonNull<M::Conn>) -> Self {
        // SAFETY: `conn` points into the slot's `Arc` (checkout_slot); the
        // alias is never dropped (ManuallyDrop) and outlives no checkin.
        let conn = ManuallyDrop::new(unsafe { Arc::from_raw(conn.as_ptr().cast_const()) });
        Lease { pool, index, epoch, owner, conn }
    }

    fn inner(&self) -> &Inner<M> {
        match &self.pool {
            LeasedPool::Owned(inner) => inner,
            // SAFETY: `Pool::with` keeps the pool alive around the lease.
            LeasedPool::Borrowed(inner) => unsafe { inner.as_ref() },
        }
    }

    /// The slot's zero-based index.
    pub fn index(&self) -> usize {
        self.index
    }

    /// Who holds this lease.
    pub fn owner(&self) -> OwnerId {
        self.owner
    }

    /// The connection's `Arc`, to clone for work that may outlive the
    /// lease (the connection itself stays usable).
    pub fn conn(&self) -> &Arc<M::Conn> {
        &self.conn
    }
}

impl<M: Manager> Deref for Lease<M> {
    type Target = M::Conn;
    fn deref(&self) -> &M::Conn {
        &self.conn
    }
}

impl<M: Manager> Drop for Lease<M> {
    fn drop(&mut self) {
        if let (0, OwnerId::Thread(token)) = (self.epoch, self.owner) {
            self.inner().fast_checkin(self.index, token, &self.conn);
        } else {
            self.inner().checkin(self.index, self.epoch, &self.conn);
        }
    }
}
