//! Server-side printing: the `meta.k8s.io/v1` `Table` that `kubectl get` asks for with
//! `Accept: application/json;as=Table;v=v1;g=meta.k8s.io`.
//!
//! Column definitions and cells follow kube-apiserver's printers
//! (`pkg/printers/internalversion/printers.go`, v1.32) so that `kubectl get` prints what it prints
//! against a real cluster. Objects are the plain JSON held by the store: any field may be missing
//! or have the wrong type, and a printer then shows what Kubernetes shows for the zero value.
//! Missing fields that Kubernetes' v1 defaulting fills in on every decode (replicas, service type,
//! port protocol, secret type, namespace phase) read as those defaults.
//!
//! Wide columns: the real apiserver always generates every column (`GenerateOptions{Wide: true}`
//! in `pkg/printers/storage`), marking the `-o wide` ones with `priority: 1`, and kubectl hides
//! columns whose priority is above 0 unless asked for `-o wide`. The request handler should
//! therefore pass `wide = true`; `wide = false` drops those columns and their cells, as the Go
//! printers do when called without `Wide`.
//!
//! Layout: `format` holds the shared cell formatting; `pods`, `workloads`, `services`, `cluster`
//! and `config` hold the printers, one family per file.

mod cluster;
mod config;
mod format;
mod pods;
mod services;
mod workloads;

use std::time::SystemTime;

use serde_json::{json, Map, Value};

use super::resources::Resource;
use format::Nanos;

/// Errors from reading table options.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TableError {
    /// The `includeObject` query parameter is not one of the values Kubernetes defines.
    /// The real apiserver answers this with 400 Bad Request.
    #[error("unrecognized includeObject value {value:?}: use None, Metadata or Object")]
    UnknownIncludeObject {
        /// The value that was sent.
        value: String,
    },
}

/// What each row's `object` carries (query parameter `includeObject`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum IncludeObject {
    /// `object` is null.
    None,
    /// `object` is a `PartialObjectMetadata` holding the object's full `metadata` (the default).
    /// kubectl needs it for the NAMESPACE column of `-A` and for `--show-labels`.
    #[default]
    Metadata,
    /// `object` is the whole object (kubectl asks for this with `--sort-by`).
    Object,
}

impl IncludeObject {
    /// Reads the `includeObject` query parameter; absent or empty means `Metadata`.
    pub fn from_query(value: Option<&str>) -> Result<Self, TableError> {
        match value {
            None | Some("") | Some("Metadata") => Ok(Self::Metadata),
            Some("None") => Ok(Self::None),
            Some("Object") => Ok(Self::Object),
            Some(other) => Err(TableError::UnknownIncludeObject {
                value: other.to_string(),
            }),
        }
    }
}

/// Builds the `Table` for `objects` of `resource`.
///
/// `list_metadata` becomes the table's `metadata` (`resourceVersion`, `continue`, ...); anything
/// but a JSON object is replaced by `{}`. `now` is the clock the AGE-like columns are measured
/// against. See the module docs for `wide`.
pub fn to_table(
    resource: &Resource,
    objects: &[Value],
    list_metadata: Value,
    include_object: IncludeObject,
    wide: bool,
    now: SystemTime,
) -> Value {
    let printer = printer_for(resource);
    let context = Context {
        now: format::unix_nanos(now),
        wide,
    };
    let shown: Vec<bool> = printer
        .columns
        .iter()
        .map(|column| wide || column.priority == 0)
        .collect();
    let columns: Vec<Value> = printer
        .columns
        .iter()
        .zip(&shown)
        .filter(|(_, shown)| **shown)
        .map(|(column, _)| column.to_json())
        .collect();
    let rows: Vec<Value> = objects
        .iter()
        .map(|object| {
            let cells: Vec<Value> = (printer.cells)(object, &context)
                .into_iter()
                .zip(&shown)
                .filter(|(_, shown)| **shown)
                .map(|(cell, _)| cell)
                .collect();
            let mut row = Map::new();
            row.insert("cells".to_string(), Value::Array(cells));
            if let Some(conditions) = (printer.conditions)(object) {
                row.insert("conditions".to_string(), conditions);
            }
            row.insert(
                "object".to_string(),
                row_object(resource, object, include_object),
            );
            Value::Object(row)
        })
        .collect();
    let metadata = match list_metadata {
        Value::Object(map) => Value::Object(map),
        _ => json!({}),
    };
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": columns,
        "rows": rows,
    })
}

