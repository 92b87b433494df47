#!/usr/bin/python3
"""Time to give a new process its own cgroup: mkdir on the spot vs a
pre-made group (RunD's rename trick on v1; clone3(CLONE_INTO_CGROUP) on v2,
where rename is EPERM).  What poold's cgroup pool (services/poold/
cgroup_pool.c) takes off the sandbox start path.

Compiles bench/cgroup_alloc.c with `cc -O2` into a temp dir, waits for a
quiet machine (>= 85% idle over 3 s from /proc/stat), then runs interleaved
rounds (every mode once per round, for 1 worker and for 2 workers at once,
one unrecorded warm-up each).  Each run makes -n allocations per worker and
reports microseconds per allocation (wall time / allocations).  Prints
min/median/max per mode and the median of the per-round ratios.  Every
cgroup is made under quiver-bench-<pid> below our own cgroup and removed;
leftovers of a crashed run are searched for and removed at the end.

    sudo /usr/bin/python3 bench/cgroup_alloc.py [--rounds 15] [-n 50] [--workers 1,2] [--plot out.png]
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

MODES_V1 = [
    ("v1-mkdir", "mkdir every v1 hierarchy + cgroup.procs"),
    ("v1-rename", "rename pre-made, every v1 + cgroup.procs"),
]
MODES_V2 = [
    ("v2-mkdir-clone", "mkdir + clone3(INTO_CGROUP)"),
    ("v2-pre-clone", "pre-made + clone3(INTO_CGROUP)"),
    ("v2-mkdir-procs", "mkdir + cgroup.procs"),
    ("v2-pre-procs", "pre-made + cgroup.procs"),
    ("clone", "clone3 alone (reference)"),
]
RATIOS = [("v1-mkdir", "v1-rename"), ("v2-mkdir-clone", "v2-pre-clone"), ("v2-mkdir-procs", "v2-pre-procs")]


def cpu_times():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return v[3] + v[4], sum(v)


def idle_share(t0, t1):
    di, dt = t1[0] - t0[0], t1[1] - t0[1]
    return 100.0 * di / dt if dt else 100.0


def wait_quiet(threshold=85.0, window=3.0, give_up=60.0):
    start = time.monotonic()
    while True:
        a = cpu_times()
        time.sleep(window)
        idle = idle_share(a, cpu_times())
        if idle >= threshold:
            return idle
        if time.monotonic() - start > give_up:
            print("warning: machine never reached %.0f%% idle (last %.1f%%); measuring anyway"
                  % (threshold, idle), file=sys.stderr)
            return idle
        print("waiting for a quiet machine: %.1f%% idle" % idle, file=sys.stderr)


def run(binary, mode, n, workers):
    r = subprocess.run([binary, "-n", str(n), "-j", str(workers), mode],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if r.returncode == 3:
        return None  # no such hierarchy here
    if r.returncode != 0:
        raise SystemExit("cgroup_alloc %s -j %d failed (%d): %s" % (mode, workers, r.returncode, r.stderr))
    return float(r.stdout.split()[-1])


def remove_leftovers():
    """quiver-bench-<pid> directories of a crashed run, children first."""
    found = []
    for top, dirs, _ in os.walk("/sys/fs/cgroup"):
        for d in dirs:
            pid = d[len("quiver-bench-"):]
            # A live pid is another run's, still at work.
            if d.startswith("quiver-bench-") and not (pid.isdigit() and os.path.exists("/proc/" + pid)):
                found.append(os.path.join(top, d))
        if top.count("/") > 6:
            dirs[:] = []
    for d in found:
        for sub, _, _ in sorted(os.walk(d), key=lambda x: -len(x[0])):
            try:
                os.rmdir(sub)
            except OSError as e:
                print("warning: could not remove %s: %s" % (sub, e), file=sys.stderr)
    return found


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("-n", type=int, default=50, help="allocations per worker per run")
    ap.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    ap.add_argument("--idle", type=float, default=85.0)
    ap.add_argument("--settle", type=float, default=0.1,
                    help="seconds between runs, for the kernel's deferred cgroup release")
    ap.add_argument("--plot", default=None, help="write a PNG with gnuplot, if installed")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("needs root (it makes cgroups)")

    here = os.path.dirname(os.path.abspath(__file__))
    tmp = tempfile.mkdtemp(prefix="quiver-bench-cg-")
    binary = os.path.join(tmp, "cgroup_alloc")
    subprocess.run(["cc", "-O2", "-o", binary, os.path.join(here, "cgroup_alloc.c")], check=True)
    workers = [int(w) for w in args.workers.split(",")]
    modes = [m for m, _ in MODES_V1 + MODES_V2]
    times = {}  # (mode, workers) -> [us per alloc]
    try:
        for w in workers:
            for m in modes:
                if run(binary, m, args.n, w) is not None:  # warm-up, not recorded
                    times[(m, w)] = []
        idle_before = wait_quiet(args.idle)
        t0 = cpu_times()
        for _ in range(args.rounds):
            for w in workers:
                for m in modes:
                    if (m, w) in times:
                        times[(m, w)].append(run(binary, m, args.n, w))
                        time.sleep(args.settle)
        idle_during = idle_share(t0, cpu_times())
    finally:
        left = remove_leftovers()
        shutil.rmtree(tmp, ignore_errors=True)

    print("# %s, %d interleaved rounds, %d allocations per worker per run, idle before %.1f%%, during %.1f%%"
          % (time.strftime("%Y-%m-%d %H:%M"), args.rounds, args.n, idle_before, idle_during))
    with open("/proc/self/cgroup") as f:
        n_v1 = sum(1 for line in f if line.split(":")[1])
    print("# us per allocation (wall time / allocations); %d v1 hierarchies; kernel %s"
          % (n_v1, os.uname().release))
    head = "%-52s" % "mode"
    for w in workers:
        head += " | %s" % ("%d worker%s: min / median / max" % (w, "s at once" if w > 1 else "")).center(31)
    print(head)
    for m, label in MODES_V1 + MODES_V2:
        if not any((m, w) in times for w in workers):
            print("%-52s | not on this host" % label)
            continue
        line = "%-52s" % label
        for w in workers:
            v = times.get((m, w))
            line += " | %9.1f %9.1f %9.1f" % (min(v), statistics.median(v), max(v)) if v else " | %29s" % "-"
        print(line)
    for a, b in RATIOS:
        line = "%-52s" % ("median per-round ratio %s / %s" % (a, b))
        ok = False
        for w in workers:
            if (a, w) in times and (b, w) in times:
                ratios = [x / y for x, y in zip(times[(a, w)], times[(b, w)])]
                line += " | %29.2f" % statistics.median(ratios)
                ok = True
            else:
                line += " | %29s" % "-"
        if ok:
            print(line)
    if left:
        print("warning: removed leftovers of a crashed run: %s" % ", ".join(left))
    expect = 100.0 - 100.0 / (os.cpu_count() or 1)
    if idle_during < expect - 15.0:
        print("warning: the machine was busy during the run (%.1f%% idle, expected ~%.0f%%); repeat it"
              % (idle_during, expect))

    if args.plot and shutil.which("gnuplot"):
        keys = sorted(times)
        with tempfile.NamedTemporaryFile("w", suffix=".dat", delete=False) as f:
            for i in range(args.rounds):
                f.write("%d %s\n" % (i + 1, " ".join("%.2f" % times[k][i] for k in keys)))
            dat = f.name
        plots = ", ".join("'%s' using 1:%d with linespoints title '%s j%d'" % (dat, i + 2, k[0], k[1])
                          for i, k in enumerate(keys))
        subprocess.run(["gnuplot", "-e", "set terminal png size 900,500; set output '%s'; set logscale y; "
                        "set xlabel 'round'; set ylabel 'us per allocation'; plot %s" % (args.plot, plots)])
        os.unlink(dat)


if __name__ == "__main__":
    main()
