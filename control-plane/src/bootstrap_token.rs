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

/// Namespace the token Secrets live in.
pub const NAMESPACE: &str = "kube-system";
/// Secret type of a bootstrap token.
pub const SECRET_TYPE: &str = "bootstrap.kubernetes.io/token";
/// Prefix of the token Secrets' names.
pub const NAME_PREFIX: &str = "bootstrap-token-";
const ID_LEN: usize = 6;
const SECRET_LEN: usize = 16;

/// Why a printed token could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenFormatError {
    /// The whole token is not `K10<hash>::<id>.<secret>`.
    #[error("the join token is not of the form K10<ca-hash>::<id>.<secret> (as `bramble token create` prints it)")]
    Shape,
    /// The CA hash is not 64 hex digits.
    #[error("the join token's CA hash is not a SHA-256 in hex")]
    Hash,
    /// The id or secret has the wrong length or characters.
    #[error(
        "the join token's id must be {ID_LEN} and its secret {SECRET_LEN} characters of [a-z0-9]"
    )]
    Credential,
}

/// A token as printed for `bramble-node join --token`.
#[derive(Clone, PartialEq, Eq)]
pub struct JoinToken {
    /// SHA-256 of the cluster CA certificate, lower-case hex.
    pub ca_hash: String,
    /// The public id (names the Secret).
    pub id: String,
    /// The secret part.
    pub secret: String,
}

impl std::fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinToken")
            .field("ca_hash", &self.ca_hash)
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl JoinToken {
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

    /// Reads `K10<hash>::<id>.<secret>`.
    pub fn parse(text: &str) -> Result<JoinToken, TokenFormatError> {
        let rest = text
            .trim()
            .strip_prefix("K10")
            .ok_or(TokenFormatError::Shape)?;
        let (hash, credential) = rest.split_once("::").ok_or(TokenFormatError::Shape)?;
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(TokenFormatError::Hash);
        }
        let (id, secret) = split_credential(credential)?;
        Ok(JoinToken {
            ca_hash: hash.to_ascii_lowercase(),
            id,
            secret,
        })
    }

    /// `<id>.<secret>`: what the node sends to the server.
    pub fn credential(&self) -> String {
        format!("{}.{}", self.id, self.secret)
    }

    /// The printed form.
    pub fn to_printed(&self) -> String {
        format!("K10{}::{}.{}", self.ca_hash, self.id, self.secret)
    }

    /// The Secret storing this token, expiring at `expires` (never when `None`).
    pub fn to_secret(&self, expires: Option<OffsetDateTime>, description: &str) -> Value {
        let b64 = |s: &str| {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD.encode(s)
        };
        let mut data = json!({
            "token-id": b64(&self.id),
            "token-secret": b64(&self.secret),
            "usage-bootstrap-authentication": b64("true"),
            "description": b64(description),
        });
        if let Some(at) = expires {
            data["expiration"] = json!(b64(&rfc3339(at)));
        }
        json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": format!("{NAME_PREFIX}{}", self.id), "namespace": NAMESPACE},
            "type": SECRET_TYPE,
            "data": data,
        })
    }
}

/// Splits `<id>.<secret>` and checks both parts.
pub fn split_credential(credential: &str) -> Result<(String, String), TokenFormatError> {
    let (id, secret) = credential.split_once('.').ok_or(TokenFormatError::Shape)?;
    let ok = |s: &str, len: usize| {
        s.len() == len
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    };
    if !ok(id, ID_LEN) || !ok(secret, SECRET_LEN) {
        return Err(TokenFormatError::Credential);
    }
    Ok((id.to_string(), secret.to_string()))
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

/// RFC 3339 in UTC, seconds precision, as Kubernetes writes times.
pub fn rfc3339(at: OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printed_token_round_trips_and_keeps_its_parts() {
        let token = JoinToken::generate(&"ab".repeat(32));
        let parsed = JoinToken::parse(&token.to_printed()).expect("parse");
        assert_eq!(parsed, token);
        assert_eq!(parsed.credential().len(), 6 + 1 + 16);
    }

    #[test]
    fn malformed_tokens_are_refused_with_the_reason() {
        assert_eq!(JoinToken::parse("abc"), Err(TokenFormatError::Shape));
        assert_eq!(
            JoinToken::parse("K10zz::abcdef.0123456789abcdef"),
            Err(TokenFormatError::Hash)
        );
        let hash = "0".repeat(64);
        assert_eq!(
            JoinToken::parse(&format!("K10{hash}::ABCDEF.0123456789abcdef")),
            Err(TokenFormatError::Credential)
        );
        assert_eq!(
            JoinToken::parse(&format!("K10{hash}::abcdef.short")),
            Err(TokenFormatError::Credential)
        );
    }

    #[test]
    fn secret_form_is_read_back_with_expiry() {
        let token = JoinToken::generate(&"0".repeat(64));
        let at = OffsetDateTime::from_unix_timestamp(2_000_000_000).expect("time");
        let stored = StoredToken::from_secret(&token.to_secret(Some(at), "for the pis"))
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
