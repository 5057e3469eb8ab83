//! The whole stack around a no-op operation: retry, circuit breaker, rate limiter and a
//! per-call timeout, composed as a user would write it with `run`.
//!
//! No peer crate composes these four in one pipeline, so this reports our figure only;
//! the yardstick is Polly v8's five-strategy pipeline at 766 ns on a desktop CPU,
//! and our goal is under 200 ns.
#![allow(
    clippy::print_stdout,
    reason = "benchmarks report JSON lines on stdout"
)]
#![allow(missing_docs, reason = "bench binary")]

use std::hint::black_box;
use std::time::{Duration, Instant};

use connection_core::Operation;
use connection_core::{Endpoint, Error};
use connection_retry::breaker::CircuitBreaker;
use connection_retry::limit::{LimitMode, Quota, RateLimiter};
use connection_retry::retry::RetryPolicy;

const CALLS: u32 = 1_000_000;
const ROUNDS: usize = 5;

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let retry = RetryPolicy::builder()
        .build()
        .expect("default retry policy");
    let breaker = CircuitBreaker::builder().build().expect("default breaker");
    let limiter =
        RateLimiter::builder(Quota::per_second(1_000_000_000, 1_000_000_000).expect("quota"))
            .mode(LimitMode::FailFast)
            .build();
    let endpoint = Endpoint::host_port("127.0.0.1", 9).expect("endpoint");
    let limit = Duration::from_secs(1);

    let mut rounds = Vec::new();
    for _ in 0..ROUNDS {
        let started = Instant::now();
        runtime.block_on(async {
            for i in 0..CALLS {
                let result: Result<u32, Error> = retry
                    .on(&endpoint)
                    .run(|| {
                        breaker.run(|| {
                            limiter.run(|| async {
                                tokio::time::timeout(limit, async { Ok(black_box(i)) })
                                    .await
                                    .unwrap_or_else(|_| {
                                        Err(Error::timeout(&endpoint, Operation::Request, limit))
                                    })
                            })
                        })
                    })
                    .await;
                black_box(result.is_ok());
            }
        });
        rounds.push(started.elapsed().as_nanos() as f64 / f64::from(CALLS));
    }
    rounds.sort_by(f64::total_cmp);
    let ns = rounds[ROUNDS / 2];
    eprintln!("retry + breaker + limiter + timeout around a no-op: {ns:.1} ns/call (goal < 200)");
    println!("{{\"bench\":\"stack_noop\",\"unit\":\"ns/call\",\"ours\":{ns:.2}}}");
}
