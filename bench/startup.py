#!/usr/bin/python3
"""Start-up time of `run` of a busybox /bin/true bundle: qctl vs runc vs crun.

Interleaved rounds (qctl runc crun qctl runc crun ...), one unrecorded
warm-up each, after waiting for a quiet machine (>= 85% idle over 3 s from
/proc/stat); the idle share during the run is recorded.  Prints min/median/
max per runtime and the median of the per-round ratios qctl/crun and
qctl/runc.  crun refuses this hybrid cgroup host, so it runs in a private
mount namespace with /sys/fs/cgroup/unified unmounted (nothing changes on
the host).  Each runtime gets its own --root and unique ids.

    sudo /usr/bin/python3 bench/startup.py [--rounds 20] [--qctl PATH] [--only qwarm,crun] [--plot out.png] [--tmpfs]

--tmpfs: every runtime's root and the bundle on a tmpfs mounted for the run
(as /run is on a systemd host); by default under /tmp, whatever that is.

qctl is the cold path (QUIVER_NO_WARM=1); qwarm has a poold on its root and
starts from a warm supervisor (the pool is refilled between rounds, untimed).
"""

import argparse
import glob
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time


def cpu_times():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]
    return idle, sum(v)


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


def make_bundle(d):
    rootfs = os.path.join(d, "rootfs")
    os.makedirs(os.path.join(rootfs, "bin"))
    for sub in ("proc", "sys", "dev", "tmp"):
        os.makedirs(os.path.join(rootfs, sub))
    shutil.copy2("/bin/busybox", os.path.join(rootfs, "bin", "busybox"))
    for a in ("true", "sh"):
        os.symlink("busybox", os.path.join(rootfs, "bin", a))
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "system"))
    from conftest import default_config  # the same config.json as the system tests
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(default_config(["/bin/true"]), f, indent=1)


def bench_tmpdir(prefix, tmpfs, size):
    """A temp dir for the runtimes' roots and the bundles, on a tmpfs
    mounted there when tmpfs (as /run is on a systemd host).  Returns it and
    the type of the filesystem it is on."""
    tmp = tempfile.mkdtemp(prefix=prefix)
    if tmpfs:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=0700,size=" + size, prefix.strip("-"), tmp],
                       check=True)
    fstype = subprocess.run(["findmnt", "-n", "-o", "FSTYPE", "--target", tmp], stdout=subprocess.PIPE,
                            text=True).stdout.strip()
    return tmp, fstype or "?"


def remove_bench_tmpdir(tmp, tmpfs):
    """rm -rf of bench_tmpdir's dir, and its tmpfs: False when that does not
    unmount (still in use)."""
    shutil.rmtree(tmp, ignore_errors=True)
    if not tmpfs:
        return True
    if subprocess.run(["umount", tmp]).returncode != 0:
        return False
    os.rmdir(tmp)
    return True


def newest_qctl():
    here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    cands = [p for p in glob.glob(os.path.join(here, "build*", "bin", "qctl")) if os.access(p, os.X_OK)]
    return max(cands, key=os.path.getmtime) if cands else None


# crun refuses this hybrid cgroup host: run it with the v2 mount hidden in a
# private mount namespace (BENCHMARKING.md).
CRUN_WRAPPER = ["unshare", "-m", "--propagation", "private", "sh", "-c",
                'umount /sys/fs/cgroup/unified; exec "$0" "$@"', "crun"]


