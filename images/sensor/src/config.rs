//! The sensor's config file: `key=value` lines, as a ConfigMap key mounted as a file holds them.
//!
//! ```text
//! # comments and blank lines are ignored
//! interval_ms=500
//! readings=10
//! seed=42
//! sensor=greenhouse-1
//! ```
//!
//! Every key is optional. Unknown or repeated keys are errors, so a typo in the ConfigMap fails
//! the pod instead of being ignored.

use std::num::ParseIntError;
use std::time::Duration;

/// Largest config file read; a ConfigMap holding more than this is not a sensor config.
pub const MAX_CONFIG_BYTES: u64 = 64 * 1024;

const KEYS: &str = "interval_ms, readings, seed, sensor";
const MAX_INTERVAL_MS: u64 = 86_400_000;
const MAX_READINGS: u64 = 1_000_000_000;
const MAX_SENSOR_NAME: usize = 64;

/// What the sensor was configured to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Time between two readings.
    pub interval: Duration,
    /// Number of readings to take before exiting.
    pub readings: u64,
    /// Seed of the pseudo-random values, so two runs with one seed write the same values.
    pub seed: u64,
    /// Name written on every reading.
    pub sensor: String,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            interval: Duration::from_millis(1000),
            readings: 10,
            seed: 42,
            sensor: "sensor-0".to_owned(),
        }
    }
}

/// A line of the config file could not be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// A line is neither blank, a comment, nor `key=value`.
    #[error("line {line}: expected key=value, got {text:?}")]
    Syntax {
        /// 1-based line number.
        line: usize,
        /// The line as written.
        text: String,
    },
    /// A key the sensor does not know.
    #[error("line {line}: unknown key {key:?}, known keys are {KEYS}")]
    UnknownKey {
        /// 1-based line number.
        line: usize,
        /// The key as written.
        key: String,
    },
    /// A key given a second time.
    #[error("line {line}: key {key} is set a second time")]
    Repeated {
        /// 1-based line number of the second setting.
        line: usize,
        /// The key.
        key: &'static str,
    },
    /// A numeric key whose value is not a whole number.
    #[error("line {line}: {key}={value:?} is not a whole number: {source}")]
    NotANumber {
        /// 1-based line number.
        line: usize,
        /// The key.
        key: &'static str,
        /// The value as written.
        value: String,
        /// Why it did not parse.
        source: ParseIntError,
    },
    /// A numeric key outside its range.
    #[error("line {line}: {key}={value} is out of range, use 0..={max}")]
    OutOfRange {
        /// 1-based line number.
        line: usize,
        /// The key.
        key: &'static str,
        /// The value.
        value: u64,
        /// Largest accepted value.
        max: u64,
    },
    /// A sensor name that is empty, too long, or not a single printable word.
    #[error(
        "line {line}: sensor={value:?} must be 1..={MAX_SENSOR_NAME} characters of letters, \
         digits, '-', '_' or '.'"
    )]
    BadName {
        /// 1-based line number.
        line: usize,
        /// The value as written.
        value: String,
    },
}

/// Parses the text of a config file; keys that are absent keep their [`Config::default`].
pub fn parse(text: &str) -> Result<Config, ConfigError> {
    let mut config = Config::default();
    let mut seen: Vec<&'static str> = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let Some((key, value)) = trimmed.split_once('=') else {
            return Err(ConfigError::Syntax {
                line,
                text: raw.to_owned(),
            });
        };
        let key = canonical_key(key.trim()).ok_or_else(|| ConfigError::UnknownKey {
            line,
            key: key.trim().to_owned(),
        })?;
        if seen.contains(&key) {
            return Err(ConfigError::Repeated { line, key });
        }
        seen.push(key);
        let value = value.trim();
        match key {
            "interval_ms" => {
                config.interval = Duration::from_millis(number(line, key, value, MAX_INTERVAL_MS)?);
            }
            "readings" => config.readings = number(line, key, value, MAX_READINGS)?,
            "seed" => config.seed = number(line, key, value, u64::MAX)?,
            _ => config.sensor = sensor_name(line, value)?,
        }
    }
    Ok(config)
}

