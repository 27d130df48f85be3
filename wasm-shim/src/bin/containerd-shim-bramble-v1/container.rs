//! One container (task) of this shim: its bundle, spec, mounted rootfs, program, init process
//! and exec'd processes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bramble_wasm_shim::instance::Program;

use crate::error::ShimError;
use crate::oci::{self, Plan, Spec};
use crate::process::Process;
use crate::rootfs::Rootfs;

/// One container.
pub struct Container {
    /// Bundle directory.
    pub bundle: String,
    /// Its OCI spec.
    pub spec: Spec,
    /// Where its image is.
    pub rootfs: Rootfs,
    /// The init process's program and what it gets; `None` for a pod sandbox placeholder.
    pub payload: Option<(Program, Plan)>,
    /// The init process.
    pub init: Arc<Process>,
    execs: Mutex<HashMap<String, Exec>>,
}

/// An exec'd process and what it runs.
#[derive(Clone)]
pub struct Exec {
    /// The process.
    pub process: Arc<Process>,
    /// Its program (the module its args[0] names).
    pub program: Program,
    /// What it gets.
    pub plan: Plan,
}

impl Container {
    /// A created container.
    pub fn new(
        bundle: String,
        spec: Spec,
        rootfs: Rootfs,
        payload: Option<(Program, Plan)>,
        init: Arc<Process>,
    ) -> Self {
        Self {
            bundle,
            spec,
            rootfs,
            payload,
            init,
            execs: Mutex::new(HashMap::new()),
        }
    }

    fn execs(&self) -> MutexGuard<'_, HashMap<String, Exec>> {
        // Inserts and removes are whole; a panic elsewhere cannot tear the map.
        self.execs.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The plan for an exec'd process: the container's spec with that process's args and env,
    /// its module looked up in this container's rootfs.
    pub fn exec_plan(&self, process: &oci::Process) -> Result<Plan, ShimError> {
        if self.payload.is_none() {
            return Err(ShimError::Unsupported {
                what: "exec in a pod sandbox container".into(),
            });
        }
        oci::plan(&self.spec, process, &self.rootfs.path)
    }

    /// Adds an exec'd process; its id must be new.
    pub fn add_exec(&self, exec: Exec) -> Result<(), ShimError> {
        let mut execs = self.execs();
        let exec_id = exec.process.exec_id.clone();
        if execs.contains_key(&exec_id) {
            return Err(ShimError::AlreadyExists {
                kind: "exec process",
                id: exec_id,
            });
        }
        execs.insert(exec_id, exec);
        Ok(())
    }

    /// The exec'd process `exec_id`.
    pub fn exec(&self, exec_id: &str) -> Result<Exec, ShimError> {
        self.execs()
            .get(exec_id)
            .cloned()
            .ok_or_else(|| ShimError::NotFound {
                kind: "exec process",
                id: exec_id.to_string(),
            })
    }

    /// The process `exec_id` names: init for an empty id.
    pub fn process(&self, exec_id: &str) -> Result<Arc<Process>, ShimError> {
        if exec_id.is_empty() {
            return Ok(Arc::clone(&self.init));
        }
        self.exec(exec_id).map(|exec| exec.process)
    }

    /// Removes an exec'd process.
    pub fn remove_exec(&self, exec_id: &str) {
        self.execs().remove(exec_id);
    }

    /// Every exec'd process.
    pub fn exec_processes(&self) -> Vec<Arc<Process>> {
        self.execs()
            .values()
            .map(|exec| Arc::clone(&exec.process))
            .collect()
    }
}
