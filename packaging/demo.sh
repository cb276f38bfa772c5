#!/usr/bin/env bash
# The README's main command: installs the dependencies, builds a release build in build-release/,
# and runs Signet's main job on its embedded default with the parts that exist so far.
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${SIGNET_BUILD_DIR:-build-release}

bash packaging/install-deps.sh
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DSIGNET_BUILD_TESTS=OFF \
  -DSIGNET_BUILD_BENCH=OFF >/dev/null
cmake --build "$build_dir"
echo "demo: the foundation is built; the hashing pipeline, HSM signer and daemon land next."
