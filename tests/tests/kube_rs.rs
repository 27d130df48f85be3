//! The same API flows through the `kube` Rust client (typed requests, JSON and protobuf-free).

use anyhow::{ensure, Result};
use bramble_tests::{kube_client, Cluster};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};

#[test]
fn kube_client_create_list_watch_patch_apply_delete() -> Result<()> {
    let c = Cluster::start()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let client = kube_client::client(&c).await?;
        let namespaces: Api<Namespace> = Api::all(client.clone());
        let ns: Namespace = serde_json::from_value(serde_json::json!({ "metadata": { "name": "rs" } }))?;
        namespaces.create(&PostParams::default(), &ns).await?;

        let deploys: Api<Deployment> = Api::namespaced(client.clone(), "rs");
        let d: Deployment = serde_json::from_value(serde_json::json!({
            "metadata": { "name": "web", "labels": { "app": "web" } },
            "spec": {
                "replicas": 1,
                "selector": { "matchLabels": { "app": "web" } },
                "template": { "metadata": { "labels": { "app": "web" } }, "spec": { "containers": [{ "name": "web", "image": "nginx:1.27" }] } }
            }
        }))?;
        let created = deploys.create(&PostParams::default(), &d).await?;
        let rv = created.metadata.resource_version.clone().unwrap_or_default();

        let listed = deploys.list(&ListParams::default().labels("app in (web,api)")).await?;
        ensure!(listed.items.len() == 1);
        ensure!(deploys.list(&ListParams::default().labels("app!=web")).await?.items.is_empty());

        let mut stream = deploys.watch(&WatchParams::default(), &rv).await?.boxed();
        deploys.patch("web", &PatchParams::default(), &Patch::Merge(serde_json::json!({ "spec": { "replicas": 3 } }))).await?;
        // The deployment controller modifies the object too (revision annotation, status):
        // the patch is one of the MODIFIED events that follow.
        loop {
            let event = tokio::time::timeout(std::time::Duration::from_secs(10), stream.try_next()).await??;
            match event {
                Some(WatchEvent::Modified(d)) if d.spec.as_ref().and_then(|s| s.replicas) == Some(3) => break,
                Some(WatchEvent::Modified(_)) => {}
                other => anyhow::bail!("expected MODIFIED, got {other:?}"),
            }
        }

        let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "rs");
        let applied = serde_json::json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "ssa" }, "data": { "a": "1" } });
        cms.patch("ssa", &PatchParams::apply("rs-test"), &Patch::Apply(&applied)).await?;
        let got = cms.get("ssa").await?;
        ensure!(got.data.as_ref().and_then(|d| d.get("a")).map(String::as_str) == Some("1"));
        ensure!(got.metadata.managed_fields.unwrap_or_default().iter().any(|m| m.manager.as_deref() == Some("rs-test")));

        // A stale resourceVersion is a conflict.
        let mut stale = created.clone();
        stale.metadata.managed_fields = None;
        let err = deploys.replace("web", &PostParams::default(), &stale).await.err();
        ensure!(matches!(err, Some(kube::Error::Api(ref e)) if e.code == 409), "{err:?}");

        deploys.delete("web", &DeleteParams::background()).await?;
        ensure!(deploys.get_opt("web").await?.is_none());
        anyhow::Ok(())
    })
}
