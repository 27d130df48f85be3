//! Binding pods to nodes in batches: the scheduler's one write per pod, submitted for a whole
//! batch of decisions at once so the store commits (and fsyncs) once per batch rather than once
//! per pod. What a binding changes is what pods/binding changes: spec.nodeName
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
    /// Binds every pod of `batch`; returns one result per bind, in order. Each bind is its own
    /// compare-and-swap against the revision the cache holds (one store revision per pod, so
    /// watchers see one change per pod); they are submitted together, so the store's writer
    /// commits the whole batch with one fsync. A pod that changed since the cache saw it is
    /// bound again from the store's current state.
    pub async fn bind_pods(&self, batch: &[Bind]) -> Vec<Result<(), ApiError>> {
        let resource = match pods() {
            Ok(r) => r,
            Err(e) => return batch.iter().map(|_| Err(e.clone())).collect(),
        };
        let now = objects::now_rfc3339();
        let binds = batch
            .iter()
            .map(|bind| self.bind_cached(resource, bind, &now));
        futures::future::join_all(binds).await
    }

    async fn bind_cached(
        &self,
        resource: &'static Resource,
        bind: &Bind,
        now: &str,
    ) -> Result<(), ApiError> {
        let key = objects::key(resource, Some(&bind.namespace), &bind.name);
        let Some(cached) = self.cache.get(&key) else {
            return Err(ApiError::not_found(resource, &bind.name));
        };
        let value = bound(resource, &cached.value(), bind, now)?;
        let txn = Txn {
            compare: vec![Compare::ModRevision {
                key: key.clone(),
                equals: cached.revision,
            }],
            success: vec![Op::Put { key, value }],
            failure: vec![],
        };
        if self.store.txn(txn).await.map_err(store_error)?.succeeded {
            return Ok(());
        }
        self.bind_one(resource, bind, now).await
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
