#!/usr/bin/env bash
# Builds Bramble's sample workloads into OUT_DIR:
#   OUT_DIR/{hello,ticker,sensor,crasher}.wasm       wasm32-wasip1 modules
#   OUT_DIR/hostile-{busy-loop,memory-bomb,deep-recursion,escape,output-flood}.wasm
#   OUT_DIR/http-echo.wasm                           wasm32-wasip2 component (wasi:http proxy)
#   OUT_DIR/busybox/  OUT_DIR/busybox.tar             OCI image layout (tag v1) and a tar of it
#   OUT_DIR/{hello,ticker,garbage}-oci/ and .tar     Wasm modules as OCI images for
#                                                    containerd-shim-bramble-v1 (tag v1)
#
# Usage: images/build.sh OUT_DIR
#
# Quiet on success; on failure prints the failing step's output and exits non-zero. Safe to run
# again: every output is rebuilt or replaced. Installs what it needs only when missing: the
# rustup targets, and Debian's umoci and busybox-static (apt-get, as root). Cargo's build output
# goes to $CARGO_TARGET_DIR if set, else OUT_DIR/.cargo-target; nothing is written next to
# this script.
set -euo pipefail

usage() {
    echo "usage: $0 OUT_DIR" >&2
    exit 2
}
[[ $# -eq 1 && -n $1 ]] || usage

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
mkdir -p "$1"
out=$(cd "$1" && pwd)
target_dir=${CARGO_TARGET_DIR:-$out/.cargo-target}
log=$(mktemp)
scratch=""
cleanup() {
    rm -f "$log"
    if [[ -n $scratch ]]; then rm -rf "$scratch"; fi
}
trap cleanup EXIT

# Runs a command with its output captured; shows the output only if it fails.
quiet() {
    if ! "$@" >"$log" 2>&1; then
        echo "build.sh: failed: $*" >&2
        cat "$log" >&2
        exit 1
    fi
}

ensure_rust_target() {
    if ! command -v rustup >/dev/null; then
        if ! rustc --print target-list >/dev/null 2>&1; then
            echo "build.sh: neither rustup nor rustc found; install Rust first" >&2
            exit 1
        fi
        return # a toolchain without rustup: cargo will say if the target is missing
    fi
    # Captured first: with pipefail, `cmd | grep -q` can fail on SIGPIPE when grep exits early.
    local installed
    installed=$(rustup target list --installed)
    if ! grep -qx "$1" <<<"$installed"; then
        quiet rustup target add "$1"
    fi
}

rootless=()
if [[ $(id -u) -ne 0 ]]; then rootless=(--rootless); fi

apt_updated=0
ensure_deb() {
    local package=$1
    local status
    status=$(dpkg-query -W -f='${Status}' "$package" 2>/dev/null || true)
    if [[ $status == *"ok installed"* ]]; then
        return
    fi
    if [[ $(id -u) -ne 0 ]]; then
        echo "build.sh: Debian package $package is missing; install it as root: apt-get install $package" >&2
        exit 1
    fi
    if [[ $apt_updated -eq 0 ]]; then
        quiet apt-get -qq update
        apt_updated=1
    fi
    quiet env DEBIAN_FRONTEND=noninteractive apt-get -qq install -y --no-install-recommends "$package"
}

build_wasm() {
    ensure_rust_target wasm32-wasip1
    ensure_rust_target wasm32-wasip2
    local manifest=$here/Cargo.toml
    quiet env CARGO_TARGET_DIR="$target_dir" cargo build --quiet --locked --release \
        --manifest-path "$manifest" --target wasm32-wasip1 \
        -p hello -p ticker -p sensor -p crasher -p hostile
    quiet env CARGO_TARGET_DIR="$target_dir" cargo build --quiet --locked --release \
        --manifest-path "$manifest" --target wasm32-wasip2 -p http-echo

    local p1=$target_dir/wasm32-wasip1/release p2=$target_dir/wasm32-wasip2/release name
    for name in hello ticker sensor crasher; do
        install -m 0644 "$p1/$name.wasm" "$out/$name.wasm"
    done
    for name in busy-loop memory-bomb deep-recursion escape output-flood; do
        install -m 0644 "$p1/$name.wasm" "$out/hostile-$name.wasm"
    done
    # Cargo names a cdylib after the crate with '_'; the sample is called http-echo.
    install -m 0644 "$p2/http_echo.wasm" "$out/http-echo.wasm"
}

build_busybox() {
    ensure_deb umoci
    ensure_deb busybox-static
    local busybox=/bin/busybox
    if [[ ! -x $busybox ]]; then
        echo "build.sh: $busybox missing although busybox-static is installed" >&2
        exit 1
    fi
    # Built beside the result and swapped in at the end, so an interrupted run never leaves
    # a half-written layout at OUT_DIR/busybox.
    scratch=$(mktemp -d "$out/.busybox-build.XXXXXX")
    local layout=$scratch/layout bundle=$scratch/bundle tool
    quiet umoci init --layout "$layout"
    quiet umoci new --image "$layout:v1"
    quiet umoci unpack "${rootless[@]}" --image "$layout:v1" "$bundle"
    install -D -m 0755 "$busybox" "$bundle/rootfs/bin/busybox"
    for tool in sh echo sleep cat ls; do
        ln -s busybox "$bundle/rootfs/bin/$tool"
    done
    quiet umoci repack --image "$layout:v1" "$bundle"
    quiet umoci config --image "$layout:v1" --config.entrypoint /bin/sh --config.env PATH=/bin
    quiet umoci gc --layout "$layout"

    rm -rf "$out/busybox"
    mv "$layout" "$out/busybox"
    quiet tar -C "$out/busybox" --sort=name --owner=0 --group=0 --numeric-owner \
        -cf "$scratch/busybox.tar" .
    mv "$scratch/busybox.tar" "$out/busybox.tar"
    rm -rf "$scratch"
    scratch=""
}

# Packs files into a one-layer OCI image with an entrypoint, as OUT_DIR/NAME (a layout, tag
# v1) and OUT_DIR/NAME.tar (an archive of it that `ctr images import` reads).
# Usage: build_wasm_image NAME ENTRYPOINT HOST_FILE:IMAGE_PATH...
build_wasm_image() {
    local name=$1 entrypoint=$2
    shift 2
    scratch=$(mktemp -d "$out/.$name-build.XXXXXX")
    local layout=$scratch/layout bundle=$scratch/bundle pair
    quiet umoci init --layout "$layout"
    quiet umoci new --image "$layout:v1"
    quiet umoci unpack "${rootless[@]}" --image "$layout:v1" "$bundle"
    for pair in "$@"; do
        install -D -m 0644 "${pair%%:*}" "$bundle/rootfs/${pair#*:}"
    done
    quiet umoci repack --image "$layout:v1" "$bundle"
    quiet umoci config --image "$layout:v1" --config.entrypoint "$entrypoint"
    quiet umoci gc --layout "$layout"

    rm -rf "${out:?}/$name"
    mv "$layout" "$out/$name"
    quiet tar -C "$out/$name" --sort=name --owner=0 --group=0 --numeric-owner \
        -cf "$scratch/$name.tar" .
    mv "$scratch/$name.tar" "$out/$name.tar"
    rm -rf "$scratch"
    scratch=""
}

build_wasm_images() {
    ensure_deb umoci
    build_wasm_image hello-oci /hello.wasm "$out/hello.wasm:/hello.wasm"
    # hello rides along so that `ctr tasks exec` has a short-lived module to run.
    build_wasm_image ticker-oci /ticker.wasm \
        "$out/ticker.wasm:/ticker.wasm" "$out/hello.wasm:/hello.wasm"
    # For tests: an image whose module is not Wasm at all.
    local garbage
    garbage=$(mktemp)
    printf 'this is not a wasm module\n' >"$garbage"
    build_wasm_image garbage-oci /hello.wasm "$garbage:/hello.wasm"
    rm -f "$garbage"
}

build_wasm
build_busybox
build_wasm_images
