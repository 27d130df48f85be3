use super::super::fixtures::*;
use super::*;

#[test]
fn message_counts_and_sorts_reasons_like_kube_scheduler() {
    let mut snapshot = snapshot_of(&[
        taint(
            readiness(roomy("gone"), "Unknown"),
            "node.kubernetes.io/unreachable",
            "",
            "NoSchedule",
        ),
        node("small-1", "4", "1Gi", "110"),
        node("small-2", "4", "1Gi", "110"),
    ]);
    assert_eq!(
        failure(&mut snapshot, &pod("p", "", "2Gi")),
        "0/3 nodes are available: 1 node(s) had untolerated taint {node.kubernetes.io/unreachable: }, 2 Insufficient memory."
    );
}

#[test]
fn reasons_are_sorted_as_count_prefixed_strings() {
    // kube-scheduler sorts "<count> <reason>" strings, so "10 ..." comes before "2 ...".
    let error = FitError {
        num_nodes: 13,
        detail: Detail::Reasons(vec![
            ("node(s) were unschedulable".to_owned(), 2),
            ("Insufficient cpu".to_owned(), 10),
            ("Insufficient memory".to_owned(), 1),
        ]),
    };
    assert_eq!(error.to_string(), "0/13 nodes are available: 1 Insufficient memory, 10 Insufficient cpu, 2 node(s) were unschedulable.");
    assert_eq!(error.num_nodes(), 13);
    assert_eq!(error.reasons().len(), 3);
}

#[test]
fn same_reason_from_many_nodes_is_counted_once_per_node() {
    let nodes: Vec<_> = (0..5)
        .map(|i| taint(roomy(&format!("n{i}")), "team", "a", "NoExecute"))
        .collect();
    let mut snapshot = snapshot_of(&nodes);
    snapshot.upsert_node(&taint(roomy("n5"), "team", "b", "NoExecute"));
    assert_eq!(
        failure(&mut snapshot, &pod("p", "", "")),
        "0/6 nodes are available: 1 node(s) had untolerated taint {team: b}, 5 node(s) had untolerated taint {team: a}."
    );
}

#[test]
fn pre_filter_messages_keep_the_final_period() {
    assert_eq!(
        FitError::pre_filter(2, REASON_CONFLICT.to_owned()).to_string(),
        "0/2 nodes are available: pod affinity terms conflict."
    );
    assert_eq!(FitError::no_nodes().reasons(), &[]);
}
