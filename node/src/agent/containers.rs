//! Containers run through containerd (nodes started with `--containerd-socket`): OCI images
//! under runc, and Wasm under containerd with Bramble's shim. One task per container start, like
//! the in-process runtime's: the image goes into containerd, the pod gets its network
//! namespace, the container is created and started, and its exit (or OOM kill) is reported;
//! told to stop, it gets SIGTERM, the pod's grace period, then SIGKILL. Its output is copied
//! from containerd's FIFOs into the same rotated CRI log files as Wasm pods', so `kubectl logs`
//! reads both alike.
//!
//! Containers outlive the agent (they belong to containerd's shims): a restarted agent finds
//! them by their labels and adopts the running ones instead of starting them again.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bramble_wasm_shim::log::{LogStream, RotatingLog};
use k8s_openapi::api::core::v1::Container;
use time::OffsetDateTime;
use tokio::io::AsyncReadExt;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::sync::{Event, Launched, Stopper};
use super::{lock, Adoptable, Agent, Desired};
use crate::containerd::{
    container_args, make_fifo, merge_env, BindMount, Containerd, LaunchSpec, TaskState,
};
use crate::containerd::{ImageConfig, UnpackedImage};
use crate::image_cache::PulledImage;
use crate::network::{PodNetwork, PortMapping};
use crate::oci::manifest::ImageKind;
use crate::pod::container::ContainerState;
use crate::pod::events::{self, Happening};
use crate::pod::{container_sandbox, PodVolumes};

/// Labels the agent puts on its containers, to find them again after a restart.
const LABEL_POD_UID: &str = "bramble.dev/pod-uid";
const LABEL_POD: &str = "bramble.dev/pod";
const LABEL_CONTAINER: &str = "bramble.dev/container";
const LABEL_RESTART_COUNT: &str = "bramble.dev/restart-count";

/// Where a Wasm artifact's module is bound in a shim container, and its file name there.
const WASM_MODULE_DIR: &str = "/bramble/wasm";
const WASM_MODULE_FILE: &str = "module.wasm";

/// Grace period when the pod says none (the kubelet's default).
const DEFAULT_GRACE: Duration = Duration::from_secs(30);
/// Longest wait for the output copies to finish once the container exited.
const DRAIN: Duration = Duration::from_secs(2);

/// The containerd side of a node.
pub(crate) struct ContainerdRuntime {
    pub client: Containerd,
    pub network: PodNetwork,
    /// Wasm pods that name no RuntimeClass run through the shim too, not in the agent.
    pub wasm_through_shim: bool,
    /// Whether containerd can find Bramble's shim.
    pub has_wasm_shim: bool,
    /// Running containers of an earlier agent process, by (pod uid, container name), until
    /// the sync loop adopts them.
    adoptable: Mutex<HashMap<(String, String), Adoptable>>,
    /// Pod IPs by pod uid, of pods attached to the pod network.
    pod_ips: Mutex<HashMap<String, String>>,
}

impl ContainerdRuntime {
    /// Takes stock of what an earlier agent process left in containerd: running containers of
    /// pods still desired become adoptable; everything else is removed, with the network
    /// namespaces of pods no longer desired.
    pub async fn open(
        client: Containerd,
        network: PodNetwork,
        wasm_through_shim: bool,
        has_wasm_shim: bool,
        desired: &HashMap<String, Arc<Desired>>,
    ) -> Result<ContainerdRuntime, String> {
        let mut adoptable = HashMap::new();
        let existing = client.list().await.map_err(|e| e.to_string())?;
        for container in existing {
            let label = |key: &str| container.labels.get(key).cloned().unwrap_or_default();
            let (uid, name) = (label(LABEL_POD_UID), label(LABEL_CONTAINER));
            let running = matches!(container.task, Some(TaskState::Running { .. }));
            if running && desired.contains_key(&uid) && !name.is_empty() {
                tracing::info!(id = %container.id, %uid, container = %name, "adopting a running container");
                adoptable.insert(
                    (uid, name),
                    Adoptable {
                        id: container.id.clone(),
                        restart_count: label(LABEL_RESTART_COUNT).parse().unwrap_or(0),
                    },
                );
                continue;
            }
            // Ended while the agent was away, or of a pod gone since: its exit is not known,
            // so the sync loop treats the container as it treats a Wasm one that died with
            // the agent (restarted per the pod's policy).
            if let Err(e) = client.remove(&container.id).await {
                tracing::warn!(id = %container.id, error = %e, "cannot remove a leftover container");
            }
        }
        let mut pod_ips = HashMap::new();
        for uid in network.attached().map_err(|e| e.to_string())? {
            if desired.contains_key(&uid) {
                if let Ok(Some(attachment)) = network.lookup(&uid) {
                    pod_ips.insert(uid, attachment.ip.to_string());
                }
            } else if let Err(e) = network.detach(&uid).await {
                tracing::warn!(%uid, error = %e, "cannot remove a leftover pod network");
            }
        }
        Ok(ContainerdRuntime {
            client,
            network,
            wasm_through_shim,
            has_wasm_shim,
            adoptable: Mutex::new(adoptable),
            pod_ips: Mutex::new(pod_ips),
        })
    }

