//! When probes run and what their results mean, as the kubelet's probe workers decide it:
//! initial delay, period, success and failure thresholds, and the startup probe gating the
//! other two. Pure: the clock comes in as an argument.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, Probe};

use super::probe::ProbeOutcome;

/// Which probe of a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProbeKind {
    /// `startupProbe`: gates the other two until it passes.
    Startup,
    /// `livenessProbe`: failing it restarts the container.
    Liveness,
    /// `readinessProbe`: decides whether the container is ready.
    Readiness,
}

impl ProbeKind {
    /// The container's probe of this kind.
    pub fn of(self, container: &Container) -> Option<&Probe> {
        match self {
            Self::Startup => container.startup_probe.as_ref(),
            Self::Liveness => container.liveness_probe.as_ref(),
            Self::Readiness => container.readiness_probe.as_ref(),
        }
    }
}

/// A change the agent acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// The startup probe passed: liveness and readiness probes start.
    Started,
    /// The readiness probe passed its success threshold.
    Ready,
    /// The readiness probe reached its failure threshold.
    NotReady,
    /// A liveness or startup probe reached its failure threshold: restart the container.
    Failed,
}

/// One probe of one container instance.
#[derive(Debug, Clone)]
pub struct ProbeTracker {
    kind: ProbeKind,
    initial_delay: Duration,
    period: Duration,
    success_threshold: u32,
    failure_threshold: u32,
    container_started: Instant,
    last_probe: Option<Instant>,
    /// The result the agent acts on (the kubelet's results manager).
    result: bool,
    last_outcome: Option<bool>,
    run: u32,
    /// Set once a liveness or startup probe failed: the container is about to be restarted
    /// and is not probed again until it is.
    on_hold: bool,
}

fn seconds(value: Option<i32>, default: u64) -> Duration {
    let value = value.and_then(|v| u64::try_from(v).ok()).unwrap_or(default);
    Duration::from_secs(value)
}

fn count(value: Option<i32>, default: u32) -> u32 {
    value
        .and_then(|v| u32::try_from(v).ok())
        .filter(|v| *v > 0)
        .unwrap_or(default)
}

impl ProbeTracker {
    /// A tracker for `probe` of a container that started at `container_started`, with the
    /// Kubernetes defaults (period 10 s, success 1, failure 3, no initial delay).
    pub fn new(kind: ProbeKind, probe: &Probe, container_started: Instant) -> Self {
        Self {
            kind,
            initial_delay: seconds(probe.initial_delay_seconds, 0),
            period: seconds(probe.period_seconds.filter(|p| *p > 0), 10),
            // Liveness and startup probes must have a success threshold of 1 in Kubernetes.
            success_threshold: match kind {
                ProbeKind::Readiness => count(probe.success_threshold, 1),
                _ => 1,
            },
            failure_threshold: count(probe.failure_threshold, 3),
            container_started,
            last_probe: None,
            // A container is not ready and not started until a probe says so, and alive
            // until a probe says otherwise.
            result: kind == ProbeKind::Liveness,
            last_outcome: None,
            run: 0,
            on_hold: false,
        }
    }

    /// Whether the probe should run now.
    pub fn due(&self, now: Instant) -> bool {
        !self.on_hold
            && now >= self.container_started + self.initial_delay
            && self.last_probe.is_none_or(|last| now >= last + self.period)
    }

    /// When the probe is next due (`None` while on hold).
    pub fn next_due(&self) -> Option<Instant> {
        if self.on_hold {
            return None;
        }
        let first = self.container_started + self.initial_delay;
        Some(match self.last_probe {
            Some(last) => (last + self.period).max(first),
            None => first,
        })
    }

    /// The current result: ready, alive or started, depending on the kind.
    pub fn result(&self) -> bool {
        self.result
    }

