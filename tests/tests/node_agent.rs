//! The node agent end to end: real `bramble server`, two real `bramble-node` processes joined
//! with tokens from `bramble token create`, the sample Wasm workloads pushed to the embedded
//! registry, and the real kubectl for everything a user does with pods.

use std::io::{Read, Write};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use bramble_tests::node::{condition_status, Node};
use bramble_tests::Cluster;
use serde_json::Value;

/// A pod manifest for sample `name` bound to `node` (the scheduler arrives with its own issue).
fn pod(name: &str, image: &str, node: &str, extra: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  nodeName: {node}\n  runtimeClassName: wasm\n  terminationGracePeriodSeconds: 5\n{extra}  containers:\n  - name: {name}\n    image: {image}\n    resources:\n      limits:\n        cpu: 200m\n        memory: 16Mi\n"
    )
}

fn phase(p: &Value) -> &str {
    p["status"]["phase"].as_str().unwrap_or("")
}

fn container(p: &Value) -> &Value {
    &p["status"]["containerStatuses"][0]
}

#[test]
fn nodes_join_with_tokens_and_run_wasm_pods_driven_by_kubectl() -> Result<()> {
    let mut c = Cluster::start()?;

    // Tokens: an expired and a revoked one are refused with a clear message.
    let expired = c.bramble_ok(&["token", "create", "--ttl", "1s"])?;
    let revoked = c.bramble_ok(&["token", "create", "--description", "to revoke"])?;
    let token = c.bramble_ok(&["token", "create", "--description", "e2e"])?;
    std::thread::sleep(Duration::from_secs(2));
    let refused = Node::join_refused(&c, "late", expired.trim())?;
    ensure!(refused.contains("expired"), "{refused}");
    c.bramble_ok(&["token", "revoke", revoked.trim()])?;
    let refused = Node::join_refused(&c, "revoked", revoked.trim())?;
    ensure!(refused.contains("not valid"), "{refused}");
    let listed = c.bramble_ok(&["token", "ls"])?;
    ensure!(
        listed.contains("e2e") && listed.contains("expired"),
        "{listed}"
    );
    let other_ca = format!(
        "K10{}::{}",
        "0".repeat(64),
        token.trim().rsplit("::").next().unwrap_or("")
    );
    let refused = Node::join_refused(&c, "mitm", &other_ca)?;
    ensure!(refused.contains("CA"), "{refused}");

    let mut a = Node::join(&c, "node-a", token.trim())?;
    let mut b = Node::join(&c, "node-b", token.trim())?;
    let node = c.get_json(&["node", "node-a"])?;
    ensure!(
        node["metadata"]["labels"]["kubernetes.io/hostname"] == "node-a",
        "{node:#}"
    );
    ensure!(node["status"]["capacity"]["pods"] == "110", "{node:#}");
    ensure!(
        node["status"]["nodeInfo"]["architecture"]
            .as_str()
            .is_some_and(|a| !a.is_empty()),
        "{node:#}"
    );

    let hello = c.push_sample("hello")?;
    let crasher = c.push_sample("crasher")?;
    let echo = c.push_sample("http-echo")?;
    let ticker = c.push_sample("ticker")?;
    let bomb = c.push_sample("hostile-memory-bomb")?;
    let recursion = c.push_sample("hostile-deep-recursion")?;

    c.kubectl_stdin(
        &["apply", "-f", "-"],
        &pod("hello", &hello, "node-a", "  restartPolicy: Never\n"),
    )?;
    c.kubectl_stdin(
        &["apply", "-f", "-"],
        &pod("crasher", &crasher, "node-b", ""),
    )?;
    c.kubectl_stdin(&["apply", "-f", "-"], &format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: echo\nspec:\n  nodeName: node-a\n  containers:\n  - name: echo\n    image: {echo}\n    ports:\n    - containerPort: 18080\n    readinessProbe:\n      httpGet:\n        path: /ready\n        port: 18080\n      periodSeconds: 1\n"
    ))?;
    c.kubectl_stdin(&["apply", "-f", "-"], &format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: ticker\nspec:\n  nodeName: node-b\n  terminationGracePeriodSeconds: 5\n  containers:\n  - name: ticker\n    image: {ticker}\n    env:\n    - name: TICK_INTERVAL_MS\n      value: \"200\"\n"
    ))?;
    c.kubectl_stdin(
        &["apply", "-f", "-"],
        &pod("bomb", &bomb, "node-a", "  restartPolicy: Never\n"),
    )?;
    c.kubectl_stdin(
        &["apply", "-f", "-"],
        &pod(
            "recursion",
            &recursion,
            "node-a",
            "  restartPolicy: Never\n",
        ),
    )?;

    let wait = Duration::from_secs(60);
    let done = c.wait_for(&["pod", "hello"], "hello to succeed", wait, |p| {
        phase(p) == "Succeeded"
    })?;
    ensure!(
        container(&done)["state"]["terminated"]["reason"] == "Completed",
        "{done:#}"
    );
    let log = c.kubectl_ok(&["logs", "hello"])?;
    ensure!(
        log.contains("hello from a wasm workload") && log.contains("[0] hello"),
        "{log}"
    );
    let wide = c.kubectl_ok(&["get", "pods", "-o", "wide"])?;
    ensure!(wide.contains("node-a") && wide.contains("node-b"), "{wide}");

    // crasher exits 3 every few seconds: restarts are counted and back off.
    let crashed = c.wait_for(&["pod", "crasher"], "crasher to restart", wait, |p| {
        container(p)["restartCount"].as_i64().unwrap_or(0) >= 1
    })?;
    ensure!(
        container(&crashed)["lastState"]["terminated"]["exitCode"] == 3,
        "{crashed:#}"
    );
    let previous = c.kubectl_ok(&["logs", "crasher", "--previous"])?;
    ensure!(previous.contains("exiting with code 3"), "{previous}");

    // The hostile samples are contained and reported; the agent carries on.
    let bombed = c.wait_for(&["pod", "bomb"], "the memory bomb to end", wait, |p| {
        phase(p) == "Failed"
    })?;
    ensure!(
        container(&bombed)["state"]["terminated"]["reason"] == "OOMKilled",
        "{bombed:#}"
    );
    let deep = c.wait_for(&["pod", "recursion"], "the recursion to end", wait, |p| {
        phase(p) == "Failed"
    })?;
    ensure!(
        container(&deep)["state"]["terminated"]["reason"] == "Trap",
        "{deep:#}"
    );

    // exec starts a new instance of the container's module with the given argv.
    c.wait_for(&["pod", "ticker"], "ticker to run", wait, |p| {
        phase(p) == "Running"
    })?;
    let out = c.kubectl(&["exec", "crasher", "--", "crasher"])?;
    ensure!(out.status.code() == Some(3), "exec exit code: {out:?}");
    ensure!(
        String::from_utf8_lossy(&out.stderr).contains("command terminated with exit code 3"),
        "{out:?}"
    );
    let out = c
        .kubectl_ok(&["exec", "hello", "--", "hello", "from", "exec"])
        .err();
    ensure!(
        out.is_some_and(|e| e.to_string().contains("completed pod")),
        "exec into a completed pod must fail"
    );

    // exec -i: the new instance reads what kubectl sends on stdin.
    c.kubectl_stdin(&["apply", "-f", "-"], &pod("looper", &hello, "node-b", ""))?;
    c.wait_for(&["pod", "looper"], "looper to have started", wait, |p| {
        container(p)["restartCount"].as_i64().unwrap_or(0) >= 1
    })?;
    let echoed = c.kubectl_with_input(
        &["exec", "-i", "looper", "--", "hello", "--stdin"],
        "hello-stdin\nsecond line\n",
    )?;
    ensure!(
        echoed.status.success()
            && String::from_utf8_lossy(&echoed.stdout) == "hello-stdin\nsecond line\n",
        "exec -i: {echoed:?}"
    );

    // attach shows the running container's output as it is written.
    let mut attach = c
        .kubectl_command(&["attach", "ticker"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let mut attached_out = attach.stdout.take().context("no stdout")?;
    std::thread::sleep(Duration::from_secs(2));
    let _ = attach.kill();
    let _ = attach.wait();
    let mut attached = String::new();
    attached_out.read_to_string(&mut attached)?;
    ensure!(attached.contains("tick"), "attach: {attached:?}");

    // logs -f streams new lines as they come.
    let mut follow = c
        .kubectl_command(&["logs", "-f", "ticker", "--tail", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let mut stdout = follow.stdout.take().context("no stdout")?;
    std::thread::sleep(Duration::from_secs(2));
    let _ = follow.kill();
    let _ = follow.wait();
    let mut followed = String::new();
    stdout.read_to_string(&mut followed)?;
    ensure!(followed.matches("tick").count() >= 3, "logs -f: {followed}");

    // port-forward reaches the wasi:http component.
    c.wait_for(&["pod", "echo"], "echo to be ready", wait, |p| {
        container(p)["ready"] == true
    })?;
    let mut forward = c
        .kubectl_command(&["port-forward", "pod/echo", ":18080"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let mut line = String::new();
    let mut reader = std::io::BufReader::new(forward.stdout.take().context("no stdout")?);
    std::io::BufRead::read_line(&mut reader, &mut line)?;
    let port: u16 = line
        .split("127.0.0.1:")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|p| p.parse().ok())
        .with_context(|| format!("no port in {line:?}"))?;
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", port))?;
    conn.write_all(b"GET /through-forward HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")?;
    let mut answer = String::new();
    conn.read_to_string(&mut answer)?;
    let _ = forward.kill();
    let _ = forward.wait();
    ensure!(answer.contains("\"path\":\"/through-forward\""), "{answer}");

    // The control plane goes away: pods keep running and restarting, nothing is recreated.
    let before = c.get_json(&["pod", "ticker"])?;
    let crashes_before = container(&c.get_json(&["pod", "crasher"])?)["restartCount"]
        .as_i64()
        .unwrap_or(0);
    c.stop()?;
    std::thread::sleep(Duration::from_secs(8));
    // While offline, node-b's agent restarts too: its pods come back from its own disk.
    b.kill9()?;
    b.start_again()?;
    std::thread::sleep(Duration::from_secs(3));
    c.start_again()?;
    let after = c.wait_for(
        &["pod", "crasher"],
        "crasher's restarts while offline",
        wait,
        |p| container(p)["restartCount"].as_i64().unwrap_or(0) > crashes_before,
    )?;
    ensure!(
        phase(&after) == "Running"
            || phase(&after) == "Pending"
            || container(&after)["state"]["waiting"]["reason"] == "CrashLoopBackOff",
        "{after:#}"
    );
    let ticker_after = c.wait_for(&["pod", "ticker"], "ticker running again", wait, |p| {
        container(p)["state"]["running"].is_object()
    })?;
    ensure!(
        ticker_after["metadata"]["uid"] == before["metadata"]["uid"],
        "the pod was recreated"
    );
    // hello completed before the agent restarts and must not run again.
    let hello_after = c.get_json(&["pod", "hello"])?;
    ensure!(
        phase(&hello_after) == "Succeeded" && container(&hello_after)["restartCount"] == 0,
        "{hello_after:#}"
    );

    // Deleting a pod stops it within its grace period and removes it.
    let started = std::time::Instant::now();
    c.kubectl_ok(&["delete", "pod", "ticker", "--wait=true", "--timeout=20s"])?;
    ensure!(
        started.elapsed() < Duration::from_secs(10),
        "delete took {:?}",
        started.elapsed()
    );
    let gone = c.kubectl(&["get", "pod", "ticker"])?;
    ensure!(!gone.status.success(), "ticker still exists");

    drop(a.kill9());
    Ok(())
}

#[test]
fn heartbeats_stay_in_memory_and_a_silent_node_turns_unknown() -> Result<()> {
    // Heartbeats every second, a status write at most every 5 minutes, Unknown after 3 s.
    let c = Cluster::start_with(&[
        "--node-heartbeat",
        "1",
        "--node-status-interval",
        "300",
        "--node-grace",
        "3",
    ])?;
    let token = c.bramble_ok(&["token", "create"])?;
    let mut node = Node::join(&c, "quiet", token.trim())?;
    let before = c.get_json(&["node", "quiet"])?;
    std::thread::sleep(Duration::from_secs(4));
    let after = c.get_json(&["node", "quiet"])?;
    ensure!(
        before["metadata"]["resourceVersion"] == after["metadata"]["resourceVersion"],
        "four heartbeats wrote the Node: {} -> {}",
        before["metadata"]["resourceVersion"],
        after["metadata"]["resourceVersion"]
    );
    // A node's certificate acts only through its own stream: the REST API refuses it.
    let creds: Value = serde_json::from_str(&node.credentials_json()?)?;
    let b64 = |k: &str| {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(creds[k].as_str().unwrap_or_default())
    };
    let kubeconfig = c.scratch().join("node-kubeconfig.yaml");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {}\n    certificate-authority-data: {}\nusers:\n- name: node\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\ncontexts:\n- name: c\n  context: {{cluster: c, user: node}}\ncurrent-context: c\n",
            c.url(),
            b64("ca_pem"),
            b64("cert_pem"),
            b64("key_pem")
        ),
    )?;
    for args in [["get", "pods"], ["get", "secrets"]] {
        let out = std::process::Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(args)
            .env("HOME", c.scratch())
            .output()?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        ensure!(
            !out.status.success()
                && stderr.contains("Forbidden")
                && stderr.contains("system:node:quiet"),
            "a node credential read {args:?}: {stderr}"
        );
    }
    node.kill9()?;
    let unknown = c.wait_for(
        &["node", "quiet"],
        "Ready=Unknown",
        Duration::from_secs(20),
        |n| condition_status(n, "Ready") == Some("Unknown"),
    )?;
    ensure!(
        unknown["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Ready" && c["reason"] == "NodeStatusUnknown"),
        "{unknown:#}"
    );
    // It comes back Ready when the agent does.
    node.start_again()?;
    c.wait_for(
        &["node", "quiet"],
        "Ready again",
        Duration::from_secs(20),
        |n| condition_status(n, "Ready") == Some("True"),
    )?;
    Ok(())
}

#[test]
fn sigterm_with_on_shutdown_stop_reports_the_pods_stopped() -> Result<()> {
    let c = Cluster::start()?;
    let token = c.bramble_ok(&["token", "create"])?;
    let mut node = Node::join_with(&c, "draining", token.trim(), &["--on-shutdown", "stop"])?;
    let ticker = c.push_sample("ticker")?;
    c.kubectl_stdin(
        &["apply", "-f", "-"],
        &pod("ticker", &ticker, "draining", ""),
    )?;
    c.wait_for(
        &["pod", "ticker"],
        "ticker to run",
        Duration::from_secs(60),
        |p| container(p)["state"]["running"].is_object(),
    )?;
    let status = node.terminate()?;
    ensure!(
        status.success(),
        "bramble-node exited with {status}: {}",
        node.log()
    );
    let stopped = c.get_json(&["pod", "ticker"])?;
    ensure!(
        container(&stopped)["state"]["terminated"].is_object(),
        "the pod was not reported stopped: {stopped:#}\nnode log:\n{}",
        node.log()
    );
    Ok(())
}

#[test]
fn a_node_credential_cannot_act_for_another_node() -> Result<()> {
    use bramble_api::node_protocol::node_gateway_client::NodeGatewayClient;
    use bramble_api::node_protocol::{
        node_message, NodeInfo, NodeMessage, PodStatusReport, Register,
    };
    let c = Cluster::start()?;
    let token = c.bramble_ok(&["token", "create"])?;
    let a = Node::join(&c, "node-a", token.trim())?;
    let _b = Node::join(&c, "node-b", token.trim())?;
    let ticker = c.push_sample("ticker")?;
    c.kubectl_stdin(&["apply", "-f", "-"], &pod("victim", &ticker, "node-b", ""))?;
    let victim = c.wait_for(
        &["pod", "victim"],
        "victim to run",
        Duration::from_secs(60),
        |p| container(p)["state"]["running"].is_object(),
    )?;
    let credentials: bramble_node::credentials::Credentials =
        serde_json::from_str(&a.credentials_json()?)?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let register = |name: &str| NodeMessage {
            kind: Some(node_message::Kind::Register(Register {
                info: Some(NodeInfo {
                    name: name.into(),
                    ..Default::default()
                }),
                resume_revision: 0,
            })),
        };
        // Registering as node-b with node-a's certificate is refused.
        let channel = bramble_node::connection::channel(&credentials)
            .await
            .map_err(anyhow::Error::msg)?;
        let refused = NodeGatewayClient::new(channel)
            .connect(futures::stream::iter([register("node-b")]))
            .await;
        let status = refused.err().context("node-a registered as node-b")?;
        ensure!(status.code() == tonic::Code::PermissionDenied, "{status:?}");

        // As itself, node-a cannot write the status of a pod bound to node-b.
        let channel = bramble_node::connection::channel(&credentials)
            .await
            .map_err(anyhow::Error::msg)?;
        let forged = NodeMessage {
            kind: Some(node_message::Kind::PodStatus(PodStatusReport {
                namespace: "default".into(),
                name: "victim".into(),
                uid: victim["metadata"]["uid"]
                    .as_str()
                    .unwrap_or_default()
                    .into(),
                status_json: br#"{"phase":"Failed","message":"forged"}"#.to_vec(),
                terminated: false,
            })),
        };
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tx.send(register("node-a")).await?;
        tx.send(forged).await?;
        let _stream = NodeGatewayClient::new(channel)
            .connect(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        anyhow::Ok(())
    })?;
    let after = c.get_json(&["pod", "victim"])?;
    ensure!(
        after["status"]["message"] != "forged" && phase(&after) == "Running",
        "node-a rewrote node-b's pod: {after:#}"
    );
    Ok(())
}

#[test]
fn hostile_samples_are_contained_and_the_agent_carries_on() -> Result<()> {
    let c = Cluster::start()?;
    let token = c.bramble_ok(&["token", "create"])?;
    let node = Node::join(&c, "sandbox", token.trim())?;
    let busy = c.push_sample("hostile-busy-loop")?;
    let flood = c.push_sample("hostile-output-flood")?;
    let escape = c.push_sample("hostile-escape")?;
    let hello = c.push_sample("hello")?;
    let deadline = "  restartPolicy: Never\n  activeDeadlineSeconds: 4\n";
    c.kubectl_stdin(
        &["apply", "-f", "-"],
        &pod("busy", &busy, "sandbox", deadline),
    )?;
    c.kubectl_stdin(
        &["apply", "-f", "-"],
        &pod("flood", &flood, "sandbox", deadline),
    )?;
    c.kubectl_stdin(&["apply", "-f", "-"], &format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: escape\nspec:\n  nodeName: sandbox\n  restartPolicy: Never\n  containers:\n  - name: escape\n    image: {escape}\n    volumeMounts:\n    - name: data\n      mountPath: /data\n  volumes:\n  - name: data\n    emptyDir: {{}}\n"
    ))?;
    let wait = Duration::from_secs(60);
    for name in ["busy", "flood"] {
        let ended = c.wait_for(&["pod", name], "the active deadline", wait, |p| {
            phase(p) == "Failed"
        })?;
        ensure!(
            ended["status"]["reason"] == "DeadlineExceeded",
            "{name}: {ended:#}"
        );
    }
    let held = c.wait_for(&["pod", "escape"], "escape to finish", wait, |p| {
        matches!(phase(p), "Succeeded" | "Failed")
    })?;
    ensure!(
        phase(&held) == "Succeeded",
        "a read escaped the sandbox: {held:#}\n{}",
        c.kubectl_ok(&["logs", "escape"])?
    );
    // The flood's log stayed bounded by rotation (3 files of 10 MiB at most).
    let logged = node.disk_usage("pods")?;
    ensure!(
        logged < 40 * 1024 * 1024,
        "the node's pod directories hold {logged} bytes"
    );
    // The agent still runs new pods and serves logs.
    c.kubectl_stdin(
        &["apply", "-f", "-"],
        &pod("after", &hello, "sandbox", "  restartPolicy: Never\n"),
    )?;
    c.wait_for(
        &["pod", "after"],
        "a pod after the hostile ones",
        wait,
        |p| phase(p) == "Succeeded",
    )?;
    ensure!(c
        .kubectl_ok(&["logs", "after"])?
        .contains("hello from a wasm workload"));
    Ok(())
}

