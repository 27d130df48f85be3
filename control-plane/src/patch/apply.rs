//! Server-side apply (`application/apply-patch+yaml`) with structured-merge-diff's semantics:
//!
//! * an applier owns exactly the fields of its latest applied configuration;
//! * fields it applied before and left out now are removed, unless another manager owns them;
//! * changing a field another manager owns is a conflict, unless forced (then ownership moves).
//!
//! Ordinary writes record their ownership with [`super::update::record_update`].
//!
//! `apiVersion`, `kind` and server-set metadata (name, uid, resourceVersion, …) are never owned;
//! labels, annotations, finalizers and ownerReferences are. Main-resource applies ignore `status`.

use serde_json::{Map, Value};

pub use super::conflict::{conflict_message, FieldConflict};
use super::fieldset::{path_string, FieldSet};
use super::managed::{self, Entry};
pub use super::managed::{ManagedFieldsError, Operation};
use super::schema;
use super::strategic::json_type;
pub use super::typed::ObjectError;
use super::typed::{self, Strictness};

/// The manager Kubernetes credits with everything in an object that predates managedFields.
const BEFORE_FIRST_APPLY: &str = "before-first-apply";

/// Metadata an applied configuration may carry but that the server alone sets.
const SERVER_SET_METADATA: &[&str] = &[
    "uid",
    "resourceVersion",
    "creationTimestamp",
    "generation",
    "selfLink",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
];