    /// A running container of an earlier agent process for this pod's container, once.
    pub fn take_adoptable(&self, uid: &str, container: &str) -> Option<Adoptable> {
        lock(&self.adoptable).remove(&(uid.to_string(), container.to_string()))
    }

    /// The pod's IP on the pod network, if it has one.
    pub fn pod_ip(&self, uid: &str) -> Option<String> {
        lock(&self.pod_ips).get(uid).cloned()
    }

    /// Releases a pod's network (the pod is gone from the node).
    pub async fn release_pod(&self, uid: &str) {
        let attached = lock(&self.pod_ips).remove(uid).is_some();
        if attached || self.network.lookup(uid).ok().flatten().is_some() {
            if let Err(e) = self.network.detach(uid).await {
                tracing::warn!(%uid, error = %e, "cannot release the pod network");
            }
        }
    }

    async fn attach(&self, desired: &Desired) -> Result<String, String> {
        let uid = &desired.stored.uid;
        if let Some(ip) = self.pod_ip(uid) {
            return Ok(ip);
        }
        let attachment = self
            .network
            .attach(
                uid,
                desired.namespace(),
                desired.name(),
                &port_mappings(desired),
            )
            .await
            .map_err(|e| e.to_string())?;
        let ip = attachment.ip.to_string();
        lock(&self.pod_ips).insert(uid.clone(), ip.clone());
        Ok(ip)
    }
}

/// The pod's hostPorts, for the portmap plugin.
fn port_mappings(desired: &Desired) -> Vec<PortMapping> {
    let containers = desired.pod.spec.iter().flat_map(|s| &s.containers);
    containers
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| {
            let host_port = u16::try_from(p.host_port?).ok().filter(|p| *p != 0)?;
            Some(PortMapping {
                host_port,
                container_port: u16::try_from(p.container_port).ok()?,
                protocol: p.protocol.as_deref().unwrap_or("TCP").to_lowercase(),
                host_ip: p.host_ip.clone(),
            })
        })
        .collect()
}

/// containerd's id of one start of a container.
fn container_id(uid: &str, container: &str, restart_count: i32) -> String {
    format!(
        "{}-{container}-{restart_count}",
        super::sync::safe_name(uid)
    )
}

/// The grace period of the pod's containers: the deletion's, else the spec's.
fn grace_period(desired: &Desired) -> Duration {
    let seconds = desired
        .pod
        .metadata
        .deletion_grace_period_seconds
        .or_else(|| {
            desired
                .pod
                .spec
                .as_ref()
                .and_then(|s| s.termination_grace_period_seconds)
        });
    seconds
        .and_then(|s| u64::try_from(s).ok())
        .map_or(DEFAULT_GRACE, Duration::from_secs)
}

/// What one container start needs besides the agent.
pub(crate) struct Start {
    pub desired: Arc<Desired>,
    pub container: Container,
    pub volumes: PodVolumes,
    pub attempt: u64,
    pub restart_count: i32,
    pub stop: Stopper,
    pub image: PulledImage,
    pub reference: String,
    pub image_id: String,
    pub runtime: super::start::ContainerdRuntime,
}

