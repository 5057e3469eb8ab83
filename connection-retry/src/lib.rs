//! # connection-retry
//!
//! The resilience policies of the connection crates: backoff strategies, retry (with a
//! budget, a deadline across attempts, Retry-After and idempotency awareness), a circuit
//! breaker, rate limiting on governor and a bulkhead.
//!
//! Every policy is a plain value, cheap to clone (clones share state), usable two ways:
//!
//! - around any async operation: `policy.run(|| async { ... })`, for an HTTP request, a
//!   WebSocket send, a database call; the caller's error type only has to say whether it
//!   is retryable ([`Classify`]) and accept refusals (`From<Rejected>`);
//! - as a [`Transport`](connection_core::Transport) wrapper through [`ResilienceExt`], each
//!   wrapper itself a `Transport`, so they stack in any order with no boxing.
//!
//! Refusals (open circuit, no rate permit, full bulkhead) are one value,
//! [`connection_core::Rejected`], which says when to come back; they never count as
//! failures of the operation and never consume retry budget.
//!
//! ```
//! use connection_core::{Endpoint, Error};
//! use connection_retry::{BackoffStrategy, CircuitBreaker, RetryPolicy};
//! use std::time::Duration;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let endpoint = Endpoint::parse("https://api.example.com")?;
//! let retry = RetryPolicy::builder()
//!     .backoff(BackoffStrategy::exponential(Duration::from_millis(100), 2.0).max_retries(3).build()?)
//!     .build()?;
//! let breaker = CircuitBreaker::builder().consecutive_failures(5).build()?;
//!
//! let mut calls = 0;
//! let answer: Result<u32, Error> = retry
//!     .on(&endpoint)
//!     .run(|| {
//!         calls += 1;
//!         let fail = calls < 3;
//!         let endpoint = endpoint.clone();
//!         breaker.run(move || async move {
//!             if fail { Err(Error::Status { endpoint, status: 503, retry_after: None }) } else { Ok(7) }
//!         })
//!     })
//!     .await;
//! assert_eq!(answer?, 7);
//! assert_eq!(calls, 3);
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]

pub mod backoff;
pub mod breaker;
pub mod bulkhead;
mod classify;
mod env;
pub mod events;
mod ext;
pub mod limit;
mod refusal;
pub mod retry;

pub use backoff::{BackoffStrategy, Jitter};
pub use breaker::{CircuitBreaker, CircuitState};
pub use bulkhead::Bulkhead;
pub use classify::Classify;
pub use events::EventSink;
pub use ext::ResilienceExt;
pub use limit::{KeyedRateLimiter, Quota, RateLimiter};
pub use retry::{RetryBudget, RetryPolicy, TimeLimit, TimedOut};

// Core's refusal, at a short path: it is what the policies hand to the caller's error
// type through `From<Rejected>`, so users name it in their own code.
pub use connection_core::{RejectReason, Rejected};
