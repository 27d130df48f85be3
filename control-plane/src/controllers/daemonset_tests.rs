use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::{
    ControllerRevision, DaemonSet, DaemonSetSpec, DaemonSetUpdateStrategy, RollingUpdateDaemonSet,
};
use k8s_openapi::api::core::v1::{
    Container, Node, NodeSpec, Pod, PodCondition, PodSpec, PodStatus, PodTemplateSpec, Taint,
    Toleration,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::*;
use crate::controllers::context::{Backend, EventType};
use crate::controllers::daemon_placement::target_node;
use crate::controllers::fake::{FakeBackend, Write};
use crate::controllers::reconciler::WatchedChange;

fn labels(pairs: &[(&str, &str)]) -> Option<BTreeMap<String, String>> {
    Some(
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

fn node(name: &str, node_labels: &[(&str, &str)], taints: Vec<Taint>) -> Node {
    Node {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: labels(node_labels),
            ..Default::default()
        },
        spec: Some(NodeSpec {
            taints: (!taints.is_empty()).then_some(taints),
            ..Default::default()
        }),
        status: None,
    }
}

fn taint(key: &str, effect: &str) -> Taint {
    Taint {
        key: key.into(),
        effect: effect.into(),
        ..Default::default()
    }
}

fn daemon_set(image: &str) -> DaemonSet {
    DaemonSet {
        metadata: ObjectMeta {
            name: Some("agent".into()),
            namespace: Some("default".into()),
            generation: Some(1),
            ..Default::default()
        },
        spec: Some(DaemonSetSpec {
            selector: LabelSelector {
                match_labels: labels(&[("app", "agent")]),
                ..Default::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: labels(&[("app", "agent")]),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![Container {
                        name: "agent".into(),
                        image: Some(image.into()),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        status: None,
    }
}

fn with_rolling_update(mut ds: DaemonSet, max_unavailable: i32, max_surge: i32) -> DaemonSet {
    if let Some(spec) = ds.spec.as_mut() {
        spec.update_strategy = Some(DaemonSetUpdateStrategy {
            type_: Some("RollingUpdate".into()),
            rolling_update: Some(RollingUpdateDaemonSet {
                max_unavailable: Some(IntOrString::Int(max_unavailable)),
                max_surge: Some(IntOrString::Int(max_surge)),
            }),
        });
    }
    ds
}

struct Harness {
    fake: Arc<FakeBackend>,
    ctx: Ctx,
    controller: DaemonSetReconciler,
}

impl Harness {
    fn new() -> Harness {
        let fake = Arc::new(FakeBackend::new());
        let ctx = Ctx::new(fake.clone() as Arc<dyn Backend>, "daemonset-controller");
        Harness {
            fake,
            ctx,
            controller: DaemonSetReconciler::new(),
        }
    }

    async fn reconcile(&self) -> Action {
        self.controller
            .reconcile(&Key::new(Some("default"), "agent"), &self.ctx)
            .await
            .expect("reconcile succeeds")
    }

    /// Changes the stored DaemonSet's spec as a user's update would (generation bumped).
    fn update_spec(&self, change: impl FnOnce(&mut DaemonSetSpec)) {
        let mut ds: DaemonSet = self.fake.get(Some("default"), "agent").expect("ds stored");
        change(ds.spec.as_mut().expect("spec"));
        ds.metadata.generation = ds.metadata.generation.map(|g| g + 1);
        self.fake.insert(&ds);
    }

    fn pods(&self) -> Vec<Pod> {
        self.fake.all::<Pod>()
    }

    fn pods_on(&self, node: &str) -> Vec<Pod> {
        self.pods()
            .into_iter()
            .filter(|p| target_node(p).as_deref() == Some(node))
            .collect()
    }

    /// The scheduler binds every pod and the kubelet reports it Running and Ready.
    fn run_all(&self) {
        for mut pod in self.pods() {
            if pods::is_ready(&pod) {
                continue;
            }
            let node = target_node(&pod).expect("daemon pod is pinned");
            pod.spec.as_mut().expect("spec").node_name = Some(node);
            pod.status = Some(PodStatus {
                phase: Some("Running".into()),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: "True".into(),
                    last_transition_time: Some(Time(self.fake.now())),
                    ..Default::default()
                }]),
                ..Default::default()
            });
            self.fake.insert(&pod);
        }
    }

    fn status(&self) -> k8s_openapi::api::apps::v1::DaemonSetStatus {
        let ds: DaemonSet = self.fake.get(Some("default"), "agent").expect("ds stored");
        ds.status.expect("status written")
    }

    fn deletes(&self) -> usize {
        self.fake
            .writes()
            .iter()
            .filter(|w| matches!(w, Write::Delete("Pod", _)))
            .count()
    }

    fn creates(&self) -> usize {
        self.fake
            .writes()
            .iter()
            .filter(|w| matches!(w, Write::Create("Pod", _)))
            .count()
    }
}

fn hash_of(pod: &Pod) -> String {
    pod.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(REVISION_HASH_LABEL))
        .cloned()
        .unwrap_or_default()
}

#[tokio::test]
async fn places_one_pinned_pod_per_matching_node() {
    let h = Harness::new();
    h.fake.insert(&node("a", &[("role", "worker")], vec![]));
    h.fake.insert(&node("b", &[("role", "worker")], vec![]));
    h.fake.insert(&node("c", &[("role", "db")], vec![]));
    let mut ds = daemon_set("agent:1");
    if let Some(spec) = ds.spec.as_mut().and_then(|s| s.template.spec.as_mut()) {
        spec.node_selector = labels(&[("role", "worker")]);
    }
    h.fake.insert(&ds);

    assert_eq!(h.reconcile().await, Action::Done);

    assert_eq!(h.pods_on("a").len(), 1);
    assert_eq!(h.pods_on("b").len(), 1);
    assert_eq!(h.pods().len(), 2);
    let revisions = h.fake.all::<ControllerRevision>();
    assert_eq!(revisions.len(), 1);
    let hash = revision_hash(&revisions[0]);
    assert_eq!(
        revisions[0].metadata.name.as_deref(),
        Some(format!("agent-{hash}").as_str())
    );
    let pod = &h.pods_on("a")[0];
    assert_eq!(pod.metadata.generate_name.as_deref(), Some("agent-"));
    let pod_labels = pod.metadata.labels.clone().unwrap_or_default();
    assert_eq!(pod_labels.get("controller-revision-hash"), Some(&hash));
    assert_eq!(
        pod_labels
            .get("pod-template-generation")
            .map(String::as_str),
        Some("1")
    );
    assert_eq!(pod_labels.get("app").map(String::as_str), Some("agent"));
    let tolerations = pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.clone())
        .unwrap_or_default();
    assert!(tolerations
        .iter()
        .any(|t| t.key.as_deref() == Some("node.kubernetes.io/not-ready")
            && t.effect.as_deref() == Some("NoExecute")
            && t.toleration_seconds.is_none()));
    assert!(tolerations
        .iter()
        .any(|t| t.key.as_deref() == Some("node.kubernetes.io/unschedulable")));
    assert!(
        pod.spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .is_none(),
        "the scheduler binds it"
    );
    let events = h.fake.events();
    let created: Vec<_> = events
        .iter()
        .filter(|e| e.reason == "SuccessfulCreate")
        .collect();
    assert_eq!(created.len(), 2);
    assert!(created[0].message.starts_with("Created pod: agent-"));
    assert_eq!(created[0].source, "daemonset-controller");

    // Level-triggered: nothing more to do.
    h.fake.clear_writes();
    h.reconcile().await;
    assert_eq!(h.creates() + h.deletes(), 0);
}

#[tokio::test]
async fn skips_a_tainted_node_unless_the_pod_tolerates_it() {
    let h = Harness::new();
    h.fake.insert(&node("plain", &[], vec![]));
    h.fake
        .insert(&node("gpu", &[], vec![taint("dedicated", "NoSchedule")]));
    h.fake.insert(&node(
        "starting",
        &[],
        vec![taint("node.kubernetes.io/not-ready", "NoExecute")],
    ));
    h.fake.insert(&daemon_set("agent:1"));

    h.reconcile().await;
    assert_eq!(h.pods_on("plain").len(), 1);
    assert_eq!(
        h.pods_on("starting").len(),
        1,
        "daemon pods tolerate not-ready nodes"
    );
    assert!(h.pods_on("gpu").is_empty());
    assert_eq!(h.status().desired_number_scheduled, 2);

    h.update_spec(|spec| {
        if let Some(pod) = spec.template.spec.as_mut() {
            pod.tolerations = Some(vec![Toleration {
                key: Some("dedicated".into()),
                operator: Some("Exists".into()),
                ..Default::default()
            }]);
        }
    });
    h.reconcile().await;
    assert_eq!(h.pods_on("gpu").len(), 1);
}

#[tokio::test]
async fn a_no_schedule_taint_keeps_the_pod_and_no_execute_evicts_it() {
    let h = Harness::new();
    h.fake.insert(&node("a", &[], vec![]));
    h.fake.insert(&daemon_set("agent:1"));
    h.reconcile().await;
    h.run_all();

    h.fake
        .insert(&node("a", &[], vec![taint("maintenance", "NoSchedule")]));
    h.fake.clear_writes();
    h.reconcile().await;
    assert_eq!(h.deletes(), 0);
    assert_eq!(h.status().number_misscheduled, 1);

    h.fake
        .insert(&node("a", &[], vec![taint("maintenance", "NoExecute")]));
    h.reconcile().await;
    assert_eq!(h.deletes(), 1);
    assert!(h.pods_on("a").is_empty());
}

#[tokio::test]
async fn follows_nodes_joining_and_leaving() {
    let h = Harness::new();
    h.fake.insert(&node("a", &[], vec![]));
    h.fake.insert(&daemon_set("agent:1"));
    h.reconcile().await;
    assert_eq!(h.pods().len(), 1);

    // A node change requeues the DaemonSet.
    let change = WatchedChange {
        kind: TypeRef::of::<Node>(),
        namespace: None,
        name: "b".into(),
        labels: BTreeMap::new(),
        previous_labels: None,
        controller: None,
        previous_controller: None,
        node_name: None,
        previous_node_name: None,
        deleted: false,
    };
    assert_eq!(
        h.controller.keys_for(&change, &h.ctx),
        vec![Key::new(Some("default"), "agent")]
    );

    h.fake.insert(&node("b", &[], vec![]));
    h.reconcile().await;
    assert_eq!(h.pods_on("b").len(), 1);

    let on_a = h.pods_on("a")[0].metadata.name.clone().unwrap_or_default();
    h.fake.remove::<Node>(None, "a");
    h.fake.clear_writes();
    h.reconcile().await;
    assert!(h.pods_on("a").is_empty());
    assert!(h
        .fake
        .writes()
        .contains(&Write::Delete("Pod", format!("default/{on_a}"))));
    assert!(h
        .fake
        .events()
        .iter()
        .any(|e| e.reason == "SuccessfulDelete" && e.message == format!("Deleted pod: {on_a}")));
    assert_eq!(h.status().desired_number_scheduled, 1);
}

#[tokio::test]
async fn failed_pods_are_deleted_and_recreated_with_backoff() {
    let h = Harness::new();
    h.fake.insert(&node("a", &[], vec![]));
    h.fake.insert(&daemon_set("agent:1"));
    h.reconcile().await;
    let fail = |h: &Harness| {
        let mut pod = h.pods_on("a").remove(0);
        pod.status = Some(PodStatus {
            phase: Some("Failed".into()),
            ..Default::default()
        });
        h.fake.insert(&pod);
        pod.metadata.name.unwrap_or_default()
    };

    let failed = fail(&h);
    h.reconcile().await;
    let event = h
        .fake
        .events()
        .into_iter()
        .find(|e| e.reason == "FailedDaemonPod")
        .expect("event");
    assert_eq!(event.event_type, EventType::Warning);
    assert_eq!(
        event.message,
        format!("Found failed daemon pod default/{failed} on node a, will try to kill it")
    );
    assert!(h.pods_on("a").is_empty());
    h.reconcile().await;
    assert_eq!(h.pods_on("a").len(), 1, "recreated");

    // Failing again at once: held back for the backoff, then deleted.
    fail(&h);
    h.fake.clear_writes();
    let action = h.reconcile().await;
    assert_eq!(h.deletes(), 0);
    assert!(matches!(action, Action::RequeueAfter(d) if d <= Duration::from_secs(1)));
    h.fake.advance(Duration::from_secs(1));
    h.reconcile().await;
    assert_eq!(h.deletes(), 1);
}

#[tokio::test]
async fn duplicate_pods_on_a_node_keep_the_oldest() {
    let h = Harness::new();
    h.fake.insert(&node("a", &[], vec![]));
    h.fake.insert(&daemon_set("agent:1"));
    h.reconcile().await;
    let first = h.pods_on("a")[0].clone();
    h.fake.advance(Duration::from_secs(5));
    let mut twin = first.clone();
    twin.metadata.name = Some("agent-twin".into());
    twin.metadata.uid = None;
    twin.metadata.creation_timestamp = None;
    h.fake.insert(&twin);

    h.reconcile().await;
    let left = h.pods_on("a");
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].metadata.name, first.metadata.name);
}

