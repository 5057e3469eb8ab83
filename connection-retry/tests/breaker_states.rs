//! Every transition of the breaker's state machine, on paused tokio time.

use std::time::Duration;

use connection_core::{Endpoint, Error, RejectReason, Rejected};
use connection_retry::Classify;
use connection_retry::breaker::{CircuitBreaker, CircuitBreakerBuilder, CircuitState};
use tokio::time::advance;

fn ep() -> Endpoint {
    Endpoint::host_port("127.0.0.1", 9).expect("valid endpoint")
}

fn refused() -> Error {
    Error::connect(&ep(), std::io::ErrorKind::ConnectionRefused.into())
}

fn fail(b: &CircuitBreaker) {
    b.try_acquire().expect("call admitted").failure();
}

fn succeed(b: &CircuitBreaker) {
    b.try_acquire().expect("call admitted").success();
}

/// The wait a rejection reports.
fn rejected_for(b: &CircuitBreaker) -> Option<Duration> {
    let r = b.try_acquire().expect_err("call rejected");
    assert_eq!(r.reason, RejectReason::CircuitOpen);
    r.retry_after
}

fn tripping_after(n: u32) -> CircuitBreakerBuilder {
    CircuitBreaker::builder()
        .consecutive_failures(n)
        .wait(Duration::from_secs(10))
}

#[tokio::test(start_paused = true)]
async fn consecutive_failures_trip_and_a_success_starts_the_count_over() {
    let b = tripping_after(3).build().unwrap();
    fail(&b);
    fail(&b);
    succeed(&b);
    fail(&b);
    fail(&b);
    assert_eq!(b.state(), CircuitState::Closed);
    fail(&b);
    assert_eq!(b.state(), CircuitState::Open);
    assert_eq!(rejected_for(&b), Some(Duration::from_secs(10)));
    let s = b.stats();
    assert_eq!((s.calls, s.failures, s.successes), (6, 5, 1));
    assert_eq!((s.trips, s.rejections), (1, 1));
}

#[tokio::test(start_paused = true)]
async fn failure_rate_trips_only_once_the_window_holds_min_calls() {
    let b = CircuitBreaker::builder()
        .no_consecutive_failures()
        .failure_rate(0.5)
        .count_window(10)
        .min_calls(6)
        .build()
        .unwrap();
    for _ in 0..5 {
        fail(&b);
    }
    // 5 of 5 failed, but 5 calls are too few to judge.
    assert_eq!(b.state(), CircuitState::Closed);
    // The sixth call, a success, makes the window judgeable: 5/6 failed.
    succeed(&b);
    assert_eq!(b.state(), CircuitState::Open);
}

#[tokio::test(start_paused = true)]
async fn failure_rate_is_over_the_last_calls_only() {
    let b = CircuitBreaker::builder()
        .no_consecutive_failures()
        .failure_rate(0.5)
        .count_window(4)
        .min_calls(4)
        .build()
        .unwrap();
    // S F S S: 1/4.
    succeed(&b);
    fail(&b);
    succeed(&b);
    succeed(&b);
    // F pushes out the first S: F S S F, 2/4 = 50%: trips.
    assert_eq!(b.state(), CircuitState::Closed);
    fail(&b);
    assert_eq!(b.state(), CircuitState::Open);

    let b = CircuitBreaker::builder()
        .no_consecutive_failures()
        .failure_rate(0.75)
        .count_window(4)
        .min_calls(4)
        .build()
        .unwrap();
    // F F S S then S S: the failures slide out; F F F after that is 3/4 only at the end.
    for outcome in [true, true, false, false, false, false, true, true] {
        let p = b.try_acquire().unwrap();
        if outcome { p.failure() } else { p.success() }
    }
    assert_eq!(b.state(), CircuitState::Closed, "window S S F F: 2/4");
    fail(&b);
    assert_eq!(b.state(), CircuitState::Open, "window S F F F: 3/4");
}

#[tokio::test(start_paused = true)]
async fn time_window_forgets_calls_older_than_its_span() {
    let b = CircuitBreaker::builder()
        .no_consecutive_failures()
        .failure_rate(0.5)
        .time_window(Duration::from_secs(10))
        .min_calls(4)
        .build()
        .unwrap();
    fail(&b);
    fail(&b);
    succeed(&b);
    advance(Duration::from_secs(11)).await;
    // Counting the old calls, the next success would make F F S S = 50% and trip.
    succeed(&b);
    succeed(&b);
    fail(&b);
    succeed(&b);
    assert_eq!(b.state(), CircuitState::Closed, "1 of 4 in the window");
    fail(&b);
    assert_eq!(b.state(), CircuitState::Closed, "2 of 5");
    fail(&b);
    assert_eq!(b.state(), CircuitState::Open, "3 of 6");
}

