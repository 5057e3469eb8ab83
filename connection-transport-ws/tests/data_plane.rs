//! WebSocket traffic through a supervised connection: a plain `Supervisor` over
//! `WsTransport` hands out the current connection's sender, across a server restart.
//! (A `WsClient` attached to a manager is in `connection-kit/tests/side_by_side.rs`.)

mod support;

use std::time::Duration;

use connection_core::{ConnectionState, ConstantBackoff, Error, Supervisor};
use connection_transport_ws::{WsConfig, WsError, WsTransport};
use support::{Options, WsServer, sink};

#[tokio::test(start_paused = true)]
async fn traffic_goes_through_the_supervised_connection_across_a_server_restart() {
    let mut server = WsServer::start(Options::default(), sink).await;
    let config = WsConfig::builder(server.url())
        .build()
        .expect("valid config");
    let conn = Supervisor::new(WsTransport::new(config))
        .backoff(ConstantBackoff::new(Duration::from_millis(100)))
        .spawn()
        .expect("spawn");

    let sender = conn.ready(Duration::from_secs(2)).await.expect("connected");
    sender.send_text("one").await.expect("send");
    server.log.wait_until("one", |l| l.texts().len() == 1).await;
    // The connection's traffic lands in the supervisor's metrics.
    sender.flushed().await;
    let m = conn.metrics();
    assert_eq!((m.messages_out, m.bytes_out), (1, 3), "{m:?}");

    server.server.stop().await;
    conn.watch_state()
        .wait_for(|s| *s != ConnectionState::Connected)
        .await
        .expect("alive");
    // The dead connection's sender fails instead of queueing into the void.
    let err = sender.send_text("lost").await.expect_err("gone");
    assert!(matches!(err, WsError::Closed { .. }), "{err}");
    assert!(Error::from(err).is_connection_level());

    server.server.restart().await.expect("rebind");
    let sender = conn
        .ready(Duration::from_secs(5))
        .await
        .expect("reconnected");
    sender.send_text("two").await.expect("send");
    server.log.wait_until("two", |l| l.texts().len() == 2).await;
    assert_eq!(server.log.texts(), ["one", "two"]);
    sender.flushed().await;
    assert_eq!(conn.metrics().messages_out, 2);
    conn.shutdown(Duration::from_secs(1)).await;
}
