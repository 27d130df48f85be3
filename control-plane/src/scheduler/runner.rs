//! The scheduler's loop: keeps the [`Snapshot`] current from the watch cache, takes pending
//! pods off the [`SchedulingQueue`] in batches, decides each in memory, and writes each batch
//! of bindings as one store transaction while the next batch is being decided. Events and the
//! PodScheduled condition say what happened, in kube-scheduler's words.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::node::v1::RuntimeClass;
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::image_facts::{ImageFacts, ImageInspector};
use super::queue::SchedulingQueue;
use super::{RuntimeNeeds, Snapshot};
use crate::apiserver::binding::Bind;
use crate::apiserver::objects;
use crate::apiserver::resources::{lookup, Resource};
use crate::apiserver::ApiServer;
use crate::controllers::context::{EventRecord, EventType, InvolvedObject};
use crate::controllers::events::EventRecorder;
use crate::watch_cache::{CachedObject, Change, ChangeKind, WatchStart, REGISTRY_PREFIX};

/// The scheduler's name: pods with another spec.schedulerName are left alone.
pub const SCHEDULER_NAME: &str = "default-scheduler";
/// Pods decided per batch (one bind transaction each).
const BATCH: usize = 512;
/// Bind transactions in flight at once.
const BINDS_IN_FLIGHT: usize = 4;

struct Prefixes {
    pods: String,
    nodes: String,
    runtime_classes: String,
}

fn resource(plural: &str, group: &str) -> Option<&'static Resource> {
    lookup(group, "v1", plural)
}

/// A pod and the node it goes to (or, for a pod that fits nowhere, why).
type Decision = (Arc<Pod>, String);
/// A pod, its node, and how writing the binding went.
type BindOutcome = (Arc<Pod>, String, Result<(), String>);

/// What the scheduler holds between decisions.
struct State {
    snapshot: Snapshot,
    queue: SchedulingQueue,
    /// Pending pods by uid.
    pending: HashMap<String, Arc<Pod>>,
    /// RuntimeClass name -> handler.
    handlers: HashMap<String, String>,
    /// The FailedScheduling message last recorded per pod, so a pod retried with the same
    /// outcome does not write again.
    reported: HashMap<String, String>,
    /// What the pods' images need of a node.
    images: Arc<ImageInspector>,
}

/// A pod's needs, or that they are not known yet.
enum Needs {
    Known(RuntimeNeeds),
    /// An image is being inspected; the pod waits for it.
    Waiting,
}

/// The handler of container images when the pod names no RuntimeClass: containerd with runc.
pub const CONTAINER_HANDLER: &str = crate::apiserver::builtin::RUNC_RUNTIME_CLASS;

fn pod_of(object: &CachedObject) -> Option<Pod> {
    serde_json::from_slice(&object.json).ok()
}

fn uid(pod: &Pod) -> &str {
    pod.metadata.uid.as_deref().unwrap_or_default()
}

fn is_bound(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .is_some_and(|n| !n.is_empty())
}

/// A pod this scheduler should place.
fn wants_scheduling(pod: &Pod) -> bool {
    let spec = pod.spec.as_ref();
    !is_bound(pod)
        && pod.metadata.deletion_timestamp.is_none()
        && !crate::controllers::pods::is_finished(pod)
        && spec
            .and_then(|s| s.scheduler_name.as_deref())
            .is_none_or(|n| n == SCHEDULER_NAME)
}

/// A bound pod that still holds its node's resources.
fn holds_resources(pod: &Pod) -> bool {
    is_bound(pod) && !crate::controllers::pods::is_finished(pod)
}

impl State {
    /// What `pod` needs of a node: the handler of its RuntimeClass; and when the nodes differ
    /// in runtimes or architectures (`mixed`), what its images need: a container image a node
    /// with a container runtime and an architecture it is built for.
    fn needs(&self, pod: &Pod, mixed: bool) -> Result<Needs, String> {
        let handler = match pod
            .spec
            .as_ref()
            .and_then(|s| s.runtime_class_name.as_deref())
        {
            None => None,
            Some(class) => Some(
                self.handlers
                    .get(class)
                    .cloned()
                    .ok_or_else(|| format!("pod's RuntimeClass \"{class}\" does not exist"))?,
            ),
        };
        let mut needs = RuntimeNeeds {
            handler,
            arches: Vec::new(),
        };
        if !mixed {
            return Ok(Needs::Known(needs));
        }
        let spec = pod.spec.as_ref();
        let images = spec
            .into_iter()
            .flat_map(|s| s.init_containers.iter().flatten().chain(&s.containers))
            .filter_map(|c| c.image.as_deref());
        let mut waiting = false;
        for image in images {
            match self.images.facts(image) {
                None => waiting = true,
                Some(ImageFacts::Container { arches }) => {
                    if needs.handler.is_none() {
                        needs.handler = Some(CONTAINER_HANDLER.to_owned());
                    }
                    if needs.arches.is_empty() {
                        needs.arches = arches;
                    } else {
                        needs.arches.retain(|a| arches.contains(a));
                        if needs.arches.is_empty() {
                            return Err(format!(
                                "the pod's container images are built for no common architecture ({image} is for {})",
                                arches.join(", ")
                            ));
                        }
                    }
                }
                Some(ImageFacts::Wasm | ImageFacts::Unknown) => {}
            }
        }
        Ok(if waiting {
            Needs::Waiting
        } else {
            Needs::Known(needs)
        })
    }

