//! The sync loop: level-triggered. Each pass compares every desired pod with what runs and
//! does the next step (start, restart after back-off, probe, stop), then reports statuses that
//! changed. Container tasks and probes only send events back; all decisions are made here,
//! and so are the kubelet's pod events about them (Killing, BackOff, Unhealthy,
//! DeadlineExceeded), each sent once per occurrence however many passes see it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bramble_api::node_protocol::PodStatusReport;
use bramble_wasm_shim::guest::KillHandle;
use bramble_wasm_shim::instance::Program;
use k8s_openapi::api::core::v1::{Container, PodStatus};
use time::OffsetDateTime;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{lock, Agent, Desired};
use crate::pod::events::{self, Announced, PodRef};
use crate::pod::{
    crash_loop_state, pod_status, prepare_volumes, should_restart, should_restart_init,
    BackOffDecision, ContainerProbes, ContainerRecord, ContainerState, CrashLoopBackOff, PodEnv,
    PodVolumes, ProbeKind, ProbeOutcome, RestartPolicy, Transition,
};

/// Retry delay for pods whose volumes could not be prepared.
const VOLUME_RETRY: Duration = Duration::from_secs(10);

/// What a started container runs as, for exec.
#[derive(Clone)]
pub enum Launched {
    /// A Wasm instance in the agent.
    Wasm(Program),
    /// A container in containerd, by id.
    #[cfg(feature = "containerd")]
    Container {
        /// containerd's container id.
        id: String,
    },
}

/// What container tasks and probes tell the loop.
pub enum Event {
    /// The instance is running.
    Started {
        /// Pod uid.
        uid: String,
        /// Container name.
        container: String,
        /// Which start of the container this is about.
        attempt: u64,
        /// What runs (kept for exec).
        launched: Launched,
        /// Image digest.
        image_id: String,
    },
    /// The instance ended.
    Exited {
        /// Pod uid.
        uid: String,
        /// Container name.
        container: String,
        /// Which start.
        attempt: u64,
        /// Its terminated state.
        state: ContainerState,
    },
    /// It could not be started.
    StartFailed {
        /// Pod uid.
        uid: String,
        /// Container name.
        container: String,
        /// Which start.
        attempt: u64,
        /// Kubelet-style reason (ErrImagePull, CreateContainerConfigError, …).
        reason: String,
        /// Details.
        message: String,
    },
    /// A probe ran.
    Probe {
        /// Pod uid.
        uid: String,
        /// Container name.
        container: String,
        /// Which start.
        attempt: u64,
        /// Which probe.
        kind: ProbeKind,
        /// How it went.
        outcome: ProbeOutcome,
    },
}

/// How a running instance is stopped: a command instance through its kill handle, the HTTP
/// server of a wasi:http component through its cancellation token. The start task picks the
/// one that applies once it knows what the program is.
#[derive(Debug, Clone, Default)]
pub struct Stopper {
    /// Kills a command instance.
    pub kill: KillHandle,
    /// Stops an HTTP server.
    pub cancel: CancellationToken,
}

impl Stopper {
    fn stop(&self) {
        self.kill.kill();
        self.cancel.cancel();
    }
}

/// Where one container is in its life.
pub(crate) enum Phase {
    /// Not started in this agent's life.
    Idle,
    /// Its task is pulling, loading or instantiating.
    Starting(Stopper),
    /// Running.
    Running {
        stop: Stopper,
        // Boxed: most containers have no probes and the other phases are small.
        probes: Box<ContainerProbes>,
        probing: Vec<ProbeKind>,
    },
    /// Ended with `code` at `finished`.
    Exited { finished: Instant, code: i32 },
    /// Could not be started at `at`.
    Failed { at: Instant },
}

