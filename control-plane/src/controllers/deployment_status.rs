//! A Deployment's status as kubectl rollout status and describe read it: the replica counts
//! summed from its ReplicaSets, the Available and Progressing conditions with Kubernetes'
//! reasons and messages, the progress deadline (and when to look at it again), and the
//! paused/resumed markers that keep a long pause from counting against the deadline.

use std::time::Duration;

use k8s_openapi::api::apps::v1::{DeploymentCondition, DeploymentStatus, ReplicaSet};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::chrono::{DateTime, SubsecRound, Utc};

use super::context::ControllerError;
use super::deployment::{
    available_replicas, ready_replicas, rs_name, spec_replicas, status_replicas, Rollout,
};
use super::reconciler::Action;

/// The condition telling whether enough replicas are available.
pub(crate) const AVAILABLE: &str = "Available";
/// The condition telling how the latest rollout goes.
pub(crate) const PROGRESSING: &str = "Progressing";
/// The condition mirrored from a ReplicaSet that cannot create its pods.
pub(crate) const REPLICA_FAILURE: &str = "ReplicaFailure";

/// Progressing: the new ReplicaSet was just created.
pub(crate) const NEW_RS_CREATED: &str = "NewReplicaSetCreated";
/// Progressing: an existing ReplicaSet was found to be the new one.
pub(crate) const FOUND_NEW_RS: &str = "FoundNewReplicaSet";
/// Progressing: the new ReplicaSet is being scaled up or old ones down.
pub(crate) const RS_UPDATED: &str = "ReplicaSetUpdated";
/// Progressing: the rollout completed.
pub(crate) const NEW_RS_AVAILABLE: &str = "NewReplicaSetAvailable";
/// Progressing (False): no progress within progressDeadlineSeconds.
pub(crate) const TIMED_OUT: &str = "ProgressDeadlineExceeded";
/// Progressing (False) and Warning Event: the new ReplicaSet could not be created.
pub(crate) const FAILED_RS_CREATE: &str = "ReplicaSetCreateError";
/// Progressing (Unknown): spec.paused is set.
pub(crate) const PAUSED: &str = "DeploymentPaused";
/// Progressing (Unknown): spec.paused was cleared.
pub(crate) const RESUMED: &str = "DeploymentResumed";

/// A condition that changes now.
pub(crate) fn new_condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
    now: DateTime<Utc>,
) -> DeploymentCondition {
    // Stored times have whole seconds; keeping ours so makes the comparisons exact.
    let now = Time(now.trunc_subsecs(0));
    DeploymentCondition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: Some(reason.to_string()),
        message: Some(message),
        last_update_time: Some(now.clone()),
        last_transition_time: Some(now),
    }
}

/// The condition of `type_`, if set.
pub(crate) fn get_condition<'a>(
    status: &'a DeploymentStatus,
    type_: &str,
) -> Option<&'a DeploymentCondition> {
    status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == type_)
}

/// Sets `condition` unless one with the same status and reason is there; the transition time
/// stays when only the reason changes (SetDeploymentCondition).
pub(crate) fn set_condition(status: &mut DeploymentStatus, mut condition: DeploymentCondition) {
    if let Some(current) = get_condition(status, &condition.type_) {
        if current.status == condition.status {
            if current.reason == condition.reason {
                return;
            }
            condition.last_transition_time = current.last_transition_time.clone();
        }
    }
    remove_condition(status, &condition.type_);
    status
        .conditions
        .get_or_insert_with(Vec::new)
        .push(condition);
}

/// Drops the condition of `type_`.
pub(crate) fn remove_condition(status: &mut DeploymentStatus, type_: &str) {
    if let Some(conditions) = status.conditions.as_mut() {
        conditions.retain(|c| c.type_ != type_);
    }
}

fn count(value: Option<i32>) -> i32 {
    value.unwrap_or(0)
}

/// Zero counts are omitted, as the API serves them.
fn omit_zero(value: i32) -> Option<i32> {
    (value != 0).then_some(value)
}

/// The status as the API would serve it back, for comparing without spurious differences.
fn normalized(status: &DeploymentStatus) -> DeploymentStatus {
    DeploymentStatus {
        observed_generation: status.observed_generation.filter(|g| *g != 0),
        replicas: status.replicas.filter(|n| *n != 0),
        updated_replicas: status.updated_replicas.filter(|n| *n != 0),
        ready_replicas: status.ready_replicas.filter(|n| *n != 0),
        available_replicas: status.available_replicas.filter(|n| *n != 0),
        unavailable_replicas: status.unavailable_replicas.filter(|n| *n != 0),
        collision_count: status.collision_count,
        conditions: status.conditions.clone().filter(|c| !c.is_empty()),
    }
}

