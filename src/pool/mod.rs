//! The pool itself: pure safe Rust, no Kafka, no FFI.
//!
//! A fixed number of slots, each with a stable zero-based index. A slot holds
//! at most one connection, created lazily by the [`Manager`] on the slot's
//! first checkout (without holding the pool lock, so a slow creation never
//! blocks checkouts of other slots). Checkout is LIFO over idle connections and
//! re-entrant per thread: a thread that already holds a lease of this pool gets
//! the same connection again. A broken connection is never handed out again;
//! its slot gets a fresh one with the same index.

mod fork;
mod reentrancy;
#[cfg(test)]
mod tests;

use std::fmt;
use std::ops::Deref;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub use fork::fork_generation;

/// What the pool needs from the things it pools.
pub trait Manager: Send + Sync + 'static {
    type Conn: Send + Sync + 'static;
    type Error: Send + 'static;

    /// Creates the connection for slot `index`. Called without the pool lock.
    fn create(&self, index: usize) -> Result<Self::Conn, Self::Error>;

    /// A broken connection is discarded instead of going back to the pool.
    fn is_broken(&self, conn: &Self::Conn) -> bool;

    /// Closes a connection the pool no longer wants, returning how many of its
    /// messages were not delivered. `force` asks to drop pending work.
    fn close(&self, conn: Arc<Self::Conn>, force: bool) -> u64;

    /// Observes what happens inside the pool. Runs on the thread that caused
    /// the event, never with the pool lock held.
    fn on_event(&self, _event: PoolEvent) {}
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
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(5000);

impl Default for Options {
    fn default() -> Self {
        Options { size: DEFAULT_SIZE, timeout: DEFAULT_TIMEOUT }
    }
}

/// Why a checkout failed.
#[derive(Debug)]
pub enum CheckoutError<E> {
    /// No connection became free in time.
    Timeout { waited: Duration, available: usize, size: usize },
    /// The pool was closed.
    Closed,
    /// Creating the slot's connection failed; the slot stays empty.
    Create(E),
}

impl<E: fmt::Display> fmt::Display for CheckoutError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckoutError::Timeout { waited, available, size } => write!(
                f,
                "no producer available: waited {} ms, {}/{} available",
                waited.as_millis(),
                available,
                size
            ),
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
    state: Mutex<State<M::Conn>>,
    freed: Condvar,
    checkout_timeouts: AtomicU64,
    total_wait_ns: AtomicU64,
    creations: AtomicU64,
    replaced: AtomicU64,
    /// The process generation this pool's connections belong to.
    fork_generation: AtomicU64,
}

struct State<C> {
    slots: Box<[Slot<C>]>,
    /// Idle slots holding a connection; the last one returned goes out first.
    idle: Vec<usize>,
    /// Free slots without a connection: the next checkout creates one.
    empty: Vec<usize>,
    in_use: usize,
    waiting: usize,
    closed: Option<bool>,
    /// Bumped by reload: connections of an older generation are replaced.
    generation: u64,
}

struct Slot<C> {
    conn: Option<Arc<C>>,
    /// The thread holding this slot (see `reentrancy`), 0 when idle.
    owner: u64,
    depth: u32,
    /// Bumped on every fresh checkout, so a stale lease cannot check in twice.
    epoch: u64,
    generation: u64,
}

static NEXT_POOL_ID: AtomicU64 = AtomicU64::new(1);

