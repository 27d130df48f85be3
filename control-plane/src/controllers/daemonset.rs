//! The DaemonSet controller: one pod of the DaemonSet's template on every eligible node.
//!
//! Each reconcile reads all nodes and the DaemonSet's own pods, then makes the writes that
//! close the gap: a pod (pinned to its node by node affinity, the scheduler binds it) for an
//! eligible node without one; deletion of pods on nodes that no longer fit or are gone, of
//! duplicates, and of Failed pods (recreated on the next pass, with a per-node backoff so that
//! a kubelet rejecting the pod does not cause a hot loop). When that pass has nothing to do, a
//! RollingUpdate replaces pods of older revisions within maxUnavailable/maxSurge. Revisions
//! are ControllerRevisions (`controller_history.rs`); pods carry the current one's hash.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Node, Pod, PodTemplateSpec};

use super::context::{
    controller_of, controller_ref, ControllerError, Ctx, Delete, EventType, TypeRef,
};
use super::controller_history::{
    revision_hash, sync_revisions, truncate_history, Revisions, REVISION_HASH_LABEL,
};
use super::daemon_placement::{add_daemon_tolerations, pin_to_node, Eligibility, Placement};
use super::daemon_pods::{pods_by_node, Changes, FailedPodBackoff, PlacementPass};
use super::daemonset_rollout::{self as rollout, is_rolling_update};
use super::daemonset_status::compute_status;
use super::pods;
use super::reconciler::{default_keys, Action, Key, Reconciler, WatchedChange};

/// The annotation the API server keeps the template generation in (apps/v1 has no field).
const TEMPLATE_GENERATION_ANNOTATION: &str = "deprecated.daemonset.template.generation";
/// The deprecated pod label Kubernetes still sets to the template generation.
const TEMPLATE_GENERATION_LABEL: &str = "pod-template-generation";

/// Reconciles DaemonSets ("daemonset-controller").
#[derive(Default)]
pub struct DaemonSetReconciler {
    /// Per DaemonSet and node: how long to wait before deleting the next failed pod there.
    failed_pod_backoff: FailedPodBackoff,
}

impl DaemonSetReconciler {
    /// A DaemonSet controller with no failed-pod history.
    pub fn new() -> DaemonSetReconciler {
        DaemonSetReconciler::default()
    }
}

#[async_trait]
impl Reconciler for DaemonSetReconciler {
    fn name(&self) -> &'static str {
        "daemonset-controller"
    }

    fn kind(&self) -> TypeRef {
        TypeRef::of::<DaemonSet>()
    }

    fn watches(&self) -> Vec<TypeRef> {
        vec![TypeRef::of::<Pod>(), TypeRef::of::<Node>()]
    }

    /// A node change may change any DaemonSet's eligibility there; there are few DaemonSets.
    fn keys_for(&self, change: &WatchedChange, ctx: &Ctx) -> Vec<Key> {
        if change.kind != TypeRef::of::<Node>() {
            return default_keys(self.kind(), change);
        }
        match ctx.list::<DaemonSet>(None) {
            Ok(sets) => sets
                .iter()
                .map(|ds| {
                    Key::new(
                        ds.metadata.namespace.as_deref(),
                        ds.metadata.name.as_deref().unwrap_or_default(),
                    )
                })
                .collect(),
            Err(err) => {
                tracing::warn!(%err, "cannot list DaemonSets for a node change");
                Vec::new()
            }
        }
    }

    async fn reconcile(&self, key: &Key, ctx: &Ctx) -> Result<Action, ControllerError> {
        let namespace = key.namespace.as_deref();
        let Some(ds) = ctx.get::<DaemonSet>(namespace, &key.name)? else {
            return Ok(Action::Done);
        };
        // Its revisions may already be going with it: no status can be trusted (as Kubernetes).
        if ds.metadata.deletion_timestamp.is_some() {
            return Ok(Action::Done);
        }
        let Some(spec) = ds.spec.as_ref() else {
            tracing::warn!(daemonset = %key, "DaemonSet without spec, skipped");
            return Ok(Action::Done);
        };
        let selector = &spec.selector;
        if selector
            .match_labels
            .as_ref()
            .is_none_or(BTreeMap::is_empty)
            && selector
                .match_expressions
                .as_ref()
                .is_none_or(Vec::is_empty)
        {
            ctx.event(
                &ds,
                EventType::Warning,
                "SelectingAll",
                "This daemon set is selecting all pods. A non-empty selector is required.",
            );
            return Ok(Action::Done);
        }
        let old_status = ds.status.clone().unwrap_or_default();
        let revisions =
            sync_revisions(ctx, &ds, &spec.template, old_status.collision_count).await?;
        let hash = revision_hash(&revisions.update);
        let nodes = ctx.list::<Node>(None)?;
        let uid = ds.metadata.uid.clone().unwrap_or_default();
        let owned: Vec<Pod> = ctx
            .owned::<Pod>(namespace, &uid)?
            .into_iter()
            .filter(|p| controller_of(&p.metadata).is_some_and(|c| c.uid == uid))
            .collect();
        let by_node = pods_by_node(&owned);
        let eligibility = Eligibility::of(&spec.template);
        let placements: BTreeMap<String, Placement> = nodes
            .iter()
            .map(|n| {
                (
                    n.metadata.name.clone().unwrap_or_default(),
                    eligibility.check(n),
                )
            })
            .collect();
        let now = ctx.now();
        let min_ready = spec.min_ready_seconds.unwrap_or(0);

        let pass = PlacementPass {
            ds: &ds,
            spec,
            placements: &placements,
            by_node: &by_node,
            hash: &hash,
            now,
        };
        let mut changes = pass.changes(ctx, &self.failed_pod_backoff);
        let retry_after = changes.retry_after;
        // A rolling update step waits until the placement pass's writes are seen.
        if changes.is_empty() && is_rolling_update(spec) {
            let step = rollout::step(spec, &placements, &by_node, &hash, now);
            changes.create_on = step.create_on;
            let doomed: BTreeSet<&String> = step.delete.iter().collect();
            changes.delete = owned
                .iter()
                .filter(|p| p.metadata.name.as_ref().is_some_and(|n| doomed.contains(n)))
                .collect();
        }
        apply(ctx, &ds, &spec.template, &hash, &changes).await?;

        let live = live_revisions(&revisions, &owned);
        truncate_history(ctx, &revisions.all, &live, spec.revision_history_limit).await?;

        let (mut status, becomes_available) =
            compute_status(&placements, &by_node, &hash, min_ready, now);
        status.observed_generation = ds.metadata.generation;
        status.collision_count = revisions.collision_count;
        status.conditions = old_status.conditions.clone();
        if old_status != status {
            let mut updated = ds.clone();
            updated.status = Some(status);
            ctx.replace_status(&updated).await?;
        }
        let wait = [retry_after, becomes_available].into_iter().flatten().min();
        Ok(match wait.and_then(|w| w.to_std().ok()) {
            Some(w) => Action::RequeueAfter(w.max(Duration::from_millis(100))),
            None => Action::Done,
        })
    }
}

