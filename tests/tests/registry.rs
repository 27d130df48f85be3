//! The embedded OCI registry with real clients: skopeo copies an OCI image in and back out, the
//! registry pulls through from Debian's docker-registry, and bad pushes are refused with OCI
//! error codes and leave nothing behind.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{ensure, Context, Result};
use bramble_tests::skopeo::Skopeo;
use bramble_tests::upstream_registry::UpstreamRegistry;
use bramble_tests::{kube_client, Cluster};
use serde_json::Value;

fn images_dir() -> Result<PathBuf> {
    let dir = std::env::var("BRAMBLE_IMAGES_DIR").context(
        "BRAMBLE_IMAGES_DIR is not set: the test command builds the sample images and sets it",
    )?;
    let dir = PathBuf::from(dir);
    ensure!(
        dir.join("busybox").is_dir(),
        "{} has no busybox OCI layout: run images/build.sh",
        dir.display()
    );
    Ok(dir)
}

/// Every blob (layers, config, manifest) of an OCI layout, by digest.
fn blobs(layout: &Path) -> Result<Vec<(String, Vec<u8>)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(layout.join("blobs/sha256"))? {
        let entry = entry?;
        out.push((
            entry.file_name().to_string_lossy().to_string(),
            std::fs::read(entry.path())?,
        ));
    }
    out.sort();
    Ok(out)
}

#[test]
fn skopeo_copies_an_oci_image_in_and_back_out_byte_for_byte() -> Result<()> {
    let images = images_dir()?;
    let c = Cluster::start()?;
    let skopeo = Skopeo::for_cluster(&c)?;
    let port = c.url().rsplit(':').next().unwrap_or_default().to_string();
    let remote = format!("docker://127.0.0.1:{port}/samples/busybox:v1");
    skopeo.push(
        &format!("oci:{}:v1", images.join("busybox").display()),
        &remote,
    )?;
    let out_dir = c.scratch().join("busybox-out");
    skopeo.pull(&remote, &format!("oci:{}:v1", out_dir.display()))?;
    ensure!(
        blobs(&images.join("busybox"))? == blobs(&out_dir)?,
        "the image came back different"
    );
    // Without credentials nothing can be read or pushed.
    let out = Command::new("skopeo")
        .args([
            "inspect",
            "--cert-dir",
            &skopeo.cert_dir.to_string_lossy(),
            &remote,
        ])
        .output()?;
    ensure!(
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("unauthorized"),
        "anonymous pull must be refused"
    );
    Ok(())
}

#[test]
fn pulls_through_from_an_upstream_docker_registry() -> Result<()> {
    let images = images_dir()?;
    let upstream = UpstreamRegistry::start()?;
    let upstream_ref = format!("docker://{}/library/busybox:v1", upstream.host());
    let out = Command::new("skopeo")
        .args([
            "copy",
            "--dest-tls-verify=false",
            &format!("oci:{}:v1", images.join("busybox").display()),
            &upstream_ref,
        ])
        .output()?;
    ensure!(
        out.status.success(),
        "seeding docker-registry: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let c = Cluster::start_with(&[
        "--registry-mirror",
        &format!("upstream=http://{}", upstream.host()),
    ])?;
    let skopeo = Skopeo::for_cluster(&c)?;
    let port = c.url().rsplit(':').next().unwrap_or_default().to_string();
    let through = format!("docker://127.0.0.1:{port}/upstream/library/busybox:v1");
    let first = c.scratch().join("through-1");
    skopeo.pull(&through, &format!("oci:{}:v1", first.display()))?;
    ensure!(
        blobs(&images.join("busybox"))? == blobs(&first)?,
        "the mirrored image differs from the upstream one"
    );
    // The upstream goes away: the mirror still serves what it fetched.
    drop(upstream);
    let second = c.scratch().join("through-2");
    skopeo.pull(&through, &format!("oci:{}:v1", second.display()))?;
    ensure!(blobs(&first)? == blobs(&second)?);
    Ok(())
}

fn error_code(v: &Value) -> &str {
    v["errors"][0]["code"].as_str().unwrap_or_default()
}

#[test]
fn bad_pushes_are_refused_with_oci_errors_and_store_nothing() -> Result<()> {
    let c = Cluster::start()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let client = kube_client::client(&c).await?;
        let blob = b"hello bramble".to_vec();
        let wrong = format!("sha256:{}", "0".repeat(64));
        // A blob whose digest does not match its content.
        let (code, v) = kube_client::send_raw(&client, "POST", &format!("/v2/samples/x/blobs/uploads/?digest={wrong}"), "application/octet-stream", blob.clone()).await?;
        ensure!(code == 400 && error_code(&v) == "DIGEST_INVALID", "{code} {v}");
        let (code, _) = kube_client::send_raw(&client, "HEAD", &format!("/v2/samples/x/blobs/{wrong}"), "", vec![]).await?;
        ensure!(code == 404, "a refused blob must not be stored: {code}");
        // Invalid repository name and tag characters.
        let (code, v) = kube_client::send_raw(&client, "GET", "/v2/Samples/UPPER/tags/list", "", vec![]).await?;
        ensure!(code == 400 && error_code(&v) == "NAME_INVALID", "{code} {v}");
        let (code, v) = kube_client::send_raw(&client, "PUT", "/v2/samples/x/manifests/bad$tag", "application/vnd.oci.image.manifest.v1+json", b"{}".to_vec()).await?;
        ensure!(code == 400 && (error_code(&v) == "TAG_INVALID" || error_code(&v) == "MANIFEST_INVALID"), "{code} {v}");
        // A manifest referencing a blob that does not exist.
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": { "mediaType": "application/vnd.wasm.config.v0+json", "digest": wrong, "size": 2 },
            "layers": [{ "mediaType": "application/wasm", "digest": wrong, "size": 13 }],
        });
        let (code, v) = kube_client::send_raw(&client, "PUT", "/v2/samples/x/manifests/v1", "application/vnd.oci.image.manifest.v1+json", serde_json::to_vec(&manifest)?).await?;
        ensure!(code == 400 && error_code(&v) == "MANIFEST_BLOB_UNKNOWN", "{code} {v}");
        // An unknown manifest media type.
        let (code, v) = kube_client::send_raw(&client, "PUT", "/v2/samples/x/manifests/v1", "application/x-bogus", b"{}".to_vec()).await?;
        ensure!((code == 400 || code == 415) && error_code(&v) == "MANIFEST_INVALID", "{code} {v}");
        let (code, v) = kube_client::send_raw(&client, "GET", "/v2/_catalog", "", vec![]).await?;
        ensure!(code == 200 && v["repositories"].as_array().is_none_or(Vec::is_empty), "nothing may be stored: {v}");
        anyhow::Ok(())
    })
}
