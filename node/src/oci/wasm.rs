//! Building a Wasm OCI artifact (CNCF TAG Runtime "Wasm OCI Artifact layout") from a `.wasm`
//! file, and reading its config back.
//!
//! The config's `component` section is the spec's; for core modules the spec leaves room for a
//! future `module` section, which Bramble fills with the same two lists so that a node can check a
//! module's WASI imports before pulling it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use wasmparser::{Encoding, Parser, Payload, Validator, WasmFeatures};

use super::digest::Digest;
use super::manifest::{Descriptor, ImageManifest};
use super::media;

/// The first four bytes of every Wasm binary.
const MAGIC: &[u8; 4] = b"\0asm";

/// Why a Wasm binary could not be packaged.
#[derive(Debug, thiserror::Error)]
pub enum WasmError {
    /// The file does not start with the Wasm magic bytes.
    #[error("not a wasm binary: it does not start with \\0asm (first bytes {first_bytes:02x?})")]
    NotWasm {
        /// Up to the first 8 bytes of the input.
        first_bytes: Vec<u8>,
    },
    /// The binary is malformed or invalid.
    #[error("invalid wasm binary at offset {offset}: {message}")]
    Invalid {
        /// Byte offset of the problem.
        offset: u64,
        /// What wasmparser reported.
        message: String,
    },
}

impl From<wasmparser::BinaryReaderError> for WasmError {
    fn from(e: wasmparser::BinaryReaderError) -> Self {
        Self::Invalid {
            offset: e.offset(),
            message: e.message().to_owned(),
        }
    }
}

/// Whether a binary is a core module (WASI preview 1) or a component (WASI preview 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WasmKind {
    /// A core Wasm module.
    Module,
    /// A component-model component.
    Component,
}

impl WasmKind {
    /// The artifact `os` for this kind: `wasip1` for modules, `wasip2` for components.
    pub fn os(self) -> &'static str {
        match self {
            Self::Module => media::WASM_OS_P1,
            Self::Component => media::WASM_OS_P2,
        }
    }
}

/// What a binary is and what it imports and exports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WasmInfo {
    /// Module or component.
    pub kind: WasmKind,
    /// Core modules: `module::name` pairs; components: top-level import names.
    pub imports: Vec<String>,
    /// Core modules: export names; components: top-level export names.
    pub exports: Vec<String>,
}

/// The imports and exports recorded in a Wasm artifact's config.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interfaces {
    /// Exported names.
    #[serde(default)]
    pub exports: Vec<String>,
    /// Imported names.
    #[serde(default)]
    pub imports: Vec<String>,
    /// The world the component targets, when known (optional metadata in the spec).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

/// The config blob of a Wasm artifact (`application/vnd.wasm.config.v0+json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WasmConfig {
    /// Creation time (RFC 3339); left out by Bramble so equal files give equal digests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// Author, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// Always `wasm`.
    pub architecture: String,
    /// `wasip1` (core module) or `wasip2` (component).
    pub os: String,
    /// Digests of the layers, in manifest order (keeps the config digest unique per artifact).
    #[serde(default)]
    pub layer_digests: Vec<Digest>,
    /// Imports and exports of a component (the spec requires it for `wasip2`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component: Option<Interfaces>,
    /// Imports and exports of a core module (Bramble's use of the spec's reserved section).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module: Option<Interfaces>,
}

/// Everything needed to push a Wasm binary as an artifact.
#[derive(Debug, Clone)]
pub struct WasmArtifact {
    /// What the binary is.
    pub info: WasmInfo,
    /// The config blob, serialized.
    pub config: Vec<u8>,
    /// The manifest, parsed.
    pub manifest: ImageManifest,
    /// The manifest, serialized exactly as it is pushed.
    pub manifest_bytes: Vec<u8>,
    /// Digest of `manifest_bytes`.
    pub manifest_digest: Digest,
}

/// Validates `bytes` and lists its imports and exports.
pub fn inspect(bytes: &[u8]) -> Result<WasmInfo, WasmError> {
    if bytes.get(..4) != Some(MAGIC.as_slice()) {
        return Err(WasmError::NotWasm {
            first_bytes: bytes.iter().take(8).copied().collect(),
        });
    }
    Validator::new_with_features(WasmFeatures::all()).validate_all(bytes)?;

    let mut kind = None;
    let mut imports = Vec::new();
    let mut exports = Vec::new();
    // Nested modules and components each open with a Version payload and close with End;
    // only depth 1 (the outermost binary) is recorded.
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(bytes) {
        match payload? {
            Payload::Version { encoding, .. } => {
                depth += 1;
                if depth == 1 {
                    kind = Some(match encoding {
                        Encoding::Module => WasmKind::Module,
                        Encoding::Component => WasmKind::Component,
                    });
                }
            }
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ImportSection(section) if depth == 1 => {
                for import in section.into_imports() {
                    let import = import?;
                    imports.push(format!("{}::{}", import.module, import.name));
                }
            }
            Payload::ExportSection(section) if depth == 1 => {
                for export in section {
                    exports.push(export?.name.to_owned());
                }
            }
            Payload::ComponentImportSection(section) if depth == 1 => {
                for import in section {
                    imports.push(import?.name.full_name().into_owned());
                }
            }
            Payload::ComponentExportSection(section) if depth == 1 => {
                for export in section {
                    exports.push(export?.name.full_name().into_owned());
                }
            }
            _ => {}
        }
    }
    let kind = kind.ok_or(WasmError::Invalid {
        offset: 0,
        message: "no version header".to_owned(),
    })?;
    Ok(WasmInfo {
        kind,
        imports,
        exports,
    })
}

