//! Transactions on a pooled producer, with one set of rules for every
//! caller (C callbacks, Ruby blocks, Go functions):
//!
//! - A transaction belongs to the owner that began it. The same owner
//!   beginning again nests (a nested transaction is part of the outer one);
//!   another owner waits, bounded by its timeout, and never joins.
//! - A level ends with an [`Outcome`]. Only the outermost level talks to
//!   Kafka: it commits when it and every inner level ended with `Commit`,
//!   and aborts otherwise. An abort requested at any depth rolls the whole
//!   transaction back without an error; a failure or an early exit at any
//!   depth rolls it back and is reported as such.
//! - Retriable Kafka errors are retried (bounded, with backoff, within the
//!   call's timeout); abortable ones abort and report; fatal ones break the
//!   producer so its slot gets a fresh one.
//! - No lock is held while librdkafka works: the state says "busy", other
//!   owners wait on a condition variable, and readers return at once.

use std::sync::{Condvar, MutexGuard};
use std::time::{Duration, Instant};

use rdkafka::error::KafkaError;
use rdkafka::producer::Producer as _;

use super::producer::Producer;
use crate::error::{Error, ErrorKind, Result};
use crate::events::{self, EventKind};
use crate::pool::OwnerId;

/// Attempts of one transactional call when librdkafka says "retry".
pub const TXN_ATTEMPTS: u32 = 5;
const TXN_BACKOFF_START: Duration = Duration::from_millis(50);

/// How a transaction level's body ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It succeeded: commit (when every level did).
    Commit,
    /// WaterDrop's abort signal: roll back, no error.
    Abort,
    /// It failed (an error, an exception, a panic): roll back; the caller
    /// reports its own failure.
    Fail,
    /// It left early (Ruby's `break`/`return`/`throw`, a Go `Goexit`): roll
    /// back and report the early exit.
    Exit,
}

/// What ending a level did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The transaction was committed.
    Committed,
    /// It was rolled back: an abort was requested, or the caller failed.
    RolledBack,
    /// An inner level ended; the outermost decides.
    LevelClosed,
}

/// How the body of the Rust API's `transaction` ended, and what it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Completion {
    Commit,
    /// WaterDrop's abort signal: roll back without reporting an error.
    Abort,
}

/// Why an open transaction can no longer commit.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Doom {
    AbortRequested,
    Failed(String),
    ExitedEarly,
}

#[derive(Debug, Default)]
enum Phase {
    #[default]
    Idle,
    /// librdkafka is beginning, committing or aborting (for the owner that
    /// asked; everybody else waits).
    Busy,
    Open {
        owner: OwnerId,
        depth: u32,
        doom: Option<Doom>,
        /// Levels up to this one belong to transaction callbacks still
        /// running (`transaction_as`): only their callback's return ends
        /// them.
        pinned: u32,
        /// Attempts to end a pinned level, so far.
        refused: u32,
    },
}

#[derive(Debug, Default)]
pub(crate) struct TxnState {
    phase: Phase,
    /// Callers waiting for the phase to change.
    waiting: usize,
}

/// The producer's transaction state and its condition variable.
#[derive(Debug, Default)]
pub(crate) struct Txn {
    state: std::sync::Mutex<TxnState>,
    changed: Condvar,
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

/// A point in time a call must return by.
pub(crate) fn deadline_after(timeout: Duration) -> Option<Instant> {
    Instant::now().checked_add(timeout)
}

fn left(deadline: Option<Instant>) -> Duration {
    deadline.map_or(Duration::MAX, |d| d.saturating_duration_since(Instant::now()))
}

impl Txn {
    fn lock(&self) -> MutexGuard<'_, TxnState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sets the phase and wakes whoever waits for it to change.
    fn set(&self, mut state: MutexGuard<'_, TxnState>, phase: Phase) {
        state.phase = phase;
        let waiting = state.waiting > 0;
        drop(state);
        if waiting {
            self.changed.notify_all();
        }
    }
}

impl Producer {
    /// A transaction is open (or being begun or ended) on this producer, by
    /// any owner. Never waits for librdkafka.
    pub fn in_transaction(&self) -> bool {
        self.is_transactional() && !matches!(self.txn.lock().phase, Phase::Idle)
    }

