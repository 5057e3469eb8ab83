//! [`SseConfig`] and its validating builder.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use connection_core::{
    ConfigError, Endpoint, require_at_most_max, require_in_range, require_nonzero,
};
use reqwest::header::{HeaderName, HeaderValue};

use crate::status::StatusSet;

/// Default limit on getting the response headers (TCP, TLS, request, status line).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default inactivity timeout: no byte for this long, not even a comment, and the
/// connection is presumed dead (a half-open TCP connection never says so itself).
pub const DEFAULT_INACTIVITY_TIMEOUT: Duration = Duration::from_secs(300);
/// Default first reconnect delay, until the server sends a `retry` field.
pub const DEFAULT_INITIAL_DELAY: Duration = Duration::from_secs(1);
/// Default ceiling on reconnect delays (a server's `retry` above it still wins).
pub const DEFAULT_MAX_DELAY: Duration = Duration::from_secs(30);
/// Default time a stream must stay up before the reconnect delays start over.
pub const DEFAULT_STABLE_AFTER: Duration = Duration::from_secs(60);
/// Default number of redirects followed for one request.
pub const DEFAULT_MAX_REDIRECTS: u32 = 10;
/// Most redirects that can be configured.
pub const MAX_REDIRECTS: u32 = 100;
/// Default limit on one line or one event's data, in bytes.
pub const DEFAULT_MAX_EVENT_SIZE: usize = 16 << 20;
/// Most that [`SseConfigBuilder::max_event_size`] accepts (1 GiB).
pub const MAX_EVENT_SIZE_LIMIT: usize = 1 << 30;
/// Default number of received items waiting for the application.
pub const DEFAULT_INBOUND_BUFFER: usize = 256;
/// Most that [`SseConfigBuilder::inbound_buffer`] accepts.
pub const MAX_INBOUND_BUFFER: usize = 1 << 20;
/// Default bound on closing a connection.
pub const DEFAULT_CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// One request header; `secret` ones are redacted wherever the config is shown.
#[derive(Clone)]
pub(crate) struct Header {
    pub(crate) name: HeaderName,
    pub(crate) value: HeaderValue,
}

impl Header {
    fn is_secret(&self) -> bool {
        self.value.is_sensitive()
    }
}

/// Validated settings of an SSE client: where, how to ask, and how to behave when the
/// stream drops. Made by [`SseConfig::builder`]; also from serde or `CONNECTION_SSE_*`
/// through [`SseSettings`](crate::SseSettings).
///
/// `Debug` shows the URL without its password and secret headers (authorization,
/// cookies, those marked with [`SseConfigBuilder::secret_header`]) as `***`.
#[derive(Clone)]
pub struct SseConfig {
    pub(crate) url: url::Url,
    pub(crate) endpoint: Endpoint,
    pub(crate) method: reqwest::Method,
    pub(crate) body: Option<Bytes>,
    pub(crate) headers: Vec<Header>,
    pub(crate) last_event_id: Option<Arc<str>>,
    pub(crate) connect_timeout: Duration,
    pub(crate) inactivity_timeout: Option<Duration>,
    pub(crate) initial_delay: Duration,
    pub(crate) max_delay: Duration,
    pub(crate) max_attempts: Option<u32>,
    pub(crate) stable_after: Duration,
    pub(crate) retry_statuses: StatusSet,
    pub(crate) max_redirects: u32,
    pub(crate) max_event_size: usize,
    pub(crate) inbound_buffer: usize,
    pub(crate) close_timeout: Duration,
    pub(crate) reconnect: bool,
    /// Always built, `http://` included: a redirect may lead to `https://`, and reqwest
    /// without a preconfigured TLS setup would look for a process-wide provider.
    #[cfg(feature = "tls")]
    pub(crate) tls: Arc<rustls::ClientConfig>,
    #[cfg(feature = "tls")]
    tls_source: crate::tls::TlsSource,
}

