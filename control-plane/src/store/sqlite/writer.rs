//! The SQLite backend's single writer: a dedicated OS thread that owns the write connection.
//!
//! Group commit: the thread blocks for one request, then drains whatever else is queued (up to
//! [`MAX_BATCH`] txns) and applies them in order inside one SQLite transaction, each txn's
//! compares seeing the writes of the txns before it. One commit (one fsync) then makes the whole
//! batch durable; only after it are the events published and the callers answered. If the batch
//! fails, its txns are retried one transaction each, so one bad txn fails alone.
//!
//! Compaction runs here too, in steps of at most [`COMPACT_STEP`] revisions, each its own short
//! transaction between batches: writers wait at most one step, readers not at all (WAL).

use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::Arc;

use rusqlite::{Connection, TransactionBehavior};
use tokio::sync::oneshot;

use super::schema;
use super::Shared;
use crate::store::txn::{self, Applied, TxnState};
use crate::store::{KeyValue, Revision, StoreError, Txn, TxnResponse};

/// Most txns committed together.
const MAX_BATCH: usize = 256;

/// Most revisions one compaction transaction covers.
const COMPACT_STEP: Revision = 1000;

/// Work for the writer thread.
pub(super) enum Request {
    /// Apply a validated txn.
    Txn {
        txn: Txn,
        reply: oneshot::Sender<Result<TxnResponse, StoreError>>,
    },
    /// Compact history up to `revision`.
    Compact {
        revision: Revision,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
}

type TxnReply = oneshot::Sender<Result<TxnResponse, StoreError>>;

/// State owned by the writer thread.
pub(super) struct Writer {
    conn: Connection,
    shared: Arc<Shared>,
    revision: Revision,
    compacted: Revision,
    /// Keep this many revisions of history; `None` compacts only on request.
    history_limit: Option<Revision>,
    /// Highest revision a caller asked to compact to.
    requested: Revision,
    waiters: Vec<(Revision, oneshot::Sender<Result<(), StoreError>>)>,
    /// After a failed automatic step, wait until this revision before trying again.
    retry_auto_at: Revision,
}

impl Writer {
    /// A writer over `conn`, whose store is at `revision` and compacted to `compacted`.
    pub fn new(
        conn: Connection,
        shared: Arc<Shared>,
        revision: Revision,
        compacted: Revision,
        history_limit: Option<Revision>,
    ) -> Writer {
        Writer {
            conn,
            shared,
            revision,
            compacted,
            history_limit,
            requested: compacted,
            waiters: Vec::new(),
            retry_auto_at: 0,
        }
    }

    /// Serves requests until every sender is gone, then ends all watches.
    pub fn run(mut self, requests: Receiver<Request>) {
        loop {
            // With compaction pending, poll instead of blocking so steps go on while idle.
            let first = if self.compaction_target().is_some() {
                match requests.try_recv() {
                    Ok(request) => Some(request),
                    Err(TryRecvError::Empty) => None,
                    Err(TryRecvError::Disconnected) => break,
                }
            } else {
                match requests.recv() {
                    Ok(request) => Some(request),
                    Err(_) => break,
                }
            };
            let mut batch = Vec::new();
            if let Some(request) = first {
                self.accept(request, &mut batch);
                while batch.len() < MAX_BATCH {
                    match requests.try_recv() {
                        Ok(request) => self.accept(request, &mut batch),
                        Err(_) => break,
                    }
                }
            }
            if !batch.is_empty() {
                self.commit(batch);
            }
            if let Some(target) = self.compaction_target() {
                self.compact_step(target);
            }
        }
        self.shared.hub.close();
    }

    fn accept(&mut self, request: Request, batch: &mut Vec<(Txn, TxnReply)>) {
        match request {
            Request::Txn { txn, reply } => batch.push((txn, reply)),
            Request::Compact { revision, reply } => {
                if revision > self.revision {
                    let error = StoreError::FutureRevision {
                        requested: revision,
                        current: self.revision,
                    };
                    let _ = reply.send(Err(error));
                } else if revision <= self.compacted {
                    let _ = reply.send(Ok(()));
                } else {
                    self.requested = self.requested.max(revision);
                    self.waiters.push((revision, reply));
                }
            }
        }
    }

