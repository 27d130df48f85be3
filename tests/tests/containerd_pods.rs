//! Container pods through containerd, end to end: a cluster of one node with a private real
//! containerd (runc, CNI bridge networking) and one Wasm-only node, driven by the real kubectl.
//! Containers land only where they can run, and logs, exec, port-forward, OOM kills, clean
//! deletion and re-adoption after an agent restart work as on a kubelet.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use bramble_tests::containerd::{Containerd, PodNetworkOnHost};
use bramble_tests::node::Node;
use bramble_tests::Cluster;
use serde_json::Value;

/// The containerd namespace the nodes use.
const NAMESPACE: &str = "bramble";

/// A cluster with `server-1` (containerd) and `board-1` (Wasm only).
struct Mixed {
    cluster: Cluster,
    containerd: Containerd,
    server: Node,
    _board: Node,
    network_dir: std::path::PathBuf,
    // Dropped after the nodes (fields drop in order).
    _network: PodNetworkOnHost,
}

impl Mixed {
    fn start(subnet: &str, bridge: &str) -> Result<Mixed> {
        let containerd = Containerd::start()?;
        let cluster = Cluster::start()?;
        let token = cluster.bramble_ok(&["token", "create"])?.trim().to_string();
        let network = PodNetworkOnHost::new(subnet, bridge);
        let args = network.node_args(&containerd);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let server = Node::join_with(&cluster, "server-1", &token, &args)?;
        let board = Node::join(&cluster, "board-1", &token)?;
        let network_dir = server.data_dir().join("network");
        Ok(Mixed {
            cluster,
            containerd,
            server,
            _board: board,
            network_dir,
            _network: network,
        })
    }

    fn pods(&self, selector: &str) -> Result<Vec<Value>> {
        let list = self
            .cluster
            .get_json(&["pods", "-l", selector, "-o", "json"])?;
        Ok(list["items"].as_array().cloned().unwrap_or_default())
    }

    /// Waits until `count` pods match `selector` and all are Running and Ready.
    fn wait_running(&self, selector: &str, count: usize) -> Result<Vec<Value>> {
        let listed = self.cluster.wait_for(
            &["pods", "-l", selector, "-o", "json"],
            &format!("{count} running pods of {selector}"),
            Duration::from_secs(120),
            |list| {
                let items = list["items"].as_array().cloned().unwrap_or_default();
                items.len() == count
                    && items.iter().all(|p| {
                        p["status"]["phase"] == "Running"
                            && bramble_tests::node::condition_status(p, "Ready") == Some("True")
                    })
            },
        )?;
        Ok(listed["items"].as_array().cloned().unwrap_or_default())
    }

    /// Names of containerd objects of the node's namespace.
    fn containerd_objects(&self, what: &str) -> Result<Vec<String>> {
        self.containerd.list(NAMESPACE, what)
    }

    /// Active (container) snapshots: committed image layers are kept, as containerd does.
    fn active_snapshots(&self) -> Result<Vec<String>> {
        let out = self
            .containerd
            .ctr_ok(&["-n", NAMESPACE, "snapshots", "ls"])?;
        Ok(out
            .lines()
            .skip(1)
            .filter(|l| l.split_whitespace().nth(2) == Some("Active"))
            .map(|l| l.split_whitespace().next().unwrap_or_default().to_string())
            .collect())
    }

    fn netns_files(&self) -> Vec<String> {
        std::fs::read_dir(self.network_dir.join("netns"))
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }
}

fn name_of(pod: &Value) -> String {
    pod["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn manifest(busybox: &str, echo: &str) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web-box
spec:
  replicas: 2
  selector:
    matchLabels: {{app: web-box}}
  template:
    metadata:
      labels: {{app: web-box}}
    spec:
      terminationGracePeriodSeconds: 3
      containers:
        - name: httpd
          image: {busybox}
          command: ["/bin/busybox", "sh", "-c"]
          args:
            - mkdir -p /tmp/www && echo "hello from $(/bin/busybox hostname)" > /tmp/www/index.html && echo serving && exec /bin/busybox httpd -f -p 8080 -h /tmp/www
          ports:
            - containerPort: 8080
          resources:
            limits: {{memory: 32Mi, cpu: 200m}}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: echo
spec:
  replicas: 1
  selector:
    matchLabels: {{app: echo}}
  template:
    metadata:
      labels: {{app: echo}}
    spec:
      containers:
        - name: echo
          image: {echo}
          ports:
            - containerPort: 18481
"#
    )
}

