//! Circuit breaker on the closed path: what every call to a healthy dependency pays.
//!
//! Each breaker guards a call that always succeeds, through its synchronous `call`
//! (ours: `CircuitBreaker::call`, the permit API plus the closure), from 1 and 2
//! threads sharing one breaker. Peers are set up as their users would, with defaults:
//! `recloser::Recloser::default()` (failure rate over a ring of the last 100 calls) and
//! `failsafe::Config::new().build()` (success rate over a 30 s time window or 5
//! consecutive failures).
//!
//! `breaker_closed_*` compares those against our default breaker (5 consecutive
//! failures; rate triggers off). Because our default does less bookkeeping than theirs,
//! two more figures compare like with like: `breaker_closed_window_*` (ours with a
//! 50 % failure rate over the last 100 calls, recloser's default rule) against recloser,
//! and `breaker_closed_timewindow_*` (ours with 5 consecutive failures or a 20 % failure
//! rate over 30 s with at least 5 calls, failsafe's default rule) against failsafe.
#![allow(
    clippy::print_stdout,
    reason = "benchmarks report JSON lines on stdout"
)]
#![allow(missing_docs, reason = "bench binary")]

mod support;

use std::hint::black_box;
use std::time::{Duration, Instant};

use connection_core::Rejected;
use connection_retry::breaker::CircuitBreaker;
use failsafe::CircuitBreaker as _;
use support::{median, time_threads};

const OPS: u64 = 5_000_000;
const ROUNDS: usize = 5;

/// Times our breaker and checks it counted every call.
fn time_ours(threads: usize, breaker: CircuitBreaker) -> f64 {
    let shared = breaker.clone();
    let ns = time_threads(threads, OPS, move || {
        black_box(shared.call(|| Ok::<u32, Rejected>(black_box(1))).is_ok());
    });
    let stats = breaker.stats();
    assert_eq!(stats.successes, threads as u64 * OPS, "{stats:?}");
    assert!(stats.state.is_closed());
    ns
}

/// One figure: a name, our variant, and the peer.
struct Figure {
    bench: &'static str,
    ours: Vec<f64>,
    peer: &'static str,
    peer_values: Vec<f64>,
}

fn main() {
    let ours_default = || CircuitBreaker::default();
    let ours_count = || {
        CircuitBreaker::builder()
            .no_consecutive_failures()
            .failure_rate(0.5)
            .count_window(100)
            .min_calls(100)
            .build()
            .expect("valid breaker")
    };
    let ours_time = || {
        CircuitBreaker::builder()
            .consecutive_failures(5)
            .failure_rate(0.2)
            .time_window(Duration::from_secs(30))
            .min_calls(5)
            .build()
            .expect("valid breaker")
    };
    let recloser = || {
        let r = recloser::Recloser::default();
        move || {
            black_box(r.call(|| Ok::<u32, ()>(black_box(1))).is_ok());
        }
    };
    let failsafe = || {
        let f = failsafe::Config::new().build();
        move || {
            black_box(f.call(|| Ok::<u32, ()>(black_box(1))).is_ok());
        }
    };

    let started = Instant::now();
    for threads in [1usize, 2] {
        let (mut default, mut count, mut time) = (vec![], vec![], vec![]);
        let (mut rec, mut fs) = (vec![], vec![]);
        // Alternate every contender within each round so drift hits all alike.
        for _ in 0..ROUNDS {
            default.push(time_ours(threads, ours_default()));
            rec.push(time_threads(threads, OPS, recloser()));
            fs.push(time_threads(threads, OPS, failsafe()));
            count.push(time_ours(threads, ours_count()));
            time.push(time_ours(threads, ours_time()));
        }
        let name = |base: &str| -> &'static str {
            Box::leak(format!("{base}_{threads}t").into_boxed_str())
        };
        let figures = [
            Figure {
                bench: name("breaker_closed"),
                ours: default.clone(),
                peer: "recloser",
                peer_values: rec.clone(),
            },
            Figure {
                bench: name("breaker_closed"),
                ours: default,
                peer: "failsafe",
                peer_values: fs.clone(),
            },
            Figure {
                bench: name("breaker_closed_window"),
                ours: count,
                peer: "recloser",
                peer_values: rec,
            },
            Figure {
                bench: name("breaker_closed_timewindow"),
                ours: time,
                peer: "failsafe",
                peer_values: fs,
            },
        ];
        for f in figures {
            let (ours, peer) = (median(f.ours), median(f.peer_values));
            eprintln!(
                "{:<30} ours {ours:>7.1} ns/op   {:<9} {peer:>7.1} ns/op   ratio {:.2}",
                f.bench,
                f.peer,
                peer / ours
            );
            println!(
                "{{\"bench\":\"{}\",\"unit\":\"ns/op\",\"ours\":{ours:.2},\"peer\":\"{}\",\"peer_value\":{peer:.2},\"ratio\":{:.3}}}",
                f.bench,
                f.peer,
                peer / ours
            );
        }
    }
    eprintln!(
        "breaker bench took {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
