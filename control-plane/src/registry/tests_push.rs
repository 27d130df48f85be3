//! In-process HTTP tests of pushes: uploads, integrity checks, validation, manifests.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result};
use http::{Method, StatusCode};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::manifest::{DOCKER_LIST, DOCKER_MANIFEST, OCI_MANIFEST};
use super::names::{Algorithm, Digest};
use super::test_support::{bytes, chunked, wasm_manifest, Fixture};
use super::upload_range;

/// Sends raw bytes and returns whatever the server answers before closing or going quiet.
async fn raw_exchange(addr: SocketAddr, request: &[u8]) -> Result<String> {
    let mut stream = TcpStream::connect(addr).await?;
    stream.write_all(request).await?;
    stream.shutdown().await?;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
    Ok(String::from_utf8_lossy(&answer).into_owned())
}

/// Waits until the uploads directory is empty (drop guards clean up on the blocking pool).
async fn wait_uploads_empty(fixture: &Fixture) -> Vec<std::path::PathBuf> {
    for _ in 0..100 {
        if fixture.files_under("uploads").is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    fixture.files_under("uploads")
}

#[test]
fn registry_is_shareable_across_threads() {
    fn shareable<T: Send + Sync + 'static>() {}
    shareable::<super::Registry>();
    shareable::<super::RegistryError>();
}

#[tokio::test]
async fn base_endpoint_announces_the_api_version() -> Result<()> {
    let fixture = Fixture::new().await?;
    let reply = fixture
        .send_as(false, Method::GET, "/v2/", &[], bytes(Vec::new()))
        .await?;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        reply.header("docker-distribution-api-version"),
        Some("registry/2.0")
    );
    let reply = fixture.get("/v3/").await?;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(upload_range(0), "0-0");
    assert_eq!(upload_range(10), "0-9");
    Ok(())
}

#[tokio::test]
async fn monolithic_upload_stores_and_serves_the_blob() -> Result<()> {
    let fixture = Fixture::new().await?;
    let data = b"hello registry".to_vec();
    let digest = fixture.push_blob("team/app", &data).await?;
    let path = format!("/v2/team/app/blobs/{digest}");
    let reply = fixture.get(&path).await?;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, data);
    assert_eq!(
        reply.header("docker-content-digest"),
        Some(digest.to_string().as_str())
    );
    assert_eq!(reply.header("content-length"), Some("14"));
    let head = fixture
        .send(Method::HEAD, &path, &[], bytes(Vec::new()))
        .await?;
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(head.header("content-length"), Some("14"));
    assert!(head.body.is_empty());
    // Blobs belong to repositories: another one does not see it.
    let other = fixture.get(&format!("/v2/other/blobs/{digest}")).await?;
    assert_eq!(other.status, StatusCode::NOT_FOUND);
    assert_eq!(other.code().as_deref(), Some("BLOB_UNKNOWN"));
    let stored = fixture.files_under("blobs");
    assert_eq!(stored.len(), 1);
    assert!(stored[0].ends_with(format!("sha256/{}/{}", &digest.hex()[..2], digest.hex())));
    Ok(())
}

#[tokio::test]
async fn post_then_put_upload_completes() -> Result<()> {
    let fixture = Fixture::new().await?;
    let start = fixture
        .send(Method::POST, "/v2/a/blobs/uploads/", &[], bytes(Vec::new()))
        .await?;
    assert_eq!(start.status, StatusCode::ACCEPTED);
    assert_eq!(start.header("range"), Some("0-0"));
    let location = start.header("location").context("location")?.to_owned();
    let data = vec![7u8; 1000];
    let digest = Digest::of(Algorithm::Sha256, &data);
    let put = fixture
        .send(
            Method::PUT,
            &format!("{location}?digest={digest}"),
            &[],
            bytes(data.clone()),
        )
        .await?;
    assert_eq!(put.status, StatusCode::CREATED);
    assert_eq!(
        put.header("location"),
        Some(format!("/v2/a/blobs/{digest}").as_str())
    );
    assert_eq!(
        fixture.get(&format!("/v2/a/blobs/{digest}")).await?.body,
        data
    );
    // The session is gone once completed.
    assert_eq!(fixture.get(&location).await?.status, StatusCode::NOT_FOUND);
    Ok(())
}

