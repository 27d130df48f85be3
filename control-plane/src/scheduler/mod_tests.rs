use std::time::Instant;

use k8s_openapi::api::core::v1::{
    Affinity, NodeAffinity as K8sNodeAffinity, NodeSelector, NodeSelectorRequirement,
    NodeSelectorTerm, Pod, PodSpec,
};

use super::fixtures::*;
use super::*;

/// A DaemonSet-style pod pinned to `node` through matchFields.
fn pinned_to(mut pod: Pod, node: &str) -> Pod {
    let term = NodeSelectorTerm {
        match_fields: Some(vec![NodeSelectorRequirement {
            key: "metadata.name".to_owned(),
            operator: "In".to_owned(),
            values: Some(vec![node.to_owned()]),
        }]),
        ..Default::default()
    };
    pod.spec.get_or_insert_with(PodSpec::default).affinity = Some(Affinity {
        node_affinity: Some(K8sNodeAffinity {
            required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                node_selector_terms: vec![term],
            }),
            ..Default::default()
        }),
        ..Default::default()
    });
    pod
}

#[test]
fn no_nodes_gives_kube_schedulers_message() {
    let mut snapshot = Snapshot::new();
    assert_eq!(
        failure(&mut snapshot, &pod("p", "100m", "")),
        "0/0 nodes are available: no nodes available to schedule pods."
    );
}

#[test]
fn schedules_and_assumes_the_pod() {
    let mut snapshot = snapshot_of(&[node("only", "1", "1Gi", "10")]);
    let p = pod("p", "600m", "100Mi");
    assert_eq!(snapshot.schedule(&p, &any_runtime()).as_deref(), Ok("only"));
    let info = snapshot.node("only").expect("node");
    assert_eq!(info.requested().milli_cpu, 600);
    assert_eq!(info.pods().len(), 1);
    // The next decision sees the assumed pod.
    assert_eq!(
        failure(&mut snapshot, &pod("q", "600m", "")),
        "0/1 nodes are available: 1 Insufficient cpu."
    );
}

#[test]
fn forget_returns_the_resources() {
    let mut snapshot = snapshot_of(&[node("only", "1", "1Gi", "10")]);
    let p = pod("p", "600m", "100Mi");
    snapshot.schedule(&p, &any_runtime()).expect("fits");
    snapshot.forget(&p);
    let info = snapshot.node("only").expect("node");
    assert_eq!(info.requested(), &Resources::default());
    assert!(info.pods().is_empty());
    assert_eq!(
        snapshot
            .schedule(&pod("q", "600m", ""), &any_runtime())
            .as_deref(),
        Ok("only")
    );
}

#[test]
fn forget_keeps_a_pod_already_seen_bound() {
    let mut snapshot = snapshot_of(&[node("only", "1", "1Gi", "10")]);
    let p = pod("p", "600m", "");
    let chosen = snapshot.schedule(&p, &any_runtime()).expect("fits");
    snapshot.add_pod(&bound(p.clone(), &chosen));
    snapshot.forget(&p);
    assert_eq!(
        snapshot.node("only").expect("node").requested().milli_cpu,
        600
    );
}

#[test]
fn feasible_nodes_to_find_is_kube_schedulers_adaptive_percentage() {
    for (nodes, wanted) in [
        (0, 0),
        (50, 50),
        (99, 99),
        (100, 100),
        (200, 100),
        (1000, 420),
        (5000, 500),
        (6000, 300),
        (20000, 1000),
    ] {
        assert_eq!(feasible_nodes_to_find(nodes), wanted, "{nodes} nodes");
    }
}

#[test]
fn decisions_stop_early_and_rotate_the_starting_node() {
    let nodes: Vec<_> = (0..1000).map(|i| roomy(&format!("n{i:04}"))).collect();
    let mut snapshot = snapshot_of(&nodes);
    snapshot
        .schedule(&pod("a", "100m", ""), &any_runtime())
        .expect("fits");
    // 420 feasible nodes wanted out of 1000, all feasible: the next walk starts after them.
    assert_eq!(snapshot.next_start, 420);
    let second = snapshot
        .schedule(&pod("b", "100m", ""), &any_runtime())
        .expect("fits");
    let position = snapshot.position(&second).expect("known");
    assert!(
        (420..840).contains(&position),
        "{second} outside the second window"
    );
}

