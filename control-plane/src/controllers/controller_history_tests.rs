use std::sync::Arc;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Container, PodSpec};

use super::*;
use crate::controllers::context::Backend;
use crate::controllers::fake::{FakeBackend, Write};

fn template(image: &str) -> PodTemplateSpec {
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(BTreeMap::from([("app".to_string(), "web".to_string())])),
            ..Default::default()
        }),
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "c".into(),
                image: Some(image.into()),
                ..Default::default()
            }],
            ..Default::default()
        }),
    }
}

fn setup() -> (Arc<FakeBackend>, Ctx, StatefulSet) {
    let fake = Arc::new(FakeBackend::new());
    let owner = fake.insert(&StatefulSet {
        metadata: ObjectMeta {
            name: Some("web".into()),
            namespace: Some("default".into()),
            annotations: Some(BTreeMap::from([("team".to_string(), "a".to_string())])),
            ..Default::default()
        },
        ..Default::default()
    });
    let ctx = Ctx::new(fake.clone() as Arc<dyn Backend>, "statefulset-controller");
    (fake, ctx, owner)
}

fn revision_creates(fake: &FakeBackend) -> usize {
    fake.writes()
        .iter()
        .filter(|w| matches!(w, Write::Create("ControllerRevision", _)))
        .count()
}

#[test]
fn the_patch_replaces_the_template_and_reads_back() {
    let patch = template_patch(&template("nginx:1"));
    assert_eq!(patch["spec"]["template"]["$patch"], "replace");
    assert_eq!(
        patch["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:1"
    );
    let revision = ControllerRevision {
        data: Some(RawExtension(patch)),
        ..Default::default()
    };
    assert_eq!(template_of(&revision), Some(template("nginx:1")));
}

#[tokio::test]
async fn a_first_revision_is_named_labelled_owned_and_reused() {
    let (fake, ctx, owner) = setup();
    let revisions = sync_revisions(&ctx, &owner, &template("nginx:1"), None)
        .await
        .unwrap();
    let update = &revisions.update;
    let hash = revision_hash(update);
    assert_eq!(update.metadata.name, Some(format!("web-{hash}")));
    assert_eq!(update.revision, 1);
    let labels = update.metadata.labels.clone().unwrap_or_default();
    assert_eq!(labels.get("app").map(String::as_str), Some("web"));
    assert_eq!(labels.get(REVISION_HASH_LABEL), Some(&hash));
    assert_eq!(update.metadata.annotations, owner.metadata.annotations);
    assert_eq!(
        controller_of(&update.metadata).map(|r| r.uid.clone()),
        owner.metadata.uid
    );
    assert_eq!(revisions.collision_count, None);

    let again = sync_revisions(&ctx, &owner, &template("nginx:1"), None)
        .await
        .unwrap();
    assert_eq!(again.update.metadata.name, update.metadata.name);
    assert_eq!(revision_creates(&fake), 1);
}

#[tokio::test]
async fn a_new_template_gets_the_next_number_and_a_rollback_renumbers() {
    let (fake, ctx, owner) = setup();
    let first = sync_revisions(&ctx, &owner, &template("nginx:1"), None)
        .await
        .unwrap()
        .update;
    let second = sync_revisions(&ctx, &owner, &template("nginx:2"), None)
        .await
        .unwrap();
    assert_eq!(second.update.revision, 2);
    assert_eq!(second.all.len(), 2);

    let back = sync_revisions(&ctx, &owner, &template("nginx:1"), None)
        .await
        .unwrap();
    assert_eq!(back.update.metadata.name, first.metadata.name);
    assert_eq!(back.update.revision, 3);
    assert_eq!(revision_creates(&fake), 2);
    assert_eq!(back.all.last().map(|r| r.revision), Some(3), "oldest first");
}

#[tokio::test]
async fn a_name_taken_by_other_data_raises_the_collision_count() {
    let (fake, ctx, owner) = setup();
    let data = template_patch(&template("nginx:1"));
    let taken = revision_name("web", &pods::template_hash(&data, None));
    fake.insert(&ControllerRevision {
        metadata: ObjectMeta {
            name: Some(taken.clone()),
            namespace: Some("default".into()),
            ..Default::default()
        },
        data: Some(RawExtension(json!({"other": true}))),
        revision: 1,
    });
    let revisions = sync_revisions(&ctx, &owner, &template("nginx:1"), None)
        .await
        .unwrap();
    assert_eq!(revisions.collision_count, Some(1));
    assert_ne!(revisions.update.metadata.name, Some(taken));
}

#[tokio::test]
async fn truncation_keeps_live_revisions_and_the_newest_history() {
    let (fake, ctx, owner) = setup();
    let mut names = Vec::new();
    for image in ["a", "b", "c", "d"] {
        let update = sync_revisions(&ctx, &owner, &template(image), None)
            .await
            .unwrap()
            .update;
        names.push(update.metadata.name.unwrap_or_default());
    }
    let all = controlled_revisions(&ctx, &owner).unwrap();
    // "a" is still used by a pod, "d" is current: of "b" and "c" only the newest stays.
    let live = BTreeSet::from([names[0].clone(), names[3].clone()]);
    truncate_history(&ctx, &all, &live, Some(1)).await.unwrap();
    let mut left: Vec<String> = fake
        .all::<ControllerRevision>()
        .into_iter()
        .filter_map(|r| r.metadata.name)
        .collect();
    left.sort();
    let mut expected = vec![names[0].clone(), names[2].clone(), names[3].clone()];
    expected.sort();
    assert_eq!(left, expected);
}

#[test]
fn long_owner_names_are_cut_for_the_revision_name() {
    let name = revision_name(&"x".repeat(300), "abc");
    assert_eq!(name.len(), 223 + 4);
}
