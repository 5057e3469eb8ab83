//! [`WsConfig`]: everything one WebSocket connection needs, validated once.
//!
//! Defaults are chosen for many long-lived, mostly idle clients: tungstenite's read buffer
//! starts at 8 KiB instead of 128 KiB (it grows to fit a large message and the kernel
//! buffers the rest), so an idle connected client costs well under 64 KiB.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use connection_core::{
    ConfigError, Endpoint, require_at_most_max, require_in_range, require_nonzero,
};
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::error::WsError;

/// Default bound on TCP connect + TLS + WebSocket handshake + `on_connect` hook.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default time between two heartbeat pings.
pub const DEFAULT_PING_INTERVAL: Duration = Duration::from_secs(30);
/// Default time to wait for the pong before declaring the connection dead.
pub const DEFAULT_PONG_TIMEOUT: Duration = Duration::from_secs(10);
/// Default capacity of the outbound queue, in messages.
pub const DEFAULT_QUEUE_CAPACITY: usize = 1024;
/// Default number of received messages buffered for a slow consumer.
pub const DEFAULT_INBOUND_BUFFER: usize = 256;
/// Default bound, in bytes, on received messages buffered for a slow consumer: 16 MiB.
/// Without it, 256 messages of the 64 MiB maximum would be 16 GiB.
pub const DEFAULT_INBOUND_BUFFER_BYTES: usize = 16 * 1024 * 1024;
/// Default bound on the close handshake.
pub const DEFAULT_CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// Default initial read buffer (tungstenite's default is 128 KiB).
pub const DEFAULT_READ_BUFFER: usize = 8 * 1024;
/// Default write buffer target: frames are written to the socket once this much is
/// buffered, and on every flush. tungstenite's default; it costs an idle connection
/// nothing (the buffer grows only with traffic), while a smaller one made 16 KiB messages
/// take ~10 % more CPU each than raw tokio-tungstenite (`cargo xtask bench ws`).
pub const DEFAULT_WRITE_BUFFER: usize = 128 * 1024;
/// Default largest accepted message (tungstenite's default).
pub const DEFAULT_MAX_MESSAGE: usize = 64 << 20;
/// Default largest accepted frame (tungstenite's default).
pub const DEFAULT_MAX_FRAME: usize = 16 << 20;
/// The largest outbound queue or inbound buffer, in messages.
pub const MAX_QUEUE_CAPACITY: usize = 1 << 20;
/// The largest read or write buffer, in bytes.
pub const MAX_BUFFER_SIZE: usize = 64 << 20;
/// The largest message or frame limit, in bytes.
pub const MAX_MESSAGE_LIMIT: usize = 1 << 30;

/// What [`send`](crate::WsClient::send) does when the outbound queue is full.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WhenFull {
    /// Fail at once with [`WsError::QueueFull`] (the default): the caller decides.
    #[default]
    Error,
    /// Wait until the queue has room (backpressure to the caller).
    Wait,
}

/// Which close codes from the server end the client instead of reconnecting.
///
/// Default: 1000 (normal closure) and 1008 (policy violation) end it; everything else,
/// including 1001, 1006, 1011, 1012, 1013 and codes this crate does not know, reconnects.
///
/// ```
/// use connection_transport_ws::CloseCodePolicy;
///
/// let p = CloseCodePolicy::default();
/// assert!(!p.reconnects(1000) && !p.reconnects(1008));
/// assert!(p.reconnects(1001) && p.reconnects(1012) && p.reconnects(4000));
///
/// let p = p.stop_on(4001).reconnect_on(1000);
/// assert!(p.reconnects(1000) && !p.reconnects(4001));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloseCodePolicy {
    stop: Vec<u16>,
}

impl Default for CloseCodePolicy {
    fn default() -> Self {
        Self {
            stop: vec![1000, 1008],
        }
    }
}

impl CloseCodePolicy {
    /// A policy that reconnects on every close code.
    pub fn always_reconnect() -> Self {
        Self { stop: Vec::new() }
    }

