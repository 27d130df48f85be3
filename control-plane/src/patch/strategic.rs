//! Strategic merge patch (`application/strategic-merge-patch+json`), as sent by client-side
//! `kubectl apply`, `kubectl patch`, `set image`, `rollout restart` and `cordon`.
//!
//! It is an RFC 7386 merge patch except where the schema says otherwise: lists with a merge key
//! merge element by element, primitive sets merge as sets, and the directives `$patch`,
//! `$retainKeys`, `$setElementOrder/<list>` and `$deleteFromPrimitiveList/<list>` are honoured and
//! never stored. The semantics follow apimachinery's `strategicpatch` package; the one deliberate
//! leniency is that `$patch: merge` is accepted as "the default" instead of rejected.

use std::collections::HashSet;

use serde_json::{Map, Value};

use super::schema::{self, Node};
use list::{merge_list, merge_ordered_list};

mod list;

const PATCH: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const SET_ELEMENT_ORDER: &str = "$setElementOrder/";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList/";

/// Why a strategic merge patch could not be applied. The object is left unchanged.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StrategicMergeError {
    /// The patch document is not a JSON object.
    #[error("strategic merge patch must be a json object, got {found}")]
    PatchNotObject {
        /// JSON type of the patch.
        found: &'static str,
    },
    /// The object being patched is not a JSON object.
    #[error("the object to patch must be a json object, got {found}")]
    OriginalNotObject {
        /// JSON type of the object.
        found: &'static str,
    },
    /// `$patch` has a value other than `replace`, `merge` or `delete`.
    #[error(
        "unknown $patch directive {value} at {path}: use \"replace\", \"merge\" or \"delete\""
    )]
    UnknownPatchDirective {
        /// Where the directive was found.
        path: String,
        /// The value given, as JSON.
        value: String,
    },
    /// A key starting with `$` that is not a known directive.
    #[error("unknown directive {directive:?} at {path}")]
    UnknownDirective {
        /// Where the key was found.
        path: String,
        /// The key.
        directive: String,
    },
    /// `$retainKeys`, `$setElementOrder/…` or `$deleteFromPrimitiveList/…` is not a list.
    #[error("{directive} at {path} must be a list, got {found}")]
    DirectiveNotList {
        /// Where the directive was found.
        path: String,
        /// The directive key.
        directive: String,
        /// JSON type given.
        found: &'static str,
    },
    /// The patch sets a field that its own `$retainKeys` list would clear.
    #[error("field {field:?} at {path} is set by the patch but missing from $retainKeys")]
    NotRetained {
        /// The object holding the directive.
        path: String,
        /// The field missing from the list.
        field: String,
    },
    /// An element of a merging list is not an object.
    #[error("elements of {path} must be objects with merge key {key:?}, got {found}")]
    ElementNotObject {
        /// The list.
        path: String,
        /// The list's merge key.
        key: &'static str,
        /// JSON type of the element.
        found: &'static str,
    },
    /// An element of a merging list (or of its `$setElementOrder`) lacks the merge key.
    #[error("an element of {path} has no merge key {key:?}")]
    MissingMergeKey {
        /// The list.
        path: String,
        /// The list's merge key.
        key: &'static str,
    },
    /// The patch list names elements that `$setElementOrder` leaves out or orders differently.
    #[error("the order of the patch list {path} does not match its $setElementOrder list")]
    OrderMismatch {
        /// The list.
        path: String,
    },
}

type Result<T> = std::result::Result<T, StrategicMergeError>;

/// Applies strategic merge `patch` to `original`, an object of `kind`, and returns the result.
/// Unknown kinds and fields outside the schema get plain JSON merge semantics.
pub fn strategic_merge_patch(kind: &str, original: &Value, patch: &Value) -> Result<Value> {
    let patch = patch
        .as_object()
        .ok_or(StrategicMergeError::PatchNotObject {
            found: json_type(patch),
        })?;
    let original = original
        .as_object()
        .ok_or(StrategicMergeError::OriginalNotObject {
            found: json_type(original),
        })?;
    merge_map(original.clone(), patch, schema::root(kind), "").map(Value::Object)
}

/// The JSON type name of `value`, for error messages.
pub(crate) fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn shown(path: &str) -> String {
    if path.is_empty() {
        ".".to_owned()
    } else {
        path.to_owned()
    }
}

