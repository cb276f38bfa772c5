#!/usr/bin/env bash
# The README's main command: installs the dependencies, builds a release build in build-release/,
# and runs Signet's main job on its embedded default: starts `signetd --dev` (a SoftHSM token with
# keys made inside it, a policy for the invoking user, a durable audit log), bulk-signs a directory
# of artifacts with `signet sign -r`, checks every signature with `openssl dgst -verify`, signs them
# again with the Merkle batch key and checks every receipt with `signet verify`, shows the policy
# in force (`signet admin policy show`), exports the audit log through the admin socket and
# verifies the export offline with the audit key's public half, stops the daemon, exports the log
# again straight from its directory (`--log`), verifies that too and shows what it holds.
#
# Usage: bash packaging/demo.sh [DIR]   (default: a generated sample set under ./.signet/demo)
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${SIGNET_BUILD_DIR:-build-release}

bash packaging/install-deps.sh
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DSIGNET_BUILD_TESTS=OFF \
  -DSIGNET_BUILD_BENCH=OFF >/dev/null
cmake --build "$build_dir" --target signet signetd
signet="$build_dir/appliance/cli/signet"
signetd="$build_dir/appliance/daemon/signetd"

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

state=.signet/demo/state
socket="$state/sign.sock"
admin_socket="$state/admin/admin.sock"
log=.signet/demo/signetd.log
mkdir -p .signet/demo
echo "demo: starting $signetd --dev --state-dir $state (log: $log)"
"$signetd" --dev --state-dir "$state" >"$log" 2>&1 &
daemon=$!
stop_daemon() { kill -TERM "$daemon" 2>/dev/null && wait "$daemon" || true; }
trap stop_daemon EXIT
for _ in $(seq 300); do
  [[ -S "$socket" ]] && break
  kill -0 "$daemon" 2>/dev/null || { cat "$log" >&2; echo "demo: signetd did not start" >&2; exit 1; }
  sleep 0.1
done
[[ -S "$socket" ]] || { cat "$log" >&2; echo "demo: no socket at $socket" >&2; exit 1; }

pub=.signet/demo/default.pub.pem
"$signet" keys list --socket "$socket"
"$signet" keys show default --pem --socket "$socket" >"$pub"

echo "demo: signing every file under $artifacts: $signet sign -r --key default"
start=$(date +%s.%N)
"$signet" sign --socket "$socket" --key default --force -r "$artifacts" >/dev/null
end=$(date +%s.%N)
files=$(find "$artifacts" -type f ! -name '*.sig' | wc -l)
bytes=$(find "$artifacts" -type f ! -name '*.sig' -printf '%s\n' | awk '{ s += $1 } END { print s }')
awk -v f="$files" -v b="$bytes" -v s="$start" -v e="$end" 'BEGIN {
  t = e - s; printf "demo: signed %d files (%.1f MiB) in %.2f s: %.0f files/s, %.0f MiB/s\n", f, b / 1048576, t, f / t, b / 1048576 / t }'

echo "demo: checking every signature with openssl dgst -sha256 -verify (the key's public half: $pub)"
find "$artifacts" -type f ! -name '*.sig' -print0 |
  xargs -0 -P "$(nproc)" -n 64 sh -c 'for f; do
    openssl dgst -sha256 -verify "$0" -signature "$f.sig" "$f" >/dev/null ||
      { echo "demo: BAD signature: $f" >&2; exit 255; }
  done' "$pub"
echo "demo: all $files signatures verified with openssl."

# Merkle batch signing: one HSM signature per 8192 artifacts, a receipt for each.
receipts=.signet/demo/receipts
batch_pub=.signet/demo/batch.pub.pem
relative=$(realpath --relative-to=. "$artifacts")
if [[ "$relative" == ..* ]]; then
  echo "demo: $artifacts is outside this directory; skipping batch signing (--out-dir mirrors relative paths)"
elif "$signet" keys show batch --pem --socket "$socket" >"$batch_pub" 2>/dev/null; then
  echo "demo: batch-signing the same files: $signet sign --key batch --out-dir $receipts"
  rm -rf "$receipts"
  "$signet" sign --socket "$socket" --key batch --out-dir "$receipts" -r "$relative" >/dev/null
  batches=$(find "$receipts" -name '*.receipt' -exec grep -h '"batch_id"' {} + | sort -u | wc -l)
  echo "demo: $files receipts from $batches HSM signature(s); checking each with signet verify"
  find "$relative" -type f ! -name '*.sig' -print0 |
    xargs -0 "$signet" verify --key-file "$batch_pub" --sig-dir "$receipts" >/dev/null
  echo "demo: all $files receipts verified."
else
  echo "demo: no key \"batch\" in $state (made by an older signetd); skipping batch signing"
fi

# The admin socket: the policy in force, then an export made by signetd (the auditor role).
socket_export=.signet/demo/audit-admin.jsonl
policy_shown=.signet/demo/policy-show.txt
echo "demo: the policy in force: $signet admin policy show --socket $admin_socket"
if "$signet" admin policy show --socket "$admin_socket" >"$policy_shown" 2>&1; then
  sed 's/^./        &/' "$policy_shown"
  # An export covers the records under the latest signed checkpoint; signetd signs one about a
  # second after records arrive: wait (at most 10 s) until it covers the whole log.
  for _ in $(seq 100); do
    health=$("$signet" admin stats --json --socket "$admin_socket")
    tree=$(grep -o '"tree_size": *[0-9]*' <<<"$health" | head -1 | grep -o '[0-9]*$' || true)
    covered=$(grep -o '"checkpoint_size": *[0-9]*' <<<"$health" | head -1 | grep -o '[0-9]*$' || true)
    [[ -n "$tree" && -n "$covered" && "$covered" -ge "$tree" ]] && break
    sleep 0.1
  done
  echo "demo: exporting the audit log through the admin socket:"
  echo "      $signet audit export --socket $admin_socket -o $socket_export"
  "$signet" audit export --socket "$admin_socket" -o "$socket_export"
  echo "demo: verifying it offline: signet audit verify $socket_export --key-file $state/audit.pub.pem"
  "$signet" audit verify "$socket_export" --key-file "$state/audit.pub.pem"
else
  sed 's/^./        &/' "$policy_shown"
  echo "demo: the admin socket refused us: a state made by an older signetd has a policy without"
  echo "      [roles]; skipping the admin socket (rm -rf $state for a new state)"
  socket_export=""
fi

stop_daemon
trap - EXIT
export_file=.signet/demo/audit.jsonl
echo "demo: signetd stopped; exporting the log straight from its directory: $signet audit export --log $state/audit"
"$signet" audit export --log "$state/audit" -o "$export_file" -q
records=$(grep -c '"type":"record"' "$export_file" || true)
signs=$(grep -c 'kind\\":\\"sign' "$export_file" || true)
echo "demo: the audit log holds $records records ($signs of them 'sign', one per artifact signed"
echo "      in any run so far); the latest signed checkpoint:"
sed -n 's/.*"checkpoint":"\([^"]*\)".*/\1/p' "$export_file" | head -1 | sed 's/\\n/\n/g' | sed 's/^/        /'
echo "demo: verifying the export offline: signet audit verify $export_file --key-file $state/audit.pub.pem"
"$signet" audit verify "$export_file" --key-file "$state/audit.pub.pem"
echo "demo: exports in ${socket_export:+$socket_export and }$export_file; signatures are next to each artifact (FILE.sig)."
