//! `containerd-shim-bramble-v1` under a real containerd 1.6, driven with `ctr` the way an
//! operator would: Wasm images imported from OCI archives, run attached and detached, exec'd
//! into, killed, deleted, and a broken image refused without harm to anything else.
//!
//! Needs root, containerd, ctr and runc (`apt-get install -y containerd runc`), the shim built
//! (`cargo build -p bramble-wasm-shim --bin containerd-shim-bramble-v1`) and the sample images
//! (`images/build.sh DIR`, then `BRAMBLE_IMAGES_DIR=DIR`).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use bramble_tests::containerd::Containerd;
use bramble_tests::workspace_binary;

const RUNTIME: &str = "io.containerd.bramble.v1";
const NS: &str = "bramble-shim";
/// What hello.wasm prints first.
const HELLO: &str = "hello from a wasm workload";

fn images_dir() -> Result<PathBuf> {
    let dir = bramble_tests::node::images_dir()?;
    ensure!(
        dir.join("hello-oci.tar").is_file(),
        "{} has no hello-oci.tar: run images/build.sh {} again",
        dir.display(),
        dir.display()
    );
    Ok(dir)
}

/// A private containerd, with the shim built where it finds it.
fn containerd() -> Result<Containerd> {
    workspace_binary("containerd-shim-bramble-v1").context(
        "build the shim first: cargo build -p bramble-wasm-shim --bin containerd-shim-bramble-v1",
    )?;
    Containerd::start()
}

/// Imports `<name>.tar` from the samples; returns its reference.
fn import(c: &Containerd, name: &str) -> Result<String> {
    let archive = images_dir()?.join(format!("{name}.tar"));
    let base = format!("localhost/bramble/{name}");
    c.ctr_ok(&[
        "-n",
        NS,
        "images",
        "import",
        "--base-name",
        &base,
        archive.to_str().context("non-UTF-8 path")?,
    ])?;
    Ok(format!("{base}:v1"))
}

/// The STATUS column of `ctr tasks ls` for `id`.
fn task_status(c: &Containerd, id: &str) -> Result<Option<String>> {
    let out = c.ctr_ok(&["-n", NS, "tasks", "ls"])?;
    Ok(out.lines().skip(1).find_map(|line| {
        let mut cols = line.split_whitespace();
        (cols.next() == Some(id)).then(|| cols.nth(1).unwrap_or_default().to_string())
    }))
}

fn wait_for(what: &str, mut check: impl FnMut() -> Result<bool>) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !check()? {
        if Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// Deletes a stopped task; returns its exit status (ctr 1.6 warns "task ID exit with
/// non-zero exit code N" and says nothing for 0).
fn delete_task(c: &Containerd, id: &str) -> Result<u32> {
    let out = c.ctr(&["-n", NS, "tasks", "delete", id])?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(
        out.status.success(),
        "ctr tasks delete {id} failed: {stderr}"
    );
    match stderr.split("non-zero exit code ").nth(1) {
        None => Ok(0),
        Some(rest) => rest
            .split(|ch: char| !ch.is_ascii_digit())
            .next()
            .and_then(|code| code.parse().ok())
            .with_context(|| format!("no exit code in {stderr:?}")),
    }
}

fn containerd_log(c: &Containerd) -> String {
    let path = c.socket().with_file_name("containerd.log");
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Mount points under containerd's directories (rootfs mounts left behind).
fn mounts_under(c: &Containerd) -> Vec<String> {
    let prefix = c.socket().parent().map(|p| p.to_string_lossy().to_string());
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| {
            prefix
                .as_deref()
                .is_some_and(|prefix| p.starts_with(prefix))
        })
        .map(str::to_string)
        .collect()
}

#[test]
fn ctr_run_prints_the_modules_output_and_a_second_container_reuses_the_compiled_code() -> Result<()>
{
    let c = containerd()?;
    let image = import(&c, "hello-oci")?;
    let out = c.ctr(&[
        "-n",
        NS,
        "run",
        "--rm",
        "--runtime",
        RUNTIME,
        &image,
        "hello1",
    ])?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success() && stdout.contains(HELLO) && stdout.contains("[0] /hello.wasm"),
        "ctr run failed ({}): {stdout}\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        c.log_tail()
    );

    let out = c.ctr(&[
        "-n",
        NS,
        "run",
        "--rm",
        "--runtime",
        RUNTIME,
        "--env",
        "GREETING=hi",
        &image,
        "hello2",
        "/hello.wasm",
        "an-arg",
    ])?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    ensure!(out.status.success(), "second run failed: {stdout}");
    ensure!(
        stdout.contains("[1] an-arg") && stdout.contains("GREETING=hi"),
        "args or env not passed: {stdout}"
    );
    // Each container got its own shim; the second found the first one's compiled code.
    let log = containerd_log(&c);
    let line = log
        .lines()
        .find(|l| l.contains("/hello2/rootfs/hello.wasm"))
        .with_context(|| format!("no load line for hello2 in the log:\n{log}"))?;
    ensure!(
        line.contains("loaded from the disk cache"),
        "recompiled: {line}"
    );

    ensure!(
        c.list(NS, "containers")?.is_empty(),
        "--rm left a container"
    );
    ensure!(
        mounts_under(&c).is_empty(),
        "mounts left: {:?}",
        mounts_under(&c)
    );
    wait_for("the shims to exit", || Ok(c.shim_pids().is_empty()))?;
    Ok(())
}

