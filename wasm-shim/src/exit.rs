//! How an instance ended, and the one place that decides it from wasmtime's result and the
//! guard's state.

use std::time::Duration;

use wasmtime_wasi::I32Exit;

use crate::guest::{Guard, Interruption};

/// Exit code reported for instances stopped from outside (as for SIGKILL: 128 + 9).
pub const KILLED_CODE: i32 = 137;

/// Exit code reported for traps (as for SIGABRT: 128 + 6, which wasmtime's CLI uses too).
pub const TRAP_CODE: i32 = 134;

/// Longest trap or error message kept in [`ExitReason::Trap`].
const MAX_MESSAGE: usize = 1024;

/// Why an instance ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExitReason {
    /// It returned from its entry point or exited with status 0.
    Completed,
    /// It exited with this non-zero status.
    Error(i32),
    /// It failed after being refused memory (or table space) past its limit.
    OOMKilled,
    /// Its wall-clock time limit passed.
    DeadlineExceeded,
    /// Its CPU time budget was spent.
    CpuBudgetExceeded,
    /// It trapped (unreachable, out-of-bounds access, stack exhausted, …).
    Trap(String),
    /// It was killed through its [`KillHandle`](crate::guest::KillHandle).
    Killed,
}

/// The end of one instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exit {
    /// Process-style exit code: the guest's status, [`KILLED_CODE`] or [`TRAP_CODE`].
    pub code: i32,
    /// Why it ended.
    pub reason: ExitReason,
    /// Wall-clock time from start to end.
    pub wall_time: Duration,
    /// Guest execution time, measured at epoch-tick granularity.
    pub cpu_time: Duration,
    /// Linear memory it held at the end (memories only grow), in bytes.
    pub memory_bytes: u64,
}

impl Exit {
    /// Whether the instance completed successfully.
    pub fn success(&self) -> bool {
        self.reason == ExitReason::Completed
    }
}

/// How the supervised call ended.
pub(crate) enum Ended {
    /// The entry point returned: `Ok(status)` or the error it raised.
    Returned(wasmtime::Result<i32>),
    /// The kill handle fired while the guest was waiting in a host call.
    Killed,
    /// The wall-clock limit passed.
    TimedOut,
}

/// Decides the exit code and reason.
pub(crate) fn classify(ended: Ended, guard: &Guard) -> (i32, ExitReason) {
    let result = match ended {
        Ended::Killed => return (KILLED_CODE, ExitReason::Killed),
        Ended::TimedOut => return (KILLED_CODE, ExitReason::DeadlineExceeded),
        Ended::Returned(result) => result,
    };
    match guard.interrupted {
        Some(Interruption::Killed) => return (KILLED_CODE, ExitReason::Killed),
        Some(Interruption::CpuBudget) => return (KILLED_CODE, ExitReason::CpuBudgetExceeded),
        None => {}
    }
    let status = result.or_else(|err| match err.downcast_ref::<I32Exit>() {
        Some(exit) => Ok(exit.0),
        None => Err(err),
    });
    let out_of_memory = guard.limiter.refused();
    match status {
        Ok(0) => (0, ExitReason::Completed),
        // A guest refused memory usually gives up with an error status or an abort trap;
        // either way the cause the operator needs to see is the memory limit.
        Ok(_) | Err(_) if out_of_memory => (KILLED_CODE, ExitReason::OOMKilled),
        Ok(code) => (code, ExitReason::Error(code)),
        Err(err) => (TRAP_CODE, ExitReason::Trap(trap_message(&err))),
    }
}

/// A one-line description of a trap or error, without wasmtime's multi-line backtrace.
fn trap_message(err: &wasmtime::Error) -> String {
    let message = match err.downcast_ref::<wasmtime::Trap>() {
        Some(trap) => trap.to_string(),
        None => format!("{err:#}"),
    };
    let line = message.lines().next().unwrap_or_default();
    match line.char_indices().nth(MAX_MESSAGE) {
        Some((cut, _)) => format!("{}…", line.get(..cut).unwrap_or(line)),
        None => line.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guest::KillHandle;
    use crate::limits::Limits;
    use wasmtime::ResourceLimiter;

    fn guard() -> Guard {
        Guard::new(
            &Limits {
                memory_bytes: Some(1 << 20),
                ..Limits::default()
            },
            Duration::from_millis(10),
            KillHandle::new(),
        )
    }

    fn returned(result: wasmtime::Result<i32>) -> Ended {
        Ended::Returned(result)
    }

    #[test]
    fn statuses_map_to_completed_or_error() {
        assert_eq!(
            classify(returned(Ok(0)), &guard()),
            (0, ExitReason::Completed)
        );
        assert_eq!(
            classify(returned(Ok(3)), &guard()),
            (3, ExitReason::Error(3))
        );
        let exit = wasmtime::Error::new(I32Exit(42));
        assert_eq!(
            classify(returned(Err(exit)), &guard()),
            (42, ExitReason::Error(42))
        );
        let clean = wasmtime::Error::new(I32Exit(0));
        assert_eq!(
            classify(returned(Err(clean)), &guard()),
            (0, ExitReason::Completed)
        );
    }

    #[test]
    fn traps_carry_a_one_line_message() {
        let trap = wasmtime::Error::new(wasmtime::Trap::StackOverflow);
        let (code, reason) = classify(returned(Err(trap)), &guard());
        assert_eq!(code, TRAP_CODE);
        assert_eq!(
            reason,
            ExitReason::Trap("wasm trap: call stack exhausted".into())
        );
        let long = wasmtime::Error::msg(format!("{}\nsecond line", "x".repeat(5000)));
        let (_, reason) = classify(returned(Err(long)), &guard());
        let ExitReason::Trap(message) = reason else {
            panic!("not a trap");
        };
        assert!(!message.contains("second line") && message.chars().count() == MAX_MESSAGE + 1);
    }

    #[test]
    fn failures_after_a_refused_allocation_are_oom_kills() {
        let mut guard = guard();
        assert!(matches!(
            guard.limiter.memory_growing(0, 2 << 20, None),
            Ok(false)
        ));
        assert_eq!(
            classify(returned(Ok(1)), &guard),
            (KILLED_CODE, ExitReason::OOMKilled)
        );
        let trap = wasmtime::Error::new(wasmtime::Trap::UnreachableCodeReached);
        assert_eq!(
            classify(returned(Err(trap)), &guard),
            (KILLED_CODE, ExitReason::OOMKilled)
        );
        // A guest that coped with the refusal and succeeded still succeeded.
        assert_eq!(
            classify(returned(Ok(0)), &guard),
            (0, ExitReason::Completed)
        );
    }

    #[test]
    fn interruptions_and_supervisor_verdicts_win() {
        let mut guard = guard();
        assert_eq!(
            classify(Ended::Killed, &guard),
            (KILLED_CODE, ExitReason::Killed)
        );
        assert_eq!(
            classify(Ended::TimedOut, &guard),
            (KILLED_CODE, ExitReason::DeadlineExceeded)
        );
        guard.interrupted = Some(Interruption::CpuBudget);
        let trap = wasmtime::Error::new(wasmtime::Trap::Interrupt);
        assert_eq!(
            classify(returned(Err(trap)), &guard),
            (KILLED_CODE, ExitReason::CpuBudgetExceeded)
        );
        guard.interrupted = Some(Interruption::Killed);
        let trap = wasmtime::Error::new(wasmtime::Trap::Interrupt);
        assert_eq!(
            classify(returned(Err(trap)), &guard),
            (KILLED_CODE, ExitReason::Killed)
        );
    }
}
