//! On-disk layout of the registry and its atomic file operations.
//!
//! ```text
//! root/blobs/<alg>/<hex[0..2]>/<hex>                          content, immutable, verified
//! root/repositories/<name>/_blobs/<alg>/<hex>                 empty file: blob is in the repo
//! root/repositories/<name>/_manifests/revisions/<alg>/<hex>   the manifest's media type
//! root/repositories/<name>/_manifests/tags/<tag>              the tagged manifest's digest
//! root/uploads/<uuid>/                                        unfinished uploads
//! ```
//!
//! Blobs reach `blobs/` only by `rename` after verification and `fsync`, and small metadata
//! files are written to a temporary name and renamed, so a crash leaves either the old or the
//! new state and never a partial file under a visible name. Names, tags and digests are
//! validated before they get here, so joining them onto the root cannot escape it.

use std::fs;
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use uuid::Uuid;

use super::errors::RegistryError;
use super::names::{validate_name, validate_tag, Algorithm, Digest};

/// Directory markers inside a repository; they cannot clash with name components, which never
/// start with `_`.
const BLOB_LINKS: &str = "_blobs";
const MANIFESTS: &str = "_manifests";

/// Handle on the registry's storage root.
#[derive(Debug, Clone)]
pub struct Storage {
    root: PathBuf,
}

/// A blob file found while walking the storage.
#[derive(Debug, Clone)]
pub struct StoredBlob {
    /// Its digest, from its path.
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
    /// Last modification (creation, or last re-upload that touched it).
    pub modified: SystemTime,
}

/// Runs blocking file system work off the async executor.
pub async fn blocking<T, F>(work: F) -> Result<T, RegistryError>
where
    F: FnOnce() -> Result<T, RegistryError> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|join| RegistryError::io("run blocking task", "", std::io::Error::other(join)))?
}

impl Storage {
    /// Creates the directory skeleton under `root`.
    pub fn open(root: PathBuf) -> Result<Self, RegistryError> {
        for dir in ["blobs", "repositories", "uploads"] {
            let path = root.join(dir);
            fs::create_dir_all(&path)
                .map_err(|source| RegistryError::io("create directory", path, source))?;
        }
        Ok(Self { root })
    }

    /// Directory of unfinished uploads.
    pub fn uploads_dir(&self) -> PathBuf {
        self.root.join("uploads")
    }

