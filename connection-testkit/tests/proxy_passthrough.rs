//! Without faults, `FaultProxy` forwards both ways, passes on half-closes, counts, and
//! resets clients when the upstream is down.

mod support;

use connection_testkit::{FaultProxy, ProxyStats, TcpEchoServer};
use support::{assert_closed, bounded, connect, drain, echo, payload, wait_until};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn forwards_both_ways_and_counts_bytes() {
    bounded(async {
        let server = TcpEchoServer::start().await.unwrap();
        let proxy = FaultProxy::start(server.addr()).await.unwrap();
        assert!(proxy.addr().ip().is_loopback());
        assert_eq!(proxy.upstream(), server.addr());

        let data = payload(1024 * 1024);
        let mut client = connect(proxy.addr()).await;
        assert!(
            echo(&mut client, &data).await.unwrap() == data,
            "echo through the proxy differs"
        );
        assert_eq!(proxy.connections(), 1);
        assert_eq!(server.connections(), 1);
        let stats = proxy.stats();
        assert_eq!(
            (
                stats.accepted,
                stats.bytes_to_upstream,
                stats.bytes_to_client,
                stats.bytes_dropped
            ),
            (1, data.len() as u64, data.len() as u64, 0)
        );
    })
    .await;
}

#[tokio::test]
async fn serves_connections_independently_and_forgets_closed_ones() {
    bounded(async {
        let server = TcpEchoServer::start().await.unwrap();
        let proxy = FaultProxy::start(server.addr()).await.unwrap();
        let mut clients = Vec::new();
        for i in 0..3u8 {
            let mut client = connect(proxy.addr()).await;
            assert_eq!(echo(&mut client, &[i; 10]).await.unwrap(), [i; 10]);
            clients.push(client);
        }
        assert_eq!(proxy.connections(), 3);
        assert_eq!(server.connections(), 3);
        // Closing one leaves the others working.
        drop(clients.remove(0));
        wait_until("proxy forgot the closed connection", || {
            proxy.connections() == 2
        })
        .await;
        wait_until("upstream saw the close", || server.connections() == 2).await;
        for client in &mut clients {
            assert_eq!(echo(client, b"still here").await.unwrap(), b"still here");
        }
        drop(clients);
        wait_until("no connection left", || {
            proxy.connections() == 0 && server.connections() == 0
        })
        .await;
    })
    .await;
}

#[tokio::test]
async fn passes_a_half_close_on() {
    bounded(async {
        let server = TcpEchoServer::start().await.unwrap();
        let proxy = FaultProxy::start(server.addr()).await.unwrap();
        let mut client = connect(proxy.addr()).await;
        client.write_all(b"last words").await.unwrap();
        client.shutdown().await.unwrap();
        // The echo server only closes after seeing our end of stream.
        let (back, error) = drain(&mut client).await;
        assert!(error.is_none(), "{error:?}");
        assert_eq!(back, b"last words");
        wait_until("connection closed", || proxy.connections() == 0).await;
        assert_eq!(proxy.stats().reset, 0);
    })
    .await;
}

#[tokio::test]
async fn resets_the_client_when_the_upstream_is_down() {
    bounded(async {
        let mut server = TcpEchoServer::start().await.unwrap();
        let proxy = FaultProxy::start(server.addr()).await.unwrap();
        server.stop().await;
        let mut client = connect(proxy.addr()).await;
        let mut buf = [0u8; 8];
        let read = client.read(&mut buf).await;
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
        wait_until("connection gone", || proxy.connections() == 0).await;

        server.restart().await.unwrap();
        let mut client = connect(proxy.addr()).await;
        assert_eq!(echo(&mut client, b"up again").await.unwrap(), b"up again");
        check_counts(proxy.stats());
    })
    .await;
}

fn check_counts(stats: ProxyStats) {
    assert_eq!(stats.accepted, 2);
    assert_eq!(stats.refused, 0);
}

#[tokio::test]
async fn upstream_closing_closes_the_client() {
    bounded(async {
        let mut server = TcpEchoServer::start().await.unwrap();
        let proxy = FaultProxy::start(server.addr()).await.unwrap();
        let mut client = connect(proxy.addr()).await;
        assert_eq!(echo(&mut client, b"hi").await.unwrap(), b"hi");
        server.stop().await;
        assert_closed(&mut client).await;
        // Like TCP itself, the proxy keeps our direction open until we close it too.
        assert_eq!(proxy.connections(), 1);
        drop(client);
        wait_until("connection gone", || proxy.connections() == 0).await;
    })
    .await;
}
