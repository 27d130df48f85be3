//! Printers for cluster-level kinds: nodes, namespaces, events, leases and runtime classes.

use std::collections::BTreeSet;

use serde_json::Value;

use super::format::{age, at, int_at, items_at, name, object_at, since, str_at, timestamp};
use super::{column, wide_column, Column, Context, Printer, AGE, NAME, NAME_DOC};

/// Label prefix whose suffix names a node role (`node-role.kubernetes.io/control-plane`).
const NODE_ROLE_PREFIX: &str = "node-role.kubernetes.io/";
/// Older label whose value names a node role.
const NODE_ROLE_LABEL: &str = "kubernetes.io/role";

pub(super) static NODE: Printer = Printer {
    columns: &[
        NAME,
        column("Status", "string", "The status of the node"),
        column("Roles", "string", "The roles of the node"),
        AGE,
        column("Version", "string", "Kubelet Version reported by the node."),
        wide_column(
            "Internal-IP",
            "string",
            "List of addresses reachable to the node.",
        ),
        wide_column(
            "External-IP",
            "string",
            "List of addresses reachable to the node.",
        ),
        wide_column(
            "OS-Image",
            "string",
            "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy)).",
        ),
        wide_column(
            "Kernel-Version",
            "string",
            "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64).",
        ),
        wide_column(
            "Container-Runtime",
            "string",
            "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2).",
        ),
    ],
    cells: node_cells,
    conditions: super::no_conditions,
};

fn node_cells(node: &Value, context: &Context) -> Vec<Value> {
    // Only the Ready condition is shown; the last one of that type wins, as in the Go map.
    let ready = items_at(node, &["status", "conditions"])
        .iter()
        .rfind(|c| str_at(c, &["type"]) == "Ready");
    let mut status = match ready {
        Some(c) if str_at(c, &["status"]) == "True" => "Ready".to_string(),
        Some(_) => "NotReady".to_string(),
        None => "Unknown".to_string(),
    };
    if at(node, &["spec", "unschedulable"]).and_then(Value::as_bool) == Some(true) {
        status.push_str(",SchedulingDisabled");
    }
    let info = |field: &str| {
        let value = str_at(node, &["status", "nodeInfo", field]);
        Value::from(if value.is_empty() { "<unknown>" } else { value })
    };
    vec![
        name(node),
        Value::from(status),
        Value::from(node_roles(node)),
        age(node, context),
        Value::from(str_at(node, &["status", "nodeInfo", "kubeletVersion"])),
        Value::from(node_address(node, "InternalIP")),
        Value::from(node_address(node, "ExternalIP")),
        info("osImage"),
        info("kernelVersion"),
        info("containerRuntimeVersion"),
    ]
}

/// Roles from `node-role.kubernetes.io/<role>` label keys and `kubernetes.io/role=<role>`,
/// sorted and deduplicated, or `<none>`.
fn node_roles(node: &Value) -> String {
    let mut roles = BTreeSet::new();
    if let Some(labels) = at(node, &["metadata", "labels"]).and_then(Value::as_object) {
        for (key, value) in labels {
            if let Some(role) = key.strip_prefix(NODE_ROLE_PREFIX) {
                if !role.is_empty() {
                    roles.insert(role);
                }
            } else if key == NODE_ROLE_LABEL {
                if let Some(role) = value.as_str().filter(|r| !r.is_empty()) {
                    roles.insert(role);
                }
            }
        }
    }
    if roles.is_empty() {
        return "<none>".to_string();
    }
    roles.into_iter().collect::<Vec<_>>().join(",")
}

/// The first address of `kind` (`InternalIP`, `ExternalIP`), or `<none>`.
fn node_address<'a>(node: &'a Value, kind: &str) -> &'a str {
    items_at(node, &["status", "addresses"])
        .iter()
        .find(|a| str_at(a, &["type"]) == kind)
        .map_or("<none>", |a| str_at(a, &["address"]))
}

pub(super) static NAMESPACE: Printer = Printer {
    columns: &[
        NAME,
        column("Status", "string", "The status of the namespace"),
        AGE,
    ],
    cells: namespace_cells,
    conditions: super::no_conditions,
};

fn namespace_cells(namespace: &Value, context: &Context) -> Vec<Value> {
    // v1 defaulting sets an empty phase to Active.
    let phase = match str_at(namespace, &["status", "phase"]) {
        "" => "Active",
        phase => phase,
    };
    vec![name(namespace), Value::from(phase), age(namespace, context)]
}

