//! In-process HTTP tests of reads, listings, deletion, mounting, collection and large blobs.

use std::time::Duration;

use anyhow::{Context, Result};
use http::{Method, StatusCode};
use http_body_util::BodyExt;
use serde_json::json;
use sha2::{Digest as _, Sha256};

use super::manifest::OCI_MANIFEST;
use super::names::{Algorithm, Digest};
use super::test_support::{bytes, chunked, wasm_manifest, Fixture};
use super::{Registry, RegistryConfig};

#[tokio::test]
async fn ranged_reads_return_partial_content() -> Result<()> {
    let fixture = Fixture::new().await?;
    let data: Vec<u8> = (0..100u8).collect();
    let digest = fixture.push_blob("a", &data).await?;
    let path = format!("/v2/a/blobs/{digest}");
    let reply = fixture.get_range(&path, "bytes=10-19").await?;
    assert_eq!(reply.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(reply.header("content-range"), Some("bytes 10-19/100"));
    assert_eq!(reply.header("content-length"), Some("10"));
    assert_eq!(reply.body, data[10..20]);
    let reply = fixture.get_range(&path, "bytes=-5").await?;
    assert_eq!(reply.body, data[95..]);
    let reply = fixture.get_range(&path, "bytes=100-").await?;
    assert_eq!(reply.status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(reply.header("content-range"), Some("bytes */100"));
    let reply = fixture.get_range(&path, "bytes=0-1,5-6").await?;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, data);
    Ok(())
}

#[tokio::test]
async fn tag_lists_page_with_links() -> Result<()> {
    let fixture = Fixture::new().await?;
    let (manifest, _) = fixture.push_wasm("a", "v1", b"module").await?;
    for tag in ["v3", "v2", "latest", "V0"] {
        fixture
            .put_manifest("a", tag, OCI_MANIFEST, &manifest)
            .await?;
    }
    let all = fixture.get("/v2/a/tags/list").await?.json()?;
    assert_eq!(
        all,
        json!({ "name": "a", "tags": ["V0", "latest", "v1", "v2", "v3"] })
    );
    let mut collected = Vec::new();
    let mut next = Some("/v2/a/tags/list?n=2".to_owned());
    while let Some(url) = next.take() {
        let reply = fixture.get(&url).await?;
        let tags = reply.json()?["tags"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert!(tags.len() <= 2);
        collected.extend(tags.iter().filter_map(|t| t.as_str().map(str::to_owned)));
        next = reply
            .header("link")
            .and_then(|link| link.strip_prefix('<'))
            .and_then(|link| link.split_once('>'))
            .map(|(url, _)| url.to_owned());
    }
    assert_eq!(collected, ["V0", "latest", "v1", "v2", "v3"]);
    let after = fixture.get("/v2/a/tags/list?last=v1").await?.json()?;
    assert_eq!(after["tags"], json!(["v2", "v3"]));
    let none = fixture.get("/v2/a/tags/list?n=0").await?;
    assert_eq!(none.json()?["tags"], json!([]));
    assert!(none.header("link").is_none());
    let unknown = fixture.get("/v2/nothing/tags/list").await?;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(unknown.code().as_deref(), Some("NAME_UNKNOWN"));
    assert_eq!(
        fixture.get("/v2/a/tags/list?n=x").await?.status,
        StatusCode::BAD_REQUEST
    );
    Ok(())
}

#[tokio::test]
async fn catalog_lists_repositories_in_order() -> Result<()> {
    let fixture = Fixture::new().await?;
    for name in ["zeta", "alpha/one", "alpha/one/nested", "beta"] {
        fixture.push_blob(name, name.as_bytes()).await?;
    }
    let all = fixture.get("/v2/_catalog").await?.json()?;
    assert_eq!(
        all["repositories"],
        json!(["alpha/one", "alpha/one/nested", "beta", "zeta"])
    );
    let page = fixture.get("/v2/_catalog?n=1&last=alpha/one").await?;
    assert_eq!(page.json()?["repositories"], json!(["alpha/one/nested"]));
    assert_eq!(
        page.header("link"),
        Some("</v2/_catalog?n=1&last=alpha%2Fone%2Fnested>; rel=\"next\"")
    );
    Ok(())
}

#[tokio::test]
async fn deletes_remove_tags_manifests_and_blobs() -> Result<()> {
    let fixture = Fixture::new().await?;
    let (manifest, digest) = fixture.push_wasm("a", "v1", b"module").await?;
    fixture
        .put_manifest("a", "v2", OCI_MANIFEST, &manifest)
        .await?;
    assert_eq!(
        fixture.delete("/v2/a/manifests/v1").await?.status,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        fixture.get("/v2/a/manifests/v1").await?.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        fixture.get("/v2/a/manifests/v2").await?.status,
        StatusCode::OK
    );
    assert_eq!(
        fixture
            .delete(&format!("/v2/a/manifests/{digest}"))
            .await?
            .status,
        StatusCode::ACCEPTED
    );
    let gone = fixture.get("/v2/a/manifests/v2").await?;
    assert_eq!(gone.code().as_deref(), Some("MANIFEST_UNKNOWN"));
    assert_eq!(
        fixture
            .delete(&format!("/v2/a/manifests/{digest}"))
            .await?
            .status,
        StatusCode::NOT_FOUND
    );
    let layer = Digest::of(Algorithm::Sha256, b"module");
    assert_eq!(
        fixture
            .delete(&format!("/v2/a/blobs/{layer}"))
            .await?
            .status,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        fixture.get(&format!("/v2/a/blobs/{layer}")).await?.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        fixture
            .delete(&format!("/v2/a/blobs/{layer}"))
            .await?
            .status,
        StatusCode::NOT_FOUND
    );
    Ok(())
}

#[tokio::test]
async fn blobs_mount_across_repositories() -> Result<()> {
    let fixture = Fixture::new().await?;
    let digest = fixture.push_blob("source", b"shared layer").await?;
    let reply = fixture
        .send(
            Method::POST,
            &format!("/v2/target/blobs/uploads/?mount={digest}&from=source"),
            &[],
            bytes(Vec::new()),
        )
        .await?;
    assert_eq!(reply.status, StatusCode::CREATED);
    assert_eq!(
        fixture
            .get(&format!("/v2/target/blobs/{digest}"))
            .await?
            .body,
        &b"shared layer"[..]
    );
    // A blob the source lacks starts an ordinary upload instead.
    let unknown = Digest::of(Algorithm::Sha256, b"absent");
    let reply = fixture
        .send(
            Method::POST,
            &format!("/v2/target/blobs/uploads/?mount={unknown}&from=source"),
            &[],
            bytes(Vec::new()),
        )
        .await?;
    assert_eq!(reply.status, StatusCode::ACCEPTED);
    assert!(reply.header("location").is_some());
    Ok(())
}

#[tokio::test]
async fn referrers_list_manifests_with_a_subject() -> Result<()> {
    let fixture = Fixture::new().await?;
    let (_, subject) = fixture.push_wasm("a", "v1", b"module").await?;
    let empty = fixture.push_blob("a", b"{}").await?;
    let signature = fixture.push_blob("a", b"signature").await?;
    let mut referrer = wasm_manifest(&empty, 2, &signature, 9);
    referrer["artifactType"] = json!("application/vnd.example.signature");
    referrer["subject"] =
        json!({ "mediaType": OCI_MANIFEST, "digest": subject.to_string(), "size": 1 });
    referrer["annotations"] = json!({ "org.example": "yes" });
    let reply = fixture
        .put_manifest("a", "sig", OCI_MANIFEST, &referrer)
        .await?;
    assert_eq!(
        reply.header("oci-subject"),
        Some(subject.to_string().as_str())
    );
    let list = fixture.get(&format!("/v2/a/referrers/{subject}")).await?;
    assert_eq!(
        list.header("content-type"),
        Some("application/vnd.oci.image.index.v1+json")
    );
    let manifests = list.json()?["manifests"].clone();
    assert_eq!(manifests.as_array().map(Vec::len), Some(1));
    assert_eq!(
        manifests[0]["artifactType"],
        "application/vnd.example.signature"
    );
    assert_eq!(manifests[0]["annotations"]["org.example"], "yes");
    let filtered = fixture
        .get(&format!(
            "/v2/a/referrers/{subject}?artifactType=application/other"
        ))
        .await?;
    assert_eq!(filtered.header("oci-filters-applied"), Some("artifactType"));
    assert_eq!(filtered.json()?["manifests"], json!([]));
    Ok(())
}

#[tokio::test]
async fn garbage_collection_removes_only_unreferenced_blobs() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let fixture = Fixture::with_config(dir, |config| {
        config.gc_grace = Duration::ZERO;
        config.upload_ttl = Duration::ZERO;
    })
    .await?;
    let (_, manifest) = fixture.push_wasm("a", "v1", b"module").await?;
    let orphan = fixture.push_blob("a", b"orphan").await?;
    let abandoned = fixture
        .send(Method::POST, "/v2/a/blobs/uploads/", &[], bytes(Vec::new()))
        .await?;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let report = fixture.registry.collect_garbage().await?;
    assert_eq!(report.blobs_deleted, 1);
    assert_eq!(report.bytes_freed, 6);
    assert_eq!(report.blobs_kept, 3, "config, layer and manifest stay");
    assert_eq!(report.links_removed, 1);
    assert_eq!(report.uploads_expired, 1);
    assert_eq!(
        fixture.get(&format!("/v2/a/blobs/{orphan}")).await?.status,
        StatusCode::NOT_FOUND
    );
    let pulled = fixture.get(&format!("/v2/a/manifests/{manifest}")).await?;
    assert_eq!(pulled.status, StatusCode::OK);
    let layer = Digest::of(Algorithm::Sha256, b"module");
    assert_eq!(
        fixture.get(&format!("/v2/a/blobs/{layer}")).await?.body,
        &b"module"[..]
    );
    let location = abandoned.header("location").context("location")?;
    assert_eq!(fixture.get(location).await?.status, StatusCode::NOT_FOUND);
    Ok(())
}

#[tokio::test]
async fn garbage_collection_spares_fresh_blobs() -> Result<()> {
    let fixture = Fixture::new().await?;
    let orphan = fixture
        .push_blob("a", b"layer pushed before its manifest")
        .await?;
    let report = fixture.registry.collect_garbage().await?;
    assert_eq!(report.blobs_deleted, 0);
    assert_eq!(
        fixture.get(&format!("/v2/a/blobs/{orphan}")).await?.status,
        StatusCode::OK
    );
    Ok(())
}

#[tokio::test]
async fn fifty_megabyte_blobs_stream_both_ways() -> Result<()> {
    let fixture = Fixture::new().await?;
    let piece: Vec<u8> = (0..1024 * 1024).map(|i: u32| (i % 251) as u8).collect();
    let mut hasher = Sha256::new();
    for _ in 0..50 {
        hasher.update(&piece);
    }
    let digest = Digest::parse(&format!("sha256:{:x}", hasher.finalize()))?;
    let start = fixture
        .send(
            Method::POST,
            "/v2/big/blobs/uploads/",
            &[],
            bytes(Vec::new()),
        )
        .await?;
    let location = start.header("location").context("location")?.to_owned();
    let patch = fixture
        .send(
            Method::PATCH,
            &location,
            &[],
            chunked(vec![piece.clone(); 50]),
        )
        .await?;
    assert_eq!(patch.header("range"), Some("0-52428799"));
    let finish = fixture
        .send(
            Method::PUT,
            &format!("{location}?digest={digest}"),
            &[],
            bytes(Vec::new()),
        )
        .await?;
    assert_eq!(finish.status, StatusCode::CREATED, "{:?}", finish.body);
    // Read the response frame by frame, hashing as it comes, as a client would.
    let request = http::Request::get(format!(
        "http://{}/v2/big/blobs/{digest}",
        fixture.server.addr
    ))
    .body(bytes(Vec::new()))?;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build(hyper_util::client::legacy::connect::HttpConnector::new());
    let response = client.request(request).await?;
    assert_eq!(
        response
            .headers()
            .get("content-length")
            .and_then(|v| v.to_str().ok()),
        Some("52428800")
    );
    let mut body = response.into_body();
    let (mut received, mut hasher) = (0usize, Sha256::new());
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            received += data.len();
            hasher.update(&data);
        }
    }
    assert_eq!(received, 50 * 1024 * 1024);
    assert_eq!(
        format!("sha256:{:x}", hasher.finalize()),
        digest.to_string()
    );
    Ok(())
}

