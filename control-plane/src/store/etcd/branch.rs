//! One branch of a [`Txn`] as etcd ops, and its answer read back into `prev_kvs` and `current`.
//!
//! [`TxnResponse::current`](crate::store::TxnResponse) must hold the value of every compared
//! key when the txn ran, whichever branch ran. A branch learns a key's value from the `prev_kv`
//! of its own put or delete of that key, from a compare that held saying the key is absent, or
//! else from a get op placed before its writes. etcd refuses more than `--max-txn-ops` (128) ops
//! in a branch, and sub-transactions share that budget, so when the gets would not fit they are
//! left out and done right after the txn instead, at the revision just before it: the same
//! snapshot, one round trip later.

use std::collections::{HashMap, HashSet};

use etcd_client::{DeleteOptions, GetOptions, PutOptions, TxnOp, TxnOpResponse};

use super::codec::Shared;
use crate::store::{Compare, KeyValue, Op, StoreError, Txn, MAX_TXN_OPS};

/// How one branch of a [`Txn`] is sent to etcd and how its answer is read back.
#[derive(Debug)]
pub(super) struct Branch<'a> {
    /// Compared keys whose value the branch must read, in compare order, each once.
    pub reads: Vec<&'a str>,
    /// Whether the reads are ops of the branch itself; if not, they are done after the txn.
    pub inline: bool,
}

/// What a branch's answer says: the values of its reads (in [`Branch::reads`] order; empty
/// when they are not inline) and the `prev_kv` of each op.
pub(super) struct Answer {
    pub reads: Vec<Option<KeyValue>>,
    pub prev_kvs: Vec<Option<KeyValue>>,
}

impl<'a> Branch<'a> {
    /// The plan for `ops` running as the success branch (`success`) or the failure branch of
    /// `txn`.
    pub fn plan(txn: &'a Txn, ops: &'a [Op], success: bool) -> Branch<'a> {
        // Reported as the prev_kv of the branch's own put or delete.
        let mut known: HashSet<&str> = ops.iter().map(Op::key).collect();
        if success {
            // Every compare held; these say the key is absent.
            known.extend(txn.compare.iter().filter_map(|compare| match compare {
                Compare::Absent { key } | Compare::ModRevision { key, equals: 0 } => {
                    Some(key.as_str())
                }
                _ => None,
            }));
        }
        let mut reads = Vec::new();
        for compare in &txn.compare {
            if known.insert(compare.key()) {
                reads.push(compare.key());
            }
        }
        let inline = reads.len() + ops.len() <= MAX_TXN_OPS;
        Branch { reads, inline }
    }

    /// The etcd ops of the branch: its inline reads, then `ops`, each asking for `prev_kv`.
    pub fn ops(&self, shared: &Shared, ops: &[Op]) -> Vec<TxnOp> {
        let reads = self
            .reads
            .iter()
            .filter(|_| self.inline)
            .map(|key| TxnOp::get(shared.full_key(key), None));
        let writes = ops.iter().map(|op| match op {
            Op::Put { key, value } => TxnOp::put(
                shared.full_key(key),
                value.to_vec(),
                Some(PutOptions::new().with_prev_key()),
            ),
            Op::Delete { key } => TxnOp::delete(
                shared.full_key(key),
                Some(DeleteOptions::new().with_prev_key()),
            ),
        });
        reads.chain(writes).collect()
    }

    /// Reads the answers etcd gave to [`Branch::ops`].
    pub fn answer(
        &self,
        shared: &Shared,
        ops: &[Op],
        responses: Vec<TxnOpResponse>,
    ) -> Result<Answer, StoreError> {
        let malformed = || StoreError::EtcdMalformed {
            operation: "txn",
            missing: "one answer of the right kind per op",
        };
        let inline_reads = if self.inline { self.reads.len() } else { 0 };
        if responses.len() != inline_reads + ops.len() {
            return Err(malformed());
        }
        let mut responses = responses.into_iter();
        let mut reads = Vec::with_capacity(inline_reads);
        for response in responses.by_ref().take(inline_reads) {
            let TxnOpResponse::Get(mut get) = response else {
                return Err(malformed());
            };
            reads.push(first(shared, get.take_kvs())?);
        }
        let mut prev_kvs = Vec::with_capacity(ops.len());
        for (op, response) in ops.iter().zip(responses) {
            let prev = match (op, response) {
                (Op::Put { .. }, TxnOpResponse::Put(mut put)) => put.take_prev_key(),
                (Op::Delete { .. }, TxnOpResponse::Delete(mut delete)) => {
                    delete.take_prev_kvs().into_iter().next()
                }
                _ => return Err(malformed()),
            };
            prev_kvs.push(prev.map(|kv| shared.kv(kv)).transpose()?);
        }
        Ok(Answer { reads, prev_kvs })
    }

    /// Get ops reading this branch's keys at etcd revision `etcd_revision`, for reads that were
    /// not inline.
    pub fn read_back(&self, shared: &Shared, etcd_revision: i64) -> Vec<TxnOp> {
        self.reads
            .iter()
            .map(|key| {
                let options = GetOptions::new().with_revision(etcd_revision);
                TxnOp::get(shared.full_key(key), Some(options))
            })
            .collect()
    }

    /// [`TxnResponse::current`](crate::store::TxnResponse): the value of each compared key.
    pub fn current(
        &self,
        compares: &[Compare],
        ops: &[Op],
        answer: &Answer,
    ) -> Vec<Option<KeyValue>> {
        let mut values: HashMap<&str, &Option<KeyValue>> = HashMap::new();
        values.extend(self.reads.iter().copied().zip(&answer.reads));
        values.extend(ops.iter().map(Op::key).zip(&answer.prev_kvs));
        // Keys in neither were absent by a compare that held.
        compares
            .iter()
            .map(|compare| values.get(compare.key()).and_then(|kv| (*kv).clone()))
            .collect()
    }
}

/// The first key-value of a get's answer (each get names one key).
pub(super) fn first(
    shared: &Shared,
    kvs: Vec<etcd_client::KeyValue>,
) -> Result<Option<KeyValue>, StoreError> {
    kvs.into_iter().next().map(|kv| shared.kv(kv)).transpose()
}
