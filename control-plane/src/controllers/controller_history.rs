//! ControllerRevisions: the immutable snapshots of a pod template that DaemonSets and
//! StatefulSets keep, so that pods can be told apart by the revision they were made from, a
//! rollback can find an earlier template again, and `kubectl rollout history` can list them.
//!
//! A revision is named `<owner>-<hash>`, labelled with the template's labels plus
//! `controller-revision-hash`, owned by its owner, and holds a patch that restores the owner's
//! template (`{"spec":{"template":{..., "$patch":"replace"}}}`, as Kubernetes stores it). Its
//! `revision` number orders the history; going back to an earlier template renumbers that
//! revision rather than creating a duplicate.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use serde_json::{json, Value};

use super::context::{controller_of, controller_ref, ControllerError, Ctx, Delete, Object};
use super::pods;

/// The label naming the revision a pod (and a revision) belongs to.
pub const REVISION_HASH_LABEL: &str = "controller-revision-hash";

/// How many old revisions are kept when revisionHistoryLimit is not set.
pub const DEFAULT_HISTORY_LIMIT: i32 = 10;

/// Longest owner-name prefix of a revision name (Kubernetes keeps room for the hash within
/// the 253 characters of a name).
const MAX_PREFIX_LEN: usize = 223;

/// How many hash collisions in a row are tolerated before giving up for this reconcile.
const MAX_COLLISIONS: i32 = 100;

/// The data a revision stores for `template`: a strategic-merge patch that puts the template
/// back in place.
pub fn template_patch(template: &PodTemplateSpec) -> Value {
    let mut template = serde_json::to_value(template).unwrap_or_else(|_| json!({}));
    if let Some(map) = template.as_object_mut() {
        map.insert("$patch".into(), Value::from("replace"));
    }
    json!({ "spec": { "template": template } })
}

/// The pod template a revision holds, if its data is a template patch.
pub fn template_of(revision: &ControllerRevision) -> Option<PodTemplateSpec> {
    let mut template = revision.data.as_ref()?.0.pointer("/spec/template")?.clone();
    template.as_object_mut()?.remove("$patch");
    serde_json::from_value(template).ok()
}

/// The hash that pods made from `revision` carry (its label; the name when unlabelled, as
/// Kubernetes falls back to).
pub fn revision_hash(revision: &ControllerRevision) -> String {
    revision
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(REVISION_HASH_LABEL))
        .cloned()
        .unwrap_or_else(|| revision.metadata.name.clone().unwrap_or_default())
}

/// The revision name for `owner_name` and `hash`.
pub fn revision_name(owner_name: &str, hash: &str) -> String {
    let mut end = owner_name.len().min(MAX_PREFIX_LEN);
    while !owner_name.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}-{hash}", &owner_name[..end])
}

/// The revisions `owner` controls, oldest first (by revision number, then age, then name).
pub fn controlled_revisions<T: Object>(
    ctx: &Ctx,
    owner: &T,
) -> Result<Vec<ControllerRevision>, ControllerError> {
    let meta = owner.metadata();
    let uid = meta.uid.as_deref().unwrap_or_default();
    let mut revisions: Vec<ControllerRevision> = ctx
        .owned::<ControllerRevision>(meta.namespace.as_deref(), uid)?
        .into_iter()
        .filter(|r| controller_of(&r.metadata).is_some_and(|c| c.uid == uid))
        .collect();
    sort_revisions(&mut revisions);
    Ok(revisions)
}

/// Orders revisions oldest first, as Kubernetes' SortControllerRevisions.
pub fn sort_revisions(revisions: &mut [ControllerRevision]) {
    revisions.sort_by(|a, b| {
        a.revision
            .cmp(&b.revision)
            .then_with(|| {
                let at =
                    |r: &ControllerRevision| r.metadata.creation_timestamp.as_ref().map(|t| t.0);
                at(a).cmp(&at(b))
            })
            .then_with(|| a.metadata.name.cmp(&b.metadata.name))
    });
}

/// An owner's history after [`sync_revisions`].
#[derive(Debug, Clone)]
pub struct Revisions {
    /// Every revision the owner controls, oldest first, the update revision included.
    pub all: Vec<ControllerRevision>,
    /// The revision of the owner's template as it is now.
    pub update: ControllerRevision,
    /// The collision count the owner's status should record (raised when the name a hash gave
    /// was taken by a revision with other data).
    pub collision_count: Option<i32>,
}

impl Revisions {
    /// The revision named `name`, if the owner controls it.
    pub fn named(&self, name: &str) -> Option<&ControllerRevision> {
        self.all
            .iter()
            .find(|r| r.metadata.name.as_deref() == Some(name))
    }
}

