//! The Events a kubelet records about pods and their containers (`kubectl describe pod`),
//! worded as kubelet 1.32 words them (pkg/kubelet/events, images/image_manager.go,
//! kuberuntime, prober), and [`Announced`], which keeps a condition seen on every sync pass
//! from being announced more than once per occurrence.

use std::time::Duration;

use bramble_api::node_protocol::PodEvent;
use k8s_openapi::api::core::v1::Pod;

use super::probe_tracker::ProbeKind;

/// An Event's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// Something expected happened.
    Normal,
    /// Something the user may need to act on.
    Warning,
}

impl EventType {
    /// The API form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Normal => "Normal",
            Self::Warning => "Warning",
        }
    }
}

/// Something that happened, before it is addressed to a pod: type, kubelet reason, message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Happening {
    /// Normal or Warning.
    pub event_type: EventType,
    /// The kubelet's reason, e.g. `Pulled`, `BackOff`.
    pub reason: &'static str,
    /// The kubelet's message.
    pub message: String,
}

impl Happening {
    fn normal(reason: &'static str, message: String) -> Happening {
        Happening {
            event_type: EventType::Normal,
            reason,
            message,
        }
    }

    fn warning(reason: &'static str, message: String) -> Happening {
        Happening {
            event_type: EventType::Warning,
            reason,
            message,
        }
    }

    /// The wire form, about `pod` and, when `field_path` is not empty, one of its containers.
    pub fn to_pod(&self, pod: &PodRef, field_path: &str) -> PodEvent {
        PodEvent {
            namespace: pod.namespace.clone(),
            pod_name: pod.name.clone(),
            pod_uid: pod.uid.clone(),
            r#type: self.event_type.as_str().to_string(),
            reason: self.reason.to_string(),
            message: self.message.clone(),
            field_path: field_path.to_string(),
        }
    }
}

/// The pod an event is about.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodRef {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// UID.
    pub uid: String,
}

impl PodRef {
    /// The reference to `pod`.
    pub fn of(pod: &Pod) -> PodRef {
        PodRef {
            namespace: pod
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| "default".into()),
            name: pod.metadata.name.clone().unwrap_or_default(),
            uid: pod.metadata.uid.clone().unwrap_or_default(),
        }
    }

    /// `name_namespace(uid)`, the kubelet's `format.Pod`.
    pub fn formatted(&self) -> String {
        format!("{}_{}({})", self.name, self.namespace, self.uid)
    }
}

/// A container's `involvedObject.fieldPath`: `spec.initContainers{name}` for an init container,
/// `spec.containers{name}` otherwise.
pub fn field_path(pod: &Pod, container: &str) -> String {
    let init = pod
        .spec
        .iter()
        .flat_map(|s| s.init_containers.iter().flatten())
        .any(|c| c.name == container);
    if init {
        format!("spec.initContainers{{{container}}}")
    } else {
        format!("spec.containers{{{container}}}")
    }
}

/// Pulling: the pull of `image` begins.
pub fn pulling(image: &str) -> Happening {
    Happening::normal("Pulling", format!("Pulling image {image:?}"))
}

/// Pulled: `image` is cached and the pull policy does not ask for a pull.
pub fn already_present(image: &str) -> Happening {
    Happening::normal(
        "Pulled",
        format!("Container image {image:?} already present on machine"),
    )
}

/// Pulled: `image` (`size` bytes) was pulled in `took`, `with_waiting` counting the wait for
/// other pulls.
pub fn pulled(image: &str, took: Duration, with_waiting: Duration, size: u64) -> Happening {
    Happening::normal(
        "Pulled",
        format!(
            "Successfully pulled image {image:?} in {} ({} including waiting). Image size: {size} bytes.",
            go_duration(took),
            go_duration(with_waiting)
        ),
    )
}

/// Failed: the pull of `image` failed.
pub fn pull_failed(image: &str, error: &str) -> Happening {
    Happening::warning("Failed", format!("Failed to pull image {image:?}: {error}"))
}

/// ErrImageNeverPull: `image` is not cached and the policy forbids pulling it.
pub fn never_pull(image: &str) -> Happening {
    Happening::warning(
        "ErrImageNeverPull",
        format!("Container image {image:?} is not present with pull policy of Never"),
    )
}

/// InspectFailed: `image` is not a valid reference.
pub fn invalid_image(image: &str, error: &str) -> Happening {
    Happening::warning(
        "InspectFailed",
        format!("Failed to apply default image tag {image:?}: {error}"),
    )
}

