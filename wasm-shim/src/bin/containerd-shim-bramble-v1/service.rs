//! containerd's task service (shim API v2) over this shim's containers: create, start, kill,
//! delete, wait, state, pids, exec, connect, shutdown, stats. Errors become ttrpc statuses in
//! one place (`error.rs`); every request is logged to the shim log containerd reads.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use containerd_shim::api::{
    ConnectRequest, ConnectResponse, CreateTaskRequest, CreateTaskResponse, DeleteRequest, Empty,
    ExecProcessRequest, KillRequest, PidsRequest, PidsResponse, ShutdownRequest, StartRequest,
    StartResponse, StateRequest, StateResponse, Status as TaskStatus, WaitRequest, WaitResponse,
};
use containerd_shim::protos::shim::shim::{
    CloseIORequest, ResizePtyRequest, StatsRequest, StatsResponse, UpdateTaskRequest,
};
use containerd_shim::protos::types::task::ProcessInfo;
use containerd_shim::{DeleteResponse, ExitSignal, Task, TtrpcContext, TtrpcResult};

use crate::container::{Container, Exec};
use crate::error::ShimError;
use crate::events::{self, Events};
use crate::oci::{self, Spec};
use crate::process::{ExitStatus, Process, Status};
use crate::rootfs;
use crate::runtime::Wasm;
use crate::stdio::Stdio;

/// The task service of one shim process.
pub struct Service {
    containers: Mutex<HashMap<String, Arc<Container>>>,
    wasm: Wasm,
    events: Arc<Events>,
    exit: Arc<ExitSignal>,
}

impl Service {
    /// A service with no containers yet.
    pub fn new(events: Events, exit: Arc<ExitSignal>) -> Self {
        Self {
            containers: Mutex::new(HashMap::new()),
            wasm: Wasm::new(),
            events: Arc::new(events),
            exit,
        }
    }

    fn containers(&self) -> MutexGuard<'_, HashMap<String, Arc<Container>>> {
        // Inserts and removes are whole; a panic elsewhere cannot tear the map.
        self.containers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn container(&self, id: &str) -> Result<Arc<Container>, ShimError> {
        self.containers()
            .get(id)
            .cloned()
            .ok_or_else(|| ShimError::NotFound {
                kind: "container",
                id: id.to_string(),
            })
    }

    /// The pid reported for every process: the shim's, which is where the guests run.
    fn pid() -> u32 {
        std::process::id()
    }

    fn do_create(&self, req: &CreateTaskRequest) -> Result<u32, ShimError> {
        if self.containers().contains_key(&req.id) {
            return Err(ShimError::AlreadyExists {
                kind: "container",
                id: req.id.clone(),
            });
        }
        if !req.checkpoint.is_empty() {
            return Err(ShimError::Unsupported {
                what: "restoring a checkpoint".into(),
            });
        }
        let bundle = PathBuf::from(&req.bundle);
        let spec = Spec::load(&bundle)?;
        let process = spec.process.clone().unwrap_or_default();
        let stdio = Stdio {
            stdin: req.stdin.clone(),
            stdout: req.stdout.clone(),
            stderr: req.stderr.clone(),
            terminal: req.terminal,
        };
        if req.terminal {
            return Err(ShimError::InvalidProcess {
                message: "a terminal (-t) is not supported: a Wasm guest has no tty".into(),
            });
        }
        let rootfs = rootfs::mount(&bundle, &req.rootfs, spec.root_path(&bundle))?;
        let payload = if spec.is_pod_sandbox() {
            Ok(None)
        } else {
            oci::plan(&spec, &process, &rootfs.path)
                .and_then(|plan| Ok(Some((self.wasm.load(&plan.wasm)?, plan))))
        };
        let payload = match payload {
            Ok(payload) => payload,
            Err(err) => {
                if let Err(unmount) = rootfs.release() {
                    log::warn!("{unmount}");
                }
                return Err(err);
            }
        };
        let init = Arc::new(Process::new(&req.id, "", stdio.clone()));
        let container = Container::new(req.bundle.clone(), spec, rootfs, payload, init);
        self.containers()
            .insert(req.id.clone(), Arc::new(container));
        self.events.send(events::create(
            &req.id,
            &req.bundle,
            req.rootfs.clone(),
            &stdio,
            Self::pid(),
        ));
        Ok(Self::pid())
    }

    fn do_start(&self, id: &str, exec_id: &str) -> Result<u32, ShimError> {
        let container = self.container(id)?;
        let (process, payload) = if exec_id.is_empty() {
            (Arc::clone(&container.init), container.payload.clone())
        } else {
            let exec = container.exec(exec_id)?;
            (exec.process, Some((exec.program, exec.plan)))
        };
        process.mark_running()?;
        let events = Arc::clone(&self.events);
        let on_exit = {
            let container = Arc::clone(&container);
            let process = Arc::clone(&process);
            move |exit: ExitStatus| {
                log::info!("process {} exited with {}", process.name(), exit.code);
                if process.exec_id.is_empty() {
                    // As in a pid namespace, the end of init ends every exec'd process.
                    for exec in container.exec_processes() {
                        let _ = exec.signal(libc::SIGKILL as u32);
                    }
                }
                events.send(events::exited(
                    &process.id,
                    &process.exec_id,
                    Self::pid(),
                    exit,
                ));
            }
        };
        if let Err(err) = self.wasm.launch(Arc::clone(&process), payload, on_exit) {
            let exit = process.mark_exited(None);
            self.events
                .send(events::exited(id, exec_id, Self::pid(), exit));
            return Err(err);
        }
        self.events.send(events::started(id, exec_id, Self::pid()));
        Ok(Self::pid())
    }

