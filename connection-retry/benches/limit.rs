//! Rate limiter check: our wrapper vs raw governor on the same quota.
//!
//! Both limiters get a quota so large that every check passes: this measures what a
//! permitted call costs, which is what every call through a healthy limiter pays. The
//! peer is set up as governor's users would (`RateLimiter::direct` with its default
//! clock). Ours is measured twice: with its default clock (tokio's, so that paused-time
//! tests work) and with the opt-in fast clock (`limiter_check_fast_*`).
//!
//! Keyed limiters under a key flood (`keyed_limiter_*`): a table already holding
//! `MAX_KEYS` keys, then either one tracked key checked over and over
//! (`keyed_limiter_tracked`: its state stays in the CPU's cache), every tracked key in
//! a scattered order (`keyed_limiter_tracked_scattered`: as cold in the cache as a new
//! key's place) or a new key on every check (`keyed_limiter_flood`: the
//! tracked keys are idle, their quota full again, so a new key can take a place;
//! `keyed_limiter_flood_busy`: every tracked key still owes time, as with a quota of one
//! call a minute, so new keys find no place). Both sides read the TSC clock (ours
//! `LimiterClock::fast`, governor's default). governor's keyed limiter is its default
//! DashMap store with `retain_recent()` run periodically, as its docs ask of callers:
//! every 100 ms, inline on the checking thread so that its cost is in the figure. It
//! keeps every key until then (for a minute, in the busy case), so its table grows
//! past `MAX_KEYS`; the key counts after each run are in the JSON lines.
#![allow(
    clippy::print_stdout,
    reason = "benchmarks report JSON lines on stdout"
)]
#![allow(missing_docs, reason = "bench binary")]

mod support;

use std::hint::black_box;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use connection_retry::KeyedRateLimiter;
use connection_retry::limit::{LimitMode, LimiterClock, Quota, RateLimiter};
use governor::clock::DefaultClock;
use governor::state::keyed::DefaultKeyedStateStore;
use support::{median, time_threads};

const OPS: u64 = 5_000_000;
const ROUNDS: usize = 5;

/// Keys in the table before a keyed run (our default bound).
const MAX_KEYS: u64 = 100_000;
/// Checks per keyed run.
const KEYED_OPS: u64 = 1_000_000;
/// How often governor's keys are pruned (`retain_recent`).
const RETAIN_EVERY: Duration = Duration::from_millis(100);

type GovernorKeyed = governor::RateLimiter<u64, DefaultKeyedStateStore<u64>, DefaultClock>;

/// What a keyed run checks.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Keys {
    /// Key 0, tracked, always with a permit: its state stays in the CPU's cache.
    Tracked,
    /// Tracked keys in a scattered order, each with a permit: like a flood's keys,
    /// their state is rarely in the cache.
    TrackedScattered,
    /// A key never seen before, every time.
    Flood,
}

impl Keys {
    fn key(self, n: u64) -> u64 {
        match self {
            Self::Tracked => 0,
            // A multiplicative scramble: every tracked key, in no order the prefetcher
            // can follow.
            Self::TrackedScattered => n.wrapping_mul(0x9E37_79B9_7F4A_7C15) % MAX_KEYS,
            Self::Flood => n,
        }
    }
}

/// A quota whose keys are idle again right after a call (`busy = false`), or one whose
/// keys owe a minute after a call (`busy = true`); either way key 0 never runs out.
fn keyed_quota(busy: bool) -> (Quota, governor::Quota) {
    // Far more than a run takes, and small enough that governor's tolerance (interval
    // × burst, in nanoseconds) does not overflow a u64 at one call a minute.
    let burst = 100_000_000;
    let b = NonZeroU32::new(burst).expect("non-zero");
    if busy {
        (
            Quota::per_minute(1, burst).expect("valid quota"),
            governor::Quota::per_minute(NonZeroU32::MIN).allow_burst(b),
        )
    } else {
        let rate = 1_000_000_000u32;
        let n = NonZeroU32::new(rate).expect("non-zero");
        (
            Quota::per_second(rate, burst).expect("valid quota"),
            governor::Quota::per_second(n).allow_burst(b),
        )
    }
}

/// ns per check on a full table of ours; the key count after.
fn keyed_ours(busy: bool, keys: Keys) -> (f64, usize) {
    let limiter: KeyedRateLimiter<u64> = RateLimiter::builder(keyed_quota(busy).0)
        .mode(LimitMode::FailFast)
        .clock(LimiterClock::fast())
        .max_keys(MAX_KEYS as usize)
        .build_keyed();
    for k in 0..MAX_KEYS {
        limiter.check_key(&k).expect("room below the bound");
    }
    let next = Arc::new(AtomicU64::new(MAX_KEYS));
    let shared = limiter.clone();
    let ns = time_threads(1, KEYED_OPS, move || {
        let n = next.fetch_add(1, Ordering::Relaxed);
        black_box(shared.check_key(&keys.key(n)).is_ok());
    });
    // The tracked key was never refused, whatever the flood did.
    assert!(limiter.check_key(&0).is_ok());
    (ns, limiter.len())
}

