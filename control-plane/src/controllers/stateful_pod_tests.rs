use k8s_openapi::api::apps::v1::StatefulSetSpec;
use k8s_openapi::api::core::v1::{EmptyDirVolumeSource, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::*;

fn set(claim_templates: &[&str]) -> StatefulSet {
    StatefulSet {
        metadata: ObjectMeta {
            name: Some("web".into()),
            namespace: Some("prod".into()),
            uid: Some("uid-web".into()),
            ..Default::default()
        },
        spec: Some(StatefulSetSpec {
            service_name: Some("nginx".into()),
            selector: LabelSelector {
                match_labels: Some(BTreeMap::from([("app".to_string(), "web".to_string())])),
                ..Default::default()
            },
            volume_claim_templates: Some(
                claim_templates
                    .iter()
                    .map(|name| PersistentVolumeClaim {
                        metadata: ObjectMeta {
                            name: Some(name.to_string()),
                            labels: Some(BTreeMap::from([(
                                "tier".to_string(),
                                "data".to_string(),
                            )])),
                            ..Default::default()
                        },
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }),
        status: None,
    }
}

#[test]
fn ordinals_come_only_from_member_names() {
    assert_eq!(ordinal_of("web", "web-0"), Some(0));
    assert_eq!(ordinal_of("web", "web-12"), Some(12));
    assert_eq!(ordinal_of("web", "web-01"), None);
    assert_eq!(ordinal_of("web", "web-"), None);
    assert_eq!(ordinal_of("web", "web-x"), None);
    assert_eq!(ordinal_of("web", "webby-1"), None);
    assert_eq!(ordinal_of("web", "web-1-2"), None);
    assert_eq!(pod_name("web", 3), "web-3");
}

#[test]
fn a_new_pod_has_its_identity_revision_and_claims() {
    let set = set(&["www"]);
    let template = PodTemplateSpec {
        metadata: None,
        spec: Some(PodSpec {
            volumes: Some(vec![
                Volume {
                    name: "www".into(),
                    empty_dir: Some(EmptyDirVolumeSource::default()),
                    ..Default::default()
                },
                Volume {
                    name: "cache".into(),
                    empty_dir: Some(EmptyDirVolumeSource::default()),
                    ..Default::default()
                },
            ]),
            ..Default::default()
        }),
    };
    let pod = new_pod(&set, &template, "web-abc", 2);
    assert_eq!(pod.metadata.name.as_deref(), Some("web-2"));
    assert_eq!(pod.metadata.namespace.as_deref(), Some("prod"));
    assert!(identity_matches(&pod, 2));
    assert!(!identity_matches(&pod, 1));
    assert_eq!(revision_of(&pod), Some("web-abc"));
    let owner = pod.metadata.owner_references.clone().unwrap_or_default();
    assert_eq!(owner[0].uid, "uid-web");
    let spec = pod.spec.expect("spec");
    assert_eq!(spec.hostname.as_deref(), Some("web-2"));
    assert_eq!(spec.subdomain.as_deref(), Some("nginx"));
    let volumes = spec.volumes.unwrap_or_default();
    assert_eq!(
        volumes.len(),
        2,
        "the claim replaces the template's volume of that name"
    );
    assert_eq!(
        volumes[0]
            .persistent_volume_claim
            .as_ref()
            .map(|c| c.claim_name.as_str()),
        Some("www-web-2")
    );
    assert_eq!(volumes[1].name, "cache");
}

#[test]
fn claims_are_named_per_ordinal_and_carry_the_selector_labels() {
    let claims = claims(&set(&["www", "logs"]), 1);
    let names: Vec<_> = claims
        .iter()
        .filter_map(|c| c.metadata.name.clone())
        .collect();
    assert_eq!(names, vec!["www-web-1", "logs-web-1"]);
    let labels = claims[0].metadata.labels.clone().unwrap_or_default();
    assert_eq!(labels.get("tier").map(String::as_str), Some("data"));
    assert_eq!(labels.get("app").map(String::as_str), Some("web"));
    assert_eq!(claims[0].metadata.namespace.as_deref(), Some("prod"));
    assert!(
        claims[0].metadata.owner_references.is_none(),
        "claims outlive their pods"
    );
}

#[test]
fn identity_can_be_restored() {
    let mut pod = Pod {
        metadata: ObjectMeta {
            name: Some("web-4".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    assert!(!identity_matches(&pod, 4));
    set_identity(&mut pod, "web-4", 4);
    assert!(identity_matches(&pod, 4));
}
