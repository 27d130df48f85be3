//! Pod networking through CNI: each pod gets its own network namespace and pod IP on the node's
//! bridge, through the reference plugins (bridge with host-local IPAM, portmap, loopback); the
//! containers of a pod share the namespace.
//!
//! State under `state_dir`: `netns/<uid>` (the namespace bind mounts), `ipam/` (host-local's
//! allocations), `results/<uid>.json` (the configuration and result of each pod's ADD, so DEL
//! and [`PodNetwork::lookup`] work after an agent restart). Operations on one pod are
//! serialised; different pods attach concurrently (host-local and iptables lock for themselves).

mod cni;
mod config;
mod error;
mod netns;
mod result;

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use serde::{Deserialize, Serialize};

use cni::Runtime;
pub use error::NetworkError;
use result::Record;

/// The interface name of the pod's end of its veth pair.
const POD_IFNAME: &str = "eth0";

/// How this node's pod network is set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodNetworkConfig {
    /// Where the CNI plugin executables are, searched in order.
    pub plugin_dirs: Vec<PathBuf>,
    /// The network's own state: namespace bind mounts, IPAM data, cached results.
    pub state_dir: PathBuf,
    /// The bridge the pods are attached to, created by the bridge plugin if missing.
    pub bridge: String,
    /// The pod CIDR of this node, e.g. `10.88.0.0/16`; the bridge takes its first address.
    pub subnet: String,
    /// The CNI network name (host-local and portmap key their state by it).
    pub network_name: String,
}

impl PodNetworkConfig {
    /// The defaults for an agent whose data directory is `data_dir`.
    pub fn new(data_dir: &Path) -> Self {
        PodNetworkConfig {
            plugin_dirs: vec![PathBuf::from("/usr/lib/cni"), PathBuf::from("/opt/cni/bin")],
            state_dir: data_dir.join("network"),
            bridge: "bramble0".to_string(),
            subnet: "10.88.0.0/16".to_string(),
            network_name: "bramble".to_string(),
        }
    }
}

/// A pod attached to the network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodAttachment {
    /// The pod's network namespace, for the containers' OCI spec (`linux.namespaces` path).
    pub netns: PathBuf,
    /// The pod's IP.
    pub ip: IpAddr,
    /// The pod's gateway (the bridge's address), if the result names one.
    pub gateway: Option<IpAddr>,
}

/// A host port forwarded to a pod port (a container's `hostPort`), portmap's runtime argument.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMapping {
    /// The port on the host.
    #[serde(rename = "hostPort")]
    pub host_port: u16,
    /// The port in the pod.
    #[serde(rename = "containerPort")]
    pub container_port: u16,
    /// `tcp` or `udp`.
    pub protocol: String,
    /// The host address to bind, all addresses if `None`.
    #[serde(rename = "hostIP", default, skip_serializing_if = "Option::is_none")]
    pub host_ip: Option<String>,
}

