//! Hollow nodes (kubemark/KWOK style): a fleet of simulated nodes in one process, each joining
//! with the token and holding its own stream through the real node protocol, reporting its
//! pods as they would run (see [`pod_behaviour`]) without running anything. Scale tests and
//! benchmarks use it to put thousands of nodes in front of one control plane.
//!
//! Control: one command per line on stdin, `<silent|not-ready|resume> <node|all>`; the fleet
//! answers `ok ...` on stdout. It prints `fleet ready: N nodes connected` once every node has
//! registered.

pub mod hollow_node;
pub mod pod_behaviour;

use std::collections::HashMap;
use std::sync::Arc;

use bramble_api::node_protocol::{NodeAddress, NodeInfo};
use futures::StreamExt as _;
use tokio::io::AsyncBufReadExt as _;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::credentials::{Cluster, JoinError};
use hollow_node::{HollowNode, Mode};

/// How many joins run at once.
const JOIN_CONCURRENCY: usize = 32;

/// What the fleet looks like.
#[derive(Debug, Clone)]
pub struct FleetOptions {
    /// The control plane, https://HOST:PORT.
    pub server: String,
    /// A join token.
    pub token: String,
    /// How many nodes.
    pub count: usize,
    /// Node names are `<prefix>-<index>`.
    pub prefix: String,
    /// kubernetes.io/arch of every node.
    pub arch: String,
    /// Runtimes every node offers (RuntimeClass handlers).
    pub runtimes: Vec<String>,
    /// cpu, memory and pods capacity of each node.
    pub cpu: String,
    /// Memory capacity, e.g. "8Gi".
    pub memory: String,
    /// Most pods per node.
    pub max_pods: u32,
}

fn node_info(options: &FleetOptions, name: &str, index: usize) -> NodeInfo {
    let capacity: HashMap<String, String> = [
        ("cpu".to_string(), options.cpu.clone()),
        ("memory".to_string(), options.memory.clone()),
        ("pods".to_string(), options.max_pods.to_string()),
    ]
    .into();
    NodeInfo {
        name: name.to_string(),
        arch: options.arch.clone(),
        os: "linux".into(),
        board: "hollow".into(),
        kernel_version: "hollow".into(),
        os_image: "Bramble hollow node".into(),
        agent_version: format!("{}-hollow", env!("CARGO_PKG_VERSION")),
        allocatable: capacity.clone(),
        capacity,
        runtimes: options.runtimes.clone(),
        addresses: vec![
            NodeAddress {
                r#type: "InternalIP".into(),
                address: format!("10.255.{}.{}", (index >> 8) & 0xff, index & 0xff),
            },
            NodeAddress {
                r#type: "Hostname".into(),
                address: name.to_string(),
            },
        ],
        machine_id: format!("hollow-{index}"),
        boot_id: format!("hollow-{index}"),
    }
}

/// Joins `options.count` hollow nodes and runs them until `shutdown`, taking commands from
/// stdin.
pub async fn run_fleet(
    options: FleetOptions,
    shutdown: CancellationToken,
) -> Result<(), JoinError> {
    let cluster = Cluster::trust(&options.server, &options.token).await?;
    let channel = cluster.join_channel().await?;
    let names: Vec<String> = (0..options.count)
        .map(|i| format!("{}-{i}", options.prefix))
        .collect();
    let joined: Vec<Result<_, JoinError>> = futures::stream::iter(names.iter().enumerate())
        .map(|(i, name)| {
            let cluster = &cluster;
            let channel = &channel;
            async move { cluster.join(channel, name).await.map(|c| (i, c)) }
        })
        .buffer_unordered(JOIN_CONCURRENCY)
        .collect()
        .await;
    let mut nodes: HashMap<String, Arc<HollowNode>> = HashMap::new();
    let (connected_tx, mut connected_rx) = mpsc::unbounded_channel();
    let mut tasks = tokio::task::JoinSet::new();
    let exit_codes = Arc::new(std::sync::Mutex::new(pod_behaviour::ExitCodes::default()));
    for result in joined {
        let (index, credentials) = result?;
        let name = names[index].clone();
        let node = Arc::new(HollowNode::new(
            credentials,
            node_info(&options, &name, index),
            index,
            exit_codes.clone(),
        ));
        tasks.spawn(node.clone().run(connected_tx.clone(), shutdown.clone()));
        nodes.insert(name, node);
    }
    eprintln!("bramble-node: {} hollow nodes joined", nodes.len());
    let mut first_seen = std::collections::HashSet::new();
    let mut announced = false;
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut stdin_open = true;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            Some(name) = connected_rx.recv() => {
                first_seen.insert(name);
                if !announced && first_seen.len() == nodes.len() {
                    announced = true;
                    println!("fleet ready: {} nodes connected", nodes.len());
                }
            }
            line = lines.next_line(), if stdin_open => match line {
                Ok(Some(line)) => println!("{}", command(&nodes, line.trim())),
                _ => stdin_open = false,
            },
        }
    }
    tasks.shutdown().await;
    Ok(())
}

/// Applies one control command; returns the answer line.
fn command(nodes: &HashMap<String, Arc<HollowNode>>, line: &str) -> String {
    let mut words = line.split_whitespace();
    let (Some(verb), Some(target)) = (words.next(), words.next()) else {
        return format!("error: expected `<silent|not-ready|resume> <node|all>`, got {line:?}");
    };
    let mode = match verb {
        "silent" => Mode::Silent,
        "not-ready" => Mode::NotReady,
        "resume" => Mode::Up,
        other => {
            return format!("error: unknown command {other:?}: use silent, not-ready or resume")
        }
    };
    if target == "all" {
        nodes.values().for_each(|n| n.set_mode(mode));
    } else {
        match nodes.get(target) {
            Some(node) => node.set_mode(mode),
            None => return format!("error: no hollow node named {target:?}"),
        }
    }
    format!("ok {verb} {target}")
}
