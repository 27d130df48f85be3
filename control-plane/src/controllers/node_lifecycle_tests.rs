use std::sync::Arc;

use k8s_openapi::api::core::v1::{NodeCondition, PodCondition, Toleration};
use k8s_openapi::chrono::TimeZone;

use super::*;
use crate::controllers::fake::{FakeBackend, Write};
use crate::controllers::pod_disruption::tests::{change_of, ctx_of, deletes, node, pod, tolerate};
use crate::controllers::pod_disruption::DISRUPTION_TARGET;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
}

struct Env {
    fake: Arc<FakeBackend>,
    ctl: NodeLifecycleController,
    ctx: Ctx,
}

fn env() -> Env {
    let fake = Arc::new(FakeBackend::new());
    let ctl = NodeLifecycleController::new();
    let ctx = ctx_of(&fake, ctl.name());
    Env { fake, ctl, ctx }
}

impl Env {
    async fn run(&self, node: &str) -> Action {
        self.ctl
            .reconcile(&Key::new(None, node), &self.ctx)
            .await
            .unwrap()
    }

    fn taints(&self, node: &str) -> Vec<(String, String)> {
        let node: Node = self.fake.get(None, node).unwrap();
        taints_of(&node)
            .iter()
            .map(|t| (t.key.clone(), t.effect.clone()))
            .collect()
    }

    fn pod(&self, name: &str) -> Option<Pod> {
        self.fake.get(Some("default"), name)
    }

    /// (source, type, reason, message) of each Event.
    fn events(&self) -> Vec<(&'static str, &'static str, String, String)> {
        self.fake
            .events()
            .into_iter()
            .map(|e| (e.source, e.event_type.as_str(), e.reason, e.message))
            .collect()
    }
}

fn defaults() -> Vec<Toleration> {
    vec![
        tolerate(NOT_READY, Some(300)),
        tolerate(UNREACHABLE, Some(300)),
    ]
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, e)| (k.to_string(), e.to_string()))
        .collect()
}

fn condition<'a>(pod: &'a Pod, type_: &str) -> Option<&'a PodCondition> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

#[tokio::test]
async fn an_unreachable_node_is_tainted_announced_and_its_pods_marked_not_ready() {
    let env = env();
    env.fake.insert(&node("n1", Some("Unknown")));
    env.fake.insert(&pod("web-1", "n1", defaults()));

    assert_eq!(env.run("n1").await, Action::RequeueAfter(secs(300)));

    assert_eq!(
        env.taints("n1"),
        pairs(&[(UNREACHABLE, NO_SCHEDULE), (UNREACHABLE, NO_EXECUTE)])
    );
    let stored: Node = env.fake.get(None, "n1").unwrap();
    assert!(taints_of(&stored)
        .iter()
        .all(|t| t.time_added == Some(Time(t0()))));
    let ready = env.pod("web-1").unwrap();
    let ready = condition(&ready, "Ready").unwrap();
    assert_eq!(ready.status, "False");
    assert_eq!(ready.last_transition_time, Some(Time(t0())));
    assert_eq!(
        env.events(),
        [
            (
                NODE_CONTROLLER,
                "Normal",
                "NodeNotReady".to_string(),
                "Node n1 status is now: NodeNotReady".to_string()
            ),
            (
                NODE_CONTROLLER,
                "Warning",
                "NodeNotReady".to_string(),
                "Node is not ready".to_string()
            ),
        ]
    );
    assert_eq!(env.fake.events()[0].involved.kind, "Node");
    assert_eq!(env.fake.events()[1].involved.name, "web-1");

    // Nothing more to do until the tolerations run out.
    env.fake.clear_writes();
    assert_eq!(env.run("n1").await, Action::RequeueAfter(secs(300)));
    assert!(env.fake.writes().is_empty());
    assert!(env.fake.events().is_empty());
}

#[tokio::test]
async fn default_tolerations_evict_only_once_300_seconds_have_passed() {
    let env = env();
    env.fake.insert(&node("n1", Some("Unknown")));
    env.fake.insert(&pod("web-1", "n1", defaults()));
    env.run("n1").await;
    env.fake.clear_writes();

    env.fake.advance(secs(299));
    assert_eq!(env.run("n1").await, Action::RequeueAfter(secs(1)));
    assert!(env.pod("web-1").is_some());
    assert!(deletes(&env.fake).is_empty());

    env.fake.advance(secs(1));
    assert_eq!(env.run("n1").await, Action::Done);
    assert!(env.pod("web-1").is_none());
    // A normal delete (the node stops the pod), guarded by the pod's uid.
    assert_eq!(
        deletes(&env.fake),
        [(
            "default/web-1".to_string(),
            None,
            Some("uid-pod-web-1".to_string())
        )]
    );
    let writes = env.fake.writes();
    let Write::ReplaceStatus("Pod", marked) = &writes[0] else {
        panic!("expected the DisruptionTarget condition first: {writes:?}");
    };
    let marked: Pod = serde_json::from_value(marked.clone()).unwrap();
    let target = condition(&marked, DISRUPTION_TARGET).unwrap();
    assert_eq!(target.reason.as_deref(), Some("DeletionByTaintManager"));
    assert_eq!(
        target.message.as_deref(),
        Some("Taint manager: deleting due to NoExecute taint")
    );
    assert_eq!(writes[1], Write::Delete("Pod", "default/web-1".to_string()));
    assert_eq!(
        env.events(),
        [(
            TAINT_EVICTION_CONTROLLER,
            "Normal",
            "TaintManagerEviction".to_string(),
            "Marking for deletion Pod default/web-1".to_string()
        )]
    );
}

