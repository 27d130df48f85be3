//! The files this layer keeps for a container: the FIFOs its output goes to (created when the
//! caller has not), the generated `/etc/hosts`, `/etc/hostname` and `/etc/resolv.conf`, and a
//! record of the FIFOs it created so that `remove` deletes them and nothing else.
//!
//! FIFO semantics matter here: the runc shim opens each output FIFO for writing, which blocks
//! until someone has it open for reading. This layer holds every FIFO open (read-write, which
//! never blocks on Linux) while containerd creates the task, so `create` does not depend on the
//! caller having opened its reader yet; the shim then holds a reader of its own, so output
//! written before the caller opens the FIFO waits in the pipe.

use std::os::fd::OwnedFd;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fs::{Mode, OFlags};

use super::error::ContainerdError;

/// The record of FIFOs this layer created for a container, in its state directory.
const CREATED_FIFOS: &str = "created-fifos";

/// A suffix unique within this process and unlikely to repeat across processes.
pub(crate) fn unique_suffix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{nanos:x}{}", COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// The per-container directory under the state directory.
pub(super) fn container_dir(state_dir: &Path, id: &str) -> PathBuf {
    state_dir.join(id)
}

/// Makes each path a FIFO (creating the missing ones, recording them in `dir`) and opens it
/// read-write; the returned descriptors keep the FIFOs open until dropped.
pub(super) async fn prepare_fifos(
    dir: PathBuf,
    fifos: Vec<PathBuf>,
) -> Result<Vec<OwnedFd>, ContainerdError> {
    blocking(move || {
        std::fs::create_dir_all(&dir).map_err(ContainerdError::io("create", &dir))?;
        let mut created = Vec::new();
        let mut held = Vec::new();
        for fifo in &fifos {
            match std::fs::metadata(fifo) {
                Ok(meta) if meta.file_type().is_fifo() => {}
                Ok(_) => {
                    return Err(ContainerdError::io("use as a FIFO", fifo)(
                        std::io::Error::other("it exists and is not a FIFO"),
                    ))
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    if let Some(parent) = fifo.parent() {
                        std::fs::create_dir_all(parent)
                            .map_err(ContainerdError::io("create", parent))?;
                    }
                    if make_fifo(fifo)? {
                        created.push(fifo.clone());
                    }
                }
                Err(e) => return Err(ContainerdError::io("inspect", fifo)(e)),
            }
            let fd = rustix::fs::open(
                fifo,
                OFlags::RDWR | OFlags::NONBLOCK | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| ContainerdError::io("open FIFO", fifo)(e.into()))?;
            held.push(fd);
        }
        if !created.is_empty() {
            let record = dir.join(CREATED_FIFOS);
            let mut list = std::fs::read_to_string(&record).unwrap_or_default();
            for path in &created {
                list.push_str(&path.to_string_lossy());
                list.push('\n');
            }
            std::fs::write(&record, list).map_err(ContainerdError::io("write", &record))?;
        }
        Ok(held)
    })
    .await
}

/// Creates the FIFO unless it exists (also when another thread creates it at the same time);
/// whether this call created it.
pub fn make_fifo(path: &Path) -> Result<bool, ContainerdError> {
    match rustix::fs::mkfifoat(rustix::fs::CWD, path, Mode::from_raw_mode(0o600)) {
        Ok(()) => Ok(true),
        Err(rustix::io::Errno::EXIST) => Ok(false),
        Err(e) => Err(ContainerdError::io("create FIFO", path)(e.into())),
    }
}

/// Opens the read end of an output FIFO (creating it if missing), waiting until a writer has
/// it open. Reads then see the output, and end of file once every writer has closed it.
///
/// When to call it: for a container, after [`Containerd::create`](super::Containerd::create)
/// returned and before [`start`](super::Containerd::start) (or concurrently with `create`); for
/// an exec, concurrently with [`exec`](super::Containerd::exec) (spawn it first): `create` and
/// `exec` hold the FIFOs open while the shim attaches, which lets this return, and if they fail
/// the reader sees end of file. A reader opened after a short-lived process has exited may
/// find nothing, because the pipe's buffer goes away with its last open descriptor.
pub async fn open_fifo_reader(
    path: &Path,
) -> Result<tokio::net::unix::pipe::Receiver, ContainerdError> {
    let path = path.to_path_buf();
    let file = blocking(move || {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(ContainerdError::io("create", parent))?;
        }
        make_fifo(&path)?;
        // Blocking open: returns when a writer opens the FIFO. (A non-blocking reader opened
        // before any writer would see neither data nor end of file from epoll.)
        std::fs::File::open(&path).map_err(ContainerdError::io("open FIFO", &path))
    })
    .await?;
    tokio::net::unix::pipe::Receiver::from_file(file)
        .map_err(ContainerdError::io("register FIFO", "(FIFO reader)"))
}

