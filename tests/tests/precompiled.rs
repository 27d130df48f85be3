//! Boards that leave compiling to the control plane (`bramble-node --wasm-compile
//! control-plane`, the only mode of the board build without the Wasm compiler): the control
//! plane compiles each module once for the nodes' target, the nodes keep the artifacts and run
//! them again without asking, even while the control plane is away.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use bramble_tests::node::Node;
use bramble_tests::Cluster;
use serde_json::Value;

fn phase(p: &Value) -> &str {
    p["status"]["phase"].as_str().unwrap_or("")
}

fn pod(name: &str, image: &str, node: &str, restart: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  nodeName: {node}\n  restartPolicy: {restart}\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: c\n    image: {image}\n    env:\n    - name: TICK_INTERVAL_MS\n      value: \"100\"\n"
    )
}

/// Files under `dir` whose names end with `suffix`.
fn files_ending(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files_ending(&path, suffix));
        } else if path.to_string_lossy().ends_with(suffix) {
            found.push(path);
        }
    }
    found
}

/// How many modules the control plane has compiled for nodes (its log says so once each).
fn compiles(c: &Cluster) -> usize {
    c.server_log()
        .matches("precompiled a module for nodes")
        .count()
}

/// Total bytes of the container logs a node holds.
fn log_bytes(node: &Node) -> u64 {
    files_ending(&node.data_dir().join("pods"), ".log")
        .iter()
        .filter_map(|f| std::fs::metadata(f).ok())
        .map(|m| m.len())
        .sum()
}

#[test]
fn boards_run_modules_the_control_plane_compiled_for_them() -> Result<()> {
    let mut c = Cluster::start()?;
    let token = c.bramble_ok(&["token", "create"])?;
    let flags = ["--wasm-compile", "control-plane"];
    let mut board = Node::join_with(&c, "board-1", token.trim(), &flags)?;
    let other = Node::join_with(&c, "board-2", token.trim(), &flags)?;
    let hello = c.push_sample("hello")?;
    let ticker = c.push_sample("ticker")?;

    // Two boards run the same ticker; one also runs hello.
    c.kubectl_stdin(
        &["apply", "-f", "-"],
        &pod("hello", &hello, "board-1", "Never"),
    )?;
    c.kubectl_stdin(
        &["apply", "-f", "-"],
        &pod("tick-1", &ticker, "board-1", "Always"),
    )?;
    c.kubectl_stdin(
        &["apply", "-f", "-"],
        &pod("tick-2", &ticker, "board-2", "Always"),
    )?;
    let wait = Duration::from_secs(90);
    c.wait_for(&["pod", "hello"], "hello to succeed", wait, |p| {
        phase(p) == "Succeeded"
    })?;
    let log = c.kubectl_ok(&["logs", "hello"])?;
    ensure!(log.contains("hello from a wasm workload"), "{log}");
    for name in ["tick-1", "tick-2"] {
        c.wait_for(&["pod", name], "the ticker to run", wait, |p| {
            phase(p) == "Running"
        })?;
    }

    // Each module was compiled once, on the control plane, and kept there; the boards
    // compiled nothing and keep the artifacts they were sent.
    let compiled = compiles(&c);
    ensure!(
        compiled == 2,
        "the control plane compiled {compiled} times:\n{}",
        c.server_log()
    );
    let kept = files_ending(&c.data_dir().join("precompiled"), ".cwasm");
    ensure!(kept.len() == 2, "{kept:?}");
    ensure!(
        board
            .log()
            .matches("installed a module precompiled by the control plane")
            .count()
            == 2,
        "{}",
        board.log()
    );
    ensure!(
        other
            .log()
            .matches("installed a module precompiled by the control plane")
            .count()
            == 1,
        "{}",
        other.log()
    );
    ensure!(files_ending(&board.data_dir().join("modules"), ".cwasm").len() == 2);

    // Without the control plane, a restarted board runs its ticker again from its own disk.
    c.stop()?;
    board.kill9()?;
    board.start_again()?;
    let before = log_bytes(&board);
    let deadline = Instant::now() + Duration::from_secs(30);
    while log_bytes(&board) <= before {
        ensure!(
            Instant::now() < deadline,
            "the ticker did not run again while the control plane was away; files {:?}; node log:\n{}",
            files_ending(&board.data_dir().join("pods"), "")
                .iter()
                .map(|f| (f.clone(), std::fs::read_to_string(f).unwrap_or_default()))
                .collect::<Vec<_>>(),
            board.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    ensure!(
        !board.log().contains("not compiled for this node yet"),
        "{}",
        board.log()
    );

    // Back online: nothing is compiled again.
    c.start_again()?;
    c.wait_for(&["pod", "tick-1"], "the ticker to be reported", wait, |p| {
        phase(p) == "Running"
    })?;
    let compiled = compiles(&c);
    ensure!(compiled == 2, "compiled again after a restart: {compiled}");
    let node = c.get_json(&["node", "board-1"])?;
    let ready = node["status"]["conditions"]
        .as_array()
        .context("no conditions")?
        .iter()
        .any(|cond| cond["type"] == "Ready" && cond["status"] == "True");
    ensure!(ready, "{node:#}");
    Ok(())
}
