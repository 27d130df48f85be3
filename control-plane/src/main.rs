//! `bramble`: the control plane binary.

use std::net::SocketAddr;
use std::path::PathBuf;

use bramble_control_plane::cli;
use bramble_control_plane::controllers::ControllerConfig;
use bramble_control_plane::node_gateway::GatewayConfig;
use bramble_control_plane::server::{run, EtcdConfig, ServerConfig};
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "bramble",
    version,
    about = "Bramble: a WebAssembly-native orchestrator for small boards, driven with kubectl"
)]
struct Cli {
    /// Log filter (tracing's EnvFilter syntax, e.g. "info" or "bramble_control_plane=debug").
    #[arg(long, env = "BRAMBLE_LOG", default_value = "info", global = true)]
    log_level: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Push, list and inspect images in the cluster's registry.
    Image {
        #[command(subcommand)]
        command: ImageCommand,
    },
    /// Run the control plane: the Kubernetes API over HTTPS on an embedded store.
    Server(ServerArgs),
    /// Run a whole cluster in one process: the control plane and a local node.
    Up(ServerArgs),
    /// Create, list and revoke join tokens for nodes.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
}

#[derive(clap::Args)]
struct ServerArgs {
    /// Directory for the store, the PKI and kubeconfig.yaml.
    #[arg(long, env = "BRAMBLE_DATA_DIR", default_value = "/var/lib/bramble")]
    data_dir: PathBuf,
    /// Address and port to listen on.
    #[arg(long, env = "BRAMBLE_LISTEN", default_value = "0.0.0.0:6443")]
    listen: SocketAddr,
    /// Extra DNS names or IP addresses for the serving certificate (repeatable).
    #[arg(long = "tls-san", env = "BRAMBLE_TLS_SAN", value_delimiter = ',')]
    tls_san: Vec<String>,
    /// How many recent changes are kept for resuming watches.
    #[arg(long, env = "BRAMBLE_WATCH_HISTORY", default_value_t = 10_000)]
    watch_history: usize,
    /// Pull-through mirror for the embedded registry, PREFIX=URL (repeatable): pulls of
    /// repositories under PREFIX that are not stored are fetched from URL.
    #[arg(long = "registry-mirror", env = "BRAMBLE_REGISTRY_MIRROR", value_delimiter = ',', value_parser = bramble_control_plane::server::parse_mirror)]
    registry_mirror: Vec<bramble_control_plane::registry::Mirror>,
    /// Seconds between writes of a node's unchanged status; 0 (the default) writes it only when
    /// a condition changes. Heartbeats stay in memory either way: an idle cluster writes
    /// nothing, which spares SD cards (lastHeartbeatTime then shows the last change).
    #[arg(long, env = "BRAMBLE_NODE_STATUS_INTERVAL", default_value_t = 0)]
    node_status_interval: u64,
    /// Seconds between a node's heartbeats (they stay in memory).
    #[arg(long, env = "BRAMBLE_NODE_HEARTBEAT", default_value_t = 10)]
    node_heartbeat: u64,
    /// Seconds without a heartbeat after which a node's Ready condition becomes Unknown.
    #[arg(long, env = "BRAMBLE_NODE_GRACE", default_value_t = 40)]
    node_grace: u64,
    /// Seconds a pod stays on a NotReady or unreachable node before it is evicted (the
    /// tolerationSeconds added to pods that do not set their own).
    #[arg(
        long,
        env = "BRAMBLE_DEFAULT_TOLERATION_SECONDS",
        default_value_t = 300
    )]
    default_toleration_seconds: i64,
    /// Concurrent reconciles per workload controller.
    #[arg(long, env = "BRAMBLE_CONTROLLER_WORKERS", default_value_t = 4)]
    controller_workers: usize,
    /// Run the controllers and the scheduler only while holding the Lease
    /// kube-system/bramble-controller-manager, for several control planes on one shared store.
    #[arg(long, env = "BRAMBLE_LEADER_ELECT")]
    leader_elect: bool,
    /// etcd endpoints (http:// or https://host:port, comma-separated) to use as the store
    /// instead of the embedded SQLite one, so several control planes can share it; implies
    /// --leader-elect. Needs a bramble built with `--features etcd`.
    #[arg(long, env = "BRAMBLE_ETCD_ENDPOINTS", value_delimiter = ',')]
    etcd_endpoints: Vec<String>,
    /// Key prefix in etcd, for several clusters on one etcd.
    #[arg(long, env = "BRAMBLE_ETCD_PREFIX")]
    etcd_prefix: Option<String>,
    /// CA certificate (PEM) of https etcd endpoints.
    #[arg(long, env = "BRAMBLE_ETCD_CA")]
    etcd_ca: Option<PathBuf>,
    /// Client certificate (PEM) for etcd, with --etcd-key.
    #[arg(long, env = "BRAMBLE_ETCD_CERT", requires = "etcd_key")]
    etcd_cert: Option<PathBuf>,
    /// Client key (PEM) for etcd, with --etcd-cert.
    #[arg(long, env = "BRAMBLE_ETCD_KEY", requires = "etcd_cert")]
    etcd_key: Option<PathBuf>,
}

