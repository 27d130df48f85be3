//! Binding pods to nodes in batches: the scheduler's one write per pod, made as one store
//! transaction for a whole batch of decisions so the store commits (and fsyncs) once per batch
//! rather than once per pod. What a binding changes is what pods/binding changes: spec.nodeName
//! and the PodScheduled condition.

use serde_json::{json, Value};

use super::objects::{self, meta_str};
use super::resources::{lookup, Resource};
use super::status::ApiError;
use super::write::store_error;
use super::ApiServer;
use crate::store::{Compare, Op, Txn};

/// One decision to write.
#[derive(Debug, Clone)]
pub struct Bind {
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's name.
    pub name: String,
    /// The pod's uid (a namesake created meanwhile is not bound).
    pub uid: String,
    /// The node chosen.
    pub node: String,
}

fn pods() -> Result<&'static Resource, ApiError> {
    lookup("", "v1", "pods").ok_or_else(|| ApiError::internal("the pods resource is missing"))
}

impl ApiServer {
    /// Binds every pod of `batch`; returns one result per bind, in order. The batch is written
    /// in one transaction against the revisions the cache holds; if any pod changed meanwhile,
    /// each bind is retried on its own so one conflict does not fail the rest.
    pub async fn bind_pods(&self, batch: &[Bind]) -> Vec<Result<(), ApiError>> {
        let resource = match pods() {
            Ok(r) => r,
            Err(e) => return batch.iter().map(|_| Err(e.clone())).collect(),
        };
        let now = objects::now_rfc3339();
        let mut results: Vec<Result<(), ApiError>> = Vec::with_capacity(batch.len());
        let mut txn = Txn::default();
        let mut pending = Vec::new();
        for (i, bind) in batch.iter().enumerate() {
            let key = objects::key(resource, Some(&bind.namespace), &bind.name);
            match self.cache.get(&key) {
                Some(cached) => match bound(resource, &cached.value(), bind, &now) {
                    Ok(value) => {
                        txn.compare.push(Compare::ModRevision {
                            key: key.clone(),
                            equals: cached.revision,
                        });
                        txn.success.push(Op::Put { key, value });
                        pending.push(i);
                        results.push(Ok(()));
                    }
                    Err(e) => results.push(Err(e)),
                },
                None => results.push(Err(ApiError::not_found(resource, &bind.name))),
            }
        }
        if txn.success.is_empty() {
            return results;
        }
        match self.store.txn(txn).await {
            Ok(resp) if resp.succeeded => return results,
            Ok(_) => {}
            Err(e) => {
                let e = store_error(e);
                for i in pending {
                    results[i] = Err(e.clone());
                }
                return results;
            }
        }
        // Something in the batch moved on: bind one by one from the store's current state.
        for i in pending {
            results[i] = self.bind_one(resource, &batch[i], &now).await;
        }
        results
    }

    async fn bind_one(
        &self,
        resource: &'static Resource,
        bind: &Bind,
        now: &str,
    ) -> Result<(), ApiError> {
        let key = objects::key(resource, Some(&bind.namespace), &bind.name);
        let kv = self
            .store
            .get(&key)
            .await
            .map_err(store_error)?
            .ok_or_else(|| ApiError::not_found(resource, &bind.name))?;
        let value = bound(resource, &objects::from_kv(&kv)?, bind, now)?;
        let txn = Txn {
            compare: vec![Compare::ModRevision {
                key: key.clone(),
                equals: kv.mod_revision,
            }],
            success: vec![Op::Put { key, value }],
            failure: vec![],
        };
        let resp = self.store.txn(txn).await.map_err(store_error)?;
        if resp.succeeded {
            Ok(())
        } else {
            Err(ApiError::conflict(resource, &bind.name, "the object has been modified; please apply your changes to the latest version and try again"))
        }
    }
}

/// The stored bytes of `current` bound as `bind` says, or why it cannot be.
fn bound(
    resource: &'static Resource,
    current: &Value,
    bind: &Bind,
    now: &str,
) -> Result<bytes::Bytes, ApiError> {
    if meta_str(current, "uid") != Some(bind.uid.as_str()) {
        return Err(ApiError::conflict(
            resource,
            &bind.name,
            &format!(
                "Precondition failed: UID in precondition: {}, UID in object meta: {}",
                bind.uid,
                meta_str(current, "uid").unwrap_or_default()
            ),
        ));
    }
    if meta_str(current, "deletionTimestamp").is_some() {
        return Err(ApiError::conflict(
            resource,
            &bind.name,
            "pod is being deleted",
        ));
    }
    if current
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .is_some_and(|n| !n.is_empty())
    {
        return Err(ApiError::conflict(
            resource,
            &bind.name,
            "pod is already assigned to a node",
        ));
    }
    let mut next = current.clone();
    next["spec"]["nodeName"] = json!(bind.node);
    set_scheduled(&mut next, now);
    objects::to_stored(&next)
}

/// Sets the PodScheduled condition True, as a binding does.
fn set_scheduled(pod: &mut Value, now: &str) {
    if !pod["status"].is_object() {
        pod["status"] = json!({});
    }
    let condition = json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": now});
    match pod["status"]["conditions"].as_array_mut() {
        Some(conditions) => {
            conditions.retain(|c| c["type"] != "PodScheduled");
            conditions.insert(0, condition);
        }
        None => pod["status"]["conditions"] = json!([condition]),
    }
}
