//! The ReplicaSet controller, and through the same code the ReplicationController manager, as
//! kube-controller-manager 1.32 runs them: keep `spec.replicas` active pods matching the
//! selector, adopting matching orphans and releasing pods that stopped matching, and report
//! replicas / fullyLabeledReplicas / readyReplicas / availableReplicas / observedGeneration and
//! the ReplicaFailure condition in the status.
//!
//! Finding orphans. Kubernetes looks at every pod of the namespace on each sync; here that
//! would cost O(pods in the namespace) per reconcile. Instead orphans are found
//! - by the watch: [`Reconciler::keys_for`] maps a pod that is new or just lost its controller
//!   or changed labels, and has no controller, to the owners whose selector matches it, and
//!   notes its name for them (these changes are rare: controllers create pods with an owner);
//! - by a scan of the namespace when the owner's spec is not observed yet
//!   (`status.observedGeneration != metadata.generation`: it was just created or its selector
//!   or another spec field changed), at most once per owner uid and selector while the process
//!   runs, since a rolling update changes `spec.replicas` many times without a new selector.
//!
//! A restarted process only scans owners with an unobserved spec; orphans that appeared while
//! it was down reach it through the watch's initial listing, like any other change.

use std::collections::{BTreeSet, HashMap};
use std::marker::PhantomData;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use bramble_api::labels::Selector;
use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetCondition, ReplicaSetStatus};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec, ReplicationController};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::chrono::{DateTime, Utc};

use super::context::{full_name, ControllerError, Ctx, Object, TypeRef};
use super::pods;
use super::reconciler::{default_keys, Action, Key, Reconciler, WatchedChange};
use super::replica_pods::{self, OrphanSearch, ScaleFailure};

/// The condition type set while pods cannot be created or deleted.
pub const REPLICA_FAILURE: &str = "ReplicaFailure";

/// What the controller needs from a ReplicaSet or a ReplicationController's spec.
#[derive(Debug, Clone)]
pub struct ReplicaSpec<'a> {
    /// spec.replicas (1 when absent, as the API server defaults it).
    pub replicas: i32,
    /// spec.minReadySeconds.
    pub min_ready_seconds: i32,
    /// The pods it selects.
    pub selector: Selector,
    /// The template of new pods.
    pub template: Option<&'a PodTemplateSpec>,
}

/// A kind managed by [`ReplicaController`]: ReplicaSet or ReplicationController. The status is
/// read and written in ReplicaSet's shape (the two statuses have the same fields).
pub trait ReplicaKind: Object + 'static {
    /// The controller's name: field manager and Event source.
    const CONTROLLER: &'static str;

    /// The spec as the controller reads it, or why it cannot be used (a bad selector).
    fn replica_spec(&self) -> Result<ReplicaSpec<'_>, String>;

    /// The status, empty when absent.
    fn replica_status(&self) -> ReplicaSetStatus;

    /// Replaces the status.
    fn set_replica_status(&mut self, status: ReplicaSetStatus);
}

impl ReplicaKind for ReplicaSet {
    const CONTROLLER: &'static str = "replicaset-controller";

    fn replica_spec(&self) -> Result<ReplicaSpec<'_>, String> {
        let spec = self.spec.as_ref().ok_or("spec is missing")?;
        Ok(ReplicaSpec {
            replicas: spec.replicas.unwrap_or(1),
            min_ready_seconds: spec.min_ready_seconds.unwrap_or(0),
            selector: pods::selector(Some(&spec.selector)).map_err(|e| e.to_string())?,
            template: spec.template.as_ref(),
        })
    }

    fn replica_status(&self) -> ReplicaSetStatus {
        self.status.clone().unwrap_or_default()
    }

    fn set_replica_status(&mut self, status: ReplicaSetStatus) {
        self.status = Some(status);
    }
}

/// The replica controller for kind `K`. Use [`ReplicaSetController::new`] or
/// [`ReplicationManager::new`].
pub struct ReplicaController<K> {
    /// Orphan pods the watch reported as matching an owner, to look at in its next reconcile.
    hints: Mutex<HashMap<Key, BTreeSet<String>>>,
    /// Owners whose namespace was scanned for orphans: key -> (uid, selector).
    scanned: Mutex<HashMap<Key, (String, String)>>,
    kind: PhantomData<fn() -> K>,
}

/// The ReplicaSet controller ("replicaset-controller").
pub type ReplicaSetController = ReplicaController<ReplicaSet>;

