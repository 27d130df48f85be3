//! Bramble's revisioned key-value store, shaped like etcd's v3 KV + Watch API so that an etcd
//! backend sits behind the same [`Store`] trait without the API server noticing.
//!
//! # Model
//! - One global [`Revision`] counter. Every transaction that changes at least one key bumps it by
//!   exactly one, and all its changes carry that revision; a transaction that changes nothing
//!   (failed compare with an empty failure branch, delete of an absent key) leaves it alone. The
//!   revision is what Kubernetes calls `resourceVersion`.
//! - Each key has `create_revision`, `mod_revision` and `version` (1 on create, +1 per put), as in
//!   etcd, so optimistic concurrency is a [`Compare::ModRevision`] in a [`Txn`].
//! - A history log keeps every change after the compacted revision. It serves
//!   [`Store::watch`] from a past revision and [`Store::range`] as of a past revision. Compaction
//!   ([`Store::compact`], or an automatic "keep the last N revisions" policy) drops history;
//!   asking for anything older yields [`StoreError::Compacted`], which the API server turns into
//!   410 Expired so clients relist.
//!
//! # Watch
//! A watch registers for live events *before* it reads history, and history is read only up to
//! the revision that was last published at registration; live events are all newer than that.
//! So history and live events join with no gap and no duplicate. Each watcher has a bounded
//! buffer: a watcher that falls behind is cut off with [`StoreError::WatchOverflow`] (after the
//! events already buffered) instead of slowing writers down; it must relist.
//!
//! # Backends
//! - [`sqlite::SqliteStore`]: the embedded default. WAL mode with `synchronous=FULL`, one writer
//!   thread doing group commit (every queued txn in one SQLite transaction, acknowledged only
//!   after the commit is durable), reads on a small connection pool on blocking threads.
//! - [`memory::MemoryStore`]: in-memory, for unit tests of the layers above.
//! - `etcd::EtcdStore` (Cargo feature `etcd`): an etcd v3 cluster, so several control planes
//!   can share one store. etcd evaluates the transactions and keeps the history; each watch is
//!   one etcd watch.
//!
//! SQLite and memory evaluate transactions with the same code (`txn.rs`) and publish through the
//! same watch hub (`watch.rs`); `conformance.rs` holds the behaviour tests every backend runs.

#[cfg(feature = "etcd")]
pub mod etcd;
pub mod memory;
pub mod sqlite;
mod txn;
mod watch;

#[cfg(test)]
mod conformance;

use async_trait::async_trait;
use bytes::Bytes;

pub use watch::WatchStream;

/// A store revision: the `resourceVersion` of Kubernetes objects. Starts at 0 for an empty store.
pub type Revision = i64;

/// Most compares and most ops one [`Txn`] may carry (per branch), as etcd's default
/// `--max-txn-ops`.
pub const MAX_TXN_OPS: usize = 128;

/// Largest value one key may hold, as etcd's default request size limit (1.5 MiB).
pub const MAX_VALUE_BYTES: usize = 1536 * 1024;

/// Longest key, in bytes.
pub const MAX_KEY_BYTES: usize = 4096;

/// One key with its value and bookkeeping revisions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    /// The key.
    pub key: String,
    /// The value; empty for the `kv` of a delete event.
    pub value: Bytes,
    /// Revision at which the key was (last) created.
    pub create_revision: Revision,
    /// Revision of the last change to the key.
    pub mod_revision: Revision,
    /// Number of puts since the key was created (1 after the create).
    pub version: i64,
}

/// A condition a [`Txn`] checks before choosing its branch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Compare {
    /// The key's `mod_revision` equals `equals`; 0 means the key is absent.
    ModRevision {
        /// Key to check.
        key: String,
        /// Expected `mod_revision`, or 0 for "absent".
        equals: Revision,
    },
    /// The key exists.
    Exists {
        /// Key to check.
        key: String,
    },
    /// The key does not exist.
    Absent {
        /// Key to check.
        key: String,
    },
}

