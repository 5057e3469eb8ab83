//! Shutdown is graceful when it can be and bounded by its deadline when it cannot.

mod support;

use std::time::Duration;

use connection_core::{ConnectionState, ConstantBackoff, Error, ShutdownOutcome, Supervisor};
use connection_testkit::{TcpEchoServer, TcpEchoTransport};
use support::wait_state;
use tokio::time::Instant;

#[tokio::test(start_paused = true)]
async fn graceful_shutdown_closes_the_socket() {
    let server = TcpEchoServer::start().await.unwrap();
    let handle = Supervisor::new(TcpEchoTransport::new(server.addr()).unwrap())
        .spawn()
        .unwrap();
    wait_state(&handle, ConnectionState::Connected).await;
    assert_eq!(server.connections(), 1);

    let other = handle.clone();
    let (a, b) = tokio::join!(
        handle.shutdown(Duration::from_secs(1)),
        other.shutdown(Duration::from_secs(1))
    );
    assert_eq!(
        (a, b),
        (ShutdownOutcome::Graceful, ShutdownOutcome::Graceful)
    );
    assert_eq!(handle.state(), ConnectionState::Closed);
    assert!(handle.is_finished());
    support::wait_until(|| server.connections() == 0).await;
    assert!(!handle.metrics().connected);
}

#[tokio::test(start_paused = true)]
async fn shutdown_interrupts_backoff_sleep() {
    let mut server = TcpEchoServer::start().await.unwrap();
    let addr = server.addr();
    server.stop().await;
    let handle = Supervisor::new(TcpEchoTransport::new(addr).unwrap())
        .backoff(ConstantBackoff::new(Duration::from_secs(3600)))
        .spawn()
        .unwrap();
    wait_state(&handle, ConnectionState::Reconnecting).await;
    let started = Instant::now();
    assert_eq!(
        handle.shutdown(Duration::from_secs(1)).await,
        ShutdownOutcome::Graceful
    );
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(handle.state(), ConnectionState::Closed);
}

#[tokio::test(start_paused = true)]
async fn shutdown_aborts_at_the_deadline() {
    let server = TcpEchoServer::start().await.unwrap();
    let handle = Supervisor::new(
        TcpEchoTransport::new(server.addr())
            .unwrap()
            .hang_on_close(),
    )
    .close_timeout(Duration::from_secs(3600))
    .spawn()
    .unwrap();
    wait_state(&handle, ConnectionState::Connected).await;
    let started = Instant::now();
    assert_eq!(
        handle.shutdown(Duration::from_millis(500)).await,
        ShutdownOutcome::Aborted
    );
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(500) && took < Duration::from_millis(600),
        "{took:?}"
    );
    assert_eq!(handle.state(), ConnectionState::Closed);
    assert!(handle.is_finished());
    // Aborting dropped the socket.
    support::wait_until(|| server.connections() == 0).await;
}

#[tokio::test(start_paused = true)]
async fn dropping_every_handle_stops_the_task() {
    let server = TcpEchoServer::start().await.unwrap();
    let handle = Supervisor::new(TcpEchoTransport::new(server.addr()).unwrap())
        .backoff(ConstantBackoff::new(Duration::from_millis(10)))
        .spawn()
        .unwrap();
    wait_state(&handle, ConnectionState::Connected).await;
    let mut state = handle.watch_state();
    drop(handle);
    tokio::time::timeout(
        support::WAIT,
        state.wait_for(|s| *s == ConnectionState::Closed),
    )
    .await
    .expect("task did not stop")
    .ok();
    support::wait_until(|| server.connections() == 0).await;
}

#[tokio::test]
async fn zero_settings_are_refused_with_the_field_name() {
    let server = TcpEchoServer::start().await.unwrap();
    let t = || TcpEchoTransport::new(server.addr()).unwrap();
    let err = Supervisor::new(t())
        .connect_timeout(Duration::ZERO)
        .spawn()
        .unwrap_err();
    assert!(
        matches!(&err, Error::Config(c) if c.field() == "connect_timeout"),
        "{err}"
    );
    let err = Supervisor::new(t())
        .keepalive(Duration::ZERO, Duration::from_secs(1))
        .spawn()
        .unwrap_err();
    assert!(
        matches!(&err, Error::Config(c) if c.field() == "keepalive_interval"),
        "{err}"
    );
    let err = Supervisor::new(t())
        .keepalive(Duration::from_secs(1), Duration::ZERO)
        .spawn()
        .unwrap_err();
    assert!(
        matches!(&err, Error::Config(c) if c.field() == "probe_timeout"),
        "{err}"
    );
}

#[test]
fn spawn_outside_a_runtime_is_an_error_not_a_panic() {
    let t = TcpEchoTransport::new("127.0.0.1:9".parse().unwrap()).unwrap();
    let err = Supervisor::new(t).spawn().unwrap_err();
    assert!(
        matches!(&err, Error::Config(c) if c.field() == "runtime"),
        "{err}"
    );
}
