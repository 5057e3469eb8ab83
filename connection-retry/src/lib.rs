//! # connection-retry (in progress)
#![forbid(unsafe_code)]

pub mod backoff;
pub mod breaker;
pub mod bulkhead;
mod classify;
mod events;
mod ext;
pub mod limit;
pub mod retry;

pub use classify::Classify;
pub use events::EventSink;
pub use ext::ResilienceExt;
