//! Application traffic through a supervised connection: the typed handle's link waits
//! while (re)connecting, fails fast once Failed or Closed, follows reconnects, and the
//! connection's traffic lands in the supervisor's metrics.

mod support;

use std::time::Duration;

use connection_core::Operation;
use connection_core::{ConnectionState, ConstantBackoff, Error, Supervisor};
use connection_testkit::{LoopbackServer, TcpEchoServer, TcpEchoTransport, handlers};
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;

const MS: Duration = Duration::from_millis(1);

fn supervise(
    server: &TcpEchoServer,
) -> connection_core::Supervised<connection_testkit::EchoClient> {
    Supervisor::new(TcpEchoTransport::new(server.addr()).expect("loopback port"))
        .backoff(ConstantBackoff::new(50 * MS))
        .spawn()
        .expect("spawn")
}

#[tokio::test(start_paused = true)]
async fn traffic_flows_through_the_supervised_connection_across_a_server_restart() {
    let mut server = TcpEchoServer::start().await.expect("bind");
    let conn = supervise(&server);

    let echo = conn.ready(Duration::from_secs(1)).await.expect("connected");
    echo.echo(b"hello").await.expect("echo");
    let m = conn.metrics();
    assert_eq!(
        (m.bytes_out, m.bytes_in, m.messages_out),
        (5, 5, 1),
        "{m:?}"
    );
    assert_eq!((m.requests, m.request_latency.count), (1, 1), "{m:?}");
    assert_eq!(m.probe_rtt.count, 0, "a request is not a probe: {m:?}");

    server.stop().await;
    // The handle of the dead connection fails at once with a connection-level error.
    let err = echo.echo(b"lost?").await.expect_err("the server is gone");
    assert!(err.is_connection_level(), "{err}");
    conn.watch_state()
        .wait_for(|s| *s == ConnectionState::Reconnecting)
        .await
        .expect("alive");
    // No connection now, but one may come back: retryable, and `current` does not wait.
    let err = conn.current().expect_err("reconnecting");
    assert!(
        matches!(err, Error::Unavailable { state, .. } if state != ConnectionState::Connected),
        "{err}"
    );
    assert!(err.is_retryable(), "{err}");

    server.restart().await.expect("rebind");
    let echo = conn
        .ready(Duration::from_secs(5))
        .await
        .expect("reconnected");
    echo.echo(b"again").await.expect("echo after restart");
    let m = conn.metrics();
    // Two echoes answered and the one the dead connection refused: a failed request
    // counts as a request, so the error rate is failed over all.
    assert_eq!((m.requests, m.failed_requests), (3, 1), "{m:?}");
    assert_eq!(m.reconnects, 1, "{m:?}");
    conn.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(start_paused = true)]
async fn many_tasks_share_one_io_handle() {
    let server = TcpEchoServer::start().await.expect("bind");
    let conn = supervise(&server);
    let echo = conn.ready(Duration::from_secs(1)).await.expect("connected");
    let tasks: Vec<_> = (0..8u8)
        .map(|i| {
            let echo = echo.clone();
            tokio::spawn(async move {
                for j in 0..10u8 {
                    echo.echo(&[i, j, b'\n']).await.expect("echo");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("task");
    }
    assert_eq!(conn.metrics().requests, 80);
}

#[tokio::test(start_paused = true)]
async fn ready_waits_while_connecting_then_gives_up_at_its_bound() {
    let mut server = TcpEchoServer::start().await.expect("bind");
    server.stop().await;
    let conn = supervise(&server);
    let started = Instant::now();
    let err = conn
        .ready(Duration::from_millis(300))
        .await
        .expect_err("nothing listens");
    assert!(
        matches!(
            err,
            Error::Timeout {
                operation: Operation::Ready,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(started.elapsed(), Duration::from_millis(300));

    // A server that comes up while a caller waits is used at once.
    let link = conn.link().clone();
    let waiter = tokio::spawn(async move { link.ready(Duration::from_secs(10)).await });
    tokio::time::sleep(Duration::from_millis(120)).await;
    server.restart().await.expect("rebind");
    let echo = waiter.await.expect("task").expect("connected in time");
    echo.echo(b"late").await.expect("echo");
}

#[tokio::test(start_paused = true)]
async fn ready_fails_at_once_when_failed_and_says_why() {
    // Credentials refused: not retryable, the supervisor goes to Failed.
    let server = LoopbackServer::start(|mut stream, _| async move {
        let _ = stream.write_all(b"DENY\n").await;
    })
    .await
    .expect("bind");
    let conn = Supervisor::new(
        TcpEchoTransport::new(server.addr())
            .expect("port")
            .with_banner(),
    )
    .spawn()
    .expect("spawn");
    conn.watch_state()
        .wait_for(|s| *s == ConnectionState::Failed)
        .await
        .expect("alive");
    let started = Instant::now();
    let err = conn
        .ready(Duration::from_secs(30))
        .await
        .expect_err("failed for good");
    assert_eq!(
        started.elapsed(),
        Duration::ZERO,
        "no waiting on a Failed link"
    );
    assert!(!err.is_retryable(), "{err}");
    let Error::Unavailable {
        state: ConnectionState::Failed,
        cause: Some(cause),
        ..
    } = &err
    else {
        panic!("expected Unavailable(Failed) with a cause, got {err:?}");
    };
    assert!(
        matches!(**cause, Error::Auth { status: 403, .. }),
        "{cause}"
    );
}

#[tokio::test(start_paused = true)]
async fn after_shutdown_handles_fail_fast_instead_of_hanging() {
    let server = TcpEchoServer::start().await.expect("bind");
    let conn = supervise(&server);
    let echo = conn.ready(Duration::from_secs(1)).await.expect("connected");
    conn.shutdown(Duration::from_secs(1)).await;
    let err = tokio::time::timeout(Duration::from_secs(1), echo.echo(b"x"))
        .await
        .expect("fails, does not hang")
        .expect_err("closed");
    assert!(err.is_connection_level(), "{err}");
    let err = conn
        .ready(Duration::from_secs(5))
        .await
        .expect_err("closed");
    assert!(
        matches!(
            err,
            Error::Unavailable {
                state: ConnectionState::Closed,
                ..
            }
        ),
        "{err}"
    );
    assert!(!err.is_retryable());
}

#[tokio::test(start_paused = true)]
async fn failures_on_traffic_reach_whoever_watches_the_supervisor() {
    // A server that answers every request with garbage: the echo does not match.
    let server = LoopbackServer::start(handlers::garble).await.expect("bind");
    let conn = Supervisor::new(TcpEchoTransport::new(server.addr()).expect("port"))
        .backoff(ConstantBackoff::new(50 * MS))
        .spawn()
        .expect("spawn");
    let mut failures = conn.watch_traffic_failures();
    let echo = conn.ready(Duration::from_secs(1)).await.expect("connected");
    let err = echo.echo(b"hello").await.expect_err("garbage back");
    assert!(matches!(err, Error::Protocol { .. }), "{err}");
    tokio::time::timeout(Duration::from_secs(1), failures.changed())
        .await
        .expect("a failure was reported")
        .expect("alive");
    assert_eq!(*failures.borrow(), 1);
    assert!(conn.metrics().errors >= 1);
}
