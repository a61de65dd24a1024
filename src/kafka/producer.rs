//! One pooled producer: librdkafka's threaded producer (or WaterDrop's
//! `deliver = false` test mode), produce paths, flush and close.

use std::collections::HashMap;
use std::ffi::{c_void, CString};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message as _;
use rdkafka::bindings as rdsys;
use rdkafka::producer::{Producer as _, PurgeConfig, ThreadedProducer};
use rdkafka::util::IntoOpaque;

use super::config::ProducerConfig;
use super::context::Context;
use super::delivery::{Batch, KeptQueues, QueueRef, Report, ReportQueue, Ticket};
use super::slots::ReportSlots;
use super::topics::Topics;
use super::message::Message;
use super::transaction::{deadline_after, Txn};
use crate::error::{Error, ErrorKind, Result};
use crate::events::Origin;
use crate::pool::{Created, OwnerId};

/// How long to keep a topic's partition count for `partition_key`.
const PARTITION_COUNT_TTL: Duration = Duration::from_secs(30);
/// The longest wait between two tries when librdkafka's queue is full.
const QUEUE_FULL_BACKOFF_MAX: Duration = Duration::from_millis(50);

pub(crate) enum Backend {
    Kafka(ThreadedProducer<Context>),
    /// `deliver = false`: validate and acknowledge without a broker.
    Test { next_offset: AtomicI64 },
}

/// Which topic a message goes to: a handle this producer keeps, or a name.
enum Target {
    Handle(*mut rdsys::rd_kafka_topic_t),
    Name(CString),
}

/// A message's headers in librdkafka's form: destroyed on drop, unless
/// librdkafka took them (a produce that succeeded: forgotten then).
struct Headers(*mut rdsys::rd_kafka_headers_t);

impl Headers {
    fn of(m: &Message<'_>) -> Self {
        // SAFETY: a new list, filled with copies of the borrowed keys and
        // values (librdkafka copies both, with their lengths).
        unsafe {
            let list = Headers(rdsys::rd_kafka_headers_new(m.headers.len()));
            for h in &m.headers {
                let (value, len) = h.value.map_or((std::ptr::null(), 0), |v| (v.as_ptr().cast::<c_void>(), v.len() as isize));
                rdsys::rd_kafka_header_add(list.0, h.key.as_ptr().cast(), h.key.len() as isize, value, len);
            }
            list
        }
    }
}

impl Drop for Headers {
    fn drop(&mut self) {
        // SAFETY: ours (librdkafka did not take it), destroyed once.
        unsafe { rdsys::rd_kafka_headers_destroy(self.0) };
    }
}

/// `rd_kafka_producev` for one message, copying payload and key.
///
/// # Safety
/// `rk` is a live producer and `target`'s handle one of its topics;
/// `headers` stays owned by the caller unless this returns NO_ERROR;
/// `opaque` is a `Ticket`'s pointer (or NULL).
#[inline]
unsafe fn producev(
    rk: *mut rdsys::rd_kafka_t,
    target: &Target,
    partition: i32,
    m: &Message<'_>,
    headers: Option<&Headers>,
    opaque: *mut c_void,
) -> rdsys::rd_kafka_resp_err_t {
    use rdsys::rd_kafka_vtype_t::*;
    fn bytes(b: Option<&[u8]>) -> (*mut c_void, usize) {
        b.map_or((std::ptr::null_mut(), 0), |b| (b.as_ptr() as *mut c_void, b.len()))
    }
    let (payload, payload_len) = bytes(m.payload);
    let (key, key_len) = bytes(m.key);
    let headers = headers.map_or(std::ptr::null_mut(), |h| h.0);
    let timestamp = m.timestamp_ms.unwrap_or(0);
    let flags = rdsys::RD_KAFKA_MSG_F_COPY;
    let (by, topic) = match target {
        Target::Handle(rkt) => (RD_KAFKA_VTYPE_RKT, rkt.cast::<c_void>().cast_const()),
        Target::Name(name) => (RD_KAFKA_VTYPE_TOPIC, name.as_ptr().cast::<c_void>()),
    };
    // SAFETY: as promised by the caller; the argument list is terminated.
    // Both kinds of target pass as one pointer.
    unsafe {
        rdsys::rd_kafka_producev(
            rk, by, topic, RD_KAFKA_VTYPE_PARTITION, partition, RD_KAFKA_VTYPE_MSGFLAGS, flags,
            RD_KAFKA_VTYPE_VALUE, payload, payload_len, RD_KAFKA_VTYPE_KEY, key, key_len,
            RD_KAFKA_VTYPE_OPAQUE, opaque, RD_KAFKA_VTYPE_TIMESTAMP, timestamp,
            RD_KAFKA_VTYPE_HEADERS, headers, RD_KAFKA_VTYPE_END,
        )
    }
}

