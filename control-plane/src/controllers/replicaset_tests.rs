//! Tests of the reconcile as a whole (status, keys, generations, ReplicationController), and
//! the fixtures shared with `replica_pods_tests.rs`.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::ReplicaSetSpec;
use k8s_openapi::api::core::v1::{
    Container, PodCondition, PodSpec, PodStatus, ReplicationControllerSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::chrono::TimeZone;
use serde_json::Value;

use super::*;
use crate::controllers::context::{controller_ref, Backend, TypeRef};
use crate::controllers::fake::{FakeBackend, Write};
use crate::controllers::reconciler::ControllerRef;

/// The namespace of every fixture.
pub(crate) const NS: &str = "default";

/// The fake clock's start.
pub(crate) fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
}

/// `n` seconds.
pub(crate) fn secs(n: i64) -> k8s_openapi::chrono::Duration {
    k8s_openapi::chrono::Duration::seconds(n)
}

/// A label map from pairs.
pub(crate) fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A one-container pod template with these labels.
pub(crate) fn template(pairs: &[(&str, &str)]) -> PodTemplateSpec {
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(labels(pairs)),
            ..Default::default()
        }),
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "web".into(),
                image: Some("nginx".into()),
                ..Default::default()
            }],
            ..Default::default()
        }),
    }
}

/// ReplicaSet `name` (generation 1) selecting and templating app=web.
pub(crate) fn replica_set(name: &str, replicas: i32) -> ReplicaSet {
    ReplicaSet {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(NS.into()),
            generation: Some(1),
            ..Default::default()
        },
        spec: Some(ReplicaSetSpec {
            replicas: Some(replicas),
            selector: LabelSelector {
                match_labels: Some(labels(&[("app", "web")])),
                ..Default::default()
            },
            template: Some(template(&[("app", "web")])),
            ..Default::default()
        }),
        status: None,
    }
}

/// A fake at t0 holding `rs`, and the stored `rs` (with its uid).
pub(crate) fn setup(rs: &ReplicaSet) -> (Arc<FakeBackend>, ReplicaSet) {
    let fake = Arc::new(FakeBackend::new());
    fake.set_now(t0());
    let stored = fake.insert(rs);
    (fake, stored)
}

/// A Pending, unscheduled pod labelled app=`app`, created 300 s before t0, controlled by `owner`.
pub(crate) fn pod<K: Object>(name: &str, owner: Option<&K>, app: &str) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(NS.into()),
            labels: Some(labels(&[("app", app)])),
            owner_references: owner.map(|o| vec![controller_ref(o)]),
            creation_timestamp: Some(Time(t0() - secs(300))),
            ..Default::default()
        },
        spec: Some(PodSpec::default()),
        status: Some(PodStatus {
            phase: Some("Pending".into()),
            ..Default::default()
        }),
    }
}

/// Scheduled on `node`, Running, and Ready since `ready_since` when given.
pub(crate) fn running(mut pod: Pod, node: &str, ready_since: Option<DateTime<Utc>>) -> Pod {
    pod.spec.get_or_insert_with(Default::default).node_name = Some(node.into());
    let status = pod.status.get_or_insert_with(Default::default);
    status.phase = Some("Running".into());
    status.conditions = Some(vec![PodCondition {
        type_: "Ready".into(),
        status: if ready_since.is_some() {
            "True"
        } else {
            "False"
        }
        .into(),
        last_transition_time: Some(Time(ready_since.unwrap_or(t0()))),
        ..Default::default()
    }]);
    pod
}

/// One reconcile of `name` as `controller`.
pub(crate) async fn run<R: Reconciler>(
    controller: &R,
    fake: &Arc<FakeBackend>,
    name: &str,
) -> Result<Action, ControllerError> {
    let ctx = Ctx::new(fake.clone() as Arc<dyn Backend>, controller.name());
    controller.reconcile(&Key::new(Some(NS), name), &ctx).await
}

/// The pods created so far, as stored.
pub(crate) fn created_pods(fake: &FakeBackend) -> Vec<Value> {
    fake.writes()
        .into_iter()
        .filter_map(|w| match w {
            Write::Create("Pod", pod) => Some(pod),
            _ => None,
        })
        .collect()
}

/// namespace/name of the pods deleted so far.
pub(crate) fn deleted(fake: &FakeBackend) -> Vec<String> {
    fake.writes()
        .into_iter()
        .filter_map(|w| match w {
            Write::Delete("Pod", name) => Some(name),
            _ => None,
        })
        .collect()
}

/// The messages of the Events with `reason`.
pub(crate) fn events(fake: &FakeBackend, reason: &str) -> Vec<String> {
    fake.events()
        .into_iter()
        .filter(|e| e.reason == reason)
        .map(|e| e.message)
        .collect()
}

/// The stored status of ReplicaSet `name`.
pub(crate) fn rs_status(fake: &FakeBackend, name: &str) -> ReplicaSetStatus {
    fake.get::<ReplicaSet>(Some(NS), name)
        .and_then(|rs| rs.status)
        .unwrap_or_default()
}