    fn do_kill(&self, req: &KillRequest) -> Result<(), ShimError> {
        let container = self.container(&req.id)?;
        let process = container.process(&req.exec_id)?;
        let mut targets = vec![process];
        if req.all && req.exec_id.is_empty() {
            targets.extend(container.exec_processes());
        }
        let mut first = Ok(());
        for (index, process) in targets.into_iter().enumerate() {
            match process.signal(req.signal) {
                Ok(true) => {
                    // It never started, so no instance will report the exit.
                    let (_, exit) = process.status();
                    if let Some(exit) = exit {
                        self.events.send(events::exited(
                            &process.id,
                            &process.exec_id,
                            Self::pid(),
                            exit,
                        ));
                    }
                }
                Ok(false) => {}
                // Only the addressed process's failure is the caller's business.
                Err(err) if index == 0 => first = Err(err),
                Err(_) => {}
            }
        }
        first
    }

    fn do_delete(&self, id: &str, exec_id: &str) -> Result<(u32, Option<ExitStatus>), ShimError> {
        let container = self.container(id)?;
        let process = container.process(exec_id)?;
        let (status, exit) = process.status();
        if !status.can_delete() {
            return Err(ShimError::WrongState {
                action: "delete",
                id: process.name().to_string(),
                status: status.as_str(),
            });
        }
        if !exec_id.is_empty() {
            container.remove_exec(exec_id);
            return Ok((Self::pid(), exit));
        }
        if status == Status::Created {
            // Never started: nothing runs, so it ends here (runc kills it the same way).
            process.signal(libc::SIGKILL as u32)?;
        }
        let running_execs = container
            .exec_processes()
            .iter()
            .filter(|p| p.status().0 == Status::Running)
            .count();
        if running_execs > 0 {
            return Err(ShimError::WrongState {
                action: "delete",
                id: id.to_string(),
                status: "still running exec processes",
            });
        }
        container.rootfs.release()?;
        self.containers().remove(id);
        let exit = process.status().1;
        self.events.send(events::deleted(id, Self::pid(), exit));
        Ok((Self::pid(), exit))
    }

    fn do_exec(&self, req: &ExecProcessRequest) -> Result<(), ShimError> {
        let container = self.container(&req.id)?;
        if req.exec_id.is_empty() {
            return Err(ShimError::InvalidProcess {
                message: "an exec process needs an exec id".into(),
            });
        }
        let spec_json = req.spec.as_ref().map(|any| any.value.as_slice());
        let process: oci::Process =
            serde_json::from_slice(spec_json.unwrap_or(b"{}")).map_err(|e| {
                ShimError::InvalidProcess {
                    message: format!("the exec process spec is not an OCI process: {e}"),
                }
            })?;
        let plan = container.exec_plan(&process)?;
        let program = self.wasm.load(&plan.wasm)?;
        let stdio = Stdio {
            stdin: req.stdin.clone(),
            stdout: req.stdout.clone(),
            stderr: req.stderr.clone(),
            terminal: req.terminal,
        };
        let process = Arc::new(Process::new(&req.id, &req.exec_id, stdio));
        container.add_exec(Exec {
            process,
            program,
            plan,
        })?;
        self.events.send(events::exec_added(&req.id, &req.exec_id));
        Ok(())
    }

    fn do_state(&self, req: &StateRequest) -> Result<StateResponse, ShimError> {
        let container = self.container(&req.id)?;
        let process = container.process(&req.exec_id)?;
        let (status, exit) = process.status();
        Ok(StateResponse {
            id: if req.exec_id.is_empty() {
                req.id.clone()
            } else {
                req.exec_id.clone()
            },
            bundle: container.bundle.clone(),
            pid: Self::pid(),
            status: match status {
                Status::Created => TaskStatus::CREATED,
                Status::Running => TaskStatus::RUNNING,
                Status::Stopped => TaskStatus::STOPPED,
            }
            .into(),
            stdin: process.stdio.stdin.clone(),
            stdout: process.stdio.stdout.clone(),
            stderr: process.stdio.stderr.clone(),
            terminal: process.stdio.terminal,
            exit_status: exit.map_or(0, |e| e.code),
            exited_at: exit.map(|e| events::timestamp(e.at)).into(),
            exec_id: req.exec_id.clone(),
            ..Default::default()
        })
    }
}

