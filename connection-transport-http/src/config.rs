//! [`HttpConfig`]: everything a client needs, validated once.
//!
//! Defaults, and why:
//! - **pooled sockets idle at most 4 s** ([`DEFAULT_POOL_IDLE_TIMEOUT`]), below the
//!   shortest keep-alive common servers use (Node and Apache 5 s; nginx 75 s). A client
//!   that keeps an idle socket longer than the server does sends its next request into
//!   a socket the server is closing: "connection closed before message completed"
//!   (hyper#2136). reqwest's own default is 90 s.
//! - **retries on, for what is safe** (3 retries, exponential from 100 ms, at most 5 s,
//!   full jitter; a budget of 20 % of recent requests plus 10 a second; a server's
//!   `Retry-After` honoured up to 30 s);
//! - **a circuit breaker** that opens after 5 failures in a row for 10 s, shared by
//!   every clone of the client;
//! - no rate limit and no hedging unless asked for;
//! - 10 s to connect, 30 s for a whole request, responses up to 64 MiB.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use connection_core::{ConfigError, Endpoint, require_in_range, require_nonzero};
use connection_retry::retry::Timed;
use connection_retry::{CircuitBreaker, EventSink, RateLimiter, RetryPolicy};
use reqwest::Method;
use reqwest::header::{AUTHORIZATION, HeaderName, HeaderValue};
use url::Url;

use crate::error::HttpError;

/// Default limit on opening a connection (TCP and TLS).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default limit on a whole request, each attempt's own.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Default time a pooled keep-alive socket may stay idle: below Node's and Apache's 5 s.
pub const DEFAULT_POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(4);
/// Default largest response body accepted, in bytes (64 MiB).
pub const DEFAULT_MAX_RESPONSE_SIZE: usize = 64 << 20;
/// The largest `max_response_size` accepted (4 GiB).
pub const MAX_RESPONSE_LIMIT: usize = u32::MAX as usize;
/// Default number of retries after the first attempt.
pub const DEFAULT_MAX_RETRIES: u32 = 3;
/// The most retries a client may be configured with.
pub const MAX_RETRIES_LIMIT: u32 = 100;
/// Default first retry delay (exponential, doubling, full jitter).
pub const DEFAULT_RETRY_INITIAL_DELAY: Duration = Duration::from_millis(100);
/// Default ceiling on a retry delay.
pub const DEFAULT_RETRY_MAX_DELAY: Duration = Duration::from_secs(5);
/// Default ceiling on a server's `Retry-After`: a longer one waits this long.
pub const DEFAULT_RETRY_AFTER_MAX: Duration = Duration::from_secs(30);
/// Default share of recent requests that retries may add (the retry budget).
pub const DEFAULT_RETRY_BUDGET_RATIO: f64 = 0.2;
/// Default failures in a row that open the circuit.
pub const DEFAULT_BREAKER_FAILURES: u32 = 5;
/// Default time the circuit stays open.
pub const DEFAULT_BREAKER_WAIT: Duration = Duration::from_secs(10);
/// Default limit on a probe.
pub const DEFAULT_PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// The health request: [`HttpClient::probe`](crate::HttpClient::probe), the
/// transport's connect and its keepalive probes.
///
/// Default: `GET /` (relative to the base URL), any status below 500 counts as
/// healthy (the server answered and is not failing), 5 s.
///
/// ```
/// use connection_transport_http::{Method, Probe};
/// use std::time::Duration;
///
/// let probe = Probe::get("/healthz").expect_status(200).timeout(Duration::from_secs(2));
/// assert_eq!(probe.path(), "/healthz");
/// let head = Probe::new(Method::HEAD, "/");
/// # let _ = head;
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Probe {
    pub(crate) method: Method,
    pub(crate) path: String,
    pub(crate) expect: Option<u16>,
    pub(crate) timeout: Duration,
}

impl Default for Probe {
    fn default() -> Self {
        Self::get("/")
    }
}

impl Probe {
    /// A probe sending `method` to `path`.
    pub fn new(method: Method, path: impl Into<String>) -> Self {
        Self {
            method,
            path: path.into(),
            expect: None,
            timeout: DEFAULT_PROBE_TIMEOUT,
        }
    }

    /// `GET path`.
    pub fn get(path: impl Into<String>) -> Self {
        Self::new(Method::GET, path)
    }

