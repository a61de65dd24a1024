//! The monitor: event kinds, payloads, subscribers and the drain queue.
//!
//! Lifecycle events (created, setup, shutdown, reload, reloaded, checkout
//! timeout, producer replaced, transactions) are dispatched synchronously on
//! the thread that caused them. Events born on librdkafka's own threads
//! (errors, statistics) are queued and dispatched only when the user calls
//! [`drain`], so no user code ever runs on a library thread.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Created,
    Setup,
    Shutdown,
    Reload,
    Reloaded,
    CheckoutTimeout,
    ProducerReplaced,
    TransactionStarted,
    TransactionCommitted,
    TransactionAborted,
    Error,
    Statistics,
}

impl EventKind {
    pub fn name(self) -> &'static str {
        match self {
            EventKind::Created => "connection_pool.created",
            EventKind::Setup => "connection_pool.setup",
            EventKind::Shutdown => "connection_pool.shutdown",
            EventKind::Reload => "connection_pool.reload",
            EventKind::Reloaded => "connection_pool.reloaded",
            EventKind::CheckoutTimeout => "connection_pool.checkout_timeout",
            EventKind::ProducerReplaced => "connection_pool.producer_replaced",
            EventKind::TransactionStarted => "transaction.started",
            EventKind::TransactionCommitted => "transaction.committed",
            EventKind::TransactionAborted => "transaction.aborted",
            EventKind::Error => "error.occurred",
            EventKind::Statistics => "statistics.emitted",
        }
    }
}

/// One event. Fields that do not apply are zero, `None` or empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    pub pool_id: u64,
    /// The event concerns the global pool.
    pub global: bool,
    pub size: usize,
    pub timeout_ms: u64,
    /// The producer's slot, when the event concerns one producer.
    pub slot: Option<usize>,
    /// The producer's id (wdpool's `id` setting), when it concerns one.
    pub producer_id: Option<String>,
    /// Checkout timeouts: how long the caller waited, and how many were free.
    pub waited_ms: u64,
    pub available: usize,
    /// Shutdown: messages not delivered.
    pub undelivered: u64,
    /// librdkafka's error code for errors, 0 otherwise.
    pub error_code: i32,
    /// Error text, or the statistics JSON.
    pub message: String,
}

/// The pool an event comes from, as every event of it reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Origin {
    pub pool_id: u64,
    pub global: bool,
    pub size: usize,
    pub timeout_ms: u64,
}

impl Origin {
    pub fn event(&self, kind: EventKind) -> Event {
        let mut e = Event::new(kind, self.pool_id);
        e.global = self.global;
        e.size = self.size;
        e.timeout_ms = self.timeout_ms;
        e
    }
}

impl Event {
    pub fn new(kind: EventKind, pool_id: u64) -> Self {
        Event {
            kind,
            pool_id,
            global: false,
            size: 0,
            timeout_ms: 0,
            slot: None,
            producer_id: None,
            waited_ms: 0,
            available: 0,
            undelivered: 0,
            error_code: 0,
            message: String::new(),
        }
    }
}

pub type Callback = dyn Fn(&Event) + Send + Sync;

struct Subscriber {
    id: u64,
    callback: Box<Callback>,
}

/// Events waiting for [`drain`]: the oldest are dropped past this many...
pub const QUEUE_CAPACITY: usize = 10_000;
/// ...or past this many bytes of text (statistics JSON can be large).
pub const QUEUE_CAPACITY_BYTES: usize = 16 << 20;

/// Bytes an event holds in the queue.
fn weight(e: &Event) -> usize {
    std::mem::size_of::<Event>() + e.message.len() + e.producer_id.as_ref().map_or(0, String::len)
}

struct Queue {
    events: VecDeque<Event>,
    bytes: usize,
    /// Drainers waiting for an event.
    waiting: usize,
    max_events: usize,
    max_bytes: usize,
}

/// The queue's state, for a binding that wants to warn.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueStats {
    pub queued: usize,
    pub queued_bytes: usize,
    /// Events dropped (oldest first) because the queue was full, over the
    /// process's life.
    pub dropped: u64,
    pub max_events: usize,
    pub max_bytes: usize,
}

struct Monitor {
    /// Copy-on-write list: dispatch clones the `Arc` and calls without a lock,
    /// so a subscriber may subscribe or unsubscribe from inside a callback.
    subscribers: Mutex<Arc<Vec<Arc<Subscriber>>>>,
    count: AtomicUsize,
    next_id: AtomicU64,
    queue: Mutex<Queue>,
    queued: Condvar,
    dropped: AtomicU64,
}

fn monitor() -> &'static Monitor {
    static MONITOR: OnceLock<Monitor> = OnceLock::new();
    MONITOR.get_or_init(|| Monitor {
        subscribers: Mutex::new(Arc::new(Vec::new())),
        count: AtomicUsize::new(0),
        next_id: AtomicU64::new(1),
        queue: Mutex::new(Queue {
            events: VecDeque::new(),
            bytes: 0,
            waiting: 0,
            max_events: QUEUE_CAPACITY,
            max_bytes: QUEUE_CAPACITY_BYTES,
        }),
        queued: Condvar::new(),
        dropped: AtomicU64::new(0),
    })
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Replaces the subscriber list with `edit`'s result. The old list is
/// dropped after the lock is released: dropping it may drop the last
/// reference to a subscriber, whose finalizer may subscribe, unsubscribe or
/// free a pool.
fn edit_subscribers<R>(edit: impl FnOnce(&mut Vec<Arc<Subscriber>>) -> R) -> R {
    let m = monitor();
    let mut subs = lock(&m.subscribers);
    let mut next = Vec::clone(&subs);
    let result = edit(&mut next);
    m.count.store(next.len(), Ordering::Release);
    let old = std::mem::replace(&mut *subs, Arc::new(next));
    drop(subs);
    drop(old);
    result
}

