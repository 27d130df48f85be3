use std::sync::Arc;

use k8s_openapi::api::core::v1::{
    Container, ContainerPort, PodCondition, PodSpec, PodStatus, ServicePort, ServiceSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::*;
use crate::controllers::context::Backend;
use crate::controllers::fake::{FakeBackend, Write};

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn service(name: &str, selector: Option<&[(&str, &str)]>) -> Service {
    Service {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            labels: Some(labels(&[("tier", "frontend")])),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            cluster_ip: Some("10.96.0.10".into()),
            selector: selector.map(labels),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: 80,
                protocol: Some("TCP".into()),
                target_port: Some(IntOrString::String("http".into())),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        status: None,
    }
}

fn pod(name: &str, ip: &str, http_port: i32, ready: bool) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            labels: Some(labels(&[("app", "web")])),
            ..Default::default()
        },
        spec: Some(PodSpec {
            node_name: Some("node-1".into()),
            containers: vec![Container {
                name: "web".into(),
                ports: Some(vec![ContainerPort {
                    name: Some("http".into()),
                    container_port: http_port,
                    ..Default::default()
                }]),
                ..Default::default()
            }],
            ..Default::default()
        }),
        status: Some(PodStatus {
            phase: Some("Running".into()),
            pod_ip: Some(ip.into()),
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: if ready { "True" } else { "False" }.into(),
                ..Default::default()
            }]),
            ..Default::default()
        }),
    }
}

fn setup() -> (Arc<FakeBackend>, Ctx) {
    let fake = Arc::new(FakeBackend::new());
    let ctx = Ctx::new(fake.clone() as Arc<dyn Backend>, "endpoints-controller");
    (fake, ctx)
}

async fn run(ctx: &Ctx, name: &str) {
    EndpointsController::new()
        .reconcile(&Key::new(Some("default"), name), ctx)
        .await
        .expect("reconcile succeeds");
}

fn endpoints(fake: &FakeBackend, name: &str) -> Option<Endpoints> {
    fake.get::<Endpoints>(Some("default"), name)
}

fn ips(list: &Option<Vec<EndpointAddress>>) -> Vec<String> {
    list.iter().flatten().map(|a| a.ip.clone()).collect()
}

#[tokio::test]
async fn endpoints_follow_pod_readiness_and_deletion() {
    let (fake, ctx) = setup();
    fake.insert(&service("web", Some(&[("app", "web")])));
    let p = fake.insert(&pod("web-1", "10.0.0.5", 8080, false));
    run(&ctx, "web").await;
    let ep = endpoints(&fake, "web").expect("created");
    assert!(ep.metadata.owner_references.is_none());
    assert_eq!(ep.metadata.labels, Some(labels(&[("tier", "frontend")])));
    let subsets = ep.subsets.unwrap();
    assert_eq!(subsets.len(), 1);
    assert_eq!(ips(&subsets[0].addresses), Vec::<String>::new());
    assert_eq!(ips(&subsets[0].not_ready_addresses), vec!["10.0.0.5"]);
    let address = &subsets[0].not_ready_addresses.as_ref().unwrap()[0];
    assert_eq!(address.node_name.as_deref(), Some("node-1"));
    let target = address.target_ref.as_ref().unwrap();
    assert_eq!(
        (
            target.kind.as_deref(),
            target.name.as_deref(),
            target.namespace.as_deref()
        ),
        (Some("Pod"), Some("web-1"), Some("default"))
    );
    assert_eq!(target.uid, p.metadata.uid);
    let port = &subsets[0].ports.as_ref().unwrap()[0];
    assert_eq!(
        (port.name.as_deref(), port.port, port.protocol.as_deref()),
        (Some("http"), 8080, Some("TCP"))
    );

    fake.insert(&pod("web-1", "10.0.0.5", 8080, true));
    run(&ctx, "web").await;
    let subsets = endpoints(&fake, "web").unwrap().subsets.unwrap();
    assert_eq!(ips(&subsets[0].addresses), vec!["10.0.0.5"]);
    assert!(subsets[0].not_ready_addresses.is_none());

    fake.insert(&pod("web-1", "10.0.0.5", 8080, false));
    run(&ctx, "web").await;
    let subsets = endpoints(&fake, "web").unwrap().subsets.unwrap();
    assert_eq!(ips(&subsets[0].not_ready_addresses), vec!["10.0.0.5"]);

    fake.remove::<Pod>(Some("default"), "web-1");
    run(&ctx, "web").await;
    assert!(endpoints(&fake, "web").unwrap().subsets.is_none());

    // Nothing changed: nothing written.
    fake.clear_writes();
    run(&ctx, "web").await;
    assert!(fake.writes().is_empty());
}