pub(super) static EVENT: Printer = Printer {
    columns: &[
        column(
            "Last Seen",
            "string",
            "The time at which the most recent occurrence of this event was recorded.",
        ),
        column(
            "Type",
            "string",
            "Type of this event (Normal, Warning), new types could be added in the future",
        ),
        column(
            "Reason",
            "string",
            "This should be a short, machine understandable string that gives the reason for the transition into the object's current status.",
        ),
        column("Object", "string", "The object that this event is about."),
        wide_column(
            "Subobject",
            "string",
            "If referring to a piece of an object instead of an entire object, this string should contain a valid JSON/Go field access statement, such as desiredState.manifest.containers[2].",
        ),
        wide_column("Source", "string", "The component reporting this event."),
        column(
            "Message",
            "string",
            "A human-readable description of the status of this operation.",
        ),
        wide_column(
            "First Seen",
            "string",
            "The time at which the event was first recorded.",
        ),
        wide_column(
            "Count",
            "string",
            "The number of times this event has occurred.",
        ),
        Column {
            name: "Name",
            kind: "string",
            format: "name",
            description: NAME_DOC,
            priority: 1,
        },
    ],
    cells: event_cells,
    conditions: super::no_conditions,
};

fn event_cells(event: &Value, context: &Context) -> Vec<Value> {
    let first_seen = match timestamp(at(event, &["firstTimestamp"])) {
        Some(first) => since(Some(first), context.now),
        None => since(timestamp(at(event, &["eventTime"])), context.now),
    };
    let mut last_seen = match timestamp(at(event, &["lastTimestamp"])) {
        Some(last) => since(Some(last), context.now),
        None => first_seen.clone(),
    };
    let count = if let Some(series) = object_at(event, &["series"]) {
        last_seen = since(timestamp(at(series, &["lastObservedTime"])), context.now);
        int_at(series, &["count"])
    } else {
        // Singleton events of the events.k8s.io API leave count unset.
        match int_at(event, &["count"]) {
            0 => 1,
            count => count,
        }
    };
    let kind = str_at(event, &["involvedObject", "kind"]).to_lowercase();
    let object_name = str_at(event, &["involvedObject", "name"]);
    let target = if object_name.is_empty() {
        kind
    } else {
        format!("{kind}/{object_name}")
    };
    vec![
        Value::from(last_seen),
        Value::from(str_at(event, &["type"])),
        Value::from(str_at(event, &["reason"])),
        Value::from(target),
        Value::from(str_at(event, &["involvedObject", "fieldPath"])),
        Value::from(event_source(event)),
        Value::from(str_at(event, &["message"]).trim()),
        Value::from(first_seen),
        Value::from(count),
        name(event),
    ]
}

/// `component, host`, falling back to the reporting controller and instance of new-style events.
fn event_source(event: &Value) -> String {
    let first_non_empty = |a: &'static str, b: &'static str| {
        let value = str_at(event, &["source", a]);
        if value.is_empty() {
            str_at(event, &[b])
        } else {
            value
        }
    };
    let component = first_non_empty("component", "reportingComponent");
    let instance = first_non_empty("host", "reportingInstance");
    if instance.is_empty() {
        component.to_string()
    } else {
        format!("{component}, {instance}")
    }
}

pub(super) static LEASE: Printer = Printer {
    columns: &[
        NAME,
        column(
            "Holder",
            "string",
            "holderIdentity contains the identity of the holder of a current lease.",
        ),
        AGE,
    ],
    cells: lease_cells,
    conditions: super::no_conditions,
};

fn lease_cells(lease: &Value, context: &Context) -> Vec<Value> {
    vec![
        name(lease),
        Value::from(str_at(lease, &["spec", "holderIdentity"])),
        age(lease, context),
    ]
}

pub(super) static RUNTIME_CLASS: Printer = Printer {
    // Kubernetes looks the Handler description up in ObjectMeta's docs, where it is absent.
    columns: &[NAME, column("Handler", "string", ""), AGE],
    cells: runtime_class_cells,
    conditions: super::no_conditions,
};

fn runtime_class_cells(runtime_class: &Value, context: &Context) -> Vec<Value> {
    vec![
        name(runtime_class),
        Value::from(str_at(runtime_class, &["handler"])),
        age(runtime_class, context),
    ]
}

