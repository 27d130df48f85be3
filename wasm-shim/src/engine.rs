//! The one wasmtime [`Engine`] a process shares, tuned for small boards, and the epoch ticker
//! that drives time slicing, CPU limits and kills.
//!
//! Everything that changes generated code (stack size, memory reservation, guard size, epoch
//! checks) lives in [`EngineConfig`], and [`build_config`] is the only place that turns it into a
//! wasmtime [`Config`]: the node's engine and the control plane's precompiler for another target
//! must agree on it, or precompiled modules would be rejected as incompatible.

use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::{Config, Engine};
#[cfg(feature = "pooling")]
use wasmtime::{InstanceAllocationStrategy, PoolingAllocationConfig};

/// Stack the host side of a call (WASI, the epoch callback) may use on top of the guest's
/// [`EngineConfig::max_wasm_stack`] on the same fiber stack.
const HOST_STACK_HEADROOM: usize = 1 << 20;

/// Core instances a single component may create; WASI command and proxy components built by
/// current toolchains use a handful, the margin is for adapters.
#[cfg(feature = "pooling")]
const CORE_INSTANCES_PER_COMPONENT: u32 = 8;

/// Why an engine could not be built.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A setting is outside what the engine can work with.
    #[error("invalid engine setting {setting}: {reason}")]
    InvalidSetting {
        /// Name of the [`EngineConfig`] field.
        setting: &'static str,
        /// What is wrong with its value.
        reason: String,
    },
    /// wasmtime does not know the target triple (or was built without its backend).
    #[error("unsupported compilation target {target:?}: {message}")]
    UnsupportedTarget {
        /// The triple asked for.
        target: String,
        /// wasmtime's explanation.
        message: String,
    },
    /// wasmtime refused the combined configuration.
    #[error("creating the wasmtime engine failed: {message}")]
    Create {
        /// wasmtime's explanation.
        message: String,
    },
    /// The epoch ticker thread could not be started.
    #[error("starting the epoch ticker thread failed: {0}")]
    Ticker(#[source] std::io::Error),
}

/// Settings of the pooling instance allocator: every slot is reserved up front, which makes
/// instantiation a few microseconds faster and bounds the total, at the price of reserved (not
/// resident) address space for all slots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolingConfig {
    /// Guests (core modules or components) that may be alive at once.
    pub max_instances: u32,
    /// Largest linear memory a guest may grow to; pooled memories can never move, so this is
    /// also the per-slot reservation. Must cover the largest per-pod memory limit.
    pub max_memory_bytes: u64,
}

/// How the process-wide engine is built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineConfig {
    /// Period of the epoch ticker: the time-slice length, the granularity of CPU limits and the
    /// worst-case delay before a running guest notices a kill.
    pub epoch_tick: Duration,
    /// Most stack a guest may use before it traps with "call stack exhausted".
    pub max_wasm_stack: usize,
    /// Address space reserved for each linear memory before it has to move when it grows.
    /// wasmtime's 4 GiB default would exhaust a 39-bit address space (Raspberry Pi kernels)
    /// after ~100 pods; a small reservation costs explicit bounds checks instead.
    pub memory_reservation: u64,
    /// Unmapped guard after each linear memory.
    pub memory_guard_size: u64,
    /// Extra room reserved when a memory has to move because it outgrew its reservation.
    pub memory_reservation_for_growth: u64,
    /// Compile functions on several threads; on a 1-core board this only adds overhead.
    pub parallel_compilation: bool,
    /// Use the pooling allocator instead of allocating each instance on demand.
    pub pooling: Option<PoolingConfig>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            epoch_tick: Duration::from_millis(10),
            max_wasm_stack: 512 << 10,
            memory_reservation: 64 << 20,
            memory_guard_size: 64 << 10,
            memory_reservation_for_growth: 16 << 20,
            parallel_compilation: true,
            pooling: None,
        }
    }
}

impl EngineConfig {
    /// Checks the values wasmtime would otherwise reject with a less helpful message.
    pub fn validate(&self) -> Result<(), EngineError> {
        let invalid = |setting, reason: &str| EngineError::InvalidSetting {
            setting,
            reason: reason.to_owned(),
        };
        if self.epoch_tick < Duration::from_millis(1) || self.epoch_tick > Duration::from_secs(1) {
            return Err(invalid("epoch_tick", "must be between 1 ms and 1 s"));
        }
        if self.max_wasm_stack < 16 << 10 || self.max_wasm_stack > 64 << 20 {
            return Err(invalid(
                "max_wasm_stack",
                "must be between 16 KiB and 64 MiB",
            ));
        }
        if let Some(pooling) = &self.pooling {
            if pooling.max_instances == 0 {
                return Err(invalid("pooling.max_instances", "must be at least 1"));
            }
            if pooling.max_memory_bytes < 64 << 10 {
                return Err(invalid(
                    "pooling.max_memory_bytes",
                    "must be at least one 64 KiB wasm page",
                ));
            }
        }
        Ok(())
    }
}

