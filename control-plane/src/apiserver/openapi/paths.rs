//! The `paths` section of a group-version document: one path item per collection, object and
//! subresource, with one operation per verb the resource table grants.
//!
//! kubectl reads two things here. Its field-validation probe (cli-runtime
//! `query_param_verifier_v3.go`) takes the first PATCH operation whose
//! `x-kubernetes-group-version-kind` object matches the manifest's kind and looks for a
//! `fieldValidation` parameter in it, so every PATCH of a kind (the object's and its status')
//! carries one; `explain` takes the kind from any operation on `<prefix>/<plural>` or
//! `<prefix>/<plural>/{name}` in either scope.

use serde_json::{json, Map, Value};

use super::operation::{operation, Body, MetaSchemas, Shape};
use super::Gvk;
use crate::apiserver::resources::{Resource, Subresource};

/// The component names one resource's operations refer to.
pub(super) struct ResourceSchemas {
    /// The kind's own schema, e.g. `io.k8s.api.core.v1.Pod`.
    pub kind: String,
    /// The list schema, when the resource can be listed.
    pub list: Option<String>,
    /// One entry per subresource, in the resource's order.
    pub subresources: Vec<SubresourceSchema>,
}

/// What a subresource exchanges.
pub(super) struct SubresourceSchema {
    /// The subresource as declared in the resource table.
    pub sub: &'static Subresource,
    /// The kind its operations are tagged with.
    pub gvk: Gvk<'static>,
    /// The body schema, or `None` when the body is plain text (pod logs).
    pub body: Option<String>,
}

const COLLECTION_VERBS: &[(&str, Shape)] = &[
    ("list", Shape::List),
    ("create", Shape::Create),
    ("deletecollection", Shape::DeleteCollection),
];
const ITEM_VERBS: &[(&str, Shape)] = &[
    ("get", Shape::Read),
    ("update", Shape::Replace),
    ("patch", Shape::Patch),
    ("delete", Shape::Delete),
];
const SUBRESOURCE_VERBS: &[(&str, Shape)] = &[
    ("get", Shape::Read),
    ("create", Shape::Create),
    ("update", Shape::Replace),
    ("patch", Shape::Patch),
];

/// Adds the path items of `resource` to `paths`.
pub(super) fn add_resource_paths(
    paths: &mut Map<String, Value>,
    resource: &Resource,
    schemas: &ResourceSchemas,
    meta: &MetaSchemas,
) {
    let prefix = if resource.group.is_empty() {
        format!("/api/{}", resource.version)
    } else {
        format!("/apis/{}/{}", resource.group, resource.version)
    };
    let scope = if resource.namespaced {
        "/namespaces/{namespace}"
    } else {
        ""
    };
    let collection = format!("{prefix}{scope}/{}", resource.plural);
    let item = format!("{collection}/{{name}}");
    let ids = OperationIds::new(resource);
    let builder = Builder {
        meta,
        gvk: Gvk::of(resource),
        ids: &ids,
    };

    // Lists answer with the list kind (and exist only when there is one); everything else
    // exchanges the object itself.
    let body = |shape: Shape| match shape {
        Shape::List => schemas.list.as_deref().map(Body::Schema),
        _ => Some(Body::Schema(&schemas.kind)),
    };
    let ops = builder.operations(resource.verbs, COLLECTION_VERBS, "", body);
    insert_path(paths, collection, resource.namespaced, false, ops);
    let ops = builder.operations(resource.verbs, ITEM_VERBS, "", body);
    insert_path(paths, item.clone(), resource.namespaced, true, ops);

    // The real server also lists namespaced kinds across all namespaces.
    let listable = resource.verbs.contains(&"list");
    if let (true, true, Some(list)) = (resource.namespaced, listable, schemas.list.as_deref()) {
        let id = format!("list{}{}ForAllNamespaces", ids.group_version, resource.kind);
        let op = operation(Shape::List, id, builder.gvk, Body::Schema(list), meta);
        let ops = Map::from_iter([("get".to_string(), op)]);
        let path = format!("{prefix}/{}", resource.plural);
        insert_path(paths, path, false, false, ops);
    }

    for s in &schemas.subresources {
        let builder = Builder {
            gvk: s.gvk,
            ..builder
        };
        let body = |shape: Shape| match (&s.body, shape) {
            (Some(name), _) => Some(Body::Schema(name.as_str())),
            (None, Shape::Read) => Some(Body::Text),
            (None, _) => None,
        };
        let suffix = capitalize(s.sub.name);
        let ops = builder.operations(s.sub.verbs, SUBRESOURCE_VERBS, &suffix, body);
        let path = format!("{item}/{}", s.sub.name);
        insert_path(paths, path, resource.namespaced, true, ops);
    }
}

