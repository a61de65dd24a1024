//! Producer handles lent to callbacks, without a registry round trip.
//!
//! A `wdpool_pool_with` callback gets a producer handle that goes stale when
//! the callback returns. Registering it in the producer registry costs two
//! locked critical sections per callback and one more per call made with
//! it; this module makes the common case free of atomic read-modify-writes:
//!
//! - Each thread owns a record of `DEPTH` frames, one per nesting level of
//!   callbacks running on it. Entering a callback fills the next frame and
//!   publishes it with a release store; leaving it marks the frame dead.
//! - The handle is a token naming the record, the frame and the frame's
//!   generation (odd while live). The callback's own thread resolves it
//!   with plain loads: only that thread writes its frames, and the frame
//!   cannot end while the thread is inside a call made from the callback.
//! - Another thread using the handle (allowed: the handle is valid until the
//!   callback returns) pins the frame, checks it is still the live frame of
//!   the token, and takes a counted reference to the producer. The owner,
//!   leaving the frame, marks it dead and waits for the pins to drain (a
//!   pin lasts a few instructions). Either the reader sees the frame dead
//!   or the owner sees the pin: see `Sharing` for how the owner's side
//!   stays free of a sequentially consistent store until some other thread
//!   uses a handle of the frame.
//!
//! Deeper nesting than `DEPTH` levels falls back to the registry. Records
//! belong to threads while they live and are reused afterwards; their
//! generations never go back, so a handle of a thread that ended stays
//! stale. In a forked child every frame is stale (the fork generation is
//! part of the check), as registry producer handles are.

use std::cell::Cell;
use std::mem::ManuallyDrop;
use std::ptr;
use std::sync::atomic::{fence as full_fence, AtomicPtr, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;

use super::fence;
use super::registry::{stale, FreeList, Kind, GENERATION_SHIFT, INDEX_BITS, INDEX_MASK, KIND_MASK, MADE_BEFORE_FORK};
use crate::error::{Error, ErrorKind, Result};
use crate::kafka::Producer;
use crate::pool::{fork_generation, OwnerId};

/// Nesting levels of callbacks per thread served here.
const DEPTH: usize = 16;
const DEPTH_BITS: u32 = 4;
const _: () = assert!(1 << DEPTH_BITS == DEPTH);
/// A frame's generation in a token (the token's top bits).
const GENERATION_BITS: u32 = 64 - GENERATION_SHIFT - DEPTH_BITS;
const GENERATION_MASK: u64 = (1 << GENERATION_BITS) - 1;
const RECORDS_PER_CHUNK: usize = 64;
const CHUNKS: usize = (INDEX_MASK as usize + 1) / RECORDS_PER_CHUNK;

/// Whether other threads use this frame's handles (`Frame::sharing`).
///
/// Leaving a frame is a Dekker pair with a pin: the owner stores "dead" and
/// then loads the pin count; a pinner adds its pin and then loads the
/// state. Until some other thread pins the frame, the owner uses a plain
/// store and a compiler fence, and the pinner pays with `fence::heavy` (a
/// barrier on every running thread). The first pinner also moves the frame
/// to `STRICT` for good, through `SWITCHING` and a heavy barrier; from then
/// on the owner uses a sequentially consistent fence and pinners need no
/// heavy barrier.
///
/// Why a pinner that finds `STRICT` may skip the heavy barrier: the switch's
/// barrier ran on the owner's thread at some point P. The owner loads the
/// sharing mode after its "dead" store. If that load is after P, it sees
/// (at least) `SWITCHING` and takes the fence. If it is before P, so is the
/// store, which P made visible to every thread before the switch finished,
/// and so before this pinner, which saw the switch finished, loads the state.
mod sharing {
    pub(super) const PRIVATE: u8 = 0;
    pub(super) const SWITCHING: u8 = 1;
    pub(super) const STRICT: u8 = 2;
}

struct Frame {
    /// The frame's generation: odd while live, even after. Written only by
    /// the record's thread.
    state: AtomicU64,
    /// Other threads resolving a handle of this frame right now.
    pins: AtomicU32,
    /// `sharing::*`: never goes back (see there).
    sharing: AtomicU8,
    producer: AtomicPtr<Producer>,
    owner_kind: AtomicU64,
    owner_value: AtomicU64,
    /// The process generation the frame was made in.
    fork: AtomicU64,
}

impl Frame {
    const fn new() -> Self {
        Frame {
            state: AtomicU64::new(0),
            pins: AtomicU32::new(0),
            sharing: AtomicU8::new(sharing::PRIVATE),
            producer: AtomicPtr::new(ptr::null_mut()),
            owner_kind: AtomicU64::new(0),
            owner_value: AtomicU64::new(0),
            fork: AtomicU64::new(0),
        }
    }

    fn owner(&self) -> OwnerId {
        let value = self.owner_value.load(Ordering::Relaxed);
        match self.owner_kind.load(Ordering::Relaxed) {
            0 => OwnerId::Thread(value),
            1 => OwnerId::Key(value),
            _ => OwnerId::Unique(value),
        }
    }

    fn set_owner(&self, owner: OwnerId) {
        let (kind, value) = match owner {
            OwnerId::Thread(v) => (0, v),
            OwnerId::Key(v) => (1, v),
            OwnerId::Unique(v) => (2, v),
        };
        self.owner_kind.store(kind, Ordering::Relaxed);
        self.owner_value.store(value, Ordering::Relaxed);
    }
}

struct Record {
    frames: [Frame; DEPTH],
    /// Pool handles this thread is using without a reference count
    /// (`super::pins`), one per nesting level; 0 when unused.
    hazards: [AtomicU64; DEPTH],
    /// Hazards in use (only the record's thread touches it).
    hazard_depth: AtomicUsize,
    /// Frames in use (only the record's thread touches it).
    frame_depth: AtomicUsize,
}

static CHUNK_TABLE: [AtomicPtr<Record>; CHUNKS] = [const { AtomicPtr::new(ptr::null_mut()) }; CHUNKS];
static NEXT_RECORD: AtomicU32 = AtomicU32::new(0);
/// Records of threads that ended, to reuse (a lock a forked child can take
/// over, like the registries').
static FREE_RECORDS: FreeList = FreeList::new();

/// The calling thread's record; given back when the thread ends.
struct Mine {
    index: Cell<Option<u32>>,
}

impl Drop for Mine {
    fn drop(&mut self) {
        if let Some(index) = self.index.get() {
            FREE_RECORDS.push(index);
        }
    }
}

thread_local! {
    static MINE: Mine = const { Mine { index: Cell::new(None) } };
}

#[inline]
fn record(index: u32) -> Option<&'static Record> {
    let (chunk, offset) = (index as usize / RECORDS_PER_CHUNK, index as usize % RECORDS_PER_CHUNK);
    let base = CHUNK_TABLE.get(chunk)?.load(Ordering::Acquire);
    // SAFETY: a published chunk holds RECORDS_PER_CHUNK records and is never
    // freed.
    (!base.is_null()).then(|| unsafe { &*base.add(offset) })
}

