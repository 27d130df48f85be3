//! The pod network with the real CNI plugins (containernetworking-plugins in /usr/lib/cni),
//! as root: real namespaces, bridges, addresses and iptables rules.
//!
//! Each test has its own bridge `brtest<N>` and subnet `10.123.<N>.0/…` so they run in parallel,
//! and deletes the bridge and any attachment it leaves when it ends.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::*;

/// A pod network of its own for one test.
struct TestNet {
    net: PodNetwork,
    bridge: String,
    _dir: tempfile::TempDir,
}

impl TestNet {
    fn new(n: u8, subnet: &str) -> TestNet {
        assert!(
            std::path::Path::new("/usr/lib/cni/bridge").is_file(),
            "the CNI plugins are missing: apt-get install -y containernetworking-plugins"
        );
        let dir = tempfile::tempdir().unwrap();
        let bridge = format!("brtest{n}");
        // A bridge left by an earlier, killed run would carry the old gateway address.
        let _ = Command::new("ip").args(["link", "del", &bridge]).status();
        let net = PodNetwork::new(PodNetworkConfig {
            plugin_dirs: vec![PathBuf::from("/usr/lib/cni")],
            state_dir: dir.path().join("network"),
            bridge: bridge.clone(),
            subnet: subnet.to_string(),
            network_name: format!("bramble-test{n}"),
        })
        .unwrap();
        TestNet {
            net,
            bridge,
            _dir: dir,
        }
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        // Unmounts what a failed test left, or the temp dir could not be removed.
        for uid in self.net.attached().unwrap_or_default() {
            if let Err(e) = self.net.inner.detach_blocking(&uid) {
                eprintln!("cleanup of pod {uid}: {e}");
            }
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .status();
        let _ = Command::new("iptables")
            .args(["-w", "-t", "nat", "-D", "POSTROUTING"])
            .args(super::config::masquerade_rule(self.net.config()))
            .status();
    }
}

/// A process in a pod's namespace, killed when dropped.
struct InPod(Option<Child>);

impl InPod {
    fn spawn(netns: &Path, args: &[&str]) -> InPod {
        let child = Command::new("nsenter")
            .arg(format!("--net={}", netns.display()))
            .arg("/bin/busybox")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("nsenter (util-linux) and /bin/busybox (busybox-static) are needed");
        InPod(Some(child))
    }

    /// Waits for the process to end and returns what it printed.
    fn output(mut self) -> String {
        let child = self.0.take().unwrap();
        String::from_utf8_lossy(&child.wait_with_output().unwrap().stdout).into_owned()
    }
}

impl Drop for InPod {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A TCP server in the pod answering every connection with `reply`.
fn serve_in_pod(netns: &Path, port: u16, reply: &str) -> InPod {
    InPod::spawn(
        netns,
        &[
            "nc",
            "-ll",
            "-p",
            &port.to_string(),
            "-e",
            "/bin/busybox",
            "echo",
            reply,
        ],
    )
}

/// What a connection to `addr` reads, retrying while the server starts (up to 10 s).
fn read_from(addr: SocketAddr) -> std::io::Result<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let attempt =
            TcpStream::connect_timeout(&addr, Duration::from_secs(2)).and_then(|mut s| {
                s.set_read_timeout(Some(Duration::from_secs(5)))?;
                let mut text = String::new();
                s.read_to_string(&mut text)?;
                Ok(text)
            });
        match attempt {
            Ok(text) if !text.is_empty() => return Ok(text),
            Ok(_) | Err(_) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(100))
            }
            other => return other,
        }
    }
}

/// This host's address on its default route (not loopback).
fn host_ip() -> IpAddr {
    let probe = UdpSocket::bind("0.0.0.0:0").unwrap();
    probe.connect("192.0.2.123:9").unwrap();
    probe.local_addr().unwrap().ip()
}

/// Deletes the nat rules and chains the plugins made for `pod` (if any), as a reboot does.
fn forget_nat_rules_of(pod: &str) {
    let rules = Command::new("iptables")
        .args(["-t", "nat", "-S"])
        .output()
        .unwrap();
    let rules = String::from_utf8(rules.stdout).unwrap();
    let mut chains = Vec::new();
    for rule in rules
        .lines()
        .filter(|r| r.contains(&format!("id: \\\"{pod}\\\"")))
    {
        if let Some(chain) = rule.split(" -j ").nth(1).filter(|c| c.starts_with("CNI-")) {
            chains.push(chain.to_string());
        }
        // The shell undoes iptables' quoting of the comment.
        let delete = format!("iptables -t nat -D {}", rule.trim_start_matches("-A "));
        assert!(
            Command::new("sh")
                .args(["-c", &delete])
                .status()
                .unwrap()
                .success(),
            "{delete}"
        );
    }
    // A pod without host ports has none: masquerading is one rule for the whole subnet.
    for chain in chains {
        for op in ["-F", "-X"] {
            let _ = Command::new("iptables")
                .args(["-t", "nat", op, &chain])
                .status();
        }
    }
}

