//! The node agent: applies the desired pods the control plane sends (kept on disk, so it works
//! offline), runs their containers as Wasm instances through a level-triggered sync loop
//! (`sync.rs`, `start.rs`), reports their status like a kubelet, and serves the streams the
//! control plane opens for logs, exec, attach and port-forward (`streams.rs`, `logs.rs`).

#[cfg(feature = "containerd")]
mod containers;
pub mod desired_store;
mod logs;
mod start;
mod streams;
mod sync;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::run::WasmCompile;
use bramble_api::node_protocol::node_gateway_client::NodeGatewayClient;
use bramble_api::node_protocol::{
    node_message, pod_change, DesiredPod, NodeAddress, NodeCondition, NodeInfo, NodeMessage,
    PodChange, PodChanges, PodEvent, PodSnapshot, PodStatusReport,
};
use bramble_wasm_shim::cache::ModuleCache;
use bramble_wasm_shim::engine::{EngineConfig, WasmEngine};
use bramble_wasm_shim::instance::Runner;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use tokio::sync::{mpsc, Notify};
use tonic::transport::Channel;

use self::desired_store::{DesiredStore, StoredPod};
use self::streams::Streams;
use self::sync::{Event, PodRuntime};
use crate::image_cache::ImageCache;
use crate::oci::client::RegistryClient;
use crate::pod::events::PodRef;

/// Version reported in Node.status.nodeInfo.kubeletVersion.
pub const AGENT_VERSION: &str = concat!("v", env!("CARGO_PKG_VERSION"), "-bramble");

/// Free places of the uplink's queue an event never takes: they stay for statuses, heartbeats
/// and stream data, which must get through.
const EVENT_HEADROOM: usize = 64;

/// Queues a pod event on `uplink` unless that would leave less than [`EVENT_HEADROOM`] free;
/// false when it was dropped. Events are best effort (the kubelet drops them too when its
/// broadcaster falls behind): the caller never waits and never retries.
pub(crate) fn offer_event(uplink: &mpsc::Sender<NodeMessage>, event: PodEvent) -> bool {
    let dropped = |event: &PodEvent| {
        tracing::debug!(uid = %event.pod_uid, reason = %event.reason, "pod event dropped: the uplink is full");
        false
    };
    if uplink.capacity() <= EVENT_HEADROOM {
        return dropped(&event);
    }
    let message = NodeMessage {
        kind: Some(node_message::Kind::PodEvent(event)),
    };
    match uplink.try_send(message) {
        Ok(()) => true,
        Err(e) => match e.into_inner().kind {
            Some(node_message::Kind::PodEvent(event)) => dropped(&event),
            _ => false,
        },
    }
}

/// How the agent is set up.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Where state, images, compiled modules, pods and logs live.
    pub data_dir: PathBuf,
    /// The node's name.
    pub node_name: String,
    /// Board profile reported to the control plane.
    pub board: String,
    /// Most pods the node accepts (status.allocatable.pods).
    pub max_pods: u32,
    /// The address pods are reached on (Wasm pods share the node's network).
    pub host_ip: String,
    /// Disk budget of the image cache, in bytes.
    pub image_budget: u64,
    /// Bytes of one container log file before it is rotated.
    pub log_max_bytes: u64,
    /// Log files kept per container.
    pub log_max_files: u32,
    /// containerd, on nodes that run containers.
    pub containerd: Option<crate::run::ContainerdOptions>,
    /// Who compiles Wasm modules.
    pub wasm_compile: crate::run::WasmCompile,
}

/// Why the agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// A directory could not be made or read.
    #[error("cannot use {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The Wasm engine, cache or image cache could not be set up.
    #[error("cannot set up the Wasm runtime: {0}")]
    Runtime(String),
    /// containerd or the pod network could not be set up.
    #[error("cannot use containerd: {0}")]
    Containerd(String),
}

/// A desired pod, parsed.
pub(crate) struct Desired {
    pub stored: StoredPod,
    pub pod: Pod,
    pub config_maps: BTreeMap<String, ConfigMap>,
    pub secrets: BTreeMap<String, Secret>,
    /// The pod's directory on the node: volumes, logs, last status.
    pub pod_dir: PathBuf,
}

