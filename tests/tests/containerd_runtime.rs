//! The node's containerd layer against a real containerd 1.6 and runc: the busybox sample image
//! is pushed to a real registry (Debian's docker-registry, with skopeo), pulled through the
//! node's image cache, imported into containerd and run.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use bramble_node::containerd::{
    container_args, merge_env, Containerd, ContainerdConfig, ExecIo, LaunchSpec, TaskState,
    UnpackedImage,
};
use bramble_node::image_cache::{ImageCache, PulledImage};
use bramble_node::oci::client::{ClientConfig, RegistryClient};
use bramble_node::oci::Reference;
use bramble_tests::containerd::Containerd as ContainerdProcess;
use bramble_tests::upstream_registry::UpstreamRegistry;
use tokio::io::AsyncReadExt;

const NAMESPACE: &str = "bramble";
const SIGTERM: u32 = 15;

/// A private containerd, a registry holding busybox, the image pulled into a node cache, and a
/// client of the layer under test.
struct Fixture {
    process: ContainerdProcess,
    _registry: UpstreamRegistry,
    dir: tempfile::TempDir,
    reference: String,
    pulled: PulledImage,
    client: Containerd,
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
        })
    }

    fn io(&self, id: &str) -> (PathBuf, PathBuf) {
        let io = self.dir.path().join("io").join(id);
        (io.join("stdout"), io.join("stderr"))
    }

    fn launch(&self, image: &UnpackedImage, id: &str, args: &[&str]) -> LaunchSpec {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let (stdout, stderr) = self.io(id);
        LaunchSpec {
            id: id.to_owned(),
            labels: [("bramble.dev/pod".to_owned(), format!("default/{id}"))].into(),
            image: image.clone(),
            args: container_args(&args, &[], &image.config),
            env: merge_env(&image.config.env, &[("GREETING".into(), "hi".into())]),
            hostname: id.to_owned(),
            stdout,
            stderr,
            ..Default::default()
        }
    }

    fn listed(&self, what: &str) -> Vec<String> {
        self.process.list(NAMESPACE, what).expect("ctr list")
    }

    /// Nothing of the container is left: task, container, snapshot, state files, cgroup.
    fn assert_gone(&self, id: &str) {
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
        assert!(!self.io(id).0.exists(), "stdout FIFO left");
        let cgroup = Path::new("/sys/fs/cgroup/memory/bramble").join(id);
        assert!(!cgroup.exists(), "cgroup {} left", cgroup.display());
    }
}

fn config(process: &ContainerdProcess, dir: &Path) -> ContainerdConfig {
    ContainerdConfig::new(process.socket(), dir.join("state"))
}

/// Opens a FIFO's read end (after `create`, so the shim's writer exists) and reads it to EOF
/// (when the process has exited and the shim closed it).
async fn read_fifo(path: &Path) -> Result<String> {
    let mut receiver = tokio::net::unix::pipe::OpenOptions::new().open_receiver(path)?;
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
    f.client.create(&spec).await?;
    let stdout = tokio::spawn({
        let path = spec.stdout.clone();
        async move { read_fifo(&path).await }
    });
    let stderr = tokio::spawn({
        let path = spec.stderr.clone();
        async move { read_fifo(&path).await }
    });
    assert!(f.client.start("echo").await? > 0);
    let exit = f.client.wait("echo").await?;
    assert_eq!((exit.code, exit.oom_killed), (0, false));
    assert!(exit.exited_at.is_some());
    assert_eq!(stdout.await??, "hi\n");
    assert_eq!(stderr.await??, "oops\n");

    // exit code.
    let spec = f.launch(&image, "exit3", &["sh", "-c", "exit 3"]);
    f.client.create(&spec).await?;
    f.client.start("exit3").await?;
    assert_eq!(f.client.wait("exit3").await?.code, 3);

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
    let pid = f.client.start("sleeper").await?;
    let listed = f.client.list().await?;
    let sleeper = listed
        .iter()
        .find(|c| c.id == "sleeper")
        .context("sleeper listed")?;
    assert_eq!(sleeper.task, Some(TaskState::Running { pid }));
    assert_eq!(
        sleeper.labels.get("bramble.dev/pod").map(String::as_str),
        Some("default/sleeper")
    );
    let exited = listed
        .iter()
        .find(|c| c.id == "exit3")
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
    let handle = f
        .client
        .exec(
            "sleeper",
            "probe-1",
            vec![
                "sh".into(),
                "-c".into(),
                "echo in $(hostname); exit 7".into(),
            ],
            io.clone(),
        )
        .await?;
    let out = tokio::spawn({
        let path = io.stdout.clone();
        async move { read_fifo(&path).await }
    });
    assert_eq!(handle.wait().await?, 7);
    assert_eq!(out.await??, "in sleeper\n");
    assert!(!io.stdout.exists(), "the exec's FIFO is removed after wait");

    f.client.kill("sleeper", SIGTERM).await?;
    let exit = tokio::time::timeout(Duration::from_secs(30), f.client.wait("sleeper"))
        .await
        .context("SIGTERM did not end sleep")??;
    assert_eq!(exit.code, 128 + SIGTERM, "{exit:?}");
    f.client.kill("sleeper", SIGTERM).await?; // gone already: not an error

    for id in ["echo", "exit3", "sleeper"] {
        f.client.remove(id).await?;
        f.client.remove(id).await?; // idempotent
        f.assert_gone(id);
    }
    assert!(f.client.list().await?.is_empty());
    Ok(())
}
