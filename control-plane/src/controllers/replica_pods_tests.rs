//! Tests of what the controller does to pods, through whole reconciles against the fake.

use std::sync::Arc;

use async_trait::async_trait;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::chrono::{DateTime, Utc};
use serde_json::Value;

use crate::controllers::context::{
    Backend, ControllerError, Ctx, Delete, EventRecord, EventType, TypeRef,
};
use crate::controllers::fake::FakeBackend;
use crate::controllers::reconciler::{Action, Key, Reconciler};
use crate::controllers::replicaset::tests::*;
use crate::controllers::replicaset::ReplicaSetController;

#[tokio::test]
async fn scales_up_from_zero_to_three() {
    let (fake, _) = setup(&replica_set("web", 3));
    let controller = ReplicaSetController::new();

    assert_eq!(run(&controller, &fake, "web").await.unwrap(), Action::Done);
    let created = created_pods(&fake);
    assert_eq!(created.len(), 3);
    for pod in &created {
        assert_eq!(pod["metadata"]["generateName"], "web-");
        assert_eq!(pod["metadata"]["labels"]["app"], "web");
        let owner = &pod["metadata"]["ownerReferences"][0];
        assert_eq!(owner["kind"], "ReplicaSet");
        assert_eq!(owner["uid"], "uid-replicaset-web");
        assert_eq!(owner["controller"], true);
    }
    assert_eq!(
        events(&fake, "SuccessfulCreate"),
        [
            "Created pod: web-00001",
            "Created pod: web-00002",
            "Created pod: web-00003"
        ]
    );
    assert!(fake
        .events()
        .iter()
        .all(|e| e.source == "replicaset-controller"));
    // The status counts what the reconcile started from; the pods' own changes bring it up.
    assert_eq!(rs_status(&fake, "web").replicas, 0);
    assert_eq!(rs_status(&fake, "web").observed_generation, Some(1));

    fake.clear_writes();
    run(&controller, &fake, "web").await.unwrap();
    assert!(created_pods(&fake).is_empty());
    assert_eq!(rs_status(&fake, "web").replicas, 3);
}

#[tokio::test]
async fn slow_start_stops_at_the_first_failing_create() {
    let (fake, _) = setup(&replica_set("web", 10));
    fake.fail_writes_of("Pod", 500);
    let controller = ReplicaSetController::new();

    assert!(run(&controller, &fake, "web").await.is_err());
    assert!(created_pods(&fake).is_empty());
    let failed = fake
        .events()
        .into_iter()
        .filter(|e| e.reason == "FailedCreate")
        .collect::<Vec<EventRecord>>();
    assert_eq!(failed.len(), 1, "one request, not ten");
    assert_eq!(failed[0].event_type, EventType::Warning);
    assert_eq!(failed[0].message, "Error creating: InternalError (fake)");
    let status = rs_status(&fake, "web");
    assert_eq!(failure_reason(&status).as_deref(), Some("FailedCreate"));

    // Once creates work again all ten come (1 + 2 + 4 + 3) and the condition goes.
    fake.fail_writes_of("Pod", 0);
    fake.clear_writes();
    run(&controller, &fake, "web").await.unwrap();
    assert_eq!(created_pods(&fake).len(), 10);
    assert_eq!(failure_reason(&rs_status(&fake, "web")), None);
}

/// A backend whose pod creates fail once `allowed` of them succeeded (a quota running out).
struct Quota {
    inner: Arc<FakeBackend>,
    allowed: std::sync::Mutex<usize>,
}

#[async_trait]
impl Backend for Quota {
    fn get(&self, kind: TypeRef, namespace: Option<&str>, name: &str) -> Option<Value> {
        Backend::get(self.inner.as_ref(), kind, namespace, name)
    }
    fn list(&self, kind: TypeRef, namespace: Option<&str>) -> Vec<Value> {
        Backend::list(self.inner.as_ref(), kind, namespace)
    }
    fn owned(&self, kind: TypeRef, namespace: Option<&str>, uid: &str) -> Vec<Value> {
        self.inner.owned(kind, namespace, uid)
    }
    fn on_node(&self, kind: TypeRef, node: &str) -> Vec<Value> {
        self.inner.on_node(kind, node)
    }
    async fn create(
        &self,
        manager: &'static str,
        kind: TypeRef,
        namespace: Option<&str>,
        object: Value,
    ) -> Result<Value, ControllerError> {
        {
            let mut allowed = self.allowed.lock().unwrap();
            if *allowed == 0 {
                return Err(ControllerError::Api {
                    verb: "create",
                    kind: kind.kind,
                    name: String::new(),
                    code: 403,
                    reason: "Forbidden".into(),
                    message: "exceeded quota: pods".into(),
                });
            }
            *allowed -= 1;
        }
        self.inner.create(manager, kind, namespace, object).await
    }
    async fn replace(
        &self,
        manager: &'static str,
        kind: TypeRef,
        object: Value,
        status: bool,
    ) -> Result<Value, ControllerError> {
        self.inner.replace(manager, kind, object, status).await
    }
    async fn delete(
        &self,
        kind: TypeRef,
        namespace: Option<&str>,
        name: &str,
        options: &Delete,
    ) -> Result<(), ControllerError> {
        self.inner.delete(kind, namespace, name, options).await
    }
    fn record(&self, event: EventRecord) {
        self.inner.record(event)
    }
    fn now(&self) -> DateTime<Utc> {
        Backend::now(self.inner.as_ref())
    }
}

