//! Joining a cluster and the credentials a node keeps afterwards.
//!
//! `join` fetches the cluster CA from `/cacerts` without trusting the connection, checks it
//! against the hash carried in the join token (so a man in the middle is caught before anything
//! secret is sent), then calls `Join` over TLS verified with that CA and stores the node
//! certificate. Every later connection authenticates with that certificate.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bramble_api::join_token::JoinToken;
use bramble_api::node_protocol::node_gateway_client::NodeGatewayClient;
use bramble_api::node_protocol::JoinRequest;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// Why joining or loading credentials failed.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    /// The token is malformed.
    #[error("{0}")]
    Token(String),
    /// The server could not be reached.
    #[error("cannot reach the control plane at {server}: {message}")]
    Unreachable {
        /// The server URL.
        server: String,
        /// What failed.
        message: String,
    },
    /// The server's CA does not match the token.
    #[error("the control plane at {server} presented CA {actual}, but the join token expects {expected}: check the server address, or a machine in between is impersonating it")]
    CaMismatch {
        /// The server URL.
        server: String,
        /// Hash in the token.
        expected: String,
        /// Hash of what the server sent.
        actual: String,
    },
    /// The server refused the token.
    #[error("the control plane refused to join this node: {0}")]
    Refused(String),
    /// Reading or writing the data directory failed.
    #[error("cannot access {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The stored credentials are unusable.
    #[error(
        "the credentials in {dir} are not usable ({what}); join again with `bramble-node join`"
    )]
    Invalid {
        /// The directory.
        dir: PathBuf,
        /// What is wrong.
        what: String,
    },
}

/// What a joined node keeps in its data directory.
#[derive(Clone, Serialize, Deserialize)]
pub struct Credentials {
    /// The control plane's URL, `https://HOST:PORT`.
    pub server: String,
    /// The node's name.
    pub node_name: String,
    /// Cluster CA, PEM.
    pub ca_pem: String,
    /// Node certificate, PEM.
    pub cert_pem: String,
    /// Node key, PEM.
    pub key_pem: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("server", &self.server)
            .field("node_name", &self.node_name)
            .finish_non_exhaustive()
    }
}

const FILE: &str = "credentials.json";

impl Credentials {
    /// Loads what `join` stored under `data_dir`; `None` if the node never joined.
    pub fn load(data_dir: &Path) -> Result<Option<Credentials>, JoinError> {
        let path = data_dir.join(FILE);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(JoinError::Io { path, source }),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| JoinError::Invalid {
                dir: data_dir.to_path_buf(),
                what: e.to_string(),
            })
    }

    /// Stores them under `data_dir` (mode 0600, written atomically).
    pub fn store(&self, data_dir: &Path) -> Result<(), JoinError> {
        let path = data_dir.join(FILE);
        let io = |source| JoinError::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(data_dir).map_err(io)?;
        let bytes = serde_json::to_vec_pretty(self).unwrap_or_default();
        crate::durable::write_atomic(&path, &bytes, 0o600).map_err(io)
    }

    /// The rustls client config for the control plane: its CA, our certificate, h2.
    pub fn tls_config(&self) -> Result<rustls::ClientConfig, JoinError> {
        let invalid = |what: &str| JoinError::Invalid {
            dir: PathBuf::from("."),
            what: what.to_string(),
        };
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_pemfile::certs(&mut self.ca_pem.as_bytes()) {
            let cert = cert.map_err(|_| invalid("CA certificate"))?;
            roots.add(cert).map_err(|_| invalid("CA certificate"))?;
        }
        let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|_| invalid("TLS versions"))?
        .with_root_certificates(roots);
        // Before joining there is no certificate yet: Join is the one call made without one.
        let mut config = if self.cert_pem.is_empty() {
            builder.with_no_client_auth()
        } else {
            let chain: Vec<CertificateDer<'static>> =
                rustls_pemfile::certs(&mut self.cert_pem.as_bytes())
                    .collect::<Result<_, _>>()
                    .map_err(|_| invalid("node certificate"))?;
            let key: PrivateKeyDer<'static> =
                rustls_pemfile::private_key(&mut self.key_pem.as_bytes())
                    .ok()
                    .flatten()
                    .ok_or_else(|| invalid("node key"))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|_| invalid("node certificate and key do not match"))?
        };
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(config)
    }

    /// `host:port` of the server.
    pub fn authority(&self) -> &str {
        authority(&self.server)
    }
}

fn authority(server: &str) -> &str {
    let rest = server
        .strip_prefix("https://")
        .unwrap_or(server)
        .trim_end_matches('/');
    rest
}

