//! What the agent records about each container, how a Wasm instance's end becomes a
//! Kubernetes terminated state, and the API form of both.

use bramble_wasm_shim::exit::{Exit, ExitReason};
use k8s_openapi::api::core::v1 as api;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::chrono::DateTime;
use time::OffsetDateTime;

/// A container's state, as in `ContainerStatus.state`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContainerState {
    /// Not running yet, or waiting to be restarted.
    Waiting {
        /// Why, e.g. `ContainerCreating`, `CrashLoopBackOff`, `CreateContainerConfigError`.
        reason: String,
        /// Details for the user.
        message: Option<String>,
    },
    /// Running since `started_at`.
    Running {
        /// When the instance started.
        started_at: OffsetDateTime,
    },
    /// Ended.
    Terminated {
        /// Process-style exit code.
        exit_code: i32,
        /// Why, e.g. `Completed`, `Error`, `OOMKilled`.
        reason: String,
        /// Details for the user, e.g. a trap message.
        message: Option<String>,
        /// When the instance started.
        started_at: OffsetDateTime,
        /// When it ended.
        finished_at: OffsetDateTime,
    },
}

impl ContainerState {
    /// Whether the container is running.
    pub fn is_running(&self) -> bool {
        matches!(self, Self::Running { .. })
    }

    /// The exit code if it has terminated.
    pub fn exit_code(&self) -> Option<i32> {
        match self {
            Self::Terminated { exit_code, .. } => Some(*exit_code),
            _ => None,
        }
    }

    /// The API form.
    pub fn to_api(&self) -> api::ContainerState {
        match self {
            Self::Waiting { reason, message } => api::ContainerState {
                waiting: Some(api::ContainerStateWaiting {
                    reason: Some(reason.clone()),
                    message: message.clone(),
                }),
                ..Default::default()
            },
            Self::Running { started_at } => api::ContainerState {
                running: Some(api::ContainerStateRunning {
                    started_at: Some(api_time(*started_at)),
                }),
                ..Default::default()
            },
            Self::Terminated {
                exit_code,
                reason,
                message,
                started_at,
                finished_at,
            } => api::ContainerState {
                terminated: Some(api::ContainerStateTerminated {
                    exit_code: *exit_code,
                    reason: Some(reason.clone()),
                    message: message.clone(),
                    started_at: Some(api_time(*started_at)),
                    finished_at: Some(api_time(*finished_at)),
                    ..Default::default()
                }),
                ..Default::default()
            },
        }
    }
}

/// What the agent knows about one container of a Pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerRecord {
    /// The container's name in the Pod spec.
    pub name: String,
    /// The image as written in the spec.
    pub image: String,
    /// The image's resolved digest reference.
    pub image_id: String,
    /// Its current state.
    pub state: ContainerState,
    /// How its previous run ended, if it was restarted.
    pub last_state: Option<ContainerState>,
    /// How many times it was restarted.
    pub restart_count: i32,
    /// Whether its readiness probe (or, without one, having started) says it is ready.
    pub ready: bool,
    /// Whether its startup probe passed; `None` before the agent has decided.
    pub started: Option<bool>,
}

impl ContainerRecord {
    /// The API form. A container that is not running is never ready, whatever the probes
    /// last said, as with the kubelet.
    pub fn to_api(&self) -> api::ContainerStatus {
        api::ContainerStatus {
            name: self.name.clone(),
            image: self.image.clone(),
            image_id: self.image_id.clone(),
            state: Some(self.state.to_api()),
            last_state: Some(
                self.last_state
                    .as_ref()
                    .map(ContainerState::to_api)
                    .unwrap_or_default(),
            ),
            restart_count: self.restart_count,
            ready: self.ready && self.state.is_running(),
            started: self.started,
            ..Default::default()
        }
    }
}

/// The API form of a timestamp; Kubernetes keeps whole seconds, and so does this, so that
/// statuses compare equal after a round trip through the API server.
pub(crate) fn api_time(at: OffsetDateTime) -> Time {
    Time(DateTime::from_timestamp(at.unix_timestamp(), 0).unwrap_or_default())
}

