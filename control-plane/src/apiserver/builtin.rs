//! Objects every Bramble cluster starts with besides its system namespaces: one RuntimeClass
//! per runtime a Bramble node can offer. `wasm`: Wasm in the agent's own process, offered by
//! every node. `runc`: containers through containerd and runc, offered by nodes started with
//! `--containerd-socket`. `wasm-shim`: Wasm through containerd and Bramble's shim
//! (`containerd-shim-bramble-v1`), offered by nodes whose containerd has it. Pods ask for one by
//! `runtimeClassName` and the scheduler places them on nodes that offer the handler; a user may
//! change them, and a deleted one comes back at the next start.

use serde_json::{json, Value};

use super::resources::{lookup, Resource};
use super::status::ApiError;
use super::write::store_error;
use super::{objects, ApiServer};
use crate::store::{Compare, Op, Txn};

/// The built-in RuntimeClass of Wasm run in the agent (name and handler).
pub const WASM_RUNTIME_CLASS: &str = "wasm";
/// The built-in RuntimeClass of containers under containerd and runc.
pub const RUNC_RUNTIME_CLASS: &str = "runc";
/// The built-in RuntimeClass of Wasm under containerd through Bramble's shim.
pub const WASM_SHIM_RUNTIME_CLASS: &str = "wasm-shim";

impl ApiServer {
    /// Creates the built-in RuntimeClasses that are absent.
    pub async fn ensure_builtin_runtime_classes(&self) -> Result<(), ApiError> {
        let Some(classes) = lookup("node.k8s.io", "v1", "runtimeclasses") else {
            return Err(ApiError::internal("runtimeclasses are not registered"));
        };
        for name in [
            WASM_RUNTIME_CLASS,
            RUNC_RUNTIME_CLASS,
            WASM_SHIM_RUNTIME_CLASS,
        ] {
            let class = json!({
                "apiVersion": "node.k8s.io/v1",
                "kind": "RuntimeClass",
                "metadata": { "name": name },
                "handler": name,
            });
            self.create_if_absent(classes, class).await?;
        }
        Ok(())
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
