//! `TcpEchoServer` echoes, counts its connections, and `LoopbackServer` runs any handler.

mod support;

use std::io;
use std::net::SocketAddr;

use connection_testkit::{LoopbackServer, TcpEchoServer};
use support::{bounded, connect, drain, echo, payload, wait_until};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

#[tokio::test]
async fn echoes_every_byte_and_counts_connections() {
    bounded(async {
        let server = TcpEchoServer::start().await.unwrap();
        assert!(server.addr().ip().is_loopback());
        assert_eq!(server.port(), server.addr().port());
        assert!(server.is_running());
        assert_eq!((server.connections(), server.accepted()), (0, 0));

        let data = payload(256 * 1024);
        let mut a = connect(server.addr()).await;
        let mut b = connect(server.addr()).await;
        let (back_a, back_b) = tokio::join!(echo(&mut a, &data), echo(&mut b, b"short"));
        assert!(back_a.unwrap() == data, "echoed bytes differ");
        assert_eq!(back_b.unwrap(), b"short");
        assert_eq!((server.connections(), server.accepted()), (2, 2));

        drop(a);
        wait_until("one connection left", || server.connections() == 1).await;
        drop(b);
        wait_until("no connection left", || server.connections() == 0).await;
        assert_eq!(server.accepted(), 2);
    })
    .await;
}

#[tokio::test]
async fn finishes_echoing_then_closes_after_the_client_shuts_down() {
    bounded(async {
        let server = TcpEchoServer::start().await.unwrap();
        let mut client = connect(server.addr()).await;
        let data = payload(100_000);
        let (mut reader, mut writer) = client.split();
        let send = async {
            writer.write_all(&data).await?;
            writer.shutdown().await
        };
        let (sent, (back, error)) = tokio::join!(send, async { drain_half(&mut reader).await });
        sent.unwrap();
        assert!(error.is_none(), "{error:?}");
        assert!(back == data, "echo differs: {} bytes back", back.len());
    })
    .await;
}

async fn drain_half(reader: &mut tokio::net::tcp::ReadHalf<'_>) -> (Vec<u8>, Option<io::Error>) {
    use tokio::io::AsyncReadExt;
    let mut data = Vec::new();
    match reader.read_to_end(&mut data).await {
        Ok(_) => (data, None),
        Err(e) => (data, Some(e)),
    }
}

#[tokio::test]
async fn handler_gets_the_stream_and_the_peer_address() {
    bounded(async {
        let server = LoopbackServer::start(|mut stream: TcpStream, peer: SocketAddr| async move {
            let _ = stream.write_all(peer.to_string().as_bytes()).await;
        })
        .await
        .unwrap();
        let mut client = connect(server.addr()).await;
        let (said, error) = drain(&mut client).await;
        assert!(error.is_none(), "{error:?}");
        assert_eq!(
            String::from_utf8(said).unwrap(),
            client.local_addr().unwrap().to_string()
        );
        // The handler returned, so the connection is no longer counted.
        wait_until("handler finished", || server.connections() == 0).await;
        assert_eq!(server.accepted(), 1);
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn silent_server_reads_but_never_answers() {
    bounded(async {
        let server = LoopbackServer::silent().await.unwrap();
        let mut client = connect(server.addr()).await;
        client.write_all(&payload(64 * 1024)).await.unwrap();
        let mut buf = [0u8; 16];
        let answer = tokio::time::timeout(std::time::Duration::from_secs(5), async {
            use tokio::io::AsyncReadExt;
            client.read(&mut buf).await
        })
        .await;
        assert!(answer.is_err(), "the silent server answered: {answer:?}");
        assert_eq!(server.connections(), 1);
        // Closing the client ends the handler.
        drop(client);
        wait_until("silent handler finished", || server.connections() == 0).await;
    })
    .await;
}

#[tokio::test]
async fn refuses_to_listen_beyond_loopback() {
    for addr in ["0.0.0.0:0", "192.0.2.1:0"] {
        let err = LoopbackServer::start_on(addr.parse().unwrap(), |_stream, _peer| async {})
            .await
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{addr}: {err}");
    }
    let server = TcpEchoServer::start_on("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    assert_ne!(server.port(), 0);
}
