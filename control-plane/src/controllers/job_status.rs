//! A Job's status as Kubernetes 1.32 writes it: its conditions (the verdict, FailureTarget or
//! SuccessCriteriaMet, recorded before the terminal Failed or Complete; Suspended), counters
//! omitted when zero, and an Indexed Job's `completedIndexes`: ascending, comma separated,
//! runs of three or more written as a range ("0-2,4,6,7"). That text is the durable record
//! of which indexes succeeded, so an index stays done after its pod is deleted.

use std::collections::BTreeSet;
use std::fmt;

use k8s_openapi::api::batch::v1::{Job, JobCondition, JobStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::chrono::{DateTime, Utc};

use super::context::EventType;

/// Terminal condition of a Job whose pods succeeded.
pub const COMPLETE: &str = "Complete";
/// Terminal condition of a Job that gave up.
pub const FAILED: &str = "Failed";
/// Verdict condition: enough pods succeeded; Complete follows when none is terminating.
pub const SUCCESS_CRITERIA_MET: &str = "SuccessCriteriaMet";
/// Verdict condition: the Job fails; Failed follows when none of its pods is terminating.
pub const FAILURE_TARGET: &str = "FailureTarget";
/// Condition telling whether the Job is suspended.
pub const SUSPENDED: &str = "Suspended";

/// How an unfinished Job is going to end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Enough pods succeeded.
    Success,
    /// The Job gives up, for `reason` (BackoffLimitExceeded, DeadlineExceeded...).
    Failure {
        /// CamelCase reason of the conditions and the Event.
        reason: String,
        /// What the conditions and the Event say.
        message: String,
    },
}

impl Verdict {
    /// A failure verdict.
    pub fn failure(reason: &str, message: &str) -> Verdict {
        Verdict::Failure {
            reason: reason.to_string(),
            message: message.to_string(),
        }
    }

    /// The verdict an earlier reconcile recorded in `status`, if any.
    pub fn recorded(status: &JobStatus) -> Option<Verdict> {
        if is_true(status, SUCCESS_CRITERIA_MET) {
            return Some(Verdict::Success);
        }
        find(status, FAILURE_TARGET)
            .filter(|c| c.status == "True")
            .map(|c| Verdict::Failure {
                reason: c.reason.clone().unwrap_or_default(),
                message: c.message.clone().unwrap_or_default(),
            })
    }

    /// Records the verdict in `status`: its verdict condition at once, the terminal condition
    /// (and, for success, completionTime) once `terminating` pods are gone. Returns the Event
    /// (type, reason, message) to record when the Job finished just now.
    pub fn record(
        &self,
        status: &mut JobStatus,
        terminating: i32,
        now: DateTime<Utc>,
    ) -> Option<(EventType, String, String)> {
        let (verdict, terminal, reason, message) = match self {
            Verdict::Success => (
                SUCCESS_CRITERIA_MET,
                COMPLETE,
                "CompletionsReached",
                "Reached expected number of succeeded pods",
            ),
            Verdict::Failure { reason, message } => {
                (FAILURE_TARGET, FAILED, reason.as_str(), message.as_str())
            }
        };
        set_condition(status, verdict, true, reason, message, now);
        if terminating > 0 {
            return None;
        }
        set_condition(status, terminal, true, reason, message, now);
        Some(match self {
            Verdict::Success => {
                status.completion_time = Some(Time(now));
                let (reason, message) = ("Completed", "Job completed");
                (EventType::Normal, reason.to_string(), message.to_string())
            }
            Verdict::Failure { .. } => {
                (EventType::Warning, reason.to_string(), message.to_string())
            }
        })
    }
}

/// The condition of type `type_`.
pub fn find<'a>(status: &'a JobStatus, type_: &str) -> Option<&'a JobCondition> {
    status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == type_)
}