    /// Healthy only with exactly this status (default: any status below 500).
    #[must_use]
    pub fn expect_status(mut self, status: u16) -> Self {
        self.expect = Some(status);
        self
    }

    /// Limit on the probe (default 5 s).
    #[must_use]
    pub fn timeout(mut self, limit: Duration) -> Self {
        self.timeout = limit;
        self
    }

    /// The method.
    pub fn method(&self) -> &Method {
        &self.method
    }

    /// The path.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The expected status, if one.
    pub fn expected_status(&self) -> Option<u16> {
        self.expect
    }

    /// The limit.
    pub fn limit(&self) -> Duration {
        self.timeout
    }

    pub(crate) fn accepts(&self, status: u16) -> bool {
        match self.expect {
            Some(s) => s == status,
            None => status < 500,
        }
    }
}

/// When a hedged request sends its second copy.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum HedgeDelay {
    /// After a fixed delay.
    Fixed(Duration),
    /// After the client's request latency at `quantile` (0.95 = p95), never sooner than
    /// `floor`; `fallback` until 20 requests have been measured.
    Percentile {
        /// Which quantile, in (0, 1).
        quantile: f64,
        /// The shortest delay.
        floor: Duration,
        /// The delay while there are too few measurements.
        fallback: Duration,
    },
}

/// Requests measured before a percentile delay is trusted.
pub(crate) const HEDGE_MIN_SAMPLES: u64 = 20;

/// Hedged requests: when an idempotent request has not answered within a delay, a second
/// copy goes out; the first answer wins and the other copy is cancelled. Each second
/// copy is drawn from the retry budget (no budget left: no hedge) and counted in the
/// metrics (`hedges`, `hedge_wins`). Only requests that are idempotent (see
/// [`HttpRequest::is_idempotent`](crate::HttpRequest::is_idempotent)) and have a
/// replayable body are hedged.
///
/// ```
/// use connection_transport_http::Hedge;
/// use std::time::Duration;
///
/// let fixed = Hedge::after(Duration::from_millis(50));
/// let p95 = Hedge::at_percentile(0.95, Duration::from_millis(100)).floor(Duration::from_millis(5));
/// # let _ = (fixed, p95);
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Hedge {
    pub(crate) delay: HedgeDelay,
}

impl Hedge {
    /// The second copy goes out after `delay`.
    pub fn after(delay: Duration) -> Self {
        Self {
            delay: HedgeDelay::Fixed(delay),
        }
    }

    /// The second copy goes out after the client's latency at `quantile`; `fallback`
    /// while fewer than 20 requests were measured. Floor 1 ms.
    pub fn at_percentile(quantile: f64, fallback: Duration) -> Self {
        Self {
            delay: HedgeDelay::Percentile {
                quantile,
                floor: Duration::from_millis(1),
                fallback,
            },
        }
    }

    /// The shortest delay of a percentile hedge.
    #[must_use]
    pub fn floor(mut self, floor: Duration) -> Self {
        if let HedgeDelay::Percentile { floor: f, .. } = &mut self.delay {
            *f = floor;
        }
        self
    }

    /// The delay rule.
    pub fn delay(&self) -> HedgeDelay {
        self.delay
    }

    fn validate(&self) -> Result<(), ConfigError> {
        match self.delay {
            HedgeDelay::Fixed(d) => require_nonzero("hedge", d),
            HedgeDelay::Percentile {
                quantile,
                floor,
                fallback,
            } => {
                if !(quantile > 0.0 && quantile < 1.0) {
                    return Err(ConfigError::new(
                        "hedge",
                        format!("the quantile must be between 0 and 1, not {quantile}"),
                    ));
                }
                require_nonzero("hedge", floor)?;
                require_nonzero("hedge", fallback)
            }
        }
    }
}

/// Retry settings for the policy a client builds for itself.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct RetrySettings {
    pub(crate) max_retries: u32,
    pub(crate) initial: Duration,
    pub(crate) max_delay: Duration,
    pub(crate) retry_after_max: Duration,
    /// Share of recent requests retries may add; `None`: no budget.
    pub(crate) budget_ratio: Option<f64>,
    pub(crate) deadline: Option<Duration>,
}

