//! `bramble up`: a whole cluster in one process. The control plane starts as `bramble server`
//! would, then a node agent runs in-process with a certificate issued directly from the
//! cluster's PKI (the two trust each other already; no join token is involved).

use std::net::SocketAddr;

use anyhow::Context as _;
use bramble_node::credentials::Credentials;
use bramble_node::run::{hostname, run_node, NodeOptions};
use tokio_util::sync::CancellationToken;

use crate::pki::{Pki, NODES_GROUP, NODE_USER_PREFIX};
use crate::server::{run as run_server, ServerConfig};

/// Runs the control plane and a local node until `shutdown`.
pub async fn run(config: ServerConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    let data_dir = config.data_dir.clone();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<SocketAddr>();
    let server = tokio::spawn(run_server(
        config,
        shutdown.clone(),
        Some(Box::new(move |addr| {
            let _ = ready_tx.send(addr);
        })),
    ));
    let Ok(addr) = ready_rx.await else {
        return server.await.context("the control plane task failed")?;
    };
    let pki = Pki::load_or_create(&data_dir, &[])?;
    let name = hostname();
    let (cert_pem, key_pem) =
        pki.issue_client(&format!("{NODE_USER_PREFIX}{name}"), &[NODES_GROUP], 365)?;
    let credentials = Credentials {
        server: format!("https://127.0.0.1:{}", addr.port()),
        node_name: name.clone(),
        ca_pem: pki.ca_pem.clone(),
        cert_pem,
        key_pem,
    };
    let kubeconfig = data_dir.join("kubeconfig.yaml");
    println!(
        "Bramble is up: control plane on {addr}, node {name}.\n\n  export KUBECONFIG={}\n  kubectl get nodes\n\nJoin more nodes with `bramble token create`, then `bramble-node join --server https://<this host>:{} --token <token>`.",
        kubeconfig.display(),
        addr.port()
    );
    let options = NodeOptions {
        data_dir: data_dir.join("node"),
        board: "generic".into(),
        max_pods: 110,
        host_ip: "127.0.0.1".into(),
        image_budget: 1024 * 1024 * 1024,
        on_shutdown: bramble_node::run::OnShutdown::Keep,
        containerd: None,
        wasm_compile: bramble_node::run::WasmCompile::Local,
    };
    let node = tokio::spawn(run_node(credentials, options, shutdown.clone()));
    let served = server.await.context("the control plane task failed")?;
    shutdown.cancel();
    node.await.context("the node task failed")??;
    served
}
