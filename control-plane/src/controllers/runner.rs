//! Runs one [`Reconciler`] against the API server: maps the watch cache's changes to keys on a
//! deduplicating work queue, reconciles up to `workers` distinct keys at once, retries failures
//! with backoff, honours `RequeueAfter`, and before a key is reconciled again waits until the
//! cache shows that key's previous writes, so a reconcile never acts on a state older than its
//! own last write (no double creates, no "expectations" bookkeeping).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use super::api_backend::ApiBackend;
use super::context::{Backend, Ctx, TypeRef};
use super::reconciler::{Action, ControllerRef, Key, Reconciler, WatchedChange};
use super::work_queue::WorkQueue;
use crate::apiserver::objects;
use crate::apiserver::resources::by_kind;
use crate::apiserver::ApiServer;
use crate::watch_cache::{CachedObject, Change, ChangeKind, WatchStart, REGISTRY_PREFIX};

/// How long a reconcile may wait for the cache to show its writes before going on anyway.
const CACHE_CATCH_UP: Duration = Duration::from_secs(5);

/// What every controller shares.
#[derive(Clone)]
pub struct Shared {
    /// The API server (its Event recorder included).
    pub api: Arc<ApiServer>,
}

impl Shared {
    fn ctx(&self, manager: &'static str) -> (Ctx, Arc<ApiBackend>) {
        let backend = Arc::new(ApiBackend::new(self.api.clone()));
        (
            Ctx::new(backend.clone() as Arc<dyn Backend>, manager),
            backend,
        )
    }
}

/// The kinds a reconciler listens to, with their storage prefixes.
struct Watched {
    kinds: Vec<(TypeRef, String)>,
}

impl Watched {
    fn of<R: Reconciler>(reconciler: &R) -> Watched {
        let mut kinds = Vec::new();
        for kind in std::iter::once(reconciler.kind()).chain(reconciler.watches()) {
            match by_kind(kind.api_version, kind.kind) {
                Some(resource) => kinds.push((kind, objects::prefix(resource, None))),
                None => tracing::error!(
                    controller = reconciler.name(),
                    kind = kind.kind,
                    "watches a kind the API server does not serve"
                ),
            }
        }
        Watched { kinds }
    }

    fn kind_of(&self, key: &str) -> Option<TypeRef> {
        self.kinds
            .iter()
            .find(|(_, prefix)| key.starts_with(prefix.as_str()))
            .map(|(kind, _)| *kind)
    }
}

fn controller_ref(object: &CachedObject) -> Option<ControllerRef> {
    object.controller().map(|o| ControllerRef {
        kind: o.kind.clone(),
        name: o.name.clone(),
    })
}

/// The reconciler's view of one cache change.
fn watched_change(kind: TypeRef, change: &Change) -> Option<WatchedChange> {
    let object = &change.object;
    let previous = change.previous.as_deref();
    Some(WatchedChange {
        kind,
        namespace: object.field("metadata.namespace").map(str::to_string),
        name: object.field("metadata.name")?.to_string(),
        labels: object.labels.clone(),
        previous_labels: previous.map(|p| p.labels.clone()),
        controller: controller_ref(object),
        previous_controller: previous.and_then(controller_ref),
        node_name: object.field("spec.nodeName").map(str::to_string),
        previous_node_name: previous
            .and_then(|p| p.field("spec.nodeName"))
            .map(str::to_string),
        deleted: change.kind == ChangeKind::Deleted,
    })
}

/// Every key of the reconciler's own kind, as the cache holds them now.
fn all_keys(api: &ApiServer, watched: &Watched) -> Vec<Key> {
    let Some((_, prefix)) = watched.kinds.first() else {
        return Vec::new();
    };
    let (objects, _) = api.cache.list(prefix);
    objects
        .iter()
        .filter_map(|o| {
            Some(Key::new(
                o.field("metadata.namespace"),
                o.field("metadata.name")?,
            ))
        })
        .collect()
}

