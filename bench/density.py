#!/usr/bin/python3
"""Density: memory and host processes per idle busybox `sleep 1000` sandbox,
for qctl, runc and crun.

Per round and runtime (rounds interleaved by runtime): wait for a quiet
machine, `sync` + drop the page cache (`echo 3 > /proc/sys/vm/drop_caches`,
when writable; --no-drop-caches to skip), sample /proc/meminfo, start N
sandboxes (`run -d`, --concurrency at a time) and wait until all say
running, let them settle, sync + drop caches again, sample again.  Per
sandbox: the drop of MemAvailable, and of Slab+KernelStack+PageTables (the
kernel's share: namespaces, mounts, cgroups, stacks); PSS
(/proc/PID/smaps_rollup) of the sandbox's init (Quiver: the supervisor) and
of the workload (every descendant of the init); for Quiver also vmmd's PSS;
the number of host processes and threads each sandbox adds.  Then every
sandbox is killed and deleted, and MemAvailable is sampled once more (what
did not come back: leak or drift from other users of the machine).  qctl's
vmmd is started before the first baseline, so its start-up is not charged
to the sandboxes; its growth is.

With --pool, qctl is measured twice per round: "qctl-warm" with poold's
warm pool (warm low = high = N + --pool-spare, so every `run -d` can take a
warm supervisor; poold is started before the round and stopped after it),
and "qctl" cold (no poold).  The pool is full before the baseline and
refilled to the same level before the second and third readings, so its
own memory cancels out; the warm hits are counted from `qctl pool status`.

    sudo /usr/bin/python3 bench/density.py [-n 200] [--rounds 3] [--qctl PATH] [--only qctl,runc]
                                           [--concurrency 10] [--pool] [--pool-spare 16]
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from startup import cpu_times, idle_share, wait_quiet  # noqa: E402
from burst import (make_sleep_bundle, runtimes, start_many, teardown,  # noqa: E402
                   wait_running, cleanup, leftovers)

KIB = 1024.0
KEYS = ("avail", "kern", "init_pss", "wl_pss", "vmmd_pss", "procs", "threads", "notback")


def meminfo():
    out = {}
    with open("/proc/meminfo") as f:
        for line in f:
            k, v = line.split(":", 1)
            out[k] = int(v.split()[0])  # kB
    return out


def drop_caches(enabled):
    os.sync()
    if enabled:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")


def can_drop_caches(want):
    if not want:
        return False
    try:
        drop_caches(True)
        return True
    except OSError as e:
        print("cannot drop caches (%s); measuring after sync only" % e, file=sys.stderr)
        return False


def sample(drop, n=5, gap=0.2):
    """median of n samples of (MemAvailable, kernel share) in kB"""
    drop_caches(drop)
    time.sleep(0.5)
    av, kern = [], []
    for _ in range(n):
        m = meminfo()
        av.append(m["MemAvailable"])
        kern.append(m["Slab"] + m["KernelStack"] + m["PageTables"])
        time.sleep(gap)
    return statistics.median(av), statistics.median(kern)


def counts():
    nproc = sum(1 for p in os.listdir("/proc") if p.isdigit())
    with open("/proc/loadavg") as f:
        nthr = int(f.read().split()[3].split("/")[1])
    return nproc, nthr


def pss_kb(pid):
    try:
        with open("/proc/%d/smaps_rollup" % pid) as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def children(pid):
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def descendants(pid):
    out, todo = [], children(pid)
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children(p))
    return out


def fd_count(pid):
    try:
        return len(os.listdir("/proc/%d/fd" % pid))
    except OSError:
        return -1


def thread_count(pid):
    try:
        return len(os.listdir("/proc/%d/task" % pid))
    except OSError:
        return -1


def vmmd_pid(root):
    try:
        with open(os.path.join(root, "vmmd.pid")) as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def split_pss(name, inits):
    """(init PSS, workload PSS) in kB summed over the sandboxes: runc's and
    crun's init is the workload; Quiver's is the supervisor."""
    init_pss = sum(pss_kb(p) for p in inits)
    wl_pss = sum(pss_kb(c) for p in inits for c in descendants(p))
    if not name.startswith("qctl"):
        return 0, init_pss + wl_pss
    return init_pss, wl_pss


def warm_hits(pool):
    st = pool.pool_status() if pool else None
    return st["warm"]["hits"] if st else 0


def measure_round(name, prefix, root, rnd, tag, bundle, tmp, args, drop, pool=None):
    """One runtime's round; returns per-sandbox figures (MiB, counts) and notes.
    pool: the Quiver whose warm pool is topped up before every reading."""
    errdir = os.path.join(tmp, "err")
    os.makedirs(errdir, exist_ok=True)
    ids = ["%s-%03d" % (tag, i) for i in range(args.n)]
    if pool:
        pool.wait_full()
    wait_quiet(args.idle)
    c0 = cpu_times()
    vpid = vmmd_pid(root) if name.startswith("qctl") else None
    v0 = pss_kb(vpid) if vpid else 0
    h0 = warm_hits(pool)
    a0, k0 = sample(drop)
    p0, t0 = counts()
    _, fails = start_many(prefix, root, bundle, ids, errdir, args.concurrency)
    st, notrun = wait_running(prefix, root, [i for i in ids if i not in fails], 120)
    ok = args.n - len(fails) - len(notrun)
    time.sleep(args.settle)
    if pool:  # the takes are refilled: the pool weighs what it did at the baseline
        pool.wait_full()
    a1, k1 = sample(drop)
    p1, t1 = counts()
    inits = [st[i]["pid"] for i in ids if i in st and st[i].get("pid")]
    init_pss, wl_pss = split_pss(name, inits)
    v1 = pss_kb(vpid) if vpid else 0
    notes = []
    if vpid:
        notes.append("%s round %d: vmmd pid %d: PSS %.1f -> %.1f MiB, %d fds, %d threads with %d sandboxes"
                     % (name, rnd, vpid, v0 / KIB, v1 / KIB, fd_count(vpid), thread_count(vpid), ok))
    if inits and name.startswith("qctl"):
        notes.append("%s round %d: supervisor fds %d, threads %d (first sandbox)"
                     % (name, rnd, fd_count(inits[0]), thread_count(inits[0])))
    idle = idle_share(c0, cpu_times())
    hits = warm_hits(pool) - h0
    cf = cleanup(prefix, root, ids)
    for _ in range(50):
        lo = leftovers(tag, root, tmp)
        if not lo:
            break
        time.sleep(0.1)
    time.sleep(1)
    if pool:
        pool.wait_full()
    a2, _ = sample(drop)
    n = max(ok, 1)
    r = {"avail": (a0 - a1) / n / KIB, "kern": (k1 - k0) / n / KIB, "init_pss": init_pss / n / KIB,
         "wl_pss": wl_pss / n / KIB, "vmmd_pss": v1 / n / KIB, "procs": (p1 - p0) / n,
         "threads": (t1 - t0) / n, "notback": (a0 - a2) / KIB, "ok": ok, "idle": idle,
         "hits": hits if pool else None, "fails": fails, "cleanup": cf, "leftovers": lo, "notes": notes}
    print("%-9s round %d: %d running%s; MemAvailable -%.2f MiB/sandbox, kernel +%.2f, init PSS %.2f, "
          "workload PSS %.2f, vmmd PSS %.1f MiB total; +%.2f procs +%.2f threads per sandbox; "
          "%.1f MiB not back after cleanup; idle %.0f%%; %d run failures, %d cleanup failures%s"
          % (name, rnd, ok, "" if not pool else " (%d warm)" % hits, r["avail"], r["kern"], r["init_pss"],
             r["wl_pss"], v1 / KIB, r["procs"], r["threads"], r["notback"], idle, len(fails), len(cf),
             ", LEFTOVERS %s" % {k: len(v) for k, v in lo.items()} if lo else ""),
          file=sys.stderr, flush=True)
    for cid, (rc, err) in list(fails.items())[:3]:
        print("   run -d %s rc=%d: %s" % (cid, rc, err.replace("\n", " | ")), file=sys.stderr)
    for what in cf[:3]:
        print("   cleanup: %s" % (what,), file=sys.stderr)
    return r


def make_pool(qctl, tmp):
    """A Quiver (bench/api.py) for qctl's vmmd and poold, next to qctl."""
    from api import Quiver
    return Quiver(os.path.dirname(os.path.abspath(qctl)), None, os.path.join(tmp, "pool"))


