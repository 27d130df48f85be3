//! The Job controller ("job-controller"; the ttl-after-finished controller is folded in): runs
//! a Job's pods until enough succeed or too many fail, keeps the Job's status the way
//! Kubernetes 1.32 reports it, and deletes a finished Job once its TTL has passed.
//!
//! Level-triggered: every reconcile recounts the Job's pods. Finished pods are kept (as
//! Kubernetes keeps them) and counted from the pod list; the counters in status only ever
//! grow (`max(status, pods)`), so a pod is counted once and a counted pod that disappears is
//! not forgotten. Indexed Jobs keep their succeeded indexes in `status.completedIndexes`.

use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::batch::v1::{Job, JobStatus, UncountedTerminatedPods};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::chrono::{DateTime, Utc};

use super::context::{full_name, ControllerError, Ctx, Delete, EventType, Propagation, TypeRef};
use super::job_pods::{new_pod, pods_to_remove, JobPods};
use super::job_status::{
    finished_at, is_true, nonzero, set_condition, IndexSet, Verdict, SUCCESS_CRITERIA_MET,
    SUSPENDED,
};
use super::pods;
use super::reconciler::{Action, Key, Reconciler};

/// Pods created or deleted per reconcile at most (Kubernetes' MaxPodCreateDeletePerSync).
const MAX_POD_CHANGES: usize = 500;
/// spec.managedBy value naming this controller; any other value belongs to someone else.
const MANAGED_BY_US: &str = "kubernetes.io/job-controller";

/// Drives batch/v1 Jobs.
#[derive(Debug, Default, Clone, Copy)]
pub struct JobController;

impl JobController {
    /// The Job controller.
    pub fn new() -> JobController {
        JobController
    }
}

#[async_trait]
impl Reconciler for JobController {
    fn name(&self) -> &'static str {
        "job-controller"
    }

    fn kind(&self) -> TypeRef {
        TypeRef::of::<Job>()
    }

    fn watches(&self) -> Vec<TypeRef> {
        vec![TypeRef::of::<Pod>()]
    }

    async fn reconcile(&self, key: &Key, ctx: &Ctx) -> Result<Action, ControllerError> {
        let namespace = key.namespace.as_deref();
        let Some(job) = ctx.get::<Job>(namespace, &key.name)? else {
            return Ok(Action::Done);
        };
        if job.metadata.deletion_timestamp.is_some() {
            return Ok(Action::Done);
        }
        let managed_by = job.spec.as_ref().and_then(|s| s.managed_by.as_deref());
        if managed_by.is_some_and(|m| m != MANAGED_BY_US) {
            return Ok(Action::Done);
        }
        if let Some(finished_at) = finished_at(&job) {
            return expire(&job, finished_at, ctx).await;
        }
        let params = match Params::of(&job) {
            Ok(params) => params,
            Err((reason, message)) => {
                tracing::warn!(job = %key, reason, message, "skipping Job");
                ctx.event(&job, EventType::Warning, reason, message);
                return Ok(Action::Done);
            }
        };
        let uid = job.metadata.uid.clone().unwrap_or_default();
        let pods = JobPods::new(ctx.owned::<Pod>(namespace, &uid)?, &uid);
        sync(&job, &params, &pods, ctx).await
    }
}

/// What the spec asks for, with the API's defaults applied.
struct Params {
    template: PodTemplateSpec,
    parallelism: i32,
    completions: Option<i32>,
    indexed: bool,
    backoff_limit: i32,
    active_deadline: Option<i64>,
    suspended: bool,
    restart_on_failure: bool,
    /// podReplacementPolicy TerminatingOrFailed (the default without a podFailurePolicy):
    /// a pod being deleted is replaced at once and counts as failed.
    replace_terminating: bool,
}

