//! Making a pulled image usable by containerd: its blobs copied into the content store with the
//! garbage-collection references containerd's own pull would set, an image record named by the
//! reference, and its layers unpacked into committed snapshots named by chain id.

use std::collections::HashMap;

use containerd_client::services::v1::snapshots::{
    CommitSnapshotRequest, PrepareSnapshotRequest, RemoveSnapshotRequest, StatSnapshotRequest,
};
use containerd_client::services::v1::{
    ApplyRequest, CreateImageRequest, GetImageRequest, Image, UpdateImageRequest,
};
use containerd_client::tonic::Code;
use containerd_client::types::Descriptor;
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use super::connection::{Containerd, Lease};
use super::content::{Blob, Source};
use super::error::ContainerdError;
use super::UnpackedImage;
use crate::image_cache::PulledImage;
use crate::oci::manifest::ImageKind;
use crate::oci::media;

/// What an OCI image config says about running the image.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageConfig {
    /// `Entrypoint`.
    pub entrypoint: Vec<String>,
    /// `Cmd`.
    pub cmd: Vec<String>,
    /// `Env`, as `KEY=VALUE` strings.
    pub env: Vec<String>,
    /// `WorkingDir`, if set.
    pub working_dir: Option<String>,
    /// `User` (`uid`, `uid:gid`, or names), if set.
    pub user: Option<String>,
}

#[derive(Deserialize)]
struct ConfigFile {
    #[serde(default)]
    config: Option<RunConfig>,
    rootfs: RootFs,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct RunConfig {
    entrypoint: Option<Vec<String>>,
    cmd: Option<Vec<String>>,
    env: Option<Vec<String>>,
    working_dir: Option<String>,
    user: Option<String>,
}

#[derive(Deserialize)]
struct RootFs {
    diff_ids: Vec<String>,
}

/// Parses an OCI (or Docker) image config into what a container needs and the layers' diff ids.
fn parse_config(image: &str, bytes: &[u8]) -> Result<(ImageConfig, Vec<String>), ContainerdError> {
    let file: ConfigFile = serde_json::from_slice(bytes).map_err(|e| ContainerdError::Image {
        image: image.to_owned(),
        reason: format!("image config is not valid: {e}"),
    })?;
    let run = file.config.unwrap_or_default();
    let config = ImageConfig {
        entrypoint: run.entrypoint.unwrap_or_default(),
        cmd: run.cmd.unwrap_or_default(),
        env: run.env.unwrap_or_default(),
        working_dir: run.working_dir.filter(|d| !d.is_empty()),
        user: run.user.filter(|u| !u.is_empty()),
    };
    Ok((config, file.rootfs.diff_ids))
}

/// The chain ids of a layer stack (OCI image spec: the first is the first diff id, each next one
/// the sha256 of "<previous chain id> <diff id>").
fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut chain: Vec<String> = Vec::with_capacity(diff_ids.len());
    for diff_id in diff_ids {
        let next = match chain.last() {
            None => diff_id.clone(),
            Some(parent) => format!(
                "sha256:{}",
                hex::encode(Sha256::digest(format!("{parent} {diff_id}").as_bytes()))
            ),
        };
        chain.push(next);
    }
    chain
}

impl Containerd {
    /// Makes `image` (already pulled and verified by the node's image cache) usable: writes the
    /// manifest, config and layer blobs into containerd's content store (skipping what is
    /// there), creates or updates the image record (name = `reference`), unpacks the layers
    /// into snapshots (skipping committed ones) and returns what a container needs. Idempotent;
    /// concurrent calls are serialised.
    pub async fn ensure_image(
        &self,
        reference: &str,
        image: &PulledImage,
    ) -> Result<UnpackedImage, ContainerdError> {
        let image_error = |reason: String| ContainerdError::Image {
            image: reference.to_owned(),
            reason,
        };
        if image.kind != ImageKind::Container {
            return Err(image_error(
                "is not a container image (Wasm artifacts run in the agent, not in containerd)"
                    .to_owned(),
            ));
        }
        let (config, diff_ids) = parse_config(reference, &image.config)?;
        if diff_ids.len() != image.layers.len() {
            return Err(image_error(format!(
                "the config lists {} layers, the manifest {}",
                diff_ids.len(),
                image.layers.len()
            )));
        }
        if diff_ids.is_empty() {
            return Err(image_error("has no layers".to_owned()));
        }
        let chain = chain_ids(&diff_ids);
        let snapshotter = self.inner.config.snapshotter.clone();
        let top = chain.last().cloned().unwrap_or_default();

        let _import = self.inner.import_lock.lock().await;
        let lease = self.lease("import").await?;
        let result = self
            .import(reference, image, &diff_ids, &chain, &snapshotter, &lease)
            .await;
        // The image record now references everything the lease protected.
        let released = self.release(lease).await;
        result?;
        released?;
        Ok(UnpackedImage {
            name: reference.to_owned(),
            chain_id: top,
            config,
        })
    }

