//! The OpenAPI v3 documents served at `/openapi/v3` (the index) and `/openapi/v3/<gv>` (one per
//! group-version). kubectl needs them for `apply`/`create`/`replace -f` under the default
//! `--validate=strict` (it trusts the server to validate when the kind's PATCH operation lists a
//! `fieldValidation` parameter) and for `explain`.
//!
//! Schemas come from k8s-openapi's schemars support, whose definition names are Kubernetes' own
//! (`io.k8s.api.core.v1.Pod`). schemars' OpenAPI 3 settings already write `$ref`s as
//! `#/components/schemas/<name>` and turn a `$ref` with a description into `allOf: [{$ref}]`, as
//! the real server does, so no rewriting is needed; `build()` still checks that every `$ref`
//! resolves inside its own document. k8s-openapi's schemas carry field descriptions and
//! `x-kubernetes-int-or-string`, but no `x-kubernetes-patch-*` or `x-kubernetes-list-*`
//! extensions (see `operation` for what that means for strategic merge patch).
//!
//! Everything is built eagerly, once: 13-30 ms in a release build on one shared x86-64 core,
//! keeping 1.14 MB of JSON (api/v1 is 425 kB). Building lazily would gain little: the index
//! carries every document's hash, so the first index request (the first thing kubectl asks for)
//! would have to build all of them anyway.
//!
//! Module layout: `kinds` maps kinds to k8s-openapi types, `document` assembles one
//! group-version document, `paths` lays out its path items and `operation` writes each
//! operation.

mod document;
mod kinds;
mod operation;
mod paths;

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha512};

use super::resources::{group_versions, Resource};

const COMPONENT_PREFIX: &str = "#/components/schemas/";
const GVK_EXTENSION: &str = "x-kubernetes-group-version-kind";

/// Why the OpenAPI documents could not be built. Each variant is a mistake in the resource
/// table or in this module, so failing `build()` at start-up is where it belongs.
#[derive(Debug, thiserror::Error)]
pub enum OpenApiError {
    /// A kind in the resource table has no entry in the k8s-openapi type table.
    #[error(
        "no schema is known for kind {kind} in {api_version}; add it to apiserver/openapi/kinds.rs"
    )]
    UnknownKind {
        /// "v1" or "group/version".
        api_version: String,
        /// The kind that was looked up.
        kind: String,
    },
    /// A kind's schema was generated inline instead of as a named component.
    #[error("the schema of {kind} is not a reference to a named component")]
    UnnamedSchema {
        /// The kind whose schema was inline.
        kind: String,
    },
    /// A `$ref` (or a component to be tagged) names a component the document does not define.
    #[error("openapi document {path} refers to {reference}, which it does not define")]
    DanglingRef {
        /// The document, e.g. "apis/apps/v1".
        path: String,
        /// The unresolved reference.
        reference: String,
    },
    /// A document could not be serialised.
    #[error("failed to serialise the openapi document {path}: {source}")]
    Serialize {
        /// The document, e.g. "api/v1", or "index".
        path: String,
        /// The serialiser's error.
        #[source]
        source: serde_json::Error,
    },
}

/// The index and every group-version document, serialised once and ready to be served.
pub struct OpenApi {
    index: Vec<u8>,
    documents: Vec<GroupVersionDocument>,
}

struct GroupVersionDocument {
    path: String,
    hash: String,
    body: Vec<u8>,
}

impl OpenApi {
    /// The JSON body of `GET /openapi/v3`: `{"paths": {"<gv path>": {"serverRelativeURL":
    /// "/openapi/v3/<gv path>?hash=<hash>"}}}`.
    pub fn index(&self) -> &[u8] {
        &self.index
    }

    /// The JSON body of `GET /openapi/v3/<path>`, where `path` is `api/v1` or
    /// `apis/<group>/<version>` (surrounding slashes are ignored). `None` means 404.
    pub fn document(&self, path: &str) -> Option<&[u8]> {
        self.find(path).map(|d| d.body.as_slice())
    }

    /// The hash in a document's index URL: uppercase hex SHA-512 of its body, as Kubernetes
    /// computes it. Serve it as the `ETag`. The real server answers a request whose `hash` query
    /// differs with a 301 to the current URL, and sends `Cache-Control: public, immutable` only
    /// when it matches.
    pub fn hash(&self, path: &str) -> Option<&str> {
        self.find(path).map(|d| d.hash.as_str())
    }