impl<M: Manager> Pool<M> {
    /// Builds a pool. No connection is created until it is first needed.
    pub fn new(manager: M, options: Options) -> Self {
        assert!(options.size >= 1, "pool size must be at least 1");
        fork::install_handler();
        let slots = (0..options.size)
            .map(|_| Slot { conn: None, owner: 0, depth: 0, epoch: 0, generation: 0 })
            .collect();
        let state = State {
            slots,
            idle: Vec::with_capacity(options.size),
            // Reversed so that slot 0 is created first.
            empty: (0..options.size).rev().collect(),
            in_use: 0,
            waiting: 0,
            closed: None,
            generation: 0,
        };
        Pool {
            inner: Arc::new(Inner {
                id: NEXT_POOL_ID.fetch_add(1, Ordering::Relaxed),
                manager,
                options,
                state: Mutex::new(state),
                freed: Condvar::new(),
                checkout_timeouts: AtomicU64::new(0),
                total_wait_ns: AtomicU64::new(0),
                creations: AtomicU64::new(0),
                replaced: AtomicU64::new(0),
                fork_generation: AtomicU64::new(fork_generation()),
            }),
        }
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

    /// Checks a connection out, waiting at most `timeout` (the pool's default
    /// when `None`).
    pub fn checkout(&self, timeout: Option<Duration>) -> Result<Lease<M>, CheckoutError<M::Error>> {
        let inner = &self.inner;
        inner.check_fork();
        let me = reentrancy::thread_token();
        let mut state = inner.lock();
        if state.closed.is_some() {
            return Err(CheckoutError::Closed);
        }

        if let Some(index) = reentrancy::held_slot(inner.id) {
            let slot = &mut state.slots[index];
            if slot.owner == me && slot.depth > 0 {
                if let Some(conn) = slot.conn.clone() {
                    slot.depth += 1;
                    let epoch = slot.epoch;
                    return Ok(Lease { pool: Arc::clone(inner), index, epoch, conn: Some(conn) });
                }
            }
            reentrancy::forget(inner.id);
        }

        let timeout = timeout.unwrap_or(inner.options.timeout);
        let mut started: Option<Instant> = None;
        loop {
            if state.closed.is_some() {
                return Err(CheckoutError::Closed);
            }
            if let Some(index) = state.idle.pop() {
                let slot = &mut state.slots[index];
                let conn = slot.conn.clone().expect("an idle slot holds a connection");
                if inner.manager.is_broken(&conn) {
                    let broken = slot.conn.take();
                    state.empty.push(index);
                    drop(state);
                    inner.discard_broken(index, broken);
                    state = inner.lock();
                    continue;
                }
                let epoch = state.take_slot(index, me);
                inner.account_wait(started);
                reentrancy::hold(inner.id, index);
                return Ok(Lease { pool: Arc::clone(inner), index, epoch, conn: Some(conn) });
            }
            if let Some(index) = state.empty.pop() {
                let epoch = state.take_slot(index, me);
                let generation = state.generation;
                drop(state);
                inner.account_wait(started);
                // A panicking `create` must give its reserved slot back.
                let created = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    inner.manager.create(index)
                }));
                let created = created.unwrap_or_else(|panic| {
                    let mut state = inner.lock();
                    state.release_slot(index);
                    state.empty.push(index);
                    inner.unlock_and_wake(state);
                    std::panic::resume_unwind(panic)
                });
                return match created {
                    Ok(conn) => {
                        inner.creations.fetch_add(1, Ordering::Relaxed);
                        let conn = Arc::new(conn);
                        let mut state = inner.lock();
                        let slot = &mut state.slots[index];
                        slot.conn = Some(Arc::clone(&conn));
                        slot.generation = generation;
                        drop(state);
                        reentrancy::hold(inner.id, index);
                        Ok(Lease { pool: Arc::clone(inner), index, epoch, conn: Some(conn) })
                    }
                    Err(e) => {
                        let mut state = inner.lock();
                        state.release_slot(index);
                        state.empty.push(index);
                        inner.unlock_and_wake(state);
                        Err(CheckoutError::Create(e))
                    }
                };
            }
            let now = Instant::now();
            let start = *started.get_or_insert(now);
            let waited = now - start;
            if waited >= timeout {
                inner.account_wait(started);
                inner.checkout_timeouts.fetch_add(1, Ordering::Relaxed);
                let size = inner.options.size;
                let available = state.idle.len() + state.empty.len();
                drop(state);
                inner.manager.on_event(PoolEvent::CheckoutTimeout { waited, available, size });
                return Err(CheckoutError::Timeout { waited, available, size });
            }
            state.waiting += 1;
            state = inner.freed.wait_timeout(state, timeout - waited).unwrap_or_else(|e| e.into_inner()).0;
            state.waiting -= 1;
        }
    }

    /// Runs `f` with a checked-out connection; it goes back to the pool
    /// whatever `f` does, including panicking.
    pub fn with<T>(
        &self,
        timeout: Option<Duration>,
        f: impl FnOnce(&M::Conn) -> T,
    ) -> Result<T, CheckoutError<M::Error>> {
        let lease = self.checkout(timeout)?;
        Ok(f(&lease))
    }

    /// Closes the pool. Idle connections are closed now, in parallel; checked
    /// out ones when they come back. Closing twice is harmless: the second
    /// call reports nothing.
    pub fn close(&self, force: bool) -> CloseReport {
        self.inner.check_fork();
        let mut state = self.inner.lock();
        if state.closed.is_some() {
            return CloseReport::default();
        }
        state.closed = Some(force);
        let conns = state.take_idle();
        let in_use = state.in_use;
        drop(state);
        self.inner.freed.notify_all();
        let closed = conns.len();
        let undelivered = self.inner.close_all(conns, force);
        CloseReport { closed, undelivered, in_use }
    }

    pub fn is_closed(&self) -> bool {
        self.inner.lock().closed.is_some()
    }

    /// Closes idle connections (gracefully) so that they are recreated on
    /// demand; checked-out ones are replaced when they come back. Returns the
    /// number of undelivered messages of the connections closed now.
    pub fn reload(&self) -> u64 {
        self.inner.check_fork();
        let mut state = self.inner.lock();
        if state.closed.is_some() {
            return 0;
        }
        state.generation += 1;
        let conns = state.take_idle();
        drop(state);
        self.inner.freed.notify_all();
        self.inner.close_all(conns, false)
    }

    pub fn stats(&self) -> Stats {
        let inner = &self.inner;
        inner.check_fork();
        let state = inner.lock();
        Stats {
            size: inner.options.size,
            created: state.slots.iter().filter(|s| s.conn.is_some()).count(),
            idle: state.idle.len(),
            in_use: state.in_use,
            waiting: state.waiting,
            checkout_timeouts: inner.checkout_timeouts.load(Ordering::Relaxed),
            total_wait: Duration::from_nanos(inner.total_wait_ns.load(Ordering::Relaxed)),
            creations: inner.creations.load(Ordering::Relaxed),
            replaced: inner.replaced.load(Ordering::Relaxed),
            closed: state.closed.is_some(),
        }
    }
}