    /// Path of a blob's content.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        let hex = digest.hex();
        let fan_out = hex.get(..2).unwrap_or(hex);
        self.root
            .join("blobs")
            .join(digest.algorithm().as_str())
            .join(fan_out)
            .join(hex)
    }

    fn repo_dir(&self, name: &str) -> PathBuf {
        self.root.join("repositories").join(name)
    }

    fn blob_link(&self, name: &str, digest: &Digest) -> PathBuf {
        self.repo_dir(name)
            .join(BLOB_LINKS)
            .join(digest.algorithm().as_str())
            .join(digest.hex())
    }

    fn revision_path(&self, name: &str, digest: &Digest) -> PathBuf {
        self.repo_dir(name)
            .join(MANIFESTS)
            .join("revisions")
            .join(digest.algorithm().as_str())
            .join(digest.hex())
    }

    fn tags_dir(&self, name: &str) -> PathBuf {
        self.repo_dir(name).join(MANIFESTS).join("tags")
    }

    /// Size of a stored blob, if present.
    pub async fn blob_size(&self, digest: &Digest) -> Result<Option<u64>, RegistryError> {
        let path = self.blob_path(digest);
        match tokio::fs::metadata(&path).await {
            Ok(meta) => Ok(Some(meta.len())),
            Err(error) if error.kind() == ErrorKind::NotFound => Ok(None),
            Err(error) => Err(RegistryError::io("stat blob", path, error)),
        }
    }

    /// Size of a blob if the repository holds it (linked and present).
    pub async fn repo_blob_size(
        &self,
        name: &str,
        digest: &Digest,
    ) -> Result<Option<u64>, RegistryError> {
        if !exists(&self.blob_link(name, digest)).await? {
            return Ok(None);
        }
        self.blob_size(digest).await
    }

    /// Makes a stored blob part of a repository.
    pub async fn link_blob(&self, name: &str, digest: &Digest) -> Result<(), RegistryError> {
        write_atomic(self.blob_link(name, digest), Vec::new()).await
    }

    /// Removes a blob from a repository; `false` when it was not linked.
    pub async fn unlink_blob(&self, name: &str, digest: &Digest) -> Result<bool, RegistryError> {
        remove_file(self.blob_link(name, digest)).await
    }

    /// Moves a verified, synced temporary file into place as the blob `digest`. When the blob
    /// already exists the temporary file is dropped and the blob's time refreshed, so that a
    /// collection running right now sees it as fresh.
    pub async fn commit_blob(&self, temp: PathBuf, digest: &Digest) -> Result<(), RegistryError> {
        let target = self.blob_path(digest);
        blocking(move || {
            let parent = parent_of(&target)?;
            fs::create_dir_all(&parent)
                .map_err(|source| RegistryError::io("create directory", &parent, source))?;
            if target.exists() {
                touch(&target)?;
                return fs::remove_file(&temp)
                    .map_err(|source| RegistryError::io("remove temporary file", temp, source));
            }
            fs::rename(&temp, &target)
                .map_err(|source| RegistryError::io("move blob into place", &target, source))?;
            sync_dir(&parent)
        })
        .await
    }

    /// Stores a small in-memory blob (a manifest) that has already been hashed.
    pub async fn write_blob(&self, digest: &Digest, bytes: Vec<u8>) -> Result<(), RegistryError> {
        let temp = self
            .uploads_dir()
            .join(format!(".manifest-{}", Uuid::new_v4()));
        let temp_for_write = temp.clone();
        blocking(move || write_synced(&temp_for_write, &bytes)).await?;
        let committed = self.commit_blob(temp.clone(), digest).await;
        if committed.is_err() {
            let _ = tokio::fs::remove_file(&temp).await;
        }
        committed
    }

    /// Reads a whole blob into memory; only for manifests, whose size is bounded on the way in.
    pub async fn read_blob(&self, digest: &Digest) -> Result<Option<Vec<u8>>, RegistryError> {
        let path = self.blob_path(digest);
        match tokio::fs::read(&path).await {
            Ok(bytes) => Ok(Some(bytes)),
            Err(error) if error.kind() == ErrorKind::NotFound => Ok(None),
            Err(error) => Err(RegistryError::io("read blob", path, error)),
        }
    }

    /// Removes a blob's content; `false` when it was already gone.
    pub async fn delete_blob(&self, digest: &Digest) -> Result<bool, RegistryError> {
        remove_file(self.blob_path(digest)).await
    }

    /// Records that the repository has the manifest `digest` of `media_type`.
    pub async fn put_revision(
        &self,
        name: &str,
        digest: &Digest,
        media_type: &str,
    ) -> Result<(), RegistryError> {
        write_atomic(
            self.revision_path(name, digest),
            media_type.as_bytes().to_vec(),
        )
        .await
    }

    /// The media type of a manifest revision, if the repository has it.
    pub async fn revision(
        &self,
        name: &str,
        digest: &Digest,
    ) -> Result<Option<String>, RegistryError> {
        read_small(self.revision_path(name, digest)).await
    }

    /// Removes a manifest revision; `false` when absent.
    pub async fn delete_revision(
        &self,
        name: &str,
        digest: &Digest,
    ) -> Result<bool, RegistryError> {
        remove_file(self.revision_path(name, digest)).await
    }

    /// Every manifest revision of a repository.
    pub async fn revisions(&self, name: &str) -> Result<Vec<Digest>, RegistryError> {
        let base = self.repo_dir(name).join(MANIFESTS).join("revisions");
        list_digests(base).await
    }

    /// Every blob link of a repository.
    pub async fn blob_links(&self, name: &str) -> Result<Vec<Digest>, RegistryError> {
        list_digests(self.repo_dir(name).join(BLOB_LINKS)).await
    }

    /// Points `tag` at `digest`.
    pub async fn put_tag(
        &self,
        name: &str,
        tag: &str,
        digest: &Digest,
    ) -> Result<(), RegistryError> {
        write_atomic(
            self.tags_dir(name).join(tag),
            digest.to_string().into_bytes(),
        )
        .await
    }

    /// The digest a tag points at.
    pub async fn tag(&self, name: &str, tag: &str) -> Result<Option<Digest>, RegistryError> {
        let path = self.tags_dir(name).join(tag);
        match read_small(path.clone()).await? {
            None => Ok(None),
            Some(text) => Digest::parse(text.trim()).map(Some).map_err(|_| {
                RegistryError::io(
                    "parse tag file",
                    path,
                    std::io::Error::new(ErrorKind::InvalidData, "tag file holds no valid digest"),
                )
            }),
        }
    }

    /// Removes a tag; `false` when absent.
    pub async fn delete_tag(&self, name: &str, tag: &str) -> Result<bool, RegistryError> {
        remove_file(self.tags_dir(name).join(tag)).await
    }

    /// Every tag of a repository, sorted byte-wise.
    pub async fn tags(&self, name: &str) -> Result<Vec<String>, RegistryError> {
        let dir = self.tags_dir(name);
        let mut tags = list_dir(dir).await?;
        tags.retain(|tag| validate_tag(tag).is_ok());
        tags.sort();
        Ok(tags)
    }

    /// Whether the repository has ever received content.
    pub async fn repo_exists(&self, name: &str) -> Result<bool, RegistryError> {
        let dir = self.repo_dir(name);
        Ok(exists(&dir.join(MANIFESTS)).await? || exists(&dir.join(BLOB_LINKS)).await?)
    }

    /// Every repository name, sorted.
    pub async fn repositories(&self) -> Result<Vec<String>, RegistryError> {
        let base = self.root.join("repositories");
        blocking(move || {
            let mut found = Vec::new();
            walk_repositories(&base, "", &mut found)?;
            found.sort();
            Ok(found)
        })
        .await
    }

    /// Every stored blob with its size and time, for garbage collection.
    pub async fn stored_blobs(&self) -> Result<Vec<StoredBlob>, RegistryError> {
        let base = self.root.join("blobs");
        blocking(move || {
            let mut found = Vec::new();
            for algorithm in Algorithm::ALL {
                for fan_out in read_dir_names(&base.join(algorithm.as_str()))? {
                    let dir = base.join(algorithm.as_str()).join(&fan_out);
                    for hex in read_dir_names(&dir)? {
                        let Some(digest) = Digest::from_parts(algorithm, &hex) else {
                            continue;
                        };
                        let path = dir.join(&hex);
                        let meta = match fs::metadata(&path) {
                            Ok(meta) => meta,
                            Err(error) if error.kind() == ErrorKind::NotFound => continue,
                            Err(error) => return Err(RegistryError::io("stat blob", path, error)),
                        };
                        let modified = meta.modified().unwrap_or_else(|_| SystemTime::now());
                        found.push(StoredBlob {
                            digest,
                            size: meta.len(),
                            modified,
                        });
                    }
                }
            }
            Ok(found)
        })
        .await
    }
}

