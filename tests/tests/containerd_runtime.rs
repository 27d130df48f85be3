//! The node's containerd layer against a real containerd 1.6 and runc: the busybox sample image
//! is pushed to a real registry (Debian's docker-registry, with skopeo), pulled through the
//! node's image cache, imported into containerd and run.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use bramble_node::containerd::{
    container_args, merge_env, open_fifo_reader, Containerd, ContainerdConfig, ExecIo, LaunchSpec,
    TaskState, UnpackedImage,
};
use bramble_node::image_cache::{ImageCache, PulledImage};
use bramble_node::oci::client::{ClientConfig, RegistryClient};
use bramble_node::oci::Reference;
use bramble_tests::containerd::Containerd as ContainerdProcess;
use bramble_tests::upstream_registry::UpstreamRegistry;
use tokio::io::AsyncReadExt;

const NAMESPACE: &str = "bramble";
const SIGTERM: u32 = 15;
static FIXTURES: AtomicUsize = AtomicUsize::new(0);

/// A private containerd, a registry holding busybox, the image pulled into a node cache, and a
/// client of the layer under test.
struct Fixture {
    process: ContainerdProcess,
    _registry: UpstreamRegistry,
    dir: tempfile::TempDir,
    reference: String,
    pulled: PulledImage,
    client: Containerd,
    /// Prefix of this fixture's container ids: runc keeps its state per namespace and id in one
    /// host-wide directory, so tests running at once (or a crashed earlier run) must not share
    /// ids.
    tag: String,
}

