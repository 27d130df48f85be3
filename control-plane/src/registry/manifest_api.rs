//! Manifest endpoints: GET/HEAD (with mirror resolution), PUT and DELETE.

use http::{header, HeaderMap, Response, StatusCode};
use hyper::body::Incoming;

use super::errors::RegistryError;
use super::manifest::Manifest;
use super::names::{validate_tag, Algorithm, Digest, Reference};
use super::routes::Query;
use super::stream::read_limited;
use super::{empty_body, full_body, header_str, set_header, status_only, Body, Registry};

/// A manifest as stored: its digest, media type and exact bytes.
#[derive(Debug, Clone)]
pub struct StoredManifest {
    /// Digest of `bytes`.
    pub digest: Digest,
    /// Media type recorded at push time.
    pub media_type: String,
    /// The manifest, byte for byte as pushed.
    pub bytes: Vec<u8>,
}

impl Registry {
    /// A manifest revision of `name` from local storage.
    pub(crate) async fn local_manifest(
        &self,
        name: &str,
        digest: &Digest,
    ) -> Result<StoredManifest, RegistryError> {
        let unknown = || RegistryError::ManifestUnknown {
            name: name.to_owned(),
            reference: digest.to_string(),
        };
        let media_type = self
            .storage
            .revision(name, digest)
            .await?
            .ok_or_else(unknown)?;
        let bytes = self.storage.read_blob(digest).await?.ok_or_else(unknown)?;
        Ok(StoredManifest {
            digest: digest.clone(),
            media_type,
            bytes,
        })
    }

    /// A manifest of repository `name` by tag or digest, as this registry serves it (mirrors
    /// included), for readers inside the control plane (the scheduler's image inspection).
    pub async fn manifest(
        &self,
        name: &str,
        reference: &str,
    ) -> Result<StoredManifest, RegistryError> {
        let reference = Reference::parse(reference)?;
        self.resolve(name, &reference).await
    }

    /// A stored blob's bytes by digest, if this registry holds it.
    pub async fn blob(&self, digest: &str) -> Result<Option<Vec<u8>>, RegistryError> {
        self.storage.read_blob(&Digest::parse(digest)?).await
    }

    /// Resolves a reference locally.
    async fn resolve_local(
        &self,
        name: &str,
        reference: &Reference,
    ) -> Result<StoredManifest, RegistryError> {
        let digest = match reference {
            Reference::Digest(digest) => digest.clone(),
            Reference::Tag(tag) => self.storage.tag(name, tag).await?.ok_or_else(|| {
                RegistryError::ManifestUnknown {
                    name: name.to_owned(),
                    reference: tag.clone(),
                }
            })?,
        };
        self.local_manifest(name, &digest)
            .await
            .map_err(|error| match error {
                RegistryError::ManifestUnknown { name, .. } => RegistryError::ManifestUnknown {
                    name,
                    reference: reference.to_string(),
                },
                other => other,
            })
    }

    /// Resolves a reference, asking the mirror's upstream where that applies.
    async fn resolve(
        &self,
        name: &str,
        reference: &Reference,
    ) -> Result<StoredManifest, RegistryError> {
        let Some(mirror) = self.mirror_for(name) else {
            return self.resolve_local(name, reference).await;
        };
        match reference {
            Reference::Tag(_) => match self.pull_manifest(mirror, name, reference).await {
                Ok(found) => Ok(found),
                Err(error @ RegistryError::ManifestUnknown { .. }) => Err(error),
                Err(error) => {
                    tracing::warn!(%error, repository = name, %reference, "upstream tag resolution failed; serving the cached copy");
                    self.resolve_local(name, reference).await.map_err(|_| error)
                }
            },
            Reference::Digest(_) => match self.resolve_local(name, reference).await {
                Err(RegistryError::ManifestUnknown { .. }) => {
                    self.pull_manifest(mirror, name, reference).await
                }
                other => other,
            },
        }
    }

    /// `GET`/`HEAD /v2/<name>/manifests/<reference>`.
    pub(crate) async fn get_manifest(
        &self,
        name: &str,
        reference: &Reference,
        head: bool,
    ) -> Result<Response<Body>, RegistryError> {
        let manifest = self.resolve(name, reference).await?;
        let len = manifest.bytes.len();
        let body = if head {
            empty_body()
        } else {
            full_body(manifest.bytes)
        };
        let mut response = Response::new(body);
        let out = response.headers_mut();
        set_header(out, header::CONTENT_TYPE, &manifest.media_type);
        set_header(out, header::CONTENT_LENGTH, &len.to_string());
        set_header(out, super::CONTENT_DIGEST, &manifest.digest.to_string());
        set_header(out, header::ETAG, &format!("\"{}\"", manifest.digest));
        Ok(response)
    }

