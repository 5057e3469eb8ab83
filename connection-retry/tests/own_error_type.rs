//! Retry and breaker around an operation with the caller's own error type: it compiles
//! with only `Classify::is_retryable` (or a closure, and no `Classify` at all), and an
//! open circuit's "come back in N ms" is honoured although the error type swallowed the
//! refusal: the retry waits for the breaker's wait, not its own backoff, and spends no
//! budget on the refused attempt.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use connection_core::{EventBus, EventFilter, EventStream};
use connection_retry::backoff::BackoffStrategy;
use connection_retry::events::Retrying;
use connection_retry::limit::{LimitMode, Quota, RateLimiter};
use connection_retry::{CircuitBreaker, Classify, EventSink, Rejected, RetryBudget, RetryPolicy};
use connection_testkit::events::drain;
use tokio::time::Instant;

/// The breaker trips after two failures and stays open this long.
const BREAKER_WAIT: Duration = Duration::from_millis(300);
/// The retry policy's own delay, much shorter than the breaker's wait.
const BACKOFF: Duration = Duration::from_millis(50);

/// What a user writes first: two variants, `#[from] Rejected`, and `Classify` with
/// `is_retryable` alone.
#[derive(Debug, thiserror::Error)]
enum ApiError {
    #[error("server busy")]
    Busy,
    #[error("refused: {0}")]
    Refused(#[from] Rejected),
}

impl Classify for ApiError {
    fn is_retryable(&self) -> bool {
        true
    }
}

/// The same without `Classify` (and without thiserror), for the closure forms.
#[derive(Debug)]
enum PlainError {
    Busy,
    Refused,
}

impl fmt::Display for PlainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Busy => "busy",
            Self::Refused => "refused",
        })
    }
}

impl From<Rejected> for PlainError {
    fn from(_: Rejected) -> Self {
        Self::Refused
    }
}

fn breaker() -> CircuitBreaker {
    CircuitBreaker::builder()
        .consecutive_failures(2)
        .wait(BREAKER_WAIT)
        .build()
        .expect("valid breaker")
}

fn retry(bus: &EventBus) -> RetryPolicy {
    RetryPolicy::builder()
        .backoff(
            BackoffStrategy::fixed(BACKOFF)
                .max_retries(5)
                .build()
                .expect("valid backoff"),
        )
        // Exactly two retries' worth: a refused attempt drawing on it would end the run.
        .budget(
            RetryBudget::builder()
                .min_per_sec(0)
                .ratio(2.0)
                .build()
                .expect("valid budget"),
        )
        .events(EventSink::named(bus.clone(), "users-api"))
        .build()
        .expect("valid policy")
}

/// When each real call started; the first two fail, the rest succeed.
#[derive(Clone, Default)]
struct Backend {
    calls: Arc<Mutex<Vec<Duration>>>,
}

impl Backend {
    fn call<E>(&self, started: Instant, busy: E) -> Result<u32, E> {
        let mut calls = self.calls.lock().expect("not poisoned");
        calls.push(started.elapsed());
        if calls.len() <= 2 { Err(busy) } else { Ok(7) }
    }

    fn times(&self) -> Vec<Duration> {
        self.calls.lock().expect("not poisoned").clone()
    }
}

/// Two failures trip the breaker at 50 ms; the third attempt, at 100 ms, is refused
/// with 250 ms to go; the retry waits exactly that, so the probe is the third real call,
/// one breaker wait after the trip.
fn assert_breaker_wait_honoured(backend: &Backend, started: Instant, events: &[Retrying]) {
    let times = backend.times();
    assert_eq!(times.len(), 3, "real calls at {times:?}");
    assert_eq!(times[1] - times[0], BACKOFF);
    assert_eq!(
        times[2] - times[1],
        BREAKER_WAIT,
        "probe one breaker wait after the trip"
    );
    assert_eq!(started.elapsed(), BACKOFF + BREAKER_WAIT);
    let delays: Vec<_> = events.iter().map(|r| (r.attempt, r.delay)).collect();
    assert_eq!(
        delays,
        [(2, BACKOFF), (3, BACKOFF), (4, BREAKER_WAIT - BACKOFF)]
    );
}

fn retrying_events(events: &mut EventStream) -> Vec<Retrying> {
    drain(events)
        .iter()
        .filter_map(|e| e.kind.downcast_ref::<Retrying>().cloned())
        .collect()
}

