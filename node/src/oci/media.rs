//! Media types and annotation keys of the OCI image and distribution specs, Docker's schema 2,
//! and the CNCF Wasm OCI artifact layout.

/// An OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// An OCI image index (a list of manifests, one per platform).
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// A Docker image manifest, schema version 2.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// A Docker manifest list (Docker's equivalent of an OCI index).
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// The config of an OCI container image.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// The config of a Docker container image.
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// The empty descriptor of OCI 1.1 artifacts that carry no config.
pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";

/// The config of a Wasm artifact (CNCF TAG Runtime "Wasm OCI Artifact layout").
pub const WASM_CONFIG: &str = "application/vnd.wasm.config.v0+json";
/// The single layer of a Wasm artifact: the module or component binary itself.
pub const WASM_LAYER: &str = "application/wasm";

/// An uncompressed OCI layer tarball.
pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
/// A gzip-compressed OCI layer tarball.
pub const OCI_LAYER_TAR_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// A zstd-compressed OCI layer tarball.
pub const OCI_LAYER_TAR_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
/// A gzip-compressed Docker layer tarball.
pub const DOCKER_LAYER_TAR_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// Annotation naming the artifact or a layer's file (used as the file name by ORAS and others).
pub const ANNOTATION_TITLE: &str = "org.opencontainers.image.title";
/// Annotation carrying the creation time (RFC 3339).
pub const ANNOTATION_CREATED: &str = "org.opencontainers.image.created";

/// The `Accept` header for manifest requests: every manifest and index type this client reads.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, \
     application/vnd.oci.image.index.v1+json, \
     application/vnd.docker.distribution.manifest.v2+json, \
     application/vnd.docker.distribution.manifest.list.v2+json";

/// The `os` of a Wasm artifact holding a core module (and of plain Wasm).
pub const WASM_OS_P1: &str = "wasip1";
/// The `os` of a Wasm artifact holding a component.
pub const WASM_OS_P2: &str = "wasip2";
/// The `architecture` of every Wasm artifact.
pub const WASM_ARCHITECTURE: &str = "wasm";

/// Whether `media_type` names a single-platform image manifest (OCI or Docker).
pub fn is_image_manifest(media_type: &str) -> bool {
    matches!(essence(media_type), OCI_MANIFEST | DOCKER_MANIFEST)
}

/// Whether `media_type` names a multi-platform index (OCI index or Docker manifest list).
pub fn is_index(media_type: &str) -> bool {
    matches!(essence(media_type), OCI_INDEX | DOCKER_MANIFEST_LIST)
}

/// Whether `media_type` names the config of a container image (OCI or Docker).
pub fn is_container_config(media_type: &str) -> bool {
    matches!(essence(media_type), OCI_CONFIG | DOCKER_CONFIG)
}

/// The media type without parameters (`type/subtype; charset=utf-8` → `type/subtype`), which is
/// what registries may append to `Content-Type`.
pub fn essence(media_type: &str) -> &str {
    media_type.split(';').next().map_or(media_type, str::trim)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_manifest_types() {
        assert!(is_image_manifest(OCI_MANIFEST));
        assert!(is_image_manifest(DOCKER_MANIFEST));
        assert!(!is_image_manifest(OCI_INDEX));
        assert!(is_index(OCI_INDEX));
        assert!(is_index(DOCKER_MANIFEST_LIST));
        assert!(!is_index(DOCKER_MANIFEST));
        assert!(is_container_config(DOCKER_CONFIG));
        assert!(!is_container_config(WASM_CONFIG));
    }

    #[test]
    fn parameters_are_ignored() {
        assert_eq!(
            essence("application/json; charset=utf-8"),
            "application/json"
        );
        assert!(is_image_manifest(
            "application/vnd.oci.image.manifest.v1+json ;charset=utf-8"
        ));
        assert_eq!(essence(""), "");
    }

    #[test]
    fn accept_header_lists_all_manifest_types() {
        for media in [
            OCI_MANIFEST,
            OCI_INDEX,
            DOCKER_MANIFEST,
            DOCKER_MANIFEST_LIST,
        ] {
            assert!(MANIFEST_ACCEPT.contains(media), "{media} missing");
        }
    }
}
