#!/usr/bin/env python3
"""End-to-end comparison of `signet digest` with the baseline tools, side by side in one run.

Creates three sets of files in a scratch directory on disk, warms the page cache, checks once per
set that `signet digest` prints exactly what `sha256sum` prints, then times, round after round with
the order of the tools rotated each round:

  signet digest FILES...                      (the binary under test)
  sha256sum FILES...                          (one process)
  xargs -0 -P2 -n ceil(N/2) sha256sum         (two processes, half of the files each)
  openssl dgst -sha256 FILES...               (one process)

Each command's stdout goes to /dev/null, its exit status must be 0 and its wall time is measured.
Peak RSS: os.wait4() on the child gives that child's own ru_maxrss (not RUSAGE_CHILDREN's maximum
over every child this script ever had). But Linux carries the forking process's RSS high-water mark
into a child at exec, so a command forked straight from this script would report at least this
script's own peak (tens of MiB, more than sha256sum ever uses). So each command is started by GNU
time (`time -f %M`, a ~1 MiB process) and its figure is the command's own peak; os.wait4() on the
`time` child gives the exit status. Without GNU time the script falls back to os.wait4() alone and
says that the figures are inflated. For xargs the figure is the largest of xargs and the sha256sum
processes it waited for. Absolute times on a shared machine are noise; the ratios printed per set
are what to look at.

Sets (default / --quick):
  (a) one file of 4 GiB                       / 64 MiB
  (b) 1000 files of 1 MiB                     / 50 files
  (c) 20,000 files of 4 KiB                   / 500 files

Python 3 standard library only. --quick runs in seconds so CI can keep this script from rotting.
"""

import argparse
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB
RSS_LIMIT_MIB = 128

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_SIGNETS = [
    os.path.join(REPO, "build-release", "appliance", "cli", "signet"),
    os.path.join(REPO, "build", "appliance", "cli", "signet"),
]


class SetSpec:
    def __init__(self, key, title, count, size, ratios):
        self.key = key          # "a", "b", "c": also the subdirectory name
        self.title = title
        self.count = count      # number of files
        self.size = size        # bytes per file
        self.ratios = ratios    # baseline tools the targets compare signet with

    @property
    def total(self):
        return self.count * self.size


def make_sets(quick):
    if quick:
        return [
            SetSpec("a", "(a) one 64 MiB file", 1, 64 * MIB, ["openssl", "sha256sum"]),
            SetSpec("b", "(b) 50 files of 1 MiB", 50, MIB, ["sha256sum", "xargs -P2"]),
            SetSpec("c", "(c) 500 files of 4 KiB", 500, 4 * KIB, ["sha256sum", "xargs -P2"]),
        ]
    return [
        SetSpec("a", "(a) one 4 GiB file", 1, 4 * GIB, ["openssl", "sha256sum"]),
        SetSpec("b", "(b) 1000 files of 1 MiB", 1000, MIB, ["sha256sum", "xargs -P2"]),
        SetSpec("c", "(c) 20,000 files of 4 KiB", 20000, 4 * KIB, ["sha256sum", "xargs -P2"]),
    ]


def die(message):
    print(f"digest_compare: {message}", file=sys.stderr)
    sys.exit(1)


def first_line(argv):
    try:
        out = subprocess.run(argv, capture_output=True, text=True, check=False)
    except OSError as e:
        return f"unavailable ({e})"
    text = (out.stdout or out.stderr).strip().splitlines()
    return text[0] if text else "?"


def machine_report(signet):
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = "?"
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    mem = f"{int(line.split()[1]) / (1024 * 1024):.1f} GiB"
                    break
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"machine: {platform.node()}  {platform.system()} {platform.release()} "
          f"{platform.machine()}")
    print(f"cpu:     {cpu}; {os.cpu_count()} CPUs, {usable} usable by this process; memory {mem}")
    print(f"tools:   {first_line([signet, '--version'])} ({signet})")
    print(f"         {first_line(['sha256sum', '--version'])}")
    print(f"         {first_line(['openssl', 'version'])}")
    print(f"         {first_line(['xargs', '--version'])}")


# ---- Files ----------------------------------------------------------------------------------

def file_names(spec):
    if spec.count == 1:
        return ["big.bin"]
    width = len(str(spec.count - 1))
    return [f"f{i:0{width}d}" for i in range(spec.count)]


