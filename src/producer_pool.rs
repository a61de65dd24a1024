//! A pool of Kafka producers: the pool core, the Kafka producers and the
//! monitor put together, plus the process-wide global pool. This is the Rust
//! API the C ABI wraps one to one.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use crate::error::{Error, ErrorKind, Result};
use crate::events::{self, Event, EventKind, Origin};
use crate::kafka::transaction::deadline_after;
use crate::kafka::{Batch, Completion, Ended, Message, Outcome, Producer, ProducerConfig};
use crate::pool::{
    CheckoutError, CloseReport, Created, Lease, Manager, Options, Owner, OwnerId, Pool, PoolEvent, Stats, MAX_SIZE,
};

pub struct ProducerManager {
    configs: Vec<ProducerConfig>,
    /// Known once the pool exists (it assigns the id).
    origin: OnceLock<Origin>,
}

pub type ProducerLease = Lease<ProducerManager>;

impl ProducerManager {
    fn origin(&self) -> Origin {
        self.origin.get().copied().unwrap_or_default()
    }

    fn event(&self, kind: EventKind) -> Event {
        self.origin().event(kind)
    }
}

impl Manager for ProducerManager {
    type Conn = Producer;
    type Error = Error;

    fn create(&self, index: usize) -> Result<Producer> {
        match self.create_within(index, Duration::MAX)? {
            Created::Ready(producer) => Ok(producer),
            Created::Unfinished { finish, .. } => finish(),
        }
    }

    fn create_within(&self, index: usize, budget: Duration) -> Result<Created<Producer, Error>> {
        Producer::create(&self.configs[index], self.origin(), index, budget)
    }

    fn is_broken(&self, producer: &Producer) -> bool {
        producer.is_broken()
    }

    fn is_known_broken(&self, producer: &Producer) -> bool {
        producer.is_known_broken()
    }

    fn close(&self, producer: Arc<Producer>, force: bool) -> u64 {
        producer.close(force)
    }

    /// Events of the pool's own threads are queued for the drain: user code
    /// never runs on them.
    fn on_background_thread(&self) {
        events::on_library_thread();
    }

    fn on_event(&self, event: PoolEvent) {
        if !events::has_subscribers() {
            return;
        }
        let e = match event {
            PoolEvent::CheckoutTimeout { waited, available, .. } => {
                let mut e = self.event(EventKind::CheckoutTimeout);
                e.waited_ms = waited.as_millis() as u64;
                e.available = available;
                e
            }
            PoolEvent::ConnReplaced { index } => {
                let mut e = self.event(EventKind::ProducerReplaced);
                e.slot = Some(index);
                e.producer_id = Some(self.configs[index].id_or(self.origin().pool_id, index));
                e
            }
            PoolEvent::ForkReload { begin: true } => self.event(EventKind::Reload),
            PoolEvent::ForkReload { begin: false } => self.event(EventKind::Reloaded),
        };
        events::emit(&e);
    }
}

/// What a producer's owner does with it: every call acts for the lease's
/// owner (a thread's lease for whichever thread calls), so transactions
/// belong to their owner.
impl Lease<ProducerManager> {
    fn who(&self) -> OwnerId {
        self.owner().acting()
    }

