use k8s_openapi::api::core::v1::ContainerPort;

use super::super::fixtures::*;
use super::*;

fn claim(ip: &str, protocol: &str, port: i32) -> HostPort {
    HostPort {
        ip: ip.to_owned(),
        protocol: protocol.to_owned(),
        port,
    }
}

#[test]
fn host_port_conflicts() {
    let cases = [
        (
            claim("0.0.0.0", "TCP", 80),
            claim("10.0.0.1", "TCP", 80),
            true,
        ),
        (
            claim("10.0.0.1", "TCP", 80),
            claim("10.0.0.1", "TCP", 80),
            true,
        ),
        (
            claim("10.0.0.1", "TCP", 80),
            claim("10.0.0.2", "TCP", 80),
            false,
        ),
        (
            claim("0.0.0.0", "TCP", 80),
            claim("0.0.0.0", "UDP", 80),
            false,
        ),
        (
            claim("0.0.0.0", "TCP", 80),
            claim("0.0.0.0", "TCP", 81),
            false,
        ),
    ];
    for (a, b, want) in cases {
        assert_eq!(a.conflicts(&b), want, "{a:?} vs {b:?}");
        assert_eq!(b.conflicts(&a), want, "{b:?} vs {a:?}");
    }
}

#[test]
fn host_ports_default_to_tcp_on_every_address() {
    let mut p = pod("p", "", "");
    if let Some(s) = p.spec.as_mut() {
        s.containers[0].ports = Some(vec![
            ContainerPort {
                container_port: 80,
                host_port: Some(8080),
                ..Default::default()
            },
            ContainerPort {
                container_port: 53,
                host_port: Some(53),
                host_ip: Some("127.0.0.1".to_owned()),
                protocol: Some("UDP".to_owned()),
                ..Default::default()
            },
            ContainerPort {
                container_port: 9090,
                ..Default::default()
            },
        ]);
    }
    assert_eq!(
        host_ports(&p),
        [claim("0.0.0.0", "TCP", 8080), claim("127.0.0.1", "UDP", 53)]
    );
}

#[test]
fn a_bound_pod_with_a_malformed_quantity_counts_as_requesting_nothing() {
    let entry = PodEntry::bound(&bound(pod("p", "a lot", ""), "n"), "n");
    assert_eq!(entry.requests, PodRequests::default());
    assert_eq!(
        (entry.key.as_str(), entry.node.as_str()),
        ("default/p", "n")
    );
    assert!(!entry.assumed);
}

#[test]
fn an_incoming_pod_becomes_an_assumed_entry() {
    let p = owned_by(pod_label(pod("p", "250m", ""), "app", "web"), "rs-1");
    let needs = RuntimeNeeds {
        handler: Some("wasm".to_owned()),
        arches: Vec::new(),
    };
    let incoming = Incoming::parse(&p, &needs).expect("valid");
    assert_eq!(incoming.controller, Some("rs-1"));
    assert_eq!(
        incoming.runtime,
        Some(("wasm".to_owned(), "bramble.dev/runtime-wasm".to_owned()))
    );
    let entry = incoming.into_entry("n");
    assert!(entry.assumed);
    assert_eq!(entry.requests.requested.milli_cpu, 250);
    assert_eq!(entry.labels.get("app").map(String::as_str), Some("web"));
}
