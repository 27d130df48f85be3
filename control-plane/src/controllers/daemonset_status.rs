//! A DaemonSet's status as `kubectl get ds` and `kubectl rollout status daemonset` read it:
//! per eligible node, whether its daemon pod is scheduled, ready, available and up to date;
//! per ineligible node, whether a pod runs there anyway (misscheduled).

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::DaemonSetStatus;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::chrono::{DateTime, Duration as ChronoDuration, Utc};

use super::daemon_placement::Placement;
use super::daemon_pods::oldest_first;
use super::daemonset_rollout::is_updated;
use super::pods;

/// The counts of the status (observedGeneration, collisionCount and conditions are the
/// caller's), and when the next ready pod becomes available if one is waiting for
/// minReadySeconds.
pub fn compute_status(
    placements: &BTreeMap<String, Placement>,
    by_node: &BTreeMap<String, Vec<&Pod>>,
    hash: &str,
    min_ready_seconds: i32,
    now: DateTime<Utc>,
) -> (DaemonSetStatus, Option<ChronoDuration>) {
    let (mut desired, mut current, mut misscheduled) = (0, 0, 0);
    let (mut ready, mut available, mut updated) = (0, 0, 0);
    let mut becomes_available: Option<ChronoDuration> = None;
    for (node, placement) in placements {
        let on_node = by_node.get(node).map(Vec::as_slice).unwrap_or_default();
        if !placement.should_run {
            if !on_node.is_empty() {
                misscheduled += 1;
            }
            continue;
        }
        desired += 1;
        // The node's oldest pod is the one that stays, so it is the one that counts.
        let Some(pod) = on_node.iter().copied().min_by(|a, b| oldest_first(a, b)) else {
            continue;
        };
        current += 1;
        if let Some(since) = pods::ready_since(pod) {
            ready += 1;
            if pods::is_available(pod, min_ready_seconds, now) {
                available += 1;
            } else if min_ready_seconds > 0 {
                let wait = since + ChronoDuration::seconds(i64::from(min_ready_seconds)) - now;
                becomes_available = Some(becomes_available.map_or(wait, |w| w.min(wait)));
            }
        }
        if is_updated(pod, hash) {
            updated += 1;
        }
    }
    let status = DaemonSetStatus {
        desired_number_scheduled: desired,
        current_number_scheduled: current,
        number_misscheduled: misscheduled,
        number_ready: ready,
        number_available: Some(available),
        number_unavailable: Some(desired - available),
        updated_number_scheduled: Some(updated),
        ..Default::default()
    };
    (status, becomes_available)
}

#[cfg(test)]
#[path = "daemonset_status_tests.rs"]
mod tests;
