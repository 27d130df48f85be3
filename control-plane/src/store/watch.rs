//! Watch plumbing shared by the backends: a hub that fans committed events out to bounded
//! per-watcher buffers, and [`WatchStream`], which replays history page by page and then
//! switches to the live buffer. A backend whose events come from elsewhere (etcd) fills the live
//! buffer through a [`Feed`] instead of a hub.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use futures::Stream;
use tokio::sync::mpsc;

use super::{Event, Revision, StoreError};

/// Default size of a watcher's live buffer, in events.
pub const DEFAULT_WATCH_BUFFER: usize = 4096;

/// How many history events a watch reads per round trip to the backend.
const HISTORY_PAGE: usize = 512;

/// Position of one change in the history log: its revision and its place within that revision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct HistoryCursor {
    /// Revision of the change.
    pub revision: Revision,
    /// Order of the change within its revision.
    pub seq: u32,
}

impl HistoryCursor {
    /// The cursor just past every change of `revision`.
    pub fn after(revision: Revision) -> HistoryCursor {
        HistoryCursor {
            revision,
            seq: u32::MAX,
        }
    }
}

/// A page of history: events with their positions, oldest first.
pub(super) type HistoryPage = Vec<(HistoryCursor, Event)>;

/// A backend's history log, as a watch reads it.
pub(super) trait HistorySource: Send + Sync + 'static {
    /// Up to `limit` changes of keys under `prefix` positioned after `cursor` and at or below
    /// revision `upto`, oldest first. Fails with [`StoreError::Compacted`] if history after
    /// `cursor` is no longer complete.
    fn page(
        &self,
        prefix: &str,
        cursor: HistoryCursor,
        upto: Revision,
        limit: usize,
    ) -> BoxFuture<'static, Result<HistoryPage, StoreError>>;
}

/// Fans committed events out to the registered watchers.
#[derive(Debug)]
pub(super) struct WatchHub {
    inner: Mutex<HubInner>,
}

#[derive(Debug)]
struct HubInner {
    /// Last revision whose events were handed to the watchers.
    published: Revision,
    closed: bool,
    watchers: Vec<Slot>,
}

#[derive(Debug)]
struct Slot {
    prefix: String,
    tx: mpsc::Sender<LiveItem>,
    overflowed: Arc<AtomicBool>,
}

/// What a live buffer carries: events, then at most one error that ends the watch.
type LiveItem = Result<Event, StoreError>;

/// The receiving end of one watcher's live buffer.
#[derive(Debug)]
pub(super) struct Live {
    rx: mpsc::Receiver<LiveItem>,
    overflowed: Arc<AtomicBool>,
    capacity: usize,
}

/// The sending end of a watcher's live buffer for a backend that receives its events from
/// elsewhere (etcd's watch stream) rather than publishing them through a [`WatchHub`]. Dropping
/// it ends the watch plainly, after the events already buffered.
#[cfg(feature = "etcd")]
#[derive(Debug)]
pub(super) struct Feed {
    tx: mpsc::Sender<LiveItem>,
    overflowed: Arc<AtomicBool>,
}

#[cfg(feature = "etcd")]
impl Feed {
    /// A feed and the stream it fills: the stream yields events with revision > `after` for
    /// keys under `prefix` as they are offered, and is cut off with
    /// [`StoreError::WatchOverflow`] once `capacity` events wait unread.
    pub fn channel(prefix: &str, after: Revision, capacity: usize) -> (Feed, WatchStream) {
        let capacity = capacity.max(1);
        // One slot more than the events may fill, so the error that ends a watch always fits.
        let (tx, rx) = mpsc::channel(capacity + 1);
        let overflowed = Arc::new(AtomicBool::new(false));
        let live = Live {
            rx,
            overflowed: overflowed.clone(),
            capacity,
        };
        let stream = WatchStream {
            prefix: prefix.to_owned(),
            after,
            history: None,
            buffered: VecDeque::new(),
            live: Some(live),
        };
        (Feed { tx, overflowed }, stream)
    }