/// What every operation of one path item shares.
#[derive(Clone, Copy)]
struct Builder<'a> {
    meta: &'a MetaSchemas,
    gvk: Gvk<'a>,
    ids: &'a OperationIds,
}

impl<'a> Builder<'a> {
    /// One operation per verb in `table` that `verbs` grants and `body` has a body for, keyed
    /// by HTTP method.
    fn operations(
        &self,
        verbs: &[&str],
        table: &[(&str, Shape)],
        suffix: &str,
        body: impl Fn(Shape) -> Option<Body<'a>>,
    ) -> Map<String, Value> {
        let mut ops = Map::new();
        for &(_, shape) in table.iter().filter(|(v, _)| verbs.contains(v)) {
            if let Some(b) = body(shape) {
                let (method, _, id_verb) = shape.names();
                let id = self.ids.id(id_verb, suffix);
                ops.insert(
                    method.to_string(),
                    operation(shape, id, self.gvk, b, self.meta),
                );
            }
        }
        ops
    }
}

/// Builds operation ids in the real server's style, e.g. `patchAppsV1NamespacedDeploymentScale`.
struct OperationIds {
    group_version: String,
    scoped_kind: String,
}

impl OperationIds {
    fn new(resource: &Resource) -> Self {
        // "coordination.k8s.io" -> "Coordination" and "" -> "Core", as Kubernetes names them.
        let group = match resource.group.split('.').next() {
            Some(g) if !g.is_empty() => capitalize(g),
            _ => "Core".to_string(),
        };
        let scope = if resource.namespaced {
            "Namespaced"
        } else {
            ""
        };
        Self {
            group_version: format!("{group}{}", capitalize(resource.version)),
            scoped_kind: format!("{scope}{}", resource.kind),
        }
    }

    fn id(&self, verb: &str, suffix: &str) -> String {
        format!("{verb}{}{}{suffix}", self.group_version, self.scoped_kind)
    }
}

fn capitalize(s: &str) -> String {
    let mut chars = s.chars();
    chars.next().map_or_else(String::new, |first| {
        first.to_uppercase().chain(chars).collect()
    })
}

/// Inserts a path item with its path-level parameters, unless it has no operations.
fn insert_path(
    paths: &mut Map<String, Value>,
    path: String,
    namespaced: bool,
    named: bool,
    mut ops: Map<String, Value>,
) {
    if ops.is_empty() {
        return;
    }
    let mut params = Vec::new();
    if named {
        params.push(path_param("name", "Name of the object."));
    }
    if namespaced {
        params.push(path_param("namespace", "Namespace of the object."));
    }
    if !params.is_empty() {
        ops.insert("parameters".into(), Value::Array(params));
    }
    paths.insert(path, Value::Object(ops));
}

