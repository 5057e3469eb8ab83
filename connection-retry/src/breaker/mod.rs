//! A circuit breaker: stop calling a dependency that keeps failing, give it time, then
//! let a few probe calls find out whether it is back.
//!
//! ```text
//!               trip: N failures in a row, or the
//!               failure or slow-call rate of the       wait over, next call
//!  +--------+   window over its threshold        +------+   (or state())   +-----------+
//!  | Closed | ---------------------------------> | Open | ---------------> | Half-open |
//!  +--------+                                    +------+                  +-----------+
//!    ^   ^                                         ^   ^                     |       |
//!    |   |                                         |   +--- a probe fails ---+       |
//!    |   |                                         |        or is slow (the          |
//!    |   |                                         |        wait may grow)           |
//!    |   |                           force_open(), from any state                    |
//!    |   |                                                                           |
//!    |   +--------------------------- every probe succeeds --------------------------+
//!    |
//!    |  reset(), from any state   +----------+
//!    +--------------------------- | Isolated | <-- isolate(), from any state
//!                                 +----------+
//! ```
//!
//! # Using it
//!
//! [`CircuitBreaker::run`] puts the breaker around any async operation and returns the
//! operation's own error type: a refusal comes back as `E::from(Rejected)`, a
//! [`Rejected`] with reason [`CircuitOpen`](connection_core::RejectReason::CircuitOpen)
//! and a `retry_after` saying when the circuit will next admit a probe.
//! [`CircuitBreaker::call`] does the same for a synchronous closure. On hot paths,
//! [`CircuitBreaker::try_acquire`] gives a [`Permit`] to report on yourself;
//! [`CircuitBreak`] guards a [`Transport`](connection_core::Transport)'s connects.
//!
//! ```
//! use connection_core::{Error, RejectReason};
//! use connection_retry::Classify;
//! use connection_retry::breaker::{CircuitBreaker, CircuitState};
//! use std::time::Duration;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! let breaker = CircuitBreaker::builder()
//!     .consecutive_failures(2)
//!     .wait(Duration::from_secs(5))
//!     .build()
//!     .unwrap();
//! let refused = || std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
//! let ep = connection_core::Endpoint::host_port("127.0.0.1", 9).unwrap();
//! for _ in 0..2 {
//!     let r: Result<(), Error> = breaker.run(|| async { Err(Error::connect(&ep, refused())) }).await;
//!     assert!(r.is_err());
//! }
//! assert_eq!(breaker.state(), CircuitState::Open);
//!
//! // Fails fast without running the operation, saying when to come back.
//! let r: Result<(), Error> = breaker.run(|| async { unreachable!() }).await;
//! let err = r.unwrap_err();
//! assert_eq!(err.rejection(), Some(RejectReason::CircuitOpen));
//! assert_eq!(err.retry_after(), Some(Duration::from_secs(5)));
//!
//! // After the wait one probe is let through; its success closes the circuit.
//! tokio::time::advance(Duration::from_secs(5)).await;
//! let r: Result<u32, Error> = breaker.run(|| async { Ok(7) }).await;
//! assert_eq!(r.unwrap(), 7);
//! assert_eq!(breaker.state(), CircuitState::Closed);
//! # }
//! ```
//!
//! # What counts as a failure
//!
//! By default every error except a refusal by another policy
//! ([`Classify::rejection`] is `Some`): a refusal means the
//! call never reached the dependency, so it says nothing about its health and counts as
//! neither success nor failure. [`CircuitBreakerBuilder::failure_predicate`] changes the
//! rule; an error it does not count as a failure is a success (the dependency answered).
//!
//! # Why the closed path takes no lock
//!
//! A closed breaker is on the path of every call to a healthy dependency, so what it
//! costs is paid on every call, by every thread. There a permit is one load of the
//! state word. Recording a success is an increment of a counter only the calling thread
//! writes (a plain load and store: no locked instruction, which on x86 is a full
//! barrier; see `stats.rs`), a second load of the state word (is the permit still
//! current?) and a load of the consecutive-failure counter, which is written only when
//! it is not already zero. No cache line is written by two threads, nothing is
//! allocated, and the clock is read only when slow-call detection or a time-based
//! window needs it. A count-based window adds one shared `fetch_add` (the ring's head)
//! and writes a slot only when the outcome differs from the one it replaces; a
//! time-based window reads the clock and adds to the current bucket. Transitions are
//! rare and take a mutex, which also keeps their events in order. See `state.rs` for
//! the memory ordering.
//!
//! # Why half-open admits only a few probes
//!
//! When the wait ends the dependency may still be down, or just back and fragile.
//! Letting every waiting caller through at once (as the `failsafe` crate's half-open
//! state does) sends the whole backlog into it at the worst moment and turns one failed
//! probe into a burst of failed calls. Half-open therefore admits
//! [`half_open_probes`](CircuitBreakerBuilder::half_open_probes) calls (one by default)
//! and rejects the rest; all probes must succeed to close, the first failure re-opens,
//! and a probe whose permit is dropped unfinished (a cancelled call) frees its slot so
//! half-open can never be stuck with slots nobody will report on.
//!
//! # Waits
//!
//! The circuit stays open for [`wait`](CircuitBreakerBuilder::wait); with
//! [`max_wait`](CircuitBreakerBuilder::max_wait) each re-open without a close in
//! between multiplies it, and [`jitter`](CircuitBreakerBuilder::jitter) shortens each
//! wait by a random fraction (seedable) so that breakers tripped together do not probe
//! together. Timing uses `tokio::time`, so tests can run on paused time.

