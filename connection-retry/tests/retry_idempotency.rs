//! Non-idempotent runs retry only failures that prove the request never reached the
//! server; `retry_if` overrides what counts as retryable.

use std::time::Duration;

use connection_core::Operation;
use connection_core::{Endpoint, Error, Transport};
use connection_retry::backoff::BackoffStrategy;
use connection_retry::retry::{Retry, RetryPolicy};
use connection_testkit::{LoopbackServer, TcpEchoServer, TcpEchoTransport};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

/// Bound on every test (tokio time, paused).
const WAIT: Duration = Duration::from_secs(60);

fn builder() -> connection_retry::retry::RetryPolicyBuilder {
    RetryPolicy::builder().backoff(
        BackoffStrategy::fixed(Duration::from_millis(10))
            .max_retries(3)
            .build()
            .expect("valid backoff"),
    )
}

/// Writes `request` and reads until the server closes; the server here hangs up
/// without answering, so this always fails, after the request was sent.
async fn send(endpoint: &Endpoint, request: &[u8]) -> Result<Vec<u8>, Error> {
    let mut stream = TcpStream::connect(endpoint.authority())
        .await
        .map_err(|e| Error::connect(endpoint, e))?;
    stream
        .write_all(request)
        .await
        .map_err(|e| Error::io(endpoint, e))?;
    let mut answer = vec![];
    stream
        .read_to_end(&mut answer)
        .await
        .map_err(|e| Error::io(endpoint, e))?;
    if answer.is_empty() {
        return Err(Error::Closed {
            endpoint: endpoint.clone(),
        });
    }
    Ok(answer)
}

/// Reads the request, then hangs up without an answer.
async fn hang_up_server() -> LoopbackServer {
    LoopbackServer::start(|mut stream, _| async move {
        let mut buf = [0; 64];
        let _ = stream.read(&mut buf).await;
    })
    .await
    .expect("server starts")
}

#[tokio::test(start_paused = true)]
async fn a_failure_after_the_request_was_sent_is_not_retried_when_not_idempotent() {
    let server = hang_up_server().await;
    let ep = Endpoint::host_port("127.0.0.1", server.port()).unwrap();
    let policy = builder().build().unwrap();

    let result = timeout(
        WAIT,
        policy
            .on(&ep)
            .run_non_idempotent(|| send(&ep, b"POST /pay")),
    )
    .await
    .expect("bounded");
    assert!(matches!(result, Err(Error::Closed { .. })), "{result:?}");
    assert_eq!(server.accepted(), 1, "sent once");

    // The same failure is retried for an idempotent request.
    let result = timeout(WAIT, policy.on(&ep).run(|| send(&ep, b"GET /balance")))
        .await
        .expect("bounded");
    assert!(result.is_err());
    assert_eq!(server.accepted(), 1 + 4, "one attempt and three retries");
}

#[tokio::test(start_paused = true)]
async fn refused_connects_are_retried_even_when_not_idempotent() {
    let mut server = TcpEchoServer::start().await.unwrap();
    server.stop().await;
    let ep = Endpoint::host_port("127.0.0.1", server.port()).unwrap();
    let policy = builder().build().unwrap();
    let mut attempts = 0;
    let result = timeout(
        WAIT,
        policy.on(&ep).run_non_idempotent(|| {
            attempts += 1;
            send(&ep, b"POST /pay")
        }),
    )
    .await
    .expect("bounded");
    assert!(matches!(result, Err(Error::Connect { .. })), "{result:?}");
    assert_eq!(attempts, 4);
}

#[tokio::test(start_paused = true)]
async fn an_attempt_timeout_is_not_retried_when_not_idempotent() {
    let server = LoopbackServer::silent().await.unwrap();
    let ep = Endpoint::host_port("127.0.0.1", server.port()).unwrap();
    let policy = builder()
        .attempt_timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    let result = timeout(
        WAIT,
        policy
            .on(&ep)
            .run_non_idempotent(|| send(&ep, b"POST /pay")),
    )
    .await
    .expect("bounded");
    assert!(
        matches!(
            result,
            Err(Error::Timeout {
                operation: Operation::Attempt,
                ..
            })
        ),
        "{result:?}"
    );
    assert_eq!(server.accepted(), 1);
}

#[tokio::test(start_paused = true)]
async fn retry_if_overrides_the_classification_for_its_error_type() {
    // Denies credentials: not retryable by default.
    let server = LoopbackServer::start(|mut stream, _| async move {
        let _ = stream.write_all(b"DENY\n").await;
    })
    .await
    .unwrap();
    let transport = TcpEchoTransport::new(server.addr()).unwrap().with_banner();

    let retry_auth = builder()
        .retry_if(|e: &Error| matches!(e, Error::Auth { .. }))
        .build()
        .unwrap();
    let result = timeout(WAIT, Retry::new(transport.clone(), retry_auth).connect())
        .await
        .expect("bounded");
    assert!(matches!(result, Err(Error::Auth { .. })));
    assert_eq!(transport.attempts(), 4, "retried as the predicate asked");

    // A predicate on another error type leaves connection_core::Error to Classify.
    let other_type = builder()
        .retry_if(|_: &std::io::Error| true)
        .build()
        .unwrap();
    let result = timeout(WAIT, Retry::new(transport.clone(), other_type).connect())
        .await
        .expect("bounded");
    assert!(matches!(result, Err(Error::Auth { .. })));
    assert_eq!(transport.attempts(), 5, "not retried");
}
