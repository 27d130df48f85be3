//! Unit tests of port-forward sessions, with a hand-driven SPDY client on in-memory channels.

use std::time::Duration;

use super::*;
use crate::apiserver::streaming::spdy_frame::RST_CANCEL;
use futures::channel::mpsc as fmpsc;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

/// The client half: encodes frames as kubectl would and decodes what the server sends back.
struct Client {
    to_server: fmpsc::UnboundedSender<Bytes>,
    from_server: fmpsc::UnboundedReceiver<Bytes>,
    encoder: FrameEncoder,
    decoder: FrameDecoder,
}

impl Client {
    fn send(&mut self, frame: Frame) {
        let mut buf = BytesMut::new();
        self.encoder.encode(&frame, &mut buf).expect("encode");
        // Split every frame in two so the server has to reassemble across messages.
        let bytes = buf.freeze();
        let mid = bytes.len() / 2;
        self.to_server
            .unbounded_send(bytes.slice(..mid))
            .expect("server alive");
        self.to_server
            .unbounded_send(bytes.slice(mid..))
            .expect("server alive");
    }

    fn open(&mut self, stream_id: u32, kind: &str, port: u16, request_id: u32) {
        let headers = Headers(vec![
            ("streamtype".into(), kind.into()),
            ("port".into(), port.to_string()),
            ("requestid".into(), request_id.to_string()),
        ]);
        self.send(Frame::SynStream {
            stream_id,
            fin: false,
            headers,
        });
    }

    async fn recv(&mut self) -> Frame {
        loop {
            if let Some(frame) = self.decoder.next_frame().expect("valid server frame") {
                return frame;
            }
            let chunk = tokio::time::timeout(Duration::from_secs(5), self.from_server.next())
                .await
                .expect("server frame in time")
                .expect("server still connected");
            self.decoder.extend(&chunk);
        }
    }
}

/// Starts a session whose dial hands out the server end of a fresh in-memory pipe per connection,
/// except for port 1, which fails.
fn start() -> (
    Client,
    tokio::sync::mpsc::UnboundedReceiver<(u16, DuplexStream)>,
    tokio::task::JoinHandle<()>,
) {
    let (to_server, incoming) = fmpsc::unbounded::<Bytes>();
    let (outgoing, from_server) = fmpsc::unbounded::<Bytes>();
    let (targets_tx, targets_rx) = tokio::sync::mpsc::unbounded_channel();
    let dial = move |port: u16| {
        let targets = targets_tx.clone();
        async move {
            if port == 1 {
                return Err("connection refused to port 1".to_owned());
            }
            let (ours, theirs) = tokio::io::duplex(1024);
            targets
                .send((port, theirs))
                .map_err(|_| "test over".to_owned())?;
            Ok(ours)
        }
    };
    let server = tokio::spawn(run_session(incoming, outgoing, dial));
    let client = Client {
        to_server,
        from_server,
        encoder: FrameEncoder::new().expect("encoder"),
        decoder: FrameDecoder::new(),
    };
    (client, targets_rx, server)
}

fn data(stream_id: u32, fin: bool, bytes: &'static [u8]) -> Frame {
    Frame::Data {
        stream_id,
        fin,
        data: Bytes::from_static(bytes),
    }
}

