//! A PostOffice configured from the environment (the `postoffice`
//! binary's settings).

use super::{Authenticator, Jwt, Limits, PostOffice, PostOfficeBuilder, TokenList};
use crate::address::{ServiceId, ServiceType};
use crate::error::Error;
use crate::http::Token;

/// The variables [`PostOfficeBuilder::with_env_from`] reads, with what
/// they set, as `--help` lists them.
pub const ENV_HELP: &str = "\
  WARREN_POSTOFFICE_TOKENS           token=user,token=user: a token list authenticator
  WARREN_POSTOFFICE_JWT_SECRET       HS256 JWT authenticator with this secret
  WARREN_POSTOFFICE_JWT_PUBLIC_KEY   RS256 JWT authenticator: path of the RSA public key (PEM)
  WARREN_POSTOFFICE_JWT_ISSUER       JWT: accepted issuer (`iss`), if set
  WARREN_POSTOFFICE_JWT_AUDIENCE     JWT: accepted audience (`aud`), if set
  WARREN_POSTOFFICE_ID               instance id (default: random)
  WARREN_POSTOFFICE_SERVICE          service type of the PostOffice nodes (default postoffice)
  WARREN_POSTOFFICE_MAX_CONNECTIONS  connections held at once (default 10000)
  WARREN_POSTOFFICE_MAX_FRAME_BYTES  largest frame answered (default 65536)
  WARREN_POSTOFFICE_MAX_IN_FLIGHT    requests in flight per connection (default 64)
  WARREN_POSTOFFICE_SEND_QUEUE       frames queued per connection (default 256)
  WARREN_POSTOFFICE_PING_MS          ping period (default 20000)
  WARREN_POSTOFFICE_IDLE_TIMEOUT_MS  idle connections closed after (default 60000)
  WARREN_POSTOFFICE_HEADER_TIMEOUT_MS  time to send a request's headers (default 10000)
  WARREN_POSTOFFICE_TLS_CERT         serve wss:// with this PEM certificate chain...
  WARREN_POSTOFFICE_TLS_KEY          ...and this PEM private key
  WARREN_POSTOFFICE_TLS_CLIENT_CA    require client certificates signed by these CAs
  WARREN_POSTOFFICE_AUTH_TIMEOUT_MS  time to send the auth frame (default 10000)
  WARREN_POSTOFFICE_DEFAULT_TIMEOUT_MS  deadline of a request without timeout_ms (default 10000)
  WARREN_POSTOFFICE_MAX_TIMEOUT_MS   longest timeout_ms taken (default 60000)
  WARREN_HTTP_TOKEN                  bearer token of the services' HTTP endpoints (fallback)
  WARREN_HTTP_TLS_CA                 CAs trusted for the services' https:// endpoints";

impl PostOfficeBuilder {
    /// Sets what the environment says, read through `lookup` (pass
    /// `|k| std::env::var(k).ok()`): the variables of [`ENV_HELP`]. One
    /// authenticator must be configured: a token list or a JWT key.
    ///
    /// # Errors
    /// [`Error::Config`] naming the variable that is wrong, or when none
    /// or more than one authenticator is set.
    pub fn with_env_from(mut self, lookup: impl Fn(&str) -> Option<String>) -> Result<Self, Error> {
        self.limits = Limits::default().with_env_from(&lookup)?;
        if let Some(id) = lookup("WARREN_POSTOFFICE_ID") {
            self.id = ServiceId::new(id.trim())?;
        }
        if let Some(service) = lookup("WARREN_POSTOFFICE_SERVICE") {
            self.service = ServiceType::new(service.trim())?;
        }
        if let Some(token) = lookup("WARREN_HTTP_TOKEN").filter(|t| !t.is_empty()) {
            self.http_token = Some(Token::new(token)?);
        }
        // The same variables set the listener's limits (above) and its TLS.
        let listen =
            crate::listen::ListenConfig::default().with_env_from("WARREN_POSTOFFICE_", &lookup)?;
        #[cfg(feature = "tls")]
        {
            self.tls = listen.tls;
            if let Some(ca) = lookup("WARREN_HTTP_TLS_CA").filter(|v| !v.trim().is_empty()) {
                self.http_ca = Some(ca.trim().into());
            }
        }
        #[cfg(not(feature = "tls"))]
        let _ = listen;
        let mut auths: Vec<Box<dyn Authenticator>> = Vec::new();
        if let Some(list) = lookup("WARREN_POSTOFFICE_TOKENS") {
            auths.push(Box::new(TokenList::parse(&list)?));
        }
        let jwt = match (
            lookup("WARREN_POSTOFFICE_JWT_SECRET"),
            lookup("WARREN_POSTOFFICE_JWT_PUBLIC_KEY"),
        ) {
            (Some(secret), None) => Some(Jwt::hs256(secret.as_bytes())),
            (None, Some(path)) => {
                let pem = std::fs::read(&path).map_err(|e| {
                    Error::Config(format!(
                        "WARREN_POSTOFFICE_JWT_PUBLIC_KEY: cannot read {path}: {e}"
                    ))
                })?;
                Some(Jwt::rs256_pem(&pem)?)
            }
            (Some(_), Some(_)) => return Err(Error::Config(
                "set WARREN_POSTOFFICE_JWT_SECRET or WARREN_POSTOFFICE_JWT_PUBLIC_KEY, not both"
                    .into(),
            )),
            (None, None) => None,
        };
        if let Some(mut jwt) = jwt {
            if let Some(iss) = lookup("WARREN_POSTOFFICE_JWT_ISSUER") {
                jwt = jwt.issuer(&iss);
            }
            if let Some(aud) = lookup("WARREN_POSTOFFICE_JWT_AUDIENCE") {
                jwt = jwt.audience(&aud);
            }
            auths.push(Box::new(jwt));
        }
        if auths.len() != 1 {
            return Err(Error::Config(
                "set one authenticator: WARREN_POSTOFFICE_TOKENS, WARREN_POSTOFFICE_JWT_SECRET or WARREN_POSTOFFICE_JWT_PUBLIC_KEY".into(),
            ));
        }
        self.auth = auths.pop();
        Ok(self)
    }
}

impl PostOffice {
    /// A builder set from the process environment
    /// ([`PostOfficeBuilder::with_env_from`]).
    ///
    /// # Errors
    /// As [`PostOfficeBuilder::with_env_from`].
    pub fn from_env() -> Result<PostOfficeBuilder, Error> {
        Self::builder().with_env_from(|k| std::env::var(k).ok())
    }
}