#[test]
fn a_detached_task_runs_execs_is_killed_with_143_and_leaves_nothing_behind() -> Result<()> {
    let c = containerd()?;
    let image = import(&c, "ticker-oci")?;
    let events_file = tempfile::NamedTempFile::new()?;
    let mut events = c
        .ctr_command(&["events"])
        .stdout(events_file.reopen()?)
        .spawn()
        .context("starting ctr events")?;
    std::thread::sleep(Duration::from_millis(300));
    c.ctr_ok(&[
        "-n",
        NS,
        "run",
        "-d",
        "--runtime",
        RUNTIME,
        "--env",
        "TICK_INTERVAL_MS=100",
        &image,
        "tick1",
    ])?;
    wait_for("tick1 to run", || {
        Ok(task_status(&c, "tick1")?.as_deref() == Some("RUNNING"))
    })?;

    let out = c.ctr(&[
        "-n",
        NS,
        "tasks",
        "exec",
        "--exec-id",
        "x",
        "tick1",
        "/hello.wasm",
        "from-exec",
    ])?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success() && stdout.contains(HELLO) && stdout.contains("[1] from-exec"),
        "exec failed ({}): {stdout} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    ensure!(
        stdout.contains("TICK_INTERVAL_MS=100"),
        "exec did not get the container's env: {stdout}"
    );

    c.ctr_ok(&["-n", NS, "tasks", "kill", "tick1"])?;
    wait_for("tick1 to stop", || {
        Ok(task_status(&c, "tick1")?.as_deref() == Some("STOPPED"))
    })?;
    ensure!(
        delete_task(&c, "tick1")? == 143,
        "a SIGTERM'ed task must exit with 143"
    );
    c.ctr_ok(&["-n", NS, "containers", "delete", "tick1"])?;
    let topics = [
        "/tasks/create",
        "/tasks/start",
        "/tasks/exec-added",
        "/tasks/exec-started",
        "/tasks/exit",
        "/tasks/delete",
    ];
    wait_for("the shim's events", || {
        let seen = std::fs::read_to_string(events_file.path())?;
        Ok(topics.iter().all(|topic| seen.contains(topic)))
    })
    .with_context(|| {
        let seen = std::fs::read_to_string(events_file.path()).unwrap_or_default();
        format!("ctr events saw:\n{seen}")
    })?;
    let _ = events.kill();
    let _ = events.wait();
    ensure!(c.list(NS, "tasks")?.is_empty(), "tasks left");
    ensure!(c.list(NS, "containers")?.is_empty(), "containers left");
    ensure!(
        mounts_under(&c).is_empty(),
        "mounts left: {:?}",
        mounts_under(&c)
    );
    wait_for("the shim to exit", || Ok(c.shim_pids().is_empty()))?;
    Ok(())
}

