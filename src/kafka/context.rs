//! The librdkafka client context of a pooled producer. Its callbacks run on
//! librdkafka's threads (or a thread inside flush/commit): they never block,
//! never call user code, and only record or queue what happened.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryResult, ProducerContext};

use super::delivery::Ticket;
use super::producer::report_of;
use crate::events::{self, Event, EventKind, Origin};

pub struct Context {
    origin: Origin,
    index: usize,
    id: String,
    broken: AtomicBool,
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
}

impl Context {
    pub fn new(origin: Origin, index: usize, id: String) -> Self {
        Context {
            origin,
            index,
            id,
            broken: AtomicBool::new(false),
            outstanding: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            last_error: Mutex::new(None),
            last_cause: Mutex::new(None),
        }
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
        if code == Some(RDKafkaErrorCode::Fatal) {
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
        if result.is_err() {
            self.failed.fetch_add(1, Ordering::AcqRel);
        }
        self.outstanding.fetch_sub(1, Ordering::AcqRel);
        ticket.complete(|| {
            let mut report = report_of(result);
            // A message that timed out says nothing of why: add the cause.
            if let Some(e) = report.error.as_mut().filter(|e| e.kafka_code == RDKafkaErrorCode::MessageTimedOut as i32) {
                e.message.push_str(&self.explain());
            }
            report
        });
    }
}
