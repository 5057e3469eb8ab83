//! [`RetryPolicy`]: runs an operation again after retryable failures.

use std::any::Any;
use std::fmt::{self, Display};
use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use connection_core::{Backoff, ConfigError, Endpoint, Error};
use futures::FutureExt;
use tokio::time::Instant;

use super::{ConnectPhase, RetryBudget, TimeLimit, TimedOut};
use crate::backoff::{BackoffStrategy, Jitter};
use crate::events::Retrying;
use crate::refusal::{Hint, Watched};
use crate::{Classify, EventSink};

/// Default ceiling on a server's `Retry-After`.
pub const DEFAULT_RETRY_AFTER_CAP: Duration = Duration::from_secs(60);

/// A predicate on one concrete error type, reached through `Any` so the policy itself
/// stays free of the operation's error type. `None`: the error is of another type.
type Predicate = Arc<dyn Fn(&dyn Any) -> Option<bool> + Send + Sync>;

/// The type of a [`RetryPolicy`] (and its builder) that never cuts an attempt short:
/// its [`run`](RetryPolicy::run) needs nothing of the error type but
/// [`Classify`] and `Display`. The default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Untimed;

/// The type of a [`RetryPolicy`] (and its builder) that may cut an attempt short, set by
/// [`attempt_timeout`](RetryPolicyBuilder::attempt_timeout) or
/// [`max_elapsed`](RetryPolicyBuilder::max_elapsed): its [`run`](RetryPolicy#method.run-1)
/// also needs `E: From<`[`TimedOut`]`>`, the error a cut attempt ends with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Timed;

/// Builds a [`RetryPolicy`]; made by [`RetryPolicy::builder`].
///
/// `L` is [`Untimed`] until a time limit is set ([`attempt_timeout`](Self::attempt_timeout),
/// [`max_elapsed`](Self::max_elapsed)), then [`Timed`]; the policy built keeps it, so
/// only a policy that can cut an attempt asks the error type to hold a [`TimedOut`].
#[derive(Clone)]
#[must_use]
pub struct RetryPolicyBuilder<L = Untimed> {
    backoff: Option<BackoffStrategy>,
    budget: Option<RetryBudget>,
    max_elapsed: Option<Duration>,
    attempt_timeout: Option<Duration>,
    retry_after_cap: Duration,
    retry_if: Option<Predicate>,
    events: Option<EventSink>,
    limits: PhantomData<fn() -> L>,
}

impl<L> RetryPolicyBuilder<L> {
    /// The same settings, with time limits type `M`.
    fn limits<M>(self) -> RetryPolicyBuilder<M> {
        RetryPolicyBuilder {
            backoff: self.backoff,
            budget: self.budget,
            max_elapsed: self.max_elapsed,
            attempt_timeout: self.attempt_timeout,
            retry_after_cap: self.retry_after_cap,
            retry_if: self.retry_if,
            events: self.events,
            limits: PhantomData,
        }
    }

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
    ///
    /// Makes the policy [`Timed`]: its `run` needs `E: From<TimedOut>`.
    pub fn max_elapsed(mut self, limit: Duration) -> RetryPolicyBuilder<Timed> {
        self.max_elapsed = Some(limit);
        self.limits()
    }

    /// A limit on each attempt; an attempt that takes longer fails with
    /// [`TimeLimit::Attempt`], which is retryable. Default: none.
    ///
    /// Makes the policy [`Timed`]: its `run` needs `E: From<TimedOut>`.
    pub fn attempt_timeout(mut self, limit: Duration) -> RetryPolicyBuilder<Timed> {
        self.attempt_timeout = Some(limit);
        self.limits()
    }

