//! A keyed limiter under a flood of new keys: tracked keys keep their permits, memory
//! stays within `max_keys`, and no flood resets a key that still owes time.

use std::time::Duration;

use connection_core::RejectReason;
use connection_retry::KeyedRateLimiter;
use connection_retry::limit::{LimitMode, Quota, RateLimiter};

const MAX_KEYS: usize = 1_000;

/// One call a minute per key, with a burst of `burst`.
fn limiter(burst: u32) -> KeyedRateLimiter<u64> {
    RateLimiter::builder(Quota::per_minute(1, burst).expect("valid quota"))
        .mode(LimitMode::FailFast)
        .max_keys(MAX_KEYS)
        .build_keyed()
}

#[tokio::test(start_paused = true)]
async fn a_tracked_key_with_a_permit_is_admitted_while_new_keys_flood() {
    let limiter = limiter(1_000);
    for key in 0..MAX_KEYS as u64 {
        limiter.check_key(&key).unwrap();
    }
    // Every tracked key owes a minute: new keys find no room...
    let mut next = MAX_KEYS as u64;
    for round in 0..100 {
        for _ in 0..100 {
            let refused = limiter.check_key(&next).unwrap_err();
            assert_eq!(refused.reason, RejectReason::RateLimited);
            assert!(
                refused
                    .retry_after
                    .is_some_and(|d| d <= Duration::from_secs(60))
            );
            next += 1;
        }
        // ...and a tracked key that still has permits is never refused for their sake.
        assert!(limiter.check_key(&0).is_ok(), "round {round}");
        assert_eq!(limiter.len(), MAX_KEYS);
    }
    // A minute on, the keys checked once are idle again: new keys take their place,
    // while key 0, which still owes time, keeps its place and its state.
    tokio::time::advance(Duration::from_secs(60)).await;
    for _ in 0..10 * MAX_KEYS {
        let admitted = limiter.check_key(&next).is_ok();
        next += 1;
        let _ = admitted;
    }
    assert_eq!(limiter.len(), MAX_KEYS, "memory stays bounded");
    assert!(limiter.check_key(&0).is_ok());
}

#[tokio::test(start_paused = true)]
async fn memory_stays_within_max_keys_whether_new_keys_are_admitted_or_not() {
    for burst in [1, 1_000] {
        let limiter = limiter(burst);
        let mut admitted = 0;
        for key in 0..20 * MAX_KEYS as u64 {
            if limiter.check_key(&key).is_ok() {
                admitted += 1;
            }
            if key % 997 == 0 {
                // Time passes: some keys' quotas come back.
                tokio::time::advance(Duration::from_secs(7)).await;
            }
            assert!(limiter.len() <= MAX_KEYS);
        }
        assert_eq!(limiter.len(), MAX_KEYS);
        assert!(admitted > MAX_KEYS, "idle keys made room: {admitted}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_flood_of_new_keys_cannot_reset_a_key_that_owes_time() {
    // One a second, two at once.
    let limiter = RateLimiter::builder(Quota::per_second(1, 2).unwrap())
        .mode(LimitMode::FailFast)
        .max_keys(MAX_KEYS)
        .build_keyed::<u64>();
    // Key 0 takes both permits, so it owes until 2 s; the others take one and are
    // idle again at 1 s.
    limiter.check_key(&0).unwrap();
    limiter.check_key(&0).unwrap();
    for key in 1..MAX_KEYS as u64 {
        limiter.check_key(&key).unwrap();
    }
    tokio::time::advance(Duration::from_millis(1_100)).await;
    // Ten times the table's size in new keys: the first take the idle keys' places;
    // then only key 0 and keys that owe time are left, and the rest are refused
    // rather than key 0 forgotten.
    let admitted = (MAX_KEYS as u64..11 * MAX_KEYS as u64)
        .filter(|key| limiter.check_key(key).is_ok())
        .count();
    assert_eq!(admitted, MAX_KEYS - 1);
    // Key 0 kept its state: one permit back at 1 s, the next at 2 s. Forgotten, it
    // would have two.
    limiter.check_key(&0).unwrap();
    let refused = limiter.check_key(&0).unwrap_err();
    assert_eq!(refused.retry_after, Some(Duration::from_millis(900)));
}
