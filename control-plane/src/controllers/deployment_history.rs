//! A Deployment's revisions: which ReplicaSet holds its current template (the "new" one) and
//! which are history, the revision numbers and annotations kubectl rollout history/undo read,
//! creating the new ReplicaSet (named after its pod-template-hash, salted by collisionCount),
//! and deleting history beyond revisionHistoryLimit.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, ReplicaSetSpec};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::Value;
use tracing::warn;

use super::context::{controller_of, controller_ref, ControllerError, Delete, EventType};
use super::deployment::{rs_name, spec_replicas, status_replicas, Rollout};
use super::deployment_status::{
    get_condition, new_condition, set_condition, FAILED_RS_CREATE, FOUND_NEW_RS, NEW_RS_CREATED,
    PROGRESSING,
};
use super::pods;

/// The label (on ReplicaSets, their selectors and pods) naming the template's revision.
pub(crate) const HASH_LABEL: &str = "pod-template-hash";
/// A ReplicaSet's revision number; on the Deployment, the new ReplicaSet's.
pub(crate) const REVISION: &str = "deployment.kubernetes.io/revision";
/// Earlier revision numbers of a ReplicaSet brought back by a rollback, comma separated.
pub(crate) const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
/// spec.replicas of the Deployment when the ReplicaSet was last sized.
pub(crate) const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
/// replicas + maxSurge of the Deployment when the ReplicaSet was last sized.
pub(crate) const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";

/// Deployment annotations that are not copied to its ReplicaSets.
const NOT_COPIED: [&str; 6] = [
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION,
    REVISION_HISTORY,
    DESIRED_REPLICAS,
    MAX_REPLICAS,
    "deprecated.deployment.rollback.to",
];

/// Kubernetes' bound on the revision-history annotation's length.
const MAX_HISTORY_CHARS: usize = 2000;

/// How often one reconcile retries creating the new ReplicaSet under a new name after a
/// hash collision before leaving it to the next reconcile.
const COLLISION_RETRIES: i32 = 5;

/// Oldest first, by creationTimestamp then name (ReplicaSetsByCreationTimestamp).
pub(crate) fn by_creation(a: &ReplicaSet, b: &ReplicaSet) -> Ordering {
    let at = |rs: &ReplicaSet| rs.metadata.creation_timestamp.as_ref().map(|t| t.0);
    at(a)
        .cmp(&at(b))
        .then_with(|| a.metadata.name.cmp(&b.metadata.name))
}

/// The first (oldest) ReplicaSet whose template is `template` apart from the hash label, and
/// the others, oldest first.
pub(crate) fn split_new_and_old(
    template: &PodTemplateSpec,
    mut replica_sets: Vec<ReplicaSet>,
) -> (Option<ReplicaSet>, Vec<ReplicaSet>) {
    replica_sets.sort_by(by_creation);
    let wanted = comparable(template);
    let position = replica_sets.iter().position(|rs| {
        rs.spec
            .as_ref()
            .and_then(|s| s.template.as_ref())
            .is_some_and(|t| comparable(t) == wanted)
    });
    let new_rs = position.map(|i| replica_sets.remove(i));
    (new_rs, replica_sets)
}

/// A template's JSON without the hash label and with empty or null fields dropped, so that
/// templates compare as Kubernetes' semantic equality does (nil and empty are the same).
fn comparable(template: &PodTemplateSpec) -> Value {
    let mut value = serde_json::to_value(template).unwrap_or(Value::Null);
    if let Some(labels) = value
        .pointer_mut("/metadata/labels")
        .and_then(Value::as_object_mut)
    {
        labels.remove(HASH_LABEL);
    }
    prune(&mut value);
    value
}

fn prune(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.values_mut().for_each(prune);
            map.retain(|_, v| !is_empty(v));
        }
        Value::Array(items) => items.iter_mut().for_each(prune),
        _ => {}
    }
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Object(map) => map.is_empty(),
        Value::Array(items) => items.is_empty(),
        _ => false,
    }
}

fn annotation<'a>(meta: &'a ObjectMeta, key: &str) -> Option<&'a str> {
    meta.annotations.as_ref()?.get(key).map(String::as_str)
}

