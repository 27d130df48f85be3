use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, PodStatus};
use serde_json::json;
use time::OffsetDateTime;

use super::*;
use crate::pod::container::{ContainerRecord, ContainerState};

fn pod(policy: &str, init: serde_json::Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": "web", "namespace": "default", "uid": "u1"},
        "spec": {
            "restartPolicy": policy,
            "initContainers": init,
            "containers": [{"name": "app", "image": "reg/app:1"}, {"name": "side", "image": "reg/side:1"}]
        }
    }))
    .unwrap_or_default()
}

fn t(seconds: u64) -> OffsetDateTime {
    OffsetDateTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + seconds)
}

fn record(name: &str, state: ContainerState, ready: bool) -> ContainerRecord {
    ContainerRecord {
        name: name.into(),
        image: format!("reg/{name}:1"),
        image_id: format!("reg/{name}@sha256:00"),
        state,
        last_state: None,
        restart_count: 0,
        ready,
        started: Some(true),
    }
}

fn running() -> ContainerState {
    ContainerState::Running { started_at: t(0) }
}

fn exited(code: i32) -> ContainerState {
    ContainerState::Terminated {
        exit_code: code,
        reason: if code == 0 { "Completed" } else { "Error" }.into(),
        message: None,
        started_at: t(0),
        finished_at: t(5),
    }
}

fn crash_looping(code: i32) -> ContainerRecord {
    ContainerRecord {
        last_state: Some(exited(code)),
        restart_count: 3,
        ..record(
            "app",
            ContainerState::Waiting {
                reason: "CrashLoopBackOff".into(),
                message: None,
            },
            false,
        )
    }
}

fn status(pod: &Pod, init: &[ContainerRecord], containers: &[ContainerRecord]) -> PodStatus {
    pod_status(
        pod,
        init,
        containers,
        None,
        "10.42.0.9",
        "192.168.1.5",
        t(10),
    )
}

fn phase(pod: &Pod, init: &[ContainerRecord], containers: &[ContainerRecord]) -> String {
    status(pod, init, containers).phase.unwrap_or_default()
}

fn condition(status: &PodStatus, type_: &str) -> (String, Option<String>, Option<String>) {
    let found = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == type_)
        .cloned()
        .unwrap_or_default();
    (found.status, found.reason, found.message)
}

#[test]
fn phases_follow_the_restart_policy() {
    let always = pod("Always", json!([]));
    let on_failure = pod("OnFailure", json!([]));
    let never = pod("Never", json!([]));
    assert_eq!(phase(&always, &[], &[]), "Pending");
    let both = |a, b| [record("app", a, false), record("side", b, false)];
    assert_eq!(phase(&always, &[], &both(running(), running())), "Running");
    assert_eq!(phase(&never, &[], &both(exited(0), running())), "Running");
    assert_eq!(phase(&never, &[], &both(exited(0), exited(0))), "Succeeded");
    assert_eq!(phase(&never, &[], &both(exited(0), exited(1))), "Failed");
    assert_eq!(
        phase(&on_failure, &[], &both(exited(0), exited(0))),
        "Succeeded"
    );
    assert_eq!(
        phase(&on_failure, &[], &both(exited(0), exited(1))),
        "Running"
    );
    assert_eq!(phase(&always, &[], &both(exited(0), exited(0))), "Running");
    let looping = [crash_looping(1), record("side", running(), true)];
    assert_eq!(phase(&always, &[], &looping), "Running");
}

#[test]
fn init_containers_hold_the_pod_pending_and_fail_it_under_never() {
    let init = json!([{"name": "setup", "image": "reg/setup:1"}]);
    let never = pod("Never", init.clone());
    let always = pod("Always", init);
    let setup = |state| [record("setup", state, false)];
    assert_eq!(phase(&always, &setup(running()), &[]), "Pending");
    assert_eq!(phase(&never, &setup(exited(1)), &[]), "Failed");
    assert_eq!(phase(&always, &setup(exited(0)), &[]), "Pending");
    let s = status(&always, &setup(running()), &[]);
    assert_eq!(
        condition(&s, "Initialized"),
        (
            "False".into(),
            Some("ContainersNotInitialized".into()),
            Some("containers with incomplete status: [setup]".into())
        )
    );
    // Regular containers wait with PodInitializing while init containers run.
    let waiting = s.container_statuses.unwrap_or_default();
    let reason = waiting[0]
        .state
        .as_ref()
        .and_then(|s| s.waiting.as_ref())
        .and_then(|w| w.reason.clone());
    assert_eq!(reason.as_deref(), Some("PodInitializing"));
    assert_eq!(s.init_container_statuses.map(|s| s.len()), Some(1));
    let done = status(
        &always,
        &setup(exited(0)),
        &[record("app", running(), true)],
    );
    assert_eq!(condition(&done, "Initialized").0, "True");
}

#[test]
fn readiness_conditions_name_the_unready_containers() {
    let pod = pod("Always", json!([]));
    let s = status(
        &pod,
        &[],
        &[
            record("app", running(), true),
            record("side", running(), false),
        ],
    );
    let expected = (
        "False".to_owned(),
        Some("ContainersNotReady".to_owned()),
        Some("containers with unready status: [side]".to_owned()),
    );
    assert_eq!(condition(&s, "ContainersReady"), expected);
    assert_eq!(condition(&s, "Ready"), expected);
    assert_eq!(condition(&s, "PodScheduled").0, "True");
    assert_eq!(condition(&s, "PodReadyToStartContainers").0, "True");
    let types: Vec<_> = s
        .conditions
        .iter()
        .flatten()
        .map(|c| c.type_.as_str())
        .collect();
    assert_eq!(
        types,
        [
            "PodReadyToStartContainers",
            "Initialized",
            "Ready",
            "ContainersReady",
            "PodScheduled"
        ]
    );
    let all = status(
        &pod,
        &[],
        &[
            record("app", running(), true),
            record("side", running(), true),
        ],
    );
    assert_eq!(condition(&all, "Ready"), ("True".into(), None, None));
    let done = status(
        &pod_never(),
        &[],
        &[
            record("app", exited(0), false),
            record("side", exited(0), false),
        ],
    );
    assert_eq!(condition(&done, "Ready").1.as_deref(), Some("PodCompleted"));
}

