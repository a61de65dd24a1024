//! wdpool's error: a kind (what the C ABI returns as a result code), a
//! message for people, and librdkafka's error code when Kafka said no.

use std::fmt;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};

/// What went wrong, in the groups the C ABI reports as result codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    NullParameter,
    InvalidArgument,
    InvalidConfig,
    InvalidMessage,
    /// No producer became free within the checkout timeout.
    Timeout,
    Closed,
    NotTransactional,
    /// librdkafka reported an error (see `kafka_code`).
    Kafka,
    /// The user's callback reported failure.
    CallbackFailed,
    /// The transaction was aborted (after an abortable error or a failure).
    TransactionAborted,
    /// A producer handle used after its callback returned or its lease ended.
    StaleHandle,
    /// No global pool is set up.
    NotSetUp,
    /// Waiting for delivery reports timed out; the messages may still be
    /// delivered later.
    DeliveryTimeout,
    /// A delivery report has not arrived yet.
    Pending,
    /// The producer hit a fatal error; its slot gets a fresh producer.
    Fatal,
    /// A transaction's body exited early; the transaction was rolled back.
    EarlyExit,
    Panic,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub kind: ErrorKind,
    pub message: String,
    /// librdkafka's `rd_kafka_resp_err_t`, 0 when not a Kafka error.
    pub kafka_code: i32,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error { kind, message: message.into(), kafka_code: 0 }
    }

    pub fn with_kafka_code(mut self, code: RDKafkaErrorCode) -> Self {
        self.kafka_code = code as i32;
        self
    }

    pub fn invalid_message(field: &str, why: impl fmt::Display) -> Self {
        Error::new(ErrorKind::InvalidMessage, format!("invalid message: {field} {why}"))
    }

    /// An error from librdkafka, with `context` saying what we were doing.
    pub fn kafka(context: &str, err: &KafkaError) -> Self {
        let e = Error::new(ErrorKind::Kafka, format!("{context}: {err}"));
        match err.rdkafka_error_code() {
            Some(code) => e.with_kafka_code(code),
            None => e,
        }
    }

    pub fn prefixed(mut self, prefix: impl fmt::Display) -> Self {
        self.message = format!("{prefix}: {}", self.message);
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}
