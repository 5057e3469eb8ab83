//! Whether to reconnect a long-lived connection is its own question: a protocol error on
//! an established connection reconnects by default; reconnecting can be turned off; a
//! user policy can decide per loss.

mod support;

use std::time::Duration;

use connection_core::{
    ConnectionState, ConstantBackoff, DisconnectReason, Error, EventFilter, EventKind, Severity,
    Supervised, Supervisor,
};
use connection_testkit::{EchoClient, LoopbackServer, TcpEchoServer, TcpEchoTransport, handlers};
use futures::StreamExt;

/// A server that answers every request with the wrong bytes: a protocol error on an
/// otherwise healthy connection.
async fn garbage_server() -> LoopbackServer {
    LoopbackServer::start(handlers::garble).await.expect("bind")
}

async fn provoke_protocol_error(conn: &Supervised<EchoClient>) {
    let echo = conn.ready(Duration::from_secs(1)).await.expect("connected");
    let err = echo.echo(b"hello").await.expect_err("garbage back");
    assert!(matches!(err, Error::Protocol { .. }), "{err}");
    assert!(!err.is_retryable(), "as a request it is not retried");
}

#[tokio::test(start_paused = true)]
async fn a_protocol_error_on_an_established_connection_reconnects() {
    let server = garbage_server().await;
    let conn = Supervisor::new(TcpEchoTransport::new(server.addr()).expect("port"))
        .backoff(ConstantBackoff::new(Duration::from_millis(50)))
        .spawn()
        .expect("spawn");
    provoke_protocol_error(&conn).await;
    let mut state = conn.watch_state();
    state
        .wait_for(|s| *s == ConnectionState::Reconnecting)
        .await
        .expect("alive");
    conn.ready(Duration::from_secs(5))
        .await
        .expect("connected again: one bad answer does not stop the client for good");
    assert_eq!(conn.metrics().reconnects, 1);
}

#[tokio::test(start_paused = true)]
async fn with_reconnect_off_a_loss_and_a_failed_connect_end_in_failed() {
    let mut server = TcpEchoServer::start().await.expect("bind");
    let conn = Supervisor::new(TcpEchoTransport::new(server.addr()).expect("port"))
        .reconnect(false)
        .spawn()
        .expect("spawn");
    conn.ready(Duration::from_secs(1)).await.expect("connected");
    server.stop().await;
    let mut state = conn.watch_state();
    state
        .wait_for(|s| *s == ConnectionState::Failed)
        .await
        .expect("alive");
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(
        conn.state(),
        ConnectionState::Failed,
        "no reconnect attempt"
    );
    assert_eq!(server.accepted(), 1);

    // A refused connect is not retried either; restart() tries once more.
    conn.restart();
    state
        .wait_for(|s| *s == ConnectionState::Connecting)
        .await
        .expect("alive");
    state
        .wait_for(|s| *s == ConnectionState::Failed)
        .await
        .expect("alive");
    server.restart().await.expect("rebind");
    conn.restart();
    conn.ready(Duration::from_secs(5))
        .await
        .expect("connected after restart");
}

#[tokio::test(start_paused = true)]
async fn a_reconnect_policy_decides_per_loss() {
    let server = garbage_server().await;
    let conn = Supervisor::new(TcpEchoTransport::new(server.addr()).expect("port"))
        .backoff(ConstantBackoff::new(Duration::from_millis(50)))
        .reconnect_policy(|reason: &DisconnectReason| {
            !matches!(reason.error(), Some(Error::Protocol { .. }))
        })
        .spawn()
        .expect("spawn");
    let mut errors = conn.subscribe(EventFilter::all().min_severity(Severity::Error));
    provoke_protocol_error(&conn).await;
    let mut state = conn.watch_state();
    state
        .wait_for(|s| *s == ConnectionState::Failed)
        .await
        .expect("alive");
    let err = conn
        .ready(Duration::from_secs(1))
        .await
        .expect_err("failed");
    assert!(!err.is_retryable(), "{err}");
    // Given up because of an error: one Error-severity event says which.
    let event = tokio::time::timeout(Duration::from_secs(1), errors.next())
        .await
        .expect("an error event")
        .expect("bus open")
        .expect("not lagged");
    assert!(
        matches!(&event.kind, EventKind::Error { error } if matches!(**error, Error::Protocol { .. })),
        "{event}"
    );
}
