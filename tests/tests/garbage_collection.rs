//! Cascading deletes by ownerReferences: background, orphan and foreground.

use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Result};
use bramble_tests::Cluster;

fn owned(c: &Cluster, owner: &str, dependents: &[&str]) -> Result<String> {
    c.kubectl_ok(&["create", "configmap", owner, "--from-literal=role=owner"])?;
    let uid = c.get_json(&["cm", owner])?["metadata"]["uid"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    for d in dependents {
        let doc = format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {d}\n  ownerReferences:\n  - apiVersion: v1\n    kind: ConfigMap\n    name: {owner}\n    uid: {uid}\n    blockOwnerDeletion: true\ndata:\n  role: dependent\n"
        );
        c.kubectl_stdin(&["apply", "-f", "-"], &doc)?;
    }
    Ok(uid)
}

fn wait_gone(c: &Cluster, name: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if !c.kubectl(&["get", "cm", name])?.status.success() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("configmap {name} still exists")
}

#[test]
fn background_orphan_and_foreground_deletes() -> Result<()> {
    let c = Cluster::start()?;
    owned(&c, "bg", &["bg-1", "bg-2"])?;
    c.kubectl_ok(&["delete", "cm", "bg"])?;
    wait_gone(&c, "bg-1")?;
    wait_gone(&c, "bg-2")?;

    owned(&c, "orph", &["orph-1"])?;
    c.kubectl_ok(&["delete", "cm", "orph", "--cascade=orphan"])?;
    wait_gone(&c, "orph")?;
    let kept = c.get_json(&["cm", "orph-1"])?;
    ensure!(
        kept["metadata"]
            .get("ownerReferences")
            .is_none_or(|r| r.as_array().is_some_and(Vec::is_empty)),
        "orphaned dependent keeps no owner: {kept}"
    );

    owned(&c, "fg", &["fg-1", "fg-2"])?;
    c.kubectl_ok(&["delete", "cm", "fg", "--cascade=foreground"])?;
    wait_gone(&c, "fg")?;
    wait_gone(&c, "fg-1")?;
    wait_gone(&c, "fg-2")?;

    // A dependent created for an owner that no longer exists is collected too.
    c.kubectl_stdin(&["apply", "-f", "-"], "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: dangling\n  ownerReferences:\n  - apiVersion: v1\n    kind: ConfigMap\n    name: ghost\n    uid: 00000000-0000-0000-0000-000000000000\n")?;
    wait_gone(&c, "dangling")?;
    ensure!(c.kubectl_ok(&["get", "cm", "orph-1", "-o", "name"])?.trim() == "configmap/orph-1");
    Ok(())
}
