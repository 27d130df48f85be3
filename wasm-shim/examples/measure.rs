//! Quick figures for the Wasm execution core, printed as a table: compile time, cached load
//! time, hello start+run latency and resident memory per idle instance.
//!
//! Usage: `BRAMBLE_IMAGES_DIR=OUT_DIR cargo run --release --example measure [-- --pooling]`
//! (OUT_DIR from `images/build.sh OUT_DIR`). Figures for `docs/benchmarks.md`, not a test.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bramble_wasm_shim::cache::ModuleCache;
use bramble_wasm_shim::engine::{EngineConfig, PoolingConfig, WasmEngine};
use bramble_wasm_shim::guest::KillHandle;
use bramble_wasm_shim::instance::Runner;
use bramble_wasm_shim::sandbox::SandboxSpec;

const RUNS: usize = 100;
const TICKERS: usize = 100;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let images = PathBuf::from(
        std::env::var_os("BRAMBLE_IMAGES_DIR")
            .ok_or("set BRAMBLE_IMAGES_DIR (images/build.sh OUT_DIR)")?,
    );
    let pooling = std::env::args().any(|arg| arg == "--pooling");
    let config = EngineConfig {
        pooling: pooling.then_some(PoolingConfig {
            max_instances: 1000,
            max_memory_bytes: 64 << 20,
        }),
        ..EngineConfig::default()
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let hello = std::fs::read(images.join("hello.wasm"))?;
    let echo = std::fs::read(images.join("http-echo.wasm"))?;
    let ticker = std::fs::read(images.join("ticker.wasm"))?;
    let cache_dir = std::env::temp_dir().join(format!("bramble-measure-{}", std::process::id()));

    let rss_start = rss_kib()?;
    let first = new_runner(&cache_dir, config.clone())?;
    let compile_hello = timed(|| first.load(&hello))?;
    let compile_echo = timed(|| first.load(&echo))?;
    let second = Arc::new(new_runner(&cache_dir, config)?);
    let load_hello = timed(|| second.load(&hello))?;
    let load_echo = timed(|| second.load(&echo))?;
    let memory_hit = timed(|| second.load(&hello))?;

    let program = second.load(&hello)?;
    let mut runs = Vec::with_capacity(RUNS);
    runtime.block_on(async {
        for _ in 0..RUNS {
            let started = Instant::now();
            let exit = second
                .run(&program, SandboxSpec::new("hello"), &KillHandle::new())
                .await?;
            runs.push(started.elapsed());
            if !exit.success() {
                return Err(format!("hello failed: {exit:?}").into());
            }
        }
        Ok::<_, Box<dyn std::error::Error>>(())
    })?;
    runs.sort();

    let (rss_idle_before, rss_idle_after) =
        runtime.block_on(idle_tickers(Arc::clone(&second), &ticker))?;
    println!("pooling allocator           {pooling}");
    println!("compile hello.wasm          {:>10.2?}", compile_hello);
    println!("compile http-echo.wasm      {:>10.2?}", compile_echo);
    println!("cached load hello.wasm      {:>10.2?}", load_hello);
    println!("cached load http-echo.wasm  {:>10.2?}", load_echo);
    println!("in-memory load (digest hit) {:>10.2?}", memory_hit);
    println!(
        "hello start+run p50 ({RUNS})  {:>10.2?}",
        percentile(&runs, 50)
    );
    println!(
        "hello start+run p99 ({RUNS})  {:>10.2?}",
        percentile(&runs, 99)
    );
    println!("RSS at start                {rss_start:>7} KiB");
    println!("RSS before {TICKERS} tickers      {rss_idle_before:>7} KiB");
    println!("RSS with {TICKERS} idle tickers   {rss_idle_after:>7} KiB");
    println!(
        "RSS per idle ticker         {:>7} KiB",
        rss_idle_after.saturating_sub(rss_idle_before) / TICKERS as u64
    );
    let _ = std::fs::remove_dir_all(cache_dir);
    Ok(())
}

/// Starts tickers that sleep a minute between lines, waits until all of them logged their
/// first line, reads RSS, then kills them.
async fn idle_tickers(
    runner: Arc<Runner>,
    wasm: &[u8],
) -> Result<(u64, u64), Box<dyn std::error::Error>> {
    let program = runner.load(wasm)?;
    let before = rss_kib()?;
    let started = Arc::new(AtomicUsize::new(0));
    let mut kills = Vec::new();
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..TICKERS {
        let kill = KillHandle::new();
        kills.push(kill.clone());
        let mut spec = SandboxSpec::new(format!("ticker-{n}"));
        spec.env = vec![("TICK_INTERVAL_MS".into(), "60000".into())];
        spec.stdout = Some(Box::new(Counter(Arc::clone(&started))));
        let (runner, program) = (Arc::clone(&runner), program.clone());
        tasks.spawn(async move { runner.run(&program, spec, &kill).await });
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while started.load(Ordering::SeqCst) < TICKERS && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let after = rss_kib()?;
    for kill in &kills {
        kill.kill();
    }
    while let Some(exit) = tasks.join_next().await {
        exit??;
    }
    Ok((before, after))
}

/// Counts started tickers by their first line.
struct Counter(Arc<AtomicUsize>);

impl std::io::Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if buf.windows(9).any(|w| w == b"starting:") {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn new_runner(cache: &Path, config: EngineConfig) -> Result<Runner, Box<dyn std::error::Error>> {
    let engine = WasmEngine::new(config)?;
    let cache = ModuleCache::open(engine.engine(), cache)?;
    Ok(Runner::new(engine, cache)?)
}

fn timed<T, E>(f: impl FnOnce() -> Result<T, E>) -> Result<Duration, E> {
    let started = Instant::now();
    f()?;
    Ok(started.elapsed())
}

fn percentile(sorted: &[Duration], pct: usize) -> Duration {
    let index = (sorted.len() * pct / 100).min(sorted.len().saturating_sub(1));
    sorted.get(index).copied().unwrap_or_default()
}

fn rss_kib() -> Result<u64, Box<dyn std::error::Error>> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| "no VmRSS in /proc/self/status".into())
}
