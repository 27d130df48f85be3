//! The StatefulSet controller: pods with stable names `<set>-<ordinal>` for ordinals
//! `start..start+replicas`, created in order and removed from the highest ordinal.
//!
//! With podManagementPolicy OrderedReady (the default) a reconcile makes at most one step and
//! stops at the first pod that is not Running, Ready and available: so ordinal N is created
//! only once 0..N-1 are up, and scale-down deletes one pod at a time and waits for it to be
//! gone. Parallel creates and deletes everything at once. Failed pods are deleted and made
//! again. Templates are versioned as ControllerRevisions (`controller_history.rs`): a pod is
//! labelled with its revision's name; a RollingUpdate replaces pods at ordinals >= partition,
//! highest first, one at a time, each waiting for the previous to be Ready; OnDelete leaves
//! that to the user.

use std::collections::{BTreeSet, HashSet};
use std::sync::Mutex;

use async_trait::async_trait;
use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, PodTemplateSpec};
use k8s_openapi::chrono::{DateTime, Utc};

use super::context::{controller_of, ControllerError, Ctx, Delete, EventType, TypeRef};
use super::controller_history::{sync_revisions, template_of, truncate_history};
use super::pods;
use super::reconciler::{Action, Key, Reconciler};
use super::stateful_pod::{
    claims, identity_matches, is_healthy, is_running_and_ready, new_pod, ordinal_of, revision_of,
    set_identity,
};
use super::statefulset_status::{complete_rolling_update, replica_status, requeue_action};

/// Reconciles StatefulSets ("statefulset-controller").
#[derive(Default)]
pub struct StatefulSetReconciler {
    /// Sets (by uid) already warned that the API serves no PersistentVolumeClaims.
    warned_no_claims: Mutex<HashSet<String>>,
}

impl StatefulSetReconciler {
    /// A StatefulSet controller.
    pub fn new() -> StatefulSetReconciler {
        StatefulSetReconciler::default()
    }
}

/// One reconcile's view of the set: what it needs to make and judge pods.
struct Pass<'a> {
    ctx: &'a Ctx,
    set: &'a StatefulSet,
    spec: &'a StatefulSetSpec,
    set_name: &'a str,
    start: i32,
    monotonic: bool,
    now: DateTime<Utc>,
    current: (&'a str, PodTemplateSpec),
    update: (&'a str, &'a PodTemplateSpec),
    reconciler: &'a StatefulSetReconciler,
}

/// Whether to go on to the next pod or stop this reconcile here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Next,
    Stop,
}

