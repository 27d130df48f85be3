//! Printers for workload controllers: deployments, replica sets, replication controllers, daemon
//! sets, stateful sets and jobs.

use serde_json::Value;

use super::format::{
    age, at, container_cells, format_label_selector, format_labels, go_duration, human_duration,
    int_at, items_at, label_selector, name, opt_int_at, str_at, timestamp,
};
use super::{column, wide_column, Context, Printer, AGE, CONTAINERS, IMAGES, NAME};

/// `spec.replicas`; v1 defaulting sets an absent value to 1.
fn desired_replicas(object: &Value) -> i64 {
    opt_int_at(object, &["spec", "replicas"]).unwrap_or(1)
}

/// The pod template's spec, where workload controllers keep their containers.
fn template_spec(object: &Value) -> Option<&Value> {
    at(object, &["spec", "template", "spec"])
}

pub(super) static DEPLOYMENT: Printer = Printer {
    columns: &[
        NAME,
        column("Ready", "string", "Number of the pod with ready state"),
        column(
            "Up-to-date",
            "string",
            "Total number of non-terminated pods targeted by this deployment that have the desired template spec.",
        ),
        column(
            "Available",
            "string",
            "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment.",
        ),
        AGE,
        CONTAINERS,
        IMAGES,
        wide_column("Selector", "string", "Label selector for pods."),
    ],
    cells: deployment_cells,
    conditions: super::no_conditions,
};

fn deployment_cells(deployment: &Value, context: &Context) -> Vec<Value> {
    let ready = int_at(deployment, &["status", "readyReplicas"]);
    let (containers, images) = container_cells(template_spec(deployment));
    // Unlike the other workloads, an empty selector prints as "" and an invalid one as <invalid>.
    let selector = label_selector(at(deployment, &["spec", "selector"]))
        .unwrap_or_else(|| "<invalid>".to_string());
    vec![
        name(deployment),
        Value::from(format!("{ready}/{}", desired_replicas(deployment))),
        Value::from(int_at(deployment, &["status", "updatedReplicas"])),
        Value::from(int_at(deployment, &["status", "availableReplicas"])),
        age(deployment, context),
        containers,
        images,
        Value::from(selector),
    ]
}

pub(super) static REPLICA_SET: Printer = Printer {
    columns: &[
        NAME,
        column("Desired", "integer", "Replicas is the number of desired replicas."),
        column(
            "Current",
            "integer",
            "Replicas is the most recently observed number of replicas.",
        ),
        column(
            "Ready",
            "integer",
            "readyReplicas is the number of pods targeted by this ReplicaSet with a Ready Condition.",
        ),
        AGE,
        CONTAINERS,
        IMAGES,
        wide_column(
            "Selector",
            "string",
            "Selector is a label query over pods that should match the replica count.",
        ),
    ],
    cells: replica_set_cells,
    conditions: super::no_conditions,
};

fn replica_set_cells(replica_set: &Value, context: &Context) -> Vec<Value> {
    let (containers, images) = container_cells(template_spec(replica_set));
    vec![
        name(replica_set),
        Value::from(desired_replicas(replica_set)),
        Value::from(int_at(replica_set, &["status", "replicas"])),
        Value::from(int_at(replica_set, &["status", "readyReplicas"])),
        age(replica_set, context),
        containers,
        images,
        Value::from(format_label_selector(at(
            replica_set,
            &["spec", "selector"],
        ))),
    ]
}

pub(super) static REPLICATION_CONTROLLER: Printer = Printer {
    columns: &[
        NAME,
        column(
            "Desired",
            "integer",
            "Replicas is the number of desired replicas.",
        ),
        column(
            "Current",
            "integer",
            "Replicas is the most recently observed number of replicas.",
        ),
        column(
            "Ready",
            "integer",
            "The number of ready replicas for this replication controller.",
        ),
        AGE,
        CONTAINERS,
        IMAGES,
        wide_column(
            "Selector",
            "string",
            "Selector is a label query over pods that should match the Replicas count.",
        ),
    ],
    cells: replication_controller_cells,
    conditions: super::no_conditions,
};

fn replication_controller_cells(controller: &Value, context: &Context) -> Vec<Value> {
    let (containers, images) = container_cells(template_spec(controller));
    vec![
        name(controller),
        Value::from(desired_replicas(controller)),
        Value::from(int_at(controller, &["status", "replicas"])),
        Value::from(int_at(controller, &["status", "readyReplicas"])),
        age(controller, context),
        containers,
        images,
        // A replication controller's selector is a plain label map.
        Value::from(format_labels(at(controller, &["spec", "selector"]))),
    ]
}

