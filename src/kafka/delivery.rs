//! Delivery reports: a batch of one or more messages that a caller waits on.
//! librdkafka's delivery callback fills a report and wakes the waiter; it never
//! blocks and never calls user code.

use std::ffi::c_void;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use rdkafka::util::IntoOpaque;
use std::time::{Duration, Instant};

use crate::error::{Error, ErrorKind, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub partition: i32,
    pub offset: i64,
    /// Milliseconds since the epoch; -1 when unknown.
    pub timestamp_ms: i64,
    /// `None` when delivered.
    pub error: Option<Error>,
}

/// A failure's `error_code` in a report: librdkafka's code, or its generic
/// failure for failures it did not number.
pub fn error_code_of(e: &Error) -> i32 {
    if e.kafka_code != 0 {
        e.kafka_code
    } else {
        rdkafka::types::RDKafkaRespErr::RD_KAFKA_RESP_ERR__FAIL as i32
    }
}

impl Report {
    pub fn failed(error: Error) -> Self {
        Report { partition: -1, offset: -1, timestamp_ms: -1, error: Some(error) }
    }
}

#[derive(Debug)]
pub struct Batch {
    state: Mutex<State>,
    done: Condvar,
}

/// The reports: inline for the common batch of one (no allocation beyond
/// the batch itself).
#[derive(Debug)]
enum Reports {
    One(Option<Report>),
    Many(Vec<Option<Report>>),
}

impl Reports {
    fn len(&self) -> usize {
        match self {
            Reports::One(_) => 1,
            Reports::Many(v) => v.len(),
        }
    }

    fn get(&self, index: usize) -> Option<&Option<Report>> {
        match self {
            Reports::One(r) => (index == 0).then_some(r),
            Reports::Many(v) => v.get(index),
        }
    }

    fn get_mut(&mut self, index: usize) -> Option<&mut Option<Report>> {
        match self {
            Reports::One(r) => (index == 0).then_some(r),
            Reports::Many(v) => v.get_mut(index),
        }
    }

    fn iter(&self) -> impl Iterator<Item = &Option<Report>> {
        let (one, many) = match self {
            Reports::One(r) => (Some(r), &[][..]),
            Reports::Many(v) => (None, &v[..]),
        };
        one.into_iter().chain(many.iter())
    }
}

#[derive(Debug)]
struct State {
    reports: Reports,
    pending: usize,
    /// Threads in `wait`: completing wakes them only when there are some
    /// (std's condvar makes a system call on every notify otherwise).
    waiters: usize,
}

impl Batch {
    /// A batch of `count` messages.
    pub fn new(count: usize) -> Self {
        let reports = if count == 1 { Reports::One(None) } else { Reports::Many(vec![None; count]) };
        Batch { state: Mutex::new(State { reports, pending: count, waiters: 0 }), done: Condvar::new() }
    }