/// The target triple of this process, as the precompiler names it (e.g.
/// `aarch64-unknown-linux-gnu`): a node without a compiler asks for artifacts for it.
pub fn host_target() -> String {
    let arch = match std::env::consts::ARCH {
        // Cranelift's riscv64 backend targets the G and C extensions every Linux board has.
        "riscv64" => "riscv64gc",
        arch => arch,
    };
    match std::env::consts::OS {
        "linux" => format!("{arch}-unknown-linux-gnu"),
        os => format!("{arch}-unknown-{os}"),
    }
}

/// Turns `settings` into a wasmtime [`Config`], compiling for `target` (a target triple such as
/// `aarch64-unknown-linux-gnu`) instead of the host when given.
///
/// The node's engine and the precompiler both call this, so their artifacts stay compatible.
pub fn build_config(settings: &EngineConfig, target: Option<&str>) -> Result<Config, EngineError> {
    settings.validate()?;
    let mut config = Config::new();
    if let Some(triple) = target {
        config
            .target(triple)
            .map_err(|err| EngineError::UnsupportedTarget {
                target: triple.to_owned(),
                message: format!("{err:#}"),
            })?;
    }
    // Epochs, not fuel: an epoch check is a load and compare, fuel costs on every block.
    config.epoch_interruption(true);
    config.consume_fuel(false);
    config.max_wasm_stack(settings.max_wasm_stack);
    config.async_stack_size(settings.max_wasm_stack.saturating_add(HOST_STACK_HEADROOM));
    config.memory_reservation(settings.memory_reservation);
    config.memory_guard_size(settings.memory_guard_size);
    config.memory_reservation_for_growth(settings.memory_reservation_for_growth);
    // Copy-on-write initial memory images keep untouched data pages out of RSS.
    config.memory_init_cow(true);
    #[cfg(feature = "compiler")]
    config.parallel_compilation(settings.parallel_compilation);
    config.wasm_component_model(true);
    if let Some(pooling) = &settings.pooling {
        #[cfg(feature = "pooling")]
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pooling_config(pooling)));
        #[cfg(not(feature = "pooling"))]
        {
            let _ = pooling;
            return Err(EngineError::InvalidSetting {
                setting: "pooling",
                reason: "this build has no pooling allocator (the `pooling` feature)".to_owned(),
            });
        }
    }
    Ok(config)
}

#[cfg(feature = "pooling")]
fn pooling_config(pooling: &PoolingConfig) -> PoolingAllocationConfig {
    let instances = pooling.max_instances;
    let core_instances = instances.saturating_mul(CORE_INSTANCES_PER_COMPONENT);
    let mut config = PoolingAllocationConfig::new();
    config
        .total_component_instances(instances)
        .total_core_instances(core_instances)
        .total_memories(core_instances)
        .total_tables(core_instances)
        .total_stacks(instances)
        .max_memory_size(usize::try_from(pooling.max_memory_bytes).unwrap_or(usize::MAX));
    config
}

/// The process-wide engine and its epoch ticker; cheap to clone.
///
/// The ticker runs only while at least one guest is executing (see [`WasmEngine::enter`]), so an
/// idle agent spends no wake-ups on it. It stops when [`WasmEngine::stop_ticker`] is called or
/// the last clone is dropped.
#[derive(Clone)]
pub struct WasmEngine {
    inner: Arc<EngineInner>,
}

struct EngineInner {
    engine: Engine,
    settings: EngineConfig,
    ticker: Arc<TickerShared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

#[derive(Default)]
struct TickerState {
    running: usize,
    stop: bool,
    ticks: u64,
}

#[derive(Default)]
struct TickerShared {
    state: Mutex<TickerState>,
    wake: Condvar,
}

impl TickerShared {
    fn lock(&self) -> MutexGuard<'_, TickerState> {
        // The state is plain counters and a flag; a panicking holder cannot leave it inconsistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl WasmEngine {
    /// Builds the engine for the host and starts its epoch ticker thread.
    pub fn new(settings: EngineConfig) -> Result<Self, EngineError> {
        let config = build_config(&settings, None)?;
        let engine = Engine::new(&config).map_err(|err| EngineError::Create {
            message: format!("{err:#}"),
        })?;
        let ticker = Arc::new(TickerShared::default());
        let thread = spawn_ticker(engine.clone(), Arc::clone(&ticker), settings.epoch_tick)
            .map_err(EngineError::Ticker)?;
        Ok(Self {
            inner: Arc::new(EngineInner {
                engine,
                settings,
                ticker,
                thread: Mutex::new(Some(thread)),
            }),
        })
    }

    /// The wasmtime engine.
    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// The settings the engine was built with.
    pub fn settings(&self) -> &EngineConfig {
        &self.inner.settings
    }

    /// Marks a guest as executing until the returned guard is dropped; the ticker only ticks
    /// while some guard is alive.
    pub fn enter(&self) -> ActiveGuest {
        let mut state = self.inner.ticker.lock();
        state.running = state.running.saturating_add(1);
        drop(state);
        self.inner.ticker.wake.notify_all();
        ActiveGuest {
            ticker: Arc::clone(&self.inner.ticker),
        }
    }

    /// Number of guests currently marked as executing.
    pub fn active_guests(&self) -> usize {
        self.inner.ticker.lock().running
    }

