//! The sample workloads from `images/` run under the shim: ordinary programs behave, hostile
//! ones are contained and reported, and other instances keep running meanwhile.

mod common;

use std::time::{Duration, Instant};

use bramble_wasm_shim::engine::{EngineConfig, PoolingConfig};
use bramble_wasm_shim::exit::{ExitReason, KILLED_CODE, TRAP_CODE};
use bramble_wasm_shim::guest::KillHandle;
use bramble_wasm_shim::limits::Limits;
use bramble_wasm_shim::sandbox::{Preopen, SandboxSpec};
use common::{image, runner, temp_dir, test_runner, Captured};

fn spec(name: &str, out: &Captured) -> SandboxSpec {
    let mut spec = SandboxSpec::new(name);
    spec.stdout = Some(out.sink());
    spec.stderr = Some(out.sink());
    spec
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_prints_its_arguments_and_environment() {
    let runner = runner("hello");
    let program = runner.load(&image("hello.wasm")).expect("load hello");
    let out = Captured::default();
    let mut spec = spec("hello.wasm", &out);
    spec.argv = vec!["hello.wasm".into(), "b".into(), "a".into()];
    spec.env = vec![("ZED".into(), "1".into()), ("ALPHA".into(), "x=y".into())];
    let exit = runner
        .run(&program, spec, &KillHandle::new())
        .await
        .expect("run");
    assert_eq!((exit.code, &exit.reason), (0, &ExitReason::Completed));
    assert_eq!(
        out.text(),
        "hello from a wasm workload\nargs (3):\n  [0] hello.wasm\n  [1] b\n  [2] a\n\
         env (2):\n  ALPHA=x=y\n  ZED=1\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crasher_reports_its_exit_code() {
    let runner = runner("crasher");
    let program = runner.load(&image("crasher.wasm")).expect("load crasher");
    let out = Captured::default();
    let mut spec = spec("crasher", &out);
    spec.env = vec![
        ("CRASH_AFTER_SECS".into(), "0".into()),
        ("EXIT_CODE".into(), "42".into()),
    ];
    let exit = runner
        .run(&program, spec, &KillHandle::new())
        .await
        .expect("run");
    assert_eq!((exit.code, exit.reason), (42, ExitReason::Error(42)));
    assert!(
        out.text().contains("crasher: exiting with code 42"),
        "{}",
        out.text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escape_cannot_read_outside_its_preopened_directory() {
    let runner = runner("escape");
    let program = runner
        .load(&image("hostile-escape.wasm"))
        .expect("load escape");
    let data = temp_dir("escape-data");
    let out = Captured::default();
    let mut spec = spec("escape", &out);
    spec.env = vec![("ESCAPE_DIR".into(), "/data".into())];
    spec.preopens = vec![Preopen {
        host: data.path().to_path_buf(),
        guest: "/data".into(),
        read_only: false,
    }];
    let exit = runner
        .run(&program, spec, &KillHandle::new())
        .await
        .expect("run");
    let text = out.text();
    assert_eq!(exit.reason, ExitReason::Completed, "{text}");
    assert!(
        text.contains("sandbox held: every read was denied"),
        "{text}"
    );
    assert!(!text.contains("ESCAPED"), "{text}");
    // Nothing is mounted at the root, so there is nothing to list.
    assert!(text.contains("escape: listing /: denied"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_preopen_refuses_writes() {
    let runner = runner("read-only");
    let program = runner
        .load(&image("hostile-escape.wasm"))
        .expect("load escape");
    let data = temp_dir("read-only-data");
    let out = Captured::default();
    let mut spec = spec("escape", &out);
    spec.preopens = vec![Preopen {
        host: data.path().to_path_buf(),
        guest: "/data".into(),
        read_only: true,
    }];
    let exit = runner
        .run(&program, spec, &KillHandle::new())
        .await
        .expect("run");
    let text = out.text();
    assert_eq!(exit.reason, ExitReason::Completed, "{text}");
    assert!(
        text.contains("denied (creating link /data/escape-abs-link failed"),
        "{text}"
    );
    assert_eq!(
        std::fs::read_dir(data.path()).expect("data dir").count(),
        0,
        "guest wrote to it"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_recursion_traps_cleanly_and_the_runner_keeps_working() {
    let runner = runner("recursion");
    let program = runner
        .load(&image("hostile-deep-recursion.wasm"))
        .expect("load");
    let out = Captured::default();
    let exit = runner
        .run(&program, spec("deep-recursion", &out), &KillHandle::new())
        .await
        .expect("run");
    assert_eq!(exit.code, TRAP_CODE);
    assert_eq!(
        exit.reason,
        ExitReason::Trap("wasm trap: call stack exhausted".into()),
        "{}",
        out.text()
    );
    assert!(
        out.text().contains("deep-recursion: depth 1000"),
        "{}",
        out.text()
    );
    let hello = runner.load(&image("hello.wasm")).expect("load hello");
    let after = runner
        .run(&hello, SandboxSpec::new("hello"), &KillHandle::new())
        .await;
    assert!(after.expect("run").success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_bomb_is_stopped_at_its_cap_as_oom_killed() {
    let runner = runner("memory-bomb");
    let program = runner
        .load(&image("hostile-memory-bomb.wasm"))
        .expect("load");
    let out = Captured::default();
    let mut spec = spec("memory-bomb", &out);
    spec.limits = Limits {
        memory_bytes: Some(32 << 20),
        ..Limits::default()
    };
    let exit = runner
        .run(&program, spec, &KillHandle::new())
        .await
        .expect("run");
    assert_eq!(
        (exit.code, &exit.reason),
        (KILLED_CODE, &ExitReason::OOMKilled),
        "{}",
        out.text()
    );
    assert!(
        exit.memory_bytes <= 32 << 20,
        "held {} bytes",
        exit.memory_bytes
    );
    assert!(
        exit.memory_bytes > 16 << 20,
        "held only {} bytes",
        exit.memory_bytes
    );
    assert!(
        out.text().contains("memory-bomb: holding 16 MiB"),
        "{}",
        out.text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_loop_is_throttled_to_its_share_and_stopped_at_its_budget() {
    let runner = runner("busy-loop");
    let busy = runner
        .load(&image("hostile-busy-loop.wasm"))
        .expect("load busy loop");
    let ticker = runner.load(&image("ticker.wasm")).expect("load ticker");
    let mut busy_spec = SandboxSpec::new("busy-loop");
    busy_spec.limits = Limits {
        cpu_millicores: Some(100),
        cpu_budget: Some(Duration::from_millis(60)),
        ..Limits::default()
    };
    let ticks = Captured::default();
    let mut ticker_spec = spec("ticker", &ticks);
    ticker_spec.env = vec![
        ("TICKS".into(), "5".into()),
        ("TICK_INTERVAL_MS".into(), "20".into()),
    ];
    let started = Instant::now();
    let kill = KillHandle::new();
    let (busy_exit, ticker_exit) = tokio::join!(runner.run(&busy, busy_spec, &kill), async {
        let exit = runner.run(&ticker, ticker_spec, &KillHandle::new()).await;
        (exit, started.elapsed())
    });
    let busy_exit = busy_exit.expect("run busy loop");
    assert_eq!(
        (busy_exit.code, &busy_exit.reason),
        (KILLED_CODE, &ExitReason::CpuBudgetExceeded)
    );
    // 60 ms of CPU at 10 % of a core cannot be spent in less than ~600 ms of wall time; without
    // throttling it would take 60 ms.
    assert!(
        busy_exit.wall_time >= Duration::from_millis(400),
        "{:?}",
        busy_exit.wall_time
    );
    let (ticker_exit, ticker_done) = ticker_exit;
    assert!(
        ticker_exit.expect("run ticker").success(),
        "{}",
        ticks.text()
    );
    assert!(
        ticker_done < busy_exit.wall_time,
        "ticker finished only after the busy loop"
    );
    assert!(
        ticks.text().contains("ticker: tick 5 at"),
        "{}",
        ticks.text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_loop_is_killed_promptly() {
    let runner = runner("busy-kill");
    let program = runner.load(&image("hostile-busy-loop.wasm")).expect("load");
    let kill = KillHandle::new();
    let killer = kill.clone();
    let killed_at = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        killer.kill();
        Instant::now()
    });
    let exit = runner
        .run(&program, SandboxSpec::new("busy"), &kill)
        .await
        .expect("run");
    let latency = killed_at.await.expect("killer").elapsed();
    assert_eq!((exit.code, exit.reason), (KILLED_CODE, ExitReason::Killed));
    assert!(latency < Duration::from_secs(1), "took {latency:?} to stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_loop_is_stopped_at_its_wall_clock_deadline() {
    let runner = runner("busy-deadline");
    let program = runner.load(&image("hostile-busy-loop.wasm")).expect("load");
    let mut spec = SandboxSpec::new("busy");
    spec.limits.wall_timeout = Some(Duration::from_millis(300));
    let exit = runner
        .run(&program, spec, &KillHandle::new())
        .await
        .expect("run");
    assert_eq!(
        (exit.code, exit.reason),
        (KILLED_CODE, ExitReason::DeadlineExceeded)
    );
    assert!(
        exit.wall_time < Duration::from_secs(2),
        "{:?}",
        exit.wall_time
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sleeping_ticker_is_killed_without_waiting_for_its_next_tick() {
    let runner = runner("ticker-kill");
    let program = runner.load(&image("ticker.wasm")).expect("load");
    let out = Captured::default();
    let mut spec = spec("ticker", &out);
    spec.env = vec![("TICK_INTERVAL_MS".into(), "60000".into())];
    let kill = KillHandle::new();
    let killer = kill.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        killer.kill();
    });
    let exit = runner.run(&program, spec, &kill).await.expect("run");
    assert_eq!(exit.reason, ExitReason::Killed);
    assert!(
        exit.wall_time < Duration::from_secs(5),
        "{:?}",
        exit.wall_time
    );
    assert!(
        out.text().contains("ticker: starting: interval 60000 ms"),
        "{}",
        out.text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_preopen_fails_to_start_with_a_clear_error() {
    let runner = runner("missing-preopen");
    let program = runner.load(&image("hello.wasm")).expect("load");
    let mut spec = SandboxSpec::new("hello");
    spec.preopens = vec![Preopen {
        host: "/no/such/bramble/volume".into(),
        guest: "/data".into(),
        read_only: true,
    }];
    let err = runner.run(&program, spec, &KillHandle::new()).await.err();
    let message = err.map(|err| err.to_string()).unwrap_or_default();
    assert!(message.contains("/no/such/bramble/volume"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_component_is_not_run_as_a_command() {
    let runner = runner("proxy-as-command");
    let program = runner.load(&image("http-echo.wasm")).expect("load");
    assert!(program.is_http_proxy() && !program.is_command());
    let err = runner
        .run(&program, SandboxSpec::new("echo"), &KillHandle::new())
        .await;
    assert!(err.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn samples_run_under_the_pooling_allocator() {
    let config = EngineConfig {
        pooling: Some(PoolingConfig {
            max_instances: 4,
            max_memory_bytes: 64 << 20,
        }),
        ..EngineConfig::default()
    };
    let runner = test_runner("pooling", config);
    let hello = runner.load(&image("hello.wasm")).expect("load hello");
    let out = Captured::default();
    let exit = runner
        .run(&hello, spec("hello", &out), &KillHandle::new())
        .await;
    assert!(exit.expect("run hello").success(), "{}", out.text());
    assert!(out.text().starts_with("hello from a wasm workload"));
    let bomb = runner
        .load(&image("hostile-memory-bomb.wasm"))
        .expect("load bomb");
    let mut spec = SandboxSpec::new("memory-bomb");
    spec.limits.memory_bytes = Some(32 << 20);
    let exit = runner
        .run(&bomb, spec, &KillHandle::new())
        .await
        .expect("run bomb");
    assert_eq!(exit.reason, ExitReason::OOMKilled);
    // Without a spec limit, the pool's slot size is the cap.
    let exit = runner
        .run(&bomb, SandboxSpec::new("memory-bomb"), &KillHandle::new())
        .await
        .expect("run bomb");
    assert_eq!(exit.reason, ExitReason::OOMKilled);
    assert!(exit.memory_bytes <= 64 << 20, "{exit:?}");
}
