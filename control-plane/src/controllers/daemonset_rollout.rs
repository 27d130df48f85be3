//! A DaemonSet's rolling update: which out-of-date pods to delete now (their nodes then get a
//! new pod from the placement pass) and, with maxSurge, on which nodes to start a new pod
//! beside the old one, so that no more than maxUnavailable nodes lack an available daemon and
//! no more than maxSurge nodes run two. Pure planning, as Kubernetes' rollingUpdate.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{DaemonSetSpec, DaemonSetUpdateStrategy};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::chrono::{DateTime, Utc};

use super::controller_history::REVISION_HASH_LABEL;
use super::daemon_placement::Placement;
use super::pods;

/// How far a rolling update may go at once, in nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Nodes that may run an extra (new) pod beside the old one.
    pub max_surge: usize,
    /// Nodes that may lack an available pod.
    pub max_unavailable: usize,
}

/// The budget of `strategy` for `desired` nodes (maxUnavailable 1 and maxSurge 0 by default;
/// percentages round up). A strategy allowing neither falls back to maxUnavailable 1, as
/// Kubernetes does, so that the update can progress.
pub fn budget(strategy: Option<&DaemonSetUpdateStrategy>, desired: usize) -> Budget {
    let rolling = strategy.and_then(|s| s.rolling_update.as_ref());
    let max_unavailable = scaled(rolling.and_then(|r| r.max_unavailable.as_ref()), 1, desired);
    let max_surge = scaled(rolling.and_then(|r| r.max_surge.as_ref()), 0, desired);
    Budget {
        max_surge,
        max_unavailable: if desired > 0 && max_unavailable == 0 && max_surge == 0 {
            1
        } else {
            max_unavailable
        },
    }
}

/// An int-or-percent of `total`, rounded up; `default` when absent or malformed.
fn scaled(value: Option<&IntOrString>, default: usize, total: usize) -> usize {
    match value {
        None => default,
        Some(IntOrString::Int(n)) => usize::try_from(*n).unwrap_or(0),
        Some(IntOrString::String(s)) => match s.strip_suffix('%').map(str::parse::<usize>) {
            Some(Ok(percent)) => (percent * total).div_ceil(100),
            _ => default,
        },
    }
}

/// Whether the DaemonSet updates its pods itself (RollingUpdate, the default) rather than
/// waiting for them to be deleted (OnDelete).
pub fn is_rolling_update(spec: &DaemonSetSpec) -> bool {
    spec.update_strategy
        .as_ref()
        .and_then(|s| s.type_.as_deref())
        .is_none_or(|t| t == "RollingUpdate")
}

/// A node as the rolling update sees it.
#[derive(Debug, Clone)]
struct NodeState<'a> {
    /// The DaemonSet's pods there that are not being deleted.
    pods: Vec<&'a Pod>,
    /// Whether a daemon pod belongs there.
    placement: Placement,
}

/// What the rolling update does now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Names of pods to delete.
    pub delete: Vec<String>,
    /// Nodes to start a new pod on (surge).
    pub create_on: Vec<String>,
}

/// Whether `pod` was made from the revision with `hash`.
pub fn is_updated(pod: &Pod, hash: &str) -> bool {
    pod.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(REVISION_HASH_LABEL))
        .is_some_and(|h| h == hash)
}

/// The new and the old pod on a node, or None when there are several of either (the
/// placement pass removes the excess first).
fn new_and_old<'a>(pods: &[&'a Pod], hash: &str) -> Option<(Option<&'a Pod>, Option<&'a Pod>)> {
    let (mut new, mut old) = (None, None);
    for pod in pods {
        let slot = if is_updated(pod, hash) {
            &mut new
        } else {
            &mut old
        };
        if slot.replace(*pod).is_some() {
            return None;
        }
    }
    Some((new, old))
}

