//! The node lifecycle controller with taint-based eviction (kube-controller-manager 1.32's
//! node-lifecycle-controller plus taint-eviction-controller), keyed by Node.
//!
//! The node gateway keeps each Node's conditions (Ready=Unknown once heartbeats stop). From
//! them this controller keeps the node's condition taints: `not-ready` for Ready=False,
//! `unreachable` for Ready=Unknown (both NoExecute and NoSchedule), NoSchedule taints for
//! memory, disk and PID pressure and an unavailable network, and `unschedulable` for a
//! cordoned node; other taints are left as they are. On an unreachable node it turns its pods'
//! Ready condition False, which is what makes Endpoints drop them. Then it applies every
//! NoExecute taint on the node to its pods: a pod that does not tolerate one is evicted at
//! once; one tolerating them for tolerationSeconds is evicted when the first of those runs out
//! (the reconcile requeues itself for that moment); one tolerating them without seconds stays.
//! The default 300 s tolerations come from the DefaultTolerationSeconds admission rule
//! (`default_tolerations.rs`), so the eviction timeout is configured there.
//!
//! An eviction is a normal delete: the node stops the pod. A pod whose node never answers is
//! force-deleted by the pod garbage collector once its grace period has passed (`pod_gc.rs`).
//!
//! Pods are read from the cache's spec.nodeName index (`Ctx::on_node`), so a reconcile costs
//! the node's own pods, and pods are read at all only while the node is unreachable or has a
//! NoExecute taint; a healthy node's reconcile (one per heartbeat that changes its status)
//! reads just the node. Pod changes reach the node through `keys_for`, deadlines through the
//! requeue, so nothing else needs a periodic look.
//!
//! Not done, as Kubernetes does it: rate-limited, zone-aware tainting and the "full
//! disruption" rule that stops evictions when every node is unhealthy; the "Cancelling
//! deletion" event (there is no scheduled deletion to cancel: deadlines are recomputed).

use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{Node, Pod, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::chrono::{DateTime, Duration as ChronoDuration, Utc};

use super::context::{full_name, ControllerError, Ctx, EventType, TypeRef};
use super::pod_disruption::{disruption, evict, mark_not_ready, node_keys, Soonest};
use super::pods;
use super::reconciler::{Action, Key, Reconciler, WatchedChange};
use super::taints::{
    self, eviction, taints_of, Eviction, DISK_PRESSURE, MEMORY_PRESSURE, NETWORK_UNAVAILABLE,
    NOT_READY, NO_EXECUTE, NO_SCHEDULE, PID_PRESSURE, UNREACHABLE, UNSCHEDULABLE,
};

/// The Events source of the node lifecycle controller in Kubernetes (`kubectl describe`'s
/// "From" column), which differs from its controller name.
pub const NODE_CONTROLLER: &str = "node-controller";
/// The Events source of Kubernetes' taint eviction controller.
pub const TAINT_EVICTION_CONTROLLER: &str = "taint-eviction-controller";

/// How long a node that has never reported a Ready condition gets before it counts as
/// unreachable (kube-controller-manager's --node-startup-grace-period).
pub const DEFAULT_STARTUP_GRACE: Duration = Duration::from_secs(60);

/// NoSchedule taints that mirror a node condition being True.
const PRESSURE_TAINTS: [(&str, &str); 4] = [
    ("MemoryPressure", MEMORY_PRESSURE),
    ("DiskPressure", DISK_PRESSURE),
    ("PIDPressure", PID_PRESSURE),
    ("NetworkUnavailable", NETWORK_UNAVAILABLE),
];

/// The node lifecycle controller: condition taints, pods of silent nodes marked not ready,
/// and taint-based eviction.
pub struct NodeLifecycleController {
    startup_grace: Duration,
}

impl Default for NodeLifecycleController {
    fn default() -> Self {
        NodeLifecycleController::new()
    }
}

/// What the Ready condition says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Readiness {
    Ready,
    /// Ready=False: the node says it cannot run pods.
    NotReady,
    /// Ready=Unknown, or never reported past the startup grace period.
    Unreachable,
    /// Never reported yet, within the startup grace period ending at this moment.
    Starting(DateTime<Utc>),
}

