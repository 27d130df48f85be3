//! What a reconcile sees and does: typed reads of the cluster as the watch cache holds it,
//! writes through the API server's own paths, Events, and the clock. Everything goes through
//! the narrow [`Backend`] trait, so reconcilers are unit-tested against a recording fake and a
//! fake clock (see `fake.rs`) and run for real against the API server (see `api_backend.rs`).

use std::sync::Arc;

use async_trait::async_trait;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::chrono::{DateTime, Utc};
use k8s_openapi::{Metadata, Resource};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

/// An object kind a reconciler can read and write: any k8s-openapi type with ObjectMeta.
pub trait Object:
    Resource + Metadata<Ty = ObjectMeta> + Serialize + DeserializeOwned + Clone + Send + Sync
{
}

impl<T> Object for T where
    T: Resource + Metadata<Ty = ObjectMeta> + Serialize + DeserializeOwned + Clone + Send + Sync
{
}

/// Which kind of object, as the API names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TypeRef {
    /// apiVersion, e.g. "apps/v1".
    pub api_version: &'static str,
    /// kind, e.g. "ReplicaSet".
    pub kind: &'static str,
}

impl TypeRef {
    /// The TypeRef of a k8s-openapi type.
    pub fn of<T: Resource>() -> TypeRef {
        TypeRef {
            api_version: T::API_VERSION,
            kind: T::KIND,
        }
    }
}

/// Why a reconcile step failed.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    /// The API server refused a write (or a read failed), with its status.
    #[error("{verb} {kind} {name}: {code} {reason}: {message}")]
    Api {
        /// create, update, update status or delete.
        verb: &'static str,
        /// The kind written.
        kind: &'static str,
        /// namespace/name of the object.
        name: String,
        /// HTTP status code.
        code: u16,
        /// Kubernetes StatusReason (NotFound, Conflict, AlreadyExists, Invalid, ...).
        reason: String,
        /// The server's message.
        message: String,
    },
    /// A stored object could not be read as its type.
    #[error("cannot read {kind} {name}: {message}")]
    Decode {
        /// The kind read.
        kind: &'static str,
        /// namespace/name of the object.
        name: String,
        /// What serde said.
        message: String,
    },
    /// An object could not be turned into JSON.
    #[error("cannot encode {kind}: {message}")]
    Encode {
        /// The kind written.
        kind: &'static str,
        /// What serde said.
        message: String,
    },
}

impl ControllerError {
    /// The write lost a race with another writer (stale resourceVersion); retry soon.
    pub fn is_conflict(&self) -> bool {
        matches!(self, ControllerError::Api { code: 409, reason, .. } if reason == "Conflict")
    }

    /// The object is gone.
    pub fn is_not_found(&self) -> bool {
        matches!(self, ControllerError::Api { code: 404, .. })
    }

    /// The object to create exists already.
    pub fn is_already_exists(&self) -> bool {
        matches!(self, ControllerError::Api { code: 409, reason, .. } if reason == "AlreadyExists")
    }
}

/// How a delete propagates to dependents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Propagation {
    /// Dependents are collected after the owner goes.
    Background,
    /// The owner waits until its dependents are gone.
    Foreground,
    /// Dependents lose the owner reference and stay.
    Orphan,
}

/// A delete's options.
#[derive(Debug, Clone, Default)]
pub struct Delete {
    /// Delete only if the object still has this uid.
    pub uid: Option<String>,
    /// How dependents are handled (the kind's default when `None`).
    pub propagation: Option<Propagation>,
    /// Seconds the object gets to stop (the pod's own when `None`).
    pub grace_period: Option<i64>,
}

/// Normal or Warning, as Events say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// Routine: Scheduled, SuccessfulCreate, ScalingReplicaSet...
    Normal,
    /// Something a user should look at: FailedScheduling, FailedCreate, BackoffLimitExceeded...
    Warning,
}

impl EventType {
    /// The Event's `type` field.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

/// An Event to record about an object (core/v1 Event's essentials).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRecord {
    /// The object it is about.
    pub involved: InvolvedObject,
    /// Normal or Warning.
    pub event_type: EventType,
    /// The reason, CamelCase (Scheduled, SuccessfulCreate, ...).
    pub reason: String,
    /// What happened, in the words Kubernetes uses.
    pub message: String,
    /// The component reporting it (deployment-controller, default-scheduler, ...).
    pub source: &'static str,
    /// The node it was reported from (kubelet's events), as source.host.
    pub host: Option<String>,
}

