//! TLS to the broker beyond the platform's trust store: a CA to trust and a
//! client certificate (mutual TLS).

#[cfg(feature = "tls")]
use crate::error::Error;
#[cfg(feature = "tls")]
use std::path::Path;
use std::path::PathBuf;

/// Files for TLS to the broker (`amqps://` URLs, the `tls` feature): a CA
/// to trust besides the platform's, and a certificate and key to show the
/// broker (mutual TLS). Read at each connection attempt, so a renewed
/// certificate is picked up on the next reconnection. Set with
/// [`Config::tls_ca`](crate::Config::tls_ca) and
/// [`Config::tls_client`](crate::Config::tls_client) and
/// [`Config::tls_server_name`](crate::Config::tls_server_name), or
/// `WARREN_TLS_CA`, `WARREN_TLS_CERT`, `WARREN_TLS_KEY` and
/// `WARREN_TLS_SERVER_NAME`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TlsFiles {
    /// PEM file of the CA certificates the broker's certificate may be
    /// signed by.
    pub ca: Option<PathBuf>,
    /// PEM file of the client certificate (chain).
    pub cert: Option<PathBuf>,
    /// PEM file of the client certificate's private key (PKCS#8).
    pub key: Option<PathBuf>,
    /// The name the broker's certificate must be valid for, when it is not
    /// the URL's host (connecting by IP address, or through a load
    /// balancer or tunnel whose name the certificate does not list).
    pub server_name: Option<String>,
    /// Where they were set, for the errors that name it.
    pub(crate) setting: &'static str,
}

impl Default for TlsFiles {
    fn default() -> Self {
        Self {
            ca: None,
            cert: None,
            key: None,
            server_name: None,
            setting: "Config::tls_ca / Config::tls_client",
        }
    }
}

/// The files' contents, read for one connection attempt.
#[cfg(feature = "tls")]
pub(crate) struct TlsPem {
    pub(crate) ca: Option<String>,
    pub(crate) client: Option<(Vec<u8>, Vec<u8>)>,
}

impl TlsFiles {
    /// Whether any file is set.
    #[must_use]
    pub fn is_set(&self) -> bool {
        self.ca.is_some() || self.cert.is_some() || self.key.is_some() || self.server_name.is_some()
    }

    /// Reads the files.
    ///
    /// # Errors
    /// [`Error::Config`] naming the setting and the file when one cannot
    /// be read.
    #[cfg(feature = "tls")]
    pub(crate) fn read(&self) -> Result<TlsPem, Error> {
        let read = |what: &str, path: &Path| read_file(self.setting, what, path);
        let ca = match &self.ca {
            Some(path) => Some(String::from_utf8(read("CA file", path)?).map_err(|_| {
                let path = path.display();
                Error::Config(format!(
                    "{}: the CA file `{path}` is not PEM text",
                    self.setting
                ))
            })?),
            None => None,
        };
        let client = match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => {
                Some((read("client certificate", cert)?, read("client key", key)?))
            }
            _ => None,
        };
        Ok(TlsPem { ca, client })
    }
}

/// Reads the `what` file at `path`, set in `setting`.
///
/// # Errors
/// [`Error::Config`] naming the setting and the file.
#[cfg(feature = "tls")]
pub(crate) fn read_file(setting: &str, what: &str, path: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|e| {
        Error::Config(format!(
            "{setting}: cannot read the {what} `{}`: {e}",
            path.display()
        ))
    })
}