fn merge_map(
    mut original: Map<String, Value>,
    patch: &Map<String, Value>,
    node: Node,
    path: &str,
) -> Result<Map<String, Value>> {
    match patch.get(PATCH) {
        None => {}
        Some(Value::String(s)) if s == "replace" => {
            let mut rest = patch.clone();
            rest.shift_remove(PATCH);
            return merge_map(Map::new(), &rest, node, path);
        }
        Some(Value::String(s)) if s == "delete" => return Ok(Map::new()),
        Some(Value::String(s)) if s == "merge" => {}
        Some(other) => {
            return Err(StrategicMergeError::UnknownPatchDirective {
                path: shown(path),
                value: other.to_string(),
            })
        }
    }
    if let Some(keys) = patch.get(RETAIN_KEYS) {
        retain_keys(&mut original, patch, keys, path)?;
    }

    let mut ordered = HashSet::new();
    for (key, order) in patch {
        let Some(field) = key.strip_prefix(SET_ELEMENT_ORDER) else {
            continue;
        };
        let list_path = format!("{path}.{field}");
        let order = directive_list(key, order, path)?;
        if field.is_empty() {
            return Err(unknown_directive(key, path));
        }
        if let Some(list) = merge_ordered_list(
            original.get(field),
            patch.get(field),
            order,
            node.field(field),
            &list_path,
        )? {
            original.insert(field.to_owned(), Value::Array(list));
            ordered.insert(field);
        }
    }

    let mut deletions = Vec::new();
    for (key, value) in patch {
        if key == PATCH
            || key == RETAIN_KEYS
            || key.starts_with(SET_ELEMENT_ORDER)
            || ordered.contains(key.as_str())
        {
            continue;
        }
        if let Some(field) = key.strip_prefix(DELETE_FROM_PRIMITIVE_LIST) {
            if field.is_empty() {
                return Err(unknown_directive(key, path));
            }
            deletions.push((field, directive_list(key, value, path)?));
            continue;
        }
        if key.starts_with('$') {
            return Err(unknown_directive(key, path));
        }
        let child_path = format!("{path}.{key}");
        let child = node.field(key);
        match (original.get_mut(key), value) {
            (_, Value::Null) => {
                original.shift_remove(key);
            }
            (Some(Value::Object(live)), Value::Object(patch)) => {
                *live = merge_map(std::mem::take(live), patch, child, &child_path)?;
            }
            (Some(Value::Array(live)), Value::Array(patch)) => {
                *live = merge_list(std::mem::take(live), patch, child, &child_path)?;
            }
            (Some(slot), value) => *slot = fresh(value, child, &child_path)?,
            (None, value) => {
                let value = fresh(value, child, &child_path)?;
                original.insert(key.clone(), value);
            }
        }
    }
    for (field, values) in deletions {
        if let Some(Value::Array(list)) = original.get_mut(field) {
            list.retain(|item| !values.contains(item));
        }
    }
    Ok(original)
}

/// A patch value with nothing to merge into: directives are still processed (and stripped) and
/// nulls dropped, as Kubernetes' typed decoding of the result would.
fn fresh(value: &Value, node: Node, path: &str) -> Result<Value> {
    match value {
        Value::Object(patch) => merge_map(Map::new(), patch, node, path).map(Value::Object),
        Value::Array(patch) => merge_list(Vec::new(), patch, node, path).map(Value::Array),
        other => Ok(other.clone()),
    }
}

fn unknown_directive(key: &str, path: &str) -> StrategicMergeError {
    StrategicMergeError::UnknownDirective {
        path: shown(path),
        directive: key.to_owned(),
    }
}

fn directive_list<'a>(key: &str, value: &'a Value, path: &str) -> Result<&'a Vec<Value>> {
    value
        .as_array()
        .ok_or_else(|| StrategicMergeError::DirectiveNotList {
            path: shown(path),
            directive: key.to_owned(),
            found: json_type(value),
        })
}

