#!/usr/bin/python3
"""vmmd's API `create` under load (bench/loadgen.c), with runc and crun in
the same run.

1. "API create -> workload exited": loadgen latency, N sequential creates
   {start: true} of busybox /bin/true, each timed from sending create to
   receiving its "exited" event; with poold's warm pool (warm high >= 60,
   full before each round) and with poold stopped (the cold API path).  In
   the same rounds, runc and crun `run` of the same bundle (startup.py's
   runners; crun through its unshare wrapper, which is also timed alone).
2. "200 concurrent sleep sandboxes until all running": loadgen burst (200
   creates of `sleep 1000`, timed until the last "started" event) with the
   warm pool full (warm high >= 220), 200 concurrent `qctl run -d` with the
   warm pool (burst.py's runner), and 200 concurrent runc / crun `run -d`
   (burst.py), interleaved by runtime over --rounds.

Each round starts on a quiet machine (>= 85% idle over 3 s, /proc/stat).
After each round every sandbox is deleted and leftovers (processes, cgroups,
mounts, state entries) are looked for; at the end poold and vmmd are
stopped and the same search runs over the whole temp dir.  Prints a table
of medians, the goals, and the median per-round ratios.

    sudo /usr/bin/python3 bench/api.py [--rounds 3] [--bin build/bin] [--only latency,burst]
                                       [--n-latency 50] [--n-burst 200] [--json-out F] [--tmpfs]

--tmpfs puts every runtime's state root (Quiver's, runc's, crun's) and the
bundles on a tmpfs mounted for the run, as /run is on a systemd host; by
default they are under /tmp, whatever filesystem that is (the header says).

Build first: make build/bin/qctl build/bin/quiver-vmmd build/bin/quiver-guest
build/bin/quiver-poold build/bench/loadgen (or with BUILD=...; --bin DIR).
"""

import argparse
import glob
import json
import os
import shlex
import signal
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from startup import (CRUN_WRAPPER, Runner, bench_tmpdir, cpu_times, idle_share, make_bundle,  # noqa: E402
                     remove_bench_tmpdir, wait_quiet)
import burst  # noqa: E402

GOAL_LATENCY_MS = 3.0
GOAL_BURST_S = 1.0
DAEMONS = ("qctl", "quiver-vmmd", "quiver-guest", "quiver-poold")


class BenchError(Exception):
    pass


def find_bins(arg):
    """The bin dir (qctl, vmmd, guest, poold) and its ../bench/loadgen."""
    def complete(d):
        return all(os.access(os.path.join(d, b), os.X_OK) for b in DAEMONS) and \
            os.access(os.path.join(d, "..", "bench", "loadgen"), os.X_OK)
    if arg:
        d = os.path.abspath(arg)
        if not complete(d):
            raise SystemExit("%s: needs %s and ../bench/loadgen" % (d, ", ".join(DAEMONS)))
    else:
        cands = [os.path.dirname(p) for p in glob.glob(os.path.join(HERE, "..", "build*", "bin", "qctl"))]
        cands = [os.path.abspath(c) for c in cands if complete(c)]
        if not cands:
            raise SystemExit("no build*/bin with %s and build*/bench/loadgen; see the docstring"
                             % ", ".join(DAEMONS))
        d = max(cands, key=lambda c: os.path.getmtime(os.path.join(c, "..", "bench", "loadgen")))
    return d, os.path.normpath(os.path.join(d, "..", "bench", "loadgen"))


def fnv1a32(s):
    h = 2166136261
    for c in s.encode():
        h = ((h ^ c) * 16777619) & 0xFFFFFFFF
    return h


