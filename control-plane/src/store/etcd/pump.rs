//! The task behind each etcd watch: it moves etcd's events into the bounded buffer the
//! watch's [`WatchStream`](crate::store::WatchStream) reads, so a consumer that falls behind is
//! cut off as with the other backends instead of holding etcd's stream open unread.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::watch;
use tokio::time::Instant;

use super::codec::{from_etcd, Shared};
use crate::store::watch::Feed;
use crate::store::{Revision, StoreError};

/// How long a watch goes on after its store is dropped, to deliver events etcd has not sent yet
/// up to the revision the store had reached (etcd replays history asynchronously, and a prefix
/// without such events gives no sign that it is done).
const SHUTDOWN_DRAIN: Duration = Duration::from_secs(2);

/// Moves one etcd watch's events into the bounded buffer its stream reads.
pub(super) struct Pump {
    pub shared: Arc<Shared>,
    /// Prefix of the watch, for errors.
    pub prefix: String,
    /// Revision the watch is after: no event at or before it belongs to the watch.
    pub after: Revision,
    /// Revision up to which everything has been delivered.
    pub position: Revision,
    pub feed: Feed,
    /// Keeps the request side of the stream open: etcd ends the watch when it closes.
    pub _watcher: etcd_client::Watcher,
    pub stream: etcd_client::WatchStream,
    pub shutdown: watch::Receiver<()>,
}

impl Pump {
    /// Runs until the consumer drops the stream, etcd ends the watch, or the store has shut
    /// down and what it had reached is delivered (or [`SHUTDOWN_DRAIN`] has passed).
    pub async fn run(mut self) {
        // Once the store is gone: the revision it had reached, and when to give up on it.
        let mut drain: Option<(Revision, Instant)> = None;
        loop {
            let deadline = drain.map_or_else(Instant::now, |(_, deadline)| deadline);
            let next = tokio::select! {
                () = self.feed.closed() => return,
                _ = self.shutdown.changed(), if drain.is_none() => {
                    // Only the sender's drop wakes this: the store has shut down.
                    let reached = self.shared.revision();
                    if self.position >= reached {
                        return;
                    }
                    drain = Some((reached, Instant::now() + SHUTDOWN_DRAIN));
                    continue;
                }
                () = tokio::time::sleep_until(deadline), if drain.is_some() => return,
                next = self.stream.next() => next,
            };
            let flow = match next {
                Some(Ok(response)) => self.handle(response),
                Some(Err(source)) => ControlFlow::Break(Some(StoreError::EtcdWatch {
                    prefix: self.prefix.clone(),
                    source: Box::new(source),
                })),
                None => ControlFlow::Break(Some(StoreError::EtcdWatchCanceled {
                    prefix: self.prefix.clone(),
                    reason: "etcd ended the watch stream".into(),
                })),
            };
            if let ControlFlow::Break(error) = flow {
                // After shutdown the stream ends plainly, as the other backends' do.
                if let (Some(error), None) = (error, drain) {
                    self.feed.fail(error);
                }
                return;
            }
            if matches!(drain, Some((reached, _)) if self.position >= reached) {
                return;
            }
        }
    }

    /// Delivers one answer of etcd's; `Break` ends the watch, with an error for the consumer
    /// if there is one.
    fn handle(&mut self, response: etcd_client::WatchResponse) -> ControlFlow<Option<StoreError>> {
        let header = match self.shared.observe(response.header(), "watch") {
            Ok(revision) => revision,
            Err(error) => return ControlFlow::Break(Some(error)),
        };
        if response.compact_revision() > 0 {
            return ControlFlow::Break(Some(StoreError::Compacted {
                requested: self.position,
                compacted: from_etcd(response.compact_revision()),
            }));
        }
        if response.canceled() {
            let reason = match response.cancel_reason() {
                "" => "no reason given".to_owned(),
                reason => reason.to_owned(),
            };
            return ControlFlow::Break(Some(StoreError::EtcdWatchCanceled {
                prefix: self.prefix.clone(),
                reason,
            }));
        }
        if response.events().is_empty() && !response.created() {
            // A progress notification: every event up to its revision has been sent.
            self.position = self.position.max(header);
        }
        for event in response.events() {
            let event = match self.shared.event(event) {
                Ok(event) => event,
                Err(error) => return ControlFlow::Break(Some(error)),
            };
            let revision = event.kv.mod_revision;
            // etcd starts the watch after `after`; this only guards the contract.
            if revision <= self.after {
                continue;
            }
            self.shared.advance(revision);
            if !self.feed.offer(event) {
                // The consumer is gone or cut off; dropping the stream cancels the etcd watch.
                return ControlFlow::Break(None);
            }
            self.position = self.position.max(revision);
        }
        ControlFlow::Continue(())
    }
}
