//! A small static type graph of the in-scope kinds: which fields lead to which types, and how each
//! list merges. Both patch engines walk it: strategic merge patch reads the `patchMergeKey`, and
//! server-side apply reads the list-map keys and which structs are owned as a whole.
//!
//! Only what differs from the default is written down (the merge keys of Appendix B of the
//! kubectl compatibility notes, primitive sets, atomic selectors, `retainKeys`). Everything else is
//! [`Node::Unknown`]: maps merge key by key, lists are atomic, scalars are replaced.

/// One key field of an associative list, with the value server-side apply assumes when an element
/// omits it (Kubernetes defaults a port's `protocol` to `TCP`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListKey {
    /// The field name inside each element.
    pub name: &'static str,
    /// The string value used when the element leaves the field out.
    pub default: Option<&'static str>,
}

/// How a list field merges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListStrategy {
    /// Elements are objects identified by key fields and merged element by element.
    Map {
        /// The `patchMergeKey` strategic merge patch matches elements by.
        merge_key: &'static str,
        /// The `x-kubernetes-list-map-keys` server-side apply identifies elements by.
        keys: &'static [ListKey],
    },
    /// Elements are scalars merged as a set (`finalizers`, `podCIDRs`).
    Set,
    /// The list is replaced as a whole.
    Atomic,
}

/// A position in the type graph.
#[derive(Debug, Clone, Copy)]
pub enum Node {
    /// An object whose listed fields have known types; other fields are [`Node::Unknown`].
    Struct(&'static StructDef),
    /// An object that strategic merge patch merges like any map but server-side apply owns as a
    /// whole (label selectors, `nodeSelector`, a Service's `selector`).
    AtomicMap,
    /// A list with a known strategy and element type.
    List(&'static ListDef),
    /// Nothing known: maps merge, lists are atomic.
    Unknown,
}

/// The known fields of an object type.
#[derive(Debug)]
pub struct StructDef {
    /// Field name and type, for the fields that need more than the default behaviour.
    pub fields: &'static [(&'static str, Node)],
    /// Whether the type carries `patchStrategy: retainKeys` (kubectl then sends `$retainKeys`).
    pub retain_keys: bool,
}

/// A list type.
#[derive(Debug)]
pub struct ListDef {
    /// How the list merges.
    pub strategy: ListStrategy,
    /// The type of each element.
    pub elem: Node,
}

impl Node {
    /// The type of field `name` of this object type ([`Node::Unknown`] when not known).
    pub fn field(self, name: &str) -> Node {
        match self {
            Node::Struct(def) => def
                .fields
                .iter()
                .find(|(field, _)| *field == name)
                .map_or(Node::Unknown, |(_, node)| *node),
            Node::AtomicMap | Node::List(_) | Node::Unknown => Node::Unknown,
        }
    }

    /// How this node merges when it holds a list (atomic unless the schema says otherwise).
    pub fn list_strategy(self) -> ListStrategy {
        match self {
            Node::List(def) => def.strategy,
            _ => ListStrategy::Atomic,
        }
    }

    /// The element type of a list node ([`Node::Unknown`] for anything else).
    pub fn elem(self) -> Node {
        match self {
            Node::List(def) => def.elem,
            _ => Node::Unknown,
        }
    }

    /// Whether server-side apply owns this object as one value instead of field by field.
    pub fn is_atomic_map(self) -> bool {
        matches!(self, Node::AtomicMap)
    }

    /// Whether the type is declared with `retainKeys`.
    pub fn retains_keys(self) -> bool {
        matches!(self, Node::Struct(def) if def.retain_keys)
    }
}

/// The root type of `kind`; unknown kinds get [`Node::Unknown`] (plain JSON merge semantics).
pub fn root(kind: &str) -> Node {
    match kind {
        "Pod" => Node::Struct(&POD),
        "Namespace" => Node::Struct(&NAMESPACE),
        "Node" => Node::Struct(&NODE),
        "Service" => Node::Struct(&SERVICE),
        "ServiceAccount" => Node::Struct(&SERVICE_ACCOUNT),
        "Deployment" => Node::Struct(&DEPLOYMENT),
        "ReplicaSet" | "DaemonSet" | "StatefulSet" | "Job" | "ReplicationController" => {
            Node::Struct(&WORKLOAD)
        }
        "Endpoints" | "ConfigMap" | "Secret" | "Event" | "Lease" | "RuntimeClass"
        | "EndpointSlice" => Node::Struct(&PLAIN),
        _ => Node::Unknown,
    }
}

/// The strategy of the list at `path` (field names from the object root, list positions left
/// out), e.g. `list_strategy("Deployment", &["spec", "template", "spec", "containers", "env"])`.
pub fn list_strategy(kind: &str, path: &[&str]) -> ListStrategy {
    path.iter()
        .fold(root(kind), |node, name| match node {
            Node::List(def) => def.elem.field(name),
            _ => node.field(name),
        })
        .list_strategy()
}

const fn key(name: &'static str) -> ListKey {
    ListKey {
        name,
        default: None,
    }
}

