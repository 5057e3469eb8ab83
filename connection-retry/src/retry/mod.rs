//! Retrying: [`RetryPolicy`] around any async operation, [`Retry`] around a
//! [`Transport`](connection_core::Transport)'s connects.
//!
//! A policy combines a [`BackoffStrategy`](crate::backoff::BackoffStrategy) with the
//! limits that keep retries from making an outage worse:
//!
//! - **A budget, not only a retry count.** A per-call limit of N retries multiplies the
//!   load on a failing dependency by N + 1 exactly when it can least take it, and
//!   nested layers multiply their limits. A [`RetryBudget`] caps retries at a share of
//!   recent calls (20 % by default, plus a small floor per second), so retries are
//!   free while failures are rare and dry up when they are not. It lives behind an
//!   `Arc` and is shared by every clone of the policy.
//! - **A deadline across all attempts.** [`max_elapsed`](RetryPolicyBuilder::max_elapsed)
//!   counts the attempts' own time, not only the sleeps: a hanging attempt is cut at
//!   the deadline, and a retry whose wait would end past it is not started.
//! - **The server's word over our schedule.** A `Retry-After` (see
//!   [`parse_retry_after`]) reported through
//!   [`Classify::retry_after`](crate::Classify::retry_after), or an open circuit's
//!   reopening time (heard even when the caller's error type dropped it: see
//!   [`Classify`](crate::Classify)), replaces the computed wait, up to a ceiling.
//! - **Idempotency.** [`RetryPolicy::run_non_idempotent`] retries only errors that
//!   prove the request never reached the server ([`ConnectPhase`]).
//!
//! # The error type
//!
//! The operation keeps its own error type `E`; the policy reads it through
//! [`Classify`](crate::Classify) (or a closure given to [`RetryPolicy::when`]). A policy
//! that can cut an attempt short ([`attempt_timeout`](RetryPolicyBuilder::attempt_timeout),
//! [`max_elapsed`](RetryPolicyBuilder::max_elapsed)) is of type `RetryPolicy<`[`Timed`]`>`
//! and reports the cut as a [`TimedOut`] converted into `E`, so only its `run` asks for
//! `E: From<TimedOut>`; a policy without limits (`RetryPolicy<`[`Untimed`]`>`, the
//! default) asks for nothing more than `Classify` and `Display`. For
//! [`connection_core::Error`], whose every timeout names an endpoint,
//! [`RetryPolicy::on`] supplies that endpoint: `policy.on(&endpoint).run(|| ...)`. This
//! keeps one policy usable with any error type (one budget across all of them) without
//! boxing errors or wrapping them in a retry-specific enum the caller would have to
//! unwrap.
//!
//! # Observability and cancellation
//!
//! Every retry emits a `tracing` debug event and, with
//! [`events`](RetryPolicyBuilder::events), an
//! [`Retrying`](crate::events::Retrying) event. Dropping a run's
//! future cancels it at once, including mid-sleep. Time goes through `tokio::time`
//! only, so paused-time tests control every wait and deadline.
//!
//! ```
//! use connection_core::Transport;
//! use connection_retry::backoff::{BackoffStrategy, Jitter};
//! use connection_retry::retry::{Retry, RetryBudget, RetryPolicy};
//! use connection_testkit::{TcpEchoServer, TcpEchoTransport};
//! use std::time::Duration;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let policy = RetryPolicy::builder()
//!     .backoff(
//!         BackoffStrategy::exponential(Duration::from_millis(100), 2.0)
//!             .max_delay(Duration::from_secs(5))
//!             .jitter(Jitter::Full)
//!             .build()?,
//!     )
//!     .budget(RetryBudget::default())
//!     .max_elapsed(Duration::from_secs(30))
//!     .build()?;
//!
//! let server = TcpEchoServer::start().await?;
//! let endpoint_transport = TcpEchoTransport::new(server.addr())?;
//! // The transport wrapper and direct runs share the policy, and so its budget.
//! let transport = Retry::new(endpoint_transport.clone(), policy.clone());
//! let _conn = transport.connect().await?;
//! let _conn = policy
//!     .on(endpoint_transport.endpoint())
//!     .run(|| endpoint_transport.connect())
//!     .await?;
//! # Ok(()) }
//! ```

mod budget;
mod error;
mod policy;
mod retry_after;
mod transport;

pub use budget::{RetryBudget, RetryBudgetBuilder};
pub use error::{ConnectPhase, TimeLimit, TimedOut};
pub use policy::{
    DEFAULT_RETRY_AFTER_CAP, RetryOn, RetryPolicy, RetryPolicyBuilder, RetryWhen, Timed, Untimed,
};
pub use retry_after::parse_retry_after;
pub use transport::Retry;
