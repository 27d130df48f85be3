//! Image references (`host[:port]/repo/path:tag`, `…@sha256:…`), validated with the grammar of
//! the distribution spec and normalised the way Docker does (`nginx` is
//! `docker.io/library/nginx:latest`).

use std::fmt;
use std::str::FromStr;

use super::digest::{Digest, DigestError};

/// The registry an unqualified reference such as `nginx` points at.
pub const DOCKER_HUB: &str = "docker.io";
/// The host that actually serves Docker Hub's registry API.
const DOCKER_HUB_API: &str = "registry-1.docker.io";
/// The tag used when a reference names neither a tag nor a digest.
pub const DEFAULT_TAG: &str = "latest";
/// Longest repository name (registry included) the distribution spec allows.
const NAME_MAX: usize = 255;
/// Longest tag the distribution spec allows.
const TAG_MAX: usize = 128;

/// Why a reference was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReferenceError {
    /// The input is empty.
    #[error("invalid image reference: it is empty")]
    Empty,
    /// The registry part is not a host name, IPv4/IPv6 address, with an optional port.
    #[error("invalid registry {registry:?} in image reference {reference:?}")]
    Registry {
        /// The whole reference.
        reference: String,
        /// The refused registry part.
        registry: String,
    },
    /// A path component is not lowercase letters and digits joined by `.`, `_`, `__` or dashes.
    #[error(
        "invalid repository path component {component:?} in image reference {reference:?}: \
         use lowercase letters and digits, joined by '.', '_', '__' or '-'"
    )]
    Repository {
        /// The whole reference.
        reference: String,
        /// The refused component.
        component: String,
    },
    /// The tag is empty, too long, or has characters other than `[A-Za-z0-9_.-]`.
    #[error(
        "invalid tag {tag:?} in image reference {reference:?}: up to 128 of [A-Za-z0-9_.-], \
         not starting with '.' or '-'"
    )]
    Tag {
        /// The whole reference.
        reference: String,
        /// The refused tag.
        tag: String,
    },
    /// The part after `@` is not a valid digest.
    #[error("invalid digest in image reference {reference:?}: {source}")]
    Digest {
        /// The whole reference.
        reference: String,
        /// What is wrong with the digest.
        source: DigestError,
    },
    /// Registry and repository together are longer than 255 characters.
    #[error("image name in {reference:?} is longer than {NAME_MAX} characters")]
    TooLong {
        /// The whole reference.
        reference: String,
    },
}