/// The ReplicationController manager ("replication-controller").
pub type ReplicationManager = ReplicaController<ReplicationController>;

impl<K: ReplicaKind> ReplicaController<K> {
    /// A controller with nothing remembered.
    pub fn new() -> Self {
        ReplicaController {
            hints: Mutex::new(HashMap::new()),
            scanned: Mutex::new(HashMap::new()),
            kind: PhantomData,
        }
    }

    fn hints(&self) -> MutexGuard<'_, HashMap<Key, BTreeSet<String>>> {
        self.hints.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn scanned(&self) -> MutexGuard<'_, HashMap<Key, (String, String)>> {
        self.scanned.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Owners in the pod's namespace that could adopt the pod of `change`, if it is an orphan
    /// that is new, just released or relabelled (otherwise it was looked at before).
    fn adopters(&self, change: &WatchedChange, ctx: &Ctx) -> Vec<Key> {
        let fresh = change.previous_labels.as_ref() != Some(&change.labels)
            || change.previous_controller.is_some();
        if change.kind != TypeRef::of::<Pod>()
            || change.deleted
            || change.controller.is_some()
            || !fresh
        {
            return Vec::new();
        }
        let namespace = change.namespace.as_deref();
        let mut keys = Vec::new();
        for value in ctx.backend().list(TypeRef::of::<K>(), namespace) {
            // A malformed owner cannot adopt; its own reconcile reports it.
            let Ok(owner) = serde_json::from_value::<K>(value) else {
                continue;
            };
            let meta = owner.metadata();
            let matches = owner
                .replica_spec()
                .is_ok_and(|spec| spec.selector.matches(&change.labels));
            if matches && meta.deletion_timestamp.is_none() {
                keys.push(Key::new(
                    namespace,
                    meta.name.as_deref().unwrap_or_default(),
                ));
            }
        }
        keys
    }

    /// Where this reconcile looks for orphans.
    fn orphan_search<'a>(
        &self,
        key: &Key,
        owner: &K,
        selector: &Selector,
        hinted: &'a BTreeSet<String>,
    ) -> (OrphanSearch<'a>, Option<(String, String)>) {
        let observed = owner.replica_status().observed_generation;
        let mark = (
            owner.metadata().uid.clone().unwrap_or_default(),
            selector.to_string(),
        );
        let unobserved = observed != owner.metadata().generation;
        if unobserved && self.scanned().get(key) != Some(&mark) {
            (OrphanSearch::Namespace, Some(mark))
        } else {
            (OrphanSearch::Named(hinted), None)
        }
    }
}

impl<K: ReplicaKind> Default for ReplicaController<K> {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait]
impl<K: ReplicaKind> Reconciler for ReplicaController<K> {
    fn name(&self) -> &'static str {
        K::CONTROLLER
    }

    fn kind(&self) -> TypeRef {
        TypeRef::of::<K>()
    }

    fn watches(&self) -> Vec<TypeRef> {
        vec![TypeRef::of::<Pod>()]
    }

    fn keys_for(&self, change: &WatchedChange, ctx: &Ctx) -> Vec<Key> {
        let mut keys = default_keys(self.kind(), change);
        for key in self.adopters(change, ctx) {
            self.hints()
                .entry(key.clone())
                .or_default()
                .insert(change.name.clone());
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
        keys
    }

    async fn reconcile(&self, key: &Key, ctx: &Ctx) -> Result<Action, ControllerError> {
        let hinted = self.hints().remove(key).unwrap_or_default();
        let owner = match ctx.get::<K>(key.namespace.as_deref(), &key.name) {
            Ok(Some(owner)) => owner,
            Ok(None) => {
                self.scanned().remove(key);
                return Ok(Action::Done);
            }
            Err(ControllerError::Decode { message, .. }) => {
                tracing::warn!(controller = K::CONTROLLER, key = %key, %message, "skipping a malformed object");
                return Ok(Action::Done);
            }
            Err(e) => return Err(e),
        };
        if owner.metadata().deletion_timestamp.is_some() {
            return Ok(Action::Done);
        }
        let spec = match owner.replica_spec() {
            Ok(spec) => spec,
            Err(message) => {
                tracing::warn!(controller = K::CONTROLLER, key = %key, %message, "cannot manage pods");
                return Ok(Action::Done);
            }
        };

        let (search, mark) = self.orphan_search(key, &owner, &spec.selector, &hinted);
        let active = match replica_pods::claim_pods(ctx, &owner, &spec.selector, search).await {
            Ok(active) => active,
            Err(e) => {
                self.hints().entry(key.clone()).or_default().extend(hinted);
                return Err(e);
            }
        };
        if let Some(mark) = mark {
            self.scanned().insert(key.clone(), mark);
        }

        let scaled = replica_pods::scale(ctx, &owner, &spec, &active).await;
        let now = ctx.now();
        let current = owner.replica_status();
        let next = next_status(&owner, &spec, &active, scaled.as_ref().err(), now);
        if !same_status(&current, &next) {
            let mut updated = owner.clone();
            updated.set_replica_status(next);
            ctx.replace_status(&updated).await?;
            tracing::debug!(owner = %full_name(owner.metadata()), "status updated");
        }
        match scaled {
            Err(ScaleFailure {
                error: Some(error), ..
            }) => Err(error),
            _ => Ok(next_availability(&active, spec.min_ready_seconds, now)
                .map_or(Action::Done, Action::RequeueAfter)),
        }
    }
}

