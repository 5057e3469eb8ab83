//! [`RetryPolicy`]: runs an operation again after retryable failures.

use std::any::Any;
use std::fmt::{self, Display};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use connection_core::{Backoff, ConfigError, Endpoint, Error};
use tokio::time::Instant;

use super::{ConnectPhase, RetryBudget, TimeLimit, TimedOut};
use crate::backoff::{BackoffStrategy, Jitter};
use crate::events::Retrying;
use crate::{Classify, EventSink};

/// Default ceiling on a server's `Retry-After`.
pub const DEFAULT_RETRY_AFTER_CAP: Duration = Duration::from_secs(60);

/// A predicate on one concrete error type, reached through `Any` so the policy itself
/// stays free of the operation's error type. `None`: the error is of another type.
type Predicate = Arc<dyn Fn(&dyn Any) -> Option<bool> + Send + Sync>;

/// Builds a [`RetryPolicy`]; made by [`RetryPolicy::builder`].
#[derive(Clone)]
#[must_use]
pub struct RetryPolicyBuilder {
    backoff: Option<BackoffStrategy>,
    budget: Option<RetryBudget>,
    max_elapsed: Option<Duration>,
    attempt_timeout: Option<Duration>,
    retry_after_cap: Duration,
    retry_if: Option<Predicate>,
    events: Option<EventSink>,
}

impl RetryPolicyBuilder {
    /// The delays between attempts and the retry limit. Default: exponential from
    /// 100 ms, ×2, at most 10 s, full jitter, at most 3 retries.
    pub fn backoff(mut self, backoff: BackoffStrategy) -> Self {
        self.backoff = Some(backoff);
        self
    }

    /// Draws every retry from `budget` (default: no budget). Share one budget, or one
    /// policy, among every caller of the same dependency.
    pub fn budget(mut self, budget: RetryBudget) -> Self {
        self.budget = Some(budget);
        self
    }

    /// A deadline on the whole run, attempts and waits together, counted from the
    /// start of the first attempt. A retry whose wait would end past it is not made
    /// (the last error is returned); an attempt still running at the deadline is cut
    /// and fails with [`TimeLimit::Deadline`]. Default: none.
    pub fn max_elapsed(mut self, limit: Duration) -> Self {
        self.max_elapsed = Some(limit);
        self
    }

    /// A limit on each attempt; an attempt that takes longer fails with
    /// [`TimeLimit::Attempt`], which is retryable. Default: none.
    pub fn attempt_timeout(mut self, limit: Duration) -> Self {
        self.attempt_timeout = Some(limit);
        self
    }

    /// The longest wait a server's `Retry-After` (or a policy's refusal hint, see
    /// [`Classify::retry_after`]) can impose; longer requests wait this long. Default
    /// [`DEFAULT_RETRY_AFTER_CAP`].
    pub fn retry_after_cap(mut self, cap: Duration) -> Self {
        self.retry_after_cap = cap;
        self
    }

    /// Decides which errors of type `E` are retried, instead of
    /// [`Classify::is_retryable`]. Runs whose error type is not `E` are unaffected.
    /// Non-idempotent runs still retry only [connect-phase](super::ConnectPhase)
    /// errors.
    ///
    /// ```
    /// use connection_core::Error;
    /// use connection_retry::retry::RetryPolicy;
    ///
    /// // Also retry 401s: the token is refreshed between attempts.
    /// let policy = RetryPolicy::builder()
    ///     .retry_if(|e: &Error| e.is_retryable() || matches!(e, Error::Auth { status: 401, .. }))
    ///     .build()?;
    /// # let _ = policy; Ok::<(), connection_core::ConfigError>(())
    /// ```
    pub fn retry_if<E: 'static>(
        mut self,
        pred: impl Fn(&E) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.retry_if = Some(Arc::new(move |e: &dyn Any| {
            e.downcast_ref::<E>().map(&pred)
        }));
        self
    }

    /// Publishes a [`Retrying`](crate::events::Retrying) event for every retry (default: no events; every
    /// retry is also a `tracing` debug event).
    pub fn events(mut self, sink: EventSink) -> Self {
        self.events = Some(sink);
        self
    }

    /// Validates and builds. Zero `max_elapsed`, `attempt_timeout` or `retry_after_cap`
    /// is refused.
    pub fn build(self) -> Result<RetryPolicy, ConfigError> {
        for (field, value) in [
            ("max_elapsed", self.max_elapsed),
            ("attempt_timeout", self.attempt_timeout),
            ("retry_after_cap", Some(self.retry_after_cap)),
        ] {
            if value.is_some_and(|d| d.is_zero()) {
                return Err(ConfigError::new(field, "must be greater than zero"));
            }
        }
        let backoff = match self.backoff {
            Some(b) => b,
            None => BackoffStrategy::exponential(Duration::from_millis(100), 2.0)
                .max_delay(Duration::from_secs(10))
                .jitter(Jitter::Full)
                .max_retries(3)
                .build()?,
        };
        Ok(RetryPolicy {
            inner: Arc::new(Inner {
                backoff,
                budget: self.budget,
                max_elapsed: self.max_elapsed,
                attempt_timeout: self.attempt_timeout,
                retry_after_cap: self.retry_after_cap,
                retry_if: self.retry_if,
                events: self.events,
                runs: AtomicU64::new(0),
            }),
        })
    }
}