    /// Produces and waits for the reports, at most `max_wait_timeout`.
    pub fn produce_sync(&self, messages: &[Message<'_>]) -> Result<Arc<Batch>> {
        self.produce_sync_as(self.who(), messages, self.max_wait())
    }

    pub fn produce_async(&self, messages: &[Message<'_>]) -> Result<Arc<Batch>> {
        self.produce_async_as(self.who(), messages)
    }

    /// Waits for everything queued, at most `max_wait_timeout`.
    pub fn flush(&self) -> Result<()> {
        Producer::flush(self, self.max_wait())
    }

    pub fn begin_transaction(&self) -> Result<()> {
        self.begin_as(self.who(), deadline_after(self.max_wait()))
    }

    pub fn end_transaction(&self, outcome: Outcome) -> Result<Ended> {
        self.end_as(self.who(), outcome, deadline_after(self.max_wait()))
    }

    pub fn commit_transaction(&self) -> Result<Ended> {
        self.end_transaction(Outcome::Commit)
    }

    pub fn abort_transaction(&self) -> Result<Ended> {
        self.end_transaction(Outcome::Abort)
    }

    /// Runs `body` as a transaction (or a level of the owner's open one).
    pub fn transaction(&self, body: impl FnOnce() -> Result<Completion>) -> Result<Completion> {
        self.transaction_as(self.who(), deadline_after(self.max_wait()), body)
    }
}

pub struct ProducerPool {
    pool: Pool<ProducerManager>,
    shut_down: AtomicBool,
}

impl ProducerPool {
    /// Builds a pool of `options.size` producers (1 to [`MAX_SIZE`]).
    /// `configure` runs once per slot, now, with the slot's zero-based index;
    /// producers themselves are created on first use, so no broker needs to
    /// be reachable yet.
    pub fn new(
        options: Options,
        mut configure: impl FnMut(&mut ProducerConfig, usize) -> Result<()>,
        global: bool,
    ) -> Result<Self> {
        if !(1..=MAX_SIZE).contains(&options.size) {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!("pool size must be 1 to {MAX_SIZE}, not {}", options.size),
            ));
        }
        let mut configs = Vec::with_capacity(options.size);
        for index in 0..options.size {
            let mut config = ProducerConfig::default();
            configure(&mut config, index).map_err(|e| e.prefixed(format_args!("configuring producer {index}")))?;
            configs.push(config);
        }
        let manager = ProducerManager { configs, origin: OnceLock::new() };
        let pool = Pool::new(manager, options);
        let origin = Origin {
            pool_id: pool.id(),
            global,
            size: options.size,
            timeout_ms: u64::try_from(options.timeout.as_millis()).unwrap_or(u64::MAX),
        };
        let _ = pool.manager().origin.set(origin);
        let this = ProducerPool { pool, shut_down: AtomicBool::new(false) };
        this.emit(EventKind::Created);
        if global {
            this.emit(EventKind::Setup);
        }
        Ok(this)
    }

    fn emit(&self, kind: EventKind) {
        if events::has_subscribers() {
            events::emit(&self.pool.manager().event(kind));
        }
    }

    pub fn id(&self) -> u64 {
        self.pool.id()
    }

    pub fn options(&self) -> Options {
        self.pool.options()
    }

    pub fn is_global(&self) -> bool {
        self.pool.manager().origin().global
    }

    /// Checks a producer out for the calling thread.
    pub fn checkout(&self, timeout: Option<Duration>) -> Result<ProducerLease> {
        self.checkout_as(Owner::Thread, timeout)
    }

    /// Checks a producer out for `owner`, waiting at most `timeout` (the
    /// pool's when `None`) for a free one and for its creation.
    #[inline]
    pub fn checkout_as(&self, owner: Owner, timeout: Option<Duration>) -> Result<ProducerLease> {
        self.pool.checkout_as(owner, timeout).map_err(checkout_error)
    }

    /// A producer for `owner` only if one is free now: never waits, never
    /// creates one, counts no checkout timeout.
    #[inline]
    pub fn try_checkout_as(&self, owner: Owner) -> Result<Option<ProducerLease>> {
        self.pool.try_checkout_as(owner).map_err(checkout_error)
    }

    /// Runs `body` with a producer for the calling thread; it goes back to
    /// the pool whatever happens. A transaction that `body` opened and left
    /// open is aborted, and that is an error.
    pub fn with<T>(&self, timeout: Option<Duration>, body: impl FnOnce(&ProducerLease) -> Result<T>) -> Result<T> {
        self.pool.with(timeout, |lease| guarded(lease, body)).map_err(checkout_error)?
    }

    /// `with` for `owner` (see [`Pool::with_as`] for `wait`): `Ok(None)`
    /// when `wait` is `None` and no producer is free now.
    #[inline]
    pub fn with_as<T>(
        &self,
        owner: Owner,
        wait: Option<Option<Duration>>,
        body: impl FnOnce(&ProducerLease) -> Result<T>,
    ) -> Result<Option<T>> {
        self.pool.with_as(owner, wait, |lease| guarded(lease, body)).map_err(checkout_error)?.transpose()
    }

    /// Runs `body` in a transaction on a producer: committed when it returns
    /// `Commit`, rolled back when it fails or returns `Abort`.
    pub fn transaction(
        &self,
        timeout: Option<Duration>,
        body: impl FnOnce(&ProducerLease) -> Result<Completion>,
    ) -> Result<Completion> {
        self.with(timeout, |lease| lease.transaction(|| body(lease)))
    }

