//! What a hollow node pretends its pods do, decided from the pod spec and two annotations, so
//! tests and benchmarks can script workloads without running them:
//! - `restartPolicy: Always` pods start at once and stay Running and Ready;
//! - `Never` / `OnFailure` pods run for `sim.bramble.dev/run-seconds` (default 0) and exit
//!   with the next code of `sim.bramble.dev/exit-codes` (a comma list, default "0"), counted
//!   per controller, so a Job's pods can fail twice and then succeed ("1,1,0"). `OnFailure`
//!   restarts the container in place on a non-zero code, like the kubelet.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::Pod;
use time::OffsetDateTime;

use crate::pod::container::{ContainerRecord, ContainerState};

/// Annotation: seconds a run-to-completion pod runs before it exits.
pub const RUN_SECONDS: &str = "sim.bramble.dev/run-seconds";
/// Annotation: exit codes of successive runs, per controller.
pub const EXIT_CODES: &str = "sim.bramble.dev/exit-codes";

/// Successive exit codes handed out per controller uid (or per pod without one).
#[derive(Default)]
pub struct ExitCodes {
    handed_out: HashMap<String, usize>,
}

impl ExitCodes {
    /// The exit code of the next run of a container of `pod`.
    pub fn next(&mut self, pod: &Pod) -> i32 {
        let codes: Vec<i32> = annotation(pod, EXIT_CODES)
            .map(|list| {
                list.split(',')
                    .filter_map(|c| c.trim().parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        if codes.is_empty() {
            return 0;
        }
        let owner = pod
            .metadata
            .owner_references
            .iter()
            .flatten()
            .find(|r| r.controller == Some(true))
            .map(|r| r.uid.clone())
            .or_else(|| pod.metadata.uid.clone())
            .unwrap_or_default();
        let n = self.handed_out.entry(owner).or_insert(0);
        let code = codes[(*n).min(codes.len() - 1)];
        *n += 1;
        code
    }
}

fn annotation<'a>(pod: &'a Pod, key: &str) -> Option<&'a str> {
    pod.metadata
        .annotations
        .as_ref()?
        .get(key)
        .map(String::as_str)
}

/// Whether the pod's containers run to completion rather than forever.
pub fn runs_to_completion(pod: &Pod) -> bool {
    !matches!(
        pod.spec.as_ref().and_then(|s| s.restart_policy.as_deref()),
        None | Some("Always")
    )
}

/// Seconds a run-to-completion pod runs.
pub fn run_seconds(pod: &Pod) -> u64 {
    annotation(pod, RUN_SECONDS)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// Records of the pod's containers, all in `state`, with `restarts` earlier runs.
pub fn containers(pod: &Pod, state: &ContainerState, restarts: i32) -> Vec<ContainerRecord> {
    pod.spec
        .iter()
        .flat_map(|s| &s.containers)
        .map(|c| ContainerRecord {
            name: c.name.clone(),
            image: c.image.clone().unwrap_or_default(),
            image_id: format!("sim://{}", c.image.as_deref().unwrap_or_default()),
            state: state.clone(),
            last_state: None,
            restart_count: restarts,
            ready: matches!(state, ContainerState::Running { .. }),
            started: Some(matches!(state, ContainerState::Running { .. })),
        })
        .collect()
}

/// The terminated state a run ending with `code` at `now` leaves.
pub fn exited(code: i32, started: OffsetDateTime, now: OffsetDateTime) -> ContainerState {
    ContainerState::Terminated {
        exit_code: code,
        reason: if code == 0 { "Completed" } else { "Error" }.to_string(),
        message: None,
        started_at: started,
        finished_at: now,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

    fn job_pod(name: &str, codes: &str) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                uid: Some(format!("uid-{name}")),
                annotations: Some([(EXIT_CODES.to_string(), codes.to_string())].into()),
                owner_references: Some(vec![OwnerReference {
                    uid: "job-uid".into(),
                    controller: Some(true),
                    ..Default::default()
                }]),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn exit_codes_follow_the_list_per_controller_then_repeat_the_last() {
        let mut codes = ExitCodes::default();
        let got: Vec<i32> = (0..4)
            .map(|i| codes.next(&job_pod(&format!("p{i}"), "1,1,0")))
            .collect();
        assert_eq!(got, vec![1, 1, 0, 0]);
        assert_eq!(codes.next(&Pod::default()), 0, "no annotation exits 0");
    }
}
