//! Compile once, keep the native code on disk.
//!
//! Artifacts live in `<dir>/<engine compatibility key>/<wasm sha256>.cwasm`, each with a
//! `<wasm sha256>.sum` beside it naming the artifact kind and the SHA-256 of the `.cwasm` file.
//! A file whose sum does not match (torn write, bit rot on an SD card, tampering) or that the
//! engine refuses (stale wasmtime) is deleted and compiled again. A new engine configuration
//! gets a new directory; [`ModuleCache::prune_stale`] removes the old ones.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use wasmtime::component::Component;
use wasmtime::{Engine, Module};

use crate::digest::{compatibility_key, Digest};

/// Why a module could not be compiled, stored or loaded.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// The bytes are neither a core module nor a component.
    #[error(
        "wasm binary {digest:?} is neither a core module nor a component (bad magic or version)"
    )]
    NotWasm {
        /// Digest of the refused bytes.
        digest: Digest,
    },
    /// Validation or compilation failed.
    #[error("compiling wasm binary {digest:?} failed: {message}")]
    Compile {
        /// Digest of the binary.
        digest: Digest,
        /// wasmtime's explanation.
        message: String,
    },
    /// A file of the cache could not be written or its directory created.
    #[error("writing {path} in the module cache failed: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The binary has no artifact here, and this cache does not compile (a build without the
    /// compiler, or [`ModuleCache::never_compile`]): the artifact must come precompiled.
    #[error("wasm binary {digest:?} has no precompiled artifact here, and this node does not compile Wasm itself")]
    NoCompiler {
        /// Digest of the binary.
        digest: Digest,
    },
    /// A precompiled artifact cannot run on this engine.
    #[error("precompiled artifact for {digest:?} is not usable by this engine: {message}")]
    Incompatible {
        /// Digest of the source binary it claims to be compiled from.
        digest: Digest,
        /// Why it was refused.
        message: String,
    },
}

/// Compiled code, ready to instantiate.
#[derive(Clone)]
pub enum Artifact {
    /// A core module (WASI preview 1).
    Module(Module),
    /// A component (WASI preview 2).
    Component(Component),
}

/// Counters describing what the cache did; cumulative since it was opened.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CacheStats {
    /// Binaries compiled (cache misses).
    pub compiled: u64,
    /// Artifacts loaded from disk without compiling.
    pub loaded: u64,
    /// Cached files found corrupt or stale and replaced.
    pub recovered: u64,
}

/// The on-disk cache of compiled artifacts for one engine.
pub struct ModuleCache {
    engine: Engine,
    dir: PathBuf,
    /// Compile binaries without an artifact; otherwise they need one precompiled.
    compiles: bool,
    compiled: AtomicU64,
    loaded: AtomicU64,
    recovered: AtomicU64,
}

impl ModuleCache {
    /// Opens the cache under `root` for `engine`, creating its directory (mode 0700: nothing
    /// but the agent may write code that it will later map as executable).
    pub fn open(engine: &Engine, root: &Path) -> Result<Self, CacheError> {
        let dir = root.join(compatibility_key(engine));
        create_private_dir(&dir).map_err(|source| CacheError::Io {
            path: dir.clone(),
            source,
        })?;
        Ok(Self {
            engine: engine.clone(),
            dir,
            compiles: Self::can_compile(),
            compiled: AtomicU64::new(0),
            loaded: AtomicU64::new(0),
            recovered: AtomicU64::new(0),
        })
    }

