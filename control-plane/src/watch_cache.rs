//! The in-memory watch cache: every object of the store, parsed once, plus a window of recent
//! changes. Lists, gets and watches are served from here, never by scanning the store per request
//! (Kubernetes' cacher does the same in front of etcd).
//!
//! It is fed by one task that lists the store and then follows its watch. Every change is kept
//! in a bounded history so a client can resume a watch from a recent resourceVersion; older ones
//! get 410 Expired and relist, as informers expect.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::StreamExt as _;
use serde_json::Value;
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;

use crate::store::{Event, EventKind, KeyValue, Revision, Store};

/// Every field path any resource can be selected on (see
/// `apiserver::objects::selectable_fields`); their values are kept beside each object so
/// selectors never parse it.
pub const INDEXED_FIELDS: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "spec.nodeName",
    "spec.restartPolicy",
    "spec.schedulerName",
    "spec.serviceAccountName",
    "spec.hostNetwork",
    "spec.unschedulable",
    "status.phase",
    "status.podIP",
    "status.nominatedNodeName",
    "status.replicas",
    "status.successful",
    "type",
    "reason",
    "reportingComponent",
    "source.component",
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
];

/// One object as the cache keeps it: its JSON (resourceVersion stamped) ready to be written to
/// a client, plus what selectors need. Parsing happens once, when the change arrives; lists and
/// watches copy bytes.
#[derive(Debug)]
pub struct CachedObject {
    /// The object's JSON.
    pub json: bytes::Bytes,
    /// metadata.labels.
    pub labels: std::collections::BTreeMap<String, String>,
    /// Values of the [`INDEXED_FIELDS`] the object has.
    fields: Vec<(&'static str, String)>,
    /// The object's resourceVersion (the store revision of its last change).
    pub revision: Revision,
    /// metadata.ownerReferences, for the owner index controllers read dependents through.
    pub owners: Vec<OwnerRef>,
}

/// One entry of an object's metadata.ownerReferences.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerRef {
    /// The owner's kind.
    pub kind: String,
    /// The owner's name (in the dependent's namespace).
    pub name: String,
    /// The owner's uid.
    pub uid: String,
    /// Whether this owner is the dependent's managing controller.
    pub controller: bool,
}

impl CachedObject {
    /// Builds the cached form of `value`, stamping `revision` as its resourceVersion.
    pub fn new(value: Value, revision: Revision) -> CachedObject {
        let value = with_revision(value, revision);
        let labels = value
            .pointer("/metadata/labels")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                    .collect()
            })
            .unwrap_or_default();
        let fields = INDEXED_FIELDS
            .iter()
            .filter_map(|path| {
                let mut cur = &value;
                for part in path.split('.') {
                    cur = cur.get(part)?;
                }
                let text = match cur {
                    Value::String(s) => s.clone(),
                    Value::Bool(b) => b.to_string(),
                    Value::Number(n) => n.to_string(),
                    _ => return None,
                };
                Some((*path, text))
            })
            .collect();
        let owners = value
            .pointer("/metadata/ownerReferences")
            .and_then(Value::as_array)
            .map(|refs| {
                refs.iter()
                    .filter_map(|r| {
                        Some(OwnerRef {
                            kind: r.get("kind")?.as_str()?.to_string(),
                            name: r.get("name")?.as_str()?.to_string(),
                            uid: r.get("uid")?.as_str()?.to_string(),
                            controller: r.get("controller").and_then(Value::as_bool) == Some(true),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        let json = bytes::Bytes::from(serde_json::to_vec(&value).unwrap_or_default());
        CachedObject {
            json,
            labels,
            fields,
            revision,
            owners,
        }
    }

    /// The object parsed (for the few callers that need more than bytes, labels and fields).
    pub fn value(&self) -> Value {
        serde_json::from_slice(&self.json).unwrap_or(Value::Null)
    }

    /// The value of an indexed field, if the object has it.
    pub fn field(&self, path: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(p, _)| *p == path)
            .map(|(_, v)| v.as_str())
    }

    /// The owner reference marked as the managing controller, if any.
    pub fn controller(&self) -> Option<&OwnerRef> {
        self.owners.iter().find(|o| o.controller)
    }

    /// The same object carrying another resourceVersion (deletes report the deletion's).
    fn restamped(&self, revision: Revision) -> CachedObject {
        CachedObject::new(self.value(), revision)
    }
}

/// How a change looks to a watcher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    /// The object appeared.
    Added,
    /// The object changed.
    Modified,
    /// The object is gone (the event carries its last state).
    Deleted,
}

impl ChangeKind {
    /// The watch event type on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Added => "ADDED",
            ChangeKind::Modified => "MODIFIED",
            ChangeKind::Deleted => "DELETED",
        }
    }
}