#[tokio::test]
async fn chunked_upload_enforces_order_and_reports_progress() -> Result<()> {
    let fixture = Fixture::new().await?;
    let start = fixture
        .send(Method::POST, "/v2/a/blobs/uploads/", &[], bytes(Vec::new()))
        .await?;
    let location = start.header("location").context("location")?.to_owned();
    let data: Vec<u8> = (0..13u8).collect();
    let patch = |range: &'static str, chunk: &[u8]| {
        let chunk = chunk.to_vec();
        let location = location.clone();
        let fixture = &fixture;
        async move {
            fixture
                .send(
                    Method::PATCH,
                    &location,
                    &[("content-range", range)],
                    bytes(chunk),
                )
                .await
        }
    };
    let first = patch("0-4", &data[..5]).await?;
    assert_eq!(first.status, StatusCode::ACCEPTED);
    assert_eq!(first.header("range"), Some("0-4"));
    let repeated = patch("0-4", &data[..5]).await?;
    assert_eq!(repeated.status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(repeated.code().as_deref(), Some("BLOB_UPLOAD_INVALID"));
    let status = fixture.get(&location).await?;
    assert_eq!(status.status, StatusCode::NO_CONTENT);
    assert_eq!(status.header("range"), Some("0-4"));
    assert_eq!(
        patch("5-9", &data[5..10]).await?.header("range"),
        Some("0-9")
    );
    let digest = Digest::of(Algorithm::Sha256, &data);
    let finish = fixture
        .send(
            Method::PUT,
            &format!("{location}?digest={digest}"),
            &[("content-range", "10-12")],
            bytes(data[10..].to_vec()),
        )
        .await?;
    assert_eq!(finish.status, StatusCode::CREATED, "{:?}", finish.body);
    assert_eq!(
        fixture.get(&format!("/v2/a/blobs/{digest}")).await?.body,
        data
    );
    assert!(wait_uploads_empty(&fixture).await.is_empty());
    Ok(())
}

#[tokio::test]
async fn wrong_digest_is_refused_and_nothing_is_stored() -> Result<()> {
    let fixture = Fixture::new().await?;
    let claimed = Digest::of(Algorithm::Sha256, b"something else");
    let reply = fixture
        .send(
            Method::POST,
            &format!("/v2/a/blobs/uploads/?digest={claimed}"),
            &[],
            bytes(&b"actual"[..]),
        )
        .await?;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.code().as_deref(), Some("DIGEST_INVALID"));
    // The same through a session: the session ends and leaves nothing behind.
    let start = fixture
        .send(Method::POST, "/v2/a/blobs/uploads/", &[], bytes(Vec::new()))
        .await?;
    let location = start.header("location").context("location")?.to_owned();
    let reply = fixture
        .send(
            Method::PUT,
            &format!("{location}?digest={claimed}"),
            &[],
            bytes(&b"actual"[..]),
        )
        .await?;
    assert_eq!(reply.code().as_deref(), Some("DIGEST_INVALID"));
    assert_eq!(fixture.get(&location).await?.status, StatusCode::NOT_FOUND);
    assert!(fixture.files_under("blobs").is_empty());
    assert!(wait_uploads_empty(&fixture).await.is_empty());
    assert_eq!(
        fixture.get(&format!("/v2/a/blobs/{claimed}")).await?.status,
        StatusCode::NOT_FOUND
    );
    Ok(())
}

#[tokio::test]
async fn truncated_upload_is_refused() -> Result<()> {
    let fixture = Fixture::new().await?;
    let data = vec![1u8; 100];
    let digest = Digest::of(Algorithm::Sha256, &data);
    let mut request = format!(
        "POST /v2/a/blobs/uploads/?digest={digest} HTTP/1.1\r\nhost: x\r\nx-test-push: 1\r\ncontent-length: 100\r\n\r\n"
    )
    .into_bytes();
    request.extend_from_slice(&data[..50]);
    let answer = raw_exchange(fixture.server.addr, &request).await?;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("BLOB_UPLOAD_INVALID"), "{answer}");
    assert!(fixture.files_under("blobs").is_empty());
    assert!(wait_uploads_empty(&fixture).await.is_empty());
    // A chunk cut off mid-way leaves the session where it was, and the upload can go on.
    let start = fixture
        .send(Method::POST, "/v2/a/blobs/uploads/", &[], bytes(Vec::new()))
        .await?;
    let location = start.header("location").context("location")?.to_owned();
    let mut request = format!(
        "PATCH {location} HTTP/1.1\r\nhost: x\r\nx-test-push: 1\r\ncontent-length: 100\r\n\r\n"
    )
    .into_bytes();
    request.extend_from_slice(&[9u8; 50]);
    let answer = raw_exchange(fixture.server.addr, &request).await?;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert_eq!(fixture.get(&location).await?.header("range"), Some("0-0"));
    let finish = fixture
        .send(
            Method::PUT,
            &format!("{location}?digest={digest}"),
            &[],
            bytes(data.clone()),
        )
        .await?;
    assert_eq!(finish.status, StatusCode::CREATED);
    assert_eq!(
        fixture.get(&format!("/v2/a/blobs/{digest}")).await?.body,
        data
    );
    Ok(())
}