fn readiness(node: &Node, now: DateTime<Utc>, grace: Duration) -> Readiness {
    match taints::node_condition(node, "Ready") {
        Some("True") => Readiness::Ready,
        Some("False") => Readiness::NotReady,
        Some(_) => Readiness::Unreachable,
        None => {
            let grace = ChronoDuration::from_std(grace).unwrap_or_default();
            let until = node
                .metadata
                .creation_timestamp
                .as_ref()
                .and_then(|t| t.0.checked_add_signed(grace));
            match until {
                Some(until) if until > now => Readiness::Starting(until),
                _ => Readiness::Unreachable,
            }
        }
    }
}

/// Whether the taint is one this controller owns (it adds and removes those alone).
fn owned(taint: &Taint) -> bool {
    let readiness = taint.key == NOT_READY || taint.key == UNREACHABLE;
    let effect_owned = taint.effect == NO_SCHEDULE || (readiness && taint.effect == NO_EXECUTE);
    effect_owned
        && (readiness
            || taint.key == UNSCHEDULABLE
            || PRESSURE_TAINTS.iter().any(|(_, key)| taint.key == *key))
}

/// Whether the node is tainted as not ready or unreachable for execution.
fn tainted_not_ready(taints: &[Taint]) -> bool {
    taints
        .iter()
        .any(|t| t.effect == NO_EXECUTE && (t.key == NOT_READY || t.key == UNREACHABLE))
}

/// The owned taints the node should carry, as (key, effect).
fn wanted(node: &Node, readiness: Readiness) -> Vec<(&'static str, &'static str)> {
    let mut wanted = Vec::new();
    match readiness {
        Readiness::Ready => {}
        Readiness::NotReady => wanted.extend([(NOT_READY, NO_SCHEDULE), (NOT_READY, NO_EXECUTE)]),
        Readiness::Unreachable => {
            wanted.extend([(UNREACHABLE, NO_SCHEDULE), (UNREACHABLE, NO_EXECUTE)])
        }
        // Nothing is known yet: keep whatever readiness taints the node registered with.
        Readiness::Starting(_) => {
            for key in [NOT_READY, UNREACHABLE] {
                for effect in [NO_SCHEDULE, NO_EXECUTE] {
                    if taints::has_taint(node, key, effect) {
                        wanted.push((key, effect));
                    }
                }
            }
        }
    }
    for (condition, key) in PRESSURE_TAINTS {
        if taints::node_condition(node, condition) == Some("True") {
            wanted.push((key, NO_SCHEDULE));
        }
    }
    if node.spec.as_ref().and_then(|s| s.unschedulable) == Some(true) {
        wanted.push((UNSCHEDULABLE, NO_SCHEDULE));
    }
    wanted
}

/// The node's taints with the owned ones made to match `wanted`: unwanted owned taints go,
/// missing ones are appended stamped with `now`, everything else stays in place. None when
/// nothing changes.
fn next_taints(
    current: &[Taint],
    wanted: &[(&'static str, &'static str)],
    now: DateTime<Utc>,
) -> Option<Vec<Taint>> {
    let mut next: Vec<Taint> = current
        .iter()
        .filter(|t| !owned(t) || wanted.contains(&(t.key.as_str(), t.effect.as_str())))
        .cloned()
        .collect();
    for (key, effect) in wanted {
        if !next.iter().any(|t| t.key == *key && t.effect == *effect) {
            next.push(Taint {
                key: key.to_string(),
                effect: effect.to_string(),
                time_added: Some(Time(now)),
                value: None,
            });
        }
    }
    (next != current).then_some(next)
}

impl NodeLifecycleController {
    /// A controller with the default startup grace period.
    pub fn new() -> NodeLifecycleController {
        NodeLifecycleController::with_startup_grace(DEFAULT_STARTUP_GRACE)
    }

    /// A controller that counts a node which never reported readiness as unreachable once it
    /// is `startup_grace` old.
    pub fn with_startup_grace(startup_grace: Duration) -> NodeLifecycleController {
        NodeLifecycleController { startup_grace }
    }

