//! [`TcpTransport`]: opens framed TCP or TLS connections to one host:port.

use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use connection_core::{ConfigError, Endpoint, Error, Operation, Transport};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio::net::TcpStream;
use tokio_util::codec::Decoder;

use crate::codec::Framing;
use crate::config::TcpConfig;
use crate::connection::{Parts, Ping, TcpConnection, spawn};
use crate::error::TcpError;
use crate::socket::Socket;

#[cfg(feature = "tls")]
#[derive(Clone)]
struct Tls {
    config: Arc<rustls::ClientConfig>,
    server_name: rustls::pki_types::ServerName<'static>,
}

/// Opens framed connections to one `host:port`, plain or TLS, with the codec `C`;
/// frames of type `F` are sent (by default the codec's own `Item` type).
///
/// - Every resolved address is tried, IPv6 and IPv4 interleaved, a new attempt started
///   every [`happy_eyeballs_delay`](TcpConfig::happy_eyeballs_delay) while earlier ones
///   are still pending (RFC 8305); the first to connect wins.
/// - `TCP_NODELAY` and keepalive are set as [`TcpConfig`] says; resolving, connecting
///   and the TLS handshake together are bounded by its connect timeout.
/// - A `tls://` endpoint (or [`TcpTransportBuilder::tls`]) is TLS: rustls with the ring
///   provider, webpki roots unless you give yours, the endpoint's host as server name
///   unless you name another.
///
/// Its connections' I/O handle is a [`TcpIo`](crate::TcpIo): a framed sender and the
/// stream of received frames, which a supervisor, a manager, a failover group or a pool
/// hands to the application like every transport's.
///
/// ```no_run
/// use bytes::Bytes;
/// use connection_core::{Supervisor, Transport};
/// use connection_transport_tcp::{LengthDelimited, TcpTransport};
/// use std::time::Duration;
///
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let transport = TcpTransport::new("tcp://127.0.0.1:7000".parse()?, LengthDelimited::new())?;
///
/// // Alone:
/// let conn = transport.connect().await?;
/// conn.send(Bytes::from_static(b"hello")).await?;
/// let reply = conn.recv().await;
///
/// // Or supervised: reconnects with backoff, and the link always reaches the current
/// // connection's handle.
/// let supervised = Supervisor::new(transport).spawn()?;
/// let io = supervised.link().ready(Duration::from_secs(5)).await?;
/// io.send(Bytes::from_static(b"hello")).await?;
/// # drop((reply, io)); Ok(()) }
/// ```
pub struct TcpTransport<C: Decoder, F = <C as Decoder>::Item> {
    endpoint: Endpoint,
    codec: C,
    config: Arc<TcpConfig>,
    #[cfg(feature = "tls")]
    tls: Option<Tls>,
    ping: Option<Ping<F, C::Item>>,
    _frame: PhantomData<fn(F)>,
}

impl<C: Decoder + Clone, F> Clone for TcpTransport<C, F> {
    fn clone(&self) -> Self {
        Self {
            endpoint: self.endpoint.clone(),
            codec: self.codec.clone(),
            config: self.config.clone(),
            #[cfg(feature = "tls")]
            tls: self.tls.clone(),
            ping: self.ping.clone(),
            _frame: PhantomData,
        }
    }
}

impl<C: Decoder, F> fmt::Debug for TcpTransport<C, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("TcpTransport");
        d.field("endpoint", &self.endpoint)
            .field("config", &self.config);
        #[cfg(feature = "tls")]
        d.field(
            "tls_server_name",
            &self
                .tls
                .as_ref()
                .map(|t| t.server_name.to_str().into_owned()),
        );
        d.field("ping", &self.ping.is_some()).finish()
    }
}

impl<C: Framing<F>, F: Send + 'static> TcpTransport<C, F> {
    /// A transport with the default [`TcpConfig`]; TLS with webpki roots when the
    /// endpoint is `tls://`. Fails when a `tls://` endpoint is given without the `tls`
    /// feature.
    pub fn new(endpoint: Endpoint, codec: C) -> Result<Self, ConfigError> {
        Self::builder(endpoint, codec).build()
    }

    /// A builder for everything else: config, TLS roots and client certificate, server
    /// name, application-level ping.
    pub fn builder(endpoint: Endpoint, codec: C) -> TcpTransportBuilder<C, F> {
        TcpTransportBuilder {
            endpoint,
            codec,
            config: TcpConfig::default(),
            #[cfg(feature = "tls")]
            tls: None,
            #[cfg(feature = "tls")]
            server_name: None,
            ping: None,
            _frame: PhantomData,
        }
    }

    /// The settings.
    pub fn config(&self) -> &TcpConfig {
        &self.config
    }

    /// Whether connections are TLS.
    pub fn is_tls(&self) -> bool {
        #[cfg(feature = "tls")]
        return self.tls.is_some();
        #[cfg(not(feature = "tls"))]
        false
    }

    async fn open(&self) -> Result<TcpConnection<C, F>, TcpError> {
        let stream = connect_tcp(&self.endpoint, &self.config).await?;
        let socket = self.wrap(stream).await?;
        Ok(spawn(
            socket,
            self.codec.clone(),
            Parts {
                endpoint: self.endpoint.clone(),
                send_buffer: self.config.send_buffer(),
                recv_buffer: self.config.recv_buffer(),
                close_timeout: self.config.close_timeout(),
                ping: self.ping.clone(),
            },
        ))
    }

    #[cfg(feature = "tls")]
    async fn wrap(&self, stream: TcpStream) -> Result<Socket, TcpError> {
        let Some(tls) = &self.tls else {
            return Ok(Socket::Plain(stream));
        };
        let connector = tokio_rustls::TlsConnector::from(tls.config.clone());
        match connector.connect(tls.server_name.clone(), stream).await {
            Ok(s) => Ok(Socket::ClientTls(Box::new(s))),
            Err(e) => Err(tls_error(&self.endpoint, e)),
        }
    }

    #[cfg(not(feature = "tls"))]
    async fn wrap(&self, stream: TcpStream) -> Result<Socket, TcpError> {
        Ok(Socket::Plain(stream))
    }
}

