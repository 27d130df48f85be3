//! A [`Store`] on an etcd v3 cluster, so that several control planes can share one store, as
//! Kubernetes API servers do.
//!
//! # Mapping
//! - Revisions: an empty etcd store is at revision 1 and its first write is revision 2, while an
//!   empty Bramble store is at 0 and its first write is 1. Bramble revision `r` is etcd revision
//!   `r + 1` everywhere (txn, range, watch, compact, the revisions of keys and events), so every
//!   control plane on the same etcd sees the same revisions and the store behaves exactly as the
//!   others from an empty etcd. A revision field of 0 (an absent key, the kv of a delete event)
//!   stays 0.
//! - [`Txn`] is one etcd txn. Compares (see [`Compare`](super::Compare) for the contract):
//!   `ModRevision { equals: 0 }` becomes `mod_revision == 0` and `Absent` becomes
//!   `create_revision == 0` (etcd compares an absent key as all zeros, and no present key has a
//!   zero revision); `ModRevision { equals: n > 0 }` becomes `mod_revision == n + 1`; a negative
//!   `equals`, which never holds, becomes `mod_revision < 0`, which never holds either; `Exists`
//!   becomes `create_revision > 0`. Puts and deletes ask for `prev_kv`. The value of each compared
//!   key ([`TxnResponse::current`]) comes with the answer, so a failed CAS needs no second read
//!   (see `branch.rs`).
//! - [`Store::watch`] is one etcd watch with `prev_kv`, fed into a bounded buffer by a task, so a
//!   slow consumer is cut off with [`StoreError::WatchOverflow`] as with the other backends.
//! - Keys live under an optional prefix, added on the way in and stripped on the way out.
//!
//! # Limits
//! etcd's own limits apply: it refuses a request larger than its `--max-request-bytes` (1.5 MiB
//! by default, the same as [`super::MAX_VALUE_BYTES`], so values near that size need a larger
//! setting) and more than `--max-txn-ops` (128, as [`super::MAX_TXN_OPS`]) compares or ops per
//! branch.

mod branch;
mod codec;
mod pump;
mod tls;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use etcd_client::{
    Client, ConnectOptions, GetOptions, KvClient, Txn as EtcdTxn, TxnOpResponse, WatchClient,
    WatchOptions,
};
use futures::StreamExt;
use tokio::sync::watch;

use self::branch::Branch;
use self::codec::{from_etcd, to_etcd, Shared};
use self::pump::Pump;
pub use self::tls::{EtcdIdentity, EtcdTls};
use super::txn;
use super::watch::{Feed, DEFAULT_WATCH_BUFFER};
use super::{
    KeyValue, Op, RangeResponse, Revision, Store, StoreError, Txn, TxnResponse, WatchStream,
};

/// Largest response accepted from etcd. tonic's default (4 MiB) would fail a list of a large
/// collection; etcd itself sends up to 2 GiB, as Kubernetes' client accepts.
const MAX_RESPONSE_BYTES: usize = i32::MAX as usize;

/// HTTP/2 pings on the etcd connection, so a dead etcd ends watches instead of leaving them
/// silent forever (Kubernetes' values; etcd refuses pings more often than every 5 s).
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// Settings of an [`EtcdStore`].
#[derive(Debug, Clone)]
pub struct EtcdOptions {
    /// Prefix of every key in etcd, so Bramble can share an etcd with other users or other
    /// clusters. Joined to keys as is: Bramble's keys start with `/`, so `/cluster-a` gives
    /// `/cluster-a/registry/...`. No prefix in use may start another (`/a` and `/ab`), or a
    /// range over every key would see both.
    pub prefix: Option<String>,
    /// TLS settings; `None` for plain `http://` endpoints.
    pub tls: Option<EtcdTls>,
    /// Events a watcher may fall behind before it is cut off with
    /// [`StoreError::WatchOverflow`].
    pub watch_buffer: usize,
    /// Longest wait for a TCP (and TLS) connection and for etcd's first answer.
    pub connect_timeout: Duration,
    /// Longest wait for the answer to one request (not for watch events).
    pub request_timeout: Duration,
}

