//! Two control planes sharing one real etcd: one leads (holds the Lease
//! kube-system/bramble-controller-manager and runs the controllers and the scheduler), both
//! serve the API, and the other takes over when the leader dies.

use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use bramble_tests::etcd::EtcdServer;
use bramble_tests::fleet::Fleet;
use bramble_tests::Cluster;
use serde_json::Value;

const LEADING: &str = "leading: starting the controllers";

fn running(c: &Cluster, selector: &str) -> Result<usize> {
    let list = c.get_json(&["pods", "-l", selector])?;
    Ok(list["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter(|p| {
                    p["metadata"]["deletionTimestamp"].is_null()
                        && p["status"]["phase"] == "Running"
                })
                .count()
        })
        .unwrap_or(0))
}

fn holder(c: &Cluster) -> Result<String> {
    let lease = c.get_json(&["lease", "-n", "kube-system", "bramble-controller-manager"])?;
    Ok(lease["spec"]["holderIdentity"]
        .as_str()
        .unwrap_or_default()
        .to_string())
}

#[test]
fn two_control_planes_share_etcd_and_the_survivor_takes_over_the_controllers() -> Result<()> {
    let etcd = EtcdServer::start()?;
    let endpoint = etcd.endpoints().join(",");
    let mut first = Cluster::start_with(&["--etcd-endpoints", &endpoint])?;
    let second = first.another_control_plane(&["--etcd-endpoints", &endpoint])?;
    // The nodes use the second control plane, which stays up.
    let _fleet = Fleet::start(&second, "hollow", 2, &[])?;

    let deadline = Instant::now() + Duration::from_secs(30);
    while !first.server_log().contains(LEADING) {
        ensure!(
            Instant::now() < deadline,
            "the first control plane never led:\n{}",
            first.server_log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    ensure!(
        !second.server_log().contains(LEADING),
        "two leaders at once"
    );
    let leader = holder(&second)?;
    ensure!(!leader.is_empty());

    // Written through one control plane, acted on by the leader's controllers, once.
    let deployment = "apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 1
      containers: [{name: web, image: example/web:1}]
";
    second.kubectl_stdin(&["apply", "-f", "-"], deployment)?;
    second.kubectl_ok(&["rollout", "status", "deployment/web", "--timeout=60s"])?;
    ensure!(
        running(&first, "app=web")? == 3,
        "both control planes see the same three pods"
    );
    let all = first.get_json(&["pods", "-l", "app=web"])?;
    ensure!(
        all["items"].as_array().map(Vec::len) == Some(3),
        "no pod was created twice: {all}"
    );

    // The leader dies without releasing the Lease: after the lease duration the other one leads.
    first.kill9()?;
    let killed = Instant::now();
    let deadline = killed + Duration::from_secs(60);
    while !second.server_log().contains(LEADING) {
        ensure!(
            Instant::now() < deadline,
            "the survivor never took over:\n{}",
            second.server_log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    ensure!(holder(&second)? != leader, "the Lease changed hands");
    second.kubectl_ok(&["scale", "deployment/web", "--replicas=5"])?;
    second.kubectl_ok(&["rollout", "status", "deployment/web", "--timeout=60s"])?;
    ensure!(running(&second, "app=web")? == 5);
    let events = second.get_json(&["events", "--field-selector", "reason=ScalingReplicaSet"])?;
    ensure!(
        events["items"].as_array().is_some_and(|e| e
            .iter()
            .any(|e: &Value| { e["message"].as_str().is_some_and(|m| m.contains("to 5")) })),
        "the new leader scaled: {events}"
    );
    Ok(())
}