#[tokio::test]
async fn slow_start_finishes_the_failing_batch_then_stops() {
    let (fake, _) = setup(&replica_set("web", 10));
    let quota = Quota {
        inner: fake.clone(),
        allowed: std::sync::Mutex::new(5),
    };
    let ctx = Ctx::new(Arc::new(quota) as Arc<dyn Backend>, "replicaset-controller");
    let result = ReplicaSetController::new()
        .reconcile(&Key::new(Some(NS), "web"), &ctx)
        .await;

    assert!(result.is_err());
    // Batches of 1 and 2 succeed; the batch of 4 gets 2 through and 2 refused; no batch of 3.
    assert_eq!(created_pods(&fake).len(), 5);
    assert_eq!(events(&fake, "SuccessfulCreate").len(), 5);
    assert_eq!(
        events(&fake, "FailedCreate"),
        ["Error creating: exceeded quota: pods"; 2]
    );
    let status = rs_status(&fake, "web");
    let condition = &status.conditions.unwrap()[0];
    assert_eq!(condition.reason.as_deref(), Some("FailedCreate"));
    assert_eq!(condition.message.as_deref(), Some("exceeded quota: pods"));
    assert_eq!(condition.status, "True");
}

#[tokio::test]
async fn scale_down_deletes_unscheduled_and_not_ready_pods_first() {
    let (fake, rs) = setup(&replica_set("web", 2));
    let ready = Some(t0() - secs(100));
    fake.insert(&running(pod("a", Some(&rs), "web"), "node1", ready));
    fake.insert(&pod("b", Some(&rs), "web"));
    fake.insert(&running(pod("c", Some(&rs), "web"), "node1", None));
    fake.insert(&running(pod("d", Some(&rs), "web"), "node2", ready));

    run(&ReplicaSetController::new(), &fake, "web")
        .await
        .unwrap();
    let mut gone = deleted(&fake);
    gone.sort();
    assert_eq!(gone, ["default/b", "default/c"]);
    let mut messages = events(&fake, "SuccessfulDelete");
    messages.sort();
    assert_eq!(messages, ["Deleted pod: b", "Deleted pod: c"]);
    assert_eq!(rs_status(&fake, "web").replicas, 4);
}

#[tokio::test]
async fn a_failing_delete_sets_the_failed_delete_condition() {
    let (fake, rs) = setup(&replica_set("web", 0));
    fake.insert(&pod("a", Some(&rs), "web"));
    fake.fail_writes_of("Pod", 500);

    assert!(run(&ReplicaSetController::new(), &fake, "web")
        .await
        .is_err());
    assert_eq!(
        events(&fake, "FailedDelete"),
        ["Error deleting: InternalError (fake)"]
    );
    let status = rs_status(&fake, "web");
    let condition = &status.conditions.unwrap()[0];
    assert_eq!(condition.reason.as_deref(), Some("FailedDelete"));
    assert_eq!(
        condition.message.as_deref(),
        Some("unable to delete pods: InternalError (fake)")
    );
}

#[tokio::test]
async fn terminating_and_finished_pods_do_not_count() {
    let (fake, rs) = setup(&replica_set("web", 2));
    fake.insert(&pod("live", Some(&rs), "web"));
    let mut dying = pod("dying", Some(&rs), "web");
    dying.metadata.deletion_timestamp = Some(Time(t0()));
    fake.insert(&dying);
    let mut done = pod("done", Some(&rs), "web");
    done.status.as_mut().unwrap().phase = Some("Succeeded".into());
    fake.insert(&done);

    run(&ReplicaSetController::new(), &fake, "web")
        .await
        .unwrap();
    assert_eq!(created_pods(&fake).len(), 1);
    assert!(deleted(&fake).is_empty());
    assert_eq!(rs_status(&fake, "web").replicas, 1);
}

#[tokio::test]
async fn adopts_matching_orphans_and_releases_pods_that_stopped_matching() {
    let (fake, rs) = setup(&replica_set("web", 2));
    fake.insert(&pod("keep", Some(&rs), "web"));
    fake.insert(&pod("moved", Some(&rs), "db"));
    fake.insert(&pod("stray", None::<&ReplicaSet>, "web"));
    fake.insert(&pod("unrelated", None::<&ReplicaSet>, "db"));
    let mut leaving = pod("leaving", None::<&ReplicaSet>, "web");
    leaving.metadata.deletion_timestamp = Some(Time(t0()));
    fake.insert(&leaving);

    run(&ReplicaSetController::new(), &fake, "web")
        .await
        .unwrap();
    let rs_uid = "uid-replicaset-web".to_string();
    assert_eq!(owner_uids(&fake, "stray"), [(rs_uid, Some(true))]);
    assert!(owner_uids(&fake, "moved").is_empty());
    assert!(owner_uids(&fake, "unrelated").is_empty());
    assert!(owner_uids(&fake, "leaving").is_empty());
    // keep + stray make the two replicas wanted.
    assert!(created_pods(&fake).is_empty());
    assert_eq!(rs_status(&fake, "web").replicas, 2);
}
