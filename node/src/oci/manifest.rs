//! Manifests, indexes and descriptors as they travel on the wire (OCI image spec 1.1, which
//! Docker's schema 2 matches field for field).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::digest::Digest;
use super::media;

/// Why a manifest could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The bytes are not JSON of the expected shape.
    #[error("invalid {kind} {digest}: {source}")]
    Json {
        /// What was being parsed (`image manifest`, `image index`).
        kind: &'static str,
        /// Digest of the bytes.
        digest: Digest,
        /// The parse error.
        source: serde_json::Error,
    },
    /// The media type is not an OCI or Docker schema 2 manifest or index.
    #[error(
        "unsupported manifest media type {media_type:?} for {digest} \
         (Docker schema 1 and other formats are not supported)"
    )]
    UnsupportedMediaType {
        /// The media type from `Content-Type` or the document.
        media_type: String,
        /// Digest of the bytes.
        digest: Digest,
    },
    /// A manifest with the Wasm config type does not have exactly one `application/wasm` layer.
    #[error(
        "wasm artifact {digest} must have exactly one layer of type application/wasm, \
         found {found}"
    )]
    WasmLayers {
        /// Digest of the manifest.
        digest: Digest,
        /// The media types of the layers found.
        found: String,
    },
}

/// A pointer to content: its type, digest and size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// The media type of the content.
    pub media_type: String,
    /// The digest of the content.
    pub digest: Digest,
    /// The size of the content in bytes.
    pub size: u64,
    /// The artifact type of the manifest this descriptor points at (in indexes and referrers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// Free-form annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// The platform of the manifest this descriptor points at (in indexes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
}

/// The platform an index entry is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    /// CPU architecture in Go's naming (`amd64`, `arm64`, `wasm`).
    pub architecture: String,
    /// Operating system in Go's naming (`linux`, `wasip1`, `wasip2`).
    pub os: String,
    /// CPU variant (`v7`, `v8`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

/// A single-platform image manifest (OCI, or Docker schema 2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageManifest {
    /// Always 2.
    pub schema_version: u32,
    /// The manifest's own media type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// The artifact type, for manifests that describe an artifact rather than an image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// The config blob.
    pub config: Descriptor,
    /// The layer blobs, base first.
    pub layers: Vec<Descriptor>,
    /// Free-form annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// A multi-platform index (OCI index, or Docker manifest list).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageIndex {
    /// Always 2.
    pub schema_version: u32,
    /// The index's own media type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// The manifests, usually one per platform.
    pub manifests: Vec<Descriptor>,
    /// Free-form annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// What a manifest describes, told apart by media types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageKind {
    /// A Wasm OCI artifact: Wasm config type and one `application/wasm` layer.
    Wasm,
    /// A container image: OCI or Docker image config, tar layers.
    Container,
    /// Some other artifact (Helm chart, signature, …) a node cannot run.
    Other,
}

/// A manifest or an index, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Manifest {
    /// A single-platform manifest.
    Image(ImageManifest),
    /// A multi-platform index.
    Index(ImageIndex),
}

impl Manifest {
    /// Parses `bytes`, using `content_type` (from the HTTP response) when it names a manifest
    /// type, else the document's own `mediaType`, else its shape.
    pub fn parse(content_type: Option<&str>, bytes: &[u8]) -> Result<Self, ManifestError> {
        let digest = Digest::of(bytes);
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Probe {
            media_type: Option<String>,
            schema_version: Option<u32>,
            manifests: Option<serde::de::IgnoredAny>,
        }
        let probe: Probe = serde_json::from_slice(bytes).map_err(|source| ManifestError::Json {
            kind: "manifest",
            digest: digest.clone(),
            source,
        })?;
        let declared = content_type
            .map(media::essence)
            .filter(|m| media::is_image_manifest(m) || media::is_index(m))
            .map(str::to_owned)
            .or(probe.media_type);
        let is_index = match declared.as_deref() {
            Some(m) if media::is_index(m) => true,
            Some(m) if media::is_image_manifest(m) => false,
            Some(other) => {
                return Err(ManifestError::UnsupportedMediaType {
                    media_type: other.to_owned(),
                    digest,
                })
            }
            None if probe.schema_version != Some(2) => {
                return Err(ManifestError::UnsupportedMediaType {
                    media_type: format!("schemaVersion {:?}", probe.schema_version),
                    digest,
                })
            }
            None => probe.manifests.is_some(),
        };
        if is_index {
            serde_json::from_slice(bytes)
                .map(Manifest::Index)
                .map_err(|source| ManifestError::Json {
                    kind: "image index",
                    digest,
                    source,
                })
        } else {
            serde_json::from_slice(bytes)
                .map(Manifest::Image)
                .map_err(|source| ManifestError::Json {
                    kind: "image manifest",
                    digest,
                    source,
                })
        }
    }
}