/// Whether the condition `type_` is True.
pub fn is_true(status: &JobStatus, type_: &str) -> bool {
    find(status, type_).is_some_and(|c| c.status == "True")
}

/// Sets the condition `type_` to `value` with `reason` and `message` (Kubernetes'
/// ensureJobConditionStatus: a False condition is not added where none was). True when
/// something changed.
pub fn set_condition(
    status: &mut JobStatus,
    type_: &str,
    value: bool,
    reason: &str,
    message: &str,
    now: DateTime<Utc>,
) -> bool {
    let value = if value { "True" } else { "False" };
    let fresh = JobCondition {
        type_: type_.to_string(),
        status: value.to_string(),
        reason: Some(reason.to_string()),
        message: Some(message.to_string()),
        last_probe_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    };
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(c) => {
            let same =
                c.status == fresh.status && c.reason == fresh.reason && c.message == fresh.message;
            if !same {
                *c = fresh;
            }
            !same
        }
        None if value == "False" => {
            if conditions.is_empty() {
                status.conditions = None;
            }
            false
        }
        None => {
            conditions.push(fresh);
            true
        }
    }
}

/// Whether the Job reached Complete or Failed, and when (if that was recorded).
pub fn finished_at(job: &Job) -> Option<Option<DateTime<Utc>>> {
    let status = job.status.as_ref()?;
    let condition = status
        .conditions
        .iter()
        .flatten()
        .find(|c| (c.type_ == COMPLETE || c.type_ == FAILED) && c.status == "True")?;
    Some(
        condition
            .last_transition_time
            .as_ref()
            .or(status.completion_time.as_ref())
            .map(|t| t.0),
    )
}

/// A counter as the API writes it: omitted when zero.
pub fn nonzero(n: i32) -> Option<i32> {
    (n > 0).then_some(n)
}

/// A set of completion indexes, all below the Job's `completions`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IndexSet(BTreeSet<i32>);

impl IndexSet {
    /// An empty set.
    pub fn new() -> IndexSet {
        IndexSet::default()
    }

    /// The indexes `text` lists, dropping malformed pieces and indexes at or above
    /// `completions` (a user may have lowered completions since).
    pub fn parse(text: &str, completions: i32) -> IndexSet {
        let mut set = IndexSet::new();
        for piece in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (first, last) = match piece.split_once('-') {
                Some((a, b)) => (a.trim().parse::<i32>(), b.trim().parse::<i32>()),
                None => (piece.parse::<i32>(), piece.parse::<i32>()),
            };
            let (Ok(first), Ok(last)) = (first, last) else {
                tracing::debug!(piece, "ignoring a malformed completed index interval");
                continue;
            };
            for index in first.max(0)..=last.min(completions - 1) {
                set.0.insert(index);
            }
        }
        set
    }

    /// Adds `index`; true when it was not there yet.
    pub fn insert(&mut self, index: i32) -> bool {
        self.0.insert(index)
    }

    /// How many indexes the set holds.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The lowest `count` indexes below `completions` that are neither in this set nor in
    /// `taken` (indexes that already have a pod working on them).
    pub fn first_missing(&self, taken: &BTreeSet<i32>, count: usize, completions: i32) -> Vec<i32> {
        (0..completions)
            .filter(|i| !self.0.contains(i) && !taken.contains(i))
            .take(count)
            .collect()
    }
}

impl fmt::Display for IndexSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut runs: Vec<(i32, i32)> = Vec::new();
        for &index in &self.0 {
            match runs.last_mut() {
                Some((_, last)) if *last + 1 == index => *last = index,
                _ => runs.push((index, index)),
            }
        }
        let mut first_run = true;
        for (first, last) in runs {
            if !first_run {
                f.write_str(",")?;
            }
            first_run = false;
            match last - first {
                0 => write!(f, "{first}")?,
                1 => write!(f, "{first},{last}")?,
                _ => write!(f, "{first}-{last}")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "job_status_tests.rs"]
mod tests;