const fn keyed(merge_key: &'static str, keys: &'static [ListKey], elem: Node) -> ListDef {
    ListDef {
        strategy: ListStrategy::Map { merge_key, keys },
        elem,
    }
}

const fn fields(fields: &'static [(&'static str, Node)]) -> StructDef {
    StructDef {
        fields,
        retain_keys: false,
    }
}

const NAME: &[ListKey] = &[key("name")];
const TYPE: &[ListKey] = &[key("type")];
const IP: &[ListKey] = &[key("ip")];
const TCP: Option<&str> = Some("TCP");

static OBJECT_META: StructDef = fields(&[
    (
        "ownerReferences",
        Node::List(&keyed("uid", &[key("uid")], Node::Unknown)),
    ),
    (
        "finalizers",
        Node::List(&ListDef {
            strategy: ListStrategy::Set,
            elem: Node::Unknown,
        }),
    ),
]);

static CONDITIONS: ListDef = keyed("type", TYPE, Node::Unknown);

static CONTAINER: StructDef = fields(&[
    (
        "ports",
        Node::List(&keyed(
            "containerPort",
            &[
                key("containerPort"),
                ListKey {
                    name: "protocol",
                    default: TCP,
                },
            ],
            Node::Unknown,
        )),
    ),
    ("env", Node::List(&keyed("name", NAME, Node::Unknown))),
    (
        "volumeMounts",
        Node::List(&keyed("mountPath", &[key("mountPath")], Node::Unknown)),
    ),
    (
        "volumeDevices",
        Node::List(&keyed("devicePath", &[key("devicePath")], Node::Unknown)),
    ),
]);

static RETAIN_KEYS: StructDef = StructDef {
    fields: &[],
    retain_keys: true,
};

static POD_SPEC: StructDef = fields(&[
    (
        "containers",
        Node::List(&keyed("name", NAME, Node::Struct(&CONTAINER))),
    ),
    (
        "initContainers",
        Node::List(&keyed("name", NAME, Node::Struct(&CONTAINER))),
    ),
    (
        "ephemeralContainers",
        Node::List(&keyed("name", NAME, Node::Struct(&CONTAINER))),
    ),
    (
        "volumes",
        Node::List(&keyed("name", NAME, Node::Struct(&RETAIN_KEYS))),
    ),
    (
        "imagePullSecrets",
        Node::List(&keyed("name", NAME, Node::Unknown)),
    ),
    ("hostAliases", Node::List(&keyed("ip", IP, Node::Unknown))),
    (
        "topologySpreadConstraints",
        Node::List(&keyed(
            "topologyKey",
            &[key("topologyKey"), key("whenUnsatisfiable")],
            Node::Unknown,
        )),
    ),
    (
        "schedulingGates",
        Node::List(&keyed("name", NAME, Node::Unknown)),
    ),
    (
        "resourceClaims",
        Node::List(&keyed("name", NAME, Node::Struct(&RETAIN_KEYS))),
    ),
    ("nodeSelector", Node::AtomicMap),
]);

static POD_STATUS: StructDef = fields(&[
    ("conditions", Node::List(&CONDITIONS)),
    ("podIPs", Node::List(&keyed("ip", IP, Node::Unknown))),
    ("hostIPs", Node::List(&keyed("ip", IP, Node::Unknown))),
]);

static POD: StructDef = fields(&[
    ("metadata", Node::Struct(&OBJECT_META)),
    ("spec", Node::Struct(&POD_SPEC)),
    ("status", Node::Struct(&POD_STATUS)),
]);

static POD_TEMPLATE: StructDef = fields(&[
    ("metadata", Node::Struct(&OBJECT_META)),
    ("spec", Node::Struct(&POD_SPEC)),
]);

static CONDITIONS_STATUS: StructDef = fields(&[("conditions", Node::List(&CONDITIONS))]);

/// ReplicaSet, DaemonSet, StatefulSet, Job and ReplicationController share the parts that matter
/// here (a ReplicationController's plain string-map selector is atomic like a label selector).
static WORKLOAD: StructDef = fields(&[
    ("metadata", Node::Struct(&OBJECT_META)),
    (
        "spec",
        Node::Struct(&fields(&[
            ("selector", Node::AtomicMap),
            ("template", Node::Struct(&POD_TEMPLATE)),
        ])),
    ),
    ("status", Node::Struct(&CONDITIONS_STATUS)),
]);

static DEPLOYMENT: StructDef = fields(&[
    ("metadata", Node::Struct(&OBJECT_META)),
    (
        "spec",
        Node::Struct(&fields(&[
            ("selector", Node::AtomicMap),
            ("template", Node::Struct(&POD_TEMPLATE)),
            ("strategy", Node::Struct(&RETAIN_KEYS)),
        ])),
    ),
    ("status", Node::Struct(&CONDITIONS_STATUS)),
]);

