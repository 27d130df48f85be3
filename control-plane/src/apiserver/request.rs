//! Turns a request path and query into what the handlers act on: which resource, which object,
//! which verb, with which options. The grammar is Kubernetes':
//! `/api/v1[/namespaces/{ns}]/{resource}[/{name}[/{subresource}]]` and the same under
//! `/apis/{group}/{version}`.

use std::collections::HashMap;

use super::resources::{lookup, Resource};
use super::status::ApiError;

/// A request on a resource, parsed from its path.
#[derive(Debug, Clone)]
pub struct ResourceRequest {
    /// The resource addressed.
    pub resource: &'static Resource,
    /// The namespace from the path, if any.
    pub namespace: Option<String>,
    /// The object name from the path, if any.
    pub name: Option<String>,
    /// The subresource from the path, if any (e.g. "status", "scale", "log").
    pub subresource: Option<String>,
}

/// What a path addresses.
#[derive(Debug, Clone)]
pub enum Target {
    /// A resource collection or object.
    Resource(ResourceRequest),
    /// `/api`, `/apis`, `/api/v1`, `/apis/{group}`, `/apis/{group}/{version}`.
    Discovery(DiscoveryPath),
}

/// A discovery document path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiscoveryPath {
    /// `/api`
    Api,
    /// `/apis`
    Apis,
    /// `/api/v1` or `/apis/{group}/{version}`
    GroupVersion {
        /// Group ("" for core).
        group: String,
        /// Version.
        version: String,
    },
    /// `/apis/{group}`
    Group(String),
}

/// Parses an API path (without query). `None` means the path is not under /api or /apis.
pub fn parse_path(path: &str) -> Option<Result<Target, ApiError>> {
    let trimmed = path.trim_end_matches('/');
    let parts: Vec<&str> = trimmed.split('/').skip(1).collect();
    let (group, version, rest): (&str, &str, &[&str]) = match parts.as_slice() {
        ["api"] => return Some(Ok(Target::Discovery(DiscoveryPath::Api))),
        ["apis"] => return Some(Ok(Target::Discovery(DiscoveryPath::Apis))),
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group] => {
            return Some(Ok(Target::Discovery(DiscoveryPath::Group(
                (*group).to_string(),
            ))))
        }
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return None,
    };
    if rest.is_empty() {
        return Some(Ok(Target::Discovery(DiscoveryPath::GroupVersion {
            group: group.to_string(),
            version: version.to_string(),
        })));
    }
    Some(parse_resource_path(group, version, rest).map(Target::Resource))
}

fn parse_resource_path(
    group: &str,
    version: &str,
    rest: &[&str],
) -> Result<ResourceRequest, ApiError> {
    let not_found = || ApiError::path_not_found();
    // `namespaces/{ns}/{resource}...` is a namespaced request, unless it is the namespace object
    // itself (`namespaces/{name}[/status|finalize]`).
    let (namespace, rest) = match rest {
        ["namespaces", ns, resource, tail @ ..] if !is_namespace_subresource(resource) => {
            (Some((*ns).to_string()), {
                let mut v = vec![*resource];
                v.extend_from_slice(tail);
                v
            })
        }
        other => (None, other.to_vec()),
    };
    let (plural, name, subresource) = match rest.as_slice() {
        [plural] => (*plural, None, None),
        [plural, name] => (*plural, Some(*name), None),
        [plural, name, sub] => (*plural, Some(*name), Some(*sub)),
        _ => return Err(not_found()),
    };
    let resource = lookup(group, version, plural).ok_or_else(not_found)?;
    if namespace.is_some() && !resource.namespaced {
        return Err(not_found());
    }
    if let Some(sub) = subresource {
        if resource.subresource(sub).is_none() {
            return Err(not_found());
        }
    }
    if name.is_some_and(str::is_empty) {
        return Err(not_found());
    }
    Ok(ResourceRequest {
        resource,
        namespace,
        name: name.map(str::to_string),
        subresource: subresource.map(str::to_string),
    })
}

fn is_namespace_subresource(segment: &str) -> bool {
    matches!(segment, "status" | "finalize")
}

/// Decoded query parameters (the last value wins for repeated keys, except `command`).
#[derive(Debug, Default, Clone)]
pub struct Query {
    params: HashMap<String, Vec<String>>,
}

