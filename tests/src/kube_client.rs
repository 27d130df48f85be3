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

/// Sends a raw request through `client` (authenticated as the admin) and returns the status
/// code and the JSON body (Null when the body is not JSON), for tests of malformed input.
pub async fn send_raw(
    client: &kube::Client,
    method: &str,
    path: &str,
    content_type: &str,
    body: Vec<u8>,
) -> Result<(u16, serde_json::Value)> {
    use http_body_util::BodyExt as _;
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("Content-Type", content_type)
        .body(kube::client::Body::from(body))?;
    let resp = client.send(req).await?;
    let code = resp.status().as_u16();
    let bytes = resp.into_body().collect().await?.to_bytes();
    Ok((
        code,
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
    ))
}
