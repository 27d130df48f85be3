//! Repository names, tags and digests, validated per the distribution spec.
//!
//! Everything here is parsed before it touches the file system: a validated name, tag or digest
//! can only contain characters that are safe as path components (no `/` outside name separators,
//! no leading `.` or `_`), which is what keeps request paths from escaping the storage root.

use std::fmt;

use sha2::{Digest as _, Sha256, Sha512};

use super::errors::RegistryError;

/// Longest repository name accepted, including slashes (the spec requires less than 256).
const MAX_NAME_LEN: usize = 255;
/// Longest tag accepted.
const MAX_TAG_LEN: usize = 128;

/// Hash algorithms the registry verifies content with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    /// SHA-256, the default of every client.
    Sha256,
    /// SHA-512.
    Sha512,
}

impl Algorithm {
    /// The algorithm's name in a digest string.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sha256 => "sha256",
            Self::Sha512 => "sha512",
        }
    }

    /// Length of the hex-encoded hash.
    fn hex_len(self) -> usize {
        match self {
            Self::Sha256 => 64,
            Self::Sha512 => 128,
        }
    }

    /// Parses an algorithm name (`digest-algorithm=` parameter or digest prefix).
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "sha256" => Some(Self::Sha256),
            "sha512" => Some(Self::Sha512),
            _ => None,
        }
    }

    /// Every supported algorithm, for walking the storage.
    pub const ALL: [Algorithm; 2] = [Algorithm::Sha256, Algorithm::Sha512];
}

/// A validated content digest such as `sha256:<64 lower-case hex>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    algorithm: Algorithm,
    hex: String,
}

impl Digest {
    /// Parses and validates a digest; unsupported algorithms are refused because the registry
    /// could not verify such content.
    pub fn parse(text: &str) -> Result<Self, RegistryError> {
        let invalid = |reason| RegistryError::DigestInvalid {
            digest: text.to_owned(),
            reason,
        };
        let (algorithm, hex) = text
            .split_once(':')
            .ok_or_else(|| invalid("a digest is <algorithm>:<hex>"))?;
        let algorithm = Algorithm::parse(algorithm)
            .ok_or_else(|| invalid("only sha256 and sha512 digests are supported"))?;
        if hex.len() != algorithm.hex_len() {
            return Err(invalid("the hash has the wrong length for its algorithm"));
        }
        if !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(invalid("the hash must be lower-case hexadecimal"));
        }
        Ok(Self {
            algorithm,
            hex: hex.to_owned(),
        })
    }

    /// Builds a digest from an algorithm and a file name found in storage, if it is valid.
    pub fn from_parts(algorithm: Algorithm, hex: &str) -> Option<Self> {
        Self::parse(&format!("{}:{hex}", algorithm.as_str())).ok()
    }

    /// Digest of an in-memory byte string (manifests).
    pub fn of(algorithm: Algorithm, bytes: &[u8]) -> Self {
        let mut hasher = Hasher::new(algorithm);
        hasher.update(bytes);
        hasher.finish()
    }

    /// The hash algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The hex-encoded hash.
    pub fn hex(&self) -> &str {
        &self.hex
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm.as_str(), self.hex)
    }
}

/// Incremental hash of a byte stream.
#[derive(Clone)]
pub enum Hasher {
    /// SHA-256 state.
    Sha256(Sha256),
    /// SHA-512 state.
    Sha512(Sha512),
}

impl Hasher {
    /// A fresh hasher for `algorithm`.
    pub fn new(algorithm: Algorithm) -> Self {
        match algorithm {
            Algorithm::Sha256 => Self::Sha256(Sha256::new()),
            Algorithm::Sha512 => Self::Sha512(Sha512::new()),
        }
    }

    /// The algorithm this hasher computes.
    pub fn algorithm(&self) -> Algorithm {
        match self {
            Self::Sha256(_) => Algorithm::Sha256,
            Self::Sha512(_) => Algorithm::Sha512,
        }
    }

    /// Feeds bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        match self {
            Self::Sha256(hasher) => hasher.update(bytes),
            Self::Sha512(hasher) => hasher.update(bytes),
        }
    }

    /// The digest of everything fed so far.
    pub fn finish(self) -> Digest {
        let (algorithm, hex) = match self {
            Self::Sha256(hasher) => (Algorithm::Sha256, format!("{:x}", hasher.finalize())),
            Self::Sha512(hasher) => (Algorithm::Sha512, format!("{:x}", hasher.finalize())),
        };
        Digest { algorithm, hex }
    }
}

