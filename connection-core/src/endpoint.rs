//! Where a connection goes: [`Endpoint`].
//!
//! An endpoint is parsed once, up front, so a bad address is a configuration error at
//! start-up rather than a connect failure at 3 a.m. Its `Debug` and `Display` forms, its
//! serialized form and every [`EndpointError`] are safe to log: the userinfo part, every
//! query value (the keys stay, so `?token=***&v=***` still says what was passed) and the
//! fragment are replaced by `***`, also in input that does not parse. The unredacted URL
//! is only reachable through [`Endpoint::url`], which transports call when they actually
//! connect.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use url::Url;

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
/// // Safe to log: the password and the query values never appear.
/// assert_eq!(ep.to_string(), "wss://user:***@api.example.com/feed?token=***&v=***");
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

    /// The address with the userinfo, the query values and the fragment replaced by
    /// `***`.
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

fn redact_url(url: &Url) -> String {
    redact(url.as_str())
}

/// Redacts an address given as text, whether or not it parses: the userinfo (all of it,
/// or the password when a user name is given with one), every query value and the
/// fragment become `***`. Works on the text alone, so a URL that `url` refuses (a bad
/// port, say) is redacted the same way as one it accepts.
fn redact(input: &str) -> String {
    const HIDDEN: &str = "***";
    let (rest, fragment) = match input.split_once('#') {
        Some((rest, _)) => (rest, Some(HIDDEN)),
        None => (input, None),
    };
    let (rest, query) = match rest.split_once('?') {
        Some((rest, query)) => (rest, Some(query)),
        None => (rest, None),
    };
    // The userinfo ends at the last `@` of the authority (before the path).
    let (scheme, after_scheme) = match rest.split_once("://") {
        Some((scheme, after)) => (Some(scheme), after),
        None => (None, rest),
    };
    let authority_end = after_scheme.find('/').unwrap_or(after_scheme.len());
    let (authority, path) = after_scheme.split_at(authority_end);
    let mut out = String::with_capacity(input.len());
    if let Some(scheme) = scheme {
        out.push_str(scheme);
        out.push_str("://");
    }
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            match userinfo.split_once(':') {
                Some((user, _)) if !user.is_empty() => {
                    out.push_str(user);
                    out.push(':');
                    out.push_str(HIDDEN);
                }
                _ => out.push_str(HIDDEN),
            }
            out.push('@');
            out.push_str(host);
        }
        None => out.push_str(authority),
    }
    out.push_str(path);
    if let Some(query) = query {
        out.push('?');
        for (i, pair) in query.split('&').enumerate() {
            if i > 0 {
                out.push('&');
            }
            match pair.split_once('=') {
                Some((key, _)) => {
                    out.push_str(key);
                    out.push('=');
                    out.push_str(HIDDEN);
                }
                // A bare item may be a secret itself (`?sk_live_...`).
                None if !pair.is_empty() => out.push_str(HIDDEN),
                None => {}
            }
        }
    }
    if let Some(fragment) = fragment {
        out.push('#');
        out.push_str(fragment);
    }
    out
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
        // Redacted as text: the input may be refused precisely because it does not parse,
        // and its query and userinfo are secrets all the same.
        Self {
            input: redact(input),
            kind,
        }
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
        assert!(shown.contains("page=***"), "{shown}");
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

    /// Every secret of these inputs, in a form that is refused for one reason or another.
    const SECRETS: &[&str] = &["abc", "pw123", "k9", "frag-secret", "sk_live", "ghp_x"];

    fn assert_redacted(shown: &str) {
        for secret in SECRETS {
            assert!(!shown.contains(secret), "{secret} leaked in {shown}");
        }
    }

    #[test]
    fn a_url_that_does_not_parse_is_redacted_too() {
        // The issue's example: a port out of range, so `url` refuses it.
        let err = Endpoint::parse("wss://127.0.0.1:99999/x?token=abc&api_key=k9").unwrap_err();
        assert_eq!(err.kind(), &EndpointErrorKind::InvalidPort);
        assert_eq!(err.input(), "wss://127.0.0.1:99999/x?token=***&api_key=***");
        assert_eq!(
            err.to_string(),
            "invalid endpoint \"wss://127.0.0.1:99999/x?token=***&api_key=***\": \
             port must be a number from 1 to 65535"
        );
        for input in [
            "wss://bob:pw123@127.0.0.1:99999/x?token=abc#frag-secret",
            "wss://ghp_x@127.0.0.1:99999/?sk_live&token=abc",
            "ftp://bob:pw123@h.example/x?api_key=k9#frag-secret",
            "https://bob:pw123@/x?token=abc",
            "bob:pw123@h.example:99999?token=abc",
            "h.example?token=abc",
        ] {
            let err = Endpoint::parse(input).unwrap_err();
            assert_redacted(&format!("{err} {err:?}"));
        }
        let err =
            Endpoint::parse("wss://bob:pw123@127.0.0.1:0/x?token=abc#frag-secret").unwrap_err();
        assert_eq!(err.input(), "wss://bob:***@127.0.0.1:0/x?token=***#***");
    }

    #[test]
    fn every_query_value_and_the_fragment_are_redacted() {
        let e = Endpoint::parse("wss://h.example/x?token=abc&v=2&flag&sid=k9#frag-secret").unwrap();
        assert_eq!(
            e.redacted(),
            "wss://h.example/x?token=***&v=***&***&sid=***#***"
        );
        assert_redacted(&format!("{e} {e:?} {}", serde_json::to_string(&e).unwrap()));
        assert_eq!(e.url().unwrap().query(), Some("token=abc&v=2&flag&sid=k9"));
    }

    #[test]
    fn serde_errors_do_not_leak_secrets() {
        for input in [
            "\"wss://bob:pw123@127.0.0.1:99999/x?token=abc&api_key=k9\"",
            "\"ftp://h.example/?token=abc#frag-secret\"",
        ] {
            let err = serde_json::from_str::<Endpoint>(input).unwrap_err();
            assert_redacted(&format!("{err} {err:?}"));
            assert!(err.to_string().contains("token=***"), "{err}");
        }
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
