//! A `kube` Rust client for a [`crate::Cluster`], built from the kubeconfig the server wrote.

use anyhow::Result;

/// A client authenticated as the cluster admin.
pub async fn client(cluster: &crate::Cluster) -> Result<kube::Client> {
    let kubeconfig = kube::config::Kubeconfig::read_from(cluster.kubeconfig())?;
    let config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await?;
    Ok(kube::Client::try_from(config)?)
}
