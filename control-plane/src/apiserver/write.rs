//! create, update (PUT) and patch. Every write goes through one optimistic-concurrency loop:
//! read the current object and its revision, compute the new object, and commit only if the
//! revision is unchanged (compare-and-swap in the store). A client-supplied resourceVersion is a
//! precondition: a mismatch is 409 Conflict. Without one, the loop retries on a lost race.

use http::Response;
use serde_json::{json, Value};

use super::http::{decode_object, decode_yaml, media_type, object_response, with_warnings, Body};
use super::objects::{
    self, check, check_kind, check_namespace, comparable, meta_str, prepare_create, prepare_update,
    FieldValidation,
};
use super::request::ResourceRequest;
use super::resources::{lookup, Resource};
use super::status::ApiError;
use super::{ApiServer, Ctx};
use crate::patch;
use crate::store::{Compare, Op, StoreError, Txn};

/// How many lost races an unconditional write retries before giving up with 409.
const MAX_RETRIES: usize = 16;

/// Maps a store failure to the wire: the store being unavailable is the server's fault.
pub fn store_error(e: StoreError) -> ApiError {
    match e {
        StoreError::Compacted { .. } => ApiError::expired(format!("{e}")),
        StoreError::ValueTooLarge { .. } => ApiError::too_large(crate::store::MAX_VALUE_BYTES),
        StoreError::KeyTooLong { .. } => ApiError::bad_request(format!(
            "the object's name makes its storage key too long: {e}"
        )),
        other => ApiError::internal(format!("storage error: {other}")),
    }
}

/// The result of a write.
pub struct Written {
    /// The object as stored, with its new resourceVersion.
    pub object: Value,
    /// Whether it was created (201) rather than updated (200).
    pub created: bool,
    /// Warnings for the client.
    pub warnings: Vec<String>,
}

/// The field manager of a write: `fieldManager`, or the client's program name.
fn manager(ctx: &Ctx) -> Result<String, ApiError> {
    match ctx.query.get("fieldManager") {
        Some(m) if m.len() > 128 => Err(ApiError::bad_request(
            "fieldManager is longer than 128 characters",
        )),
        Some(m) if !m.is_empty() => Ok(m.to_string()),
        _ => Ok(ctx.user_agent_program()),
    }
}

impl Ctx {
    /// The context of a write the control plane makes on its own behalf.
    pub fn internal(manager: &str) -> Ctx {
        Ctx {
            identity: super::auth::Identity {
                user: format!("system:{manager}"),
                groups: vec![crate::pki::ADMIN_GROUP.into()],
            },
            method: http::Method::PATCH,
            query: super::request::Query::parse(Some(&format!("fieldManager={manager}"))),
            accept: None,
            content_type: None,
            user_agent: None,
            output: super::http::Output::Json,
        }
    }

    /// The program part of the User-Agent (`kubectl` from `kubectl/v1.32.4 (linux/amd64) …`),
    /// which Kubernetes uses as the default field manager.
    pub fn user_agent_program(&self) -> String {
        self.user_agent
            .as_deref()
            .and_then(|ua| ua.split('/').next())
            .filter(|p| !p.is_empty())
            .unwrap_or("unknown")
            .chars()
            .take(128)
            .collect()
    }
}

impl ApiServer {
    /// Checks that `namespace` exists and is not being deleted, before creating in it.
    pub(super) async fn check_namespace_open(
        &self,
        resource: &Resource,
        name: &str,
        namespace: &str,
    ) -> Result<(), ApiError> {
        let Some(namespaces) = lookup("", "v1", "namespaces") else {
            return Err(ApiError::internal("namespaces are not registered"));
        };
        let ns = self.cache.get(&objects::key(namespaces, None, namespace));
        let ns = match ns {
            Some(ns) => ns,
            None => {
                self.fresh_cache().await?;
                self.cache
                    .get(&objects::key(namespaces, None, namespace))
                    .ok_or_else(|| ApiError::namespace_not_found(namespace))?
            }
        };
        if ns.field("status.phase") == Some("Terminating") {
            return Err(ApiError::namespace_terminating(resource, name, namespace));
        }
        Ok(())
    }

