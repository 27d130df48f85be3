//! The cache's content-addressed files: `blobs/sha256/<hex>` and `manifests/sha256/<hex>`,
//! written atomically and checked by re-hashing.

use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use super::CacheError;
use crate::oci::Digest;

/// Suffix of downloads in progress (see `oci::client::download::partial_path`).
const PARTIAL_SUFFIX: &str = ".partial";

/// What re-hashing a cached file found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Check {
    /// The file is there and hashes to its name; its size in bytes.
    Intact(u64),
    /// There is no such file.
    Missing,
    /// The file did not hash to its name and has been deleted.
    Removed,
}

/// The cache directory's file layout.
#[derive(Debug, Clone)]
pub(super) struct Store {
    root: PathBuf,
}

impl Store {
    pub(super) fn new(root: PathBuf) -> Self {
        Self { root }
    }

    pub(super) fn root(&self) -> &Path {
        &self.root
    }

    fn blobs_dir(&self) -> PathBuf {
        self.root.join("blobs").join("sha256")
    }

    fn manifests_dir(&self) -> PathBuf {
        self.root.join("manifests").join("sha256")
    }

    pub(super) fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.blobs_dir().join(digest.hex())
    }

    pub(super) fn manifest_path(&self, digest: &Digest) -> PathBuf {
        self.manifests_dir().join(digest.hex())
    }

    pub(super) fn index_path(&self) -> PathBuf {
        self.root.join("index.json")
    }

    pub(super) async fn create_dirs(&self) -> Result<(), CacheError> {
        for dir in [self.blobs_dir(), self.manifests_dir()] {
            tokio::fs::create_dir_all(&dir)
                .await
                .map_err(CacheError::io("create", &dir))?;
        }
        Ok(())
    }

    /// Re-hashes `path`; a file that does not match `digest` is deleted.
    pub(super) async fn check(&self, path: PathBuf, digest: &Digest) -> Result<Check, CacheError> {
        let expected = digest.clone();
        blocking(move || check_file(&path, &expected)).await
    }

    /// Writes `bytes` to `path` through a temporary file, so a crash never leaves half a file.
    pub(super) async fn write_atomic(
        &self,
        path: PathBuf,
        bytes: Vec<u8>,
    ) -> Result<(), CacheError> {
        blocking(move || {
            let mut tmp = path.clone().into_os_string();
            tmp.push(".tmp");
            let tmp = PathBuf::from(tmp);
            let write = || -> std::io::Result<()> {
                let mut file = std::fs::File::create(&tmp)?;
                std::io::Write::write_all(&mut file, &bytes)?;
                file.sync_all()?;
                std::fs::rename(&tmp, &path)
            };
            write().map_err(CacheError::io("write", &path))
        })
        .await
    }

    /// Deletes `path`; a file that is already gone is fine.
    pub(super) async fn remove(&self, path: &Path) -> Result<(), CacheError> {
        match tokio::fs::remove_file(path).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(CacheError::io("remove", path)(e)),
        }
    }

    /// Re-hashes every blob and manifest, deleting those that do not match their names; returns
    /// the digests of the blobs and manifests still there.
    pub(super) async fn verify_all(&self) -> Result<(Vec<Digest>, Vec<Digest>), CacheError> {
        let (blobs, manifests) = (self.blobs_dir(), self.manifests_dir());
        blocking(move || Ok((verify_dir(&blobs)?, verify_dir(&manifests)?))).await
    }

    /// The digests and sizes of all complete blobs.
    pub(super) async fn blobs(&self) -> Result<Vec<(Digest, u64)>, CacheError> {
        let dir = self.blobs_dir();
        blocking(move || entries(&dir)).await
    }

    /// Bytes used by complete blobs and manifests.
    pub(super) async fn usage(&self) -> Result<u64, CacheError> {
        let (blobs, manifests) = (self.blobs_dir(), self.manifests_dir());
        blocking(move || {
            let sum = |dir: &Path| -> Result<u64, CacheError> {
                Ok(entries(dir)?.iter().map(|(_, size)| size).sum())
            };
            Ok(sum(&blobs)? + sum(&manifests)?)
        })
        .await
    }
}

/// Runs file work on a blocking thread, so hashing never stalls the executor.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, CacheError> + Send + 'static,
) -> Result<T, CacheError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|source| CacheError::Task { source })?
}

