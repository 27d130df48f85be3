//! The test harness shared by the Deployment controller's tests (a FakeBackend, a stand-in for
//! the ReplicaSet controller, user edits) and the tests of the reconcile's entry points.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, ReplicaSet, ReplicaSetStatus,
    RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{Container, Pod, PodSpec, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::*;
use crate::controllers::context::{Backend, EventType};
use crate::controllers::deployment_history::{HASH_LABEL, REVISION};
use crate::controllers::fake::{FakeBackend, Write};
use crate::controllers::reconciler::ControllerRef;

pub(crate) const NS: &str = "default";

pub(crate) fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A pod template running `image`, labelled app=web.
pub(crate) fn template(image: &str) -> PodTemplateSpec {
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(labels(&[("app", "web")])),
            ..Default::default()
        }),
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "web".into(),
                image: Some(image.into()),
                ..Default::default()
            }],
            ..Default::default()
        }),
    }
}

/// A rolling update strategy with these bounds.
pub(crate) fn rolling(surge: IntOrString, unavailable: IntOrString) -> DeploymentStrategy {
    DeploymentStrategy {
        type_: Some("RollingUpdate".into()),
        rolling_update: Some(RollingUpdateDeployment {
            max_surge: Some(surge),
            max_unavailable: Some(unavailable),
        }),
    }
}

/// Deployment "web" (generation 1) with `replicas` of nginx:1.0 and the API's defaults.
pub(crate) fn web(replicas: i32) -> Deployment {
    Deployment {
        metadata: ObjectMeta {
            name: Some("web".into()),
            namespace: Some(NS.into()),
            uid: Some("uid-web".into()),
            generation: Some(1),
            ..Default::default()
        },
        spec: Some(DeploymentSpec {
            replicas: Some(replicas),
            selector: LabelSelector {
                match_labels: Some(labels(&[("app", "web")])),
                ..Default::default()
            },
            template: template("nginx:1.0"),
            strategy: Some(rolling(
                IntOrString::String("25%".into()),
                IntOrString::String("25%".into()),
            )),
            revision_history_limit: Some(10),
            progress_deadline_seconds: Some(600),
            ..Default::default()
        }),
        status: None,
    }
}

/// A FakeBackend holding fixtures, driven like the real runner would drive the controller.
pub(crate) struct Harness {
    pub fake: Arc<FakeBackend>,
    pub ctx: Ctx,
}

impl Harness {
    pub fn with(deployment: &Deployment) -> Harness {
        let fake = Arc::new(FakeBackend::new());
        fake.insert(deployment);
        let ctx = Ctx::new(fake.clone() as Arc<dyn Backend>, DEPLOYMENT_CONTROLLER);
        Harness { fake, ctx }
    }

    pub async fn reconcile(&self) -> Action {
        DeploymentController::new()
            .reconcile(&Key::new(Some(NS), "web"), &self.ctx)
            .await
            .expect("reconcile succeeds")
    }

    pub fn deployment(&self) -> Deployment {
        self.fake.get(Some(NS), "web").expect("deployment stored")
    }

    pub fn status(&self) -> k8s_openapi::api::apps::v1::DeploymentStatus {
        self.deployment().status.unwrap_or_default()
    }

    /// The condition of `type_`: (status, reason, message).
    pub fn condition(&self, type_: &str) -> Option<(String, String, String)> {
        self.status()
            .conditions
            .unwrap_or_default()
            .into_iter()
            .find(|c| c.type_ == type_)
            .map(|c| {
                (
                    c.status,
                    c.reason.unwrap_or_default(),
                    c.message.unwrap_or_default(),
                )
            })
    }

    /// Every stored ReplicaSet, oldest first.
    pub fn rss(&self) -> Vec<ReplicaSet> {
        let mut all = self.fake.all::<ReplicaSet>();
        all.sort_by(crate::controllers::deployment_history::by_creation);
        all
    }

    pub fn rs(&self, name: &str) -> ReplicaSet {
        self.fake.get(Some(NS), name).expect("replica set stored")
    }

    /// The ReplicaSet running `image`.
    pub fn rs_running(&self, image: &str) -> ReplicaSet {
        self.rss()
            .into_iter()
            .find(|rs| {
                let spec = rs
                    .spec
                    .as_ref()
                    .and_then(|s| s.template.as_ref())
                    .and_then(|t| t.spec.as_ref());
                spec.is_some_and(|s| s.containers[0].image.as_deref() == Some(image))
            })
            .expect("replica set for image")
    }

    /// Plays the ReplicaSet controller: `rs` runs `replicas` pods of which `available` are
    /// ready and available, and has observed its spec.
    pub fn set_rs_status(&self, name: &str, replicas: i32, available: i32) {
        let mut rs = self.rs(name);
        rs.status = Some(ReplicaSetStatus {
            replicas,
            ready_replicas: Some(available),
            available_replicas: Some(available),
            fully_labeled_replicas: Some(replicas),
            observed_generation: rs.metadata.generation,
            conditions: None,
        });
        self.fake.insert(&rs);
    }