/// Packages `bytes` as a Wasm artifact whose title (file name) is `title`.
pub fn build_artifact(bytes: &[u8], title: &str) -> Result<WasmArtifact, WasmError> {
    let info = inspect(bytes)?;
    let layer_digest = Digest::of(bytes);
    let interfaces = Interfaces {
        exports: info.exports.clone(),
        imports: info.imports.clone(),
        target: None,
    };
    let config = WasmConfig {
        created: None,
        author: None,
        architecture: media::WASM_ARCHITECTURE.to_owned(),
        os: info.kind.os().to_owned(),
        layer_digests: vec![layer_digest.clone()],
        component: (info.kind == WasmKind::Component).then(|| interfaces.clone()),
        module: (info.kind == WasmKind::Module).then_some(interfaces),
    };
    let config = to_json(&config);
    let title_annotation = BTreeMap::from([(media::ANNOTATION_TITLE.to_owned(), title.to_owned())]);
    let manifest = ImageManifest {
        schema_version: 2,
        media_type: Some(media::OCI_MANIFEST.to_owned()),
        // The layout designates the type through config.mediaType; repeating it as artifactType
        // lets OCI 1.1 clients that read only artifactType (referrers, ORAS) see the same type.
        artifact_type: Some(media::WASM_CONFIG.to_owned()),
        config: Descriptor {
            media_type: media::WASM_CONFIG.to_owned(),
            digest: Digest::of(&config),
            size: config.len() as u64,
            artifact_type: None,
            annotations: BTreeMap::new(),
            platform: None,
        },
        layers: vec![Descriptor {
            media_type: media::WASM_LAYER.to_owned(),
            digest: layer_digest,
            size: bytes.len() as u64,
            artifact_type: None,
            annotations: title_annotation.clone(),
            platform: None,
        }],
        annotations: title_annotation,
    };
    let manifest_bytes = to_json(&manifest);
    Ok(WasmArtifact {
        info,
        config,
        manifest_digest: Digest::of(&manifest_bytes),
        manifest,
        manifest_bytes,
    })
}

