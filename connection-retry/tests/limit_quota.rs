//! Rate limiters hold their quota, say when the next permit comes, and share state
//! across clones; keyed limiters stay bounded.

use std::time::Duration;

use connection_core::{EventBus, EventFilter, RejectReason};
use connection_retry::EventSink;
use connection_retry::events::RateLimited;
use connection_retry::limit::{LimitMode, Quota, RateLimitConfig, RateLimiter};
use futures::StreamExt;
use tokio::time::Instant;

#[tokio::test(start_paused = true)]
async fn quota_holds_within_one_percent_over_ten_virtual_minutes() {
    let limiter = RateLimiter::new(Quota::per_second(100, 10).unwrap());
    let started = Instant::now();
    let horizon = Duration::from_secs(600);
    // Four tasks share the limiter through clones, as clones of a transport would.
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let limiter = limiter.clone();
            tokio::spawn(async move {
                let mut n = 0u64;
                while started.elapsed() < horizon {
                    limiter.acquire().await.unwrap();
                    n += 1;
                }
                n
            })
        })
        .collect();
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    let expected = 10.0 + 100.0 * 600.0;
    let error = (total as f64 - expected).abs() / expected;
    assert!(
        error < 0.01,
        "{total} calls in 600 s, expected about {expected}"
    );
}

#[tokio::test(start_paused = true)]
async fn fail_fast_says_when_the_next_permit_comes() {
    let limiter = RateLimiter::builder(Quota::per_second(4, 2).unwrap())
        .mode(LimitMode::FailFast)
        .build();
    limiter.check().unwrap();
    limiter.check().unwrap();
    let refused = limiter.acquire().await.unwrap_err();
    assert_eq!(refused.reason, RejectReason::RateLimited);
    assert_eq!(refused.retry_after, Some(Duration::from_millis(250)));
    tokio::time::advance(Duration::from_millis(100)).await;
    assert_eq!(
        limiter.check().unwrap_err().retry_after,
        Some(Duration::from_millis(150))
    );
    tokio::time::advance(Duration::from_millis(150)).await;
    limiter.check().unwrap();
}

#[tokio::test(start_paused = true)]
async fn waits_longer_than_max_wait_are_refused() {
    let limiter = RateLimiter::builder(Quota::per_second(1, 1).unwrap())
        .mode(LimitMode::Wait {
            max_wait: Some(Duration::from_millis(500)),
        })
        .build();
    limiter.acquire().await.unwrap();
    let started = Instant::now();
    let refused = limiter.acquire().await.unwrap_err();
    assert_eq!(
        started.elapsed(),
        Duration::ZERO,
        "refusal must be immediate"
    );
    assert_eq!(refused.retry_after, Some(Duration::from_secs(1)));
    tokio::time::advance(Duration::from_millis(600)).await;
    let started = Instant::now();
    limiter.acquire().await.unwrap();
    assert_eq!(started.elapsed(), Duration::from_millis(400));
}

