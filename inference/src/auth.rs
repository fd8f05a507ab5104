//! The API-key check of `distill serve`.
//!
//! A key is configured through an environment variable (`--api-key-env VAR`), never on the
//! command line where `ps` shows it. The check fails closed: a configured key that is empty
//! matches nothing (and the CLI refuses to start with one), a missing or malformed
//! `Authorization` header is rejected before anything is compared, and the comparison takes the
//! same time whatever the bytes or length of the guess, so the key cannot be read off timings.

use axum::http::header::AUTHORIZATION;
use axum::http::HeaderMap;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::InferenceError;

/// Reads the API key from environment variable `var` (the value of `--api-key-env`). Unset,
/// empty or blank is an error: a server meant to be protected must not start open.
pub fn api_key_from_env(var: &str) -> Result<String, InferenceError> {
    let key = std::env::var(var).map_err(|source| InferenceError::MissingEnv {
        key: "--api-key-env",
        var: var.to_string(),
        source,
    })?;
    if key.trim().is_empty() {
        return Err(InferenceError::Config(format!(
            "--api-key-env names `{var}`, which is empty: set it to the key clients must send, \
             or leave out --api-key-env to serve without authentication"
        )));
    }
    Ok(key)
}

/// The token of an `Authorization: Bearer TOKEN` header. The scheme is matched
/// case-insensitively (RFC 9110: `bearer` and `BEARER` are the same scheme); anything else —
/// no header, no space, another scheme, an empty token — is `None`.
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = value.split_once(char::is_whitespace)?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// True when `given` equals `key`, in time independent of both: the SHA-256 digests are
/// compared in constant time, so neither a differing byte nor a differing length shows in how
/// long the answer takes. An empty `key` matches nothing.
pub fn key_matches(given: &str, key: &str) -> bool {
    if key.is_empty() {
        return false;
    }
    let a = Sha256::digest(given.as_bytes());
    let b = Sha256::digest(key.as_bytes());
    bool::from(a.as_slice().ct_eq(b.as_slice()))
}

/// Whether a request with `headers` may pass: always when no key is configured, otherwise only
/// with `Authorization: Bearer <key>`.
pub fn authorized(key: Option<&str>, headers: &HeaderMap) -> bool {
    match key {
        None => true,
        Some(key) => bearer_token(headers).is_some_and(|t| key_matches(t, key)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn with_auth(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn scheme_is_case_insensitive_and_malformed_headers_fail() {
        for ok in ["Bearer k3y", "bearer k3y", "BEARER  k3y ", "Bearer\tk3y"] {
            assert!(authorized(Some("k3y"), &with_auth(ok)), "{ok:?}");
        }
        for bad in [
            "xyz",
            "k3y",
            "Bearer",
            "Bearer ",
            "Basic k3y",
            "Bearer k3y2",
            "Bearerk3y",
        ] {
            assert!(!authorized(Some("k3y"), &with_auth(bad)), "{bad:?}");
        }
        assert!(!authorized(Some("k3y"), &HeaderMap::new()));
        assert!(authorized(None, &HeaderMap::new()));
    }

    #[test]
    fn an_empty_key_matches_nothing() {
        assert!(!key_matches("", ""));
        assert!(!authorized(Some(""), &HeaderMap::new()));
        assert!(!authorized(Some(""), &with_auth("Bearer ")));
        assert!(!authorized(Some(""), &with_auth("xyz")));
    }

    #[test]
    fn empty_or_unset_key_variables_are_errors() {
        let var = "DISTILL_AUTH_UNIT_TEST_KEY";
        std::env::remove_var(var);
        let e = api_key_from_env(var).unwrap_err();
        assert!(e.to_string().contains(var), "{e}");
        std::env::set_var(var, "  ");
        let e = api_key_from_env(var).unwrap_err();
        assert!(e.to_string().contains("empty"), "{e}");
        std::env::set_var(var, "s3cret");
        assert_eq!(api_key_from_env(var).unwrap(), "s3cret");
        std::env::remove_var(var);
    }
}
