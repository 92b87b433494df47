#!/usr/bin/python3
"""Idle sandboxes: what one costs in memory, and whether 2000 of them are
held and all still answer.

1. density (--n-density 500, busybox `sleep 1000`): bench/density.py's
   rounds, interleaved by runtime: Quiver with poold's warm pool
   ("qctl-warm": warm low = high = N + 16, full before the baseline and
   refilled to the same level before each later reading, so the pool's own
   memory cancels out), Quiver cold ("qctl": no poold), runc and crun, each
   N `run -d` 10 at a time.  Per sandbox: the drop of MemAvailable after
   sync + drop_caches, the kernel's share, PSS of the init (Quiver: the
   supervisor) and of the workload, host processes and threads.
2. hold (--n-hold 2000): vmmd and poold with a modest warm pool (--warm-high
   64, refill 200/s), then `loadgen hold` (bench/loadgen.c): N creates
   {start: true} through vmmd's API of a bundle whose workload is
   `sh -c "trap 'exit 7' USR1; while :; do sleep 3600 & wait $!; done"`,
   until every one is "started".  While they are held: the pool is topped
   up, then MemAvailable, the kernel's share, PSS of the supervisors and
   workloads, processes, threads, live network namespaces (net_namespace
   objects in /proc/slabinfo) and the CPU the idle sandboxes use.  Then
   `kill {signal: SIGUSR1}` to each, one at a time (--signal-conns), each
   must exit with code 7 ("exited" event); the time from sending kill to
   the event is recorded.  Then all are deleted (timed), and we wait for
   the kernel to free their network namespaces (timed).

Each part starts on a quiet machine (>= 85% idle over 3 s).  At the end
every daemon is stopped and the machine is searched for what the run left:
processes, cgroups (ours and poold's), mounts under the temp dir, state
entries, network namespaces above the starting count.

    sudo /usr/bin/python3 bench/idle.py [--bin build/bin] [--only density,hold] [--n-density 500]
                                        [--rounds 1] [--n-hold 2000] [--warm-high 64] [--json-out F]

Build first: make build/bin/qctl build/bin/quiver-vmmd build/bin/quiver-guest
build/bin/quiver-poold build/bench/loadgen (or with BUILD=...; --bin DIR).
"""

import argparse
import json
import os
import resource
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from startup import CRUN_WRAPPER, cpu_times, idle_share, wait_quiet  # noqa: E402
from api import BenchError, Quiver, find_bins, report_leftovers  # noqa: E402
import burst  # noqa: E402
import density  # noqa: E402

KIB = 1024.0
GOAL_MIB = 0.5
HOLD_ARGS = ["/bin/sh", "-c", "trap 'exit 7' USR1; while :; do sleep 3600 & wait $!; done"]
SIGUSR1, EXPECT = 10, 7
PROCS_PER_SANDBOX = 3  # supervisor, sh, sleep


def live_netns():
    """Network namespaces the kernel holds (net_namespace slab objects; SLUB
    counts a CPU's partial slab as in use, so a few above the truth)."""
    try:
        with open("/proc/slabinfo") as f:
            for line in f:
                if line.startswith("net_namespace "):
                    return int(line.split()[1])
    except OSError:
        pass
    return -1


def reading(drop, pids):
    """Memory and counts of the whole machine, plus PSS (kB) of some daemons."""
    avail, kern = density.sample(drop)
    procs, threads = density.counts()
    return {"avail": avail, "kern": kern, "procs": procs, "threads": threads, "netns": live_netns(),
            "pss": {k: density.pss_kb(p) if p else 0 for k, p in pids.items()}}


# ---- 1. density ----

def part_density(args, pool, tmp, bundle, drop, problems):
    dargs = argparse.Namespace(n=args.n_density, rounds=args.rounds, concurrency=args.concurrency,
                               idle=args.idle, settle=args.settle, pool_high=args.n_density + args.pool_spare)
    rts = [("qctl-warm", [pool.qctl_bin], pool.root), ("qctl", [pool.qctl_bin], pool.root),
           ("runc", ["runc"], os.path.join(tmp, "root-runc")),
           ("crun", CRUN_WRAPPER, os.path.join(tmp, "root-crun"))]
    try:
        pool.start_vmmd()
        res, notes, idles = density.run_rounds(dargs, rts, tmp, bundle, drop, pool, tag_base="idle")
    finally:
        left = pool.stop_all()
        if left:
            problems.append("density: sandboxes still listed at the end: %s" % left[:5])
        burst.teardown(rts[2:], None, tmp)
    for name, _, _ in rts:
        r = res[name]
        if any(n < args.n_density for n in r["ok"]):
            problems.append("density %s: only %s of %d running" % (name, r["ok"], args.n_density))
    return {"args": vars(dargs), "rts": [n for n, _, _ in rts], "res": res, "notes": notes, "idles": idles}


