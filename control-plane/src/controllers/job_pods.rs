//! A Job's pods as the Job controller sees them: which are active, ready, terminating, done
//! (and with which completion index), how long a replacement must wait after failures, which
//! pods go first when there are too many, and the pod a Job stamps out of its template.
//!
//! Kubernetes counts finished pods through a tracking finalizer; here they are counted from
//! the pods that exist, and the Job status keeps the high-water mark (see `job.rs`), so a pod
//! is counted once however often it is seen.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::chrono::{DateTime, Utc};

use super::context::{controller_of, controller_ref};
use super::pods;

/// Label (and selector) naming the Job a pod belongs to.
pub const JOB_NAME_LABEL: &str = "batch.kubernetes.io/job-name";
/// The pre-1.27 spelling of [`JOB_NAME_LABEL`], still set by Kubernetes.
pub const LEGACY_JOB_NAME_LABEL: &str = "job-name";
/// Label carrying the uid of the Job a pod belongs to.
pub const CONTROLLER_UID_LABEL: &str = "batch.kubernetes.io/controller-uid";
/// The pre-1.27 spelling of [`CONTROLLER_UID_LABEL`], still set by Kubernetes.
pub const LEGACY_CONTROLLER_UID_LABEL: &str = "controller-uid";
/// Annotation and label holding an Indexed Job pod's completion index.
pub const COMPLETION_INDEX_KEY: &str = "batch.kubernetes.io/job-completion-index";

/// Delay before replacing the first failed pod; doubles per further failure.
const BACKOFF_BASE: Duration = Duration::from_secs(10);
/// Longest delay before replacing a failed pod.
const BACKOFF_MAX: Duration = Duration::from_secs(360);

/// The pods a Job controls.
#[derive(Debug, Clone, Default)]
pub struct JobPods {
    pods: Vec<Pod>,
}

impl JobPods {
    /// The pods of `owned` whose controller is the Job with `job_uid` (a pod merely
    /// referencing the Job is not its to count or delete).
    pub fn new(owned: Vec<Pod>, job_uid: &str) -> JobPods {
        let pods = owned
            .into_iter()
            .filter(|p| controller_of(&p.metadata).is_some_and(|r| r.uid == job_uid))
            .collect();
        JobPods { pods }
    }

    /// Pods still running or about to (not finished, not being deleted).
    pub fn active(&self) -> Vec<&Pod> {
        self.pods.iter().filter(|p| pods::is_active(p)).collect()
    }

    /// Active pods whose Ready condition is True.
    pub fn ready(&self) -> i32 {
        count(
            self.pods
                .iter()
                .filter(|p| pods::is_active(p) && pods::is_ready(p)),
        )
    }

    /// Pods being deleted that have not reached a terminal phase.
    pub fn terminating(&self) -> i32 {
        count(
            self.pods
                .iter()
                .filter(|p| pods::is_terminating(p) && !pods::is_finished(p)),
        )
    }

    /// Pods that succeeded.
    pub fn succeeded(&self) -> i32 {
        count(self.pods.iter().filter(|p| pods::phase(p) == "Succeeded"))
    }

    /// Pods that count as failures (see [`is_counted_failed`]).
    pub fn failed(&self, count_terminating: bool) -> i32 {
        count(
            self.pods
                .iter()
                .filter(|p| is_counted_failed(p, count_terminating)),
        )
    }

    /// Completion indexes below `completions` of pods that succeeded.
    pub fn succeeded_indexes(&self, completions: i32) -> Vec<i32> {
        self.pods
            .iter()
            .filter(|p| pods::phase(p) == "Succeeded")
            .filter_map(completion_index)
            .filter(|i| *i < completions)
            .collect()
    }

    /// Indexes some pod is working on: active pods, plus terminating ones when a replacement
    /// must wait for them to be gone.
    pub fn indexes_in_use(&self, include_terminating: bool) -> BTreeSet<i32> {
        self.pods
            .iter()
            .filter(|p| {
                pods::is_active(p)
                    || (include_terminating && pods::is_terminating(p) && !pods::is_finished(p))
            })
            .filter_map(completion_index)
            .collect()
    }

    /// Container restarts of pods still Pending or Running: with restartPolicy OnFailure the
    /// kubelet retries in place, and Kubernetes counts those retries against backoffLimit.
    pub fn restarts(&self) -> i32 {
        self.pods
            .iter()
            .filter(|p| matches!(pods::phase(p), "Pending" | "Running"))
            .filter_map(|p| p.status.as_ref())
            .flat_map(|s| {
                s.init_container_statuses
                    .iter()
                    .flatten()
                    .chain(s.container_statuses.iter().flatten())
            })
            .map(|c| c.restart_count.max(0))
            .fold(0i32, i32::saturating_add)
    }

    /// How long new pods must still wait after the failures since (or with) the last success: 10s
    /// doubling per failure up to 6 minutes, from the last failure.
    pub fn backoff_remaining(&self, now: DateTime<Utc>, count_terminating: bool) -> Duration {
        let last_success = self
            .pods
            .iter()
            .filter(|p| pods::phase(p) == "Succeeded")
            .map(finish_time)
            .max();
        let failures: Vec<DateTime<Utc>> = self
            .pods
            .iter()
            .filter(|p| is_counted_failed(p, count_terminating))
            .map(finish_time)
            .filter(|t| last_success.is_none_or(|s| *t >= s))
            .collect();
        let Some(last_failure) = failures.iter().max() else {
            return Duration::ZERO;
        };
        let mut backoff = BACKOFF_BASE;
        for _ in 1..failures.len() {
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
        let elapsed = (now - *last_failure).to_std().unwrap_or(Duration::ZERO);
        backoff.saturating_sub(elapsed)
    }
}

fn count<'a>(pods: impl Iterator<Item = &'a Pod>) -> i32 {
    i32::try_from(pods.count()).unwrap_or(i32::MAX)
}

