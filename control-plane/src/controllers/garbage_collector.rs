//! Garbage collection by ownerReferences, as Kubernetes does it:
//! - background: when every owner of an object is gone, the object is deleted;
//! - orphan: an owner deleted with the `orphan` finalizer first has its ownerReferences removed
//!   from its dependents, then the finalizer is dropped (and the owner goes);
//! - foreground: an owner deleted with the `foregroundDeletion` finalizer waits until its
//!   dependents are deleted, then the finalizer is dropped.
//!
//! The collector keeps an index owner-uid -> dependents, fed by the watch cache's changes, so a
//! delete costs work proportional to its dependents, not to the size of the cluster.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use serde_json::Value;
use tokio::sync::broadcast::error::RecvError;

use crate::apiserver::delete::DeleteOptions;
use crate::apiserver::objects::meta_str;
use crate::apiserver::resources::{by_kind, Resource};
use crate::apiserver::status::ApiError;
use crate::apiserver::ApiServer;
use crate::watch_cache::{Change, ChangeKind, WatchStart};

const ORPHAN: &str = "orphan";
const FOREGROUND: &str = "foregroundDeletion";
const MANAGER: &str = "garbage-collector";

/// Where an object lives, enough to act on it.
#[derive(Debug, Clone)]
struct ObjectRef {
    resource: &'static Resource,
    namespace: Option<String>,
    name: String,
    uid: String,
}

impl ObjectRef {
    fn of(object: &Value) -> Option<ObjectRef> {
        let resource = by_kind(
            object.get("apiVersion")?.as_str()?,
            object.get("kind")?.as_str()?,
        )?;
        Some(ObjectRef {
            resource,
            namespace: meta_str(object, "namespace").map(str::to_string),
            name: meta_str(object, "name")?.to_string(),
            uid: meta_str(object, "uid")?.to_string(),
        })
    }
}