/// Serializes types whose fields are all strings, numbers, lists and string maps, which cannot
/// fail; an empty object stands in should that ever change.
fn to_json<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn section(id: u8, content: &[u8]) -> Vec<u8> {
        let mut out = vec![id];
        leb(&mut out, content.len());
        out.extend_from_slice(content);
        out
    }

    fn leb(out: &mut Vec<u8>, mut n: usize) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }

    fn name(s: &str) -> Vec<u8> {
        let mut out = Vec::new();
        leb(&mut out, s.len());
        out.extend_from_slice(s.as_bytes());
        out
    }

    /// A core module importing `wasi_snapshot_preview1::sched_yield` and exporting `_start`
    /// and `memory`; `padding` bytes of a custom section make it as large as a test needs.
    pub(crate) fn core_module(padding: usize) -> Vec<u8> {
        let mut m = b"\0asm\x01\0\0\0".to_vec();
        m.extend(section(1, &[1, 0x60, 0, 0]));
        let mut import = vec![1];
        import.extend(name("wasi_snapshot_preview1"));
        import.extend(name("sched_yield"));
        import.extend([0, 0]);
        m.extend(section(2, &import));
        m.extend(section(3, &[1, 0]));
        m.extend(section(5, &[1, 0, 1]));
        let mut export = vec![2];
        export.extend(name("_start"));
        export.extend([0, 1]);
        export.extend(name("memory"));
        export.extend([2, 0]);
        m.extend(section(7, &export));
        m.extend(section(10, &[1, 2, 0, 0x0b]));
        if padding > 0 {
            let mut custom = name("padding");
            custom.extend((0..padding).map(|i| (i % 251) as u8));
            m.extend(section(0, &custom));
        }
        m
    }

    /// A component importing instance `wasi:cli/environment@0.2.0`, re-exporting it as
    /// `wasi:cli/environment@0.2.1`, and embedding a core module whose imports must not show.
    pub(crate) fn component() -> Vec<u8> {
        let mut c = b"\0asm\x0d\0\x01\0".to_vec();
        c.extend(section(1, &core_module(0)));
        c.extend(section(7, &[1, 0x42, 0]));
        let mut import = vec![1, 0];
        import.extend(name("wasi:cli/environment@0.2.0"));
        import.extend([0x05, 0]);
        c.extend(section(10, &import));
        let mut export = vec![1, 0];
        export.extend(name("wasi:cli/environment@0.2.1"));
        export.extend([0x05, 0, 0]);
        c.extend(section(11, &export));
        c
    }

    #[test]
    fn core_module_imports_and_exports() {
        let info = inspect(&core_module(0)).expect("valid module");
        assert_eq!(info.kind, WasmKind::Module);
        assert_eq!(info.imports, ["wasi_snapshot_preview1::sched_yield"]);
        assert_eq!(info.exports, ["_start", "memory"]);
    }

    #[test]
    fn component_lists_only_top_level_names() {
        let info = inspect(&component()).expect("valid component");
        assert_eq!(info.kind, WasmKind::Component);
        assert_eq!(info.imports, ["wasi:cli/environment@0.2.0"]);
        assert_eq!(info.exports, ["wasi:cli/environment@0.2.1"]);
    }

    #[test]
    fn module_artifact_follows_the_layout() {
        let module = core_module(10);
        let artifact = build_artifact(&module, "hello.wasm").expect("artifact");
        let m = &artifact.manifest;
        assert_eq!(m.config.media_type, media::WASM_CONFIG);
        assert_eq!(m.artifact_type.as_deref(), Some(media::WASM_CONFIG));
        assert_eq!(m.layers.len(), 1);
        assert_eq!(m.layers[0].media_type, media::WASM_LAYER);
        assert_eq!(m.layers[0].digest, Digest::of(&module));
        assert_eq!(m.layers[0].size, module.len() as u64);
        assert_eq!(
            m.annotations
                .get(media::ANNOTATION_TITLE)
                .map(String::as_str),
            Some("hello.wasm")
        );
        assert_eq!(m.config.digest, Digest::of(&artifact.config));
        assert_eq!(
            artifact.manifest_digest,
            Digest::of(&artifact.manifest_bytes)
        );

        let config: serde_json::Value =
            serde_json::from_slice(&artifact.config).expect("config json");
        assert_eq!(config["architecture"], "wasm");
        assert_eq!(config["os"], "wasip1");
        assert_eq!(config["layerDigests"][0], Digest::of(&module).as_str());
        assert_eq!(
            config["module"]["imports"][0],
            "wasi_snapshot_preview1::sched_yield"
        );
        assert!(config.get("component").is_none());
        let parsed: WasmConfig = serde_json::from_slice(&artifact.config).expect("typed config");
        assert_eq!(parsed.module.map(|m| m.exports.len()), Some(2));
    }

    #[test]
    fn component_artifact_is_wasip2_with_component_section() {
        let artifact = build_artifact(&component(), "c.wasm").expect("artifact");
        let config: serde_json::Value =
            serde_json::from_slice(&artifact.config).expect("config json");
        assert_eq!(config["os"], "wasip2");
        assert_eq!(
            config["component"]["exports"][0],
            "wasi:cli/environment@0.2.1"
        );
        assert!(config.get("module").is_none());
    }

    #[test]
    fn same_file_gives_same_digest() {
        let a = build_artifact(&core_module(3), "x.wasm").expect("artifact");
        let b = build_artifact(&core_module(3), "x.wasm").expect("artifact");
        assert_eq!(a.manifest_digest, b.manifest_digest);
        let c = build_artifact(&core_module(4), "x.wasm").expect("artifact");
        assert_ne!(a.manifest_digest, c.manifest_digest);
    }

    #[test]
    fn refuses_non_wasm_and_invalid_binaries() {
        let err = inspect(b"#!/bin/sh\n").expect_err("not wasm");
        assert!(matches!(err, WasmError::NotWasm { .. }), "{err}");
        assert!(inspect(b"").is_err());
        assert!(matches!(
            inspect(b"\0asm\x02\0\0\0"),
            Err(WasmError::Invalid { .. })
        ));
        let mut truncated = core_module(0);
        truncated.truncate(truncated.len() - 3);
        assert!(matches!(
            inspect(&truncated),
            Err(WasmError::Invalid { .. })
        ));
        // Structurally fine but invalid: the export points at a function that does not exist.
        let mut bad = b"\0asm\x01\0\0\0".to_vec();
        let mut export = vec![1];
        export.extend(name("f"));
        export.extend([0, 7]);
        bad.extend(section(7, &export));
        assert!(matches!(inspect(&bad), Err(WasmError::Invalid { .. })));
    }
}
