//! Transactions on a pooled producer: begin, commit on success, abort on
//! failure; retriable errors retried (bounded, with backoff), abortable ones
//! aborted and reported, fatal ones break the producer so its slot gets a
//! fresh one. A nested transaction runs inside the outer one.

use std::time::{Duration, Instant};

use rdkafka::error::KafkaError;
use rdkafka::producer::Producer as _;

use super::producer::Producer;
use crate::error::{Error, ErrorKind, Result};
use crate::events::{self, EventKind};

/// Attempts of one transactional call when librdkafka says "retry".
pub const TXN_ATTEMPTS: u32 = 5;
const TXN_BACKOFF_START: Duration = Duration::from_millis(50);
/// Even past the deadline, an attempt gets this long.
const MIN_ATTEMPT_TIME: Duration = Duration::from_millis(100);

#[derive(Debug, Default)]
pub(crate) struct TxnState {
    /// Open `begin`s on this producer: 0 outside a transaction.
    depth: u32,
    /// An inner transaction failed: the outer one must abort.
    abort_only: bool,
}

/// How a transaction's body ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Completion {
    Commit,
    /// WaterDrop's abort signal: roll back without reporting an error.
    Abort,
}

enum Class {
    Retriable,
    Abortable,
    Fatal,
}

fn classify(err: &KafkaError) -> Class {
    match err {
        KafkaError::Transaction(e) if e.is_fatal() => Class::Fatal,
        KafkaError::Transaction(e) if e.txn_requires_abort() => Class::Abortable,
        KafkaError::Transaction(e) if e.is_retriable() => Class::Retriable,
        // commit_transaction flushes first: a flush timeout leaves the
        // transaction abortable.
        KafkaError::Flush(_) => Class::Abortable,
        _ => Class::Fatal,
    }
}

impl Producer {
    fn txn_state(&self) -> std::sync::MutexGuard<'_, TxnState> {
        self.txn.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn in_transaction(&self) -> bool {
        self.txn_state().depth > 0
    }

    fn not_transactional(&self) -> Error {
        Error::new(
            ErrorKind::NotTransactional,
            format!("producer {} is not transactional: set `transactional.id` in its config", self.id),
        )
    }

    fn emit(&self, kind: EventKind, message: String) {
        if !events::has_subscribers() {
            return;
        }
        let mut e = self.origin.event(kind);
        e.slot = Some(self.index);
        e.producer_id = Some(self.id.clone());
        e.message = message;
        events::emit(&e);
    }

    /// Runs a transactional call, retrying what librdkafka calls retriable
    /// (a retried call resumes the operation in progress), at most
    /// `TXN_ATTEMPTS` times and within one `max_wait_timeout` in all: each
    /// attempt gets the time left.
    fn txn_call(
        &self,
        what: &str,
        call: impl Fn(Duration) -> rdkafka::error::KafkaResult<()>,
    ) -> Result<(), (Class, Error)> {
        let started = Instant::now();
        let budget = self.max_wait();
        let mut backoff = TXN_BACKOFF_START;
        let mut attempt = 1;
        loop {
            let left = budget.saturating_sub(started.elapsed()).max(MIN_ATTEMPT_TIME);
            let Err(e) = call(left) else { return Ok(()) };
            let class = classify(&e);
            let error = Error::kafka(&format!("{what} on producer {}", self.id), &e);
            if matches!(class, Class::Retriable) {
                if attempt < TXN_ATTEMPTS && started.elapsed() + backoff < budget {
                    std::thread::sleep(backoff);
                    backoff *= 2;
                    attempt += 1;
                    continue;
                }
                let message = format!(
                    "{} (still retriable after {attempt} attempts in {} ms)",
                    error.message,
                    started.elapsed().as_millis()
                );
                return Err((class, Error { message, ..error }));
            }
            if matches!(class, Class::Fatal) {
                self.mark_broken();
                return Err((class, Error { kind: ErrorKind::Fatal, ..error }));
            }
            return Err((class, error));
        }
    }

    pub(crate) fn init_transactions(&self) -> Result<()> {
        let Some(p) = self.kafka() else { return Ok(()) };
        self.txn_call("init_transactions", |t| p.init_transactions(t)).map_err(|(_, e)| e)
    }

    /// Opens a transaction, or nests inside the open one.
    pub fn begin_transaction(&self) -> Result<()> {
        if !self.is_transactional() {
            return Err(self.not_transactional());
        }
        let mut state = self.txn_state();
        if state.depth > 0 {
            state.depth += 1;
            return Ok(());
        }
        if let Some(p) = self.kafka() {
            self.txn_call("begin_transaction", |_| p.begin_transaction()).map_err(|e| self.gave_up(e))?;
        }
        state.depth = 1;
        state.abort_only = false;
        drop(state);
        self.emit(EventKind::TransactionStarted, String::new());
        Ok(())
    }

