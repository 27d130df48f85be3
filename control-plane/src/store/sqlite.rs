//! The embedded SQLite backend, Bramble's default store.
//!
//! - Durability: WAL journal with `synchronous=FULL`; a txn is acknowledged only after the
//!   SQLite transaction holding it has committed (fsynced), and each batch is one transaction,
//!   so a crash or power loss at any moment loses no acknowledged write and never leaves half a
//!   txn behind.
//! - Writes: one writer thread with group commit (see `sqlite/writer.rs`). A txn whose caller gives up
//!   waiting may still be applied, as with etcd.
//! - Reads: a small pool of read connections on tokio's blocking threads; never the executor.
//! - History: every change is logged. With [`SqliteOptions::history_limit`] set, the writer
//!   compacts automatically to keep roughly the last N revisions: it starts once about N/8
//!   revisions (at most 1000) beyond N have piled up and works in steps of at most 1000
//!   revisions, each its own short transaction between write batches, so writes wait at most
//!   one step and reads never wait.
//! - One process per database file: the revision is re-read from the file inside every write
//!   transaction, so a second process cannot make revisions repeat, but it would not see this
//!   process's watches.

mod read;
mod schema;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;

use async_trait::async_trait;
use tokio::sync::oneshot;

use self::read::{ReadPool, SqliteHistory};
use self::writer::{Request, Writer};
use super::txn;
use super::watch::{WatchHub, DEFAULT_WATCH_BUFFER};
use super::{KeyValue, RangeResponse, Revision, Store, StoreError, Txn, TxnResponse, WatchStream};

/// Default number of revisions of history kept by automatic compaction.
pub const DEFAULT_HISTORY_LIMIT: u64 = 10_000;

/// Settings of a [`SqliteStore`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqliteOptions {
    /// Keep about this many revisions of history, compacting older ones automatically; `None`
    /// keeps everything until [`Store::compact`] is called.
    pub history_limit: Option<u64>,
    /// Events a watcher may fall behind before it is cut off with
    /// [`StoreError::WatchOverflow`].
    pub watch_buffer: usize,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            history_limit: Some(DEFAULT_HISTORY_LIMIT),
            watch_buffer: DEFAULT_WATCH_BUFFER,
        }
    }
}

/// State shared by the store handle and its writer thread.
#[derive(Debug)]
struct Shared {
    hub: WatchHub,
    /// Last committed revision.
    revision: AtomicI64,
    /// Revision history is compacted to.
    compacted: AtomicI64,
}

/// A [`Store`] in one SQLite database file.
#[derive(Debug)]
pub struct SqliteStore {
    path: PathBuf,
    shared: Arc<Shared>,
    reads: Arc<ReadPool>,
    watch_buffer: usize,
    requests: Option<mpsc::Sender<Request>>,
    writer: Option<JoinHandle<()>>,
}

impl SqliteStore {
    /// Opens (creating if needed) the store at `path` with default options. Blocks on file I/O:
    /// call it at startup or from a blocking thread.
    pub fn open(path: impl AsRef<Path>) -> Result<SqliteStore, StoreError> {
        SqliteStore::open_with(path, SqliteOptions::default())
    }

    /// Opens (creating if needed) the store at `path`. Blocks on file I/O.
    pub fn open_with(
        path: impl AsRef<Path>,
        options: SqliteOptions,
    ) -> Result<SqliteStore, StoreError> {
        let path = path.as_ref().to_owned();
        let conn = schema::open_writer(&path)?;
        let (revision, compacted) = writer::load_revisions(&conn)?;
        let reads = Arc::new(ReadPool::new(path.clone())?);
        let shared = Arc::new(Shared {
            hub: WatchHub::new(revision),
            revision: AtomicI64::new(revision),
            compacted: AtomicI64::new(compacted),
        });
        let history_limit = options
            .history_limit
            .map(|n| i64::try_from(n).unwrap_or(i64::MAX));
        let writer = Writer::new(
            conn,
            Arc::clone(&shared),
            revision,
            compacted,
            history_limit,
        );
        let (requests, queue) = mpsc::channel();
        let handle = std::thread::Builder::new()
            .name("bramble-store-writer".into())
            .spawn(move || writer.run(queue))
            .map_err(|source| StoreError::WriterThread { source })?;
        tracing::info!(path = %path.display(), rv = revision, compacted, "store opened");
        Ok(SqliteStore {
            path,
            shared,
            reads,
            watch_buffer: options.watch_buffer,
            requests: Some(requests),
            writer: Some(handle),
        })
    }