    /// Commits `batch` as one transaction, or each txn alone if that fails, and answers them.
    fn commit(&mut self, batch: Vec<(Txn, TxnReply)>) {
        let txns: Vec<&Txn> = batch.iter().map(|(txn, _)| txn).collect();
        match self.apply(&txns) {
            Ok(applied) => {
                for applied in &applied {
                    if !applied.events.is_empty() {
                        self.shared
                            .hub
                            .publish(applied.response.revision, &applied.events);
                    }
                }
                for ((_, reply), applied) in batch.into_iter().zip(applied) {
                    let _ = reply.send(Ok(applied.response));
                }
            }
            Err(error) if batch.len() == 1 => {
                tracing::warn!(%error, "store txn failed");
                if let Some((_, reply)) = batch.into_iter().next() {
                    let _ = reply.send(Err(error));
                }
            }
            Err(error) => {
                let txns = batch.len();
                tracing::warn!(%error, txns, "store batch failed, retrying its txns one at a time");
                for entry in batch {
                    self.commit(vec![entry]);
                }
            }
        }
    }

    /// Applies `txns` in order in one SQLite transaction and commits it.
    fn apply(&mut self, txns: &[&Txn]) -> Result<Vec<Applied>, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|source| StoreError::Sqlite {
                operation: "begin write",
                source,
            })?;
        // The persisted revision, not the cached one, so a second process writing the same file
        // cannot make revisions repeat.
        let start = schema::meta(&tx, "revision")?;
        let mut revision = start;
        let mut applied = Vec::with_capacity(txns.len());
        for txn in txns {
            let result = txn::apply(&mut SqlState { conn: &tx }, revision, txn)?;
            revision = result.response.revision;
            applied.push(result);
        }
        if revision != start {
            schema::set_meta(&tx, "revision", revision)?;
        }
        tx.commit().map_err(|source| StoreError::Sqlite {
            operation: "commit write",
            source,
        })?;
        self.revision = revision;
        self.shared.revision.store(revision, Ordering::Release);
        Ok(applied)
    }

    /// Where compaction should head now, if anywhere.
    fn compaction_target(&self) -> Option<Revision> {
        let auto = self.history_limit.and_then(|limit| {
            let target = self.revision.saturating_sub(limit);
            // Compact in chunks of about an eighth of the kept history, so a small transaction
            // (and its fsync) is not spent on every batch.
            let slack = (limit / 8).clamp(1, COMPACT_STEP);
            (target.saturating_sub(self.compacted) >= slack && self.revision >= self.retry_auto_at)
                .then_some(target)
        });
        let wanted = auto.unwrap_or(self.compacted).max(self.requested);
        (wanted > self.compacted).then_some(wanted)
    }

    /// Compacts at most [`COMPACT_STEP`] revisions towards `target`, then answers the callers
    /// whose compaction is done.
    fn compact_step(&mut self, target: Revision) {
        let to = target.min(self.compacted + COMPACT_STEP);
        match compact(&mut self.conn, self.compacted, to) {
            Ok(()) => {
                self.compacted = to;
                self.shared.compacted.store(to, Ordering::Release);
                let (done, waiting) = std::mem::take(&mut self.waiters)
                    .into_iter()
                    .partition(|(r, _)| *r <= to);
                self.waiters = waiting;
                for (_, reply) in done {
                    let _ = reply.send(Ok(()));
                }
            }
            Err(source) => {
                let source = Arc::new(source);
                let from = self.compacted;
                tracing::warn!(error = %source, from, to, "store compaction failed");
                for (revision, reply) in self.waiters.drain(..) {
                    let error = StoreError::Compaction {
                        revision,
                        source: Arc::clone(&source),
                    };
                    let _ = reply.send(Err(error));
                }
                self.requested = self.compacted;
                self.retry_auto_at =
                    self.revision + self.history_limit.unwrap_or(0).clamp(1, COMPACT_STEP);
            }
        }
    }
}