#[tokio::test]
async fn a_pod_without_a_toleration_is_evicted_at_once() {
    let env = env();
    env.fake.insert(&node("n1", Some("Unknown")));
    env.fake.insert(&pod("bare", "n1", vec![]));
    env.fake.insert(&pod("patient", "n1", defaults()));

    assert_eq!(env.run("n1").await, Action::RequeueAfter(secs(300)));
    assert!(env.pod("bare").is_none());
    assert!(env.pod("patient").is_some());
    let reasons: Vec<String> = env.events().into_iter().map(|e| e.2).collect();
    assert!(reasons.contains(&"TaintManagerEviction".to_string()));
}

#[tokio::test]
async fn a_pod_tolerating_without_seconds_stays() {
    let env = env();
    env.fake.insert(&node("n1", Some("Unknown")));
    env.fake
        .insert(&pod("daemon", "n1", vec![tolerate(UNREACHABLE, None)]));
    let everything = Toleration {
        operator: Some("Exists".into()),
        ..Default::default()
    };
    env.fake.insert(&pod("anything", "n1", vec![everything]));

    assert_eq!(env.run("n1").await, Action::Done);
    env.fake.advance(secs(86_400));
    env.run("n1").await;
    assert!(env.pod("daemon").is_some());
    assert!(env.pod("anything").is_some());
    assert!(deletes(&env.fake).is_empty());
}

#[tokio::test]
async fn terminating_pods_are_left_alone() {
    let env = env();
    env.fake.insert(&node("n1", Some("Unknown")));
    let mut going = pod("going", "n1", vec![]);
    going.metadata.deletion_timestamp = Some(Time(t0()));
    env.fake.insert(&going);

    env.run("n1").await;
    assert!(env.pod("going").is_some());
    assert!(deletes(&env.fake).is_empty());
}

#[tokio::test]
async fn a_node_ready_again_loses_its_taints_and_evicts_nothing() {
    let env = env();
    let mut back = node("n1", Some("True"));
    back.spec.as_mut().unwrap().taints = Some(vec![
        Taint {
            key: UNREACHABLE.into(),
            effect: NO_SCHEDULE.into(),
            time_added: Some(Time(t0())),
            value: None,
        },
        Taint {
            key: "dedicated".into(),
            value: Some("gpu".into()),
            effect: NO_SCHEDULE.into(),
            time_added: None,
        },
        Taint {
            key: UNREACHABLE.into(),
            effect: NO_EXECUTE.into(),
            time_added: Some(Time(t0())),
            value: None,
        },
    ]);
    env.fake.insert(&back);
    env.fake.insert(&pod("bare", "n1", vec![]));

    assert_eq!(env.run("n1").await, Action::Done);
    assert_eq!(env.taints("n1"), pairs(&[("dedicated", NO_SCHEDULE)]));
    assert!(env.pod("bare").is_some());
    assert!(deletes(&env.fake).is_empty());
    assert!(env.events().is_empty());
}

#[tokio::test]
async fn cordoning_adds_the_unschedulable_taint_and_uncordoning_removes_it() {
    let env = env();
    let mut cordoned = node("n1", Some("True"));
    cordoned.spec.as_mut().unwrap().unschedulable = Some(true);
    env.fake.insert(&cordoned);

    assert_eq!(env.run("n1").await, Action::Done);
    assert_eq!(env.taints("n1"), pairs(&[(UNSCHEDULABLE, NO_SCHEDULE)]));

    let mut uncordoned: Node = env.fake.get(None, "n1").unwrap();
    uncordoned.spec.as_mut().unwrap().unschedulable = None;
    env.fake.insert(&uncordoned);
    env.run("n1").await;
    assert!(env.taints("n1").is_empty());
}

#[tokio::test]
async fn pressure_conditions_become_no_schedule_taints() {
    let env = env();
    let mut pressed = node("n1", Some("True"));
    let conditions = pressed
        .status
        .as_mut()
        .unwrap()
        .conditions
        .as_mut()
        .unwrap();
    conditions.push(NodeCondition {
        type_: "DiskPressure".into(),
        status: "True".into(),
        ..Default::default()
    });
    conditions.push(NodeCondition {
        type_: "MemoryPressure".into(),
        status: "False".into(),
        ..Default::default()
    });
    env.fake.insert(&pressed);
    env.run("n1").await;
    assert_eq!(env.taints("n1"), pairs(&[(DISK_PRESSURE, NO_SCHEDULE)]));
}