impl<M: Manager> Inner<M> {
    fn check_fork(&self) {
        if fork_generation() != self.fork_generation.load(Ordering::Acquire) {
            self.abandon_after_fork();
        }
    }

    /// In a forked child: forget the parent's connections without destroying
    /// them (their librdkafka threads do not exist here), and start afresh.
    /// The check and the reset happen under the state lock, so no other
    /// checkout can see the parent's connections in between.
    fn abandon_after_fork(&self) {
        let mut state = self.lock();
        let current = fork_generation();
        if self.fork_generation.load(Ordering::Acquire) == current {
            return;
        }
        state.generation += 1;
        for slot in state.slots.iter_mut() {
            if let Some(conn) = slot.conn.take() {
                std::mem::forget(conn);
            }
            slot.owner = 0;
            slot.depth = 0;
            slot.epoch += 1;
        }
        state.idle.clear();
        state.empty = (0..self.options.size).rev().collect();
        state.in_use = 0;
        state.waiting = 0;
        self.fork_generation.store(current, Ordering::Release);
        drop(state);
        self.manager.on_event(PoolEvent::ForkReload { begin: true });
        self.manager.on_event(PoolEvent::ForkReload { begin: false });
    }

    fn lock(&self) -> MutexGuard<'_, State<M::Conn>> {
        // The state is kept consistent at every unlock, so a panic elsewhere
        // while holding the lock does not make it unusable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Unlocks, then wakes one waiter if there is one. Waiters register
    /// under the lock, so none is missed; skipping the wake when nobody
    /// waits saves a futex system call on every uncontended checkin.
    fn unlock_and_wake(&self, state: MutexGuard<'_, State<M::Conn>>) {
        let waiting = state.waiting > 0;
        drop(state);
        if waiting {
            self.freed.notify_one();
        }
    }

    fn account_wait(&self, started: Option<Instant>) {
        if let Some(started) = started {
            let ns = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
            self.total_wait_ns.fetch_add(ns, Ordering::Relaxed);
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

    fn checkin(&self, index: usize, epoch: u64, conn: Arc<M::Conn>) {
        self.check_fork();
        let mut state = self.lock();
        let slot = &mut state.slots[index];
        if slot.epoch != epoch || slot.depth == 0 {
            // A lease from before a fork (or a reset): nothing to return.
            return;
        }
        slot.depth -= 1;
        if slot.depth > 0 {
            return;
        }
        if slot.owner == reentrancy::thread_token() {
            reentrancy::forget(self.id);
        }
        state.release_slot(index);
        let closed = state.closed;
        let broken = self.manager.is_broken(&conn);
        let stale = state.slots[index].generation != state.generation;
        if closed.is_none() && !broken && !stale {
            state.idle.push(index);
            self.unlock_and_wake(state);
            return;
        }
        let conn = state.slots[index].conn.take();
        if closed.is_none() {
            state.empty.push(index);
        }
        self.unlock_and_wake(state);
        if broken {
            self.discard_broken(index, conn);
        } else if let Some(conn) = conn {
            self.manager.close(conn, closed.unwrap_or(false));
        }
    }
}

impl<C> State<C> {
    /// Marks a free slot as checked out by thread `me`; returns its epoch.
    fn take_slot(&mut self, index: usize, me: u64) -> u64 {
        self.in_use += 1;
        let slot = &mut self.slots[index];
        slot.owner = me;
        slot.depth = 1;
        slot.epoch += 1;
        slot.epoch
    }

    fn release_slot(&mut self, index: usize) {
        self.in_use -= 1;
        let slot = &mut self.slots[index];
        slot.owner = 0;
        slot.depth = 0;
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

/// A checked-out connection. Dropping it returns the connection to the pool.
pub struct Lease<M: Manager> {
    pool: Arc<Inner<M>>,
    index: usize,
    epoch: u64,
    conn: Option<Arc<M::Conn>>,
}

impl<M: Manager> Lease<M> {
    /// The slot's zero-based index.
    pub fn index(&self) -> usize {
        self.index
    }

    /// A shared reference to the connection, for work that may outlive the
    /// lease's borrow (the connection itself stays usable).
    pub fn conn(&self) -> &Arc<M::Conn> {
        self.conn.as_ref().expect("a live lease holds its connection")
    }

    pub fn pool_id(&self) -> u64 {
        self.pool.id
    }
}

impl<M: Manager> Deref for Lease<M> {
    type Target = M::Conn;
    fn deref(&self) -> &M::Conn {
        self.conn()
    }
}

impl<M: Manager> Drop for Lease<M> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            self.pool.checkin(self.index, self.epoch, conn);
        }
    }
}
