//! A container's environment as the kubelet builds it: `envFrom` first, then `env` (later
//! definitions win), `$(VAR)` references expanded against what was defined before.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, EnvVarSource, Secret};

use super::spec::{FieldProblem, PodEnv};

/// A field name and what is wrong with it.
type Failure = (String, FieldProblem);

/// The environment of `container`, in definition order, each name once.
pub(crate) fn container_env(
    env: &PodEnv,
    container: &Container,
) -> Result<Vec<(String, String)>, Failure> {
    let mut variables = Variables::default();
    for (index, source) in container.env_from.iter().flatten().enumerate() {
        let field = || format!("envFrom[{index}]");
        let prefix = source.prefix.as_deref().unwrap_or_default();
        if let Some(reference) = &source.config_map_ref {
            let name = &reference.name;
            match env.configmaps.get(name) {
                Some(map) => {
                    for (key, value) in map.data.iter().flatten() {
                        variables.set(format!("{prefix}{key}"), value.clone());
                    }
                }
                None if reference.optional.unwrap_or(false) => {}
                None => {
                    let problem = FieldProblem::ConfigMapNotFound { name: name.clone() };
                    return Err((field(), problem));
                }
            }
        }
        if let Some(reference) = &source.secret_ref {
            let name = &reference.name;
            match env.secrets.get(name) {
                Some(secret) => {
                    for (key, value) in secret_entries(secret) {
                        let value = String::from_utf8(value.to_vec()).map_err(|_| {
                            let (name, key) = (name.clone(), key.clone());
                            (field(), FieldProblem::SecretNotUtf8 { name, key })
                        })?;
                        variables.set(format!("{prefix}{key}"), value);
                    }
                }
                None if reference.optional.unwrap_or(false) => {}
                None => {
                    let problem = FieldProblem::SecretNotFound { name: name.clone() };
                    return Err((field(), problem));
                }
            }
        }
    }
    for var in container.env.iter().flatten() {
        let field = || format!("env {}", var.name);
        let value = match (&var.value_from, &var.value) {
            (Some(source), _) => match value_from(env, source).map_err(|p| (field(), p))? {
                Some(value) => value,
                // An optional reference to something missing leaves the variable unset.
                None => continue,
            },
            (None, Some(value)) => expand(value, &variables.lookup()),
            (None, None) => String::new(),
        };
        variables.set(var.name.clone(), value);
    }
    // Keys that no process could receive (an empty name or one with '=') are skipped, as the
    // kubelet skips invalid envFrom keys instead of failing the container.
    Ok(variables
        .list
        .into_iter()
        .filter(|(name, _)| !name.is_empty() && !name.contains('='))
        .collect())
}

/// Variables in definition order; redefining one keeps its position and replaces its value.
#[derive(Default)]
struct Variables {
    list: Vec<(String, String)>,
}

impl Variables {
    fn set(&mut self, name: String, value: String) {
        match self.list.iter_mut().find(|(existing, _)| *existing == name) {
            Some(entry) => entry.1 = value,
            None => self.list.push((name, value)),
        }
    }

    fn lookup(&self) -> BTreeMap<&str, &str> {
        self.list
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .collect()
    }
}

/// A Secret's entries; `stringData` (write-only on a real API server, but present in objects
/// built by hand) wins over `data` as the API server merges it.
fn secret_entries(secret: &Secret) -> BTreeMap<&String, &[u8]> {
    let mut entries: BTreeMap<&String, &[u8]> = secret
        .data
        .iter()
        .flatten()
        .map(|(key, value)| (key, value.0.as_slice()))
        .collect();
    for (key, value) in secret.string_data.iter().flatten() {
        entries.insert(key, value.as_bytes());
    }
    entries
}

