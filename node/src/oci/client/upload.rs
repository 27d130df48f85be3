//! Pushing: blob existence checks, monolithic and chunked blob uploads, manifest PUTs, and the
//! three together for a Wasm artifact.

use bytes::Bytes;
use reqwest::header::{CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, LOCATION};
use reqwest::{Method, Response, StatusCode, Url};

use super::{auth::Scope, expect_status, header_str, join, ClientError, Progress, RegistryClient};
use crate::oci::digest::Digest;
use crate::oci::media;
use crate::oci::reference::Reference;
use crate::oci::wasm::WasmArtifact;

const OCTET_STREAM: &str = "application/octet-stream";

impl RegistryClient {
    /// Whether the repository already holds the blob `digest`.
    pub async fn blob_exists(
        &self,
        reference: &Reference,
        digest: &Digest,
    ) -> Result<bool, ClientError> {
        let url = self.repo_url(reference, &format!("blobs/{digest}"))?;
        let response = self
            .send(
                reference.registry(),
                &Scope::push(reference.repository()),
                || self.http.head(url.clone()),
            )
            .await?;
        match response.status() {
            StatusCode::OK => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => expect_status(response, &Method::HEAD, &[])
                .await
                .map(|_| false),
        }
    }

    /// Uploads `data` as blob `digest` unless the repository has it already; returns whether
    /// bytes were sent. Blobs up to the configured chunk size go in one PUT, larger ones in
    /// PATCH chunks followed by a closing PUT.
    pub async fn push_blob(
        &self,
        reference: &Reference,
        digest: &Digest,
        data: Bytes,
        progress: Option<Progress<'_>>,
    ) -> Result<bool, ClientError> {
        let actual = Digest::of(&data);
        if &actual != digest {
            return Err(ClientError::DigestMismatch {
                url: format!("local blob for {reference}"),
                expected: digest.clone(),
                actual,
            });
        }
        if self.blob_exists(reference, digest).await? {
            return Ok(false);
        }
        let scope = Scope::push(reference.repository());
        let start = self.repo_url(reference, "blobs/uploads/")?;
        let response = self
            .send(reference.registry(), &scope, || {
                self.http.post(start.clone()).header(CONTENT_LENGTH, 0)
            })
            .await?;
        let response = expect_status(response, &Method::POST, &[StatusCode::ACCEPTED]).await?;
        let mut location = upload_location(&response)?;
        let total = data.len() as u64;
        let chunk_size = self.config.chunk_size.max(1);
        let mut last = Bytes::new();
        if data.len() <= chunk_size {
            last = data;
        } else {
            let mut offset = 0;
            while offset < data.len() {
                let end = (offset + chunk_size).min(data.len());
                let chunk = data.slice(offset..end);
                let url = location.clone();
                let range = format!("{offset}-{}", end - 1);
                let response = self
                    .send(reference.registry(), &scope, || {
                        self.http
                            .patch(url.clone())
                            .header(CONTENT_TYPE, OCTET_STREAM)
                            .header(CONTENT_RANGE, range.as_str())
                            .header(CONTENT_LENGTH, chunk.len())
                            .body(chunk.clone())
                    })
                    .await?;
                let response =
                    expect_status(response, &Method::PATCH, &[StatusCode::ACCEPTED]).await?;
                location = upload_location(&response)?;
                offset = end;
                if let Some(progress) = progress {
                    progress(offset as u64, total);
                }
            }
        }
        let mut url = location;
        url.query_pairs_mut().append_pair("digest", digest.as_str());
        let response = self
            .send(reference.registry(), &scope, || {
                self.http
                    .put(url.clone())
                    .header(CONTENT_TYPE, OCTET_STREAM)
                    .header(CONTENT_LENGTH, last.len())
                    .body(last.clone())
            })
            .await?;
        let response = expect_status(response, &Method::PUT, &[StatusCode::CREATED]).await?;
        check_served_digest(&response, digest)?;
        if let Some(progress) = progress {
            progress(total, total);
        }
        Ok(true)
    }

    /// Stores `bytes` (a manifest of `media_type`) under the reference's tag, or its digest
    /// when it has no tag; returns the manifest's digest.
    pub async fn push_manifest(
        &self,
        reference: &Reference,
        media_type: &str,
        bytes: Bytes,
    ) -> Result<Digest, ClientError> {
        let digest = Digest::of(&bytes);
        if let Some(pinned) = reference.digest() {
            if pinned != &digest {
                return Err(ClientError::DigestMismatch {
                    url: reference.to_string(),
                    expected: pinned.clone(),
                    actual: digest,
                });
            }
        }
        let target = reference.tag().unwrap_or(digest.as_str());
        let url = self.repo_url(reference, &format!("manifests/{target}"))?;
        let response = self
            .send(
                reference.registry(),
                &Scope::push(reference.repository()),
                || {
                    self.http
                        .put(url.clone())
                        .header(CONTENT_TYPE, media_type)
                        .body(bytes.clone())
                },
            )
            .await?;
        let response = expect_status(response, &Method::PUT, &[StatusCode::CREATED]).await?;
        check_served_digest(&response, &digest)?;
        Ok(digest)
    }

    /// Pushes a Wasm artifact: config blob, module blob, then the manifest. `module` must be the
    /// bytes the artifact was built from. Returns the manifest digest.
    pub async fn push_wasm(
        &self,
        reference: &Reference,
        artifact: &WasmArtifact,
        module: Bytes,
        progress: Option<Progress<'_>>,
    ) -> Result<Digest, ClientError> {
        let manifest = &artifact.manifest;
        self.push_blob(
            reference,
            &manifest.config.digest,
            Bytes::from(artifact.config.clone()),
            None,
        )
        .await?;
        for layer in &manifest.layers {
            self.push_blob(reference, &layer.digest, module.clone(), progress)
                .await?;
        }
        self.push_manifest(
            reference,
            media::OCI_MANIFEST,
            Bytes::from(artifact.manifest_bytes.clone()),
        )
        .await
    }
}

/// The upload session URL from `Location`, which may be relative to the request.
fn upload_location(response: &Response) -> Result<Url, ClientError> {
    let location =
        header_str(response.headers(), LOCATION.as_str()).ok_or(ClientError::MissingHeader {
            url: response.url().to_string(),
            header: "Location",
        })?;
    join(response.url(), location)
}

/// Refuses a response whose `Docker-Content-Digest` names other content than was sent.
fn check_served_digest(response: &Response, sent: &Digest) -> Result<(), ClientError> {
    match header_str(response.headers(), "docker-content-digest").map(Digest::parse) {
        Some(Ok(served)) if &served != sent => Err(ClientError::DigestMismatch {
            url: response.url().to_string(),
            expected: sent.clone(),
            actual: served,
        }),
        _ => Ok(()),
    }
}
