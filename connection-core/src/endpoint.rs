//! Where a connection goes: [`Endpoint`].
//!
//! An endpoint is parsed once, up front, so a bad address is a configuration error at
//! start-up rather than a connect failure at 3 a.m. Its `Debug` and `Display` forms are
//! safe to log: credentials in the userinfo part and secret-looking query values are
//! replaced by `***`. The unredacted URL is only reachable through [`Endpoint::url`], which
//! transports call when they actually connect.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use url::Url;

/// Query parameter names whose values are redacted (compared case-insensitively, and also
/// as a suffix such as `x_api_key`).
const SECRET_QUERY_KEYS: &[&str] = &[
    "token",
    "access_token",
    "refresh_token",
    "id_token",
    "key",
    "apikey",
    "api_key",
    "secret",
    "client_secret",
    "password",
    "passwd",
    "pwd",
    "auth",
    "authorization",
    "signature",
    "sig",
    "session",
    "credential",
    "credentials",
];

/// URL schemes an endpoint accepts, with the default port and whether TLS is implied.
const SCHEMES: &[(&str, Option<u16>, bool)] = &[
    ("http", Some(80), false),
    ("https", Some(443), true),
    ("ws", Some(80), false),
    ("wss", Some(443), true),
    ("tcp", None, false),
    ("tls", None, true),
];

/// A validated network destination: an optional name, a URL or host and port, and
/// whether to use TLS.
///
/// Cloning is cheap (one reference count), so endpoints travel freely into errors and
/// events.
///
/// ```
/// use connection_core::Endpoint;
///
/// let ep: Endpoint = "wss://user:hunter2@api.example.com/feed?token=abc&v=2".parse()?;
/// assert_eq!(ep.host(), "api.example.com");
/// assert_eq!(ep.port(), 443);
/// assert!(ep.tls());
/// // Safe to log: the password and the token never appear.
/// assert_eq!(ep.to_string(), "wss://user:***@api.example.com/feed?token=***&v=2");
///
/// let tcp = Endpoint::host_port("127.0.0.1", 7000)?.with_name("echo");
/// assert_eq!(tcp.to_string(), "echo (127.0.0.1:7000)");
///
/// assert!("http://".parse::<Endpoint>().is_err());
/// assert!("localhost:0".parse::<Endpoint>().is_err());
/// # Ok::<(), connection_core::EndpointError>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Endpoint(Arc<Inner>);

#[derive(PartialEq, Eq, Hash)]
struct Inner {
    name: Option<Arc<str>>,
    url: Option<Url>,
    host: String,
    port: u16,
    tls: bool,
    /// The redacted address, computed once: it is printed in every error and event.
    display: String,
}

impl Endpoint {
    /// Parses a URL (`http`, `https`, `ws`, `wss`, `tcp`, `tls` schemes) or a bare
    /// `host:port` / `[ipv6]:port`.
    pub fn parse(input: &str) -> Result<Self, EndpointError> {
        let input = input.trim();
        if input.is_empty() {
            return Err(EndpointError::new(input, EndpointErrorKind::Empty));
        }
        if input.contains("://") {
            Self::from_url_str(input)
        } else {
            let (host, port) = split_host_port(input)?;
            Self::host_port(host, port)
        }
    }

    fn from_url_str(input: &str) -> Result<Self, EndpointError> {
        let url = Url::parse(input).map_err(|e| {
            let kind = match e {
                url::ParseError::EmptyHost => EndpointErrorKind::MissingHost,
                url::ParseError::InvalidPort => EndpointErrorKind::InvalidPort,
                _ => EndpointErrorKind::InvalidUrl,
            };
            EndpointError::new(input, kind)
        })?;
        Self::from_url(url)
    }