class Quiver:
    """vmmd and poold at one ROOT, driven through qctl, loadgen and poold's pid file."""

    def __init__(self, bindir, loadgen, tmp):
        self.bindir = bindir
        self.qctl_bin = os.path.join(bindir, "qctl")
        self.loadgen_bin = loadgen
        self.tmp = tmp
        self.root = os.path.join(tmp, "root")
        os.makedirs(self.root)
        self.pool_cfg = os.path.join(tmp, "poold.json")
        self.warm_high = 0
        # poold names its pooled cgroups "@pool-<FNV-1a of ROOT>-…" (services/poold/main.c)
        self.pool_tag = "@pool-%08x-" % fnv1a32(self.root)

    def qctl(self, *a, timeout=60):
        return subprocess.run([self.qctl_bin, "--root", self.root] + list(a), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, timeout=timeout)

    def start_vmmd(self):
        r = self.qctl("daemons", "start")
        if r.returncode != 0:
            raise BenchError("qctl daemons start: " + r.stderr.strip())

    def pool_status(self):
        r = self.qctl("pool", "status", "--json", timeout=10)
        if r.returncode != 0:
            return None
        return {p["kind"]: p for p in json.loads(r.stdout)["pools"]}

    def poold_pid(self):
        try:
            with open(os.path.join(self.root, "poold.pid")) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            return None

    def start_poold(self, warm_high):
        # low == high: poold tops the pool up after every take (it refills
        # only once "ready" drops below low), so "full" means ready == high
        cfg = {"refill_per_second": 200,
               "pools": {"warm": {"low": warm_high, "high": warm_high},
                         "cgroup": {"low": 8, "high": 32},
                         "netns": {"low": 0, "high": 0},
                         "layer": {"low": 0, "high": 0}}}
        with open(self.pool_cfg, "w") as f:
            json.dump(cfg, f)
        r = subprocess.run([os.path.join(self.bindir, "quiver-poold"), "--root", self.root,
                            "--config", self.pool_cfg], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, timeout=60)
        if r.returncode != 0:
            raise BenchError("quiver-poold: " + r.stderr.strip())
        self.warm_high = warm_high
        return self.wait_full()

    def wait_full(self, timeout=120.0):
        """Until the warm pool holds warm_high ready supervisors; returns the seconds waited."""
        t0 = time.monotonic()
        last = None
        while time.monotonic() - t0 < timeout:
            st = self.pool_status()
            last = st and st.get("warm")
            if last and last["ready"] >= self.warm_high:
                return time.monotonic() - t0
            time.sleep(0.1)
        raise BenchError("warm pool not full after %.0f s: %s (see %s/poold/warm.log)"
                         % (timeout, last, self.root))

    def stop_poold(self):
        pid = self.poold_pid()
        if not pid:
            return
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 60
        while os.path.exists("/proc/%d" % pid) or os.path.exists(os.path.join(self.root, "poold.pid")):
            if time.monotonic() > deadline:
                raise BenchError("poold (pid %d) still running 60 s after SIGTERM" % pid)
            time.sleep(0.05)
        self.warm_high = 0

    def delete_all(self):
        r = self.qctl("list", "-q")
        for cid in r.stdout.split():
            self.qctl("delete", "--force", cid)
        return r.stdout.split()

    def stop_all(self):
        left = []
        if os.path.exists(os.path.join(self.root, "vmmd.sock")):
            left = self.delete_all()
            self.qctl("daemons", "stop")
        self.stop_poold()
        return left

    def loadgen(self, mode, bundle, n, prefix):
        argv = [self.loadgen_bin, mode, "--root", self.root, "--bundle", bundle, "-n", str(n),
                "--id-prefix", prefix, "--json"]
        try:
            r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=300)
        except subprocess.TimeoutExpired:
            raise BenchError("%s: no result after 300 s" % " ".join(argv))
        if r.returncode != 0:
            raise BenchError("%s exited %d:\n%s" % (" ".join(argv), r.returncode, r.stderr.strip()[-2000:]))
        return json.loads(r.stdout)


def leftovers(tag, q, extra_root=None):
    """burst.py's search (processes, cgroups, mounts under tmp, ROOT entries) for one tag."""
    lo = {}
    for _ in range(50):  # the kernel and pid 1 finish a little after the reply
        lo = burst.leftovers(tag, extra_root or q.root, q.tmp)
        if not lo:
            break
        time.sleep(0.1)
    return lo


def report_leftovers(what, lo, problems):
    if not lo:
        return
    problems.append("%s: LEFTOVERS %s" % (what, {k: len(v) for k, v in lo.items()}))
    for k, v in lo.items():
        for x in v[:3]:
            print("   leftover %s: %s" % (k, x), file=sys.stderr)


def med(v):
    return statistics.median(v) if v else float("nan")


# ---- 1. create -> exited ----

PHASES = ("accepted", "created", "started", "exited")


def phases(out):
    """Median ms from sending create to each reply/event of one loadgen run."""
    return [out[p + "_ms"]["median"] if out[p + "_ms"]["count"] else float("nan") for p in PHASES]


