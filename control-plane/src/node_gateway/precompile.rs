//! Ahead-of-time compilation for nodes built without the Wasm compiler (the board build).
//!
//! A board asks once per module: the control plane compiles it with Cranelift for the board's
//! target triple and engine settings, and keeps the artifact on disk under
//! `<data dir>/precompiled/<engine key>/<wasm sha256>.cwasm`, so the rest of the fleet gets
//! the same bytes without another compile. Compiles run one at a time on a blocking thread: a
//! control plane on a Pi must stay responsive while a fleet asks for a new module at once.

use std::path::{Path, PathBuf};

use bramble_api::node_protocol::{EngineSettings, PrecompileRequest};
use bramble_wasm_shim::digest::Digest;
use bramble_wasm_shim::engine::EngineConfig;
use bramble_wasm_shim::precompile::Precompiler;
use tonic::Status;

/// Largest Wasm binary a node may send for compiling (the gateway's message limit).
pub const MAX_WASM_BYTES: usize = 64 << 20;

/// The control plane's precompiled-artifact store.
pub struct Precompiles {
    dir: PathBuf,
    /// One compile at a time; also makes concurrent requests for one module compile it once.
    compiling: tokio::sync::Mutex<()>,
}

impl Precompiles {
    /// Artifacts live under `dir`.
    pub fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            compiling: tokio::sync::Mutex::new(()),
        }
    }

    /// The artifact of `request.wasm` for the requesting node's target and engine settings,
    /// from disk or freshly compiled.
    pub async fn artifact(&self, request: PrecompileRequest) -> Result<Vec<u8>, Status> {
        let settings = engine_config(request.engine.unwrap_or_default())?;
        if request.target.is_empty() {
            return Err(Status::invalid_argument(
                "the request names no target triple",
            ));
        }
        let digest = Digest::of(&request.wasm);
        let target = request.target;
        // Building a Precompiler is cheap (no code is generated); it gives the engine key.
        let precompiler = Precompiler::new(&settings, Some(&target))
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let path = self
            .dir
            .join(precompiler.compatibility_key())
            .join(format!("{digest}.cwasm"));
        if let Some(artifact) = read_if_present(&path).await? {
            return Ok(artifact);
        }
        let _one_at_a_time = self.compiling.lock().await;
        // Another request may have compiled it while this one waited.
        if let Some(artifact) = read_if_present(&path).await? {
            return Ok(artifact);
        }
        let wasm = request.wasm;
        let started = std::time::Instant::now();
        let compiled = tokio::task::spawn_blocking(move || precompiler.precompile(&wasm))
            .await
            .map_err(|e| Status::internal(format!("the compile task failed: {e}")))?
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        tracing::info!(%digest, %target, bytes = compiled.len(), elapsed_ms = started.elapsed().as_millis(), "precompiled a module for nodes");
        // The artifact is served even if keeping it fails; the next node compiles it again.
        if let Err(e) = write_atomically(&path, &compiled).await {
            tracing::warn!(path = %path.display(), error = %e, "cannot keep a precompiled module");
        }
        Ok(compiled)
    }
}

/// The node's settings as the engine configuration the precompiler builds (the settings that
/// do not shape code keep their defaults).
#[allow(clippy::result_large_err)] // tonic::Status is what the gRPC handler returns anyway
fn engine_config(settings: EngineSettings) -> Result<EngineConfig, Status> {
    let size = |value: u64, name: &str| {
        usize::try_from(value).map_err(|_| Status::invalid_argument(format!("{name} is too large")))
    };
    let config = EngineConfig {
        max_wasm_stack: size(settings.max_wasm_stack, "max_wasm_stack")?,
        memory_reservation: settings.memory_reservation,
        memory_guard_size: settings.memory_guard_size,
        memory_reservation_for_growth: settings.memory_reservation_for_growth,
        ..EngineConfig::default()
    };
    config
        .validate()
        .map_err(|e| Status::invalid_argument(e.to_string()))?;
    Ok(config)
}