impl fmt::Debug for RetryPolicyBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryPolicyBuilder")
            .field("backoff", &self.backoff)
            .field("budget", &self.budget)
            .field("max_elapsed", &self.max_elapsed)
            .field("attempt_timeout", &self.attempt_timeout)
            .field("retry_after_cap", &self.retry_after_cap)
            .field("retry_if", &self.retry_if.is_some())
            .field("events", &self.events)
            .finish()
    }
}

/// Runs an async operation, and runs it again after retryable failures: with backoff,
/// within a budget and a deadline, honouring `Retry-After`.
///
/// Cloning is cheap (one reference count) and clones share everything, the budget
/// included; so do the [`Retry`](super::Retry) transports built from them.
///
/// For each failure, in order:
/// 1. Not retryable ([`Classify::is_retryable`], or the
///    [`retry_if`](RetryPolicyBuilder::retry_if) predicate), or, in a non-idempotent
///    run, not a [connect-phase](super::ConnectPhase) error: returned.
/// 2. The backoff gives up ([`max_retries`](crate::backoff::BackoffBuilder::max_retries)):
///    returned. Otherwise its delay is the wait, unless the error carries a
///    [`retry_after`](Classify::retry_after) (a server's `Retry-After`, an open
///    circuit's reopening time), which replaces it, at most
///    [`retry_after_cap`](RetryPolicyBuilder::retry_after_cap).
/// 3. The wait would end past [`max_elapsed`](RetryPolicyBuilder::max_elapsed):
///    returned.
/// 4. The [budget](RetryBudget) has no retry left: returned. Refusals by a local policy
///    ([`Classify::rejection`], e.g. an open circuit) do not draw from it: they put no
///    load on the server.
/// 5. Otherwise a [`Retrying`](crate::events::Retrying) event and a `tracing` event are emitted, the policy
///    sleeps (tokio time) and tries again.
///
/// Dropping the returned future stops everything at once, mid-attempt or mid-sleep.
///
/// ```
/// use connection_retry::backoff::BackoffStrategy;
/// use connection_retry::retry::{RetryBudget, RetryPolicy};
/// use std::time::Duration;
///
/// # fn main() -> Result<(), connection_core::ConfigError> {
/// let policy = RetryPolicy::builder()
///     .backoff(BackoffStrategy::grpc().max_retries(5).build()?)
///     .budget(RetryBudget::default())
///     .max_elapsed(Duration::from_secs(30))
///     .attempt_timeout(Duration::from_secs(5))
///     .build()?;
/// # let _ = policy; Ok(()) }
/// ```
#[derive(Clone)]
pub struct RetryPolicy {
    inner: Arc<Inner>,
}

struct Inner {
    backoff: BackoffStrategy,
    budget: Option<RetryBudget>,
    max_elapsed: Option<Duration>,
    attempt_timeout: Option<Duration>,
    retry_after_cap: Duration,
    retry_if: Option<Predicate>,
    events: Option<EventSink>,
    /// Runs that needed a backoff so far: each takes the next random stream.
    runs: AtomicU64,
}

