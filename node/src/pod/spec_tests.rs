use std::collections::BTreeMap;
use std::path::Path;

use bramble_wasm_shim::sockets::SocketAction;
use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret};
use serde_json::json;

use super::*;
use crate::pod::volumes::prepare_volumes;

fn from<T: k8s_openapi::serde::de::DeserializeOwned + Default>(value: serde_json::Value) -> T {
    serde_json::from_value(value).unwrap_or_default()
}

fn pod(containers: serde_json::Value, volumes: serde_json::Value) -> Pod {
    from(json!({
        "metadata": {
            "name": "web-1", "namespace": "shop", "uid": "u-42",
            "labels": {"app": "web"}, "annotations": {"team": "pi"}
        },
        "spec": {"containers": containers, "volumes": volumes, "serviceAccountName": "sa"}
    }))
}

fn objects() -> (BTreeMap<String, ConfigMap>, BTreeMap<String, Secret>) {
    let cfg: ConfigMap = from(json!({
        "metadata": {"name": "cfg"},
        "data": {"MODE": "fast", "LEVEL": "3", "bad=key": "x"},
        "binaryData": {"blob.bin": "AAEC"}
    }));
    let secret: Secret = from(json!({
        "metadata": {"name": "creds"},
        "data": {"PASSWORD": "aHVudGVyMg=="}
    }));
    (
        BTreeMap::from([("cfg".to_owned(), cfg)]),
        BTreeMap::from([("creds".to_owned(), secret)]),
    )
}

struct Fixture {
    pod: Pod,
    configmaps: BTreeMap<String, ConfigMap>,
    secrets: BTreeMap<String, Secret>,
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new(containers: serde_json::Value, volumes: serde_json::Value) -> Self {
        let (configmaps, secrets) = objects();
        let dir = tempfile::tempdir().unwrap_or_else(|err| panic!("tempdir: {err}"));
        Self {
            pod: pod(containers, volumes),
            configmaps,
            secrets,
            dir,
        }
    }

    fn env(&self) -> PodEnv<'_> {
        PodEnv {
            pod: &self.pod,
            configmaps: &self.configmaps,
            secrets: &self.secrets,
            pod_ip: "10.42.0.7",
            node_name: "pi-3",
            pod_dir: self.dir.path(),
        }
    }

    fn container(&self, index: usize) -> Container {
        self.pod
            .spec
            .as_ref()
            .and_then(|spec| spec.containers.get(index).cloned())
            .unwrap_or_default()
    }

    fn sandbox(&self) -> Result<SandboxSpec, SpecError> {
        let env = self.env();
        let volumes = prepare_volumes(&env)?;
        container_sandbox(&env, &self.container(0), &volumes)
    }
}

fn ok(result: Result<SandboxSpec, SpecError>) -> SandboxSpec {
    result.unwrap_or_else(|err| panic!("{err}"))
}

fn env_of(spec: &SandboxSpec) -> BTreeMap<&str, &str> {
    spec.env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

#[test]
fn argv_is_command_and_args_with_references_expanded() {
    let fixture = Fixture::new(
        json!([{
            "name": "app", "image": "i",
            "command": ["server.wasm", "--mode=$(MODE)"],
            "args": ["$(NAME)", "$$(NAME)", "$(MISSING)"],
            "env": [{"name": "NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
            "envFrom": [{"configMapRef": {"name": "cfg"}}]
        }]),
        json!([]),
    );
    let spec = ok(fixture.sandbox());
    assert_eq!(
        spec.argv,
        [
            "server.wasm",
            "--mode=fast",
            "web-1",
            "$(NAME)",
            "$(MISSING)"
        ]
    );
}

#[test]
fn without_command_the_module_runs_under_the_container_name() {
    let fixture = Fixture::new(json!([{"name": "app", "image": "i"}]), json!([]));
    assert_eq!(ok(fixture.sandbox()).argv, ["app"]);
    let with_args = Fixture::new(
        json!([{"name": "app", "image": "i", "args": ["-v"]}]),
        json!([]),
    );
    assert_eq!(ok(with_args.sandbox()).argv, ["app", "-v"]);
}

#[test]
fn environment_comes_from_values_objects_and_the_downward_api() {
    let field = |path: &str| json!({"fieldRef": {"fieldPath": path}});
    let fixture = Fixture::new(
        json!([{
            "name": "app", "image": "i",
            "envFrom": [
                {"configMapRef": {"name": "cfg"}, "prefix": "CFG_"},
                {"secretRef": {"name": "creds"}},
                {"configMapRef": {"name": "absent", "optional": true}}
            ],
            "env": [
                {"name": "LEVEL", "value": "level-$(CFG_LEVEL)"},
                {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "PASSWORD"}}},
                {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "MODE"}}},
                {"name": "GONE", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "nope", "optional": true}}},
                {"name": "POD", "valueFrom": field("metadata.name")},
                {"name": "NS", "valueFrom": field("metadata.namespace")},
                {"name": "UID", "valueFrom": field("metadata.uid")},
                {"name": "IP", "valueFrom": field("status.podIP")},
                {"name": "NODE", "valueFrom": field("spec.nodeName")},
                {"name": "APP", "valueFrom": field("metadata.labels['app']")},
                {"name": "TEAM", "valueFrom": field("metadata.annotations['team']")},
                {"name": "NOLABEL", "valueFrom": field("metadata.labels['x']")},
                {"name": "EMPTY"}
            ]
        }]),
        json!([]),
    );
    let spec = ok(fixture.sandbox());
    let env = env_of(&spec);
    let expected = [
        ("CFG_MODE", "fast"),
        ("CFG_LEVEL", "3"),
        ("LEVEL", "level-3"),
        ("PASSWORD", "hunter2"),
        ("MODE", "fast"),
        ("POD", "web-1"),
        ("NS", "shop"),
        ("UID", "u-42"),
        ("IP", "10.42.0.7"),
        ("NODE", "pi-3"),
        ("APP", "web"),
        ("TEAM", "pi"),
        ("NOLABEL", ""),
        ("EMPTY", ""),
    ];
    for (name, value) in expected {
        assert_eq!(env.get(name), Some(&value), "{name}");
    }
    assert!(!env.contains_key("GONE"));
    // A key no process can receive is skipped rather than failing the container.
    assert!(!env.keys().any(|k| k.contains('=')));
    assert!(spec.validate().is_ok());
}

