//! Server-side apply's view of an object through the schema: which field paths it sets, how an
//! applied configuration merges into the live object, how fields an applier gave up are pruned,
//! and which paths changed between two versions. Mirrors structured-merge-diff's `typed` package
//! for the subset of the schema in [`super::schema`].

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value};

use super::fieldset::{path_string, FieldSet, PathElement};
use super::schema::{ListKey, ListStrategy, Node};
use super::strategic::json_type;

/// Metadata fields that the API server sets and that no manager owns.
const UNTRACKED_METADATA: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "creationTimestamp",
    "generation",
    "selfLink",
    "managedFields",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
];

/// Why an object's lists could not be read as the schema describes them.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ObjectError {
    /// An element of an associative list is not an object.
    #[error("{path}: elements of this associative list must be objects, got {found}")]
    ElementNotObject {
        /// The list.
        path: String,
        /// JSON type of the element.
        found: &'static str,
    },
    /// An element of an associative list lacks a key field that has no default.
    #[error("{path}: associative list with keys has an element that omits key field {key:?}")]
    MissingKey {
        /// The list.
        path: String,
        /// The key field.
        key: &'static str,
    },
    /// Two elements of an associative list share their key.
    #[error("{path}: duplicate entries for key {key}")]
    DuplicateKey {
        /// The list.
        path: String,
        /// The key, as printed in paths (`[name="web"]`).
        key: String,
    },
}

/// Whether malformed list elements are errors (applied configurations) or skipped (stored
/// objects, which must never make bookkeeping fail).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Strictness {
    Strict,
    Lenient,
}

/// The object without the parts no manager owns: `apiVersion`, `kind` and server-set metadata.
pub(crate) fn tracked(object: &Value) -> Value {
    let Value::Object(map) = object else {
        return Value::Object(Map::new());
    };
    let mut out = map.clone();
    out.shift_remove("apiVersion");
    out.shift_remove("kind");
    if let Some(Value::Object(metadata)) = out.get_mut("metadata") {
        metadata.retain(|field, _| !UNTRACKED_METADATA.contains(&field.as_str()));
        if metadata.is_empty() {
            out.shift_remove("metadata");
        }
    }
    Value::Object(out)
}

/// The field paths `object` (already [`tracked`]) sets.
pub(crate) fn field_set(
    object: &Value,
    node: Node,
    strictness: Strictness,
) -> Result<FieldSet, ObjectError> {
    let mut set = FieldSet::new();
    if let Value::Object(map) = object {
        collect_fields(map, node, &mut Vec::new(), &mut set, strictness)?;
    }
    Ok(set)
}

fn collect_fields(
    map: &Map<String, Value>,
    node: Node,
    path: &mut Vec<PathElement>,
    set: &mut FieldSet,
    strictness: Strictness,
) -> Result<(), ObjectError> {
    for (name, value) in map {
        path.push(PathElement::Field(name.clone()));
        collect(value, node.field(name), path, set, strictness)?;
        path.pop();
    }
    Ok(())
}

fn collect(
    value: &Value,
    node: Node,
    path: &mut Vec<PathElement>,
    set: &mut FieldSet,
    strictness: Strictness,
) -> Result<(), ObjectError> {
    match value {
        Value::Object(map) if !map.is_empty() && !node.is_atomic_map() => {
            collect_fields(map, node, path, set, strictness)?;
        }
        Value::Array(items) if !items.is_empty() => match node.list_strategy() {
            ListStrategy::Atomic => set.insert(path),
            ListStrategy::Set => {
                for item in items {
                    path.push(PathElement::Value(item.clone()));
                    set.insert(path);
                    path.pop();
                }
            }
            ListStrategy::Map { keys, .. } => {
                let mut seen = HashSet::new();
                for item in items {
                    let key = match item_key(item, keys, path) {
                        Ok(key) => key,
                        Err(err) if strictness == Strictness::Strict => return Err(err),
                        Err(_) => continue,
                    };
                    if !seen.insert(key.encode()) {
                        if strictness == Strictness::Strict {
                            return Err(ObjectError::DuplicateKey {
                                path: path_string(path),
                                key: key.to_string(),
                            });
                        }
                        continue;
                    }
                    path.push(key);
                    set.insert(path);
                    if let Value::Object(fields) = item {
                        collect_fields(fields, node.elem(), path, set, strictness)?;
                    }
                    path.pop();
                }
            }
        },
        _ => set.insert(path),
    }
    Ok(())
}