/// Why an attempt failed, as far as the loop is concerned.
enum Failure<E> {
    /// The operation failed (or hit the per-attempt timeout): maybe retry.
    Attempt(E),
    /// The deadline passed during the attempt: stop.
    Deadline(E),
}

impl RetryPolicy {
    /// A builder with the defaults described on each setting.
    pub fn builder() -> RetryPolicyBuilder {
        RetryPolicyBuilder {
            backoff: None,
            budget: None,
            max_elapsed: None,
            attempt_timeout: None,
            retry_after_cap: DEFAULT_RETRY_AFTER_CAP,
            retry_if: None,
            events: None,
        }
    }

    /// The budget retries draw from, if any.
    pub fn budget(&self) -> Option<&RetryBudget> {
        self.inner.budget.as_ref()
    }

    /// Runs `op` until it succeeds or a failure is final (see [`RetryPolicy`] for the
    /// rules). `op` is called once per attempt and must make a fresh future each time.
    ///
    /// The error type needs [`Classify`] (to know what is retryable), `Display` (for
    /// events and logs) and `From<`[`TimedOut`]`>` (to report a cut attempt in the
    /// caller's own type). For [`connection_core::Error`], whose timeouts name an
    /// endpoint, use [`on`](Self::on) instead.
    ///
    /// ```
    /// use connection_retry::Classify;
    /// use connection_retry::backoff::BackoffStrategy;
    /// use connection_retry::retry::{RetryPolicy, TimedOut};
    /// use std::sync::atomic::{AtomicU32, Ordering};
    /// use std::time::Duration;
    ///
    /// #[derive(Debug, thiserror::Error)]
    /// enum FetchError {
    ///     #[error("busy")]
    ///     Busy,
    ///     #[error(transparent)]
    ///     TimedOut(#[from] TimedOut),
    /// }
    /// impl Classify for FetchError {
    ///     fn is_retryable(&self) -> bool {
    ///         true
    ///     }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let policy = RetryPolicy::builder()
    ///     .backoff(BackoffStrategy::fixed(Duration::from_millis(10)).max_retries(5).build()?)
    ///     .build()?;
    /// let calls = AtomicU32::new(0);
    /// let value = policy
    ///     .run(|| async {
    ///         match calls.fetch_add(1, Ordering::Relaxed) {
    ///             0 | 1 => Err(FetchError::Busy),
    ///             _ => Ok(42),
    ///         }
    ///     })
    ///     .await?;
    /// assert_eq!((value, calls.load(Ordering::Relaxed)), (42, 3));
    /// # Ok(()) }
    /// ```
    pub async fn run<T, E, F, Fut>(&self, op: F) -> Result<T, E>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: Classify + Display + From<TimedOut> + 'static,
    {
        self.execute(op, None, <E as From<TimedOut>>::from).await
    }

    /// Like [`run`](Self::run) for an operation that must not be applied twice (a
    /// payment, a non-idempotent POST): only errors that prove the operation never
    /// reached the server ([`ConnectPhase`]) are retried.
    pub async fn run_non_idempotent<T, E, F, Fut>(&self, op: F) -> Result<T, E>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: Classify + Display + From<TimedOut> + ConnectPhase + 'static,
    {
        self.execute(op, Some(E::is_connect_phase), <E as From<TimedOut>>::from)
            .await
    }

    /// This policy for operations on `endpoint` that fail with
    /// [`connection_core::Error`] (or any error type convertible from it): a cut attempt
    /// becomes an [`Error::Timeout`] naming the endpoint (operation `"attempt"`, or
    /// `"retry"` for the deadline).
    ///
    /// ```
    /// use connection_core::{Endpoint, Error, Transport};
    /// use connection_retry::retry::RetryPolicy;
    /// use std::time::Duration;
    ///
    /// # async fn demo<T: Transport>(transport: T) -> Result<(), Error> {
    /// let policy = RetryPolicy::builder().max_elapsed(Duration::from_secs(10)).build()?;
    /// let mut conn = policy.on(transport.endpoint()).run(|| transport.connect()).await?;
    /// # let _ = &mut conn; Ok(()) }
    /// ```
    pub fn on<'a>(&'a self, endpoint: &'a Endpoint) -> RetryOn<'a> {
        RetryOn {
            policy: self,
            endpoint,
        }
    }

