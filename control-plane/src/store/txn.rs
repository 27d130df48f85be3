//! Transaction validation and evaluation, shared by every backend so they agree on CAS
//! semantics, revision and version bookkeeping, and the events a txn emits.

use std::collections::HashSet;

use bytes::Bytes;

use super::{
    Compare, Event, EventKind, KeyValue, Op, Revision, StoreError, Txn, TxnResponse, MAX_KEY_BYTES,
    MAX_TXN_OPS, MAX_VALUE_BYTES,
};

/// The state a txn is evaluated against: a backend's current key table plus its history log.
/// Reads must see the writes of earlier txns in the same batch.
pub(super) trait TxnState {
    /// Current value of `key`.
    fn get(&mut self, key: &str) -> Result<Option<KeyValue>, StoreError>;

    /// Stores `kv` as the key's current value and logs the change. `seq` orders the changes of
    /// one revision; `prev` is the value it replaces.
    fn put(&mut self, seq: u32, kv: &KeyValue, prev: Option<&KeyValue>) -> Result<(), StoreError>;

    /// Removes `prev.key` at `revision` and logs the deletion.
    fn delete(&mut self, seq: u32, revision: Revision, prev: &KeyValue) -> Result<(), StoreError>;
}

/// What applying one txn produced.
#[derive(Debug)]
pub(super) struct Applied {
    /// Answer for the caller.
    pub response: TxnResponse,
    /// Events to publish once the change is durable; empty if nothing changed.
    pub events: Vec<Event>,
}

/// Checks the limits a txn must respect before it reaches a backend, so a bad txn is rejected
/// without touching the store (and never fails a whole group-commit batch).
pub(super) fn validate(txn: &Txn) -> Result<(), StoreError> {
    check_count("compares", txn.compare.len())?;
    check_count("success ops", txn.success.len())?;
    check_count("failure ops", txn.failure.len())?;
    for compare in &txn.compare {
        check_key(compare.key())?;
    }
    for branch in [&txn.success, &txn.failure] {
        let mut seen = HashSet::with_capacity(branch.len());
        for op in branch {
            check_key(op.key())?;
            if !seen.insert(op.key()) {
                return Err(StoreError::DuplicateKey {
                    key: op.key().to_owned(),
                });
            }
            if let Op::Put { key, value } = op {
                if value.len() > MAX_VALUE_BYTES {
                    return Err(StoreError::ValueTooLarge {
                        key: key.clone(),
                        size: value.len(),
                        max: MAX_VALUE_BYTES,
                    });
                }
            }
        }
    }
    Ok(())
}

/// Checks that a read or watch revision is not negative.
pub(super) fn check_revision(revision: Revision) -> Result<(), StoreError> {
    if revision < 0 {
        return Err(StoreError::InvalidRevision { revision });
    }
    Ok(())
}

fn check_count(what: &'static str, count: usize) -> Result<(), StoreError> {
    if count > MAX_TXN_OPS {
        return Err(StoreError::TooManyOps {
            what,
            count,
            max: MAX_TXN_OPS,
        });
    }
    Ok(())
}

fn check_key(key: &str) -> Result<(), StoreError> {
    if key.is_empty() {
        return Err(StoreError::EmptyKey);
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(StoreError::KeyTooLong {
            len: key.len(),
            max: MAX_KEY_BYTES,
        });
    }
    Ok(())
}

fn holds(compare: &Compare, current: Option<&KeyValue>) -> bool {
    match compare {
        Compare::ModRevision { equals, .. } => current.map_or(0, |kv| kv.mod_revision) == *equals,
        Compare::Exists { .. } => current.is_some(),
        Compare::Absent { .. } => current.is_none(),
    }
}

