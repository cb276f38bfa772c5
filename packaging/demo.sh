#!/usr/bin/env bash
# The README's main command: installs the dependencies, builds a release build in build-release/,
# and runs Signet's main job on its embedded default with the parts that exist so far: hashing a
# directory of artifacts where they lie (`signet digest -r`), then proving the result with
# `sha256sum -c`. Signing (the daemon and HSM) joins in as those parts land.
#
# Usage: bash packaging/demo.sh [DIR]   (default: a generated sample set under ./.signet/demo)
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${SIGNET_BUILD_DIR:-build-release}

bash packaging/install-deps.sh
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DSIGNET_BUILD_TESTS=OFF \
  -DSIGNET_BUILD_BENCH=OFF >/dev/null
cmake --build "$build_dir" --target signet
signet="$build_dir/appliance/cli/signet"

artifacts=${1:-}
if [[ -z "$artifacts" ]]; then
  artifacts=.signet/demo/artifacts
  if [[ ! -d "$artifacts" ]]; then
    echo "demo: generating a sample set in $artifacts (2,000 files of 4 KiB, 40 of 1 MiB, 1 of 256 MiB)"
    mkdir -p "$artifacts/small" "$artifacts/medium" "$artifacts/large"
    head -c $((4096 * 2000)) /dev/urandom | split -a 4 -d -b 4096 - "$artifacts/small/pkg-"
    head -c $((1048576 * 40)) /dev/urandom | split -a 2 -d -b 1048576 - "$artifacts/medium/lib-"
    head -c $((256 * 1048576)) /dev/urandom >"$artifacts/large/image.iso"
  fi
fi
[[ -d "$artifacts" ]] || { echo "demo: $artifacts is not a directory" >&2; exit 2; }

sums=.signet/demo/SHA256SUMS
mkdir -p "$(dirname "$sums")"
echo "demo: hashing every file under $artifacts with $signet digest -r"
start=$(date +%s.%N)
"$signet" digest -r "$artifacts" >"$sums"
end=$(date +%s.%N)
files=$(wc -l <"$sums")
bytes=$(du -sb "$artifacts" | cut -f1)
awk -v f="$files" -v b="$bytes" -v s="$start" -v e="$end" 'BEGIN {
  t = e - s; printf "demo: %d files, %.1f MiB in %.2f s (%.0f MiB/s)\n", f, b / 1048576, t, b / 1048576 / t }'
echo "demo: checking every line with coreutils: sha256sum -c --quiet $sums"
sha256sum -c --quiet "$sums"
echo "demo: all $files digests agree with sha256sum. Checksums are in $sums."