    /// A [`Timed`] builder whether or not a limit is set, for code that sets them only
    /// sometimes (from a config file) and needs one type either way.
    ///
    /// ```
    /// use connection_retry::retry::{RetryPolicy, Timed};
    /// use std::time::Duration;
    ///
    /// fn policy(deadline: Option<Duration>) -> RetryPolicy<Timed> {
    ///     let builder = RetryPolicy::builder().timed();
    ///     let builder = match deadline {
    ///         Some(d) => builder.max_elapsed(d),
    ///         None => builder,
    ///     };
    ///     builder.build().expect("valid settings")
    /// }
    /// # let _ = policy(None);
    /// ```
    pub fn timed(self) -> RetryPolicyBuilder<Timed> {
        self.limits()
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
    /// errors. To decide at the call site, with no [`Classify`] implementation at all,
    /// see [`RetryPolicy::when`].
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
    pub fn build(self) -> Result<RetryPolicy<L>, ConfigError> {
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
            limits: PhantomData,
        })
    }
}

impl<L> fmt::Debug for RetryPolicyBuilder<L> {
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
/// within a budget and a deadline, honouring `Retry-After` and a refusal's "come back
/// in".
///
/// Cloning is cheap (one reference count) and clones share everything, the budget
/// included; so do the [`Retry`](super::Retry) transports built from them.
///
/// `L` says whether the policy can cut an attempt short ([`Timed`]: an
/// [`attempt_timeout`](RetryPolicyBuilder::attempt_timeout) or a
/// [`max_elapsed`](RetryPolicyBuilder::max_elapsed) was set) or not ([`Untimed`], the
/// default). Only a `Timed` policy's `run` needs the error type to take a [`TimedOut`].
///
/// For each failure, in order:
/// 1. Not retryable ([`Classify::is_retryable`], the
///    [`retry_if`](RetryPolicyBuilder::retry_if) predicate, or the closure given to
///    [`when`](Self::when)), or, in a non-idempotent run, not a
///    [connect-phase](super::ConnectPhase) error: returned.
/// 2. The backoff gives up ([`max_retries`](crate::backoff::BackoffBuilder::max_retries)):
///    returned. Otherwise its delay is the wait, unless the failure carries a wait of
///    its own, which replaces it, at most
///    [`retry_after_cap`](RetryPolicyBuilder::retry_after_cap): the error's
///    [`retry_after`](Classify::retry_after) (a server's `Retry-After`), or else, when
///    the attempt was refused by a breaker, limiter or bulkhead of this crate, the wait
///    that refusal named (an open circuit's time until its next probe). The refusal is
///    recognized even after your error type swallowed it through `From<Rejected>`: see
///    [`Classify`] for how.
/// 3. The wait would end past [`max_elapsed`](RetryPolicyBuilder::max_elapsed):
///    returned.
/// 4. The [budget](RetryBudget) has no retry left: returned. Refusals do not draw from
///    it: they put no load on the server.
/// 5. Otherwise a [`Retrying`](crate::events::Retrying) event and a `tracing` event are
///    emitted, the policy sleeps (tokio time) and tries again.
///
/// Dropping the returned future stops everything at once, mid-attempt or mid-sleep.
///
/// ```
/// use connection_retry::backoff::BackoffStrategy;
/// use connection_retry::retry::{RetryBudget, RetryPolicy, Timed};
/// use std::time::Duration;
///
/// # fn main() -> Result<(), connection_core::ConfigError> {
/// let policy: RetryPolicy<Timed> = RetryPolicy::builder()
///     .backoff(BackoffStrategy::grpc().max_retries(5).build()?)
///     .budget(RetryBudget::default())
///     .max_elapsed(Duration::from_secs(30))
///     .attempt_timeout(Duration::from_secs(5))
///     .build()?;
/// # let _ = policy; Ok(()) }
/// ```
#[derive(Clone)]
pub struct RetryPolicy<L = Untimed> {
    inner: Arc<Inner>,
    limits: PhantomData<fn() -> L>,
}

pub(super) struct Inner {
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
pub(super) enum Failure<E> {
    /// The operation failed (or hit the per-attempt timeout): maybe retry. With the
    /// refusal the failing poll made, if it made one.
    Attempt(E, Option<Hint>),
    /// The deadline passed during the attempt: stop.
    Deadline(E),
}

/// How the loop reads an error: through [`Classify`] or through a caller's closure.
pub(super) trait Judge<E> {
    /// Whether to try again after it.
    fn retryable(&self, error: &E) -> bool;
    /// The wait the error itself asks for.
    fn retry_after(&self, error: &E) -> Option<Duration>;
    /// Whether the error says it is a refusal by a local policy.
    fn is_refusal(&self, error: &E) -> bool;
}

/// [`Classify`], overridden for one error type by `retry_if`.
pub(super) struct ByClassify<'a>(Option<&'a Predicate>);

impl<E: Classify + 'static> Judge<E> for ByClassify<'_> {
    fn retryable(&self, error: &E) -> bool {
        match self.0 {
            Some(pred) => pred(error as &dyn Any).unwrap_or_else(|| error.is_retryable()),
            None => error.is_retryable(),
        }
    }