impl ImageManifest {
    /// Whether this is a Wasm artifact, a container image, or something else.
    pub fn kind(&self) -> ImageKind {
        let config = media::essence(&self.config.media_type);
        if config == media::WASM_CONFIG || self.artifact_type.as_deref() == Some(media::WASM_CONFIG)
        {
            ImageKind::Wasm
        } else if media::is_container_config(config) {
            ImageKind::Container
        } else {
            ImageKind::Other
        }
    }

    /// The module layer of a Wasm artifact, refusing anything but exactly one `application/wasm`
    /// layer (the spec asks consumers to reject more).
    pub fn wasm_layer(&self, digest: &Digest) -> Result<&Descriptor, ManifestError> {
        match self.layers.as_slice() {
            [layer] if media::essence(&layer.media_type) == media::WASM_LAYER => Ok(layer),
            layers => Err(ManifestError::WasmLayers {
                digest: digest.clone(),
                found: if layers.is_empty() {
                    "none".to_owned()
                } else {
                    layers
                        .iter()
                        .map(|l| l.media_type.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                },
            }),
        }
    }

    /// Config plus layers, in bytes (what a pull downloads, besides the manifest).
    pub fn content_size(&self) -> u64 {
        self.layers
            .iter()
            .fold(self.config.size, |sum, l| sum.saturating_add(l.size))
    }
}

impl ImageIndex {
    /// The entry a node on this machine should run: a Wasm entry if there is one (Bramble runs
    /// Wasm natively), else the Linux entry for this CPU, else a lone entry that names no
    /// platform.
    pub fn select_for_host(&self) -> Option<&Descriptor> {
        let is_wasm = |d: &&Descriptor| {
            d.platform
                .as_ref()
                .is_some_and(|p| p.architecture == media::WASM_ARCHITECTURE)
        };
        let host_arch = go_arch(std::env::consts::ARCH);
        let is_host = |d: &&Descriptor| {
            d.platform
                .as_ref()
                .is_some_and(|p| p.os == "linux" && p.architecture == host_arch)
        };
        self.manifests
            .iter()
            .find(is_wasm)
            .or_else(|| self.manifests.iter().find(is_host))
            .or(match self.manifests.as_slice() {
                [only] if only.platform.is_none() => Some(only),
                _ => None,
            })
    }
}

/// Rust's name for a CPU architecture in Go's naming, which OCI platforms use.
pub fn go_arch(rust_arch: &str) -> &str {
    match rust_arch {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn descriptor(media_type: &str, content: &[u8]) -> Descriptor {
        Descriptor {
            media_type: media_type.to_owned(),
            digest: Digest::of(content),
            size: content.len() as u64,
            artifact_type: None,
            annotations: BTreeMap::new(),
            platform: None,
        }
    }

    fn manifest(config: &str, layers: &[&str]) -> ImageManifest {
        ImageManifest {
            schema_version: 2,
            media_type: Some(media::OCI_MANIFEST.to_owned()),
            artifact_type: None,
            config: descriptor(config, b"{}"),
            layers: layers.iter().map(|m| descriptor(m, m.as_bytes())).collect(),
            annotations: BTreeMap::new(),
        }
    }

    #[test]
    fn parses_by_content_type_media_type_or_shape() {
        let image = manifest(media::WASM_CONFIG, &[media::WASM_LAYER]);
        let bytes = serde_json::to_vec(&image).expect("serialize");
        assert_eq!(
            Manifest::parse(Some(media::OCI_MANIFEST), &bytes).expect("parse"),
            Manifest::Image(image.clone())
        );
        assert_eq!(
            Manifest::parse(Some("application/octet-stream"), &bytes).expect("parse"),
            Manifest::Image(image)
        );
        let index = br#"{"schemaVersion":2,"manifests":[]}"#;
        assert!(matches!(
            Manifest::parse(None, index),
            Ok(Manifest::Index(_))
        ));
    }

    #[test]
    fn refuses_unsupported_and_broken_manifests() {
        let schema1 = br#"{"schemaVersion":1,"name":"x","fsLayers":[]}"#;
        assert!(matches!(
            Manifest::parse(None, schema1),
            Err(ManifestError::UnsupportedMediaType { .. })
        ));
        let signed =
            br#"{"mediaType":"application/vnd.docker.distribution.manifest.v1+prettyjws"}"#;
        assert!(matches!(
            Manifest::parse(None, signed),
            Err(ManifestError::UnsupportedMediaType { .. })
        ));
        assert!(matches!(
            Manifest::parse(Some(media::OCI_MANIFEST), b"not json"),
            Err(ManifestError::Json { .. })
        ));
        let bad_digest = br#"{"schemaVersion":2,"config":{"mediaType":"x","digest":"sha256:../x","size":1},"layers":[]}"#;
        assert!(matches!(
            Manifest::parse(Some(media::OCI_MANIFEST), bad_digest),
            Err(ManifestError::Json { .. })
        ));
        let negative = br#"{"schemaVersion":2,"config":{"mediaType":"x","digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","size":-1},"layers":[]}"#;
        assert!(Manifest::parse(Some(media::OCI_MANIFEST), negative).is_err());
    }

    #[test]
    fn tells_wasm_from_containers() {
        assert_eq!(
            manifest(media::WASM_CONFIG, &[media::WASM_LAYER]).kind(),
            ImageKind::Wasm
        );
        assert_eq!(
            manifest(media::OCI_CONFIG, &[media::OCI_LAYER_TAR_GZIP]).kind(),
            ImageKind::Container
        );
        assert_eq!(
            manifest(media::DOCKER_CONFIG, &[media::DOCKER_LAYER_TAR_GZIP]).kind(),
            ImageKind::Container
        );
        assert_eq!(
            manifest("application/vnd.cncf.helm.config.v1+json", &[]).kind(),
            ImageKind::Other
        );
    }

    #[test]
    fn wasm_layer_must_be_single() {
        let d = Digest::of(b"m");
        let good = manifest(media::WASM_CONFIG, &[media::WASM_LAYER]);
        assert_eq!(
            good.wasm_layer(&d).expect("one layer").media_type,
            media::WASM_LAYER
        );
        let two = manifest(media::WASM_CONFIG, &[media::WASM_LAYER, media::WASM_LAYER]);
        assert!(two.wasm_layer(&d).is_err());
        let none = manifest(media::WASM_CONFIG, &[]);
        let err = none.wasm_layer(&d).expect_err("no layer");
        assert!(err.to_string().contains("found none"), "{err}");
        let tar = manifest(media::WASM_CONFIG, &[media::OCI_LAYER_TAR]);
        assert!(tar.wasm_layer(&d).is_err());
    }

    #[test]
    fn index_selection_prefers_wasm_then_host() {
        let with_platform = |arch: &str, os: &str| Descriptor {
            platform: Some(Platform {
                architecture: arch.to_owned(),
                os: os.to_owned(),
                variant: None,
            }),
            ..descriptor(media::OCI_MANIFEST, format!("{arch}/{os}").as_bytes())
        };
        let host = go_arch(std::env::consts::ARCH);
        let mut index = ImageIndex {
            schema_version: 2,
            media_type: None,
            manifests: vec![
                with_platform("s390x", "linux"),
                with_platform(host, "linux"),
            ],
            annotations: BTreeMap::new(),
        };
        let chosen = index.select_for_host().expect("host entry");
        assert_eq!(
            chosen.platform.as_ref().map(|p| p.architecture.as_str()),
            Some(host)
        );
        index.manifests.push(with_platform("wasm", "wasip2"));
        let chosen = index.select_for_host().expect("wasm entry");
        assert_eq!(
            chosen.platform.as_ref().map(|p| p.os.as_str()),
            Some("wasip2")
        );
        index.manifests = vec![with_platform("mips", "plan9")];
        assert!(
            index.select_for_host().is_none(),
            "no entry for this machine"
        );
        index.manifests = vec![descriptor(media::OCI_MANIFEST, b"x")];
        assert!(
            index.select_for_host().is_some(),
            "a lone entry without platform"
        );
    }
}
