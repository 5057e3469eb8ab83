//! The story the crates exist for, across crate boundaries: one manager holding WebSocket
//! and TCP connections side by side, health-checked through each transport's own probe
//! (a WebSocket ping, a TCP echo), a failover group over two WebSocket servers, and a
//! managed `WsClient` attached to the same manager and event stream.

use std::time::Duration;

use connection_kit::health::{
    ConnectionManager, ConnectionOptions, Failover, FailoverGroup, HealthCheck, HealthStatus,
};
use connection_kit::ws::{Message, WsClient, WsConfig, WsSender, WsTransport};
use connection_kit::{ConnectionState, EventFilter};
use connection_testkit::{LoopbackServer, TcpEchoServer, TcpEchoTransport};
use futures::{SinkExt, StreamExt};

/// A WebSocket echo server on 127.0.0.1 (tokio-tungstenite, as a third party would run it).
async fn ws_echo_server() -> LoopbackServer {
    LoopbackServer::start(|stream, _| async move {
        let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
            return;
        };
        while let Some(Ok(msg)) = ws.next().await {
            if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                return;
            }
        }
    })
    .await
    .expect("bind a WebSocket server")
}

fn ws_transport(server: &LoopbackServer) -> WsTransport {
    let config = WsConfig::builder(format!("ws://{}/feed", server.addr()))
        .build()
        .expect("valid WebSocket config");
    WsTransport::new(config)
}

fn options() -> ConnectionOptions {
    ConnectionOptions::builder()
        .reconnect_delay(Duration::from_millis(100))
        .build()
        .expect("valid options")
}

async fn wait_primary(group: &FailoverGroup, want: &str) {
    let mut primary = group.watch_primary();
    tokio::time::timeout(
        Duration::from_secs(30),
        primary.wait_for(|p| p.as_deref() == Some(want)),
    )
    .await
    .unwrap_or_else(|_| panic!("primary never became {want}"))
    .expect("group alive");
}

