//! One forwarded connection: dial the target, then copy bytes between it and a SPDY data stream.
//!
//! It ends like the kubelet's forwarder: when the target stops sending, the data stream and then
//! the error stream get a FIN. kubectl waits for the error stream's end before it lets go of the
//! connection, so that FIN is sent on success too; text before it would mean failure.

use std::future::Future;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

use super::spdy_frame::Frame;

/// Bytes read from the target per DATA frame.
const READ_CHUNK: usize = 32 * 1024;

/// The session-side ends one relay works with.
pub(crate) struct RelayStreams {
    /// SPDY stream on which a dial failure is reported.
    pub(crate) error_stream: u32,
    /// SPDY stream carrying the connection's bytes.
    pub(crate) data_stream: u32,
    /// Client bytes for the data stream; closed when the client sends FIN.
    pub(crate) inbound: mpsc::Receiver<Bytes>,
    /// Fires when the client resets the data stream.
    pub(crate) reset: oneshot::Receiver<()>,
    /// Frames for the client, in the order they must be sent.
    pub(crate) frames: mpsc::Sender<Frame>,
}

/// Dials and relays until the target is done, the client resets, or the session ends.
pub(crate) async fn relay<F, S>(dial: F, streams: RelayStreams)
where
    F: Future<Output = Result<S, String>>,
    S: AsyncRead + AsyncWrite + Unpin,
{
    let RelayStreams {
        error_stream,
        data_stream,
        mut inbound,
        mut reset,
        frames,
    } = streams;
    let target = tokio::select! {
        target = dial => target,
        _ = &mut reset => return,
    };
    let target = match target {
        Ok(target) => target,
        Err(message) => {
            tracing::debug!(%message, "port-forward dial failed");
            let error = Bytes::from(message.into_bytes());
            let _ = frames
                .send(Frame::Data {
                    stream_id: error_stream,
                    fin: true,
                    data: error,
                })
                .await;
            let _ = frames
                .send(Frame::Data {
                    stream_id: data_stream,
                    fin: true,
                    data: Bytes::new(),
                })
                .await;
            return;
        }
    };
    let (mut target_read, mut target_write) = tokio::io::split(target);

    let upstream = async {
        while let Some(chunk) = inbound.recv().await {
            if let Err(e) = target_write.write_all(&chunk).await {
                tracing::debug!(error = %e, "port-forward target stopped accepting data");
                // Keep draining so the session's reader never waits on a dead connection.
                while inbound.recv().await.is_some() {}
                return;
            }
        }
        // The client's FIN: pass the half-close on so request/response targets see end of input.
        let _ = target_write.shutdown().await;
    };
    let downstream = async {
        let mut buf = vec![0u8; READ_CHUNK];
        loop {
            match target_read.read(&mut buf).await {
                Ok(0) => return true,
                Ok(n) => {
                    let data = Bytes::copy_from_slice(&buf[..n]);
                    if frames
                        .send(Frame::Data {
                            stream_id: data_stream,
                            fin: false,
                            data,
                        })
                        .await
                        .is_err()
                    {
                        return false;
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, "port-forward target read failed");
                    return true;
                }
            }
        }
    };
    let copy = async {
        tokio::pin!(upstream, downstream);
        let mut upstream_done = false;
        loop {
            tokio::select! {
                session_alive = &mut downstream => return session_alive,
                () = &mut upstream, if !upstream_done => upstream_done = true,
            }
        }
    };
    let session_alive = tokio::select! {
        alive = copy => alive,
        // The client is done with this connection: nothing more may be sent on its streams.
        _ = &mut reset => false,
    };
    if session_alive {
        let _ = frames
            .send(Frame::Data {
                stream_id: data_stream,
                fin: true,
                data: Bytes::new(),
            })
            .await;
        let _ = frames
            .send(Frame::Data {
                stream_id: error_stream,
                fin: true,
                data: Bytes::new(),
            })
            .await;
    }
}
