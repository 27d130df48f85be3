//! Resident memory of a process, as benchmarks report it: RSS from /proc/PID/status and PSS
//! (shared pages divided among the processes sharing them) from /proc/PID/smaps_rollup.

use anyhow::{Context, Result};

/// RSS and PSS of `pid`, in KiB.
pub fn rss_pss_kib(pid: u32) -> Result<(u64, u64)> {
    let field = |text: &str, name: &str| -> Option<u64> {
        text.lines()
            .find(|l| l.starts_with(name))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    };
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))?;
    Ok((
        field(&status, "VmRSS:").context("no VmRSS")?,
        field(&rollup, "Pss:").context("no Pss")?,
    ))
}
