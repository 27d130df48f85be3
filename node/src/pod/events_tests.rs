use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::*;

fn pod() -> Pod {
    let container = |name: &str| Container {
        name: name.into(),
        ..Default::default()
    };
    Pod {
        metadata: ObjectMeta {
            name: Some("web-1".into()),
            namespace: Some("shop".into()),
            uid: Some("u-1".into()),
            ..Default::default()
        },
        spec: Some(PodSpec {
            init_containers: Some(vec![container("migrate")]),
            containers: vec![container("app")],
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn text(h: &Happening) -> (&str, &str, &str) {
    (h.event_type.as_str(), h.reason, h.message.as_str())
}

#[test]
fn image_events_are_worded_as_the_kubelet_words_them() {
    assert_eq!(
        text(&pulling("ghcr.io/x/hello:1")),
        ("Normal", "Pulling", r#"Pulling image "ghcr.io/x/hello:1""#)
    );
    assert_eq!(
        text(&already_present("hello:1")),
        (
            "Normal",
            "Pulled",
            r#"Container image "hello:1" already present on machine"#
        )
    );
    assert_eq!(
        text(&pulled(
            "hello:1",
            Duration::from_millis(1234),
            Duration::from_micros(1_234_900),
            52_410
        )),
        (
            "Normal",
            "Pulled",
            r#"Successfully pulled image "hello:1" in 1.234s (1.234s including waiting). Image size: 52410 bytes."#
        )
    );
    assert_eq!(
        text(&pull_failed("hello:1", "manifest unknown")),
        (
            "Warning",
            "Failed",
            r#"Failed to pull image "hello:1": manifest unknown"#
        )
    );
    assert_eq!(
        text(&never_pull("hello:1")),
        (
            "Warning",
            "ErrImageNeverPull",
            r#"Container image "hello:1" is not present with pull policy of Never"#
        )
    );
    assert_eq!(
        text(&back_off_pulling("hello:1")),
        ("Normal", "BackOff", r#"Back-off pulling image "hello:1""#)
    );
    assert_eq!(
        text(&invalid_image("Hello", "uppercase")).2,
        r#"Failed to apply default image tag "Hello": uppercase"#
    );
}

#[test]
fn start_failures_say_error_with_the_sentinel_for_images_and_the_message_otherwise() {
    assert_eq!(
        text(&start_failed("ErrImagePull", "connection refused")),
        ("Warning", "Failed", "Error: ErrImagePull")
    );
    assert_eq!(
        start_failed("ImagePullBackOff", "").message,
        "Error: ImagePullBackOff"
    );
    assert_eq!(
        start_failed("CreateContainerConfigError", r#"configmap "cfg" not found"#).message,
        r#"Error: configmap "cfg" not found"#
    );
}

#[test]
fn container_events_are_worded_as_the_kubelet_words_them() {
    assert_eq!(
        text(&created("app")),
        ("Normal", "Created", "Created container: app")
    );
    assert_eq!(
        text(&started("app")),
        ("Normal", "Started", "Started container app")
    );
    assert_eq!(
        text(&stopping("app")),
        ("Normal", "Killing", "Stopping container app")
    );
    assert_eq!(
        probe_killing("app", ProbeKind::Liveness, true).message,
        "Container app failed liveness probe, will be restarted"
    );
    assert_eq!(
        probe_killing("app", ProbeKind::Startup, false).message,
        "Container app failed startup probe"
    );
    assert_eq!(
        text(&back_off("app", &PodRef::of(&pod()))),
        (
            "Warning",
            "BackOff",
            "Back-off restarting failed container app in pod web-1_shop(u-1)"
        )
    );
    assert_eq!(
        text(&unhealthy(
            ProbeKind::Readiness,
            "HTTP probe failed with statuscode: 500"
        )),
        (
            "Warning",
            "Unhealthy",
            "Readiness probe failed: HTTP probe failed with statuscode: 500"
        )
    );
    assert_eq!(
        unhealthy(ProbeKind::Liveness, "x").message,
        "Liveness probe failed: x"
    );
    assert_eq!(
        unhealthy(ProbeKind::Startup, "x").message,
        "Startup probe failed: x"
    );
}

#[test]
fn events_are_addressed_to_the_pod_and_the_container_field() {
    let pod = pod();
    assert_eq!(field_path(&pod, "app"), "spec.containers{app}");
    assert_eq!(field_path(&pod, "migrate"), "spec.initContainers{migrate}");
    let event = started("app").to_pod(&PodRef::of(&pod), &field_path(&pod, "app"));
    assert_eq!(
        (
            event.namespace.as_str(),
            event.pod_name.as_str(),
            event.pod_uid.as_str()
        ),
        ("shop", "web-1", "u-1")
    );
    assert_eq!(
        (event.r#type.as_str(), event.reason.as_str()),
        ("Normal", "Started")
    );
    assert_eq!(event.field_path, "spec.containers{app}");
    // A pod-level event has no field path.
    let deadline = deadline_exceeded().to_pod(&PodRef::of(&pod), "");
    assert_eq!(deadline.field_path, "");
    assert_eq!(deadline.reason, "DeadlineExceeded");
}

#[test]
fn durations_print_as_go_prints_them_to_the_millisecond() {
    let ms = Duration::from_millis;
    assert_eq!(go_duration(Duration::ZERO), "0s");
    assert_eq!(go_duration(Duration::from_micros(900)), "0s");
    assert_eq!(go_duration(ms(177)), "177ms");
    assert_eq!(go_duration(ms(1000)), "1s");
    assert_eq!(go_duration(ms(1500)), "1.5s");
    assert_eq!(go_duration(ms(8916)), "8.916s");
    assert_eq!(go_duration(ms(10_020)), "10.02s");
    assert_eq!(go_duration(ms(300_000)), "5m0s");
    assert_eq!(go_duration(ms(62_345)), "1m2.345s");
    assert_eq!(go_duration(ms(3_723_004)), "1h2m3.004s");
}

#[test]
fn a_condition_seen_every_pass_is_announced_once_per_occurrence() {
    // The sync loop sees a container in back-off on every pass; each back-off period (keyed
    // by its end) is announced once.
    let mut announced = Announced::default();
    let t0 = Instant::now();
    let first_period = t0 + Duration::from_secs(10);
    let passes: Vec<bool> = (0..5).map(|_| announced.first(first_period)).collect();
    assert_eq!(passes, [true, false, false, false, false]);
    let second_period = t0 + Duration::from_secs(40);
    assert!(announced.first(second_period));
    assert!(!announced.first(second_period));
}
