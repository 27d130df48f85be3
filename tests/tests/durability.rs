//! What survives restarts and crashes: every acknowledged write, intact.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{ensure, Result};
use bramble_tests::{kube_client, Cluster};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams};

#[test]
fn restart_reads_everything_back() -> Result<()> {
    let mut c = Cluster::start()?;
    c.kubectl_ok(&["create", "ns", "keep"])?;
    c.kubectl_ok(&[
        "-n",
        "keep",
        "create",
        "deployment",
        "d",
        "--image=nginx:1.27",
        "--replicas=3",
    ])?;
    c.kubectl_ok(&[
        "-n",
        "keep",
        "create",
        "configmap",
        "cfg",
        "--from-literal=k=v",
    ])?;
    let before = c.get_json(&["-n", "keep", "deploy", "d"])?;
    c.restart()?;
    let after = c.get_json(&["-n", "keep", "deploy", "d"])?;
    ensure!(before == after, "before: {before}\nafter: {after}");
    ensure!(c.get_json(&["-n", "keep", "cm", "cfg"])?["data"]["k"] == "v");
    // Writes after the restart continue from the stored revision.
    c.kubectl_ok(&["-n", "keep", "label", "deploy", "d", "x=y"])?;
    let relabelled = c.get_json(&["-n", "keep", "deploy", "d"])?;
    let rv = |v: &serde_json::Value| {
        v["metadata"]["resourceVersion"]
            .as_str()
            .and_then(|s| s.parse::<i64>().ok())
            .unwrap_or(0)
    };
    ensure!(
        rv(&relabelled) > rv(&after),
        "resourceVersion went backwards after restart"
    );
    Ok(())
}

#[test]
fn kill_9_during_a_burst_of_writes_loses_no_acknowledged_write() -> Result<()> {
    let mut c = Cluster::start()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let acked: Arc<Mutex<BTreeMap<String, String>>> = Arc::default();
    let pid = c.pid();
    runtime.block_on(async {
        let client = kube_client::client(&c).await?;
        let mut writers = Vec::new();
        for w in 0..16 {
            let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
            let acked = acked.clone();
            writers.push(tokio::spawn(async move {
                for i in 0.. {
                    let name = format!("w{w}-{i}");
                    let payload = format!("{name}:{}", "x".repeat(200 + i % 50));
                    let cm: ConfigMap = serde_json::from_value(serde_json::json!({
                        "metadata": { "name": name },
                        "data": { "payload": payload },
                    }))
                    .unwrap_or_default();
                    match api.create(&PostParams::default(), &cm).await {
                        Ok(_) => {
                            if let Ok(mut map) = acked.lock() {
                                map.insert(name, payload);
                            }
                        }
                        Err(_) => break, // the server is gone
                    }
                }
            }));
        }
        tokio::time::sleep(Duration::from_millis(1500)).await;
        // SIGKILL mid-burst.
        if let Some(pid) = pid {
            std::process::Command::new("kill")
                .args(["-9", &pid.to_string()])
                .status()?;
        }
        for w in writers {
            let _ = w.await;
        }
        anyhow::Ok(())
    })?;
    c.kill9()?;
    let acked = acked.lock().map(|m| m.clone()).unwrap_or_default();
    ensure!(
        acked.len() > 50,
        "the burst should have acknowledged many writes, got {}",
        acked.len()
    );
    c.start_again()?;
    runtime.block_on(async {
        let client = kube_client::client(&c).await?;
        let api: Api<ConfigMap> = Api::namespaced(client, "default");
        let stored: BTreeMap<String, String> = api
            .list(&Default::default())
            .await?
            .items
            .into_iter()
            .filter_map(|cm| Some((cm.metadata.name?, cm.data?.get("payload")?.clone())))
            .collect();
        for (name, payload) in &acked {
            ensure!(
                stored.get(name) == Some(payload),
                "acknowledged write {name} is missing or damaged after kill -9"
            );
        }
        anyhow::Ok(())
    })?;
    Ok(())
}