    /// Ends the client when the server closes with `code`.
    #[must_use]
    pub fn stop_on(mut self, code: u16) -> Self {
        if !self.stop.contains(&code) {
            self.stop.push(code);
        }
        self
    }

    /// Reconnects when the server closes with `code`.
    #[must_use]
    pub fn reconnect_on(mut self, code: u16) -> Self {
        self.stop.retain(|c| *c != code);
        self
    }

    /// Whether a close with `code` is followed by a reconnect.
    pub fn reconnects(&self, code: u16) -> bool {
        !self.stop.contains(&code)
    }
}

/// The plain settings, held once by both [`WsConfig`] and its builder, so the list of
/// fields is written in one place.
#[derive(Clone)]
pub(crate) struct Settings {
    pub(crate) headers: Vec<(HeaderName, HeaderValue)>,
    pub(crate) subprotocols: Vec<String>,
    pub(crate) max_message_size: Option<usize>,
    pub(crate) max_frame_size: Option<usize>,
    pub(crate) read_buffer_size: usize,
    pub(crate) write_buffer_size: usize,
    pub(crate) connect_timeout: Duration,
    pub(crate) heartbeat: Option<(Duration, Duration)>,
    pub(crate) queue_capacity: usize,
    pub(crate) when_full: WhenFull,
    pub(crate) inbound_buffer: usize,
    pub(crate) inbound_buffer_bytes: usize,
    pub(crate) close_codes: CloseCodePolicy,
    pub(crate) close_timeout: Duration,
}

/// A validated WebSocket client configuration. Cheap to clone (TLS settings are shared).
///
/// ```
/// use connection_transport_ws::{WsConfig, WhenFull};
/// use std::time::Duration;
///
/// let config = WsConfig::builder("wss://api.example.com/feed")
///     .bearer_auth("secret-token")
///     .subprotocol("v2.json")
///     .ping_interval(Duration::from_secs(15))
///     .queue_capacity(256)
///     .when_full(WhenFull::Wait)
///     .build()?;
/// assert_eq!(config.endpoint().port(), 443);
/// // Header values never appear in Debug output.
/// assert!(!format!("{config:?}").contains("secret-token"));
///
/// let err = WsConfig::builder("http://example.com").build().unwrap_err();
/// assert!(err.to_string().contains("url"));
/// # Ok::<(), connection_transport_ws::WsError>(())
/// ```
#[derive(Clone)]
pub struct WsConfig {
    pub(crate) endpoint: Endpoint,
    pub(crate) s: Settings,
    #[cfg(feature = "tls")]
    pub(crate) tls: Option<Arc<rustls::ClientConfig>>,
    /// Kept so `to_builder` can rebuild the TLS settings unchanged.
    #[cfg(feature = "tls")]
    tls_source: crate::tls::TlsSource,
}

impl WsConfig {
    /// A builder for `url` (`ws://` or `wss://`); the URL is checked in
    /// [`build`](WsConfigBuilder::build).
    pub fn builder(url: impl Into<String>) -> WsConfigBuilder {
        WsConfigBuilder::new(Target::Url(url.into()))
    }

    /// A builder for `host:port` without a URL; set [`path`](WsConfigBuilder::path) and
    /// [`tls`](WsConfigBuilder::tls) as needed (defaults `/` and plain `ws://`).
    pub fn builder_host_port(host: impl Into<String>, port: u16) -> WsConfigBuilder {
        WsConfigBuilder::new(Target::HostPort(host.into(), port))
    }

    /// A builder holding these settings, to change a few.
    pub fn to_builder(&self) -> WsConfigBuilder {
        WsConfigBuilder {
            target: Target::Endpoint(self.endpoint.clone()),
            path: None,
            tls_on: None,
            error: None,
            s: self.s.clone(),
            #[cfg(feature = "tls")]
            tls: self.tls_source.clone(),
        }
    }

    /// Where to connect (credentials in the URL are redacted when displayed).
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// The subprotocols offered in `Sec-WebSocket-Protocol`, in preference order.
    pub fn subprotocols(&self) -> &[String] {
        &self.s.subprotocols
    }

    /// Names of the extra handshake headers (values are secret and not exposed).
    pub fn header_names(&self) -> impl Iterator<Item = &str> {
        self.s.headers.iter().map(|(n, _)| n.as_str())
    }