/// One container of a pod.
pub(crate) struct Slot {
    pub name: String,
    pub spec: Container,
    pub record: ContainerRecord,
    pub attempt: u64,
    /// Started before, in this life or (from the stored status) a previous one.
    pub ever_started: bool,
    pub phase: Phase,
    pub launched: Option<Launched>,
    /// `spec.containers{name}` or `spec.initContainers{name}`, for events.
    pub field_path: String,
    /// The running instance was told to stop and its Killing event sent.
    killing: bool,
    /// The back-off period last announced with a BackOff event (keyed by its end).
    backoff_announced: Announced<Instant>,
}

impl Slot {
    fn new(
        spec: &Container,
        previous: Option<&k8s_openapi::api::core::v1::ContainerStatus>,
        field_path: String,
    ) -> Slot {
        let restart_count = previous.map_or(0, |p| p.restart_count);
        let was_started = previous.is_some_and(|p| {
            p.state
                .as_ref()
                .is_some_and(|s| s.running.is_some() || s.terminated.is_some())
                || p.last_state
                    .as_ref()
                    .is_some_and(|s| s.terminated.is_some())
        });
        // A container that had ended before the agent restarted stays ended (a completed
        // restartPolicy Never pod must not run again); one that was running died with the
        // agent and is started again, counting a restart.
        let ended = previous
            .and_then(|p| p.state.as_ref())
            .and_then(|s| s.terminated.as_ref())
            .map(terminated_from_api);
        let phase = match &ended {
            Some(ContainerState::Terminated { exit_code, .. }) => Phase::Exited {
                finished: Instant::now(),
                code: *exit_code,
            },
            _ => Phase::Idle,
        };
        Slot {
            name: spec.name.clone(),
            spec: spec.clone(),
            record: ContainerRecord {
                name: spec.name.clone(),
                image: spec.image.clone().unwrap_or_default(),
                image_id: previous.map(|p| p.image_id.clone()).unwrap_or_default(),
                state: ended.unwrap_or(ContainerState::Waiting {
                    reason: "ContainerCreating".into(),
                    message: None,
                }),
                last_state: previous
                    .and_then(|p| p.last_state.as_ref())
                    .and_then(|s| s.terminated.as_ref())
                    .map(terminated_from_api),
                restart_count,
                ready: false,
                started: Some(false),
            },
            attempt: 0,
            ever_started: was_started,
            phase,
            launched: None,
            field_path,
            killing: false,
            backoff_announced: Announced::default(),
        }
    }

    fn active(&self) -> bool {
        matches!(self.phase, Phase::Starting(_) | Phase::Running { .. })
    }

    fn stop(&self) {
        match &self.phase {
            Phase::Starting(stop) | Phase::Running { stop, .. } => stop.stop(),
            _ => {}
        }
    }

    /// Stops the instance; true the first time an active instance is stopped, when the
    /// kubelet records Killing (passes that see the pod deleted again stop it silently).
    fn stop_once(&mut self) -> bool {
        self.stop();
        let first = self.active() && !self.killing;
        self.killing |= first;
        first
    }
}

/// The instant matching a pod's stored startTime (unix seconds), or now.
fn active_since(start_unix: Option<i64>) -> Instant {
    let now = Instant::now();
    let Some(start) = start_unix else { return now };
    let elapsed = OffsetDateTime::now_utc()
        .unix_timestamp()
        .saturating_sub(start);
    u64::try_from(elapsed)
        .ok()
        .and_then(|secs| now.checked_sub(Duration::from_secs(secs)))
        .unwrap_or(now)
}

/// A terminated state read back from a stored status.
fn terminated_from_api(t: &k8s_openapi::api::core::v1::ContainerStateTerminated) -> ContainerState {
    let time = |at: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>| {
        at.and_then(|t| OffsetDateTime::from_unix_timestamp(t.0.timestamp()).ok())
            .unwrap_or_else(OffsetDateTime::now_utc)
    };
    ContainerState::Terminated {
        exit_code: t.exit_code,
        reason: t.reason.clone().unwrap_or_else(|| "Error".into()),
        message: t.message.clone(),
        started_at: time(t.started_at.as_ref()),
        finished_at: time(t.finished_at.as_ref()),
    }
}

