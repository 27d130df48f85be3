//! Pull-through mirrors: repositories under a prefix are filled from an upstream registry.
//!
//! A manifest asked for by tag is resolved upstream on every request (a `HEAD` first, so an
//! unchanged tag costs no download), falling back to the cached copy when the upstream cannot
//! be reached. Manifests asked for by digest and blobs are fetched once, verified against their
//! digest, stored like pushed content, and served from disk from then on.

use std::collections::HashMap;
use std::sync::{Arc, Mutex as StdMutex};

use http::{header, Method, StatusCode};
use hyper::body::Incoming;
use tokio::sync::Mutex;

use super::errors::RegistryError;
use super::manifest::{Manifest, SUPPORTED};
use super::manifest_api::StoredManifest;
use super::names::{validate_name, Algorithm, Digest, Reference};
use super::stream::read_limited;
use super::upstream::{Upstream, UpstreamCredentials};
use super::Registry;

/// Configuration of one pull-through mirror.
#[derive(Debug, Clone)]
pub struct Mirror {
    /// Local repositories named `prefix` or `prefix/…` are mirrored; empty mirrors everything.
    pub prefix: String,
    /// Upstream registry: `https://host[:port]`, `http://host[:port]` or `host[:port]`.
    pub upstream: String,
    /// Prepended to the rest of the name upstream: with prefix `hub` and upstream prefix
    /// `library`, local `hub/alpine` is upstream `library/alpine`. May be empty.
    pub upstream_prefix: String,
    /// Allow plain HTTP to the upstream (and its token service); loopback tests only.
    pub insecure_plain_http: bool,
    /// Credentials for the upstream, used for basic auth and for bearer token requests.
    pub credentials: Option<UpstreamCredentials>,
}

/// A mirror ready for use.
#[derive(Debug)]
pub struct ActiveMirror {
    prefix: String,
    upstream_prefix: String,
    upstream: Upstream,
}

impl ActiveMirror {
    /// Validates a mirror's configuration.
    pub fn new(mirror: &Mirror) -> Result<Self, RegistryError> {
        for (field, value) in [
            ("prefix", &mirror.prefix),
            ("upstream_prefix", &mirror.upstream_prefix),
        ] {
            if !value.is_empty() && validate_name(value).is_err() {
                return Err(RegistryError::Config {
                    reason: format!("mirror {field} {value:?} is not a valid repository name"),
                });
            }
        }
        Ok(Self {
            prefix: mirror.prefix.clone(),
            upstream_prefix: mirror.upstream_prefix.clone(),
            upstream: Upstream::new(
                &mirror.upstream,
                mirror.insecure_plain_http,
                mirror.credentials.clone(),
            )?,
        })
    }

    /// Length of the prefix if `name` is under it.
    pub fn match_len(&self, name: &str) -> Option<usize> {
        if self.prefix.is_empty() {
            return Some(0);
        }
        let rest = name.strip_prefix(&self.prefix)?;
        (rest.is_empty() || rest.starts_with('/')).then_some(self.prefix.len())
    }

    /// The repository name upstream.
    pub fn upstream_name(&self, name: &str) -> Result<String, RegistryError> {
        let rest = name
            .strip_prefix(&self.prefix)
            .unwrap_or(name)
            .trim_start_matches('/');
        let upstream = match (self.upstream_prefix.is_empty(), rest.is_empty()) {
            (true, _) => rest.to_owned(),
            (false, true) => self.upstream_prefix.clone(),
            (false, false) => format!("{}/{rest}", self.upstream_prefix),
        };
        validate_name(&upstream)?;
        Ok(upstream)
    }
}

/// One lock per key, so that concurrent pulls of one blob download it once.
#[derive(Default)]
pub struct PullLocks {
    locks: StdMutex<HashMap<String, Arc<Mutex<()>>>>,
}

impl PullLocks {
    fn lock_for(&self, key: &str) -> Arc<Mutex<()>> {
        match self.locks.lock() {
            Ok(mut locks) => {
                // Forget locks nobody holds any more, so the map stays small.
                locks.retain(|_, lock| Arc::strong_count(lock) > 1);
                Arc::clone(locks.entry(key.to_owned()).or_default())
            }
            Err(_) => Arc::new(Mutex::new(())),
        }
    }
}

