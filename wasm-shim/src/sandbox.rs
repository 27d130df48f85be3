//! What one container instance is given: arguments, environment, directories, output sinks,
//! limits and sockets; and the WASI context built from it. Nothing else is visible to the guest:
//! no host environment, no stdin, no files outside the preopened directories.

use std::fmt;
use std::path::{Path, PathBuf};

use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

use crate::limits::Limits;
use crate::output::{OutputPipe, Sink, DEFAULT_CAPACITY};
use crate::sockets::SocketPolicy;

/// Why a spec cannot be turned into a sandbox.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// An argument contains a NUL byte, which WASI cannot pass.
    #[error("argument {index} of {name} contains a NUL byte")]
    InvalidArg {
        /// The instance's name.
        name: String,
        /// Position in argv.
        index: usize,
    },
    /// An environment variable cannot be passed to a WASI guest.
    #[error("environment variable {variable:?} of {name} is invalid: {reason}")]
    InvalidEnv {
        /// The instance's name.
        name: String,
        /// The variable's name (truncated to 100 characters).
        variable: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A preopened directory's guest path is unusable.
    #[error("guest path {guest:?} of {name} is invalid: {reason}")]
    InvalidGuestPath {
        /// The instance's name.
        name: String,
        /// The guest path (truncated to 100 characters).
        guest: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A host directory could not be opened.
    #[error("opening host directory {host} (guest path {guest}) for {name} failed: {message}")]
    Preopen {
        /// The instance's name.
        name: String,
        /// The host directory.
        host: PathBuf,
        /// Where the guest would have seen it.
        guest: String,
        /// Why it could not be opened.
        message: String,
    },
}

/// A host directory made visible to the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preopen {
    /// Directory on the host.
    pub host: PathBuf,
    /// Absolute path at which the guest sees it, e.g. `/data`.
    pub guest: String,
    /// Refuse every write, create, rename and delete under it.
    pub read_only: bool,
}

/// A standard input for a guest (e.g. `kubectl exec -i`'s bytes).
pub type Stdin = Box<dyn tokio::io::AsyncRead + Send + Sync + Unpin>;

/// The spec of one container instance.
pub struct SandboxSpec {
    /// Name used in errors and logs (e.g. the container id).
    pub name: String,
    /// Arguments, `argv[0]` included.
    pub argv: Vec<String>,
    /// Environment variables, in order.
    pub env: Vec<(String, String)>,
    /// Directories the guest can see.
    pub preopens: Vec<Preopen>,
    /// What the guest reads as standard input; `None` is an empty, closed stdin.
    pub stdin: Option<Stdin>,
    /// Where standard output goes; `None` discards it.
    pub stdout: Option<Sink>,
    /// Where standard error goes; `None` discards it.
    pub stderr: Option<Sink>,
    /// Memory, CPU and time limits.
    pub limits: Limits,
    /// Sockets the guest may use (preview 2 components only).
    pub sockets: SocketPolicy,
    /// Bytes of output buffered per stream before the guest has to wait for the sink.
    pub output_buffer: usize,
}

impl SandboxSpec {
    /// A spec with nothing granted: no arguments but `argv[0] = name`, no environment, no
    /// directories, output discarded, no limits, no sockets.
    pub fn new(name: impl Into<String>) -> Self {
        let name = name.into();
        Self {
            argv: vec![name.clone()],
            name,
            env: Vec::new(),
            preopens: Vec::new(),
            stdin: None,
            stdout: None,
            stderr: None,
            limits: Limits::default(),
            sockets: SocketPolicy::default(),
            output_buffer: DEFAULT_CAPACITY,
        }
    }

    /// Checks everything that can be checked without touching the host.
    pub fn validate(&self) -> Result<(), SandboxError> {
        if let Some(index) = self.argv.iter().position(|arg| arg.contains('\0')) {
            return Err(SandboxError::InvalidArg {
                name: self.name.clone(),
                index,
            });
        }
        for (variable, value) in &self.env {
            let reason = if variable.is_empty() {
                Some("the name is empty")
            } else if variable.contains('=') {
                Some("the name contains '='")
            } else if variable.contains('\0') || value.contains('\0') {
                Some("it contains a NUL byte")
            } else {
                None
            };
            if let Some(reason) = reason {
                return Err(SandboxError::InvalidEnv {
                    name: self.name.clone(),
                    variable: variable.chars().take(100).collect(),
                    reason,
                });
            }
        }
        for (index, preopen) in self.preopens.iter().enumerate() {
            let reason = guest_path_problem(&preopen.guest).or_else(|| {
                let duplicate = self
                    .preopens
                    .iter()
                    .take(index)
                    .any(|earlier| earlier.guest == preopen.guest);
                duplicate.then_some("it is preopened twice")
            });
            if let Some(reason) = reason {
                return Err(SandboxError::InvalidGuestPath {
                    name: self.name.clone(),
                    guest: preopen.guest.chars().take(100).collect(),
                    reason,
                });
            }
        }
        Ok(())
    }

