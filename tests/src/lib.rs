//! The one harness every end-to-end test uses: it starts a real `bramble server` in a temp dir
//! on a free loopback port, hands out a real kubectl (v1.32, on PATH) pointed at it, and cleans
//! up (process by pid, temp dir) when dropped.

use std::io::Write;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

pub mod containerd;
pub mod etcd;
pub mod fleet;
pub mod kube_client;
pub mod memory;
pub mod node;
pub mod pod_starts;
pub mod skopeo;
pub mod stats;
pub mod upstream_registry;

/// Path of a binary built by this workspace (the test command builds them before the tests).
pub fn workspace_binary(name: &str) -> Result<PathBuf> {
    if let Ok(p) = std::env::var(format!(
        "BRAMBLE_BIN_{}",
        name.replace('-', "_").to_uppercase()
    )) {
        return Ok(PathBuf::from(p));
    }
    // Test binaries live in target/<profile>/deps/, bench binaries in target/<profile>/; the
    // workspace's binaries sit in target/<profile>/.
    let exe = std::env::current_exe()?;
    let dir = exe
        .parent()
        .context("cannot locate the target directory from the running binary")?;
    for candidate in [
        dir.join(name),
        dir.parent().map(|p| p.join(name)).unwrap_or_default(),
    ] {
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    bail!("{name} is not built next to {}: build it first (the README's test command runs `cargo build --workspace --bins`)", exe.display())
}

/// Fails with a clear message when kubectl v1.32 is not on PATH (never skips).
pub fn require_kubectl() -> Result<()> {
    let out = Command::new("kubectl")
        .args(["version", "--client", "-o", "json"])
        .output();
    match out {
        Ok(o) if o.status.success() => Ok(()),
        _ => bail!("kubectl is not on PATH: the end-to-end tests need the real kubectl 1.32 (the test command installs it)"),
    }
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A running `bramble server` and the kubectl that talks to it.
pub struct Cluster {
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
    /// `server`, or `up` for a cluster with a local node in the same process.
    command: &'static str,
    extra_args: Vec<String>,
}

impl Cluster {
    /// Starts a fresh server and waits until it answers.
    pub fn start() -> Result<Cluster> {
        Cluster::start_with(&[])
    }

    /// Starts a fresh `bramble up`: the control plane and a local node in one process.
    pub fn up() -> Result<Cluster> {
        Cluster::launch("up", &[])
    }

    /// Starts a fresh server with extra `bramble server` flags.
    pub fn start_with(extra_args: &[&str]) -> Result<Cluster> {
        Cluster::launch("server", extra_args)
    }

    /// Another control plane of this cluster (same CA and admin credentials, its own data
    /// directory and port), started with `extra_args` — for control planes sharing an etcd.
    pub fn another_control_plane(&self, extra_args: &[&str]) -> Result<Cluster> {
        Cluster::launch_with("server", extra_args, Some(&self.data_dir().join("pki")))
    }

    fn launch(command: &'static str, extra_args: &[&str]) -> Result<Cluster> {
        Cluster::launch_with(command, extra_args, None)
    }

    fn launch_with(
        command: &'static str,
        extra_args: &[&str],
        pki: Option<&std::path::Path>,
    ) -> Result<Cluster> {
        require_kubectl()?;
        let dir = tempfile::Builder::new().prefix("bramble-e2e-").tempdir()?;
        if let Some(pki) = pki {
            let to = dir.path().join("data").join("pki");
            std::fs::create_dir_all(&to)?;
            for entry in std::fs::read_dir(pki)? {
                let entry = entry?;
                std::fs::copy(entry.path(), to.join(entry.file_name()))?;
            }
        }
        let mut cluster = Cluster {
            dir,
            port: free_port()?,
            child: None,
            command,
            extra_args: extra_args.iter().map(|a| a.to_string()).collect(),
        };
        cluster.spawn()?;
        Ok(cluster)
    }

    /// The server's data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The kubeconfig the server wrote.
    pub fn kubeconfig(&self) -> PathBuf {
        self.data_dir().join("kubeconfig.yaml")
    }

    /// The https URL of the API.
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// The server's pid.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn spawn(&mut self) -> Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("server.log"))?;
        let child = Command::new(workspace_binary("bramble")?)
            .args([self.command, "--data-dir"])
            .arg(self.data_dir())
            .args(["--listen", &format!("127.0.0.1:{}", self.port)])
            .args(&self.extra_args)
            .env("BRAMBLE_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("cannot start bramble server")?;
        self.child = Some(child);
        self.wait_ready()
    }

    fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    bail!(
                        "bramble server exited early ({status}); log:\n{}",
                        self.server_log()
                    );
                }
            }
            if self.kubeconfig().exists() {
                let out = self.kubectl(&["get", "--raw", "/readyz"])?;
                if out.status.success() {
                    // The namespaces exist once the server serves resources.
                    if self
                        .kubectl(&["get", "ns", "default", "-o", "name"])?
                        .status
                        .success()
                    {
                        return Ok(());
                    }
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "bramble server did not become ready in 30s; log:\n{}",
                    self.server_log()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The server's log so far.
    pub fn server_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// Stops the server with SIGTERM and waits for it.
    pub fn stop(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(15);
            while child.try_wait()?.is_none() {
                if Instant::now() > deadline {
                    child.kill()?;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Ok(())
    }

    /// Kills the server with SIGKILL (a crash).
    pub fn kill9(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    /// Starts the server again on the same data directory and port.
    pub fn restart(&mut self) -> Result<()> {
        self.stop()?;
        self.spawn()
    }

    /// Starts the server again after a kill.
    pub fn start_again(&mut self) -> Result<()> {
        self.spawn()
    }

    /// A kubectl command for this cluster, with its own discovery cache.
    pub fn kubectl_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("kubectl");
        cmd.arg("--kubeconfig")
            .arg(self.kubeconfig())
            .args(args)
            .env("KUBECACHEDIR", self.dir.path().join("kube-cache"))
            .env("HOME", self.dir.path())
            .env_remove("KUBECONFIG");
        cmd
    }

    /// Runs kubectl and returns its output, whatever the exit code.
    pub fn kubectl(&self, args: &[&str]) -> Result<Output> {
        Ok(self.kubectl_command(args).output()?)
    }

    /// Runs kubectl, fails unless it exits 0, and returns stdout.
    pub fn kubectl_ok(&self, args: &[&str]) -> Result<String> {
        let out = self.kubectl(args)?;
        if !out.status.success() {
            bail!(
                "kubectl {} failed ({}):\nstdout: {}\nstderr: {}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Runs kubectl, fails if it exits 0, and returns stderr.
    pub fn kubectl_err(&self, args: &[&str]) -> Result<String> {
        let out = self.kubectl(args)?;
        if out.status.success() {
            bail!(
                "kubectl {} succeeded but should have failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stdout)
            );
        }
        Ok(String::from_utf8_lossy(&out.stderr).into_owned())
    }

    /// Runs kubectl with `input` on its stdin and returns its output, whatever the exit code.
    pub fn kubectl_with_input(&self, args: &[&str], input: &str) -> Result<Output> {
        let mut child = self
            .kubectl_command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        child
            .stdin
            .take()
            .context("no stdin")?
            .write_all(input.as_bytes())?;
        Ok(child.wait_with_output()?)
    }

    /// Runs `kubectl apply -f -` (or any command reading stdin) with `input`.
    pub fn kubectl_stdin(&self, args: &[&str], input: &str) -> Result<String> {
        let out = self.kubectl_with_input(args, input)?;
        if !out.status.success() {
            bail!(
                "kubectl {} failed: {}{}",
                args.join(" "),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `kubectl get … -o json` parsed.
    pub fn get_json(&self, args: &[&str]) -> Result<serde_json::Value> {
        let mut full = vec!["get"];
        full.extend_from_slice(args);
        full.extend_from_slice(&["-o", "json"]);
        Ok(serde_json::from_str(&self.kubectl_ok(&full)?)?)
    }

    /// A scratch directory inside the cluster's temp dir.
    pub fn scratch(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.kill9();
    }
}