impl Default for RetrySettings {
    fn default() -> Self {
        Self {
            max_retries: DEFAULT_MAX_RETRIES,
            initial: DEFAULT_RETRY_INITIAL_DELAY,
            max_delay: DEFAULT_RETRY_MAX_DELAY,
            retry_after_max: DEFAULT_RETRY_AFTER_MAX,
            budget_ratio: Some(DEFAULT_RETRY_BUDGET_RATIO),
            deadline: None,
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) enum RetryChoice {
    Settings(RetrySettings),
    Policy(RetryPolicy<Timed>),
    Off,
}

#[derive(Clone, Debug)]
pub(crate) enum BreakerChoice {
    Settings { failures: u32, wait: Duration },
    Breaker(CircuitBreaker),
    Off,
}

#[derive(Clone, Debug)]
pub(crate) enum LimitChoice {
    Off,
    PerSecond { rate: u32, burst: u32 },
    Limiter(RateLimiter),
}

/// The plain settings, held once by both [`HttpConfig`] and its builder.
#[derive(Clone)]
pub(crate) struct Settings {
    pub(crate) headers: Vec<(HeaderName, HeaderValue)>,
    pub(crate) user_agent: Option<String>,
    pub(crate) connect_timeout: Duration,
    pub(crate) request_timeout: Option<Duration>,
    pub(crate) read_timeout: Option<Duration>,
    pub(crate) pool_idle_timeout: Option<Duration>,
    pub(crate) pool_max_idle_per_host: Option<usize>,
    pub(crate) max_response_size: usize,
    pub(crate) retry: RetryChoice,
    pub(crate) breaker: BreakerChoice,
    pub(crate) limit: LimitChoice,
    pub(crate) hedge: Option<Hedge>,
    pub(crate) probe: Probe,
    pub(crate) events: Option<EventSink>,
}

/// A validated HTTP client configuration: a base URL and everything about how requests
/// to it are sent. Cheap to clone.
///
/// Policies given as values ([`circuit_breaker`](HttpConfigBuilder::circuit_breaker),
/// [`rate_limiter`](HttpConfigBuilder::rate_limiter),
/// [`retry_policy`](HttpConfigBuilder::retry_policy)) are shared with whoever else holds
/// them; those described by settings are made afresh by each
/// [`HttpClient::new`](crate::HttpClient::new) and shared by that client's clones.
///
/// ```
/// use connection_transport_http::HttpConfig;
/// use std::time::Duration;
///
/// let config = HttpConfig::builder("https://user:pw@api.example.com/v1")
///     .bearer_auth("s3cret-token")
///     .header("x-client", "inventory")
///     .request_timeout(Duration::from_secs(5))
///     .max_retries(2)
///     .build()?;
/// assert_eq!(config.endpoint().host(), "api.example.com");
/// // Neither the token nor the URL's password reaches Debug output.
/// let shown = format!("{config:?}");
/// assert!(!shown.contains("s3cret-token") && !shown.contains("pw@"));
///
/// let err = HttpConfig::builder("ftp://example.com").build().unwrap_err();
/// assert!(err.to_string().contains("url"));
/// # Ok::<(), connection_transport_http::HttpError>(())
/// ```
#[derive(Clone)]
pub struct HttpConfig {
    pub(crate) endpoint: Endpoint,
    /// The base URL without userinfo (that became an `Authorization` header) and
    /// without a trailing `/`, to which request paths are appended.
    pub(crate) prefix: Arc<str>,
    /// The `Authorization` (or API key) header, marked sensitive.
    pub(crate) auth: Option<(HeaderName, HeaderValue)>,
    pub(crate) s: Settings,
    #[cfg(feature = "tls")]
    pub(crate) tls: Arc<rustls::ClientConfig>,
}

impl HttpConfig {
    /// A builder for the base URL `url` (`http://` or `https://`); checked in
    /// [`build`](HttpConfigBuilder::build).
    pub fn builder(url: impl Into<String>) -> HttpConfigBuilder {
        HttpConfigBuilder::new(url.into())
    }

    /// The base URL as an endpoint (credentials and secret query values redacted when
    /// displayed).
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Names of the default headers (values are not exposed: they may be secrets).
    pub fn header_names(&self) -> impl Iterator<Item = &str> {
        self.auth
            .iter()
            .chain(self.s.headers.iter())
            .map(|(n, _)| n.as_str())
    }

    /// Limit on opening a connection.
    pub fn connect_timeout(&self) -> Duration {
        self.s.connect_timeout
    }

    /// Limit on a whole request (each attempt's own), if any.
    pub fn request_timeout(&self) -> Option<Duration> {
        self.s.request_timeout
    }

    /// Longest silence while reading a response, if limited.
    pub fn read_timeout(&self) -> Option<Duration> {
        self.s.read_timeout
    }

    /// How long a pooled socket may stay idle (`None`: until the server closes it).
    pub fn pool_idle_timeout(&self) -> Option<Duration> {
        self.s.pool_idle_timeout
    }

    /// Largest response body accepted, in bytes.
    pub fn max_response_size(&self) -> usize {
        self.s.max_response_size
    }

    /// The health request.
    pub fn probe(&self) -> &Probe {
        &self.s.probe
    }

    /// The hedging rule, if hedging is on.
    pub fn hedge(&self) -> Option<Hedge> {
        self.s.hedge
    }

    /// A builder holding these settings, to change a few.
    pub fn to_builder(&self) -> HttpConfigBuilder {
        HttpConfigBuilder {
            url: self
                .endpoint
                .url()
                .map_or_else(|| self.prefix.to_string(), |u| u.to_string()),
            error: None,
            auth: self.auth.clone(),
            s: self.s.clone(),
            #[cfg(feature = "tls")]
            tls: crate::tls::TlsSource {
                config: Some(self.tls.clone()),
                ..Default::default()
            },
        }
    }
}

impl fmt::Debug for HttpConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpConfig")
            .field("endpoint", &self.endpoint)
            .field("auth", &self.auth.as_ref().map(|(n, _)| n.as_str()))
            .field("headers", &RedactedHeaders(&self.s.headers))
            .field("connect_timeout", &self.s.connect_timeout)
            .field("request_timeout", &self.s.request_timeout)
            .field("read_timeout", &self.s.read_timeout)
            .field("pool_idle_timeout", &self.s.pool_idle_timeout)
            .field("max_response_size", &self.s.max_response_size)
            .field("retry", &self.s.retry)
            .field("breaker", &self.s.breaker)
            .field("limit", &self.s.limit)
            .field("hedge", &self.s.hedge)
            .field("probe", &self.s.probe)
            .finish_non_exhaustive()
    }
}

