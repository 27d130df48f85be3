//! Serving a `wasi:http/proxy` component on a TCP port: an HTTP/1.1 server (hyper) that gives
//! every request a fresh store, instantiated from the program's pre-instantiation.
//!
//! The sandbox spec's limits apply to each request (memory cap, CPU share and budget, wall
//! timeout); [`HttpOptions::max_concurrent`] bounds how many run at once, so the pod as a whole
//! uses at most that many times the per-request limits. All requests share the spec's stdout
//! and stderr sinks.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::WasiHttpView;

use crate::engine::WasmEngine;
use crate::exit::{classify, ExitReason};
use crate::guest::{new_store, Guard, KillHandle, P2State};
use crate::instance::{supervise, Program};
use crate::output::{self, OutputPipe};
use crate::sandbox::{SandboxError, SandboxSpec};

/// Why a component could not be served.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The program does not export `wasi:http/incoming-handler`.
    #[error("wasm binary {digest:?} is not a wasi:http proxy component")]
    NotAProxy {
        /// The program's digest.
        digest: crate::digest::Digest,
    },
    /// The spec cannot be turned into a sandbox.
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
}

/// Server settings beyond the sandbox spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpOptions {
    /// Requests handled at once; more wait for a slot.
    pub max_concurrent: usize,
}

impl Default for HttpOptions {
    fn default() -> Self {
        Self { max_concurrent: 16 }
    }
}

/// What a server did, returned when it stops.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct HttpSummary {
    /// Requests a guest was started for.
    pub requests: u64,
    /// Requests whose guest ended with anything but success.
    pub failed: u64,
}

struct Server {
    engine: WasmEngine,
    proxy: ProxyPre<P2State>,
    spec: SandboxSpec,
    stdout: OutputPipe,
    stderr: OutputPipe,
    slots: Arc<Semaphore>,
    /// Parent of every request's kill handle.
    kill_all: KillHandle,
    requests: AtomicU64,
    failed: AtomicU64,
}

/// Serves `program` on `listener` until `shutdown` is cancelled, then lets open connections
/// finish their current request, stops guests still running, and returns once their output
/// reached the sinks. Without a per-request `wall_timeout` a guest that never finishes its
/// response keeps the server waiting: wrap the call in a timeout for a bounded grace period.
pub async fn serve(
    engine: WasmEngine,
    program: Program,
    mut spec: SandboxSpec,
    options: HttpOptions,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<HttpSummary, HttpError> {
    spec.validate()?;
    let proxy = program.proxy().cloned().ok_or(HttpError::NotAProxy {
        digest: *program.digest(),
    })?;
    let sink = |sink: Option<output::Sink>| sink.unwrap_or_else(|| Box::new(std::io::sink()));
    let (stdout, out_pump) = output::pipe(sink(spec.stdout.take()), spec.output_buffer);
    let (stderr, err_pump) = output::pipe(sink(spec.stderr.take()), spec.output_buffer);
    let server = Arc::new(Server {
        engine,
        proxy,
        spec,
        stdout,
        stderr,
        slots: Arc::new(Semaphore::new(options.max_concurrent.max(1))),
        kill_all: KillHandle::new(),
        requests: AtomicU64::new(0),
        failed: AtomicU64::new(0),
    });
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let server = Arc::clone(&server);
                    let service = hyper::service::service_fn(move |request| {
                        let server = Arc::clone(&server);
                        async move { Ok::<_, Infallible>(server.handle(request).await) }
                    });
                    let connection = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service);
                    let connection = graceful.watch(connection);
                    connections.spawn(async move {
                        if let Err(err) = connection.await {
                            tracing::debug!(%peer, error = %err, "http connection ended with an error");
                        }
                    });
                }
                Err(err) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    tracing::warn!(error = %err, "accepting an http connection failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    graceful.shutdown().await;
    while connections.join_next().await.is_some() {}
    // Every response is complete; guests still running after theirs are stopped.
    server.kill_all.kill();
    let summary = HttpSummary {
        requests: server.requests.load(Ordering::Relaxed),
        failed: server.failed.load(Ordering::Relaxed),
    };
    drop(server);
    out_pump.finish().await;
    err_pump.finish().await;
    Ok(summary)
}

impl Server {
    async fn handle(
        self: Arc<Self>,
        request: hyper::Request<Incoming>,
    ) -> hyper::Response<HyperOutgoingBody> {
        let Ok(slot) = Arc::clone(&self.slots).acquire_owned().await else {
            return plain(503, "server is shutting down");
        };
        let wasi = match self
            .spec
            .wasi_builder(self.stdout.clone(), self.stderr.clone())
        {
            Ok(mut wasi) => wasi.build(),
            Err(err) => {
                tracing::warn!(error = %err, "building the sandbox for a request failed");
                return plain(500, "sandbox setup failed");
            }
        };
        let kill = self.kill_all.child();
        let guard = Guard::new(
            &self.spec.limits,
            self.engine.settings().epoch_tick,
            kill.clone(),
        );
        let mut store = new_store(self.engine.engine(), P2State::new(wasi, guard));
        let (sender, receiver) = oneshot::channel();
        let mut http = store.data_mut().http();
        let incoming = match http.new_incoming_request(Scheme::Http, request) {
            Ok(incoming) => incoming,
            Err(err) => return plain(400, &format!("bad request: {err}")),
        };
        let Ok(outparam) = http.new_response_outparam(sender) else {
            return plain(500, "response setup failed");
        };
        self.requests.fetch_add(1, Ordering::Relaxed);
        let server = Arc::clone(&self);
        // The guest keeps running after it sent the response head, to stream the body.
        let task = tokio::spawn(async move {
            let _slot = slot;
            let _active = server.engine.enter();
            let call = async {
                let proxy = server.proxy.instantiate_async(&mut store).await?;
                proxy
                    .wasi_http_incoming_handler()
                    .call_handle(&mut store, incoming, outparam)
                    .await?;
                Ok(0)
            };
            let ended = supervise(call, &kill, server.spec.limits.wall_timeout).await;
            let (_, reason) = classify(ended, &store.data().guard);
            if reason != ExitReason::Completed {
                server.failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(?reason, "http guest failed");
            }
            reason
        });
        match receiver.await {
            Ok(Ok(response)) => response,
            Ok(Err(code)) => plain(502, &format!("guest answered with error {code:?}")),
            // The guest ended without answering: say why.
            Err(_) => match task.await {
                Ok(ExitReason::DeadlineExceeded) => plain(504, "guest timed out"),
                Ok(ExitReason::OOMKilled) => plain(503, "guest ran out of memory"),
                Ok(reason) => plain(500, &format!("guest sent no response: {reason:?}")),
                Err(_) => plain(500, "guest task failed"),
            },
        }
    }
}

/// A short text response for failures the guest could not answer itself.
fn plain(status: u16, text: &str) -> hyper::Response<HyperOutgoingBody> {
    let body = Full::new(Bytes::from(format!("{text}\n")))
        .map_err(|never: Infallible| match never {})
        .boxed_unsync();
    let mut response = hyper::Response::new(body);
    *response.status_mut() =
        http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn failure_responses_are_plain_text_with_the_status() {
        let response = plain(504, "guest timed out");
        assert_eq!(response.status(), 504);
        assert_eq!(
            response.headers().get("content-type").map(|v| v.as_bytes()),
            Some(&b"text/plain"[..])
        );
        let body = response.into_body().collect().await.map(|b| b.to_bytes());
        assert!(matches!(body, Ok(bytes) if bytes == "guest timed out\n"));
        assert_eq!(plain(1000, "x").status(), 500);
    }
}