/// The agent's view of one pod.
pub(crate) struct PodRuntime {
    pub uid: String,
    /// The pod as events name it.
    pod: PodRef,
    policy: RestartPolicy,
    pub init: Vec<Slot>,
    pub containers: Vec<Slot>,
    backoff: CrashLoopBackOff,
    volumes: Option<PodVolumes>,
    volume_retry: Option<Instant>,
    /// The status last sent; `None` forces the next one out.
    pub reported: Option<serde_json::Value>,
    previous: Option<PodStatus>,
    terminated_sent: bool,
    /// When the pod became active on this node (for activeDeadlineSeconds).
    active_since: Instant,
    /// activeDeadlineSeconds passed: everything is stopped and the pod is Failed.
    deadline_exceeded: bool,
}

impl PodRuntime {
    fn new(desired: &Desired, previous: Option<PodStatus>) -> PodRuntime {
        let previous_start = previous
            .as_ref()
            .and_then(|p| p.start_time.as_ref())
            .map(|t| t.0.timestamp());
        let spec = desired.pod.spec.clone().unwrap_or_default();
        let find = |statuses: Option<&Vec<k8s_openapi::api::core::v1::ContainerStatus>>,
                    name: &str| {
            statuses
                .and_then(|s| s.iter().find(|c| c.name == name))
                .cloned()
        };
        let slots = |specs: &[Container], statuses: Option<&Vec<_>>| {
            specs
                .iter()
                .map(|c| {
                    let field_path = events::field_path(&desired.pod, &c.name);
                    Slot::new(c, find(statuses, &c.name).as_ref(), field_path)
                })
                .collect()
        };
        PodRuntime {
            uid: desired.stored.uid.clone(),
            pod: desired.pod_ref(),
            policy: RestartPolicy::parse(spec.restart_policy.as_deref()),
            init: slots(
                spec.init_containers.as_deref().unwrap_or_default(),
                previous
                    .as_ref()
                    .and_then(|p| p.init_container_statuses.as_ref()),
            ),
            containers: slots(
                &spec.containers,
                previous
                    .as_ref()
                    .and_then(|p| p.container_statuses.as_ref()),
            ),
            backoff: CrashLoopBackOff::default(),
            volumes: None,
            volume_retry: None,
            reported: None,
            previous,
            terminated_sent: false,
            active_since: active_since(previous_start),
            deadline_exceeded: false,
        }
    }

    fn slots_mut(&mut self) -> impl Iterator<Item = &mut Slot> {
        self.init.iter_mut().chain(self.containers.iter_mut())
    }

    pub(crate) fn slot(&self, name: &str) -> Option<&Slot> {
        self.init
            .iter()
            .chain(&self.containers)
            .find(|s| s.name == name)
    }

    /// The pod's prepared volumes, for exec instances.
    pub(crate) fn volumes_for_exec(&self) -> Option<PodVolumes> {
        self.volumes.clone()
    }

    pub(crate) fn any_active(&self) -> bool {
        self.init.iter().chain(&self.containers).any(Slot::active)
    }
}