/// Applies a validated `txn` to `state`, whose revision is `revision`. All changes get revision
/// `revision + 1`; the returned response says whether that revision was used.
pub(super) fn apply<S: TxnState>(
    state: &mut S,
    revision: Revision,
    txn: &Txn,
) -> Result<Applied, StoreError> {
    let current = txn
        .compare
        .iter()
        .map(|compare| state.get(compare.key()))
        .collect::<Result<Vec<_>, _>>()?;
    let succeeded = txn
        .compare
        .iter()
        .zip(&current)
        .all(|(compare, kv)| holds(compare, kv.as_ref()));
    let ops = if succeeded {
        &txn.success
    } else {
        &txn.failure
    };

    let next = revision + 1;
    let mut prev_kvs = Vec::with_capacity(ops.len());
    let mut events = Vec::new();
    let mut seq = 0u32;
    for op in ops {
        let prev = state.get(op.key())?;
        match op {
            Op::Put { key, value } => {
                let kv = KeyValue {
                    key: key.clone(),
                    value: value.clone(),
                    create_revision: prev.as_ref().map_or(next, |p| p.create_revision),
                    mod_revision: next,
                    version: prev.as_ref().map_or(1, |p| p.version + 1),
                };
                state.put(seq, &kv, prev.as_ref())?;
                seq += 1;
                events.push(Event {
                    kind: EventKind::Put,
                    kv,
                    prev_kv: prev.clone(),
                });
            }
            Op::Delete { key } => {
                if let Some(prev) = &prev {
                    state.delete(seq, next, prev)?;
                    seq += 1;
                    events.push(Event {
                        kind: EventKind::Delete,
                        kv: tombstone(key, next),
                        prev_kv: Some(prev.clone()),
                    });
                }
            }
        }
        prev_kvs.push(prev);
    }
    let revision = if events.is_empty() { revision } else { next };
    Ok(Applied {
        response: TxnResponse {
            succeeded,
            revision,
            prev_kvs,
            current,
        },
        events,
    })
}