fn log_request<T>(what: &str, id: &str, exec_id: &str, result: &Result<T, ShimError>) {
    match result {
        Ok(_) => log::info!("{what} {id} {exec_id}: ok"),
        Err(err) => log::warn!("{what} {id} {exec_id}: {err}"),
    }
}

impl Task for Service {
    fn create(&self, _: &TtrpcContext, req: CreateTaskRequest) -> TtrpcResult<CreateTaskResponse> {
        let result = self.do_create(&req);
        log_request("create", &req.id, "", &result);
        Ok(CreateTaskResponse {
            pid: result?,
            ..Default::default()
        })
    }

    fn start(&self, _: &TtrpcContext, req: StartRequest) -> TtrpcResult<StartResponse> {
        let result = self.do_start(&req.id, &req.exec_id);
        log_request("start", &req.id, &req.exec_id, &result);
        Ok(StartResponse {
            pid: result?,
            ..Default::default()
        })
    }

    fn kill(&self, _: &TtrpcContext, req: KillRequest) -> TtrpcResult<Empty> {
        let result = self.do_kill(&req);
        log_request("kill", &req.id, &req.exec_id, &result);
        result?;
        Ok(Empty::new())
    }

    fn delete(&self, _: &TtrpcContext, req: DeleteRequest) -> TtrpcResult<DeleteResponse> {
        let result = self.do_delete(&req.id, &req.exec_id);
        log_request("delete", &req.id, &req.exec_id, &result);
        let (pid, exit) = result?;
        Ok(DeleteResponse {
            pid,
            exit_status: exit.map_or(0, |e| e.code),
            exited_at: exit.map(|e| events::timestamp(e.at)).into(),
            ..Default::default()
        })
    }

    fn wait(&self, _: &TtrpcContext, req: WaitRequest) -> TtrpcResult<WaitResponse> {
        let process = self
            .container(&req.id)
            .and_then(|c| c.process(&req.exec_id))?;
        // Blocks this request's thread only; the ttrpc server starts others as needed.
        let exit = process.wait();
        Ok(WaitResponse {
            exit_status: exit.code,
            exited_at: Some(events::timestamp(exit.at)).into(),
            ..Default::default()
        })
    }

    fn state(&self, _: &TtrpcContext, req: StateRequest) -> TtrpcResult<StateResponse> {
        Ok(self.do_state(&req)?)
    }

    fn pids(&self, _: &TtrpcContext, req: PidsRequest) -> TtrpcResult<PidsResponse> {
        self.container(&req.id)?;
        // Every instance runs inside the shim process: that is the one pid there is.
        Ok(PidsResponse {
            processes: vec![ProcessInfo {
                pid: Self::pid(),
                ..Default::default()
            }],
            ..Default::default()
        })
    }

    fn exec(&self, _: &TtrpcContext, req: ExecProcessRequest) -> TtrpcResult<Empty> {
        let result = self.do_exec(&req);
        log_request("exec", &req.id, &req.exec_id, &result);
        result?;
        Ok(Empty::new())
    }

    fn resize_pty(&self, _: &TtrpcContext, req: ResizePtyRequest) -> TtrpcResult<Empty> {
        // There is no pty; resizing one is a no-op rather than an error for clients that
        // always send it.
        self.container(&req.id)?.process(&req.exec_id)?;
        Ok(Empty::new())
    }

    fn close_io(&self, _: &TtrpcContext, req: CloseIORequest) -> TtrpcResult<Empty> {
        let process = self
            .container(&req.id)
            .and_then(|c| c.process(&req.exec_id))?;
        if req.stdin {
            process.close_stdin.cancel();
        }
        Ok(Empty::new())
    }

    fn update(&self, _: &TtrpcContext, _: UpdateTaskRequest) -> TtrpcResult<Empty> {
        Err(ShimError::Unsupported {
            what: "updating the resources of a running wasm task".into(),
        }
        .into())
    }

    fn stats(&self, _: &TtrpcContext, req: StatsRequest) -> TtrpcResult<StatsResponse> {
        self.container(&req.id)?;
        // The guests share the shim's cgroup with each other, so no per-task figures exist
        // that would not be made up.
        Err(ShimError::Unsupported {
            what: "per-task stats (the shim's cgroup holds all its pod's instances)".into(),
        }
        .into())
    }

    fn connect(&self, _: &TtrpcContext, req: ConnectRequest) -> TtrpcResult<ConnectResponse> {
        let task_pid = self.containers().get(&req.id).map_or(0, |_| Self::pid());
        Ok(ConnectResponse {
            shim_pid: Self::pid(),
            task_pid,
            version: env!("CARGO_PKG_VERSION").to_string(),
            ..Default::default()
        })
    }

    fn shutdown(&self, _: &TtrpcContext, req: ShutdownRequest) -> TtrpcResult<Empty> {
        // One shim serves a whole pod: it exits only once its last container is deleted.
        let remaining = self.containers().len();
        log::info!(
            "shutdown asked by {}: {remaining} containers remain",
            req.id
        );
        if req.now || remaining == 0 {
            self.exit.signal();
        }
        Ok(Empty::new())
    }
}
