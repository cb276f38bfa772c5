#!/usr/bin/env python3
"""End-to-end signing comparison: `signet sign` against a real `signetd --dev`, side by side with
the baselines, in one run.

For each set of files (20,000 x 4 KiB and 1,000 x 1 MiB; --quick: 500 and 20) this script starts
`signetd --dev` on a fresh state directory on disk (SoftHSM token, ECDSA P-256 key `default`,
durable audit log: every record fdatasync'd before its signature is released), warms the page
cache, and times:

  signet sign --key default -r DIR            whole flow: hash, HSM, audit, .sig files;
                                              once with verify-before-release on (the default)
                                              and once with it off (verify_before_release = false)
  signet sign --key batch -r DIR              Merkle batch signing: one HSM signature per request
                                              (8192 files), a FILE.receipt each; all verified with
                                              `signet verify`, HSM signatures counted from the
                                              receipts' distinct batch ids
  signet sign --key batch -r --bundle B DIR   the same, every receipt in one bundle file B (outside
                                              DIR, on the same tmpfs), verified with
                                              `signet verify --bundle B`
  openssl dgst -sha256 -sign key.pem          one process per file, a shell loop (sample, scaled;
                                              timed before and after signet's runs, the faster
                                              of the two kept)
  openssl dgst -binary | pkcs11-tool --sign   per file, same token (sample, scaled)
  plain C_Sign, ECDSA P-256                   bench/hsm_bench BM_PlainSign with 1, 2 and 4 threads
                                              (a session each), median of 3 runs, at the start
                                              and again after each set; the best of all is the
                                              HSM's ceiling

and prints files/s, the ratios, signetd's peak RSS (VmHWM) and the CPU seconds signetd and signet
used per run (what limits the run). The artifacts and their signatures live on tmpfs (/dev/shm when
it exists, else the scratch dir): this VM's disk is mounted with `discard`, which makes creating
and deleting tens of thousands of small files slow and erratic for every tool alike; the audit log
stays on disk. Existing .sig files are removed before each round, outside the timing. Every
signature signet wrote is checked with `openssl dgst -verify` on a sample. Python 3 standard
library only.
"""

import argparse
import json
import os
import resource
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


def timed(cmd, env=None, quiet=False):
    t = time.monotonic()
    run(cmd, env=env, stderr=subprocess.DEVNULL if quiet else None)
    return time.monotonic() - t


def cpu_seconds(pid):
    """utime + stime of process `pid`, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def plain_c_sign_rates(hsm_bench, quick):
    """threads -> median signatures/s of plain C_SignInit+C_Sign (ECDSA P-256, a session each)."""
    out = subprocess.run(
        [hsm_bench, "--benchmark_filter=BM_PlainSign/key:0/real_time/threads:[124]$",
         "--benchmark_min_time=" + ("0.2" if quick else "2"),
         "--benchmark_repetitions=" + ("1" if quick else "3"), "--benchmark_format=json"],
        check=True, capture_output=True, text=True).stdout
    runs = {}
    for b in json.loads(out)["benchmarks"]:
        if b.get("run_type", "iteration") == "iteration":
            runs.setdefault(b["threads"], []).append(b["items_per_second"])
    return {threads: statistics.median(rates) for threads, rates in runs.items()}


def remove_signatures(root):
    for entry in os.scandir(root):
        if entry.name.endswith((".sig", ".receipt", ".osig")):
            os.unlink(entry.path)


def set_verify(state, on):
    """Edits the --dev configuration's [[hsm]] table: verify_before_release on or off."""
    path = os.path.join(state, "signetd.toml")
    with open(path) as f:
        lines = [l for l in f.read().splitlines() if not l.startswith("verify_before_release")]
    out = []
    for line in lines:
        out.append(line)
        if line.startswith("pin_file = ") and not on:
            out.append("verify_before_release = false")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


def signet_rounds(args, proc, sock, root, count, key="default", bundle=None):
    """Runs `signet sign --key KEY -r root` (with --bundle BUNDLE) args.rounds times; returns
    (median files/s, signetd CPU s per round, signet CPU s per round, median seconds)."""
    cmd = [args.signet, "sign", "--socket", sock, "--key", key, "-r", root]
    if bundle:
        cmd += ["--bundle", bundle]
    times, daemon_cpu, client_cpu = [], [], []
    for _ in range(args.rounds):
        remove_signatures(root)
        if bundle and os.path.exists(bundle):
            os.unlink(bundle)
        d0, c0 = cpu_seconds(proc.pid), children_cpu()
        times.append(timed(cmd, quiet=True))
        daemon_cpu.append(cpu_seconds(proc.pid) - d0)
        client_cpu.append(children_cpu() - c0)
    return (count / statistics.median(times), statistics.median(daemon_cpu),
            statistics.median(client_cpu), statistics.median(times))