/// Runs `reconciler` with `workers` concurrent reconciles until `stop`.
pub async fn run<R: Reconciler>(
    reconciler: Arc<R>,
    shared: Shared,
    workers: usize,
    stop: CancellationToken,
) {
    let name = reconciler.name();
    let watched = Watched::of(reconciler.as_ref());
    let api = shared.api.clone();
    // Subscribe first, then list: a change in between is both listed and seen live, which the
    // queue folds into one reconcile.
    let mut live = match api
        .cache
        .watch(REGISTRY_PREFIX, WatchStart::After(api.cache.revision()))
    {
        Ok(w) => w.live,
        Err(e) => {
            tracing::error!(controller = name, error = %e, "cannot watch the cache");
            return;
        }
    };
    let mut seen = api.cache.revision();
    let mut queue: WorkQueue<Key> = WorkQueue::default();
    for key in all_keys(&api, &watched) {
        queue.add(key);
    }
    let (mapping_ctx, _) = shared.ctx(name);
    let mut inflight: JoinSet<(Key, Result<Action, String>)> = JoinSet::new();
    // Which key each task works on, so a reconcile that panicked still frees its key.
    let mut tasks: HashMap<tokio::task::Id, Key> = HashMap::new();
    loop {
        queue.promote(Instant::now());
        while inflight.len() < workers.max(1) {
            let Some(key) = queue.pop() else { break };
            let reconciler = reconciler.clone();
            let (ctx, backend) = shared.ctx(name);
            let api = api.clone();
            let span = tracing::debug_span!("reconcile", controller = name, key = %key);
            let task_key = key.clone();
            let handle = inflight.spawn(
                async move {
                    tracing::debug!("reconciling");
                    let result = reconciler.reconcile(&key, &ctx).await;
                    tracing::debug!(?result, "reconciled");
                    let written = backend.written();
                    if written > 0 && !api.cache.wait_for(written, CACHE_CATCH_UP).await {
                        tracing::warn!(rv = written, "cache did not catch up with a write");
                    }
                    (key, result.map_err(|e| e.to_string()))
                }
                .instrument(span),
            );
            tasks.insert(handle.id(), task_key);
        }
        let next_due = queue.next_due();
        tokio::select! {
            _ = stop.cancelled() => break,
            change = live.recv() => match change {
                Ok(change) if change.revision > seen => {
                    seen = change.revision;
                    if let Some(kind) = watched.kind_of(&change.key) {
                        if let Some(view) = watched_change(kind, &change) {
                            for key in reconciler.keys_for(&view, &mapping_ctx) {
                                queue.add(key);
                            }
                        }
                    }
                }
                Ok(_) => {}
                Err(RecvError::Lagged(missed)) => {
                    tracing::warn!(controller = name, missed, "fell behind the change stream; reconciling everything");
                    seen = api.cache.revision();
                    for key in all_keys(&api, &watched) {
                        queue.add(key);
                    }
                }
                Err(RecvError::Closed) => break,
            },
            Some(finished) = inflight.join_next_with_id(), if !inflight.is_empty() => {
                let (key, result) = match finished {
                    Ok((id, (key, result))) => {
                        tasks.remove(&id);
                        (key, result)
                    }
                    Err(e) => {
                        let Some(key) = tasks.remove(&e.id()) else { continue };
                        (key, Err(format!("reconcile panicked: {e}")))
                    }
                };
                queue.done(&key);
                match result {
                    Ok(Action::Done) => queue.forget(&key),
                    Ok(Action::RequeueAfter(after)) => {
                        queue.forget(&key);
                        queue.add_at(key, Instant::now() + after);
                    }
                    Err(error) => {
                        let delay = queue.add_backoff(key.clone(), Instant::now());
                        tracing::info!(controller = name, key = %key, %error, retry_in = ?delay, "reconcile failed");
                    }
                }
            }
            _ = sleep_until(next_due), if next_due.is_some() => {}
        }
    }
    inflight.shutdown().await;
}

async fn sleep_until(at: Option<Instant>) {
    if let Some(at) = at {
        tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await;
    }
}