impl SseConfig {
    /// A builder for a stream at `url` (`http://` or `https://`).
    pub fn builder(url: impl Into<String>) -> SseConfigBuilder {
        SseConfigBuilder::new(url.into())
    }

    /// A builder holding these settings, to change some.
    pub fn to_builder(&self) -> SseConfigBuilder {
        SseConfigBuilder {
            url: self.url.as_str().to_owned(),
            method: Some(self.method.as_str().to_owned()),
            body: self.body.clone(),
            headers: self.headers.clone(),
            last_event_id: self.last_event_id.clone(),
            connect_timeout: self.connect_timeout,
            inactivity_timeout: self.inactivity_timeout,
            initial_delay: self.initial_delay,
            max_delay: self.max_delay,
            max_attempts: self.max_attempts,
            stable_after: self.stable_after,
            retry_statuses: self.retry_statuses.clone(),
            max_redirects: self.max_redirects,
            max_event_size: self.max_event_size,
            inbound_buffer: self.inbound_buffer,
            close_timeout: self.close_timeout,
            reconnect: self.reconnect,
            error: None,
            #[cfg(feature = "tls")]
            tls: self.tls_source.clone(),
        }
    }

    /// Where the stream is (its label and redacted form are safe to log).
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// The request method (`GET` unless set).
    pub fn method(&self) -> &str {
        self.method.as_str()
    }

    /// The `Last-Event-ID` of the first request, if one was given.
    pub fn initial_last_event_id(&self) -> Option<&str> {
        self.last_event_id.as_deref()
    }

    /// The limit on getting the response headers.
    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    /// How long the stream may stay silent before it is presumed dead (`None`: forever).
    pub fn inactivity_timeout(&self) -> Option<Duration> {
        self.inactivity_timeout
    }

    /// First reconnect delay until the server sends `retry`, and the ceiling.
    pub fn reconnect_delays(&self) -> (Duration, Duration) {
        (self.initial_delay, self.max_delay)
    }

    /// Failing statuses that are retried.
    pub fn retry_statuses(&self) -> &StatusSet {
        &self.retry_statuses
    }

    /// Redirects followed per request.
    pub fn max_redirects(&self) -> u32 {
        self.max_redirects
    }

    /// Limit on one line or one event's data, in bytes.
    pub fn max_event_size(&self) -> usize {
        self.max_event_size
    }

    /// Items that may wait for the application.
    pub fn inbound_buffer(&self) -> usize {
        self.inbound_buffer
    }

    /// Whether the client reconnects at all.
    pub fn reconnects(&self) -> bool {
        self.reconnect
    }
}

impl fmt::Debug for SseConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SseConfig")
            .field("url", &self.endpoint.redacted())
            .field("method", &self.method.as_str())
            .field(
                "body",
                &self.body.as_ref().map(|b| format!("{} bytes", b.len())),
            )
            .field("headers", &HeadersDebug(&self.headers))
            .field("last_event_id", &self.last_event_id)
            .field("connect_timeout", &self.connect_timeout)
            .field("inactivity_timeout", &self.inactivity_timeout)
            .field("initial_delay", &self.initial_delay)
            .field("max_delay", &self.max_delay)
            .field("max_attempts", &self.max_attempts)
            .field("stable_after", &self.stable_after)
            .field("retry_statuses", &self.retry_statuses)
            .field("max_redirects", &self.max_redirects)
            .field("max_event_size", &self.max_event_size)
            .field("inbound_buffer", &self.inbound_buffer)
            .field("close_timeout", &self.close_timeout)
            .field("reconnect", &self.reconnect)
            .finish_non_exhaustive()
    }
}

struct HeadersDebug<'a>(&'a [Header]);

impl fmt::Debug for HeadersDebug<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|h| {
                let value = match (h.is_secret(), h.value.to_str()) {
                    (true, _) => "***",
                    (false, Ok(v)) => v,
                    (false, Err(_)) => "<binary>",
                };
                (h.name.as_str(), value)
            }))
            .finish()
    }
}

