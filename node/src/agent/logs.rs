//! Reading container logs (CRI format, as the log writer wrote them) the way `kubectl logs`
//! asks: tail, since, timestamps, byte limit, and follow.

use std::path::{Path, PathBuf};

use time::OffsetDateTime;

/// One CRI record: `<RFC3339Nano> <stream> <P|F> <content>`.
pub(crate) struct Record<'a> {
    pub time: &'a str,
    pub stream: &'a str,
    pub partial: bool,
    pub content: &'a str,
}

pub(crate) fn parse(line: &str) -> Option<Record<'_>> {
    let mut parts = line.splitn(4, ' ');
    let time = parts.next()?;
    let stream = parts.next()?;
    let tag = parts.next()?;
    let content = parts.next().unwrap_or("");
    Some(Record {
        time,
        stream,
        partial: tag == "P",
        content,
    })
}

/// What to return of a log.
#[derive(Debug, Clone, Default)]
pub(crate) struct Selection {
    pub tail_lines: Option<i64>,
    pub since: Option<OffsetDateTime>,
    pub timestamps: bool,
    pub limit_bytes: Option<i64>,
}

/// The files of one container start, oldest first (rotated ones, then the current one).
pub(crate) fn files(current: &Path) -> Vec<PathBuf> {
    let mut rotated: Vec<PathBuf> = (1..100)
        .map(|n| PathBuf::from(format!("{}.{n}", current.display())))
        .take_while(|p| p.exists())
        .collect();
    rotated.reverse();
    rotated.push(current.to_path_buf());
    rotated
}

/// Formats records as kubectl shows them.
pub(crate) fn render(record: &Record<'_>, timestamps: bool, out: &mut Vec<u8>) {
    if timestamps {
        out.extend_from_slice(record.time.as_bytes());
        out.push(b' ');
    }
    out.extend_from_slice(record.content.as_bytes());
    if !record.partial {
        out.push(b'\n');
    }
}

/// Reads the existing log according to `selection`; returns the bytes and the offset reached
/// in the current file (where a follow continues).
pub(crate) fn read_existing(current: &Path, selection: &Selection) -> (Vec<u8>, u64) {
    let mut lines: Vec<String> = Vec::new();
    let mut offset = 0;
    for file in files(current) {
        let Ok(text) = std::fs::read(&file) else {
            continue;
        };
        if file == current {
            offset = text.len() as u64;
        }
        lines.extend(String::from_utf8_lossy(&text).lines().map(str::to_string));
    }
    let since = selection.since;
    let mut kept: Vec<&String> = lines
        .iter()
        .filter(|l| match (since, parse(l)) {
            (Some(since), Some(r)) => {
                OffsetDateTime::parse(r.time, &time::format_description::well_known::Rfc3339)
                    .map_or(true, |t| t >= since)
            }
            _ => true,
        })
        .collect();
    if let Some(tail) = selection.tail_lines.filter(|t| *t >= 0) {
        let tail = usize::try_from(tail).unwrap_or(usize::MAX);
        if kept.len() > tail {
            kept.drain(..kept.len() - tail);
        }
    }
    let mut out = Vec::new();
    for line in kept {
        if let Some(record) = parse(line) {
            render(&record, selection.timestamps, &mut out);
        }
    }
    if let Some(limit) = selection.limit_bytes.and_then(|l| usize::try_from(l).ok()) {
        out.truncate(limit);
    }
    (out, offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_and_timestamps_follow_kubectl() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("0.log");
        std::fs::write(
            &path,
            "2026-01-01T00:00:00.000000000Z stdout F one\n2026-01-01T00:00:01.000000000Z stderr F two\n2026-01-01T00:00:02.000000000Z stdout P thr\n2026-01-01T00:00:02.000000000Z stdout F ee\n",
        )
        .expect("write");
        let all = read_existing(&path, &Selection::default()).0;
        assert_eq!(String::from_utf8_lossy(&all), "one\ntwo\nthree\n");
        let tail = read_existing(
            &path,
            &Selection {
                tail_lines: Some(1),
                ..Default::default()
            },
        )
        .0;
        assert_eq!(String::from_utf8_lossy(&tail), "ee\n");
        let stamped = read_existing(
            &path,
            &Selection {
                tail_lines: Some(3),
                timestamps: true,
                ..Default::default()
            },
        )
        .0;
        assert!(
            String::from_utf8_lossy(&stamped).starts_with("2026-01-01T00:00:01.000000000Z two\n")
        );
        let since = OffsetDateTime::parse(
            "2026-01-01T00:00:01Z",
            &time::format_description::well_known::Rfc3339,
        )
        .ok();
        let recent = read_existing(
            &path,
            &Selection {
                since,
                ..Default::default()
            },
        )
        .0;
        assert_eq!(String::from_utf8_lossy(&recent), "two\nthree\n");
        let limited = read_existing(
            &path,
            &Selection {
                limit_bytes: Some(2),
                ..Default::default()
            },
        )
        .0;
        assert_eq!(limited, b"on");
    }
}
