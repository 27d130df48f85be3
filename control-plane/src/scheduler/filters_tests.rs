use k8s_openapi::api::core::v1::{ContainerPort, Pod, PodSpec, Taint, Toleration};

use super::super::fixtures::*;
use super::super::{RuntimeNeeds, Snapshot};
use super::*;

fn toleration(key: &str, operator: &str, value: &str, effect: &str) -> Toleration {
    let opt = |s: &str| (!s.is_empty()).then(|| s.to_owned());
    Toleration {
        key: opt(key),
        operator: opt(operator),
        value: opt(value),
        effect: opt(effect),
        toleration_seconds: None,
    }
}

#[test]
fn toleration_matching_table() {
    // (toleration key, operator, value, effect) against taint (key, value, effect).
    let cases = [
        (
            ("k", "Equal", "v", "NoSchedule"),
            ("k", "v", "NoSchedule"),
            true,
        ),
        (("k", "", "v", "NoSchedule"), ("k", "v", "NoSchedule"), true),
        (
            ("k", "Equal", "v", "NoSchedule"),
            ("k", "w", "NoSchedule"),
            false,
        ),
        (("k", "Equal", "v", ""), ("k", "v", "NoExecute"), true),
        (
            ("k", "Equal", "v", "NoExecute"),
            ("k", "v", "NoSchedule"),
            false,
        ),
        (
            ("k", "Exists", "", "NoSchedule"),
            ("k", "anything", "NoSchedule"),
            true,
        ),
        (("k", "Exists", "", ""), ("k", "", "NoExecute"), true),
        (("other", "Exists", "", ""), ("k", "", "NoSchedule"), false),
        (("", "Exists", "", ""), ("k", "v", "NoExecute"), true),
        (
            ("", "Exists", "", "NoSchedule"),
            ("k", "v", "NoExecute"),
            false,
        ),
        (
            ("k", "Equal", "", "NoSchedule"),
            ("k", "", "NoSchedule"),
            true,
        ),
        (
            ("k", "Equal", "", "NoSchedule"),
            ("k", "v", "NoSchedule"),
            false,
        ),
        (("k", "Bogus", "v", ""), ("k", "v", "NoSchedule"), false),
    ];
    for ((key, op, value, effect), (tkey, tvalue, teffect), want) in cases {
        let t = toleration(key, op, value, effect);
        assert_eq!(
            tolerates(&t, tkey, tvalue, teffect),
            want,
            "{t:?} vs {tkey}={tvalue}:{teffect}"
        );
    }
    let taint = Taint {
        key: "k".to_owned(),
        value: None,
        effect: "NoSchedule".to_owned(),
        time_added: None,
    };
    assert!(tolerated(
        &[
            toleration("x", "Exists", "", ""),
            toleration("k", "Exists", "", "")
        ],
        &taint
    ));
    assert!(!tolerated(&[], &taint));
}

fn one_node(node: k8s_openapi::api::core::v1::Node) -> Snapshot {
    snapshot_of(&[node])
}

#[test]
fn cordoned_node_reason_and_toleration() {
    let mut snapshot = one_node(cordoned(roomy("a")));
    assert_eq!(
        failure(&mut snapshot, &pod("p", "", "")),
        "0/1 nodes are available: 1 node(s) were unschedulable."
    );
    let tolerant = tolerate(
        pod("q", "", ""),
        "node.kubernetes.io/unschedulable",
        None,
        "NoSchedule",
    );
    assert_eq!(
        snapshot.schedule(&tolerant, &any_runtime()).as_deref(),
        Ok("a")
    );
}

#[test]
fn untolerated_taint_reason() {
    let mut snapshot = one_node(taint(roomy("a"), "dedicated", "gpu", "NoSchedule"));
    assert_eq!(
        failure(&mut snapshot, &pod("p", "", "")),
        "0/1 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}."
    );
    let tolerant = tolerate(pod("q", "", ""), "dedicated", Some("gpu"), "NoSchedule");
    assert_eq!(
        snapshot.schedule(&tolerant, &any_runtime()).as_deref(),
        Ok("a")
    );
}

#[test]
fn prefer_no_schedule_taints_do_not_filter() {
    let mut snapshot = one_node(taint(roomy("a"), "soft", "", "PreferNoSchedule"));
    assert_eq!(
        snapshot
            .schedule(&pod("p", "", ""), &any_runtime())
            .as_deref(),
        Ok("a")
    );
}

#[test]
fn not_ready_node_counts_as_tainted_not_ready() {
    let mut snapshot = one_node(readiness(roomy("a"), "False"));
    assert_eq!(failure(&mut snapshot, &pod("p", "", "")), "0/1 nodes are available: 1 node(s) had untolerated taint {node.kubernetes.io/not-ready: }.");
    let tolerant = tolerate(
        pod("q", "", ""),
        "node.kubernetes.io/not-ready",
        None,
        "NoSchedule",
    );
    assert_eq!(
        snapshot.schedule(&tolerant, &any_runtime()).as_deref(),
        Ok("a")
    );
    // Already tainted unreachable by the lifecycle controller: that taint is the reason.
    let mut snapshot = one_node(taint(
        readiness(roomy("b"), "Unknown"),
        "node.kubernetes.io/unreachable",
        "",
        "NoExecute",
    ));
    assert_eq!(failure(&mut snapshot, &tolerant), "0/1 nodes are available: 1 node(s) had untolerated taint {node.kubernetes.io/unreachable: }.");
}

