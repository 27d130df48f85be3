//! Blob uploads: single-request, POST-then-PUT, chunked PATCH sessions and cross-repo mounts.
//!
//! Upload bytes go to `uploads/` and are hashed as they arrive; only a body whose length and
//! digest both check out is synced and renamed into `blobs/`. A session keeps its incremental
//! hash in memory and is rebuilt from its data file after a restart. Because hyper drops a
//! handler when its client disconnects, a chunk may be half written: a session's data file is
//! therefore cut back to the last acknowledged offset at the start of every request.

use std::collections::HashMap;
use std::io::SeekFrom;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::SystemTime;

use http::{header, HeaderMap, Response, StatusCode};
use hyper::body::{Body as HttpBody, Incoming};
use tokio::io::{AsyncSeekExt, BufWriter};
use tokio::sync::Mutex;
use uuid::Uuid;

use super::errors::RegistryError;
use super::ingest::{hash_file, WRITE_BUFFER};
use super::names::{validate_name, Algorithm, Digest, Hasher};
use super::routes::Query;
use super::storage::blocking;
use super::stream::copy_body;
use super::{content_length, created, header_str, upload_range, Registry};

/// One chunked upload.
struct Session {
    name: String,
    offset: u64,
    hasher: Hasher,
    /// Set when the session ended while another request waited for it.
    closed: bool,
}

/// Open upload sessions, each behind its own lock so that chunks of one upload serialize.
#[derive(Default)]
pub struct Sessions {
    open: StdMutex<HashMap<Uuid, Arc<Mutex<Session>>>>,
}

impl Sessions {
    fn insert(&self, id: Uuid, session: Session) -> Arc<Mutex<Session>> {
        let session = Arc::new(Mutex::new(session));
        if let Ok(mut open) = self.open.lock() {
            open.insert(id, Arc::clone(&session));
        }
        session
    }

    fn get(&self, id: &Uuid) -> Option<Arc<Mutex<Session>>> {
        self.open.lock().ok()?.get(id).cloned()
    }

    fn remove(&self, id: &Uuid) {
        if let Ok(mut open) = self.open.lock() {
            open.remove(id);
        }
    }
}

/// Marks a session closed and forgets it; the caller holds its lock.
fn close_session(sessions: &Sessions, id: &Uuid, session: &mut Session) {
    session.closed = true;
    sessions.remove(id);
}

/// `Content-Range` of an upload chunk: `<start>-<end>` (spec) or `bytes <start>-<end>/<total|*>`.
fn parse_content_range(value: &str) -> Option<(u64, u64)> {
    let value = value.trim();
    let range = value
        .strip_prefix("bytes ")
        .map(|rest| rest.split('/').next().unwrap_or(rest))
        .unwrap_or(value);
    let (start, end) = range.split_once('-')?;
    let (start, end) = (start.trim().parse().ok()?, end.trim().parse().ok()?);
    (end >= start).then_some((start, end))
}

/// How many bytes a chunk request announces, checking `Content-Range` against the offset.
fn chunk_length(headers: &HeaderMap, id: &Uuid, offset: u64) -> Result<Option<u64>, RegistryError> {
    let length = content_length(headers)?;
    let Some(range) = header_str(headers, header::CONTENT_RANGE) else {
        return Ok(length);
    };
    let invalid = |reason: String| RegistryError::UploadInvalid {
        id: id.to_string(),
        reason,
    };
    let (start, end) = parse_content_range(range).ok_or_else(|| {
        invalid(format!(
            "malformed Content-Range {range:?}; expected <start>-<end>"
        ))
    })?;
    if start != offset {
        return Err(RegistryError::UploadOutOfOrder {
            id: id.to_string(),
            offset,
            start,
        });
    }
    let ranged = (end - start)
        .checked_add(1)
        .ok_or_else(|| invalid(format!("Content-Range {range:?} is too large")))?;
    match length {
        Some(length) if length != ranged => Err(invalid(format!(
            "Content-Length {length} disagrees with Content-Range {range:?}"
        ))),
        _ => Ok(Some(ranged)),
    }
}

/// Whether a request carries body bytes (a final chunk on PUT).
fn has_body(body: &Incoming) -> bool {
    !body.is_end_stream()
}

impl Registry {
    fn session_dir(&self, id: &Uuid) -> PathBuf {
        self.storage.uploads_dir().join(id.to_string())
    }