impl Default for EtcdOptions {
    fn default() -> Self {
        EtcdOptions {
            prefix: None,
            tls: None,
            watch_buffer: DEFAULT_WATCH_BUFFER,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// Why an etcd request failed, with the two answers callers turn into Bramble errors apart.
enum Rejection {
    Compacted,
    FutureRevision,
    Failed(StoreError),
}

impl Rejection {
    /// The error for a caller that expects neither compaction nor a future revision.
    fn into_error(self, operation: &'static str) -> StoreError {
        match self {
            Rejection::Failed(error) => error,
            // Only reachable if etcd answers a request that names no revision this way.
            Rejection::Compacted | Rejection::FutureRevision => StoreError::EtcdMalformed {
                operation,
                missing: "a result (it gave a revision error to a request that named no revision)",
            },
        }
    }
}

/// Sorts an etcd client error: etcd's compaction and future-revision errors are recognised by
/// their messages, as etcd's own Go client does (both share the gRPC code OutOfRange).
fn reject(operation: &'static str, source: etcd_client::Error) -> Rejection {
    if let etcd_client::Error::GRpcStatus(status) = &source {
        let message = status.message();
        if message.ends_with("mvcc: required revision has been compacted") {
            return Rejection::Compacted;
        }
        if message.ends_with("mvcc: required revision is a future revision") {
            return Rejection::FutureRevision;
        }
    }
    Rejection::Failed(StoreError::Etcd {
        operation,
        source: Box::new(source),
    })
}

/// A [`Store`] on an etcd v3 cluster. Cheap to share; every control plane connected to the same
/// etcd with the same prefix sees the same keys, revisions and events.
pub struct EtcdStore {
    endpoints: Vec<String>,
    kv: KvClient,
    watches: WatchClient,
    shared: Arc<Shared>,
    watch_buffer: usize,
    request_timeout: Duration,
    /// Never sent on; dropped with the store, which tells the watch tasks to wind down.
    shutdown: watch::Sender<()>,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore")
            .field("endpoints", &self.endpoints)
            .field("prefix", &self.shared.prefix)
            .field("revision", &self.current_revision())
            .finish_non_exhaustive()
    }
}

impl EtcdStore {
    /// Connects to the etcd cluster at `endpoints` (`http://host:port`, or `https://host:port`
    /// with `tls`), keeping keys under `prefix`, with default options. Fails unless etcd
    /// answers.
    pub async fn connect(
        endpoints: &[String],
        prefix: Option<String>,
        tls: Option<EtcdTls>,
    ) -> Result<EtcdStore, StoreError> {
        let options = EtcdOptions {
            prefix,
            tls,
            ..EtcdOptions::default()
        };
        EtcdStore::connect_with(endpoints, options).await
    }

    /// Connects to the etcd cluster at `endpoints` with `options`. Fails unless etcd answers.
    pub async fn connect_with(
        endpoints: &[String],
        options: EtcdOptions,
    ) -> Result<EtcdStore, StoreError> {
        let connect_error = |source| StoreError::EtcdConnect {
            endpoints: endpoints.to_vec(),
            source: Box::new(source),
        };
        let mut connect = ConnectOptions::new()
            .with_connect_timeout(options.connect_timeout)
            .with_keep_alive(KEEPALIVE_INTERVAL, KEEPALIVE_TIMEOUT);
        if let Some(tls) = &options.tls {
            connect = connect.with_tls(tls.client_config());
        }
        let client = Client::connect(endpoints, Some(connect))
            .await
            .map_err(connect_error)?;
        let store = EtcdStore {
            endpoints: endpoints.to_vec(),
            kv: client
                .kv_client()
                .max_decoding_message_size(MAX_RESPONSE_BYTES),
            watches: client
                .watch_client()
                .max_decoding_message_size(MAX_RESPONSE_BYTES),
            shared: Arc::new(Shared::new(options.prefix.unwrap_or_default())),
            watch_buffer: options.watch_buffer,
            request_timeout: options.request_timeout,
            shutdown: watch::Sender::new(()),
        };
        // The client connects lazily: ask etcd something, both to fail now rather than on the
        // first real request and to learn the current revision.
        let mut kv = store.kv();
        let probe = kv.get(
            store.shared.probe_key(""),
            Some(GetOptions::new().with_count_only()),
        );
        let response = tokio::time::timeout(options.connect_timeout, probe)
            .await
            .map_err(|_| StoreError::EtcdTimeout {
                operation: "connect",
                waited: options.connect_timeout,
            })?
            .map_err(connect_error)?;
        let revision = store.shared.observe(response.header(), "connect")?;
        tracing::info!(
            endpoints = ?store.endpoints,
            prefix = %store.shared.prefix,
            rv = revision,
            "etcd store connected"
        );
        Ok(store)
    }

    fn kv(&self) -> KvClient {
        self.kv.clone()
    }

    /// Runs one unary etcd request with the request timeout.
    async fn request<T>(
        &self,
        operation: &'static str,
        request: impl Future<Output = Result<T, etcd_client::Error>>,
    ) -> Result<T, Rejection> {
        match tokio::time::timeout(self.request_timeout, request).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(source)) => Err(reject(operation, source)),
            Err(_) => Err(Rejection::Failed(StoreError::EtcdTimeout {
                operation,
                waited: self.request_timeout,
            })),
        }
    }

