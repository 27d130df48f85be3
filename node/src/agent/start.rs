//! Starting one container: resolve its image (from the cache, pulling when needed), choose
//! where it runs (Wasm in the agent, or containerd: `containers.rs`), load the
//! program (compiled once, cached by digest), build the sandbox from the pod spec, attach the
//! log files, and run it: a command until it exits, a wasi:http component as a server on its
//! container port until it is stopped. Everything it learns goes back to the sync loop as
//! events; what the kubelet would record along the way (Pulling, Pulled, Created, Started,
//! Failed) goes up to the control plane as pod events.

use std::sync::Arc;
use std::time::Instant;

use bramble_api::node_protocol::{EngineSettings, PrecompileRequest};
use bramble_wasm_shim::cache::CacheError;
use bramble_wasm_shim::digest::Digest;
use bramble_wasm_shim::engine::host_target;
use bramble_wasm_shim::http::HttpOptions;
use bramble_wasm_shim::instance::{Program, RunError};
use bramble_wasm_shim::log::{LogConfig, LogStream, RotatingLog};
use k8s_openapi::api::core::v1::Container;
use time::OffsetDateTime;

use super::sync::{Event, Launched, Stopper};
use super::{lock, Agent, Desired};
use crate::image_cache::PulledImage;
use crate::oci::manifest::ImageKind;
use crate::oci::reference::Reference;
use crate::pod::events::{self, Happening};
use crate::pod::{container_sandbox, terminated_from_exit, ContainerState, PodVolumes};

/// Longest wait for the control plane to compile a module for this node.
const PRECOMPILE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// Port a wasi:http component listens on when its container declares none.
const DEFAULT_HTTP_PORT: u16 = 8080;

/// The containerd runtime a container is routed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ContainerdRuntime {
    /// An OCI container under runc.
    Runc,
    /// Wasm under containerd-shim-bramble-v1.
    WasmShim,
}

/// What a node's containerd offers; see [`Agent::containerd_offer`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct ContainerdOffer {
    /// containerd finds containerd-shim-bramble-v1.
    pub has_wasm_shim: bool,
    /// Wasm pods naming no RuntimeClass go through the shim (`--wasm-runtime containerd`).
    pub wasm_through_shim: bool,
}

