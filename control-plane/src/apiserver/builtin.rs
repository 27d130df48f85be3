//! Objects every Bramble cluster starts with besides its system namespaces: the RuntimeClass
//! `wasm`, since every Bramble node runs Wasm in its own process. Pods ask for it by
//! `runtimeClassName: wasm` (as the samples do) and the scheduler places them on nodes that
//! offer the handler; a user may change it, and a deleted one comes back at the next start.

use serde_json::{json, Value};

use super::resources::{lookup, Resource};
use super::status::ApiError;
use super::write::store_error;
use super::{objects, ApiServer};
use crate::store::{Compare, Op, Txn};

/// The built-in RuntimeClass name and handler.
pub const WASM_RUNTIME_CLASS: &str = "wasm";

impl ApiServer {
    /// Creates the built-in RuntimeClass if it is absent.
    pub async fn ensure_builtin_runtime_classes(&self) -> Result<(), ApiError> {
        let Some(classes) = lookup("node.k8s.io", "v1", "runtimeclasses") else {
            return Err(ApiError::internal("runtimeclasses are not registered"));
        };
        let class = json!({
            "apiVersion": "node.k8s.io/v1",
            "kind": "RuntimeClass",
            "metadata": { "name": WASM_RUNTIME_CLASS },
            "handler": WASM_RUNTIME_CLASS,
        });
        self.create_if_absent(classes, class).await
    }

    /// Stores `object` (cluster-scoped, named) unless an object of that name exists: the
    /// objects every cluster starts with, safe to run on every start.
    pub(super) async fn create_if_absent(
        &self,
        resource: &'static Resource,
        mut object: Value,
    ) -> Result<(), ApiError> {
        let name = objects::meta_str(&object, "name")
            .unwrap_or_default()
            .to_string();
        let key = objects::key(resource, None, &name);
        objects::prepare_create(resource, &mut object)?;
        let checked = objects::check(resource, object, objects::FieldValidation::Strict)?;
        let txn = Txn {
            compare: vec![Compare::Absent { key: key.clone() }],
            success: vec![Op::Put {
                key,
                value: objects::to_stored(&checked.object)?,
            }],
            failure: vec![],
        };
        self.store.txn(txn).await.map_err(store_error)?;
        Ok(())
    }
}
