//! Routes pod changes to the feeds of the nodes they concern. One task reads the watch cache's
//! change stream and hands each pod change only to the feed of the node it is bound to (and the
//! node it was bound to before), so the cost of a change does not grow with the number of
//! connected nodes: with thousands of nodes, waking every feed for every change would be most
//! of the control plane's work.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::watch_cache::{Change, WatchCache, WatchStart};

/// Where the cache keeps pods.
pub const PODS_PREFIX: &str = "/registry/core/pods/";
/// Changes a feed may fall behind by before it is cut off (it then resumes from the cache).
const FEED_QUEUE: usize = 1024;

/// One feed's subscription: changes of the pods bound (now or before) to its node. The channel
/// closes if the feed fell behind or the router restarted; the feed then resumes from the
/// cache's history.
pub struct Subscription {
    /// The changes, in revision order.
    pub changes: mpsc::Receiver<Arc<Change>>,
    id: u64,
    node: String,
    router: Arc<PodRouter>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.router.unsubscribe(&self.node, self.id);
    }
}

/// The router.
#[derive(Default)]
pub struct PodRouter {
    feeds: Mutex<Feeds>,
}

/// One subscribed feed: its id and where its changes go.
type Feed = (u64, mpsc::Sender<Arc<Change>>);

#[derive(Default)]
struct Feeds {
    by_node: HashMap<String, Vec<Feed>>,
    next_id: u64,
}

impl PodRouter {
    fn feeds(&self) -> std::sync::MutexGuard<'_, Feeds> {
        self.feeds
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Subscribes to the changes concerning `node`. Subscribe before reading the cache, so no
    /// change falls between that read and the first routed change.
    pub fn subscribe(self: &Arc<Self>, node: &str) -> Subscription {
        let (tx, rx) = mpsc::channel(FEED_QUEUE);
        let mut feeds = self.feeds();
        feeds.next_id += 1;
        let id = feeds.next_id;
        feeds
            .by_node
            .entry(node.to_string())
            .or_default()
            .push((id, tx));
        Subscription {
            changes: rx,
            id,
            node: node.to_string(),
            router: self.clone(),
        }
    }

    fn unsubscribe(&self, node: &str, id: u64) {
        let mut feeds = self.feeds();
        if let Some(list) = feeds.by_node.get_mut(node) {
            list.retain(|(i, _)| *i != id);
            if list.is_empty() {
                feeds.by_node.remove(node);
            }
        }
    }

    /// Hands `change` to the feeds of the nodes it concerns; a feed whose queue is full is cut
    /// off.
    fn route(&self, change: &Arc<Change>) {
        let now = change.object.field("spec.nodeName");
        let before = change
            .previous
            .as_ref()
            .and_then(|p| p.field("spec.nodeName"));
        let targets = if before == now {
            [now, None]
        } else {
            [now, before]
        };
        let mut feeds = self.feeds();
        for node in targets.into_iter().flatten() {
            if let Some(list) = feeds.by_node.get_mut(node) {
                list.retain(|(_, tx)| tx.try_send(change.clone()).is_ok());
            }
        }
    }

    /// Cuts every feed off (they resume from the cache).
    fn reset(&self) {
        self.feeds().by_node.clear();
    }

    /// Routes until `shutdown`.
    pub async fn run(self: Arc<Self>, cache: Arc<WatchCache>, shutdown: CancellationToken) {
        loop {
            let mut live = match cache.watch(PODS_PREFIX, WatchStart::After(cache.revision())) {
                Ok(w) => w.live,
                Err(e) => {
                    tracing::error!(error = %e, "pod router cannot watch the cache");
                    return;
                }
            };
            loop {
                let change = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    change = live.recv() => change,
                };
                match change {
                    Ok(change) if change.key.starts_with(PODS_PREFIX) => self.route(&change),
                    Ok(_) => {}
                    Err(RecvError::Lagged(missed)) => {
                        tracing::warn!(
                            missed,
                            "pod router fell behind; node feeds resume from the cache"
                        );
                        self.reset();
                        break;
                    }
                    Err(RecvError::Closed) => return,
                }
            }
        }
    }
}