impl Desired {
    fn parse(stored: StoredPod, data_dir: &std::path::Path) -> Result<Desired, String> {
        let pod: Pod = serde_json::from_value(stored.pod.clone()).map_err(|e| e.to_string())?;
        fn parse_all<T: serde::de::DeserializeOwned>(
            map: &BTreeMap<String, serde_json::Value>,
        ) -> BTreeMap<String, T> {
            map.iter()
                .filter_map(|(k, v)| Some((k.clone(), serde_json::from_value(v.clone()).ok()?)))
                .collect()
        }
        Ok(Desired {
            pod_dir: data_dir.join("pods").join(sync::safe_name(&stored.uid)),
            config_maps: parse_all(&stored.config_maps),
            secrets: parse_all(&stored.secrets),
            pod,
            stored,
        })
    }

    pub fn namespace(&self) -> &str {
        self.pod.metadata.namespace.as_deref().unwrap_or("default")
    }

    pub fn name(&self) -> &str {
        self.pod.metadata.name.as_deref().unwrap_or_default()
    }

    pub fn deleting(&self) -> bool {
        self.pod.metadata.deletion_timestamp.is_some()
    }

    /// The pod, as events name it.
    pub fn pod_ref(&self) -> PodRef {
        PodRef {
            namespace: self.namespace().to_string(),
            name: self.name().to_string(),
            uid: self.stored.uid.clone(),
        }
    }
}

/// Which pods need a sync pass: passes touch only these, so an event of one pod costs the same
/// with 1,000 pods on the node as with one.
#[derive(Default)]
pub(crate) struct Dirty {
    pub all: bool,
    pub pods: std::collections::HashSet<String>,
}

