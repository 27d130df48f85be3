//! Pull-through mirror tests against a second in-process registry acting as upstream.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use anyhow::Result;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::manifest::OCI_MANIFEST;
use super::names::{Algorithm, Digest};
use super::test_support::{bytes, Fixture, TestServer};
use super::{Body, Mirror, Registry, RegistryConfig, UpstreamCredentials};

/// A registry mirroring `hub/…` from the upstream at `address`.
async fn mirror_of(
    address: std::net::SocketAddr,
    credentials: Option<UpstreamCredentials>,
) -> Result<Fixture> {
    let dir = tempfile::tempdir()?;
    Fixture::with_config(dir, |config| {
        config.mirrors = vec![Mirror {
            prefix: "hub".into(),
            upstream: format!("http://{address}"),
            upstream_prefix: String::new(),
            insecure_plain_http: true,
            credentials,
        }];
    })
    .await
}

#[tokio::test]
async fn mirror_pulls_through_and_serves_the_cache_when_upstream_is_gone() -> Result<()> {
    let upstream = Fixture::new().await?;
    let module = b"\0asm\x01\0\0\0 mirrored".to_vec();
    let (manifest, digest) = upstream.push_wasm("library/app", "v1", &module).await?;
    let extra = upstream.push_blob("library/app", b"never pulled").await?;
    let mirror = mirror_of(upstream.server.addr, None).await?;

    let pulled = mirror.get("/v2/hub/library/app/manifests/v1").await?;
    assert_eq!(pulled.status, StatusCode::OK, "{:?}", pulled.body);
    assert_eq!(pulled.body, serde_json::to_vec(&manifest)?);
    assert_eq!(pulled.header("content-type"), Some(OCI_MANIFEST));
    assert_eq!(
        pulled.header("docker-content-digest"),
        Some(digest.to_string().as_str())
    );
    let layer = Digest::of(Algorithm::Sha256, &module);
    let blob = mirror
        .get(&format!("/v2/hub/library/app/blobs/{layer}"))
        .await?;
    assert_eq!(blob.status, StatusCode::OK);
    assert_eq!(blob.body, module);
    let ranged = mirror
        .send(
            Method::GET,
            &format!("/v2/hub/library/app/blobs/{layer}"),
            &[("range", "bytes=0-3")],
            bytes(Vec::new()),
        )
        .await?;
    assert_eq!(ranged.body, &b"\0asm"[..]);

    drop(upstream);
    let cached = mirror.get("/v2/hub/library/app/manifests/v1").await?;
    assert_eq!(cached.status, StatusCode::OK);
    assert_eq!(
        cached.header("docker-content-digest"),
        Some(digest.to_string().as_str())
    );
    assert_eq!(
        mirror
            .get(&format!("/v2/hub/library/app/blobs/{layer}"))
            .await?
            .body,
        module
    );
    let unreachable = mirror
        .get(&format!("/v2/hub/library/app/blobs/{extra}"))
        .await?;
    assert_eq!(unreachable.status, StatusCode::BAD_GATEWAY);
    Ok(())
}

#[tokio::test]
async fn mirrored_tags_follow_upstream() -> Result<()> {
    let upstream = Fixture::new().await?;
    let (_, first) = upstream.push_wasm("app", "stable", b"one").await?;
    let mirror = mirror_of(upstream.server.addr, None).await?;
    let reply = mirror.get("/v2/hub/app/manifests/stable").await?;
    assert_eq!(
        reply.header("docker-content-digest"),
        Some(first.to_string().as_str())
    );
    let (_, second) = upstream.push_wasm("app", "stable", b"two").await?;
    assert_ne!(first, second);
    let reply = mirror.get("/v2/hub/app/manifests/stable").await?;
    assert_eq!(
        reply.header("docker-content-digest"),
        Some(second.to_string().as_str())
    );
    // Digests already pulled stay available by digest.
    assert_eq!(
        mirror
            .get(&format!("/v2/hub/app/manifests/{first}"))
            .await?
            .status,
        StatusCode::OK
    );
    let missing = mirror.get("/v2/hub/app/manifests/nope").await?;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.code().as_deref(), Some("MANIFEST_UNKNOWN"));
    Ok(())
}

#[tokio::test]
async fn mirrored_repositories_are_read_only_and_others_are_local() -> Result<()> {
    let upstream = Fixture::new().await?;
    let mirror = mirror_of(upstream.server.addr, None).await?;
    let reply = mirror
        .send(
            Method::POST,
            "/v2/hub/app/blobs/uploads/",
            &[],
            bytes(Vec::new()),
        )
        .await?;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(reply.code().as_deref(), Some("DENIED"));
    mirror.push_wasm("local/app", "v1", b"local").await?;
    assert_eq!(
        upstream.get("/v2/local/app/manifests/v1").await?.status,
        StatusCode::NOT_FOUND
    );
    Ok(())
}

