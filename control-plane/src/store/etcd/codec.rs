//! How Bramble's keys, revisions, values and compares are written in etcd, and read back.

use std::sync::atomic::{AtomicI64, Ordering};

use bytes::Bytes;
use etcd_client::{Compare as EtcdCompare, CompareOp, EventType, ResponseHeader};

use crate::store::{Compare, Event, EventKind, KeyValue, Revision, StoreError};

/// etcd's revision of an empty store; Bramble's is 0.
const ETCD_BASE_REVISION: i64 = 1;

/// Bramble revision `revision` in etcd. Saturates: no etcd store gets that far, so a saturated
/// revision is simply in the future.
pub(super) fn to_etcd(revision: Revision) -> i64 {
    revision.saturating_add(ETCD_BASE_REVISION)
}

/// etcd revision `revision` in Bramble; 0 (absent, or the kv of a delete event) stays 0.
pub(super) fn from_etcd(revision: i64) -> Revision {
    if revision > 0 {
        revision - ETCD_BASE_REVISION
    } else {
        0
    }
}

/// State shared by the store and its watch tasks.
#[derive(Debug)]
pub(super) struct Shared {
    /// Prefix of every key in etcd.
    pub prefix: String,
    /// Highest revision seen in any answer from etcd.
    revision: AtomicI64,
}

impl Shared {
    /// Keys under `prefix`, at revision 0 until etcd answers.
    pub fn new(prefix: String) -> Shared {
        Shared {
            prefix,
            revision: AtomicI64::new(0),
        }
    }

    /// etcd key of Bramble key `key`.
    pub fn full_key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// A single key to ask etcd about a revision (etcd refuses the empty key).
    pub fn probe_key(&self, prefix: &str) -> Vec<u8> {
        let key = self.full_key(prefix);
        if key.is_empty() {
            vec![0]
        } else {
            key.into_bytes()
        }
    }

    /// Records the revision of an answer's header and returns it.
    pub fn observe(
        &self,
        header: Option<&ResponseHeader>,
        operation: &'static str,
    ) -> Result<Revision, StoreError> {
        let header = header.ok_or(StoreError::EtcdMalformed {
            operation,
            missing: "a response header",
        })?;
        let revision = from_etcd(header.revision());
        self.advance(revision);
        Ok(revision)
    }

    /// Records that the store has reached `revision`.
    pub fn advance(&self, revision: Revision) {
        self.revision.fetch_max(revision, Ordering::AcqRel);
    }

    /// The highest revision seen so far.
    pub fn revision(&self) -> Revision {
        self.revision.load(Ordering::Acquire)
    }

    /// Bramble key of etcd key `key`.
    fn key(&self, key: Vec<u8>) -> Result<String, StoreError> {
        key.strip_prefix(self.prefix.as_bytes())
            .and_then(|rest| String::from_utf8(rest.to_vec()).ok())
            .ok_or_else(|| StoreError::EtcdKey {
                key: String::from_utf8_lossy(&key).into_owned(),
                prefix: self.prefix.clone(),
            })
    }

    /// Bramble's form of an etcd key-value.
    pub fn kv(&self, kv: etcd_client::KeyValue) -> Result<KeyValue, StoreError> {
        let (create_revision, mod_revision, version) =
            (kv.create_revision(), kv.mod_revision(), kv.version());
        let (key, value) = kv.into_key_value();
        Ok(KeyValue {
            key: self.key(key)?,
            value: Bytes::from(value),
            create_revision: from_etcd(create_revision),
            mod_revision: from_etcd(mod_revision),
            version,
        })
    }

    /// Bramble's form of an etcd watch event.
    pub fn event(&self, event: &etcd_client::Event) -> Result<Event, StoreError> {
        let kv = event.kv().ok_or(StoreError::EtcdMalformed {
            operation: "watch",
            missing: "the key-value of an event",
        })?;
        let kind = match event.event_type() {
            EventType::Put => EventKind::Put,
            EventType::Delete => EventKind::Delete,
        };
        Ok(Event {
            kind,
            kv: self.kv(kv.clone())?,
            prev_kv: event.prev_kv().map(|kv| self.kv(kv.clone())).transpose()?,
        })
    }

    /// etcd's form of a compare; see the module doc of `etcd` for why each maps as it does.
    pub fn compare(&self, compare: &Compare) -> EtcdCompare {
        match compare {
            Compare::ModRevision { key, equals } => {
                let key = self.full_key(key);
                match *equals {
                    // etcd compares an absent key as all zeros and no present key has
                    // mod_revision 0, so this is exactly "absent".
                    0 => EtcdCompare::mod_revision(key, CompareOp::Equal, 0),
                    n if n > 0 => EtcdCompare::mod_revision(key, CompareOp::Equal, to_etcd(n)),
                    // Never holds in Bramble; shifting it would turn -1 into "absent".
                    _ => EtcdCompare::mod_revision(key, CompareOp::Less, 0),
                }
            }
            Compare::Exists { key } => {
                EtcdCompare::create_revision(self.full_key(key), CompareOp::Greater, 0)
            }
            Compare::Absent { key } => {
                EtcdCompare::create_revision(self.full_key(key), CompareOp::Equal, 0)
            }
        }
    }
}
