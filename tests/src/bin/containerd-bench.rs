//! containerd benchmark, side by side in one run on one private containerd:
//! - container pod start through Bramble (pod created through the API -> container started,
//!   image cached, pod network set up) against bare `ctr run -d` of the same image and command;
//! - Wasm pod start through containerd and Bramble's shim (RuntimeClass `wasm-shim`) against
//!   Wasm in the agent's own process (RuntimeClass `wasm`), the same module;
//! - memory per running Wasm pod under the shim (shim processes' PSS and RSS, plus the
//!   agent's growth) against in-process (the agent's growth).
//!
//! Starts a real `bramble server`, a real containerd and a real `bramble-node` with it (release
//! builds) through the test harness. Run: `cargo build --release --workspace --bins &&
//! BRAMBLE_IMAGES_DIR=target/images target/release/containerd-bench`

use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use bramble_tests::containerd::{Containerd, PodNetworkOnHost};
use bramble_tests::memory::rss_pss_kib;
use bramble_tests::node::{images_dir, Node};
use bramble_tests::pod_starts::{started, time_starts};
use bramble_tests::stats::{ms, percentile};
use bramble_tests::{kube_client, Cluster};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde_json::json;

/// Timed starts per figure (after the warm-up ones).
const STARTS: usize = 20;
const WARMUP: usize = 2;
/// Running Wasm pods per runtime for the memory figure.
const RUNNING: usize = 20;
const BARE_NAMESPACE: &str = "bench-bare";
/// The command both container figures run.
const SLEEP: [&str; 3] = ["/bin/busybox", "sleep", "3600"];

fn container_pod(name: &str, image: &str) -> Result<Pod> {
    Ok(serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"bench": "containers"}},
        "spec": {
            "nodeName": "bench-node",
            "terminationGracePeriodSeconds": 0,
            "containers": [{"name": "c", "image": image, "command": SLEEP}]
        }
    }))?)
}

fn wasm_pod(name: &str, image: &str, class: &str) -> Result<Pod> {
    Ok(serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"bench": class}},
        "spec": {
            "nodeName": "bench-node",
            "runtimeClassName": class,
            "terminationGracePeriodSeconds": 0,
            "containers": [{"name": "c", "image": image,
                            "env": [{"name": "TICK_INTERVAL_MS", "value": "3600000"}]}]
        }
    }))?)
}

/// `ctr run -d` of the busybox image, each timed as a whole command; cleaned up after.
fn bare_ctr_runs(containerd: &Containerd) -> Result<Vec<Duration>> {
    let tar = images_dir()?.join("busybox.tar");
    let imported = containerd.ctr_ok(&[
        "-n",
        BARE_NAMESPACE,
        "images",
        "import",
        "--all-platforms",
        &tar.to_string_lossy(),
    ])?;
    let image = containerd
        .list(BARE_NAMESPACE, "images")?
        .into_iter()
        .next()
        .with_context(|| format!("ctr images import imported nothing: {imported}"))?;
    let mut runs = Vec::new();
    for i in 0..WARMUP + STARTS {
        let id = format!("bare-{i}");
        let mut args = vec!["-n", BARE_NAMESPACE, "run", "-d", &image, &id];
        args.extend(SLEEP);
        let t = Instant::now();
        let out = containerd.ctr(&args)?;
        let took = t.elapsed();
        ensure!(
            out.status.success(),
            "ctr run failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        if i >= WARMUP {
            runs.push(took);
        }
        containerd.ctr_ok(&["-n", BARE_NAMESPACE, "tasks", "kill", "-s", "SIGKILL", &id])?;
        // The task may take a moment to be reaped before it can be deleted.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !containerd
            .ctr(&["-n", BARE_NAMESPACE, "tasks", "delete", &id])?
            .status
            .success()
        {
            ensure!(Instant::now() < deadline, "task {id} was not deleted");
            std::thread::sleep(Duration::from_millis(20));
        }
        containerd.ctr_ok(&["-n", BARE_NAMESPACE, "containers", "delete", &id])?;
    }
    runs.sort();
    Ok(runs)
}

/// Sum of RSS and PSS (KiB) over the shims of `containerd`.
fn shims_rss_pss(containerd: &Containerd) -> (usize, u64, u64) {
    let pids = containerd.shim_pids();
    let (mut rss, mut pss) = (0, 0);
    for pid in &pids {
        if let Ok((r, p)) = rss_pss_kib(*pid) {
            rss += r;
            pss += p;
        }
    }
    (pids.len(), rss, pss)
}