    /// Builds an endpoint from an already parsed URL.
    pub fn from_url(url: Url) -> Result<Self, EndpointError> {
        let scheme = url.scheme().to_owned();
        let Some(&(_, default_port, tls)) = SCHEMES.iter().find(|(s, _, _)| *s == scheme) else {
            return Err(EndpointError::new(
                url.as_str(),
                EndpointErrorKind::UnsupportedScheme(scheme),
            ));
        };
        let host = match url.host_str() {
            Some(h) if !h.is_empty() => h.trim_start_matches('[').trim_end_matches(']').to_owned(),
            _ => {
                return Err(EndpointError::new(
                    url.as_str(),
                    EndpointErrorKind::MissingHost,
                ));
            }
        };
        let port = match url.port().or(default_port) {
            Some(0) => {
                return Err(EndpointError::new(
                    url.as_str(),
                    EndpointErrorKind::InvalidPort,
                ));
            }
            Some(p) => p,
            None => {
                return Err(EndpointError::new(
                    url.as_str(),
                    EndpointErrorKind::MissingPort,
                ));
            }
        };
        let display = redact_url(&url);
        Ok(Self(Arc::new(Inner {
            name: None,
            url: Some(url),
            host,
            port,
            tls,
            display,
        })))
    }

    /// Builds a plain (no TLS) host and port endpoint. The host may be a name, an IPv4 or
    /// an IPv6 address (with or without brackets).
    pub fn host_port(host: &str, port: u16) -> Result<Self, EndpointError> {
        let host = host.trim().trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(EndpointError::new(host, EndpointErrorKind::MissingHost));
        }
        // Reuse the URL host grammar so names with spaces or other junk are refused the
        // same way in both forms.
        if host.contains(|c: char| c.is_whitespace() || "/?#@".contains(c))
            || url::Host::parse(&bracket_v6(host)).is_err()
        {
            return Err(EndpointError::new(host, EndpointErrorKind::InvalidHost));
        }
        if port == 0 {
            return Err(EndpointError::new(
                &format!("{host}:0"),
                EndpointErrorKind::InvalidPort,
            ));
        }
        let display = format!("{}:{port}", bracket_v6(host));
        Ok(Self(Arc::new(Inner {
            name: None,
            url: None,
            host: host.to_owned(),
            port,
            tls: false,
            display,
        })))
    }

    /// Gives the endpoint a human name, used in logs, events and metric labels.
    #[must_use]
    pub fn with_name(self, name: impl Into<Arc<str>>) -> Self {
        self.map(|i| i.name = Some(name.into()))
    }

    /// Turns TLS on or off, overriding what the scheme implied.
    #[must_use]
    pub fn with_tls(self, tls: bool) -> Self {
        self.map(|i| i.tls = tls)
    }

    fn map(self, f: impl FnOnce(&mut Inner)) -> Self {
        let mut inner = Arc::try_unwrap(self.0).unwrap_or_else(|shared| Inner {
            name: shared.name.clone(),
            url: shared.url.clone(),
            host: shared.host.clone(),
            port: shared.port,
            tls: shared.tls,
            display: shared.display.clone(),
        });
        f(&mut inner);
        Self(Arc::new(inner))
    }

    /// The name given with [`with_name`](Self::with_name), if any.
    pub fn name(&self) -> Option<&str> {
        self.0.name.as_deref()
    }

    /// A label for logs and metrics: the name if set, else the redacted address.
    pub fn label(&self) -> &str {
        self.0.name.as_deref().unwrap_or(&self.0.display)
    }

    /// Host name or IP address (IPv6 without brackets).
    pub fn host(&self) -> &str {
        &self.0.host
    }

    /// Port, explicit or the scheme's default.
    pub fn port(&self) -> u16 {
        self.0.port
    }

    /// `host:port`, with brackets around an IPv6 host: what `TcpStream::connect` takes.
    pub fn authority(&self) -> String {
        format!("{}:{}", bracket_v6(&self.0.host), self.0.port)
    }

    /// Whether the connection must use TLS.
    pub fn tls(&self) -> bool {
        self.0.tls
    }

    /// The URL scheme, if the endpoint was given as a URL.
    pub fn scheme(&self) -> Option<&str> {
        self.0.url.as_ref().map(Url::scheme)
    }

    /// The full, unredacted URL, for the transport to connect with. Never log this.
    pub fn url(&self) -> Option<&Url> {
        self.0.url.as_ref()
    }

    /// The address with secrets replaced by `***`.
    pub fn redacted(&self) -> &str {
        &self.0.display
    }
}

impl FromStr for Endpoint {
    type Err = EndpointError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<&str> for Endpoint {
    type Error = EndpointError;
    fn try_from(s: &str) -> Result<Self, Self::Error> {
        Self::parse(s)
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0.name {
            Some(name) => write!(f, "{name} ({})", self.0.display),
            None => f.write_str(&self.0.display),
        }
    }
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint")
            .field("name", &self.0.name)
            .field("address", &self.0.display)
            .field("tls", &self.0.tls)
            .finish()
    }
}