def rate_line(label, rate, openssl_rate, ceiling, size, loop_target, ceiling_target):
    """One result line: files/s and the ratios (with the issue's targets, for small files)."""
    line = (f"  signet sign, {label} {rate:8.0f} files/s  "
            f"{rate / openssl_rate:6.1f}x openssl loop")
    if size > 64 * 1024:
        return line + f"  {rate * size / (1 << 20):.0f} MiB/s hashed"
    line += f" (target {loop_target})"
    if ceiling:
        line += f"  {rate / ceiling:.2f}x C_Sign ceiling"
        line += f" (target {ceiling_target})" if ceiling_target else ""
    return line


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--signet", default="build-release/appliance/cli/signet")
    ap.add_argument("--signetd", default="build-release/appliance/daemon/signetd")
    ap.add_argument("--hsm-bench", default="build/bench/hsm_bench")
    ap.add_argument("--dir", default=None, help="scratch directory on disk (default: a temp dir)")
    ap.add_argument("--files-dir", default=None,
                    help="where the artifacts go (default: /dev/shm if it exists, else --dir)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()

    scratch = args.dir or tempfile.mkdtemp(prefix="signet-sign-compare-", dir=".")
    scratch = os.path.abspath(scratch)
    files_base = args.files_dir or ("/dev/shm" if os.path.isdir("/dev/shm") else scratch)
    files_dir = tempfile.mkdtemp(prefix="signet-sign-compare-files-", dir=files_base)
    sets = [("20,000 x 4 KiB", 20000, 4096), ("1,000 x 1 MiB", 1000, 1 << 20)]
    if args.quick:
        sets = [("500 x 4 KiB", 500, 4096), ("20 x 1 MiB", 20, 1 << 20)]

    key_pem = os.path.join(scratch, "openssl-key.pem")
    os.makedirs(scratch, exist_ok=True)
    run(["openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", key_pem])

    have_hsm_bench = os.path.exists(args.hsm_bench)
    c_sign = plain_c_sign_rates(args.hsm_bench, args.quick) if have_hsm_bench else {}
    ceiling = max(c_sign.values()) if c_sign else None
    if c_sign:
        print("plain C_Sign, ECDSA P-256" + ("" if args.quick else ", median of 3") +
              " (the HSM's ceiling is the best of these, here and after each set): " +
              ", ".join(f"{t} thread{'s' if t > 1 else ''} {r:.0f}/s"
                        for t, r in sorted(c_sign.items())))
    print(f"artifacts in {files_dir}; signetd state and audit log in {scratch}")
    loop = "for f; do openssl dgst -sha256 -sign \"$0\" -out \"$f.osig\" \"$f\"; done"
    try:
        for name, count, size in sets:
            root = os.path.join(files_dir, f"set-{count}x{size}")
            paths = make_set(root, count, size)
            warm(paths)
            # The baselines are measured before and after signet's runs, and the faster of the two
            # is used: this VM's speed drifts over minutes, and a baseline caught in a slow spell
            # would flatter signet's ratios.
            sample = paths[: min(count, 200)]
            t_openssl_before = timed(["sh", "-c", loop, key_pem] + sample)
            state = os.path.join(scratch, f"state-{count}x{size}")
            shutil.rmtree(state, ignore_errors=True)
            results = {}
            for verify in (True, False):
                if not verify:
                    set_verify(state, False)
                proc, sock = start_daemon(args.signetd, state)
                try:
                    results[verify] = signet_rounds(args, proc, sock, root, count)
                    rss = vm_hwm_kib(proc.pid)
                    pem = http_get(sock, "/v1/keys/default")["public_key_pem"]
                    pub = os.path.join(scratch, "default.pub.pem")
                    with open(pub, "w") as f:
                        f.write(pem)
                    for p in paths[:: max(1, count // 50)]:
                        run(["openssl", "dgst", "-sha256", "-verify", pub, "-signature",
                             p + ".sig", p])
                    if not verify:
                        # Merkle batch signing, same daemon: receipts instead of signatures.
                        remove_signatures(root)
                        batch = signet_rounds(args, proc, sock, root, count, key="batch")
                        batch_pub = os.path.join(scratch, "batch.pub.pem")
                        with open(batch_pub, "w") as f:
                            f.write(http_get(sock, "/v1/keys/batch")["public_key_pem"])
                        run([args.signet, "verify", "--key-file", batch_pub] + paths,
                            stderr=subprocess.DEVNULL)
                        batch_ids = set()
                        receipt_bytes = 0
                        for p in paths:
                            with open(p + ".receipt") as f:
                                text = f.read()
                            receipt_bytes += len(text)
                            batch_ids.add(json.loads(text)["batch_id"])
                        results["batch"] = batch + (len(batch_ids), receipt_bytes / count)
                        # The same, every receipt in one bundle file.
                        remove_signatures(root)
                        bundle = root + ".receipts"
                        bundled = signet_rounds(args, proc, sock, root, count, key="batch",
                                                bundle=bundle)
                        run([args.signet, "verify", "--key-file", batch_pub, "--bundle", bundle],
                            stderr=subprocess.DEVNULL)
                        batch_ids = set()
                        with open(bundle) as f:
                            lines = f.read().splitlines()
                        for line in lines:
                            batch_ids.add(json.loads(line)["batch_id"])
                        if len(lines) != count:
                            sys.exit(f"sign_compare: the bundle has {len(lines)} receipts, "
                                     f"not {count}")
                        results["bundle"] = bundled + (len(batch_ids),
                                                       os.path.getsize(bundle) / count)
                        os.unlink(bundle)
                finally:
                    proc.terminate()
                    proc.wait()
                results[verify] += (rss,)
            remove_signatures(root)

            t_openssl_after = timed(["sh", "-c", loop, key_pem] + sample)
            t_openssl = min(t_openssl_before, t_openssl_after)
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
            openssl_rate = len(sample) / t_openssl
            p11_rate = len(p11) / t_p11

            if have_hsm_bench:
                again = plain_c_sign_rates(args.hsm_bench, args.quick)
                ceiling = max([ceiling or 0] + list(again.values()))
            print(f"{name}:")
            if have_hsm_bench:
                print("  plain C_Sign again: " +
                      ", ".join(f"{t} thread{'s' if t > 1 else ''} {r:.0f}/s"
                                for t, r in sorted(again.items())) +
                      f"; ceiling for these ratios {ceiling:.0f}/s")
            for verify in (False, True):
                rate, d_cpu, c_cpu, wall, rss = results[verify]
                label = "verify off  " if not verify else "verify on   "
                print(rate_line(label, rate, openssl_rate, ceiling, size, "50x",
                                "0.6x" if not verify else None))
                print(f"      median of {args.rounds}: {wall:.2f} s; CPU: signetd {d_cpu:.2f} s, "
                      f"signet {c_cpu:.2f} s (2 cores = {2 * wall:.2f} CPU-s); "
                      f"signetd peak RSS {rss / 1024:.1f} MiB")
            for kind, label in (("batch", "batch key   "), ("bundle", "batch bundle")):
                rate, d_cpu, c_cpu, wall, hsm_ops, receipt_size = results[kind]
                print(rate_line(label, rate, openssl_rate, ceiling, size, "300x", "2.5x"))
                print(f"      median of {args.rounds}: {wall:.2f} s; CPU: signetd {d_cpu:.2f} s, "
                      f"signet {c_cpu:.2f} s; HSM signatures for the last round's {count} "
                      f"receipts: {hsm_ops} (one per {count / hsm_ops:.0f} artifacts); receipts "
                      f"{receipt_size:.0f} bytes each on average" +
                      (" (one file)" if kind == "bundle" else ""))
            print(f"  openssl dgst loop       {openssl_rate:8.0f} files/s  (sample of {len(sample)}; "
                  f"the faster of {len(sample) / t_openssl_before:.0f}/s before signet's runs and "
                  f"{len(sample) / t_openssl_after:.0f}/s after)")
            print(f"  pkcs11-tool loop        {p11_rate:8.0f} files/s  (sample of {len(p11)})")
            sys.stdout.flush()
    finally:
        shutil.rmtree(files_dir, ignore_errors=True)
        if not args.dir:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