/// The path element of an associative list's `item`.
fn item_key(
    item: &Value,
    keys: &[ListKey],
    path: &[PathElement],
) -> Result<PathElement, ObjectError> {
    let Value::Object(fields) = item else {
        return Err(ObjectError::ElementNotObject {
            path: path_string(path),
            found: json_type(item),
        });
    };
    keys.iter()
        .map(|key| {
            let value = fields
                .get(key.name)
                .cloned()
                .or_else(|| key.default.map(Value::from))
                .ok_or_else(|| ObjectError::MissingKey {
                    path: path_string(path),
                    key: key.name,
                })?;
            Ok((key.name.to_owned(), value))
        })
        .collect::<Result<Vec<_>, _>>()
        .map(PathElement::key)
}

/// `applied` merged over `live`: applied values win, maps merge, associative lists and sets merge
/// by identity, atomic values are replaced.
pub(crate) fn merge(live: &Value, applied: &Value, node: Node) -> Value {
    match (live, applied) {
        (Value::Object(live), Value::Object(applied)) if !node.is_atomic_map() => {
            let mut out = live.clone();
            for (name, value) in applied {
                let merged = match live.get(name) {
                    Some(current) => merge(current, value, node.field(name)),
                    None => value.clone(),
                };
                out.insert(name.clone(), merged);
            }
            Value::Object(out)
        }
        (Value::Array(live), Value::Array(applied)) => match node.list_strategy() {
            ListStrategy::Atomic => Value::Array(applied.clone()),
            ListStrategy::Set => Value::Array(merge_items(
                live,
                applied,
                |item| Some(item.to_string()),
                |_, new| new.clone(),
            )),
            ListStrategy::Map { keys, .. } => {
                let identity =
                    |item: &Value| item_key(item, keys, &[]).ok().map(|key| key.encode());
                let elem = node.elem();
                Value::Array(merge_items(live, applied, identity, |old, new| {
                    merge(old, new, elem)
                }))
            }
        },
        _ => applied.clone(),
    }
}

/// Merges two lists by element identity. Applied elements keep the applied order; live-only
/// elements stay where they were relative to the applied elements around them.
fn merge_items(
    live: &[Value],
    applied: &[Value],
    identity: impl Fn(&Value) -> Option<String>,
    combine: impl Fn(&Value, &Value) -> Value,
) -> Vec<Value> {
    let live_ids: Vec<Option<String>> = live.iter().map(&identity).collect();
    let applied_ids: Vec<Option<String>> = applied.iter().map(&identity).collect();
    let live_at = first_positions(&live_ids);
    let applied_at = first_positions(&applied_ids);
    let emit = |index: usize| -> Option<Value> {
        let new = applied.get(index)?;
        let old = applied_ids
            .get(index)?
            .as_deref()
            .and_then(|id| live_at.get(id))
            .and_then(|&at| live.get(at));
        Some(old.map_or_else(|| new.clone(), |old| combine(old, new)))
    };
    let mut out = Vec::with_capacity(live.len().max(applied.len()));
    let mut next = 0;
    for (item, id) in live.iter().zip(&live_ids) {
        match id.as_deref().and_then(|id| applied_at.get(id)) {
            None => out.push(item.clone()),
            Some(&target) => {
                while next <= target {
                    out.extend(emit(next));
                    next += 1;
                }
            }
        }
    }
    out.extend((next..applied.len()).filter_map(emit));
    out
}

/// Index of the first element with each identity.
fn first_positions(ids: &[Option<String>]) -> HashMap<&str, usize> {
    let mut positions = HashMap::new();
    for (at, id) in ids.iter().enumerate() {
        if let Some(id) = id {
            positions.entry(id.as_str()).or_insert(at);
        }
    }
    positions
}

