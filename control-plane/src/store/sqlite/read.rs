//! The read side of the SQLite backend: a small pool of read connections used from blocking
//! threads, and the queries for get, range (now and as of a past revision) and watch history.
//! Each multi-statement read runs in one read transaction, so it sees a single snapshot that
//! the writer's commits cannot change under it (WAL readers never wait for the writer).

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use futures::future::BoxFuture;
use futures::FutureExt;
use rusqlite::Connection;
use tokio::sync::Semaphore;

use super::schema::{self, prefix_end, raw_kv};
use crate::store::txn::tombstone;
use crate::store::watch::{HistoryCursor, HistoryPage, HistorySource};
use crate::store::{Event, EventKind, KeyValue, RangeResponse, Revision, StoreError};

/// Most reads running at once, hence most read connections open. Each connection has its own
/// page cache, so this bounds memory on small boards; further reads queue.
const MAX_READERS: usize = 4;

/// Read connections to one database file.
#[derive(Debug)]
pub(super) struct ReadPool {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    permits: Semaphore,
}

impl ReadPool {
    /// A pool for `path`, with one connection opened now so a bad path fails at startup.
    pub fn new(path: PathBuf) -> Result<ReadPool, StoreError> {
        let first = schema::open_reader(&path)?;
        Ok(ReadPool {
            path,
            idle: Mutex::new(vec![first]),
            permits: Semaphore::new(MAX_READERS),
        })
    }

    /// Runs `read` on a pooled connection, on a blocking thread.
    pub async fn run<T, F>(self: &Arc<Self>, read: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        // The semaphore is never closed, so acquiring can only wait.
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| StoreError::Closed)?;
        let pool = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let mut conn = pool.take()?;
            let result = read(&mut conn);
            pool.put_back(conn);
            result
        })
        .await
        .map_err(|source| StoreError::ReadTask { source })?
    }

    fn take(&self) -> Result<Connection, StoreError> {
        let pooled = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        match pooled {
            Some(conn) => Ok(conn),
            None => schema::open_reader(&self.path),
        }
    }

    fn put_back(&self, conn: Connection) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < MAX_READERS {
            idle.push(conn);
        }
    }
}

fn sql_err(operation: &'static str) -> impl Fn(rusqlite::Error) -> StoreError {
    move |source| StoreError::Sqlite { operation, source }
}

/// Keys under `prefix` as of `revision` (`None` = now).
pub(super) fn range(
    conn: &mut Connection,
    prefix: &str,
    revision: Option<Revision>,
) -> Result<RangeResponse, StoreError> {
    let tx = conn.transaction().map_err(sql_err("begin read"))?;
    let current = schema::meta(&tx, "revision")?;
    let at = revision.unwrap_or(current);
    if at > current {
        return Err(StoreError::FutureRevision {
            requested: at,
            current,
        });
    }
    let compacted = schema::meta(&tx, "compacted")?;
    if at < compacted {
        return Err(StoreError::Compacted {
            requested: at,
            compacted,
        });
    }
    let (start, end) = (prefix.as_bytes(), prefix_end(prefix));

    // Keys not changed after `at` have their value at `at` in `kv`.
    let mut kvs = Vec::new();
    let sql = "SELECT key, value, create_rev, mod_rev, version FROM kv
               WHERE key >= ?1 AND key < ?2 AND mod_rev <= ?3 ORDER BY key";
    let mut stmt = tx.prepare_cached(sql).map_err(sql_err("range keys"))?;
    let rows = stmt
        .query_map((start, &end, at), raw_kv)
        .map_err(sql_err("range keys"))?;
    for row in rows {
        kvs.push(row.map_err(sql_err("range keys"))?.decode()?);
    }
    drop(stmt);

    // A key changed after `at` had, at `at`, the value its first later change replaced. That
    // row survives compaction below `at` (it is the newest at or below it), unless it was a
    // delete, in which case the key was absent and is rightly skipped.
    if at < current {
        let sql = "SELECT p.key, p.value, p.create_rev, p.rev, p.version
                   FROM (SELECT key, prev_rev, MIN(rev) FROM history
                         WHERE rev > ?3 AND key >= ?1 AND key < ?2 GROUP BY key) AS f
                   JOIN history AS p ON p.rev = f.prev_rev AND p.key = f.key
                   WHERE f.prev_rev > 0 AND p.value IS NOT NULL";
        let mut stmt = tx
            .prepare_cached(sql)
            .map_err(sql_err("range past revision"))?;
        let rows = stmt
            .query_map((start, &end, at), raw_kv)
            .map_err(sql_err("range past revision"))?;
        for row in rows {
            kvs.push(row.map_err(sql_err("range past revision"))?.decode()?);
        }
        // The two sets of keys are disjoint; restore key order.
        kvs.sort_unstable_by(|a, b| a.key.cmp(&b.key));
    }
    Ok(RangeResponse { kvs, revision: at })
}

