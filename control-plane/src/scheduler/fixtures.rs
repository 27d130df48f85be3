//! Builders for the scheduler's unit tests: Ready nodes with allocatable resources, pods with
//! requests, and the small edits tests make to them.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, Container, Node, NodeCondition, NodeSpec, NodeStatus, Pod, PodAffinityTerm,
    PodAntiAffinity, PodSpec, ResourceRequirements, Taint, Toleration,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};

use super::{RuntimeNeeds, Snapshot};

/// A quantity.
pub fn q(s: &str) -> Quantity {
    Quantity(s.to_owned())
}

/// A resource list from (name, quantity) pairs.
pub fn list(items: &[(&str, &str)]) -> BTreeMap<String, Quantity> {
    items.iter().map(|(k, v)| ((*k).to_owned(), q(v))).collect()
}

/// A Ready node with allocatable cpu, memory and pod capacity, labelled with its hostname.
pub fn node(name: &str, cpu: &str, memory: &str, pods: &str) -> Node {
    Node {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            labels: Some(BTreeMap::from([(
                "kubernetes.io/hostname".to_owned(),
                name.to_owned(),
            )])),
            ..Default::default()
        },
        spec: Some(NodeSpec::default()),
        status: Some(NodeStatus {
            allocatable: Some(list(&[
                ("cpu", cpu),
                ("memory", memory),
                ("pods", pods),
                ("ephemeral-storage", "100Gi"),
            ])),
            conditions: Some(vec![NodeCondition {
                type_: "Ready".to_owned(),
                status: "True".to_owned(),
                ..Default::default()
            }]),
            ..Default::default()
        }),
    }
}

/// A roomy node: 4 cpu, 8Gi, 110 pods.
pub fn roomy(name: &str) -> Node {
    node(name, "4", "8Gi", "110")
}

/// `node` with an extra label.
pub fn label(mut node: Node, key: &str, value: &str) -> Node {
    node.metadata
        .labels
        .get_or_insert_with(BTreeMap::new)
        .insert(key.to_owned(), value.to_owned());
    node
}

/// `node` with an extra taint.
pub fn taint(mut node: Node, key: &str, value: &str, effect: &str) -> Node {
    let spec = node.spec.get_or_insert_with(NodeSpec::default);
    spec.taints.get_or_insert_with(Vec::new).push(Taint {
        key: key.to_owned(),
        value: (!value.is_empty()).then(|| value.to_owned()),
        effect: effect.to_owned(),
        time_added: None,
    });
    node
}

/// `node` cordoned.
pub fn cordoned(mut node: Node) -> Node {
    node.spec
        .get_or_insert_with(NodeSpec::default)
        .unschedulable = Some(true);
    node
}

/// `node` with its Ready condition set to `status`.
pub fn readiness(mut node: Node, status: &str) -> Node {
    if let Some(c) = node.status.as_mut().and_then(|s| s.conditions.as_mut()) {
        c[0].status = status.to_owned();
    }
    node
}

/// A pending pod `default/<name>` (uid = name) with one container requesting cpu and memory
/// ("" requests nothing of that resource).
pub fn pod(name: &str, cpu: &str, memory: &str) -> Pod {
    let mut requests = BTreeMap::new();
    if !cpu.is_empty() {
        requests.insert("cpu".to_owned(), q(cpu));
    }
    if !memory.is_empty() {
        requests.insert("memory".to_owned(), q(memory));
    }
    Pod {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some("default".to_owned()),
            uid: Some(name.to_owned()),
            ..Default::default()
        },
        spec: Some(PodSpec {
            containers: vec![container("app", requests)],
            ..Default::default()
        }),
        status: None,
    }
}

/// A container with requests.
pub fn container(name: &str, requests: BTreeMap<String, Quantity>) -> Container {
    Container {
        name: name.to_owned(),
        resources: Some(ResourceRequirements {
            requests: Some(requests),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// `pod` bound to `node`.
pub fn bound(mut pod: Pod, node: &str) -> Pod {
    pod.spec.get_or_insert_with(PodSpec::default).node_name = Some(node.to_owned());
    pod
}

/// `pod` with a label.
pub fn pod_label(mut pod: Pod, key: &str, value: &str) -> Pod {
    pod.metadata
        .labels
        .get_or_insert_with(BTreeMap::new)
        .insert(key.to_owned(), value.to_owned());
    pod
}

/// `pod` controlled by the ReplicaSet with `uid`.
pub fn owned_by(mut pod: Pod, uid: &str) -> Pod {
    pod.metadata.owner_references = Some(vec![OwnerReference {
        api_version: "apps/v1".to_owned(),
        kind: "ReplicaSet".to_owned(),
        name: format!("rs-{uid}"),
        uid: uid.to_owned(),
        controller: Some(true),
        ..Default::default()
    }]);
    pod
}

/// `pod` with a toleration (operator Exists when `value` is None).
pub fn tolerate(mut pod: Pod, key: &str, value: Option<&str>, effect: &str) -> Pod {
    let spec = pod.spec.get_or_insert_with(PodSpec::default);
    spec.tolerations
        .get_or_insert_with(Vec::new)
        .push(Toleration {
            key: Some(key.to_owned()),
            operator: Some(if value.is_some() { "Equal" } else { "Exists" }.to_owned()),
            value: value.map(str::to_owned),
            effect: (!effect.is_empty()).then(|| effect.to_owned()),
            toleration_seconds: None,
        });
    pod
}

/// A hostname term selecting pods labelled `app=<app>`.
pub fn term_on_app(app: &str, topology_key: &str) -> PodAffinityTerm {
    PodAffinityTerm {
        label_selector: Some(LabelSelector {
            match_labels: Some(BTreeMap::from([("app".to_owned(), app.to_owned())])),
            ..Default::default()
        }),
        topology_key: topology_key.to_owned(),
        ..Default::default()
    }
}

/// `pod` with required anti-affinity to pods labelled `app=<app>` on the same node.
pub fn anti_affine(mut pod: Pod, app: &str) -> Pod {
    let spec = pod.spec.get_or_insert_with(PodSpec::default);
    spec.affinity
        .get_or_insert_with(Affinity::default)
        .pod_anti_affinity = Some(PodAntiAffinity {
        required_during_scheduling_ignored_during_execution: Some(vec![term_on_app(
            app,
            "kubernetes.io/hostname",
        )]),
        ..Default::default()
    });
    pod
}

/// A snapshot of `nodes`.
pub fn snapshot_of(nodes: &[Node]) -> Snapshot {
    let mut snapshot = Snapshot::new();
    for n in nodes {
        snapshot.upsert_node(n);
    }
    snapshot
}

/// Runtime needs of a plain container pod with no particular requirement.
pub fn any_runtime() -> RuntimeNeeds {
    RuntimeNeeds::default()
}

/// The FailedScheduling message for `pod`, panicking if it was placed.
pub fn failure(snapshot: &mut Snapshot, pod: &Pod) -> String {
    match snapshot.schedule(pod, &any_runtime()) {
        Ok(node) => panic!("expected no fit, got {node}"),
        Err(e) => e.to_string(),
    }
}
