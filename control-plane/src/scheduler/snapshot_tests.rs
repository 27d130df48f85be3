use k8s_openapi::api::core::v1::PodStatus;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::chrono::DateTime;

use super::super::fixtures::*;
use super::*;

fn cpu_on(snapshot: &Snapshot, node: &str) -> i64 {
    snapshot.node(node).expect("node").requested().milli_cpu
}

#[test]
fn nodes_are_added_updated_and_removed() {
    let mut snapshot = snapshot_of(&[roomy("a"), roomy("b"), roomy("c")]);
    assert_eq!(snapshot.node_count(), 3);
    snapshot.upsert_node(&label(roomy("b"), "disk", "ssd"));
    assert_eq!(snapshot.node_count(), 3);
    assert_eq!(
        snapshot
            .node("b")
            .expect("b")
            .labels()
            .get("disk")
            .map(String::as_str),
        Some("ssd")
    );
    snapshot.remove_node("a");
    snapshot.remove_node("a");
    assert_eq!(snapshot.node_count(), 2);
    // The node moved into the freed slot is still found by name.
    assert_eq!(snapshot.node("c").expect("c").name(), "c");
    assert!(snapshot.node("a").is_none());
}

#[test]
fn pods_are_accounted_incrementally() {
    let mut snapshot = snapshot_of(&[roomy("a")]);
    snapshot.add_pod(&bound(pod("p", "250m", "1Gi"), "a"));
    snapshot.add_pod(&bound(pod("q", "", ""), "a"));
    let info = snapshot.node("a").expect("a");
    assert_eq!(
        (info.requested().milli_cpu, info.requested().memory),
        (250, 1 << 30)
    );
    assert_eq!(
        (info.non_zero_milli_cpu, info.non_zero_memory),
        (350, (1 << 30) + 200 * 1024 * 1024)
    );
    snapshot.remove_pod(&pod("p", "", ""));
    assert_eq!(cpu_on(&snapshot, "a"), 0);
    assert_eq!(snapshot.pod_count(), 1);
    snapshot.remove_pod(&pod("unknown", "", ""));
    assert_eq!(snapshot.pod_count(), 1);
}

#[test]
fn a_new_version_of_a_pod_replaces_the_old() {
    let mut snapshot = snapshot_of(&[roomy("a"), roomy("b")]);
    snapshot.add_pod(&bound(pod("p", "250m", ""), "a"));
    snapshot.add_pod(&bound(pod("p", "250m", ""), "a"));
    assert_eq!(cpu_on(&snapshot, "a"), 250);
    snapshot.add_pod(&bound(pod("p", "250m", ""), "b"));
    assert_eq!((cpu_on(&snapshot, "a"), cpu_on(&snapshot, "b")), (0, 250));
}

#[test]
fn removal_of_an_older_pod_of_the_same_name_is_ignored() {
    let mut snapshot = snapshot_of(&[roomy("a")]);
    let mut recreated = pod("p", "250m", "");
    recreated.metadata.uid = Some("new-uid".to_owned());
    snapshot.add_pod(&bound(recreated, "a"));
    snapshot.remove_pod(&pod("p", "", ""));
    assert_eq!(cpu_on(&snapshot, "a"), 250);
}

#[test]
fn unbound_pods_are_ignored_and_finished_pods_free_their_node() {
    let mut snapshot = snapshot_of(&[roomy("a")]);
    snapshot.add_pod(&pod("pending", "1", ""));
    assert_eq!(snapshot.pod_count(), 0);
    let job = bound(pod("job", "1", ""), "a");
    snapshot.add_pod(&job);
    let mut done = job.clone();
    done.status = Some(PodStatus {
        phase: Some("Succeeded".to_owned()),
        ..Default::default()
    });
    snapshot.add_pod(&done);
    assert_eq!((snapshot.pod_count(), cpu_on(&snapshot, "a")), (0, 0));
}

#[test]
fn pods_on_unknown_nodes_count_once_the_node_shows_up() {
    let mut snapshot = Snapshot::new();
    snapshot.add_pod(&bound(pod("early", "500m", ""), "late"));
    assert_eq!(snapshot.node_count(), 0);
    snapshot.upsert_node(&roomy("late"));
    assert_eq!(cpu_on(&snapshot, "late"), 500);
    // A removed node keeps its pods' accounting in case it comes back.
    snapshot.remove_node("late");
    snapshot.upsert_node(&roomy("late"));
    assert_eq!(cpu_on(&snapshot, "late"), 500);
    snapshot.remove_node("late");
    snapshot.remove_pod(&pod("early", "", ""));
    snapshot.upsert_node(&roomy("late"));
    assert_eq!(cpu_on(&snapshot, "late"), 0);
}

#[test]
fn controller_counts_skip_terminating_pods_and_follow_the_zone() {
    let mut snapshot = snapshot_of(&[label(roomy("a"), ZONE_LABEL, "z1")]);
    snapshot.add_pod(&bound(owned_by(pod("r1", "", ""), "rs"), "a"));
    snapshot.add_pod(&bound(owned_by(pod("r2", "", ""), "rs"), "a"));
    let id = snapshot.controllers.get("rs").expect("interned");
    let zone = |s: &Snapshot| s.node("a").and_then(|n| n.zone).expect("zone");
    assert_eq!(snapshot.node("a").expect("a").controller_count(id), 2);
    assert_eq!(snapshot.zone_counts.get(&(id, zone(&snapshot))), Some(&2));

    let mut leaving = bound(owned_by(pod("r2", "", ""), "rs"), "a");
    leaving.metadata.deletion_timestamp = Some(Time(DateTime::UNIX_EPOCH));
    snapshot.add_pod(&leaving);
    assert_eq!(snapshot.node("a").expect("a").controller_count(id), 1);
    assert_eq!(snapshot.pod_count(), 2);

    snapshot.upsert_node(&label(roomy("a"), ZONE_LABEL, "z2"));
    let z2 = zone(&snapshot);
    assert_eq!(snapshot.zone_counts.len(), 1);
    assert_eq!(snapshot.zone_counts.get(&(id, z2)), Some(&1));

    snapshot.remove_pod(&pod("r1", "", ""));
    snapshot.remove_pod(&pod("r2", "", ""));
    assert!(snapshot.zone_counts.is_empty());
    assert_eq!(snapshot.controllers.get("rs"), None);
}

#[test]
fn interned_ids_are_reused() {
    let mut interner = Interner::default();
    let a = interner.acquire("a");
    assert_eq!(interner.acquire("a"), a);
    interner.release(a);
    assert_eq!(interner.get("a"), Some(a));
    interner.release(a);
    assert_eq!(interner.get("a"), None);
    assert_eq!(interner.acquire("b"), a);
}
