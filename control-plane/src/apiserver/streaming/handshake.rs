//! The HTTP/1.1 side of WebSocket and raw SPDY upgrades: spotting one and writing the 101 answer.
//!
//! kubectl decides between WebSocket and its SPDY fallback from this answer alone: anything but a
//! 101 carrying a subprotocol it offered makes it retry with a SPDY POST.

use bytes::Bytes;
use http::header::{CONNECTION, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_PROTOCOL};
use http::header::{SEC_WEBSOCKET_VERSION, UPGRADE};
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use http_body_util::{BodyExt, Empty};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

use super::Body;

/// Subprotocol of exec and attach in kubectl 1.30 and later.
pub const EXEC_PROTOCOL_V5: &str = "v5.channel.k8s.io";
/// Previous exec subprotocol; identical framing without the stream-close channel.
pub const EXEC_PROTOCOL_V4: &str = "v4.channel.k8s.io";
/// Subprotocol of port-forward: SPDY/3.1 frames tunnelled through binary messages.
pub const PORT_FORWARD_TUNNEL_PROTOCOL: &str = "SPDY/3.1+portforward.k8s.io";
/// `X-Stream-Protocol-Version` of port-forward over a raw SPDY upgrade.
pub const PORT_FORWARD_SPDY_PROTOCOL: &str = "portforward.k8s.io";

const SPDY_UPGRADE: &str = "SPDY/3.1";
const X_STREAM_PROTOCOL_VERSION: &str = "x-stream-protocol-version";

/// How the upgraded connection carries a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// WebSocket binary messages (for port-forward: a SPDY byte stream inside them).
    WebSocket,
    /// Raw SPDY/3.1 frames straight on the connection, kubectl's fallback after a refused
    /// websocket (and the only way of kubectl 1.30 and older for port-forward).
    Spdy,
}

/// Whether `name`'s comma-separated values contain `token`, ignoring case (`Connection: keep-alive,
/// Upgrade` is as valid as `Connection: Upgrade`).
fn has_token(headers: &HeaderMap, name: http::header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Every comma-separated value of every `name` header, in order.
fn list_values(headers: &HeaderMap, name: &str) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty())
        .collect()
}

/// Which upgrade the request asks for, decided from headers only: `None` when it is not a
/// websocket upgrade, otherwise the subprotocols offered, in the client's order (possibly empty).
pub fn websocket_protocols(req_headers: &HeaderMap) -> Option<Vec<String>> {
    if !has_token(req_headers, UPGRADE, "websocket")
        || !has_token(req_headers, CONNECTION, "upgrade")
    {
        return None;
    }
    Some(list_values(req_headers, SEC_WEBSOCKET_PROTOCOL.as_str()))
}

/// `None` when the request is not a raw SPDY/3.1 upgrade, otherwise the stream protocols offered in
/// `X-Stream-Protocol-Version`, in the client's order of preference.
pub fn spdy_protocols(req_headers: &HeaderMap) -> Option<Vec<String>> {
    if !has_token(req_headers, UPGRADE, SPDY_UPGRADE)
        || !has_token(req_headers, CONNECTION, "upgrade")
    {
        return None;
    }
    Some(list_values(req_headers, X_STREAM_PROTOCOL_VERSION))
}

/// The 101 response for a raw SPDY/3.1 upgrade choosing `protocol`, which must be one of the
/// `X-Stream-Protocol-Version` values the client offered.
pub fn accept_spdy(req_headers: &HeaderMap, protocol: &str) -> Result<Response<Body>, String> {
    let offered = spdy_protocols(req_headers).ok_or_else(|| {
        "request is not a spdy upgrade (needs Upgrade: SPDY/3.1 and Connection: Upgrade)".to_owned()
    })?;
    if !offered.iter().any(|p| p == protocol) {
        return Err(format!(
            "stream protocol {protocol:?} was not offered by the client (offered: {offered:?})"
        ));
    }
    let protocol = HeaderValue::from_str(protocol)
        .map_err(|e| format!("invalid stream protocol {protocol:?}: {e}"))?;
    let mut response = switching_protocols(SPDY_UPGRADE);
    response
        .headers_mut()
        .insert(X_STREAM_PROTOCOL_VERSION, protocol);
    Ok(response)
}

fn switching_protocols(upgrade: &'static str) -> Response<Body> {
    let mut response = Response::new(
        Empty::<Bytes>::new()
            .map_err(|never| match never {})
            .boxed(),
    );
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(UPGRADE, HeaderValue::from_static(upgrade));
    headers.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    response
}