    async fn import(
        &self,
        reference: &str,
        image: &PulledImage,
        diff_ids: &[String],
        chain: &[String],
        snapshotter: &str,
        lease: &Lease,
    ) -> Result<(), ContainerdError> {
        let top = chain.last().cloned().unwrap_or_default();
        for (layer, diff_id) in image.layers.iter().zip(diff_ids) {
            let labels = [("containerd.io/uncompressed".to_owned(), diff_id.clone())];
            self.ensure_blob(
                Blob {
                    source: Source::File(&layer.path),
                    digest: layer.descriptor.digest.as_str(),
                    size: layer.descriptor.size,
                    labels: labels.into_iter().collect(),
                },
                lease,
            )
            .await?;
        }
        let config = &image.manifest.config;
        self.ensure_blob(
            Blob {
                source: Source::Bytes(&image.config),
                digest: config.digest.as_str(),
                size: config.size,
                // Keeps the unpacked snapshots alive as long as the image is.
                labels: [(format!("containerd.io/gc.ref.snapshot.{snapshotter}"), top)]
                    .into_iter()
                    .collect(),
            },
            lease,
        )
        .await?;
        let mut manifest_labels: HashMap<String, String> = HashMap::new();
        manifest_labels.insert(
            "containerd.io/gc.ref.content.config".to_owned(),
            config.digest.to_string(),
        );
        for (i, layer) in image.layers.iter().enumerate() {
            manifest_labels.insert(
                format!("containerd.io/gc.ref.content.l.{i}"),
                layer.descriptor.digest.to_string(),
            );
        }
        let manifest_size = tokio::fs::metadata(&image.manifest_path)
            .await
            .map_err(ContainerdError::io("inspect", &image.manifest_path))?
            .len();
        self.ensure_blob(
            Blob {
                source: Source::File(&image.manifest_path),
                digest: image.manifest_digest.as_str(),
                size: manifest_size,
                labels: manifest_labels,
            },
            lease,
        )
        .await?;
        let target = Descriptor {
            media_type: image
                .manifest
                .media_type
                .clone()
                .unwrap_or_else(|| media::OCI_MANIFEST.to_owned()),
            digest: image.manifest_digest.to_string(),
            size: i64::try_from(manifest_size).unwrap_or(i64::MAX),
            annotations: HashMap::new(),
        };
        self.put_image_record(reference, target, lease).await?;
        self.unpack(reference, image, diff_ids, chain, snapshotter, lease)
            .await
    }

    async fn put_image_record(
        &self,
        name: &str,
        target: Descriptor,
        lease: &Lease,
    ) -> Result<(), ContainerdError> {
        let record = Image {
            name: name.to_owned(),
            target: Some(target.clone()),
            ..Default::default()
        };
        let existing = self
            .images()
            .get(self.leased(
                GetImageRequest {
                    name: name.to_owned(),
                },
                lease,
            ))
            .await;
        match existing {
            Ok(response) => {
                let current = response.into_inner().image.and_then(|i| i.target);
                if current.is_some_and(|t| t.digest == target.digest) {
                    return Ok(());
                }
            }
            Err(status) if status.code() == Code::NotFound => {
                let created = self
                    .images()
                    .create(self.leased(
                        CreateImageRequest {
                            image: Some(record.clone()),
                            source_date_epoch: None,
                        },
                        lease,
                    ))
                    .await;
                match created {
                    Ok(_) => return Ok(()),
                    // Another client made it in between; make it point at this manifest.
                    Err(status) if status.code() == Code::AlreadyExists => {}
                    Err(status) => return Err(ContainerdError::rpc("create image", name)(status)),
                }
            }
            Err(status) => return Err(ContainerdError::rpc("get image", name)(status)),
        }
        self.images()
            .update(self.leased(
                UpdateImageRequest {
                    image: Some(record),
                    update_mask: Some(prost_types::FieldMask {
                        paths: vec!["target".to_owned()],
                    }),
                    source_date_epoch: None,
                },
                lease,
            ))
            .await
            .map_err(ContainerdError::rpc("update image", name))?;
        Ok(())
    }

