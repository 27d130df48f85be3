//! Scheduler and controller benchmark on hollow nodes (`bramble-node simulate`), one fresh
//! cluster per size:
//! - scheduler throughput: N pods are created while they cannot be placed (they ask for a
//!   RuntimeClass that does not exist yet), then the RuntimeClass is created and the time until
//!   every pod is bound gives pods/s — the scheduler's own rate, not the rate pods are created;
//! - a 1,000-replica Deployment: time from `create` to 1,000 available replicas;
//! - the control plane's RSS after each run.
//!
//! kube-scheduler's published floor for comparison: 270 pods/s at 5,000 nodes.
//!
//! Run: `cargo build --release --workspace --bins && target/release/scheduler-bench`
//! (`BRAMBLE_BENCH_SIZES=1000x10000,5000x10000,5000x30000` to choose node x pod sizes).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use bramble_tests::fleet::Fleet;
use bramble_tests::memory::rss_pss_kib;
use bramble_tests::{kube_client, Cluster};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::node::v1::RuntimeClass;
use kube::api::{Api, ListParams, PostParams, WatchEvent, WatchParams};
use serde_json::json;

const CREATE_CONCURRENCY: usize = 64;

fn pod(name: &str) -> Result<Pod> {
    Ok(serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"bench": "sched"}},
        "spec": {
            "runtimeClassName": "bench",
            "containers": [{"name": "c", "image": "example/bench:1",
                            "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]
        }
    }))?)
}

fn bound(p: &Pod) -> bool {
    p.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .is_some_and(|n| !n.is_empty())
}

struct Run {
    nodes: usize,
    pods: usize,
    pods_per_second: f64,
    seconds: f64,
    rss_mib: u64,
    /// The scheduler's own figure from its log ("scheduling burst done"), pods/s.
    logged: Option<f64>,
}

/// `line` without terminal colour sequences (the server log is written with them).
fn plain(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut in_escape = false;
    for c in line.chars() {
        match (in_escape, c) {
            (false, '\u{1b}') => in_escape = true,
            (false, c) => out.push(c),
            (true, 'm') => in_escape = false,
            (true, _) => {}
        }
    }
    out
}

/// The largest burst the scheduler logged: (pods, pods/s).
fn logged_burst(log: &str) -> Option<(u64, f64)> {
    log.lines()
        .filter(|l| l.contains("scheduling burst done"))
        .filter_map(|l| {
            let l = plain(l);
            let field = |name: &str| {
                let at = l.find(&format!(" {name}="))? + name.len() + 2;
                let rest = &l[at..];
                let end = rest
                    .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                    .unwrap_or(rest.len());
                rest[..end].parse::<f64>().ok()
            };
            Some((field("pods")? as u64, field("pods_per_second")?))
        })
        .max_by_key(|(pods, _)| *pods)
}