/// Builds an [`SseConfig`]; [`build`](Self::build) checks every setting and names the
/// bad one.
///
/// ```
/// use connection_transport_sse::SseConfig;
/// use std::time::Duration;
///
/// let config = SseConfig::builder("https://api.example.com/v1/chat")
///     .method("POST")
///     .body(r#"{"stream":true}"#)
///     .header("content-type", "application/json")
///     .bearer_auth("s3cret")
///     .inactivity_timeout(Some(Duration::from_secs(60)))
///     .build()?;
/// assert!(!format!("{config:?}").contains("s3cret"));
///
/// let err = SseConfig::builder("ftp://example.com/").build().unwrap_err();
/// assert_eq!(err.field(), "url");
/// # Ok::<(), connection_transport_sse::ConfigError>(())
/// ```
#[derive(Clone)]
#[must_use = "a builder does nothing until built"]
pub struct SseConfigBuilder {
    url: String,
    method: Option<String>,
    body: Option<Bytes>,
    headers: Vec<Header>,
    last_event_id: Option<Arc<str>>,
    connect_timeout: Duration,
    inactivity_timeout: Option<Duration>,
    initial_delay: Duration,
    max_delay: Duration,
    max_attempts: Option<u32>,
    stable_after: Duration,
    retry_statuses: StatusSet,
    max_redirects: u32,
    max_event_size: usize,
    inbound_buffer: usize,
    close_timeout: Duration,
    reconnect: bool,
    /// The first setter error, reported by `build` (setters stay chainable).
    error: Option<ConfigError>,
    #[cfg(feature = "tls")]
    tls: crate::tls::TlsSource,
}

impl fmt::Debug for SseConfigBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let url = Endpoint::parse(&self.url)
            .map_or_else(|_| "<invalid>".to_owned(), |e| e.redacted().to_owned());
        f.debug_struct("SseConfigBuilder")
            .field("url", &url)
            .field("method", &self.method)
            .field("headers", &HeadersDebug(&self.headers))
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}

impl SseConfigBuilder {
    fn new(url: String) -> Self {
        Self {
            url,
            method: None,
            body: None,
            headers: Vec::new(),
            last_event_id: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            inactivity_timeout: Some(DEFAULT_INACTIVITY_TIMEOUT),
            initial_delay: DEFAULT_INITIAL_DELAY,
            max_delay: DEFAULT_MAX_DELAY,
            max_attempts: None,
            stable_after: DEFAULT_STABLE_AFTER,
            retry_statuses: StatusSet::default(),
            max_redirects: DEFAULT_MAX_REDIRECTS,
            max_event_size: DEFAULT_MAX_EVENT_SIZE,
            inbound_buffer: DEFAULT_INBOUND_BUFFER,
            close_timeout: DEFAULT_CLOSE_TIMEOUT,
            reconnect: true,
            error: None,
            #[cfg(feature = "tls")]
            tls: crate::tls::TlsSource::default(),
        }
    }

    fn fail(&mut self, error: ConfigError) {
        self.error.get_or_insert(error);
    }

    /// The request method (default `GET`). LLM streaming APIs use `POST` with a body;
    /// the body is sent again on every reconnect.
    pub fn method(mut self, method: impl Into<String>) -> Self {
        self.method = Some(method.into());
        self
    }

