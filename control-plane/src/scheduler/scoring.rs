//! Scoring the feasible nodes as kube-scheduler's default score plugins do, each normalised
//! to 0..=100 and summed with kube-scheduler's default weights: TaintToleration 3 (untolerated
//! PreferNoSchedule taints), NodeAffinity 2 (preferred terms), NodeResourcesFit 1
//! (LeastAllocated), PodTopologySpread 2 (the system default constraints: spread a
//! controller's pods over nodes and zones), InterPodAffinity 2 (preferred terms) and
//! NodeResourcesBalancedAllocation 1. The highest total wins; ties are broken at random so
//! equal nodes share the load. Buffers are reused from one decision to the next.

use super::filters::tolerated;
use super::pod_affinity;
use super::pod_info::Incoming;
use super::snapshot::{NodeInfo, Snapshot};

/// The best score a plugin gives a node.
pub const MAX_NODE_SCORE: i64 = 100;

/// The weight of each score plugin in the total.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Weights {
    /// Fewer untolerated PreferNoSchedule taints.
    pub taint_toleration: i64,
    /// Preferred node affinity.
    pub node_affinity: i64,
    /// Emptier nodes (LeastAllocated over cpu and memory).
    pub resources_fit: i64,
    /// Fewer pods of the same controller on the node and in its zone.
    pub topology_spread: i64,
    /// Preferred pod affinity and anti-affinity.
    pub inter_pod_affinity: i64,
    /// cpu and memory used in similar proportions.
    pub balanced_allocation: i64,
}

impl Default for Weights {
    /// kube-scheduler 1.32's default plugin weights.
    fn default() -> Self {
        Weights {
            taint_toleration: 3,
            node_affinity: 2,
            resources_fit: 1,
            topology_spread: 2,
            inter_pod_affinity: 2,
            balanced_allocation: 1,
        }
    }
}

/// Buffers a decision reuses, so it allocates nothing per node.
#[derive(Debug, Default)]
pub struct Scratch {
    /// Positions of the feasible nodes in the snapshot.
    pub feasible: Vec<usize>,
    /// Positions of the nodes a pinned pod may go to.
    pub pinned: Vec<usize>,
    totals: Vec<i64>,
    raw: Vec<i64>,
    zones: Vec<u32>,
}

/// The system default spreading constraints: (max skew, over the node) and (max skew, over
/// the zone), both ScheduleAnyway.
const HOST_MAX_SKEW: f64 = 3.0;
const ZONE_MAX_SKEW: f64 = 5.0;

/// Picks the best of `scratch.feasible` (at least two nodes); returns its position.
pub fn select(
    snapshot: &Snapshot,
    pod: &Incoming<'_>,
    scratch: &mut Scratch,
    rng: &mut u64,
) -> usize {
    let Scratch {
        feasible,
        totals,
        raw,
        zones,
        ..
    } = scratch;
    let node = |i: usize| &snapshot.nodes[feasible[i]];
    let n = feasible.len();
    let w = snapshot.weights;
    totals.clear();
    totals.resize(n, 0);

    fill(raw, n, |i| untolerated_soft_taints(node(i), pod));
    normalize_reverse(raw);
    accumulate(totals, raw, w.taint_toleration);

    if pod.node_affinity.has_preferences() {
        fill(raw, n, |i| {
            pod.node_affinity
                .preference_score(node(i).name(), node(i).labels())
        });
        normalize_by_max(raw);
        accumulate(totals, raw, w.node_affinity);
    }

    fill(raw, n, |i| least_allocated(node(i), pod));
    accumulate(totals, raw, w.resources_fit);

    if let Some(uid) = pod.controller {
        let id = snapshot.controllers.get(uid);
        zones.clear();
        zones.extend((0..n).filter_map(|i| node(i).zone));
        zones.sort_unstable();
        zones.dedup();
        let host_weight = ((n + 2) as f64).ln();
        let zone_weight = ((zones.len() + 2) as f64).ln();
        fill(raw, n, |i| {
            let info = node(i);
            let on_host = id.map_or(0, |id| info.controller_count(id));
            let mut score = f64::from(on_host) * host_weight + HOST_MAX_SKEW - 1.0;
            if let Some(zone) = info.zone {
                let in_zone = id
                    .and_then(|id| snapshot.zone_counts.get(&(id, zone)))
                    .copied()
                    .unwrap_or(0);
                score += f64::from(in_zone) * zone_weight + ZONE_MAX_SKEW - 1.0;
            }
            score.round() as i64
        });
        normalize_spread(raw);
        accumulate(totals, raw, w.topology_spread);
    }

    let affinity = pod.affinity.as_deref();
    let any_terms = affinity.is_some_and(|a| a.has_preferences())
        || (0..n).any(|i| !node(i).affinity_pods().is_empty());
    if any_terms {
        fill(raw, n, |i| {
            pod_affinity::preference_score(node(i), pod.me, affinity)
        });
        normalize_min_max(raw);
        accumulate(totals, raw, w.inter_pod_affinity);
    }

    let best_effort = pod.requests.requested.milli_cpu == 0 && pod.requests.requested.memory == 0;
    if !best_effort {
        fill(raw, n, |i| balanced_allocation(node(i), pod));
        accumulate(totals, raw, w.balanced_allocation);
    }

    feasible[pick_max(totals, rng)]
}