/// Where the delivery reports of a send go.
#[derive(Clone, Copy)]
enum Track<'a> {
    /// Nowhere: the producer only counts them.
    Untracked,
    /// A [`Batch`] the caller waits on.
    Batch,
    /// A [`ReportQueue`], tagged from the given number on.
    Queue(&'a QueueRef, u64),
    /// [`ReportSlots`] armed from the given index on.
    Slots(&'a Arc<ReportSlots>, usize),
}

pub struct Producer {
    pub(crate) index: usize,
    pub(crate) id: String,
    pub(crate) origin: Origin,
    pub(crate) config: ProducerConfig,
    /// Before `backend`: its topic handles are given back (dropped) before
    /// the librdkafka producer is destroyed.
    topics: Topics,
    pub(crate) backend: Backend,
    /// Declared after `backend`, so dropped after it: the report queues
    /// this producer's tickets point to without a count stay alive until
    /// every ticket has ended with the librdkafka producer.
    queues: KeptQueues,
    pub(crate) context: Arc<Context>,
    pub(crate) txn: Txn,
    /// `config.is_transactional()`, read on every produce.
    transactional: bool,
    closed: AtomicBool,
    partition_counts: Mutex<HashMap<String, (i32, Instant)>>,
}

impl Producer {
    /// Creates the producer for slot `index`; a transactional one also runs
    /// `init_transactions`, waiting for it at most `budget`: when that is not
    /// enough, the rest (bounded by `max_wait_timeout`) is handed back to
    /// run in the background.
    pub fn create(config: &ProducerConfig, origin: Origin, index: usize, budget: Duration) -> Result<Created<Self, Error>> {
        let id = config.id_or(origin.pool_id, index);
        let context = Context::new(origin, index, id.clone(), config.is_transactional());
        let (backend, context) = if config.deliver {
            let client = config.client_config(&id);
            let producer: ThreadedProducer<Context> = client
                .create_with_context(context)
                .map_err(|e| Error::new(ErrorKind::InvalidConfig, format!("creating producer {id} failed: {e}")))?;
            let context = Arc::clone(producer.context());
            context.set_client(producer.client().native_ptr());
            (Backend::Kafka(producer), context)
        } else {
            (Backend::Test { next_offset: AtomicI64::new(0) }, Arc::new(context))
        };
        let producer = Producer {
            index,
            id,
            origin,
            config: config.clone(),
            topics: Topics::new(),
            backend,
            queues: KeptQueues::default(),
            context,
            txn: Txn::default(),
            transactional: config.is_transactional(),
            closed: AtomicBool::new(false),
            partition_counts: Mutex::new(HashMap::new()),
        };
        if !producer.is_transactional() {
            return Ok(Created::Ready(producer));
        }
        let started = Instant::now();
        match producer.init_transactions(budget.min(producer.max_wait())) {
            Ok(()) => Ok(Created::Ready(producer)),
            Err((true, e)) if budget < producer.max_wait() => {
                let pending = format!(
                    "producer {}: init_transactions did not finish in {} ms: {}",
                    producer.id,
                    started.elapsed().as_millis(),
                    e.message
                );
                let finish = Box::new(move || {
                    let rest = producer.max_wait().saturating_sub(started.elapsed());
                    producer.init_transactions(rest).map_err(|(_, e)| e)?;
                    Ok(producer)
                });
                Ok(Created::Unfinished { finish, pending })
            }
            Err((_, e)) => Err(e),
        }
    }

    pub fn index(&self) -> usize {
        self.index
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// The id of the pool this producer belongs to.
    pub fn pool_id(&self) -> u64 {
        self.origin.pool_id
    }

    pub fn config(&self) -> &ProducerConfig {
        &self.config
    }

    pub fn is_transactional(&self) -> bool {
        self.transactional
    }

    pub fn max_wait(&self) -> Duration {
        self.config.max_wait_timeout
    }

    pub(crate) fn kafka(&self) -> Option<&ThreadedProducer<Context>> {
        match &self.backend {
            Backend::Kafka(p) => Some(p),
            Backend::Test { .. } => None,
        }
    }

    /// A producer that must not be handed out again: fatal error, fenced, or
    /// closed.
    pub fn is_broken(&self) -> bool {
        self.is_known_broken() || self.context.client_fatal()
    }

    /// `is_broken` without asking librdkafka (whose fatal-error word is an
    /// atomic read-modify-write on a line its own threads write): closed,
    /// or marked broken (by a fatal error seen by wdpool or served to the
    /// error callback).
    #[inline]
    pub fn is_known_broken(&self) -> bool {
        self.closed.load(Ordering::Acquire) || self.context.is_broken()
    }

    /// The producer's fatal error, now that one was seen: marks it broken.
    fn fatal(&self) -> Error {
        self.mark_broken();
        match self.kafka().and_then(|p| p.client().fatal_error()) {
            Some((code, reason)) => {
                Error::new(ErrorKind::Fatal, format!("producer {} hit a fatal error: {reason}", self.id)).with_kafka_code(code)
            }
            None => Error::new(ErrorKind::Fatal, format!("producer {} hit a fatal error", self.id))
                .with_kafka_code(RDKafkaErrorCode::Fatal),
        }
        .with_kafka_flags(crate::error::kafka_flags::FATAL)
    }

    pub(crate) fn mark_broken(&self) {
        self.context.mark_broken();
    }

    fn ensure_not_closed(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::new(ErrorKind::Closed, format!("producer {} is closed", self.id)));
        }
        Ok(())
    }

    fn ensure_open(&self) -> Result<()> {
        self.ensure_not_closed()?;
        if self.context.client_fatal() {
            return Err(self.fatal());
        }
        Ok(())
    }

    /// Checks that the producer is usable and every message valid; nothing
    /// is sent when this fails.
    fn check(&self, messages: &[Message<'_>]) -> Result<()> {
        // No fatal-error check here: librdkafka refuses every message of a
        // producer with a fatal error, and `send` reports that as FATAL
        // with the reason. (The check is an atomic read-modify-write on a
        // line librdkafka's threads share: not something to pay per call.)
        self.ensure_not_closed()?;
        for (i, m) in messages.iter().enumerate() {
            m.validate(self.config.max_payload_size).map_err(|e| {
                if messages.len() > 1 { e.prefixed(format_args!("message {i}")) } else { e }
            })?;
        }
        Ok(())
    }

    /// Enqueues checked messages; returns the batch to wait on (with
    /// [`Track::Batch`]). When librdkafka refuses a message (unknown
    /// partition, queue full for too long, ...) the others are still sent
    /// and the first refusal is returned beside the batch (and recorded in
    /// it); inside a transaction that transaction can then only roll back.
    ///
    /// Untracked (fire and forget), there is no batch: the reports only
    /// update the producer's counters, and nothing is allocated per message
    /// beyond librdkafka's own copy. With [`Track::Queue`], message `i`'s
    /// report goes to the queue tagged `tag + i`; a refused message gets
    /// none there.
    fn send_all(&self, messages: &[Message<'_>], track: Track<'_>) -> (Option<Arc<Batch>>, Option<Error>) {
        let batch = matches!(track, Track::Batch).then(|| Arc::new(Batch::new(messages.len())));
        let mut refused = None;
        match &self.backend {
            Backend::Test { next_offset } => {
                let now = now_ms();
                for (i, m) in messages.iter().enumerate() {
                    let offset = next_offset.fetch_add(1, Ordering::Relaxed);
                    let report = || Report {
                        partition: m.partition.max(0),
                        offset,
                        timestamp_ms: m.timestamp_ms.unwrap_or(now),
                        error: None,
                    };
                    if let Some(batch) = &batch {
                        batch.complete(i, report());
                    } else if let Track::Queue(queue, tag) = track {
                        queue.push(tag.wrapping_add(i as u64), report());
                    } else if let Track::Slots(slots, first) = track {
                        slots.ticket(first + i).complete(report());
                    }
                }
            }
            Backend::Kafka(p) => {
                for (i, m) in messages.iter().enumerate() {
                    let ticket = match (&batch, track) {
                        (Some(batch), _) => Ticket::for_message(batch, i, messages.len()),
                        (None, Track::Queue(queue, tag)) => Ticket::Queued(Box::new((queue.another(), tag.wrapping_add(i as u64)))),
                        // A refused message drops its ticket: its slot is
                        // EMPTY again.
                        (None, Track::Slots(slots, first)) => Ticket::Slot(slots.ticket(first + i)),
                        (None, _) => Ticket::None,
                    };
                    if let Err(e) = self.send(p, m, ticket) {
                        if let Some(batch) = &batch {
                            batch.complete(i, Report::failed(e.clone()));
                        }
                        refused.get_or_insert(e);
                    }
                }
            }
        }
        if refused.is_some() {
            self.poison_transaction();
        }
        (batch, refused)
    }

    fn send(&self, p: &ThreadedProducer<Context>, m: &Message<'_>, ticket: Ticket) -> Result<()> {
        let partition = if m.partition >= 0 {
            m.partition
        } else if let Some(pk) = m.partition_key {
            self.partition_for(p, m.topic, pk)?
        } else {
            -1
        };
        // librdkafka owns the headers once a produce succeeds; until then
        // (a refusal, a retry) they are ours.
        let headers = (!m.headers.is_empty()).then(|| Headers::of(m));
        let rk = p.client().native_ptr();
        // By handle when this producer keeps one for the topic (see
        // `super::topics`), else by name.
        let target = match self.topics.get(rk, m.topic) {
            Some(rkt) => Target::Handle(rkt),
            None => Target::Name(
                CString::new(m.topic).map_err(|_| Error::invalid_message("topic", "contains a NUL byte"))?,
            ),
        };
        // Read only when the queue is full: no clock on the common path.
        let mut started = None;
        let mut backoff = Duration::from_millis(1);
        let mut opaque = ticket.into_ptr();
        // Counted before librdkafka has it: its report may be served (and
        // uncounted) on the polling thread before `send` even returns.
        self.context.sending();
        loop {
            // SAFETY: `rk` is this producer's live handle; every pointer is
            // valid for the call (librdkafka copies payload and key, F_COPY);
            // the headers pass to librdkafka only on success (forgotten
            // below); `opaque` comes back in the delivery report, or here on
            // failure.
            let code = unsafe { producev(rk, &target, partition, m, headers.as_ref(), opaque) };
            let code = match code {
                rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR => {
                    std::mem::forget(headers);
                    return Ok(());
                }
                code => RDKafkaErrorCode::from(code),
            };
            match code {
                RDKafkaErrorCode::QueueFull
                    if started.get_or_insert_with(Instant::now).elapsed() < self.config.max_wait_timeout =>
                {
                    // librdkafka's queue drains as the polling thread serves
                    // delivery reports: back off briefly and try again.
                    crate::pool::lock::nap(backoff);
                    backoff = (backoff * 2).min(QUEUE_FULL_BACKOFF_MAX);
                    continue;
                }
                _ => {}
            }
            // SAFETY: librdkafka refused the message and gave the opaque
            // back untouched: ours again, reclaimed once.
            drop(unsafe { Ticket::from_ptr(std::mem::replace(&mut opaque, std::ptr::null_mut())) });
            self.context.not_sent();
            return Err(match code {
                RDKafkaErrorCode::Fatal => self.fatal().prefixed(format_args!("producing to {} failed", m.topic)),
                code => Error::kafka(&format!("producing to {} failed", m.topic), &KafkaError::MessageProduction(code)),
            });
        }
    }

    /// The partition librdkafka's configured partitioner picks for `key`.
    fn partition_for(&self, p: &ThreadedProducer<Context>, topic: &str, key: &[u8]) -> Result<i32> {
        let count = self.partition_count(p, topic)?;
        let partitioner = match self.config.kafka("partitioner").unwrap_or("consistent_random") {
            "murmur2" => rdkafka::bindings::rd_kafka_msg_partitioner_murmur2,
            "murmur2_random" => rdkafka::bindings::rd_kafka_msg_partitioner_murmur2_random,
            "fnv1a" => rdkafka::bindings::rd_kafka_msg_partitioner_fnv1a,
            "fnv1a_random" => rdkafka::bindings::rd_kafka_msg_partitioner_fnv1a_random,
            "consistent" => rdkafka::bindings::rd_kafka_msg_partitioner_consistent,
            _ => rdkafka::bindings::rd_kafka_msg_partitioner_consistent_random,
        };
        // SAFETY: these partitioners only read `key` (valid for `len` bytes)
        // and never touch the topic handle or the opaques, which may be NULL.
        let partition = unsafe {
            partitioner(
                std::ptr::null(),
                key.as_ptr().cast(),
                key.len(),
                count,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            )
        };
        Ok(partition)
    }

    fn partition_count(&self, p: &ThreadedProducer<Context>, topic: &str) -> Result<i32> {
        let mut cache = self.partition_counts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((count, at)) = cache.get(topic) {
            if at.elapsed() < PARTITION_COUNT_TTL {
                return Ok(*count);
            }
        }
        let timeout = self.config.max_wait_timeout.min(Duration::from_secs(10));
        let metadata = p
            .client()
            .fetch_metadata(Some(topic), timeout)
            .map_err(|e| Error::kafka(&format!("reading partitions of {topic} for partition_key"), &e))?;
        let count = metadata
            .topics()
            .iter()
            .find(|t| t.name() == topic && t.error().is_none())
            .map(|t| t.partitions().len() as i32)
            .filter(|c| *c > 0)
            .ok_or_else(|| Error::new(ErrorKind::Kafka, format!("topic {topic} has no partitions to pick from")))?;
        cache.insert(topic.to_owned(), (count, Instant::now()));
        Ok(count)
    }

    /// The batch's first failure. When the producer died meanwhile (fenced,
    /// a fatal idempotence error), that is the cause to report: the messages
    /// only show its consequence ("purged").
    fn outcome(&self, batch: &Batch) -> Result<()> {
        let Some(failure) = batch.failure() else { return Ok(()) };
        self.ensure_open()?;
        Err(failure)
    }

    /// Produces and waits for the delivery reports, at most `timeout` in
    /// all. A transactional producer outside `who`'s transaction wraps the
    /// call in one of its own (committed within the same `timeout`).
    pub fn produce_sync_as(&self, who: OwnerId, messages: &[Message<'_>], timeout: Duration) -> Result<Arc<Batch>> {
        self.produce_sync_inspecting(who, messages, timeout, |_| {})
    }

    /// [`Producer::produce_sync_as`], showing the batch to `inspect` once the
    /// wait is over (all reports in, or timed out) and before its outcome
    /// decides the result, so a caller can read the reports of a failed call.
    pub(crate) fn produce_sync_inspecting(
        &self,
        who: OwnerId,
        messages: &[Message<'_>],
        timeout: Duration,
        inspect: impl FnOnce(&Batch),
    ) -> Result<Arc<Batch>> {
        self.check(messages)?;
        let deadline = deadline_after(timeout);
        self.in_implicit_transaction(who, || deadline, || {
            let (batch, _) = self.send_all(messages, Track::Batch);
            let batch = batch.expect("tracked");
            let waited = batch.wait_until(deadline, timeout);
            inspect(&batch);
            waited.map_err(|e| self.context.explained(e))?;
            self.outcome(&batch)?;
            Ok(batch)
        })
    }

    /// Produces without waiting; the batch reports later. A transactional
    /// producer outside `who`'s transaction commits (and so delivers) before
    /// this returns, within `max_wait_timeout`.
    pub fn produce_async_as(&self, who: OwnerId, messages: &[Message<'_>]) -> Result<Arc<Batch>> {
        self.produce_async_inner(who, messages, Track::Batch).map(|batch| batch.expect("tracked"))
    }

    /// [`Producer::produce_async_as`] without a batch to wait on (fire and
    /// forget): the cheapest way to produce.
    pub fn produce_async_untracked(&self, who: OwnerId, messages: &[Message<'_>]) -> Result<()> {
        self.produce_async_inner(who, messages, Track::Untracked).map(drop)
    }

    /// [`Producer::produce_async_as`] with the reports going to `queue`,
    /// message `i`'s tagged `tag + i`. On `Ok` every message gets exactly
    /// one report there. On an error a message may still get one (it was
    /// sent before its implicit transaction failed to commit, say), or none
    /// (refused, invalid, never sent).
    ///
    /// `queue` is looked up among the queues this producer keeps (see
    /// [`KeptQueues`]); `arc` gives its `Arc` the first time.
    pub fn produce_async_queued(
        &self,
        who: OwnerId,
        messages: &[Message<'_>],
        queue: &ReportQueue,
        arc: impl FnOnce() -> Result<Arc<ReportQueue>>,
        tag: u64,
    ) -> Result<()> {
        let target = self.queues.target(queue, arc)?;
        self.produce_async_inner(who, messages, Track::Queue(&target, tag)).map(drop)
    }

    /// [`Producer::produce_async_as`] with message `i`'s report written
    /// into slot `first + i` of `slots`. The slots are armed (PENDING)
    /// before anything is sent, all or none (INVALID_ARGUMENT when one is
    /// out of range or still PENDING). On `Ok` every slot gets its report.
    /// On an error, a refused or unsent message's slot is EMPTY again; a
    /// message that went out still gets its report (its implicit
    /// transaction failed to commit, say).
    pub fn produce_async_into(&self, who: OwnerId, messages: &[Message<'_>], slots: &Arc<ReportSlots>, first: usize) -> Result<()> {
        self.check(messages)?;
        slots.arm(first, messages.len(), self.max_wait())?;
        let mut sent = false;
        let result = self.in_implicit_transaction(who, || deadline_after(self.max_wait()), || {
            sent = true;
            match self.send_all(messages, Track::Slots(slots, first)) {
                (_, Some(refused)) => Err(refused),
                (_, None) => Ok(()),
            }
        });
        if !sent {
            // Nothing went out (the implicit transaction did not begin):
            // no ticket was made, so the slots are disarmed here.
            slots.disarm(first, messages.len());
        }
        result
    }

    fn produce_async_inner(&self, who: OwnerId, messages: &[Message<'_>], track: Track<'_>) -> Result<Option<Arc<Batch>>> {
        self.check(messages)?;
        self.in_implicit_transaction(who, || deadline_after(self.max_wait()), || match self.send_all(messages, track) {
            (_, Some(refused)) => Err(refused),
            (batch, None) => Ok(batch),
        })
    }

    /// Waits until every message this producer has queued is delivered or
    /// failed, at most `timeout`.
    pub fn flush(&self, timeout: Duration) -> Result<()> {
        self.ensure_open()?;
        match self.kafka() {
            Some(p) => p.flush(timeout).map_err(|e| {
                self.context.explained(Error::new(
                    ErrorKind::DeliveryTimeout,
                    format!("flush did not finish in {} ms: {e}", timeout.as_millis()),
                ))
            }),
            None => Ok(()),
        }
    }

    /// Messages handed to librdkafka whose delivery report has not been
    /// served yet.
    pub fn in_flight(&self) -> u64 {
        self.context.outstanding()
    }

    /// Closes the producer: aborts an open transaction, then flushes (bounded
    /// by `max_wait_timeout`) or, when forced, purges. Returns how many
    /// messages were not delivered. Later operations fail with "closed".
    pub fn close(&self, force: bool) -> u64 {
        if self.closed.swap(true, Ordering::AcqRel) {
            return 0;
        }
        self.abort_open_transaction(None, deadline_after(self.max_wait()));
        let Some(p) = self.kafka() else { return 0 };
        let failed_before = self.context.failed();
        if force {
            p.purge(PurgeConfig::default().queue().inflight());
            // Serve the purged messages' reports so their waiters wake.
            let _ = p.flush(Duration::from_millis(500));
        } else {
            let _ = p.flush(self.config.max_wait_timeout);
        }
        // What failed while closing, and what never got a report.
        self.context.failed() - failed_before + self.context.outstanding()
    }
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// The report librdkafka gave for one message.
pub(crate) fn report_of(result: &rdkafka::producer::DeliveryResult<'_>) -> Report {
    match result {
        Ok(m) => Report {
            partition: m.partition(),
            offset: m.offset(),
            timestamp_ms: m.timestamp().to_millis().unwrap_or(-1),
            error: None,
        },
        Err((e, m)) => Report {
            partition: m.partition(),
            offset: -1,
            timestamp_ms: m.timestamp().to_millis().unwrap_or(-1),
            error: Some(Error::kafka(&format!("delivery to {} failed", m.topic()), e)),
        },
    }
}
