//! Graceful close, close against a server that never answers, and dropping the client.

mod support;

use std::time::Duration;

use connection_core::{ConnectionState, ShutdownOutcome};
use connection_transport_ws::{WsClient, WsError};
use support::{Options, WsServer, echo, unresponsive};
use tokio::time::Instant;

fn alive_tasks() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

#[tokio::test(start_paused = true)]
async fn close_sends_a_close_frame_and_refuses_later_sends() {
    let server = WsServer::start(Options::default(), echo).await;
    let client = WsClient::builder(server.url()).spawn().unwrap();
    client.wait_connected().await.unwrap();
    client.send_text("last words").await.unwrap();
    let outcome = client.close(Duration::from_secs(2)).await;
    assert_eq!(outcome, ShutdownOutcome::Graceful);
    assert_eq!(client.state(), ConnectionState::Closed);
    assert_eq!(server.log.texts(), ["last words"]);
    assert_eq!(server.log.closes(), [(1000, String::new())]);
    assert!(matches!(
        client.send_text("too late").await,
        Err(WsError::Shutdown { .. })
    ));
}

#[tokio::test(start_paused = true)]
async fn close_is_aborted_at_the_deadline_when_the_server_never_answers() {
    let server = WsServer::start(Options::default(), unresponsive).await;
    let client = WsClient::builder(server.url())
        .configure(|c| c.close_timeout(Duration::from_secs(30)))
        .spawn()
        .unwrap();
    client.wait_connected().await.unwrap();
    let started = Instant::now();
    let outcome = client.close(Duration::from_secs(1)).await;
    assert_eq!(outcome, ShutdownOutcome::Aborted);
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_secs(1) && elapsed < Duration::from_millis(1100),
        "{elapsed:?}"
    );
    assert_eq!(client.state(), ConnectionState::Closed);
}

#[tokio::test(start_paused = true)]
async fn dropping_the_client_stops_every_task() {
    let server = WsServer::start(Options::default(), echo).await;
    let baseline = alive_tasks();
    let client = WsClient::builder(server.url()).spawn().unwrap();
    client.wait_connected().await.unwrap();
    server
        .log
        .wait_until("accepted", |l| l.accepted() == 1)
        .await;
    // Supervisor, the connection's reader and writer, and the server's handler for it.
    assert_eq!(alive_tasks(), baseline + 4);

    drop(client);
    server
        .log
        .wait_until("server sees the socket close", |l| l.ended() == 1)
        .await;
    // The client said goodbye properly.
    assert_eq!(server.log.closes(), [(1000, String::new())]);
    for _ in 0..100 {
        if alive_tasks() == baseline {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("tasks left behind: {} > {baseline}", alive_tasks());
}
