use super::*;
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, PodIP, PodSpec, PodStatus, ServiceSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::chrono::{DateTime, Utc};

fn pod_with_ports(ports: Vec<ContainerPort>) -> Pod {
    Pod {
        metadata: ObjectMeta::default(),
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "app".into(),
                ports: Some(ports),
                ..Default::default()
            }],
            ..Default::default()
        }),
        status: Some(PodStatus {
            phase: Some("Running".into()),
            pod_ip: Some("10.0.0.1".into()),
            ..Default::default()
        }),
    }
}

fn service_port(target: Option<IntOrString>, protocol: Option<&str>) -> ServicePort {
    ServicePort {
        port: 80,
        target_port: target,
        protocol: protocol.map(str::to_string),
        ..Default::default()
    }
}

#[test]
fn target_ports_resolve_by_number_or_by_name_and_protocol() {
    let pod = pod_with_ports(vec![
        ContainerPort {
            name: Some("http".into()),
            container_port: 8080,
            ..Default::default()
        },
        ContainerPort {
            name: Some("dns".into()),
            container_port: 5353,
            protocol: Some("UDP".into()),
            ..Default::default()
        },
    ]);
    assert_eq!(find_port(&pod, &service_port(None, None)), Some(80));
    assert_eq!(
        find_port(&pod, &service_port(Some(IntOrString::Int(9000)), None)),
        Some(9000)
    );
    let http = Some(IntOrString::String("http".into()));
    assert_eq!(
        find_port(&pod, &service_port(http.clone(), Some("TCP"))),
        Some(8080)
    );
    assert_eq!(find_port(&pod, &service_port(http, Some("UDP"))), None);
    let dns = Some(IntOrString::String("dns".into()));
    assert_eq!(find_port(&pod, &service_port(dns, Some("UDP"))), Some(5353));
    let missing = Some(IntOrString::String("metrics".into()));
    assert_eq!(find_port(&pod, &service_port(missing, None)), None);
}

#[test]
fn only_live_pods_with_an_ip_can_serve() {
    let pod = pod_with_ports(vec![]);
    assert!(can_serve(&pod, false));
    let mut no_ip = pod.clone();
    no_ip.status.as_mut().unwrap().pod_ip = None;
    assert!(!can_serve(&no_ip, true));
    let mut done = pod.clone();
    done.status.as_mut().unwrap().phase = Some("Succeeded".into());
    assert!(!can_serve(&done, true));
    let mut leaving = pod.clone();
    leaving.metadata.deletion_timestamp = Some(Time(DateTime::<Utc>::MIN_UTC));
    assert!(!can_serve(&leaving, false));
    assert!(can_serve(&leaving, true));
}

#[test]
fn pod_ips_prefer_the_list() {
    let mut pod = pod_with_ports(vec![]);
    assert_eq!(pod_ips(&pod), vec!["10.0.0.1"]);
    pod.status.as_mut().unwrap().pod_ips = Some(vec![
        PodIP {
            ip: "10.0.0.1".into(),
        },
        PodIP {
            ip: "fd00::1".into(),
        },
    ]);
    assert_eq!(pod_ips(&pod), vec!["10.0.0.1", "fd00::1"]);
    assert_eq!(Family::of("fd00::1"), Some(Family::V6));
}

#[test]
fn families_come_from_the_spec_or_the_cluster_ip() {
    let mut service = Service {
        spec: Some(ServiceSpec::default()),
        ..Default::default()
    };
    assert_eq!(service_families(&service), vec![Family::V4]);
    service.spec.as_mut().unwrap().cluster_ip = Some("fd00::10".into());
    assert_eq!(service_families(&service), vec![Family::V6]);
    service.spec.as_mut().unwrap().ip_families = Some(vec!["IPv4".into(), "IPv6".into()]);
    assert_eq!(service_families(&service), vec![Family::V4, Family::V6]);
}

#[test]
fn an_empty_selector_is_no_selector() {
    let mut service = Service {
        spec: Some(ServiceSpec {
            selector: Some(BTreeMap::new()),
            ..Default::default()
        }),
        ..Default::default()
    };
    assert!(service_selector(&service).is_none());
    service.spec.as_mut().unwrap().selector = Some(BTreeMap::from([("app".into(), "web".into())]));
    let selector = service_selector(&service).unwrap();
    assert!(selector.matches(&BTreeMap::from([("app".into(), "web".into())])));
}