/// The value of one `valueFrom`; `None` when an optional reference finds nothing.
fn value_from(env: &PodEnv, source: &EnvVarSource) -> Result<Option<String>, FieldProblem> {
    if let Some(selector) = &source.config_map_key_ref {
        let optional = selector.optional.unwrap_or(false);
        let name = &selector.name;
        let Some(map) = env.configmaps.get(name) else {
            return optional
                .then_some(None)
                .ok_or_else(|| FieldProblem::ConfigMapNotFound { name: name.clone() });
        };
        let value = map.data.as_ref().and_then(|data| data.get(&selector.key));
        return match value {
            Some(value) => Ok(Some(value.clone())),
            None if optional => Ok(None),
            None => Err(FieldProblem::ConfigMapKeyNotFound {
                name: name.clone(),
                key: selector.key.clone(),
            }),
        };
    }
    if let Some(selector) = &source.secret_key_ref {
        let optional = selector.optional.unwrap_or(false);
        let name = &selector.name;
        let Some(secret) = env.secrets.get(name) else {
            return optional
                .then_some(None)
                .ok_or_else(|| FieldProblem::SecretNotFound { name: name.clone() });
        };
        return match secret_entries(secret).get(&selector.key) {
            Some(bytes) => String::from_utf8(bytes.to_vec()).map(Some).map_err(|_| {
                FieldProblem::SecretNotUtf8 {
                    name: name.clone(),
                    key: selector.key.clone(),
                }
            }),
            None if optional => Ok(None),
            None => Err(FieldProblem::SecretKeyNotFound {
                name: name.clone(),
                key: selector.key.clone(),
            }),
        };
    }
    if let Some(selector) = &source.field_ref {
        return field_value(env, &selector.field_path).map(Some);
    }
    if source.resource_field_ref.is_some() {
        return Err(FieldProblem::UnsupportedSource {
            source_kind: "resourceFieldRef",
        });
    }
    Err(FieldProblem::EmptySource)
}

/// The downward API fields Kubernetes offers to environment variables.
fn field_value(env: &PodEnv, path: &str) -> Result<String, FieldProblem> {
    let meta = &env.pod.metadata;
    let spec = env.pod.spec.as_ref();
    let text = |value: Option<&String>| value.cloned().unwrap_or_default();
    let subscript = |prefix: &str| {
        path.strip_prefix(prefix)
            .and_then(|rest| rest.strip_prefix("['"))
            .and_then(|rest| rest.strip_suffix("']"))
    };
    if let Some(key) = subscript("metadata.labels") {
        return Ok(text(meta.labels.as_ref().and_then(|map| map.get(key))));
    }
    if let Some(key) = subscript("metadata.annotations") {
        return Ok(text(meta.annotations.as_ref().and_then(|map| map.get(key))));
    }
    Ok(match path {
        "metadata.name" => text(meta.name.as_ref()),
        "metadata.namespace" => text(meta.namespace.as_ref()),
        "metadata.uid" => text(meta.uid.as_ref()),
        "spec.nodeName" => env.node_name.to_owned(),
        "spec.serviceAccountName" => text(spec.and_then(|s| s.service_account_name.as_ref())),
        // One address per pod here, so the list form has one element.
        "status.podIP" | "status.podIPs" => env.pod_ip.to_owned(),
        _ => {
            return Err(FieldProblem::UnsupportedFieldPath {
                path: path.to_owned(),
            })
        }
    })
}

/// Kubernetes' `$(VAR)` expansion: defined references are replaced, undefined ones kept
/// literally, `$$` is an escaped `$`, and any other `$` is kept as written.
pub(crate) fn expand(input: &str, lookup: &BTreeMap<&str, &str>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('(') {
            match inner.find(')') {
                Some(close) => {
                    let name = &inner[..close];
                    match lookup.get(name) {
                        Some(value) => out.push_str(value),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &inner[close + 1..];
                }
                None => {
                    out.push_str("$(");
                    rest = inner;
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup() -> BTreeMap<&'static str, &'static str> {
        BTreeMap::from([("A", "x"), ("B", "y y")])
    }

    #[test]
    fn references_expand_and_unknown_ones_stay() {
        assert_eq!(expand("$(A)-$(B)", &lookup()), "x-y y");
        assert_eq!(expand("$(C) $(A)", &lookup()), "$(C) x");
        assert_eq!(expand("plain", &lookup()), "plain");
    }

    #[test]
    fn escapes_and_stray_dollars_follow_kubernetes() {
        assert_eq!(expand("$$(A)", &lookup()), "$(A)");
        assert_eq!(expand("$$$(A)", &lookup()), "$x");
        assert_eq!(expand("cost $5 $", &lookup()), "cost $5 $");
        assert_eq!(expand("$(A", &lookup()), "$(A");
        assert_eq!(expand("$()", &lookup()), "$()");
        assert_eq!(expand("é$(A)é", &lookup()), "éxé");
    }
}