#[test]
fn a_pinned_pod_is_only_checked_against_its_node() {
    let mut snapshot = snapshot_of(&[roomy("a"), node("b", "1", "1Gi", "10"), roomy("c")]);
    let ds = pinned_to(pod("ds-b", "2", ""), "b");
    assert_eq!(failure(&mut snapshot, &ds), "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) didn't satisfy plugin(s) [NodeAffinity].");
    let ds = pinned_to(pod("ds-c", "2", ""), "c");
    assert_eq!(snapshot.schedule(&ds, &any_runtime()).as_deref(), Ok("c"));
    let gone = pinned_to(pod("ds-gone", "", ""), "gone");
    assert_eq!(
        failure(&mut snapshot, &gone),
        "0/3 nodes are available: 3 node(s) didn't satisfy plugin(s) [NodeAffinity]."
    );
}

#[test]
fn a_malformed_quantity_makes_the_pod_unschedulable() {
    let mut snapshot = snapshot_of(&[roomy("a")]);
    let message = failure(&mut snapshot, &pod("bad", "lots", ""));
    assert!(message.starts_with("0/1 nodes are available: invalid cpu request of container \"app\": invalid quantity \"lots\""), "{message}");
    assert!(message.ends_with('.'));
}

#[test]
fn runtime_and_arch_needs_select_nodes() {
    let wasm = label(
        label(roomy("wasm"), "bramble.dev/runtime-wasm", "true"),
        "kubernetes.io/arch",
        "arm64",
    );
    let plain = label(roomy("plain"), "kubernetes.io/arch", "amd64");
    let mut snapshot = snapshot_of(&[wasm, plain]);
    let needs = RuntimeNeeds {
        handler: Some("wasm".to_owned()),
        arches: Vec::new(),
    };
    assert_eq!(
        snapshot.schedule(&pod("w", "", ""), &needs).as_deref(),
        Ok("wasm")
    );
    let needs = RuntimeNeeds {
        handler: None,
        arches: vec!["amd64".to_owned()],
    };
    assert_eq!(
        snapshot.schedule(&pod("x", "", ""), &needs).as_deref(),
        Ok("plain")
    );
}

/// `count` nodes of 32 cpu / 128Gi / 110 pods.
fn cluster(count: usize) -> Snapshot {
    let nodes: Vec<_> = (0..count)
        .map(|i| node(&format!("node-{i:05}"), "32", "128Gi", "110"))
        .collect();
    snapshot_of(&nodes)
}

/// Pods of 50 ReplicaSets, like a cluster full of Deployments.
fn replica(i: usize) -> Pod {
    owned_by(
        pod_label(
            pod(&format!("web-{i}"), "100m", "128Mi"),
            "app",
            &format!("app-{}", i % 50),
        ),
        &format!("rs-{}", i % 50),
    )
}

#[test]
fn ten_thousand_pods_on_five_thousand_nodes_spread_evenly() {
    let mut snapshot = cluster(5000);
    for i in 0..10_000 {
        snapshot
            .schedule(&replica(i), &any_runtime())
            .expect("fits");
    }
    assert_eq!(snapshot.pod_count(), 10_000);
    let most = (0..5000)
        .map(|i| {
            snapshot
                .node(&format!("node-{i:05}"))
                .expect("node")
                .pods()
                .len()
        })
        .max();
    // Two pods per node on average; sampling a tenth of the nodes per decision still keeps
    // every node within a couple of pods of it.
    assert!(most.is_some_and(|m| m <= 4), "a node got {most:?} pods");
}

/// Run with `cargo test --release -- --ignored --nocapture scheduling_throughput`.
#[test]
#[ignore]
fn scheduling_throughput() {
    let mut snapshot = cluster(5000);
    let pods: Vec<Pod> = (0..50_000).map(replica).collect();
    let started = Instant::now();
    for p in &pods {
        snapshot.schedule(p, &any_runtime()).expect("fits");
    }
    let elapsed = started.elapsed();
    println!(
        "{} pods on 5000 nodes in {:.2?}: {:.0} pods/s",
        pods.len(),
        elapsed,
        pods.len() as f64 / elapsed.as_secs_f64()
    );
}
