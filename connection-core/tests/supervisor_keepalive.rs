//! Keepalive probes catch a peer that stops answering without closing (the half-open
//! case), measure latency, and the connect timeout bounds a silent handshake.

mod support;

use std::time::Duration;

use connection_core::Operation;
use connection_core::{
    ConnectionState, ConstantBackoff, DisconnectReason, Error, EventFilter, EventKind, EventType,
    Supervisor, Transport, TransportExt,
};
use connection_testkit::{FaultProxy, LoopbackServer, TcpEchoServer, TcpEchoTransport};
use support::{next_matching, wait_state};
use tokio::time::Instant;

#[tokio::test(start_paused = true)]
async fn blackholed_peer_is_detected_by_probe_timeout() {
    let server = TcpEchoServer::start().await.unwrap();
    let proxy = FaultProxy::start(server.addr()).await.unwrap();
    let handle = Supervisor::new(TcpEchoTransport::new(proxy.addr()).unwrap())
        .backoff(ConstantBackoff::new(Duration::from_millis(100)))
        .keepalive(Duration::from_secs(1), Duration::from_millis(300))
        .spawn()
        .unwrap();
    let mut lost = handle.subscribe(EventFilter::all().types([EventType::Disconnected]));
    wait_state(&handle, ConnectionState::Connected).await;

    // Healthy probes record their round trips.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let snapshot = handle.metrics();
    assert_eq!(snapshot.probe_rtt.count, 3, "{snapshot:?}");
    assert_eq!(handle.state(), ConnectionState::Connected);

    proxy.blackhole(true);
    let blackholed_at = Instant::now();
    let event = next_matching(&mut lost, |_| true).await;
    let EventKind::Disconnected {
        reason: DisconnectReason::ProbeFailed(error),
    } = &event.kind
    else {
        panic!("expected a probe failure, got {event}");
    };
    assert!(error.is_timeout(), "{error}");
    // Detected within one interval plus the probe timeout.
    assert!(
        blackholed_at.elapsed() <= Duration::from_millis(1300),
        "{:?}",
        blackholed_at.elapsed()
    );

    proxy.restore();
    wait_state(&handle, ConnectionState::Connected).await;
    assert!(handle.metrics().reconnects >= 1);
    handle.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(start_paused = true)]
async fn connect_timeout_bounds_a_silent_handshake() {
    // Accepts and never sends the banner the transport waits for.
    let silent = LoopbackServer::start(|stream, _| async move {
        let _hold = stream;
        std::future::pending::<()>().await;
    })
    .await
    .unwrap();
    let transport = TcpEchoTransport::new(silent.addr()).unwrap().with_banner();

    // As a transport wrapper...
    let bounded = transport.clone().timeout(Duration::from_secs(2));
    let started = Instant::now();
    let err = bounded.connect().await.unwrap_err();
    assert!(
        matches!(err, Error::Timeout { operation: Operation::Connect, after, .. } if after == Duration::from_secs(2))
    );
    assert!(err.is_retryable());
    assert_eq!(started.elapsed(), Duration::from_secs(2));

    // ...and as a supervisor setting: the attempt fails and is retried.
    let handle = Supervisor::new(transport.clone())
        .connect_timeout(Duration::from_secs(1))
        .backoff(ConstantBackoff::new(Duration::from_millis(10)))
        .spawn()
        .unwrap();
    let mut errors = handle.subscribe(EventFilter::all().types([EventType::Error]));
    let event = next_matching(&mut errors, |_| true).await;
    assert!(
        matches!(&event.kind, EventKind::Error { error } if error.is_timeout()),
        "{event}"
    );
    wait_state(&handle, ConnectionState::Reconnecting).await;
    handle.shutdown(Duration::from_secs(1)).await;
}
