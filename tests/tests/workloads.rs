//! Workload controllers and the scheduler end to end: the real kubectl against a real server
//! with a fleet of hollow nodes (`bramble-node simulate`), which register and report pods
//! through the real node protocol.

use std::collections::HashMap;
use std::io::BufReader;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use bramble_tests::fleet::Fleet;
use bramble_tests::node::condition_status;
use bramble_tests::Cluster;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(60);

fn deployment(name: &str, replicas: u32, image: &str, extra_spec: &str) -> String {
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{app: {name}}}
{extra_spec}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: app
        image: {image}
"
    )
}

fn items(list: &Value) -> &[Value] {
    list["items"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
}

fn running_pods(c: &Cluster, selector: &str) -> Result<Vec<Value>> {
    let list = c.get_json(&["pods", "-l", selector])?;
    Ok(items(&list)
        .iter()
        .filter(|p| {
            p["metadata"]["deletionTimestamp"].is_null() && p["status"]["phase"] == "Running"
        })
        .cloned()
        .collect())
}

fn wait_pods(
    c: &Cluster,
    selector: &str,
    what: &str,
    check: impl Fn(&[Value]) -> bool,
) -> Result<Value> {
    c.wait_for(&["pods", "-l", selector], what, WAIT, |list| {
        check(items(list))
    })
}

/// Follows `kubectl get pods -w` and keeps every pod's last state, so bounds can be checked
/// after every single change rather than at polling instants.
struct PodWatch {
    child: Child,
    /// (pods not being deleted, of which Ready) after each event.
    samples: Arc<Mutex<Vec<(usize, usize)>>>,
}

impl PodWatch {
    fn start(c: &Cluster, selector: &str) -> Result<PodWatch> {
        let mut child = c
            .kubectl_command(&["get", "pods", "-l", selector, "-w", "-o", "json"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let stdout = child.stdout.take().context("no stdout")?;
        let samples = Arc::new(Mutex::new(Vec::new()));
        let record = samples.clone();
        std::thread::spawn(move || {
            let mut pods: HashMap<String, (bool, bool)> = HashMap::new();
            for pod in
                serde_json::Deserializer::from_reader(BufReader::new(stdout)).into_iter::<Value>()
            {
                let Ok(pod) = pod else { break };
                let name = pod["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                let live = pod["metadata"]["deletionTimestamp"].is_null();
                let ready = live && condition_status(&pod, "Ready") == Some("True");
                pods.insert(name, (live, ready));
                let existing = pods.values().filter(|(l, _)| *l).count();
                let ready = pods.values().filter(|(_, r)| *r).count();
                record.lock().map(|mut s| s.push((existing, ready))).ok();
            }
        });
        Ok(PodWatch { child, samples })
    }

    fn samples(&self) -> Vec<(usize, usize)> {
        self.samples.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

impl Drop for PodWatch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn deployment_scales_rolls_within_bounds_and_rolls_back_to_the_same_replicaset() -> Result<()> {
    let c = Cluster::start()?;
    let _fleet = Fleet::start(&c, "hollow", 5, &[])?;
    let strategy =
        "  strategy:\n    type: RollingUpdate\n    rollingUpdate: {maxSurge: 1, maxUnavailable: 0}";
    c.kubectl_stdin(
        &["apply", "-f", "-"],
        &deployment("web", 3, "example/web:1", strategy),
    )?;
    c.kubectl_ok(&["rollout", "status", "deployment/web", "--timeout=60s"])?;
    ensure!(running_pods(&c, "app=web")?.len() == 3);

    c.kubectl_ok(&["scale", "deployment/web", "--replicas=50"])?;
    c.kubectl_ok(&["rollout", "status", "deployment/web", "--timeout=60s"])?;
    let pods = running_pods(&c, "app=web")?;
    ensure!(pods.len() == 50, "50 running pods, got {}", pods.len());
    let mut per_node: HashMap<&str, usize> = HashMap::new();
    for p in &pods {
        *per_node
            .entry(p["spec"]["nodeName"].as_str().unwrap_or_default())
            .or_default() += 1;
    }
    ensure!(
        per_node.len() == 5 && per_node.values().all(|n| *n == 10),
        "the scheduler spreads a Deployment's pods: {per_node:?}"
    );

    c.kubectl_ok(&["scale", "deployment/web", "--replicas=0"])?;
    wait_pods(&c, "app=web", "every pod to go", <[Value]>::is_empty)?;

    // A rolling update watched event by event: never more than replicas + maxSurge pods,
    // never fewer than replicas - maxUnavailable ready.
    c.kubectl_ok(&["scale", "deployment/web", "--replicas=4"])?;
    c.kubectl_ok(&["rollout", "status", "deployment/web", "--timeout=60s"])?;
    let watch = PodWatch::start(&c, "app=web")?;
    let deadline = std::time::Instant::now() + WAIT;
    while !watch.samples().iter().any(|(_, ready)| *ready == 4) {
        ensure!(
            std::time::Instant::now() < deadline,
            "the watch never saw 4 ready pods"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let before = watch.samples().len();
    c.kubectl_ok(&["set", "image", "deployment/web", "app=example/web:2"])?;
    c.kubectl_ok(&["rollout", "status", "deployment/web", "--timeout=60s"])?;
    std::thread::sleep(Duration::from_millis(500));
    let samples = watch.samples();
    ensure!(
        samples.len() > before + 8,
        "the watch saw the rollout: {samples:?}"
    );
    for (existing, ready) in &samples[before..] {
        ensure!(
            *existing <= 5,
            "more than replicas + maxSurge pods: {samples:?}"
        );
        ensure!(
            *ready >= 4,
            "fewer than replicas - maxUnavailable ready: {samples:?}"
        );
    }
    let images: Vec<Value> = running_pods(&c, "app=web")?
        .iter()
        .map(|p| p["spec"]["containers"][0]["image"].clone())
        .collect();
    ensure!(images.iter().all(|i| i == "example/web:2"), "{images:?}");

    // Undo goes back to the first ReplicaSet itself, with the next revision number.
    let rs_before = c.get_json(&["rs", "-l", "app=web"])?;
    ensure!(items(&rs_before).len() == 2);
    let history = c.kubectl_ok(&["rollout", "history", "deployment/web"])?;
    ensure!(history.contains('1') && history.contains('2'), "{history}");
    c.kubectl_ok(&["rollout", "undo", "deployment/web"])?;
    c.kubectl_ok(&["rollout", "status", "deployment/web", "--timeout=60s"])?;
    let rs_after = c.get_json(&["rs", "-l", "app=web"])?;
    ensure!(
        items(&rs_after).len() == 2,
        "undo reuses a ReplicaSet: {rs_after}"
    );
    let back = items(&rs_after)
        .iter()
        .find(|rs| rs["spec"]["template"]["spec"]["containers"][0]["image"] == "example/web:1")
        .context("the first ReplicaSet")?;
    ensure!(back["spec"]["replicas"] == 4, "{back}");
    ensure!(
        back["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "3",
        "{back}"
    );
    let first_uid = items(&rs_before)
        .iter()
        .find(|rs| rs["metadata"]["name"] == back["metadata"]["name"])
        .map(|rs| rs["metadata"]["uid"].clone());
    ensure!(
        first_uid == Some(back["metadata"]["uid"].clone()),
        "the same object, not a new one"
    );
    let describe = c.kubectl_ok(&["describe", "deployment", "web"])?;
    ensure!(describe.contains("ScalingReplicaSet"), "{describe}");

    // Cascading deletes: background takes ReplicaSets and pods along.
    c.kubectl_ok(&["delete", "deployment", "web"])?;
    c.wait_for(&["rs", "-l", "app=web"], "ReplicaSets to go", WAIT, |l| {
        items(l).is_empty()
    })?;
    wait_pods(&c, "app=web", "pods to go", <[Value]>::is_empty)?;
    Ok(())
}

#[test]
fn cascading_deletes_orphan_and_foreground_for_workloads() -> Result<()> {
    let c = Cluster::start()?;
    let _fleet = Fleet::start(&c, "hollow", 2, &[])?;
    c.kubectl_stdin(
        &["apply", "-f", "-"],
        &deployment("kept", 2, "example/kept:1", ""),
    )?;
    c.kubectl_ok(&["rollout", "status", "deployment/kept", "--timeout=60s"])?;
    c.kubectl_ok(&["delete", "deployment", "kept", "--cascade=orphan"])?;
    let rs = c.wait_for(
        &["rs", "-l", "app=kept"],
        "the orphaned ReplicaSet to lose its owner",
        WAIT,
        |l| {
            items(l).len() == 1
                && items(l)[0]["metadata"]["ownerReferences"]
                    .as_array()
                    .is_none_or(Vec::is_empty)
        },
    )?;
    ensure!(
        running_pods(&c, "app=kept")?.len() == 2,
        "orphaned pods keep running: {rs}"
    );

    c.kubectl_stdin(
        &["apply", "-f", "-"],
        &deployment("fg", 2, "example/fg:1", ""),
    )?;
    c.kubectl_ok(&["rollout", "status", "deployment/fg", "--timeout=60s"])?;
    c.kubectl_ok(&[
        "delete",
        "deployment",
        "fg",
        "--cascade=foreground",
        "--timeout=60s",
    ])?;
    // A foreground delete returns once the owner is gone, which waits for its dependents.
    ensure!(items(&c.get_json(&["rs", "-l", "app=fg"])?).is_empty());
    ensure!(items(&c.get_json(&["pods", "-l", "app=fg"])?).is_empty());
    Ok(())
}

fn events_for(c: &Cluster, pod: &str) -> Result<Vec<String>> {
    let list = c.get_json(&[
        "events",
        "--field-selector",
        &format!("involvedObject.name={pod}"),
    ])?;
    Ok(items(&list)
        .iter()
        .map(|e| {
            format!(
                "{} {}",
                e["reason"].as_str().unwrap_or_default(),
                e["message"].as_str().unwrap_or_default()
            )
        })
        .collect())
}

#[test]
fn unschedulable_pods_say_why_in_kube_schedulers_words_and_are_placed_once_a_node_fits(
) -> Result<()> {
    let c = Cluster::start()?;
    let _small = Fleet::start(&c, "small", 3, &["--memory", "1Gi"])?;
    c.kubectl_ok(&["taint", "node", "small-0", "dedicated=gpu:NoSchedule"])?;
    let pod = "apiVersion: v1
kind: Pod
metadata: {name: big}
spec:
  containers:
  - name: app
    image: example/big:1
    resources: {requests: {memory: 2Gi}}
";
    c.kubectl_stdin(&["apply", "-f", "-"], pod)?;
    let expected = "0/3 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}, 2 Insufficient memory.";
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let events = events_for(&c, "big")?;
        if events
            .iter()
            .any(|e| e == &format!("FailedScheduling {expected}"))
        {
            break;
        }
        ensure!(
            std::time::Instant::now() < deadline,
            "no FailedScheduling event with {expected:?}: {events:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let pending = c.get_json(&["pod", "big"])?;
    ensure!(
        pending["status"]["phase"] == "Pending"
            && condition_status(&pending, "PodScheduled") == Some("False"),
        "{pending}"
    );
    let describe = c.kubectl_ok(&["describe", "pod", "big"])?;
    ensure!(
        describe.contains("FailedScheduling") && describe.contains("Insufficient memory"),
        "{describe}"
    );

    // A node that fits joins: the parked pod is tried again and lands there.
    let _large = Fleet::start(&c, "large", 1, &["--memory", "8Gi"])?;
    let placed = c.wait_for(
        &["pod", "big"],
        "the pod to be scheduled on the large node",
        WAIT,
        |p| p["status"]["phase"] == "Running",
    )?;
    ensure!(placed["spec"]["nodeName"] == "large-0", "{placed}");
    ensure!(events_for(&c, "big")?
        .iter()
        .any(|e| e == "Scheduled Successfully assigned default/big to large-0"));
    Ok(())
}

#[test]
fn pods_of_a_silent_node_are_replaced_elsewhere_after_their_toleration() -> Result<()> {
    let c = Cluster::start_with(&[
        "--node-grace",
        "4",
        "--node-heartbeat",
        "1",
        "--default-toleration-seconds",
        "3",
    ])?;
    let mut fleet = Fleet::start(&c, "hollow", 3, &[])?;
    c.kubectl_stdin(
        &["apply", "-f", "-"],
        &deployment("svc", 6, "example/svc:1", ""),
    )?;
    c.kubectl_ok(&["rollout", "status", "deployment/svc", "--timeout=60s"])?;
    let on = |pods: &[Value], node: &str| {
        pods.iter()
            .filter(|p| p["spec"]["nodeName"] == node)
            .count()
    };
    ensure!(on(&running_pods(&c, "app=svc")?, "hollow-0") == 2);

    fleet.command("silent hollow-0")?;
    let node = c.wait_for(
        &["node", "hollow-0"],
        "the silent node to be tainted unreachable",
        WAIT,
        |n| {
            condition_status(n, "Ready") == Some("Unknown")
                && n["spec"]["taints"].as_array().is_some_and(|t| {
                    t.iter().any(|t| {
                        t["key"] == "node.kubernetes.io/unreachable" && t["effect"] == "NoExecute"
                    })
                })
        },
    )?;
    ensure!(node["spec"]["taints"]
        .as_array()
        .is_some_and(|t| t.iter().any(|t| t["effect"] == "NoSchedule")));
    // After the 3 s toleration the pods are evicted, and since the node cannot confirm, the pod
    // GC removes them once their grace period is over; replacements run on the other nodes.
    wait_pods(
        &c,
        "app=svc",
        "six running replacements on the other nodes",
        |pods| {
            on(pods, "hollow-0") == 0
                && pods
                    .iter()
                    .filter(|p| p["status"]["phase"] == "Running")
                    .count()
                    == 6
        },
    )?;
    let pod_events = c.get_json(&["events", "--field-selector", "reason=TaintManagerEviction"])?;
    ensure!(
        items(&pod_events).len() == 2,
        "two evictions recorded: {pod_events}"
    );

    fleet.command("resume hollow-0")?;
    c.wait_for(
        &["node", "hollow-0"],
        "the node to come back without taints",
        WAIT,
        |n| {
            condition_status(n, "Ready") == Some("True")
                && n["spec"]["taints"].as_array().is_none_or(Vec::is_empty)
        },
    )?;
    Ok(())
}

#[test]
fn daemonset_follows_nodes_joining_and_leaving() -> Result<()> {
    let c = Cluster::start()?;
    let _fleet = Fleet::start(&c, "hollow", 3, &[])?;
    let ds = "apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec:
      terminationGracePeriodSeconds: 1
      containers: [{name: agent, image: example/agent:1}]
";
    c.kubectl_stdin(&["apply", "-f", "-"], ds)?;
    c.kubectl_ok(&["rollout", "status", "daemonset/agent", "--timeout=60s"])?;
    let nodes_of = |pods: &[Value]| {
        let mut nodes: Vec<String> = pods
            .iter()
            .map(|p| {
                p["spec"]["nodeName"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string()
            })
            .collect();
        nodes.sort();
        nodes
    };
    ensure!(nodes_of(&running_pods(&c, "app=agent")?) == ["hollow-0", "hollow-1", "hollow-2"]);

    // Two boards join: each gets its pod.
    let _more = Fleet::start(&c, "late", 2, &[])?;
    wait_pods(
        &c,
        "app=agent",
        "a daemon pod on each of five nodes",
        |pods| {
            pods.iter()
                .filter(|p| p["status"]["phase"] == "Running")
                .count()
                == 5
        },
    )?;
    ensure!(nodes_of(&running_pods(&c, "app=agent")?).len() == 5);

    // A node that leaves the cluster takes its daemon pod with it.
    c.kubectl_ok(&["delete", "node", "late-1"])?;
    wait_pods(
        &c,
        "app=agent",
        "the daemon pod of the removed node to go",
        |pods| pods.len() == 4 && !nodes_of(pods).contains(&"late-1".to_string()),
    )?;
    let status = c.get_json(&["daemonset", "agent"])?["status"].clone();
    ensure!(
        status["desiredNumberScheduled"] == 4 && status["numberReady"] == 4,
        "{status}"
    );

    // A rolling update replaces every pod, one node at a time.
    c.kubectl_ok(&["set", "image", "daemonset/agent", "agent=example/agent:2"])?;
    c.kubectl_ok(&["rollout", "status", "daemonset/agent", "--timeout=60s"])?;
    let images: Vec<Value> = running_pods(&c, "app=agent")?
        .iter()
        .map(|p| p["spec"]["containers"][0]["image"].clone())
        .collect();
    ensure!(
        images.len() == 4 && images.iter().all(|i| i == "example/agent:2"),
        "{images:?}"
    );
    ensure!(c
        .kubectl_ok(&["rollout", "history", "daemonset/agent"])?
        .contains('2'));

    c.kubectl_ok(&["delete", "daemonset", "agent"])?;
    wait_pods(
        &c,
        "app=agent",
        "daemon pods to go with their DaemonSet",
        <[Value]>::is_empty,
    )?;
    Ok(())
}

#[test]
fn statefulset_starts_in_order_with_stable_names() -> Result<()> {
    let c = Cluster::start()?;
    let _fleet = Fleet::start(&c, "hollow", 2, &[])?;
    let watch = PodWatch::start(&c, "app=db")?;
    let sts = "apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db}
spec:
  serviceName: db
  replicas: 3
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      terminationGracePeriodSeconds: 1
      containers: [{name: db, image: example/db:1}]
";
    c.kubectl_stdin(&["apply", "-f", "-"], sts)?;
    c.kubectl_ok(&["rollout", "status", "statefulset/db", "--timeout=60s"])?;
    let pods = running_pods(&c, "app=db")?;
    let mut names: Vec<&str> = pods
        .iter()
        .filter_map(|p| p["metadata"]["name"].as_str())
        .collect();
    names.sort_unstable();
    ensure!(names == ["db-0", "db-1", "db-2"], "{names:?}");
    // OrderedReady: a pod is created only once every lower ordinal is Ready, so the watch sees
    // the count of pods rise one at a time, each new one after the previous became Ready.
    let samples = watch.samples();
    for pair in samples.windows(2) {
        let ((before, ready_before), (after, _)) = (pair[0], pair[1]);
        if after > before {
            ensure!(
                ready_before == before,
                "a pod was created before its predecessor was Ready: {samples:?}"
            );
        }
    }
    for p in &pods {
        ensure!(
            p["spec"]["hostname"] == p["metadata"]["name"] && p["spec"]["subdomain"] == "db",
            "{p}"
        );
    }
    c.kubectl_ok(&["scale", "statefulset/db", "--replicas=1"])?;
    wait_pods(
        &c,
        "app=db",
        "scale down from the highest ordinal",
        |pods| pods.len() == 1 && pods[0]["metadata"]["name"] == "db-0",
    )?;
    c.kubectl_ok(&["delete", "statefulset", "db"])?;
    wait_pods(
        &c,
        "app=db",
        "pods to go with their StatefulSet",
        <[Value]>::is_empty,
    )?;
    Ok(())
}

fn job(name: &str, completions: u32, backoff_limit: u32, exit_codes: &str) -> String {
    format!(
        "apiVersion: batch/v1
kind: Job
metadata: {{name: {name}}}
spec:
  completions: {completions}
  parallelism: 1
  backoffLimit: {backoff_limit}
  template:
    metadata:
      annotations: {{sim.bramble.dev/exit-codes: \"{exit_codes}\"}}
    spec:
      restartPolicy: Never
      containers: [{{name: work, image: example/work:1}}]
"
    )
}

#[test]
fn jobs_retry_failures_up_to_their_backoff_limit() -> Result<()> {
    let c = Cluster::start()?;
    let _fleet = Fleet::start(&c, "hollow", 2, &[])?;
    // The first run fails, every later one succeeds: two completions need three pods.
    c.kubectl_stdin(&["apply", "-f", "-"], &job("flaky", 2, 3, "1,0"))?;
    c.kubectl_ok(&[
        "wait",
        "--for=condition=Complete",
        "job/flaky",
        "--timeout=90s",
    ])?;
    let status = c.get_json(&["job", "flaky"])?["status"].clone();
    ensure!(
        status["succeeded"] == 2 && status["failed"] == 1,
        "{status}"
    );
    ensure!(status["completionTime"].is_string(), "{status}");

    // Always failing: gives up after backoffLimit retries.
    c.kubectl_stdin(&["apply", "-f", "-"], &job("doomed", 1, 1, "1"))?;
    c.kubectl_ok(&[
        "wait",
        "--for=condition=Failed",
        "job/doomed",
        "--timeout=90s",
    ])?;
    let doomed = c.get_json(&["job", "doomed"])?;
    let failed = doomed["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Failed"))
        .cloned()
        .unwrap_or_default();
    ensure!(failed["reason"] == "BackoffLimitExceeded", "{doomed}");
    ensure!(doomed["status"]["failed"] == 2, "{doomed}");

    c.kubectl_ok(&["delete", "job", "flaky", "doomed"])?;
    c.wait_for(&["pods"], "job pods to go with their jobs", WAIT, |l| {
        items(l).is_empty()
    })?;
    Ok(())
}

#[test]
fn services_get_endpoints_and_slices_of_ready_pods() -> Result<()> {
    let c = Cluster::start()?;
    let mut fleet = Fleet::start(&c, "hollow", 2, &[])?;
    c.kubectl_stdin(
        &["apply", "-f", "-"],
        &deployment("api", 2, "example/api:1", ""),
    )?;
    c.kubectl_ok(&[
        "expose",
        "deployment",
        "api",
        "--port=80",
        "--target-port=8080",
    ])?;
    c.kubectl_ok(&["rollout", "status", "deployment/api", "--timeout=60s"])?;
    let ips = |pods: &[Value]| {
        let mut ips: Vec<String> = pods
            .iter()
            .filter_map(|p| p["status"]["podIP"].as_str().map(str::to_string))
            .collect();
        ips.sort();
        ips
    };
    let expected = ips(&running_pods(&c, "app=api")?);
    let endpoints = c.wait_for(&["endpoints", "api"], "endpoints of both pods", WAIT, |e| {
        let mut got: Vec<String> = e["subsets"][0]["addresses"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|a| a["ip"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        got.sort();
        got == expected
    })?;
    ensure!(
        endpoints["subsets"][0]["ports"][0]["port"] == 8080,
        "{endpoints}"
    );
    let slices = c.get_json(&["endpointslices", "-l", "kubernetes.io/service-name=api"])?;
    ensure!(
        items(&slices).len() == 1
            && items(&slices)[0]["endpoints"].as_array().map(Vec::len) == Some(2),
        "{slices}"
    );
    // A deleted pod leaves the endpoints and its replacement joins them.
    let victim = running_pods(&c, "app=api")?[0]["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    c.kubectl_ok(&["delete", "pod", &victim])?;
    c.wait_for(
        &["endpoints", "api"],
        "the replacement pod in the endpoints",
        WAIT,
        |e| {
            let addresses = e["subsets"][0]["addresses"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            addresses.len() == 2
                && addresses
                    .iter()
                    .all(|a| a["targetRef"]["name"] != victim.as_str())
        },
    )?;
    fleet.command("resume all")?;
    c.kubectl_ok(&["delete", "service", "api"])?;
    c.wait_for(
        &["endpoints"],
        "the endpoints to go with the service",
        WAIT,
        |l| items(l).iter().all(|e| e["metadata"]["name"] != "api"),
    )?;
    Ok(())
}