/// The object an Event is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvolvedObject {
    /// apiVersion of the object.
    pub api_version: String,
    /// kind of the object.
    pub kind: String,
    /// namespace (None for cluster-scoped objects).
    pub namespace: Option<String>,
    /// name of the object.
    pub name: String,
    /// uid of the object.
    pub uid: String,
    /// resourceVersion of the object when the event happened.
    pub resource_version: String,
    /// The part of the object it concerns, e.g. `spec.containers{app}` (kubelet's events).
    pub field_path: Option<String>,
}

impl InvolvedObject {
    /// The reference to `object`.
    pub fn of<T: Object>(object: &T) -> InvolvedObject {
        let meta = object.metadata();
        InvolvedObject {
            api_version: T::API_VERSION.to_string(),
            kind: T::KIND.to_string(),
            namespace: meta.namespace.clone(),
            name: meta.name.clone().unwrap_or_default(),
            uid: meta.uid.clone().unwrap_or_default(),
            resource_version: meta.resource_version.clone().unwrap_or_default(),
            field_path: None,
        }
    }
}

/// The JSON-level operations a reconcile needs; implemented by the API server and by the fake.
/// Reads come from the watch cache (a consistent snapshot as of the reconciler's last write).
#[async_trait]
pub trait Backend: Send + Sync {
    /// The object `name` of `kind` in `namespace`.
    fn get(&self, kind: TypeRef, namespace: Option<&str>, name: &str) -> Option<Value>;
    /// Every object of `kind` in `namespace` (all namespaces for `None`), in name order.
    fn list(&self, kind: TypeRef, namespace: Option<&str>) -> Vec<Value>;
    /// Objects of `kind` in `namespace` whose ownerReferences name `owner_uid`.
    fn owned(&self, kind: TypeRef, namespace: Option<&str>, owner_uid: &str) -> Vec<Value>;
    /// Objects of `kind` (pods) bound to `node` by spec.nodeName, from an index.
    fn on_node(&self, kind: TypeRef, node: &str) -> Vec<Value>;
    /// Creates `object` (its namespace is `namespace`); returns it as stored.
    async fn create(
        &self,
        manager: &'static str,
        kind: TypeRef,
        namespace: Option<&str>,
        object: Value,
    ) -> Result<Value, ControllerError>;
    /// Replaces the object (or only its status when `status`), failing with a conflict when
    /// its metadata.resourceVersion is not the stored one.
    async fn replace(
        &self,
        manager: &'static str,
        kind: TypeRef,
        object: Value,
        status: bool,
    ) -> Result<Value, ControllerError>;
    /// Deletes the object; an object already gone is not an error.
    async fn delete(
        &self,
        kind: TypeRef,
        namespace: Option<&str>,
        name: &str,
        options: &Delete,
    ) -> Result<(), ControllerError>;
    /// Records an Event (best effort: never fails a reconcile).
    fn record(&self, event: EventRecord);
    /// The time now.
    fn now(&self) -> DateTime<Utc>;
}

/// The context a reconcile runs in: typed access to a [`Backend`] as one named component.
#[derive(Clone)]
pub struct Ctx {
    backend: Arc<dyn Backend>,
    manager: &'static str,
}

impl Ctx {
    /// A context acting as `manager` (the field manager and the Events' source).
    pub fn new(backend: Arc<dyn Backend>, manager: &'static str) -> Ctx {
        Ctx { backend, manager }
    }

