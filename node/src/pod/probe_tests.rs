use std::net::{IpAddr, Ipv4Addr};

use k8s_openapi::api::core::v1::{Container, Probe};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use super::*;

const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn probe(value: serde_json::Value) -> Probe {
    serde_json::from_value(value).unwrap_or_default()
}

fn container(port: u16) -> Container {
    serde_json::from_value(json!({
        "name": "app", "image": "i", "ports": [{"name": "http", "containerPort": port}]
    }))
    .unwrap_or_default()
}

/// Serves one connection with `status`, handing back the request it received.
async fn serve_once(status: u16) -> (u16, oneshot::Receiver<String>) {
    let listener = TcpListener::bind((LOCAL, 0))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let port = listener.local_addr().map(|a| a.port()).unwrap_or_default();
    let (sender, receiver) = oneshot::channel();
    tokio::spawn(async move {
        let Ok((mut stream, _)) = listener.accept().await else {
            return;
        };
        let mut request = Vec::new();
        let mut buffer = [0u8; 1024];
        while !request.ends_with(b"\r\n\r\n") {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => request.extend_from_slice(&buffer[..n]),
            }
        }
        let response = format!("HTTP/1.1 {status} X\r\nContent-Length: 0\r\n\r\n");
        let _ = stream.write_all(response.as_bytes()).await;
        let _ = sender.send(String::from_utf8_lossy(&request).into_owned());
    });
    (port, receiver)
}

#[tokio::test]
async fn http_probes_succeed_on_2xx_and_3xx_and_send_path_and_headers() {
    for (status, success) in [(200, true), (302, true), (404, false), (500, false)] {
        let (port, request) = serve_once(status).await;
        let p = probe(json!({"httpGet": {
            "path": "healthz", "port": "http",
            "httpHeaders": [{"name": "X-Check", "value": "1"}, {"name": "User-Agent", "value": "me"}]
        }}));
        let outcome = run_probe(&p, LOCAL, &container(port)).await;
        assert_eq!(
            outcome == ProbeOutcome::Success,
            success,
            "{status}: {outcome:?}"
        );
        let request = request.await.unwrap_or_default();
        assert!(
            request.starts_with("GET /healthz HTTP/1.1\r\n"),
            "{request}"
        );
        assert!(request.contains("X-Check: 1\r\n") && request.contains("Connection: close\r\n"));
        assert!(request.contains("User-Agent: me\r\n") && !request.contains("kube-probe"));
        assert!(request.contains(&format!("Host: 127.0.0.1:{port}\r\n")));
    }
}

#[tokio::test]
async fn tcp_probes_succeed_when_a_connection_is_accepted() {
    let listener = TcpListener::bind((LOCAL, 0))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let port = listener.local_addr().map(|a| a.port()).unwrap_or_default();
    let p = probe(json!({"tcpSocket": {"port": port}}));
    assert_eq!(
        run_probe(&p, LOCAL, &container(port)).await,
        ProbeOutcome::Success
    );
    drop(listener);
    let outcome = run_probe(&p, LOCAL, &container(port)).await;
    assert!(matches!(outcome, ProbeOutcome::Failure(_)), "{outcome:?}");
}

#[tokio::test]
async fn a_server_that_never_answers_times_out() {
    let listener = TcpListener::bind((LOCAL, 0))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let port = listener.local_addr().map(|a| a.port()).unwrap_or_default();
    // Accepted by the kernel's backlog but never answered.
    let p = probe(json!({"httpGet": {"port": port}, "timeoutSeconds": 1}));
    let outcome = run_probe(&p, LOCAL, &container(port)).await;
    assert_eq!(
        outcome,
        ProbeOutcome::Failure("timeout: no answer within 1s".into())
    );
    drop(listener);
}

#[tokio::test]
async fn exec_grpc_https_and_unknown_ports_are_reported_not_crashed() {
    let c = container(8080);
    let exec = probe(json!({"exec": {"command": ["true"]}}));
    assert!(matches!(
        run_probe(&exec, LOCAL, &c).await,
        ProbeOutcome::Unsupported(_)
    ));
    let grpc = probe(json!({"grpc": {"port": 9000}}));
    assert!(matches!(
        run_probe(&grpc, LOCAL, &c).await,
        ProbeOutcome::Unsupported(_)
    ));
    let https = probe(json!({"httpGet": {"port": 8080, "scheme": "HTTPS"}}));
    assert!(matches!(
        run_probe(&https, LOCAL, &c).await,
        ProbeOutcome::Unsupported(_)
    ));
    let unnamed = probe(json!({"httpGet": {"port": "metrics"}}));
    assert_eq!(
        run_probe(&unnamed, LOCAL, &c).await,
        ProbeOutcome::Failure(r#"container has no port named "metrics""#.into())
    );
}
