#!/usr/bin/env bash
# gpu-pack.sh: packs the release binaries for deploy/gpu-check.sh on a machine that receives at
# most 64 MiB: each binary stripped of its symbols and line tables, then xz-compressed
# (about 80-115 MB each becomes about 12 MB stripped and 3-4 MB compressed). gpu-check.sh
# decompresses them.
#
# Usage:
#   cargo build --release -p shoal-worker --features cuda
#   cargo build --release -p shoal-cli -p shoal-coordinator -p shoal-param-server
#   deploy/gpu-pack.sh [TARGET_DIR] [OUT_DIR]
#     TARGET_DIR  cargo's release folder (default: $CARGO_TARGET_DIR/release, else target/release)
#     OUT_DIR     where the .xz files go (default: bin; .xz files already there are replaced)
#   Then, on the GPU machine: deploy/gpu-check.sh OUT_DIR
# Exit status: 0 when every binary was packed and the folder fits in 64 MiB, 1 otherwise.

set -euo pipefail

SRC=${1:-${CARGO_TARGET_DIR:-target}/release}
OUT=${2:-bin}
LIMIT=$((64 << 20))
BINARIES=(shoal shoal-worker shoal-coordinator shoal-param-server)

for tool in strip xz; do
  command -v "$tool" >/dev/null || { echo "gpu-pack: $tool is needed" >&2; exit 1; }
done
for name in "${BINARIES[@]}"; do
  [[ -x $SRC/$name ]] || { echo "gpu-pack: $SRC/$name is missing: build it first (see the usage above)" >&2; exit 1; }
done
mkdir -p "$OUT"
rm -f "$OUT"/*.xz
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
for name in "${BINARIES[@]}"; do
  strip --strip-all -o "$scratch/$name" "$SRC/$name"
  xz -6 -T1 -c "$scratch/$name" >"$OUT/$name.xz"
  printf 'gpu-pack: %-20s %4d MB -> stripped %3d MB -> xz %3d MB\n' "$name" \
    $(($(stat -c %s "$SRC/$name") >> 20)) $(($(stat -c %s "$scratch/$name") >> 20)) \
    $(($(stat -c %s "$OUT/$name.xz") >> 20)) >&2
done
# Which features the worker was built with travels along: a worker without `cuda` cannot check a GPU.
if "$scratch/shoal-worker" devices 2>/dev/null | grep -q 'built without the .cuda. feature'; then
  echo "gpu-pack: warning: $SRC/shoal-worker was built without the cuda feature" >&2
fi
total=$(du -cb "$OUT"/*.xz | tail -n 1 | cut -f1)
echo "gpu-pack: $OUT holds $((total >> 20)) MiB ($total bytes; the limit is 64 MiB)" >&2
[[ $total -le $LIMIT ]]
