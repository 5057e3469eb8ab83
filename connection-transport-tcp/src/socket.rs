//! [`Socket`]: a TCP stream, plain or inside TLS, as one type, so framing, the client and
//! the listener are written once for both.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// A connected socket: plain TCP, or TLS over TCP (client or server side).
///
/// Every variant is `Unpin`; reads and writes go straight to the inner stream.
#[derive(Debug)]
#[non_exhaustive]
pub enum Socket {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS, we are the client.
    #[cfg(feature = "tls")]
    ClientTls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
    /// TLS, we are the server.
    #[cfg(feature = "tls")]
    ServerTls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl Socket {
    /// The TCP stream underneath.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Self::Plain(s) => s,
            #[cfg(feature = "tls")]
            Self::ClientTls(s) => s.get_ref().0,
            #[cfg(feature = "tls")]
            Self::ServerTls(s) => s.get_ref().0,
        }
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.tcp().peer_addr()
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.tcp().local_addr()
    }

    /// Whether the socket is inside TLS.
    pub fn is_tls(&self) -> bool {
        !matches!(self, Self::Plain(_))
    }
}

macro_rules! each {
    ($self:ident, $s:ident => $e:expr) => {
        match $self.get_mut() {
            Socket::Plain($s) => {
                let $s = Pin::new($s);
                $e
            }
            #[cfg(feature = "tls")]
            Socket::ClientTls($s) => {
                let $s = Pin::new(&mut **$s);
                $e
            }
            #[cfg(feature = "tls")]
            Socket::ServerTls($s) => {
                let $s = Pin::new(&mut **$s);
                $e
            }
        }
    };
}

impl AsyncRead for Socket {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        each!(self, s => s.poll_read(cx, buf))
    }
}

impl AsyncWrite for Socket {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        each!(self, s => s.poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        each!(self, s => s.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Plain(s) => s.is_write_vectored(),
            #[cfg(feature = "tls")]
            Self::ClientTls(s) => s.is_write_vectored(),
            #[cfg(feature = "tls")]
            Self::ServerTls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each!(self, s => s.poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each!(self, s => s.poll_shutdown(cx))
    }
}
