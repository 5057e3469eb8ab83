//! # connection-transport-http
//!
//! A managed HTTP client for one base URL, on reqwest 0.13 and rustls (ring), that
//! retries only what is safe to retry, and that a supervisor, a connection manager or a
//! failover group can hand to the application as the I/O handle of an
//! [`HttpTransport`]'s connections.
//!
//! ## What is retried, and why only that
//!
//! A request is retried when the failure says trying again may work *and* trying again
//! cannot do harm:
//!
//! - a connect failure or connect timeout (nothing was sent) is retried for any request
//!   whose body can be sent again;
//! - a timeout, a connection lost under the request, or a status 408, 429, 502, 503 or
//!   504 is retried only for a request that is idempotent: GET, HEAD, OPTIONS, TRACE,
//!   PUT or DELETE, or POST and PATCH that carry an `Idempotency-Key` header or opt in
//!   ([`RetryMode::Always`]). Otherwise the error says why it was not
//!   ([`HttpError::NotRetried`]);
//! - a streaming body ([`Body::stream`]) is consumed by the first attempt: never
//!   retried, and the error says so.
//!
//! The retry loop is connection-retry's [`RetryPolicy`]:
//! exponential backoff with jitter, a retry budget (retries add at most 20 % load, so a
//! failing dependency is not hammered), a deadline, and the server's `Retry-After` in
//! both forms (seconds and HTTP-date), capped. The circuit breaker and the rate limiter
//! are connection-retry's too, shared by every clone of a client. reqwest-retry
//! (reqwest-middleware) retries POST like GET and ignores `Retry-After`; reqwest's own
//! retry module has no backoff.
//!
//! ## Stale keep-alive sockets
//!
//! A request sent on a pooled socket that the server closes at that moment fails with
//! "connection closed before message completed" (hyper#2136). Two defences: pooled
//! sockets idle at most 4 s (below the 5 s keep-alive of Node and Apache; reqwest's
//! default is 90 s), and such a failure on a *reused* socket is tried once more at once
//! when the request is idempotent (the client tells a reused socket from a fresh one
//! through a layer on reqwest's connector).
//!
//! ## Hedged requests
//!
//! With [`Hedge`], an idempotent request that has not answered within a delay (fixed, or
//! a percentile of the client's own latency) gets a second copy; the first answer wins
//! and the other is cancelled. Hedges are drawn from the retry budget and counted in the
//! metrics.
//!
//! ## TLS: one crypto provider
//!
//! reqwest is built with `rustls-no-provider` and handed a rustls `ClientConfig` built
//! on ring (webpki roots, or your roots; client certificates), so aws-lc-rs is never
//! compiled in (`cargo tree -i aws-lc-sys` finds nothing). A certificate that does not
//! verify is [`HttpError::Tls`], never retried. TLS is the default feature `tls`;
//! without it, `https://` base URLs are refused naming the feature.
//!
//! ## Secrets
//!
//! Auth helpers ([`bearer_auth`](HttpConfigBuilder::bearer_auth),
//! [`api_key`](HttpConfigBuilder::api_key), [`basic_auth`](HttpConfigBuilder::basic_auth),
//! a URL's userinfo) produce sensitive header values; no `Debug`, error, event or metric
//! prints a header value, a password or a secret query value, and reqwest's errors have
//! their URL removed before they are kept.
//!
//! ## Example
//!
//! ```no_run
//! use connection_transport_http::{HttpClient, HttpRequest, Method};
//! use std::time::Duration;
//!
//! # async fn demo() -> Result<(), connection_transport_http::HttpError> {
//! let client = HttpClient::builder("https://api.example.com/v1")
//!     .bearer_auth("token")
//!     .request_timeout(Duration::from_secs(5))
//!     .max_retries(3)
//!     .build_client()?;
//! let stock: serde_json::Value = client.get_json("/stock/42").await?;
//! let reply = client
//!     .send(
//!         HttpRequest::new(Method::POST, "/orders")
//!             .idempotency_key("order-7f3a")
//!             .json(&serde_json::json!({"item": 42, "seen": stock})),
//!     )
//!     .await?;
//! println!("{} in {:?}, {} attempt(s)", reply.status(), reply.elapsed(), reply.attempts());
//! println!("{}", client.metrics().to_json());
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod body;
mod client;
mod config;
mod connector;
mod error;
mod health;
pub mod metrics;
mod request;
mod response;
mod settings;
#[cfg(feature = "tls")]
mod tls;
mod transport;

pub use body::Body;
pub use client::{HttpClient, RequestBuilder};
pub use config::{
    DEFAULT_BREAKER_FAILURES, DEFAULT_BREAKER_WAIT, DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_MAX_RESPONSE_SIZE, DEFAULT_MAX_RETRIES, DEFAULT_POOL_IDLE_TIMEOUT,
    DEFAULT_PROBE_TIMEOUT, DEFAULT_REQUEST_TIMEOUT, DEFAULT_RETRY_AFTER_MAX,
    DEFAULT_RETRY_BUDGET_RATIO, DEFAULT_RETRY_INITIAL_DELAY, DEFAULT_RETRY_MAX_DELAY, Hedge,
    HedgeDelay, HttpConfig, HttpConfigBuilder, MAX_RESPONSE_LIMIT, MAX_RETRIES_LIMIT, Probe,
};
pub use error::{HttpError, NotRetried, TimeoutKind, is_retryable_status};
pub use health::HealthReport;
pub use metrics::{HttpMetrics, HttpMetricsSnapshot};
pub use request::{HttpRequest, IDEMPOTENCY_KEY, RetryMode, is_idempotent_method};
pub use response::HttpResponse;
pub use settings::{ENV_PREFIX, HttpSettings};
pub use transport::{HttpConnection, HttpTransport};

/// The body bytes type.
pub use bytes::Bytes;
/// The policies a client composes, to share one between clients or tune it.
pub use connection_retry::{CircuitBreaker, CircuitState, EventSink, RateLimiter, RetryPolicy};
/// HTTP vocabulary, from the `http` crate through reqwest.
pub use reqwest::header;
pub use reqwest::{Method, StatusCode, Version};

/// The rustls crate, for root stores, certificates and keys.
#[cfg(feature = "tls")]
#[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
pub use rustls;
