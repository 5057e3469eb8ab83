//! `refuse_new` resets new connections at once and leaves open ones alone.

mod support;

use connection_testkit::{FaultProxy, TcpEchoServer};
use support::{bounded, connect, echo};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

#[tokio::test]
async fn resets_new_connections_but_not_open_ones() {
    bounded(async {
        let server = TcpEchoServer::start().await.unwrap();
        let proxy = FaultProxy::start(server.addr()).await.unwrap();
        let mut open = connect(proxy.addr()).await;
        assert_eq!(echo(&mut open, b"before").await.unwrap(), b"before");

        proxy.refuse_new(true);
        for _ in 0..3 {
            // The handshake completes (the proxy accepts), then the proxy resets.
            if let Ok(mut refused) = TcpStream::connect(proxy.addr()).await {
                let mut buf = [0u8; 8];
                let read = refused.read(&mut buf).await;
                assert!(
                    matches!(read, Ok(0) | Err(_)),
                    "a refused connection read {read:?}"
                );
            }
        }
        assert_eq!(proxy.stats().refused, 3);
        assert_eq!(
            server.accepted(),
            1,
            "refused connections must not reach the upstream"
        );
        assert_eq!(echo(&mut open, b"still open").await.unwrap(), b"still open");

        proxy.refuse_new(false);
        let mut client = connect(proxy.addr()).await;
        assert_eq!(echo(&mut client, b"welcome").await.unwrap(), b"welcome");
        assert_eq!(server.accepted(), 2);
    })
    .await;
}

#[tokio::test]
async fn a_refused_connection_fails_with_a_reset() {
    bounded(async {
        let server = TcpEchoServer::start().await.unwrap();
        let proxy = FaultProxy::start(server.addr()).await.unwrap();
        proxy.refuse_new(true);
        let mut refused = connect(proxy.addr()).await;
        let mut buf = [0u8; 8];
        let err = refused.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset, "{err}");
    })
    .await;
}
