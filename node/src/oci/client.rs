//! A client for the OCI distribution API: manifests, blobs, tags and the catalog, over HTTPS
//! with rustls (or plain HTTP to loopback test registries), with Basic, bearer and token auth.
//!
//! Verbs live in submodules: `auth` (challenges and the token flow), `download` (blobs to
//! files, resumable), `upload` (blob and manifest pushes).

mod auth;
mod download;
mod error;
mod response;
mod upload;

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, CONTENT_TYPE, LINK};
use reqwest::{Method, StatusCode, Url};
use serde::Deserialize;

use super::digest::Digest;
use super::manifest::{Descriptor, Manifest};
use super::media;
use super::reference::Reference;

pub use download::{partial_path, BlobDownload};
pub use error::ClientError;
use response::{error_detail, expect_status, read_limited};

/// Largest manifest accepted (the limit distribution itself applies).
pub const MANIFEST_LIMIT: usize = 4 * 1024 * 1024;
/// Largest JSON document (tags page, catalog page, token) accepted.
const JSON_LIMIT: usize = 4 * 1024 * 1024;
/// Most pages followed through `Link` headers before giving up (a loop guard).
const MAX_PAGES: usize = 10_000;
/// Default size of one chunk of a chunked upload; blobs up to this size go in one request.
pub const DEFAULT_CHUNK_SIZE: usize = 8 * 1024 * 1024;

/// A progress callback: bytes done so far, and the total.
pub type Progress<'a> = &'a (dyn Fn(u64, u64) + Send + Sync);

/// Credentials for one registry.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    /// HTTP Basic: sent when the registry asks for Basic, and to token realms.
    Basic {
        /// The user name.
        username: String,
        /// The password or token.
        password: String,
    },
    /// A bearer token sent with every request.
    Bearer(String),
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Secrets stay out of logs.
        match self {
            Self::Basic { username, .. } => write!(f, "Basic({username}, <redacted>)"),
            Self::Bearer(_) => f.write_str("Bearer(<redacted>)"),
        }
    }
}

/// How to reach registries.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// PEM CA certificates; when set they are the only roots trusted (as kubectl does with a
    /// kubeconfig's CA), else the built-in web roots are.
    pub ca_pem: Option<Vec<u8>>,
    /// PEM client certificate chain followed by its private key, offered when a server asks.
    pub identity_pem: Option<Vec<u8>>,
    /// Credentials per registry (as written in references, e.g. `10.0.0.1:6443`).
    pub credentials: HashMap<String, Credentials>,
    /// Speak plain HTTP to loopback registries (local test registries); others stay on HTTPS.
    pub plain_http_loopback: bool,
    /// Accept any server certificate (kubeconfig `insecure-skip-tls-verify: true`).
    pub accept_invalid_certs: bool,
    /// Blobs up to this size are uploaded in one request, larger ones in chunks of this size.
    pub chunk_size: usize,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Longest wait for any single read from the server.
    pub read_timeout: Duration,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            ca_pem: None,
            identity_pem: None,
            credentials: HashMap::new(),
            plain_http_loopback: false,
            accept_invalid_certs: false,
            chunk_size: DEFAULT_CHUNK_SIZE,
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(60),
        }
    }
}

/// A manifest as fetched: its bytes (kept exactly, since the digest is over them), digest and
/// parsed form.
#[derive(Debug, Clone)]
pub struct FetchedManifest {
    /// Digest of `bytes`.
    pub digest: Digest,
    /// Media type from `Content-Type`, or the document's own.
    pub media_type: String,
    /// The bytes as served.
    pub bytes: Vec<u8>,
    /// The parsed manifest or index.
    pub manifest: Manifest,
}

/// A registry client. Cheap to share: one per node or CLI invocation.
#[derive(Debug)]
pub struct RegistryClient {
    http: reqwest::Client,
    config: ClientConfig,
    auth: Mutex<auth::AuthCache>,
}

