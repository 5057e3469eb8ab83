//! Helpers shared by the testkit's own tests.
#![allow(dead_code, unreachable_pub)]

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use connection_testkit::LoopbackServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Bound on every test (tokio time; on paused time it fires as soon as nothing else can
/// make progress, which is exactly a hang).
pub const LIMIT: Duration = Duration::from_secs(30);

/// Runs `test` and fails if it takes longer than [`LIMIT`].
pub async fn bounded<T>(test: impl Future<Output = T>) -> T {
    tokio::time::timeout(LIMIT, test)
        .await
        .expect("test exceeded its time bound")
}

/// Writes `payload` while reading as many bytes back; returns what came back.
pub async fn echo(stream: &mut TcpStream, payload: &[u8]) -> io::Result<Vec<u8>> {
    let (mut reader, mut writer) = stream.split();
    let mut back = vec![0; payload.len()];
    tokio::try_join!(writer.write_all(payload), reader.read_exact(&mut back))?;
    Ok(back)
}

/// Reads until end of stream or an error; returns the bytes read and the error, if any.
pub async fn drain(stream: &mut TcpStream) -> (Vec<u8>, Option<io::Error>) {
    let mut data = Vec::new();
    let mut buf = vec![0; 16 * 1024];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) => return (data, None),
            Ok(n) => data.extend_from_slice(&buf[..n]),
            Err(e) => return (data, Some(e)),
        }
    }
}

/// Asserts that the peer closed or reset `stream` (with nothing more to read).
pub async fn assert_closed(stream: &mut TcpStream) {
    let mut buf = [0u8; 64];
    match stream.read(&mut buf).await {
        Ok(0) | Err(_) => {}
        Ok(n) => panic!("expected the connection to be closed, read {n} bytes"),
    }
}

/// Polls `cond` every few milliseconds of tokio time until it holds, for conditions
/// only another task can see (a count of open sockets) that have no notification.
pub async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    tokio::time::timeout(LIMIT, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("never happened: {what}"));
}

/// `len` bytes of a fixed, non-repeating-looking pattern.
pub fn payload(len: usize) -> Vec<u8> {
    let mut x: u32 = 0x1234_5678;
    (0..len)
        .map(|_| {
            x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (x >> 24) as u8
        })
        .collect()
}

/// A server that sends `len` bytes of [`payload`] to every client, then closes.
pub async fn firehose(len: usize) -> LoopbackServer {
    LoopbackServer::start(move |mut stream: TcpStream, _peer: SocketAddr| async move {
        let _ = stream.write_all(&payload(len)).await;
        let _ = stream.shutdown().await;
    })
    .await
    .expect("start the firehose server")
}

/// Connects with `TCP_NODELAY`. On paused tokio time this matters: with Nagle's
/// algorithm a small write can wait in the kernel for a delayed ACK (tens of
/// milliseconds of real time), and meanwhile tokio, seeing nothing to do, jumps the
/// clock to the next timer, which may be a test's timeout.
pub async fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).await.expect("connect");
    stream.set_nodelay(true).expect("set TCP_NODELAY");
    stream
}
