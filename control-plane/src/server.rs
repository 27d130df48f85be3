//! `bramble server`: opens the store, loads the PKI, fills the watch cache and serves the API
//! until the shutdown token fires.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::apiserver::auth::{Identity, TokenAuthenticator};
use crate::apiserver::{openapi, tls_config, ApiServer};
use crate::node_gateway::{GatewayConfig, NodeGateway};
use crate::pki::{Pki, ADMIN_GROUP, ADMIN_USER};
use crate::store::sqlite::SqliteStore;
use crate::store::Store;
use crate::watch_cache::WatchCache;
use bramble_api::node_protocol::node_gateway_server::NodeGatewayServer;

/// What the server needs to start.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Where the store, PKI and kubeconfig live.
    pub data_dir: PathBuf,
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Extra names and addresses for the serving certificate.
    pub tls_sans: Vec<String>,
    /// Changes kept in memory for resuming watches.
    pub watch_history: usize,
    /// Upstream registries the embedded registry mirrors (pull-through).
    pub registry_mirrors: Vec<crate::registry::Mirror>,
    /// Heartbeat and node-status timings.
    pub gateway: GatewayConfig,
    /// How the controllers and the scheduler run.
    pub controllers: crate::controllers::ControllerConfig,
    /// A shared etcd store instead of the embedded SQLite one.
    pub etcd: Option<EtcdConfig>,
}

/// Where the shared etcd store is.
#[derive(Debug, Clone, Default)]
pub struct EtcdConfig {
    /// Endpoints, `http://host:port` or `https://host:port`.
    pub endpoints: Vec<String>,
    /// Key prefix, so several clusters can share one etcd.
    pub prefix: Option<String>,
    /// CA certificate (PEM file) for https endpoints.
    pub ca: Option<PathBuf>,
    /// Client certificate and key (PEM files) for etcd's client certificate authentication.
    pub client: Option<(PathBuf, PathBuf)>,
}

/// Opens the store: etcd when configured, else SQLite in the data directory.
async fn open_store(config: &ServerConfig) -> anyhow::Result<Arc<dyn Store>> {
    let Some(etcd) = &config.etcd else {
        let store_path = config.data_dir.join("store.db");
        return Ok(Arc::new(SqliteStore::open(&store_path).with_context(
            || format!("cannot open the store at {}", store_path.display()),
        )?));
    };
    open_etcd(etcd).await
}

#[cfg(feature = "etcd")]
async fn open_etcd(etcd: &EtcdConfig) -> anyhow::Result<Arc<dyn Store>> {
    use crate::store::etcd::{EtcdStore, EtcdTls};
    let tls = match &etcd.ca {
        Some(ca) => Some(EtcdTls::from_files(
            ca,
            etcd.client
                .as_ref()
                .map(|(c, k)| (c.as_path(), k.as_path())),
        )?),
        None => None,
    };
    Ok(Arc::new(
        EtcdStore::connect(&etcd.endpoints, etcd.prefix.clone(), tls).await?,
    ))
}

#[cfg(not(feature = "etcd"))]
async fn open_etcd(_: &EtcdConfig) -> anyhow::Result<Arc<dyn Store>> {
    anyhow::bail!("this bramble was built without etcd support: build it with `--features etcd` (the etcd client needs protoc, Debian package protobuf-compiler)")
}

/// Parses `PREFIX=URL` (repositories under PREFIX are pulled through from URL; `http://` URLs
/// are used without TLS, for registries on loopback or a trusted LAN).
pub fn parse_mirror(spec: &str) -> Result<crate::registry::Mirror, String> {
    let (prefix, url) = spec
        .split_once('=')
        .ok_or_else(|| format!("registry mirror {spec:?} must be PREFIX=URL, e.g. docker.io=https://registry-1.docker.io"))?;
    if prefix.is_empty() || url.is_empty() {
        return Err(format!("registry mirror {spec:?} must be PREFIX=URL"));
    }
    Ok(crate::registry::Mirror {
        prefix: prefix.trim_end_matches('/').to_string(),
        upstream: url.trim_end_matches('/').to_string(),
        upstream_prefix: String::new(),
        insecure_plain_http: url.starts_with("http://"),
        credentials: None,
    })
}

/// Called once the server listens, with the address it got (the port may have been 0).
pub type OnReady = Box<dyn FnOnce(SocketAddr) + Send>;