/// Opens and closes each existing FIFO, so readers blocked in [`open_fifo_reader`] return (and
/// see end of file) when the process they waited for will not come.
pub(super) async fn wake_readers(fifos: Vec<PathBuf>) {
    let _ = blocking(move || {
        for fifo in &fifos {
            let is_fifo = std::fs::metadata(fifo).is_ok_and(|m| m.file_type().is_fifo());
            if is_fifo {
                let _ = rustix::fs::open(
                    fifo,
                    OFlags::RDWR | OFlags::NONBLOCK | OFlags::CLOEXEC,
                    Mode::empty(),
                );
            }
        }
        Ok(())
    })
    .await;
}

/// Writes the generated `/etc` files a container gets when the caller passes none, returning
/// (hosts, hostname, resolv.conf).
pub(super) async fn write_etc_files(
    dir: PathBuf,
    hostname: String,
    hosts: Option<PathBuf>,
    resolv: Option<PathBuf>,
) -> Result<(PathBuf, PathBuf, PathBuf), ContainerdError> {
    blocking(move || {
        std::fs::create_dir_all(&dir).map_err(ContainerdError::io("create", &dir))?;
        let write = |name: &str, text: &str| {
            let path = dir.join(name);
            std::fs::write(&path, text).map_err(ContainerdError::io("write", &path))?;
            Ok::<_, ContainerdError>(path)
        };
        let hostname_file = write("hostname", &format!("{hostname}\n"))?;
        let hosts = match hosts {
            Some(path) => path,
            None => write(
                "hosts",
                &format!(
                    "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\
                     127.0.1.1\t{hostname}\n"
                ),
            )?,
        };
        let resolv = match resolv {
            Some(path) => path,
            None => {
                // The host's resolvers are what a container without a cluster DNS can use.
                let host = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
                write("resolv.conf", &host)?
            }
        };
        Ok((hosts, hostname_file, resolv))
    })
    .await
}

/// Deletes the FIFOs this layer created for the container and its state directory.
pub(super) async fn remove_container_files(dir: PathBuf) -> Result<(), ContainerdError> {
    blocking(move || {
        let record = dir.join(CREATED_FIFOS);
        if let Ok(list) = std::fs::read_to_string(&record) {
            for fifo in list.lines().filter(|l| !l.is_empty()) {
                match std::fs::remove_file(fifo) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        return Err(ContainerdError::io("remove", fifo)(e))
                    }
                    _ => {}
                }
            }
        }
        match std::fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(ContainerdError::io("remove", &dir)(e))
            }
            _ => Ok(()),
        }
    })
    .await
}

/// Runs file-system work off the async executor.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ContainerdError> + Send + 'static,
) -> Result<T, ContainerdError> {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|join| {
            Err(
                ContainerdError::io("run file work for", "containerd state")(
                    std::io::Error::other(join.to_string()),
                ),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn creates_records_and_removes_only_its_own_fifos() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("state/c1");
        let ours = tmp.path().join("io/stdout");
        let theirs = tmp.path().join("io/stderr");
        std::fs::create_dir_all(tmp.path().join("io")).unwrap();
        rustix::fs::mkfifoat(rustix::fs::CWD, &theirs, Mode::from_raw_mode(0o600)).unwrap();
        let held = prepare_fifos(dir.clone(), vec![ours.clone(), theirs.clone()])
            .await
            .unwrap();
        assert_eq!(held.len(), 2);
        assert!(std::fs::metadata(&ours).unwrap().file_type().is_fifo());
        drop(held);
        remove_container_files(dir.clone()).await.unwrap();
        assert!(!ours.exists(), "the FIFO this layer made is removed");
        assert!(theirs.exists(), "the caller's FIFO is left alone");
        assert!(!dir.exists());
        // Idempotent.
        remove_container_files(dir).await.unwrap();
    }

    #[tokio::test]
    async fn refuses_a_regular_file_as_fifo() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("out");
        std::fs::write(&file, "x").unwrap();
        let err = prepare_fifos(tmp.path().join("s"), vec![file])
            .await
            .unwrap_err();
        assert!(err.to_string().contains("not a FIFO"), "{err}");
    }
}
