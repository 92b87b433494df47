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
of the workload; for Quiver also vmmd's PSS; the number of host processes
and threads each sandbox adds.  Then every sandbox is killed and deleted,
and MemAvailable is sampled once more (what did not come back: leak or
drift from other users of the machine).  qctl's vmmd is started before the
first baseline, so its start-up is not charged to the sandboxes; its growth
is.

    sudo /usr/bin/python3 bench/density.py [-n 200] [--rounds 3] [--qctl PATH] [--only qctl,runc] [--concurrency 10]
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
    args = ap.parse_args()

    drop = not args.no_drop_caches
    if drop:
        try:
            drop_caches(True)
        except OSError as e:
            print("cannot drop caches (%s); measuring after sync only" % e, file=sys.stderr)
            drop = False

    tmp = tempfile.mkdtemp(prefix="quiver-density-")
    bundle = os.path.join(tmp, "bundle")
    make_sleep_bundle(bundle)
    errdir = os.path.join(tmp, "err")
    os.makedirs(errdir)
    rts = runtimes(args, tmp)
    keys = ("avail", "kern", "init_pss", "wl_pss", "vmmd_pss", "procs", "threads", "notback")
    res = {name: {k: [] for k in keys} for name, _, _ in rts}
    extra = {}
    qctl = next((p[0] for n, p, _ in rts if n == "qctl"), None)
    idles = []
    try:
        if qctl:
            subprocess.run([qctl, "--root", os.path.join(tmp, "root-qctl"), "daemons", "start"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for rnd in range(args.rounds):
            for name, prefix, root in rts:
                tag = "dens%d%s%d" % (os.getpid(), name, rnd)
                ids = ["%s-%03d" % (tag, i) for i in range(args.n)]
                wait_quiet(args.idle)
                c0 = cpu_times()
                vpid = vmmd_pid(root) if name == "qctl" else None
                v0 = pss_kb(vpid) if vpid else 0
                a0, k0 = sample(drop)
                p0, t0 = counts()
                lat, fails = start_many(prefix, root, bundle, ids, errdir, args.concurrency)
                st, notrun = wait_running(prefix, root, [i for i in ids if i not in fails], 120)
                ok = args.n - len(fails) - len(notrun)
                time.sleep(args.settle)
                a1, k1 = sample(drop)
                p1, t1 = counts()
                inits = [st[i]["pid"] for i in ids if i in st and st[i].get("pid")]
                init_pss = sum(pss_kb(p) for p in inits)
                wl_pss = sum(pss_kb(c) for p in inits for c in children(p))
                if name in ("runc", "crun"):  # the init is the workload
                    wl_pss, init_pss = init_pss, 0
                v1 = pss_kb(vpid) if vpid else 0
                if vpid:
                    extra.setdefault("vmmd", []).append(
                        "round %d: vmmd pid %d: PSS %.1f -> %.1f MiB, %d fds, %d threads with %d sandboxes"
                        % (rnd, vpid, v0 / KIB, v1 / KIB, fd_count(vpid), thread_count(vpid), ok))
                if inits and name == "qctl":
                    extra.setdefault("supervisor", []).append(
                        "round %d: supervisor fds %d, threads %d (first sandbox)"
                        % (rnd, fd_count(inits[0]), thread_count(inits[0])))
                idle = idle_share(c0, cpu_times())
                idles.append(idle)
                cf = cleanup(prefix, root, ids)
                for _ in range(50):
                    lo = leftovers(tag, root, tmp)
                    if not lo:
                        break
                    time.sleep(0.1)
                time.sleep(1)
                a2, _ = sample(drop)
                n = max(ok, 1)
                r = res[name]
                r["avail"].append((a0 - a1) / n / KIB)
                r["kern"].append((k1 - k0) / n / KIB)
                r["init_pss"].append(init_pss / n / KIB)
                r["wl_pss"].append(wl_pss / n / KIB)
                r["vmmd_pss"].append(v1 / n / KIB)
                r["procs"].append((p1 - p0) / n)
                r["threads"].append((t1 - t0) / n)
                r["notback"].append((a0 - a2) / KIB)
                print("%-5s round %d: %d running; MemAvailable -%.2f MiB/sandbox, kernel +%.2f, init PSS %.2f, "
                      "workload PSS %.2f, vmmd PSS %.1f MiB total; +%.2f procs +%.2f threads per sandbox; "
                      "%.1f MiB not back after cleanup; idle %.0f%%; %d run failures, %d cleanup failures%s"
                      % (name, rnd, ok, r["avail"][-1], r["kern"][-1], r["init_pss"][-1], r["wl_pss"][-1],
                         v1 / KIB, r["procs"][-1], r["threads"][-1], r["notback"][-1], idle, len(fails),
                         len(cf), ", LEFTOVERS %s" % {k: len(v) for k, v in lo.items()} if lo else ""),
                      file=sys.stderr, flush=True)
                for cid, (rc, err) in list(fails.items())[:3]:
                    print("   run -d %s rc=%d: %s" % (cid, rc, err.replace("\n", " | ")), file=sys.stderr)
                for what in cf[:3]:
                    print("   cleanup: %s" % (what,), file=sys.stderr)
    finally:
        teardown(rts, qctl, tmp)
        shutil.rmtree(tmp, ignore_errors=True)

    def mmm(v):
        return "%.2f / %.2f / %.2f" % (min(v), statistics.median(v), max(v))

    print("# %s, N=%d idle busybox `sleep 1000` sandboxes, %d rounds interleaved by runtime, caches %s, "
          "idle during rounds %.0f-%.0f%%" % (time.strftime("%Y-%m-%d %H:%M"), args.n, args.rounds,
                                             "dropped" if drop else "not dropped (sync only)",
                                             min(idles), max(idles)))
    print("MiB per sandbox, min / median / max over rounds")
    print("%-5s %-20s %-20s %-20s %-20s %-11s %-11s %s" % ("", "MemAvailable drop", "kernel (slab+stk+pt)",
                                                          "init/supervisor PSS", "workload PSS",
                                                          "host procs", "threads", "MiB not back (total)"))
    for name, _, _ in rts:
        r = res[name]
        print("%-5s %-20s %-20s %-20s %-20s %-11.2f %-11.2f %s" % (
            name, mmm(r["avail"]), mmm(r["kern"]), mmm(r["init_pss"]), mmm(r["wl_pss"]),
            statistics.median(r["procs"]), statistics.median(r["threads"]), mmm(r["notback"])))
    if "qctl" in res:
        print("qctl: vmmd PSS per sandbox %s MiB (total / N)" % mmm(res["qctl"]["vmmd_pss"]))
    for a, b in (("qctl", "crun"), ("qctl", "runc")):
        if a in res and b in res:
            ratios = [x / y if y > 0 else float("nan") for x, y in zip(res[a]["avail"], res[b]["avail"])]
            print("median per-round MemAvailable ratio %s/%s: %.2f" % (a, b, statistics.median(ratios)))
    for v in extra.values():
        for line in v:
            print(line)


if __name__ == "__main__":
    main()