#[tokio::test(start_paused = true)]
async fn slow_call_rate_trips_on_measured_durations() {
    let b = CircuitBreaker::builder()
        .no_consecutive_failures()
        .slow_calls(Duration::from_millis(100), 0.5)
        .count_window(10)
        .min_calls(3)
        .build()
        .unwrap();
    // Measured by the permit: 150 ms of (paused) time passes during the call.
    let r: Result<(), Error> = b
        .run(|| async {
            tokio::time::sleep(Duration::from_millis(150)).await;
            Ok(())
        })
        .await;
    r.unwrap();
    succeed(&b);
    assert_eq!(b.stats().slow_calls, 1);
    assert_eq!(b.state(), CircuitState::Closed, "too few calls to judge");
    // Reported by the caller.
    b.try_acquire()
        .unwrap()
        .record(Duration::from_millis(400), false);
    assert_eq!(b.state(), CircuitState::Open, "2 of 3 calls slow");
    let s = b.stats();
    assert_eq!((s.successes, s.failures, s.slow_calls), (3, 0, 2));
}

#[tokio::test(start_paused = true)]
async fn open_turns_half_open_when_the_wait_is_over() {
    let b = tripping_after(1).build().unwrap();
    fail(&b);
    advance(Duration::from_secs(3)).await;
    assert_eq!(b.state(), CircuitState::Open);
    assert_eq!(rejected_for(&b), Some(Duration::from_secs(7)));
    advance(Duration::from_secs(7)).await;
    assert_eq!(b.state(), CircuitState::HalfOpen);
    let probe = b.try_acquire().unwrap();
    assert!(probe.is_probe());
    probe.success();
    assert_eq!(b.state(), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn half_open_admits_only_n_probes_and_closes_when_all_succeed() {
    let b = tripping_after(1).half_open_probes(2).build().unwrap();
    fail(&b);
    advance(Duration::from_secs(10)).await;
    let p1 = b.try_acquire().unwrap();
    let p2 = b.try_acquire().unwrap();
    assert!(p1.is_probe() && p2.is_probe());
    // Every slot is taken: rejected, with a hint shorter than a whole wait.
    assert_eq!(rejected_for(&b), Some(Duration::from_secs(1)));
    p1.success();
    assert_eq!(b.state(), CircuitState::HalfOpen);
    // A success frees no slot: two probes in all.
    assert!(b.try_acquire().is_err());
    p2.success();
    assert_eq!(b.state(), CircuitState::Closed);
    let s = b.stats();
    assert_eq!((s.trips, s.rejections), (1, 2));
    // Closed again: the failure count starts from zero, one failure trips (limit 1).
    succeed(&b);
    fail(&b);
    assert_eq!(b.state(), CircuitState::Open);
}

#[tokio::test(start_paused = true)]
async fn a_failed_probe_reopens_for_another_wait() {
    let b = tripping_after(2).half_open_probes(3).build().unwrap();
    fail(&b);
    fail(&b);
    advance(Duration::from_secs(10)).await;
    let p1 = b.try_acquire().unwrap();
    let p2 = b.try_acquire().unwrap();
    p1.success();
    p2.failure();
    assert_eq!(b.state(), CircuitState::Open);
    assert_eq!(rejected_for(&b), Some(Duration::from_secs(10)));
    assert_eq!(b.stats().trips, 2);
}

#[tokio::test(start_paused = true)]
async fn a_slow_probe_reopens() {
    let b = tripping_after(1)
        .slow_calls(Duration::from_millis(500), 1.0)
        .build()
        .unwrap();
    fail(&b);
    advance(Duration::from_secs(10)).await;
    b.try_acquire()
        .unwrap()
        .record(Duration::from_secs(1), false);
    assert_eq!(b.state(), CircuitState::Open);
}

#[tokio::test(start_paused = true)]
async fn late_outcomes_of_an_earlier_period_move_nothing() {
    let b = tripping_after(1).build().unwrap();
    let early = b.try_acquire().unwrap();
    fail(&b);
    advance(Duration::from_secs(10)).await;
    let probe = b.try_acquire().unwrap();
    // A call admitted while closed fails during half-open: not a probe, no re-open.
    early.failure();
    assert_eq!(b.state(), CircuitState::HalfOpen);
    probe.success();
    assert_eq!(b.state(), CircuitState::Closed);
    assert_eq!(b.stats().failures, 2, "still counted in the stats");
}

#[tokio::test(start_paused = true)]
async fn dropped_probe_permit_frees_its_slot() {
    let b = tripping_after(1).build().unwrap();
    fail(&b);
    advance(Duration::from_secs(10)).await;
    let probe = b.try_acquire().unwrap();
    assert!(b.try_acquire().is_err());
    drop(probe);
    assert_eq!(
        b.state(),
        CircuitState::HalfOpen,
        "neither success nor failure"
    );

    // A cancelled `run` (its future dropped mid-call) frees the slot too.
    let timed_out = tokio::time::timeout(
        Duration::from_millis(10),
        b.run(|| async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok::<(), Error>(())
        }),
    )
    .await;
    assert!(timed_out.is_err());
    assert_eq!(b.state(), CircuitState::HalfOpen);
    let probe = b.try_acquire().expect("the slot was given back");
    probe.success();
    assert_eq!(b.state(), CircuitState::Closed);
    assert_eq!(b.stats().ignored, 2);
}

#[tokio::test(start_paused = true)]
async fn repeated_trips_grow_the_wait_within_jitter_bounds() {
    let build = || {
        tripping_after(1)
            .wait(Duration::from_secs(1))
            .max_wait(Duration::from_secs(8))
            .wait_multiplier(2.0)
            .jitter(0.5)
            .seed(7)
            .build()
            .unwrap()
    };
    let b = build();
    let first = trip_sequence(&b).await;
    for (n, wait) in first.iter().enumerate() {
        let ceiling = Duration::from_secs(1 << n.min(3));
        assert!(
            *wait <= ceiling && *wait >= ceiling / 2,
            "trip {n}: {wait:?} outside [{:?}, {ceiling:?}]",
            ceiling / 2
        );
    }
    let ceilings = [1u64, 2, 4, 8, 8, 8].map(Duration::from_secs);
    assert!(
        first.iter().zip(ceilings).any(|(w, c)| *w < c),
        "jitter shortened waits"
    );
    // Same seed, same waits.
    assert_eq!(trip_sequence(&build()).await, first);
    // Closing starts over from the base wait.
    succeed_probe(&b).await;
    fail(&b);
    let wait = rejected_for(&b).unwrap();
    assert!(wait <= Duration::from_secs(1) && wait >= Duration::from_millis(500));
}

/// Trips, then fails the probe of each half-open period: the wait of six trips in a row.
async fn trip_sequence(b: &CircuitBreaker) -> Vec<Duration> {
    let mut waits = vec![];
    fail(b);
    for _ in 0..6 {
        let wait = rejected_for(b).expect("open circuits say when");
        waits.push(wait);
        advance(wait).await;
        fail(b);
    }
    waits
}

async fn succeed_probe(b: &CircuitBreaker) {
    // Past the longest wait (the clock may have moved on already).
    advance(Duration::from_secs(8)).await;
    succeed(b);
    assert_eq!(b.state(), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn force_open_isolate_and_reset() {
    let b = tripping_after(5).build().unwrap();
    b.force_open();
    assert_eq!(b.state(), CircuitState::Open);
    assert_eq!(rejected_for(&b), Some(Duration::from_secs(10)));
    advance(Duration::from_secs(10)).await;
    assert_eq!(
        b.state(),
        CircuitState::HalfOpen,
        "forced open waits like a trip"
    );

    b.isolate();
    assert_eq!(b.state(), CircuitState::Isolated);
    assert_eq!(rejected_for(&b), None, "no probe until reset");
    advance(Duration::from_secs(3600)).await;
    assert_eq!(b.state(), CircuitState::Isolated);
    assert!(b.state().is_open());

    b.reset();
    assert_eq!(b.state(), CircuitState::Closed);
    succeed(&b);
    let s = b.stats();
    assert_eq!((s.trips, s.rejections, s.calls), (1, 2, 1));
}

#[tokio::test(start_paused = true)]
async fn reset_forgets_failures_so_far() {
    let b = tripping_after(2).build().unwrap();
    fail(&b);
    b.reset();
    fail(&b);
    assert_eq!(b.state(), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn refusals_are_neither_success_nor_failure() {
    let b = tripping_after(1).build().unwrap();
    for reason in [RejectReason::RateLimited, RejectReason::BulkheadFull] {
        let r: Result<(), Error> = b.run(|| async { Err(Rejected::new(reason).into()) }).await;
        assert_eq!(r.unwrap_err().rejection(), Some(reason));
    }
    assert_eq!(b.state(), CircuitState::Closed);
    let s = b.stats();
    assert_eq!((s.calls, s.ignored), (0, 2));

    // A refusal is no success either: it does not close a half-open circuit.
    fail(&b);
    advance(Duration::from_secs(10)).await;
    let r: Result<(), Error> = b
        .run(|| async { Err(Rejected::new(RejectReason::RateLimited).into()) })
        .await;
    assert!(r.is_err());
    assert_eq!(b.state(), CircuitState::HalfOpen);
}

#[tokio::test(start_paused = true)]
async fn the_failure_predicate_decides_what_counts() {
    // Only retryable errors are failures: a rejected credential is the server answering.
    let b = tripping_after(2)
        .failure_predicate(|e| e.is_retryable())
        .build()
        .unwrap();
    let auth = || Error::Auth {
        endpoint: ep(),
        status: 401,
    };
    let r: Result<(), Error> = b.run(|| async { Err(refused()) }).await;
    assert!(r.is_err());
    let r: Result<(), Error> = b.run(|| async { Err(auth()) }).await;
    assert!(r.is_err());
    let r: Result<(), Error> = b.run(|| async { Err(refused()) }).await;
    assert!(r.is_err());
    assert_eq!(
        b.state(),
        CircuitState::Closed,
        "the auth error reset the run"
    );
    let s = b.stats();
    assert_eq!((s.failures, s.successes), (2, 1));
    let r: Result<(), Error> = b.run(|| async { Err(refused()) }).await;
    assert!(r.is_err());
    assert_eq!(b.state(), CircuitState::Open);

    // Per call, with run_with.
    let b = tripping_after(1).build().unwrap();
    let r: Result<(), Error> = b.run_with(|_| false, || async { Err(refused()) }).await;
    assert!(r.is_err());
    assert_eq!(b.state(), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn rejections_come_back_in_the_callers_error_type() {
    let b = tripping_after(1).build().unwrap();
    let r: Result<(), Error> = b.run(|| async { Err(refused()) }).await;
    assert!(r.is_err());
    advance(Duration::from_secs(4)).await;
    let mut ran = false;
    let r: Result<(), Error> = b
        .run(|| async {
            ran = true;
            Ok(())
        })
        .await;
    assert!(!ran, "an open circuit does not run the operation");
    let err = r.unwrap_err();
    assert!(err.is_retryable());
    assert_eq!(err.rejection(), Some(RejectReason::CircuitOpen));
    assert_eq!(err.retry_after(), Some(Duration::from_secs(6)));
    assert_eq!(err.to_string(), "circuit open; retry in 6s");

    // The synchronous form, with `Rejected` itself as the error type.
    let r: Result<(), Rejected> = b.call(|| Ok(()));
    assert_eq!(r.unwrap_err().retry_after, Some(Duration::from_secs(6)));
}

#[tokio::test(start_paused = true)]
async fn extreme_settings_do_not_panic() {
    // Durations past a year are refused, naming the setting...
    let refused = [
        CircuitBreaker::builder().wait(Duration::MAX).build(),
        CircuitBreaker::builder().max_wait(Duration::MAX).build(),
        CircuitBreaker::builder().time_window(Duration::MAX).build(),
        CircuitBreaker::builder()
            .slow_calls(Duration::MAX, 1.0)
            .build(),
    ];
    let fields: Vec<_> = refused
        .into_iter()
        .map(|r| r.map(drop).unwrap_err().field())
        .collect();
    assert_eq!(
        fields,
        ["wait_ms", "max_wait_ms", "window_ms", "slow_call_ms"]
    );
    // ...and the longest accepted ones run.
    let year = connection_core::MAX_DURATION;
    let b = CircuitBreaker::builder()
        .consecutive_failures(1)
        .wait(year)
        .max_wait(year)
        .wait_multiplier(1e300)
        .jitter(1.0)
        .time_window(year)
        .failure_rate(1.0)
        .slow_calls(year, 1.0)
        .min_calls(u32::MAX)
        .build()
        .unwrap();
    for _ in 0..3 {
        fail(&b);
        assert!(rejected_for(&b).is_some());
        b.force_open();
        b.reset();
    }
    let b = CircuitBreaker::builder()
        .consecutive_failures(u32::MAX)
        .count_window(1)
        .failure_rate(1.0)
        .min_calls(1)
        .build()
        .unwrap();
    fail(&b);
    assert_eq!(
        b.state(),
        CircuitState::Open,
        "one call is the whole window"
    );
}
