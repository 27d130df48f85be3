//! Keeping the cache within its disk budget: in-use marks, and eviction of unreferenced blobs
//! and least recently used images.

use super::{CacheError, CachedImage, ImageCache};
use crate::oci::Digest;

impl ImageCache {
    /// Marks an image as held by a running workload: it is never evicted until every
    /// [`mark_in_use`](Self::mark_in_use) has its [`release`](Self::release).
    pub fn mark_in_use(&self, manifest_digest: &Digest) {
        *self
            .lock_state()
            .in_use
            .entry(manifest_digest.clone())
            .or_default() += 1;
    }

    /// Undoes one [`mark_in_use`](Self::mark_in_use).
    pub fn release(&self, manifest_digest: &Digest) {
        let mut state = self.lock_state();
        if let Some(count) = state.in_use.get_mut(manifest_digest) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                state.in_use.remove(manifest_digest);
            }
        }
    }

    /// The cached images, least recently used first.
    pub fn images(&self) -> Vec<CachedImage> {
        let state = self.lock_state();
        let mut images: Vec<_> = state.index.images().collect();
        images.sort_by_key(|(_, entry)| entry.seq);
        images
            .into_iter()
            .map(|(digest, entry)| CachedImage {
                digest: digest.clone(),
                references: entry.references.iter().cloned().collect(),
                size: entry.size,
                last_used: entry.last_used,
                in_use: state.in_use.contains_key(digest),
            })
            .collect()
    }

    /// Bytes used by cached manifests and blobs.
    pub async fn usage(&self) -> Result<u64, CacheError> {
        self.store.usage().await
    }

    /// Evicts until the cache fits its budget: first blobs no image needs, then the least
    /// recently used images not in use. Returns the evicted manifest digests.
    pub async fn evict_to_budget(&self) -> Result<Vec<Digest>, CacheError> {
        let _op = self.op_lock.lock().await;
        self.evict_locked(None).await
    }

    pub(super) async fn evict_locked(
        &self,
        protect: Option<&Digest>,
    ) -> Result<Vec<Digest>, CacheError> {
        let mut usage = self.store.usage().await?;
        let mut evicted = Vec::new();
        if usage <= self.budget_bytes {
            return Ok(evicted);
        }
        usage = usage.saturating_sub(self.remove_unreferenced_blobs().await?);
        let order = {
            let state = self.lock_state();
            state
                .index
                .eviction_order(|d| Some(d) == protect || state.in_use.contains_key(d))
        };
        for digest in order {
            if usage <= self.budget_bytes {
                break;
            }
            self.lock_state().index.remove(&digest);
            let manifest_path = self.store.manifest_path(&digest);
            let manifest_size = tokio::fs::metadata(&manifest_path)
                .await
                .map_or(0, |m| m.len());
            self.store.remove(&manifest_path).await?;
            usage = usage.saturating_sub(manifest_size);
            usage = usage.saturating_sub(self.remove_unreferenced_blobs().await?);
            tracing::info!(%digest, "evicted image from the cache");
            evicted.push(digest);
        }
        if usage > self.budget_bytes {
            tracing::warn!(
                usage,
                budget = self.budget_bytes,
                "image cache is over budget, but every remaining image is in use"
            );
        }
        self.persist().await?;
        Ok(evicted)
    }

    /// Deletes blobs no indexed image needs; returns the bytes freed.
    async fn remove_unreferenced_blobs(&self) -> Result<u64, CacheError> {
        let blobs = self.store.blobs().await?;
        let orphans: Vec<(Digest, u64)> = {
            let state = self.lock_state();
            let referenced = state.index.referenced_blobs();
            blobs
                .into_iter()
                .filter(|(d, _)| !referenced.contains(d))
                .collect()
        };
        let mut freed = 0;
        for (digest, size) in orphans {
            self.store.remove(&self.store.blob_path(&digest)).await?;
            freed += size;
        }
        Ok(freed)
    }
}
