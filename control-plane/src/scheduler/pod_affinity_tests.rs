use k8s_openapi::api::core::v1::{
    Affinity, Pod, PodAffinity, PodAffinityTerm, PodAntiAffinity, PodSpec, WeightedPodAffinityTerm,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::super::fixtures::*;
use super::*;

const ZONE: &str = "topology.kubernetes.io/zone";

fn affinity_of(mut pod: Pod, edit: impl FnOnce(&mut Affinity)) -> Pod {
    edit(
        pod.spec
            .get_or_insert_with(PodSpec::default)
            .affinity
            .get_or_insert_with(Affinity::default),
    );
    pod
}

fn requires_near(pod: Pod, app: &str, key: &str) -> Pod {
    affinity_of(pod, |a| {
        a.pod_affinity = Some(PodAffinity {
            required_during_scheduling_ignored_during_execution: Some(vec![term_on_app(app, key)]),
            ..Default::default()
        })
    })
}

fn requires_away(pod: Pod, app: &str, key: &str) -> Pod {
    affinity_of(pod, |a| {
        a.pod_anti_affinity = Some(PodAntiAffinity {
            required_during_scheduling_ignored_during_execution: Some(vec![term_on_app(app, key)]),
            ..Default::default()
        })
    })
}

fn prefers_away(pod: Pod, app: &str, weight: i32) -> Pod {
    affinity_of(pod, |a| {
        a.pod_anti_affinity = Some(PodAntiAffinity {
            preferred_during_scheduling_ignored_during_execution: Some(vec![
                WeightedPodAffinityTerm {
                    weight,
                    pod_affinity_term: term_on_app(app, HOSTNAME),
                },
            ]),
            ..Default::default()
        })
    })
}

fn app(name: &str, app: &str) -> Pod {
    pod_label(pod(name, "", ""), "app", app)
}

#[test]
fn anti_affinity_puts_replicas_on_distinct_nodes() {
    let mut snapshot = snapshot_of(&[roomy("a"), roomy("b"), roomy("c")]);
    let mut placed = Vec::new();
    for i in 0..3 {
        let replica = requires_away(app(&format!("db-{i}"), "db"), "db", HOSTNAME);
        placed.push(snapshot.schedule(&replica, &any_runtime()).expect("fits"));
    }
    placed.sort();
    assert_eq!(placed, ["a", "b", "c"]);
    let fourth = requires_away(app("db-3", "db"), "db", HOSTNAME);
    assert_eq!(
        failure(&mut snapshot, &fourth),
        "0/3 nodes are available: 3 node(s) didn't match pod anti-affinity rules."
    );
}

#[test]
fn existing_pods_anti_affinity_keeps_the_incoming_pod_away() {
    let mut snapshot = snapshot_of(&[roomy("a"), roomy("b")]);
    snapshot.add_pod(&bound(
        requires_away(app("loner", "loner"), "web", HOSTNAME),
        "a",
    ));
    for i in 0..4 {
        assert_eq!(
            snapshot
                .schedule(&app(&format!("web-{i}"), "web"), &any_runtime())
                .as_deref(),
            Ok("b")
        );
    }
    // Pods the term does not select are unaffected.
    snapshot.remove_node("b");
    assert_eq!(
        snapshot
            .schedule(&app("other", "api"), &any_runtime())
            .as_deref(),
        Ok("a")
    );
}

#[test]
fn terms_look_at_their_own_namespace_unless_told_otherwise() {
    let mut snapshot = snapshot_of(&[roomy("a")]);
    let mut elsewhere = app("db-0", "db");
    elsewhere.metadata.namespace = Some("other".to_owned());
    snapshot.add_pod(&bound(elsewhere, "a"));
    let replica = requires_away(app("db-1", "db"), "db", HOSTNAME);
    assert_eq!(
        snapshot.schedule(&replica, &any_runtime()).as_deref(),
        Ok("a")
    );

    let all_namespaces = affinity_of(app("db-2", "db"), |a| {
        a.pod_anti_affinity = Some(PodAntiAffinity {
            required_during_scheduling_ignored_during_execution: Some(vec![PodAffinityTerm {
                namespace_selector: Some(LabelSelector::default()),
                ..term_on_app("db", HOSTNAME)
            }]),
            ..Default::default()
        })
    });
    assert!(snapshot.schedule(&all_namespaces, &any_runtime()).is_err());
}

#[test]
fn affinity_joins_the_group_and_lets_its_first_pod_go_anywhere() {
    let mut snapshot = snapshot_of(&[roomy("a"), roomy("b"), roomy("c")]);
    let first = snapshot
        .schedule(
            &requires_near(app("cache-0", "cache"), "cache", HOSTNAME),
            &any_runtime(),
        )
        .expect("first");
    for i in 1..4 {
        let next = requires_near(app(&format!("cache-{i}"), "cache"), "cache", HOSTNAME);
        assert_eq!(
            snapshot.schedule(&next, &any_runtime()).expect("joins"),
            first
        );
    }
    // A pod that does not select itself needs a matching pod to exist.
    let mut fresh = snapshot_of(&[roomy("a")]);
    let follower = requires_near(app("web", "web"), "cache", HOSTNAME);
    assert_eq!(
        failure(&mut fresh, &follower),
        "0/1 nodes are available: 1 node(s) didn't match pod affinity rules."
    );
}

#[test]
fn zone_terms_cover_every_node_of_the_zone() {
    let zoned = |name: &str, zone: &str| label(roomy(name), ZONE, zone);
    let mut snapshot = snapshot_of(&[zoned("a1", "a"), zoned("a2", "a"), zoned("b1", "b")]);
    snapshot.add_pod(&bound(app("db-0", "db"), "a1"));
    let replica = requires_away(app("db-1", "db"), "db", ZONE);
    assert_eq!(
        snapshot.schedule(&replica, &any_runtime()).as_deref(),
        Ok("b1")
    );
    let third = requires_away(app("db-2", "db"), "db", ZONE);
    assert_eq!(
        failure(&mut snapshot, &third),
        "0/3 nodes are available: 3 node(s) didn't match pod anti-affinity rules."
    );

    // An existing pod's zone anti-affinity closes its whole zone to the pods it selects.
    let mut snapshot = snapshot_of(&[zoned("a1", "a"), zoned("a2", "a"), zoned("b1", "b")]);
    snapshot.add_pod(&bound(
        requires_away(app("guard", "guard"), "web", ZONE),
        "a2",
    ));
    for i in 0..3 {
        assert_eq!(
            snapshot
                .schedule(&app(&format!("web-{i}"), "web"), &any_runtime())
                .as_deref(),
            Ok("b1")
        );
    }
    snapshot.remove_pod(&app("guard", "guard"));
    assert_eq!(snapshot.wide_anti_pods, 0);
}

#[test]
fn preferred_anti_affinity_scores_nodes_with_matching_pods_lower() {
    let mut snapshot = snapshot_of(&[roomy("a"), roomy("b")]);
    snapshot.add_pod(&bound(app("web-0", "web"), "a"));
    // Make "a" otherwise more attractive: "b" carries a heavy unrelated pod.
    snapshot.add_pod(&bound(pod("heavy", "1", "1Gi"), "b"));
    assert_eq!(
        snapshot
            .schedule(
                &prefers_away(app("web-1", "web"), "web", 100),
                &any_runtime()
            )
            .as_deref(),
        Ok("b")
    );
}

#[test]
fn preference_score_adds_both_directions() {
    let snapshot = {
        let mut s = snapshot_of(&[roomy("a")]);
        s.add_pod(&bound(app("web-0", "web"), "a"));
        s.add_pod(&bound(prefers_away(app("shy", "shy"), "web", 7), "a"));
        s.add_pod(&bound(
            requires_near(app("fan", "fan"), "web", HOSTNAME),
            "a",
        ));
        s
    };
    let incoming = prefers_away(app("web-1", "web"), "web", 10);
    let terms = PodAffinityTerms::of(&incoming).expect("valid");
    let me = Identity {
        namespace: "default",
        labels: incoming.metadata.labels.as_ref().expect("labels"),
    };
    let node = snapshot.node("a").expect("node");
    // -10 (mine against web-0) -7 (shy's preference against me) +1 (fan's required affinity).
    assert_eq!(preference_score(node, me, terms.as_deref()), -16);
}

#[test]
fn a_malformed_selector_is_an_error() {
    let bad = affinity_of(app("p", "x"), |a| {
        a.pod_anti_affinity = Some(PodAntiAffinity {
            required_during_scheduling_ignored_during_execution: Some(vec![PodAffinityTerm {
                label_selector: Some(LabelSelector {
                    match_labels: Some([("bad key!".to_owned(), "v".to_owned())].into()),
                    ..Default::default()
                }),
                topology_key: HOSTNAME.to_owned(),
                ..Default::default()
            }]),
            ..Default::default()
        })
    });
    assert!(PodAffinityTerms::of(&bad).is_err());
    assert!(PodAffinityTerms::of(&app("plain", "x"))
        .expect("valid")
        .is_none());
}