    fn retry_after(&self, error: &E) -> Option<Duration> {
        error.retry_after()
    }

    fn is_refusal(&self, error: &E) -> bool {
        error.rejection().is_some()
    }
}

/// A closure decides what is retried; what else is known comes from core's error, if
/// that is the type, and from noted refusals.
struct ByClosure<P>(P);

impl<E: 'static, P: Fn(&E) -> bool> Judge<E> for ByClosure<P> {
    fn retryable(&self, error: &E) -> bool {
        (self.0)(error)
    }

    fn retry_after(&self, error: &E) -> Option<Duration> {
        (error as &dyn Any).downcast_ref::<Error>()?.retry_after()
    }

    fn is_refusal(&self, error: &E) -> bool {
        matches!(
            (error as &dyn Any).downcast_ref::<Error>(),
            Some(Error::Rejected(_))
        )
    }
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
            limits: PhantomData,
        }
    }

    /// Runs `op` until it succeeds or a failure is final (see [`RetryPolicy`] for the
    /// rules). `op` is called once per attempt and must make a fresh future each time.
    ///
    /// The error type needs [`Classify`] (to know what is retryable; `is_retryable` is
    /// the only method you must write) and `Display` (for events and logs). To decide
    /// with a closure instead, see [`when`](Self::when). For
    /// [`connection_core::Error`], use [`on`](Self::on), which names the endpoint.
    ///
    /// ```
    /// use connection_retry::Classify;
    /// use connection_retry::backoff::BackoffStrategy;
    /// use connection_retry::retry::RetryPolicy;
    /// use std::sync::atomic::{AtomicU32, Ordering};
    /// use std::time::Duration;
    ///
    /// #[derive(Debug, thiserror::Error)]
    /// enum FetchError {
    ///     #[error("busy")]
    ///     Busy,
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
        E: Classify + Display + 'static,
    {
        let judge = self.classify();
        self.execute(op, &judge, None, NoCut).await
    }

    /// Like [`run`](Self::run) for an operation that must not be applied twice (a
    /// payment, a non-idempotent POST): only errors that prove the operation never
    /// reached the server ([`ConnectPhase`]) are retried.
    pub async fn run_non_idempotent<T, E, F, Fut>(&self, op: F) -> Result<T, E>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: Classify + Display + ConnectPhase + 'static,
    {
        let judge = self.classify();
        self.execute(op, &judge, Some(E::is_connect_phase), NoCut)
            .await
    }
}