fn fill(raw: &mut Vec<i64>, n: usize, score: impl Fn(usize) -> i64) {
    raw.clear();
    raw.extend((0..n).map(score));
}

fn accumulate(totals: &mut [i64], raw: &[i64], weight: i64) {
    for (t, r) in totals.iter_mut().zip(raw) {
        *t += r * weight;
    }
}

/// TaintToleration: how many PreferNoSchedule taints the pod does not tolerate.
fn untolerated_soft_taints(node: &NodeInfo, pod: &Incoming<'_>) -> i64 {
    node.soft_taints
        .iter()
        .filter(|t| !tolerated(pod.tolerations, t))
        .count() as i64
}

/// NodeResourcesFit LeastAllocated over cpu and memory (equal weights), with the scoring
/// defaults for containers that request nothing.
pub fn least_allocated(node: &NodeInfo, pod: &Incoming<'_>) -> i64 {
    let pairs = [
        (
            node.non_zero_milli_cpu + pod.requests.non_zero_milli_cpu,
            node.allocatable().milli_cpu,
        ),
        (
            node.non_zero_memory + pod.requests.non_zero_memory,
            node.allocatable().memory,
        ),
    ];
    let (mut sum, mut count) = (0, 0);
    for (requested, capacity) in pairs {
        if capacity == 0 {
            continue;
        }
        sum += if requested > capacity {
            0
        } else {
            (capacity - requested) * MAX_NODE_SCORE / capacity
        };
        count += 1;
    }
    if count == 0 {
        0
    } else {
        sum / count
    }
}

/// NodeResourcesBalancedAllocation: 100 when cpu and memory would be equally used (actual
/// requests), less as their fractions drift apart.
fn balanced_allocation(node: &NodeInfo, pod: &Incoming<'_>) -> i64 {
    let pairs = [
        (
            node.requested().milli_cpu + pod.requests.requested.milli_cpu,
            node.allocatable().milli_cpu,
        ),
        (
            node.requested().memory + pod.requests.requested.memory,
            node.allocatable().memory,
        ),
    ];
    let mut f = [0.0f64; 2];
    let mut count = 0;
    for (requested, capacity) in pairs {
        if capacity == 0 {
            continue;
        }
        f[count] = (requested as f64 / capacity as f64).min(1.0);
        count += 1;
    }
    let std = if count == 2 {
        ((f[0] - f[1]) / 2.0).abs()
    } else {
        0.0
    };
    ((1.0 - std) * MAX_NODE_SCORE as f64) as i64
}

/// Fewer is better; all 100 when none has any.
fn normalize_reverse(raw: &mut [i64]) {
    let max = raw.iter().copied().max().unwrap_or(0);
    for r in raw.iter_mut() {
        *r = if max == 0 {
            MAX_NODE_SCORE
        } else {
            MAX_NODE_SCORE - MAX_NODE_SCORE * *r / max
        };
    }
}

/// More is better, scaled so the best gets 100; unchanged when all are 0.
fn normalize_by_max(raw: &mut [i64]) {
    let max = raw.iter().copied().max().unwrap_or(0);
    if max > 0 {
        raw.iter_mut().for_each(|r| *r = MAX_NODE_SCORE * *r / max);
    }
}

/// PodTopologySpread: fewer matching pods is better.
fn normalize_spread(raw: &mut [i64]) {
    let max = raw.iter().copied().max().unwrap_or(0);
    let min = raw.iter().copied().min().unwrap_or(0);
    for r in raw.iter_mut() {
        *r = if max == 0 {
            MAX_NODE_SCORE
        } else {
            MAX_NODE_SCORE * (max + min - *r) / max
        };
    }
}

/// InterPodAffinity: scaled between the worst (0) and the best (100); all 0 when equal.
fn normalize_min_max(raw: &mut [i64]) {
    let max = raw.iter().copied().max().unwrap_or(0);
    let min = raw.iter().copied().min().unwrap_or(0);
    let spread = max - min;
    for r in raw.iter_mut() {
        *r = if spread > 0 {
            (MAX_NODE_SCORE as f64 * ((*r - min) as f64 / spread as f64)) as i64
        } else {
            0
        };
    }
}

/// The index of a highest total, chosen uniformly among ties (reservoir sampling).
fn pick_max(totals: &[i64], rng: &mut u64) -> usize {
    let mut best = 0;
    let mut ties = 0u64;
    for (i, &t) in totals.iter().enumerate() {
        if i == 0 || t > totals[best] {
            best = i;
            ties = 1;
        } else if t == totals[best] {
            ties += 1;
            if next_random(rng).is_multiple_of(ties) {
                best = i;
            }
        }
    }
    best
}

/// xorshift64*: cheap, good enough to break ties.
pub fn next_random(state: &mut u64) -> u64 {
    let mut x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    x.wrapping_mul(0x2545_F491_4F6C_DD1D)
}

#[cfg(test)]
#[path = "scoring_tests.rs"]
mod tests;
