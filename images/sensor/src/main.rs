//! `sensor`: reads its settings from a config file (a mounted ConfigMap) and appends readings to
//! a file (in an emptyDir), then exits 0.
//!
//! Environment:
//! - `SENSOR_CONFIG`: config file, default `/config/sensor.conf` (format in [`config`]).
//! - `SENSOR_OUT`: output file, default `/data/readings.log`; created if missing, appended to.
//!
//! Each reading is one line `<unix-ms> <sensor> <n> <value>`, e.g.
//! `1767225600000 sensor-0 1 27.31`. Values are pseudo-random but fully determined by `seed`
//! and the reading's number, so a test can predict them. Exit codes: 0 done, 1 config error,
//! 2 output error.

mod config;

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::thread;
use std::time::Duration;

use config::{Config, ConfigError, MAX_CONFIG_BYTES};
use samples_common::{env_string, log, log_error, unix_millis, EnvError};

const PROGRAM: &str = "sensor";
const DEFAULT_CONFIG: &str = "/config/sensor.conf";
const DEFAULT_OUT: &str = "/data/readings.log";

/// Why the sensor gave up.
#[derive(Debug, thiserror::Error)]
enum SensorError {
    #[error(transparent)]
    Env(#[from] EnvError),
    #[error("cannot read config file {path}: {source}")]
    ReadConfig { path: PathBuf, source: io::Error },
    #[error("config file {path} is larger than {MAX_CONFIG_BYTES} bytes")]
    ConfigTooLarge { path: PathBuf },
    #[error("config file {path}: {source}")]
    Config { path: PathBuf, source: ConfigError },
    #[error("cannot open output file {path} for appending: {source}")]
    OpenOutput { path: PathBuf, source: io::Error },
    #[error("cannot append reading {reading} to {path}: {source}")]
    WriteOutput {
        path: PathBuf,
        reading: u64,
        source: io::Error,
    },
}

impl SensorError {
    fn exit_code(&self) -> ExitCode {
        match self {
            Self::Env(_)
            | Self::ReadConfig { .. }
            | Self::ConfigTooLarge { .. }
            | Self::Config { .. } => ExitCode::from(1),
            Self::OpenOutput { .. } | Self::WriteOutput { .. } => ExitCode::from(2),
        }
    }
}

fn main() -> ExitCode {
    match run_from_env() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            log_error(PROGRAM, format_args!("{err}"));
            err.exit_code()
        }
    }
}

fn run_from_env() -> Result<(), SensorError> {
    let config_path = path_from_env("SENSOR_CONFIG", DEFAULT_CONFIG)?;
    let out_path = path_from_env("SENSOR_OUT", DEFAULT_OUT)?;

    let config = load_config(&config_path)?;
    log(
        PROGRAM,
        format_args!(
            "config {}: sensor {}, {} readings every {} ms, seed {}; writing to {}",
            config_path.display(),
            config.sensor,
            config.readings,
            config.interval.as_millis(),
            config.seed,
            out_path.display()
        ),
    );
    let mut out = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&out_path)
        .map_err(|source| SensorError::OpenOutput {
            path: out_path.clone(),
            source,
        })?;
    record(&config, &mut out, unix_millis, thread::sleep, |n, line| {
        log(
            PROGRAM,
            format_args!("reading {n}/{}: {line}", config.readings),
        );
    })
    .map_err(|(reading, source)| SensorError::WriteOutput {
        path: out_path.clone(),
        reading,
        source,
    })?;
    log(
        PROGRAM,
        format_args!("wrote {} readings, exiting", config.readings),
    );
    Ok(())
}

/// Path in variable `name`, or `default` when it is unset or empty.
fn path_from_env(name: &str, default: &str) -> Result<PathBuf, EnvError> {
    Ok(PathBuf::from(
        env_string(name)?
            .filter(|path| !path.is_empty())
            .unwrap_or_else(|| default.to_owned()),
    ))
}

