//! What the scheduler knows of a pod's images: a Wasm artifact (runs on any node, any arch) or
//! a container image (needs a node with a container runtime, of an architecture the image is
//! built for). Found by reading the image's manifest (and, for a single-platform image, its
//! config) from the cluster's own registry directly, or from the image's registry over the
//! network; remembered per reference for a while.
//!
//! Inspection never blocks a decision: a pod whose images are not known yet waits, parked,
//! while one task per reference finds out, and is decided again when it has. An image that
//! cannot be inspected (registry down, private, too slow) places no constraint: the node then
//! reports the pull error as the kubelet would.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bramble_node::oci::client::{ClientConfig, RegistryClient};
use bramble_node::oci::manifest::{ImageKind, Manifest};
use bramble_node::oci::Reference;
use tokio::sync::mpsc;

use crate::registry::Registry;

/// Longest an inspection may take before the image is taken as unknown.
const INSPECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long what was learnt of a reference holds (a tag may move to another image).
const KNOWN_FOR: Duration = Duration::from_secs(300);
/// How long an image that could not be inspected is left alone before trying again.
const UNKNOWN_FOR: Duration = Duration::from_secs(30);
/// Largest image config read.
const CONFIG_LIMIT: usize = 1 << 20;

/// What an image needs of a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageFacts {
    /// A Wasm artifact.
    Wasm,
    /// A container image for these architectures (Go's names, e.g. `amd64`, `arm64`).
    Container {
        /// Never empty.
        arches: Vec<String>,
    },
    /// Could not be told: no constraint.
    Unknown,
}

impl ImageFacts {
    /// The facts a manifest or index states; `config` is a single-platform image's config.
    pub fn of(manifest: &Manifest, config: Option<&[u8]>) -> ImageFacts {
        match manifest {
            Manifest::Index(index) => {
                let platforms = index.manifests.iter().filter_map(|m| m.platform.as_ref());
                let mut arches = Vec::new();
                for platform in platforms {
                    if platform.os.starts_with("wasi") || platform.architecture == "wasm" {
                        return ImageFacts::Wasm;
                    }
                    // Attestation manifests say "unknown"; only Linux images run on nodes.
                    if platform.os == "linux" && !arches.contains(&platform.architecture) {
                        arches.push(platform.architecture.clone());
                    }
                }
                if arches.is_empty() {
                    ImageFacts::Unknown
                } else {
                    ImageFacts::Container { arches }
                }
            }
            Manifest::Image(image) => match image.kind() {
                ImageKind::Wasm => ImageFacts::Wasm,
                ImageKind::Container => {
                    #[derive(serde::Deserialize)]
                    struct Config {
                        architecture: Option<String>,
                    }
                    match config
                        .and_then(|c| serde_json::from_slice::<Config>(c).ok())
                        .and_then(|c| c.architecture)
                        .filter(|a| !a.is_empty())
                    {
                        Some(arch) => ImageFacts::Container { arches: vec![arch] },
                        None => ImageFacts::Unknown,
                    }
                }
                ImageKind::Other => ImageFacts::Unknown,
            },
        }
    }
}

struct Entry {
    /// None while an inspection is under way.
    facts: Option<ImageFacts>,
    at: Instant,
}

/// Inspects images for the scheduler; one per scheduler.
pub struct ImageInspector {
    registry: Arc<Registry>,
    /// The port the cluster's own registry is served on: references to it are read from its
    /// storage (the network path would need credentials the scheduler has no need for).
    own_port: Option<u16>,
    remote: Option<RegistryClient>,
    known: Mutex<HashMap<String, Entry>>,
    learnt: mpsc::UnboundedSender<String>,
}

impl ImageInspector {
    /// An inspector reading the cluster's `registry` (served at `advertise`, host:port) and
    /// others over the network; the receiver hears each reference once it has been inspected.
    pub fn new(
        registry: Arc<Registry>,
        advertise: &str,
    ) -> (Arc<ImageInspector>, mpsc::UnboundedReceiver<String>) {
        let (learnt, heard) = mpsc::unbounded_channel();
        let remote = RegistryClient::new(ClientConfig {
            connect_timeout: INSPECT_TIMEOUT,
            read_timeout: INSPECT_TIMEOUT,
            ..ClientConfig::default()
        })
        .map_err(
            |e| tracing::warn!(error = %e, "no registry client: remote images are not inspected"),
        )
        .ok();
        let own_port = advertise
            .rsplit_once(':')
            .and_then(|(_, port)| port.parse().ok());
        let inspector = ImageInspector {
            registry,
            own_port,
            remote,
            known: Mutex::new(HashMap::new()),
            learnt,
        };
        (Arc::new(inspector), heard)
    }

