//! The footprint suite: the figures a Raspberry Pi owner checks first, measured in one run on
//! this machine with release builds, each beside its target (../shared/docs/targets.md).
//!
//! - control plane RSS/PSS idle with one node, and with 10 hollow nodes and 100 pods;
//! - node agent RSS/PSS idle (the full build and the board build), with 100 and with 1,000 idle `ticker` pods (memory per pod from
//!   the two);
//! - CPU used at idle by the control plane and by the agent over 5 minutes (/proc/PID/stat);
//! - bytes the control plane writes over 10 idle minutes with 10 hollow nodes heartbeating
//!   (/proc/PID/io write_bytes) and the SQLite store's growth;
//! - Wasm pod start p50/p99 (create -> container started, module cached) beside bare wasmtime
//!   instantiating and running the same module;
//! - stripped sizes of `bramble`, `bramble-node`, `containerd-shim-bramble-v1` and the board
//!   build of the agent (no Wasm compiler, no containerd) for aarch64.
//!
//! The two idle windows run side by side (two clusters), and the pod-start and ticker phases
//! run on the first cluster once its CPU window is over, so the suite takes about 12 minutes.
//!
//! Run it with `scripts/bench-footprint.sh`, which builds everything and writes
//! `target/footprint/footprint.md` and `footprint.json`. The windows can be shortened for a
//! trial run with BRAMBLE_FOOTPRINT_CPU_SECS and BRAMBLE_FOOTPRINT_DISK_SECS.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use bramble_tests::fleet::Fleet;
use bramble_tests::memory::rss_pss_kib;
use bramble_tests::node::{images_dir, Node};
use bramble_tests::pod_starts::{started, time_starts};
use bramble_tests::stats::{ms, percentile};
use bramble_tests::{kube_client, workspace_binary, Cluster};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use serde_json::{json, Value};

const STARTS: usize = 100;
const WARMUP: usize = 3;
const BARE_RUNS: usize = 1000;
const HOLLOW_NODES: usize = 10;
const HOLLOW_PODS: usize = 100;