    /// The request body, sent on every (re)connect.
    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = Some(body.into());
        self
    }

    fn push_header(mut self, name: &str, value: &str, secret: bool) -> Self {
        let parsed = HeaderName::from_bytes(name.as_bytes())
            .map_err(|e| ConfigError::new("headers", format!("bad header name {name:?}: {e}")))
            .and_then(|n| {
                HeaderValue::from_str(value)
                    .map(|v| (n, v))
                    // Never echo the value: it may be a secret.
                    .map_err(|e| {
                        ConfigError::new("headers", format!("bad value for header {name:?}: {e}"))
                    })
            });
        match parsed {
            Ok((name, mut value)) => {
                let secret = secret
                    || [
                        reqwest::header::AUTHORIZATION,
                        reqwest::header::PROXY_AUTHORIZATION,
                        reqwest::header::COOKIE,
                    ]
                    .contains(&name);
                value.set_sensitive(secret);
                self.headers.retain(|h| h.name != name);
                self.headers.push(Header { name, value });
            }
            Err(e) => self.fail(e),
        }
        self
    }

    /// Adds a request header (replacing one of the same name). `Authorization`,
    /// `Proxy-Authorization` and `Cookie` are treated as secrets.
    pub fn header(self, name: impl AsRef<str>, value: impl AsRef<str>) -> Self {
        self.push_header(name.as_ref(), value.as_ref(), false)
    }

    /// Adds a header whose value is a secret (an API key): redacted in `Debug`, logs
    /// and events, and marked sensitive for HTTP/2 header compression.
    pub fn secret_header(self, name: impl AsRef<str>, value: impl AsRef<str>) -> Self {
        self.push_header(name.as_ref(), value.as_ref(), true)
    }

    /// `Authorization: Bearer <token>`.
    pub fn bearer_auth(self, token: impl fmt::Display) -> Self {
        self.push_header("authorization", &format!("Bearer {token}"), true)
    }

    /// `Authorization: Basic ...` from a user name and password.
    pub fn basic_auth(self, user: impl fmt::Display, password: impl fmt::Display) -> Self {
        let encoded = base64(format!("{user}:{password}").as_bytes());
        self.push_header("authorization", &format!("Basic {encoded}"), true)
    }

    /// The `Last-Event-ID` to send with the first request (to resume a stream read by
    /// an earlier process). Empty means none.
    pub fn last_event_id(mut self, id: impl Into<Arc<str>>) -> Self {
        let id: Arc<str> = id.into();
        self.last_event_id = (!id.is_empty()).then_some(id);
        self
    }

    /// Limit on getting the response headers: TCP connect, TLS, the request and the
    /// status line, redirects included (default 10 s).
    pub fn connect_timeout(mut self, limit: Duration) -> Self {
        self.connect_timeout = limit;
        self
    }

    /// How long the stream may go without a byte (events or comments) before it is
    /// presumed dead and reconnected (default 5 min; `None`: wait forever). Set it
    /// above the server's heartbeat interval.
    pub fn inactivity_timeout(mut self, limit: Option<Duration>) -> Self {
        self.inactivity_timeout = limit;
        self
    }

    /// The reconnect delays: `initial` until the server sends a `retry` field, which
    /// then is the base; doubling per failed attempt up to `max` (a server `retry`
    /// above `max` is obeyed as is), with equal jitter. Defaults 1 s and 30 s.
    pub fn reconnect_delays(mut self, initial: Duration, max: Duration) -> Self {
        self.initial_delay = initial;
        self.max_delay = max;
        self
    }

    pub(crate) fn delays(&self) -> (Duration, Duration) {
        (self.initial_delay, self.max_delay)
    }

    /// Reconnect attempts in a row before giving up (default: no limit).
    pub fn max_attempts(mut self, attempts: Option<u32>) -> Self {
        self.max_attempts = attempts;
        self
    }

    /// How long a stream must stay up before the reconnect delays start over (default
    /// 60 s): a server that accepts and drops at once sees the delays grow.
    pub fn stable_after(mut self, uptime: Duration) -> Self {
        self.stable_after = uptime;
        self
    }

    /// Failing statuses after which to try again (default `408,429,500-599`).
    pub fn retry_statuses(mut self, statuses: StatusSet) -> Self {
        self.retry_statuses = statuses;
        self
    }

    /// Redirects (301, 302, 303, 307, 308) followed per request (default 10; 0 makes a
    /// redirect an error).
    pub fn max_redirects(mut self, n: u32) -> Self {
        self.max_redirects = n;
        self
    }

    /// Limit on one line or one event's data, in bytes (default 16 MiB): past it the
    /// connection is dropped and reconnected.
    pub fn max_event_size(mut self, bytes: usize) -> Self {
        self.max_event_size = bytes;
        self
    }

    /// Items (events, comments, retries) that may wait for the application (default
    /// 256). When full, the reader stops reading and TCP slows the server down.
    pub fn inbound_buffer(mut self, items: usize) -> Self {
        self.inbound_buffer = items;
        self
    }

    /// Bound on closing a connection (default 5 s).
    pub fn close_timeout(mut self, limit: Duration) -> Self {
        self.close_timeout = limit;
        self
    }

    /// Reconnect after a lost stream (default) or not.
    pub fn reconnect(mut self, on: bool) -> Self {
        self.reconnect = on;
        self
    }

    /// Trust only these roots (instead of the webpki roots) for `https://`.
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub fn root_certificates(mut self, roots: rustls::RootCertStore) -> Self {
        self.tls.roots = Some(roots);
        self
    }

    /// Adds one trusted root (DER) to a custom root store (an empty one, without the
    /// webpki roots, on first use).
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

    /// A client certificate (mTLS).
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

    /// Uses this rustls configuration as is (overrides roots and client certificate).
    /// It must have been built with the ring provider, like everything in this
    /// workspace.
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub fn tls_config(mut self, config: Arc<rustls::ClientConfig>) -> Self {
        self.tls.config = Some(config);
        self
    }

    /// Checks every setting.
    pub fn build(self) -> Result<SseConfig, ConfigError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let url = url::Url::parse(&self.url)
            .map_err(|e| ConfigError::new("url", format!("not a URL: {e}")))?;
        match url.scheme() {
            "http" => {}
            "https" if cfg!(feature = "tls") => {}
            "https" => {
                return Err(ConfigError::new(
                    "url",
                    "https:// needs the `tls` feature of connection-transport-sse",
                ));
            }
            other => {
                return Err(ConfigError::new(
                    "url",
                    format!("scheme {other:?} is not http or https"),
                ));
            }
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(ConfigError::new("url", "no host"));
        }
        let endpoint =
            Endpoint::from_url(url.clone()).map_err(|e| ConfigError::new("url", e.to_string()))?;
        let method = match self.method.as_deref() {
            None => reqwest::Method::GET,
            Some(m) => reqwest::Method::from_bytes(m.trim().to_ascii_uppercase().as_bytes())
                .map_err(|_| ConfigError::new("method", format!("{m:?} is not an HTTP method")))?,
        };
        require_nonzero("connect_timeout", self.connect_timeout)?;
        if let Some(t) = self.inactivity_timeout {
            require_nonzero("inactivity_timeout", t)?;
        }
        require_at_most_max("reconnect_initial_delay", self.initial_delay)?;
        require_nonzero("reconnect_max_delay", self.max_delay)?;
        if self.initial_delay > self.max_delay {
            return Err(ConfigError::new(
                "reconnect_initial_delay",
                format!(
                    "{:?} is above the maximum delay {:?}",
                    self.initial_delay, self.max_delay
                ),
            ));
        }
        require_at_most_max("stable_after", self.stable_after)?;
        require_nonzero("close_timeout", self.close_timeout)?;
        self.retry_statuses.validate("retry_statuses")?;
        require_in_range("max_redirects", self.max_redirects, 0..=MAX_REDIRECTS)?;
        require_in_range(
            "max_event_size",
            self.max_event_size,
            1..=MAX_EVENT_SIZE_LIMIT,
        )?;
        require_in_range(
            "inbound_buffer",
            self.inbound_buffer,
            1..=MAX_INBOUND_BUFFER,
        )?;
        #[cfg(feature = "tls")]
        let tls = self.tls.client_config()?;
        Ok(SseConfig {
            url,
            endpoint,
            method,
            body: self.body,
            headers: self.headers,
            last_event_id: self.last_event_id,
            connect_timeout: self.connect_timeout,
            inactivity_timeout: self.inactivity_timeout,
            initial_delay: self.initial_delay,
            max_delay: self.max_delay,
            max_attempts: self.max_attempts,
            stable_after: self.stable_after,
            retry_statuses: self.retry_statuses,
            max_redirects: self.max_redirects,
            max_event_size: self.max_event_size,
            inbound_buffer: self.inbound_buffer,
            close_timeout: self.close_timeout,
            reconnect: self.reconnect,
            #[cfg(feature = "tls")]
            tls,
            #[cfg(feature = "tls")]
            tls_source: self.tls,
        })
    }
}