/// The agent. Shared between the sync loop, the connection and stream tasks.
pub struct Agent {
    pub(crate) config: AgentConfig,
    pub(crate) runner: Arc<Runner>,
    pub(crate) images: ImageCache,
    pub(crate) registry: RegistryClient,
    store: DesiredStore,
    revision: Mutex<u64>,
    pub(crate) desired: Mutex<HashMap<String, Arc<Desired>>>,
    pub(crate) pods: Mutex<HashMap<String, PodRuntime>>,
    uplink: Mutex<Option<mpsc::Sender<NodeMessage>>>,
    /// Held while a module is loaded, compiled or fetched (see `start::load_wasm`).
    pub(crate) loading: tokio::sync::Mutex<()>,
    /// The control plane's gateway, for precompiled modules (set while connected).
    pub(crate) gateway: Mutex<Option<NodeGatewayClient<Channel>>>,
    pub(crate) wake: Notify,
    /// Pods the next sync pass must look at (all of them when `all`).
    pub(crate) dirty: Mutex<Dirty>,
    /// When each pod next needs a pass without any event (back-off, probes, retries).
    pub(crate) deadlines: Mutex<HashMap<String, std::time::Instant>>,
    pub(crate) events: mpsc::UnboundedSender<Event>,
    /// Set by [`Agent::stop_pods`]: containers are stopped and not restarted.
    pub(crate) stopping: std::sync::atomic::AtomicBool,
    pub(crate) streams: Streams,
    /// containerd and the pod network, on nodes that run containers.
    #[cfg(feature = "containerd")]
    pub(crate) containerd: Option<containers::ContainerdRuntime>,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Agent {
    /// Opens the agent's state under `config.data_dir`; `registry` pulls images. Returns the
    /// agent and the receiver its sync loop ([`Agent::run`]) consumes.
    pub async fn open(
        config: AgentConfig,
        registry: RegistryClient,
    ) -> Result<(Arc<Agent>, mpsc::UnboundedReceiver<Event>), AgentError> {
        let io = |path: PathBuf| move |source| AgentError::Io { path, source };
        let dir = &config.data_dir;
        let store = DesiredStore::open(&dir.join("state")).map_err(io(dir.join("state")))?;
        std::fs::create_dir_all(dir.join("pods")).map_err(io(dir.join("pods")))?;
        let engine = WasmEngine::new(EngineConfig::default())
            .map_err(|e| AgentError::Runtime(e.to_string()))?;
        let cache = ModuleCache::open(engine.engine(), &dir.join("modules"))
            .map_err(|e| AgentError::Runtime(e.to_string()))?;
        let cache = match config.wasm_compile {
            WasmCompile::ControlPlane => cache.never_compile(),
            WasmCompile::Local if ModuleCache::can_compile() => cache,
            WasmCompile::Local => {
                return Err(AgentError::Runtime(
                    "this bramble-node was built without the Wasm compiler: modules can only be compiled by the control plane (--wasm-compile control-plane)".into(),
                ))
            }
        };
        let runner = Runner::new(engine, cache).map_err(|e| AgentError::Runtime(e.to_string()))?;
        let images = ImageCache::open(dir.join("images"), config.image_budget)
            .await
            .map_err(|e| AgentError::Runtime(e.to_string()))?;
        let (revision, stored) = store.load();
        let mut desired = HashMap::new();
        for pod in stored {
            match Desired::parse(pod, &config.data_dir) {
                Ok(d) => {
                    desired.insert(d.stored.uid.clone(), Arc::new(d));
                }
                Err(e) => tracing::warn!(error = %e, "skipping a stored pod that does not parse"),
            }
        }
        #[cfg(feature = "containerd")]
        let containerd = match &config.containerd {
            Some(options) => Some(open_containerd(options, &config.data_dir, &desired).await?),
            None => None,
        };
        #[cfg(not(feature = "containerd"))]
        if config.containerd.is_some() {
            return Err(AgentError::Containerd(
                "this bramble-node was built without containerd support (the `containerd` feature)"
                    .into(),
            ));
        }
        let (events, rx) = mpsc::unbounded_channel();
        let agent = Arc::new(Agent {
            config,
            runner: Arc::new(runner),
            images,
            registry,
            store,
            revision: Mutex::new(revision),
            desired: Mutex::new(desired),
            pods: Mutex::default(),
            uplink: Mutex::default(),
            gateway: Mutex::default(),
            loading: tokio::sync::Mutex::new(()),
            wake: Notify::new(),
            dirty: Mutex::new(Dirty {
                all: true,
                pods: Default::default(),
            }),
            deadlines: Mutex::default(),
            events,
            stopping: Default::default(),
            streams: Streams::default(),
            #[cfg(feature = "containerd")]
            containerd,
        });
        tracing::info!(
            pods = lock(&agent.desired).len(),
            revision,
            "desired state loaded from disk"
        );
        Ok((agent, rx))
    }

    /// Stops every container and reports the pods' final statuses (for `--on-shutdown stop`),
    /// waiting up to `grace` for them to end. The desired state stays on disk: a later start
    /// runs the pods again.
    pub async fn stop_pods(&self, grace: std::time::Duration) {
        self.stopping
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.mark_all();
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            let active = lock(&self.pods).values().any(|p| p.any_active());
            if !active || tokio::time::Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        // One more pass reports the ended containers; give the stream a moment to carry it.
        self.mark_all();
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }

    /// The revision of the last change applied.
    pub fn revision(&self) -> u64 {
        *lock(&self.revision)
    }

    /// What the node tells the control plane about itself.
    pub fn node_info(&self) -> NodeInfo {
        let read = |path: &str| {
            std::fs::read_to_string(path)
                .map(|s| s.trim().to_string())
                .unwrap_or_default()
        };
        let os_image = read("/etc/os-release")
            .lines()
            .find_map(|l| l.strip_prefix("PRETTY_NAME="))
            .map(|v| v.trim_matches('"').to_string())
            .unwrap_or_else(|| "Linux".into());
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let memory_ki = read("/proc/meminfo")
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or(0);
        let mut capacity = HashMap::new();
        capacity.insert("cpu".to_string(), cpus.to_string());
        capacity.insert("memory".to_string(), format!("{memory_ki}Ki"));
        capacity.insert("pods".to_string(), self.config.max_pods.to_string());
        NodeInfo {
            name: self.config.node_name.clone(),
            arch: crate::oci::manifest::go_arch(std::env::consts::ARCH).to_string(),
            os: std::env::consts::OS.to_string(),
            board: self.config.board.clone(),
            kernel_version: read("/proc/sys/kernel/osrelease"),
            os_image,
            agent_version: AGENT_VERSION.to_string(),
            allocatable: capacity.clone(),
            capacity,
            runtimes: self.runtimes(),
            addresses: vec![
                NodeAddress {
                    r#type: "InternalIP".into(),
                    address: self.config.host_ip.clone(),
                },
                NodeAddress {
                    r#type: "Hostname".into(),
                    address: self.config.node_name.clone(),
                },
            ],
            machine_id: read("/etc/machine-id"),
            boot_id: read("/proc/sys/kernel/random/boot_id"),
        }
    }

    /// The node's own conditions for heartbeats.
    pub fn conditions(&self) -> Vec<NodeCondition> {
        vec![NodeCondition {
            r#type: "Ready".into(),
            status: "True".into(),
            reason: "KubeletReady".into(),
            message: "bramble-node is posting ready status".into(),
        }]
    }

    /// Starts sending reports through `uplink`, beginning with every pod's current status.
    pub fn attach_uplink(&self, uplink: mpsc::Sender<NodeMessage>) {
        *lock(&self.uplink) = Some(uplink);
        for runtime in lock(&self.pods).values_mut() {
            runtime.reported = None;
        }
        self.mark_all();
    }

    /// Asks for a pass over one pod.
    pub(crate) fn mark(&self, uid: &str) {
        lock(&self.dirty).pods.insert(uid.to_string());
        self.wake.notify_one();
    }

    /// Asks for a pass over every pod.
    pub(crate) fn mark_all(&self) {
        lock(&self.dirty).all = true;
        self.wake.notify_one();
    }

    /// Stops sending reports (the stream is gone); they are recomputed on the next attach.
    pub fn detach_uplink(&self) {
        *lock(&self.uplink) = None;
        *lock(&self.gateway) = None;
    }

    /// The gateway client of the current connection, for calls besides the stream.
    pub fn attach_gateway(&self, client: NodeGatewayClient<Channel>) {
        *lock(&self.gateway) = Some(client);
    }

    /// Sends a report if connected; false when offline (the caller reports again later).
    pub(crate) fn report(&self, report: PodStatusReport) -> bool {
        let uplink = lock(&self.uplink).clone();
        match uplink {
            Some(tx) => tx
                .try_send(NodeMessage {
                    kind: Some(node_message::Kind::PodStatus(report)),
                })
                .is_ok(),
            None => false,
        }
    }

    /// Sends a kubelet-style event about a pod if connected and the uplink has room; otherwise
    /// it is dropped (unlike statuses, events are not recomputed later).
    pub(crate) fn send_event(&self, event: PodEvent) {
        let uplink = lock(&self.uplink).clone();
        if let Some(tx) = uplink {
            offer_event(&tx, event);
        }
    }

    /// Replaces the desired set with a snapshot.
    pub fn apply_snapshot(&self, snapshot: PodSnapshot) {
        let keep: std::collections::HashSet<String> =
            snapshot.pods.iter().map(|p| p.uid.clone()).collect();
        let gone: Vec<String> = lock(&self.desired)
            .keys()
            .filter(|uid| !keep.contains(*uid))
            .cloned()
            .collect();
        for uid in gone {
            self.remove_desired(&uid);
        }
        for pod in snapshot.pods {
            self.upsert_desired(pod);
        }
        self.set_revision(snapshot.revision);
        self.mark_all();
    }

    /// Applies what a reconnecting node missed.
    pub fn apply_changes(&self, changes: PodChanges) {
        for change in changes.changes {
            self.apply_one(change);
        }
        self.set_revision(changes.revision);
    }

    /// Applies one change.
    pub fn apply_change(&self, change: PodChange) {
        let revision = change.revision;
        self.apply_one(change);
        self.set_revision(revision);
    }

    fn apply_one(&self, change: PodChange) {
        match change.change {
            Some(pod_change::Change::Upsert(pod)) => self.upsert_desired(pod),
            Some(pod_change::Change::RemovedUid(uid)) => self.remove_desired(&uid),
            None => {}
        }
    }

    fn upsert_desired(&self, pod: DesiredPod) {
        let parse = |map: HashMap<String, Vec<u8>>| {
            map.into_iter()
                .filter_map(|(k, v)| Some((k, serde_json::from_slice(&v).ok()?)))
                .collect()
        };
        let stored = StoredPod {
            uid: pod.uid,
            pod: match serde_json::from_slice(&pod.pod_json) {
                Ok(v) => v,
                Err(e) => {
                    tracing::warn!(error = %e, "the control plane sent a pod that is not JSON");
                    return;
                }
            },
            config_maps: parse(pod.config_maps),
            secrets: parse(pod.secrets),
            runtime_handler: pod.runtime_handler,
        };
        if lock(&self.desired)
            .get(&stored.uid)
            .is_some_and(|d| d.stored == stored)
        {
            return;
        }
        match Desired::parse(stored, &self.config.data_dir) {
            Ok(desired) => {
                if let Err(e) = self.store.put(&desired.stored) {
                    tracing::warn!(error = %e, "cannot store a desired pod on disk");
                }
                let uid = desired.stored.uid.clone();
                lock(&self.desired).insert(uid.clone(), Arc::new(desired));
                self.mark(&uid);
            }
            Err(e) => {
                tracing::warn!(error = %e, "the control plane sent a pod that does not parse")
            }
        }
    }

    fn remove_desired(&self, uid: &str) {
        lock(&self.desired).remove(uid);
        self.mark(uid);
        if let Err(e) = self.store.remove(uid) {
            tracing::warn!(%uid, error = %e, "cannot remove a desired pod from disk");
        }
    }

    fn set_revision(&self, revision: u64) {
        let mut current = lock(&self.revision);
        if *current != revision {
            *current = revision;
            if let Err(e) = self.store.set_revision(revision) {
                tracing::warn!(error = %e, "cannot store the desired-state revision");
            }
        }
    }
}

impl Agent {
    /// The runtime handlers this node offers (the scheduler matches RuntimeClasses to them).
    fn runtimes(&self) -> Vec<String> {
        let mut runtimes = vec!["wasm".to_string()];
        if let Some(rt) = self.containerd_offer() {
            runtimes.push("runc".to_string());
            if rt.has_wasm_shim {
                runtimes.push("wasm-shim".to_string());
            }
        }
        runtimes
    }

