use std::path::PathBuf;

use super::spec::{resolve_user, runtime_spec, EtcFiles};
use super::*;

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn etc() -> EtcFiles {
    EtcFiles {
        hosts: PathBuf::from("/s/c/hosts"),
        hostname: PathBuf::from("/s/c/hostname"),
        resolv_conf: PathBuf::from("/s/c/resolv.conf"),
    }
}

#[test]
fn args_follow_the_kubelet_rules() {
    let image = ImageConfig {
        entrypoint: strings(&["/entry"]),
        cmd: strings(&["--default"]),
        ..Default::default()
    };
    assert_eq!(
        container_args(&[], &[], &image),
        strings(&["/entry", "--default"])
    );
    assert_eq!(
        container_args(&[], &strings(&["--mine"]), &image),
        strings(&["/entry", "--mine"])
    );
    assert_eq!(
        container_args(&strings(&["sh", "-c"]), &[], &image),
        strings(&["sh", "-c"]),
        "a command drops the image's Cmd too"
    );
    assert_eq!(
        container_args(&strings(&["sh", "-c"]), &strings(&["exit 3"]), &image),
        strings(&["sh", "-c", "exit 3"])
    );
}

#[test]
fn pod_env_overrides_image_env_in_place() {
    let image = strings(&["PATH=/bin", "A=1", "EMPTY"]);
    let pod = vec![
        ("A".to_string(), "2".to_string()),
        ("B".to_string(), "3".to_string()),
    ];
    let env = merge_env(&image, &pod);
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(
        pairs,
        vec![("PATH", "/bin"), ("A", "2"), ("EMPTY", ""), ("B", "3")]
    );
    let defaulted = merge_env(&[], &[]);
    assert_eq!(defaulted[0].0, "PATH");
}

#[test]
fn spec_carries_limits_namespaces_and_mounts() {
    let spec = LaunchSpec {
        id: "pod-a-web".into(),
        args: strings(&["sleep", "10"]),
        env: vec![("A".into(), "1".into())],
        memory_limit: Some(16 << 20),
        cpu_millis_limit: Some(250),
        cpu_shares: Some(256),
        netns: Some(PathBuf::from("/run/netns/x")),
        hostname: "web".into(),
        read_only_root: true,
        supplemental_groups: vec![5],
        mounts: vec![BindMount {
            host: PathBuf::from("/data"),
            container: "/data".into(),
            read_only: true,
        }],
        ..Default::default()
    };
    let value = runtime_spec(&spec, (1000, 1000), &etc(), true);
    let memory = &value["linux"]["resources"]["memory"];
    assert_eq!(memory["limit"], 16 << 20);
    assert_eq!(memory["swap"], 16 << 20);
    let cpu = &value["linux"]["resources"]["cpu"];
    assert_eq!(cpu["quota"], 25_000);
    assert_eq!(cpu["period"], 100_000);
    assert_eq!(cpu["shares"], 256);
    assert_eq!(value["linux"]["cgroupsPath"], "/bramble/pod-a-web");
    assert_eq!(value["root"]["readonly"], true);
    assert_eq!(value["process"]["user"]["uid"], 1000);
    assert_eq!(value["process"]["user"]["additionalGids"][0], 5);
    assert_eq!(value["process"]["env"][0], "A=1");
    let namespaces = value["linux"]["namespaces"].as_array().unwrap();
    assert!(namespaces
        .iter()
        .any(|n| n["type"] == "network" && n["path"] == "/run/netns/x"));
    let mounts = value["mounts"].as_array().unwrap();
    let data = mounts.iter().find(|m| m["destination"] == "/data").unwrap();
    assert!(data["options"].as_array().unwrap().contains(&"ro".into()));
    assert!(mounts
        .iter()
        .any(|m| m["destination"] == "/etc/resolv.conf"));
    let without_swap = runtime_spec(&spec, (0, 0), &etc(), false);
    assert!(without_swap["linux"]["resources"]["memory"]
        .get("swap")
        .is_none());
}

#[test]
fn user_comes_from_the_caller_or_a_numeric_image_user() {
    let mut spec = LaunchSpec {
        id: "c".into(),
        ..Default::default()
    };
    assert_eq!(resolve_user(&spec).unwrap(), (0, 0));
    spec.image.config.user = Some("65534:65534".into());
    assert_eq!(resolve_user(&spec).unwrap(), (65534, 65534));
    spec.image.config.user = Some("42".into());
    assert_eq!(resolve_user(&spec).unwrap(), (42, 0));
    spec.image.config.user = Some("nobody".into());
    let err = resolve_user(&spec).unwrap_err();
    assert!(err.to_string().contains("runAsUser"), "{err}");
    spec.user = Some((7, 8));
    assert_eq!(resolve_user(&spec).unwrap(), (7, 8));
}
