//! The rustls client configuration every TLS transport of the family builds the same
//! way: the ring provider passed to [`rustls::ClientConfig::builder_with_provider`]
//! instead of installed process-wide (so no crate fights another over the global default
//! and aws-lc-rs is never compiled in), webpki roots by default or the roots you give,
//! and a client certificate on request. The default configuration (webpki roots, no
//! client certificate) is built once per process and shared: the root store is the
//! largest part of a TLS configuration.
//!
//! ```
//! use connection_tls::TlsSource;
//!
//! let default = TlsSource::default().client_config()?;
//! let again = TlsSource::default().client_config()?;
//! assert!(std::sync::Arc::ptr_eq(&default, &again), "built once, shared");
//! # Ok::<(), connection_core::ConfigError>(())
//! ```
//!
//! The server side is [`ServerTls`]: a certificate chain and key (PEM files, PEM text or
//! DER, see [`CertSource`] and [`KeySource`]) and optional client-certificate
//! verification for mutual TLS, built with the same provider.
//!
//! Certificate verification is on by default and stays on unless you call the loudly
//! named [`TlsSource::dangerous_accept_any_server_certificate`], for tests only.
#![forbid(unsafe_code)]

mod server;
mod source;

pub use server::ServerTls;
pub use source::{CertSource, KeySource};

use std::fmt;
use std::sync::{Arc, OnceLock};

use connection_core::ConfigError;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// A client certificate chain and its private key, for mutual TLS.
pub type ClientAuth = Arc<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>;

/// TLS settings as a transport's builder collects them; [`client_config`](Self::client_config)
/// turns them into the rustls configuration.
#[derive(Clone, Default)]
pub struct TlsSource {
    /// Roots to verify servers against instead of the webpki roots.
    pub roots: Option<RootCertStore>,
    /// A client certificate to present.
    pub client_auth: Option<ClientAuth>,
    /// A finished configuration, used as it is (overrides every other field).
    pub config: Option<Arc<ClientConfig>>,
    /// **Dangerous, for tests only**: accept any server certificate (self-signed,
    /// expired, for another name) while still checking the handshake signatures. Anyone
    /// on the path can then impersonate the server. Off by default; set it through
    /// [`dangerous_accept_any_server_certificate`](Self::dangerous_accept_any_server_certificate).
    pub dangerous_accept_any_server_certificate: bool,
}

impl fmt::Debug for TlsSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Roots are counted and the key never shown.
        f.debug_struct("TlsSource")
            .field("custom_roots", &self.roots.as_ref().map(RootCertStore::len))
            .field("client_certificate", &self.client_auth.is_some())
            .field("custom_config", &self.config.is_some())
            .field(
                "dangerous_accept_any_server_certificate",
                &self.dangerous_accept_any_server_certificate,
            )
            .finish()
    }
}

impl TlsSource {
    /// Adds one trusted root (DER) to the custom root store, starting an empty one
    /// (without the webpki roots) on first use. Fails (setting `root_certificates`) for a
    /// certificate rustls cannot parse.
    pub fn add_root(&mut self, cert: CertificateDer<'static>) -> Result<(), ConfigError> {
        self.roots
            .get_or_insert_with(RootCertStore::empty)
            .add(cert)
            .map_err(|e| {
                ConfigError::new("root_certificates", format!("certificate rejected: {e}"))
            })
    }

    /// Adds every certificate of `roots` (a PEM file, PEM text or DER) to the custom root
    /// store, as [`add_root`](Self::add_root) does one. Fails (setting
    /// `root_certificates`) for unreadable or malformed PEM, no certificate, or one
    /// rustls refuses.
    pub fn add_roots(&mut self, roots: &CertSource) -> Result<(), ConfigError> {
        for cert in roots.load("root_certificates")? {
            self.add_root(cert)?;
        }
        Ok(())
    }

    /// Presents this client certificate chain (end-entity first) and key for mutual TLS.
    /// Fails (setting `client_certificate` or `client_private_key`) when either cannot be
    /// loaded; a key that does not match is refused by
    /// [`client_config`](Self::client_config).
    pub fn set_client_auth(
        &mut self,
        chain: &CertSource,
        key: &KeySource,
    ) -> Result<(), ConfigError> {
        let chain = chain.load("client_certificate")?;
        let key = key.load("client_private_key")?;
        self.client_auth = Some(Arc::new((chain, key)));
        Ok(())
    }

    /// **Dangerous, for tests only**: the configuration will accept any server
    /// certificate, so anyone on the network path can impersonate the server. Handshake
    /// signatures are still checked (with the ring provider), so the peer must hold the
    /// key of the certificate it shows. Shown in `Debug`.
    ///
    /// ```
    /// use connection_tls::TlsSource;
    ///
    /// let insecure = TlsSource::default().dangerous_accept_any_server_certificate();
    /// assert!(format!("{insecure:?}").contains("dangerous_accept_any_server_certificate: true"));
    /// ```
    #[must_use]
    pub fn dangerous_accept_any_server_certificate(mut self) -> Self {
        self.dangerous_accept_any_server_certificate = true;
        self
    }

    /// The rustls configuration these settings describe. Fails (setting `tls` or
    /// `client_certificate`) when rustls refuses them, e.g. a key that does not match
    /// its certificate.
    pub fn client_config(&self) -> Result<Arc<ClientConfig>, ConfigError> {
        if let Some(config) = &self.config {
            return Ok(config.clone());
        }
        if self.dangerous_accept_any_server_certificate {
            return build_accept_any(self.client_auth.as_deref());
        }
        if self.roots.is_none() && self.client_auth.is_none() {
            static DEFAULT: OnceLock<Arc<ClientConfig>> = OnceLock::new();
            if let Some(c) = DEFAULT.get() {
                return Ok(c.clone());
            }
            let built = build(webpki_roots(), None)?;
            return Ok(DEFAULT.get_or_init(|| built).clone());
        }
        let roots = self.roots.clone().unwrap_or_else(webpki_roots);
        build(roots, self.client_auth.as_deref())
    }
}

fn webpki_roots() -> RootCertStore {
    RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    }
}

/// The ring provider, built once per process and passed to every builder (never
/// installed as the process default).
pub(crate) fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

type ChainAndKey = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

fn build(
    roots: RootCertStore,
    client_auth: Option<&ChainAndKey>,
) -> Result<Arc<ClientConfig>, ConfigError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| ConfigError::new("tls", format!("no usable TLS version: {e}")))?
        .with_root_certificates(roots);
    finish(builder, client_auth)
}

fn build_accept_any(client_auth: Option<&ChainAndKey>) -> Result<Arc<ClientConfig>, ConfigError> {
    tracing::warn!(
        "TLS client configuration built with dangerous_accept_any_server_certificate: \
         server certificates are NOT verified; anyone on the path can impersonate the server"
    );
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| ConfigError::new("tls", format!("no usable TLS version: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyServerCertificate(provider())));
    finish(builder, client_auth)
}

fn finish(
    builder: rustls::ConfigBuilder<ClientConfig, rustls::client::WantsClientCert>,
    client_auth: Option<&ChainAndKey>,
) -> Result<Arc<ClientConfig>, ConfigError> {
    let config = match client_auth {
        Some((chain, key)) => builder
            .with_client_auth_cert(chain.clone(), key.clone_key())
            .map_err(|e| ConfigError::new("client_certificate", e.to_string()))?,
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// Accepts every server certificate but checks handshake signatures, so a connection
/// still proves the server holds the key of the certificate it shows.
#[derive(Debug)]
struct AcceptAnyServerCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyServerCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
