//! `output-flood`: writes to stdout as fast as it can, forever.
//!
//! Tests that the runtime's log capture stays bounded (rotation, back-pressure, or dropping)
//! and that a chatty pod cannot starve the node's disk or the agent. Lines are grouped in
//! numbered 64 KiB blocks so a reader can tell how much was kept or dropped. It only exits, with
//! code 1, if stdout fails.

use std::io::{self, Write};
use std::process::ExitCode;

use samples_common::log_error;

const PROGRAM: &str = "output-flood";
const LINE: &[u8; 64] = b"output-flood: the quick brown fox jumps over the lazy dog 01234\n";
const LINES_PER_BLOCK: usize = 1024;

fn main() -> ExitCode {
    let block = LINE.repeat(LINES_PER_BLOCK);
    let mut out = io::stdout().lock();
    let mut number = 0_u64;
    loop {
        number = number.wrapping_add(1);
        let written =
            writeln!(out, "output-flood: block {number}").and_then(|()| out.write_all(&block));
        if let Err(err) = written {
            log_error(
                PROGRAM,
                format_args!("writing block {number} to stdout failed: {err}"),
            );
            return ExitCode::FAILURE;
        }
    }
}
