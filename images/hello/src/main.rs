//! `hello`: prints its arguments and its environment (sorted by name), then exits 0. Run as
//! `hello --stdin` it copies its standard input to standard output instead (what
//! `echo hi | kubectl exec -i POD -- hello --stdin` checks).
//!
//! The smallest useful check that a runtime passes a pod's `command`/`args` and `env` through
//! to a WASI module. Values that are not UTF-8 are printed lossily rather than rejected.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::io::{self, Write};
use std::process::ExitCode;

fn main() -> ExitCode {
    if std::env::args_os().nth(1).is_some_and(|a| a == "--stdin") {
        return match io::copy(&mut io::stdin().lock(), &mut io::stdout().lock()) {
            Ok(_) => ExitCode::SUCCESS,
            Err(err) => {
                let _ = writeln!(io::stderr(), "hello: error: copying stdin failed: {err}");
                ExitCode::FAILURE
            }
        };
    }
    let text = render(std::env::args_os(), std::env::vars_os());
    let mut out = io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        // Printing is this program's whole job, so failing to print is a failure.
        Err(err) => {
            let _ = writeln!(
                io::stderr(),
                "hello: error: writing to stdout failed: {err}"
            );
            ExitCode::FAILURE
        }
    }
}

/// Renders the report: a greeting, one line per argument, one `NAME=value` line per variable.
fn render(
    args: impl IntoIterator<Item = OsString>,
    vars: impl IntoIterator<Item = (OsString, OsString)>,
) -> String {
    let args: Vec<OsString> = args.into_iter().collect();
    let mut vars: Vec<(OsString, OsString)> = vars.into_iter().collect();
    vars.sort();

    let mut text = String::from("hello from a wasm workload\n");
    // Writing to a String cannot fail, so the fmt::Result values below are always Ok.
    let _ = writeln!(text, "args ({}):", args.len());
    for (index, arg) in args.iter().enumerate() {
        let _ = writeln!(text, "  [{index}] {}", arg.to_string_lossy());
    }
    let _ = writeln!(text, "env ({}):", vars.len());
    for (name, value) in &vars {
        let _ = writeln!(
            text,
            "  {}={}",
            name.to_string_lossy(),
            value.to_string_lossy()
        );
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(text: &str) -> OsString {
        OsString::from(text)
    }

    #[test]
    fn prints_args_in_order_and_env_sorted() {
        let text = render(
            [os("hello.wasm"), os("b"), os("a")],
            [
                (os("ZED"), os("1")),
                (os("ALPHA"), os("x=y")),
                (os("MID"), os("")),
            ],
        );
        assert_eq!(
            text,
            "hello from a wasm workload\n\
             args (3):\n  [0] hello.wasm\n  [1] b\n  [2] a\n\
             env (3):\n  ALPHA=x=y\n  MID=\n  ZED=1\n"
        );
    }

    #[test]
    fn empty_args_and_env() {
        let text = render(Vec::new(), Vec::new());
        assert_eq!(text, "hello from a wasm workload\nargs (0):\nenv (0):\n");
    }

    #[cfg(unix)]
    #[test]
    fn non_utf8_is_printed_lossily() {
        use std::os::unix::ffi::OsStringExt;
        let bad = OsString::from_vec(vec![b'a', 0xff]);
        let text = render([bad.clone()], [(os("K"), bad)]);
        assert!(text.contains("  [0] a\u{fffd}\n"), "{text}");
        assert!(text.contains("  K=a\u{fffd}\n"), "{text}");
    }
}
