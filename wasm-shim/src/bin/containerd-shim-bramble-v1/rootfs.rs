//! Mounting the rootfs containerd prepared (the snapshot's overlay or bind mounts) at
//! `<bundle>/rootfs`, and unmounting it when the task is deleted.

use std::path::{Path, PathBuf};

use containerd_shim::protos::types::mount::Mount;

use crate::error::ShimError;

/// A mounted (or given) rootfs.
#[derive(Debug)]
pub struct Rootfs {
    /// The directory the guest sees as `/`.
    pub path: PathBuf,
    /// Whether this shim mounted it (and so unmounts it).
    pub mounted: bool,
}

/// Mounts `mounts` at `<bundle>/rootfs`, in order. Without mounts (`ctr run --rootfs DIR`)
/// the spec's `root.path` is used as it is.
pub fn mount(bundle: &Path, mounts: &[Mount], spec_root: PathBuf) -> Result<Rootfs, ShimError> {
    if mounts.is_empty() {
        return Ok(Rootfs {
            path: spec_root,
            mounted: false,
        });
    }
    let target = bundle.join("rootfs");
    std::fs::create_dir_all(&target).map_err(|source| ShimError::Io {
        what: "creating the rootfs mount point",
        path: target.clone(),
        source,
    })?;
    for (index, m) in mounts.iter().enumerate() {
        let kind = Some(m.type_.as_str()).filter(|t| !t.is_empty());
        let source = Some(m.source.as_str()).filter(|s| !s.is_empty());
        if let Err(err) = containerd_shim::mount::mount_rootfs(kind, source, &m.options, &target) {
            // Leave nothing half-mounted behind.
            if index > 0 {
                let _ = unmount(&target);
            }
            return Err(ShimError::Mount {
                action: "mounting",
                target,
                message: format!("{} mount of {:?}: {err}", m.type_, m.source),
            });
        }
    }
    Ok(Rootfs {
        path: target,
        mounted: true,
    })
}

/// Unmounts everything at and below `target` (detaching busy mounts).
pub fn unmount(target: &Path) -> Result<(), ShimError> {
    let fail = |message: String| ShimError::Mount {
        action: "unmounting",
        target: target.to_path_buf(),
        message,
    };
    let text = target
        .to_str()
        .ok_or_else(|| fail("the path is not UTF-8".into()))?;
    containerd_shim::mount::umount_recursive(Some(text), libc::MNT_DETACH)
        .map_err(|e| fail(e.to_string()))
}

impl Rootfs {
    /// Unmounts it if this shim mounted it.
    pub fn release(&self) -> Result<(), ShimError> {
        if self.mounted {
            unmount(&self.path)?;
        }
        Ok(())
    }
}
