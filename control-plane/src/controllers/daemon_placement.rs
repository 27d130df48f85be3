//! Which nodes a DaemonSet's pod belongs on, and how a daemon pod is tied to its node.
//!
//! A node is eligible when the pod template's nodeName (if any), nodeSelector and required
//! node affinity match it and the pod tolerates its NoSchedule/NoExecute taints. The pod's
//! tolerations include those Kubernetes gives every daemon pod, so a node that is not ready,
//! unreachable, under pressure or cordoned keeps its daemons. A node whose only untolerated
//! taints are NoSchedule keeps the daemon pod it already has but gets no new one.

use std::collections::BTreeMap;

use super::taints::tolerates;
use k8s_openapi::api::core::v1::{
    Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod,
    PodSpec, PodTemplateSpec, Toleration,
};

/// The field a daemon pod's node affinity pins it by.
const NODE_NAME_FIELD: &str = "metadata.name";

/// The tolerations Kubernetes adds to every daemon pod (AddOrUpdateDaemonPodTolerations);
/// `host_network` pods also tolerate a node whose network is not set up yet.
pub fn daemon_tolerations(host_network: bool) -> Vec<Toleration> {
    let mut keys = vec![
        ("node.kubernetes.io/not-ready", "NoExecute"),
        ("node.kubernetes.io/unreachable", "NoExecute"),
        ("node.kubernetes.io/disk-pressure", "NoSchedule"),
        ("node.kubernetes.io/memory-pressure", "NoSchedule"),
        ("node.kubernetes.io/pid-pressure", "NoSchedule"),
        ("node.kubernetes.io/unschedulable", "NoSchedule"),
    ];
    if host_network {
        keys.push(("node.kubernetes.io/network-unavailable", "NoSchedule"));
    }
    keys.into_iter()
        .map(|(key, effect)| Toleration {
            key: Some(key.into()),
            operator: Some("Exists".into()),
            effect: Some(effect.into()),
            ..Default::default()
        })
        .collect()
}

/// Adds the daemon tolerations to `spec`, replacing a toleration of the same key, operator,
/// value and effect (so a user's tolerationSeconds does not shorten a daemon's stay).
pub fn add_daemon_tolerations(spec: &mut PodSpec) {
    let host_network = spec.host_network.unwrap_or(false);
    let tolerations = spec.tolerations.get_or_insert_with(Vec::new);
    for daemon in daemon_tolerations(host_network) {
        let same = |t: &Toleration| {
            t.key == daemon.key
                && t.operator == daemon.operator
                && t.value == daemon.value
                && t.effect == daemon.effect
        };
        match tolerations.iter_mut().find(|t| same(t)) {
            Some(existing) => *existing = daemon,
            None => tolerations.push(daemon),
        }
    }
}

/// Pins a daemon pod to `node` the way Kubernetes does since the scheduler binds daemon pods:
/// the required node affinity becomes a single term matching the node's name (the user's own
/// required terms were already checked when choosing the node; preferences stay).
pub fn pin_to_node(spec: &mut PodSpec, node: &str) {
    let pinned = NodeSelector {
        node_selector_terms: vec![NodeSelectorTerm {
            match_expressions: None,
            match_fields: Some(vec![NodeSelectorRequirement {
                key: NODE_NAME_FIELD.into(),
                operator: "In".into(),
                values: Some(vec![node.to_string()]),
            }]),
        }],
    };
    let affinity = spec.affinity.get_or_insert_with(Affinity::default);
    let node_affinity = affinity
        .node_affinity
        .get_or_insert_with(NodeAffinity::default);
    node_affinity.required_during_scheduling_ignored_during_execution = Some(pinned);
}

/// The node a daemon pod is for: where it is bound, else the node its affinity pins it to.
pub fn target_node(pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    if let Some(node) = spec.node_name.as_deref().filter(|n| !n.is_empty()) {
        return Some(node.to_string());
    }
    let terms = &spec
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms;
    let [term] = terms.as_slice() else {
        return None;
    };
    let [field] = term.match_fields.as_deref()? else {
        return None;
    };
    match (
        field.key.as_str(),
        field.operator.as_str(),
        field.values.as_deref(),
    ) {
        (NODE_NAME_FIELD, "In", Some([node])) => Some(node.clone()),
        _ => None,
    }
}

/// Whether a daemon pod belongs on a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Placement {
    /// A daemon pod should be created there if there is none.
    pub should_run: bool,
    /// A daemon pod already there may stay (a NoSchedule taint only keeps new ones away).
    pub should_continue_running: bool,
}

