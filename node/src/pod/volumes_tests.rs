use std::collections::BTreeMap;
use std::fs;

use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use serde_json::json;

use super::*;

struct Fixture {
    pod: Pod,
    configmaps: BTreeMap<String, ConfigMap>,
    secrets: BTreeMap<String, Secret>,
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new(volumes: serde_json::Value) -> Self {
        let pod = serde_json::from_value(json!({
            "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c", "image": "i"}], "volumes": volumes}
        }))
        .unwrap_or_default();
        let cfg = serde_json::from_value(json!({
            "metadata": {"name": "cfg"},
            "data": {"app.conf": "port=80", "extra": "x"},
            "binaryData": {"logo.bin": "AAEC"}
        }))
        .unwrap_or_default();
        let secret = serde_json::from_value(json!({
            "metadata": {"name": "creds"},
            "data": {"token": "czNjcjN0"}
        }))
        .unwrap_or_default();
        Self {
            pod,
            configmaps: BTreeMap::from([("cfg".to_owned(), cfg)]),
            secrets: BTreeMap::from([("creds".to_owned(), secret)]),
            dir: tempfile::tempdir().unwrap_or_else(|e| panic!("{e}")),
        }
    }

    fn prepare(&self) -> Result<PodVolumes, SpecError> {
        prepare_volumes(&PodEnv {
            pod: &self.pod,
            configmaps: &self.configmaps,
            secrets: &self.secrets,
            pod_ip: "10.0.0.2",
            node_name: "n",
            pod_dir: self.dir.path(),
        })
    }

    fn volume(&self, name: &str) -> PathBuf {
        self.dir.path().join("volumes").join(name)
    }
}

fn read(path: PathBuf) -> Vec<u8> {
    fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn configmap_and_secret_keys_become_read_only_files() {
    let fixture = Fixture::new(json!([
        {"name": "conf", "configMap": {"name": "cfg"}},
        {"name": "token", "secret": {"secretName": "creds"}}
    ]));
    let volumes = fixture.prepare().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(read(fixture.volume("conf").join("app.conf")), b"port=80");
    assert_eq!(read(fixture.volume("conf").join("logo.bin")), [0, 1, 2]);
    assert_eq!(read(fixture.volume("token").join("token")), b"s3cr3t");
    assert!(volumes.get("conf").is_some_and(|v| v.read_only));
    assert!(volumes.get("token").is_some_and(|v| v.read_only));
}

#[test]
fn items_select_keys_and_name_the_files() {
    let fixture = Fixture::new(json!([{"name": "conf", "configMap": {
        "name": "cfg", "items": [{"key": "app.conf", "path": "etc/app/main.conf", "mode": 256}]
    }}]));
    fixture.prepare().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(names(&fixture.volume("conf")), ["etc"]);
    assert_eq!(
        read(fixture.volume("conf").join("etc/app/main.conf")),
        b"port=80"
    );

    let missing = Fixture::new(json!([{"name": "conf", "configMap": {
        "name": "cfg", "items": [{"key": "nope", "path": "x"}]
    }}]));
    let message = missing
        .prepare()
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert_eq!(
        message,
        r#"volume "conf": key "nope" listed in items is not in configmap "cfg""#
    );

    let escaping = Fixture::new(json!([{"name": "conf", "configMap": {
        "name": "cfg", "items": [{"key": "extra", "path": "../x"}]
    }}]));
    assert!(escaping.prepare().is_err());
    assert!(!escaping.dir.path().join("volumes/x").exists());
}

#[test]
fn a_refresh_rewrites_changed_keys_and_removes_gone_ones() {
    let mut fixture = Fixture::new(json!([{"name": "conf", "configMap": {"name": "cfg"}}]));
    fixture.prepare().unwrap_or_else(|e| panic!("{e}"));
    let updated = serde_json::from_value(json!({
        "metadata": {"name": "cfg"}, "data": {"app.conf": "port=8080"}
    }))
    .unwrap_or_default();
    fixture.configmaps.insert("cfg".into(), updated);
    fixture.prepare().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(names(&fixture.volume("conf")), ["app.conf"]);
    assert_eq!(read(fixture.volume("conf").join("app.conf")), b"port=8080");
}

#[test]
fn missing_objects_fail_unless_optional() {
    let required = Fixture::new(json!([{"name": "conf", "configMap": {"name": "absent"}}]));
    let message = required
        .prepare()
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert_eq!(message, r#"volume "conf": configmap "absent" not found"#);
    let secret = Fixture::new(json!([{"name": "s", "secret": {"secretName": "absent"}}]));
    assert!(secret.prepare().is_err());
    let optional = Fixture::new(json!([
        {"name": "conf", "configMap": {"name": "absent", "optional": true}},
        {"name": "s", "secret": {"secretName": "absent", "optional": true}}
    ]));
    optional.prepare().unwrap_or_else(|e| panic!("{e}"));
    assert!(names(&optional.volume("conf")).is_empty());
}

#[test]
fn empty_dirs_keep_their_content_across_preparations() {
    let fixture = Fixture::new(json!([{"name": "scratch", "emptyDir": {"medium": ""}}]));
    let volumes = fixture.prepare().unwrap_or_else(|e| panic!("{e}"));
    assert!(volumes.get("scratch").is_some_and(|v| !v.read_only));
    fs::write(fixture.volume("scratch").join("state"), "1").unwrap_or_else(|e| panic!("{e}"));
    fixture.prepare().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(read(fixture.volume("scratch").join("state")), b"1");
}

#[test]
fn host_paths_honour_their_type() {
    let host = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let created = host.path().join("made/here");
    let fixture = Fixture::new(json!([
        {"name": "a", "hostPath": {"path": host.path(), "type": "Directory"}},
        {"name": "b", "hostPath": {"path": created, "type": "DirectoryOrCreate"}},
        {"name": "c", "hostPath": {"path": host.path()}}
    ]));
    let volumes = fixture.prepare().unwrap_or_else(|e| panic!("{e}"));
    assert!(created.is_dir());
    assert_eq!(
        volumes.get("a").map(|v| v.host.clone()),
        Some(host.path().to_path_buf())
    );
    assert_eq!(volumes.iter().count(), 3);

    let missing = host.path().join("absent");
    let directory =
        Fixture::new(json!([{"name": "a", "hostPath": {"path": missing, "type": "Directory"}}]));
    let message = directory
        .prepare()
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(message.contains("not an existing directory"), "{message}");
    let file =
        Fixture::new(json!([{"name": "a", "hostPath": {"path": "/etc/hosts", "type": "File"}}]));
    let message = file
        .prepare()
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        message.contains(r#"hostPath type "File" is not supported"#),
        "{message}"
    );
}

#[test]
fn other_volume_types_are_named_in_the_error() {
    let fixture = Fixture::new(json!([
        {"name": "data", "persistentVolumeClaim": {"claimName": "pvc-1"}}
    ]));
    let message = fixture
        .prepare()
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert_eq!(
        message,
        r#"volume "data": volume type persistentVolumeClaim is not supported; use emptyDir, configMap, secret or hostPath"#
    );
}