fn owner_uids(object: &Value) -> Vec<String> {
    object
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .map(|refs| {
            refs.iter()
                .filter_map(|r| r.get("uid")?.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Work the collector does, deduplicated.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Work {
    /// Delete the dependents of this uid whose owners are all gone.
    OwnerGone(String),
    /// Process the orphan/foreground finalizers of this object.
    Finalize(String),
    /// Check that the owners of this object exist.
    CheckOwners(String),
}

/// What the collector needs of an object; kept instead of the object itself, so the index costs
/// little beside the watch cache.
#[derive(Debug, Clone)]
struct Entry {
    owners: Vec<String>,
    finalizers: Vec<String>,
    deleting: bool,
}

impl Entry {
    fn of(object: &Value) -> Entry {
        Entry {
            owners: owner_uids(object),
            finalizers: object
                .pointer("/metadata/finalizers")
                .and_then(Value::as_array)
                .map(|f| {
                    f.iter()
                        .filter_map(|x| x.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default(),
            deleting: meta_str(object, "deletionTimestamp").is_some(),
        }
    }

    fn has_finalizer(&self, name: &str) -> bool {
        self.finalizers.iter().any(|f| f == name)
    }
}

#[derive(Default)]
struct Index {
    /// Every live object by uid.
    objects: HashMap<String, (ObjectRef, Entry)>,
    /// owner uid -> dependent uids.
    dependents: HashMap<String, HashSet<String>>,
}

impl Index {
    fn insert(&mut self, object: &Value) -> Option<(ObjectRef, Entry)> {
        let r = ObjectRef::of(object)?;
        let entry = Entry::of(object);
        if let Some((_, old)) = self.objects.get(&r.uid) {
            for owner in &old.owners {
                if let Some(set) = self.dependents.get_mut(owner) {
                    set.remove(&r.uid);
                }
            }
        }
        for owner in &entry.owners {
            self.dependents
                .entry(owner.clone())
                .or_default()
                .insert(r.uid.clone());
        }
        self.objects
            .insert(r.uid.clone(), (r.clone(), entry.clone()));
        Some((r, entry))
    }

    fn remove(&mut self, object: &Value) -> Option<ObjectRef> {
        let r = ObjectRef::of(object)?;
        if let Some((_, old)) = self.objects.remove(&r.uid) {
            for owner in &old.owners {
                if let Some(set) = self.dependents.get_mut(owner) {
                    set.remove(&r.uid);
                    if set.is_empty() {
                        self.dependents.remove(owner);
                    }
                }
            }
        }
        Some(r)
    }

    fn dependents_of(&self, uid: &str) -> Vec<(ObjectRef, Entry)> {
        self.dependents
            .get(uid)
            .into_iter()
            .flatten()
            .filter_map(|d| self.objects.get(d).cloned())
            .collect()
    }
}

struct Queue {
    items: VecDeque<Work>,
    queued: HashSet<Work>,
}

impl Queue {
    fn push(&mut self, w: Work) {
        if self.queued.insert(w.clone()) {
            self.items.push_back(w);
        }
    }

    fn pop(&mut self) -> Option<Work> {
        let w = self.items.pop_front()?;
        self.queued.remove(&w);
        Some(w)
    }
}

/// Runs until the server shuts down.
pub async fn run(api: Arc<ApiServer>) {
    let mut index = Index::default();
    let mut queue = Queue {
        items: VecDeque::new(),
        queued: HashSet::new(),
    };
    let watch = match api.cache.watch("/registry/", WatchStart::Now) {
        Ok(w) => w,
        Err(e) => {
            tracing::error!(error = %e, "garbage collector cannot watch the cache");
            return;
        }
    };
    let mut live = watch.live;
    let mut seen = watch.revision;
    for change in &watch.initial {
        index.insert(&change.object.value());
    }
    for (uid, (_, entry)) in &index.objects {
        if entry.deleting {
            queue.push(Work::Finalize(uid.clone()));
        }
        if !entry.owners.is_empty() {
            queue.push(Work::CheckOwners(uid.clone()));
        }
    }
    loop {
        while let Some(work) = queue.pop() {
            if api.shutdown.is_cancelled() {
                return;
            }
            if let Err(e) = process(&api, &index, &work).await {
                tracing::warn!(?work, error = %e, "garbage collection step failed; it will be retried on the next change");
            }
            // Keep the index current between steps.
            while let Ok(change) = live.try_recv() {
                if change.revision > seen {
                    seen = change.revision;
                    observe(&mut index, &mut queue, &change);
                }
            }
        }
        let next = tokio::select! {
            _ = api.shutdown.cancelled() => return,
            c = live.recv() => c,
        };
        match next {
            Ok(change) if change.revision > seen => {
                seen = change.revision;
                observe(&mut index, &mut queue, &change);
            }
            Ok(_) => {}
            Err(RecvError::Lagged(_)) => {
                // Fell behind: rebuild from the cache and re-check everything.
                tracing::warn!(
                    "garbage collector fell behind the change stream; rebuilding its index"
                );
                index = Index::default();
                let (all, rev) = api.cache.list("/registry/");
                seen = rev;
                for obj in &all {
                    if let Some((r, _)) = index.insert(&obj.value()) {
                        queue.push(Work::CheckOwners(r.uid.clone()));
                        queue.push(Work::Finalize(r.uid));
                    }
                }
            }
            Err(RecvError::Closed) => return,
        }
    }
}

fn observe(index: &mut Index, queue: &mut Queue, change: &Change) {
    let object = change.object.value();
    match change.kind {
        ChangeKind::Deleted => {
            let owners = owner_uids(&object);
            if let Some(r) = index.remove(&object) {
                queue.push(Work::OwnerGone(r.uid));
            }
            // An owner waiting in the foreground may now be free.
            for owner in owners {
                queue.push(Work::Finalize(owner));
            }
        }
        ChangeKind::Added | ChangeKind::Modified => {
            if let Some((r, entry)) = index.insert(&object) {
                if entry.deleting {
                    queue.push(Work::Finalize(r.uid.clone()));
                    for owner in &entry.owners {
                        queue.push(Work::Finalize(owner.clone()));
                    }
                }
                if change.kind == ChangeKind::Added && !entry.owners.is_empty() {
                    queue.push(Work::CheckOwners(r.uid));
                }
            }
        }
    }
}

async fn process(api: &ApiServer, index: &Index, work: &Work) -> Result<(), ApiError> {
    match work {
        Work::OwnerGone(uid) => {
            for (dep, obj) in index.dependents_of(uid) {
                delete_if_orphaned(api, index, &dep, &obj).await?;
            }
        }
        Work::CheckOwners(uid) => {
            if let Some((dep, obj)) = index.objects.get(uid).cloned() {
                delete_if_orphaned(api, index, &dep, &obj).await?;
            }
        }
        Work::Finalize(uid) => {
            let Some((owner, obj)) = index.objects.get(uid).cloned() else {
                return Ok(());
            };
            if !obj.deleting {
                return Ok(());
            }
            let dependents = index.dependents_of(uid);
            if obj.has_finalizer(ORPHAN) {
                for (dep, _) in &dependents {
                    let owner_uid = uid.clone();
                    api.internal_update(
                        dep.resource,
                        dep.namespace.as_deref(),
                        &dep.name,
                        MANAGER,
                        move |current| {
                            let mut next = current.clone();
                            if let Some(refs) = next
                                .pointer_mut("/metadata/ownerReferences")
                                .and_then(Value::as_array_mut)
                            {
                                refs.retain(|r| {
                                    r.get("uid").and_then(Value::as_str) != Some(owner_uid.as_str())
                                });
                            }
                            Ok(next)
                        },
                    )
                    .await
                    .map(|_| ())
                    .or_else(ignore_not_found)?;
                }
                remove_finalizer(api, &owner, ORPHAN).await?;
            } else if obj.has_finalizer(FOREGROUND) {
                let mut waiting = false;
                for (dep, dep_obj) in &dependents {
                    waiting = true;
                    if !dep_obj.deleting {
                        delete_dependent(api, dep, "Foreground").await?;
                    }
                }
                if !waiting {
                    remove_finalizer(api, &owner, FOREGROUND).await?;
                }
            }
        }
    }
    Ok(())
}

async fn delete_if_orphaned(
    api: &ApiServer,
    index: &Index,
    dep: &ObjectRef,
    obj: &Entry,
) -> Result<(), ApiError> {
    let owners = &obj.owners;
    if owners.is_empty() || obj.deleting {
        return Ok(());
    }
    if owners.iter().any(|o| index.objects.contains_key(o)) {
        return Ok(());
    }
    tracing::info!(kind = dep.resource.kind, namespace = ?dep.namespace, name = %dep.name, "deleting object whose owners are gone");
    delete_dependent(api, dep, "Background").await
}

/// Deletes `dep` with `propagation`, only if it is still the object the index saw (uid
/// precondition); an object already gone is fine.
async fn delete_dependent(
    api: &ApiServer,
    dep: &ObjectRef,
    propagation: &str,
) -> Result<(), ApiError> {
    let opts = DeleteOptions {
        propagation: Some(propagation.into()),
        uid: Some(dep.uid.clone()),
        ..Default::default()
    };
    api.delete_object(
        dep.resource,
        dep.namespace.as_deref(),
        &dep.name,
        &opts,
        false,
    )
    .await
    .map(|_| ())
    .or_else(ignore_not_found)
}

async fn remove_finalizer(
    api: &ApiServer,
    owner: &ObjectRef,
    finalizer: &'static str,
) -> Result<(), ApiError> {
    api.internal_update(
        owner.resource,
        owner.namespace.as_deref(),
        &owner.name,
        MANAGER,
        move |current| {
            let mut next = current.clone();
            if let Some(f) = next
                .pointer_mut("/metadata/finalizers")
                .and_then(Value::as_array_mut)
            {
                f.retain(|x| x != finalizer);
            }
            Ok(next)
        },
    )
    .await
    .map(|_| ())
    .or_else(ignore_not_found)
}

fn ignore_not_found(e: ApiError) -> Result<(), ApiError> {
    if e.code == 404 || (e.code == 409 && e.message.contains("Precondition failed: UID")) {
        Ok(())
    } else {
        Err(e)
    }
}