impl serde::Serialize for Endpoint {
    /// Serializes the redacted form, so an endpoint in a metrics or event export never
    /// leaks a secret.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Endpoint {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

fn bracket_v6(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}

fn split_host_port(input: &str) -> Result<(&str, u16), EndpointError> {
    let (host, port) = if let Some(rest) = input.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| EndpointError::new(input, EndpointErrorKind::InvalidHost))?;
        let port = after
            .strip_prefix(':')
            .ok_or_else(|| EndpointError::new(input, EndpointErrorKind::MissingPort))?;
        (host, port)
    } else {
        match input.rsplit_once(':') {
            Some((h, _)) if h.contains(':') => {
                return Err(EndpointError::new(input, EndpointErrorKind::InvalidHost));
            }
            Some(pair) => pair,
            None => return Err(EndpointError::new(input, EndpointErrorKind::MissingPort)),
        }
    };
    let port = port
        .parse::<u16>()
        .map_err(|_| EndpointError::new(input, EndpointErrorKind::InvalidPort))?;
    Ok((host, port))
}

fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    SECRET_QUERY_KEYS
        .iter()
        .any(|s| key == *s || key.ends_with(&format!("_{s}")) || key.ends_with(&format!("-{s}")))
}

fn redact_url(url: &Url) -> String {
    let mut out = url.clone();
    if !url.username().is_empty() || url.password().is_some() {
        // Only fails for URLs that cannot have credentials, which never got here with some.
        let _ = out.set_password(url.password().map(|_| "***"));
        if url.password().is_none() {
            let _ = out.set_username("***");
        }
    }
    if url.query().is_some() {
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(k, v)| {
                let v = if is_secret_key(&k) {
                    "***".to_owned()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        out.query_pairs_mut().clear().extend_pairs(pairs);
    }
    // `Url` percent-encodes the `*` we put in the password; show it plainly.
    out.as_str().replace("%2A%2A%2A", "***")
}

/// Why an endpoint was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum EndpointErrorKind {
    /// Nothing was given.
    Empty,
    /// The text is not a URL.
    InvalidUrl,
    /// The scheme is not one of http, https, ws, wss, tcp, tls.
    UnsupportedScheme(String),
    /// No host was given.
    MissingHost,
    /// The host is not a valid name or address.
    InvalidHost,
    /// No port was given and the scheme has no default.
    MissingPort,
    /// The port is not a number in 1..=65535.
    InvalidPort,
}

impl fmt::Display for EndpointErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("empty address"),
            Self::InvalidUrl => f.write_str("not a valid URL"),
            Self::UnsupportedScheme(s) => {
                write!(
                    f,
                    "unsupported scheme {s:?} (expected http, https, ws, wss, tcp or tls)"
                )
            }
            Self::MissingHost => f.write_str("missing host"),
            Self::InvalidHost => f.write_str("invalid host"),
            Self::MissingPort => f.write_str("missing port"),
            Self::InvalidPort => f.write_str("port must be a number from 1 to 65535"),
        }
    }
}

/// An address that could not be turned into an [`Endpoint`]. The offending input is kept
/// in redacted form, so the error itself is safe to log.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid endpoint {input:?}: {kind}")]
pub struct EndpointError {
    input: String,
    kind: EndpointErrorKind,
}

impl EndpointError {
    fn new(input: &str, kind: EndpointErrorKind) -> Self {
        // Without `://`, `user:pw@host` would parse as a URL with scheme `user`, so only
        // inputs that look like URLs get URL redaction.
        let url = if input.contains("://") {
            Url::parse(input).ok()
        } else {
            None
        };
        let input = match url {
            Some(url) => redact_url(&url),
            // Not a URL: there is no userinfo or query to find, but an `@` still hints at
            // credentials, so drop everything before it.
            None => match input.rsplit_once('@') {
                Some((_, host)) => format!("***@{host}"),
                None => input.to_owned(),
            },
        };
        Self { input, kind }
    }

    /// What was wrong.
    pub fn kind(&self) -> &EndpointErrorKind {
        &self.kind
    }