def part_latency(args, q, bundle, problems):
    res = {"warm": [], "cold": [], "warm_rounds": [], "cold_rounds": [], "paths": {"warm": [0, 0], "cold": [0, 0]},
           "runc": [], "crun": [], "wrapper": [], "runc_rounds": [], "crun_rounds": [], "wrapper_rounds": [],
           "fill_s": [], "idle": [], "phases": {"warm": [], "cold": []}}
    peers = [Runner("runc", ["runc"], os.path.join(q.tmp, "root-runc")),
             Runner("crun", CRUN_WRAPPER, os.path.join(q.tmp, "root-crun"))]
    wrapper = CRUN_WRAPPER[:-1] + ["/bin/true"]
    warm_high = max(60, args.n_latency + 10)
    pid = os.getpid()
    try:
        q.start_vmmd()
        res["fill_s"].append(q.start_poold(warm_high))
        # warm-up, unrecorded
        q.loadgen("latency", bundle, 5, "api%d-lx-" % pid)
        for r in peers:
            r.once(bundle)
        for rnd in range(args.rounds):
            res["fill_s"].append(q.wait_full())
            idle_before = wait_quiet(args.idle)
            c0 = cpu_times()
            tag = "api%d-lw%d-" % (pid, rnd)
            w = q.loadgen("latency", bundle, args.n_latency, tag)
            res["warm"].extend(w["samples_ms"])
            res["warm_rounds"].append(w["exited_ms"]["median"])
            res["phases"]["warm"].append(phases(w))
            res["paths"]["warm"][0] += w["paths"]["warm"]
            res["paths"]["warm"][1] += w["paths"]["cold"]
            report_leftovers("latency warm round %d" % rnd, leftovers(tag, q), problems)
            rt = {"runc": [], "crun": [], "wrapper": []}
            for _ in range(args.peer_runs):
                for r in peers:
                    rt[r.name].append(r.once(bundle) * 1000)
                w0 = time.perf_counter()
                subprocess.run(wrapper, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
                rt["wrapper"].append((time.perf_counter() - w0) * 1000)
            for k, v in rt.items():
                res[k].extend(v)
                res[k + "_rounds"].append(med(v))
            # the cold API path: poold stopped; the first creates after that
            # pay vmmd's reconnect to the gone poold, so they are a warm-up
            q.stop_poold()
            q.loadgen("latency", bundle, 3, "api%d-lcx%d-" % (pid, rnd))
            tag = "api%d-lc%d-" % (pid, rnd)
            c = q.loadgen("latency", bundle, args.n_latency, tag)
            res["cold"].extend(c["samples_ms"])
            res["cold_rounds"].append(c["exited_ms"]["median"])
            res["phases"]["cold"].append(phases(c))
            res["paths"]["cold"][0] += c["paths"]["warm"]
            res["paths"]["cold"][1] += c["paths"]["cold"]
            report_leftovers("latency cold round %d" % rnd, leftovers(tag, q), problems)
            idle = idle_share(c0, cpu_times())
            res["idle"].append((idle_before, idle))
            print("latency round %d: warm median %.2f ms (%d/%d warm), cold %.2f ms, runc %.1f ms, crun %.1f ms "
                  "(wrapper %.1f); idle before %.0f%%, during %.0f%%"
                  % (rnd, res["warm_rounds"][-1], w["paths"]["warm"], args.n_latency, res["cold_rounds"][-1],
                     res["runc_rounds"][-1], res["crun_rounds"][-1], res["wrapper_rounds"][-1], idle_before, idle),
                  file=sys.stderr, flush=True)
            if rnd + 1 < args.rounds:
                q.start_poold(warm_high)
    finally:
        for r in peers:
            r.cleanup()
        left = q.stop_all()
        if left:
            problems.append("latency: sandboxes still listed at the end: %s" % left[:5])
    return res


# ---- 2. 200 concurrent sleep sandboxes ----

def burst_qctl_like(prefix, root, bundle, ids, errdir, timeout):
    """burst.py's round: fork every `run -d`, poll `list` until all run."""
    t0 = time.perf_counter()
    _, fails = burst.start_many(prefix, root, bundle, ids, errdir)
    _, notrun = burst.wait_running(prefix, root, [i for i in ids if i not in fails], timeout)
    dt = time.perf_counter() - t0
    cf = burst.cleanup(prefix, root, ids)
    errs = []
    if fails:
        cid, (rc, err) = next(iter(fails.items()))
        errs.append("%d `run -d` failed, e.g. %s rc=%d: %s" % (len(fails), cid, rc, err.replace("\n", " | ")))
    if notrun:
        errs.append("%d not running after %.0f s" % (len(notrun), timeout))
    if cf:
        errs.append("%d clean-up failures, e.g. %s" % (len(cf), cf[0]))
    return dt, errs


def warm_hits(q):
    st = q.pool_status()
    return st["warm"]["hits"] if st else 0


def burst_round(name, args, q, bundle, errdir, n, tag):
    """One round of one runtime: (seconds, warm hits, error strings, root to search)."""
    ids = ["%s%05d" % (tag, i) for i in range(n)]
    if name == "api":
        h0 = warm_hits(q)
        out = q.loadgen("burst", bundle, n, tag)
        return out["seconds"], warm_hits(q) - h0, [], q.root, out
    if name == "qctl":
        h0 = warm_hits(q)
        dt, errs = burst_qctl_like([q.qctl_bin], q.root, bundle, ids, errdir, args.timeout)
        return dt, warm_hits(q) - h0, errs, q.root, None
    prefix = ["runc"] if name == "runc" else CRUN_WRAPPER
    root = os.path.join(q.tmp, "root-" + name)
    dt, errs = burst_qctl_like(prefix, root, bundle, ids, errdir, args.timeout)
    return dt, None, errs, root, None


def part_burst(args, q, bundle, problems):
    names = ["api", "qctl", "runc", "crun"]
    res = {n: {"t": [], "hits": []} for n in names}
    res["api"]["detail"] = []
    res["idle"] = []
    errdir = os.path.join(q.tmp, "err")
    os.makedirs(errdir, exist_ok=True)
    warm_high = max(220, args.n_burst + 20)
    pid = os.getpid()
    plan = [("x", 0, 20)] + [("r", r, args.n_burst) for r in range(args.rounds)]
    try:
        q.start_vmmd()
        fill = q.start_poold(warm_high)
        print("burst: warm pool of %d filled in %.1f s" % (warm_high, fill), file=sys.stderr, flush=True)
        for kind, rnd, n in plan:
            for name in names:
                if name in ("api", "qctl"):
                    q.wait_full()
                idle_before = wait_quiet(args.idle)
                c0 = cpu_times()
                tag = "api%d-b%s%s%d-" % (pid, name, kind, rnd)
                try:
                    dt, hits, errs, root, out = burst_round(name, args, q, bundle, errdir, n, tag)
                except BenchError as e:
                    problems.append("burst %s %s%d: %s" % (name, kind, rnd, e))
                    print("burst %s %s%d: FAILED: %s" % (name, kind, rnd, e), file=sys.stderr, flush=True)
                    report_leftovers("burst %s %s%d" % (name, kind, rnd), leftovers(tag, q), problems)
                    continue
                idle = idle_share(c0, cpu_times())
                lo = leftovers(tag, q, root)
                report_leftovers("burst %s %s%d" % (name, kind, rnd), lo, problems)
                for e in errs:
                    problems.append("burst %s %s%d: %s" % (name, kind, rnd, e))
                extra = ""
                if out:
                    extra = " (accepted %.2f s, created %.2f s, delete %.2f s, paths warm %d cold %d)" % (
                        out["accepted_seconds"], out["created_seconds"], out["delete_seconds"],
                        out["paths"]["warm"], out["paths"]["cold"])
                print("burst %-4s %s%d: %d in %.3f s%s%s; idle before %.0f%%, during %.0f%%%s"
                      % (name, kind, rnd, n, dt, extra, "" if hits is None else ", warm hits %d" % hits,
                         idle_before, idle, "; " + "; ".join(errs) if errs else ""), file=sys.stderr, flush=True)
                if kind == "r" and not errs:
                    res[name]["t"].append(dt)
                    res[name]["hits"].append(hits)
                    if out:
                        res["api"]["detail"].append(out)
                    res["idle"].append(idle)
    finally:
        burst.teardown([("runc", ["runc"], os.path.join(q.tmp, "root-runc")),
                        ("crun", CRUN_WRAPPER, os.path.join(q.tmp, "root-crun"))], None, q.tmp)
        left = q.stop_all()
        if left:
            problems.append("burst: sandboxes still listed at the end: %s" % left[:5])
    return res


# ---- output ----

def ratio_line(label, a, b):
    rs = [x / y for x, y in zip(a, b) if y]
    return "  %-44s %8.2f" % (label, statistics.median(rs)) if rs else None


def print_latency(args, res):
    print("\n1. API create {start} of busybox /bin/true -> \"exited\" event, ms (N=%d per round, %d rounds; "
          "runc/crun: `run`, %d per round)" % (args.n_latency, args.rounds, args.peer_runs))
    print("  %-44s %8s %8s %8s %8s" % ("", "min", "median", "max", "goal"))
    crun_net = [c - w for c, w in zip(res["crun"], res["wrapper"])]
    rows = [("API, warm pool (poold, warm high >= 60)", res["warm"], "<= %.0f" % GOAL_LATENCY_MS),
            ("API, cold (poold stopped)", res["cold"], ""),
            ("runc run", res["runc"], ""), ("crun run (with its unshare wrapper)", res["crun"], ""),
            ("crun's wrapper alone", res["wrapper"], ""), ("crun minus its wrapper (per run)", crun_net, "")]
    for label, v, goal in rows:
        if v:
            print("  %-44s %8.2f %8.2f %8.2f %8s" % (label, min(v), med(v), max(v), goal))
    for kind in ("warm", "cold"):
        ph = res["phases"][kind]
        if ph:
            print("  %s, median ms from sending create to: %s" % (kind, ", ".join(
                "%s %.2f" % (p, med([r[i] for r in ph])) for i, p in enumerate(PHASES))))
    pw, pc = res["paths"]["warm"], res["paths"]["cold"]
    print("  paths taken: warm-pool runs %d warm / %d cold; poold-stopped runs %d warm / %d cold"
          % (pw[0], pw[1], pc[0], pc[1]))
    crun_net_rounds = [c - w for c, w in zip(res["crun_rounds"], res["wrapper_rounds"])]
    print("  median per-round ratio of round medians:")
    for line in (ratio_line("warm / cold", res["warm_rounds"], res["cold_rounds"]),
                 ratio_line("warm / runc", res["warm_rounds"], res["runc_rounds"]),
                 ratio_line("warm / crun", res["warm_rounds"], res["crun_rounds"]),
                 ratio_line("warm / (crun minus wrapper)", res["warm_rounds"], crun_net_rounds),
                 ratio_line("cold / (crun minus wrapper)", res["cold_rounds"], crun_net_rounds)):
        if line:
            print(line)
    # loadgen and the peers keep about one core busy: expect at most
    # 100 - 100/ncpu % idle; much less means someone else was running
    expect = 100.0 - 100.0 / (os.cpu_count() or 1)
    for rnd, (_, idle) in enumerate(res["idle"]):
        if idle < expect - 15.0:
            print("  warning: round %d ran on a busy machine (%.0f%% idle, expected ~%.0f%%); repeat the run"
                  % (rnd, idle, expect))
    m = med(res["warm"])
    print("  goal <= %.0f ms (warm, median): %s (%.2f ms)" % (GOAL_LATENCY_MS, "met" if m <= GOAL_LATENCY_MS
                                                              else "NOT met", m))


def print_burst(args, res):
    print("\n2. %d concurrent busybox `sleep 1000` sandboxes until all running, s (%d rounds, interleaved "
          "by runtime)" % (args.n_burst, args.rounds))
    print("  %-44s %8s %8s %8s %8s %10s" % ("", "min", "median", "max", "goal", "warm hits"))
    labels = {"api": "API burst (loadgen), warm pool >= 220", "qctl": "qctl run -d, warm pool >= 220",
              "runc": "runc run -d", "crun": "crun run -d (with its wrapper)"}
    for name in ("api", "qctl", "runc", "crun"):
        t = res[name]["t"]
        if not t:
            print("  %-44s %8s" % (labels[name], "no valid round"))
            continue
        hits = "/".join(str(h) for h in res[name]["hits"]) if res[name]["hits"][0] is not None else ""
        print("  %-44s %8.3f %8.3f %8.3f %8s %10s" % (labels[name], min(t), med(t), max(t),
                                                    "<= %.0f" % GOAL_BURST_S if name == "api" else "", hits))
    d = res["api"]["detail"]
    if d:
        print("  API burst, medians: all accepted %.3f s, all \"created\" %.3f s, per-sandbox to \"started\" "
              "%.0f ms (p90 %.0f), delete of all %.3f s"
              % (med([x["accepted_seconds"] for x in d]), med([x["created_seconds"] for x in d]),
                 med([x["started_ms"]["median"] for x in d]), med([x["started_ms"]["p90"] for x in d]),
                 med([x["delete_seconds"] for x in d])))
    print("  median per-round ratio:")
    for a, b in (("api", "crun"), ("api", "runc"), ("api", "qctl"), ("qctl", "crun"), ("qctl", "runc")):
        line = ratio_line("%s / %s" % (a, b), res[a]["t"], res[b]["t"])
        if line and len(res[a]["t"]) == len(res[b]["t"]):
            print(line)
    if res["api"]["t"]:
        m = med(res["api"]["t"])
        print("  goal <= %.0f s (API burst, median): %s (%.3f s)" % (GOAL_BURST_S, "met" if m <= GOAL_BURST_S
                                                                    else "NOT met", m))


def final_leftovers(q, pid, problems):
    tag = "api%d-" % pid
    lo = burst.leftovers(tag, q.root, q.tmp)
    procs = burst.procs_with(q.tmp)
    if procs:
        lo["processes under the temp dir"] = procs
    cg = burst.cgroup_dirs_with(q.pool_tag)
    if cg:
        lo["poold cgroups"] = cg
    report_leftovers("at the end", lo, problems)
    return lo


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--bin", default=None, help="dir with qctl, quiver-vmmd, -guest, -poold (default: newest build*/bin)")
    ap.add_argument("--only", default="latency,burst", help="latency, burst or both")
    ap.add_argument("--n-latency", type=int, default=50)
    ap.add_argument("--n-burst", type=int, default=200)
    ap.add_argument("--peer-runs", type=int, default=10, help="runc and crun `run`s per latency round")
    ap.add_argument("--idle", type=float, default=85.0)
    ap.add_argument("--timeout", type=float, default=120.0, help="per burst round, for all to be running")
    ap.add_argument("--json-out", default=None, help="write every number to this file")
    ap.add_argument("--tmpfs", action="store_true",
                    help="every runtime's root (and the bundles) on a tmpfs, as under /run on a systemd host")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root: sudo /usr/bin/python3 bench/api.py")
    bindir, loadgen = find_bins(args.bin)
    want = set(args.only.split(","))

    started = time.time()
    tmp, fstype = bench_tmpdir("quiver-api-", args.tmpfs, "4g")
    q = Quiver(bindir, loadgen, tmp)
    true_bundle = os.path.join(tmp, "bundle-true")
    sleep_bundle = os.path.join(tmp, "bundle-sleep")
    make_bundle(true_bundle)
    burst.make_sleep_bundle(sleep_bundle)
    problems = []
    lat = bur = None
    print("# command: %s" % " ".join(shlex.quote(a) for a in [sys.executable] + sys.argv))
    print("# binaries: %s, %s" % (bindir, loadgen))
    # Every runtime's state root is under tmp: its filesystem moves the
    # figures (here /tmp is ext4 without a journal, where each file created
    # after a burst of deletions costs ~0.5 ms; /run is a tmpfs on most hosts).
    print("# roots and bundles on %s (%s)" % (fstype, tmp))
    try:
        if "latency" in want:
            lat = part_latency(args, q, true_bundle, problems)
        if "burst" in want:
            bur = part_burst(args, q, sleep_bundle, problems)
    except BenchError as e:
        problems.append(str(e))
        print("FAILED: %s" % e, file=sys.stderr)
    finally:
        try:
            q.stop_all()
        except BenchError as e:
            problems.append(str(e))
        final_leftovers(q, os.getpid(), problems)
        for log in ("vmmd.log", "poold.log", "poold/warm.log"):
            p = os.path.join(q.root, log)
            if os.path.exists(p):
                with open(p, errors="replace") as f:
                    errs = [ln.rstrip() for ln in f if " warn: " in ln or " error: " in ln]
                if errs:
                    print("%s: %d warning/error lines, e.g.:" % (log, len(errs)), file=sys.stderr)
                    for e in errs[:5]:
                        print("   " + e[:240], file=sys.stderr)
        if not remove_bench_tmpdir(tmp, args.tmpfs):
            problems.append("the tmpfs on %s did not unmount (still in use)" % tmp)

    print("# %s, %d rounds, %.0f s in all" % (time.strftime("%Y-%m-%d %H:%M"), args.rounds, time.time() - started))
    if lat and lat["warm"]:
        print("# latency part: idle before/during each round: %s"
              % ", ".join("%.0f/%.0f%%" % x for x in lat["idle"]))
        print_latency(args, lat)
    if bur:
        print("# burst part: idle during recorded rounds %s" % ", ".join("%.0f%%" % x for x in bur["idle"]))
        print_burst(args, bur)
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump({"latency": lat, "burst": bur, "problems": problems}, f, indent=1)
    if problems:
        print("\nproblems:")
        for p in problems:
            print("  " + p)
        sys.exit(1)


if __name__ == "__main__":
    main()
