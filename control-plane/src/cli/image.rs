//! `bramble image push|ls|inspect`: Wasm artifacts in the cluster's registry, which the control
//! plane serves at `https://HOST:PORT/v2/` (the API server's address and CA, found through the
//! kubeconfig as kubectl finds it).

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use bramble_node::oci::client::{ClientConfig, ClientError, Credentials, RegistryClient};
use bramble_node::oci::wasm::{build_artifact, WasmError, WasmKind};
use bramble_node::oci::{Manifest, Reference, ReferenceError};
use bytes::Bytes;
use serde_json::{json, Value};

use super::kubeconfig::{self, ClusterAccess, KubeconfigArgs, KubeconfigError};
use output::{pretty, write_summary, ProgressLine};

mod output;

/// Upload chunk size, small enough that progress moves during a push.
const CHUNK_SIZE: usize = 2 * 1024 * 1024;
/// Largest config blob `inspect` reads.
const CONFIG_LIMIT: usize = 4 * 1024 * 1024;
/// User name sent with a kubeconfig bearer token (the registry ignores it).
const TOKEN_USER: &str = "bramble";

/// Why a `bramble image` command failed.
#[derive(Debug, thiserror::Error)]
pub enum ImageCliError {
    /// The cluster could not be found from the kubeconfig.
    #[error(transparent)]
    Kubeconfig(#[from] KubeconfigError),
    /// The file to push could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file to push is not a valid Wasm binary.
    #[error("{path}: {source}")]
    Wasm {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        source: WasmError,
    },
    /// The image reference is invalid.
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    /// Talking to the registry failed.
    #[error("{action} {target}: {source}")]
    Registry {
        /// What was being done (`push`, `inspect`, `list`).
        action: &'static str,
        /// The reference or registry.
        target: String,
        /// The client error (boxed: it is large, and errors are the cold path).
        source: Box<ClientError>,
    },
    /// Writing the output failed.
    #[error("cannot write output: {0}")]
    Output(#[from] std::io::Error),
}

/// Output format of `ls` and `inspect`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// A readable summary.
    #[default]
    Text,
    /// JSON.
    Json,
}

/// `bramble image push FILE.wasm REF`.
#[derive(Debug, Clone, clap::Args)]
pub struct PushArgs {
    /// The .wasm file: a core module (pushed as wasip1) or a component (wasip2).
    pub file: PathBuf,
    /// Where to push: `repo/path:tag` on the cluster's registry, or a full reference.
    pub reference: String,
    /// Which cluster.
    #[command(flatten)]
    pub cluster: KubeconfigArgs,
}

/// `bramble image ls`.
#[derive(Debug, Clone, clap::Args)]
pub struct LsArgs {
    /// Output format.
    #[arg(short, long, value_enum, default_value_t)]
    pub output: OutputFormat,
    /// Which cluster.
    #[command(flatten)]
    pub cluster: KubeconfigArgs,
}

/// `bramble image inspect REF`.
#[derive(Debug, Clone, clap::Args)]
pub struct InspectArgs {
    /// The image: `repo/path:tag` (or `@sha256:…`) on the cluster's registry, or a full
    /// reference.
    pub reference: String,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t)]
    pub output: OutputFormat,
    /// Which cluster.
    #[command(flatten)]
    pub cluster: KubeconfigArgs,
}

/// Pushes a .wasm file as a Wasm OCI artifact and prints its reference and digest.
pub async fn push(args: PushArgs) -> Result<(), ImageCliError> {
    let access = kubeconfig::load(&args.cluster)?;
    let show_progress = std::io::stderr().is_terminal();
    push_to(&access, &args, &mut std::io::stdout().lock(), show_progress).await
}

/// Lists the repositories of the cluster's registry with their tags.
pub async fn ls(args: LsArgs) -> Result<(), ImageCliError> {
    let access = kubeconfig::load(&args.cluster)?;
    ls_to(&access, args.output, &mut std::io::stdout().lock()).await
}

/// Prints an image's manifest, config, size and digest.
pub async fn inspect(args: InspectArgs) -> Result<(), ImageCliError> {
    let access = kubeconfig::load(&args.cluster)?;
    inspect_to(&access, &args, &mut std::io::stdout().lock()).await
}

/// The cluster's registry (`host:port` of the API server).
fn registry_of(access: &ClusterAccess) -> &str {
    &access.host_port
}

/// `samples/hello:v1` is on the cluster's registry; `host:port/…` names its own.
fn resolve_reference(access: &ClusterAccess, text: &str) -> Result<Reference, ReferenceError> {
    if Reference::names_registry(text) {
        Reference::parse(text)
    } else {
        Reference::parse_with_default_registry(text, registry_of(access))
    }
}