/// Standard base64 with padding, for basic auth (too small a need for a dependency).
fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use connection_core::MAX_DURATION;

    #[test]
    fn base64_matches_the_rfc_vectors() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), encoded);
        }
    }

    #[test]
    fn every_bad_setting_is_named() {
        let b = || SseConfig::builder("http://127.0.0.1:1/events");
        let cases: Vec<(SseConfigBuilder, &str)> = vec![
            (SseConfig::builder("nope"), "url"),
            (SseConfig::builder("ws://x/"), "url"),
            (b().method("NOT A METHOD"), "method"),
            (b().header("bad name", "v"), "headers"),
            (b().header("x", "bad\nvalue"), "headers"),
            (b().connect_timeout(Duration::ZERO), "connect_timeout"),
            (
                b().inactivity_timeout(Some(Duration::ZERO)),
                "inactivity_timeout",
            ),
            (
                b().reconnect_delays(Duration::from_secs(2), Duration::from_secs(1)),
                "reconnect_initial_delay",
            ),
            (
                b().reconnect_delays(Duration::ZERO, Duration::ZERO),
                "reconnect_max_delay",
            ),
            (b().stable_after(MAX_DURATION * 2), "stable_after"),
            (b().max_redirects(MAX_REDIRECTS + 1), "max_redirects"),
            (b().max_event_size(0), "max_event_size"),
            (b().inbound_buffer(0), "inbound_buffer"),
            (b().close_timeout(Duration::ZERO), "close_timeout"),
            (
                b().retry_statuses(StatusSet::none().with(700)),
                "retry_statuses",
            ),
        ];
        for (builder, field) in cases {
            let err = builder.build().unwrap_err();
            assert_eq!(err.field(), field, "{err}");
        }
        let err = b().header("x", "s3cret\n").build().unwrap_err();
        assert!(!err.to_string().contains("s3cret"), "{err}");
    }

    #[test]
    fn secrets_never_show() {
        let c = SseConfig::builder("http://user:hunter2@127.0.0.1:1/e")
            .bearer_auth("tok3n")
            .secret_header("x-api-key", "k3y")
            .header("cookie", "c00kie")
            .header("x-plain", "visible")
            .build()
            .unwrap();
        let shown = format!("{c:?} {:?}", c.to_builder());
        for secret in ["hunter2", "tok3n", "k3y", "c00kie"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert!(shown.contains("visible"));
        let basic = SseConfig::builder("http://x/")
            .basic_auth("Aladdin", "open sesame")
            .build()
            .unwrap();
        assert_eq!(basic.headers[0].value, "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==");
    }

    #[test]
    fn defaults_and_round_trip() {
        let c = SseConfig::builder("http://127.0.0.1:1/e")
            .method("post")
            .last_event_id("")
            .build()
            .unwrap();
        assert_eq!(c.method(), "POST");
        assert_eq!(c.initial_last_event_id(), None);
        assert_eq!(c.inactivity_timeout(), Some(DEFAULT_INACTIVITY_TIMEOUT));
        let again = c.to_builder().build().unwrap();
        assert_eq!(format!("{c:?}"), format!("{again:?}"));
    }
}
