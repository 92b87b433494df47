#!/usr/bin/python3
"""The floor under two of the issues' goals: what the design costs on this
machine before any code of Quiver's runs.

- latency (issue 4: a mediated openat + close <= 8 us): bench/floor.c's
  modes, interleaved rounds: native openat + close; a bare trapped call
  answered by a supervisor waiting in epoll (with and without
  SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP) or blocking in the RECV ioctl; and the
  least a confined mediated open can do (process_vm_readv, openat2
  RESOLVE_IN_ROOT, ADDFD with FLAG_SEND; no iod, no ring), unpinned and
  with both processes on one CPU.  Microseconds per call, min / median / max.
- memory (issue 3: <= 0.5 MiB per idle sandbox): crun's idle busybox
  `sleep` sandboxes (bench/density.py's round, the system tests' config)
  and, interleaved with them, as many bare processes that only pause()
  (floor.c built static): the second process every Quiver sandbox has (its
  supervisor) costs at least that.  MemAvailable drop, kernel share
  (Slab + KernelStack + PageTables) and AnonPages per sandbox / process.

    sudo /usr/bin/python3 bench/floor.py [--rounds 7] [-n 20000] [--only latency,memory]
                                         [--n-memory 500] [--memory-rounds 3]
"""

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from startup import wait_quiet  # noqa: E402
from density import KIB, can_drop_caches, drop_caches, meminfo, measure_round, mmm, sample  # noqa: E402
from burst import make_sleep_bundle, runtimes  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
LATENCY = [
    ("native", ["native"], "openat + close, no filter"),
    ("notify", ["notify"], "bare trapped call, supervisor in epoll, SYNC_WAKE_UP"),
    ("notify-nosync", ["notify", "--no-sync"], "the same without SYNC_WAKE_UP"),
    ("block", ["block"], "bare trapped call, supervisor blocking in RECV"),
    ("open", ["open"], "least mediated openat + close (readv, openat2, ADDFD|SEND)"),
    ("open-1cpu", ["open", "--same-cpu"], "the same, both on one CPU"),
]


def build(tmp):
    exe = os.path.join(tmp, "floor")
    subprocess.run(["cc", "-O2", "-static", "-Wall", "-Wextra", "-o", exe, os.path.join(HERE, "floor.c")],
                   check=True)
    return exe


def latency(exe, args):
    res = {name: [] for name, _, _ in LATENCY}
    for name, argv, _ in LATENCY:  # warm-up, unrecorded
        subprocess.run([exe] + argv + ["-n", str(max(args.n // 10, 10))], stdout=subprocess.DEVNULL, check=True)
    for rnd in range(args.rounds):
        wait_quiet(args.idle)
        for name, argv, _ in LATENCY:
            out = subprocess.run([exe] + argv + ["-n", str(args.n)], stdout=subprocess.PIPE, text=True,
                                 check=True).stdout
            res[name].append(float(out.split()[0]))
        print("latency round %d: %s" % (rnd, ", ".join("%s %.2f" % (k, v[-1]) for k, v in res.items())),
              file=sys.stderr, flush=True)
    print("# %s, latency floor, %d rounds of %d calls, us per call (per openat + close)"
          % (time.strftime("%Y-%m-%d %H:%M"), args.rounds, args.n))
    print("%-14s %-24s %s" % ("mode", "min / median / max", "what"))
    for name, _, what in LATENCY:
        print("%-14s %-24s %s" % (name, mmm(res[name]), what))
    best = min(statistics.median(res["open"]), statistics.median(res["open-1cpu"]))
    print("issue 4's goal for a mediated openat + close: <= 8 us; the least mediated open here: %.2f us (%s)"
          % (best, "below the goal" if best <= 8 else "above the goal before any of Quiver's work"))
    return res


def bare_round(exe, n, drop, settle):
    """MemAvailable drop, kernel share and AnonPages per bare process, KiB."""
    a0, k0 = sample(drop)
    anon0 = meminfo()["AnonPages"]
    procs = []
    try:
        for _ in range(n):
            procs.append(subprocess.Popen([exe, "idle"]))
        time.sleep(settle)
        a1, k1 = sample(drop)
        anon1 = meminfo()["AnonPages"]
    finally:
        for p in procs:
            p.send_signal(signal.SIGKILL)
        for p in procs:
            p.wait()
    return {"avail": (a0 - a1) / n, "kern": (k1 - k0) / n, "anon": (anon1 - anon0) / n}


def memory(exe, args, tmp):
    drop = can_drop_caches(True)
    bundle = os.path.join(tmp, "bundle")
    make_sleep_bundle(bundle)
    margs = argparse.Namespace(n=args.n_memory, idle=args.idle, concurrency=10, settle=3.0, only="crun",
                               qctl=None)
    rts = runtimes(margs, tmp)
    crun = {"avail": [], "kern": []}
    bare = {"avail": [], "kern": [], "anon": []}
    for rnd in range(args.memory_rounds):
        for name, prefix, root in rts:
            r = measure_round(name, prefix, root, rnd, "floor%d%d" % (os.getpid(), rnd), bundle, tmp, margs, drop)
            for k in crun:
                crun[k].append(r[k] * KIB)
        wait_quiet(args.idle)
        b = bare_round(exe, args.n_memory, drop, 3.0)
        print("bare      round %d: MemAvailable -%.1f KiB/process, kernel +%.1f, AnonPages +%.1f"
              % (rnd, b["avail"], b["kern"], b["anon"]), file=sys.stderr, flush=True)
        for k in bare:
            bare[k].append(b[k])
    drop_caches(drop)
    print("# %s, memory floor, N=%d, %d rounds interleaved, caches %s; KiB per sandbox / process"
          % (time.strftime("%Y-%m-%d %H:%M"), args.n_memory, args.memory_rounds,
             "dropped" if drop else "not dropped"))
    print("%-34s %-22s %-22s %s" % ("", "MemAvailable drop", "kernel (slab+stk+pt)", "AnonPages"))
    print("%-34s %-22s %-22s %s" % ("crun idle `sleep` sandbox", mmm(crun["avail"]), mmm(crun["kern"]), "-"))
    print("%-34s %-22s %-22s %s" % ("bare pause() process (static)", mmm(bare["avail"]), mmm(bare["kern"]),
                                    mmm(bare["anon"])))
    sums = [c + b for c, b in zip(crun["avail"], bare["avail"])]
    print("crun + one bare process, per round: %s KiB (MiB: %s); issue 3's goal: <= 0.5 MiB (512 KiB)"
          % (mmm(sums), mmm([s / KIB for s in sums])))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", default="latency,memory")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("-n", type=int, default=20000, help="calls per latency run")
    ap.add_argument("--n-memory", type=int, default=500)
    ap.add_argument("--memory-rounds", type=int, default=3)
    ap.add_argument("--idle", type=float, default=85.0)
    args = ap.parse_args()
    want = set(args.only.split(","))
    tmp = tempfile.mkdtemp(prefix="quiver-floor-")
    try:
        exe = build(tmp)
        if "latency" in want:
            latency(exe, args)
        if "memory" in want:
            if shutil.which("crun") is None:
                print("crun not found: memory floor skipped", file=sys.stderr)
            else:
                memory(exe, args, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
