use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, NodeAffinity as K8sNodeAffinity, NodeSelectorRequirement, NodeSelectorTerm, PodSpec,
    PreferredSchedulingTerm,
};

use super::super::fixtures::*;
use super::super::pod_info::Incoming;
use super::*;

#[test]
fn least_allocated_averages_cpu_and_memory() {
    let snapshot = snapshot_of(&[roomy("a")]);
    let p = pod("p", "1", "2Gi");
    let incoming = Incoming::parse(&p, &any_runtime()).expect("valid");
    assert_eq!(
        least_allocated(snapshot.node("a").expect("a"), &incoming),
        75
    );
    // Requesting nothing still counts the scoring defaults (100m, 200Mi).
    let empty = pod("e", "", "");
    let incoming = Incoming::parse(&empty, &any_runtime()).expect("valid");
    assert_eq!(
        least_allocated(snapshot.node("a").expect("a"), &incoming),
        97
    );
}

#[test]
fn prefers_the_emptier_node() {
    let mut snapshot = snapshot_of(&[roomy("busy"), roomy("idle")]);
    snapshot.add_pod(&bound(pod("load", "2", "4Gi"), "busy"));
    for i in 0..5 {
        assert_eq!(
            snapshot
                .schedule(&pod(&format!("p{i}"), "100m", "100Mi"), &any_runtime())
                .as_deref(),
            Ok("idle")
        );
    }
}

#[test]
fn spreads_a_replicasets_pods_over_nodes() {
    let mut snapshot = snapshot_of(&[roomy("a"), roomy("b"), roomy("c")]);
    let mut per_node = BTreeMap::new();
    for i in 0..9 {
        let replica = owned_by(pod(&format!("web-{i}"), "10m", "10Mi"), "rs-web");
        *per_node
            .entry(snapshot.schedule(&replica, &any_runtime()).expect("fits"))
            .or_insert(0) += 1;
    }
    assert_eq!(per_node.into_values().collect::<Vec<_>>(), [3, 3, 3]);
}

#[test]
fn spreading_outweighs_a_small_resource_difference() {
    let mut snapshot = snapshot_of(&[roomy("a"), roomy("b")]);
    for i in 0..2 {
        snapshot.add_pod(&bound(
            owned_by(pod(&format!("web-{i}"), "1m", "1Mi"), "rs-web"),
            "a",
        ));
    }
    snapshot.add_pod(&bound(pod("other", "1", "1Gi"), "b"));
    let replica = owned_by(pod("web-2", "1m", "1Mi"), "rs-web");
    assert_eq!(
        snapshot.schedule(&replica, &any_runtime()).as_deref(),
        Ok("b")
    );
}

#[test]
fn spreads_over_zones_too() {
    let zoned = |name: &str, zone: &str| label(roomy(name), "topology.kubernetes.io/zone", zone);
    let mut snapshot = snapshot_of(&[zoned("a1", "a"), zoned("a2", "a"), zoned("b1", "b")]);
    snapshot.add_pod(&bound(owned_by(pod("web-0", "1m", "1Mi"), "rs-web"), "a1"));
    // a2 and b1 both hold none of the pods, but zone b holds none either.
    let replica = owned_by(pod("web-1", "1m", "1Mi"), "rs-web");
    assert_eq!(
        snapshot.schedule(&replica, &any_runtime()).as_deref(),
        Ok("b1")
    );
}

#[test]
fn preferred_node_affinity_attracts() {
    let mut snapshot = snapshot_of(&[roomy("a"), label(roomy("b"), "disk", "ssd"), roomy("c")]);
    let mut p = pod("p", "100m", "");
    p.spec.get_or_insert_with(PodSpec::default).affinity = Some(Affinity {
        node_affinity: Some(K8sNodeAffinity {
            preferred_during_scheduling_ignored_during_execution: Some(vec![
                PreferredSchedulingTerm {
                    weight: 50,
                    preference: NodeSelectorTerm {
                        match_expressions: Some(vec![NodeSelectorRequirement {
                            key: "disk".to_owned(),
                            operator: "In".to_owned(),
                            values: Some(vec!["ssd".to_owned()]),
                        }]),
                        ..Default::default()
                    },
                },
            ]),
            ..Default::default()
        }),
        ..Default::default()
    });
    assert_eq!(snapshot.schedule(&p, &any_runtime()).as_deref(), Ok("b"));
}

#[test]
fn prefer_no_schedule_taints_repel_unless_tolerated() {
    let mut snapshot = snapshot_of(&[
        taint(roomy("soft"), "spot", "", "PreferNoSchedule"),
        roomy("plain"),
    ]);
    for i in 0..3 {
        assert_eq!(
            snapshot
                .schedule(&pod(&format!("p{i}"), "", ""), &any_runtime())
                .as_deref(),
            Ok("plain")
        );
    }
    let mut snapshot = snapshot_of(&[
        taint(roomy("soft"), "spot", "", "PreferNoSchedule"),
        roomy("plain"),
    ]);
    snapshot.add_pod(&bound(pod("load", "1", "1Gi"), "plain"));
    let tolerant = tolerate(pod("t", "", ""), "spot", None, "PreferNoSchedule");
    assert_eq!(
        snapshot.schedule(&tolerant, &any_runtime()).as_deref(),
        Ok("soft")
    );
}

#[test]
fn equal_nodes_share_the_load() {
    let mut snapshot = snapshot_of(&[roomy("a"), roomy("b"), roomy("c"), roomy("d")]);
    let mut chosen = BTreeMap::new();
    for i in 0..40 {
        let p = pod(&format!("p{i}"), "", "");
        let node = snapshot.schedule(&p, &any_runtime()).expect("fits");
        snapshot.forget(&p);
        *chosen.entry(node).or_insert(0) += 1;
    }
    assert_eq!(chosen.len(), 4, "{chosen:?}");
}

#[test]
fn normalisations() {
    let mut raw = vec![0, 2, 4];
    normalize_reverse(&mut raw);
    assert_eq!(raw, [100, 50, 0]);
    let mut raw = vec![0, 0];
    normalize_reverse(&mut raw);
    assert_eq!(raw, [100, 100]);
    let mut raw = vec![5, 10, 0];
    normalize_by_max(&mut raw);
    assert_eq!(raw, [50, 100, 0]);
    let mut raw = vec![2, 5, 3];
    normalize_spread(&mut raw);
    assert_eq!(raw, [100, 40, 80]);
    let mut raw = vec![-10, 0, 10];
    normalize_min_max(&mut raw);
    assert_eq!(raw, [0, 50, 100]);
    let mut raw = vec![3, 3];
    normalize_min_max(&mut raw);
    assert_eq!(raw, [0, 0]);
}

#[test]
fn pick_max_breaks_ties_uniformly() {
    let mut rng = 42;
    let totals = [5, 9, 9, 1, 9];
    let mut seen = [0; 5];
    for _ in 0..3000 {
        seen[pick_max(&totals, &mut rng)] += 1;
    }
    assert_eq!((seen[0], seen[3]), (0, 0));
    assert!(seen.iter().filter(|&&n| n > 800).count() == 3, "{seen:?}");
}
