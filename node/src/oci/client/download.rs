//! Blob downloads streamed to a file, verified against the descriptor's size and digest, and
//! resumed with `Range: bytes=N-` when an earlier attempt left a partial file behind.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use futures::StreamExt;
use reqwest::header::{CONTENT_RANGE, RANGE};
use reqwest::{Method, Response, StatusCode, Url};
use sha2::{Digest as _, Sha256};
use tokio::fs::{self, File, OpenOptions};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use super::{
    auth::Scope, expect_status, header_str, io_error, ClientError, Progress, RegistryClient,
};
use crate::oci::digest::Digest;
use crate::oci::manifest::Descriptor;
use crate::oci::reference::Reference;

/// What a blob download did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobDownload {
    /// Bytes kept from an earlier, interrupted attempt.
    pub resumed_from: u64,
    /// Bytes received over the network by this call.
    pub fetched: u64,
}

/// Where the download of `dest` accumulates until it is verified: `dest` plus `.partial`.
pub fn partial_path(dest: &Path) -> PathBuf {
    let mut name = dest.as_os_str().to_owned();
    name.push(OsString::from(".partial"));
    PathBuf::from(name)
}

/// An open partial file and the hash of what it holds.
struct Partial {
    path: PathBuf,
    file: File,
    hasher: Sha256,
    len: u64,
}

impl Partial {
    async fn open(path: PathBuf, expected: u64) -> Result<Self, ClientError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .await
            .map_err(io_error("open", &path))?;
        let len = file
            .metadata()
            .await
            .map_err(io_error("stat", &path))?
            .len();
        let mut partial = Self {
            path,
            file,
            hasher: Sha256::new(),
            len: 0,
        };
        if len > expected {
            partial.restart().await?;
            return Ok(partial);
        }
        // The hash state of the earlier attempt is gone, so the kept bytes are hashed again.
        let mut buffer = vec![0; 64 * 1024];
        loop {
            let n = partial
                .file
                .read(&mut buffer)
                .await
                .map_err(io_error("read", &partial.path))?;
            let Some(read) = buffer.get(..n).filter(|b| !b.is_empty()) else {
                break;
            };
            partial.hasher.update(read);
            partial.len += n as u64;
        }
        Ok(partial)
    }

    async fn restart(&mut self) -> Result<(), ClientError> {
        self.file
            .set_len(0)
            .await
            .map_err(io_error("truncate", &self.path))?;
        self.file
            .seek(std::io::SeekFrom::Start(0))
            .await
            .map_err(io_error("seek", &self.path))?;
        self.hasher = Sha256::new();
        self.len = 0;
        Ok(())
    }

    async fn append(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        self.file
            .write_all(bytes)
            .await
            .map_err(io_error("write", &self.path))?;
        self.hasher.update(bytes);
        self.len += bytes.len() as u64;
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), ClientError> {
        self.file
            .flush()
            .await
            .map_err(io_error("flush", &self.path))
    }
}

impl RegistryClient {
    /// Downloads the blob `descriptor` names from `reference`'s repository into `dest`,
    /// atomically: bytes accumulate in [`partial_path`]`(dest)`, which is renamed to `dest` only
    /// once size and digest match. A partial file from an earlier attempt is resumed with a
    /// range request; if the transfer is cut, what arrived stays for the next call.
    pub async fn download_blob(
        &self,
        reference: &Reference,
        descriptor: &Descriptor,
        dest: &Path,
        progress: Option<Progress<'_>>,
    ) -> Result<BlobDownload, ClientError> {
        let expected = descriptor.size;
        let url = self.repo_url(reference, &format!("blobs/{}", descriptor.digest))?;
        let mut partial = Partial::open(partial_path(dest), expected).await?;
        let resumed_from = partial.len;
        let mut fetched = 0;
        if partial.len < expected {
            let response = self.open_blob_stream(reference, &url, &mut partial).await?;
            let mut stream = response.bytes_stream();
            while let Some(chunk) = stream.next().await {
                let chunk = match chunk {
                    Ok(chunk) => chunk,
                    Err(e) => {
                        partial.flush().await?;
                        return Err(ClientError::Interrupted {
                            digest: descriptor.digest.clone(),
                            url: url.to_string(),
                            received: partial.len,
                            expected,
                            reason: error_chain(&e),
                        });
                    }
                };
                let actual = partial.len + chunk.len() as u64;
                if actual > expected {
                    drop(partial);
                    remove_quietly(&partial_path(dest)).await;
                    return Err(ClientError::SizeMismatch {
                        digest: descriptor.digest.clone(),
                        url: url.to_string(),
                        expected,
                        actual,
                    });
                }
                partial.append(&chunk).await?;
                fetched += chunk.len() as u64;
                if let Some(progress) = progress {
                    progress(partial.len, expected);
                }
            }
            partial.flush().await?;
        }
        if partial.len != expected {
            return Err(ClientError::Interrupted {
                digest: descriptor.digest.clone(),
                url: url.to_string(),
                received: partial.len,
                expected,
                reason: "the server ended the body early".to_owned(),
            });
        }
        let actual = Digest::from_hasher(partial.hasher.clone());
        if actual != descriptor.digest {
            drop(partial);
            remove_quietly(&partial_path(dest)).await;
            return Err(ClientError::DigestMismatch {
                url: url.to_string(),
                expected: descriptor.digest.clone(),
                actual,
            });
        }
        partial
            .file
            .sync_all()
            .await
            .map_err(io_error("sync", &partial.path))?;
        let path = partial.path;
        fs::rename(&path, dest)
            .await
            .map_err(io_error("rename", &path))?;
        Ok(BlobDownload {
            resumed_from,
            fetched,
        })
    }

