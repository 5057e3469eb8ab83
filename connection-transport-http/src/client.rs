//! [`HttpClient`]: requests to one base URL through the policy stack.
//!
//! One request, from the outside in:
//!
//! ```text
//! send ─► prepare (URL, headers, body, limits, may it be repeated?)
//!      ─► retry policy (connection-retry's RetryPolicy: backoff, budget, Retry-After
//!      │   capped, deadline); the client classifies each failure for it:
//!      │     connect failure or connect timeout   ─► retried (nothing was sent), unless
//!      │                                             the body is a stream
//!      │     timeout, connection lost, 408 429 502 503 504
//!      │                                          ─► retried if the request may be
//!      │                                             repeated, else NotRetried says why
//!      │     anything else, and refusals           ─► returned
//!      └─► attempt: rate limiter (every attempt takes a permit) ─► circuit breaker
//!          permit ─► [hedge: a second copy after a delay; first answer wins]
//!          ─► exchange on reqwest, under the request timeout; a reused keep-alive
//!             socket found closed before any response is tried once more at once
//!             (idempotent requests only)
//!      ─► metrics and, for a supervised client, Traffic (latency, bytes, failures)
//! ```
//!
//! A retryable status is a "failure" only inside the loop: when the retries are spent,
//! `send` returns that last response, as reqwest would.

use std::cell::Cell;
use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use connection_core::{ConfigError, Endpoint, Error, Traffic};
use connection_retry::backoff::{BackoffStrategy, Jitter};
use connection_retry::limit::Quota;
use connection_retry::retry::Timed;
use connection_retry::retry::{RetryBudget, parse_retry_after};
use connection_retry::{CircuitBreaker, CircuitState, Classify, RateLimiter, RetryPolicy};
use reqwest::Method;
use reqwest::header::{ACCEPT, HeaderMap, HeaderValue, RETRY_AFTER, USER_AGENT};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tokio::time::Instant;
use url::Url;

use crate::body::Body;
use crate::config::{
    BreakerChoice, HEDGE_MIN_SAMPLES, HedgeDelay, HttpConfig, HttpConfigBuilder, LimitChoice,
    RetryChoice,
};
use crate::connector::{ATTEMPT, Attempt, ConnectLayer};
use crate::error::{HttpError, NotRetried, TimeoutKind, from_reqwest, is_retryable_status};
use crate::health::HealthReport;
use crate::metrics::{HttpMetrics, HttpMetricsSnapshot, Outcome};
use crate::request::{HttpRequest, RetryMode};
use crate::response::HttpResponse;

/// An HTTP client for one base URL: cheap to clone, usable from many tasks; clones share
/// the connection pool, the policies (retry budget, circuit breaker, rate limiter) and
/// the metrics.
///
/// It is also the I/O handle of an [`HttpTransport`](crate::HttpTransport)'s
/// connections: a supervisor, a manager or a failover group hands it out, and the
/// traffic it carries is recorded into that connection's metrics, failures included
/// (the passive health signal).
///
/// ```no_run
/// use connection_transport_http::{HttpClient, HttpRequest, Method};
///
/// #[derive(serde::Deserialize)]
/// struct User { name: String }
///
/// # async fn demo() -> Result<(), connection_transport_http::HttpError> {
/// let client = HttpClient::builder("https://api.example.com/v1")
///     .bearer_auth("token")
///     .build_client()?;
/// let user: User = client.get_json("/users/7").await?;
/// // POST is retried only with an Idempotency-Key (or an explicit opt-in).
/// let created = client
///     .request(Method::POST, "/users")
///     .idempotency_key("create-user-7f3a")
///     .json(&serde_json::json!({"name": user.name}))
///     .send()
///     .await?;
/// println!("{} after {} attempt(s)", created.status(), created.attempts());
/// println!("{:?}", client.metrics());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct HttpClient {
    shared: Arc<Shared>,
    /// The supervised connection this handle belongs to, if any.
    bound: Option<Arc<Bound>>,
}