    /// How many levels `who` has open: 0 when none (or when the open
    /// transaction is another owner's).
    pub fn depth_of(&self, who: OwnerId) -> u32 {
        if !self.is_transactional() {
            return 0;
        }
        match self.txn.lock().phase {
            Phase::Open { owner, depth, .. } if owner == who => depth,
            _ => 0,
        }
    }

    /// The open transaction can only roll back now.
    pub fn is_doomed(&self) -> bool {
        matches!(self.txn.lock().phase, Phase::Open { doom: Some(_), .. })
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

    /// Runs a transactional librdkafka call, retrying what librdkafka calls
    /// retriable (a retried call resumes the operation in progress), at most
    /// `TXN_ATTEMPTS` times and within `budget` in all: each attempt gets
    /// the time left (at least 1 ms).
    fn txn_call(
        &self,
        what: &str,
        budget: Duration,
        call: impl Fn(Duration) -> rdkafka::error::KafkaResult<()>,
    ) -> Result<(), (Class, Error)> {
        let started = Instant::now();
        let mut backoff = TXN_BACKOFF_START;
        let mut attempt = 1;
        loop {
            let left = budget.saturating_sub(started.elapsed()).max(Duration::from_millis(1));
            let Err(e) = call(left) else { return Ok(()) };
            let class = classify(&e);
            let error = Error::kafka(&format!("{what} on producer {}", self.id), &e);
            if matches!(class, Class::Retriable) {
                if attempt < TXN_ATTEMPTS && started.elapsed() + backoff < budget {
                    crate::pool::lock::nap(backoff);
                    backoff *= 2;
                    attempt += 1;
                    continue;
                }
                let message = format!(
                    "{} (still retriable after {attempt} attempts in {} ms){}",
                    error.message,
                    started.elapsed().as_millis(),
                    self.context.explain()
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

    /// `init_transactions`, within `budget`. A timeout is retriable: the
    /// caller may call again to resume it.
    pub(crate) fn init_transactions(&self, budget: Duration) -> Result<(), (bool, Error)> {
        let Some(p) = self.kafka() else { return Ok(()) };
        self.txn_call("init_transactions", budget, |t| p.init_transactions(t))
            .map_err(|(class, e)| (matches!(class, Class::Retriable), e))
    }

    /// Waits, holding the lock between looks, until `ready` says the phase
    /// lets `who` go on; at most until `deadline`.
    fn wait_for_turn<'a>(
        &'a self,
        mut state: MutexGuard<'a, TxnState>,
        who: OwnerId,
        deadline: Option<Instant>,
        started: Instant,
    ) -> Result<MutexGuard<'a, TxnState>> {
        loop {
            match &state.phase {
                Phase::Idle => return Ok(state),
                Phase::Open { owner, .. } if *owner == who => return Ok(state),
                _ => {}
            }
            let left = left(deadline);
            if left.is_zero() {
                return Err(Error::new(
                    ErrorKind::Timeout,
                    format!(
                        "producer {} is in a transaction of another owner: waited {} ms for it to end",
                        self.id,
                        started.elapsed().as_millis()
                    ),
                ));
            }
            state.waiting += 1;
            state = self.txn.changed.wait_timeout(state, left).unwrap_or_else(|e| e.into_inner()).0;
            state.waiting -= 1;
        }
    }

    /// Opens a transaction for `who`, or a nested level inside `who`'s open
    /// one. Waits (at most until `deadline`) while another owner's
    /// transaction is open.
    pub fn begin_as(&self, who: OwnerId, deadline: Option<Instant>) -> Result<()> {
        if !self.is_transactional() {
            return Err(self.not_transactional());
        }
        let started = Instant::now();
        let mut state = self.wait_for_turn(self.txn.lock(), who, deadline, started)?;
        if let Phase::Open { depth, .. } = &mut state.phase {
            *depth += 1;
            return Ok(());
        }
        state.phase = Phase::Busy;
        drop(state);
        let begun = match self.kafka() {
            // begin_transaction is local to librdkafka: it does not wait.
            Some(p) => self
                .txn_call("begin_transaction", left(deadline), |_| p.begin_transaction())
                .map_err(|e| self.gave_up(e)),
            None => Ok(()),
        };
        let state = self.txn.lock();
        match begun {
            Ok(()) => {
                self.txn.set(state, Phase::Open { owner: who, depth: 1, doom: None, pinned: 0, refused: 0 });
                self.emit(EventKind::TransactionStarted, String::new());
                Ok(())
            }
            Err(e) => {
                self.txn.set(state, Phase::Idle);
                Err(e)
            }
        }
    }

    /// Ends one of `who`'s levels with `outcome`; the outermost commits or
    /// aborts (see the module's rules), within `deadline`.
    pub fn end_as(&self, who: OwnerId, outcome: Outcome, deadline: Option<Instant>) -> Result<Ended> {
        let mut state = self.txn.lock();
        let doom = match &mut state.phase {
            Phase::Open { owner, depth, pinned, doom, refused } if *depth <= *pinned => {
                // Refused, and the transaction can only roll back now: the
                // callback's caller must not report a commit it did not make.
                if *owner == who {
                    *refused += 1;
                    *doom = Some(Doom::Failed(
                        "a transaction callback tried to end the level it runs in".to_owned(),
                    ));
                }
                return Err(Error::new(
                    ErrorKind::InvalidArgument,
                    "this transaction level belongs to a transaction callback that is still running: return from the callback to end it",
                ));
            }
            Phase::Open { owner, depth, doom, .. } if *owner == who => {
                if *depth > 1 {
                    *depth -= 1;
                    let new = match outcome {
                        Outcome::Commit => None,
                        Outcome::Abort => Some(Doom::AbortRequested),
                        Outcome::Fail => Some(Doom::Failed("an inner transaction failed".to_owned())),
                        Outcome::Exit => Some(Doom::ExitedEarly),
                    };
                    // A failure or an early exit outranks an abort request.
                    if new.is_some() && !matches!(doom, Some(Doom::Failed(_) | Doom::ExitedEarly)) {
                        *doom = new;
                    }
                    return Ok(Ended::LevelClosed);
                }
                doom.take()
            }
            Phase::Open { .. } | Phase::Busy => {
                return Err(Error::new(
                    ErrorKind::InvalidArgument,
                    format!("the transaction open on producer {} belongs to another owner", self.id),
                ))
            }
            Phase::Idle => {
                return Err(Error::new(
                    ErrorKind::InvalidArgument,
                    format!("no transaction is open on producer {}", self.id),
                ))
            }
        };
        state.phase = Phase::Busy;
        drop(state);
        let budget = left(deadline);
        if outcome == Outcome::Commit && doom.is_none() {
            return self.commit_now(budget);
        }
        self.abort_now(budget, "")?;
        match (outcome, doom) {
            (Outcome::Exit, _) | (Outcome::Commit, Some(Doom::ExitedEarly)) => Err(Error::new(
                ErrorKind::EarlyExit,
                "the transaction's body exited early (break, return, throw or Goexit), so it was rolled back",
            )),
            (Outcome::Commit, Some(Doom::Failed(why))) => Err(Error::new(
                ErrorKind::TransactionAborted,
                format!("{why}, so the transaction was rolled back"),
            )),
            _ => Ok(Ended::RolledBack),
        }
    }

    /// Commits the transaction this caller made busy.
    fn commit_now(&self, budget: Duration) -> Result<Ended> {
        let started = Instant::now();
        let result = match self.kafka() {
            Some(p) => self.txn_call("commit_transaction", budget, |t| p.commit_transaction(t)),
            None => Ok(()),
        };
        match result {
            Ok(()) => {
                self.txn.set(self.txn.lock(), Phase::Idle);
                self.emit(EventKind::TransactionCommitted, String::new());
                Ok(Ended::Committed)
            }
            Err((Class::Abortable, e)) => {
                self.abort_now(budget.saturating_sub(started.elapsed()), &e.message)?;
                Err(Error { kind: ErrorKind::TransactionAborted, message: format!("transaction aborted: {}", e.message), ..e })
            }
            Err(failure) => {
                self.txn.set(self.txn.lock(), Phase::Idle);
                let e = self.gave_up(failure);
                self.emit(EventKind::TransactionAborted, e.message.clone());
                Err(e)
            }
        }
    }

    /// Aborts the transaction this caller made busy; `why` goes into the
    /// event. A transaction that cannot even be aborted breaks the producer.
    fn abort_now(&self, budget: Duration, why: &str) -> Result<()> {
        let result = match self.kafka() {
            Some(p) => self.txn_call("abort_transaction", budget, |t| p.abort_transaction(t)),
            None => Ok(()),
        };
        self.txn.set(self.txn.lock(), Phase::Idle);
        match result {
            Ok(()) => {
                self.emit(EventKind::TransactionAborted, why.to_owned());
                Ok(())
            }
            Err((_, e)) => {
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
            Class::Abortable | Class::Fatal => e,
            Class::Retriable => {
                self.mark_broken();
                let message = format!("{}; the producer will be replaced", e.message);
                Error { kind: ErrorKind::Fatal, message, ..e }
            }
        }
    }

    /// A message of the open transaction was refused: it can only roll back.
    pub(crate) fn poison_transaction(&self) {
        if let Phase::Open { doom, .. } = &mut self.txn.lock().phase {
            if !matches!(doom, Some(Doom::Failed(_) | Doom::ExitedEarly)) {
                *doom = Some(Doom::Failed("a message of the transaction was refused".to_owned()));
            }
        }
    }

    /// When a lease ends with `who`'s transaction still open (and at close,
    /// with `None`: whoever's): rolls every open level back at once. Returns
    /// whether there was one.
    pub(crate) fn abort_open_transaction(&self, who: Option<OwnerId>, deadline: Option<Instant>) -> bool {
        let mut state = self.txn.lock();
        match &state.phase {
            Phase::Open { owner, .. } if who.map_or(true, |w| w == *owner) => {
                state.phase = Phase::Busy;
                drop(state);
                let _ = self.abort_now(left(deadline), "the transaction was left open");
                true
            }
            _ => false,
        }
    }

    /// Runs `body` as one transaction level of `who`: begin, then end with
    /// the body's outcome. A body that leaves levels of its own open is a
    /// failure (they are closed and the transaction rolled back); one that
    /// ended the level it runs in is an error.
    pub fn transaction_as(
        &self,
        who: OwnerId,
        deadline: Option<Instant>,
        body: impl FnOnce() -> Result<Completion>,
    ) -> Result<Completion> {
        self.begin_as(who, deadline)?;
        let (depth, outer_pin, refused_before) = self.pin(who);
        let guard = EndOnUnwind { producer: self, who, deadline, unpin: Some(outer_pin) };
        let result = body();
        std::mem::forget(guard);
        let (now, refused_after) = self.unpin(who, outer_pin);
        if refused_after > refused_before && now == depth {
            let _ = self.end_as(who, Outcome::Fail, deadline);
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                "the transaction's callback tried to end the level it runs in (commit or abort inside it), so the transaction was rolled back",
            ));
        }
        if now < depth {
            // Cannot happen while the level is pinned; kept as a guard.
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                "the transaction's body ended the transaction it runs in",
            ));
        }
        if now > depth {
            self.close_levels_above(who, depth);
            let _ = self.end_as(who, Outcome::Fail, deadline);
            return Err(Error::new(
                ErrorKind::TransactionAborted,
                format!("the transaction's body left {} nested level(s) open, so it was rolled back", now - depth),
            ));
        }
        let outcome = match &result {
            Ok(Completion::Commit) => Outcome::Commit,
            Ok(Completion::Abort) => Outcome::Abort,
            Err(_) => Outcome::Fail,
        };
        let ended = self.end_as(who, outcome, deadline);
        match (result, ended) {
            (Err(e), _) => Err(e),
            (Ok(_), Err(e)) => Err(e),
            (Ok(_), Ok(Ended::Committed)) => Ok(Completion::Commit),
            (Ok(_), Ok(Ended::RolledBack)) => Ok(Completion::Abort),
            (Ok(c), Ok(Ended::LevelClosed)) => Ok(c),
        }
    }