impl RegistryClient {
    /// Builds a client, loading the CA bundle and client certificate from `config`.
    pub fn new(config: ClientConfig) -> Result<Self, ClientError> {
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .connect_timeout(config.connect_timeout)
            .read_timeout(config.read_timeout)
            .user_agent(concat!("bramble/", env!("CARGO_PKG_VERSION")));
        if let Some(pem) = &config.ca_pem {
            let certs =
                reqwest::Certificate::from_pem_bundle(pem).map_err(|source| ClientError::Tls {
                    what: "CA bundle",
                    source,
                })?;
            builder = builder.tls_built_in_root_certs(false);
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        if config.accept_invalid_certs {
            builder = builder.danger_accept_invalid_certs(true);
        }
        if let Some(pem) = &config.identity_pem {
            let identity = reqwest::Identity::from_pem(pem).map_err(|source| ClientError::Tls {
                what: "client certificate and key",
                source,
            })?;
            builder = builder.identity(identity);
        }
        let http = builder
            .build()
            .map_err(|source| ClientError::Build { source })?;
        Ok(Self {
            http,
            config,
            auth: Mutex::new(auth::AuthCache::default()),
        })
    }

    /// `scheme://host/v2/` for `registry` (plain HTTP only for loopback, when configured).
    pub fn base_url(&self, registry: &str) -> Result<Url, ClientError> {
        let scheme = if self.config.plain_http_loopback && is_loopback(registry) {
            "http"
        } else {
            "https"
        };
        let host = if registry == super::reference::DOCKER_HUB {
            "registry-1.docker.io"
        } else {
            registry
        };
        parse_url(&format!("{scheme}://{host}/v2/"))
    }

    fn repo_url(&self, reference: &Reference, rest: &str) -> Result<Url, ClientError> {
        let base = self.base_url(reference.registry())?;
        join(&base, &format!("{}/{rest}", reference.repository()))
    }

    /// Fetches the manifest or index `reference` names, verifying its digest against the
    /// reference's digest (if any) and the registry's `Docker-Content-Digest` (if any).
    pub async fn get_manifest(
        &self,
        reference: &Reference,
    ) -> Result<FetchedManifest, ClientError> {
        let url = self.repo_url(
            reference,
            &format!("manifests/{}", reference.manifest_reference()),
        )?;
        let scope = auth::Scope::pull(reference.repository());
        let response = self
            .send(reference.registry(), &scope, || {
                self.http
                    .get(url.clone())
                    .header(ACCEPT, media::MANIFEST_ACCEPT)
            })
            .await?;
        let response = expect_status(response, &Method::GET, &[StatusCode::OK]).await?;
        let content_type = header_str(response.headers(), CONTENT_TYPE.as_str()).map(str::to_owned);
        let served_digest = header_str(response.headers(), "docker-content-digest")
            .and_then(|d| Digest::parse(d).ok());
        let bytes = read_limited(response, MANIFEST_LIMIT, &Method::GET, &url).await?;
        let digest = Digest::of(&bytes);
        for expected in [reference.digest().cloned(), served_digest]
            .into_iter()
            .flatten()
        {
            if expected != digest {
                return Err(ClientError::DigestMismatch {
                    url: url.to_string(),
                    expected,
                    actual: digest,
                });
            }
        }
        let manifest = Manifest::parse(content_type.as_deref(), &bytes).map_err(|source| {
            ClientError::Manifest {
                url: url.to_string(),
                source,
            }
        })?;
        let media_type = match (&manifest, content_type.as_deref().map(media::essence)) {
            (_, Some(ct)) if media::is_image_manifest(ct) || media::is_index(ct) => ct.to_owned(),
            (Manifest::Image(m), _) => m.media_type.clone().unwrap_or(media::OCI_MANIFEST.into()),
            (Manifest::Index(i), _) => i.media_type.clone().unwrap_or(media::OCI_INDEX.into()),
        };
        Ok(FetchedManifest {
            digest,
            media_type,
            bytes,
            manifest,
        })
    }

    /// Fetches a small blob (a config) into memory, verifying size and digest.
    pub async fn get_blob_bytes(
        &self,
        reference: &Reference,
        descriptor: &Descriptor,
        limit: usize,
    ) -> Result<Vec<u8>, ClientError> {
        let url = self.repo_url(reference, &format!("blobs/{}", descriptor.digest))?;
        let scope = auth::Scope::pull(reference.repository());
        let response = self
            .send(reference.registry(), &scope, || self.http.get(url.clone()))
            .await?;
        let response = expect_status(response, &Method::GET, &[StatusCode::OK]).await?;
        let bytes = read_limited(response, limit, &Method::GET, &url).await?;
        if bytes.len() as u64 != descriptor.size {
            return Err(ClientError::SizeMismatch {
                digest: descriptor.digest.clone(),
                url: url.to_string(),
                expected: descriptor.size,
                actual: bytes.len() as u64,
            });
        }
        let actual = Digest::of(&bytes);
        if actual != descriptor.digest {
            return Err(ClientError::DigestMismatch {
                url: url.to_string(),
                expected: descriptor.digest.clone(),
                actual,
            });
        }
        Ok(bytes)
    }

    /// Lists the tags of the repository `reference` names, following pagination.
    pub async fn list_tags(&self, reference: &Reference) -> Result<Vec<String>, ClientError> {
        #[derive(Deserialize)]
        struct Page {
            tags: Option<Vec<String>>,
        }
        let first = self.repo_url(reference, "tags/list")?;
        let scope = auth::Scope::pull(reference.repository());
        self.paginate(reference.registry(), &scope, first, |bytes| {
            serde_json::from_slice::<Page>(bytes).map(|p| p.tags.unwrap_or_default())
        })
        .await
    }

    /// Lists the repositories of `registry`, following pagination.
    pub async fn catalog(&self, registry: &str) -> Result<Vec<String>, ClientError> {
        #[derive(Deserialize)]
        struct Page {
            repositories: Option<Vec<String>>,
        }
        let first = join(&self.base_url(registry)?, "_catalog")?;
        self.paginate(registry, &auth::Scope::catalog(), first, |bytes| {
            serde_json::from_slice::<Page>(bytes).map(|p| p.repositories.unwrap_or_default())
        })
        .await
    }

    async fn paginate(
        &self,
        registry: &str,
        scope: &auth::Scope,
        first: Url,
        parse: impl Fn(&[u8]) -> Result<Vec<String>, serde_json::Error>,
    ) -> Result<Vec<String>, ClientError> {
        let mut items = Vec::new();
        let mut next = Some(first);
        let mut pages = 0;
        while let Some(url) = next.take() {
            pages += 1;
            if pages > MAX_PAGES {
                break;
            }
            let response = self
                .send(registry, scope, || self.http.get(url.clone()))
                .await?;
            let response = expect_status(response, &Method::GET, &[StatusCode::OK]).await?;
            next = header_str(response.headers(), LINK.as_str())
                .and_then(next_link)
                .and_then(|link| url.join(&link).ok());
            let bytes = read_limited(response, JSON_LIMIT, &Method::GET, &url).await?;
            items.extend(parse(&bytes).map_err(|source| ClientError::Json {
                url: url.to_string(),
                source,
            })?);
        }
        Ok(items)
    }
}

/// Whether a registry's host (port stripped) is a loopback name or address.
pub fn is_loopback(registry: &str) -> bool {
    let host = match registry.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(rest),
        None => registry.split(':').next().unwrap_or(registry),
    };
    host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn parse_url(text: &str) -> Result<Url, ClientError> {
    Url::parse(text).map_err(|e| ClientError::Url {
        url: text.to_owned(),
        reason: e.to_string(),
    })
}

fn join(base: &Url, relative: &str) -> Result<Url, ClientError> {
    base.join(relative).map_err(|e| ClientError::Url {
        url: format!("{base} + {relative}"),
        reason: e.to_string(),
    })
}

/// Maps an I/O error on `path` to [`ClientError::Io`].
fn io_error<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> ClientError + 'a {
    move |source| ClientError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v: &HeaderValue| v.to_str().ok())
}