impl Fixture {
    async fn start() -> Result<Fixture> {
        let process = ContainerdProcess::start()?;
        let registry = UpstreamRegistry::start()?;
        let images = std::env::var("BRAMBLE_IMAGES_DIR").context(
            "BRAMBLE_IMAGES_DIR is not set: build the sample images (scripts/build-images.sh) and export it",
        )?;
        let reference = format!("{}/samples/busybox:v1", registry.host());
        let out = std::process::Command::new("skopeo")
            .args(["copy", "--dest-tls-verify=false"])
            .arg(format!("oci:{images}/busybox:v1"))
            .arg(format!("docker://{reference}"))
            .output()
            .context("skopeo is not installed (apt-get install -y skopeo)")?;
        if !out.status.success() {
            bail!(
                "skopeo copy failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let dir = tempfile::Builder::new()
            .prefix("bramble-ctrd-test-")
            .tempdir()?;
        let cache = ImageCache::open(dir.path().join("images"), 1 << 30).await?;
        let registry_client = RegistryClient::new(ClientConfig {
            plain_http_loopback: true,
            ..Default::default()
        })?;
        let pulled = cache
            .pull(&registry_client, &Reference::parse(&reference)?)
            .await?;
        let client = Containerd::connect(config(&process, dir.path())).await?;
        Ok(Fixture {
            process,
            _registry: registry,
            dir,
            reference,
            pulled,
            client,
            tag: format!(
                "t{}-{}",
                std::process::id(),
                FIXTURES.fetch_add(1, Ordering::Relaxed)
            ),
        })
    }

    fn id(&self, name: &str) -> String {
        format!("{}-{name}", self.tag)
    }

    fn io(&self, id: &str) -> (PathBuf, PathBuf) {
        let io = self.dir.path().join("io").join(id);
        (io.join("stdout"), io.join("stderr"))
    }

    fn launch(&self, image: &UnpackedImage, name: &str, args: &[&str]) -> LaunchSpec {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let (stdout, stderr) = self.io(name);
        LaunchSpec {
            id: self.id(name),
            labels: [("bramble.dev/pod".to_owned(), format!("default/{name}"))].into(),
            image: image.clone(),
            args: container_args(&args, &[], &image.config),
            env: merge_env(&image.config.env, &[("GREETING".into(), "hi".into())]),
            hostname: name.to_owned(),
            stdout,
            stderr,
            ..Default::default()
        }
    }

    fn listed(&self, what: &str) -> Vec<String> {
        self.process.list(NAMESPACE, what).expect("ctr list")
    }

    /// Nothing of the container is left: task, container, snapshot, state files, cgroup (and
    /// the output FIFOs when `create` made them).
    fn assert_gone(&self, name: &str, fifos_were_ours: bool) {
        let id = &self.id(name);
        for what in ["tasks", "containers", "snapshots"] {
            assert!(
                !self.listed(what).iter().any(|name| name == id),
                "{what} still lists {id}: {:?}",
                self.listed(what)
            );
        }
        assert!(
            !self.dir.path().join("state").join(id).exists(),
            "state dir left"
        );
        if fifos_were_ours {
            assert!(!self.io(name).0.exists(), "stdout FIFO left");
        }
        let cgroup = Path::new("/sys/fs/cgroup/memory/bramble").join(id);
        assert!(!cgroup.exists(), "cgroup {} left", cgroup.display());
    }
}

fn config(process: &ContainerdProcess, dir: &Path) -> ContainerdConfig {
    ContainerdConfig::new(process.socket(), dir.join("state"))
}

/// Opens a FIFO's read end the way the agent does and reads it to EOF (when the process has
/// exited and the shim closed it).
async fn read_fifo(path: &Path) -> Result<String> {
    let mut receiver = open_fifo_reader(path).await?;
    let mut text = String::new();
    tokio::time::timeout(Duration::from_secs(60), receiver.read_to_string(&mut text))
        .await
        .context("FIFO did not reach EOF")??;
    Ok(text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busybox_runs_exits_execs_is_listed_killed_and_removed() -> Result<()> {
    let f = Fixture::start().await?;
    let image = f.client.ensure_image(&f.reference, &f.pulled).await?;
    let again = f.client.ensure_image(&f.reference, &f.pulled).await?;
    assert_eq!(image, again, "ensure_image is idempotent");
    assert!(
        f.listed("images").contains(&f.reference),
        "{:?}",
        f.listed("images")
    );
    assert!(f.listed("snapshots").contains(&image.chain_id));
    // containerd agrees the image is complete and unpacked.
    let check = f.process.ctr_ok(&["-n", NAMESPACE, "images", "check"])?;
    assert!(check.contains("complete"), "{check}");

    // echo: output through the FIFO, exit 0.
    let spec = f.launch(
        &image,
        "echo",
        &["sh", "-c", "echo $GREETING; echo oops >&2"],
    );
    let stdout = tokio::spawn({
        let path = spec.stdout.clone();
        async move { read_fifo(&path).await }
    });
    let stderr = tokio::spawn({
        let path = spec.stderr.clone();
        async move { read_fifo(&path).await }
    });
    f.client.create(&spec).await?;
    assert!(f.client.start(&f.id("echo")).await? > 0);
    let exit = f.client.wait(&f.id("echo")).await?;
    assert_eq!((exit.code, exit.oom_killed), (0, false));
    assert!(exit.exited_at.is_some());
    assert_eq!(stdout.await??, "hi\n");
    assert_eq!(stderr.await??, "oops\n");

    // exit code.
    let spec = f.launch(&image, "exit3", &["sh", "-c", "exit 3"]);
    f.client.create(&spec).await?;
    f.client.start(&f.id("exit3")).await?;
    assert_eq!(f.client.wait(&f.id("exit3")).await?.code, 3);

    // A sleeping container: listed with labels and Running, exec works, SIGTERM ends it.
    // A pid 1 only receives the signals it handles (pid_namespaces(7)), so the shell traps
    // SIGTERM the way a well-behaved server does.
    let spec = f.launch(
        &image,
        "sleeper",
        &[
            "sh",
            "-c",
            "trap 'echo terminated; exit 143' TERM; sleep 600 & wait",
        ],
    );
    f.client.create(&spec).await?;
    let pid = f.client.start(&f.id("sleeper")).await?;
    let listed = f.client.list().await?;
    let sleeper = listed
        .iter()
        .find(|c| c.id == f.id("sleeper"))
        .context("sleeper listed")?;
    assert_eq!(sleeper.task, Some(TaskState::Running { pid }));
    assert_eq!(
        sleeper.labels.get("bramble.dev/pod").map(String::as_str),
        Some("default/sleeper")
    );
    let exited = listed
        .iter()
        .find(|c| c.id == f.id("exit3"))
        .context("exit3 listed")?;
    assert!(matches!(
        exited.task,
        Some(TaskState::Stopped { code: 3, .. })
    ));

    let exec_dir = f.dir.path().join("exec");
    let io = ExecIo {
        stdin: None,
        stdout: exec_dir.join("out"),
        stderr: exec_dir.join("err"),
    };
    // The reader is opened concurrently with exec, as the agent must (see open_fifo_reader).
    let out = tokio::spawn({
        let path = io.stdout.clone();
        async move { read_fifo(&path).await }
    });
    let args = vec![
        "sh".into(),
        "-c".into(),
        "echo in $(hostname); exit 7".into(),
    ];
    let handle = f
        .client
        .exec(&f.id("sleeper"), "probe-1", args, io.clone())
        .await?;
    assert_eq!(handle.wait().await?, 7);
    assert_eq!(out.await??, "in sleeper\n");
    let exec_state = f
        .dir
        .path()
        .join("state")
        .join(f.id("sleeper"))
        .join("exec-probe-1");
    assert!(
        !exec_state.exists(),
        "the exec's state is removed after wait"
    );

    f.client.kill(&f.id("sleeper"), SIGTERM).await?;
    let exit = tokio::time::timeout(Duration::from_secs(30), f.client.wait(&f.id("sleeper")))
        .await
        .context("SIGTERM did not end sleep")??;
    assert_eq!(exit.code, 128 + SIGTERM, "{exit:?}");
    f.client.kill(&f.id("sleeper"), SIGTERM).await?; // gone already: not an error

    for id in ["echo", "exit3", "sleeper"] {
        f.client.remove(&f.id(id)).await?;
        f.client.remove(&f.id(id)).await?; // idempotent
                                           // The echo test's readers made its FIFOs; `create` made the others, and `remove`
                                           // deletes those.
        f.assert_gone(id, id != "echo");
    }
    assert!(f.client.list().await?.is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_past_its_memory_limit_is_reported_oom_killed() -> Result<()> {
    let f = Fixture::start().await?;
    let image = f.client.ensure_image(&f.reference, &f.pulled).await?;
    let mut spec = f.launch(
        &image,
        "hog",
        &["sh", "-c", "x=a; while true; do x=$x$x; done"],
    );
    spec.memory_limit = Some(16 << 20);
    f.client.create(&spec).await?;
    let limit = std::fs::read_to_string(
        Path::new("/sys/fs/cgroup/memory/bramble")
            .join(&spec.id)
            .join("memory.limit_in_bytes"),
    )?;
    assert_eq!(limit.trim(), (16u64 << 20).to_string());
    f.client.start(&f.id("hog")).await?;
    let exit = tokio::time::timeout(Duration::from_secs(120), f.client.wait(&f.id("hog")))
        .await
        .context("the memory hog was not stopped")??;
    assert!(exit.oom_killed, "{exit:?}");
    assert_eq!(exit.code, 137, "killed by SIGKILL: {exit:?}");

    // A container that exits on its own under a limit is not reported as OOM-killed.
    let mut spec = f.launch(&image, "modest", &["sh", "-c", ":"]);
    spec.memory_limit = Some(16 << 20);
    f.client.create(&spec).await?;
    f.client.start(&f.id("modest")).await?;
    let exit = f.client.wait(&f.id("modest")).await?;
    assert_eq!((exit.code, exit.oom_killed), (0, false));
    for id in ["hog", "modest"] {
        f.client.remove(&f.id(id)).await?;
        f.assert_gone(id, true);
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_binary_is_a_clear_error_that_leaves_nothing_behind() -> Result<()> {
    let f = Fixture::start().await?;
    let image = f.client.ensure_image(&f.reference, &f.pulled).await?;
    let spec = f.launch(&image, "broken", &["/no/such/binary"]);
    let stdout = tokio::spawn({
        let path = spec.stdout.clone();
        async move { read_fifo(&path).await }
    });
    let err = f.client.create(&spec).await.expect_err("create must fail");
    assert_eq!(
        stdout.await??,
        "",
        "a reader waiting on the FIFO is released with end of file"
    );
    let text = err.to_string();
    assert!(
        text.contains("create task") && text.contains("broken"),
        "{text}"
    );
    assert!(text.contains("/no/such/binary"), "names the binary: {text}");
    f.assert_gone("broken", false);
    assert!(f.client.list().await?.is_empty());
    // The id is free again.
    let spec = f.launch(&image, "broken", &["sh", "-c", ":"]);
    f.client.create(&spec).await?;
    f.client.remove(&f.id("broken")).await?;
    f.assert_gone("broken", false);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_imports_and_a_restarted_client_waiting_on_an_earlier_task() -> Result<()> {
    let f = Fixture::start().await?;
    // Two clients (two agent processes, or two pods at once) import the same image together.
    let second = Containerd::connect(config(&f.process, f.dir.path())).await?;
    let (a, b, c) = tokio::join!(
        f.client.ensure_image(&f.reference, &f.pulled),
        f.client.ensure_image(&f.reference, &f.pulled),
        second.ensure_image(&f.reference, &f.pulled),
    );
    let image = a?;
    assert_eq!(image, b?);
    assert_eq!(image, c?);
    let check = f.process.ctr_ok(&["-n", NAMESPACE, "images", "check"])?;
    assert!(check.contains("complete"), "{check}");

    // The first client creates and starts a task, then goes away like a restarted agent.
    let spec = f.launch(&image, "survivor", &["sh", "-c", "sleep 2; exit 5"]);
    f.client.create(&spec).await?;
    f.client.start(&f.id("survivor")).await?;
    drop(f.client.clone());
    let restarted = Containerd::connect(config(&f.process, f.dir.path())).await?;
    let found = restarted.list().await?;
    assert!(matches!(
        found
            .iter()
            .find(|c| c.id == f.id("survivor"))
            .and_then(|c| c.task),
        Some(TaskState::Running { .. })
    ));
    let exit = restarted.wait(&f.id("survivor")).await?;
    assert_eq!((exit.code, exit.oom_killed), (5, false));
    restarted.remove(&f.id("survivor")).await?;
    f.assert_gone("survivor", true);
    Ok(())
}
