//! Errors of the containerd layer, each naming the operation and the object it was about.

use std::path::PathBuf;

use containerd_client::tonic::{Code, Status};

/// Why a containerd operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ContainerdError {
    /// The socket could not be connected to.
    #[error("cannot connect to containerd at {socket}: {source} (is containerd running?)")]
    Connect {
        /// The socket path.
        socket: PathBuf,
        /// The transport error.
        source: containerd_client::tonic::transport::Error,
    },
    /// containerd refused or failed a call.
    #[error("containerd {operation} of {object:?} failed: {}: {}", .status.code(), .status.message())]
    Rpc {
        /// The call, e.g. `create task`.
        operation: &'static str,
        /// The container id, image name, digest or snapshot key it was about.
        object: String,
        /// containerd's answer (boxed: a `Status` is large and errors travel by value).
        status: Box<Status>,
    },
    /// A local file operation failed (FIFOs, state files, layer blobs).
    #[error("cannot {operation} {path}: {source}")]
    Io {
        /// What was being done.
        operation: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The image cannot be made into a root file system.
    #[error("image {image:?}: {reason}")]
    Image {
        /// The image reference.
        image: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The launch spec cannot be turned into a container.
    #[error("container {id:?}: {reason}")]
    Spec {
        /// The container id.
        id: String,
        /// What is wrong.
        reason: String,
    },
}

impl ContainerdError {
    /// Whether containerd said the object does not exist.
    pub fn is_not_found(&self) -> bool {
        self.code() == Some(Code::NotFound)
    }

    /// Whether containerd said the object exists already.
    pub fn is_already_exists(&self) -> bool {
        self.code() == Some(Code::AlreadyExists)
    }

    /// The gRPC code of a refused call.
    pub fn code(&self) -> Option<Code> {
        match self {
            ContainerdError::Rpc { status, .. } => Some(status.code()),
            _ => None,
        }
    }

    pub(super) fn rpc(
        operation: &'static str,
        object: impl Into<String>,
    ) -> impl FnOnce(Status) -> ContainerdError {
        let object = object.into();
        move |status| ContainerdError::Rpc {
            operation,
            object,
            status: Box::new(status),
        }
    }

    pub(super) fn io(
        operation: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> ContainerdError {
        let path = path.into();
        move |source| ContainerdError::Io {
            operation,
            path,
            source,
        }
    }
}

/// `Ok(None)` for NotFound, so "already gone" is not an error where absence is the goal.
pub(super) fn absent_ok<T>(
    result: Result<T, ContainerdError>,
) -> Result<Option<T>, ContainerdError> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_found_is_distinguishable_and_messages_name_the_object() {
        let err = ContainerdError::rpc("delete container", "web-1")(Status::not_found(
            "container \"web-1\" in namespace \"bramble\": not found",
        ));
        assert!(err.is_not_found());
        assert!(!err.is_already_exists());
        let text = err.to_string();
        assert!(text.contains("delete container"), "{text}");
        assert!(text.contains("web-1"), "{text}");
        assert!(matches!(absent_ok::<()>(Err(err)), Ok(None)));
        let other = ContainerdError::rpc("start task", "x")(Status::internal("boom"));
        assert!(!other.is_not_found());
        assert!(absent_ok::<()>(Err(other)).is_err());
    }
}