impl Agent {
    /// Runs the sync loop until `shutdown`, then stops every container.
    pub async fn run(
        self: Arc<Self>,
        mut events: mpsc::UnboundedReceiver<Event>,
        shutdown: CancellationToken,
    ) {
        loop {
            // The first pass runs at once: an agent restarted while the control plane is away
            // has nothing else to wake it, and its pods must start from the state on disk.
            let next = self.sync_all();
            let sleep = async {
                match next {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = self.wake.notified() => {}
                event = events.recv() => {
                    let Some(event) = event else { break };
                    self.handle(event);
                    while let Ok(event) = events.try_recv() {
                        self.handle(event);
                    }
                }
                _ = sleep => {}
            }
        }
        for runtime in lock(&self.pods).values() {
            for slot in runtime.init.iter().chain(&runtime.containers) {
                slot.stop();
            }
        }
    }

    fn handle(&self, event: Event) {
        let mut pods = lock(&self.pods);
        let (uid, container, attempt) = match &event {
            Event::Started {
                uid,
                container,
                attempt,
                ..
            }
            | Event::Exited {
                uid,
                container,
                attempt,
                ..
            }
            | Event::StartFailed {
                uid,
                container,
                attempt,
                ..
            }
            | Event::Probe {
                uid,
                container,
                attempt,
                ..
            } => (uid.clone(), container.clone(), *attempt),
        };
        lock(&self.dirty).pods.insert(uid.clone());
        let Some(runtime) = pods.get_mut(&uid) else {
            return;
        };
        let PodRuntime {
            init,
            containers,
            pod,
            policy,
            ..
        } = runtime;
        let Some(slot) = init
            .iter_mut()
            .chain(containers.iter_mut())
            .find(|s| s.name == container)
        else {
            return;
        };
        if slot.attempt != attempt {
            return;
        }
        let now = Instant::now();
        match event {
            Event::Started {
                launched, image_id, ..
            } => {
                let Phase::Starting(stop) = &slot.phase else {
                    return;
                };
                let probes = ContainerProbes::new(&slot.spec, now);
                slot.record.state = ContainerState::Running {
                    started_at: OffsetDateTime::now_utc(),
                };
                slot.record.image_id = image_id;
                slot.record.started = Some(probes.started());
                slot.record.ready = probes.ready();
                slot.launched = Some(launched);
                slot.phase = Phase::Running {
                    stop: stop.clone(),
                    probes: Box::new(probes),
                    probing: Vec::new(),
                };
            }
            Event::Exited { state, .. } => {
                let code = state.exit_code().unwrap_or(0);
                slot.record.state = state;
                slot.record.ready = false;
                slot.record.started = Some(false);
                slot.phase = Phase::Exited {
                    finished: now,
                    code,
                };
            }
            Event::StartFailed {
                reason, message, ..
            } => {
                tracing::warn!(%uid, %container, %reason, %message, "container did not start");
                slot.record.state = ContainerState::Waiting {
                    reason,
                    message: Some(message),
                };
                slot.phase = Phase::Failed { at: now };
            }
            Event::Probe { kind, outcome, .. } => {
                let Phase::Running {
                    stop,
                    probes,
                    probing,
                } = &mut slot.phase
                else {
                    return;
                };
                probing.retain(|k| *k != kind);
                let transition = probes.record(kind, &outcome, now);
                slot.record.started = Some(probes.started());
                slot.record.ready = probes.ready();
                // Like the kubelet's prober: one Unhealthy per failed run (a result arrives
                // once per run, never once per pass); repeats are counted by the control plane.
                if let ProbeOutcome::Failure(output) = &outcome {
                    let unhealthy = events::unhealthy(kind, output);
                    self.send_event(unhealthy.to_pod(pod, &slot.field_path));
                }
                if transition == Some(Transition::Failed) {
                    tracing::info!(%uid, %container, ?kind, ?outcome, "probe failed; restarting the container");
                    stop.stop();
                    let restart = *policy != RestartPolicy::Never;
                    let killing = events::probe_killing(&slot.name, kind, restart);
                    self.send_event(killing.to_pod(pod, &slot.field_path));
                    slot.killing = true;
                }
            }
        }
    }

    /// One pass over the pods that changed or whose deadline came; returns when the next
    /// timed step is due.
    pub(crate) fn sync_all(self: &Arc<Self>) -> Option<Instant> {
        let now = Instant::now();
        // Take the marks before reading the desired pods: a pod added in between is marked
        // again and seen by the next pass, never lost.
        let (all, mut todo) = {
            let mut dirty = lock(&self.dirty);
            (
                std::mem::take(&mut dirty.all),
                std::mem::take(&mut dirty.pods),
            )
        };
        let mut pods = lock(&self.pods);
        let mut deadlines = lock(&self.deadlines);
        if all {
            todo.extend(lock(&self.desired).keys().cloned());
            todo.extend(pods.keys().cloned());
        }
        todo.extend(
            deadlines
                .iter()
                .filter(|(_, at)| **at <= now)
                .map(|(uid, _)| uid.clone()),
        );
        // Only the pods this pass visits, not a copy of all of them: a pass for one event costs
        // the same at 1,000 pods as at one.
        let desired: HashMap<String, Arc<Desired>> = {
            let all_desired = lock(&self.desired);
            todo.iter()
                .filter_map(|uid| Some((uid.clone(), all_desired.get(uid)?.clone())))
                .collect()
        };
        let connected = lock(&self.uplink).is_some();
        for uid in todo {
            let wanted = desired.get(&uid);
            if !pods.contains_key(&uid) {
                let Some(d) = wanted else { continue };
                let previous = self.load_status(&uid);
                pods.insert(uid.clone(), PodRuntime::new(d, previous));
            }
            let Some(runtime) = pods.get_mut(&uid) else {
                continue;
            };
            let mut wake = self.sync_pod(runtime, wanted);
            if connected && runtime.reported.is_none() {
                // The report did not fit the uplink's queue: try again shortly.
                wake = earliest(wake, Some(now + Duration::from_secs(1)));
            }
            if wanted.is_none() && !runtime.any_active() {
                pods.remove(&uid);
                deadlines.remove(&uid);
                self.forget_pod(&uid);
                continue;
            }
            match wake {
                Some(at) => deadlines.insert(uid, at),
                None => deadlines.remove(&uid),
            };
        }
        deadlines.values().min().copied()
    }

    fn sync_pod(
        self: &Arc<Self>,
        runtime: &mut PodRuntime,
        desired: Option<&Arc<Desired>>,
    ) -> Option<Instant> {
        let Some(desired) = desired else {
            self.stop_all(runtime);
            return None;
        };
        if self.stopping.load(std::sync::atomic::Ordering::SeqCst) {
            self.stop_all(runtime);
            let status = self.status_of(runtime, desired);
            self.send_status(runtime, desired, status, false);
            return None;
        }
        if desired.deleting() {
            self.stop_all(runtime);
            if !runtime.any_active() && !runtime.terminated_sent {
                let status = self.status_of(runtime, desired);
                runtime.terminated_sent = self.send_status(runtime, desired, status, true);
            }
            return (!runtime.terminated_sent).then(|| Instant::now() + Duration::from_secs(1));
        }
        let now = Instant::now();
        let mut next = None;
        if let Some(limit) = desired
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.active_deadline_seconds)
            .and_then(|s| u64::try_from(s).ok())
        {
            let until = runtime.active_since + Duration::from_secs(limit);
            if now >= until || runtime.deadline_exceeded {
                // The kubelet's active deadline: stop everything, the pod fails for good.
                if !runtime.deadline_exceeded {
                    self.send_event(events::deadline_exceeded().to_pod(&runtime.pod, ""));
                }
                runtime.deadline_exceeded = true;
                self.stop_all(runtime);
                let mut status = self.status_of(runtime, desired);
                status.phase = Some("Failed".into());
                status.reason = Some("DeadlineExceeded".into());
                status.message = Some(format!(
                    "Pod was active on the node longer than the specified deadline ({limit}s)"
                ));
                self.send_status(runtime, desired, status, false);
                return None;
            }
            next = Some(until);
        }
        if runtime.volumes.is_none() && runtime.volume_retry.is_none_or(|at| at <= now) {
            let env = self.pod_env(desired);
            match prepare_volumes(&env) {
                Ok(v) => runtime.volumes = Some(v),
                Err(e) => {
                    let message = e.to_string();
                    for slot in runtime.slots_mut() {
                        slot.record.state = ContainerState::Waiting {
                            reason: "CreateContainerConfigError".into(),
                            message: Some(message.clone()),
                        };
                    }
                    // Each retry is an attempt the kubelet would record: of the first init
                    // container, or else of every container.
                    let tried = match runtime.init.first() {
                        Some(first) => std::slice::from_ref(first),
                        None => runtime.containers.as_slice(),
                    };
                    for slot in tried {
                        let failed = events::start_failed("CreateContainerConfigError", &message);
                        self.send_event(failed.to_pod(&runtime.pod, &slot.field_path));
                    }
                    runtime.volume_retry = Some(now + VOLUME_RETRY);
                }
            }
        }
        if let Some(volumes) = runtime.volumes.clone() {
            next = earliest(next, self.step_containers(runtime, desired, &volumes, now));
        } else {
            next = earliest(next, runtime.volume_retry);
        }
        self.start_probes(runtime, desired, now);
        next = earliest(next, probe_deadline(runtime));
        let status = self.status_of(runtime, desired);
        self.send_status(runtime, desired, status, false);
        next
    }

