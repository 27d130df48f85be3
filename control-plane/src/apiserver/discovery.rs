//! Discovery documents: /version, the legacy /api, /apis and per group-version resource lists,
//! and aggregated discovery (apidiscovery.k8s.io v2, and v2beta1 for clients that ask only for
//! it: answering v2 to kubectl 1.27 breaks it).

use serde_json::{json, Value};

use super::resources::{group_versions, Resource, RESOURCES};

/// Kubernetes version Bramble speaks. kubectl's dispatcher picks its binary by `minor`.
pub fn version() -> Value {
    json!({
        "major": "1",
        "minor": "32",
        "gitVersion": format!("v1.32.0-bramble.{}", env!("CARGO_PKG_VERSION")),
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "",
        "goVersion": "",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, go_arch()),
    })
}

/// The machine architecture under Go's names, as Kubernetes reports it.
pub fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "riscv64" => "riscv64",
        "arm" => "arm",
        other => other,
    }
}

/// Which aggregated discovery version the client asked for, from its Accept header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggregated {
    /// apidiscovery.k8s.io/v2
    V2,
    /// apidiscovery.k8s.io/v2beta1
    V2Beta1,
}

impl Aggregated {
    /// Reads the Accept header: the first aggregated media type listed wins.
    pub fn negotiate(accept: &str) -> Option<Aggregated> {
        for media in accept.split(',') {
            let params: Vec<&str> = media.split(';').map(str::trim).collect();
            let has = |p: &str| params.contains(&p);
            if has("g=apidiscovery.k8s.io") && has("as=APIGroupDiscoveryList") {
                if has("v=v2") {
                    return Some(Aggregated::V2);
                }
                if has("v=v2beta1") {
                    return Some(Aggregated::V2Beta1);
                }
            }
        }
        None
    }

    /// The response Content-Type the client recognises.
    pub fn content_type(self) -> &'static str {
        match self {
            Aggregated::V2 => {
                "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
            }
            Aggregated::V2Beta1 => {
                "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"
            }
        }
    }

    fn api_version(self) -> &'static str {
        match self {
            Aggregated::V2 => "apidiscovery.k8s.io/v2",
            Aggregated::V2Beta1 => "apidiscovery.k8s.io/v2beta1",
        }
    }
}

/// The aggregated document for `/api` (core = true) or `/apis`.
pub fn aggregated(version: Aggregated, core: bool) -> Value {
    let items: Vec<Value> = group_versions()
        .into_iter()
        .filter(|(g, _)| g.is_empty() == core)
        .map(|(group, version)| {
            let resources: Vec<Value> = RESOURCES
                .iter()
                .filter(|r| r.group == group && r.version == version)
                .map(aggregated_resource)
                .collect();
            json!({
                "metadata": { "name": group, "creationTimestamp": null },
                "versions": [{ "version": version, "resources": resources, "freshness": "Current" }],
            })
        })
        .collect();
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": version.api_version(),
        "metadata": {},
        "items": items,
    })
}

fn aggregated_resource(r: &Resource) -> Value {
    let subresources: Vec<Value> = r
        .subresources
        .iter()
        .map(|s| {
            let (group, version, kind) = if s.kind.is_empty() {
                (r.group, r.version, r.kind)
            } else {
                (s.group, s.version, s.kind)
            };
            json!({
                "subresource": s.name,
                "responseKind": { "group": group, "version": version, "kind": kind },
                "verbs": s.verbs,
            })
        })
        .collect();
    let mut out = json!({
        "resource": r.plural,
        "responseKind": { "group": r.group, "version": r.version, "kind": r.kind },
        "scope": if r.namespaced { "Namespaced" } else { "Cluster" },
        "singularResource": r.singular,
        "verbs": r.verbs,
    });
    if !r.short_names.is_empty() {
        out["shortNames"] = json!(r.short_names);
    }
    if !r.categories.is_empty() {
        out["categories"] = json!(r.categories);
    }
    if !subresources.is_empty() {
        out["subresources"] = Value::Array(subresources);
    }
    out
}

