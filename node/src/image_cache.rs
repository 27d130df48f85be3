//! The node's image cache: a content-addressed directory of manifests and blobs pulled from
//! registries, checked by re-hashing, kept within a disk budget by evicting the least recently
//! used images that no running pod holds.
//!
//! Layout: `blobs/sha256/<hex>` (configs and layers; `<hex>.partial` while downloading),
//! `manifests/sha256/<hex>`, and `index.json` (reference → manifest digest, blobs, last use).
//! Pulls, lookups and evictions are serialised by one lock, so two pods needing the same image
//! download it once and no eviction deletes a file a lookup is reading.

mod error;
mod evict;
mod index;
mod store;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::oci::client::{ClientError, RegistryClient};
use crate::oci::manifest::{Descriptor, ImageKind, ImageManifest, Manifest};
use crate::oci::wasm::WasmConfig;
use crate::oci::{Digest, Reference};
pub use error::CacheError;
use index::Index;
use store::{Check, Store};

/// Largest config blob read into memory.
const CONFIG_LIMIT: u64 = 16 * 1024 * 1024;
/// Attempts per blob when transfers are cut (each resumes where the last stopped).
const DOWNLOAD_ATTEMPTS: u32 = 4;

/// A blob of a pulled image on local disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalLayer {
    /// The layer's descriptor from the manifest.
    pub descriptor: Descriptor,
    /// Where its verified bytes are.
    pub path: PathBuf,
}

/// An image present and verified in the cache.
#[derive(Debug, Clone)]
pub struct PulledImage {
    /// The reference it was pulled or looked up by.
    pub reference: Reference,
    /// Digest of the (platform) manifest; what [`ImageCache::mark_in_use`] takes.
    pub manifest_digest: Digest,
    /// The manifest.
    pub manifest: ImageManifest,
    /// Where the manifest's verified bytes are (its digest is `manifest_digest`); containerd's
    /// content store needs the exact bytes, which re-serialising `manifest` would not give.
    pub manifest_path: PathBuf,
    /// Wasm artifact or container image.
    pub kind: ImageKind,
    /// The config blob's bytes.
    pub config: Vec<u8>,
    /// The layers, in manifest order.
    pub layers: Vec<LocalLayer>,
}

impl PulledImage {
    /// For a Wasm artifact, the module or component file.
    pub fn module_path(&self) -> Option<&Path> {
        match (self.kind, self.layers.as_slice()) {
            (ImageKind::Wasm, [layer]) => Some(&layer.path),
            _ => None,
        }
    }

    /// For a Wasm artifact, its parsed config (os, imports, exports).
    pub fn wasm_config(&self) -> Option<WasmConfig> {
        (self.kind == ImageKind::Wasm)
            .then(|| serde_json::from_slice(&self.config).ok())
            .flatten()
    }
}

/// A cached image as listed by [`ImageCache::images`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedImage {
    /// Manifest digest.
    pub digest: Digest,
    /// References that resolve to it.
    pub references: Vec<String>,
    /// Bytes on disk (shared blobs counted in each image).
    pub size: u64,
    /// Unix time of last use.
    pub last_used: u64,
    /// Whether a running workload holds it.
    pub in_use: bool,
}

#[derive(Debug, Default)]
struct State {
    index: Index,
    in_use: HashMap<Digest, usize>,
}

/// The image cache. Share one per node.
#[derive(Debug)]
pub struct ImageCache {
    store: Store,
    budget_bytes: u64,
    state: Mutex<State>,
    /// Serialises pulls, lookups and evictions (see the module docs).
    op_lock: tokio::sync::Mutex<()>,
}

