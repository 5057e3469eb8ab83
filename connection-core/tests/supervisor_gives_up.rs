//! A non-retryable error, or a backoff that runs out, ends in `Failed`; restart leaves it.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use connection_core::{
    ConnectionState, ConstantBackoff, Error, EventFilter, EventKind, EventType, Supervisor,
};
use connection_testkit::{LoopbackServer, TcpEchoServer, TcpEchoTransport};
use support::{next_matching, wait_state};
use tokio::io::AsyncWriteExt;

/// A server that greets with `DENY` while `deny` is set, else `OK` and echoes.
async fn banner_server(deny: Arc<AtomicBool>) -> LoopbackServer {
    LoopbackServer::start(move |mut stream, _peer| {
        let deny = deny.clone();
        async move {
            if deny.load(Ordering::SeqCst) {
                let _ = stream.write_all(b"DENY\n").await;
                return;
            }
            let _ = stream.write_all(b"OK\n").await;
            let (mut r, mut w) = stream.split();
            let _ = tokio::io::copy(&mut r, &mut w).await;
        }
    })
    .await
    .expect("bind a loopback port")
}

#[tokio::test(start_paused = true)]
async fn non_retryable_error_fails_without_retrying_and_restart_recovers() {
    let deny = Arc::new(AtomicBool::new(true));
    let server = banner_server(deny.clone()).await;
    let transport = TcpEchoTransport::new(server.addr()).unwrap().with_banner();
    let handle = Supervisor::new(transport.clone())
        .backoff(ConstantBackoff::new(Duration::from_millis(10)))
        .spawn()
        .unwrap();
    let mut errors = handle.subscribe(EventFilter::all().types([EventType::Error]));

    wait_state(&handle, ConnectionState::Failed).await;
    let event = next_matching(&mut errors, |_| true).await;
    let EventKind::Error { error } = &event.kind else {
        unreachable!()
    };
    assert!(
        matches!(**error, Error::Auth { status: 403, .. }),
        "{error}"
    );
    assert!(!error.is_retryable());
    // Still known to a caller that arrives after the event.
    let last = handle.last_error().expect("the connect error is kept");
    assert!(matches!(*last, Error::Auth { status: 403, .. }), "{last}");
    // Failed stays failed: no further attempts, however long we wait.
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(transport.attempts(), 1);
    assert_eq!(handle.state(), ConnectionState::Failed);

    deny.store(false, Ordering::SeqCst);
    handle.restart();
    wait_state(&handle, ConnectionState::Connected).await;
    assert_eq!(transport.attempts(), 2);
    handle.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(start_paused = true)]
async fn exhausted_backoff_fails() {
    let mut server = TcpEchoServer::start().await.unwrap();
    let addr = server.addr();
    server.stop().await;
    let transport = TcpEchoTransport::new(addr).unwrap();
    let handle = Supervisor::new(transport.clone())
        .backoff(ConstantBackoff::new(Duration::from_millis(100)).max_attempts(3))
        .spawn()
        .unwrap();
    wait_state(&handle, ConnectionState::Failed).await;
    // The first attempt plus three retries.
    assert_eq!(transport.attempts(), 4);
    assert_eq!(handle.metrics().errors, 4);
    assert_eq!(
        handle.shutdown(Duration::from_secs(1)).await,
        connection_core::ShutdownOutcome::Graceful
    );
    assert_eq!(handle.state(), ConnectionState::Closed);
}