#[test]
fn later_definitions_replace_earlier_ones_in_place() {
    let fixture = Fixture::new(
        json!([{
            "name": "app", "image": "i",
            "envFrom": [{"configMapRef": {"name": "cfg"}}],
            "env": [{"name": "MODE", "value": "slow"}, {"name": "X", "value": "1"}]
        }]),
        json!([]),
    );
    let spec = ok(fixture.sandbox());
    let names: Vec<&str> = spec.env.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(names, ["LEVEL", "MODE", "X"]);
    assert_eq!(env_of(&spec).get("MODE"), Some(&"slow"));
}

#[test]
fn missing_references_name_the_container_and_field() {
    let cases = [
        (
            json!({"name": "FOO", "valueFrom": {"configMapKeyRef": {"name": "nope", "key": "k"}}}),
            r#"container "app": env FOO: configmap "nope" not found"#,
        ),
        (
            json!({"name": "FOO", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "k"}}}),
            r#"container "app": env FOO: key "k" not found in configmap "cfg""#,
        ),
        (
            json!({"name": "FOO", "valueFrom": {"secretKeyRef": {"name": "nope", "key": "k"}}}),
            r#"container "app": env FOO: secret "nope" not found"#,
        ),
        (
            json!({"name": "FOO", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}}),
            r#"container "app": env FOO: field path "status.hostIP" is not supported"#,
        ),
        (
            json!({"name": "FOO", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}}),
            r#"container "app": env FOO: resourceFieldRef is not supported"#,
        ),
    ];
    for (var, expected) in cases {
        let fixture = Fixture::new(
            json!([{"name": "app", "image": "i", "env": [var]}]),
            json!([]),
        );
        let message = fixture.sandbox().map(|_| ()).err().map(|e| e.to_string());
        assert!(
            message.as_deref().is_some_and(|m| m.starts_with(expected)),
            "{message:?} does not start with {expected}"
        );
    }
    let env_from = Fixture::new(
        json!([{"name": "app", "image": "i", "envFrom": [{"secretRef": {"name": "nope"}}]}]),
        json!([]),
    );
    let message = env_from.sandbox().map(|_| ()).err().map(|e| e.to_string());
    assert_eq!(
        message.as_deref(),
        Some(r#"container "app": envFrom[0]: secret "nope" not found"#)
    );
}

#[test]
fn limits_map_to_memory_bytes_and_millicores() {
    let fixture = Fixture::new(
        json!([{"name": "app", "image": "i", "resources": {
            "limits": {"memory": "64Mi", "cpu": "250m"},
            "requests": {"memory": "1Gi"}
        }}]),
        json!([]),
    );
    let spec = ok(fixture.sandbox());
    assert_eq!(spec.limits.memory_bytes, Some(64 << 20));
    assert_eq!(spec.limits.cpu_millicores, Some(250));
    let fractional = Fixture::new(
        json!([{"name": "app", "image": "i", "resources": {"limits": {"cpu": "1.5", "memory": "0"}}}]),
        json!([]),
    );
    let spec = ok(fractional.sandbox());
    assert_eq!(spec.limits.cpu_millicores, Some(1500));
    assert_eq!(spec.limits.memory_bytes, None);
    let none = ok(Fixture::new(json!([{"name": "app", "image": "i"}]), json!([])).sandbox());
    assert_eq!(
        (none.limits.memory_bytes, none.limits.cpu_millicores),
        (None, None)
    );
    let bad = Fixture::new(
        json!([{"name": "app", "image": "i", "resources": {"limits": {"memory": "lots"}}}]),
        json!([]),
    );
    let message = bad
        .sandbox()
        .map(|_| ())
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        message.starts_with(r#"container "app": resources.limits.memory: invalid quantity"#),
        "{message}"
    );
}

