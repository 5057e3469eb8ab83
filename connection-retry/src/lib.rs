//! # connection-retry
//!
//! The resilience policies of the connection crates: backoff strategies, retry (with a
//! budget, a deadline across attempts, Retry-After and idempotency awareness), a circuit
//! breaker, rate limiting on governor and a bulkhead.
//!
//! Every policy is a plain value, cheap to clone (clones share state), usable two ways:
//!
//! - around any async operation: `policy.run(|| async { ... })`, for an HTTP request, a
//!   WebSocket send, a database call, in the operation's own error type;
//! - as a [`Transport`](connection_core::Transport) wrapper through [`ResilienceExt`], each
//!   wrapper itself a `Transport`, so they stack in any order with no boxing.
//!
//! # With your own error type
//!
//! Your error type says whether it is worth retrying ([`Classify::is_retryable`] is the
//! one method to write, or give a closure to [`RetryPolicy::when`]) and takes a refusal
//! by a breaker, limiter or bulkhead ([`Rejected`], through `From<Rejected>`). A retry
//! policy with a time limit also needs `From<`[`TimedOut`]`>`; one without does not
//! (see [`retry::Timed`]).
//!
//! Refusals (open circuit, no rate permit, full bulkhead) say when to come back, and the
//! policies hear it even through your type: a retry around an open circuit waits for
//! the circuit, not for its own backoff, and spends no budget on it; a breaker does not
//! count an inner limiter's refusal as a failure. (How, and what an error's own
//! [`Classify::retry_after`] changes: see [`Classify`].)
//!
//! ```
//! use connection_retry::{BackoffStrategy, CircuitBreaker, Classify, Rejected, RetryPolicy};
//! use std::time::Duration;
//!
//! #[derive(Debug, thiserror::Error)]
//! enum ApiError {
//!     #[error("server busy")]
//!     Busy,
//!     #[error("refused: {0}")]
//!     Refused(#[from] Rejected),
//! }
//!
//! impl Classify for ApiError {
//!     fn is_retryable(&self) -> bool {
//!         true
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let retry = RetryPolicy::builder()
//!     .backoff(BackoffStrategy::fixed(Duration::from_millis(50)).max_retries(5).build()?)
//!     .build()?;
//! let breaker = CircuitBreaker::builder()
//!     .consecutive_failures(2)
//!     .wait(Duration::from_millis(300))
//!     .build()?;
//!
//! let started = tokio::time::Instant::now();
//! let mut calls = 0;
//! let answer: Result<u32, ApiError> = retry
//!     .run(|| {
//!         calls += 1;
//!         let fail = calls <= 2;
//!         breaker.run(move || async move { if fail { Err(ApiError::Busy) } else { Ok(7) } })
//!     })
//!     .await;
//! assert_eq!(answer?, 7);
//! // Two failures opened the circuit at 50 ms; the next attempt was refused with
//! // 250 ms to go, and the retry waited that long, not 50 ms: the probe at 350 ms
//! // closed the circuit.
//! assert_eq!(started.elapsed(), Duration::from_millis(350));
//! assert!(breaker.state().is_closed());
//!
//! // The same with closures, which an error type without `Classify` can use too.
//! let answer: Result<u32, ApiError> = retry
//!     .when(|e: &ApiError| matches!(e, ApiError::Busy | ApiError::Refused(_)))
//!     .run(|| breaker.run_with(|e| matches!(e, ApiError::Busy), || async { Ok(8) }))
//!     .await;
//! assert_eq!(answer?, 8);
//! # Ok(()) }
//! ```
//!
//! With [`connection_core::Error`], which already classifies itself and names its
//! endpoint in every timeout, use [`RetryPolicy::on`]:
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
//!     .max_elapsed(Duration::from_secs(10))
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
