#!/usr/bin/env python3
"""End-to-end signing comparison: `signet sign` against a real `signetd --dev`, side by side with
the baselines, in one run.

For each set of files (20,000 x 4 KiB and 1,000 x 1 MiB; --quick: 500 and 20) this script starts
`signetd --dev` on a fresh state directory (SoftHSM token, ECDSA P-256 key `default`, durable audit
log), warms the page cache, and times:

  signet sign --key default --force FILES...       whole flow: hash, HSM, audit, .sig files
  openssl dgst -sha256 -sign key.pem (one process per file, a shell loop; on a sample, scaled)
  openssl dgst -binary | pkcs11-tool --sign --mechanism ECDSA (per file, same token; sample)
  plain multi-threaded C_Sign of the same key type (bench/hsm_bench BM_PlainSign ECDSA P-256,
  2 threads): the HSM's own ceiling

and prints files/s, the ratios, and signetd's peak RSS (VmHWM). Every signature signet wrote is
checked with `openssl dgst -verify` on a sample. Python 3 standard library only.
"""

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, **kw)


def make_set(root, count, size):
    os.makedirs(root, exist_ok=True)
    data = os.urandom(size * min(count, 64))
    paths = []
    for i in range(count):
        p = os.path.join(root, f"f{i:05d}")
        with open(p, "wb") as f:
            off = (i % 64) * size
            f.write(data[off:off + size][:8] + i.to_bytes(8, "little") + data[off + 16:off + size])
        paths.append(p)
    return paths


def warm(paths):
    for p in paths:
        with open(p, "rb") as f:
            while f.read(1 << 20):
                pass


def http_get(sock_path, target):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(sock_path)
    s.sendall(f"GET {target} HTTP/1.1\r\nHost: signetd\r\nConnection: close\r\n\r\n".encode())
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return json.loads(body)


def start_daemon(signetd, state):
    log = open(os.path.join(state + ".log"), "w")
    proc = subprocess.Popen([signetd, "--dev", "--state-dir", state], stdout=log, stderr=log)
    sock = os.path.join(state, "sign.sock")
    for _ in range(600):
        if os.path.exists(sock):
            return proc, sock
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    sys.exit(f"sign_compare: signetd did not start; see {state}.log")


def vm_hwm_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def timed(cmd, env=None):
    t = time.monotonic()
    run(cmd, env=env)
    return time.monotonic() - t


def plain_c_sign_rate(hsm_bench):
    out = subprocess.run(
        [hsm_bench, "--benchmark_filter=BM_PlainSign/key:0/real_time/threads:2$",
         "--benchmark_min_time=1", "--benchmark_format=json"],
        check=True, capture_output=True, text=True).stdout
    runs = json.loads(out)["benchmarks"]
    return runs[0]["items_per_second"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--signet", default="build-release/appliance/cli/signet")
    ap.add_argument("--signetd", default="build-release/appliance/daemon/signetd")
    ap.add_argument("--hsm-bench", default="build/bench/hsm_bench")
    ap.add_argument("--dir", default=None, help="scratch directory (default: a temp dir on disk)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()

    scratch = args.dir or tempfile.mkdtemp(prefix="signet-sign-compare-", dir=".")
    scratch = os.path.abspath(scratch)
    sets = [("20,000 x 4 KiB", 20000, 4096), ("1,000 x 1 MiB", 1000, 1 << 20)]
    if args.quick:
        sets = [("500 x 4 KiB", 500, 4096), ("20 x 1 MiB", 20, 1 << 20)]

    key_pem = os.path.join(scratch, "openssl-key.pem")
    os.makedirs(scratch, exist_ok=True)
    run(["openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", key_pem])

    c_sign = plain_c_sign_rate(args.hsm_bench) if os.path.exists(args.hsm_bench) else None
    try:
        for name, count, size in sets:
            root = os.path.join(scratch, f"set-{count}x{size}")
            paths = make_set(root, count, size)
            warm(paths)
            state = os.path.join(scratch, f"state-{count}x{size}")
            shutil.rmtree(state, ignore_errors=True)
            proc, sock = start_daemon(args.signetd, state)
            try:
                signet_cmd = [args.signet, "sign", "--socket", sock, "--key", "default",
                              "--force", "-r", root]
                signet_times = [timed(signet_cmd) for _ in range(args.rounds)]
                pem = http_get(sock, "/v1/keys/default")["public_key_pem"]
                pub = os.path.join(scratch, "default.pub.pem")
                with open(pub, "w") as f:
                    f.write(pem)
                for p in paths[:: max(1, count // 50)]:
                    run(["openssl", "dgst", "-sha256", "-verify", pub, "-signature", p + ".sig", p])
                rss = vm_hwm_kib(proc.pid)
                sample = paths[: min(count, 200)]
                loop = "for f; do openssl dgst -sha256 -sign \"$0\" -out \"$f.osig\" \"$f\"; done"
                t_openssl = timed(["sh", "-c", loop, key_pem] + sample)
                env = dict(os.environ, SOFTHSM2_CONF=os.path.join(state, "softhsm2.conf"))
                with open(os.path.join(state, "pin")) as f:
                    pin = f.read().strip()
                p11 = sample[:50]
                t0 = time.monotonic()
                # SoftHSM 2.6 has no CKM_ECDSA_SHA256: hash with openssl, sign the digest.
                p11_one = ('openssl dgst -sha256 -binary "$1" > "$1.dgst" && '
                           'pkcs11-tool --module /usr/lib/softhsm/libsofthsm2.so '
                           '--token-label signet-dev --pin "$0" --sign --mechanism ECDSA '
                           '--label default --input-file "$1.dgst" --output-file "$1.p11sig"')
                for p in p11:
                    run(["sh", "-c", p11_one, pin, p], env=env, stderr=subprocess.DEVNULL)
                t_p11 = time.monotonic() - t0
            finally:
                proc.terminate()
                proc.wait()
            signet_rate = count / statistics.median(signet_times)
            openssl_rate = len(sample) / t_openssl
            p11_rate = len(p11) / t_p11
            print(f"{name}:")
            print(f"  signet sign        {signet_rate:10.0f} files/s  (median of {args.rounds}; "
                  f"signetd peak RSS {rss / 1024:.1f} MiB)")
            print(f"  openssl dgst loop  {openssl_rate:10.0f} files/s  (sample of {len(sample)})"
                  f"   signet / openssl loop = {signet_rate / openssl_rate:.1f}x (target 50x)")
            print(f"  pkcs11-tool loop   {p11_rate:10.0f} files/s  (sample of {len(p11)})"
                  f"   signet / pkcs11-tool = {signet_rate / p11_rate:.1f}x")
            if c_sign:
                print(f"  plain C_Sign, 2 threads {c_sign:7.0f} sig/s"
                      f"   signet / C_Sign = {signet_rate / c_sign:.2f}x (target 0.6x)")
            sys.stdout.flush()
    finally:
        if not args.dir:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
