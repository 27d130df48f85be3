//! The node agent's pod logic: mapping a Pod onto Wasm sandboxes (`spec`, `env`, `volumes`),
//! the status the kubelet would report (`status`, `container`, `qos`), CrashLoopBackOff
//! (`backoff`), probes (`probe`, `probe_tracker`) and the kubelet's Events (`events`).
//!
//! Everything but the probes' network calls and the volume files is pure and takes the clock
//! as an argument, so the agent's loop can be tested with a fake one.

pub mod backoff;
pub mod container;
mod env;
pub mod events;
pub mod probe;
pub mod probe_tracker;
pub mod qos;
pub mod spec;
pub mod status;
pub mod volumes;

pub use backoff::{
    crash_loop_state, should_restart, should_restart_init, BackOffDecision, CrashLoopBackOff,
    RestartPolicy,
};
pub use container::{terminated_from_exit, ContainerRecord, ContainerState};
pub use probe::{run_probe, ProbeOutcome};
pub use probe_tracker::{ContainerProbes, ProbeKind, ProbeTracker, Transition};
pub use spec::{container_sandbox, FieldProblem, PodEnv, SpecError};
pub use status::pod_status;
pub use volumes::{prepare_volumes, PodVolumes, PreparedVolume, VolumeProblem};