#[test]
fn bramble_up_runs_the_readme_samples_and_wasm_workloads_on_its_local_node() -> Result<()> {
    let c = Cluster::up()?;
    let nodes = c.wait_for(&["nodes"], "the local node", Duration::from_secs(30), |n| {
        n["items"].as_array().is_some_and(|items| !items.is_empty())
    })?;
    let node = nodes["items"][0]["metadata"]["name"]
        .as_str()
        .context("a node without a name")?
        .to_string();
    let image = c.push_sample("hello")?;
    // The README's manifest with this cluster's registry address; the scheduler places it.
    let manifest = sample_manifest("hello/pod.yaml", "hello", &image)?;
    c.kubectl_stdin(&["apply", "-f", "-"], &manifest)?;
    c.wait_for(
        &["pod", "hello"],
        "hello to succeed",
        Duration::from_secs(60),
        |p| phase(p) == "Succeeded",
    )?;
    let log = c.kubectl_ok(&["logs", "hello"])?;
    ensure!(
        log.contains("GREETING=hello from the pod spec") && log.contains("POD_NAME=hello"),
        "{log}"
    );

    // The sensor sample as shipped: its config from a ConfigMap volume, readings to an emptyDir.
    let image = c.push_sample("sensor")?;
    let manifest = sample_manifest("sensor/pod.yaml", "sensor", &image)?;
    c.kubectl_stdin(&["apply", "-f", "-"], &manifest)?;
    let sensor = c.wait_for(
        &["pod", "sensor"],
        "sensor to finish",
        Duration::from_secs(60),
        |p| matches!(phase(p), "Succeeded" | "Failed"),
    )?;
    ensure!(
        phase(&sensor) == "Succeeded",
        "{sensor:#}\n{}",
        c.kubectl_ok(&["logs", "sensor"]).unwrap_or_default()
    );
    ensure!(c.get_json(&["pod", "hello"])?["spec"]["nodeName"] == node.as_str());

    // The README's workloads: a Deployment of tickers and a DaemonSet of http-echo.
    let ticker = c.push_sample("ticker")?;
    let echo = c.push_sample("http-echo")?;
    let workloads = format!(
        "{}---\n{}",
        sample_manifest("ticker/deployment.yaml", "ticker", &ticker)?,
        sample_manifest("http-echo/daemonset.yaml", "http-echo", &echo)?
    );
    c.kubectl_stdin(&["apply", "-f", "-"], &workloads)?;
    c.kubectl_ok(&["rollout", "status", "deployment/ticker", "--timeout=90s"])?;
    c.kubectl_ok(&["rollout", "status", "daemonset/http-echo", "--timeout=90s"])?;
    let pods = c.get_json(&["pods", "-l", "app in (ticker,http-echo)"])?;
    let pods = pods["items"].as_array().cloned().unwrap_or_default();
    ensure!(pods.len() == 4, "three tickers and one http-echo: {pods:?}");
    ensure!(
        pods.iter()
            .all(|p| phase(p) == "Running" && p["spec"]["nodeName"] == node.as_str()),
        "{pods:?}"
    );
    let logs = c.kubectl_ok(&["logs", "deployment/ticker"])?;
    ensure!(logs.contains("tick"), "{logs}");
    for workload in ["deployment/ticker", "daemonset/http-echo"] {
        let deleted = c.kubectl(&["delete", workload, "--cascade=foreground", "--timeout=120s"])?;
        ensure!(
            deleted.status.success(),
            "deleting {workload}: {}\n{}",
            String::from_utf8_lossy(&deleted.stderr),
            c.kubectl_ok(&["get", "pods,ds,controllerrevisions", "-o", "wide"])
                .unwrap_or_default()
        );
    }
    let left = c.get_json(&["pods", "-l", "app in (ticker,http-echo)"])?;
    ensure!(
        left["items"].as_array().is_some_and(Vec::is_empty),
        "{left}"
    );
    Ok(())
}

