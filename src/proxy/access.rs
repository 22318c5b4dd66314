//! `--proxy-token`: which local clients may use the proxy's cloud identity, beyond the
//! Host/Origin [`super::guard`]. On a machine with other users, any of their processes can
//! connect to a loopback port; with a token set, only clients that present it as
//! `Authorization: Bearer <token>` are served.
//!
//! Only a SHA-256 digest of the token is kept, and a presented token is compared digest to
//! digest in constant time, so neither the token's length nor a matching prefix shows in the
//! timing. The client's `Authorization` header is never forwarded upstream (see
//! [`super::forward`]): the proxy's own credential replaces it.

use hyper::header::{HeaderMap, AUTHORIZATION};
use ring::digest::{digest, SHA256};

/// The token clients must present. Its `Debug` never shows it.
#[derive(Clone)]
pub struct ProxyToken {
    digest: [u8; 32],
}

impl std::fmt::Debug for ProxyToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProxyToken(****)")
    }
}

/// Why a request was not let through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenRefusal {
    #[error(
        "this proxy requires a token: send \"Authorization: Bearer <token>\" with the value of its \
         --proxy-token (ALIBRIDGE_PROXY_TOKEN)"
    )]
    Missing,
    #[error(
        "the Authorization header is not \"Bearer <token>\"; this proxy requires \
         \"Authorization: Bearer <token>\" with the value of its --proxy-token (ALIBRIDGE_PROXY_TOKEN)"
    )]
    NotBearer,
    #[error(
        "the bearer token does not match this proxy's --proxy-token (ALIBRIDGE_PROXY_TOKEN); \
         check the token configured in the client"
    )]
    Wrong,
}

impl ProxyToken {
    /// Validates `raw` (from the flag or the environment): non-empty, and only characters a
    /// client can put in a header without quoting (visible ASCII, no spaces).
    pub fn new(raw: &str) -> Result<ProxyToken, String> {
        let t = raw.trim();
        if t.is_empty() {
            return Err(
                "--proxy-token (ALIBRIDGE_PROXY_TOKEN) is empty; give a long random value, \
                 e.g. from `openssl rand -hex 32`"
                    .into(),
            );
        }
        if !t.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(
                "--proxy-token (ALIBRIDGE_PROXY_TOKEN) may only contain visible ASCII characters \
                 without spaces (it travels in an HTTP header)"
                    .into(),
            );
        }
        Ok(ProxyToken {
            digest: sha256(t.as_bytes()),
        })
    }

    /// Checks the request's `Authorization` header.
    pub fn check(&self, headers: &HeaderMap) -> Result<(), TokenRefusal> {
        if equal(&presented(headers)?.0, &self.digest) {
            Ok(())
        } else {
            Err(TokenRefusal::Wrong)
        }
    }
}

/// The digest of the bearer token a request presented: what a proxy confirmation is bound to
/// (with the session), so the token itself is never kept. Compared in constant time; its
/// `Debug` never shows it.
#[derive(Clone, Copy)]
pub struct Presented([u8; 32]);

impl PartialEq for Presented {
    fn eq(&self, other: &Self) -> bool {
        equal(&self.0, &other.0)
    }
}

impl Eq for Presented {}

impl std::fmt::Debug for Presented {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Presented(****)")
    }
}

/// The bearer token in the request's one `Authorization` header, digested.
pub fn presented(headers: &HeaderMap) -> Result<Presented, TokenRefusal> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return Err(if headers.contains_key(AUTHORIZATION) {
            TokenRefusal::NotBearer // several: ambiguous
        } else {
            TokenRefusal::Missing
        });
    };
    let value = value.as_bytes();
    match value.iter().position(|b| *b == b' ') {
        Some(i) if value[..i].eq_ignore_ascii_case(b"bearer") => {
            Ok(Presented(sha256(value[i + 1..].trim_ascii())))
        }
        _ => Err(TokenRefusal::NotBearer),
    }
}

fn sha256(data: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest(&SHA256, data).as_ref());
    out
}

/// Compares two digests without an early exit.
fn equal(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let diff = a
        .iter()
        .zip(b)
        .fold(0u8, |acc, (x, y)| acc | std::hint::black_box(x ^ y));
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn with_auth(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn accepts_only_the_exact_bearer_token() {
        let t = ProxyToken::new("  s3cret-Token_0123456789  ").unwrap();
        assert_eq!(
            t.check(&with_auth(&["Bearer s3cret-Token_0123456789"])),
            Ok(())
        );
        assert_eq!(
            t.check(&with_auth(&["bearer s3cret-Token_0123456789"])),
            Ok(())
        );
        assert_eq!(t.check(&HeaderMap::new()), Err(TokenRefusal::Missing));
        for wrong in [
            "Bearer s3cret-Token_012345678",
            "Bearer s3cret-Token_01234567890",
            "Bearer S3cret-Token_0123456789",
            "Bearer ",
        ] {
            assert_eq!(
                t.check(&with_auth(&[wrong])),
                Err(TokenRefusal::Wrong),
                "{wrong}"
            );
        }
        for odd in ["Basic czNjcmV0", "s3cret-Token_0123456789", "Bearer"] {
            assert_eq!(
                t.check(&with_auth(&[odd])),
                Err(TokenRefusal::NotBearer),
                "{odd}"
            );
        }
        assert_eq!(
            t.check(&with_auth(&[
                "Bearer s3cret-Token_0123456789",
                "Bearer s3cret-Token_0123456789"
            ])),
            Err(TokenRefusal::NotBearer),
            "two Authorization headers are ambiguous"
        );
    }

    #[test]
    fn presented_tokens_compare_by_digest_and_never_print() {
        let a = presented(&with_auth(&["Bearer token-a"])).unwrap();
        assert_eq!(a, presented(&with_auth(&["bearer  token-a "])).unwrap());
        assert_ne!(a, presented(&with_auth(&["Bearer token-b"])).unwrap());
        assert_eq!(format!("{a:?}"), "Presented(****)");
        assert_eq!(
            presented(&HeaderMap::new()).unwrap_err(),
            TokenRefusal::Missing
        );
    }

    #[test]
    fn rejects_unusable_tokens_and_never_prints_one() {
        assert!(ProxyToken::new("   ").is_err());
        assert!(ProxyToken::new("has space").is_err());
        assert!(ProxyToken::new("caf\u{e9}").is_err());
        let t = ProxyToken::new("visible-token-value").unwrap();
        assert_eq!(format!("{t:?}"), "ProxyToken(****)");
    }
}
