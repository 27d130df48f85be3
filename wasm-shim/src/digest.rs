//! Content digests of Wasm binaries and the engine compatibility key, both as SHA-256.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

use sha2::{Digest as _, Sha256};
use wasmtime::Engine;

/// Why a digest string was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DigestError {
    /// The string is not 64 hex digits, optionally prefixed with `sha256:`.
    #[error(
        "invalid sha256 digest {input:?}: expected 64 hex digits, optionally after \"sha256:\""
    )]
    Invalid {
        /// The refused string (truncated to 100 characters).
        input: String,
    },
}

/// The SHA-256 digest of a Wasm binary; displayed as 64 lower-case hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest([u8; 32]);

impl Digest {
    /// Digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self(Sha256::digest(bytes).into())
    }

    /// The raw digest.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&to_hex(&self.0))
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{self}")
    }
}

impl FromStr for Digest {
    type Err = DigestError;

    /// Parses `sha256:<hex>` (the OCI form) or bare hex.
    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let invalid = || DigestError::Invalid {
            input: input.chars().take(100).collect(),
        };
        let hex = input.strip_prefix("sha256:").unwrap_or(input);
        if hex.len() != 64 {
            return Err(invalid());
        }
        let mut out = [0u8; 32];
        for (byte, pair) in out.iter_mut().zip(hex.as_bytes().chunks_exact(2)) {
            let [high, low] = pair else {
                return Err(invalid());
            };
            *byte = (hex_value(*high).ok_or_else(invalid)? << 4)
                | hex_value(*low).ok_or_else(invalid)?;
        }
        Ok(Self(out))
    }
}

/// Value of one hex digit (either case).
fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

/// Lower-case hex of `bytes`.
pub(crate) fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0xf)]));
    }
    out
}

/// A key that changes whenever `engine` could not load artifacts compiled by another engine:
/// wasmtime's version, target and code-affecting settings, hashed with SHA-256 so it is the same
/// in every process and on every machine (unlike `std`'s hasher).
pub fn compatibility_key(engine: &Engine) -> String {
    let mut hasher = ShaHasher(Sha256::new());
    #[cfg(feature = "compiler")]
    engine.precompile_compatibility_hash().hash(&mut hasher);
    // wasmtime computes that hash from its compiler's settings. An engine without a compiler
    // runs artifacts compiled elsewhere for it; wasmtime checks each one when loading it, and
    // the cache deletes and fetches again any artifact it refuses. So one directory per
    // architecture and build is enough.
    #[cfg(not(feature = "compiler"))]
    {
        let _ = engine;
        (
            "precompiled-only",
            std::env::consts::ARCH,
            env!("CARGO_PKG_VERSION"),
        )
            .hash(&mut hasher);
    }
    let digest: [u8; 32] = hasher.0.finalize().into();
    // 128 bits are plenty to tell engine configurations apart and keep paths short.
    to_hex(digest.get(..16).unwrap_or(&digest))
}

/// Feeds [`Hash`] output into SHA-256.
struct ShaHasher(Sha256);

impl Hasher for ShaHasher {
    fn finish(&self) -> u64 {
        // Only `write` matters here; callers take the full SHA-256 from the inner state.
        let digest: [u8; 32] = self.0.clone().finalize().into();
        let mut first = [0u8; 8];
        first.copy_from_slice(digest.get(..8).unwrap_or(&[0; 8]));
        u64::from_le_bytes(first)
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_of_known_input() {
        assert_eq!(
            Digest::of(b"abc").to_string(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn parses_bare_and_prefixed_hex_and_round_trips() {
        let text = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        let bare: Digest = text.parse().expect("bare");
        let prefixed: Digest = format!("sha256:{text}").parse().expect("prefixed");
        assert_eq!(bare, prefixed);
        assert_eq!(bare, Digest::of(b"abc"));
        assert_eq!(format!("{bare:?}"), format!("sha256:{text}"));
    }

    #[test]
    fn malformed_digests_are_refused() {
        for bad in [
            "",
            "sha256:",
            "abc",
            "sha512:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
            "zz7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad00",
            "+a7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
            "é7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015a",
        ] {
            assert!(bad.parse::<Digest>().is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn compatibility_key_is_stable_and_tracks_settings() {
        let engine = Engine::default();
        let again = Engine::default();
        assert_eq!(compatibility_key(&engine), compatibility_key(&again));
        assert_eq!(compatibility_key(&engine).len(), 32);
        let mut config = wasmtime::Config::new();
        config.epoch_interruption(true);
        let other = Engine::new(&config).expect("engine");
        assert_ne!(compatibility_key(&engine), compatibility_key(&other));
    }
}