#[tokio::test]
async fn rolling_update_stays_within_max_unavailable() {
    let h = Harness::new();
    for name in ["a", "b", "c", "d"] {
        h.fake.insert(&node(name, &[], vec![]));
    }
    h.fake
        .insert(&with_rolling_update(daemon_set("agent:1"), 1, 0));
    h.reconcile().await;
    h.run_all();
    h.reconcile().await;
    let old_hash = hash_of(&h.pods()[0]);

    h.update_spec(|spec| {
        if let Some(pod) = spec.template.spec.as_mut() {
            pod.containers[0].image = Some("agent:2".into());
        }
    });
    h.fake.clear_writes();
    h.reconcile().await;
    assert_eq!(h.deletes(), 1, "one node at a time");
    assert_eq!(h.creates(), 0, "the placement pass refills it next time");

    h.fake.clear_writes();
    h.reconcile().await;
    assert_eq!(h.creates(), 1);
    let new_hash = h
        .pods()
        .iter()
        .map(hash_of)
        .find(|x| *x != old_hash)
        .expect("new pod");
    h.fake.clear_writes();
    h.reconcile().await;
    assert_eq!(h.deletes(), 0, "waits for the new pod to be available");
    let status = h.status();
    assert_eq!(status.updated_number_scheduled, Some(1));
    assert_eq!(status.number_unavailable, Some(1));

    for _ in 0..10 {
        h.run_all();
        h.reconcile().await;
    }
    let pods = h.pods();
    assert_eq!(pods.len(), 4);
    assert!(pods.iter().all(|p| hash_of(p) == new_hash));
    let status = h.status();
    assert_eq!(status.updated_number_scheduled, Some(4));
    assert_eq!(status.number_available, Some(4));
    assert_eq!(status.observed_generation, Some(2));
}

