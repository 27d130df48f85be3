//! One group-version document: the schemas its kinds reach, tagged with their
//! group-version-kinds, and the paths that serve them.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{DeleteOptions, ListMeta, Patch, Status};
use schemars::generate::SchemaSettings;
use schemars::{Schema, SchemaGenerator};
use serde_json::{json, Map, Value};

use super::operation::MetaSchemas;
use super::paths::{self, ResourceSchemas, SubresourceSchema};
use super::{kinds, Gvk, OpenApiError, COMPONENT_PREFIX, GVK_EXTENSION};
use crate::apiserver::resources::{Resource, RESOURCES};

/// Builds the document of `group`/`version`, named `path` in errors. `gvs` are all served
/// group-versions: DeleteOptions is tagged with each, as on the real server.
pub(super) fn group_version_document(
    group: &str,
    version: &str,
    gvs: &[(&str, &str)],
    path: &str,
) -> Result<Value, OpenApiError> {
    // A generator per document keeps each one down to the schemas its own kinds reach.
    let mut generator = SchemaSettings::openapi3()
        .with(|s| s.meta_schema = None)
        .into_generator();
    let meta = MetaSchemas {
        delete_options: named(&generator.subschema_for::<DeleteOptions>(), "DeleteOptions")?,
        status: named(&generator.subschema_for::<Status>(), "Status")?,
        patch: named(&generator.subschema_for::<Patch>(), "Patch")?,
    };
    let mut tags = Tags::default();
    tags.add(
        &meta.status,
        Gvk {
            group: "",
            version: "v1",
            kind: "Status",
        },
    );
    for &(group, version) in gvs {
        tags.add(
            &meta.delete_options,
            Gvk {
                group,
                version,
                kind: "DeleteOptions",
            },
        );
    }

    let mut paths = Map::new();
    let served = RESOURCES
        .iter()
        .filter(|r| r.group == group && r.version == version);
    for resource in served {
        let schemas = resource_schemas(&mut generator, resource, &mut tags)?;
        paths::add_resource_paths(&mut paths, resource, &schemas, &meta);
    }

    let mut schemas = generator.take_definitions(true);
    tags.apply(&mut schemas, path)?;
    let document = json!({
        "openapi": "3.0.0",
        "info": {"title": "Bramble", "version": env!("CARGO_PKG_VERSION")},
        "paths": paths,
        "components": {"schemas": schemas},
    });
    check_refs(path, &document)?;
    Ok(document)
}

/// `x-kubernetes-group-version-kind` entries to add to components once they all exist.
#[derive(Default)]
struct Tags(Vec<(String, Value)>);

impl Tags {
    fn add(&mut self, component: &str, gvk: Gvk<'_>) {
        self.0.push((component.to_string(), gvk.to_json()));
    }

    fn apply(self, schemas: &mut Map<String, Value>, path: &str) -> Result<(), OpenApiError> {
        for (name, gvk) in self.0 {
            let Some(Value::Object(schema)) = schemas.get_mut(&name) else {
                let path = path.to_string();
                return Err(OpenApiError::DanglingRef {
                    path,
                    reference: name,
                });
            };
            let entry = schema.entry(GVK_EXTENSION).or_insert_with(|| json!([]));
            if let Value::Array(list) = entry {
                if !list.contains(&gvk) {
                    list.push(gvk);
                }
            }
        }
        Ok(())
    }
}

/// Generates the schemas `resource` uses (its kind, its list, its subresources' kinds), tags
/// them, and returns their names.
fn resource_schemas(
    generator: &mut SchemaGenerator,
    resource: &'static Resource,
    tags: &mut Tags,
) -> Result<ResourceSchemas, OpenApiError> {
    let gvk = Gvk::of(resource);
    let kind = kind_component(generator, gvk)?;
    tags.add(&kind, gvk);
    let list = if resource.verbs.contains(&"list") {
        let list = add_list_schema(generator, resource, &kind)?;
        tags.add(
            &list,
            Gvk {
                kind: &resource.list_kind(),
                ..gvk
            },
        );
        Some(list)
    } else {
        None
    };
    let mut subresources = Vec::with_capacity(resource.subresources.len());
    for sub in resource.subresources {
        let sub_gvk = Gvk {
            group: sub.group,
            version: sub.version,
            kind: sub.kind,
        };
        let (gvk, body) = if sub.kind.is_empty() {
            // Status-like subresources exchange the parent object itself.
            (gvk, Some(kind.clone()))
        } else if !sub.exchanges_objects() {
            (sub_gvk, None)
        } else {
            let body = kind_component(generator, sub_gvk)?;
            tags.add(&body, sub_gvk);
            (sub_gvk, Some(body))
        };
        subresources.push(SubresourceSchema { sub, gvk, body });
    }
    Ok(ResourceSchemas {
        kind,
        list,
        subresources,
    })
}

