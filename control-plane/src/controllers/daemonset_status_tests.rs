use super::*;
use k8s_openapi::api::core::v1::{PodCondition, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::chrono::TimeZone;

fn pod(hash: &str, ready_at: Option<DateTime<Utc>>) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(format!("p-{hash}")),
            labels: Some(BTreeMap::from([(
                "controller-revision-hash".to_string(),
                hash.to_string(),
            )])),
            ..Default::default()
        },
        status: Some(PodStatus {
            phase: Some("Running".into()),
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
        ..Default::default()
    }
}

#[test]
fn counts_desired_ready_available_updated_and_misscheduled() {
    let now = Utc.with_ymd_and_hms(2026, 1, 1, 0, 1, 0).unwrap();
    let run = Placement {
        should_run: true,
        should_continue_running: true,
    };
    let placements = BTreeMap::from([
        ("a".to_string(), run),
        ("b".to_string(), run),
        ("c".to_string(), run),
        ("d".to_string(), Placement::default()),
    ]);
    let (pa, pb, pd) = (
        pod("new", Some(now - ChronoDuration::seconds(30))),
        pod("old", Some(now)),
        pod("old", None),
    );
    let by_node = BTreeMap::from([
        ("a".to_string(), vec![&pa]),
        ("b".to_string(), vec![&pb]),
        ("d".to_string(), vec![&pd]),
    ]);
    let (status, wait) = compute_status(&placements, &by_node, "new", 10, now);
    assert_eq!(status.desired_number_scheduled, 3);
    assert_eq!(status.current_number_scheduled, 2);
    assert_eq!(status.number_misscheduled, 1);
    assert_eq!(status.number_ready, 2);
    assert_eq!(status.number_available, Some(1));
    assert_eq!(status.number_unavailable, Some(2));
    assert_eq!(status.updated_number_scheduled, Some(1));
    assert_eq!(wait, Some(ChronoDuration::seconds(10)));
}
