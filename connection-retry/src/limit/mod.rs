//! Rate limiting on governor's GCRA: [`RateLimiter`] and [`KeyedRateLimiter`].
//!
//! Design choices, and why:
//! - **One clock.** The limiter reads tokio's clock ([`LimiterClock::tokio`], the
//!   default) and waits with tokio's timer. governor's own `until_ready` sleeps on `futures-timer` and its clocks
//!   read real time; neither moves on paused tokio time, so tests of code behind a
//!   limiter would hang or sleep for real. Production code that never pauses time can
//!   pick [`LimiterClock::fast`] for cheaper checks.
//! - **Shared by clones.** A limiter is an `Arc` inside: every clone of a wrapped
//!   transport or client draws from the same quota. (tower's `RateLimit` keeps one per
//!   clone, so N clones get N times the rate.)
//! - **Refusals are values.** A refusal is a [`Rejected`] carrying how long until the next
//!   permit, so callers (and retry policies) know when to come back.
//! - **Keyed limiters stay bounded by themselves.** governor leaves forgetting idle keys
//!   to the caller, with a scan of every key; ours holds at most `max_keys` and, at the
//!   bound, reuses the place of a key whose quota is full again, found in a bounded
//!   number of steps: no janitor task, no check that costs more as keys pile up, and a
//!   tracked key is never refused because of new ones (see [`KeyedRateLimiter`]).
//!
//! ```
//! use connection_retry::limit::{LimitMode, Quota, RateLimiter};
//! use std::time::Duration;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! let limiter = RateLimiter::builder(Quota::per_second(10, 2).unwrap())
//!     .mode(LimitMode::FailFast)
//!     .build();
//! assert!(limiter.check().is_ok());
//! assert!(limiter.check().is_ok());
//! let refused = limiter.check().unwrap_err();
//! assert_eq!(refused.retry_after, Some(Duration::from_millis(100)));
//!
//! // Waiting mode sleeps on tokio's timer until the permit is due.
//! let waiting = RateLimiter::new(Quota::per_second(10, 1).unwrap());
//! waiting.acquire().await.unwrap();
//! let started = tokio::time::Instant::now();
//! waiting.acquire().await.unwrap();
//! assert_eq!(started.elapsed(), Duration::from_millis(100));
//! # }
//! ```

mod clock;
mod config;
mod keyed;
mod quota;
mod transport;

use std::fmt;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use connection_core::{RejectReason, Rejected};
use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use parking_lot::Mutex;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::EventSink;
use crate::events::RateLimited;
use crate::refusal::refuse;

pub use clock::{LimiterClock, LimiterInstant};
pub use config::{LimitModeConfig, RateLimitConfig};
pub use keyed::KeyedRateLimiter;
pub use quota::Quota;
pub use transport::{KeyedRateLimit, RateLimit};

type Direct =
    governor::RateLimiter<NotKeyed, InMemoryState, LimiterClock, NoOpMiddleware<LimiterInstant>>;

/// What to do when no permit is available.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LimitMode {
    /// Wait for the permit, unless the wait would exceed `max_wait` (then refuse at once,
    /// saying when to come back).
    Wait {
        /// Longest acceptable wait; `None` waits as long as it takes.
        max_wait: Option<Duration>,
    },
    /// Refuse at once with the time until the next permit.
    FailFast,
}

impl Default for LimitMode {
    fn default() -> Self {
        Self::Wait { max_wait: None }
    }
}

/// What direct and keyed limiters share: mode, jitter, events.
struct Policy {
    mode: LimitMode,
    jitter: Duration,
    rng: Mutex<SmallRng>,
    events: Option<EventSink>,
}

impl Policy {
    /// Decides what a refusal that is `wait` away turns into: a wait (with jitter) or a
    /// rejection.
    fn on_refusal(&self, wait: Duration) -> Result<Duration, Rejected> {
        let reject = || refuse(RejectReason::RateLimited, Some(wait));
        let outcome = match self.mode {
            LimitMode::FailFast => Err(reject()),
            LimitMode::Wait {
                max_wait: Some(max),
            } if wait > max => Err(reject()),
            LimitMode::Wait { .. } => Ok(wait + self.jitter()),
        };
        if let Some(events) = &self.events {
            events.publish(RateLimited::new(wait).into());
        }
        outcome
    }

    fn jitter(&self) -> Duration {
        if self.jitter.is_zero() {
            return Duration::ZERO;
        }
        // Only on the waiting path, where a lock is cheap next to the sleep.
        let nanos = u64::try_from(self.jitter.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(self.rng.lock().random_range(0..=nanos))
    }
}

/// Builds a [`RateLimiter`] or [`KeyedRateLimiter`].
#[derive(Debug)]
#[must_use]
pub struct RateLimiterBuilder {
    quota: Quota,
    mode: LimitMode,
    jitter: Duration,
    seed: Option<u64>,
    events: Option<EventSink>,
    max_keys: usize,
    clock: LimiterClock,
}

impl RateLimiterBuilder {
    /// The clock to read (default [`LimiterClock::tokio`], which paused-time tests
    /// need; [`LimiterClock::fast`] is cheaper in production).
    pub fn clock(mut self, clock: LimiterClock) -> Self {
        self.clock = clock;
        self
    }

