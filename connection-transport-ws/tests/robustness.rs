//! Secrets in a URL never reach an error, and the longest durations neither panic nor
//! stop the client.

mod support;

use std::time::Duration;

use connection_core::{ConnectionState, ConstantBackoff, EventFilter, EventType, MAX_DURATION};
use connection_testkit::events::next_matching;
use connection_transport_ws::{Message, WsClient, WsConfig, WsTransport};
use support::{Options, WsServer, echo};

const SECRETS: &[&str] = &["pw-secret", "abc-secret", "sid-secret", "frag-secret"];

fn assert_redacted(shown: &str) {
    for secret in SECRETS {
        assert!(!shown.contains(secret), "{secret} leaked in {shown}");
    }
}

/// A URL with a secret in every part that can hold one.
fn secret_url(authority: &str) -> String {
    format!("ws://bob:pw-secret@{authority}/x?token=abc-secret&sid=sid-secret#frag-secret")
}

#[tokio::test]
async fn connect_and_handshake_errors_do_not_leak_url_secrets() {
    // Refused: nothing listens on a port just freed.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let config = WsConfig::builder(secret_url(&format!("127.0.0.1:{port}")))
        .build()
        .unwrap();
    assert_redacted(&format!("{config:?}"));
    let err = WsTransport::new(config.clone()).open().await.unwrap_err();
    assert_redacted(&format!("{err} {err:?}"));
    assert!(err.to_string().contains("token=***"), "{err}");

    // Rejected by the server, through a client: the error, its event and last_error.
    let server = WsServer::start(
        Options {
            reject: Some(401),
            ..Options::default()
        },
        echo,
    )
    .await;
    let client = WsClient::builder(secret_url(&server.addr().to_string()))
        .spawn()
        .unwrap();
    let mut errors = client.subscribe(EventFilter::all().types([EventType::Error]));
    let err = client.wait_ready().await.unwrap_err();
    assert_redacted(&format!("{err} {err:?}"));
    let event = next_matching(&mut errors, |_| true).await;
    assert_redacted(&format!("{event} {event:?}"));
    assert_redacted(&format!("{client:?}"));
}

#[test]
fn a_url_that_does_not_parse_does_not_leak_either() {
    let err = WsConfig::builder(
        "wss://bob:pw-secret@127.0.0.1:99999/x?token=abc-secret&sid=sid-secret#frag-secret",
    )
    .build()
    .unwrap_err();
    assert_redacted(&format!("{err} {err:?}"));
}

#[tokio::test]
async fn the_longest_durations_neither_panic_nor_stop_the_client() {
    // Settings stop at MAX_DURATION (validation); a close deadline has no bound. (The
    // supervisor's keepalive past it is tested in connection-core's unit tests.)
    let mut server = WsServer::start(Options::default(), echo).await;
    let mut client = WsClient::builder(server.url())
        .configure(|c| {
            c.ping_interval(MAX_DURATION)
                .pong_timeout(MAX_DURATION)
                .connect_timeout(MAX_DURATION)
                .close_timeout(MAX_DURATION)
        })
        .backoff(ConstantBackoff::new(Duration::from_millis(20)))
        .spawn()
        .unwrap();
    client.wait_connected().await.unwrap();
    client.send_text("one").await.unwrap();
    assert_eq!(client.recv().await, Some(Message::text("one")));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(client.state(), ConnectionState::Connected);
    assert!(!client.handle().is_finished());

    // It still sees the server go and come back.
    server.server.stop().await;
    let mut state = client.handle().watch_state();
    tokio::time::timeout(
        Duration::from_secs(10),
        state.wait_for(|s| *s == ConnectionState::Reconnecting),
    )
    .await
    .expect("the loss is seen")
    .unwrap();
    server.server.restart().await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), client.wait_connected())
        .await
        .expect("reconnected in time")
        .unwrap();
    client.send_text("two").await.unwrap();
    assert_eq!(client.recv().await, Some(Message::text("two")));
    client.close(Duration::MAX).await;
    assert_eq!(client.state(), ConnectionState::Closed);
}
