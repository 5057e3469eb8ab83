//! [`Body`]: a request body that can be sent again, or a stream that cannot.

use std::fmt;

use bytes::Bytes;
use futures::TryStream;
use parking_lot::Mutex;

/// A request body.
///
/// Bytes (from `Vec<u8>`, `String`, `&'static str`, [`Bytes`], or [`Body::json`]) can be
/// sent again, so a request carrying them can be retried or hedged. A stream
/// ([`Body::stream`]) is consumed by the first attempt: a request with one is never
/// retried, and a failure that would have been says so
/// ([`NotRetried::StreamingBody`](crate::NotRetried::StreamingBody)).
///
/// ```
/// use connection_transport_http::Body;
///
/// assert!(Body::from("hello").is_replayable());
/// let chunks = futures::stream::iter([Ok::<_, std::io::Error>("a"), Ok("b")]);
/// assert!(!Body::stream(chunks).is_replayable());
/// ```
pub struct Body(pub(crate) Kind);

pub(crate) enum Kind {
    Bytes(Bytes),
    /// Taken by the first attempt.
    Stream(Mutex<Option<reqwest::Body>>),
}

impl Body {
    /// No body.
    pub fn empty() -> Self {
        Self(Kind::Bytes(Bytes::new()))
    }

    /// `value` as JSON (the client adds `Content-Type: application/json` unless the
    /// request sets one). Fails if `value` cannot be serialized.
    pub fn json<T: serde::Serialize + ?Sized>(value: &T) -> Result<Self, serde_json::Error> {
        serde_json::to_vec(value).map(|v| Self(Kind::Bytes(Bytes::from(v))))
    }

    /// A body streamed from `stream`, sent as it is produced (chunked). Sent at most
    /// once: the request is never retried.
    pub fn stream<S>(stream: S) -> Self
    where
        S: TryStream + Send + 'static,
        S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
        Bytes: From<S::Ok>,
    {
        Self(Kind::Stream(Mutex::new(Some(reqwest::Body::wrap_stream(
            stream,
        )))))
    }

    /// Whether the body can be sent again (bytes, not a stream).
    pub fn is_replayable(&self) -> bool {
        matches!(self.0, Kind::Bytes(_))
    }

    /// The bytes, for a replayable body.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match &self.0 {
            Kind::Bytes(b) => Some(b),
            Kind::Stream(_) => None,
        }
    }

    pub(crate) fn len(&self) -> u64 {
        match &self.0 {
            Kind::Bytes(b) => b.len() as u64,
            Kind::Stream(_) => 0,
        }
    }

    /// The body for one attempt: a cheap clone of the bytes, or the stream if no
    /// attempt took it yet.
    pub(crate) fn for_attempt(&self) -> Option<reqwest::Body> {
        match &self.0 {
            Kind::Bytes(b) if b.is_empty() => None,
            Kind::Bytes(b) => Some(reqwest::Body::from(b.clone())),
            Kind::Stream(s) => s.lock().take(),
        }
    }
}

impl Default for Body {
    fn default() -> Self {
        Self::empty()
    }
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Bodies carry credentials and personal data as often as headers do: sizes only.
        match &self.0 {
            Kind::Bytes(b) => write!(f, "Body({} bytes)", b.len()),
            Kind::Stream(_) => f.write_str("Body(stream)"),
        }
    }
}

impl From<Bytes> for Body {
    fn from(b: Bytes) -> Self {
        Self(Kind::Bytes(b))
    }
}

impl From<Vec<u8>> for Body {
    fn from(v: Vec<u8>) -> Self {
        Self(Kind::Bytes(Bytes::from(v)))
    }
}

impl From<String> for Body {
    fn from(s: String) -> Self {
        Self(Kind::Bytes(Bytes::from(s)))
    }
}

impl From<&'static str> for Body {
    fn from(s: &'static str) -> Self {
        Self(Kind::Bytes(Bytes::from_static(s.as_bytes())))
    }
}

impl From<&'static [u8]> for Body {
    fn from(s: &'static [u8]) -> Self {
        Self(Kind::Bytes(Bytes::from_static(s)))
    }
}
