//! Who is calling: a client certificate signed by the cluster CA (CN = user, O = groups, as in
//! Kubernetes) or a bearer token. Anything else is anonymous and gets 401 except on the few
//! open paths.

use std::collections::HashMap;

use base64::Engine as _;

use rustls::pki_types::CertificateDer;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::pki::ADMIN_GROUP;

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// User name.
    pub user: String,
    /// Groups, e.g. `system:masters`.
    pub groups: Vec<String>,
}

impl Identity {
    /// Whether the caller may do everything.
    pub fn is_admin(&self) -> bool {
        self.groups.iter().any(|g| g == ADMIN_GROUP)
    }

    /// The node this identity is the credential of, if it is a node's.
    pub fn node_name(&self) -> Option<&str> {
        let name = self.user.strip_prefix(crate::pki::NODE_USER_PREFIX)?;
        (self.groups.iter().any(|g| g == crate::pki::NODES_GROUP) && !name.is_empty())
            .then_some(name)
    }

    /// The identity named by a verified client certificate. The TLS layer has already checked
    /// the chain against the cluster CA; this only reads the subject.
    pub fn from_certificate(cert: &CertificateDer<'_>) -> Option<Identity> {
        let (_, parsed) = X509Certificate::from_der(cert.as_ref()).ok()?;
        let subject = parsed.subject();
        let user = subject
            .iter_common_name()
            .next()?
            .as_str()
            .ok()?
            .to_string();
        let groups = subject
            .iter_organization()
            .filter_map(|o| o.as_str().ok().map(str::to_string))
            .collect();
        Some(Identity { user, groups })
    }
}

/// Static bearer tokens, each naming an identity.
#[derive(Debug, Default, Clone)]
pub struct TokenAuthenticator {
    tokens: HashMap<String, Identity>,
}

impl TokenAuthenticator {
    /// Adds a token.
    pub fn insert(&mut self, token: String, identity: Identity) {
        self.tokens.insert(token, identity);
    }

    /// The identity for an `Authorization` header value: a known bearer token, or HTTP Basic
    /// credentials whose password is a known token (what registry clients such as skopeo and
    /// containerd send; the user name is ignored).
    pub fn authenticate(&self, authorization: &str) -> Option<Identity> {
        let basic_password;
        let token = match authorization.split_once(' ') {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim(),
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("basic") => {
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(rest.trim())
                    .ok()?;
                let text = String::from_utf8(decoded).ok()?;
                basic_password = text.split_once(':')?.1.to_string();
                basic_password.as_str()
            }
            _ => return None,
        };
        if token.is_empty() {
            return None;
        }
        // Compare in constant time per candidate so response timing does not leak prefixes.
        self.tokens
            .iter()
            .find(|(known, _)| constant_time_eq(known.as_bytes(), token.as_bytes()))
            .map(|(_, id)| id.clone())
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Paths anyone may read, as on a Kubernetes API server.
pub fn is_public_path(path: &str) -> bool {
    matches!(
        path,
        "/version" | "/healthz" | "/livez" | "/readyz" | "/cacerts"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_authenticate_exactly() {
        let mut auth = TokenAuthenticator::default();
        let admin = Identity {
            user: "a".into(),
            groups: vec![ADMIN_GROUP.into()],
        };
        auth.insert("s3cret".into(), admin.clone());
        assert_eq!(auth.authenticate("Bearer s3cret"), Some(admin));
        assert_eq!(auth.authenticate("Bearer s3cre"), None);
        assert_eq!(auth.authenticate("Basic s3cret"), None);
        let basic = base64::engine::general_purpose::STANDARD.encode("anyone:s3cret");
        assert!(auth.authenticate(&format!("Basic {basic}")).is_some());
        let wrong = base64::engine::general_purpose::STANDARD.encode("anyone:nope");
        assert_eq!(auth.authenticate(&format!("Basic {wrong}")), None);
        assert_eq!(auth.authenticate("Bearer "), None);
    }
}