    /// Applies each layer onto its parent's snapshot and commits it under its chain id, skipping
    /// the layers whose chain id is already committed.
    async fn unpack(
        &self,
        reference: &str,
        image: &PulledImage,
        diff_ids: &[String],
        chain: &[String],
        snapshotter: &str,
        lease: &Lease,
    ) -> Result<(), ContainerdError> {
        let mut parent = String::new();
        for ((layer, diff_id), chain_id) in image.layers.iter().zip(diff_ids).zip(chain) {
            let stat = self
                .snapshots()
                .stat(self.leased(
                    StatSnapshotRequest {
                        snapshotter: snapshotter.to_owned(),
                        key: chain_id.clone(),
                    },
                    lease,
                ))
                .await;
            match stat {
                Ok(_) => {
                    parent = chain_id.clone();
                    continue;
                }
                Err(status) if status.code() == Code::NotFound => {}
                Err(status) => return Err(ContainerdError::rpc("stat snapshot", chain_id)(status)),
            }
            let key = format!("extract-{}-{chain_id}", super::io::unique_suffix());
            let result = self
                .apply_layer(
                    reference,
                    layer,
                    diff_id,
                    chain_id,
                    &key,
                    &parent,
                    snapshotter,
                    lease,
                )
                .await;
            if result.is_err() {
                let _ = self
                    .snapshots()
                    .remove(self.leased(
                        RemoveSnapshotRequest {
                            snapshotter: snapshotter.to_owned(),
                            key: key.clone(),
                        },
                        lease,
                    ))
                    .await;
            }
            result?;
            parent = chain_id.clone();
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)] // one layer's worth of context, used once
    async fn apply_layer(
        &self,
        reference: &str,
        layer: &crate::image_cache::LocalLayer,
        diff_id: &str,
        chain_id: &str,
        key: &str,
        parent: &str,
        snapshotter: &str,
        lease: &Lease,
    ) -> Result<(), ContainerdError> {
        let mounts = self
            .snapshots()
            .prepare(self.leased(
                PrepareSnapshotRequest {
                    snapshotter: snapshotter.to_owned(),
                    key: key.to_owned(),
                    parent: parent.to_owned(),
                    labels: HashMap::new(),
                },
                lease,
            ))
            .await
            .map_err(ContainerdError::rpc("prepare snapshot", key))?
            .into_inner()
            .mounts;
        let applied = self
            .diff()
            .apply(self.leased(
                ApplyRequest {
                    diff: Some(Descriptor {
                        media_type: layer.descriptor.media_type.clone(),
                        digest: layer.descriptor.digest.to_string(),
                        size: i64::try_from(layer.descriptor.size).unwrap_or(i64::MAX),
                        annotations: HashMap::new(),
                    }),
                    mounts,
                    payloads: HashMap::new(),
                    sync_fs: false,
                },
                lease,
            ))
            .await
            .map_err(ContainerdError::rpc(
                "apply layer",
                layer.descriptor.digest.as_str(),
            ))?
            .into_inner()
            .applied;
        let applied_digest = applied.map(|d| d.digest).unwrap_or_default();
        if applied_digest != diff_id {
            return Err(ContainerdError::Image {
                image: reference.to_owned(),
                reason: format!(
                    "layer {} unpacks to {applied_digest}, but the config says {diff_id}",
                    layer.descriptor.digest
                ),
            });
        }
        let committed = self
            .snapshots()
            .commit(self.leased(
                CommitSnapshotRequest {
                    snapshotter: snapshotter.to_owned(),
                    name: chain_id.to_owned(),
                    key: key.to_owned(),
                    labels: HashMap::new(),
                },
                lease,
            ))
            .await;
        match committed {
            Ok(_) => Ok(()),
            // Committed by another client meanwhile: ours is redundant.
            Err(status) if status.code() == Code::AlreadyExists => {
                let _ = self
                    .snapshots()
                    .remove(self.leased(
                        RemoveSnapshotRequest {
                            snapshotter: snapshotter.to_owned(),
                            key: key.to_owned(),
                        },
                        lease,
                    ))
                    .await;
                Ok(())
            }
            Err(status) => Err(ContainerdError::rpc("commit snapshot", chain_id)(status)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_ids_follow_the_image_spec() {
        let diff = |c: char| format!("sha256:{}", c.to_string().repeat(64));
        let ids = chain_ids(&[diff('a'), diff('b')]);
        assert_eq!(ids[0], diff('a'));
        let expected = hex::encode(Sha256::digest(format!("{} {}", diff('a'), diff('b'))));
        assert_eq!(ids[1], format!("sha256:{expected}"));
        assert!(chain_ids(&[]).is_empty());
    }

    #[test]
    fn parses_entrypoint_cmd_env_and_refuses_garbage() {
        let config = br#"{"architecture":"amd64","os":"linux",
            "config":{"Entrypoint":null,"Cmd":["sh"],"Env":["PATH=/bin"],"WorkingDir":"","User":"1000:1000"},
            "rootfs":{"type":"layers","diff_ids":["sha256:aa"]}}"#;
        let (parsed, diff_ids) = parse_config("busybox", config).unwrap();
        assert_eq!(parsed.entrypoint, Vec::<String>::new());
        assert_eq!(parsed.cmd, vec!["sh"]);
        assert_eq!(parsed.env, vec!["PATH=/bin"]);
        assert_eq!(parsed.working_dir, None);
        assert_eq!(parsed.user.as_deref(), Some("1000:1000"));
        assert_eq!(diff_ids, vec!["sha256:aa"]);
        let err = parse_config("x", b"{}").unwrap_err();
        assert!(
            err.to_string().contains("image config is not valid"),
            "{err}"
        );
    }
}
