//! One operation of a path item, shaped like the real API server's: its parameters, request
//! body, responses and the `x-kubernetes-action`/`x-kubernetes-group-version-kind` extensions.
//!
//! Parameters are written inline, never as `$ref`s: kubectl's field-validation probe compares
//! `parameters[].name` without resolving anything.

use serde_json::{json, Map, Value};

use super::{Gvk, COMPONENT_PREFIX, GVK_EXTENSION};

/// Media types accepted for PATCH. Strategic merge patch is deliberately absent: when an
/// operation lists it, kubectl's client-side apply computes the patch from these schemas, and
/// k8s-openapi's schemas carry no `x-kubernetes-patch-merge-key`/`-strategy`, so every list would
/// be replaced wholesale. Without it kubectl uses its compiled-in merge keys (exact for built-in
/// kinds). The server accepts strategic merge patches all the same.
const PATCH_MEDIA_TYPES: &[&str] = &[
    "application/apply-patch+yaml",
    "application/json-patch+json",
    "application/merge-patch+json",
];

/// A query parameter: name, schema type, description.
type Param = (&'static str, &'static str, &'static str);

const WRITE_PARAMS: &[Param] = &[
    (
        "dryRun",
        "string",
        "When present, nothing is persisted. The only valid value is All.",
    ),
    (
        "fieldManager",
        "string",
        "Name of the actor making the change, kept in managedFields.",
    ),
    (
        "fieldValidation",
        "string",
        "What to do with unknown or duplicate fields in the body: Ignore drops them, Warn drops \
         them with a Warning header per field, Strict rejects the request.",
    ),
];
const FORCE_PARAM: Param = (
    "force",
    "boolean",
    "Apply patches only: take over fields owned by other managers instead of failing.",
);
const DELETE_PARAMS: &[Param] = &[
    (
        "dryRun",
        "string",
        "When present, nothing is deleted. The only valid value is All.",
    ),
    (
        "gracePeriodSeconds",
        "integer",
        "Seconds before the object is deleted; 0 means now.",
    ),
    (
        "propagationPolicy",
        "string",
        "What happens to dependents: Orphan, Background or Foreground.",
    ),
];
const SELECTOR_PARAMS: &[Param] = &[
    (
        "continue",
        "string",
        "Continue token from the previous page of a list.",
    ),
    (
        "fieldSelector",
        "string",
        "Selects objects by their fields.",
    ),
    (
        "labelSelector",
        "string",
        "Selects objects by their labels.",
    ),
    (
        "limit",
        "integer",
        "Maximum number of objects in one response.",
    ),
    (
        "resourceVersion",
        "string",
        "Resource version the list or watch starts from.",
    ),
    (
        "resourceVersionMatch",
        "string",
        "How resourceVersion applies to a list.",
    ),
    (
        "timeoutSeconds",
        "integer",
        "Ends the list or watch after this many seconds.",
    ),
];
const WATCH_PARAMS: &[Param] = &[
    (
        "allowWatchBookmarks",
        "boolean",
        "Lets a watch send BOOKMARK events.",
    ),
    (
        "watch",
        "boolean",
        "Streams add, update and delete events instead of listing.",
    ),
];

/// Component names of the meta types the operations use.
pub(super) struct MetaSchemas {
    /// `io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions`.
    pub delete_options: String,
    /// `io.k8s.apimachinery.pkg.apis.meta.v1.Status`.
    pub status: String,
    /// `io.k8s.apimachinery.pkg.apis.meta.v1.Patch`.
    pub patch: String,
}

/// The kinds of operation the real server generates, keyed by the resource table's verbs.
#[derive(Debug, Clone, Copy)]
pub(super) enum Shape {
    List,
    Read,
    Create,
    Replace,
    Patch,
    Delete,
    DeleteCollection,
}

impl Shape {
    /// HTTP method, `x-kubernetes-action` and the verb that starts the operation id.
    pub(super) fn names(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Shape::List => ("get", "list", "list"),
            Shape::Read => ("get", "get", "read"),
            Shape::Create => ("post", "post", "create"),
            Shape::Replace => ("put", "put", "replace"),
            Shape::Patch => ("patch", "patch", "patch"),
            Shape::Delete => ("delete", "delete", "delete"),
            Shape::DeleteCollection => ("delete", "deletecollection", "deleteCollection"),
        }
    }
}

