#!/usr/bin/env bash
# Installs every build, test and benchmark dependency of Signet from Debian 12 packages.
#
# Idempotent: when every package is already installed it only checks and returns (about a second).
# Run as root (or with sudo available). Nothing is downloaded outside Debian's archive.
set -euo pipefail

packages=(
  # Toolchain and build.
  cmake g++ pkg-config ninja-build ccache make git clang clang-format-16 clang-tidy
  libclang-rt-14-dev
  # Libraries (see ../DESIGN.md, "Dependencies").
  libssl-dev liburing-dev libtbb-dev liblmdb-dev lmdb-utils libp11-kit-dev
  libboost-dev libcurl4-openssl-dev nlohmann-json3-dev libtomlplusplus-dev
  libcli11-dev libspdlog-dev libfmt-dev libexpected-dev
  # Tests and benchmarks.
  libgtest-dev libgmock-dev libbenchmark-dev python3 coreutils findutils procps util-linux time
  python3-prometheus-client
  # The HSM and PKCS#11 tools.
  softhsm2 opensc
  # Verifiers used by the end-to-end tests (never reimplemented in tests).
  openssl gpgv sqv openssh-client minisign
)

missing=()
for p in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
  [[ "$status" == "installed" ]] || missing+=("$p")
done

if ((${#missing[@]} == 0)); then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi

echo "install-deps: installing ${#missing[@]} package(s): ${missing[*]}"
sudo=""
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || { echo "install-deps: run as root (or install sudo)" >&2; exit 1; }
  sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install-deps: done"
