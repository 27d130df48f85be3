//! Running an extra process in a running container (`kubectl exec`, exec probes).

use std::path::PathBuf;

use containerd_client::services::v1::{
    CloseIoRequest, DeleteProcessRequest, ExecProcessRequest, GetContainerRequest, KillRequest,
    StartRequest, WaitRequest,
};
use serde_json::Value;

use super::connection::Containerd;
use super::error::{absent_ok, ContainerdError};
use super::io::{container_dir, prepare_fifos, remove_container_files, wake_readers};
use super::spec::PROCESS_TYPE_URL;

/// The FIFOs of an exec'd process (created if missing; the caller opens them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecIo {
    /// FIFO the process reads its stdin from; `None` gives it none.
    pub stdin: Option<PathBuf>,
    /// FIFO its stdout is written to.
    pub stdout: PathBuf,
    /// FIFO its stderr is written to.
    pub stderr: PathBuf,
}

/// A started exec'd process.
#[derive(Debug)]
pub struct ExecHandle {
    client: Containerd,
    id: String,
    exec_id: String,
    pid: u32,
    dir: PathBuf,
}

impl Containerd {
    /// Runs `args` in the running container `id` as process `exec_id`, with the container's
    /// environment, user, working directory and capabilities; no terminal.
    ///
    /// Open the output FIFOs' readers concurrently with this call (see
    /// [`open_fifo_reader`](super::open_fifo_reader)); they see end of file if it fails.
    pub async fn exec(
        &self,
        id: &str,
        exec_id: &str,
        args: Vec<String>,
        io: ExecIo,
    ) -> Result<ExecHandle, ContainerdError> {
        let mut fifos = vec![io.stdout.clone(), io.stderr.clone()];
        fifos.extend(io.stdin.clone());
        let result = self.exec_process(id, exec_id, args, io).await;
        if result.is_err() {
            wake_readers(fifos).await;
        }
        result
    }

    async fn exec_process(
        &self,
        id: &str,
        exec_id: &str,
        args: Vec<String>,
        io: ExecIo,
    ) -> Result<ExecHandle, ContainerdError> {
        let spec_error = |reason: String| ContainerdError::Spec {
            id: id.to_owned(),
            reason,
        };
        if args.is_empty() {
            return Err(spec_error("exec needs a command".to_owned()));
        }
        if exec_id.is_empty() || exec_id.contains(['/', '\0']) || exec_id.starts_with('.') {
            return Err(spec_error(format!("invalid exec id {exec_id:?}")));
        }
        let container = self
            .containers()
            .get(self.request(GetContainerRequest { id: id.to_owned() }))
            .await
            .map_err(ContainerdError::rpc("get container", id))?
            .into_inner()
            .container
            .and_then(|c| c.spec)
            .ok_or_else(|| spec_error("the container has no runtime spec".to_owned()))?;
        let mut spec: Value = serde_json::from_slice(&container.value)
            .map_err(|e| spec_error(format!("its runtime spec is not JSON: {e}")))?;
        let mut process = spec
            .get_mut("process")
            .map(Value::take)
            .ok_or_else(|| spec_error("its runtime spec has no process".to_owned()))?;
        process["args"] = Value::from(args);
        process["terminal"] = Value::Bool(false);
        let bytes = serde_json::to_vec(&process)
            .map_err(|e| spec_error(format!("cannot serialise the process spec: {e}")))?;

        let dir = container_dir(&self.inner.config.state_dir, id).join(format!("exec-{exec_id}"));
        let mut fifos = vec![io.stdout.clone(), io.stderr.clone()];
        fifos.extend(io.stdin.clone());
        let held = prepare_fifos(dir.clone(), fifos).await?;
        let handle = ExecHandle {
            client: self.clone(),
            id: id.to_owned(),
            exec_id: exec_id.to_owned(),
            pid: 0,
            dir,
        };
        let path = |p: &Option<PathBuf>| {
            p.as_ref()
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default()
        };
        let exec = self
            .tasks()
            .exec(self.request(ExecProcessRequest {
                container_id: id.to_owned(),
                stdin: path(&io.stdin),
                stdout: path(&Some(io.stdout)),
                stderr: path(&Some(io.stderr)),
                terminal: false,
                spec: Some(prost_types::Any {
                    type_url: PROCESS_TYPE_URL.to_owned(),
                    value: bytes,
                }),
                exec_id: exec_id.to_owned(),
            }))
            .await
            .map_err(ContainerdError::rpc("exec in task", id));
        if let Err(e) = exec {
            handle.cleanup().await;
            return Err(e);
        }
        let started = self
            .tasks()
            .start(self.request(StartRequest {
                container_id: id.to_owned(),
                exec_id: exec_id.to_owned(),
            }))
            .await
            .map_err(ContainerdError::rpc("start exec'd process", id));
        drop(held);
        match started {
            Ok(response) => Ok(ExecHandle {
                pid: response.into_inner().pid,
                ..handle
            }),
            Err(e) => {
                handle.cleanup().await;
                Err(e)
            }
        }
    }
}

impl ExecHandle {
    /// The process's pid on the host.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Sends `signal` to the process (gone is not an error).
    pub async fn kill(&self, signal: u32) -> Result<(), ContainerdError> {
        let result = self
            .client
            .tasks()
            .kill(self.client.request(KillRequest {
                container_id: self.id.clone(),
                exec_id: self.exec_id.clone(),
                signal,
                all: false,
            }))
            .await
            .map_err(ContainerdError::rpc("kill exec'd process", &self.id));
        absent_ok(result).map(|_| ())
    }

    /// Closes the process's stdin once the caller has written all of it, so it sees EOF.
    pub async fn close_stdin(&self) -> Result<(), ContainerdError> {
        self.client
            .tasks()
            .close_io(self.client.request(CloseIoRequest {
                container_id: self.id.clone(),
                exec_id: self.exec_id.clone(),
                stdin: true,
            }))
            .await
            .map_err(ContainerdError::rpc(
                "close stdin of exec'd process",
                &self.id,
            ))?;
        Ok(())
    }

    /// Waits for the process to exit and returns its exit status (128 + signal when killed);
    /// then deletes it from the task and removes the FIFOs this layer created for it.
    pub async fn wait(self) -> Result<u32, ContainerdError> {
        let waited = self
            .client
            .tasks()
            .wait(self.client.request(WaitRequest {
                container_id: self.id.clone(),
                exec_id: self.exec_id.clone(),
            }))
            .await
            .map_err(ContainerdError::rpc("wait for exec'd process", &self.id));
        self.cleanup().await;
        Ok(waited?.into_inner().exit_status)
    }

    async fn cleanup(&self) {
        let _ = self
            .client
            .tasks()
            .delete_process(self.client.request(DeleteProcessRequest {
                container_id: self.id.clone(),
                exec_id: self.exec_id.clone(),
            }))
            .await;
        if let Err(e) = remove_container_files(self.dir.clone()).await {
            tracing::warn!(container = %self.id, exec = %self.exec_id, error = %e, "cannot remove an exec's FIFOs");
        }
    }
}
