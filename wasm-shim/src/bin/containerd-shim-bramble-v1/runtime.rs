//! The Wasm side of the shim: one engine, compiled-code cache and tokio runtime per shim
//! process (so per pod), loading a container's module and running one instance per process,
//! a command to its end or a wasi:http component as a server until it is killed.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bramble_wasm_shim::cache::ModuleCache;
use bramble_wasm_shim::engine::{EngineConfig, WasmEngine};
use bramble_wasm_shim::exit::{Exit, ExitReason};
use bramble_wasm_shim::http::HttpOptions;
use bramble_wasm_shim::instance::{Program, Runner};
use bramble_wasm_shim::sandbox::SandboxSpec;
use tokio_util::sync::CancellationToken;

use crate::error::ShimError;
use crate::oci::Plan;
use crate::process::{ExitStatus, Process};
use crate::stdio;

/// Environment variable naming the compiled-code cache directory.
pub const CACHE_DIR_ENV: &str = "BRAMBLE_SHIM_CACHE_DIR";
/// Cache directory when the variable is unset, shared by every shim on the host.
pub const DEFAULT_CACHE_DIR: &str = "/var/lib/bramble-shim/cache";
/// How long a wasi:http server may finish its open requests after a kill.
const HTTP_GRACE: Duration = Duration::from_secs(2);

/// The engine and runtime, built on first use: a `start` or `delete` invocation of the binary
/// never needs them.
pub struct Wasm {
    inner: OnceLock<Result<Arc<Inner>, String>>,
}

struct Inner {
    runtime: tokio::runtime::Runtime,
    runner: Arc<Runner>,
}

impl Wasm {
    /// Nothing built yet.
    pub fn new() -> Self {
        Self {
            inner: OnceLock::new(),
        }
    }

    fn inner(&self) -> Result<Arc<Inner>, ShimError> {
        self.inner
            .get_or_init(|| build().map(Arc::new))
            .clone()
            .map_err(|message| ShimError::Runtime { message })
    }

