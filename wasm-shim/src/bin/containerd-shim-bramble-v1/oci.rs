//! The parts of an OCI runtime spec (`config.json`) this shim honours, and the one place that
//! turns them into what a Wasm instance gets: the module's path in the rootfs, argv, env,
//! preopened directories, limits and the HTTP port.
//!
//! Everything else in the spec (namespaces, capabilities, seccomp, devices, users, hooks) is
//! about Linux processes; a Wasm guest has none of those powers, so it is ignored.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use bramble_wasm_shim::limits::Limits;
use bramble_wasm_shim::sandbox::Preopen;
use serde::Deserialize;

use crate::error::ShimError;

/// Annotation naming the port a wasi:http component is served on (env `PORT` wins).
pub const HTTP_PORT_ANNOTATION: &str = "bramble.dev/http-port";
/// Port a wasi:http component is served on when neither `PORT` nor the annotation names one.
pub const DEFAULT_HTTP_PORT: u16 = 8080;
/// CRI's annotation naming the pod sandbox a container belongs to.
pub const SANDBOX_ID_ANNOTATION: &str = "io.kubernetes.cri.sandbox-id";
/// CRI's annotation saying whether a container is a pod's sandbox (`sandbox`) or an app.
pub const CONTAINER_TYPE_ANNOTATION: &str = "io.kubernetes.cri.container-type";
/// containerd's grouping annotation (as the runc v2 shim reads it).
pub const GROUP_ANNOTATION: &str = "io.containerd.runc.v2.group";

/// An OCI runtime spec, reduced to the fields used here. Unknown fields are ignored.
#[derive(Debug, Default, Deserialize)]
pub struct Spec {
    /// The init process.
    #[serde(default)]
    pub process: Option<Process>,
    /// The root file system.
    #[serde(default)]
    pub root: Option<Root>,
    /// Extra mounts; only bind mounts of directories mean something to a Wasm guest.
    #[serde(default)]
    pub mounts: Vec<Mount>,
    /// Annotations (CRI's sandbox id, the HTTP port).
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// Linux settings; only `resources` is read.
    #[serde(default)]
    pub linux: Option<Linux>,
}

/// An OCI process (`process` of the spec, or an exec's process spec).
#[derive(Debug, Default, Clone, Deserialize)]
pub struct Process {
    /// `args[0]` is the module's path inside the rootfs; all of it is the guest's argv.
    #[serde(default)]
    pub args: Vec<String>,
    /// `NAME=value` entries.
    #[serde(default)]
    pub env: Vec<String>,
    /// Whether a terminal was asked for (refused: there is no pty for a guest).
    #[serde(default)]
    pub terminal: bool,
}

/// `root` of the spec.
#[derive(Debug, Default, Deserialize)]
pub struct Root {
    /// Rootfs path, absolute or relative to the bundle.
    #[serde(default)]
    pub path: String,
    /// Whether the guest may not write to it.
    #[serde(default)]
    pub readonly: bool,
}

/// One entry of `mounts`.
#[derive(Debug, Default, Deserialize)]
pub struct Mount {
    /// Where the guest sees it.
    pub destination: String,
    /// `bind`, `proc`, `tmpfs`, …
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    /// Host path for bind mounts.
    #[serde(default)]
    pub source: Option<String>,
    /// `rbind`, `ro`, …
    #[serde(default)]
    pub options: Vec<String>,
}

/// `linux` of the spec.
#[derive(Debug, Default, Deserialize)]
pub struct Linux {
    /// cgroup resources.
    #[serde(default)]
    pub resources: Option<Resources>,
}

/// `linux.resources`.
#[derive(Debug, Default, Deserialize)]
pub struct Resources {
    /// Memory limits.
    #[serde(default)]
    pub memory: Option<Memory>,
    /// CPU limits.
    #[serde(default)]
    pub cpu: Option<Cpu>,
}

/// `linux.resources.memory`.
#[derive(Debug, Default, Deserialize)]
pub struct Memory {
    /// Bytes; 0 or negative means none.
    #[serde(default)]
    pub limit: Option<i64>,
}

