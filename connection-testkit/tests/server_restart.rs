//! `stop` refuses new connections and closes open ones; `restart` listens on the same
//! port again; dropping a server stops it.

mod support;

use std::io;

use connection_testkit::{LoopbackServer, TcpEchoServer};
use support::{assert_closed, bounded, connect, echo};
use tokio::net::TcpStream;

#[tokio::test]
async fn stop_refuses_new_connections_and_closes_open_ones() {
    bounded(async {
        let mut server = TcpEchoServer::start().await.unwrap();
        let mut client = connect(server.addr()).await;
        assert_eq!(echo(&mut client, b"before").await.unwrap(), b"before");
        assert_eq!(server.connections(), 1);

        server.stop().await;
        assert!(!server.is_running());
        // `stop` waits for the connection tasks, so the count is already down.
        assert_eq!(server.connections(), 0);
        assert_closed(&mut client).await;
        let refused = TcpStream::connect(server.addr()).await.unwrap_err();
        assert_eq!(
            refused.kind(),
            io::ErrorKind::ConnectionRefused,
            "{refused}"
        );

        // Idempotent.
        server.stop().await;
        assert!(!server.is_running());
    })
    .await;
}

#[tokio::test]
async fn restart_listens_on_the_same_port_again() {
    bounded(async {
        let mut server = TcpEchoServer::start().await.unwrap();
        let addr = server.addr();
        let mut client = connect(addr).await;
        assert_eq!(echo(&mut client, b"one").await.unwrap(), b"one");

        server.stop().await;
        assert_closed(&mut client).await;
        server.restart().await.unwrap();
        assert!(server.is_running());
        assert_eq!(server.addr(), addr);

        let mut client = connect(addr).await;
        assert_eq!(echo(&mut client, b"two").await.unwrap(), b"two");
        assert_eq!(server.accepted(), 2, "accepted counts across restarts");
        assert_eq!(server.connections(), 1);

        // Restarting a running server changes nothing.
        server.restart().await.unwrap();
        assert_eq!(echo(&mut client, b"three").await.unwrap(), b"three");
    })
    .await;
}

#[tokio::test]
async fn restarts_repeatedly_although_closed_connections_linger_in_time_wait() {
    bounded(async {
        let mut server = TcpEchoServer::start().await.unwrap();
        let addr = server.addr();
        for round in 0..5u8 {
            let mut client = connect(addr).await;
            assert_eq!(
                echo(&mut client, &[round; 100]).await.unwrap(),
                [round; 100]
            );
            // The server closes first, so its side of the connection enters TIME_WAIT.
            server.stop().await;
            assert_closed(&mut client).await;
            server
                .restart()
                .await
                .unwrap_or_else(|e| panic!("round {round}: {e}"));
        }
        assert_eq!(server.accepted(), 5);
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn restart_gives_up_while_another_socket_holds_the_port() {
    bounded(async {
        let mut server = TcpEchoServer::start().await.unwrap();
        let addr = server.addr();
        server.stop().await;

        let squatter = tokio::net::TcpListener::bind(addr).await.unwrap();
        let err = server.restart().await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{err}");
        assert!(!server.is_running());

        drop(squatter);
        server.restart().await.unwrap();
        let mut client = connect(addr).await;
        assert_eq!(echo(&mut client, b"back").await.unwrap(), b"back");
    })
    .await;
}

#[tokio::test]
async fn dropping_the_server_closes_its_connections() {
    bounded(async {
        let server = LoopbackServer::silent().await.unwrap();
        let mut client = connect(server.addr()).await;
        drop(server);
        assert_closed(&mut client).await;
    })
    .await;
}