impl RetryPolicy<Timed> {
    /// Runs `op` until it succeeds or a failure is final, cutting attempts at this
    /// policy's time limits (see [`RetryPolicy`] for the rules).
    ///
    /// The error type needs [`Classify`], `Display` and `From<`[`TimedOut`]`>`: a cut
    /// attempt ends with a `TimedOut` in the caller's own type. For
    /// [`connection_core::Error`], use [`on`](Self::on), which makes it an
    /// [`Error::Timeout`] naming the endpoint.
    ///
    /// ```
    /// use connection_retry::{Classify, TimedOut};
    /// use connection_retry::retry::RetryPolicy;
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
    ///         match self {
    ///             FetchError::Busy => true,
    ///             FetchError::TimedOut(t) => t.is_retryable(),
    ///         }
    ///     }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let policy = RetryPolicy::builder().attempt_timeout(Duration::from_secs(1)).build()?;
    /// let mut first = true;
    /// let value = policy
    ///     .run(|| {
    ///         let hang = std::mem::take(&mut first);
    ///         async move {
    ///             if hang {
    ///                 std::future::pending::<()>().await; // cut after 1 s, then retried
    ///             }
    ///             Ok::<_, FetchError>(7)
    ///         }
    ///     })
    ///     .await?;
    /// assert_eq!(value, 7);
    /// # Ok(()) }
    /// ```
    pub async fn run<T, E, F, Fut>(&self, op: F) -> Result<T, E>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: Classify + Display + From<TimedOut> + 'static,
    {
        let judge = self.classify();
        self.execute(op, &judge, None, CutWith(<E as From<TimedOut>>::from))
            .await
    }

    /// [`run_non_idempotent`](RetryPolicy::run_non_idempotent) with this policy's time
    /// limits.
    pub async fn run_non_idempotent<T, E, F, Fut>(&self, op: F) -> Result<T, E>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: Classify + Display + From<TimedOut> + ConnectPhase + 'static,
    {
        let judge = self.classify();
        self.execute(
            op,
            &judge,
            Some(E::is_connect_phase),
            CutWith(<E as From<TimedOut>>::from),
        )
        .await
    }
}

impl From<RetryPolicy<Untimed>> for RetryPolicy<Timed> {
    /// The same policy (clones share its state) under the type that allows time
    /// limits, for code that keeps policies of both kinds in one place.
    fn from(policy: RetryPolicy<Untimed>) -> Self {
        Self {
            inner: policy.inner,
            limits: PhantomData,
        }
    }
}