/// Starts `RUNNING` ticker pods of `class` and waits until all have started.
async fn run_tickers(pods: &Api<Pod>, image: &str, class: &str) -> Result<()> {
    for i in 0..RUNNING {
        pods.create(
            &PostParams::default(),
            &wasm_pod(&format!("{class}-ticker-{i}"), image, class)?,
        )
        .await?;
    }
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let list = pods
            .list(&ListParams::default().labels(&format!("bench={class}")))
            .await?;
        let running = list.items.iter().filter(|p| started(p)).count();
        if running == RUNNING {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "only {running} of {RUNNING} {class} pods started"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn delete_all(pods: &Api<Pod>, label: &str) -> Result<()> {
    pods.delete_collection(
        &DeleteParams::default().grace_period(0),
        &ListParams::default().labels(label),
    )
    .await?;
    let deadline = Instant::now() + Duration::from_secs(120);
    while !pods
        .list(&ListParams::default().labels(label))
        .await?
        .items
        .is_empty()
    {
        ensure!(Instant::now() < deadline, "pods {label} were not deleted");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Ok(())
}

fn main() -> Result<()> {
    let containerd = Containerd::start()?;
    let cluster = Cluster::start()?;
    let token = cluster.bramble_ok(&["token", "create"])?;
    let network = PodNetworkOnHost::new("10.66.0.0/16", "brbench0");
    let args = network.node_args(&containerd);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let node = Node::join_with(&cluster, "bench-node", token.trim(), &args)?;
    let node_pid = node.pid().context("no node pid")?;
    let busybox = cluster.push_oci_sample("busybox")?;
    let ticker = cluster.push_sample("ticker")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let result = runtime.block_on(async {
        let client = kube_client::client(&cluster).await?;
        let pods: Api<Pod> = Api::namespaced(client, "default");

        let bramble_containers = time_starts(&pods, "box", WARMUP, STARTS, |name| {
            container_pod(name, &busybox)
        })
        .await?;
        let bare = bare_ctr_runs(&containerd)?;
        let in_process = time_starts(&pods, "wasm", WARMUP, STARTS, |name| {
            wasm_pod(name, &ticker, "wasm")
        })
        .await?;
        let shim = time_starts(&pods, "shim", WARMUP, STARTS, |name| {
            wasm_pod(name, &ticker, "wasm-shim")
        })
        .await?;
        tokio::time::sleep(Duration::from_secs(3)).await;

        let (agent_before, _) = rss_pss_kib(node_pid)?;
        run_tickers(&pods, &ticker, "wasm").await?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let (agent_in_process, _) = rss_pss_kib(node_pid)?;
        delete_all(&pods, "bench=wasm").await?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let (agent_between, _) = rss_pss_kib(node_pid)?;
        let (shims_idle, _, _) = shims_rss_pss(&containerd);
        run_tickers(&pods, &ticker, "wasm-shim").await?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let (agent_shim, _) = rss_pss_kib(node_pid)?;
        let (shim_count, shim_rss, shim_pss) = shims_rss_pss(&containerd);
        delete_all(&pods, "bench=wasm-shim").await?;

        let per_pod = |kib: u64| kib as f64 / RUNNING as f64;
        println!("| figure | Bramble | baseline (same run) |");
        println!("|---|---|---|");
        println!(
            "| container pod start, create -> container started, busybox cached ({STARTS} pods, sequential) | p50 {} ms, p99 {} ms | bare `ctr run -d` of the same image and command: p50 {} ms, p99 {} ms (ratio of medians {:.2}) |",
            ms(percentile(&bramble_containers, 0.5)),
            ms(percentile(&bramble_containers, 0.99)),
            ms(percentile(&bare, 0.5)),
            ms(percentile(&bare, 0.99)),
            percentile(&bramble_containers, 0.5).as_secs_f64()
                / percentile(&bare, 0.5).as_secs_f64().max(1e-9)
        );
        println!(
            "| Wasm pod start through containerd + containerd-shim-bramble-v1, ticker cached ({STARTS} pods) | p50 {} ms, p99 {} ms | in the agent's process: p50 {} ms, p99 {} ms |",
            ms(percentile(&shim, 0.5)),
            ms(percentile(&shim, 0.99)),
            ms(percentile(&in_process, 0.5)),
            ms(percentile(&in_process, 0.99))
        );
        println!(
            "| memory per running Wasm pod under the shim ({RUNNING} ticker pods, {shim_count} shim processes; {shims_idle} before) | shims PSS {:.0} KiB (RSS {:.0} KiB) + agent {:.0} KiB per pod | in the agent's process: {:.0} KiB per pod (agent RSS growth) |",
            per_pod(shim_pss),
            per_pod(shim_rss),
            per_pod(agent_shim.saturating_sub(agent_between)),
            per_pod(agent_in_process.saturating_sub(agent_before))
        );
        anyhow::Ok(())
    });
    drop(node);
    drop(network);
    result
}