struct Shared {
    http: reqwest::Client,
    endpoint: Endpoint,
    config: HttpConfig,
    retry: Option<RetryPolicy<Timed>>,
    breaker: Option<CircuitBreaker>,
    limiter: Option<RateLimiter>,
    metrics: Arc<HttpMetrics>,
}

/// What a supervised connection gives its I/O handles: where to record traffic, and the
/// signal that the server can no longer be reached.
pub(crate) struct Bound {
    pub(crate) traffic: OnceLock<Traffic>,
    pub(crate) lost: watch::Sender<Option<Arc<Error>>>,
}

impl fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpClient")
            .field("endpoint", &self.shared.endpoint)
            .field("supervised", &self.bound.is_some())
            .finish_non_exhaustive()
    }
}

impl HttpClient {
    /// A configuration builder for the base URL; finish with
    /// [`build_client`](HttpConfigBuilder::build_client).
    pub fn builder(url: impl Into<String>) -> HttpConfigBuilder {
        HttpConfig::builder(url)
    }

    /// A client with this configuration. Policies described by settings are made here,
    /// once, and shared by the client's clones.
    pub fn new(config: HttpConfig) -> Result<Self, HttpError> {
        let metrics = Arc::new(HttpMetrics::new());
        let mut headers = HeaderMap::new();
        for (name, value) in config.auth.iter().chain(&config.s.headers) {
            headers.append(name.clone(), value.clone());
        }
        let agent = config.s.user_agent.clone().unwrap_or_else(|| {
            concat!("connection-transport-http/", env!("CARGO_PKG_VERSION")).to_owned()
        });
        let agent = HeaderValue::try_from(agent)
            .map_err(|_| ConfigError::new("user_agent", "not a valid header value"))?;
        headers.insert(USER_AGENT, agent);
        let mut b = reqwest::Client::builder()
            .default_headers(headers)
            .pool_idle_timeout(config.s.pool_idle_timeout)
            .connector_layer(ConnectLayer {
                default_timeout: config.s.connect_timeout,
                metrics: metrics.clone(),
            });
        if let Some(n) = config.s.pool_max_idle_per_host {
            b = b.pool_max_idle_per_host(n);
        }
        #[cfg(feature = "tls")]
        {
            b = b.tls_backend_preconfigured((*config.tls).clone());
        }
        let http = b
            .build()
            .map_err(|e| ConfigError::new("tls", e.without_url().to_string()))?;
        let events = config.s.events.clone();
        let retry = match &config.s.retry {
            RetryChoice::Off => None,
            RetryChoice::Policy(p) => Some(p.clone()),
            RetryChoice::Settings(s) if s.max_retries == 0 => None,
            RetryChoice::Settings(s) => {
                let backoff = BackoffStrategy::exponential(s.initial, 2.0)
                    .max_delay(s.max_delay)
                    .jitter(Jitter::Full)
                    .max_retries(s.max_retries)
                    .build()?;
                // Timed, so a deadline can be set or not without changing the type.
                let mut b = RetryPolicy::builder()
                    .backoff(backoff)
                    .retry_after_cap(s.retry_after_max)
                    .timed();
                if let Some(ratio) = s.budget_ratio {
                    b = b.budget(RetryBudget::builder().ratio(ratio).build()?);
                }
                if let Some(d) = s.deadline {
                    b = b.max_elapsed(d);
                }
                if let Some(sink) = &events {
                    b = b.events(sink.clone());
                }
                Some(b.build()?)
            }
        };
        let breaker = match &config.s.breaker {
            BreakerChoice::Off => None,
            BreakerChoice::Breaker(b) => Some(b.clone()),
            BreakerChoice::Settings { failures, wait } => {
                let mut b = CircuitBreaker::builder()
                    .consecutive_failures(*failures)
                    .wait(*wait);
                if let Some(sink) = &events {
                    b = b.events(sink.clone());
                }
                Some(b.build()?)
            }
        };
        let limiter = match &config.s.limit {
            LimitChoice::Off => None,
            LimitChoice::Limiter(l) => Some(l.clone()),
            LimitChoice::PerSecond { rate, burst } => {
                let mut b = RateLimiter::builder(Quota::per_second(*rate, *burst)?);
                if let Some(sink) = &events {
                    b = b.events(sink.clone());
                }
                Some(b.build())
            }
        };
        Ok(Self {
            shared: Arc::new(Shared {
                http,
                endpoint: config.endpoint.clone(),
                config,
                retry,
                breaker,
                limiter,
                metrics,
            }),
            bound: None,
        })
    }