type Problem = (&'static str, String);

impl Params {
    fn of(job: &Job) -> Result<Params, Problem> {
        let invalid = |why: &str| ("FailedCreate", format!("Error creating: {why}"));
        let spec = job
            .spec
            .as_ref()
            .ok_or_else(|| invalid("the Job has no spec"))?;
        let indexed = match spec.completion_mode.as_deref() {
            None | Some("NonIndexed") => false,
            Some("Indexed") => true,
            Some(_) => {
                let message = "Skipped Job sync because completion mode is unknown";
                return Err(("UnknownCompletionMode", message.to_string()));
            }
        };
        let pod_spec = spec.template.spec.as_ref();
        let restart_policy = pod_spec.and_then(|s| s.restart_policy.as_deref());
        if !matches!(restart_policy, Some("Never" | "OnFailure")) {
            return Err(invalid(
                "the pod template's restartPolicy must be Never or OnFailure",
            ));
        }
        // The API defaults a Job with neither field to one pod that must succeed once.
        let completions = match (spec.completions, spec.parallelism) {
            (None, None) => Some(1),
            (completions, _) => completions.map(|c| c.max(0)),
        };
        if indexed && completions.is_none() {
            return Err(invalid("an Indexed Job needs spec.completions"));
        }
        Ok(Params {
            template: spec.template.clone(),
            parallelism: spec.parallelism.unwrap_or(1).max(0),
            completions,
            indexed,
            backoff_limit: spec.backoff_limit.unwrap_or(6).max(0),
            active_deadline: spec.active_deadline_seconds,
            suspended: spec.suspend == Some(true),
            restart_on_failure: restart_policy == Some("OnFailure"),
            replace_terminating: spec.pod_replacement_policy.as_deref() != Some("Failed")
                && spec.pod_failure_policy.is_none(),
        })
    }

    /// Completions of an Indexed Job, the range its indexes live in.
    fn indexed_completions(&self) -> Option<i32> {
        self.completions.filter(|_| self.indexed)
    }
}

/// The earliest of the times a reconcile wants to look again.
#[derive(Default)]
struct Requeue(Option<Duration>);

impl Requeue {
    fn after(&mut self, wait: Duration) {
        self.0 = Some(self.0.map_or(wait, |w| w.min(wait)));
    }

    fn action(self) -> Action {
        self.0.map_or(Action::Done, Action::RequeueAfter)
    }
}

/// Pod counts that change as this reconcile creates and deletes pods.
struct Counts {
    active: i32,
    ready: i32,
    terminating: i32,
    failed: i32,
}

/// One reconcile of one unfinished Job: what it read, and the counts its own writes change.
struct JobSync<'a> {
    job: &'a Job,
    p: &'a Params,
    pods: &'a JobPods,
    ctx: &'a Ctx,
    counts: Counts,
    requeue: Requeue,
}

