//! Loading programs (compile or cache, then pre-instantiate once) and running instances of
//! them under a [`SandboxSpec`].

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use wasmtime::component;
use wasmtime::{InstancePre, Linker, Store};
use wasmtime_wasi::p2::bindings::CommandPre;
use wasmtime_wasi_http::p2::bindings::ProxyPre;

use crate::cache::{Artifact, CacheError, ModuleCache};
use crate::digest::Digest;
use crate::engine::WasmEngine;
use crate::exit::{classify, Ended, Exit};
use crate::guest::{new_store, Guard, KillHandle, P1State, P2State};
use crate::output;
use crate::sandbox::{SandboxError, SandboxSpec};

/// Why a program could not be loaded or an instance not started.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Compiling, caching or loading the binary failed.
    #[error(transparent)]
    Cache(#[from] CacheError),
    /// The binary imports something the host does not provide.
    #[error("wasm binary {digest:?} cannot be linked: {message}")]
    Link {
        /// The binary.
        digest: Digest,
        /// wasmtime's explanation (names the missing import).
        message: String,
    },
    /// The binary has no entry point this runtime knows.
    #[error("wasm binary {digest:?} is not runnable: {reason}")]
    NotRunnable {
        /// The binary.
        digest: Digest,
        /// What is missing.
        reason: &'static str,
    },
    /// The WASI host functions could not be registered (a wasmtime version mismatch).
    #[error("setting up the WASI host failed: {message}")]
    Host {
        /// wasmtime's explanation.
        message: String,
    },
    /// The spec cannot be turned into a sandbox.
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
}

/// A compiled, linked, pre-instantiated binary; cheap to clone.
#[derive(Clone)]
pub struct Program {
    digest: Digest,
    kind: Arc<ProgramKind>,
}

pub(crate) enum ProgramKind {
    Module(InstancePre<P1State>),
    Component {
        command: Option<CommandPre<P2State>>,
        proxy: Option<ProxyPre<P2State>>,
    },
}

impl Program {
    /// SHA-256 of the binary.
    pub fn digest(&self) -> &Digest {
        &self.digest
    }

    /// Whether it can be run to completion with [`Runner::run`] (a WASI command).
    pub fn is_command(&self) -> bool {
        match &*self.kind {
            ProgramKind::Module(_) => true,
            ProgramKind::Component { command, .. } => command.is_some(),
        }
    }

    /// Whether it can serve HTTP (a `wasi:http/proxy` component).
    pub fn is_http_proxy(&self) -> bool {
        matches!(&*self.kind, ProgramKind::Component { proxy: Some(_), .. })
    }

    pub(crate) fn proxy(&self) -> Option<&ProxyPre<P2State>> {
        match &*self.kind {
            ProgramKind::Component { proxy, .. } => proxy.as_ref(),
            ProgramKind::Module(_) => None,
        }
    }
}

/// Loads programs and runs instances; one per process, shared by all containers.
pub struct Runner {
    engine: WasmEngine,
    cache: ModuleCache,
    p1: Linker<P1State>,
    p2: component::Linker<P2State>,
    programs: Mutex<HashMap<Digest, Program>>,
}