def create_set(root, spec):
    """Writes the set's files (random bytes) under root/spec.key; returns the directory."""
    directory = os.path.join(root, spec.key)
    os.makedirs(directory, exist_ok=True)
    names = file_names(spec)
    if spec.size >= 16 * MIB:
        # One big file: repeat a random block with a counter in front, so no two blocks match.
        block = os.urandom(16 * MIB)
        with open(os.path.join(directory, names[0]), "wb") as f:
            written = 0
            index = 0
            while written < spec.size:
                piece = (index.to_bytes(8, "little") + block[8:])[: spec.size - written]
                f.write(piece)
                written += len(piece)
                index += 1
    else:
        for name in names:
            with open(os.path.join(directory, name), "wb") as f:
                f.write(os.urandom(spec.size))
    return directory


def warm(directory, names):
    """Reads every file once so that every tool hashes from the page cache."""
    buffer = bytearray(MIB)
    view = memoryview(buffer)
    for name in names:
        with open(os.path.join(directory, name), "rb", buffering=0) as f:
            while f.readinto(view):
                pass


# ---- Running --------------------------------------------------------------------------------

class Command:
    def __init__(self, label, argv, stdin_path=None):
        self.label = label
        self.argv = argv
        self.stdin_path = stdin_path
        self.seconds = []
        self.peak_rss_kib = 0


def find_gnu_time():
    """GNU time's path, or None. Its -f %M is the peak RSS (KiB) of the command it forked."""
    path = shutil.which("time") or ("/usr/bin/time" if os.access("/usr/bin/time", os.X_OK) else None)
    if path and "GNU" in first_line([path, "--version"]):
        return path
    return None


def run_once(command, cwd, gnu_time, scratch):
    """Runs the command once: returns wall seconds; records its peak RSS; exit status must be 0."""
    rss_path = os.path.join(scratch, "rss")
    argv = command.argv
    if gnu_time:
        argv = [gnu_time, "-f", "%M", "-o", rss_path, *argv]
    stdin = open(command.stdin_path, "rb") if command.stdin_path else subprocess.DEVNULL
    try:
        start = time.perf_counter()
        child = subprocess.Popen(argv, cwd=cwd, stdin=stdin, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE)
        with child.stderr:
            stderr = child.stderr.read()
        _, status, usage = os.wait4(child.pid, 0)
        elapsed = time.perf_counter() - start
        child.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    finally:
        if command.stdin_path:
            stdin.close()
    if child.returncode != 0:
        die(f"{command.label} exited with {child.returncode}: "
            f"{stderr.decode(errors='replace').strip()[:2000]}")
    if gnu_time:
        with open(rss_path, encoding="utf-8") as f:
            peak_kib = int(f.read().split()[-1])
    else:
        peak_kib = usage.ru_maxrss  # inflated by this script's own peak (see the docstring)
    command.seconds.append(elapsed)
    command.peak_rss_kib = max(command.peak_rss_kib, peak_kib)
    return elapsed


def verify_same_output(signet, directory, names, label):
    """signet digest must print exactly what sha256sum prints (same bytes, same order)."""
    ours = subprocess.run([signet, "digest", *names], cwd=directory, capture_output=True, check=False)
    theirs = subprocess.run(["sha256sum", *names], cwd=directory, capture_output=True, check=False)
    if ours.returncode != 0 or theirs.returncode != 0:
        die(f"{label}: verification run failed: signet exit {ours.returncode} "
            f"({ours.stderr.decode(errors='replace').strip()[:500]}), sha256sum exit "
            f"{theirs.returncode}")
    if ours.stdout != theirs.stdout:
        die(f"{label}: signet digest and sha256sum disagree; not timing a wrong answer")
    print(f"  verified: signet digest output == sha256sum output ({len(names)} files)")


def bench_set(spec, directory, signet, rounds, scratch, gnu_time):
    names = file_names(spec)
    list_path = os.path.join(scratch, f"list-{spec.key}")
    with open(list_path, "wb") as f:
        f.write(b"".join(os.fsencode(n) + b"\0" for n in names))
    half = max(1, math.ceil(len(names) / 2))
    commands = [
        Command("signet", [signet, "digest", *names]),
        Command("sha256sum", ["sha256sum", *names]),
        Command("xargs -P2", ["xargs", "-0", "-P2", "-n", str(half), "sha256sum"], list_path),
        Command("openssl", ["openssl", "dgst", "-sha256", *names]),
    ]
    print(f"\n{spec.title}: {spec.total / MIB:,.0f} MiB in {spec.count:,} file(s), "
          f"{rounds} round(s)")
    warm(directory, names)
    verify_same_output(signet, directory, names, spec.title)
    for r in range(rounds):
        # Rotate the order each round, so no tool always runs first (or right after another).
        order = commands[r % len(commands):] + commands[: r % len(commands)]
        for command in order:
            run_once(command, directory, gnu_time, scratch)
    return commands