/// The terminated state for how a Wasm instance ended.
pub fn terminated_from_exit(
    exit: &Exit,
    started_at: OffsetDateTime,
    finished_at: OffsetDateTime,
) -> ContainerState {
    let (reason, message) = match &exit.reason {
        ExitReason::Completed => ("Completed", None),
        ExitReason::Error(_) => ("Error", None),
        ExitReason::OOMKilled => ("OOMKilled", None),
        ExitReason::DeadlineExceeded => (
            "DeadlineExceeded",
            Some(format!(
                "stopped after its wall-clock limit ({}s)",
                exit.wall_time.as_secs()
            )),
        ),
        ExitReason::CpuBudgetExceeded => (
            "CPULimitExceeded",
            Some(format!(
                "stopped after using its CPU budget ({}ms of CPU)",
                exit.cpu_time.as_millis()
            )),
        ),
        ExitReason::Trap(message) => ("Trap", Some(message.clone())),
        // A container stopped by the agent looks like one SIGKILLed under containerd: reason
        // Error with code 137; the message says it was a kill, not a crash.
        ExitReason::Killed => ("Error", Some("Killed".to_owned())),
    };
    ContainerState::Terminated {
        exit_code: exit.code,
        reason: reason.to_owned(),
        message,
        started_at,
        finished_at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bramble_wasm_shim::exit::{KILLED_CODE, TRAP_CODE};
    use std::time::Duration;

    fn exit(code: i32, reason: ExitReason) -> Exit {
        Exit {
            code,
            reason,
            wall_time: Duration::from_secs(3),
            cpu_time: Duration::from_millis(1500),
            memory_bytes: 1 << 20,
        }
    }

    fn reason_and_message(exit: &Exit) -> (i32, String, Option<String>) {
        let start = OffsetDateTime::UNIX_EPOCH;
        match terminated_from_exit(exit, start, start + Duration::from_secs(3)) {
            ContainerState::Terminated {
                exit_code,
                reason,
                message,
                ..
            } => (exit_code, reason, message),
            other => panic!("not terminated: {other:?}"),
        }
    }

    #[test]
    fn each_exit_reason_maps_to_the_kubernetes_reason() {
        let cases = [
            (exit(0, ExitReason::Completed), 0, "Completed"),
            (exit(3, ExitReason::Error(3)), 3, "Error"),
            (exit(KILLED_CODE, ExitReason::OOMKilled), 137, "OOMKilled"),
            (
                exit(KILLED_CODE, ExitReason::DeadlineExceeded),
                137,
                "DeadlineExceeded",
            ),
            (
                exit(KILLED_CODE, ExitReason::CpuBudgetExceeded),
                137,
                "CPULimitExceeded",
            ),
            (exit(KILLED_CODE, ExitReason::Killed), 137, "Error"),
            (
                exit(TRAP_CODE, ExitReason::Trap("boom".into())),
                134,
                "Trap",
            ),
        ];
        for (exit, code, reason) in cases {
            let (got_code, got_reason, _) = reason_and_message(&exit);
            assert_eq!((got_code, got_reason.as_str()), (code, reason), "{exit:?}");
        }
    }

    #[test]
    fn traps_and_kills_say_what_happened() {
        let trap = exit(TRAP_CODE, ExitReason::Trap("wasm trap: unreachable".into()));
        assert_eq!(
            reason_and_message(&trap).2.as_deref(),
            Some("wasm trap: unreachable")
        );
        let killed = exit(KILLED_CODE, ExitReason::Killed);
        assert_eq!(reason_and_message(&killed).2.as_deref(), Some("Killed"));
        let cpu = exit(KILLED_CODE, ExitReason::CpuBudgetExceeded);
        assert!(reason_and_message(&cpu)
            .2
            .is_some_and(|m| m.contains("1500ms")));
    }

    #[test]
    fn a_stopped_container_is_never_reported_ready() {
        let record = ContainerRecord {
            name: "app".into(),
            image: "reg/app:1".into(),
            image_id: "reg/app@sha256:00".into(),
            state: ContainerState::Waiting {
                reason: "CrashLoopBackOff".into(),
                message: None,
            },
            last_state: None,
            restart_count: 2,
            ready: true,
            started: Some(false),
        };
        let status = record.to_api();
        assert!(!status.ready);
        assert_eq!(status.restart_count, 2);
        assert_eq!(status.last_state, Some(api::ContainerState::default()));
    }

    #[test]
    fn api_times_are_whole_seconds() {
        let at = OffsetDateTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_750);
        let json = serde_json::to_value(api_time(at)).unwrap_or_default();
        assert_eq!(json, "2023-11-14T22:13:20Z");
    }
}
