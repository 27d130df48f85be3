//! Registry errors and their mapping to the OCI distribution wire format.
//!
//! Every failure of the registry is a [`RegistryError`]; [`RegistryError::to_response`] is the one
//! place where an error becomes an HTTP status and the spec's `{"errors":[…]}` body.

use std::path::PathBuf;

use http::{header, HeaderValue, Response, StatusCode};
use serde_json::json;

use super::{full_body, Body, API_VERSION_HEADER, API_VERSION_VALUE};

/// Everything that can go wrong while serving the registry API or maintaining its storage.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// A repository name does not match the spec's grammar.
    #[error("invalid repository name {name:?}: {reason}")]
    NameInvalid {
        /// The rejected name.
        name: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// The repository has no content.
    #[error("repository {name:?} is not known to the registry")]
    NameUnknown {
        /// The repository.
        name: String,
    },
    /// A tag does not match `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
    #[error("invalid tag {tag:?}: tags are 1-128 characters of [a-zA-Z0-9._-] not starting with '.' or '-'")]
    TagInvalid {
        /// The rejected tag.
        tag: String,
    },
    /// A digest is malformed or uses an algorithm the registry does not support.
    #[error("invalid digest {digest:?}: {reason}")]
    DigestInvalid {
        /// The rejected digest.
        digest: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// Uploaded content does not hash to the digest the client announced.
    #[error("content digest {computed} does not match the provided digest {expected}")]
    DigestMismatch {
        /// The digest the client announced.
        expected: String,
        /// The digest of the bytes actually received.
        computed: String,
    },
    /// The blob is not in the repository.
    #[error("blob {digest} is not known in repository {name:?}")]
    BlobUnknown {
        /// The repository.
        name: String,
        /// The blob digest.
        digest: String,
    },
    /// The upload session does not exist, expired or was cancelled.
    #[error("blob upload {id:?} is not known (it never existed, expired, was cancelled or already completed)")]
    UploadUnknown {
        /// The session id from the URL.
        id: String,
    },
    /// The upload request cannot proceed.
    #[error("blob upload {id:?} is invalid: {reason}")]
    UploadInvalid {
        /// The session id, empty for single-request uploads.
        id: String,
        /// What is wrong.
        reason: String,
    },
    /// A chunk does not start where the previous one ended.
    #[error("chunk for upload {id:?} starts at byte {start} but the upload has {offset} bytes; query the upload to resume")]
    UploadOutOfOrder {
        /// The session id.
        id: String,
        /// Bytes received so far.
        offset: u64,
        /// Start of the rejected chunk.
        start: u64,
    },
    /// Reading the request (or upstream) body failed before it was complete.
    #[error("reading the body failed after {received} bytes: {reason}")]
    BodyRead {
        /// Bytes received before the failure.
        received: u64,
        /// The transport error.
        reason: String,
    },
    /// The body is longer or shorter than its announced length.
    #[error("body length {received} does not match the announced length {declared}")]
    SizeInvalid {
        /// The announced length (Content-Length, Content-Range or descriptor size).
        declared: u64,
        /// The bytes received (or at least received, when the body was cut off early).
        received: u64,
    },
    /// A manifest is larger than the registry accepts.
    #[error("manifest of {size} bytes exceeds the limit of {limit} bytes")]
    ManifestTooLarge {
        /// Received size (at least).
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The manifest is not in the repository.
    #[error("manifest {reference:?} is not known in repository {name:?}")]
    ManifestUnknown {
        /// The repository.
        name: String,
        /// The tag or digest.
        reference: String,
    },
    /// The manifest is not valid JSON of its type or breaks a rule of the image spec.
    #[error("manifest invalid: {reason}")]
    ManifestInvalid {
        /// What is wrong.
        reason: String,
    },
    /// The manifest media type is not one the registry stores.
    #[error("unsupported manifest media type {media_type:?}; supported are OCI image manifest/index and Docker schema 2 manifest/manifest list")]
    ManifestMediaType {
        /// The rejected media type.
        media_type: String,
    },
    /// The manifest references blobs or child manifests the repository does not have.
    #[error("manifest references content missing from the repository: {}", digests.join(", "))]
    ManifestBlobUnknown {
        /// The missing digests.
        digests: Vec<String>,
    },
    /// A pagination or other query parameter is malformed.
    #[error("invalid query parameter {param}={value:?}: {reason}")]
    QueryInvalid {
        /// The parameter name.
        param: &'static str,
        /// The rejected value.
        value: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// The caller may not push.
    #[error("authentication with push rights is required for {method} requests")]
    Unauthorized {
        /// The refused method.
        method: String,
    },
    /// The operation is refused for this repository.
    #[error("access to repository {name:?} denied: {reason}")]
    Denied {
        /// The repository.
        name: String,
        /// Why.
        reason: &'static str,
    },
    /// No registry endpoint has this path.
    #[error("no registry endpoint at {path:?}")]
    RouteUnknown {
        /// The request path.
        path: String,
    },
    /// The endpoint exists but not with this method.
    #[error("method {method} is not allowed on {path:?}")]
    MethodNotAllowed {
        /// The refused method.
        method: String,
        /// The request path.
        path: String,
    },
    /// A file system operation failed.
    #[error("{op} {path:?} failed: {source}")]
    Io {
        /// What was attempted.
        op: &'static str,
        /// On which path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The upstream registry of a mirror failed or returned something unusable.
    #[error("upstream registry {upstream} failed for {what}: {reason}")]
    Upstream {
        /// The upstream base URL.
        upstream: String,
        /// What was fetched.
        what: String,
        /// What went wrong.
        reason: String,
    },
    /// The registry configuration is unusable.
    #[error("invalid registry configuration: {reason}")]
    Config {
        /// What is wrong and how to fix it.
        reason: String,
    },
}

impl RegistryError {
    /// Builds an [`RegistryError::Io`] from an operation name and path.
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            op,
            path: path.into(),
            source,
        }
    }

    /// The spec error code and HTTP status of this error.
    pub fn wire(&self) -> (&'static str, StatusCode) {
        match self {
            Self::NameInvalid { .. } => ("NAME_INVALID", StatusCode::BAD_REQUEST),
            Self::NameUnknown { .. } => ("NAME_UNKNOWN", StatusCode::NOT_FOUND),
            Self::TagInvalid { .. } => ("TAG_INVALID", StatusCode::BAD_REQUEST),
            Self::DigestInvalid { .. } | Self::DigestMismatch { .. } => {
                ("DIGEST_INVALID", StatusCode::BAD_REQUEST)
            }
            Self::BlobUnknown { .. } => ("BLOB_UNKNOWN", StatusCode::NOT_FOUND),
            Self::UploadUnknown { .. } => ("BLOB_UPLOAD_UNKNOWN", StatusCode::NOT_FOUND),
            Self::UploadInvalid { .. } | Self::BodyRead { .. } => {
                ("BLOB_UPLOAD_INVALID", StatusCode::BAD_REQUEST)
            }
            Self::UploadOutOfOrder { .. } => {
                ("BLOB_UPLOAD_INVALID", StatusCode::RANGE_NOT_SATISFIABLE)
            }
            Self::SizeInvalid { .. } => ("SIZE_INVALID", StatusCode::BAD_REQUEST),
            Self::ManifestTooLarge { .. } => ("SIZE_INVALID", StatusCode::PAYLOAD_TOO_LARGE),
            Self::ManifestUnknown { .. } => ("MANIFEST_UNKNOWN", StatusCode::NOT_FOUND),
            Self::ManifestInvalid { .. } => ("MANIFEST_INVALID", StatusCode::BAD_REQUEST),
            Self::ManifestMediaType { .. } => {
                ("MANIFEST_INVALID", StatusCode::UNSUPPORTED_MEDIA_TYPE)
            }
            Self::ManifestBlobUnknown { .. } => ("MANIFEST_BLOB_UNKNOWN", StatusCode::BAD_REQUEST),
            Self::QueryInvalid { .. } => ("UNSUPPORTED", StatusCode::BAD_REQUEST),
            Self::Unauthorized { .. } => ("UNAUTHORIZED", StatusCode::UNAUTHORIZED),
            Self::Denied { .. } => ("DENIED", StatusCode::FORBIDDEN),
            Self::RouteUnknown { .. } => ("UNSUPPORTED", StatusCode::NOT_FOUND),
            Self::MethodNotAllowed { .. } => ("UNSUPPORTED", StatusCode::METHOD_NOT_ALLOWED),
            Self::Io { .. } | Self::Config { .. } => ("UNKNOWN", StatusCode::INTERNAL_SERVER_ERROR),
            Self::Upstream { .. } => ("UNKNOWN", StatusCode::BAD_GATEWAY),
        }
    }

    /// Structured detail for the error body, where a client can act on it.
    fn detail(&self) -> serde_json::Value {
        match self {
            Self::NameInvalid { name, .. } | Self::NameUnknown { name } => json!({ "name": name }),
            Self::TagInvalid { tag } => json!({ "tag": tag }),
            Self::DigestInvalid { digest, .. } => json!({ "digest": digest }),
            Self::DigestMismatch { expected, computed } => {
                json!({ "expected": expected, "computed": computed })
            }
            Self::BlobUnknown { digest, .. } => json!({ "digest": digest }),
            Self::UploadOutOfOrder { offset, .. } => json!({ "offset": offset }),
            Self::SizeInvalid { declared, received } => {
                json!({ "declared": declared, "received": received })
            }
            Self::ManifestUnknown { reference, .. } => json!({ "reference": reference }),
            Self::ManifestMediaType { media_type } => json!({ "mediaType": media_type }),
            _ => serde_json::Value::Null,
        }
    }

    /// Renders the error as the spec's JSON error response.
    pub fn to_response(&self) -> Response<Body> {
        let (code, status) = self.wire();
        let message = self.to_string();
        let errors: Vec<serde_json::Value> = match self {
            // The spec asks for one MANIFEST_BLOB_UNKNOWN entry per missing reference.
            Self::ManifestBlobUnknown { digests } => digests
                .iter()
                .map(|digest| {
                    json!({
                        "code": code,
                        "message": format!("manifest references unknown blob or manifest {digest}"),
                        "detail": { "digest": digest },
                    })
                })
                .collect(),
            _ => {
                let mut entry = json!({ "code": code, "message": message });
                let detail = self.detail();
                if !detail.is_null() {
                    entry["detail"] = detail;
                }
                vec![entry]
            }
        };
        let body = json!({ "errors": errors }).to_string();
        let mut response = Response::new(full_body(body));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(
            API_VERSION_HEADER,
            HeaderValue::from_static(API_VERSION_VALUE),
        );
        if status == StatusCode::UNAUTHORIZED {
            // Docker and skopeo only send credentials after a challenge.
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"bramble-registry\""),
            );
        }
        if let Self::UploadOutOfOrder { offset, .. } = self {
            if let Ok(value) = HeaderValue::from_str(&super::upload_range(*offset)) {
                headers.insert(header::RANGE, value);
            }
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;
    use http_body_util::BodyExt;

    async fn body_json(response: Response<Body>) -> anyhow::Result<serde_json::Value> {
        let bytes = response.into_body().collect().await?.to_bytes();
        Ok(serde_json::from_slice(&bytes)?)
    }

    #[tokio::test]
    async fn errors_render_spec_codes_and_statuses() -> anyhow::Result<()> {
        let cases = [
            (
                RegistryError::NameInvalid {
                    name: "A".into(),
                    reason: "upper case",
                },
                "NAME_INVALID",
                400,
            ),
            (
                RegistryError::ManifestUnknown {
                    name: "a".into(),
                    reference: "latest".into(),
                },
                "MANIFEST_UNKNOWN",
                404,
            ),
            (
                RegistryError::UploadOutOfOrder {
                    id: "u".into(),
                    offset: 10,
                    start: 5,
                },
                "BLOB_UPLOAD_INVALID",
                416,
            ),
            (
                RegistryError::ManifestMediaType {
                    media_type: "text/plain".into(),
                },
                "MANIFEST_INVALID",
                415,
            ),
            (
                RegistryError::Unauthorized {
                    method: "PUT".into(),
                },
                "UNAUTHORIZED",
                401,
            ),
        ];
        for (error, code, status) in cases {
            let response = error.to_response();
            assert_eq!(response.status().as_u16(), status, "{error}");
            assert_eq!(
                response.headers().get(API_VERSION_HEADER),
                Some(&HeaderValue::from_static(API_VERSION_VALUE))
            );
            let body = body_json(response).await?;
            assert_eq!(body["errors"][0]["code"], code, "{error}");
            assert!(body["errors"][0]["message"].is_string());
        }
        Ok(())
    }

    #[tokio::test]
    async fn missing_blobs_are_listed_one_error_each() -> anyhow::Result<()> {
        let error = RegistryError::ManifestBlobUnknown {
            digests: vec!["sha256:aa".into(), "sha256:bb".into()],
        };
        let body = body_json(error.to_response()).await?;
        let errors = body["errors"].as_array().context("errors is an array")?;
        assert_eq!(errors.len(), 2);
        assert_eq!(body["errors"][1]["detail"]["digest"], "sha256:bb");
        assert_eq!(body["errors"][0]["code"], "MANIFEST_BLOB_UNKNOWN");
        Ok(())
    }

    #[test]
    fn unauthorized_carries_a_basic_challenge() {
        let response = RegistryError::Unauthorized {
            method: "POST".into(),
        }
        .to_response();
        assert!(response
            .headers()
            .get(header::WWW_AUTHENTICATE)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| value.starts_with("Basic ")));
    }

    #[test]
    fn out_of_order_reports_the_current_range() {
        let response = RegistryError::UploadOutOfOrder {
            id: "u".into(),
            offset: 10,
            start: 3,
        }
        .to_response();
        assert_eq!(
            response.headers().get(header::RANGE),
            Some(&HeaderValue::from_static("0-9"))
        );
    }
}