/// InspectFailed: the image cache could not be read for `image`.
pub fn inspect_failed(image: &str, error: &str) -> Happening {
    Happening::warning(
        "InspectFailed",
        format!("Failed to inspect image {image:?}: {error}"),
    )
}

/// BackOff (Normal, as in the kubelet): a failed pull of `image` is not retried yet.
pub fn back_off_pulling(image: &str) -> Happening {
    Happening::normal("BackOff", format!("Back-off pulling image {image:?}"))
}

/// Failed: the container could not be created or started. The kubelet's message is
/// `Error: <err>`, where err is the sentinel for image failures (`ErrImagePull`,
/// `ImagePullBackOff`, …, the same word as the waiting reason) and the runtime's message for
/// the others.
pub fn start_failed(reason: &str, message: &str) -> Happening {
    let what = match reason {
        "ErrImagePull" | "ImagePullBackOff" | "ErrImageNeverPull" | "InvalidImageName"
        | "ImageInspectError" => reason,
        _ => message,
    };
    Happening::warning("Failed", format!("Error: {what}"))
}

/// Created: the container's sandbox is ready to run (1.32 wording, with a colon).
pub fn created(container: &str) -> Happening {
    Happening::normal("Created", format!("Created container: {container}"))
}

/// Started: the container's instance runs.
pub fn started(container: &str) -> Happening {
    Happening::normal("Started", format!("Started container {container}"))
}

/// Killing: the container is stopped (pod deleted, deadline passed, node shutting down).
pub fn stopping(container: &str) -> Happening {
    Happening::normal("Killing", format!("Stopping container {container}"))
}

/// Killing: a liveness or startup probe failed; `restart` unless the restartPolicy is Never.
pub fn probe_killing(container: &str, kind: ProbeKind, restart: bool) -> Happening {
    let probe = match kind {
        ProbeKind::Startup => "startup",
        _ => "liveness",
    };
    let tail = if restart { ", will be restarted" } else { "" };
    Happening::normal(
        "Killing",
        format!("Container {container} failed {probe} probe{tail}"),
    )
}

/// BackOff (Warning): an exited container waits out its CrashLoopBackOff.
pub fn back_off(container: &str, pod: &PodRef) -> Happening {
    Happening::warning(
        "BackOff",
        format!(
            "Back-off restarting failed container {container} in pod {}",
            pod.formatted()
        ),
    )
}

/// Unhealthy: one run of a probe failed with `output`.
pub fn unhealthy(kind: ProbeKind, output: &str) -> Happening {
    let probe = match kind {
        ProbeKind::Startup => "Startup",
        ProbeKind::Liveness => "Liveness",
        ProbeKind::Readiness => "Readiness",
    };
    Happening::warning("Unhealthy", format!("{probe} probe failed: {output}"))
}

/// DeadlineExceeded (a pod event): activeDeadlineSeconds passed.
pub fn deadline_exceeded() -> Happening {
    Happening::normal(
        "DeadlineExceeded",
        "Pod was active on the node longer than the specified deadline".into(),
    )
}

/// A duration as Go's `time.Duration` prints it after truncation to milliseconds: `177ms`,
/// `1.5s`, `5m0s`, `1h2m3.004s`, `0s`.
pub fn go_duration(duration: Duration) -> String {
    let millis = duration.as_millis();
    if millis == 0 {
        return "0s".into();
    }
    if millis < 1000 {
        return format!("{millis}ms");
    }
    let (hours, minutes) = (millis / 3_600_000, millis / 60_000 % 60);
    let (seconds, fraction) = (millis / 1000 % 60, millis % 1000);
    let seconds = if fraction == 0 {
        format!("{seconds}s")
    } else {
        let digits = format!("{fraction:03}");
        format!("{seconds}.{}s", digits.trim_end_matches('0'))
    };
    match (hours, minutes) {
        (0, 0) => seconds,
        (0, _) => format!("{minutes}m{seconds}"),
        _ => format!("{hours}h{minutes}m{seconds}"),
    }
}

/// The last occurrence of a lasting condition that was announced, so a sync loop that sees the
/// condition on every pass announces it once per occurrence: once per back-off period (keyed
/// by the period's end), for instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announced<K> {
    last: Option<K>,
}

impl<K> Default for Announced<K> {
    fn default() -> Self {
        Self { last: None }
    }
}

impl<K: PartialEq> Announced<K> {
    /// True the first time `occurrence` is seen (then it is remembered), false on repeats.
    pub fn first(&mut self, occurrence: K) -> bool {
        if self.last.as_ref() == Some(&occurrence) {
            return false;
        }
        self.last = Some(occurrence);
        true
    }
}

#[cfg(test)]
#[path = "events_tests.rs"]
mod tests;
