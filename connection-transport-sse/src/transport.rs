//! [`SseTransport`]: one request per `connect()`, redirects followed by hand, the
//! response checked the way the processing model asks.

use std::sync::Arc;
use std::time::Duration;

use connection_core::{Endpoint, Error, Transport};
use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode};

use crate::backoff::SseBackoff;
use crate::config::SseConfig;
use crate::connection::SseConnection;
use crate::error::SseError;
use crate::source::{Source, SseEvents};

/// Opens event streams: a [`connection_core::Transport`] whose connection is one HTTP
/// response being read.
///
/// Each `connect()` sends one request (following redirects) with `Accept:
/// text/event-stream`, `Cache-Control: no-cache`, the configured headers and body, and
/// `Last-Event-ID` when there is a last event ID (never an empty one). It succeeds on
/// 200 with `Content-Type: text/event-stream` (the stream is then read by a task of the
/// connection), and on 204 No Content with a connection that has already ended for
/// good (`DisconnectReason::CloseCode { code: 204, reconnect: false }`): the server
/// asked the client to stop, which is an end, not an error. Any other status, or a 200
/// of another content type, fails with an [`SseError`] that is retried only for the
/// configured statuses.
///
/// The transport keeps what outlives connections: the last event ID, the server's
/// `retry`, and the queue the items wait in ([`events`](Self::events)), so whoever
/// supervises it (an [`SseClient`](crate::SseClient), a plain
/// [`Supervisor`](connection_core::Supervisor), a manager) resumes where the last
/// connection stopped.
pub struct SseTransport {
    config: Arc<SseConfig>,
    http: reqwest::Client,
    source: Arc<Source>,
}

impl Drop for SseTransport {
    fn drop(&mut self) {
        // Whoever supervised this transport is done: readers get what is queued, then
        // the end.
        self.source.inbox.close();
    }
}

