//! A pod's demands on node labels: `nodeSelector`, required node affinity (filter) and
//! preferred node affinity (score), borrowed from the pod and checked without allocating.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{NodeSelectorRequirement, NodeSelectorTerm, Pod};

/// The only field a `matchFields` requirement may name.
const NAME_FIELD: &str = "metadata.name";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    In,
    NotIn,
    Exists,
    DoesNotExist,
    Gt,
    Lt,
}

/// One requirement, validated once per decision.
#[derive(Debug)]
struct Expr<'p> {
    key: &'p str,
    op: Op,
    values: &'p [String],
    /// The number a Gt/Lt requirement compares against.
    bound: i64,
}

impl<'p> Expr<'p> {
    /// None when the requirement is malformed (unknown operator, wrong number of values, a
    /// non-integer bound): Kubernetes then drops the whole term, which matches nothing.
    fn parse(req: &'p NodeSelectorRequirement) -> Option<Self> {
        let values = req.values.as_deref().unwrap_or_default();
        let op = match req.operator.as_str() {
            "In" => Op::In,
            "NotIn" => Op::NotIn,
            "Exists" => Op::Exists,
            "DoesNotExist" => Op::DoesNotExist,
            "Gt" => Op::Gt,
            "Lt" => Op::Lt,
            _ => return None,
        };
        let count_ok = match op {
            Op::In | Op::NotIn => !values.is_empty(),
            Op::Exists | Op::DoesNotExist => values.is_empty(),
            Op::Gt | Op::Lt => values.len() == 1,
        };
        if !count_ok {
            return None;
        }
        let bound = match op {
            Op::Gt | Op::Lt => values[0].parse().ok()?,
            _ => 0,
        };
        Some(Expr {
            key: &req.key,
            op,
            values,
            bound,
        })
    }

    /// Only metadata.name with In/NotIn and one value is a valid field requirement.
    fn is_name_field(&self) -> bool {
        self.key == NAME_FIELD && matches!(self.op, Op::In | Op::NotIn) && self.values.len() == 1
    }

    /// Against the value of the key (a label, or the node name for a field).
    fn matches(&self, value: Option<&str>) -> bool {
        let has = |v: &str| self.values.iter().any(|x| x == v);
        match (self.op, value) {
            (Op::In, Some(v)) => has(v),
            (Op::In, None) => false,
            (Op::NotIn, Some(v)) => !has(v),
            (Op::NotIn, None) => true,
            (Op::Exists, v) => v.is_some(),
            (Op::DoesNotExist, v) => v.is_none(),
            (Op::Gt, Some(v)) => v.parse::<i64>().is_ok_and(|n| n > self.bound),
            (Op::Lt, Some(v)) => v.parse::<i64>().is_ok_and(|n| n < self.bound),
            (Op::Gt | Op::Lt, None) => false,
        }
    }
}

/// A node selector term: its label expressions and field expressions, all ANDed.
#[derive(Debug)]
pub struct Term<'p> {
    labels: Vec<Expr<'p>>,
    fields: Vec<Expr<'p>>,
    /// False when a requirement was malformed or the term is empty: it matches no node.
    usable: bool,
}

impl<'p> Term<'p> {
    fn parse(term: &'p NodeSelectorTerm) -> Self {
        let mut usable = true;
        let mut parse_all = |reqs: Option<&'p Vec<NodeSelectorRequirement>>, fields: bool| {
            let mut out = Vec::new();
            for req in reqs.into_iter().flatten() {
                match Expr::parse(req) {
                    Some(e) if !fields || e.is_name_field() => out.push(e),
                    _ => usable = false,
                }
            }
            out
        };
        let labels = parse_all(term.match_expressions.as_ref(), false);
        let fields = parse_all(term.match_fields.as_ref(), true);
        let usable = usable && !(labels.is_empty() && fields.is_empty());
        Term {
            labels,
            fields,
            usable,
        }
    }

    /// Whether the node named `name` with `labels` satisfies the term.
    pub fn matches(&self, name: &str, labels: &BTreeMap<String, String>) -> bool {
        self.usable
            && self
                .labels
                .iter()
                .all(|e| e.matches(labels.get(e.key).map(String::as_str)))
            && self.fields.iter().all(|e| e.matches(Some(name)))
    }
}