/// A record for a thread that has none yet, or None when every index is in
/// use (the caller falls back to the registry).
fn new_record() -> Option<u32> {
    let reused = FREE_RECORDS.pop();
    let index = match reused {
        Some(index) => index,
        None => {
            let index = NEXT_RECORD.fetch_add(1, Ordering::Relaxed);
            if u64::from(index) >= INDEX_MASK {
                return None;
            }
            index
        }
    };
    let slot = &CHUNK_TABLE[index as usize / RECORDS_PER_CHUNK];
    if slot.load(Ordering::Acquire).is_null() {
        let records: Box<[Record]> =
            (0..RECORDS_PER_CHUNK)
                .map(|_| Record {
                    frames: [const { Frame::new() }; DEPTH],
                    hazards: [const { AtomicU64::new(0) }; DEPTH],
                    hazard_depth: AtomicUsize::new(0),
                    frame_depth: AtomicUsize::new(0),
                })
                .collect();
        let fresh = Box::into_raw(records) as *mut Record;
        if slot.compare_exchange(ptr::null_mut(), fresh, Ordering::AcqRel, Ordering::Acquire).is_err() {
            // SAFETY: ours, never published.
            drop(unsafe { Box::from_raw(ptr::slice_from_raw_parts_mut(fresh, RECORDS_PER_CHUNK)) });
        }
    }
    Some(index)
}

/// The calling thread's record, made on first use; None when every record
/// is in use.
#[inline]
fn my_record(mine: &Mine) -> Option<(u32, &'static Record)> {
    let index = match mine.index.get() {
        Some(index) => index,
        None => return first_record(mine),
    };
    Some((index, record(index)?))
}

/// `my_record` on the thread's first use: a record of its own, its depths
/// at 0 (a thread that ended inside a callback may have left them higher).
#[cold]
fn first_record(mine: &Mine) -> Option<(u32, &'static Record)> {
    let index = new_record()?;
    let record = record(index)?;
    record.frame_depth.store(0, Ordering::Relaxed);
    record.hazard_depth.store(0, Ordering::Relaxed);
    mine.index.set(Some(index));
    Some((index, record))
}

