//! One process of a task (the init process or an exec'd one): its status as a small state
//! machine, its exit status and time, the kill handle of its Wasm instance, and waiting for
//! its end.

use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

use bramble_wasm_shim::exit::{Exit, ExitReason};
use bramble_wasm_shim::guest::KillHandle;
use tokio_util::sync::CancellationToken;

use crate::error::ShimError;
use crate::stdio::Stdio;

/// Where a process is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Created, not started.
    Created,
    /// Its instance is running.
    Running,
    /// It ended (or was killed before it started).
    Stopped,
}

impl Status {
    /// The name containerd shows.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Stopped => "stopped",
        }
    }

    /// Only a created process can be started.
    pub fn can_start(self) -> bool {
        self == Status::Created
    }

    /// A running process cannot be deleted (kill it first), as with runc.
    pub fn can_delete(self) -> bool {
        self != Status::Running
    }
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitStatus {
    /// Process-style status (0-255).
    pub code: u32,
    /// When.
    pub at: SystemTime,
}

/// What a kill does to a process, by signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignalAction {
    /// Stop the instance; it exits with 128 + the signal.
    Stop,
    /// Nothing (signals whose default action is to be ignored).
    Ignore,
}

/// The action for `signal`, or `None` for signals a Wasm guest cannot honour (stop/continue
/// job control, unknown numbers).
pub fn signal_action(signal: u32) -> Option<SignalAction> {
    let signal = i32::try_from(signal).ok()?;
    match signal {
        libc::SIGHUP
        | libc::SIGINT
        | libc::SIGQUIT
        | libc::SIGABRT
        | libc::SIGKILL
        | libc::SIGUSR1
        | libc::SIGUSR2
        | libc::SIGPIPE
        | libc::SIGALRM
        | libc::SIGTERM => Some(SignalAction::Stop),
        libc::SIGCHLD | libc::SIGURG | libc::SIGWINCH | libc::SIGCONT => Some(SignalAction::Ignore),
        _ => None,
    }
}

/// The exit status to report for an instance that ended with `exit`, having been sent the
/// stopping signal `signal` (if any): 128 + that signal when the kill is what ended it (137
/// for SIGKILL, 143 for SIGTERM), the guest's own status otherwise.
pub fn exit_code(exit: &Exit, signal: Option<u32>) -> u32 {
    match (&exit.reason, signal) {
        (ExitReason::Killed, Some(signal)) => 128 + signal,
        _ => u32::try_from(exit.code).unwrap_or(255),
    }
}

struct State {
    status: Status,
    exit: Option<ExitStatus>,
    /// The signal of the kill that stops it, once one was sent.
    signal: Option<u32>,
}

/// One process.
pub struct Process {
    /// Container id.
    pub id: String,
    /// Exec id; empty for the init process.
    pub exec_id: String,
    /// Where its standard streams go.
    pub stdio: Stdio,
    /// Stops its instance.
    pub kill: KillHandle,
    /// Closes its stdin (CloseIO).
    pub close_stdin: CancellationToken,
    state: Mutex<State>,
    ended: Condvar,
}

impl Process {
    /// A created process.
    pub fn new(id: &str, exec_id: &str, stdio: Stdio) -> Self {
        Self {
            id: id.to_string(),
            exec_id: exec_id.to_string(),
            stdio,
            kill: KillHandle::new(),
            close_stdin: CancellationToken::new(),
            state: Mutex::new(State {
                status: Status::Created,
                exit: None,
                signal: None,
            }),
            ended: Condvar::new(),
        }
    }