    /// The loop behind every entry point. `connect_phase` is set for non-idempotent
    /// runs; `timed_out` turns a cut attempt into the caller's error type.
    pub(super) async fn execute<T, E, F, Fut, M>(
        &self,
        mut op: F,
        connect_phase: Option<fn(&E) -> bool>,
        timed_out: M,
    ) -> Result<T, E>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: Classify + Display + 'static,
        M: Fn(TimedOut) -> E,
    {
        let inner = &*self.inner;
        if let Some(budget) = &inner.budget {
            budget.deposit();
        }
        // The first attempt reads no clock unless a deadline needs it, allocates
        // nothing and touches no shared state: the common case costs almost nothing.
        let deadline = inner
            .max_elapsed
            .and_then(|limit| Instant::now().checked_add(limit));
        let mut err = match inner.attempt(op(), deadline, &timed_out).await {
            Ok(value) => return Ok(value),
            Err(Failure::Deadline(e)) => return Err(e),
            Err(Failure::Attempt(e)) => e,
        };
        let mut backoff = None;
        let mut retry: u32 = 0;
        loop {
            retry = retry.saturating_add(1);
            let Some(delay) = inner.plan(&err, retry, &mut backoff, deadline, connect_phase) else {
                return Err(err);
            };
            inner.announce(&err, retry, delay);
            tokio::time::sleep(delay).await;
            err = match inner.attempt(op(), deadline, &timed_out).await {
                Ok(value) => return Ok(value),
                Err(Failure::Deadline(e)) => return Err(e),
                Err(Failure::Attempt(e)) => e,
            };
        }
    }
}

impl Inner {
    /// Runs one attempt within the per-attempt timeout and the deadline.
    async fn attempt<T, E, Fut>(
        &self,
        fut: Fut,
        deadline: Option<Instant>,
        timed_out: &impl Fn(TimedOut) -> E,
    ) -> Result<T, Failure<E>>
    where
        Fut: Future<Output = Result<T, E>>,
    {
        match (self.attempt_timeout, deadline) {
            (None, None) => fut.await.map_err(Failure::Attempt),
            (Some(limit), None) => match tokio::time::timeout(limit, fut).await {
                Ok(result) => result.map_err(Failure::Attempt),
                Err(_) => Err(Failure::Attempt(timed_out(TimedOut::new(
                    TimeLimit::Attempt,
                    limit,
                )))),
            },
            (limit, Some(deadline)) => {
                let attempt_end = limit.and_then(|l| Instant::now().checked_add(l));
                let (end, by_deadline) = match attempt_end {
                    Some(end) if end < deadline => (end, false),
                    _ => (deadline, true),
                };
                match tokio::time::timeout_at(end, fut).await {
                    Ok(result) => result.map_err(Failure::Attempt),
                    Err(_) if by_deadline => {
                        let max = self.max_elapsed.unwrap_or_default();
                        Err(Failure::Deadline(timed_out(TimedOut::new(
                            TimeLimit::Deadline,
                            max,
                        ))))
                    }
                    Err(_) => Err(Failure::Attempt(timed_out(TimedOut::new(
                        TimeLimit::Attempt,
                        limit.unwrap_or_default(),
                    )))),
                }
            }
        }
    }