    /// POST to a collection.
    pub(super) async fn create(
        &self,
        r: &ResourceRequest,
        ctx: &Ctx,
        body: &[u8],
    ) -> Result<Response<Body>, ApiError> {
        let object = decode_object(ctx.content_type.as_deref(), body)?;
        let written = self
            .create_object(r.resource, r.namespace.as_deref(), object, ctx)
            .await?;
        Ok(with_warnings(
            object_response(201, &written.object, ctx.output),
            &written.warnings,
        ))
    }

    /// Creates `object` in `namespace`: the one path every create takes.
    pub(super) async fn create_object(
        &self,
        resource: &'static Resource,
        namespace: Option<&str>,
        object: Value,
        ctx: &Ctx,
    ) -> Result<Written, ApiError> {
        self.create_tracked(resource, namespace, object, ctx, true)
            .await
    }

    /// Creates `object`; `track_update` records the writer as an Update manager (server-side
    /// apply has already recorded its Apply entry and passes false).
    async fn create_tracked(
        &self,
        resource: &'static Resource,
        namespace: Option<&str>,
        mut object: Value,
        ctx: &Ctx,
        track_update: bool,
    ) -> Result<Written, ApiError> {
        let validation = FieldValidation::parse(ctx.query.get("fieldValidation"))?;
        let dry_run = ctx.query.dry_run()?;
        check_kind(resource, &mut object)?;
        check_namespace(resource, namespace, &mut object)?;
        prepare_create(resource, &mut object)?;
        if resource.kind == "Pod" && resource.group.is_empty() {
            crate::controllers::default_tolerations::add_default_tolerations(
                &mut object,
                self.default_toleration_seconds,
            );
        }
        let checked = check(resource, object, validation)?;
        let mut object = checked.object;
        let name = meta_str(&object, "name").unwrap_or_default().to_string();
        if let Some(ns) = namespace.filter(|_| resource.namespaced) {
            self.check_namespace_open(resource, &name, ns).await?;
        }
        if track_update {
            let now = objects::now_rfc3339();
            object = patch::record_update(resource.kind, None, &object, &manager(ctx)?, &now);
        }
        let key = objects::key(resource, namespace, &name);
        if dry_run {
            return Ok(Written {
                object,
                created: true,
                warnings: checked.warnings,
            });
        }
        let txn = Txn {
            compare: vec![Compare::Absent { key: key.clone() }],
            success: vec![Op::Put {
                key: key.clone(),
                value: objects::to_stored(&object)?,
            }],
            failure: vec![],
        };
        let resp = self.store.txn(txn).await.map_err(store_error)?;
        if !resp.succeeded {
            return Err(ApiError::already_exists(resource, &name));
        }
        objects::set_meta(
            &mut object,
            "resourceVersion",
            json!(resp.revision.to_string()),
        );
        Ok(Written {
            object,
            created: true,
            warnings: checked.warnings,
        })
    }

