//! connection-kit (work in progress)
#![forbid(unsafe_code)]
