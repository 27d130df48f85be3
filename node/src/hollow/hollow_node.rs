//! One hollow node: joins, registers and heartbeats through the real node protocol like an
//! agent, receives its desired pods, and reports them as [`super::pod_behaviour`] scripts,
//! without running anything, with the kubelet's events for a pod's start (Pulled, Created,
//! Started) and deletion (Killing) only, to stay cheap at thousands of pods. It can be told to
//! go silent (drop its stream and stay away, as a board losing power or network) or to report
//! NotReady, and to come back.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use bramble_api::node_protocol::node_gateway_client::NodeGatewayClient;
use bramble_api::node_protocol::{
    control_message, node_message, pod_change, DesiredPod, Heartbeat, NodeCondition, NodeInfo,
    NodeMessage, PodEvent, PodStatusReport, Register, StreamClose,
};
use k8s_openapi::api::core::v1::{Container, Pod, PodStatus};
use time::OffsetDateTime;
use tokio::sync::{mpsc, watch, Mutex};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::pod_behaviour::{self, ExitCodes};
use crate::agent::offer_event;
use crate::credentials::Credentials;
use crate::pod::container::ContainerState;
use crate::pod::events::{self, Happening, PodRef};
use crate::pod::status::pod_status;

/// What a hollow node is told to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Connected, heartbeating Ready.
    Up,
    /// Heartbeating Ready=False (KubeletNotReady).
    NotReady,
    /// Disconnected and not reconnecting.
    Silent,
}

/// A simulated pod.
struct SimPod {
    pod: Pod,
    started: OffsetDateTime,
    restarts: i32,
    state: ContainerState,
    last: Option<PodStatus>,
    pod_ip: String,
}

/// A hollow node's lasting state: what survives a reconnect.
pub struct HollowNode {
    credentials: Credentials,
    info: NodeInfo,
    index: usize,
    mode: watch::Sender<Mode>,
    state: Mutex<PodState>,
    /// Shared by the fleet, so "fail twice, then succeed" counts a Job's pods on every node.
    exit_codes: Arc<std::sync::Mutex<ExitCodes>>,
}

#[derive(Default)]
struct PodState {
    pods: HashMap<String, SimPod>,
    revision: u64,
    ips: u32,
    /// Run-to-completion pods finishing, earliest first.
    finishing: BinaryHeap<Reverse<(Instant, String)>>,
}

impl HollowNode {
    /// A hollow node with the identity in `credentials`, reporting `info`; `index` makes its
    /// pod IPs unique in the fleet; `exit_codes` is the fleet's script of run outcomes.
    pub fn new(
        credentials: Credentials,
        info: NodeInfo,
        index: usize,
        exit_codes: Arc<std::sync::Mutex<ExitCodes>>,
    ) -> HollowNode {
        HollowNode {
            credentials,
            info,
            index,
            mode: watch::channel(Mode::Up).0,
            state: Mutex::new(PodState::default()),
            exit_codes,
        }
    }

    /// The node's name.
    pub fn name(&self) -> &str {
        &self.info.name
    }

    /// Tells the node what to be.
    pub fn set_mode(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }

    /// How many pods it holds.
    pub async fn pod_count(&self) -> usize {
        self.state.lock().await.pods.len()
    }

