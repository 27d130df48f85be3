//! Node agent benchmark, side by side in one run:
//! - Wasm pod start (pod created through the API -> its container started, module cached),
//!   p50/p99, against bare wasmtime instantiating and running the same module;
//! - agent RSS/PSS idle, with 100 and with 1,000 idle `ticker` pods, and the memory per pod
//!   derived from the two.
//!
//! Starts a real `bramble server` and a real `bramble-node` (release builds) through the test
//! harness. Run: `cargo build --release --workspace --bins && BRAMBLE_IMAGES_DIR=target/images
//! target/release/node-bench`

use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use bramble_tests::memory::rss_pss_kib;
use bramble_tests::node::{images_dir, Node};
use bramble_tests::pod_starts::{started, time_starts};
use bramble_tests::stats::{ms, percentile};
use bramble_tests::{kube_client, Cluster};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use serde_json::json;

const STARTS: usize = 100;
const WARMUP: usize = 3;
const BARE_RUNS: usize = 1000;

/// Bare wasmtime: instantiate and run `_start` of the module, output discarded; compiled once.
async fn bare_wasmtime(wasm: &[u8]) -> Result<Vec<Duration>> {
    use wasmtime::{Config, Engine, Linker, Module, Store};
    use wasmtime_wasi::p1::WasiP1Ctx;
    // wasmtime's errors are not std errors; keep their full chain as text.
    fn wt<T>(r: wasmtime::Result<T>) -> Result<T> {
        r.map_err(|e| anyhow::anyhow!("{e:#}"))
    }
    let engine = wt(Engine::new(&Config::new()))?;
    let module = wt(Module::new(&engine, wasm))?;
    let mut linker: Linker<WasiP1Ctx> = Linker::new(&engine);
    wt(wasmtime_wasi::p1::add_to_linker_async(&mut linker, |ctx| {
        ctx
    }))?;
    let pre = wt(linker.instantiate_pre(&module))?;
    let mut runs = Vec::with_capacity(BARE_RUNS);
    for _ in 0..BARE_RUNS {
        let t = Instant::now();
        let wasi = wasmtime_wasi::WasiCtxBuilder::new()
            .args(&["hello", "first", "second arg"])
            .build_p1();
        let mut store = Store::new(&engine, wasi);
        let instance = wt(pre.instantiate_async(&mut store).await)?;
        let start = wt(instance.get_typed_func::<(), ()>(&mut store, "_start"))?;
        // hello exits through proc_exit(0), which surfaces as an I32Exit error.
        let _ = start.call_async(&mut store, ()).await;
        runs.push(t.elapsed());
    }
    runs.sort();
    Ok(runs)
}

fn pod(name: &str, image: &str, node: &str, env: serde_json::Value, restart: &str) -> Result<Pod> {
    Ok(serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "nodeName": node,
            "restartPolicy": restart,
            "terminationGracePeriodSeconds": 0,
            "containers": [{"name": "c", "image": image, "env": env,
                            "resources": {"limits": {"cpu": "100m", "memory": "16Mi"}}}]
        }
    }))?)
}

