//! Streaming subresources of pods: `exec`, `attach` and `portforward`, as kubectl 1.32 speaks them.
//!
//! This module turns an HTTP/1.1 upgrade into byte streams and nothing more: the API server decides
//! which pod and container a request is for and hands over channels or a dial function, and the
//! node gateway decides where the bytes go.
//!
//! * exec and attach: WebSocket with subprotocol `v5.channel.k8s.io` (`v4` accepted too), see
//!   [`serve_exec`].
//! * port-forward: SPDY/3.1 frames tunnelled in WebSocket binary messages
//!   (`SPDY/3.1+portforward.k8s.io`), see [`serve_port_forward`], or raw SPDY/3.1 after a POST
//!   upgrade ([`spdy_protocols`], [`accept_spdy`], [`serve_port_forward_over`] with
//!   [`Transport::Spdy`]). kubectl has no SPDY-free way to port-forward, hence the small SPDY codec
//!   in here.
//!
//! Typical use in a handler:
//! 1. [`websocket_protocols`] on the request headers; pick a protocol from the list;
//! 2. [`accept_websocket`] for the 101 response (on `Err`, answer 400 with a Status so kubectl falls
//!    back to SPDY or prints the reason);
//! 3. spawn a task that awaits `hyper::upgrade::on(req)` and calls the serve function.

mod error;
mod exec;
mod handshake;
mod port_forward;
mod port_forward_relay;
mod spdy_frame;
mod spdy_headers;

pub use error::SpdyError;
pub use exec::{serve_exec, ExecInput, ExecOutput, ExecResult, ExecStreams};
pub use handshake::{
    accept_spdy, accept_websocket, spdy_protocols, websocket_protocols, Transport,
    EXEC_PROTOCOL_V4, EXEC_PROTOCOL_V5, PORT_FORWARD_SPDY_PROTOCOL, PORT_FORWARD_TUNNEL_PROTOCOL,
};
pub use port_forward::{serve_port_forward, serve_port_forward_over};

pub use super::http::Body;