    /// The component this context acts as.
    pub fn manager(&self) -> &'static str {
        self.manager
    }

    /// The backend, for what the typed helpers do not cover.
    pub fn backend(&self) -> &dyn Backend {
        self.backend.as_ref()
    }

    /// The time now (the fake clock in tests).
    pub fn now(&self) -> DateTime<Utc> {
        self.backend.now()
    }

    /// The object `name` in `namespace`, if it exists.
    pub fn get<T: Object>(
        &self,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Option<T>, ControllerError> {
        self.backend
            .get(TypeRef::of::<T>(), namespace, name)
            .map(|v| decode::<T>(v, namespace, name))
            .transpose()
    }

    /// Every object of the kind in `namespace` (all namespaces for `None`).
    pub fn list<T: Object>(&self, namespace: Option<&str>) -> Result<Vec<T>, ControllerError> {
        self.backend
            .list(TypeRef::of::<T>(), namespace)
            .into_iter()
            .map(|v| decode_value::<T>(v))
            .collect()
    }

    /// Objects of the kind in `namespace` that name `owner_uid` in their ownerReferences
    /// (controlled or not: check [`controller_of`] to tell).
    pub fn owned<T: Object>(
        &self,
        namespace: Option<&str>,
        owner_uid: &str,
    ) -> Result<Vec<T>, ControllerError> {
        self.backend
            .owned(TypeRef::of::<T>(), namespace, owner_uid)
            .into_iter()
            .map(|v| decode_value::<T>(v))
            .collect()
    }

    /// Objects of the kind (pods) bound to `node`, in every namespace.
    pub fn on_node<T: Object>(&self, node: &str) -> Result<Vec<T>, ControllerError> {
        self.backend
            .on_node(TypeRef::of::<T>(), node)
            .into_iter()
            .map(|v| decode_value::<T>(v))
            .collect()
    }

    /// Creates `object` in `namespace`; returns it as stored (name, uid, resourceVersion set).
    pub async fn create<T: Object>(
        &self,
        namespace: Option<&str>,
        object: &T,
    ) -> Result<T, ControllerError> {
        let value = encode(object)?;
        let stored = self
            .backend
            .create(self.manager, TypeRef::of::<T>(), namespace, value)
            .await?;
        decode::<T>(stored, namespace, "")
    }

    /// Replaces `object` (spec and metadata), failing with a conflict if it changed meanwhile.
    pub async fn replace<T: Object>(&self, object: &T) -> Result<T, ControllerError> {
        self.replace_with(object, false).await
    }

    /// Replaces the status of `object`, failing with a conflict if it changed meanwhile.
    pub async fn replace_status<T: Object>(&self, object: &T) -> Result<T, ControllerError> {
        self.replace_with(object, true).await
    }

    async fn replace_with<T: Object>(
        &self,
        object: &T,
        status: bool,
    ) -> Result<T, ControllerError> {
        let value = encode(object)?;
        let stored = self
            .backend
            .replace(self.manager, TypeRef::of::<T>(), value, status)
            .await?;
        let meta = object.metadata();
        decode::<T>(
            stored,
            meta.namespace.as_deref(),
            meta.name.as_deref().unwrap_or_default(),
        )
    }

    /// Deletes the object `name`; one already gone is fine.
    pub async fn delete<T: Object>(
        &self,
        namespace: Option<&str>,
        name: &str,
        options: &Delete,
    ) -> Result<(), ControllerError> {
        self.backend
            .delete(TypeRef::of::<T>(), namespace, name, options)
            .await
    }

    /// Records an Event about `object`, from this context's component.
    pub fn event<T: Object>(
        &self,
        object: &T,
        event_type: EventType,
        reason: &str,
        message: impl Into<String>,
    ) {
        self.event_from(self.manager, object, event_type, reason, message);
    }

    /// Records an Event about `object` from another component name than the field manager
    /// (Kubernetes' node lifecycle controller writes as one name and reports as
    /// "node-controller").
    pub fn event_from<T: Object>(
        &self,
        source: &'static str,
        object: &T,
        event_type: EventType,
        reason: &str,
        message: impl Into<String>,
    ) {
        self.backend.record(EventRecord {
            involved: InvolvedObject::of(object),
            event_type,
            reason: reason.to_string(),
            message: message.into(),
            source,
            host: None,
        });
    }
}

/// The ownerReference marked `controller: true`, if any.
pub fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .iter()
        .flatten()
        .find(|r| r.controller == Some(true))
}

/// An ownerReference making `owner` the controller of a dependent (blockOwnerDeletion set, as
/// Kubernetes' controllers do, so foreground deletion waits for the dependent).
pub fn controller_ref<T: Object>(owner: &T) -> OwnerReference {
    let meta = owner.metadata();
    OwnerReference {
        api_version: T::API_VERSION.to_string(),
        kind: T::KIND.to_string(),
        name: meta.name.clone().unwrap_or_default(),
        uid: meta.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// namespace/name of an object, for messages and keys.
pub fn full_name(meta: &ObjectMeta) -> String {
    match &meta.namespace {
        Some(ns) => format!("{ns}/{}", meta.name.as_deref().unwrap_or_default()),
        None => meta.name.clone().unwrap_or_default(),
    }
}

fn encode<T: Object>(object: &T) -> Result<Value, ControllerError> {
    let mut value = serde_json::to_value(object).map_err(|e| ControllerError::Encode {
        kind: T::KIND,
        message: e.to_string(),
    })?;
    if let Some(map) = value.as_object_mut() {
        map.insert("apiVersion".into(), Value::from(T::API_VERSION));
        map.insert("kind".into(), Value::from(T::KIND));
    }
    Ok(value)
}

fn decode<T: Object>(
    value: Value,
    namespace: Option<&str>,
    name: &str,
) -> Result<T, ControllerError> {
    serde_json::from_value(value).map_err(|e| ControllerError::Decode {
        kind: T::KIND,
        name: match namespace {
            Some(ns) => format!("{ns}/{name}"),
            None => name.to_string(),
        },
        message: e.to_string(),
    })
}

fn decode_value<T: Object>(value: Value) -> Result<T, ControllerError> {
    let namespace = value
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .map(str::to_string);
    let name = value
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    decode(value, namespace.as_deref(), &name)
}
