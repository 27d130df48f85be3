//! The Deployment controller (kube-controller-manager's pkg/controller/deployment, 1.32): rolls a
//! Deployment's pod template out through ReplicaSets named `<deployment>-<pod-template-hash>`,
//! one per template revision. It only writes ReplicaSets (the ReplicaSet controller makes the
//! pods) and the Deployment's revision annotation and status; pods are read only to know when a
//! Recreate rollout's old pods are gone.
//!
//! A reconcile reads the Deployment and the ReplicaSets it controls into a [`Rollout`], and then
//! takes the same path kube-controller-manager's `syncDeployment` does: paused or scaled
//! deployments only resize their ReplicaSets (`deployment_scale.rs`), others advance their
//! strategy one step (`deployment_rollout.rs`); revisions and old ReplicaSets are kept in
//! `deployment_history.rs` and the status and conditions in `deployment_status.rs`.

use async_trait::async_trait;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStatus, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use tracing::warn;

use super::context::{controller_of, full_name, ControllerError, Ctx, EventType, TypeRef};
use super::deployment_history::{split_new_and_old, REVISION};
use super::deployment_scale::{Plan, Strategy};
use super::pods;
use super::reconciler::{default_keys, Action, Key, Reconciler, WatchedChange};

/// The controller's name: field manager of its writes and source of its Events.
pub const DEPLOYMENT_CONTROLLER: &str = "deployment-controller";

/// The Deployment controller. Stateless: everything it needs is read at each reconcile.
#[derive(Debug, Default, Clone, Copy)]
pub struct DeploymentController;

impl DeploymentController {
    /// A Deployment controller.
    pub fn new() -> DeploymentController {
        DeploymentController
    }
}

#[async_trait]
impl Reconciler for DeploymentController {
    fn name(&self) -> &'static str {
        DEPLOYMENT_CONTROLLER
    }

    fn kind(&self) -> TypeRef {
        TypeRef::of::<Deployment>()
    }

    fn watches(&self) -> Vec<TypeRef> {
        vec![TypeRef::of::<ReplicaSet>(), TypeRef::of::<Pod>()]
    }

    fn keys_for(&self, change: &WatchedChange, ctx: &Ctx) -> Vec<Key> {
        if change.kind == TypeRef::of::<Pod>() {
            return recreate_keys_for_pod(change, ctx);
        }
        default_keys(self.kind(), change)
    }

    async fn reconcile(&self, key: &Key, ctx: &Ctx) -> Result<Action, ControllerError> {
        let namespace = key.namespace.as_deref();
        let Some(deployment) = ctx.get::<Deployment>(namespace, &key.name)? else {
            return Ok(Action::Done);
        };
        // Its ReplicaSets go with it through garbage collection; nothing left to drive.
        if deployment.metadata.deletion_timestamp.is_some() {
            return Ok(Action::Done);
        }
        let Some(spec) = deployment.spec.clone() else {
            warn!(deployment = %key, "deployment has no spec; skipped");
            return Ok(Action::Done);
        };
        if selects_everything(&spec.selector) {
            return select_all_refused(ctx, deployment).await;
        }
        let plan = match Plan::of(&spec) {
            Ok(plan) => plan,
            Err(message) => {
                warn!(deployment = %key, %message, "deployment strategy unusable; skipped");
                return Ok(Action::Done);
            }
        };
        let selector = match pods::selector(Some(&spec.selector)) {
            Ok(selector) => selector,
            Err(e) => {
                warn!(deployment = %key, error = %e, "deployment selector unusable; skipped");
                return Ok(Action::Done);
            }
        };
        let Some(uid) = deployment.metadata.uid.clone() else {
            warn!(deployment = %key, "deployment has no uid; skipped");
            return Ok(Action::Done);
        };
        let replica_sets = ctx
            .owned::<ReplicaSet>(namespace, &uid)?
            .into_iter()
            .filter(|rs| controller_of(&rs.metadata).is_some_and(|r| r.uid == uid))
            .filter(|rs| pods::selects(&selector, &rs.metadata))
            .collect();
        let mut rollout = Rollout::new(ctx, deployment, spec, plan, replica_sets);
        let action = rollout.run().await?;
        rollout.finish().await?;
        Ok(action)
    }
}

