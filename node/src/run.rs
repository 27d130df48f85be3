//! Running a joined node until shutdown: the agent's sync loop plus the connection to the
//! control plane. Used by `bramble-node` and by `bramble up` (which runs a node in-process).

use std::path::PathBuf;

use tokio_util::sync::CancellationToken;

use crate::agent::{Agent, AgentConfig};
use crate::credentials::Credentials;
use crate::oci::client::{ClientConfig, RegistryClient};

/// Settings of a node besides its credentials.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    /// Data directory.
    pub data_dir: PathBuf,
    /// Board profile.
    pub board: String,
    /// Most pods.
    pub max_pods: u32,
    /// Address pods are reached on.
    pub host_ip: String,
    /// Image cache budget in bytes.
    pub image_budget: u64,
    /// What a shutdown does with the pods.
    pub on_shutdown: OnShutdown,
    /// containerd, on nodes that run containers.
    pub containerd: Option<ContainerdOptions>,
    /// Who compiles the Wasm modules this node runs.
    pub wasm_compile: WasmCompile,
}

/// Who compiles a Wasm module the first time a node runs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WasmCompile {
    /// The node itself (Cranelift in the agent): needs a build with the `compiler` feature.
    Local,
    /// The control plane, for this node's target; the node keeps the artifact. A board without
    /// the compiler has a smaller binary and never spends its CPU compiling.
    ControlPlane,
}

impl WasmCompile {
    /// `Local` when this build has the compiler, else `ControlPlane`.
    pub fn default_for_build() -> Self {
        if bramble_wasm_shim::cache::ModuleCache::can_compile() {
            Self::Local
        } else {
            Self::ControlPlane
        }
    }
}

/// How a node reaches containerd and networks its container pods.
#[derive(Debug, Clone)]
pub struct ContainerdOptions {
    /// containerd's gRPC socket.
    pub socket: PathBuf,
    /// The containerd namespace of the node's containers.
    pub namespace: String,
    /// Wasm pods that name no RuntimeClass run through containerd and Bramble's shim.
    pub wasm_through_shim: bool,
    /// The pod subnet of this node.
    pub pod_cidr: String,
    /// The bridge pods are attached to.
    pub bridge: String,
}

/// Where Wasm pods that name no RuntimeClass run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WasmRuntime {
    /// In the agent's own process (wasmtime): the lightest.
    InProcess,
    /// Through containerd and containerd-shim-bramble-v1.
    Containerd,
}

/// What the agent does with its pods when it is asked to stop (SIGTERM).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OnShutdown {
    /// Leave them to the next start: the instances end with the process (Wasm runs in it) and
    /// the control plane is not told, so the pods show no change across an agent upgrade or
    /// restart; the next start runs them again from the desired state on disk.
    Keep,
    /// Stop every container and report the pods' final statuses before exiting.
    Stop,
}

/// Runs the node with `credentials` until `shutdown`.
pub async fn run_node(
    credentials: Credentials,
    options: NodeOptions,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut identity = credentials.cert_pem.clone().into_bytes();
    identity.extend_from_slice(credentials.key_pem.as_bytes());
    let registry = RegistryClient::new(ClientConfig {
        ca_pem: Some(credentials.ca_pem.clone().into_bytes()),
        identity_pem: Some(identity),
        ..ClientConfig::default()
    })?;
    let config = AgentConfig {
        data_dir: options.data_dir.clone(),
        node_name: credentials.node_name.clone(),
        board: options.board.clone(),
        max_pods: options.max_pods,
        host_ip: options.host_ip.clone(),
        image_budget: options.image_budget,
        log_max_bytes: 10 * 1024 * 1024,
        log_max_files: 3,
        containerd: options.containerd.clone(),
        wasm_compile: options.wasm_compile,
    };
    let (agent, events) = Agent::open(config, registry).await?;
    // The connection outlives the sync loop by the drain, so final statuses reach the server.
    let stop_loop = CancellationToken::new();
    let sync = tokio::spawn(agent.clone().run(events, stop_loop.clone()));
    let connection_stop = CancellationToken::new();
    let connection = tokio::spawn(crate::connection::run(
        agent.clone(),
        credentials,
        connection_stop.clone(),
    ));
    shutdown.cancelled().await;
    if options.on_shutdown == OnShutdown::Stop {
        agent.stop_pods(std::time::Duration::from_secs(10)).await;
    }
    stop_loop.cancel();
    connection_stop.cancel();
    let _ = connection.await;
    let _ = sync.await;
    Ok(())
}

/// The node's host name, the default node name.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_lowercase())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "node".into())
}
