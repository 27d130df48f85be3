//! Controllers: level-triggered loops that drive stored objects towards what they ask for.
//! Each reacts to the watch cache's changes through a deduplicating work queue
//! ([`runner`]), reads the cluster through a typed [`context::Ctx`], and acts through the API
//! server's own write paths, so its writes are validated, versioned and watched like any
//! client's. Events go through one [`events::EventRecorder`].

pub mod api_backend;
pub mod context;
pub mod default_tolerations;
pub mod deployment;
mod deployment_history;
mod deployment_rollout;
mod deployment_scale;
mod deployment_status;
pub mod events;
#[cfg(test)]
pub mod fake;
pub mod garbage_collector;
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
}

impl Default for ControllerConfig {
    fn default() -> Self {
        ControllerConfig {
            workers: 4,
            default_toleration_seconds: 300,
        }
    }
}

/// Runs every controller, the scheduler and the Event writer until `stop`.
pub async fn run(api: Arc<ApiServer>, config: ControllerConfig, stop: CancellationToken) {
    let (events, event_rx) = events::EventRecorder::new();
    let shared = Shared {
        api: api.clone(),
        events: events.clone(),
    };
    let mut tasks = JoinSet::new();
    tasks.spawn(events::run(api.clone(), event_rx, stop.clone()));
    tasks.spawn(garbage_collector::run(api.clone()));
    let workers = config.workers;
    spawn(
        &mut tasks,
        replicaset::ReplicaSetController::new(),
        &shared,
        workers,
        &stop,
    );
    spawn(
        &mut tasks,
        replicaset::ReplicationManager::new(),
        &shared,
        workers,
        &stop,
    );
    stop.cancelled().await;
    tasks.shutdown().await;
}

/// Starts one controller's runner.
fn spawn<R: reconciler::Reconciler>(
    tasks: &mut JoinSet<()>,
    reconciler: R,
    shared: &Shared,
    workers: usize,
    stop: &CancellationToken,
) {
    tasks.spawn(runner::run(
        Arc::new(reconciler),
        shared.clone(),
        workers,
        stop.clone(),
    ));
}
