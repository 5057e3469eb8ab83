//! What a client reports of itself: the bytes its buffers hold (received messages
//! waiting for the application, sent ones waiting for a socket), its rates, and its
//! metrics exported under its own name.

mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use connection_core::ConstantBackoff;
use connection_transport_ws::WsClient;
use support::{Options, WsServer, echo, flood, sink};

const SIZE: usize = 4096;

/// Waits (tokio time, bounded) until the client reports `expected` buffered bytes.
async fn buffered_becomes(client: &WsClient, expected: u64) {
    let wait = async {
        while client.metrics().buffered_bytes != Some(expected) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), wait)
        .await
        .unwrap_or_else(|_| {
            panic!(
                "buffered bytes stayed {:?}, expected {expected}",
                client.metrics().buffered_bytes
            )
        });
}

#[tokio::test(start_paused = true)]
async fn received_messages_held_for_a_paused_consumer_are_its_buffers() {
    // Ten messages; the inbound buffer takes eight, then the reader stops reading.
    let server = WsServer::start(Options::default(), |ws, log| flood(ws, log, 10, SIZE)).await;
    let mut client = WsClient::builder(server.url())
        .configure(|c| c.inbound_buffer(8).no_heartbeat())
        .spawn()
        .unwrap();
    client.wait_connected().await.unwrap();
    buffered_becomes(&client, 8 * SIZE as u64).await;
    // Paused, it stays there: the reader does not read on.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let m = client.metrics();
    assert_eq!(m.buffered_bytes, Some(8 * SIZE as u64));
    assert_eq!(m.messages_in, 8);
    assert_eq!(client.buffered_bytes(), 8 * SIZE);

    // Taking four lets the last two in: six left.
    for _ in 0..4 {
        assert_eq!(client.recv().await.unwrap().len(), SIZE);
    }
    buffered_becomes(&client, 6 * SIZE as u64).await;
    assert_eq!(client.metrics().messages_in, 10);
    for _ in 0..6 {
        client.recv().await.unwrap();
    }
    assert_eq!(client.metrics().buffered_bytes, Some(0));
    assert_eq!(server.log.sent.load(Ordering::SeqCst), 10);
}

#[tokio::test(start_paused = true)]
async fn messages_queued_while_disconnected_are_its_buffers_until_flushed() {
    let mut server = WsServer::start(Options::default(), sink).await;
    server.server.stop().await;
    let client = WsClient::builder(server.url())
        .backoff(ConstantBackoff::new(Duration::from_millis(100)))
        .configure(|c| c.no_heartbeat())
        .spawn()
        .unwrap();
    assert_eq!(client.metrics().buffered_bytes, Some(0));
    client.send_text("a".repeat(100)).await.unwrap();
    client.send_binary(vec![0u8; 900]).await.unwrap();
    // Counted the moment they are queued, before any connection exists.
    assert_eq!(client.metrics().buffered_bytes, Some(1_000));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(client.metrics().buffered_bytes, Some(1_000));

    server.server.restart().await.unwrap();
    client.wait_connected().await.unwrap();
    client.flushed().await;
    assert_eq!(client.metrics().buffered_bytes, Some(0));
    assert_eq!(client.metrics().bytes_out, 1_000);
}

#[tokio::test(start_paused = true)]
async fn rates_and_exports_carry_the_clients_name() {
    let server = WsServer::start(Options::default(), echo).await;
    let mut client = WsClient::builder(server.url())
        .name("feed")
        .configure(|c| c.no_heartbeat())
        .spawn()
        .unwrap();
    client.wait_connected().await.unwrap();
    // 10 echoes of 100 bytes in each of 3 seconds.
    for _ in 0..3 {
        for _ in 0..10 {
            client.send_binary(vec![1u8; 100]).await.unwrap();
            client.recv().await.unwrap();
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let m = client.metrics();
    assert_eq!((m.window.messages_out, m.window.messages_in), (30, 30));
    let rates = m.window.rates();
    let span = m.window.span.as_secs_f64();
    assert!((3.0..3.1).contains(&span), "{span}");
    assert_eq!(rates.messages_out_per_second, 30.0 / span);
    assert_eq!(rates.bytes_in_per_second, 3_000.0 / span);

    let text = client.to_prometheus();
    assert!(
        text.contains("connection_messages_out_total{connection=\"feed\"} 30\n"),
        "{text}"
    );
    assert!(
        text.contains("connection_buffered_bytes{connection=\"feed\"} 0\n"),
        "{text}"
    );
    assert!(
        text.contains("connection_bytes_in_per_second{connection=\"feed\"} "),
        "{text}"
    );
    let mut streamed = Vec::new();
    client.write_prometheus(&mut streamed).unwrap();
    assert_eq!(String::from_utf8(streamed).unwrap(), text);

    let json: serde_json::Value = serde_json::from_str(&client.to_json()).unwrap();
    assert_eq!(json[0]["connection"], "feed");
    assert_eq!(json[0]["messages_in"], 30);
    assert_eq!(json[0]["window"]["messages_in"], 30);
    assert_eq!(json[0]["buffered_bytes"], 0);
}