    /// Bound on one connect attempt (TCP, TLS, WebSocket handshake and `on_connect`).
    pub fn connect_timeout(&self) -> Duration {
        self.s.connect_timeout
    }

    /// Heartbeat ping interval and pong timeout, if the heartbeat is on.
    pub fn heartbeat(&self) -> Option<(Duration, Duration)> {
        self.s.heartbeat
    }

    /// Outbound queue capacity in messages.
    pub fn queue_capacity(&self) -> usize {
        self.s.queue_capacity
    }

    /// What a send does on a full queue.
    pub fn when_full(&self) -> WhenFull {
        self.s.when_full
    }

    /// Received messages buffered for the application before reading stops.
    pub fn inbound_buffer(&self) -> usize {
        self.s.inbound_buffer
    }

    /// Bytes of received messages buffered for a slow consumer, at most.
    pub fn inbound_buffer_bytes(&self) -> usize {
        self.s.inbound_buffer_bytes
    }

    /// Which close codes end the client.
    pub fn close_codes(&self) -> &CloseCodePolicy {
        &self.s.close_codes
    }

    /// Bound on the close handshake.
    pub fn close_timeout(&self) -> Duration {
        self.s.close_timeout
    }

    /// Largest message accepted from the server.
    pub fn max_message_size(&self) -> Option<usize> {
        self.s.max_message_size
    }

    /// Largest frame accepted from the server.
    pub fn max_frame_size(&self) -> Option<usize> {
        self.s.max_frame_size
    }

    pub(crate) fn websocket_config(&self) -> WebSocketConfig {
        WebSocketConfig::default()
            .read_buffer_size(self.s.read_buffer_size)
            .write_buffer_size(self.s.write_buffer_size)
            .max_message_size(self.s.max_message_size)
            .max_frame_size(self.s.max_frame_size)
    }
}

impl fmt::Debug for WsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WsConfig")
            .field("endpoint", &self.endpoint)
            .field("headers", &RedactedHeaders(&self.s.headers))
            .field("subprotocols", &self.s.subprotocols)
            .field("max_message_size", &self.s.max_message_size)
            .field("max_frame_size", &self.s.max_frame_size)
            .field("read_buffer_size", &self.s.read_buffer_size)
            .field("connect_timeout", &self.s.connect_timeout)
            .field("heartbeat", &self.s.heartbeat)
            .field("queue_capacity", &self.s.queue_capacity)
            .field("when_full", &self.s.when_full)
            .field("inbound_buffer", &self.s.inbound_buffer)
            .field("inbound_buffer_bytes", &self.s.inbound_buffer_bytes)
            .field("close_codes", &self.s.close_codes)
            .field("close_timeout", &self.s.close_timeout)
            .finish_non_exhaustive()
    }
}

/// Prints header names with every value replaced by `***`: handshake headers carry
/// tokens.
pub(crate) struct RedactedHeaders<'a>(pub(crate) &'a [(HeaderName, HeaderValue)]);

impl fmt::Debug for RedactedHeaders<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|(n, _)| (n.as_str(), "***")))
            .finish()
    }
}

#[derive(Clone, Debug)]
enum Target {
    Url(String),
    HostPort(String, u16),
    Endpoint(Endpoint),
}

/// Builds a [`WsConfig`]. Setters never fail; [`build`](Self::build) validates and names
/// the first bad field.
#[must_use = "a builder does nothing until built"]
pub struct WsConfigBuilder {
    target: Target,
    path: Option<String>,
    tls_on: Option<bool>,
    error: Option<ConfigError>,
    s: Settings,
    #[cfg(feature = "tls")]
    tls: crate::tls::TlsSource,
}

impl fmt::Debug for WsConfigBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let target = match &self.target {
            Target::Url(_) => "url",
            Target::HostPort(..) => "host_port",
            Target::Endpoint(_) => "endpoint",
        };
        f.debug_struct("WsConfigBuilder")
            .field("target", &target)
            .field("headers", &RedactedHeaders(&self.s.headers))
            .finish_non_exhaustive()
    }
}

