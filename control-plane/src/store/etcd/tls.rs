//! TLS settings for the connection to etcd (tonic's rustls, with ring).

use std::path::Path;

use etcd_client::{Certificate, Identity, TlsOptions};

use crate::store::StoreError;

/// TLS settings for the etcd connection (endpoints must then be `https://`).
#[derive(Clone)]
pub struct EtcdTls {
    /// PEM of the CA certificate(s) etcd's server certificate must chain to.
    pub ca_pem: Vec<u8>,
    /// Client certificate and key, for an etcd started with `--client-cert-auth`.
    pub identity: Option<EtcdIdentity>,
    /// Name etcd's certificate must carry, when it is not the endpoint's host.
    pub domain_name: Option<String>,
}

/// A client certificate and its key, both PEM.
#[derive(Clone)]
pub struct EtcdIdentity {
    /// Certificate chain, PEM.
    pub cert_pem: Vec<u8>,
    /// Private key, PEM.
    pub key_pem: Vec<u8>,
}

impl std::fmt::Debug for EtcdTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdTls")
            .field("ca_pem_bytes", &self.ca_pem.len())
            .field("identity", &self.identity)
            .field("domain_name", &self.domain_name)
            .finish()
    }
}

impl std::fmt::Debug for EtcdIdentity {
    // Never prints the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdIdentity")
            .field("cert_pem_bytes", &self.cert_pem.len())
            .finish_non_exhaustive()
    }
}

impl EtcdTls {
    /// Reads the CA certificate and, if given, the client certificate and key from PEM files.
    /// Reads synchronously: call it at startup.
    pub fn from_files(
        ca: impl AsRef<Path>,
        identity: Option<(&Path, &Path)>,
    ) -> Result<EtcdTls, StoreError> {
        let read = |what: &'static str, path: &Path| {
            std::fs::read(path).map_err(|source| StoreError::EtcdTlsFile {
                what,
                path: path.to_owned(),
                source,
            })
        };
        let identity = match identity {
            Some((cert, key)) => Some(EtcdIdentity {
                cert_pem: read("client certificate", cert)?,
                key_pem: read("client key", key)?,
            }),
            None => None,
        };
        Ok(EtcdTls {
            ca_pem: read("CA certificate", ca.as_ref())?,
            identity,
            domain_name: None,
        })
    }

    /// tonic's form of these settings.
    pub(super) fn client_config(&self) -> TlsOptions {
        let mut tls = TlsOptions::new().ca_certificate(Certificate::from_pem(&self.ca_pem));
        if let Some(identity) = &self.identity {
            tls = tls.identity(Identity::from_pem(&identity.cert_pem, &identity.key_pem));
        }
        if let Some(name) = &self.domain_name {
            tls = tls.domain_name(name.clone());
        }
        tls
    }
}
