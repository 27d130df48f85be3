//! Garbage collection: removes blobs no manifest references, and expired uploads.
//!
//! Mark and sweep run under the write side of the registry's collection lock; every step that
//! makes content reachable (committing a blob, mounting, storing a manifest after checking its
//! references) holds the read side, so a collection never deletes something a concurrent push
//! just relied on. Blobs younger than the grace period survive regardless: they were uploaded
//! for a manifest that has not been pushed yet.

use std::collections::HashSet;
use std::io::ErrorKind;

use super::errors::RegistryError;
use super::manifest::Manifest;
use super::names::Digest;
use super::{older_than, Registry};

/// What a collection did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Blob files deleted.
    pub blobs_deleted: usize,
    /// Bytes those files held.
    pub bytes_freed: u64,
    /// Blob files kept (referenced, or within the grace period).
    pub blobs_kept: usize,
    /// Repository links to deleted blobs that were removed.
    pub links_removed: usize,
    /// Abandoned uploads removed.
    pub uploads_expired: usize,
}

impl Registry {
    /// Deletes blobs that no manifest in any repository references (after the grace period),
    /// links to them, and uploads idle for longer than the upload TTL.
    ///
    /// Refuses to sweep when a stored manifest cannot be parsed, since its references would be
    /// unknown and their blobs would be lost.
    pub async fn collect_garbage(&self) -> Result<GcReport, RegistryError> {
        let mut report = GcReport {
            uploads_expired: self.expire_uploads().await?,
            ..GcReport::default()
        };
        let _exclusive = self.gc_lock.write().await;
        let repositories = self.storage.repositories().await?;
        let marked = self.mark(&repositories).await?;
        for blob in self.storage.stored_blobs().await? {
            if marked.contains(&blob.digest) || !older_than(blob.modified, self.config.gc_grace) {
                report.blobs_kept += 1;
                continue;
            }
            if self.storage.delete_blob(&blob.digest).await? {
                tracing::debug!(digest = %blob.digest, size = blob.size, "collected unreferenced blob");
                report.blobs_deleted += 1;
                report.bytes_freed = report.bytes_freed.saturating_add(blob.size);
            }
        }
        for repository in &repositories {
            for digest in self.storage.blob_links(repository).await? {
                if self.storage.blob_size(&digest).await?.is_none()
                    && self.storage.unlink_blob(repository, &digest).await?
                {
                    report.links_removed += 1;
                }
            }
        }
        tracing::info!(
            deleted = report.blobs_deleted,
            freed = report.bytes_freed,
            kept = report.blobs_kept,
            uploads_expired = report.uploads_expired,
            "registry garbage collection finished"
        );
        Ok(report)
    }

    /// Every digest reachable from a manifest revision.
    async fn mark(&self, repositories: &[String]) -> Result<HashSet<Digest>, RegistryError> {
        let mut marked = HashSet::new();
        for repository in repositories {
            for digest in self.storage.revisions(repository).await? {
                marked.insert(digest.clone());
                let stored = match self.local_manifest(repository, &digest).await {
                    Ok(stored) => stored,
                    // A revision whose content is gone references nothing we could keep.
                    Err(RegistryError::ManifestUnknown { .. }) => continue,
                    Err(error) => return Err(error),
                };
                let manifest = Manifest::parse(&stored.bytes, Some(&stored.media_type)).map_err(|error| {
                    RegistryError::io(
                        "parse stored manifest for garbage collection",
                        self.storage.blob_path(&digest),
                        std::io::Error::new(
                            ErrorKind::InvalidData,
                            format!("manifest {digest} of {repository:?} no longer parses ({error}); collection skipped"),
                        ),
                    )
                })?;
                marked.extend(manifest.references().cloned());
            }
        }
        Ok(marked)
    }
}
