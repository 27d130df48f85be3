//! Running CNI plugins as the spec's runtime does: the operation in `CNI_*` environment
//! variables, the network configuration on stdin, the result or error as JSON on stdout.
//!
//! Blocking: callers run this on a blocking thread, never on the async executor.

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

use super::config;
use super::result::parse_plugin_error;
use super::{NetworkError, PortMapping};

/// A CNI operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    /// Attach the container to the network.
    Add,
    /// Detach it; must succeed when already detached.
    Del,
}

impl Op {
    /// The value of `CNI_COMMAND`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Op::Add => "ADD",
            Op::Del => "DEL",
        }
    }
}

/// Who is being attached, and where the plugins are.
#[derive(Debug, Clone)]
pub(crate) struct Runtime<'a> {
    /// Directories searched for plugin executables, in order.
    pub plugin_dirs: &'a [PathBuf],
    /// The pod's uid: the CNI container id.
    pub pod_uid: &'a str,
    /// The pod's namespace, passed in `CNI_ARGS` for plugins that look at it.
    pub pod_namespace: &'a str,
    /// The pod's name, likewise.
    pub pod_name: &'a str,
    /// The network namespace file; `None` on DEL when it is already gone (the spec allows it).
    pub netns: Option<&'a Path>,
}

/// The path of plugin `name` in the first directory that has it.
pub(crate) fn find_plugin(dirs: &[PathBuf], name: &str) -> Result<PathBuf, NetworkError> {
    dirs.iter()
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
        .ok_or_else(|| NetworkError::PluginMissing {
            plugin: name.to_string(),
            dirs: dirs.to_vec(),
        })
}

/// `CNI_ARGS` for a pod, as kubelet's CRI runtimes pass them. `IgnoreUnknown` because plugins
/// reject arguments they do not know otherwise.
pub(crate) fn cni_args(rt: &Runtime<'_>) -> String {
    format!(
        "IgnoreUnknown=1;K8S_POD_NAMESPACE={};K8S_POD_NAME={};K8S_POD_INFRA_CONTAINER_ID={}",
        rt.pod_namespace, rt.pod_name, rt.pod_uid
    )
}

/// Runs one plugin once; returns its result on ADD (DEL has none).
pub(crate) fn exec(
    rt: &Runtime<'_>,
    op: Op,
    ifname: &str,
    stdin: &Value,
) -> Result<Option<Value>, NetworkError> {
    let plugin = config::plugin_type(stdin).to_string();
    let path = find_plugin(rt.plugin_dirs, &plugin)?;
    let spawn_err = |source| NetworkError::PluginSpawn {
        pod: rt.pod_uid.to_string(),
        plugin: plugin.clone(),
        command: op.as_str(),
        source,
    };
    let cni_path = std::env::join_paths(rt.plugin_dirs)
        .unwrap_or_else(|_| OsString::from("/usr/lib/cni:/opt/cni/bin"));
    let netns = rt.netns.map(Path::as_os_str).unwrap_or_default();
    let mut child = Command::new(&path)
        .env("CNI_COMMAND", op.as_str())
        .env("CNI_CONTAINERID", rt.pod_uid)
        .env("CNI_NETNS", netns)
        .env("CNI_IFNAME", ifname)
        .env("CNI_ARGS", cni_args(rt))
        .env("CNI_PATH", cni_path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn_err)?;
    let input = serde_json::to_vec(stdin).map_err(|e| spawn_err(std::io::Error::other(e)))?;
    if let Some(mut pipe) = child.stdin.take() {
        // A plugin that exits without reading stdin closes the pipe; its exit status tells why.
        let _ = pipe.write_all(&input);
    }
    let output = child.wait_with_output().map_err(spawn_err)?;
    if !output.status.success() {
        return Err(match parse_plugin_error(&output.stdout) {
            Some(err) => NetworkError::Plugin {
                pod: rt.pod_uid.to_string(),
                plugin,
                command: op.as_str(),
                code: err.code,
                msg: err.msg,
                details: err.details,
            },
            None => NetworkError::PluginCrashed {
                pod: rt.pod_uid.to_string(),
                plugin,
                command: op.as_str(),
                status: output.status.to_string(),
                output: format!(
                    "{} {}",
                    String::from_utf8_lossy(&output.stdout).trim(),
                    String::from_utf8_lossy(&output.stderr).trim()
                )
                .trim()
                .to_string(),
            },
        });
    }
    if op == Op::Del {
        return Ok(None);
    }
    let result: Value =
        serde_json::from_slice(&output.stdout).map_err(|e| NetworkError::BadResult {
            pod: rt.pod_uid.to_string(),
            plugin: plugin.clone(),
            reason: format!("not JSON ({e})"),
        })?;
    if !result.is_object() {
        return Err(NetworkError::BadResult {
            pod: rt.pod_uid.to_string(),
            plugin,
            reason: "not a JSON object".to_string(),
        });
    }
    Ok(Some(result))
}

