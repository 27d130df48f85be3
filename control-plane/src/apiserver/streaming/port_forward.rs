//! Port-forward sessions: SPDY/3.1 streams carried inside websocket binary messages
//! (`SPDY/3.1+portforward.k8s.io`) or directly on the connection after a raw SPDY upgrade.
//!
//! kubectl opens two streams per local connection, `error` then `data`, tied together by a
//! `requestid` header. Once both exist the target is dialled and bytes are relayed (see
//! [`relay`](super::port_forward_relay)). The connection-wide work (frame decoding, replies, pings)
//! happens here, in one task, because both zlib contexts demand strict frame order.

use std::collections::HashMap;
use std::future::{ready, Future};

use bytes::{Bytes, BytesMut};
use futures::{Sink, SinkExt, Stream, StreamExt};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::handshake::Transport;
use super::port_forward_relay::{relay, RelayStreams};
use super::spdy_frame::{Frame, FrameDecoder, FrameEncoder};
use super::spdy_headers::Headers;

/// Frames queued for the client before producers wait; the writer drains them in batches.
const OUTBOUND_QUEUE: usize = 64;
/// Client DATA chunks buffered per stream before the whole connection waits for that target.
const INBOUND_QUEUE: usize = 16;
/// Largest websocket message the writer builds from queued frames.
const MAX_BATCH: usize = 64 * 1024;
/// Bytes read per call from a raw SPDY connection.
const RAW_READ_CHUNK: usize = 16 * 1024;
/// RST_STREAM / GOAWAY status for frames that break the protocol.
const PROTOCOL_ERROR: u32 = 1;

/// Serves a port-forward session (websocket subprotocol `SPDY/3.1+portforward.k8s.io`). For each
/// `requestid` pair of streams (error + data) it calls `dial(port)`; on `Ok` it relays bytes both
/// ways until either side closes; on `Err(message)` it writes the message on the error stream,
/// after which kubectl drops the whole connection, as it does with the real kubelet.
pub async fn serve_port_forward<D, F, S>(upgraded: hyper::upgrade::Upgraded, dial: D)
where
    D: Fn(u16) -> F + Send + Sync + 'static,
    F: Future<Output = Result<S, String>> + Send + 'static,
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    serve_port_forward_over(upgraded, Transport::WebSocket, dial).await;
}

/// [`serve_port_forward`] for either transport: [`Transport::Spdy`] after [`accept_spdy`]
/// (`X-Stream-Protocol-Version: portforward.k8s.io`), [`Transport::WebSocket`] after
/// [`accept_websocket`].
///
/// [`accept_spdy`]: super::accept_spdy
/// [`accept_websocket`]: super::accept_websocket
pub async fn serve_port_forward_over<D, F, S>(
    upgraded: hyper::upgrade::Upgraded,
    transport: Transport,
    dial: D,
) where
    D: Fn(u16) -> F + Send + Sync + 'static,
    F: Future<Output = Result<S, String>> + Send + 'static,
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = TokioIo::new(upgraded);
    match transport {
        Transport::WebSocket => {
            let ws = WebSocketStream::from_raw_socket(io, Role::Server, None).await;
            serve_port_forward_websocket(ws, dial).await;
        }
        Transport::Spdy => serve_port_forward_raw(io, dial).await,
    }
}

/// Port-forward with SPDY frames directly on the connection.
pub(crate) async fn serve_port_forward_raw<T, D, F, S>(io: T, dial: D)
where
    T: AsyncRead + AsyncWrite,
    D: Fn(u16) -> F,
    F: Future<Output = Result<S, String>> + Send + 'static,
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (read_half, write_half) = tokio::io::split(io);
    let incoming = futures::stream::unfold(read_half, |mut read_half| async move {
        let mut buf = vec![0u8; RAW_READ_CHUNK];
        match read_half.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Bytes::from(buf), read_half))
            }
            Err(e) => {
                tracing::debug!(error = %e, "port-forward spdy connection read failed");
                None
            }
        }
    });
    let outgoing = futures::sink::unfold(write_half, |mut write_half, data: Bytes| async move {
        write_half.write_all(&data).await?;
        Ok::<_, std::io::Error>(write_half)
    });
    run_session(incoming, outgoing, dial).await;
}

