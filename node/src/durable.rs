//! Writing files so that a crash or power cut leaves either the old or the new content: a
//! temporary file, fsync, rename, fsync of the directory. Boards lose power without warning.

use std::io::Write as _;
use std::path::Path;

/// Replaces `path` with `bytes` atomically and durably, with Unix `mode`.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}
