//! Mapping one container of a Pod onto a Wasm sandbox: argv, environment, preopened volume
//! directories, resource limits and the socket allow-list.
//!
//! Everything here is decided from the Pod, its ConfigMaps and Secrets; output sinks are left
//! unset because the caller attaches the log writers.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

use bramble_api::quantity::{Quantity, QuantityError};
use bramble_wasm_shim::sandbox::{Preopen, SandboxSpec};
use bramble_wasm_shim::sockets::{IpNetwork, SocketAction, SocketPolicy, SocketRule};
use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret};

use super::env::{container_env, expand};
use super::volumes::{PodVolumes, VolumeProblem};

/// What the agent knows when it maps a Pod onto sandboxes.
#[derive(Debug, Clone, Copy)]
pub struct PodEnv<'a> {
    /// The Pod being started.
    pub pod: &'a Pod,
    /// ConfigMaps of the Pod's namespace, by name.
    pub configmaps: &'a BTreeMap<String, ConfigMap>,
    /// Secrets of the Pod's namespace, by name.
    pub secrets: &'a BTreeMap<String, Secret>,
    /// The Pod's IP address (`status.podIP`).
    pub pod_ip: &'a str,
    /// The node it runs on (`spec.nodeName`).
    pub node_name: &'a str,
    /// The Pod's own directory on the host; volumes live under `volumes/<name>`.
    pub pod_dir: &'a Path,
}

/// Why a Pod cannot be mapped onto sandboxes. The agent reports these in the Pod's status
/// (as `CreateContainerConfigError` or a failed mount), so they name the container or volume
/// and the field.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// A field of one container is unusable.
    #[error("container {container:?}: {field}: {problem}")]
    Container {
        /// The container's name.
        container: String,
        /// The field, e.g. `env FOO` or `volumeMounts[0]`.
        field: String,
        /// What is wrong with it.
        problem: FieldProblem,
    },
    /// A volume of the Pod cannot be prepared.
    #[error("volume {volume:?}: {problem}")]
    Volume {
        /// The volume's name.
        volume: String,
        /// What is wrong with it.
        problem: VolumeProblem,
    },
}

/// What is wrong with one field of a container.
#[derive(Debug, thiserror::Error)]
pub enum FieldProblem {
    /// A referenced ConfigMap does not exist and the reference is not optional.
    #[error("configmap {name:?} not found")]
    ConfigMapNotFound {
        /// The ConfigMap's name.
        name: String,
    },
    /// A referenced key is missing from its ConfigMap and the reference is not optional.
    #[error("key {key:?} not found in configmap {name:?}")]
    ConfigMapKeyNotFound {
        /// The ConfigMap's name.
        name: String,
        /// The missing key.
        key: String,
    },
    /// A referenced Secret does not exist and the reference is not optional.
    #[error("secret {name:?} not found")]
    SecretNotFound {
        /// The Secret's name.
        name: String,
    },
    /// A referenced key is missing from its Secret and the reference is not optional.
    #[error("key {key:?} not found in secret {name:?}")]
    SecretKeyNotFound {
        /// The Secret's name.
        name: String,
        /// The missing key.
        key: String,
    },
    /// A Secret value used as an environment variable is not UTF-8.
    #[error("key {key:?} of secret {name:?} is not valid UTF-8")]
    SecretNotUtf8 {
        /// The Secret's name.
        name: String,
        /// The key.
        key: String,
    },
    /// `valueFrom` names a source this agent does not resolve.
    #[error(
        "{source_kind} is not supported; use value, configMapKeyRef, secretKeyRef or fieldRef"
    )]
    UnsupportedSource {
        /// The kind of source, e.g. `resourceFieldRef`.
        source_kind: &'static str,
    },
    /// `valueFrom` is present but names no source.
    #[error("valueFrom names no source")]
    EmptySource,
    /// A `fieldRef` path that Kubernetes does not offer as an environment variable.
    #[error("field path {path:?} is not supported; use metadata.name, metadata.namespace, metadata.uid, metadata.labels['KEY'], metadata.annotations['KEY'], spec.nodeName, spec.serviceAccountName, status.podIP or status.podIPs")]
    UnsupportedFieldPath {
        /// The path as given.
        path: String,
    },
    /// A resource limit is not a valid quantity.
    #[error("invalid quantity: {0}")]
    Quantity(QuantityError),
    /// A mount path is relative.
    #[error("mount path {path:?} must be absolute")]
    RelativeMountPath {
        /// The path as given.
        path: String,
    },
    /// A mount names a volume the Pod does not declare.
    #[error("volume {name:?} is not declared in spec.volumes")]
    UnknownVolume {
        /// The volume's name.
        name: String,
    },
    /// A subPath is absolute, contains `..`, or leads outside its volume through a symlink.
    #[error("subPath {sub_path:?} must be a relative path inside the volume, without '..'")]
    SubPathEscapes {
        /// The subPath as given (after expansion).
        sub_path: String,
    },
    /// A subPath names something other than a directory; Wasm guests can only be given
    /// directories.
    #[error("subPath {sub_path:?} is not a directory; only directories can be mounted into Wasm containers")]
    SubPathNotDirectory {
        /// The subPath as given.
        sub_path: String,
    },
    /// Creating a subPath directory failed.
    #[error("creating subPath directory {path:?} failed: {source}")]
    SubPathCreate {
        /// The host path.
        path: std::path::PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A port number is out of range or a protocol cannot be offered to Wasm guests.
    #[error("{reason}")]
    Port {
        /// What is wrong.
        reason: String,
    },
}