/// A DaemonSet's scheduling constraints, prepared once to be checked against many nodes.
#[derive(Debug, Clone)]
pub struct Eligibility<'a> {
    node_name: Option<&'a str>,
    node_selector: Option<&'a BTreeMap<String, String>>,
    required: Option<&'a NodeSelector>,
    tolerations: Vec<Toleration>,
}

impl<'a> Eligibility<'a> {
    /// The constraints of pods made from `template` (daemon tolerations included).
    pub fn of(template: &'a PodTemplateSpec) -> Eligibility<'a> {
        let spec = template.spec.as_ref();
        let mut with_daemon = PodSpec {
            tolerations: spec.and_then(|s| s.tolerations.clone()),
            host_network: spec.and_then(|s| s.host_network),
            ..Default::default()
        };
        add_daemon_tolerations(&mut with_daemon);
        Eligibility {
            node_name: spec
                .and_then(|s| s.node_name.as_deref())
                .filter(|n| !n.is_empty()),
            node_selector: spec.and_then(|s| s.node_selector.as_ref()),
            required: spec
                .and_then(|s| s.affinity.as_ref())
                .and_then(|a| a.node_affinity.as_ref())
                .and_then(|a| {
                    a.required_during_scheduling_ignored_during_execution
                        .as_ref()
                }),
            tolerations: with_daemon.tolerations.unwrap_or_default(),
        }
    }

    /// Whether the pod belongs on `node` (Kubernetes' NodeShouldRunDaemonPod).
    pub fn check(&self, node: &Node) -> Placement {
        let name = node.metadata.name.as_deref().unwrap_or_default();
        if self.node_name.is_some_and(|n| n != name) {
            return Placement::default();
        }
        static NO_LABELS: BTreeMap<String, String> = BTreeMap::new();
        let labels = node.metadata.labels.as_ref().unwrap_or(&NO_LABELS);
        let selector_fits = self
            .node_selector
            .is_none_or(|s| s.iter().all(|(k, v)| labels.get(k) == Some(v)));
        let affinity_fits = self.required.is_none_or(|r| {
            r.node_selector_terms
                .iter()
                .any(|term| term_matches(term, name, labels))
        });
        if !selector_fits || !affinity_fits {
            return Placement::default();
        }
        let taints = node
            .spec
            .as_ref()
            .and_then(|s| s.taints.as_deref())
            .unwrap_or_default();
        let untolerated = |effects: &[&str]| {
            taints.iter().any(|taint| {
                effects.contains(&taint.effect.as_str())
                    && !self.tolerations.iter().any(|t| tolerates(t, taint))
            })
        };
        if untolerated(&["NoSchedule", "NoExecute"]) {
            return Placement {
                should_run: false,
                should_continue_running: !untolerated(&["NoExecute"]),
            };
        }
        Placement {
            should_run: true,
            should_continue_running: true,
        }
    }
}

/// A term matches when all its expressions and fields do; an empty term matches nothing.
fn term_matches(
    term: &NodeSelectorTerm,
    node_name: &str,
    labels: &BTreeMap<String, String>,
) -> bool {
    let expressions = term.match_expressions.as_deref().unwrap_or_default();
    let fields = term.match_fields.as_deref().unwrap_or_default();
    if expressions.is_empty() && fields.is_empty() {
        return false;
    }
    expressions
        .iter()
        .all(|r| requirement_matches(r, labels.get(&r.key).map(String::as_str)))
        && fields.iter().all(|r| {
            // metadata.name is the only node field a selector may use.
            r.key == NODE_NAME_FIELD
                && matches!(r.operator.as_str(), "In" | "NotIn")
                && requirement_matches(r, Some(node_name))
        })
}

fn requirement_matches(requirement: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = requirement.values.as_deref().unwrap_or_default();
    let listed = |v: &str| values.iter().any(|x| x == v);
    let compare = |ordering: std::cmp::Ordering| match (value, values) {
        (Some(v), [bound]) => match (v.parse::<i64>(), bound.parse::<i64>()) {
            (Ok(v), Ok(bound)) => v.cmp(&bound) == ordering,
            _ => false,
        },
        _ => false,
    };
    match requirement.operator.as_str() {
        "In" => value.is_some_and(listed),
        "NotIn" => !value.is_some_and(listed),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" => compare(std::cmp::Ordering::Greater),
        "Lt" => compare(std::cmp::Ordering::Less),
        _ => false,
    }
}

#[cfg(test)]
#[path = "daemon_placement_tests.rs"]
mod tests;