/// The history log as a watch reads it.
#[derive(Debug)]
pub(super) struct SqliteHistory {
    pub pool: Arc<ReadPool>,
}

impl HistorySource for SqliteHistory {
    fn page(
        &self,
        prefix: &str,
        cursor: HistoryCursor,
        upto: Revision,
        limit: usize,
    ) -> BoxFuture<'static, Result<HistoryPage, StoreError>> {
        let pool = Arc::clone(&self.pool);
        let prefix = prefix.to_owned();
        async move {
            pool.run(move |conn| history_page(conn, &prefix, cursor, upto, limit))
                .await
        }
        .boxed()
    }
}

fn history_page(
    conn: &mut Connection,
    prefix: &str,
    cursor: HistoryCursor,
    upto: Revision,
    limit: usize,
) -> Result<HistoryPage, StoreError> {
    let tx = conn.transaction().map_err(sql_err("begin read"))?;
    let compacted = schema::meta(&tx, "compacted")?;
    if cursor.revision < compacted {
        return Err(StoreError::Compacted {
            requested: cursor.revision,
            compacted,
        });
    }
    let sql = "SELECT n.key, n.value, n.create_rev, n.rev, n.version, n.seq,
                      p.value, p.create_rev, p.rev, p.version
               FROM history AS n
               LEFT JOIN history AS p ON n.prev_rev > 0 AND p.rev = n.prev_rev AND p.key = n.key
               WHERE (n.rev, n.seq) > (?1, ?2) AND n.rev <= ?3 AND n.key >= ?4 AND n.key < ?5
               ORDER BY n.rev, n.seq LIMIT ?6";
    let mut stmt = tx
        .prepare_cached(sql)
        .map_err(sql_err("read watch history"))?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let params = (
        cursor.revision,
        cursor.seq,
        upto,
        prefix.as_bytes(),
        prefix_end(prefix),
        limit,
    );
    let rows = stmt
        .query_map(params, |row| {
            let change: (Vec<u8>, Option<Vec<u8>>, Revision, Revision, i64, u32) = (
                row.get(0)?,
                row.get(1)?,
                row.get(2)?,
                row.get(3)?,
                row.get(4)?,
                row.get(5)?,
            );
            let prev: Option<Vec<u8>> = row.get(6)?;
            let prev = match prev {
                Some(value) => Some((value, row.get(7)?, row.get(8)?, row.get(9)?)),
                None => None,
            };
            Ok((change, prev))
        })
        .map_err(sql_err("read watch history"))?;
    let mut page = Vec::new();
    for row in rows {
        let ((key, value, create_revision, revision, version, seq), prev) =
            row.map_err(sql_err("read watch history"))?;
        let key = schema::decode_key(key)?;
        let prev_kv = prev.map(|(value, create_revision, mod_revision, version)| KeyValue {
            key: key.clone(),
            value: value.into(),
            create_revision,
            mod_revision,
            version,
        });
        let event = match value {
            Some(value) => Event {
                kind: EventKind::Put,
                kv: KeyValue {
                    key,
                    value: value.into(),
                    create_revision,
                    mod_revision: revision,
                    version,
                },
                prev_kv,
            },
            None => Event {
                kind: EventKind::Delete,
                kv: tombstone(&key, revision),
                prev_kv,
            },
        };
        page.push((HistoryCursor { revision, seq }, event));
    }
    Ok(page)
}