impl Compare {
    /// The key this compare looks at.
    pub fn key(&self) -> &str {
        match self {
            Compare::ModRevision { key, .. }
            | Compare::Exists { key }
            | Compare::Absent { key } => key,
        }
    }
}

/// A write inside a [`Txn`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Create or replace the key's value.
    Put {
        /// Key to write.
        key: String,
        /// New value.
        value: Bytes,
    },
    /// Remove the key; a no-op if it is absent.
    Delete {
        /// Key to remove.
        key: String,
    },
}

impl Op {
    /// The key this op writes.
    pub fn key(&self) -> &str {
        match self {
            Op::Put { key, .. } | Op::Delete { key } => key,
        }
    }
}

/// An atomic compare-and-swap: if every compare holds, apply `success`, else apply `failure`.
/// A branch may not name the same key twice.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Txn {
    /// Conditions, all of which must hold for `success` to run.
    pub compare: Vec<Compare>,
    /// Ops applied when every compare holds.
    pub success: Vec<Op>,
    /// Ops applied otherwise.
    pub failure: Vec<Op>,
}

/// Outcome of a [`Txn`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnResponse {
    /// Whether every compare held (so `success` ran).
    pub succeeded: bool,
    /// Store revision after the txn: its own revision if it changed anything.
    pub revision: Revision,
    /// Value each op of the branch taken replaced or deleted, in op order.
    pub prev_kvs: Vec<Option<KeyValue>>,
    /// Value of each compared key when the txn ran, in compare order, so a failed CAS can tell
    /// "conflict" from "not found" without another read.
    pub current: Vec<Option<KeyValue>>,
}

/// Result of [`Store::range`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeResponse {
    /// Matching keys, sorted by key.
    pub kvs: Vec<KeyValue>,
    /// Revision the result is consistent with (the list's `resourceVersion`).
    pub revision: Revision,
}

/// What happened to a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// Created or updated.
    Put,
    /// Deleted.
    Delete,
}

