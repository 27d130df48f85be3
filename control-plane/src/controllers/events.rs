//! Events as Kubernetes records them (core/v1 Event, what `kubectl describe` and
//! `kubectl get events` show). Recording never blocks a controller: records go through a
//! bounded channel to one writer task, which folds repeats into the existing Event (count and
//! lastTimestamp, as client-go's correlator does) and writes a batch of distinct Events
//! concurrently, so the store commits them together. Events expire after a TTL (one hour, as
//! kube-apiserver's --event-ttl).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::context::EventRecord;
use crate::apiserver::delete::DeleteOptions;
use crate::apiserver::objects::{self, rfc3339};
use crate::apiserver::resources::{lookup, Resource};
use crate::apiserver::ApiServer;

/// Records waiting to be written; beyond this, records are dropped (and counted).
const QUEUE: usize = 8192;
/// Aggregation entries remembered; past this the map starts afresh (repeats then make a new
/// Event, which is what client-go's LRU does too).
const REMEMBERED: usize = 4096;
/// How many records one batch takes.
const BATCH: usize = 256;
/// How long an Event lives after its last occurrence.
pub const EVENT_TTL: Duration = Duration::from_secs(3600);

/// The handle controllers record through. Cheap to clone.
#[derive(Clone)]
pub struct EventRecorder {
    tx: mpsc::Sender<EventRecord>,
    dropped: Arc<AtomicU64>,
}

impl EventRecorder {
    /// A recorder and the receiving end its writer task ([`run`]) consumes.
    pub fn new() -> (EventRecorder, mpsc::Receiver<EventRecord>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        (
            EventRecorder {
                tx,
                dropped: Arc::default(),
            },
            rx,
        )
    }

    /// Queues `event`; drops it when the writer is far behind (Events are best effort).
    pub fn record(&self, event: EventRecord) {
        if self.tx.try_send(event).is_err() {
            let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                tracing::warn!(dropped = n, "event recorder is behind; events dropped");
            }
        }
    }
}

/// What identifies "the same event again".
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Correlation {
    uid: String,
    field_path: Option<String>,
    event_type: &'static str,
    reason: String,
    message: String,
    source: &'static str,
}

impl Correlation {
    fn of(e: &EventRecord) -> Correlation {
        Correlation {
            uid: e.involved.uid.clone(),
            field_path: e.involved.field_path.clone(),
            event_type: e.event_type.as_str(),
            reason: e.reason.clone(),
            message: e.message.clone(),
            source: e.source,
        }
    }
}

/// Where an aggregated Event is stored.
#[derive(Debug, Clone)]
struct Stored {
    namespace: String,
    name: String,
}

fn events_resource() -> Option<&'static Resource> {
    lookup("", "v1", "events")
}

/// Writes recorded Events until `shutdown`, and expires old ones.
pub async fn run(
    api: Arc<ApiServer>,
    mut rx: mpsc::Receiver<EventRecord>,
    shutdown: CancellationToken,
) {
    let Some(resource) = events_resource() else {
        return;
    };
    let mut stored: HashMap<Correlation, Stored> = HashMap::new();
    let mut expiry = tokio::time::interval(Duration::from_secs(600));
    expiry.tick().await;
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = expiry.tick() => expire(&api, resource).await,
            n = rx.recv_many(&mut batch, BATCH) => {
                if n == 0 {
                    return;
                }
                // Fold repeats within the batch, keeping first-seen order.
                let mut folded: Vec<(Correlation, EventRecord, i64)> = Vec::new();
                for event in batch.drain(..) {
                    let key = Correlation::of(&event);
                    match folded.iter_mut().find(|(k, _, _)| *k == key) {
                        Some((_, _, count)) => *count += 1,
                        None => folded.push((key, event, 1)),
                    }
                }
                if stored.len() > REMEMBERED {
                    stored.clear();
                }
                let writes = folded.into_iter().map(|(key, event, count)| {
                    let known = stored.get(&key).cloned();
                    let api = api.clone();
                    async move {
                        let at = write(&api, resource, &event, count, known).await;
                        (key, at)
                    }
                });
                for (key, at) in futures::future::join_all(writes).await {
                    if let Some(at) = at {
                        stored.insert(key, at);
                    }
                }
            }
        }
    }
}

