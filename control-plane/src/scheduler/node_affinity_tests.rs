use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, NodeAffinity as K8sNodeAffinity, NodeSelector, NodeSelectorRequirement,
    NodeSelectorTerm, Pod, PreferredSchedulingTerm,
};

use super::super::fixtures::*;
use super::*;

fn req(key: &str, op: &str, values: &[&str]) -> NodeSelectorRequirement {
    NodeSelectorRequirement {
        key: key.to_owned(),
        operator: op.to_owned(),
        values: (!values.is_empty()).then(|| values.iter().map(|v| (*v).to_owned()).collect()),
    }
}

fn labels_term(reqs: Vec<NodeSelectorRequirement>) -> NodeSelectorTerm {
    NodeSelectorTerm {
        match_expressions: Some(reqs),
        ..Default::default()
    }
}

fn fields_term(reqs: Vec<NodeSelectorRequirement>) -> NodeSelectorTerm {
    NodeSelectorTerm {
        match_fields: Some(reqs),
        ..Default::default()
    }
}

fn with_required(terms: Vec<NodeSelectorTerm>) -> Pod {
    let mut p = pod("p", "", "");
    if let Some(s) = p.spec.as_mut() {
        s.affinity = Some(Affinity {
            node_affinity: Some(K8sNodeAffinity {
                required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                    node_selector_terms: terms,
                }),
                ..Default::default()
            }),
            ..Default::default()
        })
    }
    p
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[test]
fn label_operators() {
    let node = labels(&[("zone", "a"), ("cores", "16")]);
    let cases = [
        (req("zone", "In", &["a", "b"]), true),
        (req("zone", "In", &["b"]), false),
        (req("zone", "NotIn", &["b"]), true),
        (req("missing", "NotIn", &["b"]), true),
        (req("zone", "Exists", &[]), true),
        (req("missing", "Exists", &[]), false),
        (req("missing", "DoesNotExist", &[]), true),
        (req("zone", "DoesNotExist", &[]), false),
        (req("cores", "Gt", &["8"]), true),
        (req("cores", "Gt", &["16"]), false),
        (req("cores", "Lt", &["32"]), true),
        (req("zone", "Gt", &["1"]), false),
        // Malformed requirements drop the term: it matches nothing.
        (req("cores", "Gt", &["many"]), false),
        (req("zone", "In", &[]), false),
        (req("zone", "Exists", &["a"]), false),
        (req("zone", "Near", &["a"]), false),
    ];
    for (r, want) in cases {
        let description = format!("{r:?}");
        let p = with_required(vec![labels_term(vec![r])]);
        assert_eq!(
            NodeAffinity::of(&p).required_matches("n", &node),
            want,
            "{description}"
        );
    }
}

#[test]
fn terms_are_ored_and_requirements_anded() {
    let node = labels(&[("zone", "a"), ("disk", "ssd")]);
    let p = with_required(vec![
        labels_term(vec![req("zone", "In", &["b"])]),
        labels_term(vec![req("zone", "In", &["a"]), req("disk", "In", &["ssd"])]),
    ]);
    assert!(NodeAffinity::of(&p).required_matches("n", &node));
    let p = with_required(vec![labels_term(vec![
        req("zone", "In", &["a"]),
        req("disk", "In", &["hdd"]),
    ])]);
    assert!(!NodeAffinity::of(&p).required_matches("n", &node));
    // An empty term, or no terms at all, matches no node.
    assert!(
        !NodeAffinity::of(&with_required(vec![NodeSelectorTerm::default()]))
            .required_matches("n", &node)
    );
    assert!(!NodeAffinity::of(&with_required(vec![])).required_matches("n", &node));
}

#[test]
fn match_fields_pin_to_the_node_name() {
    let p = with_required(vec![fields_term(vec![req(
        "metadata.name",
        "In",
        &["node-7"],
    )])]);
    let affinity = NodeAffinity::of(&p);
    assert!(affinity.required_matches("node-7", &BTreeMap::new()));
    assert!(!affinity.required_matches("node-8", &BTreeMap::new()));
    assert_eq!(affinity.pinned(), Pinned::To(vec!["node-7"]));
    let p = with_required(vec![fields_term(vec![req(
        "metadata.name",
        "NotIn",
        &["node-7"],
    )])]);
    assert!(NodeAffinity::of(&p).required_matches("node-8", &BTreeMap::new()));
    // Only metadata.name with one value is a valid field requirement.
    let p = with_required(vec![fields_term(vec![req("metadata.uid", "In", &["x"])])]);
    assert!(!NodeAffinity::of(&p).required_matches("x", &BTreeMap::new()));
}

#[test]
fn pinning_is_the_union_of_each_terms_names() {
    let pin = |terms| -> Vec<String> {
        match NodeAffinity::of(&with_required(terms)).pinned() {
            Pinned::Anywhere => vec!["*".to_owned()],
            Pinned::Conflict => vec![],
            Pinned::To(names) => names.into_iter().map(str::to_owned).collect(),
        }
    };
    let name_in = |names: &[&str]| req("metadata.name", "In", names);
    assert_eq!(
        pin(vec![
            fields_term(vec![name_in(&["b"])]),
            fields_term(vec![name_in(&["a"])])
        ]),
        ["a", "b"]
    );
    assert_eq!(
        pin(vec![fields_term(vec![
            name_in(&["a", "b"]),
            name_in(&["b", "c"])
        ])]),
        ["b"]
    );
    assert!(
        pin(vec![fields_term(vec![name_in(&["a"]), name_in(&["c"])])]).is_empty(),
        "conflict"
    );
    // A term without a name requirement lets the pod go anywhere.
    assert_eq!(
        pin(vec![
            fields_term(vec![name_in(&["a"])]),
            labels_term(vec![req("zone", "Exists", &[])])
        ]),
        ["*"]
    );
    assert_eq!(
        NodeAffinity::of(&pod("p", "", "")).pinned(),
        Pinned::Anywhere
    );
}

#[test]
fn preferred_terms_sum_the_weights_of_matching_terms() {
    let mut p = pod("p", "", "");
    let preferred = |weight, term| PreferredSchedulingTerm {
        weight,
        preference: term,
    };
    if let Some(s) = p.spec.as_mut() {
        s.affinity = Some(Affinity {
            node_affinity: Some(K8sNodeAffinity {
                preferred_during_scheduling_ignored_during_execution: Some(vec![
                    preferred(10, labels_term(vec![req("zone", "In", &["a"])])),
                    preferred(5, labels_term(vec![req("disk", "Exists", &[])])),
                    preferred(0, labels_term(vec![req("zone", "Exists", &[])])),
                ]),
                ..Default::default()
            }),
            ..Default::default()
        })
    }
    let affinity = NodeAffinity::of(&p);
    assert!(affinity.has_preferences());
    assert_eq!(
        affinity.preference_score("n", &labels(&[("zone", "a"), ("disk", "ssd")])),
        15
    );
    assert_eq!(affinity.preference_score("n", &labels(&[("zone", "b")])), 0);
}
