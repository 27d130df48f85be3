//! A fleet of hollow nodes (`bramble-node simulate`) joined to a test cluster: the scale tests'
//! and the controller tests' nodes. They register and report pods through the real node
//! protocol; a test tells them to go silent, report NotReady or come back.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::{workspace_binary, Cluster};

/// A running fleet; killed when dropped.
pub struct Fleet {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
    /// The nodes' names, `<prefix>-0` .. `<prefix>-<count-1>`.
    pub names: Vec<String>,
}

impl Fleet {
    /// Joins `count` hollow nodes named `<prefix>-<i>` to `cluster` with a fresh token, passing
    /// `extra` flags to `bramble-node simulate`, and waits until all have registered.
    pub fn start(cluster: &Cluster, prefix: &str, count: usize, extra: &[&str]) -> Result<Fleet> {
        let token = cluster.bramble_ok(&["token", "create", "--description", "hollow fleet"])?;
        let mut child = Command::new(workspace_binary("bramble-node")?)
            .args([
                "simulate",
                "--server",
                &cluster.url(),
                "--token",
                token.trim(),
            ])
            .args(["--count", &count.to_string(), "--prefix", prefix])
            .args(extra)
            .env("BRAMBLE_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("cannot start bramble-node simulate")?;
        let stdin = child.stdin.take().context("no stdin")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut fleet = Fleet {
            child,
            stdin,
            lines,
            names: (0..count).map(|i| format!("{prefix}-{i}")).collect(),
        };
        let ready = fleet.expect_line("fleet ready", Duration::from_secs(180))?;
        anyhow::ensure!(
            ready.contains(&format!("{count} nodes")),
            "unexpected: {ready}"
        );
        Ok(fleet)
    }

    fn expect_line(&mut self, starting: &str, timeout: Duration) -> Result<String> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.starts_with(starting) => return Ok(line),
                Ok(line) if line.starts_with("error") => bail!("hollow fleet: {line}"),
                Ok(_) => {}
                Err(_) => bail!("hollow fleet did not say {starting:?} within {timeout:?}"),
            }
        }
    }

    /// Sends a control command (`silent NODE`, `not-ready NODE`, `resume NODE`, or `all` for
    /// NODE) and waits for its acknowledgement.
    pub fn command(&mut self, line: &str) -> Result<()> {
        writeln!(self.stdin, "{line}")?;
        self.stdin.flush()?;
        self.expect_line("ok", Duration::from_secs(10))?;
        Ok(())
    }

    /// The fleet process id (for memory figures).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