/// Generates the schema of `gvk` and returns its component name.
fn kind_component(generator: &mut SchemaGenerator, gvk: Gvk<'_>) -> Result<String, OpenApiError> {
    let generate = kinds::kind_schema(gvk.group, gvk.version, gvk.kind).ok_or_else(|| {
        OpenApiError::UnknownKind {
            api_version: if gvk.group.is_empty() {
                gvk.version.to_string()
            } else {
                format!("{}/{}", gvk.group, gvk.version)
            },
            kind: gvk.kind.to_string(),
        }
    })?;
    named(&generate(generator), gvk.kind)
}

/// The component name a `$ref` schema points at.
fn named(schema: &Schema, kind: &str) -> Result<String, OpenApiError> {
    schema
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| r.strip_prefix(COMPONENT_PREFIX))
        .map(str::to_string)
        .ok_or_else(|| OpenApiError::UnnamedSchema {
            kind: kind.to_string(),
        })
}

/// Adds `<Kind>List` next to the kind's component (k8s-openapi's generic `List<T>` has no
/// schema) and returns its name, e.g. `io.k8s.api.core.v1.PodList`.
fn add_list_schema(
    generator: &mut SchemaGenerator,
    resource: &Resource,
    item: &str,
) -> Result<String, OpenApiError> {
    let list_meta = named(&generator.subschema_for::<ListMeta>(), "ListMeta")?;
    let name = format!("{item}List");
    // apiVersion and kind mean the same on a list as on its items; reuse their descriptions.
    let property = |key: &str| {
        generator
            .definitions()
            .get(item)
            .and_then(|schema| schema.pointer(&format!("/properties/{key}")))
            .cloned()
            .unwrap_or_else(|| json!({"type": "string"}))
    };
    let schema = json!({
        "description": format!("{} is a list of {} objects.", resource.list_kind(), resource.kind),
        "type": "object",
        "properties": {
            "apiVersion": property("apiVersion"),
            "items": {
                "description": format!("The {} in the list.", resource.plural),
                "type": "array",
                "items": {"$ref": format!("{COMPONENT_PREFIX}{item}")},
            },
            "kind": property("kind"),
            "metadata": {
                "description": "Standard list metadata.",
                "allOf": [{"$ref": format!("{COMPONENT_PREFIX}{list_meta}")}],
            },
        },
        "required": ["items"],
    });
    generator.definitions_mut().insert(name.clone(), schema);
    Ok(name)
}