impl Agent {
    /// Creates, starts and watches one container through containerd.
    pub(crate) async fn run_in_containerd(
        self: &Arc<Self>,
        start: Start,
        record: &(dyn Fn(Happening) + Sync),
    ) -> Event {
        let Some(rt) = self.containerd.as_ref() else {
            return start.failed("CreateContainerError", "this node has no containerd".into());
        };
        let uid = start.desired.stored.uid.clone();
        let id = container_id(&uid, &start.container.name, start.restart_count);
        let pod_ip = match rt.attach(&start.desired).await {
            Ok(ip) => ip,
            Err(e) => {
                record(events::start_failed("CreateContainerError", &e));
                return start.failed(
                    "CreateContainerError",
                    format!("cannot set up the pod network: {e}"),
                );
            }
        };
        let spec = match self.launch_spec(rt, &start, &id, &pod_ip).await {
            Ok(spec) => spec,
            Err((reason, message)) => {
                record(events::start_failed(reason, &message));
                return start.failed(reason, message);
            }
        };
        let copying = match self.copy_output(&start, &spec) {
            Ok(copying) => copying,
            Err(e) => return start.failed("RunContainerError", e),
        };
        // A container of the same id may be left from a start that failed half way.
        let _ = rt.client.remove(&id).await;
        if let Err(e) = rt.client.create(&spec).await {
            copying.abort();
            record(events::start_failed("CreateContainerError", &e.to_string()));
            return start.failed("CreateContainerError", e.to_string());
        }
        record(events::created(&start.container.name));
        if let Err(e) = rt.client.start(&id).await {
            copying.abort();
            let _ = rt.client.remove(&id).await;
            record(events::start_failed("RunContainerError", &e.to_string()));
            return start.failed("RunContainerError", e.to_string());
        }
        record(events::started(&start.container.name));
        let _ = self.events.send(start.started(&id));
        self.watch(rt, start, id, Some(copying)).await
    }

    /// Watches a running container an earlier agent process started.
    pub(crate) async fn adopt_in_containerd(self: &Arc<Self>, start: Start, id: String) -> Event {
        let Some(rt) = self.containerd.as_ref() else {
            return start.failed("CreateContainerError", "this node has no containerd".into());
        };
        let copying = self.reopen_output(&start, &id);
        let _ = self.events.send(start.started(&id));
        self.watch(rt, start, id, copying).await
    }

    async fn watch(
        &self,
        rt: &ContainerdRuntime,
        start: Start,
        id: String,
        copying: Option<Output>,
    ) -> Event {
        let started_at = OffsetDateTime::now_utc();
        let exit = tokio::select! {
            exit = rt.client.wait(&id) => exit,
            _ = start.stop.cancel.cancelled() => {
                let _ = rt.client.kill(&id, 15).await;
                match tokio::time::timeout(grace_period(&start.desired), rt.client.wait(&id)).await {
                    Ok(exit) => exit,
                    Err(_) => {
                        let _ = rt.client.kill(&id, 9).await;
                        rt.client.wait(&id).await
                    }
                }
            }
        };
        if let Some(copying) = copying {
            copying.finish().await;
        }
        let state = match exit {
            Ok(exit) => {
                let code = i32::try_from(exit.code).unwrap_or(i32::MAX);
                let reason = if exit.oom_killed {
                    "OOMKilled"
                } else if code == 0 {
                    "Completed"
                } else {
                    "Error"
                };
                ContainerState::Terminated {
                    exit_code: code,
                    reason: reason.into(),
                    message: None,
                    started_at,
                    finished_at: exit
                        .exited_at
                        .map(OffsetDateTime::from)
                        .unwrap_or_else(OffsetDateTime::now_utc),
                }
            }
            Err(e) => ContainerState::Terminated {
                exit_code: 128,
                reason: "Error".into(),
                message: Some(format!("lost track of the container: {e}")),
                started_at,
                finished_at: OffsetDateTime::now_utc(),
            },
        };
        if let Err(e) = rt.client.remove(&id).await {
            tracing::warn!(%id, error = %e, "cannot remove an ended container");
        }
        remove_fifos(&self.fifo_dir(&start.desired.stored.uid), &id);
        start.exited(state)
    }

