//! Against a real TCP echo server on loopback: connect failures reach the caller,
//! checkout validation discards connections of a killed server, and keepalive finds
//! them dead before any caller does.

use std::time::Duration;

use connection_core::{Connection, Error};
use connection_pool::{Pool, PoolConfig, PoolError};
use connection_testkit::{TcpEchoServer, TcpEchoTransport};

fn cfg() -> connection_pool::PoolConfigBuilder {
    PoolConfig::builder()
        .max_size(4)
        .idle_timeout(None)
        .max_lifetime(None)
        .validate_timeout(Some(Duration::from_secs(1)))
        .recycle_window(Duration::from_millis(100))
}

#[tokio::test(start_paused = true)]
async fn connect_failure_carries_the_connect_error() {
    let mut server = TcpEchoServer::start().await.expect("test step");
    let transport = TcpEchoTransport::new(server.addr()).expect("test step");
    server.stop().await;
    let pool = Pool::new(transport, cfg().build().expect("test step")).expect("test step");
    let err = pool.get().await.unwrap_err();
    let PoolError::Connect { source } = &err else {
        panic!("expected a connect error, got {err}");
    };
    let Error::Connect { source: io, .. } = source else {
        panic!("expected a socket error, got {source}");
    };
    assert_eq!(io.kind(), std::io::ErrorKind::ConnectionRefused);
    assert!(err.to_string().contains("127.0.0.1"), "{err}");
    assert_eq!(pool.status().size, 0);
}

#[tokio::test(start_paused = true)]
async fn validation_discards_a_dead_connection_and_reconnects_after_restart() {
    let mut server = TcpEchoServer::start().await.expect("test step");
    let pool = Pool::new(
        TcpEchoTransport::new(server.addr()).expect("test step"),
        cfg().build().expect("test step"),
    )
    .expect("test step");
    let first = {
        let mut c = pool.get().await.expect("test step");
        c.echo(b"hello").await.expect("test step");
        c.id()
    };
    server.stop().await;
    server.restart().await.expect("test step");
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The pooled socket died with the old server; the connection knows (its closed
    // signal is ready), so no probe is needed and the caller gets a fresh connection to
    // the restarted one.
    let mut c = pool.get().await.expect("test step");
    assert_ne!(c.id(), first);
    c.echo(b"again").await.expect("test step");
    let m = pool.metrics();
    // Known dead without a probe: by its state, or by its closed signal.
    assert_eq!(m.closed.broken + m.closed.peer_closed, 1, "{m:?}");
    assert_eq!(m.closed.failed_validation, 0, "{m:?}");
    assert_eq!(m.status.size, 1);
}

/// The case that made callers wrap the pool in their own retry: the server restarts
/// while a pooled connection sits inside `recycle_window` (so checkout skips the
/// probe). The first `get` must still hand out a live connection.
#[tokio::test(start_paused = true)]
async fn server_restart_inside_the_recycle_window_gives_a_live_connection() {
    let mut server = TcpEchoServer::start().await.expect("test step");
    let pool = Pool::new(
        TcpEchoTransport::new(server.addr()).expect("test step"),
        cfg()
            .recycle_window(Duration::from_secs(60))
            .build()
            .expect("test step"),
    )
    .expect("test step");
    let first = {
        let mut c = pool.get().await.expect("test step");
        c.echo(b"hello").await.expect("test step");
        c.id()
    };
    server.stop().await;
    server.restart().await.expect("test step");
    // Let the connection's I/O task read the EOF (no probe will run: we are well inside
    // the recycle window).
    tokio::time::sleep(Duration::from_millis(5)).await;
    let mut c = pool.get().await.expect("test step");
    assert_ne!(c.id(), first, "the dead connection was handed out");
    c.echo(b"first try").await.expect("the first get is live");
    let m = pool.metrics();
    assert_eq!(m.closed.broken + m.closed.peer_closed, 1, "{m:?}");
    assert_eq!(m.closed.failed_validation, 0, "no probe ran: {m:?}");
}

/// While idle, too: the maintainer drops connections whose peer has gone.
#[tokio::test(start_paused = true)]
async fn the_maintainer_drops_idle_connections_whose_peer_closed() {
    let mut server = TcpEchoServer::start().await.expect("test step");
    let pool = Pool::new(
        TcpEchoTransport::new(server.addr()).expect("test step"),
        cfg()
            .min_idle(2)
            .idle_timeout(Some(Duration::from_secs(1)))
            .recycle_window(Duration::from_secs(60))
            .build()
            .expect("test step"),
    )
    .expect("test step");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(pool.status().idle, 2);
    server.stop().await;
    // The maintainer sweeps at least once per idle_timeout.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let m = pool.metrics();
    assert_eq!(m.closed.peer_closed, 2, "{m:?}");
}

#[tokio::test(start_paused = true)]
async fn keepalive_finds_dead_idle_connections_before_any_caller() {
    let mut server = TcpEchoServer::start().await.expect("test step");
    let transport = TcpEchoTransport::new(server.addr()).expect("test step");
    let pool = Pool::new(
        transport.clone(),
        cfg()
            .min_idle(3)
            .keepalive_interval(Some(Duration::from_secs(2)))
            .build()
            .expect("test step"),
    )
    .expect("test step");
    // The maintainer fills min_idle.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(pool.status().idle, 3);
    server.stop().await;
    // Within one keepalive interval every idle connection was found dead (by its closed
    // signal, or else by its probe) and discarded; refills fail while the server is down.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let m = pool.metrics();
    assert_eq!(
        m.closed.failed_validation + m.closed.peer_closed,
        3,
        "{m:?}"
    );
    assert_eq!(m.gets, 0, "no caller was involved");
    assert!(m.create_failed >= 1, "{m:?}");
    server.restart().await.expect("test step");
    // Refill follows the backoff; within a few seconds min_idle is back.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(pool.status().idle, 3, "{}", pool.status());
    let mut c = pool.get().await.expect("test step");
    c.probe().await.expect("test step");
}