/// Drops the history that no read at or after revision `to` needs: every change superseded by a
/// later change at or below `to`, and every delete at or below `to`. What stays at or below `to`
/// is, per key, its newest value there, which reads as of `to` and later events' `prev_kv` use.
/// Rows superseded at or below `from` are already gone, so only changes in `(from, to]` are
/// looked at.
fn compact(conn: &mut Connection, from: Revision, to: Revision) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute(
        "DELETE FROM history WHERE rowid IN (
             SELECT p.rowid FROM history AS n
             JOIN history AS p ON p.rev = n.prev_rev AND p.key = n.key
             WHERE n.rev > ?1 AND n.rev <= ?2 AND n.prev_rev > 0)",
        (from, to),
    )?;
    tx.execute(
        "DELETE FROM history WHERE rev > ?1 AND rev <= ?2 AND value IS NULL",
        (from, to),
    )?;
    tx.execute("UPDATE meta SET value = ?1 WHERE name = 'compacted'", [to])?;
    tx.commit()
}

const UPSERT_KV: &str = "
    INSERT INTO kv (key, value, create_rev, mod_rev, version) VALUES (?1, ?2, ?3, ?4, ?5)
    ON CONFLICT (key) DO UPDATE SET value = excluded.value, create_rev = excluded.create_rev,
        mod_rev = excluded.mod_rev, version = excluded.version";

const DELETE_KV: &str = "DELETE FROM kv WHERE key = ?1";

const APPEND_HISTORY: &str = "
    INSERT INTO history (rev, seq, key, value, create_rev, version, prev_rev)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";

/// [`TxnState`] over the writer's open transaction.
struct SqlState<'a> {
    conn: &'a Connection,
}

impl SqlState<'_> {
    /// Appends the change that made `kv` (a tombstone if `deleted`) to the history log.
    fn log(
        &self,
        seq: u32,
        kv: &KeyValue,
        deleted: bool,
        prev: Option<&KeyValue>,
    ) -> Result<(), StoreError> {
        let value = (!deleted).then_some(&kv.value[..]);
        let prev_rev = prev.map_or(0, |p| p.mod_revision);
        let row = (
            kv.mod_revision,
            seq,
            kv.key.as_bytes(),
            value,
            kv.create_revision,
            kv.version,
            prev_rev,
        );
        self.conn
            .prepare_cached(APPEND_HISTORY)
            .and_then(|mut stmt| stmt.execute(row))
            .map_err(|source| StoreError::Sqlite {
                operation: "append history",
                source,
            })?;
        Ok(())
    }
}

impl TxnState for SqlState<'_> {
    fn get(&mut self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        schema::current(self.conn, key)
    }

    fn put(&mut self, seq: u32, kv: &KeyValue, prev: Option<&KeyValue>) -> Result<(), StoreError> {
        let row = (
            kv.key.as_bytes(),
            &kv.value[..],
            kv.create_revision,
            kv.mod_revision,
            kv.version,
        );
        self.conn
            .prepare_cached(UPSERT_KV)
            .and_then(|mut stmt| stmt.execute(row))
            .map_err(|source| StoreError::Sqlite {
                operation: "write key",
                source,
            })?;
        self.log(seq, kv, false, prev)
    }

    fn delete(&mut self, seq: u32, revision: Revision, prev: &KeyValue) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(DELETE_KV)
            .and_then(|mut stmt| stmt.execute([prev.key.as_bytes()]))
            .map_err(|source| StoreError::Sqlite {
                operation: "delete key",
                source,
            })?;
        self.log(seq, &txn::tombstone(&prev.key, revision), true, Some(prev))
    }
}

/// Reads the persisted revision and compaction point when the store opens.
pub(super) fn load_revisions(conn: &Connection) -> Result<(Revision, Revision), StoreError> {
    Ok((
        schema::meta(conn, "revision")?,
        schema::meta(conn, "compacted")?,
    ))
}