/// The row's `object`. `None` gives null, as the real apiserver's empty `RawExtension` encodes.
fn row_object(resource: &Resource, object: &Value, include: IncludeObject) -> Value {
    match include {
        IncludeObject::None => Value::Null,
        IncludeObject::Metadata => {
            let metadata = object
                .get("metadata")
                .filter(|m| m.is_object())
                .cloned()
                .unwrap_or_else(|| json!({}));
            json!({
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": metadata,
            })
        }
        IncludeObject::Object => {
            // The real server converts the object to the request's version, which always sets
            // apiVersion and kind; stored objects may lack them.
            let mut full = object.clone();
            if let Some(map) = full.as_object_mut() {
                map.insert(
                    "apiVersion".to_string(),
                    Value::from(resource.api_version()),
                );
                map.insert("kind".to_string(), Value::from(resource.kind));
            }
            full
        }
    }
}

/// What every printer gets besides the object.
struct Context {
    /// The time AGE is measured against, in nanoseconds since the Unix epoch.
    now: Nanos,
    /// Whether the caller wants `-o wide` output; only affects clipping of load-balancer IPs.
    wide: bool,
}

/// One column definition, serialized with all five fields as `metav1.TableColumnDefinition` is.
#[derive(Debug, Clone, Copy)]
struct Column {
    name: &'static str,
    kind: &'static str,
    format: &'static str,
    description: &'static str,
    priority: i32,
}

impl Column {
    fn to_json(self) -> Value {
        json!({
            "name": self.name,
            "type": self.kind,
            "format": self.format,
            "description": self.description,
            "priority": self.priority,
        })
    }
}

/// A column shown by plain `kubectl get`.
const fn column(name: &'static str, kind: &'static str, description: &'static str) -> Column {
    Column {
        name,
        kind,
        format: "",
        description,
        priority: 0,
    }
}

/// A column shown only with `-o wide`.
const fn wide_column(name: &'static str, kind: &'static str, description: &'static str) -> Column {
    Column {
        name,
        kind,
        format: "",
        description,
        priority: 1,
    }
}

/// `ObjectMeta.name`'s API doc, which Kubernetes uses for every Name column.
const NAME_DOC: &str = "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";

/// `ObjectMeta.creationTimestamp`'s API doc, which Kubernetes uses for every Age column.
const AGE_DOC: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";

const NAME: Column = Column {
    name: "Name",
    kind: "string",
    format: "name",
    description: NAME_DOC,
    priority: 0,
};
const AGE: Column = column("Age", "string", AGE_DOC);
const CONTAINERS: Column = wide_column(
    "Containers",
    "string",
    "Names of each container in the template.",
);
const IMAGES: Column = wide_column(
    "Images",
    "string",
    "Images referenced by each container in the template.",
);

/// How one kind is printed. `cells` returns one cell per entry of `columns`, wide ones included.
struct Printer {
    columns: &'static [Column],
    cells: fn(&Value, &Context) -> Vec<Value>,
    conditions: fn(&Value) -> Option<Value>,
}

/// For printers whose rows never carry conditions (all but pods).
fn no_conditions(_: &Value) -> Option<Value> {
    None
}

/// Used for kinds without a printer of their own: Name and Age.
static GENERIC: Printer = Printer {
    columns: &[NAME, AGE],
    cells: generic_cells,
    conditions: no_conditions,
};

fn generic_cells(object: &Value, context: &Context) -> Vec<Value> {
    vec![format::name(object), format::age(object, context)]
}

