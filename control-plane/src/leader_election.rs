//! Leader election through a coordination.k8s.io Lease, as kube-controller-manager does: when
//! several control planes share one store (etcd), only the holder of the Lease
//! `kube-system/bramble-controller-manager` runs the controllers and the scheduler; the others
//! serve the API and their nodes, and take over once the holder stops renewing for the lease
//! duration. With the embedded store there is one control plane and no election (and no Lease
//! renewal writes wearing the SD card).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use crate::apiserver::resources::lookup;
use crate::apiserver::status::ApiError;
use crate::apiserver::ApiServer;

/// The Lease's namespace and name.
pub const LEASE_NAMESPACE: &str = "kube-system";
/// The Lease's name.
pub const LEASE_NAME: &str = "bramble-controller-manager";
const MANAGER: &str = "leader-election";

/// Timings, kube-controller-manager's defaults.
#[derive(Debug, Clone)]
pub struct ElectionConfig {
    /// Who this control plane is (host name and a random suffix).
    pub identity: String,
    /// How long a Lease holds without renewal.
    pub lease_duration: Duration,
    /// How long the leader keeps trying to renew before it gives up leading.
    pub renew_deadline: Duration,
    /// How often candidates try and the leader renews.
    pub retry_period: Duration,
}

impl ElectionConfig {
    /// Defaults (15 s / 10 s / 2 s) for `identity`.
    pub fn new(identity: String) -> ElectionConfig {
        ElectionConfig {
            identity,
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// metav1.MicroTime: RFC 3339 with microseconds.
fn micro_time(at: time::OffsetDateTime) -> String {
    let seconds = crate::apiserver::objects::rfc3339(at);
    format!("{}.{:06}Z", seconds.trim_end_matches('Z'), at.microsecond())
}

fn parse_time(text: &str) -> Option<time::OffsetDateTime> {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()
}

/// Why this control plane does not hold the Lease.
#[derive(Debug)]
enum NotLeader {
    HeldBy(String),
    Api(ApiError),
}

impl std::fmt::Display for NotLeader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotLeader::HeldBy(holder) => write!(f, "the lease is held by {holder}"),
            NotLeader::Api(e) => write!(f, "{e}"),
        }
    }
}

/// Takes or renews the Lease; Ok when this control plane holds it afterwards.
async fn acquire_or_renew(api: &ApiServer, config: &ElectionConfig) -> Result<(), NotLeader> {
    let leases = lookup("coordination.k8s.io", "v1", "leases")
        .ok_or_else(|| NotLeader::Api(ApiError::internal("leases are not served")))?;
    let now = time::OffsetDateTime::now_utc();
    let stamp = micro_time(now);
    let duration = i64::try_from(config.lease_duration.as_secs()).unwrap_or(15);
    let me = config.identity.clone();
    let mut holder_seen = None;
    let updated = api
        .internal_update(
            leases,
            Some(LEASE_NAMESPACE),
            LEASE_NAME,
            MANAGER,
            |current| {
                let mut next = current.clone();
                let spec = &current["spec"];
                let holder = spec["holderIdentity"].as_str().unwrap_or_default();
                let renewed = spec["renewTime"].as_str().and_then(parse_time);
                let lasts = spec["leaseDurationSeconds"].as_i64().unwrap_or(duration);
                let expired = renewed.is_none_or(|r| r + time::Duration::seconds(lasts) < now);
                if holder == me {
                    next["spec"]["renewTime"] = json!(stamp);
                } else if holder.is_empty() || expired {
                    let transitions = spec["leaseTransitions"].as_i64().unwrap_or(0);
                    next["spec"] = json!({
                        "holderIdentity": me,
                        "leaseDurationSeconds": duration,
                        "acquireTime": stamp,
                        "renewTime": stamp,
                        "leaseTransitions": transitions + 1,
                    });
                } else {
                    holder_seen = Some(holder.to_string());
                    return Ok(current.clone());
                }
                Ok(next)
            },
        )
        .await;
    match updated {
        Ok(_) => match holder_seen {
            Some(holder) => Err(NotLeader::HeldBy(holder)),
            None => Ok(()),
        },
        Err(e) if e.code == 404 => {
            let lease = json!({
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": LEASE_NAME, "namespace": LEASE_NAMESPACE},
                "spec": {
                    "holderIdentity": config.identity,
                    "leaseDurationSeconds": duration,
                    "acquireTime": stamp,
                    "renewTime": stamp,
                    "leaseTransitions": 0,
                },
            });
            api.internal_create(leases, Some(LEASE_NAMESPACE), lease, MANAGER)
                .await
                .map(|_| ())
                .map_err(NotLeader::Api)
        }
        Err(e) => Err(NotLeader::Api(e)),
    }
}

/// Gives the Lease up on a clean shutdown, so another control plane need not wait it out.
async fn release(api: &ApiServer, config: &ElectionConfig) {
    let Some(leases) = lookup("coordination.k8s.io", "v1", "leases") else {
        return;
    };
    let me = config.identity.clone();
    let _ = api
        .internal_update(
            leases,
            Some(LEASE_NAMESPACE),
            LEASE_NAME,
            MANAGER,
            |current| {
                let mut next = current.clone();
                if current["spec"]["holderIdentity"] == me.as_str() {
                    next["spec"]["holderIdentity"] = Value::Null;
                    next["spec"]["leaseDurationSeconds"] = json!(1);
                }
                Ok(next)
            },
        )
        .await;
}

/// Runs `lead` whenever this control plane holds the Lease, until `stop`. `lead` gets a token
/// that is cancelled when leadership is lost; it must stop promptly then.
pub async fn run<F, Fut>(
    api: Arc<ApiServer>,
    config: ElectionConfig,
    stop: CancellationToken,
    lead: F,
) where
    F: Fn(CancellationToken) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut last_holder = String::new();
    loop {
        // Candidate: try until the Lease is ours.
        match acquire_or_renew(&api, &config).await {
            Ok(()) => {}
            Err(e) => {
                if let NotLeader::HeldBy(holder) = &e {
                    if *holder != last_holder {
                        tracing::info!(leader = %holder, "another control plane leads; standing by");
                        last_holder = holder.clone();
                    }
                } else {
                    tracing::warn!(error = %e, "cannot take the controller lease");
                }
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(config.retry_period) => continue,
                }
            }
        }
        tracing::info!(identity = %config.identity, "leading: starting the controllers and the scheduler");
        let term = stop.child_token();
        let leading = tokio::spawn(lead(term.clone()));
        let mut last_renewal = tokio::time::Instant::now();
        loop {
            tokio::select! {
                _ = stop.cancelled() => {
                    term.cancel();
                    let _ = leading.await;
                    release(&api, &config).await;
                    return;
                }
                _ = tokio::time::sleep(config.retry_period) => {}
            }
            match acquire_or_renew(&api, &config).await {
                Ok(()) => last_renewal = tokio::time::Instant::now(),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot renew the controller lease");
                    if last_renewal.elapsed() >= config.renew_deadline
                        || matches!(e, NotLeader::HeldBy(_))
                    {
                        break;
                    }
                }
            }
        }
        tracing::warn!("lost the controller lease: stopping the controllers and the scheduler");
        term.cancel();
        let _ = leading.await;
        last_holder.clear();
    }
}

/// This control plane's identity in the election: host name and a random suffix.
pub fn identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    format!("{host}_{}", uuid::Uuid::new_v4())
}
