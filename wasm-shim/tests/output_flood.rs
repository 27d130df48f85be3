//! An output flood is bounded twice: in memory by the pipe, on disk by log rotation.
//! Alone in its test binary, so the resident-memory check sees only this test.

mod common;

use std::time::Duration;

use bramble_wasm_shim::exit::ExitReason;
use bramble_wasm_shim::guest::KillHandle;
use bramble_wasm_shim::log::{LogConfig, LogStream, RotatingLog, MAX_LINE};
use bramble_wasm_shim::sandbox::SandboxSpec;
use common::{image, rss_kib, runner, temp_dir};

const MAX_BYTES: u64 = 256 << 10;
const MAX_FILES: u32 = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_output_flood_is_bounded_by_rotation_and_does_not_grow_memory() {
    let runner = runner("flood");
    let program = runner
        .load(&image("hostile-output-flood.wasm"))
        .expect("load");
    let logs = temp_dir("flood-logs");
    let log = RotatingLog::open(LogConfig {
        path: logs.path().join("0.log"),
        max_bytes: MAX_BYTES,
        max_files: MAX_FILES,
    })
    .expect("open log");
    let mut spec = SandboxSpec::new("output-flood");
    spec.stdout = Some(Box::new(log.writer(LogStream::Stdout)));
    spec.stderr = Some(Box::new(log.writer(LogStream::Stderr)));
    spec.limits.wall_timeout = Some(Duration::from_secs(3));
    let rss_before = rss_kib();
    let exit = runner
        .run(&program, spec, &KillHandle::new())
        .await
        .expect("run");
    let rss_after = rss_kib();
    assert_eq!(exit.reason, ExitReason::DeadlineExceeded);

    let mut kept = 0;
    for n in 0..MAX_FILES {
        let path = log.rotated_path(n);
        let size = std::fs::metadata(&path).expect("rotated log file").len();
        assert!(size <= MAX_BYTES, "{} is {size} bytes", path.display());
        kept += size;
    }
    assert!(
        !log.rotated_path(MAX_FILES).exists(),
        "more than {MAX_FILES} files kept"
    );
    assert!(
        kept > u64::from(MAX_FILES - 1) * MAX_BYTES,
        "only {kept} bytes kept"
    );

    // Every kept file holds well-formed records, and they come from far into the flood: each
    // block is 64 KiB, so more than 12 blocks were written if three 256 KiB files rotated.
    let mut last_block = 0_u64;
    for n in 0..MAX_FILES {
        let text = std::fs::read_to_string(log.rotated_path(n)).expect("read log");
        for line in text.lines() {
            let mut fields = line.splitn(4, ' ');
            let (time, stream, tag, content) =
                (fields.next(), fields.next(), fields.next(), fields.next());
            assert!(
                time.is_some_and(|t| t.len() == 30 && t.ends_with('Z')),
                "{line:.80}"
            );
            assert_eq!(stream, Some("stdout"), "{line:.80}");
            assert!(matches!(tag, Some("F" | "P")), "{line:.80}");
            let content = content.unwrap_or_default();
            assert!(content.len() <= MAX_LINE);
            if let Some(number) = content.strip_prefix("output-flood: block ") {
                last_block = last_block.max(number.parse().expect("block number"));
            }
        }
    }
    assert!(last_block > 12, "flood reached only block {last_block}");
    // About 100 MB go through the pipe in those seconds; memory grows by the instance itself
    // (~2 MB measured) and the pipe's 32 KiB, not by the flood.
    assert!(
        rss_after < rss_before + 8 * 1024,
        "RSS grew from {rss_before} KiB to {rss_after} KiB"
    );
}