    /// The refused input, redacted.
    pub fn input(&self) -> &str {
        &self.input
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_schemes_and_defaults() {
        let e = Endpoint::parse("http://example.com").unwrap();
        assert_eq!((e.host(), e.port(), e.tls()), ("example.com", 80, false));
        let e = Endpoint::parse("https://example.com:8443/x").unwrap();
        assert_eq!((e.port(), e.tls(), e.scheme()), (8443, true, Some("https")));
        let e = Endpoint::parse("tls://10.0.0.1:993").unwrap();
        assert!(e.tls());
        let e = Endpoint::parse("[::1]:9000").unwrap();
        assert_eq!((e.host(), e.port()), ("::1", 9000));
        assert_eq!(e.authority(), "[::1]:9000");
        let e = Endpoint::parse("ws://[::1]:81/p").unwrap();
        assert_eq!(e.host(), "::1");
        assert_eq!(e.authority(), "[::1]:81");
    }

    #[test]
    fn rejects_bad_input_with_a_reason() {
        let cases: &[(&str, EndpointErrorKind)] = &[
            ("", EndpointErrorKind::Empty),
            ("   ", EndpointErrorKind::Empty),
            (
                "ftp://example.com",
                EndpointErrorKind::UnsupportedScheme("ftp".into()),
            ),
            ("tcp://example.com", EndpointErrorKind::MissingPort),
            ("example.com", EndpointErrorKind::MissingPort),
            ("example.com:0", EndpointErrorKind::InvalidPort),
            ("example.com:70000", EndpointErrorKind::InvalidPort),
            ("example.com:http", EndpointErrorKind::InvalidPort),
            ("http://example.com:99999", EndpointErrorKind::InvalidPort),
            ("bad host:80", EndpointErrorKind::InvalidHost),
            ("::1:80", EndpointErrorKind::InvalidHost),
            ("[::1:80", EndpointErrorKind::InvalidHost),
            (":80", EndpointErrorKind::MissingHost),
        ];
        for (input, kind) in cases {
            let err = Endpoint::parse(input).unwrap_err();
            assert_eq!(err.kind(), kind, "{input:?}");
            assert!(err.to_string().starts_with("invalid endpoint"), "{err}");
        }
        assert!(Endpoint::parse("http://").is_err());
        assert!(Endpoint::host_port("h", 0).is_err());
    }

    #[test]
    fn redacts_credentials_and_secret_query_values() {
        let e =
            Endpoint::parse("https://alice:s3cret@h.example/p?api_key=k1&x-auth-token=t&page=2")
                .unwrap();
        let shown = format!("{e} {e:?}");
        for secret in ["s3cret", "k1", "=t&"] {
            assert!(!shown.contains(secret), "{secret} leaked in {shown}");
        }
        assert!(shown.contains("alice:***@"), "{shown}");
        assert!(shown.contains("page=2"), "{shown}");
        // The real URL is still there for the transport.
        assert_eq!(e.url().unwrap().password(), Some("s3cret"));
        // Username-only userinfo is a token too (e.g. GitHub-style `token@host`).
        let e = Endpoint::parse("wss://ghp_abc@h.example").unwrap();
        assert!(!e.to_string().contains("ghp_abc"));
        let json = serde_json::to_string(&e).unwrap();
        assert!(!json.contains("ghp_abc"), "{json}");
    }

    #[test]
    fn errors_do_not_leak_secrets() {
        let err = Endpoint::parse("ftp://bob:pw123@h.example/?token=zz").unwrap_err();
        assert!(!err.to_string().contains("pw123"), "{err}");
        assert!(!err.to_string().contains("zz"), "{err}");
        let err = Endpoint::parse("bob:pw123@h.example").unwrap_err();
        assert!(!err.to_string().contains("pw123"), "{err}");
    }

    #[test]
    fn names_and_serde() {
        let e = Endpoint::parse("tcp://127.0.0.1:5000")
            .unwrap()
            .with_name("db");
        assert_eq!(e.label(), "db");
        assert_eq!(e.to_string(), "db (tcp://127.0.0.1:5000)");
        let back: Endpoint = serde_json::from_str("\"wss://h.example/x\"").unwrap();
        assert_eq!(back.port(), 443);
        assert!(serde_json::from_str::<Endpoint>("\"nope\"").is_err());
    }
}