    /// Runs the node until `shutdown`: connects whenever it is not silent, retrying with a
    /// short back-off. `connected` is told each time a session registers.
    pub async fn run(
        self: Arc<Self>,
        connected: mpsc::UnboundedSender<String>,
        shutdown: CancellationToken,
    ) {
        let mut mode = self.mode.subscribe();
        loop {
            if *mode.borrow_and_update() == Mode::Silent {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    changed = mode.changed() => if changed.is_err() { return } else { continue },
                }
            }
            let result = self.session(&mut mode, &connected, &shutdown).await;
            if shutdown.is_cancelled() {
                return;
            }
            if let Err(e) = result {
                tracing::debug!(node = %self.info.name, error = %e, "hollow node session ended");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(500 + (self.index % 500) as u64)) => {}
                }
            }
        }
    }

    async fn session(
        &self,
        mode: &mut watch::Receiver<Mode>,
        connected: &mpsc::UnboundedSender<String>,
        shutdown: &CancellationToken,
    ) -> Result<(), String> {
        let channel = crate::connection::channel(&self.credentials).await?;
        let (tx, rx) = mpsc::channel::<NodeMessage>(256);
        let resume = self.state.lock().await.revision;
        let register = NodeMessage {
            kind: Some(node_message::Kind::Register(Register {
                info: Some(self.info.clone()),
                resume_revision: resume,
            })),
        };
        tx.send(register).await.map_err(|e| e.to_string())?;
        let mut inbound = NodeGatewayClient::new(channel)
            .connect(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .map_err(|s| s.message().to_string())?
            .into_inner();
        let mut heartbeat = tokio::time::interval(Duration::from_secs(10));
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let _ = connected.send(self.info.name.clone());
        // Whatever the control plane missed while we were away goes up again.
        self.report_all(&tx).await?;
        loop {
            let next_finish = self
                .state
                .lock()
                .await
                .finishing
                .peek()
                .map(|Reverse((at, _))| *at);
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                changed = mode.changed() => {
                    let now = *mode.borrow_and_update();
                    if changed.is_err() || now == Mode::Silent {
                        return Ok(());
                    }
                    self.heartbeat(&tx, now).await?;
                }
                _ = heartbeat.tick() => {
                    let now = *mode.borrow();
                    self.heartbeat(&tx, now).await?;
                }
                _ = sleep_until(next_finish), if next_finish.is_some() => self.finish_due(&tx).await?,
                message = inbound.message() => {
                    let Some(message) = message.map_err(|s| s.message().to_string())? else {
                        return Err("the control plane closed the stream".into());
                    };
                    let Some(kind) = message.kind else { continue };
                    match kind {
                        control_message::Kind::Registered(r) => {
                            let every = Duration::from_secs(u64::from(r.heartbeat_seconds.max(1)));
                            heartbeat = tokio::time::interval_at(Instant::now() + every, every);
                            heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                        }
                        control_message::Kind::Snapshot(snapshot) => {
                            self.apply_snapshot(snapshot.revision, snapshot.pods, &tx).await?;
                        }
                        control_message::Kind::Resume(changes) => {
                            for change in changes.changes {
                                self.apply_change(change.change, change.revision, &tx).await?;
                            }
                            self.state.lock().await.revision = changes.revision;
                        }
                        control_message::Kind::Change(change) => {
                            self.apply_change(change.change, change.revision, &tx).await?;
                        }
                        control_message::Kind::Open(open) => {
                            let close = StreamClose {
                                stream_id: open.stream_id,
                                error: format!("{} is a hollow node: it runs no containers", self.info.name),
                                ..Default::default()
                            };
                            send(&tx, node_message::Kind::Close(close)).await?;
                        }
                        control_message::Kind::Data(_) | control_message::Kind::Close(_) => {}
                    }
                }
            }
        }
    }

    async fn heartbeat(&self, tx: &mpsc::Sender<NodeMessage>, mode: Mode) -> Result<(), String> {
        let condition = match mode {
            Mode::NotReady => NodeCondition {
                r#type: "Ready".into(),
                status: "False".into(),
                reason: "KubeletNotReady".into(),
                message: "hollow node told to report NotReady".into(),
            },
            _ => NodeCondition {
                r#type: "Ready".into(),
                status: "True".into(),
                reason: "KubeletReady".into(),
                message: "hollow node is posting ready status".into(),
            },
        };
        send(
            tx,
            node_message::Kind::Heartbeat(Heartbeat {
                conditions: vec![condition],
            }),
        )
        .await
    }

    async fn apply_snapshot(
        &self,
        revision: u64,
        pods: Vec<DesiredPod>,
        tx: &mpsc::Sender<NodeMessage>,
    ) -> Result<(), String> {
        let wanted: std::collections::HashSet<String> =
            pods.iter().map(|p| p.uid.clone()).collect();
        self.state
            .lock()
            .await
            .pods
            .retain(|uid, _| wanted.contains(uid));
        for pod in pods {
            self.upsert(pod, tx).await?;
        }
        self.state.lock().await.revision = revision;
        Ok(())
    }

    async fn apply_change(
        &self,
        change: Option<pod_change::Change>,
        revision: u64,
        tx: &mpsc::Sender<NodeMessage>,
    ) -> Result<(), String> {
        match change {
            Some(pod_change::Change::Upsert(pod)) => self.upsert(pod, tx).await?,
            Some(pod_change::Change::RemovedUid(uid)) => {
                let removed = self.state.lock().await.pods.remove(&uid);
                if let Some(sim) = removed.filter(|sim| sim.state.is_running()) {
                    offer_events(tx, container_events(&sim.pod, stopping));
                }
            }
            None => {}
        }
        self.state.lock().await.revision = revision;
        Ok(())
    }

    async fn upsert(
        &self,
        desired: DesiredPod,
        tx: &mpsc::Sender<NodeMessage>,
    ) -> Result<(), String> {
        let Ok(pod) = serde_json::from_slice::<Pod>(&desired.pod_json) else {
            tracing::warn!(node = %self.info.name, uid = %desired.uid, "undecodable desired pod skipped");
            return Ok(());
        };
        let now = OffsetDateTime::now_utc();
        let mut happened = Vec::new();
        let report = {
            let mut state = self.state.lock().await;
            let deleting = pod.metadata.deletion_timestamp.is_some();
            if let Some(sim) = state.pods.get_mut(&desired.uid) {
                sim.pod = pod;
                if !deleting {
                    return Ok(());
                }
                if sim.state.is_running() {
                    happened = container_events(&sim.pod, stopping);
                }
                // Stopping is instant on a hollow node: report the containers ended, which
                // lets the control plane finish the delete.
                if !matches!(sim.state, ContainerState::Terminated { .. }) {
                    sim.state = pod_behaviour::exited(137, sim.started, now);
                }
                let report = status_report(sim, self.info_host_ip(), now, true);
                state.pods.remove(&desired.uid);
                report
            } else {
                state.ips += 1;
                let pod_ip = format!(
                    "10.{}.{}.{}",
                    (self.index >> 8) & 0xff,
                    self.index & 0xff,
                    (state.ips % 254) + 1
                );
                let mut sim = SimPod {
                    pod,
                    started: now,
                    restarts: 0,
                    state: ContainerState::Running { started_at: now },
                    last: None,
                    pod_ip,
                };
                if deleting {
                    sim.state = pod_behaviour::exited(137, now, now);
                    status_report(&mut sim, self.info_host_ip(), now, true)
                } else {
                    if pod_behaviour::runs_to_completion(&sim.pod) {
                        let after = Duration::from_secs(pod_behaviour::run_seconds(&sim.pod));
                        state
                            .finishing
                            .push(Reverse((Instant::now() + after, desired.uid.clone())));
                    }
                    happened = container_events(&sim.pod, |c| {
                        vec![
                            events::already_present(c.image.as_deref().unwrap_or_default()),
                            events::created(&c.name),
                            events::started(&c.name),
                        ]
                    });
                    let report = status_report(&mut sim, self.info_host_ip(), now, false);
                    state.pods.insert(desired.uid.clone(), sim);
                    report
                }
            }
        };
        offer_events(tx, happened);
        send(tx, node_message::Kind::PodStatus(report)).await?;
        // Pods with no run time finish within the same pass.
        self.finish_due(tx).await
    }

    /// Ends the runs that are due, restarting OnFailure containers that failed.
    async fn finish_due(&self, tx: &mpsc::Sender<NodeMessage>) -> Result<(), String> {
        let now = Instant::now();
        let wall = OffsetDateTime::now_utc();
        let mut reports = Vec::new();
        {
            let mut state = self.state.lock().await;
            while let Some(Reverse((at, _))) = state.finishing.peek() {
                if *at > now {
                    break;
                }
                let Some(Reverse((_, uid))) = state.finishing.pop() else {
                    break;
                };
                let PodState {
                    pods, finishing, ..
                } = &mut *state;
                let Some(sim) = pods.get_mut(&uid) else {
                    continue;
                };
                let code = self
                    .exit_codes
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .next(&sim.pod);
                let on_failure = sim
                    .pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.restart_policy.as_deref())
                    == Some("OnFailure");
                if code != 0 && on_failure {
                    sim.restarts += 1;
                    sim.started = wall;
                    sim.state = ContainerState::Running { started_at: wall };
                    let after = Duration::from_secs(pod_behaviour::run_seconds(&sim.pod));
                    finishing.push(Reverse((now + after, uid.clone())));
                } else {
                    sim.state = pod_behaviour::exited(code, sim.started, wall);
                }
                reports.push(status_report(sim, self.info_host_ip(), wall, false));
            }
        }
        for report in reports {
            send(tx, node_message::Kind::PodStatus(report)).await?;
        }
        Ok(())
    }

    async fn report_all(&self, tx: &mpsc::Sender<NodeMessage>) -> Result<(), String> {
        let now = OffsetDateTime::now_utc();
        let reports: Vec<PodStatusReport> = {
            let mut state = self.state.lock().await;
            state
                .pods
                .values_mut()
                .map(|sim| status_report(sim, self.info_host_ip(), now, false))
                .collect()
        };
        for report in reports {
            send(tx, node_message::Kind::PodStatus(report)).await?;
        }
        Ok(())
    }

    fn info_host_ip(&self) -> &str {
        self.info
            .addresses
            .iter()
            .find(|a| a.r#type == "InternalIP")
            .map_or("", |a| a.address.as_str())
    }
}

