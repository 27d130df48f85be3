//! Kubernetes' DefaultTolerationSeconds admission plugin as a pure function on a pod's JSON
//! (the API server's create and update paths hold JSON): every pod that does not already
//! tolerate the `not-ready` and `unreachable` NoExecute taints gets a toleration for each,
//! limited to a number of seconds (300 by default, kube-apiserver's
//! --default-not-ready-toleration-seconds / --default-unreachable-toleration-seconds). That
//! number is the cluster's eviction timeout: the node lifecycle controller only honours the
//! tolerations pods carry.
//!
//! A pod "already tolerates" a taint, as the plugin decides it, when one of its tolerations
//! has that key or an empty key, and the NoExecute effect or an empty effect; its operator,
//! value and seconds are not looked at.

use serde_json::{json, Map, Value};

use super::taints::{NOT_READY, NO_EXECUTE, UNREACHABLE};

/// Kubernetes' default for both tolerations, in seconds.
pub const DEFAULT_TOLERATION_SECONDS: i64 = 300;

/// A string field of a toleration: absent or null reads as empty; another type makes the
/// toleration malformed (None).
fn text<'a>(toleration: &'a Map<String, Value>, field: &str) -> Option<&'a str> {
    match toleration.get(field) {
        None | Some(Value::Null) => Some(""),
        Some(Value::String(s)) => Some(s),
        Some(_) => None,
    }
}

/// Whether a toleration (key, effect) covers the NoExecute taint `key` for the plugin.
fn covers(toleration: (&str, &str), key: &str) -> bool {
    let (t_key, t_effect) = toleration;
    (t_key == key || t_key.is_empty()) && (t_effect == NO_EXECUTE || t_effect.is_empty())
}

/// The (key, effect) of each toleration in `spec`, or None when the tolerations are not a
/// list of objects with string keys and effects.
fn tolerations(spec: &Map<String, Value>) -> Option<Vec<(&str, &str)>> {
    let list = match spec.get("tolerations") {
        None | Some(Value::Null) => return Some(Vec::new()),
        Some(Value::Array(list)) => list,
        Some(_) => return None,
    };
    list.iter()
        .map(|t| {
            let t = t.as_object()?;
            Some((text(t, "key")?, text(t, "effect")?))
        })
        .collect()
}

/// Adds to `pod` (a Pod as JSON) the tolerations `{key: node.kubernetes.io/not-ready,
/// operator: Exists, effect: NoExecute, tolerationSeconds: seconds}` and the same for
/// `node.kubernetes.io/unreachable`, each unless the pod already tolerates that taint.
/// Calling it again adds nothing. A pod whose spec or tolerations are not of the right shape
/// is left unchanged, for validation to reject.
pub fn add_default_tolerations(pod: &mut Value, seconds: i64) {
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    let Some(existing) = tolerations(spec) else {
        return;
    };
    let missing: Vec<&str> = [NOT_READY, UNREACHABLE]
        .into_iter()
        .filter(|key| !existing.iter().any(|t| covers(*t, key)))
        .collect();
    if missing.is_empty() {
        return;
    }
    let added = missing.into_iter().map(|key| {
        json!({
            "key": key,
            "operator": "Exists",
            "effect": NO_EXECUTE,
            "tolerationSeconds": seconds,
        })
    });
    match spec.get_mut("tolerations") {
        Some(Value::Array(list)) => list.extend(added),
        _ => {
            spec.insert("tolerations".to_string(), Value::Array(added.collect()));
        }
    }
}

#[cfg(test)]
#[path = "default_tolerations_tests.rs"]
mod tests;