/// Creates the pods, then deletes, recording Events as Kubernetes' PodControl does. Creation
/// stops at the first failure (the rest would likely fail alike); the first error is returned
/// after the deletions.
async fn apply(
    ctx: &Ctx,
    ds: &DaemonSet,
    template: &PodTemplateSpec,
    hash: &str,
    changes: &Changes<'_>,
) -> Result<(), ControllerError> {
    let namespace = ds.metadata.namespace.as_deref();
    let mut first_error = None;
    if !changes.create_on.is_empty() {
        let template = daemon_pod_template(ds, template, hash);
        let generate_name = format!("{}-", ds.metadata.name.as_deref().unwrap_or_default());
        for node in &changes.create_on {
            let mut pod = pods::from_template(
                &template,
                controller_ref(ds),
                None,
                Some(generate_name.clone()),
            );
            pin_to_node(pod.spec.get_or_insert_with(Default::default), node);
            match ctx.create(namespace, &pod).await {
                Ok(created) => {
                    let name = created.metadata.name.unwrap_or_default();
                    ctx.event(
                        ds,
                        EventType::Normal,
                        "SuccessfulCreate",
                        format!("Created pod: {name}"),
                    );
                }
                Err(err) => {
                    ctx.event(
                        ds,
                        EventType::Warning,
                        "FailedCreate",
                        format!("Error creating: {err}"),
                    );
                    first_error = Some(err);
                    break;
                }
            }
        }
    }
    for pod in &changes.delete {
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        let options = Delete {
            uid: pod.metadata.uid.clone(),
            ..Default::default()
        };
        match ctx.delete::<Pod>(namespace, name, &options).await {
            Ok(()) => ctx.event(
                ds,
                EventType::Normal,
                "SuccessfulDelete",
                format!("Deleted pod: {name}"),
            ),
            Err(err) => {
                ctx.event(
                    ds,
                    EventType::Warning,
                    "FailedDelete",
                    format!("Error deleting: {err}"),
                );
                first_error.get_or_insert(err);
            }
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// The revisions history truncation must keep: the current one and any a pod still has.
fn live_revisions(revisions: &Revisions, owned: &[Pod]) -> BTreeSet<String> {
    let pod_hashes: BTreeSet<&str> = owned
        .iter()
        .filter_map(|p| p.metadata.labels.as_ref()?.get(REVISION_HASH_LABEL))
        .map(String::as_str)
        .collect();
    let mut live: BTreeSet<String> = revisions.update.metadata.name.iter().cloned().collect();
    live.extend(
        revisions
            .all
            .iter()
            .filter(|r| pod_hashes.contains(revision_hash(r).as_str()))
            .filter_map(|r| r.metadata.name.clone()),
    );
    live
}

/// The template of new daemon pods: the revision hash and template generation labels, and
/// the daemon tolerations (Kubernetes' CreatePodTemplate).
fn daemon_pod_template(ds: &DaemonSet, template: &PodTemplateSpec, hash: &str) -> PodTemplateSpec {
    let mut template = template.clone();
    let labels = template
        .metadata
        .get_or_insert_with(Default::default)
        .labels
        .get_or_insert_with(BTreeMap::new);
    if let Some(generation) = template_generation(ds) {
        labels.insert(TEMPLATE_GENERATION_LABEL.into(), generation.to_string());
    }
    labels.insert(REVISION_HASH_LABEL.into(), hash.to_string());
    add_daemon_tolerations(template.spec.get_or_insert_with(Default::default));
    template
}

/// The template generation: the API server's annotation, else metadata.generation.
fn template_generation(ds: &DaemonSet) -> Option<i64> {
    ds.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(TEMPLATE_GENERATION_ANNOTATION))
        .and_then(|g| g.parse().ok())
        .or(ds.metadata.generation)
}

#[cfg(test)]
#[path = "daemonset_tests.rs"]
mod tests;
