//! Which pods a scale-down removes first, ranked as kube-controller-manager 1.32 does
//! (controller.ActivePodsWithRanks with PodDeletionCost and LogarithmicScaleDown on, as they
//! are by default): pods that cost the least to lose go first.
//!
//! Kubernetes sorts with a pairwise rule that is not a strict total order (pods ready or created
//! within the same power-of-two age bucket are ordered by uid right away). Rust's sort may panic
//! on such a rule, so each pod gets a key instead; the keys order pods the same way except that
//! within one age bucket the later criteria (restarts, creation) are looked at before the uid.

use std::cmp::Reverse;
use std::collections::HashMap;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::chrono::{DateTime, Utc};

use super::pods;

/// The annotation a user sets to say how much a pod costs to delete (lower goes first).
pub const POD_DELETION_COST: &str = "controller.kubernetes.io/pod-deletion-cost";

/// Sorts `victims` so that the pods to delete come first:
/// 1. not scheduled before scheduled;
/// 2. Pending before Unknown before Running;
/// 3. not ready before ready;
/// 4. lower pod-deletion-cost first;
/// 5. more related active pods on the same node first (`colocated`: node name -> count);
/// 6. ready for less time first (log2 buckets of the time ready);
/// 7. more container restarts first (regular containers, then sidecars);
/// 8. newer first (log2 buckets of the age), then by uid.
pub fn sort_for_deletion(
    victims: &mut [&Pod],
    colocated: &HashMap<String, usize>,
    now: DateTime<Utc>,
) {
    victims.sort_by_cached_key(|pod| DeletionKey::of(pod, colocated, now));
}

/// The counts of active pods per node among `related` (the pods of every replica set sharing
/// this one's controller), used to break ties in favour of spreading.
pub fn colocation<'a>(related: impl IntoIterator<Item = &'a Pod>) -> HashMap<String, usize> {
    let mut on_node = HashMap::new();
    for pod in related.into_iter().filter(|p| pods::is_active(p)) {
        *on_node.entry(node_of(pod).to_string()).or_insert(0) += 1;
    }
    on_node
}

/// Sorting key of one pod; smaller sorts first, i.e. is deleted first.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct DeletionKey {
    scheduled: bool,
    phase: u8,
    ready: bool,
    deletion_cost: i32,
    colocated: Reverse<usize>,
    ready_age: i64,
    restarts: Reverse<i32>,
    sidecar_restarts: Reverse<i32>,
    age: i64,
    uid: String,
}

impl DeletionKey {
    fn of(pod: &Pod, colocated: &HashMap<String, usize>, now: DateTime<Utc>) -> DeletionKey {
        let ready_since = pods::ready_since(pod);
        let (restarts, sidecar_restarts) = max_restarts(pod);
        DeletionKey {
            scheduled: !node_of(pod).is_empty(),
            phase: phase_ordinal(pods::phase(pod)),
            ready: ready_since.is_some(),
            deletion_cost: deletion_cost(pod),
            colocated: Reverse(colocated.get(node_of(pod)).copied().unwrap_or(0)),
            // Only compared between ready pods: not-ready pods all get 0.
            ready_age: ready_since.map_or(0, |since| age_bucket(since, now)),
            restarts: Reverse(restarts),
            sidecar_restarts: Reverse(sidecar_restarts),
            age: pod
                .metadata
                .creation_timestamp
                .as_ref()
                .map_or(i64::MIN, |t| age_bucket(t.0, now)),
            uid: pod.metadata.uid.clone().unwrap_or_default(),
        }
    }
}

fn node_of(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .unwrap_or_default()
}

/// Pending < Unknown < Running; other phases (not active anyway) rank with Pending, as an
/// absent map entry does in Kubernetes.
fn phase_ordinal(phase: &str) -> u8 {
    match phase {
        "Unknown" => 1,
        "Running" => 2,
        _ => 0,
    }
}

/// The pod-deletion-cost annotation; absent or malformed counts as 0, as in Kubernetes.
fn deletion_cost(pod: &Pod) -> i32 {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(POD_DELETION_COST))
        .and_then(|v| v.parse::<i32>().ok())
        .unwrap_or(0)
}

/// floor(log2(nanoseconds since `since`)): pods within a factor of two in age rank alike.
/// An unknown time (ready "since forever") sorts first, a time in the future as -1.
fn age_bucket(since: DateTime<Utc>, now: DateTime<Utc>) -> i64 {
    if since == DateTime::<Utc>::MIN_UTC {
        return i64::MIN;
    }
    match (now - since).num_nanoseconds() {
        Some(ns) if ns > 0 => i64::from(63 - ns.leading_zeros()),
        // Older than i64 nanoseconds (~292 years) can only be a placeholder time.
        None if now > since => 63,
        _ => -1,
    }
}

/// The most restarts of a regular container and of a sidecar (an init container with
/// restartPolicy Always).
fn max_restarts(pod: &Pod) -> (i32, i32) {
    let Some(status) = pod.status.as_ref() else {
        return (0, 0);
    };
    let regular = status
        .container_statuses
        .iter()
        .flatten()
        .map(|c| c.restart_count)
        .max()
        .unwrap_or(0);
    let sidecars: Vec<&str> = pod
        .spec
        .iter()
        .flat_map(|s| s.init_containers.iter().flatten())
        .filter(|c| c.restart_policy.as_deref() == Some("Always"))
        .map(|c| c.name.as_str())
        .collect();
    let sidecar = status
        .init_container_statuses
        .iter()
        .flatten()
        .filter(|c| sidecars.contains(&c.name.as_str()))
        .map(|c| c.restart_count)
        .max()
        .unwrap_or(0);
    (regular.max(0), sidecar.max(0))
}

#[cfg(test)]
#[path = "pod_ranking_tests.rs"]
mod tests;
