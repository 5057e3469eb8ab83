//! [`HttpResponse`]: a response whose body has been read.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use connection_core::{Endpoint, shared};
use reqwest::header::HeaderMap;
use reqwest::{StatusCode, Version};

use crate::error::HttpError;

/// A response, its body read in full (up to the client's
/// [`max_response_size`](crate::HttpConfigBuilder::max_response_size)).
///
/// Reading the body inside the client is what lets the whole request, body included,
/// run under the request timeout, be retried when the body breaks off, and be counted
/// in the metrics (bytes, latency to the last byte).
pub struct HttpResponse {
    pub(crate) status: StatusCode,
    pub(crate) version: Version,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
    pub(crate) endpoint: Endpoint,
    pub(crate) attempts: u32,
    pub(crate) elapsed: Duration,
}

impl HttpResponse {
    /// The status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// `true` for 2xx.
    pub fn is_success(&self) -> bool {
        self.status.is_success()
    }

    /// The HTTP version.
    pub fn version(&self) -> Version {
        self.version
    }

    /// The headers.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// One header's value as text, if present and visible ASCII.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body.
    pub fn bytes(&self) -> &Bytes {
        &self.body
    }

    /// The body, taken.
    pub fn into_bytes(self) -> Bytes {
        self.body
    }

    /// The body as UTF-8 text.
    pub fn text(&self) -> Result<&str, HttpError> {
        std::str::from_utf8(&self.body).map_err(|e| HttpError::Decode {
            endpoint: self.endpoint.clone(),
            source: shared(e),
        })
    }

    /// The body as JSON.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, HttpError> {
        serde_json::from_slice(&self.body).map_err(|e| HttpError::Decode {
            endpoint: self.endpoint.clone(),
            source: shared(e),
        })
    }

    /// How many attempts the request took (1 when it was not retried; a hedge counts
    /// as one attempt).
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// From the start of the first attempt to the last byte of the body.
    pub fn elapsed(&self) -> Duration {
        self.elapsed
    }

    /// The response itself if its status is 2xx, else [`HttpError::Status`] (with the
    /// server's `Retry-After`).
    pub fn error_for_status(self) -> Result<Self, HttpError> {
        if self.status.is_success() {
            return Ok(self);
        }
        Err(HttpError::Status {
            endpoint: self.endpoint.clone(),
            status: self.status.as_u16(),
            retry_after: crate::client::retry_after(&self.headers),
        })
    }
}

impl fmt::Debug for HttpResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Header values (cookies, tokens) and the body are not printed.
        f.debug_struct("HttpResponse")
            .field("status", &self.status)
            .field("version", &self.version)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("body_len", &self.body.len())
            .field("attempts", &self.attempts)
            .field("elapsed", &self.elapsed)
            .finish()
    }
}