def print_density(args, d, drop):
    print("\n1. Memory per idle sandbox")
    rts = [(n, None, None) for n in d["rts"]]
    density.print_table(argparse.Namespace(**d["args"]), rts, d["res"], d["notes"], d["idles"], drop)
    for name in ("qctl-warm", "qctl"):
        m = statistics.median(d["res"][name]["avail"])
        print("goal <= %.1f MiB per idle sandbox (%s, median MemAvailable drop): %s (%.2f MiB)"
              % (GOAL_MIB, name, "met" if m <= GOAL_MIB else "NOT met", m))


# ---- 2. hold ----

def check_limits(n):
    """The machine can hold n sandboxes of PROCS_PER_SANDBOX processes: pids,
    threads, vmmd's descriptors (it raises its soft limit to our hard one),
    memory.  Returns a line for the report."""
    with open("/proc/sys/kernel/pid_max") as f:
        pid_max = int(f.read())
    with open("/proc/sys/kernel/threads-max") as f:
        threads_max = int(f.read())
    procs, threads = density.counts()
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    avail = density.meminfo()["MemAvailable"] / KIB
    need = PROCS_PER_SANDBOX * n + 500  # + the warm pool, daemons, our own
    why = []
    if pid_max - threads < need:  # every thread takes a pid
        why.append("pid_max %d leaves room for %d tasks, %d needed" % (pid_max, pid_max - threads, need))
    if threads_max - threads < need:
        why.append("threads-max %d leaves room for %d, %d needed" % (threads_max, threads_max - threads, need))
    if nofile < n + 200:  # vmmd: a pidfd per sandbox (519 fds with 500 here)
        why.append("hard nofile limit %d < %d" % (nofile, n + 200))
    if avail < 2.0 * n + 1024:
        why.append("MemAvailable %.0f MiB < %.0f" % (avail, 2.0 * n + 1024))
    if why:
        raise BenchError("cannot hold %d sandboxes here: %s" % (n, "; ".join(why)))
    return "limits: pid_max %d (%d in use), threads-max %d (%d in use), nofile hard %d, MemAvailable %.0f MiB" % (
        pid_max, procs, threads_max, threads, nofile, avail)


def held_pids(q, tag):
    """Supervisor pids of our sandboxes, from vmmd's list."""
    states = burst.list_states([q.qctl_bin], q.root)
    return [s["pid"] for i, s in states.items() if i.startswith(tag) and s.get("pid")]


def measure_held(args, q, tag, drop, daemons):
    """Readings while the sandboxes are held, with the pool topped up first."""
    q.wait_full()
    time.sleep(args.settle)
    c0 = cpu_times()
    time.sleep(args.idle_window)
    cpu_idle = idle_share(c0, cpu_times())
    q.wait_full()
    rd = reading(drop, daemons)
    sups = held_pids(q, tag)
    rd["supervisors"] = len(sups)
    rd["sup_pss"] = sum(density.pss_kb(p) for p in sups)
    rd["wl_pss"] = sum(density.pss_kb(c) for p in sups for c in density.descendants(p))
    rd["wl_procs"] = sum(len(density.descendants(p)) for p in sups)
    rd["cpu_idle"] = cpu_idle
    return rd


def run_hold(args, q, bundle, tag, errf):
    """loadgen hold with --pause: returns its "running" line's dict, a
    function that lets it go on and returns its result, and the process."""
    argv = [q.loadgen_bin, "hold", "--root", q.root, "--bundle", bundle, "-n", str(args.n_hold),
            "--conns", str(args.conns), "--signal", str(SIGUSR1), "--expect", str(EXPECT),
            "--signal-conns", str(args.signal_conns), "--timeout", str(args.hold_timeout),
            "--id-prefix", tag, "--pause", "--json"]
    print("# %s" % " ".join(shlex.quote(a) for a in argv), file=sys.stderr, flush=True)
    p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errf, text=True)
    line = p.stdout.readline()
    if not line:
        p.wait()
        raise BenchError("loadgen hold exited %s before all were started (see above)" % p.returncode)
    return json.loads(line), p


def finish_hold(args, p):
    try:
        out, _ = p.communicate("\n", timeout=args.hold_timeout * 2 + 600)
    except subprocess.TimeoutExpired:
        p.send_signal(signal.SIGTERM)
        p.communicate()
        raise BenchError("loadgen hold: no result %.0f s after the signal phase began"
                         % (args.hold_timeout * 2 + 600))
    lines = out.strip().splitlines()
    return json.loads(lines[-1]) if lines else None, p.returncode