/// Builds one container's sandbox; output sinks stay unset (the caller attaches log writers).
pub fn container_sandbox(
    env: &PodEnv,
    container: &Container,
    volumes: &PodVolumes,
) -> Result<SandboxSpec, SpecError> {
    let fail = |field: String, problem: FieldProblem| SpecError::Container {
        container: container.name.clone(),
        field,
        problem,
    };
    let variables =
        container_env(env, container).map_err(|(field, problem)| fail(field, problem))?;
    let lookup: BTreeMap<&str, &str> = variables
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();

    let mut spec = SandboxSpec::new(container.name.clone());
    spec.argv = argv(container, &lookup);
    spec.preopens = preopens(container, volumes, &lookup).map_err(|(f, p)| fail(f, p))?;
    spec.limits.memory_bytes = limit(container, "memory")
        .map_err(|p| fail("resources.limits.memory".into(), p))?
        .map(|bytes| u64::try_from(bytes).unwrap_or(u64::MAX));
    spec.limits.cpu_millicores = limit_milli(container, "cpu")
        .map_err(|p| fail("resources.limits.cpu".into(), p))?
        .map(|milli| u32::try_from(milli).unwrap_or(u32::MAX));
    spec.sockets = sockets(container).map_err(|(f, p)| fail(f, p))?;
    spec.env = variables;
    Ok(spec)
}

/// `command` + `args` with `$(VAR)` expanded against the container's final environment, as
/// the kubelet does. Wasm images carry no entrypoint, so with neither given the module runs
/// with just its name, and `args` alone are appended to it.
fn argv(container: &Container, lookup: &BTreeMap<&str, &str>) -> Vec<String> {
    let command = container.command.as_deref().unwrap_or_default();
    let args = container.args.as_deref().unwrap_or_default();
    let mut argv: Vec<String> = if command.is_empty() {
        vec![container.name.clone()]
    } else {
        command.iter().map(|part| expand(part, lookup)).collect()
    };
    argv.extend(args.iter().map(|arg| expand(arg, lookup)));
    argv
}

