//! The Pod's volumes as host directories under `pod_dir/volumes/<name>`: emptyDir, configMap,
//! secret and hostPath. Wasm guests only see preopened directories, so every volume is one.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};

use k8s_openapi::api::core::v1::{KeyToPath, Volume};

use super::spec::{FieldProblem, PodEnv, SpecError};

/// What is wrong with one volume.
#[derive(Debug, thiserror::Error)]
pub enum VolumeProblem {
    /// A volume type this agent cannot provide.
    #[error("volume type {kind} is not supported; use emptyDir, configMap, secret or hostPath")]
    Unsupported {
        /// The type's field name, e.g. `persistentVolumeClaim`.
        kind: String,
    },
    /// The referenced ConfigMap does not exist and the volume is not optional.
    #[error("configmap {name:?} not found")]
    ConfigMapNotFound {
        /// The ConfigMap's name.
        name: String,
    },
    /// The referenced Secret does not exist and the volume is not optional.
    #[error("secret {name:?} not found")]
    SecretNotFound {
        /// The Secret's name.
        name: String,
    },
    /// An `items` entry names a key the object does not have.
    #[error("key {key:?} listed in items is not in {object}")]
    KeyNotFound {
        /// The missing key.
        key: String,
        /// The object, e.g. `configmap "cfg"`.
        object: String,
    },
    /// A file name (a key or an `items` path) would land outside the volume.
    #[error("file path {path:?} must be relative and must not contain '..'")]
    BadFilePath {
        /// The path as given.
        path: String,
    },
    /// A hostPath type this agent cannot offer to Wasm guests or an unknown one.
    #[error("hostPath type {type_:?} is not supported; use \"\", Directory or DirectoryOrCreate")]
    HostPathType {
        /// The type as given.
        type_: String,
    },
    /// A hostPath of type Directory does not exist or is not a directory.
    #[error("hostPath {path:?} is not an existing directory (type Directory)")]
    HostPathMissing {
        /// The host path.
        path: PathBuf,
    },
    /// Writing the volume's directory or files failed.
    #[error("writing {path:?} failed: {source}")]
    Io {
        /// The path being written.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
}

/// One prepared volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedVolume {
    /// The directory the guest is given.
    pub host: PathBuf,
    /// Whether every mount of it is read-only whatever the mount says (configMap and secret
    /// volumes, as in Kubernetes).
    pub read_only: bool,
}

impl PreparedVolume {
    /// The host directory of `sub_path` inside this volume, created if missing as the
    /// kubelet does; refused if it would leave the volume, also through a symlink.
    pub(crate) fn sub_path(&self, sub_path: &str) -> Result<PathBuf, FieldProblem> {
        let escapes = || FieldProblem::SubPathEscapes {
            sub_path: sub_path.to_owned(),
        };
        if !is_plain_relative(sub_path) {
            return Err(escapes());
        }
        let path = self.host.join(sub_path);
        if !path.exists() && !self.read_only {
            fs::create_dir_all(&path).map_err(|source| FieldProblem::SubPathCreate {
                path: path.clone(),
                source,
            })?;
        }
        let root = self.host.canonicalize().map_err(|_| escapes())?;
        let resolved = path
            .canonicalize()
            .map_err(|_| FieldProblem::SubPathNotDirectory {
                sub_path: sub_path.to_owned(),
            })?;
        if !resolved.starts_with(&root) {
            return Err(escapes());
        }
        if !resolved.is_dir() {
            return Err(FieldProblem::SubPathNotDirectory {
                sub_path: sub_path.to_owned(),
            });
        }
        Ok(resolved)
    }
}

/// The Pod's volumes by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodVolumes {
    volumes: BTreeMap<String, PreparedVolume>,
}

impl PodVolumes {
    /// The volume called `name`.
    pub fn get(&self, name: &str) -> Option<&PreparedVolume> {
        self.volumes.get(name)
    }

    /// All volumes by name.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &PreparedVolume)> {
        self.volumes.iter()
    }
}

/// Creates or refreshes the Pod's volume directories. emptyDir contents survive container
/// restarts (the directory is only created); configMap and secret files are rewritten to the
/// object's current content, with files of removed keys deleted.
pub fn prepare_volumes(env: &PodEnv) -> Result<PodVolumes, SpecError> {
    let mut prepared = PodVolumes::default();
    let volumes = env.pod.spec.as_ref().and_then(|spec| spec.volumes.as_ref());
    for volume in volumes.into_iter().flatten() {
        let ready = prepare(env, volume).map_err(|problem| SpecError::Volume {
            volume: volume.name.clone(),
            problem,
        })?;
        prepared.volumes.insert(volume.name.clone(), ready);
    }
    Ok(prepared)
}