    /// Applies a change; returns whether the cluster changed in a way that may let parked
    /// pods fit.
    fn apply(&mut self, prefixes: &Prefixes, change: &Change) -> bool {
        if change.key.starts_with(&prefixes.pods) {
            return self.apply_pod(change);
        }
        if change.key.starts_with(&prefixes.nodes) {
            let name = change.object.field("metadata.name").unwrap_or_default();
            if change.kind == ChangeKind::Deleted {
                self.snapshot.remove_node(name);
                return false;
            }
            if let Ok(node) = serde_json::from_slice(&change.object.json) {
                self.snapshot.upsert_node(&node);
            }
            return true;
        }
        if change.key.starts_with(&prefixes.runtime_classes) {
            if let Ok(class) = serde_json::from_slice::<RuntimeClass>(&change.object.json) {
                let name = class.metadata.name.clone().unwrap_or_default();
                if change.kind == ChangeKind::Deleted {
                    self.handlers.remove(&name);
                } else {
                    self.handlers.insert(name, class.handler);
                }
                return true;
            }
        }
        false
    }

    fn apply_pod(&mut self, change: &Change) -> bool {
        let Some(pod) = pod_of(&change.object) else {
            return false;
        };
        let uid = uid(&pod).to_string();
        let previous = change.previous.as_deref().and_then(pod_of);
        let mut freed = false;
        if let Some(old) = &previous {
            if holds_resources(old) {
                self.snapshot.remove_pod(old);
                freed = true;
            }
        }
        if change.kind == ChangeKind::Deleted {
            self.pending.remove(&uid);
            self.queue.remove(&uid);
            self.reported.remove(&uid);
            return freed;
        }
        if holds_resources(&pod) {
            // Bound (by us or anyone): it counts on its node now.
            self.pending.remove(&uid);
            self.queue.remove(&uid);
            self.reported.remove(&uid);
            self.snapshot.add_pod(&pod);
            // A pod that moved off a node (or finished) freed room; one that stayed did not.
            return false;
        }
        if wants_scheduling(&pod) {
            // A spec change may change where it fits; a status-only change does not.
            let changed_spec = previous
                .as_ref()
                .is_none_or(|p| p.spec != pod.spec || p.metadata.labels != pod.metadata.labels);
            tracing::trace!(pod = ?pod.metadata.name, changed_spec, "pending");
            self.pending.insert(uid.clone(), Arc::new(pod));
            if changed_spec {
                self.queue.add(&uid);
            }
        } else {
            self.pending.remove(&uid);
            self.queue.remove(&uid);
        }
        freed
    }
}

