//! The node gateway: the control plane's end of the node protocol (`api/proto/node.proto`).
//!
//! Nodes reach it on the API server's port (gRPC is told apart by its content type). `Join`
//! trades a join token for a node certificate; `Connect` is each node's one stream: it
//! registers the node, keeps its Node object true, sends its desired pods, writes the pod
//! statuses it reports, and carries the tunnelled streams of logs, exec and port-forward;
//! `Precompile` compiles Wasm for nodes built without a compiler.

pub mod desired;
pub mod join;
pub mod node_status;
pub mod pod_router;
pub mod precompile;
pub mod sessions;

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bramble_api::node_protocol::node_gateway_server::NodeGateway as NodeGatewayService;
use bramble_api::node_protocol::{
    control_message, node_message, Channel, ControlMessage, JoinRequest, JoinResponse, NodeMessage,
    PodEvent, PodStatusReport, PrecompileRequest, PrecompileResponse, Registered,
};
use futures::Stream;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

use self::node_status::{NodeLiveness, MANAGER};
use self::pod_router::PodRouter;
use self::precompile::Precompiles;
use self::sessions::{NodeSessions, Session, TunnelEvent};
use crate::apiserver::auth::Identity;
use crate::apiserver::delete::DeleteOptions;
use crate::apiserver::objects;
use crate::apiserver::resources::lookup;
use crate::apiserver::ApiServer;
use crate::controllers::context::{EventRecord, EventType, InvolvedObject};
use crate::pki::Pki;

/// Timings of the gateway.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// How often nodes send heartbeats.
    pub heartbeat: Duration,
    /// A node's unchanged status is written again this often; `None` (the default) writes it
    /// only when a condition changes, so an idle cluster writes nothing to its disk.
    pub status_interval: Option<Duration>,
    /// Silence after which a node's Ready condition becomes Unknown.
    pub grace: Duration,
    /// Validity of node certificates.
    pub node_cert_days: i64,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            heartbeat: Duration::from_secs(10),
            status_interval: None,
            grace: Duration::from_secs(40),
            node_cert_days: 365,
        }
    }
}

/// The gRPC service.
pub struct NodeGateway {
    api: Arc<ApiServer>,
    pki: Arc<Pki>,
    config: GatewayConfig,
    liveness: Arc<NodeLiveness>,
    router: Arc<PodRouter>,
    precompiles: Precompiles,
}

/// The caller's verified client certificate identity, put into each gRPC request's extensions
/// by the API server's connection handler.
#[derive(Debug, Clone)]
pub struct PeerIdentity(pub Option<Identity>);

impl NodeGateway {
    /// A gateway writing through `api`, signing node certificates with `pki`, keeping modules
    /// precompiled for nodes under `precompiled_dir`.
    pub fn new(
        api: Arc<ApiServer>,
        pki: Arc<Pki>,
        config: GatewayConfig,
        precompiled_dir: std::path::PathBuf,
    ) -> Self {
        Self {
            api,
            pki,
            config,
            liveness: Arc::default(),
            router: Arc::default(),
            precompiles: Precompiles::new(precompiled_dir),
        }
    }

    /// Runs the gateway's background work until `shutdown`: routing pod changes to node feeds,
    /// and watching for silent nodes (in-memory checks only, unless one goes silent).
    pub fn spawn_monitor(&self, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
        let router = tokio::spawn(
            self.router
                .clone()
                .run(self.api.cache.clone(), shutdown.clone()),
        );
        let api = self.api.clone();
        let liveness = self.liveness.clone();
        let grace = self.config.grace;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(grace / 4);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tick.tick() => liveness.mark_silent(&api, grace).await,
                }
            }
            let _ = router.await;
        })
    }

    fn sessions(&self) -> &NodeSessions {
        &self.api.nodes
    }
}

/// The node whose client certificate made `request`; `call` names the call in the refusal.
#[allow(clippy::result_large_err)] // tonic::Status is what the gRPC handler returns anyway
fn calling_node<T>(request: &Request<T>, call: &str) -> Result<String, Status> {
    let identity = request
        .extensions()
        .get::<PeerIdentity>()
        .and_then(|p| p.0.clone())
        .ok_or_else(|| {
            Status::unauthenticated(format!(
                "{call} needs a node client certificate: run `bramble-node join` first"
            ))
        })?;
    identity.node_name().map(str::to_string).ok_or_else(|| {
        Status::permission_denied(format!("{} is not a node credential", identity.user))
    })
}

