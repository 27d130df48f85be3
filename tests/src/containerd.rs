//! A private containerd for tests: its own root, state directory and socket in a temp dir, the
//! CRI plugin off, and this workspace's target directory first on its PATH so that it finds
//! Bramble's shim (`containerd-shim-bramble-v1`) as it would in /usr/local/bin. Killed, with
//! every shim it started and every mount under its directories, when dropped.
//!
//! Needs `containerd`, `ctr` and `runc` (Debian: `apt-get install -y containerd runc`) and root.
//! When they are missing the tests fail with that instruction; they are never skipped.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// Longest wait for a started containerd to answer `ctr version` (the machine is shared by
/// parallel tests, so this is generous).
const STARTUP: Duration = Duration::from_secs(60);

/// One running containerd.
pub struct Containerd {
    child: Child,
    dir: tempfile::TempDir,
}

impl Containerd {
    /// Starts containerd in a new temp dir and waits until it serves its API.
    pub fn start() -> Result<Containerd> {
        let binary = find_on_path("containerd")?;
        find_on_path("runc")?;
        // Not tmpfs: overlayfs snapshots need a file system that supports them as upper dirs,
        // and the disk is what a server would use.
        let dir = tempfile::Builder::new()
            .prefix("bramble-containerd-")
            .tempdir()?;
        let root = dir.path().join("root");
        let state = dir.path().join("state");
        let socket = dir.path().join("containerd.sock");
        let config = dir.path().join("config.toml");
        std::fs::write(
            &config,
            format!(
                "version = 2\n\
                 root = {root:?}\n\
                 state = {state:?}\n\
                 disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
                 [grpc]\n  address = {socket:?}\n\
                 [ttrpc]\n  address = \"{}.ttrpc\"\n",
                socket.display()
            ),
        )?;
        let log = dir.path().join("containerd.log");
        let child = Command::new(&binary)
            .arg("--config")
            .arg(&config)
            .env("PATH", shim_path()?)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&log)?)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let mut containerd = Containerd { child, dir };
        containerd.wait_ready()?;
        Ok(containerd)
    }

    fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + STARTUP;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "containerd exited with {status}; its log:\n{}",
                    self.log_tail()
                );
            }
            if self.socket().exists() && self.ctr(&["version"])?.status.success() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "containerd did not answer within {STARTUP:?}; its log:\n{}",
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The gRPC socket (`--containerd-socket` of a node, `ctr -a`).
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("containerd.sock")
    }

    /// containerd's root directory (content, snapshots, metadata).
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// containerd's state directory (tasks' bundles, shim sockets).
    pub fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// A `ctr` command against this containerd (add the namespace with `-n`).
    pub fn ctr_command(&self, args: &[&str]) -> Command {
        let mut command = Command::new("ctr");
        command
            .arg("--address")
            .arg(self.socket())
            .args(args)
            .stdin(Stdio::null());
        command
    }

    /// Runs `ctr` against this containerd.
    pub fn ctr(&self, args: &[&str]) -> Result<Output> {
        self.ctr_command(args)
            .output()
            .context("cannot run ctr (apt-get install -y containerd)")
    }

    /// Runs `ctr` and returns its stdout; fails with its stderr when it fails.
    pub fn ctr_ok(&self, args: &[&str]) -> Result<String> {
        let out = self.ctr(args)?;
        if !out.status.success() {
            bail!(
                "ctr {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Names listed by `ctr -n NAMESPACE <what> ls -q` (containers, tasks, snapshots, images).
    pub fn list(&self, namespace: &str, what: &str) -> Result<Vec<String>> {
        let out = match what {
            // `ctr tasks ls` and `ctr snapshots ls` have no -q; their first column is the id.
            "tasks" | "snapshots" => self.ctr_ok(&["-n", namespace, what, "ls"])?,
            _ => self.ctr_ok(&["-n", namespace, what, "ls", "-q"])?,
        };
        let mut lines = out.lines();
        if what == "tasks" || what == "snapshots" {
            lines.next(); // header
        }
        Ok(lines
            .filter_map(|l| l.split_whitespace().next())
            .map(str::to_string)
            .collect())
    }

    /// The last lines of containerd's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let log =
            std::fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default();
        let lines: Vec<_> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Pids of the shims this containerd started (their command line names its socket).
    pub fn shim_pids(&self) -> Vec<u32> {
        let socket = self.socket();
        let needle = socket.to_string_lossy();
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| *pid != self.child.id())
            .filter(|pid| {
                std::fs::read(format!("/proc/{pid}/cmdline"))
                    .map(|c| {
                        let cmdline = String::from_utf8_lossy(&c).replace('\0', " ");
                        cmdline.contains("containerd-shim") && cmdline.contains(needle.as_ref())
                    })
                    .unwrap_or(false)
            })
            .collect()
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        // Shims outlive containerd by design (that is how containers survive its restart); the
        // test's must not outlive the test. Killing a shim kills its containers with it.
        for pid in self.shim_pids() {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        delete_runc_containers_under(self.dir.path());
        unmount_under(self.dir.path());
    }
}

/// Force-deletes the runc containers whose bundle is under `dir`: a runc container outlives its
/// killed shim (its processes keep running, its state stays in runc's host-wide root
/// /run/containerd/runc/<namespace>), and would collide with the next run's ids.
fn delete_runc_containers_under(dir: &Path) {
    let Ok(namespaces) = std::fs::read_dir("/run/containerd/runc") else {
        return;
    };
    let prefix = dir.to_string_lossy().to_string();
    for root in namespaces.flatten().map(|e| e.path()) {
        let Ok(out) = Command::new("runc")
            .arg("--root")
            .arg(&root)
            .args(["list", "--format", "json"])
            .output()
        else {
            continue;
        };
        let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        for container in listed.as_array().into_iter().flatten() {
            let bundle = container["bundle"].as_str().unwrap_or_default();
            if let (true, Some(id)) = (bundle.starts_with(&prefix), container["id"].as_str()) {
                let _ = Command::new("runc")
                    .arg("--root")
                    .arg(&root)
                    .args(["delete", "--force", id])
                    .status();
            }
        }
    }
}

/// Lazily unmounts everything mounted below `dir` (rootfs overlays, shm), deepest first, so that
/// the temp dir can be removed.
fn unmount_under(dir: &Path) {
    let Ok(mountinfo) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let prefix = dir.to_string_lossy().to_string();
    let mut points: Vec<&str> = mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| p.starts_with(&prefix))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for point in points {
        let _ = Command::new("umount").args(["-l", point]).status();
    }
}

/// PATH for containerd: the directory holding this workspace's binaries first (the shim), then
/// the caller's.
fn shim_path() -> Result<std::ffi::OsString> {
    let exe = std::env::current_exe()?;
    let mut dirs = Vec::new();
    if let Some(deps) = exe.parent() {
        // Test binaries sit in target/<profile>/deps, the workspace's binaries one up.
        if let Some(profile) = deps.parent() {
            dirs.push(profile.to_path_buf());
        }
        dirs.push(deps.to_path_buf());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    dirs.extend(std::env::split_paths(&path));
    Ok(std::env::join_paths(dirs)?)
}

/// `name` on PATH, or the instruction to install it.
fn find_on_path(name: &str) -> Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .with_context(|| {
            format!(
                "{name} is not installed (not on PATH): the containerd tests need real containerd \
                 and runc and are never skipped; install them with \
                 `apt-get install -y containerd runc containernetworking-plugins`"
            )
        })
}

/// The pod network a node with containerd sets up on this machine, for a test or benchmark:
/// the flags that give the node its own subnet and bridge, and, when dropped, the removal of
/// what the node leaves on the host by design (the bridge and the subnet's masquerade rule),
/// so parallel tests do not share addresses and nothing outlives them.
pub struct PodNetworkOnHost {
    subnet: String,
    bridge: String,
}

impl PodNetworkOnHost {
    /// A pod network on `subnet` (a CIDR no other test uses) with bridge `bridge`.
    pub fn new(subnet: &str, bridge: &str) -> PodNetworkOnHost {
        PodNetworkOnHost {
            subnet: subnet.to_string(),
            bridge: bridge.to_string(),
        }
    }

    /// The `bramble-node` flags of a node using `containerd` and this network.
    pub fn node_args(&self, containerd: &Containerd) -> Vec<String> {
        vec![
            "--containerd-socket".into(),
            containerd.socket().to_string_lossy().into_owned(),
            "--pod-cidr".into(),
            self.subnet.clone(),
            "--pod-bridge".into(),
            self.bridge.clone(),
        ]
    }
}

impl Drop for PodNetworkOnHost {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .stderr(Stdio::null())
            .status();
        let subnet = self.subnet.as_str();
        let _ = Command::new("iptables")
            .args([
                "-w",
                "-t",
                "nat",
                "-D",
                "POSTROUTING",
                "-s",
                subnet,
                "!",
                "-d",
                subnet,
            ])
            .args(["-m", "comment", "--comment", "bramble pod network bramble"])
            .args(["-j", "MASQUERADE"])
            .stderr(Stdio::null())
            .status();
    }
}
