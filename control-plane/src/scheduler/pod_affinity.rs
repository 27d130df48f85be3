//! Inter-pod affinity and anti-affinity: a pod's terms parsed once, the required terms as a
//! filter (both the incoming pod's and those of pods already on a node), the preferred ones
//! as a score.
//!
//! Bramble treats the `kubernetes.io/hostname` topology as the node itself (nodes carry that
//! label with their name), so hostname terms are answered from the node's own pods; terms on
//! other topology keys (zones) are answered from a per-decision scan of the cluster, as
//! kube-scheduler's PreFilter does.

use std::collections::{BTreeMap, HashSet};

use bramble_api::labels::Selector;
use k8s_openapi::api::core::v1::{Pod, PodAffinityTerm, WeightedPodAffinityTerm};

use super::pod_info::PodEntry;
use super::snapshot::NodeInfo;
use crate::controllers::pods;

/// The topology key that means "the same node".
pub const HOSTNAME: &str = "kubernetes.io/hostname";

/// One pod affinity term: which pods it selects and over which topology.
#[derive(Debug, Clone)]
pub struct AffinityTerm {
    namespaces: Vec<String>,
    /// An empty `namespaceSelector` selects every namespace.
    all_namespaces: bool,
    selector: Selector,
    /// The node label whose value defines the domain.
    pub topology_key: String,
}

impl AffinityTerm {
    /// `owner_namespace` is the namespace of the pod carrying the term: with no namespaces
    /// and no namespaceSelector, the term looks at that namespace only.
    fn new(owner_namespace: &str, term: &PodAffinityTerm) -> Result<Self, String> {
        let selector = pods::selector(term.label_selector.as_ref()).map_err(|e| e.to_string())?;
        let listed = term.namespaces.clone().unwrap_or_default();
        // Bramble's snapshot has no namespace labels: a non-empty namespaceSelector can only
        // be honoured through the listed namespaces; an empty one means all namespaces.
        let all_namespaces = term.namespace_selector.as_ref().is_some_and(|s| {
            s.match_labels.as_ref().is_none_or(|l| l.is_empty())
                && s.match_expressions.as_ref().is_none_or(|e| e.is_empty())
        });
        let namespaces = if listed.is_empty() && term.namespace_selector.is_none() {
            vec![owner_namespace.to_owned()]
        } else {
            listed
        };
        Ok(AffinityTerm {
            namespaces,
            all_namespaces,
            selector,
            topology_key: term.topology_key.clone(),
        })
    }

    /// Whether a pod in `namespace` with `labels` is one the term selects.
    pub fn matches(&self, namespace: &str, labels: &BTreeMap<String, String>) -> bool {
        (self.all_namespaces || self.namespaces.iter().any(|n| n == namespace))
            && self.selector.matches(labels)
    }

    /// Whether the domain is the node itself.
    pub fn on_host(&self) -> bool {
        self.topology_key == HOSTNAME
    }
}

/// A pod's parsed pod (anti-)affinity terms; weights as i64 for summing.
#[derive(Debug, Clone, Default)]
pub struct PodAffinityTerms {
    /// Required affinity: every term must find a selected pod in the node's domain.
    pub required_affinity: Vec<AffinityTerm>,
    /// Required anti-affinity: no term may find a selected pod in the node's domain.
    pub required_anti: Vec<AffinityTerm>,
    /// Preferred affinity with weights.
    pub preferred_affinity: Vec<(i64, AffinityTerm)>,
    /// Preferred anti-affinity with weights.
    pub preferred_anti: Vec<(i64, AffinityTerm)>,
}

