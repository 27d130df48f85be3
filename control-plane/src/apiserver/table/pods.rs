//! The pod printer (`printPod`): READY counts, the STATUS reason (init progress, waiting and
//! terminated reasons, `Terminating`), RESTARTS with the time of the last restart.

use serde_json::{json, Value};

use super::format::{
    age, at, bool_at, int_at, items_at, name, object_at, since, str_at, timestamp, Nanos,
};
use super::{column, wide_column, Context, Printer, AGE, NAME};

/// `status.reason` the node lifecycle controller sets on pods of an unreachable node.
const NODE_LOST: &str = "NodeLost";

pub(super) static POD: Printer = Printer {
    columns: &[
        NAME,
        column(
            "Ready",
            "string",
            "The aggregate readiness state of this pod for accepting traffic.",
        ),
        column(
            "Status",
            "string",
            "The aggregate status of the containers in this pod.",
        ),
        column(
            "Restarts",
            "string",
            "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.",
        ),
        AGE,
        wide_column("IP", "string", "podIP address allocated to the pod."),
        wide_column(
            "Node",
            "string",
            "NodeName indicates in which node this pod is scheduled.",
        ),
        wide_column(
            "Nominated Node",
            "string",
            "nominatedNodeName is set only when this pod preempts other pods on the node, but it cannot be scheduled right away as preemption victims receive their graceful termination periods.",
        ),
        wide_column(
            "Readiness Gates",
            "string",
            "If specified, all readiness gates will be evaluated for pod readiness.",
        ),
    ],
    cells,
    conditions,
};

/// Succeeded and failed pods carry a `Completed` row condition, as in the Go printer.
fn conditions(pod: &Value) -> Option<Value> {
    let (reason, message) = match str_at(pod, &["status", "phase"]) {
        "Succeeded" => ("Succeeded", "The pod has completed successfully."),
        "Failed" => ("Failed", "The pod failed."),
        _ => return None,
    };
    Some(json!([{"type": "Completed", "status": "True", "reason": reason, "message": message}]))
}

/// Restart counts and the latest restart time, where `None` is Go's zero time.
#[derive(Default)]
struct Restarts {
    count: i64,
    last: Option<Nanos>,
}

impl Restarts {
    fn add(&mut self, container_status: &Value) {
        self.count = self
            .count
            .saturating_add(int_at(container_status, &["restartCount"]));
        if object_at(container_status, &["lastState", "terminated"]).is_some() {
            let finished = timestamp(at(
                container_status,
                &["lastState", "terminated", "finishedAt"],
            ));
            self.last = self.last.max(finished);
        }
    }
}