/// A client for `registry`.
fn client_for(access: &ClusterAccess, registry: &str) -> Result<RegistryClient, ImageCliError> {
    RegistryClient::new(client_config(access, registry)).map_err(|source| ImageCliError::Registry {
        action: "connect to",
        target: registry.to_owned(),
        source: Box::new(source),
    })
}

/// The kubeconfig's CA and credentials for the cluster's own registry; the public web roots
/// and no credentials for any other.
fn client_config(access: &ClusterAccess, registry: &str) -> ClientConfig {
    let mut config = ClientConfig {
        chunk_size: CHUNK_SIZE,
        ..ClientConfig::default()
    };
    if registry == registry_of(access) {
        config.plain_http_loopback = !access.https;
        config.ca_pem = access.ca_pem.clone();
        config.accept_invalid_certs = access.insecure_skip_tls_verify;
        // As kubectl, credentials go only over TLS.
        if access.https {
            if let (Some(cert), Some(key)) =
                (&access.client_certificate_pem, &access.client_key_pem)
            {
                let mut pem = cert.clone();
                if !pem.ends_with(b"\n") {
                    pem.push(b'\n');
                }
                pem.extend_from_slice(key);
                config.identity_pem = Some(pem);
            }
            let credentials = match (&access.token, &access.basic) {
                (Some(token), _) => Some(Credentials::Basic {
                    username: TOKEN_USER.to_owned(),
                    password: token.clone(),
                }),
                (None, Some((username, password))) => Some(Credentials::Basic {
                    username: username.clone(),
                    password: password.clone(),
                }),
                (None, None) => None,
            };
            config
                .credentials
                .extend(credentials.map(|c| (registry.to_owned(), c)));
        }
    }
    config
}

async fn push_to(
    access: &ClusterAccess,
    args: &PushArgs,
    out: &mut dyn Write,
    show_progress: bool,
) -> Result<(), ImageCliError> {
    let bytes = tokio::fs::read(&args.file)
        .await
        .map_err(|source| ImageCliError::Read {
            path: args.file.clone(),
            source,
        })?;
    let title = title_of(&args.file);
    let artifact = build_artifact(&bytes, &title).map_err(|source| ImageCliError::Wasm {
        path: args.file.clone(),
        source,
    })?;
    let reference = resolve_reference(access, &args.reference)?;
    let client = client_for(access, reference.registry())?;
    let progress = ProgressLine::new(&title, bytes.len() as u64, show_progress);
    let report = |done, total| progress.update(done, total);
    let size = bytes.len();
    let pushed = client
        .push_wasm(&reference, &artifact, Bytes::from(bytes), Some(&report))
        .await;
    progress.finish();
    let digest = pushed.map_err(|source| ImageCliError::Registry {
        action: "push",
        target: reference.to_string(),
        source: Box::new(source),
    })?;
    let kind = match artifact.info.kind {
        WasmKind::Module => "module",
        WasmKind::Component => "component",
    };
    writeln!(out, "pushed {reference}")?;
    writeln!(out, "digest: {digest}")?;
    writeln!(
        out,
        "size: {size} bytes (wasm {kind}, {})",
        artifact.info.kind.os()
    )?;
    Ok(())
}

async fn ls_to(
    access: &ClusterAccess,
    format: OutputFormat,
    out: &mut dyn Write,
) -> Result<(), ImageCliError> {
    let registry = registry_of(access);
    let client = client_for(access, registry)?;
    let registry_error = |source| ImageCliError::Registry {
        action: "list",
        target: registry.to_owned(),
        source: Box::new(source),
    };
    let mut repositories = client.catalog(registry).await.map_err(registry_error)?;
    repositories.sort();
    let mut listed = Vec::new();
    for repository in repositories {
        let reference = Reference::parse_with_default_registry(&repository, registry)?;
        let mut tags = client.list_tags(&reference).await.map_err(registry_error)?;
        tags.sort();
        listed.push((repository, tags));
    }
    match format {
        OutputFormat::Json => {
            let repositories: Vec<Value> = listed
                .iter()
                .map(|(name, tags)| json!({"name": name, "tags": tags}))
                .collect();
            let doc = json!({"registry": registry, "repositories": repositories});
            writeln!(out, "{}", pretty(&doc))?;
        }
        OutputFormat::Text => {
            let width = listed
                .iter()
                .map(|(name, _)| name.len())
                .max()
                .unwrap_or(0)
                .max("REPOSITORY".len());
            writeln!(out, "{:<width$}   TAGS", "REPOSITORY")?;
            for (name, tags) in &listed {
                let tags = if tags.is_empty() {
                    "<none>".to_owned()
                } else {
                    tags.join(", ")
                };
                writeln!(out, "{name:<width$}   {tags}")?;
            }
        }
    }
    Ok(())
}