/// Adds a subscriber for every event of every pool; returns its id. The
/// callback (and what it captured) is dropped once unsubscribed and no
/// dispatch still uses it, never under a lock of the monitor.
pub fn subscribe(callback: Box<Callback>) -> u64 {
    let id = monitor().next_id.fetch_add(1, Ordering::Relaxed);
    edit_subscribers(|subs| subs.push(Arc::new(Subscriber { id, callback })));
    id
}

/// Removes a subscriber; false when the id is unknown.
pub fn unsubscribe(id: u64) -> bool {
    let mut removed = Vec::new();
    let found = edit_subscribers(|subs| {
        let (gone, kept): (Vec<_>, Vec<_>) = subs.drain(..).partition(|s| s.id == id);
        *subs = kept;
        removed = gone;
        !removed.is_empty()
    });
    // The removed subscriber is dropped here, outside every lock (or later,
    // by the last dispatch still using it).
    drop(removed);
    found
}

/// Whether anyone listens; lets callers skip building events.
pub fn has_subscribers() -> bool {
    monitor().count.load(Ordering::Acquire) > 0
}

thread_local! {
    static LIBRARY_THREAD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Marks the calling thread as one of wdpool's own (a background close or
/// creation): events it emits are queued for [`drain`], never dispatched on
/// it.
pub fn on_library_thread() {
    let _ = LIBRARY_THREAD.try_with(|t| t.set(true));
}

/// Dispatches now, on the calling thread (queued instead when that is one
/// of wdpool's own threads).
pub fn emit(event: &Event) {
    if !has_subscribers() {
        return;
    }
    if LIBRARY_THREAD.try_with(|t| t.get()).unwrap_or(false) {
        enqueue(event.clone());
        return;
    }
    let subs = Arc::clone(&lock(&monitor().subscribers));
    for sub in subs.iter() {
        (sub.callback)(event);
    }
}

/// Queues an event born on a library thread, for [`drain`]. When the queue
/// is full (in count or in bytes) the oldest events are dropped and counted.
/// Never blocks for long and never calls user code.
pub fn enqueue(event: Event) {
    if !has_subscribers() {
        return;
    }
    let m = monitor();
    let size = weight(&event);
    let mut q = lock(&m.queue);
    let mut dropped = 0;
    while !q.events.is_empty() && (q.events.len() >= q.max_events || q.bytes + size > q.max_bytes) {
        if let Some(old) = q.events.pop_front() {
            q.bytes -= weight(&old);
            dropped += 1;
        }
    }
    if size > q.max_bytes || q.max_events == 0 {
        // Larger than the whole queue: dropped itself.
        dropped += 1;
    } else {
        q.bytes += size;
        q.events.push_back(event);
    }
    let wake = q.waiting > 0;
    drop(q);
    if dropped > 0 {
        m.dropped.fetch_add(dropped, Ordering::Relaxed);
    }
    if wake {
        m.queued.notify_one();
    }
}

fn pop(q: &mut Queue) -> Option<Event> {
    let e = q.events.pop_front()?;
    q.bytes -= weight(&e);
    Some(e)
}

/// Dispatches queued events on the calling thread: waits up to `timeout`
/// for the first one, then takes what is queued, at most `max` in all.
/// Returns how many were dispatched.
pub fn drain(timeout: Duration, max: usize) -> usize {
    let m = monitor();
    let deadline = Instant::now().checked_add(timeout);
    let mut count = 0;
    while count < max {
        let mut q = lock(&m.queue);
        let mut next = pop(&mut q);
        while next.is_none() && count == 0 {
            let left = deadline.map_or(Duration::from_secs(3600), |d| d.saturating_duration_since(Instant::now()));
            if left.is_zero() {
                break;
            }
            q.waiting += 1;
            q = m.queued.wait_timeout(q, left).unwrap_or_else(|e| e.into_inner()).0;
            q.waiting -= 1;
            next = pop(&mut q);
        }
        drop(q);
        let Some(event) = next else { break };
        emit(&event);
        count += 1;
    }
    count
}

/// Bounds the queue: at most `max_events` events and `max_bytes` bytes
/// (0 events: queue nothing). Events beyond the new bounds are dropped now,
/// oldest first, and counted.
pub fn set_queue_limits(max_events: usize, max_bytes: usize) {
    let m = monitor();
    let mut q = lock(&m.queue);
    q.max_events = max_events;
    q.max_bytes = max_bytes;
    let mut dropped = 0;
    while q.events.len() > max_events || q.bytes > max_bytes {
        let Some(old) = q.events.pop_front() else { break };
        q.bytes -= weight(&old);
        dropped += 1;
    }
    drop(q);
    m.dropped.fetch_add(dropped, Ordering::Relaxed);
}

pub fn queue_stats() -> QueueStats {
    let m = monitor();
    let q = lock(&m.queue);
    QueueStats {
        queued: q.events.len(),
        queued_bytes: q.bytes,
        dropped: m.dropped.load(Ordering::Relaxed),
        max_events: q.max_events,
        max_bytes: q.max_bytes,
    }
}