impl ImageCache {
    /// Opens (creating if needed) the cache in `dir`, re-hashing every entry: corrupted files
    /// are deleted (and re-fetched by the next pull), index entries whose manifest is gone are
    /// dropped. `budget_bytes` is the disk budget eviction keeps to.
    pub async fn open(dir: impl Into<PathBuf>, budget_bytes: u64) -> Result<Self, CacheError> {
        let store = Store::new(dir.into());
        store.create_dirs().await?;
        let index_path = store.index_path();
        let mut index = match tokio::fs::read(&index_path).await {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::warn!(path = %index_path.display(), error = %e,
                    "image cache index unreadable; starting a new one (blobs are kept)");
                Index::default()
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Index::default(),
            Err(e) => return Err(CacheError::io("read", &index_path)(e)),
        };
        let (_, manifests) = store.verify_all().await?;
        index.retain(|digest, _| manifests.contains(digest));
        let cache = Self {
            store,
            budget_bytes,
            state: Mutex::new(State {
                index,
                in_use: HashMap::new(),
            }),
            op_lock: tokio::sync::Mutex::new(()),
        };
        cache.persist().await?;
        Ok(cache)
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        self.store.root()
    }

    /// Pulls `reference` through `client` unless the cache already holds it intact: for a tag
    /// the manifest is always asked for (the tag may have moved), for a digest only when it is
    /// not cached; blobs are fetched only when missing or corrupted, and interrupted downloads
    /// resume. If the registry cannot be reached and the
    /// reference was pulled before, the cached image is returned. Evicts to the budget after.
    pub async fn pull(
        &self,
        client: &RegistryClient,
        reference: &Reference,
    ) -> Result<PulledImage, CacheError> {
        let _op = self.op_lock.lock().await;
        let pull_error = |source| CacheError::Pull {
            reference: reference.to_string(),
            source: Box::new(source),
        };
        // A digest cannot move, so an intact cached copy needs no registry round trip.
        if reference.digest().is_some() {
            if let Some(image) = self.lookup_locked(reference).await? {
                return Ok(image);
            }
        }
        let fetched = match client.get_manifest(reference).await {
            Ok(fetched) => fetched,
            Err(e @ ClientError::Http { .. }) => {
                if let Some(image) = self.lookup_locked(reference).await? {
                    tracing::warn!(%reference, error = %e, "registry unreachable; using the cached image");
                    return Ok(image);
                }
                return Err(pull_error(e));
            }
            Err(e) => return Err(pull_error(e)),
        };
        let (digest, manifest, bytes) = match fetched.manifest {
            Manifest::Image(manifest) => (fetched.digest, manifest, fetched.bytes),
            Manifest::Index(index) => {
                let entry = index
                    .select_for_host()
                    .ok_or_else(|| CacheError::NoPlatform {
                        reference: reference.to_string(),
                        arch: crate::oci::manifest::go_arch(std::env::consts::ARCH).to_owned(),
                    })?;
                let child = client
                    .get_manifest(&reference.with_digest(entry.digest.clone()))
                    .await
                    .map_err(pull_error)?;
                match child.manifest {
                    Manifest::Image(manifest) => (child.digest, manifest, child.bytes),
                    Manifest::Index(_) => {
                        return Err(CacheError::NestedIndex {
                            reference: reference.to_string(),
                            digest: child.digest,
                        })
                    }
                }
            }
        };
        let kind = check_kind(reference, &digest, &manifest)?;
        let manifest_path = self.store.manifest_path(&digest);
        if !matches!(
            self.store.check(manifest_path.clone(), &digest).await?,
            Check::Intact(_)
        ) {
            self.store
                .write_atomic(manifest_path, bytes.clone())
                .await?;
        }
        for descriptor in std::iter::once(&manifest.config).chain(&manifest.layers) {
            self.ensure_blob(client, reference, descriptor).await?;
        }
        let image = self.assemble(reference, digest, manifest, kind).await?;
        let size = (bytes.len() as u64).saturating_add(image.manifest.content_size());
        let blobs = std::iter::once(&image.manifest.config)
            .chain(&image.manifest.layers)
            .map(|d| d.digest.clone())
            .collect();
        self.lock_state().index.record(
            &reference.to_string(),
            &image.manifest_digest,
            blobs,
            size,
            unix_now(),
        );
        self.persist().await?;
        self.evict_locked(Some(&image.manifest_digest)).await?;
        Ok(image)
    }

    /// The cached image for `reference`, re-hashed, without asking any registry (for
    /// `imagePullPolicy: IfNotPresent` and offline nodes). `None` if it is not cached or a
    /// file of it was corrupted (and has been deleted).
    pub async fn lookup(&self, reference: &Reference) -> Result<Option<PulledImage>, CacheError> {
        let _op = self.op_lock.lock().await;
        self.lookup_locked(reference).await
    }