impl ServerArgs {
    fn into_config(self) -> ServerConfig {
        let secs = std::time::Duration::from_secs;
        ServerConfig {
            data_dir: self.data_dir,
            listen: self.listen,
            tls_sans: self.tls_san,
            watch_history: self.watch_history,
            registry_mirrors: self.registry_mirror,
            gateway: GatewayConfig {
                status_interval: (self.node_status_interval > 0)
                    .then(|| secs(self.node_status_interval)),
                grace: secs(self.node_grace.max(2)),
                heartbeat: secs(self.node_heartbeat.max(1)),
                ..GatewayConfig::default()
            },
            controllers: ControllerConfig {
                workers: self.controller_workers.max(1),
                default_toleration_seconds: self.default_toleration_seconds.max(0),
                leader_elect: self.leader_elect || !self.etcd_endpoints.is_empty(),
            },
            etcd: (!self.etcd_endpoints.is_empty()).then(|| EtcdConfig {
                endpoints: self.etcd_endpoints,
                prefix: self.etcd_prefix,
                ca: self.etcd_ca,
                client: self.etcd_cert.zip(self.etcd_key),
            }),
        }
    }
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create a join token and print it for `bramble-node join --token`.
    Create(cli::token::CreateArgs),
    /// List join tokens.
    Ls(cli::token::LsArgs),
    /// Revoke a join token.
    Revoke(cli::token::RevokeArgs),
}

#[derive(Subcommand)]
enum ImageCommand {
    /// Push a .wasm module as an OCI artifact: `bramble image push hello.wasm samples/hello:v1`.
    Push(cli::image::PushArgs),
    /// List the repositories and tags in the cluster's registry.
    Ls(cli::image::LsArgs),
    /// Show an image's manifest, config and size.
    Inspect(cli::image::InspectArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&cli.log_level)
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    // Boards have 1-4 cores; two workers keep the API responsive without idle threads.
    let workers = std::thread::available_parallelism()
        .map(|n| n.get().min(4))
        .unwrap_or(2);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let shutdown = CancellationToken::new();
        let signals = shutdown.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("shutting down (send the signal again to force)");
            signals.cancel();
            wait_for_signal().await;
            std::process::exit(130);
        });
        match cli.command {
            Command::Image { command } => {
                let result = match command {
                    ImageCommand::Push(args) => cli::image::push(args).await,
                    ImageCommand::Ls(args) => cli::image::ls(args).await,
                    ImageCommand::Inspect(args) => cli::image::inspect(args).await,
                };
                result.map_err(|e| anyhow::anyhow!("{e}"))
            }
            Command::Server(args) => run(args.into_config(), shutdown, None).await,
            Command::Up(args) => bramble_control_plane::up::run(args.into_config(), shutdown).await,
            Command::Token { command } => match command {
                TokenCommand::Create(args) => cli::token::create(args).await,
                TokenCommand::Ls(args) => cli::token::ls(args).await,
                TokenCommand::Revoke(args) => cli::token::revoke(args).await,
            },
        }
    })
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