/// An empty selector would adopt every pod of the namespace; Kubernetes refuses to act on it.
fn selects_everything(selector: &LabelSelector) -> bool {
    selector.match_labels.as_ref().is_none_or(|m| m.is_empty())
        && selector
            .match_expressions
            .as_ref()
            .is_none_or(|e| e.is_empty())
}

async fn select_all_refused(ctx: &Ctx, deployment: Deployment) -> Result<Action, ControllerError> {
    ctx.event(
        &deployment,
        EventType::Warning,
        "SelectingAll",
        "This deployment is selecting all pods. A non-empty selector is required.",
    );
    let generation = deployment.metadata.generation.unwrap_or(0);
    let mut status = deployment.status.clone().unwrap_or_default();
    if status.observed_generation.unwrap_or(0) < generation {
        status.observed_generation = Some(generation);
        let mut updated = deployment;
        updated.status = Some(status);
        ctx.replace_status(&updated).await?;
    }
    Ok(Action::Done)
}

/// A deleted pod of a Recreate deployment's ReplicaSet may be the last old pod the rollout
/// waits for; other pod changes reach the deployment through its ReplicaSets' status.
fn recreate_keys_for_pod(change: &WatchedChange, ctx: &Ctx) -> Vec<Key> {
    if !change.deleted {
        return Vec::new();
    }
    let namespace = change.namespace.as_deref();
    let mut keys = Vec::new();
    for owner in [&change.controller, &change.previous_controller]
        .into_iter()
        .flatten()
        .filter(|owner| owner.kind == "ReplicaSet")
    {
        let Ok(Some(rs)) = ctx.get::<ReplicaSet>(namespace, &owner.name) else {
            continue;
        };
        let Some(parent) = controller_of(&rs.metadata).filter(|r| r.kind == "Deployment") else {
            continue;
        };
        let Ok(Some(deployment)) = ctx.get::<Deployment>(namespace, &parent.name) else {
            continue;
        };
        let recreate = deployment
            .spec
            .as_ref()
            .and_then(|s| Plan::of(s).ok())
            .is_some_and(|plan| plan.strategy == Strategy::Recreate);
        let key = Key::new(namespace, &parent.name);
        if recreate
            && deployment.metadata.uid.as_deref() == Some(&parent.uid)
            && !keys.contains(&key)
        {
            keys.push(key);
        }
    }
    keys
}

/// One reconcile of one Deployment: what it read and what it has decided so far. The
/// ReplicaSets are kept up to date with every write so later steps see them as stored.
pub(crate) struct Rollout<'a> {
    /// Where reads and writes go.
    pub ctx: &'a Ctx,
    /// The Deployment as last stored (its status is the one read, until written).
    pub deployment: Deployment,
    /// Its spec.
    pub spec: DeploymentSpec,
    /// The spec's numbers, defaulted and resolved.
    pub plan: Plan,
    /// The status being built (conditions and collisionCount change before the counts do).
    pub status: DeploymentStatus,
    /// The ReplicaSet whose template is the Deployment's, if any.
    pub new_rs: Option<ReplicaSet>,
    /// Every other controlled ReplicaSet, oldest first.
    pub old_rss: Vec<ReplicaSet>,
    /// The revision the Deployment's annotation should show (the new ReplicaSet's).
    pub revision: Option<String>,
}

