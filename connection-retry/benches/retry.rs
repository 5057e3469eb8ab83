//! Retry executor, first attempt succeeds: ours vs backon.
//!
//! This is what every call through a healthy dependency pays for being wrapped in a
//! retry policy. Both sides run the same trivial operation on the same current-thread
//! tokio runtime. Ours is `RetryPolicy::run` with an exponential backoff and otherwise
//! default settings (no budget, no deadline); backon is set up as its users write it:
//! `op.retry(ExponentialBuilder::default())` with its default tokio sleeper.
#![allow(
    clippy::print_stdout,
    reason = "benchmarks report JSON lines on stdout"
)]
#![allow(missing_docs, reason = "bench binary")]

use std::fmt;
use std::hint::black_box;
use std::time::{Duration, Instant};

use backon::{ExponentialBuilder, Retryable};
use connection_retry::Classify;
use connection_retry::backoff::BackoffStrategy;
use connection_retry::retry::{RetryBudget, RetryPolicy, TimedOut};

const CALLS: u32 = 1_000_000;
const ROUNDS: usize = 5;

#[derive(Debug)]
struct BenchError;

impl fmt::Display for BenchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("bench error")
    }
}

impl std::error::Error for BenchError {}

impl Classify for BenchError {
    fn is_retryable(&self) -> bool {
        true
    }
}

impl From<TimedOut> for BenchError {
    fn from(_: TimedOut) -> Self {
        BenchError
    }
}

async fn ours(policy: &RetryPolicy) -> f64 {
    let started = Instant::now();
    for i in 0..CALLS {
        let r = policy
            .run(|| async move { Ok::<_, BenchError>(black_box(i)) })
            .await;
        black_box(r.is_ok());
    }
    started.elapsed().as_nanos() as f64 / f64::from(CALLS)
}

async fn backon() -> f64 {
    let started = Instant::now();
    for i in 0..CALLS {
        let r = (|| async move { Ok::<_, BenchError>(black_box(i)) })
            .retry(ExponentialBuilder::default())
            .await;
        black_box(r.is_ok());
    }
    started.elapsed().as_nanos() as f64 / f64::from(CALLS)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let backoff = || {
        BackoffStrategy::exponential(Duration::from_millis(100), 2.0)
            .build()
            .expect("valid backoff")
    };
    let policy = RetryPolicy::builder()
        .backoff(backoff())
        .build()
        .expect("valid policy");
    let budgeted = RetryPolicy::builder()
        .backoff(backoff())
        .budget(RetryBudget::default())
        .build()
        .expect("valid policy");

    let (mut mine, mut peer, mut with_budget) = (vec![], vec![], vec![]);
    rt.block_on(async {
        for _ in 0..ROUNDS {
            mine.push(ours(&policy).await);
            peer.push(backon().await);
            with_budget.push(ours(&budgeted).await);
        }
    });
    let (mine, peer, with_budget) = (median(mine), median(peer), median(with_budget));
    eprintln!("retry executor, first attempt succeeds ({CALLS} calls, median of {ROUNDS}):");
    eprintln!("  {:<34} {:>8.2} ns/call", "ours (RetryPolicy::run)", mine);
    eprintln!(
        "  {:<34} {:>8.2} ns/call",
        "backon (ExponentialBuilder)", peer
    );
    eprintln!(
        "  {:<34} {:>8.2} ns/call",
        "ours + RetryBudget (not compared)", with_budget
    );
    println!(
        "{{\"bench\":\"retry_first_success\",\"unit\":\"ns/call\",\"ours\":{mine:.2},\"peer\":\"backon\",\"peer_value\":{peer:.2},\"ratio\":{:.3}}}",
        peer / mine
    );
}