    /// Ends one level; the outermost commits (or aborts when an inner level
    /// aborted). A commit that fails with an abortable error is aborted and
    /// reported as `TransactionAborted`.
    pub fn commit_transaction(&self) -> Result<()> {
        let mut state = self.txn_state();
        match state.depth {
            0 => return Err(Error::new(ErrorKind::InvalidArgument, "no transaction is open on this producer")),
            1 => {}
            _ => {
                state.depth -= 1;
                return Ok(());
            }
        }
        if state.abort_only {
            drop(state);
            self.abort_transaction()?;
            return Err(Error::new(
                ErrorKind::TransactionAborted,
                "an inner transaction failed or a message was refused, so the transaction was aborted",
            ));
        }
        let result = match self.kafka() {
            Some(p) => self.txn_call("commit_transaction", |t| p.commit_transaction(t)),
            None => Ok(()),
        };
        match result {
            Ok(()) => {
                state.depth = 0;
                drop(state);
                self.emit(EventKind::TransactionCommitted, String::new());
                Ok(())
            }
            Err((Class::Abortable, e)) => {
                drop(state);
                self.abort_transaction()?;
                Err(Error { kind: ErrorKind::TransactionAborted, message: format!("transaction aborted: {}", e.message), ..e })
            }
            Err(failure) => {
                state.depth = 0;
                drop(state);
                let e = self.gave_up(failure);
                self.emit(EventKind::TransactionAborted, e.message.clone());
                Err(e)
            }
        }
    }

    /// Ends one level by aborting: the outermost rolls back; an inner one
    /// makes the outer transaction abort too.
    pub fn abort_transaction(&self) -> Result<()> {
        let mut state = self.txn_state();
        match state.depth {
            0 => return Err(Error::new(ErrorKind::InvalidArgument, "no transaction is open on this producer")),
            1 => {}
            _ => {
                state.depth -= 1;
                state.abort_only = true;
                return Ok(());
            }
        }
        state.depth = 0;
        state.abort_only = false;
        let result = match self.kafka() {
            Some(p) => self.txn_call("abort_transaction", |t| p.abort_transaction(t)),
            None => Ok(()),
        };
        drop(state);
        match result {
            Ok(()) => {
                self.emit(EventKind::TransactionAborted, String::new());
                Ok(())
            }
            Err((_, e)) => {
                // A transaction that cannot even be aborted leaves the
                // producer unusable.
                self.mark_broken();
                self.emit(EventKind::TransactionAborted, e.message.clone());
                Err(Error { kind: ErrorKind::Fatal, ..e })
            }
        }
    }

    /// A transactional call that failed on an open producer. One still
    /// retriable after every attempt leaves librdkafka waiting for that very
    /// call to be resumed, so the producer is good for nothing else: like a
    /// fatal error, it breaks the producer, which the pool then replaces.
    fn gave_up(&self, (class, e): (Class, Error)) -> Error {
        match class {
            Class::Abortable => e,
            // txn_call already broke the producer and set the kind.
            Class::Fatal => e,
            Class::Retriable => {
                self.mark_broken();
                let message = format!("{}; the producer will be replaced", e.message);
                Error { kind: ErrorKind::Fatal, message, ..e }
            }
        }
    }

    /// A message of the open transaction was refused: it can only abort.
    pub(crate) fn poison_transaction(&self) {
        let mut state = self.txn_state();
        if state.depth > 0 {
            state.abort_only = true;
        }
    }

    /// Used at close and when a lease ends with a transaction still open:
    /// rolls back every open level at once.
    pub(crate) fn abort_open_transaction(&self) {
        {
            let mut state = self.txn_state();
            if state.depth == 0 {
                return;
            }
            state.depth = 1;
        }
        let _ = self.abort_transaction();
    }

    /// Runs `body` in a transaction: commit when it completes with `Commit`,
    /// abort when it fails or asks to abort. Body errors are returned as they
    /// are after the abort.
    pub fn transaction(&self, body: impl FnOnce() -> Result<Completion>) -> Result<Completion> {
        self.begin_transaction()?;
        let guard = AbortOnDrop(self);
        let outcome = body();
        std::mem::forget(guard);
        match outcome {
            Ok(Completion::Commit) => self.commit_transaction().map(|()| Completion::Commit),
            Ok(Completion::Abort) => self.abort_transaction().map(|()| Completion::Abort),
            Err(e) => {
                let _ = self.abort_transaction();
                Err(e)
            }
        }
    }

    /// A transactional producer outside a transaction wraps `body` in one of
    /// its own; anything else just runs it.
    pub(crate) fn in_implicit_transaction<T>(&self, body: impl FnOnce() -> Result<T>) -> Result<T> {
        if !self.is_transactional() || self.in_transaction() {
            return body();
        }
        let mut value = None;
        self.transaction(|| {
            value = Some(body()?);
            Ok(Completion::Commit)
        })?;
        Ok(value.expect("a committed body produced its value"))
    }
}

/// Aborts the transaction if its body unwinds.
struct AbortOnDrop<'a>(&'a Producer);

impl Drop for AbortOnDrop<'_> {
    fn drop(&mut self) {
        let _ = self.0.abort_transaction();
    }
}