/// The `kv` of a delete event.
pub(super) fn tombstone(key: &str, revision: Revision) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Bytes::new(),
        create_revision: 0,
        mod_revision: revision,
        version: 0,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    /// Bare current-state map; history is checked by the backends' own tests.
    #[derive(Default)]
    struct Map(BTreeMap<String, KeyValue>);

    impl TxnState for Map {
        fn get(&mut self, key: &str) -> Result<Option<KeyValue>, StoreError> {
            Ok(self.0.get(key).cloned())
        }
        fn put(&mut self, _: u32, kv: &KeyValue, _: Option<&KeyValue>) -> Result<(), StoreError> {
            self.0.insert(kv.key.clone(), kv.clone());
            Ok(())
        }
        fn delete(&mut self, _: u32, _: Revision, prev: &KeyValue) -> Result<(), StoreError> {
            self.0.remove(&prev.key);
            Ok(())
        }
    }

    fn put(key: &str, value: &'static str) -> Op {
        Op::Put {
            key: key.into(),
            value: Bytes::from_static(value.as_bytes()),
        }
    }

    #[test]
    fn put_then_update_bumps_version_and_keeps_create_revision() -> Result<(), StoreError> {
        let mut map = Map::default();
        let first = apply(
            &mut map,
            4,
            &Txn {
                success: vec![put("a", "1")],
                ..Txn::default()
            },
        )?;
        assert!(first.response.succeeded);
        assert_eq!(first.response.revision, 5);
        assert_eq!(first.response.prev_kvs, vec![None]);
        let second = apply(
            &mut map,
            5,
            &Txn {
                success: vec![put("a", "2")],
                ..Txn::default()
            },
        )?;
        let kv = &second.events[0].kv;
        assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (5, 6, 2));
        assert_eq!(
            second.events[0].prev_kv.as_ref().map(|p| p.version),
            Some(1)
        );
        Ok(())
    }

    #[test]
    fn failed_compare_runs_failure_branch_and_reports_current() -> Result<(), StoreError> {
        let mut map = Map::default();
        apply(
            &mut map,
            0,
            &Txn {
                success: vec![put("a", "1")],
                ..Txn::default()
            },
        )?;
        let txn = Txn {
            compare: vec![
                Compare::ModRevision {
                    key: "a".into(),
                    equals: 7,
                },
                Compare::Absent { key: "b".into() },
            ],
            success: vec![put("a", "2")],
            failure: vec![put("c", "3")],
        };
        let applied = apply(&mut map, 1, &txn)?;
        assert!(!applied.response.succeeded);
        assert_eq!(
            applied.response.current[0]
                .as_ref()
                .map(|kv| kv.mod_revision),
            Some(1)
        );
        assert_eq!(applied.response.current[1], None);
        assert_eq!(
            map.0.get("a").map(|kv| kv.value.clone()),
            Some(Bytes::from_static(b"1"))
        );
        assert!(map.0.contains_key("c"));
        Ok(())
    }

    #[test]
    fn mod_revision_zero_means_absent() -> Result<(), StoreError> {
        let mut map = Map::default();
        let create = Txn {
            compare: vec![Compare::ModRevision {
                key: "a".into(),
                equals: 0,
            }],
            success: vec![put("a", "1")],
            failure: vec![],
        };
        assert!(apply(&mut map, 0, &create)?.response.succeeded);
        let again = apply(&mut map, 1, &create)?;
        assert!(!again.response.succeeded);
        assert_eq!(
            again.response.revision, 1,
            "a txn that changes nothing keeps the revision"
        );
        assert!(again.events.is_empty());
        Ok(())
    }

    #[test]
    fn delete_of_absent_key_changes_nothing() -> Result<(), StoreError> {
        let mut map = Map::default();
        let txn = Txn {
            success: vec![Op::Delete { key: "gone".into() }],
            ..Txn::default()
        };
        let applied = apply(&mut map, 3, &txn)?;
        assert_eq!(applied.response.revision, 3);
        assert_eq!(applied.response.prev_kvs, vec![None]);
        assert!(applied.events.is_empty());
        Ok(())
    }

    #[test]
    fn delete_event_is_a_tombstone_with_the_last_state() -> Result<(), StoreError> {
        let mut map = Map::default();
        apply(
            &mut map,
            0,
            &Txn {
                success: vec![put("a", "1")],
                ..Txn::default()
            },
        )?;
        let txn = Txn {
            success: vec![Op::Delete { key: "a".into() }],
            ..Txn::default()
        };
        let applied = apply(&mut map, 1, &txn)?;
        let event = &applied.events[0];
        assert_eq!(event.kind, EventKind::Delete);
        assert_eq!(event.kv, tombstone("a", 2));
        assert_eq!(
            event.prev_kv.as_ref().map(|kv| kv.value.clone()),
            Some(Bytes::from("1"))
        );
        assert!(map.0.is_empty());
        Ok(())
    }

    #[test]
    fn validate_rejects_bad_txns() {
        let dup = Txn {
            success: vec![put("a", "1"), Op::Delete { key: "a".into() }],
            ..Txn::default()
        };
        assert!(matches!(validate(&dup), Err(StoreError::DuplicateKey { key }) if key == "a"));
        let empty = Txn {
            compare: vec![Compare::Exists { key: String::new() }],
            ..Txn::default()
        };
        assert!(matches!(validate(&empty), Err(StoreError::EmptyKey)));
        let long = Txn {
            success: vec![put(&"k".repeat(MAX_KEY_BYTES + 1), "v")],
            ..Txn::default()
        };
        assert!(matches!(
            validate(&long),
            Err(StoreError::KeyTooLong { .. })
        ));
        let big = Txn {
            success: vec![Op::Put {
                key: "a".into(),
                value: Bytes::from(vec![0; MAX_VALUE_BYTES + 1]),
            }],
            ..Txn::default()
        };
        assert!(matches!(
            validate(&big),
            Err(StoreError::ValueTooLarge { .. })
        ));
        let many = Txn {
            failure: (0..=MAX_TXN_OPS)
                .map(|i| Op::Delete {
                    key: format!("k{i}"),
                })
                .collect(),
            ..Txn::default()
        };
        assert!(matches!(
            validate(&many),
            Err(StoreError::TooManyOps {
                what: "failure ops",
                ..
            })
        ));
        let same_key_both_branches = Txn {
            success: vec![put("a", "1")],
            failure: vec![put("a", "2")],
            ..Txn::default()
        };
        assert!(validate(&same_key_both_branches).is_ok());
        assert!(matches!(
            check_revision(-1),
            Err(StoreError::InvalidRevision { revision: -1 })
        ));
    }
}
