use k8s_openapi::api::core::v1::{Container, PodSpec, ResourceRequirements};

use super::super::fixtures::*;
use super::*;

fn cpu(value: &str) -> Container {
    container("c", list(&[("cpu", value)]))
}

fn sidecar(value: &str) -> Container {
    Container {
        restart_policy: Some("Always".to_owned()),
        ..cpu(value)
    }
}

fn requests_of(containers: Vec<Container>, init: Vec<Container>) -> PodRequests {
    let mut p = pod("p", "", "");
    let spec = p.spec.get_or_insert_with(PodSpec::default);
    spec.containers = containers;
    spec.init_containers = Some(init);
    pod_requests(&p).expect("valid")
}

#[test]
fn app_containers_add_up() {
    let r = requests_of(vec![cpu("100m"), cpu("250m")], vec![]);
    assert_eq!(r.requested.milli_cpu, 350);
}

#[test]
fn init_containers_count_by_their_peak() {
    assert_eq!(
        requests_of(vec![cpu("100m"), cpu("200m")], vec![cpu("500m")])
            .requested
            .milli_cpu,
        500
    );
    assert_eq!(
        requests_of(
            vec![cpu("100m"), cpu("200m")],
            vec![cpu("200m"), cpu("250m")]
        )
        .requested
        .milli_cpu,
        300
    );
}

#[test]
fn sidecars_run_alongside_later_init_containers_and_the_app() {
    // The sidecar starts first and keeps running: the regular init container needs 400m next
    // to it (500m), the app 300m next to it (400m).
    let r = requests_of(
        vec![cpu("100m"), cpu("200m")],
        vec![sidecar("100m"), cpu("400m")],
    );
    assert_eq!(r.requested.milli_cpu, 500);
    let r = requests_of(vec![cpu("1")], vec![sidecar("100m"), cpu("400m")]);
    assert_eq!(r.requested.milli_cpu, 1100);
}

#[test]
fn overhead_is_added() {
    let mut p = pod("p", "100m", "64Mi");
    if let Some(s) = p.spec.as_mut() {
        s.overhead = Some(list(&[("cpu", "250m"), ("memory", "120Mi")]));
    }
    let r = pod_requests(&p).expect("valid");
    assert_eq!(
        (r.requested.milli_cpu, r.requested.memory),
        (350, 184 * 1024 * 1024)
    );
    assert_eq!(
        (r.non_zero_milli_cpu, r.non_zero_memory),
        (350, 184 * 1024 * 1024)
    );
}

#[test]
fn a_limit_without_a_request_requests_the_limit() {
    let mut p = pod("p", "", "");
    if let Some(s) = p.spec.as_mut() {
        s.containers[0].resources = Some(ResourceRequirements {
            limits: Some(list(&[("cpu", "2"), ("memory", "1Gi")])),
            requests: Some(list(&[("cpu", "500m")])),
            ..Default::default()
        })
    }
    let r = pod_requests(&p).expect("valid");
    assert_eq!((r.requested.milli_cpu, r.requested.memory), (500, 1 << 30));
}

#[test]
fn scoring_defaults_apply_to_containers_missing_a_request() {
    let r = requests_of(vec![container("none", list(&[])), cpu("0")], vec![]);
    assert!(r.is_empty());
    assert_eq!(r.non_zero_milli_cpu, DEFAULT_MILLI_CPU);
    assert_eq!(r.non_zero_memory, 2 * DEFAULT_MEMORY);
}

#[test]
fn extended_resources_are_scalars_and_unknown_names_ignored() {
    let r = requests_of(
        vec![container(
            "c",
            list(&[
                ("example.com/gpu", "2"),
                ("hugepages-2Mi", "4Mi"),
                ("storage", "1"),
            ]),
        )],
        vec![],
    );
    assert_eq!(r.requested.scalar("example.com/gpu"), 2);
    assert_eq!(r.requested.scalar("hugepages-2Mi"), 4 * 1024 * 1024);
    assert_eq!(r.requested.scalars.len(), 2);
}

#[test]
fn a_malformed_quantity_is_an_error_naming_the_container() {
    let error = pod_requests(&pod("p", "1.5.", "")).expect_err("malformed");
    assert!(
        error.starts_with("invalid cpu request of container \"app\": invalid quantity \"1.5.\""),
        "{error}"
    );
    let error = pod_requests(&pod("p", "-1", "")).expect_err("negative");
    assert!(
        error.contains("must be greater than or equal to 0"),
        "{error}"
    );
}

#[test]
fn node_allocatable_is_parsed_leniently() {
    let mut n = node("n", "3500m", "2Gi", "30");
    n.status
        .as_mut()
        .and_then(|s| s.allocatable.as_mut())
        .map(|a| a.insert("example.com/fpga".to_owned(), q("oops")));
    let (amounts, pods) = node_allocatable(&n);
    assert_eq!(
        (amounts.milli_cpu, amounts.memory, pods),
        (3500, 2 << 30, 30)
    );
    assert_eq!(amounts.scalar("example.com/fpga"), 0);
}

#[test]
fn subtracting_what_was_added_leaves_nothing() {
    let r = requests_of(
        vec![container(
            "c",
            list(&[("cpu", "1"), ("memory", "1Gi"), ("example.com/gpu", "1")]),
        )],
        vec![],
    );
    let mut total = Resources::default();
    total.add_scaled(&r.requested, 1);
    total.add_scaled(&r.requested, 1);
    total.add_scaled(&r.requested, -1);
    total.add_scaled(&r.requested, -1);
    assert_eq!(total, Resources::default());
}
