#!/usr/bin/python3
"""Burst start: N concurrent `run -d` of a busybox `sleep 1000` bundle until
all N say running, for qctl, runc and crun.

One runtime at a time, rounds interleaved by runtime (qctl runc crun qctl
...), one unrecorded warm-up round each, each round after waiting for a
quiet machine.  The time of a round runs from the first fork to the moment
one `list -f json` shows all N ids running (every `run -d` has exited by
then).  After each round every sandbox is killed (SIGKILL) and deleted, and
the benchmark looks for leftovers: processes or cgroups that carry the
round's ids, entries left in the runtime's --root, mounts that mention the
bundle.  Failures of `run -d`/`kill`/`delete` are counted and the first
error lines printed.  Prints min/median/max per runtime and the median of
the per-round ratios; with --plot, a gnuplot PNG of per-command latency.

    sudo /usr/bin/python3 bench/burst.py [-n 200] [--rounds 3] [--qctl PATH] [--only qctl,runc] [--plot out.png]
"""

import argparse
import concurrent.futures
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from startup import CRUN_WRAPPER as CRUN, cpu_times, idle_share, wait_quiet, make_bundle, newest_qctl  # noqa: E402


def make_sleep_bundle(d, args=("/bin/sleep", "1000")):
    make_bundle(d)
    os.symlink("busybox", os.path.join(d, "rootfs", "bin", "sleep"))
    with open(os.path.join(d, "config.json")) as f:
        cfg = json.load(f)
    cfg["process"]["args"] = list(args)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f, indent=1)


def runtimes(args, tmp):
    want = set(args.only.split(",")) if args.only else {"qctl", "runc", "crun"}
    out = []
    qctl = args.qctl or newest_qctl()
    if "qctl" in want:
        if qctl:
            out.append(("qctl", [qctl], os.path.join(tmp, "root-qctl")))
        else:
            print("no qctl found; measuring the peers only", file=sys.stderr)
    if "runc" in want:
        out.append(("runc", ["runc"], os.path.join(tmp, "root-runc")))
    if "crun" in want:
        out.append(("crun", CRUN, os.path.join(tmp, "root-crun")))
    return out


def rt_cmd(prefix, root, *a):
    return prefix + ["--root", root] + list(a)


def list_states(prefix, root):
    r = subprocess.run(rt_cmd(prefix, root, "list", "-f", "json"), stdout=subprocess.PIPE,
                       stderr=subprocess.DEVNULL, text=True)
    try:
        return {c["id"]: c for c in (json.loads(r.stdout or "[]") or [])}
    except ValueError:
        return {}


def start_many(prefix, root, bundle, ids, errdir, concurrency=None):
    """Fork `run -d` for every id (all at once, or `concurrency` at a time);
    returns ({id: seconds}, {id: (rc, stderr tail)})."""
    lat, fails = {}, {}
    live = {}
    pending = list(ids)
    while pending or live:
        while pending and (concurrency is None or len(live) < concurrency):
            cid = pending.pop(0)
            ef = open(os.path.join(errdir, cid + ".err"), "w+")
            p = subprocess.Popen(rt_cmd(prefix, root, "run", "-d", "--bundle", bundle, cid),
                                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=ef)
            live[p.pid] = (cid, p, ef, time.perf_counter())
        pid, status = os.wait()
        if pid not in live:
            continue
        cid, p, ef, t0 = live.pop(pid)
        lat[cid] = time.perf_counter() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
        if p.returncode != 0:
            ef.seek(0)
            fails[cid] = (p.returncode, ef.read()[-300:].strip())
        ef.close()
    return lat, fails


def wait_running(prefix, root, ids, timeout):
    deadline = time.monotonic() + timeout
    while True:
        st = list_states(prefix, root)
        notrun = [i for i in ids if st.get(i, {}).get("status") != "running"]
        if not notrun or time.monotonic() > deadline:
            return st, notrun
        time.sleep(0.05)