impl<L> RetryPolicy<L> {
    /// Reads errors through [`Classify`] and this policy's `retry_if`.
    pub(super) fn classify(&self) -> ByClassify<'_> {
        ByClassify(self.inner.retry_if.as_ref())
    }

    /// The budget retries draw from, if any.
    pub fn budget(&self) -> Option<&RetryBudget> {
        self.inner.budget.as_ref()
    }

    /// This policy with `retryable` deciding which errors are retried, instead of
    /// [`Classify`]: the error type then needs only `Display` (and
    /// `From<`[`TimedOut`]`>` for a [`Timed`] policy). Like backon's `.when(..)`.
    ///
    /// A refusal by this crate's breaker, limiter or bulkhead inside the operation is
    /// still recognized (its wait honoured, no budget spent), as with `Classify`.
    ///
    /// ```
    /// use connection_retry::RetryPolicy;
    /// use connection_retry::backoff::BackoffStrategy;
    /// use std::time::Duration;
    ///
    /// #[derive(Debug)]
    /// struct Status(u16);
    /// impl std::fmt::Display for Status {
    ///     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
    ///         write!(f, "status {}", self.0)
    ///     }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let policy = RetryPolicy::builder()
    ///     .backoff(BackoffStrategy::fixed(Duration::from_millis(10)).max_retries(3).build()?)
    ///     .build()?;
    /// let mut statuses = vec![404, 503].into_iter();
    /// let result: Result<(), Status> = policy
    ///     .when(|e: &Status| e.0 >= 500)
    ///     .run(|| {
    ///         let status = statuses.next().unwrap_or(503);
    ///         async move { Err(Status(status)) }
    ///     })
    ///     .await;
    /// assert_eq!(result.unwrap_err().0, 404); // not retried
    /// # Ok(()) }
    /// ```
    pub fn when<E, P>(&self, retryable: P) -> RetryWhen<'_, L, P>
    where
        P: Fn(&E) -> bool,
    {
        RetryWhen {
            policy: self,
            retryable,
        }
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
    pub fn on<'a>(&'a self, endpoint: &'a Endpoint) -> RetryOn<'a, L> {
        RetryOn {
            policy: self,
            endpoint,
        }
    }

    /// The loop behind every entry point. `connect_phase` is set for non-idempotent
    /// runs; `cut` bounds attempts in time ([`NoCut`] for [`Untimed`] policies, which
    /// have no limit, so that their runs carry no timer).
    pub(super) async fn execute<T, E, F, Fut, J, C>(
        &self,
        mut op: F,
        judge: &J,
        connect_phase: Option<fn(&E) -> bool>,
        cut: C,
    ) -> Result<T, E>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: Display + 'static,
        J: Judge<E>,
        C: Cut<E>,
    {
        let inner = &*self.inner;
        if let Some(budget) = &inner.budget {
            budget.deposit();
        }
        // The first attempt reads no clock unless a deadline needs it, allocates
        // nothing and touches no shared state: the common case costs almost nothing.
        let deadline = cut.deadline(inner);
        let (err, noted) = match cut.attempt(inner, op(), deadline).await {
            Ok(value) => return Ok(value),
            Err(Failure::Deadline(e)) => return Err(e),
            Err(Failure::Attempt(e, noted)) => (e, noted),
        };
        // Boxed: the retries' state (backoff, timer, the next attempt) would otherwise
        // be part of every run's future, and every run that succeeds at once would move
        // it around for nothing (it doubled the cost of a first-attempt success). A run
        // that got here sleeps for milliseconds; one allocation is nothing next to that.
        let retries = Retries {
            inner,
            judge,
            connect_phase,
            cut: &cut,
            deadline,
        };
        Box::pin(retries.run(op, err, noted)).await
    }
}

/// What the retries of one run need, after its first attempt failed.
struct Retries<'a, J, C, E> {
    inner: &'a Inner,
    judge: &'a J,
    connect_phase: Option<fn(&E) -> bool>,
    cut: &'a C,
    deadline: Option<Instant>,
}

impl<J, C, E> Retries<'_, J, C, E>
where
    E: Display + 'static,
    J: Judge<E>,
    C: Cut<E>,
{
    async fn run<T, F, Fut>(self, mut op: F, mut err: E, mut noted: Option<Hint>) -> Result<T, E>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let inner = self.inner;
        let mut backoff = None;
        let mut retry: u32 = 0;
        loop {
            retry = retry.saturating_add(1);
            let Some(delay) = self.plan(&err, noted, retry, &mut backoff) else {
                return Err(err);
            };
            inner.announce(&err, retry, delay);
            tokio::time::sleep(delay).await;
            (err, noted) = match self.cut.attempt(inner, op(), self.deadline).await {
                Ok(value) => return Ok(value),
                Err(Failure::Deadline(e)) => return Err(e),
                Err(Failure::Attempt(e, noted)) => (e, noted),
            };
        }
    }

    /// The wait before retry number `retry` after `err` (whose attempt noted the
    /// refusal `noted`, if any), or `None` to give up.
    fn plan(
        &self,
        err: &E,
        noted: Option<Hint>,
        retry: u32,
        backoff: &mut Option<BackoffStrategy>,
    ) -> Option<Duration> {
        let inner = self.inner;
        if !self.judge.retryable(err)
            || self
                .connect_phase
                .is_some_and(|reached_nothing| !reached_nothing(err))
        {
            return None;
        }
        // Each run gets its own random stream, so concurrent runs do not jitter in step.
        let backoff = backoff.get_or_insert_with(|| {
            inner
                .backoff
                .fork(inner.runs.fetch_add(1, Ordering::Relaxed))
        });
        let core_error = (err as &dyn Any).downcast_ref::<Error>();
        let computed = backoff.next_delay(retry, core_error)?;
        // The error's own word first; else the refusal's, which the caller's error type
        // may not carry (see `refusal.rs`).
        let asked = self
            .judge
            .retry_after(err)
            .or_else(|| noted.and_then(|hint| hint.retry_after));
        let delay = asked.map_or(computed, |asked| asked.min(inner.retry_after_cap));
        if let Some(deadline) = self.deadline {
            if Instant::now()
                .checked_add(delay)
                .is_none_or(|resume| resume >= deadline)
            {
                tracing::debug!(?delay, "not retrying: the wait would pass the deadline");
                return None;
            }
        }
        if noted.is_none() && !self.judge.is_refusal(err) {
            if let Some(budget) = &inner.budget {
                if !budget.withdraw() {
                    tracing::debug!("not retrying: retry budget exhausted");
                    return None;
                }
            }
        }
        Some(delay)
    }
}

