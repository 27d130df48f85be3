//! get and list, served from the watch cache, with label and field selectors, paging and
//! Table output.

use base64::Engine as _;
use bramble_api::fields::FieldSelector;
use bramble_api::labels::Selector;
use http::Response;
use serde_json::{json, Value};

use super::http::{bytes_response, object_response, Body, Output};
use super::objects::{self, selectable_fields};
use super::request::ResourceRequest;
use super::resources::Resource;
use super::status::ApiError;
use super::table::{self, IncludeObject};
use super::{ApiServer, Ctx};
use crate::watch_cache::CachedObject;

/// The label and field selectors of a list or watch.
pub struct Filter {
    labels: Selector,
    fields: FieldSelector,
    resource: &'static Resource,
}

impl Filter {
    /// Parses `labelSelector` and `fieldSelector`, refusing fields the resource cannot select on.
    pub fn from_ctx(resource: &'static Resource, ctx: &Ctx) -> Result<Filter, ApiError> {
        let labels = Selector::parse(ctx.query.get("labelSelector").unwrap_or(""))
            .map_err(|e| ApiError::bad_request(format!("unable to parse requirement: {e}")))?;
        let fields = FieldSelector::parse(ctx.query.get("fieldSelector").unwrap_or(""))
            .map_err(|e| ApiError::bad_request(format!("invalid field selector: {e}")))?;
        for req in fields.requirements() {
            let field = req.field.as_str();
            if field != "metadata.name"
                && field != "metadata.namespace"
                && !selectable_fields(resource).contains(&field)
            {
                return Err(ApiError::bad_request(format!(
                    "field label not supported: {field}"
                )));
            }
        }
        Ok(Filter {
            labels,
            fields,
            resource,
        })
    }

    /// Whether `object` passes both selectors.
    pub fn matches(&self, object: &CachedObject) -> bool {
        if !self.labels.is_empty() && !self.labels.matches(&object.labels) {
            return false;
        }
        let kind = self.resource.kind;
        self.fields.matches(|field| {
            // Events select on `source`, which is source.component on the object.
            let path = if kind == "Event" && field == "source" {
                "source.component"
            } else {
                field
            };
            object.field(path).map(str::to_string)
        })
    }

    /// The one name the field selector pins, if any (watch of a single object).
    pub fn single_name(&self) -> Option<&str> {
        self.fields.single_name()
    }
}

/// A list continuation token: where the last page ended.
fn encode_continue(revision: i64, last_key: &str) -> String {
    let token = json!({ "v": "meta.k8s.io/v1", "rv": revision, "start": last_key });
    base64::engine::general_purpose::STANDARD.encode(token.to_string())
}

fn decode_continue(token: &str) -> Result<(i64, String), ApiError> {
    let bad =
        || ApiError::bad_request("continue key is not valid: it was not issued by this server");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(token)
        .map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    let rv = v.get("rv").and_then(Value::as_i64).ok_or_else(bad)?;
    let start = v
        .get("start")
        .and_then(Value::as_str)
        .ok_or_else(bad)?
        .to_string();
    Ok((rv, start))
}

impl ApiServer {
    /// GET of one object.
    pub(super) async fn get(
        &self,
        r: &ResourceRequest,
        ctx: &Ctx,
    ) -> Result<Response<Body>, ApiError> {
        let name = r.name.as_deref().unwrap_or_default();
        if ctx.query.get("resourceVersion").unwrap_or("") != "0" {
            self.fresh_cache().await?;
        }
        let key = objects::key(r.resource, r.namespace.as_deref(), name);
        let object = self
            .cache
            .get(&key)
            .ok_or_else(|| ApiError::not_found(r.resource, name))?;
        if ctx.output == Output::Json {
            // The cached bytes are the response.
            return Ok(bytes_response(200, "application/json", object.json.clone()));
        }
        let value = object.value();
        if ctx.output == Output::Table {
            let meta = json!({ "resourceVersion": object.revision.to_string() });
            let t = table::to_table(
                r.resource,
                std::slice::from_ref(&value),
                meta,
                IncludeObject::from_query(ctx.query.get("includeObject"))
                    .map_err(|e| ApiError::bad_request(e.to_string()))?,
                true,
                std::time::SystemTime::now(),
            );
            return Ok(object_response(200, &t, Output::Json));
        }
        Ok(object_response(200, &value, ctx.output))
    }