#[test]
fn containers_of_one_group_share_one_shim_process() -> Result<()> {
    let c = containerd()?;
    let image = import(&c, "ticker-oci")?;
    for id in ["g-a", "g-b"] {
        c.ctr_ok(&[
            "-n",
            NS,
            "run",
            "-d",
            "--runtime",
            RUNTIME,
            "--annotation",
            "io.containerd.runc.v2.group=pod1",
            &image,
            id,
        ])?;
    }
    for id in ["g-a", "g-b"] {
        wait_for("both to run", || {
            Ok(task_status(&c, id)?.as_deref() == Some("RUNNING"))
        })?;
    }
    ensure!(c.shim_pids().len() == 1, "shims: {:?}", c.shim_pids());

    // Deleting the first leaves the second running in the same shim.
    c.ctr_ok(&["-n", NS, "tasks", "kill", "-s", "SIGKILL", "g-a"])?;
    wait_for("g-a to stop", || {
        Ok(task_status(&c, "g-a")?.as_deref() == Some("STOPPED"))
    })?;
    ensure!(
        delete_task(&c, "g-a")? == 137,
        "a SIGKILL'ed task must exit with 137"
    );
    c.ctr_ok(&["-n", NS, "containers", "delete", "g-a"])?;
    ensure!(task_status(&c, "g-b")?.as_deref() == Some("RUNNING"));
    ensure!(c.shim_pids().len() == 1, "the shim went away with g-a");

    c.ctr_ok(&["-n", NS, "tasks", "kill", "g-b"])?;
    wait_for("g-b to stop", || {
        Ok(task_status(&c, "g-b")?.as_deref() == Some("STOPPED"))
    })?;
    delete_task(&c, "g-b")?;
    c.ctr_ok(&["-n", NS, "containers", "delete", "g-b"])?;
    wait_for("the shim to exit", || Ok(c.shim_pids().is_empty()))?;
    ensure!(
        mounts_under(&c).is_empty(),
        "mounts left: {:?}",
        mounts_under(&c)
    );
    Ok(())
}

#[test]
fn a_broken_module_fails_the_task_clearly_and_harms_nothing_else() -> Result<()> {
    let c = containerd()?;
    let ticker = import(&c, "ticker-oci")?;
    let garbage = import(&c, "garbage-oci")?;
    c.ctr_ok(&[
        "-n",
        NS,
        "run",
        "-d",
        "--runtime",
        RUNTIME,
        &ticker,
        "healthy",
    ])?;
    wait_for("healthy to run", || {
        Ok(task_status(&c, "healthy")?.as_deref() == Some("RUNNING"))
    })?;

    let out = c.ctr(&[
        "-n",
        NS,
        "run",
        "--rm",
        "--runtime",
        RUNTIME,
        &garbage,
        "broken",
    ])?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(!out.status.success(), "garbage ran: {stderr}");
    ensure!(
        stderr.contains("cannot load wasm module") && stderr.contains("hello.wasm"),
        "unclear error: {stderr}"
    );

    // A module path that is not in the image is refused just as clearly.
    let out = c.ctr(&[
        "-n",
        NS,
        "run",
        "--rm",
        "--runtime",
        RUNTIME,
        &ticker,
        "missing",
        "/nope.wasm",
    ])?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(
        !out.status.success() && stderr.contains("nope.wasm"),
        "missing module: {} {stderr}",
        out.status
    );

    c.ctr_ok(&["version"])?;
    ensure!(task_status(&c, "healthy")?.as_deref() == Some("RUNNING"));
    ensure!(
        task_status(&c, "broken")?.is_none(),
        "the broken task exists"
    );
    // Only the healthy task's shim is left; the failed ones exited.
    wait_for("the failed shims to exit", || Ok(c.shim_pids().len() == 1))?;

    c.ctr_ok(&["-n", NS, "tasks", "kill", "-s", "SIGKILL", "healthy"])?;
    wait_for("healthy to stop", || {
        Ok(task_status(&c, "healthy")?.as_deref() == Some("STOPPED"))
    })?;
    delete_task(&c, "healthy")?;
    c.ctr_ok(&["-n", NS, "containers", "delete", "healthy"])?;
    ensure!(c.list(NS, "containers")?.is_empty(), "containers left");
    ensure!(
        mounts_under(&c).is_empty(),
        "mounts left: {:?}",
        mounts_under(&c)
    );
    Ok(())
}
