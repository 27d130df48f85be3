//! Real `bramble-node` processes for end-to-end tests: joined with a token from
//! `bramble token create`, each in its own temp data directory, killed when dropped.

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};

use crate::{workspace_binary, Cluster};

impl Cluster {
    /// Runs `bramble ARGS --kubeconfig <this cluster's>` and returns its output.
    pub fn bramble(&self, args: &[&str]) -> Result<Output> {
        Ok(Command::new(workspace_binary("bramble")?)
            .args(args)
            .arg("--kubeconfig")
            .arg(self.kubeconfig())
            .env_remove("KUBECONFIG")
            .output()?)
    }

    /// Like [`Cluster::bramble`], failing unless it exits 0; returns stdout.
    pub fn bramble_ok(&self, args: &[&str]) -> Result<String> {
        let out = self.bramble(args)?;
        ensure!(
            out.status.success(),
            "bramble {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Pushes a sample from `$BRAMBLE_IMAGES_DIR` as `samples/NAME:v1`; returns the reference
    /// pods use (`127.0.0.1:PORT/samples/NAME:v1`).
    pub fn push_sample(&self, name: &str) -> Result<String> {
        let file = images_dir()?.join(format!("{name}.wasm"));
        let reference = format!(
            "{}/samples/{name}:v1",
            self.url().trim_start_matches("https://")
        );
        self.bramble_ok(&["image", "push", &file.to_string_lossy(), &reference])?;
        Ok(reference)
    }

    /// Waits until `condition` holds for the JSON of `kubectl get ARGS`.
    pub fn wait_for(
        &self,
        args: &[&str],
        what: &str,
        timeout: Duration,
        condition: impl Fn(&serde_json::Value) -> bool,
    ) -> Result<serde_json::Value> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(value) = self.get_json(args) {
                if condition(&value) {
                    return Ok(value);
                }
                if Instant::now() > deadline {
                    bail!("timed out waiting for {what}; last state:\n{value:#}");
                }
            } else if Instant::now() > deadline {
                bail!("timed out waiting for {what}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// The status of condition `kind` (e.g. "Ready") of a Node or Pod, as JSON.
pub fn condition_status<'a>(object: &'a serde_json::Value, kind: &str) -> Option<&'a str> {
    object["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind)?["status"]
        .as_str()
}

/// The directory the test command builds the sample workloads into.
pub fn images_dir() -> Result<PathBuf> {
    let dir = PathBuf::from(std::env::var("BRAMBLE_IMAGES_DIR").context(
        "BRAMBLE_IMAGES_DIR is not set: the test command builds the sample images and sets it",
    )?);
    ensure!(
        dir.join("hello.wasm").is_file(),
        "{} has no hello.wasm: run images/build.sh",
        dir.display()
    );
    Ok(dir)
}

/// A running `bramble-node`.
pub struct Node {
    /// The node's name.
    pub name: String,
    dir: tempfile::TempDir,
    child: Option<Child>,
    /// Flags given at join, given again when the agent is started again.
    extra: Vec<String>,
    /// The `bramble-node` binary this node runs.
    binary: PathBuf,
}

impl Node {
    /// Joins `cluster` as `name` with `token` and waits until the Node is Ready.
    pub fn join(cluster: &Cluster, name: &str, token: &str) -> Result<Node> {
        Node::join_with(cluster, name, token, &[])
    }

    /// [`Node::join`] with extra `bramble-node` flags (e.g. `--max-pods`).
    pub fn join_with(cluster: &Cluster, name: &str, token: &str, extra: &[&str]) -> Result<Node> {
        Node::join_running(
            &workspace_binary("bramble-node")?,
            cluster,
            name,
            token,
            extra,
        )
    }

    /// [`Node::join_with`] running another build of `bramble-node` (e.g. the board build).
    pub fn join_running(
        binary: &std::path::Path,
        cluster: &Cluster,
        name: &str,
        token: &str,
        extra: &[&str],
    ) -> Result<Node> {
        let dir = tempfile::Builder::new().prefix("bramble-node-").tempdir()?;
        let mut node = Node {
            name: name.to_string(),
            dir,
            child: None,
            extra: extra.iter().map(|a| a.to_string()).collect(),
            binary: binary.to_path_buf(),
        };
        let url = cluster.url();
        let mut args = vec!["join", "--server", &url, "--token", token, "--name", name];
        args.extend_from_slice(extra);
        node.spawn(&args)?;
        cluster.wait_for(
            &["node", name],
            "the node to be Ready",
            Duration::from_secs(30),
            |n| condition_status(n, "Ready") == Some("True"),
        )?;
        Ok(node)
    }

    /// Runs `bramble-node join` expecting it to fail; returns its stderr.
    pub fn join_refused(cluster: &Cluster, name: &str, token: &str) -> Result<String> {
        let dir = tempfile::Builder::new().prefix("bramble-node-").tempdir()?;
        let out = Command::new(workspace_binary("bramble-node")?)
            .args([
                "join",
                "--server",
                &cluster.url(),
                "--token",
                token,
                "--name",
                name,
            ])
            .arg("--data-dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?
            .wait_with_output()?;
        ensure!(
            !out.status.success(),
            "bramble-node join succeeded with a bad token"
        );
        Ok(String::from_utf8_lossy(&out.stderr).into_owned())
    }

    fn spawn(&mut self, args: &[&str]) -> Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("node.log"))?;
        let child = Command::new(&self.binary)
            .args(args)
            .arg("--data-dir")
            .arg(self.dir.path().join("data"))
            .env("BRAMBLE_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("cannot start bramble-node")?;
        self.child = Some(child);
        Ok(())
    }

    /// The credentials the node stored when it joined (JSON).
    pub fn credentials_json(&self) -> Result<String> {
        Ok(std::fs::read_to_string(
            self.dir.path().join("data").join("credentials.json"),
        )?)
    }

    /// Bytes of the files under `sub` of the node's data directory.
    pub fn disk_usage(&self, sub: &str) -> Result<u64> {
        fn walk(dir: &std::path::Path) -> u64 {
            std::fs::read_dir(dir)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| match e.file_type() {
                    Ok(t) if t.is_dir() => walk(&e.path()),
                    _ => e.metadata().map(|m| m.len()).unwrap_or(0),
                })
                .sum()
        }
        Ok(walk(&self.dir.path().join("data").join(sub)))
    }

    /// The agent's data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The agent's pid.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The node's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("node.log")).unwrap_or_default()
    }

    /// Kills the agent with SIGKILL.
    pub fn kill9(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    /// Stops the agent with SIGTERM and waits for it to exit.
    pub fn terminate(&mut self) -> Result<std::process::ExitStatus> {
        let mut child = self.child.take().context("the node is not running")?;
        Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                child.kill()?;
                bail!("bramble-node did not exit within 30 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts the agent again from its data directory (`bramble-node run`).
    pub fn start_again(&mut self) -> Result<()> {
        let extra = self.extra.clone();
        let mut args = vec!["run"];
        args.extend(extra.iter().map(String::as_str));
        self.spawn(&args)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.kill9();
    }
}
