//! The shim's errors, and their one mapping to ttrpc status codes (which containerd turns into
//! its errdefs: NotFound, AlreadyExists, FailedPrecondition, …, and `ctr` prints).

use std::path::PathBuf;

use containerd_shim::protos::ttrpc::{self, Code};

/// Why a task request failed.
#[derive(Debug, thiserror::Error)]
pub enum ShimError {
    /// No container or process with that id in this shim.
    #[error("{kind} {id:?} not found in this shim")]
    NotFound {
        /// "container" or "exec process".
        kind: &'static str,
        /// The id asked for.
        id: String,
    },
    /// The id is taken.
    #[error("{kind} {id:?} already exists")]
    AlreadyExists {
        /// "container" or "exec process".
        kind: &'static str,
        /// The id.
        id: String,
    },
    /// The process is not in a state that allows the request.
    #[error("cannot {action} {id:?}: it is {status}")]
    WrongState {
        /// What was asked (start, delete, …).
        action: &'static str,
        /// The process.
        id: String,
        /// Its status.
        status: &'static str,
    },
    /// The process already ended (what runc reports for a kill after exit).
    #[error("process {id:?} already finished")]
    Finished {
        /// The process.
        id: String,
    },
    /// A file the request depends on could not be used.
    #[error("{what} failed at {}: {source}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// `config.json` is not an OCI runtime spec.
    #[error("the OCI spec {} is invalid: {message}", path.display())]
    InvalidSpec {
        /// The file.
        path: PathBuf,
        /// serde's explanation.
        message: String,
    },
    /// The process spec cannot be run as a Wasm guest.
    #[error("invalid process for a wasm task: {message}")]
    InvalidProcess {
        /// What is wrong and how to fix it.
        message: String,
    },
    /// The rootfs could not be mounted or unmounted.
    #[error("{action} the rootfs at {} failed: {message}", target.display())]
    Mount {
        /// "mounting" or "unmounting".
        action: &'static str,
        /// The mount point.
        target: PathBuf,
        /// The kernel's or containerd-shim's explanation.
        message: String,
    },
    /// The module could not be compiled, loaded or linked.
    #[error("cannot load wasm module {}: {message}", path.display())]
    Load {
        /// The module on the host.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// The Wasm engine or its cache could not be set up.
    #[error("setting up the wasm runtime failed: {message}")]
    Runtime {
        /// Why.
        message: String,
    },
    /// Something this shim does not do (signals without a Wasm meaning, pause, checkpoint).
    #[error("{what} is not supported by the bramble wasm shim")]
    Unsupported {
        /// What was asked.
        what: String,
    },
}

impl ShimError {
    /// The ttrpc status code containerd expects for this error.
    pub fn code(&self) -> Code {
        match self {
            ShimError::NotFound { .. } | ShimError::Finished { .. } => Code::NOT_FOUND,
            ShimError::AlreadyExists { .. } => Code::ALREADY_EXISTS,
            ShimError::WrongState { .. } => Code::FAILED_PRECONDITION,
            ShimError::InvalidSpec { .. } | ShimError::InvalidProcess { .. } => {
                Code::INVALID_ARGUMENT
            }
            ShimError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                Code::NOT_FOUND
            }
            ShimError::Load { .. } => Code::INVALID_ARGUMENT,
            ShimError::Unsupported { .. } => Code::UNIMPLEMENTED,
            ShimError::Io { .. } | ShimError::Mount { .. } | ShimError::Runtime { .. } => {
                Code::INTERNAL
            }
        }
    }
}

impl From<ShimError> for ttrpc::Error {
    fn from(err: ShimError) -> Self {
        ttrpc::Error::RpcStatus(ttrpc::get_status(err.code(), err.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(err: ShimError) -> (Code, String) {
        match ttrpc::Error::from(err) {
            ttrpc::Error::RpcStatus(status) => (status.code(), status.message),
            other => panic!("not a status: {other:?}"),
        }
    }

    #[test]
    fn errors_map_to_the_codes_containerd_understands() {
        let (code, message) = status(ShimError::NotFound {
            kind: "container",
            id: "c1".into(),
        });
        assert_eq!(code, Code::NOT_FOUND);
        assert_eq!(message, "container \"c1\" not found in this shim");
        let running = ShimError::WrongState {
            action: "delete",
            id: "c1".into(),
            status: "running",
        };
        assert_eq!(status(running).0, Code::FAILED_PRECONDITION);
        assert_eq!(
            status(ShimError::Finished { id: "c1".into() }).0,
            Code::NOT_FOUND
        );
        let missing = ShimError::Io {
            what: "reading",
            path: "/x".into(),
            source: std::io::ErrorKind::NotFound.into(),
        };
        assert_eq!(status(missing).0, Code::NOT_FOUND);
        let bad = ShimError::Load {
            path: "/r/hello.wasm".into(),
            message: "not wasm".into(),
        };
        let (code, message) = status(bad);
        assert_eq!(code, Code::INVALID_ARGUMENT);
        assert!(message.contains("/r/hello.wasm") && message.contains("not wasm"));
        let pause = ShimError::Unsupported {
            what: "pause".into(),
        };
        assert_eq!(status(pause).0, Code::UNIMPLEMENTED);
    }
}
