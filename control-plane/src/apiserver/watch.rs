//! Watches: a chunked stream of `{"type":…,"object":…}` lines, fed from the watch cache, held
//! open until the client leaves, `timeoutSeconds` passes or the server shuts down.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Response};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use serde_json::json;
use tokio::sync::{broadcast, mpsc};

use super::http::{Body, Output};
use super::objects;
use super::read::Filter;
use super::request::ResourceRequest;
use super::resources::Resource;
use super::status::ApiError;
use super::table::{self, IncludeObject};
use super::{ApiServer, Ctx};
use crate::watch_cache::{CachedObject, Change, ChangeKind, WatchStart};

/// How often a watch that asked for bookmarks is told the current revision.
const BOOKMARK_INTERVAL: Duration = Duration::from_secs(60);

struct Encoder {
    resource: &'static Resource,
    output: Output,
    include: IncludeObject,
}

impl Encoder {
    fn event(&self, kind: &str, object: &CachedObject) -> Bytes {
        if self.output == Output::Table {
            let table = table::to_table(
                self.resource,
                std::slice::from_ref(&object.value()),
                json!({}),
                self.include,
                true,
                std::time::SystemTime::now(),
            );
            let mut line =
                serde_json::to_vec(&json!({ "type": kind, "object": table })).unwrap_or_default();
            line.push(b'\n');
            return Bytes::from(line);
        }
        // The cached JSON goes out as it is: no parse, no re-encode per watcher.
        let mut line = Vec::with_capacity(object.json.len() + 32);
        line.extend_from_slice(b"{\"type\":\"");
        line.extend_from_slice(kind.as_bytes());
        line.extend_from_slice(b"\",\"object\":");
        line.extend_from_slice(&object.json);
        line.extend_from_slice(b"}\n");
        Bytes::from(line)
    }

    fn bookmark(&self, revision: i64) -> Bytes {
        let object = json!({
            "kind": self.resource.kind,
            "apiVersion": self.resource.api_version(),
            "metadata": { "resourceVersion": revision.to_string() },
        });
        let mut line = serde_json::to_vec(&json!({ "type": "BOOKMARK", "object": object }))
            .unwrap_or_default();
        line.push(b'\n');
        Bytes::from(line)
    }

    fn error(&self, err: &ApiError) -> Bytes {
        let mut line = serde_json::to_vec(&json!({ "type": "ERROR", "object": err.to_status() }))
            .unwrap_or_default();
        line.push(b'\n');
        Bytes::from(line)
    }
}

/// What a change means to a watcher with a filter: selectors are applied to both the old and
/// the new state, so an object leaving the selection is seen as DELETED and one entering it as
/// ADDED, as Kubernetes does.
fn translate<'a>(filter: &Filter, change: &'a Change) -> Option<(&'static str, &'a CachedObject)> {
    let now = filter.matches(&change.object);
    let before = change
        .previous
        .as_deref()
        .is_some_and(|p| filter.matches(p));
    match change.kind {
        ChangeKind::Added => now.then_some(("ADDED", &*change.object)),
        ChangeKind::Deleted => (now || before).then_some(("DELETED", &*change.object)),
        ChangeKind::Modified => match (before, now) {
            (true, true) => Some(("MODIFIED", &*change.object)),
            (false, true) => Some(("ADDED", &*change.object)),
            (true, false) => Some(("DELETED", &*change.object)),
            (false, false) => None,
        },
    }
}