/// Host part of an authority, without brackets, for TLS server names.
pub fn server_name(authority: &str) -> Result<ServerName<'static>, String> {
    let host = match authority.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => authority,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_string())
        .map_err(|e| format!("{host:?} is not a valid server name: {e}"))
}

/// Joins the cluster at `server` with `token` (`K10<ca-hash>::<id>.<secret>`) as `node_name`,
/// storing the credentials under `data_dir`.
pub async fn join(
    server: &str,
    token: &str,
    node_name: &str,
    data_dir: &Path,
) -> Result<Credentials, JoinError> {
    let cluster = Cluster::trust(server, token).await?;
    let channel = cluster.join_channel().await?;
    let credentials = cluster.join(&channel, node_name).await?;
    credentials.store(data_dir)?;
    Ok(credentials)
}

/// A cluster whose CA has been checked against a join token: what joining one node or many
/// (the hollow-node simulator) starts from.
#[derive(Debug, Clone)]
pub struct Cluster {
    server: String,
    ca_pem: String,
    credential: String,
}

impl Cluster {
    /// Fetches the cluster CA from `server` and checks it against the hash in `token`.
    pub async fn trust(server: &str, token: &str) -> Result<Cluster, JoinError> {
        let token = JoinToken::parse(token).map_err(|e| JoinError::Token(e.to_string()))?;
        let (ca_hash, credential) = (token.ca_hash.clone(), token.credential());
        let server = server.trim_end_matches('/').to_string();
        if !server.starts_with("https://") {
            return Err(JoinError::Token(format!(
                "the server must be an https:// URL, got {server:?}"
            )));
        }
        let unreachable = |message: String| JoinError::Unreachable {
            server: server.clone(),
            message,
        };
        // Anything may answer here; the hash check below is what makes it trusted.
        let ca_pem = reqwest::Client::builder()
            .danger_accept_invalid_certs(true)
            .timeout(std::time::Duration::from_secs(15))
            .build()
            .map_err(|e| unreachable(e.to_string()))?
            .get(format!("{server}/cacerts"))
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| unreachable(e.to_string()))?
            .text()
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let actual =
            pem_hash(&ca_pem).ok_or_else(|| unreachable("/cacerts held no certificate".into()))?;
        if actual != ca_hash {
            return Err(JoinError::CaMismatch {
                server: server.clone(),
                expected: ca_hash,
                actual,
            });
        }
        Ok(Cluster {
            server,
            ca_pem,
            credential,
        })
    }

    /// A channel to the control plane trusting its CA, without a client certificate: all a
    /// Join call needs. One channel carries any number of joins.
    pub async fn join_channel(&self) -> Result<tonic::transport::Channel, JoinError> {
        let anonymous = Credentials {
            server: self.server.clone(),
            node_name: String::new(),
            ca_pem: self.ca_pem.clone(),
            cert_pem: String::new(),
            key_pem: String::new(),
        };
        crate::connection::channel(&anonymous)
            .await
            .map_err(|message| JoinError::Unreachable {
                server: self.server.clone(),
                message,
            })
    }

    /// Makes a key and CSR for `node_name` and trades them with the token for a certificate.
    pub async fn join(
        &self,
        channel: &tonic::transport::Channel,
        node_name: &str,
    ) -> Result<Credentials, JoinError> {
        let key = rcgen::KeyPair::generate().map_err(|e| JoinError::Refused(e.to_string()))?;
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name.push(
            rcgen::DnType::CommonName,
            format!("system:node:{node_name}"),
        );
        let csr = params
            .serialize_request(&key)
            .and_then(|r| r.pem())
            .map_err(|e| JoinError::Refused(e.to_string()))?;
        let response = NodeGatewayClient::new(channel.clone())
            .join(JoinRequest {
                token: self.credential.clone(),
                node_name: node_name.to_string(),
                csr_pem: csr,
            })
            .await
            .map_err(|status| JoinError::Refused(status.message().to_string()))?
            .into_inner();
        Ok(Credentials {
            server: self.server.clone(),
            node_name: node_name.to_string(),
            ca_pem: response.ca_pem,
            cert_pem: response.certificate_pem,
            key_pem: key.serialize_pem(),
        })
    }
}

fn pem_hash(pem: &str) -> Option<String> {
    let der = rustls_pemfile::certs(&mut pem.as_bytes()).next()?.ok()?;
    Some(hex::encode(Sha256::digest(der.as_ref())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_names_drop_ports_and_brackets() {
        assert!(server_name("127.0.0.1:6443").is_ok());
        assert!(server_name("[::1]:6443").is_ok());
        assert!(server_name("pi.local:6443").is_ok());
        assert_eq!(authority("https://h:1/"), "h:1");
    }
}
