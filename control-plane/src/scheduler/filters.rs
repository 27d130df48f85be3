//! The per-node filters, in kube-scheduler's order (NodeUnschedulable, NodeName,
//! TaintToleration, NodeAffinity, then Bramble's runtime check, NodePorts, NodeResourcesFit,
//! InterPodAffinity), stopping at the first that fails: that one is the node's reason in the
//! FailedScheduling message. Nothing here allocates.

use k8s_openapi::api::core::v1::{Taint, Toleration};

use super::pod_affinity::{InterPodState, Violation};
use super::pod_info::Incoming;
use super::requests::PodRequests;
use super::snapshot::{NodeInfo, NOT_READY_TAINT};

/// The label holding a node's CPU architecture.
pub const ARCH_LABEL: &str = "kubernetes.io/arch";
/// The taint a cordoned node is treated as having; tolerating it allows a cordoned node.
pub const UNSCHEDULABLE_TAINT: &str = "node.kubernetes.io/unschedulable";

/// Bits of [`Failure::Resources`].
pub const TOO_MANY_PODS: u64 = 1;
/// Not enough cpu.
pub const INSUFFICIENT_CPU: u64 = 1 << 1;
/// Not enough memory.
pub const INSUFFICIENT_MEMORY: u64 = 1 << 2;
/// Not enough ephemeral storage.
pub const INSUFFICIENT_EPHEMERAL: u64 = 1 << 3;
/// The first bit for the pod's extended resources: bit `SCALAR_SHIFT + i` is its i-th one.
pub const SCALAR_SHIFT: u32 = 4;

/// Why a node cannot take the pod: the first filter that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure<'a> {
    /// The pod names another node.
    NodeName,
    /// The node is cordoned.
    Unschedulable,
    /// A NoSchedule/NoExecute taint the pod does not tolerate.
    Taint {
        /// The taint's key.
        key: &'a str,
        /// The taint's value ("" when none).
        value: &'a str,
    },
    /// nodeSelector or required node affinity.
    NodeAffinity,
    /// The node does not offer the runtime handler.
    Runtime,
    /// The node's architecture is not the image's.
    Arch,
    /// A host port is taken.
    HostPorts,
    /// Resources short, as a set of the bits above (several at once, each counted).
    Resources(u64),
    /// Inter-pod affinity or anti-affinity.
    InterPod(Violation),
}

pub use crate::controllers::taints::tolerates_parts as tolerates;

/// Whether any of `tolerations` tolerates `taint`.
pub fn tolerated(tolerations: &[Toleration], taint: &Taint) -> bool {
    let value = taint.value.as_deref().unwrap_or_default();
    tolerations
        .iter()
        .any(|t| tolerates(t, &taint.key, value, &taint.effect))
}

/// Runs the filters for one node.
pub fn check<'a>(
    node: &'a NodeInfo,
    pod: &Incoming<'_>,
    inter: &InterPodState,
) -> Result<(), Failure<'a>> {
    let tolerations = pod.tolerations;
    if node.unschedulable
        && !tolerations
            .iter()
            .any(|t| tolerates(t, UNSCHEDULABLE_TAINT, "", "NoSchedule"))
    {
        return Err(Failure::Unschedulable);
    }
    if pod.node_name.is_some_and(|n| n != node.name()) {
        return Err(Failure::NodeName);
    }
    if let Some(taint) = node.hard_taints.iter().find(|t| !tolerated(tolerations, t)) {
        return Err(Failure::Taint {
            key: &taint.key,
            value: taint.value.as_deref().unwrap_or_default(),
        });
    }
    if node.not_ready
        && !tolerations
            .iter()
            .any(|t| tolerates(t, NOT_READY_TAINT, "", "NoSchedule"))
    {
        return Err(Failure::Taint {
            key: NOT_READY_TAINT,
            value: "",
        });
    }
    if !pod
        .node_affinity
        .required_matches(node.name(), node.labels())
    {
        return Err(Failure::NodeAffinity);
    }
    if let Some((_, label)) = &pod.runtime {
        if node.labels().get(label).map(String::as_str) != Some("true") {
            return Err(Failure::Runtime);
        }
    }
    let arch_fits = |arch: &String| pod.arches.contains(arch);
    if !pod.arches.is_empty() && !node.labels().get(ARCH_LABEL).is_some_and(arch_fits) {
        return Err(Failure::Arch);
    }
    if !pod.host_ports.is_empty() {
        let taken = node.pods().iter().flat_map(|p| p.host_ports.iter());
        if taken
            .into_iter()
            .any(|used| pod.host_ports.iter().any(|want| want.conflicts(used)))
        {
            return Err(Failure::HostPorts);
        }
    }
    let short = shortfall(node, &pod.requests);
    if short != 0 {
        return Err(Failure::Resources(short));
    }
    inter
        .check(node, pod.me, pod.affinity.as_deref())
        .map_err(Failure::InterPod)
}

/// NodeResourcesFit: the pod count always, then each requested resource against what is left
/// of the node's allocatable.
pub fn shortfall(node: &NodeInfo, requests: &PodRequests) -> u64 {
    let mut short = 0;
    let pods_here = i64::try_from(node.pods().len()).unwrap_or(i64::MAX);
    if pods_here + 1 > node.allowed_pods {
        short |= TOO_MANY_PODS;
    }
    if requests.is_empty() {
        return short;
    }
    let want = &requests.requested;
    let (have, used) = (node.allocatable(), node.requested());
    let lacks = |want: i64, have: i64, used: i64| want > 0 && want > have - used;
    if lacks(want.milli_cpu, have.milli_cpu, used.milli_cpu) {
        short |= INSUFFICIENT_CPU;
    }
    if lacks(want.memory, have.memory, used.memory) {
        short |= INSUFFICIENT_MEMORY;
    }
    if lacks(
        want.ephemeral_storage,
        have.ephemeral_storage,
        used.ephemeral_storage,
    ) {
        short |= INSUFFICIENT_EPHEMERAL;
    }
    for (i, (name, amount)) in want.scalars.iter().enumerate().take(60) {
        if lacks(*amount, have.scalar(name), used.scalar(name)) {
            short |= 1 << (SCALAR_SHIFT + i as u32);
        }
    }
    short
}

#[cfg(test)]
#[path = "filters_tests.rs"]
mod tests;
