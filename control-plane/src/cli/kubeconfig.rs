//! Finding the cluster the way kubectl does: `--kubeconfig`, else the first file of
//! `$KUBECONFIG`, else `~/.kube/config`; then the context (`--context` or `current-context`),
//! its cluster (server URL, CA) and its user (client certificate and key, token, or basic auth).

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::Deserialize;

/// Why the cluster could not be found from the kubeconfig.
#[derive(Debug, thiserror::Error)]
pub enum KubeconfigError {
    /// No `--kubeconfig`, no `KUBECONFIG` and no home directory.
    #[error("no kubeconfig: pass --kubeconfig, set KUBECONFIG, or create ~/.kube/config")]
    NotFound,
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file is not a kubeconfig.
    #[error("invalid kubeconfig {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The YAML error.
        source: serde_yaml::Error,
    },
    /// Neither `--context` nor `current-context` names a context.
    #[error("kubeconfig {path} has no current-context; pass --context")]
    NoContext {
        /// The file.
        path: PathBuf,
    },
    /// A context, cluster or user the kubeconfig refers to is not defined in it.
    #[error("kubeconfig {path} has no {kind} named {name:?}")]
    Missing {
        /// The file.
        path: PathBuf,
        /// `context`, `cluster` or `user`.
        kind: &'static str,
        /// The name looked for.
        name: String,
    },
    /// A `*-data` field is not base64.
    #[error("kubeconfig {path}: {field} is not valid base64: {source}")]
    Base64 {
        /// The file.
        path: PathBuf,
        /// The field.
        field: &'static str,
        /// The decode error.
        source: base64::DecodeError,
    },
    /// The server URL is not `http(s)://host[:port][/path]`.
    #[error("kubeconfig {path}: invalid server url {server:?}")]
    Server {
        /// The file.
        path: PathBuf,
        /// The URL.
        server: String,
    },
    /// The user authenticates in a way this CLI does not implement.
    #[error("kubeconfig {path}: user {user:?} uses {mechanism}, which bramble image does not support; use a client certificate, token or basic auth")]
    UnsupportedAuth {
        /// The file.
        path: PathBuf,
        /// The user entry.
        user: String,
        /// `exec` or `auth-provider`.
        mechanism: &'static str,
    },
}

/// Which kubeconfig and context to use (flattened into each `bramble image` subcommand).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct KubeconfigArgs {
    /// Kubeconfig file (default: first file in $KUBECONFIG, else ~/.kube/config).
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// Context to use (default: the kubeconfig's current-context).
    #[arg(long, value_name = "NAME")]
    pub context: Option<String>,
}

/// How to reach and authenticate to the cluster.
#[derive(Clone, PartialEq, Eq)]
pub struct ClusterAccess {
    /// The kubeconfig file this came from.
    pub kubeconfig: PathBuf,
    /// The context used.
    pub context: String,
    /// The API server URL.
    pub server: String,
    /// Whether the server URL is `https`.
    pub https: bool,
    /// `host:port` of the server (the registry lives on the same port).
    pub host_port: String,
    /// PEM CA bundle, from `certificate-authority-data` or `certificate-authority`.
    pub ca_pem: Option<Vec<u8>>,
    /// `insecure-skip-tls-verify`.
    pub insecure_skip_tls_verify: bool,
    /// PEM client certificate.
    pub client_certificate_pem: Option<Vec<u8>>,
    /// PEM client key.
    pub client_key_pem: Option<Vec<u8>>,
    /// Bearer token (from `token` or `tokenFile`).
    pub token: Option<String>,
    /// Basic auth user name and password.
    pub basic: Option<(String, String)>,
}

impl std::fmt::Debug for ClusterAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Keys, tokens and passwords stay out of logs.
        f.debug_struct("ClusterAccess")
            .field("kubeconfig", &self.kubeconfig)
            .field("context", &self.context)
            .field("server", &self.server)
            .field("has_ca", &self.ca_pem.is_some())
            .field(
                "has_client_certificate",
                &self.client_certificate_pem.is_some(),
            )
            .field("has_token", &self.token.is_some())
            .field("has_basic", &self.basic.is_some())
            .finish()
    }
}

#[derive(Deserialize)]
struct Kubeconfig {
    #[serde(rename = "current-context", default)]
    current_context: Option<String>,
    #[serde(default)]
    clusters: Vec<Named<Cluster>>,
    #[serde(default)]
    users: Vec<NamedUser>,
    #[serde(default)]
    contexts: Vec<NamedContext>,
}

#[derive(Deserialize)]
struct Named<T> {
    name: String,
    cluster: T,
}

#[derive(Deserialize)]
struct NamedUser {
    name: String,
    #[serde(default)]
    user: User,
}

