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
#![forbid(unsafe_code)]

use std::fmt;
use std::sync::{Arc, OnceLock};

use connection_core::ConfigError;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};

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
    /// A finished configuration, used as it is (overrides `roots` and `client_auth`).
    pub config: Option<Arc<ClientConfig>>,
}

impl fmt::Debug for TlsSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Roots are counted and the key never shown.
        f.debug_struct("TlsSource")
            .field("custom_roots", &self.roots.as_ref().map(RootCertStore::len))
            .field("client_certificate", &self.client_auth.is_some())
            .field("custom_config", &self.config.is_some())
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

    /// The rustls configuration these settings describe. Fails (setting `tls` or
    /// `client_certificate`) when rustls refuses them, e.g. a key that does not match
    /// its certificate.
    pub fn client_config(&self) -> Result<Arc<ClientConfig>, ConfigError> {
        if let Some(config) = &self.config {
            return Ok(config.clone());
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

fn build(
    roots: RootCertStore,
    client_auth: Option<&(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
) -> Result<Arc<ClientConfig>, ConfigError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ConfigError::new("tls", format!("no usable TLS version: {e}")))?
        .with_root_certificates(roots);
    let config = match client_auth {
        Some((chain, key)) => builder
            .with_client_auth_cert(chain.clone(), key.clone_key())
            .map_err(|e| ConfigError::new("client_certificate", e.to_string()))?,
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}
