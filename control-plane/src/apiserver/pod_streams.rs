//! Pod subresources that reach into a running pod through its node's stream: `log`, `exec`,
//! `attach` and `portforward`. The API server checks the pod and container, opens a tunnel to
//! the node (see `node_gateway::sessions`), and bridges it to the HTTP side (a streamed body,
//! or a WebSocket / SPDY session from `streaming`).

use bramble_api::node_protocol::{
    stream_open, AttachRequest, Channel, ExecRequest, LogRequest, PortForwardRequest,
};
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use serde_json::Value;
use tokio::sync::mpsc;

use super::http::Body;
use super::objects;
use super::request::ResourceRequest;
use super::status::ApiError;
use super::streaming::{
    self, ExecInput, ExecOutput, ExecResult, ExecStreams, Transport, EXEC_PROTOCOL_V4,
    EXEC_PROTOCOL_V5, PORT_FORWARD_SPDY_PROTOCOL, PORT_FORWARD_TUNNEL_PROTOCOL,
};
use super::{ApiServer, Ctx};
use crate::node_gateway::sessions::{NodeSessions, Tunnel, TunnelEvent};

/// A pod as the streaming subresources need it.
struct Target {
    name: String,
    uid: String,
    node: String,
    phase: String,
    pod: Value,
}

impl ApiServer {
    fn stream_target(&self, r: &ResourceRequest) -> Result<Target, ApiError> {
        let name = r.name.clone().ok_or_else(ApiError::path_not_found)?;
        let cached = self
            .cache
            .get(&objects::key(r.resource, r.namespace.as_deref(), &name))
            .ok_or_else(|| ApiError::not_found(r.resource, &name))?;
        let pod = cached.value();
        let node = cached
            .field("spec.nodeName")
            .unwrap_or_default()
            .to_string();
        if node.is_empty() {
            return Err(ApiError::bad_request(format!(
                "pod {name} is not scheduled to a node yet"
            )));
        }
        Ok(Target {
            uid: objects::meta_str(&pod, "uid")
                .unwrap_or_default()
                .to_string(),
            phase: pod
                .pointer("/status/phase")
                .and_then(Value::as_str)
                .unwrap_or("Pending")
                .to_string(),
            name,
            node,
            pod,
        })
    }

    async fn open_tunnel(
        &self,
        target: &Target,
        request: stream_open::Request,
    ) -> Result<Tunnel, ApiError> {
        self.nodes
            .open(&target.node, request)
            .await
            .map_err(|e| ApiError::bad_request(format!("cannot reach pod {}: {e}", target.name)))
    }

