//! Test harness: the registry behind a plain hyper server on 127.0.0.1, and a client for it.
//!
//! `x-test-push: 1` on a request stands in for the caller's authentication granting push.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use futures::future::BoxFuture;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};
use tokio::net::TcpListener;

use super::manifest::OCI_MANIFEST;
use super::names::{Algorithm, Digest};
use super::{Body, Registry, RegistryConfig};

/// Serves requests with a handler until dropped.
pub(super) struct TestServer {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type Handler = Arc<dyn Fn(Request<Incoming>) -> BoxFuture<'static, Response<Body>> + Send + Sync>;

impl TestServer {
    pub async fn start(handler: Handler) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                let handler = Arc::clone(&handler);
                connections.spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        let handler = Arc::clone(&handler);
                        async move { Ok::<_, Infallible>(handler(request).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(Self { addr, task })
    }

    /// A server in front of `registry`.
    pub async fn registry(registry: Arc<Registry>) -> Result<Self> {
        Self::start(Arc::new(move |request: Request<Incoming>| {
            let registry = Arc::clone(&registry);
            Box::pin(async move {
                let can_push = request.headers().contains_key("x-test-push");
                registry.handle(request, can_push).await
            })
        }))
        .await
    }
}

/// A registry on a fresh directory with its server and an HTTP client.
pub(super) struct Fixture {
    pub dir: tempfile::TempDir,
    pub registry: Arc<Registry>,
    pub server: TestServer,
    client: Client<HttpConnector, Body>,
}

/// A response, fully read.
pub(super) struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    pub fn json(&self) -> Result<Value> {
        serde_json::from_slice(&self.body).context("response body is JSON")
    }

    /// The spec error code of an error response.
    pub fn code(&self) -> Option<String> {
        self.json().ok()?["errors"][0]["code"]
            .as_str()
            .map(str::to_owned)
    }
}

impl Fixture {
    pub async fn new() -> Result<Self> {
        let dir = tempfile::tempdir()?;
        Self::with_config(dir, |_| {}).await
    }

    pub async fn with_config(
        dir: tempfile::TempDir,
        adjust: impl FnOnce(&mut RegistryConfig),
    ) -> Result<Self> {
        let mut config = RegistryConfig::new(dir.path().join("registry"));
        adjust(&mut config);
        let registry = Arc::new(Registry::open(config)?);
        let server = TestServer::registry(Arc::clone(&registry)).await?;
        let client = Client::builder(TokioExecutor::new()).build(HttpConnector::new());
        Ok(Self {
            dir,
            registry,
            server,
            client,
        })
    }

    /// Sends a request with push rights.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Body,
    ) -> Result<Reply> {
        self.send_as(true, method, path, headers, body).await
    }

    pub async fn send_as(
        &self,
        can_push: bool,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Body,
    ) -> Result<Reply> {
        let mut request = Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.server.addr));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if can_push {
            request = request.header("x-test-push", "1");
        }
        let response = self.client.request(request.body(body)?).await?;
        let (parts, body) = response.into_parts();
        Ok(Reply {
            status: parts.status,
            headers: parts.headers,
            body: body.collect().await?.to_bytes(),
        })
    }

    pub async fn get(&self, path: &str) -> Result<Reply> {
        self.send(Method::GET, path, &[], bytes(Vec::new())).await
    }

    pub async fn get_range(&self, path: &str, range: &str) -> Result<Reply> {
        self.send(Method::GET, path, &[("range", range)], bytes(Vec::new()))
            .await
    }

    pub async fn delete(&self, path: &str) -> Result<Reply> {
        self.send(Method::DELETE, path, &[], bytes(Vec::new()))
            .await
    }

    /// Pushes a blob in one POST and checks it was created.
    pub async fn push_blob(&self, name: &str, data: &[u8]) -> Result<Digest> {
        let digest = Digest::of(Algorithm::Sha256, data);
        let reply = self
            .send(
                Method::POST,
                &format!("/v2/{name}/blobs/uploads/?digest={digest}"),
                &[],
                bytes(data.to_vec()),
            )
            .await?;
        if reply.status != StatusCode::CREATED {
            bail!("pushing blob failed: {} {:?}", reply.status, reply.body);
        }
        Ok(digest)
    }

    /// Pushes a manifest by tag or digest.
    pub async fn put_manifest(
        &self,
        name: &str,
        reference: &str,
        media_type: &str,
        manifest: &Value,
    ) -> Result<Reply> {
        self.send(
            Method::PUT,
            &format!("/v2/{name}/manifests/{reference}"),
            &[("content-type", media_type)],
            bytes(serde_json::to_vec(manifest)?),
        )
        .await
    }

    /// Pushes a Wasm artifact (config, one layer, manifest under `tag`); returns the manifest.
    pub async fn push_wasm(&self, name: &str, tag: &str, module: &[u8]) -> Result<(Value, Digest)> {
        let config = self.push_blob(name, b"{}").await?;
        let layer = self.push_blob(name, module).await?;
        let manifest = wasm_manifest(&config, 2, &layer, module.len());
        let reply = self
            .put_manifest(name, tag, OCI_MANIFEST, &manifest)
            .await?;
        if reply.status != StatusCode::CREATED {
            bail!("pushing manifest failed: {} {:?}", reply.status, reply.body);
        }
        let digest = Digest::parse(
            reply
                .header("docker-content-digest")
                .context("digest header")?,
        )?;
        Ok((manifest, digest))
    }

    /// Files below the storage root's `dir`, recursively.
    pub fn files_under(&self, dir: &str) -> Vec<std::path::PathBuf> {
        fn walk(path: &std::path::Path, found: &mut Vec<std::path::PathBuf>) {
            let Ok(entries) = std::fs::read_dir(path) else {
                return;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                if path.is_dir() {
                    walk(&path, found);
                } else {
                    found.push(path);
                }
            }
        }
        let mut found = Vec::new();
        walk(&self.dir.path().join("registry").join(dir), &mut found);
        found
    }
}

pub(super) fn bytes(data: impl Into<Bytes>) -> Body {
    Full::new(data.into()).boxed()
}

/// A body sent with chunked encoding (no Content-Length), in pieces.
pub(super) fn chunked(pieces: Vec<Vec<u8>>) -> Body {
    let frames = pieces
        .into_iter()
        .map(|piece| Ok::<_, Infallible>(Frame::data(Bytes::from(piece))));
    StreamBody::new(futures::stream::iter(frames)).boxed()
}

pub(super) fn wasm_manifest(
    config: &Digest,
    config_size: usize,
    layer: &Digest,
    layer_size: usize,
) -> Value {
    json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": { "mediaType": "application/vnd.wasm.config.v0+json", "digest": config.to_string(), "size": config_size },
        "layers": [ { "mediaType": "application/wasm", "digest": layer.to_string(), "size": layer_size } ]
    })
}