/// An HTTP GET through `kubectl port-forward`; returns the body.
fn get_through_port_forward(cluster: &Cluster, pod: &str, port: u16) -> Result<String> {
    let mut child = cluster
        .kubectl_command(&["port-forward", &format!("pod/{pod}"), &format!(":{port}")])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    // Kept open until the end: kubectl prints a line per connection, and dies of SIGPIPE if
    // its stdout is gone.
    let mut stdout = BufReader::new(child.stdout.take().context("no stdout")?);
    let mut line = String::new();
    stdout.read_line(&mut line)?;
    // "Forwarding from 127.0.0.1:PORT -> 8080"
    let local = line
        .split_whitespace()
        .nth(2)
        .and_then(|a| a.rsplit(':').next())
        .and_then(|p| p.parse::<u16>().ok())
        .with_context(|| format!("unexpected port-forward output {line:?}"))?;
    let result = (|| -> Result<String> {
        let mut stream = TcpStream::connect(("127.0.0.1", local))?;
        stream.set_read_timeout(Some(Duration::from_secs(20)))?;
        write!(
            stream,
            "GET /index.html HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        )?;
        // kubectl resets the local connection once the pod has closed its side, so what
        // arrived before the reset is the answer.
        let mut response = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = stream.read(&mut buf) {
            if n == 0 {
                break;
            }
            response.extend_from_slice(&buf[..n]);
        }
        Ok(String::from_utf8_lossy(&response).into_owned())
    })();
    let _ = child.kill();
    drop(stdout);
    let mut stderr = String::new();
    if let Some(mut err) = child.stderr.take() {
        let _ = err.read_to_string(&mut stderr);
    }
    let _ = child.wait();
    result.with_context(|| format!("port-forward to {pod}:{port}; kubectl said: {stderr}"))
}

#[test]
fn containers_and_wasm_from_one_apply_land_where_they_can_run() -> Result<()> {
    let mixed = Mixed::start("10.77.0.0/24", "brmix0")?;
    let c = &mixed.cluster;
    let busybox = c.push_oci_sample("busybox")?;
    let echo = c.push_sample("http-echo")?;
    c.kubectl_stdin(&["apply", "-f", "-"], &manifest(&busybox, &echo))?;

    let boxes = mixed.wait_running("app=web-box", 2)?;
    for pod in &boxes {
        ensure!(
            pod["spec"]["nodeName"] == "server-1",
            "a container pod landed on {} (only server-1 runs containers)",
            pod["spec"]["nodeName"]
        );
        let ip = pod["status"]["podIP"].as_str().unwrap_or_default();
        ensure!(
            ip.starts_with("10.77.0."),
            "pod {} has IP {ip:?}, not one of the pod subnet",
            name_of(pod)
        );
    }
    ensure!(
        boxes[0]["status"]["podIP"] != boxes[1]["status"]["podIP"],
        "two pods share an IP"
    );
    let echoes = mixed.wait_running("app=echo", 1)?;

    // Logs, as for Wasm pods.
    let first = name_of(&boxes[0]);
    let logs = c.kubectl_ok(&["logs", &first])?;
    ensure!(logs.contains("serving"), "logs of {first}: {logs:?}");

    // Exec runs in the container (its own hostname is the pod's name).
    let hostname = c.kubectl_ok(&["exec", &first, "--", "/bin/busybox", "hostname"])?;
    ensure!(hostname.trim() == first, "exec hostname gave {hostname:?}");
    let out = c.kubectl(&["exec", &first, "--", "/bin/sh", "-c", "exit 7"])?;
    ensure!(
        out.status.code() == Some(7),
        "exec exit code: {:?}",
        out.status
    );

    // Port-forward reaches the container's port in its network namespace, and the Wasm pod's.
    let page = get_through_port_forward(c, &first, 8080)?;
    ensure!(
        page.contains(&format!("hello from {first}")),
        "busybox httpd answered {page:?}"
    );
    let echoed = get_through_port_forward(c, &name_of(&echoes[0]), 18481)?;
    ensure!(echoed.contains("200"), "http-echo answered {echoed:?}");

    // containerd holds exactly the two containers, running.
    let containers = mixed.containerd_objects("containers")?;
    ensure!(
        containers.len() == 2,
        "containers in containerd: {containers:?}"
    );

    // Deleting leaves no containers, tasks, container snapshots or network namespaces.
    c.kubectl_ok(&["delete", "deployment", "web-box", "echo", "--wait=true"])?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = (
            mixed.pods("app in (web-box, echo)")?.len(),
            mixed.containerd_objects("containers")?,
            mixed.containerd_objects("tasks")?,
            mixed.active_snapshots()?,
            mixed.netns_files(),
        );
        if left.0 == 0
            && left.1.is_empty()
            && left.2.is_empty()
            && left.3.is_empty()
            && left.4.is_empty()
        {
            break;
        }
        if Instant::now() > deadline {
            bail!("left behind after deleting (pods, containers, tasks, snapshots, netns): {left:?}\nnode log:\n{}", mixed.server.log());
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    Ok(())
}

#[test]
fn a_container_over_its_memory_limit_is_oom_killed() -> Result<()> {
    let mixed = Mixed::start("10.78.0.0/24", "broom0")?;
    let c = &mixed.cluster;
    let busybox = c.push_oci_sample("busybox")?;
    c.kubectl_stdin(
        &["apply", "-f", "-"],
        &format!(
            r#"apiVersion: v1
kind: Pod
metadata:
  name: hog
spec:
  restartPolicy: Never
  containers:
    - name: hog
      image: {busybox}
      args: ["-c", "x=aaaaaaaaaaaaaaaa; while true; do x=$x$x; done"]
      resources:
        limits: {{memory: 16Mi}}
"#
        ),
    )?;
    let pod = c.wait_for(
        &["pod", "hog", "-o", "json"],
        "the hog to be killed",
        Duration::from_secs(120),
        |p| p["status"]["phase"] == "Failed",
    )?;
    let terminated = &pod["status"]["containerStatuses"][0]["state"]["terminated"];
    ensure!(
        terminated["reason"] == "OOMKilled" && terminated["exitCode"] == 137,
        "the hog ended as {terminated}"
    );
    Ok(())
}

#[test]
fn a_restarted_agent_adopts_running_containers() -> Result<()> {
    let mut mixed = Mixed::start("10.79.0.0/24", "bradopt0")?;
    let c = &mixed.cluster;
    let busybox = c.push_oci_sample("busybox")?;
    c.kubectl_stdin(
        &["apply", "-f", "-"],
        &format!(
            r#"apiVersion: v1
kind: Pod
metadata:
  name: sleeper
  labels: {{app: sleeper}}
spec:
  terminationGracePeriodSeconds: 2
  containers:
    - name: sleeper
      image: {busybox}
      args: ["-c", "echo started once; while true; do sleep 1; done"]
"#
        ),
    )?;
    let before = mixed.wait_running("app=sleeper", 1)?;
    let pid_of_task = |m: &Mixed| -> Result<Vec<String>> {
        let out = m.containerd.ctr_ok(&["-n", NAMESPACE, "tasks", "ls"])?;
        Ok(out
            .lines()
            .skip(1)
            .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
            .collect())
    };
    let tasks_before = pid_of_task(&mixed)?;
    ensure!(tasks_before.len() == 1, "tasks: {tasks_before:?}");

    mixed.server.kill9()?;
    mixed.server.start_again()?;
    // The node reconnects and reports the pod again: same container, same pid, no restart.
    std::thread::sleep(Duration::from_secs(3));
    let after = mixed.wait_running("app=sleeper", 1)?;
    let status = &after[0]["status"]["containerStatuses"][0];
    ensure!(
        status["restartCount"] == 0,
        "the container was restarted: {status}"
    );
    ensure!(
        after[0]["status"]["podIP"] == before[0]["status"]["podIP"],
        "the pod IP changed"
    );
    let tasks_after = pid_of_task(&mixed)?;
    ensure!(
        tasks_after == tasks_before,
        "containerd's tasks changed across the agent restart: {tasks_before:?} -> {tasks_after:?}\nnode log:\n{}",
        mixed.server.log()
    );
    let logs = c.kubectl_ok(&["logs", "sleeper"])?;
    ensure!(logs.matches("started once").count() == 1, "logs: {logs:?}");
    c.kubectl_ok(&["delete", "pod", "sleeper"])?;
    ensure!(
        mixed.containerd_objects("containers")?.is_empty(),
        "a container was left after the delete"
    );
    Ok(())
}

#[test]
fn a_pod_whose_runtime_class_selects_the_shim_runs_wasm_under_containerd() -> Result<()> {
    let mixed = Mixed::start("10.80.0.0/24", "brshim0")?;
    let c = &mixed.cluster;
    let hello = c.push_sample("hello")?;
    c.kubectl_stdin(
        &["apply", "-f", "-"],
        &format!(
            r#"apiVersion: v1
kind: Pod
metadata:
  name: shimmed
spec:
  runtimeClassName: wasm-shim
  restartPolicy: Never
  containers:
    - name: hello
      image: {hello}
      args: ["through", "the shim"]
      env:
        - name: GREETING
          value: from containerd
"#
        ),
    )?;
    let pod = c.wait_for(
        &["pod", "shimmed", "-o", "json"],
        "the shimmed pod to complete",
        Duration::from_secs(120),
        |p| p["status"]["phase"] == "Succeeded" || p["status"]["phase"] == "Failed",
    )?;
    ensure!(
        pod["status"]["phase"] == "Succeeded" && pod["spec"]["nodeName"] == "server-1",
        "the shimmed pod ended as {}",
        pod["status"]
    );
    let logs = c.kubectl_ok(&["logs", "shimmed"])?;
    ensure!(
        logs.contains("through")
            && logs.contains("the shim")
            && logs.contains("GREETING=from containerd"),
        "logs of the shimmed pod: {logs:?}"
    );
    // Only server-1 offers the wasm-shim handler, and its agent runs that handler only
    // through containerd; nothing is left behind once the pod ended.
    let log = mixed.containerd.log_tail();
    ensure!(
        mixed.containerd_objects("containers")?.is_empty(),
        "containers left: containerd log:\n{log}"
    );
    Ok(())
}

#[test]
fn security_context_volumes_and_limits_reach_the_container() -> Result<()> {
    let mixed = Mixed::start("10.81.0.0/24", "brsec0")?;
    let c = &mixed.cluster;
    let busybox = c.push_oci_sample("busybox")?;
    c.kubectl_stdin(
        &["apply", "-f", "-"],
        &format!(
            r#"apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
data:
  mode: strict
---
apiVersion: v1
kind: Pod
metadata:
  name: locked
spec:
  terminationGracePeriodSeconds: 1
  securityContext:
    runAsUser: 1000
    runAsGroup: 3000
  containers:
    - name: app
      image: {busybox}
      workingDir: /scratch
      args: ["-c", "while true; do sleep 1; done"]
      env:
        - name: MODE
          valueFrom:
            configMapKeyRef: {{name: settings, key: mode}}
      securityContext:
        readOnlyRootFilesystem: true
      resources:
        limits: {{memory: 24Mi, cpu: 250m}}
      volumeMounts:
        - {{name: scratch, mountPath: /scratch}}
        - {{name: settings, mountPath: /etc/settings}}
  volumes:
    - name: scratch
      emptyDir: {{}}
    - name: settings
      configMap: {{name: settings}}
"#
        ),
    )?;
    c.wait_for(
        &["pod", "locked", "-o", "json"],
        "the locked pod to run",
        Duration::from_secs(120),
        |p| p["status"]["phase"] == "Running",
    )?;
    let exec =
        |script: &str| c.kubectl(&["exec", "locked", "--", "/bin/busybox", "sh", "-c", script]);
    let ids =
        exec("/bin/busybox id -u; /bin/busybox id -g; pwd; echo $MODE; cat /etc/settings/mode")?;
    let ids = String::from_utf8_lossy(&ids.stdout).to_string();
    ensure!(
        ids.split_whitespace().collect::<Vec<_>>()
            == ["1000", "3000", "/scratch", "strict", "strict"],
        "user, group, working dir, env and config volume in the container: {ids:?}"
    );
    let root = exec("echo x > /x")?;
    ensure!(
        !root.status.success(),
        "the read-only root file system took a write"
    );
    let volume = exec("echo kept > /scratch/file && cat /scratch/file")?;
    ensure!(
        String::from_utf8_lossy(&volume.stdout).trim() == "kept",
        "the emptyDir volume: {:?}",
        String::from_utf8_lossy(&volume.stderr)
    );
    // The limits are on the container's cgroup (v1 here: memory limit and CFS quota).
    let ids = mixed.containerd_objects("containers")?;
    let [id] = ids.as_slice() else {
        bail!("containers in containerd: {ids:?}");
    };
    let find = |controller: &str, file: &str| -> Result<String> {
        let out = Command::new("find")
            .args([
                &format!("/sys/fs/cgroup/{controller}"),
                "-maxdepth",
                "4",
                "-type",
                "d",
                "-name",
                id,
            ])
            .output()?;
        let dir = String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .map(str::to_string);
        let dir = dir.with_context(|| format!("no {controller} cgroup named {id}"))?;
        Ok(std::fs::read_to_string(format!("{dir}/{file}"))?
            .trim()
            .to_string())
    };
    let memory = find("memory", "memory.limit_in_bytes")?;
    let quota = find("cpu", "cpu.cfs_quota_us")?;
    ensure!(
        memory == (24 * 1024 * 1024).to_string() && quota == "25000",
        "the container's cgroup has memory limit {memory}, CFS quota {quota}"
    );
    Ok(())
}
