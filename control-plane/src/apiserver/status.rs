//! API errors and their one mapping to the wire: a `metav1.Status` with the HTTP code and the
//! `reason` kubectl keys its behaviour on (apply treats NotFound as "create", informers relist on
//! Expired, ...).

use serde_json::{json, Value};

use super::resources::Resource;

/// A failed API request, as the client will see it.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// HTTP status code.
    pub code: u16,
    /// Kubernetes `StatusReason`.
    pub reason: &'static str,
    /// Human-readable message.
    pub message: String,
    /// `details` of the Status, if any.
    pub details: Option<Value>,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.code, self.reason, self.message)
    }
}

impl std::error::Error for ApiError {}

fn details(resource: &Resource, name: &str) -> Value {
    let mut d = json!({ "name": name, "kind": resource.plural });
    if !resource.group.is_empty() {
        d["group"] = json!(resource.group);
    }
    d
}

/// "pods" or "deployments.apps", as Kubernetes names a resource in messages.
pub fn qualified(resource: &Resource) -> String {
    if resource.group.is_empty() {
        resource.plural.to_string()
    } else {
        format!("{}.{}", resource.plural, resource.group)
    }
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    /// 404 for an object that does not exist.
    pub fn not_found(resource: &Resource, name: &str) -> ApiError {
        ApiError {
            details: Some(details(resource, name)),
            ..ApiError::new(
                404,
                "NotFound",
                format!("{} \"{name}\" not found", qualified(resource)),
            )
        }
    }

    /// 404 for a path that names nothing Bramble serves.
    pub fn path_not_found() -> ApiError {
        ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
    }

    /// 404 because the namespace of a create does not exist.
    pub fn namespace_not_found(namespace: &str) -> ApiError {
        ApiError {
            details: Some(json!({ "name": namespace, "kind": "namespaces" })),
            ..ApiError::new(
                404,
                "NotFound",
                format!("namespaces \"{namespace}\" not found"),
            )
        }
    }

    /// 409 on create of a name that exists.
    pub fn already_exists(resource: &Resource, name: &str) -> ApiError {
        ApiError {
            details: Some(details(resource, name)),
            ..ApiError::new(
                409,
                "AlreadyExists",
                format!("{} \"{name}\" already exists", qualified(resource)),
            )
        }
    }

    /// 409 on an update based on a stale resourceVersion or a failed precondition.
    pub fn conflict(resource: &Resource, name: &str, why: &str) -> ApiError {
        ApiError {
            details: Some(details(resource, name)),
            ..ApiError::new(
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on {} \"{name}\": {why}",
                    qualified(resource)
                ),
            )
        }
    }

    /// 409 when the namespace is being deleted.
    pub fn namespace_terminating(resource: &Resource, name: &str, namespace: &str) -> ApiError {
        ApiError {
            details: Some(details(resource, name)),
            ..ApiError::new(
                403,
                "Forbidden",
                format!(
                    "{} \"{name}\" is forbidden: unable to create new content in namespace {namespace} because it is being terminated",
                    qualified(resource)
                ),
            )
        }
    }

    /// 422 with the field errors as causes.
    pub fn invalid(
        resource: &Resource,
        kind: &str,
        name: &str,
        causes: Vec<FieldError>,
    ) -> ApiError {
        let summary: Vec<String> = causes
            .iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect();
        let mut d = details(resource, name);
        d["kind"] = json!(kind);
        d["causes"] = Value::Array(
            causes
                .iter()
                .map(|c| json!({ "reason": c.reason, "message": c.message, "field": c.field }))
                .collect(),
        );
        ApiError {
            details: Some(d),
            ..ApiError::new(
                422,
                "Invalid",
                format!("{kind} \"{name}\" is invalid: {}", summary.join(", ")),
            )
        }
    }

    /// 400 for a malformed request.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(400, "BadRequest", message)
    }

    /// 401 without valid credentials.
    pub fn unauthorized() -> ApiError {
        ApiError::new(401, "Unauthorized", "Unauthorized")
    }

    /// 403 for an authenticated user who may not do this.
    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(403, "Forbidden", message)
    }

    /// 405 for a verb the resource does not support.
    pub fn method_not_supported(resource: &Resource, verb: &str) -> ApiError {
        ApiError::new(
            405,
            "MethodNotAllowed",
            format!(
                "{verb} is not supported on resources of kind \"{}\"",
                qualified(resource)
            ),
        )
    }

    /// 410 for a watch or list from a resourceVersion no longer retained.
    pub fn expired(message: impl Into<String>) -> ApiError {
        ApiError::new(410, "Expired", message)
    }

    /// 413 for a body over the limit.
    pub fn too_large(limit: usize) -> ApiError {
        ApiError::new(
            413,
            "RequestEntityTooLarge",
            format!("the request body is larger than the limit of {limit} bytes"),
        )
    }

    /// 415 for a body or patch type the server does not take.
    pub fn unsupported_media_type(content_type: &str) -> ApiError {
        ApiError::new(
            415,
            "UnsupportedMediaType",
            format!("the body of the request was in an unknown format: {content_type}"),
        )
    }

    /// 406 when no acceptable response type can be produced.
    pub fn not_acceptable(accept: &str) -> ApiError {
        ApiError::new(406, "NotAcceptable", format!("only the following media types are accepted: application/json, application/yaml, application/json;as=Table;v=v1;g=meta.k8s.io (asked for {accept})"))
    }

    /// 429 (e.g. an eviction blocked by a disruption budget).
    pub fn too_many_requests(message: impl Into<String>) -> ApiError {
        ApiError::new(429, "TooManyRequests", message)
    }

    /// 500: a fault of the server, never of the input.
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(
            500,
            "InternalError",
            format!("Internal error occurred: {}", message.into()),
        )
    }

    /// 503 while the server is not ready for this request.
    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError::new(503, "ServiceUnavailable", message)
    }

    /// The `metav1.Status` object.
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(d) = &self.details {
            status["details"] = d.clone();
        }
        status
    }
}

