//! `metadata.managedFields`: reading the entries of a stored object and writing them back in
//! Kubernetes' form and order.

use std::cmp::Ordering;
use std::fmt;

use serde_json::{Map, Value};

use super::fieldset::{FieldSet, FieldSetError};
use super::strategic::json_type;

/// The operation a managedFields entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Operation {
    /// Server-side apply.
    Apply,
    /// Any other write (create, update, patch).
    Update,
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Operation::Apply => "Apply",
            Operation::Update => "Update",
        })
    }
}

/// Why `metadata.managedFields` could not be read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ManagedFieldsError {
    /// `managedFields` is not a list.
    #[error("metadata.managedFields must be a list, got {found}")]
    NotAList {
        /// JSON type found.
        found: &'static str,
    },
    /// An entry is not an object.
    #[error("metadata.managedFields[{index}] must be an object, got {found}")]
    EntryNotObject {
        /// Position of the entry.
        index: usize,
        /// JSON type found.
        found: &'static str,
    },
    /// An entry has no `manager` string.
    #[error("metadata.managedFields[{index}] has no manager")]
    MissingManager {
        /// Position of the entry.
        index: usize,
    },
    /// `operation` is not `Apply` or `Update`.
    #[error(
        "metadata.managedFields[{index}].operation must be \"Apply\" or \"Update\", got {found}"
    )]
    BadOperation {
        /// Position of the entry.
        index: usize,
        /// The value given, as JSON.
        found: String,
    },
    /// `fieldsType` is not `FieldsV1`.
    #[error("metadata.managedFields[{index}].fieldsType must be \"FieldsV1\", got {found}")]
    BadFieldsType {
        /// Position of the entry.
        index: usize,
        /// The value given, as JSON.
        found: String,
    },
    /// `fieldsV1` is malformed.
    #[error("metadata.managedFields[{index}].fieldsV1: {source}")]
    BadFields {
        /// Position of the entry.
        index: usize,
        /// What is wrong with it.
        source: FieldSetError,
    },
}

/// One managedFields entry.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Entry {
    pub(crate) manager: String,
    pub(crate) operation: Operation,
    pub(crate) api_version: String,
    pub(crate) time: Option<String>,
    pub(crate) subresource: Option<String>,
    pub(crate) fields: FieldSet,
}

impl Entry {
    /// Whether this entry is the one `manager` writes with `operation` (Kubernetes keeps one
    /// entry per manager, operation, subresource and, for updates, API version).
    pub(crate) fn belongs_to(
        &self,
        manager: &str,
        operation: Operation,
        api_version: &str,
    ) -> bool {
        self.manager == manager
            && self.operation == operation
            && self.subresource.is_none()
            && (operation == Operation::Apply || self.api_version == api_version)
    }
}

/// Reads the entries of `object`; a missing or null list is empty.
pub(crate) fn decode(object: &Value) -> Result<Vec<Entry>, ManagedFieldsError> {
    let list = match object.get("metadata").and_then(|m| m.get("managedFields")) {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(list)) => list,
        Some(other) => {
            return Err(ManagedFieldsError::NotAList {
                found: json_type(other),
            })
        }
    };
    list.iter()
        .enumerate()
        .map(|(index, entry)| decode_entry(index, entry))
        .collect()
}

fn decode_entry(index: usize, entry: &Value) -> Result<Entry, ManagedFieldsError> {
    let Value::Object(entry) = entry else {
        return Err(ManagedFieldsError::EntryNotObject {
            index,
            found: json_type(entry),
        });
    };
    let text = |name: &str| entry.get(name).and_then(Value::as_str).map(str::to_owned);
    let manager = text("manager").ok_or(ManagedFieldsError::MissingManager { index })?;
    let operation = match entry.get("operation").and_then(Value::as_str) {
        Some("Apply") => Operation::Apply,
        Some("Update") => Operation::Update,
        _ => {
            return Err(ManagedFieldsError::BadOperation {
                index,
                found: entry
                    .get("operation")
                    .map_or_else(|| "nothing".to_owned(), Value::to_string),
            })
        }
    };
    match entry.get("fieldsType") {
        None | Some(Value::Null) => {}
        Some(Value::String(kind)) if kind == "FieldsV1" => {}
        Some(other) => {
            return Err(ManagedFieldsError::BadFieldsType {
                index,
                found: other.to_string(),
            })
        }
    }
    let fields = match entry.get("fieldsV1") {
        None | Some(Value::Null) => FieldSet::new(),
        Some(fields) => FieldSet::from_fields_v1(fields)
            .map_err(|source| ManagedFieldsError::BadFields { index, source })?,
    };
    Ok(Entry {
        manager,
        operation,
        api_version: text("apiVersion").unwrap_or_default(),
        time: text("time"),
        subresource: text("subresource").filter(|s| !s.is_empty()),
        fields,
    })
}