    /// Starts, restarts or waits for the pod's containers; init containers first, in order.
    fn step_containers(
        self: &Arc<Self>,
        runtime: &mut PodRuntime,
        desired: &Arc<Desired>,
        volumes: &PodVolumes,
        now: Instant,
    ) -> Option<Instant> {
        let policy = RestartPolicy::parse(
            desired
                .pod
                .spec
                .as_ref()
                .and_then(|s| s.restart_policy.as_deref()),
        );
        let mut next = None;
        let pod = runtime.pod.clone();
        for i in 0..runtime.init.len() {
            let slot = &mut runtime.init[i];
            match slot.phase {
                Phase::Exited { code: 0, .. } => continue,
                Phase::Idle => self.start(slot, desired, volumes),
                Phase::Exited { finished, code } if should_restart_init(policy, code) => {
                    next = self.restart_after_backoff(
                        &mut runtime.backoff,
                        &mut runtime.init[i],
                        finished,
                        now,
                        desired,
                        volumes,
                        &pod,
                    );
                }
                Phase::Failed { at } => {
                    next = self.restart_after_backoff(
                        &mut runtime.backoff,
                        &mut runtime.init[i],
                        at,
                        now,
                        desired,
                        volumes,
                        &pod,
                    );
                }
                _ => {}
            }
            return next;
        }
        for i in 0..runtime.containers.len() {
            let slot = &mut runtime.containers[i];
            let wake = match slot.phase {
                Phase::Idle => {
                    self.start(slot, desired, volumes);
                    None
                }
                Phase::Exited { finished, code } if should_restart(policy, code) => self
                    .restart_after_backoff(
                        &mut runtime.backoff,
                        &mut runtime.containers[i],
                        finished,
                        now,
                        desired,
                        volumes,
                        &pod,
                    ),
                Phase::Failed { at } => self.restart_after_backoff(
                    &mut runtime.backoff,
                    &mut runtime.containers[i],
                    at,
                    now,
                    desired,
                    volumes,
                    &pod,
                ),
                _ => None,
            };
            next = earliest(next, wake);
        }
        next
    }