fn preopens(
    container: &Container,
    volumes: &PodVolumes,
    lookup: &BTreeMap<&str, &str>,
) -> Result<Vec<Preopen>, (String, FieldProblem)> {
    let mut preopens = Vec::new();
    for (index, mount) in container.volume_mounts.iter().flatten().enumerate() {
        let field = || format!("volumeMounts[{index}] ({})", mount.mount_path);
        if !mount.mount_path.starts_with('/') {
            let path = mount.mount_path.clone();
            return Err((field(), FieldProblem::RelativeMountPath { path }));
        }
        let Some(volume) = volumes.get(&mount.name) else {
            let name = mount.name.clone();
            return Err((field(), FieldProblem::UnknownVolume { name }));
        };
        let sub_path = match (&mount.sub_path, &mount.sub_path_expr) {
            (Some(sub_path), _) if !sub_path.is_empty() => Some(sub_path.clone()),
            (_, Some(expr)) if !expr.is_empty() => Some(expand(expr, lookup)),
            _ => None,
        };
        let host = match sub_path {
            Some(sub_path) => volume.sub_path(&sub_path).map_err(|p| (field(), p))?,
            None => volume.host.clone(),
        };
        // "/data/" and "/data" are the same mount to Kubernetes; the sandbox wants one form.
        let trimmed = mount.mount_path.trim_end_matches('/');
        let guest = if trimmed.is_empty() { "/" } else { trimmed };
        preopens.push(Preopen {
            host,
            guest: guest.to_owned(),
            read_only: volume.read_only || mount.read_only.unwrap_or(false),
        });
    }
    Ok(preopens)
}

fn quantity(container: &Container, resource: &str) -> Result<Option<Quantity>, FieldProblem> {
    let Some(text) = container
        .resources
        .as_ref()
        .and_then(|resources| resources.limits.as_ref())
        .and_then(|limits| limits.get(resource))
    else {
        return Ok(None);
    };
    let parsed = Quantity::parse_non_negative(&text.0).map_err(FieldProblem::Quantity)?;
    // A zero limit means "no limit" to the kubelet (no cgroup quota is set), not "nothing".
    Ok((!parsed.is_zero()).then_some(parsed))
}

/// A limit in whole units, rounded up as Kubernetes rounds.
fn limit(container: &Container, resource: &str) -> Result<Option<i128>, FieldProblem> {
    Ok(quantity(container, resource)?.map(|q| q.value()))
}

/// A limit in thousandths, rounded up as Kubernetes rounds.
fn limit_milli(container: &Container, resource: &str) -> Result<Option<i128>, FieldProblem> {
    Ok(quantity(container, resource)?.map(|q| q.milli_value()))
}

/// Declared container ports may be listened on; any address may be called, as pods can in
/// Kubernetes; host names resolve through the node.
fn sockets(container: &Container) -> Result<SocketPolicy, (String, FieldProblem)> {
    let network = |addr: IpAddr| IpNetwork::new(addr, 0);
    let any = [
        IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    ];
    let mut rules: Vec<SocketRule> = [IpNetwork::ANY_V4, IpNetwork::ANY_V6]
        .into_iter()
        .map(|network| SocketRule {
            action: SocketAction::Connect,
            network,
            ports: 0..=u16::MAX,
        })
        .collect();
    let mut udp = false;
    for (index, port) in container.ports.iter().flatten().enumerate() {
        let field = || format!("ports[{index}]");
        let number = u16::try_from(port.container_port)
            .ok()
            .filter(|number| *number != 0)
            .ok_or_else(|| {
                let reason = format!("containerPort {} is not in 1-65535", port.container_port);
                (field(), FieldProblem::Port { reason })
            })?;
        match port.protocol.as_deref().unwrap_or("TCP") {
            "TCP" => {
                for addr in any {
                    // A /32 (or /128) of the unspecified address: the guest may bind the
                    // wildcard address on this port, which is how servers listen.
                    let full = if addr.is_ipv4() { 32 } else { 128 };
                    if let Some(network) = IpNetwork::new(addr, full) {
                        rules.push(SocketRule {
                            action: SocketAction::Listen,
                            network,
                            ports: number..=number,
                        });
                    }
                }
            }
            "UDP" => udp = true,
            other => {
                let reason = format!(
                    "protocol {other:?} is not available to Wasm containers; use TCP or UDP"
                );
                return Err((field(), FieldProblem::Port { reason }));
            }
        }
    }
    if udp {
        // The shim checks a datagram's peer against the same rules as the local bind, so a
        // rule narrowed to the declared port would refuse every reply to a client: a UDP
        // server needs UDP with any address and port.
        rules.extend(
            any.into_iter()
                .filter_map(network)
                .map(|network| SocketRule {
                    action: SocketAction::Udp,
                    network,
                    ports: 0..=u16::MAX,
                }),
        );
    }
    Ok(SocketPolicy {
        rules,
        name_lookup: true,
    })
}

#[cfg(test)]
#[path = "spec_tests.rs"]
mod tests;