/// Runs the scheduler until `stop`.
pub async fn run(api: Arc<ApiServer>, stop: CancellationToken) {
    let events = api.events.clone();
    let (Some(pods), Some(nodes), Some(classes)) = (
        resource("pods", ""),
        resource("nodes", ""),
        resource("runtimeclasses", "node.k8s.io"),
    ) else {
        tracing::error!("scheduler: pods, nodes or runtimeclasses are not served");
        return;
    };
    let prefixes = Prefixes {
        pods: objects::prefix(pods, None),
        nodes: objects::prefix(nodes, None),
        runtime_classes: objects::prefix(classes, None),
    };
    let mut live = match api
        .cache
        .watch(REGISTRY_PREFIX, WatchStart::After(api.cache.revision()))
    {
        Ok(w) => w.live,
        Err(e) => {
            tracing::error!(error = %e, "scheduler cannot watch the cache");
            return;
        }
    };
    let mut seen = api.cache.revision();
    let (images, mut inspected) = ImageInspector::new(api.registry.clone(), &api.advertise);
    let mut state = State {
        snapshot: Snapshot::new(),
        queue: SchedulingQueue::default(),
        pending: HashMap::new(),
        handlers: HashMap::new(),
        reported: HashMap::new(),
        images,
    };
    load(&api, &prefixes, &mut state);
    let mut binds: JoinSet<Vec<BindOutcome>> = JoinSet::new();
    // A run of decisions without the queue running dry, logged when it ends: the scheduler's
    // own throughput, as operators (and the benchmark) read it.
    let mut burst: Option<(Instant, usize)> = None;
    loop {
        // Take in every change already waiting, so decisions see the cluster as it is.
        loop {
            match live.try_recv() {
                Ok(change) if change.revision > seen => {
                    seen = change.revision;
                    if state.apply(&prefixes, &change) {
                        state.queue.cluster_changed();
                    }
                }
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::TryRecvError::Lagged(_)) => {
                    tracing::warn!("scheduler fell behind the change stream; reloading");
                    seen = api.cache.revision();
                    load(&api, &prefixes, &mut state);
                }
                Err(_) => break,
            }
        }
        state.queue.promote(Instant::now());
        if state.queue.has_active() && binds.len() < BINDS_IN_FLIGHT {
            let (batch, failed) = decide_batch(&mut state, &events);
            if !failed.is_empty() {
                tokio::spawn(mark_unschedulable(api.clone(), failed));
            }
            if !batch.is_empty() {
                burst.get_or_insert((Instant::now(), 0));
                let api = api.clone();
                binds.spawn(async move {
                    let decisions: Vec<Bind> = batch
                        .iter()
                        .map(|(pod, node)| Bind {
                            namespace: pod.metadata.namespace.clone().unwrap_or_default(),
                            name: pod.metadata.name.clone().unwrap_or_default(),
                            uid: uid(pod).to_string(),
                            node: node.clone(),
                        })
                        .collect();
                    let results = api.bind_pods(&decisions).await;
                    batch
                        .into_iter()
                        .zip(results)
                        .map(|((pod, node), r)| (pod, node, r.map_err(|e| e.message)))
                        .collect()
                });
            }
            continue;
        }
        if !state.queue.has_active() && binds.is_empty() {
            if let Some((started, bound)) = burst.take() {
                let seconds = started.elapsed().as_secs_f64();
                tracing::info!(
                    pods = bound,
                    seconds,
                    pods_per_second = bound as f64 / seconds.max(1e-9),
                    "scheduling burst done"
                );
            }
        }
        let next_due = state.queue.next_due();
        tokio::select! {
            _ = stop.cancelled() => break,
            change = live.recv() => match change {
                Ok(change) if change.revision > seen => {
                    seen = change.revision;
                    if state.apply(&prefixes, &change) {
                        state.queue.cluster_changed();
                    }
                }
                Ok(_) => {}
                Err(RecvError::Lagged(_)) => {
                    tracing::warn!("scheduler fell behind the change stream; reloading");
                    seen = api.cache.revision();
                    load(&api, &prefixes, &mut state);
                }
                Err(RecvError::Closed) => break,
            },
            Some(_) = inspected.recv() => {
                // Pods waiting for this image's facts can be decided now.
                while inspected.try_recv().is_ok() {}
                state.queue.cluster_changed();
            }
            Some(done) = binds.join_next(), if !binds.is_empty() => {
                let Ok(results) = done else { continue };
                for (pod, node, result) in results {
                    match result {
                        Ok(()) => {
                            state.queue.bound(uid(&pod));
                            if let Some((_, bound)) = burst.as_mut() {
                                *bound += 1;
                            }
                            events.record(EventRecord {
                                involved: InvolvedObject::of(pod.as_ref()),
                                event_type: EventType::Normal,
                                reason: "Scheduled".into(),
                                message: format!(
                                    "Successfully assigned {}/{} to {node}",
                                    pod.metadata.namespace.as_deref().unwrap_or_default(),
                                    pod.metadata.name.as_deref().unwrap_or_default()
                                ),
                                source: SCHEDULER_NAME,
                                host: None,
                            });
                        }
                        Err(message) => {
                            state.snapshot.forget(&pod);
                            if state.pending.contains_key(uid(&pod)) {
                                tracing::debug!(pod = ?pod.metadata.name, %message, "bind failed; retrying");
                                state.queue.back_off(uid(&pod), Instant::now());
                            }
                        }
                    }
                }
            }
            _ = sleep_until(next_due), if next_due.is_some() => {}
        }
    }
    binds.shutdown().await;
}