/// `linux.resources.cpu`.
#[derive(Debug, Default, Deserialize)]
pub struct Cpu {
    /// Microseconds per period; 0 or negative means none.
    #[serde(default)]
    pub quota: Option<i64>,
    /// Period in microseconds.
    #[serde(default)]
    pub period: Option<u64>,
}

impl Spec {
    /// Reads `<bundle>/config.json`.
    pub fn load(bundle: &Path) -> Result<Spec, ShimError> {
        let path = bundle.join("config.json");
        let text = std::fs::read(&path).map_err(|source| ShimError::Io {
            what: "reading the OCI spec",
            path: path.clone(),
            source,
        })?;
        Self::parse(&text).map_err(|message| ShimError::InvalidSpec { path, message })
    }

    /// Parses a spec from JSON.
    pub fn parse(json: &[u8]) -> Result<Spec, String> {
        serde_json::from_slice(json).map_err(|e| e.to_string())
    }

    /// The id of the shim this container shares: its pod sandbox's, or its group's.
    pub fn group(&self) -> Option<&str> {
        [SANDBOX_ID_ANNOTATION, GROUP_ANNOTATION]
            .iter()
            .find_map(|key| self.annotations.get(*key))
            .map(String::as_str)
            .filter(|id| !id.is_empty())
    }

    /// Whether this is a CRI pod sandbox container (its image is the pause binary, which has
    /// no Wasm meaning: the task just holds the pod until it is killed).
    pub fn is_pod_sandbox(&self) -> bool {
        self.annotations
            .get(CONTAINER_TYPE_ANNOTATION)
            .is_some_and(|t| t == "sandbox")
    }

    /// The rootfs directory given in `root.path` (relative to the bundle unless absolute).
    pub fn root_path(&self, bundle: &Path) -> PathBuf {
        let path = self
            .root
            .as_ref()
            .map(|root| root.path.as_str())
            .filter(|p| !p.is_empty())
            .unwrap_or("rootfs");
        bundle.join(path)
    }
}

/// What one instance of a container is given, decided from the spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The module on the host (inside the mounted rootfs).
    pub wasm: PathBuf,
    /// The guest's argv (`process.args`).
    pub argv: Vec<String>,
    /// The guest's environment (`process.env`).
    pub env: Vec<(String, String)>,
    /// The rootfs as `/`, then each bind-mounted directory.
    pub preopens: Vec<Preopen>,
    /// Memory and CPU limits.
    pub limits: Limits,
    /// Port a wasi:http component is served on.
    pub http_port: u16,
}