/// Fails if any `$ref` in `document` does not name one of its own `components.schemas`:
/// `kubectl explain` resolves references only inside the document it downloaded.
fn check_refs(path: &str, document: &Value) -> Result<(), OpenApiError> {
    let components = document
        .pointer("/components/schemas")
        .and_then(Value::as_object);
    let mut stack = vec![document];
    while let Some(value) = stack.pop() {
        match value {
            Value::Object(map) => {
                if let Some(reference) = map.get("$ref") {
                    let target = reference
                        .as_str()
                        .and_then(|r| r.strip_prefix(COMPONENT_PREFIX));
                    let found = target
                        .zip(components)
                        .is_some_and(|(t, c)| c.contains_key(t));
                    if !found {
                        return Err(OpenApiError::DanglingRef {
                            path: path.to_string(),
                            reference: reference.to_string(),
                        });
                    }
                }
                stack.extend(map.values());
            }
            Value::Array(items) => stack.extend(items),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn document(group: &str, version: &str) -> Value {
        let gvs = [("", "v1"), (group, version)];
        group_version_document(group, version, &gvs, "test").unwrap_or(Value::Null)
    }

    fn schemas(document: &Value) -> Map<String, Value> {
        let schemas = document
            .pointer("/components/schemas")
            .and_then(Value::as_object);
        schemas.cloned().unwrap_or_default()
    }

    #[test]
    fn documents_hold_only_the_schemas_their_kinds_reach() {
        let apps = schemas(&document("apps", "v1"));
        assert!(
            apps.contains_key("io.k8s.api.core.v1.PodSpec"),
            "reached through templates"
        );
        assert!(
            apps.contains_key("io.k8s.api.autoscaling.v1.Scale"),
            "the scale subresource"
        );
        assert!(!apps.contains_key("io.k8s.api.core.v1.NodeSpec"));
        assert!(!apps.contains_key("io.k8s.api.batch.v1.Job"));
        let leases = schemas(&document("coordination.k8s.io", "v1"));
        assert!(leases.contains_key("io.k8s.api.coordination.v1.LeaseSpec"));
        assert!(!leases.contains_key("io.k8s.api.core.v1.PodSpec"));
        for meta in ["DeleteOptions", "Status", "Patch", "ListMeta", "ObjectMeta"] {
            let name = format!("io.k8s.apimachinery.pkg.apis.meta.v1.{meta}");
            assert!(leases.contains_key(&name), "{meta}");
        }
    }

    #[test]
    fn list_schemas_are_tagged_and_point_at_their_items() {
        let doc = document("batch", "v1");
        let all = schemas(&doc);
        let list = &all["io.k8s.api.batch.v1.JobList"];
        let tag = json!([{"group": "batch", "kind": "JobList", "version": "v1"}]);
        assert_eq!(list[GVK_EXTENSION], tag);
        let items = &list["properties"]["items"]["items"]["$ref"];
        assert_eq!(items, "#/components/schemas/io.k8s.api.batch.v1.Job");
        assert_eq!(list["required"], json!(["items"]));
        let api_version = &list["properties"]["apiVersion"]["description"];
        assert!(api_version
            .as_str()
            .is_some_and(|d| d.starts_with("APIVersion defines")));
    }

    #[test]
    fn delete_options_carry_every_served_group_version_and_status_the_core_one() {
        let all = schemas(&document("apps", "v1"));
        let delete = &all["io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions"][GVK_EXTENSION];
        let expected = json!([
            {"group": "", "kind": "DeleteOptions", "version": "v1"},
            {"group": "apps", "kind": "DeleteOptions", "version": "v1"},
        ]);
        assert_eq!(delete, &expected);
        let status = &all["io.k8s.apimachinery.pkg.apis.meta.v1.Status"][GVK_EXTENSION];
        assert_eq!(
            status,
            &json!([{"group": "", "kind": "Status", "version": "v1"}])
        );
    }

    #[test]
    fn tags_need_their_component_and_are_not_repeated() {
        let mut schemas = Map::new();
        schemas.insert("a".into(), json!({"type": "object"}));
        let gvk = Gvk {
            group: "",
            version: "v1",
            kind: "A",
        };
        let mut tags = Tags::default();
        tags.add("a", gvk);
        tags.add("a", gvk);
        assert!(tags.apply(&mut schemas, "t").is_ok());
        assert_eq!(schemas["a"][GVK_EXTENSION], json!([gvk.to_json()]));
        let mut missing = Tags::default();
        missing.add("b", gvk);
        let err = missing
            .apply(&mut schemas, "api/v1")
            .err()
            .map(|e| e.to_string());
        let expected = "openapi document api/v1 refers to b, which it does not define";
        assert_eq!(err.as_deref(), Some(expected));
    }

    #[test]
    fn a_group_version_without_resources_still_builds_an_empty_document() {
        let doc = document("example.com", "v1");
        assert_eq!(doc["paths"], json!({}));
        assert_eq!(doc["openapi"], "3.0.0");
    }

    #[test]
    fn check_refs_rejects_missing_foreign_and_malformed_references() {
        let ok = json!({
            "components": {"schemas": {"a": {"type": "string"}}},
            "x": {"$ref": "#/components/schemas/a"},
        });
        assert!(check_refs("t", &ok).is_ok());
        let missing = json!({
            "components": {"schemas": {}},
            "x": [{"$ref": "#/components/schemas/a"}],
        });
        let err = check_refs("api/v1", &missing).err().map(|e| e.to_string());
        let expected =
            "openapi document api/v1 refers to \"#/components/schemas/a\", which it does not define";
        assert_eq!(err.as_deref(), Some(expected));
        let foreign =
            json!({"components": {"schemas": {"a": {}}}, "x": {"$ref": "#/definitions/a"}});
        assert!(check_refs("t", &foreign).is_err());
        let not_a_string = json!({"components": {"schemas": {}}, "x": {"$ref": 3}});
        assert!(check_refs("t", &not_a_string).is_err());
        let no_components = json!({"x": {"$ref": "#/components/schemas/a"}});
        assert!(check_refs("t", &no_components).is_err());
    }

    #[test]
    fn unknown_kinds_are_reported_with_their_api_version() {
        let mut generator = SchemaSettings::openapi3().into_generator();
        let widget = Gvk {
            group: "example.com",
            version: "v1",
            kind: "Widget",
        };
        let err = kind_component(&mut generator, widget)
            .err()
            .map(|e| e.to_string());
        let expected = "no schema is known for kind Widget in example.com/v1; \
                        add it to apiserver/openapi/kinds.rs";
        assert_eq!(err.as_deref(), Some(expected));
        let core = Gvk {
            group: "",
            version: "v1",
            kind: "Widget",
        };
        let err = kind_component(&mut generator, core)
            .err()
            .map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("Widget in v1;")));
    }

    #[test]
    fn inline_schemas_are_refused_as_unnamed() {
        let inline = Schema::from(true);
        let err = named(&inline, "Thing").err().map(|e| e.to_string());
        let expected = "the schema of Thing is not a reference to a named component";
        assert_eq!(err.as_deref(), Some(expected));
        let other_place = Schema::new_ref("#/$defs/Thing".to_string());
        assert!(named(&other_place, "Thing").is_err());
    }
}
