//! A real upstream OCI registry for tests: Debian's `docker-registry` (distribution 2.8),
//! started on a free loopback port with storage in a temp dir, killed when dropped.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// A running docker-registry.
pub struct UpstreamRegistry {
    _dir: tempfile::TempDir,
    child: Child,
    /// Where it listens (plain HTTP, or HTTPS when started with TLS).
    pub addr: SocketAddr,
    tls: bool,
}

impl UpstreamRegistry {
    /// Starts docker-registry; fails with a clear message when it is not installed (the test
    /// command installs it).
    pub fn start() -> Result<UpstreamRegistry> {
        UpstreamRegistry::start_with(|_| String::new(), false)
    }

    /// Serves HTTPS with the given certificate and key, and requires client certificates signed
    /// by `client_ca_pem`.
    pub fn start_tls(
        cert_pem: &str,
        key_pem: &str,
        client_ca_pem: &str,
    ) -> Result<UpstreamRegistry> {
        let (cert_pem, key_pem, ca_pem) = (
            cert_pem.to_string(),
            key_pem.to_string(),
            client_ca_pem.to_string(),
        );
        UpstreamRegistry::start_with(
            move |dir| {
                let write = |name: &str, pem: &str| {
                    let path = dir.join(name);
                    let _ = std::fs::write(&path, pem);
                    path.display().to_string()
                };
                format!(
                    "  tls:\n    certificate: {}\n    key: {}\n    clientcas:\n      - {}\n",
                    write("server.crt", &cert_pem),
                    write("server.key", &key_pem),
                    write("client-ca.crt", &ca_pem)
                )
            },
            true,
        )
    }

    /// host:port, for image references.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    fn start_with(http_extra: impl FnOnce(&Path) -> String, tls: bool) -> Result<UpstreamRegistry> {
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
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let config = dir.path().join("config.yml");
        let extra = http_extra(dir.path());
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n{extra}",
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
            tls,
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
            if self.tls {
                // A TLS listener that requires client certificates cannot be probed with plain
                // HTTP; accepting connections is enough.
                if TcpStream::connect(self.addr).is_ok() {
                    return Ok(());
                }
            } else if let Ok(mut s) = TcpStream::connect(self.addr) {
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
