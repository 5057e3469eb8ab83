//! Rate limiter check: our wrapper vs raw governor on the same quota.
//!
//! Both limiters get a quota so large that every check passes: this measures what a
//! permitted call costs, which is what every call through a healthy limiter pays. The
//! peer is set up as governor's users would (`RateLimiter::direct` with its default
//! clock). Ours is measured twice: with its default clock (tokio's, so that paused-time
//! tests work) and with the opt-in fast clock (`limiter_check_fast_*`).
#![allow(
    clippy::print_stdout,
    reason = "benchmarks report JSON lines on stdout"
)]
#![allow(missing_docs, reason = "bench binary")]

mod support;

use std::hint::black_box;
use std::num::NonZeroU32;

use connection_retry::limit::{LimitMode, LimiterClock, Quota, RateLimiter};
use support::{median, time_threads};

const OPS: u64 = 5_000_000;
const ROUNDS: usize = 5;

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
}