#[tokio::test(start_paused = true)]
async fn jitter_stays_within_its_band_and_is_reproducible() {
    let run = |seed| async move {
        let limiter = RateLimiter::builder(Quota::per_second(10, 1).unwrap())
            .jitter(Duration::from_millis(50))
            .seed(seed)
            .build();
        limiter.acquire().await.unwrap();
        let mut waits = vec![];
        for _ in 0..20 {
            let started = Instant::now();
            limiter.acquire().await.unwrap();
            waits.push(started.elapsed());
        }
        waits
    };
    let a = run(7).await;
    assert_eq!(a, run(7).await, "same seed, same waits");
    // Each wait is the 100 ms interval, less the previous jitter overshoot, plus up to
    // 50 ms of jitter.
    for w in &a {
        assert!(
            *w >= Duration::from_millis(50) && *w <= Duration::from_millis(150),
            "{w:?}"
        );
    }
    assert!(a.iter().any(|w| *w != a[0]), "jitter must vary: {a:?}");
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_wait_takes_no_permit() {
    let limiter = RateLimiter::new(Quota::per_second(1, 1).unwrap());
    limiter.acquire().await.unwrap();
    let waiting = tokio::time::timeout(Duration::from_millis(200), limiter.acquire()).await;
    assert!(waiting.is_err());
    tokio::time::advance(Duration::from_millis(800)).await;
    // The permit due at 1 s is still there for the next caller.
    assert!(limiter.check().is_ok());
}

#[tokio::test(start_paused = true)]
async fn refusals_and_waits_are_events() {
    let bus = EventBus::new(16);
    let mut events = bus.subscribe(EventFilter::all().extensions([RateLimited::NAME]));
    let limiter = RateLimiter::builder(Quota::per_second(2, 1).unwrap())
        .mode(LimitMode::FailFast)
        .events(EventSink::named(bus.clone(), "api"))
        .build();
    limiter.check().unwrap();
    let _refused = limiter.check().unwrap_err();
    let e = events.next().await.unwrap().unwrap();
    assert_eq!(&*e.name, "api");
    assert!(
        e.kind.downcast_ref::<RateLimited>().map(|r| r.retry_after)
            == Some(Duration::from_millis(500))
    );
}

#[tokio::test(start_paused = true)]
async fn keyed_limiters_are_independent_reuse_idle_places_and_stay_bounded() {
    let limiter = RateLimiter::builder(Quota::per_second(1, 1).unwrap())
        .mode(LimitMode::FailFast)
        .max_keys(10)
        .build_keyed::<u32>();
    for key in 0..10 {
        limiter.check_key(&key).unwrap();
    }
    assert!(limiter.check_key(&3).is_err(), "each key has its own quota");
    // All ten keys are busy: an eleventh is refused instead of growing the table.
    let refused = limiter.check_key(&99).unwrap_err();
    assert_eq!(refused.retry_after, Some(Duration::from_secs(1)));
    assert_eq!(limiter.len(), 10);

    // Once a key's quota is back to full, its place goes to a new key.
    tokio::time::advance(Duration::from_secs(2)).await;
    limiter.check_key(&99).unwrap();
    assert_eq!(limiter.len(), 10);
    tokio::time::advance(Duration::from_secs(2)).await;
    limiter.prune();
    assert!(limiter.is_empty());
}

#[test]
fn config_from_serde_and_env_is_validated() {
    let cfg: RateLimitConfig =
        serde_json::from_str(r#"{"rate": 50, "burst": 5, "max_wait_ms": 100}"#).unwrap();
    let limiter = cfg.build().unwrap();
    assert_eq!(limiter.quota().interval(), Duration::from_millis(20));
    assert_eq!(
        limiter.mode(),
        LimitMode::Wait {
            max_wait: Some(Duration::from_millis(100))
        }
    );

    let bad: RateLimitConfig = serde_json::from_str(r#"{"rate": 0, "burst": 5}"#).unwrap();
    assert_eq!(bad.build().unwrap_err().field(), "rate");
    let bad: RateLimitConfig = serde_json::from_str(r#"{"rate": 5, "burst": 0}"#).unwrap();
    assert_eq!(bad.build().unwrap_err().field(), "burst");

    let env = RateLimitConfig::from_vars([
        ("CONNECTION_RATE_LIMIT_RATE", "600"),
        ("CONNECTION_RATE_LIMIT_PERIOD_MS", "60000"),
        ("CONNECTION_RATE_LIMIT_BURST", "3"),
        ("CONNECTION_RATE_LIMIT_MODE", "fail_fast"),
    ])
    .unwrap();
    assert_eq!(
        env.build().unwrap().quota().interval(),
        Duration::from_millis(100)
    );
    // Every setting has a default: a rate alone keeps the default burst.
    let rate_only = RateLimitConfig::from_vars([("CONNECTION_RATE_LIMIT_RATE", "5")]).unwrap();
    assert_eq!((rate_only.rate, rate_only.burst), (5, 100));
    let err = RateLimitConfig::from_vars([
        ("CONNECTION_RATE_LIMIT_RATE", "5"),
        ("CONNECTION_RATE_LIMIT_BURST", "1"),
        ("CONNECTION_RATE_LIMIT_MODE", "later"),
    ])
    .unwrap_err();
    assert_eq!(err.field(), "mode");
    assert_eq!(err.variable(), Some("CONNECTION_RATE_LIMIT_MODE"));
}

#[test]
fn fast_clock_limits_on_real_time() {
    use connection_retry::limit::LimiterClock;
    let limiter = RateLimiter::builder(Quota::per_minute(1, 2).unwrap())
        .mode(LimitMode::FailFast)
        .clock(LimiterClock::fast())
        .build();
    limiter.check().unwrap();
    limiter.check().unwrap();
    let refused = limiter.check().unwrap_err();
    // About a minute away; a little less, since real time has passed since the burst.
    let wait = refused.retry_after.unwrap();
    assert!(
        wait > Duration::from_secs(59) && wait <= Duration::from_secs(60),
        "{wait:?}"
    );
}