    async fn lookup_locked(
        &self,
        reference: &Reference,
    ) -> Result<Option<PulledImage>, CacheError> {
        let digest = match reference.digest() {
            Some(digest) => digest.clone(),
            None => match self.lock_state().index.find(&reference.to_string()) {
                Some(digest) => digest.clone(),
                None => return Ok(None),
            },
        };
        let path = self.store.manifest_path(&digest);
        if !matches!(
            self.store.check(path.clone(), &digest).await?,
            Check::Intact(_)
        ) {
            return Ok(None);
        }
        let bytes = tokio::fs::read(&path)
            .await
            .map_err(CacheError::io("read", &path))?;
        let manifest = match Manifest::parse(None, &bytes) {
            Ok(Manifest::Image(manifest)) => manifest,
            Ok(Manifest::Index(_)) | Err(_) => return Ok(None),
        };
        let Ok(kind) = check_kind(reference, &digest, &manifest) else {
            return Ok(None);
        };
        for descriptor in std::iter::once(&manifest.config).chain(&manifest.layers) {
            let path = self.store.blob_path(&descriptor.digest);
            if !matches!(
                self.store.check(path, &descriptor.digest).await?,
                Check::Intact(_)
            ) {
                return Ok(None);
            }
        }
        let image = self.assemble(reference, digest, manifest, kind).await?;
        self.lock_state()
            .index
            .touch(&image.manifest_digest, unix_now());
        self.persist().await?;
        Ok(Some(image))
    }

    /// Makes sure the blob is in the cache intact, downloading (and resuming) as needed.
    async fn ensure_blob(
        &self,
        client: &RegistryClient,
        reference: &Reference,
        descriptor: &Descriptor,
    ) -> Result<(), CacheError> {
        let path = self.store.blob_path(&descriptor.digest);
        if let Check::Intact(_) = self.store.check(path.clone(), &descriptor.digest).await? {
            return Ok(());
        }
        let mut attempt = 1;
        loop {
            match client
                .download_blob(reference, descriptor, &path, None)
                .await
            {
                Ok(_) => return Ok(()),
                Err(e @ ClientError::Interrupted { .. }) if attempt < DOWNLOAD_ATTEMPTS => {
                    tracing::warn!(%reference, digest = %descriptor.digest, attempt, error = %e,
                        "blob download interrupted; resuming");
                    tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
                    attempt += 1;
                }
                Err(e) => {
                    return Err(CacheError::Pull {
                        reference: reference.to_string(),
                        source: Box::new(e),
                    })
                }
            }
        }
    }

    async fn assemble(
        &self,
        reference: &Reference,
        digest: Digest,
        manifest: ImageManifest,
        kind: ImageKind,
    ) -> Result<PulledImage, CacheError> {
        let config_error = |reason: String| CacheError::Config {
            reference: reference.to_string(),
            digest: manifest.config.digest.clone(),
            reason,
        };
        if manifest.config.size > CONFIG_LIMIT {
            return Err(config_error(format!("larger than {CONFIG_LIMIT} bytes")));
        }
        let config_path = self.store.blob_path(&manifest.config.digest);
        let config = tokio::fs::read(&config_path)
            .await
            .map_err(CacheError::io("read", &config_path))?;
        if kind == ImageKind::Wasm {
            serde_json::from_slice::<WasmConfig>(&config)
                .map_err(|e| config_error(e.to_string()))?;
        }
        let layers = manifest
            .layers
            .iter()
            .map(|descriptor| LocalLayer {
                descriptor: descriptor.clone(),
                path: self.store.blob_path(&descriptor.digest),
            })
            .collect();
        Ok(PulledImage {
            reference: reference.clone(),
            manifest_path: self.store.manifest_path(&digest),
            manifest_digest: digest,
            manifest,
            kind,
            config,
            layers,
        })
    }