async fn read_if_present(path: &Path) -> Result<Option<Vec<u8>>, Status> {
    match tokio::fs::read(path).await {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Status::internal(format!(
            "cannot read {}: {e}",
            path.display()
        ))),
    }
}

/// Writes through a temporary file and a rename, so a crash never leaves a torn artifact.
async fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    tokio::fs::create_dir_all(dir).await?;
    let temp = path.with_extension("cwasm.tmp");
    tokio::fs::write(&temp, bytes).await?;
    tokio::fs::rename(&temp, path).await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `(module (func (export "_start")))`
    const START_MODULE: &[u8] = &[
        0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, 0x01, 0x04, 0x01, 0x60, 0x00, 0x00, 0x03,
        0x02, 0x01, 0x00, 0x07, 0x0a, 0x01, 0x06, 0x5f, 0x73, 0x74, 0x61, 0x72, 0x74, 0x00, 0x00,
        0x0a, 0x04, 0x01, 0x02, 0x00, 0x0b,
    ];

    fn request(wasm: &[u8], target: &str) -> PrecompileRequest {
        let defaults = EngineConfig::default();
        PrecompileRequest {
            wasm: wasm.to_vec(),
            target: target.into(),
            engine: Some(EngineSettings {
                max_wasm_stack: defaults.max_wasm_stack as u64,
                memory_reservation: defaults.memory_reservation,
                memory_guard_size: defaults.memory_guard_size,
                memory_reservation_for_growth: defaults.memory_reservation_for_growth,
            }),
        }
    }

    #[tokio::test]
    async fn compiles_once_per_target_and_keeps_the_artifact() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Precompiles::new(dir.path().to_path_buf());
        // wasmtime artifacts are ELF files; e_machine (bytes 18..20) names the architecture.
        for (target, machine) in [
            ("aarch64-unknown-linux-gnu", 183u16),
            ("riscv64gc-unknown-linux-gnu", 243),
        ] {
            let first = store.artifact(request(START_MODULE, target)).await;
            let first = first.unwrap_or_else(|e| panic!("{target}: {e}"));
            assert!(
                first.starts_with(b"\x7fELF"),
                "{target}: not an ELF artifact"
            );
            let e_machine = first.get(18..20).map(|b| u16::from_le_bytes([b[0], b[1]]));
            assert_eq!(e_machine, Some(machine), "{target}");
            let again = store.artifact(request(START_MODULE, target)).await;
            assert_eq!(again.ok(), Some(first), "{target}: served from disk");
        }
        let kept = walk(dir.path());
        assert_eq!(kept.len(), 2, "one artifact per target: {kept:?}");
    }

    #[tokio::test]
    async fn bad_requests_are_refused_and_leave_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Precompiles::new(dir.path().to_path_buf());
        let refused =
            |r: Result<Vec<u8>, Status>| r.err().map(|s| (s.code(), s.message().to_string()));
        let (code, message) = refused(
            store
                .artifact(request(b"#!/bin/sh", "aarch64-unknown-linux-gnu"))
                .await,
        )
        .expect("refused");
        assert_eq!(code, tonic::Code::InvalidArgument);
        assert!(
            message.contains("neither a core module nor a component"),
            "{message}"
        );
        let (code, message) = refused(
            store
                .artifact(request(START_MODULE, "sparc-sun-solaris"))
                .await,
        )
        .expect("refused");
        assert_eq!(code, tonic::Code::InvalidArgument);
        assert!(message.contains("sparc"), "{message}");
        let mut zero_stack = request(START_MODULE, "aarch64-unknown-linux-gnu");
        zero_stack.engine = Some(EngineSettings::default());
        let (code, message) = refused(store.artifact(zero_stack).await).expect("refused");
        assert_eq!(code, tonic::Code::InvalidArgument);
        assert!(message.contains("max_wasm_stack"), "{message}");
        assert!(walk(dir.path()).is_empty());
    }

    fn walk(dir: &Path) -> Vec<PathBuf> {
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                files.extend(walk(&path));
            } else {
                files.push(path);
            }
        }
        files
    }
}
