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
    /// librdkafka's classification of the error: `kafka_flags::*` bits.
    pub kafka_flags: u32,
}

/// The bits of `Error::kafka_flags` (the C ABI's `WDPOOL_KAFKA_*`).
pub mod kafka_flags {
    /// Retrying the call may succeed.
    pub const RETRIABLE: u32 = 1;
    /// The producer is unusable.
    pub const FATAL: u32 = 2;
    /// The transaction must be aborted.
    pub const TXN_REQUIRES_ABORT: u32 = 4;
}

/// What librdkafka says of `err`: the flags of its `rd_kafka_error_t` when
/// it has one (transactional calls); otherwise only what its code defines:
/// `ERR__FATAL` is fatal, and `ERR__QUEUE_FULL` (a produce call refused
/// because the local queue is full) is retriable. Delivery failures come
/// after librdkafka's own retries, so they carry no retriable flag.
pub fn flags_of(err: &KafkaError) -> u32 {
    match err {
        KafkaError::Transaction(e) => {
            let mut flags = 0;
            if e.is_retriable() {
                flags |= kafka_flags::RETRIABLE;
            }
            if e.is_fatal() {
                flags |= kafka_flags::FATAL;
            }
            if e.txn_requires_abort() {
                flags |= kafka_flags::TXN_REQUIRES_ABORT;
            }
            flags
        }
        _ => err.rdkafka_error_code().map_or(0, code_flags),
    }
}

/// The flags a bare `rd_kafka_resp_err_t` defines (see `flags_of`).
pub fn code_flags(code: RDKafkaErrorCode) -> u32 {
    match code {
        RDKafkaErrorCode::Fatal => kafka_flags::FATAL,
        RDKafkaErrorCode::QueueFull => kafka_flags::RETRIABLE,
        _ => 0,
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error { kind, message: message.into(), kafka_code: 0, kafka_flags: 0 }
    }

    /// Sets librdkafka's code, and the flags the code alone defines.
    pub fn with_kafka_code(mut self, code: RDKafkaErrorCode) -> Self {
        self.kafka_code = code as i32;
        self.kafka_flags |= code_flags(code);
        self
    }

    pub fn with_kafka_flags(mut self, flags: u32) -> Self {
        self.kafka_flags |= flags;
        self
    }

    pub fn invalid_message(field: &str, why: impl fmt::Display) -> Self {
        Error::new(ErrorKind::InvalidMessage, format!("invalid message: {field} {why}"))
    }

    /// An error from librdkafka, with `context` saying what we were doing.
    pub fn kafka(context: &str, err: &KafkaError) -> Self {
        let e = Error::new(ErrorKind::Kafka, format!("{context}: {err}")).with_kafka_flags(flags_of(err));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_code_defines_only_fatal_and_queue_full() {
        assert_eq!(code_flags(RDKafkaErrorCode::Fatal), kafka_flags::FATAL);
        assert_eq!(code_flags(RDKafkaErrorCode::QueueFull), kafka_flags::RETRIABLE);
        assert_eq!(code_flags(RDKafkaErrorCode::MessageSizeTooLarge), 0);
        assert_eq!(code_flags(RDKafkaErrorCode::MessageTimedOut), 0);
        let e = Error::kafka("producing", &KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull));
        assert_eq!((e.kafka_code, e.kafka_flags), (RDKafkaErrorCode::QueueFull as i32, kafka_flags::RETRIABLE));
        let e = Error::new(ErrorKind::Fatal, "fenced").with_kafka_code(RDKafkaErrorCode::ProducerFenced);
        assert_eq!(e.kafka_flags, 0, "the code alone does not say fatal; the caller adds FATAL");
        assert_eq!(Error::new(ErrorKind::Timeout, "x").kafka_flags, 0);
    }
}