#[derive(Deserialize)]
struct NamedContext {
    name: String,
    context: Context,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct Cluster {
    server: String,
    certificate_authority: Option<PathBuf>,
    certificate_authority_data: Option<String>,
    #[serde(default)]
    insecure_skip_tls_verify: bool,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
struct User {
    client_certificate: Option<PathBuf>,
    client_certificate_data: Option<String>,
    client_key: Option<PathBuf>,
    client_key_data: Option<String>,
    token: Option<String>,
    #[serde(rename = "tokenFile")]
    token_file: Option<PathBuf>,
    username: Option<String>,
    password: Option<String>,
    exec: Option<serde_yaml::Value>,
    auth_provider: Option<serde_yaml::Value>,
}

#[derive(Deserialize)]
struct Context {
    cluster: String,
    user: Option<String>,
}

/// Reads the kubeconfig `args` points at and resolves its context.
pub fn load(args: &KubeconfigArgs) -> Result<ClusterAccess, KubeconfigError> {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let path = locate(
        args.kubeconfig.as_deref(),
        std::env::var_os("KUBECONFIG"),
        home,
    )?;
    let text = std::fs::read_to_string(&path).map_err(|source| KubeconfigError::Read {
        path: path.clone(),
        source,
    })?;
    resolve(&text, &path, args.context.as_deref())
}

/// Which file to read: `explicit`, else the first entry of `kubeconfig_env` (a `:`-separated
/// list), else `home/.kube/config`.
pub fn locate(
    explicit: Option<&Path>,
    kubeconfig_env: Option<OsString>,
    home: Option<PathBuf>,
) -> Result<PathBuf, KubeconfigError> {
    if let Some(path) = explicit {
        return Ok(path.to_path_buf());
    }
    if let Some(list) = kubeconfig_env {
        if let Some(first) = std::env::split_paths(&list).find(|p| !p.as_os_str().is_empty()) {
            return Ok(first);
        }
    }
    home.map(|h| h.join(".kube").join("config"))
        .ok_or(KubeconfigError::NotFound)
}

/// Resolves `context` (or the current context) of the kubeconfig `text` read from `path`;
/// relative file names in it are relative to `path`'s directory, as kubectl reads them.
pub fn resolve(
    text: &str,
    path: &Path,
    context: Option<&str>,
) -> Result<ClusterAccess, KubeconfigError> {
    let config: Kubeconfig =
        serde_yaml::from_str(text).map_err(|source| KubeconfigError::Parse {
            path: path.to_path_buf(),
            source,
        })?;
    let missing = |kind, name: &str| KubeconfigError::Missing {
        path: path.to_path_buf(),
        kind,
        name: name.to_owned(),
    };
    let context_name = context
        .map(str::to_owned)
        .or(config.current_context.clone())
        .filter(|c| !c.is_empty())
        .ok_or_else(|| KubeconfigError::NoContext {
            path: path.to_path_buf(),
        })?;
    let ctx = config
        .contexts
        .iter()
        .find(|c| c.name == context_name)
        .map(|c| &c.context)
        .ok_or_else(|| missing("context", &context_name))?;
    let cluster = config
        .clusters
        .iter()
        .find(|c| c.name == ctx.cluster)
        .map(|c| &c.cluster)
        .ok_or_else(|| missing("cluster", &ctx.cluster))?;
    let user = match &ctx.user {
        Some(name) => Some(
            config
                .users
                .iter()
                .find(|u| &u.name == name)
                .ok_or_else(|| missing("user", name))?,
        ),
        None => None,
    };
    let (https, host_port) =
        parse_server(&cluster.server).ok_or_else(|| KubeconfigError::Server {
            path: path.to_path_buf(),
            server: cluster.server.clone(),
        })?;
    let files = Files { kubeconfig: path };
    let mut access = ClusterAccess {
        kubeconfig: path.to_path_buf(),
        context: context_name,
        server: cluster.server.clone(),
        https,
        host_port,
        ca_pem: files.data_or_file(
            "certificate-authority-data",
            cluster.certificate_authority_data.as_deref(),
            cluster.certificate_authority.as_deref(),
        )?,
        insecure_skip_tls_verify: cluster.insecure_skip_tls_verify,
        client_certificate_pem: None,
        client_key_pem: None,
        token: None,
        basic: None,
    };
    if let Some(NamedUser { name, user }) = user {
        let unsupported = |mechanism| KubeconfigError::UnsupportedAuth {
            path: path.to_path_buf(),
            user: name.clone(),
            mechanism,
        };
        access.client_certificate_pem = files.data_or_file(
            "client-certificate-data",
            user.client_certificate_data.as_deref(),
            user.client_certificate.as_deref(),
        )?;
        access.client_key_pem = files.data_or_file(
            "client-key-data",
            user.client_key_data.as_deref(),
            user.client_key.as_deref(),
        )?;
        access.token = match (&user.token, &user.token_file) {
            (Some(token), _) => Some(token.trim().to_owned()),
            (None, Some(file)) => Some(files.read_text(file)?.trim().to_owned()),
            (None, None) => None,
        }
        .filter(|t| !t.is_empty());
        access.basic = user.username.clone().zip(user.password.clone());
        let has_static_auth = access.client_certificate_pem.is_some()
            || access.token.is_some()
            || access.basic.is_some();
        if !has_static_auth && user.exec.is_some() {
            return Err(unsupported("an exec credential plugin"));
        }
        if !has_static_auth && user.auth_provider.is_some() {
            return Err(unsupported("an auth-provider plugin"));
        }
    }
    Ok(access)
}

/// Reads the files a kubeconfig names, relative to its own directory.
struct Files<'a> {
    kubeconfig: &'a Path,
}

impl Files<'_> {
    fn full_path(&self, file: &Path) -> PathBuf {
        match self.kubeconfig.parent() {
            Some(dir) if file.is_relative() => dir.join(file),
            _ => file.to_path_buf(),
        }
    }