fn path_param(name: &str, description: &str) -> Value {
    json!({
        "name": name,
        "in": "path",
        "description": description,
        "required": true,
        "schema": {"type": "string"},
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::resources::lookup;

    fn meta() -> MetaSchemas {
        MetaSchemas {
            delete_options: "D".into(),
            status: "S".into(),
            patch: "P".into(),
        }
    }

    fn paths_of(group: &str, plural: &str, schemas: ResourceSchemas) -> Map<String, Value> {
        let mut paths = Map::new();
        if let Some(resource) = lookup(group, "v1", plural) {
            add_resource_paths(&mut paths, resource, &schemas, &meta());
        }
        paths
    }

    fn ids(paths: &Map<String, Value>) -> Vec<String> {
        let ops = paths
            .values()
            .filter_map(Value::as_object)
            .flat_map(|item| item.values());
        let ids = ops.filter_map(|op| op.get("operationId").and_then(Value::as_str));
        ids.map(str::to_string).collect()
    }

    #[test]
    fn verbs_become_operations_with_kubernetes_ids() {
        let deployments = lookup("apps", "v1", "deployments").map(|r| r.subresources);
        let subresources = deployments
            .unwrap_or_default()
            .iter()
            .map(|sub| SubresourceSchema {
                sub,
                gvk: Gvk {
                    group: sub.group,
                    version: sub.version,
                    kind: sub.kind,
                },
                body: Some(format!("body-of-{}", sub.name)),
            });
        let schemas = ResourceSchemas {
            kind: "K".into(),
            list: Some("L".into()),
            subresources: subresources.collect(),
        };
        let paths = paths_of("apps", "deployments", schemas);
        let ids = ids(&paths);
        for id in [
            "listAppsV1NamespacedDeployment",
            "createAppsV1NamespacedDeployment",
            "deleteCollectionAppsV1NamespacedDeployment",
            "readAppsV1NamespacedDeployment",
            "replaceAppsV1NamespacedDeployment",
            "patchAppsV1NamespacedDeployment",
            "deleteAppsV1NamespacedDeployment",
            "listAppsV1DeploymentForAllNamespaces",
            "patchAppsV1NamespacedDeploymentScale",
            "readAppsV1NamespacedDeploymentStatus",
        ] {
            assert!(ids.iter().any(|i| i == id), "{id} missing from {ids:?}");
        }
        assert_eq!(ids.len(), 14, "{ids:?}");
        let collection = &paths["/apis/apps/v1/namespaces/{namespace}/deployments"];
        let purge = &collection["delete"];
        assert_eq!(purge["x-kubernetes-action"], "deletecollection");
        let status = &purge["responses"]["200"]["content"]["application/json"]["schema"];
        assert_eq!(status["$ref"], "#/components/schemas/S");
        let names: Vec<&Value> = collection["parameters"]
            .as_array()
            .map(|p| p.iter().map(|p| &p["name"]).collect())
            .unwrap_or_default();
        assert_eq!(names, [&json!("namespace")]);
        let scale = &paths["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"];
        let body = &scale["put"]["requestBody"]["content"]["*/*"]["schema"]["$ref"];
        assert_eq!(body, "#/components/schemas/body-of-scale");
    }

    #[test]
    fn a_create_only_kind_gets_only_a_collection_post() {
        let schemas = ResourceSchemas {
            kind: "R".into(),
            list: None,
            subresources: Vec::new(),
        };
        let paths = paths_of("authorization.k8s.io", "selfsubjectaccessreviews", schemas);
        let keys: Vec<&String> = paths.keys().collect();
        assert_eq!(
            keys,
            ["/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"]
        );
        assert_eq!(
            ids(&paths),
            ["createAuthorizationV1SelfSubjectAccessReview"]
        );
    }

    #[test]
    fn a_listable_kind_without_a_list_schema_gets_no_list_operation() {
        let schemas = ResourceSchemas {
            kind: "N".into(),
            list: None,
            subresources: Vec::new(),
        };
        let paths = paths_of("", "configmaps", schemas);
        assert!(!paths.contains_key("/api/v1/configmaps"));
        let collection = &paths["/api/v1/namespaces/{namespace}/configmaps"];
        assert!(collection.get("get").is_none());
        assert!(collection.get("post").is_some());
    }

    #[test]
    fn a_text_subresource_is_only_read() {
        let pods = lookup("", "v1", "pods")
            .map(|r| r.subresources)
            .unwrap_or_default();
        let log = pods.iter().find(|s| s.name == "log");
        let subresources = log.map(|sub| SubresourceSchema {
            sub,
            gvk: Gvk {
                group: "",
                version: "v1",
                kind: "Pod",
            },
            body: None,
        });
        let schemas = ResourceSchemas {
            kind: "P".into(),
            list: Some("PL".into()),
            subresources: subresources.into_iter().collect(),
        };
        let paths = paths_of("", "pods", schemas);
        let log = &paths["/api/v1/namespaces/{namespace}/pods/{name}/log"];
        let methods: Vec<&String> = log
            .as_object()
            .map(|o| o.keys().collect())
            .unwrap_or_default();
        assert_eq!(methods, ["get", "parameters"]);
        let text = &log["get"]["responses"]["200"]["content"]["text/plain"]["schema"];
        assert_eq!(text, &json!({"type": "string"}));
        assert_eq!(log["get"]["operationId"], "readCoreV1NamespacedPodLog");
    }
}
