//! `bramble image push/ls/inspect` against a running cluster, for every sample workload, and
//! the node's puller bringing each one back byte for byte.

use anyhow::{ensure, Context, Result};
use bramble_node::image_cache::ImageCache;
use bramble_node::oci::client::{ClientConfig, RegistryClient};
use bramble_node::oci::Reference;
use bramble_tests::node::images_dir;
use bramble_tests::Cluster;
use serde_json::Value;

const SAMPLES: &[(&str, &str)] = &[
    ("hello", "wasip1"),
    ("ticker", "wasip1"),
    ("sensor", "wasip1"),
    ("crasher", "wasip1"),
    ("http-echo", "wasip2"),
    ("hostile-busy-loop", "wasip1"),
    ("hostile-memory-bomb", "wasip1"),
    ("hostile-deep-recursion", "wasip1"),
    ("hostile-escape", "wasip1"),
    ("hostile-output-flood", "wasip1"),
];

fn bramble_ok(c: &Cluster, args: &[&str]) -> Result<String> {
    c.bramble_ok(args)
}

fn bramble(c: &Cluster, args: &[&str]) -> Result<std::process::Output> {
    c.bramble(args)
}

/// A puller configured the way a node is: the cluster CA and a client certificate.
fn node_client(c: &Cluster) -> Result<RegistryClient> {
    let pki = c.data_dir().join("pki");
    let mut identity = std::fs::read(pki.join("admin.crt"))?;
    identity.push(b'\n');
    identity.extend(std::fs::read(pki.join("admin.key"))?);
    Ok(RegistryClient::new(ClientConfig {
        ca_pem: Some(std::fs::read(pki.join("ca.crt"))?),
        identity_pem: Some(identity),
        ..Default::default()
    })?)
}

#[test]
fn every_sample_is_pushed_and_pulled_back_byte_for_byte() -> Result<()> {
    let images = images_dir()?;
    let c = Cluster::start()?;
    let host = c.url().trim_start_matches("https://").to_string();
    for (name, os) in SAMPLES {
        let file = images.join(format!("{name}.wasm"));
        let out = bramble_ok(
            &c,
            &[
                "image",
                "push",
                &file.to_string_lossy(),
                &format!("samples/{name}:v1"),
            ],
        )?;
        ensure!(
            out.contains(&format!("samples/{name}:v1")) && out.contains("sha256:"),
            "{out}"
        );
        let inspect: Value = serde_json::from_str(&bramble_ok(
            &c,
            &[
                "image",
                "inspect",
                &format!("samples/{name}:v1"),
                "-o",
                "json",
            ],
        )?)?;
        ensure!(
            inspect["config"]["os"] == *os && inspect["config"]["architecture"] == "wasm",
            "{name}: {inspect}"
        );
        ensure!(
            inspect["manifest"]["layers"][0]["mediaType"] == "application/wasm",
            "{name}: {inspect}"
        );
    }
    let ls = bramble_ok(&c, &["image", "ls"])?;
    for (name, _) in SAMPLES {
        ensure!(ls.contains(&format!("samples/{name}")), "{ls}");
    }

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let client = node_client(&c)?;
        let cache = ImageCache::open(c.scratch().join("node-cache"), 512 << 20).await?;
        for (name, _) in SAMPLES {
            let original = std::fs::read(images.join(format!("{name}.wasm")))?;
            let by_tag = cache
                .pull(
                    &client,
                    &Reference::parse(&format!("{host}/samples/{name}:v1"))?,
                )
                .await?;
            let module = by_tag
                .module_path()
                .context("a Wasm artifact has a module")?;
            ensure!(
                std::fs::read(module)? == original,
                "{name} came back different by tag"
            );
            let by_digest =
                Reference::parse(&format!("{host}/samples/{name}@{}", by_tag.manifest_digest))?;
            let again = cache.pull(&client, &by_digest).await?;
            ensure!(
                std::fs::read(again.module_path().context("module")?)? == original,
                "{name} came back different by digest"
            );
        }
        anyhow::Ok(())
    })?;
    Ok(())
}

#[test]
fn bad_pushes_fail_with_clear_messages() -> Result<()> {
    let c = Cluster::start()?;
    let scratch = c.scratch();
    let script = scratch.join("run.sh");
    std::fs::write(&script, "#!/bin/sh\necho hi\n")?;
    let out = bramble(
        &c,
        &["image", "push", &script.to_string_lossy(), "samples/x:v1"],
    )?;
    ensure!(
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("run.sh"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = bramble(
        &c,
        &[
            "image",
            "push",
            &scratch.join("missing.wasm").to_string_lossy(),
            "samples/x:v1",
        ],
    )?;
    ensure!(!out.status.success(), "a missing file must fail");
    let wasm = scratch.join("tiny.wasm");
    std::fs::write(&wasm, b"\0asm\x01\0\0\0")?;
    let out = bramble(
        &c,
        &[
            "image",
            "push",
            &wasm.to_string_lossy(),
            "samples/x:bad tag",
        ],
    )?;
    ensure!(!out.status.success(), "an invalid reference must fail");
    let out = bramble(&c, &["image", "inspect", "samples/absent:v1"])?;
    ensure!(
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("not found"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    ensure!(
        !bramble_ok(&c, &["image", "ls"])?.contains("samples/x"),
        "nothing may be stored by failed pushes"
    );
    Ok(())
}