class Probe(threading.Thread):
    """While a qctl burst runs, time `qctl state` of an unknown id (one vmmd
    round trip that touches no sandbox) back to back: how long vmmd's single
    loop makes a bystander wait."""

    def __init__(self, prefix, root):
        super().__init__(daemon=True)
        self.argv = rt_cmd(prefix, root, "state", "probe-no-such-id")
        self.stop = threading.Event()
        self.lat = []

    def run(self):
        while not self.stop.is_set():
            t0 = time.perf_counter()
            subprocess.run(self.argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            self.lat.append(time.perf_counter() - t0)
            time.sleep(0.02)


def par(fn, items, workers=16):
    with concurrent.futures.ThreadPoolExecutor(workers) as ex:
        return list(ex.map(fn, items))


def cleanup(prefix, root, ids):
    """kill -9 + delete every id, 16 at a time; returns the failures."""
    fails = []

    def kill(cid):
        r = subprocess.run(rt_cmd(prefix, root, "kill", cid, "KILL"), stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True)
        if r.returncode != 0:
            fails.append(("kill", cid, r.stderr.strip()[-200:]))

    def delete(cid):
        for _ in range(50):  # up to ~5 s for the sandbox to reach stopped
            r = subprocess.run(rt_cmd(prefix, root, "delete", cid), stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
            if r.returncode == 0:
                return
            time.sleep(0.1)
        fails.append(("delete", cid, r.stderr.strip()[-200:]))
        subprocess.run(rt_cmd(prefix, root, "delete", "--force", cid), stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)

    known = set(list_states(prefix, root))
    par(kill, [i for i in ids if i in known])
    par(delete, [i for i in ids if i in known])
    # anything else the runtime still lists
    for cid in list_states(prefix, root):
        subprocess.run(rt_cmd(prefix, root, "delete", "--force", cid), stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        fails.append(("left-listed", cid, ""))
    return fails


def teardown(rts, qctl, tmp):
    """Force-delete whatever each runtime still lists; stop qctl's vmmd."""
    for name, prefix, root in rts:
        for cid in list_states(prefix, root):
            subprocess.run(rt_cmd(prefix, root, "delete", "--force", cid),
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if qctl:
        subprocess.run([qctl, "--root", os.path.join(tmp, "root-qctl"), "daemons", "stop"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def cgroup_dirs_with(tag, maxdepth=5):
    hits = []
    base = "/sys/fs/cgroup"
    for top, dirs, _ in os.walk(base):
        depth = top[len(base):].count("/")
        for d in dirs:
            if tag in d:
                hits.append(os.path.join(top, d))
        if depth >= maxdepth:
            dirs[:] = []
        else:
            dirs[:] = [d for d in dirs if tag not in d]
    return hits


def procs_with(tag):
    hits = []
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open("/proc/%s/cgroup" % p) as f:
                cg = f.read()
            with open("/proc/%s/cmdline" % p, "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if tag in cg or tag in cmd:
            hits.append((int(p), cmd.strip()[:120]))
    return hits


def mounts_with(s):
    """Mounts below s (a tmpfs mounted on s itself, api.py --tmpfs, is not one)."""
    with open("/proc/self/mountinfo") as f:
        return [line for line in f if s in line and line.split()[4] != s]


def leftovers(tag, root, tmp):
    out = {}
    p = procs_with(tag)
    if p:
        out["processes"] = p
    c = cgroup_dirs_with(tag)
    if c:
        out["cgroups"] = c
    m = mounts_with(tmp)
    if m:
        out["mounts"] = m
    if os.path.isdir(root):
        ents = [e for e in os.listdir(root) if tag in e]
        if ents:
            out["root entries"] = ents
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--qctl", default=None, help="qctl binary (default: newest build*/bin/qctl)")
    ap.add_argument("--only", default=None, help="comma-separated subset of qctl,runc,crun")
    ap.add_argument("--plot", default=None, help="write a PNG with gnuplot, if installed")
    ap.add_argument("--idle", type=float, default=85.0)
    ap.add_argument("--timeout", type=float, default=120.0, help="per round, for all to be running")
    ap.add_argument("--no-warmup", action="store_true")
    ap.add_argument("--probe", action="store_true",
                    help="time a bystander `qctl state` during qctl bursts (adds a little load)")
    args = ap.parse_args()

    tmp = tempfile.mkdtemp(prefix="quiver-burst-")
    bundle = os.path.join(tmp, "bundle")
    make_sleep_bundle(bundle)
    errdir = os.path.join(tmp, "err")
    os.makedirs(errdir)
    rts = runtimes(args, tmp)
    res = {name: {"t": [], "lat": [], "fail": 0, "notrun": 0, "cleanfail": 0, "leaks": 0}
           for name, _, _ in rts}
    idles = []
    problems = []
    qctl = next((p[0] for n, p, _ in rts if n == "qctl"), None)
    try:
        plan = [("warm", r) for r in range(0 if args.no_warmup else 1)] + \
               [("rec", r) for r in range(args.rounds)]
        for kind, rnd in plan:
            for name, prefix, root in rts:
                tag = "burst%d%s%s%d" % (os.getpid(), name, kind[0], rnd)
                ids = ["%s-%03d" % (tag, i) for i in range(args.n)]
                idle_before = wait_quiet(args.idle)
                c0 = cpu_times()
                probe = Probe(prefix, root) if name == "qctl" and args.probe else None
                t0 = time.perf_counter()
                if probe:
                    probe.start()
                lat, fails = start_many(prefix, root, bundle, ids, errdir)
                st, notrun = wait_running(prefix, root, [i for i in ids if i not in fails], args.timeout)
                dt = time.perf_counter() - t0
                if probe:
                    probe.stop.set()
                    probe.join()
                    if probe.lat:
                        pl = sorted(probe.lat)
                        res[name].setdefault("probe", []).extend(pl)
                        print("   vmmd probe (`qctl state` of an unknown id during the burst): %d calls, "
                              "p50 %.0f ms, max %.0f ms" % (len(pl), pl[len(pl) // 2] * 1000, pl[-1] * 1000),
                              file=sys.stderr)
                idle = idle_share(c0, cpu_times())
                cf = cleanup(prefix, root, ids)
                for _ in range(50):  # pid 1 reaps the orphaned inits a little later
                    lo = leftovers(tag, root, tmp)
                    if not lo:
                        break
                    time.sleep(0.1)
                line = "%-5s %s%d: %d started in %.2f s (idle before %.0f%%, during %.0f%%), %d run failures, " \
                       "%d not running, %d cleanup failures%s" % (
                           name, kind, rnd, args.n - len(fails) - len(notrun), dt, idle_before, idle,
                           len(fails), len(notrun), len(cf), ", LEFTOVERS: %s" % {k: len(v) for k, v in lo.items()}
                           if lo else "")
                print(line, file=sys.stderr, flush=True)
                for cid, (rc, err) in list(fails.items())[:3]:
                    print("   run -d %s rc=%d: %s" % (cid, rc, err.replace("\n", " | ")), file=sys.stderr)
                for what in cf[:3]:
                    print("   cleanup: %s" % (what,), file=sys.stderr)
                for k, v in lo.items():
                    for x in v[:3]:
                        print("   leftover %s: %s" % (k, x), file=sys.stderr)
                if fails or notrun or cf or lo:
                    problems.append((name, kind, rnd, len(fails), len(notrun), len(cf), {k: len(v) for k, v in lo.items()}))
                if kind == "rec":
                    r = res[name]
                    r["t"].append(dt)
                    r["lat"].extend(lat.values())
                    r["fail"] += len(fails)
                    r["notrun"] += len(notrun)
                    r["cleanfail"] += len(cf)
                    r["leaks"] += sum(len(v) for v in lo.values())
                    idles.append(idle)
    finally:
        teardown(rts, qctl, tmp)
        if qctl:
            vlog = os.path.join(tmp, "root-qctl", "vmmd.log")
            if os.path.exists(vlog):
                with open(vlog, errors="replace") as f:
                    errs = [line.rstrip() for line in f if "error" in line.lower() or "warn" in line.lower()]
                if errs:
                    print("vmmd.log: %d error/warning lines, e.g.:" % len(errs), file=sys.stderr)
                    for e in errs[:5]:
                        print("   " + e[:200], file=sys.stderr)
        shutil.rmtree(tmp, ignore_errors=True)

    print("# %s, N=%d concurrent `run -d` (busybox sleep 1000) until all running, %d rounds interleaved "
          "by runtime, idle during rounds %.0f-%.0f%%"
          % (time.strftime("%Y-%m-%d %H:%M"), args.n, args.rounds, min(idles), max(idles)))
    print("%-6s %8s %8s %8s   %9s %9s %9s   %s" % ("", "min s", "median", "max", "cmd p50", "cmd p95",
                                                 "cmd max", "failures run/not-running/cleanup/leftovers"))
    for name, _, _ in rts:
        r = res[name]
        lat = sorted(r["lat"]) or [0]
        print("%-6s %8.2f %8.2f %8.2f   %9.2f %9.2f %9.2f   %d/%d/%d/%d" % (
            name, min(r["t"]), statistics.median(r["t"]), max(r["t"]),
            lat[len(lat) // 2], lat[int(len(lat) * 0.95)], lat[-1],
            r["fail"], r["notrun"], r["cleanfail"], r["leaks"]))
    for a, b in (("qctl", "crun"), ("qctl", "runc"), ("runc", "crun")):
        if a in res and b in res:
            ratios = [x / y for x, y in zip(res[a]["t"], res[b]["t"])]
            print("median per-round ratio %s/%s: %.2f" % (a, b, statistics.median(ratios)))
    if res.get("qctl", {}).get("probe"):
        pl = sorted(res["qctl"]["probe"])
        print("vmmd probe during qctl bursts: %d `qctl state` calls, p50 %.0f ms, p95 %.0f ms, max %.0f ms"
              % (len(pl), pl[len(pl) // 2] * 1000, pl[int(len(pl) * 0.95)] * 1000, pl[-1] * 1000))
    if problems:
        print("problems (runtime, round, run failures, not running, cleanup failures, leftovers):")
        for p in problems:
            print("  ", p)

    if args.plot and shutil.which("gnuplot"):
        with tempfile.NamedTemporaryFile("w", suffix=".dat", delete=False) as f:
            for i, (name, _, _) in enumerate(rts):
                for j, v in enumerate(sorted(res[name]["lat"])):
                    f.write("%d %f\n" % (j, v))
                f.write("\n\n")
            dat = f.name
        plots = ", ".join("'%s' index %d using 1:2 with lines title '%s'" % (dat, i, n)
                          for i, (n, _, _) in enumerate(rts))
        subprocess.run(["gnuplot", "-e", "set terminal png size 800,450; set output '%s'; set xlabel "
                        "'command (sorted)'; set ylabel 's per run -d'; plot %s" % (args.plot, plots)])
        os.unlink(dat)


if __name__ == "__main__":
    main()
