//! The Kubernetes API server: HTTPS (rustls, HTTP/1.1 and HTTP/2), authentication, discovery,
//! OpenAPI, and the REST verbs on every resource in [`resources::RESOURCES`].
//!
//! Writes go to the [`Store`]; reads and watches are served from the [`WatchCache`] once it has
//! caught up with the store, so a client always reads its own writes.

pub mod auth;
pub mod binding;
pub mod builtin;
pub mod delete;
pub mod discovery;
pub mod http;
pub mod metrics;
pub mod objects;
pub mod openapi;
pub mod protobuf;
pub mod request;
pub mod resources;
pub mod status;
pub mod streaming;
pub mod table;
pub mod typed;

mod namespaces;
mod pod_streams;
mod read;
mod reviews;
mod subresources;
mod watch;
mod write;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ::http::{Method, Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use self::auth::{Identity, TokenAuthenticator};
use self::http::{bytes_response, error_response, json_response, Body, Output};
use self::request::{DiscoveryPath, Query, ResourceRequest, Target};
use self::status::ApiError;
use crate::store::Store;
use crate::watch_cache::WatchCache;

/// Everything a request handler needs.
pub struct ApiServer {
    /// The store writes go to.
    pub store: Arc<dyn Store>,
    /// Where Events are recorded (controllers, the scheduler, and nodes through the gateway).
    pub events: crate::controllers::events::EventRecorder,
    /// tolerationSeconds of the not-ready/unreachable tolerations added to new pods
    /// (DefaultTolerationSeconds admission).
    pub default_toleration_seconds: i64,
    /// The cache reads come from.
    pub cache: Arc<WatchCache>,
    /// Bearer tokens.
    pub tokens: TokenAuthenticator,
    /// OpenAPI v3 documents.
    pub openapi: openapi::OpenApi,
    /// host:port clients use, for legacy discovery.
    pub advertise: String,
    /// Cancelled when the server shuts down (ends watches).
    pub shutdown: CancellationToken,
    /// Wakes the namespace cleaner.
    pub namespace_work: tokio::sync::Notify,
    /// Request metrics for /metrics.
    pub metrics: metrics::Metrics,
    /// The OCI registry served under /v2/.
    pub registry: Arc<crate::registry::Registry>,
    /// Connected nodes, for logs, exec, attach and port-forward.
    pub nodes: Arc<crate::node_gateway::sessions::NodeSessions>,
    /// The cluster CA certificate, PEM, served at /cacerts for joining nodes.
    pub ca_pem: String,
}

/// The node protocol's gRPC service, served on the API port.
pub type GrpcService = bramble_api::node_protocol::node_gateway_server::NodeGatewayServer<
    crate::node_gateway::NodeGateway,
>;

/// What the connection handler answers with: the API's bodies or gRPC's.
type ServedBody = http_body_util::Either<Body, tonic::body::Body>;

/// One request's context.
pub struct Ctx {
    /// Who is calling.
    pub identity: Identity,
    /// The HTTP method.
    pub method: Method,
    /// Query parameters.
    pub query: Query,
    /// Accept header.
    pub accept: Option<String>,
    /// Content-Type header.
    pub content_type: Option<String>,
    /// User-Agent header.
    pub user_agent: Option<String>,
    /// The negotiated output.
    pub output: Output,
}

/// gRPC requests (the node protocol) are told apart from the Kubernetes API by content type.
fn is_grpc<B>(req: &Request<B>) -> bool {
    req.headers()
        .get(::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/grpc"))
}

/// Builds the rustls server config: TLS 1.2/1.3, client certificates verified against the
/// cluster CA when offered (optional, since bearer tokens are allowed too), h2 and http/1.1.
pub fn tls_config(
    ca_pem: &str,
    cert_pem: &str,
    key_pem: &str,
) -> anyhow::Result<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut ca_pem.as_bytes()) {
        roots.add(cert?)?;
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .allow_unauthenticated()
    .build()?;
    let certs: Vec<CertificateDer<'static>> =
        rustls_pemfile::certs(&mut cert_pem.as_bytes()).collect::<Result<_, _>>()?;
    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut key_pem.as_bytes())?
        .ok_or_else(|| anyhow::anyhow!("the serving key file holds no private key"))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// 401 with the Basic challenge registry clients need before they send credentials.
fn registry_challenge() -> Response<Body> {
    let mut resp = bytes_response(
        401,
        "application/json",
        r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required: use the cluster's client certificate, or basic auth with a bearer token as the password"}]}"#,
    );
    resp.headers_mut().insert(
        ::http::header::WWW_AUTHENTICATE,
        ::http::HeaderValue::from_static("Basic realm=\"bramble\""),
    );
    resp.headers_mut().insert(
        "Docker-Distribution-API-Version",
        ::http::HeaderValue::from_static("registry/2.0"),
    );
    resp
}

impl ApiServer {
    /// Accepts connections on `listener` until shutdown, then stops accepting and lets open
    /// requests finish (watches end at once: clients re-watch elsewhere or later).
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        tls: rustls::ServerConfig,
        grpc: GrpcService,
    ) -> anyhow::Result<()> {
        let acceptor = TlsAcceptor::from(Arc::new(tls));
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        loop {
            let (tcp, peer) = tokio::select! {
                _ = self.shutdown.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let server = self.clone();
            let grpc = grpc.clone();
            let watcher = graceful.watcher();
            tokio::spawn(async move {
                let tls = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp))
                    .await
                {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => return,
                };
                let cert_identity = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|chain| chain.first())
                    .and_then(Identity::from_certificate);
                let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
                    let server = server.clone();
                    let identity = cert_identity.clone();
                    let mut grpc = grpc.clone();
                    async move {
                        if is_grpc(&req) {
                            // Nodes: the gateway reads the certificate identity itself.
                            req.extensions_mut()
                                .insert(crate::node_gateway::PeerIdentity(identity));
                            let resp = match tower_service::Service::call(&mut grpc, req).await {
                                Ok(resp) => resp,
                                Err(never) => match never {},
                            };
                            return Ok::<_, std::convert::Infallible>(
                                resp.map(http_body_util::Either::Right),
                            );
                        }
                        let resp: Response<ServedBody> = server
                            .handle(req, identity, peer)
                            .await
                            .map(http_body_util::Either::Left);
                        Ok(resp)
                    }
                });
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                let conn = builder.serve_connection_with_upgrades(TokioIo::new(tls), service);
                let conn = watcher.watch(conn.into_owned());
                if let Err(e) = conn.await {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
            });
        }
        // Open connections get a short grace period; long watches would otherwise hold
        // shutdown forever.
        let _ = tokio::time::timeout(Duration::from_secs(5), graceful.shutdown()).await;
        Ok(())
    }

    async fn handle(
        &self,
        req: Request<Incoming>,
        cert_identity: Option<Identity>,
        peer: SocketAddr,
    ) -> Response<Body> {
        let started = std::time::Instant::now();
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        let resp = self
            .route(req, cert_identity)
            .await
            .unwrap_or_else(|e| error_response(&e));
        self.metrics
            .observe(method.as_str(), resp.status().as_u16(), started.elapsed());
        tracing::debug!(%peer, %method, %path, status = resp.status().as_u16(), elapsed_us = started.elapsed().as_micros() as u64, "request");
        resp
    }

    async fn route(
        &self,
        req: Request<Incoming>,
        cert_identity: Option<Identity>,
    ) -> Result<Response<Body>, ApiError> {
        let path = req.uri().path().to_string();
        let header = |name: ::http::header::HeaderName| {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let accept = header(::http::header::ACCEPT);
        if auth::is_public_path(&path) {
            return Ok(match path.as_str() {
                "/version" => json_response(200, &discovery::version()),
                "/cacerts" => bytes_response(200, "application/x-pem-file", self.ca_pem.clone()),
                _ => bytes_response(200, "text/plain; charset=utf-8", "ok"),
            });
        }
        let identity = cert_identity.or_else(|| {
            header(::http::header::AUTHORIZATION).and_then(|a| self.tokens.authenticate(&a))
        });
        if path == "/v2" || path.starts_with("/v2/") {
            // The registry streams its own bodies (no API body limit) and answers in the OCI
            // distribution spec's terms. Only the cluster admin may push.
            return Ok(match identity {
                Some(id) => self.registry.handle(req, id.is_admin()).await,
                None => registry_challenge(),
            });
        }
        let identity = identity.ok_or_else(ApiError::unauthorized)?;

        if path == "/metrics" {
            let body = self
                .metrics
                .render(self.store.current_revision(), self.cache.len());
            return Ok(bytes_response(200, "text/plain; version=0.0.4", body));
        }
        if let Some(rest) = path.strip_prefix("/openapi/") {
            return Ok(self.openapi_response(rest));
        }
        let target = match request::parse_path(&path) {
            Some(t) => t?,
            None => return Err(ApiError::path_not_found()),
        };
        let ctx = Ctx {
            identity,
            method: req.method().clone(),
            query: Query::parse(req.uri().query()),
            output: Output::negotiate(accept.as_deref()),
            content_type: header(::http::header::CONTENT_TYPE),
            user_agent: header(::http::header::USER_AGENT),
            accept,
        };
        match target {
            Target::Discovery(d) => self.discovery(d, &ctx),
            Target::Resource(r) => {
                if !ctx.identity.is_admin() {
                    return Err(ApiError::forbidden(format!(
                        "User \"{}\" cannot {} resource \"{}\" in API group \"{}\"",
                        ctx.identity.user,
                        ctx.method.as_str().to_lowercase(),
                        r.resource.plural,
                        r.resource.group
                    )));
                }
                let pod_sub = (r.resource.kind == "Pod")
                    .then_some(r.subresource.as_deref())
                    .flatten();
                match pod_sub {
                    Some("exec") => self.pod_exec(&r, &ctx, req, false).await,
                    Some("attach") => self.pod_exec(&r, &ctx, req, true).await,
                    Some("portforward") => self.pod_port_forward(&r, req).await,
                    Some("log") if ctx.method == Method::GET => self.pod_log(&r, &ctx).await,
                    _ => self.resource(r, ctx, req.into_body()).await,
                }
            }
        }
    }

    fn openapi_response(&self, rest: &str) -> Response<Body> {
        match rest {
            "v3" | "v3/" => bytes_response(200, "application/json", self.openapi.index().to_vec()),
            _ => match rest
                .strip_prefix("v3/")
                .and_then(|gv| self.openapi.document(gv))
            {
                Some(doc) => bytes_response(200, "application/json", doc.to_vec()),
                // /openapi/v2 is deliberately absent: kubectl then uses its built-in types.
                None => error_response(&ApiError::path_not_found()),
            },
        }
    }

    fn discovery(&self, d: DiscoveryPath, ctx: &Ctx) -> Result<Response<Body>, ApiError> {
        let aggregated = ctx
            .accept
            .as_deref()
            .and_then(discovery::Aggregated::negotiate);
        let doc = match (&d, aggregated) {
            (DiscoveryPath::Api, Some(v)) => {
                return Ok(bytes_response(
                    200,
                    v.content_type(),
                    serde_json::to_vec(&discovery::aggregated(v, true)).unwrap_or_default(),
                ))
            }
            (DiscoveryPath::Apis, Some(v)) => {
                return Ok(bytes_response(
                    200,
                    v.content_type(),
                    serde_json::to_vec(&discovery::aggregated(v, false)).unwrap_or_default(),
                ))
            }
            (DiscoveryPath::Api, None) => discovery::api_versions(&self.advertise),
            (DiscoveryPath::Apis, None) => discovery::api_group_list(),
            (DiscoveryPath::Group(g), _) => {
                discovery::api_group_document(g).ok_or_else(ApiError::path_not_found)?
            }
            (DiscoveryPath::GroupVersion { group, version }, _) => {
                discovery::api_resource_list(group, version).ok_or_else(ApiError::path_not_found)?
            }
        };
        Ok(json_response(200, &doc))
    }

    async fn resource(
        &self,
        r: ResourceRequest,
        ctx: Ctx,
        body: Incoming,
    ) -> Result<Response<Body>, ApiError> {
        let res = r.resource;
        if res.create_only {
            return match (ctx.method.clone(), r.name.is_none()) {
                (Method::POST, true) => {
                    let bytes = http::read_body(body).await?;
                    reviews::create(&r, &ctx, &bytes)
                }
                _ => Err(ApiError::method_not_supported(res, ctx.method.as_str())),
            };
        }
        if let Some(sub) = r.subresource.clone() {
            return self.subresource(&r, &sub, ctx, body).await;
        }
        match (ctx.method.clone(), r.name.is_some()) {
            (Method::GET, true) => self.get(&r, &ctx).await,
            (Method::GET, false) if ctx.query.flag("watch") => self.watch(&r, &ctx).await,
            (Method::GET, false) => self.list(&r, &ctx).await,
            (Method::POST, false) => {
                let bytes = http::read_body(body).await?;
                self.create(&r, &ctx, &bytes).await
            }
            (Method::PUT, true) => {
                let bytes = http::read_body(body).await?;
                self.replace(&r, &ctx, &bytes, None).await
            }
            (Method::PATCH, true) => {
                let bytes = http::read_body(body).await?;
                self.patch(&r, &ctx, &bytes, None).await
            }
            (Method::DELETE, true) => {
                let bytes = http::read_body(body).await?;
                self.delete(&r, &ctx, &bytes).await
            }
            (Method::DELETE, false) => {
                let bytes = http::read_body(body).await?;
                self.delete_collection(&r, &ctx, &bytes).await
            }
            (m, _) => Err(ApiError::method_not_supported(res, m.as_str())),
        }
    }

    /// Waits until the cache holds every write acknowledged so far (a consistent read).
    async fn fresh_cache(&self) -> Result<(), ApiError> {
        let target = self.store.current_revision();
        if self.cache.wait_for(target, Duration::from_secs(10)).await {
            Ok(())
        } else {
            Err(ApiError::unavailable(
                "the watch cache is not yet in step with the store; try again",
            ))
        }
    }
}
