use k8s_openapi::api::apps::v1::ReplicaSetStatus;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::*;
use crate::controllers::context::controller_ref;
use crate::controllers::deployment::tests::{labels, rolling, template, web, Harness, NS};
use crate::controllers::deployment::DeploymentController;
use crate::controllers::fake::Write;
use crate::controllers::reconciler::{Key, Reconciler};

fn annotation_of(rs: &ReplicaSet, key: &str) -> Option<String> {
    annotation(&rs.metadata, key).map(str::to_string)
}

/// Rolls "web" out at nginx:1.0, then nginx:2.0, to completion.
async fn two_revisions() -> Harness {
    let mut deployment = web(1);
    deployment.spec.as_mut().unwrap().strategy =
        Some(rolling(IntOrString::Int(1), IntOrString::Int(0)));
    let h = Harness::with(&deployment);
    h.reconcile().await;
    h.settle();
    h.reconcile().await;
    h.edit(|spec| spec.template = template("nginx:2.0"));
    for _ in 0..4 {
        h.reconcile().await;
        h.settle();
    }
    h
}

#[tokio::test]
async fn rollout_undo_reuses_the_old_replica_set_with_the_next_revision() {
    let h = two_revisions().await;
    let first = h.rs_running("nginx:1.0");
    assert_eq!(spec_replicas(&first), 0);
    assert_eq!(
        annotation_of(&h.rs_running("nginx:2.0"), REVISION).as_deref(),
        Some("2")
    );
    h.take_writes();

    // kubectl rollout undo: the old ReplicaSet's template, without its hash label.
    let mut restored = first.spec.clone().unwrap().template.unwrap();
    restored
        .metadata
        .as_mut()
        .unwrap()
        .labels
        .as_mut()
        .unwrap()
        .remove(HASH_LABEL);
    h.edit(|spec| spec.template = restored);
    h.reconcile().await;

    assert!(!h
        .take_writes()
        .iter()
        .any(|w| matches!(w, Write::Create(..))));
    assert_eq!(h.rss().len(), 2);
    let first = h.rs(&rs_name(&first));
    assert_eq!(annotation_of(&first, REVISION).as_deref(), Some("3"));
    assert_eq!(
        annotation_of(&first, REVISION_HISTORY).as_deref(),
        Some("1")
    );
    assert_eq!(spec_replicas(&first), 1);
    let deployment = h.deployment();
    assert_eq!(annotation(&deployment.metadata, REVISION), Some("3"));
}

#[test]
fn revision_history_appends_and_stays_bounded() {
    let deployment = web(1);
    let mut rs = ReplicaSet::default();
    rs.metadata.annotations = Some(labels(&[(REVISION, "3"), (REVISION_HISTORY, "1")]));
    assert!(set_new_rs_annotations(&deployment, &mut rs, 5));
    assert_eq!(annotation_of(&rs, REVISION).as_deref(), Some("5"));
    assert_eq!(annotation_of(&rs, REVISION_HISTORY).as_deref(), Some("1,3"));
    // Already the newest: nothing to record.
    assert!(!set_new_rs_annotations(&deployment, &mut rs, 5));

    let long: Vec<String> = (0..600).map(|n| n.to_string()).collect();
    rs.metadata.annotations = Some(labels(&[
        (REVISION, "1000"),
        (REVISION_HISTORY, &long.join(",")),
    ]));
    set_new_rs_annotations(&deployment, &mut rs, 1001);
    let history = annotation_of(&rs, REVISION_HISTORY).unwrap();
    assert!(history.len() <= MAX_HISTORY_CHARS);
    assert!(history.ends_with(",599,1000"));
}

#[test]
fn the_new_replica_set_is_found_regardless_of_hash_label_and_empty_fields() {
    let mut with_hash = template("nginx:1.0");
    let meta = with_hash.metadata.as_mut().unwrap();
    meta.labels
        .as_mut()
        .unwrap()
        .insert(HASH_LABEL.into(), "abc".into());
    meta.annotations = Some(Default::default());
    let rs = |name: &str, template| ReplicaSet {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        spec: Some(ReplicaSetSpec {
            template: Some(template),
            ..Default::default()
        }),
        status: None,
    };
    let (new, old) = split_new_and_old(
        &template("nginx:1.0"),
        vec![rs("a", template("nginx:0.9")), rs("b", with_hash)],
    );
    assert_eq!(new.map(|rs| rs_name(&rs)).as_deref(), Some("b"));
    assert_eq!(old.len(), 1);
}