/// Whether `pod` counts as a failure: phase Failed, or (as Kubernetes' default
/// podReplacementPolicy TerminatingOrFailed has it) deleted before it succeeded, when
/// `count_terminating`.
pub fn is_counted_failed(pod: &Pod, count_terminating: bool) -> bool {
    match pods::phase(pod) {
        "Failed" => true,
        "Succeeded" => false,
        _ => count_terminating && pods::is_terminating(pod),
    }
}

/// The completion index of an Indexed Job pod, from its annotation.
pub fn completion_index(pod: &Pod) -> Option<i32> {
    pod.metadata
        .annotations
        .as_ref()?
        .get(COMPLETION_INDEX_KEY)?
        .parse::<i32>()
        .ok()
        .filter(|i| *i >= 0)
}

/// When `pod` finished, as Kubernetes judges it: its Ready condition turning False, else the
/// last container to terminate, else its deletion; failing all those, its creation.
pub fn finish_time(pod: &Pod) -> DateTime<Utc> {
    let status = pod.status.as_ref();
    let ready_false = status
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| {
            cs.iter()
                .find(|c| c.type_ == "Ready" && c.status == "False")
        })
        .and_then(|c| c.last_transition_time.as_ref())
        .map(|t| t.0);
    let containers = status.and_then(|s| {
        let statuses = s.container_statuses.as_ref()?;
        statuses
            .iter()
            .map(|c| {
                c.state
                    .as_ref()?
                    .terminated
                    .as_ref()?
                    .finished_at
                    .as_ref()
                    .map(|t| t.0)
            })
            .collect::<Option<Vec<_>>>()?
            .into_iter()
            .max()
    });
    ready_false
        .or(containers)
        .or_else(|| pod.metadata.deletion_timestamp.as_ref().map(|t| t.0))
        .or_else(|| pod.metadata.creation_timestamp.as_ref().map(|t| t.0))
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// Sorts pods so that the cheapest to lose come first (Kubernetes' ActivePods order):
/// unscheduled before scheduled, Pending before Running, not ready before ready, ready more
/// recently first, more restarts first, newer first.
pub fn sort_for_removal(pods: &mut [&Pod]) {
    pods.sort_by_key(|p| {
        let scheduled = p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some();
        let phase_rank = match pods::phase(p) {
            "Pending" => 0,
            "Unknown" => 1,
            _ => 2,
        };
        let restarts: i32 = p
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .map(|cs| cs.iter().map(|c| c.restart_count).sum())
            .unwrap_or(0);
        (
            scheduled,
            phase_rank,
            pods::is_ready(p),
            Reverse(pods::ready_since(p)),
            Reverse(restarts),
            Reverse(p.metadata.creation_timestamp.as_ref().map(|t| t.0)),
        )
    });
}

/// The active pods to delete so that at most `keep` remain. For an Indexed Job with
/// `completions`, pods without a valid index and all but the best pod of a repeated index go
/// first, whatever `keep` says.
pub fn pods_to_remove(
    mut active: Vec<&Pod>,
    indexed_completions: Option<i32>,
    keep: usize,
) -> Vec<&Pod> {
    let mut remove = Vec::new();
    if let Some(completions) = indexed_completions {
        let mut by_index: BTreeMap<i32, Vec<&Pod>> = BTreeMap::new();
        for pod in active {
            match completion_index(pod).filter(|i| *i < completions) {
                Some(index) => by_index.entry(index).or_default().push(pod),
                None => remove.push(pod),
            }
        }
        active = Vec::new();
        for (_, mut same) in by_index {
            sort_for_removal(&mut same);
            if let Some(best) = same.pop() {
                active.push(best);
            }
            remove.extend(same);
        }
    }
    if active.len() > keep {
        sort_for_removal(&mut active);
        let extra = active.len() - keep;
        remove.extend(active.into_iter().take(extra));
    }
    remove
}

/// A new pod for `job` from `template`: named `<job>-` (`<job>-<index>-` for an index) plus a
/// server suffix, controlled by the Job, with the Job's labels, and for an Indexed Job its
/// completion index (annotation and label) and hostname `<job>-<index>`.
pub fn new_pod(job: &Job, template: &PodTemplateSpec, index: Option<i32>) -> Pod {
    let name = job.metadata.name.clone().unwrap_or_default();
    let uid = job.metadata.uid.clone().unwrap_or_default();
    let generate_name = match index {
        Some(i) => format!("{name}-{i}-"),
        None => format!("{name}-"),
    };
    let mut pod = pods::from_template(template, controller_ref(job), None, Some(generate_name));
    let labels = pod.metadata.labels.get_or_insert_with(BTreeMap::new);
    for (key, value) in [
        (CONTROLLER_UID_LABEL, &uid),
        (JOB_NAME_LABEL, &name),
        (LEGACY_CONTROLLER_UID_LABEL, &uid),
        (LEGACY_JOB_NAME_LABEL, &name),
    ] {
        labels
            .entry(key.to_string())
            .or_insert_with(|| value.clone());
    }
    if let Some(i) = index {
        labels.insert(COMPLETION_INDEX_KEY.to_string(), i.to_string());
        pod.metadata
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(COMPLETION_INDEX_KEY.to_string(), i.to_string());
        if let Some(spec) = pod.spec.as_mut() {
            spec.hostname = Some(format!("{name}-{i}"));
        }
    }
    pod
}

#[cfg(test)]
#[path = "job_pods_tests.rs"]
mod tests;