    /// Every ReplicaSet runs exactly its spec.replicas, all available.
    pub fn settle(&self) {
        for rs in self.rss() {
            let size = spec_replicas(&rs);
            self.set_rs_status(&rs_name(&rs), size, size);
        }
    }

    /// A user edit of the spec (generation bumped), ten seconds after the last one so new
    /// ReplicaSets are ordered by creation.
    pub fn edit(&self, change: impl FnOnce(&mut DeploymentSpec)) {
        self.fake.advance(Duration::from_secs(10));
        let mut deployment = self.deployment();
        if let Some(spec) = deployment.spec.as_mut() {
            change(spec);
        }
        deployment.metadata.generation = deployment.metadata.generation.map(|g| g + 1);
        self.fake.insert(&deployment);
    }

    /// The messages of the Events recorded, in order.
    pub fn events(&self) -> Vec<String> {
        self.fake.events().into_iter().map(|e| e.message).collect()
    }

    /// The writes made since the last call (the Events are forgotten too).
    pub fn take_writes(&self) -> Vec<Write> {
        let writes = self.fake.writes();
        self.fake.clear_writes();
        writes
    }
}

fn annotation(meta: &ObjectMeta, key: &str) -> Option<String> {
    meta.annotations.as_ref()?.get(key).cloned()
}

#[tokio::test]
async fn first_rollout_creates_one_replica_set_at_revision_1() {
    let mut deployment = web(3);
    deployment.metadata.annotations = Some(labels(&[
        ("kubernetes.io/change-cause", "first"),
        ("kubectl.kubernetes.io/last-applied-configuration", "{}"),
    ]));
    let h = Harness::with(&deployment);
    h.reconcile().await;
    let events = h.fake.events();

    let creates: Vec<Write> = h
        .take_writes()
        .into_iter()
        .filter(|w| matches!(w, Write::Create(..)))
        .collect();
    assert_eq!(creates.len(), 1);
    let rs = &h.rss()[0];
    let hash = pods::template_hash(&template("nginx:1.0"), None);
    assert_eq!(
        rs.metadata.name.as_deref(),
        Some(format!("web-{hash}").as_str())
    );
    let expected = labels(&[("app", "web"), (HASH_LABEL, &hash)]);
    assert_eq!(rs.metadata.labels.as_ref(), Some(&expected));
    let spec = rs.spec.as_ref().unwrap();
    assert_eq!(spec.replicas, Some(3));
    assert_eq!(spec.selector.match_labels.as_ref(), Some(&expected));
    let template_labels = spec
        .template
        .as_ref()
        .unwrap()
        .metadata
        .as_ref()
        .unwrap()
        .labels
        .as_ref();
    assert_eq!(template_labels, Some(&expected));
    let owner = controller_of(&rs.metadata).unwrap();
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str()),
        ("Deployment", "uid-web")
    );
    assert_eq!(owner.block_owner_deletion, Some(true));

    assert_eq!(annotation(&rs.metadata, REVISION).as_deref(), Some("1"));
    assert_eq!(
        annotation(&rs.metadata, "deployment.kubernetes.io/desired-replicas").as_deref(),
        Some("3")
    );
    assert_eq!(
        annotation(&rs.metadata, "deployment.kubernetes.io/max-replicas").as_deref(),
        Some("4")
    );
    assert_eq!(
        annotation(&rs.metadata, "kubernetes.io/change-cause").as_deref(),
        Some("first")
    );
    assert_eq!(
        annotation(
            &rs.metadata,
            "kubectl.kubernetes.io/last-applied-configuration"
        ),
        None
    );
    assert_eq!(
        annotation(&h.deployment().metadata, REVISION).as_deref(),
        Some("1")
    );
    // Writing the revision annotation is not a spec change.
    assert_eq!(h.deployment().metadata.generation, Some(1));

    assert_eq!(events.len(), 1);
    assert_eq!(events[0].reason, "ScalingReplicaSet");
    assert_eq!(events[0].event_type, EventType::Normal);
    assert_eq!(events[0].source, "deployment-controller");
    assert_eq!(events[0].involved.kind, "Deployment");
    assert_eq!(
        events[0].message,
        format!("Scaled up replica set web-{hash} from 0 to 3")
    );
}

#[tokio::test]
async fn scales_3_to_50_to_0_in_place() {
    let h = Harness::with(&web(3));
    h.reconcile().await;
    h.settle();
    h.reconcile().await;
    let name = rs_name(&h.rss()[0]);
    h.fake.clear_writes();

    h.edit(|spec| spec.replicas = Some(50));
    h.reconcile().await;
    assert_eq!(h.rss().len(), 1);
    let rs = h.rs(&name);
    assert_eq!(spec_replicas(&rs), 50);
    assert_eq!(
        annotation(&rs.metadata, "deployment.kubernetes.io/desired-replicas").as_deref(),
        Some("50")
    );
    // 25% of 50 is 12.5, rounded up.
    assert_eq!(
        annotation(&rs.metadata, "deployment.kubernetes.io/max-replicas").as_deref(),
        Some("63")
    );
    h.settle();
    h.reconcile().await;
    assert_eq!(h.status().available_replicas, Some(50));

    h.edit(|spec| spec.replicas = Some(0));
    h.reconcile().await;
    assert_eq!(spec_replicas(&h.rs(&name)), 0);
    h.settle();
    h.reconcile().await;
    assert_eq!(
        h.events(),
        vec![
            format!("Scaled up replica set {name} from 3 to 50"),
            format!("Scaled down replica set {name} from 50 to 0"),
        ]
    );
    let status = h.status();
    assert_eq!((status.replicas, status.available_replicas), (None, None));
    assert_eq!(status.observed_generation, Some(3));
    assert_eq!(h.rss().len(), 1);
}

