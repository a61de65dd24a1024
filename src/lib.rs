#![warn(clippy::undocumented_unsafe_blocks)]

pub mod error;
pub mod events;
pub mod kafka;
pub mod pool;
pub mod producer_pool;
pub mod ffi;