#[tokio::test(start_paused = true)]
async fn websocket_and_tcp_side_by_side_with_failover() {
    let mut ws_a = ws_echo_server().await;
    let ws_b = ws_echo_server().await;
    let tcp = TcpEchoServer::start().await.unwrap();

    let check = HealthCheck::builder()
        .interval(Duration::from_secs(1))
        .probe_timeout(Duration::from_millis(500))
        .recovery_threshold(2)
        .build()
        .unwrap();
    let manager = ConnectionManager::builder()
        .health_check(check)
        .build()
        .unwrap();
    manager.add("ws-a", ws_transport(&ws_a), options()).unwrap();
    manager.add("ws-b", ws_transport(&ws_b), options()).unwrap();
    manager
        .add("tcp", TcpEchoTransport::new(tcp.addr()).unwrap(), options())
        .unwrap();

    // A managed client with its own queue and streams, on the manager's bus.
    let mut client = WsClient::builder(format!("ws://{}/chat", ws_b.addr()))
        .events(manager.event_bus().clone())
        .name("chat")
        .spawn()
        .unwrap();
    manager.attach("chat", &client, options()).unwrap();

    let report = manager.connect_all().await;
    // The attached client counts too: it is connected, though supervised elsewhere.
    assert_eq!(report.connected.len(), 4, "{report:?}");
    assert!(report.failed.is_empty(), "{report:?}");
    let group = manager
        .failover_group("feed")
        .route("ws-a", 0)
        .route("ws-b", 1)
        .parallel(true)
        .build()
        .unwrap();
    wait_primary(&group, "ws-a").await;

    // Probes go through each transport's own round trip: pings and echoes.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for name in ["ws-a", "ws-b", "tcp", "chat"] {
        assert_eq!(
            manager.health(name).unwrap(),
            HealthStatus::Healthy,
            "{name}"
        );
    }
    client.send_text("hello").await.unwrap();
    let echoed = tokio::time::timeout(Duration::from_secs(5), client.next())
        .await
        .unwrap();
    assert_eq!(echoed, Some(Message::text("hello")));

    // The attached client's link, found by name and type, sends on its queue too.
    let via_manager = manager
        .link::<WsSender>("chat")
        .unwrap()
        .ready(Duration::from_secs(1))
        .await
        .unwrap();
    via_manager.send_text("via the manager").await.unwrap();
    let echoed = tokio::time::timeout(Duration::from_secs(5), client.next())
        .await
        .unwrap();
    assert_eq!(echoed, Some(Message::text("via the manager")));
    // Traffic through the WebSocket group goes to its primary's connection.
    let feed = group.link::<WsSender>().unwrap();
    feed.run(|s| async move { Ok(s.send_text("to the primary").await?) })
        .await
        .unwrap();

    // The primary's server goes away: the group fails over without waiting for a probe.
    let mut failovers = manager.subscribe(EventFilter::all().extensions([Failover::NAME]));
    ws_a.stop().await;
    let stopped = tokio::time::Instant::now();
    wait_primary(&group, "ws-b").await;
    feed.run_idempotent(|s| async move { Ok(s.send_text("to the standby").await?) })
        .await
        .unwrap();
    assert!(
        stopped.elapsed() < Duration::from_millis(100),
        "{:?}",
        stopped.elapsed()
    );
    let event = tokio::time::timeout(Duration::from_secs(5), failovers.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(event.kind.downcast_ref::<Failover>().is_some(), "{event}");

    // It comes back and, once it has passed the recovery threshold, takes over again.
    ws_a.restart().await.unwrap();
    wait_primary(&group, "ws-a").await;
    assert_eq!(
        manager.status("ws-a").unwrap().state,
        ConnectionState::Connected
    );

    let stats = manager.statistics();
    assert_eq!((stats.connections, stats.connected), (4, 4), "{stats:?}");
    assert!(stats.reconnects >= 1, "{stats:?}");
    assert!(
        stats.messages_out >= 1 && stats.messages_in >= 1,
        "{stats:?}"
    );

    let shutdown = manager.shutdown(Duration::from_secs(2)).await;
    assert!(shutdown.aborted.is_empty(), "{shutdown:?}");
    assert_eq!(client.state(), ConnectionState::Closed);
}

/// A WebSocket server that completes the handshake, then never reads again: our close
/// frame is never answered.
async fn ws_deaf_server() -> LoopbackServer {
    LoopbackServer::start(|stream, _| async move {
        let Ok(ws) = tokio_tungstenite::accept_async(stream).await else {
            return;
        };
        let _hold = ws;
        std::future::pending::<()>().await;
    })
    .await
    .expect("bind a WebSocket server")
}

#[tokio::test(start_paused = true)]
async fn shutdown_reports_a_close_handshake_that_never_completes() {
    let deaf = ws_deaf_server().await;
    let echo = ws_echo_server().await;
    let manager = ConnectionManager::new();
    manager.add("deaf", ws_transport(&deaf), options()).unwrap();
    manager.add("echo", ws_transport(&echo), options()).unwrap();
    let report = manager.connect_all().await;
    assert_eq!(report.connected.len(), 2, "{report:?}");

    let started = tokio::time::Instant::now();
    let shutdown = manager.shutdown(Duration::from_secs(1)).await;
    assert_eq!(started.elapsed(), Duration::from_secs(1));
    assert_eq!(
        shutdown.aborted.iter().map(|n| &**n).collect::<Vec<_>>(),
        ["deaf"],
        "{shutdown:?}"
    );
    assert_eq!(
        shutdown.graceful.iter().map(|n| &**n).collect::<Vec<_>>(),
        ["echo"],
        "{shutdown:?}"
    );
    assert_eq!(
        manager.status("deaf").unwrap().state,
        ConnectionState::Closed
    );
}
