//! Bramble's Kubernetes-specific patch engines: strategic merge patch and server-side apply,
//! with the managedFields bookkeeping of ordinary writes. (RFC 7386 merge patch and RFC 6902
//! JSON patch come from the `json-patch` crate.)
//!
//! Everything here works on `serde_json::Value` objects and depends on nothing else in the
//! crate. [`schema`] is the type graph both engines share.

pub mod apply;
mod conflict;
pub mod fieldset;
mod managed;
mod order;
pub mod schema;
pub mod strategic;
mod typed;
pub mod update;

pub use apply::{server_side_apply, ApplyError, FieldConflict};
pub use strategic::{strategic_merge_patch, StrategicMergeError};
pub use update::record_update;