/// [`serve_port_forward`] over any websocket, so tests can run it in memory.
pub(crate) async fn serve_port_forward_websocket<T, D, F, S>(ws: WebSocketStream<T>, dial: D)
where
    T: AsyncRead + AsyncWrite + Unpin,
    D: Fn(u16) -> F,
    F: Future<Output = Result<S, String>> + Send + 'static,
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sink, stream) = ws.split();
    // Message boundaries carry no meaning: only the binary payloads, concatenated, form the SPDY
    // byte stream. Pings are answered by tungstenite while reading.
    let incoming = stream
        .take_while(|m| ready(matches!(m, Ok(msg) if !msg.is_close())))
        .filter_map(|m| {
            ready(match m {
                Ok(Message::Binary(data)) => Some(data),
                _ => None,
            })
        });
    let outgoing = sink.with(|data: Bytes| {
        ready(Ok::<_, tokio_tungstenite::tungstenite::Error>(
            Message::Binary(data),
        ))
    });
    run_session(incoming, outgoing, dial).await;
}

/// Runs one SPDY connection given its byte stream in and a sink for bytes out.
pub(crate) async fn run_session<I, O, D, F, S>(incoming: I, outgoing: O, dial: D)
where
    I: Stream<Item = Bytes>,
    O: Sink<Bytes>,
    D: Fn(u16) -> F,
    F: Future<Output = Result<S, String>> + Send + 'static,
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (frames_tx, frames_rx) = mpsc::channel(OUTBOUND_QUEUE);
    // Reader and writer share this task; the writer ends once the reader and every relay have
    // dropped their senders, so nothing is left running when this returns.
    tokio::join!(
        read_frames(incoming, frames_tx, dial),
        write_frames(frames_rx, outgoing)
    );
}

/// The two halves of a `requestid` until both have arrived.
#[derive(Default)]
struct PendingPair {
    port: u16,
    error_stream: Option<u32>,
    data_stream: Option<(u32, mpsc::Receiver<Bytes>, oneshot::Receiver<()>)>,
}

/// Per-connection bookkeeping of the reader.
struct Session<D> {
    dial: D,
    frames: mpsc::Sender<Frame>,
    pairs: HashMap<String, PendingPair>,
    /// Where client DATA for each open data stream goes; removing the sender is the FIN.
    inbound: HashMap<u32, mpsc::Sender<Bytes>>,
    /// Fired when the client resets a data stream.
    resets: HashMap<u32, oneshot::Sender<()>>,
    relays: JoinSet<()>,
}

async fn read_frames<I, D, F, S>(incoming: I, frames: mpsc::Sender<Frame>, dial: D)
where
    I: Stream<Item = Bytes>,
    D: Fn(u16) -> F,
    F: Future<Output = Result<S, String>> + Send + 'static,
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    tokio::pin!(incoming);
    let mut session = Session {
        dial,
        frames,
        pairs: HashMap::new(),
        inbound: HashMap::new(),
        resets: HashMap::new(),
        relays: JoinSet::new(),
    };
    let mut decoder = FrameDecoder::new();
    'connection: while let Some(chunk) = incoming.next().await {
        decoder.extend(&chunk);
        loop {
            match decoder.next_frame() {
                Ok(Some(frame)) => {
                    if !session.handle(frame).await {
                        break 'connection;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "port-forward client sent a bad spdy frame; closing");
                    let _ = session
                        .frames
                        .send(Frame::GoAway {
                            last_good_stream_id: 0,
                            status: PROTOCOL_ERROR,
                        })
                        .await;
                    break 'connection;
                }
            }
        }
    }
    // Abort relays still running; once they and the session are gone, every frame sender is
    // dropped and the writer finishes.
    session.relays.shutdown().await;
}

