//! The scheduling queue (kube-scheduler's, simplified): pods waiting to be tried, in arrival
//! order; pods that fit nowhere, parked until the cluster changes in a way that may make them
//! fit (a node added or changed, a pod gone) or a minute has passed; and pods whose bind failed,
//! retried after a back-off.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

/// How long an unschedulable pod waits at most before it is tried again anyway.
const UNSCHEDULABLE_RETRY: Duration = Duration::from_secs(60);
/// First back-off after a failed bind.
const BIND_BACKOFF: Duration = Duration::from_millis(100);

/// The queue, by pod uid.
#[derive(Default)]
pub struct SchedulingQueue {
    active: VecDeque<String>,
    in_active: HashSet<String>,
    /// uid -> when it was parked.
    unschedulable: HashMap<String, Instant>,
    /// (due, uid) of pods backing off.
    backoff: BTreeMap<(Instant, String), ()>,
    attempts: HashMap<String, u32>,
}

impl SchedulingQueue {
    /// Queues a pod to be tried (a new pending pod, or one that changed).
    pub fn add(&mut self, uid: &str) {
        self.unschedulable.remove(uid);
        if self.in_active.insert(uid.to_string()) {
            self.active.push_back(uid.to_string());
        }
    }

    /// Forgets a pod (bound elsewhere, or deleted).
    pub fn remove(&mut self, uid: &str) {
        self.in_active.remove(uid);
        self.unschedulable.remove(uid);
        self.attempts.remove(uid);
        // `active` and `backoff` entries are skipped when they come up.
    }

    /// The next pod to try.
    pub fn pop(&mut self) -> Option<String> {
        while let Some(uid) = self.active.pop_front() {
            if self.in_active.remove(&uid) {
                return Some(uid);
            }
        }
        None
    }

    /// Parks a pod that fit nowhere.
    pub fn park(&mut self, uid: &str, now: Instant) {
        self.unschedulable.insert(uid.to_string(), now);
    }

    /// Retries a pod whose bind failed, after a back-off that doubles per attempt.
    pub fn back_off(&mut self, uid: &str, now: Instant) {
        let attempts = self.attempts.entry(uid.to_string()).or_insert(0);
        let delay = BIND_BACKOFF.saturating_mul(1 << (*attempts).min(9));
        *attempts += 1;
        self.backoff.insert((now + delay, uid.to_string()), ());
    }

    /// The cluster changed: every parked pod may fit now.
    pub fn cluster_changed(&mut self) {
        let parked: Vec<String> = self.unschedulable.drain().map(|(uid, _)| uid).collect();
        for uid in parked {
            self.add(&uid);
        }
    }

    /// Moves back-offs that are due, and parked pods that waited long enough, to the queue.
    pub fn promote(&mut self, now: Instant) {
        while let Some(((due, _), _)) = self.backoff.first_key_value() {
            if *due > now {
                break;
            }
            if let Some(((_, uid), _)) = self.backoff.pop_first() {
                self.add(&uid);
            }
        }
        let stale: Vec<String> = self
            .unschedulable
            .iter()
            .filter(|(_, since)| now.duration_since(**since) >= UNSCHEDULABLE_RETRY)
            .map(|(uid, _)| uid.clone())
            .collect();
        for uid in stale {
            self.add(&uid);
        }
    }

    /// When something parked or backing off comes due next.
    pub fn next_due(&self) -> Option<Instant> {
        let backoff = self.backoff.first_key_value().map(|((due, _), _)| *due);
        let parked = self
            .unschedulable
            .values()
            .min()
            .map(|since| *since + UNSCHEDULABLE_RETRY);
        backoff.into_iter().chain(parked).min()
    }

    /// Whether a pod waits to be tried now.
    pub fn has_active(&self) -> bool {
        !self.in_active.is_empty()
    }

    /// Pods waiting now, and pods parked as unschedulable.
    pub fn depth(&self) -> (usize, usize) {
        (self.in_active.len(), self.unschedulable.len())
    }

    /// A pod bound successfully: its back-off history goes.
    pub fn bound(&mut self, uid: &str) {
        self.attempts.remove(uid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pods_come_out_in_arrival_order_once() {
        let mut q = SchedulingQueue::default();
        q.add("a");
        q.add("b");
        q.add("a");
        assert_eq!(q.pop().as_deref(), Some("a"));
        assert_eq!(q.pop().as_deref(), Some("b"));
        assert_eq!(q.pop(), None);
    }

    #[test]
    fn parked_pods_return_when_the_cluster_changes_or_after_a_minute() {
        let mut q = SchedulingQueue::default();
        let t0 = Instant::now();
        q.add("a");
        q.pop();
        q.park("a", t0);
        q.promote(t0 + Duration::from_secs(1));
        assert_eq!(q.pop(), None);
        q.cluster_changed();
        assert_eq!(q.pop().as_deref(), Some("a"));
        q.park("a", t0);
        assert_eq!(q.next_due(), Some(t0 + UNSCHEDULABLE_RETRY));
        q.promote(t0 + UNSCHEDULABLE_RETRY);
        assert_eq!(q.pop().as_deref(), Some("a"));
    }

    #[test]
    fn failed_binds_back_off_and_removed_pods_are_skipped() {
        let mut q = SchedulingQueue::default();
        let t0 = Instant::now();
        q.back_off("a", t0);
        q.promote(t0);
        assert_eq!(q.pop(), None);
        q.promote(t0 + BIND_BACKOFF);
        assert_eq!(q.pop().as_deref(), Some("a"));
        q.add("b");
        q.remove("b");
        assert_eq!(q.pop(), None);
    }
}