/// `$retainKeys`: fields of the live object missing from the list are cleared, and the patch
/// itself may only set listed fields.
fn retain_keys(
    original: &mut Map<String, Value>,
    patch: &Map<String, Value>,
    keys: &Value,
    path: &str,
) -> Result<()> {
    let keys = directive_list(RETAIN_KEYS, keys, path)?;
    let listed = |field: &str| keys.iter().any(|key| key.as_str() == Some(field));
    if let Some((field, _)) = patch
        .iter()
        .find(|(field, value)| !value.is_null() && !field.starts_with('$') && !listed(field))
    {
        return Err(StrategicMergeError::NotRetained {
            path: shown(path),
            field: field.clone(),
        });
    }
    original.retain(|field, _| listed(field));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn smp(kind: &str, original: Value, patch: Value) -> Value {
        match strategic_merge_patch(kind, &original, &patch) {
            Ok(value) => value,
            Err(err) => panic!("patch failed: {err}"),
        }
    }

    fn deployment() -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web", "tier": "front"}},
            "spec": {
                "replicas": 2,
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}},
                "template": {"spec": {"containers": [
                    {"name": "web", "image": "nginx:1.25",
                     "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                     "args": ["--a", "--b"]},
                    {"name": "sidecar", "image": "busybox"}
                ]}}
            }
        })
    }

    #[test]
    fn kubectl_apply_three_way_patch_removes_label_and_env_var() {
        let patch = json!({"metadata":{"labels":{"tier":null}},"spec":{"template":{"spec":{"$setElementOrder/containers":[{"name":"web"}],"containers":[{"$setElementOrder/env":[{"name":"A"}],"env":[{"$patch":"delete","name":"B"}],"name":"web"}]}}}});
        let out = smp("Deployment", deployment(), patch);
        assert_eq!(out["metadata"]["labels"], json!({"app": "web"}));
        let containers = &out["spec"]["template"]["spec"]["containers"];
        // sidecar is server-only: it stays, and comes after "web" as on the server.
        assert_eq!(containers[0]["name"], "web");
        assert_eq!(containers[0]["env"], json!([{"name": "A", "value": "1"}]));
        assert_eq!(containers[0]["image"], "nginx:1.25");
        assert_eq!(
            containers[1],
            json!({"name": "sidecar", "image": "busybox"})
        );
        assert_eq!(containers.as_array().map(Vec::len), Some(2));
    }

    #[test]
    fn kubectl_apply_changes_image_and_env_value_in_place() {
        let patch = json!({"spec":{"template":{"spec":{"$setElementOrder/containers":[{"name":"web"},{"name":"sidecar"}],"containers":[{"$setElementOrder/env":[{"name":"A"},{"name":"B"}],"env":[{"name":"A","value":"9"}],"image":"nginx:1.26","name":"web"}]}}}});
        let out = smp("Deployment", deployment(), patch);
        let web = &out["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(web["image"], "nginx:1.26");
        assert_eq!(
            web["env"],
            json!([{"name": "A", "value": "9"}, {"name": "B", "value": "2"}])
        );
        assert_eq!(web["args"], json!(["--a", "--b"]));
        assert_eq!(
            out["spec"]["template"]["spec"]["containers"][1]["name"],
            "sidecar"
        );
    }

    #[test]
    fn patch_directives_on_maps_and_list_elements() {
        let patch = json!({"metadata": {"labels": {"$patch": "replace", "only": "this"}},
                           "spec": {"strategy": {"$patch": "delete"}}});
        let out = smp("Deployment", deployment(), patch);
        assert_eq!(out["metadata"]["labels"], json!({"only": "this"}));
        assert_eq!(out["spec"]["strategy"], json!({}));

        let patch = json!({"spec": {"template": {"spec": {"containers": [
            {"$patch": "replace"}, {"name": "solo", "image": "x"}]}}}});
        let out = smp("Deployment", deployment(), patch);
        assert_eq!(
            out["spec"]["template"]["spec"]["containers"],
            json!([{"name": "solo", "image": "x"}])
        );
    }

    #[test]
    fn retain_keys_clears_the_other_strategy() {
        let patch = json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate", "rollingUpdate": null}}});
        let out = smp("Deployment", deployment(), patch);
        assert_eq!(out["spec"]["strategy"], json!({"type": "Recreate"}));

        let bad = json!({"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": {"maxSurge": 2}}}});
        let err = strategic_merge_patch("Deployment", &deployment(), &bad);
        assert!(
            matches!(err, Err(StrategicMergeError::NotRetained { ref field, .. }) if field == "rollingUpdate")
        );
    }

    #[test]
    fn null_deletes_and_atomic_lists_are_replaced() {
        let node = json!({"kind": "Node", "spec": {"unschedulable": true, "taints": [{"key": "a"}, {"key": "b"}]}});
        let out = smp(
            "Node",
            node,
            json!({"spec": {"unschedulable": null, "taints": [{"key": "c"}]}}),
        );
        assert_eq!(out["spec"], json!({"taints": [{"key": "c"}]}));

        let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "args": ["--c"]}]}}}});
        let out = smp("Deployment", deployment(), patch);
        assert_eq!(
            out["spec"]["template"]["spec"]["containers"][0]["args"],
            json!(["--c"])
        );
    }

    #[test]
    fn unknown_kinds_and_fields_use_json_merge_semantics() {
        let original =
            json!({"spec": {"items": [{"name": "a"}, {"name": "b"}], "keep": 1, "drop": 2}});
        let patch = json!({"spec": {"items": [{"name": "c"}], "drop": null}});
        let out = smp("Widget", original, patch);
        assert_eq!(out, json!({"spec": {"items": [{"name": "c"}], "keep": 1}}));
        // An unknown field inside a known kind also replaces its lists.
        let pod = json!({"spec": {"affinity": {"terms": [1, 2]}}});
        let out = smp("Pod", pod, json!({"spec": {"affinity": {"terms": [3]}}}));
        assert_eq!(out["spec"]["affinity"]["terms"], json!([3]));
    }

    #[test]
    fn new_subtrees_are_cleaned_of_directives_and_nulls() {
        let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "new",
            "$setElementOrder/env": [{"name": "X"}], "env": [{"name": "X", "value": "1"}],
            "resources": {"limits": null}}]}}}});
        let out = smp("Deployment", deployment(), patch);
        let new = out["spec"]["template"]["spec"]["containers"]
            .as_array()
            .and_then(|list| list.iter().find(|c| c["name"] == "new"))
            .cloned();
        assert_eq!(
            new,
            Some(json!({"name": "new", "env": [{"name": "X", "value": "1"}], "resources": {}}))
        );
    }

    #[test]
    fn bad_patches_are_refused_with_the_reason() {
        let original = deployment();
        let err = |patch: Value| strategic_merge_patch("Deployment", &original, &patch).err();
        assert!(matches!(
            err(json!([1])),
            Some(StrategicMergeError::PatchNotObject { found: "array" })
        ));
        assert!(matches!(
            err(json!({"spec": {"$patch": "explode"}})),
            Some(StrategicMergeError::UnknownPatchDirective { ref path, .. }) if path == ".spec"
        ));
        assert!(matches!(
            err(json!({"spec": {"template": {"spec": {"containers": [{"image": "x"}]}}}})),
            Some(StrategicMergeError::MissingMergeKey { key: "name", .. })
        ));
        assert!(matches!(
            err(json!({"spec": {"template": {"spec": {"containers": ["web"]}}}})),
            Some(StrategicMergeError::ElementNotObject {
                found: "string",
                ..
            })
        ));
        assert!(matches!(
            err(json!({"$retainKeys": "type"})),
            Some(StrategicMergeError::DirectiveNotList { .. })
        ));
        assert!(matches!(
            err(json!({"spec": {"$bogus": 1}})),
            Some(StrategicMergeError::UnknownDirective { .. })
        ));
        assert!(matches!(
            err(json!({"spec": {"template": {"spec": {
                "$setElementOrder/containers": [{"name": "web"}],
                "containers": [{"name": "other"}]}}}})),
            Some(StrategicMergeError::OrderMismatch { .. })
        ));
        let message = err(json!({"spec": {"$patch": 3}})).map(|e| e.to_string());
        assert_eq!(
            message.as_deref(),
            Some("unknown $patch directive 3 at .spec: use \"replace\", \"merge\" or \"delete\"")
        );
        assert!(matches!(
            strategic_merge_patch("Pod", &json!("x"), &json!({})),
            Err(StrategicMergeError::OriginalNotObject { found: "string" })
        ));
    }
}
