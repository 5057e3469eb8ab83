//! The outbound queue: ordered delivery across an outage, full-queue behaviour, and the
//! on_connect hook running before queued messages on every (re)connect.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use connection_core::{ConnectionState, ConstantBackoff};
use connection_transport_ws::{Message, WhenFull, WsClient, WsError};
use support::{Options, WsServer, echo, sink};

#[tokio::test(start_paused = true)]
async fn messages_sent_during_an_outage_arrive_in_order_after_reconnect() {
    let mut server = WsServer::start(Options::default(), sink).await;
    let client = WsClient::builder(server.url())
        .backoff(ConstantBackoff::new(Duration::from_millis(200)))
        .spawn()
        .unwrap();
    client.wait_connected().await.unwrap();
    client.send_text("before-0").await.unwrap();
    server
        .log
        .wait_until("first message", |l| l.texts().len() == 1)
        .await;

    server.server.stop().await;
    let mut state = client.handle().watch_state();
    state.wait_for(|s| !s.is_connected()).await.unwrap();
    for i in 0..100 {
        client.send_text(format!("outage-{i}")).await.unwrap();
    }
    assert_eq!(client.sender().queued(), 100);
    // Several reconnect attempts fail while the server is down.
    tokio::time::sleep(Duration::from_secs(2)).await;
    server.server.restart().await.unwrap();
    server
        .log
        .wait_until("all queued messages", |l| l.texts().len() == 101)
        .await;
    let expected: Vec<String> = std::iter::once("before-0".to_owned())
        .chain((0..100).map(|i| format!("outage-{i}")))
        .collect();
    assert_eq!(server.log.texts(), expected);
    let m = client.metrics();
    assert_eq!(m.messages_out, 101);
    assert_eq!(m.reconnects, 1);
    client.flushed().await;
}

#[tokio::test(start_paused = true)]
async fn a_full_queue_errors_at_once() {
    // Nothing listens: messages stay queued.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let client = WsClient::builder(format!("ws://127.0.0.1:{port}/"))
        .configure(|c| c.queue_capacity(3))
        .spawn()
        .unwrap();
    for i in 0..3 {
        client.send_text(format!("m{i}")).await.unwrap();
    }
    let err = client.send_text("overflow").await.unwrap_err();
    assert!(
        matches!(err, WsError::QueueFull { capacity: 3, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("full"));
    assert!(matches!(
        client.try_send(Message::text("x")),
        Err(WsError::QueueFull { .. })
    ));
    // Control frames are not ours to send.
    assert!(matches!(
        client.try_send(Message::Ping(Default::default())),
        Err(WsError::ControlFrame { .. })
    ));
}

#[tokio::test(start_paused = true)]
async fn the_wait_option_waits_for_room() {
    let mut server = WsServer::start(Options::default(), sink).await;
    server.server.stop().await;
    let client = WsClient::builder(server.url())
        .configure(|c| c.queue_capacity(2).when_full(WhenFull::Wait))
        .backoff(ConstantBackoff::new(Duration::from_millis(100)))
        .spawn()
        .unwrap();
    client.send_text("a").await.unwrap();
    client.send_text("b").await.unwrap();
    let sender = client.sender();
    let third = tokio::spawn(async move { sender.send_text("c").await });
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        !third.is_finished(),
        "send must wait while the queue is full"
    );
    assert!(client.try_send(Message::text("d")).is_err());
    server.server.restart().await.unwrap();
    third.await.unwrap().unwrap();
    server
        .log
        .wait_until("three messages", |l| l.texts().len() == 3)
        .await;
    assert_eq!(server.log.texts(), ["a", "b", "c"]);
}

#[tokio::test(start_paused = true)]
async fn on_connect_runs_before_queued_messages_on_every_reconnect() {
    let mut server = WsServer::start(Options::default(), echo).await;
    let runs = Arc::new(AtomicUsize::new(0));
    let hook_runs = runs.clone();
    let mut client = WsClient::builder(server.url())
        .backoff(ConstantBackoff::new(Duration::from_millis(100)))
        .on_connect(move |session| {
            let n = hook_runs.fetch_add(1, Ordering::SeqCst);
            async move {
                session.send_text(format!("auth-{n}")).await?;
                // The hook sees the answer; the application does not.
                let reply = session.recv().await?;
                assert_eq!(reply, Message::text(format!("auth-{n}")));
                Ok(())
            }
        })
        .spawn()
        .unwrap();
    client.send_text("queued-1").await.unwrap();
    assert_eq!(client.recv().await, Some(Message::text("queued-1")));

    server.server.stop().await;
    let mut state = client.handle().watch_state();
    state.wait_for(|s| !s.is_connected()).await.unwrap();
    client.send_text("queued-2").await.unwrap();
    server.server.restart().await.unwrap();
    assert_eq!(client.recv().await, Some(Message::text("queued-2")));
    assert_eq!(
        server.log.texts(),
        ["auth-0", "queued-1", "auth-1", "queued-2"]
    );
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    // The hook's traffic counts in the client's metrics too (carried over when the
    // supervisor binds the connection's traffic): 2 auth messages and 2 queued ones out,
    // 2 auth replies and 2 echoes in.
    client.flushed().await;
    let m = client.metrics();
    assert_eq!((m.messages_out, m.messages_in), (4, 4), "{m:?}");
}

#[tokio::test(start_paused = true)]
async fn a_failing_hook_fails_the_attempt_and_is_retried() {
    let server = WsServer::start(Options::default(), echo).await;
    let runs = Arc::new(AtomicUsize::new(0));
    let hook_runs = runs.clone();
    let client = WsClient::builder(server.url())
        .backoff(ConstantBackoff::new(Duration::from_millis(100)))
        .on_connect(move |_session| {
            let n = hook_runs.fetch_add(1, Ordering::SeqCst);
            async move {
                if n < 2 {
                    return Err("not yet".into());
                }
                Ok(())
            }
        })
        .spawn()
        .unwrap();
    client.wait_connected().await.unwrap();
    assert_eq!(runs.load(Ordering::SeqCst), 3);
    assert_eq!(client.state(), ConnectionState::Connected);
    assert_eq!(client.metrics().errors, 2);
}