/// A handshake error: rustls' own (a certificate that does not verify, an alert) is
/// `Tls` and final; a socket error during the handshake is `Io`.
#[cfg(feature = "tls")]
fn tls_error(endpoint: &Endpoint, e: io::Error) -> TcpError {
    let is_rustls = e
        .get_ref()
        .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some());
    if is_rustls || e.kind() == io::ErrorKind::InvalidData {
        TcpError::Tls {
            endpoint: endpoint.clone(),
            source: connection_core::shared(e),
        }
    } else {
        TcpError::Io {
            endpoint: endpoint.clone(),
            source: Arc::new(e),
        }
    }
}

impl<C: Framing<F>, F: Send + 'static> Transport for TcpTransport<C, F>
where
    C::Item: Send + Sync,
{
    type Connection = TcpConnection<C, F>;

    async fn connect(&self) -> Result<TcpConnection<C, F>, Error> {
        let limit = self.config.connect_timeout();
        match tokio::time::timeout(limit, self.open()).await {
            Ok(r) => r.map_err(Error::from),
            Err(_) => Err(Error::timeout(&self.endpoint, Operation::Connect, limit)),
        }
    }

    fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }
}

/// Resolves the endpoint and connects to its addresses, happy-eyeballs style.
async fn connect_tcp(endpoint: &Endpoint, config: &TcpConfig) -> Result<TcpStream, TcpError> {
    let resolve_error = |source: io::Error| TcpError::Resolve {
        endpoint: endpoint.clone(),
        source: Arc::new(source),
    };
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((endpoint.host(), endpoint.port()))
        .await
        .map_err(resolve_error)?
        .collect();
    if addrs.is_empty() {
        return Err(resolve_error(io::Error::new(
            io::ErrorKind::NotFound,
            "the name resolved to no address",
        )));
    }
    let stream = race(interleave(addrs), config.happy_eyeballs_delay())
        .await
        .map_err(|source| TcpError::Connect {
            endpoint: endpoint.clone(),
            source: Arc::new(source),
        })?;
    configure(&stream, config).map_err(|source| TcpError::Connect {
        endpoint: endpoint.clone(),
        source: Arc::new(source),
    })?;
    Ok(stream)
}

/// IPv6 and IPv4 addresses alternated, first family first (RFC 8305 section 4).
fn interleave(addrs: Vec<SocketAddr>) -> Vec<SocketAddr> {
    let first_v6 = addrs.first().is_some_and(SocketAddr::is_ipv6);
    let (a, b): (Vec<_>, Vec<_>) = addrs.into_iter().partition(|x| x.is_ipv6() == first_v6);
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut a, mut b) = (a.into_iter(), b.into_iter());
    loop {
        match (a.next(), b.next()) {
            (None, None) => return out,
            (x, y) => out.extend(x.into_iter().chain(y)),
        }
    }
}

/// Connects to the addresses in order, starting the next one `delay` after the previous
/// (or at once when it fails), keeping earlier attempts running; the first success
/// wins and the others are dropped. Fails with the last error when all fail.
async fn race(addrs: Vec<SocketAddr>, delay: Duration) -> io::Result<TcpStream> {
    let mut next = addrs.into_iter();
    let mut attempts = FuturesUnordered::new();
    let mut last_error = None;
    let timer = tokio::time::sleep(delay);
    tokio::pin!(timer);
    loop {
        if attempts.is_empty() {
            match next.next() {
                Some(a) => {
                    attempts.push(TcpStream::connect(a));
                    timer.as_mut().reset(connection_core::time::deadline(
                        tokio::time::Instant::now(),
                        delay,
                    ));
                }
                None => {
                    return Err(last_error.unwrap_or_else(|| {
                        io::Error::new(io::ErrorKind::NotFound, "no address to connect to")
                    }));
                }
            }
        }
        tokio::select! {
            Some(result) = attempts.next() => match result {
                Ok(stream) => return Ok(stream),
                Err(e) => last_error = Some(e),
            },
            () = &mut timer, if next.len() > 0 => {
                if let Some(a) = next.next() {
                    attempts.push(TcpStream::connect(a));
                }
                timer.as_mut().reset(connection_core::time::deadline(tokio::time::Instant::now(), delay));
            }
        }
    }
}