/// The node's pod network.
#[derive(Debug, Clone)]
pub struct PodNetwork {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: PodNetworkConfig,
    /// One lock per pod being attached or detached.
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl PodNetwork {
    /// Checks the configuration and that every plugin the network needs is installed.
    pub fn new(config: PodNetworkConfig) -> Result<PodNetwork, NetworkError> {
        config::validate(&config)?;
        for plugin in config::REQUIRED_PLUGINS {
            cni::find_plugin(&config.plugin_dirs, plugin)?;
        }
        ensure_masquerade(&config)?;
        Ok(PodNetwork {
            inner: Arc::new(Inner {
                config,
                locks: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The configuration this network was made with.
    pub fn config(&self) -> &PodNetworkConfig {
        &self.inner.config
    }

    /// Creates the pod's network namespace (named after `pod_uid`) and runs CNI ADD: loopback,
    /// then bridge with host-local IPAM, then portmap with `port_mappings`.
    ///
    /// Idempotent: a pod already attached (result cached and namespace present) gets its
    /// attachment back unchanged, whatever `port_mappings` now says. A half-done attachment
    /// (a crash during ADD, or a reboot that dropped the namespace) is torn down and redone.
    /// A failed ADD is undone before the error is returned.
    pub async fn attach(
        &self,
        pod_uid: &str,
        pod_namespace: &str,
        pod_name: &str,
        port_mappings: &[PortMapping],
    ) -> Result<PodAttachment, NetworkError> {
        validate_pod(pod_uid, pod_namespace, pod_name, port_mappings)?;
        let lock = self.inner.lock_for(pod_uid);
        let guard = lock.lock().await;
        let inner = Arc::clone(&self.inner);
        let (uid, ns, name) = (
            pod_uid.to_string(),
            pod_namespace.to_string(),
            pod_name.to_string(),
        );
        let ports = port_mappings.to_vec();
        let attached =
            tokio::task::spawn_blocking(move || inner.attach_blocking(&uid, &ns, &name, &ports))
                .await
                .map_err(|source| NetworkError::Task { source })?;
        drop(guard);
        self.inner.forget_lock(pod_uid, lock);
        attached
    }

    /// Runs CNI DEL (with the configuration and result cached by ADD) and removes the pod's
    /// namespace; succeeds if the pod is not attached.
    pub async fn detach(&self, pod_uid: &str) -> Result<(), NetworkError> {
        validate_uid(pod_uid)?;
        let lock = self.inner.lock_for(pod_uid);
        let guard = lock.lock().await;
        let inner = Arc::clone(&self.inner);
        let uid = pod_uid.to_string();
        let detached = tokio::task::spawn_blocking(move || inner.detach_blocking(&uid))
            .await
            .map_err(|source| NetworkError::Task { source })?;
        drop(guard);
        self.inner.forget_lock(pod_uid, lock);
        detached
    }

    /// Pod uids with network state on this node: a namespace, or a record of an ADD (also one
    /// a crash or reboot interrupted). For re-adoption after a restart and for cleaning up pods
    /// that are gone ([`PodNetwork::detach`] them).
    pub fn attached(&self) -> Result<Vec<String>, NetworkError> {
        let mut uids = list_names(&self.inner.netns_dir(), "")?;
        uids.extend(list_names(&self.inner.results_dir(), ".json")?);
        uids.sort();
        uids.dedup();
        Ok(uids)
    }

    /// The attachment of a pod attached earlier (by this process or before a restart), from
    /// its cached result; `None` if it is not fully attached (no result, or no namespace).
    pub fn lookup(&self, pod_uid: &str) -> Result<Option<PodAttachment>, NetworkError> {
        validate_uid(pod_uid)?;
        let record = result::read(&self.inner.record_path(pod_uid))?;
        Ok(record
            .and_then(|record| record.attachment())
            .filter(|attachment| netns::is_netns(&attachment.netns)))
    }
}

impl Inner {
    fn netns_dir(&self) -> PathBuf {
        self.config.state_dir.join("netns")
    }

    fn results_dir(&self) -> PathBuf {
        self.config.state_dir.join("results")
    }

    fn record_path(&self, uid: &str) -> PathBuf {
        self.results_dir().join(format!("{uid}.json"))
    }

    fn lock_for(&self, uid: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(locks.entry(uid.to_string()).or_default())
    }

    /// Drops the pod's lock from the map once nobody else holds or waits for it.
    fn forget_lock(&self, uid: &str, lock: Arc<tokio::sync::Mutex<()>>) {
        let mut locks = self.locks.lock().unwrap_or_else(PoisonError::into_inner);
        // Two references: the map's and ours.
        if Arc::strong_count(&lock) == 2 {
            locks.remove(uid);
        }
    }

    fn attach_blocking(
        &self,
        uid: &str,
        pod_namespace: &str,
        pod_name: &str,
        ports: &[PortMapping],
    ) -> Result<PodAttachment, NetworkError> {
        let netns_path = netns::path_of(&self.netns_dir(), uid);
        let record_path = self.record_path(uid);
        let existing = result::read(&record_path)?;
        if let Some(attachment) = existing.as_ref().and_then(Record::attachment) {
            if netns::is_netns(&attachment.netns) {
                return Ok(attachment);
            }
        }
        if existing.is_some() || netns_path.exists() {
            tracing::info!(pod = uid, "tearing down a half-done pod network attachment");
            self.detach_blocking(uid)?;
        }

        let mut record = Record {
            pod_uid: uid.to_string(),
            pod_namespace: pod_namespace.to_string(),
            pod_name: pod_name.to_string(),
            netns: netns_path.clone(),
            conflist: config::conflist(
                &self.config,
                &self.config.state_dir.join("ipam"),
                !ports.is_empty(),
            ),
            port_mappings: ports.to_vec(),
            result: None,
        };
        // Recorded first, so a crash during ADD is undone with this very configuration.
        result::write(&record_path, &record)?;
        netns::create(uid, &netns_path)?;
        let added = self.add(&record).and_then(|result| {
            let attachment = parse_attachment(&record, &result)?;
            record.result = Some(result);
            result::write(&record_path, &record)?;
            Ok(attachment)
        });
        match added {
            Ok(attachment) => {
                tracing::info!(pod = uid, ip = %attachment.ip, "pod attached to the network");
                Ok(attachment)
            }
            Err(err) => {
                if let Err(undo) = self.detach_blocking(uid) {
                    tracing::warn!(pod = uid, error = %undo, "undoing a failed pod network ADD failed");
                }
                Err(err)
            }
        }
    }

    fn add(&self, record: &Record) -> Result<serde_json::Value, NetworkError> {
        let rt = Runtime {
            plugin_dirs: &self.config.plugin_dirs,
            pod_uid: &record.pod_uid,
            pod_namespace: &record.pod_namespace,
            pod_name: &record.pod_name,
            netns: Some(&record.netns),
        };
        // `lo` and `eth0` are independent: set up side by side, as a pod start waits for both.
        let loopback = config::loopback();
        std::thread::scope(|scope| {
            let lo = scope.spawn(|| cni::exec(&rt, cni::Op::Add, "lo", &loopback));
            let result = cni::add_list(&rt, &record.conflist, POD_IFNAME, &record.port_mappings);
            match lo.join() {
                Ok(lo) => lo.and(result),
                Err(_) => Err(NetworkError::io(
                    "run the loopback plugin in",
                    &record.netns,
                    std::io::Error::other("its thread panicked"),
                )),
            }
        })
    }

    fn detach_blocking(&self, uid: &str) -> Result<(), NetworkError> {
        let netns_path = netns::path_of(&self.netns_dir(), uid);
        let record_path = self.record_path(uid);
        let record = result::read(&record_path)?;
        let live = netns::is_netns(&netns_path);
        if record.is_none() && !live {
            // Nothing ran ADD for this pod; at most an unmounted file is left.
            return netns::remove(uid, &netns_path);
        }
        // Without a record (a crash between creating the namespace and recording), DEL runs with
        // today's configuration; host-local and portmap find their state by container id.
        let (conflist, ports, cached, ns, name) = match &record {
            Some(r) => (
                r.conflist.clone(),
                r.port_mappings.clone(),
                r.result.clone(),
                r.pod_namespace.as_str(),
                r.pod_name.as_str(),
            ),
            None => (
                // Portmap included: DEL of a plugin that never ran is a no-op.
                config::conflist(&self.config, &self.config.state_dir.join("ipam"), true),
                Vec::new(),
                None,
                "",
                "",
            ),
        };
        let rt = Runtime {
            plugin_dirs: &self.config.plugin_dirs,
            pod_uid: uid,
            pod_namespace: ns,
            pod_name: name,
            // The spec lets DEL run without a namespace; the plugins then release what is
            // outside it (the address, the host's veth end, iptables rules).
            netns: live.then_some(netns_path.as_path()),
        };
        cni::del_list(&rt, &conflist, POD_IFNAME, &ports, cached.as_ref())?;
        if live {
            cni::exec(&rt, cni::Op::Del, "lo", &config::loopback())?;
        }
        netns::remove(uid, &netns_path)?;
        result::remove(&record_path)?;
        tracing::info!(pod = uid, "pod detached from the network");
        Ok(())
    }
}

/// Adds the subnet's masquerade rule unless it is there (`iptables -C` first: idempotent across
/// agent restarts, and one rule whatever the number of pods).
fn ensure_masquerade(config: &PodNetworkConfig) -> Result<(), NetworkError> {
    let rule = config::masquerade_rule(config);
    let iptables = |op: &str| {
        std::process::Command::new("iptables")
            .args(["-w", "-t", "nat", op, "POSTROUTING"])
            .args(&rule)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .output()
    };
    let failed = |source: std::io::Error| {
        NetworkError::io(
            "masquerade the pod subnet with (apt-get install -y iptables)",
            "iptables",
            source,
        )
    };
    if iptables("-C").map_err(failed)?.status.success() {
        return Ok(());
    }
    let added = iptables("-A").map_err(failed)?;
    if added.status.success() {
        Ok(())
    } else {
        Err(failed(std::io::Error::other(
            String::from_utf8_lossy(&added.stderr).trim().to_string(),
        )))
    }
}

/// The attachment in the final result of the chain of `record`.
fn parse_attachment(
    record: &Record,
    result: &serde_json::Value,
) -> Result<PodAttachment, NetworkError> {
    let (ip, gateway) = result::pod_address(result).map_err(|reason| NetworkError::BadResult {
        pod: record.pod_uid.clone(),
        plugin: config::plugins(&record.conflist)
            .last()
            .map(config::plugin_type)
            .unwrap_or_default()
            .to_string(),
        reason,
    })?;
    Ok(PodAttachment {
        netns: record.netns.clone(),
        ip,
        gateway,
    })
}

/// The names in `dir` ending in `suffix` (stripped), none if the directory does not exist.
fn list_names(dir: &Path, suffix: &str) -> Result<Vec<String>, NetworkError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(NetworkError::io("list", dir, e)),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| NetworkError::io("list", dir, e))?;
        let file_name = entry.file_name();
        let Some(name) = file_name.to_str().and_then(|n| n.strip_suffix(suffix)) else {
            continue;
        };
        if validate_uid(name).is_ok() {
            names.push(name.to_string());
        }
    }
    Ok(names)
}

/// A uid becomes a file name and the CNI container id: the spec allows letters, digits and
/// `_.-` there, and so do Kubernetes uids.
fn validate_uid(uid: &str) -> Result<(), NetworkError> {
    let ok = !uid.is_empty()
        && uid.len() <= 253
        && !uid.starts_with('.')
        && !uid.ends_with(".tmp")
        && !uid.ends_with(".json")
        && uid
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if ok {
        Ok(())
    } else {
        Err(NetworkError::InvalidPod {
            pod: uid.to_string(),
            field: "uid",
            value: uid.to_string(),
            reason: "must be letters, digits, '-', '_' or '.' and not start with '.'",
        })
    }
}

fn validate_pod(
    uid: &str,
    namespace: &str,
    name: &str,
    ports: &[PortMapping],
) -> Result<(), NetworkError> {
    validate_uid(uid)?;
    let invalid = |field, value: &str, reason| NetworkError::InvalidPod {
        pod: uid.to_string(),
        field,
        value: value.to_string(),
        reason,
    };
    // They travel in CNI_ARGS, which `;` and `=` delimit.
    for (field, value) in [("namespace", namespace), ("name", name)] {
        if value.contains([';', '=']) {
            return Err(invalid(field, value, "must not contain ';' or '='"));
        }
    }
    for port in ports {
        if !matches!(port.protocol.as_str(), "tcp" | "udp" | "sctp") {
            return Err(invalid(
                "protocol",
                &port.protocol,
                "must be tcp, udp or sctp (lower case)",
            ));
        }
        if port.host_port == 0 || port.container_port == 0 {
            return Err(invalid(
                "port",
                &format!("{}:{}", port.host_port, port.container_port),
                "ports must not be 0",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