#[tokio::test]
async fn rolling_update_with_two_unavailable_replaces_two_at_once() {
    let h = Harness::new();
    for name in ["a", "b", "c"] {
        h.fake.insert(&node(name, &[], vec![]));
    }
    h.fake
        .insert(&with_rolling_update(daemon_set("agent:1"), 2, 0));
    h.reconcile().await;
    h.run_all();
    h.update_spec(|spec| {
        if let Some(pod) = spec.template.spec.as_mut() {
            pod.containers[0].image = Some("agent:2".into());
        }
    });
    h.fake.clear_writes();
    h.reconcile().await;
    assert_eq!(h.deletes(), 2);
}

#[tokio::test]
async fn surge_starts_the_new_pod_before_removing_the_old() {
    let h = Harness::new();
    h.fake.insert(&node("a", &[], vec![]));
    h.fake.insert(&node("b", &[], vec![]));
    h.fake
        .insert(&with_rolling_update(daemon_set("agent:1"), 0, 1));
    h.reconcile().await;
    h.run_all();
    h.update_spec(|spec| {
        if let Some(pod) = spec.template.spec.as_mut() {
            pod.containers[0].image = Some("agent:2".into());
        }
    });
    h.fake.clear_writes();
    h.reconcile().await;
    assert_eq!((h.creates(), h.deletes()), (1, 0));
    assert_eq!(h.pods_on("a").len(), 2, "old and new side by side");

    h.fake.clear_writes();
    h.reconcile().await;
    assert_eq!(
        (h.creates(), h.deletes()),
        (0, 0),
        "new pod not available yet"
    );

    h.run_all();
    h.reconcile().await;
    assert_eq!(
        h.pods_on("a").len(),
        1,
        "the old pod goes once the new one is available"
    );
    h.reconcile().await;
    assert_eq!(h.pods_on("b").len(), 2, "then the next node surges");
}

