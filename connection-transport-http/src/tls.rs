//! TLS for `https://` for the HTTP client: the shared rustls configuration of `connection-tls` (ring
//! provider, webpki roots by default, built once per process), handed to reqwest as a
//! finished configuration (reqwest's `rustls-no-provider`), so aws-lc-rs is never
//! compiled in.

pub(crate) use connection_tls::TlsSource;
