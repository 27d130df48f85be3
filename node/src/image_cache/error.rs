//! The image cache's error type.

use std::path::{Path, PathBuf};

use crate::oci::client::ClientError;
use crate::oci::manifest::ManifestError;
use crate::oci::Digest;

/// Why the cache could not serve an image.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// A cache file could not be read or written.
    #[error("image cache: cannot {action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A blocking file task died.
    #[error("image cache: a file task failed: {source}")]
    Task {
        /// The join error.
        source: tokio::task::JoinError,
    },
    /// The registry could not deliver the image.
    #[error("pulling {reference}: {source}")]
    Pull {
        /// The reference being pulled.
        reference: String,
        /// The client error (boxed: it is large, and errors are the cold path).
        source: Box<ClientError>,
    },
    /// The manifest is malformed or not runnable as declared.
    #[error("pulling {reference}: {source}")]
    Manifest {
        /// The reference being pulled.
        reference: String,
        /// What is wrong with it.
        source: ManifestError,
    },
    /// An index has no entry for Wasm or for this machine's Linux platform.
    #[error("{reference} has no manifest for wasm or linux/{arch}")]
    NoPlatform {
        /// The reference being pulled.
        reference: String,
        /// This machine's architecture, in OCI naming.
        arch: String,
    },
    /// An index pointed at another index.
    #[error(
        "{reference}: index entry {digest} is itself an index; nested indexes are not supported"
    )]
    NestedIndex {
        /// The reference being pulled.
        reference: String,
        /// The nested index's digest.
        digest: Digest,
    },
    /// The artifact is neither a Wasm artifact nor a container image.
    #[error("{reference} is not a wasm artifact or container image (config type {config_type})")]
    Unsupported {
        /// The reference being pulled.
        reference: String,
        /// Its config media type.
        config_type: String,
    },
    /// The config blob is too large or not the JSON its type promises.
    #[error("{reference}: invalid config {digest}: {reason}")]
    Config {
        /// The reference being pulled.
        reference: String,
        /// The config's digest.
        digest: Digest,
        /// What is wrong.
        reason: String,
    },
}

impl CacheError {
    pub(super) fn io<'a>(
        action: &'static str,
        path: &'a Path,
    ) -> impl FnOnce(std::io::Error) -> Self + 'a {
        move |source| Self::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    }
}