/// A hazard of the calling thread (see `super::pins`): cleared, and the
/// level given back, when dropped.
pub(crate) struct Hazard {
    record: &'static Record,
    depth: usize,
}

impl Hazard {
    /// Publishes `value`, ordered before the loads that follow against a
    /// `fence::heavy` of the thread that frees (see `super::pins`).
    pub(crate) fn publish(&self, value: u64) {
        fence::light_store(&self.record.hazards[self.depth], value);
    }
}

impl Drop for Hazard {
    fn drop(&mut self) {
        // Release is enough: whoever waits for the hazard to go polls.
        self.record.hazards[self.depth].store(0, Ordering::Release);
        self.record.hazard_depth.store(self.depth, Ordering::Relaxed);
    }
}

/// The calling thread's next hazard slot; None when nested too deep (or no
/// record to be had): the caller takes a counted reference instead.
#[inline]
pub(crate) fn hazard() -> Option<Hazard> {
    MINE.try_with(|mine| {
        let (_, record) = my_record(mine)?;
        let depth = record.hazard_depth.load(Ordering::Relaxed);
        if depth >= DEPTH {
            return None;
        }
        record.hazard_depth.store(depth + 1, Ordering::Relaxed);
        Some(Hazard { record, depth })
    })
    .ok()
    .flatten()
}

/// Whether any thread has `value` published as a hazard now (every record
/// ever made, threads that ended included). The first look after the
/// handle was removed must follow a `fence::heavy`.
pub(crate) fn any_hazard(value: u64) -> bool {
    let made = NEXT_RECORD.load(Ordering::Acquire).min(INDEX_MASK as u32);
    (0..made).filter_map(record).any(|r| r.hazards.iter().any(|h| h.load(Ordering::SeqCst) == value))
}

#[inline]
fn token(index: u32, depth: usize, generation: u64) -> usize {
    let high = ((generation & GENERATION_MASK) << DEPTH_BITS) | depth as u64;
    ((high << GENERATION_SHIFT) | ((Kind::ProducerFrame as u64) << INDEX_BITS) | (u64::from(index) + 1)) as usize
}

/// Whether `token` is a callback's producer handle (else: the registry's).
pub(crate) fn is_frame(token: usize) -> bool {
    (token as u64 >> INDEX_BITS) & KIND_MASK == Kind::ProducerFrame as u64
}

/// (record index, depth, generation) of a frame token.
/// A value with a frame's tag that no frame ever had (no such record, or an
/// even generation) is no handle at all.
fn decode(token: usize) -> Result<(u32, usize, u64)> {
    let token = token as u64;
    let index = token & INDEX_MASK;
    let high = token >> GENERATION_SHIFT;
    let generation = high >> DEPTH_BITS;
    if index == 0 || index > u64::from(NEXT_RECORD.load(Ordering::Relaxed)) || generation & 1 == 0 {
        return Err(Error::new(ErrorKind::InvalidArgument, "expected a producer handle, got a value that is no wdpool handle"));
    }
    Ok(((index - 1) as u32, (high & (DEPTH as u64 - 1)) as usize, generation))
}

fn gone() -> Error {
    stale(Kind::ProducerFrame, "its callback returned or it was checked in")
}

/// A live frame on the calling thread; leaving it (drop) makes its handle
/// stale, after any other thread still resolving it is done.
pub(crate) struct Entered {
    record: &'static Record,
    frame: &'static Frame,
    depth: usize,
    pub(crate) token: usize,
}

/// Enters a frame for a callback lent `producer` (an alias that outlives
/// the returned guard) for `owner`; None when this thread cannot (too deep,
/// or no record to be had): use the registry then.
#[inline]
pub(crate) fn enter(producer: &Arc<Producer>, owner: OwnerId) -> Option<Entered> {
    MINE.try_with(|mine| {
        let (index, record) = my_record(mine)?;
        let depth = record.frame_depth.load(Ordering::Relaxed);
        if depth >= DEPTH {
            return None;
        }
        let frame = &record.frames[depth];
        frame.producer.store(Arc::as_ptr(producer).cast_mut(), Ordering::Relaxed);
        frame.set_owner(owner);
        frame.fork.store(fork_generation(), Ordering::Relaxed);
        // Odd: live. Release: a reader that sees it sees the fields above.
        let generation = (frame.state.load(Ordering::Relaxed) + 1) | 1;
        frame.state.store(generation, Ordering::Release);
        record.frame_depth.store(depth + 1, Ordering::Relaxed);
        Some(Entered { record, frame, depth, token: token(index, depth, generation) })
    })
    .ok()
    .flatten()
}

