//! Handles that C may keep past their validity. A handle is not a pointer
//! but a token, disguised as one and never dereferenced:
//!
//! ```text
//!   bits 63..21  generation (43 bits)   bits 20..17  kind   bits 16..0  cell + 1
//! ```
//!
//! Cells live in chunks that are never freed, so looking up any token is
//! safe. The kind tag refuses a handle of the wrong kind (a config handle
//! passed as a producer) with WDPOOL_INVALID_ARGUMENT; a cell's generation
//! changes each time it is reused, so a stale token fails with
//! WDPOOL_STALE_HANDLE instead of reaching another object (2^43 reuses of
//! one cell would be needed to wrap). Kinds that belong to one process
//! (producers, configs) also go stale in a forked child.
//!
//! Fork safety: a cell's lock and the free list's lock are spin locks that
//! record the fork generation of the process holding them. A thread of the
//! parent that held one at `fork()` does not exist in the child, so the
//! child takes such a lock over instead of waiting for ever; the critical
//! sections are a few instructions (clone an `Arc`, store a value) and the
//! free list never reallocates, so what the child finds is consistent.

use std::cell::{Cell as StdCell, UnsafeCell};
use std::ptr;
use std::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, Ordering};

use crate::error::{Error, ErrorKind, Result};
use crate::pool::fork_generation;

pub(crate) const INDEX_BITS: u32 = 17;
pub(crate) const KIND_BITS: u32 = 4;
pub(crate) const GENERATION_SHIFT: u32 = INDEX_BITS + KIND_BITS;
pub(crate) const INDEX_MASK: u64 = (1 << INDEX_BITS) - 1;
pub(crate) const KIND_MASK: u64 = (1 << KIND_BITS) - 1;
/// Generations wrap at 2^43.
const GENERATION_MASK: u64 = (1 << (64 - GENERATION_SHIFT)) - 1;

const CHUNK_SIZE: usize = 256;
/// At most 2^17 - 1 live handles of each kind.
const CHUNKS: usize = (INDEX_MASK as usize) / CHUNK_SIZE + 1;

#[cfg(not(target_pointer_width = "64"))]
compile_error!("wdpool's handle tokens need 64-bit pointers");

/// The kinds of handle, each with its own tag (never 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Producer = 1,
    Config = 2,
    Pool = 3,
    Delivery = 4,
    MockCluster = 5,
    /// A producer handle lent to a callback (`super::frames`): not in a
    /// registry, but a producer handle to the user.
    ProducerFrame = 6,
    ReportQueue = 7,
    ReportSlots = 8,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Producer => "producer",
            Kind::Config => "config",
            Kind::Pool => "pool",
            Kind::Delivery => "delivery",
            Kind::MockCluster => "mock cluster",
            Kind::ProducerFrame => "producer",
            Kind::ReportQueue => "report queue",
            Kind::ReportSlots => "report slots",
        }
    }

    fn from_tag(tag: u64) -> Option<Kind> {
        [Kind::Producer, Kind::Config, Kind::Pool, Kind::Delivery, Kind::MockCluster, Kind::ProducerFrame, Kind::ReportQueue, Kind::ReportSlots]
            .into_iter()
            .find(|k| *k as u64 == tag)
    }

    /// Handles of this kind are meaningless in a forked child.
    fn per_process(self) -> bool {
        matches!(self, Kind::Producer | Kind::Config | Kind::ProducerFrame | Kind::ReportQueue | Kind::ReportSlots)
    }
}

/// Each thread keeps the last cell it freed of each kind, so that the
/// common pattern (a callback's handle made and dropped on one thread) does
/// not go through the shared free list. A thread that ends gives its cells
/// back.
struct Stash([StdCell<Option<Stashed>>; KINDS]);