#[tokio::test]
async fn on_delete_leaves_old_pods_alone() {
    let h = Harness::new();
    h.fake.insert(&node("a", &[], vec![]));
    let mut ds = daemon_set("agent:1");
    if let Some(spec) = ds.spec.as_mut() {
        spec.update_strategy = Some(DaemonSetUpdateStrategy {
            type_: Some("OnDelete".into()),
            rolling_update: None,
        });
    }
    h.fake.insert(&ds);
    h.reconcile().await;
    h.run_all();
    h.update_spec(|spec| {
        if let Some(pod) = spec.template.spec.as_mut() {
            pod.containers[0].image = Some("agent:2".into());
        }
    });
    h.fake.clear_writes();
    h.reconcile().await;
    assert_eq!(h.deletes(), 0);
    assert_eq!(h.status().updated_number_scheduled, Some(0));
    assert_eq!(h.fake.all::<ControllerRevision>().len(), 2);
}

#[tokio::test]
async fn status_reports_scheduled_ready_and_available_pods() {
    let h = Harness::new();
    h.fake.insert(&node("a", &[], vec![]));
    h.fake.insert(&node("b", &[], vec![]));
    let mut ds = daemon_set("agent:1");
    if let Some(spec) = ds.spec.as_mut() {
        spec.min_ready_seconds = Some(10);
    }
    h.fake.insert(&ds);
    h.reconcile().await;
    assert_eq!(
        h.status().current_number_scheduled,
        0,
        "counted from what was read"
    );
    h.reconcile().await;
    let status = h.status();
    assert_eq!(status.desired_number_scheduled, 2);
    assert_eq!(status.current_number_scheduled, 2);
    assert_eq!(status.number_ready, 0);
    assert_eq!(status.number_unavailable, Some(2));
    assert_eq!(status.updated_number_scheduled, Some(2));
    assert_eq!(status.observed_generation, Some(1));

    h.run_all();
    let action = h.reconcile().await;
    assert_eq!(action, Action::RequeueAfter(Duration::from_secs(10)));
    assert_eq!(h.status().number_ready, 2);
    assert_eq!(h.status().number_available, Some(0));
    h.fake.advance(Duration::from_secs(10));
    assert_eq!(h.reconcile().await, Action::Done);
    assert_eq!(h.status().number_available, Some(2));
    assert_eq!(h.status().number_unavailable, Some(0));
}

