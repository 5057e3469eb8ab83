//! Health checks, failover groups and the connection manager (work in progress).
#![forbid(unsafe_code)]
