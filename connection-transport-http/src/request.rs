//! [`HttpRequest`]: one request to the client's base URL, and what decides whether it
//! may be sent twice.

use std::time::Duration;

use reqwest::Method;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};

use crate::body::Body;
use crate::error::NotRetried;

/// The header that makes a POST or PATCH safe to retry: the server deduplicates
/// requests carrying the same key (draft-ietf-httpapi-idempotency-key-header).
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// Whether a request may be retried (see [`HttpRequest::retry`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum RetryMode {
    /// Retried when its method is idempotent (GET, HEAD, OPTIONS, TRACE, PUT, DELETE)
    /// or it carries an `Idempotency-Key` header; otherwise only failures that prove
    /// nothing was sent (a refused connect) are retried.
    #[default]
    Auto,
    /// Retried like an idempotent request, whatever its method: the caller vouches that
    /// running it twice is harmless.
    Always,
    /// Never retried, not even after a refused connect, and never hedged.
    Never,
}

/// One request: a method, a path (with an optional query) relative to the client's base
/// URL, headers, a body, and per-request limits.
///
/// Setters never fail; a bad header name or value is reported when the request is sent.
///
/// ```
/// use connection_transport_http::{HttpRequest, Method};
/// use std::time::Duration;
///
/// let order = HttpRequest::new(Method::POST, "/orders")
///     .header("x-request-id", "r-1")
///     .idempotency_key("order-7f3a")
///     .json(&serde_json::json!({"item": 42}))
///     .timeout(Duration::from_secs(5));
/// assert!(order.is_idempotent());
/// ```
pub struct HttpRequest {
    pub(crate) method: Method,
    pub(crate) path: String,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Body,
    pub(crate) timeout: Option<Duration>,
    pub(crate) read_timeout: Option<Duration>,
    pub(crate) connect_timeout: Option<Duration>,
    pub(crate) retry: RetryMode,
    /// The first bad setter call, reported by `send`.
    pub(crate) error: Option<String>,
}