#[tokio::test]
async fn a_missing_deployment_is_done() {
    let h = Harness::with(&web(1));
    h.fake.remove::<Deployment>(Some(NS), "web");
    assert_eq!(h.reconcile().await, Action::Done);
    assert!(h.fake.writes().is_empty());
}

#[tokio::test]
async fn a_deployment_being_deleted_is_left_alone() {
    let mut deployment = web(3);
    deployment.metadata.deletion_timestamp = Some(Time(fake_now()));
    let h = Harness::with(&deployment);
    assert_eq!(h.reconcile().await, Action::Done);
    assert!(h.fake.writes().is_empty());
    assert!(h.fake.events().is_empty());
}

fn fake_now() -> k8s_openapi::chrono::DateTime<k8s_openapi::chrono::Utc> {
    FakeBackend::new().now()
}

#[tokio::test]
async fn an_empty_selector_is_refused_with_a_warning() {
    let mut deployment = web(3);
    deployment.spec.as_mut().unwrap().selector = LabelSelector::default();
    let h = Harness::with(&deployment);
    h.reconcile().await;
    assert!(h.rss().is_empty());
    let events = h.fake.events();
    assert_eq!(events[0].event_type, EventType::Warning);
    assert_eq!(events[0].reason, "SelectingAll");
    assert_eq!(h.status().observed_generation, Some(1));
}

#[tokio::test]
async fn replica_sets_of_another_controller_are_not_touched() {
    let h = Harness::with(&web(2));
    let mut stray = ReplicaSet {
        metadata: ObjectMeta {
            name: Some("stray".into()),
            namespace: Some(NS.into()),
            labels: Some(labels(&[("app", "web")])),
            ..Default::default()
        },
        spec: Some(k8s_openapi::api::apps::v1::ReplicaSetSpec {
            replicas: Some(4),
            template: Some(template("other")),
            ..Default::default()
        }),
        status: None,
    };
    stray.metadata.owner_references = Some(vec![
        k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
            api_version: "apps/v1".into(),
            kind: "Deployment".into(),
            name: "other".into(),
            uid: "uid-other".into(),
            controller: Some(true),
            ..Default::default()
        },
    ]);
    h.fake.insert(&stray);
    h.reconcile().await;
    assert_eq!(spec_replicas(&h.rs("stray")), 4);
    assert_eq!(h.rss().len(), 2);
}

fn change(
    kind: TypeRef,
    name: &str,
    controller: Option<(&str, &str)>,
    deleted: bool,
) -> WatchedChange {
    WatchedChange {
        kind,
        namespace: Some(NS.into()),
        name: name.into(),
        labels: BTreeMap::new(),
        previous_labels: None,
        controller: controller.map(|(kind, name)| ControllerRef {
            kind: kind.into(),
            name: name.into(),
        }),
        previous_controller: None,
        node_name: None,
        previous_node_name: None,
        deleted,
    }
}

#[tokio::test]
async fn watched_changes_map_to_the_deployment() {
    let mut deployment = web(1);
    deployment.spec.as_mut().unwrap().strategy = Some(DeploymentStrategy {
        type_: Some("Recreate".into()),
        rolling_update: None,
    });
    let h = Harness::with(&deployment);
    h.reconcile().await;
    let rs = rs_name(&h.rss()[0]);
    let controller = DeploymentController::new();
    let key = Key::new(Some(NS), "web");

    let rs_change = change(
        TypeRef::of::<ReplicaSet>(),
        &rs,
        Some(("Deployment", "web")),
        false,
    );
    assert_eq!(controller.keys_for(&rs_change, &h.ctx), vec![key.clone()]);
    let gone = change(
        TypeRef::of::<Pod>(),
        "web-abc",
        Some(("ReplicaSet", &rs)),
        true,
    );
    assert_eq!(controller.keys_for(&gone, &h.ctx), vec![key]);
    // Pod updates reach the deployment through its ReplicaSet's status instead.
    let updated = change(
        TypeRef::of::<Pod>(),
        "web-abc",
        Some(("ReplicaSet", &rs)),
        false,
    );
    assert!(controller.keys_for(&updated, &h.ctx).is_empty());

    // Only Recreate waits for pods to be gone.
    h.edit(|spec| spec.strategy = None);
    assert!(controller.keys_for(&gone, &h.ctx).is_empty());
}