impl Query {
    /// Parses a raw query string (`a=1&b=x%20y`).
    pub fn parse(raw: Option<&str>) -> Query {
        let mut params: HashMap<String, Vec<String>> = HashMap::new();
        for pair in raw.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            params
                .entry(percent_decode(k))
                .or_default()
                .push(percent_decode(v));
        }
        Query { params }
    }

    /// The last value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.params
            .get(key)
            .and_then(|v| v.last())
            .map(String::as_str)
    }

    /// Every value of `key`, in order.
    pub fn all(&self, key: &str) -> &[String] {
        self.params.get(key).map(Vec::as_slice).unwrap_or_default()
    }

    /// `key` as a boolean flag (`true`, `1`).
    pub fn flag(&self, key: &str) -> bool {
        matches!(self.get(key), Some("true" | "1"))
    }

    /// `key` parsed as a number; a malformed value is a 400.
    pub fn number(&self, key: &str) -> Result<Option<i64>, ApiError> {
        match self.get(key) {
            None | Some("") => Ok(None),
            Some(v) => v.parse().map(Some).map_err(|_| {
                ApiError::bad_request(format!(
                    "invalid value {v:?} for query parameter {key}: not an integer"
                ))
            }),
        }
    }

    /// True when `dryRun=All` was asked for: nothing may be persisted.
    pub fn dry_run(&self) -> Result<bool, ApiError> {
        match self.all("dryRun") {
            [] => Ok(false),
            values if values.iter().all(|v| v == "All") => Ok(true),
            values => Err(ApiError::bad_request(format!(
                "unsupported dryRun value {:?}: the only supported value is \"All\"",
                values
                    .iter()
                    .find(|v| *v != "All")
                    .map(String::as_str)
                    .unwrap_or_default()
            ))),
        }
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let byte = bytes[i];
        let escaped = (byte == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match (byte, escaped) {
            (_, Some(decoded)) => {
                out.push(decoded);
                i += 3;
            }
            (b'+', None) => {
                out.push(b' ');
                i += 1;
            }
            (other, None) => {
                out.push(other);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(path: &str) -> ResourceRequest {
        match parse_path(path) {
            Some(Ok(Target::Resource(r))) => r,
            other => panic!("{path}: {other:?}"),
        }
    }

    #[test]
    fn parses_resource_paths() {
        let r = res("/api/v1/namespaces/default/pods/web-1/log");
        assert_eq!(r.resource.plural, "pods");
        assert_eq!(r.namespace.as_deref(), Some("default"));
        assert_eq!(r.name.as_deref(), Some("web-1"));
        assert_eq!(r.subresource.as_deref(), Some("log"));

        let r = res("/api/v1/namespaces/kube-system");
        assert_eq!(r.resource.plural, "namespaces");
        assert_eq!(r.name.as_deref(), Some("kube-system"));
        assert!(r.namespace.is_none());

        let r = res("/api/v1/namespaces/x/status");
        assert_eq!(r.subresource.as_deref(), Some("status"));

        let r = res("/apis/apps/v1/deployments");
        assert!(r.namespace.is_none() && r.name.is_none());
        let r = res("/apis/apps/v1/namespaces/a/deployments/d/scale");
        assert_eq!(r.subresource.as_deref(), Some("scale"));
    }

    #[test]
    fn refuses_unknown_paths() {
        assert!(matches!(
            parse_path("/api/v1/namespaces/a/nodes"),
            Some(Err(_))
        ));
        assert!(matches!(parse_path("/apis/apps/v1/widgets"), Some(Err(_))));
        assert!(matches!(parse_path("/api/v1/pods/a/b/c/d"), Some(Err(_))));
        assert!(matches!(
            parse_path("/apis/apps/v1/namespaces/a/deployments/d/exec"),
            Some(Err(_))
        ));
        assert!(parse_path("/version").is_none());
        assert!(matches!(
            parse_path("/apis"),
            Some(Ok(Target::Discovery(DiscoveryPath::Apis)))
        ));
    }

    #[test]
    fn decodes_queries() {
        let q = Query::parse(Some(
            "labelSelector=app%3Dweb%2Ctier+in+(a)&limit=5&dryRun=All&watch=1",
        ));
        assert_eq!(q.get("labelSelector"), Some("app=web,tier in (a)"));
        assert_eq!(q.number("limit").ok().flatten(), Some(5));
        assert!(q.flag("watch"));
        assert!(q.dry_run().unwrap_or(false));
        assert!(Query::parse(Some("limit=x")).number("limit").is_err());
        assert!(Query::parse(Some("dryRun=Some")).dry_run().is_err());
        assert_eq!(Query::parse(Some("a=%zz%4")).get("a"), Some("%zz%4"));
    }
}
