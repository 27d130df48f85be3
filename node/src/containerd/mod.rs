//! The node's second runtime: Linux containers run by containerd (1.6 and later) through its
//! gRPC API, with runc (or another shim) underneath.
//!
//! The agent's image cache pulls and verifies images; [`Containerd::ensure_image`] copies them
//! into containerd's content store and unpacks them into snapshots, so containerd never talks
//! to a registry. Containers are created from a [`LaunchSpec`] the agent derives from the Pod;
//! this layer turns it into an OCI runtime spec (see `spec.rs`), and drives the task's life:
//! create, start, wait, kill, exec, remove, and list (to re-adopt containers after a restart).
//!
//! Everything lives in one containerd namespace (`bramble` by default), so `ctr -n bramble`
//! shows exactly what the node runs.

mod connection;
mod content;
mod error;
mod events;
mod exec;
mod image;
mod io;
mod lifecycle;
mod list;
mod spec;
#[cfg(test)]
mod spec_tests;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::SystemTime;

pub use connection::Containerd;
pub use error::ContainerdError;
pub use exec::{ExecHandle, ExecIo};
pub use image::ImageConfig;
pub(crate) use io::unique_suffix;
pub use io::{make_fifo, open_fifo_reader};
pub use spec::{container_args, merge_env};

/// The runc shim, for Linux containers.
pub const RUNC_RUNTIME: &str = "io.containerd.runc.v2";
/// Bramble's own shim, for Wasm workloads run through containerd.
pub const BRAMBLE_RUNTIME: &str = "io.containerd.bramble.v1";

/// Where containerd is and how the node uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerdConfig {
    /// containerd's gRPC socket (`/run/containerd/containerd.sock`).
    pub socket: PathBuf,
    /// The containerd namespace every object of this node lives in (`bramble`).
    pub namespace: String,
    /// The snapshotter images are unpacked with and containers' root file systems come from
    /// (`overlayfs`).
    pub snapshotter: String,
    /// A directory this layer owns: one subdirectory per container holds the generated
    /// `/etc/hosts`, `/etc/resolv.conf` and `/etc/hostname` and the record of FIFOs it created.
    pub state_dir: PathBuf,
}

impl ContainerdConfig {
    /// The usual settings: the given socket and state directory, namespace `bramble`,
    /// snapshotter `overlayfs`.
    pub fn new(socket: impl Into<PathBuf>, state_dir: impl Into<PathBuf>) -> Self {
        Self {
            socket: socket.into(),
            namespace: "bramble".to_owned(),
            snapshotter: "overlayfs".to_owned(),
            state_dir: state_dir.into(),
        }
    }
}

/// An image present in containerd's content store and unpacked into snapshots.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnpackedImage {
    /// The image record's name (the reference string).
    pub name: String,
    /// The chain id of the top layer: the committed snapshot containers start from.
    pub chain_id: String,
    /// What the image says about how to run it.
    pub config: ImageConfig,
}

/// A host path bind-mounted into a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindMount {
    /// The file or directory on the host.
    pub host: PathBuf,
    /// The absolute path inside the container.
    pub container: String,
    /// Mounted read-only.
    pub read_only: bool,
}

/// Everything needed to create one container. See [`container_args`] and [`merge_env`] for
/// the argv and environment rules.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LaunchSpec {
    /// The container's id in containerd (also its snapshot key and cgroup name).
    pub id: String,
    /// Labels stored on the container record (read back by [`Containerd::list`]).
    pub labels: BTreeMap<String, String>,
    /// The image, from [`Containerd::ensure_image`].
    pub image: UnpackedImage,
    /// The final argv; must not be empty.
    pub args: Vec<String>,
    /// The final environment, in order.
    pub env: Vec<(String, String)>,
    /// The working directory; `None` uses the image's, else `/`.
    pub working_dir: Option<String>,
    /// uid and gid; `None` uses the image's `User` when it is numeric, else root.
    pub user: Option<(u32, u32)>,
    /// Additional gids of the process.
    pub supplemental_groups: Vec<u32>,
    /// Mount the root file system read-only.
    pub read_only_root: bool,
    /// Memory limit in bytes (swap is limited to the same figure, so the OOM killer acts).
    pub memory_limit: Option<u64>,
    /// CPU limit in millicores (a CFS quota over a 100 ms period).
    pub cpu_millis_limit: Option<u64>,
    /// CPU shares (relative weight).
    pub cpu_shares: Option<u64>,
    /// Bind mounts, in order.
    pub mounts: Vec<BindMount>,
    /// Join this network namespace; `None` gives the container a new one with only `lo`.
    pub netns: Option<PathBuf>,
    /// The container's host name.
    pub hostname: String,
    /// File bind-mounted as `/etc/hosts`; `None` generates one under the state directory.
    pub hosts_file: Option<PathBuf>,
    /// File bind-mounted as `/etc/resolv.conf`; `None` copies the host's.
    pub resolv_conf: Option<PathBuf>,
    /// FIFO the container's stdout is written to (created if missing).
    pub stdout: PathBuf,
    /// FIFO the container's stderr is written to (created if missing).
    pub stderr: PathBuf,
    /// containerd runtime name, [`RUNC_RUNTIME`] or [`BRAMBLE_RUNTIME`]; empty means runc.
    pub runtime: String,
    /// OCI annotations of the runtime spec.
    pub annotations: BTreeMap<String, String>,
}

/// How a task's init process (or an exec'd process) ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskExit {
    /// Exit status; 128 + signal number when killed by a signal.
    pub code: u32,
    /// When it exited, as containerd recorded it.
    pub exited_at: Option<SystemTime>,
    /// The kernel's OOM killer acted in the container's memory cgroup.
    pub oom_killed: bool,
}

/// A container found in the namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExistingContainer {
    /// Its id.
    pub id: String,
    /// Its labels (those of [`LaunchSpec::labels`]).
    pub labels: BTreeMap<String, String>,
    /// Its task, if it has one.
    pub task: Option<TaskState>,
}

/// The state of a container's task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskState {
    /// Created, not started.
    Created,
    /// Running.
    Running {
        /// The init process's pid on the host.
        pid: u32,
    },
    /// Exited (not yet deleted).
    Stopped {
        /// Its exit status.
        code: u32,
        /// When it exited.
        exited_at: Option<SystemTime>,
    },
    /// Paused (or pausing).
    Paused,
    /// containerd could not tell.
    Unknown,
}
