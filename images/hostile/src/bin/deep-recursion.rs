//! `deep-recursion`: recurses without bound until the stack runs out.
//!
//! Each call keeps values live across the recursive call and does work after it returns, so the
//! compiler can turn it neither into a loop nor into a tail call. The module is expected to trap
//! with the engine's call stack exhausted (wasmtime: "call stack exhausted"); the runtime must
//! report that as a failed container and stay up itself.

use std::hint::black_box;

use samples_common::log;

const PROGRAM: &str = "deep-recursion";
/// Depth is logged at multiples of this, so the log shows how deep it got.
const REPORT_EVERY: u64 = 1000;

fn main() {
    log(PROGRAM, format_args!("recursing until the stack runs out"));
    let total = descend(1);
    // Not reached: the recursion has no base case.
    log(PROGRAM, format_args!("unexpectedly returned {total}"));
}

// Unbounded recursion is what this program is for.
#[allow(unconditional_recursion)]
#[inline(never)]
fn descend(depth: u64) -> u64 {
    // Values live across the call: they sit in wasm locals, so each level costs the engine's
    // native stack rather than the module's small shadow stack in linear memory.
    let (a, b, c) = (depth.rotate_left(7), depth ^ 0x5555, depth.wrapping_mul(3));
    if depth % REPORT_EVERY == 0 {
        log(PROGRAM, format_args!("depth {depth}"));
    }
    let below = descend(black_box(depth.wrapping_add(1)));
    // Work after the call returns is what rules out tail-call elimination.
    below.wrapping_mul(31).wrapping_add(a ^ b ^ c)
}
