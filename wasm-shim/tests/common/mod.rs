//! Helpers shared by the integration tests: the sample workloads, output capture, runners.
//!
//! Each test binary uses a different subset of these.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use bramble_wasm_shim::cache::ModuleCache;
use bramble_wasm_shim::engine::{EngineConfig, WasmEngine};
use bramble_wasm_shim::instance::Runner;

/// Directory with the sample workloads built by `images/build.sh`. Panics with instructions
/// when it is not configured: these tests must never pass by skipping.
pub fn images_dir() -> PathBuf {
    let Some(dir) = std::env::var_os("BRAMBLE_IMAGES_DIR") else {
        panic!(
            "BRAMBLE_IMAGES_DIR is not set: build the sample workloads with \
             `images/build.sh OUT_DIR` and run the tests with BRAMBLE_IMAGES_DIR=OUT_DIR"
        );
    };
    let dir = PathBuf::from(dir);
    assert!(
        dir.join("hello.wasm").is_file(),
        "BRAMBLE_IMAGES_DIR={} has no hello.wasm: run `images/build.sh {}` first",
        dir.display(),
        dir.display()
    );
    dir
}

/// The bytes of sample `name` (e.g. `hello.wasm`).
pub fn image(name: &str) -> Vec<u8> {
    let path = images_dir().join(name);
    std::fs::read(&path)
        .unwrap_or_else(|err| panic!("reading sample {} failed: {err}", path.display()))
}

/// A fresh, empty directory for one test, removed when dropped (also when the test fails).
pub struct TempDir(PathBuf);

impl TempDir {
    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Creates a [`TempDir`] named after `test`.
pub fn temp_dir(test: &str) -> TempDir {
    let dir = std::env::temp_dir().join(format!("bramble-shim-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create temp dir");
    TempDir(dir)
}

/// A runner with `config`, caching under `cache`.
pub fn runner_with(cache: &Path, config: EngineConfig) -> Runner {
    let engine = WasmEngine::new(config).expect("engine");
    let cache = ModuleCache::open(engine.engine(), cache).expect("cache");
    Runner::new(engine, cache).expect("runner")
}

/// A runner with the default engine and a private cache directory that lives as long as it.
pub struct TestRunner {
    runner: Runner,
    _cache: TempDir,
}

impl std::ops::Deref for TestRunner {
    type Target = Runner;

    fn deref(&self) -> &Runner {
        &self.runner
    }
}

/// A [`TestRunner`] for `test`.
pub fn runner(test: &str) -> TestRunner {
    test_runner(test, EngineConfig::default())
}

/// A [`TestRunner`] for `test` with `config`.
pub fn test_runner(test: &str, config: EngineConfig) -> TestRunner {
    let cache = temp_dir(&format!("{test}-cache"));
    TestRunner {
        runner: runner_with(cache.path(), config),
        _cache: cache,
    }
}

/// An output sink whose bytes the test can read afterwards.
#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    /// Everything written so far, as text.
    pub fn text(&self) -> String {
        let bytes = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// A boxed clone, for a spec's stdout or stderr.
    pub fn sink(&self) -> Box<dyn Write + Send + Sync> {
        Box::new(self.clone())
    }
}

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Resident memory of this process in KiB, from /proc/self/status.
pub fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status")
}