impl<D, F, S> Session<D>
where
    D: Fn(u16) -> F,
    F: Future<Output = Result<S, String>> + Send + 'static,
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    /// Acts on one frame; `false` ends the connection.
    async fn handle(&mut self, frame: Frame) -> bool {
        match frame {
            Frame::SynStream {
                stream_id, headers, ..
            } => self.open_stream(stream_id, &headers).await,
            Frame::Data {
                stream_id,
                fin,
                data,
            } => {
                if let Some(tx) = self.inbound.get(&stream_id) {
                    // A failed send means the relay is over; later bytes for it have nowhere to go.
                    if !data.is_empty() && tx.send(data).await.is_err() {
                        self.inbound.remove(&stream_id);
                    }
                }
                if fin {
                    self.inbound.remove(&stream_id);
                }
                true
            }
            Frame::RstStream { stream_id, .. } => {
                self.inbound.remove(&stream_id);
                if let Some(reset) = self.resets.remove(&stream_id) {
                    let _ = reset.send(());
                }
                true
            }
            // spdystream drops the connection if pings go unanswered.
            Frame::Ping { id } => self.frames.send(Frame::Ping { id }).await.is_ok(),
            Frame::GoAway { .. } => false,
            Frame::SynReply { .. } | Frame::Ignored { .. } => true,
        }
    }

    async fn open_stream(&mut self, stream_id: u32, headers: &Headers) -> bool {
        let (Some(kind), Some(port), Some(request_id)) = (
            headers.get("streamtype"),
            headers.get("port").and_then(|p| p.parse::<u16>().ok()),
            headers.get("requestid"),
        ) else {
            tracing::warn!(
                stream_id,
                ?headers,
                "port-forward stream without streamtype, port or requestid"
            );
            let reset = Frame::RstStream {
                stream_id,
                status: PROTOCOL_ERROR,
            };
            return self.frames.send(reset).await.is_ok();
        };
        // The reply must precede anything else on the stream: spdystream drops data for streams it
        // has not seen accepted, and waits for the reply before using the stream.
        let reply = Frame::SynReply {
            stream_id,
            fin: false,
            headers: Headers::default(),
        };
        if self.frames.send(reply).await.is_err() {
            return false;
        }
        let pair = self.pairs.entry(request_id.to_owned()).or_default();
        pair.port = port;
        match kind {
            "error" => pair.error_stream = Some(stream_id),
            "data" => {
                let (tx, rx) = mpsc::channel(INBOUND_QUEUE);
                let (reset_tx, reset_rx) = oneshot::channel();
                self.inbound.insert(stream_id, tx);
                self.resets.insert(stream_id, reset_tx);
                pair.data_stream = Some((stream_id, rx, reset_rx));
            }
            other => {
                tracing::warn!(
                    stream_id,
                    streamtype = other,
                    "unknown port-forward stream type; ignoring"
                );
                return true;
            }
        }
        if pair.error_stream.is_some() && pair.data_stream.is_some() {
            self.start_relay(request_id);
        }
        true
    }

    fn start_relay(&mut self, request_id: &str) {
        let Some(PendingPair {
            port,
            error_stream: Some(error_stream),
            data_stream: Some((data_stream, inbound, reset)),
        }) = self.pairs.remove(request_id)
        else {
            return;
        };
        // Resets of finished relays are never fired; forget them so a long session does not grow.
        self.resets.retain(|_, tx| !tx.is_closed());
        while self.relays.try_join_next().is_some() {}
        tracing::debug!(port, request_id, "port-forward connection starting");
        let streams = RelayStreams {
            error_stream,
            data_stream,
            inbound,
            reset,
            frames: self.frames.clone(),
        };
        self.relays.spawn(relay((self.dial)(port), streams));
    }
}

/// Encodes queued frames in order and writes them, several per websocket message when they queue up.
async fn write_frames<O: Sink<Bytes>>(mut frames: mpsc::Receiver<Frame>, sink: O) {
    tokio::pin!(sink);
    let mut encoder = match FrameEncoder::new() {
        Ok(encoder) => encoder,
        Err(e) => {
            tracing::error!(error = %e, "cannot set up spdy header compression");
            return;
        }
    };
    let mut buf = BytesMut::new();
    while let Some(frame) = frames.recv().await {
        let mut next = Some(frame);
        while let Some(frame) = next.take() {
            if let Err(e) = encoder.encode(&frame, &mut buf) {
                tracing::error!(error = %e, "cannot encode spdy frame; closing port-forward session");
                return;
            }
            if buf.len() < MAX_BATCH {
                next = frames.try_recv().ok();
            }
        }
        if sink.send(buf.split().freeze()).await.is_err() {
            tracing::debug!("port-forward client went away");
            return;
        }
    }
    let _ = sink.close().await;
}

#[cfg(test)]
#[path = "port_forward_tests.rs"]
mod tests;
