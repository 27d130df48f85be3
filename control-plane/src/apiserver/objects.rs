//! Where objects live in the store and the metadata rules every write follows (the "strategy" of
//! a Kubernetes registry): names, namespaces, uid, creationTimestamp, generation, what an update
//! may and may not change, and typed validation.

use serde_json::{json, Value};

use super::resources::Resource;
use super::status::{ApiError, FieldError};
use super::typed;
use crate::store::KeyValue;

/// The storage key of one object.
pub fn key(resource: &Resource, namespace: Option<&str>, name: &str) -> String {
    format!("{}{name}", prefix(resource, namespace))
}

/// The storage prefix of a collection: every namespace when `namespace` is None.
pub fn prefix(resource: &Resource, namespace: Option<&str>) -> String {
    let group = if resource.group.is_empty() {
        "core"
    } else {
        resource.group
    };
    match namespace {
        Some(ns) if resource.namespaced => format!("/registry/{group}/{}/{ns}/", resource.plural),
        _ => format!("/registry/{group}/{}/", resource.plural),
    }
}

/// Parses a stored value and stamps its resourceVersion.
pub fn from_kv(kv: &KeyValue) -> Result<Value, ApiError> {
    let mut v: Value = serde_json::from_slice(&kv.value)
        .map_err(|e| ApiError::internal(format!("stored object {} is not JSON: {e}", kv.key)))?;
    set_meta(
        &mut v,
        "resourceVersion",
        json!(kv.mod_revision.to_string()),
    );
    Ok(v)
}

/// The bytes to store: the object without its resourceVersion (the store revision is the
/// resourceVersion, so storing it would be stale the moment it is written).
pub fn to_stored(object: &Value) -> Result<bytes::Bytes, ApiError> {
    let mut v = object.clone();
    if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
        m.remove("selfLink");
    }
    serde_json::to_vec(&v)
        .map(bytes::Bytes::from)
        .map_err(|e| ApiError::internal(format!("cannot encode object: {e}")))
}

/// `metadata.<field>` as a string.
pub fn meta_str<'a>(object: &'a Value, field: &str) -> Option<&'a str> {
    object.get("metadata")?.get(field)?.as_str()
}

/// Sets `metadata.<field>`, creating metadata if needed.
pub fn set_meta(object: &mut Value, field: &str, value: Value) {
    if let Some(obj) = object.as_object_mut() {
        let meta = obj.entry("metadata").or_insert_with(|| json!({}));
        if !meta.is_object() {
            *meta = json!({});
        }
        if let Some(m) = meta.as_object_mut() {
            m.insert(field.to_string(), value);
        }
    }
}

/// Removes `metadata.<field>`.
pub fn remove_meta(object: &mut Value, field: &str) -> Option<Value> {
    object.get_mut("metadata")?.as_object_mut()?.remove(field)
}

/// The current time as Kubernetes writes it (RFC 3339, seconds).
pub fn now_rfc3339() -> String {
    rfc3339(time::OffsetDateTime::now_utc())
}

/// `at` in RFC 3339, UTC, seconds precision, as Kubernetes writes times.
pub fn rfc3339(at: time::OffsetDateTime) -> String {
    let now = at.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second()
    )
}

/// Checks that a body is an object of the kind the path addresses and fills in apiVersion/kind
/// when missing (kubectl always sends them; other clients may not).
pub fn check_kind(resource: &Resource, object: &mut Value) -> Result<(), ApiError> {
    let Some(obj) = object.as_object_mut() else {
        return Err(ApiError::bad_request(
            "the request body must be a JSON object",
        ));
    };
    let want_version = resource.api_version();
    match obj.get("apiVersion").and_then(Value::as_str) {
        None | Some("") => {
            obj.insert("apiVersion".into(), json!(want_version));
        }
        Some(v) if v == want_version => {}
        Some(v) => {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({v}) does not match the expected API version ({want_version})"
            )))
        }
    }
    match obj.get("kind").and_then(Value::as_str) {
        None | Some("") => {
            obj.insert("kind".into(), json!(resource.kind));
        }
        Some(k) if k == resource.kind => {}
        Some(k) => {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({k}) does not match the expected kind ({}) for {}",
                resource.kind, resource.plural
            )))
        }
    }
    if obj
        .get("metadata")
        .is_some_and(|m| !m.is_object() && !m.is_null())
    {
        return Err(ApiError::bad_request("metadata must be an object"));
    }
    Ok(())
}