static SERVICE: StructDef = fields(&[
    ("metadata", Node::Struct(&OBJECT_META)),
    (
        "spec",
        Node::Struct(&fields(&[
            (
                "ports",
                Node::List(&keyed(
                    "port",
                    &[
                        key("port"),
                        ListKey {
                            name: "protocol",
                            default: TCP,
                        },
                    ],
                    Node::Unknown,
                )),
            ),
            ("selector", Node::AtomicMap),
        ])),
    ),
    ("status", Node::Struct(&CONDITIONS_STATUS)),
]);

static NODE: StructDef = fields(&[
    ("metadata", Node::Struct(&OBJECT_META)),
    (
        "spec",
        Node::Struct(&fields(&[(
            "podCIDRs",
            Node::List(&ListDef {
                strategy: ListStrategy::Set,
                elem: Node::Unknown,
            }),
        )])),
    ),
    (
        "status",
        Node::Struct(&fields(&[
            ("conditions", Node::List(&CONDITIONS)),
            ("addresses", Node::List(&keyed("type", TYPE, Node::Unknown))),
        ])),
    ),
]);

static NAMESPACE: StructDef = fields(&[
    ("metadata", Node::Struct(&OBJECT_META)),
    ("status", Node::Struct(&CONDITIONS_STATUS)),
]);

static SERVICE_ACCOUNT: StructDef = fields(&[
    ("metadata", Node::Struct(&OBJECT_META)),
    ("secrets", Node::List(&keyed("name", NAME, Node::Unknown))),
]);

/// Kinds with nothing special beyond their metadata.
static PLAIN: StructDef = fields(&[("metadata", Node::Struct(&OBJECT_META))]);

#[cfg(test)]
mod tests {
    use super::*;

    const POD_TEMPLATE_KINDS: &[&str] = &[
        "Deployment",
        "ReplicaSet",
        "DaemonSet",
        "StatefulSet",
        "Job",
        "ReplicationController",
    ];

    fn merge_key(strategy: ListStrategy) -> Option<&'static str> {
        match strategy {
            ListStrategy::Map { merge_key, .. } => Some(merge_key),
            _ => None,
        }
    }

    #[test]
    fn pod_spec_is_reachable_from_every_template() {
        for kind in POD_TEMPLATE_KINDS {
            let containers = ["spec", "template", "spec", "containers"];
            assert_eq!(
                merge_key(list_strategy(kind, &containers)),
                Some("name"),
                "{kind}"
            );
            let env = ["spec", "template", "spec", "containers", "env"];
            assert_eq!(merge_key(list_strategy(kind, &env)), Some("name"), "{kind}");
            let finalizers = ["spec", "template", "metadata", "finalizers"];
            assert_eq!(
                list_strategy(kind, &finalizers),
                ListStrategy::Set,
                "{kind}"
            );
        }
        let ports = ["spec", "containers", "ports"];
        assert_eq!(
            merge_key(list_strategy("Pod", &ports)),
            Some("containerPort")
        );
        let mounts = ["spec", "initContainers", "volumeMounts"];
        assert_eq!(merge_key(list_strategy("Pod", &mounts)), Some("mountPath"));
    }

    #[test]
    fn appendix_b_keys_and_defaults() {
        assert_eq!(
            merge_key(list_strategy("Service", &["spec", "ports"])),
            Some("port")
        );
        assert_eq!(
            merge_key(list_strategy("Node", &["status", "conditions"])),
            Some("type")
        );
        let owners = ["metadata", "ownerReferences"];
        assert_eq!(merge_key(list_strategy("ConfigMap", &owners)), Some("uid"));
        assert_eq!(
            list_strategy("Node", &["spec", "podCIDRs"]),
            ListStrategy::Set
        );
        let ListStrategy::Map { keys, .. } = list_strategy("Pod", &["spec", "containers", "ports"])
        else {
            panic!("container ports must be keyed");
        };
        assert_eq!(keys.get(1).and_then(|k| k.default), Some("TCP"));
    }

    #[test]
    fn everything_else_is_atomic() {
        let atomic = [
            ("Pod", &["spec", "tolerations"][..]),
            ("Pod", &["spec", "containers", "args"][..]),
            ("Endpoints", &["subsets"][..]),
            ("EndpointSlice", &["endpoints"][..]),
            ("Pod", &["spec", "nosuchfield", "containers"][..]),
            ("Widget", &["spec", "containers"][..]),
        ];
        for (kind, path) in atomic {
            assert_eq!(
                list_strategy(kind, path),
                ListStrategy::Atomic,
                "{kind} {path:?}"
            );
        }
    }

    #[test]
    fn selectors_are_atomic_maps_and_strategy_retains_keys() {
        let spec = root("Deployment").field("spec");
        assert!(spec.field("selector").is_atomic_map());
        assert!(spec.field("strategy").retains_keys());
        assert!(root("Service")
            .field("spec")
            .field("selector")
            .is_atomic_map());
        let volumes = root("Pod").field("spec").field("volumes");
        assert!(volumes.elem().retains_keys());
        assert!(!root("Pod")
            .field("metadata")
            .field("labels")
            .is_atomic_map());
    }
}
