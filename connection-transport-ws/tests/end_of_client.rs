//! What a client does once it is over: sends fail instead of queueing into the void, a
//! send waiting for room gives up, `flushed()` returns, the stream ends and says why,
//! and a close that had to abort a writer mid-flush leaves nothing wedged.

mod support;

use std::time::Duration;

use connection_core::{ConnectionState, DisconnectReason, EventFilter, Severity};
use connection_transport_ws::{Message, WhenFull, WsClient, WsError};
use futures::StreamExt;
use support::{Options, WsServer, close_after, unresponsive};

#[tokio::test(start_paused = true)]
async fn after_a_final_close_code_sends_fail_and_the_reason_is_kept() {
    let server = WsServer::start(Options::default(), |ws, log| close_after(ws, log, 1, 1000)).await;
    let mut client = WsClient::builder(server.url()).spawn().expect("spawn");
    let mut errors = client.subscribe(EventFilter::all().min_severity(Severity::Error));
    client.send_text("one").await.expect("send");
    assert_eq!(client.recv().await, Some(Message::text("one")));
    // 1000 ends the client: the stream ends, and says why without any subscription.
    assert_eq!(client.recv().await, None);
    assert_eq!(client.state(), ConnectionState::Failed);
    // A normal end is not an error.
    let error = tokio::time::timeout(Duration::from_millis(100), errors.next()).await;
    assert!(
        error.is_err(),
        "an Error-severity event for a 1000 close: {error:?}"
    );
    match client.last_disconnect() {
        Some(DisconnectReason::CloseCode { code: 1000, .. }) => {}
        other => panic!("expected close code 1000, got {other:?}"),
    }
    // Nothing would ever send it: refused, not queued.
    let err = client
        .send_text("into the void?")
        .await
        .expect_err("failed client");
    assert!(matches!(err, WsError::Closed { .. }), "{err}");
    assert_eq!(client.sender().queued(), 0);
    assert!(client.sender().is_closed());
}

#[tokio::test(start_paused = true)]
async fn a_send_waiting_for_room_gives_up_when_the_client_is_dropped() {
    // Nothing listens: the queue fills and stays full.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let client = WsClient::builder(format!("ws://127.0.0.1:{port}/"))
        .configure(|c| c.queue_capacity(2).when_full(WhenFull::Wait))
        .spawn()
        .expect("spawn");
    let sender = client.sender();
    sender.send_text("1").await.expect("room");
    sender.send_text("2").await.expect("room");
    let waiting = tokio::spawn(async move { sender.send_text("3").await });
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        !waiting.is_finished(),
        "waits for room while the client lives"
    );
    drop(client);
    let result = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("gave up instead of waiting forever")
        .expect("task");
    assert!(
        matches!(result, Err(WsError::Shutdown { .. })),
        "{result:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_close_that_aborts_a_blocked_writer_wedges_nothing() {
    // The server never reads: the writer blocks in a flush once the socket buffers fill.
    let server = WsServer::start(Options::default(), unresponsive).await;
    let client = WsClient::builder(server.url())
        .configure(|c| c.when_full(WhenFull::Error))
        .spawn()
        .expect("spawn");
    client.wait_connected().await.expect("connected");
    let big = vec![7u8; 256 * 1024];
    for _ in 0..64 {
        // Some are refused once the queue is full: the point is a writer stuck mid-flush.
        let _ = client.send(Message::binary(big.clone())).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;

    let outcome = client.close(Duration::from_millis(500)).await;
    assert_eq!(outcome, connection_core::ShutdownOutcome::Aborted);
    // Before the fix, the aborted batch was never settled: flushed() hung forever and
    // every later close waited out its whole deadline.
    tokio::time::timeout(Duration::from_secs(1), client.flushed())
        .await
        .expect("flushed() returns after the close");
    let started = tokio::time::Instant::now();
    client.close(Duration::from_secs(5)).await;
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "a second close took {:?}",
        started.elapsed()
    );
}

/// A writer aborted mid-flush by the supervisor (the heartbeat gave up on a peer that
/// stopped reading) must settle its batch: after the reconnect, `flushed()` returns once
/// the queue is drained. Before the fix the lost batch was counted as pending forever.
#[tokio::test(start_paused = true)]
async fn a_writer_aborted_mid_flush_does_not_wedge_flushed_after_the_reconnect() {
    let mut deaf = WsServer::start(Options::default(), unresponsive).await;
    let addr = deaf.addr();
    let client = WsClient::builder(format!("ws://{addr}/ws"))
        .configure(|c| {
            c.ping_interval(Duration::from_secs(1))
                .pong_timeout(Duration::from_secs(1))
                .when_full(WhenFull::Error)
        })
        .backoff(connection_core::ConstantBackoff::new(
            Duration::from_millis(200),
        ))
        .spawn()
        .expect("spawn");
    client.wait_connected().await.expect("connected");
    let big = vec![7u8; 256 * 1024];
    for _ in 0..64 {
        let _ = client.send(Message::binary(big.clone())).await;
    }
    // The heartbeat declares the peer dead; the writer, stuck in a flush, is aborted.
    let mut state = client.handle().watch_state();
    state
        .wait_for(|s| *s == ConnectionState::Reconnecting)
        .await
        .expect("alive");
    deaf.server.stop().await;
    drop(deaf);
    // A server that reads, on the same port.
    let _sink = WsServer::start_on(addr, Options::default(), support::sink).await;
    client.wait_connected().await.expect("reconnected");
    tokio::time::timeout(Duration::from_secs(30), client.flushed())
        .await
        .expect("flushed() returns once the queue is drained");
    assert_eq!(client.state(), ConnectionState::Connected);
}