/// Why an apply was refused. Nothing is changed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ApplyError {
    /// Fields owned by other managers would change (HTTP 409 with `FieldManagerConflict` causes).
    #[error("{}", conflict_message(conflicts))]
    Conflict {
        /// Every conflicting field, grouped by manager.
        conflicts: Vec<FieldConflict>,
    },
    /// The applied configuration is not a JSON object.
    #[error("apply configuration must be a json object, got {found}")]
    AppliedNotObject {
        /// JSON type given.
        found: &'static str,
    },
    /// The applied configuration's `kind` is missing or not the resource's kind.
    #[error("apply configuration has kind {found}, but the request is for kind {expected:?}")]
    KindMismatch {
        /// The resource's kind.
        expected: String,
        /// The kind given, as JSON (`nothing` when absent).
        found: String,
    },
    /// The applied configuration has no `apiVersion`.
    #[error("apply configuration must set apiVersion")]
    MissingApiVersion,
    /// The applied configuration carries managedFields.
    #[error("metadata.managedFields must be nil")]
    ManagedFieldsInApply,
    /// The stored object is not a JSON object.
    #[error("the live object must be a json object, got {found}")]
    LiveNotObject {
        /// JSON type found.
        found: &'static str,
    },
    /// The stored object's managedFields are unreadable.
    #[error("failed to decode managed fields of the live object: {0}")]
    ManagedFields(#[from] ManagedFieldsError),
    /// A list in the applied configuration breaks its schema (missing or duplicate keys).
    #[error("invalid apply configuration: {0}")]
    Object(#[from] ObjectError),
}

/// Server-side applies `applied` (a configuration of `kind`) by `manager` over `live` (`None`
/// creates). Returns the new object with `metadata.managedFields` updated; the caller still sets
/// server fields (uid, resourceVersion, timestamps) and validates the result.
pub fn server_side_apply(
    kind: &str,
    live: Option<&Value>,
    applied: &Value,
    manager: &str,
    force: bool,
    now_rfc3339: &str,
) -> Result<Value, ApplyError> {
    let config = applied_config(kind, applied)?;
    let api_version = config
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let live = match live {
        Some(Value::Object(live)) => Some(Value::Object(live.clone())),
        Some(other) => {
            return Err(ApplyError::LiveNotObject {
                found: json_type(other),
            })
        }
        None => None,
    };
    let node = schema::root(kind);
    let config = Value::Object(config);
    let applied_set = typed::field_set(&typed::tracked(&config), node, Strictness::Strict)?;

    let live_object = live.clone().unwrap_or_else(|| Value::Object(Map::new()));
    let mut entries = managed::decode(&live_object)?;
    if live.is_some() && entries.is_empty() {
        let everything = typed::field_set(&typed::tracked(&live_object), node, Strictness::Lenient)
            .unwrap_or_default();
        entries.push(Entry {
            manager: BEFORE_FIRST_APPLY.to_owned(),
            operation: Operation::Update,
            api_version: live_object
                .get("apiVersion")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            time: Some(now_rfc3339.to_owned()),
            subresource: None,
            fields: everything,
        });
    }

    let mine = entries
        .iter()
        .position(|e| e.belongs_to(manager, Operation::Apply, &api_version));
    let own = Entry {
        manager: manager.to_owned(),
        operation: Operation::Apply,
        api_version,
        time: Some(now_rfc3339.to_owned()),
        subresource: None,
        fields: applied_set,
    };
    let (mine, previous) = match mine {
        Some(at) => match entries.get_mut(at) {
            Some(entry) => (at, std::mem::replace(entry, own).fields),
            None => (at, FieldSet::new()),
        },
        None => {
            entries.push(own);
            (entries.len() - 1, FieldSet::new())
        }
    };

    let owned = entries
        .iter()
        .fold(FieldSet::new(), |all, e| all.union(&e.fields));
    let mut merged = typed::merge(&live_object, &config, node);
    typed::prune(&mut merged, node, &previous.difference(&owned), &owned);

    let (changed, removed) = typed::compare(
        &typed::tracked(&live_object),
        &typed::tracked(&merged),
        node,
    );
    let mut conflicts = Vec::new();
    for (at, entry) in entries.iter_mut().enumerate() {
        if at == mine {
            continue;
        }
        let taken = entry.fields.intersection(&changed);
        conflicts.extend(taken.paths().iter().map(|path| FieldConflict {
            manager: entry.manager.clone(),
            operation: entry.operation,
            api_version: entry.api_version.clone(),
            field: path_string(path),
        }));
        entry.fields = entry.fields.difference(&taken).difference(&removed);
    }
    if !force && !conflicts.is_empty() {
        conflicts.sort_by(|a, b| {
            (&a.manager, a.operation, &a.api_version).cmp(&(
                &b.manager,
                b.operation,
                &b.api_version,
            ))
        });
        return Err(ApplyError::Conflict { conflicts });
    }
    managed::write(&mut merged, entries);
    Ok(merged)
}

/// Checks the applied configuration and returns it without what apply ignores: `status`,
/// server-set metadata and null fields.
fn applied_config(kind: &str, applied: &Value) -> Result<Map<String, Value>, ApplyError> {
    let Value::Object(config) = applied else {
        return Err(ApplyError::AppliedNotObject {
            found: json_type(applied),
        });
    };
    match config.get("kind") {
        Some(Value::String(found)) if found == kind => {}
        other => {
            return Err(ApplyError::KindMismatch {
                expected: kind.to_owned(),
                found: other.map_or_else(|| "nothing".to_owned(), Value::to_string),
            })
        }
    }
    if config
        .get("apiVersion")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        return Err(ApplyError::MissingApiVersion);
    }
    let managed_fields = config.get("metadata").and_then(|m| m.get("managedFields"));
    if managed_fields
        .is_some_and(|m| !m.is_null() && m.as_array().is_none_or(|list| !list.is_empty()))
    {
        return Err(ApplyError::ManagedFieldsInApply);
    }
    let mut config = config.clone();
    config.shift_remove("status");
    if let Some(Value::Object(metadata)) = config.get_mut("metadata") {
        metadata.retain(|field, _| {
            field != "managedFields" && !SERVER_SET_METADATA.contains(&field.as_str())
        });
    }
    drop_nulls(&mut config);
    Ok(config)
}

