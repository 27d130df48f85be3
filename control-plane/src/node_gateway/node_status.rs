//! Keeping Node objects true without wearing out the disk: registration writes the Node's
//! labels and status; heartbeats only touch memory; the store sees a write when a condition
//! changes (or, if configured, when `status_interval` has passed since the last one).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bramble_api::node_protocol::{NodeCondition, NodeInfo};
use serde_json::{json, Map, Value};

use crate::apiserver::objects::now_rfc3339;
use crate::apiserver::resources::{lookup, Resource};
use crate::apiserver::status::ApiError;
use crate::apiserver::ApiServer;

/// Field manager of the gateway's writes.
pub const MANAGER: &str = "bramble-node-gateway";

/// Conditions reported when a node stops talking, in the node lifecycle controller's words.
const UNKNOWN_REASON: &str = "NodeStatusUnknown";
const UNKNOWN_MESSAGE: &str = "Kubelet stopped posting node status.";

/// What the gateway remembers of each node between writes.
#[derive(Default)]
pub struct NodeLiveness {
    nodes: Mutex<HashMap<String, Liveness>>,
}

struct Liveness {
    last_heartbeat: Instant,
    last_write: Instant,
    /// Conditions as last written: type -> (status, reason).
    written: Vec<(String, String, String)>,
}

fn nodes_resource() -> Result<&'static Resource, ApiError> {
    lookup("", "v1", "nodes").ok_or_else(|| ApiError::internal("the nodes resource is missing"))
}

impl NodeLiveness {
    /// Creates or refreshes the Node object of a node that just connected.
    pub async fn register(&self, api: &ApiServer, info: &NodeInfo) -> Result<(), ApiError> {
        let nodes = nodes_resource()?;
        let mut labels = json!({
            "kubernetes.io/arch": info.arch,
            "kubernetes.io/os": info.os,
            "kubernetes.io/hostname": info.name,
            "beta.kubernetes.io/arch": info.arch,
            "beta.kubernetes.io/os": info.os,
            "bramble.dev/board": info.board,
        });
        // One label per runtime the node offers: what the scheduler and RuntimeClass
        // nodeSelectors match on.
        for runtime in &info.runtimes {
            if bramble_api::validation::is_dns1123_label(runtime).is_empty() {
                labels[format!("{}{runtime}", crate::scheduler::RUNTIME_LABEL_PREFIX)] =
                    json!("true");
            }
        }
        let exists = api
            .cache
            .get(&crate::apiserver::objects::key(nodes, None, &info.name))
            .is_some();
        if exists {
            api.internal_update(nodes, None, &info.name, MANAGER, |current| {
                let mut next = current.clone();
                merge_labels(&mut next, &labels);
                Ok(next)
            })
            .await?;
        } else {
            let object = json!({
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {"name": info.name, "labels": labels},
                "spec": {},
            });
            match api.internal_create(nodes, None, object, MANAGER).await {
                Ok(_) => {}
                // Another connection of the same node won the race; the status write follows.
                Err(e) if e.code == 409 => {}
                Err(e) => return Err(e),
            }
        }
        let ready = ready_condition(true, "KubeletReady", "bramble-node is posting ready status");
        let status = node_status(info, std::slice::from_ref(&ready));
        api.internal_update_status(nodes, None, &info.name, MANAGER, |current| {
            let mut next = current.clone();
            next["status"] = merge_conditions(current, status.clone());
            Ok(next)
        })
        .await?;
        let now = Instant::now();
        self.nodes_mut().insert(
            info.name.clone(),
            Liveness {
                last_heartbeat: now,
                last_write: now,
                written: vec![condition_key(&ready)],
            },
        );
        Ok(())
    }