/// The ReplicaFailure condition's reason, if set.
pub(crate) fn failure_reason(status: &ReplicaSetStatus) -> Option<String> {
    status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == REPLICA_FAILURE)
        .and_then(|c| c.reason.clone())
}

/// (uid, controller) of each ownerReference of pod `name`.
pub(crate) fn owner_uids(fake: &FakeBackend, name: &str) -> Vec<(String, Option<bool>)> {
    fake.get::<Pod>(Some(NS), name)
        .unwrap()
        .metadata
        .owner_references
        .unwrap_or_default()
        .into_iter()
        .map(|r| (r.uid, r.controller))
        .collect()
}

#[tokio::test]
async fn status_counts_ready_and_available_and_requeues_for_min_ready_seconds() {
    let mut rs = replica_set("web", 3);
    let spec = rs.spec.as_mut().unwrap();
    spec.min_ready_seconds = Some(10);
    spec.template = Some(template(&[("app", "web"), ("tier", "front")]));
    let (fake, rs) = setup(&rs);
    let mut p1 = running(pod("p1", Some(&rs), "web"), "n", Some(t0() - secs(20)));
    let mut p2 = running(pod("p2", Some(&rs), "web"), "n", Some(t0() - secs(4)));
    for p in [&mut p1, &mut p2] {
        p.metadata.labels = Some(labels(&[("app", "web"), ("tier", "front")]));
    }
    fake.insert(&p1);
    fake.insert(&p2);
    fake.insert(&running(pod("p3", Some(&rs), "web"), "n", None));
    let controller = ReplicaSetController::new();

    let action = run(&controller, &fake, "web").await.unwrap();
    assert_eq!(action, Action::RequeueAfter(Duration::from_secs(6)));
    let status = rs_status(&fake, "web");
    assert_eq!(status.replicas, 3);
    assert_eq!(status.fully_labeled_replicas, Some(2));
    assert_eq!(status.ready_replicas, Some(2));
    assert_eq!(status.available_replicas, Some(1));

    fake.advance(Duration::from_secs(6));
    assert_eq!(run(&controller, &fake, "web").await.unwrap(), Action::Done);
    assert_eq!(rs_status(&fake, "web").available_replicas, Some(2));
}

fn new_pod_change(name: &str, app: &str) -> WatchedChange {
    WatchedChange {
        kind: TypeRef::of::<Pod>(),
        namespace: Some(NS.into()),
        name: name.into(),
        labels: labels(&[("app", app)]),
        previous_labels: None,
        controller: None,
        previous_controller: None,
        node_name: None,
        previous_node_name: None,
        deleted: false,
    }
}

#[tokio::test]
async fn a_new_orphan_is_mapped_to_the_matching_replica_set_and_adopted() {
    let (fake, rs) = setup(&replica_set("web", 1));
    fake.insert(&pod("own", Some(&rs), "web"));
    let controller = ReplicaSetController::new();
    run(&controller, &fake, "web").await.unwrap();
    assert_eq!(rs_status(&fake, "web").observed_generation, Some(1));

    // Spec observed: the namespace is not scanned again, the watch brings new orphans.
    fake.insert(&pod("stray", None::<&ReplicaSet>, "web"));
    let ctx = Ctx::new(fake.clone() as Arc<dyn Backend>, controller.name());
    assert_eq!(
        controller.keys_for(&new_pod_change("stray", "web"), &ctx),
        [Key::new(Some(NS), "web")]
    );
    assert!(controller
        .keys_for(&new_pod_change("db-1", "db"), &ctx)
        .is_empty());
    let mut status_only = new_pod_change("stray", "web");
    status_only.previous_labels = Some(status_only.labels.clone());
    assert!(controller.keys_for(&status_only, &ctx).is_empty());

    fake.clear_writes();
    run(&controller, &fake, "web").await.unwrap();
    assert_eq!(
        owner_uids(&fake, "stray"),
        [("uid-replicaset-web".to_string(), Some(true))]
    );
    // Adopted makes two for one wanted: the surplus goes.
    assert_eq!(deleted(&fake).len(), 1);
}

#[tokio::test]
async fn owned_pods_map_to_their_controller() {
    let (fake, _) = setup(&replica_set("web", 1));
    let controller = ReplicaSetController::new();
    let ctx = Ctx::new(fake.clone() as Arc<dyn Backend>, controller.name());
    let mut change = new_pod_change("web-1", "web");
    change.previous_labels = Some(change.labels.clone());
    change.controller = Some(ControllerRef {
        kind: "ReplicaSet".into(),
        name: "web".into(),
    });
    assert_eq!(
        controller.keys_for(&change, &ctx),
        [Key::new(Some(NS), "web")]
    );
}