    #[allow(clippy::too_many_arguments)]
    fn restart_after_backoff(
        self: &Arc<Self>,
        backoff: &mut CrashLoopBackOff,
        slot: &mut Slot,
        since: Instant,
        now: Instant,
        desired: &Arc<Desired>,
        volumes: &PodVolumes,
        pod: &PodRef,
    ) -> Option<Instant> {
        match backoff.decide(&slot.name, since, now) {
            BackOffDecision::Restart => {
                self.start(slot, desired, volumes);
                None
            }
            BackOffDecision::Wait { backoff, until } => {
                if slot.backoff_announced.first(until) {
                    self.announce_back_off(slot, pod);
                }
                if !matches!(&slot.record.state, ContainerState::Waiting { reason, .. } if reason != "CrashLoopBackOff")
                {
                    if let ContainerState::Terminated { .. } = slot.record.state {
                        slot.record.last_state = Some(slot.record.state.clone());
                    }
                    slot.record.state =
                        crash_loop_state(backoff, &slot.name, &pod.name, &pod.namespace, &pod.uid);
                }
                Some(until)
            }
        }
    }

    /// The kubelet's events for a container waiting out a back-off: BackOff for one that ran
    /// and exited; for a failed pull, the image manager's back-off and the start error. Other
    /// failed starts were recorded by their start task and are not repeated.
    fn announce_back_off(&self, slot: &Slot, pod: &PodRef) {
        let happenings = match (&slot.phase, &slot.record.state) {
            (Phase::Exited { .. }, _) => vec![events::back_off(&slot.name, pod)],
            (Phase::Failed { .. }, ContainerState::Waiting { reason, .. })
                if reason == "ErrImagePull" =>
            {
                vec![
                    events::back_off_pulling(&slot.record.image),
                    events::start_failed("ImagePullBackOff", ""),
                ]
            }
            _ => Vec::new(),
        };
        for happening in happenings {
            self.send_event(happening.to_pod(pod, &slot.field_path));
        }
    }