    fn find(&self, path: &str) -> Option<&GroupVersionDocument> {
        let path = path.trim_matches('/');
        self.documents.iter().find(|d| d.path == path)
    }
}

/// A group/version/kind as written in `x-kubernetes-group-version-kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Gvk<'a> {
    group: &'a str,
    version: &'a str,
    kind: &'a str,
}

impl<'a> Gvk<'a> {
    fn of(resource: &'a Resource) -> Self {
        Gvk {
            group: resource.group,
            version: resource.version,
            kind: resource.kind,
        }
    }

    /// Exactly these three keys, with "" for the core group: `kubectl explain` finds a kind's
    /// schema by comparing this object for deep equality with the one on an operation.
    fn to_json(self) -> Value {
        json!({"group": self.group, "kind": self.kind, "version": self.version})
    }
}

/// Builds the index and one document per group-version in the resource table.
pub fn build() -> Result<OpenApi, OpenApiError> {
    let gvs = group_versions();
    let mut documents = Vec::with_capacity(gvs.len());
    let mut index = Map::new();
    for &(group, version) in &gvs {
        let path = if group.is_empty() {
            format!("api/{version}")
        } else {
            format!("apis/{group}/{version}")
        };
        let document = document::group_version_document(group, version, &gvs, &path)?;
        let body = serde_json::to_vec(&document).map_err(|source| OpenApiError::Serialize {
            path: path.clone(),
            source,
        })?;
        let hash = hex_sha512(&body);
        let url = format!("/openapi/v3/{path}?hash={hash}");
        index.insert(path.clone(), json!({ "serverRelativeURL": url }));
        documents.push(GroupVersionDocument { path, hash, body });
    }
    let index = serde_json::to_vec(&json!({ "paths": index })).map_err(|source| {
        OpenApiError::Serialize {
            path: "index".to_string(),
            source,
        }
    })?;
    Ok(OpenApi { index, documents })
}