fn pod_never() -> Pod {
    pod("Never", json!([]))
}

#[test]
fn transition_times_and_start_time_are_kept_while_nothing_changes() {
    let pod = pod("Always", json!([]));
    let unready = [
        record("app", running(), false),
        record("side", running(), true),
    ];
    let first = pod_status(&pod, &[], &unready, None, "10.42.0.9", "192.168.1.5", t(10));
    let same = pod_status(
        &pod,
        &[],
        &unready,
        Some(&first),
        "10.42.0.9",
        "192.168.1.5",
        t(20),
    );
    assert_eq!(first.conditions, same.conditions);
    assert_eq!(first.start_time, same.start_time);
    let ready = [
        record("app", running(), true),
        record("side", running(), true),
    ];
    let later = pod_status(
        &pod,
        &[],
        &ready,
        Some(&same),
        "10.42.0.9",
        "192.168.1.5",
        t(30),
    );
    let time_of = |s: &PodStatus, type_: &str| {
        s.conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == type_)
            .and_then(|c| c.last_transition_time.clone())
    };
    assert_eq!(time_of(&later, "Ready"), Some(api_time(t(30))));
    assert_eq!(time_of(&later, "PodScheduled"), Some(api_time(t(10))));
    assert_eq!(later.start_time, Some(api_time(t(10))));
}

#[test]
fn a_terminal_phase_is_never_left() {
    let never = pod_never();
    let done = [
        record("app", exited(0), false),
        record("side", exited(0), false),
    ];
    let first = status(&never, &[], &done);
    assert_eq!(first.phase.as_deref(), Some("Succeeded"));
    let again = pod_status(&never, &[], &[], Some(&first), "10.42.0.9", "h", t(20));
    assert_eq!(again.phase.as_deref(), Some("Succeeded"));
}

#[test]
fn addresses_qos_and_statuses_are_reported() {
    let pod = pod("Always", json!([]));
    let s = status(
        &pod,
        &[],
        &[
            record("side", running(), true),
            record("app", running(), true),
        ],
    );
    assert_eq!(s.pod_ip.as_deref(), Some("10.42.0.9"));
    assert_eq!(
        s.pod_ips.map(|ips| ips[0].ip.clone()).as_deref(),
        Some("10.42.0.9")
    );
    assert_eq!(
        s.host_ips.map(|ips| ips[0].ip.clone()).as_deref(),
        Some("192.168.1.5")
    );
    assert_eq!(s.qos_class.as_deref(), Some("BestEffort"));
    let names: Vec<_> = s
        .container_statuses
        .iter()
        .flatten()
        .map(|c| c.name.clone())
        .collect();
    assert_eq!(names, ["app", "side"], "spec order");
    assert_eq!(s.init_container_statuses, None);
}

#[test]
fn readiness_gates_hold_ready_until_their_condition_is_true() {
    let mut pod = pod("Always", json!([]));
    if let Some(spec) = pod.spec.as_mut() {
        spec.readiness_gates =
            serde_json::from_value(json!([{"conditionType": "example.com/lb"}])).ok();
    }
    let ready = [
        record("app", running(), true),
        record("side", running(), true),
    ];
    let s = status(&pod, &[], &ready);
    assert_eq!(
        condition(&s, "Ready"),
        (
            "False".into(),
            Some("ReadinessGatesNotReady".into()),
            Some(
                r#"corresponding condition of pod readiness gate "example.com/lb" does not exist."#
                    .into()
            )
        )
    );
    let mut previous = s.clone();
    if let Some(conditions) = previous.conditions.as_mut() {
        conditions.push(
            serde_json::from_value(json!({"type": "example.com/lb", "status": "True"}))
                .unwrap_or_default(),
        );
    }
    let s = pod_status(&pod, &[], &ready, Some(&previous), "10.42.0.9", "h", t(20));
    assert_eq!(condition(&s, "Ready").0, "True");
    assert_eq!(condition(&s, "example.com/lb").0, "True", "carried over");
}

#[test]
fn sidecars_count_once_started() {
    let init = json!([{"name": "proxy", "image": "reg/proxy:1", "restartPolicy": "Always"}]);
    let pod = pod("Always", init);
    let mut proxy = record("proxy", running(), true);
    proxy.started = Some(false);
    assert_eq!(phase(&pod, &[proxy.clone()], &[]), "Pending");
    proxy.started = Some(true);
    let s = status(
        &pod,
        &[proxy.clone()],
        &[
            record("app", running(), true),
            record("side", running(), true),
        ],
    );
    assert_eq!(s.phase.as_deref(), Some("Running"));
    assert_eq!(condition(&s, "Initialized").0, "True");
    proxy.ready = false;
    let s = status(
        &pod,
        &[proxy],
        &[
            record("app", running(), true),
            record("side", running(), true),
        ],
    );
    assert_eq!(
        condition(&s, "ContainersReady").2.as_deref(),
        Some("containers with unready status: [proxy]")
    );
}