    /// Stops every container of the pod; the first stop of each active instance is recorded
    /// as the kubelet's Killing event.
    fn stop_all(&self, runtime: &mut PodRuntime) {
        let PodRuntime {
            init,
            containers,
            pod,
            ..
        } = runtime;
        for slot in init.iter_mut().chain(containers.iter_mut()) {
            if slot.stop_once() {
                self.send_event(events::stopping(&slot.name).to_pod(pod, &slot.field_path));
            }
        }
    }

    /// Hands the container to a start task.
    fn start(self: &Arc<Self>, slot: &mut Slot, desired: &Arc<Desired>, volumes: &PodVolumes) {
        // A container still running in containerd from an earlier agent process is adopted,
        // not started again: same start, same restart count.
        let adopted = self.take_adoptable(&desired.stored.uid, &slot.name);
        slot.attempt += 1;
        slot.killing = false;
        match &adopted {
            Some(found) => slot.record.restart_count = found.restart_count,
            None if slot.ever_started => slot.record.restart_count += 1,
            None => {}
        }
        slot.ever_started = true;
        if let ContainerState::Terminated { .. } = slot.record.state {
            slot.record.last_state = Some(slot.record.state.clone());
        }
        slot.record.state = ContainerState::Waiting {
            reason: "ContainerCreating".into(),
            message: None,
        };
        let stop = Stopper::default();
        slot.phase = Phase::Starting(stop.clone());
        tokio::spawn(super::start::run_container(
            self.clone(),
            desired.clone(),
            slot.spec.clone(),
            volumes.clone(),
            super::start::StartOf {
                attempt: slot.attempt,
                restart_count: slot.record.restart_count,
                stop,
                adopt: adopted.map(|a| a.id),
            },
        ));
    }

