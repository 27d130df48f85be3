//! The pod network's error type.

use std::path::PathBuf;

/// Why a pod could not be attached to or detached from the node's pod network.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    /// A CNI plugin the network needs is in none of the plugin directories.
    #[error(
        "cni plugin {plugin:?} not found in {dirs:?}; install the plugins with \
         `apt-get install -y containernetworking-plugins`"
    )]
    PluginMissing {
        /// The plugin's type, e.g. `bridge`.
        plugin: String,
        /// The directories searched.
        dirs: Vec<PathBuf>,
    },
    /// A field of the network configuration is unusable.
    #[error("pod network config: {field} {value:?}: {reason}")]
    InvalidConfig {
        /// The field, e.g. `subnet`.
        field: &'static str,
        /// Its value.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A pod identity or port mapping cannot be handed to the plugins.
    #[error("pod {pod}: {field} {value:?}: {reason}")]
    InvalidPod {
        /// The pod's uid as given.
        pod: String,
        /// The field, e.g. `uid` or `protocol`.
        field: &'static str,
        /// Its value.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A state file or directory could not be read or written.
    #[error("pod network: cannot {action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A cached attachment is not valid JSON of the expected shape.
    #[error("pod network: cached attachment {path} is corrupt: {source}")]
    Cache {
        /// The cache file.
        path: PathBuf,
        /// The parse error.
        source: serde_json::Error,
    },
    /// Creating, checking or removing a network namespace failed.
    #[error("pod {pod}: cannot {action} network namespace {path}: {source}")]
    Netns {
        /// The pod's uid.
        pod: String,
        /// What was being done.
        action: &'static str,
        /// The namespace's bind-mount file.
        path: PathBuf,
        /// The system call's error.
        source: nix::Error,
    },
    /// A plugin could not be started.
    #[error("pod {pod}: cannot run cni plugin {plugin} ({command}): {source}")]
    PluginSpawn {
        /// The pod's uid.
        pod: String,
        /// The plugin's type.
        plugin: String,
        /// `ADD`, `DEL` or `CHECK`.
        command: &'static str,
        /// The spawn or pipe error.
        source: std::io::Error,
    },
    /// A plugin reported an error in the CNI error format.
    #[error(
        "pod {pod}: cni plugin {plugin} failed {command} with code {code}: {msg}{}",
        if details.is_empty() { String::new() } else { format!(" ({details})") }
    )]
    Plugin {
        /// The pod's uid.
        pod: String,
        /// The plugin's type.
        plugin: String,
        /// `ADD`, `DEL` or `CHECK`.
        command: &'static str,
        /// The CNI error code (1-99 are the spec's, 100+ the plugin's own).
        code: u32,
        /// The plugin's message.
        msg: String,
        /// The plugin's details, possibly empty.
        details: String,
    },
    /// A plugin failed without a CNI error on its stdout.
    #[error("pod {pod}: cni plugin {plugin} failed {command} ({status}): {output}")]
    PluginCrashed {
        /// The pod's uid.
        pod: String,
        /// The plugin's type.
        plugin: String,
        /// `ADD`, `DEL` or `CHECK`.
        command: &'static str,
        /// The exit status, as the system reports it.
        status: String,
        /// What it wrote to stdout and stderr, trimmed.
        output: String,
    },
    /// A plugin succeeded but its result is not a usable CNI result.
    #[error("pod {pod}: cni plugin {plugin} returned an unusable result: {reason}")]
    BadResult {
        /// The pod's uid.
        pod: String,
        /// The plugin's type.
        plugin: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A blocking network task died.
    #[error("pod network: a blocking task failed: {source}")]
    Task {
        /// The join error.
        source: tokio::task::JoinError,
    },
}

impl NetworkError {
    /// An [`NetworkError::Io`] for `path`.
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        NetworkError::Io {
            action,
            path: path.into(),
            source,
        }
    }
}