    /// The same client, recording into a supervised connection's traffic.
    pub(crate) fn bound_to(&self, bound: Arc<Bound>) -> Self {
        Self {
            shared: self.shared.clone(),
            bound: Some(bound),
        }
    }

    /// The base URL as an endpoint (redacted when displayed).
    pub fn endpoint(&self) -> &Endpoint {
        &self.shared.endpoint
    }

    /// The configuration.
    pub fn config(&self) -> &HttpConfig {
        &self.shared.config
    }

    /// The client's metrics now.
    pub fn metrics(&self) -> HttpMetricsSnapshot {
        self.shared.metrics.snapshot()
    }

    /// The live metrics, for a caller that reads them often.
    pub fn metrics_handle(&self) -> &Arc<HttpMetrics> {
        &self.shared.metrics
    }

    /// The retry policy, if retries are on.
    pub fn retry_policy(&self) -> Option<&RetryPolicy<Timed>> {
        self.shared.retry.as_ref()
    }

    /// The circuit breaker, if one.
    pub fn circuit_breaker(&self) -> Option<&CircuitBreaker> {
        self.shared.breaker.as_ref()
    }

    /// The rate limiter, if one.
    pub fn rate_limiter(&self) -> Option<&RateLimiter> {
        self.shared.limiter.as_ref()
    }