#[test]
fn declared_ports_may_be_listened_on_and_anything_called() {
    let fixture = Fixture::new(
        json!([{"name": "app", "image": "i", "ports": [
            {"containerPort": 8080, "name": "http"},
            {"containerPort": 5353, "protocol": "UDP"}
        ]}]),
        json!([]),
    );
    let spec = ok(fixture.sandbox());
    let policy = &spec.sockets;
    assert!(policy.name_lookup);
    let listen: Vec<_> = policy
        .rules
        .iter()
        .filter(|r| r.action == SocketAction::Listen)
        .collect();
    assert_eq!(listen.len(), 2);
    assert!(listen.iter().all(|r| r.ports == (8080..=8080)));
    let connect = policy
        .rules
        .iter()
        .filter(|r| r.action == SocketAction::Connect);
    assert_eq!(connect.filter(|r| r.ports == (0..=u16::MAX)).count(), 2);
    assert!(policy.rules.iter().any(|r| r.action == SocketAction::Udp));
    let tcp_only = ok(Fixture::new(
        json!([{"name": "app", "image": "i", "ports": [{"containerPort": 80}]}]),
        json!([]),
    )
    .sandbox());
    assert!(!tcp_only
        .sockets
        .rules
        .iter()
        .any(|r| r.action == SocketAction::Udp));
    let sctp = Fixture::new(
        json!([{"name": "app", "image": "i", "ports": [{"containerPort": 9, "protocol": "SCTP"}]}]),
        json!([]),
    );
    assert!(sctp.sandbox().is_err());
}

#[test]
fn mounts_become_preopens_with_read_only_and_sub_paths() {
    let fixture = Fixture::new(
        json!([{"name": "app", "image": "i", "volumeMounts": [
            {"name": "cache", "mountPath": "/cache/"},
            {"name": "cache", "mountPath": "/logs", "subPath": "logs/$(POD)", "readOnly": true},
            {"name": "cache", "mountPath": "/pod", "subPathExpr": "by-pod/$(POD)"},
            {"name": "config", "mountPath": "/etc/app"}
        ], "env": [{"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]}]),
        json!([{"name": "cache", "emptyDir": {}}, {"name": "config", "configMap": {"name": "cfg"}}]),
    );
    let spec = ok(fixture.sandbox());
    let volumes = fixture.dir.path().join("volumes");
    let canonical = |p: &Path| p.canonicalize().unwrap_or_else(|e| panic!("{e}"));
    let got: Vec<(&str, bool)> = spec
        .preopens
        .iter()
        .map(|p| (p.guest.as_str(), p.read_only))
        .collect();
    assert_eq!(
        got,
        [
            ("/cache", false),
            ("/logs", true),
            ("/pod", false),
            ("/etc/app", true)
        ]
    );
    assert_eq!(spec.preopens[0].host, volumes.join("cache"));
    // subPath is not expanded (only subPathExpr is), and missing subPaths are created.
    assert_eq!(
        spec.preopens[1].host,
        canonical(&volumes.join("cache/logs/$(POD)"))
    );
    assert_eq!(
        spec.preopens[2].host,
        canonical(&volumes.join("cache/by-pod/web-1"))
    );
    assert!(spec.validate().is_ok());
}

#[test]
fn bad_mounts_are_refused_with_the_field() {
    let volume = json!([{"name": "cache", "emptyDir": {}}]);
    let cases = [
        (
            json!({"name": "cache", "mountPath": "data"}),
            "must be absolute",
        ),
        (
            json!({"name": "other", "mountPath": "/data"}),
            "not declared in spec.volumes",
        ),
        (
            json!({"name": "cache", "mountPath": "/data", "subPath": "../x"}),
            "inside the volume",
        ),
        (
            json!({"name": "cache", "mountPath": "/data", "subPath": "/etc"}),
            "inside the volume",
        ),
    ];
    for (mount, expected) in cases {
        let fixture = Fixture::new(
            json!([{"name": "app", "image": "i", "volumeMounts": [mount]}]),
            volume.clone(),
        );
        let message = fixture
            .sandbox()
            .map(|_| ())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            message.starts_with(r#"container "app": volumeMounts[0]"#)
                && message.contains(expected),
            "{message}"
        );
    }
}

#[cfg(unix)]
#[test]
fn a_sub_path_cannot_leave_its_volume_through_a_symlink() {
    let fixture = Fixture::new(
        json!([{"name": "app", "image": "i", "volumeMounts": [
            {"name": "cache", "mountPath": "/data", "subPath": "link"}
        ]}]),
        json!([{"name": "cache", "emptyDir": {}}]),
    );
    let cache = fixture.dir.path().join("volumes/cache");
    std::fs::create_dir_all(&cache).unwrap_or_else(|e| panic!("{e}"));
    std::os::unix::fs::symlink("/", cache.join("link")).unwrap_or_else(|e| panic!("{e}"));
    let message = fixture
        .sandbox()
        .map(|_| ())
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(message.contains("inside the volume"), "{message}");
}