    /// Path of the database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Revision history is compacted to: reads and watches must start at or after it.
    pub fn compacted_revision(&self) -> Revision {
        self.shared.compacted.load(Ordering::Acquire)
    }

    fn send(&self, request: Request) -> Result<(), StoreError> {
        self.requests
            .as_ref()
            .ok_or(StoreError::Closed)?
            .send(request)
            .map_err(|_| StoreError::Closed)
    }
}

impl Drop for SqliteStore {
    /// Stops the writer after the batch it is committing, and waits for it so the file is
    /// closed (and can be reopened) when this returns. Ends every watch.
    fn drop(&mut self) {
        drop(self.requests.take());
        if let Some(handle) = self.writer.take() {
            if handle.join().is_err() {
                tracing::error!(path = %self.path.display(), "store writer thread panicked");
            }
        }
        self.shared.hub.close();
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn txn(&self, txn: Txn) -> Result<TxnResponse, StoreError> {
        txn::validate(&txn)?;
        let (reply, response) = oneshot::channel();
        self.send(Request::Txn { txn, reply })?;
        response.await.map_err(|_| StoreError::Closed)?
    }

    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        let key = key.to_owned();
        self.reads
            .run(move |conn| schema::current(conn, &key))
            .await
    }

    async fn range(
        &self,
        prefix: &str,
        revision: Option<Revision>,
    ) -> Result<RangeResponse, StoreError> {
        if let Some(revision) = revision {
            txn::check_revision(revision)?;
        }
        let prefix = prefix.to_owned();
        self.reads
            .run(move |conn| read::range(conn, &prefix, revision))
            .await
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream, StoreError> {
        txn::check_revision(after)?;
        // A compaction racing with this check is caught when the history is read.
        let compacted = self.compacted_revision();
        if after < compacted {
            return Err(StoreError::Compacted {
                requested: after,
                compacted,
            });
        }
        let (live, published) = self.shared.hub.subscribe(prefix, self.watch_buffer)?;
        let history = Arc::new(SqliteHistory {
            pool: Arc::clone(&self.reads),
        });
        Ok(WatchStream::new(prefix, after, live, published, history))
    }

    async fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        txn::check_revision(revision)?;
        let (reply, done) = oneshot::channel();
        self.send(Request::Compact { revision, reply })?;
        done.await.map_err(|_| StoreError::Closed)?
    }