/// Maps the container's spec (and `process`, the init's or an exec's) to a [`Plan`], with the
/// rootfs mounted at `rootfs`.
pub fn plan(spec: &Spec, process: &Process, rootfs: &Path) -> Result<Plan, ShimError> {
    let invalid = |message: String| ShimError::InvalidProcess { message };
    if process.terminal {
        return Err(invalid(
            "a terminal (-t) is not supported: a Wasm guest has no tty".into(),
        ));
    }
    let program = process.args.first().ok_or_else(|| {
        invalid("process.args is empty: args[0] must name the .wasm file in the image".into())
    })?;
    let env = process
        .env
        .iter()
        .map(|entry| match entry.split_once('=') {
            Some((name, value)) if !name.is_empty() => Ok((name.to_string(), value.to_string())),
            _ => Err(invalid(format!(
                "environment entry {entry:?} is not NAME=value"
            ))),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut preopens = vec![Preopen {
        host: rootfs.to_path_buf(),
        guest: "/".into(),
        read_only: spec.root.as_ref().is_some_and(|root| root.readonly),
    }];
    for mount in &spec.mounts {
        let bind = mount.kind.as_deref() == Some("bind")
            || mount.options.iter().any(|o| o == "bind" || o == "rbind");
        let Some(source) = mount.source.as_deref().filter(|_| bind) else {
            continue;
        };
        // WASI preopens are directories; CRI's file mounts (/etc/hosts, resolv.conf,
        // termination-log) cannot be given to a guest.
        if !Path::new(source).is_dir() || mount.destination == "/" {
            continue;
        }
        preopens.push(Preopen {
            host: PathBuf::from(source),
            guest: mount.destination.clone(),
            read_only: mount.options.iter().any(|o| o == "ro"),
        });
    }
    let wasm = resolve_program(&preopens, program)?;
    let resources = spec.linux.as_ref().and_then(|l| l.resources.as_ref());
    let limits = Limits {
        memory_bytes: resources
            .and_then(|r| r.memory.as_ref())
            .and_then(|m| m.limit)
            .and_then(|limit| u64::try_from(limit).ok())
            .filter(|limit| *limit > 0),
        cpu_millicores: resources
            .and_then(|r| r.cpu.as_ref())
            .and_then(cpu_millicores),
        ..Limits::default()
    };
    let http_port = http_port(&env, &spec.annotations)?;
    Ok(Plan {
        wasm,
        argv: process.args.clone(),
        env,
        preopens,
        limits,
        http_port,
    })
}

/// CFS quota/period as millicores (quota 50000 of 100000 is 500m).
fn cpu_millicores(cpu: &Cpu) -> Option<u32> {
    let quota = u64::try_from(cpu.quota?).ok().filter(|q| *q > 0)?;
    let period = cpu.period.filter(|p| *p > 0).unwrap_or(100_000);
    let millis = quota.saturating_mul(1000) / period;
    Some(u32::try_from(millis).unwrap_or(u32::MAX).max(1))
}

fn http_port(
    env: &[(String, String)],
    annotations: &BTreeMap<String, String>,
) -> Result<u16, ShimError> {
    let from_env = env
        .iter()
        .rev()
        .find(|(name, _)| name == "PORT")
        .map(|(_, v)| ("env PORT", v));
    let from_annotation = annotations
        .get(HTTP_PORT_ANNOTATION)
        .map(|v| ("annotation bramble.dev/http-port", v));
    match from_env.or(from_annotation) {
        None => Ok(DEFAULT_HTTP_PORT),
        Some((source, value)) => value
            .trim()
            .parse::<u16>()
            .ok()
            .filter(|port| *port > 0)
            .ok_or_else(|| ShimError::InvalidProcess {
                message: format!("{source} = {value:?} is not a TCP port (1-65535)"),
            }),
    }
}

/// The host path of the module `program` names: inside the bind-mounted directory whose
/// destination holds it (the longest), else inside the rootfs (the first preopen). A Bramble
/// node runs a Wasm OCI artifact this way: an empty rootfs and the module's directory bound in.
fn resolve_program(preopens: &[Preopen], program: &str) -> Result<PathBuf, ShimError> {
    let path = Path::new(program);
    let mount = preopens
        .iter()
        .skip(1)
        .filter(|p| path.starts_with(&p.guest))
        .max_by_key(|p| p.guest.len());
    match (mount, preopens.first()) {
        (Some(mount), _) => {
            let rest = path.strip_prefix(&mount.guest).unwrap_or(path);
            resolve_in_rootfs(&mount.host, &format!("/{}", rest.display()))
        }
        (None, Some(root)) => resolve_in_rootfs(&root.host, program),
        (None, None) => Err(ShimError::InvalidProcess {
            message: format!("args[0] {program:?}: the container has no rootfs"),
        }),
    }
}

/// The host path of `guest` (an absolute path in the image) inside `rootfs`, refusing paths
/// and symlinks that lead out of it.
pub fn resolve_in_rootfs(rootfs: &Path, guest: &str) -> Result<PathBuf, ShimError> {
    let invalid = |reason: &str| ShimError::InvalidProcess {
        message: format!("args[0] {guest:?} {reason}"),
    };
    let relative = Path::new(guest)
        .strip_prefix("/")
        .map_err(|_| invalid("must be an absolute path inside the image, e.g. /app.wasm"))?;
    if relative
        .components()
        .any(|c| !matches!(c, Component::Normal(_)))
    {
        return Err(invalid("must not contain '.' or '..'"));
    }
    let joined = rootfs.join(relative);
    let not_found = |source: std::io::Error| ShimError::Io {
        what: "finding the .wasm file named by args[0] in the image",
        path: joined.clone(),
        source,
    };
    let real = joined.canonicalize().map_err(not_found)?;
    let real_root = rootfs.canonicalize().map_err(|source| ShimError::Io {
        what: "resolving the rootfs",
        path: rootfs.to_path_buf(),
        source,
    })?;
    if !real.starts_with(&real_root) {
        return Err(invalid("leads out of the image (through a symlink)"));
    }
    if !real.is_file() {
        return Err(invalid("is not a regular file"));
    }
    Ok(real)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: &str) -> Spec {
        Spec::parse(json.as_bytes()).unwrap()
    }

    fn rootfs_with(files: &[&str]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for file in files {
            let path = dir.path().join(file.trim_start_matches('/'));
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, b"\0asm").unwrap();
        }
        dir
    }

    #[test]
    fn the_module_may_come_from_a_bind_mounted_directory() {
        let root = rootfs_with(&[]);
        let modules = rootfs_with(&["/m.wasm"]);
        let json = format!(
            r#"{{"process":{{"args":["/bramble/wasm/m.wasm"],"env":[],"cwd":"/"}},
               "mounts":[{{"destination":"/bramble/wasm","type":"bind","source":"{}","options":["rbind","ro"]}}]}}"#,
            modules.path().display()
        );
        let spec = spec(&json);
        let plan = plan(&spec, spec.process.as_ref().unwrap(), root.path()).unwrap();
        assert_eq!(
            plan.wasm,
            modules.path().join("m.wasm").canonicalize().unwrap()
        );
        // Not found in the rootfs when no mount holds it.
        let bare = spec_without_mounts();
        assert!(plan_err(&bare, root.path()).contains("/bramble/wasm/m.wasm"));
    }

    fn spec_without_mounts() -> Spec {
        spec(r#"{"process":{"args":["/bramble/wasm/m.wasm"],"env":[],"cwd":"/"}}"#)
    }

    fn plan_err(spec: &Spec, root: &Path) -> String {
        plan(spec, spec.process.as_ref().unwrap(), root)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn a_spec_maps_to_argv_env_preopens_and_limits() {
        let root = rootfs_with(&["/app.wasm"]);
        let data = tempfile::tempdir().unwrap();
        let json = format!(
            r#"{{"process":{{"args":["/app.wasm","x"],"env":["A=1","B=x=y"],"cwd":"/"}},
               "root":{{"path":"rootfs","readonly":true}},
               "mounts":[{{"destination":"/proc","type":"proc","source":"proc"}},
                         {{"destination":"/data","type":"bind","source":{:?},"options":["rbind","ro"]}},
                         {{"destination":"/etc/hosts","type":"bind","source":"/etc/hosts"}}],
               "linux":{{"resources":{{"memory":{{"limit":67108864}},"cpu":{{"quota":50000,"period":100000}}}}}},
               "annotations":{{"bramble.dev/http-port":"9090"}}}}"#,
            data.path()
        );
        let spec = spec(&json);
        let process = spec.process.clone().unwrap();
        let plan = plan(&spec, &process, root.path()).unwrap();
        assert_eq!(
            plan.wasm,
            root.path().canonicalize().unwrap().join("app.wasm")
        );
        assert_eq!(plan.argv, ["/app.wasm", "x"]);
        assert_eq!(
            plan.env,
            [("A".into(), "1".into()), ("B".into(), "x=y".into())]
        );
        assert_eq!(plan.preopens.len(), 2, "{:?}", plan.preopens);
        assert_eq!(plan.preopens[0].guest, "/");
        assert!(plan.preopens[0].read_only);
        assert_eq!(plan.preopens[1].guest, "/data");
        assert!(plan.preopens[1].read_only);
        assert_eq!(plan.limits.memory_bytes, Some(64 << 20));
        assert_eq!(plan.limits.cpu_millicores, Some(500));
        assert_eq!(plan.http_port, 9090);
    }

    #[test]
    fn env_port_beats_the_annotation_and_the_default_is_8080() {
        let root = rootfs_with(&["/a.wasm"]);
        let with = |env: &str, annotations: &str| {
            let spec = spec(&format!(
                r#"{{"process":{{"args":["/a.wasm"],"env":[{env}]}},"annotations":{{{annotations}}}}}"#
            ));
            plan(&spec, spec.process.as_ref().unwrap(), root.path()).map(|p| p.http_port)
        };
        assert_eq!(with("", "").unwrap(), 8080);
        let annotation = r#""bramble.dev/http-port":"9""#;
        assert_eq!(with("", annotation).unwrap(), 9);
        assert_eq!(with(r#""PORT=3000""#, annotation).unwrap(), 3000);
        assert!(with(r#""PORT=http""#, "").is_err());
        assert!(with(r#""PORT=0""#, "").is_err());
    }

    #[test]
    fn no_limits_when_the_spec_sets_none() {
        let root = rootfs_with(&["/a.wasm"]);
        let spec = spec(
            r#"{"process":{"args":["/a.wasm"]},
                "linux":{"resources":{"memory":{"limit":-1},"cpu":{"quota":-1,"period":100000}}}}"#,
        );
        let plan = plan(&spec, spec.process.as_ref().unwrap(), root.path()).unwrap();
        assert_eq!(plan.limits, Limits::default());
        assert!(!plan.preopens[0].read_only);
    }

    #[test]
    fn bad_processes_are_refused_with_the_reason() {
        let root = rootfs_with(&["/a.wasm", "/dir/x"]);
        std::os::unix::fs::symlink("/etc/passwd", root.path().join("escape.wasm")).unwrap();
        let refuse = |args: &str, env: &str, terminal: bool| {
            let spec = spec(&format!(
                r#"{{"process":{{"args":[{args}],"env":[{env}],"terminal":{terminal}}}}}"#
            ));
            plan(&spec, spec.process.as_ref().unwrap(), root.path())
                .unwrap_err()
                .to_string()
        };
        assert!(refuse("", "", false).contains("args is empty"));
        assert!(refuse(r#""a.wasm""#, "", false).contains("absolute"));
        assert!(refuse(r#""/../a.wasm""#, "", false).contains("'..'"));
        assert!(refuse(r#""/missing.wasm""#, "", false).contains("missing.wasm"));
        assert!(refuse(r#""/escape.wasm""#, "", false).contains("leads out"));
        assert!(refuse(r#""/dir""#, "", false).contains("regular file"));
        assert!(refuse(r#""/a.wasm""#, r#""NOVALUE""#, false).contains("NAME=value"));
        assert!(refuse(r#""/a.wasm""#, "", true).contains("terminal"));
    }

    #[test]
    fn the_group_is_the_sandbox_then_the_runc_group() {
        let sandbox = spec(
            r#"{"annotations":{"io.kubernetes.cri.sandbox-id":"pod1","io.containerd.runc.v2.group":"g"}}"#,
        );
        assert_eq!(sandbox.group(), Some("pod1"));
        assert_eq!(
            spec(r#"{"annotations":{"io.containerd.runc.v2.group":"g"}}"#).group(),
            Some("g")
        );
        assert_eq!(spec("{}").group(), None);
        assert!(!sandbox.is_pod_sandbox());
        let pause = spec(r#"{"annotations":{"io.kubernetes.cri.container-type":"sandbox"}}"#);
        assert!(pause.is_pod_sandbox());
        assert_eq!(
            spec(r#"{"root":{"path":"/abs"}}"#).root_path(Path::new("/b")),
            Path::new("/abs")
        );
        assert_eq!(
            spec("{}").root_path(Path::new("/b")),
            Path::new("/b/rootfs")
        );
    }
}
