//! `ticker`: a long-running workload that logs one numbered line per interval.
//!
//! Settings (environment):
//! - `TICK_INTERVAL_MS`: time between lines, default 1000, 1..=86400000.
//! - `TICKS`: if set, exit 0 after this many lines.
//! - `STOP_FILE`: if set, exit 0 as soon as a file at this path exists.
//!
//! WASI preview 1 has no signals, so a runtime cannot ask this module to stop the way it would
//! send SIGTERM to a process. `STOP_FILE` is its stop request instead: a runtime (or a test)
//! that wants a graceful stop creates that file in a directory the module has mounted, and the
//! module exits 0 within [`POLL`] of seeing it. A runtime that just kills the instance works too,
//! but then the exit is not graceful.
//!
//! Ticks are scheduled against fixed deadlines (start + n * interval), so a slow log sink does
//! not make the ticker drift.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::thread;
use std::time::{Duration, Instant};

use samples_common::{env_opt_u64, env_string, env_u64, log, log_error, unix_millis, EnvError};

const PROGRAM: &str = "ticker";

/// Longest time the stop file goes unchecked while waiting for the next tick.
const POLL: Duration = Duration::from_millis(100);

/// One day: a longer interval is more likely a unit mistake than a wish.
const MAX_INTERVAL_MS: u64 = 86_400_000;

/// What the ticker was told to do.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Settings {
    interval: Duration,
    ticks: Option<u64>,
    stop_file: Option<PathBuf>,
}

/// Why the ticker stopped, with the number of lines it logged.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    /// `TICKS` lines were logged.
    Finished { ticks: u64 },
    /// The stop file appeared.
    Stopped { ticks: u64 },
}

/// What waiting for the next deadline ended with.
#[derive(Debug, PartialEq, Eq)]
enum Wait {
    Due,
    StopRequested,
}

fn main() -> ExitCode {
    let settings = match settings_from_env() {
        Ok(settings) => settings,
        Err(err) => {
            log_error(PROGRAM, format_args!("{err}"));
            return ExitCode::from(2);
        }
    };
    log(
        PROGRAM,
        format_args!(
            "starting: interval {} ms, ticks {}, stop file {}",
            settings.interval.as_millis(),
            settings
                .ticks
                .map_or_else(|| "unlimited".to_owned(), |n| n.to_string()),
            settings
                .stop_file
                .as_deref()
                .map_or_else(|| "none".to_owned(), |p| p.display().to_string()),
        ),
    );
    let outcome = run(&settings, |ticks| {
        log(
            PROGRAM,
            format_args!("tick {ticks} at {} ms", unix_millis()),
        );
    });
    match outcome {
        Outcome::Finished { ticks } => {
            log(
                PROGRAM,
                format_args!("logged {ticks} ticks as asked, exiting"),
            );
        }
        Outcome::Stopped { ticks } => log(
            PROGRAM,
            format_args!("stop file found after {ticks} ticks, exiting"),
        ),
    }
    ExitCode::SUCCESS
}

fn settings_from_env() -> Result<Settings, EnvError> {
    let interval_ms = env_u64("TICK_INTERVAL_MS", 1000, 1..=MAX_INTERVAL_MS)?;
    Ok(Settings {
        interval: Duration::from_millis(interval_ms),
        ticks: env_opt_u64("TICKS", 0..=u64::MAX)?,
        stop_file: env_string("STOP_FILE")?
            .filter(|path| !path.is_empty())
            .map(PathBuf::from),
    })
}

/// Ticks until `settings` say to stop, calling `on_tick` with the running count after each
/// interval.
fn run(settings: &Settings, mut on_tick: impl FnMut(u64)) -> Outcome {
    let mut ticks = 0_u64;
    let mut deadline = Instant::now();
    loop {
        if settings.ticks.is_some_and(|limit| ticks >= limit) {
            return Outcome::Finished { ticks };
        }
        // An Instant this far in the future cannot be represented only after centuries of
        // ticking; restarting the schedule from now is then the sensible fallback.
        deadline = deadline
            .checked_add(settings.interval)
            .unwrap_or_else(|| Instant::now() + settings.interval);
        if wait_until(deadline, settings.stop_file.as_deref()) == Wait::StopRequested {
            return Outcome::Stopped { ticks };
        }
        ticks = ticks.saturating_add(1);
        on_tick(ticks);
    }
}

/// Sleeps until `deadline`, checking for the stop file at least every [`POLL`].
fn wait_until(deadline: Instant, stop_file: Option<&Path>) -> Wait {
    loop {
        // `exists` reads an unreadable or unmounted path as absent, which is right here: only
        // a file the module can see is a stop request.
        if stop_file.is_some_and(Path::exists) {
            return Wait::StopRequested;
        }
        let now = Instant::now();
        if now >= deadline {
            return Wait::Due;
        }
        thread::sleep((deadline - now).min(POLL));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn settings(interval_ms: u64, ticks: Option<u64>, stop_file: Option<PathBuf>) -> Settings {
        Settings {
            interval: Duration::from_millis(interval_ms),
            ticks,
            stop_file,
        }
    }

    fn scratch_dir(test: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ticker-test-{}-{test}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        assert!(
            fs::create_dir_all(&dir).is_ok(),
            "cannot create {}",
            dir.display()
        );
        dir
    }

    #[test]
    fn logs_numbered_ticks_and_finishes_after_ticks() {
        let mut seen = Vec::new();
        let outcome = run(&settings(1, Some(3), None), |n| seen.push(n));
        assert_eq!(outcome, Outcome::Finished { ticks: 3 });
        assert_eq!(seen, vec![1, 2, 3]);
    }

    #[test]
    fn zero_ticks_finishes_at_once() {
        let mut seen = Vec::new();
        let outcome = run(&settings(1, Some(0), None), |n| seen.push(n));
        assert_eq!(outcome, Outcome::Finished { ticks: 0 });
        assert!(seen.is_empty());
    }

    #[test]
    fn existing_stop_file_stops_before_the_first_tick() {
        let dir = scratch_dir("existing");
        let stop = dir.join("stop");
        assert!(fs::write(&stop, b"").is_ok());
        let mut seen = Vec::new();
        // A long interval: the ticker must not wait for it before noticing the file.
        let outcome = run(&settings(60_000, None, Some(stop)), |n| seen.push(n));
        assert_eq!(outcome, Outcome::Stopped { ticks: 0 });
        assert!(seen.is_empty());
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn stop_file_created_later_stops_an_unlimited_ticker() {
        let dir = scratch_dir("later");
        let stop = dir.join("stop");
        let mut created = false;
        let outcome = run(&settings(1, None, Some(stop.clone())), |n| {
            if n == 5 {
                created = fs::write(&stop, b"").is_ok();
            }
        });
        assert!(created);
        assert_eq!(outcome, Outcome::Stopped { ticks: 5 });
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn ticks_limit_wins_when_no_stop_file_appears() {
        let dir = scratch_dir("absent");
        let outcome = run(&settings(1, Some(2), Some(dir.join("never"))), |_| {});
        assert_eq!(outcome, Outcome::Finished { ticks: 2 });
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn wait_returns_due_for_a_past_deadline() {
        assert_eq!(wait_until(Instant::now(), None), Wait::Due);
    }
}
