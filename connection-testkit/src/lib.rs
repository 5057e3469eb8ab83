//! connection-testkit (work in progress)
#![forbid(unsafe_code)]
