//! Per-instance resource limits: a hard memory cap enforced through wasmtime's
//! [`ResourceLimiter`], and CPU accounting that turns epoch ticks into a CFS-like quota.
//!
//! Both are plain state machines driven by wasmtime's callbacks, so they are tested here without
//! running a guest.

use std::time::{Duration, Instant};

use wasmtime::ResourceLimiter;

/// Length of one CPU accounting period, as in the Linux CFS bandwidth controller.
const CPU_PERIOD: Duration = Duration::from_millis(100);

/// Limits for one running instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Hard cap on the sum of all linear memories, in bytes; growth past it is refused and the
    /// instance is reported as OOMKilled if it then fails. `None`: no cap beyond wasm's own.
    pub memory_bytes: Option<u64>,
    /// Most elements any one table may grow to.
    pub table_elements: u64,
    /// CPU share in millicores (1000 = one core); the guest is paused once it has used its share
    /// of a 100 ms period. `None`: no throttling.
    pub cpu_millicores: Option<u32>,
    /// Wall-clock time after which the instance is stopped (DeadlineExceeded).
    pub wall_timeout: Option<Duration>,
    /// Guest execution time after which the instance is stopped (CpuBudgetExceeded).
    pub cpu_budget: Option<Duration>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory_bytes: None,
            table_elements: 100_000,
            cpu_millicores: None,
            wall_timeout: None,
            cpu_budget: None,
        }
    }
}

/// Enforces [`Limits::memory_bytes`] and [`Limits::table_elements`] and remembers whether a
/// request was refused (by the cap or by the engine), which makes a later failure an OOM kill.
#[derive(Debug)]
pub struct MemoryLimiter {
    cap: Option<u64>,
    table_elements: u64,
    reserved: u64,
    /// The last growth granted, taken back if the engine then fails it.
    pending: u64,
    refused: bool,
}

impl MemoryLimiter {
    /// A limiter for `limits`.
    pub fn new(limits: &Limits) -> Self {
        Self {
            cap: limits.memory_bytes,
            table_elements: limits.table_elements,
            reserved: 0,
            pending: 0,
            refused: false,
        }
    }

    /// Whether some memory or table growth was refused.
    pub fn refused(&self) -> bool {
        self.refused
    }

    /// Bytes of linear memory granted so far, over all memories.
    pub fn reserved(&self) -> u64 {
        self.reserved
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let growth = u64::try_from(desired.saturating_sub(current)).unwrap_or(u64::MAX);
        let total = self.reserved.saturating_add(growth);
        if self.cap.is_some_and(|cap| total > cap) {
            self.refused = true;
            // Ok(false) makes memory.grow return -1, so a guest that checks can still exit
            // cleanly; one that does not traps, and either way is reported as OOMKilled.
            return Ok(false);
        }
        self.reserved = total;
        self.pending = growth;
        Ok(true)
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        // The engine could not provide what was granted (a pool slot's size, or the host is
        // out of memory): for the guest that is the same as hitting its limit.
        tracing::debug!(error = %format!("{error:#}"), "linear memory growth failed");
        self.reserved = self.reserved.saturating_sub(self.pending);
        self.pending = 0;
        self.refused = true;
        Ok(())
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if u64::try_from(desired).map_or(true, |desired| desired > self.table_elements) {
            self.refused = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        tracing::debug!(error = %format!("{error:#}"), "table growth failed");
        self.refused = true;
        Ok(())
    }

    fn instances(&self) -> usize {
        // Components instantiate several core modules; far more than this is an attack.
        64
    }

    fn tables(&self) -> usize {
        64
    }

    fn memories(&self) -> usize {
        16
    }
}

/// What the instance should do when its epoch deadline is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CpuVerdict {
    /// Keep running (after yielding to the executor for fairness).
    Continue,
    /// Pause for this long: the share of the current period is used up.
    Throttle(Duration),
    /// The CPU time budget is spent.
    BudgetExceeded,
}

/// CPU accounting for one instance, driven by epoch-deadline callbacks.
///
/// The deadline is always one tick ahead, so while a guest computes the callback runs about
/// once per tick. Each call charges the time since the previous one, capped at one tick: a guest
/// that was waiting in a host call (sleep, I/O) when the epoch moved is charged at most one tick,
/// not the time it spent waiting.
#[derive(Debug)]
pub struct CpuGovernor {
    tick: Duration,
    quota: Option<Duration>,
    share_millis: u32,
    budget: Option<Duration>,
    period_start: Instant,
    used_in_period: Duration,
    used_total: Duration,
    last_check: Instant,
}

