//! Delivery reports: a batch of one or more messages that a caller waits on.
//! librdkafka's delivery callback fills a report and wakes the waiter; it never
//! blocks and never calls user code.

use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::error::{Error, ErrorKind, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub partition: i32,
    pub offset: i64,
    /// Milliseconds since the epoch; -1 when unknown.
    pub timestamp_ms: i64,
    /// `None` when delivered.
    pub error: Option<Error>,
}

impl Report {
    pub fn failed(error: Error) -> Self {
        Report { partition: -1, offset: -1, timestamp_ms: -1, error: Some(error) }
    }
}

#[derive(Debug)]
pub struct Batch {
    state: Mutex<State>,
    done: Condvar,
}

#[derive(Debug)]
struct State {
    reports: Vec<Option<Report>>,
    pending: usize,
}

impl Batch {
    /// A batch of `count` messages.
    pub fn new(count: usize) -> Self {
        Batch {
            state: Mutex::new(State { reports: vec![None; count], pending: count }),
            done: Condvar::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.lock().reports.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records message `index`'s outcome; a second report for it is ignored.
    pub fn complete(&self, index: usize, report: Report) {
        let mut state = self.lock();
        let Some(slot) = state.reports.get_mut(index) else { return };
        if slot.is_some() {
            return;
        }
        *slot = Some(report);
        state.pending -= 1;
        if state.pending == 0 {
            drop(state);
            self.done.notify_all();
        }
    }

    pub fn pending(&self) -> usize {
        self.lock().pending
    }

    /// Waits until every message has a report, at most `timeout`.
    pub fn wait(&self, timeout: Duration) -> Result<()> {
        self.wait_until(Instant::now().checked_add(timeout), timeout)
    }

    /// Waits until every message has a report, at most until `deadline`
    /// (`None`: for ever); `timeout` is what the error reports.
    pub fn wait_until(&self, deadline: Option<Instant>, timeout: Duration) -> Result<()> {
        let mut state = self.lock();
        while state.pending > 0 {
            let left = match deadline {
                Some(d) => d.saturating_duration_since(Instant::now()),
                None => Duration::from_secs(3600),
            };
            if left.is_zero() {
                return Err(Error::new(
                    ErrorKind::DeliveryTimeout,
                    format!(
                        "{} of {} messages have no delivery report after {} ms",
                        state.pending,
                        state.reports.len(),
                        timeout.as_millis()
                    ),
                ));
            }
            state = self.done.wait_timeout(state, left).unwrap_or_else(|e| e.into_inner()).0;
        }
        Ok(())
    }

    pub fn report(&self, index: usize) -> Option<Report> {
        self.lock().reports.get(index).cloned().flatten()
    }

    /// The first failure among the reports, with how many failed.
    pub fn failure(&self) -> Option<Error> {
        let state = self.lock();
        let mut failed = state.reports.iter().flatten().filter_map(|r| r.error.as_ref());
        let first = failed.next()?.clone();
        let more = failed.count();
        if state.reports.len() == 1 {
            return Some(first);
        }
        Some(Error {
            message: format!("{} of {} messages failed; first: {}", more + 1, state.reports.len(), first.message),
            ..first
        })
    }
}