    /// What the node's containerd offers; None when the node has none (or was built without
    /// the `containerd` feature) and runs only Wasm in its own process.
    pub(crate) fn containerd_offer(&self) -> Option<start::ContainerdOffer> {
        #[cfg(feature = "containerd")]
        return self.containerd.as_ref().map(|rt| start::ContainerdOffer {
            has_wasm_shim: rt.has_wasm_shim,
            wasm_through_shim: rt.wasm_through_shim,
        });
        #[cfg(not(feature = "containerd"))]
        None
    }

    /// A container pod's IP on the pod network; Wasm pods have none of their own.
    pub(crate) fn pod_ip(&self, uid: &str) -> Option<String> {
        #[cfg(feature = "containerd")]
        return self.containerd.as_ref().and_then(|rt| rt.pod_ip(uid));
        #[cfg(not(feature = "containerd"))]
        {
            let _ = uid;
            None
        }
    }

    /// The running container an earlier agent process left in containerd for this pod's
    /// `container`, to adopt rather than start again (each is handed out once).
    #[cfg(feature = "containerd")]
    fn take_adoptable(&self, uid: &str, container: &str) -> Option<Adoptable> {
        self.containerd
            .as_ref()
            .and_then(|rt| rt.take_adoptable(uid, container))
    }