/// Decides up to [`BATCH`] pods; records why the ones that fit nowhere do not, and returns
/// those whose PodScheduled condition must say so.
fn decide_batch(state: &mut State, events: &EventRecorder) -> (Vec<Decision>, Vec<Decision>) {
    let mut batch = Vec::new();
    let mut failed = Vec::new();
    let now = Instant::now();
    let mixed = state.snapshot.mixed_runtimes();
    while batch.len() < BATCH {
        let Some(uid) = state.queue.pop() else { break };
        let Some(pod) = state.pending.get(&uid).cloned() else {
            continue;
        };
        let decision = match state.needs(&pod, mixed) {
            Ok(Needs::Waiting) => {
                state.queue.park(&uid, now);
                continue;
            }
            Ok(Needs::Known(needs)) => state
                .snapshot
                .schedule(&pod, &needs)
                .map_err(|e| e.to_string()),
            Err(message) => Err(message),
        };
        tracing::trace!(pod = ?pod.metadata.name, ?decision, "decided");
        match decision {
            Ok(node) => batch.push((pod, node)),
            Err(message) => {
                state.queue.park(&uid, now);
                if state.reported.get(&uid) != Some(&message) {
                    state.reported.insert(uid.clone(), message.clone());
                    events.record(EventRecord {
                        involved: InvolvedObject::of(pod.as_ref()),
                        event_type: EventType::Warning,
                        reason: "FailedScheduling".into(),
                        message: message.clone(),
                        source: SCHEDULER_NAME,
                        host: None,
                    });
                    failed.push((pod, message));
                }
            }
        }
    }
    (batch, failed)
}

/// Sets PodScheduled=False (reason Unschedulable) with the scheduler's message on each pod, as
/// kube-scheduler does; off the decision loop, so it never waits for the store.
async fn mark_unschedulable(api: Arc<ApiServer>, failed: Vec<Decision>) {
    let Some(pods) = resource("pods", "") else {
        return;
    };
    let now = objects::now_rfc3339();
    for (pod, message) in failed {
        let (Some(namespace), Some(name)) = (
            pod.metadata.namespace.as_deref(),
            pod.metadata.name.as_deref(),
        ) else {
            continue;
        };
        let expected_uid = uid(&pod).to_string();
        let written = api
            .internal_update_status(pods, Some(namespace), name, SCHEDULER_NAME, |current| {
                let mut next = current.clone();
                if objects::meta_str(&next, "uid") != Some(expected_uid.as_str()) {
                    return Ok(next);
                }
                if !next["status"].is_object() {
                    next["status"] = json!({});
                }
                let condition = json!({
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "message": message,
                    "lastProbeTime": null,
                    "lastTransitionTime": now,
                });
                match next["status"]["conditions"].as_array_mut() {
                    Some(conditions) => {
                        conditions.retain(|c| c["type"] != "PodScheduled");
                        conditions.push(condition);
                    }
                    None => next["status"]["conditions"] = json!([condition]),
                }
                if next["status"]["phase"].is_null() {
                    next["status"]["phase"] = json!("Pending");
                }
                Ok(next)
            })
            .await;
        if let Err(e) = written {
            tracing::debug!(pod = name, error = %e, "cannot mark pod unschedulable");
        }
    }
}

/// (Re)builds the state from the cache.
fn load(api: &ApiServer, prefixes: &Prefixes, state: &mut State) {
    state.snapshot = Snapshot::new();
    state.pending.clear();
    state.handlers.clear();
    state.queue = SchedulingQueue::default();
    let (classes, _) = api.cache.list(&prefixes.runtime_classes);
    for class in classes {
        if let Ok(class) = serde_json::from_slice::<RuntimeClass>(&class.json) {
            state.handlers.insert(
                class.metadata.name.clone().unwrap_or_default(),
                class.handler,
            );
        }
    }
    let (nodes, _) = api.cache.list(&prefixes.nodes);
    for node in nodes {
        if let Ok(node) = serde_json::from_slice(&node.json) {
            state.snapshot.upsert_node(&node);
        }
    }
    let (pods, _) = api.cache.list(&prefixes.pods);
    for object in pods {
        let Some(pod) = pod_of(&object) else { continue };
        if holds_resources(&pod) {
            state.snapshot.add_pod(&pod);
        } else if wants_scheduling(&pod) {
            let uid = uid(&pod).to_string();
            state.pending.insert(uid.clone(), Arc::new(pod));
            state.queue.add(&uid);
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    if let Some(at) = at {
        tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await;
    }
}