/// The 101 response for a websocket upgrade choosing `protocol` (must be one the client offered),
/// or `Err(message)` when the request is not a valid websocket upgrade (missing key or version 13).
pub fn accept_websocket(req_headers: &HeaderMap, protocol: &str) -> Result<Response<Body>, String> {
    let offered = websocket_protocols(req_headers).ok_or_else(|| {
        "request is not a websocket upgrade (needs Upgrade: websocket and Connection: Upgrade)"
            .to_owned()
    })?;
    let version = req_headers
        .get(SEC_WEBSOCKET_VERSION)
        .and_then(|v| v.to_str().ok());
    if version.map(str::trim) != Some("13") {
        return Err(format!(
            "unsupported websocket version {:?}: only Sec-WebSocket-Version 13 is spoken",
            version.unwrap_or("<missing>")
        ));
    }
    let key = req_headers
        .get(SEC_WEBSOCKET_KEY)
        .ok_or_else(|| "websocket upgrade without Sec-WebSocket-Key".to_owned())?;
    if !offered.iter().any(|p| p == protocol) {
        return Err(format!("websocket subprotocol {protocol:?} was not offered by the client (offered: {offered:?})"));
    }
    let accept = HeaderValue::from_str(&derive_accept_key(key.as_bytes()))
        .map_err(|e| format!("cannot encode Sec-WebSocket-Accept: {e}"))?;
    let protocol = HeaderValue::from_str(protocol)
        .map_err(|e| format!("invalid subprotocol {protocol:?}: {e}"))?;
    let mut response = switching_protocols("websocket");
    let headers = response.headers_mut();
    headers.insert(SEC_WEBSOCKET_ACCEPT, accept);
    headers.insert(SEC_WEBSOCKET_PROTOCOL, protocol);
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kubectl_exec_headers() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
        h.insert(UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
        // The RFC 6455 example key, whose accept value the RFC gives.
        h.insert(
            SEC_WEBSOCKET_KEY,
            HeaderValue::from_static("dGhlIHNhbXBsZSBub25jZQ=="),
        );
        h.insert(
            SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static(EXEC_PROTOCOL_V5),
        );
        h
    }

    #[test]
    fn detects_websocket_upgrade_and_lists_protocols() {
        let mut h = kubectl_exec_headers();
        h.append(
            SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static("v4.channel.k8s.io, base64.channel.k8s.io"),
        );
        assert_eq!(
            websocket_protocols(&h),
            Some(vec![
                EXEC_PROTOCOL_V5.to_owned(),
                EXEC_PROTOCOL_V4.to_owned(),
                "base64.channel.k8s.io".to_owned()
            ])
        );
        h.insert(CONNECTION, HeaderValue::from_static("keep-alive, upgrade"));
        assert!(websocket_protocols(&h).is_some());
    }

    #[test]
    fn spdy_and_plain_requests_are_not_websocket() {
        let mut h = kubectl_exec_headers();
        h.insert(UPGRADE, HeaderValue::from_static("SPDY/3.1"));
        assert_eq!(websocket_protocols(&h), None);
        assert_eq!(websocket_protocols(&HeaderMap::new()), None);
    }

    #[test]
    fn accepts_with_rfc_key_and_chosen_protocol() {
        let response =
            accept_websocket(&kubectl_exec_headers(), EXEC_PROTOCOL_V5).expect("valid upgrade");
        assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
        let h = response.headers();
        assert_eq!(h[SEC_WEBSOCKET_ACCEPT], "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        assert_eq!(h[SEC_WEBSOCKET_PROTOCOL], EXEC_PROTOCOL_V5);
        assert_eq!(h[UPGRADE], "websocket");
    }

    #[test]
    fn refuses_unoffered_protocol_missing_key_or_bad_version() {
        assert!(accept_websocket(&kubectl_exec_headers(), EXEC_PROTOCOL_V4).is_err());
        let mut no_key = kubectl_exec_headers();
        no_key.remove(SEC_WEBSOCKET_KEY);
        assert!(accept_websocket(&no_key, EXEC_PROTOCOL_V5).is_err());
        let mut old = kubectl_exec_headers();
        old.insert(SEC_WEBSOCKET_VERSION, HeaderValue::from_static("8"));
        assert!(accept_websocket(&old, EXEC_PROTOCOL_V5).is_err());
    }

    fn kubectl_spdy_headers() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
        h.insert(UPGRADE, HeaderValue::from_static("SPDY/3.1"));
        // kubectl repeats the header once per version it speaks.
        for v in [EXEC_PROTOCOL_V5, EXEC_PROTOCOL_V4, "v3.channel.k8s.io"] {
            h.append(X_STREAM_PROTOCOL_VERSION, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn detects_spdy_upgrade_and_its_stream_protocols() {
        let h = kubectl_spdy_headers();
        assert_eq!(websocket_protocols(&h), None);
        let offered = spdy_protocols(&h).expect("spdy upgrade");
        assert_eq!(
            offered,
            [EXEC_PROTOCOL_V5, EXEC_PROTOCOL_V4, "v3.channel.k8s.io"]
        );
        assert_eq!(spdy_protocols(&kubectl_exec_headers()), None);
    }

    #[test]
    fn accepts_spdy_with_an_offered_protocol_only() {
        let h = kubectl_spdy_headers();
        let response = accept_spdy(&h, EXEC_PROTOCOL_V4).expect("valid upgrade");
        assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
        assert_eq!(response.headers()[UPGRADE], "SPDY/3.1");
        assert_eq!(
            response.headers()[X_STREAM_PROTOCOL_VERSION],
            EXEC_PROTOCOL_V4
        );
        assert!(accept_spdy(&h, PORT_FORWARD_SPDY_PROTOCOL).is_err());
        assert!(accept_spdy(&kubectl_exec_headers(), EXEC_PROTOCOL_V5).is_err());
    }
}