/// One invalid field of an object (a `StatusCause`).
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    /// `FieldValueRequired`, `FieldValueInvalid`, `FieldValueNotSupported`, `FieldValueDuplicate`, `FieldValueForbidden`.
    pub reason: &'static str,
    /// The field path, e.g. `metadata.name`.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl FieldError {
    /// A required field is missing.
    pub fn required(field: impl Into<String>) -> FieldError {
        FieldError {
            reason: "FieldValueRequired",
            field: field.into(),
            message: "Required value".into(),
        }
    }

    /// A field has a bad value.
    pub fn invalid(
        field: impl Into<String>,
        value: &str,
        why: impl std::fmt::Display,
    ) -> FieldError {
        FieldError {
            reason: "FieldValueInvalid",
            field: field.into(),
            message: format!("Invalid value: \"{value}\": {why}"),
        }
    }

    /// A field may not be set or changed.
    pub fn forbidden(field: impl Into<String>, why: impl Into<String>) -> FieldError {
        FieldError {
            reason: "FieldValueForbidden",
            field: field.into(),
            message: format!("Forbidden: {}", why.into()),
        }
    }

    /// Splits a whole field error ("metadata.name: Invalid value: …") into field and message.
    pub fn from_message(full: &str) -> FieldError {
        let (field, message) = full.split_once(": ").unwrap_or(("", full));
        let reason = if message.starts_with("Required value") {
            "FieldValueRequired"
        } else if message.starts_with("Too long") {
            "FieldValueTooLong"
        } else {
            "FieldValueInvalid"
        };
        FieldError {
            reason,
            field: field.to_string(),
            message: message.to_string(),
        }
    }

    /// A field that is not part of the schema (strict field validation).
    pub fn unknown(field: impl Into<String>) -> FieldError {
        let field = field.into();
        FieldError {
            reason: "FieldValueInvalid",
            message: format!("unknown field \"{field}\""),
            field,
        }
    }
}

/// A successful delete answered with a Status (for collections and for non-graceful deletes of
/// kinds where Kubernetes does so).
pub fn success_status(resource: &Resource, name: &str) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": details(resource, name),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::resources::lookup;

    #[test]
    fn statuses_have_the_shape_kubectl_reads() {
        let Some(deploy) = lookup("apps", "v1", "deployments") else {
            panic!("no deployments")
        };
        let s = ApiError::not_found(deploy, "web").to_status();
        assert_eq!(s["code"], 404);
        assert_eq!(s["reason"], "NotFound");
        assert_eq!(s["message"], "deployments.apps \"web\" not found");
        assert_eq!(s["details"]["kind"], "deployments");
        assert_eq!(s["details"]["group"], "apps");

        let e = ApiError::invalid(
            deploy,
            "Deployment",
            "Bad",
            vec![FieldError::invalid(
                "metadata.name",
                "Bad",
                "must be lower case",
            )],
        );
        assert_eq!(e.code, 422);
        assert!(e
            .message
            .starts_with("Deployment \"Bad\" is invalid: metadata.name: Invalid value"));
        assert_eq!(
            e.to_status()["details"]["causes"][0]["field"],
            "metadata.name"
        );
    }
}
