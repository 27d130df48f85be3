//! Pod start latency as a client sees it: pods created one after another through the API, each
//! timed from its create call to the first watch event that shows its container started. One
//! watch sees every start. Shared by the benchmarks that time pod starts.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, PostParams, WatchEvent, WatchParams};

/// Whether the pod's first container has started (running, or already ended).
pub fn started(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|c| c.first())
        .and_then(|c| c.state.as_ref())
        .is_some_and(|s| s.running.is_some() || s.terminated.is_some())
}

/// Creates `warmup + count` pods made by `make(name)` one at a time (`<prefix>-<i>`), each
/// deleted once started; returns the `count` start latencies after the warm-up ones, sorted.
pub async fn time_starts(
    pods: &Api<Pod>,
    prefix: &str,
    warmup: usize,
    count: usize,
    make: impl Fn(&str) -> Result<Pod>,
) -> Result<Vec<Duration>> {
    let created: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let seen: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let mut stream = pods.watch(&WatchParams::default(), "0").await?.boxed();
    let watcher = {
        let (created, seen) = (created.clone(), seen.clone());
        tokio::spawn(async move {
            let mut done = HashSet::new();
            while let Some(Ok(event)) = stream.next().await {
                let (WatchEvent::Added(p) | WatchEvent::Modified(p)) = event else {
                    continue;
                };
                let name = p.metadata.name.clone().unwrap_or_default();
                if !started(&p) || done.contains(&name) {
                    continue;
                }
                let t0 = created.lock().ok().and_then(|c| c.get(&name).copied());
                if let Some(t0) = t0 {
                    done.insert(name);
                    if let Ok(mut s) = seen.lock() {
                        s.push(t0.elapsed());
                    }
                }
            }
        })
    };
    let result = async {
        for i in 0..warmup + count {
            let name = format!("{prefix}-{i}");
            let pod = make(&name)?;
            created
                .lock()
                .map_err(|_| anyhow::anyhow!("poisoned"))?
                .insert(name.clone(), Instant::now());
            pods.create(&PostParams::default(), &pod).await?;
            let deadline = Instant::now() + Duration::from_secs(60);
            while seen.lock().map(|s| s.len()).unwrap_or(0) <= i {
                ensure!(Instant::now() < deadline, "pod {name} did not start");
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
            pods.delete(&name, &DeleteParams::default().grace_period(0))
                .await?;
        }
        let mut starts: Vec<Duration> = seen
            .lock()
            .map(|s| s[warmup..].to_vec())
            .unwrap_or_default();
        starts.sort();
        Ok(starts)
    }
    .await;
    watcher.abort();
    result
}
