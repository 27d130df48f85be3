use k8s_openapi::api::apps::v1::RollingUpdateDaemonSet;
use k8s_openapi::api::core::v1::{PodCondition, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::chrono::TimeZone;

use super::*;

const RUN: Placement = Placement {
    should_run: true,
    should_continue_running: true,
};

fn strategy(
    max_unavailable: Option<IntOrString>,
    max_surge: Option<IntOrString>,
) -> DaemonSetUpdateStrategy {
    DaemonSetUpdateStrategy {
        type_: Some("RollingUpdate".into()),
        rolling_update: Some(RollingUpdateDaemonSet {
            max_unavailable,
            max_surge,
        }),
    }
}

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
}

fn pod(name: &str, hash: &str, ready: bool) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(BTreeMap::from([(
                REVISION_HASH_LABEL.to_string(),
                hash.to_string(),
            )])),
            ..Default::default()
        },
        status: Some(PodStatus {
            phase: Some("Running".into()),
            conditions: ready.then(|| {
                vec![PodCondition {
                    type_: "Ready".into(),
                    status: "True".into(),
                    last_transition_time: Some(Time(now())),
                    ..Default::default()
                }]
            }),
            ..Default::default()
        }),
        spec: None,
    }
}

fn spec(max_unavailable: i32, max_surge: i32) -> DaemonSetSpec {
    DaemonSetSpec {
        update_strategy: Some(strategy(
            Some(IntOrString::Int(max_unavailable)),
            Some(IntOrString::Int(max_surge)),
        )),
        ..Default::default()
    }
}

#[test]
fn budgets_default_round_percentages_up_and_never_stall() {
    assert_eq!(
        budget(None, 10),
        Budget {
            max_surge: 0,
            max_unavailable: 1
        }
    );
    let percent = strategy(
        Some(IntOrString::String("25%".into())),
        Some(IntOrString::String("10%".into())),
    );
    assert_eq!(
        budget(Some(&percent), 10),
        Budget {
            max_surge: 1,
            max_unavailable: 3
        }
    );
    let neither = strategy(Some(IntOrString::Int(0)), Some(IntOrString::Int(0)));
    assert_eq!(budget(Some(&neither), 5).max_unavailable, 1);
    assert_eq!(budget(Some(&neither), 0).max_unavailable, 0);
}

#[test]
fn without_surge_unavailable_old_pods_go_first_and_count_against_the_budget() {
    let (a, b, c) = (
        pod("a", "old", false),
        pod("b", "old", true),
        pod("c", "old", true),
    );
    let placements = BTreeMap::from([
        ("a".to_string(), RUN),
        ("b".to_string(), RUN),
        ("c".to_string(), RUN),
    ]);
    let by_node = BTreeMap::from([
        ("a".to_string(), vec![&a]),
        ("b".to_string(), vec![&b]),
        ("c".to_string(), vec![&c]),
    ]);
    let plan = step(&spec(1, 0), &placements, &by_node, "new", now());
    assert_eq!(
        plan.delete,
        vec!["a"],
        "the broken pod is replaced; it uses up the budget"
    );
    let plan = step(&spec(2, 0), &placements, &by_node, "new", now());
    assert_eq!(plan.delete, vec!["a", "b"]);
}

#[test]
fn a_node_without_its_pod_counts_as_unavailable() {
    let b = pod("b", "old", true);
    let placements = BTreeMap::from([("a".to_string(), RUN), ("b".to_string(), RUN)]);
    let by_node = BTreeMap::from([("b".to_string(), vec![&b])]);
    let plan = step(&spec(1, 0), &placements, &by_node, "new", now());
    assert!(plan.delete.is_empty());
}

#[test]
fn surge_creates_beside_available_old_pods_and_deletes_once_new_is_up() {
    let (a_old, a_new, b_old) = (
        pod("a1", "old", true),
        pod("a2", "new", true),
        pod("b1", "old", true),
    );
    let placements = BTreeMap::from([("a".to_string(), RUN), ("b".to_string(), RUN)]);
    let by_node = BTreeMap::from([
        ("a".to_string(), vec![&a_old, &a_new]),
        ("b".to_string(), vec![&b_old]),
    ]);
    let plan = step(&spec(0, 1), &placements, &by_node, "new", now());
    assert_eq!(plan.delete, vec!["a1"]);
    assert_eq!(plan.create_on, vec!["b"]);

    let a_waiting = pod("a2", "new", false);
    let by_node = BTreeMap::from([
        ("a".to_string(), vec![&a_old, &a_waiting]),
        ("b".to_string(), vec![&b_old]),
    ]);
    let plan = step(&spec(0, 1), &placements, &by_node, "new", now());
    assert_eq!(plan, Plan::default(), "one node surging already");
}

#[test]
fn on_delete_is_no_rolling_update() {
    let mut on_delete = spec(1, 0);
    on_delete.update_strategy = Some(DaemonSetUpdateStrategy {
        type_: Some("OnDelete".into()),
        rolling_update: None,
    });
    assert!(!is_rolling_update(&on_delete));
    assert!(is_rolling_update(&DaemonSetSpec::default()));
}
