//! `containerd-shim-bramble-v1`: a containerd shim (runtime v2, task API over ttrpc) that runs
//! WebAssembly containers with Bramble's Wasm core instead of Linux processes. containerd
//! selects it as the runtime `io.containerd.bramble.v1`; see the crate README for what it
//! honours of the OCI spec.

mod container;
mod error;
mod events;
mod lifecycle;
mod oci;
mod process;
mod rootfs;
mod runtime;
mod service;
mod stdio;

/// The runtime name containerd knows this shim by.
const RUNTIME_ID: &str = "io.containerd.bramble.v1";

fn main() {
    let config = containerd_shim::Config {
        // Guests are not child processes. The reaper stays on all the same: the crate's
        // rootfs mount forks a helper and learns of its end only through the reaper.
        no_sub_reaper: true,
        ..Default::default()
    };
    containerd_shim::run::<lifecycle::BrambleShim>(RUNTIME_ID, Some(config));
}
