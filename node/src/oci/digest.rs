//! Content digests (`sha256:<64 hex>`), validated so that they are safe to use as file names.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};

/// Why a digest string was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DigestError {
    /// The string has no `algorithm:` prefix.
    #[error("invalid digest {digest:?}: expected `sha256:<64 lowercase hex digits>`")]
    Malformed {
        /// The refused input.
        digest: String,
    },
    /// The algorithm is well-formed but not one this client can verify.
    #[error("unsupported digest algorithm {algorithm:?} in {digest:?}: only sha256 is supported")]
    UnsupportedAlgorithm {
        /// The algorithm named by the input.
        algorithm: String,
        /// The refused input.
        digest: String,
    },
    /// The encoded part is not 64 lowercase hex digits.
    #[error("invalid sha256 digest {digest:?}: expected 64 lowercase hex digits")]
    BadHex {
        /// The refused input.
        digest: String,
    },
}

/// A sha256 content digest. Holding one proves the text is `sha256:` followed by 64 lowercase hex
/// digits, so [`Digest::hex`] can be used as a file name without further checks.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(String);

impl Digest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self::from_hasher(Sha256::new_with_prefix(bytes))
    }

    /// The digest a running hasher has accumulated.
    pub fn from_hasher(hasher: Sha256) -> Self {
        Self(format!("sha256:{}", hex::encode(hasher.finalize())))
    }

    /// Parses and validates `text`.
    pub fn parse(text: &str) -> Result<Self, DigestError> {
        let Some((algorithm, encoded)) = text.split_once(':') else {
            return Err(DigestError::Malformed {
                digest: text.to_owned(),
            });
        };
        if algorithm != "sha256" {
            let well_formed = !algorithm.is_empty()
                && algorithm
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+._-".contains(&b));
            return Err(if well_formed {
                DigestError::UnsupportedAlgorithm {
                    algorithm: algorithm.to_owned(),
                    digest: text.to_owned(),
                }
            } else {
                DigestError::Malformed {
                    digest: text.to_owned(),
                }
            });
        }
        let lower_hex = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
        if encoded.len() != 64 || !encoded.bytes().all(lower_hex) {
            return Err(DigestError::BadHex {
                digest: text.to_owned(),
            });
        }
        Ok(Self(text.to_owned()))
    }

    /// The full text, `sha256:…`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The 64 hex digits after `sha256:`.
    pub fn hex(&self) -> &str {
        self.0.strip_prefix("sha256:").unwrap_or(&self.0)
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Digest {
    type Err = DigestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn digest_of_bytes_matches_known_value() {
        assert_eq!(Digest::of(b"").as_str(), EMPTY);
        assert_eq!(Digest::of(b"").hex().len(), 64);
    }

    #[test]
    fn parse_round_trips() {
        let digest = Digest::parse(EMPTY).expect("valid digest");
        assert_eq!(digest.to_string(), EMPTY);
        let json = serde_json::to_string(&digest).expect("serialize");
        assert_eq!(
            serde_json::from_str::<Digest>(&json).expect("parse"),
            digest
        );
    }

    #[test]
    fn refuses_bad_digests() {
        assert!(matches!(
            Digest::parse("e3b0c442"),
            Err(DigestError::Malformed { .. })
        ));
        assert!(matches!(
            Digest::parse("sha512:abcd"),
            Err(DigestError::UnsupportedAlgorithm { .. })
        ));
        assert!(matches!(
            Digest::parse("SHA256:abcd"),
            Err(DigestError::Malformed { .. })
        ));
        assert!(matches!(
            Digest::parse("sha256:../../etc/passwd"),
            Err(DigestError::BadHex { .. })
        ));
        let upper = EMPTY.to_uppercase().replace("SHA256", "sha256");
        assert!(matches!(
            Digest::parse(&upper),
            Err(DigestError::BadHex { .. })
        ));
        assert!(matches!(
            Digest::parse(&format!("{EMPTY}0")),
            Err(DigestError::BadHex { .. })
        ));
        assert!(serde_json::from_str::<Digest>("\"sha256:zz\"").is_err());
    }
}