/// The same on governor's keyed limiter, pruned every `RETAIN_EVERY`.
fn keyed_governor(busy: bool, keys: Keys) -> (f64, usize) {
    let limiter: Arc<GovernorKeyed> = Arc::new(governor::RateLimiter::keyed(keyed_quota(busy).1));
    for k in 0..MAX_KEYS {
        limiter.check_key(&k).expect("fresh key");
    }
    let next = Arc::new(AtomicU64::new(MAX_KEYS));
    let started = Instant::now();
    let last_retain = Arc::new(AtomicU64::new(0));
    let shared = limiter.clone();
    let ns = time_threads(1, KEYED_OPS, move || {
        let n = next.fetch_add(1, Ordering::Relaxed);
        if n % 1024 == 0 {
            let now = started.elapsed().as_nanos() as u64;
            if now - last_retain.load(Ordering::Relaxed) >= RETAIN_EVERY.as_nanos() as u64 {
                shared.retain_recent();
                last_retain.store(now, Ordering::Relaxed);
            }
        }
        black_box(shared.check_key(&keys.key(n)).is_ok());
    });
    (ns, limiter.len())
}

/// Runs ours and governor alternately, `ROUNDS` times; medians and the last key counts.
fn keyed_figure(busy: bool, keys: Keys) -> (f64, f64, usize, usize) {
    let (mut ours, mut peer, mut ours_keys, mut peer_keys) = (vec![], vec![], 0, 0);
    for _ in 0..ROUNDS {
        let (ns, n) = keyed_ours(busy, keys);
        ours.push(ns);
        ours_keys = n;
        let (ns, n) = keyed_governor(busy, keys);
        peer.push(ns);
        peer_keys = n;
    }
    (median(ours), median(peer), ours_keys, peer_keys)
}

fn keyed_flood() {
    let (tracked, peer_tracked, ..) = keyed_figure(false, Keys::Tracked);
    eprintln!(
        "keyed_limiter_tracked ({MAX_KEYS} keys): ours {tracked:.1} ns/op, governor {peer_tracked:.1} ns/op"
    );
    println!(
        "{{\"bench\":\"keyed_limiter_tracked\",\"unit\":\"ns/op\",\"ours\":{tracked:.2},\"peer\":\"governor\",\"peer_value\":{peer_tracked:.2},\"ratio\":{:.3}}}",
        peer_tracked / tracked
    );
    let (scattered, peer_scattered, ..) = keyed_figure(false, Keys::TrackedScattered);
    eprintln!(
        "keyed_limiter_tracked_scattered ({MAX_KEYS} keys): ours {scattered:.1} ns/op, governor {peer_scattered:.1} ns/op"
    );
    println!(
        "{{\"bench\":\"keyed_limiter_tracked_scattered\",\"unit\":\"ns/op\",\"ours\":{scattered:.2},\"peer\":\"governor\",\"peer_value\":{peer_scattered:.2},\"ratio\":{:.3}}}",
        peer_scattered / scattered
    );
    for (name, busy) in [
        ("keyed_limiter_flood", false),
        ("keyed_limiter_flood_busy", true),
    ] {
        let (flood, peer_flood, ours_keys, peer_keys) = keyed_figure(busy, Keys::Flood);
        let over = flood / tracked;
        let over_scattered = flood / scattered;
        eprintln!(
            "{name}: ours {flood:.1} ns/op ({over:.2}x the tracked-key check, {over_scattered:.2}x the scattered one; {ours_keys} keys after), governor {peer_flood:.1} ns/op ({peer_keys} keys after)"
        );
        println!(
            "{{\"bench\":\"{name}\",\"unit\":\"ns/op\",\"ours\":{flood:.2},\"peer\":\"governor\",\"peer_value\":{peer_flood:.2},\"ratio\":{:.3},\"ours_tracked\":{tracked:.2},\"flood_over_tracked\":{over:.3},\"ours_tracked_scattered\":{scattered:.2},\"flood_over_tracked_scattered\":{over_scattered:.3},\"ours_keys\":{ours_keys},\"peer_keys\":{peer_keys}}}",
            peer_flood / flood
        );
    }
}

fn main() {
    // What separates the two: governor's default clock reads the TSC through quanta;
    // ours reads tokio's clock, so that paused time drives the limiter in tests.
    let clock = median(
        (0..ROUNDS)
            .map(|_| {
                time_threads(1, OPS, || {
                    black_box(tokio::time::Instant::now());
                })
            })
            .collect(),
    );
    eprintln!("one tokio::time::Instant::now(): {clock:.1} ns");
    let rate = 1_000_000_000u32;
    let n = NonZeroU32::new(rate).expect("non-zero");
    let quota = Quota::per_second(rate, rate).expect("valid quota");
    for (label, clock) in [
        ("", LimiterClock::tokio as fn() -> LimiterClock),
        ("_fast", LimiterClock::fast),
    ] {
        for threads in [1usize, 2] {
            let (mut ours, mut peer) = (vec![], vec![]);
            for _ in 0..ROUNDS {
                let limiter = RateLimiter::builder(quota)
                    .mode(LimitMode::FailFast)
                    .clock(clock())
                    .build();
                ours.push(time_threads(threads, OPS, move || {
                    black_box(limiter.check().is_ok());
                }));
                let governor =
                    governor::RateLimiter::direct(governor::Quota::per_second(n).allow_burst(n));
                peer.push(time_threads(threads, OPS, move || {
                    black_box(governor.check().is_ok());
                }));
            }
            let (ours, peer) = (median(ours), median(peer));
            let name = format!("limiter_check{label}_{threads}t");
            eprintln!("{name}: ours {ours:.1} ns/op, governor {peer:.1} ns/op");
            println!(
                "{{\"bench\":\"{name}\",\"unit\":\"ns/op\",\"ours\":{ours:.2},\"peer\":\"governor\",\"peer_value\":{peer:.2},\"ratio\":{:.3}}}",
                peer / ours
            );
        }
    }
    keyed_flood();
}
