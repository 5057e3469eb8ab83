//! [`ServerTls`]: the rustls server configuration for a listener, with optional client
//! certificate verification (mTLS), built with the ring provider like the client side.

use std::fmt;
use std::sync::Arc;

use connection_core::ConfigError;
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};

use crate::source::{CertSource, KeySource};

/// Whether and how the server asks for client certificates.
#[derive(Clone, Debug, Default)]
enum ClientAuth {
    /// No client certificate is requested.
    #[default]
    None,
    /// A client certificate signed by one of the roots is required.
    Required(CertSource),
    /// A client certificate is requested; when one is presented it must verify, but a
    /// client without one is let in.
    Optional(CertSource),
}

/// Builder of a listener's TLS configuration: a certificate chain and its key, optional
/// client-certificate verification, ALPN protocols.
///
/// Everything is loaded and checked in [`build`](Self::build), whose error names the
/// setting at fault (`server_certificate`, `server_private_key`,
/// `client_ca_certificates`) and never shows key material.
///
/// ```no_run
/// use connection_tls::{CertSource, ServerTls};
///
/// let config = ServerTls::from_pem_files("server.pem", "server.key")
///     .client_auth_required(CertSource::pem_file("clients-ca.pem"))
///     .alpn(["myproto/1"])
///     .build()?;
/// # Ok::<(), connection_core::ConfigError>(())
/// ```
#[derive(Clone)]
#[must_use]
pub struct ServerTls {
    chain: CertSource,
    key: KeySource,
    client_auth: ClientAuth,
    alpn: Vec<Vec<u8>>,
}

impl fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerTls")
            .field("chain", &self.chain)
            .field("key", &self.key)
            .field("client_auth", &self.client_auth)
            .field("alpn", &self.alpn)
            .finish()
    }
}

impl ServerTls {
    /// A server presenting `chain` (end-entity certificate first) with its private `key`.
    pub fn new(chain: CertSource, key: KeySource) -> Self {
        Self {
            chain,
            key,
            client_auth: ClientAuth::None,
            alpn: Vec::new(),
        }
    }

    /// The chain and key from PEM files (read in [`build`](Self::build)).
    pub fn from_pem_files(
        chain: impl Into<std::path::PathBuf>,
        key: impl Into<std::path::PathBuf>,
    ) -> Self {
        Self::new(CertSource::pem_file(chain), KeySource::pem_file(key))
    }

    /// The chain and key from PEM text.
    pub fn from_pem(chain: impl AsRef<[u8]>, key: impl AsRef<[u8]>) -> Self {
        Self::new(CertSource::pem(chain), KeySource::pem(key))
    }

    /// Requires a client certificate that verifies against `roots` (mutual TLS): a client
    /// without one fails the handshake.
    pub fn client_auth_required(mut self, roots: CertSource) -> Self {
        self.client_auth = ClientAuth::Required(roots);
        self
    }

    /// Asks for a client certificate that verifies against `roots`, but lets in a client
    /// that presents none (one that presents a bad one still fails).
    pub fn client_auth_optional(mut self, roots: CertSource) -> Self {
        self.client_auth = ClientAuth::Optional(roots);
        self
    }

    /// The ALPN protocols offered, most preferred first (none by default).
    pub fn alpn<I, P>(mut self, protocols: I) -> Self
    where
        I: IntoIterator<Item = P>,
        P: AsRef<[u8]>,
    {
        self.alpn = protocols.into_iter().map(|p| p.as_ref().to_vec()).collect();
        self
    }

    /// The rustls configuration. Fails (naming the setting) for a file that cannot be
    /// read, malformed PEM, no certificate, a key that does not match the certificate,
    /// or client CA roots rustls refuses.
    pub fn build(&self) -> Result<Arc<ServerConfig>, ConfigError> {
        let chain = self.chain.load("server_certificate")?;
        let key = self.key.load("server_private_key")?;
        let provider = crate::provider();
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| ConfigError::new("tls", format!("no usable TLS version: {e}")))?;
        let builder = match &self.client_auth {
            ClientAuth::None => builder.with_no_client_auth(),
            ClientAuth::Required(roots) | ClientAuth::Optional(roots) => {
                const SETTING: &str = "client_ca_certificates";
                let mut store = RootCertStore::empty();
                for cert in roots.load(SETTING)? {
                    store.add(cert).map_err(|e| {
                        ConfigError::new(SETTING, format!("certificate rejected: {e}"))
                    })?;
                }
                let mut verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(store), provider);
                if matches!(self.client_auth, ClientAuth::Optional(_)) {
                    verifier = verifier.allow_unauthenticated();
                }
                let verifier = verifier
                    .build()
                    .map_err(|e| ConfigError::new(SETTING, e.to_string()))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config = builder
            .with_single_cert(chain, key)
            .map_err(|e| ConfigError::new("server_private_key", key_error(&e)))?;
        config.alpn_protocols = self.alpn.clone();
        Ok(Arc::new(config))
    }
}

fn key_error(e: &rustls::Error) -> String {
    match e {
        rustls::Error::InconsistentKeys(_) => {
            "the private key does not match the server certificate".into()
        }
        other => format!("refused: {other}"),
    }
}