    fn current_revision(&self) -> Revision {
        self.shared.revision.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::io::{BufRead, BufReader, Write};
    use std::process::{Command, Stdio};

    use anyhow::{ensure, Context, Result};
    use futures::StreamExt;

    use super::*;
    use crate::store::conformance::{blind_put, conformance_tests};

    conformance_tests!(
        |watch_buffer: usize| -> Result<(Arc<dyn Store>, tempfile::TempDir)> {
            let dir = tempfile::tempdir()?;
            let options = SqliteOptions {
                history_limit: None,
                watch_buffer,
            };
            let store = SqliteStore::open_with(dir.path().join("store.db"), options)?;
            Ok((Arc::new(store), dir))
        }
    );

    fn unlimited() -> SqliteOptions {
        SqliteOptions {
            history_limit: None,
            ..SqliteOptions::default()
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reopen_keeps_data_revision_and_compaction() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("store.db");
        let store = SqliteStore::open_with(&path, unlimited())?;
        for i in 0..10 {
            store
                .txn(blind_put(&format!("/k/{}", i % 4), &i.to_string()))
                .await?;
        }
        store.compact(5).await?;
        let before = store.range("", None).await?;
        drop(store);

        let store = SqliteStore::open_with(&path, unlimited())?;
        ensure!(store.current_revision() == 10 && store.compacted_revision() == 5);
        ensure!(
            store.range("", None).await? == before,
            "data changed across reopen"
        );
        let at6 = store.range("/k/", Some(6)).await?;
        ensure!(
            at6.kvs.iter().map(|kv| kv.mod_revision).collect::<Vec<_>>() == [5, 6, 3, 4],
            "{at6:?}"
        );
        ensure!(matches!(
            store.range("", Some(4)).await,
            Err(StoreError::Compacted { compacted: 5, .. })
        ));
        ensure!(
            store.txn(blind_put("/k/new", "x")).await?.revision == 11,
            "the revision continues"
        );
        let mut watch = store.watch("/k/", 9).await?;
        for expected in [10, 11] {
            let event = watch.next().await.context("event")??;
            ensure!(event.kv.mod_revision == expected, "{event:?}");
        }
        Ok(())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn group_commit_acknowledges_64_concurrent_writers_durably() -> Result<()> {
        const WRITERS: usize = 64;
        const EACH: usize = 20;
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("store.db");
        let store = Arc::new(SqliteStore::open_with(&path, unlimited())?);
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let store = Arc::clone(&store);
                tokio::spawn(async move {
                    let mut revisions = Vec::new();
                    for i in 0..EACH {
                        revisions.push(
                            store
                                .txn(blind_put(&format!("/g/{w}/{i}"), &format!("{w}-{i}")))
                                .await?
                                .revision,
                        );
                    }
                    anyhow::Ok(revisions)
                })
            })
            .collect();
        let mut revisions = BTreeSet::new();
        for writer in writers {
            revisions.extend(writer.await??);
        }
        let total = (WRITERS * EACH) as Revision;
        ensure!(
            revisions == (1..=total).collect(),
            "every txn got its own revision"
        );
        drop(store);

        let store = SqliteStore::open_with(&path, unlimited())?;
        ensure!(store.current_revision() == total);
        let all = store.range("/g/", None).await?;
        ensure!(
            all.kvs.len() == WRITERS * EACH,
            "{} keys after reopen",
            all.kvs.len()
        );
        for kv in &all.kvs {
            let expected = kv.key.trim_start_matches("/g/").replace('/', "-");
            ensure!(kv.value == expected.as_bytes(), "{kv:?}");
        }
        Ok(())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn history_limit_compacts_automatically() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("store.db");
        let options = SqliteOptions {
            history_limit: Some(10),
            ..SqliteOptions::default()
        };
        let store = SqliteStore::open_with(&path, options)?;
        for i in 0..100 {
            store
                .txn(blind_put(&format!("/h/{}", i % 5), &i.to_string()))
                .await?;
        }
        // The step after the last batch runs once its callers are answered.
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
        while store.compacted_revision() < 90 {
            ensure!(
                tokio::time::Instant::now() < deadline,
                "no automatic compaction"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        ensure!(matches!(
            store.range("", Some(89)).await,
            Err(StoreError::Compacted { .. })
        ));
        ensure!(store.range("/h/", Some(90)).await?.kvs.len() == 5);
        let mut watch = store.watch("/h/", 90).await?;
        for expected in 91..=100 {
            ensure!(watch.next().await.context("event")??.kv.mod_revision == expected);
        }
        // Per key at most its newest row at or below the compaction point survives.
        let rows: i64 = rusqlite::Connection::open(&path)?.query_row(
            "SELECT COUNT(*) FROM history",
            [],
            |r| r.get(0),
        )?;
        ensure!(
            rows <= 10 + 5,
            "{rows} history rows kept for a limit of 10 revisions over 5 keys"
        );
        Ok(())
    }

    /// Set in the child process of the crash test, to the directory of its database.
    const CRASH_CHILD_ENV: &str = "BRAMBLE_STORE_CRASH_CHILD";
    /// Acknowledgements the parent waits for before killing the child.
    const ACKS_BEFORE_KILL: usize = 300;

    fn crash_value(writer: usize, i: usize, half: &str) -> String {
        // Several KiB, so a torn write would show as a truncated or mixed value.
        format!("{writer}/{i}/{half}:").repeat(300)
    }

    /// Kills the child process (by its pid) if the test ends before it does.
    struct KillOnDrop(std::process::Child);

    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            if let Ok(None) = self.0.try_wait() {
                let _ = self.0.kill();
                let _ = self.0.wait();
            }
        }
    }

    /// Child side: writes pairs of keys from 8 tasks until killed (or after a bound, so an
    /// orphaned child ends), printing each acknowledged pair.
    async fn crash_child(dir: &str) -> Result<()> {
        let store = Arc::new(SqliteStore::open_with(
            Path::new(dir).join("store.db"),
            SqliteOptions::default(),
        )?);
        let tasks: Vec<_> = (0..8)
            .map(|w| {
                let store = Arc::clone(&store);
                tokio::spawn(async move {
                    for i in 0..20_000 {
                        let ops = ["a", "b"].map(|half| crate::store::Op::Put {
                            key: format!("/crash/{w}/{i}/{half}"),
                            value: crash_value(w, i, half).into(),
                        });
                        store
                            .txn(Txn {
                                success: Vec::from(ops),
                                ..Txn::default()
                            })
                            .await?;
                        let mut out = std::io::stdout().lock();
                        writeln!(out, "ACK {w} {i}")?;
                        out.flush()?;
                    }
                    anyhow::Ok(())
                })
            })
            .collect();
        for task in tasks {
            task.await??;
        }
        Ok(())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn kill_9_loses_no_acknowledged_txn_and_leaves_none_half_written() -> Result<()> {
        if let Ok(dir) = std::env::var(CRASH_CHILD_ENV) {
            return crash_child(&dir).await;
        }
        let dir = tempfile::tempdir()?;
        let test = concat!(
            module_path!(),
            "::kill_9_loses_no_acknowledged_txn_and_leaves_none_half_written"
        );
        let test = test.split_once("::").map_or(test, |(_crate, path)| path);
        let mut child = KillOnDrop(
            Command::new(std::env::current_exe()?)
                .args([test, "--exact", "--nocapture", "--test-threads=1"])
                .env(CRASH_CHILD_ENV, dir.path())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()?,
        );
        let stdout = child.0.stdout.take().context("child stdout")?;
        let acked = tokio::task::spawn_blocking(move || {
            let mut acked: Vec<(usize, usize)> = Vec::new();
            for line in BufReader::new(stdout).lines() {
                let line = line?;
                // The first ack shares its line with libtest's "test ... " prefix.
                let ack = line
                    .split_once("ACK ")
                    .and_then(|(_, ack)| ack.split_once(' '));
                if let Some((w, i)) = ack {
                    acked.push((w.parse()?, i.parse()?));
                }
                if acked.len() == ACKS_BEFORE_KILL {
                    child.0.kill()?; // SIGKILL, in the middle of the burst
                }
            }
            // Lines written before the kill are still read above, up to end of file.
            let status = child.0.wait()?;
            ensure!(
                acked.len() >= ACKS_BEFORE_KILL,
                "the child exited ({status}) after {} acks",
                acked.len()
            );
            anyhow::Ok(acked)
        })
        .await??;

        let store = SqliteStore::open_with(dir.path().join("store.db"), unlimited())?;
        for (w, i) in &acked {
            for half in ["a", "b"] {
                let kv = store.get(&format!("/crash/{w}/{i}/{half}")).await?;
                let value = kv
                    .with_context(|| format!("acknowledged txn {w}/{i} lost"))?
                    .value;
                ensure!(
                    value == crash_value(*w, *i, half).as_bytes(),
                    "value of {w}/{i}/{half} damaged"
                );
            }
        }
        let all = store.range("/crash/", None).await?;
        ensure!(all.kvs.len() % 2 == 0, "a txn was half applied");
        for pair in all.kvs.chunks(2) {
            let [a, b] = pair else {
                unreachable!("chunks of an even-length slice")
            };
            ensure!(
                a.key.strip_suffix("/a") == b.key.strip_suffix("/b"),
                "half a txn: {} {}",
                a.key,
                b.key
            );
            ensure!(a.mod_revision == b.mod_revision, "one txn, one revision");
        }
        ensure!(
            all.kvs.len() >= acked.len() * 2
                && store.current_revision() as usize * 2 == all.kvs.len()
        );
        Ok(())
    }
}