#[tokio::test]
async fn observed_generation_follows_the_spec_and_unchanged_status_is_not_written() {
    let mut rs = replica_set("web", 1);
    rs.metadata.generation = Some(5);
    rs.status = Some(ReplicaSetStatus {
        replicas: 1,
        fully_labeled_replicas: Some(1),
        observed_generation: Some(4),
        ..Default::default()
    });
    let (fake, rs) = setup(&rs);
    fake.insert(&pod("own", Some(&rs), "web"));
    let controller = ReplicaSetController::new();

    run(&controller, &fake, "web").await.unwrap();
    assert_eq!(fake.writes().len(), 1);
    assert!(matches!(
        fake.writes()[0],
        Write::ReplaceStatus("ReplicaSet", _)
    ));
    assert_eq!(rs_status(&fake, "web").observed_generation, Some(5));

    fake.clear_writes();
    run(&controller, &fake, "web").await.unwrap();
    assert!(fake.writes().is_empty());
}

#[tokio::test]
async fn a_deleted_or_missing_replica_set_is_left_alone() {
    let mut rs = replica_set("web", 3);
    rs.metadata.deletion_timestamp = Some(Time(t0()));
    let (fake, _) = setup(&rs);
    let controller = ReplicaSetController::new();
    assert_eq!(run(&controller, &fake, "web").await.unwrap(), Action::Done);
    assert_eq!(run(&controller, &fake, "gone").await.unwrap(), Action::Done);
    assert!(fake.writes().is_empty());
    assert!(fake.events().is_empty());
}

fn replication_controller(name: &str, selector: Option<&[(&str, &str)]>) -> ReplicationController {
    ReplicationController {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(NS.into()),
            generation: Some(1),
            ..Default::default()
        },
        spec: Some(ReplicationControllerSpec {
            replicas: Some(2),
            selector: selector.map(labels),
            template: Some(template(&[("app", "legacy")])),
            ..Default::default()
        }),
        status: None,
    }
}

#[tokio::test]
async fn replication_controllers_run_through_the_same_code() {
    let fake = Arc::new(FakeBackend::new());
    let rc = fake.insert(&replication_controller(
        "legacy",
        Some(&[("app", "legacy")]),
    ));
    fake.insert(&pod("stray", None::<&ReplicaSet>, "legacy"));
    let controller = ReplicationManager::new();

    run(&controller, &fake, "legacy").await.unwrap();
    assert_eq!(
        owner_uids(&fake, "stray"),
        [(rc.metadata.uid.clone().unwrap(), Some(true))]
    );
    let created = created_pods(&fake);
    assert_eq!(created.len(), 1);
    assert_eq!(created[0]["metadata"]["generateName"], "legacy-");
    assert_eq!(
        created[0]["metadata"]["ownerReferences"][0]["kind"],
        "ReplicationController"
    );
    let event = &fake.events()[0];
    assert_eq!(event.source, "replication-controller");
    assert_eq!(event.involved.kind, "ReplicationController");
    assert_eq!(event.message, "Created pod: legacy-00001");

    run(&controller, &fake, "legacy").await.unwrap();
    let status = fake
        .get::<ReplicationController>(Some(NS), "legacy")
        .and_then(|rc| rc.status)
        .unwrap();
    assert_eq!(status.replicas, 2);
    assert_eq!(status.fully_labeled_replicas, Some(2));
    assert_eq!(status.observed_generation, Some(1));
}

#[tokio::test]
async fn a_replication_controller_without_selector_selects_its_template_labels() {
    let fake = Arc::new(FakeBackend::new());
    let rc = fake.insert(&replication_controller("legacy", None));
    fake.insert(&pod("own", Some(&rc), "legacy"));
    fake.insert(&pod("stray", None::<&ReplicaSet>, "legacy"));

    run(&ReplicationManager::new(), &fake, "legacy")
        .await
        .unwrap();
    assert_eq!(owner_uids(&fake, "own").len(), 1, "not released");
    assert_eq!(owner_uids(&fake, "stray").len(), 1, "adopted");
    assert!(created_pods(&fake).is_empty());
}

#[tokio::test]
async fn a_replication_controller_without_template_reports_failed_create() {
    let mut rc = replication_controller("legacy", Some(&[("app", "legacy")]));
    rc.spec.as_mut().unwrap().template = None;
    let fake = Arc::new(FakeBackend::new());
    fake.insert(&rc);

    // Retrying cannot help until the object changes: no error, no requeue.
    let action = run(&ReplicationManager::new(), &fake, "legacy")
        .await
        .unwrap();
    assert_eq!(action, Action::Done);
    assert_eq!(events(&fake, "FailedCreate").len(), 1);
    let status = fake
        .get::<ReplicationController>(Some(NS), "legacy")
        .and_then(|rc| rc.status)
        .unwrap();
    let condition = &status.conditions.unwrap()[0];
    assert_eq!(condition.type_, "ReplicaFailure");
    assert_eq!(condition.reason.as_deref(), Some("FailedCreate"));
}
