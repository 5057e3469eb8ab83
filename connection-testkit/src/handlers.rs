//! Ready-made connection handlers for [`LoopbackServer`](crate::LoopbackServer).
//!
//! Each is an `async fn(TcpStream, SocketAddr)`, so it can be passed to
//! [`LoopbackServer::start`](crate::LoopbackServer::start) directly, or awaited at the
//! end of a handler of your own (greet first, then echo):
//!
//! ```
//! use connection_testkit::{LoopbackServer, handlers};
//! use tokio::io::AsyncWriteExt;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> std::io::Result<()> {
//! let server = LoopbackServer::start(|mut stream, peer| async move {
//!     if stream.write_all(b"OK\n").await.is_ok() {
//!         handlers::echo(stream, peer).await;
//!     }
//! })
//! .await?;
//! # drop(server); Ok(()) }
//! ```

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tracing::debug;

/// Size of the read buffer of [`silent`].
const READ_BUFFER: usize = 16 * 1024;

/// Echoes every byte back until the peer shuts down its write side, then shuts down
/// the write side too. Ends on the first error.
pub async fn echo(mut stream: TcpStream, peer: SocketAddr) {
    // Echoes of small messages should not wait for a delayed ACK.
    let _ = stream.set_nodelay(true);
    let (mut reader, mut writer) = stream.split();
    match tokio::io::copy(&mut reader, &mut writer).await {
        Ok(bytes) => {
            let _ = writer.shutdown().await;
            debug!(%peer, bytes, "echo: peer finished");
        }
        Err(error) => debug!(%peer, %error, "echo: connection failed"),
    }
}

/// Answers every read with as many `?` bytes: a server whose socket works but whose
/// answers are wrong, so an echo client sees a protocol error on a live connection.
pub async fn garble(mut stream: TcpStream, peer: SocketAddr) {
    let _ = stream.set_nodelay(true);
    let mut buf = vec![0; READ_BUFFER];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) => return,
            Ok(n) => {
                if let Err(error) = stream.write_all(&vec![b'?'; n]).await {
                    debug!(%peer, %error, "garble: connection failed");
                    return;
                }
            }
            Err(error) => {
                debug!(%peer, %error, "garble: connection failed");
                return;
            }
        }
    }
}

/// Reads and discards everything and never writes, until the peer closes or fails:
/// a server that is up but never answers.
pub async fn silent(mut stream: TcpStream, peer: SocketAddr) {
    let mut buf = vec![0; READ_BUFFER];
    let mut total = 0u64;
    loop {
        match stream.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => total += n as u64,
            Err(error) => {
                debug!(%peer, %error, "silent: connection failed");
                return;
            }
        }
    }
    debug!(%peer, bytes = total, "silent: peer finished");
}