fn status_report(
    sim: &mut SimPod,
    host_ip: &str,
    now: OffsetDateTime,
    terminated: bool,
) -> PodStatusReport {
    let containers = pod_behaviour::containers(&sim.pod, &sim.state, sim.restarts);
    let status = pod_status(
        &sim.pod,
        &[],
        &containers,
        sim.last.as_ref(),
        &sim.pod_ip,
        host_ip,
        now,
    );
    let json = serde_json::to_vec(&status).unwrap_or_default();
    sim.last = Some(status);
    PodStatusReport {
        namespace: sim.pod.metadata.namespace.clone().unwrap_or_default(),
        name: sim.pod.metadata.name.clone().unwrap_or_default(),
        uid: sim.pod.metadata.uid.clone().unwrap_or_default(),
        status_json: json,
        terminated,
    }
}

/// The events `happen` yields for each container of `pod`, addressed to it.
fn container_events(pod: &Pod, happen: impl Fn(&Container) -> Vec<Happening>) -> Vec<PodEvent> {
    let pod_ref = PodRef::of(pod);
    let mut out = Vec::new();
    for container in pod.spec.iter().flat_map(|s| &s.containers) {
        let field_path = events::field_path(pod, &container.name);
        out.extend(
            happen(container)
                .into_iter()
                .map(|h| h.to_pod(&pod_ref, &field_path)),
        );
    }
    out
}

/// Killing, for a running container of a deleted pod.
fn stopping(container: &Container) -> Vec<Happening> {
    vec![events::stopping(&container.name)]
}

/// Queues events as the agent does: best effort, never waiting for room.
fn offer_events(tx: &mpsc::Sender<NodeMessage>, events: Vec<PodEvent>) {
    for event in events {
        if !offer_event(tx, event) {
            // The rest would not fit either.
            return;
        }
    }
}

async fn send(tx: &mpsc::Sender<NodeMessage>, kind: node_message::Kind) -> Result<(), String> {
    tx.send(NodeMessage { kind: Some(kind) })
        .await
        .map_err(|_| "the stream closed".to_string())
}

async fn sleep_until(at: Option<Instant>) {
    if let Some(at) = at {
        tokio::time::sleep_until(at).await;
    }
}