/// Fills namespace from the path and refuses a body naming another one.
pub fn check_namespace(
    resource: &Resource,
    path_namespace: Option<&str>,
    object: &mut Value,
) -> Result<(), ApiError> {
    if !resource.namespaced {
        remove_meta(object, "namespace");
        return Ok(());
    }
    let Some(path_ns) = path_namespace else {
        return Err(ApiError::bad_request(format!(
            "{} must be created in a namespace",
            resource.plural
        )));
    };
    match meta_str(object, "namespace") {
        None | Some("") => set_meta(object, "namespace", json!(path_ns)),
        Some(ns) if ns == path_ns => {}
        Some(ns) => {
            return Err(ApiError::bad_request(format!(
                "the namespace of the provided object ({ns}) does not match the namespace sent on the request ({path_ns})"
            )))
        }
    }
    Ok(())
}

/// Resources whose objects count their spec changes in metadata.generation.
fn has_generation(resource: &Resource) -> bool {
    matches!(
        resource.kind,
        "Deployment" | "ReplicaSet" | "DaemonSet" | "StatefulSet" | "Job" | "ReplicationController"
    )
}

/// Resources whose status is written only through the status subresource.
pub fn has_status_subresource(resource: &Resource) -> bool {
    resource.subresource("status").is_some()
}

/// The outcome of typed checks on a write.
pub struct Checked {
    /// The object to store.
    pub object: Value,
    /// Warnings to return in `Warning` headers (fieldValidation=Warn).
    pub warnings: Vec<String>,
}

/// How unknown fields are treated (`fieldValidation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldValidation {
    /// Refuse with 400.
    Strict,
    /// Accept, and warn.
    Warn,
    /// Accept silently.
    Ignore,
}

impl FieldValidation {
    /// Parses the query parameter; the server default is Warn, as in Kubernetes.
    pub fn parse(v: Option<&str>) -> Result<FieldValidation, ApiError> {
        match v {
            None | Some("") | Some("Warn") => Ok(FieldValidation::Warn),
            Some("Strict") => Ok(FieldValidation::Strict),
            Some("Ignore") => Ok(FieldValidation::Ignore),
            Some(other) => Err(ApiError::bad_request(format!(
                "fieldValidation parameter unsupported: {other}, must be one of Ignore, Warn, Strict"
            ))),
        }
    }
}

/// Validates and defaults an object about to be written.
pub fn check(
    resource: &Resource,
    object: Value,
    validation: FieldValidation,
) -> Result<Checked, ApiError> {
    let name = meta_str(&object, "name").unwrap_or_default().to_string();
    // The validators return whole field errors ("metadata.name: Invalid value: …").
    let errors: Vec<FieldError> =
        bramble_api::validation::validate_object_name(resource.kind, &name)
            .into_iter()
            .chain(
                object
                    .pointer("/metadata/labels")
                    .and_then(Value::as_object)
                    .map(bramble_api::validation::validate_labels)
                    .unwrap_or_default(),
            )
            .chain(
                object
                    .pointer("/metadata/annotations")
                    .and_then(Value::as_object)
                    .map(bramble_api::validation::validate_annotations)
                    .unwrap_or_default(),
            )
            .map(|full| FieldError::from_message(&full))
            .collect();
    if !errors.is_empty() {
        return Err(ApiError::invalid(resource, resource.kind, &name, errors));
    }
    let normalized = typed::normalize(resource.kind, object).map_err(|e| {
        ApiError::bad_request(format!(
            "{} in version \"{}\" cannot be handled as a {}: {}",
            resource.kind, resource.version, resource.kind, e.message
        ))
    })?;
    let mut warnings = Vec::new();
    if !normalized.unknown_fields.is_empty() {
        match validation {
            FieldValidation::Strict => {
                let list: Vec<String> = normalized
                    .unknown_fields
                    .iter()
                    .map(|f| format!("unknown field \"{f}\""))
                    .collect();
                return Err(ApiError::bad_request(format!(
                    "strict decoding error: {}",
                    list.join(", ")
                )));
            }
            FieldValidation::Warn => {
                warnings.extend(
                    normalized
                        .unknown_fields
                        .iter()
                        .map(|f| format!("unknown field \"{f}\"")),
                );
            }
            FieldValidation::Ignore => {}
        }
    }
    let spec_errors = validate_spec(resource, &normalized.object);
    if !spec_errors.is_empty() {
        return Err(ApiError::invalid(
            resource,
            resource.kind,
            &name,
            spec_errors,
        ));
    }
    Ok(Checked {
        object: normalized.object,
        warnings,
    })
}