/// Finds or makes the revision of `template` for `owner`: the newest revision holding the same
/// data when there is one (renumbered to come last when it is an older one, i.e. a rollback),
/// else a new revision numbered after the newest.
pub async fn sync_revisions<T: Object>(
    ctx: &Ctx,
    owner: &T,
    template: &PodTemplateSpec,
    collision_count: Option<i32>,
) -> Result<Revisions, ControllerError> {
    let mut all = controlled_revisions(ctx, owner)?;
    let data = template_patch(template);
    let next = all.last().map_or(1, |r| r.revision + 1);
    let equal = all
        .iter()
        .rposition(|r| r.data.as_ref().is_some_and(|d| d.0 == data));
    let mut collision_count = collision_count;
    let update = match equal {
        Some(i) if i + 1 == all.len() => all[i].clone(),
        Some(i) => {
            // A rollback to an earlier template: that revision becomes the newest.
            let mut renumbered = all[i].clone();
            renumbered.revision = next;
            let stored = ctx.replace(&renumbered).await?;
            all[i] = stored.clone();
            stored
        }
        None => {
            let created =
                create_revision(ctx, owner, template, &data, next, &mut collision_count).await?;
            if !all.iter().any(|r| r.metadata.name == created.metadata.name) {
                all.push(created.clone());
            }
            created
        }
    };
    sort_revisions(&mut all);
    Ok(Revisions {
        all,
        update,
        collision_count,
    })
}

async fn create_revision<T: Object>(
    ctx: &Ctx,
    owner: &T,
    template: &PodTemplateSpec,
    data: &Value,
    number: i64,
    collision_count: &mut Option<i32>,
) -> Result<ControllerRevision, ControllerError> {
    let meta = owner.metadata();
    let namespace = meta.namespace.as_deref();
    let owner_name = meta.name.as_deref().unwrap_or_default();
    let template_labels = template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let mut attempts = 0;
    loop {
        let hash = pods::template_hash(data, *collision_count);
        let mut labels: BTreeMap<String, String> = template_labels.clone();
        labels.insert(REVISION_HASH_LABEL.into(), hash.clone());
        let revision = ControllerRevision {
            metadata: ObjectMeta {
                name: Some(revision_name(owner_name, &hash)),
                namespace: meta.namespace.clone(),
                labels: Some(labels),
                annotations: meta.annotations.clone(),
                owner_references: Some(vec![controller_ref(owner)]),
                ..Default::default()
            },
            data: Some(RawExtension(data.clone())),
            revision: number,
        };
        let err = match ctx.create(namespace, &revision).await {
            Ok(created) => return Ok(created),
            Err(err) if err.is_already_exists() => err,
            Err(err) => return Err(err),
        };
        let name = revision.metadata.name.as_deref().unwrap_or_default();
        let existing = ctx.get::<ControllerRevision>(namespace, name)?;
        if let Some(existing) = existing {
            if existing.data.as_ref().is_some_and(|d| &d.0 == data) {
                // Ours from an earlier attempt that the cache had not shown yet.
                return Ok(existing);
            }
        }
        attempts += 1;
        if attempts >= MAX_COLLISIONS {
            return Err(err);
        }
        tracing::info!(
            owner = owner_name,
            name,
            "revision hash collision, retrying with a new hash"
        );
        *collision_count = Some(collision_count.unwrap_or(0) + 1);
    }
}

/// Deletes the oldest revisions that no pod uses and that are neither of `live` (the current
/// and update revisions, the revisions of live pods) until at most `limit` such remain.
pub async fn truncate_history(
    ctx: &Ctx,
    revisions: &[ControllerRevision],
    live: &BTreeSet<String>,
    limit: Option<i32>,
) -> Result<(), ControllerError> {
    let limit = usize::try_from(limit.unwrap_or(DEFAULT_HISTORY_LIMIT).max(0)).unwrap_or(0);
    let history: Vec<&ControllerRevision> = revisions
        .iter()
        .filter(|r| !live.contains(r.metadata.name.as_deref().unwrap_or_default()))
        .collect();
    let excess = history.len().saturating_sub(limit);
    for revision in history.into_iter().take(excess) {
        let options = Delete {
            uid: revision.metadata.uid.clone(),
            ..Default::default()
        };
        ctx.delete::<ControllerRevision>(
            revision.metadata.namespace.as_deref(),
            revision.metadata.name.as_deref().unwrap_or_default(),
            &options,
        )
        .await?;
    }
    Ok(())
}

#[cfg(test)]
#[path = "controller_history_tests.rs"]
mod tests;
