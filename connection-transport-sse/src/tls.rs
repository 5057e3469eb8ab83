//! TLS for `https://`: rustls with the ring provider, handed to reqwest as a finished
//! configuration (reqwest's `rustls-no-provider` feature), so aws-lc-rs is never
//! compiled in and nothing is installed process-wide.
//!
//! The default configuration (webpki roots, no client certificate) is built once per
//! process: the root store is the largest part of a TLS configuration.

use std::fmt;
use std::sync::{Arc, OnceLock};

use connection_core::ConfigError;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};

/// A client certificate chain and its key.
type ClientAuth = Arc<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>;

/// TLS settings as given to the builder.
#[derive(Clone, Default)]
pub(crate) struct TlsSource {
    pub(crate) roots: Option<RootCertStore>,
    pub(crate) client_auth: Option<ClientAuth>,
    pub(crate) config: Option<Arc<ClientConfig>>,
}

impl fmt::Debug for TlsSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsSource")
            .field("custom_roots", &self.roots.as_ref().map(RootCertStore::len))
            .field("client_certificate", &self.client_auth.is_some())
            .field("custom_config", &self.config.is_some())
            .finish()
    }
}

impl TlsSource {
    pub(crate) fn client_config(&self) -> Result<Arc<ClientConfig>, ConfigError> {
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