/// A parsed, validated image reference. The repository always carries its registry; a reference
/// without tag and digest means the tag `latest`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl Reference {
    /// Parses `text`, placing names without a registry on Docker Hub (`nginx` →
    /// `docker.io/library/nginx:latest`).
    pub fn parse(text: &str) -> Result<Self, ReferenceError> {
        Self::parse_with_default_registry(text, DOCKER_HUB)
    }

    /// Parses `text`, placing names without a registry on `default_registry` (for example the
    /// cluster's own registry, so `samples/hello:v1` → `HOST:PORT/samples/hello:v1`).
    pub fn parse_with_default_registry(
        text: &str,
        default_registry: &str,
    ) -> Result<Self, ReferenceError> {
        if text.is_empty() {
            return Err(ReferenceError::Empty);
        }
        let (name_and_tag, digest) = match text.split_once('@') {
            Some((name, digest)) => {
                let digest = Digest::parse(digest).map_err(|source| ReferenceError::Digest {
                    reference: text.to_owned(),
                    source,
                })?;
                (name, Some(digest))
            }
            None => (text, None),
        };
        // A colon after the last slash starts the tag; one before it belongs to a port.
        let last_slash = name_and_tag.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match name_and_tag[last_slash..].rfind(':') {
            Some(i) => {
                let colon = last_slash + i;
                (&name_and_tag[..colon], Some(&name_and_tag[colon + 1..]))
            }
            None => (name_and_tag, None),
        };
        if let Some(tag) = tag {
            if !is_valid_tag(tag) {
                return Err(ReferenceError::Tag {
                    reference: text.to_owned(),
                    tag: tag.to_owned(),
                });
            }
        }
        let (registry, repository) = split_registry(name, default_registry);
        if !is_valid_registry(registry) {
            return Err(ReferenceError::Registry {
                reference: text.to_owned(),
                registry: registry.to_owned(),
            });
        }
        let registry = if registry == "index.docker.io" {
            DOCKER_HUB
        } else {
            registry
        };
        let repository = if registry == DOCKER_HUB && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository.to_owned()
        };
        if let Some(bad) = repository.split('/').find(|c| !is_valid_component(c)) {
            return Err(ReferenceError::Repository {
                reference: text.to_owned(),
                component: bad.to_owned(),
            });
        }
        if registry.len() + 1 + repository.len() > NAME_MAX {
            return Err(ReferenceError::TooLong {
                reference: text.to_owned(),
            });
        }
        Ok(Self {
            registry: registry.to_owned(),
            repository,
            tag: tag.map(str::to_owned),
            digest,
        })
    }

    /// Whether the first path component of `text` names a registry (has a `.` or `:`, is
    /// `localhost`, or has uppercase letters), as opposed to a repository on the default one.
    pub fn names_registry(text: &str) -> bool {
        match text.split_once('/') {
            Some((first, _)) => is_registry_like(first),
            None => false,
        }
    }

    /// The registry as written in the reference (`docker.io`, `host:5000`, `[::1]:5000`).
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The host and port to open for the registry API (Docker Hub's API lives on another host).
    pub fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            DOCKER_HUB_API
        } else {
            &self.registry
        }
    }

    /// The repository path inside the registry (`library/nginx`, `samples/hello`).
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The tag, if one was written.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest, if one was written.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// What to put after `/manifests/` in the API: the digest when known (it cannot move), else
    /// the tag, else `latest`.
    pub fn manifest_reference(&self) -> &str {
        match (&self.digest, &self.tag) {
            (Some(digest), _) => digest.as_str(),
            (None, Some(tag)) => tag,
            (None, None) => DEFAULT_TAG,
        }
    }

    /// The same repository pinned to `digest`, keeping the tag for display.
    pub fn with_digest(&self, digest: Digest) -> Self {
        Self {
            digest: Some(digest),
            ..self.clone()
        }
    }

    /// The same repository at `tag`, without a digest.
    pub fn with_tag(&self, tag: &str) -> Result<Self, ReferenceError> {
        if !is_valid_tag(tag) {
            return Err(ReferenceError::Tag {
                reference: self.to_string(),
                tag: tag.to_owned(),
            });
        }
        Ok(Self {
            tag: Some(tag.to_owned()),
            digest: None,
            ..self.clone()
        })
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        if self.tag.is_none() && self.digest.is_none() {
            write!(f, ":{DEFAULT_TAG}")?;
        }
        Ok(())
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// Splits `name` into registry and repository, the way Docker tells them apart.
fn split_registry<'a>(name: &'a str, default_registry: &'a str) -> (&'a str, &'a str) {
    match name.split_once('/') {
        Some((first, rest)) if is_registry_like(first) => (first, rest),
        _ => (default_registry, name),
    }
}

fn is_registry_like(first: &str) -> bool {
    first.contains(['.', ':'])
        || first == "localhost"
        || first.bytes().any(|b| b.is_ascii_uppercase())
}

