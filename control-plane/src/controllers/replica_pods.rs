//! What the replica controllers (ReplicaSet, ReplicationController) do to their pods, as
//! kube-controller-manager 1.32 does it: claim them (adopt matching orphans, release owned pods
//! that stopped matching), create the missing ones in slow-start batches, delete the surplus
//! ones cheapest first.

use std::collections::BTreeSet;

use bramble_api::labels::Selector;
use futures::future::join_all;
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use serde_json::Value;

use super::context::{
    controller_of, controller_ref, full_name, ControllerError, Ctx, Delete, EventType, TypeRef,
};
use super::pod_ranking;
use super::pods;
use super::replicaset::{ReplicaKind, ReplicaSpec};

/// At most this many pods are created or deleted per reconcile (kube-controller-manager's
/// --replicaset-burst-replicas default).
pub const BURST_REPLICAS: usize = 500;

/// Where to look for orphan pods the owner might adopt.
#[derive(Debug, Clone, Copy)]
pub enum OrphanSearch<'a> {
    /// Every pod of the namespace (when the owner is new or its spec changed).
    Namespace,
    /// Only these pods, reported as new orphans by the watch.
    Named(&'a BTreeSet<String>),
}

/// Why adding or removing pods failed: the ReplicaFailure condition's reason and message, and
/// the error to retry on (none when retrying cannot help, e.g. no pod template).
#[derive(Debug)]
pub struct ScaleFailure {
    /// FailedCreate or FailedDelete.
    pub reason: &'static str,
    /// The condition's message.
    pub message: String,
    /// The error that makes the reconcile retry.
    pub error: Option<ControllerError>,
}