#[test]
fn node_selector_reason() {
    let mut snapshot = one_node(label(roomy("a"), "disk", "hdd"));
    let mut p = pod("p", "", "");
    p.spec.get_or_insert_with(PodSpec::default).node_selector =
        Some([("disk".to_owned(), "ssd".to_owned())].into());
    assert_eq!(
        failure(&mut snapshot, &p),
        "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector."
    );
}

#[test]
fn runtime_and_arch_reasons() {
    let mut snapshot = one_node(label(roomy("a"), "kubernetes.io/arch", "arm64"));
    let wasm = RuntimeNeeds {
        handler: Some("wasm".to_owned()),
        arches: Vec::new(),
    };
    let err = snapshot
        .schedule(&pod("p", "", ""), &wasm)
        .expect_err("no wasm");
    assert_eq!(
        err.to_string(),
        "0/1 nodes are available: 1 node(s) didn't offer the runtime \"wasm\"."
    );
    let amd = RuntimeNeeds {
        handler: None,
        arches: vec!["amd64".to_owned()],
    };
    let err = snapshot
        .schedule(&pod("p", "", ""), &amd)
        .expect_err("wrong arch");
    assert_eq!(
        err.to_string(),
        "0/1 nodes are available: 1 node(s) didn't match the image's architecture \"amd64\"."
    );
}

fn with_host_port(mut pod: Pod, port: i32) -> Pod {
    let spec = pod.spec.get_or_insert_with(PodSpec::default);
    spec.containers[0].ports = Some(vec![ContainerPort {
        container_port: 80,
        host_port: Some(port),
        ..Default::default()
    }]);
    pod
}

#[test]
fn host_port_reason() {
    let mut snapshot = one_node(roomy("a"));
    snapshot.add_pod(&bound(with_host_port(pod("web", "", ""), 8080), "a"));
    assert_eq!(
        failure(&mut snapshot, &with_host_port(pod("p", "", ""), 8080)),
        "0/1 nodes are available: 1 node(s) didn't have free ports for the requested pod ports."
    );
    assert!(snapshot
        .schedule(&with_host_port(pod("q", "", ""), 8081), &any_runtime())
        .is_ok());
}

#[test]
fn resource_reasons_are_each_counted() {
    let mut snapshot = one_node(node("a", "1", "1Gi", "1"));
    snapshot.add_pod(&bound(pod("full", "500m", "512Mi"), "a"));
    assert_eq!(
        failure(&mut snapshot, &pod("p", "600m", "600Mi")),
        "0/1 nodes are available: 1 Insufficient cpu, 1 Insufficient memory, 1 Too many pods."
    );
}

#[test]
fn extended_and_ephemeral_resources_are_checked() {
    let gpu_node = {
        let mut n = roomy("gpu");
        n.status
            .as_mut()
            .and_then(|s| s.allocatable.as_mut())
            .map(|a| a.insert("example.com/gpu".to_owned(), q("1")));
        n
    };
    let mut snapshot = snapshot_of(&[gpu_node, roomy("plain")]);
    let mut p = pod("p", "", "");
    if let Some(s) = p.spec.as_mut() {
        s.containers[0] = container(
            "app",
            list(&[("example.com/gpu", "1"), ("ephemeral-storage", "1Gi")]),
        )
    }
    assert_eq!(snapshot.schedule(&p, &any_runtime()).as_deref(), Ok("gpu"));
    let mut q2 = p.clone();
    q2.metadata.name = Some("q".to_owned());
    q2.metadata.uid = Some("q".to_owned());
    assert_eq!(
        failure(&mut snapshot, &q2),
        "0/2 nodes are available: 2 Insufficient example.com/gpu."
    );
    if let Some(s) = p.spec.as_mut() {
        s.containers[0] = container("app", list(&[("ephemeral-storage", "200Gi")]));
    }
    p.metadata.name = Some("big".to_owned());
    assert_eq!(
        failure(&mut snapshot, &p),
        "0/2 nodes are available: 2 Insufficient ephemeral-storage."
    );
}

#[test]
fn anti_affinity_reason_from_both_sides() {
    let mut snapshot = one_node(roomy("a"));
    snapshot.add_pod(&bound(pod_label(pod("db-1", "", ""), "app", "db"), "a"));
    let incoming = pod_label(anti_affine(pod("db-2", "", ""), "db"), "app", "db");
    assert_eq!(
        failure(&mut snapshot, &incoming),
        "0/1 nodes are available: 1 node(s) didn't match pod anti-affinity rules."
    );

    let mut snapshot = one_node(roomy("a"));
    snapshot.add_pod(&bound(anti_affine(pod("loner", "", ""), "web"), "a"));
    let web = pod_label(pod("web", "", ""), "app", "web");
    assert_eq!(
        failure(&mut snapshot, &web),
        "0/1 nodes are available: 1 node(s) didn't satisfy existing pods anti-affinity rules."
    );
}
