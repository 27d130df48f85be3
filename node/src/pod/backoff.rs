//! Restart decisions: the restart policy, and the kubelet's CrashLoopBackOff (10 s, doubling,
//! capped at 300 s, forgotten once a container has run for twice the cap, i.e. 10 minutes).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::container::ContainerState;
use super::events::go_duration;

/// First back-off after a container exits.
pub const INITIAL_BACKOFF: Duration = Duration::from_secs(10);
/// Longest back-off.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// A Pod's `spec.restartPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartPolicy {
    /// Restart whatever the exit code (the default).
    Always,
    /// Restart after a non-zero exit code.
    OnFailure,
    /// Never restart.
    Never,
}

impl RestartPolicy {
    /// The policy as written in a spec. Absent and unknown values mean Always: the API
    /// server defaults to it and rejects anything else, so an unknown value cannot come
    /// from a valid Pod.
    pub fn parse(policy: Option<&str>) -> Self {
        match policy {
            Some("OnFailure") => Self::OnFailure,
            Some("Never") => Self::Never,
            _ => Self::Always,
        }
    }
}

/// Whether a regular container that exited with `exit_code` is started again.
pub fn should_restart(policy: RestartPolicy, exit_code: i32) -> bool {
    match policy {
        RestartPolicy::Always => true,
        RestartPolicy::OnFailure => exit_code != 0,
        RestartPolicy::Never => false,
    }
}

/// Whether an init container (not a sidecar) that exited with `exit_code` is started again:
/// a successful one is done, and a failed one is retried unless the policy is Never.
pub fn should_restart_init(policy: RestartPolicy, exit_code: i32) -> bool {
    exit_code != 0 && policy != RestartPolicy::Never
}

/// What to do with a container that exited and is to be restarted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackOffDecision {
    /// Start it now.
    Restart,
    /// Leave it in CrashLoopBackOff.
    Wait {
        /// The current back-off, as shown in the message.
        backoff: Duration,
        /// When it may be restarted.
        until: Instant,
    },
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    backoff: Duration,
    last_update: Instant,
}

/// CrashLoopBackOff state of one Pod's containers, keyed by container name. It is the
/// kubelet's `flowcontrol.Backoff` without jitter: the clock comes in as an argument.
#[derive(Debug, Clone)]
pub struct CrashLoopBackOff {
    initial: Duration,
    max: Duration,
    entries: HashMap<String, Entry>,
}

impl Default for CrashLoopBackOff {
    fn default() -> Self {
        Self::new(INITIAL_BACKOFF, MAX_BACKOFF)
    }
}

impl CrashLoopBackOff {
    /// Back-off starting at `initial`, doubling up to `max`.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max,
            entries: HashMap::new(),
        }
    }

    /// Decides for a container that exited at `finished_at`: wait while the current back-off
    /// since that exit has not passed; otherwise restart now and grow the back-off for the next
    /// exit (or start over if the container ran for twice the cap since its last restart).
    pub fn decide(
        &mut self,
        container: &str,
        finished_at: Instant,
        now: Instant,
    ) -> BackOffDecision {
        if let Some(entry) = self.entries.get(container) {
            if !self.expired(entry, finished_at) {
                let until = finished_at + entry.backoff;
                if now < until {
                    return BackOffDecision::Wait {
                        backoff: entry.backoff,
                        until,
                    };
                }
            }
        }
        let backoff = match self.entries.get(container) {
            Some(entry) if !self.expired(entry, finished_at) => (entry.backoff * 2).min(self.max),
            _ => self.initial,
        };
        self.entries.insert(
            container.to_owned(),
            Entry {
                backoff,
                last_update: now,
            },
        );
        BackOffDecision::Restart
    }

    /// Forgets a container (removed from the Pod, or the Pod is gone).
    pub fn forget(&mut self, container: &str) {
        self.entries.remove(container);
    }

    fn expired(&self, entry: &Entry, finished_at: Instant) -> bool {
        finished_at.saturating_duration_since(entry.last_update) > self.max * 2
    }
}