fn cells(pod: &Value, context: &Context) -> Vec<Value> {
    let phase = str_at(pod, &["status", "phase"]);
    let status_reason = str_at(pod, &["status", "reason"]);
    let mut reason = if status_reason.is_empty() {
        phase.to_string()
    } else {
        status_reason.to_string()
    };
    let conditions = items_at(pod, &["status", "conditions"]);
    if conditions.iter().any(|c| {
        str_at(c, &["type"]) == "PodScheduled" && str_at(c, &["reason"]) == "SchedulingGated"
    }) {
        reason = "SchedulingGated".to_string();
    }

    let init_specs = items_at(pod, &["spec", "initContainers"]);
    // Sidecars (init containers with restartPolicy Always) count as containers of the pod.
    let sidecars = init_specs.iter().filter(|c| is_sidecar(c)).count();
    let total = items_at(pod, &["spec", "containers"]).len() + sidecars;
    let mut ready = 0usize;
    let mut restarts = Restarts::default();
    let mut sidecar_restarts = Restarts::default();

    let mut initializing = false;
    for (index, status) in items_at(pod, &["status", "initContainerStatuses"])
        .iter()
        .enumerate()
    {
        restarts.add(status);
        let container_name = str_at(status, &["name"]);
        // A status whose name matches no spec is not a sidecar; the last spec of a name wins,
        // as in the Go printer's map.
        let sidecar = init_specs
            .iter()
            .rev()
            .find(|spec| str_at(spec, &["name"]) == container_name)
            .is_some_and(is_sidecar);
        if sidecar {
            sidecar_restarts.add(status);
        }
        let terminated = object_at(status, &["state", "terminated"]);
        let waiting_reason = str_at(status, &["state", "waiting", "reason"]);
        if terminated.is_some_and(|t| int_at(t, &["exitCode"]) == 0) {
            continue;
        }
        if sidecar && bool_at(status, &["started"]) {
            if bool_at(status, &["ready"]) {
                ready += 1;
            }
            continue;
        }
        reason = if let Some(terminated) = terminated {
            terminated_reason(terminated, "Init:")
        } else if !waiting_reason.is_empty() && waiting_reason != "PodInitializing" {
            format!("Init:{waiting_reason}")
        } else {
            format!("Init:{index}/{}", init_specs.len())
        };
        initializing = true;
        break;
    }

    if !initializing || condition_true(conditions, "Initialized") {
        restarts = sidecar_restarts;
        let mut has_running = false;
        // Reverse order so that the first container's state decides the reason.
        for status in items_at(pod, &["status", "containerStatuses"]).iter().rev() {
            restarts.add(status);
            let waiting_reason = str_at(status, &["state", "waiting", "reason"]);
            if !waiting_reason.is_empty() {
                reason = waiting_reason.to_string();
            } else if let Some(terminated) = object_at(status, &["state", "terminated"]) {
                reason = terminated_reason(terminated, "");
            } else if bool_at(status, &["ready"])
                && object_at(status, &["state", "running"]).is_some()
            {
                has_running = true;
                ready += 1;
            }
        }
        if reason == "Completed" && has_running {
            let pod_ready = conditions
                .iter()
                .any(|c| str_at(c, &["type"]) == "Ready" && str_at(c, &["status"]) == "True");
            reason = if pod_ready {
                "Running".to_string()
            } else {
                "NotReady".to_string()
            };
        }
    }

    let deleting = at(pod, &["metadata", "deletionTimestamp"]).is_some_and(|t| !t.is_null());
    if deleting && status_reason == NODE_LOST {
        reason = "Unknown".to_string();
    } else if deleting && phase != "Succeeded" && phase != "Failed" {
        reason = "Terminating".to_string();
    }

    let restarts_cell = match restarts.last {
        Some(last) if restarts.count != 0 => {
            format!(
                "{} ({} ago)",
                restarts.count,
                since(Some(last), context.now)
            )
        }
        _ => restarts.count.to_string(),
    };

    vec![
        name(pod),
        Value::from(format!("{ready}/{total}")),
        Value::from(reason),
        Value::from(restarts_cell),
        age(pod, context),
        Value::from(or_none(pod_ip(pod))),
        Value::from(or_none(str_at(pod, &["spec", "nodeName"]))),
        Value::from(or_none(str_at(pod, &["status", "nominatedNodeName"]))),
        Value::from(readiness_gates(pod, conditions)),
    ]
}

fn is_sidecar(init_container: &Value) -> bool {
    str_at(init_container, &["restartPolicy"]) == "Always"
}

/// The reason of a terminated container: its `reason`, else `Signal:N` or `ExitCode:N`.
fn terminated_reason(terminated: &Value, prefix: &str) -> String {
    let reason = str_at(terminated, &["reason"]);
    if !reason.is_empty() {
        return format!("{prefix}{reason}");
    }
    let signal = int_at(terminated, &["signal"]);
    if signal != 0 {
        format!("{prefix}Signal:{signal}")
    } else {
        format!("{prefix}ExitCode:{}", int_at(terminated, &["exitCode"]))
    }
}

/// Whether the first condition of `kind` has status True (`isPodInitializedConditionTrue`, and
/// the readiness-gate count).
fn condition_true(conditions: &[Value], kind: &str) -> bool {
    conditions
        .iter()
        .find(|c| str_at(c, &["type"]) == kind)
        .is_some_and(|c| str_at(c, &["status"]) == "True")
}

/// The first pod IP; `podIP` stands in when `podIPs` is empty, as v1 conversion does.
fn pod_ip(pod: &Value) -> &str {
    match items_at(pod, &["status", "podIPs"]).first() {
        Some(first) => str_at(first, &["ip"]),
        None => str_at(pod, &["status", "podIP"]),
    }
}