impl PodAffinityTerms {
    /// The pod's terms, None when it has none.
    ///
    /// # Errors
    ///
    /// A message for a label selector that cannot be parsed.
    pub fn of(pod: &Pod) -> Result<Option<Box<Self>>, String> {
        let affinity = pod.spec.as_ref().and_then(|s| s.affinity.as_ref());
        let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
        let required = |terms: Option<&Vec<PodAffinityTerm>>| -> Result<Vec<AffinityTerm>, String> {
            terms
                .into_iter()
                .flatten()
                .map(|t| AffinityTerm::new(namespace, t))
                .collect()
        };
        let preferred = |terms: Option<&Vec<WeightedPodAffinityTerm>>| -> Result<Vec<(i64, AffinityTerm)>, String> {
            terms
                .into_iter()
                .flatten()
                .map(|t| Ok((i64::from(t.weight), AffinityTerm::new(namespace, &t.pod_affinity_term)?)))
                .collect()
        };
        let aff = affinity.and_then(|a| a.pod_affinity.as_ref());
        let anti = affinity.and_then(|a| a.pod_anti_affinity.as_ref());
        let terms = PodAffinityTerms {
            required_affinity: required(aff.and_then(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .as_ref()
            }))?,
            required_anti: required(anti.and_then(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .as_ref()
            }))?,
            preferred_affinity: preferred(aff.and_then(|a| {
                a.preferred_during_scheduling_ignored_during_execution
                    .as_ref()
            }))?,
            preferred_anti: preferred(anti.and_then(|a| {
                a.preferred_during_scheduling_ignored_during_execution
                    .as_ref()
            }))?,
        };
        let empty = terms.required_affinity.is_empty()
            && terms.required_anti.is_empty()
            && terms.preferred_affinity.is_empty()
            && terms.preferred_anti.is_empty();
        Ok((!empty).then(|| Box::new(terms)))
    }

    /// Required anti-affinity on a topology wider than the node: the snapshot counts such
    /// pods so a decision scans for them only when there are any.
    pub fn has_wide_required_anti(&self) -> bool {
        self.required_anti.iter().any(|t| !t.on_host())
    }

    /// Whether there are preferred terms to score.
    pub fn has_preferences(&self) -> bool {
        !self.preferred_affinity.is_empty() || !self.preferred_anti.is_empty()
    }
}

/// The domain value of `node` for `key`.
fn domain<'a>(node: &'a NodeInfo, key: &str) -> Option<&'a str> {
    if key == HOSTNAME {
        Some(node.name())
    } else {
        node.labels().get(key).map(String::as_str)
    }
}

/// Who the incoming pod is, for matching other pods' terms against it.
#[derive(Debug, Clone, Copy)]
pub struct Identity<'p> {
    /// Its namespace.
    pub namespace: &'p str,
    /// Its labels.
    pub labels: &'p BTreeMap<String, String>,
}

/// Why the inter-pod filter rejects a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Violation {
    /// A required affinity term finds no selected pod in the node's domain.
    Affinity,
    /// A required anti-affinity term of the incoming pod finds a selected pod there.
    AntiAffinity,
    /// A pod in the node's domain has required anti-affinity selecting the incoming pod.
    ExistingAntiAffinity,
}

/// What one decision needs to know about the whole cluster before filtering node by node
/// (kube-scheduler's InterPodAffinity PreFilter), computed only for pods that need it.
#[derive(Debug, Default)]
pub struct InterPodState {
    /// Per required affinity term: the domains holding a pod that matches all the terms.
    affinity_domains: Vec<HashSet<String>>,
    /// Whether the incoming pod matches all its own required affinity terms.
    self_match: bool,
    /// Per required anti-affinity term on a wide topology: the domains holding a match.
    anti_domains: Vec<HashSet<String>>,
    /// (key, value) domains closed by existing pods' wide required anti-affinity.
    closed_domains: Vec<(String, String)>,
}

impl InterPodState {
    /// Scans the cluster as far as `terms` and the existing wide anti-affinity require;
    /// `wide_anti_pods` is how many pods have such terms.
    pub fn compute(
        nodes: &[NodeInfo],
        me: Identity<'_>,
        terms: Option<&PodAffinityTerms>,
        wide_anti_pods: usize,
    ) -> Self {
        let mut state = InterPodState::default();
        if let Some(terms) = terms {
            let wide_anti: Vec<&AffinityTerm> = terms
                .required_anti
                .iter()
                .filter(|t| !t.on_host())
                .collect();
            if !terms.required_affinity.is_empty() || !wide_anti.is_empty() {
                state.affinity_domains = vec![HashSet::new(); terms.required_affinity.len()];
                state.anti_domains = vec![HashSet::new(); wide_anti.len()];
                for node in nodes {
                    for pod in node.pods() {
                        state.note_existing(node, pod, &terms.required_affinity, &wide_anti);
                    }
                }
            }
            state.self_match = terms
                .required_affinity
                .iter()
                .all(|t| t.matches(me.namespace, me.labels));
        }
        if wide_anti_pods > 0 {
            for node in nodes {
                for pod in node.affinity_pods() {
                    let Some(theirs) = pod.affinity.as_deref() else {
                        continue;
                    };
                    for term in theirs.required_anti.iter().filter(|t| !t.on_host()) {
                        if let Some(value) = node.labels().get(&term.topology_key) {
                            if term.matches(me.namespace, me.labels) {
                                state
                                    .closed_domains
                                    .push((term.topology_key.clone(), value.clone()));
                            }
                        }
                    }
                }
            }
        }
        state
    }

