//! The Pod status the kubelet would report, computed from the agent's container records:
//! phase (`getPhase`), conditions (`status/generate.go`), container statuses, addresses, start
//! time and QoS class. Pure: the clock comes in as `now`.

use k8s_openapi::api::core::v1::{
    Container, ContainerStatus, HostIP, Pod, PodCondition, PodIP, PodStatus,
};
use time::OffsetDateTime;

use super::container::{api_time, ContainerRecord};
use super::qos::qos_class;

/// Condition types the kubelet owns; conditions of other types (readiness gates, disruption
/// targets) are set by others and carried over.
const KUBELET_CONDITIONS: [&str; 5] = [
    "PodReadyToStartContainers",
    "Initialized",
    "Ready",
    "ContainersReady",
    "PodScheduled",
];

/// The Pod's status as the kubelet reports it. `previous` supplies what must not change from
/// one report to the next: condition transition times when a condition's status is the same,
/// the start time, the QoS class, a terminal phase, and conditions owned by others.
pub fn pod_status(
    pod: &Pod,
    init: &[ContainerRecord],
    containers: &[ContainerRecord],
    previous: Option<&PodStatus>,
    pod_ip: &str,
    host_ip: &str,
    now: OffsetDateTime,
) -> PodStatus {
    let spec = pod.spec.clone().unwrap_or_default();
    let init_specs = spec.init_containers.as_deref().unwrap_or_default();
    let default_reason = if init_specs.is_empty() {
        "ContainerCreating"
    } else {
        "PodInitializing"
    };
    let init_statuses = statuses(init_specs, init, default_reason);
    let container_statuses = statuses(&spec.containers, containers, default_reason);
    let all: Vec<ContainerStatus> = init_statuses
        .iter()
        .chain(&container_statuses)
        .cloned()
        .collect();

    let restart_policy = spec.restart_policy.as_deref().unwrap_or("Always");
    let mut phase = phase(init_specs, &spec.containers, &all, restart_policy);
    // A terminal phase is final: the kubelet never moves a Pod out of Succeeded or Failed.
    if let Some(terminal) = previous
        .and_then(|status| status.phase.as_deref())
        .filter(|phase| matches!(*phase, "Succeeded" | "Failed"))
    {
        phase = terminal;
    }

    let previous_conditions = previous
        .and_then(|status| status.conditions.clone())
        .unwrap_or_default();
    let mut conditions: Vec<PodCondition> = previous_conditions
        .iter()
        .filter(|c| !KUBELET_CONDITIONS.contains(&c.type_.as_str()))
        .cloned()
        .collect();
    let ready_to_start = if pod_ip.is_empty() { "False" } else { "True" };
    conditions.push(condition(
        "PodReadyToStartContainers",
        ready_to_start,
        None,
        None,
    ));
    conditions.push(initialized(init_specs, &spec.containers, &all, phase));
    let containers_ready = containers_ready(init_specs, &spec.containers, &all, phase);
    conditions.push(ready(pod, &containers_ready, &previous_conditions));
    conditions.push(containers_ready);
    conditions.push(
        previous_conditions
            .iter()
            .find(|c| c.type_ == "PodScheduled")
            .cloned()
            .unwrap_or_else(|| condition("PodScheduled", "True", None, None)),
    );
    for condition in &mut conditions {
        let kept = previous_conditions
            .iter()
            .find(|old| old.type_ == condition.type_ && old.status == condition.status)
            .and_then(|old| old.last_transition_time.clone());
        condition.last_transition_time = kept
            .or_else(|| condition.last_transition_time.clone())
            .or_else(|| Some(api_time(now)));
    }

    let ip_list = |ip: &str| (!ip.is_empty()).then(|| ip.to_owned());
    PodStatus {
        phase: Some(phase.to_owned()),
        conditions: Some(conditions),
        init_container_statuses: (!init_specs.is_empty()).then_some(init_statuses),
        container_statuses: Some(container_statuses),
        pod_ip: ip_list(pod_ip),
        pod_ips: ip_list(pod_ip).map(|ip| vec![PodIP { ip }]),
        host_ip: ip_list(host_ip),
        host_ips: ip_list(host_ip).map(|ip| vec![HostIP { ip }]),
        start_time: previous
            .and_then(|status| status.start_time.clone())
            .or_else(|| Some(api_time(now))),
        qos_class: Some(
            previous
                .and_then(|status| status.qos_class.clone())
                .unwrap_or_else(|| qos_class(pod).to_owned()),
        ),
        ..Default::default()
    }
}