/// A free cell, and the free list of the registry it belongs to.
type Stashed = (u32, &'static FreeList);

const KINDS: usize = 9;

impl Drop for Stash {
    fn drop(&mut self) {
        for slot in &self.0 {
            if let Some((index, free)) = slot.take() {
                free.push(index);
            }
        }
    }
}

thread_local! {
    static STASH: Stash = const { Stash([const { StdCell::new(None) }; KINDS]) };
}

/// A spin lock a forked child can take over (see the module's doc): it
/// holds 0 when free, else the fork generation (plus one) of the process
/// whose thread holds it.
struct ForkSafeLock {
    word: AtomicU64,
}

impl ForkSafeLock {
    const fn new() -> Self {
        ForkSafeLock { word: AtomicU64::new(0) }
    }

    /// Runs `f` holding the lock (released even if `f` panics).
    #[inline(always)]
    fn locked<R>(&self, f: impl FnOnce() -> R) -> R {
        struct Unlock<'a>(&'a AtomicU64);
        impl Drop for Unlock<'_> {
            #[inline(always)]
            fn drop(&mut self) {
                self.0.store(0, Ordering::Release);
            }
        }
        let me = fork_generation().wrapping_add(1);
        if self.word.compare_exchange_weak(0, me, Ordering::Acquire, Ordering::Relaxed).is_err() {
            self.lock_contended(me);
        }
        let _unlock = Unlock(&self.word);
        f()
    }

    /// `locked`'s wait: held by another thread, or by a thread of the
    /// process this one was forked from (taken over).
    #[cold]
    #[inline(never)]
    fn lock_contended(&self, me: u64) {
        let mut spins = 0u32;
        loop {
            match self.word.compare_exchange_weak(0, me, Ordering::Acquire, Ordering::Relaxed) {
                Ok(_) => return,
                Err(0) => {}
                // Held by a thread of the process this one was forked from:
                // it will never let go here.
                Err(held) if held != me => {
                    if self.word.compare_exchange(held, me, Ordering::Acquire, Ordering::Relaxed).is_ok() {
                        return;
                    }
                }
                Err(_) if spins < 100 => {
                    spins += 1;
                    std::hint::spin_loop();
                }
                Err(_) => std::thread::yield_now(),
            }
        }
    }
}

/// The cells free for reuse. Its vector is allocated once, for every cell
/// there can be, and never reallocated.
pub(crate) struct FreeList {
    lock: ForkSafeLock,
    items: UnsafeCell<Vec<u32>>,
}

// SAFETY: `items` is only touched under `lock`.
unsafe impl Sync for FreeList {}

impl FreeList {
    pub(crate) const fn new() -> Self {
        FreeList { lock: ForkSafeLock::new(), items: UnsafeCell::new(Vec::new()) }
    }

    pub(crate) fn push(&self, index: u32) {
        self.lock.locked(|| {
            // SAFETY: under the lock.
            let items = unsafe { &mut *self.items.get() };
            if items.capacity() == 0 {
                items.reserve_exact(INDEX_MASK as usize);
            }
            items.push(index);
        })
    }

    pub(crate) fn pop(&self) -> Option<u32> {
        // SAFETY: under the lock.
        self.lock.locked(|| unsafe { &mut *self.items.get() }.pop())
    }
}

struct Cell<T> {
    lock: ForkSafeLock,
    state: UnsafeCell<(u64, Option<T>)>,
    /// The fork generation the value was stored in; read without the lock.
    stored_in: AtomicU64,
    /// For lock-free readers (`live_ptr`): the generation of the value held
    /// now with `OCCUPIED` set, 0 when empty; written under the lock.
    live: AtomicU64,
    /// What `insert_arc` published with the value (the `Arc`'s pointee).
    ptr: AtomicPtr<()>,
}

const OCCUPIED: u64 = 1 << 63;

impl<T> Cell<T> {
    fn locked<R>(&self, f: impl FnOnce(&mut (u64, Option<T>)) -> R) -> R {
        // SAFETY: `state` is only touched under `lock`.
        self.lock.locked(|| f(unsafe { &mut *self.state.get() }))
    }
}

pub(crate) struct Registry<T> {
    chunks: [AtomicPtr<Cell<T>>; CHUNKS],
    next: AtomicU32,
    free: FreeList,
    kind: Kind,
}

// SAFETY: cells are only touched under their locks; values move between
// threads, so they must be `Send`.
unsafe impl<T: Send> Sync for Registry<T> {}

impl<T> Registry<T> {
    pub(crate) const fn new(kind: Kind) -> Self {
        Registry {
            chunks: [const { AtomicPtr::new(ptr::null_mut()) }; CHUNKS],
            next: AtomicU32::new(0),
            free: FreeList::new(),
            kind,
        }
    }

