//! Randomness from the operating system's CSPRNG: nonces, PKCE verifiers, OAuth `state`,
//! confirmation and quote ids. One place, at the bottom of the module graph, so every layer
//! draws it the same way.

/// `N` bytes from the operating system's CSPRNG. Without randomness a nonce, a PKCE verifier
/// or an id meant to be unguessable would be guessable: never go on.
pub fn bytes<const N: usize>() -> [u8; N] {
    use ring::rand::SecureRandom;
    let mut buf = [0u8; N];
    if ring::rand::SystemRandom::new().fill(&mut buf).is_err() {
        panic!("the operating system's random number generator failed");
    }
    buf
}

/// `N` random bytes as `2N` lower-case hex digits.
pub fn hex<const N: usize>() -> String {
    bytes::<N>().iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn draws_differ_and_hex_has_the_length() {
        assert_ne!(super::bytes::<16>(), super::bytes::<16>());
        let h = super::hex::<16>();
        assert_eq!(h.len(), 32);
        assert!(h
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
    }
}