/// An applied `null` means "not set by me"; it must neither be stored nor owned.
fn drop_nulls(map: &mut Map<String, Value>) {
    map.retain(|_, value| !value.is_null());
    for value in map.values_mut() {
        match value {
            Value::Object(inner) => drop_nulls(inner),
            Value::Array(items) => items
                .iter_mut()
                .filter_map(Value::as_object_mut)
                .for_each(drop_nulls),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::update::record_update;
    use super::*;
    use serde_json::json;

    const NOW: &str = "2025-06-01T10:00:00Z";
    const LATER: &str = "2025-06-01T11:00:00Z";

    fn apply(
        live: Option<&Value>,
        applied: &Value,
        manager: &str,
        force: bool,
    ) -> Result<Value, ApplyError> {
        server_side_apply("Deployment", live, applied, manager, force, NOW)
    }

    fn applied(live: Option<&Value>, config: &Value, manager: &str) -> Value {
        match apply(live, config, manager, false) {
            Ok(object) => object,
            Err(err) => panic!("apply by {manager} failed: {err}"),
        }
    }

    /// The fieldsV1 of `manager`'s entry (`Null` when it has none).
    fn owned(object: &Value, manager: &str) -> Value {
        object["metadata"]["managedFields"]
            .as_array()
            .and_then(|list| list.iter().find(|e| e["manager"] == manager))
            .map_or(Value::Null, |entry| entry["fieldsV1"].clone())
    }

    fn config(spec: Value) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
               "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
               "spec": spec})
    }

    fn web_spec(replicas: u32, image: &str) -> Value {
        json!({"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
               "template": {"metadata": {"labels": {"app": "web"}},
                            "spec": {"containers": [{"name": "web", "image": image, "ports": [{"containerPort": 80}]}]}}})
    }

    #[test]
    fn first_apply_creates_the_object_and_its_ownership() {
        let object = applied(None, &config(web_spec(2, "nginx")), "kubectl");
        assert_eq!(object["spec"]["replicas"], 2);
        assert_eq!(object["metadata"]["name"], "web");
        assert_eq!(
            object["metadata"]["managedFields"],
            json!([{"manager": "kubectl", "operation": "Apply", "apiVersion": "apps/v1", "time": NOW,
                "fieldsType": "FieldsV1", "fieldsV1": {
                    "f:metadata": {"f:labels": {"f:app": {}}},
                    "f:spec": {
                        "f:replicas": {},
                        "f:selector": {},
                        "f:template": {
                            "f:metadata": {"f:labels": {"f:app": {}}},
                            "f:spec": {"f:containers": {"k:{\"name\":\"web\"}": {
                                ".": {}, "f:image": {}, "f:name": {},
                                "f:ports": {"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {
                                    ".": {}, "f:containerPort": {}}}}}}}}}}])
        );
    }

    #[test]
    fn reapplying_without_a_field_removes_it() {
        let mut first = config(web_spec(2, "nginx"));
        first["metadata"]["labels"]["tier"] = json!("front");
        first["metadata"]["finalizers"] = json!(["a", "b"]);
        let object = applied(None, &first, "kubectl");
        let mut spec = web_spec(2, "nginx");
        spec.as_object_mut().map(|s| s.shift_remove("replicas"));
        let mut second = config(spec);
        second["metadata"]["finalizers"] = json!(["a"]);
        let object = applied(Some(&object), &second, "kubectl");
        assert_eq!(object["metadata"]["labels"], json!({"app": "web"}));
        assert_eq!(object["metadata"]["finalizers"], json!(["a"]));
        assert!(object["spec"].get("replicas").is_none());
        assert!(owned(&object, "kubectl")["f:spec"]
            .get("f:replicas")
            .is_none());
    }

    #[test]
    fn a_field_two_appliers_own_survives_when_one_drops_it() {
        let mut a = config(web_spec(2, "nginx"));
        a["metadata"]["labels"]["team"] = json!("blue");
        let object = applied(None, &a, "alice");
        let b = json!({"apiVersion": "apps/v1", "kind": "Deployment",
                       "metadata": {"name": "web", "labels": {"team": "blue"}}});
        let object = applied(Some(&object), &b, "bob");
        let object = applied(Some(&object), &config(web_spec(2, "nginx")), "alice");
        assert_eq!(object["metadata"]["labels"]["team"], "blue");
        assert_eq!(
            owned(&object, "bob"),
            json!({"f:metadata": {"f:labels": {"f:team": {}}}})
        );
        assert!(owned(&object, "alice")["f:metadata"]["f:labels"]
            .get("f:team")
            .is_none());
    }

    #[test]
    fn changing_a_field_an_updater_owns_conflicts() {
        let created = record_update(
            "Deployment",
            None,
            &config(web_spec(2, "nginx")),
            "kubectl-client-side-apply",
            NOW,
        );
        let err = apply(
            Some(&created),
            &config(web_spec(3, "nginx")),
            "kubectl",
            false,
        );
        let Err(ApplyError::Conflict { conflicts }) = err else {
            panic!("expected a conflict, got {err:?}");
        };
        assert_eq!(
            conflicts,
            [FieldConflict {
                manager: "kubectl-client-side-apply".into(),
                operation: Operation::Update,
                api_version: "apps/v1".into(),
                field: ".spec.replicas".into(),
            }]
        );
        assert_eq!(
            ApplyError::Conflict { conflicts }.to_string(),
            "Apply failed with 1 conflict: conflict with \"kubectl-client-side-apply\" using apps/v1: .spec.replicas"
        );
        // Applying the values already there is no conflict: both managers share the fields.
        let shared = applied(Some(&created), &config(web_spec(2, "nginx")), "kubectl");
        assert!(owned(&shared, "kubectl-client-side-apply")["f:spec"]
            .get("f:replicas")
            .is_some());
        assert!(owned(&shared, "kubectl")["f:spec"]
            .get("f:replicas")
            .is_some());
    }

    #[test]
    fn several_conflicts_are_listed_per_manager() {
        let created = record_update(
            "Deployment",
            None,
            &config(web_spec(2, "nginx")),
            "kubectl-client-side-apply",
            NOW,
        );
        let mut changed = config(web_spec(3, "nginx"));
        changed["metadata"]["labels"]["app"] = json!("api");
        let message = apply(Some(&created), &changed, "kubectl", false)
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            message.as_deref(),
            Some("Apply failed with 2 conflicts: conflicts with \"kubectl-client-side-apply\" using apps/v1:\n- .metadata.labels.app\n- .spec.replicas")
        );
    }

    #[test]
    fn force_moves_ownership_to_the_applier() {
        let created = record_update(
            "Deployment",
            None,
            &config(web_spec(2, "nginx")),
            "kubectl-client-side-apply",
            NOW,
        );
        let forced = apply(
            Some(&created),
            &config(web_spec(3, "nginx")),
            "kubectl",
            true,
        );
        let Ok(object) = forced else {
            panic!("forced apply failed: {forced:?}");
        };
        assert_eq!(object["spec"]["replicas"], 3);
        let previous = owned(&object, "kubectl-client-side-apply");
        assert!(previous["f:spec"].get("f:replicas").is_none());
        assert!(previous["f:spec"].get("f:selector").is_some());
        assert_eq!(owned(&object, "kubectl")["f:spec"]["f:replicas"], json!({}));
    }

    #[test]
    fn an_edit_takes_the_field_and_the_next_apply_conflicts() {
        let object = applied(None, &config(web_spec(2, "nginx")), "kubectl");
        let mut edited = object.clone();
        edited["spec"]["replicas"] = json!(5);
        let edited = record_update("Deployment", Some(&object), &edited, "kubectl-edit", LATER);
        assert_eq!(
            owned(&edited, "kubectl-edit"),
            json!({"f:spec": {"f:replicas": {}}})
        );
        assert!(owned(&edited, "kubectl")["f:spec"]
            .get("f:replicas")
            .is_none());
        let err = apply(
            Some(&edited),
            &config(web_spec(2, "nginx")),
            "kubectl",
            false,
        )
        .err();
        assert!(err.is_some_and(|e| e
            .to_string()
            .contains("conflict with \"kubectl-edit\" using apps/v1: .spec.replicas")));
    }

    #[test]
    fn keyed_list_items_are_owned_one_by_one() {
        let object = applied(None, &config(web_spec(2, "nginx")), "alice");
        let sidecar = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"template": {"spec": {"containers": [{"name": "log", "image": "fluent"}]}}}});
        let object = applied(Some(&object), &sidecar, "bob");
        let names = |object: &Value| -> Vec<String> {
            object["spec"]["template"]["spec"]["containers"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|c| c["name"].as_str().map(str::to_owned))
                .collect()
        };
        assert_eq!(names(&object), ["web", "log"]);
        let bobs = &owned(&object, "bob")["f:spec"]["f:template"]["f:spec"]["f:containers"];
        assert_eq!(
            bobs,
            &json!({"k:{\"name\":\"log\"}": {".": {}, "f:image": {}, "f:name": {}}})
        );

        // Alice changes her container without touching bob's, then bob drops his.
        let object = applied(Some(&object), &config(web_spec(2, "nginx:2")), "alice");
        assert_eq!(
            object["spec"]["template"]["spec"]["containers"][0]["image"],
            "nginx:2"
        );
        let empty =
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}});
        let object = applied(Some(&object), &empty, "bob");
        assert_eq!(names(&object), ["web"]);
        assert_eq!(owned(&object, "bob"), Value::Null);
    }

    #[test]
    fn status_is_ignored_and_old_objects_belong_to_before_first_apply() {
        let live = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
                          "spec": {"replicas": 1}, "status": {"replicas": 1}});
        let mut config = config(web_spec(1, "nginx"));
        config["status"] = json!({"replicas": 9});
        let object = applied(Some(&live), &config, "kubectl");
        assert_eq!(object["status"], json!({"replicas": 1}));
        assert!(owned(&object, "kubectl").get("f:status").is_none());
        assert_eq!(
            owned(&object, "before-first-apply")["f:status"],
            json!({"f:replicas": {}})
        );

        let err = apply(
            Some(&live),
            &self::config(web_spec(2, "nginx")),
            "kubectl",
            false,
        )
        .err();
        assert!(err.is_some_and(|e| e
            .to_string()
            .contains("\"before-first-apply\" using apps/v1: .spec.replicas")));
    }

    #[test]
    fn bad_input_is_refused_cleanly() {
        let good = config(web_spec(1, "nginx"));
        assert!(matches!(
            apply(None, &json!("x"), "m", false),
            Err(ApplyError::AppliedNotObject { found: "string" })
        ));
        let mut wrong_kind = good.clone();
        wrong_kind["kind"] = json!("Pod");
        assert!(
            matches!(apply(None, &wrong_kind, "m", false), Err(ApplyError::KindMismatch { ref found, .. }) if found == "\"Pod\"")
        );
        let mut no_version = good.clone();
        no_version
            .as_object_mut()
            .map(|o| o.shift_remove("apiVersion"));
        assert_eq!(
            apply(None, &no_version, "m", false),
            Err(ApplyError::MissingApiVersion)
        );
        let mut with_managed = good.clone();
        with_managed["metadata"]["managedFields"] = json!([{"manager": "x"}]);
        assert_eq!(
            apply(None, &with_managed, "m", false),
            Err(ApplyError::ManagedFieldsInApply)
        );

        let unnamed = config(json!({"template": {"spec": {"containers": [{"image": "nginx"}]}}}));
        assert!(matches!(
            apply(None, &unnamed, "m", false),
            Err(ApplyError::Object(ObjectError::MissingKey {
                key: "name",
                ..
            }))
        ));
        let twice =
            config(json!({"template": {"spec": {"containers": [{"name": "a"}, {"name": "a"}]}}}));
        let err = apply(None, &twice, "m", false).err().map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("invalid apply configuration: .spec.template.spec.containers: duplicate entries for key [name=\"a\"]")
        );
        assert!(matches!(
            apply(Some(&json!([])), &good, "m", false),
            Err(ApplyError::LiveNotObject { found: "array" })
        ));
        let corrupt =
            json!({"metadata": {"managedFields": [{"manager": "x", "operation": "Sideways"}]}});
        assert!(matches!(
            apply(Some(&corrupt), &good, "m", false),
            Err(ApplyError::ManagedFields(_))
        ));
    }
}