#[tokio::test]
async fn old_revisions_are_truncated_to_the_history_limit() {
    let h = Harness::new();
    h.fake.insert(&node("a", &[], vec![]));
    let mut ds = daemon_set("agent:1");
    if let Some(spec) = ds.spec.as_mut() {
        spec.revision_history_limit = Some(1);
    }
    h.fake.insert(&ds);
    for version in 2..=4 {
        h.reconcile().await;
        h.run_all();
        h.update_spec(|spec| {
            if let Some(pod) = spec.template.spec.as_mut() {
                pod.containers[0].image = Some(format!("agent:{version}"));
            }
        });
    }
    for _ in 0..4 {
        h.reconcile().await;
        h.run_all();
    }
    let mut numbers: Vec<i64> = h
        .fake
        .all::<ControllerRevision>()
        .iter()
        .map(|r| r.revision)
        .collect();
    numbers.sort();
    assert_eq!(numbers, vec![3, 4], "the current revision and one old one");
}

#[tokio::test]
async fn an_empty_selector_is_refused_with_an_event() {
    let h = Harness::new();
    h.fake.insert(&node("a", &[], vec![]));
    let mut ds = daemon_set("agent:1");
    if let Some(spec) = ds.spec.as_mut() {
        spec.selector = LabelSelector::default();
    }
    h.fake.insert(&ds);
    h.reconcile().await;
    assert!(h.pods().is_empty());
    assert!(h.fake.events().iter().any(|e| e.reason == "SelectingAll"));
}

#[tokio::test]
async fn a_refused_create_is_reported_and_retried() {
    let h = Harness::new();
    h.fake.insert(&node("a", &[], vec![]));
    h.fake.insert(&node("b", &[], vec![]));
    h.fake.insert(&daemon_set("agent:1"));
    h.fake.fail_writes_of("Pod", 500);
    let result = h
        .controller
        .reconcile(&Key::new(Some("default"), "agent"), &h.ctx)
        .await;
    assert!(result.is_err(), "the runner retries with backoff");
    let failed: Vec<_> = h
        .fake
        .events()
        .into_iter()
        .filter(|e| e.reason == "FailedCreate")
        .collect();
    assert_eq!(failed.len(), 1, "creation stops at the first failure");
    assert!(failed[0].message.starts_with("Error creating: "));
    h.fake.fail_writes_of("Pod", 0);
    h.reconcile().await;
    assert_eq!(h.pods().len(), 2);
}
