//! The retry budget: shared by every clone, earned by calls, spent by retries, and not
//! spent on refusals by an open circuit.

use std::io;
use std::time::Duration;

use connection_core::{Endpoint, Error, RejectReason, Rejected, Transport};
use connection_retry::backoff::BackoffStrategy;
use connection_retry::retry::{Retry, RetryBudget, RetryPolicy};
use connection_testkit::{TcpEchoServer, TcpEchoTransport};
use tokio::time::{Instant, timeout};

/// Bound on every test (tokio time, paused).
const WAIT: Duration = Duration::from_secs(60);

/// Retries every 10 ms, without limit: only the budget stops them.
fn policy(budget: RetryBudget) -> RetryPolicy {
    RetryPolicy::builder()
        .backoff(
            BackoffStrategy::fixed(Duration::from_millis(10))
                .build()
                .expect("valid backoff"),
        )
        .budget(budget)
        .build()
        .expect("valid policy")
}

fn endpoint() -> Endpoint {
    Endpoint::host_port("127.0.0.1", 9).expect("valid endpoint")
}

#[tokio::test(start_paused = true)]
async fn clones_of_a_retrying_transport_share_one_budget() {
    let mut server = TcpEchoServer::start().await.unwrap();
    server.stop().await;
    let transport = TcpEchoTransport::new(server.addr()).unwrap();
    // Two retries per 2 s, none earned by calls.
    let budget = RetryBudget::builder()
        .ttl(Duration::from_secs(2))
        .min_per_sec(1)
        .ratio(0.0)
        .build()
        .unwrap();
    let first = Retry::new(transport.clone(), policy(budget.clone()));
    let second = first.clone();

    let result = timeout(WAIT, first.connect()).await.expect("bounded");
    assert!(matches!(result, Err(Error::Connect { .. })));
    assert_eq!(transport.attempts(), 3, "one attempt, two retries");
    assert_eq!(budget.available(), 0);

    let result = timeout(WAIT, second.connect()).await.expect("bounded");
    assert!(matches!(result, Err(Error::Connect { .. })));
    assert_eq!(transport.attempts(), 4, "the clone found the budget empty");

    // Once the spent retries expire, the budget is whole again.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(budget.available(), 2);
}

#[tokio::test(start_paused = true)]
async fn calls_earn_retries_at_the_configured_ratio() {
    let budget = RetryBudget::builder()
        .min_per_sec(0)
        .ratio(0.5)
        .build()
        .unwrap();
    let policy = policy(budget.clone());
    let ep = endpoint();
    for _ in 0..4 {
        let ok: Result<(), Error> = policy.on(&ep).run(|| async { Ok(()) }).await;
        ok.unwrap();
    }
    // Five calls (these four and the failing one) earn two and a half retries.
    let mut attempts = 0;
    let result: Result<(), Error> = timeout(
        WAIT,
        policy.on(&ep).run(|| {
            attempts += 1;
            let ep = ep.clone();
            async move { Err(Error::io(&ep, io::ErrorKind::ConnectionReset.into())) }
        }),
    )
    .await
    .expect("bounded");
    assert!(matches!(result, Err(Error::Io { .. })));
    assert_eq!(attempts, 3);
}

#[tokio::test(start_paused = true)]
async fn refusals_by_an_open_circuit_wait_for_their_hint_and_spend_no_budget() {
    // An empty budget: no real failure may be retried at all.
    let budget = RetryBudget::builder()
        .min_per_sec(0)
        .ratio(0.0)
        .build()
        .unwrap();
    let policy = policy(budget.clone());
    let ep = endpoint();

    let mut attempts = 0;
    let started = Instant::now();
    let result: Result<&str, Error> = timeout(
        WAIT,
        policy.on(&ep).run(|| {
            attempts += 1;
            let n = attempts;
            async move {
                if n <= 2 {
                    Err(Rejected::new(RejectReason::CircuitOpen)
                        .retry_after(Duration::from_secs(2))
                        .into())
                } else {
                    Ok("through")
                }
            }
        }),
    )
    .await
    .expect("bounded");
    assert_eq!(result.unwrap(), "through");
    assert_eq!(attempts, 3);
    assert_eq!(
        started.elapsed(),
        Duration::from_secs(4),
        "waited for the circuit twice"
    );

    // A real failure, by contrast, finds the budget empty.
    let mut attempts = 0;
    let result: Result<(), Error> = policy
        .on(&ep)
        .run(|| {
            attempts += 1;
            let ep = ep.clone();
            async move { Err(Error::io(&ep, io::ErrorKind::ConnectionReset.into())) }
        })
        .await;
    assert!(result.is_err());
    assert_eq!(attempts, 1);
}