fn printer_for(resource: &Resource) -> &'static Printer {
    match (resource.group, resource.kind) {
        ("", "Pod") => &pods::POD,
        ("", "Node") => &cluster::NODE,
        ("", "Namespace") => &cluster::NAMESPACE,
        ("", "Event") => &cluster::EVENT,
        ("coordination.k8s.io", "Lease") => &cluster::LEASE,
        ("node.k8s.io", "RuntimeClass") => &cluster::RUNTIME_CLASS,
        ("", "ConfigMap") => &config::CONFIG_MAP,
        ("", "Secret") => &config::SECRET,
        ("", "ServiceAccount") => &config::SERVICE_ACCOUNT,
        ("", "Service") => &services::SERVICE,
        ("", "Endpoints") => &services::ENDPOINTS,
        ("discovery.k8s.io", "EndpointSlice") => &services::ENDPOINT_SLICE,
        ("apps", "Deployment") => &workloads::DEPLOYMENT,
        ("apps", "ReplicaSet") => &workloads::REPLICA_SET,
        ("", "ReplicationController") => &workloads::REPLICATION_CONTROLLER,
        ("apps", "DaemonSet") => &workloads::DAEMON_SET,
        ("apps", "StatefulSet") => &workloads::STATEFUL_SET,
        ("batch", "Job") => &workloads::JOB,
        _ => &GENERIC,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::resources::RESOURCES;
    use std::time::{Duration, UNIX_EPOCH};

    /// The tests' clock: 2024-01-01T00:00:00Z.
    const NOW_SECONDS: i64 = 1_704_067_200;

    pub(super) fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(NOW_SECONDS.unsigned_abs())
    }

    /// The RFC 3339 timestamp `seconds` before the tests' clock.
    pub(super) fn ago(seconds: i64) -> String {
        k8s_openapi::chrono::DateTime::from_timestamp(NOW_SECONDS - seconds, 0)
            .expect("test timestamps are in range")
            .to_rfc3339_opts(k8s_openapi::chrono::SecondsFormat::Secs, true)
    }

    pub(super) fn resource(kind: &str) -> &'static Resource {
        RESOURCES
            .iter()
            .find(|r| r.kind == kind)
            .expect("kind is in RESOURCES")
    }

    /// The single row of the wide table of `object`, a `kind` from RESOURCES.
    pub(super) fn wide_row(kind: &str, object: Value) -> Value {
        let table = to_table(
            resource(kind),
            &[object],
            json!({}),
            IncludeObject::None,
            true,
            now(),
        );
        table["rows"][0].clone()
    }

    /// The cells `range` of a row, as a JSON array.
    pub(super) fn cell_range(row: &Value, range: std::ops::Range<usize>) -> Value {
        let cells = row["cells"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        Value::Array(cells.get(range).unwrap_or_default().to_vec())
    }

    fn column_names(table: &Value) -> Vec<&str> {
        table["columnDefinitions"]
            .as_array()
            .map(|columns| columns.iter().filter_map(|c| c["name"].as_str()).collect())
            .unwrap_or_default()
    }

    #[test]
    fn include_object_reads_the_query_parameter() {
        assert_eq!(IncludeObject::from_query(None), Ok(IncludeObject::Metadata));
        assert_eq!(
            IncludeObject::from_query(Some("")),
            Ok(IncludeObject::Metadata)
        );
        assert_eq!(
            IncludeObject::from_query(Some("None")),
            Ok(IncludeObject::None)
        );
        assert_eq!(
            IncludeObject::from_query(Some("Object")),
            Ok(IncludeObject::Object)
        );
        let err = IncludeObject::from_query(Some("object")).expect_err("case matters");
        assert_eq!(
            err.to_string(),
            "unrecognized includeObject value \"object\": use None, Metadata or Object"
        );
    }

    #[test]
    fn table_envelope_and_partial_object_metadata_rows() {
        let pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web", "namespace": "prod", "labels": {"app": "web"},
                         "creationTimestamp": "2023-12-31T23:59:15Z"},
            "spec": {"containers": [{"name": "c"}]},
        });
        let table = to_table(
            resource("Pod"),
            &[pod],
            json!({"resourceVersion": "42", "continue": "abc"}),
            IncludeObject::Metadata,
            true,
            now(),
        );
        assert_eq!(table["kind"], "Table");
        assert_eq!(table["apiVersion"], "meta.k8s.io/v1");
        assert_eq!(
            table["metadata"],
            json!({"resourceVersion": "42", "continue": "abc"})
        );
        assert_eq!(
            table["columnDefinitions"][0],
            json!({"name": "Name", "type": "string", "format": "name",
                   "description": NAME_DOC, "priority": 0})
        );
        assert_eq!(table["columnDefinitions"][5]["priority"], 1);
        assert_eq!(
            table["rows"][0]["object"],
            json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                   "metadata": {"name": "web", "namespace": "prod", "labels": {"app": "web"},
                                "creationTimestamp": "2023-12-31T23:59:15Z"}})
        );
        assert_eq!(table["rows"][0]["cells"][0], "web");
        assert_eq!(table["rows"][0]["cells"][4], "45s");
    }

    #[test]
    fn include_object_none_and_object() {
        let cm = json!({"metadata": {"name": "settings"}, "data": {"a": "1"}});
        let none = to_table(
            resource("ConfigMap"),
            std::slice::from_ref(&cm),
            json!({}),
            IncludeObject::None,
            true,
            now(),
        );
        assert_eq!(none["rows"][0]["object"], Value::Null);
        let full = to_table(
            resource("ConfigMap"),
            &[cm],
            json!(null),
            IncludeObject::Object,
            true,
            now(),
        );
        assert_eq!(
            full["rows"][0]["object"],
            json!({"metadata": {"name": "settings"}, "data": {"a": "1"},
                   "apiVersion": "v1", "kind": "ConfigMap"})
        );
        assert_eq!(full["metadata"], json!({}));
    }

    #[test]
    fn narrow_tables_drop_wide_columns_and_their_cells() {
        let ev = json!({
            "metadata": {"name": "web.17a"},
            "involvedObject": {"kind": "Pod", "name": "web", "fieldPath": "spec.containers{c}"},
            "type": "Normal", "reason": "Pulled", "message": " pulled \n",
            "count": 3, "lastTimestamp": "2023-12-31T23:58:00Z",
            "firstTimestamp": "2023-12-31T23:50:00Z",
        });
        let narrow = to_table(
            resource("Event"),
            std::slice::from_ref(&ev),
            json!({}),
            IncludeObject::None,
            false,
            now(),
        );
        assert_eq!(
            column_names(&narrow),
            ["Last Seen", "Type", "Reason", "Object", "Message"]
        );
        assert_eq!(
            narrow["rows"][0]["cells"],
            json!(["2m", "Normal", "Pulled", "pod/web", "pulled"])
        );
        let wide = to_table(
            resource("Event"),
            &[ev],
            json!({}),
            IncludeObject::None,
            true,
            now(),
        );
        assert_eq!(column_names(&wide).len(), 10);
        assert_eq!(
            wide["rows"][0]["cells"],
            json!([
                "2m",
                "Normal",
                "Pulled",
                "pod/web",
                "spec.containers{c}",
                "",
                "pulled",
                "10m",
                3,
                "web.17a"
            ])
        );
    }

    #[test]
    fn kinds_without_a_printer_get_name_and_age() {
        let widget = Resource {
            group: "example.com",
            version: "v1",
            kind: "Widget",
            plural: "widgets",
            singular: "widget",
            short_names: &[],
            namespaced: true,
            verbs: &[],
            subresources: &[],
            create_only: false,
            categories: &[],
        };
        let objects = [
            json!({"metadata": {"name": "w1", "creationTimestamp": "2023-12-29T00:00:00Z"}}),
            json!({"metadata": {"name": "w2"}}),
        ];
        let table = to_table(
            &widget,
            &objects,
            json!({"resourceVersion": "7"}),
            IncludeObject::Metadata,
            true,
            now(),
        );
        assert_eq!(column_names(&table), ["Name", "Age"]);
        assert_eq!(table["rows"][0]["cells"], json!(["w1", "3d"]));
        assert_eq!(table["rows"][1]["cells"], json!(["w2", "<unknown>"]));
    }

    #[test]
    fn every_printer_fills_every_column_even_for_garbage() {
        let garbage = [
            json!({}),
            json!(null),
            json!("pod"),
            json!({"metadata": 5, "spec": "x", "status": [1, 2]}),
            json!({"metadata": {"name": 7, "creationTimestamp": "yesterday",
                                "deletionTimestamp": 3, "labels": [1]},
                   "spec": {"containers": {"a": 1}, "initContainers": [null, 4],
                            "ports": [{"port": "80"}], "replicas": "3", "selector": "app=x",
                            "template": {"spec": {"containers": [7]}}},
                   "status": {"conditions": [null, {"type": 1}], "containerStatuses": ["x"],
                              "initContainerStatuses": [{"state": {"terminated": 1}}],
                              "addresses": "1.2.3.4", "loadBalancer": {"ingress": 5}},
                   "subsets": [{"addresses": [{"ip": 1}], "ports": [{}]}],
                   "endpoints": [{"addresses": [null]}], "ports": [null],
                   "involvedObject": 3, "series": {"count": "x"}, "data": 1}),
        ];
        for resource in RESOURCES {
            let printer = printer_for(resource);
            let context = Context {
                now: format::unix_nanos(now()),
                wide: false,
            };
            for object in &garbage {
                let cells = (printer.cells)(object, &context);
                assert_eq!(cells.len(), printer.columns.len(), "{}", resource.kind);
            }
            let table = to_table(
                resource,
                &garbage,
                json!({}),
                IncludeObject::Metadata,
                true,
                now(),
            );
            assert_eq!(table["rows"].as_array().map(Vec::len), Some(garbage.len()));
        }
    }
}