    fn cell(&self, index: u32) -> Option<&Cell<T>> {
        let (chunk, offset) = (index as usize / CHUNK_SIZE, index as usize % CHUNK_SIZE);
        let base = self.chunks.get(chunk)?.load(Ordering::Acquire);
        // SAFETY: chunks are arrays of CHUNK_SIZE cells, published once and
        // never freed, and `offset < CHUNK_SIZE`.
        (!base.is_null()).then(|| unsafe { &*base.add(offset) })
    }

    fn cell_or_alloc(&self, index: u32) -> Result<&Cell<T>> {
        let chunk = index as usize / CHUNK_SIZE;
        let slot = self.chunks.get(chunk).filter(|_| u64::from(index) < INDEX_MASK).ok_or_else(|| {
            Error::new(ErrorKind::InvalidArgument, format!("too many live {} handles (at most {INDEX_MASK})", self.kind.name()))
        })?;
        if slot.load(Ordering::Acquire).is_null() {
            let cells: Box<[Cell<T>]> = (0..CHUNK_SIZE)
                .map(|_| Cell {
                    lock: ForkSafeLock::new(),
                    state: UnsafeCell::new((0, None)),
                    stored_in: AtomicU64::new(0),
                    live: AtomicU64::new(0),
                    ptr: AtomicPtr::new(ptr::null_mut()),
                })
                .collect();
            let fresh = Box::into_raw(cells) as *mut Cell<T>;
            if slot.compare_exchange(ptr::null_mut(), fresh, Ordering::AcqRel, Ordering::Acquire).is_err() {
                // SAFETY: we just made it and lost the race to publish it;
                // nobody else has seen it.
                drop(unsafe { Box::from_raw(ptr::slice_from_raw_parts_mut(fresh, CHUNK_SIZE)) });
            }
        }
        Ok(self.cell(index).expect("chunk published"))
    }

    fn token(&self, index: u32, generation: u64) -> usize {
        let token = ((generation & GENERATION_MASK) << GENERATION_SHIFT)
            | ((self.kind as u64) << INDEX_BITS)
            | (u64::from(index) + 1);
        token as usize
    }

    /// The cell index and generation of a token of this registry's kind.
    #[inline]
    fn decode(&self, token: usize) -> Result<(u32, u64)> {
        let token = token as u64;
        let tag = (token >> INDEX_BITS) & KIND_MASK;
        let index = token & INDEX_MASK;
        if tag != self.kind as u64 || index == 0 {
            return Err(self.not_mine(tag, index));
        }
        Ok(((index - 1) as u32, token >> GENERATION_SHIFT))
    }

    #[cold]
    #[inline(never)]
    fn not_mine(&self, tag: u64, index: u64) -> Error {
        let what = match Kind::from_tag(tag) {
            Some(other) if index != 0 => format!("a {} handle", other.name()),
            _ => "a value that is no wdpool handle".to_owned(),
        };
        Error::new(ErrorKind::InvalidArgument, format!("expected a {} handle, got {what}", self.kind.name()))
    }

    /// A free cell: this thread's stashed one, the shared free list's, or
    /// a new one.
    fn take_free(&'static self) -> u32 {
        let stashed = STASH.try_with(|s| s.0[self.kind as usize].take()).ok().flatten();
        match stashed {
            Some((index, free)) if std::ptr::eq(free, &self.free) => return index,
            // Another registry of the same kind (tests): give it back.
            Some((index, free)) => free.push(index),
            None => {}
        }
        self.free.pop().unwrap_or_else(|| self.next.fetch_add(1, Ordering::Relaxed))
    }

    fn give_back(&'static self, index: u32) {
        let kept = STASH
            .try_with(|s| {
                let slot = &s.0[self.kind as usize];
                match slot.take() {
                    None => {
                        slot.set(Some((index, &self.free)));
                        true
                    }
                    other => {
                        slot.set(other);
                        false
                    }
                }
            })
            .unwrap_or(false);
        if !kept {
            self.free.push(index);
        }
    }

    /// Stores `value`; returns its token (never 0).
    pub(crate) fn insert(&'static self, value: T) -> Result<usize> {
        self.insert_publishing(value, ptr::null_mut())
    }