#[tokio::test]
async fn blob_larger_than_announced_is_refused() -> Result<()> {
    let fixture = Fixture::new().await?;
    // Chunked transfer: only Content-Range announces the size, and the body runs past it.
    let start = fixture
        .send(Method::POST, "/v2/a/blobs/uploads/", &[], bytes(Vec::new()))
        .await?;
    let location = start.header("location").context("location")?.to_owned();
    let reply = fixture
        .send(
            Method::PATCH,
            &location,
            &[("content-range", "0-9")],
            chunked(vec![vec![1; 8], vec![2; 8]]),
        )
        .await?;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.code().as_deref(), Some("SIZE_INVALID"));
    assert_eq!(fixture.get(&location).await?.header("range"), Some("0-0"));
    // Content-Length smaller than the bytes sent: the extra bytes are not part of the blob, so
    // the digest of the announced blob cannot match.
    let data = vec![3u8; 20];
    let digest = Digest::of(Algorithm::Sha256, &data);
    let mut request = format!(
        "POST /v2/a/blobs/uploads/?digest={digest} HTTP/1.1\r\nhost: x\r\nx-test-push: 1\r\ncontent-length: 10\r\n\r\n"
    )
    .into_bytes();
    request.extend_from_slice(&data);
    let answer = raw_exchange(fixture.server.addr, &request).await?;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("DIGEST_INVALID"), "{answer}");
    assert!(fixture.files_under("blobs").is_empty());
    Ok(())
}

#[tokio::test]
async fn invalid_names_tags_and_digests_are_rejected() -> Result<()> {
    let fixture = Fixture::new().await?;
    let cases = [
        (Method::GET, "/v2/Upper/manifests/latest", "NAME_INVALID"),
        (Method::GET, "/v2/a..b/tags/list", "NAME_INVALID"),
        (Method::PUT, "/v2/ok/manifests/-bad", "TAG_INVALID"),
        (Method::GET, "/v2/ok/manifests/bad%21tag", "TAG_INVALID"),
        (Method::GET, "/v2/ok/blobs/sha256:xyz", "DIGEST_INVALID"),
        (
            Method::GET,
            "/v2/ok/blobs/md5:d41d8cd98f00b204e9800998ecf8427e",
            "DIGEST_INVALID",
        ),
        (
            Method::POST,
            "/v2/a/blobs/uploads/?digest=sha256:1",
            "DIGEST_INVALID",
        ),
    ];
    for (method, path, code) in cases {
        let reply = fixture.send(method, path, &[], bytes(Vec::new())).await?;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{path}");
        assert_eq!(reply.code().as_deref(), Some(code), "{path}");
    }
    Ok(())
}

#[tokio::test]
async fn push_operations_need_push_rights() -> Result<()> {
    let fixture = Fixture::new().await?;
    let digest = fixture.push_blob("a", b"x").await?;
    for (method, path) in [
        (Method::POST, "/v2/a/blobs/uploads/".to_owned()),
        (Method::DELETE, format!("/v2/a/blobs/{digest}")),
        (Method::PUT, "/v2/a/manifests/latest".to_owned()),
    ] {
        let reply = fixture
            .send_as(false, method, &path, &[], bytes(Vec::new()))
            .await?;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(reply.code().as_deref(), Some("UNAUTHORIZED"));
        assert!(reply.header("www-authenticate").is_some());
    }
    let pull = fixture
        .send_as(
            false,
            Method::GET,
            &format!("/v2/a/blobs/{digest}"),
            &[],
            bytes(Vec::new()),
        )
        .await?;
    assert_eq!(pull.status, StatusCode::OK);
    Ok(())
}