/// The ReplicaSet's revision: 0 without the annotation, None when it is not a number.
pub(crate) fn revision(rs: &ReplicaSet) -> Option<i64> {
    match annotation(&rs.metadata, REVISION) {
        None => Some(0),
        Some(text) => text.parse().ok(),
    }
}

/// The highest revision among `replica_sets` (unreadable ones are logged and ignored).
pub(crate) fn max_revision(replica_sets: &[ReplicaSet]) -> i64 {
    replica_sets
        .iter()
        .filter_map(|rs| {
            let parsed = revision(rs);
            if parsed.is_none() {
                warn!(replicaset = %rs_name(rs), "unreadable revision annotation ignored");
            }
            parsed
        })
        .max()
        .unwrap_or(0)
}

/// The desired-replicas annotation, when it is a number.
pub(crate) fn desired_replicas(rs: &ReplicaSet) -> Option<i32> {
    annotation(&rs.metadata, DESIRED_REPLICAS)?.parse().ok()
}

/// The max-replicas annotation, when it is a number.
pub(crate) fn max_replicas(rs: &ReplicaSet) -> Option<i32> {
    annotation(&rs.metadata, MAX_REPLICAS)?.parse().ok()
}

/// Sets the desired-replicas and max-replicas annotations; true when either changed.
pub(crate) fn set_replicas_annotations(rs: &mut ReplicaSet, desired: i32, max: i32) -> bool {
    let annotations = rs.metadata.annotations.get_or_insert_with(BTreeMap::new);
    let mut changed = false;
    for (key, value) in [(DESIRED_REPLICAS, desired), (MAX_REPLICAS, max)] {
        let value = value.to_string();
        if annotations.get(key) != Some(&value) {
            annotations.insert(key.to_string(), value);
            changed = true;
        }
    }
    changed
}

/// Copies the Deployment's annotations (kubernetes.io/change-cause among them) to the
/// ReplicaSet, except kubectl's and the controller's own; true when any changed.
fn copy_annotations(deployment: &Deployment, rs: &mut ReplicaSet) -> bool {
    let annotations = rs.metadata.annotations.get_or_insert_with(BTreeMap::new);
    let mut changed = false;
    for (key, value) in deployment.metadata.annotations.iter().flatten() {
        if NOT_COPIED.contains(&key.as_str()) || annotations.get(key) == Some(value) {
            continue;
        }
        annotations.insert(key.clone(), value.clone());
        changed = true;
    }
    changed
}

/// Gives the new ReplicaSet the Deployment's annotations and revision `next` when its own is
/// lower, remembering the revision it had in revision-history (a rollback to it); true when
/// anything changed (SetNewReplicaSetAnnotations for an existing ReplicaSet).
fn set_new_rs_annotations(deployment: &Deployment, rs: &mut ReplicaSet, next: i64) -> bool {
    let changed = copy_annotations(deployment, rs);
    let annotations = rs.metadata.annotations.get_or_insert_with(BTreeMap::new);
    let previous = annotations.get(REVISION).cloned();
    let previous_number = match previous.as_deref().map(str::parse::<i64>) {
        None => 0,
        Some(Ok(number)) => number,
        Some(Err(_)) => {
            warn!(replicaset = %rs_name(rs), "unreadable revision annotation left alone");
            return changed;
        }
    };
    if previous_number >= next {
        return changed;
    }
    annotations.insert(REVISION.to_string(), next.to_string());
    if let Some(previous) = previous {
        let history = match annotations.get(REVISION_HISTORY).filter(|h| !h.is_empty()) {
            None => previous,
            Some(history) => {
                let mut kept: Vec<&str> = history.split(',').collect();
                // Forget the oldest entries rather than grow past the length bound.
                while !kept.is_empty()
                    && kept.join(",").len() + previous.len() + 1 > MAX_HISTORY_CHARS
                {
                    kept.remove(0);
                }
                kept.push(&previous);
                kept.join(",")
            }
        };
        annotations.insert(REVISION_HISTORY.to_string(), history);
    }
    true
}