/// How a run bounds its attempts in time.
pub(super) trait Cut<E> {
    /// When the whole run must end, if it must; read once, at its start.
    fn deadline(&self, inner: &Inner) -> Option<Instant>;

    /// One attempt, with the refusal its failing poll made.
    fn attempt<T, Fut>(
        &self,
        inner: &Inner,
        fut: Fut,
        deadline: Option<Instant>,
    ) -> impl Future<Output = Result<T, Failure<E>>>
    where
        Fut: Future<Output = Result<T, E>>;
}

/// Attempts run as long as they take: [`Untimed`] policies have no limit.
pub(super) struct NoCut;

impl<E> Cut<E> for NoCut {
    fn deadline(&self, _: &Inner) -> Option<Instant> {
        None
    }

    fn attempt<T, Fut>(
        &self,
        _: &Inner,
        fut: Fut,
        _: Option<Instant>,
    ) -> impl Future<Output = Result<T, Failure<E>>>
    where
        Fut: Future<Output = Result<T, E>>,
    {
        Watched::new(fut).map(|r| r.map_err(|(e, noted)| Failure::Attempt(e, noted)))
    }
}

/// Attempts are cut at the policy's limits, and the cut reported through the function.
pub(super) struct CutWith<M>(pub(super) M);

impl<E, M: Fn(TimedOut) -> E> Cut<E> for CutWith<M> {
    fn deadline(&self, inner: &Inner) -> Option<Instant> {
        inner
            .max_elapsed
            .and_then(|limit| Instant::now().checked_add(limit))
    }

    fn attempt<T, Fut>(
        &self,
        inner: &Inner,
        fut: Fut,
        deadline: Option<Instant>,
    ) -> impl Future<Output = Result<T, Failure<E>>>
    where
        Fut: Future<Output = Result<T, E>>,
    {
        inner.attempt(fut, deadline, &self.0)
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
        let fut = Watched::new(fut);
        let attempt_failed = |(e, noted)| Failure::Attempt(e, noted);
        match (self.attempt_timeout, deadline) {
            (None, None) => fut.await.map_err(attempt_failed),
            (Some(limit), None) => match tokio::time::timeout(limit, fut).await {
                Ok(result) => result.map_err(attempt_failed),
                Err(_) => Err(Failure::Attempt(
                    timed_out(TimedOut::new(TimeLimit::Attempt, limit)),
                    None,
                )),
            },
            (limit, Some(deadline)) => {
                let attempt_end = limit.and_then(|l| Instant::now().checked_add(l));
                let (end, by_deadline) = match attempt_end {
                    Some(end) if end < deadline => (end, false),
                    _ => (deadline, true),
                };
                match tokio::time::timeout_at(end, fut).await {
                    Ok(result) => result.map_err(attempt_failed),
                    Err(_) if by_deadline => {
                        let max = self.max_elapsed.unwrap_or_default();
                        Err(Failure::Deadline(timed_out(TimedOut::new(
                            TimeLimit::Deadline,
                            max,
                        ))))
                    }
                    Err(_) => Err(Failure::Attempt(
                        timed_out(TimedOut::new(TimeLimit::Attempt, limit.unwrap_or_default())),
                        None,
                    )),
                }
            }
        }
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

impl<L> fmt::Debug for RetryPolicy<L> {
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

/// A [`RetryPolicy`] whose retryable errors a closure picks; made by
/// [`RetryPolicy::when`].
#[derive(Clone)]
#[must_use = "a RetryWhen does nothing until `run` is called"]
pub struct RetryWhen<'a, L, P> {
    policy: &'a RetryPolicy<L>,
    retryable: P,
}

impl<L, P> fmt::Debug for RetryWhen<'_, L, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryWhen")
            .field("policy", self.policy)
            .finish_non_exhaustive()
    }
}