#[async_trait]
impl Reconciler for StatefulSetReconciler {
    fn name(&self) -> &'static str {
        "statefulset-controller"
    }

    fn kind(&self) -> TypeRef {
        TypeRef::of::<StatefulSet>()
    }

    fn watches(&self) -> Vec<TypeRef> {
        vec![TypeRef::of::<Pod>()]
    }

    async fn reconcile(&self, key: &Key, ctx: &Ctx) -> Result<Action, ControllerError> {
        let namespace = key.namespace.as_deref();
        let Some(set) = ctx.get::<StatefulSet>(namespace, &key.name)? else {
            return Ok(Action::Done);
        };
        let Some(spec) = set.spec.as_ref() else {
            tracing::warn!(statefulset = %key, "StatefulSet without spec, skipped");
            return Ok(Action::Done);
        };
        let uid = set.metadata.uid.clone().unwrap_or_default();
        let set_name = set.metadata.name.as_deref().unwrap_or_default();
        let members: Vec<(i32, Pod)> = ctx
            .owned::<Pod>(namespace, &uid)?
            .into_iter()
            .filter(|p| controller_of(&p.metadata).is_some_and(|c| c.uid == uid))
            .filter_map(|p| Some((ordinal_of(set_name, p.metadata.name.as_deref()?)?, p)))
            .collect();
        let old_status = set.status.clone().unwrap_or_default();
        let revisions =
            sync_revisions(ctx, &set, &spec.template, old_status.collision_count).await?;
        let update_name = revisions.update.metadata.name.clone().unwrap_or_default();
        let current = old_status
            .current_revision
            .as_deref()
            .and_then(|name| revisions.named(name))
            .unwrap_or(&revisions.update);
        let current_name = current.metadata.name.clone().unwrap_or_default();
        let pass = Pass {
            ctx,
            set: &set,
            spec,
            set_name,
            start: spec
                .ordinals
                .as_ref()
                .and_then(|o| o.start)
                .unwrap_or(0)
                .max(0),
            monotonic: spec.pod_management_policy.as_deref() != Some("Parallel"),
            now: ctx.now(),
            current: (
                &current_name,
                template_of(current).unwrap_or_else(|| spec.template.clone()),
            ),
            update: (&update_name, &spec.template),
            reconciler: self,
        };
        // A set being deleted only reports; its pods go with it.
        if set.metadata.deletion_timestamp.is_none() {
            pass.sync_pods(&members, old_status.current_replicas.unwrap_or(0))
                .await?;
        }

        let pods: Vec<&Pod> = members.iter().map(|(_, p)| p).collect();
        let min_ready = spec.min_ready_seconds.unwrap_or(0);
        let (mut status, becomes_available) =
            replica_status(&pods, min_ready, pass.now, &current_name, &update_name);
        status.observed_generation = set.metadata.generation;
        status.current_revision = Some(current_name.clone());
        status.update_revision = Some(update_name.clone());
        status.collision_count = Some(revisions.collision_count.unwrap_or(0));
        status.conditions = old_status.conditions.clone();
        if is_rolling_update(spec) {
            complete_rolling_update(&mut status);
        }

        let mut live: BTreeSet<String> =
            BTreeSet::from([current_name.clone(), update_name.clone()]);
        live.extend(
            pods.iter()
                .filter_map(|p| revision_of(p))
                .map(str::to_string),
        );
        truncate_history(ctx, &revisions.all, &live, spec.revision_history_limit).await?;

        if old_status != status {
            let mut updated = set.clone();
            updated.status = Some(status);
            ctx.replace_status(&updated).await?;
        }
        Ok(requeue_action(becomes_available))
    }
}