mod config;
mod state;
mod stats;
mod transport;
mod window;

use std::fmt;
use std::future::Future;
use std::mem::ManuallyDrop;
use std::sync::Arc;
use std::time::Duration;

use connection_core::Rejected;
use tokio::time::Instant;

pub use config::{CircuitBreakerBuilder, CircuitBreakerConfig, SlidingWindow};
pub use state::CircuitState;
pub use stats::CircuitStats;
pub use transport::CircuitBreak;

use crate::Classify;
use crate::refusal::{self, Watched};
use state::{CLOSED, HALF_OPEN, Inner, STATE_MASK, Verdict};

/// A circuit breaker. Cloning is cheap and every clone shares the same state.
///
/// See the [module docs](self) for the state machine and the design.
///
/// ```
/// use connection_core::Rejected;
/// use connection_retry::breaker::CircuitBreaker;
///
/// let breaker = CircuitBreaker::builder().consecutive_failures(1).build()?;
/// let shared = breaker.clone();
///
/// let ok: Result<u32, Rejected> = breaker.call(|| Ok(1));
/// assert_eq!(ok, Ok(1));
/// // The permit API, for hot paths: report the outcome yourself.
/// let permit = shared.try_acquire()?;
/// permit.failure();
/// // Both handles see the trip.
/// assert!(breaker.state().is_open());
/// assert!(shared.try_acquire().is_err());
/// assert_eq!(breaker.stats().trips, 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct CircuitBreaker {
    inner: Arc<Inner>,
}

impl fmt::Debug for CircuitBreaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt(f)
    }
}

impl Default for CircuitBreaker {
    /// The builder's defaults: 5 consecutive failures trip it, 10 s open, 1 probe.
    fn default() -> Self {
        // The defaults are valid: `config::tests` checks that they build.
        let settings = CircuitBreakerBuilder::default().validate();
        Self::from_settings(settings.expect("default breaker settings are valid"))
    }
}

impl CircuitBreaker {
    /// A builder with the defaults (see [`CircuitBreakerBuilder`]).
    pub fn builder() -> CircuitBreakerBuilder {
        CircuitBreakerBuilder::default()
    }

    fn from_settings(settings: config::Settings) -> Self {
        Self {
            inner: Arc::new(Inner::new(settings)),
        }
    }

