//! Request bodies in, responses out: size limits, content negotiation, and the few media types
//! Kubernetes clients use.

use std::convert::Infallible;

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full, Limited};
use serde_json::Value;

use super::protobuf;
use super::status::ApiError;

/// The body type of every response.
pub type Body = BoxBody<Bytes, Infallible>;

/// Kubernetes refuses request bodies over 3 MiB.
pub const MAX_BODY: usize = 3 * 1024 * 1024;

/// Reads a whole request body, refusing more than [`MAX_BODY`].
pub async fn read_body(body: hyper::body::Incoming) -> Result<Bytes, ApiError> {
    match Limited::new(body, MAX_BODY).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(ApiError::too_large(MAX_BODY))
        }
        Err(e) => Err(ApiError::bad_request(format!(
            "cannot read the request body: {e}"
        ))),
    }
}

/// The media type of a Content-Type header without parameters, lower-cased.
pub fn media_type(content_type: Option<&str>) -> String {
    content_type
        .unwrap_or("application/json")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// Decodes a body that carries an object: JSON, YAML or Kubernetes protobuf.
pub fn decode_object(content_type: Option<&str>, body: &[u8]) -> Result<Value, ApiError> {
    let media = media_type(content_type);
    let value: Value = match media.as_str() {
        "application/json" | "" | "*/*" => serde_json::from_slice(body).map_err(|e| {
            ApiError::bad_request(format!("the request body is not valid JSON: {e}"))
        })?,
        "application/yaml" | "application/x-yaml" | "text/yaml" => decode_yaml(body)?,
        "application/vnd.kubernetes.protobuf" => protobuf::decode(body).map_err(|e| match e {
            protobuf::ProtobufError::UnsupportedKind { .. } => {
                ApiError::unsupported_media_type(&format!("{media}: {e}"))
            }
            other => ApiError::bad_request(format!(
                "the request body is not a valid Kubernetes protobuf message: {other}"
            )),
        })?,
        other => return Err(ApiError::unsupported_media_type(other)),
    };
    if !value.is_object() {
        return Err(ApiError::bad_request("the request body must be an object"));
    }
    Ok(value)
}

/// Parses YAML (one document) into JSON values.
pub fn decode_yaml(body: &[u8]) -> Result<Value, ApiError> {
    serde_yaml::from_slice::<Value>(body)
        .map_err(|e| ApiError::bad_request(format!("the request body is not valid YAML: {e}")))
}

/// How the client wants objects back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// Plain JSON objects and lists.
    Json,
    /// `meta.k8s.io/v1` Table.
    Table,
    /// YAML.
    Yaml,
}

impl Output {
    /// Reads the Accept header. Protobuf is asked for by typed clients but they all accept JSON
    /// as well, so JSON is answered.
    pub fn negotiate(accept: Option<&str>) -> Output {
        let accept = accept.unwrap_or("application/json");
        for media in accept.split(',') {
            let params: Vec<&str> = media.split(';').map(str::trim).collect();
            let has = |p: &str| params.iter().any(|x| x.eq_ignore_ascii_case(p));
            if has("as=Table") && (has("g=meta.k8s.io")) && (has("v=v1") || has("v=v1beta1")) {
                return Output::Table;
            }
            if params.first().is_some_and(|m| *m == "application/yaml") {
                return Output::Yaml;
            }
            if params.first().is_some_and(|m| {
                matches!(
                    *m,
                    "application/json" | "*/*" | "application/vnd.kubernetes.protobuf"
                )
            }) {
                return Output::Json;
            }
        }
        Output::Json
    }
}

/// A complete body.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed()
}

/// A JSON response.
pub fn json_response(status: u16, value: &Value) -> Response<Body> {
    let bytes = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
    bytes_response(status, "application/json", bytes)
}

/// A response in the negotiated output (Table is produced by the caller).
pub fn object_response(status: u16, value: &Value, output: Output) -> Response<Body> {
    match output {
        Output::Yaml => match serde_yaml::to_string(value) {
            Ok(s) => bytes_response(status, "application/yaml", s.into_bytes()),
            Err(_) => json_response(status, value),
        },
        _ => json_response(status, value),
    }
}

/// A response with the given content type.
pub fn bytes_response(status: u16, content_type: &str, bytes: impl Into<Bytes>) -> Response<Body> {
    let mut resp = Response::new(full(bytes));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(v) = HeaderValue::from_str(content_type) {
        resp.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    resp
}

/// The Status response of an error.
pub fn error_response(err: &ApiError) -> Response<Body> {
    json_response(err.code, &err.to_status())
}

/// Adds `Warning: 299 - "..."` headers, which kubectl prints.
pub fn with_warnings(mut resp: Response<Body>, warnings: &[String]) -> Response<Body> {
    for w in warnings {
        let escaped = w.replace('\\', "\\\\").replace('"', "\\\"");
        if let Ok(v) = HeaderValue::from_str(&format!("299 - \"{escaped}\"")) {
            resp.headers_mut().append(header::WARNING, v);
        }
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiates_what_kubectl_asks_for() {
        assert_eq!(
            Output::negotiate(Some("application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json")),
            Output::Table
        );
        assert_eq!(
            Output::negotiate(Some("application/vnd.kubernetes.protobuf,application/json")),
            Output::Json
        );
        assert_eq!(
            Output::negotiate(Some("application/json, */*")),
            Output::Json
        );
        assert_eq!(Output::negotiate(None), Output::Json);
    }

    #[test]
    fn refuses_bodies_that_are_not_objects() {
        assert!(decode_object(Some("application/json"), b"[1,2]").is_err());
        assert!(decode_object(Some("application/json"), b"{bad").is_err());
        assert!(decode_object(Some("text/plain"), b"{}").map_err(|e| e.code) == Err(415));
        assert!(decode_object(Some("application/yaml"), b"a: [").is_err());
        assert!(decode_object(Some("application/yaml"), b"kind: Pod\n").is_ok());
    }
}
