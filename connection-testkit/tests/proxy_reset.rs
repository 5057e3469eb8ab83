//! `reset_all` resets every open connection on both sides; new ones work.

mod support;

use std::io;

use connection_testkit::{FaultProxy, TcpEchoServer};
use support::{bounded, connect, echo, wait_until};
use tokio::io::AsyncReadExt;

#[tokio::test]
async fn resets_every_open_connection_on_both_sides() {
    bounded(async {
        let server = TcpEchoServer::start().await.unwrap();
        let proxy = FaultProxy::start(server.addr()).await.unwrap();
        let mut clients = Vec::new();
        for _ in 0..2 {
            let mut client = connect(proxy.addr()).await;
            assert_eq!(echo(&mut client, b"hi").await.unwrap(), b"hi");
            clients.push(client);
        }
        assert_eq!(server.connections(), 2);

        proxy.reset_all();
        for client in &mut clients {
            let mut buf = [0u8; 8];
            let err = client.read(&mut buf).await.unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::ConnectionReset, "{err}");
        }
        wait_until("upstream connections reset", || server.connections() == 0).await;
        assert_eq!(proxy.connections(), 0);
        assert_eq!(proxy.stats().reset, 2);

        // Only the connections open at the time were reset.
        let mut client = connect(proxy.addr()).await;
        assert_eq!(echo(&mut client, b"fresh").await.unwrap(), b"fresh");
    })
    .await;
}