/// One change, as delivered by [`Store::watch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Kind of change.
    pub kind: EventKind,
    /// The key after the change. For a delete: the key, `mod_revision` = the deletion revision,
    /// empty value, `create_revision` and `version` 0.
    pub kv: KeyValue,
    /// The key before the change, if it existed (always set for a delete).
    pub prev_kv: Option<KeyValue>,
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The requested revision's history has been compacted away: relist.
    #[error("revision {requested} has been compacted (the oldest revision kept is {compacted}); list again and watch from the new revision")]
    Compacted {
        /// Revision that was asked for.
        requested: Revision,
        /// Revision the store is compacted to.
        compacted: Revision,
    },
    /// The requested revision has not happened yet.
    #[error("revision {requested} is in the future (the store is at revision {current})")]
    FutureRevision {
        /// Revision that was asked for.
        requested: Revision,
        /// Current revision.
        current: Revision,
    },
    /// A negative revision was given.
    #[error("revision {revision} is invalid: revisions are 0 or positive")]
    InvalidRevision {
        /// The revision given.
        revision: Revision,
    },
    /// A txn named an empty key.
    #[error("empty key in txn: every compare and op needs a key")]
    EmptyKey,
    /// A key longer than [`MAX_KEY_BYTES`].
    #[error("key of {len} bytes is longer than the limit of {max} bytes")]
    KeyTooLong {
        /// Length of the key.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A txn branch wrote the same key twice.
    #[error("key {key:?} appears twice in one txn branch; merge the ops")]
    DuplicateKey {
        /// The repeated key.
        key: String,
    },
    /// A txn with more compares or ops than [`MAX_TXN_OPS`].
    #[error("txn has {count} {what}, more than the limit of {max}")]
    TooManyOps {
        /// "compares", "success ops" or "failure ops".
        what: &'static str,
        /// How many were given.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A value larger than [`MAX_VALUE_BYTES`].
    #[error("value of {size} bytes for key {key:?} is larger than the limit of {max} bytes")]
    ValueTooLarge {
        /// Key being written.
        key: String,
        /// Size of the value.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// A watcher fell too far behind and was cut off; its consumer must relist.
    #[error("watch on prefix {prefix:?} fell more than {capacity} events behind and was stopped; list again and watch from the new revision")]
    WatchOverflow {
        /// Prefix of the watch.
        prefix: String,
        /// Size of its buffer, in events.
        capacity: usize,
    },
    /// The store has shut down.
    #[error("the store is shut down")]
    Closed,
    /// The database file could not be opened or set up.
    #[error("opening store database {path}: {source}")]
    Open {
        /// Database path.
        path: std::path::PathBuf,
        /// What SQLite said.
        source: rusqlite::Error,
    },
    /// The database was written by a newer Bramble.
    #[error("store database {path} has schema version {found}, this build supports up to {supported}; upgrade bramble")]
    SchemaVersion {
        /// Database path.
        path: std::path::PathBuf,
        /// Version found in the file.
        found: i64,
        /// Newest version this build knows.
        supported: i64,
    },
    /// The database could not be put in WAL mode (e.g. on a network file system).
    #[error("store database {path} could not switch to WAL journal mode (got {mode:?}); put it on a local file system")]
    JournalMode {
        /// Database path.
        path: std::path::PathBuf,
        /// Journal mode SQLite reported.
        mode: String,
    },
    /// The database holds something this build cannot read.
    #[error("store database is corrupt: {what}")]
    Corrupt {
        /// What was wrong.
        what: String,
    },
    /// A SQLite statement failed.
    #[error("store {operation} failed: {source}")]
    Sqlite {
        /// What the store was doing.
        operation: &'static str,
        /// What SQLite said.
        source: rusqlite::Error,
    },
    /// Compacting history up to `revision` failed; history is unchanged past the last step.
    #[error("compacting store history up to revision {revision} failed: {source}")]
    Compaction {
        /// Revision the compaction was heading for.
        revision: Revision,
        /// What SQLite said, shared by every caller waiting for that compaction.
        source: std::sync::Arc<rusqlite::Error>,
    },
    /// The writer thread could not be started.
    #[error("starting the store writer thread: {source}")]
    WriterThread {
        /// Why the thread could not be spawned.
        source: std::io::Error,
    },
    /// A blocking read task panicked or was cancelled.
    #[error("store read task failed: {source}")]
    ReadTask {
        /// The join error.
        source: tokio::task::JoinError,
    },
    /// No etcd endpoint could be reached, or the endpoints or TLS settings are invalid.
    #[error("connecting to etcd at {endpoints:?}: {source}; check the endpoints (http:// or https://host:port), that etcd is running and, for https, the TLS settings")]
    #[cfg(feature = "etcd")]
    EtcdConnect {
        /// Endpoints given.
        endpoints: Vec<String>,
        /// What the etcd client said.
        source: Box<etcd_client::Error>,
    },
    /// A TLS file for the etcd connection could not be read.
    #[error("reading etcd TLS {what} {path}: {source}")]
    #[cfg(feature = "etcd")]
    EtcdTlsFile {
        /// "CA certificate", "client certificate" or "client key".
        what: &'static str,
        /// Path of the file.
        path: std::path::PathBuf,
        /// Why it could not be read.
        source: std::io::Error,
    },
    /// An etcd request failed.
    #[error("etcd {operation} failed: {source}")]
    #[cfg(feature = "etcd")]
    Etcd {
        /// What the store was doing.
        operation: &'static str,
        /// What the etcd client said (for a gRPC status, etcd's own message).
        source: Box<etcd_client::Error>,
    },
    /// etcd did not answer in time. A txn that timed out may still be applied later.
    #[error(
        "etcd {operation} got no answer within {waited:?}; check that etcd is up and has a leader"
    )]
    #[cfg(feature = "etcd")]
    EtcdTimeout {
        /// What the store was doing.
        operation: &'static str,
        /// How long the store waited.
        waited: std::time::Duration,
    },
    /// The etcd watch stream broke (for instance the connection to etcd was lost).
    #[error("etcd watch on prefix {prefix:?} failed: {source}; list again and watch from the new revision")]
    #[cfg(feature = "etcd")]
    EtcdWatch {
        /// Prefix of the watch.
        prefix: String,
        /// What the etcd client said.
        source: Box<etcd_client::Error>,
    },
    /// etcd canceled a watch for a reason other than compaction, or ended its stream.
    #[error("etcd canceled the watch on prefix {prefix:?}: {reason}; list again and watch from the new revision")]
    #[cfg(feature = "etcd")]
    EtcdWatchCanceled {
        /// Prefix of the watch.
        prefix: String,
        /// etcd's reason, or what the store saw.
        reason: String,
    },
    /// etcd answered without something its API always carries.
    #[error("etcd answered {operation} without {missing}; is the endpoint really etcd v3?")]
    #[cfg(feature = "etcd")]
    EtcdMalformed {
        /// What the store was doing.
        operation: &'static str,
        /// What was missing or of the wrong kind.
        missing: &'static str,
    },
    /// An etcd txn ran, but reading back the values of its compared keys afterwards failed (only
    /// a txn too large to read them in the same request does that).
    #[error("the etcd txn ran (the store is at revision {revision}), but reading back the values of its compared keys failed: {source}; read them again")]
    #[cfg(feature = "etcd")]
    EtcdTxnReadBack {
        /// Store revision after the txn.
        revision: Revision,
        /// Why the read failed.
        source: Box<StoreError>,
    },
    /// etcd returned a key that is not valid UTF-8 under the store's prefix, so it was not
    /// written by Bramble.
    #[error("etcd returned key {key:?}, which is not valid UTF-8 under the store prefix {prefix:?}; keep other data out of Bramble's prefix")]
    #[cfg(feature = "etcd")]
    EtcdKey {
        /// The key, with invalid bytes replaced.
        key: String,
        /// The store's prefix.
        prefix: String,
    },
}