    /// Without containerd there is nothing to adopt.
    #[cfg(not(feature = "containerd"))]
    fn take_adoptable(&self, _uid: &str, _container: &str) -> Option<Adoptable> {
        None
    }
}

/// A running container found in containerd when the agent started.
#[derive(Debug, Clone)]
pub(crate) struct Adoptable {
    pub id: String,
    pub restart_count: i32,
}

#[cfg(feature = "containerd")]
/// Connects to containerd and the pod network and takes stock of what an earlier agent
/// process left there.
async fn open_containerd(
    options: &crate::run::ContainerdOptions,
    data_dir: &std::path::Path,
    desired: &HashMap<String, Arc<Desired>>,
) -> Result<containers::ContainerdRuntime, AgentError> {
    let failed = |what: &str, e: String| AgentError::Containerd(format!("{what}: {e}"));
    let client = crate::containerd::Containerd::connect(crate::containerd::ContainerdConfig {
        socket: options.socket.clone(),
        namespace: options.namespace.clone(),
        snapshotter: "overlayfs".to_string(),
        state_dir: data_dir.join("containerd"),
    })
    .await
    .map_err(|e| {
        failed(
            &format!("cannot reach {}", options.socket.display()),
            e.to_string(),
        )
    })?;
    let network = crate::network::PodNetwork::new(crate::network::PodNetworkConfig {
        plugin_dirs: vec!["/usr/lib/cni".into(), "/opt/cni/bin".into()],
        state_dir: data_dir.join("network"),
        bridge: options.bridge.clone(),
        subnet: options.pod_cidr.clone(),
        network_name: "bramble".to_string(),
    })
    .map_err(|e| failed("cannot set up the pod network", e.to_string()))?;
    containers::ContainerdRuntime::open(
        client,
        network,
        options.wasm_through_shim,
        wasm_shim_installed(),
        desired,
    )
    .await
    .map_err(|e| failed("cannot list its containers", e))
}

#[cfg(feature = "containerd")]
/// Whether containerd-shim-bramble-v1 is where containerd looks for shims: on PATH, or next to
/// this binary (as the release archive and the test build lay them out).
fn wasm_shim_installed() -> bool {
    const SHIM: &str = "containerd-shim-bramble-v1";
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join(SHIM)));
    let path = std::env::var_os("PATH").unwrap_or_default();
    beside
        .into_iter()
        .chain(std::env::split_paths(&path).map(|dir| dir.join(SHIM)))
        .any(|candidate| candidate.is_file())
}