    /// Asks to make a call: a [`Permit`] to report the outcome on, or a [`Rejected`]
    /// saying the circuit is open and, unless isolated, when it will next admit a probe.
    ///
    /// On a closed circuit this is one atomic load (plus a clock read with slow-call
    /// detection on). A permit dropped without an outcome counts as neither success nor
    /// failure and gives a half-open probe slot back.
    ///
    /// ```
    /// use connection_retry::breaker::CircuitBreaker;
    /// use std::time::Duration;
    ///
    /// let breaker = CircuitBreaker::default();
    /// match breaker.try_acquire() {
    ///     Ok(permit) => {
    ///         let answer = 2 + 2; // the call
    ///         if answer == 4 { permit.success() } else { permit.failure() }
    ///     }
    ///     Err(rejected) => println!("not now: {rejected}"),
    /// }
    /// // Or with a duration you measured, for slow-call detection:
    /// breaker.try_acquire()?.record(Duration::from_millis(3), false);
    /// assert_eq!(breaker.stats().successes, 2);
    /// # Ok::<(), connection_core::Rejected>(())
    /// ```
    #[inline]
    pub fn try_acquire(&self) -> Result<Permit<'_>, Rejected> {
        let inner = &*self.inner;
        let mut word = inner.word();
        if word & STATE_MASK != CLOSED {
            word = inner.acquire_slow(word)?;
        }
        Ok(Permit {
            inner,
            word,
            started: inner.times_calls.then(Instant::now),
        })
    }

    /// Runs `operation` if the circuit admits it and records its outcome; otherwise
    /// returns the refusal as `E` without running it.
    ///
    /// Errors count as the breaker's [failure
    /// predicate](CircuitBreakerBuilder::failure_predicate) says: by default every
    /// error is a failure except a refusal by another policy, which counts as neither.
    /// A refusal by this crate's limiter or bulkhead inside `operation` is recognized
    /// even when your [`Classify`] does not report it (see [`Classify`]). If the returned
    /// future is dropped before the operation finishes, the call counts as neither.
    ///
    /// ```
    /// use connection_core::Error;
    /// use connection_retry::breaker::CircuitBreaker;
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let breaker = CircuitBreaker::default();
    /// let answer: Result<u32, Error> = breaker.run(|| async { Ok(42) }).await;
    /// assert_eq!(answer.unwrap(), 42);
    /// assert_eq!(breaker.stats().calls, 1);
    /// # }
    /// ```
    pub async fn run<T, E, F, Fut>(&self, operation: F) -> Result<T, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: Classify + From<Rejected>,
    {
        self.run_judged(operation, |e, refused| self.inner.verdict(e, refused))
            .await
    }

    /// [`run`](Self::run) with a failure rule for this call: an error counts as a
    /// failure when `is_failure` says so, as neither when it is a refusal by another
    /// policy of this crate, and as a success otherwise. The error type needs no
    /// [`Classify`]: only `From<Rejected>`, for this breaker's own refusal.
    ///
    /// ```
    /// use connection_core::{Endpoint, Error};
    /// use connection_retry::breaker::CircuitBreaker;
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let breaker = CircuitBreaker::builder().consecutive_failures(1).build()?;
    /// let ep = Endpoint::host_port("127.0.0.1", 8080)?;
    /// // A 404 is the server answering: not a failure of the server.
    /// let r: Result<(), Error> = breaker
    ///     .run_with(Error::is_retryable, || async {
    ///         Err(Error::Status { endpoint: ep.clone(), status: 404, retry_after: None })
    ///     })
    ///     .await;
    /// assert!(r.is_err());
    /// assert!(breaker.state().is_closed());
    /// # Ok(()) }
    /// ```
    pub async fn run_with<T, E, P, F, Fut>(&self, is_failure: P, operation: F) -> Result<T, E>
    where
        P: FnOnce(&E) -> bool,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: From<Rejected>,
    {
        self.run_judged(operation, |e, refused| {
            if is_failure(e) {
                Verdict::Failure
            } else if refused {
                Verdict::Ignore
            } else {
                Verdict::Success
            }
        })
        .await
    }

    /// The one body of [`run`](Self::run) and [`run_with`](Self::run_with): `verdict`
    /// counts an error, told whether the poll that ended the call made a refusal.
    async fn run_judged<T, E, F, Fut, V>(&self, operation: F, verdict: V) -> Result<T, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: From<Rejected>,
        V: FnOnce(&E, bool) -> Verdict,
    {
        let permit = self.try_acquire().map_err(E::from)?;
        match Watched::new(operation()).await {
            Ok(value) => {
                permit.success();
                Ok(value)
            }
            Err((e, refused)) => {
                permit.count(verdict(&e, refused.is_some()));
                Err(e)
            }
        }
    }

    /// [`run`](Self::run) for a synchronous operation.
    ///
    /// ```
    /// use connection_core::{Endpoint, Error, RejectReason, Rejected};
    /// use connection_retry::Classify;
    /// use connection_retry::breaker::CircuitBreaker;
    ///
    /// let breaker = CircuitBreaker::builder().consecutive_failures(1).build()?;
    /// let ep = Endpoint::host_port("127.0.0.1", 9)?;
    ///
    /// // A refusal by another policy (here a rate limiter) is no failure...
    /// let limited = breaker.call(|| Err::<(), _>(Error::from(Rejected::new(RejectReason::RateLimited))));
    /// assert!(limited.is_err());
    /// assert!(breaker.state().is_closed());
    ///
    /// // ...a closed connection is, and trips this breaker.
    /// let lost = breaker.call(|| Err::<(), _>(Error::Closed { endpoint: ep.clone() }));
    /// assert!(lost.is_err());
    /// let refused = breaker.call(|| Ok::<_, Error>(1)).unwrap_err();
    /// assert_eq!(refused.rejection(), Some(RejectReason::CircuitOpen));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    pub fn call<T, E, F>(&self, operation: F) -> Result<T, E>
    where
        F: FnOnce() -> Result<T, E>,
        E: Classify + From<Rejected>,
    {
        let permit = self.try_acquire().map_err(E::from)?;
        let mark = refusal::mark();
        // Taken apart and rebuilt rather than matched by reference: a large `E` would
        // otherwise make the result round-trip through memory.
        match operation() {
            Ok(value) => {
                permit.success();
                Ok(value)
            }
            Err(e) => {
                let refused = refusal::since(mark).is_some();
                permit.count(self.inner.verdict(&e, refused));
                Err(e)
            }
        }
    }

    /// The state. An open circuit whose wait is over turns half-open here (publishing
    /// the event), as it would on the next call.
    pub fn state(&self) -> CircuitState {
        self.inner.state()
    }

    /// Counts since the breaker was built, and the state.
    pub fn stats(&self) -> CircuitStats {
        self.inner.stats()
    }

    /// Opens the circuit now, as a trip would: for the (growing) wait, then half-open.
    pub fn force_open(&self) {
        self.inner.force_open();
    }

    /// Holds the circuit open until [`reset`](Self::reset): every call is rejected,
    /// with no `retry_after`. Publishes `CircuitOpened` with a wait of `Duration::MAX`.
    pub fn isolate(&self) {
        self.inner.isolate();
    }

    /// Closes the circuit from any state and forgets past failures and trips.
    pub fn reset(&self) {
        self.inner.reset();
    }
}

