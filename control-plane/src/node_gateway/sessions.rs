//! Connected nodes and the streams tunnelled through their Connect stream (logs, exec, attach,
//! port-forward). The API server opens a [`Tunnel`] to a node by name; the gateway's receive
//! loop routes the node's data for it back here.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use bramble_api::node_protocol::{
    control_message, stream_open, Channel, ControlMessage, StreamClose, StreamData, StreamOpen,
};
use bytes::Bytes;
use tokio::sync::mpsc;

/// Messages buffered per tunnel before the node's stream waits for the reader.
const TUNNEL_BUFFER: usize = 64;

/// Why a tunnel could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum TunnelError {
    /// The node has no open stream.
    #[error("node {node:?} is not connected to the control plane")]
    NotConnected {
        /// The node.
        node: String,
    },
}

/// What arrives on a tunnel from the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TunnelEvent {
    /// Bytes on a channel.
    Data(Channel, Bytes),
    /// The node closed a channel or, with `Channel::Unspecified`, the whole stream.
    Closed {
        /// Which direction or channel (Unspecified: all of it).
        channel: Channel,
        /// An exec's exit code.
        exit_code: Option<i32>,
        /// Why it failed, empty if it did not.
        error: String,
    },
}

/// One connected node.
pub struct Session {
    node: String,
    /// Distinguishes this connection from a later one of the same node.
    epoch: u64,
    outbound: mpsc::Sender<ControlMessage>,
    streams: Mutex<HashMap<u64, mpsc::Sender<TunnelEvent>>>,
}

impl Session {
    /// Sends a message to the node; false once its stream is gone.
    pub async fn send(&self, message: control_message::Kind) -> bool {
        self.outbound
            .send(ControlMessage {
                kind: Some(message),
            })
            .await
            .is_ok()
    }

    /// Routes data or a close from the node to its tunnel. Unknown ids (a tunnel the API side
    /// already dropped) are ignored.
    pub async fn deliver(&self, stream_id: u64, event: TunnelEvent) {
        let ends_stream = matches!(
            event,
            TunnelEvent::Closed {
                channel: Channel::Unspecified,
                ..
            }
        );
        let sender = {
            let mut streams = self.streams.lock().unwrap_or_else(PoisonError::into_inner);
            if ends_stream {
                streams.remove(&stream_id)
            } else {
                streams.get(&stream_id).cloned()
            }
        };
        if let Some(sender) = sender {
            // A reader that went away is not the node's problem.
            let _ = sender.send(event).await;
        }
    }

    fn forget(&self, stream_id: u64) {
        self.streams
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&stream_id);
    }
}

/// Every connected node, by name.
#[derive(Default)]
pub struct NodeSessions {
    nodes: Mutex<HashMap<String, Arc<Session>>>,
    next_id: AtomicU64,
}

impl NodeSessions {
    /// Registers a new connection of `node`, replacing an older one; returns the session and
    /// the receiving end of its outbound messages.
    pub fn connect(&self, node: &str) -> (Arc<Session>, mpsc::Receiver<ControlMessage>) {
        let (outbound, rx) = mpsc::channel(256);
        let session = Arc::new(Session {
            node: node.to_string(),
            epoch: self.next_id.fetch_add(1, Ordering::Relaxed),
            outbound,
            streams: Mutex::default(),
        });
        self.nodes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(node.to_string(), session.clone());
        (session, rx)
    }

    /// Forgets `session` if it is still the node's current one; its tunnels see their end.
    pub fn disconnect(&self, session: &Session) {
        let mut nodes = self.nodes.lock().unwrap_or_else(PoisonError::into_inner);
        if nodes
            .get(&session.node)
            .is_some_and(|current| current.epoch == session.epoch)
        {
            nodes.remove(&session.node);
        }
        session
            .streams
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// Opens a tunnel to `node` for `request`.
    pub async fn open(
        &self,
        node: &str,
        request: stream_open::Request,
    ) -> Result<Tunnel, TunnelError> {
        let not_connected = || TunnelError::NotConnected {
            node: node.to_string(),
        };
        let session = self
            .nodes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(node)
            .cloned()
            .ok_or_else(not_connected)?;
        let stream_id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, events) = mpsc::channel(TUNNEL_BUFFER);
        session
            .streams
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(stream_id, tx);
        let opened = session
            .send(control_message::Kind::Open(StreamOpen {
                stream_id,
                request: Some(request),
            }))
            .await;
        if !opened {
            session.forget(stream_id);
            return Err(not_connected());
        }
        Ok(Tunnel {
            sender: TunnelSender(Arc::new(TunnelEnd { session, stream_id })),
            events,
        })
    }
}

/// One stream to a node. Dropping it (both halves, once split) tells the node to stop: a
/// `kubectl logs -f` that went away, an exec whose client hung up.
pub struct Tunnel {
    sender: TunnelSender,
    /// What the node sends.
    pub events: mpsc::Receiver<TunnelEvent>,
}

impl Tunnel {
    /// Splits the tunnel into a sender that can move to another task and the receiving half.
    pub fn split(self) -> (TunnelSender, mpsc::Receiver<TunnelEvent>) {
        (self.sender, self.events)
    }
}

/// The sending half of a [`Tunnel`]; cheap to clone.
#[derive(Clone)]
pub struct TunnelSender(Arc<TunnelEnd>);

/// Tells the node the stream is over when the last sender goes.
struct TunnelEnd {
    session: Arc<Session>,
    stream_id: u64,
}

impl TunnelSender {
    /// Sends bytes to the node on `channel`; false once the node's stream is gone.
    pub async fn send(&self, channel: Channel, data: Bytes) -> bool {
        self.0
            .session
            .send(control_message::Kind::Data(StreamData {
                stream_id: self.0.stream_id,
                channel: channel as i32,
                data: data.to_vec(),
            }))
            .await
    }

    /// Closes one direction (`Channel::Stdin` for stdin EOF, `Channel::Data` for a port-forward
    /// half-close).
    pub async fn close_channel(&self, channel: Channel) -> bool {
        self.0
            .session
            .send(control_message::Kind::Close(StreamClose {
                stream_id: self.0.stream_id,
                channel: channel as i32,
                exit_code: None,
                error: String::new(),
            }))
            .await
    }
}

impl Drop for TunnelEnd {
    fn drop(&mut self) {
        self.session.forget(self.stream_id);
        // Best effort: a full outbound queue means the node is far behind; data it sends for
        // this stream later is dropped as unroutable.
        let _ = self.session.outbound.try_send(ControlMessage {
            kind: Some(control_message::Kind::Close(StreamClose {
                stream_id: self.stream_id,
                channel: Channel::Unspecified as i32,
                exit_code: None,
                error: String::new(),
            })),
        });
    }
}
