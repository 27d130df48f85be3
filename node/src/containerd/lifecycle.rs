//! A container's life: create (container record, snapshot, task), start, kill, remove.

use std::path::Path;
use std::time::Duration;

use containerd_client::services::v1::container::Runtime;
use containerd_client::services::v1::snapshots::{
    MountsRequest, PrepareSnapshotRequest, RemoveSnapshotRequest,
};
use containerd_client::services::v1::{
    Container, CreateContainerRequest, CreateTaskRequest, DeleteContainerRequest,
    DeleteTaskRequest, GetRequest, KillRequest, StartRequest, WaitRequest,
};
use containerd_client::tonic::Code;
use containerd_client::types::v1::Status as ProcessStatus;
use containerd_client::types::Mount;

use super::connection::Containerd;
use super::error::{absent_ok, ContainerdError};
use super::io::{
    container_dir, prepare_fifos, remove_container_files, wake_readers, write_etc_files,
};
use super::spec::{resolve_user, runtime_spec, EtcFiles, CGROUP_PARENT, SPEC_TYPE_URL};
use super::{LaunchSpec, RUNC_RUNTIME};

/// SIGKILL.
const SIGKILL: u32 = 9;
/// How long `remove` waits for a killed task to be reaped before deleting it anyway.
const KILL_WAIT: Duration = Duration::from_secs(30);
/// containerd's limit on identifiers, which this layer also uses as file and cgroup names.
const MAX_ID_LEN: usize = 76;

impl Containerd {
    /// Creates the container (with a fresh snapshot from the image's chain id) and its task,
    /// not yet started. Labels are stored on the container. Stdout and stderr go to the FIFOs
    /// named in `spec` (created if missing). On failure nothing is left behind.
    ///
    /// Open the output FIFOs' readers after this returns and before [`start`](Self::start), or
    /// concurrently with this call (see [`open_fifo_reader`](super::open_fifo_reader)); they
    /// see end of file if it fails.
    pub async fn create(&self, spec: &LaunchSpec) -> Result<(), ContainerdError> {
        let result = self.create_container(spec).await;
        if result.is_err() {
            wake_readers(vec![spec.stdout.clone(), spec.stderr.clone()]).await;
        }
        result
    }

    async fn create_container(&self, spec: &LaunchSpec) -> Result<(), ContainerdError> {
        check_id(&spec.id)?;
        if spec.args.is_empty() {
            return Err(ContainerdError::Spec {
                id: spec.id.clone(),
                reason: "no command: the Pod sets no command and the image no entrypoint or cmd"
                    .to_owned(),
            });
        }
        let user = resolve_user(spec)?;
        let dir = container_dir(&self.inner.config.state_dir, &spec.id);
        let (hosts, hostname, resolv_conf) = write_etc_files(
            dir.clone(),
            spec.hostname.clone(),
            spec.hosts_file.clone(),
            spec.resolv_conf.clone(),
        )
        .await?;
        let etc = EtcFiles {
            hosts,
            hostname,
            resolv_conf,
        };
        let document = runtime_spec(spec, user, &etc, swap_accounted());
        let bytes = serde_json::to_vec(&document).map_err(|e| ContainerdError::Spec {
            id: spec.id.clone(),
            reason: format!("cannot serialise the runtime spec: {e}"),
        })?;
        let runtime = if spec.runtime.is_empty() {
            RUNC_RUNTIME.to_owned()
        } else {
            spec.runtime.clone()
        };
        let container = Container {
            id: spec.id.clone(),
            labels: spec.labels.clone().into_iter().collect(),
            image: spec.image.name.clone(),
            runtime: Some(Runtime {
                name: runtime,
                options: None,
            }),
            spec: Some(prost_types::Any {
                type_url: SPEC_TYPE_URL.to_owned(),
                value: bytes,
            }),
            snapshotter: self.inner.config.snapshotter.clone(),
            snapshot_key: spec.id.clone(),
            ..Default::default()
        };
        // The record comes first: it references the snapshot, so containerd's garbage
        // collector never sees an unreferenced snapshot of ours.
        let created = self
            .containers()
            .create(self.request(CreateContainerRequest {
                container: Some(container),
            }))
            .await
            .map_err(ContainerdError::rpc("create container", &spec.id));
        if let Err(e) = created {
            if !e.is_already_exists() {
                let _ = remove_container_files(dir).await;
            }
            return Err(e);
        }
        let result = self.create_task(spec, dir).await;
        if result.is_err() {
            if let Err(cleanup) = self.remove(&spec.id).await {
                tracing::warn!(container = %spec.id, error = %cleanup, "cleanup after a failed create failed");
            }
        }
        result
    }

