//! Controllers: level-triggered loops that drive stored objects towards what they ask for.
//! Each reacts to the watch cache's changes through a deduplicating work queue
//! ([`runner`]), reads the cluster through a typed [`context::Ctx`], and acts through the API
//! server's own write paths, so its writes are validated, versioned and watched like any
//! client's. Events go through one [`events::EventRecorder`].

pub mod api_backend;
pub mod context;
mod controller_history;
mod daemon_placement;
mod daemon_pods;
pub mod daemonset;
mod daemonset_rollout;
mod daemonset_status;
pub mod default_tolerations;
pub mod deployment;
mod deployment_history;
mod deployment_rollout;
mod deployment_scale;
mod deployment_status;
pub mod endpoint_slice;
pub mod endpoints;
pub mod events;
#[cfg(test)]
pub mod fake;
pub mod garbage_collector;
pub mod job;
mod job_pods;
mod job_status;
pub mod node_lifecycle;
pub mod pod_disruption;
pub mod pod_gc;
pub mod pod_ranking;
pub mod pods;
pub mod reconciler;
pub mod replica_pods;
pub mod replicaset;
pub mod replication_controller;
pub mod runner;
mod service_pods;
mod stateful_pod;
pub mod statefulset;
mod statefulset_status;
pub mod taints;
pub mod work_queue;

use std::sync::Arc;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::apiserver::ApiServer;
use runner::Shared;

/// How the controllers run.
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    /// Concurrent reconciles per workload controller (kube-controller-manager's
    /// --concurrent-*-syncs).
    pub workers: usize,
    /// tolerationSeconds of the not-ready/unreachable tolerations added to pods that set none
    /// (DefaultTolerationSeconds): how long pods stay on a node that went away.
    pub default_toleration_seconds: i64,
    /// Run the controllers only while holding the controller Lease (several control planes
    /// on one shared store).
    pub leader_elect: bool,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        ControllerConfig {
            workers: 4,
            default_toleration_seconds: 300,
            leader_elect: false,
        }
    }
}

/// Runs every controller and the scheduler until `stop`.
pub async fn run(api: Arc<ApiServer>, config: ControllerConfig, stop: CancellationToken) {
    let shared = Shared { api: api.clone() };
    let mut tasks = JoinSet::new();
    tasks.spawn(garbage_collector::run(api.clone()));
    tasks.spawn(crate::scheduler::runner::run(api.clone(), stop.clone()));
    let mut starter = Starter {
        tasks,
        shared,
        stop: stop.clone(),
    };
    let workers = config.workers;
    starter.start(replicaset::ReplicaSetController::new(), workers);
    starter.start(replicaset::ReplicationManager::new(), workers);
    starter.start(deployment::DeploymentController::new(), workers);
    starter.start(daemonset::DaemonSetReconciler::new(), workers);
    starter.start(statefulset::StatefulSetReconciler::new(), workers);
    starter.start(job::JobController::new(), workers);
    starter.start(endpoints::EndpointsController::new(), workers);
    starter.start(endpoint_slice::EndpointSliceController::new(), workers);
    starter.start(node_lifecycle::NodeLifecycleController::new(), workers);
    // Per node and rare: one worker is plenty.
    starter.start(pod_gc::PodGarbageCollector::new(), 1);
    stop.cancelled().await;
    starter.tasks.shutdown().await;
}

/// Starts controllers' runners, all owned by one JoinSet.
struct Starter {
    tasks: JoinSet<()>,
    shared: Shared,
    stop: CancellationToken,
}

impl Starter {
    fn start<R: reconciler::Reconciler>(&mut self, reconciler: R, workers: usize) {
        self.tasks.spawn(runner::run(
            Arc::new(reconciler),
            self.shared.clone(),
            workers,
            self.stop.clone(),
        ));
    }
}