fn upstream_failure(mirror: &ActiveMirror, what: &str, error: RegistryError) -> RegistryError {
    match error {
        RegistryError::Io { .. } | RegistryError::Upstream { .. } => error,
        other => RegistryError::Upstream {
            upstream: mirror.upstream.base.clone(),
            what: what.to_owned(),
            reason: other.to_string(),
        },
    }
}

fn header_digest(response: &http::Response<Incoming>) -> Option<Digest> {
    response
        .headers()
        .get("docker-content-digest")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| Digest::parse(value).ok())
}

impl Registry {
    /// The mirror responsible for `name`, the longest matching prefix winning.
    pub(crate) fn mirror_for(&self, name: &str) -> Option<&ActiveMirror> {
        self.mirrors
            .iter()
            .filter_map(|mirror| mirror.match_len(name).map(|len| (len, mirror)))
            .max_by_key(|(len, _)| *len)
            .map(|(_, mirror)| mirror)
    }

    /// Fetches a manifest from upstream, verifies it and stores it (and the tag) locally.
    pub(crate) async fn pull_manifest(
        &self,
        mirror: &ActiveMirror,
        name: &str,
        reference: &Reference,
    ) -> Result<StoredManifest, RegistryError> {
        let upstream_name = mirror.upstream_name(name)?;
        let scope = format!("repository:{upstream_name}:pull");
        let path = format!("/v2/{upstream_name}/manifests/{reference}");
        let accept = SUPPORTED.join(", ");
        let unknown = || RegistryError::ManifestUnknown {
            name: name.to_owned(),
            reference: reference.to_string(),
        };
        if let Reference::Tag(tag) = reference {
            let head = mirror
                .upstream
                .send(&self.client, Method::HEAD, &path, Some(&accept), &scope)
                .await?;
            if head.status() == StatusCode::NOT_FOUND {
                return Err(unknown());
            }
            if let Some(digest) = header_digest(&head).filter(|_| head.status().is_success()) {
                if let Ok(local) = self.local_manifest(name, &digest).await {
                    self.storage.put_tag(name, tag, &digest).await?;
                    return Ok(local);
                }
            }
        }
        let response = mirror
            .upstream
            .send(&self.client, Method::GET, &path, Some(&accept), &scope)
            .await?;
        match response.status() {
            StatusCode::OK => {}
            StatusCode::NOT_FOUND => return Err(unknown()),
            status => {
                return Err(upstream_failure(
                    mirror,
                    &path,
                    RegistryError::ManifestInvalid {
                        reason: format!("upstream answered {status}"),
                    },
                ))
            }
        }
        let announced = header_digest(&response);
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let mut body = response.into_body();
        let bytes = read_limited(
            &mut body,
            self.config.max_manifest_bytes,
            self.config.body_idle_timeout,
        )
        .await
        .map_err(|error| upstream_failure(mirror, &path, error))?;
        let manifest = Manifest::parse(&bytes, content_type.as_deref())
            .map_err(|error| upstream_failure(mirror, &path, error))?;
        let digest = match reference {
            Reference::Digest(wanted) => Digest::of(wanted.algorithm(), &bytes),
            Reference::Tag(_) => Digest::of(Algorithm::Sha256, &bytes),
        };
        let expected = match reference {
            Reference::Digest(wanted) => Some(wanted.clone()),
            Reference::Tag(_) => announced.filter(|a| a.algorithm() == digest.algorithm()),
        };
        if let Some(expected) = expected.filter(|expected| *expected != digest) {
            return Err(upstream_failure(
                mirror,
                &path,
                RegistryError::DigestMismatch {
                    expected: expected.to_string(),
                    computed: digest.to_string(),
                },
            ));
        }
        let tags: Vec<String> = match reference {
            Reference::Tag(tag) => vec![tag.clone()],
            Reference::Digest(_) => Vec::new(),
        };
        self.store_manifest(name, &bytes, &manifest, &digest, &tags, false)
            .await?;
        Ok(StoredManifest {
            digest,
            media_type: manifest.media_type,
            bytes,
        })
    }