impl std::fmt::Debug for HttpRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Header values carry credentials and the query may too: names and the path
        // only.
        let path = self
            .path
            .split_once('?')
            .map_or(self.path.as_str(), |(p, _)| p);
        f.debug_struct("HttpRequest")
            .field("method", &self.method)
            .field("path", &path)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("body", &self.body)
            .field("timeout", &self.timeout)
            .field("read_timeout", &self.read_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

impl HttpRequest {
    /// A request for `path` (`/users/7?full=1`), relative to the base URL's path.
    pub fn new(method: Method, path: impl Into<String>) -> Self {
        Self {
            method,
            path: path.into(),
            headers: HeaderMap::new(),
            body: Body::empty(),
            timeout: None,
            read_timeout: None,
            connect_timeout: None,
            retry: RetryMode::Auto,
            error: None,
        }
    }

    /// A GET for `path`.
    pub fn get(path: impl Into<String>) -> Self {
        Self::new(Method::GET, path)
    }

    fn fail(&mut self, reason: String) {
        self.error.get_or_insert(reason);
    }

    /// Adds a header (after the client's default headers; a header of the same name
    /// replaces the default one).
    pub fn header(mut self, name: impl AsRef<str>, value: impl AsRef<str>) -> Self {
        let name = name.as_ref();
        match (
            HeaderName::try_from(name),
            HeaderValue::try_from(value.as_ref()),
        ) {
            (Ok(n), Ok(v)) => {
                self.headers.append(n, v);
            }
            (Err(_), _) => self.fail(format!("invalid header name `{name}`")),
            (_, Err(_)) => self.fail(format!("invalid value for header `{name}`")),
        }
        self
    }

    /// Adds every header of `headers`.
    pub fn headers(mut self, headers: HeaderMap) -> Self {
        for (name, value) in headers {
            if let Some(name) = name {
                self.headers.append(name, value);
            }
        }
        self
    }

    /// Sets `Idempotency-Key: key`: the server deduplicates, so the request may be
    /// retried whatever its method.
    pub fn idempotency_key(self, key: impl AsRef<str>) -> Self {
        self.header(IDEMPOTENCY_KEY, key)
    }

    /// The body.
    pub fn body(mut self, body: impl Into<Body>) -> Self {
        self.body = body.into();
        self
    }

    /// `value` as a JSON body, with `Content-Type: application/json`.
    pub fn json<T: serde::Serialize + ?Sized>(mut self, value: &T) -> Self {
        match Body::json(value) {
            Ok(body) => {
                self.body = body;
                if !self.headers.contains_key(CONTENT_TYPE) {
                    self.headers
                        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                }
            }
            Err(e) => self.fail(format!("the JSON body does not serialize: {e}")),
        }
        self
    }

    /// Limit on the whole request, every attempt's own (connect, send, response head and
    /// body), replacing the client's.
    pub fn timeout(mut self, limit: Duration) -> Self {
        self.timeout = Some(limit);
        self
    }

    /// Longest silence while waiting for the response head or the next piece of the
    /// body, replacing the client's.
    pub fn read_timeout(mut self, limit: Duration) -> Self {
        self.read_timeout = Some(limit);
        self
    }

    /// Limit on opening a new connection for this request (TCP and TLS), replacing the
    /// client's. A pooled connection is used as it is.
    pub fn connect_timeout(mut self, limit: Duration) -> Self {
        self.connect_timeout = Some(limit);
        self
    }

    /// Whether the request may be retried (default [`RetryMode::Auto`]).
    pub fn retry(mut self, mode: RetryMode) -> Self {
        self.retry = mode;
        self
    }

    /// The method.
    pub fn method(&self) -> &Method {
        &self.method
    }

    /// The path, relative to the base URL.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Whether running it twice is harmless: an idempotent method, an `Idempotency-Key`
    /// header, or [`RetryMode::Always`] (and not [`RetryMode::Never`]).
    pub fn is_idempotent(&self) -> bool {
        match self.retry {
            RetryMode::Always => true,
            RetryMode::Never => false,
            RetryMode::Auto => {
                is_idempotent_method(&self.method) || self.headers.contains_key(IDEMPOTENCY_KEY)
            }
        }
    }

    /// Why a failure after which the request may have reached the server cannot be
    /// retried, or `None` if it can.
    pub(crate) fn not_retryable(&self) -> Option<NotRetried> {
        if self.retry == RetryMode::Never {
            return Some(NotRetried::OptedOut);
        }
        if !self.body.is_replayable() {
            return Some(NotRetried::StreamingBody);
        }
        (!self.is_idempotent()).then_some(NotRetried::NotIdempotent)
    }
}

/// GET, HEAD, OPTIONS, TRACE, PUT and DELETE (RFC 9110 §9.2.2).
pub fn is_idempotent_method(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idempotency_by_method_key_and_mode() {
        for m in [
            Method::GET,
            Method::HEAD,
            Method::OPTIONS,
            Method::TRACE,
            Method::PUT,
            Method::DELETE,
        ] {
            assert!(HttpRequest::new(m.clone(), "/").is_idempotent(), "{m}");
        }
        for m in [Method::POST, Method::PATCH, Method::CONNECT] {
            assert!(!HttpRequest::new(m.clone(), "/").is_idempotent(), "{m}");
        }
        let keyed = HttpRequest::new(Method::POST, "/").idempotency_key("k");
        assert!(keyed.is_idempotent());
        assert_eq!(keyed.not_retryable(), None);
        let opted = HttpRequest::new(Method::PATCH, "/").retry(RetryMode::Always);
        assert!(opted.is_idempotent());
        let never = HttpRequest::get("/").retry(RetryMode::Never);
        assert_eq!(never.not_retryable(), Some(NotRetried::OptedOut));
        assert_eq!(
            HttpRequest::new(Method::POST, "/").not_retryable(),
            Some(NotRetried::NotIdempotent)
        );
        let streamed =
            HttpRequest::new(Method::PUT, "/").body(crate::Body::stream(futures::stream::iter([
                Ok::<_, std::io::Error>("x"),
            ])));
        assert_eq!(streamed.not_retryable(), Some(NotRetried::StreamingBody));
    }

    #[test]
    fn bad_headers_are_deferred() {
        let r = HttpRequest::get("/").header("bad name", "v");
        assert!(r.error.as_deref().unwrap().contains("bad name"));
        let r = HttpRequest::get("/").header("x-ok", "bad\nvalue");
        assert!(r.error.as_deref().unwrap().contains("x-ok"));
        let r = HttpRequest::get("/").json(&serde_json::json!({"a": 1}));
        assert_eq!(r.headers[CONTENT_TYPE], "application/json");
    }
}
