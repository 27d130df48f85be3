//! ReplicationController as a [`ReplicaKind`]: Kubernetes runs it through the ReplicaSet
//! controller's code (pkg/controller/replication converts it to a ReplicaSet), and so does
//! Bramble, as [`super::replicaset::ReplicationManager`]. What differs: the selector is a plain
//! label map, and its Events and writes come from "replication-controller".

use std::collections::BTreeMap;

use bramble_api::labels::Selector;
use k8s_openapi::api::apps::v1::{ReplicaSetCondition, ReplicaSetStatus};
use k8s_openapi::api::core::v1::{
    ReplicationController, ReplicationControllerCondition, ReplicationControllerStatus,
};

use super::replicaset::{ReplicaKind, ReplicaSpec};

impl ReplicaKind for ReplicationController {
    const CONTROLLER: &'static str = "replication-controller";

    fn replica_spec(&self) -> Result<ReplicaSpec<'_>, String> {
        let spec = self.spec.as_ref().ok_or("spec is missing")?;
        let template = spec.template.as_ref();
        // Kubernetes defaults an empty selector to the template's labels; with neither there is
        // nothing to select (an empty set would select every pod of the namespace).
        let labels = match spec.selector.as_ref().filter(|s| !s.is_empty()) {
            Some(selector) => Some(selector),
            None => template
                .and_then(|t| t.metadata.as_ref())
                .and_then(|m| m.labels.as_ref())
                .filter(|l| !l.is_empty()),
        };
        let selector = match labels {
            Some(labels) => selector_of(labels)?,
            None => Selector::nothing(),
        };
        Ok(ReplicaSpec {
            replicas: spec.replicas.unwrap_or(1),
            min_ready_seconds: spec.min_ready_seconds.unwrap_or(0),
            selector,
            template,
        })
    }

    fn replica_status(&self) -> ReplicaSetStatus {
        let status = self.status.clone().unwrap_or_default();
        ReplicaSetStatus {
            replicas: status.replicas,
            fully_labeled_replicas: status.fully_labeled_replicas,
            ready_replicas: status.ready_replicas,
            available_replicas: status.available_replicas,
            observed_generation: status.observed_generation,
            conditions: status.conditions.map(|conditions| {
                conditions
                    .into_iter()
                    .map(|c| ReplicaSetCondition {
                        type_: c.type_,
                        status: c.status,
                        reason: c.reason,
                        message: c.message,
                        last_transition_time: c.last_transition_time,
                    })
                    .collect()
            }),
        }
    }

    fn set_replica_status(&mut self, status: ReplicaSetStatus) {
        self.status = Some(ReplicationControllerStatus {
            replicas: status.replicas,
            fully_labeled_replicas: status.fully_labeled_replicas,
            ready_replicas: status.ready_replicas,
            available_replicas: status.available_replicas,
            observed_generation: status.observed_generation,
            conditions: status.conditions.map(|conditions| {
                conditions
                    .into_iter()
                    .map(|c| ReplicationControllerCondition {
                        type_: c.type_,
                        status: c.status,
                        reason: c.reason,
                        message: c.message,
                        last_transition_time: c.last_transition_time,
                    })
                    .collect()
            }),
        });
    }
}

fn selector_of(labels: &BTreeMap<String, String>) -> Result<Selector, String> {
    Selector::from_set(labels).map_err(|e| format!("invalid selector: {e}"))
}