/// `host[:port]` where host is a DNS name, an IPv4 address, or a bracketed IPv6 address.
fn is_valid_registry(registry: &str) -> bool {
    let (host, port) = if let Some(rest) = registry.strip_prefix('[') {
        let Some((addr, after)) = rest.split_once(']') else {
            return false;
        };
        let valid_v6 = !addr.is_empty() && addr.bytes().all(|b| b.is_ascii_hexdigit() || b == b':');
        if !valid_v6 {
            return false;
        }
        match after {
            "" => return true,
            _ => match after.strip_prefix(':') {
                Some(port) => (None, Some(port)),
                None => return false,
            },
        }
    } else {
        match registry.split_once(':') {
            Some((host, port)) => (Some(host), Some(port)),
            None => (Some(registry), None),
        }
    };
    if let Some(port) = port {
        if port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
    }
    host.is_none_or(|host| !host.is_empty() && host.split('.').all(is_valid_host_label))
}

fn is_valid_host_label(label: &str) -> bool {
    let bytes = label.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => {
            first.is_ascii_alphanumeric()
                && last.is_ascii_alphanumeric()
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
        }
        _ => false,
    }
}

/// `[a-z0-9]+` runs joined by one `.`, one `_`, `__`, or any number of `-`.
fn is_valid_component(component: &str) -> bool {
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    component.starts_with(alnum)
        && component.ends_with(alnum)
        && component
            .split(alnum)
            .filter(|separator| !separator.is_empty())
            .all(|separator| {
                matches!(separator, "." | "_" | "__") || separator.bytes().all(|b| b == b'-')
            })
}

