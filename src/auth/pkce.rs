//! PKCE (RFC 7636, S256) and the random `state` of an authorization request.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

use crate::auth::secret::Secret;

use crate::random::bytes as random_bytes;

/// A verifier and its S256 challenge.
pub struct Pkce {
    pub verifier: Secret,
    pub challenge: String,
}

impl Pkce {
    /// 32 random bytes, base64url: a 43-character verifier (the RFC's minimum length, maximum
    /// entropy per character).
    pub fn new() -> Pkce {
        let verifier = URL_SAFE_NO_PAD.encode(random_bytes::<32>());
        let challenge = challenge(&verifier);
        Pkce {
            verifier: Secret::new(verifier),
            challenge,
        }
    }
}

impl Default for Pkce {
    fn default() -> Self {
        Self::new()
    }
}

/// `BASE64URL(SHA256(verifier))`.
pub fn challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(ring::digest::digest(
        &ring::digest::SHA256,
        verifier.as_bytes(),
    ))
}

/// A fresh `state` value (128 random bits, hex).
pub fn state() -> String {
    random_bytes::<16>()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7636_appendix_b_vector() {
        assert_eq!(
            challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn fresh_values_differ() {
        let (a, b) = (Pkce::new(), Pkce::new());
        assert_eq!(a.verifier.expose().len(), 43);
        assert_ne!(a.verifier.expose(), b.verifier.expose());
        assert_ne!(state(), state());
    }
}