    async fn launch_spec(
        &self,
        rt: &ContainerdRuntime,
        start: &Start,
        id: &str,
        pod_ip: &str,
    ) -> Result<LaunchSpec, (&'static str, String)> {
        let wasm_artifact = start.image.kind == ImageKind::Wasm;
        let unpacked = if wasm_artifact {
            // containerd cannot unpack a Wasm layer (it is not a tar): the container starts
            // from an empty snapshot and the module is bound in (see `wasm_module_dir`).
            UnpackedImage {
                name: start.reference.clone(),
                chain_id: String::new(),
                config: ImageConfig::default(),
            }
        } else {
            rt.client
                .ensure_image(&start.reference, &start.image)
                .await
                .map_err(|e| ("CreateContainerError", e.to_string()))?
        };
        let mut env = self.pod_env(&start.desired);
        env.pod_ip = pod_ip;
        // The Wasm sandbox of the same spec resolves env (valueFrom) and volume mounts
        // exactly as for Wasm pods; a container gets the same values.
        let sandbox = container_sandbox(&env, &start.container, &start.volumes)
            .map_err(|e| ("CreateContainerConfigError", e.to_string()))?;
        let container = &start.container;
        let security = container.security_context.as_ref();
        let pod_security = start
            .desired
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.security_context.as_ref());
        let uid = security
            .and_then(|s| s.run_as_user)
            .or_else(|| pod_security.and_then(|s| s.run_as_user));
        let gid = security
            .and_then(|s| s.run_as_group)
            .or_else(|| pod_security.and_then(|s| s.run_as_group));
        let user = uid.map(|u| {
            (
                u32::try_from(u).unwrap_or(0),
                gid.and_then(|g| u32::try_from(g).ok()).unwrap_or(0),
            )
        });
        let fifos = self.fifo_dir(&start.desired.stored.uid);
        std::fs::create_dir_all(&fifos).map_err(|e| {
            (
                "RunContainerError",
                format!("cannot create {}: {e}", fifos.display()),
            )
        })?;
        let labels = BTreeMap::from([
            (LABEL_POD_UID.to_string(), start.desired.stored.uid.clone()),
            (
                LABEL_POD.to_string(),
                format!("{}/{}", start.desired.namespace(), start.desired.name()),
            ),
            (LABEL_CONTAINER.to_string(), container.name.clone()),
            (
                LABEL_RESTART_COUNT.to_string(),
                start.restart_count.to_string(),
            ),
        ]);
        let mut mounts: Vec<BindMount> = sandbox
            .preopens
            .iter()
            .map(|p| BindMount {
                host: p.host.clone(),
                container: p.guest.clone(),
                read_only: p.read_only,
            })
            .collect();
        let args = if wasm_artifact {
            let dir = self
                .wasm_module_dir(start)
                .map_err(|e| ("CreateContainerError", e))?;
            mounts.push(BindMount {
                host: dir,
                container: WASM_MODULE_DIR.to_string(),
                read_only: true,
            });
            // The shim runs the module args[0] names; the guest sees the pod's arguments.
            std::iter::once(format!("{WASM_MODULE_DIR}/{WASM_MODULE_FILE}"))
                .chain(sandbox.argv.iter().skip(1).cloned())
                .collect()
        } else {
            container_args(
                container.command.as_deref().unwrap_or_default(),
                container.args.as_deref().unwrap_or_default(),
                &unpacked.config,
            )
        };
        Ok(LaunchSpec {
            id: id.to_string(),
            labels,
            args,
            env: merge_env(&unpacked.config.env, &sandbox.env),
            working_dir: container.working_dir.clone(),
            user,
            supplemental_groups: pod_security
                .and_then(|s| s.supplemental_groups.clone())
                .unwrap_or_default()
                .into_iter()
                .filter_map(|g| u32::try_from(g).ok())
                .collect(),
            read_only_root: security
                .and_then(|s| s.read_only_root_filesystem)
                .unwrap_or(false),
            memory_limit: sandbox.limits.memory_bytes,
            cpu_millis_limit: sandbox.limits.cpu_millicores.map(u64::from),
            cpu_shares: None,
            mounts,
            netns: rt
                .network
                .lookup(&start.desired.stored.uid)
                .ok()
                .flatten()
                .map(|a| a.netns),
            hostname: start.desired.name().to_string(),
            stdout: fifos.join(format!("{id}.stdout")),
            stderr: fifos.join(format!("{id}.stderr")),
            runtime: match start.runtime {
                super::start::ContainerdRuntime::Runc => crate::containerd::RUNC_RUNTIME,
                super::start::ContainerdRuntime::WasmShim => crate::containerd::BRAMBLE_RUNTIME,
            }
            .to_string(),
            // Where the shim serves a wasi:http component (the container's first TCP port).
            annotations: BTreeMap::from([(
                "bramble.dev/http-port".to_string(),
                super::start::http_port(container).to_string(),
            )]),
            image: unpacked,
            ..LaunchSpec::default()
        })
    }

    /// A directory holding only the container's Wasm module (a hard link to the image cache's
    /// verified blob, or a copy across file systems), bound into a shim container.
    fn wasm_module_dir(&self, start: &Start) -> Result<PathBuf, String> {
        let module = start
            .image
            .module_path()
            .ok_or_else(|| format!("image {} holds no Wasm module", start.reference))?;
        let dir = self
            .pod_dir(&start.desired.stored.uid)
            .join("wasm")
            .join(&start.container.name);
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let target = dir.join(WASM_MODULE_FILE);
        let _ = std::fs::remove_file(&target);
        std::fs::hard_link(module, &target)
            .or_else(|_| std::fs::copy(module, &target).map(|_| ()))
            .map_err(|e| format!("cannot place the module in {}: {e}", dir.display()))?;
        Ok(dir)
    }

    /// The directory of a pod's FIFOs.
    pub(crate) fn fifo_dir(&self, uid: &str) -> PathBuf {
        self.pod_dir(uid).join("io")
    }

    /// Copies the container's stdout and stderr FIFOs into its log until both close.
    fn copy_output(&self, start: &Start, spec: &LaunchSpec) -> Result<Output, String> {
        let log = self.open_log(
            &start.desired.stored.uid,
            &start.container.name,
            start.restart_count,
        )?;
        for fifo in [&spec.stdout, &spec.stderr] {
            make_fifo(fifo).map_err(|e| e.to_string())?;
        }
        Ok(spawn_copies(log, spec.stdout.clone(), spec.stderr.clone()))
    }

    /// Reattaches to the FIFOs of a container an earlier agent process started.
    fn reopen_output(&self, start: &Start, id: &str) -> Option<Output> {
        let dir = self.fifo_dir(&start.desired.stored.uid);
        let (stdout, stderr) = (
            dir.join(format!("{id}.stdout")),
            dir.join(format!("{id}.stderr")),
        );
        if !stdout.exists() || !stderr.exists() {
            return None;
        }
        let log = self
            .open_log(
                &start.desired.stored.uid,
                &start.container.name,
                start.restart_count,
            )
            .ok()?;
        Some(spawn_copies(log, stdout, stderr))
    }
}