    /// PUT of an object (or of its status).
    pub(super) async fn replace(
        &self,
        r: &ResourceRequest,
        ctx: &Ctx,
        body: &[u8],
        subresource: Option<&str>,
    ) -> Result<Response<Body>, ApiError> {
        let body = decode_object(ctx.content_type.as_deref(), body)?;
        let name = r.name.clone().unwrap_or_default();
        if meta_str(&body, "name").is_some_and(|n| n != name) {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({}) does not match the name on the URL ({name})",
                meta_str(&body, "name").unwrap_or_default()
            )));
        }
        let written = self
            .update_object(r, ctx, subresource, |_current| Ok(body.clone()))
            .await?;
        Ok(with_warnings(
            object_response(200, &written.object, ctx.output),
            &written.warnings,
        ))
    }

    /// PATCH of an object (or of its status).
    pub(super) async fn patch(
        &self,
        r: &ResourceRequest,
        ctx: &Ctx,
        body: &[u8],
        subresource: Option<&str>,
    ) -> Result<Response<Body>, ApiError> {
        let media = media_type(ctx.content_type.as_deref());
        let kind = r.resource.kind;
        let written = match media.as_str() {
            "application/apply-patch+yaml" => {
                let applied = decode_yaml(body)?;
                if !applied.is_object() {
                    return Err(ApiError::bad_request("the apply patch must be an object"));
                }
                let Some(manager) = ctx
                    .query
                    .get("fieldManager")
                    .filter(|m| !m.is_empty())
                    .map(str::to_string)
                else {
                    return Err(ApiError::invalid(
                        r.resource,
                        kind,
                        r.name.as_deref().unwrap_or_default(),
                        vec![super::status::FieldError::required("fieldManager")],
                    ));
                };
                let force = ctx.query.flag("force");
                self.apply_object(r, ctx, subresource, applied, &manager, force)
                    .await?
            }
            "application/json-patch+json" => {
                let ops: json_patch::Patch = serde_json::from_slice(body).map_err(|e| {
                    ApiError::bad_request(format!("the JSON patch is not valid: {e}"))
                })?;
                self.update_object(r, ctx, subresource, |current| {
                    let mut doc = current.cloned().unwrap_or(Value::Null);
                    json_patch::patch(&mut doc, &ops).map_err(|e| {
                        ApiError::unprocessable_patch(r.resource, r.name.as_deref(), &e.to_string())
                    })?;
                    Ok(doc)
                })
                .await?
            }
            "application/merge-patch+json" => {
                let merge: Value = serde_json::from_slice(body).map_err(|e| {
                    ApiError::bad_request(format!("the merge patch is not valid JSON: {e}"))
                })?;
                if !merge.is_object() {
                    return Err(ApiError::bad_request(
                        "the merge patch must be a JSON object",
                    ));
                }
                self.update_object(r, ctx, subresource, |current| {
                    let mut doc = current.cloned().unwrap_or(Value::Null);
                    json_patch::merge(&mut doc, &merge);
                    Ok(doc)
                })
                .await?
            }
            "application/strategic-merge-patch+json" => {
                let smp: Value = serde_json::from_slice(body).map_err(|e| {
                    ApiError::bad_request(format!(
                        "the strategic merge patch is not valid JSON: {e}"
                    ))
                })?;
                if !smp.is_object() {
                    return Err(ApiError::bad_request(
                        "the strategic merge patch must be a JSON object",
                    ));
                }
                self.update_object(r, ctx, subresource, |current| {
                    let doc = current.cloned().unwrap_or(Value::Null);
                    patch::strategic_merge_patch(kind, &doc, &smp).map_err(|e| {
                        ApiError::unprocessable_patch(r.resource, r.name.as_deref(), &e.to_string())
                    })
                })
                .await?
            }
            other => return Err(ApiError::unsupported_media_type(other)),
        };
        let status = if written.created { 201 } else { 200 };
        Ok(with_warnings(
            object_response(status, &written.object, ctx.output),
            &written.warnings,
        ))
    }

    async fn apply_object(
        &self,
        r: &ResourceRequest,
        ctx: &Ctx,
        subresource: Option<&str>,
        mut applied: Value,
        manager: &str,
        force: bool,
    ) -> Result<Written, ApiError> {
        check_kind(r.resource, &mut applied)?;
        let name = r.name.clone().unwrap_or_default();
        if meta_str(&applied, "name").is_some_and(|n| n != name) {
            return Err(ApiError::bad_request(
                "the name of the applied object does not match the name on the URL",
            ));
        }
        let key = objects::key(r.resource, r.namespace.as_deref(), &name);
        let exists = self.store.get(&key).await.map_err(store_error)?.is_some();
        if !exists {
            if subresource.is_some() {
                return Err(ApiError::not_found(r.resource, &name));
            }
            let now = objects::now_rfc3339();
            let mut fresh = applied.clone();
            objects::set_meta(&mut fresh, "name", json!(name));
            let merged =
                patch::server_side_apply(r.resource.kind, None, &fresh, manager, force, &now)
                    .map_err(|e| apply_error(r.resource, &name, e))?;
            return self
                .create_tracked(r.resource, r.namespace.as_deref(), merged, ctx, false)
                .await;
        }
        self.update_object_with(r, ctx, subresource, false, |current| {
            let now = objects::now_rfc3339();
            patch::server_side_apply(r.resource.kind, current, &applied, manager, force, &now)
                .map_err(|e| apply_error(r.resource, &name, e))
        })
        .await
    }

    /// An update made by the control plane itself (controllers), recorded under `manager`.
    pub async fn internal_update<F>(
        &self,
        resource: &'static Resource,
        namespace: Option<&str>,
        name: &str,
        manager: &str,
        mutate: F,
    ) -> Result<Value, ApiError>
    where
        F: FnMut(&Value) -> Result<Value, ApiError>,
    {
        self.internal_update_of(resource, namespace, name, None, manager, mutate)
            .await
    }

    /// [`Self::internal_update`] of the status subresource: only `status` changes.
    pub async fn internal_update_status<F>(
        &self,
        resource: &'static Resource,
        namespace: Option<&str>,
        name: &str,
        manager: &str,
        mutate: F,
    ) -> Result<Value, ApiError>
    where
        F: FnMut(&Value) -> Result<Value, ApiError>,
    {
        self.internal_update_of(resource, namespace, name, Some("status"), manager, mutate)
            .await
    }

    async fn internal_update_of<F>(
        &self,
        resource: &'static Resource,
        namespace: Option<&str>,
        name: &str,
        subresource: Option<&str>,
        manager: &str,
        mut mutate: F,
    ) -> Result<Value, ApiError>
    where
        F: FnMut(&Value) -> Result<Value, ApiError>,
    {
        let request = ResourceRequest {
            resource,
            namespace: namespace.map(str::to_string),
            name: Some(name.to_string()),
            subresource: None,
        };
        let ctx = Ctx::internal(manager);
        let written = self
            .update_object(&request, &ctx, subresource, |current| match current {
                Some(c) => mutate(c),
                None => Err(ApiError::not_found(resource, name)),
            })
            .await?;
        Ok(written.object)
    }

    /// Creates `object` as the control plane's component `manager`.
    pub async fn internal_create(
        &self,
        resource: &'static Resource,
        namespace: Option<&str>,
        object: Value,
        manager: &str,
    ) -> Result<Value, ApiError> {
        let ctx = Ctx::internal(manager);
        Ok(self
            .create_object(resource, namespace, object, &ctx)
            .await?
            .object)
    }

    /// Updates an object through `mutate`, which gets the current object and returns the new one.
    pub(super) async fn update_object<F>(
        &self,
        r: &ResourceRequest,
        ctx: &Ctx,
        subresource: Option<&str>,
        mutate: F,
    ) -> Result<Written, ApiError>
    where
        F: FnMut(Option<&Value>) -> Result<Value, ApiError>,
    {
        self.update_object_with(r, ctx, subresource, true, mutate)
            .await
    }

    async fn update_object_with<F>(
        &self,
        r: &ResourceRequest,
        ctx: &Ctx,
        subresource: Option<&str>,
        track_update: bool,
        mut mutate: F,
    ) -> Result<Written, ApiError>
    where
        F: FnMut(Option<&Value>) -> Result<Value, ApiError>,
    {
        let resource = r.resource;
        let name = r.name.clone().unwrap_or_default();
        let key = objects::key(resource, r.namespace.as_deref(), &name);
        let validation = FieldValidation::parse(ctx.query.get("fieldValidation"))?;
        let dry_run = ctx.query.dry_run()?;
        let manager = manager(ctx)?;
        for _ in 0..MAX_RETRIES {
            let Some(kv) = self.store.get(&key).await.map_err(store_error)? else {
                return Err(ApiError::not_found(resource, &name));
            };
            let current = objects::from_kv(&kv)?;
            let mut new = mutate(Some(&current))?;
            check_kind(resource, &mut new)?;
            check_namespace(resource, r.namespace.as_deref(), &mut new)?;
            let precondition = meta_str(&new, "resourceVersion")
                .filter(|rv| !rv.is_empty())
                .map(str::to_string);
            if let Some(rv) = &precondition {
                if *rv != kv.mod_revision.to_string() {
                    return Err(ApiError::conflict(resource, &name, "the object has been modified; please apply your changes to the latest version and try again"));
                }
            }
            prepare_update(resource, &current, &mut new, subresource)?;
            let checked = check(resource, new, validation)?;
            let mut new = checked.object;
            if track_update {
                let now = objects::now_rfc3339();
                new = patch::record_update(resource.kind, Some(&current), &new, &manager, &now);
            }
            if comparable(&new) == comparable(&current) {
                // Nothing changed: Kubernetes does not write, and keeps the resourceVersion.
                return Ok(Written {
                    object: current,
                    created: false,
                    warnings: checked.warnings,
                });
            }
            let finished = objects::meta_str(&new, "deletionTimestamp").is_some()
                && new
                    .pointer("/metadata/finalizers")
                    .and_then(Value::as_array)
                    .is_none_or(|f| f.is_empty())
                && !super::delete::awaits_node(resource, &new);
            if dry_run {
                return Ok(Written {
                    object: new,
                    created: false,
                    warnings: checked.warnings,
                });
            }
            let op = if finished {
                Op::Delete { key: key.clone() }
            } else {
                Op::Put {
                    key: key.clone(),
                    value: objects::to_stored(&new)?,
                }
            };
            let txn = Txn {
                compare: vec![Compare::ModRevision {
                    key: key.clone(),
                    equals: kv.mod_revision,
                }],
                success: vec![op],
                failure: vec![],
            };
            let resp = self.store.txn(txn).await.map_err(store_error)?;
            if resp.succeeded {
                objects::set_meta(
                    &mut new,
                    "resourceVersion",
                    json!(resp.revision.to_string()),
                );
                return Ok(Written {
                    object: new,
                    created: false,
                    warnings: checked.warnings,
                });
            }
            // Someone wrote between our read and our write: go again from the new state. An
            // update that carries a resourceVersion then fails the precondition above with a
            // Conflict, as it should; a patch (whose resourceVersion came from the state it was
            // applied to) is simply applied to the new state, as Kubernetes does.
        }
        Err(ApiError::conflict(
            resource,
            &name,
            "too many concurrent writers; try again",
        ))
    }
}

fn apply_error(resource: &Resource, name: &str, e: patch::apply::ApplyError) -> ApiError {
    match &e {
        patch::apply::ApplyError::Conflict { conflicts } => {
            let mut err = ApiError::conflict(resource, name, "");
            err.message = e.to_string();
            if let Some(d) = err.details.as_mut() {
                d["causes"] = Value::Array(
                    conflicts
                        .iter()
                        .map(|c| json!({ "reason": "FieldManagerConflict", "message": format!("conflict with \"{}\"", c.manager), "field": c.field }))
                        .collect(),
                );
            }
            err
        }
        _ => ApiError::bad_request(e.to_string()),
    }
}

impl ApiError {
    /// 422 for a patch that cannot be applied to the object.
    pub fn unprocessable_patch(resource: &Resource, name: Option<&str>, why: &str) -> ApiError {
        ApiError {
            code: 422,
            reason: "Invalid",
            message: format!(
                "{} \"{}\" could not be patched: {why}",
                super::status::qualified(resource),
                name.unwrap_or_default()
            ),
            details: None,
        }
    }
}
