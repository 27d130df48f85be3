//! Helpers shared by Bramble's sample workloads.
//!
//! The samples read their settings from environment variables, as a pod spec's `env` sets them.
//! A variable that is unset takes its default; one that is set but malformed is an error, so a
//! typo in a manifest fails the pod loudly instead of silently running with a default.

use std::ffi::OsStr;
use std::fmt;
use std::io::{self, Write};
use std::num::ParseIntError;
use std::ops::RangeInclusive;
use std::time::{SystemTime, UNIX_EPOCH};

/// A setting taken from an environment variable could not be used.
#[derive(Debug, thiserror::Error)]
pub enum EnvError {
    /// The variable holds bytes that are not UTF-8.
    #[error("environment variable {name} is not valid UTF-8")]
    NotUnicode {
        /// Name of the variable.
        name: String,
    },
    /// The variable is not a whole number.
    #[error("environment variable {name}={value:?} is not a whole number: {source}")]
    NotANumber {
        /// Name of the variable.
        name: String,
        /// The value as set.
        value: String,
        /// Why it did not parse.
        source: ParseIntError,
    },
    /// The variable is a number outside the range the program accepts.
    #[error("environment variable {name}={value} is out of range, use {min}..={max}")]
    OutOfRange {
        /// Name of the variable.
        name: String,
        /// The value as set.
        value: u64,
        /// Smallest accepted value.
        min: u64,
        /// Largest accepted value.
        max: u64,
    },
}

/// Reads environment variable `name` as a string, or `None` when it is unset.
pub fn env_string(name: &str) -> Result<Option<String>, EnvError> {
    parse_string(name, std::env::var_os(name).as_deref())
}

/// Reads environment variable `name` as a whole number within `range`, or `default` when it
/// is unset. An empty value counts as unset, as Kubernetes renders `value: ""`.
pub fn env_u64(name: &str, default: u64, range: RangeInclusive<u64>) -> Result<u64, EnvError> {
    Ok(env_opt_u64(name, range)?.unwrap_or(default))
}

/// Reads environment variable `name` as a whole number within `range`, or `None` when it is
/// unset or empty.
pub fn env_opt_u64(name: &str, range: RangeInclusive<u64>) -> Result<Option<u64>, EnvError> {
    parse_opt_u64(name, std::env::var_os(name).as_deref(), range)
}

/// Parses the raw value of variable `name`; split from [`env_string`] so it is testable
/// without touching the process environment.
pub fn parse_string(name: &str, raw: Option<&OsStr>) -> Result<Option<String>, EnvError> {
    match raw {
        None => Ok(None),
        Some(raw) => raw
            .to_str()
            .map(|value| Some(value.to_owned()))
            .ok_or_else(|| EnvError::NotUnicode {
                name: name.to_owned(),
            }),
    }
}

/// Parses the raw value of variable `name` as a whole number within `range`, `None` when it is
/// unset or blank; split from [`env_opt_u64`] so it is testable without touching the process
/// environment.
pub fn parse_opt_u64(
    name: &str,
    raw: Option<&OsStr>,
    range: RangeInclusive<u64>,
) -> Result<Option<u64>, EnvError> {
    let Some(text) = parse_string(name, raw)? else {
        return Ok(None);
    };
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    let value = text.parse::<u64>().map_err(|source| EnvError::NotANumber {
        name: name.to_owned(),
        value: text.to_owned(),
        source,
    })?;
    if range.contains(&value) {
        Ok(Some(value))
    } else {
        Err(EnvError::OutOfRange {
            name: name.to_owned(),
            value,
            min: *range.start(),
            max: *range.end(),
        })
    }
}

/// Milliseconds since the Unix epoch by the wall clock.
///
/// A clock set before 1970 (a board without a real-time clock that has not synced yet) reads
/// as 0 rather than failing: a log line with a bad time is more useful than no log line.
pub fn unix_millis() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis())
        .unwrap_or(0)
}

/// Writes one log line to stdout, prefixed with the program name.
///
/// Write errors are dropped on purpose: a workload whose log sink went away (the runtime
/// closed the pipe) should keep doing its work rather than die on `println!`'s panic.
pub fn log(program: &str, args: fmt::Arguments<'_>) {
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "{program}: {args}").and_then(|()| out.flush());
}

/// Writes one error line to stderr, prefixed with the program name; errors are dropped for the
/// same reason as in [`log`].
pub fn log_error(program: &str, args: fmt::Arguments<'_>) {
    let mut err = io::stderr().lock();
    let _ = writeln!(err, "{program}: error: {args}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unset_and_empty_take_the_default() {
        assert_eq!(parse_opt_u64("N", None, 0..=10).ok(), Some(None));
        assert_eq!(
            parse_opt_u64("N", Some(OsStr::new("")), 0..=10).ok(),
            Some(None)
        );
        assert_eq!(
            parse_opt_u64("N", Some(OsStr::new("  ")), 0..=10).ok(),
            Some(None)
        );
    }

    #[test]
    fn numbers_are_parsed_and_trimmed() {
        assert_eq!(
            parse_opt_u64("N", Some(OsStr::new("10")), 0..=10).ok(),
            Some(Some(10))
        );
        assert_eq!(
            parse_opt_u64("N", Some(OsStr::new(" 3\n")), 0..=10).ok(),
            Some(Some(3))
        );
    }

    #[test]
    fn garbage_is_rejected_with_the_name_and_value() {
        let err = parse_opt_u64("TICKS", Some(OsStr::new("ten")), 0..=10);
        let Err(err) = err else {
            panic!("\"ten\" parsed as a number");
        };
        assert!(matches!(err, EnvError::NotANumber { .. }));
        let message = err.to_string();
        assert!(message.contains("TICKS"), "{message}");
        assert!(message.contains("ten"), "{message}");
        assert!(matches!(
            parse_opt_u64("N", Some(OsStr::new("-1")), 0..=10),
            Err(EnvError::NotANumber { .. })
        ));
        assert!(matches!(
            parse_opt_u64(
                "N",
                Some(OsStr::new("99999999999999999999999")),
                0..=u64::MAX
            ),
            Err(EnvError::NotANumber { .. })
        ));
    }

    #[test]
    fn out_of_range_is_rejected() {
        let err = parse_opt_u64("EXIT_CODE", Some(OsStr::new("300")), 0..=125);
        assert!(matches!(
            err,
            Err(EnvError::OutOfRange {
                value: 300,
                min: 0,
                max: 125,
                ..
            })
        ));
        assert!(matches!(
            parse_opt_u64("N", Some(OsStr::new("0")), 1..=10),
            Err(EnvError::OutOfRange { value: 0, .. })
        ));
    }

    #[cfg(unix)]
    #[test]
    fn non_utf8_is_rejected() {
        use std::os::unix::ffi::OsStrExt;
        let raw = OsStr::from_bytes(&[0x66, 0xff]);
        assert!(matches!(
            parse_string("STOP_FILE", Some(raw)),
            Err(EnvError::NotUnicode { .. })
        ));
        assert!(matches!(
            parse_opt_u64("N", Some(raw), 0..=10),
            Err(EnvError::NotUnicode { .. })
        ));
    }

    #[test]
    fn strings_pass_through() {
        assert_eq!(
            parse_string("S", Some(OsStr::new("/tmp/stop"))).ok(),
            Some(Some("/tmp/stop".to_owned()))
        );
        assert_eq!(parse_string("S", None).ok(), Some(None));
    }

    #[test]
    fn wall_clock_is_after_2020() {
        // 2020-01-01 in milliseconds; any host running these tests is past it.
        assert!(unix_millis() > 1_577_836_800_000);
    }
}