    fn nodes_mut(&self) -> std::sync::MutexGuard<'_, HashMap<String, Liveness>> {
        self.nodes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records a heartbeat; writes the Node only if a condition changed or `interval` passed.
    pub async fn heartbeat(
        &self,
        api: &ApiServer,
        node: &str,
        conditions: &[NodeCondition],
        interval: Option<Duration>,
    ) -> Result<(), ApiError> {
        let mut conditions: Vec<Value> = conditions
            .iter()
            .map(|c| {
                json!({"type": c.r#type, "status": c.status, "reason": c.reason, "message": c.message})
            })
            .collect();
        if !conditions.iter().any(|c| c["type"] == "Ready") {
            conditions.push(ready_condition(
                true,
                "KubeletReady",
                "bramble-node is posting ready status",
            ));
        }
        let keys: Vec<_> = conditions.iter().map(condition_key).collect();
        let due = {
            let mut nodes = self.nodes_mut();
            let now = Instant::now();
            let entry = nodes.entry(node.to_string()).or_insert(Liveness {
                last_heartbeat: now,
                last_write: now,
                written: Vec::new(),
            });
            entry.last_heartbeat = now;
            entry.written != keys
                || interval.is_some_and(|every| now.duration_since(entry.last_write) >= every)
        };
        if due {
            self.write_conditions(api, node, conditions).await?;
            let mut nodes = self.nodes_mut();
            if let Some(entry) = nodes.get_mut(node) {
                entry.written = keys;
                entry.last_write = Instant::now();
            }
        }
        Ok(())
    }

    /// Nodes not heard from within `grace` whose Ready condition is not yet Unknown: sets it
    /// Unknown (one write each).
    pub async fn mark_silent(&self, api: &ApiServer, grace: Duration) {
        let silent: Vec<String> = {
            let nodes = self.nodes_mut();
            nodes
                .iter()
                .filter(|(_, l)| {
                    l.last_heartbeat.elapsed() >= grace
                        && !l
                            .written
                            .iter()
                            .any(|(t, s, _)| t == "Ready" && s == "Unknown")
                })
                .map(|(name, _)| name.clone())
                .collect()
        };
        for node in silent {
            let unknown = vec![ready_condition_status(
                "Unknown",
                UNKNOWN_REASON,
                UNKNOWN_MESSAGE,
            )];
            let keys: Vec<_> = unknown.iter().map(condition_key).collect();
            match self.write_conditions(api, &node, unknown).await {
                Ok(()) | Err(ApiError { code: 404, .. }) => {
                    if let Some(entry) = self.nodes_mut().get_mut(&node) {
                        entry.written = keys;
                        entry.last_write = Instant::now();
                    }
                    tracing::info!(%node, "node stopped posting status: Ready=Unknown");
                }
                Err(e) => tracing::warn!(%node, error = %e, "cannot mark a silent node"),
            }
        }
    }

    async fn write_conditions(
        &self,
        api: &ApiServer,
        node: &str,
        conditions: Vec<Value>,
    ) -> Result<(), ApiError> {
        let nodes = nodes_resource()?;
        api.internal_update_status(nodes, None, node, MANAGER, |current| {
            let mut next = current.clone();
            let status = json!({"conditions": conditions.clone()});
            next["status"] = merge_conditions(current, status);
            Ok(next)
        })
        .await
        .map(|_| ())
    }
}

fn condition_key(c: &Value) -> (String, String, String) {
    let s = |k: &str| c[k].as_str().unwrap_or_default().to_string();
    (s("type"), s("status"), s("reason"))
}

fn ready_condition(ready: bool, reason: &str, message: &str) -> Value {
    ready_condition_status(if ready { "True" } else { "False" }, reason, message)
}

fn ready_condition_status(status: &str, reason: &str, message: &str) -> Value {
    json!({"type": "Ready", "status": status, "reason": reason, "message": message})
}

/// The Node status a registration carries.
fn node_status(info: &NodeInfo, conditions: &[Value]) -> Value {
    let quantities = |map: &std::collections::HashMap<String, String>| {
        let mut sorted: Vec<_> = map.iter().collect();
        sorted.sort();
        Value::Object(
            sorted
                .into_iter()
                .map(|(k, v)| (k.clone(), json!(v)))
                .collect::<Map<_, _>>(),
        )
    };
    let mut addresses: Vec<Value> = info
        .addresses
        .iter()
        .map(|a| json!({"type": a.r#type, "address": a.address}))
        .collect();
    if !addresses.iter().any(|a| a["type"] == "Hostname") {
        addresses.push(json!({"type": "Hostname", "address": info.name}));
    }
    json!({
        "capacity": quantities(&info.capacity),
        "allocatable": quantities(&info.allocatable),
        "addresses": addresses,
        "conditions": conditions,
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 0}},
        "nodeInfo": {
            "architecture": info.arch,
            "operatingSystem": info.os,
            "kernelVersion": info.kernel_version,
            "osImage": info.os_image,
            "kubeletVersion": info.agent_version,
            "kubeProxyVersion": "",
            "containerRuntimeVersion": info.runtimes.iter().map(|r| format!("{r}://bramble")).collect::<Vec<_>>().join(","),
            "machineID": info.machine_id,
            "systemUUID": info.machine_id,
            "bootID": info.boot_id,
        },
    })
}

/// `status` over the current status, conditions merged by type: lastTransitionTime moves only
/// when a condition's status changes, lastHeartbeatTime on every write.
fn merge_conditions(current: &Value, status: Value) -> Value {
    let now = now_rfc3339();
    let mut merged = current["status"].clone();
    if !merged.is_object() {
        merged = json!({});
    }
    let old: Vec<Value> = current
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if let Value::Object(fields) = status {
        for (key, value) in fields {
            if key != "conditions" {
                merged[key] = value;
                continue;
            }
            let mut conditions = old.clone();
            for mut new in value.as_array().cloned().unwrap_or_default() {
                let previous = conditions.iter().position(|c| c["type"] == new["type"]);
                let transition = match previous {
                    Some(i) if conditions[i]["status"] == new["status"] => {
                        conditions[i]["lastTransitionTime"].clone()
                    }
                    _ => json!(now),
                };
                new["lastHeartbeatTime"] = json!(now);
                new["lastTransitionTime"] = transition;
                match previous {
                    Some(i) => conditions[i] = new,
                    None => conditions.push(new),
                }
            }
            merged["conditions"] = Value::Array(conditions);
        }
    }
    merged
}

fn merge_labels(node: &mut Value, labels: &Value) {
    if !node["metadata"]["labels"].is_object() {
        node["metadata"]["labels"] = json!({});
    }
    if let Some(ours) = labels.as_object() {
        for (k, v) in ours {
            node["metadata"]["labels"][k] = v.clone();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_time_moves_only_when_the_status_changes() {
        let current = json!({"status": {"conditions": [
            {"type": "Ready", "status": "True", "lastTransitionTime": "2020-01-01T00:00:00Z", "lastHeartbeatTime": "2020-01-01T00:00:00Z"}
        ]}});
        let same = merge_conditions(
            &current,
            json!({"conditions": [ready_condition(true, "KubeletReady", "ok")]}),
        );
        assert_eq!(
            same["conditions"][0]["lastTransitionTime"],
            "2020-01-01T00:00:00Z"
        );
        assert_ne!(
            same["conditions"][0]["lastHeartbeatTime"],
            "2020-01-01T00:00:00Z"
        );
        let changed = merge_conditions(
            &current,
            json!({"conditions": [ready_condition_status("Unknown", UNKNOWN_REASON, UNKNOWN_MESSAGE)]}),
        );
        assert_ne!(
            changed["conditions"][0]["lastTransitionTime"],
            "2020-01-01T00:00:00Z"
        );
        assert_eq!(changed["conditions"][0]["reason"], UNKNOWN_REASON);
    }

    #[test]
    fn registration_status_carries_capacity_info_and_hostname() {
        let mut info = NodeInfo {
            name: "pi-1".into(),
            arch: "arm64".into(),
            os: "linux".into(),
            agent_version: "v0.1.0".into(),
            runtimes: vec!["wasm".into()],
            ..Default::default()
        };
        info.capacity.insert("cpu".into(), "4".into());
        info.capacity.insert("pods".into(), "110".into());
        let status = node_status(&info, &[]);
        assert_eq!(status["capacity"]["cpu"], "4");
        assert_eq!(status["nodeInfo"]["architecture"], "arm64");
        assert_eq!(
            status["nodeInfo"]["containerRuntimeVersion"],
            "wasm://bramble"
        );
        assert_eq!(status["addresses"][0]["type"], "Hostname");
    }
}
