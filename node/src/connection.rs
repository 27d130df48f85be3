//! The node's one outbound stream to the control plane: dial (TLS with the node certificate),
//! register, then apply what arrives and send what the agent reports, reconnecting with
//! back-off for as long as the agent runs. Pods never wait for this: the agent runs them from
//! its own disk while the control plane is away.

use std::sync::Arc;
use std::time::Duration;

use bramble_api::node_protocol::node_gateway_client::NodeGatewayClient;
use bramble_api::node_protocol::{control_message, node_message, Heartbeat, NodeMessage, Register};
use hyper_util::rt::TokioIo;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Endpoint};

use crate::agent::Agent;
use crate::credentials::{server_name, Credentials};

/// Largest precompiled module the node accepts from the control plane.
const MAX_ARTIFACT_BYTES: usize = 256 << 20;

/// Longest wait between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// A gRPC channel to the control plane over rustls.
pub async fn channel(credentials: &Credentials) -> Result<Channel, String> {
    let tls = Arc::new(credentials.tls_config().map_err(|e| e.to_string())?);
    let authority = credentials.authority().to_string();
    let name = server_name(&authority)?;
    // The connector below does TLS itself (rustls with the cluster CA and the node
    // certificate); the URI says http so tonic never layers a TLS of its own on top, whatever
    // tonic features other crates in the build turn on.
    let endpoint = Endpoint::from_shared(format!("http://{authority}"))
        .map_err(|e| format!("{authority:?} is not a valid server address: {e}"))?
        .connect_timeout(Duration::from_secs(10))
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(20));
    endpoint
        .connect_with_connector(tower::service_fn(move |_uri| {
            let tls = tls.clone();
            let authority = authority.clone();
            let name = name.clone();
            async move {
                let tcp = tokio::net::TcpStream::connect(&authority).await?;
                tcp.set_nodelay(true)?;
                let stream = tokio_rustls::TlsConnector::from(tls)
                    .connect(name, tcp)
                    .await?;
                Ok::<_, std::io::Error>(TokioIo::new(stream))
            }
        }))
        .await
        .map_err(|e| format!("cannot connect: {e}"))
}

/// Keeps the node connected until `shutdown`.
pub async fn run(agent: Arc<Agent>, credentials: Credentials, shutdown: CancellationToken) {
    let mut backoff = Duration::from_secs(1);
    loop {
        let started = std::time::Instant::now();
        match session(&agent, &credentials, &shutdown).await {
            Ok(()) => tracing::info!("control plane stream closed"),
            Err(e) => {
                tracing::warn!(server = %credentials.server, error = %e, "control plane unreachable; pods keep running")
            }
        }
        agent.detach_uplink();
        if shutdown.is_cancelled() {
            return;
        }
        if started.elapsed() > MAX_BACKOFF {
            backoff = Duration::from_secs(1);
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

async fn session(
    agent: &Arc<Agent>,
    credentials: &Credentials,
    shutdown: &CancellationToken,
) -> Result<(), String> {
    let channel = channel(credentials).await?;
    let mut client = NodeGatewayClient::new(channel)
        // Precompiled modules can exceed gRPC's 4 MiB default.
        .max_decoding_message_size(MAX_ARTIFACT_BYTES);
    agent.attach_gateway(client.clone());
    let (tx, rx) = mpsc::channel::<NodeMessage>(256);
    let register = NodeMessage {
        kind: Some(node_message::Kind::Register(Register {
            info: Some(agent.node_info()),
            resume_revision: agent.revision(),
        })),
    };
    tx.send(register).await.map_err(|e| e.to_string())?;
    let response = client
        .connect(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .map_err(|status| format!("the control plane refused the stream: {}", status.message()))?;
    let mut inbound = response.into_inner();
    tracing::info!(server = %credentials.server, "connected to the control plane");
    let mut heartbeat = tokio::time::interval(Duration::from_secs(10));
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let message = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = heartbeat.tick() => {
                let beat = NodeMessage { kind: Some(node_message::Kind::Heartbeat(Heartbeat { conditions: agent.conditions() })) };
                if tx.send(beat).await.is_err() {
                    return Err("the stream closed".into());
                }
                continue;
            }
            message = inbound.message() => message,
        };
        let Some(message) = message.map_err(|s| s.message().to_string())? else {
            return Ok(());
        };
        let Some(kind) = message.kind else { continue };
        match kind {
            control_message::Kind::Registered(registered) => {
                let every = Duration::from_secs(u64::from(registered.heartbeat_seconds.max(1)));
                heartbeat = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
                heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                // Everything the control plane may have missed goes up first.
                agent.attach_uplink(tx.clone());
            }
            control_message::Kind::Snapshot(snapshot) => agent.apply_snapshot(snapshot),
            control_message::Kind::Resume(changes) => agent.apply_changes(changes),
            control_message::Kind::Change(change) => agent.apply_change(change),
            control_message::Kind::Open(open) => agent.open_stream(open, tx.clone()),
            control_message::Kind::Data(data) => agent.stream_data(data).await,
            control_message::Kind::Close(close) => agent.stream_close(close).await,
        }
    }
}
