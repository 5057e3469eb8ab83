//! `slice_writes` forwards data in small separate writes; it arrives intact.

mod support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use connection_testkit::{FaultProxy, LoopbackServer, TcpEchoServer};
use support::{bounded, connect, echo, payload};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test]
async fn data_arrives_intact() {
    bounded(async {
        let server = TcpEchoServer::start().await.unwrap();
        let proxy = FaultProxy::start(server.addr()).await.unwrap();
        proxy.slice_writes(Some(3));
        let mut client = connect(proxy.addr()).await;
        let data = payload(64 * 1024);
        assert!(
            echo(&mut client, &data).await.unwrap() == data,
            "sliced data differs"
        );
        assert_eq!(proxy.stats().bytes_to_client, data.len() as u64);
    })
    .await;
}

#[tokio::test]
async fn the_receiver_sees_the_pieces() {
    bounded(async {
        // Records the size of every read, then echoes what it read.
        let reads = Arc::new(Mutex::new(Vec::new()));
        let recorded = Arc::clone(&reads);
        let server = LoopbackServer::start(move |mut stream: TcpStream, _peer: SocketAddr| {
            let reads = Arc::clone(&recorded);
            async move {
                let mut buf = [0u8; 4096];
                loop {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            reads.lock().unwrap().push(n);
                            if stream.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            }
        })
        .await
        .unwrap();
        let proxy = FaultProxy::start(server.addr()).await.unwrap();
        proxy.slice_writes(Some(7));
        let mut client = connect(proxy.addr()).await;
        let data = payload(1000);
        // One write: without slicing the server would read it in one go.
        assert!(echo(&mut client, &data).await.unwrap() == data);
        let reads = reads.lock().unwrap().clone();
        assert_eq!(reads.iter().sum::<usize>(), 1000);
        let largest = reads.iter().copied().max().unwrap_or(0);
        assert!(
            largest <= 7 * 4,
            "reads of up to {largest} bytes with writes of 7: {reads:?}"
        );
        assert!(
            reads.len() >= 1000 / (7 * 4),
            "only {} reads: {reads:?}",
            reads.len()
        );
    })
    .await;
}
