//! The registry client's error type.

use std::path::PathBuf;

use reqwest::{Method, StatusCode};

use crate::oci::digest::Digest;
use crate::oci::manifest::ManifestError;

/// Why a registry operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The CA bundle or client certificate could not be loaded.
    #[error("invalid {what} for the registry client: {source}")]
    Tls {
        /// Which input was refused (`CA bundle`, `client certificate`).
        what: &'static str,
        /// The underlying error.
        source: reqwest::Error,
    },
    /// The HTTP client could not be built.
    #[error("cannot build the registry http client: {source}")]
    Build {
        /// The underlying error.
        source: reqwest::Error,
    },
    /// A URL could not be formed or resolved.
    #[error("invalid registry url {url:?}: {reason}")]
    Url {
        /// The URL or fragment.
        url: String,
        /// What was wrong.
        reason: String,
    },
    /// The request could not be sent or the response not read.
    #[error("{method} {url} failed: {source}")]
    Http {
        /// The request method.
        method: Method,
        /// The request URL.
        url: String,
        /// The underlying error.
        source: reqwest::Error,
    },
    /// The registry has no such manifest, blob or repository.
    #[error("{method} {url}: not found ({detail})")]
    NotFound {
        /// The request method.
        method: Method,
        /// The request URL.
        url: String,
        /// The registry's error codes and messages.
        detail: String,
    },
    /// The registry refused the credentials, or asked for some and none are configured.
    #[error("{method} {url}: unauthorized ({detail}); check the registry credentials")]
    Unauthorized {
        /// The request method.
        method: Method,
        /// The request URL.
        url: String,
        /// The registry's error codes and messages.
        detail: String,
    },
    /// The registry answered with an unexpected status.
    #[error("{method} {url}: unexpected status {status} ({detail})")]
    Status {
        /// The request method.
        method: Method,
        /// The request URL.
        url: String,
        /// The HTTP status.
        status: StatusCode,
        /// The registry's error codes and messages.
        detail: String,
    },
    /// The token endpoint named by a `WWW-Authenticate` challenge failed.
    #[error("token request to {realm} failed: {reason}")]
    Token {
        /// The realm URL.
        realm: String,
        /// What went wrong.
        reason: String,
    },
    /// Credentials would have been sent over plain HTTP to a host that is not loopback.
    #[error("refusing to send registry credentials over plain http to {url}")]
    InsecureCredentials {
        /// The URL that asked for them.
        url: String,
    },
    /// A response was larger than this client accepts for its kind.
    #[error("response from {url} is larger than {limit} bytes")]
    TooLarge {
        /// The request URL.
        url: String,
        /// The limit in bytes.
        limit: usize,
    },
    /// A response lacked a header the protocol requires.
    #[error("response from {url} has no {header} header")]
    MissingHeader {
        /// The request URL.
        url: String,
        /// The header name.
        header: &'static str,
    },
    /// Content did not hash to the digest it was fetched or pushed by.
    #[error("digest mismatch for {url}: expected {expected}, got {actual}")]
    DigestMismatch {
        /// Where the content came from.
        url: String,
        /// The digest asked for.
        expected: Digest,
        /// The digest of what arrived.
        actual: Digest,
    },
    /// A blob was longer or shorter than its descriptor says.
    #[error("blob {digest} from {url} has {actual} bytes, its descriptor says {expected}")]
    SizeMismatch {
        /// The blob's digest.
        digest: Digest,
        /// Where it came from.
        url: String,
        /// Size in the descriptor.
        expected: u64,
        /// Bytes received (so far).
        actual: u64,
    },
    /// The transfer of a blob stopped part way; what arrived is kept for the next attempt.
    #[error(
        "download of {digest} from {url} was interrupted after {received} of {expected} bytes \
         (kept for resuming): {reason}"
    )]
    Interrupted {
        /// The blob's digest.
        digest: Digest,
        /// Where it came from.
        url: String,
        /// Bytes on disk so far.
        received: u64,
        /// Size in the descriptor.
        expected: u64,
        /// What cut the transfer.
        reason: String,
    },
    /// A manifest could not be parsed.
    #[error("manifest from {url}: {source}")]
    Manifest {
        /// The request URL.
        url: String,
        /// The parse error.
        source: ManifestError,
    },
    /// A JSON document (tags, catalog, token) could not be parsed.
    #[error("invalid json from {url}: {source}")]
    Json {
        /// The request URL.
        url: String,
        /// The parse error.
        source: serde_json::Error,
    },
    /// A local file could not be read or written.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done (`open`, `write`, `rename`).
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}