type ControlStream = Pin<Box<dyn Stream<Item = Result<ControlMessage, Status>> + Send>>;

#[tonic::async_trait]
impl NodeGatewayService for NodeGateway {
    async fn join(&self, request: Request<JoinRequest>) -> Result<Response<JoinResponse>, Status> {
        let request = request.into_inner();
        let response = join::join(&self.api, &self.pki, &request, self.config.node_cert_days)?;
        tracing::info!(node = %request.node_name, "node joined");
        Ok(Response::new(response))
    }

    type ConnectStream = ControlStream;

    async fn precompile(
        &self,
        request: Request<PrecompileRequest>,
    ) -> Result<Response<PrecompileResponse>, Status> {
        let node = calling_node(&request, "precompile")?;
        let request = request.into_inner();
        let (target, bytes) = (request.target.clone(), request.wasm.len());
        let artifact = self.precompiles.artifact(request).await.inspect_err(|e| {
            tracing::warn!(%node, %target, bytes, error = %e.message(), "precompiling for a node failed");
        })?;
        Ok(Response::new(PrecompileResponse { artifact }))
    }

    async fn connect(
        &self,
        request: Request<Streaming<NodeMessage>>,
    ) -> Result<Response<Self::ConnectStream>, Status> {
        let node = calling_node(&request, "connect")?;
        let mut inbound = request.into_inner();
        let first = inbound
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("the stream ended before Register"))?;
        let Some(node_message::Kind::Register(register)) = first.kind else {
            return Err(Status::invalid_argument(
                "the first message must be Register",
            ));
        };
        let info = register.info.unwrap_or_default();
        if info.name != node {
            return Err(Status::permission_denied(format!(
                "the credential of node {node:?} cannot register node {:?}",
                info.name
            )));
        }
        self.liveness
            .register(&self.api, &info)
            .await
            .map_err(|e| Status::internal(format!("cannot write Node {node}: {}", e.message)))?;
        let (session, outbound) = self.sessions().connect(&node);
        session
            .send(control_message::Kind::Registered(Registered {
                heartbeat_seconds: u32::try_from(self.config.heartbeat.as_secs()).unwrap_or(10),
            }))
            .await;
        tracing::info!(%node, resume = register.resume_revision, "node connected");

        let stop = self.api.shutdown.child_token();
        let feed = tokio::spawn(desired::feed(
            self.api.clone(),
            self.router.clone(),
            session.clone(),
            node.clone(),
            register.resume_revision,
            stop.clone(),
        ));
        let receiver = Receiver {
            api: self.api.clone(),
            liveness: self.liveness.clone(),
            config: self.config.clone(),
            node: node.clone(),
            session: session.clone(),
        };
        tokio::spawn(async move {
            receiver.run(&mut inbound, &stop).await;
            stop.cancel();
            let _ = feed.await;
            receiver.api.nodes.disconnect(&receiver.session);
            tracing::info!(node = %receiver.node, "node disconnected");
        });
        let stream = tokio_stream::wrappers::ReceiverStream::new(outbound);
        Ok(Response::new(Box::pin(futures::StreamExt::map(
            stream,
            Ok::<_, Status>,
        ))))
    }
}

/// Handles what one node sends.
struct Receiver {
    api: Arc<ApiServer>,
    liveness: Arc<NodeLiveness>,
    config: GatewayConfig,
    node: String,
    session: Arc<Session>,
}

impl Receiver {
    async fn run(&self, inbound: &mut Streaming<NodeMessage>, stop: &CancellationToken) {
        loop {
            let message = tokio::select! {
                _ = stop.cancelled() => return,
                message = inbound.message() => message,
            };
            let kind = match message {
                Ok(Some(NodeMessage { kind: Some(kind) })) => kind,
                Ok(Some(NodeMessage { kind: None })) => continue,
                Ok(None) => return,
                Err(status) => {
                    tracing::debug!(node = %self.node, %status, "node stream failed");
                    return;
                }
            };
            match kind {
                node_message::Kind::Register(_) => {
                    tracing::warn!(node = %self.node, "ignoring a second Register");
                }
                node_message::Kind::Heartbeat(beat) => {
                    if let Err(e) = self
                        .liveness
                        .heartbeat(
                            &self.api,
                            &self.node,
                            &beat.conditions,
                            self.config.status_interval,
                        )
                        .await
                    {
                        tracing::warn!(node = %self.node, error = %e, "cannot write node status");
                    }
                }
                node_message::Kind::PodStatus(report) => {
                    if let Err(e) = self.pod_status(report).await {
                        tracing::warn!(node = %self.node, error = %e, "cannot write pod status");
                    }
                }
                node_message::Kind::PodEvent(event) => self.pod_event(event),
                node_message::Kind::Data(data) => {
                    let channel = Channel::try_from(data.channel).unwrap_or(Channel::Unspecified);
                    self.session
                        .deliver(data.stream_id, TunnelEvent::Data(channel, data.data.into()))
                        .await;
                }
                node_message::Kind::Close(close) => {
                    let channel = Channel::try_from(close.channel).unwrap_or(Channel::Unspecified);
                    self.session
                        .deliver(
                            close.stream_id,
                            TunnelEvent::Closed {
                                channel,
                                exit_code: close.exit_code,
                                error: close.error,
                            },
                        )
                        .await;
                }
            }
        }
    }

