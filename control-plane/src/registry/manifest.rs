//! Manifest formats: media types, parsing and the references a manifest makes.
//!
//! The registry stores manifests byte for byte; it parses them only to check their type and
//! structure, to find the blobs and child manifests they need, and to answer referrer queries.
//! OCI artifacts (for example Wasm modules: config `application/vnd.wasm.config.v0+json`,
//! layers `application/wasm`) are ordinary OCI image manifests with their own config and layer
//! types, so they need nothing special.

use serde::Deserialize;
use serde_json::{Map, Value};

use super::errors::RegistryError;
use super::names::Digest;

/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker image manifest, schema 2.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list, schema 2.
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Every manifest media type the registry accepts, in `Accept` order for upstream requests.
pub const SUPPORTED: [&str; 4] = [OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST];

/// A content descriptor inside a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    /// Media type of the referenced content.
    pub media_type: String,
    /// Its digest.
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
    /// Non-distributable content fetched from elsewhere (`urls`); never required locally.
    pub external: bool,
}

/// A parsed, structurally valid manifest.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// Its media type (one of [`SUPPORTED`]).
    pub media_type: String,
    /// Config and layers (images) that must exist as blobs.
    pub blobs: Vec<Descriptor>,
    /// Child manifests (indexes) that must exist as manifests.
    pub children: Vec<Descriptor>,
    /// The manifest this one refers to (`subject`), which need not exist.
    pub subject: Option<Digest>,
    /// `artifactType`, or for images without one the config media type (referrers API rule).
    pub artifact_type: Option<String>,
    /// The manifest's annotations.
    pub annotations: Option<Map<String, Value>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawManifest {
    schema_version: Option<i64>,
    media_type: Option<String>,
    artifact_type: Option<String>,
    config: Option<RawDescriptor>,
    layers: Option<Vec<RawDescriptor>>,
    manifests: Option<Vec<RawDescriptor>>,
    subject: Option<RawDescriptor>,
    annotations: Option<Map<String, Value>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawDescriptor {
    media_type: String,
    digest: String,
    size: u64,
    #[serde(default)]
    urls: Vec<String>,
}

/// Content types that carry no manifest type information.
fn is_generic(content_type: &str) -> bool {
    matches!(
        content_type,
        "" | "application/json" | "application/octet-stream" | "text/plain"
    )
}

/// The bare media type of a `Content-Type` header value.
pub fn bare_media_type(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

fn invalid(reason: impl Into<String>) -> RegistryError {
    RegistryError::ManifestInvalid {
        reason: reason.into(),
    }
}

impl Descriptor {
    fn from_raw(raw: RawDescriptor, field: &str) -> Result<Self, RegistryError> {
        let digest = Digest::parse(&raw.digest)
            .map_err(|error| invalid(format!("{field} descriptor: {error}")))?;
        // Foreign and non-distributable layers live at their `urls`, not in registries.
        let external = !raw.urls.is_empty()
            && (raw.media_type.contains("nondistributable") || raw.media_type.contains("foreign"));
        Ok(Self {
            media_type: raw.media_type,
            digest,
            size: raw.size,
            external,
        })
    }
}

impl Manifest {
    /// Parses `bytes` pushed or fetched with `content_type`, checking type and structure.
    pub fn parse(bytes: &[u8], content_type: Option<&str>) -> Result<Self, RegistryError> {
        let raw: RawManifest = serde_json::from_slice(bytes)
            .map_err(|error| invalid(format!("not a manifest JSON document: {error}")))?;
        let header = content_type
            .map(bare_media_type)
            .filter(|ct| !is_generic(ct));
        let media_type = match (&raw.media_type, header) {
            (Some(body), header) => {
                if !SUPPORTED.contains(&body.as_str()) {
                    return Err(RegistryError::ManifestMediaType {
                        media_type: body.clone(),
                    });
                }
                if let Some(header) = header.filter(|header| header != body) {
                    return Err(invalid(format!(
                        "Content-Type {header:?} does not match the manifest's mediaType {body:?}"
                    )));
                }
                body.clone()
            }
            (None, Some(header)) if SUPPORTED.contains(&header.as_str()) => header,
            (None, Some(header)) => {
                return Err(RegistryError::ManifestMediaType { media_type: header })
            }
            (None, None) => {
                return Err(invalid(
                    "no media type: set Content-Type or the manifest's mediaType field",
                ))
            }
        };
        if raw.schema_version != Some(2) {
            return Err(invalid("schemaVersion must be 2"));
        }
        let is_index = media_type == OCI_INDEX || media_type == DOCKER_LIST;
        let mut blobs = Vec::new();
        let mut children = Vec::new();
        let mut artifact_type = raw.artifact_type.filter(|t| !t.is_empty());
        if is_index {
            let manifests = raw
                .manifests
                .ok_or_else(|| invalid("an index needs a manifests array"))?;
            for child in manifests {
                children.push(Descriptor::from_raw(child, "manifests entry")?);
            }
        } else {
            let config = raw
                .config
                .ok_or_else(|| invalid("an image manifest needs a config descriptor"))?;
            let config = Descriptor::from_raw(config, "config")?;
            artifact_type.get_or_insert_with(|| config.media_type.clone());
            blobs.push(config);
            let layers = raw
                .layers
                .ok_or_else(|| invalid("an image manifest needs a layers array"))?;
            for layer in layers {
                blobs.push(Descriptor::from_raw(layer, "layer")?);
            }
        }
        let subject = raw
            .subject
            .map(|subject| Descriptor::from_raw(subject, "subject").map(|d| d.digest))
            .transpose()?;
        Ok(Self {
            media_type,
            blobs,
            children,
            subject,
            artifact_type,
            annotations: raw.annotations,
        })
    }

    /// Digests of everything this manifest keeps alive (for garbage collection).
    pub fn references(&self) -> impl Iterator<Item = &Digest> {
        self.blobs
            .iter()
            .chain(self.children.iter())
            .map(|descriptor| &descriptor.digest)
    }

    /// The descriptor of this manifest in a referrers list.
    pub fn referrer_descriptor(&self, digest: &Digest, size: u64) -> Value {
        let mut descriptor = Map::new();
        descriptor.insert("mediaType".into(), Value::from(self.media_type.clone()));
        descriptor.insert("digest".into(), Value::from(digest.to_string()));
        descriptor.insert("size".into(), Value::from(size));
        if let Some(artifact_type) = &self.artifact_type {
            descriptor.insert("artifactType".into(), Value::from(artifact_type.clone()));
        }
        if let Some(annotations) = &self.annotations {
            descriptor.insert("annotations".into(), Value::Object(annotations.clone()));
        }
        Value::Object(descriptor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::names::Algorithm;
    use serde_json::json;

    fn digest(content: &str) -> String {
        Digest::of(Algorithm::Sha256, content.as_bytes()).to_string()
    }

    fn wasm_artifact() -> Value {
        json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": { "mediaType": "application/vnd.wasm.config.v0+json", "digest": digest("c"), "size": 1 },
            "layers": [ { "mediaType": "application/wasm", "digest": digest("l"), "size": 1 } ],
            "annotations": { "org.opencontainers.image.title": "hello.wasm" }
        })
    }

    #[test]
    fn wasm_artifacts_parse_as_image_manifests() -> anyhow::Result<()> {
        let bytes = serde_json::to_vec(&wasm_artifact())?;
        let manifest = Manifest::parse(&bytes, Some(OCI_MANIFEST))?;
        assert!(manifest.children.is_empty());
        assert_eq!(manifest.blobs.len(), 2);
        assert_eq!(
            manifest.artifact_type.as_deref(),
            Some("application/vnd.wasm.config.v0+json")
        );
        assert_eq!(manifest.references().count(), 2);
        Ok(())
    }

    #[test]
    fn media_type_comes_from_body_or_header() -> anyhow::Result<()> {
        let mut body = wasm_artifact();
        if let Some(object) = body.as_object_mut() {
            object.remove("mediaType");
        }
        let bytes = serde_json::to_vec(&body)?;
        let manifest = Manifest::parse(
            &bytes,
            Some("application/vnd.oci.image.manifest.v1+json; charset=utf-8"),
        )?;
        assert_eq!(manifest.media_type, OCI_MANIFEST);
        assert!(matches!(
            Manifest::parse(&bytes, Some("application/json")),
            Err(RegistryError::ManifestInvalid { .. })
        ));
        assert!(matches!(
            Manifest::parse(
                &bytes,
                Some("application/vnd.docker.distribution.manifest.v1+prettyjws")
            ),
            Err(RegistryError::ManifestMediaType { .. })
        ));
        Ok(())
    }

    #[test]
    fn unknown_or_mismatched_types_are_refused() -> anyhow::Result<()> {
        let unknown = json!({ "schemaVersion": 2, "mediaType": "application/vnd.example+json" });
        assert!(matches!(
            Manifest::parse(&serde_json::to_vec(&unknown)?, None),
            Err(RegistryError::ManifestMediaType { media_type }) if media_type == "application/vnd.example+json"
        ));
        let bytes = serde_json::to_vec(&wasm_artifact())?;
        assert!(matches!(
            Manifest::parse(&bytes, Some(DOCKER_MANIFEST)),
            Err(RegistryError::ManifestInvalid { .. })
        ));
        Ok(())
    }

    #[test]
    fn structure_is_checked() -> anyhow::Result<()> {
        let cases = [
            json!({ "schemaVersion": 1, "mediaType": OCI_MANIFEST, "config": wasm_artifact()["config"], "layers": [] }),
            json!({ "schemaVersion": 2, "mediaType": OCI_MANIFEST, "layers": [] }),
            json!({ "schemaVersion": 2, "mediaType": OCI_INDEX }),
            json!({ "schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": { "mediaType": "x", "digest": "sha256:1", "size": 1 }, "layers": [] }),
            json!({ "schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": { "mediaType": "x", "digest": digest("c"), "size": -1 }, "layers": [] }),
        ];
        for case in cases {
            let result = Manifest::parse(&serde_json::to_vec(&case)?, None);
            assert!(
                matches!(result, Err(RegistryError::ManifestInvalid { .. })),
                "{case}"
            );
        }
        assert!(Manifest::parse(b"not json", Some(OCI_MANIFEST)).is_err());
        Ok(())
    }

    #[test]
    fn indexes_list_children_and_subjects_are_kept() -> anyhow::Result<()> {
        let index = json!({
            "schemaVersion": 2,
            "mediaType": DOCKER_LIST,
            "manifests": [ { "mediaType": DOCKER_MANIFEST, "digest": digest("a"), "size": 10, "platform": { "os": "linux" } } ],
            "subject": { "mediaType": OCI_MANIFEST, "digest": digest("s"), "size": 3 }
        });
        let manifest = Manifest::parse(&serde_json::to_vec(&index)?, None)?;
        assert!(manifest.blobs.is_empty());
        assert_eq!(manifest.children.len(), 1);
        assert_eq!(manifest.subject.map(|s| s.to_string()), Some(digest("s")));
        assert_eq!(manifest.artifact_type, None);
        Ok(())
    }

    #[test]
    fn foreign_layers_are_external() -> anyhow::Result<()> {
        let image = json!({
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST,
            "config": { "mediaType": "application/vnd.docker.container.image.v1+json", "digest": digest("c"), "size": 1 },
            "layers": [ { "mediaType": "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip", "digest": digest("w"), "size": 5, "urls": ["https://example.invalid/l"] } ]
        });
        let manifest = Manifest::parse(&serde_json::to_vec(&image)?, Some(DOCKER_MANIFEST))?;
        assert_eq!(manifest.blobs.iter().filter(|d| d.external).count(), 1);
        Ok(())
    }
}
