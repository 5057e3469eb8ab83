//! [`WsTransport`]: opens one WebSocket connection per `connect()`, never retrying.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use connection_core::Operation;
use connection_core::metrics::ConnectionMetrics;
use connection_core::{BoxError, ConfigError, Endpoint, Error, Transport};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::client::Request;
use tokio_tungstenite::tungstenite::http::HeaderValue;

use crate::config::WsConfig;
use crate::connection::{
    ByteBudget, Hook, IoParts, Outbox, Session, WsConnection, WsSender, spawn_io,
};
use crate::error::WsError;
use crate::stream::MaybeTls;

/// The queues of one client, shared by every connection it makes: they outlive
/// connections by design (messages wait in order through a reconnect), so they cannot
/// come from the data plane, which is per connection. Traffic is recorded through
/// [`Connection::bind_traffic`](connection_core::Connection::bind_traffic) like any
/// transport's.
#[derive(Clone)]
pub(crate) struct Wiring {
    pub(crate) outbox: Arc<Outbox>,
    pub(crate) inbound: mpsc::Sender<Message>,
    pub(crate) inbound_bytes: Arc<ByteBudget>,
    pub(crate) sender: WsSender,
}

/// Opens WebSocket connections to one endpoint: TCP, then TLS for `wss://`, then the
/// WebSocket handshake (with the configured headers and subprotocols), then the
/// `on_connect` hook, all bounded by the connect timeout. One attempt per
/// [`connect`](Transport::connect); the [`WsClient`](crate::WsClient) (through
/// [`connection_core::Supervisor`]) adds reconnects.
///
/// A connection opened directly (not by a client) has its own queue and inbound
/// channel: use [`WsConnection::send`] and [`WsConnection::recv`].
///
/// ```no_run
/// use connection_core::{Connection, Transport};
/// use connection_transport_ws::{WsConfig, WsTransport};
///
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let transport = WsTransport::new(WsConfig::builder("ws://127.0.0.1:9000/echo").build()?);
/// let mut conn = transport.connect().await?;
/// conn.send_text("hello").await?;
/// let echo = conn.recv().await;
/// let rtt = conn.probe().await?;
/// conn.close().await?;
/// # let _ = (echo, rtt); Ok(()) }
/// ```
pub struct WsTransport {
    config: WsConfig,
    hook: Option<Hook>,
    wiring: Option<Wiring>,
}

impl fmt::Debug for WsTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WsTransport")
            .field("config", &self.config)
            .field("on_connect", &self.hook.is_some())
            .finish_non_exhaustive()
    }
}

impl WsTransport {
    /// A transport for `config`.
    pub fn new(config: WsConfig) -> Self {
        Self {
            config,
            hook: None,
            wiring: None,
        }
    }