/// Creates `count` idle ticker pods named from `first` and waits until all run.
async fn idle_tickers(pods: &Api<Pod>, image: &str, first: usize, count: usize) -> Result<()> {
    let env = json!([{"name": "TICK_INTERVAL_MS", "value": "3600000"}]);
    futures::stream::iter(first..first + count)
        .map(|i| {
            let pods = pods.clone();
            let p = pod(
                &format!("ticker-{i}"),
                image,
                "bench-node",
                env.clone(),
                "Always",
            );
            async move {
                pods.create(&PostParams::default(), &p?)
                    .await
                    .map(|_| ())
                    .map_err(anyhow::Error::from)
            }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<_>>()
        .await?;
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let list = pods.list(&Default::default()).await?;
        let running = list
            .items
            .iter()
            .filter(|p| {
                p.metadata
                    .name
                    .as_deref()
                    .is_some_and(|n| n.starts_with("ticker-"))
            })
            .filter(|p| started(p))
            .count();
        if running >= first + count {
            return Ok(());
        }
        eprintln!("{running} of {} ticker pods started", first + count);
        ensure!(
            Instant::now() < deadline,
            "only {running} of {} ticker pods started",
            first + count
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The ten mappings of `pid` holding the most resident memory (for profiling, on stderr).
fn print_largest_mappings(pid: u32) -> Result<()> {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps"))?;
    let mut current = String::new();
    let mut sizes: Vec<(u64, String)> = Vec::new();
    for line in smaps.lines() {
        if line.starts_with("Rss:") {
            let kib = line
                .split_whitespace()
                .nth(1)
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            sizes.push((kib, current.clone()));
        } else if line.split_whitespace().next().is_some_and(|range| {
            range.contains('-') && range.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
        }) {
            current = line.to_string();
        }
    }
    sizes.sort_by_key(|s| std::cmp::Reverse(s.0));
    let total: u64 = sizes.iter().map(|s| s.0).sum();
    eprintln!(
        "agent RSS by mapping (total {total} KiB, {} mappings):",
        sizes.len()
    );
    for (kib, mapping) in sizes.iter().take(10) {
        eprintln!("{kib:>8} KiB  {mapping}");
    }
    Ok(())
}

fn main() -> Result<()> {
    let images = images_dir()?;
    let cluster = Cluster::start()?;
    let token = cluster.bramble_ok(&["token", "create"])?;
    let node = Node::join_with(
        &cluster,
        "bench-node",
        token.trim(),
        &["--max-pods", "1200"],
    )?;
    let node_pid = node.pid().context("no node pid")?;
    let hello = cluster.push_sample("hello")?;
    let ticker = cluster.push_sample("ticker")?;
    let wasm = std::fs::read(images.join("hello.wasm"))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        std::thread::sleep(Duration::from_secs(3));
        let (idle_rss, idle_pss) = rss_pss_kib(node_pid)?;

        let client = kube_client::client(&cluster).await?;
        let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
        let starts = time_starts(&pods, "start", WARMUP, STARTS, |name| {
            pod(name, &hello, "bench-node", json!([]), "Never")
        })
        .await?;
        let bare = bare_wasmtime(&wasm).await?;
        // Let the deleted pods go before measuring memory.
        tokio::time::sleep(Duration::from_secs(3)).await;

        let (after_starts_rss, _) = rss_pss_kib(node_pid)?;
        idle_tickers(&pods, &ticker, 0, 100).await?;
        tokio::time::sleep(Duration::from_secs(3)).await;
        let (rss100, pss100) = rss_pss_kib(node_pid)?;
        if std::env::var_os("BRAMBLE_BENCH_SMAPS").is_some() {
            print_largest_mappings(node_pid)?;
        }
        idle_tickers(&pods, &ticker, 100, 900).await?;
        tokio::time::sleep(Duration::from_secs(3)).await;
        let (rss1000, pss1000) = rss_pss_kib(node_pid)?;

        println!("| figure | Bramble | baseline (same run) |");
        println!("|---|---|---|");
        println!(
            "| Wasm pod start, create -> container started, module cached ({STARTS} pods, sequential) | p50 {} ms, p99 {} ms | bare wasmtime instantiate + run of hello.wasm ({BARE_RUNS} runs): p50 {} ms, p99 {} ms |",
            ms(percentile(&starts, 0.5)),
            ms(percentile(&starts, 0.99)),
            ms(percentile(&bare, 0.5)),
            ms(percentile(&bare, 0.99))
        );
        println!("| agent idle, no pods | RSS {} MiB, PSS {} MiB | |", idle_rss / 1024, idle_pss / 1024);
        println!(
            "| agent after {} pod starts and deletions, no pods left | RSS {} MiB | |",
            STARTS + WARMUP,
            after_starts_rss / 1024
        );
        println!("| agent with 100 idle ticker pods | RSS {} MiB, PSS {} MiB | |", rss100 / 1024, pss100 / 1024);
        println!("| agent with 1,000 idle ticker pods | RSS {} MiB, PSS {} MiB | |", rss1000 / 1024, pss1000 / 1024);
        println!(
            "| memory per idle ticker pod, (RSS at 1,000 - RSS at 100) / 900 | {:.0} KiB | |",
            (rss1000.saturating_sub(rss100)) as f64 / 900.0
        );
        anyhow::Ok(())
    })?;
    drop(node);
    Ok(())
}