/// The checks of a kind's spec that matter before controllers act on it.
fn validate_spec(resource: &Resource, object: &Value) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let pod_spec = |path: &str, spec: Option<&Value>, errors: &mut Vec<FieldError>| {
        let containers = spec
            .and_then(|s| s.get("containers"))
            .and_then(Value::as_array);
        match containers {
            None => errors.push(FieldError::required(format!("{path}.containers"))),
            Some(list) if list.is_empty() => {
                errors.push(FieldError::required(format!("{path}.containers")))
            }
            Some(list) => {
                let mut seen = std::collections::HashSet::new();
                for (i, c) in list.iter().enumerate() {
                    let name = c.get("name").and_then(Value::as_str).unwrap_or("");
                    if name.is_empty() {
                        errors.push(FieldError::required(format!("{path}.containers[{i}].name")));
                    } else if !seen.insert(name.to_string()) {
                        errors.push(FieldError {
                            reason: "FieldValueDuplicate",
                            field: format!("{path}.containers[{i}].name"),
                            message: format!("Duplicate value: \"{name}\""),
                        });
                    } else {
                        for msg in bramble_api::validation::is_dns1123_label(name) {
                            errors.push(FieldError::invalid(
                                format!("{path}.containers[{i}].name"),
                                name,
                                msg,
                            ));
                        }
                    }
                    if c.get("image")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .is_empty()
                    {
                        errors.push(FieldError::required(format!(
                            "{path}.containers[{i}].image"
                        )));
                    }
                }
            }
        }
    };
    match resource.kind {
        "Pod" => pod_spec("spec", object.get("spec"), &mut errors),
        "Deployment" | "ReplicaSet" | "DaemonSet" | "StatefulSet" | "Job" => {
            let spec = object.get("spec");
            if resource.kind != "Job" {
                let selector = spec.and_then(|s| s.get("selector"));
                if selector.is_none() {
                    errors.push(FieldError::required("spec.selector"));
                }
                let labels = spec
                    .and_then(|s| s.pointer("/template/metadata/labels"))
                    .and_then(Value::as_object);
                if let (Some(sel), Some(labels)) = (selector, labels) {
                    match bramble_api::labels::Selector::from_label_selector(sel) {
                        Ok(s) => {
                            let map = labels
                                .iter()
                                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                                .collect();
                            if s.is_empty() {
                                errors.push(FieldError::invalid(
                                    "spec.selector",
                                    "",
                                    "empty selector is invalid for deployment",
                                ));
                            } else if !s.matches(&map) {
                                errors.push(FieldError::invalid(
                                    "spec.template.metadata.labels",
                                    &format!("{labels:?}"),
                                    "`selector` does not match template `labels`",
                                ));
                            }
                        }
                        Err(e) => errors.push(FieldError::invalid("spec.selector", "", e)),
                    }
                }
            }
            pod_spec(
                "spec.template.spec",
                spec.and_then(|s| s.pointer("/template/spec")),
                &mut errors,
            );
            if let Some(r) = spec.and_then(|s| s.get("replicas")).and_then(Value::as_i64) {
                if r < 0 {
                    errors.push(FieldError::invalid(
                        "spec.replicas",
                        &r.to_string(),
                        "must be greater than or equal to 0",
                    ));
                }
            }
        }
        _ => {}
    }
    errors
}

