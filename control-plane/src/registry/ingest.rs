//! Receiving blob content: into a temporary file, hashed and measured on the way, and only
//! then moved into place.
//!
//! hyper drops a request handler when its client disconnects, so cleanup cannot rely on code
//! after an `.await`: temporary files belong to a [`TempFile`] guard that removes them on drop.

use std::path::{Path, PathBuf};

use hyper::body::Body as HttpBody;
use tokio::io::{AsyncReadExt, BufWriter};
use uuid::Uuid;

use super::errors::RegistryError;
use super::names::{Algorithm, Digest, Hasher};
use super::stream::copy_body;
use super::Registry;

/// Write buffer for upload data, so that small frames do not each cost a blocking write.
pub const WRITE_BUFFER: usize = 256 * 1024;

/// A file under `uploads/` that is deleted when dropped unless it was committed.
pub struct TempFile {
    path: PathBuf,
    keep: bool,
}

impl TempFile {
    /// A fresh temporary path in `dir`.
    pub fn new(dir: &Path, kind: &str) -> Self {
        Self {
            path: dir.join(format!(".{kind}-{}", Uuid::new_v4())),
            keep: false,
        }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Gives up ownership: the file was moved away.
    fn disarm(mut self) -> PathBuf {
        self.keep = true;
        std::mem::take(&mut self.path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        let path = std::mem::take(&mut self.path);
        // Unlinking can block on slow storage; keep it off the executor when there is one.
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn_blocking(move || remove_quietly(&path));
            }
            Err(_) => remove_quietly(&path),
        }
    }
}

fn remove_quietly(path: &Path) {
    if let Err(error) = std::fs::remove_file(path) {
        if error.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(path = %path.display(), %error, "removing a temporary upload file failed");
        }
    }
}

/// Blob content that has been received, measured and hashed, not yet visible.
pub struct Verified {
    temp: TempFile,
    /// The content digest, equal to the one announced.
    pub digest: Digest,
    /// The content length.
    pub size: u64,
}

/// Hashes a file from disk (restart recovery, or a digest algorithm other than the session's),
/// returning the hash state and the length.
pub async fn hash_file(path: &Path, algorithm: Algorithm) -> Result<(Hasher, u64), RegistryError> {
    let mut file = tokio::fs::File::open(path)
        .await
        .map_err(|source| RegistryError::io("open upload data", path, source))?;
    let mut hasher = Hasher::new(algorithm);
    let mut buffer = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let read = file
            .read(&mut buffer)
            .await
            .map_err(|source| RegistryError::io("read upload data", path, source))?;
        let Some(chunk) = buffer.get(..read).filter(|chunk| !chunk.is_empty()) else {
            break;
        };
        hasher.update(chunk);
        total = total.saturating_add(u64::try_from(read).unwrap_or(0));
    }
    Ok((hasher, total))
}

impl Registry {
    /// Receives a whole blob into a temporary file and checks its length and digest.
    pub(crate) async fn ingest<B>(
        &self,
        body: &mut B,
        declared: Option<u64>,
        digest: &Digest,
    ) -> Result<Verified, RegistryError>
    where
        B: HttpBody<Data = bytes::Bytes> + Unpin,
        B::Error: std::fmt::Display,
    {
        let temp = TempFile::new(&self.storage.uploads_dir(), "blob");
        let file = tokio::fs::File::create(temp.path())
            .await
            .map_err(|source| RegistryError::io("create upload file", temp.path(), source))?;
        let mut writer = BufWriter::with_capacity(WRITE_BUFFER, file);
        let mut hasher = Hasher::new(digest.algorithm());
        let size = copy_body(
            body,
            &mut writer,
            &mut hasher,
            declared,
            self.config.body_idle_timeout,
        )
        .await?;
        if let Some(declared) = declared.filter(|declared| *declared != size) {
            return Err(RegistryError::SizeInvalid {
                declared,
                received: size,
            });
        }
        let computed = hasher.finish();
        if &computed != digest {
            return Err(RegistryError::DigestMismatch {
                expected: digest.to_string(),
                computed: computed.to_string(),
            });
        }
        writer
            .into_inner()
            .sync_all()
            .await
            .map_err(|source| RegistryError::io("sync upload file", temp.path(), source))?;
        Ok(Verified {
            temp,
            digest: computed,
            size,
        })
    }

    /// Makes verified content visible in `name`.
    pub(crate) async fn commit(&self, name: &str, verified: Verified) -> Result<(), RegistryError> {
        let path = verified.temp.disarm();
        self.commit_file(name, path, &verified.digest).await
    }

    /// Moves a verified, synced file into place as `digest` and links it into `name`, excluded
    /// against a running collection.
    pub(crate) async fn commit_file(
        &self,
        name: &str,
        path: PathBuf,
        digest: &Digest,
    ) -> Result<(), RegistryError> {
        let _guard = self.gc_lock.read().await;
        self.storage.commit_blob(path, digest).await?;
        self.storage.link_blob(name, digest).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[tokio::test]
    async fn temp_files_are_removed_unless_disarmed() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let dropped = TempFile::new(dir.path(), "t");
        std::fs::write(dropped.path(), b"x")?;
        let dropped_path = dropped.path().to_path_buf();
        drop(dropped);
        let kept = TempFile::new(dir.path(), "t");
        std::fs::write(kept.path(), b"x")?;
        let kept_path = kept.disarm();
        // Removal runs on the blocking pool; give it a moment.
        for _ in 0..100 {
            if !dropped_path.exists() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert!(!dropped_path.exists());
        assert!(kept_path.exists());
        Ok(())
    }
}
