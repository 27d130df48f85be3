//! The shape every controller has (kube-runtime's): a `reconcile(key, ctx) -> Action` that
//! drives one object towards what it asks for, idempotent and safe to repeat after a crash, and
//! a mapping from changes of the objects it watches to the keys to reconcile.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;

use super::context::{ControllerError, Ctx, TypeRef};

/// The object a reconcile is about: namespace (None when cluster-scoped) and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    /// The namespace, None for cluster-scoped kinds.
    pub namespace: Option<String>,
    /// The name.
    pub name: String,
}

impl Key {
    /// The key of `name` in `namespace`.
    pub fn new(namespace: Option<&str>, name: &str) -> Key {
        Key {
            namespace: namespace.map(str::to_string),
            name: name.to_string(),
        }
    }
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{ns}/{}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// What to do after a successful reconcile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Nothing until something it watches changes.
    Done,
    /// Look again after this long even if nothing changes (deadlines, progress checks).
    RequeueAfter(Duration),
}

/// The owner reference marked as controller: kind and name (the owner shares the namespace).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControllerRef {
    /// The owner's kind.
    pub kind: String,
    /// The owner's name.
    pub name: String,
}

/// A change of a watched object, as much of it as mapping to keys needs.
#[derive(Debug, Clone)]
pub struct WatchedChange {
    /// The changed object's kind.
    pub kind: TypeRef,
    /// Its namespace.
    pub namespace: Option<String>,
    /// Its name.
    pub name: String,
    /// Its labels now (its last labels when deleted).
    pub labels: BTreeMap<String, String>,
    /// Its labels before the change, when it existed.
    pub previous_labels: Option<BTreeMap<String, String>>,
    /// Its controller now.
    pub controller: Option<ControllerRef>,
    /// Its controller before the change.
    pub previous_controller: Option<ControllerRef>,
    /// spec.nodeName now (pods), to map a pod to its node.
    pub node_name: Option<String>,
    /// spec.nodeName before the change.
    pub previous_node_name: Option<String>,
    /// Whether the object is gone.
    pub deleted: bool,
}

/// A level-triggered controller.
#[async_trait]
pub trait Reconciler: Send + Sync + 'static {
    /// Its name: the field manager of its writes, the source of its Events, its log target
    /// (kube-controller-manager's names: "replicaset-controller", "deployment-controller"...).
    fn name(&self) -> &'static str;

    /// The kind whose objects are its keys.
    fn kind(&self) -> TypeRef;

    /// Other kinds whose changes may call for a reconcile (mapped by [`Self::keys_for`]).
    fn watches(&self) -> Vec<TypeRef> {
        Vec::new()
    }

    /// The keys a change calls for. By default: the object itself when it is of
    /// [`Self::kind`], else its controller (before and after) when that is of [`Self::kind`].
    fn keys_for(&self, change: &WatchedChange, _ctx: &Ctx) -> Vec<Key> {
        default_keys(self.kind(), change)
    }

    /// Drives the object `key` towards its desired state. Called again (with backoff) when it
    /// fails; must be idempotent.
    async fn reconcile(&self, key: &Key, ctx: &Ctx) -> Result<Action, ControllerError>;
}

/// The default mapping of [`Reconciler::keys_for`].
pub fn default_keys(kind: TypeRef, change: &WatchedChange) -> Vec<Key> {
    if change.kind == kind {
        return vec![Key::new(change.namespace.as_deref(), &change.name)];
    }
    let mut keys = Vec::new();
    for owner in [&change.controller, &change.previous_controller]
        .into_iter()
        .flatten()
    {
        if owner.kind == kind.kind {
            let key = Key::new(change.namespace.as_deref(), &owner.name);
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
    }
    keys
}