fn main() -> Result<()> {
    let cpu_window = seconds_from_env("BRAMBLE_FOOTPRINT_CPU_SECS", 300)?;
    let disk_window = seconds_from_env("BRAMBLE_FOOTPRINT_DISK_SECS", 600)?;
    let out_dir = PathBuf::from(
        std::env::var("BRAMBLE_FOOTPRINT_OUT").unwrap_or_else(|_| "target/footprint".into()),
    );
    let board_env = |name: &str| {
        std::env::var(name).map(PathBuf::from).with_context(|| {
            format!(
                "{name} names a board build of bramble-node (scripts/bench-footprint.sh builds it)"
            )
        })
    };
    // The board build for aarch64 (its size) and for this machine (its memory and CPU).
    let board_agent = board_env("BRAMBLE_BOARD_AGENT")?;
    let board_agent_here = board_env("BRAMBLE_BOARD_AGENT_HOST")?;
    std::fs::create_dir_all(&out_dir)?;
    let mut report = Report::default();
    report.json.insert(
        "date".into(),
        json!(command_output("date", &["-u", "+%Y-%m-%d %H:%M UTC"])?),
    );
    report.json.insert("machine".into(), json!(machine()?));

    // Binary sizes first: they need nothing running.
    for name in ["bramble", "bramble-node", "containerd-shim-bramble-v1"] {
        let size = stripped_size(&workspace_binary(name)?)?;
        report.size(&format!("{name}, x86_64, stripped"), name, size, None);
    }
    let size = stripped_size(&board_agent_here)?;
    report.size(
        "bramble-node board build (no Wasm compiler, no containerd), x86_64, stripped",
        "bramble-node-board-x86_64",
        size,
        None,
    );
    let board_size = stripped_size(&board_agent)?;
    report.size(
        "bramble-node board build (no Wasm compiler, no containerd), aarch64, stripped",
        "bramble-node-board-aarch64",
        board_size,
        Some(8),
    );

    let images = images_dir()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;

    // Cluster A: one control plane, one real node agent.
    let cluster = Cluster::start()?;
    let token = cluster.bramble_ok(&["token", "create"])?;
    let node = Node::join_with(
        &cluster,
        "bench-node",
        token.trim(),
        &["--max-pods", "1200"],
    )?;
    // What a board runs: no compiler (modules compiled by the control plane), no containerd.
    let board = Node::join_running(&board_agent_here, &cluster, "board-node", token.trim(), &[])?;
    let board_pid = board.pid().context("no board node pid")?;
    let cp_pid = cluster.pid().context("no server pid")?;
    let agent_pid = node.pid().context("no node pid")?;
    let hello = cluster.push_sample("hello")?;
    let ticker = cluster.push_sample("ticker")?;

    // Cluster B: a control plane with 10 hollow nodes running 100 pods.
    let hollow = Cluster::start()?;
    let _fleet = Fleet::start(&hollow, "hollow", HOLLOW_NODES, &[])?;
    runtime.block_on(hollow_pods_running(&hollow))?;
    let hollow_pid = hollow.pid().context("no server pid")?;

    // Everything settles: the node registered, the pods' statuses written.
    std::thread::sleep(Duration::from_secs(10));
    let (rss, pss) = rss_pss_kib(cp_pid)?;
    report.memory(
        "control plane, idle, two nodes",
        "cp_idle",
        rss,
        pss,
        Some(40),
    );
    let (rss, pss) = rss_pss_kib(agent_pid)?;
    report.memory(
        "node agent (full build), idle, no pods",
        "agent_idle",
        rss,
        pss,
        None,
    );
    let (rss, pss) = rss_pss_kib(board_pid)?;
    report.memory(
        "node agent (board build), idle, no pods",
        "board_agent_idle",
        rss,
        pss,
        Some(12),
    );
    let (rss, pss) = rss_pss_kib(hollow_pid)?;
    report.memory(
        "control plane, 10 hollow nodes, 100 pods",
        "cp_10_nodes_100_pods",
        rss,
        pss,
        None,
    );

    // The idle windows, side by side: CPU of cluster A, disk writes of cluster B.
    let disk = {
        let store = hollow.data_dir();
        std::thread::spawn(move || disk_window_of(hollow_pid, &store, disk_window))
    };
    let ticks = || -> Result<[u64; 3]> {
        Ok([
            cpu_ticks(cp_pid)?,
            cpu_ticks(agent_pid)?,
            cpu_ticks(board_pid)?,
        ])
    };
    let start = ticks()?;
    std::thread::sleep(cpu_window);
    let end = ticks()?;
    for (i, (figure, key)) in [
        ("control plane, idle, two nodes", "cp_idle_cpu"),
        ("node agent (full build), idle, no pods", "agent_idle_cpu"),
        (
            "node agent (board build), idle, no pods",
            "board_agent_idle_cpu",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        report.cpu(figure, key, end[i] - start[i], cpu_window);
    }
    drop(board);

    // Pod starts and tickers on cluster A while cluster B's disk window goes on.
    runtime.block_on(async {
        let client = kube_client::client(&cluster).await?;
        let pods: Api<Pod> = Api::namespaced(client, "default");
        let starts = time_starts(&pods, "start", WARMUP, STARTS, |name| {
            pod(name, &hello, json!([]), "Never")
        })
        .await?;
        let wasm = std::fs::read(images.join("hello.wasm"))?;
        let bare = bare_wasmtime(&wasm).await?;
        report.start(&starts, &bare);

        tokio::time::sleep(Duration::from_secs(3)).await;
        idle_tickers(&pods, &ticker, 0, 100).await?;
        tokio::time::sleep(Duration::from_secs(3)).await;
        let (rss100, pss100) = rss_pss_kib(agent_pid)?;
        report.memory(
            "node agent, 100 idle ticker pods",
            "agent_100_pods",
            rss100,
            pss100,
            None,
        );
        if std::env::var_os("BRAMBLE_BENCH_SMAPS").is_some() {
            print_largest_mappings(agent_pid)?;
        }
        idle_tickers(&pods, &ticker, 100, 900).await?;
        tokio::time::sleep(Duration::from_secs(3)).await;
        let (rss1000, pss1000) = rss_pss_kib(agent_pid)?;
        report.memory(
            "node agent, 1,000 idle ticker pods",
            "agent_1000_pods",
            rss1000,
            pss1000,
            None,
        );
        report.per_pod(rss100, rss1000);
        anyhow::Ok(())
    })?;
    let disk = disk
        .join()
        .map_err(|_| anyhow::anyhow!("the disk window panicked"))??;
    report.disk(&disk);
    drop(node);

    let markdown = report.markdown();
    print!("{markdown}");
    std::fs::write(out_dir.join("footprint.md"), &markdown)?;
    std::fs::write(
        out_dir.join("footprint.json"),
        serde_json::to_vec_pretty(&report.json())?,
    )?;
    eprintln!("wrote {}", out_dir.join("footprint.{md,json}").display());
    Ok(())
}

fn command_output(program: &str, args: &[&str]) -> Result<String> {
    let out = std::process::Command::new(program).args(args).output()?;
    ensure!(out.status.success(), "{program} failed");
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// CPU model, cores, memory and kernel of this machine.
fn machine() -> Result<String> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo")?;
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown CPU", |(_, m)| m.trim());
    let meminfo = std::fs::read_to_string("/proc/meminfo")?;
    let mem_kib: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Ok(format!(
        "{} x {model}, {:.0} GiB, Linux {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        mem_kib as f64 / 1024.0 / 1024.0,
        command_output("uname", &["-r"])?
    ))
}

fn seconds_from_env(name: &str, default: u64) -> Result<Duration> {
    let secs = match std::env::var(name) {
        Ok(v) => v
            .parse()
            .with_context(|| format!("{name} is a number of seconds"))?,
        Err(_) => default,
    };
    Ok(Duration::from_secs(secs))
}

/// Size in bytes of `binary` after `strip` (a stripped copy; the original is left alone). An
/// aarch64 binary goes through the cross binutils' strip.
fn stripped_size(binary: &Path) -> Result<u64> {
    use std::io::Read;
    let mut header = [0u8; 20];
    std::fs::File::open(binary)
        .with_context(|| format!("cannot open {}", binary.display()))?
        .read_exact(&mut header)?;
    // ELF e_machine, bytes 18..20: 183 is aarch64.
    let strip = match u16::from_le_bytes([header[18], header[19]]) {
        183 => "aarch64-linux-gnu-strip",
        _ => "strip",
    };
    let copy = tempfile::NamedTempFile::new()?;
    let out = std::process::Command::new(strip)
        .arg("-o")
        .arg(copy.path())
        .arg(binary)
        .output()
        .with_context(|| format!("cannot run {strip} (binutils)"))?;
    ensure!(
        out.status.success(),
        "strip {}: {}",
        binary.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(std::fs::metadata(copy.path())?.len())
}

/// utime + stime of `pid`, in clock ticks (USER_HZ, 100 per second on Linux).
fn cpu_ticks(pid: u32) -> Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name may hold spaces; the fields after it are space-separated.
    let after = stat.rsplit_once(')').context("malformed stat")?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 of stat(5) are the 12th and 13th after the name.
    let utime: u64 = fields.get(11).context("no utime")?.parse()?;
    let stime: u64 = fields.get(12).context("no stime")?.parse()?;
    Ok(utime + stime)
}

/// `write_bytes` of /proc/PID/io: bytes the process caused to be sent to storage.
fn write_bytes(pid: u32) -> Result<u64> {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io"))?;
    io.lines()
        .find_map(|l| l.strip_prefix("write_bytes:"))
        .context("no write_bytes")?
        .trim()
        .parse()
        .context("write_bytes")
}

/// Bytes of the SQLite store: the database and its write-ahead log.
fn store_bytes(data_dir: &Path) -> u64 {
    ["store.db", "store.db-wal"]
        .iter()
        .filter_map(|f| std::fs::metadata(data_dir.join(f)).ok())
        .map(|m| m.len())
        .sum()
}

struct DiskWindow {
    seconds: u64,
    written: u64,
    store_before: u64,
    store_after: u64,
    cpu_ticks: u64,
}

fn disk_window_of(pid: u32, data_dir: &Path, window: Duration) -> Result<DiskWindow> {
    let (written, store_before, ticks) =
        (write_bytes(pid)?, store_bytes(data_dir), cpu_ticks(pid)?);
    std::thread::sleep(window);
    Ok(DiskWindow {
        seconds: window.as_secs(),
        written: write_bytes(pid)? - written,
        store_before,
        store_after: store_bytes(data_dir),
        cpu_ticks: cpu_ticks(pid)? - ticks,
    })
}

/// Creates a Deployment of 100 replicas on the hollow nodes and waits until all are available.
async fn hollow_pods_running(cluster: &Cluster) -> Result<()> {
    use k8s_openapi::api::apps::v1::Deployment;
    let client = kube_client::client(cluster).await?;
    let deployments: Api<Deployment> = Api::namespaced(client, "default");
    let d: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "idle"},
        "spec": {
            "replicas": HOLLOW_PODS,
            "selector": {"matchLabels": {"app": "idle"}},
            "template": {
                "metadata": {"labels": {"app": "idle"}},
                "spec": {"containers": [{"name": "c", "image": "example/idle:1",
                          "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]}
            }
        }
    }))?;
    deployments.create(&PostParams::default(), &d).await?;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let available = deployments
            .get("idle")
            .await?
            .status
            .and_then(|s| s.available_replicas)
            .unwrap_or(0);
        if usize::try_from(available)? >= HOLLOW_PODS {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "only {available} hollow pods available"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

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

fn pod(name: &str, image: &str, env: Value, restart: &str) -> Result<Pod> {
    Ok(serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "nodeName": "bench-node",
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
            let p = pod(&format!("ticker-{i}"), image, env.clone(), "Always");
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
        "RSS of {pid} by mapping (total {total} KiB, {} mappings):",
        sizes.len()
    );
    for (kib, mapping) in sizes.iter().take(10) {
        eprintln!("{kib:>8} KiB  {mapping}");
    }
    Ok(())
}

/// The figures as Markdown rows and as JSON.
#[derive(Default)]
struct Report {
    rows: Vec<[String; 3]>,
    json: serde_json::Map<String, Value>,
}

impl Report {
    fn row(&mut self, figure: &str, value: String, target: String) {
        self.rows.push([figure.to_string(), value, target]);
    }

    fn memory(&mut self, figure: &str, key: &str, rss: u64, pss: u64, target_mb: Option<u64>) {
        let target = target_mb.map_or(String::new(), |mb| {
            format!("RSS <= {mb} MB: {}", verdict(rss * 1024 <= mb * MB))
        });
        self.row(
            &format!("{figure}: memory"),
            format!("RSS {:.1} MiB, PSS {:.1} MiB", mib(rss), mib(pss)),
            target,
        );
        self.json
            .insert(key.into(), json!({"rss_kib": rss, "pss_kib": pss}));
    }

    fn per_pod(&mut self, rss100: u64, rss1000: u64) {
        let per_pod = rss1000.saturating_sub(rss100) as f64 / 900.0;
        self.row(
            "memory per idle ticker pod, (RSS at 1,000 - RSS at 100) / 900",
            format!("{per_pod:.0} KiB"),
            format!("<= 1 MB: {}", verdict(per_pod * 1024.0 <= MB as f64)),
        );
        self.json
            .insert("agent_per_pod_kib".into(), json!(per_pod.round()));
    }

    fn cpu(&mut self, figure: &str, key: &str, ticks: u64, window: Duration) {
        // Ticks are hundredths of a second of CPU time; % of one core over the window.
        let percent = ticks as f64 / window.as_secs_f64();
        self.row(
            &format!("{figure}: CPU over {} s", window.as_secs()),
            format!("{percent:.3} % of one core ({ticks} ticks)"),
            format!(
                "control plane + agent <= 0.5 %: {}",
                verdict(percent <= 0.5)
            ),
        );
        self.json.insert(
            key.into(),
            json!({"percent_of_core": percent, "ticks": ticks, "seconds": window.as_secs()}),
        );
    }

    fn disk(&mut self, d: &DiskWindow) {
        let minutes = d.seconds as f64 / 60.0;
        let per_minute = d.written as f64 / minutes;
        self.row(
            &format!(
                "control plane, 10 hollow nodes heartbeating, 100 pods: bytes written over {} s",
                d.seconds
            ),
            format!(
                "{} bytes ({:.0} bytes/min); SQLite store {} -> {} bytes; CPU {:.3} %",
                d.written,
                per_minute,
                d.store_before,
                d.store_after,
                d.cpu_ticks as f64 / d.seconds as f64
            ),
            format!("<= 4 KiB/min: {}", verdict(per_minute <= 4096.0)),
        );
        self.json.insert(
            "cp_idle_disk".into(),
            json!({"seconds": d.seconds, "write_bytes": d.written, "bytes_per_minute": per_minute,
                   "store_bytes_before": d.store_before, "store_bytes_after": d.store_after,
                   "cpu_ticks": d.cpu_ticks}),
        );
    }

    fn start(&mut self, starts: &[Duration], bare: &[Duration]) {
        let (p50, p99) = (percentile(starts, 0.5), percentile(starts, 0.99));
        let met = p50 <= Duration::from_millis(10) && p99 <= Duration::from_millis(50);
        self.row(
            &format!("Wasm pod start, create -> container started, module cached ({STARTS} pods, one at a time)"),
            format!(
                "p50 {} ms, p99 {} ms; bare wasmtime instantiate + run of hello.wasm ({BARE_RUNS} runs): p50 {} ms, p99 {} ms",
                ms(p50),
                ms(p99),
                ms(percentile(bare, 0.5)),
                ms(percentile(bare, 0.99))
            ),
            format!("p50 <= 10 ms, p99 <= 50 ms: {}", verdict(met)),
        );
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        self.json.insert(
            "wasm_pod_start".into(),
            json!({"p50_us": us(p50), "p99_us": us(p99),
                   "bare_wasmtime_p50_us": us(percentile(bare, 0.5)),
                   "bare_wasmtime_p99_us": us(percentile(bare, 0.99))}),
        );
    }

    fn size(&mut self, figure: &str, key: &str, bytes: u64, target_mb: Option<u64>) {
        let target = target_mb.map_or(String::new(), |mb| {
            format!("<= {mb} MB: {}", verdict(bytes <= mb * MB))
        });
        self.row(
            figure,
            format!("{:.1} MiB ({bytes} bytes)", mib(bytes >> 10)),
            target,
        );
        self.json
            .insert(format!("size_{key}"), json!({"bytes": bytes}));
    }

    fn markdown(&self) -> String {
        let mut md = format!(
            "Measured {} on {}.\n\n| figure | Bramble | target |\n|---|---|---|\n",
            self.json["date"].as_str().unwrap_or_default(),
            self.json["machine"].as_str().unwrap_or_default()
        );
        for [figure, value, target] in &self.rows {
            md.push_str(&format!("| {figure} | {value} | {target} |\n"));
        }
        md
    }

    fn json(&self) -> Value {
        Value::Object(self.json.clone())
    }
}

/// The targets' megabyte (targets.md writes MB).
const MB: u64 = 1_000_000;

fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "**missed**"
    }
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}