    fn start_probes(
        self: &Arc<Self>,
        runtime: &mut PodRuntime,
        desired: &Arc<Desired>,
        now: Instant,
    ) {
        let host: std::net::IpAddr = self
            .config
            .host_ip
            .parse()
            .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));
        for slot in runtime.containers.iter_mut() {
            let Phase::Running {
                probes, probing, ..
            } = &mut slot.phase
            else {
                continue;
            };
            for kind in probes.due(now) {
                if probing.contains(&kind) {
                    continue;
                }
                let Some(probe) = kind.of(&slot.spec).cloned() else {
                    continue;
                };
                probing.push(kind);
                let events = self.events.clone();
                let container = slot.spec.clone();
                let (uid, name, attempt) =
                    (desired.stored.uid.clone(), slot.name.clone(), slot.attempt);
                tokio::spawn(async move {
                    let outcome = crate::pod::run_probe(&probe, host, &container).await;
                    let _ = events.send(Event::Probe {
                        uid,
                        container: name,
                        attempt,
                        kind,
                        outcome,
                    });
                });
            }
        }
    }

    pub(crate) fn pod_env<'a>(&'a self, desired: &'a Desired) -> PodEnv<'a> {
        PodEnv {
            pod: &desired.pod,
            configmaps: &desired.config_maps,
            secrets: &desired.secrets,
            pod_ip: &self.config.host_ip,
            node_name: &self.config.node_name,
            pod_dir: &desired.pod_dir,
        }
    }

    fn status_of(&self, runtime: &PodRuntime, desired: &Desired) -> PodStatus {
        let records = |slots: &[Slot]| slots.iter().map(|s| s.record.clone()).collect::<Vec<_>>();
        // Container pods have their own IP on the pod network; Wasm pods share the node's.
        let pod_ip = self
            .pod_ip(&runtime.uid)
            .unwrap_or_else(|| self.config.host_ip.clone());
        pod_status(
            &desired.pod,
            &records(&runtime.init),
            &records(&runtime.containers),
            runtime.previous.as_ref(),
            &pod_ip,
            &self.config.host_ip,
            OffsetDateTime::now_utc(),
        )
    }

    /// Sends `status` if it differs from the last one sent; true if it went out.
    fn send_status(
        &self,
        runtime: &mut PodRuntime,
        desired: &Desired,
        status: PodStatus,
        terminated: bool,
    ) -> bool {
        let json = serde_json::to_value(&status).unwrap_or_default();
        let comparable = without_times(&json);
        if !terminated && runtime.reported.as_ref() == Some(&comparable) {
            return true;
        }
        self.save_status(&runtime.uid, &json);
        runtime.previous = Some(status);
        let sent = self.report(PodStatusReport {
            namespace: desired.namespace().to_string(),
            name: desired.name().to_string(),
            uid: runtime.uid.clone(),
            status_json: serde_json::to_vec(&json).unwrap_or_default(),
            terminated,
        });
        // A report that did not fit the uplink's queue leaves `reported` empty, which makes the
        // loop retry it: the control plane must end up with the latest status.
        runtime.reported = sent.then_some(comparable);
        sent
    }

    fn status_path(&self, uid: &str) -> std::path::PathBuf {
        self.pod_dir(uid).join("status.json")
    }

    fn load_status(&self, uid: &str) -> Option<PodStatus> {
        let bytes = std::fs::read(self.status_path(uid)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Keeps the status on disk so restart counts survive an agent restart. Written only when
    /// the status changed (SD cards).
    fn save_status(&self, uid: &str, status: &serde_json::Value) {
        let path = self.status_path(uid);
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let bytes = serde_json::to_vec(status).unwrap_or_default();
        if let Err(e) = std::fs::write(&path, bytes) {
            tracing::warn!(%uid, error = %e, "cannot store the pod status");
        }
    }

    fn forget_pod(self: &Arc<Self>, uid: &str) {
        #[cfg(feature = "containerd")]
        if self.containerd.is_some() {
            let (agent, uid) = (self.clone(), uid.to_string());
            tokio::spawn(async move {
                if let Some(rt) = &agent.containerd {
                    rt.release_pod(&uid).await;
                }
            });
        }
        let dir = self.pod_dir(uid);
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(%uid, error = %e, "cannot remove the pod directory");
            }
        }
    }

    /// The directory of a pod's volumes, logs and status.
    pub(crate) fn pod_dir(&self, uid: &str) -> std::path::PathBuf {
        self.config.data_dir.join("pods").join(safe_name(uid))
    }
}

/// Status compared without timestamps that change on every computation.
fn without_times(status: &serde_json::Value) -> serde_json::Value {
    let mut copy = status.clone();
    if let Some(conditions) = copy.get_mut("conditions").and_then(|c| c.as_array_mut()) {
        for c in conditions {
            if let Some(obj) = c.as_object_mut() {
                obj.remove("lastProbeTime");
            }
        }
    }
    copy
}

fn probe_deadline(runtime: &PodRuntime) -> Option<Instant> {
    runtime
        .containers
        .iter()
        .filter_map(|s| match &s.phase {
            Phase::Running { probes, .. } => probes.next_due(),
            _ => None,
        })
        .min()
}

fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

/// A uid as a file name: only safe characters.
pub(crate) fn safe_name(uid: &str) -> String {
    uid.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect()
}

#[cfg(test)]
#[path = "sync_tests.rs"]
mod tests;