#[tokio::test(start_paused = true)]
async fn own_error_type_with_only_is_retryable_honours_the_breakers_wait() {
    let bus = EventBus::new(64);
    let mut events = bus.subscribe(EventFilter::all().extensions([Retrying::NAME]));
    let (retry, breaker, backend) = (retry(&bus), breaker(), Backend::default());
    let started = Instant::now();

    let result: Result<u32, ApiError> = retry
        .run(|| {
            breaker.run(|| {
                let backend = backend.clone();
                async move { backend.call(started, ApiError::Busy) }
            })
        })
        .await;

    assert_eq!(result.unwrap(), 7);
    assert_breaker_wait_honoured(&backend, started, &retrying_events(&mut events));
    assert!(breaker.state().is_closed(), "the probe closed it");
    assert_eq!(
        retry.budget().unwrap().available(),
        0,
        "two retries spent, not three"
    );
}

#[tokio::test(start_paused = true)]
async fn closures_instead_of_classify_honour_the_breakers_wait() {
    let bus = EventBus::new(64);
    let mut events = bus.subscribe(EventFilter::all().extensions([Retrying::NAME]));
    let (retry, breaker, backend) = (retry(&bus), breaker(), Backend::default());
    let started = Instant::now();

    let result: Result<u32, PlainError> = retry
        .when(|_: &PlainError| true)
        .run(|| {
            breaker.run_with(
                |e| matches!(e, PlainError::Busy),
                || {
                    let backend = backend.clone();
                    async move { backend.call(started, PlainError::Busy) }
                },
            )
        })
        .await;

    assert_eq!(result.unwrap(), 7);
    assert_breaker_wait_honoured(&backend, started, &retrying_events(&mut events));
    assert!(breaker.state().is_closed());
}

#[tokio::test(start_paused = true)]
async fn the_retry_event_reads_as_the_policys() {
    let bus = EventBus::new(64);
    let mut events = bus.subscribe(EventFilter::all().extensions([Retrying::NAME]));
    let (retry, breaker, backend) = (retry(&bus), breaker(), Backend::default());
    let started = Instant::now();
    let _: Result<u32, ApiError> = retry
        .run(|| {
            breaker.run(|| {
                let backend = backend.clone();
                async move { backend.call(started, ApiError::Busy) }
            })
        })
        .await;
    let lines: Vec<String> = drain(&mut events).iter().map(ToString::to_string).collect();
    assert_eq!(
        lines.last().map(String::as_str),
        Some(
            "retry policy users-api: retrying (attempt 4 in 250ms) after: refused: circuit open; retry in 250ms"
        ),
        "{lines:#?}"
    );
}

#[tokio::test(start_paused = true)]
async fn an_inner_limiters_refusal_is_no_breaker_failure_for_an_own_error_type() {
    let breaker = CircuitBreaker::builder()
        .consecutive_failures(1)
        .build()
        .unwrap();
    let limiter = RateLimiter::builder(Quota::per_second(1, 1).unwrap())
        .mode(LimitMode::FailFast)
        .build();
    for _ in 0..3 {
        let r: Result<(), ApiError> = breaker.run(|| limiter.run(|| async { Ok(()) })).await;
        let _ = r;
    }
    // One call passed, two were refused by the limiter: none is a failure of the
    // dependency, so the breaker (tripping on one failure) is still closed.
    assert!(breaker.state().is_closed());
    assert_eq!(breaker.stats().failures, 0);
    // The synchronous form too.
    let r: Result<(), ApiError> = breaker.call(|| limiter.check().map_err(ApiError::from));
    assert!(matches!(r, Err(ApiError::Refused(_))));
    assert!(breaker.state().is_closed());
}

#[tokio::test(start_paused = true)]
async fn a_refusal_handled_before_a_real_failure_does_not_hide_it() {
    let breaker = CircuitBreaker::builder()
        .consecutive_failures(1)
        .build()
        .unwrap();
    let limiter = RateLimiter::builder(Quota::per_second(1, 1).unwrap())
        .mode(LimitMode::FailFast)
        .build();
    limiter.check().unwrap();
    // The operation is refused by the limiter, falls back to another road after an
    // await, and that road fails: a failure of the dependency.
    let r: Result<(), ApiError> = breaker
        .run(|| async {
            if limiter.check().is_err() {
                tokio::task::yield_now().await;
            }
            Err(ApiError::Busy)
        })
        .await;
    assert!(matches!(r, Err(ApiError::Busy)));
    assert!(breaker.state().is_open());
}
