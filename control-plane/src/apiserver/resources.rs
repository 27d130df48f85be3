//! The resources Bramble serves, with Kubernetes' own groups, versions, kinds, plurals, short
//! names and scopes. Everything that needs to know "which kinds exist" (routing, discovery,
//! OpenAPI, tables, storage keys) reads this one table.
//!
//! This file depends on nothing else in the crate so that it can be shared by any module.

/// One servable resource (a kind under a group-version).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resource {
    /// API group; "" is the core (legacy) group served under /api/v1.
    pub group: &'static str,
    /// API version within the group.
    pub version: &'static str,
    /// The kind, e.g. "Deployment".
    pub kind: &'static str,
    /// The plural resource name used in paths, e.g. "deployments".
    pub plural: &'static str,
    /// The singular name, e.g. "deployment".
    pub singular: &'static str,
    /// Short names kubectl accepts, e.g. ["deploy"].
    pub short_names: &'static [&'static str],
    /// Whether objects live in a namespace.
    pub namespaced: bool,
    /// Verbs advertised in discovery.
    pub verbs: &'static [&'static str],
    /// Subresources served under `{name}/{sub}`.
    pub subresources: &'static [Subresource],
    /// Whether the resource is only created (reviews): never stored, never listed.
    pub create_only: bool,
    /// Discovery categories (kubectl's `get all` uses "all").
    pub categories: &'static [&'static str],
}

/// A subresource of a resource, e.g. `deployments/scale`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subresource {
    /// Name in the path, e.g. "scale".
    pub name: &'static str,
    /// Kind of the object exchanged, e.g. "Scale".
    pub kind: &'static str,
    /// Group of that kind ("" = core); e.g. "autoscaling" for Scale.
    pub group: &'static str,
    /// Version of that kind.
    pub version: &'static str,
    /// Verbs accepted on it.
    pub verbs: &'static [&'static str],
}

impl Subresource {
    /// Whether requests and responses carry an object of `kind`: pods/log streams plain
    /// text; exec, attach and portforward take query parameters and upgrade the connection.
    pub fn exchanges_objects(&self) -> bool {
        !matches!(self.name, "log" | "exec" | "attach" | "portforward")
    }
}

impl Resource {
    /// "apps/v1" or "v1" for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The kind of a list of these objects, e.g. "DeploymentList".
    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    /// Whether `name` names this resource: plural, singular, kind (any case) or a short name.
    pub fn answers_to(&self, name: &str) -> bool {
        let lower = name.to_ascii_lowercase();
        lower == self.plural
            || lower == self.singular
            || lower == self.kind.to_ascii_lowercase()
            || self.short_names.contains(&lower.as_str())
    }

    /// The subresource called `name`, if any.
    pub fn subresource(&self, name: &str) -> Option<&'static Subresource> {
        self.subresources.iter().find(|s| s.name == name)
    }
}

const RW: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];
const CREATE: &[&str] = &["create"];
const GET_PATCH_UPDATE: &[&str] = &["get", "patch", "update"];

const STATUS: Subresource = Subresource {
    name: "status",
    kind: "",
    group: "",
    version: "",
    verbs: GET_PATCH_UPDATE,
};
const SCALE: Subresource = Subresource {
    name: "scale",
    kind: "Scale",
    group: "autoscaling",
    version: "v1",
    verbs: GET_PATCH_UPDATE,
};

#[allow(clippy::too_many_arguments)] // a table row, read positionally like the table
const fn res(
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
    singular: &'static str,
    short_names: &'static [&'static str],
    namespaced: bool,
    subresources: &'static [Subresource],
    categories: &'static [&'static str],
) -> Resource {
    Resource {
        group,
        version,
        kind,
        plural,
        singular,
        short_names,
        namespaced,
        verbs: RW,
        subresources,
        create_only: false,
        categories,
    }
}

const ALL: &[&str] = &["all"];
const NONE: &[&str] = &[];

