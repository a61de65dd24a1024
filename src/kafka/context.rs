//! The librdkafka client context of a pooled producer. Its callbacks run on
//! librdkafka's threads (or a thread inside flush/commit): they never block,
//! never call user code, and only record or queue what happened.

use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use rdkafka::bindings as rdsys;
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message as _;
use rdkafka::producer::{DeliveryResult, ProducerContext};

use super::delivery::Ticket;
use super::producer::report_of;
use crate::events::{self, Event, EventKind, Origin};

pub struct Context {
    origin: Origin,
    index: usize,
    id: String,
    /// The producer has a `transactional.id` (see [`Context::note_sequence_gap`]).
    transactional: bool,
    broken: AtomicBool,
    /// Set once a message of this transactional producer was refused by
    /// the broker (see [`leaves_sequence_gap`]): which one, and why.
    sequence_gap: Mutex<Option<String>>,
    /// Messages handed to librdkafka whose report has not been served yet.
    outstanding: AtomicU64,
    /// Messages whose report was a failure, over the producer's life.
    failed: AtomicU64,
    /// rdkafka 0.39 hands each error event to `error` twice in a row: the
    /// last one seen, and whether its duplicate has come yet.
    last_error: Mutex<Option<(KafkaError, String, bool)>>,
    /// The last error librdkafka reported other than "all brokers are down"
    /// (which only says that something else went wrong), or the last broker
    /// connection failure it logged, and when: the cause a timeout is most
    /// likely down to (bad credentials, a certificate not trusted, the wrong
    /// security.protocol, ...).
    last_cause: Mutex<Option<(String, Instant)>>,
    /// The librdkafka handle, once made: `error` asks it whether an error
    /// it hands over is fatal.
    client: AtomicPtr<rdsys::rd_kafka_t>,
}

impl Context {
    pub fn new(origin: Origin, index: usize, id: String, transactional: bool) -> Self {
        Context {
            origin,
            index,
            id,
            transactional,
            broken: AtomicBool::new(false),
            sequence_gap: Mutex::new(None),
            outstanding: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            last_error: Mutex::new(None),
            last_cause: Mutex::new(None),
            client: AtomicPtr::new(std::ptr::null_mut()),
        }
    }

    /// Called once the librdkafka handle this context serves is made; it
    /// must outlive every callback (it does: librdkafka calls back only
    /// while it lives).
    pub(crate) fn set_client(&self, rk: *mut rdsys::rd_kafka_t) {
        self.client.store(rk, Ordering::Release);
    }

    /// Whether librdkafka raised a fatal error on this context's client
    /// (false before `set_client`, and for a producer without one). Asked
    /// without formatting the reason (the crate's `fatal_error` zeroes a
    /// 512-byte buffer per call).
    pub(crate) fn client_fatal(&self) -> bool {
        let rk = self.client.load(Ordering::Acquire);
        // SAFETY: a live client (see `set_client`); no reason is written
        // into a NULL buffer of size 0.
        !rk.is_null()
            && unsafe { rdsys::rd_kafka_fatal_error(rk, std::ptr::null_mut(), 0) }
                != rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR
    }

    /// "; last client error (N ms ago): ..." when librdkafka reported one,
    /// else a note that it reported none: appended to timeouts, whose own
    /// text cannot say why.
    pub fn explain(&self) -> String {
        let cause = self.last_cause.lock().unwrap_or_else(|e| e.into_inner());
        let Some((text, at)) = cause.as_ref() else {
            return "; librdkafka reported no error meanwhile (is the broker slow, or not answering?)".to_owned();
        };
        // A TLS listener drops a plaintext client's first request without a
        // word; librdkafka only says the connection was closed.
        let hint = if text.contains("closed by peer") && text.contains("APIVERSION_QUERY") {
            " (a broker that closes the connection before answering ApiVersion may expect another \
             security.protocol, such as SSL or SASL_SSL)"
        } else {
            ""
        };
        format!("; last client error ({} ms ago): {text}{hint}", at.elapsed().as_millis())
    }

    fn note_cause(&self, text: String) {
        *self.last_cause.lock().unwrap_or_else(|e| e.into_inner()) = Some((text, Instant::now()));
    }

    /// `error` with [`Context::explain`] appended.
    pub fn explained(&self, mut error: crate::error::Error) -> crate::error::Error {
        error.message.push_str(&self.explain());
        error
    }

    /// A message is about to be handed to librdkafka.
    pub fn sending(&self) {
        self.outstanding.fetch_add(1, Ordering::AcqRel);
    }

    /// librdkafka refused it after all: no report will come.
    pub fn not_sent(&self) {
        self.outstanding.fetch_sub(1, Ordering::AcqRel);
    }