/// Collects repositories below `dir`; a directory is one when it holds content markers.
fn walk_repositories(
    dir: &Path,
    prefix: &str,
    found: &mut Vec<String>,
) -> Result<(), RegistryError> {
    let names = read_dir_names(dir)?;
    if !prefix.is_empty() && names.iter().any(|n| n == MANIFESTS || n == BLOB_LINKS) {
        found.push(prefix.to_owned());
    }
    for child in names
        .iter()
        .filter(|n| !n.starts_with('_') && !n.starts_with('.'))
    {
        let name = if prefix.is_empty() {
            child.clone()
        } else {
            format!("{prefix}/{child}")
        };
        // Only descend into what could be part of a valid name; anything else is not ours.
        if validate_name(&name).is_ok() && dir.join(child).is_dir() {
            walk_repositories(&dir.join(child), &name, found)?;
        }
    }
    Ok(())
}

/// File names in a directory; a missing directory is empty.
fn read_dir_names(dir: &Path) -> Result<Vec<String>, RegistryError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(RegistryError::io("list directory", dir, error)),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| RegistryError::io("list directory", dir, source))?;
        if let Ok(name) = entry.file_name().into_string() {
            names.push(name);
        }
    }
    Ok(names)
}

async fn list_dir(dir: PathBuf) -> Result<Vec<String>, RegistryError> {
    blocking(move || read_dir_names(&dir)).await
}

