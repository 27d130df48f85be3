//! Running one probe against a container: httpGet (plain HTTP/1.1) and tcpSocket. exec and
//! gRPC probes are reported as unsupported rather than failing the container.

use std::net::IpAddr;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, HTTPGetAction, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Default `timeoutSeconds`.
pub const DEFAULT_TIMEOUT_SECONDS: i32 = 1;

/// Longest response head read; the status line is all that matters.
const MAX_HEAD: usize = 4096;

/// The result of one probe run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeOutcome {
    /// The container answered as required.
    Success,
    /// It did not; the message says how, for events and logs.
    Failure(String),
    /// The probe kind cannot run against a Wasm container (exec, gRPC, HTTPS) or names no
    /// action; it counts neither way.
    Unsupported(String),
}

/// Runs `probe` against the container at `host`, within its timeout.
pub async fn run_probe(probe: &Probe, host: IpAddr, container: &Container) -> ProbeOutcome {
    let seconds = probe
        .timeout_seconds
        .unwrap_or(DEFAULT_TIMEOUT_SECONDS)
        .max(1);
    let timeout = Duration::from_secs(u64::try_from(seconds).unwrap_or(1));
    let attempt = async {
        if let Some(action) = &probe.http_get {
            return http_get(action, host, container).await;
        }
        if let Some(action) = &probe.tcp_socket {
            let port = match resolve_port(&action.port, container) {
                Ok(port) => port,
                Err(message) => return ProbeOutcome::Failure(message),
            };
            let target = action.host.clone().unwrap_or_else(|| host.to_string());
            return match TcpStream::connect((target.as_str(), port)).await {
                Ok(_) => ProbeOutcome::Success,
                Err(err) => ProbeOutcome::Failure(format!("dial tcp {target}:{port}: {err}")),
            };
        }
        if probe.exec.is_some() {
            return ProbeOutcome::Unsupported(
                "exec probes cannot run in Wasm containers; use httpGet or tcpSocket".into(),
            );
        }
        if probe.grpc.is_some() {
            return ProbeOutcome::Unsupported(
                "grpc probes are not supported yet; use httpGet or tcpSocket".into(),
            );
        }
        ProbeOutcome::Unsupported("the probe names no action".into())
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(outcome) => outcome,
        Err(_) => ProbeOutcome::Failure(format!("timeout: no answer within {seconds}s")),
    }
}

/// The port number, looking a name up among the container's ports.
fn resolve_port(port: &IntOrString, container: &Container) -> Result<u16, String> {
    match port {
        IntOrString::Int(number) => u16::try_from(*number)
            .ok()
            .filter(|number| *number != 0)
            .ok_or_else(|| format!("port {number} is not in 1-65535")),
        IntOrString::String(name) => {
            // A numeric string is a number, as in the kubelet.
            if let Ok(number) = name.parse::<i32>() {
                return resolve_port(&IntOrString::Int(number), container);
            }
            container
                .ports
                .iter()
                .flatten()
                .find(|port| port.name.as_deref() == Some(name.as_str()))
                .and_then(|port| u16::try_from(port.container_port).ok())
                .ok_or_else(|| format!("container has no port named {name:?}"))
        }
    }
}

async fn http_get(action: &HTTPGetAction, host: IpAddr, container: &Container) -> ProbeOutcome {
    let scheme = action.scheme.as_deref().unwrap_or("HTTP");
    if !scheme.eq_ignore_ascii_case("HTTP") {
        return ProbeOutcome::Unsupported(format!(
            "httpGet scheme {scheme} is not supported; use HTTP"
        ));
    }
    let port = match resolve_port(&action.port, container) {
        Ok(port) => port,
        Err(message) => return ProbeOutcome::Failure(message),
    };
    let target = action.host.clone().unwrap_or_else(|| host.to_string());
    let authority = match target.parse::<IpAddr>() {
        Ok(IpAddr::V6(v6)) => format!("[{v6}]:{port}"),
        _ => format!("{target}:{port}"),
    };
    let request = request(action, &authority);
    let result = async {
        let mut stream = TcpStream::connect((target.as_str(), port)).await?;
        stream.write_all(request.as_bytes()).await?;
        let mut head = Vec::new();
        let mut buffer = [0u8; 1024];
        while !head.windows(2).any(|w| w == b"\r\n") && head.len() < MAX_HEAD {
            let read = stream.read(&mut buffer).await?;
            if read == 0 {
                break;
            }
            head.extend_from_slice(&buffer[..read]);
        }
        Ok::<_, std::io::Error>(head)
    }
    .await;
    let head = match result {
        Ok(head) => head,
        Err(err) => return ProbeOutcome::Failure(format!("Get \"http://{authority}\": {err}")),
    };
    let line = String::from_utf8_lossy(&head);
    let status = line
        .lines()
        .next()
        .filter(|line| line.starts_with("HTTP/"))
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|code| code.parse::<u16>().ok());
    match status {
        Some(code) if (200..400).contains(&code) => ProbeOutcome::Success,
        Some(code) => ProbeOutcome::Failure(format!("HTTP probe failed with statuscode: {code}")),
        None => ProbeOutcome::Failure(format!("malformed HTTP response from {authority}")),
    }
}

/// A GET with the kubelet's default headers; headers from the probe replace defaults of the
/// same name (a probe may set its own Host or User-Agent).
fn request(action: &HTTPGetAction, authority: &str) -> String {
    let path = action.path.as_deref().unwrap_or("/");
    let path = if path.starts_with('/') {
        path.to_owned()
    } else {
        format!("/{path}")
    };
    let custom = action.http_headers.as_deref().unwrap_or_default();
    let overridden = |name: &str| custom.iter().any(|h| h.name.eq_ignore_ascii_case(name));
    let mut request = format!("GET {path} HTTP/1.1\r\n");
    for (name, value) in [
        ("Host", authority),
        ("User-Agent", "kube-probe/1.32"),
        ("Accept", "*/*"),
    ] {
        if !overridden(name) {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    for header in custom {
        // CR or LF would let a header value smuggle another header or request.
        if header.name.contains(['\r', '\n']) || header.value.contains(['\r', '\n']) {
            continue;
        }
        request.push_str(&format!("{}: {}\r\n", header.name, header.value));
    }
    request.push_str("Connection: close\r\n\r\n");
    request
}

#[cfg(test)]
#[path = "probe_tests.rs"]
mod tests;