    async fn create_task(
        &self,
        spec: &LaunchSpec,
        dir: std::path::PathBuf,
    ) -> Result<(), ContainerdError> {
        let rootfs = self.prepare_rootfs(&spec.id, &spec.image.chain_id).await?;
        let held = prepare_fifos(dir, vec![spec.stdout.clone(), spec.stderr.clone()]).await?;
        self.tasks()
            .create(self.request(CreateTaskRequest {
                container_id: spec.id.clone(),
                rootfs,
                stdin: String::new(),
                stdout: spec.stdout.to_string_lossy().into_owned(),
                stderr: spec.stderr.to_string_lossy().into_owned(),
                terminal: false,
                ..Default::default()
            }))
            .await
            .map_err(ContainerdError::rpc("create task", &spec.id))?;
        drop(held);
        Ok(())
    }

    /// A fresh writable snapshot on top of the image, keyed by the container id. A snapshot left
    /// by an earlier failed removal is replaced (it belonged to no container).
    async fn prepare_rootfs(
        &self,
        id: &str,
        chain_id: &str,
    ) -> Result<Vec<Mount>, ContainerdError> {
        let snapshotter = self.inner.config.snapshotter.clone();
        for attempt in 0..2 {
            let prepared = self
                .snapshots()
                .prepare(self.request(PrepareSnapshotRequest {
                    snapshotter: snapshotter.clone(),
                    key: id.to_owned(),
                    parent: chain_id.to_owned(),
                    labels: Default::default(),
                }))
                .await;
            match prepared {
                Ok(response) => return Ok(response.into_inner().mounts),
                Err(status) if status.code() == Code::AlreadyExists && attempt == 0 => {
                    self.remove_snapshot(id).await?;
                }
                Err(status) => return Err(ContainerdError::rpc("prepare snapshot", id)(status)),
            }
        }
        // Unreachable in practice (the second attempt returns); ask containerd for the mounts.
        Ok(self
            .snapshots()
            .mounts(self.request(MountsRequest {
                snapshotter,
                key: id.to_owned(),
            }))
            .await
            .map_err(ContainerdError::rpc("get snapshot mounts", id))?
            .into_inner()
            .mounts)
    }

    /// Starts the created task; returns its init process's pid.
    pub async fn start(&self, id: &str) -> Result<u32, ContainerdError> {
        Ok(self
            .tasks()
            .start(self.request(StartRequest {
                container_id: id.to_owned(),
                exec_id: String::new(),
            }))
            .await
            .map_err(ContainerdError::rpc("start task", id))?
            .into_inner()
            .pid)
    }

    /// Sends `signal` to the task's init process. A task that is gone (or a process that has
    /// exited) is not an error.
    pub async fn kill(&self, id: &str, signal: u32) -> Result<(), ContainerdError> {
        self.signal(id, signal, false).await
    }

    async fn signal(&self, id: &str, signal: u32, all: bool) -> Result<(), ContainerdError> {
        let result = self
            .tasks()
            .kill(self.request(KillRequest {
                container_id: id.to_owned(),
                exec_id: String::new(),
                signal,
                all,
            }))
            .await
            .map_err(ContainerdError::rpc("kill task", id));
        absent_ok(result).map(|_| ())
    }