/// A revisioned key-value store with transactions and watch.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Runs `txn` atomically. Once this returns `Ok`, the txn is durable.
    async fn txn(&self, txn: Txn) -> Result<TxnResponse, StoreError>;

    /// The current value of `key`, if any.
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError>;

    /// Every key starting with `prefix` (all keys for ""), sorted, as of `revision` (`None` =
    /// now). Fails with [`StoreError::Compacted`] below the compacted revision and
    /// [`StoreError::FutureRevision`] above the current one.
    async fn range(
        &self,
        prefix: &str,
        revision: Option<Revision>,
    ) -> Result<RangeResponse, StoreError>;

    /// Events with revision > `after` for keys starting with `prefix`, in revision order: first
    /// from history, then live, with no gap and no duplicate. Fails with
    /// [`StoreError::Compacted`] if `after` is below the compacted revision. The stream ends when
    /// the store shuts down, and ends with [`StoreError::WatchOverflow`] if the consumer falls
    /// behind.
    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream, StoreError>;

    /// Drops history up to `revision`, so reads and watches must start at or after it. A revision
    /// at or below the current compaction point is a no-op.
    async fn compact(&self, revision: Revision) -> Result<(), StoreError>;

    /// The latest committed revision.
    fn current_revision(&self) -> Revision;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shareable<T: Send + Sync + 'static>() {}
    fn sendable<T: Send + 'static>() {}

    #[test]
    fn errors_stores_and_streams_cross_threads() {
        shareable::<StoreError>();
        shareable::<sqlite::SqliteStore>();
        shareable::<memory::MemoryStore>();
        #[cfg(feature = "etcd")]
        shareable::<etcd::EtcdStore>();
        sendable::<WatchStream>();
    }

    #[test]
    fn compacted_error_tells_the_client_to_relist() {
        let message = StoreError::Compacted {
            requested: 3,
            compacted: 9,
        }
        .to_string();
        assert_eq!(
            message,
            "revision 3 has been compacted (the oldest revision kept is 9); list again and watch from the new revision"
        );
    }
}