/// Why a start failed: a kubelet reason and a message.
type StartError = (&'static str, String);

/// Which start of a container this is, and how it is stopped.
pub(crate) struct StartOf {
    pub attempt: u64,
    pub restart_count: i32,
    pub stop: Stopper,
    /// A running container of an earlier agent process to adopt instead of starting one.
    pub adopt: Option<String>,
}

pub(crate) async fn run_container(
    agent: Arc<Agent>,
    desired: Arc<Desired>,
    container: Container,
    volumes: PodVolumes,
    start: StartOf,
) {
    let StartOf {
        attempt,
        restart_count,
        stop,
        adopt,
    } = start;
    let uid = desired.stored.uid.clone();
    let name = container.name.clone();
    let event = |e: Event| {
        let _ = agent.events.send(e);
    };
    let (pod, field_path) = (desired.pod_ref(), events::field_path(&desired.pod, &name));
    let record = |happening: Happening| agent.send_event(happening.to_pod(&pod, &field_path));
    let failed = |(reason, message): StartError| {
        record(events::start_failed(reason, &message));
        Event::StartFailed {
            uid: uid.clone(),
            container: name.clone(),
            attempt,
            reason: reason.to_string(),
            message,
        }
    };
    let (pulled, reference, image_id) = match agent.pull_image(&container, &record).await {
        Ok(pulled) => pulled,
        Err(e) => return event(failed(e)),
    };
    let runtime = match agent.route(&desired, &pulled) {
        Ok(runtime) => runtime,
        Err(e) => return event(failed(e)),
    };
    #[cfg(feature = "containerd")]
    if let Some(runtime) = runtime {
        let start = super::containers::Start {
            desired: desired.clone(),
            container,
            volumes,
            attempt,
            restart_count,
            stop,
            image: pulled,
            reference,
            image_id,
            runtime,
        };
        let outcome = match adopt {
            Some(id) => agent.adopt_in_containerd(start, id).await,
            None => agent.run_in_containerd(start, &record).await,
        };
        return event(outcome);
    }
    #[cfg(not(feature = "containerd"))]
    let _ = (runtime, adopt, reference);
    let program = match agent.load_wasm(&pulled, &container).await {
        Ok(program) => program,
        Err(e) => return event(failed(e)),
    };
    let mut spec = {
        let env = agent.pod_env(&desired);
        match container_sandbox(&env, &container, &volumes) {
            Ok(spec) => spec,
            Err(e) => return event(failed(("CreateContainerConfigError", e.to_string()))),
        }
    };
    match agent.open_log(&uid, &name, restart_count) {
        Ok(log) => {
            spec.stdout = Some(Box::new(log.writer(LogStream::Stdout)));
            spec.stderr = Some(Box::new(log.writer(LogStream::Stderr)));
        }
        Err(e) => return event(failed(("RunContainerError", e))),
    }
    record(events::created(&name));
    let started = |program: &Program, image_id: &str| {
        record(events::started(&name));
        Event::Started {
            uid: uid.clone(),
            container: name.clone(),
            attempt,
            launched: Launched::Wasm(program.clone()),
            image_id: image_id.to_string(),
        }
    };
    let started_at = OffsetDateTime::now_utc();
    let exited = |state: ContainerState| Event::Exited {
        uid: uid.clone(),
        container: name.clone(),
        attempt,
        state,
    };
    if program.is_http_proxy() {
        let port = http_port(&container);
        let listener = match tokio::net::TcpListener::bind(("0.0.0.0", port)).await {
            Ok(l) => l,
            Err(e) => {
                return event(failed((
                    "RunContainerError",
                    format!("cannot listen on port {port} for the wasi:http component: {e}"),
                )))
            }
        };
        event(started(&program, &image_id));
        let served = bramble_wasm_shim::http::serve(
            agent.runner.engine().clone(),
            program,
            spec,
            HttpOptions::default(),
            listener,
            stop.cancel.clone(),
        )
        .await;
        let (exit_code, reason, message) = match served {
            Ok(_) => (0, "Completed", None),
            Err(e) => (1, "Error", Some(e.to_string())),
        };
        return event(exited(ContainerState::Terminated {
            exit_code,
            reason: reason.into(),
            message,
            started_at,
            finished_at: OffsetDateTime::now_utc(),
        }));
    }
    if !program.is_command() {
        return event(failed((
            "RunContainerError",
            "the image's component exports neither wasi:cli/run nor wasi:http/incoming-handler"
                .into(),
        )));
    }
    event(started(&program, &image_id));
    let state = match agent.runner.run(&program, spec, &stop.kill).await {
        Ok(exit) => terminated_from_exit(&exit, started_at, OffsetDateTime::now_utc()),
        Err(e) => ContainerState::Terminated {
            exit_code: 128,
            reason: "StartError".into(),
            message: Some(e.to_string()),
            started_at,
            finished_at: OffsetDateTime::now_utc(),
        },
    };
    event(exited(state));
}

/// The first TCP container port, where a wasi:http component is served.
pub(crate) fn http_port(container: &Container) -> u16 {
    container
        .ports
        .iter()
        .flatten()
        .find(|p| p.protocol.as_deref().unwrap_or("TCP") == "TCP")
        .and_then(|p| u16::try_from(p.container_port).ok())
        .unwrap_or(DEFAULT_HTTP_PORT)
}

impl Agent {
    /// The container's image (with its reference and the image id the status shows), pulled
    /// when the policy asks for it; `record` is told what the kubelet's image manager would
    /// record.
    pub(crate) async fn pull_image(
        &self,
        container: &Container,
        record: &(dyn Fn(Happening) + Sync),
    ) -> Result<(PulledImage, String, String), StartError> {
        let image = container
            .image
            .as_deref()
            .filter(|i| !i.is_empty())
            .ok_or(("InvalidImageName", "the container has no image".to_string()))?;
        let reference = Reference::parse(image).map_err(|e| {
            record(events::invalid_image(image, &e.to_string()));
            ("InvalidImageName", format!("{image}: {e}"))
        })?;
        let always = match container.image_pull_policy.as_deref() {
            Some("Always") => true,
            Some(_) => false,
            None => reference.tag().is_none_or(|t| t == "latest") && reference.digest().is_none(),
        };
        let cached = if always {
            None
        } else {
            self.images.lookup(&reference).await.map_err(|e| {
                record(events::inspect_failed(image, &e.to_string()));
                ("ErrImagePull", e.to_string())
            })?
        };
        let pulled = match cached {
            Some(cached) => {
                record(events::already_present(image));
                cached
            }
            None if container.image_pull_policy.as_deref() == Some("Never") => {
                record(events::never_pull(image));
                return Err((
                    "ErrImageNeverPull",
                    format!("container image {image:?} is not present with pull policy of Never"),
                ));
            }
            None => {
                record(events::pulling(image));
                let began = Instant::now();
                let pulled = self
                    .images
                    .pull(&self.registry, &reference)
                    .await
                    .map_err(|e| {
                        record(events::pull_failed(image, &e.to_string()));
                        ("ErrImagePull", e.to_string())
                    })?;
                // The cache serialises pulls; its wait is not told apart from the pull itself,
                // so both figures are the whole time.
                let took = began.elapsed();
                let size = pulled.manifest.config.size
                    + pulled.manifest.layers.iter().map(|l| l.size).sum::<u64>();
                record(events::pulled(image, took, took, size));
                pulled
            }
        };
        let image_id = format!("{}@{}", reference.repository(), pulled.manifest_digest);
        Ok((pulled, image.to_string(), image_id))
    }

    /// Where the container runs: None for Wasm in the agent, else the containerd runtime. By
    /// the pod's RuntimeClass handler when it names one, else by what the image is.
    pub(crate) fn route(
        &self,
        desired: &Desired,
        pulled: &PulledImage,
    ) -> Result<Option<ContainerdRuntime>, StartError> {
        let handler = desired.stored.runtime_handler.as_str();
        let containerd = self.containerd_offer();
        let no_containerd = |what: &str| {
            (
                "CreateContainerError",
                format!(
                    "{what}; node {} runs only Wasm in its own process (start the node with --containerd-socket to run containers)",
                    self.config.node_name
                ),
            )
        };
        let image = &pulled.reference;
        match (handler, pulled.kind) {
            ("runc", ImageKind::Container) | ("", ImageKind::Container) => match containerd {
                Some(_) => Ok(Some(ContainerdRuntime::Runc)),
                None => Err(no_containerd(&format!("image {image} is a container image"))),
            },
            ("runc", _) => Err((
                "CreateContainerError",
                format!("image {image} is not a container image, which RuntimeClass handler \"runc\" needs"),
            )),
            ("wasm-shim", ImageKind::Wasm | ImageKind::Container) => match containerd {
                Some(rt) if rt.has_wasm_shim => Ok(Some(ContainerdRuntime::WasmShim)),
                Some(_) => Err((
                    "CreateContainerError",
                    format!("node {}'s containerd has no containerd-shim-bramble-v1", self.config.node_name),
                )),
                None => Err(no_containerd("RuntimeClass handler \"wasm-shim\" runs Wasm through containerd")),
            },
            ("wasm", ImageKind::Wasm) => Ok(None),
            ("", ImageKind::Wasm) => Ok(containerd
                .filter(|rt| rt.wasm_through_shim && rt.has_wasm_shim)
                .map(|_| ContainerdRuntime::WasmShim)),
            ("wasm" | "", _) => Err((
                "CreateContainerError",
                format!("image {image} is neither a Wasm module nor a container image"),
            )),
            (other, _) => Err((
                "CreateContainerError",
                format!("RuntimeClass handler {other:?} is not offered by node {}", self.config.node_name),
            )),
        }
    }

    /// The Wasm program of a pulled Wasm artifact, compiled (or found in the module cache).
    pub(crate) async fn load_wasm(
        &self,
        pulled: &PulledImage,
        container: &Container,
    ) -> Result<Program, StartError> {
        let image = container.image.as_deref().unwrap_or_default();
        let path = pulled
            .module_path()
            .ok_or((
                "CreateContainerError",
                format!("image {image} holds no Wasm module"),
            ))?
            .to_path_buf();
        let failed = |e: String| ("CreateContainerError", e);
        let runner = self.runner.clone();
        let (bytes, loaded) = tokio::task::spawn_blocking(move || {
            let bytes =
                std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            let loaded = runner.program(&Digest::of(&bytes));
            Ok::<_, String>((bytes, loaded))
        })
        .await
        .map_err(|e| failed(e.to_string()))?
        .map_err(failed)?;
        if let Some(program) = loaded {
            return Ok(program);
        }
        // One module is loaded from disk, compiled or fetched precompiled at a time: a burst
        // of starts of a new module (a Deployment scaled to 100) compiles it once instead of
        // in 100 threads at once, and a board never runs two compiles side by side.
        let _one_at_a_time = self.loading.lock().await;
        let runner = self.runner.clone();
        let loaded = tokio::task::spawn_blocking(move || {
            match runner.load(&bytes) {
                Ok(program) => Ok(Ok(program)),
                // No artifact yet, and this node does not compile: ask the control plane.
                Err(RunError::Cache(CacheError::NoCompiler { digest })) => Ok(Err((digest, bytes))),
                Err(e) => Err(e.to_string()),
            }
        })
        .await
        .map_err(|e| ("CreateContainerError", e.to_string()))?
        .map_err(|e| ("CreateContainerError", e))?;
        match loaded {
            Ok(program) => Ok(program),
            Err((digest, wasm)) => self.install_precompiled(digest, wasm).await,
        }
    }

    /// Has the control plane compile `wasm` for this node's engine and installs the artifact
    /// (kept on disk, so later starts and restarts of the agent load it without asking).
    async fn install_precompiled(
        &self,
        digest: Digest,
        wasm: Vec<u8>,
    ) -> Result<Program, StartError> {
        let failed = |message: String| ("CreateContainerError", message);
        let Some(mut gateway) = lock(&self.gateway).clone() else {
            return Err(failed(format!(
                "module {digest} is not compiled for this node yet, and the control plane, which compiles modules for it, is not connected"
            )));
        };
        let settings = self.runner.engine().settings();
        let request = PrecompileRequest {
            wasm,
            target: host_target(),
            engine: Some(EngineSettings {
                max_wasm_stack: settings.max_wasm_stack as u64,
                memory_reservation: settings.memory_reservation,
                memory_guard_size: settings.memory_guard_size,
                memory_reservation_for_growth: settings.memory_reservation_for_growth,
            }),
        };
        let started = Instant::now();
        // A compile takes seconds at most; a control plane that does not answer must not hold
        // every start of a new module (they wait for this one) forever.
        let answer = tokio::time::timeout(PRECOMPILE_TIMEOUT, gateway.precompile(request))
            .await
            .map_err(|_| {
                failed(format!(
                    "the control plane did not compile module {digest} for this node within {} s",
                    PRECOMPILE_TIMEOUT.as_secs()
                ))
            })?;
        let artifact = answer
            .map_err(|status| {
                failed(format!(
                    "the control plane could not compile module {digest} for this node: {}",
                    status.message()
                ))
            })?
            .into_inner()
            .artifact;
        tracing::info!(%digest, bytes = artifact.len(), elapsed_ms = started.elapsed().as_millis(), "installed a module precompiled by the control plane");
        let runner = self.runner.clone();
        tokio::task::spawn_blocking(move || runner.install_precompiled(digest, &artifact))
            .await
            .map_err(|e| failed(e.to_string()))?
            .map_err(|e| failed(e.to_string()))
    }

    /// The log file of one start of a container: `pods/<uid>/logs/<container>/<n>.log`.
    pub(crate) fn log_path(
        &self,
        uid: &str,
        container: &str,
        restart_count: i32,
    ) -> std::path::PathBuf {
        self.pod_dir(uid)
            .join("logs")
            .join(container)
            .join(format!("{restart_count}.log"))
    }

    pub(crate) fn open_log(
        &self,
        uid: &str,
        container: &str,
        restart_count: i32,
    ) -> Result<Arc<RotatingLog>, String> {
        let path = self.log_path(uid, container, restart_count);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        RotatingLog::open(LogConfig {
            path,
            max_bytes: self.config.log_max_bytes,
            max_files: self.config.log_max_files,
        })
        .map_err(|e| e.to_string())
    }
}
