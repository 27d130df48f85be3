//! The decision core of Bramble's scheduler: an in-memory [`Snapshot`] of nodes and the pods on
//! them, and [`Snapshot::schedule`], which picks a node for a pending pod as kube-scheduler 1.32
//! would (filters, then scores among the feasible nodes) and assumes the pod there. No I/O, no
//! async: the loop around it watches nodes and pods (`upsert_node`, `remove_node`, `add_pod`,
//! `remove_pod`), calls `schedule` for each pending pod, writes the binding, and calls
//! `forget` when that write fails.
//!
//! Speed comes from what kube-scheduler does too: per-node aggregates updated incrementally,
//! the pod parsed once per decision, nodes visited from a rotating offset only until enough
//! feasible ones are found (`percentageOfNodesToScore`, adaptive), only those scored, and pods
//! pinned to a node by name (DaemonSets) examined against that node alone.

mod filters;
mod fit_error;
pub mod image_facts;
mod node_affinity;
mod pod_affinity;
mod pod_info;
pub mod queue;
mod requests;
pub mod runner;
mod scoring;
mod snapshot;

#[cfg(test)]
mod fixtures;

use k8s_openapi::api::core::v1::Pod;

pub use fit_error::FitError;
pub use pod_info::RUNTIME_LABEL_PREFIX;
pub use requests::{PodRequests, Resources};
pub use scoring::Weights;
pub use snapshot::{NodeInfo, Snapshot};

use fit_error::{Diagnosis, REASON_CONFLICT};
use node_affinity::Pinned;
use pod_affinity::InterPodState;
use pod_info::Incoming;

/// What the pod's runtime requires of a node, computed by the caller from its RuntimeClass
/// and images: a runtime handler the node must offer (e.g. "wasm", "runc") and the
/// architectures a container image is built for (any for Wasm).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuntimeNeeds {
    /// A node offers runtime R when it has the label `bramble.dev/runtime-<R>: "true"`.
    pub handler: Option<String>,
    /// The architectures the image is built for, compared with the node's
    /// `kubernetes.io/arch` label; empty when any will do (Wasm, or an image not inspected).
    pub arches: Vec<String>,
}

/// kube-scheduler's floor on how many feasible nodes to look for.
const MIN_FEASIBLE_NODES: usize = 100;
/// kube-scheduler's floor on the adaptive percentage.
const MIN_FEASIBLE_PERCENTAGE: usize = 5;

/// How many feasible nodes a decision looks for among `nodes` before it stops filtering
/// (kube-scheduler's adaptive `percentageOfNodesToScore`: 50% minus 1% per 125 nodes, at
/// least 5%, and at least 100 nodes).
pub fn feasible_nodes_to_find(nodes: usize) -> usize {
    if nodes < MIN_FEASIBLE_NODES {
        return nodes;
    }
    let percentage = 50usize
        .saturating_sub(nodes / 125)
        .max(MIN_FEASIBLE_PERCENTAGE);
    (nodes * percentage / 100).max(MIN_FEASIBLE_NODES)
}

impl Snapshot {
    /// Replaces the score weights (kube-scheduler's defaults otherwise).
    pub fn set_weights(&mut self, weights: Weights) {
        self.weights = weights;
    }

    /// Picks a node for `pod` (nodeName empty), and assumes it there (accounts its requests,
    /// so the next decision sees it) — the caller calls `forget` if the bind write fails.
    ///
    /// # Errors
    ///
    /// A [`FitError`] whose `Display` is the FailedScheduling message when no node fits, or
    /// when the pod itself is malformed (a quantity or selector that does not parse).
    pub fn schedule(&mut self, pod: &Pod, needs: &RuntimeNeeds) -> Result<String, FitError> {
        let total = self.nodes.len();
        if total == 0 {
            return Err(FitError::no_nodes());
        }
        let incoming = Incoming::parse(pod, needs).map_err(|m| FitError::pre_filter(total, m))?;
        let mut scratch = std::mem::take(&mut self.scratch);
        let mut rng = self.rng;
        let (decision, next_start) = self.decide(&incoming, &mut scratch, &mut rng);
        self.scratch = scratch;
        self.rng = rng;
        self.next_start = next_start;
        let chosen = decision?;
        let name = self.nodes[chosen].name().to_owned();
        let controller = incoming.controller;
        self.attach(incoming.into_entry(&name), controller);
        Ok(name)
    }

    /// Filters then scores; returns the chosen node's position and the next start offset.
    fn decide(
        &self,
        pod: &Incoming<'_>,
        scratch: &mut scoring::Scratch,
        rng: &mut u64,
    ) -> (Result<usize, FitError>, usize) {
        let total = self.nodes.len();
        let start = self.next_start % total;
        scratch.pinned.clear();
        let pinned = match pod.node_affinity.pinned() {
            Pinned::Anywhere => false,
            Pinned::Conflict => {
                return (
                    Err(FitError::pre_filter(total, REASON_CONFLICT.to_owned())),
                    start,
                )
            }
            Pinned::To(names) => {
                scratch
                    .pinned
                    .extend(names.iter().filter_map(|n| self.position(n)));
                true
            }
        };
        let candidates = if pinned { scratch.pinned.len() } else { total };
        let inter = InterPodState::compute(
            &self.nodes,
            pod.me,
            pod.affinity.as_deref(),
            self.wide_anti_pods,
        );
        let wanted = feasible_nodes_to_find(candidates);
        let mut diagnosis = Diagnosis::default();
        scratch.feasible.clear();
        let mut processed = 0;
        for k in 0..candidates {
            let i = if pinned {
                scratch.pinned[k]
            } else {
                (start + k) % total
            };
            processed += 1;
            match filters::check(&self.nodes[i], pod, &inter) {
                Ok(()) => {
                    scratch.feasible.push(i);
                    if scratch.feasible.len() >= wanted {
                        break;
                    }
                }
                Err(failure) => diagnosis.record(failure, pod),
            }
        }
        let next_start = if pinned {
            start
        } else {
            (start + processed) % total
        };
        let chosen = match scratch.feasible.len() {
            0 => {
                diagnosis.record_not_pinned(total - candidates);
                return (Err(diagnosis.into_error(total, pod)), next_start);
            }
            1 => scratch.feasible[0],
            _ => scoring::select(self, pod, scratch, rng),
        };
        (Ok(chosen), next_start)
    }
}

#[cfg(test)]
#[path = "mod_tests.rs"]
mod tests;