fn or_none(value: &str) -> &str {
    if value.is_empty() {
        "<none>"
    } else {
        value
    }
}

/// `true/total` over `spec.readinessGates`, or `<none>` without gates.
fn readiness_gates(pod: &Value, conditions: &[Value]) -> String {
    let gates = items_at(pod, &["spec", "readinessGates"]);
    if gates.is_empty() {
        return "<none>".to_string();
    }
    let met = gates
        .iter()
        .filter(|gate| condition_true(conditions, str_at(gate, &["conditionType"])))
        .count();
    format!("{met}/{}", gates.len())
}

#[cfg(test)]
mod tests {
    use super::super::tests::{ago, cell_range, wide_row};
    use serde_json::{json, Value};

    fn pod(spec: Value, status: Value) -> Value {
        json!({
            "metadata": {"name": "web", "namespace": "default", "creationTimestamp": ago(600)},
            "spec": spec,
            "status": status,
        })
    }

    fn running(name: &str, ready: bool, restarts: i64) -> Value {
        json!({"name": name, "ready": ready, "restartCount": restarts,
               "state": {"running": {"startedAt": ago(60)}}})
    }

    #[test]
    fn running_pod() {
        let row = wide_row(
            "Pod",
            pod(
                json!({"containers": [{"name": "a"}, {"name": "b"}], "nodeName": "n1"}),
                json!({"phase": "Running", "podIP": "10.0.0.5",
                       "conditions": [{"type": "Ready", "status": "True"}],
                       "containerStatuses": [running("a", true, 0), running("b", true, 0)]}),
            ),
        );
        assert_eq!(
            row["cells"],
            json!(["web", "2/2", "Running", "0", "10m", "10.0.0.5", "n1", "<none>", "<none>"])
        );
        assert!(row.get("conditions").is_none());
    }