    /// Sends the GET, with a range when `partial` holds bytes; if the server cannot serve that
    /// range, starts over from byte 0.
    async fn open_blob_stream(
        &self,
        reference: &Reference,
        url: &Url,
        partial: &mut Partial,
    ) -> Result<Response, ClientError> {
        let scope = Scope::pull(reference.repository());
        loop {
            let offset = partial.len;
            let response = self
                .send(reference.registry(), &scope, || {
                    let request = self.http.get(url.clone());
                    if offset > 0 {
                        request.header(RANGE, format!("bytes={offset}-"))
                    } else {
                        request
                    }
                })
                .await?;
            let status = response.status();
            let range_start = header_str(response.headers(), CONTENT_RANGE.as_str())
                .and_then(content_range_start);
            match status {
                StatusCode::PARTIAL_CONTENT if offset > 0 && range_start == Some(offset) => {
                    return Ok(response);
                }
                StatusCode::OK => {
                    // The server ignored the range and sends everything.
                    partial.restart().await?;
                    return Ok(response);
                }
                StatusCode::PARTIAL_CONTENT | StatusCode::RANGE_NOT_SATISFIABLE if offset > 0 => {
                    tracing::debug!(%url, offset, %status, "registry refused the resume range; starting over");
                    partial.restart().await?;
                }
                _ => return expect_status(response, &Method::GET, &[StatusCode::OK]).await,
            }
        }
    }
}

/// The first byte of `Content-Range: bytes 100-199/200`.
fn content_range_start(header: &str) -> Option<u64> {
    let range = header.trim().strip_prefix("bytes ")?;
    let (start, _) = range.split_once('-')?;
    start.trim().parse().ok()
}

/// An error with its causes, since reqwest's top-level message is often just "error decoding
/// response body".
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

async fn remove_quietly(path: &Path) {
    if let Err(e) = fs::remove_file(path).await {
        tracing::warn!(path = %path.display(), error = %e, "cannot remove a bad partial download");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_path_appends_suffix() {
        assert_eq!(
            partial_path(Path::new("/c/blobs/sha256/abc")),
            PathBuf::from("/c/blobs/sha256/abc.partial")
        );
    }

    #[test]
    fn content_range_parsing() {
        assert_eq!(content_range_start("bytes 100-199/200"), Some(100));
        assert_eq!(content_range_start("bytes 0-0/*"), Some(0));
        assert_eq!(content_range_start("items 1-2/3"), None);
        assert_eq!(content_range_start("bytes x-1/2"), None);
    }

    #[tokio::test]
    async fn partial_open_hashes_kept_bytes_and_drops_oversized_ones() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("blob.partial");
        std::fs::write(&path, b"hello").expect("write");
        let partial = Partial::open(path.clone(), 10).await.expect("open");
        assert_eq!(partial.len, 5);
        assert_eq!(
            Digest::from_hasher(partial.hasher.clone()),
            Digest::of(b"hello")
        );
        drop(partial);
        let partial = Partial::open(path.clone(), 3).await.expect("open");
        assert_eq!(partial.len, 0, "longer than the blob: start over");
        assert_eq!(std::fs::metadata(&path).expect("stat").len(), 0);
    }
}