impl WsConfigBuilder {
    fn new(target: Target) -> Self {
        Self {
            target,
            path: None,
            tls_on: None,
            error: None,
            s: Settings {
                headers: Vec::new(),
                subprotocols: Vec::new(),
                max_message_size: Some(DEFAULT_MAX_MESSAGE),
                max_frame_size: Some(DEFAULT_MAX_FRAME),
                read_buffer_size: DEFAULT_READ_BUFFER,
                write_buffer_size: DEFAULT_WRITE_BUFFER,
                connect_timeout: DEFAULT_CONNECT_TIMEOUT,
                heartbeat: Some((DEFAULT_PING_INTERVAL, DEFAULT_PONG_TIMEOUT)),
                queue_capacity: DEFAULT_QUEUE_CAPACITY,
                when_full: WhenFull::Error,
                inbound_buffer: DEFAULT_INBOUND_BUFFER,
                inbound_buffer_bytes: DEFAULT_INBOUND_BUFFER_BYTES,
                close_codes: CloseCodePolicy::default(),
                close_timeout: DEFAULT_CLOSE_TIMEOUT,
            },
            #[cfg(feature = "tls")]
            tls: crate::tls::TlsSource::default(),
        }
    }

    fn fail(&mut self, e: ConfigError) {
        if self.error.is_none() {
            self.error = Some(e);
        }
    }

