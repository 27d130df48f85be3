use std::sync::Arc;

use k8s_openapi::api::core::v1::{PodCondition, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::chrono::TimeZone;

use super::*;
use crate::controllers::fake::{FakeBackend, Write};
use crate::controllers::pod_disruption::tests::{change_of, ctx_of, deletes, node, pod};
use crate::controllers::pod_disruption::DISRUPTION_TARGET;
use crate::controllers::taints::NOT_READY;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

struct Env {
    fake: Arc<FakeBackend>,
    gc: PodGarbageCollector,
    ctx: Ctx,
}

fn env() -> Env {
    let fake = Arc::new(FakeBackend::new());
    let gc = PodGarbageCollector::new();
    let ctx = ctx_of(&fake, gc.name());
    Env { fake, gc, ctx }
}

impl Env {
    async fn run(&self, node: &str) -> Action {
        self.gc
            .reconcile(&Key::new(None, node), &self.ctx)
            .await
            .unwrap()
    }

    fn pod(&self, name: &str) -> Option<Pod> {
        self.fake.get(Some("default"), name)
    }
}

/// A node whose Ready condition is Unknown and that carries `key`:NoExecute.
fn tainted(name: &str, key: &str) -> Node {
    let mut n = node(name, Some("Unknown"));
    n.spec.as_mut().unwrap().taints = Some(vec![Taint {
        key: key.into(),
        effect: NO_EXECUTE.into(),
        time_added: Some(Time(t0())),
        value: None,
    }]);
    n
}

/// A pod on `node` whose delete was asked for at t0 with `grace` seconds.
fn terminating(name: &str, node: &str, grace: i64) -> Pod {
    let mut p = pod(name, node, vec![]);
    p.metadata.deletion_timestamp = Some(Time(t0()));
    p.metadata.deletion_grace_period_seconds = Some(grace);
    p
}

fn condition<'a>(pod: &'a Pod, type_: &str) -> Option<&'a PodCondition> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
}

#[tokio::test]
async fn pods_of_a_deleted_node_are_failed_and_force_deleted() {
    let env = env();
    let mut old = pod("orphan", "gone", vec![]);
    old.metadata.creation_timestamp = Some(Time(t0() - ChronoDuration::hours(1)));
    env.fake.insert(&old);
    env.fake.insert(&pod("elsewhere", "n2", vec![]));

    assert_eq!(env.run("gone").await, Action::Done);
    assert!(env.pod("orphan").is_none());
    assert!(env.pod("elsewhere").is_some());
    assert_eq!(
        deletes(&env.fake),
        [(
            "default/orphan".to_string(),
            Some(0),
            Some("uid-pod-orphan".to_string())
        )]
    );
    let writes = env.fake.writes();
    let Write::ReplaceStatus("Pod", marked) = &writes[0] else {
        panic!("expected the pod marked Failed first: {writes:?}");
    };
    let marked: Pod = serde_json::from_value(marked.clone()).unwrap();
    assert_eq!(pods::phase(&marked), "Failed");
    let target = condition(&marked, DISRUPTION_TARGET).unwrap();
    assert_eq!(target.status, "True");
    assert_eq!(target.reason.as_deref(), Some("DeletionByPodGC"));
    assert_eq!(
        target.message.as_deref(),
        Some("PodGC: node no longer exists")
    );
    assert!(env.fake.events().is_empty());
}

#[tokio::test]
async fn a_new_pod_naming_a_missing_node_waits_out_the_quarantine() {
    let env = env();
    env.fake.insert(&pod("early", "registering", vec![]));

    assert_eq!(
        env.run("registering").await,
        Action::RequeueAfter(DEFAULT_QUARANTINE)
    );
    assert!(env.pod("early").is_some());

    env.fake.advance(secs(30));
    assert_eq!(env.run("registering").await, Action::RequeueAfter(secs(10)));
    env.fake.advance(secs(10));
    assert_eq!(env.run("registering").await, Action::Done);
    assert!(env.pod("early").is_none());
}

#[tokio::test]
async fn a_node_deleted_later_reaches_its_pods_through_keys_for() {
    let env = env();
    env.fake.insert(&node("n1", Some("True")));
    let mut old = pod("web-1", "n1", vec![]);
    old.metadata.creation_timestamp = Some(Time(t0() - ChronoDuration::hours(1)));
    let stored = env.fake.insert(&old);
    assert_eq!(env.run("n1").await, Action::Done);
    assert_eq!(
        env.gc.keys_for(&change_of(&stored, None, false), &env.ctx),
        [Key::new(None, "n1")]
    );

    env.fake.remove::<Node>(None, "n1");
    env.run("n1").await;
    assert!(env.pod("web-1").is_none());
}

#[tokio::test]
async fn terminating_pods_of_an_unreachable_node_are_force_deleted_after_their_grace() {
    let env = env();
    env.fake.insert(&tainted("n1", UNREACHABLE));
    env.fake.insert(&terminating("stuck", "n1", 30));
    env.fake.insert(&pod("running", "n1", vec![]));

    env.fake.advance(secs(10));
    assert_eq!(env.run("n1").await, Action::RequeueAfter(secs(20)));
    assert!(env.pod("stuck").is_some());
    assert!(deletes(&env.fake).is_empty());

    env.fake.advance(secs(20));
    assert_eq!(env.run("n1").await, Action::Done);
    assert!(env.pod("stuck").is_none());
    assert_eq!(
        deletes(&env.fake),
        [(
            "default/stuck".to_string(),
            Some(0),
            Some("uid-pod-stuck".to_string())
        )]
    );
    // Not being deleted: the eviction is the node lifecycle controller's call.
    assert!(env.pod("running").is_some());
}

#[tokio::test]
async fn terminating_pods_of_a_reachable_node_are_its_own() {
    let env = env();
    env.fake.insert(&node("n1", Some("True")));
    env.fake.insert(&terminating("stopping", "n1", 0));
    let mut not_ready = tainted("n2", NOT_READY);
    not_ready
        .status
        .as_mut()
        .unwrap()
        .conditions
        .as_mut()
        .unwrap()[0]
        .status = "False".into();
    env.fake.insert(&not_ready);
    env.fake.insert(&terminating("slow", "n2", 0));
    env.fake.advance(secs(3600));

    assert_eq!(env.run("n1").await, Action::Done);
    assert_eq!(env.run("n2").await, Action::Done);
    assert!(env.pod("stopping").is_some());
    assert!(env.pod("slow").is_some());
    assert!(env.fake.writes().is_empty());
}

#[tokio::test]
async fn an_out_of_service_node_loses_its_terminating_pods_at_once() {
    let env = env();
    let mut down = tainted("n1", OUT_OF_SERVICE);
    down.status.as_mut().unwrap().conditions.as_mut().unwrap()[0].status = "False".into();
    env.fake.insert(&down);
    env.fake.insert(&terminating("stuck", "n1", 300));

    env.run("n1").await;
    assert!(env.pod("stuck").is_none());
    assert_eq!(deletes(&env.fake)[0].1, Some(0));
}

#[test]
fn the_grace_period_ends_after_the_deletion_was_asked_for() {
    assert_eq!(
        grace_ends(&terminating("a", "n1", 30)),
        Some(t0() + ChronoDuration::seconds(30))
    );
    assert_eq!(grace_ends(&pod("a", "n1", vec![])), None);
}
