//! The cluster's public key infrastructure: a CA made on first start, the serving certificate,
//! the admin client certificate and bearer token, and the kubeconfig kubectl uses as-is.
//!
//! Everything lives under `DATA_DIR/pki/` and is reused by later starts, so a kubeconfig handed
//! out once keeps working. The serving certificate is re-issued (by the same CA) when the set of
//! SANs asked for changes, so adding `--tls-san` does not invalidate client credentials.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

/// The user name of the admin identity written to the kubeconfig.
pub const ADMIN_USER: &str = "bramble-admin";
/// User name prefix of node credentials (as in Kubernetes).
pub const NODE_USER_PREFIX: &str = "system:node:";
/// Group of node credentials (as in Kubernetes).
pub const NODES_GROUP: &str = "system:nodes";

/// The group that may do everything (as in Kubernetes).
pub const ADMIN_GROUP: &str = "system:masters";

/// Errors of certificate and kubeconfig handling.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// A file of the PKI could not be read or written.
    #[error("cannot access {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A certificate or key could not be made or parsed.
    #[error("certificate error for {what}: {source}")]
    Cert {
        /// Which certificate.
        what: &'static str,
        /// The cause.
        source: rcgen::Error,
    },
    /// A PEM file held no usable certificate or key.
    #[error("{path} holds no usable PEM {what}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What was expected.
        what: &'static str,
    },
}

/// The loaded PKI of a control plane.
pub struct Pki {
    dir: PathBuf,
    /// CA certificate, PEM.
    pub ca_pem: String,
    ca_key: KeyPair,
    /// Serving certificate chain, PEM.
    pub server_cert_pem: String,
    /// Serving key, PEM.
    pub server_key_pem: String,
    /// Admin client certificate, PEM.
    pub admin_cert_pem: String,
    /// Admin client key, PEM.
    pub admin_key_pem: String,
    /// Admin bearer token.
    pub admin_token: String,
}

impl Pki {
    /// Loads the PKI under `data_dir/pki`, creating what is missing. `sans` are the DNS names and
    /// IP addresses the serving certificate must carry.
    pub fn load_or_create(data_dir: &Path, sans: &[String]) -> Result<Pki, PkiError> {
        let dir = data_dir.join("pki");
        fs::create_dir_all(&dir).map_err(|source| PkiError::Io {
            path: dir.clone(),
            source,
        })?;

        let (ca_pem, ca_key) = match (
            read_opt(&dir.join("ca.crt"))?,
            read_opt(&dir.join("ca.key"))?,
        ) {
            (Some(cert), Some(key)) => (cert, parse_key(&dir.join("ca.key"), &key)?),
            _ => {
                let key =
                    KeyPair::generate().map_err(|source| PkiError::Cert { what: "ca", source })?;
                let mut params = CertificateParams::default();
                params.distinguished_name = dn("bramble-ca", None);
                params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
                params.key_usages = vec![
                    KeyUsagePurpose::KeyCertSign,
                    KeyUsagePurpose::CrlSign,
                    KeyUsagePurpose::DigitalSignature,
                ];
                (params.not_before, params.not_after) = validity(3650);
                let cert = params
                    .self_signed(&key)
                    .map_err(|source| PkiError::Cert { what: "ca", source })?;
                write_secret(&dir.join("ca.key"), &key.serialize_pem())?;
                write_file(&dir.join("ca.crt"), &cert.pem())?;
                (cert.pem(), key)
            }
        };

        let mut pki = Pki {
            dir: dir.clone(),
            ca_pem,
            ca_key,
            server_cert_pem: String::new(),
            server_key_pem: String::new(),
            admin_cert_pem: String::new(),
            admin_key_pem: String::new(),
            admin_token: String::new(),
        };

        let sans_line = sans.join(",");
        let sans_path = dir.join("server.sans");
        let server = (
            read_opt(&dir.join("server.crt"))?,
            read_opt(&dir.join("server.key"))?,
        );
        match (server, read_opt(&sans_path)?) {
            ((Some(cert), Some(key)), Some(saved)) if saved == sans_line => {
                pki.server_cert_pem = cert;
                pki.server_key_pem = key;
            }
            _ => {
                let (cert, key) = pki.issue_server(sans)?;
                write_secret(&dir.join("server.key"), &key)?;
                write_file(&dir.join("server.crt"), &cert)?;
                write_file(&sans_path, &sans_line)?;
                pki.server_cert_pem = cert;
                pki.server_key_pem = key;
            }
        }

        match (
            read_opt(&dir.join("admin.crt"))?,
            read_opt(&dir.join("admin.key"))?,
        ) {
            (Some(cert), Some(key)) => {
                pki.admin_cert_pem = cert;
                pki.admin_key_pem = key;
            }
            _ => {
                let (cert, key) = pki.issue_client(ADMIN_USER, &[ADMIN_GROUP], 365)?;
                write_secret(&dir.join("admin.key"), &key)?;
                write_file(&dir.join("admin.crt"), &cert)?;
                pki.admin_cert_pem = cert;
                pki.admin_key_pem = key;
            }
        }

        let token_path = dir.join("admin.token");
        pki.admin_token = match read_opt(&token_path)? {
            Some(token) if !token.trim().is_empty() => token.trim().to_string(),
            _ => {
                let token = random_token();
                write_secret(&token_path, &token)?;
                token
            }
        };
        Ok(pki)
    }

