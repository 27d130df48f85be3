//! `Join`: a node presents a bootstrap token and a certificate request and gets a client
//! certificate for `system:node:<name>`. The token is checked against its Secret in the watch
//! cache, so `bramble token revoke` (or `kubectl delete secret`) takes effect at once.

use bramble_api::node_protocol::{JoinRequest, JoinResponse};
use bramble_api::validation;
use time::OffsetDateTime;
use tonic::Status;

use crate::apiserver::objects;
use crate::apiserver::resources::lookup;
use crate::apiserver::ApiServer;
use crate::bootstrap_token::{split_credential, StoredToken, NAMESPACE, NAME_PREFIX};
use crate::pki::Pki;

/// Checks the token and signs the node's certificate.
#[allow(clippy::result_large_err)] // tonic::Status is what the gRPC handler returns anyway
pub fn join(
    api: &ApiServer,
    pki: &Pki,
    request: &JoinRequest,
    days: i64,
) -> Result<JoinResponse, Status> {
    let (id, secret) =
        split_credential(&request.token).map_err(|e| Status::unauthenticated(e.to_string()))?;
    let refused = || {
        Status::unauthenticated(format!(
            "join token {id} is not valid: it was revoked, never existed, or belongs to another cluster; create one with `bramble token create`"
        ))
    };
    let secrets =
        lookup("", "v1", "secrets").ok_or_else(|| Status::internal("no secrets resource"))?;
    let cached = api
        .cache
        .get(&objects::key(
            secrets,
            Some(NAMESPACE),
            &format!("{NAME_PREFIX}{id}"),
        ))
        .ok_or_else(refused)?;
    let stored = StoredToken::from_secret(&cached.value()).ok_or_else(refused)?;
    if !stored.secret_matches(&secret) {
        return Err(refused());
    }
    if stored.expired(OffsetDateTime::now_utc()) {
        return Err(Status::unauthenticated(format!(
            "join token {id} expired at {}; create a new one with `bramble token create`",
            stored
                .expires
                .map(crate::bootstrap_token::rfc3339)
                .unwrap_or_default()
        )));
    }
    let problems = validation::is_dns1123_subdomain(&request.node_name);
    if !problems.is_empty() {
        return Err(Status::invalid_argument(format!(
            "node name {:?} is not valid: {}",
            request.node_name,
            problems.join(", ")
        )));
    }
    let certificate_pem = pki
        .sign_node(&request.csr_pem, &request.node_name, days)
        .map_err(|e| {
            Status::invalid_argument(format!("cannot sign the certificate request: {e}"))
        })?;
    Ok(JoinResponse {
        certificate_pem,
        ca_pem: pki.ca_pem.clone(),
    })
}