/// Statuses in spec order; a container without a record is waiting to be created.
fn statuses(
    specs: &[Container],
    records: &[ContainerRecord],
    default_reason: &str,
) -> Vec<ContainerStatus> {
    specs
        .iter()
        .map(|spec| match records.iter().find(|r| r.name == spec.name) {
            Some(record) => record.to_api(),
            None => ContainerRecord {
                name: spec.name.clone(),
                image: spec.image.clone().unwrap_or_default(),
                image_id: String::new(),
                state: super::ContainerState::Waiting {
                    reason: default_reason.to_owned(),
                    message: None,
                },
                last_state: None,
                restart_count: 0,
                ready: false,
                started: Some(false),
            }
            .to_api(),
        })
        .collect()
}

fn is_sidecar(container: &Container) -> bool {
    container.restart_policy.as_deref() == Some("Always")
}

fn find<'a>(statuses: &'a [ContainerStatus], name: &str) -> Option<&'a ContainerStatus> {
    statuses.iter().find(|status| status.name == name)
}

fn running(status: &ContainerStatus) -> bool {
    status.state.as_ref().is_some_and(|s| s.running.is_some())
}

fn terminated_code(status: &ContainerStatus) -> Option<i32> {
    status
        .state
        .as_ref()?
        .terminated
        .as_ref()
        .map(|t| t.exit_code)
}

fn waiting(status: &ContainerStatus) -> bool {
    status.state.as_ref().is_some_and(|s| s.waiting.is_some())
}

fn last_terminated_code(status: &ContainerStatus) -> Option<i32> {
    status
        .last_state
        .as_ref()?
        .terminated
        .as_ref()
        .map(|t| t.exit_code)
}

fn started(status: &ContainerStatus) -> bool {
    status.started == Some(true)
}

/// Whether any regular container has run (kubelet's `HasAnyRegularContainerStarted`).
fn any_regular_started(containers: &[Container], statuses: &[ContainerStatus]) -> bool {
    containers.iter().any(|container| {
        find(statuses, &container.name).is_some_and(|status| {
            running(status)
                || terminated_code(status).is_some()
                || (waiting(status) && last_terminated_code(status).is_some())
        })
    })
}

/// kubelet's `getPhase` for a Pod that is not being terminated.
fn phase<'a>(
    init: &[Container],
    containers: &[Container],
    statuses: &[ContainerStatus],
    restart_policy: &str,
) -> &'a str {
    let (mut pending_init, mut failed_init) = (0, 0);
    let (mut unknown, mut running_n, mut waiting_n, mut stopped, mut succeeded) = (0, 0, 0, 0, 0);
    for container in init {
        let Some(status) = find(statuses, &container.name) else {
            if is_sidecar(container) {
                unknown += 1;
            } else {
                pending_init += 1;
            }
            continue;
        };
        if is_sidecar(container) {
            if running(status) {
                pending_init += usize::from(!started(status));
                running_n += 1;
            } else if waiting(status) && last_terminated_code(status).is_none() {
                pending_init += 1;
                waiting_n += 1;
            } else if !waiting(status) && terminated_code(status).is_none() {
                pending_init += 1;
                unknown += 1;
            }
        } else if running(status) {
            pending_init += 1;
        } else if let Some(code) = terminated_code(status) {
            failed_init += usize::from(code != 0);
        } else if waiting(status) {
            match last_terminated_code(status) {
                Some(code) => failed_init += usize::from(code != 0),
                None => pending_init += 1,
            }
        } else {
            pending_init += 1;
        }
    }
    for container in containers {
        let Some(status) = find(statuses, &container.name) else {
            unknown += 1;
            continue;
        };
        if running(status) {
            running_n += 1;
        } else if let Some(code) = terminated_code(status) {
            stopped += 1;
            succeeded += usize::from(code == 0);
        } else if waiting(status) {
            match last_terminated_code(status) {
                Some(_) => stopped += 1,
                None => waiting_n += 1,
            }
        } else {
            unknown += 1;
        }
    }
    if failed_init > 0 && restart_policy == "Never" {
        return "Failed";
    }
    if (pending_init > 0 && !any_regular_started(containers, statuses)) || waiting_n > 0 {
        return "Pending";
    }
    if running_n > 0 && unknown == 0 {
        return "Running";
    }
    if running_n == 0 && stopped > 0 && unknown == 0 {
        return match restart_policy {
            "Always" => "Running",
            _ if stopped == succeeded => "Succeeded",
            "Never" => "Failed",
            _ => "Running",
        };
    }
    "Pending"
}