/// The target of `rel="next"` in a `Link` header: `</v2/_catalog?last=b&n=2>; rel="next"`.
fn next_link(header: &str) -> Option<String> {
    header.split(',').find_map(|link| {
        let (target, params) = link.split_once(';')?;
        let is_next = params.split(';').any(|p| {
            let p = p.trim().replace(' ', "");
            p == "rel=\"next\"" || p == "rel=next"
        });
        let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
        is_next.then(|| target.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_detection() {
        for host in [
            "localhost",
            "localhost:5000",
            "127.0.0.1:80",
            "127.1.2.3",
            "[::1]:5000",
            "[::1]",
        ] {
            assert!(is_loopback(host), "{host}");
        }
        for host in [
            "example.com",
            "10.0.0.1:5000",
            "[fe80::1]:5000",
            "localhost.example:5000",
        ] {
            assert!(!is_loopback(host), "{host}");
        }
    }

    #[test]
    fn plain_http_only_for_loopback_and_only_when_asked() {
        let client = RegistryClient::new(ClientConfig {
            plain_http_loopback: true,
            ..ClientConfig::default()
        })
        .expect("client");
        assert_eq!(
            client.base_url("127.0.0.1:5000").expect("url").as_str(),
            "http://127.0.0.1:5000/v2/"
        );
        assert_eq!(
            client.base_url("reg.example:5000").expect("url").as_str(),
            "https://reg.example:5000/v2/"
        );
        assert_eq!(
            client.base_url("docker.io").expect("url").as_str(),
            "https://registry-1.docker.io/v2/"
        );
        let strict = RegistryClient::new(ClientConfig::default()).expect("client");
        assert_eq!(
            strict.base_url("127.0.0.1:5000").expect("url").scheme(),
            "https"
        );
    }

    #[test]
    fn bad_tls_material_is_refused() {
        let err = RegistryClient::new(ClientConfig {
            ca_pem: Some(
                b"-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n".to_vec(),
            ),
            ..ClientConfig::default()
        })
        .expect_err("bad CA");
        assert!(err.to_string().contains("CA bundle"), "{err}");
        let err = RegistryClient::new(ClientConfig {
            identity_pem: Some(b"no pem here".to_vec()),
            ..ClientConfig::default()
        })
        .expect_err("bad identity");
        assert!(err.to_string().contains("client certificate"), "{err}");
    }

    #[test]
    fn link_headers() {
        assert_eq!(
            next_link(r#"</v2/_catalog?last=b&n=2>; rel="next""#).as_deref(),
            Some("/v2/_catalog?last=b&n=2")
        );
        assert_eq!(
            next_link(r#"<https://x/prev>; rel="prev", <https://x/next>; rel=next"#).as_deref(),
            Some("https://x/next")
        );
        assert_eq!(next_link(r#"<https://x/prev>; rel="prev""#), None);
        assert_eq!(next_link("garbage"), None);
    }

    #[test]
    fn credentials_are_redacted_in_debug_output() {
        let basic = Credentials::Basic {
            username: "u".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{basic:?}").contains("hunter2"));
        assert!(!format!("{:?}", Credentials::Bearer("tok".into())).contains("tok"));
    }
}
