//! Namespaces: the four that always exist, and the cleaner that empties a namespace being
//! deleted and then removes it (what Kubernetes' namespace controller does with the
//! "kubernetes" finalizer).

use std::sync::Arc;

use serde_json::{json, Value};

use super::delete::DeleteOptions;
use super::objects::{self, meta_str};
use super::resources::{lookup, RESOURCES};
use super::status::ApiError;
use super::write::store_error;
use super::ApiServer;
use crate::store::{Compare, Op, Txn};

/// Namespaces present from the first start.
pub const SYSTEM_NAMESPACES: &[&str] =
    &["default", "kube-system", "kube-public", "kube-node-lease"];

impl ApiServer {
    /// Creates the system namespaces that are missing. Safe to run on every start.
    pub async fn ensure_system_namespaces(&self) -> Result<(), ApiError> {
        let Some(namespaces) = lookup("", "v1", "namespaces") else {
            return Err(ApiError::internal("namespaces are not registered"));
        };
        for name in SYSTEM_NAMESPACES {
            let ns = json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": name, "labels": { "kubernetes.io/metadata.name": name } } });
            self.create_if_absent(namespaces, ns).await?;
        }
        Ok(())
    }

    pub(super) fn wake_namespace_cleaner(&self) {
        self.namespace_work.notify_one();
    }

    /// Runs until shutdown: whenever a namespace is Terminating, deletes what it holds and then
    /// the namespace itself. Woken by deletes of namespaces and by changes inside terminating
    /// ones; idle otherwise.
    pub async fn run_namespace_cleaner(self: Arc<Self>) {
        let mut changes = self
            .cache
            .watch(
                "/registry/",
                crate::watch_cache::WatchStart::After(i64::MAX),
            )
            .ok()
            .map(|w| w.live);
        loop {
            let pending = match self.clean_terminating_namespaces().await {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(error = %e, "namespace cleanup failed; will retry");
                    true
                }
            };
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = self.namespace_work.notified() => {}
                _ = async {
                    match changes.as_mut() {
                        Some(rx) if pending => { let _ = rx.recv().await; }
                        _ => std::future::pending::<()>().await,
                    }
                } => {}
            }
        }
    }

    /// One pass; returns whether some namespace is still waiting for its contents to go.
    async fn clean_terminating_namespaces(&self) -> Result<bool, ApiError> {
        let Some(namespaces) = lookup("", "v1", "namespaces") else {
            return Ok(false);
        };
        self.fresh_cache().await?;
        let (all, _) = self.cache.list(&objects::prefix(namespaces, None));
        let all: Vec<Value> = all.iter().map(|n| n.value()).collect();
        let mut pending = false;
        for ns in all
            .iter()
            .filter(|n| meta_str(n, "deletionTimestamp").is_some())
        {
            let name = meta_str(ns, "name").unwrap_or_default().to_string();
            let mut remaining = 0usize;
            for resource in RESOURCES.iter().filter(|r| r.namespaced && !r.create_only) {
                let (items, _) = self.cache.list(&objects::prefix(resource, Some(&name)));
                let items: Vec<Value> = items.iter().map(|i| i.value()).collect();
                for item in items.iter() {
                    remaining += 1;
                    if meta_str(item, "deletionTimestamp").is_some() {
                        continue;
                    }
                    let item_name = meta_str(item, "name").unwrap_or_default();
                    let opts = DeleteOptions {
                        propagation: Some("Background".into()),
                        ..Default::default()
                    };
                    match self
                        .delete_object(resource, Some(&name), item_name, &opts, false)
                        .await
                    {
                        Ok(_) => {}
                        Err(e) if e.code == 404 => {}
                        Err(e) => return Err(e),
                    }
                }
            }
            if remaining > 0 {
                // Check again once the deletes above show up in the cache.
                let left = self.count_in_namespace(&name);
                if left > 0 {
                    pending = true;
                    continue;
                }
            }
            self.finalize_namespace(ns).await?;
        }
        Ok(pending)
    }

    fn count_in_namespace(&self, namespace: &str) -> usize {
        RESOURCES
            .iter()
            .filter(|r| r.namespaced && !r.create_only)
            .map(|r| {
                self.cache
                    .list(&objects::prefix(r, Some(namespace)))
                    .0
                    .len()
            })
            .sum()
    }

    async fn finalize_namespace(&self, ns: &Value) -> Result<(), ApiError> {
        let Some(namespaces) = lookup("", "v1", "namespaces") else {
            return Ok(());
        };
        let name = meta_str(ns, "name").unwrap_or_default();
        let key = objects::key(namespaces, None, name);
        let Some(kv) = self.store.get(&key).await.map_err(store_error)? else {
            return Ok(());
        };
        let other_finalizers = ns
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .is_some_and(|f| !f.is_empty());
        let op = if other_finalizers {
            // Someone else still holds the namespace: drop only our spec finalizer.
            let mut next = objects::from_kv(&kv)?;
            next["spec"]["finalizers"] = json!([]);
            Op::Put {
                key: key.clone(),
                value: objects::to_stored(&next)?,
            }
        } else {
            Op::Delete { key: key.clone() }
        };
        self.store
            .txn(Txn {
                compare: vec![Compare::ModRevision {
                    key,
                    equals: kv.mod_revision,
                }],
                success: vec![op],
                failure: vec![],
            })
            .await
            .map_err(store_error)?;
        Ok(())
    }
}
