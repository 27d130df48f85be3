//! Named network namespaces kept alive by a bind mount onto a file, as `ip netns add` does, but
//! under the agent's state directory (so two agents on one machine do not see each other's pods)
//! and without shelling out.
//!
//! The namespace is made by a short-lived thread that unshares its network namespace and
//! bind-mounts `/proc/thread-self/ns/net` onto the file. A dedicated thread, never a pool thread:
//! the thread stays in the new namespace, and a runtime thread that did so would open every later
//! socket of the agent inside the pod. The bind mount keeps the namespace alive after the thread
//! ends and across agent restarts (not across reboots: the file then remains, unmounted, and
//! [`is_netns`] says false).

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};
use nix::sys::statfs::{statfs, NSFS_MAGIC};

use super::NetworkError;

/// Whether `path` is a live network namespace bind mount (false if missing or a plain file).
pub(crate) fn is_netns(path: &Path) -> bool {
    statfs(path).is_ok_and(|fs| fs.filesystem_type() == NSFS_MAGIC)
}

/// Creates a new network namespace pinned at `path`; the file must not be a namespace already.
pub(crate) fn create(pod: &str, path: &Path) -> Result<(), NetworkError> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(|e| NetworkError::io("create", dir, e))?;
    }
    // The mount point must exist; an unmounted leftover from before a reboot is reused.
    fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| NetworkError::io("create", path, e))?;
    let target = path.to_path_buf();
    let made = std::thread::Builder::new()
        .name("bramble-netns".into())
        .spawn(move || -> Result<(), (&'static str, Errno)> {
            unshare(CloneFlags::CLONE_NEWNET).map_err(|e| ("unshare", e))?;
            mount(
                Some("/proc/thread-self/ns/net"),
                &target,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(|e| ("bind-mount", e))
        })
        .map_err(|e| NetworkError::io("start a thread to create", path, e))?
        .join();
    let failed = match made {
        Ok(Ok(())) => return Ok(()),
        Ok(Err((action, source))) => NetworkError::Netns {
            pod: pod.to_string(),
            action,
            path: path.to_path_buf(),
            source,
        },
        Err(_) => NetworkError::io(
            "create",
            path,
            std::io::Error::other("the namespace thread panicked"),
        ),
    };
    let _ = fs::remove_file(path);
    Err(failed)
}

/// Unmounts and deletes the namespace file at `path`; succeeds if it is already gone.
///
/// The namespace itself lives on while a process (a container still running) is in it.
pub(crate) fn remove(pod: &str, path: &Path) -> Result<(), NetworkError> {
    if is_netns(path) {
        // Detached: a process that has the file open must not make detach fail.
        match umount2(path, MntFlags::MNT_DETACH) {
            Ok(()) | Err(Errno::EINVAL) | Err(Errno::ENOENT) => {}
            Err(source) => {
                return Err(NetworkError::Netns {
                    pod: pod.to_string(),
                    action: "unmount",
                    path: path.to_path_buf(),
                    source,
                })
            }
        }
    }
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(NetworkError::io("delete", path, e)),
    }
}

/// The namespace file of `pod` under `dir`.
pub(crate) fn path_of(dir: &Path, pod: &str) -> PathBuf {
    dir.join(pod)
}