    /// The facts of `image` when known; otherwise starts finding out (once per reference) and
    /// returns None.
    pub fn facts(self: &Arc<Self>, image: &str) -> Option<ImageFacts> {
        let now = Instant::now();
        let mut known = self.known.lock().unwrap_or_else(PoisonError::into_inner);
        let stale = match known.get(image) {
            // Being inspected.
            Some(Entry { facts: None, .. }) => return None,
            Some(Entry {
                facts: Some(facts),
                at,
            }) => {
                let lasts = if *facts == ImageFacts::Unknown {
                    UNKNOWN_FOR
                } else {
                    KNOWN_FOR
                };
                if now.duration_since(*at) < lasts {
                    return Some(facts.clone());
                }
                // Used once more while it is looked at again.
                Some(facts.clone())
            }
            None => None,
        };
        known.insert(
            image.to_owned(),
            Entry {
                facts: None,
                at: now,
            },
        );
        drop(known);
        self.spawn_inspection(image);
        stale
    }

    fn spawn_inspection(self: &Arc<Self>, image: &str) {
        let this = self.clone();
        let image = image.to_owned();
        tokio::spawn(async move {
            let facts = tokio::time::timeout(INSPECT_TIMEOUT, this.inspect(&image))
                .await
                .unwrap_or_else(|_| Err("timed out".to_owned()))
                .unwrap_or_else(|reason| {
                    tracing::info!(%image, %reason, "image not inspected; placing it anywhere its runtime class allows");
                    ImageFacts::Unknown
                });
            tracing::debug!(%image, ?facts, "image inspected");
            this.known
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(
                    image.clone(),
                    Entry {
                        facts: Some(facts),
                        at: Instant::now(),
                    },
                );
            let _ = this.learnt.send(image);
        });
    }

    async fn inspect(&self, image: &str) -> Result<ImageFacts, String> {
        let reference = Reference::parse(image).map_err(|e| e.to_string())?;
        if self.is_own(&reference) {
            if let Ok(facts) = self.inspect_own(&reference).await {
                return Ok(facts);
            }
        }
        let Some(client) = &self.remote else {
            return Err("no registry client".to_owned());
        };
        let fetched = client
            .get_manifest(&reference)
            .await
            .map_err(|e| e.to_string())?;
        let config = match &fetched.manifest {
            Manifest::Image(m) if m.kind() == ImageKind::Container => Some(
                client
                    .get_blob_bytes(&reference, &m.config, CONFIG_LIMIT)
                    .await
                    .map_err(|e| e.to_string())?,
            ),
            _ => None,
        };
        Ok(ImageFacts::of(&fetched.manifest, config.as_deref()))
    }

    fn is_own(&self, reference: &Reference) -> bool {
        let port = reference
            .registry()
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse::<u16>().ok());
        port.is_some() && port == self.own_port
    }

    async fn inspect_own(&self, reference: &Reference) -> Result<ImageFacts, String> {
        let stored = self
            .registry
            .manifest(reference.repository(), reference.manifest_reference())
            .await
            .map_err(|e| e.to_string())?;
        let manifest =
            Manifest::parse(Some(&stored.media_type), &stored.bytes).map_err(|e| e.to_string())?;
        let config = match &manifest {
            Manifest::Image(m) if m.kind() == ImageKind::Container => self
                .registry
                .blob(&m.config.digest.to_string())
                .await
                .map_err(|e| e.to_string())?,
            _ => None,
        };
        Ok(ImageFacts::of(&manifest, config.as_deref()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Manifest {
        Manifest::parse(None, json.as_bytes()).unwrap()
    }

    const DIGEST: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn an_index_lists_its_linux_architectures() {
        let index = parse(&format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[
              {{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{DIGEST}","size":1,"platform":{{"architecture":"amd64","os":"linux"}}}},
              {{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{DIGEST}","size":1,"platform":{{"architecture":"arm64","os":"linux","variant":"v8"}}}},
              {{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{DIGEST}","size":1,"platform":{{"architecture":"unknown","os":"unknown"}}}}]}}"#
        ));
        assert_eq!(
            ImageFacts::of(&index, None),
            ImageFacts::Container {
                arches: vec!["amd64".into(), "arm64".into()]
            }
        );
    }

    #[test]
    fn a_single_image_is_for_its_configs_architecture() {
        let image = parse(&format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
               "config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{DIGEST}","size":1}},
               "layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{DIGEST}","size":1}}]}}"#
        ));
        assert_eq!(
            ImageFacts::of(&image, Some(br#"{"architecture":"riscv64","os":"linux"}"#)),
            ImageFacts::Container {
                arches: vec!["riscv64".into()]
            }
        );
        assert_eq!(
            ImageFacts::of(&image, Some(b"not json")),
            ImageFacts::Unknown
        );
    }

    #[test]
    fn a_wasm_artifact_runs_anywhere() {
        let wasm = parse(&format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
               "config":{{"mediaType":"application/vnd.wasm.config.v0+json","digest":"{DIGEST}","size":1}},
               "layers":[{{"mediaType":"application/wasm","digest":"{DIGEST}","size":1}}]}}"#
        ));
        assert_eq!(ImageFacts::of(&wasm, None), ImageFacts::Wasm);
    }
}
