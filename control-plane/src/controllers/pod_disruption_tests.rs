//! Tests of taking pods off a node, and the fixtures the node controllers' tests share.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{
    Node, NodeCondition, NodeSpec, NodeStatus, PodSpec, PodStatus, Toleration,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::chrono::{Duration as ChronoDuration, TimeZone};

use super::*;
use crate::controllers::context::Backend;
use crate::controllers::fake::FakeBackend;

/// A node whose Ready condition has `ready` as status (none when None).
pub(crate) fn node(name: &str, ready: Option<&str>) -> Node {
    Node {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        spec: Some(NodeSpec::default()),
        status: Some(NodeStatus {
            conditions: ready.map(|status| {
                vec![NodeCondition {
                    type_: "Ready".into(),
                    status: status.into(),
                    ..Default::default()
                }]
            }),
            ..Default::default()
        }),
    }
}

/// A running, ready pod in "default" bound to `node`, with `tolerations`.
pub(crate) fn pod(name: &str, node: &str, tolerations: Vec<Toleration>) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            ..Default::default()
        },
        spec: Some(PodSpec {
            node_name: Some(node.into()),
            tolerations: (!tolerations.is_empty()).then_some(tolerations),
            ..Default::default()
        }),
        status: Some(PodStatus {
            phase: Some("Running".into()),
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: "True".into(),
                reason: None,
                ..Default::default()
            }]),
            ..Default::default()
        }),
    }
}

/// A NoExecute toleration of `key` with operator Exists, for `seconds` (forever when None).
pub(crate) fn tolerate(key: &str, seconds: Option<i64>) -> Toleration {
    Toleration {
        key: Some(key.into()),
        operator: Some("Exists".into()),
        effect: Some("NoExecute".into()),
        toleration_seconds: seconds,
        value: None,
    }
}

/// The change the runner reports for `pod` (created or updated, or deleted).
pub(crate) fn change_of(pod: &Pod, previous_node: Option<&str>, deleted: bool) -> WatchedChange {
    WatchedChange {
        kind: TypeRef::of::<Pod>(),
        namespace: pod.metadata.namespace.clone(),
        name: pod.metadata.name.clone().unwrap_or_default(),
        labels: Default::default(),
        previous_labels: None,
        controller: None,
        previous_controller: None,
        node_name: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
        previous_node_name: previous_node.map(str::to_string),
        deleted,
    }
}

/// A context acting as `manager` on `fake`.
pub(crate) fn ctx_of(fake: &Arc<FakeBackend>, manager: &'static str) -> Ctx {
    Ctx::new(fake.clone() as Arc<dyn Backend>, manager)
}

/// (namespace/name, grace period, uid precondition) of each delete, to tell graceful deletes
/// from forced ones.
pub(crate) fn deletes(fake: &FakeBackend) -> Vec<(String, Option<i64>, Option<String>)> {
    fake.delete_options()
        .into_iter()
        .map(|(name, d)| (name, d.grace_period, d.uid))
        .collect()
}

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
}

fn condition<'a>(pod: &'a Pod, type_: &str) -> &'a PodCondition {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == type_))
        .unwrap()
}

#[test]
fn set_condition_keeps_the_transition_time_when_the_status_holds() {
    let mut p = pod("a", "n1", vec![]);
    assert!(set_condition(&mut p, disruption("R", "first"), t0()));
    let later = t0() + ChronoDuration::seconds(10);
    // Same status, new message: changed, but still transitioned at t0.
    assert!(set_condition(&mut p, disruption("R", "second"), later));
    let c = condition(&p, DISRUPTION_TARGET);
    assert_eq!(c.message.as_deref(), Some("second"));
    assert_eq!(c.last_transition_time, Some(Time(t0())));
    assert!(!set_condition(&mut p, disruption("R", "second"), later));
}