def report(spec, commands):
    mb = spec.total / 1e6
    print(f"  {'tool':<12} {'median s':>10} {'MB/s':>10} {'peak RSS MiB':>13}   rounds (s)")
    for c in commands:
        median = statistics.median(c.seconds)
        rounds = " ".join(f"{s:.3f}" for s in c.seconds)
        print(f"  {c.label:<12} {median:>10.3f} {mb / median:>10.0f} "
              f"{c.peak_rss_kib / 1024:>13.1f}   {rounds}")
    by_label = {c.label: c for c in commands}
    signet = by_label["signet"]
    signet_median = statistics.median(signet.seconds)
    for other in spec.ratios:
        ratio = statistics.median(by_label[other].seconds) / signet_median
        print(f"  signet vs {other}: {ratio:.2f}x the speed "
              f"(time {signet_median:.3f} s vs {statistics.median(by_label[other].seconds):.3f} s)")
    rss_mib = signet.peak_rss_kib / 1024
    print(f"  signet peak RSS < {RSS_LIMIT_MIB} MiB: {'yes' if rss_mib < RSS_LIMIT_MIB else 'no'} "
          f"({rss_mib:.1f} MiB)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--signet", help="the signet binary (default: build-release/ or build/ "
                        "appliance/cli/signet of this repository)")
    parser.add_argument("--dir", help="scratch directory on disk (default: a new directory under "
                        "/var/tmp); the files created in it are removed afterwards unless --keep")
    parser.add_argument("--keep", action="store_true", help="keep the scratch files")
    parser.add_argument("--rounds", type=int, default=None, help="timed rounds per set "
                        "(default 5; 1 with --quick)")
    parser.add_argument("--quick", action="store_true",
                        help="tiny sets (64 MiB, 50 x 1 MiB, 500 x 4 KiB) and 1 round, for CI")
    args = parser.parse_args()

    signet = args.signet or next((p for p in DEFAULT_SIGNETS if os.access(p, os.X_OK)), None)
    if not signet or not os.access(signet, os.X_OK):
        die(f"no signet binary found (tried {', '.join(DEFAULT_SIGNETS)}); build it or pass "
            "--signet PATH")
    signet = os.path.abspath(signet)
    for tool in ("sha256sum", "xargs", "openssl"):
        if shutil.which(tool) is None:
            die(f"{tool} is not installed")
    rounds = args.rounds if args.rounds is not None else (1 if args.quick else 5)
    if rounds < 1:
        die("--rounds must be at least 1")
    sets = make_sets(args.quick)

    if args.dir:
        os.makedirs(args.dir, exist_ok=True)
        scratch = tempfile.mkdtemp(prefix="signet-digest-compare-", dir=args.dir)
    else:
        scratch = tempfile.mkdtemp(prefix="signet-digest-compare-", dir="/var/tmp")
    needed = sum(s.total for s in sets) + 64 * MIB
    free = shutil.disk_usage(scratch).free
    if free < needed:
        shutil.rmtree(scratch, ignore_errors=True)
        die(f"{scratch}: {free / GIB:.1f} GiB free, {needed / GIB:.1f} GiB needed")

    machine_report(signet)
    gnu_time = find_gnu_time()
    if gnu_time:
        print(f"peak RSS: measured by {gnu_time} -f %M around each command")
    else:
        print("peak RSS: GNU time not found; os.wait4() figures include this script's own peak "
              "RSS (Linux carries it into the child), so they are upper bounds")
    print(f"scratch: {scratch} ({needed / GIB:.2f} GiB){' (kept)' if args.keep else ''}")
    try:
        for spec in sets:
            start = time.perf_counter()
            directory = create_set(scratch, spec)
            print(f"\ncreated {spec.title} in {time.perf_counter() - start:.1f} s")
            commands = bench_set(spec, directory, signet, rounds, scratch, gnu_time)
            report(spec, commands)
            if not args.keep:
                shutil.rmtree(directory, ignore_errors=True)  # free the page cache and the disk
    finally:
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