    /// Records one run's outcome. Unsupported probes count neither way.
    pub fn record(&mut self, outcome: &ProbeOutcome, now: Instant) -> Option<Transition> {
        self.last_probe = Some(now);
        let success = match outcome {
            ProbeOutcome::Success => true,
            ProbeOutcome::Failure(_) => false,
            ProbeOutcome::Unsupported(_) => return None,
        };
        if self.last_outcome == Some(success) {
            self.run = self.run.saturating_add(1);
        } else {
            self.last_outcome = Some(success);
            self.run = 1;
        }
        let threshold = if success {
            self.success_threshold
        } else {
            self.failure_threshold
        };
        if self.run < threshold {
            return None;
        }
        if self.kind != ProbeKind::Readiness && !success {
            // Not started yet counts as "unknown" for a startup probe, so reaching the
            // failure threshold is always a change: the container is restarted.
            self.result = false;
            self.on_hold = true;
            self.run = 0;
            return Some(Transition::Failed);
        }
        if self.result == success {
            return None;
        }
        self.result = success;
        match (self.kind, success) {
            (ProbeKind::Readiness, true) => Some(Transition::Ready),
            (ProbeKind::Readiness, false) => Some(Transition::NotReady),
            (ProbeKind::Startup, _) => Some(Transition::Started),
            // A liveness success only matters as the end of a failure run.
            (ProbeKind::Liveness, _) => None,
        }
    }
}

/// The probes of one container instance, with the startup probe gating the others.
#[derive(Debug, Clone)]
pub struct ContainerProbes {
    startup: Option<ProbeTracker>,
    liveness: Option<ProbeTracker>,
    readiness: Option<ProbeTracker>,
}

impl ContainerProbes {
    /// Trackers for the probes `container` declares, for an instance started at `started`.
    pub fn new(container: &Container, started: Instant) -> Self {
        let tracker = |kind: ProbeKind| {
            kind.of(container)
                .map(|p| ProbeTracker::new(kind, p, started))
        };
        Self {
            startup: tracker(ProbeKind::Startup),
            liveness: tracker(ProbeKind::Liveness),
            readiness: tracker(ProbeKind::Readiness),
        }
    }

    /// Whether the container has started (`ContainerStatus.started`): its startup probe
    /// passed, or it has none.
    pub fn started(&self) -> bool {
        self.startup.as_ref().is_none_or(ProbeTracker::result)
    }

    /// Whether the container is ready: started, and its readiness probe passed if it has one.
    pub fn ready(&self) -> bool {
        self.started() && self.readiness.as_ref().is_none_or(ProbeTracker::result)
    }

    /// When the next probe is due, for the agent's timer.
    pub fn next_due(&self) -> Option<Instant> {
        let trackers: Vec<&ProbeTracker> = if self.started() {
            self.liveness.iter().chain(&self.readiness).collect()
        } else {
            self.startup.iter().collect()
        };
        trackers
            .into_iter()
            .filter_map(ProbeTracker::next_due)
            .min()
    }

    /// The probes to run now: only the startup probe until it passes, then the others.
    pub fn due(&self, now: Instant) -> Vec<ProbeKind> {
        if !self.started() {
            return self
                .startup
                .iter()
                .filter(|t| t.due(now))
                .map(|_| ProbeKind::Startup)
                .collect();
        }
        [
            (&self.liveness, ProbeKind::Liveness),
            (&self.readiness, ProbeKind::Readiness),
        ]
        .into_iter()
        .filter(|(tracker, _)| tracker.as_ref().is_some_and(|t| t.due(now)))
        .map(|(_, kind)| kind)
        .collect()
    }

    /// Records the outcome of a run of the `kind` probe.
    pub fn record(
        &mut self,
        kind: ProbeKind,
        outcome: &ProbeOutcome,
        now: Instant,
    ) -> Option<Transition> {
        let tracker = match kind {
            ProbeKind::Startup => self.startup.as_mut(),
            ProbeKind::Liveness => self.liveness.as_mut(),
            ProbeKind::Readiness => self.readiness.as_mut(),
        }?;
        tracker.record(outcome, now)
    }
}

#[cfg(test)]
#[path = "probe_tracker_tests.rs"]
mod tests;
