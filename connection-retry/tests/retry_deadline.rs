//! Time limits count the attempts' own time: a hanging attempt is cut at the deadline,
//! per-attempt timeouts are retried within it, and a retry whose wait would end past
//! it is not started.

use std::io;
use std::time::Duration;

use connection_core::Operation;
use connection_core::{Error, Transport};
use connection_retry::Classify;
use connection_retry::backoff::BackoffStrategy;
use connection_retry::retry::{Retry, RetryPolicy, TimeLimit, TimedOut};
use connection_testkit::{LoopbackServer, TcpEchoServer, TcpEchoTransport};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout};

/// Bound on every test (tokio time, paused).
const WAIT: Duration = Duration::from_secs(60);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn fixed(delay: Duration) -> BackoffStrategy {
    BackoffStrategy::fixed(delay)
        .build()
        .expect("valid backoff")
}

#[tokio::test(start_paused = true)]
async fn a_hanging_connect_is_cut_at_the_deadline() {
    // Accepts but never sends the banner the transport waits for.
    let server = LoopbackServer::silent().await.unwrap();
    let transport = TcpEchoTransport::new(server.addr()).unwrap().with_banner();
    let policy = RetryPolicy::builder()
        .backoff(fixed(ms(100)))
        .max_elapsed(Duration::from_secs(1))
        .build()
        .unwrap();

    let started = Instant::now();
    let result = timeout(WAIT, Retry::new(transport.clone(), policy).connect())
        .await
        .expect("bounded");
    assert!(
        matches!(
            result,
            Err(Error::Timeout { operation: Operation::Connect, after, .. }) if after == Duration::from_secs(1)
        ),
        "{:?}",
        result.err()
    );
    assert_eq!(started.elapsed(), Duration::from_secs(1));
    assert_eq!(transport.attempts(), 1);
}

#[tokio::test(start_paused = true)]
async fn attempt_timeouts_are_retried_until_the_deadline_cuts_the_last_one() {
    let server = LoopbackServer::silent().await.unwrap();
    let transport = TcpEchoTransport::new(server.addr()).unwrap().with_banner();
    let policy = RetryPolicy::builder()
        .backoff(fixed(ms(100)))
        .attempt_timeout(ms(300))
        .max_elapsed(ms(1000))
        .build()
        .unwrap();

    // Attempts run 0–300, 400–700 and 800–1000 ms: the third is cut by the deadline.
    let started = Instant::now();
    let result = timeout(
        WAIT,
        policy.on(transport.endpoint()).run(|| transport.connect()),
    )
    .await
    .expect("bounded");
    assert!(
        matches!(
            result,
            Err(Error::Timeout { operation: Operation::RetryDeadline, after, .. }) if after == ms(1000)
        ),
        "{:?}",
        result.err()
    );
    assert_eq!(started.elapsed(), ms(1000));
    assert_eq!(transport.attempts(), 3);
    // The deadline is final in core's error too: an outer retry or a reconnect loop
    // must not start over after it.
    let err = result.expect_err("deadline");
    assert!(!err.is_retryable(), "{err}");
    assert_eq!(err.kind(), connection_core::ErrorKind::Timeout);
}

#[tokio::test(start_paused = true)]
async fn a_retry_whose_wait_would_pass_the_deadline_is_not_started() {
    let mut server = TcpEchoServer::start().await.unwrap();
    server.stop().await;
    let transport = TcpEchoTransport::new(server.addr()).unwrap();
    let policy = RetryPolicy::builder()
        .backoff(fixed(ms(400)))
        .max_elapsed(ms(1000))
        .build()
        .unwrap();

    // Refused at 0, 400 and 800 ms; the next attempt would start at 1200 ms.
    let started = Instant::now();
    let result = timeout(WAIT, Retry::new(transport.clone(), policy).connect())
        .await
        .expect("bounded");
    assert!(
        matches!(result, Err(Error::Connect { .. })),
        "the last real failure, not a timeout: {:?}",
        result.err()
    );
    assert_eq!(started.elapsed(), ms(800));
    assert_eq!(transport.attempts(), 3);
}

/// An error type of the caller's own, over a raw socket.
#[derive(Debug, thiserror::Error)]
enum FetchError {
    #[error("i/o: {0}")]
    Io(#[from] io::Error),
    #[error(transparent)]
    TimedOut(#[from] TimedOut),
}

impl Classify for FetchError {
    fn is_retryable(&self) -> bool {
        match self {
            FetchError::Io(_) => true,
            FetchError::TimedOut(t) => t.is_retryable(),
        }
    }
}

#[tokio::test(start_paused = true)]
async fn own_error_types_receive_the_time_limits() {
    let server = LoopbackServer::silent().await.unwrap();
    let addr = server.addr();
    let policy = RetryPolicy::builder()
        .backoff(fixed(ms(50)))
        .attempt_timeout(ms(200))
        .max_elapsed(ms(600))
        .build()
        .unwrap();
    let mut attempts = 0;
    let started = Instant::now();
    let result: Result<u8, FetchError> = timeout(
        WAIT,
        policy.run(|| {
            attempts += 1;
            async move {
                let mut stream = TcpStream::connect(addr).await?;
                Ok(stream.read_u8().await?)
            }
        }),
    )
    .await
    .expect("bounded");
    // 0–200, 250–450, 500–600 (cut by the deadline).
    let Err(FetchError::TimedOut(cut)) = result else {
        panic!("expected a deadline, got {result:?}");
    };
    assert_eq!(cut.limit(), TimeLimit::Deadline);
    assert_eq!(cut.after(), ms(600));
    assert_eq!(attempts, 3);
    assert_eq!(started.elapsed(), ms(600));
}
