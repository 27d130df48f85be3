//! delete and deletecollection: preconditions, finalizers, graceful deletion of pods bound to a
//! node, propagation policies, and namespaces (which empty themselves first).

use http::Response;
use serde_json::{json, Value};

use super::http::{decode_object, object_response, Body};
use super::objects::{self, meta_str};
use super::read::Filter;
use super::request::ResourceRequest;
use super::resources::{lookup, Resource};
use super::status::ApiError;
use super::write::store_error;
use super::{ApiServer, Ctx};
use crate::store::{Compare, Op, Txn};

/// Options of a delete (metav1.DeleteOptions), from the body or the query.
#[derive(Debug, Default, Clone)]
pub struct DeleteOptions {
    /// Seconds the object gets to stop; 0 = now.
    pub grace_period: Option<i64>,
    /// Orphan, Background or Foreground.
    pub propagation: Option<String>,
    /// Precondition on uid.
    pub uid: Option<String>,
    /// Precondition on resourceVersion.
    pub resource_version: Option<String>,
}

impl DeleteOptions {
    fn parse(ctx: &Ctx, body: &[u8]) -> Result<DeleteOptions, ApiError> {
        let mut opts = DeleteOptions {
            grace_period: ctx.query.number("gracePeriodSeconds")?,
            propagation: ctx.query.get("propagationPolicy").map(str::to_string),
            ..Default::default()
        };
        if !body.iter().all(u8::is_ascii_whitespace) {
            let v = decode_object(ctx.content_type.as_deref(), body)?;
            if let Some(g) = v.get("gracePeriodSeconds") {
                opts.grace_period = Some(g.as_i64().ok_or_else(|| {
                    ApiError::bad_request("gracePeriodSeconds must be an integer")
                })?);
            }
            if let Some(p) = v.get("propagationPolicy").and_then(Value::as_str) {
                opts.propagation = Some(p.to_string());
            }
            if v.get("orphanDependents").and_then(Value::as_bool) == Some(true)
                && opts.propagation.is_none()
            {
                opts.propagation = Some("Orphan".into());
            }
            opts.uid = v
                .pointer("/preconditions/uid")
                .and_then(Value::as_str)
                .map(str::to_string);
            opts.resource_version = v
                .pointer("/preconditions/resourceVersion")
                .and_then(Value::as_str)
                .map(str::to_string);
        }
        match opts.propagation.as_deref() {
            None | Some("Orphan" | "Background" | "Foreground") => {}
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "propagationPolicy {other:?} is not supported: use Orphan, Background or Foreground"
                )))
            }
        }
        if opts.grace_period.is_some_and(|g| g < 0) {
            opts.grace_period = Some(0);
        }
        Ok(opts)
    }
}

/// Whether a pod being deleted still waits for its node to stop it. A pod on a node that exists
/// is stopped by that node's agent, which then finishes the delete; a pod that never reached a
/// node goes at once (Kubernetes' pod GC does the same for pods of vanished nodes).
pub fn awaits_node(resource: &Resource, object: &Value) -> bool {
    resource.kind == "Pod"
        && object
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .is_some_and(|n| !n.is_empty())
        && object
            .pointer("/metadata/deletionGracePeriodSeconds")
            .and_then(Value::as_i64)
            .unwrap_or(0)
            > 0
}

impl ApiServer {
    /// DELETE of one object.
    pub(super) async fn delete(
        &self,
        r: &ResourceRequest,
        ctx: &Ctx,
        body: &[u8],
    ) -> Result<Response<Body>, ApiError> {
        let opts = DeleteOptions::parse(ctx, body)?;
        let name = r.name.clone().unwrap_or_default();
        let (object, _gone) = self
            .delete_object(
                r.resource,
                r.namespace.as_deref(),
                &name,
                &opts,
                ctx.query.dry_run()?,
            )
            .await?;
        Ok(object_response(200, &object, ctx.output))
    }