/// One change of one object.
#[derive(Debug)]
pub struct Change {
    /// What happened.
    pub kind: ChangeKind,
    /// The storage key.
    pub key: String,
    /// The object after the change (for deletes, its last state with the deletion's revision).
    pub object: Arc<CachedObject>,
    /// The object before the change, if it existed (watchers filtering by selector need it).
    pub previous: Option<Arc<CachedObject>>,
    /// The store revision of the change.
    pub revision: Revision,
}

/// Where a watch starts.
#[derive(Debug, Clone, Copy)]
pub enum WatchStart {
    /// Send the current objects as ADDED, then changes (resourceVersion "" or "0").
    Now,
    /// Send the changes after this revision.
    After(Revision),
}

/// The start of a watch: what to send first, then a subscription for what follows.
pub struct CacheWatch {
    /// Changes to send first, in order.
    pub initial: Vec<Arc<Change>>,
    /// Live changes; skip any with revision <= `revision`.
    pub live: broadcast::Receiver<Arc<Change>>,
    /// The revision the initial changes bring the watcher to.
    pub revision: Revision,
}

/// A watch asked to start before the retained window.
#[derive(Debug, thiserror::Error)]
#[error("too old resource version: {asked} ({oldest})")]
pub struct TooOld {
    /// The revision asked for.
    pub asked: Revision,
    /// The oldest revision a watch may start after.
    pub oldest: Revision,
}

struct State {
    objects: BTreeMap<String, Arc<CachedObject>>,
    /// owner uid -> keys of the objects naming it in ownerReferences.
    by_owner: HashMap<String, BTreeSet<String>>,
    /// node name -> keys of the pods bound to it (spec.nodeName).
    by_node: HashMap<String, BTreeSet<String>>,
    history: VecDeque<Arc<Change>>,
    /// Watches may start after any revision >= this one.
    oldest: Revision,
    revision: Revision,
}

/// The cache. Cheap to share behind an `Arc`.
pub struct WatchCache {
    state: RwLock<State>,
    changes: broadcast::Sender<Arc<Change>>,
    revision: watch::Sender<Revision>,
    history_limit: usize,
}

impl State {
    fn index(&mut self, key: &str, object: &CachedObject) {
        for owner in &object.owners {
            self.by_owner
                .entry(owner.uid.clone())
                .or_default()
                .insert(key.to_string());
        }
        if let Some(node) = object.field("spec.nodeName").filter(|n| !n.is_empty()) {
            self.by_node
                .entry(node.to_string())
                .or_default()
                .insert(key.to_string());
        }
    }

    fn unindex(&mut self, key: &str, object: &CachedObject) {
        for owner in &object.owners {
            remove_from(&mut self.by_owner, &owner.uid, key);
        }
        if let Some(node) = object.field("spec.nodeName") {
            remove_from(&mut self.by_node, node, key);
        }
    }
}

fn remove_from(index: &mut HashMap<String, BTreeSet<String>>, entry: &str, key: &str) {
    if let Some(keys) = index.get_mut(entry) {
        keys.remove(key);
        if keys.is_empty() {
            index.remove(entry);
        }
    }
}

