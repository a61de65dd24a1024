//! Report slots: a fixed array of places, one per message in flight, that
//! librdkafka's delivery callback writes a report into directly. Producing
//! into a slot allocates nothing (the slot's address travels as the
//! message's opaque, the array's reference count keeps it alive), and
//! reading a report is a look at the slot: no handle, batch or topic copy
//! per message. It is what a binding that tracks every report of a
//! high-rate producer uses (the Go binding's `ProduceAsync`).
//!
//! A slot is EMPTY (never used, or its message was refused), PENDING (a
//! message is in flight) or DONE (its report is in). Arming a slot takes it
//! from EMPTY or DONE to PENDING; only the delivery callback (or a refusal)
//! ends PENDING. The array lives until its owner lets go of it *and* every
//! message in flight has its report.

use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicI64, AtomicPtr, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::error::{Error, ErrorKind, Result};

use super::delivery::{error_code_of, Report};

pub(crate) const EMPTY: u32 = 0;
pub(crate) const PENDING: u32 = 1;
pub(crate) const DONE: u32 = 2;

/// The most slots one array may have.
pub(crate) const MAX_SLOTS: usize = 1 << 20;

/// The part of a slot that callers may read directly (the C ABI's
/// `wdpool_report_slot`, same layout): its state and report. Written by
/// the delivery callback with relaxed stores, then `state` with a
/// sequentially consistent one, so a reader that loads `state` with
/// acquire and finds DONE sees the report.
#[repr(C)]
pub struct PublicSlot {
    pub state: AtomicU32,
    pub error_code: AtomicI32,
    pub partition: AtomicI32,
    reserved: AtomicU32,
    pub offset: AtomicI64,
    pub timestamp_ms: AtomicI64,
}

impl PublicSlot {
    fn new() -> Self {
        PublicSlot {
            state: AtomicU32::new(EMPTY),
            error_code: AtomicI32::new(0),
            partition: AtomicI32::new(-1),
            reserved: AtomicU32::new(0),
            offset: AtomicI64::new(-1),
            timestamp_ms: AtomicI64::new(-1),
        }
    }
}

/// What only wdpool reads of a slot; 8-aligned (the opaque pointer's tag
/// bits need it). A ticket points here.
#[repr(align(8))]
struct Slot {
    /// The arming producer's `max_wait_timeout` (what a default wait waits).
    max_wait_ms: AtomicU64,
    /// The report is a failure (its error is in `error`).
    failed: AtomicBool,
    /// The failure; locked only when `failed` (so a delivered report costs
    /// no lock), and held by a lock rather than a raw box so that a caller
    /// re-arming a slot while another reads it gets a stale answer, never
    /// a freed one.
    error: Mutex<Option<Error>>,
    /// The array it belongs to (`Arc::as_ptr`): a ticket holds a counted
    /// reference to it.
    owner: AtomicPtr<ReportSlots>,
    index: usize,
    /// Threads in `wait` on this slot: its report wakes the array's
    /// waiters only when there are some, so that the reports of the slots
    /// nobody waits on (most of them) cost no lock and no system call.
    waiters: AtomicU32,
}

impl Slot {
    fn new(index: usize) -> Self {
        Slot {
            max_wait_ms: AtomicU64::new(0),
            failed: AtomicBool::new(false),
            error: Mutex::new(None),
            owner: AtomicPtr::new(std::ptr::null_mut()),
            index,
            waiters: AtomicU32::new(0),
        }
    }

    fn error(&self) -> std::sync::MutexGuard<'_, Option<Error>> {
        self.error.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// An array of report slots (see the module's doc).
pub struct ReportSlots {
    public: Box<[PublicSlot]>,
    slots: Box<[Slot]>,
    lock: Mutex<()>,
    done: Condvar,
    /// How many times a report woke the waiters (for tests).
    #[cfg(test)]
    wakes: AtomicU32,
}

impl std::fmt::Debug for ReportSlots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReportSlots").field("len", &self.slots.len()).finish()
    }
}