    /// Checks that everything a manifest references is in the repository.
    async fn check_references(&self, name: &str, manifest: &Manifest) -> Result<(), RegistryError> {
        let mut missing = Vec::new();
        for descriptor in manifest.blobs.iter().filter(|d| !d.external) {
            match self
                .storage
                .repo_blob_size(name, &descriptor.digest)
                .await?
            {
                None => missing.push(descriptor.digest.to_string()),
                Some(size) if size != descriptor.size => {
                    return Err(RegistryError::ManifestInvalid {
                        reason: format!(
                            "descriptor of {} says {} bytes but the blob has {size}",
                            descriptor.digest, descriptor.size
                        ),
                    })
                }
                Some(_) => {}
            }
        }
        for child in &manifest.children {
            let present = self.storage.revision(name, &child.digest).await?.is_some();
            match self.storage.blob_size(&child.digest).await? {
                Some(size) if present && size != child.size => {
                    return Err(RegistryError::ManifestInvalid {
                        reason: format!(
                            "descriptor of {} says {} bytes but the manifest has {size}",
                            child.digest, child.size
                        ),
                    })
                }
                Some(_) if present => {}
                _ => missing.push(child.digest.to_string()),
            }
        }
        if missing.is_empty() {
            Ok(())
        } else {
            Err(RegistryError::ManifestBlobUnknown { digests: missing })
        }
    }

    /// Stores a parsed manifest and points `tags` at it; pushed manifests must have their
    /// references present, mirrored ones fetch them lazily.
    pub(crate) async fn store_manifest(
        &self,
        name: &str,
        bytes: &[u8],
        manifest: &Manifest,
        digest: &Digest,
        tags: &[String],
        check_references: bool,
    ) -> Result<(), RegistryError> {
        // Held across check and write so a collection cannot remove what was just checked.
        let _guard = self.gc_lock.read().await;
        if check_references {
            self.check_references(name, manifest).await?;
        }
        self.storage.write_blob(digest, bytes.to_vec()).await?;
        self.storage.link_blob(name, digest).await?;
        self.storage
            .put_revision(name, digest, &manifest.media_type)
            .await?;
        for tag in tags {
            self.storage.put_tag(name, tag, digest).await?;
        }
        Ok(())
    }

    /// `PUT /v2/<name>/manifests/<reference>[?tag=…]`.
    pub(crate) async fn put_manifest(
        &self,
        name: &str,
        reference: &Reference,
        query: &Query,
        headers: &HeaderMap,
        body: &mut Incoming,
    ) -> Result<Response<Body>, RegistryError> {
        let bytes = read_limited(
            body,
            self.config.max_manifest_bytes,
            self.config.body_idle_timeout,
        )
        .await?;
        let manifest = Manifest::parse(&bytes, header_str(headers, header::CONTENT_TYPE))?;
        let mut tags = Vec::new();
        let digest = match reference {
            Reference::Digest(wanted) => {
                let computed = Digest::of(wanted.algorithm(), &bytes);
                if &computed != wanted {
                    return Err(RegistryError::DigestMismatch {
                        expected: wanted.to_string(),
                        computed: computed.to_string(),
                    });
                }
                computed
            }
            Reference::Tag(tag) => {
                tags.push(tag.clone());
                Digest::of(Algorithm::Sha256, &bytes)
            }
        };
        let extra_tags: Vec<String> = query.all("tag").map(str::to_owned).collect();
        for tag in &extra_tags {
            validate_tag(tag)?;
        }
        tags.extend(extra_tags.iter().cloned());
        self.store_manifest(name, &bytes, &manifest, &digest, &tags, true)
            .await?;
        let mut response = status_only(StatusCode::CREATED);
        let out = response.headers_mut();
        set_header(
            out,
            header::LOCATION,
            &format!("/v2/{name}/manifests/{digest}"),
        );
        set_header(out, super::CONTENT_DIGEST, &digest.to_string());
        set_header(out, header::CONTENT_LENGTH, "0");
        if let Some(subject) = &manifest.subject {
            set_header(out, super::OCI_SUBJECT, &subject.to_string());
        }
        if !extra_tags.is_empty() {
            set_header(out, super::OCI_TAG, &extra_tags.join(", "));
        }
        tracing::debug!(repository = name, %digest, media_type = %manifest.media_type, "manifest pushed");
        Ok(response)
    }

    /// `DELETE /v2/<name>/manifests/<reference>`: a tag deletes the tag, a digest deletes the
    /// manifest and every tag pointing at it.
    pub(crate) async fn delete_manifest(
        &self,
        name: &str,
        reference: &Reference,
    ) -> Result<Response<Body>, RegistryError> {
        let unknown = || RegistryError::ManifestUnknown {
            name: name.to_owned(),
            reference: reference.to_string(),
        };
        match reference {
            Reference::Tag(tag) => {
                if !self.storage.delete_tag(name, tag).await? {
                    return Err(unknown());
                }
            }
            Reference::Digest(digest) => {
                if !self.storage.delete_revision(name, digest).await? {
                    return Err(unknown());
                }
                for tag in self.storage.tags(name).await? {
                    if self.storage.tag(name, &tag).await?.as_ref() == Some(digest) {
                        self.storage.delete_tag(name, &tag).await?;
                    }
                }
                self.storage.unlink_blob(name, digest).await?;
            }
        }
        Ok(status_only(StatusCode::ACCEPTED))
    }
}