/// The prefix every Bramble object is stored under.
pub const REGISTRY_PREFIX: &str = "/registry/";

impl WatchCache {
    /// An empty cache keeping `history_limit` recent changes for resuming watches.
    pub fn new(history_limit: usize) -> Arc<WatchCache> {
        let (changes, _) = broadcast::channel(history_limit.max(1024));
        Arc::new(WatchCache {
            state: RwLock::new(State {
                objects: BTreeMap::new(),
                by_owner: HashMap::new(),
                by_node: HashMap::new(),
                history: VecDeque::new(),
                oldest: 0,
                revision: 0,
            }),
            changes,
            revision: watch::channel(0).0,
            history_limit: history_limit.max(1),
        })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        // A poisoned lock only means a panic elsewhere mid-update; the map itself is still
        // consistent per entry, and refusing every request forever would be worse.
        self.state
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The revision the cache has caught up to.
    pub fn revision(&self) -> Revision {
        self.read().revision
    }

    /// Waits until the cache has seen `revision` (for read-your-writes), up to `timeout`.
    pub async fn wait_for(&self, revision: Revision, timeout: Duration) -> bool {
        let mut rx = self.revision.subscribe();
        let reached = tokio::time::timeout(timeout, rx.wait_for(|r| *r >= revision)).await;
        matches!(reached, Ok(Ok(_)))
    }

    /// How many objects the cache holds.
    pub fn len(&self) -> usize {
        self.read().objects.len()
    }

    /// Whether the cache holds no object.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The object stored at `key`.
    pub fn get(&self, key: &str) -> Option<Arc<CachedObject>> {
        self.read().objects.get(key).cloned()
    }

    /// Every object under `prefix`, in key order, and the revision they were read at.
    pub fn list(&self, prefix: &str) -> (Vec<Arc<CachedObject>>, Revision) {
        let state = self.read();
        let objects = state
            .objects
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(_, v)| v.clone())
            .collect();
        (objects, state.revision)
    }

    /// Objects under `prefix` that name `owner_uid` in their ownerReferences, in key order.
    pub fn owned_by(&self, prefix: &str, owner_uid: &str) -> Vec<Arc<CachedObject>> {
        let state = self.read();
        let Some(keys) = state.by_owner.get(owner_uid) else {
            return Vec::new();
        };
        keys.range(prefix.to_string()..)
            .take_while(|k| k.starts_with(prefix))
            .filter_map(|k| state.objects.get(k).cloned())
            .collect()
    }

    /// Objects under `prefix` bound to `node` (spec.nodeName), and the revision they were read
    /// at.
    pub fn bound_to(&self, prefix: &str, node: &str) -> (Vec<Arc<CachedObject>>, Revision) {
        let state = self.read();
        let objects = state
            .by_node
            .get(node)
            .into_iter()
            .flat_map(|keys| {
                keys.range(prefix.to_string()..)
                    .take_while(|k| k.starts_with(prefix))
            })
            .filter_map(|k| state.objects.get(k).cloned())
            .collect();
        (objects, state.revision)
    }

    /// Keys and objects under `prefix` starting after `after_key` (for paged lists).
    pub fn list_after(
        &self,
        prefix: &str,
        after_key: &str,
        limit: usize,
    ) -> (Vec<(String, Arc<CachedObject>)>, bool, Revision) {
        let state = self.read();
        let mut iter = state
            .objects
            .range::<str, _>((
                std::ops::Bound::Excluded(after_key),
                std::ops::Bound::Unbounded,
            ))
            .take_while(|(k, _)| k.starts_with(prefix));
        let page: Vec<(String, Arc<CachedObject>)> = iter
            .by_ref()
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let more = iter.next().is_some();
        (page, more, state.revision)
    }