    /// Deletes one object; returns its last state and whether it is gone (false while
    /// finalizers or a graceful stop are pending).
    pub async fn delete_object(
        &self,
        resource: &'static Resource,
        namespace: Option<&str>,
        name: &str,
        opts: &DeleteOptions,
        dry_run: bool,
    ) -> Result<(Value, bool), ApiError> {
        let key = objects::key(resource, namespace, name);
        for _ in 0..16 {
            let Some(kv) = self.store.get(&key).await.map_err(store_error)? else {
                return Err(ApiError::not_found(resource, name));
            };
            let current = objects::from_kv(&kv)?;
            if let Some(uid) = &opts.uid {
                if meta_str(&current, "uid") != Some(uid) {
                    return Err(ApiError::conflict(resource, name, &format!("Precondition failed: UID in precondition: {uid}, UID in object meta: {}", meta_str(&current, "uid").unwrap_or_default())));
                }
            }
            if let Some(rv) = &opts.resource_version {
                if *rv != kv.mod_revision.to_string() {
                    return Err(ApiError::conflict(resource, name, &format!("Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}", kv.mod_revision)));
                }
            }
            let mut next = current.clone();
            let mut finalizers: Vec<Value> = current
                .pointer("/metadata/finalizers")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let already_deleting = meta_str(&current, "deletionTimestamp").is_some();
            if !already_deleting {
                match opts.propagation.as_deref() {
                    Some("Orphan") => push_unique(&mut finalizers, "orphan"),
                    Some("Foreground") => push_unique(&mut finalizers, "foregroundDeletion"),
                    _ => {}
                }
            }
            let grace = match resource.kind {
                "Pod" => opts.grace_period.unwrap_or_else(|| {
                    current
                        .pointer("/spec/terminationGracePeriodSeconds")
                        .and_then(Value::as_i64)
                        .unwrap_or(30)
                }),
                _ => 0,
            };
            let namespace_cleanup = resource.kind == "Namespace";
            if namespace_cleanup {
                // The "kubernetes" finalizer is removed by the namespace cleaner once empty.
                next["status"]["phase"] = json!("Terminating");
            }
            let pending = !finalizers.is_empty()
                || namespace_cleanup
                || (resource.kind == "Pod"
                    && grace > 0
                    && current
                        .pointer("/spec/nodeName")
                        .and_then(Value::as_str)
                        .is_some_and(|n| !n.is_empty())
                    && self.node_exists(
                        current
                            .pointer("/spec/nodeName")
                            .and_then(Value::as_str)
                            .unwrap_or_default(),
                    ));
            let op = if pending {
                if !already_deleting {
                    objects::set_meta(
                        &mut next,
                        "deletionTimestamp",
                        json!(objects::now_rfc3339()),
                    );
                    objects::set_meta(&mut next, "deletionGracePeriodSeconds", json!(grace));
                } else if resource.kind == "Pod"
                    && opts.grace_period.is_some_and(|g| {
                        g < current
                            .pointer("/metadata/deletionGracePeriodSeconds")
                            .and_then(Value::as_i64)
                            .unwrap_or(i64::MAX)
                    })
                {
                    // A shorter grace period may cut a graceful delete short.
                    objects::set_meta(
                        &mut next,
                        "deletionGracePeriodSeconds",
                        json!(opts.grace_period.unwrap_or(0)),
                    );
                }
                if !finalizers.is_empty() {
                    objects::set_meta(&mut next, "finalizers", Value::Array(finalizers));
                }
                if next == current {
                    return Ok((current, false));
                }
                Op::Put {
                    key: key.clone(),
                    value: objects::to_stored(&next)?,
                }
            } else {
                Op::Delete { key: key.clone() }
            };
            if dry_run {
                return Ok((next, !pending));
            }
            let resp = self
                .store
                .txn(Txn {
                    compare: vec![Compare::ModRevision {
                        key: key.clone(),
                        equals: kv.mod_revision,
                    }],
                    success: vec![op],
                    failure: vec![],
                })
                .await
                .map_err(store_error)?;
            if resp.succeeded {
                objects::set_meta(
                    &mut next,
                    "resourceVersion",
                    json!(resp.revision.to_string()),
                );
                if namespace_cleanup {
                    self.wake_namespace_cleaner();
                }
                return Ok((next, !pending));
            }
        }
        Err(ApiError::conflict(
            resource,
            name,
            "too many concurrent writers; try again",
        ))
    }

    fn node_exists(&self, node: &str) -> bool {
        lookup("", "v1", "nodes")
            .is_some_and(|nodes| self.cache.get(&objects::key(nodes, None, node)).is_some())
    }

    /// DELETE of a collection (deletecollection), with the list's selectors.
    pub(super) async fn delete_collection(
        &self,
        r: &ResourceRequest,
        ctx: &Ctx,
        body: &[u8],
    ) -> Result<Response<Body>, ApiError> {
        let opts = DeleteOptions::parse(ctx, body)?;
        let filter = Filter::from_ctx(r.resource, ctx)?;
        let dry_run = ctx.query.dry_run()?;
        self.fresh_cache().await?;
        let (objects, _) = self
            .cache
            .list(&objects::prefix(r.resource, r.namespace.as_deref()));
        let mut deleted = Vec::new();
        for obj in objects.iter().filter(|o| filter.matches(o)) {
            let name = obj.field("metadata.name").unwrap_or_default();
            let ns = obj.field("metadata.namespace");
            match self
                .delete_object(r.resource, ns, name, &opts, dry_run)
                .await
            {
                Ok((last, _)) => deleted.push(last),
                Err(e) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        let list = json!({
            "kind": r.resource.list_kind(),
            "apiVersion": r.resource.api_version(),
            "metadata": { "resourceVersion": self.store.current_revision().to_string() },
            "items": deleted,
        });
        Ok(object_response(200, &list, ctx.output))
    }
}

fn push_unique(finalizers: &mut Vec<Value>, name: &str) {
    if !finalizers.iter().any(|f| f == name) {
        finalizers.push(json!(name));
    }
}