/// Validates a repository name against
/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*`.
pub fn validate_name(name: &str) -> Result<(), RegistryError> {
    let invalid = |reason| RegistryError::NameInvalid {
        name: name.to_owned(),
        reason,
    };
    if name.is_empty() {
        return Err(invalid("the name is empty"));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(invalid("the name is longer than 255 characters"));
    }
    name.split('/')
        .try_for_each(|component| validate_component(component).map_err(invalid))
}

/// One path component: alphanumeric runs joined by `.`, `_`, `__` or any number of `-`.
fn validate_component(component: &str) -> Result<(), &'static str> {
    const RULE: &str = "each path component is lower-case letters and digits, separated by '.', '_', '__' or dashes, and starts and ends alphanumeric";
    let bytes = component.as_bytes();
    let is_alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) if is_alnum(first) && is_alnum(last) => {}
        _ => return Err(RULE),
    }
    let mut separator = String::new();
    for &b in bytes {
        if is_alnum(&b) {
            let ok = matches!(separator.as_str(), "" | "." | "_" | "__")
                || separator.bytes().all(|s| s == b'-');
            if !ok {
                return Err(RULE);
            }
            separator.clear();
        } else if matches!(b, b'.' | b'_' | b'-') {
            separator.push(char::from(b));
        } else {
            return Err(RULE);
        }
    }
    Ok(())
}

/// Validates a tag against `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
pub fn validate_tag(tag: &str) -> Result<(), RegistryError> {
    let bytes = tag.as_bytes();
    let first_ok = bytes
        .first()
        .is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_');
    let rest_ok = bytes
        .iter()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if first_ok && rest_ok && bytes.len() <= MAX_TAG_LEN {
        Ok(())
    } else {
        Err(RegistryError::TagInvalid {
            tag: tag.to_owned(),
        })
    }
}

/// The `<reference>` of a manifest URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    /// A tag.
    Tag(String),
    /// A digest.
    Digest(Digest),
}

impl Reference {
    /// Parses a reference: anything with a `:` must be a valid digest, anything else a valid tag.
    pub fn parse(text: &str) -> Result<Self, RegistryError> {
        if text.contains(':') {
            Digest::parse(text).map(Self::Digest)
        } else {
            validate_tag(text)?;
            Ok(Self::Tag(text.to_owned()))
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tag(tag) => f.write_str(tag),
            Self::Digest(digest) => digest.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY_SHA256: &str =
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn names_follow_the_spec_grammar() {
        for good in [
            "a",
            "library/alpine",
            "my-org/app.v2/x__y",
            "a--b",
            "a---b/c_d",
            "0/1/2",
        ] {
            assert!(validate_name(good).is_ok(), "{good} should be valid");
        }
        for bad in [
            "",
            "Alpine",
            "a//b",
            "/a",
            "a/",
            "a..b",
            "a___b",
            "a._b",
            "-a",
            "a-",
            "_manifests",
            "a/../b",
            "a b",
            "ä",
        ] {
            let error = validate_name(bad).err();
            assert!(
                matches!(error, Some(RegistryError::NameInvalid { .. })),
                "{bad:?} should be invalid"
            );
        }
        assert!(validate_name(&"a".repeat(255)).is_ok());
        assert!(validate_name(&"a".repeat(256)).is_err());
    }

    #[test]
    fn tags_follow_the_spec_grammar() {
        for good in ["latest", "v1.2.3", "_x", "A-b_c.d", &"t".repeat(128)] {
            assert!(validate_tag(good).is_ok(), "{good} should be valid");
        }
        for bad in [
            "",
            ".hidden",
            "-x",
            "a/b",
            "a:b",
            "a b",
            "..",
            &"t".repeat(129),
        ] {
            assert!(validate_tag(bad).is_err(), "{bad:?} should be invalid");
        }
    }

    #[test]
    fn digests_are_validated_and_round_trip() {
        let digest = Digest::parse(EMPTY_SHA256).ok();
        assert_eq!(digest.map(|d| d.to_string()).as_deref(), Some(EMPTY_SHA256));
        assert_eq!(Digest::of(Algorithm::Sha256, b"").to_string(), EMPTY_SHA256);
        let sha512 = Digest::of(Algorithm::Sha512, b"abc");
        assert!(sha512.to_string().starts_with("sha512:ddaf35a1"));
        assert_eq!(Digest::parse(&sha512.to_string()).ok(), Some(sha512));
        for bad in [
            "sha256",
            "sha256:",
            "sha256:abc",
            "md5:d41d8cd98f00b204e9800998ecf8427e",
            &EMPTY_SHA256.to_uppercase(),
            &EMPTY_SHA256.replace('e', "g"),
            "sha256:../../../../etc/passwd",
        ] {
            assert!(
                matches!(Digest::parse(bad), Err(RegistryError::DigestInvalid { .. })),
                "{bad:?} should be invalid"
            );
        }
    }

    #[test]
    fn incremental_hash_matches_one_shot() {
        let mut hasher = Hasher::new(Algorithm::Sha256);
        hasher.update(b"hello ");
        hasher.update(b"world");
        assert_eq!(
            hasher.finish(),
            Digest::of(Algorithm::Sha256, b"hello world")
        );
    }

    #[test]
    fn references_are_tags_or_digests() {
        assert_eq!(
            Reference::parse("latest").ok(),
            Some(Reference::Tag("latest".into()))
        );
        assert!(matches!(
            Reference::parse(EMPTY_SHA256),
            Ok(Reference::Digest(_))
        ));
        assert!(matches!(
            Reference::parse("bad tag"),
            Err(RegistryError::TagInvalid { .. })
        ));
        assert!(matches!(
            Reference::parse("sha256:nothex"),
            Err(RegistryError::DigestInvalid { .. })
        ));
    }
}