    /// Starts a watch of the keys under `prefix`.
    pub fn watch(&self, prefix: &str, start: WatchStart) -> Result<CacheWatch, TooOld> {
        // Subscribing under the read lock means no change can slip between the snapshot and the
        // subscription: the feeder publishes under the write lock.
        let state = self.read();
        let live = self.changes.subscribe();
        let initial = match start {
            WatchStart::Now => state
                .objects
                .range(prefix.to_string()..)
                .take_while(|(k, _)| k.starts_with(prefix))
                .map(|(k, v)| {
                    Arc::new(Change {
                        kind: ChangeKind::Added,
                        key: k.clone(),
                        object: v.clone(),
                        previous: None,
                        revision: v.revision,
                    })
                })
                .collect(),
            WatchStart::After(after) => {
                if after < state.oldest {
                    return Err(TooOld {
                        asked: after,
                        oldest: state.oldest,
                    });
                }
                state
                    .history
                    .iter()
                    .filter(|c| c.revision > after && c.key.starts_with(prefix))
                    .cloned()
                    .collect()
            }
        };
        Ok(CacheWatch {
            initial,
            live,
            revision: state.revision,
        })
    }

    /// Replaces the whole content after a (re)list of the store, publishing the differences so
    /// live watchers stay correct. History before `revision` is forgotten.
    pub fn reset(&self, kvs: Vec<KeyValue>, revision: Revision) {
        let mut fresh = BTreeMap::new();
        for kv in kvs {
            if let Some(obj) = decode(&kv.value) {
                fresh.insert(kv.key, Arc::new(CachedObject::new(obj, kv.mod_revision)));
            }
        }
        let mut state = self.write();
        let mut changes = Vec::new();
        for (key, obj) in &fresh {
            match state.objects.get(key) {
                Some(old) if old.revision == obj.revision => {}
                Some(old) => changes.push(change(
                    ChangeKind::Modified,
                    key,
                    obj.clone(),
                    Some(old.clone()),
                    revision,
                )),
                None => changes.push(change(ChangeKind::Added, key, obj.clone(), None, revision)),
            }
        }
        for (key, old) in &state.objects {
            if !fresh.contains_key(key) {
                let gone = Arc::new(old.restamped(revision));
                changes.push(change(
                    ChangeKind::Deleted,
                    key,
                    gone,
                    Some(old.clone()),
                    revision,
                ));
            }
        }
        state.by_owner.clear();
        state.by_node.clear();
        for (key, obj) in &fresh {
            state.index(key, obj);
        }
        state.objects = fresh;
        state.history.clear();
        state.oldest = revision;
        state.revision = state.revision.max(revision);
        for c in changes {
            let _ = self.changes.send(c);
        }
        let rev = state.revision;
        drop(state);
        self.revision.send_replace(rev);
    }

    /// Applies one event from the store's watch.
    pub fn apply(&self, event: Event) {
        let revision = event.kv.mod_revision;
        let mut state = self.write();
        if revision <= state.revision {
            return; // already seen through a relist
        }
        let key = event.kv.key.clone();
        let previous = state.objects.get(&key).cloned();
        let change = match event.kind {
            EventKind::Put => {
                let Some(obj) = decode(&event.kv.value) else {
                    tracing::error!(key = %key, rv = revision, "store holds an undecodable object; skipped");
                    state.revision = revision;
                    return;
                };
                let obj = Arc::new(CachedObject::new(obj, revision));
                if let Some(old) = &previous {
                    state.unindex(&key, old);
                }
                state.index(&key, &obj);
                state.objects.insert(key.clone(), obj.clone());
                let kind = if previous.is_some() {
                    ChangeKind::Modified
                } else {
                    ChangeKind::Added
                };
                change(kind, &key, obj, previous, revision)
            }
            EventKind::Delete => {
                state.objects.remove(&key);
                if let Some(old) = &previous {
                    state.unindex(&key, old);
                }
                let Some(last) = previous.clone() else {
                    state.revision = revision;
                    return;
                };
                let gone = Arc::new(last.restamped(revision));
                change(ChangeKind::Deleted, &key, gone, previous, revision)
            }
        };
        state.history.push_back(change.clone());
        while state.history.len() > self.history_limit {
            if let Some(dropped) = state.history.pop_front() {
                state.oldest = dropped.revision;
            }
        }
        state.revision = revision;
        let _ = self.changes.send(change);
        drop(state);
        self.revision.send_replace(revision);
    }

