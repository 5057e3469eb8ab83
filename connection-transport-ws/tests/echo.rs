//! Echo through the client and through a standalone connection; metrics; subprotocols;
//! handshake headers.

mod support;

use std::time::Duration;

use connection_core::{Connection, Transport};
use connection_transport_ws::{Message, WsClient, WsConfig, WsError, WsTransport};
use futures::StreamExt;
use support::{Options, WsServer, echo};

#[tokio::test]
async fn client_echoes_text_and_binary_and_counts_them() {
    let server = WsServer::start(Options::default(), echo).await;
    let mut client = WsClient::builder(server.url()).spawn().unwrap();
    client.send_text("hello").await.unwrap();
    client.send_binary(vec![1u8, 2, 3]).await.unwrap();
    assert_eq!(client.recv().await, Some(Message::text("hello")));
    assert_eq!(client.next().await, Some(Message::binary(vec![1u8, 2, 3])));

    let m = client.metrics();
    assert_eq!((m.messages_out, m.bytes_out), (2, 8));
    assert_eq!((m.messages_in, m.bytes_in), (2, 8));
    assert!(m.connected);
    assert_eq!(server.log.texts(), ["hello"]);
    client.close(Duration::from_secs(2)).await;
}

#[tokio::test]
async fn standalone_connection_echoes_and_probes() {
    let server = WsServer::start(Options::default(), echo).await;
    let transport = WsTransport::new(WsConfig::builder(server.url()).build().unwrap());
    let mut conn = transport.connect().await.unwrap();
    assert!(conn.state().is_connected());
    conn.send_text("one").await.unwrap();
    assert_eq!(conn.recv().await, Some(Message::text("one")));
    let rtt = conn.probe().await.unwrap();
    assert!(rtt < Duration::from_secs(5));
    assert_eq!(conn.metrics().snapshot().messages_in, 1);
    conn.close().await.unwrap();
    assert!(!conn.state().is_connected());
    assert!(conn.probe().await.is_err());
    server
        .log
        .wait_until("close frame seen", |l| {
            l.closes() == [(1000, String::new())]
        })
        .await;
}

#[tokio::test]
async fn subprotocol_is_negotiated() {
    let options = Options {
        protocols: vec!["v2.json"],
        ..Options::default()
    };
    let server = WsServer::start(options, echo).await;
    let config = WsConfig::builder(server.url())
        .subprotocol("v3.json")
        .subprotocol("v2.json")
        .build()
        .unwrap();
    let conn = WsTransport::new(config).connect().await.unwrap();
    assert_eq!(conn.subprotocol(), Some("v2.json"));
    let offered = server.log.headers.lock().unwrap()[0]
        .get("sec-websocket-protocol")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(offered, "v3.json, v2.json");

    // A server that picks none of ours: the handshake fails, not retryable.
    let plain = WsServer::start(Options::default(), echo).await;
    let config = WsConfig::builder(plain.url())
        .subprotocol("v9")
        .build()
        .unwrap();
    let err = WsTransport::new(config).open().await.unwrap_err();
    assert!(matches!(err, WsError::Handshake { .. }), "{err}");
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn custom_headers_arrive_and_are_redacted() {
    let server = WsServer::start(Options::default(), echo).await;
    let config = WsConfig::builder(server.url())
        .bearer_auth("tok-123")
        .header("x-api-key", "key-456")
        .build()
        .unwrap();
    let transport = WsTransport::new(config);
    let _conn = transport.connect().await.unwrap();
    let headers = server.log.headers.lock().unwrap()[0].clone();
    assert_eq!(headers.get("authorization").unwrap(), "Bearer tok-123");
    assert_eq!(headers.get("x-api-key").unwrap(), "key-456");

    let client = WsClient::with_config(transport.config().clone())
        .spawn()
        .unwrap();
    for debug in [
        format!("{transport:?}"),
        format!("{:?}", transport.config()),
        format!("{client:?}"),
    ] {
        assert!(
            !debug.contains("tok-123") && !debug.contains("key-456"),
            "{debug}"
        );
        assert!(debug.contains("x-api-key"), "{debug}");
    }
}

#[tokio::test]
async fn url_credentials_become_basic_auth() {
    let server = WsServer::start(Options::default(), echo).await;
    let url = format!("ws://alice:s%40cret@{}/ws", server.addr());
    let config = WsConfig::builder(url).build().expect("config");
    assert!(!format!("{config:?}").contains("cret"));
    let _conn = WsTransport::new(config).open().await.expect("connect");
    let headers = server.log.headers.lock().expect("log")[0].clone();
    // base64("alice:s@cret")
    assert_eq!(
        headers.get("authorization").expect("authorization header"),
        "Basic YWxpY2U6c0BjcmV0"
    );
}