    fn lock_state(&self) -> MutexGuard<'_, State> {
        // Every update leaves the state consistent, so a panic elsewhere cannot corrupt it.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn persist(&self) -> Result<(), CacheError> {
        let bytes = serde_json::to_vec_pretty(&self.lock_state().index).map_err(|e| {
            CacheError::io("serialize", &self.store.index_path())(std::io::Error::other(e))
        })?;
        self.store
            .write_atomic(self.store.index_path(), bytes)
            .await
    }
}

/// The image's kind, refusing artifacts a node cannot run and Wasm artifacts with other than
/// one `application/wasm` layer.
fn check_kind(
    reference: &Reference,
    digest: &Digest,
    manifest: &ImageManifest,
) -> Result<ImageKind, CacheError> {
    match manifest.kind() {
        ImageKind::Wasm => {
            manifest
                .wasm_layer(digest)
                .map_err(|source| CacheError::Manifest {
                    reference: reference.to_string(),
                    source,
                })?;
            Ok(ImageKind::Wasm)
        }
        ImageKind::Container => Ok(ImageKind::Container),
        ImageKind::Other => Err(CacheError::Unsupported {
            reference: reference.to_string(),
            config_type: manifest.config.media_type.clone(),
        }),
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn open_creates_layout_and_drops_entries_without_manifest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = ImageCache::open(dir.path(), 1024).await.expect("open");
        assert!(dir.path().join("blobs/sha256").is_dir());
        assert!(dir.path().join("manifests/sha256").is_dir());
        assert!(dir.path().join("index.json").is_file());
        assert!(cache.images().is_empty());
        drop(cache);

        let mut index = Index::default();
        index.record("h/a:v1", &Digest::of(b"gone"), vec![], 4, 1);
        std::fs::write(
            dir.path().join("index.json"),
            serde_json::to_vec(&index).expect("json"),
        )
        .expect("write");
        let cache = ImageCache::open(dir.path(), 1024).await.expect("reopen");
        assert!(cache.images().is_empty(), "entry without manifest dropped");
    }

    #[tokio::test]
    async fn unreadable_index_starts_fresh() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("index.json"), b"{not json").expect("write");
        let cache = ImageCache::open(dir.path(), 1024).await.expect("open");
        assert!(cache.images().is_empty());
    }

    #[tokio::test]
    async fn release_balances_mark_in_use() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = ImageCache::open(dir.path(), 1024).await.expect("open");
        let d = Digest::of(b"m");
        cache.mark_in_use(&d);
        cache.mark_in_use(&d);
        cache.release(&d);
        assert!(cache.lock_state().in_use.contains_key(&d));
        cache.release(&d);
        assert!(!cache.lock_state().in_use.contains_key(&d));
        cache.release(&d);
        assert!(
            !cache.lock_state().in_use.contains_key(&d),
            "extra release is harmless"
        );
    }

    #[tokio::test]
    async fn eviction_removes_orphans_then_lru_unused_images() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = ImageCache::open(dir.path(), 25).await.expect("open");
        let store = &cache.store;
        let put_image = |name: &str, blob: &[u8]| {
            let blob_digest = Digest::of(blob);
            std::fs::write(store.blob_path(&blob_digest), blob).expect("blob");
            let manifest = format!("manifest {name}");
            let digest = Digest::of(manifest.as_bytes());
            std::fs::write(store.manifest_path(&digest), &manifest).expect("manifest");
            cache
                .lock_state()
                .index
                .record(name, &digest, vec![blob_digest], 10, 1);
            digest
        };
        let old = put_image("old", b"0123456789");
        let held = put_image("held", b"abcdefghij");
        let new = put_image("new", b"ABCDEFGHIJ");
        let orphan = Digest::of(b"orphan");
        std::fs::write(store.blob_path(&orphan), b"orphan").expect("orphan");
        cache.mark_in_use(&held);
        cache.lock_state().index.touch(&held, 0);
        // old < new < held in recency, but held is in use.
        let evicted = cache.evict_to_budget().await.expect("evict");
        assert_eq!(evicted, vec![old.clone(), new.clone()]);
        assert!(!store.blob_path(&orphan).exists());
        assert!(store.manifest_path(&held).exists());
        assert!(!store.manifest_path(&old).exists());
        assert_eq!(cache.images().len(), 1);
        assert!(cache.images()[0].in_use);
    }
}
