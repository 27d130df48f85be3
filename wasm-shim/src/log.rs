//! Container log files in the CRI format kubelet reads, rotated by size so an output flood
//! cannot fill the disk.
//!
//! Each record is `<RFC 3339 time, 9 fractional digits> <stdout|stderr> <P|F> <content>\n`. A
//! line longer than [`MAX_LINE`] is split into partial (`P`) records ending with a full (`F`)
//! one, as containerd does, so memory per stream stays bounded too. When the current file would
//! grow past [`LogConfig::max_bytes`] it is renamed to `<path>.1` (older ones shift to `.2`, …)
//! and the oldest beyond [`LogConfig::max_files`] is removed.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use time::OffsetDateTime;

/// Longest content of one record; longer lines are split into partial records.
pub const MAX_LINE: usize = 16 << 10;

/// Smallest allowed [`LogConfig::max_bytes`]: a few maximal records must fit in one file.
pub const MIN_FILE_BYTES: u64 = 64 << 10;

/// Why a log could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The configuration cannot bound the log.
    #[error("invalid log configuration for {path}: {reason}")]
    InvalidConfig {
        /// The log file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The log file could not be opened or inspected.
    #[error("opening log file {path} failed: {source}")]
    Open {
        /// The log file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
}

/// Where a container's log goes and how much of it is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// The current log file; rotated files get `.1`, `.2`, … appended.
    pub path: PathBuf,
    /// Size at which the current file is rotated, at least [`MIN_FILE_BYTES`].
    pub max_bytes: u64,
    /// Files kept, the current one included (kubelet's `containerLogMaxFiles`), at least 1.
    pub max_files: u32,
}

/// Which output stream a record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogStream {
    /// The guest's standard output.
    Stdout,
    /// The guest's standard error.
    Stderr,
}

impl LogStream {
    /// The stream's name in a CRI record.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stdout => "stdout",
            Self::Stderr => "stderr",
        }
    }
}

/// A size-rotated CRI log file shared by a container's stdout and stderr writers.
#[derive(Debug)]
pub struct RotatingLog {
    config: LogConfig,
    file: Mutex<LogFile>,
}

#[derive(Debug)]
struct LogFile {
    writer: BufWriter<File>,
    size: u64,
}

impl RotatingLog {
    /// Opens (appending to) the log at `config.path`, creating it if missing.
    pub fn open(config: LogConfig) -> Result<Arc<Self>, LogError> {
        let invalid = |reason: String| LogError::InvalidConfig {
            path: config.path.clone(),
            reason,
        };
        if config.max_bytes < MIN_FILE_BYTES {
            return Err(invalid(format!(
                "max_bytes {} is below the minimum of {MIN_FILE_BYTES}",
                config.max_bytes
            )));
        }
        if config.max_files == 0 {
            return Err(invalid("max_files must be at least 1".to_owned()));
        }
        let open_err = |source| LogError::Open {
            path: config.path.clone(),
            source,
        };
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&config.path)
            .map_err(open_err)?;
        let size = file.metadata().map_err(open_err)?.len();
        Ok(Arc::new(Self {
            file: Mutex::new(LogFile {
                writer: BufWriter::new(file),
                size,
            }),
            config,
        }))
    }

    /// A writer that records everything written to it as lines of `stream`.
    pub fn writer(self: &Arc<Self>, stream: LogStream) -> CriWriter {
        CriWriter {
            log: Arc::clone(self),
            stream,
            partial: Vec::new(),
        }
    }

    /// Path of the `n`th rotated file (1 is the newest); 0 is the current file.
    pub fn rotated_path(&self, n: u32) -> PathBuf {
        numbered(&self.config.path, n)
    }

    /// Appends one record.
    fn append(&self, stream: LogStream, tag: char, content: &[u8]) -> io::Result<()> {
        let header = format!(
            "{} {} {tag} ",
            format_timestamp(OffsetDateTime::now_utc()),
            stream.as_str()
        );
        let len = u64::try_from(header.len() + content.len() + 1).unwrap_or(u64::MAX);
        // Poisoning only means another writer panicked mid-record; the file is still usable.
        let mut file = self.file.lock().unwrap_or_else(PoisonError::into_inner);
        if file.size > 0 && file.size.saturating_add(len) > self.config.max_bytes {
            self.rotate(&mut file)?;
        }
        file.writer.write_all(header.as_bytes())?;
        file.writer.write_all(content)?;
        file.writer.write_all(b"\n")?;
        file.size = file.size.saturating_add(len);
        Ok(())
    }

    fn rotate(&self, file: &mut LogFile) -> io::Result<()> {
        file.writer.flush()?;
        let path = &self.config.path;
        if self.config.max_files > 1 {
            let oldest = self.config.max_files - 1;
            ignore_missing(fs::remove_file(numbered(path, oldest)))?;
            for n in (1..oldest).rev() {
                ignore_missing(fs::rename(numbered(path, n), numbered(path, n + 1)))?;
            }
            fs::rename(path, numbered(path, 1))?;
        }
        let fresh = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(path)?;
        file.writer = BufWriter::new(fresh);
        file.size = 0;
        Ok(())
    }

    fn flush(&self) -> io::Result<()> {
        self.file
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .writer
            .flush()
    }
}

