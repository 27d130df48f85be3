//! The printed form of a join token, which `bramble token create` writes and `bramble-node
//! join` reads: `K10<ca-hash>::<id>.<secret>`. The hash is the SHA-256 of the cluster CA
//! certificate (DER, lower-case hex), which lets a joining node check the server before it
//! trusts it (kubeadm's discovery hash, carried inside the token as K3s does); `<id>.<secret>`
//! is a kubeadm bootstrap token.

/// Length of the token id.
pub const ID_LEN: usize = 6;
/// Length of the token secret.
pub const SECRET_LEN: usize = 16;

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

/// A join token.
#[derive(Clone, PartialEq, Eq)]
pub struct JoinToken {
    /// SHA-256 of the cluster CA certificate, lower-case hex.
    pub ca_hash: String,
    /// The public id.
    pub id: String,
    /// The secret part.
    pub secret: String,
}

impl std::fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secret stays out of logs.
        f.debug_struct("JoinToken")
            .field("ca_hash", &self.ca_hash)
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl JoinToken {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printed_tokens_round_trip() {
        let text = format!("K10{}::abcdef.0123456789abcdef", "AB".repeat(32));
        let token = JoinToken::parse(&text).expect("parse");
        assert_eq!(token.ca_hash, "ab".repeat(32));
        assert_eq!(token.credential(), "abcdef.0123456789abcdef");
        assert_eq!(JoinToken::parse(&token.to_printed()), Ok(token));
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
        assert_eq!(
            JoinToken::parse(&format!("K10{hash}:abcdef.0123456789abcdef")),
            Err(TokenFormatError::Shape)
        );
    }
}