/// Runs the control plane until `shutdown` is cancelled.
pub async fn run(
    config: ServerConfig,
    shutdown: CancellationToken,
    on_ready: Option<OnReady>,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.data_dir).with_context(|| {
        format!(
            "cannot create the data directory {}",
            config.data_dir.display()
        )
    })?;
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let local = listener.local_addr()?;

    let mut sans = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    if let Some(host) = hostname() {
        sans.push(host);
    }
    if !config.listen.ip().is_unspecified() && !config.listen.ip().is_loopback() {
        sans.push(config.listen.ip().to_string());
    }
    sans.extend(config.tls_sans.iter().cloned());
    sans.dedup();
    let pki = Pki::load_or_create(&config.data_dir, &sans)?;
    let host = if config.listen.ip().is_unspecified() {
        "127.0.0.1".to_string()
    } else {
        config.listen.ip().to_string()
    };
    let server_url = if host.contains(':') {
        format!("https://[{host}]:{}", local.port())
    } else {
        format!("https://{host}:{}", local.port())
    };
    let kubeconfig = config.data_dir.join("kubeconfig.yaml");
    pki.write_kubeconfig(&kubeconfig, &server_url)?;

    let store = open_store(&config).await?;
    let registry = Arc::new(
        crate::registry::Registry::open({
            let mut rc = crate::registry::RegistryConfig::new(config.data_dir.join("registry"));
            rc.mirrors = config.registry_mirrors.clone();
            rc
        })
        .context("cannot open the embedded registry")?,
    );
    let cache = WatchCache::new(config.watch_history);
    let feeder = tokio::spawn(cache.clone().feed(store.clone(), shutdown.clone()));

    let mut tokens = TokenAuthenticator::default();
    tokens.insert(
        pki.admin_token.clone(),
        Identity {
            user: ADMIN_USER.into(),
            groups: vec![ADMIN_GROUP.into()],
        },
    );
    let (events, event_rx) = crate::controllers::events::EventRecorder::new();
    let api = Arc::new(ApiServer {
        store,
        events,
        default_toleration_seconds: config.controllers.default_toleration_seconds,
        cache,
        tokens,
        openapi: openapi::build().context("cannot build the OpenAPI documents")?,
        advertise: format!("{host}:{}", local.port()),
        shutdown: shutdown.clone(),
        namespace_work: tokio::sync::Notify::new(),
        metrics: Default::default(),
        registry: registry.clone(),
        nodes: Arc::default(),
        ca_pem: pki.ca_pem.clone(),
    });
    api.ensure_system_namespaces()
        .await
        .map_err(|e| anyhow::anyhow!("cannot create the system namespaces: {e}"))?;
    api.ensure_builtin_runtime_classes()
        .await
        .map_err(|e| anyhow::anyhow!("cannot create the built-in RuntimeClass: {e}"))?;
    let cleaner = tokio::spawn(api.clone().run_namespace_cleaner());
    // Events are written by every control plane (nodes report through whichever they reach),
    // the controllers' only by the one running them.
    let event_writer = tokio::spawn(crate::controllers::events::run(
        api.clone(),
        event_rx,
        shutdown.clone(),
    ));
    let controllers = if config.controllers.leader_elect {
        let (api, controllers) = (api.clone(), config.controllers.clone());
        let election =
            crate::leader_election::ElectionConfig::new(crate::leader_election::identity());
        tokio::spawn(crate::leader_election::run(
            api.clone(),
            election,
            shutdown.clone(),
            move |term| crate::controllers::run(api.clone(), controllers.clone(), term),
        ))
    } else {
        tokio::spawn(crate::controllers::run(
            api.clone(),
            config.controllers.clone(),
            shutdown.clone(),
        ))
    };
    let registry_gc = tokio::spawn(collect_registry_garbage(registry, shutdown.clone()));

    let tls = tls_config(&pki.ca_pem, &pki.server_cert_pem, &pki.server_key_pem)?;
    let gateway = NodeGateway::new(
        api.clone(),
        Arc::new(pki),
        config.gateway.clone(),
        config.data_dir.join("precompiled"),
    );
    let monitor = gateway.spawn_monitor(shutdown.clone());
    // Precompile requests carry whole Wasm binaries, beyond gRPC's 4 MiB default.
    let grpc = NodeGatewayServer::new(gateway)
        .max_decoding_message_size(crate::node_gateway::precompile::MAX_WASM_BYTES);
    tracing::info!(address = %local, kubeconfig = %kubeconfig.display(), "API server listening");
    if let Some(ready) = on_ready {
        ready(local);
    }
    let served = api.clone().serve(listener, tls, grpc).await;
    shutdown.cancel();
    let _ = monitor.await;
    let _ = cleaner.await;
    let _ = event_writer.await;
    let _ = controllers.await;
    let _ = registry_gc.await;
    let _ = feeder.await;
    served
}

/// Frees unreferenced registry blobs and abandoned uploads once an hour.
async fn collect_registry_garbage(
    registry: Arc<crate::registry::Registry>,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(3600));
    tick.tick().await;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        match registry.collect_garbage().await {
            Ok(report) => tracing::info!(?report, "registry garbage collected"),
            Err(e) => tracing::warn!(error = %e, "registry garbage collection failed"),
        }
    }
}

fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
}