fn configure(stream: &TcpStream, config: &TcpConfig) -> io::Result<()> {
    stream.set_nodelay(config.nodelay())?;
    if let Some(idle) = config.keepalive() {
        let keepalive = socket2::TcpKeepalive::new().with_time(idle);
        socket2::SockRef::from(stream).set_tcp_keepalive(&keepalive)?;
    }
    Ok(())
}

/// Builds a [`TcpTransport`]. Made by [`TcpTransport::builder`].
#[must_use]
pub struct TcpTransportBuilder<C: Decoder, F = <C as Decoder>::Item> {
    endpoint: Endpoint,
    codec: C,
    config: TcpConfig,
    #[cfg(feature = "tls")]
    tls: Option<connection_tls::TlsSource>,
    #[cfg(feature = "tls")]
    server_name: Option<String>,
    ping: Option<Ping<F, C::Item>>,
    _frame: PhantomData<fn(F)>,
}

impl<C: Decoder, F> fmt::Debug for TcpTransportBuilder<C, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpTransportBuilder")
            .field("endpoint", &self.endpoint)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl<C: Framing<F>, F: Send + 'static> TcpTransportBuilder<C, F> {
    /// Socket and buffer settings.
    pub fn config(mut self, config: TcpConfig) -> Self {
        self.config = config;
        self
    }

    /// An application-level ping for [`probe`](connection_core::Connection::probe): the
    /// frame to send and a predicate that recognises the reply (which is then not handed
    /// to the application). Without one, a probe only checks that the connection is up.
    ///
    /// ```
    /// # use connection_transport_tcp::{Lines, TcpTransport};
    /// # fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// let transport = TcpTransport::builder("127.0.0.1:6379".parse()?, Lines::default())
    ///     .ping(|| "PING".to_string(), |reply: &String| reply == "+PONG")
    ///     .build()?;
    /// # drop(transport); Ok(()) }
    /// ```
    pub fn ping(
        mut self,
        request: impl Fn() -> F + Send + Sync + 'static,
        is_reply: impl Fn(&C::Item) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.ping = Some(Ping::new(request, is_reply));
        self
    }

    /// TLS with these settings (roots, client certificate, or a finished rustls
    /// config), whatever the endpoint's scheme.
    #[cfg(feature = "tls")]
    pub fn tls(mut self, tls: connection_tls::TlsSource) -> Self {
        self.tls = Some(tls);
        self
    }

    /// The name the server's certificate must carry, and sent as SNI (default: the
    /// endpoint's host). Turns TLS on.
    #[cfg(feature = "tls")]
    pub fn server_name(mut self, name: impl Into<String>) -> Self {
        self.server_name = Some(name.into());
        self.tls.get_or_insert_with(Default::default);
        self
    }

    /// Trusts `root` (DER) instead of the webpki roots (call again to add more). Turns
    /// TLS on.
    #[cfg(feature = "tls")]
    pub fn add_root(
        mut self,
        root: rustls::pki_types::CertificateDer<'static>,
    ) -> Result<Self, ConfigError> {
        self.tls
            .get_or_insert_with(Default::default)
            .add_root(root)?;
        Ok(self)
    }

    /// The transport, or the setting that is wrong.
    pub fn build(self) -> Result<TcpTransport<C, F>, ConfigError> {
        let config = self.config.validate()?;
        #[cfg(feature = "tls")]
        let tls = match (self.tls, self.endpoint.tls()) {
            (None, false) => None,
            (source, _) => {
                let config = source.unwrap_or_default().client_config()?;
                let name = self
                    .server_name
                    .unwrap_or_else(|| self.endpoint.host().to_owned());
                let server_name = rustls::pki_types::ServerName::try_from(name)
                    .map_err(|e| ConfigError::new("server_name", e.to_string()))?;
                Some(Tls {
                    config,
                    server_name,
                })
            }
        };
        #[cfg(not(feature = "tls"))]
        if self.endpoint.tls() {
            return Err(ConfigError::new(
                "tls",
                "a tls:// endpoint needs the `tls` feature of connection-transport-tcp",
            ));
        }
        Ok(TcpTransport {
            endpoint: self.endpoint,
            codec: self.codec,
            config: Arc::new(config),
            #[cfg(feature = "tls")]
            tls,
            ping: self.ping,
            _frame: PhantomData,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_alternate_starting_with_the_first() {
        let a: Vec<SocketAddr> = ["[::1]:1", "[::2]:1", "127.0.0.1:1", "127.0.0.2:1"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let got: Vec<String> = interleave(a).iter().map(ToString::to_string).collect();
        assert_eq!(got, ["[::1]:1", "127.0.0.1:1", "[::2]:1", "127.0.0.2:1"]);
    }
}