impl Pass<'_> {
    /// Brings the pods towards the spec: replicas in order, then condemned pods from the
    /// highest ordinal, then the rolling update.
    async fn sync_pods(
        &self,
        members: &[(i32, Pod)],
        current_replicas: i32,
    ) -> Result<(), ControllerError> {
        let replicas = self.spec.replicas.unwrap_or(1).max(0);
        // Boxed: a slot per replica stays small even for a very large set.
        let mut slots: Vec<Option<Box<Pod>>> = vec![None; usize::try_from(replicas).unwrap_or(0)];
        let mut condemned: Vec<(i32, &Pod)> = Vec::new();
        for (ordinal, pod) in members {
            let index = usize::try_from(ordinal - self.start)
                .ok()
                .filter(|i| *i < slots.len());
            match index {
                Some(i) => slots[i] = Some(Box::new(pod.clone())),
                None => condemned.push((*ordinal, pod)),
            }
        }
        condemned.sort_by_key(|(ordinal, _)| std::cmp::Reverse(*ordinal));
        // The first pod that is not up, missing ones included, may be removed even in order.
        let first_unhealthy = slots
            .iter()
            .enumerate()
            .find(|(_, p)| !p.as_deref().is_some_and(is_healthy))
            .map(|(i, _)| self.ordinal_at(i))
            .or_else(|| {
                condemned
                    .iter()
                    .rev()
                    .find(|(_, p)| !is_healthy(p))
                    .map(|(o, _)| *o)
            });

        for (i, slot) in slots.iter_mut().enumerate() {
            let ordinal = self.ordinal_at(i);
            if self
                .process_replica(slot, ordinal, current_replicas)
                .await?
                == Step::Stop
            {
                return Ok(());
            }
        }
        for (ordinal, pod) in &condemned {
            if self
                .process_condemned(pod, Some(*ordinal) == first_unhealthy)
                .await?
                == Step::Stop
            {
                return Ok(());
            }
        }
        if !is_rolling_update(self.spec) {
            return Ok(());
        }
        let partition = self.partition().max(0);
        for slot in slots
            .iter()
            .skip(usize::try_from(partition).unwrap_or(0))
            .rev()
        {
            let Some(pod) = slot else { return Ok(()) };
            if revision_of(pod) != Some(self.update.0) && !pods::is_terminating(pod) {
                return self.delete_pod(pod).await;
            }
            if !is_healthy(pod) {
                return Ok(());
            }
        }
        Ok(())
    }

    async fn process_replica(
        &self,
        slot: &mut Option<Box<Pod>>,
        ordinal: i32,
        current_replicas: i32,
    ) -> Result<Step, ControllerError> {
        let finished = slot
            .as_ref()
            .filter(|p| pods::is_finished(p) && !pods::is_terminating(p));
        let recreating = finished.is_some();
        if let Some(pod) = finished {
            let name = pod.metadata.name.as_deref().unwrap_or_default();
            let set_ref = super::context::full_name(&self.set.metadata);
            if pods::phase(pod) == "Failed" {
                self.ctx.event(
                    self.set,
                    EventType::Warning,
                    "RecreatingFailedPod",
                    format!("StatefulSet {set_ref} is recreating failed Pod {name}"),
                );
            } else {
                self.ctx.event(
                    self.set,
                    EventType::Normal,
                    "RecreatingTerminatedPod",
                    format!("StatefulSet {set_ref} is recreating terminated Pod {name}"),
                );
            }
            self.delete_pod(pod).await?;
            *slot = None;
        }
        let Some(pod) = slot.as_ref() else {
            let (revision, template) = if self.uses_current_revision(ordinal, current_replicas) {
                (self.current.0, &self.current.1)
            } else {
                self.update
            };
            let pod = new_pod(self.set, template, revision, ordinal);
            match self.create_pod(pod, ordinal).await {
                Ok(created) => *slot = Some(Box::new(created)),
                // The failed pod is still being removed; its deletion brings us back.
                Err(err) if recreating && err.is_already_exists() => return Ok(Step::Stop),
                Err(err) => return Err(err),
            }
            return Ok(if self.monotonic {
                Step::Stop
            } else {
                Step::Next
            });
        };
        if self.monotonic && (pods::is_terminating(pod) || !is_running_and_ready(pod)) {
            return Ok(Step::Stop);
        }
        if self.monotonic && !pods::is_available(pod, self.min_ready(), self.now) {
            return Ok(Step::Stop);
        }
        if !identity_matches(pod, ordinal) {
            let mut fixed = Pod::clone(pod);
            let name = fixed.metadata.name.clone().unwrap_or_default();
            set_identity(&mut fixed, &name, ordinal);
            match self.ctx.replace(&fixed).await {
                Ok(stored) => {
                    self.pod_event("update", &name, None);
                    *slot = Some(Box::new(stored));
                }
                Err(err) => {
                    self.pod_event("update", &name, Some(&err));
                    return Err(err);
                }
            }
        }
        Ok(Step::Next)
    }

    async fn process_condemned(
        &self,
        pod: &Pod,
        first_unhealthy: bool,
    ) -> Result<Step, ControllerError> {
        if pods::is_terminating(pod) {
            return Ok(if self.monotonic {
                Step::Stop
            } else {
                Step::Next
            });
        }
        let up = is_running_and_ready(pod) && pods::is_available(pod, self.min_ready(), self.now);
        if self.monotonic && !up && !first_unhealthy {
            return Ok(Step::Stop);
        }
        self.delete_pod(pod).await?;
        Ok(if self.monotonic {
            Step::Stop
        } else {
            Step::Next
        })
    }

    /// Whether a new pod at `ordinal` is made from the current revision rather than the update
    /// revision: below the partition of a rolling update (Kubernetes' newVersionedStatefulSetPod).
    fn uses_current_revision(&self, ordinal: i32, current_replicas: i32) -> bool {
        if !is_rolling_update(self.spec) {
            return false;
        }
        let rolling = self
            .spec
            .update_strategy
            .as_ref()
            .and_then(|s| s.rolling_update.as_ref());
        match rolling {
            None => ordinal < self.start + current_replicas,
            Some(_) => ordinal < self.start + self.partition(),
        }
    }

    /// The ordinal of replica slot `index`.
    fn ordinal_at(&self, index: usize) -> i32 {
        self.start
            .saturating_add(i32::try_from(index).unwrap_or(i32::MAX))
    }

    fn partition(&self) -> i32 {
        self.spec
            .update_strategy
            .as_ref()
            .and_then(|s| s.rolling_update.as_ref())
            .and_then(|r| r.partition)
            .unwrap_or(0)
    }

    fn min_ready(&self) -> i32 {
        self.spec.min_ready_seconds.unwrap_or(0)
    }

    /// Creates the pod's claims, then the pod, with Kubernetes' Events.
    async fn create_pod(&self, pod: Pod, ordinal: i32) -> Result<Pod, ControllerError> {
        let name = pod.metadata.name.clone().unwrap_or_default();
        if let Err(err) = self.create_claims(&name, ordinal).await {
            self.pod_event("create", &name, Some(&err));
            return Err(err);
        }
        match self
            .ctx
            .create(self.set.metadata.namespace.as_deref(), &pod)
            .await
        {
            Ok(created) => {
                self.pod_event("create", &name, None);
                Ok(created)
            }
            // Kubernetes records no Event for a name still taken.
            Err(err) if err.is_already_exists() => Err(err),
            Err(err) => {
                self.pod_event("create", &name, Some(&err));
                Err(err)
            }
        }
    }

    /// Creates the missing claims of the pod `pod_name`. An API that serves no
    /// PersistentVolumeClaims gets one Warning per set and the pods are made without them.
    async fn create_claims(&self, pod_name: &str, ordinal: i32) -> Result<(), ControllerError> {
        let namespace = self.set.metadata.namespace.as_deref();
        for claim in claims(self.set, ordinal) {
            let claim_name = claim.metadata.name.clone().unwrap_or_default();
            if self
                .ctx
                .get::<PersistentVolumeClaim>(namespace, &claim_name)?
                .is_some()
            {
                continue;
            }
            let err = match self.ctx.create(namespace, &claim).await {
                Ok(_) => {
                    let message = format!(
                        "create Claim {claim_name} Pod {pod_name} in StatefulSet {} success",
                        self.set_name
                    );
                    self.ctx
                        .event(self.set, EventType::Normal, "SuccessfulCreate", message);
                    continue;
                }
                Err(err) if err.is_already_exists() => continue,
                Err(err) => err,
            };
            let message = format!("create Claim {claim_name} for Pod {pod_name} in StatefulSet {} failed error: {err}", self.set_name);
            if !err.is_not_found() {
                self.ctx
                    .event(self.set, EventType::Warning, "FailedCreate", message);
                return Err(err);
            }
            let uid = self.set.metadata.uid.clone().unwrap_or_default();
            let first = self
                .reconciler
                .warned_no_claims
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(uid);
            if first {
                self.ctx
                    .event(self.set, EventType::Warning, "FailedCreate", message);
            }
        }
        Ok(())
    }

    async fn delete_pod(&self, pod: &Pod) -> Result<(), ControllerError> {
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        let options = Delete {
            uid: pod.metadata.uid.clone(),
            ..Default::default()
        };
        let result = self
            .ctx
            .delete::<Pod>(self.set.metadata.namespace.as_deref(), name, &options)
            .await;
        self.pod_event("delete", name, result.as_ref().err());
        result
    }

    /// Kubernetes' recordPodEvent: "create Pod web-0 in StatefulSet web successful".
    fn pod_event(&self, verb: &str, pod_name: &str, err: Option<&ControllerError>) {
        let title = match verb {
            "create" => "Create",
            "update" => "Update",
            _ => "Delete",
        };
        match err {
            None => self.ctx.event(
                self.set,
                EventType::Normal,
                &format!("Successful{title}"),
                format!(
                    "{verb} Pod {pod_name} in StatefulSet {} successful",
                    self.set_name
                ),
            ),
            Some(err) => self.ctx.event(
                self.set,
                EventType::Warning,
                &format!("Failed{title}"),
                format!(
                    "{verb} Pod {pod_name} in StatefulSet {} failed error: {err}",
                    self.set_name
                ),
            ),
        }
    }
}

fn is_rolling_update(spec: &StatefulSetSpec) -> bool {
    spec.update_strategy
        .as_ref()
        .and_then(|s| s.type_.as_deref())
        .is_none_or(|t| t == "RollingUpdate")
}

#[cfg(test)]
#[path = "statefulset_tests.rs"]
mod tests;