    /// GET pods/NAME/log: the node streams the container's log file(s).
    pub(super) async fn pod_log(
        &self,
        r: &ResourceRequest,
        ctx: &Ctx,
    ) -> Result<Response<Body>, ApiError> {
        self.fresh_cache().await?;
        let target = self.stream_target(r)?;
        let q = &ctx.query;
        let container = container_of(&target, q.get("container"))?;
        let number = |key: &str| q.number(key);
        let request = LogRequest {
            pod_uid: target.uid.clone(),
            container,
            follow: q.flag("follow"),
            previous: q.flag("previous"),
            timestamps: q.flag("timestamps"),
            tail_lines: number("tailLines")?,
            since_seconds: number("sinceSeconds")?,
            since_time: q.get("sinceTime").unwrap_or_default().to_string(),
            limit_bytes: number("limitBytes")?,
        };
        let mut tunnel = self
            .open_tunnel(&target, stream_open::Request::Logs(request))
            .await?;
        // The node answers first with (possibly empty) data once the log exists, or an error.
        let first = match tunnel.events.recv().await {
            Some(TunnelEvent::Data(_, bytes)) => bytes,
            Some(TunnelEvent::Closed { error, .. }) if !error.is_empty() => {
                return Err(ApiError::bad_request(error))
            }
            Some(TunnelEvent::Closed { .. }) => Bytes::new(),
            None => {
                return Err(ApiError::bad_request(format!(
                    "node {} went away while opening the log of pod {}",
                    target.node, target.name
                )))
            }
        };
        let (sender, events) = tunnel.split();
        let body = futures::stream::unfold(
            (Some(first), events, sender),
            |(first, mut events, sender)| async move {
                if let Some(bytes) = first {
                    return Some((Ok(Frame::data(bytes)), (None, events, sender)));
                }
                match events.recv().await {
                    Some(TunnelEvent::Data(_, bytes)) => {
                        Some((Ok(Frame::data(bytes)), (None, events, sender)))
                    }
                    _ => None,
                }
            },
        );
        let mut resp = Response::new(StreamBody::new(body).boxed());
        resp.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/plain"),
        );
        Ok(resp)
    }

    /// GET (WebSocket) pods/NAME/exec and pods/NAME/attach.
    pub(super) async fn pod_exec(
        &self,
        r: &ResourceRequest,
        ctx: &Ctx,
        req: Request<Incoming>,
        attach: bool,
    ) -> Result<Response<Body>, ApiError> {
        self.fresh_cache().await?;
        let target = self.stream_target(r)?;
        if matches!(target.phase.as_str(), "Succeeded" | "Failed") {
            return Err(ApiError::bad_request(format!(
                "cannot exec into a container in a completed pod; current phase is {}",
                target.phase
            )));
        }
        let q = &ctx.query;
        let container = container_of(&target, q.get("container"))?;
        let tty = q.flag("tty");
        let stdin = q.flag("stdin");
        let offered = streaming::websocket_protocols(req.headers()).unwrap_or_default();
        let protocol = [EXEC_PROTOCOL_V5, EXEC_PROTOCOL_V4]
            .into_iter()
            .find(|p| offered.iter().any(|o| o == p))
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "{} needs a WebSocket upgrade with subprotocol {EXEC_PROTOCOL_V5}",
                    if attach { "attach" } else { "exec" }
                ))
            })?;
        let request = if attach {
            stream_open::Request::Attach(AttachRequest {
                pod_uid: target.uid.clone(),
                container,
                stdin,
                tty,
            })
        } else {
            let command = q.all("command").to_vec();
            if command.is_empty() {
                return Err(ApiError::bad_request(
                    "you must specify at least one command for the container",
                ));
            }
            stream_open::Request::Exec(ExecRequest {
                pod_uid: target.uid.clone(),
                container,
                command,
                stdin,
                tty,
            })
        };
        let response =
            streaming::accept_websocket(req.headers(), protocol).map_err(ApiError::bad_request)?;
        let tunnel = self.open_tunnel(&target, request).await?;
        let protocol = protocol.to_string();
        tokio::spawn(async move {
            let upgraded = match hyper::upgrade::on(req).await {
                Ok(u) => u,
                Err(e) => {
                    tracing::debug!(error = %e, "exec upgrade failed");
                    return;
                }
            };
            let (input_tx, input_rx) = mpsc::channel(16);
            let (output_tx, output_rx) = mpsc::channel(16);
            let streams = ExecStreams {
                stdin: stdin.then_some(input_tx),
                output: output_rx,
            };
            let bridge = tokio::spawn(bridge_exec(tunnel, input_rx, output_tx));
            streaming::serve_exec(upgraded, &protocol, tty, streams).await;
            bridge.abort();
        });
        Ok(response)
    }

    /// pods/NAME/portforward: WebSocket-tunnelled or raw SPDY; each connection kubectl accepts
    /// becomes a tunnel to the pod's port through the node.
    pub(super) async fn pod_port_forward(
        &self,
        r: &ResourceRequest,
        req: Request<Incoming>,
    ) -> Result<Response<Body>, ApiError> {
        self.fresh_cache().await?;
        let target = self.stream_target(r)?;
        if target.phase != "Running" {
            return Err(ApiError::bad_request(format!(
                "unable to forward port because pod is not running. Current status={}",
                target.phase
            )));
        }
        let websocket = streaming::websocket_protocols(req.headers())
            .is_some_and(|p| p.iter().any(|p| p == PORT_FORWARD_TUNNEL_PROTOCOL));
        let (response, transport) = if websocket {
            let resp = streaming::accept_websocket(req.headers(), PORT_FORWARD_TUNNEL_PROTOCOL)
                .map_err(ApiError::bad_request)?;
            (resp, Transport::WebSocket)
        } else {
            let resp = streaming::accept_spdy(req.headers(), PORT_FORWARD_SPDY_PROTOCOL)
                .map_err(ApiError::bad_request)?;
            (resp, Transport::Spdy)
        };
        let nodes = self.nodes.clone();
        tokio::spawn(async move {
            let upgraded = match hyper::upgrade::on(req).await {
                Ok(u) => u,
                Err(e) => {
                    tracing::debug!(error = %e, "port-forward upgrade failed");
                    return;
                }
            };
            let target = std::sync::Arc::new(target);
            let dial = move |port: u16| {
                let nodes = nodes.clone();
                let target = target.clone();
                async move { dial_pod(&nodes, &target, port).await }
            };
            streaming::serve_port_forward_over(upgraded, transport, dial).await;
        });
        Ok(response)
    }
}

