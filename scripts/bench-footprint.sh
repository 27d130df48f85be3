#!/usr/bin/env bash
# The footprint suite, one command: builds the release binaries and the board build of the node
# agent (aarch64, no Wasm compiler, no containerd), then measures memory, idle CPU, idle disk
# writes, Wasm pod start and binary sizes on this machine (tests/src/bin/footprint-bench.rs).
# Writes target/footprint/footprint.md and footprint.json; about 12 minutes after the builds.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v kubectl >/dev/null 2>&1 || need_apt+=(kubectl)
command -v gcc >/dev/null 2>&1 || need_apt+=(gcc)
command -v strip >/dev/null 2>&1 || need_apt+=(binutils)
command -v aarch64-linux-gnu-gcc >/dev/null 2>&1 || need_apt+=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross)
command -v skopeo >/dev/null 2>&1 || need_apt+=(skopeo)
command -v protoc >/dev/null 2>&1 || need_apt+=(protobuf-compiler)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing ${need_apt[*]} with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need_apt[@]}"
fi
rustup target add aarch64-unknown-linux-gnu >/dev/null

export CARGO_TERM_COLOR=never
export BRAMBLE_IMAGES_DIR="$PWD/target/images"
images/build.sh "$BRAMBLE_IMAGES_DIR"
# Only the binaries measured, with the workspace's features (so nothing is built twice).
cargo build --release --workspace --locked --bin bramble --bin bramble-node \
  --bin containerd-shim-bramble-v1 --bin footprint-bench
# The board build: for aarch64 (its size), and for this machine (its memory and idle CPU).
cargo build --profile board --target aarch64-unknown-linux-gnu --locked \
  -p bramble-node --no-default-features --bin bramble-node
cargo build --profile board --locked -p bramble-node --no-default-features --bin bramble-node
BRAMBLE_BOARD_AGENT="$PWD/target/aarch64-unknown-linux-gnu/board/bramble-node" \
  BRAMBLE_BOARD_AGENT_HOST="$PWD/target/board/bramble-node" \
  target/release/footprint-bench