/// The waiting state shown while a container backs off, worded as the kubelet words it.
pub fn crash_loop_state(
    backoff: Duration,
    container: &str,
    pod_name: &str,
    namespace: &str,
    uid: &str,
) -> ContainerState {
    ContainerState::Waiting {
        reason: "CrashLoopBackOff".to_owned(),
        message: Some(format!(
            "back-off {} restarting failed container={container} pod={pod_name}_{namespace}({uid})",
            go_duration(backoff)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    /// Runs a container that crashes after `ran` seconds, restarting as soon as allowed, and
    /// returns the back-off waited before each restart and the time of the last restart.
    fn crash_loop(
        backoff: &mut CrashLoopBackOff,
        start: Instant,
        ran: u64,
        times: usize,
    ) -> (Vec<u64>, Instant) {
        let mut waits = Vec::new();
        let mut now = start;
        for _ in 0..times {
            now += secs(ran);
            let finished = now;
            loop {
                match backoff.decide("app", finished, now) {
                    BackOffDecision::Restart => break,
                    BackOffDecision::Wait { until, .. } => now = until,
                }
            }
            waits.push(now.duration_since(finished).as_secs());
        }
        (waits, now)
    }

    #[test]
    fn the_back_off_doubles_from_ten_seconds_up_to_five_minutes() {
        let mut backoff = CrashLoopBackOff::default();
        let (waits, _) = crash_loop(&mut backoff, Instant::now(), 1, 8);
        assert_eq!(waits, [0, 10, 20, 40, 80, 160, 300, 300]);
    }

    #[test]
    fn a_container_that_ran_ten_minutes_starts_over() {
        let mut backoff = CrashLoopBackOff::default();
        let (_, restarted) = crash_loop(&mut backoff, Instant::now(), 1, 5);
        assert_eq!(crash_loop(&mut backoff, restarted, 601, 2).0, [0, 0]);
        // Nine minutes is not enough: the back-off keeps growing.
        let mut other = CrashLoopBackOff::default();
        let (_, restarted) = crash_loop(&mut other, Instant::now(), 1, 3);
        assert_eq!(crash_loop(&mut other, restarted, 540, 1).0, [40]);
    }

    #[test]
    fn the_wait_reports_the_current_back_off() {
        let mut backoff = CrashLoopBackOff::default();
        let t0 = Instant::now();
        assert_eq!(backoff.decide("app", t0, t0), BackOffDecision::Restart);
        let exit = t0 + secs(2);
        assert_eq!(
            backoff.decide("app", exit, exit + secs(3)),
            BackOffDecision::Wait {
                backoff: secs(10),
                until: exit + secs(10)
            }
        );
        // Other containers of the pod are not affected.
        assert_eq!(backoff.decide("side", exit, exit), BackOffDecision::Restart);
        backoff.forget("app");
        assert_eq!(backoff.decide("app", exit, exit), BackOffDecision::Restart);
    }

    #[test]
    fn the_message_is_worded_as_the_kubelet_words_it() {
        let state = crash_loop_state(secs(20), "app", "web-1", "default", "u-1");
        let ContainerState::Waiting { reason, message } = state else {
            panic!("not waiting");
        };
        assert_eq!(reason, "CrashLoopBackOff");
        assert_eq!(
            message.as_deref(),
            Some("back-off 20s restarting failed container=app pod=web-1_default(u-1)")
        );
        assert_eq!(go_duration(secs(80)), "1m20s");
        assert_eq!(go_duration(secs(300)), "5m0s");
        assert_eq!(go_duration(secs(3600)), "1h0m0s");
    }

    #[test]
    fn restart_policies_follow_kubernetes() {
        use RestartPolicy::*;
        assert_eq!(RestartPolicy::parse(None), Always);
        assert_eq!(RestartPolicy::parse(Some("OnFailure")), OnFailure);
        assert!(should_restart(Always, 0) && should_restart(Always, 1));
        assert!(!should_restart(OnFailure, 0) && should_restart(OnFailure, 2));
        assert!(!should_restart(Never, 0) && !should_restart(Never, 1));
        assert!(should_restart_init(Always, 1) && !should_restart_init(Always, 0));
        assert!(!should_restart_init(Never, 1));
    }
}