/// An upstream that serves `registry` but corrupts every blob body.
async fn corrupting_upstream(registry: Arc<Registry>) -> Result<TestServer> {
    TestServer::start(Arc::new(move |request: Request<Incoming>| {
        let registry = Arc::clone(&registry);
        Box::pin(async move {
            let is_blob = request.uri().path().contains("/blobs/");
            let response = registry.handle(request, false).await;
            if !is_blob {
                return response;
            }
            let (parts, body) = response.into_parts();
            let mut data = body
                .collect()
                .await
                .map(|c| c.to_bytes().to_vec())
                .unwrap_or_default();
            if let Some(first) = data.first_mut() {
                *first ^= 0xff;
            }
            Response::from_parts(parts, bytes(data))
        })
    }))
    .await
}

#[tokio::test]
async fn corrupt_upstream_content_is_not_stored() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let origin = Arc::new(Registry::open(RegistryConfig::new(
        dir.path().join("origin"),
    ))?);
    let seeding = TestServer::registry(Arc::clone(&origin)).await?;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build(hyper_util::client::legacy::connect::HttpConnector::new());
    let data = b"precious layer".to_vec();
    let digest = Digest::of(Algorithm::Sha256, &data);
    let request = Request::post(format!(
        "http://{}/v2/app/blobs/uploads/?digest={digest}",
        seeding.addr
    ))
    .header("x-test-push", "1")
    .body(bytes(data))?;
    assert_eq!(client.request(request).await?.status(), StatusCode::CREATED);
    let upstream = corrupting_upstream(origin).await?;
    let mirror = mirror_of(upstream.addr, None).await?;
    let reply = mirror.get(&format!("/v2/hub/app/blobs/{digest}")).await?;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY);
    assert!(mirror.files_under("blobs").is_empty());
    Ok(())
}

/// An upstream requiring a bearer token from its own token endpoint, issued for basic
/// credentials `user:secret`; counts token requests.
async fn token_upstream(registry: Arc<Registry>, issued: Arc<AtomicUsize>) -> Result<TestServer> {
    TestServer::start(Arc::new(move |request: Request<Incoming>| {
        let registry = Arc::clone(&registry);
        let issued = Arc::clone(&issued);
        Box::pin(async move {
            let auth = request
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            if request.uri().path() == "/token" {
                let query = request.uri().query().unwrap_or_default();
                if auth != "Basic dXNlcjpzZWNyZXQ=" || !query.contains("scope=repository%3Aapp%3Apull") {
                    return status(StatusCode::FORBIDDEN);
                }
                issued.fetch_add(1, Ordering::SeqCst);
                return Response::new(bytes(r#"{"token":"tok-123","expires_in":300}"#));
            }
            if auth != "Bearer tok-123" {
                let host = request
                    .headers()
                    .get(header::HOST)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                let mut response = status(StatusCode::UNAUTHORIZED);
                let challenge = format!(
                    r#"Bearer realm="http://{host}/token",service="test",scope="repository:app:pull""#
                );
                if let Ok(value) = challenge.parse() {
                    response.headers_mut().insert(header::WWW_AUTHENTICATE, value);
                }
                return response;
            }
            registry.handle(request, false).await
        })
    }))
    .await
}

fn status(code: StatusCode) -> Response<Body> {
    let mut response = Response::new(bytes(Vec::new()));
    *response.status_mut() = code;
    response
}

#[tokio::test]
async fn mirror_authenticates_with_bearer_tokens() -> Result<()> {
    let origin_fixture = Fixture::new().await?;
    let (_, digest) = origin_fixture
        .push_wasm("app", "v1", b"secret module")
        .await?;
    let issued = Arc::new(AtomicUsize::new(0));
    let upstream =
        token_upstream(Arc::clone(&origin_fixture.registry), Arc::clone(&issued)).await?;
    let credentials = UpstreamCredentials {
        username: "user".into(),
        password: "secret".into(),
    };
    let mirror = mirror_of(upstream.addr, Some(credentials)).await?;
    let reply = mirror.get("/v2/hub/app/manifests/v1").await?;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    assert_eq!(
        reply.header("docker-content-digest"),
        Some(digest.to_string().as_str())
    );
    let layer = Digest::of(Algorithm::Sha256, b"secret module");
    assert_eq!(
        mirror
            .get(&format!("/v2/hub/app/blobs/{layer}"))
            .await?
            .body,
        &b"secret module"[..]
    );
    assert_eq!(
        issued.load(Ordering::SeqCst),
        1,
        "the token is cached per scope"
    );

    let anonymous = mirror_of(upstream.addr, None).await?;
    let refused = anonymous.get("/v2/hub/app/manifests/v1").await?;
    assert_eq!(refused.status, StatusCode::BAD_GATEWAY);
    Ok(())
}