#[tokio::test]
async fn named_target_ports_group_pods_by_resolved_port() {
    let (fake, ctx) = setup();
    fake.insert(&service("web", Some(&[("app", "web")])));
    fake.insert(&pod("web-b", "10.0.0.9", 8080, true));
    fake.insert(&pod("web-a", "10.0.0.10", 8080, true));
    fake.insert(&pod("web-c", "10.0.0.7", 9090, true));
    let mut unnamed = pod("web-d", "10.0.0.8", 0, true);
    unnamed.spec.as_mut().unwrap().containers[0].ports = None;
    fake.insert(&unnamed);
    run(&ctx, "web").await;
    let subsets = endpoints(&fake, "web").unwrap().subsets.unwrap();
    let mut seen: Vec<(i32, Vec<String>)> = subsets
        .iter()
        .map(|s| (s.ports.as_ref().unwrap()[0].port, ips(&s.addresses)))
        .collect();
    seen.sort();
    // Addresses sorted by IP as Kubernetes sorts them; a pod without the port is left out.
    assert_eq!(
        seen,
        vec![
            (8080, vec!["10.0.0.10".to_string(), "10.0.0.9".to_string()]),
            (9090, vec!["10.0.0.7".to_string()]),
        ]
    );
}

#[tokio::test]
async fn terminating_pods_leave_unless_not_ready_addresses_are_published() {
    let (fake, ctx) = setup();
    let mut svc = service("web", Some(&[("app", "web")]));
    fake.insert(&svc);
    let mut leaving = pod("web-1", "10.0.0.5", 8080, true);
    leaving.metadata.deletion_timestamp = Some(Time(fake.now()));
    fake.insert(&leaving);
    fake.insert(&pod("web-2", "10.0.0.6", 8080, false));
    run(&ctx, "web").await;
    let subsets = endpoints(&fake, "web").unwrap().subsets.unwrap();
    assert_eq!(ips(&subsets[0].not_ready_addresses), vec!["10.0.0.6"]);
    assert!(subsets[0].addresses.is_none());

    svc.spec.as_mut().unwrap().publish_not_ready_addresses = Some(true);
    fake.insert(&svc);
    run(&ctx, "web").await;
    let subsets = endpoints(&fake, "web").unwrap().subsets.unwrap();
    assert_eq!(ips(&subsets[0].addresses), vec!["10.0.0.5", "10.0.0.6"]);
}

#[tokio::test]
async fn a_service_without_selector_is_left_alone() {
    let (fake, ctx) = setup();
    fake.insert(&service("external", None));
    let manual = Endpoints {
        metadata: ObjectMeta {
            name: Some("external".into()),
            namespace: Some("default".into()),
            ..Default::default()
        },
        subsets: Some(vec![EndpointSubset {
            addresses: Some(vec![EndpointAddress {
                ip: "192.168.1.1".into(),
                ..Default::default()
            }]),
            ..Default::default()
        }]),
    };
    fake.insert(&manual);
    fake.insert(&pod("web-1", "10.0.0.5", 8080, true));
    run(&ctx, "external").await;
    assert!(fake.writes().is_empty());
    assert_eq!(
        endpoints(&fake, "external").unwrap().subsets,
        manual.subsets
    );
}