/// ADD through the chain of `list`, each plugin given the previous one's result, as libcni's
/// `AddNetworkList` does; returns the last result.
pub(crate) fn add_list(
    rt: &Runtime<'_>,
    list: &Value,
    ifname: &str,
    ports: &[PortMapping],
) -> Result<Value, NetworkError> {
    let mut prev: Option<Value> = None;
    for plugin in config::plugins(list) {
        let stdin = config::plugin_stdin(list, plugin, prev.as_ref(), ports);
        prev = exec(rt, Op::Add, ifname, &stdin)?;
    }
    prev.ok_or_else(|| NetworkError::BadResult {
        pod: rt.pod_uid.to_string(),
        plugin: list
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        reason: "the configuration list has no plugins".to_string(),
    })
}

/// DEL through the chain of `list` in reverse, each plugin given the cached final result of the
/// ADD (if there is one), as libcni's `DelNetworkList` does. Stops at the first failure so a
/// retry repeats the whole teardown (DEL is idempotent per the spec).
pub(crate) fn del_list(
    rt: &Runtime<'_>,
    list: &Value,
    ifname: &str,
    ports: &[PortMapping],
    cached: Option<&Value>,
) -> Result<(), NetworkError> {
    for plugin in config::plugins(list).iter().rev() {
        let stdin = config::plugin_stdin(list, plugin, cached, ports);
        exec(rt, Op::Del, ifname, &stdin)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_plugin_names_the_plugin_and_the_package() {
        let dirs = vec![PathBuf::from("/nonexistent/cni")];
        let err = find_plugin(&dirs, "bridge").unwrap_err().to_string();
        assert!(err.contains("\"bridge\""), "{err}");
        assert!(err.contains("/nonexistent/cni"), "{err}");
        assert!(
            err.contains("apt-get install -y containernetworking-plugins"),
            "{err}"
        );
    }

    #[test]
    fn cni_args_carry_the_pod_identity_and_ignore_unknown() {
        let rt = Runtime {
            plugin_dirs: &[],
            pod_uid: "4c1d",
            pod_namespace: "default",
            pod_name: "web-0",
            netns: None,
        };
        assert_eq!(
            cni_args(&rt),
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;K8S_POD_INFRA_CONTAINER_ID=4c1d"
        );
    }

    #[test]
    fn a_plugin_error_is_parsed_and_a_crash_keeps_its_output() {
        let dir = tempfile::tempdir().unwrap();
        let script = |name: &str, body: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, format!("#!/bin/sh\ncat >/dev/null\n{body}\n")).unwrap();
            let mut perms = std::fs::metadata(&path).unwrap().permissions();
            std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
            std::fs::set_permissions(&path, perms).unwrap();
        };
        script(
            "failing",
            r#"echo '{"cniVersion":"1.0.0","code":7,"msg":"invalid config","details":"no bridge"}'; exit 1"#,
        );
        script("crashing", "echo 'panic: boom' >&2; exit 2");
        script(
            "env",
            r#"printf '{"cmd":"%s","id":"%s","args":"%s"}' "$CNI_COMMAND" "$CNI_CONTAINERID" "$CNI_IFNAME""#,
        );
        let dirs = vec![dir.path().to_path_buf()];
        let rt = Runtime {
            plugin_dirs: &dirs,
            pod_uid: "pod-a",
            pod_namespace: "default",
            pod_name: "a",
            netns: None,
        };
        let stdin = |ty: &str| serde_json::json!({ "type": ty, "cniVersion": "1.0.0" });

        let err = exec(&rt, Op::Add, "eth0", &stdin("failing")).unwrap_err();
        assert!(
            matches!(err, NetworkError::Plugin { code: 7, .. }),
            "{err:?}"
        );
        let text = err.to_string();
        assert!(
            text.contains("pod-a")
                && text.contains("failing")
                && text.contains("invalid config")
                && text.contains("no bridge"),
            "{text}"
        );

        let err = exec(&rt, Op::Add, "eth0", &stdin("crashing"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("panic: boom") && err.contains("crashing"),
            "{err}"
        );

        let out = exec(&rt, Op::Add, "eth0", &stdin("env")).unwrap().unwrap();
        assert_eq!(
            out,
            serde_json::json!({ "cmd": "ADD", "id": "pod-a", "args": "eth0" })
        );
        assert!(exec(&rt, Op::Del, "eth0", &stdin("env")).unwrap().is_none());
    }
}
