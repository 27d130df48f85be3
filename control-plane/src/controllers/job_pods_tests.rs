use super::*;
use k8s_openapi::api::core::v1::{PodSpec, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::chrono::TimeZone;

fn t(seconds: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
        + k8s_openapi::chrono::Duration::seconds(seconds)
}

fn pod(name: &str, phase: &str, created: i64) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            creation_timestamp: Some(Time(t(created))),
            ..Default::default()
        },
        spec: Some(PodSpec::default()),
        status: Some(PodStatus {
            phase: Some(phase.into()),
            ..Default::default()
        }),
    }
}

fn with_index(mut pod: Pod, index: i32) -> Pod {
    pod.metadata.annotations = Some(BTreeMap::from([(
        COMPLETION_INDEX_KEY.to_string(),
        index.to_string(),
    )]));
    pod
}

#[test]
fn backoff_doubles_per_failure_since_the_last_success() {
    let pods = JobPods {
        pods: vec![
            pod("a", "Failed", 0),
            pod("b", "Succeeded", 5),
            pod("c", "Failed", 10),
            pod("d", "Failed", 20),
        ],
    };
    // Two failures after the success: 20s from the last one (at t=20).
    assert_eq!(pods.backoff_remaining(t(25), true), Duration::from_secs(15));
    assert_eq!(pods.backoff_remaining(t(40), true), Duration::ZERO);
    let none = JobPods {
        pods: vec![pod("a", "Succeeded", 0)],
    };
    assert_eq!(none.backoff_remaining(t(0), true), Duration::ZERO);
}

#[test]
fn terminating_pods_fail_only_when_counted() {
    let mut deleted = pod("a", "Running", 0);
    deleted.metadata.deletion_timestamp = Some(Time(t(1)));
    assert!(is_counted_failed(&deleted, true));
    assert!(!is_counted_failed(&deleted, false));
    assert!(is_counted_failed(&pod("b", "Failed", 0), false));
    assert!(!is_counted_failed(&pod("c", "Succeeded", 0), true));
}

#[test]
fn removal_prefers_pending_then_newer_pods() {
    let running_old = pod("running-old", "Running", 0);
    let running_new = pod("running-new", "Running", 10);
    let pending = pod("pending", "Pending", 0);
    let removed = pods_to_remove(vec![&running_old, &running_new, &pending], None, 1);
    let names: Vec<_> = removed
        .iter()
        .map(|p| p.metadata.name.as_deref().unwrap())
        .collect();
    assert_eq!(names, vec!["pending", "running-new"]);
}

#[test]
fn indexed_removal_drops_repeated_and_invalid_indexes() {
    let a = with_index(pod("a", "Running", 0), 0);
    let b = with_index(pod("b", "Pending", 0), 0);
    let c = with_index(pod("c", "Running", 0), 7);
    let d = pod("d", "Running", 0);
    let removed = pods_to_remove(vec![&a, &b, &c, &d], Some(3), 3);
    let mut names: Vec<_> = removed
        .iter()
        .map(|p| p.metadata.name.as_deref().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, vec!["b", "c", "d"]);
}
