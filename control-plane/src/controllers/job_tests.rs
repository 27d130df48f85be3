use std::sync::Arc;

use k8s_openapi::api::batch::v1::{JobCondition, JobSpec, JobStatus};
use k8s_openapi::api::core::v1::{Container, ContainerStatus, PodCondition, PodSpec, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::*;
use crate::controllers::context::Backend;
use crate::controllers::fake::{FakeBackend, Write};
use crate::controllers::job_pods::{completion_index, COMPLETION_INDEX_KEY, JOB_NAME_LABEL};

fn job(completions: Option<i32>, parallelism: Option<i32>) -> Job {
    Job {
        metadata: ObjectMeta {
            name: Some("pi".into()),
            namespace: Some("default".into()),
            ..Default::default()
        },
        spec: Some(JobSpec {
            completions,
            parallelism,
            template: PodTemplateSpec {
                metadata: None,
                spec: Some(PodSpec {
                    restart_policy: Some("Never".into()),
                    containers: vec![Container {
                        name: "pi".into(),
                        image: Some("perl".into()),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        status: None,
    }
}

fn setup(job: &Job) -> (Arc<FakeBackend>, Ctx) {
    let fake = Arc::new(FakeBackend::new());
    fake.insert(job);
    let ctx = Ctx::new(fake.clone() as Arc<dyn Backend>, "job-controller");
    (fake, ctx)
}

async fn run(ctx: &Ctx) -> Action {
    JobController::new()
        .reconcile(&Key::new(Some("default"), "pi"), ctx)
        .await
        .expect("reconcile succeeds")
}

fn status(fake: &FakeBackend) -> JobStatus {
    fake.get::<Job>(Some("default"), "pi")
        .and_then(|j| j.status)
        .unwrap_or_default()
}

fn condition(fake: &FakeBackend, type_: &str) -> Option<JobCondition> {
    status(fake)
        .conditions
        .into_iter()
        .flatten()
        .find(|c| c.type_ == type_)
}

fn job_pods(fake: &FakeBackend) -> Vec<Pod> {
    fake.all::<Pod>()
}

/// Sets a pod's phase (and readiness) as its kubelet would.
fn set_phase(fake: &FakeBackend, pod: &Pod, phase: &str) {
    let mut pod = pod.clone();
    let status = pod.status.get_or_insert_with(PodStatus::default);
    status.phase = Some(phase.into());
    fake.insert(&pod);
}

fn events(fake: &FakeBackend) -> Vec<(String, String)> {
    fake.events()
        .into_iter()
        .map(|e| (e.reason, e.message))
        .collect()
}

fn count_reason(fake: &FakeBackend, reason: &str) -> usize {
    fake.events().iter().filter(|e| e.reason == reason).count()
}

#[tokio::test]
async fn completions_three_parallelism_two_runs_two_then_one() {
    let (fake, ctx) = setup(&job(Some(3), Some(2)));
    run(&ctx).await;
    let first = job_pods(&fake);
    assert_eq!(first.len(), 2);
    assert_eq!(count_reason(&fake, "SuccessfulCreate"), 2);
    let name = first[0].metadata.name.clone().unwrap();
    assert!(name.starts_with("pi-"));
    assert!(events(&fake).contains(&("SuccessfulCreate".into(), format!("Created pod: {name}"))));
    let labels = first[0].metadata.labels.clone().unwrap();
    assert_eq!(labels[JOB_NAME_LABEL], "pi");
    assert_eq!(labels["job-name"], "pi");
    assert_eq!(labels["controller-uid"], "uid-job-pi");
    assert_eq!(labels["batch.kubernetes.io/controller-uid"], "uid-job-pi");
    let st = status(&fake);
    assert_eq!(st.active, Some(2));
    assert!(st.start_time.is_some());

    for pod in &first {
        set_phase(&fake, pod, "Succeeded");
    }
    run(&ctx).await;
    assert_eq!(
        job_pods(&fake).len(),
        3,
        "one more pod for the last completion"
    );
    let st = status(&fake);
    assert_eq!((st.active, st.succeeded), (Some(1), Some(2)));

    // Reconciling again counts nothing twice and creates nothing.
    run(&ctx).await;
    assert_eq!(job_pods(&fake).len(), 3);
    assert_eq!(status(&fake).succeeded, Some(2));

    for pod in job_pods(&fake) {
        set_phase(&fake, &pod, "Succeeded");
    }
    run(&ctx).await;
    let st = status(&fake);
    assert_eq!((st.active, st.succeeded, st.failed), (None, Some(3), None));
    assert!(st.completion_time.is_some());
    let met = condition(&fake, "SuccessCriteriaMet").unwrap();
    let complete = condition(&fake, "Complete").unwrap();
    for c in [met, complete] {
        assert_eq!(c.status, "True");
        assert_eq!(c.reason.as_deref(), Some("CompletionsReached"));
        assert_eq!(
            c.message.as_deref(),
            Some("Reached expected number of succeeded pods")
        );
    }
    assert!(events(&fake).contains(&("Completed".into(), "Job completed".into())));
    // Finished pods are kept.
    assert_eq!(job_pods(&fake).len(), 3);
}

#[tokio::test]
async fn failures_back_off_then_exceed_the_backoff_limit() {
    let mut j = job(Some(1), Some(1));
    j.spec.as_mut().unwrap().backoff_limit = Some(2);
    let (fake, ctx) = setup(&j);
    run(&ctx).await;
    for (attempt, wait) in [(1, 10), (2, 20)] {
        let running: Vec<Pod> = job_pods(&fake)
            .into_iter()
            .filter(pods::is_active)
            .collect();
        assert_eq!(running.len(), 1);
        set_phase(&fake, &running[0], "Failed");
        let action = run(&ctx).await;
        assert_eq!(
            action,
            Action::RequeueAfter(Duration::from_secs(wait)),
            "attempt {attempt}"
        );
        assert_eq!(status(&fake).failed, Some(attempt));
        assert_eq!(
            job_pods(&fake).len() as i32,
            attempt,
            "the replacement waits"
        );
        fake.advance(Duration::from_secs(wait));
        run(&ctx).await;
        assert_eq!(job_pods(&fake).len() as i32, attempt + 1);
    }
    let running: Vec<Pod> = job_pods(&fake)
        .into_iter()
        .filter(pods::is_active)
        .collect();
    set_phase(&fake, &running[0], "Failed");
    run(&ctx).await;
    let st = status(&fake);
    assert_eq!(st.failed, Some(3));
    for type_ in ["FailureTarget", "Failed"] {
        let c = condition(&fake, type_).unwrap();
        assert_eq!(c.reason.as_deref(), Some("BackoffLimitExceeded"));
        assert_eq!(
            c.message.as_deref(),
            Some("Job has reached the specified backoff limit")
        );
    }
    assert!(events(&fake).contains(&(
        "BackoffLimitExceeded".into(),
        "Job has reached the specified backoff limit".into()
    )));
    assert!(st.completion_time.is_none());
    // Failed pods stay, and a finished Job is left alone.
    fake.clear_writes();
    run(&ctx).await;
    assert!(fake.writes().is_empty());
    assert_eq!(job_pods(&fake).len(), 3);
}

#[tokio::test]
async fn a_failed_job_deletes_its_active_pods_before_it_is_failed() {
    let mut j = job(Some(2), Some(2));
    j.spec.as_mut().unwrap().backoff_limit = Some(0);
    let (fake, ctx) = setup(&j);
    run(&ctx).await;
    let pods = job_pods(&fake);
    set_phase(&fake, &pods[0], "Failed");
    fake.clear_writes();
    run(&ctx).await;
    let deleted = pods[1].metadata.name.clone().unwrap();
    assert!(fake
        .writes()
        .contains(&Write::Delete("Pod", format!("default/{deleted}"))));
    assert!(events(&fake).contains(&("SuccessfulDelete".into(), format!("Deleted pod: {deleted}"))));
    // The deleted pod is terminating: the verdict is recorded, the Job is not Failed yet.
    assert!(condition(&fake, "FailureTarget").is_some());
    assert!(condition(&fake, "Failed").is_none());
    let st = status(&fake);
    assert_eq!(
        (st.active, st.terminating, st.failed),
        (None, Some(1), Some(2))
    );

    run(&ctx).await;
    let failed = condition(&fake, "Failed").unwrap();
    assert_eq!(failed.reason.as_deref(), Some("BackoffLimitExceeded"));
    let st = status(&fake);
    assert_eq!(
        (st.terminating, st.failed),
        (Some(0), Some(2)),
        "counted once"
    );
}

#[tokio::test]
async fn restarts_under_on_failure_count_towards_the_backoff_limit() {
    let mut j = job(Some(1), Some(1));
    let spec = j.spec.as_mut().unwrap();
    spec.backoff_limit = Some(2);
    spec.template.spec.as_mut().unwrap().restart_policy = Some("OnFailure".into());
    let (fake, ctx) = setup(&j);
    run(&ctx).await;
    let mut pod = job_pods(&fake).remove(0);
    pod.status = Some(PodStatus {
        phase: Some("Running".into()),
        container_statuses: Some(vec![ContainerStatus {
            name: "pi".into(),
            restart_count: 2,
            ..Default::default()
        }]),
        ..Default::default()
    });
    fake.insert(&pod);
    run(&ctx).await;
    assert!(condition(&fake, "FailureTarget").is_some());
    run(&ctx).await;
    let failed = condition(&fake, "Failed").unwrap();
    assert_eq!(failed.reason.as_deref(), Some("BackoffLimitExceeded"));
    assert!(job_pods(&fake).is_empty());
}

#[tokio::test]
async fn active_deadline_fails_the_job_on_the_fake_clock() {
    let mut j = job(Some(1), Some(1));
    j.spec.as_mut().unwrap().active_deadline_seconds = Some(30);
    let (fake, ctx) = setup(&j);
    assert_eq!(
        run(&ctx).await,
        Action::RequeueAfter(Duration::from_secs(30))
    );
    fake.advance(Duration::from_secs(12));
    assert_eq!(
        run(&ctx).await,
        Action::RequeueAfter(Duration::from_secs(18))
    );
    assert!(condition(&fake, "FailureTarget").is_none());
    fake.advance(Duration::from_secs(18));
    run(&ctx).await;
    assert!(job_pods(&fake).is_empty(), "the running pod is deleted");
    let target = condition(&fake, "FailureTarget").unwrap();
    assert_eq!(target.reason.as_deref(), Some("DeadlineExceeded"));
    run(&ctx).await;
    let failed = condition(&fake, "Failed").unwrap();
    assert_eq!(failed.reason.as_deref(), Some("DeadlineExceeded"));
    assert_eq!(
        failed.message.as_deref(),
        Some("Job was active longer than specified deadline")
    );
    assert_eq!(count_reason(&fake, "DeadlineExceeded"), 1);
}

#[tokio::test]
async fn ttl_after_finished_deletes_the_job_later() {
    let mut j = job(Some(1), Some(1));
    j.spec.as_mut().unwrap().ttl_seconds_after_finished = Some(100);
    let (fake, ctx) = setup(&j);
    run(&ctx).await;
    set_phase(&fake, &job_pods(&fake)[0], "Succeeded");
    assert_eq!(
        run(&ctx).await,
        Action::RequeueAfter(Duration::from_secs(100))
    );
    assert!(condition(&fake, "Complete").is_some());
    fake.advance(Duration::from_secs(60));
    assert_eq!(
        run(&ctx).await,
        Action::RequeueAfter(Duration::from_secs(40))
    );
    assert!(fake.get::<Job>(Some("default"), "pi").is_some());
    fake.advance(Duration::from_secs(40));
    assert_eq!(run(&ctx).await, Action::Done);
    assert!(fake.get::<Job>(Some("default"), "pi").is_none());
    assert!(fake
        .writes()
        .contains(&Write::Delete("Job", "default/pi".into())));
}

#[tokio::test]
async fn indexed_job_runs_each_index_and_recreates_a_failed_one() {
    let mut j = job(Some(3), Some(3));
    j.spec.as_mut().unwrap().completion_mode = Some("Indexed".into());
    let (fake, ctx) = setup(&j);
    run(&ctx).await;
    let pods = job_pods(&fake);
    let mut indexes: Vec<i32> = pods.iter().filter_map(completion_index).collect();
    indexes.sort();
    assert_eq!(indexes, vec![0, 1, 2]);
    for pod in &pods {
        let index = completion_index(pod).unwrap();
        let name = pod.metadata.name.as_deref().unwrap();
        assert!(name.starts_with(&format!("pi-{index}-")), "{name}");
        assert_eq!(
            pod.metadata.labels.as_ref().unwrap()[COMPLETION_INDEX_KEY],
            index.to_string()
        );
        assert_eq!(
            pod.spec.as_ref().unwrap().hostname,
            Some(format!("pi-{index}"))
        );
    }
    let by_index = |i: i32| {
        pods.iter()
            .find(|p| completion_index(p) == Some(i))
            .unwrap()
            .clone()
    };
    set_phase(&fake, &by_index(0), "Succeeded");
    set_phase(&fake, &by_index(2), "Succeeded");
    set_phase(&fake, &by_index(1), "Failed");
    run(&ctx).await;
    assert_eq!(status(&fake).completed_indexes.as_deref(), Some("0,2"));
    assert_eq!(job_pods(&fake).len(), 3, "the replacement backs off first");
    fake.advance(Duration::from_secs(10));
    run(&ctx).await;
    let replacement: Vec<Pod> = job_pods(&fake)
        .into_iter()
        .filter(pods::is_active)
        .collect();
    assert_eq!(replacement.len(), 1);
    assert_eq!(completion_index(&replacement[0]), Some(1));
    set_phase(&fake, &replacement[0], "Succeeded");
    run(&ctx).await;
    let st = status(&fake);
    assert_eq!(st.completed_indexes.as_deref(), Some("0-2"));
    assert_eq!((st.succeeded, st.failed), (Some(3), Some(1)));
    assert!(condition(&fake, "Complete").is_some());
}

#[tokio::test]
async fn suspend_deletes_active_pods_and_resume_restarts_the_clock() {
    let mut j = job(Some(4), Some(2));
    j.spec.as_mut().unwrap().suspend = Some(true);
    let (fake, ctx) = setup(&j);
    run(&ctx).await;
    assert!(job_pods(&fake).is_empty());
    let suspended = condition(&fake, "Suspended").unwrap();
    assert_eq!(
        (
            suspended.status.as_str(),
            suspended.reason.as_deref(),
            suspended.message.as_deref()
        ),
        ("True", Some("JobSuspended"), Some("Job suspended"))
    );
    assert!(status(&fake).start_time.is_none());
    assert_eq!(count_reason(&fake, "Suspended"), 1);

    let mut stored = fake.get::<Job>(Some("default"), "pi").unwrap();
    stored.spec.as_mut().unwrap().suspend = Some(false);
    fake.insert(&stored);
    run(&ctx).await;
    assert_eq!(job_pods(&fake).len(), 2);
    let resumed = condition(&fake, "Suspended").unwrap();
    assert_eq!(
        (resumed.status.as_str(), resumed.reason.as_deref()),
        ("False", Some("JobResumed"))
    );
    assert_eq!(count_reason(&fake, "Resumed"), 1);
    let started = status(&fake).start_time.unwrap();

    let mut stored = fake.get::<Job>(Some("default"), "pi").unwrap();
    stored.spec.as_mut().unwrap().suspend = Some(true);
    fake.insert(&stored);
    fake.advance(Duration::from_secs(5));
    run(&ctx).await;
    assert!(job_pods(&fake).is_empty());
    assert_eq!(count_reason(&fake, "SuccessfulDelete"), 2);
    let st = status(&fake);
    assert_eq!(
        (st.active, st.failed),
        (None, None),
        "suspension is not failure"
    );
    assert_eq!(condition(&fake, "Suspended").unwrap().status, "True");

    let mut stored = fake.get::<Job>(Some("default"), "pi").unwrap();
    stored.spec.as_mut().unwrap().suspend = Some(false);
    fake.insert(&stored);
    run(&ctx).await;
    assert!(status(&fake).start_time.unwrap().0 > started.0);
}

#[tokio::test]
async fn work_queue_job_completes_when_a_pod_succeeded_and_none_run() {
    let (fake, ctx) = setup(&job(None, Some(2)));
    run(&ctx).await;
    let pods = job_pods(&fake);
    assert_eq!(pods.len(), 2);
    set_phase(&fake, &pods[0], "Succeeded");
    run(&ctx).await;
    assert_eq!(job_pods(&fake).len(), 2, "no new pod once one succeeded");
    assert!(condition(&fake, "Complete").is_none());
    set_phase(&fake, &pods[1], "Succeeded");
    run(&ctx).await;
    assert!(condition(&fake, "Complete").is_some());
    assert_eq!(status(&fake).succeeded, Some(2));
}

#[tokio::test]
async fn ready_and_terminating_pods_are_reported() {
    let (fake, ctx) = setup(&job(Some(2), Some(2)));
    run(&ctx).await;
    let pods = job_pods(&fake);
    let mut ready = pods[0].clone();
    ready.status = Some(PodStatus {
        phase: Some("Running".into()),
        conditions: Some(vec![PodCondition {
            type_: "Ready".into(),
            status: "True".into(),
            ..Default::default()
        }]),
        ..Default::default()
    });
    fake.insert(&ready);
    let mut gone = pods[1].clone();
    gone.metadata.deletion_timestamp = Some(Time(fake.now()));
    fake.insert(&gone);
    run(&ctx).await;
    let st = status(&fake);
    // The terminating pod counts as failed and is replaced at once (TerminatingOrFailed).
    assert_eq!(
        (st.active, st.ready, st.terminating, st.failed),
        (Some(1), Some(1), Some(1), Some(1))
    );
    assert_eq!(
        job_pods(&fake).len(),
        2,
        "replacement waits out the backoff"
    );
}

#[tokio::test]
async fn a_template_that_restarts_always_is_refused() {
    let mut j = job(Some(1), Some(1));
    j.spec
        .as_mut()
        .unwrap()
        .template
        .spec
        .as_mut()
        .unwrap()
        .restart_policy = Some("Always".into());
    let (fake, ctx) = setup(&j);
    run(&ctx).await;
    assert!(job_pods(&fake).is_empty());
    assert_eq!(count_reason(&fake, "FailedCreate"), 1);
}

#[tokio::test]
async fn a_refused_pod_creation_is_reported_and_retried() {
    let (fake, ctx) = setup(&job(Some(1), Some(1)));
    fake.fail_writes_of("Pod", 500);
    let result = JobController::new()
        .reconcile(&Key::new(Some("default"), "pi"), &ctx)
        .await;
    assert!(result.is_err());
    let failed = fake
        .events()
        .into_iter()
        .find(|e| e.reason == "FailedCreate")
        .unwrap();
    assert!(
        failed.message.starts_with("Error creating: "),
        "{}",
        failed.message
    );
    fake.fail_writes_of("Pod", 0);
    run(&ctx).await;
    assert_eq!(job_pods(&fake).len(), 1);
}
