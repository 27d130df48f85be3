#!/usr/bin/env bash
# Runs every test of Bramble on a fresh Debian machine with the Rust toolchain: installs what the
# tests need when it is missing, builds the workspace once, then runs unit, integration and
# end-to-end tests (the real kubectl against a real `bramble server`).
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v kubectl >/dev/null 2>&1 || need_apt+=(kubectl)
command -v gcc >/dev/null 2>&1 || need_apt+=(gcc)
command -v skopeo >/dev/null 2>&1 || need_apt+=(skopeo)
[ -x /usr/bin/docker-registry ] || need_apt+=(docker-registry)
# etcd for the etcd store and the tests of control planes sharing it; protoc for its client.
command -v etcd >/dev/null 2>&1 || need_apt+=(etcd-server)
command -v protoc >/dev/null 2>&1 || need_apt+=(protobuf-compiler)
# containerd, runc and the CNI plugins for container pods and Bramble's containerd shim.
command -v containerd >/dev/null 2>&1 || need_apt+=(containerd)
command -v runc >/dev/null 2>&1 || need_apt+=(runc)
[ -x /usr/lib/cni/bridge ] || need_apt+=(containernetworking-plugins)
command -v ip >/dev/null 2>&1 || need_apt+=(iproute2)
command -v iptables >/dev/null 2>&1 || need_apt+=(iptables)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing ${need_apt[*]} with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need_apt[@]}"
fi
# The dispatcher in /usr/bin/kubectl runs the kubectl matching the server's minor version; make
# sure 1.32 is there (the test of `kubectl version` checks that it is really used).
kubectl version --client -o json >/dev/null

export CARGO_TERM_COLOR=never
# The sample workloads (Wasm modules and the busybox OCI image) the tests run.
export BRAMBLE_IMAGES_DIR="$PWD/target/images"
images/build.sh "$BRAMBLE_IMAGES_DIR"

# Every cargo command builds the same feature set, so there is one build: the etcd store is on.
features=(--features bramble-control-plane/etcd)
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked "${features[@]}" -- -D warnings
# The board build of the agent (no Wasm compiler, no containerd) must keep compiling too.
cargo clippy -p bramble-node --no-default-features --all-targets --locked -- -D warnings
# One build for everything: the binaries the end-to-end tests start and all test targets.
cargo build --workspace --bins --tests --locked "${features[@]}"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# Every test binary runs even when an earlier one fails (--no-fail-fast), and any failure fails
# the whole command: the group returns non-zero if either suite failed.
run_suites() {
  local failed=0
  cargo test --workspace --locked --no-fail-fast "${features[@]}" -- --test-threads "${BRAMBLE_TEST_THREADS:-2}" || failed=1
  CARGO_TARGET_DIR="$BRAMBLE_IMAGES_DIR/.cargo-target" cargo test --manifest-path images/Cargo.toml --locked || failed=1
  return "$failed"
}
status=0
run_suites 2>&1 | tee "$log" || status=$?
# One closing line for the whole run (cargo prints one per test binary, the last being the
# doc-tests').
awk '/^test result:/ { p += $4; f += $6 } END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