impl Runner {
    /// A runner for `engine` keeping compiled code in `cache`.
    pub fn new(engine: WasmEngine, cache: ModuleCache) -> Result<Self, RunError> {
        let host_err = |err: wasmtime::Error| RunError::Host {
            message: format!("{err:#}"),
        };
        let mut p1 = Linker::new(engine.engine());
        wasmtime_wasi::p1::add_to_linker_async(&mut p1, |state: &mut P1State| &mut state.wasi)
            .map_err(host_err)?;
        let mut p2 = component::Linker::new(engine.engine());
        wasmtime_wasi::p2::add_to_linker_async(&mut p2).map_err(host_err)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut p2).map_err(host_err)?;
        Ok(Self {
            engine,
            cache,
            p1,
            p2,
            programs: Mutex::new(HashMap::new()),
        })
    }

    /// The engine instances run on.
    pub fn engine(&self) -> &WasmEngine {
        &self.engine
    }

    /// The compiled-code cache.
    pub fn cache(&self) -> &ModuleCache {
        &self.cache
    }

    /// The program for `wasm`: already loaded, loaded from the disk cache, or compiled. Blocks
    /// (compiling takes up to seconds on a board): call it from a blocking thread.
    pub fn load(&self, wasm: &[u8]) -> Result<Program, RunError> {
        let digest = Digest::of(wasm);
        if let Some(program) = self.program(&digest) {
            return Ok(program);
        }
        let artifact = self.cache.get_or_compile_digest(digest, wasm)?;
        self.prepare(digest, artifact)
    }

    /// Installs an artifact precompiled for this engine (see
    /// [`ModuleCache::install_precompiled`]) and loads it.
    pub fn install_precompiled(&self, source: Digest, cwasm: &[u8]) -> Result<Program, RunError> {
        let artifact = self.cache.install_precompiled(source, cwasm)?;
        self.prepare(source, artifact)
    }

    /// The already-loaded program with this digest, without touching the disk.
    pub fn program(&self, digest: &Digest) -> Option<Program> {
        self.programs().get(digest).cloned()
    }

    /// Drops a loaded program from memory (instances still running keep it alive); returns
    /// whether it was loaded.
    pub fn forget(&self, digest: &Digest) -> bool {
        self.programs().remove(digest).is_some()
    }

    fn programs(&self) -> std::sync::MutexGuard<'_, HashMap<Digest, Program>> {
        // The map is only ever inserted into or removed from whole; poisoning cannot tear it.
        self.programs.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn prepare(&self, digest: Digest, artifact: Artifact) -> Result<Program, RunError> {
        let link_err = |err: wasmtime::Error| RunError::Link {
            digest,
            message: format!("{err:#}"),
        };
        let kind = match artifact {
            Artifact::Module(module) => {
                let start = module
                    .get_export("_start")
                    .and_then(|export| export.func().cloned());
                if !start.is_some_and(|ty| ty.params().len() == 0 && ty.results().len() == 0) {
                    return Err(RunError::NotRunnable {
                        digest,
                        reason: "a preview 1 module must export `_start: func()`",
                    });
                }
                ProgramKind::Module(self.p1.instantiate_pre(&module).map_err(link_err)?)
            }
            Artifact::Component(component) => {
                let pre = self.p2.instantiate_pre(&component).map_err(link_err)?;
                // Each fails unless the component exports its world's interface.
                let command = CommandPre::new(pre.clone()).ok();
                let proxy = ProxyPre::new(pre).ok();
                if command.is_none() && proxy.is_none() {
                    return Err(RunError::NotRunnable {
                        digest,
                        reason:
                            "a component must export wasi:cli/run or wasi:http/incoming-handler",
                    });
                }
                ProgramKind::Component { command, proxy }
            }
        };
        let program = Program {
            digest,
            kind: Arc::new(kind),
        };
        self.programs().insert(digest, program.clone());
        Ok(program)
    }

    /// Runs `program` as a command under `spec` until it ends, is killed through `kill`, or
    /// hits a limit. Errors are only for instances that could not be started; everything the
    /// guest does, traps included, is an [`Exit`].
    pub async fn run(
        &self,
        program: &Program,
        mut spec: SandboxSpec,
        kill: &KillHandle,
    ) -> Result<Exit, RunError> {
        spec.validate()?;
        let entry = match &*program.kind {
            ProgramKind::Module(pre) => Entry::Module(pre),
            ProgramKind::Component {
                command: Some(command),
                ..
            } => Entry::Command(command),
            ProgramKind::Component { command: None, .. } => {
                return Err(RunError::NotRunnable {
                    digest: program.digest,
                    reason: "the component exports no wasi:cli/run (serve it over HTTP instead)",
                })
            }
        };
        let started = Instant::now();
        let sink = |sink: Option<output::Sink>| sink.unwrap_or_else(|| Box::new(std::io::sink()));
        let (stdout, out_pump) = output::pipe(sink(spec.stdout.take()), spec.output_buffer);
        let (stderr, err_pump) = output::pipe(sink(spec.stderr.take()), spec.output_buffer);
        let mut wasi = spec.wasi_builder(stdout, stderr)?;
        if let Some(stdin) = spec.stdin.take() {
            wasi.stdin(wasmtime_wasi::cli::AsyncStdinStream::new(stdin));
        }
        let tick = self.engine.settings().epoch_tick;
        let guard = Guard::new(&spec.limits, tick, kill.clone());
        let timeout = spec.limits.wall_timeout;
        let active = self.engine.enter();
        let engine = self.engine.engine();
        // Each store lives only inside its arm, so the pipes' writing ends are gone after it.
        let (code, reason, cpu_time, memory_bytes) = match entry {
            Entry::Module(pre) => {
                let state = P1State {
                    wasi: wasi.build_p1(),
                    guard,
                };
                let mut store = new_store(engine, state);
                let ended = supervise(run_module(pre, &mut store), kill, timeout).await;
                finish(ended, &store.data().guard)
            }
            Entry::Command(command) => {
                let mut store = new_store(engine, P2State::new(wasi.build(), guard));
                let ended = supervise(run_command(command, &mut store), kill, timeout).await;
                finish(ended, &store.data().guard)
            }
        };
        drop(active);
        // Wait until everything the guest wrote has reached the sinks.
        out_pump.finish().await;
        err_pump.finish().await;
        Ok(Exit {
            code,
            reason,
            wall_time: started.elapsed(),
            cpu_time,
            memory_bytes,
        })
    }
}

/// The entry point of a runnable program.
enum Entry<'a> {
    Module(&'a InstancePre<P1State>),
    Command(&'a CommandPre<P2State>),
}

fn finish(ended: Ended, guard: &Guard) -> (i32, crate::exit::ExitReason, Duration, u64) {
    let (code, reason) = classify(ended, guard);
    (code, reason, guard.cpu.used(), guard.limiter.reserved())
}

async fn run_module(
    pre: &InstancePre<P1State>,
    store: &mut Store<P1State>,
) -> wasmtime::Result<i32> {
    let instance = pre.instantiate_async(&mut *store).await?;
    let start = instance.get_typed_func::<(), ()>(&mut *store, "_start")?;
    start.call_async(&mut *store, ()).await?;
    Ok(0)
}

async fn run_command(
    pre: &CommandPre<P2State>,
    store: &mut Store<P2State>,
) -> wasmtime::Result<i32> {
    let command = pre.instantiate_async(&mut *store).await?;
    match command.wasi_cli_run().call_run(&mut *store).await? {
        Ok(()) => Ok(0),
        Err(()) => Ok(1),
    }
}

/// Drives `call` until it returns, `kill` fires or `timeout` passes. A guest that computes
/// yields every epoch tick, so neither waits longer than a tick.
pub(crate) async fn supervise(
    call: impl Future<Output = wasmtime::Result<i32>>,
    kill: &KillHandle,
    timeout: Option<Duration>,
) -> Ended {
    let deadline = async {
        match timeout {
            Some(limit) => tokio::time::sleep(limit).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        biased;
        result = call => Ended::Returned(result),
        () = kill.cancelled() => Ended::Killed,
        () = deadline => Ended::TimedOut,
    }
}
