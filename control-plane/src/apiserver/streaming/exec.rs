//! Exec and attach over the `v5.channel.k8s.io` (and `v4.channel.k8s.io`) websocket protocol.
//!
//! Every binary message starts with a channel byte: 0 stdin, 1 stdout, 2 stderr, 3 the final
//! metav1.Status, 4 terminal resize, and in v5 only 255 "close channel N". The session ends with
//! the Status on channel 3 followed by a normal close, which kubectl reads as EOF on every stream.

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use futures::{SinkExt, StreamExt};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::handshake::{EXEC_PROTOCOL_V4, EXEC_PROTOCOL_V5};

const CHANNEL_STDIN: u8 = 0;
const CHANNEL_STDOUT: u8 = 1;
const CHANNEL_STDERR: u8 = 2;
const CHANNEL_STATUS: u8 = 3;
const CHANNEL_RESIZE: u8 = 4;
const CHANNEL_CLOSE: u8 = 255;

/// How long to wait for kubectl to answer our close frame before dropping the connection anyway.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// One exec or attach session as the node side sees it.
#[derive(Debug)]
pub struct ExecStreams {
    /// Where client input goes; `None` when the request had `stdin=false`. Dropped when the client
    /// goes away, so the node side sees the channel close.
    pub stdin: Option<mpsc::Sender<ExecInput>>,
    /// What the process produces; the session ends at the first [`ExecOutput::Exit`].
    pub output: mpsc::Receiver<ExecOutput>,
}

/// Input from the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecInput {
    /// Bytes typed or piped into kubectl.
    Stdin(Bytes),
    /// kubectl's stdin reached EOF (v5 only; v4 clients cannot say so).
    StdinClosed,
    /// The client terminal's new size, in character cells.
    Resize {
        /// Columns.
        width: u16,
        /// Rows.
        height: u16,
    },
}

/// Output of the process, in the order it should reach the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecOutput {
    /// Bytes for kubectl's stdout.
    Stdout(Bytes),
    /// Bytes for kubectl's stderr (merged into stdout in tty mode, as a terminal would).
    Stderr(Bytes),
    /// The process is over; nothing after this is sent.
    Exit(ExecResult),
}

/// How the process ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecResult {
    /// Exit code 0.
    Success,
    /// Any other exit code; kubectl prints "command terminated with exit code N" and exits N.
    ExitCode(i32),
    /// The process could not run or was lost; kubectl prints the message and exits 1.
    Failure(String),
}

/// Serves a `v5.channel.k8s.io` (or `v4.channel.k8s.io`) session on the upgraded connection until
/// the [`ExecResult`] arrives or the client goes away (then the stdin sender is dropped so the node
/// side sees the end). In tty mode stderr is sent on the stdout channel, because kubectl discards
/// channel 2 when it has a terminal.
pub async fn serve_exec(
    upgraded: hyper::upgrade::Upgraded,
    protocol: &str,
    tty: bool,
    streams: ExecStreams,
) {
    let ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
    serve_exec_on(ws, protocol, tty, streams).await;
}