    /// Builds the WASI context (validating first), with output going to the given pipes.
    pub(crate) fn wasi_builder(
        &self,
        stdout: OutputPipe,
        stderr: OutputPipe,
    ) -> Result<WasiCtxBuilder, SandboxError> {
        self.validate()?;
        let mut builder = WasiCtxBuilder::new();
        builder
            .args(&self.argv)
            .envs(&self.env)
            .stdout(stdout)
            .stderr(stderr);
        for preopen in &self.preopens {
            let perms = if preopen.read_only {
                FsPerms::ReadOnly
            } else {
                FsPerms::ReadWrite
            };
            builder
                .preopened_dir(&preopen.host, &preopen.guest, perms)
                .map_err(|err| SandboxError::Preopen {
                    name: self.name.clone(),
                    host: preopen.host.clone(),
                    guest: preopen.guest.clone(),
                    message: format!("{err:#}"),
                })?;
        }
        self.sockets.apply(&mut builder);
        Ok(builder)
    }
}

impl fmt::Debug for SandboxSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SandboxSpec")
            .field("name", &self.name)
            .field("argv", &self.argv)
            .field("env", &self.env)
            .field("preopens", &self.preopens)
            .field("stdin", &self.stdin.is_some())
            .field("stdout", &self.stdout.is_some())
            .field("stderr", &self.stderr.is_some())
            .field("limits", &self.limits)
            .field("sockets", &self.sockets)
            .field("output_buffer", &self.output_buffer)
            .finish()
    }
}

fn guest_path_problem(guest: &str) -> Option<&'static str> {
    if !Path::new(guest).is_absolute() {
        Some("it must be absolute")
    } else if guest.contains('\0') {
        Some("it contains a NUL byte")
    } else if guest.split('/').any(|part| part == "." || part == "..") {
        Some("it contains '.' or '..'")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec_with(change: impl FnOnce(&mut SandboxSpec)) -> SandboxSpec {
        let mut spec = SandboxSpec::new("c1");
        change(&mut spec);
        spec
    }

    #[test]
    fn a_new_spec_grants_nothing_and_is_valid() {
        let spec = SandboxSpec::new("c1");
        assert_eq!(spec.argv, ["c1"]);
        assert!(spec.env.is_empty() && spec.preopens.is_empty());
        assert!(spec.stdout.is_none() && spec.sockets.rules.is_empty());
        assert!(spec.validate().is_ok());
    }

    #[test]
    fn nul_bytes_in_arguments_are_refused() {
        let spec = spec_with(|s| s.argv.push("a\0b".into()));
        assert!(matches!(
            spec.validate(),
            Err(SandboxError::InvalidArg { index: 1, .. })
        ));
    }

    #[test]
    fn unusable_environment_variables_are_refused() {
        for (name, value) in [("", "x"), ("A=B", "x"), ("A", "x\0y"), ("A\0", "x")] {
            let spec = spec_with(|s| s.env.push((name.into(), value.into())));
            assert!(
                matches!(spec.validate(), Err(SandboxError::InvalidEnv { .. })),
                "{name:?}={value:?} accepted"
            );
        }
        let fine = spec_with(|s| s.env.push(("A".into(), "x=y z".into())));
        assert!(fine.validate().is_ok());
    }

    #[test]
    fn guest_paths_must_be_absolute_plain_and_unique() {
        let preopen = |guest: &str| Preopen {
            host: std::env::temp_dir(),
            guest: guest.into(),
            read_only: true,
        };
        for bad in ["data", "", "/data/../etc", "/./data"] {
            let spec = spec_with(|s| s.preopens.push(preopen(bad)));
            assert!(
                matches!(spec.validate(), Err(SandboxError::InvalidGuestPath { .. })),
                "{bad:?} accepted"
            );
        }
        let twice = spec_with(|s| s.preopens.extend([preopen("/data"), preopen("/data")]));
        assert!(matches!(
            twice.validate(),
            Err(SandboxError::InvalidGuestPath { .. })
        ));
        let fine = spec_with(|s| s.preopens.extend([preopen("/"), preopen("/data")]));
        assert!(fine.validate().is_ok());
    }

    #[tokio::test]
    async fn a_missing_host_directory_is_reported_with_both_paths() {
        let spec = spec_with(|s| {
            s.preopens.push(Preopen {
                host: PathBuf::from("/no/such/bramble/dir"),
                guest: "/data".into(),
                read_only: false,
            });
        });
        let (out, _) = crate::output::pipe(Box::new(std::io::sink()), 1024);
        let (err, _) = crate::output::pipe(Box::new(std::io::sink()), 1024);
        let Err(error) = spec.wasi_builder(out, err) else {
            panic!("missing directory accepted");
        };
        let message = error.to_string();
        assert!(
            message.contains("/no/such/bramble/dir") && message.contains("/data"),
            "{message}"
        );
    }
}
