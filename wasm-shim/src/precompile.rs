//! Ahead-of-time compilation for another board: the control plane compiles a module once for
//! each target its nodes run on and ships the artifact, so a slow board never compiles.

use wasmtime::Engine;

use crate::cache::{CacheError, Kind};
use crate::digest::{compatibility_key, Digest};
use crate::engine::{build_config, EngineConfig, EngineError};

/// Compiles Wasm binaries for one target with the same code-affecting settings as the nodes'
/// engines, so nodes accept the artifacts through
/// [`ModuleCache::install_precompiled`](crate::cache::ModuleCache::install_precompiled).
pub struct Precompiler {
    engine: Engine,
}

impl Precompiler {
    /// A precompiler for `target` (a triple such as `aarch64-unknown-linux-gnu`, or `None` for
    /// the host) using the nodes' engine `settings`. Targets other than the host need the
    /// crate's `all-arch` feature.
    pub fn new(settings: &EngineConfig, target: Option<&str>) -> Result<Self, EngineError> {
        let config = build_config(settings, target)?;
        let engine = Engine::new(&config).map_err(|err| match target {
            Some(triple) => EngineError::UnsupportedTarget {
                target: triple.to_owned(),
                message: format!("{err:#}"),
            },
            None => EngineError::Create {
                message: format!("{err:#}"),
            },
        })?;
        Ok(Self { engine })
    }

    /// The key of this compiler's engine configuration. It equals a node's cache key only when
    /// both detect the same host; artifacts for a named triple use that architecture's
    /// baseline CPU features and load on any node of the architecture with the same settings.
    pub fn compatibility_key(&self) -> String {
        compatibility_key(&self.engine)
    }

    /// Compiles `wasm` (core module or component) to a wasmtime artifact for the target.
    pub fn precompile(&self, wasm: &[u8]) -> Result<Vec<u8>, CacheError> {
        let digest = Digest::of(wasm);
        let compiled = match Kind::of_wasm(wasm) {
            Some(Kind::Module) => self.engine.precompile_module(wasm),
            Some(Kind::Component) => self.engine.precompile_component(wasm),
            None => return Err(CacheError::NotWasm { digest }),
        };
        compiled.map_err(|err| CacheError::Compile {
            digest,
            message: format!("{err:#}"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::{Artifact, ModuleCache};
    use crate::engine::WasmEngine;

    /// `(module (func (export "_start")))`
    const START_MODULE: &[u8] = &[
        0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, 0x01, 0x04, 0x01, 0x60, 0x00, 0x00, 0x03,
        0x02, 0x01, 0x00, 0x07, 0x0a, 0x01, 0x06, 0x5f, 0x73, 0x74, 0x61, 0x72, 0x74, 0x00, 0x00,
        0x0a, 0x04, 0x01, 0x02, 0x00, 0x0b,
    ];

    #[test]
    fn host_artifacts_install_on_a_node_engine_with_the_same_settings() {
        let settings = EngineConfig::default();
        let host = std::env::consts::ARCH.to_owned() + "-unknown-linux-gnu";
        let precompiler = Precompiler::new(&settings, Some(&host)).expect("precompiler");
        let node = WasmEngine::new(settings).expect("engine");
        // A named triple compiles for the architecture's baseline CPU features, not the ones
        // detected on this host, so the key differs and yet the node can run the code.
        assert_ne!(
            precompiler.compatibility_key(),
            compatibility_key(node.engine())
        );
        let cwasm = precompiler.precompile(START_MODULE).expect("precompile");
        let dir = std::env::temp_dir().join(format!("bramble-precompile-{}", std::process::id()));
        let cache = ModuleCache::open(node.engine(), &dir).expect("cache");
        let installed = cache.install_precompiled(Digest::of(START_MODULE), &cwasm);
        assert!(matches!(installed, Ok(Artifact::Module(_))));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn other_settings_give_another_key() {
        let small = EngineConfig {
            memory_guard_size: 128 << 10,
            ..EngineConfig::default()
        };
        let a = Precompiler::new(&EngineConfig::default(), None).expect("precompiler");
        let b = Precompiler::new(&small, None).expect("precompiler");
        assert_ne!(a.compatibility_key(), b.compatibility_key());
    }

    #[test]
    fn garbage_is_refused() {
        let precompiler = Precompiler::new(&EngineConfig::default(), None).expect("precompiler");
        assert!(matches!(
            precompiler.precompile(b"not wasm"),
            Err(CacheError::NotWasm { .. })
        ));
        assert!(matches!(
            precompiler.precompile(&START_MODULE[..12]),
            Err(CacheError::Compile { .. })
        ));
    }

    #[cfg(feature = "all-arch")]
    #[test]
    fn artifacts_for_another_architecture_are_refused() {
        let foreign = if cfg!(target_arch = "aarch64") {
            "x86_64-unknown-linux-gnu"
        } else {
            "aarch64-unknown-linux-gnu"
        };
        let settings = EngineConfig::default();
        let precompiler = Precompiler::new(&settings, Some(foreign)).expect("precompiler");
        let cwasm = precompiler.precompile(START_MODULE).expect("precompile");
        let node = WasmEngine::new(settings).expect("engine");
        let dir = std::env::temp_dir().join(format!("bramble-cross-{}", std::process::id()));
        let cache = ModuleCache::open(node.engine(), &dir).expect("cache");
        let installed = cache.install_precompiled(Digest::of(START_MODULE), &cwasm);
        assert!(matches!(installed, Err(CacheError::Incompatible { .. })));
        let _ = std::fs::remove_dir_all(dir);
    }
}