    /// Pins `who`'s innermost level to a running callback; returns its depth
    /// and the pin it replaces.
    /// Also returns how many attempts to end a pinned level were refused so
    /// far.
    fn pin(&self, who: OwnerId) -> (u32, u32, u32) {
        match &mut self.txn.lock().phase {
            Phase::Open { owner, depth, pinned, refused, .. } if *owner == who => {
                let outer = std::mem::replace(pinned, *depth);
                (*depth, outer, *refused)
            }
            _ => (0, 0, 0),
        }
    }

    /// Gives the pin back to the enclosing callback; returns `who`'s depth
    /// and the refused attempts so far.
    fn unpin(&self, who: OwnerId, outer: u32) -> (u32, u32) {
        match &mut self.txn.lock().phase {
            Phase::Open { owner, depth, pinned, refused, .. } if *owner == who => {
                *pinned = outer;
                (*depth, *refused)
            }
            _ => (0, 0),
        }
    }

    /// Folds levels above `depth` into `depth`, marking the transaction
    /// failed.
    fn close_levels_above(&self, who: OwnerId, keep: u32) {
        if let Phase::Open { owner, depth, doom, .. } = &mut self.txn.lock().phase {
            if *owner == who && *depth > keep {
                *depth = keep;
                *doom = Some(Doom::Failed("a nested transaction was left open".to_owned()));
            }
        }
    }

