//! The only code that knows rdkafka: producers, delivery, transactions.

pub mod config;
mod context;
pub mod delivery;
pub mod message;
pub mod producer;
pub mod slots;
mod topics;
pub mod transaction;

pub use config::ProducerConfig;
pub use delivery::{Batch, KeptQueues, QueueRef, Report, ReportQueue, Ticket};
pub use message::{Header, Message};
pub use producer::Producer;
pub use slots::{ReportSlots, SlotState};
pub use transaction::{Completion, Ended, Outcome};
