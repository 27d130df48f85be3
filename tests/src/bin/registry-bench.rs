//! Registry benchmark: push and pull throughput of a 5 MB Wasm module artifact and a 50 MB
//! container image through the embedded registry, side by side with Debian's docker-registry
//! (distribution 2.8) in the same run, using the same client (skopeo) for both.
//!
//! Then the resume saving: the node's puller downloads the 50 MB layer once in full, and once
//! more with the first half already on disk, as a download cut at 50% leaves it (the cut itself
//! and the Range request are exercised by the oci_client end-to-end test).
//!
//! Run: `cargo build --release --workspace --bins && target/release/registry-bench`

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use bramble_tests::upstream_registry::UpstreamRegistry;
use bramble_tests::Cluster;
use sha2::{Digest, Sha256};

/// Writes an OCI image layout with one config and one layer of `size` incompressible bytes.
fn layout(dir: &Path, size: usize, wasm: bool, seed: u64) -> Result<()> {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs)?;
    let mut data = vec![0u8; size];
    let mut x = seed | 1;
    for b in data.iter_mut() {
        // xorshift: cheap, incompressible enough, deterministic
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    let put = |bytes: &[u8]| -> Result<String> {
        let digest = hex(&Sha256::digest(bytes));
        std::fs::write(blobs.join(&digest), bytes)?;
        Ok(format!("sha256:{digest}"))
    };
    let (config_type, layer_type, config) = if wasm {
        (
            "application/vnd.wasm.config.v0+json",
            "application/wasm",
            serde_json::json!({"architecture":"wasm","os":"wasip1"}),
        )
    } else {
        (
            "application/vnd.oci.image.config.v1+json",
            "application/vnd.oci.image.layer.v1.tar",
            serde_json::json!({"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}),
        )
    };
    let config = serde_json::to_vec(&config)?;
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": { "mediaType": config_type, "digest": put(&config)?, "size": config.len() },
        "layers": [{ "mediaType": layer_type, "digest": put(&data)?, "size": size }],
    });
    let manifest = serde_json::to_vec(&manifest)?;
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{ "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": put(&manifest)?, "size": manifest.len(), "annotations": { "org.opencontainers.image.ref.name": "v1" } }],
    });
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index)?)?;
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn skopeo(args: &[&str]) -> Result<f64> {
    let started = Instant::now();
    let out = Command::new("skopeo")
        .args(args)
        .output()
        .context("skopeo is not installed")?;
    if !out.status.success() {
        bail!(
            "skopeo {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(started.elapsed().as_secs_f64())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() -> Result<()> {
    let cluster = Cluster::start()?;
    let upstream = UpstreamRegistry::start()?;
    let work = tempfile::tempdir()?;
    let certs = work.path().join("certs");
    std::fs::create_dir_all(&certs)?;
    std::fs::copy(cluster.data_dir().join("pki/ca.crt"), certs.join("ca.crt"))?;
    let creds = format!(
        "admin:{}",
        std::fs::read_to_string(cluster.data_dir().join("pki/admin.token"))?.trim()
    );
    let port = cluster
        .url()
        .rsplit(':')
        .next()
        .unwrap_or_default()
        .to_string();
    let cert = certs.to_string_lossy().to_string();

    println!("| artifact | registry | push MB/s (median of 3) | pull MB/s (median of 3) |");
    println!("|---|---|---|---|");
    for (name, size, wasm) in [
        ("5 MB Wasm module", 5 << 20, true),
        ("50 MB container image", 50 << 20, false),
    ] {
        for target in ["bramble", "docker-registry"] {
            let (mut push, mut pull) = (Vec::new(), Vec::new());
            for run in 0..3u64 {
                // A fresh artifact per run, so no run finds its blobs already stored.
                let src = work.path().join(format!("{target}-{size}-{run}"));
                layout(&src, size, wasm, 0x9E37_79B9 + run + size as u64)?;
                let repo = format!("bench/{}-{run}", if wasm { "module" } else { "image" });
                let dst = work.path().join(format!("out-{target}-{size}-{run}"));
                let from = format!("oci:{}:v1", src.display());
                let to_dir = format!("oci:{}:v1", dst.display());
                match target {
                    "bramble" => {
                        let remote = format!("docker://127.0.0.1:{port}/{repo}:v1");
                        push.push(skopeo(&[
                            "copy",
                            "--dest-cert-dir",
                            &cert,
                            "--dest-creds",
                            &creds,
                            &from,
                            &remote,
                        ])?);
                        pull.push(skopeo(&[
                            "copy",
                            "--src-cert-dir",
                            &cert,
                            "--src-creds",
                            &creds,
                            &remote,
                            &to_dir,
                        ])?);
                    }
                    _ => {
                        let remote = format!("docker://{}/{repo}:v1", upstream.host());
                        push.push(skopeo(&[
                            "copy",
                            "--dest-tls-verify=false",
                            &from,
                            &remote,
                        ])?);
                        pull.push(skopeo(&[
                            "copy",
                            "--src-tls-verify=false",
                            &remote,
                            &to_dir,
                        ])?);
                    }
                }
            }
            let mb = size as f64 / (1 << 20) as f64;
            let transport = if target == "bramble" {
                "bramble (HTTPS, client auth)"
            } else {
                "docker-registry 2.8 (plain HTTP)"
            };
            println!(
                "| {name} | {transport} | {:.1} | {:.1} |",
                mb / median(push),
                mb / median(pull)
            );
        }
    }
    resume(&cluster)?;
    Ok(())
}

/// Full download of the 50 MB layer against a resumed one.
fn resume(cluster: &Cluster) -> Result<()> {
    use bramble_node::oci::{ClientConfig, Manifest, Reference, RegistryClient};
    let pki = cluster.data_dir().join("pki");
    let mut identity = std::fs::read(pki.join("admin.crt"))?;
    identity.push(b'\n');
    identity.extend(std::fs::read(pki.join("admin.key"))?);
    let client = RegistryClient::new(ClientConfig {
        ca_pem: Some(std::fs::read(pki.join("ca.crt"))?),
        identity_pem: Some(identity),
        ..Default::default()
    })?;
    let host = cluster.url().trim_start_matches("https://").to_string();
    let reference = Reference::parse(&format!("{host}/bench/image-0:v1"))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let fetched = client.get_manifest(&reference).await?;
        let Manifest::Image(manifest) = fetched.manifest else {
            bail!("expected an image manifest")
        };
        let layer = manifest
            .layers
            .first()
            .context("the image has a layer")?
            .clone();
        let dir = tempfile::tempdir()?;
        let full_dest = dir.path().join("full");
        let started = Instant::now();
        let full = client
            .download_blob(&reference, &layer, &full_dest, None)
            .await?;
        let full_secs = started.elapsed().as_secs_f64();

        let resumed_dest = dir.path().join("resumed");
        // skopeo compresses the uncompressed layer on push, so the stored blob is the one the
        // full download just fetched (verified against its digest).
        let data = std::fs::read(&full_dest).context("reading the full download")?;
        let half = data.len() / 2;
        std::fs::write(
            bramble_node::oci::client::partial_path(&resumed_dest),
            &data[..half],
        )?;
        let started = Instant::now();
        let resumed = client
            .download_blob(&reference, &layer, &resumed_dest, None)
            .await?;
        let resumed_secs = started.elapsed().as_secs_f64();
        anyhow::ensure!(
            std::fs::read(&resumed_dest)? == data,
            "the resumed download differs from the source"
        );
        println!(
            "\n| 50 MB image layer pulled by the node's puller | bytes over the network | time |"
        );
        println!("|---|---|---|");
        println!(
            "| full download | {} | {:.0} ms |",
            full.fetched,
            full_secs * 1000.0
        );
        println!(
            "| resumed after a cut at 50% | {} (kept {}) | {:.0} ms |",
            resumed.fetched,
            resumed.resumed_from,
            resumed_secs * 1000.0
        );
        anyhow::Ok(())
    })
}