    /// `POST /v2/<name>/blobs/uploads/`: mount, single-request upload, or session start.
    pub(crate) async fn start_upload(
        &self,
        name: &str,
        query: &Query,
        headers: &HeaderMap,
        body: &mut Incoming,
    ) -> Result<Response<super::Body>, RegistryError> {
        if let Some(mount) = query.get("mount") {
            let digest = Digest::parse(mount)?;
            if self.mount(name, &digest, query.get("from")).await? {
                return Ok(created(&format!("/v2/{name}/blobs/{digest}"), &digest));
            }
        }
        if let Some(digest) = query.get("digest") {
            let digest = Digest::parse(digest)?;
            let verified = self.ingest(body, content_length(headers)?, &digest).await?;
            self.commit(name, verified).await?;
            return Ok(created(&format!("/v2/{name}/blobs/{digest}"), &digest));
        }
        let algorithm = match query.get("digest-algorithm") {
            None => Algorithm::Sha256,
            Some(requested) => {
                Algorithm::parse(requested).ok_or_else(|| RegistryError::DigestInvalid {
                    digest: requested.to_owned(),
                    reason: "only sha256 and sha512 digests are supported",
                })?
            }
        };
        let id = Uuid::new_v4();
        let dir = self.session_dir(&id);
        let info = serde_json::json!({ "name": name, "algorithm": algorithm.as_str() }).to_string();
        let dir_for_create = dir.clone();
        blocking(move || {
            std::fs::create_dir_all(&dir_for_create)
                .and_then(|()| std::fs::write(dir_for_create.join("data"), b""))
                .and_then(|()| std::fs::write(dir_for_create.join("info"), info))
                .map_err(|source| {
                    RegistryError::io("create upload session", &dir_for_create, source)
                })
        })
        .await?;
        self.uploads.insert(
            id,
            Session {
                name: name.to_owned(),
                offset: 0,
                hasher: Hasher::new(algorithm),
                closed: false,
            },
        );
        Ok(upload_status(StatusCode::ACCEPTED, name, &id, 0))
    }

