//! Unit tests of the exec channel protocol against an in-memory tungstenite client.

use super::*;
use tokio::io::DuplexStream;
use tokio::sync::mpsc::{Receiver, Sender};

struct NodeSide {
    stdin: Receiver<ExecInput>,
    output: Sender<ExecOutput>,
}

/// Starts `serve_exec_on` over an in-memory pipe and returns the client end, the node end and the
/// server task.
async fn session(
    protocol: &'static str,
    tty: bool,
) -> (
    WebSocketStream<DuplexStream>,
    NodeSide,
    tokio::task::JoinHandle<()>,
) {
    let (client_io, server_io) = tokio::io::duplex(64 * 1024);
    let (stdin_tx, stdin_rx) = mpsc::channel(4);
    let (out_tx, out_rx) = mpsc::channel(4);
    let streams = ExecStreams {
        stdin: Some(stdin_tx),
        output: out_rx,
    };
    let server = tokio::spawn(async move {
        let ws = WebSocketStream::from_raw_socket(server_io, Role::Server, None).await;
        serve_exec_on(ws, protocol, tty, streams).await;
    });
    let client = WebSocketStream::from_raw_socket(client_io, Role::Client, None).await;
    (
        client,
        NodeSide {
            stdin: stdin_rx,
            output: out_tx,
        },
        server,
    )
}

async fn next_binary(client: &mut WebSocketStream<DuplexStream>) -> Vec<u8> {
    loop {
        match client.next().await {
            Some(Ok(Message::Binary(data))) => return data.to_vec(),
            Some(Ok(Message::Pong(_))) => continue,
            other => panic!("expected a binary message, got {other:?}"),
        }
    }
}

#[test]
fn decodes_client_channels() {
    assert_eq!(
        decode_client_message(b"\x00hi", true),
        Some(ExecInput::Stdin(Bytes::from_static(b"hi")))
    );
    assert_eq!(decode_client_message(b"\x00", true), None);
    assert_eq!(
        decode_client_message(b"\x04{\"Width\":120,\"Height\":40}\n", true),
        Some(ExecInput::Resize {
            width: 120,
            height: 40
        })
    );
    assert_eq!(
        decode_client_message(b"\x04{\"Width\":-1,\"Height\":40}", true),
        None
    );
    assert_eq!(
        decode_client_message(&[255, 0], true),
        Some(ExecInput::StdinClosed)
    );
    // v4 has no close channel, so the same bytes mean nothing there.
    assert_eq!(decode_client_message(&[255, 0], false), None);
    assert_eq!(decode_client_message(&[], true), None);
}

#[test]
fn exit_code_status_carries_the_cause_kubectl_reads() {
    let status = status_json(&ExecResult::ExitCode(3));
    assert_eq!(status["status"], "Failure");
    assert_eq!(status["reason"], "NonZeroExitCode");
    assert_eq!(status["details"]["causes"][0]["reason"], "ExitCode");
    assert_eq!(status["details"]["causes"][0]["message"], "3");
    assert_eq!(status_json(&ExecResult::ExitCode(0))["status"], "Success");
    assert_eq!(
        status_json(&ExecResult::Failure("no such binary".into()))["message"],
        "no such binary"
    );
}

#[tokio::test]
async fn relays_both_ways_and_ends_with_status_then_close() {
    let (mut client, mut node, server) = session(EXEC_PROTOCOL_V5, false).await;
    client
        .send(Message::Binary(Bytes::from_static(b"\x00hello\n")))
        .await
        .expect("send stdin");
    client
        .send(Message::Binary(Bytes::from_static(&[255, 0])))
        .await
        .expect("send close");
    assert_eq!(
        node.stdin.recv().await,
        Some(ExecInput::Stdin(Bytes::from_static(b"hello\n")))
    );
    assert_eq!(node.stdin.recv().await, Some(ExecInput::StdinClosed));

    node.output
        .send(ExecOutput::Stdout(Bytes::from_static(b"out")))
        .await
        .expect("stdout");
    node.output
        .send(ExecOutput::Stderr(Bytes::from_static(b"err")))
        .await
        .expect("stderr");
    node.output
        .send(ExecOutput::Exit(ExecResult::ExitCode(7)))
        .await
        .expect("exit");
    assert_eq!(next_binary(&mut client).await, b"\x01out");
    assert_eq!(next_binary(&mut client).await, b"\x02err");
    let status = next_binary(&mut client).await;
    assert_eq!(status[0], CHANNEL_STATUS);
    let status: serde_json::Value = serde_json::from_slice(&status[1..]).expect("status json");
    assert_eq!(status["details"]["causes"][0]["message"], "7");
    match client.next().await {
        Some(Ok(Message::Close(Some(frame)))) => assert_eq!(frame.code, CloseCode::Normal),
        other => panic!("expected a normal close, got {other:?}"),
    }
    // Reading on flushes tungstenite's close reply, which is what lets the server finish.
    assert!(client.next().await.is_none());
    server.await.expect("server task");
}

#[tokio::test]
async fn tty_mode_never_uses_the_stderr_channel() {
    let (mut client, node, server) = session(EXEC_PROTOCOL_V5, true).await;
    node.output
        .send(ExecOutput::Stderr(Bytes::from_static(b"oops")))
        .await
        .expect("stderr");
    node.output
        .send(ExecOutput::Exit(ExecResult::Success))
        .await
        .expect("exit");
    assert_eq!(next_binary(&mut client).await, b"\x01oops");
    assert_eq!(
        next_binary(&mut client).await,
        b"\x03{\"metadata\":{},\"status\":\"Success\"}"
    );
    drop(client);
    server.await.expect("server task");
}

#[tokio::test]
async fn answers_pings() {
    let (mut client, _node, _server) = session(EXEC_PROTOCOL_V5, false).await;
    client
        .send(Message::Ping(Bytes::from_static(b"k")))
        .await
        .expect("ping");
    match client.next().await {
        Some(Ok(Message::Pong(data))) => assert_eq!(&data[..], b"k"),
        other => panic!("expected a pong, got {other:?}"),
    }
}

#[tokio::test]
async fn dropped_client_ends_session_and_drops_stdin() {
    let (client, mut node, server) = session(EXEC_PROTOCOL_V5, false).await;
    // An abrupt disconnect: no close frame, the socket just goes away.
    drop(client);
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("serve_exec returns after the client disappears")
        .expect("server task");
    // The sender was dropped, so the node side sees the end of stdin rather than waiting forever.
    assert_eq!(node.stdin.recv().await, None);
    assert!(node.output.is_closed());
}

#[tokio::test]
async fn node_side_dropping_output_reports_a_failure() {
    let (mut client, node, server) = session(EXEC_PROTOCOL_V5, false).await;
    drop(node);
    let status = next_binary(&mut client).await;
    let status: serde_json::Value = serde_json::from_slice(&status[1..]).expect("status json");
    assert_eq!(status["status"], "Failure");
    drop(client);
    server.await.expect("server task");
}
