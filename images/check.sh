#!/usr/bin/env bash
# Checks what build.sh wrote to OUT_DIR: every wasm sample is present with the right header
# (core module for the wasip1 samples, component for http-echo), and busybox/ is an OCI image
# layout whose index names tag v1. If `wasm-tools` is on PATH (or $WASM_TOOLS names it), each
# file is also fully validated and http-echo is checked to export wasi:http/incoming-handler.
#
# Usage: images/check.sh OUT_DIR
# Prints one line per failed check and closes with "N passed, M failed"; exits 1 on a failure.
set -uo pipefail

if [[ $# -ne 1 ]]; then
    echo "usage: $0 OUT_DIR" >&2
    exit 2
fi
out=$1
passed=0
failed=0

pass() { passed=$((passed + 1)); }
fail() {
    echo "FAIL: $*"
    failed=$((failed + 1))
}

# The first 8 bytes as hex: "\0asm" then a 4-byte version/layer field.
header() { od -An -tx1 -N8 "$1" | tr -d ' \n'; }

# Core modules are version 1, layer 0; components (component-model binary) are 0x0d, layer 1.
readonly core_header=0061736d01000000
readonly component_header=0061736d0d000100

wasm_tools=${WASM_TOOLS:-$(command -v wasm-tools || true)}

check_wasm() {
    local file=$out/$1 want=$2 kind=$3 got
    if [[ ! -s $file ]]; then
        fail "$file is missing or empty"
        return
    fi
    got=$(header "$file")
    if [[ $got == "$want" ]]; then pass; else fail "$file header $got, want $want ($kind)"; fi
    if [[ -n $wasm_tools ]]; then
        if "$wasm_tools" validate "$file" 2>/dev/null; then pass; else fail "$file does not validate"; fi
    fi
}

for name in hello ticker sensor crasher \
    hostile-busy-loop hostile-memory-bomb hostile-deep-recursion hostile-escape hostile-output-flood; do
    check_wasm "$name.wasm" "$core_header" "core module"
done
check_wasm http-echo.wasm "$component_header" component

if [[ -n $wasm_tools && -s $out/http-echo.wasm ]]; then
    wit=$("$wasm_tools" component wit "$out/http-echo.wasm" 2>/dev/null)
    if grep -q 'export wasi:http/incoming-handler@0\.2' <<<"$wit"; then
        pass
    else
        fail "http-echo.wasm does not export wasi:http/incoming-handler"
    fi
fi

layout=$out/busybox
if grep -q '"imageLayoutVersion"' "$layout/oci-layout" 2>/dev/null; then pass; else fail "$layout/oci-layout missing"; fi
if grep -q '"org.opencontainers.image.ref.name":"v1"' "$layout/index.json" 2>/dev/null; then
    pass
else
    fail "$layout/index.json has no tag v1"
fi
if [[ -d $layout/blobs/sha256 ]] && [[ $(find "$layout/blobs/sha256" -type f | wc -l) -ge 3 ]]; then
    pass
else
    fail "$layout/blobs/sha256 lacks manifest, config and layer blobs"
fi
if grep -lqs '"Entrypoint":\["/bin/sh"\]' "$layout"/blobs/sha256/*; then
    pass
else
    fail "no image config in $layout has entrypoint /bin/sh"
fi
# Listings are captured before grepping: with pipefail, `tar | grep -q` fails whenever grep
# stops reading early and tar gets SIGPIPE.
layer_files=$(for blob in "$layout"/blobs/sha256/*; do tar -tzf "$blob" 2>/dev/null; done)
for tool in busybox sh echo sleep cat ls; do
    if grep -qE "^(\./)?bin/$tool\$" <<<"$layer_files"; then
        pass
    else
        fail "no layer in $layout holds bin/$tool"
    fi
done
tar_files=$(tar -tf "$out/busybox.tar" 2>/dev/null)
if grep -qx './index.json' <<<"$tar_files"; then
    pass
else
    fail "$out/busybox.tar missing or without index.json"
fi

echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