/// The rolling-update step for the DaemonSet `spec` whose pods, by node, are `by_node`
/// under `placements` (every node's fit), given the current revision's `hash`.
pub fn step(
    spec: &DaemonSetSpec,
    placements: &BTreeMap<String, Placement>,
    by_node: &BTreeMap<String, Vec<&Pod>>,
    hash: &str,
    now: DateTime<Utc>,
) -> Plan {
    let mut nodes: BTreeMap<String, NodeState<'_>> = BTreeMap::new();
    for (node, on_node) in by_node {
        let state = NodeState {
            pods: on_node
                .iter()
                .copied()
                .filter(|p| !pods::is_terminating(p))
                .collect(),
            placement: placements.get(node).copied().unwrap_or_default(),
        };
        nodes.insert(node.clone(), state);
    }
    // Nodes that should run a pod and have none count too (as unavailable).
    for (node, placement) in placements.iter().filter(|(_, p)| p.should_run) {
        nodes.entry(node.clone()).or_insert(NodeState {
            pods: Vec::new(),
            placement: *placement,
        });
    }
    let desired = placements.values().filter(|p| p.should_run).count();
    let budget = budget(spec.update_strategy.as_ref(), desired);
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    plan(&nodes, hash, budget, min_ready, now, desired)
}

/// The step over `nodes`: every node with pods, and every node that should run one.
fn plan(
    nodes: &BTreeMap<String, NodeState<'_>>,
    hash: &str,
    budget: Budget,
    min_ready_seconds: i32,
    now: DateTime<Utc>,
    desired: usize,
) -> Plan {
    let available = |pod: &Pod| pods::is_available(pod, min_ready_seconds, now);
    if budget.max_surge == 0 {
        return plan_without_surge(nodes, hash, budget.max_unavailable, &available);
    }
    let mut plan = Plan::default();
    let (mut surging, mut available_nodes) = (0usize, 0usize);
    let (mut allowed_new, mut candidate_new, mut sunset) = (Vec::new(), Vec::new(), Vec::new());
    for (node, state) in nodes {
        let Some((new, old)) = new_and_old(&state.pods, hash) else {
            surging += 1;
            continue;
        };
        if old.or(new).is_some_and(available) {
            available_nodes += 1;
        }
        match (new, old) {
            (_, None) => {}
            (None, Some(old)) if !available(old) => {
                if state.placement.should_run {
                    allowed_new.push(node.clone());
                } else {
                    plan.delete.push(pod_name(old));
                }
            }
            (None, Some(old)) => {
                if !state.placement.should_run {
                    sunset.push(pod_name(old));
                } else if surging < budget.max_surge {
                    candidate_new.push(node.clone());
                }
            }
            (Some(new), Some(old)) => {
                if available(new) {
                    plan.delete.push(pod_name(old));
                } else {
                    surging += 1;
                }
            }
        }
    }
    // Pods on nodes they no longer fit go only once as many pods elsewhere are available.
    let deletable = available_nodes.saturating_sub(desired).min(sunset.len());
    plan.delete.extend(sunset.into_iter().take(deletable));
    let room = budget
        .max_surge
        .saturating_sub(surging)
        .min(candidate_new.len());
    plan.create_on = allowed_new;
    plan.create_on.extend(candidate_new.into_iter().take(room));
    plan
}

fn plan_without_surge(
    nodes: &BTreeMap<String, NodeState<'_>>,
    hash: &str,
    max_unavailable: usize,
    available: &dyn Fn(&Pod) -> bool,
) -> Plan {
    let mut unavailable = 0;
    let (mut replace_now, mut candidates) = (Vec::new(), Vec::new());
    for state in nodes.values() {
        let Some((new, old)) = new_and_old(&state.pods, hash) else {
            unavailable += 1;
            continue;
        };
        match (new, old) {
            // Nothing or both there: the placement pass settles the node; count it as down.
            (None, None) | (Some(_), Some(_)) => unavailable += 1,
            (Some(new), None) => {
                if !available(new) {
                    unavailable += 1;
                }
            }
            (None, Some(old)) => {
                if !available(old) {
                    replace_now.push(pod_name(old));
                    unavailable += 1;
                } else if unavailable < max_unavailable {
                    candidates.push(pod_name(old));
                }
            }
        }
    }
    let room = max_unavailable
        .saturating_sub(unavailable)
        .min(candidates.len());
    replace_now.extend(candidates.into_iter().take(room));
    Plan {
        delete: replace_now,
        create_on: Vec::new(),
    }
}

fn pod_name(pod: &Pod) -> String {
    pod.metadata.name.clone().unwrap_or_default()
}

#[cfg(test)]
#[path = "daemonset_rollout_tests.rs"]
mod tests;