    /// Closes the pool; see [`Pool::close`]. Fires `shutdown` once, on the
    /// thread of the first close.
    pub fn close(&self, force: bool) -> CloseReport {
        let report = self.pool.close(force);
        if !self.shut_down.swap(true, Ordering::AcqRel) && events::has_subscribers() {
            let mut e = self.pool.manager().event(EventKind::Shutdown);
            e.undelivered = report.undelivered;
            events::emit(&e);
        }
        report
    }

    /// Closed, or closing.
    pub fn is_closed(&self) -> bool {
        self.pool.is_closed()
    }

    /// Closes idle producers (recreated on demand) and replaces checked-out
    /// ones when they come back. Fires `reload` before and `reloaded` after.
    pub fn reload(&self) -> Result<u64> {
        if self.pool.is_closed() {
            return Err(closed_error());
        }
        self.emit(EventKind::Reload);
        let undelivered = self.pool.reload();
        self.emit(EventKind::Reloaded);
        Ok(undelivered)
    }

    pub fn stats(&self) -> Stats {
        self.pool.stats()
    }
}

/// Dropping a pool never waits and never calls back: when it is not closed
/// yet, a thread of wdpool's closes it gracefully in the background, and
/// its shutdown event is queued for `events::drain`.
impl Drop for ProducerPool {
    fn drop(&mut self) {
        if self.shut_down.swap(true, Ordering::AcqRel) || self.pool.is_closed() {
            return;
        }
        let pool = self.pool.clone();
        let shutdown = events::has_subscribers().then(|| self.pool.manager().event(EventKind::Shutdown));
        let _ = std::thread::Builder::new().name("wdpool-close".into()).spawn(move || {
            events::on_library_thread();
            let report = pool.close(false);
            if let Some(mut e) = shutdown {
                e.undelivered = report.undelivered;
                events::enqueue(e);
            }
        });
    }
}

fn checkout_error(e: CheckoutError<Error>) -> Error {
    match e {
        CheckoutError::Create(e) => e,
        CheckoutError::Closed => closed_error(),
        timeout @ CheckoutError::Timeout { .. } => Error::new(ErrorKind::Timeout, timeout.to_string()),
    }
}

pub(crate) fn closed_error() -> Error {
    Error::new(ErrorKind::Closed, "the pool is closed")
}

/// Notices a transaction opened during a lease (by its owner, or by another
/// thread sharing a thread's lease) and left open at its end, and rolls it
/// back: a producer never goes back to the pool with a transaction open.
/// Runs `body` on a lease of `with` / `with_as`: a transaction it opened
/// and left open is rolled back, and that is an error.
#[inline(always)]
fn guarded<T>(lease: &ProducerLease, body: impl FnOnce(&ProducerLease) -> Result<T>) -> Result<T> {
    let guard = TxnLeftOpenGuard::new(lease);
    let result = body(lease);
    guard.finish(result)
}

pub(crate) struct TxnLeftOpenGuard<'a> {
    producer: &'a Producer,
    open_before: bool,
}

impl<'a> TxnLeftOpenGuard<'a> {
    #[inline]
    pub(crate) fn new(producer: &'a Producer) -> Self {
        TxnLeftOpenGuard { producer, open_before: producer.in_transaction() }
    }

    /// For a lease that was checked out earlier, when `open_before` was read.
    #[inline]
    pub(crate) fn resume(producer: &'a Producer, open_before: bool) -> Self {
        TxnLeftOpenGuard { producer, open_before }
    }

    /// Rolls back what was left open; whether there was something.
    #[inline]
    fn roll_back_left_open(&self) -> bool {
        !self.open_before
            && self.producer.in_transaction()
            && self.producer.abort_open_transaction(None, deadline_after(self.producer.max_wait()))
    }

    // Inlined: on the checkin of every lease, where it is a flag test for
    // a producer without a transactional.id (it moved a whole `Result`
    // through memory as a call).
    #[inline]
    pub(crate) fn finish<T>(self, result: Result<T>) -> Result<T> {
        let left_open = self.roll_back_left_open();
        std::mem::forget(self);
        match result {
            Ok(_) if left_open => Err(Error::new(
                ErrorKind::TransactionAborted,
                "a transaction was still open when the producer was returned; it was rolled back",
            )),
            result => result,
        }
    }
}

impl Drop for TxnLeftOpenGuard<'_> {
    fn drop(&mut self) {
        self.roll_back_left_open();
    }
}