    /// Runs `hook` after every handshake, before the connection is handed out (and, in a
    /// client, before queued messages are written). An error fails the connect attempt.
    #[must_use]
    pub fn on_connect<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn(Session) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), BoxError>> + Send + 'static,
    {
        self.hook = Some(crate::connection::hook(hook));
        self
    }

    pub(crate) fn with_hook(mut self, hook: Option<Hook>) -> Self {
        self.hook = hook;
        self
    }

    pub(crate) fn wired(mut self, wiring: Wiring) -> Self {
        self.wiring = Some(wiring);
        self
    }

    /// The configuration.
    pub fn config(&self) -> &WsConfig {
        &self.config
    }

    /// Opens one connection, with this crate's error type.
    pub async fn open(&self) -> Result<WsConnection, WsError> {
        let limit = self.config.s.connect_timeout;
        match tokio::time::timeout(limit, self.open_inner()).await {
            Ok(result) => result,
            Err(_) => Err(WsError::Timeout {
                endpoint: self.config.endpoint.clone(),
                operation: Operation::Connect,
                after: limit,
            }),
        }
    }

    async fn open_inner(&self) -> Result<WsConnection, WsError> {
        let config = &self.config;
        let endpoint = &config.endpoint;
        let tcp = TcpStream::connect(endpoint.authority())
            .await
            .map_err(|source| WsError::Connect {
                endpoint: endpoint.clone(),
                source,
            })?;
        // Small messages must not wait for Nagle: latency is the point of a WebSocket.
        let _ = tcp.set_nodelay(true);
        let stream = self.secure(tcp).await?;
        let request = self.request()?;
        let (ws, response) = tokio_tungstenite::client_async_with_config(
            request,
            stream,
            Some(config.websocket_config()),
        )
        .await
        .map_err(|e| WsError::from_handshake(endpoint, e))?;
        let subprotocol: Option<Arc<str>> = response
            .headers()
            .get("sec-websocket-protocol")
            .and_then(|v| v.to_str().ok())
            .map(Arc::from);
        tracing::debug!(%endpoint, ?subprotocol, "websocket handshake done");

        // Until a supervisor binds the connection's traffic (right after this returns),
        // what the on_connect hook sends is counted here, then carried over.
        let metrics = Arc::new(ConnectionMetrics::new());
        let ws = match &self.hook {
            Some(hook) => {
                let session =
                    Session::new(ws, endpoint.clone(), subprotocol.clone(), metrics.clone());
                hook(session.clone())
                    .await
                    .map_err(|source| WsError::Hook {
                        endpoint: endpoint.clone(),
                        source,
                    })?;
                session.finish().await.ok_or_else(|| WsError::Closed {
                    endpoint: endpoint.clone(),
                })?
            }
            None => ws,
        };

        let (outbox, inbound, inbound_bytes, sender, own_inbound, sender_ended) = match &self.wiring
        {
            Some(w) => (
                w.outbox.clone(),
                w.inbound.clone(),
                w.inbound_bytes.clone(),
                w.sender.clone(),
                None,
                None,
            ),
            None => {
                let (tx, outbox) = Outbox::new(config.s.queue_capacity);
                let (in_tx, in_rx) = mpsc::channel(config.s.inbound_buffer);
                let ended = Arc::new(AtomicBool::new(false));
                let sender = WsSender::new(
                    tx,
                    outbox.clone(),
                    endpoint.clone(),
                    config.s.when_full,
                    config.s.queue_capacity,
                    Arc::new(AtomicBool::new(false)),
                    Some(ended.clone()),
                    Arc::default(),
                );
                (
                    outbox,
                    in_tx,
                    ByteBudget::new(config.s.inbound_buffer_bytes),
                    sender,
                    Some(in_rx),
                    Some(ended),
                )
            }
        };
        if self.wiring.is_none() {
            // A client's supervisor keeps uptime itself.
            metrics.mark_connected();
        }
        Ok(spawn_io(
            ws,
            IoParts {
                endpoint: endpoint.clone(),
                metrics,
                sender_ended,
                outbox,
                inbound,
                inbound_bytes,
                close_codes: config.s.close_codes.clone(),
                close_timeout: config.s.close_timeout,
                subprotocol,
                sender,
                own_inbound,
            },
        ))
    }

    async fn secure(&self, tcp: TcpStream) -> Result<MaybeTls, WsError> {
        let endpoint = &self.config.endpoint;
        if !endpoint.tls() {
            return Ok(MaybeTls::Plain(tcp));
        }
        #[cfg(feature = "tls")]
        {
            let tls = self.config.tls.as_ref().ok_or_else(|| {
                WsError::from(ConfigError::new("tls", "no TLS configuration was built"))
            })?;
            let stream = crate::tls::connect(tls, endpoint.host(), tcp)
                .await
                .map_err(|e| WsError::from_io(endpoint.clone(), e))?;
            Ok(MaybeTls::Tls(Box::new(stream)))
        }
        #[cfg(not(feature = "tls"))]
        {
            drop(tcp);
            Err(ConfigError::new(
                "url",
                "wss:// needs the `tls` feature of connection-transport-ws",
            )
            .into())
        }
    }

    /// The upgrade request: URL without credentials, extra headers, subprotocols.
    fn request(&self) -> Result<Request, WsError> {
        let config = &self.config;
        let mut url = config
            .endpoint
            .url()
            .cloned()
            .ok_or_else(|| ConfigError::new("url", "the endpoint has no URL"))?;
        // Credentials in the URL become HTTP Basic auth (unless an Authorization header
        // was given); they never travel in the request line.
        let basic = (!url.username().is_empty()).then(|| {
            let decode = |s: &str| {
                percent_encoding::percent_decode_str(s)
                    .decode_utf8_lossy()
                    .into_owned()
            };
            let user = decode(url.username());
            let password = url.password().map(decode).unwrap_or_default();
            format!("Basic {}", base64(format!("{user}:{password}").as_bytes()))
        });
        let _ = url.set_username("");
        let _ = url.set_password(None);
        let mut request = url
            .as_str()
            .into_client_request()
            .map_err(|e| ConfigError::new("url", format!("not a valid request URI: {e}")))?;
        let headers = request.headers_mut();
        for (name, value) in &config.s.headers {
            headers.append(name.clone(), value.clone());
        }
        if let Some(basic) = basic {
            if !headers.contains_key("authorization") {
                let mut value = HeaderValue::try_from(basic).map_err(|_| {
                    ConfigError::new("url", "credentials are not valid in a header")
                })?;
                value.set_sensitive(true);
                headers.insert("authorization", value);
            }
        }
        if !config.s.subprotocols.is_empty() {
            let value = HeaderValue::try_from(config.s.subprotocols.join(", "))
                .map_err(|_| ConfigError::new("subprotocols", "not a valid header value"))?;
            headers.insert("sec-websocket-protocol", value);
        }
        Ok(request)
    }
}

impl Transport for WsTransport {
    type Connection = WsConnection;

    async fn connect(&self) -> Result<WsConnection, Error> {
        self.open().await.map_err(Error::from)
    }

    fn endpoint(&self) -> &Endpoint {
        &self.config.endpoint
    }
}

/// Standard base64 with padding (RFC 4648), for Basic auth: too small a need for a
/// dependency.
fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18u32, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> shift) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::base64;

    #[test]
    fn base64_matches_rfc4648() {
        for (input, expected) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
            ("user:p@ss", "dXNlcjpwQHNz"),
        ] {
            assert_eq!(base64(input.as_bytes()), expected, "{input}");
        }
    }
}
