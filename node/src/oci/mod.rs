//! The node's OCI registry client: references, digests, manifests, the registry HTTP client, and
//! Wasm artifacts (CNCF TAG Runtime "Wasm OCI Artifact layout").

pub mod client;
pub mod digest;
pub mod manifest;
pub mod media;
pub mod reference;
pub mod wasm;

pub use client::{ClientConfig, ClientError, Credentials, FetchedManifest, RegistryClient};
pub use digest::{Digest, DigestError};
pub use manifest::{Descriptor, ImageIndex, ImageKind, ImageManifest, Manifest, ManifestError};
pub use reference::{Reference, ReferenceError};
