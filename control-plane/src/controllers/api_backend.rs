//! The real [`Backend`]: reads from the API server's watch cache, writes through the API
//! server's own write paths (validated, versioned, watched like any client's), Events through
//! the shared recorder. One is made per reconcile so it can tell the runner which store
//! revision the cache must reach before that key's next reconcile (read-your-writes).

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use k8s_openapi::chrono::{DateTime, Utc};
use serde_json::Value;

use super::context::{Backend, ControllerError, Delete, EventRecord, Propagation, TypeRef};
use crate::apiserver::delete::DeleteOptions;
use crate::apiserver::objects;
use crate::apiserver::resources::{by_kind, Resource};
use crate::apiserver::status::ApiError;
use crate::apiserver::ApiServer;

/// The API server as a reconcile sees it.
pub struct ApiBackend {
    api: Arc<ApiServer>,
    /// The store revision after this backend's last write (0 = wrote nothing).
    written: AtomicI64,
}

impl ApiBackend {
    /// A backend over `api`, recording Events through its recorder.
    pub fn new(api: Arc<ApiServer>) -> ApiBackend {
        ApiBackend {
            api,
            written: AtomicI64::new(0),
        }
    }

    /// The store revision the cache must reach to show every write made so far.
    pub fn written(&self) -> i64 {
        self.written.load(Ordering::Relaxed)
    }

    fn wrote(&self) {
        // The store's current revision is at least our write's: waiting for it is safe and
        // costs nothing more than waiting for the exact one.
        self.written
            .fetch_max(self.api.store.current_revision(), Ordering::Relaxed);
    }
}

fn resource(kind: TypeRef) -> Option<&'static Resource> {
    by_kind(kind.api_version, kind.kind)
}

fn unserved(verb: &'static str, kind: TypeRef, name: &str) -> ControllerError {
    ControllerError::Api {
        verb,
        kind: kind.kind,
        name: name.to_string(),
        code: 404,
        reason: "NotFound".into(),
        message: format!(
            "the server does not serve {} {}",
            kind.api_version, kind.kind
        ),
    }
}

fn api_error(verb: &'static str, kind: TypeRef, name: &str, e: ApiError) -> ControllerError {
    ControllerError::Api {
        verb,
        kind: kind.kind,
        name: name.to_string(),
        code: e.code,
        reason: e.reason.to_string(),
        message: e.message,
    }
}

fn name_of(object: &Value) -> String {
    let name = objects::meta_str(object, "name").unwrap_or_default();
    match objects::meta_str(object, "namespace") {
        Some(ns) => format!("{ns}/{name}"),
        None => name.to_string(),
    }
}

#[async_trait]
impl Backend for ApiBackend {
    fn get(&self, kind: TypeRef, namespace: Option<&str>, name: &str) -> Option<Value> {
        let resource = resource(kind)?;
        self.api
            .cache
            .get(&objects::key(resource, namespace, name))
            .map(|o| o.value())
    }

    fn list(&self, kind: TypeRef, namespace: Option<&str>) -> Vec<Value> {
        let Some(resource) = resource(kind) else {
            return Vec::new();
        };
        let (objects, _) = self.api.cache.list(&objects::prefix(resource, namespace));
        objects.iter().map(|o| o.value()).collect()
    }

    fn owned(&self, kind: TypeRef, namespace: Option<&str>, owner_uid: &str) -> Vec<Value> {
        let Some(resource) = resource(kind) else {
            return Vec::new();
        };
        self.api
            .cache
            .owned_by(&objects::prefix(resource, namespace), owner_uid)
            .iter()
            .map(|o| o.value())
            .collect()
    }

    fn on_node(&self, kind: TypeRef, node: &str) -> Vec<Value> {
        let Some(resource) = resource(kind) else {
            return Vec::new();
        };
        let (objects, _) = self
            .api
            .cache
            .bound_to(&objects::prefix(resource, None), node);
        objects.iter().map(|o| o.value()).collect()
    }

    async fn create(
        &self,
        manager: &'static str,
        kind: TypeRef,
        namespace: Option<&str>,
        object: Value,
    ) -> Result<Value, ControllerError> {
        let name = name_of(&object);
        let resource = resource(kind).ok_or_else(|| unserved("create", kind, &name))?;
        let created = self
            .api
            .internal_create(resource, namespace, object, manager)
            .await
            .map_err(|e| api_error("create", kind, &name, e));
        self.wrote();
        created
    }

    async fn replace(
        &self,
        manager: &'static str,
        kind: TypeRef,
        object: Value,
        status: bool,
    ) -> Result<Value, ControllerError> {
        let verb = if status { "update status" } else { "update" };
        let full = name_of(&object);
        let resource = resource(kind).ok_or_else(|| unserved(verb, kind, &full))?;
        let namespace = objects::meta_str(&object, "namespace").map(str::to_string);
        let name = objects::meta_str(&object, "name")
            .unwrap_or_default()
            .to_string();
        // The object carries the resourceVersion it was read at, so the write is refused with
        // a Conflict if anyone changed it since.
        let mutate = |_: &Value| Ok(object.clone());
        let replaced = if status {
            self.api
                .internal_update_status(resource, namespace.as_deref(), &name, manager, mutate)
                .await
        } else {
            self.api
                .internal_update(resource, namespace.as_deref(), &name, manager, mutate)
                .await
        };
        self.wrote();
        replaced.map_err(|e| api_error(verb, kind, &full, e))
    }

    async fn delete(
        &self,
        kind: TypeRef,
        namespace: Option<&str>,
        name: &str,
        options: &Delete,
    ) -> Result<(), ControllerError> {
        let resource = resource(kind).ok_or_else(|| unserved("delete", kind, name))?;
        let opts = DeleteOptions {
            grace_period: options.grace_period,
            propagation: options.propagation.map(|p| {
                match p {
                    Propagation::Background => "Background",
                    Propagation::Foreground => "Foreground",
                    Propagation::Orphan => "Orphan",
                }
                .to_string()
            }),
            uid: options.uid.clone(),
            resource_version: None,
        };
        let deleted = self
            .api
            .delete_object(resource, namespace, name, &opts, false)
            .await;
        self.wrote();
        match deleted {
            Ok(_) => Ok(()),
            // Gone already, or replaced by a namesake (uid precondition): nothing to delete.
            Err(e) if e.code == 404 => Ok(()),
            Err(e) if e.code == 409 && e.message.contains("Precondition failed: UID") => Ok(()),
            Err(e) => Err(api_error("delete", kind, name, e)),
        }
    }

    fn record(&self, event: EventRecord) {
        self.api.events.record(event);
    }

    fn now(&self) -> DateTime<Utc> {
        now()
    }
}

/// The wall clock as chrono time.
pub fn now() -> DateTime<Utc> {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    DateTime::from_timestamp(
        i64::try_from(since.as_secs()).unwrap_or(i64::MAX),
        since.subsec_nanos(),
    )
    .unwrap_or_default()
}