#[tokio::test]
async fn manifests_round_trip_with_media_type_and_digest() -> Result<()> {
    let fixture = Fixture::new().await?;
    let (manifest, digest) = fixture
        .push_wasm("wasm/hello", "v1", b"\0asm\x01\0\0\0")
        .await?;
    let pushed = serde_json::to_vec(&manifest)?;
    assert_eq!(digest, Digest::of(Algorithm::Sha256, &pushed));
    for reference in ["v1".to_owned(), digest.to_string()] {
        let reply = fixture
            .get(&format!("/v2/wasm/hello/manifests/{reference}"))
            .await?;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.body, pushed, "exact bytes are served");
        assert_eq!(reply.header("content-type"), Some(OCI_MANIFEST));
        assert_eq!(
            reply.header("docker-content-digest"),
            Some(digest.to_string().as_str())
        );
    }
    let head = fixture
        .send(
            Method::HEAD,
            "/v2/wasm/hello/manifests/v1",
            &[],
            bytes(Vec::new()),
        )
        .await?;
    assert_eq!(
        head.header("content-length"),
        Some(pushed.len().to_string().as_str())
    );
    // Pushing by digest checks the digest; the tag query adds tags.
    let wrong = Digest::of(Algorithm::Sha256, b"nope");
    let reply = fixture
        .put_manifest("wasm/hello", &wrong.to_string(), OCI_MANIFEST, &manifest)
        .await?;
    assert_eq!(reply.code().as_deref(), Some("DIGEST_INVALID"));
    let reply = fixture
        .put_manifest(
            "wasm/hello",
            &format!("{digest}?tag=v2&tag=stable"),
            OCI_MANIFEST,
            &manifest,
        )
        .await?;
    assert_eq!(reply.status, StatusCode::CREATED);
    assert_eq!(reply.header("oci-tag"), Some("v2, stable"));
    // A Docker manifest list over it; its children must exist.
    let list = json!({
        "schemaVersion": 2,
        "mediaType": DOCKER_LIST,
        "manifests": [ { "mediaType": OCI_MANIFEST, "digest": digest.to_string(), "size": pushed.len(), "platform": { "os": "wasip1", "architecture": "wasm" } } ]
    });
    let reply = fixture
        .put_manifest("wasm/hello", "multi", DOCKER_LIST, &list)
        .await?;
    assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
    let reply = fixture.get("/v2/wasm/hello/manifests/multi").await?;
    assert_eq!(reply.header("content-type"), Some(DOCKER_LIST));
    Ok(())
}

#[tokio::test]
async fn manifests_must_reference_existing_content() -> Result<()> {
    let fixture = Fixture::new().await?;
    let config = fixture.push_blob("a", b"{}").await?;
    let missing = Digest::of(Algorithm::Sha256, b"never pushed");
    let image = json!({
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": { "mediaType": "application/vnd.docker.container.image.v1+json", "digest": config.to_string(), "size": 2 },
        "layers": [ { "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "digest": missing.to_string(), "size": 12 } ]
    });
    let reply = fixture
        .put_manifest("a", "latest", DOCKER_MANIFEST, &image)
        .await?;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.code().as_deref(), Some("MANIFEST_BLOB_UNKNOWN"));
    assert_eq!(
        reply.json()?["errors"][0]["detail"]["digest"],
        missing.to_string()
    );
    assert_eq!(
        fixture.get("/v2/a/manifests/latest").await?.status,
        StatusCode::NOT_FOUND
    );
    // A size that disagrees with the stored blob is invalid.
    let mut wrong_size = wasm_manifest(&config, 3, &config, 2);
    wrong_size["layers"] = json!([]);
    let reply = fixture
        .put_manifest("a", "latest", OCI_MANIFEST, &wrong_size)
        .await?;
    assert_eq!(reply.code().as_deref(), Some("MANIFEST_INVALID"));
    // An index over a manifest the repository lacks.
    let index = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [ { "mediaType": OCI_MANIFEST, "digest": missing.to_string(), "size": 12 } ]
    });
    let reply = fixture
        .put_manifest(
            "a",
            "idx",
            "application/vnd.oci.image.index.v1+json",
            &index,
        )
        .await?;
    assert_eq!(reply.code().as_deref(), Some("MANIFEST_BLOB_UNKNOWN"));
    // Once the layer exists the push succeeds.
    fixture.push_blob("a", b"never pushed").await?;
    let reply = fixture
        .put_manifest("a", "latest", DOCKER_MANIFEST, &image)
        .await?;
    assert_eq!(reply.status, StatusCode::CREATED);
    Ok(())
}

#[tokio::test]
async fn unknown_manifest_media_types_are_refused() -> Result<()> {
    let fixture = Fixture::new().await?;
    let body = json!({ "schemaVersion": 1, "name": "a", "tag": "x", "fsLayers": [] });
    let reply = fixture
        .put_manifest(
            "a",
            "x",
            "application/vnd.docker.distribution.manifest.v1+prettyjws",
            &body,
        )
        .await?;
    assert_eq!(reply.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(reply.code().as_deref(), Some("MANIFEST_INVALID"));
    let reply = fixture
        .send(
            Method::PUT,
            "/v2/a/manifests/x",
            &[("content-type", OCI_MANIFEST)],
            bytes(&b"{not json"[..]),
        )
        .await?;
    assert_eq!(reply.code().as_deref(), Some("MANIFEST_INVALID"));
    assert_eq!(
        fixture.get("/v2/a/manifests/x").await?.status,
        StatusCode::NOT_FOUND
    );
    Ok(())
}

#[tokio::test]
async fn oversized_manifests_are_refused() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let fixture = Fixture::with_config(dir, |config| config.max_manifest_bytes = 64).await?;
    let reply = fixture
        .send(
            Method::PUT,
            "/v2/a/manifests/x",
            &[("content-type", OCI_MANIFEST)],
            bytes(vec![b' '; 65]),
        )
        .await?;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(reply.code().as_deref(), Some("SIZE_INVALID"));
    Ok(())
}