fn load_config(path: &Path) -> Result<Config, SensorError> {
    let read_err = |source| SensorError::ReadConfig {
        path: path.to_owned(),
        source,
    };
    let mut text = String::new();
    File::open(path)
        .map_err(read_err)?
        .take(MAX_CONFIG_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(read_err)?;
    if u64::try_from(text.len()).map_or(true, |len| len > MAX_CONFIG_BYTES) {
        return Err(SensorError::ConfigTooLarge {
            path: path.to_owned(),
        });
    }
    config::parse(&text).map_err(|source| SensorError::Config {
        path: path.to_owned(),
        source,
    })
}

/// Takes `config.readings` readings `config.interval` apart, appending each as one line to
/// `out` and reporting it to `on_reading`. Fails with the reading's number on a write error.
fn record(
    config: &Config,
    out: &mut impl Write,
    mut now_ms: impl FnMut() -> u128,
    mut sleep: impl FnMut(Duration),
    mut on_reading: impl FnMut(u64, &str),
) -> Result<(), (u64, io::Error)> {
    for n in 1..=config.readings {
        if n > 1 {
            sleep(config.interval);
        }
        let line = format!(
            "{} {} {n} {}",
            now_ms(),
            config.sensor,
            format_centi(value(config.seed, n))
        );
        // One write per line so a reader tailing the file never sees half a reading from us.
        out.write_all(format!("{line}\n").as_bytes())
            .and_then(|()| out.flush())
            .map_err(|err| (n, err))?;
        on_reading(n, &line);
    }
    Ok(())
}

/// The `n`th reading for `seed`, in hundredths: 15.00 to 35.00, like a room temperature.
///
/// splitmix64 of seed and index: cheap, well mixed, and the same on every host and runtime.
fn value(seed: u64, n: u64) -> u64 {
    let mut z = seed
        .wrapping_add(n.wrapping_mul(0x9e37_79b9_7f4a_7c15))
        .wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    1500 + z % 2001
}

fn format_centi(centi: u64) -> String {
    format!("{}.{:02}", centi / 100, centi % 100)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(readings: u64, seed: u64) -> Config {
        Config {
            interval: Duration::from_millis(250),
            readings,
            seed,
            sensor: "s1".to_owned(),
        }
    }

    #[test]
    fn values_are_deterministic_in_range_and_vary() {
        let first: Vec<u64> = (1..=50).map(|n| value(42, n)).collect();
        let again: Vec<u64> = (1..=50).map(|n| value(42, n)).collect();
        assert_eq!(first, again);
        assert!(first.iter().all(|v| (1500..=3500).contains(v)));
        let distinct: std::collections::BTreeSet<_> = first.iter().collect();
        assert!(distinct.len() > 40, "values barely vary: {first:?}");
        assert_ne!(value(42, 1), value(43, 1));
    }

    #[test]
    fn centi_formatting() {
        assert_eq!(format_centi(1500), "15.00");
        assert_eq!(format_centi(2307), "23.07");
        assert_eq!(format_centi(3500), "35.00");
    }

    #[test]
    fn writes_one_line_per_reading_and_sleeps_between() {
        let mut out = Vec::new();
        let mut sleeps = Vec::new();
        let mut clock = 1000_u128;
        let mut reported = Vec::new();
        let result = record(
            &config(3, 9),
            &mut out,
            || {
                clock += 250;
                clock
            },
            |d| sleeps.push(d),
            |n, line| reported.push((n, line.to_owned())),
        );
        assert!(result.is_ok());
        let text = String::from_utf8_lossy(&out).into_owned();
        let expected: Vec<String> = (1..=3_u64)
            .map(|n| {
                format!(
                    "{} s1 {n} {}",
                    1000 + 250 * u128::from(n),
                    format_centi(value(9, n))
                )
            })
            .collect();
        assert_eq!(text, format!("{}\n", expected.join("\n")));
        assert_eq!(sleeps, vec![Duration::from_millis(250); 2]);
        assert_eq!(
            reported,
            expected
                .into_iter()
                .enumerate()
                .map(|(i, line)| (i as u64 + 1, line))
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn zero_readings_writes_nothing() {
        let mut out = Vec::new();
        let result = record(&config(0, 1), &mut out, || 0, |_| {}, |_, _| {});
        assert!(result.is_ok());
        assert!(out.is_empty());
    }

    /// A sink that accepts a fixed number of writes and then fails, like a full disk.
    struct FullAfter(usize);

    impl Write for FullAfter {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.0 == 0 {
                return Err(io::Error::other("no space left"));
            }
            self.0 -= 1;
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn write_failure_names_the_reading() {
        let result = record(&config(5, 1), &mut FullAfter(2), || 0, |_| {}, |_, _| {});
        assert!(matches!(result, Err((3, _))));
    }

    #[test]
    fn load_config_reports_missing_large_and_bad_files() {
        let dir = std::env::temp_dir().join(format!("sensor-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        assert!(std::fs::create_dir_all(&dir).is_ok());

        let missing = dir.join("missing.conf");
        assert!(matches!(
            load_config(&missing),
            Err(SensorError::ReadConfig { .. })
        ));

        let large = dir.join("large.conf");
        let big = "#".repeat(usize::try_from(MAX_CONFIG_BYTES).unwrap_or(65536) + 1);
        assert!(std::fs::write(&large, big).is_ok());
        assert!(matches!(
            load_config(&large),
            Err(SensorError::ConfigTooLarge { .. })
        ));

        let bad = dir.join("bad.conf");
        assert!(std::fs::write(&bad, "readings=ten\n").is_ok());
        let err = load_config(&bad).map(|_| ()).map_err(|e| e.to_string());
        let Err(message) = err else {
            panic!("bad config accepted");
        };
        assert!(message.contains("bad.conf"), "{message}");
        assert!(message.contains("line 1"), "{message}");

        let good = dir.join("good.conf");
        assert!(std::fs::write(&good, "readings=2\ninterval_ms=5\n").is_ok());
        let loaded = load_config(&good).ok();
        assert_eq!(
            loaded.map(|c| (c.readings, c.interval)),
            Some((2, Duration::from_millis(5)))
        );

        let _ = std::fs::remove_dir_all(dir);
    }
}
