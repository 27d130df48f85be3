//! An OCI registry (distribution spec v1.1) served on the API server's port, with pull-through
//! mirrors of upstream registries.
//!
//! Boards behind NAT pull images and Wasm artifacts only from the control plane, so this module
//! stores pushed content and caches mirrored content on local disk. Authentication happens
//! before [`Registry::handle`] is called; the caller says whether the client may push.
//!
//! Module layout: `routes` parses URLs, `names` validates names/tags/digests, `storage` owns the
//! disk layout, `stream` moves bytes, `upload`/`blobs`/`manifest_api`/`listing` implement the
//! endpoints, `manifest` knows the manifest formats, `mirror`/`upstream` pull through, and `gc`
//! collects garbage. `errors` maps every failure to the spec's error body.

mod blobs;
mod errors;
mod gc;
mod ingest;
mod listing;
mod manifest;
mod manifest_api;
mod mirror;
mod names;
mod routes;
mod storage;
mod stream;
mod upload;
mod upstream;

#[cfg(test)]
mod test_support;
#[cfg(test)]
mod tests_mirror;
#[cfg(test)]
mod tests_pull;
#[cfg(test)]
mod tests_push;

use std::convert::Infallible;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::{self, HeaderName};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Empty, Full};
use hyper::body::Incoming;
use tokio::sync::RwLock;

pub use errors::RegistryError;
pub use gc::GcReport;
pub use mirror::Mirror;
pub use upstream::UpstreamCredentials;

use mirror::{ActiveMirror, PullLocks};
use names::Digest;
use routes::{Query, Route};
use storage::Storage;
use upload::Sessions;
use upstream::HttpClient;

/// Response body type, identical to the API server's.
pub type Body = BoxBody<Bytes, Infallible>;

/// Header announcing the registry API version on every response.
const API_VERSION_HEADER: HeaderName = HeaderName::from_static("docker-distribution-api-version");
/// Its value.
const API_VERSION_VALUE: &str = "registry/2.0";
/// Digest of the content a response is about.
const CONTENT_DIGEST: HeaderName = HeaderName::from_static("docker-content-digest");
/// Id of an upload session.
const UPLOAD_UUID: HeaderName = HeaderName::from_static("docker-upload-uuid");
/// Subject of a pushed manifest (referrers API).
const OCI_SUBJECT: HeaderName = HeaderName::from_static("oci-subject");
/// Tags accepted with a push by digest.
const OCI_TAG: HeaderName = HeaderName::from_static("oci-tag");
/// Filters applied to a referrers list.
const OCI_FILTERS_APPLIED: HeaderName = HeaderName::from_static("oci-filters-applied");

/// Registry settings.
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// Storage root; created if missing.
    pub root: PathBuf,
    /// Pull-through mirrors, matched by repository name prefix (longest wins).
    pub mirrors: Vec<Mirror>,
    /// An upload with no activity for this long is discarded.
    pub upload_ttl: Duration,
    /// Unreferenced blobs younger than this survive collection (their manifest may be coming).
    pub gc_grace: Duration,
    /// Largest manifest accepted (the spec asks for at least 4 MiB).
    pub max_manifest_bytes: u64,
    /// A request or upstream body that sends nothing for this long is aborted.
    pub body_idle_timeout: Duration,
}

impl RegistryConfig {
    /// Defaults: no mirrors, uploads expire after an idle hour, an hour of grace for new blobs,
    /// 4 MiB manifests, one idle minute per body.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            mirrors: Vec::new(),
            upload_ttl: Duration::from_secs(3600),
            gc_grace: Duration::from_secs(3600),
            max_manifest_bytes: 4 * 1024 * 1024,
            body_idle_timeout: Duration::from_secs(60),
        }
    }
}

/// The registry: storage, upload sessions, mirrors.
pub struct Registry {
    storage: Storage,
    config: RegistryConfig,
    uploads: Sessions,
    mirrors: Vec<ActiveMirror>,
    client: HttpClient,
    pulls: PullLocks,
    /// Read side: steps that make content reachable; write side: garbage collection.
    gc_lock: RwLock<()>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("root", &self.config.root)
            .field("mirrors", &self.mirrors)
            .finish_non_exhaustive()
    }
}

