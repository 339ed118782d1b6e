//! HTTPS on warren's listeners: the certificate chain and key a listener
//! shows, and the CA it checks client certificates against (mutual TLS).

use crate::config::read_file;
use crate::error::Error;
use std::path::PathBuf;
use std::sync::Arc;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{self, RootCertStore, ServerConfig};
use tokio_rustls::TlsAcceptor;

/// The files a listener serves HTTPS with (feature `tls`): PEM files of
/// its certificate chain (the listener's certificate first) and of its
/// private key (PKCS#8, PKCS#1 or SEC1), and optionally of the CA
/// certificates that must have signed a client's certificate (mutual TLS:
/// a client without one is refused in the handshake).
///
/// The files are read when the listener starts; a missing or unreadable
/// file, one without a certificate or key, or a key that is not the
/// certificate's, is an [`Error::Config`] naming the file.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerTls {
    /// PEM file of the certificate chain.
    pub cert: PathBuf,
    /// PEM file of the certificate's private key.
    pub key: PathBuf,
    /// PEM file of the CAs client certificates must be signed by; `None`:
    /// no client certificate is asked for.
    pub client_ca: Option<PathBuf>,
    /// Where the files were set, for the errors.
    pub(crate) setting: String,
}

impl ServerTls {
    /// Serves the certificate chain in `cert` with the key in `key`.
    pub fn new(cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        Self {
            cert: cert.into(),
            key: key.into(),
            client_ca: None,
            setting: "ServerTls".to_owned(),
        }
    }

    /// Requires client certificates signed by a CA in the PEM file `ca`.
    #[must_use]
    pub fn client_ca(mut self, ca: impl Into<PathBuf>) -> Self {
        self.client_ca = Some(ca.into());
        self
    }

    /// Reads the files into a TLS acceptor.
    pub(crate) fn acceptor(&self) -> Result<TlsAcceptor, Error> {
        let setting = self.setting.as_str();
        let bad = |what: &str, path: &PathBuf, why: &dyn std::fmt::Display| {
            Error::Config(format!("{setting}: the {what} `{}` {why}", path.display()))
        };
        let chain = read_file(setting, "certificate file", &self.cert)?;
        let chain = CertificateDer::pem_slice_iter(&chain)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad("certificate file", &self.cert, &format!("is not PEM: {e}")))?;
        if chain.is_empty() {
            return Err(bad("certificate file", &self.cert, &"holds no certificate"));
        }
        let key = read_file(setting, "key file", &self.key)?;
        let key = PrivateKeyDer::from_pem_slice(&key)
            .map_err(|e| bad("key file", &self.key, &format!("holds no private key: {e}")))?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Config(format!("{setting}: TLS cannot be set up: {e}")))?;
        let builder = match &self.client_ca {
            None => builder.with_no_client_auth(),
            Some(path) => {
                let pem = read_file(setting, "client CA file", path)?;
                let mut roots = RootCertStore::empty();
                for cert in CertificateDer::pem_slice_iter(&pem) {
                    let cert =
                        cert.map_err(|e| bad("client CA file", path, &format!("is not PEM: {e}")))?;
                    roots.add(cert).map_err(|e| {
                        bad(
                            "client CA file",
                            path,
                            &format!("holds a bad certificate: {e}"),
                        )
                    })?;
                }
                if roots.is_empty() {
                    return Err(bad("client CA file", path, &"holds no certificate"));
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                        .build()
                        .map_err(|e| bad("client CA file", path, &e))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config = builder.with_single_cert(chain, key).map_err(|e| {
            Error::Config(format!(
                "{setting}: the key `{}` does not go with the certificate `{}`: {e}",
                self.key.display(),
                self.cert.display()
            ))
        })?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(TlsAcceptor::from(Arc::new(config)))
    }
}