    /// A request builder for `method` and `path` (relative to the base URL).
    pub fn request(&self, method: Method, path: impl Into<String>) -> RequestBuilder<'_> {
        RequestBuilder {
            client: self,
            request: HttpRequest::new(method, path),
        }
    }

    /// `GET path`, whatever the status (see [`get_json`](Self::get_json) for a 2xx-or-
    /// error helper).
    pub async fn get(&self, path: impl Into<String>) -> Result<HttpResponse, HttpError> {
        self.send(HttpRequest::get(path)).await
    }

    /// `GET path` with `Accept: application/json`; a non-2xx status is
    /// [`HttpError::Status`], the body is decoded into `T`.
    pub async fn get_json<T: DeserializeOwned>(
        &self,
        path: impl Into<String>,
    ) -> Result<T, HttpError> {
        self.send(HttpRequest::get(path).header(ACCEPT.as_str(), "application/json"))
            .await?
            .error_for_status()?
            .json()
    }

    /// `POST path` with `body` as JSON; a non-2xx status is [`HttpError::Status`].
    /// Retried only with an `Idempotency-Key` (use [`request`](Self::request) to set
    /// one).
    pub async fn post_json<B: Serialize + ?Sized>(
        &self,
        path: impl Into<String>,
        body: &B,
    ) -> Result<HttpResponse, HttpError> {
        self.send(HttpRequest::new(Method::POST, path).json(body))
            .await?
            .error_for_status()
    }

    /// `PUT path` with `body` as JSON; a non-2xx status is [`HttpError::Status`].
    pub async fn put_json<B: Serialize + ?Sized>(
        &self,
        path: impl Into<String>,
        body: &B,
    ) -> Result<HttpResponse, HttpError> {
        self.send(HttpRequest::new(Method::PUT, path).json(body))
            .await?
            .error_for_status()
    }

    /// `DELETE path`, whatever the status.
    pub async fn delete(&self, path: impl Into<String>) -> Result<HttpResponse, HttpError> {
        self.send(HttpRequest::new(Method::DELETE, path)).await
    }

    /// Sends `request` through the policy stack (see the [crate docs](crate)) and reads
    /// the response body. Any status comes back as a response; errors are failures to
    /// get one.
    pub async fn send(&self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        let shared = &*self.shared;
        let prepared = shared.prepare(request)?;
        let started = Instant::now();
        let _in_flight = InFlight::enter(&shared.metrics);
        let attempts = AtomicU32::new(0);
        let result = shared.execute(&prepared, &attempts).await;
        self.finish(&prepared, started, attempts.into_inner(), result)
    }

    /// Records a finished request; sets the response's attempts and elapsed time.
    fn finish(
        &self,
        p: &Prepared,
        started: Instant,
        attempts: u32,
        result: Result<HttpResponse, HttpError>,
    ) -> Result<HttpResponse, HttpError> {
        let shared = &*self.shared;
        let now = Instant::now();
        let elapsed = now.saturating_duration_since(started);
        let retries = attempts.saturating_sub(1);
        let traffic = self.bound.as_ref().and_then(|b| b.traffic.get());
        match result {
            Ok(mut response) => {
                let status = response.status.as_u16();
                let bytes_in = response.body.len() as u64;
                let failed = response.status.is_server_error();
                shared.metrics.record(
                    now,
                    Outcome {
                        status: Some(status),
                        failed,
                        latency: elapsed,
                        bytes_in,
                        bytes_out: p.bytes_out,
                        retries,
                    },
                );
                if let Some(t) = traffic {
                    t.sent(1, p.bytes_out);
                    t.received(1, bytes_in);
                    t.request(elapsed);
                    if failed {
                        t.failure(&Error::Status {
                            endpoint: shared.endpoint.clone(),
                            status,
                            retry_after: retry_after(&response.headers),
                        });
                    }
                }
                response.attempts = attempts.max(1);
                response.elapsed = elapsed;
                Ok(response)
            }
            Err(error) => {
                shared.metrics.record(
                    now,
                    Outcome {
                        status: None,
                        failed: true,
                        latency: elapsed,
                        bytes_in: 0,
                        bytes_out: p.bytes_out,
                        retries,
                    },
                );
                if let Some(bound) = &self.bound {
                    if counts_as_failure(&error) {
                        let core = Error::from(error.clone());
                        if let Some(t) = traffic {
                            t.failure(&core);
                        }
                        if matches!(
                            error.inner(),
                            HttpError::Connect { .. }
                                | HttpError::Timeout {
                                    kind: TimeoutKind::Connect,
                                    ..
                                }
                        ) {
                            // The server cannot be reached any more: the supervised
                            // "connection" is lost, and its supervisor takes over.
                            bound.lost.send_if_modified(|lost| {
                                lost.get_or_insert_with(|| Arc::new(core));
                                true
                            });
                        }
                    }
                }
                Err(error)
            }
        }
    }

    /// One health request (the configured [`Probe`](crate::Probe)): its round trip, or
    /// why it failed. It bypasses retries, the breaker and the limiter (it measures the
    /// server, not our policies) and is not counted in the request metrics.
    pub async fn probe(&self) -> Result<Duration, HttpError> {
        let (rtt, _) = self.probe_status().await?;
        Ok(rtt)
    }

    async fn probe_status(&self) -> Result<(Duration, u16), HttpError> {
        let shared = &*self.shared;
        let probe = &shared.config.s.probe;
        let p = shared.prepare(
            HttpRequest::new(probe.method.clone(), probe.path.clone()).timeout(probe.timeout),
        )?;
        let started = Instant::now();
        let response = shared.with_stale_retry(&p).await?;
        let rtt = started.elapsed();
        let status = response.status.as_u16();
        if !probe.accepts(status) {
            return Err(HttpError::Status {
                endpoint: shared.endpoint.clone(),
                status,
                retry_after: retry_after(&response.headers),
            });
        }
        Ok((rtt, status))
    }

    /// A health report, as the TypeScript seed's `healthCheck` gives: whether the probe
    /// passed, its response time, and details (status, error, circuit state).
    pub async fn health_check(&self) -> HealthReport {
        let started = Instant::now();
        let result = self.probe_status().await;
        let response_time = started.elapsed();
        let circuit = self.shared.breaker.as_ref().map(|b| match b.state() {
            CircuitState::Closed => "closed",
            CircuitState::Open => "open",
            CircuitState::HalfOpen => "half-open",
            _ => "isolated",
        });
        let (healthy, status, error) = match result {
            Ok((_, status)) => (true, Some(status), None),
            Err(e) => (false, e.status(), Some(e.to_string())),
        };
        HealthReport {
            healthy,
            response_time,
            status,
            error,
            endpoint: self.shared.endpoint.to_string(),
            circuit,
        }
    }
}