#[tokio::test]
async fn deleting_the_service_deletes_its_endpoints() {
    let (fake, ctx) = setup();
    fake.insert(&service("web", Some(&[("app", "web")])));
    fake.insert(&pod("web-1", "10.0.0.5", 8080, true));
    run(&ctx, "web").await;
    assert!(endpoints(&fake, "web").is_some());
    fake.remove::<Service>(Some("default"), "web");
    run(&ctx, "web").await;
    assert!(endpoints(&fake, "web").is_none());
    assert!(fake
        .writes()
        .contains(&Write::Delete("Endpoints", "default/web".into())));
}

#[tokio::test]
async fn headless_services_are_labelled_and_listed_without_ports() {
    let (fake, ctx) = setup();
    let mut svc = service("db", Some(&[("app", "web")]));
    let spec = svc.spec.as_mut().unwrap();
    spec.cluster_ip = Some("None".into());
    spec.ports = None;
    fake.insert(&svc);
    let mut member = pod("db-0", "10.0.0.5", 8080, true);
    let pod_spec = member.spec.as_mut().unwrap();
    pod_spec.hostname = Some("db-0".into());
    pod_spec.subdomain = Some("db".into());
    fake.insert(&member);
    run(&ctx, "db").await;
    let ep = endpoints(&fake, "db").unwrap();
    assert_eq!(
        ep.metadata.labels.unwrap()[super::super::service_pods::HEADLESS_LABEL],
        ""
    );
    let subset = &ep.subsets.unwrap()[0];
    assert!(subset.ports.is_none());
    assert_eq!(
        subset.addresses.as_ref().unwrap()[0].hostname.as_deref(),
        Some("db-0")
    );
}

#[test]
fn truncation_drops_not_ready_addresses_first_and_marks_it() {
    let address = |i: usize| EndpointAddress {
        ip: format!("10.0.{}.{}", i / 256, i % 256),
        ..Default::default()
    };
    let mut subsets = vec![
        EndpointSubset {
            addresses: Some((0..900).map(address).collect()),
            not_ready_addresses: Some((900..1000).map(address).collect()),
            ports: None,
        },
        EndpointSubset {
            addresses: None,
            not_ready_addresses: Some((1000..1100).map(address).collect()),
            ports: None,
        },
    ];
    assert!(truncate(&mut subsets));
    let count = |l: &Option<Vec<EndpointAddress>>| l.as_ref().map_or(0, Vec::len);
    assert_eq!(count(&subsets[0].addresses), 900);
    let not_ready = count(&subsets[0].not_ready_addresses) + count(&subsets[1].not_ready_addresses);
    assert_eq!(not_ready, 100);
    assert!(!truncate(&mut subsets));
}

#[tokio::test]
async fn keys_for_maps_a_pod_to_the_services_selecting_it_now_or_before() {
    let (fake, ctx) = setup();
    fake.insert(&service("web", Some(&[("app", "web")])));
    fake.insert(&service("api", Some(&[("app", "api")])));
    fake.insert(&service("manual", None));
    let mut other_namespace = service("web", Some(&[("app", "web")]));
    other_namespace.metadata.namespace = Some("prod".into());
    fake.insert(&other_namespace);
    let change = WatchedChange {
        kind: TypeRef::of::<Pod>(),
        namespace: Some("default".into()),
        name: "web-1".into(),
        labels: labels(&[("app", "api")]),
        previous_labels: Some(labels(&[("app", "web")])),
        controller: None,
        previous_controller: None,
        node_name: None,
        previous_node_name: None,
        deleted: false,
    };
    let mut keys = EndpointsController::new().keys_for(&change, &ctx);
    keys.sort();
    assert_eq!(
        keys,
        vec![
            Key::new(Some("default"), "api"),
            Key::new(Some("default"), "web")
        ]
    );
}