#[tokio::test]
async fn mark_not_ready_turns_ready_false_once() {
    let fake = Arc::new(FakeBackend::new());
    let stored = fake.insert(&pod("a", "n1", vec![]));
    let ctx = ctx_of(&fake, "test");
    let (marked, changed) = mark_not_ready(&ctx, &stored).await.unwrap().unwrap();
    assert!(changed);
    let ready = condition(&marked, "Ready");
    assert_eq!(ready.status, "False");
    assert_eq!(ready.last_transition_time, Some(Time(t0())));
    let (_, again) = mark_not_ready(&ctx, &marked).await.unwrap().unwrap();
    assert!(!again);
    assert_eq!(fake.writes().len(), 1);
}

#[tokio::test]
async fn a_pod_gone_before_its_status_write_is_no_error() {
    let fake = Arc::new(FakeBackend::new());
    let stored = fake.insert(&pod("a", "n1", vec![]));
    fake.remove::<Pod>(Some("default"), "a");
    let ctx = ctx_of(&fake, "test");
    assert!(mark_not_ready(&ctx, &stored).await.unwrap().is_none());
    assert!(!evict(&ctx, &stored, disruption("R", "m")).await.unwrap());
    assert!(!force_delete(&ctx, &stored, None).await.unwrap());
}

#[tokio::test]
async fn force_delete_leaves_a_finished_pod_status_alone() {
    let fake = Arc::new(FakeBackend::new());
    let mut done = pod("a", "n1", vec![]);
    done.status.as_mut().unwrap().phase = Some("Succeeded".into());
    let stored = fake.insert(&done);
    let ctx = ctx_of(&fake, "test");
    assert!(force_delete(&ctx, &stored, Some(disruption("R", "m")))
        .await
        .unwrap());
    assert_eq!(
        fake.writes().len(),
        1,
        "only the delete: {:?}",
        fake.writes()
    );
    assert_eq!(
        deletes(&fake),
        [(
            "default/a".to_string(),
            Some(0),
            Some("uid-pod-a".to_string())
        )]
    );
}

#[tokio::test]
async fn a_write_failure_is_reported() {
    let fake = Arc::new(FakeBackend::new());
    let stored = fake.insert(&pod("a", "n1", vec![]));
    fake.fail_writes_of("Pod", 500);
    let ctx = ctx_of(&fake, "test");
    assert!(evict(&ctx, &stored, disruption("R", "m")).await.is_err());
}

#[test]
fn a_pod_change_concerns_the_nodes_it_is_and_was_bound_to() {
    let a = pod("a", "n1", vec![]);
    assert_eq!(
        node_keys(&change_of(&a, None, false)),
        [Key::new(None, "n1")]
    );
    assert_eq!(
        node_keys(&change_of(&a, Some("n1"), true)),
        [Key::new(None, "n1")]
    );
    // Recreated under the same name on another node.
    let moved = pod("a", "n2", vec![]);
    assert_eq!(
        node_keys(&change_of(&moved, Some("n1"), false)),
        [Key::new(None, "n2"), Key::new(None, "n1")]
    );
}

#[test]
fn unbound_pods_and_other_kinds_concern_no_node() {
    let mut unbound = pod("a", "", vec![]);
    assert!(node_keys(&change_of(&unbound, None, false)).is_empty());
    unbound.spec.as_mut().unwrap().node_name = None;
    assert!(node_keys(&change_of(&unbound, None, false)).is_empty());
    let mut other = change_of(&pod("a", "n1", vec![]), None, false);
    other.kind = TypeRef::of::<Node>();
    assert!(node_keys(&other).is_empty());
}

#[test]
fn soonest_asks_win_and_past_asks_are_due_now() {
    let now = t0();
    assert_eq!(Soonest::default().action(now), Action::Done);
    let mut soonest = Soonest::default();
    soonest.at(now + ChronoDuration::seconds(30));
    soonest.at(now + ChronoDuration::seconds(10));
    assert_eq!(
        soonest.action(now),
        Action::RequeueAfter(Duration::from_secs(10))
    );
    soonest.at(now - ChronoDuration::seconds(5));
    assert_eq!(soonest.action(now), Action::RequeueAfter(Duration::ZERO));
}