    /// Links a blob another repository (or, without `from`, any repository) already has.
    async fn mount(
        &self,
        name: &str,
        digest: &Digest,
        from: Option<&str>,
    ) -> Result<bool, RegistryError> {
        let present = match from {
            Some(from) => {
                validate_name(from)?;
                self.storage.repo_blob_size(from, digest).await?.is_some()
            }
            None => self.storage.blob_size(digest).await?.is_some(),
        };
        if present {
            let _guard = self.gc_lock.read().await;
            // Re-check under the lock: a collection may have removed it in between.
            if self.storage.blob_size(digest).await?.is_some() {
                self.storage.link_blob(name, digest).await?;
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Finds a session, reloading it from disk after a restart, and expiring it when idle.
    async fn session(&self, name: &str, id: &Uuid) -> Result<Arc<Mutex<Session>>, RegistryError> {
        let unknown = || RegistryError::UploadUnknown { id: id.to_string() };
        let dir = self.session_dir(id);
        let data = dir.join("data");
        let modified = match tokio::fs::metadata(&data).await {
            Ok(meta) => meta.modified().unwrap_or_else(|_| SystemTime::now()),
            Err(_) => {
                self.uploads.remove(id);
                return Err(unknown());
            }
        };
        if super::older_than(modified, self.config.upload_ttl) {
            self.uploads.remove(id);
            let _ = tokio::fs::remove_dir_all(&dir).await;
            return Err(unknown());
        }
        let session = match self.uploads.get(id) {
            Some(session) => session,
            None => {
                let info = tokio::fs::read_to_string(dir.join("info"))
                    .await
                    .map_err(|_| unknown())?;
                let info: serde_json::Value = serde_json::from_str(&info).map_err(|_| unknown())?;
                let owner = info["name"].as_str().ok_or_else(unknown)?.to_owned();
                let algorithm = info["algorithm"]
                    .as_str()
                    .and_then(Algorithm::parse)
                    .ok_or_else(unknown)?;
                // The hash state lived in memory only; rebuild it from the data on disk.
                let (hasher, offset) = hash_file(&data, algorithm).await?;
                self.uploads.insert(
                    *id,
                    Session {
                        name: owner,
                        offset,
                        hasher,
                        closed: false,
                    },
                )
            }
        };
        if session.lock().await.name != name {
            return Err(unknown());
        }
        Ok(session)
    }

    /// Appends one chunk to a session; returns the new offset.
    async fn append(
        &self,
        id: &Uuid,
        session: &mut Session,
        headers: &HeaderMap,
        body: &mut Incoming,
    ) -> Result<u64, RegistryError> {
        let declared = chunk_length(headers, id, session.offset)?;
        let data = self.session_dir(id).join("data");
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .open(&data)
            .await
            .map_err(|source| RegistryError::io("open upload data", &data, source))?;
        // Drop whatever an interrupted earlier request left past the acknowledged offset.
        file.set_len(session.offset)
            .await
            .map_err(|source| RegistryError::io("truncate upload data", &data, source))?;
        file.seek(SeekFrom::Start(session.offset))
            .await
            .map_err(|source| RegistryError::io("seek upload data", &data, source))?;
        let mut writer = BufWriter::with_capacity(WRITE_BUFFER, file);
        let mut hasher = session.hasher.clone();
        let received = copy_body(
            body,
            &mut writer,
            &mut hasher,
            declared,
            self.config.body_idle_timeout,
        )
        .await?;
        if let Some(declared) = declared.filter(|declared| *declared != received) {
            return Err(RegistryError::SizeInvalid { declared, received });
        }
        session.offset = session.offset.saturating_add(received);
        session.hasher = hasher;
        Ok(session.offset)
    }

    /// `PATCH <location>`: uploads a chunk.
    pub(crate) async fn patch_upload(
        &self,
        name: &str,
        id: &Uuid,
        headers: &HeaderMap,
        body: &mut Incoming,
    ) -> Result<Response<super::Body>, RegistryError> {
        let session = self.session(name, id).await?;
        let mut session = session.lock().await;
        if session.closed {
            return Err(RegistryError::UploadUnknown { id: id.to_string() });
        }
        let offset = self.append(id, &mut session, headers, body).await?;
        Ok(upload_status(StatusCode::ACCEPTED, name, id, offset))
    }

    /// `PUT <location>?digest=`: takes an optional last chunk, verifies and commits.
    pub(crate) async fn finish_upload(
        &self,
        name: &str,
        id: &Uuid,
        query: &Query,
        headers: &HeaderMap,
        body: &mut Incoming,
    ) -> Result<Response<super::Body>, RegistryError> {
        let digest = query
            .get("digest")
            .ok_or_else(|| RegistryError::DigestInvalid {
                digest: String::new(),
                reason: "the closing PUT of an upload needs a ?digest= parameter",
            })?;
        let digest = Digest::parse(digest)?;
        let handle = self.session(name, id).await?;
        let mut session = handle.lock().await;
        if session.closed {
            return Err(RegistryError::UploadUnknown { id: id.to_string() });
        }
        if has_body(body) || header_str(headers, header::CONTENT_RANGE).is_some() {
            self.append(id, &mut session, headers, body).await?;
        }
        let dir = self.session_dir(id);
        let data = dir.join("data");
        let computed = if session.hasher.algorithm() == digest.algorithm() {
            session.hasher.clone().finish()
        } else {
            hash_file(&data, digest.algorithm()).await?.0.finish()
        };
        // Whatever the outcome, this session is over; a failed upload must leave nothing.
        close_session(&self.uploads, id, &mut session);
        let result = self
            .commit_session(name, &data, &digest, &computed, session.offset)
            .await;
        let _ = tokio::fs::remove_dir_all(&dir).await;
        result.map(|()| created(&format!("/v2/{name}/blobs/{digest}"), &digest))
    }

    async fn commit_session(
        &self,
        name: &str,
        data: &Path,
        digest: &Digest,
        computed: &Digest,
        size: u64,
    ) -> Result<(), RegistryError> {
        if computed != digest {
            return Err(RegistryError::DigestMismatch {
                expected: digest.to_string(),
                computed: computed.to_string(),
            });
        }
        // The data file is truncated to the acknowledged offset by every append; after an
        // interrupted final chunk it may still be longer, so cut it before committing.
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .open(data)
            .await
            .map_err(|source| RegistryError::io("open upload data", data, source))?;
        file.set_len(size)
            .await
            .and(file.sync_all().await)
            .map_err(|source| RegistryError::io("sync upload data", data, source))?;
        self.commit_file(name, data.to_path_buf(), digest).await
    }

    /// `GET <location>`: reports how far an upload got.
    pub(crate) async fn upload_progress(
        &self,
        name: &str,
        id: &Uuid,
    ) -> Result<Response<super::Body>, RegistryError> {
        let session = self.session(name, id).await?;
        let session = session.lock().await;
        if session.closed {
            return Err(RegistryError::UploadUnknown { id: id.to_string() });
        }
        Ok(upload_status(
            StatusCode::NO_CONTENT,
            name,
            id,
            session.offset,
        ))
    }

    /// `DELETE <location>`: cancels an upload and discards its data.
    pub(crate) async fn cancel_upload(
        &self,
        name: &str,
        id: &Uuid,
    ) -> Result<Response<super::Body>, RegistryError> {
        let handle = self.session(name, id).await?;
        let mut session = handle.lock().await;
        if session.closed {
            return Err(RegistryError::UploadUnknown { id: id.to_string() });
        }
        close_session(&self.uploads, id, &mut session);
        let dir = self.session_dir(id);
        tokio::fs::remove_dir_all(&dir)
            .await
            .map_err(|source| RegistryError::io("remove upload session", dir, source))?;
        Ok(super::status_only(StatusCode::NO_CONTENT))
    }

    /// Removes sessions and stray temporary files idle for longer than the upload TTL.
    pub(crate) async fn expire_uploads(&self) -> Result<usize, RegistryError> {
        let ttl = self.config.upload_ttl;
        let uploads = self.storage.uploads_dir();
        let entries = blocking(move || {
            let mut found = Vec::new();
            let listing = std::fs::read_dir(&uploads)
                .map_err(|source| RegistryError::io("list uploads", &uploads, source))?;
            for entry in listing.flatten() {
                let path = entry.path();
                let probe = if path.is_dir() {
                    path.join("data")
                } else {
                    path.clone()
                };
                let modified = std::fs::metadata(&probe)
                    .and_then(|meta| meta.modified())
                    .unwrap_or(SystemTime::UNIX_EPOCH);
                if super::older_than(modified, ttl) {
                    found.push(path);
                }
            }
            Ok(found)
        })
        .await?;
        let mut expired_count = 0;
        for path in entries {
            let id = path
                .file_name()
                .and_then(|name| name.to_str())
                .and_then(|name| Uuid::parse_str(name).ok());
            if let Some(id) = id {
                if let Some(handle) = self.uploads.get(&id) {
                    // A session being written right now is not idle, whatever its file says.
                    let Ok(mut session) = handle.try_lock() else {
                        continue;
                    };
                    close_session(&self.uploads, &id, &mut session);
                }
                tokio::fs::remove_dir_all(&path).await.ok();
            } else {
                tokio::fs::remove_file(&path).await.ok();
            }
            expired_count += 1;
        }
        Ok(expired_count)
    }
}

/// 202/204 response describing an upload session.
fn upload_status(status: StatusCode, name: &str, id: &Uuid, offset: u64) -> Response<super::Body> {
    let mut response = super::status_only(status);
    let headers = response.headers_mut();
    super::set_header(
        headers,
        header::LOCATION,
        &format!("/v2/{name}/blobs/uploads/{id}"),
    );
    super::set_header(headers, header::RANGE, &upload_range(offset));
    super::set_header(headers, super::UPLOAD_UUID, &id.to_string());
    if status != StatusCode::NO_CONTENT {
        super::set_header(headers, header::CONTENT_LENGTH, "0");
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_ranges_parse_in_both_spellings() {
        assert_eq!(parse_content_range("0-99"), Some((0, 99)));
        assert_eq!(parse_content_range("bytes 100-199/*"), Some((100, 199)));
        assert_eq!(parse_content_range("bytes 100-199/1000"), Some((100, 199)));
        for bad in ["", "5", "9-3", "a-b", "-5", "1-", "bytes x-1/2"] {
            assert_eq!(parse_content_range(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn chunk_length_checks_offset_and_length() {
        let id = Uuid::new_v4();
        let headers = |range: &str, length: Option<&str>| {
            let mut headers = HeaderMap::new();
            if let Ok(value) = range.parse() {
                headers.insert(header::CONTENT_RANGE, value);
            }
            if let Some(Ok(value)) = length.map(str::parse) {
                headers.insert(header::CONTENT_LENGTH, value);
            }
            headers
        };
        assert_eq!(
            chunk_length(&headers("10-19", Some("10")), &id, 10).ok(),
            Some(Some(10))
        );
        assert!(matches!(
            chunk_length(&headers("0-9", None), &id, 10),
            Err(RegistryError::UploadOutOfOrder {
                offset: 10,
                start: 0,
                ..
            })
        ));
        assert!(matches!(
            chunk_length(&headers("10-19", Some("5")), &id, 10),
            Err(RegistryError::UploadInvalid { .. })
        ));
        assert_eq!(chunk_length(&HeaderMap::new(), &id, 7).ok(), Some(None));
        assert!(matches!(
            chunk_length(&headers("0-18446744073709551615", None), &id, 0),
            Err(RegistryError::UploadInvalid { .. })
        ));
    }
}
