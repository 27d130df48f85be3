//! A node's desired pods: the pods bound to it, each with the ConfigMaps and Secrets it
//! references, sent as a snapshot and then as changes tagged with store revisions. A node that
//! reconnects with the revision it last applied gets only what changed since, when the watch
//! cache still holds that history; otherwise a snapshot, which the node reconciles without
//! restarting pods it already runs.

use std::collections::BTreeSet;
use std::sync::Arc;

use bramble_api::node_protocol::{
    control_message, pod_change, DesiredPod, PodChange, PodChanges, PodSnapshot,
};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::pod_router::{PodRouter, PODS_PREFIX};
use super::sessions::Session;
use crate::apiserver::objects;
use crate::apiserver::resources::lookup;
use crate::apiserver::ApiServer;
use crate::watch_cache::{CachedObject, Change, ChangeKind, WatchStart};

/// Sends `node` its desired pods until `stop` fires or its stream goes.
pub async fn feed(
    api: Arc<ApiServer>,
    router: Arc<PodRouter>,
    session: Arc<Session>,
    node: String,
    resume: u64,
    stop: CancellationToken,
) {
    // Store revisions are i64 and never negative; the wire carries them as u64.
    let mut resume = i64::try_from(resume).unwrap_or(0);
    loop {
        // Subscribed before the cache is read: a change in between arrives both ways and is
        // skipped by revision.
        let mut subscription = router.subscribe(&node);
        let (message, mut revision) = start(&api, &node, resume);
        if !session.send(message).await {
            return;
        }
        loop {
            let change = tokio::select! {
                _ = stop.cancelled() => return,
                change = subscription.changes.recv() => change,
            };
            match change {
                Some(change) if change.revision > revision => {
                    revision = change.revision;
                    if let Some(message) = change_for(&api, &node, &change) {
                        if !session.send(message).await {
                            return;
                        }
                    }
                }
                Some(_) => {}
                // Cut off (fell behind, or the router restarted): resume from where we are.
                None => {
                    resume = revision;
                    break;
                }
            }
        }
    }
}

fn wire(revision: i64) -> u64 {
    u64::try_from(revision).unwrap_or(0)
}

/// The first message for a (re)connecting node and the revision it brings the node to: the
/// changes since `resume` while the cache still holds them, else a snapshot.
fn start(api: &ApiServer, node: &str, resume: i64) -> (control_message::Kind, i64) {
    let resumable = resume > 0 && resume <= api.cache.revision();
    if resumable {
        if let Ok(watch) = api.cache.watch(PODS_PREFIX, WatchStart::After(resume)) {
            // Changes since `resume` go out one by one; the node ends up at the cache's
            // revision, or `resume` itself when nothing changed.
            let mut changes: Vec<PodChange> = Vec::new();
            for change in &watch.initial {
                if let Some(control_message::Kind::Change(c)) = change_for(api, node, change) {
                    changes.push(c);
                }
            }
            return (
                control_message::Kind::Resume(PodChanges {
                    revision: wire(watch.revision),
                    changes,
                }),
                watch.revision,
            );
        }
    }
    let (bound, revision) = api.cache.bound_to(PODS_PREFIX, node);
    let pods = bound.iter().map(|o| desired_pod(api, o)).collect();
    (
        control_message::Kind::Snapshot(PodSnapshot {
            revision: wire(revision),
            pods,
        }),
        revision,
    )
}

fn bound_to(object: &CachedObject, node: &str) -> bool {
    object.field("spec.nodeName") == Some(node)
}

/// What a change of one pod means for `node`, if anything.
fn change_for(api: &ApiServer, node: &str, change: &Change) -> Option<control_message::Kind> {
    let now = bound_to(&change.object, node);
    let before = change.previous.as_ref().is_some_and(|p| bound_to(p, node));
    let kind = match change.kind {
        ChangeKind::Deleted if now || before => {
            pod_change::Change::RemovedUid(uid_of(&change.object)?)
        }
        ChangeKind::Added | ChangeKind::Modified if now => {
            pod_change::Change::Upsert(desired_pod(api, &change.object))
        }
        _ => return None,
    };
    Some(control_message::Kind::Change(PodChange {
        revision: wire(change.revision),
        change: Some(kind),
    }))
}

