//! TLS for `wss://`: the shared rustls configuration of `connection-tls` (ring provider,
//! webpki roots by default, built once per process), and the handshake over a TCP stream.

use std::io;
use std::sync::Arc;

pub(crate) use connection_tls::TlsSource;
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// Runs the TLS handshake over `tcp`, verifying the certificate for `host`.
pub(crate) async fn connect(
    config: &Arc<ClientConfig>,
    host: &str,
    tcp: TcpStream,
) -> io::Result<TlsStream<TcpStream>> {
    let name = ServerName::try_from(host.to_owned())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    TlsConnector::from(config.clone()).connect(name, tcp).await
}