    /// Wait for permits (the default) or fail fast.
    pub fn mode(mut self, mode: LimitMode) -> Self {
        self.mode = mode;
        self
    }

    /// Adds a random delay of up to `jitter` to every wait, so callers released by the
    /// same permit schedule do not arrive in lockstep.
    pub fn jitter(mut self, jitter: Duration) -> Self {
        self.jitter = jitter;
        self
    }

    /// Seeds the jitter, for reproducible tests.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Publishes a [`RateLimited`] event for every delayed or
    /// refused call.
    pub fn events(mut self, sink: EventSink) -> Self {
        self.events = Some(sink);
        self
    }

    /// For keyed limiters: the most distinct keys tracked at once (default 100 000,
    /// at least 1, at most `u32::MAX`). At the bound a new key takes the place of a
    /// key whose quota is full again, or is refused; a tracked key never is for its
    /// sake. See [`KeyedRateLimiter`].
    pub fn max_keys(mut self, max: usize) -> Self {
        self.max_keys = max.clamp(1, u32::MAX as usize);
        self
    }

    fn policy(&self) -> Policy {
        let rng = match self.seed {
            Some(seed) => SmallRng::seed_from_u64(seed),
            None => SmallRng::from_os_rng(),
        };
        Policy {
            mode: self.mode,
            jitter: self.jitter,
            rng: Mutex::new(rng),
            events: self.events.clone(),
        }
    }

    /// A limiter for all calls together.
    pub fn build(self) -> RateLimiter {
        let limiter = Direct::direct_with_clock(self.quota.to_governor(), self.clock.clone());
        RateLimiter {
            inner: Arc::new(DirectInner {
                limiter,
                clock: self.clock.clone(),
                policy: self.policy(),
                quota: self.quota,
            }),
        }
    }

    /// A limiter with one quota per key, tracking at most
    /// [`max_keys`](Self::max_keys) keys.
    pub fn build_keyed<K: Hash + Eq + Clone + Send + Sync + 'static>(self) -> KeyedRateLimiter<K> {
        let policy = self.policy();
        KeyedRateLimiter::new(self.quota, self.clock, policy, self.max_keys)
    }
}

/// A rate limiter for all calls together. Clones share the quota.
#[derive(Clone)]
pub struct RateLimiter {
    inner: Arc<DirectInner>,
}

struct DirectInner {
    limiter: Direct,
    clock: LimiterClock,
    policy: Policy,
    quota: Quota,
}

impl RateLimiter {
    /// A waiting limiter with no jitter.
    pub fn new(quota: Quota) -> Self {
        Self::builder(quota).build()
    }

    /// A builder for `quota`.
    pub fn builder(quota: Quota) -> RateLimiterBuilder {
        RateLimiterBuilder {
            quota,
            mode: LimitMode::default(),
            jitter: Duration::ZERO,
            seed: None,
            events: None,
            max_keys: 100_000,
            clock: LimiterClock::default(),
        }
    }

    /// Takes a permit if one is free now; never waits, whatever the mode.
    pub fn check(&self) -> Result<(), Rejected> {
        self.inner.limiter.check().map_err(|not_until| {
            let wait = not_until.wait_time_from(self.inner.clock.now());
            if let Some(events) = &self.inner.policy.events {
                events.publish(RateLimited::new(wait).into());
            }
            refuse(RejectReason::RateLimited, Some(wait))
        })
    }

    /// Takes a permit, waiting for it in [`LimitMode::Wait`]. Cancel-safe: dropping the
    /// future while it waits takes nothing.
    pub async fn acquire(&self) -> Result<(), Rejected> {
        loop {
            match self.inner.limiter.check() {
                Ok(()) => return Ok(()),
                Err(not_until) => {
                    let wait = not_until.wait_time_from(self.inner.clock.now());
                    let sleep = self.inner.policy.on_refusal(wait)?;
                    // Another waiter may take the permit first; then we loop and wait
                    // again, which keeps the quota exact.
                    tokio::time::sleep(sleep).await;
                }
            }
        }
    }

    /// Runs `operation` once a permit is granted; a refusal comes back as the
    /// operation's error type.
    pub async fn run<F, Fut, T, E>(&self, operation: F) -> Result<T, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: From<Rejected>,
    {
        self.acquire().await?;
        operation().await
    }

    /// The quota.
    pub fn quota(&self) -> Quota {
        self.inner.quota
    }

    /// The mode.
    pub fn mode(&self) -> LimitMode {
        self.inner.policy.mode
    }
}

impl fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimiter")
            .field("quota", &self.inner.quota)
            .field("mode", &self.inner.policy.mode)
            .finish_non_exhaustive()
    }
}