pub(super) static DAEMON_SET: Printer = Printer {
    columns: &[
        NAME,
        column(
            "Desired",
            "integer",
            "The total number of nodes that should be running the daemon pod (including nodes correctly running the daemon pod).",
        ),
        column(
            "Current",
            "integer",
            "The number of nodes that are running at least 1 daemon pod and are supposed to run the daemon pod.",
        ),
        column(
            "Ready",
            "integer",
            "numberReady is the number of nodes that should be running the daemon pod and have one or more of the daemon pod running with a Ready Condition.",
        ),
        column(
            "Up-to-date",
            "integer",
            "The total number of nodes that are running updated daemon pod",
        ),
        column(
            "Available",
            "integer",
            "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and available (ready for at least spec.minReadySeconds)",
        ),
        column(
            "Node Selector",
            "string",
            "NodeSelector is a selector which must be true for the pod to fit on a node.",
        ),
        AGE,
        CONTAINERS,
        IMAGES,
        wide_column(
            "Selector",
            "string",
            "A label query over pods that are managed by the daemon set.",
        ),
    ],
    cells: daemon_set_cells,
    conditions: super::no_conditions,
};

fn daemon_set_cells(daemon_set: &Value, context: &Context) -> Vec<Value> {
    let status = |field: &str| Value::from(int_at(daemon_set, &["status", field]));
    let (containers, images) = container_cells(template_spec(daemon_set));
    vec![
        name(daemon_set),
        status("desiredNumberScheduled"),
        status("currentNumberScheduled"),
        status("numberReady"),
        status("updatedNumberScheduled"),
        status("numberAvailable"),
        Value::from(format_labels(at(
            daemon_set,
            &["spec", "template", "spec", "nodeSelector"],
        ))),
        age(daemon_set, context),
        containers,
        images,
        Value::from(format_label_selector(at(daemon_set, &["spec", "selector"]))),
    ]
}

pub(super) static STATEFUL_SET: Printer = Printer {
    columns: &[
        NAME,
        column("Ready", "string", "Number of the pod with ready state"),
        AGE,
        CONTAINERS,
        IMAGES,
    ],
    cells: stateful_set_cells,
    conditions: super::no_conditions,
};

fn stateful_set_cells(stateful_set: &Value, context: &Context) -> Vec<Value> {
    let ready = int_at(stateful_set, &["status", "readyReplicas"]);
    let (containers, images) = container_cells(template_spec(stateful_set));
    vec![
        name(stateful_set),
        Value::from(format!("{ready}/{}", desired_replicas(stateful_set))),
        age(stateful_set, context),
        containers,
        images,
    ]
}

pub(super) static JOB: Printer = Printer {
    columns: &[
        NAME,
        column("Status", "string", "Status of the job."),
        column(
            "Completions",
            "string",
            "The number of pods which reached phase Succeeded.",
        ),
        column("Duration", "string", "Time required to complete the job."),
        AGE,
        CONTAINERS,
        IMAGES,
        wide_column(
            "Selector",
            "string",
            "A label query over pods that should match the pod count.",
        ),
    ],
    cells: job_cells,
    conditions: super::no_conditions,
};

fn job_cells(job: &Value, context: &Context) -> Vec<Value> {
    let succeeded = int_at(job, &["status", "succeeded"]);
    let completions = match opt_int_at(job, &["spec", "completions"]) {
        Some(completions) => format!("{succeeded}/{completions}"),
        None => match int_at(job, &["spec", "parallelism"]) {
            parallelism if parallelism > 1 => format!("{succeeded}/1 of {parallelism}"),
            _ => format!("{succeeded}/1"),
        },
    };
    let started = timestamp(at(job, &["status", "startTime"]));
    let completed = timestamp(at(job, &["status", "completionTime"]));
    let duration = match (started, completed) {
        (None, _) => String::new(),
        (Some(start), None) => human_duration(go_duration(context.now - start)),
        (Some(start), Some(end)) => human_duration(go_duration(end - start)),
    };
    let conditions = items_at(job, &["status", "conditions"]);
    let deleting = at(job, &["metadata", "deletionTimestamp"]).is_some_and(|t| !t.is_null());
    let status = if job_condition(conditions, "Complete") {
        "Complete"
    } else if job_condition(conditions, "Failed") {
        "Failed"
    } else if deleting {
        "Terminating"
    } else if job_condition(conditions, "Suspended") {
        "Suspended"
    } else if job_condition(conditions, "FailureTarget") {
        "FailureTarget"
    } else {
        "Running"
    };
    let (containers, images) = container_cells(template_spec(job));
    vec![
        name(job),
        Value::from(status),
        Value::from(completions),
        Value::from(duration),
        age(job, context),
        containers,
        images,
        Value::from(format_label_selector(at(job, &["spec", "selector"]))),
    ]
}

/// Whether the first condition of `kind` is True (`hasJobCondition`).
fn job_condition(conditions: &[Value], kind: &str) -> bool {
    conditions
        .iter()
        .find(|c| str_at(c, &["type"]) == kind)
        .is_some_and(|c| str_at(c, &["status"]) == "True")
}

#[cfg(test)]
mod tests {
    use super::super::tests::{ago, cell_range, wide_row};
    use serde_json::{json, Value};

    fn template() -> Value {
        json!({"spec": {"containers": [{"name": "app", "image": "shop:1.2"},
                                       {"name": "log", "image": "fluent:2"}]}})
    }