/// Maps a key as written to its static name, so errors can hold it without allocating.
fn canonical_key(key: &str) -> Option<&'static str> {
    ["interval_ms", "readings", "seed", "sensor"]
        .into_iter()
        .find(|known| *known == key)
}

fn number(line: usize, key: &'static str, value: &str, max: u64) -> Result<u64, ConfigError> {
    let parsed = value
        .parse::<u64>()
        .map_err(|source| ConfigError::NotANumber {
            line,
            key,
            value: value.to_owned(),
            source,
        })?;
    if parsed > max {
        return Err(ConfigError::OutOfRange {
            line,
            key,
            value: parsed,
            max,
        });
    }
    Ok(parsed)
}

/// The name is one field of a space-separated output line, so it must not contain spaces.
fn sensor_name(line: usize, value: &str) -> Result<String, ConfigError> {
    let valid = !value.is_empty()
        && value.chars().count() <= MAX_SENSOR_NAME
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if valid {
        Ok(value.to_owned())
    } else {
        Err(ConfigError::BadName {
            line,
            value: value.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_defaults() {
        assert_eq!(parse(""), Ok(Config::default()));
        assert_eq!(parse("\n# only a comment\n   \n"), Ok(Config::default()));
    }

    #[test]
    fn all_keys_with_spaces_comments_and_crlf() {
        let text = "# sensor\r\n interval_ms = 500\r\nreadings=3\n\nseed=7\nsensor=gh-1.a_b\n";
        assert_eq!(
            parse(text),
            Ok(Config {
                interval: Duration::from_millis(500),
                readings: 3,
                seed: 7,
                sensor: "gh-1.a_b".to_owned(),
            })
        );
    }

    #[test]
    fn extra_equals_sign_makes_a_bad_number() {
        assert!(matches!(
            parse("readings=1=2"),
            Err(ConfigError::NotANumber {
                line: 1,
                key: "readings",
                ..
            })
        ));
    }

    #[test]
    fn line_without_equals_is_a_syntax_error() {
        assert_eq!(
            parse("readings=1\ninterval_ms 5"),
            Err(ConfigError::Syntax {
                line: 2,
                text: "interval_ms 5".to_owned()
            })
        );
    }

    #[test]
    fn unknown_and_repeated_keys_are_rejected() {
        assert_eq!(
            parse("intervall_ms=5"),
            Err(ConfigError::UnknownKey {
                line: 1,
                key: "intervall_ms".to_owned()
            })
        );
        assert_eq!(
            parse("readings=1\nreadings=2"),
            Err(ConfigError::Repeated {
                line: 2,
                key: "readings"
            })
        );
        let message = parse("=5").map_err(|err| err.to_string());
        assert_eq!(
            message,
            Err(format!("line 1: unknown key \"\", known keys are {KEYS}"))
        );
    }

    #[test]
    fn bad_numbers_are_rejected() {
        assert!(matches!(
            parse("interval_ms=-1"),
            Err(ConfigError::NotANumber {
                key: "interval_ms",
                ..
            })
        ));
        assert!(matches!(
            parse("readings="),
            Err(ConfigError::NotANumber {
                key: "readings",
                ..
            })
        ));
        assert_eq!(
            parse("interval_ms=86400001"),
            Err(ConfigError::OutOfRange {
                line: 1,
                key: "interval_ms",
                value: 86_400_001,
                max: MAX_INTERVAL_MS
            })
        );
        assert!(matches!(
            parse("seed=18446744073709551616"),
            Err(ConfigError::NotANumber { key: "seed", .. })
        ));
    }

    #[test]
    fn sensor_names_are_single_words() {
        for bad in ["", "two words", "tab\there", "ünïcode", &"x".repeat(65)] {
            assert!(
                matches!(
                    parse(&format!("sensor={bad}")),
                    Err(ConfigError::BadName { .. })
                ),
                "{bad:?} accepted"
            );
        }
        assert!(parse(&format!("sensor={}", "x".repeat(64))).is_ok());
    }
}
