//! `blackhole` swallows data both ways and keeps connections open (half-open); new
//! connections get no answer; `restore` makes open and new connections work again.
//! On paused tokio time.

mod support;

use std::time::Duration;

use connection_testkit::{FaultProxy, TcpEchoServer};
use support::{bounded, connect, drain, echo, wait_until};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long a test waits for an answer that must not come (tokio time).
const SILENCE: Duration = Duration::from_secs(5);

async fn no_answer(client: &mut TcpStream) {
    let mut buf = [0u8; 64];
    let answer = tokio::time::timeout(SILENCE, client.read(&mut buf)).await;
    assert!(
        answer.is_err(),
        "got an answer through the blackhole: {answer:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn swallows_data_but_keeps_the_connection_open() {
    bounded(async {
        let server = TcpEchoServer::start().await.unwrap();
        let proxy = FaultProxy::start(server.addr()).await.unwrap();
        let mut client = connect(proxy.addr()).await;
        assert_eq!(echo(&mut client, b"before").await.unwrap(), b"before");

        proxy.blackhole(true);
        client.write_all(b"into the void").await.unwrap();
        no_answer(&mut client).await;
        assert_eq!(proxy.connections(), 1);
        assert_eq!(
            server.connections(),
            1,
            "the upstream connection must stay open"
        );
        assert_eq!(proxy.stats().bytes_dropped, 13);

        proxy.restore();
        // What was swallowed is gone; what is sent now passes again.
        assert_eq!(echo(&mut client, b"after").await.unwrap(), b"after");
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn new_connections_get_no_answer_until_restored() {
    bounded(async {
        let server = TcpEchoServer::start().await.unwrap();
        let proxy = FaultProxy::start(server.addr()).await.unwrap();
        proxy.blackhole(true);

        let mut held = connect(proxy.addr()).await;
        held.write_all(b"hello?").await.unwrap();
        no_answer(&mut held).await;
        assert_eq!(proxy.connections(), 1);
        assert_eq!(
            server.accepted(),
            0,
            "the upstream is only connected after the blackhole"
        );

        proxy.restore();
        let mut fresh = connect(proxy.addr()).await;
        assert_eq!(echo(&mut fresh, b"fresh").await.unwrap(), b"fresh");
        // The held connection is connected upstream now, and works too.
        assert_eq!(echo(&mut held, b"held").await.unwrap(), b"held");
        assert_eq!(server.accepted(), 2);
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn holds_back_an_end_of_stream_until_restored() {
    bounded(async {
        let server = TcpEchoServer::start().await.unwrap();
        let proxy = FaultProxy::start(server.addr()).await.unwrap();
        let mut client = connect(proxy.addr()).await;
        assert_eq!(echo(&mut client, b"hi").await.unwrap(), b"hi");

        proxy.blackhole(true);
        client.shutdown().await.unwrap();
        no_answer(&mut client).await;
        // The echo server closes once it sees our end of stream; it has not.
        assert_eq!(server.connections(), 1);

        proxy.restore();
        let (rest, error) = drain(&mut client).await;
        assert!(rest.is_empty() && error.is_none(), "{rest:?} {error:?}");
        wait_until("upstream closed", || server.connections() == 0).await;
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn reset_all_reaches_held_connections() {
    bounded(async {
        let server = TcpEchoServer::start().await.unwrap();
        let proxy = FaultProxy::start(server.addr()).await.unwrap();
        proxy.blackhole(true);
        let mut held = connect(proxy.addr()).await;
        no_answer(&mut held).await;
        proxy.reset_all();
        let mut buf = [0u8; 8];
        let err = held.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset, "{err}");
        assert_eq!(proxy.connections(), 0);
    })
    .await;
}