    /// etcd's current revision, asked afresh (the cached one may lag other control planes).
    async fn fetch_revision(&self, operation: &'static str) -> Result<Revision, StoreError> {
        let mut kv = self.kv();
        let request = kv.get(
            self.shared.probe_key(""),
            Some(GetOptions::new().with_count_only()),
        );
        let response = self
            .request(operation, request)
            .await
            .map_err(|rejection| rejection.into_error(operation))?;
        self.shared.observe(response.header(), operation)
    }

    /// The error for a read of `requested` that etcd refused as compacted, with the revision
    /// etcd is compacted to. etcd's error does not carry it, but a watch from a compacted
    /// revision is answered with it.
    async fn compacted(&self, requested: Revision) -> StoreError {
        const OPERATION: &str = "finding the compacted revision";
        let options = WatchOptions::new().with_start_revision(to_etcd(requested));
        let probe = async {
            let (_watcher, mut stream) = self
                .watches
                .clone()
                .watch(self.shared.probe_key(""), Some(options))
                .await
                .map_err(|source| StoreError::Etcd {
                    operation: OPERATION,
                    source: Box::new(source),
                })?;
            while let Some(response) = stream.next().await {
                let response = response.map_err(|source| StoreError::Etcd {
                    operation: OPERATION,
                    source: Box::new(source),
                })?;
                self.shared.observe(response.header(), OPERATION)?;
                if response.compact_revision() > 0 {
                    return Ok(from_etcd(response.compact_revision()));
                }
                if response.canceled() {
                    break;
                }
            }
            Err(StoreError::EtcdMalformed {
                operation: OPERATION,
                missing: "the compacted revision",
            })
        };
        match tokio::time::timeout(self.request_timeout, probe).await {
            Ok(Ok(compacted)) => StoreError::Compacted {
                requested,
                compacted,
            },
            Ok(Err(error)) => error,
            Err(_) => StoreError::EtcdTimeout {
                operation: OPERATION,
                waited: self.request_timeout,
            },
        }
    }

