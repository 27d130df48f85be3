//! A process's standard streams: the FIFOs (or files) containerd names in the create and exec
//! requests, turned into the sinks and the stdin a Wasm instance writes to and reads from.
//!
//! Output FIFOs are opened read-write and non-blocking: opening never waits for a reader, and
//! a reader that went away (`ctr run -d` exits right after starting the task) cannot make the
//! guest, or the shim stopping it, hang on a full pipe: output that nobody reads for
//! [`STALL_LIMIT`] is dropped instead.

use std::fs::{File, OpenOptions};
use std::future::Future as _;
use std::io::{self, Write};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bramble_wasm_shim::output::Sink;
use bramble_wasm_shim::sandbox::Stdin;
use tokio::io::{AsyncRead, ReadBuf};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use crate::error::ShimError;

/// Longest a write waits for a reader to drain a full FIFO before the output is dropped.
const STALL_LIMIT: Duration = Duration::from_secs(2);

/// The stream paths of one process, as containerd sent them.
#[derive(Debug, Default, Clone)]
pub struct Stdio {
    /// Stdin FIFO, or empty for none.
    pub stdin: String,
    /// Stdout FIFO or file, or empty to discard.
    pub stdout: String,
    /// Stderr FIFO or file, or empty to discard.
    pub stderr: String,
    /// Always false (a terminal is refused at create).
    pub terminal: bool,
}

/// Opens an output path: a FIFO, a plain file path or a `file://` URI (appended to).
pub fn open_sink(uri: &str) -> Result<Option<Sink>, ShimError> {
    if uri.is_empty() {
        return Ok(None);
    }
    let path = output_path(uri)?;
    let io_err = |source| ShimError::Io {
        what: "opening an output stream",
        path: path.clone(),
        source,
    };
    let is_fifo = std::fs::metadata(&path)
        .map(|m| m.file_type().is_fifo())
        .unwrap_or(false);
    if is_fifo {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&path)
            .map_err(io_err)?;
        return Ok(Some(Box::new(FifoWriter { file })));
    }
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(io_err)?;
    Ok(Some(Box::new(file)))
}

fn output_path(uri: &str) -> Result<PathBuf, ShimError> {
    if let Some(path) = uri.strip_prefix("file://") {
        return Ok(PathBuf::from(path));
    }
    if uri.contains("://") {
        return Err(ShimError::Unsupported {
            what: format!("the output URI {uri:?} (use a FIFO or file:// path)"),
        });
    }
    Ok(PathBuf::from(uri))
}

/// A non-blocking FIFO writer that waits a bounded time for room.
struct FifoWriter {
    file: File,
}

impl Write for FifoWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let started = Instant::now();
        loop {
            match self.file.write(buf) {
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    if started.elapsed() > STALL_LIMIT {
                        // Nobody reads: pretend it was written so the guest goes on.
                        return Ok(buf.len());
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                other => return other,
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Opens a stdin FIFO for a guest; the guest sees end-of-file when the writer closes it or
/// when `close` is cancelled (containerd's CloseIO). Must be called inside the runtime.
pub fn open_stdin(path: &str, close: CancellationToken) -> Result<Option<Stdin>, ShimError> {
    if path.is_empty() {
        return Ok(None);
    }
    let receiver = tokio::net::unix::pipe::OpenOptions::new()
        .open_receiver(Path::new(path))
        .map_err(|source| ShimError::Io {
            what: "opening stdin",
            path: PathBuf::from(path),
            source,
        })?;
    Ok(Some(Box::new(ClosableStdin {
        inner: receiver,
        closed: Box::pin(close.cancelled_owned()),
    })))
}

struct ClosableStdin {
    inner: tokio::net::unix::pipe::Receiver,
    closed: Pin<Box<WaitForCancellationFutureOwned>>,
}

impl AsyncRead for ClosableStdin {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.closed.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    #[test]
    fn files_are_appended_to_and_empty_paths_discard() {
        assert!(open_sink("").unwrap().is_none());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.log");
        for text in ["a", "b"] {
            let mut sink = open_sink(&format!("file://{}", path.display()))
                .unwrap()
                .unwrap();
            sink.write_all(text.as_bytes()).unwrap();
        }
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "ab");
        assert!(matches!(
            open_sink("binary:///usr/bin/logger"),
            Err(ShimError::Unsupported { .. })
        ));
    }

    #[test]
    fn a_fifo_without_reader_neither_blocks_the_open_nor_the_writes_forever() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fifo");
        let status = std::process::Command::new("mkfifo")
            .arg(&path)
            .status()
            .unwrap();
        assert!(status.success());
        let mut sink = open_sink(path.to_str().unwrap()).unwrap().unwrap();
        sink.write_all(b"hello\n").unwrap();
        let mut reader = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&path)
            .unwrap();
        let mut got = [0u8; 6];
        reader.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"hello\n");
        // Fill the pipe: the write after that gives up after the stall limit.
        let big = vec![b'x'; 1 << 20];
        let started = Instant::now();
        sink.write_all(&big).unwrap();
        assert!(started.elapsed() < STALL_LIMIT * 4);
    }
}