/// Keeps the in-flight gauge right even when the request's future is dropped.
struct InFlight<'a>(&'a HttpMetrics);

impl<'a> InFlight<'a> {
    fn enter(metrics: &'a HttpMetrics) -> Self {
        metrics.enter();
        Self(metrics)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.leave();
    }
}

/// A request ready to go out, as many times as it may.
pub(crate) struct Prepared {
    method: Method,
    url: Url,
    headers: HeaderMap,
    body: Body,
    timeout: Option<Duration>,
    read_timeout: Option<Duration>,
    connect_timeout: Duration,
    /// Why a failure after which the request may have reached the server cannot be
    /// retried; `None`: it can.
    repeat: Option<NotRetried>,
    /// `RetryMode::Never`, or a stream: not even a connect failure is retried.
    no_retry: bool,
    bytes_out: u64,
}

/// Whether an outcome counts against the server: for the breaker and the passive health
/// signal. Local refusals and bodies we could not decode do not.
fn counts_as_failure(error: &HttpError) -> bool {
    !matches!(
        error.inner(),
        HttpError::Config(_)
            | HttpError::InvalidRequest { .. }
            | HttpError::Rejected(_)
            | HttpError::Decode { .. }
            | HttpError::BodyTooLarge { .. }
            | HttpError::Body { .. }
            | HttpError::Status { .. }
    )
}

/// The server's `Retry-After`, either form.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?;
    parse_retry_after(value, SystemTime::now())
}

/// One attempt's failure, as the retry policy sees it.
struct AttemptError {
    error: HttpError,
    /// The response behind a retryable status: returned if the retries run out.
    response: Option<Box<HttpResponse>>,
    retryable: bool,
}

impl fmt::Display for AttemptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.error.fmt(f)
    }
}

impl Classify for AttemptError {
    fn is_retryable(&self) -> bool {
        self.retryable
    }

    fn retry_after(&self) -> Option<Duration> {
        self.error.retry_after()
    }

    fn rejection(&self) -> Option<connection_core::RejectReason> {
        match &self.error {
            HttpError::Rejected(r) => Some(r.reason),
            _ => None,
        }
    }
}

impl From<Error> for AttemptError {
    /// The policy's own time limits. Final: the policy cannot know whether the request
    /// it cut was safe to repeat.
    fn from(e: Error) -> Self {
        Self {
            error: HttpError::from(e),
            response: None,
            retryable: false,
        }
    }
}

impl Shared {
    fn prepare(&self, request: HttpRequest) -> Result<Prepared, HttpError> {
        if let Some(reason) = request.error.clone() {
            return Err(HttpError::invalid(&self.endpoint, reason));
        }
        if !request.path.starts_with('/') {
            return Err(HttpError::invalid(
                &self.endpoint,
                "the path must start with `/`",
            ));
        }
        let url = Url::parse(&format!("{}{}", self.config.prefix, request.path))
            .map_err(|e| HttpError::invalid(&self.endpoint, format!("bad path: {e}")))?;
        let repeat = request.not_retryable();
        let no_retry = matches!(
            repeat,
            Some(NotRetried::OptedOut | NotRetried::StreamingBody)
        );
        let s = &self.config.s;
        Ok(Prepared {
            bytes_out: request.body.len(),
            method: request.method,
            url,
            headers: request.headers,
            body: request.body,
            timeout: request.timeout.or(s.request_timeout),
            read_timeout: request.read_timeout.or(s.read_timeout),
            connect_timeout: request.connect_timeout.unwrap_or(s.connect_timeout),
            repeat,
            no_retry,
        })
    }