    #[test]
    fn deployment_columns() {
        let deployment = json!({
            "metadata": {"name": "shop", "creationTimestamp": ago(86400 * 2 + 3600)},
            "spec": {"replicas": 3, "template": template(),
                     "selector": {"matchLabels": {"app": "shop"}}},
            "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2},
        });
        assert_eq!(
            wide_row("Deployment", deployment)["cells"],
            json!([
                "shop",
                "2/3",
                3,
                2,
                "2d1h",
                "app,log",
                "shop:1.2,fluent:2",
                "app=shop"
            ])
        );
    }

    #[test]
    fn deployment_defaults_replicas_and_flags_bad_selectors() {
        let bare = json!({"metadata": {"name": "d"}});
        assert_eq!(
            wide_row("Deployment", bare)["cells"],
            json!(["d", "0/1", 0, 0, "<unknown>", "", "", ""])
        );
        let bad = json!({"metadata": {"name": "d"}, "spec": {"replicas": 0,
            "selector": {"matchExpressions": [{"key": "a", "operator": "Exists",
                                               "values": ["x"]}]}}});
        let row = wide_row("Deployment", bad);
        assert_eq!(row["cells"][1], "0/0");
        assert_eq!(row["cells"][7], "<invalid>");
    }

    #[test]
    fn replica_set_and_replication_controller() {
        let rs = json!({"metadata": {"name": "shop-6d"},
            "spec": {"replicas": 2, "template": template(),
                     "selector": {"matchLabels": {"app": "shop", "pod-template-hash": "6d"}}},
            "status": {"replicas": 2, "readyReplicas": 1}});
        assert_eq!(
            wide_row("ReplicaSet", rs)["cells"],
            json!([
                "shop-6d",
                2,
                2,
                1,
                "<unknown>",
                "app,log",
                "shop:1.2,fluent:2",
                "app=shop,pod-template-hash=6d"
            ])
        );
        let rc = json!({"metadata": {"name": "old"}, "spec": {"selector": {"app": "old"}}});
        assert_eq!(
            wide_row("ReplicationController", rc)["cells"],
            json!(["old", 1, 0, 0, "<unknown>", "", "", "app=old"])
        );
    }

    #[test]
    fn daemon_set_and_stateful_set() {
        let ds = json!({"metadata": {"name": "agent"},
            "spec": {"template": {"spec": {"nodeSelector": {"kubernetes.io/os": "linux"},
                                           "containers": [{"name": "a", "image": "agent:1"}]}}},
            "status": {"desiredNumberScheduled": 3, "currentNumberScheduled": 3,
                       "numberReady": 2, "updatedNumberScheduled": 3, "numberAvailable": 2}});
        assert_eq!(
            wide_row("DaemonSet", ds)["cells"],
            json!([
                "agent",
                3,
                3,
                2,
                3,
                2,
                "kubernetes.io/os=linux",
                "<unknown>",
                "a",
                "agent:1",
                "<none>"
            ])
        );
        let sts = json!({"metadata": {"name": "db"}, "spec": {"replicas": 3},
                         "status": {"readyReplicas": 3}});
        assert_eq!(
            wide_row("StatefulSet", sts)["cells"],
            json!(["db", "3/3", "<unknown>", "", ""])
        );
    }

    #[test]
    fn job_status_completions_and_duration() {
        let complete = json!({"metadata": {"name": "pi", "creationTimestamp": ago(900)},
            "spec": {"completions": 1, "template": template(),
                     "selector": {"matchLabels": {"batch.kubernetes.io/job-name": "pi"}}},
            "status": {"succeeded": 1, "startTime": ago(890), "completionTime": ago(845),
                       "conditions": [{"type": "SuccessCriteriaMet", "status": "True"},
                                      {"type": "Complete", "status": "True"}]}});
        assert_eq!(
            wide_row("Job", complete)["cells"],
            json!([
                "pi",
                "Complete",
                "1/1",
                "45s",
                "15m",
                "app,log",
                "shop:1.2,fluent:2",
                "batch.kubernetes.io/job-name=pi"
            ])
        );
        let running = json!({"metadata": {"name": "work"},
            "spec": {"parallelism": 3}, "status": {"startTime": ago(200)}});
        assert_eq!(
            cell_range(&wide_row("Job", running), 1..4),
            json!(["Running", "0/1 of 3", "3m20s"])
        );
        let mut deleting = json!({"metadata": {"name": "x", "deletionTimestamp": ago(1)},
            "status": {"conditions": [{"type": "Suspended", "status": "True"}]}});
        assert_eq!(
            cell_range(&wide_row("Job", deleting.clone()), 1..4),
            json!(["Terminating", "0/1", ""])
        );
        deleting["metadata"]["deletionTimestamp"] = Value::Null;
        assert_eq!(wide_row("Job", deleting)["cells"][1], "Suspended");
        let failed = json!({"metadata": {"name": "f"}, "status": {"conditions": [
            {"type": "Failed", "status": "True"}, {"type": "Complete", "status": "False"}]}});
        assert_eq!(wide_row("Job", failed)["cells"][1], "Failed");
    }
}
