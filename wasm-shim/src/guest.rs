//! Per-store state: the WASI context of a preview 1 module or a preview 2 component, plus the
//! guard that enforces limits and kills from the epoch-deadline callback.

use std::time::{Duration, Instant};

use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};
use wasmtime::component::ResourceTable;
use wasmtime::{Engine, Store, UpdateDeadline};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

use crate::limits::{CpuGovernor, CpuVerdict, Limits, MemoryLimiter};

/// Stops a running instance: a computing guest is interrupted at its next epoch check (within
/// one tick), one waiting in a host call is cancelled at once. Cheap to clone; create one per
/// instance and keep a clone to call [`KillHandle::kill`].
#[derive(Clone, Default, Debug)]
pub struct KillHandle {
    token: CancellationToken,
}

impl KillHandle {
    /// A handle nobody has used yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// A handle that is killed when this one is (but not the other way round), for instances
    /// that must stop together, e.g. all requests of one HTTP server.
    pub fn child(&self) -> Self {
        Self {
            token: self.token.child_token(),
        }
    }

    /// Asks the instance to stop; it ends with reason `Killed`. Idempotent.
    pub fn kill(&self) {
        self.token.cancel();
    }

    /// Whether [`KillHandle::kill`] was called on this handle or a parent.
    pub fn is_killed(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Resolves once [`KillHandle::kill`] was called on this handle or a parent, for hosts
    /// that supervise something besides a single guest (e.g. an HTTP server).
    pub async fn killed(&self) {
        self.token.cancelled().await;
    }

    /// Resolves once the instance is killed.
    pub(crate) fn cancelled(&self) -> WaitForCancellationFuture<'_> {
        self.token.cancelled()
    }
}

/// Why the guard interrupted the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Interruption {
    Killed,
    CpuBudget,
}

/// Limits and kill state of one store.
pub(crate) struct Guard {
    pub(crate) limiter: MemoryLimiter,
    pub(crate) cpu: CpuGovernor,
    pub(crate) kill: KillHandle,
    pub(crate) interrupted: Option<Interruption>,
}

impl Guard {
    pub(crate) fn new(limits: &Limits, tick: Duration, kill: KillHandle) -> Self {
        Self {
            limiter: MemoryLimiter::new(limits),
            cpu: CpuGovernor::new(limits, tick, Instant::now()),
            kill,
            interrupted: None,
        }
    }

    /// Decides, at an epoch deadline, whether the guest continues, pauses or stops.
    fn on_deadline(&mut self) -> UpdateDeadline {
        if self.kill.is_killed() {
            self.interrupted = Some(Interruption::Killed);
            return UpdateDeadline::Interrupt;
        }
        match self.cpu.on_deadline(Instant::now()) {
            // Yielding every tick keeps one busy guest from holding an executor thread.
            CpuVerdict::Continue => UpdateDeadline::Yield(1),
            CpuVerdict::Throttle(pause) => {
                UpdateDeadline::YieldCustom(1, Box::pin(tokio::time::sleep(pause)))
            }
            CpuVerdict::BudgetExceeded => {
                self.interrupted = Some(Interruption::CpuBudget);
                UpdateDeadline::Interrupt
            }
        }
    }
}

/// Store data that carries a [`Guard`].
pub(crate) trait Guarded: Send + 'static {
    fn guard(&mut self) -> &mut Guard;
}

/// Store data of a preview 1 module.
pub(crate) struct P1State {
    pub(crate) wasi: WasiP1Ctx,
    pub(crate) guard: Guard,
}

impl Guarded for P1State {
    fn guard(&mut self) -> &mut Guard {
        &mut self.guard
    }
}

/// Store data of a preview 2 component (command or HTTP proxy).
pub(crate) struct P2State {
    pub(crate) wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) http: WasiHttpCtx,
    pub(crate) hooks: NoOutgoingHttp,
    pub(crate) guard: Guard,
}

impl P2State {
    pub(crate) fn new(wasi: WasiCtx, guard: Guard) -> Self {
        Self {
            wasi,
            table: ResourceTable::new(),
            http: WasiHttpCtx::new(),
            hooks: NoOutgoingHttp,
            guard,
        }
    }
}

impl Guarded for P2State {
    fn guard(&mut self) -> &mut Guard {
        &mut self.guard
    }
}

impl WasiView for P2State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for P2State {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

/// Refuses every outgoing HTTP request: a guest gets network access only through its socket
/// policy, and outgoing `wasi:http` is not part of it yet.
pub(crate) struct NoOutgoingHttp;

impl WasiHttpHooks for NoOutgoingHttp {
    fn send_request(
        &mut self,
        _request: http::Request<wasmtime_wasi_http::WasiBody>,
        _options: Option<wasmtime_wasi_http::RequestOptions>,
        _fut: Box<dyn std::future::Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ) -> Box<
        dyn std::future::Future<
                Output = wasmtime_wasi_http::Result<(
                    http::Response<wasmtime_wasi_http::WasiBody>,
                    Box<
                        dyn std::future::Future<Output = Result<(), wasmtime_wasi_http::Error>>
                            + Send,
                    >,
                )>,
            > + Send,
    > {
        Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) })
    }
}

/// A store for `data` with its memory limiter, epoch callback and first deadline in place.
pub(crate) fn new_store<T: Guarded>(engine: &Engine, data: T) -> Store<T> {
    let mut store = Store::new(engine, data);
    store.limiter(|data| &mut data.guard().limiter);
    store.epoch_deadline_callback(|mut ctx| Ok(ctx.data_mut().guard().on_deadline()));
    store.set_epoch_deadline(1);
    store
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(limits: Limits) -> Guard {
        Guard::new(&limits, Duration::from_millis(10), KillHandle::new())
    }

    #[test]
    fn a_killed_guard_interrupts_and_says_why() {
        let mut guard = guard(Limits::default());
        assert!(matches!(guard.on_deadline(), UpdateDeadline::Yield(1)));
        guard.kill.kill();
        assert!(matches!(guard.on_deadline(), UpdateDeadline::Interrupt));
        assert_eq!(guard.interrupted, Some(Interruption::Killed));
    }

    #[test]
    fn a_spent_budget_interrupts() {
        let mut guard = guard(Limits {
            cpu_budget: Some(Duration::ZERO),
            ..Limits::default()
        });
        std::thread::sleep(Duration::from_millis(2));
        assert!(matches!(guard.on_deadline(), UpdateDeadline::Interrupt));
        assert_eq!(guard.interrupted, Some(Interruption::CpuBudget));
    }

    #[test]
    fn killing_a_parent_kills_its_children_only_downwards() {
        let parent = KillHandle::new();
        let child = parent.child();
        let other_child = parent.child();
        child.kill();
        assert!(child.is_killed() && !parent.is_killed() && !other_child.is_killed());
        parent.kill();
        assert!(other_child.is_killed());
    }

    #[tokio::test]
    async fn kill_wakes_waiters_and_is_idempotent() {
        let kill = KillHandle::new();
        let waiter = kill.clone();
        let task = tokio::spawn(async move { waiter.cancelled().await });
        kill.kill();
        kill.kill();
        assert!(kill.is_killed());
        let woke = tokio::time::timeout(Duration::from_secs(5), task).await;
        assert!(matches!(woke, Ok(Ok(()))));
    }
}
