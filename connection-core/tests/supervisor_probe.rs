//! On-demand probes through the handle, and close codes that end the supervisor instead
//! of reconnecting.

mod support;

use std::sync::Arc;
use std::time::Duration;

use connection_core::{
    Connection, ConnectionId, ConnectionState, ConstantBackoff, DisconnectReason, Endpoint, Error,
    EventFilter, EventKind, EventType, Supervisor, Transport,
};
use connection_testkit::{FaultProxy, TcpEchoConnection, TcpEchoServer, TcpEchoTransport};
use support::{next_matching, wait_state};

#[tokio::test(start_paused = true)]
async fn handle_probe_measures_and_reports_without_disconnecting() {
    let server = TcpEchoServer::start().await.unwrap();
    let proxy = FaultProxy::start(server.addr()).await.unwrap();
    let handle = Supervisor::new(TcpEchoTransport::new(proxy.addr()).unwrap())
        .backoff(ConstantBackoff::new(Duration::from_millis(100)))
        .spawn()
        .unwrap();
    wait_state(&handle, ConnectionState::Connected).await;

    handle.probe().await.unwrap();
    handle.probe().await.unwrap();
    assert_eq!(handle.metrics().probe_rtt.count, 2);

    // A hung peer: the caller's timeout abandons the probe, and the connection stays up
    // (the caller owns the health policy). Later probes are not stuck behind it.
    proxy.blackhole(true);
    for _ in 0..10 {
        let hung = tokio::time::timeout(Duration::from_millis(200), handle.probe()).await;
        assert!(hung.is_err(), "a blackholed probe must not answer");
    }
    assert_eq!(handle.state(), ConnectionState::Connected);
    proxy.restore();
    handle.shutdown(Duration::from_secs(1)).await;

    let err = handle.probe().await.unwrap_err();
    assert!(matches!(err, Error::Closed { .. }), "{err}");
}

/// A real TCP echo connection whose peer close is reported as a protocol close code, the
/// way a WebSocket transport reports a close frame.
#[derive(Clone)]
struct CloseCodeTransport {
    inner: TcpEchoTransport,
    code: u16,
    reconnect: bool,
}

struct CloseCodeConnection {
    inner: TcpEchoConnection,
    code: u16,
    reconnect: bool,
}

impl Transport for CloseCodeTransport {
    type Connection = CloseCodeConnection;

    async fn connect(&self) -> Result<CloseCodeConnection, Error> {
        Ok(CloseCodeConnection {
            inner: self.inner.connect().await?,
            code: self.code,
            reconnect: self.reconnect,
        })
    }

    fn endpoint(&self) -> &Endpoint {
        self.inner.endpoint()
    }
}

impl Connection for CloseCodeConnection {
    type Io = ();

    fn io(&self) {}

    fn id(&self) -> ConnectionId {
        self.inner.id()
    }

    fn state(&self) -> ConnectionState {
        self.inner.state()
    }

    async fn probe(&mut self) -> Result<Duration, Error> {
        self.inner.probe().await
    }

    async fn closed(&mut self) -> DisconnectReason {
        match self.inner.closed().await {
            DisconnectReason::PeerClosed => DisconnectReason::CloseCode {
                code: self.code,
                reason: Arc::from("bye"),
                reconnect: self.reconnect,
            },
            other => other,
        }
    }

    async fn close(&mut self) -> Result<(), Error> {
        self.inner.close().await
    }
}

#[tokio::test(start_paused = true)]
async fn final_close_code_fails_and_reconnecting_code_reconnects() {
    for (code, reconnect) in [(1000, false), (1012, true)] {
        let mut server = TcpEchoServer::start().await.unwrap();
        let transport = CloseCodeTransport {
            inner: TcpEchoTransport::new(server.addr()).unwrap(),
            code,
            reconnect,
        };
        let handle = Supervisor::new(transport)
            .backoff(ConstantBackoff::new(Duration::from_millis(100)))
            .spawn()
            .unwrap();
        let mut lost = handle.subscribe(EventFilter::all().types([EventType::Disconnected]));
        wait_state(&handle, ConnectionState::Connected).await;

        server.stop().await;
        let event = next_matching(&mut lost, |_| true).await;
        let EventKind::Disconnected {
            reason:
                DisconnectReason::CloseCode {
                    code: seen, reason, ..
                },
        } = &event.kind
        else {
            panic!("expected a close code, got {event}");
        };
        assert_eq!((*seen, &**reason), (code, "bye"));
        server.restart().await.unwrap();
        if reconnect {
            wait_state(&handle, ConnectionState::Connected).await;
        } else {
            wait_state(&handle, ConnectionState::Failed).await;
            tokio::time::sleep(Duration::from_secs(5)).await;
            assert_eq!(handle.state(), ConnectionState::Failed, "code {code}");
            handle.restart();
            wait_state(&handle, ConnectionState::Connected).await;
        }
        handle.shutdown(Duration::from_secs(1)).await;
    }
}

#[tokio::test(start_paused = true)]
async fn loss_is_published_before_the_slow_close_of_the_dead_connection() {
    let mut server = TcpEchoServer::start().await.unwrap();
    let transport = CloseCodeTransport {
        // A close handshake the dead peer never answers.
        inner: TcpEchoTransport::new(server.addr())
            .unwrap()
            .hang_on_close(),
        code: 1001,
        reconnect: true,
    };
    let handle = Supervisor::new(transport)
        .backoff(ConstantBackoff::new(Duration::from_millis(100)))
        .close_timeout(Duration::from_secs(30))
        .spawn()
        .unwrap();
    wait_state(&handle, ConnectionState::Connected).await;
    let mut lost = handle.subscribe(EventFilter::all().types([EventType::Disconnected]));
    let mut state = handle.watch_state();

    server.stop().await;
    let stopped = tokio::time::Instant::now();
    next_matching(&mut lost, |_| true).await;
    state
        .wait_for(|s| *s == ConnectionState::Reconnecting)
        .await
        .unwrap();
    // Seen at once, not after the 30 s close timeout.
    assert!(
        stopped.elapsed() < Duration::from_secs(1),
        "{:?}",
        stopped.elapsed()
    );
    handle.shutdown(Duration::from_millis(100)).await;
}