async fn inspect_to(
    access: &ClusterAccess,
    args: &InspectArgs,
    out: &mut dyn Write,
) -> Result<(), ImageCliError> {
    let reference = resolve_reference(access, &args.reference)?;
    let client = client_for(access, reference.registry())?;
    let registry_error = |source| ImageCliError::Registry {
        action: "inspect",
        target: reference.to_string(),
        source: Box::new(source),
    };
    let fetched = client
        .get_manifest(&reference)
        .await
        .map_err(registry_error)?;
    let (config, size) = match &fetched.manifest {
        Manifest::Image(manifest) => {
            let config = client
                .get_blob_bytes(&reference, &manifest.config, CONFIG_LIMIT)
                .await
                .map_err(registry_error)?;
            let size = (fetched.bytes.len() as u64).saturating_add(manifest.content_size());
            (Some(config), size)
        }
        Manifest::Index(_) => (None, fetched.bytes.len() as u64),
    };
    let manifest_json: Value = serde_json::from_slice(&fetched.bytes).unwrap_or(Value::Null);
    let config_json: Option<Value> = config.as_deref().map(|c| {
        serde_json::from_slice(c)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(c).into_owned()))
    });
    match args.output {
        OutputFormat::Json => {
            let doc = json!({
                "reference": reference.to_string(),
                "digest": fetched.digest.to_string(),
                "mediaType": fetched.media_type,
                "size": size,
                "manifest": manifest_json,
                "config": config_json,
            });
            writeln!(out, "{}", pretty(&doc))?;
        }
        OutputFormat::Text => {
            write_summary(out, &reference, &fetched, size, config.as_deref())?;
        }
    }
    Ok(())
}

/// The file name recorded as the artifact's title.
fn title_of(path: &Path) -> String {
    path.file_name().map_or_else(
        || "module.wasm".into(),
        |n| n.to_string_lossy().into_owned(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access(server: &str, https: bool) -> ClusterAccess {
        let host_port = server.split("://").nth(1).unwrap_or(server).to_owned();
        ClusterAccess {
            kubeconfig: PathBuf::from("/k/config"),
            context: "main".to_owned(),
            server: server.to_owned(),
            https,
            host_port,
            ca_pem: Some(b"CA".to_vec()),
            insecure_skip_tls_verify: false,
            client_certificate_pem: Some(b"CERT".to_vec()),
            client_key_pem: Some(b"KEY".to_vec()),
            token: Some("tok".to_owned()),
            basic: None,
        }
    }

    #[test]
    fn references_resolve_against_the_cluster_registry() {
        let a = access("https://10.0.0.5:6443", true);
        let r = resolve_reference(&a, "samples/hello:v1").expect("relative");
        assert_eq!(r.to_string(), "10.0.0.5:6443/samples/hello:v1");
        let r = resolve_reference(&a, "hello").expect("single name");
        assert_eq!(r.to_string(), "10.0.0.5:6443/hello:latest");
        let r = resolve_reference(&a, "ghcr.io/org/app:v2").expect("full");
        assert_eq!(r.registry(), "ghcr.io");
        assert!(resolve_reference(&a, "Samples/Hello").is_err());
    }

    #[test]
    fn cluster_credentials_go_only_to_the_cluster_over_tls() {
        let a = access("https://10.0.0.5:6443", true);
        let config = client_config(&a, "10.0.0.5:6443");
        assert_eq!(config.ca_pem.as_deref(), Some(b"CA".as_slice()));
        assert_eq!(
            config.identity_pem.as_deref(),
            Some(b"CERT\nKEY".as_slice())
        );
        assert_eq!(
            config.credentials.get("10.0.0.5:6443"),
            Some(&Credentials::Basic {
                username: TOKEN_USER.into(),
                password: "tok".into()
            })
        );
        assert!(!config.plain_http_loopback);

        let other = client_config(&a, "ghcr.io");
        assert!(other.ca_pem.is_none() && other.identity_pem.is_none());
        assert!(other.credentials.is_empty());

        let plain = access("http://127.0.0.1:8080", false);
        let config = client_config(&plain, "127.0.0.1:8080");
        assert!(config.plain_http_loopback);
        assert!(config.credentials.is_empty(), "no credentials over http");
        assert!(config.identity_pem.is_none());
    }
}