    /// The values of `branch`'s reads at revision `at`, in one read-only etcd txn.
    async fn read_back(
        &self,
        branch: &Branch<'_>,
        at: Revision,
    ) -> Result<Vec<Option<KeyValue>>, StoreError> {
        const OPERATION: &str = "reading back compared keys";
        let request = EtcdTxn::new().and_then(branch.read_back(&self.shared, to_etcd(at)));
        let response = match self.request(OPERATION, self.kv().txn(request)).await {
            Ok(response) => response,
            Err(Rejection::Compacted) => return Err(self.compacted(at).await),
            Err(rejection) => return Err(rejection.into_error(OPERATION)),
        };
        self.shared.observe(response.header(), OPERATION)?;
        let responses = response.op_responses();
        if responses.len() != branch.reads.len() {
            return Err(StoreError::EtcdMalformed {
                operation: OPERATION,
                missing: "one answer per read",
            });
        }
        responses
            .into_iter()
            .map(|response| match response {
                TxnOpResponse::Get(mut get) => branch::first(&self.shared, get.take_kvs()),
                _ => Err(StoreError::EtcdMalformed {
                    operation: OPERATION,
                    missing: "a range answer per read",
                }),
            })
            .collect()
    }

    /// The error for `requested` being past etcd's current revision.
    async fn future(&self, requested: Revision, operation: &'static str) -> StoreError {
        match self.fetch_revision(operation).await {
            Ok(current) => StoreError::FutureRevision { requested, current },
            Err(error) => error,
        }
    }
}

