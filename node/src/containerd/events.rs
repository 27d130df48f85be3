//! Exits and OOM kills. `wait` is containerd's Wait call, which works for any task of the
//! namespace, including ones an earlier agent process created. Whether the OOM killer acted is
//! known two ways: the `/tasks/oom` events this client has seen, and the kernel's `oom_kill`
//! counter of the container's memory cgroup, which still exists between the exit and the task's
//! deletion. The counter is what makes the answer right after an agent restart, or when the
//! event arrives after the exit (containerd delivers events asynchronously).

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use containerd_client::events::TaskOom;
use containerd_client::services::v1::{events_client::EventsClient, SubscribeRequest, WaitRequest};
use containerd_client::tonic::metadata::{Ascii, MetadataValue};
use containerd_client::tonic::transport::Channel;
use containerd_client::tonic::Request;
use prost::Message;

use super::connection::Containerd;
use super::error::ContainerdError;
use super::TaskExit;

/// Pause before re-subscribing after the event stream broke (containerd restarting).
const RESUBSCRIBE_DELAY: Duration = Duration::from_secs(1);

/// Remembers the containers of the namespace the OOM killer acted in, from containerd's events.
#[derive(Debug)]
pub(super) struct OomWatcher {
    seen: Arc<Mutex<HashSet<String>>>,
    /// The subscription loop; aborted when the last client clone is dropped.
    task: tokio::task::JoinHandle<()>,
}

impl OomWatcher {
    /// Starts the subscription loop. containerd sends no response headers before the first
    /// event, so this cannot wait for the subscription to be in place; the cgroup counter
    /// covers an OOM that happens before it is.
    pub(super) async fn start(
        channel: Channel,
        namespace_header: MetadataValue<Ascii>,
        namespace: &str,
    ) -> Result<OomWatcher, ContainerdError> {
        let seen = Arc::new(Mutex::new(HashSet::new()));
        let filter = format!("namespace=={namespace},topic==\"/tasks/oom\"");
        let task = tokio::spawn(watch(channel, namespace_header, filter, seen.clone()));
        Ok(OomWatcher { seen, task })
    }

    pub(super) fn saw(&self, id: &str) -> bool {
        self.lock().contains(id)
    }

    pub(super) fn forget(&self, id: &str) {
        self.lock().remove(id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        // A set of ids cannot be left half-updated by a panic.
        self.seen.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for OomWatcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn watch(
    channel: Channel,
    namespace_header: MetadataValue<Ascii>,
    filter: String,
    seen: Arc<Mutex<HashSet<String>>>,
) {
    loop {
        let mut request = Request::new(SubscribeRequest {
            filters: vec![filter.clone()],
        });
        request
            .metadata_mut()
            .insert("containerd-namespace", namespace_header.clone());
        match EventsClient::new(channel.clone()).subscribe(request).await {
            Ok(response) => {
                let mut stream = response.into_inner();
                loop {
                    match stream.message().await {
                        Ok(Some(envelope)) => {
                            let Some(event) = envelope.event else {
                                continue;
                            };
                            match TaskOom::decode(event.value.as_slice()) {
                                Ok(oom) => {
                                    tracing::info!(container = %oom.container_id, "containerd reports an OOM kill");
                                    seen.lock()
                                        .unwrap_or_else(PoisonError::into_inner)
                                        .insert(oom.container_id);
                                }
                                Err(e) => {
                                    tracing::warn!(topic = %envelope.topic, error = %e, "undecodable containerd event")
                                }
                            }
                        }
                        Ok(None) => break,
                        Err(status) => {
                            tracing::warn!(%status, "containerd event stream broke; re-subscribing");
                            break;
                        }
                    }
                }
            }
            Err(status) => {
                tracing::warn!(%status, "cannot subscribe to containerd events; retrying")
            }
        }
        tokio::time::sleep(RESUBSCRIBE_DELAY).await;
    }
}

impl Containerd {
    /// Resolves when the task's init process exits (works for a task created by an earlier
    /// agent process too, i.e. after an agent restart).
    pub async fn wait(&self, id: &str) -> Result<TaskExit, ContainerdError> {
        let response = self
            .tasks()
            .wait(self.request(WaitRequest {
                container_id: id.to_owned(),
                exec_id: String::new(),
            }))
            .await
            .map_err(ContainerdError::rpc("wait for task", id))?
            .into_inner();
        let oom_killed = self.inner.ooms.saw(id) || cgroup_oom_kills(id).await > 0;
        Ok(TaskExit {
            code: response.exit_status,
            exited_at: response.exited_at.and_then(system_time),
            oom_killed,
        })
    }
}

/// The memory cgroup of a container this layer created (`cgroupsPath` of its spec).
pub(super) fn memory_cgroup(id: &str) -> PathBuf {
    let v1 = PathBuf::from("/sys/fs/cgroup/memory")
        .join(super::spec::CGROUP_PARENT)
        .join(id);
    if v1.exists() {
        v1
    } else {
        PathBuf::from("/sys/fs/cgroup")
            .join(super::spec::CGROUP_PARENT)
            .join(id)
    }
}

/// The kernel's count of OOM kills in the container's memory cgroup (cgroup v1
/// `memory.oom_control`, v2 `memory.events`); 0 when the cgroup is gone or the kernel does not
/// count.
async fn cgroup_oom_kills(id: &str) -> u64 {
    let dir = memory_cgroup(id);
    for file in ["memory.oom_control", "memory.events"] {
        if let Ok(text) = tokio::fs::read_to_string(dir.join(file)).await {
            return parse_oom_kills(&text);
        }
    }
    0
}

fn parse_oom_kills(text: &str) -> u64 {
    text.lines()
        .filter_map(|line| line.strip_prefix("oom_kill "))
        .find_map(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

/// A protobuf timestamp as a `SystemTime`; containerd sends the zero time for "not exited".
pub(super) fn system_time(ts: prost_types::Timestamp) -> Option<SystemTime> {
    let secs = u64::try_from(ts.seconds).ok().filter(|s| *s > 0)?;
    let nanos = u32::try_from(ts.nanos).unwrap_or(0);
    SystemTime::UNIX_EPOCH.checked_add(Duration::new(secs, nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_oom_kill_counters_of_both_cgroup_versions() {
        let v1 = "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n";
        assert_eq!(parse_oom_kills(v1), 2);
        let v2 = "low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\noom_group_kill 0\n";
        assert_eq!(parse_oom_kills(v2), 1);
        assert_eq!(parse_oom_kills("oom_kill_disable 0\n"), 0);
    }

    #[test]
    fn zero_timestamps_mean_not_exited() {
        assert_eq!(system_time(prost_types::Timestamp::default()), None);
        // Go's zero time, which containerd sends for a running process.
        let go_zero = prost_types::Timestamp {
            seconds: -62135596800,
            nanos: 0,
        };
        assert_eq!(system_time(go_zero), None);
        let t = system_time(prost_types::Timestamp {
            seconds: 1_700_000_000,
            nanos: 5,
        });
        assert!(t.is_some());
    }
}