    /// Fetches a blob from upstream into storage (once, however many ask at the same time);
    /// returns its size.
    pub(crate) async fn pull_blob(
        &self,
        mirror: &ActiveMirror,
        name: &str,
        digest: &Digest,
    ) -> Result<u64, RegistryError> {
        let lock = self.pulls.lock_for(&digest.to_string());
        let _pulling = lock.lock().await;
        // Someone else may have fetched it meanwhile, possibly for another repository: content
        // is verified by digest, so it can be shared.
        {
            let _guard = self.gc_lock.read().await;
            if let Some(size) = self.storage.blob_size(digest).await? {
                self.storage.link_blob(name, digest).await?;
                return Ok(size);
            }
        }
        let upstream_name = mirror.upstream_name(name)?;
        let path = format!("/v2/{upstream_name}/blobs/{digest}");
        let scope = format!("repository:{upstream_name}:pull");
        let response = mirror
            .upstream
            .send(&self.client, Method::GET, &path, None, &scope)
            .await?;
        match response.status() {
            StatusCode::OK => {}
            StatusCode::NOT_FOUND => {
                return Err(RegistryError::BlobUnknown {
                    name: name.to_owned(),
                    digest: digest.to_string(),
                })
            }
            status => {
                return Err(upstream_failure(
                    mirror,
                    &path,
                    RegistryError::BodyRead {
                        received: 0,
                        reason: format!("upstream answered {status}"),
                    },
                ))
            }
        }
        let declared = response
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse::<u64>().ok());
        let mut body = response.into_body();
        let verified = self
            .ingest(&mut body, declared, digest)
            .await
            .map_err(|error| upstream_failure(mirror, &path, error))?;
        let size = verified.size;
        self.commit(name, verified).await?;
        Ok(size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mirror(prefix: &str, upstream_prefix: &str) -> anyhow::Result<ActiveMirror> {
        Ok(ActiveMirror::new(&Mirror {
            prefix: prefix.into(),
            upstream: "127.0.0.1:5000".into(),
            upstream_prefix: upstream_prefix.into(),
            insecure_plain_http: true,
            credentials: None,
        })?)
    }

    #[test]
    fn prefixes_match_whole_components() -> anyhow::Result<()> {
        let hub = mirror("hub", "")?;
        assert_eq!(hub.match_len("hub/alpine"), Some(3));
        assert_eq!(hub.match_len("hub"), Some(3));
        assert_eq!(hub.match_len("hubble/x"), None);
        assert_eq!(mirror("", "")?.match_len("anything"), Some(0));
        Ok(())
    }

    #[test]
    fn names_map_to_upstream_names() -> anyhow::Result<()> {
        assert_eq!(
            mirror("hub", "library")?.upstream_name("hub/alpine")?,
            "library/alpine"
        );
        assert_eq!(mirror("hub", "")?.upstream_name("hub/a/b")?, "a/b");
        assert_eq!(mirror("hub", "library")?.upstream_name("hub")?, "library");
        assert!(mirror("hub", "")?.upstream_name("hub").is_err());
        assert_eq!(mirror("", "x")?.upstream_name("a")?, "x/a");
        Ok(())
    }

    #[test]
    fn invalid_mirror_configuration_is_refused() {
        let bad = Mirror {
            prefix: "Bad Prefix".into(),
            upstream: "127.0.0.1:5000".into(),
            upstream_prefix: String::new(),
            insecure_plain_http: true,
            credentials: None,
        };
        assert!(matches!(
            ActiveMirror::new(&bad),
            Err(RegistryError::Config { .. })
        ));
        let plain = Mirror {
            prefix: "ok".into(),
            insecure_plain_http: false,
            upstream: "http://127.0.0.1:5000".into(),
            ..bad
        };
        assert!(matches!(
            ActiveMirror::new(&plain),
            Err(RegistryError::Config { .. })
        ));
    }

    #[tokio::test]
    async fn pull_locks_are_shared_per_key() {
        let locks = PullLocks::default();
        let first = locks.lock_for("a");
        let same = locks.lock_for("a");
        let other = locks.lock_for("b");
        assert!(Arc::ptr_eq(&first, &same));
        assert!(!Arc::ptr_eq(&first, &other));
        let _held = first.lock().await;
        assert!(same.try_lock().is_err());
    }
}
