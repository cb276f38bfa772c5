#!/usr/bin/env bash
# The README's test command: installs the dependencies, builds with -Werror and runs every test.
# Build directory: build/ (override with SIGNET_BUILD_DIR). Extra CMake arguments may follow.
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${SIGNET_BUILD_DIR:-build}

bash packaging/install-deps.sh
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSIGNET_WERROR=ON "$@" \
  >/dev/null
cmake --build "$build_dir"
ctest --test-dir "$build_dir" --output-on-failure -j"$(nproc)"