/// What an operation's body is.
#[derive(Debug, Clone, Copy)]
pub(super) enum Body<'a> {
    /// A component, by name.
    Schema(&'a str),
    /// Plain text (pod logs).
    Text,
}

/// The operation of `shape` with id `id`, tagged with `gvk`, exchanging `body`.
pub(super) fn operation(
    shape: Shape,
    id: String,
    gvk: Gvk<'_>,
    body: Body<'_>,
    meta: &MetaSchemas,
) -> Value {
    let (_, action, _) = shape.names();
    let object = content(body, "application/json");
    let delete_options = content(Body::Schema(&meta.delete_options), "*/*");
    let (params, request, codes, response): (Vec<Param>, _, &[&str], _) = match shape {
        Shape::List => {
            let mut response = object;
            if let (Some(media), Body::Schema(name)) = (response.as_object_mut(), body) {
                let watch = json!({"schema": schema_ref(name)});
                media.insert("application/json;stream=watch".into(), watch);
            }
            (
                [SELECTOR_PARAMS, WATCH_PARAMS].concat(),
                None,
                &["200"],
                response,
            )
        }
        Shape::Read => (Vec::new(), None, &["200"], object),
        Shape::Create => {
            let request = content(body, "*/*");
            (
                WRITE_PARAMS.to_vec(),
                Some(request),
                &["200", "201", "202"],
                object,
            )
        }
        Shape::Replace => {
            let request = content(body, "*/*");
            (
                WRITE_PARAMS.to_vec(),
                Some(request),
                &["200", "201"],
                object,
            )
        }
        Shape::Patch => {
            let mut request = Map::new();
            for media in PATCH_MEDIA_TYPES {
                let schema = json!({"schema": schema_ref(&meta.patch)});
                request.insert((*media).to_string(), schema);
            }
            let params = [WRITE_PARAMS, &[FORCE_PARAM]].concat();
            (
                params,
                Some(Value::Object(request)),
                &["200", "201"],
                object,
            )
        }
        Shape::Delete => (
            DELETE_PARAMS.to_vec(),
            Some(delete_options),
            &["200", "202"],
            object,
        ),
        Shape::DeleteCollection => {
            let params = [DELETE_PARAMS, SELECTOR_PARAMS].concat();
            let status = content(Body::Schema(&meta.status), "application/json");
            (params, Some(delete_options), &["200"], status)
        }
    };

    let mut op = Map::new();
    op.insert("operationId".into(), Value::String(id));
    if !params.is_empty() {
        let params = params
            .iter()
            .map(|&(name, ty, description)| query(name, ty, description));
        op.insert("parameters".into(), params.collect());
    }
    if let Some(request) = request {
        op.insert(
            "requestBody".into(),
            json!({"content": request, "required": true}),
        );
    }
    let responses: Map<String, Value> = codes
        .iter()
        .map(|code| {
            let description = match *code {
                "201" => "Created",
                "202" => "Accepted",
                _ => "OK",
            };
            let entry = json!({"description": description, "content": response.clone()});
            ((*code).to_string(), entry)
        })
        .collect();
    op.insert("responses".into(), Value::Object(responses));
    op.insert(
        "x-kubernetes-action".into(),
        Value::String(action.to_string()),
    );
    op.insert(GVK_EXTENSION.into(), gvk.to_json());
    Value::Object(op)
}

/// An inline query parameter.
fn query(name: &str, ty: &str, description: &str) -> Value {
    json!({"name": name, "in": "query", "description": description, "schema": {"type": ty}})
}

fn schema_ref(name: &str) -> Value {
    json!({ "$ref": format!("{COMPONENT_PREFIX}{name}") })
}