/// Digests stored as `<base>/<alg>/<hex>`.
async fn list_digests(base: PathBuf) -> Result<Vec<Digest>, RegistryError> {
    blocking(move || {
        let mut digests = Vec::new();
        for algorithm in Algorithm::ALL {
            for hex in read_dir_names(&base.join(algorithm.as_str()))? {
                digests.extend(Digest::from_parts(algorithm, &hex));
            }
        }
        digests.sort();
        Ok(digests)
    })
    .await
}

async fn exists(path: &Path) -> Result<bool, RegistryError> {
    tokio::fs::try_exists(path)
        .await
        .map_err(|source| RegistryError::io("stat", path, source))
}

async fn read_small(path: PathBuf) -> Result<Option<String>, RegistryError> {
    match tokio::fs::read_to_string(&path).await {
        Ok(text) => Ok(Some(text)),
        Err(error) if error.kind() == ErrorKind::NotFound => Ok(None),
        Err(error) => Err(RegistryError::io("read", path, error)),
    }
}

async fn remove_file(path: PathBuf) -> Result<bool, RegistryError> {
    match tokio::fs::remove_file(&path).await {
        Ok(()) => Ok(true),
        Err(error) if error.kind() == ErrorKind::NotFound => Ok(false),
        Err(error) => Err(RegistryError::io("remove", path, error)),
    }
}

fn parent_of(path: &Path) -> Result<PathBuf, RegistryError> {
    path.parent().map(Path::to_path_buf).ok_or_else(|| {
        RegistryError::io(
            "find parent directory",
            path,
            std::io::Error::new(ErrorKind::InvalidInput, "path has no parent"),
        )
    })
}

/// Writes `bytes` to `path` via a temporary file in the same directory and a rename.
pub async fn write_atomic(path: PathBuf, bytes: Vec<u8>) -> Result<(), RegistryError> {
    blocking(move || {
        let parent = parent_of(&path)?;
        fs::create_dir_all(&parent)
            .map_err(|source| RegistryError::io("create directory", &parent, source))?;
        let temp = parent.join(format!(".tmp-{}", Uuid::new_v4()));
        if let Err(error) = write_synced(&temp, &bytes) {
            let _ = fs::remove_file(&temp);
            return Err(error);
        }
        if let Err(source) = fs::rename(&temp, &path) {
            let _ = fs::remove_file(&temp);
            return Err(RegistryError::io("rename into place", path, source));
        }
        sync_dir(&parent)
    })
    .await
}

/// Creates `path` with `bytes` and flushes it to disk.
fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), RegistryError> {
    let mut file =
        fs::File::create(path).map_err(|source| RegistryError::io("create file", path, source))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|source| RegistryError::io("write file", path, source))
}