fn hex_sha512(bytes: &[u8]) -> String {
    Sha512::digest(bytes)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::resources::RESOURCES;

    const EXPECTED_GVS: &[&str] = &[
        "api/v1",
        "apis/apps/v1",
        "apis/batch/v1",
        "apis/coordination.k8s.io/v1",
        "apis/node.k8s.io/v1",
        "apis/discovery.k8s.io/v1",
        "apis/authorization.k8s.io/v1",
    ];

    fn built() -> OpenApi {
        match build() {
            Ok(openapi) => openapi,
            Err(e) => panic!("build failed: {e}"),
        }
    }

    fn parse(bytes: Option<&[u8]>) -> Value {
        let bytes = bytes.unwrap_or_default();
        serde_json::from_slice(bytes).unwrap_or(Value::Null)
    }

    /// Follows `$ref`s and single-element `allOf`s the way `kubectl explain` does.
    fn resolve<'a>(document: &'a Value, mut schema: &'a Value) -> &'a Value {
        loop {
            if let Some(target) = schema["$ref"]
                .as_str()
                .and_then(|r| r.strip_prefix(COMPONENT_PREFIX))
            {
                schema = &document["components"]["schemas"][target];
            } else if schema.get("properties").is_none()
                && schema["allOf"].as_array().map(Vec::len) == Some(1)
            {
                schema = &schema["allOf"][0];
            } else {
                return schema;
            }
        }
    }

    fn gvk(group: &str, version: &str, kind: &str) -> Value {
        json!({"group": group, "kind": kind, "version": version})
    }

    #[test]
    fn index_lists_every_group_version_with_the_hash_of_its_document() {
        let openapi = built();
        let index = parse(Some(openapi.index()));
        let paths = index["paths"].as_object().cloned().unwrap_or_default();
        for gv in EXPECTED_GVS {
            let body = openapi.document(gv).unwrap_or_default();
            let hash = hex_sha512(body);
            assert_eq!(hash.len(), 128);
            assert_eq!(openapi.hash(gv), Some(hash.as_str()));
            let url = paths.get(*gv).map(|p| p["serverRelativeURL"].clone());
            assert_eq!(
                url,
                Some(json!(format!("/openapi/v3/{gv}?hash={hash}"))),
                "{gv}"
            );
        }
        assert_eq!(paths.len(), EXPECTED_GVS.len());
    }

    #[test]
    fn building_twice_gives_identical_bytes_so_client_caches_stay_valid() {
        let (a, b) = (built(), built());
        assert_eq!(a.index(), b.index());
        assert_eq!(a.document("api/v1"), b.document("api/v1"));
    }

    #[test]
    fn unknown_document_paths_are_absent() {
        let openapi = built();
        assert!(openapi.document("/api/v1/").is_some());
        for path in [
            "",
            "api",
            "apis/apps",
            "apis/apps/v2",
            "api/v1/pods",
            "../api/v1",
        ] {
            assert!(openapi.document(path).is_none(), "{path}");
            assert!(openapi.hash(path).is_none(), "{path}");
        }
    }

    #[test]
    fn pod_schema_is_tagged_and_explain_can_walk_to_containers() {
        let doc = parse(built().document("api/v1"));
        let pod = &doc["components"]["schemas"]["io.k8s.api.core.v1.Pod"];
        assert_eq!(pod[GVK_EXTENSION], json!([gvk("", "v1", "Pod")]));
        let spec = resolve(&doc, &pod["properties"]["spec"]);
        let containers = &spec["properties"]["containers"];
        assert!(containers["description"]
            .as_str()
            .is_some_and(|d| d.contains("containers")));
        assert_eq!(
            containers["items"]["$ref"],
            json!("#/components/schemas/io.k8s.api.core.v1.Container")
        );
        let container = resolve(&doc, &containers["items"]);
        let image = &container["properties"]["image"]["description"];
        assert!(image.as_str().is_some_and(|d| !d.is_empty()));
        let metadata = &pod["properties"]["metadata"];
        assert!(
            metadata["description"].is_string(),
            "a $ref's description sits beside allOf"
        );
        assert!(resolve(&doc, metadata)["properties"]["labels"].is_object());
    }

    #[test]
    fn explain_finds_a_tagged_operation_and_exactly_one_schema_for_every_resource() {
        let openapi = built();
        for r in RESOURCES {
            let (prefix, gv) = if r.group.is_empty() {
                (format!("/api/{}", r.version), format!("api/{}", r.version))
            } else {
                (
                    format!("/apis/{}/{}", r.group, r.version),
                    format!("apis/{}/{}", r.group, r.version),
                )
            };
            let doc = parse(openapi.document(&gv));
            let candidates = [
                format!("{prefix}/{}", r.plural),
                format!("{prefix}/{}/{{name}}", r.plural),
                format!("{prefix}/namespaces/{{namespace}}/{}", r.plural),
                format!("{prefix}/namespaces/{{namespace}}/{}/{{name}}", r.plural),
            ];
            let found = candidates.iter().find_map(|p| {
                ["get", "post", "put", "patch", "delete"]
                    .iter()
                    .find_map(|m| doc["paths"][p][m].get(GVK_EXTENSION).cloned())
            });
            assert_eq!(found, Some(gvk(r.group, r.version, r.kind)), "{}", r.plural);
            let schemas = doc["components"]["schemas"]
                .as_object()
                .cloned()
                .unwrap_or_default();
            let tagged = schemas.values().filter(|s| {
                s[GVK_EXTENSION]
                    .as_array()
                    .is_some_and(|l| l.contains(&gvk(r.group, r.version, r.kind)))
            });
            assert_eq!(tagged.count(), 1, "{}", r.kind);
        }
    }

    #[test]
    fn every_patch_of_a_kind_offers_field_validation_like_kubectls_probe_needs() {
        let doc = parse(built().document("apis/apps/v1"));
        let paths = doc["paths"].as_object().cloned().unwrap_or_default();
        let deployment = gvk("apps", "v1", "Deployment");
        let patches: Vec<&Value> = paths
            .values()
            .filter_map(|item| item.get("patch"))
            .filter(|op| op[GVK_EXTENSION] == deployment)
            .collect();
        assert_eq!(patches.len(), 2, "the object and its status");
        for op in patches {
            let params = op["parameters"].as_array().cloned().unwrap_or_default();
            for name in ["fieldValidation", "fieldManager", "dryRun", "force"] {
                assert!(
                    params
                        .iter()
                        .any(|p| p["name"] == name && p["in"] == "query"),
                    "{name}"
                );
            }
            let media = op["requestBody"]["content"]
                .as_object()
                .cloned()
                .unwrap_or_default();
            assert!(media.contains_key("application/merge-patch+json"));
            assert!(!media.contains_key("application/strategic-merge-patch+json"));
        }
        let item = &paths["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"];
        assert_eq!(item["put"]["x-kubernetes-action"], "put");
        let create = &paths["/apis/apps/v1/namespaces/{namespace}/deployments"]["post"];
        let schema = &create["requestBody"]["content"]["*/*"]["schema"]["$ref"];
        assert_eq!(schema, "#/components/schemas/io.k8s.api.apps.v1.Deployment");
    }

    #[test]
    fn scopes_and_subresources_get_their_own_paths() {
        let openapi = built();
        let core = parse(openapi.document("api/v1"));
        let paths = &core["paths"];
        assert!(paths["/api/v1/nodes/{name}"]["get"].is_object());
        assert!(paths.get("/api/v1/namespaces/{namespace}/nodes").is_none());
        assert_eq!(paths["/api/v1/pods"]["get"]["x-kubernetes-action"], "list");
        let eviction = &paths["/api/v1/namespaces/{namespace}/pods/{name}/eviction"]["post"];
        assert_eq!(eviction[GVK_EXTENSION], gvk("policy", "v1", "Eviction"));
        let schemas = &core["components"]["schemas"];
        assert_eq!(
            schemas["io.k8s.api.policy.v1.Eviction"][GVK_EXTENSION],
            json!([gvk("policy", "v1", "Eviction")])
        );
        let log = &paths["/api/v1/namespaces/{namespace}/pods/{name}/log"]["get"];
        assert!(log["responses"]["200"]["content"]["text/plain"].is_object());
        let pod_list = &schemas["io.k8s.api.core.v1.PodList"];
        assert_eq!(pod_list[GVK_EXTENSION], json!([gvk("", "v1", "PodList")]));
        assert_eq!(
            pod_list["properties"]["items"]["items"]["$ref"],
            "#/components/schemas/io.k8s.api.core.v1.Pod"
        );
        let list = &paths["/api/v1/namespaces/{namespace}/pods"]["get"]["responses"]["200"];
        assert_eq!(
            list["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/io.k8s.api.core.v1.PodList"
        );

        let apps = parse(openapi.document("apis/apps/v1"));
        let scale = &apps["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"];
        assert_eq!(
            scale["patch"][GVK_EXTENSION],
            gvk("autoscaling", "v1", "Scale")
        );
        let tags = &apps["components"]["schemas"]["io.k8s.api.autoscaling.v1.Scale"][GVK_EXTENSION];
        assert_eq!(tags, &json!([gvk("autoscaling", "v1", "Scale")]));
        let delete_options =
            &apps["components"]["schemas"]["io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions"];
        assert!(delete_options[GVK_EXTENSION]
            .as_array()
            .is_some_and(|l| l.contains(&gvk("apps", "v1", "DeleteOptions"))));

        let reviews = parse(openapi.document("apis/authorization.k8s.io/v1"));
        let review = &reviews["paths"]["/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"];
        assert_eq!(
            review.as_object().map(|o| o.contains_key("post")),
            Some(true)
        );
        assert!(review.get("get").is_none());
        assert!(reviews["paths"]
            .get("/apis/authorization.k8s.io/v1/selfsubjectaccessreviews/{name}")
            .is_none());
    }

    #[test]
    fn every_ref_in_every_served_document_resolves_inside_it() {
        let openapi = built();
        for gv in EXPECTED_GVS {
            let doc = parse(openapi.document(gv));
            let schemas = doc["components"]["schemas"]
                .as_object()
                .cloned()
                .unwrap_or_default();
            let mut stack = vec![&doc];
            let mut refs = 0;
            while let Some(v) = stack.pop() {
                match v {
                    Value::Object(m) => {
                        if let Some(r) = m.get("$ref").and_then(Value::as_str) {
                            let target = r.strip_prefix(COMPONENT_PREFIX).unwrap_or(r);
                            assert!(schemas.contains_key(target), "{gv}: {r}");
                            refs += 1;
                        }
                        stack.extend(m.values());
                    }
                    Value::Array(a) => stack.extend(a),
                    _ => {}
                }
            }
            assert!(refs > 0, "{gv}");
            assert!(
                schemas.contains_key("io.k8s.apimachinery.pkg.apis.meta.v1.Status"),
                "{gv}"
            );
        }
    }
}
