use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{PodCondition, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::chrono::TimeZone;

use super::*;

fn pod(revision: &str, phase: &str, ready_at: Option<DateTime<Utc>>, deleting: bool) -> Pod {
    Pod {
        metadata: ObjectMeta {
            labels: Some(BTreeMap::from([(
                "controller-revision-hash".to_string(),
                revision.to_string(),
            )])),
            deletion_timestamp: deleting
                .then(|| Time(Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap())),
            ..Default::default()
        },
        status: Some(PodStatus {
            phase: Some(phase.into()),
            conditions: ready_at.map(|at| {
                vec![PodCondition {
                    type_: "Ready".into(),
                    status: "True".into(),
                    last_transition_time: Some(Time(at)),
                    ..Default::default()
                }]
            }),
            ..Default::default()
        }),
        spec: None,
    }
}

#[test]
fn counts_ready_available_current_and_updated_pods() {
    let now = Utc.with_ymd_and_hms(2026, 1, 1, 0, 1, 0).unwrap();
    let pods = [
        pod(
            "web-1",
            "Running",
            Some(now - ChronoDuration::seconds(60)),
            false,
        ),
        pod(
            "web-2",
            "Running",
            Some(now - ChronoDuration::seconds(5)),
            false,
        ),
        pod("web-2", "Pending", None, false),
        pod(
            "web-1",
            "Running",
            Some(now - ChronoDuration::seconds(60)),
            true,
        ),
    ];
    let refs: Vec<&Pod> = pods.iter().collect();
    let (status, wait) = replica_status(&refs, 10, now, "web-1", "web-2");
    assert_eq!(status.replicas, 4);
    assert_eq!(status.ready_replicas, Some(3));
    assert_eq!(
        status.available_replicas,
        Some(1),
        "a deleting pod is not available"
    );
    assert_eq!(
        status.current_replicas,
        Some(1),
        "a deleting pod counts for no revision"
    );
    assert_eq!(status.updated_replicas, Some(2));
    assert_eq!(wait, Some(ChronoDuration::seconds(5)));
    assert_eq!(
        requeue_action(wait),
        Action::RequeueAfter(Duration::from_secs(5))
    );
    assert_eq!(requeue_action(None), Action::Done);
}

#[test]
fn a_finished_rolling_update_makes_the_update_revision_current() {
    let mut status = StatefulSetStatus {
        replicas: 2,
        ready_replicas: Some(2),
        updated_replicas: Some(2),
        current_replicas: Some(0),
        current_revision: Some("web-1".into()),
        update_revision: Some("web-2".into()),
        ..Default::default()
    };
    complete_rolling_update(&mut status);
    assert_eq!(status.current_revision.as_deref(), Some("web-2"));
    assert_eq!(status.current_replicas, Some(2));

    status.current_revision = Some("web-1".into());
    status.ready_replicas = Some(1);
    complete_rolling_update(&mut status);
    assert_eq!(
        status.current_revision.as_deref(),
        Some("web-1"),
        "not while a pod is not ready"
    );
}