    pub fn len(&self) -> usize {
        self.lock().reports.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records message `index`'s outcome; a second report for it is ignored.
    pub fn complete(&self, index: usize, report: Report) {
        let mut state = self.lock();
        let Some(slot) = state.reports.get_mut(index) else { return };
        if slot.is_some() {
            return;
        }
        *slot = Some(report);
        state.pending -= 1;
        if state.pending == 0 && state.waiters > 0 {
            drop(state);
            self.done.notify_all();
        }
    }

    pub fn pending(&self) -> usize {
        self.lock().pending
    }

    /// Waits until every message has a report, at most `timeout`.
    pub fn wait(&self, timeout: Duration) -> Result<()> {
        self.wait_until(Instant::now().checked_add(timeout), timeout)
    }

    /// Waits until every message has a report, at most until `deadline`
    /// (`None`: for ever); `timeout` is what the error reports.
    pub fn wait_until(&self, deadline: Option<Instant>, timeout: Duration) -> Result<()> {
        let mut state = self.lock();
        while state.pending > 0 {
            let left = match deadline {
                Some(d) => d.saturating_duration_since(Instant::now()),
                None => Duration::from_secs(3600),
            };
            if left.is_zero() {
                return Err(Error::new(
                    ErrorKind::DeliveryTimeout,
                    format!(
                        "{} of {} messages have no delivery report after {} ms",
                        state.pending,
                        state.reports.len(),
                        timeout.as_millis()
                    ),
                ));
            }
            state.waiters += 1;
            state = self.done.wait_timeout(state, left).unwrap_or_else(|e| e.into_inner()).0;
            state.waiters -= 1;
        }
        Ok(())
    }

    pub fn report(&self, index: usize) -> Option<Report> {
        self.lock().reports.get(index).cloned().flatten()
    }

    /// The first failure among the reports, with how many failed.
    pub fn failure(&self) -> Option<Error> {
        let state = self.lock();
        let mut failed = state.reports.iter().flatten().filter_map(|r| r.error.as_ref());
        let first = failed.next()?.clone();
        let more = failed.count();
        if state.reports.len() == 1 {
            return Some(first);
        }
        Some(Error {
            message: format!("{} of {} messages failed; first: {}", more + 1, state.reports.len(), first.message),
            ..first
        })
    }
}

/// Delivery reports of many messages, each tagged with a number the
/// producing caller chose, collected for one reader that takes them in
/// batches (the Go binding's drain goroutine), instead of a [`Batch`] per
/// message. The delivery callback pushes; it never blocks on a reader.
#[derive(Debug, Default)]
pub struct ReportQueue {
    state: Mutex<QueueState>,
    ready: Condvar,
}

#[derive(Debug, Default)]
struct QueueState {
    reports: std::collections::VecDeque<(u64, Report)>,
    /// Threads waiting in `take`. A push wakes one only when there are
    /// some and the queue was empty: a taker waits only while it is empty,
    /// so a push onto reports not yet taken has a taker on its way already
    /// (std's condvar makes a system call on every notify, and a report at
    /// a time, the way librdkafka's delivery callback hands them over,
    /// made one per message while the woken taker was on its way).
    waiters: usize,
    /// Set by `close`: takers stop waiting.
    closed: bool,
}

impl ReportQueue {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a report; a closed queue drops it (its handle was freed:
    /// nobody will take it).
    pub fn push(&self, tag: u64, report: Report) {
        let mut state = self.lock();
        if state.closed {
            return;
        }
        let wake = state.reports.is_empty() && state.waiters > 0;
        state.reports.push_back((tag, report));
        drop(state);
        if wake {
            self.ready.notify_one();
        }
    }

    /// Moves up to `max` reports, oldest first, into `out` (cleared first),
    /// waiting up to `timeout` for the first one; returns early, with what
    /// is there, once the queue is closed.
    pub fn take(&self, out: &mut Vec<(u64, Report)>, max: usize, timeout: Duration) {
        out.clear();
        if max == 0 {
            return;
        }
        let deadline = Instant::now().checked_add(timeout);
        let mut state = self.lock();
        while state.reports.is_empty() && !state.closed {
            let left = match deadline {
                Some(d) => d.saturating_duration_since(Instant::now()),
                None => Duration::from_secs(3600),
            };
            if left.is_zero() {
                return;
            }
            state.waiters += 1;
            state = self.ready.wait_timeout(state, left).unwrap_or_else(|e| e.into_inner()).0;
            state.waiters -= 1;
        }
        let n = max.min(state.reports.len());
        out.extend(state.reports.drain(..n));
        // Reports left over (more than `max`) were announced by one wake:
        // pass it on to another waiting taker.
        let wake = !state.reports.is_empty() && state.waiters > 0;
        drop(state);
        if wake {
            self.ready.notify_one();
        }
    }

    /// How many reports wait to be taken.
    pub fn len(&self) -> usize {
        self.lock().reports.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops the reports not taken (and, from now on, those pushed) and
    /// wakes every taker; later takes do not wait. (A producer may keep a
    /// closed queue until it is dropped: see [`KeptQueues`].)
    pub fn close(&self) {
        let dropped = {
            let mut state = self.lock();
            state.closed = true;
            std::mem::take(&mut state.reports)
        };
        drop(dropped);
        self.ready.notify_all();
    }
}

/// The queue a queued ticket reports to.
pub enum QueueRef {
    /// A counted reference: the ticket keeps the queue alive.
    Counted(Arc<ReportQueue>),
    /// A queue the producer keeps alive for as long as its messages can be
    /// reported (see [`KeptQueues`]): no count to touch per message.
    Kept(KeptQueue),
}

impl QueueRef {
    fn get(&self) -> &ReportQueue {
        match self {
            QueueRef::Counted(queue) => queue,
            // SAFETY: a kept queue outlives every ticket of its producer
            // (see `KeptQueue`).
            QueueRef::Kept(kept) => unsafe { kept.0.as_ref() },
        }
    }

    /// The same queue, for one more ticket.
    pub fn another(&self) -> QueueRef {
        match self {
            QueueRef::Counted(queue) => QueueRef::Counted(Arc::clone(queue)),
            QueueRef::Kept(kept) => QueueRef::Kept(*kept),
        }
    }

    /// Adds `report` to the queue.
    pub fn push(&self, tag: u64, report: Report) {
        self.get().push(tag, report)
    }
}

/// A queue kept alive by a producer's [`KeptQueues`]. Only a producer's
/// own messages carry one, and the producer drops its kept queues only
/// after its librdkafka handle, with every message (and ticket) in it.
#[derive(Clone, Copy)]
pub struct KeptQueue(NonNull<ReportQueue>);

// SAFETY: a pointer to a `ReportQueue` (Sync: a mutex and a condvar), alive
// while it is used (see above).
unsafe impl Send for KeptQueue {}
// SAFETY: as above.
unsafe impl Sync for KeptQueue {}

/// How many report queues a producer keeps (the first ones its messages go
/// to); messages to others count their queue per message.
pub(crate) const KEPT_QUEUES: usize = 8;

/// The report queues a producer's tagged messages go to, kept until the
/// producer is dropped so that their tickets need no counted reference
/// (two atomic operations per message on a line every producing and
/// reporting thread shares). Append-only: up to [`KEPT_QUEUES`] of them,
/// each looked up without a lock.
#[derive(Default)]
pub struct KeptQueues {
    kept: [AtomicPtr<ReportQueue>; KEPT_QUEUES],
    owned: Mutex<Vec<Arc<ReportQueue>>>,
}

impl KeptQueues {
    /// Where a message to `queue` reports: the kept queue, else (all taken)
    /// a counted reference. `arc` gives `queue`'s `Arc` the first time.
    pub fn target(&self, queue: &ReportQueue, arc: impl FnOnce() -> Result<Arc<ReportQueue>>) -> Result<QueueRef> {
        let wanted = queue as *const ReportQueue;
        if let Some(kept) = self.find(wanted) {
            return Ok(QueueRef::Kept(kept));
        }
        let mut owned = self.owned.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(kept) = self.find(wanted) {
            return Ok(QueueRef::Kept(kept));
        }
        let arc = arc()?;
        if !std::ptr::eq(Arc::as_ptr(&arc), wanted) || owned.len() == KEPT_QUEUES {
            return Ok(QueueRef::Counted(arc));
        }
        self.kept[owned.len()].store(Arc::as_ptr(&arc).cast_mut(), Ordering::Release);
        owned.push(arc);
        Ok(QueueRef::Kept(KeptQueue(NonNull::from(queue))))
    }

    fn find(&self, wanted: *const ReportQueue) -> Option<KeptQueue> {
        for slot in &self.kept {
            let p = slot.load(Ordering::Acquire);
            if p.is_null() {
                return None;
            }
            if std::ptr::eq(p, wanted) {
                return NonNull::new(p).map(KeptQueue);
            }
        }
        None
    }

    /// How many queues are kept.
    #[cfg(test)]
    fn kept(&self) -> usize {
        self.owned.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// What travels with a message through librdkafka to its delivery report,
/// without an allocation in the common cases: nothing (fire and forget: the
/// producer only counts), a batch of one (the `Arc` itself), message
/// `index` of a larger batch (boxed), or a tag for a [`ReportQueue`]
/// (boxed). Packed into the opaque pointer, with the low two bits telling
/// the last three apart (`Arc<Batch>` and the boxes are 8-aligned).
pub enum Ticket {
    None,
    Single(Arc<Batch>),
    Indexed(Box<(Arc<Batch>, usize)>),
    Queued(Box<(QueueRef, u64)>),
    /// An armed slot of a [`super::slots::ReportSlots`] (no allocation).
    Slot(super::slots::SlotTicket),
}

impl Ticket {
    pub fn for_message(batch: &Arc<Batch>, index: usize, count: usize) -> Ticket {
        if count == 1 {
            Ticket::Single(Arc::clone(batch))
        } else {
            Ticket::Indexed(Box::new((Arc::clone(batch), index)))
        }
    }

    /// Records `report` in the ticket's batch, if it has one.
    pub fn complete(self, report: impl FnOnce() -> Report) {
        match self {
            Ticket::None => {}
            Ticket::Single(batch) => batch.complete(0, report()),
            Ticket::Indexed(entry) => entry.0.complete(entry.1, report()),
            Ticket::Queued(entry) => entry.0.push(entry.1, report()),
            Ticket::Slot(slot) => slot.complete(report()),
        }
    }
}

const INDEXED: usize = 1;
const QUEUED: usize = 2;
const SLOT: usize = 3;
const TAG_BITS: usize = 3;

impl IntoOpaque for Ticket {
    fn into_ptr(self) -> *mut c_void {
        match self {
            Ticket::None => std::ptr::null_mut(),
            Ticket::Single(batch) => Arc::into_raw(batch) as *mut c_void,
            Ticket::Indexed(entry) => (Box::into_raw(entry) as usize | INDEXED) as *mut c_void,
            Ticket::Queued(entry) => (Box::into_raw(entry) as usize | QUEUED) as *mut c_void,
            Ticket::Slot(slot) => (slot.into_raw() as usize | SLOT) as *mut c_void,
        }
    }

    unsafe fn from_ptr(ptr: *mut c_void) -> Self {
        let bits = ptr as usize;
        if ptr.is_null() {
            Ticket::None
        } else if bits & TAG_BITS == 0 {
            // SAFETY: made by `into_ptr` from an `Arc<Batch>`, taken back once.
            Ticket::Single(unsafe { Arc::from_raw(ptr as *const Batch) })
        } else if bits & TAG_BITS == INDEXED {
            // SAFETY: made by `into_ptr` from a box (aligned, so the tag bits
            // were free), taken back once.
            Ticket::Indexed(unsafe { Box::from_raw((bits & !TAG_BITS) as *mut (Arc<Batch>, usize)) })
        } else if bits & TAG_BITS == SLOT {
            // SAFETY: made by `into_ptr` from a slot ticket (8-aligned),
            // taken back once.
            Ticket::Slot(unsafe { super::slots::SlotTicket::from_raw((bits & !TAG_BITS) as *mut _) })
        } else {
            // SAFETY: as above.
            Ticket::Queued(unsafe { Box::from_raw((bits & !TAG_BITS) as *mut (QueueRef, u64)) })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok() -> Report {
        Report { partition: 1, offset: 7, timestamp_ms: 5, error: None }
    }

    #[test]
    fn tickets_travel_through_the_opaque_pointer() {
        let one = Arc::new(Batch::new(1));
        let many = Arc::new(Batch::new(3));
        for ticket in [Ticket::for_message(&one, 0, 1), Ticket::for_message(&many, 2, 3), Ticket::None] {
            let ptr = ticket.into_ptr();
            // SAFETY: made by into_ptr just above, taken back once.
            unsafe { Ticket::from_ptr(ptr) }.complete(ok);
        }
        assert_eq!(one.pending(), 0);
        assert_eq!(one.report(0), Some(ok()));
        assert_eq!(many.pending(), 2);
        assert_eq!(many.report(2), Some(ok()));
        assert_eq!(Arc::strong_count(&one), 1, "the ticket's reference was released");
        assert_eq!(Arc::strong_count(&many), 1);
    }

    #[test]
    fn queued_tickets_push_their_tag_once() {
        let queue = Arc::new(ReportQueue::new());
        for tag in [7u64, u64::MAX, 0] {
            let ptr = Ticket::Queued(Box::new((QueueRef::Counted(Arc::clone(&queue)), tag))).into_ptr();
            // SAFETY: made by into_ptr just above, taken back once.
            unsafe { Ticket::from_ptr(ptr) }.complete(ok);
        }
        // A ticket dropped without a report (librdkafka refused the
        // message) pushes nothing.
        drop(Ticket::Queued(Box::new((QueueRef::Counted(Arc::clone(&queue)), 9))));
        assert_eq!(Arc::strong_count(&queue), 1, "the tickets' references were released");
        let mut out = Vec::new();
        queue.take(&mut out, 2, Duration::ZERO);
        assert_eq!(out, vec![(7, ok()), (u64::MAX, ok())]);
        queue.take(&mut out, 10, Duration::ZERO);
        assert_eq!(out, vec![(0, ok())]);
        queue.take(&mut out, 10, Duration::ZERO);
        assert!(out.is_empty());
    }

    #[test]
    fn a_producer_keeps_its_first_queues_and_counts_the_others() {
        let kept = KeptQueues::default();
        let queues: Vec<_> = (0..KEPT_QUEUES + 2).map(|_| Arc::new(ReportQueue::new())).collect();
        for (i, q) in queues.iter().enumerate() {
            let target = kept.target(q, || Ok(Arc::clone(q))).unwrap();
            assert_eq!(matches!(target, QueueRef::Kept(_)), i < KEPT_QUEUES, "queue {i}");
            if i < KEPT_QUEUES {
                // Found again without its `Arc`.
                let again = kept.target(q, || panic!("looked up again")).unwrap();
                assert!(matches!(again, QueueRef::Kept(_)));
            }
            // A ticket through it reports into that queue.
            let ptr = Ticket::Queued(Box::new((target.another(), i as u64))).into_ptr();
            drop(target);
            // SAFETY: made by into_ptr just above, taken back once.
            unsafe { Ticket::from_ptr(ptr) }.complete(ok);
            let mut out = Vec::new();
            q.take(&mut out, 10, Duration::ZERO);
            assert_eq!(out, vec![(i as u64, ok())]);
        }
        assert_eq!(kept.kept(), KEPT_QUEUES);
        // Kept: one reference more (the producer's), none per ticket.
        assert_eq!(Arc::strong_count(&queues[0]), 2);
        assert_eq!(Arc::strong_count(&queues[KEPT_QUEUES]), 1);
        // An `Arc` of another queue than the one asked for is not kept.
        let other = Arc::new(ReportQueue::new());
        let q = Arc::new(ReportQueue::new());
        assert!(matches!(KeptQueues::default().target(&q, || Ok(Arc::clone(&other))).unwrap(), QueueRef::Counted(_)));
        drop(kept);
        assert_eq!(Arc::strong_count(&queues[0]), 1, "dropped with the producer");
    }

    #[test]
    fn threads_keep_each_queue_once() {
        let kept = Arc::new(KeptQueues::default());
        let queues: Arc<Vec<_>> = Arc::new((0..KEPT_QUEUES).map(|_| Arc::new(ReportQueue::new())).collect());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (kept, queues) = (Arc::clone(&kept), Arc::clone(&queues));
                std::thread::spawn(move || {
                    for q in queues.iter().chain(queues.iter().rev()) {
                        assert!(matches!(kept.target(q, || Ok(Arc::clone(q))).unwrap(), QueueRef::Kept(_)));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(kept.kept(), KEPT_QUEUES);
        assert!(queues.iter().all(|q| Arc::strong_count(q) == 2));
    }

    #[test]
    fn a_closed_queue_drops_its_reports() {
        let queue = ReportQueue::new();
        queue.push(1, ok());
        queue.close();
        assert_eq!(queue.len(), 0, "not taken before the close: dropped");
        queue.push(2, ok());
        assert_eq!(queue.len(), 0, "pushed after the close: dropped");
        let mut out = Vec::new();
        queue.take(&mut out, 10, Duration::ZERO);
        assert!(out.is_empty());
    }

    #[test]
    fn a_taker_waits_for_the_first_report_or_the_close() {
        let queue = Arc::new(ReportQueue::new());
        let q = Arc::clone(&queue);
        let taker = std::thread::spawn(move || {
            let mut out = Vec::new();
            q.take(&mut out, 10, Duration::from_secs(30));
            out
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        while queue.lock().waiters == 0 {
            assert!(Instant::now() < deadline, "the taker never waited");
            std::thread::yield_now();
        }
        queue.push(3, ok());
        assert_eq!(taker.join().unwrap(), vec![(3, ok())]);

        let q = Arc::clone(&queue);
        let taker = std::thread::spawn(move || {
            let mut out = vec![(1, ok())];
            q.take(&mut out, 10, Duration::from_secs(30));
            out
        });
        while queue.lock().waiters == 0 {
            assert!(Instant::now() < deadline, "the taker never waited");
            std::thread::yield_now();
        }
        queue.close();
        assert!(taker.join().unwrap().is_empty(), "woken by the close, with nothing");
        let mut out = Vec::new();
        let started = Instant::now();
        queue.take(&mut out, 10, Duration::from_secs(30));
        assert!(out.is_empty());
        assert!(started.elapsed() < Duration::from_secs(10), "a closed queue is not waited on");
    }

    #[test]
    fn reports_left_over_by_one_taker_wake_the_next() {
        // A push wakes a taker only when the queue was empty: two reports
        // that came in before the woken taker ran are announced once, and
        // a taker taking one passes the wake on to the other.
        let queue = Arc::new(ReportQueue::new());
        let takers: Vec<_> = (0..2)
            .map(|_| {
                let q = Arc::clone(&queue);
                std::thread::spawn(move || {
                    let mut out = Vec::new();
                    q.take(&mut out, 1, Duration::from_secs(30));
                    out
                })
            })
            .collect();
        let deadline = Instant::now() + Duration::from_secs(10);
        while queue.lock().waiters < 2 {
            assert!(Instant::now() < deadline, "the takers never waited");
            std::thread::yield_now();
        }
        let started = Instant::now();
        {
            // Two pushes before either taker runs: one wake.
            let mut state = queue.lock();
            state.reports.push_back((1, ok()));
            state.reports.push_back((2, ok()));
        }
        queue.ready.notify_one();
        let mut tags: Vec<u64> = takers.into_iter().flat_map(|t| t.join().unwrap()).map(|(tag, _)| tag).collect();
        tags.sort_unstable();
        assert_eq!(tags, vec![1, 2]);
        assert!(started.elapsed() < Duration::from_secs(10), "the second taker slept to its timeout");

        // Reports pushed one by one while a taker waits reach it, however
        // many come in before it runs.
        let q = Arc::clone(&queue);
        let taker = std::thread::spawn(move || {
            let mut all = Vec::new();
            let mut out = Vec::new();
            while all.len() < 100 {
                q.take(&mut out, 7, Duration::from_secs(30));
                assert!(!out.is_empty(), "a take timed out with reports pushed");
                all.append(&mut out);
            }
            all
        });
        for tag in 0..100 {
            queue.push(tag, ok());
        }
        let tags: Vec<u64> = taker.join().unwrap().into_iter().map(|(tag, _)| tag).collect();
        assert_eq!(tags, (0..100).collect::<Vec<_>>());
    }

    #[test]
    fn a_waiter_is_woken_by_the_last_report() {
        let batch = Arc::new(Batch::new(2));
        let b = Arc::clone(&batch);
        let waiter = std::thread::spawn(move || b.wait(Duration::from_secs(30)));
        let deadline = Instant::now() + Duration::from_secs(10);
        while batch.lock().waiters == 0 {
            assert!(Instant::now() < deadline, "the waiter never waited");
            std::thread::yield_now();
        }
        batch.complete(0, ok());
        batch.complete(1, ok());
        waiter.join().unwrap().expect("woken");
        assert!(batch.failure().is_none());
    }
}