    /// The directory holding this engine's artifacts.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// What the cache has done so far.
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            compiled: self.compiled.load(Ordering::Relaxed),
            loaded: self.loaded.load(Ordering::Relaxed),
            recovered: self.recovered.load(Ordering::Relaxed),
        }
    }

    /// Path of the artifact for `digest`.
    pub fn artifact_path(&self, digest: &Digest) -> PathBuf {
        self.dir.join(format!("{digest}.cwasm"))
    }

    fn sum_path(&self, digest: &Digest) -> PathBuf {
        self.dir.join(format!("{digest}.sum"))
    }

    /// Returns the compiled form of `wasm`, from disk when a valid artifact is there, else by
    /// compiling it (which blocks for milliseconds to seconds: call from a blocking thread).
    pub fn get_or_compile(&self, wasm: &[u8]) -> Result<(Digest, Artifact), CacheError> {
        let digest = Digest::of(wasm);
        Ok((digest, self.get_or_compile_digest(digest, wasm)?))
    }

    /// [`ModuleCache::get_or_compile`] for a caller that already computed `digest` of `wasm`.
    pub(crate) fn get_or_compile_digest(
        &self,
        digest: Digest,
        wasm: &[u8],
    ) -> Result<Artifact, CacheError> {
        if let Some(artifact) = self.load(&digest) {
            return Ok(artifact);
        }
        let kind = Kind::of_wasm(wasm).ok_or(CacheError::NotWasm { digest })?;
        if !self.compiles {
            return Err(CacheError::NoCompiler { digest });
        }
        let (artifact, bytes) = self.compile(digest, kind, wasm)?;
        self.compiled.fetch_add(1, Ordering::Relaxed);
        // The compiled code is usable even if the disk is full; the next start compiles again.
        if let Err(err) = self.store(&digest, kind, &bytes) {
            tracing::warn!(%digest, error = %err, "caching compiled wasm failed");
        }
        Ok(artifact)
    }

    /// Whether this build can compile Wasm itself (the `compiler` feature); without it only
    /// artifacts installed with [`ModuleCache::install_precompiled`] run.
    pub const fn can_compile() -> bool {
        cfg!(feature = "compiler")
    }

    /// Stops compiling: binaries without an artifact fail with [`CacheError::NoCompiler`], for
    /// boards that leave compiling to the control plane even though they could.
    pub fn never_compile(mut self) -> Self {
        self.compiles = false;
        self
    }

    #[cfg(feature = "compiler")]
    fn compile(
        &self,
        digest: Digest,
        kind: Kind,
        wasm: &[u8],
    ) -> Result<(Artifact, Vec<u8>), CacheError> {
        let compile_err = |err: wasmtime::Error| CacheError::Compile {
            digest,
            message: format!("{err:#}"),
        };
        Ok(match kind {
            Kind::Module => {
                let module = Module::from_binary(&self.engine, wasm).map_err(compile_err)?;
                let bytes = module.serialize().map_err(compile_err)?;
                (Artifact::Module(module), bytes)
            }
            Kind::Component => {
                let component = Component::from_binary(&self.engine, wasm).map_err(compile_err)?;
                let bytes = component.serialize().map_err(compile_err)?;
                (Artifact::Component(component), bytes)
            }
        })
    }

    #[cfg(not(feature = "compiler"))]
    fn compile(
        &self,
        digest: Digest,
        _kind: Kind,
        _wasm: &[u8],
    ) -> Result<(Artifact, Vec<u8>), CacheError> {
        Err(CacheError::NoCompiler { digest })
    }

    /// Stores an artifact the control plane precompiled for this board's engine, for the
    /// binary with digest `source`, and loads it. The caller must have verified the artifact's
    /// digest and signature first: it is native code this process will execute.
    pub fn install_precompiled(
        &self,
        source: Digest,
        cwasm: &[u8],
    ) -> Result<Artifact, CacheError> {
        let incompatible = |message: String| CacheError::Incompatible {
            digest: source,
            message,
        };
        let kind = match Engine::detect_precompiled(cwasm) {
            Some(wasmtime::Precompiled::Module) => Kind::Module,
            Some(wasmtime::Precompiled::Component) => Kind::Component,
            None => {
                return Err(incompatible(
                    "not a wasmtime precompiled artifact".to_owned(),
                ))
            }
        };
        self.store(&source, kind, cwasm)?;
        match trusted::load(&self.engine, &self.artifact_path(&source), kind) {
            Ok(artifact) => Ok(artifact),
            Err(err) => {
                self.remove(&source);
                Err(incompatible(format!("{err:#}")))
            }
        }
    }

    /// Removes artifact directories of other engine configurations; returns how many.
    pub fn prune_stale(&self) -> Result<usize, CacheError> {
        let Some(root) = self.dir.parent() else {
            return Ok(0);
        };
        let io_err = |source| CacheError::Io {
            path: root.to_path_buf(),
            source,
        };
        let mut removed = 0;
        for entry in fs::read_dir(root).map_err(io_err)? {
            let path = entry.map_err(io_err)?.path();
            if path != self.dir && path.is_dir() && is_key_dir(&path) {
                fs::remove_dir_all(&path).map_err(io_err)?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Loads a verified artifact for `digest` from disk, or `None` (deleting a bad one).
    fn load(&self, digest: &Digest) -> Option<Artifact> {
        let sum = match fs::read_to_string(self.sum_path(digest)) {
            Ok(sum) => sum,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return None,
            Err(err) => return self.discard(digest, &format!("reading its sum failed: {err}")),
        };
        let Some((kind, expected)) = parse_sum(&sum) else {
            return self.discard(digest, "its sum file is malformed");
        };
        let path = self.artifact_path(digest);
        let actual = match fs::read(&path) {
            Ok(bytes) => Digest::of(&bytes),
            Err(err) => return self.discard(digest, &format!("reading it failed: {err}")),
        };
        if actual != expected {
            return self.discard(digest, "its content does not match its sum");
        }
        match trusted::load(&self.engine, &path, kind) {
            Ok(artifact) => {
                self.loaded.fetch_add(1, Ordering::Relaxed);
                Some(artifact)
            }
            Err(err) => self.discard(digest, &format!("the engine refused it: {err:#}")),
        }
    }

    fn discard(&self, digest: &Digest, why: &str) -> Option<Artifact> {
        tracing::warn!(%digest, reason = why, "discarding cached wasm artifact");
        self.recovered.fetch_add(1, Ordering::Relaxed);
        self.remove(digest);
        None
    }

    fn remove(&self, digest: &Digest) {
        let _ = fs::remove_file(self.sum_path(digest));
        let _ = fs::remove_file(self.artifact_path(digest));
    }

    /// Writes the artifact, then its sum, each through a temporary file and a rename, so a
    /// crash leaves either no sum (a miss) or a complete pair.
    fn store(&self, digest: &Digest, kind: Kind, bytes: &[u8]) -> Result<(), CacheError> {
        let sum = format!("{} {}\n", kind.name(), Digest::of(bytes));
        write_atomically(&self.artifact_path(digest), bytes)?;
        write_atomically(&self.sum_path(digest), sum.as_bytes())
    }
}

/// What a binary or artifact contains.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Module,
    Component,
}

impl Kind {
    /// Tells a core module from a component by the binary's preamble: the magic, then a
    /// 16-bit version and a 16-bit layer (0 for core modules, 1 for components).
    pub(crate) fn of_wasm(bytes: &[u8]) -> Option<Self> {
        match bytes.get(..8)? {
            [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00] => Some(Self::Module),
            [0x00, 0x61, 0x73, 0x6d, _, _, 0x01, 0x00] => Some(Self::Component),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Module => "module",
            Self::Component => "component",
        }
    }
}

fn parse_sum(text: &str) -> Option<(Kind, Digest)> {
    let (kind, digest) = text.trim_end().split_once(' ')?;
    let kind = match kind {
        "module" => Kind::Module,
        "component" => Kind::Component,
        _ => return None,
    };
    Some((kind, digest.parse().ok()?))
}

fn is_key_dir(path: &Path) -> bool {
    path.file_name()
        .and_then(|name| name.to_str())
        .is_some_and(|name| name.len() == 32 && name.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), CacheError> {
    static UNIQUE: AtomicU64 = AtomicU64::new(0);
    let io_err = |source| CacheError::Io {
        path: path.to_path_buf(),
        source,
    };
    let nonce = UNIQUE.fetch_add(1, Ordering::Relaxed);
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{}.{nonce}.tmp", std::process::id()));
    let temp = PathBuf::from(name);
    let written = fs::File::create(&temp).and_then(|mut file| {
        file.write_all(bytes)?;
        file.sync_all()
    });
    if let Err(err) = written.and_then(|()| fs::rename(&temp, path)) {
        let _ = fs::remove_file(&temp);
        return Err(io_err(err));
    }
    Ok(())
}

fn create_private_dir(dir: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Loading native code compiled earlier: the only `unsafe` in this crate.
#[allow(unsafe_code)]
mod trusted {
    use super::{Artifact, Kind};
    use std::path::Path;
    use wasmtime::component::Component;
    use wasmtime::{Engine, Module};

    /// Maps the artifact at `path` as executable code.
    pub(super) fn load(engine: &Engine, path: &Path, kind: Kind) -> wasmtime::Result<Artifact> {
        match kind {
            // SAFETY: wasmtime requires that the file is an artifact produced by wasmtime's own
            // serializer and not modified since. Files here are written only by `ModuleCache`
            // (from `Module::serialize` or an artifact the caller verified by digest and
            // signature) into a 0700 directory the agent owns, named by the source digest;
            // before this call the file's SHA-256 was checked against the sum recorded when it
            // was written, and wasmtime itself checks the header, version and engine settings.
            Kind::Module => unsafe { Module::deserialize_file(engine, path) }.map(Artifact::Module),
            // SAFETY: as for modules above; the same cache wrote and verified this file.
            Kind::Component => {
                unsafe { Component::deserialize_file(engine, path) }.map(Artifact::Component)
            }
        }
    }
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

    fn temp_dir(test: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("bramble-cache-{}-{test}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn second_cache_loads_from_disk_without_compiling() {
        let dir = temp_dir("reload");
        let engine = Engine::default();
        let first = ModuleCache::open(&engine, &dir).expect("open");
        let (digest, _) = first.get_or_compile(START_MODULE).expect("compile");
        assert_eq!(first.stats().compiled, 1);
        let second = ModuleCache::open(&engine, &dir).expect("open");
        let (again, artifact) = second.get_or_compile(START_MODULE).expect("load");
        assert_eq!(again, digest);
        assert!(matches!(artifact, Artifact::Module(_)));
        assert_eq!(
            second.stats(),
            CacheStats {
                compiled: 0,
                loaded: 1,
                recovered: 0
            }
        );
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn corrupt_or_truncated_artifacts_are_replaced() {
        let dir = temp_dir("corrupt");
        let engine = Engine::default();
        let cache = ModuleCache::open(&engine, &dir).expect("open");
        let (digest, _) = cache.get_or_compile(START_MODULE).expect("compile");
        let path = cache.artifact_path(&digest);
        let mut bytes = fs::read(&path).expect("artifact");
        let middle = bytes.len() / 2;
        if let Some(byte) = bytes.get_mut(middle) {
            *byte ^= 0xff;
        }
        fs::write(&path, &bytes).expect("corrupt");
        cache.get_or_compile(START_MODULE).expect("recompile");
        fs::write(&path, b"").expect("truncate");
        cache.get_or_compile(START_MODULE).expect("recompile");
        fs::write(cache.sum_path(&digest), b"garbage").expect("bad sum");
        cache.get_or_compile(START_MODULE).expect("recompile");
        assert_eq!(
            cache.stats(),
            CacheStats {
                compiled: 4,
                loaded: 0,
                recovered: 3
            }
        );
        // The rewritten artifact is good again.
        let fresh = ModuleCache::open(&engine, &dir).expect("open");
        fresh.get_or_compile(START_MODULE).expect("load");
        assert_eq!(fresh.stats().loaded, 1);
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn an_artifact_of_another_engine_configuration_is_recompiled() {
        let dir = temp_dir("stale");
        let engine = Engine::default();
        let cache = ModuleCache::open(&engine, &dir).expect("open");
        let (digest, _) = cache.get_or_compile(START_MODULE).expect("compile");
        // An artifact from an engine with other settings, planted under this engine's key.
        let mut config = wasmtime::Config::new();
        config.epoch_interruption(true);
        let other = Engine::new(&config).expect("engine");
        let foreign = other.precompile_module(START_MODULE).expect("precompile");
        cache.store(&digest, Kind::Module, &foreign).expect("plant");
        cache.get_or_compile(START_MODULE).expect("recompile");
        assert_eq!(cache.stats().recovered, 1);
        assert_eq!(cache.stats().compiled, 2);
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn not_wasm_and_invalid_wasm_are_errors() {
        let dir = temp_dir("invalid");
        let cache = ModuleCache::open(&Engine::default(), &dir).expect("open");
        assert!(matches!(
            cache.get_or_compile(b"#!/bin/sh"),
            Err(CacheError::NotWasm { .. })
        ));
        let truncated = START_MODULE.get(..20).unwrap_or_default();
        assert!(matches!(
            cache.get_or_compile(truncated),
            Err(CacheError::Compile { .. })
        ));
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn precompiled_artifacts_are_checked_before_use() {
        let dir = temp_dir("install");
        let engine = Engine::default();
        let cache = ModuleCache::open(&engine, &dir).expect("open");
        let digest = Digest::of(START_MODULE);
        let good = engine.precompile_module(START_MODULE).expect("precompile");
        assert!(matches!(
            cache.install_precompiled(digest, &good),
            Ok(Artifact::Module(_))
        ));
        assert!(matches!(
            cache.install_precompiled(digest, START_MODULE),
            Err(CacheError::Incompatible { .. })
        ));
        let mut config = wasmtime::Config::new();
        config.epoch_interruption(true);
        let foreign = Engine::new(&config)
            .expect("engine")
            .precompile_module(START_MODULE)
            .expect("precompile");
        assert!(matches!(
            cache.install_precompiled(digest, &foreign),
            Err(CacheError::Incompatible { .. })
        ));
        assert!(
            !cache.artifact_path(&digest).exists(),
            "refused artifact left behind"
        );
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn prune_removes_only_other_engine_directories() {
        let dir = temp_dir("prune");
        let cache = ModuleCache::open(&Engine::default(), &dir).expect("open");
        let stale = dir.join("0123456789abcdef0123456789abcdef");
        fs::create_dir_all(&stale).expect("stale dir");
        let unrelated = dir.join("keep-me");
        fs::create_dir_all(&unrelated).expect("other dir");
        assert_eq!(cache.prune_stale().expect("prune"), 1);
        assert!(!stale.exists() && unrelated.exists() && cache.dir().exists());
        let _ = fs::remove_dir_all(dir);
    }
}
