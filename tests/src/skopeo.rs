//! skopeo against a cluster's embedded registry: the cluster's CA, its admin token as
//! credentials. How the tests put OCI images (busybox) into the registry.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::Cluster;

/// skopeo with the cluster's CA and admin credentials.
pub struct Skopeo {
    /// Holds the cluster's CA certificate.
    pub cert_dir: PathBuf,
    creds: String,
}

impl Skopeo {
    /// skopeo for `c`'s registry.
    pub fn for_cluster(c: &Cluster) -> Result<Skopeo> {
        let cert_dir = c.scratch().join("skopeo-certs");
        std::fs::create_dir_all(&cert_dir)?;
        std::fs::copy(c.data_dir().join("pki/ca.crt"), cert_dir.join("ca.crt"))?;
        let token = std::fs::read_to_string(c.data_dir().join("pki/admin.token"))?;
        Ok(Skopeo {
            cert_dir,
            creds: format!("admin:{}", token.trim()),
        })
    }

    /// Runs skopeo; fails with its stderr.
    pub fn run(&self, args: &[&str]) -> Result<String> {
        let out = Command::new("skopeo")
            .args(args)
            .output()
            .context("skopeo is not installed (the test command installs it)")?;
        if !out.status.success() {
            bail!(
                "skopeo {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Copies `from` to the cluster's registry at `to`.
    pub fn push(&self, from: &str, to: &str) -> Result<String> {
        let cert = self.cert_dir.to_string_lossy().to_string();
        self.run(&[
            "copy",
            "--dest-cert-dir",
            &cert,
            "--dest-creds",
            &self.creds,
            from,
            to,
        ])
    }

    /// Copies `from` in the cluster's registry to `to`.
    pub fn pull(&self, from: &str, to: &str) -> Result<String> {
        let cert = self.cert_dir.to_string_lossy().to_string();
        self.run(&[
            "copy",
            "--src-cert-dir",
            &cert,
            "--src-creds",
            &self.creds,
            from,
            to,
        ])
    }
}

impl Cluster {
    /// Pushes the OCI layout `$BRAMBLE_IMAGES_DIR/<name>` (tag v1) as `samples/<name>:v1`;
    /// returns the reference pods use (`127.0.0.1:PORT/samples/<name>:v1`).
    pub fn push_oci_sample(&self, name: &str) -> Result<String> {
        let layout = crate::node::images_dir()?.join(name);
        let reference = format!(
            "{}/samples/{name}:v1",
            self.url().trim_start_matches("https://")
        );
        Skopeo::for_cluster(self)?.push(
            &format!("oci:{}:v1", layout.display()),
            &format!("docker://{reference}"),
        )?;
        Ok(reference)
    }
}
