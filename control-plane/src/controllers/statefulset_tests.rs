use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{
    ControllerRevision, RollingUpdateStatefulSetStrategy, StatefulSetStatus,
    StatefulSetUpdateStrategy,
};
use k8s_openapi::api::core::v1::{
    Container, PersistentVolumeClaimSpec, PodCondition, PodSpec, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, Time};

use super::*;
use crate::controllers::context::Backend;
use crate::controllers::fake::{FakeBackend, Write};
use crate::controllers::stateful_pod::{POD_INDEX_LABEL, POD_NAME_LABEL};

fn labels(pairs: &[(&str, &str)]) -> Option<BTreeMap<String, String>> {
    Some(
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

fn stateful_set(replicas: i32, policy: Option<&str>) -> StatefulSet {
    StatefulSet {
        metadata: ObjectMeta {
            name: Some("web".into()),
            namespace: Some("default".into()),
            generation: Some(1),
            ..Default::default()
        },
        spec: Some(StatefulSetSpec {
            replicas: Some(replicas),
            service_name: Some("nginx".into()),
            pod_management_policy: policy.map(str::to_string),
            selector: LabelSelector {
                match_labels: labels(&[("app", "web")]),
                ..Default::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: labels(&[("app", "web")]),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![Container {
                        name: "nginx".into(),
                        image: Some("nginx:1".into()),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
            },
            update_strategy: Some(StatefulSetUpdateStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateStatefulSetStrategy {
                    partition: Some(0),
                    max_unavailable: None,
                }),
            }),
            ..Default::default()
        }),
        status: None,
    }
}

struct Harness {
    fake: Arc<FakeBackend>,
    ctx: Ctx,
    controller: StatefulSetReconciler,
}

impl Harness {
    fn new(set: StatefulSet) -> Harness {
        let fake = Arc::new(FakeBackend::new());
        fake.insert(&set);
        let ctx = Ctx::new(fake.clone() as Arc<dyn Backend>, "statefulset-controller");
        Harness {
            fake,
            ctx,
            controller: StatefulSetReconciler::new(),
        }
    }

    async fn reconcile(&self) -> Action {
        self.controller
            .reconcile(&Key::new(Some("default"), "web"), &self.ctx)
            .await
            .expect("reconcile succeeds")
    }

    fn update_spec(&self, change: impl FnOnce(&mut StatefulSetSpec)) {
        let mut set: StatefulSet = self.fake.get(Some("default"), "web").expect("set stored");
        change(set.spec.as_mut().expect("spec"));
        set.metadata.generation = set.metadata.generation.map(|g| g + 1);
        self.fake.insert(&set);
    }

    fn set_image(&self, image: &str) {
        self.update_spec(|spec| {
            if let Some(pod) = spec.template.spec.as_mut() {
                pod.containers[0].image = Some(image.into());
            }
        });
    }

    fn pod_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .fake
            .all::<Pod>()
            .into_iter()
            .filter_map(|p| p.metadata.name)
            .collect();
        names.sort();
        names
    }

    fn pod(&self, name: &str) -> Pod {
        self.fake.get(Some("default"), name).expect("pod exists")
    }

    /// The kubelet reports the pod `phase`, Ready when Running.
    fn set_phase(&self, name: &str, phase: &str) {
        let mut pod = self.pod(name);
        pod.status = Some(PodStatus {
            phase: Some(phase.into()),
            conditions: (phase == "Running").then(|| {
                vec![PodCondition {
                    type_: "Ready".into(),
                    status: "True".into(),
                    last_transition_time: Some(Time(self.fake.now())),
                    ..Default::default()
                }]
            }),
            ..Default::default()
        });
        self.fake.insert(&pod);
    }

    fn run_all(&self) {
        for name in self.pod_names() {
            if !pods::is_ready(&self.pod(&name)) {
                self.set_phase(&name, "Running");
            }
        }
    }

    fn status(&self) -> StatefulSetStatus {
        let set: StatefulSet = self.fake.get(Some("default"), "web").expect("set stored");
        set.status.expect("status written")
    }

    fn deleted_pods(&self) -> Vec<String> {
        self.fake
            .writes()
            .into_iter()
            .filter_map(|w| match w {
                Write::Delete("Pod", name) => Some(name),
                _ => None,
            })
            .collect()
    }

    fn revision(&self, name: &str) -> String {
        revision_of(&self.pod(name)).unwrap_or_default().to_string()
    }
}

#[tokio::test]
async fn ordered_ready_creates_web_1_only_after_web_0_is_ready() {
    let h = Harness::new(stateful_set(3, None));
    h.reconcile().await;
    assert_eq!(h.pod_names(), vec!["web-0"]);
    let event = h
        .fake
        .events()
        .into_iter()
        .find(|e| e.reason == "SuccessfulCreate")
        .expect("event");
    assert_eq!(
        event.message,
        "create Pod web-0 in StatefulSet web successful"
    );
    assert_eq!(event.source, "statefulset-controller");

    let pod = h.pod("web-0");
    let pod_labels = pod.metadata.labels.clone().unwrap_or_default();
    assert_eq!(
        pod_labels.get(POD_NAME_LABEL).map(String::as_str),
        Some("web-0")
    );
    assert_eq!(
        pod_labels.get(POD_INDEX_LABEL).map(String::as_str),
        Some("0")
    );
    assert_eq!(pod_labels.get("app").map(String::as_str), Some("web"));
    let status = h.status();
    assert_eq!(
        pod_labels.get("controller-revision-hash"),
        status.update_revision.as_ref()
    );
    let spec = pod.spec.expect("spec");
    assert_eq!(spec.hostname.as_deref(), Some("web-0"));
    assert_eq!(spec.subdomain.as_deref(), Some("nginx"));

    h.fake.clear_writes();
    h.reconcile().await;
    assert_eq!(h.pod_names(), vec!["web-0"], "web-0 is still Pending");
    assert!(h.fake.writes().iter().all(|w| w.kind() != "Pod"));

    h.set_phase("web-0", "Running");
    h.reconcile().await;
    assert_eq!(h.pod_names(), vec!["web-0", "web-1"]);
    h.set_phase("web-1", "Running");
    h.reconcile().await;
    h.set_phase("web-2", "Running");
    h.reconcile().await;
    let status = h.status();
    assert_eq!(status.replicas, 3);
    assert_eq!(status.ready_replicas, Some(3));
    assert_eq!(status.available_replicas, Some(3));
    assert_eq!(status.current_replicas, Some(3));
    assert_eq!(status.updated_replicas, Some(3));
    assert_eq!(status.current_revision, status.update_revision);
    assert_eq!(status.observed_generation, Some(1));
    assert_eq!(status.collision_count, Some(0));
}

#[tokio::test]
async fn parallel_creates_all_pods_at_once() {
    let h = Harness::new(stateful_set(3, Some("Parallel")));
    h.reconcile().await;
    assert_eq!(h.pod_names(), vec!["web-0", "web-1", "web-2"]);
}

#[tokio::test]
async fn scales_down_from_the_highest_ordinal_one_at_a_time() {
    let h = Harness::new(stateful_set(3, None));
    for _ in 0..3 {
        h.reconcile().await;
        h.run_all();
    }
    assert_eq!(h.pod_names().len(), 3);
    h.update_spec(|spec| spec.replicas = Some(1));

    // web-2 is being deleted (its node stops it): nothing else goes meanwhile.
    let mut web2 = h.pod("web-2");
    web2.metadata.deletion_timestamp = Some(Time(h.fake.now()));
    h.fake.insert(&web2);
    h.fake.clear_writes();
    h.reconcile().await;
    assert!(h.deleted_pods().is_empty());

    h.fake.remove::<Pod>(Some("default"), "web-2");
    h.reconcile().await;
    assert_eq!(h.deleted_pods(), vec!["default/web-1"]);
    assert!(h
        .fake
        .events()
        .iter()
        .any(|e| e.reason == "SuccessfulDelete"
            && e.message == "delete Pod web-1 in StatefulSet web successful"));
    h.reconcile().await;
    assert_eq!(h.pod_names(), vec!["web-0"]);
    assert_eq!(h.status().replicas, 1);
}

#[tokio::test]
async fn parallel_scale_down_deletes_all_condemned_pods() {
    let h = Harness::new(stateful_set(3, Some("Parallel")));
    h.reconcile().await;
    h.update_spec(|spec| spec.replicas = Some(0));
    h.reconcile().await;
    assert!(h.pod_names().is_empty());
}

#[tokio::test]
async fn failed_pods_are_deleted_and_recreated() {
    let h = Harness::new(stateful_set(2, None));
    for _ in 0..2 {
        h.reconcile().await;
        h.run_all();
    }
    h.set_phase("web-1", "Failed");
    h.fake.clear_writes();
    h.reconcile().await;
    let events = h.fake.events();
    assert!(events.iter().any(|e| e.reason == "RecreatingFailedPod"
        && e.message == "StatefulSet default/web is recreating failed Pod web-1"));
    assert_eq!(h.deleted_pods(), vec!["default/web-1"]);
    assert_eq!(h.pod_names(), vec!["web-0", "web-1"]);
    assert_eq!(pods::phase(&h.pod("web-1")), "Pending", "a new pod");
}

#[tokio::test]
async fn creates_claims_from_volume_claim_templates() {
    let mut set = stateful_set(1, None);
    if let Some(spec) = set.spec.as_mut() {
        spec.volume_claim_templates = Some(vec![PersistentVolumeClaim {
            metadata: ObjectMeta {
                name: Some("www".into()),
                ..Default::default()
            },
            spec: Some(PersistentVolumeClaimSpec {
                access_modes: Some(vec!["ReadWriteOnce".into()]),
                ..Default::default()
            }),
            status: None,
        }]);
    }
    let h = Harness::new(set);
    h.reconcile().await;
    let claim: PersistentVolumeClaim = h
        .fake
        .get(Some("default"), "www-web-0")
        .expect("claim created");
    assert_eq!(claim.metadata.labels, labels(&[("app", "web")]));
    let volumes = h
        .pod("web-0")
        .spec
        .and_then(|s| s.volumes)
        .unwrap_or_default();
    assert_eq!(volumes[0].name, "www");
    assert_eq!(
        volumes[0]
            .persistent_volume_claim
            .as_ref()
            .map(|c| c.claim_name.as_str()),
        Some("www-web-0")
    );
    let kinds: Vec<&str> = h
        .fake
        .writes()
        .iter()
        .map(Write::kind)
        .filter(|k| *k != "ControllerRevision")
        .collect();
    assert_eq!(
        &kinds[..2],
        &["PersistentVolumeClaim", "Pod"],
        "claims before the pod"
    );
}

#[tokio::test]
async fn an_api_without_claims_gets_one_warning_and_pods_anyway() {
    let mut set = stateful_set(2, Some("Parallel"));
    if let Some(spec) = set.spec.as_mut() {
        spec.volume_claim_templates = Some(vec![PersistentVolumeClaim {
            metadata: ObjectMeta {
                name: Some("www".into()),
                ..Default::default()
            },
            ..Default::default()
        }]);
    }
    let h = Harness::new(set);
    h.fake.fail_writes_of("PersistentVolumeClaim", 404);
    h.reconcile().await;
    assert_eq!(h.pod_names(), vec!["web-0", "web-1"]);
    let warnings: Vec<_> = h
        .fake
        .events()
        .into_iter()
        .filter(|e| e.reason == "FailedCreate")
        .collect();
    assert_eq!(warnings.len(), 1);
    assert!(warnings[0]
        .message
        .starts_with("create Claim www-web-0 for Pod web-0 in StatefulSet web failed error:"));
}

#[tokio::test]
async fn rolling_update_respects_the_partition_highest_first() {
    let mut set = stateful_set(3, None);
    if let Some(rolling) = set
        .spec
        .as_mut()
        .and_then(|s| s.update_strategy.as_mut())
        .and_then(|u| u.rolling_update.as_mut())
    {
        rolling.partition = Some(1);
    }
    let h = Harness::new(set);
    for _ in 0..3 {
        h.reconcile().await;
        h.run_all();
    }
    h.reconcile().await;
    let old = h.status().current_revision.expect("current revision");
    h.set_image("nginx:2");

    h.fake.clear_writes();
    h.reconcile().await;
    assert_eq!(h.deleted_pods(), vec!["default/web-2"]);
    let update = h.status().update_revision.expect("update revision");
    assert_ne!(update, old);

    h.reconcile().await;
    assert_eq!(
        h.revision("web-2"),
        update,
        "recreated at the update revision"
    );
    h.fake.clear_writes();
    h.reconcile().await;
    assert!(h.deleted_pods().is_empty(), "waits for web-2 to be Ready");

    h.run_all();
    h.reconcile().await;
    assert_eq!(h.deleted_pods(), vec!["default/web-1"]);
    for _ in 0..3 {
        h.reconcile().await;
        h.run_all();
    }
    assert_eq!(h.revision("web-0"), old, "below the partition");
    assert_eq!(h.revision("web-1"), update);
    let status = h.status();
    assert_eq!(status.updated_replicas, Some(2));
    assert_eq!(status.current_replicas, Some(1));
    assert_eq!(status.current_revision, Some(old));
    assert_eq!(status.update_revision, Some(update.clone()));

    // Lowering the partition completes the rollout.
    h.update_spec(|spec| {
        if let Some(rolling) = spec
            .update_strategy
            .as_mut()
            .and_then(|u| u.rolling_update.as_mut())
        {
            rolling.partition = Some(0);
        }
    });
    for _ in 0..4 {
        h.reconcile().await;
        h.run_all();
    }
    let status = h.status();
    assert_eq!(status.current_revision, Some(update));
    assert_eq!(status.current_replicas, Some(3));
}

#[tokio::test]
async fn on_delete_updates_only_pods_the_user_deletes() {
    let mut set = stateful_set(2, None);
    if let Some(spec) = set.spec.as_mut() {
        spec.update_strategy = Some(StatefulSetUpdateStrategy {
            type_: Some("OnDelete".into()),
            rolling_update: None,
        });
    }
    let h = Harness::new(set);
    for _ in 0..2 {
        h.reconcile().await;
        h.run_all();
    }
    h.set_image("nginx:2");
    h.fake.clear_writes();
    h.reconcile().await;
    assert!(h.deleted_pods().is_empty());

    h.fake.remove::<Pod>(Some("default"), "web-1");
    h.reconcile().await;
    assert_eq!(Some(h.revision("web-1")), h.status().update_revision);
    assert_ne!(Some(h.revision("web-0")), h.status().update_revision);
}

#[tokio::test]
async fn revisions_are_numbered_reused_on_rollback_and_truncated() {
    let mut set = stateful_set(1, Some("Parallel"));
    if let Some(spec) = set.spec.as_mut() {
        spec.revision_history_limit = Some(1);
    }
    let h = Harness::new(set);
    h.reconcile().await;
    let first = h.status().update_revision.expect("revision");
    let revision: ControllerRevision = h.fake.get(Some("default"), &first).expect("stored");
    assert_eq!(revision.revision, 1);
    assert!(first.starts_with("web-"));

    h.set_image("nginx:2");
    h.reconcile().await;
    let second = h.status().update_revision.expect("revision");
    assert_ne!(second, first);

    h.set_image("nginx:1");
    h.reconcile().await;
    assert_eq!(
        h.status().update_revision,
        Some(first.clone()),
        "rollback reuses the revision"
    );
    let revision: ControllerRevision = h.fake.get(Some("default"), &first).expect("stored");
    assert_eq!(revision.revision, 3);

    for image in ["nginx:3", "nginx:4"] {
        h.set_image(image);
        for _ in 0..3 {
            h.reconcile().await;
            h.run_all();
        }
    }
    let mut numbers: Vec<i64> = h
        .fake
        .all::<ControllerRevision>()
        .iter()
        .map(|r| r.revision)
        .collect();
    numbers.sort();
    assert_eq!(numbers, vec![4, 5], "the live revision and one more");
}

#[tokio::test]
async fn waits_for_min_ready_seconds_before_the_next_pod() {
    let mut set = stateful_set(2, None);
    if let Some(spec) = set.spec.as_mut() {
        spec.min_ready_seconds = Some(30);
    }
    let h = Harness::new(set);
    h.reconcile().await;
    h.set_phase("web-0", "Running");
    let action = h.reconcile().await;
    assert_eq!(h.pod_names(), vec!["web-0"]);
    assert_eq!(action, Action::RequeueAfter(Duration::from_secs(30)));
    h.fake.advance(Duration::from_secs(30));
    h.reconcile().await;
    assert_eq!(h.pod_names(), vec!["web-0", "web-1"]);
}