    async fn execute(&self, p: &Prepared, attempts: &AtomicU32) -> Result<HttpResponse, HttpError> {
        let policy = match &self.retry {
            Some(policy) => policy,
            None => {
                attempts.store(1, Relaxed);
                return self.guarded(p).await;
            }
        };
        let outcome = policy
            .on(&self.endpoint)
            .run(|| {
                attempts.fetch_add(1, Relaxed);
                let attempt = self.guarded(p);
                async move { classify(p, attempt.await) }
            })
            .await;
        match outcome {
            Ok(response) => Ok(response),
            Err(AttemptError {
                response: Some(response),
                ..
            }) => Ok(*response),
            Err(AttemptError {
                error,
                retryable: false,
                ..
            }) if error.is_retryable() && !matches!(error, HttpError::Rejected(_)) => {
                match p.repeat {
                    Some(reason) => Err(HttpError::NotRetried {
                        reason,
                        error: Box::new(error),
                    }),
                    None => Err(error),
                }
            }
            Err(e) => Err(e.error),
        }
    }

    /// One attempt under the limiter and the breaker.
    async fn guarded(&self, p: &Prepared) -> Result<HttpResponse, HttpError> {
        if let Some(limiter) = &self.limiter {
            if let Err(refused) = limiter.acquire().await {
                self.metrics.limiter_rejection();
                return Err(HttpError::Rejected(refused.endpoint(&self.endpoint)));
            }
        }
        let permit = match &self.breaker {
            None => None,
            Some(breaker) => match breaker.try_acquire() {
                Ok(permit) => Some(permit),
                Err(refused) => {
                    self.metrics.breaker_rejection();
                    return Err(HttpError::Rejected(refused.endpoint(&self.endpoint)));
                }
            },
        };
        let result = self.hedged(p).await;
        if let Some(permit) = permit {
            let failed = match &result {
                Ok(response) => response.status.is_server_error(),
                Err(e) => counts_as_failure(e),
            };
            if failed {
                permit.failure();
            } else {
                permit.success();
            }
        }
        result
    }

    /// One attempt, with a hedged second copy when configured and allowed.
    async fn hedged(&self, p: &Prepared) -> Result<HttpResponse, HttpError> {
        let hedge = match self.config.s.hedge {
            Some(h) if p.repeat.is_none() => h,
            _ => return self.with_stale_retry(p).await,
        };
        let delay = self.hedge_delay(hedge.delay);
        let first = self.with_stale_retry(p);
        tokio::pin!(first);
        tokio::select! {
            biased;
            result = &mut first => return result,
            () = tokio::time::sleep(delay) => {}
        }
        if let Some(budget) = self.retry.as_ref().and_then(RetryPolicy::budget) {
            if !budget.withdraw() {
                return first.await;
            }
        }
        self.metrics.hedge();
        tracing::debug!(endpoint = %self.endpoint, ?delay, "hedging: a second copy");
        let second = self.with_stale_retry(p);
        tokio::pin!(second);
        let answered = |r: &Result<HttpResponse, HttpError>| matches!(r, Ok(resp) if !is_retryable_status(resp.status.as_u16()));
        // The first answer wins; dropping the other future cancels its request.
        tokio::select! {
            result = &mut first => {
                if answered(&result) {
                    return result;
                }
                let other = second.await;
                if answered(&other) {
                    self.metrics.hedge_win();
                    return other;
                }
                result
            }
            result = &mut second => {
                if answered(&result) {
                    self.metrics.hedge_win();
                    return result;
                }
                let other = first.await;
                if answered(&other) { other } else { result }
            }
        }
    }

    fn hedge_delay(&self, delay: HedgeDelay) -> Duration {
        match delay {
            HedgeDelay::Fixed(d) => d,
            HedgeDelay::Percentile {
                quantile,
                floor,
                fallback,
            } => {
                let latency = self.metrics.latency();
                if latency.snapshot().count < HEDGE_MIN_SAMPLES {
                    fallback
                } else {
                    latency.quantile(quantile).max(floor)
                }
            }
        }
    }

    /// One exchange; a reused keep-alive socket the server had closed is worth one more
    /// exchange at once, for a request that may be repeated: the server never saw it
    /// fail, it was closing an idle socket.
    async fn with_stale_retry(&self, p: &Prepared) -> Result<HttpResponse, HttpError> {
        match self.once(p).await {
            Err(HttpError::Closed { reused: true, .. }) if p.repeat.is_none() => {
                self.metrics.stale_retry();
                tracing::debug!(endpoint = %self.endpoint, "stale keep-alive socket; trying again");
                self.once(p).await
            }
            other => other,
        }
    }

