//! The bearer token check of the HTTP endpoint.

use super::Token;
use axum::http::{header, HeaderMap};

/// `Ok` when the request carries `Authorization: Bearer <token>`; the
/// comparison takes the same time wherever a wrong token differs.
pub(crate) fn check(token: &Token, headers: &HeaderMap) -> Result<(), String> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err("this endpoint requires `Authorization: Bearer <token>`".into());
    };
    let value = value.as_bytes();
    let presented = match value.get(..7) {
        Some(scheme) if scheme.eq_ignore_ascii_case(b"bearer ") => &value[7..],
        _ => return Err("the Authorization header is not a bearer token".into()),
    };
    if token.matches(presented) {
        Ok(())
    } else {
        Err("the bearer token is not the one this endpoint requires".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_bearer_token_passes() {
        let token = Token::new("s3cret").unwrap();
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::AUTHORIZATION, v.parse().unwrap());
            check(&token, &h)
        };
        assert!(with("Bearer s3cret").is_ok());
        assert!(with("bearer s3cret").is_ok());
        assert!(with("Bearer s3cre").is_err());
        assert!(with("Bearer s3cret ").is_err());
        assert!(with("Basic s3cret").is_err());
        assert!(check(&token, &HeaderMap::new()).is_err());
    }
}