def wait_netns(base, timeout):
    """Seconds until the kernel is back to `base` live network namespaces (a
    little slack for other users), or None."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if live_netns() <= base + 16:
            return time.monotonic() - t0
        time.sleep(0.5)
    return None


def part_hold(args, q, tmp, bundle, drop, problems):
    tag = "idle%d-h-" % os.getpid()
    errpath = os.path.join(tmp, "loadgen-hold.err")
    out = {"limits": check_limits(args.n_hold), "warm_high": args.warm_high}
    print(out["limits"], file=sys.stderr, flush=True)
    p = None
    try:
        q.start_vmmd()
        out["fill_s"] = q.start_poold(args.warm_high)
        daemons = {"vmmd": density.vmmd_pid(q.root), "poold": q.poold_pid()}
        out["idle_before"] = wait_quiet(args.idle)
        out["base"] = reading(drop, daemons)
        c0 = cpu_times()
        with open(errpath, "w") as errf:
            running, p = run_hold(args, q, bundle, tag, errf)
            out["running"] = running
            print("hold: %d started in %.1f s; measuring" % (running["started"], running["seconds"]),
                  file=sys.stderr, flush=True)
            out["held"] = measure_held(args, q, tag, drop, daemons)
            print("hold: measured; signalling", file=sys.stderr, flush=True)
            t_go = time.monotonic()
            out["result"], rc = finish_hold(args, p)
            out["wall_after_go_s"] = time.monotonic() - t_go
        out["idle_during"] = idle_share(c0, cpu_times())
        if rc != 0:
            problems.append("loadgen hold exited %d (see its errors above)" % rc)
        if (out["result"] or {}).get("failed"):
            problems.append("hold: %d creates \"failed\" (vmmd.log's warnings below say why)"
                            % out["result"]["failed"])
        lost = (out["result"] or {}).get("lost_events", {})
        if any(lost.values()):
            problems.append("hold: vmmd's events lost (its PUB queue overflowed?): %s" % lost)
        out["netns_free_s"] = wait_netns(out["base"]["netns"], args.netns_timeout)
        if out["netns_free_s"] is None:
            problems.append("hold: %d network namespaces live %.0f s after delete, %d before"
                            % (live_netns(), args.netns_timeout, out["base"]["netns"]))
        report_leftovers("hold", leftovers(tag, q), problems)
        q.wait_full()
        out["after"] = reading(drop, daemons)
    except BenchError as e:
        problems.append("hold: %s" % e)
        print("hold: FAILED: %s" % e, file=sys.stderr, flush=True)
    finally:
        if p and p.poll() is None:
            p.kill()
            p.wait()
        if os.path.exists(errpath):
            with open(errpath, errors="replace") as f:
                errs = f.read().strip().splitlines()
            for e in errs[:10]:
                print("   " + e[:240], file=sys.stderr)
        left = q.stop_all()
        if left:
            problems.append("hold: sandboxes still listed at the end: %s" % left[:5])
    return out


def leftovers(tag, q):
    lo = {}
    for _ in range(50):  # the kernel and pid 1 finish a little after the reply
        lo = burst.leftovers(tag, q.root, q.tmp)
        if not lo:
            break
        time.sleep(0.1)
    return lo


def print_hold(args, h):
    n = args.n_hold
    res, run, b, hd = h.get("result"), h.get("running"), h.get("base"), h.get("held")
    print("\n2. %d idle sandboxes held through vmmd's API (loadgen hold), workload sh: trap USR1 -> exit 7 "
          "around `sleep 3600`; poold warm pool %d (refill 200/s)" % (n, args.warm_high))
    print("  " + h["limits"])
    if not run or not hd:
        print("  no result (see problems)")
        return
    started = run["started"]
    print("  %-34s %d of %d after %.1f s" % ("running", started, n, run["seconds"]))
    if res:
        st = res["started_ms"]
        print("  %-34s median %.0f ms, p90 %.0f, p99 %.0f, max %.0f; all accepted after %.1f s"
              % ("per sandbox, create -> \"started\"", st["median"], st["p90"], st["p99"], st["max"],
                 res["accepted_seconds"]))
        print("  %-34s warm %d, cold %d; %d creates \"failed\"" % ("paths", res["paths"]["warm"],
                                                                  res["paths"]["cold"], res.get("failed", 0)))
    k = max(started, 1)
    print("  %-34s %.3f MiB per sandbox (%.0f MiB in all)"
          % ("MemAvailable drop", (b["avail"] - hd["avail"]) / k / KIB, (b["avail"] - hd["avail"]) / KIB))
    print("  %-34s %.3f MiB per sandbox" % ("kernel share (slab+stack+pt)", (hd["kern"] - b["kern"]) / k / KIB))
    print("  %-34s %.3f / %.3f MiB per sandbox (%d supervisors, %d workload processes)"
          % ("PSS supervisor / workload", hd["sup_pss"] / k / KIB, hd["wl_pss"] / k / KIB, hd["supervisors"],
             hd["wl_procs"]))
    print("  %-34s +%.2f / +%.2f per sandbox; network namespaces +%d"
          % ("host processes / threads", (hd["procs"] - b["procs"]) / k, (hd["threads"] - b["threads"]) / k,
             hd["netns"] - b["netns"]))
    print("  %-34s vmmd %.1f -> %.1f MiB, poold %.1f -> %.1f MiB"
          % ("daemons' PSS", b["pss"]["vmmd"] / KIB, hd["pss"]["vmmd"] / KIB, b["pss"]["poold"] / KIB,
             hd["pss"]["poold"] / KIB))
    print("  %-34s %.1f%% idle over %.0f s with all held" % ("machine CPU", hd["cpu_idle"], args.idle_window))
    if not res:
        return
    sg = res["signal_exit_ms"]
    signalled = res["answered"] + res["wrong_code"] + res["no_exit"]
    print("  %-34s %d of %d signalled exited with %d; %d with another code, %d not at all; %d exited before "
          "the signal" % ("answered SIGUSR1", res["answered"], signalled, EXPECT, res["wrong_code"],
                          res["no_exit"], res["early_exits"]))
    print("  %-34s min %.2f, median %.2f, p99 %.2f, max %.2f ms (%d at a time); all in %.1f s"
          % ("kill -> \"exited\"", sg["min"], sg["median"], sg["p99"], sg["max"], args.signal_conns,
             res["signal_seconds"]))
    nf = h.get("netns_free_s")
    print("  %-34s %.2f s; the kernel freed their network namespaces %s"
          % ("delete of all", res["delete_seconds"],
             "%.1f s later" % nf if nf is not None else "NOT within %.0f s" % args.netns_timeout))
    lost = res.get("lost_events", {})
    print("  %-34s %d \"started\", %d \"exited\" (vmmd said they happened; kept out of the times)"
          % ("events lost", lost.get("started", 0), lost.get("exited", 0)))
    if h.get("after"):
        print("  %-34s %.1f MiB (total, pool full again)" % ("MemAvailable not back", (b["avail"] - h["after"]["avail"]) / KIB))
    ok = res["answered"] == n
    print("  goal: %d idle sandboxes held, all responsive: %s" % (n, "met" if ok else "NOT met"))


# ---- the end ----

def final_leftovers(tag, tmp, qs, netns_base, problems):
    lo = {}
    for q in qs:
        for k, v in burst.leftovers(tag, q.root, q.tmp).items():
            lo.setdefault(k, []).extend(v)
        cg = burst.cgroup_dirs_with(q.pool_tag)
        if cg:
            lo.setdefault("poold cgroups", []).extend(cg)
    procs = burst.procs_with(tmp)
    if procs:
        lo["processes under the temp dir"] = procs
    mounts = burst.mounts_with(tmp)
    if mounts:
        lo["mounts under the temp dir"] = mounts
    report_leftovers("at the end", lo, problems)
    if lo:
        scrub(lo)
        again = {k: v for k, v in burst.leftovers(tag, tmp, tmp).items() if k != "root entries"}
        for q in qs:
            again.update({k: v for k, v in burst.leftovers(tag, q.root, q.tmp).items()})
            cg = burst.cgroup_dirs_with(q.pool_tag)
            if cg:
                again["poold cgroups"] = cg
        print("removed what was left%s" % (": NOT all, still %s" % {k: len(v) for k, v in again.items()}
                                           if again else ""), file=sys.stderr)
    if netns_base >= 0 and wait_netns(netns_base, 30) is None:
        ns = live_netns()
        print("warning: %d network namespaces live 30 s after the end, %d at the start (other users?)"
              % (ns, netns_base), file=sys.stderr)


def scrub(lo):
    """Removes what Quiver left behind once it has been reported: its
    processes (found by our tag or temp dir), mounts under the temp dir,
    cgroups (children first)."""
    for key in ("processes", "processes under the temp dir"):
        for pid, _ in lo.get(key, []):
            if pid == os.getpid():
                continue
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    for line in lo.get("mounts", []) + lo.get("mounts under the temp dir", []):
        subprocess.run(["umount", "-l", line.split()[4]], stderr=subprocess.DEVNULL)
    time.sleep(0.5)  # the killed leave their cgroups
    for d in sorted(set(lo.get("cgroups", []) + lo.get("poold cgroups", []))):
        for top, _, _ in os.walk(d, topdown=False):
            try:
                os.rmdir(top)
            except OSError as e:
                print("cannot remove %s: %s" % (top, e), file=sys.stderr)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=None, help="dir with qctl, quiver-vmmd, -guest, -poold (default: newest build*/bin)")
    ap.add_argument("--only", default="density,hold", help="density, hold or both")
    ap.add_argument("--n-density", type=int, default=500)
    ap.add_argument("--rounds", type=int, default=1, help="density rounds")
    ap.add_argument("--concurrency", type=int, default=10, help="density: `run -d` at a time")
    ap.add_argument("--pool-spare", type=int, default=16, help="density: warm pool beyond N")
    ap.add_argument("--n-hold", type=int, default=2000)
    ap.add_argument("--warm-high", type=int, default=64, help="hold: poold's warm pool")
    ap.add_argument("--conns", type=int, default=4, help="hold: loadgen's sockets for creates")
    ap.add_argument("--signal-conns", type=int, default=1, help="hold: sandboxes signalled at a time")
    ap.add_argument("--hold-timeout", type=float, default=300.0, help="hold: for all started; for all answers")
    ap.add_argument("--netns-timeout", type=float, default=300.0)
    ap.add_argument("--idle-window", type=float, default=5.0, help="hold: seconds of CPU sampled while held")
    ap.add_argument("--idle", type=float, default=85.0)
    ap.add_argument("--settle", type=float, default=3.0)
    ap.add_argument("--no-drop-caches", action="store_true")
    ap.add_argument("--json-out", default=None)
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (the daemons' logs)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root: sudo /usr/bin/python3 bench/idle.py")
    bindir, loadgen = find_bins(args.bin)
    want = set(args.only.split(","))
    drop = density.can_drop_caches(not args.no_drop_caches)

    started = time.time()
    netns_base = live_netns()
    tmp = tempfile.mkdtemp(prefix="quiver-idle-")
    sleep_bundle = os.path.join(tmp, "bundle-sleep")
    hold_bundle = os.path.join(tmp, "bundle-hold")
    burst.make_sleep_bundle(sleep_bundle)
    burst.make_sleep_bundle(hold_bundle, HOLD_ARGS)
    problems = []
    qs = [Quiver(bindir, loadgen, os.path.join(tmp, part)) for part in ("density", "hold")]
    dens = hold = None
    print("# command: %s" % " ".join(shlex.quote(a) for a in [sys.executable] + sys.argv))
    print("# binaries: %s, %s" % (bindir, loadgen))
    try:
        if "density" in want:
            dens = part_density(args, qs[0], tmp, sleep_bundle, drop, problems)
        if "hold" in want:
            hold = part_hold(args, qs[1], tmp, hold_bundle, drop, problems)
    except BenchError as e:
        problems.append(str(e))
        print("FAILED: %s" % e, file=sys.stderr)
    finally:
        final_leftovers("idle%d" % os.getpid(), tmp, qs, netns_base, problems)
        for q in qs:
            for log in ("vmmd.log", "poold.log", "poold/warm.log"):
                p = os.path.join(q.root, log)
                if os.path.exists(p):
                    with open(p, errors="replace") as f:
                        errs = [ln.rstrip() for ln in f if " warn: " in ln or " error: " in ln]
                    if errs:
                        print("%s: %d warning/error lines, e.g.:" % (log, len(errs)), file=sys.stderr)
                        for e in errs[:5]:
                            print("   " + e[:240], file=sys.stderr)
        if args.keep:
            print("kept %s" % tmp, file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    print("# %s, %.0f s in all, caches %s" % (time.strftime("%Y-%m-%d %H:%M"), time.time() - started,
                                              "dropped before each reading" if drop else "not dropped"))
    if dens:
        print_density(args, dens, drop)
    if hold:
        print("# hold part: idle before %.0f%%, during %.0f%%" % (hold.get("idle_before", 0), hold.get("idle_during", 0)))
        print_hold(args, hold)
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump({"density": dens, "hold": hold, "problems": problems}, f, indent=1, default=str)
    if problems:
        print("\nproblems:")
        for p in problems:
            print("  " + p)
        sys.exit(1)


if __name__ == "__main__":
    main()
