//! A StatefulSet's status as `kubectl get sts` and `kubectl rollout status statefulset` read
//! it: pods created, ready, available, and how many are of the current and the update revision.

use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSetStatus;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::chrono::{DateTime, Duration as ChronoDuration, Utc};

use super::pods;
use super::reconciler::Action;
use super::stateful_pod::revision_of;

/// The replica counts of `pods` (the set's members as read), and when the next pod that is
/// ready but waiting out minReadySeconds becomes available. Revisions, observedGeneration and
/// collisionCount are the caller's.
pub fn replica_status(
    pods: &[&Pod],
    min_ready_seconds: i32,
    now: DateTime<Utc>,
    current_revision: &str,
    update_revision: &str,
) -> (StatefulSetStatus, Option<ChronoDuration>) {
    let (mut ready, mut available, mut current, mut updated) = (0, 0, 0, 0);
    let mut becomes_available: Option<ChronoDuration> = None;
    for pod in pods {
        if pods::phase(pod) == "Running" {
            if let Some(since) = pods::ready_since(pod) {
                ready += 1;
                if pods::is_available(pod, min_ready_seconds, now) {
                    available += 1;
                } else if min_ready_seconds > 0 && !pods::is_terminating(pod) {
                    let wait = since + ChronoDuration::seconds(i64::from(min_ready_seconds)) - now;
                    becomes_available = Some(becomes_available.map_or(wait, |w| w.min(wait)));
                }
            }
        }
        if !pods::is_terminating(pod) {
            let revision = revision_of(pod);
            if revision == Some(current_revision) {
                current += 1;
            }
            if revision == Some(update_revision) {
                updated += 1;
            }
        }
    }
    let status = StatefulSetStatus {
        replicas: i32::try_from(pods.len()).unwrap_or(i32::MAX),
        ready_replicas: Some(ready),
        available_replicas: Some(available),
        current_replicas: Some(current),
        updated_replicas: Some(updated),
        ..Default::default()
    };
    (status, becomes_available)
}

/// Once every pod is of the update revision and ready, the update revision becomes the
/// current one (Kubernetes' completeRollingUpdate).
pub fn complete_rolling_update(status: &mut StatefulSetStatus) {
    let replicas = Some(status.replicas);
    if status.updated_replicas == replicas && status.ready_replicas == replicas {
        status.current_replicas = status.updated_replicas;
        status.current_revision = status.update_revision.clone();
    }
}

/// Look again when a pod becomes available, else wait for changes.
pub fn requeue_action(becomes_available: Option<ChronoDuration>) -> Action {
    match becomes_available.and_then(|w| w.to_std().ok()) {
        Some(wait) => Action::RequeueAfter(wait.max(Duration::from_millis(100))),
        None => Action::Done,
    }
}

#[cfg(test)]
#[path = "statefulset_status_tests.rs"]
mod tests;
