//! Who a connection is: the [`Authenticator`] trait and its two
//! implementations, a list of tokens and JSON Web Tokens.

use crate::http::Token;
use serde::Deserialize;
use std::fmt;

/// Who a connection is, as its authenticator decided. It travels to the
/// services in the headers of every request of the connection
/// ([`Caller`](super::Caller) reads them back).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Identity {
    /// The user (a JWT's `sub`).
    pub user: String,
    /// The client application the credential was issued to, if it says
    /// (a JWT's `azp` or `client_id`).
    pub client: Option<String>,
}

impl Identity {
    /// A user with no client application named.
    #[must_use]
    pub fn user(user: impl Into<String>) -> Self {
        Self {
            user: user.into(),
            client: None,
        }
    }

    /// Names the client application.
    #[must_use]
    pub fn with_client(mut self, client: impl Into<String>) -> Self {
        self.client = Some(client.into());
        self
    }
}

/// Why a token was refused. The connection is closed with
/// [`CLOSE_UNAUTHENTICATED`](super::CLOSE_UNAUTHENTICATED); the reason
/// goes into the close frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// No token matches.
    #[error("unknown token")]
    UnknownToken,
    /// The token is not valid: bad signature, expired, wrong issuer…
    #[error("invalid token: {0}")]
    Invalid(String),
}

/// Decides who a connection is from the token it presented, before any
/// of its frames is routed. Implement it for your own scheme (a session
/// store, say); it is called once per connection.
pub trait Authenticator: Send + Sync + 'static {
    /// The identity behind `token`, or why it is refused.
    ///
    /// # Errors
    /// [`AuthError`] when the token is refused.
    fn authenticate(&self, token: &str) -> Result<Identity, AuthError>;
}

/// A fixed list of tokens, each standing for an identity; tokens are
/// compared in constant time.
///
/// ```
/// use warren::postoffice::{Authenticator, Identity, TokenList};
/// let tokens = TokenList::new().token("s3cret-alice", Identity::user("alice"))?;
/// assert_eq!(tokens.authenticate("s3cret-alice")?.user, "alice");
/// assert!(tokens.authenticate("guess").is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Default)]
#[must_use]
pub struct TokenList {
    entries: Vec<(Token, Identity)>,
}

impl fmt::Debug for TokenList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenList")
            .field("tokens", &self.entries.len())
            .finish()
    }
}

impl TokenList {
    /// An empty list (it refuses everyone).
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `token` for `identity`.
    ///
    /// # Errors
    /// [`crate::Error::Config`] for an empty token or one with spaces.
    pub fn token(mut self, token: &str, identity: Identity) -> Result<Self, crate::Error> {
        self.entries.push((Token::new(token)?, identity));
        Ok(self)
    }

    /// Reads `token=user,token=user` (the binary's
    /// `WARREN_POSTOFFICE_TOKENS`).
    ///
    /// # Errors
    /// [`crate::Error::Config`] naming the entry that is not `token=user`.
    pub fn parse(list: &str) -> Result<Self, crate::Error> {
        let mut tokens = Self::new();
        for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let Some((token, user)) = entry.split_once('=') else {
                return Err(crate::Error::Config(format!(
                    "token list entry without `=user` (write `token=user`): {} chars",
                    entry.len()
                )));
            };
            tokens = tokens.token(token.trim(), Identity::user(user.trim()))?;
        }
        Ok(tokens)
    }
}

impl Authenticator for TokenList {
    fn authenticate(&self, token: &str) -> Result<Identity, AuthError> {
        // Every entry is compared, so the time taken tells nothing of
        // which one matched.
        let mut found = None;
        for (t, identity) in &self.entries {
            if t.matches(token.as_bytes()) && found.is_none() {
                found = Some(identity.clone());
            }
        }
        found.ok_or(AuthError::UnknownToken)
    }
}

/// JSON Web Tokens signed with HS256 (a shared secret) or RS256 (an RSA
/// key pair; the PostOffice holds the public key), checked with the
/// `jsonwebtoken` crate: signature, `exp` (required) and `nbf`, and `iss`
/// and `aud` when set here. The user is the `sub` claim, the client
/// `azp` or `client_id`.
#[must_use]
pub struct Jwt {
    key: jsonwebtoken::DecodingKey,
    validation: jsonwebtoken::Validation,
}

impl fmt::Debug for Jwt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Jwt")
            .field("algorithms", &self.validation.algorithms)
            .field("iss", &self.validation.iss)
            .field("aud", &self.validation.aud)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
    #[serde(default)]
    azp: Option<String>,
    #[serde(default)]
    client_id: Option<String>,
}

impl Jwt {
    fn with(key: jsonwebtoken::DecodingKey, alg: jsonwebtoken::Algorithm) -> Self {
        let mut validation = jsonwebtoken::Validation::new(alg);
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.validate_aud = false;
        Self { key, validation }
    }