/// Metadata set on create: uid, creationTimestamp, generation; name from generateName.
pub fn prepare_create(resource: &Resource, object: &mut Value) -> Result<(), ApiError> {
    if meta_str(object, "name").unwrap_or("").is_empty() {
        match meta_str(object, "generateName") {
            Some(base) if !base.is_empty() => {
                let suffix = random_suffix();
                let base: String = base.chars().take(58).collect();
                set_meta(object, "name", json!(format!("{base}{suffix}")));
            }
            _ => {
                return Err(ApiError::invalid(
                    resource,
                    resource.kind,
                    "",
                    vec![FieldError {
                        reason: "FieldValueRequired",
                        field: "metadata.name".into(),
                        message: "Required value: name or generateName is required".into(),
                    }],
                ))
            }
        }
    }
    if meta_str(object, "resourceVersion").is_some_and(|rv| !rv.is_empty()) {
        return Err(ApiError::bad_request(
            "resourceVersion should not be set on objects to be created",
        ));
    }
    set_meta(object, "uid", json!(uuid::Uuid::new_v4().to_string()));
    set_meta(object, "creationTimestamp", json!(now_rfc3339()));
    remove_meta(object, "deletionTimestamp");
    remove_meta(object, "deletionGracePeriodSeconds");
    remove_meta(object, "resourceVersion");
    if has_generation(resource) {
        set_meta(object, "generation", json!(1));
    }
    if resource.kind == "Pod" {
        if let Some(obj) = object.as_object_mut() {
            let status = obj.entry("status").or_insert_with(|| json!({}));
            if status.get("phase").is_none() {
                status["phase"] = json!("Pending");
            }
            if status.get("qosClass").is_none() {
                status["qosClass"] = json!("BestEffort");
            }
        }
    } else if has_status_subresource(resource) && resource.kind != "Namespace" {
        // Status is the controllers' to write; a client's create cannot set it.
        if let Some(obj) = object.as_object_mut() {
            obj.remove("status");
        }
    }
    Ok(())
}

/// Carries over what an update may not change and bumps generation when the spec changed.
/// `subresource` is "status" for status writes: then only status comes from `new`.
pub fn prepare_update(
    resource: &Resource,
    old: &Value,
    new: &mut Value,
    subresource: Option<&str>,
) -> Result<(), ApiError> {
    let name = meta_str(old, "name").unwrap_or_default().to_string();
    if let Some(new_name) = meta_str(new, "name") {
        if !new_name.is_empty() && new_name != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({new_name}) does not match the name on the URL ({name})"
            )));
        }
    }
    if subresource == Some("status") {
        let status = new.get("status").cloned();
        let mut merged = old.clone();
        if let Some(obj) = merged.as_object_mut() {
            match status {
                Some(s) => obj.insert("status".into(), s),
                None => obj.remove("status"),
            };
        }
        *new = merged;
        return Ok(());
    }
    for field in [
        "name",
        "namespace",
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generation",
    ] {
        match old.get("metadata").and_then(|m| m.get(field)) {
            Some(v) => set_meta(new, field, v.clone()),
            None => {
                remove_meta(new, field);
            }
        }
    }
    if has_status_subresource(resource) {
        if let Some(obj) = new.as_object_mut() {
            match old.get("status") {
                Some(s) => obj.insert("status".into(), s.clone()),
                None => obj.remove("status"),
            };
        }
    }
    if has_generation(resource) && old.get("spec") != new.get("spec") {
        let generation = old
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        set_meta(new, "generation", json!(generation + 1));
    }
    Ok(())
}

/// The object with server-owned noise removed, for "did anything change" comparisons.
pub fn comparable(object: &Value) -> Value {
    let mut v = object.clone();
    if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
        m.remove("managedFields");
    }
    v
}

fn random_suffix() -> String {
    // Kubernetes uses 5 characters from an alphabet without vowels (so no words appear).
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let bytes = uuid::Uuid::new_v4().into_bytes();
    bytes
        .iter()
        .take(5)
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect()
}

/// Field selectors each resource supports, beyond metadata.name and metadata.namespace.
pub fn selectable_fields(resource: &Resource) -> &'static [&'static str] {
    match resource.kind {
        "Pod" => &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        ],
        "Event" => &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ],
        "Node" => &["spec.unschedulable"],
        "Namespace" => &["status.phase"],
        "Secret" => &["type"],
        "ReplicaSet" | "ReplicationController" => &["status.replicas"],
        "Job" => &["status.successful"],
        _ => &[],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::resources::RESOURCES;
    use crate::watch_cache::INDEXED_FIELDS;

    #[test]
    fn every_selectable_field_is_indexed_by_the_cache() {
        for r in RESOURCES {
            for f in selectable_fields(r) {
                let path = if *f == "source" {
                    "source.component"
                } else {
                    f
                };
                assert!(
                    INDEXED_FIELDS.contains(&path),
                    "{} selects on {f}, which the cache does not index",
                    r.kind
                );
            }
        }
    }
}