impl Registry {
    /// Opens (creating if needed) the registry under `config.root` and validates the mirrors.
    pub fn open(config: RegistryConfig) -> Result<Registry, RegistryError> {
        let storage = Storage::open(config.root.clone())?;
        let mirrors = config
            .mirrors
            .iter()
            .map(ActiveMirror::new)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Registry {
            storage,
            uploads: Sessions::default(),
            mirrors,
            client: upstream::build_client()?,
            pulls: PullLocks::default(),
            gc_lock: RwLock::new(()),
            config,
        })
    }

    /// Serves one request under `/v2`. `can_push` allows uploads, manifest pushes and deletes.
    pub async fn handle(&self, request: Request<Incoming>, can_push: bool) -> Response<Body> {
        let method = request.method().clone();
        let path = request.uri().path().to_owned();
        let mut response = match self.dispatch(request, can_push).await {
            Ok(response) => response,
            Err(error) => {
                if error.wire().1.is_server_error() {
                    tracing::warn!(%method, %path, %error, "registry request failed");
                } else {
                    tracing::debug!(%method, %path, %error, "registry request refused");
                }
                error.to_response()
            }
        };
        response.headers_mut().insert(
            API_VERSION_HEADER,
            HeaderValue::from_static(API_VERSION_VALUE),
        );
        response
    }

    async fn dispatch(
        &self,
        request: Request<Incoming>,
        can_push: bool,
    ) -> Result<Response<Body>, RegistryError> {
        let (parts, mut body) = request.into_parts();
        let route = Route::parse(parts.uri.path())?;
        let query = Query::parse(parts.uri.query());
        let headers = &parts.headers;
        let method = &parts.method;
        let head = method == Method::HEAD;
        let not_allowed = || RegistryError::MethodNotAllowed {
            method: method.to_string(),
            path: parts.uri.path().to_owned(),
        };
        let push = |name: &str| self.authorize_push(name, method, can_push);
        match route {
            Route::Base => match *method {
                Method::GET | Method::HEAD => Ok(json_response("{}")),
                _ => Err(not_allowed()),
            },
            Route::Catalog if *method == Method::GET => self.catalog(&query).await,
            Route::Tags { name } if *method == Method::GET => self.list_tags(&name, &query).await,
            Route::Referrers { name, digest } if *method == Method::GET => {
                self.referrers(&name, &digest, &query).await
            }
            Route::Manifest { name, reference } => match *method {
                Method::GET | Method::HEAD => self.get_manifest(&name, &reference, head).await,
                Method::PUT => {
                    push(&name)?;
                    self.put_manifest(&name, &reference, &query, headers, &mut body)
                        .await
                }
                Method::DELETE => {
                    push(&name)?;
                    self.delete_manifest(&name, &reference).await
                }
                _ => Err(not_allowed()),
            },
            Route::Blob { name, digest } => match *method {
                Method::GET | Method::HEAD => self.get_blob(&name, &digest, headers, head).await,
                Method::DELETE => {
                    push(&name)?;
                    self.delete_blob(&name, &digest).await
                }
                _ => Err(not_allowed()),
            },
            Route::UploadStart { name } if *method == Method::POST => {
                push(&name)?;
                self.start_upload(&name, &query, headers, &mut body).await
            }
            Route::Upload { name, id } => {
                let allowed = [Method::GET, Method::PATCH, Method::PUT, Method::DELETE];
                if !allowed.contains(method) {
                    return Err(not_allowed());
                }
                push(&name)?;
                match *method {
                    Method::GET => self.upload_progress(&name, &id).await,
                    Method::PATCH => self.patch_upload(&name, &id, headers, &mut body).await,
                    Method::PUT => {
                        self.finish_upload(&name, &id, &query, headers, &mut body)
                            .await
                    }
                    _ => self.cancel_upload(&name, &id).await,
                }
            }
            _ => Err(not_allowed()),
        }
    }

    /// Push operations need push rights, and mirrored repositories are read-only.
    fn authorize_push(
        &self,
        name: &str,
        method: &Method,
        can_push: bool,
    ) -> Result<(), RegistryError> {
        if !can_push {
            return Err(RegistryError::Unauthorized {
                method: method.to_string(),
            });
        }
        if self.mirror_for(name).is_some() {
            return Err(RegistryError::Denied {
                name: name.to_owned(),
                reason: "the repository is a read-only pull-through mirror",
            });
        }
        Ok(())
    }
}

/// A body holding `bytes`.
fn full_body(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed()
}

/// An empty body.
fn empty_body() -> Body {
    Empty::new().boxed()
}

/// A response with a status and no body.
fn status_only(status: StatusCode) -> Response<Body> {
    let mut response = Response::new(empty_body());
    *response.status_mut() = status;
    response
}

fn json_response(json: &'static str) -> Response<Body> {
    let mut response = Response::new(full_body(json));
    set_header(
        response.headers_mut(),
        header::CONTENT_TYPE,
        "application/json",
    );
    response
}

/// `201 Created` for content now at `location`.
fn created(location: &str, digest: &Digest) -> Response<Body> {
    let mut response = status_only(StatusCode::CREATED);
    let headers = response.headers_mut();
    set_header(headers, header::LOCATION, location);
    set_header(headers, CONTENT_DIGEST, &digest.to_string());
    set_header(headers, header::CONTENT_LENGTH, "0");
    response
}

/// Sets a header; values built from validated names and digests are always valid, anything
/// else is dropped with a warning rather than failing the response.
fn set_header(headers: &mut HeaderMap, name: HeaderName, value: &str) {
    match HeaderValue::from_str(value) {
        Ok(value) => {
            headers.insert(name, value);
        }
        Err(_) => tracing::warn!(header = %name, value, "dropping an unrepresentable header value"),
    }
}

/// A request header as text, if present and visible ASCII.
fn header_str(headers: &HeaderMap, name: impl header::AsHeaderName) -> Option<&str> {
    headers.get(name).and_then(|value| value.to_str().ok())
}

/// The request's `Content-Length`, if announced.
fn content_length(headers: &HeaderMap) -> Result<Option<u64>, RegistryError> {
    header_str(headers, header::CONTENT_LENGTH)
        .map(|value| {
            value
                .trim()
                .parse::<u64>()
                .map_err(|_| RegistryError::UploadInvalid {
                    id: String::new(),
                    reason: format!("Content-Length {value:?} is not a number"),
                })
        })
        .transpose()
}

/// The `Range` header value for an upload holding `offset` bytes (`0-0` when empty, as
/// distribution answers).
fn upload_range(offset: u64) -> String {
    format!("0-{}", offset.saturating_sub(1))
}

/// Whether `time` lies more than `age` in the past (a time in the future never does).
fn older_than(time: SystemTime, age: Duration) -> bool {
    SystemTime::now()
        .duration_since(time)
        .is_ok_and(|elapsed| elapsed > age)
}