    /// The request path (with optional query), replacing the URL's; e.g. `/feed?v=2`.
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.path = Some(path.into());
        self
    }

    /// Use TLS (`wss`) or not (`ws`), replacing what the URL's scheme said.
    pub fn tls(mut self, on: bool) -> Self {
        self.tls_on = Some(on);
        self
    }

    /// Adds a handshake header (e.g. `Authorization`, a cookie, an API key). Values are
    /// secrets: they never appear in `Debug`, logs or events.
    pub fn header(mut self, name: impl AsRef<str>, value: impl AsRef<str>) -> Self {
        let name = match HeaderName::try_from(name.as_ref()) {
            Ok(n) => n,
            Err(_) => {
                self.fail(ConfigError::new("headers", "invalid header name"));
                return self;
            }
        };
        match HeaderValue::try_from(value.as_ref()) {
            Ok(mut v) => {
                v.set_sensitive(true);
                self.s.headers.push((name, v));
            }
            Err(_) => self.fail(ConfigError::new(
                "headers",
                format!("invalid value for header `{name}`"),
            )),
        }
        self
    }

    /// `Authorization: Bearer <token>`.
    pub fn bearer_auth(self, token: impl AsRef<str>) -> Self {
        let value = format!("Bearer {}", token.as_ref());
        self.header("authorization", value)
    }

    /// Offers a subprotocol in `Sec-WebSocket-Protocol` (call again for more, in
    /// preference order). The server's choice is checked against the offer.
    pub fn subprotocol(mut self, protocol: impl Into<String>) -> Self {
        self.s.subprotocols.push(protocol.into());
        self
    }

    /// Largest message accepted from the server (`None`: no limit; default 64 MiB).
    pub fn max_message_size(mut self, max: Option<usize>) -> Self {
        self.s.max_message_size = max;
        self
    }

    /// Largest frame accepted from the server (`None`: no limit; default 16 MiB).
    pub fn max_frame_size(mut self, max: Option<usize>) -> Self {
        self.s.max_frame_size = max;
        self
    }

    /// Initial read buffer per connection (default 8 KiB; grows for large messages).
    pub fn read_buffer_size(mut self, bytes: usize) -> Self {
        self.s.read_buffer_size = bytes;
        self
    }

    /// Bytes buffered before frames are written to the socket between flushes
    /// (default [`DEFAULT_WRITE_BUFFER`], 128 KiB; it grows only with traffic, so an idle
    /// client does not hold it); every batch is flushed anyway.
    pub fn write_buffer_size(mut self, bytes: usize) -> Self {
        self.s.write_buffer_size = bytes;
        self
    }

    /// Bound on one connect attempt, `on_connect` included (default 10 s).
    pub fn connect_timeout(mut self, limit: Duration) -> Self {
        self.s.connect_timeout = limit;
        self
    }

    /// Time between heartbeat pings (default 30 s).
    pub fn ping_interval(mut self, interval: Duration) -> Self {
        let timeout = self.s.heartbeat.map_or(DEFAULT_PONG_TIMEOUT, |(_, t)| t);
        self.s.heartbeat = Some((interval, timeout));
        self
    }

    /// How long to wait for a pong before the connection is declared dead and
    /// reconnected (default 10 s).
    pub fn pong_timeout(mut self, timeout: Duration) -> Self {
        let interval = self.s.heartbeat.map_or(DEFAULT_PING_INTERVAL, |(i, _)| i);
        self.s.heartbeat = Some((interval, timeout));
        self
    }

    /// Turns the heartbeat off (server pings are still answered).
    pub fn no_heartbeat(mut self) -> Self {
        self.s.heartbeat = None;
        self
    }

    /// Outbound queue capacity in messages (default 1024).
    pub fn queue_capacity(mut self, capacity: usize) -> Self {
        self.s.queue_capacity = capacity;
        self
    }

    /// What a send does when the queue is full (default: fail at once).
    pub fn when_full(mut self, policy: WhenFull) -> Self {
        self.s.when_full = policy;
        self
    }

    /// Received messages buffered for a slow consumer before the client stops reading
    /// the socket (default 256). See also
    /// [`inbound_buffer_bytes`](Self::inbound_buffer_bytes): whichever fills first stops
    /// the reader.
    pub fn inbound_buffer(mut self, messages: usize) -> Self {
        self.s.inbound_buffer = messages;
        self
    }

    /// Bytes of received messages buffered for a slow consumer before the client stops
    /// reading the socket (default 16 MiB, [`DEFAULT_INBOUND_BUFFER_BYTES`]; at most
    /// 4 GiB). One message larger than the whole bound is still delivered, alone. With a
    /// paused consumer a client holds at most this plus one message, whatever the server
    /// sends.
    pub fn inbound_buffer_bytes(mut self, bytes: usize) -> Self {
        self.s.inbound_buffer_bytes = bytes;
        self
    }

    /// Which server close codes end the client (default: 1000 and 1008).
    pub fn close_codes(mut self, policy: CloseCodePolicy) -> Self {
        self.s.close_codes = policy;
        self
    }

    /// Bound on the close handshake (default 5 s).
    pub fn close_timeout(mut self, limit: Duration) -> Self {
        self.s.close_timeout = limit;
        self
    }

    /// Trust only these roots (instead of the webpki roots) for `wss://`.
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub fn root_certificates(mut self, roots: rustls::RootCertStore) -> Self {
        self.tls.roots = Some(roots);
        self
    }

    /// Adds one trusted root (DER) to the custom root store (starting an empty one,
    /// without the webpki roots, on first use).
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub fn add_root_certificate(
        mut self,
        cert: rustls::pki_types::CertificateDer<'static>,
    ) -> Self {
        if let Err(e) = self.tls.add_root(cert) {
            self.fail(e);
        }
        self
    }

    /// Presents this client certificate chain and key (mutual TLS).
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub fn client_certificate(
        mut self,
        chain: Vec<rustls::pki_types::CertificateDer<'static>>,
        key: rustls::pki_types::PrivateKeyDer<'static>,
    ) -> Self {
        self.tls.client_auth = Some(Arc::new((chain, key)));
        self
    }

    /// Uses this rustls configuration as is (overrides the root and client certificate
    /// settings). It should be built on the ring provider, like the rest of the
    /// workspace.
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub fn tls_config(mut self, config: Arc<rustls::ClientConfig>) -> Self {
        self.tls.config = Some(config);
        self
    }

    /// Validates and builds. Errors name the field: `url`, `path`, `headers`,
    /// `subprotocols`, `connect_timeout`, `ping_interval`, `pong_timeout`,
    /// `queue_capacity`, `inbound_buffer`, `close_timeout`, `read_buffer_size`,
    /// `max_message_size`, `client_certificate`, `tls`.
    pub fn build(self) -> Result<WsConfig, WsError> {
        if let Some(e) = self.error {
            return Err(e.into());
        }
        let endpoint = self.endpoint()?;
        for p in &self.s.subprotocols {
            if p.is_empty() || p.contains(|c: char| c == ',' || c.is_whitespace() || c.is_control())
            {
                return Err(ConfigError::new(
                    "subprotocols",
                    format!("`{p}` is not a valid subprotocol token"),
                )
                .into());
            }
        }
        require_nonzero("connect_timeout", self.s.connect_timeout)?;
        require_nonzero("close_timeout", self.s.close_timeout)?;
        if let Some((interval, timeout)) = self.s.heartbeat {
            require_nonzero("ping_interval", interval)?;
            require_nonzero("pong_timeout", timeout)?;
        }
        require_at_most_max("connect_timeout", self.s.connect_timeout)?;
        require_in_range(
            "queue_capacity",
            self.s.queue_capacity,
            1..=MAX_QUEUE_CAPACITY,
        )?;
        require_in_range(
            "inbound_buffer",
            self.s.inbound_buffer,
            1..=MAX_QUEUE_CAPACITY,
        )?;
        if self.s.inbound_buffer_bytes == 0 || self.s.inbound_buffer_bytes > u32::MAX as usize {
            return Err(ConfigError::new(
                "inbound_buffer_bytes",
                "must be between 1 and 4294967295 bytes",
            )
            .into());
        }
        require_in_range(
            "read_buffer_size",
            self.s.read_buffer_size,
            1..=MAX_BUFFER_SIZE,
        )?;
        require_in_range(
            "write_buffer_size",
            self.s.write_buffer_size,
            1..=MAX_BUFFER_SIZE,
        )?;
        if let Some(message) = self.s.max_message_size {
            require_in_range("max_message_size", message, 1..=MAX_MESSAGE_LIMIT)?;
        }
        if let Some(frame) = self.s.max_frame_size {
            require_in_range("max_frame_size", frame, 1..=MAX_MESSAGE_LIMIT)?;
        }
        #[cfg(feature = "tls")]
        let tls = if endpoint.tls() {
            Some(self.tls.client_config()?)
        } else {
            None
        };
        #[cfg(not(feature = "tls"))]
        if endpoint.tls() {
            return Err(ConfigError::new(
                "url",
                "wss:// needs the `tls` feature of connection-transport-ws",
            )
            .into());
        }
        Ok(WsConfig {
            endpoint,
            s: self.s,
            #[cfg(feature = "tls")]
            tls,
            #[cfg(feature = "tls")]
            tls_source: self.tls,
        })
    }

    fn endpoint(&self) -> Result<Endpoint, WsError> {
        let mut url = match &self.target {
            Target::Url(s) => url::Url::parse(s.trim())
                .map_err(|e| ConfigError::new("url", format!("not a URL: {e}")))?,
            Target::HostPort(host, port) => {
                let ep = Endpoint::host_port(host, *port)?;
                url::Url::parse(&format!("ws://{}/", ep.authority()))
                    .map_err(|e| ConfigError::new("url", format!("bad host: {e}")))?
            }
            Target::Endpoint(ep) => match ep.url() {
                Some(u) => u.clone(),
                None => return Ok(ep.clone()),
            },
        };
        if !matches!(url.scheme(), "ws" | "wss") {
            return Err(ConfigError::new(
                "url",
                format!("scheme must be ws or wss, not `{}`", url.scheme()),
            )
            .into());
        }
        if let Some(on) = self.tls_on {
            let default_port = url.port_or_known_default();
            let scheme = if on { "wss" } else { "ws" };
            url.set_scheme(scheme)
                .map_err(|()| ConfigError::new("tls", "cannot change the scheme"))?;
            // Keep an explicit port; a defaulted one follows the new scheme.
            if url.port().is_none() && default_port != url.port_or_known_default() {
                let _ = url.set_port(None);
            }
        }
        if let Some(path) = &self.path {
            if !path.starts_with('/') {
                return Err(ConfigError::new("path", "must start with `/`").into());
            }
            let (p, q) = path
                .split_once('?')
                .map_or((path.as_str(), None), |(p, q)| (p, Some(q)));
            url.set_path(p);
            url.set_query(q);
        }
        url.set_fragment(None);
        let name = match &self.target {
            Target::Endpoint(ep) => ep.name().map(Arc::<str>::from),
            _ => None,
        };
        let ep = Endpoint::from_url(url)?;
        Ok(match name {
            Some(n) => ep.with_name(n),
            None => ep,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_validation() {
        let c = WsConfig::builder("ws://127.0.0.1:9000/a").build().unwrap();
        assert_eq!(
            c.heartbeat(),
            Some((DEFAULT_PING_INTERVAL, DEFAULT_PONG_TIMEOUT))
        );
        assert_eq!(c.queue_capacity(), DEFAULT_QUEUE_CAPACITY);
        let field = |b: WsConfigBuilder| match b.build().unwrap_err() {
            WsError::Config(c) => c.field(),
            other => panic!("{other}"),
        };
        assert_eq!(field(WsConfig::builder("http://x")), "url");
        assert_eq!(field(WsConfig::builder("not a url")), "url");
        assert_eq!(
            field(WsConfig::builder("ws://x").queue_capacity(0)),
            "queue_capacity"
        );
        assert_eq!(
            field(WsConfig::builder("ws://x").inbound_buffer(0)),
            "inbound_buffer"
        );
        assert_eq!(
            field(WsConfig::builder("ws://x").ping_interval(Duration::ZERO)),
            "ping_interval"
        );
        assert_eq!(
            field(WsConfig::builder("ws://x").pong_timeout(Duration::ZERO)),
            "pong_timeout"
        );
        assert_eq!(
            field(WsConfig::builder("ws://x").connect_timeout(Duration::ZERO)),
            "connect_timeout"
        );
        assert_eq!(
            field(WsConfig::builder("ws://x").header("bad name", "v")),
            "headers"
        );
        assert_eq!(
            field(WsConfig::builder("ws://x").header("x-a", "bad\nvalue")),
            "headers"
        );
        assert_eq!(
            field(WsConfig::builder("ws://x").subprotocol("a b")),
            "subprotocols"
        );
        assert_eq!(field(WsConfig::builder("ws://x").path("nope")), "path");
    }

    #[test]
    fn host_port_path_tls() {
        let c = WsConfig::builder_host_port("127.0.0.1", 8080)
            .path("/feed?v=2")
            .build()
            .unwrap();
        assert_eq!(
            c.endpoint().url().unwrap().as_str(),
            "ws://127.0.0.1:8080/feed?v=2"
        );
        #[cfg(feature = "tls")]
        {
            let c = WsConfig::builder("ws://example.com/x")
                .tls(true)
                .build()
                .unwrap();
            assert_eq!(c.endpoint().url().unwrap().as_str(), "wss://example.com/x");
            assert_eq!(c.endpoint().port(), 443);
            assert!(c.endpoint().tls());
        }
        let again = c.to_builder().queue_capacity(3).build().unwrap();
        assert_eq!(again.endpoint(), c.endpoint());
        assert_eq!(again.queue_capacity(), 3);
    }

    #[test]
    fn headers_are_redacted() {
        let c = WsConfig::builder("ws://u:pw@127.0.0.1:1/?token=abc")
            .bearer_auth("s3cret")
            .header("x-api-key", "k3y")
            .build()
            .unwrap();
        let debug = format!("{c:?}");
        for secret in ["s3cret", "k3y", "pw", "abc"] {
            assert!(!debug.contains(secret), "{secret} leaked in {debug}");
        }
        assert!(debug.contains("authorization") && debug.contains("x-api-key"));
        assert_eq!(
            c.header_names().collect::<Vec<_>>(),
            ["authorization", "x-api-key"]
        );
    }

    #[cfg(not(feature = "tls"))]
    #[test]
    fn wss_needs_the_tls_feature() {
        let err = WsConfig::builder("wss://example.com").build().unwrap_err();
        assert!(err.to_string().contains("`tls` feature"), "{err}");
    }
}