fn uid_of(object: &CachedObject) -> Option<String> {
    object
        .value()
        .pointer("/metadata/uid")
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// The pod and everything of the API it needs to run, read from the cache.
pub fn desired_pod(api: &ApiServer, object: &CachedObject) -> DesiredPod {
    let pod = object.value();
    let namespace = pod
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("default");
    let (config_maps, secrets) = referenced(&pod);
    let fetch = |plural: &str, names: BTreeSet<String>| {
        let Some(resource) = lookup("", "v1", plural) else {
            return Default::default();
        };
        names
            .into_iter()
            .filter_map(|name| {
                let cached = api
                    .cache
                    .get(&objects::key(resource, Some(namespace), &name))?;
                Some((name, cached.json.to_vec()))
            })
            .collect()
    };
    DesiredPod {
        uid: pod
            .pointer("/metadata/uid")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        pod_json: object.json.to_vec(),
        config_maps: fetch("configmaps", config_maps),
        secrets: fetch("secrets", secrets),
        runtime_handler: runtime_handler(api, &pod),
    }
}

/// The handler of the pod's RuntimeClass, as the kubelet resolves it; empty when the pod
/// names none or the class is gone (the scheduler does not place a pod whose class does
/// not exist, so that is a class deleted since).
fn runtime_handler(api: &ApiServer, pod: &Value) -> String {
    let Some(class) = pod
        .pointer("/spec/runtimeClassName")
        .and_then(Value::as_str)
    else {
        return String::new();
    };
    let Some(resource) = lookup("node.k8s.io", "v1", "runtimeclasses") else {
        return String::new();
    };
    api.cache
        .get(&objects::key(resource, None, class))
        .and_then(|cached| {
            cached
                .value()
                .get("handler")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .unwrap_or_default()
}

/// Names of the ConfigMaps and Secrets a pod references in env, envFrom and volumes.
fn referenced(pod: &Value) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut config_maps = BTreeSet::new();
    let mut secrets = BTreeSet::new();
    let add = |set: &mut BTreeSet<String>, name: Option<&Value>| {
        if let Some(name) = name.and_then(Value::as_str) {
            set.insert(name.to_string());
        }
    };
    let spec = &pod["spec"];
    for list in ["containers", "initContainers"] {
        for container in spec[list].as_array().into_iter().flatten() {
            for env in container["env"].as_array().into_iter().flatten() {
                add(
                    &mut config_maps,
                    env.pointer("/valueFrom/configMapKeyRef/name"),
                );
                add(&mut secrets, env.pointer("/valueFrom/secretKeyRef/name"));
            }
            for from in container["envFrom"].as_array().into_iter().flatten() {
                add(&mut config_maps, from.pointer("/configMapRef/name"));
                add(&mut secrets, from.pointer("/secretRef/name"));
            }
        }
    }
    for volume in spec["volumes"].as_array().into_iter().flatten() {
        add(&mut config_maps, volume.pointer("/configMap/name"));
        add(&mut secrets, volume.pointer("/secret/secretName"));
    }
    (config_maps, secrets)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn references_come_from_env_env_from_and_volumes() {
        let pod = json!({"spec": {
            "containers": [{"name": "a", "env": [
                {"name": "X", "valueFrom": {"configMapKeyRef": {"name": "cm1", "key": "k"}}},
                {"name": "Y", "valueFrom": {"secretKeyRef": {"name": "s1", "key": "k"}}},
                {"name": "Z", "value": "plain"}],
                "envFrom": [{"configMapRef": {"name": "cm2"}}, {"secretRef": {"name": "s2"}}]}],
            "initContainers": [{"name": "i", "env": [
                {"name": "W", "valueFrom": {"configMapKeyRef": {"name": "cm3", "key": "k"}}}]}],
            "volumes": [{"name": "v", "configMap": {"name": "cm4"}},
                        {"name": "w", "secret": {"secretName": "s3"}},
                        {"name": "e", "emptyDir": {}}]}});
        let (cms, secrets) = referenced(&pod);
        assert_eq!(
            cms.into_iter().collect::<Vec<_>>(),
            ["cm1", "cm2", "cm3", "cm4"]
        );
        assert_eq!(secrets.into_iter().collect::<Vec<_>>(), ["s1", "s2", "s3"]);
    }
}