/// Writes bytes of one stream into a [`RotatingLog`] as CRI records; see the module docs.
#[derive(Debug)]
pub struct CriWriter {
    log: Arc<RotatingLog>,
    stream: LogStream,
    partial: Vec<u8>,
}

impl CriWriter {
    /// Adds `bytes` (no newline among them) to the pending line, emitting partial records
    /// whenever it reaches [`MAX_LINE`].
    fn push(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        while self.partial.len() + bytes.len() > MAX_LINE {
            let room = MAX_LINE - self.partial.len();
            let (head, tail) = bytes.split_at(room);
            self.partial.extend_from_slice(head);
            self.emit('P')?;
            bytes = tail;
        }
        self.partial.extend_from_slice(bytes);
        Ok(())
    }

    fn emit(&mut self, tag: char) -> io::Result<()> {
        let result = self.log.append(self.stream, tag, &self.partial);
        self.partial.clear();
        result
    }
}

impl Write for CriWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut rest = buf;
        while let Some(end) = rest.iter().position(|byte| *byte == b'\n') {
            let (line, tail) = rest.split_at(end);
            self.push(line)?;
            self.emit('F')?;
            rest = tail.get(1..).unwrap_or_default();
        }
        self.push(rest)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        // A pending line stays pending: emitting it here would split lines at every flush.
        self.log.flush()
    }
}

impl Drop for CriWriter {
    fn drop(&mut self) {
        // The stream ended without a final newline; the tail is still a complete line.
        if !self.partial.is_empty() {
            let _ = self.emit('F');
        }
        let _ = self.log.flush();
    }
}

/// Formats `at` as RFC 3339 in UTC with nine fractional digits, e.g.
/// `2026-11-29T12:00:00.000000000Z`.
pub fn format_timestamp(at: OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:09}Z",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second(),
        at.nanosecond()
    )
}

