//! A deduplicating work queue with delayed adds and per-key exponential backoff (client-go's
//! workqueue, rate-limited flavour): a key waiting in the queue is never queued twice, a key
//! being worked on is not handed out again until it is done, and a key that keeps failing
//! waits longer each time.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::time::{Duration, Instant};

/// First retry delay after a failure.
const BACKOFF_BASE: Duration = Duration::from_millis(50);
/// Longest retry delay.
const BACKOFF_MAX: Duration = Duration::from_secs(60);

/// The queue. `K` is the key type (namespace/name).
pub struct WorkQueue<K> {
    ready: VecDeque<K>,
    /// Keys in `ready`.
    queued: HashSet<K>,
    /// Keys handed out and not yet done.
    active: HashSet<K>,
    /// Keys added while active: queued again when done.
    dirty: HashSet<K>,
    /// Delayed adds, earliest first; stale entries are skipped when they come due.
    delayed: BinaryHeap<Reverse<(Instant, u64, K)>>,
    /// The earliest pending delayed add per key.
    due: HashMap<K, Instant>,
    failures: HashMap<K, u32>,
    sequence: u64,
}

impl<K: Hash + Eq + Clone + Ord> Default for WorkQueue<K> {
    fn default() -> Self {
        WorkQueue {
            ready: VecDeque::new(),
            queued: HashSet::new(),
            active: HashSet::new(),
            dirty: HashSet::new(),
            delayed: BinaryHeap::new(),
            due: HashMap::new(),
            failures: HashMap::new(),
            sequence: 0,
        }
    }
}

impl<K: Hash + Eq + Clone + Ord> WorkQueue<K> {
    /// Queues `key` now, unless it already waits.
    pub fn add(&mut self, key: K) {
        if self.active.contains(&key) {
            self.dirty.insert(key);
        } else if self.queued.insert(key.clone()) {
            self.ready.push_back(key);
        }
    }

    /// Queues `key` at `at`, unless an earlier add is pending.
    pub fn add_at(&mut self, key: K, at: Instant) {
        if self.due.get(&key).is_some_and(|earlier| *earlier <= at) {
            return;
        }
        self.due.insert(key.clone(), at);
        self.sequence += 1;
        self.delayed.push(Reverse((at, self.sequence, key)));
    }

    /// Queues `key` again after its next backoff delay (it failed).
    pub fn add_backoff(&mut self, key: K, now: Instant) -> Duration {
        let failures = self.failures.entry(key.clone()).or_insert(0);
        let delay = BACKOFF_BASE
            .saturating_mul(1u32 << (*failures).min(20))
            .min(BACKOFF_MAX);
        *failures = failures.saturating_add(1);
        self.add_at(key, now + delay);
        delay
    }

    /// Clears `key`'s failure count (it succeeded).
    pub fn forget(&mut self, key: &K) {
        self.failures.remove(key);
    }

    /// Moves delayed adds that are due by `now` into the queue.
    pub fn promote(&mut self, now: Instant) {
        while let Some(Reverse((at, _, _))) = self.delayed.peek() {
            if *at > now {
                break;
            }
            let Some(Reverse((at, _, key))) = self.delayed.pop() else {
                break;
            };
            if self.due.get(&key) == Some(&at) {
                self.due.remove(&key);
                self.add(key);
            }
        }
    }

    /// The next key to work on, marked active until [`Self::done`].
    pub fn pop(&mut self) -> Option<K> {
        let key = self.ready.pop_front()?;
        self.queued.remove(&key);
        self.active.insert(key.clone());
        Some(key)
    }

    /// Marks `key` finished; if it was added meanwhile it is queued again.
    pub fn done(&mut self, key: &K) {
        self.active.remove(key);
        if self.dirty.remove(key) {
            self.add(key.clone());
        }
    }

    /// When the earliest delayed add comes due.
    pub fn next_due(&self) -> Option<Instant> {
        self.delayed.peek().map(|Reverse((at, _, _))| *at)
    }

    /// Keys waiting now (not counting delayed ones): the queue depth operators watch.
    pub fn len(&self) -> usize {
        self.ready.len()
    }

    /// Whether no key waits now.
    pub fn is_empty(&self) -> bool {
        self.ready.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_waiting_key_is_queued_once() {
        let mut q = WorkQueue::default();
        q.add("a");
        q.add("b");
        q.add("a");
        assert_eq!(q.pop(), Some("a"));
        assert_eq!(q.pop(), Some("b"));
        assert_eq!(q.pop(), None);
    }

    #[test]
    fn a_key_added_while_active_comes_back_after_done() {
        let mut q = WorkQueue::default();
        q.add("a");
        assert_eq!(q.pop(), Some("a"));
        q.add("a");
        assert_eq!(q.pop(), None, "never handed out twice at once");
        q.done(&"a");
        assert_eq!(q.pop(), Some("a"));
        q.done(&"a");
        assert_eq!(q.pop(), None);
    }

    #[test]
    fn delayed_adds_come_due_in_order_and_the_earliest_wins() {
        let mut q = WorkQueue::default();
        let t0 = Instant::now();
        q.add_at("late", t0 + Duration::from_secs(10));
        q.add_at("soon", t0 + Duration::from_secs(1));
        q.add_at("late", t0 + Duration::from_secs(2));
        q.add_at("late", t0 + Duration::from_secs(30));
        assert_eq!(q.next_due(), Some(t0 + Duration::from_secs(1)));
        q.promote(t0 + Duration::from_secs(1));
        assert_eq!(q.pop(), Some("soon"));
        assert_eq!(q.pop(), None);
        q.promote(t0 + Duration::from_secs(2));
        assert_eq!(q.pop(), Some("late"));
        q.done(&"late");
        q.promote(t0 + Duration::from_secs(11));
        assert_eq!(q.pop(), None, "the superseded 10 s add is stale");
    }

    #[test]
    fn backoff_doubles_up_to_a_ceiling_and_forget_resets_it() {
        let mut q = WorkQueue::default();
        let now = Instant::now();
        assert_eq!(q.add_backoff("k", now), Duration::from_millis(50));
        assert_eq!(q.add_backoff("k", now), Duration::from_millis(100));
        for _ in 0..30 {
            q.add_backoff("k", now);
        }
        assert_eq!(q.add_backoff("k", now), BACKOFF_MAX);
        q.forget(&"k");
        assert_eq!(q.add_backoff("k", now), Duration::from_millis(50));
    }
}