    /// Queues `event` without waiting. Returns `false` if the consumer is gone, or has fallen
    /// `capacity` events behind: then its stream ends with [`StoreError::WatchOverflow`] after
    /// what it buffered, and the caller must stop feeding it.
    pub fn offer(&self, event: Event) -> bool {
        if self.tx.capacity() <= 1 {
            self.overflowed.store(true, Ordering::Release);
            return false;
        }
        self.tx.try_send(Ok(event)).is_ok()
    }

    /// Ends the stream with `error`, after the events already buffered.
    pub fn fail(self, error: StoreError) {
        // Cannot be full (a slot is kept for this); if the consumer is gone nobody needs it.
        let _ = self.tx.try_send(Err(error));
    }

    /// Resolves once the consumer has dropped the stream.
    pub async fn closed(&self) {
        self.tx.closed().await;
    }
}

impl WatchHub {
    /// A hub whose store is at `revision`.
    pub fn new(revision: Revision) -> WatchHub {
        WatchHub {
            inner: Mutex::new(HubInner {
                published: revision,
                closed: false,
                watchers: Vec::new(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HubInner> {
        // A panic while holding the lock cannot leave the watcher list half-updated in a way
        // that matters (at worst a watcher misses its overflow flag and ends plainly), so keep
        // serving rather than poisoning every later write.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a watcher for `prefix`. Returns its live buffer, which receives every event
    /// published from now on, and the last revision published before it.
    pub fn subscribe(&self, prefix: &str, capacity: usize) -> Result<(Live, Revision), StoreError> {
        let capacity = capacity.max(1);
        let (tx, rx) = mpsc::channel(capacity);
        let overflowed = Arc::new(AtomicBool::new(false));
        let mut inner = self.lock();
        if inner.closed {
            return Err(StoreError::Closed);
        }
        inner.watchers.push(Slot {
            prefix: prefix.to_owned(),
            tx,
            overflowed: overflowed.clone(),
        });
        Ok((
            Live {
                rx,
                overflowed,
                capacity,
            },
            inner.published,
        ))
    }

    /// Hands the events of `revision` (already durable) to the watchers, without waiting: a
    /// watcher whose buffer is full is cut off.
    pub fn publish(&self, revision: Revision, events: &[Event]) {
        let mut inner = self.lock();
        inner.published = inner.published.max(revision);
        inner.watchers.retain(|slot| {
            for event in events.iter().filter(|e| e.kv.key.starts_with(&slot.prefix)) {
                match slot.tx.try_send(Ok(event.clone())) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        slot.overflowed.store(true, Ordering::Release);
                        return false;
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => return false,
                }
            }
            !slot.tx.is_closed()
        });
    }

    /// Ends every watch (after the events already buffered) and refuses new ones.
    pub fn close(&self) {
        let mut inner = self.lock();
        inner.closed = true;
        inner.watchers.clear();
    }

    /// Number of registered watchers.
    #[cfg(test)]
    pub fn watchers(&self) -> usize {
        self.lock().watchers.len()
    }
}

struct History {
    source: Arc<dyn HistorySource>,
    cursor: HistoryCursor,
    upto: Revision,
    pending: Option<BoxFuture<'static, Result<HistoryPage, StoreError>>>,
}

/// The events of one watch, in revision order: history first, then live changes (a
/// [`futures::Stream`]; read it with `StreamExt::next`). Yields
/// `Err` at most once, as its last item ([`StoreError::Compacted`] if history was compacted
/// while being replayed, [`StoreError::WatchOverflow`] if the consumer fell behind, an etcd
/// error if etcd ended the watch); ends with `None` when the store shuts down.
pub struct WatchStream {
    prefix: String,
    after: Revision,
    history: Option<History>,
    buffered: VecDeque<Event>,
    live: Option<Live>,
}

impl std::fmt::Debug for WatchStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchStream")
            .field("prefix", &self.prefix)
            .field("after", &self.after)
            .field("replaying_history", &self.history.is_some())
            .field("buffered", &self.buffered.len())
            .finish()
    }
}

impl WatchStream {
    /// A watch of `prefix` after `after`, given the live buffer from [`WatchHub::subscribe`] and
    /// the revision it returned; `source` replays what happened in between.
    pub(super) fn new(
        prefix: &str,
        after: Revision,
        live: Live,
        published: Revision,
        source: Arc<dyn HistorySource>,
    ) -> WatchStream {
        let history = (published > after).then(|| History {
            source,
            cursor: HistoryCursor::after(after),
            upto: published,
            pending: None,
        });
        WatchStream {
            prefix: prefix.to_owned(),
            after,
            history,
            buffered: VecDeque::new(),
            live: Some(live),
        }
    }

    fn finish_with(&mut self, error: StoreError) -> Poll<Option<Result<Event, StoreError>>> {
        self.history = None;
        self.buffered.clear();
        self.live = None;
        Poll::Ready(Some(Err(error)))
    }
}

impl Stream for WatchStream {
    type Item = Result<Event, StoreError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if let Some(event) = this.buffered.pop_front() {
                return Poll::Ready(Some(Ok(event)));
            }
            if let Some(history) = &mut this.history {
                let prefix = &this.prefix;
                let pending = history.pending.get_or_insert_with(|| {
                    history
                        .source
                        .page(prefix, history.cursor, history.upto, HISTORY_PAGE)
                });
                match pending.as_mut().poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Err(error)) => return this.finish_with(error),
                    Poll::Ready(Ok(page)) => {
                        history.pending = None;
                        let complete = page.len() < HISTORY_PAGE;
                        if let Some((cursor, _)) = page.last() {
                            history.cursor = *cursor;
                        }
                        this.buffered
                            .extend(page.into_iter().map(|(_, event)| event));
                        if complete {
                            this.history = None;
                        }
                        continue;
                    }
                }
            }
            let Some(live) = &mut this.live else {
                return Poll::Ready(None);
            };
            match live.rx.poll_recv(cx) {
                Poll::Pending => return Poll::Pending,
                // Only possible for a watch that starts after the published revision.
                Poll::Ready(Some(Ok(event))) if event.kv.mod_revision <= this.after => continue,
                Poll::Ready(Some(Ok(event))) => return Poll::Ready(Some(Ok(event))),
                Poll::Ready(Some(Err(error))) => return this.finish_with(error),
                Poll::Ready(None) if live.overflowed.load(Ordering::Acquire) => {
                    let error = StoreError::WatchOverflow {
                        prefix: this.prefix.clone(),
                        capacity: live.capacity,
                    };
                    return this.finish_with(error);
                }
                Poll::Ready(None) => {
                    this.live = None;
                    return Poll::Ready(None);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use futures::{FutureExt, StreamExt};

    use super::*;
    use crate::store::{EventKind, KeyValue};

    fn event(key: &str, revision: Revision) -> Event {
        Event {
            kind: EventKind::Put,
            kv: KeyValue {
                key: key.into(),
                value: Bytes::new(),
                create_revision: revision,
                mod_revision: revision,
                version: 1,
            },
            prev_kv: None,
        }
    }

    /// History of one event per revision 1..=len, key "k{rev}".
    struct Log(Vec<Event>);

    impl HistorySource for Log {
        fn page(
            &self,
            prefix: &str,
            cursor: HistoryCursor,
            upto: Revision,
            limit: usize,
        ) -> BoxFuture<'static, Result<HistoryPage, StoreError>> {
            let page = self
                .0
                .iter()
                .map(|e| {
                    (
                        HistoryCursor {
                            revision: e.kv.mod_revision,
                            seq: 0,
                        },
                        e.clone(),
                    )
                })
                .filter(|(c, e)| *c > cursor && c.revision <= upto && e.kv.key.starts_with(prefix))
                .take(limit)
                .collect();
            futures::future::ready(Ok(page)).boxed()
        }
    }

    #[tokio::test]
    async fn history_then_live_without_gap_or_duplicate() {
        let total = HISTORY_PAGE as Revision * 2 + 10;
        let log = Arc::new(Log((1..=total)
            .map(|r| event(&format!("k{r}"), r))
            .collect()));
        let hub = WatchHub::new(total);
        let Ok((live, published)) = hub.subscribe("k", 8) else {
            panic!("hub is open")
        };
        let mut stream = WatchStream::new("k", 3, live, published, log);
        hub.publish(
            total + 1,
            &[event("k-live", total + 1), event("other", total + 1)],
        );
        hub.close();
        let mut seen = Vec::new();
        while let Some(item) = stream.next().await {
            match item {
                Ok(e) => seen.push(e.kv.mod_revision),
                Err(e) => panic!("unexpected error {e}"),
            }
        }
        assert_eq!(seen, (4..=total + 1).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn full_buffer_cuts_the_watcher_off_after_what_it_buffered() {
        let hub = WatchHub::new(0);
        let Ok((live, published)) = hub.subscribe("", 2) else {
            panic!("hub is open")
        };
        let mut stream = WatchStream::new("", 0, live, published, Arc::new(Log(Vec::new())));
        for revision in 1..=5 {
            hub.publish(revision, &[event("a", revision)]);
        }
        assert_eq!(
            hub.watchers(),
            0,
            "the slow watcher is dropped, not waited for"
        );
        assert_eq!(
            stream
                .next()
                .await
                .and_then(Result::ok)
                .map(|e| e.kv.mod_revision),
            Some(1)
        );
        assert_eq!(
            stream
                .next()
                .await
                .and_then(Result::ok)
                .map(|e| e.kv.mod_revision),
            Some(2)
        );
        assert!(matches!(
            stream.next().await,
            Some(Err(StoreError::WatchOverflow { capacity: 2, .. }))
        ));
        assert!(stream.next().await.is_none());
    }

    #[tokio::test]
    async fn dropped_stream_is_unregistered_and_closed_hub_refuses_watchers() {
        let hub = WatchHub::new(0);
        let Ok((live, _)) = hub.subscribe("", 2) else {
            panic!("hub is open")
        };
        drop(live);
        hub.publish(1, &[event("a", 1)]);
        assert_eq!(hub.watchers(), 0);
        hub.close();
        assert!(matches!(hub.subscribe("", 2), Err(StoreError::Closed)));
    }

    #[cfg(feature = "etcd")]
    async fn revisions(stream: &mut WatchStream) -> Vec<Result<Revision, String>> {
        stream
            .map(|item| item.map(|e| e.kv.mod_revision).map_err(|e| e.to_string()))
            .collect()
            .await
    }

    #[cfg(feature = "etcd")]
    #[tokio::test]
    async fn feed_cuts_a_slow_consumer_off_after_what_it_buffered() {
        let (feed, mut stream) = Feed::channel("", 0, 2);
        assert!(feed.offer(event("a", 1)));
        assert!(feed.offer(event("a", 2)));
        assert!(!feed.offer(event("a", 3)), "a third unread event overflows");
        drop(feed);
        let seen = revisions(&mut stream).await;
        assert_eq!(seen.len(), 3, "{seen:?}");
        assert_eq!(seen[..2], [Ok(1), Ok(2)]);
        assert!(matches!(&seen[2], Err(e) if e.contains("fell more than 2 events behind")));
    }

    #[cfg(feature = "etcd")]
    #[tokio::test]
    async fn feed_error_ends_the_stream_even_with_a_full_buffer() {
        let (feed, mut stream) = Feed::channel("", 0, 2);
        assert!(feed.offer(event("a", 1)));
        assert!(feed.offer(event("a", 2)));
        feed.fail(StoreError::Closed);
        let seen = revisions(&mut stream).await;
        assert_eq!(seen, [Ok(1), Ok(2), Err(StoreError::Closed.to_string())]);
    }

    #[cfg(feature = "etcd")]
    #[tokio::test]
    async fn feed_sees_the_consumer_go() {
        let (feed, stream) = Feed::channel("", 0, 2);
        drop(stream);
        feed.closed().await;
        assert!(!feed.offer(event("a", 1)));
    }

    #[tokio::test]
    async fn live_events_at_or_before_the_start_are_skipped() {
        let hub = WatchHub::new(0);
        let Ok((live, published)) = hub.subscribe("", 8) else {
            panic!("hub is open")
        };
        let mut stream = WatchStream::new("", 2, live, published, Arc::new(Log(Vec::new())));
        for revision in 1..=3 {
            hub.publish(revision, &[event("a", revision)]);
        }
        hub.close();
        let seen: Vec<_> = stream
            .by_ref()
            .filter_map(|e| async { e.ok() })
            .collect()
            .await;
        assert_eq!(
            seen.iter().map(|e| e.kv.mod_revision).collect::<Vec<_>>(),
            vec![3]
        );
    }
}