fn is_valid_tag(tag: &str) -> bool {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let bytes = tag.as_bytes();
    bytes.len() <= TAG_MAX
        && bytes.first().is_some_and(|b| word(*b))
        && bytes.iter().all(|b| word(*b) || *b == b'.' || *b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn parts(r: &Reference) -> (&str, &str, Option<&str>, Option<&str>) {
        (
            r.registry(),
            r.repository(),
            r.tag(),
            r.digest().map(Digest::as_str),
        )
    }

    #[test]
    fn docker_hub_defaults() {
        let r = Reference::parse("nginx").expect("valid");
        assert_eq!(parts(&r), ("docker.io", "library/nginx", None, None));
        assert_eq!(r.manifest_reference(), "latest");
        assert_eq!(r.to_string(), "docker.io/library/nginx:latest");
        assert_eq!(r.api_host(), "registry-1.docker.io");

        let r = Reference::parse("bitnami/redis:7.2").expect("valid");
        assert_eq!(parts(&r), ("docker.io", "bitnami/redis", Some("7.2"), None));
        let r = Reference::parse("index.docker.io/nginx:1").expect("valid");
        assert_eq!(parts(&r), ("docker.io", "library/nginx", Some("1"), None));
    }

    #[test]
    fn registries_with_ports_and_addresses() {
        let r = Reference::parse("localhost:5000/samples/hello:v1").expect("valid");
        assert_eq!(
            parts(&r),
            ("localhost:5000", "samples/hello", Some("v1"), None)
        );
        assert_eq!(r.api_host(), "localhost:5000");
        let r = Reference::parse("127.0.0.1:6443/a/b/c").expect("valid");
        assert_eq!(parts(&r), ("127.0.0.1:6443", "a/b/c", None, None));
        let r = Reference::parse("[::1]:5000/x:y").expect("valid");
        assert_eq!(parts(&r), ("[::1]:5000", "x", Some("y"), None));
        let r = Reference::parse("localhost/x").expect("valid");
        assert_eq!(r.registry(), "localhost");
        let r = Reference::parse("ghcr.io/org/app").expect("valid");
        assert_eq!(parts(&r), ("ghcr.io", "org/app", None, None));
    }

    #[test]
    fn digests_and_tags_together() {
        let r = Reference::parse(&format!("ghcr.io/a/b:v1@{DIGEST}")).expect("valid");
        assert_eq!(parts(&r), ("ghcr.io", "a/b", Some("v1"), Some(DIGEST)));
        assert_eq!(r.manifest_reference(), DIGEST);
        assert_eq!(r.to_string(), format!("ghcr.io/a/b:v1@{DIGEST}"));
        let r = Reference::parse(&format!("ghcr.io/a/b@{DIGEST}")).expect("valid");
        assert_eq!(r.to_string(), format!("ghcr.io/a/b@{DIGEST}"));
        assert_eq!(Reference::parse(&r.to_string()).expect("round trip"), r);
    }

    #[test]
    fn relative_references_use_the_given_registry() {
        let r = Reference::parse_with_default_registry("samples/hello:v1", "10.0.0.1:6443")
            .expect("valid");
        assert_eq!(
            parts(&r),
            ("10.0.0.1:6443", "samples/hello", Some("v1"), None)
        );
        let r = Reference::parse_with_default_registry("hello", "cp:6443").expect("valid");
        assert_eq!(r.repository(), "hello", "no library/ prefix off Docker Hub");
        assert!(Reference::names_registry("cp.local:6443/hello"));
        assert!(!Reference::names_registry("samples/hello:v1"));
        assert!(!Reference::names_registry("hello"));
    }

    #[test]
    fn separators_in_components() {
        for ok in ["a.b", "a_b", "a__b", "a-b", "a---b", "a1.b2_c3__d4-e5"] {
            assert!(Reference::parse(&format!("h.io/{ok}")).is_ok(), "{ok}");
        }
        for bad in [
            "a..b", "a___b", "a._b", "-a", "a-", "_a", "a/", "a//b", "A", "a b",
        ] {
            assert!(
                matches!(
                    Reference::parse(&format!("h.io/{bad}")),
                    Err(ReferenceError::Repository { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn bad_references_are_refused() {
        assert_eq!(Reference::parse(""), Err(ReferenceError::Empty));
        assert!(matches!(
            Reference::parse("nginx:"),
            Err(ReferenceError::Tag { .. })
        ));
        assert!(matches!(
            Reference::parse("nginx:-x"),
            Err(ReferenceError::Tag { .. })
        ));
        assert!(matches!(
            Reference::parse("nginx:a b"),
            Err(ReferenceError::Tag { .. })
        ));
        assert!(matches!(
            Reference::parse(&format!("nginx:{}", "a".repeat(129))),
            Err(ReferenceError::Tag { .. })
        ));
        assert!(Reference::parse(&format!("nginx:{}", "a".repeat(128))).is_ok());
        assert!(matches!(
            Reference::parse("nginx@sha256:abc"),
            Err(ReferenceError::Digest { .. })
        ));
        assert!(matches!(
            Reference::parse("nginx@"),
            Err(ReferenceError::Digest { .. })
        ));
        assert!(matches!(
            Reference::parse("bad_host.io:99999999/x"),
            Err(ReferenceError::Registry { .. })
        ));
        assert!(matches!(
            Reference::parse("-host.io/x"),
            Err(ReferenceError::Registry { .. })
        ));
        assert!(matches!(
            Reference::parse("[::1/x"),
            Err(ReferenceError::Registry { .. })
        ));
        assert!(matches!(
            Reference::parse("host.io:/x"),
            Err(ReferenceError::Registry { .. })
        ));
        assert!(matches!(
            Reference::parse("nginx/Upper"),
            Err(ReferenceError::Repository { .. })
        ));
        assert!(matches!(
            Reference::parse(&format!("h.io/{}", "a".repeat(260))),
            Err(ReferenceError::TooLong { .. })
        ));
        assert!(matches!(
            Reference::parse("h.io/../etc"),
            Err(ReferenceError::Repository { .. })
        ));
    }

    #[test]
    fn with_tag_validates() {
        let r = Reference::parse(&format!("h.io/a@{DIGEST}")).expect("valid");
        let tagged = r.with_tag("v2").expect("valid tag");
        assert_eq!(tagged.to_string(), "h.io/a:v2");
        assert!(r.with_tag("bad tag").is_err());
        let pinned = tagged.with_digest(Digest::of(b""));
        assert_eq!(pinned.manifest_reference(), DIGEST);
    }
}
