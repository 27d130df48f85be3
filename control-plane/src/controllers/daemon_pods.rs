//! A DaemonSet's pods node by node, and the placement pass over them (Kubernetes'
//! manage/podsShouldBeOnNode): which nodes need a pod, which pods must go (on nodes they no
//! longer fit or that are gone, duplicates, finished pods), and how long a node that keeps
//! failing its daemon pod waits before the next attempt.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetSpec};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::chrono::{DateTime, Duration as ChronoDuration, Utc};

use super::context::{full_name, Ctx, EventType};
use super::daemon_placement::{target_node, Placement};
use super::daemonset_rollout::{self as rollout, is_rolling_update};
use super::pods;

/// First and longest wait before deleting another failed pod on the same node.
const BACKOFF_INITIAL: ChronoDuration = ChronoDuration::seconds(1);
const BACKOFF_MAX: ChronoDuration = ChronoDuration::minutes(15);

/// Per DaemonSet and node, how long to wait before deleting the next failed pod there, so
/// that a kubelet rejecting the pod does not make a create/fail/delete hot loop.
#[derive(Debug, Default)]
pub struct FailedPodBackoff {
    entries: Mutex<HashMap<String, Backoff>>,
}

#[derive(Debug, Clone, Copy)]
struct Backoff {
    delay: ChronoDuration,
    last: DateTime<Utc>,
}

impl FailedPodBackoff {
    /// How long deleting a failed pod under `key` must still wait, if it must.
    pub fn remaining(&self, key: &str, now: DateTime<Utc>) -> Option<ChronoDuration> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let entry = entries.get(key)?;
        let waited = now - entry.last;
        (waited < entry.delay).then(|| entry.delay - waited)
    }

    /// Records a deletion of a failed pod under `key`, doubling the next wait.
    pub fn record(&self, key: String, now: DateTime<Utc>) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        // Entries untouched for twice the longest wait are forgotten (Kubernetes' GC rule).
        entries.retain(|_, e| now - e.last <= BACKOFF_MAX * 2);
        let delay = match entries.get(&key) {
            Some(e) => (e.delay * 2).min(BACKOFF_MAX),
            None => BACKOFF_INITIAL,
        };
        entries.insert(key, Backoff { delay, last: now });
    }
}

/// What one reconcile writes: pods to create (by node) and pods to delete.
#[derive(Debug, Default)]
pub struct Changes<'a> {
    /// Nodes to create a pod for.
    pub create_on: Vec<String>,
    /// Pods to delete.
    pub delete: Vec<&'a Pod>,
    /// How long until a failed pod held back by its backoff may be deleted.
    pub retry_after: Option<ChronoDuration>,
}

impl Changes<'_> {
    /// Nothing to write.
    pub fn is_empty(&self) -> bool {
        self.create_on.is_empty() && self.delete.is_empty()
    }
}

/// The DaemonSet's pods by the node they are for; finished pods being deleted are gone
/// already as far as placement goes, and pods tied to no node are ignored.
pub fn pods_by_node(owned: &[Pod]) -> BTreeMap<String, Vec<&Pod>> {
    let mut by_node: BTreeMap<String, Vec<&Pod>> = BTreeMap::new();
    for pod in owned {
        if pods::is_finished(pod) && pods::is_terminating(pod) {
            continue;
        }
        match target_node(pod) {
            Some(node) => by_node.entry(node).or_default().push(pod),
            None => {
                tracing::debug!(pod = ?pod.metadata.name, "daemon pod tied to no node, ignored")
            }
        }
    }
    by_node
}

/// Bound pods first, then by age, then by name: the first is the one a node keeps.
pub fn oldest_first(a: &Pod, b: &Pod) -> std::cmp::Ordering {
    let bound = |p: &Pod| {
        p.spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .is_some_and(|n| !n.is_empty())
    };
    let created = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
    bound(b)
        .cmp(&bound(a))
        .then_with(|| created(a).cmp(&created(b)))
        .then_with(|| a.metadata.name.cmp(&b.metadata.name))
}