impl Drop for Entered {
    fn drop(&mut self) {
        let generation = self.frame.state.load(Ordering::Relaxed);
        // Even: dead. Paired with the pin in `resolve`: a reader either
        // sees this or is seen below (see `sharing`).
        fence::light_store(&self.frame.state, generation + 1);
        if self.frame.sharing.load(Ordering::SeqCst) != sharing::PRIVATE {
            full_fence(Ordering::SeqCst);
        }
        // A reader of the parent process does not exist in a forked child.
        if self.frame.fork.load(Ordering::Relaxed) == fork_generation() {
            let mut spins = 0u32;
            while self.frame.pins.load(Ordering::SeqCst) != 0 {
                // A pin lasts a few instructions, unless its thread was
                // preempted holding it: then let it run.
                if spins < 100 {
                    std::hint::spin_loop();
                    spins += 1;
                } else {
                    std::thread::yield_now();
                }
            }
        }
        self.record.frame_depth.store(self.depth, Ordering::Relaxed);
    }
}

/// What a frame handle resolves to.
pub(crate) enum Resolved {
    /// On the callback's own thread: an uncounted alias, valid for the call.
    Own(ManuallyDrop<Arc<Producer>>, OwnerId),
    /// On another thread: a counted reference.
    Shared(Arc<Producer>, OwnerId),
}

/// Resolves a frame token (`is_frame`) for a call made now.
pub(crate) fn resolve(token: usize) -> Result<Resolved> {
    let (index, depth, generation) = decode(token)?;
    let frame = record(index).map(|r| &r.frames[depth]).ok_or_else(gone)?;
    let own = MINE.try_with(|mine| mine.index.get() == Some(index)).unwrap_or(false);
    if own {
        // Only this thread writes this frame, and it is not writing now.
        if frame.state.load(Ordering::Relaxed) & GENERATION_MASK != generation {
            return Err(gone());
        }
        if frame.fork.load(Ordering::Relaxed) != fork_generation() {
            return Err(stale(Kind::ProducerFrame, MADE_BEFORE_FORK));
        }
        let producer = frame.producer.load(Ordering::Relaxed);
        // SAFETY: the frame is live and this thread is inside its callback
        // (it made the frame and has not left it), so the lease and the
        // `Arc` it aliases outlive this call; the alias is never dropped.
        let alias = ManuallyDrop::new(unsafe { Arc::from_raw(producer.cast_const()) });
        return Ok(Resolved::Own(alias, frame.owner()));
    }
    frame.pins.fetch_add(1, Ordering::SeqCst);
    match frame.sharing.load(Ordering::SeqCst) {
        sharing::STRICT => {}
        sharing::PRIVATE => {
            let _ = frame.sharing.compare_exchange(
                sharing::PRIVATE,
                sharing::SWITCHING,
                Ordering::SeqCst,
                Ordering::SeqCst,
            );
            fence::heavy();
            let _ =
                frame.sharing.compare_exchange(sharing::SWITCHING, sharing::STRICT, Ordering::SeqCst, Ordering::SeqCst);
        }
        _ => fence::heavy(),
    }
    let resolved = (|| {
        if frame.state.load(Ordering::SeqCst) & GENERATION_MASK != generation {
            return Err(gone());
        }
        if frame.fork.load(Ordering::Relaxed) != fork_generation() {
            return Err(stale(Kind::ProducerFrame, MADE_BEFORE_FORK));
        }
        let producer = frame.producer.load(Ordering::Relaxed);
        // SAFETY: the frame is live and pinned: its thread waits for the
        // pin before leaving it, so the lease's `Arc` is alive here; we
        // take a counted reference of our own.
        let producer = unsafe {
            Arc::increment_strong_count(producer.cast_const());
            Arc::from_raw(producer.cast_const())
        };
        Ok(Resolved::Shared(producer, frame.owner()))
    })();
    frame.pins.fetch_sub(1, Ordering::SeqCst);
    resolved
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip() {
        NEXT_RECORD.fetch_max(6, Ordering::Relaxed);
        let t = token(5, 3, 0x1234_5679);
        assert!(is_frame(t));
        assert_eq!(decode(t).unwrap(), (5, 3, 0x1234_5679));
        let wrap = token(0, 15, GENERATION_MASK);
        assert_eq!(decode(wrap).unwrap(), (0, 15, GENERATION_MASK));
        assert_eq!(decode(token(0, 1, 2)).unwrap_err().kind, ErrorKind::InvalidArgument, "even: never a live frame");
        assert_eq!(decode(token(1 << 16, 1, 3)).unwrap_err().kind, ErrorKind::InvalidArgument, "no such record");
    }
}
