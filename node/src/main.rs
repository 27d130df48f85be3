//! `bramble-node`: the node agent. `join` trades a join token for a node certificate and runs
//! the node; `run` runs a node that joined before (after a reboot, or while the control plane
//! is unreachable).

use std::path::PathBuf;

use bramble_node::credentials::{self, Credentials};
use bramble_node::run::{
    hostname, run_node, ContainerdOptions, NodeOptions, OnShutdown, WasmCompile, WasmRuntime,
};
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

#[derive(Parser)]
#[command(
    name = "bramble-node",
    version,
    about = "Bramble's node agent: runs Wasm pods in wasmtime"
)]
struct Cli {
    /// Log filter: a level, and levels per module, e.g. "info" or "warn,bramble_node=debug".
    #[arg(long, env = "BRAMBLE_LOG", default_value = "info", global = true)]
    log_level: tracing_subscriber::filter::Targets,
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args)]
struct Common {
    /// Directory for credentials, desired state, images, compiled modules, pods and logs.
    #[arg(
        long,
        env = "BRAMBLE_NODE_DATA_DIR",
        default_value = "/var/lib/bramble-node"
    )]
    data_dir: PathBuf,
    /// Board profile reported to the control plane.
    #[arg(long, env = "BRAMBLE_BOARD", default_value = "generic")]
    board: String,
    /// Most pods this node runs.
    #[arg(long, env = "BRAMBLE_MAX_PODS", default_value_t = 110)]
    max_pods: u32,
    /// Address pods are reached on (Wasm pods share the node's network).
    #[arg(long, env = "BRAMBLE_NODE_IP", default_value = "127.0.0.1")]
    node_ip: String,
    /// What SIGTERM does with the pods: keep them for the next start, or stop them and
    /// report their final statuses.
    #[arg(long, env = "BRAMBLE_ON_SHUTDOWN", value_enum, default_value = "keep")]
    on_shutdown: OnShutdown,
    /// Disk budget of the image cache, in MiB.
    #[arg(long, env = "BRAMBLE_IMAGE_BUDGET_MIB", default_value_t = 1024)]
    image_budget_mib: u64,
    /// containerd's socket: the node then also runs OCI containers (runc) and, when containerd
    /// finds containerd-shim-bramble-v1, Wasm through containerd.
    #[arg(long, env = "BRAMBLE_CONTAINERD_SOCKET")]
    containerd_socket: Option<PathBuf>,
    /// The containerd namespace the node's containers live in.
    #[arg(long, env = "BRAMBLE_CONTAINERD_NAMESPACE", default_value = "bramble")]
    containerd_namespace: String,
    /// Where Wasm pods that name no RuntimeClass run: in the agent, or through containerd and
    /// Bramble's shim.
    #[arg(
        long,
        env = "BRAMBLE_WASM_RUNTIME",
        value_enum,
        default_value = "in-process"
    )]
    wasm_runtime: WasmRuntime,
    /// Who compiles Wasm modules: the node, or the control plane for this node's target
    /// (default: the node, unless this build has no compiler).
    #[arg(long, env = "BRAMBLE_WASM_COMPILE", value_enum)]
    wasm_compile: Option<WasmCompile>,
    /// The subnet container pods get their IPs from (one per node).
    #[arg(long, env = "BRAMBLE_POD_CIDR", default_value = "10.88.0.0/16")]
    pod_cidr: String,
    /// The bridge container pods are attached to.
    #[arg(long, env = "BRAMBLE_POD_BRIDGE", default_value = "bramble0")]
    pod_bridge: String,
}

