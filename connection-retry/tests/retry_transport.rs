//! The `Retry` transport over real TCP: refused connects are retried on schedule until
//! the server is back, a non-retryable failure stops at once, and every retry is
//! published.

use std::time::Duration;

use connection_core::{Error, EventBus, EventFilter, Transport};
use connection_retry::EventSink;
use connection_retry::backoff::BackoffStrategy;
use connection_retry::events::Retrying;
use connection_retry::retry::{Retry, RetryPolicy};
use connection_testkit::{LoopbackServer, TcpEchoServer, TcpEchoTransport};
use futures::{FutureExt, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio::time::{Instant, timeout};

/// Bound on every test (tokio time, paused).
const WAIT: Duration = Duration::from_secs(60);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn exponential_no_jitter(max_retries: u32) -> RetryPolicy {
    RetryPolicy::builder()
        .backoff(
            BackoffStrategy::exponential(ms(100), 2.0)
                .max_retries(max_retries)
                .build()
                .expect("valid backoff"),
        )
        .build()
        .expect("valid policy")
}

#[tokio::test(start_paused = true)]
async fn refused_connects_are_retried_with_exact_delays_until_the_server_is_back() {
    let mut server = TcpEchoServer::start().await.unwrap();
    server.stop().await;
    let transport = TcpEchoTransport::new(server.addr()).unwrap();
    let bus = EventBus::new(64);
    let mut events = bus.subscribe(EventFilter::all().extensions([Retrying::NAME]));
    let policy = RetryPolicy::builder()
        .backoff(
            BackoffStrategy::exponential(ms(100), 2.0)
                .max_retries(10)
                .build()
                .unwrap(),
        )
        .events(EventSink::named(bus, "echo"))
        .build()
        .unwrap();
    let retrying = Retry::new(transport.clone(), policy);

    // Restarts the server after the third refused connect, during the wait before the
    // fourth attempt.
    let watcher = {
        let transport = transport.clone();
        tokio::spawn(async move {
            let mut seen = vec![];
            while let Some(Ok(event)) = events.next().await {
                let Some(Retrying {
                    attempt,
                    delay,
                    error,
                    ..
                }) = event.kind.downcast_ref::<Retrying>().cloned()
                else {
                    continue;
                };
                assert!(error.contains("connecting to"), "{error}");
                seen.push((attempt, delay));
                if transport.attempts() == 3 {
                    server.restart().await.unwrap();
                    return (server, seen);
                }
            }
            panic!("event stream ended");
        })
    };

    let started = Instant::now();
    let mut conn = timeout(WAIT, retrying.connect())
        .await
        .expect("bounded")
        .expect("connects once the server is back");
    let elapsed = started.elapsed();
    let (server, seen) = watcher.await.unwrap();

    assert_eq!(transport.attempts(), 4);
    assert_eq!(elapsed, ms(100 + 200 + 400), "exactly the scheduled waits");
    assert_eq!(seen, [(2, ms(100)), (3, ms(200)), (4, ms(400))]);
    connection_core::Connection::probe(&mut conn).await.unwrap();
    assert_eq!(server.accepted(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_non_retryable_failure_stops_at_once() {
    // The server refuses our credentials: a non-retryable Error::Auth.
    let server = LoopbackServer::start(|mut stream, _| async move {
        let _ = stream.write_all(b"DENY\n").await;
    })
    .await
    .unwrap();
    let transport = TcpEchoTransport::new(server.addr()).unwrap().with_banner();
    let bus = EventBus::new(16);
    let mut events = bus.subscribe(EventFilter::all());
    let policy = RetryPolicy::builder()
        .backoff(
            BackoffStrategy::fixed(ms(100))
                .max_retries(5)
                .build()
                .unwrap(),
        )
        .events(EventSink::named(bus, "deny"))
        .build()
        .unwrap();

    let started = Instant::now();
    let result = timeout(WAIT, Retry::new(transport.clone(), policy).connect())
        .await
        .expect("bounded");
    assert!(
        matches!(result, Err(Error::Auth { status: 403, .. })),
        "{:?}",
        result.err()
    );
    assert_eq!(transport.attempts(), 1);
    assert_eq!(
        started.elapsed(),
        Duration::ZERO,
        "no wait before giving up"
    );
    assert!(
        !matches!(events.next().now_or_never(), Some(Some(_))),
        "no retry published"
    );
}

#[tokio::test(start_paused = true)]
async fn gives_up_after_max_retries_with_the_last_error() {
    let mut server = TcpEchoServer::start().await.unwrap();
    server.stop().await;
    let transport = TcpEchoTransport::new(server.addr()).unwrap();
    let retrying = Retry::new(transport.clone(), exponential_no_jitter(3));

    let started = Instant::now();
    let result = timeout(WAIT, retrying.connect()).await.expect("bounded");
    let Err(Error::Connect { source, .. }) = result else {
        panic!("expected the refused connect, got {:?}", result.err());
    };
    assert_eq!(source.kind(), std::io::ErrorKind::ConnectionRefused);
    assert_eq!(transport.attempts(), 4, "one attempt and three retries");
    assert_eq!(started.elapsed(), ms(100 + 200 + 400));
}

#[tokio::test(start_paused = true)]
async fn a_healthy_server_is_connected_on_the_first_attempt() {
    let server = TcpEchoServer::start().await.unwrap();
    let transport = TcpEchoTransport::new(server.addr()).unwrap();
    let retrying = Retry::new(transport.clone(), exponential_no_jitter(3));
    assert_eq!(retrying.endpoint(), transport.endpoint());
    let clone = retrying.clone();
    timeout(WAIT, clone.connect())
        .await
        .expect("bounded")
        .unwrap();
    assert_eq!(transport.attempts(), 1);
    assert!(format!("{retrying:?}").contains("Retry"));
}
