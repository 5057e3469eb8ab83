//! Dropping the proxy closes its listener and every connection through it.

mod support;

use std::io;

use connection_testkit::{FaultProxy, TcpEchoServer};
use support::{assert_closed, bounded, connect, echo, wait_until};
use tokio::net::TcpStream;

#[tokio::test]
async fn dropping_the_proxy_closes_every_connection() {
    bounded(async {
        let server = TcpEchoServer::start().await.unwrap();
        let proxy = FaultProxy::start(server.addr()).await.unwrap();
        let addr = proxy.addr();
        let mut clients = Vec::new();
        for _ in 0..3 {
            let mut client = connect(addr).await;
            assert_eq!(echo(&mut client, b"hi").await.unwrap(), b"hi");
            clients.push(client);
        }
        assert_eq!(server.connections(), 3);

        drop(proxy);
        for client in &mut clients {
            assert_closed(client).await;
        }
        wait_until("upstream connections closed", || server.connections() == 0).await;
        // The listener went with the connections.
        let refused = TcpStream::connect(addr).await.unwrap_err();
        assert_eq!(
            refused.kind(),
            io::ErrorKind::ConnectionRefused,
            "{refused}"
        );
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn dropping_the_proxy_ends_held_and_delayed_connections_too() {
    bounded(async {
        let server = TcpEchoServer::start().await.unwrap();
        let proxy = FaultProxy::start(server.addr()).await.unwrap();
        proxy.set_latency(
            std::time::Duration::from_secs(3600),
            std::time::Duration::ZERO,
        );
        let mut delayed = connect(proxy.addr()).await;
        tokio::io::AsyncWriteExt::write_all(&mut delayed, b"later")
            .await
            .unwrap();
        proxy.blackhole(true);
        let mut held = connect(proxy.addr()).await;
        wait_until("both connections accepted", || proxy.connections() == 2).await;

        drop(proxy);
        assert_closed(&mut delayed).await;
        assert_closed(&mut held).await;
    })
    .await;
}