/// A byte stream to `port` of the pod, through its node.
async fn dial_pod(
    nodes: &NodeSessions,
    target: &Target,
    port: u16,
) -> Result<tokio::io::DuplexStream, String> {
    let request = stream_open::Request::PortForward(PortForwardRequest {
        pod_uid: target.uid.clone(),
        port: u32::from(port),
    });
    let mut tunnel = nodes
        .open(&target.node, request)
        .await
        .map_err(|e| e.to_string())?;
    // The node confirms the connection (empty data) or says why it failed.
    match tunnel.events.recv().await {
        Some(TunnelEvent::Data(..)) => {}
        Some(TunnelEvent::Closed { error, .. }) if !error.is_empty() => return Err(error),
        _ => return Err(format!("node {} closed the connection", target.node)),
    }
    let (ours, theirs) = tokio::io::duplex(64 * 1024);
    tokio::spawn(bridge_port(tunnel, ours));
    Ok(theirs)
}

/// Picks the container as kubectl and the kubelet do: the named one, else the only/first one.
fn container_of(target: &Target, wanted: Option<&str>) -> Result<String, ApiError> {
    let names: Vec<&str> = ["containers", "initContainers"]
        .iter()
        .flat_map(|list| {
            target.pod["spec"][*list]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|c| c["name"].as_str())
        })
        .collect();
    match wanted.filter(|w| !w.is_empty()) {
        Some(name) if names.contains(&name) => Ok(name.to_string()),
        Some(name) => Err(ApiError::bad_request(format!(
            "container {name} is not valid for pod {}",
            target.name
        ))),
        None => names
            .first()
            .map(|n| n.to_string())
            .ok_or_else(|| ApiError::bad_request(format!("pod {} has no containers", target.name))),
    }
}

/// Moves an exec session's bytes between the WebSocket side and the node.
async fn bridge_exec(
    tunnel: Tunnel,
    mut input: mpsc::Receiver<ExecInput>,
    output: mpsc::Sender<ExecOutput>,
) {
    let (sender, mut events) = tunnel.split();
    let upstream = {
        let sender = sender.clone();
        async move {
            while let Some(item) = input.recv().await {
                let sent = match item {
                    ExecInput::Stdin(bytes) => sender.send(Channel::Stdin, bytes).await,
                    ExecInput::StdinClosed => sender.close_channel(Channel::Stdin).await,
                    ExecInput::Resize { width, height } => {
                        sender
                            .send(Channel::Resize, Bytes::from(format!("{width}x{height}")))
                            .await
                    }
                };
                if !sent {
                    return;
                }
            }
            // The client went away without closing stdin: treat it as EOF.
            let _ = sender.close_channel(Channel::Stdin).await;
        }
    };
    let downstream = async {
        while let Some(event) = events.recv().await {
            let item = match event {
                TunnelEvent::Data(Channel::Stderr, bytes) => ExecOutput::Stderr(bytes),
                TunnelEvent::Data(_, bytes) => ExecOutput::Stdout(bytes),
                TunnelEvent::Closed {
                    channel: Channel::Unspecified,
                    exit_code,
                    error,
                } => {
                    let result = if !error.is_empty() {
                        ExecResult::Failure(error)
                    } else {
                        match exit_code {
                            Some(0) | None => ExecResult::Success,
                            Some(code) => ExecResult::ExitCode(code),
                        }
                    };
                    let _ = output.send(ExecOutput::Exit(result)).await;
                    return;
                }
                TunnelEvent::Closed { .. } => continue,
            };
            if output.send(item).await.is_err() {
                return;
            }
        }
    };
    tokio::select! {
        _ = downstream => {}
        _ = async { upstream.await; std::future::pending::<()>().await } => {}
    }
    drop(sender);
}

/// Moves a forwarded connection's bytes between the SPDY side and the node.
async fn bridge_port(tunnel: Tunnel, local: tokio::io::DuplexStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (sender, mut events) = tunnel.split();
    let (mut read, mut write) = tokio::io::split(local);
    let upstream = async {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match read.read(&mut buf).await {
                Ok(0) | Err(_) => {
                    let _ = sender.close_channel(Channel::Data).await;
                    return;
                }
                Ok(n) => {
                    if !sender
                        .send(Channel::Data, Bytes::copy_from_slice(&buf[..n]))
                        .await
                    {
                        return;
                    }
                }
            }
        }
    };
    let downstream = async {
        while let Some(event) = events.recv().await {
            match event {
                TunnelEvent::Data(_, bytes) => {
                    if write.write_all(&bytes).await.is_err() {
                        return;
                    }
                }
                TunnelEvent::Closed { .. } => break,
            }
        }
        let _ = write.shutdown().await;
    };
    // Both directions run until each has finished; the tunnel closes when the sender drops.
    tokio::join!(upstream, downstream);
}