/// Legacy `/api`.
pub fn api_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{ "clientCIDR": "0.0.0.0/0", "serverAddress": server_address }],
    })
}

/// Legacy `/apis`.
pub fn api_group_list() -> Value {
    let groups: Vec<Value> = group_versions()
        .into_iter()
        .filter(|(g, _)| !g.is_empty())
        .map(|(g, v)| api_group(g, v))
        .collect();
    json!({ "kind": "APIGroupList", "apiVersion": "v1", "groups": groups })
}

/// Legacy `/apis/{group}`, if the group is served.
pub fn api_group_document(group: &str) -> Option<Value> {
    let (g, v) = group_versions()
        .into_iter()
        .find(|(g, _)| *g == group && !g.is_empty())?;
    let mut doc = api_group(g, v);
    doc["kind"] = json!("APIGroup");
    doc["apiVersion"] = json!("v1");
    Some(doc)
}

fn api_group(group: &str, version: &str) -> Value {
    let gv = json!({ "groupVersion": format!("{group}/{version}"), "version": version });
    json!({ "name": group, "versions": [gv.clone()], "preferredVersion": gv })
}

/// Legacy `/api/v1` or `/apis/{group}/{version}`, if served.
pub fn api_resource_list(group: &str, version: &str) -> Option<Value> {
    let mut resources = Vec::new();
    for r in RESOURCES
        .iter()
        .filter(|r| r.group == group && r.version == version)
    {
        let mut entry = json!({
            "name": r.plural,
            "singularName": r.singular,
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": r.verbs,
        });
        if !r.short_names.is_empty() {
            entry["shortNames"] = json!(r.short_names);
        }
        if !r.categories.is_empty() {
            entry["categories"] = json!(r.categories);
        }
        resources.push(entry);
        for s in r.subresources {
            let mut sub = json!({
                "name": format!("{}/{}", r.plural, s.name),
                "singularName": "",
                "namespaced": r.namespaced,
                "kind": if s.kind.is_empty() { r.kind } else { s.kind },
                "verbs": s.verbs,
            });
            if !s.kind.is_empty() && (s.group != r.group || s.version != r.version) {
                sub["group"] = json!(s.group);
                sub["version"] = json!(s.version);
            }
            resources.push(sub);
        }
    }
    if resources.is_empty() {
        return None;
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(
        json!({ "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiates_the_version_the_client_lists_first() {
        let kubectl_132 = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
        assert_eq!(Aggregated::negotiate(kubectl_132), Some(Aggregated::V2));
        let kubectl_127 = "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
        assert_eq!(
            Aggregated::negotiate(kubectl_127),
            Some(Aggregated::V2Beta1)
        );
        assert_eq!(Aggregated::negotiate("application/json, */*"), None);
    }

    #[test]
    fn every_resource_and_subresource_has_a_response_kind() {
        for core in [true, false] {
            let doc = aggregated(Aggregated::V2, core);
            for item in doc["items"].as_array().into_iter().flatten() {
                for r in item["versions"][0]["resources"]
                    .as_array()
                    .into_iter()
                    .flatten()
                {
                    assert!(
                        r["responseKind"]["kind"]
                            .as_str()
                            .is_some_and(|k| !k.is_empty()),
                        "{r}"
                    );
                    for s in r["subresources"].as_array().into_iter().flatten() {
                        assert!(
                            s["responseKind"]["kind"]
                                .as_str()
                                .is_some_and(|k| !k.is_empty()),
                            "{s}"
                        );
                    }
                }
            }
        }
        let v1 = api_resource_list("", "v1").unwrap_or_default();
        let eviction = v1["resources"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|r| r["name"] == "pods/eviction");
        assert_eq!(eviction.map(|e| e["group"].clone()), Some(json!("policy")));
    }
}