/// Flushes a directory so that a rename into it survives a crash.
pub fn sync_dir(dir: &Path) -> Result<(), RegistryError> {
    fs::File::open(dir)
        .and_then(|handle| handle.sync_all())
        .map_err(|source| RegistryError::io("sync directory", dir, source))
}

/// Sets a file's modification time to now.
fn touch(path: &Path) -> Result<(), RegistryError> {
    fs::OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|file| file.set_modified(SystemTime::now()))
        .map_err(|source| RegistryError::io("touch blob", path, source))
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    fn storage() -> anyhow::Result<(tempfile::TempDir, Storage)> {
        let dir = tempfile::tempdir()?;
        let storage = Storage::open(dir.path().to_path_buf())?;
        Ok((dir, storage))
    }

    #[tokio::test]
    async fn blobs_commit_atomically_and_deduplicate() -> anyhow::Result<()> {
        let (_dir, storage) = storage()?;
        let digest = Digest::of(Algorithm::Sha256, b"data");
        storage.write_blob(&digest, b"data".to_vec()).await?;
        assert_eq!(storage.blob_size(&digest).await?, Some(4));
        assert!(storage.blob_path(&digest).ends_with(format!(
            "blobs/sha256/{}/{}",
            &digest.hex()[..2],
            digest.hex()
        )));
        // Committing identical content again keeps one copy and leaves no temporary file.
        storage.write_blob(&digest, b"data".to_vec()).await?;
        let leftovers = read_dir_names(&storage.uploads_dir())?;
        assert!(leftovers.is_empty(), "{leftovers:?}");
        let blobs = storage.stored_blobs().await?;
        assert_eq!(blobs.len(), 1);
        assert_eq!(
            storage.read_blob(&digest).await?.as_deref(),
            Some(&b"data"[..])
        );
        Ok(())
    }

    #[tokio::test]
    async fn links_revisions_and_tags_round_trip() -> anyhow::Result<()> {
        let (_dir, storage) = storage()?;
        let digest = Digest::of(Algorithm::Sha256, b"m");
        assert!(!storage.repo_exists("a/b").await?);
        storage.write_blob(&digest, b"m".to_vec()).await?;
        assert_eq!(storage.repo_blob_size("a/b", &digest).await?, None);
        storage.link_blob("a/b", &digest).await?;
        assert_eq!(storage.repo_blob_size("a/b", &digest).await?, Some(1));
        storage
            .put_revision("a/b", &digest, "application/x")
            .await?;
        storage.put_tag("a/b", "v2", &digest).await?;
        storage.put_tag("a/b", "v1", &digest).await?;
        assert_eq!(storage.tag("a/b", "v1").await?, Some(digest.clone()));
        assert_eq!(storage.tags("a/b").await?, ["v1", "v2"]);
        assert_eq!(
            storage.revision("a/b", &digest).await?.as_deref(),
            Some("application/x")
        );
        storage.link_blob("c", &digest).await?;
        assert_eq!(storage.repositories().await?, ["a/b", "c"]);
        assert!(storage.delete_tag("a/b", "v1").await?);
        assert!(!storage.delete_tag("a/b", "v1").await?);
        assert!(storage.unlink_blob("a/b", &digest).await?);
        assert_eq!(storage.revisions("a/b").await?, [digest]);
        Ok(())
    }

    #[tokio::test]
    async fn atomic_writes_leave_no_temporary_files() -> anyhow::Result<()> {
        let (dir, storage) = storage()?;
        let digest = Digest::of(Algorithm::Sha256, b"x");
        storage.put_tag("r", "t", &digest).await?;
        storage.put_tag("r", "t", &digest).await?;
        let tags_dir = dir.path().join("repositories/r/_manifests/tags");
        assert_eq!(read_dir_names(&tags_dir)?, ["t"]);
        let text = fs::read_to_string(tags_dir.join("t")).context("tag file")?;
        assert_eq!(text, digest.to_string());
        Ok(())
    }
}
