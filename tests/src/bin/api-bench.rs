//! API server benchmark: create/get/update/list latency (p50/p99) and throughput with 1, 8 and
//! 64 concurrent clients, a list of 10,000 pods, and 100 concurrent watchers receiving a change.
//! Starts a real `bramble server` (release build) through the test harness and drives it with
//! the `kube` Rust client over HTTPS.
//!
//! Run: `cargo build --release --workspace --bins && target/release/api-bench`

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use bramble_tests::stats::{ms, percentile};
use bramble_tests::{kube_client, Cluster};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams, WatchParams};
use serde_json::json;

struct Row {
    op: &'static str,
    clients: usize,
    ops: usize,
    secs: f64,
    p50: Duration,
    p99: Duration,
}

async fn run_op(
    client: kube::Client,
    op: &'static str,
    clients: usize,
    per_client: usize,
) -> Result<Row> {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let api: Api<ConfigMap> = Api::namespaced(client.clone(), "bench");
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(per_client);
            for i in 0..per_client {
                let name = format!("cm-{clients}-{c}-{i}");
                let t = Instant::now();
                match op {
                    "create" => {
                        let cm: ConfigMap = serde_json::from_value(json!({"metadata":{"name":name,"labels":{"bench":"yes"}},"data":{"k":"v"}}))?;
                        api.create(&PostParams::default(), &cm).await?;
                    }
                    "get" => {
                        api.get(&name).await?;
                    }
                    "update" => {
                        api.patch(&name, &PatchParams::default(), &Patch::Merge(json!({"data":{"k":format!("v{i}")}}))).await?;
                    }
                    _ => {
                        api.list(&ListParams::default().labels("bench=yes").limit(50)).await?;
                    }
                }
                lat.push(t.elapsed());
            }
            anyhow::Ok(lat)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    let secs = started.elapsed().as_secs_f64();
    all.sort();
    Ok(Row {
        op,
        clients,
        ops: all.len(),
        secs,
        p50: percentile(&all, 0.5),
        p99: percentile(&all, 0.99),
    })
}

fn main() -> Result<()> {
    let cluster = Cluster::start()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let client = kube_client::client(&cluster).await?;
        cluster.kubectl_ok(&["create", "ns", "bench"])?;
        println!("| operation | clients | ops | ops/s | p50 ms | p99 ms |");
        println!("|---|---|---|---|---|---|");
        for clients in [1usize, 8, 64] {
            let per_client = (1600 / clients).max(25);
            for op in ["create", "get", "update", "list"] {
                let r = run_op(client.clone(), op, clients, per_client).await?;
                println!("| {} | {} | {} | {:.0} | {} | {} |", r.op, r.clients, r.ops, r.ops as f64 / r.secs, ms(r.p50), ms(r.p99));
            }
        }

        // A list of 10,000 pods.
        let pods: Api<Pod> = Api::namespaced(client.clone(), "bench");
        let mut creators = Vec::new();
        for w in 0..16 {
            let pods = pods.clone();
            creators.push(tokio::spawn(async move {
                for i in (w..10_000).step_by(16) {
                    let pod: Pod = serde_json::from_value(json!({"metadata":{"name":format!("p{i}"),"labels":{"app":"bench"}},"spec":{"containers":[{"name":"c","image":"ghcr.io/bramble/hello:1"}]}}))?;
                    pods.create(&PostParams::default(), &pod).await?;
                }
                anyhow::Ok(())
            }));
        }
        for c in creators {
            c.await??;
        }
        let mut lat = Vec::new();
        for _ in 0..10 {
            let t = Instant::now();
            let list = pods.list(&ListParams::default()).await?;
            lat.push(t.elapsed());
            anyhow::ensure!(list.items.len() == 10_000, "listed {}", list.items.len());
        }
        lat.sort();
        println!("\nlist of 10,000 pods (10 runs): p50 {} ms, max {} ms", ms(percentile(&lat, 0.5)), ms(percentile(&lat, 1.0)));

        // 100 watchers, one change.
        let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "bench");
        let cm: ConfigMap = serde_json::from_value(json!({"metadata":{"name":"watched"},"data":{"k":"0"}}))?;
        let created = cms.create(&PostParams::default(), &cm).await?;
        let rv = created.metadata.resource_version.unwrap_or_default();
        let barrier = Arc::new(tokio::sync::Barrier::new(101));
        let mut watchers = Vec::new();
        for _ in 0..100 {
            let cms = cms.clone();
            let rv = rv.clone();
            let barrier = barrier.clone();
            watchers.push(tokio::spawn(async move {
                let mut stream = cms.watch(&WatchParams::default().fields("metadata.name=watched"), &rv).await?.boxed();
                barrier.wait().await;
                let _ = stream.try_next().await?;
                anyhow::Ok(Instant::now())
            }));
        }
        barrier.wait().await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let t0 = Instant::now();
        cms.patch("watched", &PatchParams::default(), &Patch::Merge(json!({"data":{"k":"1"}}))).await?;
        let mut arrivals = Vec::new();
        for w in watchers {
            arrivals.push(w.await??.saturating_duration_since(t0));
        }
        arrivals.sort();
        println!("100 watchers, one change: p50 {} ms, p99 {} ms, last {} ms after the write was sent", ms(percentile(&arrivals, 0.5)), ms(percentile(&arrivals, 0.99)), ms(percentile(&arrivals, 1.0)));
        if let Some(pid) = cluster.pid() {
            let (rss, pss) = bramble_tests::memory::rss_pss_kib(pid)?;
            println!("server RSS {rss} KiB, PSS {pss} KiB");
        }
        anyhow::Ok(())
    })
}
