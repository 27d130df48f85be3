//! `escape`: tries to read files outside the directories the pod mounted, and reports each try.
//!
//! Tries, in order:
//! 1. `/etc/passwd` by absolute path;
//! 2. `../../etc/passwd` relative to the working directory;
//! 3. `<dir>/../../etc/passwd`, climbing out of the preopened directory `<dir>`;
//! 4. a symlink created inside `<dir>` that points at `/etc/passwd`;
//! 5. a symlink created inside `<dir>` that points at `../../etc/passwd`;
//! 6. listing `/`.
//!
//! `<dir>` is env `ESCAPE_DIR`, default `/data` (mount an emptyDir there). Do not mount
//! anything at `/etc`: a file the pod was given is not an escape. Exits 0 when every read was
//! denied (a listing of `/` only shows what the pod mounted and does not count), 1 when any
//! read of `/etc/passwd` succeeded, and 2 when `ESCAPE_DIR` is not UTF-8. The symlinks are
//! planted in `<dir>`, so it must be writable; they are removed again after each try.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use samples_common::{env_string, log, log_error};

const PROGRAM: &str = "escape";
const DEFAULT_DIR: &str = "/data";
const TARGET: &str = "/etc/passwd";
const CLIMB: &str = "../../etc/passwd";

/// What one try came to.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// The sandbox held.
    Denied(String),
    /// The file was read: the sandbox is broken.
    Escaped { bytes: usize, first_line: String },
}

fn main() -> ExitCode {
    let dir = match env_string("ESCAPE_DIR") {
        Ok(dir) => PathBuf::from(dir.filter(|d| !d.is_empty()).unwrap_or(DEFAULT_DIR.into())),
        Err(err) => {
            log_error(PROGRAM, format_args!("{err}"));
            return ExitCode::from(2);
        }
    };
    let verdicts = [
        ("absolute path", read(Path::new(TARGET))),
        ("relative climb from working dir", read(Path::new(CLIMB))),
        ("climb out of preopened dir", read(&dir.join(CLIMB))),
        (
            "absolute symlink in preopened dir",
            via_symlink(&dir, "escape-abs-link", TARGET),
        ),
        (
            "relative symlink in preopened dir",
            via_symlink(&dir, "escape-rel-link", CLIMB),
        ),
    ];
    let mut escaped = 0;
    for (how, verdict) in &verdicts {
        match verdict {
            Verdict::Denied(why) => log(PROGRAM, format_args!("{how}: denied ({why})")),
            Verdict::Escaped { bytes, first_line } => {
                escaped += 1;
                log(
                    PROGRAM,
                    format_args!("{how}: ESCAPED, read {bytes} bytes, first line {first_line:?}"),
                );
            }
        }
    }
    log(PROGRAM, format_args!("listing /: {}", list(Path::new("/"))));
    if escaped == 0 {
        log(PROGRAM, format_args!("sandbox held: every read was denied"));
        ExitCode::SUCCESS
    } else {
        log(
            PROGRAM,
            format_args!("SANDBOX BROKEN: {escaped} reads escaped"),
        );
        ExitCode::FAILURE
    }
}

fn read(path: &Path) -> Verdict {
    match fs::read(path) {
        Ok(content) => Verdict::Escaped {
            bytes: content.len(),
            first_line: String::from_utf8_lossy(
                content.split(|b| *b == b'\n').next().unwrap_or_default(),
            )
            .chars()
            .take(80)
            .collect(),
        },
        Err(err) => Verdict::Denied(format!("{}: {err}", path.display())),
    }
}

/// Plants a symlink `name` -> `target` in `dir` and reads through it; the link is removed
/// afterwards so a second run starts clean.
fn via_symlink(dir: &Path, name: &str, target: &str) -> Verdict {
    let link = dir.join(name);
    // A link left by an earlier run would make symlink() fail; its absence is fine.
    let _ = fs::remove_file(&link);
    if let Err(err) = symlink(target, dir, name) {
        return Verdict::Denied(format!("creating link {} failed: {err}", link.display()));
    }
    let verdict = read(&link);
    let _ = fs::remove_file(&link);
    verdict
}

/// Creates symlink `dir/name` -> `target`, with `target` stored as written.
#[cfg(unix)]
fn symlink(target: &str, dir: &Path, name: &str) -> io::Result<()> {
    std::os::unix::fs::symlink(target, dir.join(name))
}

/// Creates symlink `dir/name` -> `target`, with `target` stored as written.
///
/// std's WASI symlink function is unstable, so this calls WASI's `path_symlink` directly: the
/// only unsafe code in the samples.
#[cfg(target_os = "wasi")]
#[allow(unsafe_code)]
fn symlink(target: &str, dir: &Path, name: &str) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let dir = fs::File::open(dir)?;
    let fd = u32::try_from(dir.as_raw_fd())
        .map_err(|_| io::Error::other("directory has a negative file descriptor"))?;
    // SAFETY: `fd` is an open directory owned by `dir`, which lives until after the call; the
    // binding passes both paths as pointer and length of live `&str`s that the host only reads.
    unsafe { wasi::path_symlink(target, fd, name) }
        .map_err(|errno| io::Error::from_raw_os_error(i32::from(errno.raw())))
}

fn list(dir: &Path) -> String {
    match fs::read_dir(dir) {
        Ok(entries) => {
            let mut names: Vec<String> = entries
                .filter_map(Result::ok)
                .map(|entry| entry.file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            format!("[{}]", names.join(", "))
        }
        Err(err) => format!("denied ({err})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(test: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("escape-test-{}-{test}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        assert!(fs::create_dir_all(&dir).is_ok());
        dir
    }

    #[test]
    fn a_readable_file_counts_as_escaped() {
        let dir = scratch("readable");
        let file = dir.join("secret");
        assert!(fs::write(&file, "root:x:0:0\nsecond\n").is_ok());
        assert_eq!(
            read(&file),
            Verdict::Escaped {
                bytes: 18,
                first_line: "root:x:0:0".to_owned()
            }
        );
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn a_missing_file_counts_as_denied_with_the_path() {
        let dir = scratch("missing");
        let Verdict::Denied(why) = read(&dir.join("nope")) else {
            panic!("missing file read");
        };
        assert!(why.contains("nope"), "{why}");
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn symlink_reads_follow_the_link_and_clean_up() {
        let dir = scratch("symlink");
        let file = dir.join("target");
        assert!(fs::write(&file, "x\n").is_ok());
        let target = file.to_string_lossy().into_owned();
        assert!(matches!(
            via_symlink(&dir, "link", &target),
            Verdict::Escaped { bytes: 2, .. }
        ));
        assert!(fs::symlink_metadata(dir.join("link")).is_err());
        assert!(matches!(
            via_symlink(&dir.join("no-such-dir"), "link", &target),
            Verdict::Denied(_)
        ));
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn listing_is_sorted_and_reports_errors() {
        let dir = scratch("list");
        assert!(fs::write(dir.join("b"), "").is_ok());
        assert!(fs::write(dir.join("a"), "").is_ok());
        assert_eq!(list(&dir), "[a, b]");
        assert!(list(&dir.join("gone")).starts_with("denied ("));
        let _ = fs::remove_dir_all(dir);
    }
}