impl<'a> Rollout<'a> {
    fn new(
        ctx: &'a Ctx,
        deployment: Deployment,
        spec: DeploymentSpec,
        plan: Plan,
        replica_sets: Vec<ReplicaSet>,
    ) -> Rollout<'a> {
        let (new_rs, old_rss) = split_new_and_old(&spec.template, replica_sets);
        Rollout {
            ctx,
            status: deployment.status.clone().unwrap_or_default(),
            deployment,
            spec,
            plan,
            new_rs,
            old_rss,
            revision: None,
        }
    }

    /// kube-controller-manager's syncDeployment after the ReplicaSets are known.
    async fn run(&mut self) -> Result<Action, ControllerError> {
        self.check_paused_conditions();
        self.sync_new_rs_revision().await?;
        if self.plan.paused || self.is_scaling_event() {
            self.sync_scale().await?;
            return Ok(Action::Done);
        }
        match self.plan.strategy {
            Strategy::Recreate => self.rollout_recreate().await,
            Strategy::RollingUpdate => self.rollout_rolling().await,
        }
    }

    /// Records the new ReplicaSet's revision on the Deployment (a metadata write: the status
    /// subresource would not keep it), then the status.
    async fn finish(&mut self) -> Result<(), ControllerError> {
        let shown = self
            .deployment
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(REVISION));
        if let Some(revision) = self.revision.clone().filter(|r| Some(r) != shown) {
            let mut updated = self.deployment.clone();
            updated
                .metadata
                .annotations
                .get_or_insert_with(Default::default)
                .insert(REVISION.to_string(), revision);
            self.deployment = self.ctx.replace(&updated).await?;
        }
        self.write_status().await
    }

    /// The Deployment's name.
    pub fn name(&self) -> &str {
        self.deployment.metadata.name.as_deref().unwrap_or_default()
    }

    /// The Deployment's namespace.
    pub fn namespace(&self) -> Option<&str> {
        self.deployment.metadata.namespace.as_deref()
    }

    /// namespace/name, for logs.
    pub fn full_name(&self) -> String {
        full_name(&self.deployment.metadata)
    }

    /// Old ReplicaSets then the new one.
    pub fn all_rss(&self) -> impl Iterator<Item = &ReplicaSet> {
        self.old_rss.iter().chain(self.new_rs.iter())
    }

    /// The ReplicaSet called `name`, as last stored.
    pub fn rs(&self, name: &str) -> Option<&ReplicaSet> {
        self.all_rss()
            .find(|rs| rs.metadata.name.as_deref() == Some(name))
    }

    /// Takes `stored` (the answer to a write) as the current version of its ReplicaSet.
    pub fn remember(&mut self, stored: ReplicaSet) {
        let name = stored.metadata.name.clone();
        if let Some(new) = self.new_rs.as_mut().filter(|rs| rs.metadata.name == name) {
            *new = stored;
        } else if let Some(old) = self.old_rss.iter_mut().find(|rs| rs.metadata.name == name) {
            *old = stored;
        }
    }

    /// Records a Normal or Warning Event about the Deployment.
    pub fn event(&self, event_type: EventType, reason: &str, message: String) {
        self.ctx
            .event(&self.deployment, event_type, reason, message);
    }
}

/// spec.replicas of a ReplicaSet (the API defaults it to 1).
pub(crate) fn spec_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

/// status.replicas: the ReplicaSet's pods that are not terminating.
pub(crate) fn status_replicas(rs: &ReplicaSet) -> i32 {
    rs.status.as_ref().map_or(0, |s| s.replicas)
}

/// status.availableReplicas.
pub(crate) fn available_replicas(rs: &ReplicaSet) -> i32 {
    rs.status
        .as_ref()
        .and_then(|s| s.available_replicas)
        .unwrap_or(0)
}

/// status.readyReplicas.
pub(crate) fn ready_replicas(rs: &ReplicaSet) -> i32 {
    rs.status
        .as_ref()
        .and_then(|s| s.ready_replicas)
        .unwrap_or(0)
}

/// metadata.name.
pub(crate) fn rs_name(rs: &ReplicaSet) -> String {
    rs.metadata.name.clone().unwrap_or_default()
}

#[cfg(test)]
#[path = "deployment_tests.rs"]
pub(crate) mod tests;