fn numbered(path: &Path, n: u32) -> PathBuf {
    if n == 0 {
        return path.to_path_buf();
    }
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

fn ignore_missing(result: io::Result<()>) -> io::Result<()> {
    match result {
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(test: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("bramble-log-{}-{test}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create temp dir");
        dir
    }

    fn config(dir: &Path, max_bytes: u64, max_files: u32) -> LogConfig {
        LogConfig {
            path: dir.join("0.log"),
            max_bytes,
            max_files,
        }
    }

    /// Parses records into (stream, tag, content), checking the timestamp's shape.
    fn records(path: &Path) -> Vec<(String, String, String)> {
        let text = fs::read_to_string(path).expect("read log");
        text.lines()
            .map(|line| {
                let mut parts = line.splitn(4, ' ');
                let time = parts.next().unwrap_or_default();
                assert_eq!(time.len(), 30, "timestamp {time:?}");
                assert!(time.ends_with('Z') && time.as_bytes().get(10) == Some(&b'T'));
                let mut field = || parts.next().unwrap_or_default().to_owned();
                (field(), field(), field())
            })
            .collect()
    }

    #[test]
    fn timestamps_have_nine_fraction_digits_in_utc() {
        let at = OffsetDateTime::from_unix_timestamp_nanos(1_795_939_200_000_000_042)
            .expect("valid time");
        assert_eq!(format_timestamp(at), "2026-11-29T08:00:00.000000042Z");
    }

    #[test]
    fn lines_become_full_records_and_a_trailing_fragment_is_kept_until_close() {
        let dir = temp_dir("lines");
        let log = RotatingLog::open(config(&dir, MIN_FILE_BYTES, 2)).expect("open");
        let mut out = log.writer(LogStream::Stdout);
        let mut err = log.writer(LogStream::Stderr);
        out.write_all(b"hello\nwor").expect("write");
        err.write_all(b"oops\n").expect("write");
        out.write_all(b"ld\nend").expect("write");
        out.flush().expect("flush");
        let so_far = records(&dir.join("0.log"));
        assert_eq!(so_far.len(), 3, "{so_far:?}");
        drop(out);
        drop(err);
        let all: Vec<_> = records(&dir.join("0.log"))
            .into_iter()
            .map(|(s, t, c)| format!("{s} {t} {c}"))
            .collect();
        assert_eq!(
            all,
            [
                "stdout F hello",
                "stderr F oops",
                "stdout F world",
                "stdout F end"
            ]
        );
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn long_lines_are_split_into_partial_records() {
        let dir = temp_dir("long");
        let log = RotatingLog::open(config(&dir, MIN_FILE_BYTES, 1)).expect("open");
        let mut out = log.writer(LogStream::Stdout);
        let line = vec![b'x'; MAX_LINE * 2 + 5];
        out.write_all(&line).expect("write");
        out.write_all(b"\n").expect("write");
        drop(out);
        let tags: Vec<(String, usize)> = records(&dir.join("0.log"))
            .into_iter()
            .map(|(_, tag, content)| (tag, content.len()))
            .collect();
        assert_eq!(
            tags,
            [
                ("P".into(), MAX_LINE),
                ("P".into(), MAX_LINE),
                ("F".into(), 5)
            ]
        );
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn rotation_keeps_at_most_max_files_of_at_most_max_bytes() {
        let dir = temp_dir("rotate");
        let log = RotatingLog::open(config(&dir, MIN_FILE_BYTES, 3)).expect("open");
        let mut out = log.writer(LogStream::Stdout);
        let line = [b'y'; 1000];
        for n in 0..1000 {
            write!(out, "{n} ").expect("write");
            out.write_all(&line).expect("write");
            out.write_all(b"\n").expect("write");
        }
        drop(out);
        let mut total = 0;
        for n in 0..3 {
            let size = fs::metadata(log.rotated_path(n))
                .expect("rotated file")
                .len();
            assert!(size <= MIN_FILE_BYTES, "file {n} is {size} bytes");
            total += size;
        }
        assert!(!log.rotated_path(3).exists(), "a fourth file was kept");
        assert!(total > 2 * MIN_FILE_BYTES, "too little kept: {total}");
        // The newest records are in the current file, in order.
        let current = records(&log.rotated_path(0));
        let last = current
            .last()
            .map(|(_, _, c)| c.clone())
            .unwrap_or_default();
        assert!(last.starts_with("999 "), "{last:.20}");
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn a_single_file_is_truncated_when_full() {
        let dir = temp_dir("single");
        let log = RotatingLog::open(config(&dir, MIN_FILE_BYTES, 1)).expect("open");
        let mut out = log.writer(LogStream::Stderr);
        for _ in 0..200 {
            out.write_all(&[b'z'; 999]).expect("write");
            out.write_all(b"\n").expect("write");
        }
        drop(out);
        let size = fs::metadata(dir.join("0.log")).expect("log").len();
        assert!(size <= MIN_FILE_BYTES && size > 0, "{size}");
        assert!(!log.rotated_path(1).exists());
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn configurations_that_cannot_bound_the_log_are_rejected() {
        let dir = temp_dir("invalid");
        for bad in [config(&dir, 1024, 3), config(&dir, MIN_FILE_BYTES, 0)] {
            assert!(matches!(
                RotatingLog::open(bad),
                Err(LogError::InvalidConfig { .. })
            ));
        }
        let missing = config(&dir.join("no/such/dir"), MIN_FILE_BYTES, 1);
        assert!(matches!(
            RotatingLog::open(missing),
            Err(LogError::Open { .. })
        ));
        let _ = fs::remove_dir_all(dir);
    }
}
