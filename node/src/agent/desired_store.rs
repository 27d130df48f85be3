//! The desired pods on the node's disk, so pods keep running across agent restarts while the
//! control plane is unreachable. One file per pod plus the revision: a change rewrites only
//! what changed (SD cards), and each write is atomic.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// A desired pod as stored: the pod and what it references, as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredPod {
    /// The pod's uid.
    pub uid: String,
    /// The core/v1 Pod.
    pub pod: serde_json::Value,
    /// Referenced ConfigMaps by name.
    pub config_maps: BTreeMap<String, serde_json::Value>,
    /// Referenced Secrets by name.
    pub secrets: BTreeMap<String, serde_json::Value>,
    /// The handler of the pod's RuntimeClass; empty when it names none.
    #[serde(default)]
    pub runtime_handler: String,
}

/// The directory of desired state.
pub struct DesiredStore {
    dir: PathBuf,
}

impl DesiredStore {
    /// Opens (creating) `dir`.
    pub fn open(dir: &Path) -> std::io::Result<DesiredStore> {
        std::fs::create_dir_all(dir.join("pods"))?;
        Ok(DesiredStore {
            dir: dir.to_path_buf(),
        })
    }

    /// The revision and pods last stored; unreadable pod files are skipped with a warning.
    pub fn load(&self) -> (u64, Vec<StoredPod>) {
        let revision = std::fs::read_to_string(self.dir.join("revision"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        let mut pods = Vec::new();
        if let Ok(entries) = std::fs::read_dir(self.dir.join("pods")) {
            for entry in entries.flatten() {
                let path = entry.path();
                if path.extension().and_then(|e| e.to_str()) != Some("json") {
                    continue;
                }
                match std::fs::read(&path)
                    .map_err(|e| e.to_string())
                    .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
                {
                    Ok(pod) => pods.push(pod),
                    Err(e) => {
                        tracing::warn!(path = %path.display(), error = %e, "skipping an unreadable desired pod")
                    }
                }
            }
        }
        (revision, pods)
    }

    fn pod_path(&self, uid: &str) -> PathBuf {
        // uids come from the control plane; keep only safe characters in file names.
        let safe: String = uid
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect();
        self.dir.join("pods").join(format!("{safe}.json"))
    }

    /// Stores one pod.
    pub fn put(&self, pod: &StoredPod) -> std::io::Result<()> {
        let bytes = serde_json::to_vec(pod).map_err(std::io::Error::other)?;
        crate::durable::write_atomic(&self.pod_path(&pod.uid), &bytes, 0o600)
    }

    /// Forgets one pod.
    pub fn remove(&self, uid: &str) -> std::io::Result<()> {
        match std::fs::remove_file(self.pod_path(uid)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Stores the revision the pods are at.
    pub fn set_revision(&self, revision: u64) -> std::io::Result<()> {
        crate::durable::write_atomic(
            &self.dir.join("revision"),
            revision.to_string().as_bytes(),
            0o600,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pods_and_revision_survive_a_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = DesiredStore::open(dir.path()).expect("open");
        let pod = StoredPod {
            uid: "u-1".into(),
            pod: serde_json::json!({"metadata": {"name": "p"}}),
            config_maps: BTreeMap::new(),
            secrets: BTreeMap::new(),
            runtime_handler: String::new(),
        };
        store.put(&pod).expect("put");
        store.set_revision(42).expect("rev");
        let reopened = DesiredStore::open(dir.path()).expect("open");
        assert_eq!(reopened.load(), (42, vec![pod]));
        reopened.remove("u-1").expect("remove");
        reopened.remove("u-1").expect("removing twice is fine");
        assert_eq!(reopened.load(), (42, vec![]));
    }
}
