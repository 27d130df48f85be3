//! A real etcd server for tests (the etcd store's own, and end-to-end tests of control planes
//! sharing a store): started on free loopback ports with a temporary data directory, and killed
//! (by its pid) when dropped.
//!
//! Needs the `etcd` binary (Debian: `apt-get install -y etcd-server`). When it is missing the
//! tests fail with that instruction; they are never skipped.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// Longest wait for a started etcd to report itself healthy (the machine is shared by parallel
/// tests, so this is generous).
const STARTUP: Duration = Duration::from_secs(60);

/// Attempts at starting etcd: a free port found by binding may be taken again before etcd binds
/// it.
const ATTEMPTS: usize = 3;

/// Server certificate files for an etcd that speaks TLS and requires client certificates.
pub struct ServerTls {
    /// CA that signed the server certificate and the clients' certificates.
    pub ca: PathBuf,
    /// Server certificate, with 127.0.0.1 among its names.
    pub cert: PathBuf,
    /// Server key.
    pub key: PathBuf,
}

/// One running etcd; killed and its data removed when dropped.
pub struct EtcdServer {
    child: Child,
    endpoint: String,
    log: PathBuf,
    // Dropped after the process is killed (fields drop in order after `Drop::drop`).
    _dir: tempfile::TempDir,
}

impl EtcdServer {
    /// Starts etcd with plain http on a free loopback port.
    pub fn start() -> Result<EtcdServer> {
        EtcdServer::start_with(None)
    }

    /// Starts etcd with https on a free loopback port, trusting clients signed by `tls.ca`.
    pub fn start_tls(tls: &ServerTls) -> Result<EtcdServer> {
        EtcdServer::start_with(Some(tls))
    }

    fn start_with(tls: Option<&ServerTls>) -> Result<EtcdServer> {
        let binary = find_etcd()?;
        let mut failures = Vec::new();
        for _ in 0..ATTEMPTS {
            match EtcdServer::launch(&binary, tls) {
                Ok(server) => return Ok(server),
                Err(error) => failures.push(format!("{error:#}")),
            }
        }
        bail!(
            "etcd did not start after {ATTEMPTS} attempts:\n{}",
            failures.join("\n---\n")
        )
    }

    fn launch(binary: &Path, tls: Option<&ServerTls>) -> Result<EtcdServer> {
        // tmpfs where there is one: these tests are about behaviour, not durability, and
        // fsyncs of several etcds on one shared disk would make them slow.
        let shm = Path::new("/dev/shm");
        let dir = if shm.is_dir() {
            tempfile::Builder::new()
                .prefix("bramble-etcd-")
                .tempdir_in(shm)?
        } else {
            tempfile::Builder::new().prefix("bramble-etcd-").tempdir()?
        };
        let [client, peer, metrics] = free_ports()?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let client_url = format!("{scheme}://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let log = dir.path().join("etcd.log");
        let mut command = Command::new(binary);
        command
            .arg("--name=bramble-test")
            .arg(format!("--data-dir={}", dir.path().join("data").display()))
            .arg(format!("--listen-client-urls={client_url}"))
            .arg(format!("--advertise-client-urls={client_url}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster=bramble-test={peer_url}"))
            // Plain http even when clients use TLS, for the health check below.
            .arg(format!("--listen-metrics-urls=http://127.0.0.1:{metrics}"))
            .arg("--logger=zap")
            .arg("--log-outputs=stderr");
        if let Some(tls) = tls {
            command
                .arg(format!("--cert-file={}", tls.cert.display()))
                .arg(format!("--key-file={}", tls.key.display()))
                .arg(format!("--trusted-ca-file={}", tls.ca.display()))
                .arg("--client-cert-auth");
        }
        // The environment configures etcd too (ETCD_*): keep the developer's out.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("ETCD_") {
                command.env_remove(name);
            }
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&log)?)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let mut server = EtcdServer {
            child,
            endpoint: client_url,
            log,
            _dir: dir,
        };
        server.wait_healthy(SocketAddr::from((Ipv4Addr::LOCALHOST, metrics)))?;
        Ok(server)
    }

    /// Waits until etcd's health endpoint says it serves requests.
    fn wait_healthy(&mut self, metrics: SocketAddr) -> Result<()> {
        let deadline = Instant::now() + STARTUP;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("etcd exited with {status}; its log:\n{}", self.log_tail());
            }
            if health(metrics).unwrap_or(false) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "etcd was not healthy within {STARTUP:?}; its log:\n{}",
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<_> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// The client endpoint, as `EtcdStore::connect` takes it.
    pub fn endpoints(&self) -> Vec<String> {
        vec![self.endpoint.clone()]
    }

    /// Kills etcd now (SIGKILL, by its pid), as a crash would.
    pub fn kill(&mut self) -> Result<()> {
        if self.child.try_wait()?.is_none() {
            self.child.kill()?;
            self.child.wait()?;
        }
        Ok(())
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        if let Err(error) = self.kill() {
            eprintln!("could not kill etcd (pid {}): {error}", self.child.id());
        }
    }
}

/// The `etcd` binary on PATH.
fn find_etcd() -> Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join("etcd"))
        .find(|candidate| candidate.is_file())
        .context(
            "etcd is not installed (no `etcd` on PATH): the etcd store tests need a real etcd \
             server and are never skipped; install it with `apt-get install -y etcd-server`",
        )
}

/// Three distinct free loopback ports (held at once, so they differ).
fn free_ports() -> Result<[u16; 3]> {
    let listeners = [
        TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?,
        TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?,
        TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?,
    ];
    let mut ports = [0; 3];
    for (port, listener) in ports.iter_mut().zip(&listeners) {
        *port = listener.local_addr()?.port();
    }
    Ok(ports)
}

/// Whether etcd at `metrics` answers its health check with `"health":"true"`.
fn health(metrics: SocketAddr) -> Result<bool> {
    let mut stream = TcpStream::connect_timeout(&metrics, Duration::from_secs(1))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    Ok(response.contains("\"health\":\"true\""))
}