    pub fn outstanding(&self) -> u64 {
        self.outstanding.load(Ordering::Acquire)
    }

    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Acquire)
    }

    pub fn is_broken(&self) -> bool {
        self.broken.load(Ordering::Acquire)
    }

    pub fn mark_broken(&self) {
        self.broken.store(true, Ordering::Release);
    }

    /// A message of this transactional producer was refused by the broker
    /// for good: librdkafka (2.12) raises an abortable transaction error
    /// for it without bumping the producer epoch (`rd_kafka_txn_set_abortable_error`
    /// in `rd_kafka_handle_Produce_error`, rdkafka_request.c, where an idempotent
    /// producer does bump it), so the sequence number the refused batch
    /// used stays a gap after the abort. The next message to that
    /// partition fails with OUT_OF_ORDER_SEQUENCE_NUMBER, which makes
    /// librdkafka bump the epoch then, failing (purging) that message and
    /// its whole transaction. Nothing wdpool can call makes the same
    /// client bump its epoch, so the producer is marked broken: the pool
    /// replaces it when it is checked in, and a fresh producer starts with
    /// a new epoch (`init_transactions`) and sequence 0 everywhere.
    fn note_sequence_gap(&self, topic: &str, partition: i32, error: &KafkaError) {
        let mut gap = self.sequence_gap.lock().unwrap_or_else(|e| e.into_inner());
        if gap.is_none() {
            *gap = Some(format!("{topic} [{partition}]: {error}"));
        }
        drop(gap);
        self.mark_broken();
    }

    /// What a message purged because of [`Context::note_sequence_gap`]
    /// says besides librdkafka's "Purged in queue".
    fn explain_purge(&self) -> Option<String> {
        let gap = self.sequence_gap.lock().unwrap_or_else(|e| e.into_inner());
        gap.as_ref().map(|refused| {
            format!(
                "; producer {} had a message refused by the broker earlier ({refused}), which leaves a gap in its \
                 sequence numbers that librdkafka only repairs by failing the next transaction to that partition: \
                 the producer is replaced when it is checked in",
                self.id
            )
        })
    }

    fn event(&self, kind: EventKind) -> Event {
        let mut e = self.origin.event(kind);
        e.slot = Some(self.index);
        e.producer_id = Some(self.id.clone());
        e
    }

    fn is_duplicate(&self, error: &KafkaError, reason: &str) -> bool {
        let mut last = self.last_error.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((e, r, paired)) = last.as_mut() {
            if !*paired && e == error && r == reason {
                *paired = true;
                return true;
            }
        }
        *last = Some((error.clone(), reason.to_owned(), false));
        false
    }
}

impl ClientContext for Context {
    fn error(&self, error: KafkaError, reason: &str) {
        if self.is_duplicate(&error, reason) {
            return;
        }
        let code = error.rdkafka_error_code();
        // A fatal error comes with its underlying code (the crate does not
        // pass on `rd_kafka_event_error_is_fatal`); librdkafka raised it
        // before it queued the event, so asking it now tells. Marked here,
        // a producer idle in the pool is replaced at its next checkout,
        // which reads only this mark (`Producer::is_known_broken`).
        if code == Some(RDKafkaErrorCode::Fatal) || self.client_fatal() {
            self.mark_broken();
        }
        let message = format!("{error}: {reason}");
        if code != Some(RDKafkaErrorCode::AllBrokersDown) {
            self.note_cause(message.clone());
        }
        let mut e = self.event(EventKind::Error);
        e.error_code = code.map_or(0, |c| c as i32);
        e.message = message;
        events::enqueue(e);
    }

    /// Broker connection failures (facility FAIL, logged at level Info,
    /// which `ProducerConfig::client_config` makes sure librdkafka logs)
    /// are noted as a cause; every line then goes where rdkafka sends it
    /// by default (the `log` crate).
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        // Debug repeats each FAIL line with "identical to last error" noise.
        if fac == "FAIL" && !matches!(level, RDKafkaLogLevel::Debug) {
            self.note_cause(message.to_owned());
        }
        DefaultClientContext.log(level, fac, message);
    }

    fn stats_raw(&self, statistics: &[u8]) {
        let mut e = self.event(EventKind::Statistics);
        e.message = String::from_utf8_lossy(statistics).into_owned();
        events::enqueue(e);
    }
}

impl ProducerContext for Context {
    type DeliveryOpaque = Ticket;

    fn delivery(&self, result: &DeliveryResult<'_>, ticket: Ticket) {
        if let Err((e, m)) = result {
            self.failed.fetch_add(1, Ordering::AcqRel);
            // Before the ticket completes: whoever waits on it sees the
            // producer marked.
            if self.transactional && leaves_sequence_gap(e) {
                self.note_sequence_gap(m.topic(), m.partition(), e);
            }
        }
        self.outstanding.fetch_sub(1, Ordering::AcqRel);
        ticket.complete(|| {
            let mut report = report_of(result);
            // A message that timed out says nothing of why: add the cause.
            if let Some(e) = report.error.as_mut().filter(|e| e.kafka_code == RDKafkaErrorCode::MessageTimedOut as i32) {
                e.message.push_str(&self.explain());
            }
            if let Some(e) = report.error.as_mut().filter(|e| e.kafka_code == RDKafkaErrorCode::PurgeQueue as i32) {
                if let Some(why) = self.explain_purge() {
                    e.message.push_str(&why);
                }
            }
            report
        });
    }
}

/// Whether a failed delivery report of a transactional producer leaves a
/// gap in the partition's sequence numbers (see
/// [`Context::note_sequence_gap`]): any error the broker returned (a
/// positive code), except those librdkafka answers with an epoch bump of
/// its own (OUT_OF_ORDER_SEQUENCE_NUMBER, UNKNOWN_PRODUCER_ID) or a fatal
/// error (a fenced producer, INVALID_PRODUCER_EPOCH, is broken anyway).
/// Local errors (purged, timed out, ...) leave none: librdkafka moves the
/// partition's base past purged messages, and bumps the epoch after a
/// timeout.
fn leaves_sequence_gap(error: &KafkaError) -> bool {
    match error.rdkafka_error_code() {
        Some(RDKafkaErrorCode::OutOfOrderSequenceNumber | RDKafkaErrorCode::UnknownProducerId) => false,
        Some(code) => (code as i32) > 0,
        None => false,
    }
}