async fn throughput(cluster: &Cluster, nodes: usize, count: usize) -> Result<Run> {
    let client = kube_client::client(cluster).await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let created = Instant::now();
    futures::stream::iter(0..count)
        .map(|i| {
            let pods = pods.clone();
            async move {
                pods.create(&PostParams::default(), &pod(&format!("p-{i}"))?)
                    .await
                    .map(|_| ())
                    .map_err(anyhow::Error::from)
            }
        })
        .buffer_unordered(CREATE_CONCURRENCY)
        .try_collect::<Vec<_>>()
        .await?;
    eprintln!(
        "  {count} pods created in {:.1} s; all parked as unschedulable",
        created.elapsed().as_secs_f64()
    );
    // Let the scheduler park every pod (each gets its FailedScheduling event) before timing.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let list = loop {
        match pods.list(&ListParams::default().limit(1)).await {
            Err(kube::Error::Api(e)) if e.code == 503 => {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            other => break other?,
        }
    };
    let rv = list
        .metadata
        .resource_version
        .context("no resourceVersion")?;
    let mut stream = pods
        .watch(&WatchParams::default().labels("bench=sched"), &rv)
        .await?
        .boxed();
    let classes: Api<RuntimeClass> = Api::all(client.clone());
    let class: RuntimeClass =
        serde_json::from_value(json!({"metadata": {"name": "bench"}, "handler": "wasm"}))?;
    let start = Instant::now();
    classes.create(&PostParams::default(), &class).await?;
    let mut done: HashSet<String> = HashSet::new();
    let deadline = start + Duration::from_secs(600);
    while done.len() < count {
        ensure!(
            Instant::now() < deadline,
            "only {} of {count} pods bound",
            done.len()
        );
        match tokio::time::timeout(Duration::from_secs(1), stream.next()).await {
            Ok(Some(Ok(WatchEvent::Added(p) | WatchEvent::Modified(p)))) => {
                if bound(&p) {
                    done.insert(p.metadata.name.clone().unwrap_or_default());
                }
            }
            Ok(Some(Ok(WatchEvent::Deleted(_) | WatchEvent::Bookmark(_)))) => {}
            // The watch ended, failed, fell behind (an Error event) or went quiet for a second:
            // count what the server says is bound now, and watch on from there.
            _ => {
                let all = match pods
                    .list(&ListParams::default().labels("bench=sched"))
                    .await
                {
                    Ok(all) => all,
                    // 503: the server's watch cache is behind the store under the burst (it
                    // says so rather than serve a stale list); a client retries.
                    Err(kube::Error::Api(e)) if e.code == 503 => {
                        eprintln!("  list refused while the cache catches up (503); retrying");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        continue;
                    }
                    Err(e) => return Err(e.into()),
                };
                for p in all.items.iter().filter(|p| bound(p)) {
                    done.insert(p.metadata.name.clone().unwrap_or_default());
                }
                let rv = all
                    .metadata
                    .resource_version
                    .context("no resourceVersion")?;
                stream = pods
                    .watch(&WatchParams::default().labels("bench=sched"), &rv)
                    .await?
                    .boxed();
            }
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    let (rss, _) = rss_pss_kib(cluster.pid().context("no server pid")?)?;
    Ok(Run {
        nodes,
        pods: count,
        pods_per_second: count as f64 / seconds,
        seconds,
        rss_mib: rss / 1024,
        logged: logged_burst(&cluster.server_log()).map(|(_, rate)| rate),
    })
}

async fn deployment_available(cluster: &Cluster, replicas: i32) -> Result<f64> {
    let client = kube_client::client(cluster).await?;
    let deployments: Api<Deployment> = Api::namespaced(client, "default");
    let d: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "big"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "big"}},
            "template": {
                "metadata": {"labels": {"app": "big"}},
                "spec": {"containers": [{"name": "c", "image": "example/big:1",
                          "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]}
            }
        }
    }))?;
    let start = Instant::now();
    deployments.create(&PostParams::default(), &d).await?;
    loop {
        let d = deployments.get("big").await?;
        let available = d.status.and_then(|s| s.available_replicas).unwrap_or(0);
        if available >= replicas {
            return Ok(start.elapsed().as_secs_f64());
        }
        ensure!(
            start.elapsed() < Duration::from_secs(600),
            "only {available} available"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn sizes(var: &str, default: &str) -> Result<Vec<(usize, usize)>> {
    let spec = std::env::var(var).unwrap_or_else(|_| default.to_string());
    spec.split(',')
        .map(|s| {
            let (n, p) = s.split_once('x').context("sizes are NODESxPODS")?;
            Ok((n.trim().parse()?, p.trim().parse()?))
        })
        .collect()
}

fn main() -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let mut runs = Vec::new();
    for (nodes, pods) in sizes("BRAMBLE_BENCH_SIZES", "1000x10000,5000x10000,5000x30000")? {
        eprintln!("{nodes} nodes, {pods} pods:");
        let cluster = Cluster::start()?;
        let joined = Instant::now();
        let _fleet = Fleet::start(&cluster, "hollow", nodes, &["--max-pods", "110"])?;
        eprintln!(
            "  {nodes} hollow nodes joined in {:.1} s",
            joined.elapsed().as_secs_f64()
        );
        let (idle, _) = rss_pss_kib(cluster.pid().context("no server pid")?)?;
        eprintln!(
            "  control plane RSS with {nodes} idle nodes: {} MiB",
            idle / 1024
        );
        let run = runtime.block_on(throughput(&cluster, nodes, pods))?;
        eprintln!(
            "  scheduled {} pods in {:.2} s: {:.0} pods/s (scheduler's log: {:.0} pods/s); control plane RSS {} MiB",
            run.pods, run.seconds, run.pods_per_second, run.logged.unwrap_or(0.0), run.rss_mib
        );
        runs.push(run);
    }
    let (nodes, replicas) = sizes("BRAMBLE_BENCH_DEPLOYMENT", "1000x1000")?
        .first()
        .copied()
        .context("BRAMBLE_BENCH_DEPLOYMENT is NODESxREPLICAS")?;
    eprintln!("{nodes} nodes, a {replicas}-replica Deployment:");
    let cluster = Cluster::start()?;
    let _fleet = Fleet::start(&cluster, "hollow", nodes, &[])?;
    let seconds = runtime.block_on(deployment_available(&cluster, i32::try_from(replicas)?))?;
    let (rss, _) = rss_pss_kib(cluster.pid().context("no server pid")?)?;
    println!("| nodes | pods | all bound after | pods/s (client's view) | pods/s (scheduler's log) | kube-scheduler floor | control plane RSS after |");
    println!("|---|---|---|---|---|---|---|");
    for r in &runs {
        println!(
            "| {} | {} | {:.2} s | {:.0} | {:.0} | 270 pods/s (5,000 nodes) | {} MiB |",
            r.nodes,
            r.pods,
            r.seconds,
            r.pods_per_second,
            r.logged.unwrap_or(0.0),
            r.rss_mib
        );
    }
    println!();
    println!(
        "{replicas}-replica Deployment on {nodes} hollow nodes: fully available {seconds:.2} s after create; control plane RSS {} MiB",
        rss / 1024
    );
    Ok(())
}
