//! `busy-loop`: spins on the CPU forever without ever yielding or making a host call.
//!
//! Tests that the runtime can interrupt pure guest code (epoch interruption or fuel) to enforce
//! CPU limits, `activeDeadlineSeconds` and pod deletion. It never exits by itself.

use std::hint::black_box;

use samples_common::log;

fn main() {
    log("busy-loop", format_args!("spinning forever"));
    let mut spins = 0_u64;
    loop {
        // black_box keeps the loop doing real work, so it stays a hot loop and is not
        // folded into an empty one (which would spin too, but burn less of the CPU limit).
        spins = black_box(spins.wrapping_add(1));
    }
}
