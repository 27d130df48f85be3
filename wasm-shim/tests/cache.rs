//! The on-disk cache with real samples: a second process-like runner loads instead of
//! compiling, and a damaged artifact is noticed and replaced.

mod common;

use bramble_wasm_shim::cache::CacheStats;
use bramble_wasm_shim::digest::Digest;
use bramble_wasm_shim::engine::EngineConfig;
use bramble_wasm_shim::guest::KillHandle;
use bramble_wasm_shim::precompile::Precompiler;
use bramble_wasm_shim::sandbox::SandboxSpec;
use common::{image, runner_with, temp_dir, Captured};

async fn run_hello(runner: &bramble_wasm_shim::instance::Runner, wasm: &[u8]) -> String {
    let program = runner.load(wasm).expect("load hello");
    let out = Captured::default();
    let mut spec = SandboxSpec::new("hello");
    spec.stdout = Some(out.sink());
    let exit = runner
        .run(&program, spec, &KillHandle::new())
        .await
        .expect("run");
    assert!(exit.success(), "{exit:?}");
    out.text()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_runner_loads_from_disk_without_compiling() {
    let dir = temp_dir("cache-reload");
    let hello = image("hello.wasm");
    let echo = image("http-echo.wasm");
    let first = runner_with(dir.path(), EngineConfig::default());
    let before = run_hello(&first, &hello).await;
    first.load(&echo).expect("compile component");
    assert_eq!(
        first.cache().stats(),
        CacheStats {
            compiled: 2,
            loaded: 0,
            recovered: 0
        }
    );
    // Loading again in the same runner is a memory hit: the disk is not touched either.
    first.load(&hello).expect("reload");
    assert_eq!(first.cache().stats().loaded, 0);

    let second = runner_with(dir.path(), EngineConfig::default());
    assert_eq!(run_hello(&second, &hello).await, before);
    let component = second.load(&echo).expect("load component");
    assert!(component.is_http_proxy());
    assert_eq!(
        second.cache().stats(),
        CacheStats {
            compiled: 0,
            loaded: 2,
            recovered: 0
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_artifact_is_recompiled_and_rewritten() {
    let dir = temp_dir("cache-corrupt");
    let hello = image("hello.wasm");
    let first = runner_with(dir.path(), EngineConfig::default());
    first.load(&hello).expect("compile");
    let artifact = first.cache().artifact_path(&Digest::of(&hello));
    let mut bytes = std::fs::read(&artifact).expect("artifact");
    // Flip bits in the middle of the code, where wasmtime's own header checks do not look.
    let middle = bytes.len() / 2;
    for byte in bytes.iter_mut().skip(middle).take(64) {
        *byte ^= 0x5a;
    }
    std::fs::write(&artifact, &bytes).expect("corrupt");

    let second = runner_with(dir.path(), EngineConfig::default());
    assert!(run_hello(&second, &hello)
        .await
        .starts_with("hello from a wasm workload"));
    assert_eq!(
        second.cache().stats(),
        CacheStats {
            compiled: 1,
            loaded: 0,
            recovered: 1
        }
    );

    let third = runner_with(dir.path(), EngineConfig::default());
    third.load(&hello).expect("load");
    assert_eq!(
        third.cache().stats(),
        CacheStats {
            compiled: 0,
            loaded: 1,
            recovered: 0
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_control_plane_precompiled_sample_runs_on_a_node() {
    let dir = temp_dir("cache-precompiled");
    let hello = image("hello.wasm");
    let triple = format!("{}-unknown-linux-gnu", std::env::consts::ARCH);
    let precompiler =
        Precompiler::new(&EngineConfig::default(), Some(&triple)).expect("precompiler");
    let cwasm = precompiler.precompile(&hello).expect("precompile");
    let node = runner_with(dir.path(), EngineConfig::default());
    let program = node
        .install_precompiled(Digest::of(&hello), &cwasm)
        .expect("install");
    assert_eq!(
        node.program(&Digest::of(&hello)).map(|p| *p.digest()),
        Some(*program.digest())
    );
    assert!(run_hello(&node, &hello).await.contains("args (1):"));
    assert_eq!(node.cache().stats().compiled, 0);
}