#[derive(Subcommand)]
enum Command {
    /// Join a cluster with a token from `bramble token create`, then run.
    Join {
        /// The control plane, https://HOST:6443.
        #[arg(long, env = "BRAMBLE_SERVER")]
        server: String,
        /// The join token.
        #[arg(long, env = "BRAMBLE_TOKEN")]
        token: String,
        /// The node's name (default: the host name).
        #[arg(long, env = "BRAMBLE_NODE_NAME")]
        name: Option<String>,
        #[command(flatten)]
        common: Common,
    },
    /// Run a node that has joined before.
    Run {
        #[command(flatten)]
        common: Common,
    },
    /// Simulate a fleet of hollow nodes through the real node protocol, for scale tests and
    /// benchmarks. Control on stdin: `<silent|not-ready|resume> <node|all>`.
    Simulate {
        /// The control plane, https://HOST:6443.
        #[arg(long, env = "BRAMBLE_SERVER")]
        server: String,
        /// A join token (every hollow node joins with it).
        #[arg(long, env = "BRAMBLE_TOKEN")]
        token: String,
        /// How many nodes.
        #[arg(long, default_value_t = 10)]
        count: usize,
        /// Node names are `<prefix>-<index>`.
        #[arg(long, default_value = "hollow")]
        prefix: String,
        /// The nodes' architecture (kubernetes.io/arch).
        #[arg(long, default_value = "amd64")]
        arch: String,
        /// Runtimes the nodes offer, comma-separated (wasm, containerd).
        #[arg(long, default_value = "wasm", value_delimiter = ',')]
        runtimes: Vec<String>,
        /// CPU capacity of each node.
        #[arg(long, default_value = "4")]
        cpu: String,
        /// Memory capacity of each node.
        #[arg(long, default_value = "8Gi")]
        memory: String,
        /// Most pods per node.
        #[arg(long, default_value_t = 110)]
        max_pods: u32,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // A per-target filter, not EnvFilter: EnvFilter brings a regex engine (about 300 KB of
    // the board binary) for span-field filters the agent never needs.
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_filter(cli.log_level.clone()),
        )
        .init();
    // Boards have 1-4 cores: a small runtime; Wasm guests yield at epoch ticks.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(std::thread::available_parallelism().map_or(2, |n| n.get().min(4)))
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("bramble-node: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bramble-node: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    {
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("shutting down");
            shutdown.cancel();
        });
    }
    let (credentials, common) = match command {
        Command::Simulate {
            server,
            token,
            count,
            prefix,
            arch,
            runtimes,
            cpu,
            memory,
            max_pods,
        } => {
            let options = bramble_node::hollow::FleetOptions {
                server,
                token,
                count,
                prefix,
                arch,
                runtimes,
                cpu,
                memory,
                max_pods,
            };
            return Ok(bramble_node::hollow::run_fleet(options, shutdown).await?);
        }
        Command::Join {
            server,
            token,
            name,
            common,
        } => {
            let name = name.unwrap_or_else(hostname);
            let credentials = match Credentials::load(&common.data_dir)? {
                // Joined before: the token may have expired since, and is not needed.
                Some(c) if c.server == server.trim_end_matches('/') && c.node_name == name => c,
                _ => credentials::join(&server, &token, &name, &common.data_dir).await?,
            };
            eprintln!("bramble-node: node {name} joined {server}");
            (credentials, common)
        }
        Command::Run { common } => {
            let credentials = Credentials::load(&common.data_dir)?.ok_or_else(|| {
                anyhow::anyhow!(
                    "{} holds no credentials: join first with `bramble-node join --server URL --token TOKEN`",
                    common.data_dir.display()
                )
            })?;
            (credentials, common)
        }
    };
    let containerd = common.containerd_socket.map(|socket| ContainerdOptions {
        socket,
        namespace: common.containerd_namespace,
        wasm_through_shim: common.wasm_runtime == WasmRuntime::Containerd,
        pod_cidr: common.pod_cidr,
        bridge: common.pod_bridge,
    });
    let options = NodeOptions {
        data_dir: common.data_dir,
        board: common.board,
        max_pods: common.max_pods,
        host_ip: common.node_ip,
        image_budget: common.image_budget_mib.saturating_mul(1024 * 1024),
        on_shutdown: common.on_shutdown,
        containerd,
        wasm_compile: common
            .wasm_compile
            .unwrap_or_else(WasmCompile::default_for_build),
    };
    run_node(credentials, options, shutdown).await
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
