//! Taking pods off a node the way Kubernetes' node controllers do: the Ready condition turned
//! False for a node that went silent, the DisruptionTarget condition that tells a Job's
//! podFailurePolicy why a pod went, the Failed phase a force delete leaves behind for a pod no
//! kubelet will ever finish, and deletes guarded by the pod's uid so a pod recreated under the
//! same name is never hit. Also what the node-keyed controllers doing it share: the nodes a
//! pod change concerns ([`node_keys`]) and the next moment a pod is due ([`Soonest`]).

use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, PodCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::chrono::{DateTime, Utc};

use super::context::{ControllerError, Ctx, Delete, TypeRef};
use super::pods;
use super::reconciler::{Action, Key, WatchedChange};

/// The pod condition saying why a pod is being taken down.
pub const DISRUPTION_TARGET: &str = "DisruptionTarget";

/// Kubernetes' `UpdatePodCondition`: sets `condition` on the pod, keeping the old transition
/// time when the status did not change, and says whether anything changed.
pub fn set_condition(pod: &mut Pod, mut condition: PodCondition, now: DateTime<Utc>) -> bool {
    condition.last_transition_time = Some(Time(now));
    let conditions = pod
        .status
        .get_or_insert_with(Default::default)
        .conditions
        .get_or_insert_with(Vec::new);
    let Some(old) = conditions.iter_mut().find(|c| c.type_ == condition.type_) else {
        conditions.push(condition);
        return true;
    };
    if old.status == condition.status {
        condition.last_transition_time = old.last_transition_time.clone();
    }
    if *old == condition {
        return false;
    }
    *old = condition;
    true
}

/// A DisruptionTarget=True condition with `reason` and `message`.
pub fn disruption(reason: &str, message: &str) -> PodCondition {
    PodCondition {
        type_: DISRUPTION_TARGET.to_string(),
        status: "True".to_string(),
        reason: Some(reason.to_string()),
        message: Some(message.to_string()),
        ..Default::default()
    }
}

/// Writes the pod's status changed by `change`, if it changed anything. Returns the pod as
/// stored, or None when it is gone.
async fn update_status(
    ctx: &Ctx,
    pod: &Pod,
    change: impl FnOnce(&mut Pod) -> bool,
) -> Result<Option<Pod>, ControllerError> {
    let mut next = pod.clone();
    if !change(&mut next) {
        return Ok(Some(next));
    }
    match ctx.replace_status(&next).await {
        Ok(stored) => Ok(Some(stored)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

/// MarkPodsNotReady for one pod: its Ready condition (when it has one) turns False, keeping
/// its reason and message. Returns the pod as stored and whether it was changed, or None
/// when it is gone.
pub async fn mark_not_ready(ctx: &Ctx, pod: &Pod) -> Result<Option<(Pod, bool)>, ControllerError> {
    let ready = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"));
    let Some(ready) = ready.filter(|c| c.status != "False") else {
        return Ok(Some((pod.clone(), false)));
    };
    let condition = PodCondition {
        status: "False".to_string(),
        ..ready.clone()
    };
    let now = ctx.now();
    let stored = update_status(ctx, pod, |p| set_condition(p, condition, now)).await?;
    Ok(stored.map(|p| (p, true)))
}

/// Deletes `pod` if it still has its uid; a pod already gone, or replaced by another of the
/// same name (the uid precondition fails), is not an error. Says whether it was deleted.
async fn delete(ctx: &Ctx, pod: &Pod, grace_period: Option<i64>) -> Result<bool, ControllerError> {
    let options = Delete {
        uid: pod.metadata.uid.clone(),
        grace_period,
        ..Default::default()
    };
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    match ctx
        .delete::<Pod>(pod.metadata.namespace.as_deref(), name, &options)
        .await
    {
        Ok(()) => Ok(true),
        Err(e) if e.is_conflict() || e.is_not_found() => Ok(false),
        Err(e) => Err(e),
    }
}

/// A graceful eviction: the DisruptionTarget condition, then a delete with the pod's own grace
/// period (its node stops it). Says whether the pod was deleted (false when it was gone).
pub async fn evict(ctx: &Ctx, pod: &Pod, condition: PodCondition) -> Result<bool, ControllerError> {
    let now = ctx.now();
    let Some(pod) = update_status(ctx, pod, |p| set_condition(p, condition, now)).await? else {
        return Ok(false);
    };
    delete(ctx, &pod, None).await
}

/// A force delete (grace period 0), for a pod no kubelet will finish: unless it has finished,
/// it is first marked Failed (with `condition`, if any) so whoever watches it sees it failed
/// rather than vanish while Running. Says whether the pod was deleted.
pub async fn force_delete(
    ctx: &Ctx,
    pod: &Pod,
    condition: Option<PodCondition>,
) -> Result<bool, ControllerError> {
    let pod = if pods::is_finished(pod) {
        pod.clone()
    } else {
        let now = ctx.now();
        let marked = update_status(ctx, pod, |p| {
            let status = p.status.get_or_insert_with(Default::default);
            status.phase = Some("Failed".to_string());
            if let Some(condition) = condition {
                set_condition(p, condition, now);
            }
            true
        })
        .await?;
        let Some(pod) = marked else {
            return Ok(false);
        };
        pod
    };
    delete(ctx, &pod, Some(0)).await
}

/// The node keys a pod change calls for: the node the pod is bound to now and the one it was
/// bound to before (a pod recreated under the same name on another node leaves the old node's
/// set of pods too). Changes of other kinds, and unbound pods, concern no node.
pub fn node_keys(change: &WatchedChange) -> Vec<Key> {
    if change.kind != TypeRef::of::<Pod>() {
        return Vec::new();
    }
    let mut keys: Vec<Key> = Vec::new();
    for node in [&change.node_name, &change.previous_node_name] {
        let Some(node) = node.as_deref().filter(|n| !n.is_empty()) else {
            continue;
        };
        let key = Key::new(None, node);
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    keys
}

/// The earliest moment a reconcile wants to run again, gathered while it works.
#[derive(Debug, Default, Clone, Copy)]
pub struct Soonest(Option<DateTime<Utc>>);

impl Soonest {
    /// Asks for a look at `at` (the earliest of all asks wins).
    pub fn at(&mut self, at: DateTime<Utc>) {
        self.0 = Some(self.0.map_or(at, |s| s.min(at)));
    }

    /// The reconcile's result: requeue after the time left until the earliest ask (none when
    /// it is due already), or done when nothing was asked.
    pub fn action(self, now: DateTime<Utc>) -> Action {
        match self.0 {
            None => Action::Done,
            Some(at) => Action::RequeueAfter((at - now).to_std().unwrap_or(Duration::ZERO)),
        }
    }
}

#[cfg(test)]
#[path = "pod_disruption_tests.rs"]
pub(crate) mod tests;
