use k8s_openapi::api::core::v1::{NodeSpec, PreferredSchedulingTerm, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::*;

fn node(name: &str, labels: &[(&str, &str)], taints: &[(&str, &str)]) -> Node {
    Node {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..Default::default()
        },
        spec: Some(NodeSpec {
            taints: Some(
                taints
                    .iter()
                    .map(|(key, effect)| Taint {
                        key: key.to_string(),
                        effect: effect.to_string(),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }),
        status: None,
    }
}

fn template(spec: PodSpec) -> PodTemplateSpec {
    PodTemplateSpec {
        metadata: None,
        spec: Some(spec),
    }
}

fn requirement(key: &str, operator: &str, values: &[&str]) -> NodeSelectorRequirement {
    NodeSelectorRequirement {
        key: key.into(),
        operator: operator.into(),
        values: (!values.is_empty()).then(|| values.iter().map(|v| v.to_string()).collect()),
    }
}

fn with_required(terms: Vec<NodeSelectorTerm>) -> PodTemplateSpec {
    template(PodSpec {
        affinity: Some(Affinity {
            node_affinity: Some(NodeAffinity {
                required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                    node_selector_terms: terms,
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    })
}

const RUN: Placement = Placement {
    should_run: true,
    should_continue_running: true,
};
const KEEP_ONLY: Placement = Placement {
    should_run: false,
    should_continue_running: true,
};

#[test]
fn node_selector_must_match_every_label() {
    let t = template(PodSpec {
        node_selector: Some(BTreeMap::from([("disk".to_string(), "ssd".to_string())])),
        ..Default::default()
    });
    let eligibility = Eligibility::of(&t);
    assert_eq!(eligibility.check(&node("a", &[("disk", "ssd")], &[])), RUN);
    assert_eq!(
        eligibility.check(&node("b", &[("disk", "hdd")], &[])),
        Placement::default()
    );
    assert_eq!(
        eligibility.check(&node("c", &[], &[])),
        Placement::default()
    );
}

#[test]
fn required_affinity_terms_are_ored_and_their_requirements_anded() {
    let t = with_required(vec![
        NodeSelectorTerm {
            match_expressions: Some(vec![
                requirement("zone", "In", &["a", "b"]),
                requirement("gpu", "DoesNotExist", &[]),
            ]),
            match_fields: None,
        },
        NodeSelectorTerm {
            match_expressions: Some(vec![requirement("cores", "Gt", &["8"])]),
            match_fields: None,
        },
    ]);
    let eligibility = Eligibility::of(&t);
    assert!(
        eligibility
            .check(&node("n", &[("zone", "a")], &[]))
            .should_run
    );
    assert!(
        !eligibility
            .check(&node("n", &[("zone", "a"), ("gpu", "1")], &[]))
            .should_run
    );
    assert!(
        eligibility
            .check(&node("n", &[("cores", "16")], &[]))
            .should_run
    );
    assert!(
        !eligibility
            .check(&node("n", &[("cores", "4")], &[]))
            .should_run
    );
    assert!(
        !eligibility
            .check(&node("n", &[("cores", "many")], &[]))
            .should_run
    );
}

#[test]
fn match_fields_select_by_node_name_and_empty_terms_match_nothing() {
    let by_name = with_required(vec![NodeSelectorTerm {
        match_expressions: Some(vec![
            requirement("os", "Exists", &[]),
            requirement("tier", "NotIn", &["db"]),
        ]),
        match_fields: Some(vec![requirement("metadata.name", "In", &["n1"])]),
    }]);
    let eligibility = Eligibility::of(&by_name);
    assert!(
        eligibility
            .check(&node("n1", &[("os", "linux")], &[]))
            .should_run
    );
    assert!(
        !eligibility
            .check(&node("n2", &[("os", "linux")], &[]))
            .should_run
    );
    assert!(
        !eligibility
            .check(&node("n1", &[("os", "linux"), ("tier", "db")], &[]))
            .should_run
    );
    let empty = with_required(vec![NodeSelectorTerm::default()]);
    assert!(
        !Eligibility::of(&empty)
            .check(&node("n1", &[], &[]))
            .should_run
    );
    let pinned = template(PodSpec {
        node_name: Some("n1".into()),
        ..Default::default()
    });
    assert!(
        !Eligibility::of(&pinned)
            .check(&node("n2", &[], &[]))
            .should_run
    );
}

#[test]
fn taints_keep_new_pods_away_and_no_execute_removes_old_ones() {
    let plain = template(PodSpec::default());
    let eligibility = Eligibility::of(&plain);
    assert_eq!(
        eligibility.check(&node("n", &[], &[("dedicated", "NoSchedule")])),
        KEEP_ONLY
    );
    assert_eq!(
        eligibility.check(&node("n", &[], &[("dedicated", "NoExecute")])),
        Placement::default()
    );
    assert_eq!(
        eligibility.check(&node("n", &[], &[("soft", "PreferNoSchedule")])),
        RUN
    );
    // Daemon tolerations: node conditions and cordons do not keep daemons away.
    let conditions = [
        ("node.kubernetes.io/not-ready", "NoExecute"),
        ("node.kubernetes.io/unreachable", "NoExecute"),
        ("node.kubernetes.io/disk-pressure", "NoSchedule"),
        ("node.kubernetes.io/memory-pressure", "NoSchedule"),
        ("node.kubernetes.io/pid-pressure", "NoSchedule"),
        ("node.kubernetes.io/unschedulable", "NoSchedule"),
    ];
    assert_eq!(eligibility.check(&node("n", &[], &conditions)), RUN);
    let no_network = [("node.kubernetes.io/network-unavailable", "NoSchedule")];
    assert_eq!(eligibility.check(&node("n", &[], &no_network)), KEEP_ONLY);
    let host = template(PodSpec {
        host_network: Some(true),
        ..Default::default()
    });
    assert_eq!(
        Eligibility::of(&host).check(&node("n", &[], &no_network)),
        RUN
    );
}

#[test]
fn tolerations_match_by_key_value_and_effect() {
    let taint = Taint {
        key: "k".into(),
        value: Some("v".into()),
        effect: "NoSchedule".into(),
        ..Default::default()
    };
    let toleration = |key: Option<&str>,
                      operator: Option<&str>,
                      value: Option<&str>,
                      effect: Option<&str>| Toleration {
        key: key.map(str::to_string),
        operator: operator.map(str::to_string),
        value: value.map(str::to_string),
        effect: effect.map(str::to_string),
        toleration_seconds: None,
    };
    assert!(tolerates(
        &toleration(Some("k"), None, Some("v"), None),
        &taint
    ));
    assert!(tolerates(
        &toleration(Some("k"), Some("Equal"), Some("v"), Some("NoSchedule")),
        &taint
    ));
    assert!(!tolerates(
        &toleration(Some("k"), Some("Equal"), Some("w"), None),
        &taint
    ));
    assert!(!tolerates(
        &toleration(Some("k"), Some("Exists"), None, Some("NoExecute")),
        &taint
    ));
    assert!(tolerates(
        &toleration(None, Some("Exists"), None, None),
        &taint
    ));
}

#[test]
fn daemon_tolerations_replace_a_users_timed_one() {
    let mut spec = PodSpec {
        tolerations: Some(vec![Toleration {
            key: Some("node.kubernetes.io/not-ready".into()),
            operator: Some("Exists".into()),
            effect: Some("NoExecute".into()),
            toleration_seconds: Some(300),
            value: None,
        }]),
        ..Default::default()
    };
    add_daemon_tolerations(&mut spec);
    add_daemon_tolerations(&mut spec);
    let tolerations = spec.tolerations.unwrap_or_default();
    assert_eq!(
        tolerations.len(),
        6,
        "no duplicates, no network toleration without hostNetwork"
    );
    assert_eq!(tolerations[0].toleration_seconds, None);
}

#[test]
fn pinning_replaces_required_terms_and_keeps_preferences() {
    let mut spec = with_required(vec![NodeSelectorTerm {
        match_expressions: Some(vec![requirement("zone", "In", &["a"])]),
        match_fields: None,
    }])
    .spec
    .unwrap_or_default();
    if let Some(affinity) = spec
        .affinity
        .as_mut()
        .and_then(|a| a.node_affinity.as_mut())
    {
        affinity.preferred_during_scheduling_ignored_during_execution =
            Some(vec![PreferredSchedulingTerm {
                weight: 1,
                preference: NodeSelectorTerm::default(),
            }]);
    }
    pin_to_node(&mut spec, "n7");
    let node_affinity = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.clone())
        .unwrap_or_default();
    let terms = node_affinity
        .required_during_scheduling_ignored_during_execution
        .unwrap_or_default()
        .node_selector_terms;
    assert_eq!(terms.len(), 1);
    assert!(terms[0].match_expressions.is_none());
    assert!(node_affinity
        .preferred_during_scheduling_ignored_during_execution
        .is_some());
    let pod = Pod {
        spec: Some(spec),
        ..Default::default()
    };
    assert_eq!(target_node(&pod).as_deref(), Some("n7"));
    let mut bound = pod.clone();
    if let Some(s) = bound.spec.as_mut() {
        s.node_name = Some("n8".into());
    }
    assert_eq!(
        target_node(&bound).as_deref(),
        Some("n8"),
        "the binding wins"
    );
    assert_eq!(target_node(&Pod::default()), None);
}