/// The status the claimed `active` pods call for (counted before this reconcile's creates and
/// deletes, whose effect the next reconcile sees), with the ReplicaFailure condition added on
/// a failure (kept as first reported while failures go on) and dropped on success.
fn next_status<K: ReplicaKind>(
    owner: &K,
    spec: &ReplicaSpec<'_>,
    active: &[Pod],
    failure: Option<&ScaleFailure>,
    now: DateTime<Utc>,
) -> ReplicaSetStatus {
    let template_labels = spec
        .template
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.as_ref());
    let fully_labeled = active
        .iter()
        .filter(|pod| {
            template_labels
                .into_iter()
                .flatten()
                .all(|(k, v)| pod.metadata.labels.as_ref().and_then(|l| l.get(k)) == Some(v))
        })
        .count();
    let ready = active.iter().filter(|p| pods::is_ready(p)).count();
    let available = active
        .iter()
        .filter(|p| pods::is_available(p, spec.min_ready_seconds, now))
        .count();

    let mut conditions = owner.replica_status().conditions.unwrap_or_default();
    let failing = conditions.iter().any(|c| c.type_ == REPLICA_FAILURE);
    match failure {
        Some(failure) if !failing => conditions.push(ReplicaSetCondition {
            type_: REPLICA_FAILURE.to_string(),
            status: "True".to_string(),
            reason: Some(failure.reason.to_string()),
            message: Some(failure.message.clone()),
            last_transition_time: Some(Time(now)),
        }),
        None if failing => conditions.retain(|c| c.type_ != REPLICA_FAILURE),
        _ => {}
    }
    ReplicaSetStatus {
        replicas: count(active.len()),
        fully_labeled_replicas: omit_zero(fully_labeled),
        ready_replicas: omit_zero(ready),
        available_replicas: omit_zero(available),
        observed_generation: owner.metadata().generation,
        conditions: (!conditions.is_empty()).then_some(conditions),
    }
}

fn count(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// Zero counts are left out, as Kubernetes' omitempty fields are.
fn omit_zero(n: usize) -> Option<i32> {
    (n > 0).then(|| count(n))
}

/// Equal as Kubernetes compares them: absent counts are zero, absent conditions are none.
fn same_status(a: &ReplicaSetStatus, b: &ReplicaSetStatus) -> bool {
    let counts = |s: &ReplicaSetStatus| {
        (
            s.replicas,
            s.fully_labeled_replicas.unwrap_or(0),
            s.ready_replicas.unwrap_or(0),
            s.available_replicas.unwrap_or(0),
            s.observed_generation.unwrap_or(0),
        )
    };
    counts(a) == counts(b)
        && a.conditions.as_deref().unwrap_or_default()
            == b.conditions.as_deref().unwrap_or_default()
}

/// How long until the next ready pod becomes available (minReadySeconds after turning ready).
fn next_availability(
    active: &[Pod],
    min_ready_seconds: i32,
    now: DateTime<Utc>,
) -> Option<Duration> {
    if min_ready_seconds <= 0 {
        return None;
    }
    let wait = k8s_openapi::chrono::Duration::seconds(i64::from(min_ready_seconds));
    active
        .iter()
        .filter_map(pods::ready_since)
        .filter_map(|since| since.checked_add_signed(wait))
        .filter(|at| *at > now)
        .map(|at| at - now)
        .min()
        .and_then(|d| d.to_std().ok())
}

#[cfg(test)]
#[path = "replicaset_tests.rs"]
pub(crate) mod tests;