impl std::fmt::Debug for SseTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SseTransport")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl SseTransport {
    /// A transport for `config`'s stream.
    pub fn new(config: SseConfig) -> Result<Self, SseError> {
        let http = reqwest::Client::builder()
            // Redirects are followed here, to keep `Last-Event-ID`, drop secrets on a
            // change of origin and count them against our own limit.
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(config.connect_timeout)
            // Proxy variables are not read: a stream must not change route with the
            // environment it happens to run in (a proxy setting is not offered yet).
            .no_proxy()
            .tcp_nodelay(true);
        #[cfg(feature = "tls")]
        let http = http.tls_backend_preconfigured(rustls::ClientConfig::clone(&config.tls));
        let http = http.build().map_err(|e| {
            SseError::Config(connection_core::ConfigError::new(
                "tls",
                format!("the HTTP client could not be built: {e}"),
            ))
        })?;
        let source = Source::new(
            config.endpoint.clone(),
            config.last_event_id.clone(),
            config.inbound_buffer,
        );
        Ok(Self {
            config: Arc::new(config),
            http,
            source,
        })
    }

    /// The queue this transport's connections deliver into (also each connection's
    /// [`Io`](connection_core::Connection::Io)).
    pub fn events(&self) -> SseEvents {
        SseEvents::new(self.source.clone())
    }

    /// The reconnect schedule whose base is the server's `retry` (see
    /// [`SseConfigBuilder::reconnect_delays`](crate::SseConfigBuilder::reconnect_delays)),
    /// for a supervisor or manager that runs this transport:
    /// `Supervisor::new(transport).backoff(backoff)`.
    pub fn backoff(&self) -> SseBackoff {
        (self.backoff_factory())()
    }

    /// Makes [`backoff`](Self::backoff)s, for a manager that starts a fresh schedule
    /// for every supervisor (`ConnectionOptions::builder().backoff(factory)`).
    pub fn backoff_factory(&self) -> impl Fn() -> SseBackoff + Send + Sync + 'static {
        let (initial, max, attempts) = (
            self.config.initial_delay,
            self.config.max_delay,
            self.config.max_attempts,
        );
        let retry = self.source.retry.clone();
        move || SseBackoff::new(initial, max, attempts, retry.clone())
    }

    /// The settings.
    pub fn config(&self) -> &SseConfig {
        &self.config
    }

    /// Sends the request, following redirects; returns the final response.
    async fn request(&self, last_event_id: &str) -> Result<reqwest::Response, SseError> {
        let config = &*self.config;
        let mut url = config.url.clone();
        let mut method = config.method.clone();
        let mut body = config.body.clone();
        let mut headers = HeaderMap::with_capacity(config.headers.len() + 3);
        for h in &config.headers {
            headers.insert(h.name.clone(), h.value.clone());
        }
        headers.insert(
            header::ACCEPT,
            HeaderValue::from_static("text/event-stream"),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        if !last_event_id.is_empty() {
            // The parser never lets CR, LF or NUL into an ID, but a configured initial
            // ID may hold other bytes a header cannot: such an ID is not sent.
            match HeaderValue::from_str(last_event_id) {
                Ok(v) => {
                    headers.insert("last-event-id", v);
                }
                Err(_) => {
                    tracing::warn!(endpoint = %self.source.endpoint, "last event ID is not a valid header value; not sent")
                }
            }
        }
        let mut hops = 0;
        loop {
            let endpoint = endpoint_of(&url, &self.source.endpoint);
            let mut request = self
                .http
                .request(method.clone(), url.clone())
                .headers(headers.clone());
            if let Some(b) = &body {
                request = request.body(b.clone());
            }
            let response = request
                .send()
                .await
                .map_err(|e| SseError::from_send(&endpoint, e, config.connect_timeout))?;
            let status = response.status();
            if !matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308) {
                return Ok(response);
            }
            let redirect_error = |reason: String| SseError::Redirect {
                endpoint: endpoint.clone(),
                reason,
            };
            if hops >= config.max_redirects {
                return Err(redirect_error(format!(
                    "more than {} redirects",
                    config.max_redirects
                )));
            }
            hops += 1;
            let location = response
                .headers()
                .get(header::LOCATION)
                .and_then(|l| l.to_str().ok())
                .ok_or_else(|| redirect_error(format!("status {status} without a Location")))?;
            let next = url
                .join(location)
                .map_err(|e| redirect_error(format!("bad Location: {e}")))?;
            if !matches!(next.scheme(), "http" | "https") {
                return Err(redirect_error(format!(
                    "Location scheme {:?} is not http or https",
                    next.scheme()
                )));
            }
            // As fetch does: 303 turns into a GET, and so do 301 and 302 after a POST;
            // 307 and 308 repeat the request as it was.
            if status == StatusCode::SEE_OTHER
                || (matches!(status.as_u16(), 301 | 302) && method == Method::POST)
            {
                if method != Method::HEAD {
                    method = Method::GET;
                }
                body = None;
                headers.remove(header::CONTENT_TYPE);
                headers.remove(header::CONTENT_LENGTH);
            }
            if next.origin() != url.origin() {
                // Credentials were meant for the first origin only.
                let secret: Vec<_> = headers
                    .iter()
                    .filter(|(_, v)| v.is_sensitive())
                    .map(|(n, _)| n.clone())
                    .collect();
                for name in secret {
                    headers.remove(name);
                }
            }
            tracing::debug!(from = %endpoint, to = %endpoint_of(&next, &endpoint), %status, "following redirect");
            url = next;
        }
    }

    /// Checks the final response: an open stream, the end (204), or an error.
    fn check(&self, response: &reqwest::Response) -> Result<Checked, SseError> {
        let endpoint = endpoint_of(response.url(), &self.source.endpoint);
        let status = response.status().as_u16();
        match status {
            200 => {
                let content_type = response.headers().get(header::CONTENT_TYPE);
                let is_stream = content_type
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.split(';').next())
                    .is_some_and(|essence| {
                        essence.trim().eq_ignore_ascii_case("text/event-stream")
                    });
                if is_stream {
                    Ok(Checked::Open)
                } else {
                    Err(SseError::ContentType {
                        endpoint,
                        found: content_type
                            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()),
                    })
                }
            }
            204 => Ok(Checked::NoContent),
            _ => Err(SseError::Status {
                endpoint,
                status,
                retry_after: retry_after(response.headers()),
                retry: self.config.retry_statuses.contains(status),
            }),
        }
    }
}

enum Checked {
    Open,
    NoContent,
}

/// The endpoint a URL names, for errors (the configured one if it does not parse).
fn endpoint_of(url: &url::Url, fallback: &Endpoint) -> Endpoint {
    if fallback.url() == Some(url) {
        return fallback.clone();
    }
    Endpoint::from_url(url.clone()).unwrap_or_else(|_| fallback.clone())
}

/// `Retry-After` in its seconds form (an HTTP date is ignored).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let secs: u64 = headers
        .get(header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(
        secs.min(connection_core::MAX_DURATION.as_secs()),
    ))
}

impl Transport for SseTransport {
    type Connection = SseConnection;

    async fn connect(&self) -> Result<SseConnection, Error> {
        let config = &*self.config;
        let last_event_id = self.source.last_event_id();
        let attempt = async {
            let response = self.request(&last_event_id).await?;
            let checked = self.check(&response)?;
            Ok::<_, SseError>((response, checked))
        };
        let (response, checked) = match tokio::time::timeout(config.connect_timeout, attempt).await
        {
            Ok(result) => result?,
            Err(_) => {
                return Err(SseError::Timeout {
                    endpoint: self.source.endpoint.clone(),
                    after: config.connect_timeout,
                }
                .into());
            }
        };
        match checked {
            Checked::NoContent => {
                tracing::info!(endpoint = %self.source.endpoint, "204 No Content: the server ended the stream");
                self.source.opened();
                self.source.no_content();
                Ok(SseConnection::ended_by_server(self.events(), 204))
            }
            Checked::Open => {
                self.source.opened();
                Ok(SseConnection::open(
                    response,
                    self.events(),
                    last_event_id,
                    config,
                ))
            }
        }
    }

    fn endpoint(&self) -> &Endpoint {
        &self.source.endpoint
    }
}
