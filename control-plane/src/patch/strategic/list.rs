//! List merging for strategic merge patch: merge keys, primitive sets, `$patch` elements and
//! `$setElementOrder`.

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value};

use super::super::order::{arrange, Identity};
use super::super::schema::{ListStrategy, Node};
use super::{json_type, merge_map, shown, Result, StrategicMergeError, PATCH};

/// A keyed list merged, before ordering.
struct KeyedMerge<'p> {
    /// The live elements with the patch merged in and new elements appended.
    merged: Vec<Value>,
    /// The live elements left after `$patch: delete`: the "server order".
    server: Vec<Value>,
    /// The merge keys of the patch's plain elements, in patch order.
    requested: Vec<&'p Value>,
}

/// Merges `patch` into the list `original` of type `node`.
pub(super) fn merge_list(
    original: Vec<Value>,
    patch: &[Value],
    node: Node,
    path: &str,
) -> Result<Vec<Value>> {
    match node.list_strategy() {
        ListStrategy::Atomic => Ok(patch.to_vec()),
        ListStrategy::Set => {
            let server = original.clone();
            let order: Vec<&Value> = patch.iter().collect();
            Ok(arrange(
                union(original, patch),
                &order,
                &server,
                Identity::Whole,
            ))
        }
        ListStrategy::Map { merge_key, .. } => {
            let keyed = merge_keyed(original, patch, merge_key, node.elem(), path)?;
            Ok(arrange(
                keyed.merged,
                &keyed.requested,
                &keyed.server,
                Identity::Key(merge_key),
            ))
        }
    }
}

/// Set union keeping the first occurrence of each value.
fn union(original: Vec<Value>, patch: &[Value]) -> Vec<Value> {
    let mut seen = HashSet::new();
    original
        .into_iter()
        .chain(patch.iter().cloned())
        .filter(|item| seen.insert(item.to_string()))
        .collect()
}

/// Merges a list of objects by `key`, handling `$patch` elements, before ordering.
fn merge_keyed<'p>(
    mut original: Vec<Value>,
    patch: &'p [Value],
    key: &'static str,
    elem: Node,
    path: &str,
) -> Result<KeyedMerge<'p>> {
    let mut plain = Vec::with_capacity(patch.len());
    let mut deleted = HashSet::new();
    let mut replace = false;
    for item in patch {
        let item = item
            .as_object()
            .ok_or(StrategicMergeError::ElementNotObject {
                path: shown(path),
                key,
                found: json_type(item),
            })?;
        match item.get(PATCH).and_then(Value::as_str) {
            None if item.contains_key(PATCH) => {
                return Err(StrategicMergeError::UnknownPatchDirective {
                    path: shown(path),
                    value: item.get(PATCH).map(Value::to_string).unwrap_or_default(),
                })
            }
            None | Some("merge") => plain.push(item),
            Some("delete") => {
                deleted.insert(merge_key_of(item, key, path)?.to_string());
            }
            Some("replace") => replace = true,
            Some(other) => {
                return Err(StrategicMergeError::UnknownPatchDirective {
                    path: shown(path),
                    value: Value::from(other).to_string(),
                })
            }
        }
    }
    if replace {
        original.clear();
    } else if !deleted.is_empty() {
        original.retain(|live| {
            live.get(key)
                .is_none_or(|id| !deleted.contains(&id.to_string()))
        });
    }
    let server = original.clone();
    // Position of each live element by the canonical JSON of its key, first one winning.
    let mut positions = HashMap::new();
    for (at, live) in original.iter().enumerate() {
        if let Some(id) = live.get(key) {
            positions.entry(id.to_string()).or_insert(at);
        }
    }
    let mut requested = Vec::with_capacity(plain.len());
    for item in plain {
        let id = merge_key_of(item, key, path)?;
        requested.push(id);
        let item_path = format!("{path}[{key}={id}]");
        let id = id.to_string();
        match positions.get(&id).and_then(|&at| original.get_mut(at)) {
            Some(Value::Object(live)) => {
                *live = merge_map(std::mem::take(live), item, elem, &item_path)?;
            }
            _ => {
                positions.insert(id, original.len());
                let fresh = merge_map(Map::new(), item, elem, &item_path)?;
                original.push(Value::Object(fresh));
            }
        }
    }
    Ok(KeyedMerge {
        merged: original,
        server,
        requested,
    })
}

fn merge_key_of<'a>(
    item: &'a Map<String, Value>,
    key: &'static str,
    path: &str,
) -> Result<&'a Value> {
    item.get(key)
        .ok_or_else(|| StrategicMergeError::MissingMergeKey {
            path: shown(path),
            key,
        })
}