fn condition(
    type_: &str,
    status: &str,
    reason: Option<&str>,
    message: Option<String>,
) -> PodCondition {
    PodCondition {
        type_: type_.to_owned(),
        status: status.to_owned(),
        reason: reason.map(str::to_owned),
        message,
        ..Default::default()
    }
}

/// Go's `%s` of a string slice, which is how the kubelet lists container names.
fn go_list(names: &[&str]) -> String {
    format!("[{}]", names.join(" "))
}

fn initialized(
    init: &[Container],
    containers: &[Container],
    statuses: &[ContainerStatus],
    phase: &str,
) -> PodCondition {
    if init.is_empty() {
        return condition("Initialized", "True", None, None);
    }
    let (mut unknown, mut incomplete) = (Vec::new(), Vec::new());
    for container in init {
        let name = container.name.as_str();
        match find(statuses, name) {
            None => unknown.push(name),
            Some(status) if is_sidecar(container) => {
                if !started(status) {
                    incomplete.push(name);
                }
            }
            Some(status) if terminated_code(status) != Some(0) => incomplete.push(name),
            Some(_) => {}
        }
    }
    if phase == "Succeeded" && unknown.is_empty() {
        return condition("Initialized", "True", Some("PodCompleted"), None);
    }
    if any_regular_started(containers, statuses) {
        return condition("Initialized", "True", None, None);
    }
    let mut messages = Vec::new();
    if !unknown.is_empty() {
        messages.push(format!(
            "containers with unknown status: {}",
            go_list(&unknown)
        ));
    }
    if !incomplete.is_empty() {
        messages.push(format!(
            "containers with incomplete status: {}",
            go_list(&incomplete)
        ));
    }
    if messages.is_empty() {
        return condition("Initialized", "True", None, None);
    }
    let message = Some(messages.join(", "));
    condition(
        "Initialized",
        "False",
        Some("ContainersNotInitialized"),
        message,
    )
}

fn containers_ready(
    init: &[Container],
    containers: &[Container],
    statuses: &[ContainerStatus],
    phase: &str,
) -> PodCondition {
    let (mut unknown, mut unready) = (Vec::new(), Vec::new());
    let relevant = init.iter().filter(|c| is_sidecar(c)).chain(containers);
    for container in relevant {
        match find(statuses, &container.name) {
            Some(status) if !status.ready => unready.push(container.name.as_str()),
            Some(_) => {}
            None => unknown.push(container.name.as_str()),
        }
    }
    if phase == "Succeeded" && unknown.is_empty() {
        return condition("ContainersReady", "False", Some("PodCompleted"), None);
    }
    if phase == "Failed" {
        return condition("ContainersReady", "False", Some("PodFailed"), None);
    }
    let mut messages = Vec::new();
    if !unknown.is_empty() {
        messages.push(format!(
            "containers with unknown status: {}",
            go_list(&unknown)
        ));
    }
    if !unready.is_empty() {
        messages.push(format!(
            "containers with unready status: {}",
            go_list(&unready)
        ));
    }
    if messages.is_empty() {
        return condition("ContainersReady", "True", None, None);
    }
    let message = Some(messages.join(", "));
    condition(
        "ContainersReady",
        "False",
        Some("ContainersNotReady"),
        message,
    )
}

/// Ready follows ContainersReady, then every readiness gate's condition must be True.
fn ready(pod: &Pod, containers_ready: &PodCondition, previous: &[PodCondition]) -> PodCondition {
    if containers_ready.status != "True" {
        return PodCondition {
            type_: "Ready".to_owned(),
            ..containers_ready.clone()
        };
    }
    let gates = pod
        .spec
        .as_ref()
        .and_then(|spec| spec.readiness_gates.as_ref());
    let mut messages = Vec::new();
    for gate in gates.into_iter().flatten() {
        match previous.iter().find(|c| c.type_ == gate.condition_type) {
            None => messages.push(format!(
                "corresponding condition of pod readiness gate {:?} does not exist.",
                gate.condition_type
            )),
            Some(c) if c.status != "True" => messages.push(format!(
                "the status of pod readiness gate {:?} is not \"True\", but {}",
                gate.condition_type, c.status
            )),
            Some(_) => {}
        }
    }
    if messages.is_empty() {
        return condition("Ready", "True", None, None);
    }
    let message = Some(messages.join(", "));
    condition("Ready", "False", Some("ReadinessGatesNotReady"), message)
}

#[cfg(test)]
#[path = "status_tests.rs"]
mod tests;