#[tokio::test]
async fn replies_relays_and_finishes_both_streams() {
    let (mut client, mut targets, server) = start();
    client.open(1, "error", 8080, 0);
    client.send(data(1, true, b""));
    client.open(3, "data", 8080, 0);
    assert!(matches!(
        client.recv().await,
        Frame::SynReply { stream_id: 1, .. }
    ));
    assert!(matches!(
        client.recv().await,
        Frame::SynReply { stream_id: 3, .. }
    ));

    let (port, mut target) = targets.recv().await.expect("dialled");
    assert_eq!(port, 8080);
    client.send(data(3, false, b"ping?"));
    let mut buf = [0u8; 5];
    target
        .read_exact(&mut buf)
        .await
        .expect("target gets client bytes");
    assert_eq!(&buf, b"ping?");
    target.write_all(b"pong!").await.expect("target writes");
    assert_eq!(client.recv().await, data(3, false, b"pong!"));

    // The client half-closes; the target sees EOF, answers and closes.
    client.send(data(3, true, b""));
    assert_eq!(target.read(&mut buf).await.expect("eof"), 0);
    target.write_all(b"bye").await.expect("last words");
    drop(target);
    assert_eq!(client.recv().await, data(3, false, b"bye"));
    assert_eq!(client.recv().await, data(3, true, b""));
    // An empty error stream ending is how kubectl learns the forward succeeded.
    assert_eq!(client.recv().await, data(1, true, b""));

    client.send(Frame::RstStream {
        stream_id: 3,
        status: RST_CANCEL,
    });
    client.send(Frame::GoAway {
        last_good_stream_id: 0,
        status: 0,
    });
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("session ends")
        .expect("task");
}

#[tokio::test]
async fn concurrent_request_ids_are_independent() {
    let (mut client, mut targets, _server) = start();
    for (request_id, error_stream, data_stream) in [(0, 1, 3), (1, 5, 7)] {
        client.open(error_stream, "error", 80, request_id);
        client.open(data_stream, "data", 80, request_id);
    }
    for expected in [1, 3, 5, 7] {
        assert!(
            matches!(client.recv().await, Frame::SynReply { stream_id, .. } if stream_id == expected)
        );
    }
    let (_, mut first) = targets.recv().await.expect("first dial");
    let (_, mut second) = targets.recv().await.expect("second dial");
    second.write_all(b"two").await.expect("write");
    first.write_all(b"one").await.expect("write");
    let mut got = vec![client.recv().await, client.recv().await];
    got.sort_by_key(|f| match f {
        Frame::Data { stream_id, .. } => *stream_id,
        _ => 0,
    });
    assert_eq!(got, vec![data(3, false, b"one"), data(7, false, b"two")]);
}

#[tokio::test]
async fn dial_failure_is_written_on_the_error_stream() {
    let (mut client, _targets, _server) = start();
    client.open(1, "error", 1, 0);
    client.open(3, "data", 1, 0);
    assert!(matches!(
        client.recv().await,
        Frame::SynReply { stream_id: 1, .. }
    ));
    assert!(matches!(
        client.recv().await,
        Frame::SynReply { stream_id: 3, .. }
    ));
    assert_eq!(
        client.recv().await,
        data(1, true, b"connection refused to port 1")
    );
}

#[tokio::test]
async fn echoes_pings_and_resets_streams_missing_headers() {
    let (mut client, _targets, _server) = start();
    client.send(Frame::Ping { id: 1 });
    assert_eq!(client.recv().await, Frame::Ping { id: 1 });
    client.send(Frame::SynStream {
        stream_id: 1,
        fin: false,
        headers: Headers(vec![("streamtype".into(), "data".into())]),
    });
    assert!(matches!(
        client.recv().await,
        Frame::RstStream {
            stream_id: 1,
            status: PROTOCOL_ERROR
        }
    ));
}

#[tokio::test]
async fn client_reset_closes_the_target() {
    let (mut client, mut targets, _server) = start();
    client.open(1, "error", 80, 0);
    client.open(3, "data", 80, 0);
    let (_, mut target) = targets.recv().await.expect("dialled");
    client.send(Frame::RstStream {
        stream_id: 3,
        status: RST_CANCEL,
    });
    let mut buf = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_secs(5), target.read(&mut buf))
        .await
        .expect("target closed in time");
    assert_eq!(read.expect("clean eof"), 0);
}

#[tokio::test]
async fn garbage_ends_the_session_with_goaway() {
    let (mut client, _targets, server) = start();
    client
        .to_server
        .unbounded_send(Bytes::from_static(&[0x80, 2, 0, 1, 0, 0, 0, 0]))
        .expect("send");
    assert!(matches!(
        client.recv().await,
        Frame::GoAway {
            status: PROTOCOL_ERROR,
            ..
        }
    ));
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("session ends")
        .expect("task");
}