impl<P> RetryWhen<'_, Untimed, P> {
    /// [`RetryPolicy::run`], retrying the errors the closure picks.
    pub async fn run<T, E, F, Fut>(self, op: F) -> Result<T, E>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: Display + 'static,
        P: Fn(&E) -> bool,
    {
        let judge = ByClosure(self.retryable);
        self.policy.execute(op, &judge, None, NoCut).await
    }
}

impl<P> RetryWhen<'_, Timed, P> {
    /// [`RetryPolicy::run`] of a [`Timed`] policy, retrying the errors the closure
    /// picks.
    pub async fn run<T, E, F, Fut>(self, op: F) -> Result<T, E>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: Display + From<TimedOut> + 'static,
        P: Fn(&E) -> bool,
    {
        let judge = ByClosure(self.retryable);
        self.policy
            .execute(op, &judge, None, CutWith(<E as From<TimedOut>>::from))
            .await
    }
}

/// A [`RetryPolicy`] for operations on one endpoint that fail with
/// [`connection_core::Error`]; made by [`RetryPolicy::on`].
#[must_use = "a RetryOn does nothing until `run` is called"]
pub struct RetryOn<'a, L = Untimed> {
    policy: &'a RetryPolicy<L>,
    endpoint: &'a Endpoint,
}

impl<L> Clone for RetryOn<'_, L> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<L> Copy for RetryOn<'_, L> {}

impl<L> fmt::Debug for RetryOn<'_, L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryOn")
            .field("policy", self.policy)
            .field("endpoint", self.endpoint)
            .finish()
    }
}

impl<L> RetryOn<'_, L> {
    /// [`RetryPolicy::run`], with cut attempts reported as [`Error::Timeout`] on the
    /// endpoint.
    pub async fn run<T, E, F, Fut>(self, op: F) -> Result<T, E>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: Classify + Display + From<Error> + 'static,
    {
        let endpoint = self.endpoint;
        let judge = self.policy.classify();
        self.policy
            .execute(
                op,
                &judge,
                None,
                CutWith(|t: TimedOut| E::from(t.into_error(endpoint))),
            )
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
        let judge = self.policy.classify();
        self.policy
            .execute(
                op,
                &judge,
                Some(E::is_connect_phase),
                CutWith(|t: TimedOut| E::from(t.into_error(endpoint))),
            )
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_settings_are_refused_by_name() {
        let field = |b: RetryPolicyBuilder<Timed>| b.build().unwrap_err().field();
        assert_eq!(
            field(RetryPolicy::builder().max_elapsed(Duration::ZERO)),
            "max_elapsed"
        );
        assert_eq!(
            field(RetryPolicy::builder().attempt_timeout(Duration::ZERO)),
            "attempt_timeout"
        );
        assert_eq!(
            field(
                RetryPolicy::builder()
                    .retry_after_cap(Duration::ZERO)
                    .timed()
            ),
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