    /// Inserts `value`, publishing `published` for `live_ptr` readers.
    #[inline]
    fn insert_publishing(&'static self, value: T, published: *mut ()) -> Result<usize> {
        let index = self.take_free();
        let cell = self.cell_or_alloc(index)?;
        let generation = cell.locked(|state| {
            state.1 = Some(value);
            cell.stored_in.store(fork_generation(), Ordering::Release);
            cell.ptr.store(published, Ordering::Release);
            cell.live.store((state.0 & GENERATION_MASK) | OCCUPIED, Ordering::Release);
            state.0
        });
        Ok(self.token(index, generation))
    }

    /// The pointer published with the value of `token` (see `insert_arc`),
    /// if `token` is live now; read without the lock. The caller keeps the
    /// value from being dropped by other means (`super::pins`): a value
    /// removed after this returns is not noticed here.
    #[inline(always)]
    pub(crate) fn live_ptr(&self, token: usize) -> Result<*mut ()> {
        let (index, generation) = self.decode(token)?;
        let cell = self.cell(index).ok_or_else(|| self.stale("it was never issued"))?;
        if self.kind.per_process() && cell.stored_in.load(Ordering::Acquire) != fork_generation() {
            return Err(self.stale(MADE_BEFORE_FORK));
        }
        let want = generation | OCCUPIED;
        // Sequentially consistent: paired with the hazard a pinning reader
        // publishes before (see `super::pins`).
        if cell.live.load(Ordering::SeqCst) != want {
            return Err(self.gone());
        }
        let published = cell.ptr.load(Ordering::Acquire);
        // Still `token`'s value: the pointer read belongs to it (a reuse of
        // the cell stores its pointer only after this generation ended).
        if cell.live.load(Ordering::Acquire) != want {
            return Err(self.gone());
        }
        Ok(published)
    }

    #[cold]
    fn stale(&self, why: &str) -> Error {
        stale(self.kind, why)
    }

    #[inline]
    fn live_cell(&self, token: usize) -> Result<(u32, &Cell<T>, u64)> {
        let (index, generation) = self.decode(token)?;
        let cell = self.cell(index).ok_or_else(|| self.stale("it was never issued"))?;
        if self.kind.per_process() && cell.stored_in.load(Ordering::Acquire) != fork_generation() {
            return Err(self.stale(MADE_BEFORE_FORK));
        }
        Ok((index, cell, generation))
    }

    #[cold]
    fn gone(&self) -> Error {
        self.stale(match self.kind {
            Kind::Producer => "its callback returned or it was checked in",
            Kind::Config => "its configure callback returned",
            _ => "it was freed",
        })
    }

    /// Runs `f` on the live value behind `token`, under its cell's lock
    /// (keep `f` short).
    pub(crate) fn with<R>(&self, token: usize, f: impl FnOnce(&mut T) -> R) -> Result<R> {
        let (_, cell, generation) = self.live_cell(token)?;
        cell.locked(|state| match state {
            (g, Some(value)) if *g & GENERATION_MASK == generation => Ok(f(value)),
            _ => Err(self.gone()),
        })
    }

    /// Takes the value out when `take` allows it; the token is stale from
    /// then on.
    #[inline]
    pub(crate) fn remove_if(&'static self, token: usize, take: impl FnOnce(&T) -> Result<()>) -> Result<T> {
        let (index, cell, generation) = self.live_cell(token)?;
        let value = cell.locked(|state| {
            match &*state {
                (g, Some(value)) if *g & GENERATION_MASK == generation => take(value)?,
                _ => return Err(self.gone()),
            }
            // Sequentially consistent where lock-free readers pin values
            // (pools: see `super::pins`); a plain store elsewhere.
            let order = if self.kind == Kind::Pool { Ordering::SeqCst } else { Ordering::Release };
            cell.live.store(0, order);
            let value = state.1.take().expect("checked above");
            state.0 = state.0.wrapping_add(1);
            Ok(value)
        })?;
        self.give_back(index);
        Ok(value)
    }

    pub(crate) fn remove(&'static self, token: usize) -> Result<T> {
        self.remove_if(token, |_| Ok(()))
    }
}

/// Removes a registered value when dropped: a callback's handle goes stale
/// however the callback ends.
impl<U: Send + Sync> Registry<std::sync::Arc<U>> {
    /// Inserts an `Arc`, publishing its pointee for `live_ptr` readers.
    pub(crate) fn insert_arc(&'static self, value: std::sync::Arc<U>) -> Result<usize> {
        let published = std::sync::Arc::as_ptr(&value).cast_mut().cast();
        self.insert_publishing(value, published)
    }
}