    fn note_existing(
        &mut self,
        node: &NodeInfo,
        pod: &PodEntry,
        affinity: &[AffinityTerm],
        wide_anti: &[&AffinityTerm],
    ) {
        if !affinity.is_empty()
            && affinity
                .iter()
                .all(|t| t.matches(&pod.namespace, &pod.labels))
        {
            for (i, term) in affinity.iter().enumerate() {
                if let Some(value) = domain(node, &term.topology_key) {
                    if let Some(domains) = self.affinity_domains.get_mut(i) {
                        domains.insert(value.to_owned());
                    }
                }
            }
        }
        for (i, term) in wide_anti.iter().enumerate() {
            if let Some(value) = node.labels().get(&term.topology_key) {
                if term.matches(&pod.namespace, &pod.labels) {
                    if let Some(domains) = self.anti_domains.get_mut(i) {
                        domains.insert(value.clone());
                    }
                }
            }
        }
    }

    /// The filter for one node, in kube-scheduler's order: affinity, the incoming pod's
    /// anti-affinity, then existing pods' anti-affinity.
    pub fn check(
        &self,
        node: &NodeInfo,
        me: Identity<'_>,
        terms: Option<&PodAffinityTerms>,
    ) -> Result<(), Violation> {
        if let Some(terms) = terms {
            if !terms.required_affinity.is_empty() {
                let mut found = true;
                for (i, term) in terms.required_affinity.iter().enumerate() {
                    let Some(value) = domain(node, &term.topology_key) else {
                        return Err(Violation::Affinity);
                    };
                    found &= self
                        .affinity_domains
                        .get(i)
                        .is_some_and(|d| d.contains(value));
                }
                // The first pod of a group that selects itself may go anywhere.
                let first_of_group =
                    self.affinity_domains.iter().all(HashSet::is_empty) && self.self_match;
                if !found && !first_of_group {
                    return Err(Violation::Affinity);
                }
            }
            let mut wide = 0;
            for term in &terms.required_anti {
                if term.on_host() {
                    if node
                        .pods()
                        .iter()
                        .any(|p| term.matches(&p.namespace, &p.labels))
                    {
                        return Err(Violation::AntiAffinity);
                    }
                } else {
                    let hit = node.labels().get(&term.topology_key).is_some_and(|v| {
                        self.anti_domains.get(wide).is_some_and(|d| d.contains(v))
                    });
                    wide += 1;
                    if hit {
                        return Err(Violation::AntiAffinity);
                    }
                }
            }
        }
        for pod in node.affinity_pods() {
            let Some(theirs) = pod.affinity.as_deref() else {
                continue;
            };
            if theirs
                .required_anti
                .iter()
                .any(|t| t.on_host() && t.matches(me.namespace, me.labels))
            {
                return Err(Violation::ExistingAntiAffinity);
            }
        }
        let closed = self
            .closed_domains
            .iter()
            .any(|(k, v)| node.labels().get(k) == Some(v));
        if closed {
            return Err(Violation::ExistingAntiAffinity);
        }
        Ok(())
    }
}

/// kube-scheduler's `hardPodAffinityWeight`: how much an existing pod's required affinity
/// towards the incoming pod counts when scoring.
const HARD_AFFINITY_WEIGHT: i64 = 1;

/// The InterPodAffinity raw score of a node (before normalisation), hostname terms only:
/// the incoming pod's preferred terms against the node's pods, and the node's pods' terms
/// against the incoming pod.
pub fn preference_score(
    node: &NodeInfo,
    me: Identity<'_>,
    terms: Option<&PodAffinityTerms>,
) -> i64 {
    let mut score = 0;
    if let Some(terms) = terms.filter(|t| t.has_preferences()) {
        for pod in node.pods() {
            for (weight, term) in &terms.preferred_affinity {
                if term.on_host() && term.matches(&pod.namespace, &pod.labels) {
                    score += weight;
                }
            }
            for (weight, term) in &terms.preferred_anti {
                if term.on_host() && term.matches(&pod.namespace, &pod.labels) {
                    score -= weight;
                }
            }
        }
    }
    for pod in node.affinity_pods() {
        let Some(theirs) = pod.affinity.as_deref() else {
            continue;
        };
        let selects_me = |t: &AffinityTerm| t.on_host() && t.matches(me.namespace, me.labels);
        score += HARD_AFFINITY_WEIGHT
            * theirs
                .required_affinity
                .iter()
                .filter(|t| selects_me(t))
                .count() as i64;
        score += theirs
            .preferred_affinity
            .iter()
            .filter(|(_, t)| selects_me(t))
            .map(|(w, _)| w)
            .sum::<i64>();
        score -= theirs
            .preferred_anti
            .iter()
            .filter(|(_, t)| selects_me(t))
            .map(|(w, _)| w)
            .sum::<i64>();
    }
    score
}

#[cfg(test)]
#[path = "pod_affinity_tests.rs"]
mod tests;