fn prepare(env: &PodEnv, volume: &Volume) -> Result<PreparedVolume, VolumeProblem> {
    let dir = env.pod_dir.join("volumes").join(&volume.name);
    let writable = |host: PathBuf| PreparedVolume {
        host,
        read_only: false,
    };
    if volume.empty_dir.is_some() {
        create_dir(&dir)?;
        // World-writable as the kubelet makes it: a container running as any user
        // (securityContext.runAsUser) can write its emptyDir.
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).map_err(|source| {
            VolumeProblem::Io {
                path: dir.clone(),
                source,
            }
        })?;
        return Ok(writable(dir));
    }
    if let Some(source) = &volume.config_map {
        let files = match env.configmaps.get(&source.name) {
            Some(map) => {
                let mut data: BTreeMap<&String, &[u8]> = map
                    .binary_data
                    .iter()
                    .flatten()
                    .map(|(key, value)| (key, value.0.as_slice()))
                    .collect();
                data.extend(map.data.iter().flatten().map(|(k, v)| (k, v.as_bytes())));
                let object = format!("configmap {:?}", source.name);
                select(&data, source.items.as_deref(), source.optional, &object)?
            }
            None if source.optional.unwrap_or(false) => Vec::new(),
            None => {
                let name = source.name.clone();
                return Err(VolumeProblem::ConfigMapNotFound { name });
            }
        };
        write_files(&dir, &files)?;
        return Ok(PreparedVolume {
            host: dir,
            read_only: true,
        });
    }
    if let Some(source) = &volume.secret {
        let name = source.secret_name.clone().unwrap_or_default();
        let files = match env.secrets.get(&name) {
            Some(secret) => {
                let mut data: BTreeMap<&String, &[u8]> = secret
                    .data
                    .iter()
                    .flatten()
                    .map(|(key, value)| (key, value.0.as_slice()))
                    .collect();
                let strings = secret.string_data.iter().flatten();
                data.extend(strings.map(|(k, v)| (k, v.as_bytes())));
                let object = format!("secret {name:?}");
                select(&data, source.items.as_deref(), source.optional, &object)?
            }
            None if source.optional.unwrap_or(false) => Vec::new(),
            None => return Err(VolumeProblem::SecretNotFound { name }),
        };
        write_files(&dir, &files)?;
        return Ok(PreparedVolume {
            host: dir,
            read_only: true,
        });
    }
    if let Some(source) = &volume.host_path {
        let path = PathBuf::from(&source.path);
        match source.type_.as_deref().unwrap_or_default() {
            "" => {}
            "DirectoryOrCreate" => create_dir(&path)?,
            "Directory" if path.is_dir() => {}
            "Directory" => return Err(VolumeProblem::HostPathMissing { path }),
            other => {
                let type_ = other.to_owned();
                return Err(VolumeProblem::HostPathType { type_ });
            }
        }
        return Ok(writable(path));
    }
    Err(VolumeProblem::Unsupported { kind: kind(volume) })
}

/// The name of the volume's source field, e.g. `persistentVolumeClaim`: whatever the JSON
/// form carries besides `name`, so every current and future type is named correctly.
fn kind(volume: &Volume) -> String {
    let json = serde_json::to_value(volume).unwrap_or_default();
    json.as_object()
        .and_then(|fields| fields.keys().find(|key| *key != "name").cloned())
        .unwrap_or_else(|| "(none)".to_owned())
}

/// The files to write: every key, or only `items` (key -> path) when given. A listed key
/// that is missing fails the volume unless it is optional, as in Kubernetes.
fn select(
    data: &BTreeMap<&String, &[u8]>,
    items: Option<&[KeyToPath]>,
    optional: Option<bool>,
    object: &str,
) -> Result<Vec<(String, Vec<u8>)>, VolumeProblem> {
    let Some(items) = items.filter(|items| !items.is_empty()) else {
        return Ok(data
            .iter()
            .map(|(key, value)| ((*key).clone(), value.to_vec()))
            .collect());
    };
    let mut files = Vec::new();
    for item in items {
        match data.get(&item.key) {
            Some(value) => files.push((item.path.clone(), value.to_vec())),
            None if optional.unwrap_or(false) => {}
            None => {
                return Err(VolumeProblem::KeyNotFound {
                    key: item.key.clone(),
                    object: object.to_owned(),
                })
            }
        }
    }
    Ok(files)
}

/// Writes `files` under `dir` (each through a temporary file and a rename, so a reader never
/// sees half a file) and removes the files and directories of keys no longer present.
fn write_files(dir: &Path, files: &[(String, Vec<u8>)]) -> Result<(), VolumeProblem> {
    create_dir(dir)?;
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| VolumeProblem::Io { path, source }
    };
    let mut keep = Vec::new();
    for (name, content) in files {
        if !is_plain_relative(name) {
            let path = name.clone();
            return Err(VolumeProblem::BadFilePath { path });
        }
        let target = dir.join(name);
        if let Some(parent) = target.parent() {
            create_dir(parent)?;
        }
        // Kubernetes refuses keys starting with "..", so this cannot clash with a key.
        let temporary = dir.join(format!("..{}.tmp", keep.len()));
        fs::write(&temporary, content).map_err(io(&temporary))?;
        fs::rename(&temporary, &target).map_err(io(&target))?;
        keep.push(target);
    }
    remove_stale(dir, &keep)
}

fn remove_stale(dir: &Path, keep: &[PathBuf]) -> Result<(), VolumeProblem> {
    let entries = fs::read_dir(dir).map_err(|source| VolumeProblem::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    for entry in entries.flatten() {
        let path = entry.path();
        if keep.iter().any(|kept| kept == &path) {
            continue;
        }
        let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
        if is_dir && keep.iter().any(|kept| kept.starts_with(&path)) {
            remove_stale(&path, keep)?;
            continue;
        }
        let removed = if is_dir {
            fs::remove_dir_all(&path)
        } else {
            fs::remove_file(&path)
        };
        removed.map_err(|source| VolumeProblem::Io { path, source })?;
    }
    Ok(())
}

fn create_dir(path: &Path) -> Result<(), VolumeProblem> {
    fs::create_dir_all(path).map_err(|source| VolumeProblem::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Relative, non-empty, and made only of normal components (no `..`, no root).
fn is_plain_relative(path: &str) -> bool {
    !path.is_empty()
        && Path::new(path)
            .components()
            .all(|component| matches!(component, Component::Normal(_) | Component::CurDir))
}

#[cfg(test)]
#[path = "volumes_tests.rs"]
mod tests;