impl Start {
    fn failed(&self, reason: &str, message: String) -> Event {
        Event::StartFailed {
            uid: self.desired.stored.uid.clone(),
            container: self.container.name.clone(),
            attempt: self.attempt,
            reason: reason.to_string(),
            message,
        }
    }

    fn started(&self, id: &str) -> Event {
        Event::Started {
            uid: self.desired.stored.uid.clone(),
            container: self.container.name.clone(),
            attempt: self.attempt,
            launched: Launched::Container { id: id.to_string() },
            image_id: self.image_id.clone(),
        }
    }

    fn exited(&self, state: ContainerState) -> Event {
        Event::Exited {
            uid: self.desired.stored.uid.clone(),
            container: self.container.name.clone(),
            attempt: self.attempt,
            state,
        }
    }
}

fn remove_fifos(dir: &Path, id: &str) {
    for stream in ["stdout", "stderr"] {
        let _ = std::fs::remove_file(dir.join(format!("{id}.{stream}")));
    }
}

/// The copies of a container's output into its log.
pub(crate) struct Output {
    exited: CancellationToken,
    task: JoinHandle<()>,
}

impl Output {
    /// The container exited: copy what is left in the FIFOs, then stop.
    async fn finish(self) {
        self.exited.cancel();
        let abort = self.task.abort_handle();
        if tokio::time::timeout(DRAIN, self.task).await.is_err() {
            abort.abort();
        }
    }

    /// The container never started.
    fn abort(self) {
        self.task.abort();
    }
}

/// Copies both FIFOs into the log until the container exits.
fn spawn_copies(log: Arc<RotatingLog>, stdout: PathBuf, stderr: PathBuf) -> Output {
    let exited = CancellationToken::new();
    let task = {
        let exited = exited.clone();
        tokio::spawn(async move {
            let out = copy_fifo(stdout, log.writer(LogStream::Stdout), &exited);
            let err = copy_fifo(stderr, log.writer(LogStream::Stderr), &exited);
            tokio::join!(out, err);
        })
    };
    Output { exited, task }
}

async fn copy_fifo(path: PathBuf, mut sink: impl Write + Send, exited: &CancellationToken) {
    // Opened for reading and writing, so that the FIFO never reads as closed while the shim
    // has not opened it yet (or between writers across an agent restart). The end is told
    // by `exited` instead; what is still buffered then is read before returning.
    let receiver = tokio::net::unix::pipe::OpenOptions::new()
        .read_write(true)
        .open_receiver(&path);
    let mut receiver = match receiver {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot open a container's output");
            return;
        }
    };
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        tokio::select! {
            read = receiver.read(&mut buf) => match read {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    // Flushed per read, so `kubectl logs -f` sees lines as they come.
                    if sink.write_all(&buf[..n]).and_then(|()| sink.flush()).is_err() {
                        return;
                    }
                }
            },
            _ = exited.cancelled() => {
                while let Ok(n) = receiver.try_read(&mut buf) {
                    if n == 0 || sink.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                let _ = sink.flush();
                return;
            }
        }
    }
}