/// A sample's manifest from `images/`, pointing at this cluster's registry instead of
/// localhost:6443.
fn sample_manifest(path: &str, sample: &str, image: &str) -> Result<String> {
    Ok(std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../images")
            .join(path),
    )?
    .replace(&format!("localhost:6443/samples/{sample}:v1"), image))
}

#[test]
fn init_containers_run_first_and_in_order() -> Result<()> {
    let c = Cluster::start()?;
    let token = c.bramble_ok(&["token", "create"])?;
    let _node = Node::join(&c, "init-node", token.trim())?;
    let hello = c.push_sample("hello")?;
    let ticker = c.push_sample("ticker")?;
    c.kubectl_stdin(&["apply", "-f", "-"], &format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: staged\nspec:\n  nodeName: init-node\n  initContainers:\n  - name: first\n    image: {hello}\n    args: [\"one\"]\n  - name: second\n    image: {hello}\n    args: [\"two\"]\n  containers:\n  - name: app\n    image: {ticker}\n"
    ))?;
    let running = c.wait_for(
        &["pod", "staged"],
        "the app container",
        Duration::from_secs(60),
        |p| container(p)["state"]["running"].is_object(),
    )?;
    let inits = running["status"]["initContainerStatuses"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    ensure!(inits.len() == 2, "{running:#}");
    let finished = |i: usize| {
        inits[i]["state"]["terminated"]["finishedAt"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    let started = |i: usize| {
        inits[i]["state"]["terminated"]["startedAt"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    ensure!(
        inits
            .iter()
            .all(|s| s["state"]["terminated"]["reason"] == "Completed"),
        "{inits:#?}"
    );
    ensure!(
        finished(0) <= started(1),
        "second started before first finished: {inits:#?}"
    );
    ensure!(
        condition_status(&running, "Initialized") == Some("True"),
        "{running:#}"
    );
    ensure!(c
        .kubectl_ok(&["logs", "staged", "-c", "second"])?
        .contains("[1] two"));
    Ok(())
}
