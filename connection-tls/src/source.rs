//! Certificates and keys from PEM files, PEM text or DER, loaded the same way for the
//! client and the server side. PEM is parsed by rustls-pki-types' [`PemObject`]
//! (rustls-pemfile is unmaintained).

use std::fmt;
use std::path::PathBuf;

use connection_core::ConfigError;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Where certificates come from: a PEM file, PEM text, or DER already parsed.
///
/// ```
/// use connection_tls::CertSource;
///
/// let missing = CertSource::pem_file("/nonexistent/chain.pem");
/// let err = missing.load("server_certificate").unwrap_err();
/// assert_eq!(err.field(), "server_certificate");
/// ```
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CertSource {
    /// A file of one or more `CERTIFICATE` PEM blocks.
    PemFile(PathBuf),
    /// PEM text of one or more `CERTIFICATE` blocks.
    Pem(Vec<u8>),
    /// DER certificates.
    Der(Vec<CertificateDer<'static>>),
}

impl fmt::Debug for CertSource {
    /// The path, or how much is held: certificates are public, but a page of PEM bytes
    /// in a log helps nobody.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::PemFile(p) => f.debug_tuple("PemFile").field(p).finish(),
            Self::Pem(t) => write!(f, "Pem({} bytes)", t.len()),
            Self::Der(c) => write!(f, "Der({} certificates)", c.len()),
        }
    }
}

impl CertSource {
    /// Certificates in the PEM file at `path` (read when loaded).
    pub fn pem_file(path: impl Into<PathBuf>) -> Self {
        Self::PemFile(path.into())
    }

    /// Certificates in PEM text.
    pub fn pem(text: impl AsRef<[u8]>) -> Self {
        Self::Pem(text.as_ref().to_vec())
    }

    /// DER certificates.
    pub fn der(certs: impl IntoIterator<Item = CertificateDer<'static>>) -> Self {
        Self::Der(certs.into_iter().collect())
    }

    /// The certificates, in order. Fails (naming `setting`) when the file cannot be read,
    /// the PEM is malformed, or there is no certificate at all.
    pub fn load(&self, setting: &'static str) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
        let certs: Vec<CertificateDer<'static>> = match self {
            Self::Der(certs) => certs.clone(),
            Self::Pem(text) => CertificateDer::pem_slice_iter(text)
                .collect::<Result<_, _>>()
                .map_err(|e| ConfigError::new(setting, format!("bad PEM: {e}")))?,
            Self::PemFile(path) => CertificateDer::pem_file_iter(path)
                .map_err(|e| pem_file_error(setting, path, e))?
                .collect::<Result<_, _>>()
                .map_err(|e| pem_file_error(setting, path, e))?,
        };
        if certs.is_empty() {
            return Err(ConfigError::new(setting, "no CERTIFICATE found"));
        }
        Ok(certs)
    }
}

/// Where a private key comes from: a PEM file, PEM text or DER. `Debug` never shows the
/// key.
#[derive(PartialEq, Eq)]
#[non_exhaustive]
pub enum KeySource {
    /// A file holding one `PRIVATE KEY`, `RSA PRIVATE KEY` or `EC PRIVATE KEY` PEM block
    /// (the first one found is used).
    PemFile(PathBuf),
    /// PEM text holding a private key.
    Pem(Vec<u8>),
    /// A DER private key.
    Der(PrivateKeyDer<'static>),
}

impl Clone for KeySource {
    fn clone(&self) -> Self {
        match self {
            Self::PemFile(p) => Self::PemFile(p.clone()),
            Self::Pem(t) => Self::Pem(t.clone()),
            Self::Der(k) => Self::Der(k.clone_key()),
        }
    }
}

impl fmt::Debug for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::PemFile(p) => f.debug_tuple("PemFile").field(p).finish(),
            Self::Pem(_) => f.write_str("Pem(<redacted>)"),
            Self::Der(_) => f.write_str("Der(<redacted>)"),
        }
    }
}

impl KeySource {
    /// The key in the PEM file at `path` (read when loaded).
    pub fn pem_file(path: impl Into<PathBuf>) -> Self {
        Self::PemFile(path.into())
    }

    /// The key in PEM text.
    pub fn pem(text: impl AsRef<[u8]>) -> Self {
        Self::Pem(text.as_ref().to_vec())
    }

    /// A DER key.
    pub fn der(key: PrivateKeyDer<'static>) -> Self {
        Self::Der(key)
    }

    /// The key. Fails (naming `setting`, never showing key material) when the file cannot
    /// be read or holds no key.
    pub fn load(&self, setting: &'static str) -> Result<PrivateKeyDer<'static>, ConfigError> {
        match self {
            Self::Der(key) => Ok(key.clone_key()),
            // The pki-types error names the problem (no key found, bad base64...) and
            // carries no key bytes.
            Self::Pem(text) => PrivateKeyDer::from_pem_slice(text)
                .map_err(|e| ConfigError::new(setting, format!("bad PEM private key: {e}"))),
            Self::PemFile(path) => {
                PrivateKeyDer::from_pem_file(path).map_err(|e| pem_file_error(setting, path, e))
            }
        }
    }
}

fn pem_file_error(
    setting: &'static str,
    path: &std::path::Path,
    e: rustls::pki_types::pem::Error,
) -> ConfigError {
    ConfigError::new(setting, format!("{}: {e}", path.display()))
}