/// The transport-independent body of [`serve_exec`], generic so tests can drive it in memory.
pub(crate) async fn serve_exec_on<S>(
    mut ws: WebSocketStream<S>,
    protocol: &str,
    tty: bool,
    streams: ExecStreams,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let close_channel_supported = match protocol {
        EXEC_PROTOCOL_V5 => true,
        EXEC_PROTOCOL_V4 => false,
        other => {
            tracing::warn!(
                protocol = other,
                "exec session with an unsupported subprotocol; closing"
            );
            let frame = CloseFrame {
                code: CloseCode::Protocol,
                reason: "unsupported subprotocol".into(),
            };
            let _ = ws.close(Some(frame)).await;
            return;
        }
    };
    let ExecStreams {
        mut stdin,
        mut output,
    } = streams;
    // At most one client message waits for the node side; while it waits we stop reading the
    // socket, which pushes back on kubectl instead of buffering without bound.
    let mut pending: Option<ExecInput> = None;
    loop {
        // The permit borrows `stdin`, so losing the node side is recorded and applied after select.
        let mut stdin_gone = false;
        tokio::select! {
            permit = reserve(stdin.as_ref()), if pending.is_some() => match (permit, pending.take()) {
                (Ok(permit), Some(input)) => permit.send(input),
                // The node side stopped reading stdin; the process may still produce output.
                _ => stdin_gone = true,
            },
            incoming = ws.next(), if pending.is_none() => match incoming {
                Some(Ok(Message::Binary(data))) => {
                    if stdin.is_some() {
                        pending = decode_client_message(&data, close_channel_supported);
                    }
                }
                Some(Ok(Message::Close(_))) | None => {
                    tracing::debug!("exec client closed the connection");
                    return;
                }
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "exec client connection failed");
                    return;
                }
                // Pings are answered by tungstenite during the read; text is not part of the protocol.
                Some(Ok(_)) => {}
            },
            out = output.recv() => {
                let (channel, data) = match out {
                    Some(ExecOutput::Stdout(data)) => (CHANNEL_STDOUT, data),
                    Some(ExecOutput::Stderr(data)) => (if tty { CHANNEL_STDOUT } else { CHANNEL_STDERR }, data),
                    Some(ExecOutput::Exit(result)) => return finish(ws, &result).await,
                    None => {
                        let lost = ExecResult::Failure("the process's output ended without an exit status".into());
                        return finish(ws, &lost).await;
                    }
                };
                if data.is_empty() {
                    continue;
                }
                if let Err(e) = ws.send(channel_message(channel, &data)).await {
                    tracing::debug!(error = %e, "exec client went away while receiving output");
                    return;
                }
            }
        }
        if stdin_gone {
            stdin = None;
        }
    }
}

async fn reserve(
    stdin: Option<&mpsc::Sender<ExecInput>>,
) -> Result<mpsc::Permit<'_, ExecInput>, mpsc::error::SendError<()>> {
    match stdin {
        Some(tx) => tx.reserve().await,
        None => Err(mpsc::error::SendError(())),
    }
}

/// Interprets one client message; `None` for anything the node side need not see.
fn decode_client_message(data: &[u8], close_channel_supported: bool) -> Option<ExecInput> {
    let (&channel, payload) = data.split_first()?;
    match channel {
        CHANNEL_STDIN if !payload.is_empty() => {
            Some(ExecInput::Stdin(Bytes::copy_from_slice(payload)))
        }
        CHANNEL_RESIZE => {
            let size: serde_json::Value = serde_json::from_slice(payload).ok()?;
            let dim = |key: &str| size.get(key)?.as_u64().and_then(|v| u16::try_from(v).ok());
            Some(ExecInput::Resize {
                width: dim("Width")?,
                height: dim("Height")?,
            })
        }
        CHANNEL_CLOSE if close_channel_supported && payload.first() == Some(&CHANNEL_STDIN) => {
            Some(ExecInput::StdinClosed)
        }
        _ => None,
    }
}

fn channel_message(channel: u8, data: &[u8]) -> Message {
    let mut buf = BytesMut::with_capacity(data.len() + 1);
    buf.put_u8(channel);
    buf.extend_from_slice(data);
    Message::Binary(buf.freeze())
}

/// The metav1.Status kubectl decodes from channel 3; the NonZeroExitCode cause is what turns into
/// kubectl's own exit code.
pub(crate) fn status_json(result: &ExecResult) -> serde_json::Value {
    use serde_json::json;
    match result {
        ExecResult::Success | ExecResult::ExitCode(0) => {
            json!({"metadata": {}, "status": "Success"})
        }
        ExecResult::ExitCode(code) => json!({
            "metadata": {},
            "status": "Failure",
            "message": format!("command terminated with non-zero exit code: exit code {code}"),
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
        }),
        ExecResult::Failure(message) => json!({
            "metadata": {},
            "status": "Failure",
            "message": message,
            "reason": "InternalError",
            "code": 500,
        }),
    }
}

async fn finish<S>(mut ws: WebSocketStream<S>, result: &ExecResult)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let status = status_json(result).to_string();
    let sent = ws
        .send(channel_message(CHANNEL_STATUS, status.as_bytes()))
        .await;
    let closed = ws
        .close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        }))
        .await;
    if sent.is_err() || closed.is_err() {
        tracing::debug!("exec client went away before the exit status was delivered");
        return;
    }
    // Reading until the client's close reply lets the connection end cleanly on both sides.
    let drained = tokio::time::timeout(CLOSE_GRACE, async {
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
    if drained.is_err() {
        tracing::debug!("exec client did not answer the close frame in time");
    }
}

#[cfg(test)]
#[path = "exec_tests.rs"]
mod tests;