    fn read(&self, file: &Path) -> Result<Vec<u8>, KubeconfigError> {
        let path = self.full_path(file);
        std::fs::read(&path).map_err(|source| KubeconfigError::Read { path, source })
    }

    fn read_text(&self, file: &Path) -> Result<String, KubeconfigError> {
        let path = self.full_path(file);
        std::fs::read_to_string(&path).map_err(|source| KubeconfigError::Read { path, source })
    }

    /// `*-data` (base64) wins over the file, as in kubectl.
    fn data_or_file(
        &self,
        field: &'static str,
        data: Option<&str>,
        file: Option<&Path>,
    ) -> Result<Option<Vec<u8>>, KubeconfigError> {
        match (data.filter(|d| !d.trim().is_empty()), file) {
            (Some(data), _) => base64::engine::general_purpose::STANDARD
                .decode(data.trim())
                .map(Some)
                .map_err(|source| KubeconfigError::Base64 {
                    path: self.kubeconfig.to_path_buf(),
                    field,
                    source,
                }),
            (None, Some(file)) => self.read(file).map(Some),
            (None, None) => Ok(None),
        }
    }
}

/// `https://host:6443/prefix` → (true, `host:6443`); the default port is filled in so the
/// result always reads as a registry in an image reference.
fn parse_server(server: &str) -> Option<(bool, String)> {
    let (https, rest) = if let Some(rest) = server.strip_prefix("https://") {
        (true, rest)
    } else if let Some(rest) = server.strip_prefix("http://") {
        (false, rest)
    } else {
        return None;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    if authority.is_empty() {
        return None;
    }
    let has_port = match authority.strip_prefix('[') {
        Some(v6) => v6
            .split_once(']')
            .is_some_and(|(_, after)| after.starts_with(':')),
        None => authority.contains(':'),
    };
    let host_port = if has_port {
        authority.to_owned()
    } else {
        format!("{authority}:{}", if https { 443 } else { 80 })
    };
    Some((https, host_port))
}

#[cfg(test)]
mod tests {
    use super::*;

    const B64_CA: &str = "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg=="; // "-----BEGIN CERTIFICATE-----\n"

    fn kubeconfig(user: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: main\n\
             clusters:\n- name: c1\n  cluster:\n    server: https://10.0.0.5:6443\n    certificate-authority-data: {B64_CA}\n\
             - name: c2\n  cluster:\n    server: http://127.0.0.1\n    certificate-authority: ca.crt\n\
             contexts:\n- name: main\n  context:\n    cluster: c1\n    user: u1\n\
             - name: other\n  context:\n    cluster: c2\n    user: u1\n\
             - name: broken\n  context:\n    cluster: nope\n\
             users:\n- name: u1\n  user:\n{user}"
        )
    }

    #[test]
    fn locate_follows_kubectl_precedence() {
        let home = Some(PathBuf::from("/home/me"));
        assert_eq!(
            locate(Some(Path::new("/x/k")), Some("/a:/b".into()), home.clone()).expect("explicit"),
            PathBuf::from("/x/k")
        );
        assert_eq!(
            locate(None, Some("/a/k1:/b/k2".into()), home.clone()).expect("env"),
            PathBuf::from("/a/k1")
        );
        assert_eq!(
            locate(None, Some("".into()), home.clone()).expect("empty env"),
            PathBuf::from("/home/me/.kube/config")
        );
        assert_eq!(
            locate(None, None, home).expect("home"),
            PathBuf::from("/home/me/.kube/config")
        );
        assert!(matches!(
            locate(None, None, None),
            Err(KubeconfigError::NotFound)
        ));
    }

    #[test]
    fn current_context_with_inline_data_and_token() {
        let text = kubeconfig("    token: abc.def\n    client-certificate-data: Y2VydA==\n    client-key-data: a2V5\n");
        let access = resolve(&text, Path::new("/k/config"), None).expect("resolve");
        assert_eq!(access.context, "main");
        assert_eq!(access.host_port, "10.0.0.5:6443");
        assert!(access.https);
        assert_eq!(
            access.ca_pem.as_deref(),
            Some(b"-----BEGIN CERTIFICATE-----\n".as_slice())
        );
        assert_eq!(
            access.client_certificate_pem.as_deref(),
            Some(b"cert".as_slice())
        );
        assert_eq!(access.client_key_pem.as_deref(), Some(b"key".as_slice()));
        assert_eq!(access.token.as_deref(), Some("abc.def"));
        assert!(
            !format!("{access:?}").contains("abc.def"),
            "token not in debug output"
        );
    }

    #[test]
    fn files_are_relative_to_the_kubeconfig() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("ca.crt"), b"CA PEM").expect("ca");
        std::fs::write(dir.path().join("tok"), b"  file-token\n").expect("token");
        std::fs::write(dir.path().join("u.crt"), b"CERT").expect("cert");
        std::fs::write(dir.path().join("u.key"), b"KEY").expect("key");
        let text = kubeconfig(
            "    tokenFile: tok\n    client-certificate: u.crt\n    client-key: u.key\n",
        );
        let path = dir.path().join("config");
        let access = resolve(&text, &path, Some("other")).expect("resolve");
        assert_eq!(access.host_port, "127.0.0.1:80");
        assert!(!access.https);
        assert_eq!(access.ca_pem.as_deref(), Some(b"CA PEM".as_slice()));
        assert_eq!(access.token.as_deref(), Some("file-token"));
        assert_eq!(
            access.client_certificate_pem.as_deref(),
            Some(b"CERT".as_slice())
        );
        assert_eq!(access.client_key_pem.as_deref(), Some(b"KEY".as_slice()));
    }

    #[test]
    fn bad_kubeconfigs_are_refused_with_context() {
        let path = Path::new("/k/config");
        let text = kubeconfig("    token: t\n");
        assert!(matches!(
            resolve(&text, path, Some("nope")),
            Err(KubeconfigError::Missing {
                kind: "context",
                ..
            })
        ));
        assert!(matches!(
            resolve(&text, path, Some("broken")),
            Err(KubeconfigError::Missing {
                kind: "cluster",
                ..
            })
        ));
        let err = resolve(&text, path, Some("other")).expect_err("ca.crt missing");
        assert!(err.to_string().contains("/k/ca.crt"), "{err}");
        assert!(matches!(
            resolve("clusters: 7", path, None),
            Err(KubeconfigError::Parse { .. })
        ));
        assert!(matches!(
            resolve("apiVersion: v1\n", path, None),
            Err(KubeconfigError::NoContext { .. })
        ));
        let bad_data = kubeconfig("    client-key-data: '%%%'\n");
        assert!(matches!(
            resolve(&bad_data, path, None),
            Err(KubeconfigError::Base64 {
                field: "client-key-data",
                ..
            })
        ));
        let exec = kubeconfig("    exec:\n      command: aws\n");
        assert!(matches!(
            resolve(&exec, path, None),
            Err(KubeconfigError::UnsupportedAuth { .. })
        ));
        let bad_server = text.replace("https://10.0.0.5:6443", "ftp://x");
        assert!(matches!(
            resolve(&bad_server, path, None),
            Err(KubeconfigError::Server { .. })
        ));
    }

    #[test]
    fn server_urls() {
        assert_eq!(
            parse_server("https://cp.local"),
            Some((true, "cp.local:443".into()))
        );
        assert_eq!(
            parse_server("https://cp:6443/prefix"),
            Some((true, "cp:6443".into()))
        );
        assert_eq!(
            parse_server("https://[::1]:6443"),
            Some((true, "[::1]:6443".into()))
        );
        assert_eq!(
            parse_server("https://[::1]"),
            Some((true, "[::1]:443".into()))
        );
        assert_eq!(
            parse_server("http://u:p@h:8080/"),
            Some((false, "h:8080".into()))
        );
        assert_eq!(parse_server("https://"), None);
        assert_eq!(parse_server("cp:6443"), None);
    }
}
