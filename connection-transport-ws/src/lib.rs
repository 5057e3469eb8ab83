//! A reconnecting, heart-beating WebSocket client (work in progress).
#![forbid(unsafe_code)]