/// Whether the request asks to clear managedFields (Kubernetes' `[{}]` convention).
pub(crate) fn is_reset(object: &Value) -> bool {
    matches!(
        object.get("metadata").and_then(|m| m.get("managedFields")),
        Some(Value::Array(list)) if list.len() == 1 && list.first().is_some_and(|e| e.as_object().is_some_and(Map::is_empty))
    )
}

/// Writes `entries` into `object`: entries with empty sets dropped, the rest in Kubernetes'
/// order (operation, time, manager, apiVersion, subresource). No entries removes the field.
pub(crate) fn write(object: &mut Value, mut entries: Vec<Entry>) {
    let Value::Object(map) = object else {
        return;
    };
    entries.retain(|entry| !entry.fields.is_empty());
    entries.sort_by(order);
    let metadata = map
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if !metadata.is_object() {
        *metadata = Value::Object(Map::new());
    }
    let Value::Object(metadata) = metadata else {
        return;
    };
    if entries.is_empty() {
        metadata.shift_remove("managedFields");
    } else {
        let list = entries.iter().map(encode_entry).collect();
        metadata.insert("managedFields".to_owned(), Value::Array(list));
    }
}

fn order(a: &Entry, b: &Entry) -> Ordering {
    a.operation
        .cmp(&b.operation)
        .then_with(|| a.time.cmp(&b.time))
        .then_with(|| a.manager.cmp(&b.manager))
        .then_with(|| a.api_version.cmp(&b.api_version))
        .then_with(|| a.subresource.cmp(&b.subresource))
}

fn encode_entry(entry: &Entry) -> Value {
    let mut out = Map::new();
    out.insert("manager".to_owned(), Value::from(entry.manager.as_str()));
    out.insert(
        "operation".to_owned(),
        Value::from(entry.operation.to_string()),
    );
    out.insert(
        "apiVersion".to_owned(),
        Value::from(entry.api_version.as_str()),
    );
    if let Some(time) = &entry.time {
        out.insert("time".to_owned(), Value::from(time.as_str()));
    }
    out.insert("fieldsType".to_owned(), Value::from("FieldsV1"));
    out.insert("fieldsV1".to_owned(), entry.fields.to_fields_v1());
    if let Some(subresource) = &entry.subresource {
        out.insert("subresource".to_owned(), Value::from(subresource.as_str()));
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trips_and_sorts_entries() {
        let mut object = json!({"metadata": {"managedFields": [
            {"manager": "kubectl-edit", "operation": "Update", "apiVersion": "apps/v1",
             "time": "2025-01-02T00:00:00Z", "fieldsType": "FieldsV1",
             "fieldsV1": {"f:spec": {"f:replicas": {}}}},
            {"manager": "kubectl", "operation": "Apply", "apiVersion": "apps/v1",
             "time": "2025-01-03T00:00:00Z", "fieldsType": "FieldsV1",
             "fieldsV1": {"f:metadata": {"f:labels": {"f:app": {}}}}},
            {"manager": "controller", "operation": "Update", "apiVersion": "apps/v1",
             "time": "2025-01-01T00:00:00Z", "fieldsType": "FieldsV1",
             "fieldsV1": {"f:status": {"f:replicas": {}}}, "subresource": "status"}
        ]}});
        let entries = decode(&object);
        assert!(entries.as_ref().is_ok_and(|e| e.len() == 3));
        write(&mut object, entries.unwrap_or_default());
        let managers: Vec<&str> = object["metadata"]["managedFields"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["manager"].as_str())
            .collect();
        assert_eq!(managers, ["kubectl", "controller", "kubectl-edit"]);
        assert_eq!(
            object["metadata"]["managedFields"][1]["subresource"],
            "status"
        );
    }

    #[test]
    fn bad_entries_are_reported_with_their_position() {
        let bad = |fields: Value| decode(&json!({"metadata": {"managedFields": fields}}));
        assert!(matches!(
            bad(json!({})),
            Err(ManagedFieldsError::NotAList { found: "object" })
        ));
        assert!(matches!(
            bad(json!([{"operation": "Apply"}])),
            Err(ManagedFieldsError::MissingManager { index: 0 })
        ));
        assert!(matches!(
            bad(
                json!([{"manager": "a", "operation": "Apply"}, {"manager": "b", "operation": "Merge"}])
            ),
            Err(ManagedFieldsError::BadOperation { index: 1, .. })
        ));
        assert!(matches!(
            bad(json!([{"manager": "a", "operation": "Update", "fieldsV1": {"f:x": 1}}])),
            Err(ManagedFieldsError::BadFields { index: 0, .. })
        ));
        assert!(is_reset(&json!({"metadata": {"managedFields": [{}]}})));
        assert!(!is_reset(&json!({"metadata": {"managedFields": []}})));
    }
}