/// What [`ReportSlots::poll`] finds in a slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlotState {
    /// Never armed, or its message was refused.
    Empty,
    /// A message is in flight.
    Pending,
    /// The report (its `error` is the failure, if any).
    Done(Report),
}

impl ReportSlots {
    /// An array of `count` EMPTY slots (1 to [`MAX_SLOTS`]).
    pub fn new(count: usize) -> Result<Arc<Self>> {
        if count == 0 || count > MAX_SLOTS {
            return Err(Error::new(ErrorKind::InvalidArgument, format!("count must be 1 to {MAX_SLOTS}, got {count}")));
        }
        let slots = Arc::new(ReportSlots {
            public: (0..count).map(|_| PublicSlot::new()).collect(),
            slots: (0..count).map(Slot::new).collect(),
            lock: Mutex::new(()),
            done: Condvar::new(),
            #[cfg(test)]
            wakes: AtomicU32::new(0),
        });
        let me = Arc::as_ptr(&slots) as *mut ReportSlots;
        for s in slots.slots.iter() {
            s.owner.store(me, Ordering::Relaxed);
        }
        Ok(slots)
    }

    /// The slots, for direct reading (see [`PublicSlot`]).
    pub fn public(&self) -> &[PublicSlot] {
        &self.public
    }

    fn slot(&self, index: usize) -> Result<(&PublicSlot, &Slot)> {
        self.public.get(index).zip(self.slots.get(index)).ok_or_else(|| {
            Error::new(ErrorKind::InvalidArgument, format!("slot {index} is out of range (count {})", self.slots.len()))
        })
    }

