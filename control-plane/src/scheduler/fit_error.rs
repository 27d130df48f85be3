//! Why a pod fits no node, worded as kube-scheduler's FailedScheduling message:
//! "0/3 nodes are available: 1 node(s) had untolerated taint {k: v}, 2 Insufficient memory."
//! Each node contributes its first failing filter's reason(s); the "count reason" strings are
//! sorted as strings and joined. Bramble has no preemption, so the "preemption: ..." tail of
//! kube-scheduler's message is never there.

use std::fmt;

use super::filters::{
    Failure, INSUFFICIENT_CPU, INSUFFICIENT_EPHEMERAL, INSUFFICIENT_MEMORY, SCALAR_SHIFT,
    TOO_MANY_PODS,
};
use super::pod_affinity::Violation;
use super::pod_info::Incoming;

/// Reason for nodes left out because the pod's node affinity names other nodes.
pub const REASON_NOT_PINNED: &str = "node(s) didn't satisfy plugin(s) [NodeAffinity]";
/// The PreFilter message when the pod's node-name terms exclude each other.
pub const REASON_CONFLICT: &str = "pod affinity terms conflict";

/// The FailedScheduling message of a pod that fits no node (its `Display`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FitError {
    num_nodes: usize,
    detail: Detail,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Detail {
    NoNodes,
    /// Decided before looking at nodes (a malformed pod, conflicting terms).
    PreFilter(String),
    /// Reasons with the number of nodes giving each.
    Reasons(Vec<(String, usize)>),
}

impl FitError {
    pub(crate) fn no_nodes() -> Self {
        FitError {
            num_nodes: 0,
            detail: Detail::NoNodes,
        }
    }

    pub(crate) fn pre_filter(num_nodes: usize, message: String) -> Self {
        FitError {
            num_nodes,
            detail: Detail::PreFilter(message),
        }
    }

    /// How many nodes the cluster had.
    pub fn num_nodes(&self) -> usize {
        self.num_nodes
    }

    /// Each reason with the number of nodes that gave it (empty when no node was examined).
    pub fn reasons(&self) -> &[(String, usize)] {
        match &self.detail {
            Detail::Reasons(r) => r,
            _ => &[],
        }
    }
}

impl fmt::Display for FitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0/{} nodes are available: ", self.num_nodes)?;
        match &self.detail {
            Detail::NoNodes => f.write_str("no nodes available to schedule pods."),
            Detail::PreFilter(message) => write!(f, "{message}."),
            Detail::Reasons(reasons) => {
                let mut parts: Vec<String> =
                    reasons.iter().map(|(r, n)| format!("{n} {r}")).collect();
                parts.sort();
                write!(f, "{}.", parts.join(", "))
            }
        }
    }
}

impl std::error::Error for FitError {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reason<'a> {
    Text(&'static str),
    Taint(&'a str, &'a str),
    Insufficient(&'a str),
    Runtime,
    Arch,
}

/// Counts reasons while filtering; borrowed strings only, rendered once at the end.
#[derive(Debug, Default)]
pub(crate) struct Diagnosis<'a> {
    counts: Vec<(Reason<'a>, usize)>,
}

impl<'a> Diagnosis<'a> {
    fn add(&mut self, reason: Reason<'a>, n: usize) {
        match self.counts.iter_mut().find(|(r, _)| *r == reason) {
            Some((_, count)) => *count += n,
            None => self.counts.push((reason, n)),
        }
    }

    /// Counts a node's failure; `pod` lends the names of its extended resources.
    pub(crate) fn record(&mut self, failure: Failure<'a>, pod: &'a Incoming<'_>) {
        let text = |t| Reason::Text(t);
        let reason = match failure {
            Failure::NodeName => text("node(s) didn't match the requested node name"),
            Failure::Unschedulable => text("node(s) were unschedulable"),
            Failure::Taint { key, value } => Reason::Taint(key, value),
            Failure::NodeAffinity => text("node(s) didn't match Pod's node affinity/selector"),
            Failure::Runtime => Reason::Runtime,
            Failure::Arch => Reason::Arch,
            Failure::HostPorts => {
                text("node(s) didn't have free ports for the requested pod ports")
            }
            Failure::InterPod(Violation::Affinity) => {
                text("node(s) didn't match pod affinity rules")
            }
            Failure::InterPod(Violation::AntiAffinity) => {
                text("node(s) didn't match pod anti-affinity rules")
            }
            Failure::InterPod(Violation::ExistingAntiAffinity) => {
                text("node(s) didn't satisfy existing pods anti-affinity rules")
            }
            Failure::Resources(bits) => {
                let fixed = [
                    (TOO_MANY_PODS, "Too many pods"),
                    (INSUFFICIENT_CPU, "Insufficient cpu"),
                    (INSUFFICIENT_MEMORY, "Insufficient memory"),
                    (INSUFFICIENT_EPHEMERAL, "Insufficient ephemeral-storage"),
                ];
                for (bit, t) in fixed {
                    if bits & bit != 0 {
                        self.add(text(t), 1);
                    }
                }
                for (i, (name, _)) in pod.requests.requested.scalars.iter().enumerate().take(60) {
                    if bits & (1 << (SCALAR_SHIFT + i as u32)) != 0 {
                        self.add(Reason::Insufficient(name), 1);
                    }
                }
                return;
            }
        };
        self.add(reason, 1);
    }

    /// Counts `n` nodes that were never examined because the pod is pinned elsewhere.
    pub(crate) fn record_not_pinned(&mut self, n: usize) {
        if n > 0 {
            self.add(Reason::Text(REASON_NOT_PINNED), n);
        }
    }

    /// The error for a cluster of `num_nodes` nodes.
    pub(crate) fn into_error(self, num_nodes: usize, pod: &Incoming<'_>) -> FitError {
        let render = |reason: Reason<'_>| match reason {
            Reason::Text(t) => t.to_owned(),
            Reason::Taint(k, v) => format!("node(s) had untolerated taint {{{k}: {v}}}"),
            Reason::Insufficient(name) => format!("Insufficient {name}"),
            Reason::Runtime => {
                let handler = pod
                    .runtime
                    .as_ref()
                    .map(|(h, _)| h.as_str())
                    .unwrap_or_default();
                format!("node(s) didn't offer the runtime {handler:?}")
            }
            Reason::Arch => {
                let arches = pod.arches.join(", ");
                format!("node(s) didn't match the image's architecture {arches:?}")
            }
        };
        FitError {
            num_nodes,
            detail: Detail::Reasons(
                self.counts
                    .into_iter()
                    .map(|(r, n)| (render(r), n))
                    .collect(),
            ),
        }
    }
}

#[cfg(test)]
#[path = "fit_error_tests.rs"]
mod tests;