    /// GET of a collection.
    pub(super) async fn list(
        &self,
        r: &ResourceRequest,
        ctx: &Ctx,
    ) -> Result<Response<Body>, ApiError> {
        let filter = Filter::from_ctx(r.resource, ctx)?;
        let limit = ctx
            .query
            .number("limit")?
            .filter(|l| *l > 0)
            .map(|l| l as usize);
        let rv_param = ctx.query.get("resourceVersion").unwrap_or("");
        if rv_param != "0" {
            self.fresh_cache().await?;
        }
        let prefix = objects::prefix(r.resource, r.namespace.as_deref());
        let (start_key, token_rv) = match ctx.query.get("continue").filter(|c| !c.is_empty()) {
            Some(token) => {
                let (rv, start) = decode_continue(token)?;
                if !start.starts_with(&prefix) {
                    return Err(ApiError::bad_request(
                        "continue key does not belong to this collection",
                    ));
                }
                (Some(start), Some(rv))
            }
            None => (None, None),
        };
        // Pages are cut from the live cache: later pages see changes made since the first one
        // (Kubernetes serves them from the first page's snapshot). The revision reported stays
        // the first page's, so a watch from it misses nothing.
        let after = start_key.unwrap_or_else(|| prefix.clone());
        let mut items = Vec::new();
        let mut last_key = None;
        let mut more = false;
        let mut cursor = after;
        let revision = loop {
            let (page, has_more, revision) = self.cache.list_after(&prefix, &cursor, 512);
            for (key, obj) in &page {
                if filter.matches(obj) {
                    if limit.is_some_and(|l| items.len() >= l) {
                        more = true;
                        break;
                    }
                    items.push(obj.clone());
                    last_key = Some(key.clone());
                }
            }
            if more || !has_more {
                break revision;
            }
            match page.last() {
                Some((k, _)) => cursor = k.clone(),
                None => break revision,
            }
        };
        let revision = token_rv.unwrap_or(revision);
        let mut metadata = json!({ "resourceVersion": revision.to_string() });
        if more {
            if let Some(k) = &last_key {
                metadata["continue"] = json!(encode_continue(revision, k));
            }
        }
        if ctx.output == Output::Table {
            let values: Vec<Value> = items.iter().map(|o| o.value()).collect();
            let t = table::to_table(
                r.resource,
                &values,
                metadata,
                IncludeObject::from_query(ctx.query.get("includeObject"))
                    .map_err(|e| ApiError::bad_request(e.to_string()))?,
                true,
                std::time::SystemTime::now(),
            );
            return Ok(object_response(200, &t, Output::Json));
        }
        if ctx.output == Output::Json {
            return Ok(bytes_response(
                200,
                "application/json",
                list_json(r.resource, &metadata, &items),
            ));
        }
        let list = json!({
            "kind": r.resource.list_kind(),
            "apiVersion": r.resource.api_version(),
            "metadata": metadata,
            "items": items.iter().map(|o| o.value()).collect::<Vec<_>>(),
        });
        Ok(object_response(200, &list, ctx.output))
    }
}

/// A list response written by concatenating the cached objects' JSON: no object is parsed or
/// copied into an intermediate tree.
fn list_json(
    resource: &Resource,
    metadata: &Value,
    items: &[std::sync::Arc<CachedObject>],
) -> Vec<u8> {
    let head = json!({ "kind": resource.list_kind(), "apiVersion": resource.api_version(), "metadata": metadata });
    let mut out = serde_json::to_vec(&head).unwrap_or_else(|_| b"{}".to_vec());
    out.pop(); // the closing brace; items follow
    let size: usize = items.iter().map(|o| o.json.len() + 1).sum();
    out.reserve(size + 16);
    out.extend_from_slice(b",\"items\":[");
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(&item.json);
    }
    out.extend_from_slice(b"]}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continue_tokens_round_trip_and_refuse_garbage() {
        let t = encode_continue(42, "/registry/core/pods/default/a");
        assert_eq!(
            decode_continue(&t).ok(),
            Some((42, "/registry/core/pods/default/a".to_string()))
        );
        assert!(decode_continue("not base64!").is_err());
        assert!(decode_continue(&base64::engine::general_purpose::STANDARD.encode("{}")).is_err());
    }
}