    #[test]
    fn crash_looping_pod_shows_reason_and_last_restart() {
        let status = json!({
            "phase": "Running",
            "podIPs": [{"ip": "10.0.0.7"}, {"ip": "fd00::7"}],
            "containerStatuses": [{
                "name": "a", "ready": false, "restartCount": 5,
                "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                "lastState": {"terminated": {"exitCode": 1, "reason": "Error",
                                             "finishedAt": ago(300)}},
            }],
        });
        let row = wide_row("Pod", pod(json!({"containers": [{"name": "a"}]}), status));
        assert_eq!(
            row["cells"],
            json!([
                "web",
                "0/1",
                "CrashLoopBackOff",
                "5 (5m ago)",
                "10m",
                "10.0.0.7",
                "<none>",
                "<none>",
                "<none>"
            ])
        );
    }

    #[test]
    fn deleting_pod_is_terminating_unless_finished_or_node_lost() {
        let mut terminating = pod(
            json!({"containers": [{"name": "a"}]}),
            json!({"phase": "Running", "containerStatuses": [running("a", true, 0)]}),
        );
        terminating["metadata"]["deletionTimestamp"] = json!(ago(5));
        assert_eq!(
            wide_row("Pod", terminating.clone())["cells"][2],
            "Terminating"
        );

        let mut lost = terminating.clone();
        lost["status"]["reason"] = json!("NodeLost");
        assert_eq!(wide_row("Pod", lost)["cells"][2], "Unknown");

        terminating["status"] = json!({"phase": "Succeeded", "containerStatuses": [{
            "name": "a", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]});
        let row = wide_row("Pod", terminating);
        assert_eq!(row["cells"][2], "Completed");
        assert_eq!(row["conditions"][0]["type"], "Completed");
        assert_eq!(row["conditions"][0]["reason"], "Succeeded");
    }

    #[test]
    fn init_containers_show_progress_and_failures() {
        let spec = json!({"initContainers": [{"name": "i1"}, {"name": "i2"}],
                          "containers": [{"name": "a"}]});
        let waiting_main =
            json!([{"name": "a", "state": {"waiting": {"reason": "PodInitializing"}}}]);
        let status = |init: Value| {
            json!({"phase": "Pending", "initContainerStatuses": init,
                   "containerStatuses": waiting_main})
        };
        let done = json!({"name": "i1", "state": {"terminated": {"exitCode": 0}}});

        let first_running = status(json!([
            {"name": "i1", "state": {"running": {}}},
            {"name": "i2", "state": {"waiting": {"reason": "PodInitializing"}}},
        ]));
        assert_eq!(
            cell_range(&wide_row("Pod", pod(spec.clone(), first_running)), 1..4),
            json!(["0/1", "Init:0/2", "0"])
        );

        let second_running = status(json!([done, {"name": "i2", "state": {"running": {}}}]));
        assert_eq!(
            wide_row("Pod", pod(spec.clone(), second_running))["cells"][2],
            "Init:1/2"
        );

        let crashing = status(json!([done, {"name": "i2", "restartCount": 3,
            "state": {"waiting": {"reason": "CrashLoopBackOff"}},
            "lastState": {"terminated": {"exitCode": 2, "finishedAt": ago(30)}}}]));
        assert_eq!(
            cell_range(&wide_row("Pod", pod(spec.clone(), crashing)), 2..4),
            json!(["Init:CrashLoopBackOff", "3 (30s ago)"])
        );

        let killed = status(json!([{"name": "i1",
            "state": {"terminated": {"exitCode": 137, "signal": 9}}}]));
        assert_eq!(
            wide_row("Pod", pod(spec.clone(), killed))["cells"][2],
            "Init:Signal:9"
        );

        let failed = status(json!([{"name": "i1",
            "state": {"terminated": {"exitCode": 3}}}]));
        assert_eq!(
            wide_row("Pod", pod(spec, failed))["cells"][2],
            "Init:ExitCode:3"
        );
    }

    #[test]
    fn started_sidecars_count_as_containers() {
        let spec = json!({
            "initContainers": [{"name": "proxy", "restartPolicy": "Always"}],
            "containers": [{"name": "a"}],
        });
        let status = json!({
            "phase": "Running",
            "conditions": [{"type": "Initialized", "status": "True"}],
            "initContainerStatuses": [{"name": "proxy", "started": true, "ready": true,
                "restartCount": 1, "state": {"running": {}},
                "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(120)}}}],
            "containerStatuses": [running("a", true, 0)],
        });
        assert_eq!(
            cell_range(&wide_row("Pod", pod(spec, status)), 1..4),
            json!(["2/2", "Running", "1 (2m ago)"])
        );
    }

    #[test]
    fn completed_container_next_to_running_one() {
        let status = |ready_condition: &str| {
            json!({"phase": "Running",
                   "conditions": [{"type": "Ready", "status": ready_condition}],
                   "containerStatuses": [
                       {"name": "a", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
                       running("b", true, 0)]})
        };
        let spec = json!({"containers": [{"name": "a"}, {"name": "b"}]});
        assert_eq!(
            cell_range(&wide_row("Pod", pod(spec.clone(), status("True"))), 1..3),
            json!(["1/2", "Running"])
        );
        assert_eq!(
            wide_row("Pod", pod(spec, status("False")))["cells"][2],
            "NotReady"
        );
    }

    #[test]
    fn scheduling_gates_readiness_gates_and_failed_pods() {
        let gated = pod(
            json!({"containers": [{"name": "a"}], "schedulingGates": [{"name": "g"}]}),
            json!({"phase": "Pending", "conditions": [
                {"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]}),
        );
        assert_eq!(wide_row("Pod", gated)["cells"][2], "SchedulingGated");

        let gates = pod(
            json!({"containers": [], "readinessGates": [
                {"conditionType": "example.com/lb"}, {"conditionType": "example.com/dns"}]}),
            json!({"phase": "Failed", "reason": "Evicted", "nominatedNodeName": "n2",
                   "conditions": [{"type": "example.com/lb", "status": "True"}]}),
        );
        let row = wide_row("Pod", gates);
        assert_eq!(row["cells"][2], "Evicted");
        assert_eq!(cell_range(&row, 7..9), json!(["n2", "1/2"]));
        assert_eq!(row["conditions"][0]["message"], "The pod failed.");
    }
}