    /// One exchange under the request timeout.
    async fn once(&self, p: &Prepared) -> Result<HttpResponse, HttpError> {
        let attempt = Attempt {
            fresh: Cell::new(false),
            connect_timeout: p.connect_timeout,
        };
        let exchange = ATTEMPT.scope(attempt, self.exchange(p));
        match p.timeout {
            None => exchange.await,
            Some(limit) => match tokio::time::timeout(limit, exchange).await {
                Ok(result) => result,
                Err(_) => Err(HttpError::timeout(
                    &self.endpoint,
                    TimeoutKind::Request,
                    limit,
                )),
            },
        }
    }

    /// Sends and reads the whole response. Runs inside the attempt's task-local.
    async fn exchange(&self, p: &Prepared) -> Result<HttpResponse, HttpError> {
        let fresh = || ATTEMPT.try_with(|a| a.fresh.get()).unwrap_or(true);
        let mut request = reqwest::Request::new(p.method.clone(), p.url.clone());
        *request.headers_mut() = p.headers.clone();
        *request.body_mut() = match p.body.for_attempt() {
            Some(body) => Some(body),
            None if p.body.is_replayable() => None,
            None => {
                return Err(HttpError::invalid(
                    &self.endpoint,
                    "the streaming body was consumed by an earlier attempt",
                ));
            }
        };
        let sending = self.http.execute(request);
        let response = match p.read_timeout {
            None => sending.await,
            Some(limit) => tokio::time::timeout(limit, sending)
                .await
                .map_err(|_| HttpError::timeout(&self.endpoint, TimeoutKind::Read, limit))?,
        };
        let mut response = response.map_err(|e| from_reqwest(&self.endpoint, e, fresh()))?;
        let limit = self.config.s.max_response_size;
        if response.content_length().is_some_and(|n| n > limit as u64) {
            return Err(HttpError::BodyTooLarge {
                endpoint: self.endpoint.clone(),
                limit,
            });
        }
        let status = response.status();
        let version = response.version();
        let headers = std::mem::take(response.headers_mut());
        let body = self.read_body(&mut response, p.read_timeout, fresh).await?;
        Ok(HttpResponse {
            status,
            version,
            headers,
            body,
            endpoint: self.endpoint.clone(),
            attempts: 0,
            elapsed: Duration::ZERO,
        })
    }

    async fn read_body(
        &self,
        response: &mut reqwest::Response,
        read_timeout: Option<Duration>,
        fresh: impl Fn() -> bool,
    ) -> Result<Bytes, HttpError> {
        let limit = self.config.s.max_response_size;
        // One chunk (the common case for small bodies) is handed over without a copy.
        let mut first: Option<Bytes> = None;
        let mut rest: Option<BytesMut> = None;
        let mut total = 0usize;
        loop {
            let next = match read_timeout {
                None => response.chunk().await,
                Some(l) => tokio::time::timeout(l, response.chunk())
                    .await
                    .map_err(|_| HttpError::timeout(&self.endpoint, TimeoutKind::Read, l))?,
            };
            let chunk = match next {
                Ok(Some(chunk)) => chunk,
                Ok(None) => break,
                Err(e) => {
                    // The response had begun: a cut here is not a stale socket.
                    return Err(match from_reqwest(&self.endpoint, e, fresh()) {
                        HttpError::Closed { endpoint, .. } => HttpError::Io {
                            endpoint,
                            source: Arc::new(std::io::Error::new(
                                std::io::ErrorKind::UnexpectedEof,
                                "the connection closed in the middle of the response body",
                            )),
                        },
                        other => other,
                    });
                }
            };
            total = total.saturating_add(chunk.len());
            if total > limit {
                return Err(HttpError::BodyTooLarge {
                    endpoint: self.endpoint.clone(),
                    limit,
                });
            }
            match (&mut first, &mut rest) {
                (None, None) => first = Some(chunk),
                (Some(f), None) => {
                    let mut buf = BytesMut::with_capacity(f.len() + chunk.len());
                    buf.extend_from_slice(f);
                    buf.extend_from_slice(&chunk);
                    first = None;
                    rest = Some(buf);
                }
                (_, Some(buf)) => buf.extend_from_slice(&chunk),
            }
        }
        Ok(match (first, rest) {
            (_, Some(buf)) => buf.freeze(),
            (Some(f), None) => f,
            (None, None) => Bytes::new(),
        })
    }
}

