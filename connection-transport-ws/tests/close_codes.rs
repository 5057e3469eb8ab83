//! The server closes mid-stream: which close codes reconnect and which end the client.

mod support;

use std::time::Duration;

use connection_core::{
    ConnectionState, ConstantBackoff, DisconnectReason, EventFilter, EventKind, EventType,
};
use connection_transport_ws::{CloseCodePolicy, Message, WsClient};
use futures::StreamExt;
use support::{Options, WsServer, close_after};

async fn server_closing_with(code: u16) -> WsServer {
    WsServer::start(Options::default(), move |ws, log| {
        close_after(ws, log, 1, code)
    })
    .await
}

/// Sends one message, gets its echo, sees the server's close; returns the disconnect
/// event's close code and whether it reconnects.
async fn run(code: u16, policy: Option<CloseCodePolicy>) -> (WsServer, WsClient, bool) {
    let server = server_closing_with(code).await;
    let mut client = WsClient::builder(server.url())
        .configure(|c| match policy {
            Some(p) => c.close_codes(p),
            None => c,
        })
        .backoff(ConstantBackoff::new(Duration::from_millis(50)))
        .spawn()
        .expect("spawn");
    let mut events = client.subscribe(EventFilter::all().types([EventType::Disconnected]));
    client.send_text("one").await.expect("send");
    assert_eq!(client.recv().await, Some(Message::text("one")));
    let event = tokio::time::timeout(Duration::from_secs(10), events.next())
        .await
        .expect("disconnect event")
        .expect("event stream open")
        .expect("no lag");
    let EventKind::Disconnected {
        reason:
            DisconnectReason::CloseCode {
                code: seen,
                reason,
                reconnect,
            },
    } = event.kind
    else {
        panic!("unexpected event {event}");
    };
    assert_eq!(seen, code);
    assert_eq!(&*reason, format!("bye {code}"));
    // The client answered the close handshake.
    server
        .log
        .wait_until("client's close reply", |l| !l.closes().is_empty())
        .await;
    (server, client, reconnect)
}

#[tokio::test(start_paused = true)]
async fn going_away_and_restart_codes_reconnect() {
    for code in [1001, 1012, 1011, 1013, 4000] {
        let (server, client, reconnect) = run(code, None).await;
        assert!(reconnect, "{code}");
        server
            .log
            .wait_until("second connection", |l| l.accepted() >= 2)
            .await;
        client.wait_connected().await.unwrap();
        assert!(client.metrics().reconnects >= 1, "{code}");
    }
}

#[tokio::test(start_paused = true)]
async fn normal_and_policy_codes_end_the_client() {
    for code in [1000, 1008] {
        let (server, mut client, reconnect) = run(code, None).await;
        assert!(!reconnect, "{code}");
        let mut state = client.handle().watch_state();
        state
            .wait_for(|s| *s == ConnectionState::Failed)
            .await
            .unwrap();
        // No reconnect attempt, even after a long while.
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(server.log.accepted(), 1, "{code}");
        assert_eq!(client.state(), ConnectionState::Failed);
        // The message stream ends.
        assert_eq!(client.recv().await, None);
        assert!(client.wait_connected().await.is_err());
    }
}

#[tokio::test(start_paused = true)]
async fn close_code_policy_is_configurable() {
    let policy = CloseCodePolicy::default().reconnect_on(1000).stop_on(1012);
    let (server, client, reconnect) = run(1000, Some(policy.clone())).await;
    assert!(reconnect);
    server
        .log
        .wait_until("second connection", |l| l.accepted() >= 2)
        .await;
    drop(client);
    let (_server, client, reconnect) = run(1012, Some(policy)).await;
    assert!(!reconnect);
    let mut state = client.handle().watch_state();
    state
        .wait_for(|s| *s == ConnectionState::Failed)
        .await
        .unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_dropped_tcp_connection_is_abnormal_closure_and_reconnects() {
    // Echo one message, then drop the socket without a close frame.
    let server = WsServer::start(Options::default(), |mut ws, log| async move {
        if let Some(Ok(msg)) = ws.next().await {
            support::record(&log, &msg);
            let _ = futures::SinkExt::send(&mut ws, msg).await;
        }
    })
    .await;
    let mut client = WsClient::builder(server.url())
        .backoff(ConstantBackoff::new(Duration::from_millis(50)))
        .spawn()
        .expect("spawn");
    let mut events = client.subscribe(EventFilter::all().types([EventType::Disconnected]));
    client.send_text("one").await.expect("send");
    assert_eq!(client.recv().await, Some(Message::text("one")));
    let event = events
        .next()
        .await
        .expect("event stream open")
        .expect("no lag");
    let EventKind::Disconnected {
        reason: DisconnectReason::Error(error),
    } = &event.kind
    else {
        panic!("unexpected {event}");
    };
    assert!(error.is_retryable(), "{error}");
    assert!(error.to_string().contains("1006"), "{error}");
    server
        .log
        .wait_until("reconnect", |l| l.accepted() >= 2)
        .await;
}