impl CpuGovernor {
    /// A governor for `limits`, ticking every `tick`, starting at `now`.
    pub fn new(limits: &Limits, tick: Duration, now: Instant) -> Self {
        // A guest runs on one thread, so a share of a core or more can never be exceeded.
        let share_millis = limits.cpu_millicores.unwrap_or(1000);
        let quota = limits
            .cpu_millicores
            .filter(|millis| *millis < 1000)
            .map(|millis| CPU_PERIOD.saturating_mul(millis.max(1)) / 1000);
        Self {
            tick,
            quota,
            share_millis: share_millis.max(1),
            budget: limits.cpu_budget,
            period_start: now,
            used_in_period: Duration::ZERO,
            used_total: Duration::ZERO,
            last_check: now,
        }
    }

    /// Guest execution time charged so far.
    pub fn used(&self) -> Duration {
        self.used_total
    }

    /// Charges the time since the last call and says what to do next.
    pub fn on_deadline(&mut self, now: Instant) -> CpuVerdict {
        let charged = now
            .saturating_duration_since(self.last_check)
            .min(self.tick);
        self.used_total = self.used_total.saturating_add(charged);
        if self.budget.is_some_and(|budget| self.used_total > budget) {
            return CpuVerdict::BudgetExceeded;
        }
        if now.saturating_duration_since(self.period_start) >= CPU_PERIOD {
            self.period_start = now;
            self.used_in_period = charged;
        } else {
            self.used_in_period = self.used_in_period.saturating_add(charged);
        }
        self.last_check = now;
        let Some(quota) = self.quota else {
            return CpuVerdict::Continue;
        };
        if self.used_in_period < quota {
            return CpuVerdict::Continue;
        }
        // The pause makes the average hold even when the guest overran its quota by part of a
        // tick: what it used must be spread over used / share of wall time.
        let spread = self.used_in_period.saturating_mul(1000) / self.share_millis;
        let wake = self
            .period_start
            .checked_add(spread.max(CPU_PERIOD))
            .unwrap_or(now);
        let pause = wake.saturating_duration_since(now);
        self.period_start = wake;
        self.used_in_period = Duration::ZERO;
        self.last_check = wake;
        CpuVerdict::Throttle(pause)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TICK: Duration = Duration::from_millis(10);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn limits(cpu: Option<u32>, budget: Option<Duration>) -> Limits {
        Limits {
            cpu_millicores: cpu,
            cpu_budget: budget,
            ..Limits::default()
        }
    }

    #[test]
    fn memory_growth_past_the_cap_is_refused_and_remembered() {
        let mut limiter = MemoryLimiter::new(&Limits {
            memory_bytes: Some(4 << 20),
            ..Limits::default()
        });
        assert!(matches!(limiter.memory_growing(0, 1 << 20, None), Ok(true)));
        assert!(matches!(
            limiter.memory_growing(1 << 20, 4 << 20, None),
            Ok(true)
        ));
        assert!(!limiter.refused());
        assert!(matches!(
            limiter.memory_growing(4 << 20, (4 << 20) + 1, None),
            Ok(false)
        ));
        assert!(limiter.refused());
        assert_eq!(limiter.reserved(), 4 << 20);
    }

    #[test]
    fn growth_the_engine_fails_is_taken_back_and_counts_as_refused() {
        let mut limiter = MemoryLimiter::new(&Limits::default());
        assert!(matches!(limiter.memory_growing(0, 1 << 20, None), Ok(true)));
        assert!(matches!(
            limiter.memory_growing(1 << 20, 3 << 20, None),
            Ok(true)
        ));
        assert!(limiter
            .memory_grow_failed(wasmtime::Error::msg("pool slot is full"))
            .is_ok());
        assert_eq!(limiter.reserved(), 1 << 20);
        assert!(limiter.refused());
    }

    #[test]
    fn the_cap_covers_all_memories_together() {
        let mut limiter = MemoryLimiter::new(&Limits {
            memory_bytes: Some(3 << 20),
            ..Limits::default()
        });
        assert!(matches!(limiter.memory_growing(0, 2 << 20, None), Ok(true)));
        // A second memory of 2 MiB would bring the total to 4 MiB.
        assert!(matches!(
            limiter.memory_growing(0, 2 << 20, None),
            Ok(false)
        ));
        assert!(limiter.refused());
    }

    #[test]
    fn no_cap_allows_any_growth() {
        let mut limiter = MemoryLimiter::new(&Limits::default());
        assert!(matches!(
            limiter.memory_growing(0, usize::MAX, None),
            Ok(true)
        ));
        assert!(!limiter.refused());
    }

    #[test]
    fn table_growth_past_the_element_cap_is_refused() {
        let mut limiter = MemoryLimiter::new(&Limits {
            table_elements: 10,
            ..Limits::default()
        });
        assert!(matches!(limiter.table_growing(0, 10, None), Ok(true)));
        assert!(matches!(limiter.table_growing(10, 11, None), Ok(false)));
        assert!(limiter.refused());
    }

    #[test]
    fn unlimited_cpu_never_throttles() {
        let start = Instant::now();
        let mut cpu = CpuGovernor::new(&limits(None, None), TICK, start);
        for n in 1..=100 {
            assert_eq!(cpu.on_deadline(start + ms(10 * n)), CpuVerdict::Continue);
        }
        assert_eq!(cpu.used(), ms(1000));
    }

    #[test]
    fn a_busy_guest_is_held_to_its_share() {
        let start = Instant::now();
        let mut cpu = CpuGovernor::new(&limits(Some(100), None), TICK, start);
        // Simulate a guest that computes whenever it is not paused, for 10 s of wall time.
        let mut now = start;
        let end = start + Duration::from_secs(10);
        while now < end {
            now += TICK;
            if let CpuVerdict::Throttle(pause) = cpu.on_deadline(now) {
                now += pause;
            }
        }
        let share = cpu.used().as_secs_f64() / now.duration_since(start).as_secs_f64();
        assert!((0.09..=0.11).contains(&share), "share {share}");
    }

    #[test]
    fn an_overrun_is_paid_back_with_a_longer_pause() {
        let start = Instant::now();
        let mut cpu = CpuGovernor::new(&limits(Some(100), None), TICK, start);
        // 9.9 ms is under the 10 ms quota, the next tick brings it to 19.9 ms.
        assert_eq!(
            cpu.on_deadline(start + Duration::from_micros(9_900)),
            CpuVerdict::Continue
        );
        let verdict = cpu.on_deadline(start + Duration::from_micros(19_900));
        assert_eq!(
            verdict,
            CpuVerdict::Throttle(Duration::from_micros(199_000 - 19_900))
        );
    }

    #[test]
    fn waiting_in_host_calls_is_charged_at_most_one_tick() {
        let start = Instant::now();
        let mut cpu = CpuGovernor::new(&limits(Some(500), None), TICK, start);
        // The guest slept for 5 s in a host call and noticed the deadline on waking.
        assert_eq!(
            cpu.on_deadline(start + Duration::from_secs(5)),
            CpuVerdict::Continue
        );
        assert_eq!(cpu.used(), TICK);
    }

    #[test]
    fn the_budget_ends_the_instance_once_spent() {
        let start = Instant::now();
        let mut cpu = CpuGovernor::new(&limits(None, Some(ms(35))), TICK, start);
        assert_eq!(cpu.on_deadline(start + ms(10)), CpuVerdict::Continue);
        assert_eq!(cpu.on_deadline(start + ms(20)), CpuVerdict::Continue);
        assert_eq!(cpu.on_deadline(start + ms(30)), CpuVerdict::Continue);
        assert_eq!(cpu.on_deadline(start + ms(40)), CpuVerdict::BudgetExceeded);
    }

    #[test]
    fn a_zero_share_is_treated_as_the_smallest_share() {
        let start = Instant::now();
        let mut cpu = CpuGovernor::new(&limits(Some(0), None), TICK, start);
        // 1 millicore: 0.1 ms per 100 ms period, so the first tick already throttles.
        assert!(matches!(cpu.on_deadline(start + TICK), CpuVerdict::Throttle(p) if p > ms(9_000)));
    }
}