/// Which nodes a pod's required node affinity confines it to by name (kube-scheduler's
/// NodeAffinity PreFilter): DaemonSet pods name their node this way, so only that node is
/// examined instead of the whole cluster.
#[derive(Debug, PartialEq, Eq)]
pub enum Pinned<'p> {
    /// Any node may match.
    Anywhere,
    /// Only these nodes can match.
    To(Vec<&'p str>),
    /// The terms name disjoint sets of nodes: none can match.
    Conflict,
}

/// The pod's node selector and node affinity.
#[derive(Debug, Default)]
pub struct NodeAffinity<'p> {
    selector: Option<&'p BTreeMap<String, String>>,
    required: Option<Vec<Term<'p>>>,
    required_raw: Option<&'p [NodeSelectorTerm]>,
    /// Preferred terms with a non-zero weight.
    preferred: Vec<(i64, Term<'p>)>,
}

impl<'p> NodeAffinity<'p> {
    /// Reads `pod`'s nodeSelector and node affinity.
    pub fn of(pod: &'p Pod) -> Self {
        let Some(spec) = pod.spec.as_ref() else {
            return NodeAffinity::default();
        };
        let node_affinity = spec
            .affinity
            .as_ref()
            .and_then(|a| a.node_affinity.as_ref());
        let required_raw = node_affinity
            .and_then(|n| {
                n.required_during_scheduling_ignored_during_execution
                    .as_ref()
            })
            .map(|s| s.node_selector_terms.as_slice());
        let preferred = node_affinity
            .and_then(|n| {
                n.preferred_during_scheduling_ignored_during_execution
                    .as_ref()
            })
            .into_iter()
            .flatten()
            .filter(|p| p.weight != 0)
            .map(|p| (i64::from(p.weight), Term::parse(&p.preference)))
            .collect();
        NodeAffinity {
            selector: spec.node_selector.as_ref().filter(|s| !s.is_empty()),
            required: required_raw.map(|terms| terms.iter().map(Term::parse).collect()),
            required_raw,
            preferred,
        }
    }

    /// The filter: every nodeSelector label matches and, with required affinity, at least
    /// one term matches (an empty list of terms matches nothing).
    pub fn required_matches(&self, name: &str, labels: &BTreeMap<String, String>) -> bool {
        if let Some(selector) = self.selector {
            if !selector.iter().all(|(k, v)| labels.get(k) == Some(v)) {
                return false;
            }
        }
        match &self.required {
            None => true,
            Some(terms) => terms.iter().any(|t| t.matches(name, labels)),
        }
    }

    /// Whether there are preferred terms to score.
    pub fn has_preferences(&self) -> bool {
        !self.preferred.is_empty()
    }

    /// The sum of the weights of the preferred terms the node matches.
    pub fn preference_score(&self, name: &str, labels: &BTreeMap<String, String>) -> i64 {
        self.preferred
            .iter()
            .filter(|(_, t)| t.matches(name, labels))
            .map(|(w, _)| *w)
            .sum()
    }

    /// The node names the required terms confine the pod to: the union over terms of the
    /// intersection of each term's `metadata.name In` values; a term without one allows any
    /// node.
    pub fn pinned(&self) -> Pinned<'p> {
        let Some(terms) = self.required_raw.filter(|t| !t.is_empty()) else {
            return Pinned::Anywhere;
        };
        let mut union: Vec<&'p str> = Vec::new();
        for term in terms {
            let mut names: Option<Vec<&'p str>> = None;
            let name_ins = term
                .match_fields
                .iter()
                .flatten()
                .filter(|r| r.key == NAME_FIELD && r.operator == "In");
            for req in name_ins {
                let values = req.values.iter().flatten().map(String::as_str);
                names = Some(match names {
                    None => values.collect(),
                    Some(prev) => prev
                        .into_iter()
                        .filter(|n| req.values.iter().flatten().any(|v| v == n))
                        .collect(),
                });
            }
            match names {
                None => return Pinned::Anywhere,
                Some(names) => union.extend(names),
            }
        }
        union.sort_unstable();
        union.dedup();
        if union.is_empty() {
            Pinned::Conflict
        } else {
            Pinned::To(union)
        }
    }
}

#[cfg(test)]
#[path = "node_affinity_tests.rs"]
mod tests;