    /// Loads (compiles, or takes from the cache) the module at `path`. Blocks.
    pub fn load(&self, path: &Path) -> Result<Program, ShimError> {
        let inner = self.inner()?;
        let bytes = std::fs::read(path).map_err(|source| ShimError::Io {
            what: "reading the wasm module",
            path: path.to_path_buf(),
            source,
        })?;
        let before = inner.runner.cache().stats();
        let program = inner.runner.load(&bytes).map_err(|e| ShimError::Load {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        if !program.is_command() && !program.is_http_proxy() {
            return Err(ShimError::Load {
                path: path.to_path_buf(),
                message: "it exports neither wasi:cli/run nor wasi:http/incoming-handler".into(),
            });
        }
        let after = inner.runner.cache().stats();
        let how = if after.compiled > before.compiled {
            "compiled"
        } else if after.loaded > before.loaded {
            "loaded from the disk cache"
        } else {
            "already in memory"
        };
        log::info!("program {} ({}) {how}", program.digest(), path.display());
        Ok(program)
    }

    /// Starts an instance of the program for `process` on the runtime (without one, a pod
    /// sandbox placeholder that waits to be killed); `on_exit` is called once with its exit
    /// status when it ends. Fails only if the runtime cannot be built.
    pub fn launch(
        &self,
        process: Arc<Process>,
        payload: Option<(Program, Plan)>,
        on_exit: impl FnOnce(ExitStatus) + Send + 'static,
    ) -> Result<(), ShimError> {
        let inner = self.inner()?;
        let runtime = Arc::clone(&inner);
        inner.runtime.spawn(async move {
            let exit = match payload {
                Some((program, plan)) => run(&runtime.runner, &process, program, plan).await,
                None => hold(&process).await,
            };
            on_exit(process.mark_exited(Some(&exit)));
        });
        Ok(())
    }
}

fn build() -> Result<Inner, String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        // Guests yield every epoch tick; two workers keep a busy one from starving the rest
        // without taking every core of a small board.
        .worker_threads(2)
        .thread_name("bramble-wasm")
        .enable_all()
        .build()
        .map_err(|e| format!("starting the tokio runtime: {e}"))?;
    let engine = {
        // The engine's epoch ticker is a tokio task.
        let _entered = runtime.enter();
        WasmEngine::new(EngineConfig::default()).map_err(|e| e.to_string())?
    };
    let dir = cache_dir();
    let cache = ModuleCache::open(engine.engine(), &dir)
        .map_err(|e| format!("opening the module cache at {}: {e}", dir.display()))?;
    let runner = Runner::new(engine, cache).map_err(|e| e.to_string())?;
    Ok(Inner {
        runtime,
        runner: Arc::new(runner),
    })
}

/// `$BRAMBLE_SHIM_CACHE_DIR`, or the shared default.
pub fn cache_dir() -> PathBuf {
    std::env::var_os(CACHE_DIR_ENV)
        .filter(|v| !v.is_empty())
        .map_or_else(|| PathBuf::from(DEFAULT_CACHE_DIR), PathBuf::from)
}

/// A pod sandbox's task: nothing runs, it ends when killed.
async fn hold(process: &Process) -> Exit {
    let started = std::time::Instant::now();
    process.kill.killed().await;
    Exit {
        code: 137,
        reason: ExitReason::Killed,
        wall_time: started.elapsed(),
        cpu_time: Duration::ZERO,
        memory_bytes: 0,
    }
}

/// Runs one instance to its end; problems starting it are reported on its stderr and as an
/// error exit, like a process that failed to exec.
async fn run(runner: &Runner, process: &Process, program: Program, plan: Plan) -> Exit {
    let started = std::time::Instant::now();
    let mut stderr = stdio::open_sink(&process.stdio.stderr).ok().flatten();
    let result = serve_or_run(runner, process, program, plan, &mut stderr).await;
    match result {
        Ok(exit) => exit,
        Err(message) => {
            log::warn!("process {} failed to start: {message}", process.name());
            if let Some(sink) = stderr.as_mut() {
                let _ = writeln!(sink, "containerd-shim-bramble-v1: {message}");
            }
            Exit {
                code: 128,
                reason: ExitReason::Error(128),
                wall_time: started.elapsed(),
                cpu_time: Duration::ZERO,
                memory_bytes: 0,
            }
        }
    }
}

async fn serve_or_run(
    runner: &Runner,
    process: &Process,
    program: Program,
    plan: Plan,
    stderr: &mut Option<bramble_wasm_shim::output::Sink>,
) -> Result<Exit, String> {
    let mut spec = SandboxSpec::new(process.name());
    spec.argv = plan.argv;
    spec.env = plan.env;
    spec.preopens = plan.preopens;
    spec.limits = plan.limits;
    spec.stdout = stdio::open_sink(&process.stdio.stdout).map_err(|e| e.to_string())?;
    spec.stderr = stderr.take();
    spec.stdin = stdio::open_stdin(&process.stdio.stdin, process.close_stdin.clone())
        .map_err(|e| e.to_string())?;
    if !program.is_http_proxy() {
        return runner
            .run(&program, spec, &process.kill)
            .await
            .map_err(|e| e.to_string());
    }
    // A wasi:http component serves until it is killed, as the node agent does.
    let port = plan.http_port;
    let listener = tokio::net::TcpListener::bind(("0.0.0.0", port))
        .await
        .map_err(|e| format!("cannot listen on port {port} for the wasi:http component: {e}"))?;
    log::info!("serving {} on port {port}", process.name());
    let started = std::time::Instant::now();
    let shutdown = CancellationToken::new();
    let server = bramble_wasm_shim::http::serve(
        runner.engine().clone(),
        program,
        spec,
        HttpOptions::default(),
        listener,
        shutdown.clone(),
    );
    tokio::pin!(server);
    let served = tokio::select! {
        served = &mut server => Some(served),
        () = process.kill.killed() => None,
    };
    let served = match served {
        Some(served) => served,
        None => {
            shutdown.cancel();
            // Past the grace period the server is dropped with what it still runs.
            tokio::time::timeout(HTTP_GRACE, server)
                .await
                .unwrap_or(Ok(Default::default()))
        }
    };
    let (code, reason) = match served {
        _ if process.kill.is_killed() => (137, ExitReason::Killed),
        Ok(_) => (0, ExitReason::Completed),
        Err(e) => return Err(e.to_string()),
    };
    Ok(Exit {
        code,
        reason,
        wall_time: started.elapsed(),
        cpu_time: Duration::ZERO,
        memory_bytes: 0,
    })
}