    /// The directory holding the PKI files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn issuer(&self) -> Result<Issuer<'static, &KeyPair>, PkiError> {
        Issuer::from_ca_cert_pem(&self.ca_pem, &self.ca_key)
            .map_err(|source| PkiError::Cert { what: "ca", source })
    }

    fn issue_server(&self, sans: &[String]) -> Result<(String, String), PkiError> {
        let key = KeyPair::generate().map_err(|source| PkiError::Cert {
            what: "server",
            source,
        })?;
        let mut params = CertificateParams::default();
        params.distinguished_name = dn("bramble-apiserver", None);
        params.subject_alt_names = sans
            .iter()
            .filter_map(|s| match s.parse::<std::net::IpAddr>() {
                Ok(ip) => Some(SanType::IpAddress(ip)),
                Err(_) => s.clone().try_into().ok().map(SanType::DnsName),
            })
            .collect();
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        (params.not_before, params.not_after) = validity(3650);
        let cert = params
            .signed_by(&key, &self.issuer()?)
            .map_err(|source| PkiError::Cert {
                what: "server",
                source,
            })?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    /// Issues a client certificate for `user` in `groups` (CN and O, as Kubernetes reads them).
    pub fn issue_client(
        &self,
        user: &str,
        groups: &[&str],
        days: i64,
    ) -> Result<(String, String), PkiError> {
        let key = KeyPair::generate().map_err(|source| PkiError::Cert {
            what: "client",
            source,
        })?;
        let mut params = CertificateParams::default();
        params.distinguished_name = dn(user, Some(groups));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        (params.not_before, params.not_after) = validity(days);
        let cert = params
            .signed_by(&key, &self.issuer()?)
            .map_err(|source| PkiError::Cert {
                what: "client",
                source,
            })?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    /// Signs a node's certificate request. The subject and usages come from here, never from
    /// the request: CN `system:node:<node>`, O `system:nodes`, client auth only.
    pub fn sign_node(&self, csr_pem: &str, node: &str, days: i64) -> Result<String, PkiError> {
        let mut request =
            rcgen::CertificateSigningRequestParams::from_pem(csr_pem).map_err(|source| {
                PkiError::Cert {
                    what: "node certificate request",
                    source,
                }
            })?;
        let mut params = CertificateParams::default();
        params.distinguished_name = dn(&format!("{NODE_USER_PREFIX}{node}"), Some(&[NODES_GROUP]));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        (params.not_before, params.not_after) = validity(days);
        request.params = params;
        let cert = request
            .signed_by(&self.issuer()?)
            .map_err(|source| PkiError::Cert {
                what: "node",
                source,
            })?;
        Ok(cert.pem())
    }

    /// The kubeconfig for the admin user, talking to `server` (an https URL).
    pub fn admin_kubeconfig(&self, server: &str) -> String {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: bramble\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\nusers:\n- name: {ADMIN_USER}\n  user:\n    client-certificate-data: {cert}\n    client-key-data: {key}\ncontexts:\n- name: bramble\n  context:\n    cluster: bramble\n    user: {ADMIN_USER}\n    namespace: default\ncurrent-context: bramble\npreferences: {{}}\n",
            ca = b64(&self.ca_pem),
            cert = b64(&self.admin_cert_pem),
            key = b64(&self.admin_key_pem),
        )
    }

    /// Writes the admin kubeconfig to `path` (mode 0600).
    pub fn write_kubeconfig(&self, path: &Path, server: &str) -> Result<(), PkiError> {
        write_secret(path, &self.admin_kubeconfig(server))
    }
}

fn dn(common_name: &str, orgs: Option<&[&str]>) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    for org in orgs.unwrap_or_default() {
        dn.push(DnType::OrganizationName, *org);
    }
    dn
}

fn parse_key(path: &Path, pem: &str) -> Result<KeyPair, PkiError> {
    KeyPair::from_pem(pem).map_err(|_| PkiError::Pem {
        path: path.to_path_buf(),
        what: "private key",
    })
}

fn read_opt(path: &Path) -> Result<Option<String>, PkiError> {
    match fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(PkiError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

fn write_file(path: &Path, contents: &str) -> Result<(), PkiError> {
    write_with_mode(path, contents, 0o644)
}

fn write_secret(path: &Path, contents: &str) -> Result<(), PkiError> {
    write_with_mode(path, contents, 0o600)
}

/// Writes through a temporary file and a rename, so a crash never leaves half a key behind.
fn write_with_mode(path: &Path, contents: &str, mode: u32) -> Result<(), PkiError> {
    use std::os::unix::fs::OpenOptionsExt;
    let io = |source| PkiError::Io {
        path: path.to_path_buf(),
        source,
    };
    let tmp = path.with_extension("tmp");
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io)?;
    file.write_all(contents.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)?;
    fs::rename(&tmp, path).map_err(io)
}

/// A 32-byte random bearer token, hex encoded.
pub fn random_token() -> String {
    let a = uuid::Uuid::new_v4();
    let b = uuid::Uuid::new_v4();
    format!("{}{}", a.simple(), b.simple())
}

/// (not_before, not_after): starting a day ago, so clocks that disagree a little between
/// machines do not reject a fresh certificate, and lasting `days`.
fn validity(days: i64) -> (time::OffsetDateTime, time::OffsetDateTime) {
    let now = time::OffsetDateTime::now_utc();
    (
        now - time::Duration::days(1),
        now + time::Duration::days(days),
    )
}
