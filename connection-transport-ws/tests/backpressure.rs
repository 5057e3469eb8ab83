//! A slow consumer slows the server down instead of growing memory: when the inbound
//! buffer is full the client stops reading the socket and TCP pushes back.

mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use connection_transport_ws::WsClient;
use support::{Options, WsServer, flood};

const COUNT: usize = 1000;
const SIZE: usize = 64 * 1024;

#[tokio::test(start_paused = true)]
async fn a_slow_consumer_bounds_memory_and_blocks_the_server() {
    let server = WsServer::start(Options::default(), |ws, log| flood(ws, log, COUNT, SIZE)).await;
    let mut client = WsClient::builder(server.url())
        .configure(|c| c.inbound_buffer(8).no_heartbeat())
        .spawn()
        .unwrap();
    client.wait_connected().await.unwrap();
    // Virtual time only moves when every task is idle: the server is blocked writing and
    // our reader is blocked on the full inbound buffer.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let read = client.metrics().messages_in;
    let sent = server.log.sent.load(Ordering::SeqCst);
    assert_eq!(read, 8, "the reader stops once the buffer is full");
    assert!(
        sent < COUNT,
        "the server's sends must block ({sent} of {COUNT} went out: 64 MiB would have been buffered)"
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        client.metrics().messages_in,
        read,
        "no reading while the app is behind"
    );
    assert_eq!(server.log.sent.load(Ordering::SeqCst), sent);

    // Consuming lets the flow resume.
    for _ in 0..200 {
        let msg = client.recv().await.unwrap();
        assert_eq!(msg.len(), SIZE);
    }
    assert!(client.metrics().messages_in >= 200);
    server
        .log
        .wait_until("server sends more", |l| {
            l.sent.load(Ordering::SeqCst) > sent
        })
        .await;
}

/// Large messages: the inbound buffer is bounded in bytes too. With 1 MiB messages and
/// the default count bound (256), a paused consumer would hold 256 MiB; the default
/// byte bound stops the reader at 16 MiB.
#[tokio::test(start_paused = true)]
async fn a_slow_consumer_of_large_messages_holds_at_most_the_byte_bound() {
    const BIG: usize = 1024 * 1024;
    let server = WsServer::start(Options::default(), |ws, log| flood(ws, log, 64, BIG)).await;
    let mut client = WsClient::builder(server.url())
        .configure(|c| c.no_heartbeat())
        .spawn()
        .unwrap();
    client.wait_connected().await.unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let held = client.buffered_bytes();
    assert!(
        held <= connection_transport_ws::DEFAULT_INBOUND_BUFFER_BYTES,
        "{held} bytes held"
    );
    assert!(held >= 8 * BIG, "the buffer does fill: {held}");
    let read = client.metrics().messages_in;
    // 16 buffered, plus the one the reader holds while it waits for room.
    assert!(read <= 17, "{read} messages read with a paused consumer");
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        client.metrics().messages_in,
        read,
        "no reading while behind"
    );

    // Consuming frees bytes, and the flow resumes to the end.
    for _ in 0..64 {
        let msg = client.recv().await.unwrap();
        assert_eq!(msg.len(), BIG);
    }
    assert_eq!(client.buffered_bytes(), 0);
}

#[test]
fn the_byte_bound_is_validated() {
    let err = connection_transport_ws::WsConfig::builder("ws://127.0.0.1:1/")
        .inbound_buffer_bytes(0)
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("inbound_buffer_bytes"), "{err}");
}
