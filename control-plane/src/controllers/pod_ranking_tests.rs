use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ContainerStatus, PodCondition, PodSpec, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::chrono::{Duration, TimeZone};

use super::*;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
}

/// A Running pod on `node`, created `age` seconds ago, ready for `ready` seconds if given.
fn pod(uid: &str, node: &str, age: i64, ready: Option<i64>) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(uid.into()),
            uid: Some(uid.into()),
            creation_timestamp: Some(Time(t0() - Duration::seconds(age))),
            ..Default::default()
        },
        spec: Some(PodSpec {
            node_name: (!node.is_empty()).then(|| node.to_string()),
            ..Default::default()
        }),
        status: Some(PodStatus {
            phase: Some("Running".into()),
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: if ready.is_some() { "True" } else { "False" }.into(),
                last_transition_time: Some(Time(t0() - Duration::seconds(ready.unwrap_or(0)))),
                ..Default::default()
            }]),
            ..Default::default()
        }),
    }
}

fn order(pods: &[Pod], colocated: &HashMap<String, usize>) -> Vec<String> {
    let mut victims: Vec<&Pod> = pods.iter().collect();
    sort_for_deletion(&mut victims, colocated, t0());
    victims
        .iter()
        .map(|p| p.metadata.uid.clone().unwrap_or_default())
        .collect()
}

fn with_phase(mut pod: Pod, phase: &str) -> Pod {
    pod.status.as_mut().unwrap().phase = Some(phase.into());
    pod
}

#[test]
fn unscheduled_then_earlier_phases_then_not_ready() {
    let pods = [
        pod("running-ready", "n1", 100, Some(50)),
        pod("running-not-ready", "n1", 100, None),
        with_phase(pod("unknown", "n1", 100, None), "Unknown"),
        with_phase(pod("pending", "n1", 100, None), "Pending"),
        with_phase(pod("unscheduled", "", 100, None), "Pending"),
    ];
    assert_eq!(
        order(&pods, &HashMap::new()),
        [
            "unscheduled",
            "pending",
            "unknown",
            "running-not-ready",
            "running-ready"
        ]
    );
}

#[test]
fn ready_for_less_time_goes_first() {
    let pods = [
        pod("long", "n1", 5000, Some(4000)),
        pod("short", "n1", 5000, Some(10)),
    ];
    assert_eq!(order(&pods, &HashMap::new()), ["short", "long"]);
}

#[test]
fn more_restarts_go_first_then_newer_pods() {
    let mut restarted = pod("restarted", "n1", 5000, None);
    restarted.status.as_mut().unwrap().container_statuses = Some(vec![ContainerStatus {
        name: "c".into(),
        restart_count: 5,
        ..Default::default()
    }]);
    let pods = [
        pod("old", "n1", 5000, None),
        pod("new", "n1", 10, None),
        restarted,
    ];
    assert_eq!(order(&pods, &HashMap::new()), ["restarted", "new", "old"]);
}

#[test]
fn lower_deletion_cost_goes_before_readiness_age() {
    let mut cheap = pod("cheap", "n1", 5000, Some(4000));
    cheap.metadata.annotations = Some(BTreeMap::from([(
        POD_DELETION_COST.to_string(),
        "-5".to_string(),
    )]));
    let pods = [pod("fresh", "n1", 5000, Some(10)), cheap];
    assert_eq!(order(&pods, &HashMap::new()), ["cheap", "fresh"]);
}

#[test]
fn pods_on_crowded_nodes_go_first() {
    let pods = [
        pod("alone", "n1", 100, Some(50)),
        pod("crowded", "n2", 100, Some(50)),
    ];
    let colocated = colocation(&[
        pod("x", "n2", 1, None),
        pod("y", "n2", 1, None),
        pod("z", "n1", 1, None),
    ]);
    assert_eq!(order(&pods, &colocated), ["crowded", "alone"]);
}

#[test]
fn ages_within_a_factor_of_two_tie_and_fall_back_to_uid() {
    // 100 s and 101 s ready fall in the same log2 bucket: the uid decides, not the exact time.
    let pods = [
        pod("b", "n1", 500, Some(100)),
        pod("a", "n1", 500, Some(101)),
    ];
    assert_eq!(order(&pods, &HashMap::new()), ["a", "b"]);
}