    /// A transactional producer outside `who`'s transaction wraps `body` in
    /// a transaction of its own (waiting, at most until `deadline`, while
    /// another owner's is open); inside it, `body` is one more level.
    ///
    /// `deadline` is asked for only when a transaction is needed, so the
    /// common, non-transactional path reads no clock.
    pub(crate) fn in_implicit_transaction<T>(
        &self,
        who: OwnerId,
        deadline: impl FnOnce() -> Option<Instant>,
        body: impl FnOnce() -> Result<T>,
    ) -> Result<T> {
        if !self.is_transactional() {
            return body();
        }
        let deadline = deadline();
        self.begin_as(who, deadline)?;
        let guard = EndOnUnwind { producer: self, who, deadline, unpin: None };
        let result = body();
        std::mem::forget(guard);
        let outcome = if result.is_ok() { Outcome::Commit } else { Outcome::Fail };
        match (result, self.end_as(who, outcome, deadline)) {
            (Err(e), _) => Err(e),
            (Ok(_), Err(e)) => Err(e),
            (Ok(value), Ok(_)) => Ok(value),
        }
    }
}

/// Ends the level as a failure if its body unwinds (giving its pin back
/// first, for a callback's level).
struct EndOnUnwind<'a> {
    producer: &'a Producer,
    who: OwnerId,
    deadline: Option<Instant>,
    unpin: Option<u32>,
}

impl Drop for EndOnUnwind<'_> {
    fn drop(&mut self) {
        if let Some(outer) = self.unpin {
            self.producer.unpin(self.who, outer);
        }
        let _ = self.producer.end_as(self.who, Outcome::Fail, self.deadline);
    }
}