    /// Writes a pod's status, refusing pods not bound to this node; removes the pod once the
    /// node says it stopped after a graceful delete.
    /// Records a kubelet-style Event a node reports about one of its pods; events about pods
    /// not bound to it are dropped, as its status reports would be refused.
    fn pod_event(&self, event: PodEvent) {
        let Some(pods) = lookup("", "v1", "pods") else {
            return;
        };
        let key = objects::key(pods, Some(&event.namespace), &event.pod_name);
        let Some(cached) = self.api.cache.get(&key) else {
            return;
        };
        if cached.field("spec.nodeName") != Some(self.node.as_str()) {
            tracing::debug!(node = %self.node, pod = %event.pod_name, "event about a pod bound elsewhere dropped");
            return;
        }
        let event_type = if event.r#type == "Warning" {
            EventType::Warning
        } else {
            EventType::Normal
        };
        self.api.events.record(EventRecord {
            involved: InvolvedObject {
                api_version: "v1".into(),
                kind: "Pod".into(),
                namespace: Some(event.namespace),
                name: event.pod_name,
                uid: event.pod_uid,
                resource_version: cached.revision.to_string(),
                field_path: Some(event.field_path).filter(|p| !p.is_empty()),
            },
            event_type,
            reason: event.reason,
            message: event.message,
            source: "kubelet",
            host: Some(self.node.clone()),
        });
    }

    async fn pod_status(
        &self,
        report: PodStatusReport,
    ) -> Result<(), crate::apiserver::status::ApiError> {
        use crate::apiserver::status::ApiError;
        let pods =
            lookup("", "v1", "pods").ok_or_else(|| ApiError::internal("no pods resource"))?;
        let key = objects::key(pods, Some(&report.namespace), &report.name);
        let Some(cached) = self.api.cache.get(&key) else {
            return Ok(());
        };
        let current = cached.value();
        if objects::meta_str(&current, "uid") != Some(report.uid.as_str()) {
            return Ok(());
        }
        if cached.field("spec.nodeName") != Some(self.node.as_str()) {
            return Err(ApiError::forbidden(format!(
                "node {:?} cannot report the status of pod {}/{} bound elsewhere",
                self.node, report.namespace, report.name
            )));
        }
        let status: Value = serde_json::from_slice(&report.status_json)
            .map_err(|e| ApiError::bad_request(format!("the pod status is not valid JSON: {e}")))?;
        let uid = report.uid.clone();
        let written = self
            .api
            .internal_update_status(
                pods,
                Some(&report.namespace),
                &report.name,
                MANAGER,
                |current| {
                    if objects::meta_str(current, "uid") != Some(uid.as_str()) {
                        return Err(ApiError::conflict(
                            pods,
                            &report.name,
                            "the pod was replaced",
                        ));
                    }
                    let mut next = current.clone();
                    next["status"] = status.clone();
                    Ok(next)
                },
            )
            .await;
        match written {
            Ok(_) => {}
            Err(e) if e.code == 404 || e.code == 409 => return Ok(()),
            Err(e) => return Err(e),
        }
        if report.terminated && objects::meta_str(&current, "deletionTimestamp").is_some() {
            let opts = DeleteOptions {
                grace_period: Some(0),
                uid: Some(report.uid.clone()),
                ..DeleteOptions::default()
            };
            match self
                .api
                .delete_object(pods, Some(&report.namespace), &report.name, &opts, false)
                .await
            {
                Ok(_) => {}
                Err(e) if e.code == 404 || e.code == 409 => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}