/// The complete content files of `dir` (named by 64 hex digits), with their sizes. Partial
/// downloads and temporary files are skipped.
fn entries(dir: &Path) -> Result<Vec<(Digest, u64)>, CacheError> {
    let mut found = Vec::new();
    let read = std::fs::read_dir(dir).map_err(CacheError::io("list", dir))?;
    for entry in read {
        let entry = entry.map_err(CacheError::io("list", dir))?;
        let name = entry.file_name();
        let Some(digest) = name
            .to_str()
            .filter(|n| !n.ends_with(PARTIAL_SUFFIX))
            .and_then(|n| Digest::parse(&format!("sha256:{n}")).ok())
        else {
            continue;
        };
        let meta = entry
            .metadata()
            .map_err(CacheError::io("stat", &entry.path()))?;
        if meta.is_file() {
            found.push((digest, meta.len()));
        }
    }
    Ok(found)
}

fn verify_dir(dir: &Path) -> Result<Vec<Digest>, CacheError> {
    let mut intact = Vec::new();
    for (digest, _) in entries(dir)? {
        if let Check::Intact(_) = check_file(&dir.join(digest.hex()), &digest)? {
            intact.push(digest);
        }
    }
    Ok(intact)
}

fn check_file(path: &Path, expected: &Digest) -> Result<Check, CacheError> {
    let mut file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Check::Missing),
        Err(e) => return Err(CacheError::io("open", path)(e)),
    };
    let mut hasher = Sha256::new();
    let mut buffer = vec![0; 256 * 1024];
    let mut size = 0u64;
    loop {
        let n = file
            .read(&mut buffer)
            .map_err(CacheError::io("read", path))?;
        let Some(read) = buffer.get(..n).filter(|b| !b.is_empty()) else {
            break;
        };
        hasher.update(read);
        size += n as u64;
    }
    if &Digest::from_hasher(hasher) == expected {
        return Ok(Check::Intact(size));
    }
    tracing::warn!(path = %path.display(), digest = %expected, "cached file is corrupted; deleting it");
    match std::fs::remove_file(path) {
        Ok(()) => Ok(Check::Removed),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Check::Removed),
        Err(e) => Err(CacheError::io("remove", path)(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn check_detects_and_deletes_corruption() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::new(dir.path().to_path_buf());
        store.create_dirs().await.expect("dirs");
        let good = Digest::of(b"good");
        let path = store.blob_path(&good);
        store
            .write_atomic(path.clone(), b"good".to_vec())
            .await
            .expect("write");
        assert_eq!(
            store.check(path.clone(), &good).await.expect("check"),
            Check::Intact(4)
        );
        std::fs::write(&path, b"evil").expect("corrupt");
        assert_eq!(
            store.check(path.clone(), &good).await.expect("check"),
            Check::Removed
        );
        assert!(!path.exists());
        assert_eq!(
            store.check(path, &good).await.expect("check"),
            Check::Missing
        );
    }

    #[tokio::test]
    async fn verify_all_and_usage_skip_partials_and_junk() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::new(dir.path().to_path_buf());
        store.create_dirs().await.expect("dirs");
        let a = Digest::of(b"aaaa");
        let b = Digest::of(b"bb");
        std::fs::write(store.blob_path(&a), b"aaaa").expect("write");
        std::fs::write(store.blob_path(&b), b"not bb").expect("write");
        std::fs::write(store.manifest_path(&b), b"bb").expect("write");
        let partial = format!("{}.partial", store.blob_path(&b).display());
        std::fs::write(&partial, b"partial bytes").expect("write");
        std::fs::write(dir.path().join("blobs/sha256/README"), b"junk").expect("write");

        let (blobs, manifests) = store.verify_all().await.expect("verify");
        assert_eq!(blobs, vec![a.clone()]);
        assert_eq!(manifests, vec![b.clone()]);
        assert!(!store.blob_path(&b).exists(), "corrupt blob deleted");
        assert!(Path::new(&partial).exists(), "partial kept for resuming");
        assert_eq!(store.usage().await.expect("usage"), 4 + 2);
        assert_eq!(store.blobs().await.expect("blobs"), vec![(a, 4)]);
    }
}
