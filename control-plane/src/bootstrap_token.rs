//! Join tokens, kubeadm's bootstrap tokens with K3s' printed shape.
//!
//! A token is stored as a Secret `kube-system/bootstrap-token-<id>` of type
//! `bootstrap.kubernetes.io/token`, exactly as kubeadm stores it, so `kubectl` shows and deletes
//! them too. What an operator copies to a board is `K10<ca-hash>::<id>.<secret>`: the hash is the
//! SHA-256 of the cluster CA certificate (DER), which lets the node check the server it is
//! talking to before it trusts it (kubeadm's discovery-token-ca-cert-hash, carried inside the
//! token as K3s does).

use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};
use time::OffsetDateTime;

pub use crate::apiserver::objects::rfc3339;

/// Namespace the token Secrets live in.
pub const NAMESPACE: &str = "kube-system";
/// Secret type of a bootstrap token.
pub const SECRET_TYPE: &str = "bootstrap.kubernetes.io/token";
/// Prefix of the token Secrets' names.
pub const NAME_PREFIX: &str = "bootstrap-token-";
pub use bramble_api::join_token::{split_credential, JoinToken, TokenFormatError};
use bramble_api::join_token::{ID_LEN, SECRET_LEN};

/// A fresh random token for the CA whose hash is `ca_hash`.
pub fn generate(ca_hash: &str) -> JoinToken {
    let random = crate::pki::random_token();
    // random_token is hex, a subset of [a-z0-9].
    JoinToken {
        ca_hash: ca_hash.to_string(),
        id: random[..ID_LEN].to_string(),
        secret: random[ID_LEN..ID_LEN + SECRET_LEN].to_string(),
    }
}

/// The Secret storing `token`, expiring at `expires` (never when `None`).
pub fn to_secret(token: &JoinToken, expires: Option<OffsetDateTime>, description: &str) -> Value {
    let b64 = |s: &str| {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(s)
    };
    let mut data = json!({
        "token-id": b64(&token.id),
        "token-secret": b64(&token.secret),
        "usage-bootstrap-authentication": b64("true"),
        "description": b64(description),
    });
    if let Some(at) = expires {
        data["expiration"] = json!(b64(&rfc3339(at)));
    }
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": format!("{NAME_PREFIX}{}", token.id), "namespace": NAMESPACE},
        "type": SECRET_TYPE,
        "data": data,
    })
}

/// What a token Secret says, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredToken {
    /// The public id.
    pub id: String,
    /// The secret part.
    pub secret: String,
    /// When it stops working.
    pub expires: Option<OffsetDateTime>,
    /// Free text.
    pub description: String,
}

impl StoredToken {
    /// Reads a bootstrap-token Secret; `None` if it is not one.
    pub fn from_secret(secret: &Value) -> Option<StoredToken> {
        if secret.get("type").and_then(Value::as_str) != Some(SECRET_TYPE) {
            return None;
        }
        let field = |name: &str| -> Option<String> {
            use base64::Engine as _;
            let encoded = secret.pointer(&format!("/data/{name}"))?.as_str()?;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .ok()?;
            String::from_utf8(bytes).ok()
        };
        let expires = match field("expiration") {
            Some(text) => Some(
                OffsetDateTime::parse(&text, &time::format_description::well_known::Rfc3339)
                    .ok()?,
            ),
            None => None,
        };
        Some(StoredToken {
            id: field("token-id")?,
            secret: field("token-secret")?,
            expires,
            description: field("description").unwrap_or_default(),
        })
    }

    /// Whether it has expired at `now`.
    pub fn expired(&self, now: OffsetDateTime) -> bool {
        self.expires.is_some_and(|at| at <= now)
    }

    /// Compares `secret` in constant time.
    pub fn secret_matches(&self, secret: &str) -> bool {
        let (a, b) = (self.secret.as_bytes(), secret.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

/// SHA-256 of the first certificate in `ca_pem`, lower-case hex; `None` if there is none.
pub fn ca_hash(ca_pem: &[u8]) -> Option<String> {
    let mut reader = std::io::BufReader::new(ca_pem);
    let der = rustls_pemfile::certs(&mut reader).next()?.ok()?;
    Some(
        Sha256::digest(der.as_ref())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_form_is_read_back_with_expiry() {
        let token = generate(&"0".repeat(64));
        assert_eq!(JoinToken::parse(&token.to_printed()), Ok(token.clone()));
        let at = OffsetDateTime::from_unix_timestamp(2_000_000_000).expect("time");
        let stored = StoredToken::from_secret(&to_secret(&token, Some(at), "for the pis"))
            .expect("a token secret");
        assert_eq!(stored.id, token.id);
        assert!(stored.secret_matches(&token.secret));
        assert!(!stored.secret_matches("0123456789abcdeg"));
        assert_eq!(stored.description, "for the pis");
        assert!(stored.expired(at));
        assert!(!stored.expired(at - time::Duration::seconds(1)));
        assert!(StoredToken::from_secret(&json!({"type": "Opaque"})).is_none());
    }
}