/// The active pods `owner` controls after claiming: owned pods that still match `selector`,
/// plus matching active orphans it adopted. Owned pods that no longer match are released.
/// Every pod is tried; the first error is returned after the others were handled.
pub async fn claim_pods<K: ReplicaKind>(
    ctx: &Ctx,
    owner: &K,
    selector: &Selector,
    search: OrphanSearch<'_>,
) -> Result<Vec<Pod>, ControllerError> {
    let meta = owner.metadata();
    let namespace = meta.namespace.as_deref();
    let uid = meta.uid.as_deref().unwrap_or_default();
    let mut claimed = Vec::new();
    let mut first_error = None;
    for pod in ctx.owned::<Pod>(namespace, uid)? {
        if !pods::is_active(&pod)
            || controller_of(&pod.metadata).map(|r| r.uid.as_str()) != Some(uid)
        {
            continue;
        }
        if pods::selects(selector, &pod.metadata) {
            claimed.push(pod);
        } else if let Err(e) = release(ctx, pod, uid).await {
            first_error.get_or_insert(e);
        }
    }
    for pod in orphans(ctx, namespace, search)? {
        if !pods::is_active(&pod) || !pods::selects(selector, &pod.metadata) {
            continue;
        }
        match adopt(ctx, owner, pod).await {
            Ok(Some(adopted)) => claimed.push(adopted),
            Ok(None) => {}
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(claimed),
    }
}

/// Creates or deletes pods so that `active` (the claimed pods) becomes `spec.replicas`.
pub async fn scale<K: ReplicaKind>(
    ctx: &Ctx,
    owner: &K,
    spec: &ReplicaSpec<'_>,
    active: &[Pod],
) -> Result<(), ScaleFailure> {
    let want = usize::try_from(spec.replicas).unwrap_or(0);
    if active.len() < want {
        let count = (want - active.len()).min(BURST_REPLICAS);
        let Some(template) = spec.template else {
            let message = "spec.template is required to create pods".to_string();
            ctx.event(
                owner,
                EventType::Warning,
                "FailedCreate",
                format!("Error creating: {message}"),
            );
            return Err(ScaleFailure {
                reason: "FailedCreate",
                message,
                error: None,
            });
        };
        create_pods(ctx, owner, template, count)
            .await
            .map_err(|e| ScaleFailure {
                reason: "FailedCreate",
                message: api_message(&e),
                error: Some(e),
            })
    } else if active.len() > want {
        let count = (active.len() - want).min(BURST_REPLICAS);
        let mut victims: Vec<&Pod> = active.iter().collect();
        // Deleting them all needs no ranking (and no look at the siblings).
        if count < victims.len() {
            let colocated = pod_ranking::colocation(&related_pods(ctx, owner));
            pod_ranking::sort_for_deletion(&mut victims, &colocated, ctx.now());
        }
        delete_pods(ctx, owner, &victims[..count])
            .await
            .map_err(|e| ScaleFailure {
                reason: "FailedDelete",
                message: format!("unable to delete pods: {}", api_message(&e)),
                error: Some(e),
            })
    } else {
        Ok(())
    }
}

/// The server's own message for an API error (what Kubernetes puts in Events and conditions).
pub fn api_message(error: &ControllerError) -> String {
    match error {
        ControllerError::Api { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

/// Creates `count` pods in batches of 1, 2, 4, ...; a batch with a failure is the last one,
/// so a quota or admission error costs one request, not `count`.
async fn create_pods<K: ReplicaKind>(
    ctx: &Ctx,
    owner: &K,
    template: &PodTemplateSpec,
    count: usize,
) -> Result<(), ControllerError> {
    let mut remaining = count;
    let mut batch = remaining.min(1);
    while batch > 0 {
        let results = join_all((0..batch).map(|_| create_pod(ctx, owner, template))).await;
        if let Some(error) = results.into_iter().find_map(Result::err) {
            tracing::info!(
                owner = %full_name(owner.metadata()),
                skipped = remaining - batch,
                "slow-start failure, skipping the remaining pod creations"
            );
            return Err(error);
        }
        remaining -= batch;
        batch = (2 * batch).min(remaining);
    }
    Ok(())
}

async fn create_pod<K: ReplicaKind>(
    ctx: &Ctx,
    owner: &K,
    template: &PodTemplateSpec,
) -> Result<(), ControllerError> {
    let meta = owner.metadata();
    let prefix = format!("{}-", meta.name.as_deref().unwrap_or_default());
    let pod = pods::from_template(template, controller_ref(owner), None, Some(prefix));
    match ctx.create(meta.namespace.as_deref(), &pod).await {
        Ok(created) => {
            let name = created.metadata.name.as_deref().unwrap_or_default();
            ctx.event(
                owner,
                EventType::Normal,
                "SuccessfulCreate",
                format!("Created pod: {name}"),
            );
            Ok(())
        }
        // Every create would fail the same way; the namespace is going away with its owner.
        Err(e) if namespace_terminating(&e) => Ok(()),
        Err(e) => {
            let message = format!("Error creating: {}", api_message(&e));
            ctx.event(owner, EventType::Warning, "FailedCreate", message);
            Err(e)
        }
    }
}

fn namespace_terminating(error: &ControllerError) -> bool {
    matches!(error, ControllerError::Api { code: 403, message, .. }
        if message.contains("because it is being terminated"))
}

/// Deletes `victims` (each only if it is still the pod with that uid); the first error is
/// returned after every delete was tried.
async fn delete_pods<K: ReplicaKind>(
    ctx: &Ctx,
    owner: &K,
    victims: &[&Pod],
) -> Result<(), ControllerError> {
    let results = join_all(victims.iter().map(|pod| delete_pod(ctx, owner, pod))).await;
    results
        .into_iter()
        .find_map(Result::err)
        .map_or(Ok(()), Err)
}

async fn delete_pod<K: ReplicaKind>(
    ctx: &Ctx,
    owner: &K,
    pod: &Pod,
) -> Result<(), ControllerError> {
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let options = Delete {
        uid: pod.metadata.uid.clone(),
        ..Delete::default()
    };
    match ctx
        .delete::<Pod>(pod.metadata.namespace.as_deref(), name, &options)
        .await
    {
        Ok(()) => {
            ctx.event(
                owner,
                EventType::Normal,
                "SuccessfulDelete",
                format!("Deleted pod: {name}"),
            );
            Ok(())
        }
        // Gone already, or replaced by a namesake (uid precondition): nothing of ours to delete.
        Err(e) if e.is_not_found() || e.is_conflict() => Ok(()),
        Err(e) => {
            let message = format!("Error deleting: {}", api_message(&e));
            ctx.event(owner, EventType::Warning, "FailedDelete", message);
            Err(e)
        }
    }
}

/// The pods of every replica set controlled by the same owner as `owner` (a Deployment's
/// replica sets), to rank victims by how crowded their node is. None without such an owner.
fn related_pods<K: ReplicaKind>(ctx: &Ctx, owner: &K) -> Vec<Pod> {
    let meta = owner.metadata();
    let Some(parent) = controller_of(meta) else {
        return Vec::new();
    };
    let namespace = meta.namespace.as_deref();
    let siblings = match ctx.owned::<K>(namespace, &parent.uid) {
        Ok(siblings) => siblings,
        Err(e) => {
            tracing::warn!(owner = %full_name(meta), error = %e, "cannot list sibling replica sets");
            return Vec::new();
        }
    };
    let mut related = Vec::new();
    for sibling in siblings {
        let Some(uid) = sibling.metadata().uid.as_deref() else {
            continue;
        };
        if controller_of(sibling.metadata()).map(|r| r.uid.as_str()) != Some(parent.uid.as_str()) {
            continue;
        }
        match ctx.owned::<Pod>(namespace, uid) {
            Ok(pods) => related.extend(
                pods.into_iter()
                    .filter(|p| controller_of(&p.metadata).map(|r| r.uid.as_str()) == Some(uid)),
            ),
            Err(e) => {
                tracing::warn!(owner = %full_name(meta), error = %e, "cannot list related pods")
            }
        }
    }
    related
}

/// Removes `owner_uid` from the pod's ownerReferences; a pod gone meanwhile is fine.
async fn release(ctx: &Ctx, mut pod: Pod, owner_uid: &str) -> Result<(), ControllerError> {
    if let Some(refs) = pod.metadata.owner_references.as_mut() {
        refs.retain(|r| r.uid != owner_uid);
    }
    if pod
        .metadata
        .owner_references
        .as_ref()
        .is_some_and(Vec::is_empty)
    {
        pod.metadata.owner_references = None;
    }
    match ctx.replace(&pod).await {
        Ok(_) => Ok(()),
        Err(e) if e.is_not_found() => Ok(()),
        Err(e) => Err(e),
    }
}

/// Makes `owner` the controller of the orphan `pod`; returns the pod as stored, or None when it
/// is gone.
async fn adopt<K: ReplicaKind>(
    ctx: &Ctx,
    owner: &K,
    mut pod: Pod,
) -> Result<Option<Pod>, ControllerError> {
    let reference = controller_ref(owner);
    let refs = pod.metadata.owner_references.get_or_insert_with(Vec::new);
    // A plain (non-controller) reference to the owner becomes the controller reference.
    refs.retain(|r| r.uid != reference.uid);
    refs.push(reference);
    match ctx.replace(&pod).await {
        Ok(stored) => Ok(Some(stored)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

/// Pods without a controller, where `search` says to look.
fn orphans(
    ctx: &Ctx,
    namespace: Option<&str>,
    search: OrphanSearch<'_>,
) -> Result<Vec<Pod>, ControllerError> {
    let found = match search {
        // Owned pods are most of a namespace: skip them before paying for a typed decode.
        OrphanSearch::Namespace => ctx
            .backend()
            .list(TypeRef::of::<Pod>(), namespace)
            .into_iter()
            .filter(|v| !has_controller(v))
            .filter_map(decode_pod)
            .collect(),
        OrphanSearch::Named(names) => {
            let mut found = Vec::new();
            for name in names {
                found.extend(ctx.get::<Pod>(namespace, name)?);
            }
            found
        }
    };
    Ok(found
        .into_iter()
        .filter(|p| controller_of(&p.metadata).is_none())
        .collect())
}

fn has_controller(pod: &Value) -> bool {
    pod.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .is_some_and(|refs| refs.iter().any(|r| r["controller"] == Value::Bool(true)))
}

/// A pod from its JSON form; a malformed one is logged and skipped.
fn decode_pod(value: Value) -> Option<Pod> {
    let name = value
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    serde_json::from_value(value)
        .map_err(|e| tracing::warn!(pod = %name, error = %e, "skipping a malformed pod"))
        .ok()
}

#[cfg(test)]
#[path = "replica_pods_tests.rs"]
mod tests;
