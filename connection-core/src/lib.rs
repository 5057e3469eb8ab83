//! connection-core (work in progress)
#![forbid(unsafe_code)]

pub mod metrics;