    /// Epoch ticks since the engine was built (wraps); for metrics and tests.
    pub fn ticks(&self) -> u64 {
        self.inner.ticker.lock().ticks
    }

    /// Stops the epoch ticker and waits for its thread. Guests still running after this are
    /// no longer time-sliced, throttled or killable while they compute; call it at shutdown.
    pub fn stop_ticker(&self) {
        self.inner.stop_ticker();
    }
}

impl EngineInner {
    fn stop_ticker(&self) {
        self.ticker.lock().stop = true;
        self.ticker.wake.notify_all();
        let thread = self
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(thread) = thread {
            // The ticker body cannot panic; a join error would only repeat that panic.
            let _ = thread.join();
        }
    }
}

impl Drop for EngineInner {
    fn drop(&mut self) {
        self.stop_ticker();
    }
}

/// Proof that a guest is executing; see [`WasmEngine::enter`].
pub struct ActiveGuest {
    ticker: Arc<TickerShared>,
}

impl Drop for ActiveGuest {
    fn drop(&mut self) {
        let mut state = self.ticker.lock();
        state.running = state.running.saturating_sub(1);
    }
}

fn spawn_ticker(
    engine: Engine,
    shared: Arc<TickerShared>,
    tick: Duration,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("wasm-epoch".to_owned())
        .stack_size(64 << 10)
        .spawn(move || loop {
            let mut state = shared.lock();
            while state.running == 0 && !state.stop {
                state = shared
                    .wake
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            if state.stop {
                return;
            }
            // Waiting on the condvar instead of sleeping lets a stop request end the wait.
            let (state, _) = shared
                .wake
                .wait_timeout_while(state, tick, |state| !state.stop)
                .unwrap_or_else(PoisonError::into_inner);
            if state.stop {
                return;
            }
            let mut state = state;
            state.ticks = state.ticks.wrapping_add(1);
            drop(state);
            engine.increment_epoch();
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn small_config() -> EngineConfig {
        EngineConfig {
            epoch_tick: Duration::from_millis(2),
            ..EngineConfig::default()
        }
    }

    #[test]
    fn default_config_builds_an_engine() {
        let engine = WasmEngine::new(EngineConfig::default());
        assert!(engine.is_ok(), "{:?}", engine.err());
    }

    #[test]
    fn pooling_config_builds_an_engine() {
        let settings = EngineConfig {
            pooling: Some(PoolingConfig {
                max_instances: 16,
                max_memory_bytes: 64 << 20,
            }),
            ..EngineConfig::default()
        };
        let engine = WasmEngine::new(settings);
        assert!(engine.is_ok(), "{:?}", engine.err());
    }

    #[test]
    fn out_of_range_settings_are_rejected_with_the_setting_name() {
        let bad = [
            EngineConfig {
                epoch_tick: Duration::ZERO,
                ..EngineConfig::default()
            },
            EngineConfig {
                max_wasm_stack: 1024,
                ..EngineConfig::default()
            },
            EngineConfig {
                pooling: Some(PoolingConfig {
                    max_instances: 0,
                    max_memory_bytes: 1 << 20,
                }),
                ..EngineConfig::default()
            },
        ];
        for settings in bad {
            let Err(err) = WasmEngine::new(settings.clone()) else {
                panic!("{settings:?} was accepted");
            };
            assert!(matches!(err, EngineError::InvalidSetting { .. }), "{err}");
        }
    }

    #[test]
    fn unknown_target_is_a_clear_error() {
        let err = build_config(&EngineConfig::default(), Some("not-a-triple")).err();
        assert!(
            matches!(&err, Some(EngineError::UnsupportedTarget { target, .. }) if target == "not-a-triple"),
            "{err:?}"
        );
    }

    #[test]
    fn ticker_ticks_only_while_a_guest_is_active() {
        let wasm = WasmEngine::new(small_config()).expect("engine");
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(wasm.ticks(), 0, "ticked with no guest running");
        let guard = wasm.enter();
        assert_eq!(wasm.active_guests(), 1);
        let started = Instant::now();
        while wasm.ticks() < 3 && started.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(2));
        }
        assert!(wasm.ticks() >= 3, "ticker did not tick while a guest ran");
        drop(guard);
        assert_eq!(wasm.active_guests(), 0);
        // One tick may already be under way when the guard drops; after that it parks.
        std::thread::sleep(Duration::from_millis(10));
        let parked_at = wasm.ticks();
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(
            wasm.ticks(),
            parked_at,
            "ticker kept ticking with no guest running"
        );
    }

    #[test]
    fn stop_ticker_returns_promptly_and_is_idempotent() {
        let wasm = WasmEngine::new(EngineConfig {
            epoch_tick: Duration::from_secs(1),
            ..EngineConfig::default()
        })
        .expect("engine");
        let _guard = wasm.enter();
        let started = Instant::now();
        wasm.stop_ticker();
        wasm.stop_ticker();
        // The ticker waits on a condvar, so stopping does not wait out the 1 s tick.
        assert!(started.elapsed() < Duration::from_millis(900));
    }
}
