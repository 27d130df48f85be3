//! The OCI runtime spec (config.json) of a container, following containerd's default spec for
//! Linux (namespaces, mounts, capabilities, masked paths) with the Pod's settings on top, and
//! the kubelet's rules for argv and environment.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::error::ContainerdError;
use super::{ImageConfig, LaunchSpec};

/// The cgroup every container's cgroup is created under (`/bramble/<id>`).
pub(super) const CGROUP_PARENT: &str = "bramble";
/// The `type_url` containerd expects on a container's spec.
pub(super) const SPEC_TYPE_URL: &str = "types.containerd.io/opencontainers/runtime-spec/1/Spec";
/// The `type_url` of an exec'd process's spec.
pub(super) const PROCESS_TYPE_URL: &str =
    "types.containerd.io/opencontainers/runtime-spec/1/Process";
/// CFS period the CPU quota is expressed against (the kernel's and kubelet's default).
const CPU_PERIOD_US: u64 = 100_000;
/// PATH when the image sets none (containerd's default).
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// containerd's default capability set for containers.
const DEFAULT_CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Paths of /proc and /sys a container must not read (kernel memory, keys, firmware).
const MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
];

/// Paths of /proc a container may read but not write.
const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// The container's argv by the kubelet's rules: the Pod's `command` replaces the image's
/// `Entrypoint` (and then the image's `Cmd` is ignored too); the Pod's `args` replace the
/// image's `Cmd`. `$(VAR)` expansion is the caller's (it knows the Pod's environment).
pub fn container_args(command: &[String], args: &[String], config: &ImageConfig) -> Vec<String> {
    match (command.is_empty(), args.is_empty()) {
        (false, _) => command.iter().chain(args).cloned().collect(),
        (true, false) => config.entrypoint.iter().chain(args).cloned().collect(),
        (true, true) => config
            .entrypoint
            .iter()
            .chain(&config.cmd)
            .cloned()
            .collect(),
    }
}

/// The container's environment: the image's `Env` first, then the Pod's, a Pod variable
/// replacing an image variable of the same name in place; `PATH` defaults to containerd's
/// when neither sets it.
pub fn merge_env(image_env: &[String], pod_env: &[(String, String)]) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = Vec::new();
    let mut set = |key: &str, value: &str| match env.iter_mut().find(|(k, _)| k == key) {
        Some(entry) => entry.1 = value.to_owned(),
        None => env.push((key.to_owned(), value.to_owned())),
    };
    for entry in image_env {
        let (key, value) = entry.split_once('=').unwrap_or((entry, ""));
        set(key, value);
    }
    for (key, value) in pod_env {
        set(key, value);
    }
    if !env.iter().any(|(k, _)| k == "PATH") {
        env.insert(0, ("PATH".to_owned(), DEFAULT_PATH.to_owned()));
    }
    env
}

/// The files bind-mounted over the container's `/etc/hosts`, `/etc/hostname` and
/// `/etc/resolv.conf`.
#[derive(Debug, Clone)]
pub(super) struct EtcFiles {
    pub(super) hosts: PathBuf,
    pub(super) hostname: PathBuf,
    pub(super) resolv_conf: PathBuf,
}

/// The uid and gid the process runs as: the caller's, else the image's `User` when it is
/// numeric, else root. A user name would need the image's /etc/passwd, which this layer does
/// not read; such images need `runAsUser` in the Pod.
pub(super) fn resolve_user(spec: &LaunchSpec) -> Result<(u32, u32), ContainerdError> {
    if let Some(user) = spec.user {
        return Ok(user);
    }
    let Some(user) = spec.image.config.user.as_deref() else {
        return Ok((0, 0));
    };
    let (uid, gid) = user.split_once(':').unwrap_or((user, ""));
    let uid: u32 = uid.parse().map_err(|_| ContainerdError::Spec {
        id: spec.id.clone(),
        reason: format!(
            "image user {user:?} is a name, which is not resolved; set securityContext.runAsUser \
             (and runAsGroup) to numeric ids"
        ),
    })?;
    let gid = if gid.is_empty() {
        0
    } else {
        gid.parse().map_err(|_| ContainerdError::Spec {
            id: spec.id.clone(),
            reason: format!("image user {user:?} has a group name; set securityContext.runAsGroup"),
        })?
    };
    Ok((uid, gid))
}

/// The OCI runtime spec for `spec`. `swap_limit` says whether the kernel accounts swap (cgroup
/// v1 `memory.memsw.*`); runc fails to set a swap limit it cannot write.
pub(super) fn runtime_spec(
    spec: &LaunchSpec,
    user: (u32, u32),
    etc: &EtcFiles,
    swap_limit: bool,
) -> Value {
    let env: Vec<String> = spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let cwd = spec
        .working_dir
        .clone()
        .or_else(|| spec.image.config.working_dir.clone())
        .unwrap_or_else(|| "/".to_owned());
    let caps = DEFAULT_CAPABILITIES;
    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc",
               "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
               "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts",
               "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
               "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
               "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs",
               "options": ["nosuid", "noexec", "nodev", "ro"]}),
        json!({"destination": "/run", "type": "tmpfs", "source": "tmpfs",
               "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
    ];
    let bind = |source: &Path, destination: &str, read_only: bool| {
        json!({"destination": destination, "type": "bind", "source": source,
               "options": ["rbind", "rprivate", if read_only { "ro" } else { "rw" }]})
    };
    mounts.push(bind(&etc.hosts, "/etc/hosts", false));
    mounts.push(bind(&etc.hostname, "/etc/hostname", false));
    mounts.push(bind(&etc.resolv_conf, "/etc/resolv.conf", false));
    for mount in &spec.mounts {
        mounts.push(bind(&mount.host, &mount.container, mount.read_only));
    }
    let network = match &spec.netns {
        Some(path) => json!({"type": "network", "path": path}),
        None => json!({"type": "network"}),
    };
    let mut memory = serde_json::Map::new();
    if let Some(limit) = spec.memory_limit {
        memory.insert("limit".to_owned(), json!(limit));
        if swap_limit {
            // Memory plus swap capped at the memory limit: no swap, so the OOM killer acts at
            // the limit instead of the container crawling on swap.
            memory.insert("swap".to_owned(), json!(limit));
        }
    }
    let mut cpu = serde_json::Map::new();
    if let Some(millis) = spec.cpu_millis_limit {
        // The kernel refuses quotas under 1 ms.
        let quota = (millis.saturating_mul(CPU_PERIOD_US) / 1000).max(1000);
        cpu.insert("quota".to_owned(), json!(quota));
        cpu.insert("period".to_owned(), json!(CPU_PERIOD_US));
    }
    if let Some(shares) = spec.cpu_shares {
        cpu.insert("shares".to_owned(), json!(shares));
    }
    json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": user.0, "gid": user.1, "additionalGids": spec.supplemental_groups},
            "args": spec.args,
            "env": env,
            "cwd": cwd,
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": true
        },
        "root": {"path": "rootfs", "readonly": spec.read_only_root},
        "hostname": spec.hostname,
        "mounts": mounts,
        "annotations": spec.annotations,
        "linux": {
            "resources": {
                "devices": [{"allow": false, "access": "rwm"}],
                "memory": memory,
                "cpu": cpu
            },
            "cgroupsPath": format!("/{CGROUP_PARENT}/{}", spec.id),
            "namespaces": [
                {"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}, network
            ],
            "maskedPaths": MASKED_PATHS,
            "readonlyPaths": READONLY_PATHS
        }
    })
}
