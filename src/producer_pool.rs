//! A pool of Kafka producers: the pool core, the Kafka producers and the
//! monitor put together, plus the process-wide global pool. This is the Rust
//! API the C ABI wraps one to one.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use crate::error::{Error, ErrorKind, Result};
use crate::events::{self, Event, EventKind, Origin};
use crate::kafka::{Completion, Producer, ProducerConfig};
use crate::pool::{CheckoutError, CloseReport, Lease, Manager, Options, Pool, PoolEvent, Stats};

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
        Producer::create(&self.configs[index], self.origin(), index)
    }

    fn is_broken(&self, producer: &Producer) -> bool {
        producer.is_broken()
    }

    fn close(&self, producer: Arc<Producer>, force: bool) -> u64 {
        producer.close(force)
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

pub struct ProducerPool {
    pool: Pool<ProducerManager>,
    shut_down: AtomicBool,
}

impl ProducerPool {
    /// Builds a pool of `options.size` producers. `configure` runs once per
    /// slot, now, with the slot's zero-based index; producers themselves are
    /// created on first use, so no broker needs to be reachable yet.
    pub fn new(
        options: Options,
        mut configure: impl FnMut(&mut ProducerConfig, usize) -> Result<()>,
        global: bool,
    ) -> Result<Self> {
        if options.size == 0 {
            return Err(Error::new(ErrorKind::InvalidArgument, "pool size must be at least 1"));
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

    /// Checks a producer out, waiting at most `timeout` (the pool's when
    /// `None`). Re-entrant per thread.
    pub fn checkout(&self, timeout: Option<Duration>) -> Result<ProducerLease> {
        self.pool.checkout(timeout).map_err(|e| match e {
            CheckoutError::Create(e) => e,
            CheckoutError::Closed => closed_error(),
            timeout @ CheckoutError::Timeout { .. } => Error::new(ErrorKind::Timeout, timeout.to_string()),
        })
    }

    /// Runs `body` with a producer; it goes back to the pool whatever happens.
    /// A transaction that `body` opened and left open is aborted, and that is
    /// an error.
    pub fn with<T>(&self, timeout: Option<Duration>, body: impl FnOnce(&ProducerLease) -> Result<T>) -> Result<T> {
        let lease = self.checkout(timeout)?;
        let guard = TxnLeftOpenGuard::new(&lease);
        let result = body(&lease);
        guard.finish(result)
    }

    /// Runs `body` in a transaction on a producer: committed when it returns
    /// `Commit`, aborted when it fails or returns `Abort`.
    pub fn transaction(
        &self,
        timeout: Option<Duration>,
        body: impl FnOnce(&ProducerLease) -> Result<Completion>,
    ) -> Result<Completion> {
        self.with(timeout, |lease| lease.transaction(|| body(lease)))
    }

    /// Closes the pool; see [`Pool::close`]. Fires `shutdown` once.
    pub fn close(&self, force: bool) -> CloseReport {
        let report = self.pool.close(force);
        if !self.shut_down.swap(true, Ordering::AcqRel) && events::has_subscribers() {
            let mut e = self.pool.manager().event(EventKind::Shutdown);
            e.undelivered = report.undelivered;
            events::emit(&e);
        }
        report
    }

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

impl Drop for ProducerPool {
    fn drop(&mut self) {
        self.close(false);
    }
}

pub(crate) fn closed_error() -> Error {
    Error::new(ErrorKind::Closed, "the pool is closed")
}

/// Notices a transaction opened during a lease and left open at its end.
pub(crate) struct TxnLeftOpenGuard<'a> {
    producer: &'a Producer,
    open_before: bool,
}

impl<'a> TxnLeftOpenGuard<'a> {
    pub(crate) fn new(producer: &'a Producer) -> Self {
        TxnLeftOpenGuard { producer, open_before: producer.in_transaction() }
    }

    /// For a lease that was checked out earlier, when `open_before` was read.
    pub(crate) fn resume(producer: &'a Producer, open_before: bool) -> Self {
        TxnLeftOpenGuard { producer, open_before }
    }

    pub(crate) fn finish<T>(self, result: Result<T>) -> Result<T> {
        let producer = self.producer;
        let left_open = !self.open_before && producer.in_transaction();
        std::mem::forget(self);
        if !left_open {
            return result;
        }
        producer.abort_open_transaction();
        match result {
            Err(e) => Err(e),
            Ok(_) => Err(Error::new(
                ErrorKind::TransactionAborted,
                "a transaction was still open when the producer was returned; it was aborted",
            )),
        }
    }
}

impl Drop for TxnLeftOpenGuard<'_> {
    fn drop(&mut self) {
        if !self.open_before && self.producer.in_transaction() {
            self.producer.abort_open_transaction();
        }
    }
}

// ---------------------------------------------------------------------------
// The global pool.

static GLOBAL: RwLock<Option<Arc<ProducerPool>>> = RwLock::new(None);

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
    match GLOBAL.read().unwrap_or_else(|e| e.into_inner()).as_ref() {
        Some(pool) if pool.is_closed() => Err(closed_error()),
        Some(pool) => Ok(Arc::clone(pool)),
        None => Err(Error::new(ErrorKind::NotSetUp, "no global pool is set up: call setup first")),
    }
}

/// Whether a global pool is set up and not closed.
pub fn is_active() -> bool {
    global().is_ok()
}

/// Closes the global pool; harmless when there is none or it is closed.
pub fn close_global(force: bool) -> CloseReport {
    let pool = GLOBAL.read().unwrap_or_else(|e| e.into_inner()).clone();
    pool.map(|p| p.close(force)).unwrap_or_default()
}
