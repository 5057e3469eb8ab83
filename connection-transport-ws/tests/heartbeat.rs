//! Heartbeat: pings measure the round trip; a server that stops answering is dropped
//! after the pong timeout and the client reconnects.

mod support;

use std::time::Duration;

use connection_core::{ConstantBackoff, DisconnectReason, EventFilter, EventKind, EventType};
use connection_transport_ws::WsClient;
use futures::StreamExt;
use support::{Options, WsServer, echo, pinger, unresponsive};
use tokio::time::Instant;

#[tokio::test(start_paused = true)]
async fn pings_feed_latency_metrics() {
    let server = WsServer::start(Options::default(), echo).await;
    let client = WsClient::builder(server.url())
        .configure(|c| {
            c.ping_interval(Duration::from_secs(1))
                .pong_timeout(Duration::from_millis(500))
        })
        .spawn()
        .unwrap();
    client.wait_connected().await.unwrap();
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let m = client.metrics();
    assert!(m.probe_rtt.count >= 3, "{m:?}");
    assert_eq!(m.reconnects, 0);
    // On-demand probe through the supervisor handle.
    client.handle().probe().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn missing_pong_disconnects_after_the_timeout_and_reconnects() {
    let server = WsServer::start(Options::default(), unresponsive).await;
    let client = WsClient::builder(server.url())
        .configure(|c| {
            c.ping_interval(Duration::from_secs(5))
                .pong_timeout(Duration::from_secs(2))
        })
        .backoff(ConstantBackoff::new(Duration::from_millis(100)))
        .spawn()
        .unwrap();
    let mut events = client.subscribe(EventFilter::all().types([EventType::Disconnected]));
    client.wait_connected().await.unwrap();
    let connected_at = Instant::now();
    let event = events.next().await.unwrap().unwrap();
    let elapsed = connected_at.elapsed();
    let EventKind::Disconnected {
        reason: DisconnectReason::ProbeFailed(error),
    } = &event.kind
    else {
        panic!("unexpected {event}");
    };
    assert!(error.is_timeout(), "{error}");
    // First ping at 5 s, declared dead 2 s later; no waiting for a close handshake
    // with a peer that stopped answering (the close timeout is 5 s).
    assert!(
        elapsed >= Duration::from_secs(7) && elapsed < Duration::from_millis(7100),
        "{elapsed:?}"
    );
    server
        .log
        .wait_until("reconnect", |l| l.accepted() >= 2)
        .await;
    assert!(connected_at.elapsed() < Duration::from_millis(7300));
    client.wait_connected().await.unwrap();
    assert_eq!(client.metrics().reconnects, 1);
}

#[tokio::test(start_paused = true)]
async fn server_pings_are_answered() {
    let server = WsServer::start(Options::default(), pinger).await;
    let client = WsClient::builder(server.url())
        .configure(|c| c.no_heartbeat())
        .spawn()
        .expect("spawn");
    client.wait_connected().await.expect("connected");
    server
        .log
        .wait_until("pong", |l| l.texts() == ["pong:server-ping"])
        .await;
    // Server pings are not application messages.
    client.send_text("after").await.expect("send");
    server
        .log
        .wait_until("message", |l| l.texts().len() == 2)
        .await;
    assert_eq!(client.metrics().messages_in, 0);
}