#[cfg(test)]
mod tests {
    use super::super::tests::{ago, cell_range, wide_row};
    use serde_json::json;

    #[test]
    fn cordoned_ready_node_with_roles() {
        let node = json!({
            "metadata": {"name": "n1", "creationTimestamp": ago(3 * 86400 + 7200),
                         "labels": {"node-role.kubernetes.io/control-plane": "",
                                    "node-role.kubernetes.io/": "",
                                    "kubernetes.io/role": "edge",
                                    "kubernetes.io/hostname": "n1"}},
            "spec": {"unschedulable": true},
            "status": {
                "conditions": [{"type": "MemoryPressure", "status": "False"},
                               {"type": "Ready", "status": "True"}],
                "addresses": [{"type": "Hostname", "address": "n1"},
                              {"type": "InternalIP", "address": "192.168.1.10"}],
                "nodeInfo": {"kubeletVersion": "v1.32.4", "osImage": "Debian GNU/Linux 12",
                             "kernelVersion": "6.1.0", "containerRuntimeVersion": ""},
            },
        });
        assert_eq!(
            wide_row("Node", node)["cells"],
            json!([
                "n1",
                "Ready,SchedulingDisabled",
                "control-plane,edge",
                "3d2h",
                "v1.32.4",
                "192.168.1.10",
                "<none>",
                "Debian GNU/Linux 12",
                "6.1.0",
                "<unknown>"
            ])
        );
    }

    #[test]
    fn node_status_without_or_with_failing_ready_condition() {
        let not_ready = json!({"metadata": {"name": "n2"},
            "status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}});
        let row = wide_row("Node", not_ready);
        assert_eq!(cell_range(&row, 1..3), json!(["NotReady", "<none>"]));
        let unknown = json!({"metadata": {"name": "n3"}, "spec": {"unschedulable": false}});
        assert_eq!(wide_row("Node", unknown)["cells"][1], "Unknown");
    }

    #[test]
    fn namespace_phase_defaults_to_active() {
        let terminating = json!({"metadata": {"name": "old"}, "status": {"phase": "Terminating"}});
        assert_eq!(
            wide_row("Namespace", terminating)["cells"][1],
            "Terminating"
        );
        let fresh = json!({"metadata": {"name": "new", "creationTimestamp": ago(30)}});
        assert_eq!(
            wide_row("Namespace", fresh)["cells"],
            json!(["new", "Active", "30s"])
        );
    }

    #[test]
    fn new_style_events_use_event_time_series_and_reporting_fields() {
        let event = json!({
            "metadata": {"name": "e1"},
            "eventTime": ago(3600),
            "series": {"count": 4, "lastObservedTime": ago(90)},
            "reportingComponent": "kubelet", "reportingInstance": "n1",
            "involvedObject": {"kind": "Node"},
            "type": "Warning", "reason": "Rebooted", "message": "rebooted",
        });
        assert_eq!(
            wide_row("Event", event)["cells"],
            json!([
                "90s",
                "Warning",
                "Rebooted",
                "node",
                "",
                "kubelet, n1",
                "rebooted",
                "60m",
                4,
                "e1"
            ])
        );
        let singleton = json!({"metadata": {"name": "e2"}, "source": {"component": "sched"}});
        assert_eq!(
            wide_row("Event", singleton)["cells"],
            json!([
                "<unknown>",
                "",
                "",
                "",
                "",
                "sched",
                "",
                "<unknown>",
                1,
                "e2"
            ])
        );
    }

    #[test]
    fn lease_and_runtime_class() {
        let lease = json!({"metadata": {"name": "n1", "creationTimestamp": ago(7200)},
                           "spec": {"holderIdentity": "n1"}});
        assert_eq!(
            wide_row("Lease", lease)["cells"],
            json!(["n1", "n1", "120m"])
        );
        let unheld = json!({"metadata": {"name": "n2"}, "spec": {"holderIdentity": null}});
        assert_eq!(wide_row("Lease", unheld)["cells"][1], "");
        let class = json!({"metadata": {"name": "wasm"}, "handler": "wasmtime"});
        assert_eq!(
            wide_row("RuntimeClass", class)["cells"],
            json!(["wasm", "wasmtime", "<unknown>"])
        );
    }
}