/// What the DaemonSet under `placements` (every node's fit) reading `by_node` needs.
pub struct PlacementPass<'a, 'p> {
    /// The DaemonSet (Events are about it).
    pub ds: &'a DaemonSet,
    /// Its spec.
    pub spec: &'a DaemonSetSpec,
    /// Whether its pod belongs on each node, by node name.
    pub placements: &'a BTreeMap<String, Placement>,
    /// Its pods by node.
    pub by_node: &'a BTreeMap<String, Vec<&'p Pod>>,
    /// The current revision's hash.
    pub hash: &'a str,
    /// The time now.
    pub now: DateTime<Utc>,
}

impl<'p> PlacementPass<'_, 'p> {
    /// Pods to create and delete so that every node has the pods it should, failed pods
    /// included (a FailedDaemonPod Event for each, subject to `backoff`).
    pub fn changes(&self, ctx: &Ctx, backoff: &FailedPodBackoff) -> Changes<'p> {
        let mut changes = Changes::default();
        let spec = self.spec;
        let surge = is_rolling_update(spec)
            && rollout::budget(spec.update_strategy.as_ref(), 1).max_surge > 0;
        for (node, placement) in self.placements {
            let on_node = self
                .by_node
                .get(node)
                .map(Vec::as_slice)
                .unwrap_or_default();
            if placement.should_run && on_node.is_empty() {
                changes.create_on.push(node.clone());
                continue;
            }
            if !placement.should_continue_running {
                changes
                    .delete
                    .extend(on_node.iter().filter(|p| !pods::is_terminating(p)));
                continue;
            }
            let mut running = Vec::new();
            for pod in on_node.iter().copied().filter(|p| !pods::is_terminating(p)) {
                match pods::phase(pod) {
                    "Failed" => self.failed(ctx, backoff, node, pod, &mut changes),
                    "Succeeded" => changes.delete.push(pod),
                    _ => running.push(pod),
                }
            }
            running.sort_by(|a, b| oldest_first(a, b));
            if !surge {
                changes.delete.extend(running.iter().skip(1));
            } else if running.is_empty() && placement.should_run {
                changes.create_on.push(node.clone());
            } else {
                self.prune_surge(running, &mut changes);
            }
        }
        // Pods for nodes that are gone would never run: remove them.
        for (node, on_node) in self.by_node {
            if !self.placements.contains_key(node) {
                changes
                    .delete
                    .extend(on_node.iter().filter(|p| !pods::is_terminating(p)));
            }
        }
        changes
    }

    fn failed(
        &self,
        ctx: &Ctx,
        backoff: &FailedPodBackoff,
        node: &str,
        pod: &'p Pod,
        changes: &mut Changes<'p>,
    ) {
        let key = format!("{}/{node}", full_name(&self.ds.metadata));
        if let Some(wait) = backoff.remaining(&key, self.now) {
            changes.retry_after = Some(changes.retry_after.map_or(wait, |w| w.min(wait)));
            return;
        }
        backoff.record(key, self.now);
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
        let message = format!(
            "Found failed daemon pod {namespace}/{name} on node {node}, will try to kill it"
        );
        ctx.event(self.ds, EventType::Warning, "FailedDaemonPod", message);
        changes.delete.push(pod);
    }

    /// While surging a node keeps its oldest new and oldest old pod, the old one only until
    /// the new one is available (or as long as the old one is ready at all).
    fn prune_surge(&self, running: Vec<&'p Pod>, changes: &mut Changes<'p>) {
        let (mut newest, mut oldest_old) = (None, None);
        for pod in running {
            let slot = if rollout::is_updated(pod, self.hash) {
                &mut newest
            } else {
                &mut oldest_old
            };
            if slot.is_none() {
                *slot = Some(pod);
            } else {
                changes.delete.push(pod);
            }
        }
        let min_ready = self.spec.min_ready_seconds.unwrap_or(0);
        if let (Some(new), Some(old)) = (newest, oldest_old) {
            if !pods::is_ready(old) || pods::is_available(new, min_ready, self.now) {
                changes.delete.push(old);
            }
        }
    }
}