    /// The wait before retry number `retry` after `err`, or `None` to give up.
    fn plan<E: Classify + 'static>(
        &self,
        err: &E,
        retry: u32,
        backoff: &mut Option<BackoffStrategy>,
        deadline: Option<Instant>,
        connect_phase: Option<fn(&E) -> bool>,
    ) -> Option<Duration> {
        let retryable = match &self.retry_if {
            Some(pred) => pred(err as &dyn Any).unwrap_or_else(|| err.is_retryable()),
            None => err.is_retryable(),
        };
        if !retryable || connect_phase.is_some_and(|reached_nothing| !reached_nothing(err)) {
            return None;
        }
        // Each run gets its own random stream, so concurrent runs do not jitter in step.
        let backoff = backoff
            .get_or_insert_with(|| self.backoff.fork(self.runs.fetch_add(1, Ordering::Relaxed)));
        let core_error = (err as &dyn Any).downcast_ref::<Error>();
        let computed = backoff.next_delay(retry, core_error)?;
        let delay = err
            .retry_after()
            .map_or(computed, |asked| asked.min(self.retry_after_cap));
        if let Some(deadline) = deadline {
            if Instant::now()
                .checked_add(delay)
                .is_none_or(|resume| resume >= deadline)
            {
                tracing::debug!(?delay, "not retrying: the wait would pass the deadline");
                return None;
            }
        }
        if err.rejection().is_none() {
            if let Some(budget) = &self.budget {
                if !budget.withdraw() {
                    tracing::debug!("not retrying: retry budget exhausted");
                    return None;
                }
            }
        }
        Some(delay)
    }

    fn announce<E: Display>(&self, err: &E, retry: u32, delay: Duration) {
        let attempt = retry.saturating_add(1);
        tracing::debug!(attempt, ?delay, error = %err, "retrying");
        if let Some(sink) = &self.events {
            sink.publish(Retrying::new(attempt, delay, err.to_string().into()).into());
        }
    }
}

impl Default for RetryPolicy {
    /// The builder's defaults: see [`RetryPolicy::builder`].
    fn default() -> Self {
        // Cannot fail: the defaults pass every check `build` makes.
        Self::builder()
            .build()
            .unwrap_or_else(|_| unreachable!("default retry settings are valid"))
    }
}

impl fmt::Debug for RetryPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &*self.inner;
        f.debug_struct("RetryPolicy")
            .field("backoff", &i.backoff)
            .field("budget", &i.budget)
            .field("max_elapsed", &i.max_elapsed)
            .field("attempt_timeout", &i.attempt_timeout)
            .field("retry_after_cap", &i.retry_after_cap)
            .field("retry_if", &i.retry_if.is_some())
            .field("events", &i.events)
            .finish()
    }
}

/// A [`RetryPolicy`] for operations on one endpoint that fail with
/// [`connection_core::Error`]; made by [`RetryPolicy::on`].
#[derive(Clone, Copy, Debug)]
#[must_use = "a RetryOn does nothing until `run` is called"]
pub struct RetryOn<'a> {
    policy: &'a RetryPolicy,
    endpoint: &'a Endpoint,
}

impl RetryOn<'_> {
    /// [`RetryPolicy::run`], with cut attempts reported as [`Error::Timeout`] on the
    /// endpoint.
    pub async fn run<T, E, F, Fut>(self, op: F) -> Result<T, E>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: Classify + Display + From<Error> + 'static,
    {
        let endpoint = self.endpoint;
        self.policy
            .execute(op, None, |t: TimedOut| E::from(t.into_error(endpoint)))
            .await
    }

    /// [`RetryPolicy::run_non_idempotent`], with cut attempts reported as
    /// [`Error::Timeout`] on the endpoint.
    pub async fn run_non_idempotent<T, E, F, Fut>(self, op: F) -> Result<T, E>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: Classify + Display + From<Error> + ConnectPhase + 'static,
    {
        let endpoint = self.endpoint;
        self.policy
            .execute(op, Some(E::is_connect_phase), |t: TimedOut| {
                E::from(t.into_error(endpoint))
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_settings_are_refused_by_name() {
        let field = |b: RetryPolicyBuilder| b.build().unwrap_err().field();
        assert_eq!(
            field(RetryPolicy::builder().max_elapsed(Duration::ZERO)),
            "max_elapsed"
        );
        assert_eq!(
            field(RetryPolicy::builder().attempt_timeout(Duration::ZERO)),
            "attempt_timeout"
        );
        assert_eq!(
            field(RetryPolicy::builder().retry_after_cap(Duration::ZERO)),
            "retry_after_cap"
        );
    }

    #[test]
    fn policy_is_cheap_to_clone_and_shares_state() {
        fn bounds<T: Clone + fmt::Debug + Send + Sync + 'static>() {}
        bounds::<RetryPolicy>();
        let p = RetryPolicy::builder()
            .budget(RetryBudget::default())
            .build()
            .unwrap();
        let q = p.clone();
        assert!(Arc::ptr_eq(&p.inner, &q.inner));
        let dbg = format!("{:?}", RetryPolicy::default());
        assert!(dbg.contains("max_retries: Some(3)"), "{dbg}");
    }
}
