//! A recording fake of [`Backend`] with a settable clock, for unit tests of reconcilers:
//! fixtures go in with [`FakeBackend::insert`], a reconcile runs against it, and the test reads
//! what was written ([`FakeBackend::writes`]), what is stored now, and the Events recorded.
//! It keeps the API server's rules reconcilers rely on: names from generateName, uid,
//! resourceVersion bumped per write and checked on replace, generation bumped when the spec
//! changes, status replaced alone, AlreadyExists and NotFound.

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use k8s_openapi::chrono::{DateTime, Duration as ChronoDuration, TimeZone, Utc};
use serde_json::{json, Value};

use super::context::{Backend, ControllerError, Delete, EventRecord, Object, TypeRef};

/// One write a reconcile made.
#[derive(Debug, Clone, PartialEq)]
pub enum Write {
    /// A create: kind and the object as stored.
    Create(&'static str, Value),
    /// A replace of spec/metadata: kind and the object as stored.
    Replace(&'static str, Value),
    /// A status replace: kind and the object as stored.
    ReplaceStatus(&'static str, Value),
    /// A delete: kind, namespace/name.
    Delete(&'static str, String),
}

impl Write {
    /// The kind written.
    pub fn kind(&self) -> &'static str {
        match self {
            Write::Create(k, _)
            | Write::Replace(k, _)
            | Write::ReplaceStatus(k, _)
            | Write::Delete(k, _) => k,
        }
    }
}

type ObjectKey = (&'static str, &'static str, Option<String>, String);

#[derive(Default)]
struct State {
    objects: BTreeMap<ObjectKey, Value>,
    writes: Vec<Write>,
    events: Vec<EventRecord>,
    /// The options of each delete, in order (namespace/name, options).
    delete_options: Vec<(String, Delete)>,
    revision: u64,
    names: u64,
    now: Option<DateTime<Utc>>,
    /// Writes of these kinds fail with this status code (to test error paths).
    failing: BTreeMap<&'static str, u16>,
}

/// The fake. Starts at 2026-01-01T00:00:00Z.
#[derive(Default)]
pub struct FakeBackend {
    state: Mutex<State>,
}

fn key_of(kind: TypeRef, namespace: Option<&str>, name: &str) -> ObjectKey {
    (
        kind.api_version,
        kind.kind,
        namespace.map(str::to_string),
        name.to_string(),
    )
}

impl FakeBackend {
    /// An empty fake.
    pub fn new() -> FakeBackend {
        FakeBackend::default()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Stores a fixture as-is (uid and resourceVersion filled in when missing), recording no
    /// write.
    pub fn insert<T: Object>(&self, object: &T) -> T {
        let mut value = serde_json::to_value(object).expect("fixture encodes");
        value["apiVersion"] = json!(T::API_VERSION);
        value["kind"] = json!(T::KIND);
        let mut state = self.state();
        state.revision += 1;
        let rv = state.revision;
        let name = value["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let namespace = value["metadata"]["namespace"].as_str().map(str::to_string);
        if value["metadata"]["uid"].is_null() {
            value["metadata"]["uid"] = json!(format!("uid-{}-{name}", T::KIND.to_lowercase()));
        }
        value["metadata"]["resourceVersion"] = json!(rv.to_string());
        if value["metadata"]["creationTimestamp"].is_null() {
            value["metadata"]["creationTimestamp"] = json!(rfc3339(now_of(&state)));
        }
        state.objects.insert(
            key_of(TypeRef::of::<T>(), namespace.as_deref(), &name),
            value.clone(),
        );
        serde_json::from_value(value).expect("fixture decodes")
    }

    /// Removes an object as if another client deleted it, recording no write.
    pub fn remove<T: Object>(&self, namespace: Option<&str>, name: &str) {
        self.state()
            .objects
            .remove(&key_of(TypeRef::of::<T>(), namespace, name));
    }

    /// The stored object.
    pub fn get<T: Object>(&self, namespace: Option<&str>, name: &str) -> Option<T> {
        self.state()
            .objects
            .get(&key_of(TypeRef::of::<T>(), namespace, name))
            .map(|v| serde_json::from_value(v.clone()).expect("stored object decodes"))
    }

    /// Every stored object of the kind.
    pub fn all<T: Object>(&self) -> Vec<T> {
        let kind = TypeRef::of::<T>();
        self.state()
            .objects
            .iter()
            .filter(|((a, k, _, _), _)| *a == kind.api_version && *k == kind.kind)
            .map(|(_, v)| serde_json::from_value(v.clone()).expect("stored object decodes"))
            .collect()
    }

    /// The writes made so far, in order.
    pub fn writes(&self) -> Vec<Write> {
        self.state().writes.clone()
    }

    /// Forgets the writes and Events recorded so far.
    pub fn clear_writes(&self) {
        let mut state = self.state();
        state.writes.clear();
        state.events.clear();
    }

    /// The options each delete was made with, in order: (namespace/name, options).
    pub fn delete_options(&self) -> Vec<(String, Delete)> {
        self.state().delete_options.clone()
    }

    /// The Events recorded so far.
    pub fn events(&self) -> Vec<EventRecord> {
        self.state().events.clone()
    }

    /// Sets the clock.
    pub fn set_now(&self, at: DateTime<Utc>) {
        self.state().now = Some(at);
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: std::time::Duration) {
        let mut state = self.state();
        let now = now_of(&state);
        state.now = Some(now + ChronoDuration::from_std(by).unwrap_or_default());
    }

    /// Makes every write of `kind` fail with HTTP `code` (0 to stop).
    pub fn fail_writes_of(&self, kind: &'static str, code: u16) {
        let mut state = self.state();
        if code == 0 {
            state.failing.remove(kind);
        } else {
            state.failing.insert(kind, code);
        }
    }
}

fn now_of(state: &State) -> DateTime<Utc> {
    state.now.unwrap_or_else(|| {
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
            .single()
            .unwrap_or_default()
    })
}

fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(k8s_openapi::chrono::SecondsFormat::Secs, true)
}

fn api_error(
    verb: &'static str,
    kind: TypeRef,
    name: &str,
    code: u16,
    reason: &str,
) -> ControllerError {
    ControllerError::Api {
        verb,
        kind: kind.kind,
        name: name.to_string(),
        code,
        reason: reason.to_string(),
        message: format!("{reason} (fake)"),
    }
}

fn check_failing(
    state: &State,
    verb: &'static str,
    kind: TypeRef,
    name: &str,
) -> Result<(), ControllerError> {
    match state.failing.get(kind.kind) {
        Some(code) => Err(api_error(verb, kind, name, *code, "InternalError")),
        None => Ok(()),
    }
}

#[async_trait]
impl Backend for FakeBackend {
    fn get(&self, kind: TypeRef, namespace: Option<&str>, name: &str) -> Option<Value> {
        self.state()
            .objects
            .get(&key_of(kind, namespace, name))
            .cloned()
    }

    fn list(&self, kind: TypeRef, namespace: Option<&str>) -> Vec<Value> {
        self.state()
            .objects
            .iter()
            .filter(|((a, k, ns, _), _)| {
                *a == kind.api_version
                    && *k == kind.kind
                    && (namespace.is_none() || ns.as_deref() == namespace)
            })
            .map(|(_, v)| v.clone())
            .collect()
    }

    fn owned(&self, kind: TypeRef, namespace: Option<&str>, owner_uid: &str) -> Vec<Value> {
        self.list(kind, namespace)
            .into_iter()
            .filter(|v| {
                v.pointer("/metadata/ownerReferences")
                    .and_then(Value::as_array)
                    .is_some_and(|refs| refs.iter().any(|r| r["uid"] == owner_uid))
            })
            .collect()
    }

    fn on_node(&self, kind: TypeRef, node: &str) -> Vec<Value> {
        self.list(kind, None)
            .into_iter()
            .filter(|v| v.pointer("/spec/nodeName").and_then(Value::as_str) == Some(node))
            .collect()
    }

    async fn create(
        &self,
        _manager: &'static str,
        kind: TypeRef,
        namespace: Option<&str>,
        mut object: Value,
    ) -> Result<Value, ControllerError> {
        let mut state = self.state();
        let mut name = object["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if name.is_empty() {
            let Some(prefix) = object["metadata"]["generateName"].as_str() else {
                return Err(api_error("create", kind, "", 422, "Invalid"));
            };
            state.names += 1;
            name = format!("{prefix}{:05x}", state.names);
        }
        check_failing(&state, "create", kind, &name)?;
        let key = key_of(kind, namespace, &name);
        if state.objects.contains_key(&key) {
            return Err(api_error("create", kind, &name, 409, "AlreadyExists"));
        }
        state.revision += 1;
        let rv = state.revision;
        let created = rfc3339(now_of(&state));
        object["metadata"]["name"] = json!(name);
        if let Some(ns) = namespace {
            object["metadata"]["namespace"] = json!(ns);
        }
        object["metadata"]["uid"] = json!(format!("uid-{rv}"));
        object["metadata"]["resourceVersion"] = json!(rv.to_string());
        object["metadata"]["creationTimestamp"] = json!(created);
        object["metadata"]["generation"] = json!(1);
        state.objects.insert(key, object.clone());
        state.writes.push(Write::Create(kind.kind, object.clone()));
        Ok(object)
    }

    async fn replace(
        &self,
        _manager: &'static str,
        kind: TypeRef,
        mut object: Value,
        status: bool,
    ) -> Result<Value, ControllerError> {
        let name = object["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let namespace = object["metadata"]["namespace"].as_str().map(str::to_string);
        let verb = if status { "update status" } else { "update" };
        let mut state = self.state();
        check_failing(&state, verb, kind, &name)?;
        let key = key_of(kind, namespace.as_deref(), &name);
        let Some(current) = state.objects.get(&key).cloned() else {
            return Err(api_error(verb, kind, &name, 404, "NotFound"));
        };
        if object["metadata"]["resourceVersion"] != current["metadata"]["resourceVersion"] {
            return Err(api_error(verb, kind, &name, 409, "Conflict"));
        }
        if status {
            let mut next = current.clone();
            next["status"] = object["status"].clone();
            object = next;
        } else {
            // Status is not written through the main resource (it has a status subresource).
            object["status"] = current["status"].clone();
            for field in [
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "generation",
            ] {
                object["metadata"][field] = current["metadata"][field].clone();
            }
            if object["spec"] != current["spec"] {
                let generation = current["metadata"]["generation"].as_i64().unwrap_or(0);
                object["metadata"]["generation"] = json!(generation + 1);
            }
        }
        if let Some(map) = object.as_object_mut() {
            map.retain(|_, v| !v.is_null());
        }
        if let Some(meta) = object["metadata"].as_object_mut() {
            meta.retain(|_, v| !v.is_null());
        }
        if object == current {
            return Ok(current);
        }
        state.revision += 1;
        object["metadata"]["resourceVersion"] = json!(state.revision.to_string());
        state.objects.insert(key, object.clone());
        state.writes.push(if status {
            Write::ReplaceStatus(kind.kind, object.clone())
        } else {
            Write::Replace(kind.kind, object.clone())
        });
        Ok(object)
    }

    async fn delete(
        &self,
        kind: TypeRef,
        namespace: Option<&str>,
        name: &str,
        options: &Delete,
    ) -> Result<(), ControllerError> {
        let mut state = self.state();
        check_failing(&state, "delete", kind, name)?;
        let key = key_of(kind, namespace, name);
        let Some(current) = state.objects.get(&key) else {
            return Ok(());
        };
        if let Some(uid) = &options.uid {
            if current["metadata"]["uid"] != uid.as_str() {
                return Ok(());
            }
        }
        state.objects.remove(&key);
        let full = match namespace {
            Some(ns) => format!("{ns}/{name}"),
            None => name.to_string(),
        };
        state.delete_options.push((full.clone(), options.clone()));
        state.writes.push(Write::Delete(kind.kind, full));
        Ok(())
    }

    fn record(&self, event: EventRecord) {
        self.state().events.push(event);
    }

    fn now(&self) -> DateTime<Utc> {
        now_of(&self.state())
    }
}
