//! Handshake failures: rejected credentials are not retried; other statuses are per the
//! core rules; refused connections are retryable; oversized messages are refused.

mod support;

use std::time::Duration;

use connection_core::{ConnectionState, ConstantBackoff, Error, Transport};
use connection_transport_ws::{Message, WsClient, WsConfig, WsError, WsTransport};
use support::{Options, WsServer, echo};

fn rejecting(status: u16) -> Options {
    Options {
        reject: Some(status),
        ..Options::default()
    }
}

#[tokio::test(start_paused = true)]
async fn unauthorized_and_forbidden_fail_without_retry() {
    for status in [401, 403] {
        let server = WsServer::start(rejecting(status), echo).await;
        let transport = WsTransport::new(WsConfig::builder(server.url()).build().unwrap());
        let err = transport.connect().await.unwrap_err();
        assert!(
            matches!(err, Error::Auth { status: s, .. } if s == status),
            "{err}"
        );
        assert!(!err.is_retryable());

        let client = WsClient::builder(server.url())
            .backoff(ConstantBackoff::new(Duration::from_millis(10)))
            .spawn()
            .unwrap();
        let cause = client.wait_ready().await.unwrap_err();
        assert!(matches!(*cause, Error::Auth { .. }), "{cause}");
        assert_eq!(client.state(), ConnectionState::Failed);
        tokio::time::sleep(Duration::from_secs(10)).await;
        // One attempt from the transport above, one from the client: no retries.
        assert_eq!(server.log.headers.lock().unwrap().len(), 2);
        // Asked after the failure, it still says why.
        let late = client.wait_ready().await.unwrap_err();
        assert!(matches!(*late, Error::Auth { .. }), "{late}");
    }
}

#[tokio::test(start_paused = true)]
async fn server_errors_are_retried() {
    let server = WsServer::start(rejecting(503), echo).await;
    let err = WsTransport::new(WsConfig::builder(server.url()).build().unwrap())
        .open()
        .await
        .unwrap_err();
    assert!(
        matches!(err, WsError::Rejected { status: 503, .. }),
        "{err}"
    );
    assert!(err.is_retryable());

    let client = WsClient::builder(server.url())
        .backoff(ConstantBackoff::new(Duration::from_millis(100)))
        .spawn()
        .unwrap();
    server
        .log
        .wait_until("three attempts", |l| l.headers.lock().unwrap().len() >= 4)
        .await;
    assert_ne!(client.state(), ConnectionState::Failed);

    let bad = WsServer::start(rejecting(404), echo).await;
    let err: Error = WsTransport::new(WsConfig::builder(bad.url()).build().unwrap())
        .connect()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Status { status: 404, .. }), "{err}");
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn refused_connection_is_retryable() {
    // Bind and drop to get a port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let transport = WsTransport::new(
        WsConfig::builder(format!("ws://127.0.0.1:{port}/"))
            .build()
            .unwrap(),
    );
    let err = transport.open().await.unwrap_err();
    assert!(matches!(err, WsError::Connect { .. }), "{err}");
    assert!(err.is_retryable());
    assert!(err.to_string().contains(&port.to_string()));
}

#[tokio::test]
async fn oversized_messages_are_refused() {
    let server = WsServer::start(Options::default(), echo).await;
    let config = WsConfig::builder(server.url())
        .max_message_size(Some(1024))
        .max_frame_size(Some(1024))
        .build()
        .unwrap();
    let mut conn = WsTransport::new(config).open().await.unwrap();
    conn.send_binary(vec![0u8; 1000]).await.unwrap();
    assert_eq!(conn.recv().await.map(|m| m.len()), Some(1000));
    // The echo of 2000 bytes exceeds our limit: the connection fails with a clear error.
    conn.send_binary(vec![0u8; 2000]).await.unwrap();
    let reason = connection_core::Connection::closed(&mut conn).await;
    let error = reason.error().expect("an error");
    assert!(
        error.to_string().contains("exceeds the limit of 1024"),
        "{error}"
    );
    assert!(error.is_retryable());
    assert_eq!(conn.recv().await, None::<Message>);
    // The server is told why (RFC 6455 7.4.1): close code 1009.
    server
        .log
        .wait_until("a 1009 close frame", |log| {
            log.closes().iter().any(|(code, _)| *code == 1009)
        })
        .await;
}
