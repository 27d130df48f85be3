//! authorization.k8s.io reviews a user asks about themselves (`kubectl auth can-i`).
//! Authorization is simple for now: members of system:masters may do everything, nobody else
//! anything on resources; the reviews answer exactly that.

use http::Response;
use serde_json::{json, Value};

use super::http::{decode_object, object_response, Body};
use super::objects::check_kind;
use super::request::ResourceRequest;
use super::status::ApiError;
use super::Ctx;

/// POST of a SelfSubjectAccessReview or SelfSubjectRulesReview.
pub fn create(r: &ResourceRequest, ctx: &Ctx, body: &[u8]) -> Result<Response<Body>, ApiError> {
    let mut review = decode_object(ctx.content_type.as_deref(), body)?;
    check_kind(r.resource, &mut review)?;
    let admin = ctx.identity.is_admin();
    let status = match r.resource.kind {
        "SelfSubjectAccessReview" => {
            let spec = review.get("spec").cloned().unwrap_or(Value::Null);
            if spec.get("resourceAttributes").is_none()
                && spec.get("nonResourceAttributes").is_none()
            {
                return Err(ApiError::invalid(
                    r.resource,
                    r.resource.kind,
                    "",
                    vec![super::status::FieldError::required(
                        "spec.resourceAttributes",
                    )],
                ));
            }
            if admin {
                json!({ "allowed": true, "reason": "the user is in group system:masters" })
            } else {
                json!({ "allowed": false, "reason": "only members of system:masters are authorized" })
            }
        }
        _ => {
            let (resource_rules, non_resource_rules) = if admin {
                (
                    json!([{ "verbs": ["*"], "apiGroups": ["*"], "resources": ["*"] }]),
                    json!([{ "verbs": ["*"], "nonResourceURLs": ["*"] }]),
                )
            } else {
                (
                    json!([]),
                    json!([{ "verbs": ["get"], "nonResourceURLs": ["/version", "/healthz", "/livez", "/readyz"] }]),
                )
            };
            json!({ "resourceRules": resource_rules, "nonResourceRules": non_resource_rules, "incomplete": false })
        }
    };
    review["status"] = status;
    if review.get("metadata").is_none() {
        review["metadata"] = json!({});
    }
    Ok(object_response(201, &review, ctx.output))
}