#[async_trait]
impl Store for EtcdStore {
    async fn txn(&self, request: Txn) -> Result<TxnResponse, StoreError> {
        const OPERATION: &str = "txn";
        txn::validate(&request)?;
        let success = Branch::plan(&request, &request.success, true);
        let failure = Branch::plan(&request, &request.failure, false);
        let compares: Vec<_> = request
            .compare
            .iter()
            .map(|compare| self.shared.compare(compare))
            .collect();
        let etcd_txn = EtcdTxn::new()
            .when(compares)
            .and_then(success.ops(&self.shared, &request.success))
            .or_else(failure.ops(&self.shared, &request.failure));
        let response = self
            .request(OPERATION, self.kv().txn(etcd_txn))
            .await
            .map_err(|rejection| rejection.into_error(OPERATION))?;
        let revision = self.shared.observe(response.header(), OPERATION)?;
        let succeeded = response.succeeded();
        let (branch, ops) = if succeeded {
            (&success, &request.success)
        } else {
            (&failure, &request.failure)
        };
        let mut answer = branch.answer(&self.shared, ops, response.op_responses())?;
        if !branch.inline {
            // A txn that changed something has its own revision; the snapshot it ran on is the
            // one before.
            let changed = ops
                .iter()
                .zip(&answer.prev_kvs)
                .any(|(op, prev)| matches!(op, Op::Put { .. }) || prev.is_some());
            let ran_on = if changed { revision - 1 } else { revision };
            answer.reads = self.read_back(branch, ran_on).await.map_err(|source| {
                StoreError::EtcdTxnReadBack {
                    revision,
                    source: Box::new(source),
                }
            })?;
        }
        let current = branch.current(&request.compare, ops, &answer);
        Ok(TxnResponse {
            succeeded,
            revision,
            prev_kvs: answer.prev_kvs,
            current,
        })
    }

    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        const OPERATION: &str = "get";
        // etcd refuses the empty key, and no txn can write it.
        if key.is_empty() {
            return Ok(None);
        }
        let mut response = self
            .request(OPERATION, self.kv().get(self.shared.full_key(key), None))
            .await
            .map_err(|rejection| rejection.into_error(OPERATION))?;
        self.shared.observe(response.header(), OPERATION)?;
        response
            .take_kvs()
            .into_iter()
            .next()
            .map(|kv| self.shared.kv(kv))
            .transpose()
    }

    async fn range(
        &self,
        prefix: &str,
        revision: Option<Revision>,
    ) -> Result<RangeResponse, StoreError> {
        const OPERATION: &str = "range";
        let mut options = GetOptions::new().with_prefix();
        if let Some(revision) = revision {
            txn::check_revision(revision)?;
            options = options.with_revision(to_etcd(revision));
        }
        let mut kv = self.kv();
        let request = kv.get(self.shared.full_key(prefix), Some(options));
        match (self.request(OPERATION, request).await, revision) {
            (Ok(mut response), _) => {
                let current = self.shared.observe(response.header(), OPERATION)?;
                let kvs = response
                    .take_kvs()
                    .into_iter()
                    .map(|kv| self.shared.kv(kv))
                    .collect::<Result<_, _>>()?;
                Ok(RangeResponse {
                    kvs,
                    revision: revision.unwrap_or(current),
                })
            }
            (Err(Rejection::Compacted), Some(requested)) => Err(self.compacted(requested).await),
            (Err(Rejection::FutureRevision), Some(requested)) => {
                Err(self.future(requested, OPERATION).await)
            }
            (Err(rejection), _) => Err(rejection.into_error(OPERATION)),
        }
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream, StoreError> {
        const OPERATION: &str = "watch";
        txn::check_revision(after)?;
        // etcd refuses a watch from a compacted revision only asynchronously, after creating
        // it. A read at `after` is refused at once, and exactly when Bramble must refuse the
        // watch: etcd serves reads from its compaction point, as Bramble serves watches after
        // it. A future `after` is fine for a watch.
        let mut kv = self.kv();
        let check = kv.get(
            self.shared.probe_key(prefix),
            Some(
                GetOptions::new()
                    .with_revision(to_etcd(after))
                    .with_count_only(),
            ),
        );
        match self.request(OPERATION, check).await {
            Ok(response) => {
                self.shared.observe(response.header(), OPERATION)?;
            }
            Err(Rejection::FutureRevision) => {}
            Err(Rejection::Compacted) => return Err(self.compacted(after).await),
            Err(rejection) => return Err(rejection.into_error(OPERATION)),
        }
        let options = WatchOptions::new()
            .with_prefix()
            // From the current revision on, etcd streams events as they commit; from an older
            // one it replays history first (polled every 100 ms).
            .with_start_revision(to_etcd(after).saturating_add(1))
            .with_prev_key()
            .with_progress_notify();
        let (watcher, stream) = tokio::time::timeout(
            self.request_timeout,
            self.watches
                .clone()
                .watch(self.shared.full_key(prefix), Some(options)),
        )
        .await
        .map_err(|_| StoreError::EtcdTimeout {
            operation: OPERATION,
            waited: self.request_timeout,
        })?
        .map_err(|source| StoreError::EtcdWatch {
            prefix: prefix.to_owned(),
            source: Box::new(source),
        })?;
        let (feed, events) = Feed::channel(prefix, after, self.watch_buffer);
        let pump = Pump {
            shared: Arc::clone(&self.shared),
            prefix: prefix.to_owned(),
            after,
            position: after,
            feed,
            _watcher: watcher,
            stream,
            shutdown: self.shutdown.subscribe(),
        };
        // Not joined: it ends by itself when the consumer drops the stream, when etcd ends the
        // watch, or at most SHUTDOWN_DRAIN after the store is dropped.
        tokio::spawn(pump.run());
        Ok(events)
    }

    async fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        const OPERATION: &str = "compact";
        txn::check_revision(revision)?;
        let mut kv = self.kv();
        let request = kv.compact(to_etcd(revision), None);
        match self.request(OPERATION, request).await {
            Ok(response) => {
                self.shared.observe(response.header(), OPERATION)?;
                tracing::debug!(rv = revision, "etcd store compacted");
                Ok(())
            }
            // etcd refuses a revision at or below its compaction point: already done.
            Err(Rejection::Compacted) => Ok(()),
            Err(Rejection::FutureRevision) => Err(self.future(revision, OPERATION).await),
            Err(rejection) => Err(rejection.into_error(OPERATION)),
        }
    }

    fn current_revision(&self) -> Revision {
        self.shared.revision()
    }
}

#[cfg(test)]
mod tests;