/// Merges one list field under `$setElementOrder`. Returns `None` when the directive does not
/// apply (atomic list, or the patch does not hold a list there) so the field is merged normally.
pub(super) fn merge_ordered_list(
    original: Option<&Value>,
    patch: Option<&Value>,
    order: &[Value],
    node: Node,
    path: &str,
) -> Result<Option<Vec<Value>>> {
    let patch = match patch {
        None => None,
        Some(Value::Array(patch)) => Some(patch.as_slice()),
        Some(_) => return Ok(None),
    };
    let live = match original {
        Some(Value::Array(live)) => Some(live.clone()),
        _ => None,
    };
    let server = live.clone().unwrap_or_default();
    match node.list_strategy() {
        ListStrategy::Atomic => Ok(None),
        ListStrategy::Set => {
            let order: Vec<&Value> = order.iter().collect();
            check_order(patch.unwrap_or_default(), &order, Identity::Whole, path)?;
            let merged = match (live, patch) {
                (live, Some(patch)) => union(live.unwrap_or_default(), patch),
                (Some(live), None) => live,
                (None, None) => return Ok(None),
            };
            Ok(Some(arrange(merged, &order, &server, Identity::Whole)))
        }
        ListStrategy::Map { merge_key, .. } => {
            let identity = Identity::Key(merge_key);
            let order = order
                .iter()
                .map(|item| {
                    item.get(merge_key)
                        .ok_or_else(|| StrategicMergeError::MissingMergeKey {
                            path: format!("$setElementOrder of {}", shown(path)),
                            key: merge_key,
                        })
                })
                .collect::<Result<Vec<&Value>>>()?;
            let merged = match (live, patch) {
                (live, Some(patch)) => {
                    check_order(patch, &order, identity, path)?;
                    merge_keyed(
                        live.unwrap_or_default(),
                        patch,
                        merge_key,
                        node.elem(),
                        path,
                    )?
                    .merged
                }
                (Some(live), None) => live,
                (None, None) => return Ok(None),
            };
            Ok(Some(arrange(merged, &order, &server, identity)))
        }
    }
}

/// The patch list's plain elements must appear in the order list, in the same relative order.
fn check_order(patch: &[Value], order: &[&Value], identity: Identity, path: &str) -> Result<()> {
    let mut remaining = order.iter();
    for item in patch.iter().filter(|item| item.get(PATCH).is_none()) {
        let id = identity.of(item).ok_or_else(|| match identity {
            Identity::Key(key) => StrategicMergeError::MissingMergeKey {
                path: shown(path),
                key,
            },
            Identity::Whole => StrategicMergeError::OrderMismatch { path: shown(path) },
        })?;
        if !remaining.any(|entry| *entry == id) {
            return Err(StrategicMergeError::OrderMismatch { path: shown(path) });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::strategic_merge_patch;
    use serde_json::{json, Value};

    fn smp(kind: &str, original: Value, patch: Value) -> Value {
        match strategic_merge_patch(kind, &original, &patch) {
            Ok(value) => value,
            Err(err) => panic!("patch failed: {err}"),
        }
    }

    fn names(list: &Value) -> Vec<&str> {
        list.as_array()
            .into_iter()
            .flatten()
            .filter_map(|item| item["name"].as_str())
            .collect()
    }

    #[test]
    fn set_element_order_places_new_elements_where_the_manifest_has_them() {
        let patch = json!({"spec":{"template":{"spec":{
            "$setElementOrder/containers":[{"name":"web"},{"name":"sidecar"},{"name":"log"}],
            "containers":[{"name":"log","image":"fluent"}]}}}});
        let original = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "web", "image": "nginx"}, {"name": "sidecar", "image": "busybox"}]}}}});
        let out = smp("Deployment", original, patch);
        let containers = &out["spec"]["template"]["spec"]["containers"];
        assert_eq!(names(containers), ["web", "sidecar", "log"]);
        assert_eq!(containers[2], json!({"name": "log", "image": "fluent"}));
    }

    #[test]
    fn without_order_directive_requested_elements_follow_kubernetes_order() {
        // The design document's example: live [B, C, A], patch [A', B', D] gives [C, A', B', D].
        let original = json!({"spec": {"containers": [
            {"name": "B", "image": "b"}, {"name": "C", "image": "c"}, {"name": "A", "image": "a"}]}});
        let patch = json!({"spec": {"containers": [
            {"name": "A", "image": "a2"}, {"name": "B", "image": "b2"}, {"name": "D", "image": "d"}]}});
        let out = smp("Pod", original, patch);
        assert_eq!(
            out["spec"]["containers"],
            json!([{"name": "C", "image": "c"}, {"name": "A", "image": "a2"},
                   {"name": "B", "image": "b2"}, {"name": "D", "image": "d"}])
        );
    }

    // The order-preservation design document draws server-only items before all requested ones;
    // apimachinery's code (mergeSortedSlice) interleaves them by server position instead, and
    // that is what real API servers return. These two cases are the document's, with the code's
    // answers.
    #[test]
    fn env_deletion_addition_and_order_follow_apimachinery() {
        let original = json!({"spec": {"containers": [{"name": "c", "env": [
            {"name": "ENV2", "value": "bar"}, {"name": "ENV5", "value": "server-added-2"},
            {"name": "ENV1", "value": "foo"}, {"name": "ENV3", "value": "baz"},
            {"name": "ENV4", "value": "server-added-1"}]}]}});
        let patch = json!({"spec": {"containers": [{"name": "c",
            "$setElementOrder/env": [{"name": "ENV1"}, {"name": "ENV2"}, {"name": "ENV6"}],
            "env": [{"name": "ENV3", "$patch": "delete"}, {"name": "ENV6", "value": "new-env"}]}]}});
        let out = smp("Pod", original, patch);
        let env = &out["spec"]["containers"][0]["env"];
        assert_eq!(names(env), ["ENV5", "ENV1", "ENV2", "ENV6", "ENV4"]);
        assert_eq!(env[3], json!({"name": "ENV6", "value": "new-env"}));
    }

    #[test]
    fn primitive_set_with_order_and_deletion() {
        let original = json!({"metadata": {"finalizers": ["b", "e", "a", "c", "d"]}});
        let patch = json!({"metadata": {
            "$setElementOrder/finalizers": ["a", "b", "f"],
            "$deleteFromPrimitiveList/finalizers": ["c"],
            "finalizers": ["f"]}});
        let out = smp("ConfigMap", original, patch);
        assert_eq!(
            out["metadata"]["finalizers"],
            json!(["e", "a", "b", "f", "d"])
        );
    }
}
