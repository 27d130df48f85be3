//! ManagedFields bookkeeping for ordinary writes (create, update, patch, subresources): the
//! writer becomes the owner of what it changed, in an "Update" entry.

use serde_json::{Map, Value};

use super::managed::{self, Entry, Operation};
use super::schema;
use super::typed;

/// Records an ordinary write (create when `old` is `None`, update, patch) by `manager`: the
/// fields it added or changed become its own ("Update" entry, removed from other managers), and
/// fields it removed are removed from every manager. Returns `new` with managedFields updated.
///
/// As in Kubernetes, managedFields sent in `new` replace the stored ones when they are valid and
/// not empty, `[{}]` clears them, and unreadable ones fall back to those of `old`. Bookkeeping
/// never fails a write.
pub fn record_update(
    kind: &str,
    old: Option<&Value>,
    new: &Value,
    manager: &str,
    now_rfc3339: &str,
) -> Value {
    let mut out = new.clone();
    if !new.is_object() {
        return out;
    }
    let mut entries = if managed::is_reset(new) {
        Vec::new()
    } else {
        match managed::decode(new) {
            Ok(entries) if !entries.is_empty() => entries,
            _ => old
                .and_then(|old| managed::decode(old).ok())
                .unwrap_or_default(),
        }
    };
    let empty = Value::Object(Map::new());
    let old = old.filter(|old| old.is_object()).unwrap_or(&empty);
    let (changed, removed) = typed::compare(
        &typed::tracked(old),
        &typed::tracked(new),
        schema::root(kind),
    );
    let api_version = new
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();

    let mut mine = None;
    for (at, entry) in entries.iter_mut().enumerate() {
        entry.fields = entry.fields.difference(&removed);
        if entry.belongs_to(manager, Operation::Update, api_version) {
            mine = Some(at);
        } else {
            entry.fields = entry.fields.difference(&changed);
        }
    }
    if !changed.is_empty() {
        match mine.and_then(|at| entries.get_mut(at)) {
            Some(entry) => {
                entry.fields = entry.fields.union(&changed);
                entry.time = Some(now_rfc3339.to_owned());
            }
            None => entries.push(Entry {
                manager: manager.to_owned(),
                operation: Operation::Update,
                api_version: api_version.to_owned(),
                time: Some(now_rfc3339.to_owned()),
                subresource: None,
                fields: changed,
            }),
        }
    }
    managed::write(&mut out, entries);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: &str = "2025-06-01T10:00:00Z";
    const LATER: &str = "2025-06-01T11:00:00Z";

    fn owned(object: &Value, manager: &str) -> Value {
        object["metadata"]["managedFields"]
            .as_array()
            .and_then(|list| list.iter().find(|e| e["manager"] == manager))
            .map_or(Value::Null, |entry| entry["fieldsV1"].clone())
    }

    fn deployment(replicas: u32) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
               "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
               "spec": {"replicas": replicas, "template": {"spec": {"containers": [{"name": "web"}]}}}})
    }

    #[test]
    fn create_owns_every_tracked_field() {
        let created = record_update("Deployment", None, &deployment(2), "kubectl-create", NOW);
        assert_eq!(
            created["metadata"]["managedFields"],
            json!([{"manager": "kubectl-create", "operation": "Update", "apiVersion": "apps/v1",
                "time": NOW, "fieldsType": "FieldsV1", "fieldsV1": {
                    "f:metadata": {"f:labels": {"f:app": {}}},
                    "f:spec": {"f:replicas": {}, "f:template": {"f:spec": {"f:containers": {
                        "k:{\"name\":\"web\"}": {".": {}, "f:name": {}}}}}}}}])
        );
    }

    #[test]
    fn a_change_moves_the_field_to_the_writer() {
        let created = record_update("Deployment", None, &deployment(2), "kubectl-create", NOW);
        let mut scaled = created.clone();
        scaled["spec"]["replicas"] = json!(4);
        scaled["status"] = json!({"replicas": 2});
        let scaled = record_update(
            "Deployment",
            Some(&created),
            &scaled,
            "kubectl-scale",
            LATER,
        );
        assert_eq!(
            owned(&scaled, "kubectl-scale"),
            json!({"f:spec": {"f:replicas": {}}, "f:status": {"f:replicas": {}}})
        );
        assert!(owned(&scaled, "kubectl-create")["f:spec"]
            .get("f:replicas")
            .is_none());
        assert_eq!(scaled["metadata"]["managedFields"][1]["time"], LATER);

        // A write that changes nothing leaves the entries and their times alone.
        let again = record_update(
            "Deployment",
            Some(&scaled),
            &scaled,
            "kubectl-scale",
            "2030-01-01T00:00:00Z",
        );
        assert_eq!(
            again["metadata"]["managedFields"],
            scaled["metadata"]["managedFields"]
        );
    }

    #[test]
    fn removals_and_empty_entries_disappear() {
        let first = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"},
                           "data": {"a": "1", "b": "2"}});
        let first = record_update("ConfigMap", None, &first, "first", NOW);
        let mut second = first.clone();
        second["data"] = json!({"a": "9"});
        let second = record_update("ConfigMap", Some(&first), &second, "second", LATER);
        assert_eq!(owned(&second, "first"), Value::Null);
        assert_eq!(owned(&second, "second"), json!({"f:data": {"f:a": {}}}));
    }

    #[test]
    fn managed_fields_sent_by_the_client_win_and_reset_clears() {
        let created = record_update("Deployment", None, &deployment(2), "kubectl-create", NOW);
        let mut rewritten = created.clone();
        rewritten["metadata"]["managedFields"] = json!([{"manager": "kubectl", "operation": "Apply",
            "apiVersion": "apps/v1", "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:replicas": {}}}}]);
        let migrated = record_update(
            "Deployment",
            Some(&created),
            &rewritten,
            "kubectl-client-side-apply",
            LATER,
        );
        assert_eq!(
            owned(&migrated, "kubectl"),
            json!({"f:spec": {"f:replicas": {}}})
        );
        assert_eq!(owned(&migrated, "kubectl-create"), Value::Null);

        let mut garbage = created.clone();
        garbage["metadata"]["managedFields"] = json!("nonsense");
        let kept = record_update("Deployment", Some(&created), &garbage, "x", LATER);
        assert_eq!(
            kept["metadata"]["managedFields"],
            created["metadata"]["managedFields"]
        );

        let mut reset = created.clone();
        reset["metadata"]["managedFields"] = json!([{}]);
        let reset = record_update("Deployment", Some(&created), &reset, "x", LATER);
        assert_eq!(reset["metadata"].get("managedFields"), None);
        assert_eq!(
            record_update("ConfigMap", None, &json!(7), "x", NOW),
            json!(7)
        );
    }
}
