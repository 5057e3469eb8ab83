//! Backoff strategies: how long to wait before the next attempt.
//!
//! One type, [`BackoffStrategy`], covers every schedule (fixed, linear, exponential,
//! Fibonacci, your own closure) crossed with every [`Jitter`], so a policy, a
//! supervisor or a configuration file holds one concrete, `Clone + Debug` value and
//! never a `Box<dyn Backoff>`. It implements [`connection_core::Backoff`], which is what
//! the [`Supervisor`](connection_core::Supervisor) reconnects with, and what
//! [`RetryPolicy`](crate::retry::RetryPolicy) retries with.
//!
//! Design choices:
//!
//! - **The multiplier applies to the delay.** Exponential backoff is `initial ·
//!   multiplier^(attempt−1)`. A well-known trap (tokio-retry's `from_millis(50)` gives
//!   50 ms, 2.5 s, 125 s) raises the initial value itself to the power of the attempt.
//! - **Jitter is a separate choice**, applied after the schedule and before the ceiling.
//!   Retrying clients that failed together stay synchronized without it. `Full` spreads
//!   the load best; `Decorrelated` (AWS) grows from the previous actual delay, so clients
//!   that happened to draw different delays drift apart instead of realigning on the
//!   schedule; `Proportional` is gRPC's ±20 %. See [`Jitter`] for the formulas.
//! - **Saturating arithmetic, ceiling last.** Any attempt number up to `u32::MAX` yields a
//!   delay in `[0, max_delay]`; nothing overflows, wraps or panics.
//! - **Seedable.** Every strategy has its own small random source, seeded from the
//!   operating system unless [`seed`](BackoffBuilder::seed) fixes it, so tests can assert
//!   exact jittered delays.
//! - **Validated once.** Builders check their settings in
//!   [`build`](BackoffBuilder::build) and name the bad one in a
//!   [`ConfigError`](connection_core::ConfigError); a built strategy cannot fail.
//!
//! ```
//! use connection_core::Backoff;
//! use connection_retry::backoff::{BackoffStrategy, Jitter};
//! use std::time::Duration;
//!
//! let mut backoff = BackoffStrategy::exponential(Duration::from_millis(100), 2.0)
//!     .max_delay(Duration::from_secs(5))
//!     .jitter(Jitter::Equal)
//!     .max_retries(6)
//!     .seed(42)
//!     .build()?;
//! let second = backoff.next_delay(2, None).unwrap();
//! // Equal jitter keeps at least half of the scheduled 200 ms.
//! assert!(second >= Duration::from_millis(100) && second <= Duration::from_millis(200));
//! assert_eq!(backoff.next_delay(7, None), None);
//! # Ok::<(), connection_core::ConfigError>(())
//! ```

mod config;
mod jitter;
mod strategy;

pub use config::{BackoffConfig, BackoffKind};
pub use jitter::Jitter;
pub use strategy::{BackoffBuilder, BackoffStrategy, DEFAULT_MAX_DELAY};
