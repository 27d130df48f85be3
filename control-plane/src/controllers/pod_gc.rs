//! The pod garbage collector's node-bound duties (kube-controller-manager's
//! pod-garbage-collector): force-deleting pods no kubelet will ever finish.
//!
//! - Pods bound to a node that does not exist (gcOrphaned) are marked Failed with a
//!   DisruptionTarget condition (DeletionByPodGC, "PodGC: node no longer exists") and deleted
//!   with grace period 0. Kubernetes first waits 40 s for the node to show up; here a pod
//!   younger than that quarantine waits out the rest of it, which covers a pod created
//!   naming a node that is still registering.
//! - Terminating pods on an unreachable node (its `unreachable:NoExecute` taint is on) are
//!   force-deleted once their grace period has passed, so an eviction from a dead node does
//!   not hang forever; until then the reconcile requeues itself. (Bramble's own rule: in
//!   Kubernetes such pods stay Terminating until the node returns or is deleted.)
//! - Terminating pods on a not-ready node an administrator tainted `out-of-service`
//!   (gcTerminating) are force-deleted at once.
//!
//! Keys are Nodes, with pods mapped to their node: every duty is about the pods of one node,
//! a deleted node still gets a reconcile through its name, and a reconcile reads the node's
//! pods (from the cache's spec.nodeName index, `Ctx::on_node`) only when the node is gone,
//! unreachable or out of service; a healthy node's costs one read. Like Kubernetes, no Events.
//!
//! Not done here: the terminated-pod threshold (gcTerminated) and terminating pods never
//! bound to a node (gcUnscheduledTerminating; Bramble's API server deletes those at once).

use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::chrono::{DateTime, Duration as ChronoDuration, Utc};

use super::context::{ControllerError, Ctx, TypeRef};
use super::pod_disruption::{disruption, force_delete, node_keys, Soonest};
use super::pods;
use super::reconciler::{Action, Key, Reconciler, WatchedChange};
use super::taints::{self, NO_EXECUTE, OUT_OF_SERVICE, UNREACHABLE};

/// How long a pod naming a missing node is given for the node to appear.
pub const DEFAULT_QUARANTINE: Duration = Duration::from_secs(40);

/// The pod garbage collector.
pub struct PodGarbageCollector {
    quarantine: Duration,
}

impl Default for PodGarbageCollector {
    fn default() -> Self {
        PodGarbageCollector::new()
    }
}

/// When a terminating pod's grace period is over. Bramble's API server stamps
/// deletionTimestamp when the delete is asked for and keeps the grace period in
/// deletionGracePeriodSeconds, so the end is their sum.
pub fn grace_ends(pod: &Pod) -> Option<DateTime<Utc>> {
    let since = pod.metadata.deletion_timestamp.as_ref()?.0;
    let grace = pod
        .metadata
        .deletion_grace_period_seconds
        .unwrap_or(0)
        .max(0);
    Some(
        since
            .checked_add_signed(ChronoDuration::seconds(grace))
            .unwrap_or(DateTime::<Utc>::MAX_UTC),
    )
}

impl PodGarbageCollector {
    /// A collector with Kubernetes' 40 s quarantine for pods of missing nodes.
    pub fn new() -> PodGarbageCollector {
        PodGarbageCollector::with_quarantine(DEFAULT_QUARANTINE)
    }

    /// A collector that gives a pod naming a missing node `quarantine` from its creation.
    pub fn with_quarantine(quarantine: Duration) -> PodGarbageCollector {
        PodGarbageCollector { quarantine }
    }

    /// Force-deletes the pods of a node that does not exist, once past quarantine.
    async fn orphans(&self, ctx: &Ctx, node: &str) -> Result<Action, ControllerError> {
        let now = ctx.now();
        let quarantine = ChronoDuration::from_std(self.quarantine).unwrap_or_default();
        let mut soonest = Soonest::default();
        let mut failed = None;
        for pod in ctx.on_node::<Pod>(node)? {
            let created = pod.metadata.creation_timestamp.as_ref().map(|t| t.0);
            if let Some(free) = created.and_then(|c| c.checked_add_signed(quarantine)) {
                if free > now {
                    soonest.at(free);
                    continue;
                }
            }
            let condition = disruption("DeletionByPodGC", "PodGC: node no longer exists");
            if let Err(e) = force_delete(ctx, &pod, Some(condition)).await {
                failed.get_or_insert(e);
            }
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(soonest.action(now)),
        }
    }

    /// Force-deletes the terminating pods of an unreachable or out-of-service node whose time
    /// has come.
    async fn terminating(
        &self,
        ctx: &Ctx,
        node: &str,
        out_of_service: bool,
    ) -> Result<Action, ControllerError> {
        let now = ctx.now();
        let mut soonest = Soonest::default();
        let mut failed = None;
        for pod in ctx.on_node::<Pod>(node)? {
            if !pods::is_terminating(&pod) {
                continue;
            }
            if !out_of_service {
                match grace_ends(&pod) {
                    Some(end) if end > now => {
                        soonest.at(end);
                        continue;
                    }
                    _ => {}
                }
            }
            if let Err(e) = force_delete(ctx, &pod, None).await {
                failed.get_or_insert(e);
            }
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(soonest.action(now)),
        }
    }
}

#[async_trait]
impl Reconciler for PodGarbageCollector {
    fn name(&self) -> &'static str {
        "pod-garbage-collector"
    }

    fn kind(&self) -> TypeRef {
        TypeRef::of::<Node>()
    }

    fn watches(&self) -> Vec<TypeRef> {
        vec![TypeRef::of::<Pod>()]
    }

    /// A node maps to itself; a pod to the node it is bound to (and was bound to), so a pod
    /// left on a deleted node, or turning terminating on an unreachable one, reaches it.
    fn keys_for(&self, change: &WatchedChange, _ctx: &Ctx) -> Vec<Key> {
        if change.kind == self.kind() {
            return vec![Key::new(None, &change.name)];
        }
        node_keys(change)
    }

    async fn reconcile(&self, key: &Key, ctx: &Ctx) -> Result<Action, ControllerError> {
        let Some(node) = ctx.get::<Node>(None, &key.name)? else {
            return self.orphans(ctx, &key.name).await;
        };
        let unreachable = taints::has_taint(&node, UNREACHABLE, NO_EXECUTE);
        let out_of_service = taints::node_condition(&node, "Ready") != Some("True")
            && taints::has_taint_key(&node, OUT_OF_SERVICE);
        if !unreachable && !out_of_service {
            return Ok(Action::Done);
        }
        self.terminating(ctx, &key.name, out_of_service).await
    }
}

#[cfg(test)]
#[path = "pod_gc_tests.rs"]
mod tests;