impl Rollout<'_> {
    /// Brings an existing new ReplicaSet's annotations (revision, copied annotations) and
    /// minReadySeconds up to date and makes its revision the Deployment's.
    pub(crate) async fn sync_new_rs_revision(&mut self) -> Result<(), ControllerError> {
        let Some(current) = self.new_rs.clone() else {
            return Ok(());
        };
        let mut updated = current.clone();
        let mut changed = set_new_rs_annotations(
            &self.deployment,
            &mut updated,
            max_revision(&self.old_rss) + 1,
        );
        let spec = updated.spec.get_or_insert_with(Default::default);
        if spec.min_ready_seconds.unwrap_or(0) != self.plan.min_ready_seconds {
            spec.min_ready_seconds = Some(self.plan.min_ready_seconds);
            changed = true;
        }
        let rs = if changed {
            let stored = self.ctx.replace(&updated).await?;
            self.remember(stored.clone());
            stored
        } else {
            current
        };
        self.revision = annotation(&rs.metadata, REVISION).map(str::to_string);
        if self.plan.progress_deadline.is_some()
            && get_condition(&self.status, PROGRESSING).is_none()
        {
            let message = format!("Found new replica set {:?}", rs_name(&rs));
            let condition =
                new_condition(PROGRESSING, "True", FOUND_NEW_RS, message, self.ctx.now());
            set_condition(&mut self.status, condition);
        }
        Ok(())
    }

    /// Creates the ReplicaSet for the Deployment's template when there is none, sized as the
    /// strategy allows, with the next revision. A name taken by a ReplicaSet with another
    /// template bumps status.collisionCount and retries under the next name.
    pub(crate) async fn create_new_rs(&mut self) -> Result<(), ControllerError> {
        if self.new_rs.is_some() {
            return Ok(());
        }
        let next = max_revision(&self.old_rss) + 1;
        let mut collided = None;
        for _ in 0..COLLISION_RETRIES {
            let rs = self.new_rs_object(next);
            let name = rs_name(&rs);
            let size = spec_replicas(&rs);
            let error = match self.ctx.create(self.namespace(), &rs).await {
                Ok(created) => {
                    if size > 0 {
                        let message = format!("Scaled up replica set {name} from 0 to {size}");
                        self.event(EventType::Normal, "ScalingReplicaSet", message);
                    }
                    self.revision = Some(next.to_string());
                    if self.plan.progress_deadline.is_some() {
                        let message = format!("Created new replica set {name:?}");
                        let condition = new_condition(
                            PROGRESSING,
                            "True",
                            NEW_RS_CREATED,
                            message,
                            self.ctx.now(),
                        );
                        set_condition(&mut self.status, condition);
                    }
                    self.new_rs = Some(created);
                    return Ok(());
                }
                Err(error) => error,
            };
            if !error.is_already_exists() {
                return Err(self.creation_failed(&name, error).await);
            }
            let existing = self.ctx.get::<ReplicaSet>(self.namespace(), &name)?;
            let ours = existing.as_ref().is_some_and(|found| {
                controller_of(&found.metadata).map(|r| &r.uid)
                    == self.deployment.metadata.uid.as_ref()
                    && found
                        .spec
                        .as_ref()
                        .and_then(|s| s.template.as_ref())
                        .map(comparable)
                        == Some(comparable(&self.spec.template))
            });
            if ours {
                self.new_rs = existing;
                return self.sync_new_rs_revision().await;
            }
            let count = self.status.collision_count.unwrap_or(0);
            self.status.collision_count = Some(count.saturating_add(1));
            collided = Some(error);
        }
        // Still colliding: keep the count so far and let the retry go on from there.
        self.write_status().await?;
        Err(collided.unwrap_or_else(|| self.no_new_rs()))
    }

    fn no_new_rs(&self) -> ControllerError {
        ControllerError::Api {
            verb: "create",
            kind: "ReplicaSet",
            name: self.full_name(),
            code: 409,
            reason: "AlreadyExists".to_string(),
            message: "no free name for the new replica set".to_string(),
        }
    }

    /// The ReplicaSet to create for the Deployment's template.
    fn new_rs_object(&self, next: i64) -> ReplicaSet {
        let mut template = self.spec.template.clone();
        if let Some(metadata) = template.metadata.as_mut() {
            if let Some(labels) = metadata.labels.as_mut() {
                labels.remove(HASH_LABEL);
            }
            if metadata.labels.as_ref().is_some_and(BTreeMap::is_empty) {
                metadata.labels = None;
            }
        }
        let hash = pods::template_hash(&template, self.status.collision_count);
        let labels = template
            .metadata
            .get_or_insert_with(Default::default)
            .labels
            .get_or_insert_with(BTreeMap::new);
        labels.insert(HASH_LABEL.to_string(), hash.clone());
        let labels = labels.clone();
        let mut selector = self.spec.selector.clone();
        selector
            .match_labels
            .get_or_insert_with(BTreeMap::new)
            .insert(HASH_LABEL.to_string(), hash.clone());
        let size = self.new_rs_next_size(0);
        let mut rs = ReplicaSet {
            metadata: ObjectMeta {
                name: Some(format!("{}-{hash}", self.name())),
                namespace: self.deployment.metadata.namespace.clone(),
                labels: Some(labels),
                owner_references: Some(vec![controller_ref(&self.deployment)]),
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(size),
                min_ready_seconds: Some(self.plan.min_ready_seconds).filter(|s| *s != 0),
                selector,
                template: Some(template),
            }),
            status: None,
        };
        set_new_rs_annotations(&self.deployment, &mut rs, next);
        set_replicas_annotations(&mut rs, self.plan.replicas, self.plan.max_total());
        rs
    }

    /// Reports a failed create as Kubernetes does (Warning Event, Progressing False) and
    /// hands the error back for a retry.
    async fn creation_failed(&mut self, name: &str, error: ControllerError) -> ControllerError {
        let message = format!("Failed to create new replica set {name:?}: {error}");
        self.event(EventType::Warning, FAILED_RS_CREATE, message.clone());
        if self.plan.progress_deadline.is_some() {
            let condition = new_condition(
                PROGRESSING,
                "False",
                FAILED_RS_CREATE,
                message,
                self.ctx.now(),
            );
            set_condition(&mut self.status, condition);
            if let Err(status_error) = self.write_status().await {
                warn!(deployment = %self.full_name(), error = %status_error, "status not recorded");
            }
        }
        error
    }

    /// Deletes the oldest revisions beyond revisionHistoryLimit, only those fully scaled down
    /// with no pods left and whose scale-down the ReplicaSet controller has observed.
    pub(crate) async fn cleanup_history(&mut self) -> Result<(), ControllerError> {
        let Some(limit) = self.plan.history_limit else {
            return Ok(());
        };
        let mut alive: Vec<&ReplicaSet> = self
            .old_rss
            .iter()
            .filter(|rs| rs.metadata.deletion_timestamp.is_none())
            .collect();
        let surplus = alive
            .len()
            .saturating_sub(usize::try_from(limit).unwrap_or(0));
        if surplus == 0 {
            return Ok(());
        }
        alive.sort_by(|a, b| {
            revision(a)
                .unwrap_or(0)
                .cmp(&revision(b).unwrap_or(0))
                .then_with(|| by_creation(a, b))
        });
        let doomed: Vec<(String, Option<String>)> = alive
            .into_iter()
            .take(surplus)
            .filter(|rs| {
                let observed = rs
                    .status
                    .as_ref()
                    .and_then(|s| s.observed_generation)
                    .unwrap_or(0);
                status_replicas(rs) == 0
                    && spec_replicas(rs) == 0
                    && rs.metadata.generation.unwrap_or(0) <= observed
            })
            .map(|rs| (rs_name(rs), rs.metadata.uid.clone()))
            .collect();
        for (name, uid) in doomed {
            let options = Delete {
                uid,
                ..Default::default()
            };
            match self
                .ctx
                .delete::<ReplicaSet>(self.namespace(), &name, &options)
                .await
            {
                Err(error) if !error.is_not_found() => return Err(error),
                _ => self
                    .old_rss
                    .retain(|rs| rs.metadata.name.as_deref() != Some(&name)),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "deployment_history_tests.rs"]
mod tests;
