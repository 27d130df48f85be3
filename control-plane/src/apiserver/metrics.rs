//! Prometheus text metrics on `/metrics` for what operators watch: request counts and latency
//! by verb and code class, open watches, the store's revision and the number of cached objects.
//! Plain atomics: no allocation per request, nothing to lock on the hot path.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Upper bounds (seconds) of the latency histogram buckets.
const BUCKETS: [f64; 10] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0];
const VERBS: [&str; 6] = ["GET", "POST", "PUT", "PATCH", "DELETE", "OTHER"];
const CLASSES: [&str; 4] = ["2xx", "4xx", "5xx", "other"];

/// Counts an open watch for as long as it lives.
pub struct WatchGauge(Arc<AtomicU64>);

impl WatchGauge {
    /// Counts one more open watch.
    pub fn open(gauge: &Arc<AtomicU64>) -> WatchGauge {
        gauge.fetch_add(1, Ordering::Relaxed);
        WatchGauge(gauge.clone())
    }
}

impl Drop for WatchGauge {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Request metrics.
pub struct Metrics {
    counts: [[AtomicU64; 4]; 6],
    buckets: [[AtomicU64; 10]; 6],
    sum_micros: [AtomicU64; 6],
    /// Watches open now.
    pub open_watches: Arc<AtomicU64>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            counts: std::array::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(0))),
            buckets: std::array::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(0))),
            sum_micros: std::array::from_fn(|_| AtomicU64::new(0)),
            open_watches: Arc::new(AtomicU64::new(0)),
        }
    }
}

fn verb_index(method: &str) -> usize {
    VERBS
        .iter()
        .position(|v| *v == method)
        .unwrap_or(VERBS.len() - 1)
}

impl Metrics {
    /// Records one finished request (watches are recorded when their headers are sent).
    pub fn observe(&self, method: &str, status: u16, elapsed: Duration) {
        let v = verb_index(method);
        let class = match status {
            200..=299 => 0,
            400..=499 => 1,
            500..=599 => 2,
            _ => 3,
        };
        self.counts[v][class].fetch_add(1, Ordering::Relaxed);
        let secs = elapsed.as_secs_f64();
        for (i, bound) in BUCKETS.iter().enumerate() {
            if secs <= *bound {
                self.buckets[v][i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.sum_micros[v].fetch_add(
            elapsed.as_micros().min(u128::from(u64::MAX)) as u64,
            Ordering::Relaxed,
        );
    }

    /// The Prometheus text exposition, with the gauges the caller knows.
    pub fn render(&self, revision: i64, cached_objects: usize) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP bramble_apiserver_requests_total API requests by verb and status class."
        );
        let _ = writeln!(out, "# TYPE bramble_apiserver_requests_total counter");
        for (v, verb) in VERBS.iter().enumerate() {
            for (c, class) in CLASSES.iter().enumerate() {
                let n = self.counts[v][c].load(Ordering::Relaxed);
                if n > 0 {
                    let _ = writeln!(
                        out,
                        "bramble_apiserver_requests_total{{verb=\"{verb}\",code=\"{class}\"}} {n}"
                    );
                }
            }
        }
        let _ = writeln!(
            out,
            "# HELP bramble_apiserver_request_duration_seconds API request latency by verb."
        );
        let _ = writeln!(
            out,
            "# TYPE bramble_apiserver_request_duration_seconds histogram"
        );
        for (v, verb) in VERBS.iter().enumerate() {
            let total: u64 = self.counts[v]
                .iter()
                .map(|c| c.load(Ordering::Relaxed))
                .sum();
            if total == 0 {
                continue;
            }
            for (i, bound) in BUCKETS.iter().enumerate() {
                let n = self.buckets[v][i].load(Ordering::Relaxed);
                let _ = writeln!(out, "bramble_apiserver_request_duration_seconds_bucket{{verb=\"{verb}\",le=\"{bound}\"}} {n}");
            }
            let _ = writeln!(out, "bramble_apiserver_request_duration_seconds_bucket{{verb=\"{verb}\",le=\"+Inf\"}} {total}");
            let sum = self.sum_micros[v].load(Ordering::Relaxed) as f64 / 1e6;
            let _ = writeln!(
                out,
                "bramble_apiserver_request_duration_seconds_sum{{verb=\"{verb}\"}} {sum}"
            );
            let _ = writeln!(
                out,
                "bramble_apiserver_request_duration_seconds_count{{verb=\"{verb}\"}} {total}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP bramble_apiserver_open_watches Watches open now."
        );
        let _ = writeln!(out, "# TYPE bramble_apiserver_open_watches gauge");
        let _ = writeln!(
            out,
            "bramble_apiserver_open_watches {}",
            self.open_watches.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP bramble_store_revision The store's current revision."
        );
        let _ = writeln!(out, "# TYPE bramble_store_revision gauge");
        let _ = writeln!(out, "bramble_store_revision {revision}");
        let _ = writeln!(
            out,
            "# HELP bramble_watch_cache_objects Objects held in the watch cache."
        );
        let _ = writeln!(out, "# TYPE bramble_watch_cache_objects gauge");
        let _ = writeln!(out, "bramble_watch_cache_objects {cached_objects}");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_cumulative_buckets() {
        let m = Metrics::default();
        m.observe("GET", 200, Duration::from_micros(800));
        m.observe("GET", 404, Duration::from_millis(30));
        let text = m.render(7, 3);
        assert!(text.contains("bramble_apiserver_requests_total{verb=\"GET\",code=\"2xx\"} 1"));
        assert!(text.contains("bramble_apiserver_requests_total{verb=\"GET\",code=\"4xx\"} 1"));
        assert!(text.contains("le=\"0.001\"} 1"));
        assert!(text.contains("le=\"0.05\"} 2"));
        assert!(text.contains("le=\"+Inf\"} 2"));
        assert!(text.contains("bramble_store_revision 7"));
    }
}