/// Writes one (possibly repeated) event; returns where it is stored.
async fn write(
    api: &ApiServer,
    resource: &'static Resource,
    event: &EventRecord,
    count: i64,
    known: Option<Stored>,
) -> Option<Stored> {
    let now = rfc3339(time::OffsetDateTime::now_utc());
    if let Some(at) = known {
        let bumped = api
            .internal_update(
                resource,
                Some(&at.namespace),
                &at.name,
                event.source,
                |current| {
                    let mut next = current.clone();
                    let seen = next["count"].as_i64().unwrap_or(1);
                    next["count"] = json!(seen + count);
                    next["lastTimestamp"] = json!(now);
                    Ok(next)
                },
            )
            .await;
        match bumped {
            Ok(_) => return Some(at),
            // Expired or deleted meanwhile: record it afresh below.
            Err(e) if e.code == 404 => {}
            Err(e) => {
                tracing::debug!(error = %e, "cannot update event");
                return None;
            }
        }
    }
    let namespace = event
        .involved
        .namespace
        .clone()
        .unwrap_or_else(|| "default".to_string());
    let nanos = time::OffsetDateTime::now_utc().unix_timestamp_nanos();
    let name = format!("{}.{:x}", event.involved.name, nanos);
    let mut involved = json!({
        "apiVersion": event.involved.api_version,
        "kind": event.involved.kind,
        "name": event.involved.name,
        "uid": event.involved.uid,
        "resourceVersion": event.involved.resource_version,
    });
    if let Some(ns) = &event.involved.namespace {
        involved["namespace"] = json!(ns);
    }
    if let Some(path) = &event.involved.field_path {
        involved["fieldPath"] = json!(path);
    }
    let mut source = json!({ "component": event.source });
    if let Some(host) = &event.host {
        source["host"] = json!(host);
    }
    let object = json!({
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": { "name": name, "namespace": namespace },
        "involvedObject": involved,
        "reason": event.reason,
        "message": event.message,
        "source": source,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": count,
        "type": event.event_type.as_str(),
        "reportingComponent": event.source,
        "reportingInstance": event.host.as_deref().unwrap_or_default(),
    });
    match api
        .internal_create(resource, Some(&namespace), object, event.source)
        .await
    {
        Ok(_) => Some(Stored { namespace, name }),
        Err(e) => {
            // A namespace being deleted refuses new Events; nothing to keep.
            tracing::debug!(error = %e, reason = %event.reason, "cannot record event");
            None
        }
    }
}

/// Deletes Events whose last occurrence is older than [`EVENT_TTL`].
async fn expire(api: &ApiServer, resource: &'static Resource) {
    let cutoff = time::OffsetDateTime::now_utc() - EVENT_TTL;
    let (events, _) = api.cache.list(&objects::prefix(resource, None));
    for cached in events {
        let event = cached.value();
        let last = event["lastTimestamp"]
            .as_str()
            .or_else(|| event["eventTime"].as_str())
            .or_else(|| objects::meta_str(&event, "creationTimestamp"));
        let old = last
            .and_then(|t| {
                time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
            })
            .is_some_and(|t| t < cutoff);
        if !old {
            continue;
        }
        let (Some(ns), Some(name)) = (
            objects::meta_str(&event, "namespace"),
            objects::meta_str(&event, "name"),
        ) else {
            continue;
        };
        let opts = DeleteOptions {
            uid: objects::meta_str(&event, "uid").map(str::to_string),
            ..Default::default()
        };
        if let Err(e) = api
            .delete_object(resource, Some(ns), name, &opts, false)
            .await
        {
            if e.code != 404 {
                tracing::debug!(error = %e, "cannot expire event");
            }
        }
    }
}