impl ApiServer {
    /// GET …?watch=true.
    pub(super) async fn watch(
        &self,
        r: &ResourceRequest,
        ctx: &Ctx,
    ) -> Result<Response<Body>, ApiError> {
        let filter = Filter::from_ctx(r.resource, ctx)?;
        let rv = ctx.query.get("resourceVersion").unwrap_or("");
        let start = match rv {
            "" => {
                self.fresh_cache().await?;
                WatchStart::Now
            }
            "0" => WatchStart::Now,
            other => WatchStart::After(other.parse().map_err(|_| {
                ApiError::bad_request(format!("invalid resourceVersion {other:?}: not an integer"))
            })?),
        };
        let timeout = ctx
            .query
            .number("timeoutSeconds")?
            .filter(|s| *s > 0)
            .map(|s| Duration::from_secs(s as u64));
        let bookmarks = ctx.query.flag("allowWatchBookmarks");
        let prefix = match (filter.single_name(), r.namespace.as_deref()) {
            // A watch of one object only needs that key.
            (Some(name), ns) if ns.is_some() || !r.resource.namespaced => {
                objects::key(r.resource, ns, name)
            }
            _ => objects::prefix(r.resource, r.namespace.as_deref()),
        };
        let encoder = Encoder {
            resource: r.resource,
            output: ctx.output,
            include: IncludeObject::from_query(ctx.query.get("includeObject"))
                .map_err(|e| ApiError::bad_request(e.to_string()))?,
        };
        let (tx, rx) = mpsc::channel::<Bytes>(256);
        match self.cache.watch(&prefix, start) {
            Err(too_old) => {
                let err = ApiError::expired(format!(
                    "too old resource version: {} ({})",
                    too_old.asked, too_old.oldest
                ));
                let _ = tx.try_send(encoder.error(&err));
                drop(tx);
            }
            Ok(watch) => {
                let shutdown = self.shutdown.clone();
                let exact_key = !prefix.ends_with('/');
                let gauge = super::metrics::WatchGauge::open(&self.metrics.open_watches);
                tokio::spawn(async move {
                    let _gauge = gauge;
                    let mut last = watch.revision;
                    for change in &watch.initial {
                        if let Some((kind, obj)) = translate(&filter, change) {
                            if tx.send(encoder.event(kind, obj)).await.is_err() {
                                return;
                            }
                        }
                    }
                    let mut live = watch.live;
                    let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
                    let mut bookmark_tick = tokio::time::interval(BOOKMARK_INTERVAL);
                    bookmark_tick.tick().await;
                    loop {
                        let sleep_until = deadline.unwrap_or_else(|| {
                            tokio::time::Instant::now() + Duration::from_secs(86400 * 365)
                        });
                        let next: Result<Arc<Change>, broadcast::error::RecvError> = tokio::select! {
                            _ = shutdown.cancelled() => return,
                            _ = tx.closed() => return,
                            _ = tokio::time::sleep_until(sleep_until) => return,
                            _ = bookmark_tick.tick(), if bookmarks => {
                                if tx.send(encoder.bookmark(last)).await.is_err() { return; }
                                continue;
                            }
                            c = live.recv() => c,
                        };
                        match next {
                            Ok(change) => {
                                if change.revision <= last {
                                    continue;
                                }
                                last = change.revision;
                                let in_scope = if exact_key {
                                    change.key == prefix
                                } else {
                                    change.key.starts_with(&prefix)
                                };
                                if !in_scope {
                                    continue;
                                }
                                if let Some((kind, obj)) = translate(&filter, &change) {
                                    if tx.send(encoder.event(kind, obj)).await.is_err() {
                                        return;
                                    }
                                }
                            }
                            Err(broadcast::error::RecvError::Lagged(_)) => {
                                // This watcher fell too far behind: tell it to relist rather than
                                // hold everyone's memory for it.
                                let err = ApiError::expired("the watch fell behind the server's event window; relist and watch again");
                                let _ = tx.send(encoder.error(&err)).await;
                                return;
                            }
                            Err(broadcast::error::RecvError::Closed) => return,
                        }
                    }
                });
            }
        }
        let stream = futures::stream::unfold(rx, |mut rx| async move {
            rx.recv()
                .await
                .map(|bytes| (Ok::<_, std::convert::Infallible>(Frame::data(bytes)), rx))
        });
        let mut resp = Response::new(StreamBody::new(stream).boxed());
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        resp.headers_mut().insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-cache, private"),
        );
        Ok(resp)
    }
}
