//! What several controllers ask of pods: is it active, ready, available; a pod stamped from a
//! template; a label selector from its object form; the hash that names a template's revision.

use std::collections::BTreeMap;

use bramble_api::labels::Selector;
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::chrono::{DateTime, Utc};
use serde::Serialize;

/// Not finished (Succeeded/Failed) and not being deleted: counts towards a controller's replicas.
pub fn is_active(pod: &Pod) -> bool {
    !is_terminating(pod) && !is_finished(pod)
}

/// Being deleted (deletionTimestamp set), waiting for its node to stop it.
pub fn is_terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

/// Phase Succeeded or Failed.
pub fn is_finished(pod: &Pod) -> bool {
    matches!(phase(pod), "Succeeded" | "Failed")
}

/// status.phase, "Pending" when not reported yet.
pub fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending")
}

/// The Ready condition is True.
pub fn is_ready(pod: &Pod) -> bool {
    ready_since(pod).is_some()
}

/// When the Ready condition last became True, if it is True now.
pub fn ready_since(pod: &Pod) -> Option<DateTime<Utc>> {
    let condition = pod
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")?;
    if condition.status != "True" {
        return None;
    }
    // A Ready condition without a transition time counts as ready since forever.
    Some(
        condition
            .last_transition_time
            .as_ref()
            .map(|t| t.0)
            .unwrap_or(DateTime::<Utc>::MIN_UTC),
    )
}

/// Ready for at least `min_ready_seconds` at `now` (Kubernetes' podutil.IsPodAvailable).
pub fn is_available(pod: &Pod, min_ready_seconds: i32, now: DateTime<Utc>) -> bool {
    let Some(since) = ready_since(pod) else {
        return false;
    };
    if !is_active(pod) {
        return false;
    }
    min_ready_seconds <= 0
        || since + k8s_openapi::chrono::Duration::seconds(i64::from(min_ready_seconds)) <= now
}

/// A pod for `template`, controlled by `owner`: labels, annotations and spec from the template,
/// named `name`, or `generate_name` plus a random suffix when `name` is None.
pub fn from_template(
    template: &PodTemplateSpec,
    owner: OwnerReference,
    name: Option<String>,
    generate_name: Option<String>,
) -> Pod {
    let from = template.metadata.clone().unwrap_or_default();
    Pod {
        metadata: ObjectMeta {
            name,
            generate_name,
            labels: from.labels,
            annotations: from.annotations,
            finalizers: from.finalizers,
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        spec: template.spec.clone(),
        status: None,
    }
}

/// Why a selector cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("invalid label selector: {0}")]
pub struct BadSelector(String);

/// The selector `selector` stands for. An absent selector selects nothing, an empty one
/// everything (LabelSelectorAsSelector).
pub fn selector(selector: Option<&LabelSelector>) -> Result<Selector, BadSelector> {
    let value = match selector {
        None => serde_json::Value::Null,
        Some(s) => serde_json::to_value(s).map_err(|e| BadSelector(e.to_string()))?,
    };
    Selector::from_label_selector(&value).map_err(|e| BadSelector(e.to_string()))
}

/// Whether `selector` matches the labels of `meta`.
pub fn selects(selector: &Selector, meta: &ObjectMeta) -> bool {
    static EMPTY: BTreeMap<String, String> = BTreeMap::new();
    selector.matches(meta.labels.as_ref().unwrap_or(&EMPTY))
}

/// The alphabet Kubernetes uses for names derived from hashes (no vowels, no look-alikes).
const SAFE_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// A short, stable, name-safe hash of `value` (a pod template, a revision's data) and an
/// optional collision count, as the pod-template-hash label and revision names use.
/// FNV-1a over the JSON form; the JSON of k8s-openapi types is deterministic (fixed field
/// order, sorted maps).
pub fn template_hash<T: Serialize>(value: &T, collision_count: Option<i32>) -> String {
    let mut hash: u32 = 0x811c_9dc5;
    let mut feed = |bytes: &[u8]| {
        for b in bytes {
            hash ^= u32::from(*b);
            hash = hash.wrapping_mul(0x0100_0193);
        }
    };
    feed(&serde_json::to_vec(value).unwrap_or_default());
    if let Some(count) = collision_count {
        feed(&count.to_le_bytes());
    }
    let mut out = String::new();
    let mut n = hash;
    loop {
        let digit = (n % SAFE_ALPHABET.len() as u32) as usize;
        out.push(char::from(SAFE_ALPHABET[digit]));
        n /= SAFE_ALPHABET.len() as u32;
        if n == 0 {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodCondition, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::chrono::TimeZone;

    fn ready_pod(at: DateTime<Utc>) -> Pod {
        Pod {
            status: Some(PodStatus {
                phase: Some("Running".into()),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: "True".into(),
                    last_transition_time: Some(Time(at)),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn availability_waits_for_min_ready_seconds() {
        let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let pod = ready_pod(t0);
        assert!(is_available(&pod, 0, t0));
        assert!(!is_available(
            &pod,
            10,
            t0 + k8s_openapi::chrono::Duration::seconds(9)
        ));
        assert!(is_available(
            &pod,
            10,
            t0 + k8s_openapi::chrono::Duration::seconds(10)
        ));
    }

    #[test]
    fn terminating_and_finished_pods_are_not_active() {
        let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let mut pod = ready_pod(t0);
        assert!(is_active(&pod));
        pod.metadata.deletion_timestamp = Some(Time(t0));
        assert!(!is_active(&pod));
        let mut done = ready_pod(t0);
        done.status.as_mut().unwrap().phase = Some("Succeeded".into());
        assert!(!is_active(&done));
    }

    #[test]
    fn template_hash_is_stable_name_safe_and_salted_by_collisions() {
        let template = PodTemplateSpec::default();
        let a = template_hash(&template, None);
        assert_eq!(a, template_hash(&template, None));
        assert_ne!(a, template_hash(&template, Some(1)));
        assert!(a.bytes().all(|b| SAFE_ALPHABET.contains(&b)));
    }

    #[test]
    fn absent_selector_selects_nothing_and_empty_selects_everything() {
        let meta = ObjectMeta {
            labels: Some(BTreeMap::from([("app".to_string(), "web".to_string())])),
            ..Default::default()
        };
        assert!(!selects(&selector(None).unwrap(), &meta));
        assert!(selects(
            &selector(Some(&LabelSelector::default())).unwrap(),
            &meta
        ));
    }
}