def wait_pool_full(qctl, root, seconds=10.0):
    """Until poold's warm pool is back at its high watermark (not timed)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        r = subprocess.run([qctl, "--root", root, "pool", "status", "--json"], stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL, text=True)
        if r.returncode == 0:
            warm = [p for p in json.loads(r.stdout)["pools"] if p["kind"] == "warm"][0]
            if warm["ready"] >= warm["high"]:
                return
        time.sleep(0.05)
    print("warning: the warm pool did not refill within %.0f s" % seconds, file=sys.stderr)


class Runner:
    def __init__(self, name, argv_prefix, root, env=None):
        self.name = name
        self.prefix = argv_prefix
        self.root = root
        self.env = env
        self.n = 0
        self.times = []

    def once(self, bundle):
        self.n += 1
        cid = "bench-%s-%d-%d" % (self.name, os.getpid(), self.n)
        argv = self.prefix + ["--root", self.root, "run", "--bundle", bundle, cid]
        t0 = time.perf_counter()
        r = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                           env=self.env)
        dt = time.perf_counter() - t0
        if r.returncode != 0:
            raise SystemExit("%s failed (%d): %s" % (" ".join(argv), r.returncode, r.stderr.decode()[-500:]))
        return dt

    def cleanup(self):
        r = subprocess.run(self.prefix + ["--root", self.root, "list", "-q"], stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL, text=True)
        for cid in r.stdout.split():
            subprocess.run(self.prefix + ["--root", self.root, "delete", "--force", cid],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--qctl", default=None, help="qctl binary (default: newest build*/bin/qctl)")
    ap.add_argument("--only", default=None, help="comma-separated subset of qctl,qwarm,runc,crun")
    ap.add_argument("--plot", default=None, help="write a PNG with gnuplot, if installed")
    ap.add_argument("--idle", type=float, default=85.0)
    ap.add_argument("--tmpfs", action="store_true", help="roots and bundle on a tmpfs (as /run on most hosts)")
    args = ap.parse_args()

    tmp, fstype = bench_tmpdir("quiver-bench-", args.tmpfs, "1g")
    bundle = os.path.join(tmp, "bundle")
    make_bundle(bundle)
    runners = []
    want = set(args.only.split(",")) if args.only else {"qctl", "qwarm", "runc", "crun"}
    qctl = args.qctl or newest_qctl()
    if not qctl:
        want -= {"qctl", "qwarm"}
        print("no qctl found; measuring the peers only", file=sys.stderr)
    # qctl: the cold path; qwarm: the same with a poold keeping warm
    # supervisors on its root (a pool as deep as a round needs, refilled
    # between rounds).
    if "qctl" in want:
        runners.append(Runner("qctl", [qctl], os.path.join(tmp, "root-qctl"),
                              env=dict(os.environ, QUIVER_NO_WARM="1")))
    if "qwarm" in want:
        wroot = os.path.join(tmp, "root-qwarm")
        conf = os.path.join(tmp, "poold.json")
        with open(conf, "w") as f:
            json.dump({"refill_per_second": 100,
                       "pools": {"warm": {"low": 4, "high": 4}, "cgroup": {"low": 4, "high": 4},
                                 "netns": {"low": 4, "high": 4}, "layer": {"low": 0, "high": 0}}}, f)
        subprocess.run([qctl, "--root", wroot, "pool", "start", "--config", conf], check=True,
                       stdout=subprocess.DEVNULL)
        runners.append(Runner("qwarm", [qctl], wroot))
    if "runc" in want:
        runners.append(Runner("runc", ["runc"], os.path.join(tmp, "root-runc")))
    if "crun" in want:
        runners.append(Runner("crun", CRUN_WRAPPER, os.path.join(tmp, "root-crun")))
    # crun's wrapper (a private mount namespace, the umount, a shell) costs
    # time of its own: measure it alone, interleaved with the rest, so the
    # report can show crun with and without it.
    wrapper = CRUN_WRAPPER[:-1] + ["/bin/true"] if "crun" in want else None
    wrapper_times = []
    try:
        for r in runners:
            r.once(bundle)  # warm-up, not recorded
        idle_before = wait_quiet(args.idle)
        t0 = cpu_times()
        for _ in range(args.rounds):
            for r in runners:
                if r.name == "qwarm":
                    wait_pool_full(qctl, r.root)
                r.times.append(r.once(bundle))
            if wrapper:
                w0 = time.perf_counter()
                subprocess.run(wrapper, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
                wrapper_times.append(time.perf_counter() - w0)
        idle_during = idle_share(t0, cpu_times())
    finally:
        for r in runners:
            r.cleanup()
        for r in runners:
            if r.name in ("qctl", "qwarm"):
                for what in (["pool", "stop"], ["daemons", "stop"]):
                    subprocess.run([qctl, "--root", r.root] + what,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if not remove_bench_tmpdir(tmp, args.tmpfs):
            print("warning: the tmpfs on %s did not unmount (still in use)" % tmp, file=sys.stderr)

    print("# %s, %d interleaved rounds, idle before %.1f%%, during %.1f%%; roots on %s"
          % (time.strftime("%Y-%m-%d %H:%M"), args.rounds, idle_before, idle_during, fstype))
    print("%-6s %9s %9s %9s   (ms, `run` of busybox /bin/true)" % ("", "min", "median", "max"))
    by = {r.name: r for r in runners}
    for r in runners:
        ms = [t * 1000 for t in r.times]
        print("%-6s %9.1f %9.1f %9.1f" % (r.name, min(ms), statistics.median(ms), max(ms)))
    for q in ("qctl", "qwarm"):
        for peer in ("crun", "runc"):
            if q in by and peer in by:
                ratios = [a / b for a, b in zip(by[q].times, by[peer].times)]
                print("median per-round ratio %s/%s: %.2f" % (q, peer, statistics.median(ratios)))
    if "runc" in by and "crun" in by:
        ratios = [a / b for a, b in zip(by["runc"].times, by["crun"].times)]
        print("median per-round ratio runc/crun: %.2f" % statistics.median(ratios))
    if wrapper_times and "crun" in by:
        net = [c - w for c, w in zip(by["crun"].times, wrapper_times)]
        print("crun's wrapper alone (unshare + umount + sh, no crun): median %.1f ms"
              % (statistics.median(wrapper_times) * 1000))
        print("crun minus its wrapper, per round: median %.1f ms" % (statistics.median(net) * 1000))
        for q in ("qctl", "qwarm"):
            if q in by:
                ratios = [a / b for a, b in zip(by[q].times, net)]
                print("median per-round ratio %s/(crun minus wrapper): %.2f" % (q, statistics.median(ratios)))
    # The benchmark itself keeps about one core busy: expect at most
    # 100 - 100/ncpu % idle; much less means someone else was running.
    expect = 100.0 - 100.0 / (os.cpu_count() or 1)
    if idle_during < expect - 15.0:
        print("warning: the machine was busy during the run (%.1f%% idle, expected ~%.0f%%); repeat it"
              % (idle_during, expect))

    if args.plot and shutil.which("gnuplot"):
        with tempfile.NamedTemporaryFile("w", suffix=".dat", delete=False) as f:
            for i in range(args.rounds):
                f.write("%d %s\n" % (i + 1, " ".join("%.3f" % (r.times[i] * 1000) for r in runners)))
            dat = f.name
        plots = ", ".join("'%s' using 1:%d with linespoints title '%s'" % (dat, i + 2, r.name)
                          for i, r in enumerate(runners))
        subprocess.run(["gnuplot", "-e", "set terminal png size 800,450; set output '%s'; "
                        "set xlabel 'round'; set ylabel 'ms'; plot %s" % (args.plot, plots)])
        os.unlink(dat)


if __name__ == "__main__":
    main()