    /// HS256 tokens signed with `secret`.
    pub fn hs256(secret: &[u8]) -> Self {
        Self::with(
            jsonwebtoken::DecodingKey::from_secret(secret),
            jsonwebtoken::Algorithm::HS256,
        )
    }

    /// RS256 tokens, checked with the RSA public key in `pem`.
    ///
    /// # Errors
    /// [`crate::Error::Config`] if `pem` is not an RSA public key.
    pub fn rs256_pem(pem: &[u8]) -> Result<Self, crate::Error> {
        let key = jsonwebtoken::DecodingKey::from_rsa_pem(pem)
            .map_err(|e| crate::Error::Config(format!("not an RSA public key in PEM: {e}")))?;
        Ok(Self::with(key, jsonwebtoken::Algorithm::RS256))
    }

    /// Accepts only tokens issued by `iss`.
    pub fn issuer(mut self, iss: &str) -> Self {
        self.validation.set_issuer(&[iss]);
        self
    }

    /// Accepts only tokens for the audience `aud`.
    pub fn audience(mut self, aud: &str) -> Self {
        self.validation.set_audience(&[aud]);
        self.validation.validate_aud = true;
        self
    }
}

impl Authenticator for Jwt {
    fn authenticate(&self, token: &str) -> Result<Identity, AuthError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .map_err(|e| AuthError::Invalid(e.to_string()))?;
        let claims = data.claims;
        Ok(Identity {
            user: claims.sub,
            client: claims.azp.or(claims.client_id),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hs256(secret: &[u8], claims: &serde_json::Value) -> String {
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            claims,
            &jsonwebtoken::EncodingKey::from_secret(secret),
        )
        .unwrap()
    }

    #[test]
    fn jwt_checks_signature_expiry_and_issuer() {
        let exp = jsonwebtoken::get_current_timestamp() + 600;
        let jwt = Jwt::hs256(b"k3y").issuer("warren");
        let good = hs256(
            b"k3y",
            &serde_json::json!({"sub": "ann", "azp": "web", "exp": exp, "iss": "warren"}),
        );
        assert_eq!(
            jwt.authenticate(&good).unwrap(),
            Identity::user("ann").with_client("web")
        );
        let forged = hs256(
            b"other",
            &serde_json::json!({"sub": "ann", "exp": exp, "iss": "warren"}),
        );
        assert!(matches!(
            jwt.authenticate(&forged),
            Err(AuthError::Invalid(_))
        ));
        let expired = hs256(
            b"k3y",
            &serde_json::json!({"sub": "ann", "exp": 1_000, "iss": "warren"}),
        );
        assert!(jwt.authenticate(&expired).is_err());
        let foreign = hs256(
            b"k3y",
            &serde_json::json!({"sub": "ann", "exp": exp, "iss": "else"}),
        );
        assert!(jwt.authenticate(&foreign).is_err());
        assert!(jwt.authenticate("not.a.jwt").is_err());
    }

    /// An RSA key pair made with the `openssl` command (as tests/tls.rs
    /// makes its certificates): (private PEM, public PEM).
    fn rsa_pair() -> (Vec<u8>, Vec<u8>) {
        let private = std::process::Command::new("openssl")
            .args([
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
            ])
            .output()
            .expect("the openssl command (apt-get install openssl)");
        let mut public = std::process::Command::new("openssl")
            .args(["pkey", "-pubout"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(&mut public.stdin.take().unwrap(), &private.stdout).unwrap();
        let public = public.wait_with_output().unwrap();
        (private.stdout, public.stdout)
    }

    #[test]
    fn jwt_rs256_checks_with_the_public_key() {
        let (private, public) = rsa_pair();
        let jwt = Jwt::rs256_pem(&public).unwrap();
        let exp = jsonwebtoken::get_current_timestamp() + 600;
        let token = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
            &serde_json::json!({"sub": "ann", "client_id": "app", "exp": exp}),
            &jsonwebtoken::EncodingKey::from_rsa_pem(&private).unwrap(),
        )
        .unwrap();
        assert_eq!(
            jwt.authenticate(&token).unwrap(),
            Identity::user("ann").with_client("app")
        );
        // An HS256 token signed with the public key as a secret: refused.
        let confused = hs256(&public, &serde_json::json!({"sub": "ann", "exp": exp}));
        assert!(jwt.authenticate(&confused).is_err());
        assert!(Jwt::rs256_pem(b"not a key").is_err());
    }

    #[test]
    fn token_lists_read_pairs() {
        let list = TokenList::parse("a1=ann, b2=bob").unwrap();
        assert_eq!(list.authenticate("b2").unwrap().user, "bob");
        assert_eq!(list.authenticate("a"), Err(AuthError::UnknownToken));
        assert!(TokenList::parse("justatoken").is_err());
    }
}
