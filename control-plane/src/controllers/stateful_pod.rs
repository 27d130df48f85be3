//! A StatefulSet pod's stable identity: its name `<set>-<ordinal>`, the labels naming it and
//! its index, its hostname and subdomain (so `<pod>.<service>` resolves), and the
//! PersistentVolumeClaims `<claim>-<set>-<ordinal>` its volumes mount; and whether it is up
//! (Running and Ready), which ordered creation and updates wait for.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, Pod, PodTemplateSpec, Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::context::controller_ref;
use super::controller_history::REVISION_HASH_LABEL;
use super::pods;

/// The label carrying a StatefulSet pod's own name (a Service can select one pod by it).
pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
/// The label carrying a StatefulSet pod's ordinal.
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";

/// The pod name of `ordinal` in the set named `set_name`.
pub fn pod_name(set_name: &str, ordinal: i32) -> String {
    format!("{set_name}-{ordinal}")
}

/// The ordinal of the pod named `pod_name` if it is a member name of `set_name`.
pub fn ordinal_of(set_name: &str, pod_name: &str) -> Option<i32> {
    let digits = pod_name.strip_prefix(set_name)?.strip_prefix('-')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let ordinal = digits.parse::<i32>().ok()?;
    // "web-01" is no pod name the set would give: leave it alone.
    (ordinal.to_string() == digits).then_some(ordinal)
}

/// The revision (ControllerRevision name) a pod was made from.
pub fn revision_of(pod: &Pod) -> Option<&str> {
    pod.metadata
        .labels
        .as_ref()?
        .get(REVISION_HASH_LABEL)
        .map(String::as_str)
}

/// The pod of `ordinal` made from `template` (the template of revision `revision`).
pub fn new_pod(set: &StatefulSet, template: &PodTemplateSpec, revision: &str, ordinal: i32) -> Pod {
    let set_name = set.metadata.name.as_deref().unwrap_or_default();
    let name = pod_name(set_name, ordinal);
    let mut pod = pods::from_template(template, controller_ref(set), Some(name.clone()), None);
    pod.metadata.namespace = set.metadata.namespace.clone();
    set_identity(&mut pod, &name, ordinal);
    pod.metadata
        .labels
        .get_or_insert_with(BTreeMap::new)
        .insert(REVISION_HASH_LABEL.into(), revision.to_string());
    let spec = pod.spec.get_or_insert_with(Default::default);
    spec.hostname = Some(name);
    spec.subdomain = set
        .spec
        .as_ref()
        .and_then(|s| s.service_name.clone())
        .filter(|s| !s.is_empty());
    // The claims' volumes replace template volumes of the same name.
    let claims = claim_templates(set);
    let mut volumes: Vec<Volume> = claims
        .iter()
        .map(|template| {
            let template_name = template.metadata.name.clone().unwrap_or_default();
            Volume {
                name: template_name.clone(),
                persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                    claim_name: claim_name(&template_name, set_name, ordinal),
                    read_only: None,
                }),
                ..Default::default()
            }
        })
        .collect();
    for volume in spec.volumes.take().unwrap_or_default() {
        if !volumes.iter().any(|v| v.name == volume.name) {
            volumes.push(volume);
        }
    }
    spec.volumes = (!volumes.is_empty()).then_some(volumes);
    pod
}

/// Whether `pod` carries the identity labels of its ordinal.
pub fn identity_matches(pod: &Pod, ordinal: i32) -> bool {
    let labels = pod.metadata.labels.as_ref();
    let label = |key: &str| labels.and_then(|l| l.get(key)).map(String::as_str);
    label(POD_NAME_LABEL) == pod.metadata.name.as_deref()
        && label(POD_INDEX_LABEL) == Some(ordinal.to_string().as_str())
}

/// Sets the identity labels of the pod `name` with `ordinal`.
pub fn set_identity(pod: &mut Pod, name: &str, ordinal: i32) {
    let labels = pod.metadata.labels.get_or_insert_with(BTreeMap::new);
    labels.insert(POD_NAME_LABEL.into(), name.to_string());
    labels.insert(POD_INDEX_LABEL.into(), ordinal.to_string());
}

/// The name of the claim from template `template_name` for `ordinal` of the set.
pub fn claim_name(template_name: &str, set_name: &str, ordinal: i32) -> String {
    format!("{template_name}-{set_name}-{ordinal}")
}

fn claim_templates(set: &StatefulSet) -> &[PersistentVolumeClaim] {
    set.spec
        .as_ref()
        .and_then(|s| s.volume_claim_templates.as_deref())
        .unwrap_or_default()
}

/// The claims the pod of `ordinal` needs: each volumeClaimTemplate named for the ordinal,
/// labelled with the template's labels plus the set selector's matchLabels.
pub fn claims(set: &StatefulSet, ordinal: i32) -> Vec<PersistentVolumeClaim> {
    let set_name = set.metadata.name.as_deref().unwrap_or_default();
    let match_labels = set
        .spec
        .as_ref()
        .and_then(|s| s.selector.match_labels.clone())
        .unwrap_or_default();
    claim_templates(set)
        .iter()
        .map(|template| {
            let template_name = template.metadata.name.as_deref().unwrap_or_default();
            let mut labels = template.metadata.labels.clone().unwrap_or_default();
            labels.extend(match_labels.clone());
            PersistentVolumeClaim {
                metadata: ObjectMeta {
                    name: Some(claim_name(template_name, set_name, ordinal)),
                    namespace: set.metadata.namespace.clone(),
                    labels: (!labels.is_empty()).then_some(labels),
                    annotations: template.metadata.annotations.clone(),
                    ..Default::default()
                },
                spec: template.spec.clone(),
                status: None,
            }
        })
        .collect()
}

/// Running and Ready.
pub fn is_running_and_ready(pod: &Pod) -> bool {
    pods::phase(pod) == "Running" && pods::is_ready(pod)
}

/// Running, Ready and not being deleted.
pub fn is_healthy(pod: &Pod) -> bool {
    is_running_and_ready(pod) && !pods::is_terminating(pod)
}

#[cfg(test)]
#[path = "stateful_pod_tests.rs"]
mod tests;
