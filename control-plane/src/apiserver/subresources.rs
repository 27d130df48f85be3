//! Subresources: status, scale (autoscaling/v1 Scale), pods/eviction, pods/binding (pods/log,
//! exec, attach and portforward reach the node: see `pod_streams`).

use http::{Method, Response};
use hyper::body::Incoming;
use serde_json::{json, Value};

use super::delete::DeleteOptions;
use super::http::{decode_object, media_type, object_response, read_body, Body};
use super::objects::{self, meta_str};
use super::request::ResourceRequest;
use super::status::{success_status, ApiError};
use super::{ApiServer, Ctx};

impl ApiServer {
    pub(super) async fn subresource(
        &self,
        r: &ResourceRequest,
        sub: &str,
        ctx: Ctx,
        body: Incoming,
    ) -> Result<Response<Body>, ApiError> {
        let res = r.resource;
        let Some(name) = r.name.clone() else {
            return Err(ApiError::path_not_found());
        };
        match (sub, ctx.method.clone()) {
            ("status", Method::GET) => self.get(r, &ctx).await,
            ("status", Method::PUT) => {
                let bytes = read_body(body).await?;
                self.replace(r, &ctx, &bytes, Some("status")).await
            }
            ("status", Method::PATCH) => {
                let bytes = read_body(body).await?;
                self.patch(r, &ctx, &bytes, Some("status")).await
            }
            ("scale", Method::GET) => {
                self.fresh_cache().await?;
                let obj = self
                    .cache
                    .get(&objects::key(res, r.namespace.as_deref(), &name))
                    .ok_or_else(|| ApiError::not_found(res, &name))?;
                Ok(object_response(200, &scale_of(&obj.value()), ctx.output))
            }
            ("scale", Method::PUT | Method::PATCH) => {
                let bytes = read_body(body).await?;
                let method = ctx.method.clone();
                let media = media_type(ctx.content_type.as_deref());
                let written = self
                    .update_object(r, &ctx, None, |current| {
                        let current = current.ok_or_else(|| ApiError::not_found(res, &name))?;
                        let scale = scale_of(current);
                        let wanted = match method {
                            Method::PUT => decode_object(Some(&media), &bytes)?,
                            _ => {
                                let patch: Value = serde_json::from_slice(&bytes)
                                    .map_err(|e| ApiError::bad_request(format!("the scale patch is not valid JSON: {e}")))?;
                                let mut doc = scale.clone();
                                match media.as_str() {
                                    "application/json-patch+json" => {
                                        let ops: json_patch::Patch = serde_json::from_value(patch)
                                            .map_err(|e| ApiError::bad_request(format!("the JSON patch is not valid: {e}")))?;
                                        json_patch::patch(&mut doc, &ops).map_err(|e| ApiError::unprocessable_patch(res, Some(&name), &e.to_string()))?;
                                    }
                                    "application/merge-patch+json" | "application/strategic-merge-patch+json" => json_patch::merge(&mut doc, &patch),
                                    other => return Err(ApiError::unsupported_media_type(other)),
                                }
                                doc
                            }
                        };
                        let replicas = wanted
                            .pointer("/spec/replicas")
                            .and_then(Value::as_i64)
                            .filter(|r| *r >= 0 && *r <= i64::from(i32::MAX))
                            .ok_or_else(|| ApiError::invalid(res, "Scale", &name, vec![super::status::FieldError::invalid("spec.replicas", &wanted.pointer("/spec/replicas").map(Value::to_string).unwrap_or_default(), "must be a non-negative integer")]))?;
                        if let Some(rv) = meta_str(&wanted, "resourceVersion").filter(|rv| !rv.is_empty()) {
                            if Some(rv) != meta_str(current, "resourceVersion") {
                                return Err(ApiError::conflict(res, &name, "the object has been modified; please apply your changes to the latest version and try again"));
                            }
                        }
                        let mut next = current.clone();
                        next["spec"]["replicas"] = json!(replicas);
                        Ok(next)
                    })
                    .await?;
                Ok(object_response(200, &scale_of(&written.object), ctx.output))
            }
            ("eviction", Method::POST) => {
                let bytes = read_body(body).await?;
                let eviction = decode_object(ctx.content_type.as_deref(), &bytes)?;
                if meta_str(&eviction, "name").is_some_and(|n| n != name) {
                    return Err(ApiError::bad_request(
                        "the name of the eviction does not match the pod on the URL",
                    ));
                }
                let opts = DeleteOptions {
                    grace_period: eviction
                        .pointer("/deleteOptions/gracePeriodSeconds")
                        .and_then(Value::as_i64),
                    uid: eviction
                        .pointer("/deleteOptions/preconditions/uid")
                        .and_then(Value::as_str)
                        .map(str::to_string),
                    ..Default::default()
                };
                // No PodDisruptionBudgets are served, so nothing can block an eviction.
                self.delete_object(
                    res,
                    r.namespace.as_deref(),
                    &name,
                    &opts,
                    ctx.query.dry_run()?,
                )
                .await?;
                Ok(object_response(
                    201,
                    &success_status(res, &name),
                    ctx.output,
                ))
            }
            ("binding", Method::POST) => {
                let bytes = read_body(body).await?;
                let binding = decode_object(ctx.content_type.as_deref(), &bytes)?;
                let node = binding
                    .pointer("/target/name")
                    .and_then(Value::as_str)
                    .filter(|n| !n.is_empty())
                    .ok_or_else(|| ApiError::bad_request("a binding needs target.name"))?
                    .to_string();
                self.update_object(r, &ctx, None, |current| {
                    let current = current.ok_or_else(|| ApiError::not_found(res, &name))?;
                    if current
                        .pointer("/spec/nodeName")
                        .and_then(Value::as_str)
                        .is_some_and(|n| !n.is_empty())
                    {
                        return Err(ApiError::conflict(
                            res,
                            &name,
                            "pod is already assigned to a node",
                        ));
                    }
                    let mut next = current.clone();
                    next["spec"]["nodeName"] = json!(node);
                    Ok(next)
                })
                .await?;
                Ok(object_response(
                    201,
                    &success_status(res, &name),
                    ctx.output,
                ))
            }
            (_, m) => Err(ApiError::method_not_supported(res, m.as_str())),
        }
    }
}

/// The autoscaling/v1 Scale view of a scalable object.
fn scale_of(obj: &Value) -> Value {
    let selector = obj
        .pointer("/spec/selector")
        .and_then(|s| bramble_api::labels::Selector::from_label_selector(s).ok())
        .map(|s| s.to_string())
        .unwrap_or_default();
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": obj.pointer("/metadata/name"),
            "namespace": obj.pointer("/metadata/namespace"),
            "uid": obj.pointer("/metadata/uid"),
            "resourceVersion": obj.pointer("/metadata/resourceVersion"),
            "creationTimestamp": obj.pointer("/metadata/creationTimestamp"),
        },
        "spec": { "replicas": obj.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(0) },
        "status": {
            "replicas": obj.pointer("/status/replicas").and_then(Value::as_i64).unwrap_or(0),
            "selector": selector,
        },
    })
}
