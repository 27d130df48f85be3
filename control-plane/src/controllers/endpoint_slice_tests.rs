use std::sync::Arc;

use k8s_openapi::api::core::v1::{
    Container, ContainerPort, PodCondition, PodSpec, PodStatus, ServicePort, ServiceSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::*;
use crate::controllers::context::Backend;
use crate::controllers::fake::{FakeBackend, Write};
use crate::controllers::reconciler::ControllerRef;

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn service(selector: Option<&[(&str, &str)]>) -> Service {
    Service {
        metadata: ObjectMeta {
            name: Some("web".into()),
            namespace: Some("default".into()),
            labels: Some(labels(&[("tier", "frontend")])),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            cluster_ip: Some("10.96.0.10".into()),
            ip_families: Some(vec!["IPv4".into()]),
            selector: selector.map(labels),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: 80,
                target_port: Some(IntOrString::String("http".into())),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        status: None,
    }
}

fn pod(name: &str, ip: &str, ready: bool) -> Pod {
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
                    container_port: 8080,
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

fn setup() -> (Arc<FakeBackend>, Ctx, Service) {
    let fake = Arc::new(FakeBackend::new());
    let ctx = Ctx::new(fake.clone() as Arc<dyn Backend>, "endpointslice-controller");
    fake.insert(&Node {
        metadata: ObjectMeta {
            name: Some("node-1".into()),
            labels: Some(labels(&[(ZONE_LABEL, "zone-a")])),
            ..Default::default()
        },
        ..Default::default()
    });
    let svc = fake.insert(&service(Some(&[("app", "web")])));
    (fake, ctx, svc)
}

async fn run(ctx: &Ctx) -> Action {
    EndpointSliceController::new()
        .reconcile(&Key::new(Some("default"), "web"), ctx)
        .await
        .expect("reconcile succeeds")
}

fn slices(fake: &FakeBackend) -> Vec<EndpointSlice> {
    fake.all::<EndpointSlice>()
}

fn creates(fake: &FakeBackend) -> usize {
    fake.writes()
        .iter()
        .filter(|w| matches!(w, Write::Create(..)))
        .count()
}

#[tokio::test]
async fn a_slice_lists_the_selected_pods() {
    let (fake, ctx, svc) = setup();
    let ready = fake.insert(&pod("web-1", "10.0.0.5", true));
    fake.insert(&pod("web-2", "10.0.0.6", false));
    let mut unrelated = pod("db-1", "10.0.0.7", true);
    unrelated.metadata.labels = Some(labels(&[("app", "db")]));
    fake.insert(&unrelated);
    run(&ctx).await;
    let all = slices(&fake);
    assert_eq!(all.len(), 1);
    let slice = &all[0];
    assert!(slice.metadata.name.as_deref().unwrap().starts_with("web-"));
    assert_eq!(slice.address_type, "IPv4");
    assert_eq!(
        slice.metadata.labels,
        Some(labels(&[
            ("tier", "frontend"),
            (SERVICE_NAME_LABEL, "web"),
            (MANAGED_BY_LABEL, MANAGED_BY),
        ]))
    );
    let owner = controller_of(&slice.metadata).unwrap();
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str()),
        ("Service", svc.metadata.uid.as_deref().unwrap())
    );
    let port = &slice.ports.as_ref().unwrap()[0];
    assert_eq!(
        (port.name.as_deref(), port.port, port.protocol.as_deref()),
        (Some("http"), Some(8080), Some("TCP"))
    );
    assert_eq!(slice.endpoints.len(), 2);
    let first = &slice.endpoints[0];
    assert_eq!(first.addresses, vec!["10.0.0.5"]);
    assert_eq!(first.node_name.as_deref(), Some("node-1"));
    assert_eq!(first.zone.as_deref(), Some("zone-a"));
    let target = first.target_ref.as_ref().unwrap();
    assert_eq!(
        (target.kind.as_deref(), target.name.as_deref()),
        (Some("Pod"), Some("web-1"))
    );
    assert_eq!(target.uid, ready.metadata.uid);
    let conditions = |e: &Endpoint| {
        let c = e.conditions.clone().unwrap();
        (c.ready, c.serving, c.terminating)
    };
    assert_eq!(conditions(first), (Some(true), Some(true), Some(false)));
    assert_eq!(
        conditions(&slice.endpoints[1]),
        (Some(false), Some(false), Some(false))
    );
}

#[tokio::test]
async fn changes_update_the_slice_in_place() {
    let (fake, ctx, _) = setup();
    fake.insert(&pod("web-1", "10.0.0.5", false));
    run(&ctx).await;
    let name = slices(&fake)[0].metadata.name.clone();
    fake.clear_writes();

    fake.insert(&pod("web-1", "10.0.0.5", true));
    run(&ctx).await;
    assert_eq!(fake.writes().len(), 1);
    assert!(matches!(
        fake.writes()[0],
        Write::Replace("EndpointSlice", _)
    ));
    let slice = &slices(&fake)[0];
    assert_eq!(slice.metadata.name, name);
    assert_eq!(
        slice.endpoints[0].conditions.as_ref().unwrap().ready,
        Some(true)
    );

    // A terminating pod stays listed, as terminating and no longer ready.
    let mut leaving = pod("web-1", "10.0.0.5", true);
    leaving.metadata.deletion_timestamp = Some(Time(fake.now()));
    fake.insert(&leaving);
    run(&ctx).await;
    let c = slices(&fake)[0].endpoints[0].conditions.clone().unwrap();
    assert_eq!(
        (c.ready, c.serving, c.terminating),
        (Some(false), Some(true), Some(true))
    );

    fake.clear_writes();
    run(&ctx).await;
    assert!(fake.writes().is_empty(), "nothing to change");
}

#[tokio::test]
async fn slices_split_past_one_hundred_endpoints() {
    let (fake, ctx, _) = setup();
    for i in 0..250 {
        fake.insert(&pod(
            &format!("web-{i:03}"),
            &format!("10.0.{}.{}", i / 200, i % 200 + 1),
            true,
        ));
    }
    run(&ctx).await;
    let mut sizes: Vec<usize> = slices(&fake).iter().map(|s| s.endpoints.len()).collect();
    sizes.sort();
    assert_eq!(sizes, vec![50, 100, 100]);
    assert_eq!(creates(&fake), 3);

    // Removing pods shrinks the slices they are in; nothing is recreated.
    fake.clear_writes();
    for i in 0..30 {
        fake.remove::<Pod>(Some("default"), &format!("web-{i:03}"));
    }
    run(&ctx).await;
    assert_eq!(creates(&fake), 0);
    let total: usize = slices(&fake).iter().map(|s| s.endpoints.len()).sum();
    assert_eq!(total, 220);
    assert!(slices(&fake).iter().all(|s| s.endpoints.len() <= 100));
}

#[tokio::test]
async fn an_empty_service_keeps_a_placeholder_that_is_reused() {
    let (fake, ctx, _) = setup();
    run(&ctx).await;
    let placeholder = slices(&fake);
    assert_eq!(placeholder.len(), 1);
    assert!(placeholder[0].endpoints.is_empty());
    assert!(placeholder[0].ports.is_none());
    fake.clear_writes();
    run(&ctx).await;
    assert!(fake.writes().is_empty(), "the placeholder is kept as is");

    fake.insert(&pod("web-1", "10.0.0.5", true));
    run(&ctx).await;
    assert_eq!(creates(&fake), 0, "the placeholder becomes the real slice");
    let now = slices(&fake);
    assert_eq!(now.len(), 1);
    assert_eq!(now[0].metadata.name, placeholder[0].metadata.name);
    assert_eq!(now[0].endpoints.len(), 1);

    fake.remove::<Pod>(Some("default"), "web-1");
    run(&ctx).await;
    let empty = slices(&fake);
    assert_eq!(empty.len(), 1);
    assert!(empty[0].endpoints.is_empty());
}

#[tokio::test]
async fn pods_on_a_missing_node_wait() {
    let (fake, ctx, _) = setup();
    let mut lost = pod("web-1", "10.0.0.5", true);
    lost.spec.as_mut().unwrap().node_name = Some("gone".into());
    fake.insert(&lost);
    fake.insert(&pod("web-2", "10.0.0.6", true));
    assert_eq!(run(&ctx).await, Action::RequeueAfter(MISSING_NODE_RETRY));
    let slice = &slices(&fake)[0];
    assert_eq!(slice.endpoints.len(), 1);
    assert_eq!(slice.endpoints[0].addresses, vec!["10.0.0.6"]);
}

#[tokio::test]
async fn services_without_selector_get_no_slices() {
    let (fake, ctx, _) = setup();
    fake.insert(&service(None));
    fake.insert(&pod("web-1", "10.0.0.5", true));
    assert_eq!(run(&ctx).await, Action::Done);
    assert!(slices(&fake).is_empty());
}

#[tokio::test]
async fn keys_for_maps_pods_and_owned_slices_to_services() {
    let (fake, ctx, _) = setup();
    let controller = EndpointSliceController::new();
    let mut change = WatchedChange {
        kind: TypeRef::of::<Pod>(),
        namespace: Some("default".into()),
        name: "web-1".into(),
        labels: labels(&[("app", "other")]),
        previous_labels: None,
        controller: None,
        previous_controller: None,
        node_name: None,
        previous_node_name: None,
        deleted: false,
    };
    assert!(controller.keys_for(&change, &ctx).is_empty());
    change.previous_labels = Some(labels(&[("app", "web")]));
    assert_eq!(
        controller.keys_for(&change, &ctx),
        vec![Key::new(Some("default"), "web")]
    );

    fake.insert(&service(Some(&[("app", "web")])));
    let slice_change = WatchedChange {
        kind: TypeRef::of::<EndpointSlice>(),
        name: "web-abcde".into(),
        labels: BTreeMap::new(),
        previous_labels: None,
        controller: Some(ControllerRef {
            kind: "Service".into(),
            name: "web".into(),
        }),
        deleted: true,
        ..change
    };
    assert_eq!(
        controller.keys_for(&slice_change, &ctx),
        vec![Key::new(Some("default"), "web")]
    );
}