/// A `content` map with one media type.
fn content(body: Body<'_>, media_type: &str) -> Value {
    let schema = match body {
        Body::Schema(name) => schema_ref(name),
        Body::Text => json!({"type": "string"}),
    };
    let media_type = match body {
        Body::Schema(_) => media_type,
        Body::Text => "text/plain",
    };
    json!({ media_type: {"schema": schema} })
}

#[cfg(test)]
mod tests {
    use super::*;

    const POD: Gvk<'static> = Gvk {
        group: "",
        version: "v1",
        kind: "Pod",
    };

    fn meta() -> MetaSchemas {
        MetaSchemas {
            delete_options: "D".into(),
            status: "S".into(),
            patch: "P".into(),
        }
    }

    fn param_names(op: &Value) -> Vec<String> {
        let params = op["parameters"].as_array().cloned().unwrap_or_default();
        params
            .iter()
            .filter_map(|p| p["name"].as_str().map(str::to_string))
            .collect()
    }

    #[test]
    fn patch_offers_field_validation_and_no_strategic_merge_patch() {
        let op = operation(Shape::Patch, "id".into(), POD, Body::Schema("Pod"), &meta());
        let names = param_names(&op);
        assert_eq!(
            names,
            ["dryRun", "fieldManager", "fieldValidation", "force"]
        );
        assert!(op["parameters"]
            .as_array()
            .is_some_and(|p| p.iter().all(|p| p["in"] == "query")));
        let media = op["requestBody"]["content"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        let keys: Vec<&String> = media.keys().collect();
        assert_eq!(keys, PATCH_MEDIA_TYPES);
        assert_eq!(
            media["application/merge-patch+json"]["schema"]["$ref"],
            "#/components/schemas/P"
        );
        assert_eq!(
            op[GVK_EXTENSION],
            json!({"group": "", "kind": "Pod", "version": "v1"})
        );
        assert_eq!(op["x-kubernetes-action"], "patch");
        let ok = &op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"];
        assert_eq!(ok, "#/components/schemas/Pod");
        assert_eq!(op["responses"]["201"]["description"], "Created");
    }

    #[test]
    fn lists_can_be_watched_and_reads_take_no_body() {
        let list = operation(
            Shape::List,
            "id".into(),
            POD,
            Body::Schema("PodList"),
            &meta(),
        );
        let names = param_names(&list);
        assert!(
            names.contains(&"labelSelector".to_string()) && names.contains(&"watch".to_string())
        );
        let content = &list["responses"]["200"]["content"];
        assert_eq!(
            content["application/json;stream=watch"]["schema"]["$ref"],
            "#/components/schemas/PodList"
        );
        assert!(list.get("requestBody").is_none());
        let read = operation(Shape::Read, "id".into(), POD, Body::Text, &meta());
        assert!(read.get("parameters").is_none() && read.get("requestBody").is_none());
        assert_eq!(
            read["responses"]["200"]["content"]["text/plain"]["schema"],
            json!({"type": "string"})
        );
    }

    #[test]
    fn deletes_take_delete_options_and_collections_answer_with_status() {
        let one = operation(
            Shape::Delete,
            "id".into(),
            POD,
            Body::Schema("Pod"),
            &meta(),
        );
        assert_eq!(
            one["requestBody"]["content"]["*/*"]["schema"]["$ref"],
            "#/components/schemas/D"
        );
        assert!(param_names(&one).contains(&"propagationPolicy".to_string()));
        let all = operation(
            Shape::DeleteCollection,
            "id".into(),
            POD,
            Body::Schema("Pod"),
            &meta(),
        );
        assert_eq!(all["x-kubernetes-action"], "deletecollection");
        let status = &all["responses"]["200"]["content"]["application/json"]["schema"]["$ref"];
        assert_eq!(status, "#/components/schemas/S");
        assert!(!param_names(&all).contains(&"watch".to_string()));
        let create = operation(
            Shape::Create,
            "id".into(),
            POD,
            Body::Schema("Pod"),
            &meta(),
        );
        let codes: Vec<String> = create["responses"]
            .as_object()
            .map(|r| r.keys().cloned().collect())
            .unwrap_or_default();
        assert_eq!(codes, ["200", "201", "202"]);
        assert_eq!(create["requestBody"]["required"], true);
    }
}
