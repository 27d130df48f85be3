//! An in-memory [`Store`], for unit tests of the layers above the store. Same semantics as the
//! SQLite backend (it shares txn evaluation and the watch hub), no durability.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use futures::future::BoxFuture;
use futures::FutureExt;

use super::txn::{self, TxnState};
use super::watch::{HistoryCursor, HistoryPage, HistorySource, WatchHub, DEFAULT_WATCH_BUFFER};
use super::{
    Event, EventKind, KeyValue, RangeResponse, Revision, Store, StoreError, Txn, TxnResponse,
    WatchStream,
};

/// A [`Store`] kept in memory; everything is lost when it is dropped. History is kept until
/// [`Store::compact`] is called (there is no automatic policy).
#[derive(Debug)]
pub struct MemoryStore {
    state: Arc<Mutex<State>>,
    hub: WatchHub,
    revision: AtomicI64,
    watch_buffer: usize,
}

#[derive(Debug, Default)]
struct State {
    kv: BTreeMap<String, KeyValue>,
    /// Every change after `compacted`, in order. Events keep their `prev_kv` inline, so
    /// compaction can simply drop a prefix.
    history: Vec<(HistoryCursor, Event)>,
    revision: Revision,
    compacted: Revision,
}

impl State {
    fn check_compacted(&self, requested: Revision) -> Result<(), StoreError> {
        if requested < self.compacted {
            return Err(StoreError::Compacted {
                requested,
                compacted: self.compacted,
            });
        }
        Ok(())
    }

    /// Index of the first change positioned after `cursor`.
    fn first_after(&self, cursor: HistoryCursor) -> usize {
        self.history
            .partition_point(|(position, _)| *position <= cursor)
    }
}

impl TxnState for State {
    fn get(&mut self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        Ok(self.kv.get(key).cloned())
    }

    fn put(&mut self, seq: u32, kv: &KeyValue, prev: Option<&KeyValue>) -> Result<(), StoreError> {
        self.kv.insert(kv.key.clone(), kv.clone());
        let event = Event {
            kind: EventKind::Put,
            kv: kv.clone(),
            prev_kv: prev.cloned(),
        };
        self.history.push((
            HistoryCursor {
                revision: kv.mod_revision,
                seq,
            },
            event,
        ));
        Ok(())
    }

    fn delete(&mut self, seq: u32, revision: Revision, prev: &KeyValue) -> Result<(), StoreError> {
        self.kv.remove(&prev.key);
        let kv = txn::tombstone(&prev.key, revision);
        let event = Event {
            kind: EventKind::Delete,
            kv,
            prev_kv: Some(prev.clone()),
        };
        self.history.push((HistoryCursor { revision, seq }, event));
        Ok(())
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore::new()
    }
}

impl MemoryStore {
    /// An empty store at revision 0.
    pub fn new() -> MemoryStore {
        MemoryStore::with_watch_buffer(DEFAULT_WATCH_BUFFER)
    }

    /// An empty store whose watchers are cut off after falling `watch_buffer` events behind.
    pub fn with_watch_buffer(watch_buffer: usize) -> MemoryStore {
        MemoryStore {
            state: Arc::default(),
            hub: WatchHub::new(0),
            revision: AtomicI64::new(0),
            watch_buffer,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    // Every mutation of `State` is completed before anything that could panic, so a poisoned
    // lock still guards consistent data.
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Drop for MemoryStore {
    fn drop(&mut self) {
        self.hub.close();
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn txn(&self, request: Txn) -> Result<TxnResponse, StoreError> {
        txn::validate(&request)?;
        let mut state = self.lock();
        let start = state.revision;
        // `State`'s methods never fail, so `apply` cannot stop half-way through a txn.
        let applied = txn::apply(&mut *state, start, &request)?;
        state.revision = applied.response.revision;
        self.revision.store(state.revision, Ordering::Release);
        // Published under the state lock, so a watch registering concurrently sees all of this
        // txn either in history or live.
        if !applied.events.is_empty() {
            self.hub.publish(applied.response.revision, &applied.events);
        }
        Ok(applied.response)
    }

    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        Ok(self.lock().kv.get(key).cloned())
    }

    async fn range(
        &self,
        prefix: &str,
        revision: Option<Revision>,
    ) -> Result<RangeResponse, StoreError> {
        let state = self.lock();
        let at = revision.unwrap_or(state.revision);
        txn::check_revision(at)?;
        if at > state.revision {
            return Err(StoreError::FutureRevision {
                requested: at,
                current: state.revision,
            });
        }
        state.check_compacted(at)?;
        let under_prefix = |key: &&String| key.starts_with(prefix);
        let mut kvs: BTreeMap<&String, &KeyValue> = state
            .kv
            .range::<String, _>(prefix.to_owned()..)
            .take_while(|(key, _)| under_prefix(key))
            .filter(|(_, kv)| kv.mod_revision <= at)
            .collect();
        // A key changed after `at` had, at `at`, the value its first later change replaced.
        let mut first_change: HashMap<&String, Option<&KeyValue>> = HashMap::new();
        let start = state.first_after(HistoryCursor::after(at));
        for (_, event) in state.history.get(start..).unwrap_or_default() {
            if under_prefix(&&event.kv.key) {
                first_change
                    .entry(&event.kv.key)
                    .or_insert(event.prev_kv.as_ref());
            }
        }
        kvs.extend(
            first_change
                .into_iter()
                .filter_map(|(key, kv)| Some((key, kv?))),
        );
        Ok(RangeResponse {
            kvs: kvs.into_values().cloned().collect(),
            revision: at,
        })
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream, StoreError> {
        txn::check_revision(after)?;
        let state = self.lock();
        state.check_compacted(after)?;
        let (live, published) = self.hub.subscribe(prefix, self.watch_buffer)?;
        let source = Arc::new(MemoryHistory(Arc::clone(&self.state)));
        Ok(WatchStream::new(prefix, after, live, published, source))
    }

    async fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        txn::check_revision(revision)?;
        let mut state = self.lock();
        if revision > state.revision {
            return Err(StoreError::FutureRevision {
                requested: revision,
                current: state.revision,
            });
        }
        if revision > state.compacted {
            let end = state.first_after(HistoryCursor::after(revision));
            state.history.drain(..end);
            state.compacted = revision;
        }
        Ok(())
    }

    fn current_revision(&self) -> Revision {
        self.revision.load(Ordering::Acquire)
    }
}

struct MemoryHistory(Arc<Mutex<State>>);

impl HistorySource for MemoryHistory {
    fn page(
        &self,
        prefix: &str,
        cursor: HistoryCursor,
        upto: Revision,
        limit: usize,
    ) -> BoxFuture<'static, Result<HistoryPage, StoreError>> {
        let state = lock(&self.0);
        let page = state.check_compacted(cursor.revision).map(|()| {
            let start = state.first_after(cursor);
            state
                .history
                .get(start..)
                .unwrap_or_default()
                .iter()
                .take_while(|(position, _)| position.revision <= upto)
                .filter(|(_, event)| event.kv.key.starts_with(prefix))
                .take(limit)
                .cloned()
                .collect()
        });
        futures::future::ready(page).boxed()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::MemoryStore;
    use crate::store::conformance::conformance_tests;
    use crate::store::Store;

    conformance_tests!(
        |watch_buffer: usize| -> anyhow::Result<(Arc<dyn Store>, ())> {
            Ok((Arc::new(MemoryStore::with_watch_buffer(watch_buffer)), ()))
        }
    );
}