fn in_subnet(ip: IpAddr, prefix: [u8; 3]) -> bool {
    matches!(ip, IpAddr::V4(v4) if v4.octets()[..3] == prefix)
}

#[tokio::test(flavor = "multi_thread")]
async fn two_pods_get_distinct_ips_the_host_reaches_them_and_they_reach_the_host() {
    let t = TestNet::new(1, "10.123.1.0/24");
    let a = t.net.attach("pod-a1", "default", "a", &[]).await.unwrap();
    let b = t.net.attach("pod-b1", "default", "b", &[]).await.unwrap();
    assert_ne!(a.ip, b.ip);
    assert!(
        in_subnet(a.ip, [10, 123, 1]) && in_subnet(b.ip, [10, 123, 1]),
        "{a:?} {b:?}"
    );
    let gateway = IpAddr::V4(Ipv4Addr::new(10, 123, 1, 1));
    assert_eq!(a.gateway, Some(gateway));
    assert!(netns::is_netns(&a.netns) && netns::is_netns(&b.netns));
    assert_ne!(a.netns, b.netns);
    assert_eq!(t.net.attached().unwrap(), ["pod-a1", "pod-b1"]);

    // Host -> pod, as port-forward does.
    let _server = serve_in_pod(&a.netns, 8080, "hello-from-a");
    let got = read_from(SocketAddr::new(a.ip, 8080)).unwrap();
    assert_eq!(got.trim(), "hello-from-a");

    // Pod -> pod over the bridge.
    let from_b = InPod::spawn(&b.netns, &["nc", "-w", "5", &a.ip.to_string(), "8080"]);
    let out = from_b.output();
    assert_eq!(out.trim(), "hello-from-a");

    // Pod -> host through the gateway address.
    let host = TcpListener::bind((gateway, 0)).unwrap();
    let port = host.local_addr().unwrap().port();
    let accept = std::thread::spawn(move || {
        let (mut conn, peer) = host.accept().unwrap();
        conn.write_all(b"hello-from-host\n").unwrap();
        peer.ip()
    });
    let from_a = InPod::spawn(
        &a.netns,
        &["nc", "-w", "5", &gateway.to_string(), &port.to_string()],
    );
    assert_eq!(from_a.output().trim(), "hello-from-host");
    assert_eq!(
        accept.join().unwrap(),
        a.ip,
        "the host sees the pod's own address"
    );

    drop(_server);
    t.net.detach("pod-a1").await.unwrap();
    assert!(!a.netns.exists(), "the namespace file is removed");
    t.net.detach("pod-a1").await.unwrap();
    assert_eq!(t.net.attached().unwrap(), ["pod-b1"]);
    assert!(t.net.lookup("pod-a1").unwrap().is_none());
    t.net.detach("pod-b1").await.unwrap();
    assert!(t.net.attached().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn attach_is_idempotent_survives_a_restart_and_detach_releases_the_ip() {
    // A /30: one address for pods (.2), so reuse is observable.
    let t = TestNet::new(2, "10.123.2.0/30");
    let first = t.net.attach("pod-a2", "default", "a", &[]).await.unwrap();
    assert_eq!(first.ip, IpAddr::V4(Ipv4Addr::new(10, 123, 2, 2)));
    let again = t.net.attach("pod-a2", "default", "a", &[]).await.unwrap();
    assert_eq!(again, first);

    // An agent restart: a new PodNetwork on the same state finds the pod.
    let restarted = PodNetwork::new(t.net.config().clone()).unwrap();
    assert_eq!(restarted.attached().unwrap(), ["pod-a2"]);
    assert_eq!(restarted.lookup("pod-a2").unwrap(), Some(first.clone()));
    assert_eq!(restarted.lookup("pod-zz").unwrap(), None);

    // The range is full: a clear error naming the pod and the plugin, and nothing left behind.
    let err = t
        .net
        .attach("pod-b2", "default", "b", &[])
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, NetworkError::Plugin { .. }), "{err:?}");
    assert!(text.contains("pod-b2") && text.contains("bridge"), "{text}");
    assert_eq!(t.net.attached().unwrap(), ["pod-a2"]);

    restarted.detach("pod-a2").await.unwrap();
    let third = t.net.attach("pod-b2", "default", "b", &[]).await.unwrap();
    assert_eq!(
        third.ip, first.ip,
        "the released address is allocated again"
    );
    t.net.detach("pod-b2").await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_namespace_lost_in_a_reboot_is_recreated_on_attach() {
    let t = TestNet::new(3, "10.123.3.0/24");
    let first = t.net.attach("pod-a3", "default", "a", &[]).await.unwrap();
    // A reboot drops the bind mount and the iptables rules but leaves the file, the record and
    // host-local's allocation. (Without a reboot the bridge plugin would leave the masquerade
    // rule behind: it only removes it when it finds the pod's interface, plugins#810.)
    nix::mount::umount2(&first.netns, nix::mount::MntFlags::MNT_DETACH).unwrap();
    forget_nat_rules_of("pod-a3");
    assert!(t.net.lookup("pod-a3").unwrap().is_none());
    assert_eq!(
        t.net.attached().unwrap(),
        ["pod-a3"],
        "listed so the agent can clean it up"
    );

    let second = t.net.attach("pod-a3", "default", "a", &[]).await.unwrap();
    assert!(netns::is_netns(&second.netns));
    let _server = serve_in_pod(&second.netns, 8080, "back");
    assert_eq!(
        read_from(SocketAddr::new(second.ip, 8080)).unwrap().trim(),
        "back"
    );
    t.net.detach("pod-a3").await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn host_port_is_forwarded_to_the_pod_until_detach() {
    let t = TestNet::new(4, "10.123.4.0/24");
    let ports = [PortMapping {
        host_port: 18080,
        container_port: 8080,
        protocol: "tcp".to_string(),
        host_ip: None,
    }];
    let a = t
        .net
        .attach("pod-a4", "default", "a", &ports)
        .await
        .unwrap();
    let _server = serve_in_pod(&a.netns, 8080, "via-host-port");
    // portmap DNATs traffic to any of the host's addresses.
    let via_host = SocketAddr::new(host_ip(), 18080);
    assert_eq!(read_from(via_host).unwrap().trim(), "via-host-port");
    // On loopback too: with snat, portmap sets route_localnet on the bridge and masquerades.
    let via_loopback: SocketAddr = "127.0.0.1:18080".parse().unwrap();
    assert_eq!(read_from(via_loopback).unwrap().trim(), "via-host-port");

    t.net.detach("pod-a4").await.unwrap();
    for addr in [via_host, via_loopback] {
        let refused = TcpStream::connect_timeout(&addr, Duration::from_secs(2));
        assert!(refused.is_err(), "{addr} is closed after detach");
    }
}

#[test]
fn a_missing_plugin_dir_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = PodNetworkConfig::new(dir.path());
    config.plugin_dirs = vec![dir.path().join("no-cni-here")];
    let err = PodNetwork::new(config).unwrap_err().to_string();
    assert!(err.contains("\"bridge\" not found"), "{err}");
    assert!(
        err.contains("apt-get install -y containernetworking-plugins"),
        "{err}"
    );
}

#[tokio::test]
async fn bad_pod_identities_are_rejected_before_anything_runs() {
    // Its own subnet and bridge (cleaned up by TestNet), not the defaults a real node uses.
    let t = TestNet::new(9, "10.123.9.0/24");
    let net = &t.net;
    for uid in ["", "../etc", "a/b", ".hidden"] {
        let err = net.attach(uid, "default", "a", &[]).await.unwrap_err();
        assert!(
            matches!(err, NetworkError::InvalidPod { field: "uid", .. }),
            "{uid}: {err:?}"
        );
    }
    let err = net.attach("u1", "default", "a;b", &[]).await.unwrap_err();
    assert!(err.to_string().contains("';'"), "{err}");
    let bad_port = PortMapping {
        host_port: 80,
        container_port: 80,
        protocol: "TCP".into(),
        host_ip: None,
    };
    let err = net
        .attach("u1", "default", "a", &[bad_port])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("protocol"), "{err}");
    assert!(net.attached().unwrap().is_empty());
    net.detach("never-attached").await.unwrap();
}