/// STALE_HANDLE for a handle of `kind`, saying why.
pub(crate) fn stale(kind: Kind, why: &str) -> Error {
    Error::new(ErrorKind::StaleHandle, format!("the {} handle is no longer valid: {why}", kind.name()))
}

/// The message for a handle made before fork().
pub(crate) const MADE_BEFORE_FORK: &str = "it was made before fork(); the child gets producers of its own";

pub(crate) struct Registered<T: 'static> {
    registry: &'static Registry<T>,
    pub(crate) token: usize,
}

impl<T> Registered<T> {
    pub(crate) fn new(registry: &'static Registry<T>, value: T) -> Result<Self> {
        Ok(Registered { registry, token: registry.insert(value)? })
    }

    /// Ends the registration, returning the value.
    pub(crate) fn take(self) -> Option<T> {
        let token = self.token;
        let registry = self.registry;
        std::mem::forget(self);
        registry.remove(token).ok()
    }
}

impl<T> Drop for Registered<T> {
    fn drop(&mut self) {
        let _ = self.registry.remove(self.token);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static R: Registry<u32> = Registry::new(Kind::Producer);
    static OTHER: Registry<u32> = Registry::new(Kind::Config);

    #[test]
    fn stale_tokens_are_refused_even_after_reuse() {
        let a = R.insert(1).unwrap();
        assert_eq!(R.with(a, |v| *v).unwrap(), 1);
        assert_eq!(R.remove(a).unwrap(), 1);
        assert_eq!(R.with(a, |v| *v).unwrap_err().kind, ErrorKind::StaleHandle);
        let b = R.insert(2).unwrap();
        assert_ne!(a, b, "a reused cell gets a new generation");
        assert_eq!(R.with(a, |v| *v).unwrap_err().kind, ErrorKind::StaleHandle);
        assert_eq!(R.with(b, |v| *v).unwrap(), 2);
        assert!(R.remove(a).is_err());
        assert_eq!(R.remove(b).unwrap(), 2);
    }

    #[test]
    fn garbage_and_wrong_kinds_are_invalid_arguments() {
        for token in [0usize, 1, 0xdead_beef, usize::MAX] {
            let e = R.with(token, |_| ()).unwrap_err();
            assert_eq!(e.kind, ErrorKind::InvalidArgument, "{token:#x}: {e}");
        }
        let config = OTHER.insert(7).unwrap();
        let e = R.with(config, |_| ()).unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidArgument);
        assert!(e.message.contains("expected a producer handle, got a config handle"), "{e}");
        assert_eq!(OTHER.remove(config).unwrap(), 7);
    }

    #[test]
    fn the_generation_has_43_bits_and_wraps_only_there() {
        assert_eq!(64 - GENERATION_SHIFT, 43);
        let index = 5;
        let old = R.token(index, GENERATION_MASK - 1);
        let new = R.token(index, GENERATION_MASK);
        assert_ne!(old, new);
        assert_eq!(R.decode(new).unwrap(), (index, GENERATION_MASK));
        assert_eq!(R.token(index, GENERATION_MASK + 1), R.token(index, 0), "wraps at 2^43");
    }

    #[test]
    fn a_lock_held_in_the_process_a_child_was_forked_from_is_taken_over() {
        let lock = ForkSafeLock::new();
        assert_eq!(lock.locked(|| 7), 7);
        assert_eq!(lock.word.load(Ordering::Relaxed), 0, "released");
        // As a child sees a lock a parent's thread held at fork().
        lock.word.store(fork_generation().wrapping_add(2), Ordering::Relaxed);
        assert_eq!(lock.locked(|| 8), 8, "taken over, not waited for");
        assert_eq!(lock.word.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn many_handles_span_chunks() {
        let tokens: Vec<_> = (0..1000).map(|i| R.insert(i).unwrap()).collect();
        for (i, t) in tokens.iter().enumerate() {
            assert_eq!(R.with(*t, |v| *v).unwrap(), i as u32);
        }
        for t in tokens {
            R.remove(t).unwrap();
        }
    }
}
