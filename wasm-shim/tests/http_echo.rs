//! The http-echo sample served on a real TCP port and asked over HTTP/1.1.

mod common;

use std::time::Duration;

use bramble_wasm_shim::http::{serve, HttpOptions, HttpSummary};
use bramble_wasm_shim::sandbox::SandboxSpec;
use common::{image, runner};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// Sends one request with `Connection: close` and returns the whole response.
async fn request(port: u16, head: &str, body: &str) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let message = format!(
        "{head}\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(message.as_bytes()).await.expect("send");
    let mut response = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut response));
    read.await.expect("response in time").expect("read");
    String::from_utf8_lossy(&response).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_echo_answers_requests_on_a_port() {
    let runner = runner("http-echo");
    let program = runner
        .load(&image("http-echo.wasm"))
        .expect("load http-echo");
    let mut spec = SandboxSpec::new("http-echo");
    spec.env = vec![("POD_NAME".into(), "echo-1".into())];
    spec.limits.memory_bytes = Some(16 << 20);
    spec.limits.wall_timeout = Some(Duration::from_secs(10));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("address").port();
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(serve(
        runner.engine().clone(),
        program.clone(),
        spec,
        HttpOptions::default(),
        listener,
        shutdown.clone(),
    ));

    let response = request(port, "POST /greet?x=1 HTTP/1.1", "ping").await;
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    assert!(
        response.contains("content-type: application/json"),
        "{response}"
    );
    for expected in [
        "\"pod\":\"echo-1\"",
        "\"method\":\"POST\"",
        "\"path\":\"/greet?x=1\"",
        "\"body\":\"ping\"",
    ] {
        assert!(
            response.contains(expected),
            "{expected} missing in {response}"
        );
    }
    let second = request(port, "GET / HTTP/1.1", "").await;
    assert!(second.contains("\"method\":\"GET\""), "{second}");

    shutdown.cancel();
    let summary = tokio::time::timeout(Duration::from_secs(10), server).await;
    let summary = summary
        .expect("server stops")
        .expect("server task")
        .expect("serve");
    assert_eq!(
        summary,
        HttpSummary {
            requests: 2,
            failed: 0
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_whose_guest_cannot_get_its_memory_is_answered_with_503() {
    let runner = runner("http-oom");
    let program = runner
        .load(&image("http-echo.wasm"))
        .expect("load http-echo");
    let mut spec = SandboxSpec::new("http-echo");
    // Less than the component's initial memory: every instantiation is refused.
    spec.limits.memory_bytes = Some(64 << 10);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("address").port();
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(serve(
        runner.engine().clone(),
        program.clone(),
        spec,
        HttpOptions { max_concurrent: 1 },
        listener,
        shutdown.clone(),
    ));
    let response = request(port, "GET / HTTP/1.1", "").await;
    assert!(response.starts_with("HTTP/1.1 503"), "{response}");
    shutdown.cancel();
    let summary = server.await.expect("server task").expect("serve");
    assert_eq!(
        summary,
        HttpSummary {
            requests: 1,
            failed: 1
        }
    );
}