/// Prints header names with every value replaced by `***`.
struct RedactedHeaders<'a>(&'a [(HeaderName, HeaderValue)]);

impl fmt::Debug for RedactedHeaders<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|(n, _)| (n.as_str(), "***")))
            .finish()
    }
}

/// Builds an [`HttpConfig`]. Setters never fail; [`build`](Self::build) validates and
/// names the first bad setting.
#[must_use = "a builder does nothing until built"]
pub struct HttpConfigBuilder {
    url: String,
    error: Option<ConfigError>,
    auth: Option<(HeaderName, HeaderValue)>,
    s: Settings,
    #[cfg(feature = "tls")]
    tls: crate::tls::TlsSource,
}

impl fmt::Debug for HttpConfigBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpConfigBuilder")
            .field("auth", &self.auth.as_ref().map(|(n, _)| n.as_str()))
            .field("headers", &RedactedHeaders(&self.s.headers))
            .finish_non_exhaustive()
    }
}

fn sensitive(value: &str) -> Result<HeaderValue, ConfigError> {
    let mut v = HeaderValue::try_from(value)
        .map_err(|_| ConfigError::new("auth", "the credential is not a valid header value"))?;
    v.set_sensitive(true);
    Ok(v)
}

impl HttpConfigBuilder {
    fn new(url: String) -> Self {
        Self {
            url,
            error: None,
            auth: None,
            s: Settings {
                headers: Vec::new(),
                user_agent: None,
                connect_timeout: DEFAULT_CONNECT_TIMEOUT,
                request_timeout: Some(DEFAULT_REQUEST_TIMEOUT),
                read_timeout: None,
                pool_idle_timeout: Some(DEFAULT_POOL_IDLE_TIMEOUT),
                pool_max_idle_per_host: None,
                max_response_size: DEFAULT_MAX_RESPONSE_SIZE,
                retry: RetryChoice::Settings(RetrySettings::default()),
                breaker: BreakerChoice::Settings {
                    failures: DEFAULT_BREAKER_FAILURES,
                    wait: DEFAULT_BREAKER_WAIT,
                },
                limit: LimitChoice::Off,
                hedge: None,
                probe: Probe::default(),
                events: None,
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

    /// Records a setting refused before it reached the builder (for the settings
    /// loader), reported by `build`.
    pub(crate) fn refuse(mut self, e: ConfigError) -> Self {
        self.fail(e);
        self
    }

    /// A header sent with every request. Values never appear in `Debug`, logs or
    /// events.
    pub fn header(mut self, name: impl AsRef<str>, value: impl AsRef<str>) -> Self {
        let Ok(name) = HeaderName::try_from(name.as_ref()) else {
            self.fail(ConfigError::new("headers", "invalid header name"));
            return self;
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

    /// `Authorization: Bearer <token>` on every request (redacted everywhere).
    pub fn bearer_auth(mut self, token: impl AsRef<str>) -> Self {
        match sensitive(&format!("Bearer {}", token.as_ref())) {
            Ok(v) => self.auth = Some((AUTHORIZATION, v)),
            Err(e) => self.fail(e),
        }
        self
    }

    /// An API key in the header `header` (e.g. `x-api-key`) on every request (redacted
    /// everywhere).
    pub fn api_key(mut self, header: impl AsRef<str>, key: impl AsRef<str>) -> Self {
        let Ok(name) = HeaderName::try_from(header.as_ref()) else {
            self.fail(ConfigError::new("auth", "invalid API key header name"));
            return self;
        };
        match sensitive(key.as_ref()) {
            Ok(v) => self.auth = Some((name, v)),
            Err(e) => self.fail(e),
        }
        self
    }

    /// `Authorization: Basic ...` on every request (redacted everywhere). A URL's
    /// userinfo (`https://user:pw@host/`) does the same, and never reaches a log line.
    pub fn basic_auth(mut self, user: impl AsRef<str>, password: Option<&str>) -> Self {
        use base64::Engine;
        let raw = format!("{}:{}", user.as_ref(), password.unwrap_or(""));
        let encoded = base64::engine::general_purpose::STANDARD.encode(raw);
        match sensitive(&format!("Basic {encoded}")) {
            Ok(v) => self.auth = Some((AUTHORIZATION, v)),
            Err(e) => self.fail(e),
        }
        self
    }

    /// The `User-Agent` (default `connection-transport-http/<version>`).
    pub fn user_agent(mut self, agent: impl Into<String>) -> Self {
        self.s.user_agent = Some(agent.into());
        self
    }

    /// Limit on opening a connection, TCP and TLS (default 10 s).
    pub fn connect_timeout(mut self, limit: Duration) -> Self {
        self.s.connect_timeout = limit;
        self
    }

    /// Limit on a whole request, each attempt's own: connect, send, response head and
    /// body (default 30 s).
    pub fn request_timeout(mut self, limit: Duration) -> Self {
        self.s.request_timeout = Some(limit);
        self
    }

    /// No limit on a whole request (the connect and read limits still apply).
    pub fn no_request_timeout(mut self) -> Self {
        self.s.request_timeout = None;
        self
    }

    /// Longest silence while waiting for the response head or the next piece of the
    /// body (default: none).
    pub fn read_timeout(mut self, limit: Duration) -> Self {
        self.s.read_timeout = Some(limit);
        self
    }

    /// How long a pooled keep-alive socket may stay idle (default 4 s, see the
    /// [`DEFAULT_POOL_IDLE_TIMEOUT`]); `None` keeps it until the server closes it.
    pub fn pool_idle_timeout(mut self, limit: Option<Duration>) -> Self {
        self.s.pool_idle_timeout = limit;
        self
    }

    /// Most idle sockets kept per host (default: no limit).
    pub fn pool_max_idle_per_host(mut self, n: usize) -> Self {
        self.s.pool_max_idle_per_host = Some(n);
        self
    }

    /// Largest response body accepted, in bytes (default 64 MiB, at most 4 GiB).
    pub fn max_response_size(mut self, bytes: usize) -> Self {
        self.s.max_response_size = bytes;
        self
    }

    fn retry_settings(&mut self) -> &mut RetrySettings {
        if !matches!(self.s.retry, RetryChoice::Settings(_)) {
            self.s.retry = RetryChoice::Settings(RetrySettings::default());
        }
        match &mut self.s.retry {
            RetryChoice::Settings(s) => s,
            // Just set above.
            _ => unreachable!("retry settings were just installed"),
        }
    }

    /// Retries after the first attempt (default 3, at most 100); 0 turns retries off.
    pub fn max_retries(mut self, n: u32) -> Self {
        self.retry_settings().max_retries = n;
        self
    }

    /// Retry delays: exponential from `initial`, doubling, at most `max`, full jitter
    /// (default 100 ms and 5 s).
    pub fn retry_backoff(mut self, initial: Duration, max: Duration) -> Self {
        let s = self.retry_settings();
        s.initial = initial;
        s.max_delay = max;
        self
    }

    /// Longest wait a server's `Retry-After` can impose (default 30 s): a longer one
    /// waits this long.
    pub fn retry_after_max(mut self, max: Duration) -> Self {
        self.retry_settings().retry_after_max = max;
        self
    }

    /// Retries may add at most this share of recent requests, plus 10 a second
    /// (default 0.2); `None` removes the budget.
    pub fn retry_budget(mut self, ratio: Option<f64>) -> Self {
        self.retry_settings().budget_ratio = ratio;
        self
    }

    /// A deadline across every attempt of one request and the waits between them
    /// (default: none; each attempt has the request timeout).
    pub fn retry_deadline(mut self, limit: Duration) -> Self {
        self.retry_settings().deadline = Some(limit);
        self
    }

    /// Uses this retry policy as it is (its backoff, budget, `Retry-After` ceiling and
    /// deadline); the client still decides which failures and requests are retried.
    /// Clones of a policy share its budget. A policy with or without time limits will
    /// do ([`Timed`](connection_retry::retry::Timed) or not).
    pub fn retry_policy(mut self, policy: impl Into<RetryPolicy<Timed>>) -> Self {
        self.s.retry = RetryChoice::Policy(policy.into());
        self
    }

    /// No retries at all (a stale pooled socket is still retried once for an
    /// idempotent request: that is not the server failing).
    pub fn no_retries(mut self) -> Self {
        self.s.retry = RetryChoice::Off;
        self
    }

    /// The circuit opens after `failures` in a row (connect failures, timeouts, a
    /// connection lost under a request, 5xx) and stays open `wait` (default 5 and
    /// 10 s).
    pub fn breaker(mut self, failures: u32, wait: Duration) -> Self {
        self.s.breaker = BreakerChoice::Settings { failures, wait };
        self
    }

    /// Uses this circuit breaker (shared with whoever else holds it).
    pub fn circuit_breaker(mut self, breaker: CircuitBreaker) -> Self {
        self.s.breaker = BreakerChoice::Breaker(breaker);
        self
    }

    /// No circuit breaker.
    pub fn no_circuit_breaker(mut self) -> Self {
        self.s.breaker = BreakerChoice::Off;
        self
    }

    /// At most `rate` requests a second, `burst` at once; requests over it wait for
    /// their turn. Every attempt takes a permit.
    pub fn rate_limit(mut self, rate: u32, burst: u32) -> Self {
        self.s.limit = LimitChoice::PerSecond { rate, burst };
        self
    }

    /// Uses this rate limiter (shared with whoever else holds it; its mode decides
    /// whether requests over the rate wait or fail).
    pub fn rate_limiter(mut self, limiter: RateLimiter) -> Self {
        self.s.limit = LimitChoice::Limiter(limiter);
        self
    }

    /// Hedged requests (default: off). See [`Hedge`].
    pub fn hedge(mut self, hedge: Hedge) -> Self {
        self.s.hedge = Some(hedge);
        self
    }

    /// The health request (default `GET /`, any status below 500, 5 s).
    pub fn probe(mut self, probe: Probe) -> Self {
        self.s.probe = probe;
        self
    }

    /// Publishes the policies' events (retries, circuit opened and closed, rate
    /// limited) on `sink`, for the policies the client builds from settings.
    pub fn events(mut self, sink: EventSink) -> Self {
        self.s.events = Some(sink);
        self
    }

    /// Trust only these roots (instead of the webpki roots) for `https://`.
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
    /// settings). Build it on the ring provider, like the rest of the workspace.
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub fn tls_config(mut self, config: Arc<rustls::ClientConfig>) -> Self {
        self.tls.config = Some(config);
        self
    }

    /// Validates and builds. Errors name the setting: `url`, `headers`, `auth`,
    /// `connect_timeout`, `request_timeout`, `read_timeout`, `pool_idle_timeout`,
    /// `max_response_size`, `max_retries`, `retry_backoff`, `retry_after_max`,
    /// `retry_budget`, `retry_deadline`, `breaker`, `rate_limit`, `hedge`, `probe`,
    /// `client_certificate`, `tls`.
    pub fn build(self) -> Result<HttpConfig, HttpError> {
        if let Some(e) = self.error {
            return Err(e.into());
        }
        let s = &self.s;
        require_nonzero("connect_timeout", s.connect_timeout)?;
        if let Some(t) = s.request_timeout {
            require_nonzero("request_timeout", t)?;
        }
        if let Some(t) = s.read_timeout {
            require_nonzero("read_timeout", t)?;
        }
        if let Some(t) = s.pool_idle_timeout {
            require_nonzero("pool_idle_timeout", t)?;
        }
        require_in_range(
            "max_response_size",
            s.max_response_size,
            1..=MAX_RESPONSE_LIMIT,
        )?;
        if let RetryChoice::Settings(r) = &s.retry {
            require_in_range("max_retries", r.max_retries, 0..=MAX_RETRIES_LIMIT)?;
            require_nonzero("retry_backoff", r.initial)?;
            require_nonzero("retry_backoff", r.max_delay)?;
            if r.max_delay < r.initial {
                return Err(ConfigError::new(
                    "retry_backoff",
                    "the ceiling is below the first delay",
                )
                .into());
            }
            require_nonzero("retry_after_max", r.retry_after_max)?;
            if let Some(ratio) = r.budget_ratio {
                if !(0.0..=1000.0).contains(&ratio) {
                    return Err(ConfigError::new(
                        "retry_budget",
                        format!("the ratio must be between 0 and 1000, not {ratio}"),
                    )
                    .into());
                }
            }
            if let Some(d) = r.deadline {
                require_nonzero("retry_deadline", d)?;
            }
        }
        if let BreakerChoice::Settings { failures, wait } = s.breaker {
            require_in_range("breaker", failures, 1..=u32::MAX)?;
            require_nonzero("breaker", wait)?;
        }
        if let LimitChoice::PerSecond { rate, burst } = s.limit {
            connection_retry::Quota::per_second(rate, burst)
                .map_err(|e| ConfigError::new("rate_limit", e.reason().to_owned()))?;
        }
        if let Some(h) = &s.hedge {
            h.validate()?;
        }
        require_nonzero("probe", s.probe.timeout)?;
        if let Some(status) = s.probe.expect {
            require_in_range("probe", status, 100..=599)?;
        }
        if !s.probe.path.starts_with('/') {
            return Err(ConfigError::new("probe", "the path must start with `/`").into());
        }
        let (endpoint, prefix, userinfo) = parse_base(&self.url)?;
        let mut auth = self.auth;
        if auth.is_none() {
            auth = userinfo;
        }
        #[cfg(feature = "tls")]
        let tls = self.tls.client_config()?;
        #[cfg(not(feature = "tls"))]
        if endpoint.tls() {
            return Err(ConfigError::new(
                "url",
                "https:// needs the `tls` feature of connection-transport-http",
            )
            .into());
        }
        Ok(HttpConfig {
            endpoint,
            prefix,
            auth,
            s: self.s,
            #[cfg(feature = "tls")]
            tls,
        })
    }
}

/// The endpoint, the prefix requests are appended to, and the URL's userinfo as a basic
/// `Authorization` header.
type Base = (Endpoint, Arc<str>, Option<(HeaderName, HeaderValue)>);

fn parse_base(raw: &str) -> Result<Base, ConfigError> {
    let mut url =
        Url::parse(raw.trim()).map_err(|e| ConfigError::new("url", format!("not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(ConfigError::new(
            "url",
            format!("scheme must be http or https, not `{}`", url.scheme()),
        ));
    }
    if url.fragment().is_some() {
        url.set_fragment(None);
    }
    // The endpoint keeps the userinfo so its redacted display shows that there was one.
    let endpoint =
        Endpoint::from_url(url.clone()).map_err(|e| ConfigError::new("url", e.to_string()))?;
    let userinfo = if url.username().is_empty() && url.password().is_none() {
        None
    } else {
        use base64::Engine;
        let user = percent_decode(url.username());
        let password = url.password().map(percent_decode).unwrap_or_default();
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        let _ = url.set_username("");
        let _ = url.set_password(None);
        Some((AUTHORIZATION, sensitive(&format!("Basic {encoded}"))?))
    };
    if url.query().is_some() {
        return Err(ConfigError::new(
            "url",
            "the base URL cannot have a query; give it with each request's path",
        ));
    }
    let text = url.as_str().trim_end_matches('/');
    Ok((endpoint, Arc::from(text), userinfo))
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(b: HttpConfigBuilder) -> &'static str {
        match b.build().unwrap_err() {
            HttpError::Config(c) => c.field(),
            other => panic!("{other}"),
        }
    }

    #[test]
    fn defaults_and_validation() {
        let c = HttpConfig::builder("http://127.0.0.1:9000/api/")
            .build()
            .unwrap();
        assert_eq!(&*c.prefix, "http://127.0.0.1:9000/api");
        assert_eq!(c.pool_idle_timeout(), Some(DEFAULT_POOL_IDLE_TIMEOUT));
        assert!(DEFAULT_POOL_IDLE_TIMEOUT < Duration::from_secs(5));
        assert_eq!(c.request_timeout(), Some(DEFAULT_REQUEST_TIMEOUT));
        let b = || HttpConfig::builder("http://x");
        assert_eq!(field(HttpConfig::builder("ws://x")), "url");
        assert_eq!(field(HttpConfig::builder("not a url")), "url");
        assert_eq!(field(HttpConfig::builder("http://x/?a=1")), "url");
        assert_eq!(
            field(b().connect_timeout(Duration::ZERO)),
            "connect_timeout"
        );
        assert_eq!(
            field(b().request_timeout(Duration::ZERO)),
            "request_timeout"
        );
        assert_eq!(field(b().read_timeout(Duration::ZERO)), "read_timeout");
        assert_eq!(
            field(b().request_timeout(Duration::from_secs(366 * 86_400))),
            "request_timeout"
        );
        assert_eq!(field(b().max_response_size(0)), "max_response_size");
        assert_eq!(field(b().max_retries(101)), "max_retries");
        assert_eq!(
            field(b().retry_backoff(Duration::from_secs(2), Duration::from_secs(1))),
            "retry_backoff"
        );
        assert_eq!(field(b().retry_budget(Some(-1.0))), "retry_budget");
        assert_eq!(field(b().breaker(0, Duration::from_secs(1))), "breaker");
        assert_eq!(field(b().rate_limit(0, 1)), "rate_limit");
        assert_eq!(field(b().hedge(Hedge::after(Duration::ZERO))), "hedge");
        assert_eq!(
            field(b().hedge(Hedge::at_percentile(1.5, Duration::from_millis(5)))),
            "hedge"
        );
        assert_eq!(field(b().probe(Probe::get("health"))), "probe");
        assert_eq!(field(b().header("bad name", "v")), "headers");
        assert_eq!(field(b().bearer_auth("bad\ntoken")), "auth");
        let again = c.to_builder().max_retries(1).build().unwrap();
        assert_eq!(again.endpoint(), c.endpoint());
    }

    #[test]
    fn credentials_are_redacted_and_userinfo_becomes_a_header() {
        let c = HttpConfig::builder("https://alice:pa%40ss@api.example.com/v1")
            .header("x-api-version", "k3y-like")
            .build()
            .unwrap();
        let shown = format!("{c:?}");
        for secret in ["pa%40ss", "pa@ss", "k3y-like", "YWxpY2U"] {
            assert!(!shown.contains(secret), "{secret} leaked in {shown}");
        }
        assert_eq!(&*c.prefix, "https://api.example.com/v1");
        let (name, value) = c.auth.clone().unwrap();
        assert_eq!(name, AUTHORIZATION);
        assert!(value.is_sensitive());
        // alice:pa@ss
        assert_eq!(value.to_str().unwrap(), "Basic YWxpY2U6cGFAc3M=");
        assert_eq!(
            c.endpoint().to_string(),
            "https://alice:***@api.example.com/v1"
        );
        assert_eq!(
            c.header_names().collect::<Vec<_>>(),
            ["authorization", "x-api-version"]
        );
        let c = HttpConfig::builder("http://x")
            .api_key("x-api-key", "k")
            .build()
            .unwrap();
        assert_eq!(c.header_names().next(), Some("x-api-key"));
    }
}