async fn sync(job: &Job, p: &Params, pods: &JobPods, ctx: &Ctx) -> Result<Action, ControllerError> {
    let now = ctx.now();
    let old = job.status.clone().unwrap_or_default();
    let mut status = old.clone();
    let resuming = !p.suspended && is_true(&status, SUSPENDED);
    if (status.start_time.is_none() && !p.suspended) || resuming {
        // A resumed Job's deadline counts from the resume, as if it started then.
        status.start_time = Some(Time(now));
    }

    let success_met = is_true(&status, SUCCESS_CRITERIA_MET);
    // Pods this controller deleted (suspension, success) are not failures.
    let count_terminating = p.replace_terminating && !p.suspended && !success_met;
    let active_pods = pods.active();
    let mut run = JobSync {
        job,
        p,
        pods,
        ctx,
        counts: Counts {
            active: len(active_pods.len()),
            ready: pods.ready(),
            terminating: pods.terminating(),
            failed: old.failed.unwrap_or(0).max(pods.failed(count_terminating)),
        },
        requeue: Requeue::default(),
    };
    let done_indexes = p.indexed_completions().map(|completions| {
        let text = old.completed_indexes.as_deref().unwrap_or_default();
        let mut set = IndexSet::parse(text, completions);
        for index in pods.succeeded_indexes(completions) {
            set.insert(index);
        }
        set
    });
    let succeeded = match &done_indexes {
        Some(set) => len(set.len()),
        None => old.succeeded.unwrap_or(0).max(pods.succeeded()),
    };

    let mut finish = Verdict::recorded(&status).or_else(|| run.judge(&status, now));
    if let Some(finish) = &finish {
        // A Job that is done, either way, stops what still runs.
        let as_failed = matches!(finish, Verdict::Failure { .. });
        run.delete(&active_pods, as_failed).await?;
    } else {
        run.manage(&active_pods, succeeded, done_indexes.as_ref())
            .await?;
        let complete = match p.completions {
            None => succeeded > 0 && run.counts.active == 0,
            Some(completions) => succeeded >= completions && run.counts.active == 0,
        };
        let (value, reason, message) = match p.suspended {
            true => (true, "JobSuspended", "Job suspended"),
            false => (false, "JobResumed", "Job resumed"),
        };
        if complete {
            finish = Some(Verdict::Success);
        } else if set_condition(&mut status, SUSPENDED, value, reason, message, now) {
            let event = if value { "Suspended" } else { "Resumed" };
            ctx.event(job, EventType::Normal, event, message);
        }
    }

    // Kubernetes 1.32 records the verdict first (FailureTarget / SuccessCriteriaMet) and the
    // terminal condition only once no pod of the Job is still terminating.
    let counts = &run.counts;
    let finished = finish
        .as_ref()
        .and_then(|verdict| verdict.record(&mut status, counts.terminating, now));
    status.active = nonzero(counts.active);
    status.ready = Some(counts.ready.max(0));
    status.terminating = Some(counts.terminating.max(0));
    status.succeeded = nonzero(succeeded);
    status.failed = nonzero(counts.failed);
    status.completed_indexes = done_indexes
        .map(|set| set.to_string())
        .filter(|text| !text.is_empty());
    status.uncounted_terminated_pods = Some(UncountedTerminatedPods::default());
    if status != old {
        let mut updated = job.clone();
        updated.status = Some(status);
        ctx.replace_status(&updated).await?;
    }

    let mut requeue = run.requeue;
    if let Some((event_type, reason, message)) = finished {
        let success = matches!(finish, Some(Verdict::Success));
        if success && p.completions.is_some_and(|c| succeeded > c) {
            let message = "Too many succeeded pods running after completion count reached";
            ctx.event(job, EventType::Warning, "TooManySucceededPods", message);
        }
        ctx.event(job, event_type, &reason, message);
        if let Some(ttl) = job.spec.as_ref().and_then(|s| s.ttl_seconds_after_finished) {
            requeue.after(Duration::from_secs(u64::try_from(ttl).unwrap_or(0)));
        }
    }
    Ok(requeue.action())
}