#[tokio::test]
async fn a_node_reporting_not_ready_swaps_taints_without_touching_pod_readiness() {
    let env = env();
    env.fake.insert(&node("n1", Some("Unknown")));
    env.fake.insert(&pod("web-1", "n1", defaults()));
    env.run("n1").await;
    env.fake.clear_writes();

    // The kubelet is back but says it cannot run pods: it owns its pods' status again.
    let mut stored: Node = env.fake.get(None, "n1").unwrap();
    stored.status.as_mut().unwrap().conditions.as_mut().unwrap()[0].status = "False".into();
    env.fake.insert(&stored);
    let mut ready = env.pod("web-1").unwrap();
    ready.status.as_mut().unwrap().conditions.as_mut().unwrap()[0].status = "True".into();
    env.fake.insert(&ready);
    env.fake.advance(secs(10));

    assert_eq!(env.run("n1").await, Action::RequeueAfter(secs(300)));
    assert_eq!(
        env.taints("n1"),
        pairs(&[(NOT_READY, NO_SCHEDULE), (NOT_READY, NO_EXECUTE)])
    );
    assert_eq!(
        condition(&env.pod("web-1").unwrap(), "Ready")
            .unwrap()
            .status,
        "True"
    );
    assert!(
        env.events().is_empty(),
        "still not ready: no new NodeNotReady"
    );
}

#[tokio::test]
async fn a_user_no_execute_taint_applies_to_a_ready_node() {
    let env = env();
    let mut dedicated = node("n1", Some("True"));
    dedicated.spec.as_mut().unwrap().taints = Some(vec![Taint {
        key: "dedicated".into(),
        value: Some("gpu".into()),
        effect: NO_EXECUTE.into(),
        time_added: None,
    }]);
    env.fake.insert(&dedicated);
    env.fake.insert(&pod("bare", "n1", vec![]));
    env.fake
        .insert(&pod("brief", "n1", vec![tolerate("dedicated", Some(60))]));

    // Without timeAdded the toleration counts from the pod's binding (its creation here).
    assert_eq!(env.run("n1").await, Action::RequeueAfter(secs(60)));
    assert!(env.pod("bare").is_none());
    assert!(env.pod("brief").is_some());
    assert_eq!(
        condition(&env.pod("brief").unwrap(), "Ready")
            .unwrap()
            .status,
        "True"
    );
}

#[tokio::test]
async fn a_node_that_never_reported_is_unreachable_after_the_startup_grace() {
    let env = env();
    env.fake.insert(&node("n1", None));
    env.fake.insert(&pod("bare", "n1", vec![]));

    assert_eq!(
        env.run("n1").await,
        Action::RequeueAfter(DEFAULT_STARTUP_GRACE)
    );
    assert!(env.taints("n1").is_empty());
    assert!(env.pod("bare").is_some());

    env.fake.advance(DEFAULT_STARTUP_GRACE);
    env.run("n1").await;
    assert_eq!(
        env.taints("n1"),
        pairs(&[(UNREACHABLE, NO_SCHEDULE), (UNREACHABLE, NO_EXECUTE)])
    );
    assert!(env.pod("bare").is_none());
}

#[tokio::test]
async fn pods_bound_later_reach_their_node_through_keys_for() {
    let env = env();
    env.fake.insert(&node("n1", Some("Unknown")));
    env.run("n1").await;

    let late = env.fake.insert(&pod("late", "n1", vec![]));
    let keys = env.ctl.keys_for(&change_of(&late, None, false), &env.ctx);
    assert_eq!(keys, [Key::new(None, "n1")]);
    env.run("n1").await;
    assert!(env.pod("late").is_none());

    let mut node_change = change_of(&late, None, false);
    node_change.kind = TypeRef::of::<Node>();
    node_change.namespace = None;
    node_change.name = "n2".into();
    assert_eq!(
        env.ctl.keys_for(&node_change, &env.ctx),
        [Key::new(None, "n2")]
    );
}

#[tokio::test]
async fn a_failed_node_write_fails_the_reconcile_without_an_event() {
    let env = env();
    env.fake.insert(&node("n1", Some("Unknown")));
    env.fake.fail_writes_of("Node", 500);
    let result = env.ctl.reconcile(&Key::new(None, "n1"), &env.ctx).await;
    assert!(result.is_err());
    assert!(env.events().is_empty());
}

#[tokio::test]
async fn a_deleted_node_is_left_to_the_pod_garbage_collector() {
    let env = env();
    env.fake.insert(&pod("orphan", "gone", vec![]));
    assert_eq!(env.run("gone").await, Action::Done);
    assert!(env.pod("orphan").is_some());
    assert!(env.fake.writes().is_empty());
}