impl Rollout<'_> {
    /// metadata.generation of the Deployment.
    fn generation(&self) -> i64 {
        self.deployment.metadata.generation.unwrap_or(0)
    }

    /// The rollout is done: every replica updated and available, and the spec observed.
    pub(crate) fn complete(&self, status: &DeploymentStatus) -> bool {
        let replicas = self.plan.replicas;
        count(status.updated_replicas) == replicas
            && count(status.replicas) == replicas
            && count(status.available_replicas) == replicas
            && status.observed_generation.unwrap_or(0) >= self.generation()
    }

    /// Marks a pause (and a resume) in the Progressing condition, so the time paused does not
    /// count against the progress deadline; a timed-out rollout keeps saying so.
    pub(crate) fn check_paused_conditions(&mut self) {
        if self.plan.progress_deadline.is_none() {
            return;
        }
        let reason = get_condition(&self.status, PROGRESSING).and_then(|c| c.reason.clone());
        if reason.as_deref() == Some(TIMED_OUT) {
            return;
        }
        let marked = reason.as_deref() == Some(PAUSED);
        let (reason, message) = match (self.plan.paused, marked) {
            (true, false) => (PAUSED, "Deployment is paused"),
            (false, true) => (RESUMED, "Deployment is resumed"),
            _ => return,
        };
        let condition = new_condition(
            PROGRESSING,
            "Unknown",
            reason,
            message.to_string(),
            self.ctx.now(),
        );
        set_condition(&mut self.status, condition);
    }

    /// Counts from the ReplicaSets' status and the Available condition (calculateStatus).
    pub(crate) fn calculate_status(&self) -> DeploymentStatus {
        let all: Vec<&ReplicaSet> = self.all_rss().collect();
        let available: i32 = all.iter().copied().map(available_replicas).sum();
        let wanted: i32 = all.iter().copied().map(spec_replicas).sum();
        let mut status = DeploymentStatus {
            observed_generation: Some(self.generation()).filter(|g| *g != 0),
            replicas: omit_zero(all.iter().copied().map(status_replicas).sum()),
            updated_replicas: omit_zero(self.new_rs.as_ref().map_or(0, status_replicas)),
            ready_replicas: omit_zero(all.iter().copied().map(ready_replicas).sum()),
            available_replicas: omit_zero(available),
            unavailable_replicas: omit_zero((wanted - available).max(0)),
            collision_count: self.status.collision_count,
            conditions: self.status.conditions.clone(),
        };
        let now = self.ctx.now();
        let condition = if available >= self.plan.replicas - self.plan.max_unavailable {
            let message = "Deployment has minimum availability.".to_string();
            new_condition(AVAILABLE, "True", "MinimumReplicasAvailable", message, now)
        } else {
            let message = "Deployment does not have minimum availability.".to_string();
            new_condition(
                AVAILABLE,
                "False",
                "MinimumReplicasUnavailable",
                message,
                now,
            )
        };
        set_condition(&mut status, condition);
        status
    }

    /// The status after a rollout step, with the Progressing condition judged against the
    /// deadline and ReplicaSet failures mirrored (syncRolloutStatus). Returns when to look
    /// again for the deadline.
    pub(crate) fn sync_rollout_status(&mut self) -> Action {
        let mut status = self.calculate_status();
        let now = self.ctx.now();
        let subject = match &self.new_rs {
            Some(rs) => format!("ReplicaSet {:?}", rs_name(rs)),
            None => format!("Deployment {:?}", self.name()),
        };
        match self.plan.progress_deadline {
            None => remove_condition(&mut status, PROGRESSING),
            Some(deadline) => {
                let current = get_condition(&self.status, PROGRESSING).cloned();
                let settled = count(status.replicas) == count(status.updated_replicas)
                    && current.as_ref().and_then(|c| c.reason.as_deref()) == Some(NEW_RS_AVAILABLE);
                if !settled {
                    self.judge_progress(&mut status, current, &subject, deadline, now);
                }
            }
        }
        match self.replica_failure() {
            Some(failure) => set_condition(&mut status, failure),
            None => remove_condition(&mut status, REPLICA_FAILURE),
        }
        self.status = status;
        self.deadline_check()
    }

    fn judge_progress(
        &self,
        status: &mut DeploymentStatus,
        current: Option<DeploymentCondition>,
        subject: &str,
        deadline: i32,
        now: DateTime<Utc>,
    ) {
        if self.complete(status) {
            let message = format!("{subject} has successfully progressed.");
            set_condition(
                status,
                new_condition(PROGRESSING, "True", NEW_RS_AVAILABLE, message, now),
            );
        } else if self.progressed(status) {
            // Progress refreshes lastUpdateTime even when the reason stays the same, which
            // set_condition alone would not do.
            let message = format!("{subject} is progressing.");
            let mut condition = new_condition(PROGRESSING, "True", RS_UPDATED, message, now);
            if let Some(current) = current.filter(|c| c.status == "True") {
                condition.last_transition_time = current.last_transition_time;
            }
            remove_condition(status, PROGRESSING);
            set_condition(status, condition);
        } else if timed_out(status, deadline, now) {
            let message = format!("{subject} has timed out progressing.");
            set_condition(
                status,
                new_condition(PROGRESSING, "False", TIMED_OUT, message, now),
            );
        }
    }

    /// More replicas updated, ready or available, or fewer old ones, than the stored status
    /// says (DeploymentProgressing).
    fn progressed(&self, new: &DeploymentStatus) -> bool {
        let old = self.deployment.status.clone().unwrap_or_default();
        let old_old = count(old.replicas) - count(old.updated_replicas);
        let new_old = count(new.replicas) - count(new.updated_replicas);
        count(new.updated_replicas) > count(old.updated_replicas)
            || new_old < old_old
            || count(new.ready_replicas) > count(old.ready_replicas)
            || count(new.available_replicas) > count(old.available_replicas)
    }

    /// The new ReplicaSet's ReplicaFailure condition, else an old one's.
    fn replica_failure(&self) -> Option<DeploymentCondition> {
        let failure_of = |rs: &ReplicaSet| {
            rs.status
                .as_ref()?
                .conditions
                .iter()
                .flatten()
                .find(|c| c.type_ == REPLICA_FAILURE)
                .map(|c| DeploymentCondition {
                    type_: c.type_.clone(),
                    status: c.status.clone(),
                    reason: c.reason.clone(),
                    message: c.message.clone(),
                    last_update_time: c.last_transition_time.clone(),
                    last_transition_time: c.last_transition_time.clone(),
                })
        };
        self.new_rs
            .as_ref()
            .and_then(failure_of)
            .or_else(|| self.old_rss.iter().find_map(failure_of))
    }

    /// When the progress deadline falls if nothing changes, for a rollout still under way
    /// (requeueStuckDeployment, a second late so the deadline has passed).
    fn deadline_check(&self) -> Action {
        let Some(deadline) = self.plan.progress_deadline else {
            return Action::Done;
        };
        let Some(condition) = get_condition(&self.status, PROGRESSING) else {
            return Action::Done;
        };
        let reason = condition.reason.as_deref();
        if self.complete(&self.status)
            || reason == Some(TIMED_OUT)
            || reason == Some(NEW_RS_AVAILABLE)
        {
            return Action::Done;
        }
        let Some(since) = condition.last_update_time.as_ref() else {
            return Action::Done;
        };
        let due = since.0 + k8s_openapi::chrono::Duration::seconds(i64::from(deadline));
        let left = (due - self.ctx.now()).to_std().unwrap_or(Duration::ZERO);
        Action::RequeueAfter(left + Duration::from_secs(1))
    }

    /// Writes the status built so far if it differs from the stored one.
    pub(crate) async fn write_status(&mut self) -> Result<(), ControllerError> {
        let wanted = normalized(&self.status);
        if wanted == normalized(&self.deployment.status.clone().unwrap_or_default()) {
            return Ok(());
        }
        let mut updated = self.deployment.clone();
        updated.status = Some(wanted);
        self.deployment = self.ctx.replace_status(&updated).await?;
        Ok(())
    }
}

/// No progress reported for longer than the deadline (DeploymentTimedOut).
fn timed_out(status: &DeploymentStatus, deadline: i32, now: DateTime<Utc>) -> bool {
    let Some(condition) = get_condition(status, PROGRESSING) else {
        return false;
    };
    match condition.reason.as_deref() {
        Some(NEW_RS_AVAILABLE) => false,
        Some(TIMED_OUT) => true,
        _ => condition.last_update_time.as_ref().is_some_and(|since| {
            since.0 + k8s_openapi::chrono::Duration::seconds(i64::from(deadline)) < now
        }),
    }
}

#[cfg(test)]
#[path = "deployment_status_tests.rs"]
mod tests;