/// Removes from `value` the paths in `remove` that nothing in `keep` owns (at or below them).
/// Key fields of kept list items are never removed, so an item cannot lose its identity.
pub(crate) fn prune(value: &mut Value, node: Node, remove: &FieldSet, keep: &FieldSet) {
    match value {
        Value::Object(map) if !node.is_atomic_map() => {
            map.retain(|name, child| {
                let element = PathElement::Field(name.clone());
                prune_child(child, node.field(name), &element, remove, keep)
            });
        }
        Value::Array(items) => match node.list_strategy() {
            ListStrategy::Atomic => {}
            ListStrategy::Set => items.retain_mut(|item| {
                let element = PathElement::Value(item.clone());
                prune_child(item, Node::Unknown, &element, remove, keep)
            }),
            ListStrategy::Map { keys, .. } => items.retain_mut(|item| {
                let Ok(element) = item_key(item, keys, &[]) else {
                    return true;
                };
                let Some((member, below)) = remove.get(&element) else {
                    return true;
                };
                if member && keep.get(&element).is_none() {
                    return false;
                }
                let mut below = below.clone();
                for key in keys {
                    below.remove(&PathElement::Field(key.name.to_owned()));
                }
                prune(item, node.elem(), &below, keep.below(&element));
                true
            }),
        },
        _ => {}
    }
}

/// Prunes one child; returns whether it stays.
fn prune_child(
    child: &mut Value,
    node: Node,
    element: &PathElement,
    remove: &FieldSet,
    keep: &FieldSet,
) -> bool {
    let Some((member, below)) = remove.get(element) else {
        return true;
    };
    let kept = keep.get(element);
    if member && kept.is_none() {
        return false;
    }
    prune(child, node, below, keep.below(element));
    true
}

/// The paths added or modified, and the paths removed, going from `old` to `new` (both
/// [`tracked`]). A path counts as modified only where it is a leaf on both sides.
pub(crate) fn compare(old: &Value, new: &Value, node: Node) -> (FieldSet, FieldSet) {
    let before = field_set(old, node, Strictness::Lenient).unwrap_or_default();
    let after = field_set(new, node, Strictness::Lenient).unwrap_or_default();
    let mut modified = FieldSet::new();
    collect_modified(old, new, node, &mut Vec::new(), &mut modified);
    let changed = after.difference(&before).union(&modified);
    (changed, before.difference(&after))
}

fn collect_modified(
    old: &Value,
    new: &Value,
    node: Node,
    path: &mut Vec<PathElement>,
    out: &mut FieldSet,
) {
    match (old, new) {
        (Value::Object(old), Value::Object(new))
            if !old.is_empty() && !new.is_empty() && !node.is_atomic_map() =>
        {
            for (name, value) in new {
                if let Some(previous) = old.get(name) {
                    path.push(PathElement::Field(name.clone()));
                    collect_modified(previous, value, node.field(name), path, out);
                    path.pop();
                }
            }
        }
        (Value::Array(old), Value::Array(new)) if !old.is_empty() && !new.is_empty() => {
            match node.list_strategy() {
                ListStrategy::Atomic if old != new => out.insert(path),
                ListStrategy::Atomic | ListStrategy::Set => {}
                ListStrategy::Map { keys, .. } => {
                    let key_of = |item: &Value| item_key(item, keys, &[]).ok();
                    let mut before = HashMap::new();
                    for item in old {
                        if let Some(key) = key_of(item) {
                            before.entry(key.encode()).or_insert(item);
                        }
                    }
                    for item in new {
                        let Some(key) = key_of(item) else {
                            continue;
                        };
                        if let Some(previous) = before.get(&key.encode()) {
                            path.push(key);
                            collect_modified(previous, item, node.elem(), path, out);
                            path.pop();
                        }
                    }
                }
            }
        }
        (old, new) if old != new && !path.is_empty() => out.insert(path),
        _ => {}
    }
}