    /// Keeps the cache in step with the store until `shutdown`: list, then follow the watch;
    /// when the watch breaks (overflow, compaction), list again.
    pub async fn feed(self: Arc<Self>, store: Arc<dyn Store>, shutdown: CancellationToken) {
        loop {
            let listed = tokio::select! {
                _ = shutdown.cancelled() => return,
                r = store.range(REGISTRY_PREFIX, None) => r,
            };
            let after = match listed {
                Ok(resp) => {
                    let rev = resp.revision;
                    self.reset(resp.kvs, rev);
                    rev
                }
                Err(e) => {
                    tracing::error!(error = %e, "watch cache cannot list the store; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            let mut stream = match store.watch(REGISTRY_PREFIX, after).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "watch cache cannot watch the store; relisting");
                    continue;
                }
            };
            loop {
                let next = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    n = stream.next() => n,
                };
                match next {
                    Some(Ok(event)) => self.apply(event),
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "store watch broke; relisting");
                        break;
                    }
                    None => return,
                }
            }
        }
    }
}

fn change(
    kind: ChangeKind,
    key: &str,
    object: Arc<CachedObject>,
    previous: Option<Arc<CachedObject>>,
    revision: Revision,
) -> Arc<Change> {
    Arc::new(Change {
        kind,
        key: key.to_string(),
        object,
        previous,
        revision,
    })
}

/// Parses a stored object (the store revision is its resourceVersion; it is never stored inside
/// the value, and is stamped by [`CachedObject::new`]).
fn decode(bytes: &[u8]) -> Option<Value> {
    let value: Value = serde_json::from_slice(bytes).ok()?;
    value.is_object().then_some(value)
}

