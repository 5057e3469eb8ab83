//! `Duration::MAX` (or anything too large to add to an instant) is a valid way to say
//! "never": a supervisor given it must neither panic nor stop reacting.

mod support;

use std::time::Duration;

use connection_core::{ConnectionState, ConstantBackoff, Supervisor};
use connection_testkit::{TcpEchoServer, TcpEchoTransport};
use support::wait_state;

#[tokio::test(start_paused = true)]
async fn keepalive_of_duration_max_stays_connected_and_still_reacts() {
    let mut server = TcpEchoServer::start().await.unwrap();
    let conn = Supervisor::new(TcpEchoTransport::new(server.addr()).unwrap())
        .backoff(ConstantBackoff::new(Duration::from_millis(100)))
        .keepalive(Duration::MAX, Duration::MAX)
        .connect_timeout(Duration::MAX)
        .close_timeout(Duration::MAX)
        .stable_after(Duration::MAX)
        .spawn()
        .unwrap();
    let echo = conn.ready(Duration::MAX).await.unwrap();
    echo.echo(b"one").await.unwrap();

    // Time passes; the task is alive and the connection is still in use.
    tokio::time::sleep(Duration::from_secs(3600)).await;
    assert!(!conn.is_finished());
    assert_eq!(conn.state(), ConnectionState::Connected);
    conn.probe().await.unwrap();
    conn.ready(Duration::MAX)
        .await
        .unwrap()
        .echo(b"two")
        .await
        .unwrap();

    // It still sees the peer go and come back.
    server.stop().await;
    wait_state(&conn, ConnectionState::Reconnecting).await;
    server.restart().await.unwrap();
    wait_state(&conn, ConnectionState::Connected).await;
    assert_eq!(conn.metrics().reconnects, 1);
    assert!(!conn.is_finished());
    conn.shutdown(Duration::MAX).await;
    assert_eq!(conn.state(), ConnectionState::Closed);
}
