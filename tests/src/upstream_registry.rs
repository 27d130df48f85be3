//! A real upstream OCI registry for tests: Debian's `docker-registry` (distribution 2.8),
//! started on a free loopback port with storage in a temp dir, killed when dropped.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// A running docker-registry.
pub struct UpstreamRegistry {
    _dir: tempfile::TempDir,
    child: Child,
    /// host:port it listens on (plain HTTP).
    pub addr: String,
}

impl UpstreamRegistry {
    /// Starts docker-registry; fails with a clear message when it is not installed (the test
    /// command installs it).
    pub fn start() -> Result<UpstreamRegistry> {
        let binary = "/usr/bin/docker-registry";
        if !std::path::Path::new(binary).exists() {
            bail!("{binary} is missing: the registry tests need Debian's docker-registry package (the test command installs it)");
        }
        let dir = tempfile::Builder::new()
            .prefix("bramble-upstream-")
            .tempdir()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let addr = format!("127.0.0.1:{port}");
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n",
                dir.path().join("data").display()
            ),
        )?;
        let log = std::fs::File::create(dir.path().join("registry.log"))?;
        let child = Command::new(binary)
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("cannot start docker-registry")?;
        let mut upstream = UpstreamRegistry {
            _dir: dir,
            child,
            addr,
        };
        upstream.wait_ready()?;
        Ok(upstream)
    }

    fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("docker-registry exited early ({status})");
            }
            if let Ok(mut s) = TcpStream::connect(&self.addr) {
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                let _ = write!(s, "GET /v2/ HTTP/1.0\r\nHost: {}\r\n\r\n", self.addr);
                let mut buf = [0u8; 12];
                if s.read_exact(&mut buf).is_ok() && buf.starts_with(b"HTTP/1.") {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                bail!("docker-registry did not answer on {} within 20s", self.addr);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for UpstreamRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