// ---------------------------------------------------------------------------
// The global pool.

static GLOBAL: RwLock<Option<Arc<ProducerPool>>> = RwLock::new(None);

fn global_slot() -> Option<Arc<ProducerPool>> {
    GLOBAL.read().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Sets up the global pool. A previous global pool is closed gracefully
/// after the new one is in place.
pub fn setup(options: Options, configure: impl FnMut(&mut ProducerConfig, usize) -> Result<()>) -> Result<()> {
    let pool = Arc::new(ProducerPool::new(options, configure, true)?);
    let previous = GLOBAL.write().unwrap_or_else(|e| e.into_inner()).replace(pool);
    if let Some(previous) = previous {
        previous.close(false);
    }
    Ok(())
}

/// The global pool: `NotSetUp` before `setup`, `Closed` after `close`.
pub fn global() -> Result<Arc<ProducerPool>> {
    match global_slot() {
        Some(pool) if pool.is_closed() => Err(closed_error()),
        Some(pool) => Ok(pool),
        None => Err(Error::new(ErrorKind::NotSetUp, "no global pool is set up: call setup first")),
    }
}

/// Whether a global pool is set up and not closed.
pub fn is_active() -> bool {
    global().is_ok()
}

/// Closes the global pool; harmless when there is none. A close already
/// running is waited for, and its report returned.
pub fn close_global(force: bool) -> CloseReport {
    global_slot().map(|p| p.close(force)).unwrap_or_default()
}

/// Reloads the global pool; a harmless no-op (returning 0) when there is
/// none, as WaterDrop's `reload` is, so a process may reload after `fork()`
/// unconditionally.
pub fn reload_global() -> Result<u64> {
    match global_slot() {
        Some(pool) => pool.reload(),
        None => Ok(0),
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::CString;
    use std::time::Instant;

    use rdkafka::bindings as rdsys;
    use rdkafka::producer::Producer as _;

    use super::*;

    /// A fatal error raised while the producer is idle in the pool (by
    /// librdkafka's own test hook, as its idempotence or transaction code
    /// would): once its error callback has run, the next checkout does not
    /// hand the producer out but gets the slot a fresh one. (Checkouts ask
    /// only the mark the callback sets: `Producer::is_known_broken`.)
    #[test]
    fn a_fatal_error_raised_while_idle_replaces_the_producer_at_the_next_checkout() {
        let cluster = rdkafka::mocking::MockCluster::new(1).expect("mock cluster");
        cluster.create_topic("fatal-idle", 1, 1).expect("topic");
        let bootstrap = cluster.bootstrap_servers();
        let options = Options { size: 1, timeout: Duration::from_secs(5) };
        let pool = ProducerPool::new(
            options,
            |c, _| {
                c.set_kafka("bootstrap.servers", &bootstrap)?;
                c.set_kafka("enable.idempotence", "true")?;
                c.max_wait_timeout = Duration::from_secs(10);
                Ok(())
            },
            false,
        )
        .expect("pool");
        let first = pool
            .with(None, |p| {
                p.produce_sync(&[Message::new("fatal-idle", Some(b"before"))])?;
                Ok(Arc::clone(p.conn()))
            })
            .expect("warm-up");
        let rk = first.kafka().expect("a librdkafka producer").client().native_ptr();
        let reason = CString::new("raised by the test").unwrap();
        // SAFETY: a live producer (`first` holds it); the reason is copied.
        let rc = unsafe {
            rdsys::rd_kafka_test_fatal_error(
                rk,
                rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER,
                reason.as_ptr(),
            )
        };
        assert_eq!(rc, rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !first.is_known_broken() {
            assert!(Instant::now() < deadline, "the error callback never marked the producer");
            std::thread::sleep(Duration::from_millis(2));
        }
        assert_eq!(pool.stats().replaced, 0, "idle: nothing replaced it yet");

        let fresh = pool
            .with(None, |p| {
                p.produce_sync(&[Message::new("fatal-idle", Some(b"after"))])?;
                Ok(!Arc::ptr_eq(p.conn(), &first) && p.index() == 0)
            })
            .expect("a fresh producer for the slot");
        assert!(fresh, "the broken producer was handed out");
        let stats = pool.stats();
        assert_eq!((stats.replaced, stats.creations), (1, 2), "{stats:?}");
    }
}
