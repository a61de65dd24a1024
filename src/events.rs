//! The monitor: event kinds, payloads, subscribers and the drain queue.
//!
//! Lifecycle events (created, setup, shutdown, reload, reloaded, checkout
//! timeout, producer replaced, transactions) are dispatched synchronously on
//! the thread that caused them. Events born on librdkafka's own threads
//! (errors, statistics) are queued and dispatched only when the user calls
//! [`drain`], so no user code ever runs on a library thread.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use crossbeam_channel::{self as channel, Receiver, Sender, TrySendError};

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

/// Events waiting for [`drain`]; the oldest are dropped past this many.
pub const QUEUE_CAPACITY: usize = 10_000;

struct Monitor {
    /// Copy-on-write list: dispatch clones the `Arc` and calls without a lock,
    /// so a subscriber may subscribe or unsubscribe from inside a callback.
    subscribers: Mutex<Arc<Vec<Arc<Subscriber>>>>,
    count: AtomicUsize,
    next_id: AtomicU64,
    queue_tx: Sender<Event>,
    queue_rx: Receiver<Event>,
    dropped: AtomicU64,
}

fn monitor() -> &'static Monitor {
    static MONITOR: OnceLock<Monitor> = OnceLock::new();
    MONITOR.get_or_init(|| {
        let (queue_tx, queue_rx) = channel::bounded(QUEUE_CAPACITY);
        Monitor {
            subscribers: Mutex::new(Arc::new(Vec::new())),
            count: AtomicUsize::new(0),
            next_id: AtomicU64::new(1),
            queue_tx,
            queue_rx,
            dropped: AtomicU64::new(0),
        }
    })
}

/// Adds a subscriber for every event of every pool; returns its id. The
/// callback (and what it captured) is dropped once unsubscribed and no
/// dispatch still uses it.
pub fn subscribe(callback: Box<Callback>) -> u64 {
    let m = monitor();
    let id = m.next_id.fetch_add(1, Ordering::Relaxed);
    let mut subs = m.subscribers.lock().unwrap_or_else(|e| e.into_inner());
    let mut next = Vec::clone(&subs);
    next.push(Arc::new(Subscriber { id, callback }));
    m.count.store(next.len(), Ordering::Release);
    *subs = Arc::new(next);
    id
}

/// Removes a subscriber; false when the id is unknown.
pub fn unsubscribe(id: u64) -> bool {
    let m = monitor();
    let removed;
    {
        let mut subs = m.subscribers.lock().unwrap_or_else(|e| e.into_inner());
        let mut next = Vec::clone(&subs);
        let before = next.len();
        next.retain(|s| s.id != id);
        removed = next.len() != before;
        m.count.store(next.len(), Ordering::Release);
        *subs = Arc::new(next);
    }
    // Dropping the old list (outside the lock) may run the finalizer.
    removed
}

/// Whether anyone listens; lets callers skip building events.
pub fn has_subscribers() -> bool {
    monitor().count.load(Ordering::Acquire) > 0
}

/// Dispatches now, on the calling thread.
pub fn emit(event: &Event) {
    if !has_subscribers() {
        return;
    }
    let subs = Arc::clone(&monitor().subscribers.lock().unwrap_or_else(|e| e.into_inner()));
    for sub in subs.iter() {
        (sub.callback)(event);
    }
}

/// Queues an event born on a library thread, for [`drain`]. When the queue is
/// full the oldest event is dropped (and counted in [`dropped`]).
pub fn enqueue(event: Event) {
    if !has_subscribers() {
        return;
    }
    let m = monitor();
    let mut event = event;
    loop {
        match m.queue_tx.try_send(event) {
            Ok(()) => return,
            Err(TrySendError::Full(back)) => {
                if m.queue_rx.try_recv().is_ok() {
                    m.dropped.fetch_add(1, Ordering::Relaxed);
                }
                event = back;
            }
            Err(TrySendError::Disconnected(_)) => return,
        }
    }
}

/// Dispatches queued events on the calling thread: waits up to `timeout` for
/// the first one, then takes what is queued, at most `max` in all. Returns
/// how many were dispatched.
pub fn drain(timeout: Duration, max: usize) -> usize {
    let m = monitor();
    let mut count = 0;
    while count < max {
        let next = if count == 0 && !timeout.is_zero() {
            m.queue_rx.recv_timeout(timeout).ok()
        } else {
            m.queue_rx.try_recv().ok()
        };
        let Some(event) = next else { break };
        emit(&event);
        count += 1;
    }
    count
}

/// Events queued and not yet drained.
pub fn pending() -> usize {
    monitor().queue_rx.len()
}

/// Events dropped because the queue was full.
pub fn dropped() -> u64 {
    monitor().dropped.load(Ordering::Relaxed)
}