#[tokio::test]
async fn upload_sessions_survive_a_restart() -> Result<()> {
    let fixture = Fixture::new().await?;
    let start = fixture
        .send(Method::POST, "/v2/a/blobs/uploads/", &[], bytes(Vec::new()))
        .await?;
    let location = start.header("location").context("location")?.to_owned();
    fixture
        .send(
            Method::PATCH,
            &location,
            &[("content-range", "0-2")],
            bytes(&b"abc"[..]),
        )
        .await?;
    // A second registry on the same root knows nothing in memory about the session.
    let reopened = Registry::open(RegistryConfig::new(fixture.dir.path().join("registry")))?;
    let restarted =
        super::test_support::TestServer::registry(std::sync::Arc::new(reopened)).await?;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build(hyper_util::client::legacy::connect::HttpConnector::new());
    let digest = Digest::of(Algorithm::Sha256, b"abcdef");
    let request = http::Request::put(format!(
        "http://{}{location}?digest={digest}",
        restarted.addr
    ))
    .header("x-test-push", "1")
    .header("content-range", "3-5")
    .body(bytes(&b"def"[..]))?;
    let response = client.request(request).await?;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(
        fixture.get(&format!("/v2/a/blobs/{digest}")).await?.body,
        &b"abcdef"[..]
    );
    Ok(())
}