/// What the retry policy learns from one attempt.
fn classify(
    p: &Prepared,
    result: Result<HttpResponse, HttpError>,
) -> Result<HttpResponse, AttemptError> {
    match result {
        Ok(response) if is_retryable_status(response.status.as_u16()) => {
            let error = HttpError::Status {
                endpoint: response.endpoint.clone(),
                status: response.status.as_u16(),
                retry_after: retry_after(&response.headers),
            };
            Err(AttemptError {
                error,
                response: Some(Box::new(response)),
                retryable: p.repeat.is_none(),
            })
        }
        Ok(response) => Ok(response),
        Err(error) => {
            let retryable = match error.inner() {
                // Local refusals: the breaker fails fast, the limiter already waited
                // as long as it was allowed to.
                HttpError::Rejected(_) => false,
                // Nothing was sent: safe for any request that can be sent again.
                _ if error.is_connect_phase() => !p.no_retry,
                e if e.is_retryable() => p.repeat.is_none(),
                _ => false,
            };
            Err(AttemptError {
                error,
                response: None,
                retryable,
            })
        }
    }
}

/// A request being built for one client; [`send`](Self::send) sends it. Setters never
/// fail: a bad header is reported by `send`.
#[derive(Debug)]
#[must_use = "a request does nothing until sent"]
pub struct RequestBuilder<'a> {
    client: &'a HttpClient,
    request: HttpRequest,
}

macro_rules! delegate {
    ($($(#[$doc:meta])* fn $name:ident($($arg:ident: $ty:ty),*);)*) => {$(
        $(#[$doc])*
        pub fn $name(mut self, $($arg: $ty),*) -> Self {
            self.request = self.request.$name($($arg),*);
            self
        }
    )*};
}

impl RequestBuilder<'_> {
    delegate! {
        /// See [`HttpRequest::header`].
        fn header(name: &str, value: &str);
        /// See [`HttpRequest::headers`].
        fn headers(headers: HeaderMap);
        /// See [`HttpRequest::idempotency_key`].
        fn idempotency_key(key: &str);
        /// See [`HttpRequest::timeout`].
        fn timeout(limit: Duration);
        /// See [`HttpRequest::read_timeout`].
        fn read_timeout(limit: Duration);
        /// See [`HttpRequest::connect_timeout`].
        fn connect_timeout(limit: Duration);
        /// See [`HttpRequest::retry`].
        fn retry(mode: RetryMode);
    }

    /// See [`HttpRequest::body`].
    pub fn body(mut self, body: impl Into<Body>) -> Self {
        self.request = self.request.body(body);
        self
    }

    /// See [`HttpRequest::json`].
    pub fn json<T: Serialize + ?Sized>(mut self, value: &T) -> Self {
        self.request = self.request.json(value);
        self
    }

    /// The request as built so far.
    pub fn build(self) -> HttpRequest {
        self.request
    }

    /// Sends it: see [`HttpClient::send`].
    pub async fn send(self) -> Result<HttpResponse, HttpError> {
        self.client.send(self.request).await
    }
}

impl HttpConfigBuilder {
    /// Builds the configuration and a client with it.
    pub fn build_client(self) -> Result<HttpClient, HttpError> {
        HttpClient::new(self.build()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_send_and_the_client_is_shareable() {
        fn send<T: Send>(_: &T) {}
        fn shareable<T: Send + Sync + Clone + 'static>() {}
        shareable::<HttpClient>();
        let client = HttpClient::builder("http://127.0.0.1:1")
            .build_client()
            .unwrap();
        send(&client.send(HttpRequest::get("/")));
        send(&client.get_json::<serde_json::Value>("/"));
        send(&client.probe());
        send(&client.health_check());
    }
}