/// Every resource Bramble serves, in discovery order.
pub static RESOURCES: &[Resource] = &[
    res(
        "",
        "v1",
        "Namespace",
        "namespaces",
        "namespace",
        &["ns"],
        false,
        &[STATUS],
        NONE,
    ),
    res(
        "",
        "v1",
        "Pod",
        "pods",
        "pod",
        &["po"],
        true,
        &[
            STATUS,
            Subresource {
                name: "log",
                kind: "Pod",
                group: "",
                version: "v1",
                verbs: &["get"],
            },
            Subresource {
                name: "exec",
                kind: "PodExecOptions",
                group: "",
                version: "v1",
                verbs: &["create", "get"],
            },
            Subresource {
                name: "attach",
                kind: "PodAttachOptions",
                group: "",
                version: "v1",
                verbs: &["create", "get"],
            },
            Subresource {
                name: "portforward",
                kind: "PodPortForwardOptions",
                group: "",
                version: "v1",
                verbs: &["create", "get"],
            },
            Subresource {
                name: "eviction",
                kind: "Eviction",
                group: "policy",
                version: "v1",
                verbs: CREATE,
            },
            Subresource {
                name: "binding",
                kind: "Binding",
                group: "",
                version: "v1",
                verbs: CREATE,
            },
        ],
        ALL,
    ),
    res(
        "",
        "v1",
        "Node",
        "nodes",
        "node",
        &["no"],
        false,
        &[STATUS],
        NONE,
    ),
    res(
        "",
        "v1",
        "Service",
        "services",
        "service",
        &["svc"],
        true,
        &[STATUS],
        ALL,
    ),
    res(
        "",
        "v1",
        "Endpoints",
        "endpoints",
        "endpoints",
        &["ep"],
        true,
        &[],
        NONE,
    ),
    res(
        "",
        "v1",
        "ConfigMap",
        "configmaps",
        "configmap",
        &["cm"],
        true,
        &[],
        NONE,
    ),
    res(
        "",
        "v1",
        "Secret",
        "secrets",
        "secret",
        &[],
        true,
        &[],
        NONE,
    ),
    res(
        "",
        "v1",
        "Event",
        "events",
        "event",
        &["ev"],
        true,
        &[],
        NONE,
    ),
    res(
        "",
        "v1",
        "ServiceAccount",
        "serviceaccounts",
        "serviceaccount",
        &["sa"],
        true,
        &[],
        NONE,
    ),
    res(
        "",
        "v1",
        "ReplicationController",
        "replicationcontrollers",
        "replicationcontroller",
        &["rc"],
        true,
        &[STATUS, SCALE],
        ALL,
    ),
    res(
        "apps",
        "v1",
        "Deployment",
        "deployments",
        "deployment",
        &["deploy"],
        true,
        &[STATUS, SCALE],
        ALL,
    ),
    res(
        "apps",
        "v1",
        "ReplicaSet",
        "replicasets",
        "replicaset",
        &["rs"],
        true,
        &[STATUS, SCALE],
        ALL,
    ),
    res(
        "apps",
        "v1",
        "DaemonSet",
        "daemonsets",
        "daemonset",
        &["ds"],
        true,
        &[STATUS],
        ALL,
    ),
    res(
        "apps",
        "v1",
        "StatefulSet",
        "statefulsets",
        "statefulset",
        &["sts"],
        true,
        &[STATUS, SCALE],
        ALL,
    ),
    res(
        "apps",
        "v1",
        "ControllerRevision",
        "controllerrevisions",
        "controllerrevision",
        &[],
        true,
        &[],
        NONE,
    ),
    res(
        "batch",
        "v1",
        "Job",
        "jobs",
        "job",
        &[],
        true,
        &[STATUS],
        ALL,
    ),
    res(
        "coordination.k8s.io",
        "v1",
        "Lease",
        "leases",
        "lease",
        &[],
        true,
        &[],
        NONE,
    ),
    res(
        "node.k8s.io",
        "v1",
        "RuntimeClass",
        "runtimeclasses",
        "runtimeclass",
        &[],
        false,
        &[],
        NONE,
    ),
    res(
        "discovery.k8s.io",
        "v1",
        "EndpointSlice",
        "endpointslices",
        "endpointslice",
        &[],
        true,
        &[],
        NONE,
    ),
    Resource {
        group: "authorization.k8s.io",
        version: "v1",
        kind: "SelfSubjectAccessReview",
        plural: "selfsubjectaccessreviews",
        singular: "selfsubjectaccessreview",
        short_names: &[],
        namespaced: false,
        verbs: CREATE,
        subresources: &[],
        create_only: true,
        categories: NONE,
    },
    Resource {
        group: "authorization.k8s.io",
        version: "v1",
        kind: "SelfSubjectRulesReview",
        plural: "selfsubjectrulesreviews",
        singular: "selfsubjectrulesreview",
        short_names: &[],
        namespaced: false,
        verbs: CREATE,
        subresources: &[],
        create_only: true,
        categories: NONE,
    },
];

/// The resource served at `group/version/plural`.
pub fn lookup(group: &str, version: &str, plural: &str) -> Option<&'static Resource> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// The resource whose kind is `kind` in `api_version` ("v1", "apps/v1", ...).
pub fn by_kind(api_version: &str, kind: &str) -> Option<&'static Resource> {
    RESOURCES
        .iter()
        .find(|r| r.kind == kind && r.api_version() == api_version)
}

/// Group-versions served, in discovery order, each once: ("", "v1") first.
pub fn group_versions() -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&'static str, &'static str)> = Vec::new();
    for r in RESOURCES {
        if !out.contains(&(r.group, r.version)) {
            out.push((r.group, r.version));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_plural_is_unique_within_its_group() {
        for (i, a) in RESOURCES.iter().enumerate() {
            for b in &RESOURCES[i + 1..] {
                assert!(
                    !(a.group == b.group && a.plural == b.plural),
                    "{} twice",
                    a.plural
                );
            }
        }
    }

    #[test]
    fn short_names_resolve() {
        let deploy = RESOURCES.iter().find(|r| r.answers_to("deploy"));
        assert_eq!(deploy.map(|r| r.kind), Some("Deployment"));
        assert_eq!(
            lookup("apps", "v1", "replicasets").map(|r| r.kind),
            Some("ReplicaSet")
        );
        assert_eq!(by_kind("v1", "Pod").map(|r| r.plural), Some("pods"));
        assert_eq!(group_versions()[0], ("", "v1"));
    }
}
