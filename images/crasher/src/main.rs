//! `crasher`: logs, sleeps `CRASH_AFTER_SECS` seconds (default 2), then exits with code
//! `EXIT_CODE` (default 3). For restart policies, back-off and `lastState.terminated`.
//!
//! `EXIT_CODE` is limited to 0..=125: WASI runtimes such as wasmtime refuse larger exit
//! statuses from `proc_exit`, and shells reserve 126 and up. `EXIT_CODE=0` makes a workload
//! that "crashes" successfully, useful for `restartPolicy: OnFailure`. Malformed settings are
//! reported on stderr and exit 125, a code the default never uses.

use std::process::ExitCode;
use std::thread;
use std::time::Duration;

use samples_common::{env_u64, log, log_error, EnvError};

const PROGRAM: &str = "crasher";
const MAX_EXIT_CODE: u64 = 125;
/// One day: a longer delay is more likely a unit mistake than a wish.
const MAX_CRASH_AFTER_SECS: u64 = 86_400;

/// When and how to crash.
#[derive(Debug, PartialEq, Eq)]
struct Plan {
    after: Duration,
    code: u8,
}

fn main() -> ExitCode {
    let plan = match plan_from_env() {
        Ok(plan) => plan,
        Err(err) => {
            log_error(PROGRAM, format_args!("{err}"));
            return ExitCode::from(125);
        }
    };
    log(
        PROGRAM,
        format_args!(
            "started; will exit with code {} in {} s",
            plan.code,
            plan.after.as_secs()
        ),
    );
    thread::sleep(plan.after);
    log(PROGRAM, format_args!("exiting with code {}", plan.code));
    ExitCode::from(plan.code)
}

fn plan_from_env() -> Result<Plan, EnvError> {
    let after = env_u64("CRASH_AFTER_SECS", 2, 0..=MAX_CRASH_AFTER_SECS)?;
    let code = env_u64("EXIT_CODE", 3, 0..=MAX_EXIT_CODE)?;
    Ok(Plan {
        after: Duration::from_secs(after),
        // In range by the check above; the fallback is unreachable but keeps this panic-free.
        code: u8::try_from(code).unwrap_or(125),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// The process environment is shared by the test threads; tests touching it take turns.
    static ENV: Mutex<()> = Mutex::new(());

    fn with_env<T>(vars: &[(&str, Option<&str>)], body: impl FnOnce() -> T) -> T {
        let _guard = ENV
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for (name, value) in vars {
            match value {
                Some(value) => std::env::set_var(name, value),
                None => std::env::remove_var(name),
            }
        }
        body()
    }

    #[test]
    fn defaults_are_two_seconds_and_code_three() {
        let plan = with_env(
            &[("CRASH_AFTER_SECS", None), ("EXIT_CODE", None)],
            plan_from_env,
        );
        assert_eq!(
            plan.ok(),
            Some(Plan {
                after: Duration::from_secs(2),
                code: 3
            })
        );
    }

    #[test]
    fn settings_are_read() {
        let plan = with_env(
            &[("CRASH_AFTER_SECS", Some("0")), ("EXIT_CODE", Some("42"))],
            plan_from_env,
        );
        assert_eq!(
            plan.ok(),
            Some(Plan {
                after: Duration::ZERO,
                code: 42
            })
        );
    }

    #[test]
    fn codes_a_runtime_would_refuse_are_rejected() {
        let plan = with_env(
            &[("CRASH_AFTER_SECS", None), ("EXIT_CODE", Some("126"))],
            plan_from_env,
        );
        assert!(matches!(plan, Err(EnvError::OutOfRange { value: 126, .. })));
        let plan = with_env(
            &[("CRASH_AFTER_SECS", Some("soon")), ("EXIT_CODE", None)],
            plan_from_env,
        );
        assert!(matches!(plan, Err(EnvError::NotANumber { .. })));
    }
}