    fn range(&self, first: usize, count: usize) -> Result<std::ops::Range<usize>> {
        first.checked_add(count).filter(|end| *end <= self.public.len()).map(|end| first..end).ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidArgument,
                format!("slots {first} to {first}+{count} are out of range (count {})", self.slots.len()),
            )
        })
    }

    /// Arms slots `first .. first + count` (each EMPTY or DONE; a DONE
    /// slot's report is dropped) for messages of a producer whose
    /// `max_wait_timeout` is `max_wait`. All or none: when one of them is
    /// PENDING, none is changed and the error says which (callers racing
    /// to arm the same slots may leave those armed here EMPTY). Each armed
    /// slot must then get a ticket ([`ReportSlots::ticket`]) or be given
    /// back ([`ReportSlots::disarm`]).
    pub fn arm(&self, first: usize, count: usize, max_wait: Duration) -> Result<()> {
        let range = self.range(first, count)?;
        let busy = |i: usize| {
            Error::new(ErrorKind::InvalidArgument, format!("slot {i} still waits for the report of a message in flight"))
        };
        if let Some(i) = range.clone().find(|&i| self.public[i].state.load(Ordering::Acquire) == PENDING) {
            return Err(busy(i));
        }
        for i in range.clone() {
            let p = &self.public[i];
            let mut seen = p.state.load(Ordering::Acquire);
            loop {
                if seen == PENDING {
                    // Another caller armed it meanwhile.
                    for armed in &self.public[first..i] {
                        armed.state.store(EMPTY, Ordering::SeqCst);
                    }
                    return Err(busy(i));
                }
                match p.state.compare_exchange_weak(seen, PENDING, Ordering::AcqRel, Ordering::Acquire) {
                    Ok(_) => break,
                    Err(now) => seen = now,
                }
            }
        }
        let ms = u64::try_from(max_wait.as_millis()).unwrap_or(u64::MAX);
        for i in range {
            let (p, s) = (&self.public[i], &self.slots[i]);
            if s.failed.swap(false, Ordering::AcqRel) {
                *s.error() = None;
            }
            p.error_code.store(0, Ordering::Relaxed);
            p.partition.store(-1, Ordering::Relaxed);
            p.offset.store(-1, Ordering::Relaxed);
            p.timestamp_ms.store(-1, Ordering::Relaxed);
            s.max_wait_ms.store(ms, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Gives back slots armed by [`ReportSlots::arm`] for which no ticket
    /// was made (nothing was sent): EMPTY again.
    pub fn disarm(&self, first: usize, count: usize) {
        if let Ok(range) = self.range(first, count) {
            for p in &self.public[range] {
                p.state.store(EMPTY, Ordering::SeqCst);
            }
            self.wake();
        }
    }

    /// The ticket of slot `index`, armed by [`ReportSlots::arm`]: it keeps
    /// the array alive until it completes or is dropped.
    pub fn ticket(self: &Arc<Self>, index: usize) -> SlotTicket {
        let slot = &self.slots[index];
        debug_assert_eq!(self.public[index].state.load(Ordering::Relaxed), PENDING);
        std::mem::forget(Arc::clone(self)); // given back by the ticket
        SlotTicket(NonNull::from(slot))
    }

    /// What slot `index` holds now. Never blocks.
    pub fn poll(&self, index: usize) -> Result<SlotState> {
        let (p, s) = self.slot(index)?;
        Ok(match p.state.load(Ordering::Acquire) {
            EMPTY => SlotState::Empty,
            PENDING => SlotState::Pending,
            _ => SlotState::Done(Report {
                partition: p.partition.load(Ordering::Relaxed),
                offset: p.offset.load(Ordering::Relaxed),
                timestamp_ms: p.timestamp_ms.load(Ordering::Relaxed),
                error: if s.failed.load(Ordering::Acquire) { s.error().clone() } else { None },
            }),
        })
    }

    /// Waits until slot `index` is no longer PENDING, at most `timeout`
    /// (`None`: the arming producer's `max_wait_timeout`), and returns what
    /// it holds then (PENDING when the time ran out).
    pub fn wait(&self, index: usize, timeout: Option<Duration>) -> Result<SlotState> {
        let (p, s) = self.slot(index)?;
        if p.state.load(Ordering::Acquire) != PENDING {
            return self.poll(index);
        }
        let timeout = timeout.unwrap_or_else(|| Duration::from_millis(s.max_wait_ms.load(Ordering::Relaxed)));
        let deadline = Instant::now().checked_add(timeout);
        s.waiters.fetch_add(1, Ordering::SeqCst);
        let mut guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        // SeqCst pairs with the report's store of DONE and load of the
        // slot's `waiters`: either it sees this waiter, or this sees DONE.
        while p.state.load(Ordering::SeqCst) == PENDING {
            let left = match deadline {
                Some(d) => d.saturating_duration_since(Instant::now()),
                None => Duration::from_secs(3600),
            };
            if left.is_zero() {
                break;
            }
            guard = self.done.wait_timeout(guard, left).unwrap_or_else(|e| e.into_inner()).0;
        }
        drop(guard);
        s.waiters.fetch_sub(1, Ordering::SeqCst);
        self.poll(index)
    }

    /// Wakes every waiter (each looks at its own slot again). Taking the
    /// lock first: a waiter that saw PENDING under it is in `wait_timeout`
    /// by now, so the notification reaches it.
    fn wake(&self) {
        #[cfg(test)]
        self.wakes.fetch_add(1, Ordering::Relaxed);
        drop(self.lock.lock().unwrap_or_else(|e| e.into_inner()));
        self.done.notify_all();
    }
}

/// A counted reference to one armed slot, travelling with its message as
/// the opaque pointer. Completing it writes the report; dropping it
/// uncompleted (the message was refused) makes the slot EMPTY again.
pub struct SlotTicket(NonNull<Slot>);

// SAFETY: the slot's fields are atomics, and the array it points into is
// kept alive by the count the ticket holds.
unsafe impl Send for SlotTicket {}
// SAFETY: as above; a shared ticket only reads atomics.
unsafe impl Sync for SlotTicket {}

impl SlotTicket {
    fn slot(&self) -> &Slot {
        // SAFETY: the array (which owns the slot) lives while the ticket
        // holds its count.
        unsafe { self.0.as_ref() }
    }

    /// Writes `report` into the slot and wakes its waiters.
    pub fn complete(self, report: Report) {
        let s = self.slot();
        // SAFETY: `owner` is the array, alive while the ticket holds its
        // count.
        let p = unsafe { &(*s.owner.load(Ordering::Relaxed)).public[s.index] };
        p.partition.store(report.partition, Ordering::Relaxed);
        p.offset.store(report.offset, Ordering::Relaxed);
        p.timestamp_ms.store(report.timestamp_ms, Ordering::Relaxed);
        if let Some(e) = report.error {
            p.error_code.store(error_code_of(&e), Ordering::Relaxed);
            *s.error() = Some(e);
            s.failed.store(true, Ordering::Release);
        }
        self.end(DONE);
    }

    fn end(self, state: u32) {
        let s = self.slot();
        let owner = s.owner.load(Ordering::Relaxed);
        // SAFETY: `owner` is the array, alive until this count is given
        // back at the end.
        unsafe { (*owner).public[s.index].state.store(state, Ordering::SeqCst) };
        let waited = s.waiters.load(Ordering::SeqCst) > 0;
        std::mem::forget(self);
        // SAFETY: as above.
        unsafe {
            if waited {
                (*owner).wake();
            }
            Arc::decrement_strong_count(owner);
        }
    }

    pub(crate) fn into_raw(self) -> *mut () {
        let p = self.0.as_ptr().cast();
        std::mem::forget(self);
        p
    }

    /// # Safety
    /// `p` comes from [`SlotTicket::into_raw`], taken back once.
    pub(crate) unsafe fn from_raw(p: *mut ()) -> Self {
        // SAFETY: non-null, as made by `into_raw`.
        SlotTicket(unsafe { NonNull::new_unchecked(p.cast()) })
    }
}

impl Drop for SlotTicket {
    fn drop(&mut self) {
        // Not completed: the message never went out.
        let me = SlotTicket(self.0);
        me.end(EMPTY);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(offset: i64) -> Report {
        Report { partition: 2, offset, timestamp_ms: 9, error: None }
    }

    #[test]
    fn a_slot_goes_empty_pending_done_and_again() {
        let slots = ReportSlots::new(4).unwrap();
        assert_eq!(slots.poll(1).unwrap(), SlotState::Empty);
        slots.arm(1, 2, Duration::from_secs(5)).unwrap();
        let (a, b) = (slots.ticket(1), slots.ticket(2));
        assert_eq!(Arc::strong_count(&slots), 3);
        assert_eq!(slots.poll(1).unwrap(), SlotState::Pending);
        let busy = slots.arm(0, 3, Duration::ZERO).unwrap_err();
        assert_eq!(busy.kind, ErrorKind::InvalidArgument);
        assert!(busy.message.contains("slot 1"), "{}", busy.message);
        assert_eq!(slots.poll(0).unwrap(), SlotState::Empty, "all or none");
        assert_eq!(slots.poll(1).unwrap(), SlotState::Pending);
        a.complete(ok(7));
        assert_eq!(slots.poll(1).unwrap(), SlotState::Done(ok(7)));
        assert!(slots.arm(1, 2, Duration::ZERO).is_err(), "slot 2 is PENDING");
        assert_eq!(slots.poll(1).unwrap(), SlotState::Done(ok(7)), "a refused arm leaves a DONE slot's report");
        drop(b); // refused
        assert_eq!(slots.poll(2).unwrap(), SlotState::Empty);
        assert_eq!(Arc::strong_count(&slots), 1);
        // A DONE slot may be armed again; a failure's error comes back.
        slots.arm(1, 1, Duration::ZERO).unwrap();
        let failed = Report::failed(Error::new(ErrorKind::Kafka, "boom"));
        slots.ticket(1).complete(failed.clone());
        assert_eq!(slots.poll(1).unwrap(), SlotState::Done(failed));
        assert_eq!(slots.poll(4).unwrap_err().kind, ErrorKind::InvalidArgument);
        assert_eq!(slots.arm(3, 2, Duration::ZERO).unwrap_err().kind, ErrorKind::InvalidArgument);
        assert_eq!(slots.arm(usize::MAX, 2, Duration::ZERO).unwrap_err().kind, ErrorKind::InvalidArgument);
        assert!(ReportSlots::new(0).is_err());
        assert!(ReportSlots::new(MAX_SLOTS + 1).is_err());
    }

    #[test]
    fn tickets_keep_the_array_alive_and_wake_waiters() {
        let slots = ReportSlots::new(2).unwrap();
        slots.arm(0, 1, Duration::from_secs(30)).unwrap();
        let t = slots.ticket(0);
        let waiter = {
            let slots = Arc::clone(&slots);
            std::thread::spawn(move || slots.wait(0, None).unwrap())
        };
        drop(slots); // the owner lets go; the ticket and the waiter hold it
        // Wait until the waiter is waiting (or has not started: either way
        // the report must reach it).
        t.complete(ok(3));
        assert_eq!(waiter.join().unwrap(), SlotState::Done(ok(3)));
    }

    #[test]
    fn only_a_waited_slot_wakes_the_waiters() {
        let slots = ReportSlots::new(101).unwrap();
        slots.arm(0, 101, Duration::from_secs(30)).unwrap();
        let mut tickets: Vec<_> = (0..101).map(|i| Some(slots.ticket(i))).collect();
        let waiter = {
            let slots = Arc::clone(&slots);
            std::thread::spawn(move || slots.wait(0, None).unwrap())
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while slots.slots[0].waiters.load(Ordering::SeqCst) == 0 {
            assert!(Instant::now() < deadline, "the waiter never waited");
            std::thread::yield_now();
        }
        for (i, t) in tickets.iter_mut().enumerate().skip(1) {
            t.take().unwrap().complete(ok(i as i64));
        }
        assert_eq!(slots.wakes.load(Ordering::Relaxed), 0, "reports nobody waits on woke the waiter");
        assert_eq!(slots.poll(100).unwrap(), SlotState::Done(ok(100)));
        tickets[0].take().unwrap().complete(ok(0));
        assert_eq!(waiter.join().unwrap(), SlotState::Done(ok(0)));
        assert_eq!(slots.wakes.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn a_wait_ends_at_its_timeout() {
        let slots = ReportSlots::new(1).unwrap();
        slots.arm(0, 1, Duration::from_millis(1)).unwrap();
        let t = slots.ticket(0);
        assert_eq!(slots.wait(0, Some(Duration::from_millis(5))).unwrap(), SlotState::Pending);
        assert_eq!(slots.wait(0, None).unwrap(), SlotState::Pending, "the producer's max wait, 1 ms");
        t.complete(ok(1));
        assert_eq!(slots.wait(0, Some(Duration::ZERO)).unwrap(), SlotState::Done(ok(1)));
    }

    #[test]
    fn many_threads_complete_while_others_wait() {
        let slots = ReportSlots::new(256).unwrap();
        slots.arm(0, 256, Duration::from_secs(30)).unwrap();
        let tickets: Vec<_> = (0..256).map(|i| slots.ticket(i)).collect();
        let waiters: Vec<_> = (0..4)
            .map(|w| {
                let slots = Arc::clone(&slots);
                std::thread::spawn(move || {
                    for i in (w..256).step_by(4) {
                        assert_eq!(slots.wait(i, None).unwrap(), SlotState::Done(ok(i as i64)));
                    }
                })
            })
            .collect();
        let mut tickets = tickets.into_iter().enumerate();
        let completers: Vec<_> = (0..2)
            .map(|_| {
                let mine: Vec<_> = tickets.by_ref().take(128).collect();
                std::thread::spawn(move || {
                    for (i, t) in mine.into_iter().rev() {
                        t.complete(ok(i as i64));
                    }
                })
            })
            .collect();
        for t in completers.into_iter().chain(waiters) {
            t.join().unwrap();
        }
        assert_eq!(Arc::strong_count(&slots), 1);
    }
}