    /// Deletes the task (killing it first if it still runs), the container, its snapshot, its
    /// cgroup and the files this layer made for it. Idempotent.
    pub async fn remove(&self, id: &str) -> Result<(), ContainerdError> {
        let task = absent_ok(
            self.tasks()
                .get(self.request(GetRequest {
                    container_id: id.to_owned(),
                    exec_id: String::new(),
                }))
                .await
                .map_err(ContainerdError::rpc("get task", id)),
        )?;
        if let Some(process) = task.and_then(|t| t.into_inner().process) {
            if process.status != ProcessStatus::Stopped as i32 {
                self.signal(id, SIGKILL, true).await?;
                let waited = tokio::time::timeout(
                    KILL_WAIT,
                    self.tasks().wait(self.request(WaitRequest {
                        container_id: id.to_owned(),
                        exec_id: String::new(),
                    })),
                )
                .await;
                if waited.is_err() {
                    tracing::warn!(container = %id, "task did not exit {KILL_WAIT:?} after SIGKILL; deleting it anyway");
                }
            }
            absent_ok(
                self.tasks()
                    .delete(self.request(DeleteTaskRequest {
                        container_id: id.to_owned(),
                    }))
                    .await
                    .map_err(ContainerdError::rpc("delete task", id)),
            )?;
        }
        absent_ok(
            self.containers()
                .delete(self.request(DeleteContainerRequest { id: id.to_owned() }))
                .await
                .map_err(ContainerdError::rpc("delete container", id)),
        )?;
        self.remove_snapshot(id).await?;
        self.inner.ooms.forget(id);
        remove_cgroups(id).await;
        remove_container_files(container_dir(&self.inner.config.state_dir, id)).await
    }

    async fn remove_snapshot(&self, key: &str) -> Result<(), ContainerdError> {
        absent_ok(
            self.snapshots()
                .remove(self.request(RemoveSnapshotRequest {
                    snapshotter: self.inner.config.snapshotter.clone(),
                    key: key.to_owned(),
                }))
                .await
                .map_err(ContainerdError::rpc("remove snapshot", key)),
        )
        .map(|_| ())
    }
}

/// Container ids become file names, cgroup names and snapshot keys: containerd's identifier
/// rules (letters, digits, `.`, `_`, `-`; starting alphanumeric; at most 76 characters).
fn check_id(id: &str) -> Result<(), ContainerdError> {
    let valid = !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id.starts_with(|c: char| c.is_ascii_alphanumeric())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if valid {
        Ok(())
    } else {
        Err(ContainerdError::Spec {
            id: id.to_owned(),
            reason: format!(
                "not a valid container id (letters, digits, '.', '_', '-', starting with a letter or digit, at most {MAX_ID_LEN} characters)"
            ),
        })
    }
}

/// Whether runc can limit memory plus swap: cgroup v1 needs swap accounting
/// (`memory.memsw.*`); cgroup v2 always can.
fn swap_accounted() -> bool {
    Path::new("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes").exists()
        || Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

/// Removes the container's cgroups if the runtime left any (runc removes them when the task is
/// deleted; a shim killed mid-way does not). Only empty cgroups can be removed, so this never
/// touches a running container's.
async fn remove_cgroups(id: &str) {
    let id = id.to_owned();
    let _ = tokio::task::spawn_blocking(move || {
        let Ok(controllers) = std::fs::read_dir("/sys/fs/cgroup") else {
            return;
        };
        let mut dirs: Vec<_> = controllers
            .flatten()
            .map(|c| c.path().join(CGROUP_PARENT).join(&id))
            .collect();
        dirs.push(Path::new("/sys/fs/cgroup").join(CGROUP_PARENT).join(&id));
        for dir in dirs.iter().filter(|d| d.is_dir()) {
            if let Err(e) = std::fs::remove_dir(dir) {
                tracing::warn!(cgroup = %dir.display(), error = %e, "cannot remove a container's cgroup");
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_checked_before_they_become_paths() {
        assert!(check_id("default-web-7f9c-app").is_ok());
        assert!(check_id("a.b_c").is_ok());
        for bad in ["", "../etc", "a/b", "-x", "with space", &"x".repeat(77)] {
            assert!(check_id(bad).is_err(), "{bad:?} accepted");
        }
    }
}