/// Permission for one call, from [`CircuitBreaker::try_acquire`]. Report the outcome
/// with [`success`](Self::success), [`failure`](Self::failure),
/// [`record`](Self::record) or [`error`](Self::error).
///
/// Dropping it unreported counts the call as neither success nor failure (it was
/// cancelled) and, in half-open, frees the probe slot for another call.
#[must_use = "report the call's outcome on the permit; dropping it counts as neither"]
pub struct Permit<'a> {
    inner: &'a Inner,
    /// The state word the permit was granted under.
    word: u64,
    /// When the call started, if slow calls are detected.
    started: Option<Instant>,
}

impl fmt::Debug for Permit<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit")
            .field("probe", &self.is_probe())
            .field("started", &self.started)
            .finish_non_exhaustive()
    }
}

impl Permit<'_> {
    /// The call succeeded.
    #[inline(always)]
    pub fn success(self) {
        self.finish(false);
    }

    /// The call failed.
    #[inline]
    pub fn failure(self) {
        self.finish(true);
    }

    /// The call took `elapsed` (judged against the slow-call threshold instead of the
    /// time since the permit was granted) and failed if `is_failure`.
    #[inline]
    pub fn record(self, elapsed: Duration, is_failure: bool) {
        let this = ManuallyDrop::new(self);
        let slow = this.inner.is_slow(elapsed);
        this.inner.record(this.word, is_failure, slow, None);
    }

    /// The call ended in `error`, counted as the breaker's [failure
    /// predicate](CircuitBreakerBuilder::failure_predicate) says: failure, success, or
    /// neither for a refusal by another policy.
    pub fn error<E: Classify>(self, error: &E) {
        let verdict = self.inner.verdict(error, false);
        self.count(verdict);
    }

    fn count(self, verdict: Verdict) {
        match verdict {
            Verdict::Failure => self.failure(),
            Verdict::Success => self.success(),
            Verdict::Ignore => self.ignore(),
        }
    }

    /// The call counts as neither success nor failure (same as dropping the permit).
    pub fn ignore(self) {
        drop(self);
    }

    /// Whether this is a half-open probe.
    pub fn is_probe(&self) -> bool {
        self.word & STATE_MASK == HALF_OPEN
    }

    #[inline(always)]
    fn finish(self, failure: bool) {
        let this = ManuallyDrop::new(self);
        let (slow, now) = match this.started {
            Some(started) => {
                let now = Instant::now();
                (
                    this.inner.is_slow(now.saturating_duration_since(started)),
                    Some(now),
                )
            }
            None => (false, None),
        };
        this.inner.record(this.word, failure, slow, now);
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        self.inner.ignore(self.word);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_are_send_sync_and_permits_small() {
        fn assert_bounds<T: Send + Sync + 'static>() {}
        assert_bounds::<CircuitBreaker>();
        assert_bounds::<CircuitStats>();
        fn assert_send<T: Send + Sync>(_: &T) {}
        let b = CircuitBreaker::default();
        let p = b.try_acquire().unwrap();
        assert_send(&p);
        assert!(size_of::<Permit<'_>>() <= 40);
        p.success();
    }
}