impl JobSync<'_> {
    /// Whether the Job must fail now (too many failures, past its deadline); notes when its
    /// deadline comes otherwise.
    fn judge(&mut self, status: &JobStatus, now: DateTime<Utc>) -> Option<Verdict> {
        let p = self.p;
        let restarts_exceeded = p.restart_on_failure && {
            let restarts = self.pods.restarts();
            restarts > 0 && restarts >= p.backoff_limit.max(1)
        };
        if self.counts.failed > p.backoff_limit || restarts_exceeded {
            let message = "Job has reached the specified backoff limit";
            return Some(Verdict::failure("BackoffLimitExceeded", message));
        }
        let seconds = p.active_deadline.filter(|_| !p.suspended)?;
        let start = status.start_time.as_ref()?.0;
        let left = start + k8s_openapi::chrono::Duration::seconds(seconds) - now;
        match left.to_std() {
            Ok(wait) if !wait.is_zero() => {
                self.requeue.after(wait);
                None
            }
            _ => {
                let message = "Job was active longer than specified deadline";
                Some(Verdict::failure("DeadlineExceeded", message))
            }
        }
    }

    /// Creates or deletes pods so that the Job runs as many as it should now.
    async fn manage(
        &mut self,
        active: &[&Pod],
        succeeded: i32,
        done_indexes: Option<&IndexSet>,
    ) -> Result<(), ControllerError> {
        let p = self.p;
        if p.suspended {
            return self.delete(active, false).await;
        }
        let want = match p.completions {
            // A work queue: once any pod succeeded, the rest only finish their work.
            None if succeeded > 0 => self.counts.active,
            None => p.parallelism,
            Some(completions) => (completions - succeeded).min(p.parallelism).max(0),
        };
        let keep = usize::try_from(want).unwrap_or(0);
        let remove = pods_to_remove(active.to_vec(), p.indexed_completions(), keep);
        if !remove.is_empty() {
            // Deleting takes precedence; creating waits for the next reconcile.
            return self.delete(&remove, false).await;
        }
        // With podReplacementPolicy Failed a replacement waits for the pod it replaces.
        let waiting = if p.replace_terminating {
            0
        } else {
            self.counts.terminating
        };
        let missing = usize::try_from(want - waiting - self.counts.active).unwrap_or(0);
        if missing == 0 {
            return Ok(());
        }
        let backoff = self
            .pods
            .backoff_remaining(self.ctx.now(), p.replace_terminating);
        if !backoff.is_zero() {
            self.requeue.after(backoff);
            return Ok(());
        }
        let missing = missing.min(MAX_POD_CHANGES);
        let indexes: Vec<Option<i32>> = match (done_indexes, p.indexed_completions()) {
            (Some(done), Some(completions)) => {
                let busy = self.pods.indexes_in_use(!p.replace_terminating);
                let free = done.first_missing(&busy, missing, completions);
                free.into_iter().map(Some).collect()
            }
            _ => vec![None; missing],
        };
        for index in indexes {
            self.create(index).await?;
        }
        Ok(())
    }

    /// Creates one pod (for `index` of an Indexed Job).
    async fn create(&mut self, index: Option<i32>) -> Result<(), ControllerError> {
        let (job, ctx) = (self.job, self.ctx);
        let pod = new_pod(job, &self.p.template, index);
        match ctx.create(job.metadata.namespace.as_deref(), &pod).await {
            Ok(created) => {
                let name = created.metadata.name.unwrap_or_default();
                let message = format!("Created pod: {name}");
                ctx.event(job, EventType::Normal, "SuccessfulCreate", message);
                self.counts.active += 1;
                Ok(())
            }
            Err(err) => {
                let message = format!("Error creating: {err}");
                ctx.event(job, EventType::Warning, "FailedCreate", message);
                Err(err)
            }
        }
    }

    /// Deletes `victims` (at most [`MAX_POD_CHANGES`]); they become terminating, and
    /// failures when `as_failed` (a failing Job's pods count as failed, as in Kubernetes).
    async fn delete(&mut self, victims: &[&Pod], as_failed: bool) -> Result<(), ControllerError> {
        let (job, ctx) = (self.job, self.ctx);
        for pod in victims.iter().take(MAX_POD_CHANGES) {
            let name = pod.metadata.name.as_deref().unwrap_or_default();
            let options = Delete {
                uid: pod.metadata.uid.clone(),
                ..Delete::default()
            };
            let namespace = pod.metadata.namespace.as_deref();
            match ctx.delete::<Pod>(namespace, name, &options).await {
                Ok(()) => {
                    let message = format!("Deleted pod: {name}");
                    ctx.event(job, EventType::Normal, "SuccessfulDelete", message);
                }
                Err(err) if err.is_not_found() => {}
                Err(err) => {
                    let message = format!("Error deleting: {err}");
                    ctx.event(job, EventType::Warning, "FailedDelete", message);
                    return Err(err);
                }
            }
            self.counts.active -= 1;
            self.counts.terminating += 1;
            self.counts.ready -= i32::from(pods::is_ready(pod));
            self.counts.failed += i32::from(as_failed);
        }
        Ok(())
    }
}

/// Deletes a finished Job once `ttlSecondsAfterFinished` has passed since it finished.
async fn expire(
    job: &Job,
    finished_at: Option<DateTime<Utc>>,
    ctx: &Ctx,
) -> Result<Action, ControllerError> {
    let Some(ttl) = job.spec.as_ref().and_then(|s| s.ttl_seconds_after_finished) else {
        return Ok(Action::Done);
    };
    let Some(finished_at) = finished_at else {
        // Without a finish time the TTL cannot be judged; keeping the Job is the safe side.
        tracing::warn!(job = %full_name(&job.metadata), "finished Job has no finish time; not expiring it");
        return Ok(Action::Done);
    };
    let expires_at = finished_at + k8s_openapi::chrono::Duration::seconds(i64::from(ttl));
    if let Ok(wait) = (expires_at - ctx.now()).to_std() {
        if !wait.is_zero() {
            return Ok(Action::RequeueAfter(wait));
        }
    }
    let options = Delete {
        uid: job.metadata.uid.clone(),
        propagation: Some(Propagation::Background),
        grace_period: None,
    };
    let name = job.metadata.name.as_deref().unwrap_or_default();
    ctx.delete::<Job>(job.metadata.namespace.as_deref(), name, &options)
        .await?;
    Ok(Action::Done)
}

fn len(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

#[cfg(test)]
#[path = "job_tests.rs"]
mod tests;