fn old_rs(h: &Harness, name: &str, revision: &str, size: i32) -> ReplicaSet {
    let deployment = h.deployment();
    let rs = ReplicaSet {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(NS.into()),
            labels: Some(labels(&[("app", "web"), (HASH_LABEL, name)])),
            annotations: Some(labels(&[(REVISION, revision)])),
            owner_references: Some(vec![controller_ref(&deployment)]),
            generation: Some(1),
            ..Default::default()
        },
        spec: Some(ReplicaSetSpec {
            replicas: Some(0),
            selector: LabelSelector {
                match_labels: Some(labels(&[("app", "web"), (HASH_LABEL, name)])),
                ..Default::default()
            },
            template: Some(template(name)),
            ..Default::default()
        }),
        status: Some(ReplicaSetStatus {
            replicas: size,
            observed_generation: Some(1),
            ..Default::default()
        }),
    };
    h.fake.insert(&rs)
}

#[tokio::test]
async fn history_beyond_the_limit_is_deleted_oldest_first() {
    let mut deployment = web(1);
    deployment.spec.as_mut().unwrap().revision_history_limit = Some(2);
    let h = Harness::with(&deployment);
    // Created newest first, so deletion follows revisions rather than age.
    old_rs(&h, "r4", "4", 0);
    old_rs(&h, "r3", "3", 0);
    old_rs(&h, "r2", "2", 0);
    old_rs(&h, "r1", "1", 0);
    h.reconcile().await;
    h.settle();
    // r2's last scale-down is not yet observed by the ReplicaSet controller.
    let mut r2 = h.rs("r2");
    r2.metadata.generation = Some(2);
    h.fake.insert(&r2);
    h.reconcile().await;
    assert!(
        !h.take_writes()
            .iter()
            .any(|w| matches!(w, Write::Delete(..))),
        "not before complete"
    );
    // Complete as the stored status says: history goes now.
    h.reconcile().await;
    let deleted: Vec<String> = h
        .take_writes()
        .into_iter()
        .filter_map(|w| match w {
            Write::Delete("ReplicaSet", name) => Some(name),
            _ => None,
        })
        .collect();
    // r2 may still have pods, so it stays this time.
    assert_eq!(deleted, vec![format!("{NS}/r1")]);
    assert_eq!(annotation(&h.deployment().metadata, REVISION), Some("5"));

    h.set_rs_status("r2", 0, 0);
    h.reconcile().await;
    assert_eq!(
        h.take_writes()
            .iter()
            .filter(|w| matches!(w, Write::Delete(..)))
            .count(),
        1
    );
    let names: Vec<String> = h.rss().iter().map(rs_name).collect();
    assert_eq!(names.len(), 3);
    assert!(!names.contains(&"r2".to_string()));
}

#[tokio::test]
async fn a_name_taken_by_another_template_bumps_the_collision_count() {
    let h = Harness::with(&web(2));
    let hash = pods::template_hash(&template("nginx:1.0"), None);
    let mut squatter = old_rs(&h, "squatter", "7", 0);
    squatter.metadata.name = Some(format!("web-{hash}"));
    squatter.metadata.owner_references = None;
    h.fake.remove::<ReplicaSet>(Some(NS), "squatter");
    h.fake.insert(&squatter);
    h.reconcile().await;

    assert_eq!(h.status().collision_count, Some(1));
    let salted = pods::template_hash(&template("nginx:1.0"), Some(1));
    let created = h.rs(&format!("web-{salted}"));
    assert_eq!(spec_replicas(&created), 2);
    assert_eq!(annotation_of(&created, REVISION).as_deref(), Some("1"));
    // The squatter is not the deployment's.
    assert_eq!(spec_replicas(&h.rs(&format!("web-{hash}"))), 0);
}

#[tokio::test]
async fn a_failed_create_is_reported_and_retried() {
    let h = Harness::with(&web(2));
    h.fake.fail_writes_of("ReplicaSet", 500);
    let result = DeploymentController::new()
        .reconcile(&Key::new(Some(NS), "web"), &h.ctx)
        .await;
    assert!(result.is_err());
    let hash = pods::template_hash(&template("nginx:1.0"), None);
    let events = h.fake.events();
    assert_eq!(events[0].event_type, EventType::Warning);
    assert_eq!(events[0].reason, FAILED_RS_CREATE);
    assert!(events[0].message.starts_with(&format!(
        "Failed to create new replica set \"web-{hash}\": "
    )));
    let (status, reason, _) = h.condition(PROGRESSING).unwrap();
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", FAILED_RS_CREATE)
    );

    h.fake.fail_writes_of("ReplicaSet", 0);
    h.reconcile().await;
    assert_eq!(h.rss().len(), 1);
    assert_eq!(h.condition(PROGRESSING).unwrap().1, NEW_RS_CREATED);
}