fn with_revision(mut value: Value, revision: Revision) -> Value {
    if let Some(meta) = value.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert(
            "resourceVersion".into(),
            Value::String(revision.to_string()),
        );
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn kv(key: &str, rev: Revision, name: &str) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Bytes::from(format!(r#"{{"metadata":{{"name":"{name}"}}}}"#)),
            create_revision: rev,
            mod_revision: rev,
            version: 1,
        }
    }

    fn put(key: &str, rev: Revision) -> Event {
        Event {
            kind: EventKind::Put,
            kv: kv(key, rev, "x"),
            prev_kv: None,
        }
    }

    #[test]
    fn watch_resumes_from_history_and_expires_past_it() {
        let cache = WatchCache::new(3);
        cache.reset(vec![kv("/registry/a/1", 1, "one")], 1);
        for rev in 2..=6 {
            cache.apply(put(&format!("/registry/a/{rev}"), rev));
        }
        // history keeps revisions 4, 5, 6; a watch may start after 3 or later.
        let w = cache
            .watch("/registry/a/", WatchStart::After(3))
            .map_err(|e| e.to_string());
        let revs: Vec<Revision> = w
            .map(|w| w.initial.iter().map(|c| c.revision).collect())
            .unwrap_or_default();
        assert_eq!(revs, vec![4, 5, 6]);
        assert!(cache.watch("/registry/a/", WatchStart::After(1)).is_err());
        let now = cache
            .watch("/registry/a/", WatchStart::Now)
            .map(|w| w.initial.len())
            .unwrap_or(0);
        assert_eq!(now, 6);
    }

    fn pod(key: &str, rev: Revision, node: &str, owner: &str) -> Event {
        let json = serde_json::json!({
            "metadata": {"name": key, "ownerReferences": [{"kind": "ReplicaSet", "name": "rs", "uid": owner, "controller": true}]},
            "spec": {"nodeName": node},
        });
        Event {
            kind: EventKind::Put,
            kv: KeyValue {
                key: key.into(),
                value: Bytes::from(json.to_string()),
                create_revision: rev,
                mod_revision: rev,
                version: 1,
            },
            prev_kv: None,
        }
    }

    #[test]
    fn owner_and_node_indexes_follow_every_change() {
        let cache = WatchCache::new(10);
        cache.reset(vec![], 0);
        cache.apply(pod("/registry/core/pods/ns/a", 1, "n1", "rs-1"));
        cache.apply(pod("/registry/core/pods/ns/b", 2, "n1", "rs-1"));
        cache.apply(pod("/registry/core/pods/ns/b", 3, "n2", "rs-2"));
        let names = |objects: Vec<Arc<CachedObject>>| {
            objects
                .iter()
                .map(|o| o.field("metadata.name").unwrap_or_default().to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names(cache.owned_by("/registry/core/pods/", "rs-1")),
            ["/registry/core/pods/ns/a"]
        );
        assert_eq!(
            names(cache.owned_by("/registry/core/pods/", "rs-2")),
            ["/registry/core/pods/ns/b"]
        );
        assert_eq!(
            names(cache.bound_to("/registry/core/pods/", "n1").0),
            ["/registry/core/pods/ns/a"]
        );
        assert_eq!(cache.bound_to("/registry/core/pods/", "n2").1, 3);
        cache.apply(Event {
            kind: EventKind::Delete,
            kv: KeyValue {
                value: Bytes::new(),
                ..kv("/registry/core/pods/ns/a", 4, "")
            },
            prev_kv: None,
        });
        assert!(cache.owned_by("/registry/core/pods/", "rs-1").is_empty());
        assert!(cache.bound_to("/registry/core/pods/", "n1").0.is_empty());
        assert_eq!(
            cache.read().by_node.len(),
            1,
            "empty index entries are dropped"
        );
    }

    #[test]
    fn deletes_carry_the_last_state_at_the_delete_revision() {
        let cache = WatchCache::new(10);
        cache.reset(vec![kv("/registry/a/x", 1, "x")], 1);
        let mut w = cache
            .watch("/registry/a/", WatchStart::After(1))
            .map_err(|e| e.to_string())
            .unwrap_or_else(|e| panic!("{e}"));
        cache.apply(Event {
            kind: EventKind::Delete,
            kv: KeyValue {
                value: Bytes::new(),
                mod_revision: 2,
                ..kv("/registry/a/x", 2, "")
            },
            prev_kv: None,
        });
        let c = w.live.try_recv().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.kind, ChangeKind::Deleted);
        let obj = c.object.value();
        assert_eq!(obj["metadata"]["name"], "x");
        assert_eq!(obj["metadata"]["resourceVersion"], "2");
        assert_eq!(c.object.field("metadata.name"), Some("x"));
        assert!(cache.get("/registry/a/x").is_none());
    }

    #[test]
    fn reset_publishes_differences() {
        let cache = WatchCache::new(10);
        cache.reset(
            vec![kv("/registry/a/x", 1, "x"), kv("/registry/a/y", 1, "y")],
            1,
        );
        let mut w = cache
            .watch("/registry/", WatchStart::After(1))
            .map_err(|e| e.to_string())
            .unwrap_or_else(|e| panic!("{e}"));
        cache.reset(
            vec![kv("/registry/a/x", 1, "x"), kv("/registry/a/z", 5, "z")],
            5,
        );
        let mut kinds = vec![];
        while let Ok(c) = w.live.try_recv() {
            kinds.push((c.kind, c.key.clone()));
        }
        assert_eq!(
            kinds,
            vec![
                (ChangeKind::Added, "/registry/a/z".to_string()),
                (ChangeKind::Deleted, "/registry/a/y".to_string())
            ]
        );
        let (page, more, _) = cache.list_after("/registry/a/", "/registry/a/x", 10);
        assert_eq!(page.len(), 1);
        assert!(!more);
    }
}
