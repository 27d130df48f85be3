//! Taints and tolerations as the node controllers read them: the well-known taint keys, whether
//! a toleration tolerates a taint (`ToleratesTaint`), and when the NoExecute taints of a node
//! run out of a pod's tolerations (the taint eviction controller's rule, made level-triggered:
//! the clock starts at the taint's `timeAdded`, or at the pod's binding when that came later).

use k8s_openapi::api::core::v1::{Node, Pod, Taint, Toleration};
use k8s_openapi::chrono::{DateTime, Duration as ChronoDuration, Utc};

/// The node's Ready condition is False: the kubelet is alive and says it cannot run pods.
pub const NOT_READY: &str = "node.kubernetes.io/not-ready";
/// The node's Ready condition is Unknown: nothing has been heard from the node.
pub const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
/// The node is cordoned (spec.unschedulable).
pub const UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";
/// The MemoryPressure condition is True.
pub const MEMORY_PRESSURE: &str = "node.kubernetes.io/memory-pressure";
/// The DiskPressure condition is True.
pub const DISK_PRESSURE: &str = "node.kubernetes.io/disk-pressure";
/// The PIDPressure condition is True.
pub const PID_PRESSURE: &str = "node.kubernetes.io/pid-pressure";
/// The NetworkUnavailable condition is True.
pub const NETWORK_UNAVAILABLE: &str = "node.kubernetes.io/network-unavailable";
/// Set by an administrator on a node that is known to be down for good: its terminating pods
/// may be force-deleted at once.
pub const OUT_OF_SERVICE: &str = "node.kubernetes.io/out-of-service";

/// Pods that do not tolerate the taint are evicted.
pub const NO_EXECUTE: &str = "NoExecute";
/// Pods that do not tolerate the taint are not scheduled there.
pub const NO_SCHEDULE: &str = "NoSchedule";

/// The node's taints (none when it has no spec).
pub fn taints_of(node: &Node) -> &[Taint] {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or_default()
}

/// Whether the node carries a taint with this key and effect.
pub fn has_taint(node: &Node, key: &str, effect: &str) -> bool {
    taints_of(node)
        .iter()
        .any(|t| t.key == key && t.effect == effect)
}

/// Whether the node carries a taint with this key, whatever its effect.
pub fn has_taint_key(node: &Node, key: &str) -> bool {
    taints_of(node).iter().any(|t| t.key == key)
}

/// The status of the node condition `type_` ("True", "False", "Unknown"), if reported.
pub fn node_condition<'a>(node: &'a Node, type_: &str) -> Option<&'a str> {
    node.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| c.status.as_str())
}

/// Kubernetes' `Toleration.ToleratesTaint`: an empty effect or key matches any; the operator
/// Exists matches any value, Equal (the default) the same value; any other operator nothing.
/// The one implementation the scheduler, the DaemonSet controller and taint-based eviction
/// share.
pub fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    tolerates_parts(
        toleration,
        &taint.key,
        taint.value.as_deref().unwrap_or_default(),
        &taint.effect,
    )
}

/// [`tolerates`] for a taint given by its parts (the scheduler checks implied taints, such as
/// not-ready on a node that is not Ready yet, without building one).
pub fn tolerates_parts(toleration: &Toleration, key: &str, value: &str, effect: &str) -> bool {
    let t_effect = toleration.effect.as_deref().unwrap_or_default();
    if !t_effect.is_empty() && t_effect != effect {
        return false;
    }
    let t_key = toleration.key.as_deref().unwrap_or_default();
    if !t_key.is_empty() && t_key != key {
        return false;
    }
    match toleration.operator.as_deref().unwrap_or_default() {
        "" | "Equal" => toleration.value.as_deref().unwrap_or_default() == value,
        "Exists" => true,
        _ => false,
    }
}

/// What a node's NoExecute taints mean for one pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Eviction {
    /// A taint is not tolerated, or a toleration has run out: evict now.
    Now,
    /// Every taint is tolerated until this moment.
    At(DateTime<Utc>),
    /// Every taint is tolerated for as long as it stays.
    Never,
}

/// When the pod got to its node: the PodScheduled condition's transition, else its creation.
/// A toleration's seconds count from here when the taint was already on the node, as the
/// taint eviction controller starts a pod's clock when it first sees the pod on the node.
pub fn bound_at(pod: &Pod) -> Option<DateTime<Utc>> {
    let scheduled = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| {
            cs.iter()
                .find(|c| c.type_ == "PodScheduled" && c.status == "True")
        })
        .and_then(|c| c.last_transition_time.as_ref())
        .map(|t| t.0);
    scheduled.or_else(|| pod.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

/// Whether and when `pod` must leave a node tainted with `no_execute` (its NoExecute taints),
/// at `now`. Each taint is matched by the first toleration that tolerates it
/// (GetMatchingTolerations); a toleration without seconds tolerates forever, one with seconds
/// (zero or less meaning none) until the taint's start plus those seconds; the earliest such
/// moment wins.
pub fn eviction(pod: &Pod, no_execute: &[Taint], now: DateTime<Utc>) -> Eviction {
    let tolerations = pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.as_deref())
        .unwrap_or_default();
    let bound = bound_at(pod);
    let mut earliest: Option<DateTime<Utc>> = None;
    for taint in no_execute {
        let Some(toleration) = tolerations.iter().find(|t| tolerates(t, taint)) else {
            return Eviction::Now;
        };
        let Some(seconds) = toleration.toleration_seconds else {
            continue;
        };
        let added = taint.time_added.as_ref().map(|t| t.0);
        // A taint without timeAdded (added by hand) counts from the pod's binding.
        let start = match (added, bound) {
            (Some(a), Some(b)) => a.max(b),
            (a, b) => a.or(b).unwrap_or(DateTime::<Utc>::MIN_UTC),
        };
        let deadline = start
            .checked_add_signed(ChronoDuration::seconds(seconds.max(0)))
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        earliest = Some(earliest.map_or(deadline, |e| e.min(deadline)));
    }
    match earliest {
        None => Eviction::Never,
        Some(at) if at <= now => Eviction::Now,
        Some(at) => Eviction::At(at),
    }
}

#[cfg(test)]
#[path = "taints_tests.rs"]
mod tests;