    /// The name used in errors: the exec id, or the container id for init.
    pub fn name(&self) -> &str {
        if self.exec_id.is_empty() {
            &self.id
        } else {
            &self.exec_id
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Every update writes whole fields; a panic elsewhere cannot leave it torn.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Current status and exit.
    pub fn status(&self) -> (Status, Option<ExitStatus>) {
        let state = self.state();
        (state.status, state.exit)
    }

    /// Created -> Running; fails in any other state.
    pub fn mark_running(&self) -> Result<(), ShimError> {
        let mut state = self.state();
        if !state.status.can_start() {
            return Err(ShimError::WrongState {
                action: "start",
                id: self.name().to_string(),
                status: state.status.as_str(),
            });
        }
        state.status = Status::Running;
        Ok(())
    }

    /// Records the end of the instance and wakes waiters; returns the exit status. Only the
    /// first end counts.
    pub fn mark_exited(&self, exit: Option<&Exit>) -> ExitStatus {
        let mut state = self.state();
        if let Some(done) = state.exit {
            return done;
        }
        let code = match exit {
            Some(exit) => exit_code(exit, state.signal),
            // Killed before it started, or it never got to run.
            None => state.signal.map_or(255, |signal| 128 + signal),
        };
        let done = ExitStatus {
            code,
            at: SystemTime::now(),
        };
        state.status = Status::Stopped;
        state.exit = Some(done);
        self.ended.notify_all();
        done
    }

    /// Sends `signal`: stops the instance (or the not yet started process) for signals that
    /// terminate. Returns whether a process that never started was stopped by it, so the
    /// caller publishes its exit.
    pub fn signal(&self, signal: u32) -> Result<bool, ShimError> {
        let action = signal_action(signal).ok_or_else(|| ShimError::Unsupported {
            what: format!("signal {signal}"),
        })?;
        let mut state = self.state();
        if state.status == Status::Stopped {
            return Err(ShimError::Finished {
                id: self.name().to_string(),
            });
        }
        if action == SignalAction::Ignore {
            return Ok(false);
        }
        state.signal.get_or_insert(signal);
        let never_started = state.status == Status::Created;
        drop(state);
        self.kill.kill();
        if never_started {
            self.mark_exited(None);
        }
        Ok(never_started)
    }

    /// Blocks until the process has ended.
    pub fn wait(&self) -> ExitStatus {
        let mut state = self.state();
        loop {
            if let Some(exit) = state.exit {
                return exit;
            }
            state = self
                .ended
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    fn exit(code: i32, reason: ExitReason) -> Exit {
        Exit {
            code,
            reason,
            wall_time: Duration::ZERO,
            cpu_time: Duration::ZERO,
            memory_bytes: 0,
        }
    }

    fn process() -> Process {
        Process::new("c1", "", Stdio::default())
    }

    #[test]
    fn exit_codes_say_which_signal_stopped_the_guest() {
        assert_eq!(exit_code(&exit(0, ExitReason::Completed), None), 0);
        assert_eq!(exit_code(&exit(3, ExitReason::Error(3)), Some(15)), 3);
        assert_eq!(exit_code(&exit(137, ExitReason::Killed), Some(15)), 143);
        assert_eq!(exit_code(&exit(137, ExitReason::Killed), Some(9)), 137);
        assert_eq!(
            exit_code(&exit(134, ExitReason::Trap("x".into())), None),
            134
        );
        assert_eq!(exit_code(&exit(137, ExitReason::OOMKilled), None), 137);
    }

    #[test]
    fn signals_stop_ignore_or_are_refused() {
        assert_eq!(signal_action(9), Some(SignalAction::Stop));
        assert_eq!(signal_action(15), Some(SignalAction::Stop));
        assert_eq!(signal_action(28), Some(SignalAction::Ignore));
        assert_eq!(signal_action(19), None); // SIGSTOP
        assert_eq!(signal_action(1000), None);
    }

    #[test]
    fn a_process_moves_created_running_stopped_once() {
        let p = process();
        assert_eq!(p.status().0, Status::Created);
        p.mark_running().unwrap();
        assert!(p.mark_running().is_err());
        assert!(!Status::Running.can_delete());
        assert!(
            !p.signal(15).unwrap(),
            "a running process is stopped by its task"
        );
        assert!(p.kill.is_killed());
        let done = p.mark_exited(Some(&exit(137, ExitReason::Killed)));
        assert_eq!(done.code, 143);
        // A second end (e.g. the guest's own, racing the kill) changes nothing.
        assert_eq!(p.mark_exited(Some(&exit(0, ExitReason::Completed))), done);
        assert!(matches!(p.signal(9), Err(ShimError::Finished { .. })));
        assert_eq!(p.wait(), done);
    }

    #[test]
    fn killing_a_created_process_ends_it_with_the_signal() {
        let p = process();
        assert!(p.signal(9).unwrap());
        assert_eq!(p.status().1.map(|e| e.code), Some(137));
        assert!(p.mark_running().is_err());
    }

    #[test]
    fn waiters_wake_when_it_ends() {
        let p = Arc::new(process());
        let waiter = {
            let p = Arc::clone(&p);
            std::thread::spawn(move || p.wait().code)
        };
        std::thread::sleep(Duration::from_millis(20));
        p.mark_exited(Some(&exit(7, ExitReason::Error(7))));
        assert_eq!(waiter.join().unwrap(), 7);
    }
}