def run_rounds(args, rts, tmp, bundle, drop, pool=None, tag_base="dens"):
    """Every round of every runtime, interleaved; returns ({name: {key: [per round]}}, notes, idles).
    With pool, "qctl-warm" rounds run with poold's warm pool of args.pool_high."""
    res = {name: {k: [] for k in KEYS + ("ok", "hits")} for name, _, _ in rts}
    notes, idles = [], []
    for rnd in range(args.rounds):
        for name, prefix, root in rts:
            warm = pool if name == "qctl-warm" else None
            if warm:
                warm.start_poold(args.pool_high)
            try:
                tag = "%s%d%s%d" % (tag_base, os.getpid(), name.replace("-", ""), rnd)
                r = measure_round(name, prefix, root, rnd, tag, bundle, tmp, args, drop, warm)
            finally:
                if warm:
                    warm.stop_poold()
            for k in KEYS + ("ok", "hits"):
                res[name][k].append(r[k])
            notes.extend(r["notes"])
            idles.append(r["idle"])
    return res, notes, idles


def mmm(v):
    return "%.2f / %.2f / %.2f" % (min(v), statistics.median(v), max(v))


def print_table(args, rts, res, notes, idles, drop, what="idle busybox `sleep 1000` sandboxes"):
    print("# %s, N=%d %s, %d rounds interleaved by runtime, caches %s, idle during rounds %.0f-%.0f%%"
          % (time.strftime("%Y-%m-%d %H:%M"), args.n, what, args.rounds,
             "dropped" if drop else "not dropped (sync only)", min(idles), max(idles)))
    print("MiB per sandbox, min / median / max over rounds")
    print("%-9s %-20s %-20s %-20s %-20s %-11s %-11s %s" % ("", "MemAvailable drop", "kernel (slab+stk+pt)",
                                                          "init/supervisor PSS", "workload PSS",
                                                          "host procs", "threads", "MiB not back (total)"))
    for name, _, _ in rts:
        r = res[name]
        print("%-9s %-20s %-20s %-20s %-20s %-11.2f %-11.2f %s" % (
            name, mmm(r["avail"]), mmm(r["kern"]), mmm(r["init_pss"]), mmm(r["wl_pss"]),
            statistics.median(r["procs"]), statistics.median(r["threads"]), mmm(r["notback"])))
    for name in ("qctl-warm", "qctl"):
        if name in res:
            print("%s: vmmd PSS per sandbox %s MiB (total / N)" % (name, mmm(res[name]["vmmd_pss"])))
    if "qctl-warm" in res:
        print("qctl-warm: warm starts per round %s of %s running (warm pool of %d)"
              % ("/".join(str(h) for h in res["qctl-warm"]["hits"]),
                 "/".join(str(n) for n in res["qctl-warm"]["ok"]), args.pool_high))
    for a in ("qctl-warm", "qctl"):
        for b in ("crun", "runc"):
            if a in res and b in res:
                ratios = [x / y if y > 0 else float("nan") for x, y in zip(res[a]["avail"], res[b]["avail"])]
                print("median per-round MemAvailable ratio %s/%s: %.2f" % (a, b, statistics.median(ratios)))
    for line in notes:
        print(line)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--qctl", default=None)
    ap.add_argument("--only", default=None)
    ap.add_argument("--concurrency", type=int, default=10)
    ap.add_argument("--idle", type=float, default=85.0)
    ap.add_argument("--settle", type=float, default=3.0)
    ap.add_argument("--no-drop-caches", action="store_true")
    ap.add_argument("--pool", action="store_true", help="also measure qctl with poold's warm pool")
    ap.add_argument("--pool-spare", type=int, default=16, help="warm pool size beyond N (with --pool)")
    args = ap.parse_args()
    args.pool_high = args.n + args.pool_spare

    drop = can_drop_caches(not args.no_drop_caches)
    tmp = tempfile.mkdtemp(prefix="quiver-density-")
    bundle = os.path.join(tmp, "bundle")
    make_sleep_bundle(bundle)
    rts = runtimes(args, tmp)
    qctl = next((p[0] for n, p, _ in rts if n == "qctl"), None)
    pool = make_pool(qctl, tmp) if args.pool and qctl else None
    if pool:  # both qctl runtimes use the pool's root; the warm one goes first
        rts = [("qctl-warm", [qctl], pool.root), ("qctl", [qctl], pool.root)] + \
              [rt for rt in rts if rt[0] != "qctl"]
    try:
        if qctl:
            root = pool.root if pool else os.path.join(tmp, "root-qctl")
            subprocess.run([qctl, "--root", root, "daemons", "start"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        res, notes, idles = run_rounds(args, rts, tmp, bundle, drop, pool)
    finally:
        if pool:
            pool.stop_all()
        teardown([rt for rt in rts if not rt[0].startswith("qctl")] if pool else rts, qctl, tmp)
        shutil.rmtree(tmp, ignore_errors=True)
    print_table(args, rts, res, notes, idles, drop)


if __name__ == "__main__":
    main()
