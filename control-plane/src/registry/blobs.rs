//! Blob reads (with HTTP ranges) and blob deletion.

use std::io::{ErrorKind, SeekFrom};

use http::{header, HeaderMap, Response, StatusCode};
use tokio::io::AsyncSeekExt;

use super::errors::RegistryError;
use super::names::Digest;
use super::stream::reader_body;
use super::{empty_body, header_str, set_header, status_only, Body, Registry};

/// What a `Range` header asks of a blob of known size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    /// No usable range: send everything (RFC 9110 lets a server ignore ranges it does not
    /// support, such as several ranges at once).
    Full,
    /// Bytes `start..=end`.
    Partial {
        /// First byte.
        start: u64,
        /// Last byte, inclusive.
        end: u64,
    },
    /// The range lies beyond the blob.
    Unsatisfiable,
}

impl ByteRange {
    /// Interprets a `Range` header value for a blob of `size` bytes.
    pub fn parse(value: &str, size: u64) -> Self {
        let Some(spec) = value.trim().strip_prefix("bytes=") else {
            return Self::Full;
        };
        if spec.contains(',') {
            return Self::Full;
        }
        let Some((first, last)) = spec.trim().split_once('-') else {
            return Self::Full;
        };
        let (first, last) = (first.trim(), last.trim());
        if first.is_empty() {
            // Suffix range: the last `n` bytes.
            let Ok(n) = last.parse::<u64>() else {
                return Self::Full;
            };
            if n == 0 || size == 0 {
                return Self::Unsatisfiable;
            }
            return Self::Partial {
                start: size.saturating_sub(n),
                end: size - 1,
            };
        }
        let Ok(start) = first.parse::<u64>() else {
            return Self::Full;
        };
        let end = if last.is_empty() {
            u64::MAX
        } else {
            match last.parse::<u64>() {
                Ok(end) if end >= start => end,
                _ => return Self::Full,
            }
        };
        if start >= size {
            return Self::Unsatisfiable;
        }
        Self::Partial {
            start,
            end: end.min(size - 1),
        }
    }
}

impl Registry {
    /// `GET`/`HEAD /v2/<name>/blobs/<digest>`, pulling through a mirror when configured.
    pub(crate) async fn get_blob(
        &self,
        name: &str,
        digest: &Digest,
        headers: &HeaderMap,
        head: bool,
    ) -> Result<Response<Body>, RegistryError> {
        let size = match self.storage.repo_blob_size(name, digest).await? {
            Some(size) => size,
            None => match self.mirror_for(name) {
                Some(mirror) => self.pull_blob(mirror, name, digest).await?,
                None => return Err(blob_unknown(name, digest)),
            },
        };
        let range = match header_str(headers, header::RANGE) {
            Some(value) if !head => ByteRange::parse(value, size),
            _ => ByteRange::Full,
        };
        let (status, start, len) = match range {
            ByteRange::Full => (StatusCode::OK, 0, size),
            ByteRange::Partial { start, end } => {
                (StatusCode::PARTIAL_CONTENT, start, end - start + 1)
            }
            ByteRange::Unsatisfiable => {
                let mut response = status_only(StatusCode::RANGE_NOT_SATISFIABLE);
                set_header(
                    response.headers_mut(),
                    header::CONTENT_RANGE,
                    &format!("bytes */{size}"),
                );
                return Ok(response);
            }
        };
        let body = if head {
            empty_body()
        } else {
            let path = self.storage.blob_path(digest);
            let mut file = match tokio::fs::File::open(&path).await {
                Ok(file) => file,
                // Collected between the size check and now.
                Err(error) if error.kind() == ErrorKind::NotFound => {
                    return Err(blob_unknown(name, digest))
                }
                Err(error) => return Err(RegistryError::io("open blob", path, error)),
            };
            file.seek(SeekFrom::Start(start))
                .await
                .map_err(|source| RegistryError::io("seek blob", &path, source))?;
            reader_body(file, len)
        };
        let mut response = Response::new(body);
        *response.status_mut() = status;
        let out = response.headers_mut();
        set_header(out, header::CONTENT_TYPE, "application/octet-stream");
        set_header(out, header::CONTENT_LENGTH, &len.to_string());
        set_header(out, super::CONTENT_DIGEST, &digest.to_string());
        set_header(out, header::ETAG, &format!("\"{digest}\""));
        set_header(out, header::ACCEPT_RANGES, "bytes");
        // Content addressed: the bytes behind this URL never change.
        set_header(out, header::CACHE_CONTROL, "max-age=31536000");
        if let ByteRange::Partial { start, end } = range {
            set_header(
                out,
                header::CONTENT_RANGE,
                &format!("bytes {start}-{end}/{size}"),
            );
        }
        Ok(response)
    }

    /// `DELETE /v2/<name>/blobs/<digest>`: removes the blob from the repository; its content
    /// goes at the next collection if nothing else references it.
    pub(crate) async fn delete_blob(
        &self,
        name: &str,
        digest: &Digest,
    ) -> Result<Response<Body>, RegistryError> {
        if self.storage.unlink_blob(name, digest).await? {
            Ok(status_only(StatusCode::ACCEPTED))
        } else {
            Err(blob_unknown(name, digest))
        }
    }
}

fn blob_unknown(name: &str, digest: &Digest) -> RegistryError {
    RegistryError::BlobUnknown {
        name: name.to_owned(),
        digest: digest.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_follow_rfc_9110() {
        let partial = |start, end| ByteRange::Partial { start, end };
        assert_eq!(ByteRange::parse("bytes=0-9", 100), partial(0, 9));
        assert_eq!(ByteRange::parse("bytes=90-", 100), partial(90, 99));
        assert_eq!(ByteRange::parse("bytes=90-500", 100), partial(90, 99));
        assert_eq!(ByteRange::parse("bytes=-10", 100), partial(90, 99));
        assert_eq!(ByteRange::parse("bytes=-500", 100), partial(0, 99));
        assert_eq!(
            ByteRange::parse("bytes=100-", 100),
            ByteRange::Unsatisfiable
        );
        assert_eq!(
            ByteRange::parse("bytes=100-200", 100),
            ByteRange::Unsatisfiable
        );
        assert_eq!(ByteRange::parse("bytes=-0", 100), ByteRange::Unsatisfiable);
        assert_eq!(ByteRange::parse("bytes=0-", 0), ByteRange::Unsatisfiable);
        assert_eq!(ByteRange::parse("bytes=-5", 0), ByteRange::Unsatisfiable);
        for ignored in [
            "items=0-5",
            "bytes=5-2",
            "bytes=a-b",
            "bytes=0-1,5-6",
            "bytes=-x",
            "bytes",
        ] {
            assert_eq!(ByteRange::parse(ignored, 100), ByteRange::Full, "{ignored}");
        }
    }
}