    /// Brings the node's owned taints in line; returns the node as stored.
    async fn taint(
        &self,
        ctx: &Ctx,
        node: Node,
        readiness: Readiness,
    ) -> Result<Node, ControllerError> {
        let current = taints_of(&node).to_vec();
        let Some(next) = next_taints(&current, &wanted(&node, readiness), ctx.now()) else {
            return Ok(node);
        };
        let mut changed = node;
        changed.spec.get_or_insert_with(Default::default).taints =
            (!next.is_empty()).then_some(next);
        let stored = ctx.replace(&changed).await?;
        if !tainted_not_ready(&current) && tainted_not_ready(taints_of(&stored)) {
            let name = stored.metadata.name.clone().unwrap_or_default();
            ctx.event_from(
                NODE_CONTROLLER,
                &stored,
                EventType::Normal,
                "NodeNotReady",
                format!("Node {name} status is now: NodeNotReady"),
            );
        }
        Ok(stored)
    }

    /// Marks the pod not ready (on an unreachable node) and applies the NoExecute taints to
    /// it, noting in `soonest` when a toleration runs out.
    async fn handle_pod(
        &self,
        ctx: &Ctx,
        pod: Pod,
        unreachable: bool,
        no_execute: &[Taint],
        soonest: &mut Soonest,
    ) -> Result<(), ControllerError> {
        let pod = if unreachable {
            match mark_not_ready(ctx, &pod).await? {
                None => return Ok(()),
                Some((pod, changed)) => {
                    if changed {
                        ctx.event_from(
                            NODE_CONTROLLER,
                            &pod,
                            EventType::Warning,
                            "NodeNotReady",
                            "Node is not ready",
                        );
                    }
                    pod
                }
            }
        } else {
            pod
        };
        if no_execute.is_empty() || pods::is_terminating(&pod) {
            return Ok(());
        }
        let now = ctx.now();
        match eviction(&pod, no_execute, now) {
            Eviction::Never => {}
            Eviction::At(at) => soonest.at(at),
            Eviction::Now => {
                let condition = disruption(
                    "DeletionByTaintManager",
                    "Taint manager: deleting due to NoExecute taint",
                );
                if evict(ctx, &pod, condition).await? {
                    let message = format!("Marking for deletion Pod {}", full_name(&pod.metadata));
                    ctx.event_from(
                        TAINT_EVICTION_CONTROLLER,
                        &pod,
                        EventType::Normal,
                        "TaintManagerEviction",
                        message,
                    );
                }
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Reconciler for NodeLifecycleController {
    fn name(&self) -> &'static str {
        "node-lifecycle-controller"
    }

    fn kind(&self) -> TypeRef {
        TypeRef::of::<Node>()
    }

    fn watches(&self) -> Vec<TypeRef> {
        vec![TypeRef::of::<Pod>()]
    }

    /// A node maps to itself; a pod to the node it is bound to (and was bound to).
    fn keys_for(&self, change: &WatchedChange, _ctx: &Ctx) -> Vec<Key> {
        if change.kind == self.kind() {
            return vec![Key::new(None, &change.name)];
        }
        node_keys(change)
    }

    async fn reconcile(&self, key: &Key, ctx: &Ctx) -> Result<Action, ControllerError> {
        let Some(node) = ctx.get::<Node>(None, &key.name)? else {
            // Pods of a deleted node are the pod garbage collector's.
            return Ok(Action::Done);
        };
        let now = ctx.now();
        let readiness = readiness(&node, now, self.startup_grace);
        let node = self.taint(ctx, node, readiness).await?;
        let mut soonest = Soonest::default();
        if let Readiness::Starting(until) = readiness {
            soonest.at(until);
        }
        let unreachable = readiness == Readiness::Unreachable;
        let no_execute: Vec<Taint> = taints_of(&node)
            .iter()
            .filter(|t| t.effect == NO_EXECUTE)
            .cloned()
            .collect();
        if !unreachable && no_execute.is_empty() {
            return Ok(soonest.action(now));
        }
        // One pod's failed write must not hold up the others: remember it, go on, fail last.
        let mut failed = None;
        for pod in ctx.on_node::<Pod>(&key.name)? {
            if let Err(e) = self
                .handle_pod(ctx, pod, unreachable, &no_execute, &mut soonest)
                .await
            {
                failed.get_or_insert(e);
            }
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(soonest.action(now)),
        }
    }
}

#[cfg(test)]
#[path = "node_lifecycle_tests.rs"]
mod tests;
