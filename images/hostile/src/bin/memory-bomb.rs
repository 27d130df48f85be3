//! `memory-bomb`: allocates memory without bound, writing to every byte it gets.
//!
//! Writing matters: pages that are grown but never touched may cost the host nothing, so only
//! touched memory shows whether the runtime's memory limit (from the pod's `limits.memory`)
//! holds. Wasm32 cannot address more than 4 GiB, so without any limit it stops there.
//!
//! When the runtime refuses to grow memory this logs how far it got and exits 1; a runtime
//! that traps on the refused growth ends it with a trap instead. Either way it never exits 0.

use std::process::ExitCode;

use samples_common::log;

const PROGRAM: &str = "memory-bomb";
const CHUNK: usize = 1 << 20;
/// Progress is logged every this many MiB, so the log shows where the limit struck.
const REPORT_EVERY_MIB: usize = 16;

fn main() -> ExitCode {
    log(
        PROGRAM,
        format_args!("allocating memory in 1 MiB chunks until refused"),
    );
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        let held = hoard.len();
        if hoard.try_reserve(1).is_err() {
            return refused(held);
        }
        let mut chunk = Vec::new();
        if chunk.try_reserve_exact(CHUNK).is_err() {
            return refused(held);
        }
        // A non-zero fill, so the host has to back every page with real memory.
        chunk.resize(CHUNK, 0xa5);
        hoard.push(chunk);
        if hoard.len() % REPORT_EVERY_MIB == 0 {
            log(PROGRAM, format_args!("holding {} MiB", hoard.len()));
        }
    }
}

fn refused(held_mib: usize) -> ExitCode {
    log(
        PROGRAM,
        format_args!("allocation refused while holding {held_mib} MiB, exiting 1"),
    );
    ExitCode::FAILURE
}
