#!/usr/bin/python3
"""iod (issue 4): what serving the sandboxes' file syscalls from a host
daemon costs and gains, against crun and Quiver's pass-through, in the same
run.

Runners (each a `run` of a bundle over one shared rootfs, see make_rootfs):
  crun            crun run (through its unshare wrapper, startup.py)
  quiver          qctl run, no iod annotation: path syscalls go straight to
                  the host kernel (the policy's PASS_IO)
  quiver-iod      qctl run, annotation io.quiver.iod=on: path syscalls via
                  seccomp notification -> supervisor -> ring -> iod
  quiver-offload  qctl run, io.quiver.iod=offload-all: also read/write/
                  pread64/pwrite64/readv/writev/fsync on regular files
  native          the same program on the host, no sandbox (a reference)

Figures (--figs 1,2,3,4):
 1. openat+close latency: `iod_lat open N` (bench/iod_lat.c, static)
    loops openat(AT_FDCWD, "/etc/passwd", O_RDONLY|O_CLOEXEC) + close and
    prints ns per iteration.  Goal: quiver-iod <= 8 us.
    1b: `iod_lat fstat N`, fstat() of an open fd (glibc's newfstatat(fd,
    "", AT_EMPTY_PATH), which traps and is served by the supervisor alone):
    the cost of a trap without the trip to iod.  No goal.
 2. `python3 -c 'import json, email, http.client, asyncio'` (host /usr
    bind-mounted read-only): in-sandbox wall time (`iod_lat time`, fork to
    exit inside the sandbox) and the `run` command's wall time.  Goal:
    quiver-iod <= 1.5 x crun.
 3. fio 4 KiB random reads, psync, a 64 MiB file in the rootfs (warm page
    cache, --invalidate=0), IOPS.  Goal: quiver-iod >= 0.95 x crun
    (quiver-offload is shown against the same goal).
 4. 32 sandboxes at once, each `iod_lat stat N` (N stat() over 5 paths,
    all starting at one CLOCK_MONOTONIC instant): total stat/s = 32 N /
    (last end - first start).  quiver-iod with iod `--mode uring` and with
    `--mode sync` (iod restarted between the two, untimed), plus iod's
    batch-size and latency histograms (metrics deltas over the rounds).

Each figure: one unrecorded warm-up per runner, a quiet-machine wait
(>= --idle % idle over 3 s), then --rounds interleaved rounds (A B C D A B
...); medians and the median of the per-round ratios.  iod runs in the
foreground under this script (--root = qctl's root, --metrics
127.0.0.1:0); its ops counters are read around each figure to check that
the iod runners really went through it.  Without build*/bin/quiver-iod the
iod runners are skipped with a message.

    sudo /usr/bin/python3 bench/iod.py [--rounds 15] [--quick] [--figs 1,2,3,4]
        [--only crun,quiver,quiver-iod,quiver-offload,native] [--bin build/bin]
        [--sandboxes 32] [--json-out F] [--idle 85]

Build first: make (or make BUILD=...; --bin DIR).  Needs gcc (static
glibc), crun and fio (`make deps`).
"""

import argparse
import glob
import json
import os
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "tests", "system"))
from startup import CRUN_WRAPPER, cpu_times, idle_share, wait_quiet  # noqa: E402
import burst  # noqa: E402
from conftest import default_config  # noqa: E402  (the system tests' config.json)

ANN = "io.quiver.iod"
GOAL_OPEN_US = 8.0
GOAL_PY = 1.5
GOAL_FIO = 0.95
PY_CMD = "import json, email, http.client, asyncio"
HOST_PYTHON = "/usr/bin/python3"
FIO = "/usr/bin/fio"
FIO_FILE = "/data/fio.dat"
FIO_MIB = 64
ENV = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm",
       "PYTHONDONTWRITEBYTECODE=1", "LANG=C.UTF-8"]
QUIVER_RUNNERS = ("quiver", "quiver-iod", "quiver-iod-nocache", "quiver-offload")
IOD_RUNNERS = ("quiver-iod", "quiver-iod-nocache", "quiver-offload")
NOCACHE = {ANN: "on", "io.quiver.iod.cache": "off"}  # iod without the guest's metadata cache
ALL_RUNNERS = ("native", "crun") + QUIVER_RUNNERS


class BenchError(Exception):
    pass


# ---- binaries, rootfs, bundles ----

def find_bindir(arg):
    need = ("qctl", "quiver-guest", "quiver-vmmd")

    def complete(d):
        return all(os.access(os.path.join(d, b), os.X_OK) for b in need)
    if arg:
        d = os.path.abspath(arg)
        if not complete(d):
            raise SystemExit("%s: needs %s" % (d, ", ".join(need)))
        return d
    cands = [os.path.abspath(os.path.dirname(p)) for p in glob.glob(os.path.join(HERE, "..", "build*", "bin", "qctl"))]
    cands = [c for c in cands if complete(c)]
    return max(cands, key=lambda c: os.path.getmtime(os.path.join(c, "qctl"))) if cands else None


def compile_iod_lat(outdir):
    out = os.path.join(outdir, "iod_lat")
    r = subprocess.run(["gcc", "-static", "-O2", "-Wall", "-Wextra", "-o", out, os.path.join(HERE, "iod_lat.c")],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0:
        raise SystemExit("gcc -static bench/iod_lat.c failed (glibc's static libs: libc6-dev):\n" + r.stdout)
    return out


def host_mounts(rootfs):
    """/usr, /lib, /lib64 of the host, read-only: a bind mount each, or, where
    the host has a symlink (merged /usr), the same symlink in the rootfs."""
    mounts = []
    for p in ("/usr", "/lib", "/lib64", "/bin", "/sbin"):
        dst = os.path.join(rootfs, p[1:])
        if os.path.islink(p):
            os.symlink(os.readlink(p), dst)
        elif os.path.isdir(p):
            os.makedirs(dst)
            mounts.append({"destination": p, "type": "bind", "source": p,
                           "options": ["rbind", "ro", "nosuid", "nodev"]})
    return mounts


def make_rootfs(tmp, iod_lat, want_fio):
    """One rootfs for every bundle (root.path is absolute): iod_lat, a small
    /etc, the fio file, mount points; the host's /usr comes as a bind mount."""
    rootfs = os.path.join(tmp, "rootfs")
    for d in ("proc", "sys", "dev", "tmp", "etc", "data"):
        os.makedirs(os.path.join(rootfs, d))
    mounts = host_mounts(rootfs)
    shutil.copy2(iod_lat, os.path.join(rootfs, "iod_lat"))
    with open(os.path.join(rootfs, "etc", "passwd"), "w") as f:
        f.write("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n")
    with open(os.path.join(rootfs, "etc", "group"), "w") as f:
        f.write("root:x:0:\nnogroup:x:65534:\n")
    if want_fio:
        # Real data (a sparse file would read holes without a page behind them).
        with open(os.path.join(rootfs, FIO_FILE[1:]), "wb") as f:
            chunk = os.urandom(1 << 20)
            for _ in range(FIO_MIB):
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
    mounts.append({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
                   "options": ["nosuid", "nodev", "mode=1777", "size=16m"]})
    return rootfs, mounts


def make_image_rootfs(tmp, iod_lat):
    """A rootfs with python3 in it, as an image would have it: the
    interpreter, its standard library and the shared objects they load,
    copied (no bind mount of the host's /usr), so that the read-only root
    is the one filesystem its lookups walk (--python-image: the case the
    metadata cache is for)."""
    rootfs = os.path.join(tmp, "rootfs-image")
    for d in ("proc", "sys", "dev", "tmp", "etc", "usr/bin", "usr/lib"):
        os.makedirs(os.path.join(rootfs, d))
    for p in ("/lib", "/lib64", "/bin", "/sbin"):
        if os.path.islink(p):
            os.symlink(os.readlink(p), os.path.join(rootfs, p[1:]))
    py = os.path.realpath(HOST_PYTHON)
    shutil.copy2(py, os.path.join(rootfs, py[1:]))
    os.symlink(os.path.basename(py), os.path.join(rootfs, "usr/bin/python3"))
    stdlib = "/usr/lib/" + os.path.basename(py)
    shutil.copytree(stdlib, os.path.join(rootfs, stdlib[1:]), symlinks=True)
    objs = [py] + glob.glob(os.path.join(stdlib, "lib-dynload", "*.so"))
    libs = set()
    for o in objs:
        out = subprocess.run(["ldd", o], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True).stdout
        for m in re.finditer(r"(/\S+) \(0x", out):
            libs.add(m.group(1))
    for lib in libs:
        real = os.path.realpath(lib)
        for p in {lib, real}:
            dst = os.path.join(rootfs, os.path.realpath(os.path.dirname(p))[1:], os.path.basename(p))
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            if not os.path.lexists(dst):
                shutil.copy2(real, dst)
    shutil.copy2(iod_lat, os.path.join(rootfs, "iod_lat"))
    for name in ("passwd", "group"):
        shutil.copy2(os.path.join(tmp, "rootfs", "etc", name), os.path.join(rootfs, "etc", name))
    mounts = [{"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
               "options": ["nosuid", "nodev", "mode=1777", "size=16m"]}]
    return rootfs, mounts


def write_bundle(d, rootfs, mounts, args, annotation):
    os.makedirs(d)
    cfg = default_config(args)
    cfg["root"] = {"path": rootfs, "readonly": True}
    cfg["process"]["env"] = list(ENV)
    cfg["mounts"] = cfg["mounts"] + mounts
    if annotation:
        cfg["annotations"] = dict(annotation) if isinstance(annotation, dict) else {ANN: annotation}
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f, indent=1)
    return d


# ---- iod ----

class Iod:
    """quiver-iod in the foreground, our child, on qctl's root."""

    def __init__(self, path, root, log, extra=()):
        self.path, self.root, self.log = path, root, log
        self.extra = list(extra)  # --iod-args
        self.proc = None
        self.mode = None

    def start(self, mode, timeout=15.0):
        for f in ("iod.metrics",):
            try:
                os.unlink(os.path.join(self.root, f))
            except FileNotFoundError:
                pass
        argv = [self.path, "--root", self.root, "--foreground", "--log", self.log,
                "--metrics", "127.0.0.1:0", "--mode", mode] + self.extra
        with open(self.log + ".stderr", "a") as errf:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=errf, stderr=errf)
        self.mode = mode
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if self.proc.poll() is not None:
                rc, self.proc = self.proc.returncode, None
                raise BenchError("%s exited %s: %s%s" % (" ".join(argv), rc, self.stderr_tail(),
                                                          self.log_tail()))
            if os.path.exists(os.path.join(self.root, "iod.sock")) and self.metrics_url():
                try:
                    self.metrics()
                    return time.monotonic() - t0
                except (OSError, ValueError):
                    pass
            time.sleep(0.02)
        self.stop()
        raise BenchError("quiver-iod --mode %s: no iod.sock and metrics after %.0f s%s"
                         % (mode, timeout, self.log_tail()))

    def stderr_tail(self):
        try:
            with open(self.log + ".stderr", errors="replace") as f:
                return f.read().strip()[-500:]
        except OSError:
            return ""

    def log_tail(self, n=15):
        try:
            with open(self.log) as f:
                lines = f.read().splitlines()[-n:]
            return "\n  iod log: " + "\n  iod log: ".join(lines) if lines else ""
        except OSError:
            return ""

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=15.0):
        """SIGTERM to our own iod; returns a problem string or None."""
        if self.proc is None:
            return None
        p, self.proc = self.proc, None
        if p.poll() is not None:
            return "quiver-iod (--mode %s) had exited with %s before it was stopped%s" % (
                self.mode, p.returncode, self.log_tail())
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            return "quiver-iod (pid %d) still running %.0f s after SIGTERM; killed" % (p.pid, timeout)
        if p.returncode not in (0, -signal.SIGTERM):
            return "quiver-iod exited %d on SIGTERM%s" % (p.returncode, self.log_tail())
        if os.path.exists(os.path.join(self.root, "iod.sock")):
            return "quiver-iod left %s/iod.sock behind" % self.root
        return None

    def metrics_url(self):
        try:
            with open(os.path.join(self.root, "iod.metrics")) as f:
                u = f.read().strip()
        except OSError:
            return None
        if not u:
            return None
        return u if "://" in u else "http://%s/metrics" % u

    def metrics(self):
        url = self.metrics_url()
        if not url:
            raise OSError("no iod.metrics")
        with urllib.request.urlopen(url, timeout=5) as r:
            return parse_prom(r.read().decode())


PROM_LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)')
PROM_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_prom(text):
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = PROM_LINE.match(line)
        if not m:
            continue
        labels = tuple(sorted(PROM_LABEL.findall(m.group(2) or "")))
        out[(m.group(1), labels)] = float(m.group(3))
    return out


def mdelta(a, b):
    """Metrics b - a (series missing from a count from 0)."""
    if a is None or b is None:
        return None
    return {k: v - a.get(k, 0.0) for k, v in b.items()}


def madd(acc, d):
    if d is None:
        return acc
    acc = dict(acc or {})
    for k, v in d.items():
        acc[k] = acc.get(k, 0.0) + v
    return acc


def ops_by_op(d, name="quiver_iod_ops_total"):
    out = {}
    for (n, labels), v in (d or {}).items():
        if n == name and v:
            op = dict(labels).get("op", "?")
            out[op] = out.get(op, 0) + v
    return out


def histogram(d, name):
    """Buckets (le, cumulative count) summed over the other labels, _sum, _count."""
    if not d:
        return None
    buckets, s, c = {}, 0.0, 0.0
    for (n, labels), v in d.items():
        if n == name + "_bucket":
            le = dict(labels).get("le")
            le = float("inf") if le == "+Inf" else float(le)
            buckets[le] = buckets.get(le, 0.0) + v
        elif n == name + "_sum":
            s += v
        elif n == name + "_count":
            c += v
    if not buckets:
        return None
    return {"buckets": sorted(buckets.items()), "sum": s, "count": c}


def hquantile(h, q):
    """Upper bound of the bucket holding the q-quantile (a histogram's best)."""
    if not h or not h["count"]:
        return None
    want = q * h["count"]
    for le, cum in h["buckets"]:
        if cum >= want:
            return le
    return float("inf")


def fmt_le(v, scale=1.0, unit=""):
    if v is None:
        return "–"
    if v == float("inf"):
        return "> last bucket"
    return "≤ %g%s" % (v * scale, unit)


# ---- runners ----

class Runner:
    def __init__(self, name, prefix, root, annotation=None, env=None):
        self.name, self.prefix, self.root, self.annotation, self.env = name, prefix, root, annotation, env
        self.n = 0
        self.tag = "iodb%d" % os.getpid()

    def argv(self, bundle, cid):
        return self.prefix + ["--root", self.root, "run", "--bundle", bundle, cid]

    def start(self, bundle):
        """Popen of one `run`; stdout and stderr to pipes."""
        self.n += 1
        cid = "%s-%s-%d" % (self.tag, self.name, self.n)
        argv = self.argv(bundle, cid)
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env=self.env)
        p.argv, p.cid = argv, cid
        return p

    def finish(self, p, t0, timeout):
        try:
            out, err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            # The sandbox's processes hold the pipes even once `run` is
            # gone: kill the sandbox, not only the command.
            p.kill()
            subprocess.run(self.prefix + ["--root", self.root, "delete", "--force", p.cid],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
            try:
                out, err = p.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                out, err = "", "(its output still held open by something)"
            raise BenchError("%s: no exit after %.0f s (rc %s), sandbox deleted; stderr: %s"
                             % (" ".join(p.argv), timeout, p.returncode, (err or "").strip()[-400:]))
        dt = time.perf_counter() - t0
        if p.returncode != 0:
            raise BenchError("%s exited %d: %s" % (" ".join(p.argv), p.returncode,
                                                   (err.strip() or out.strip())[-600:]))
        return dt, out

    def run(self, bundle, timeout=120.0):
        t0 = time.perf_counter()
        return self.finish(self.start(bundle), t0, timeout)

    def cleanup(self):
        r = subprocess.run(self.prefix + ["--root", self.root, "list", "-q"], stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL, text=True)
        for cid in r.stdout.split():
            subprocess.run(self.prefix + ["--root", self.root, "delete", "--force", cid],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


class Native:
    """The same command on the host, no sandbox; `args` use the rootfs's paths,
    mapped to the host's."""
    name = "native"
    annotation = None

    def __init__(self, rootfs):
        self.rootfs = rootfs

    def host_args(self, args):
        out = []
        for a in args:
            if a == "/iod_lat":
                a = os.path.join(self.rootfs, "iod_lat")
            elif a.startswith("--filename="):
                a = "--filename=" + os.path.join(self.rootfs, a.split("=", 1)[1].lstrip("/"))
            out.append(a)
        return out

    def run(self, args, timeout=120.0):
        env = dict(e.split("=", 1) for e in ENV)
        t0 = time.perf_counter()
        r = subprocess.run(self.host_args(args), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, env=env, timeout=timeout, cwd="/")
        dt = time.perf_counter() - t0
        if r.returncode != 0:
            raise BenchError("native %s exited %d: %s" % (" ".join(args), r.returncode, r.stderr.strip()[-600:]))
        return dt, r.stdout


def kv_line(out, mode):
    """The key=value pairs of iod_lat's last "iod_lat MODE" line."""
    lines = [ln for ln in out.splitlines() if ln.startswith("iod_lat %s " % mode)]
    if not lines:
        raise BenchError("no \"iod_lat %s\" line in the output: %r" % (mode, out[-300:]))
    return dict(kv.split("=", 1) for kv in lines[-1].split()[2:])


class Bench:
    def __init__(self, args, tmp, rootfs, mounts, runners, native, iod):
        self.args, self.tmp, self.rootfs, self.mounts = args, tmp, rootfs, mounts
        self.runners, self.native, self.iod = runners, native, iod
        self.bundles = {}
        self.fig_rootfs = {}  # fig -> (rootfs, mounts) other than the shared one
        self.problems = []

    def bundle(self, runner, fig, cmd):
        key = (runner.name, fig)
        if key not in self.bundles:
            rootfs, mounts = self.fig_rootfs.get(fig, (self.rootfs, self.mounts))
            self.bundles[key] = write_bundle(os.path.join(self.tmp, "bundles", "%s-%s" % (fig, runner.name)),
                                             rootfs, mounts, cmd, runner.annotation)
        return self.bundles[key]

    def exec_one(self, r, fig, cmd, timeout=120.0):
        if r is self.native:
            return r.run(cmd, timeout)
        return r.run(self.bundle(r, fig, cmd), timeout)

    def metrics(self):
        if not self.iod or not self.iod.alive():
            return None
        try:
            return self.iod.metrics()
        except (OSError, ValueError) as e:
            self.problems.append("iod metrics: %s" % e)
            return None

    def rounds(self, fig, runners, cmd, parse):
        """Warm-up, quiet wait, interleaved rounds: ({name: [value per round]},
        info).  A runner that fails is dropped for the rest of the figure
        (its list stops there) and the failure goes to the problems."""
        vals = {r.name: [] for r in runners}
        live = list(runners)
        for r in list(live):
            try:
                parse(self.exec_one(r, fig, cmd))
            except (BenchError, subprocess.TimeoutExpired, ValueError, KeyError) as e:
                self.fail(fig, r, live, "warm-up: %s" % e)
        info = {"idle_before": wait_quiet(self.args.idle)}
        m0 = self.metrics()
        c0 = cpu_times()
        for i in range(self.args.rounds):
            for r in list(live):
                try:
                    vals[r.name].append(parse(self.exec_one(r, fig, cmd)))
                except (BenchError, subprocess.TimeoutExpired, ValueError, KeyError) as e:
                    self.fail(fig, r, live, "round %d: %s" % (i + 1, e))
            print("  fig %s: round %d/%d" % (fig, i + 1, self.args.rounds), file=sys.stderr, flush=True)
        info["idle_during"] = idle_share(c0, cpu_times())
        info["iod"] = mdelta(m0, self.metrics())
        return vals, info

    def fail(self, fig, r, live, msg):
        print("fig %s: %s failed, dropped from this figure: %s" % (fig, r.name, msg), file=sys.stderr, flush=True)
        self.problems.append("fig %s, %s: %s" % (fig, r.name, msg))
        live.remove(r)


# ---- report helpers ----

def mmm(v, scale=1.0, fmt="%.1f"):
    if not v:
        return "–", "–", "–"
    return tuple(fmt % (x * scale) for x in (min(v), statistics.median(v), max(v)))


def pair_ratio(a, b):
    """Median of the per-round ratios a/b (rounds where both ran)."""
    n = min(len(a), len(b))
    if not n:
        return None
    return statistics.median(x / y for x, y in zip(a[:n], b[:n]) if y)


def fmt_ratio(x):
    return "–" if x is None else "%.2f" % x


def verdict(ok):
    return "met" if ok else "**NOT met**"


def header(title, info, args):
    print("\n### %s\n" % title)
    print("%d rounds, idle before %.1f%%, during %.1f%%\n"
          % (args.rounds, info["idle_before"], info["idle_during"]))


def iod_check(info, names, min_ops, what):
    """A line saying whether iod served what the iod runners asked for."""
    ops = ops_by_op(info.get("iod"))
    if info.get("iod") is None or not names:
        return None
    total = sum(ops.values())
    s = ", ".join("%s %d" % (k, v) for k, v in sorted(ops.items(), key=lambda kv: -kv[1])[:8])
    errs = ops_by_op(info.get("iod"), "quiver_iod_errors_total")
    line = "iod's ops during the rounds (%s): %s; answered with an errno: %d" % (
        ", ".join(names), s or "none", sum(errs.values()))
    if total < min_ops:
        line += " — **fewer than the %d %s the iod runners made: were they served by iod?**" % (min_ops, what)
    return line


# ---- 1. openat+close ----

def us_table(rs, vals):
    """Min / median / max per runner, and the ratios to native and crun."""
    print("| runner | min | median | max | / native | / crun |")
    print("|---|---|---|---|---|---|")
    for r in rs:
        v = vals[r.name]
        print("| %s | %s | %s | %s | %s | %s |" % ((r.name,) + mmm(v, fmt="%.2f") + (
            fmt_ratio(pair_ratio(v, vals["native"])) if r.name != "native" else "",
            fmt_ratio(pair_ratio(v, vals["crun"])) if r.name not in ("native", "crun") and "crun" in vals else "")))


def fig_open(b, runners):
    n = b.args.open_n
    cmd = ["/iod_lat", "open", str(n)]
    rs = [b.native] + [r for r in runners if r.name in ("crun", "quiver", "quiver-iod")]
    vals, info = b.rounds("1", rs, cmd, lambda res: float(kv_line(res[1], "open")["ns_per_op"]) / 1000.0)
    header("1. openat(\"/etc/passwd\") + close, µs per iteration (`iod_lat open %d`)" % n, info, b.args)
    us_table(rs, vals)
    if vals.get("quiver-iod"):
        m = statistics.median(vals["quiver-iod"])
        print("\ngoal: quiver-iod ≤ %.0f µs (native ~1.8 µs, bare seccomp notification ~11 µs): %s (%.2f µs)"
              % (GOAL_OPEN_US, verdict(m <= GOAL_OPEN_US), m))
        line = iod_check(info, ["quiver-iod"], n * len(vals["quiver-iod"]), "openat")
        if line:
            print(line)
    # fstat(fd): glibc's newfstatat(fd, "", AT_EMPTY_PATH) traps like a path
    # call and is served by the supervisor alone (on a copy of the fd): the
    # cost of a trap without the trip to iod.
    cmd = ["/iod_lat", "fstat", str(n)]
    fvals, finfo = b.rounds("1b", rs, cmd, lambda res: float(kv_line(res[1], "fstat")["ns_per_op"]) / 1000.0)
    header("1b. fstat(fd) of an open file, µs per call (`iod_lat fstat %d`)" % n, finfo, b.args)
    us_table(rs, fvals)
    print("\nquiver-iod: answered by the supervisor (no trip to iod); no goal of its own, "
          "a part of every python3 start (hundreds of fstat calls).")
    return {"vals": vals, "info": info, "fstat": fvals, "fstat_info": finfo}


# ---- 2. python imports ----

def fig_python(b, runners):
    cmd = ["/iod_lat", "time", HOST_PYTHON, "-c", PY_CMD]
    rs = [b.native] + [r for r in runners if r.name != "native"]

    def parse(res):
        return res[0], float(kv_line(res[1], "time")["ns"]) / 1e9

    raw, info = b.rounds("2", rs, cmd, parse)
    inside = {k: [x[1] for x in v] for k, v in raw.items()}
    wall = {k: [x[0] for x in v] for k, v in raw.items()}
    header("2. `python3 -c '%s'`, ms" % PY_CMD, info, b.args)
    print("| runner | in sandbox min | median | max | / crun | `run` wall min | median | max | / crun |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rs:
        ri = fmt_ratio(pair_ratio(inside[r.name], inside["crun"])) if r.name not in ("crun", "native") \
            and "crun" in inside else ""
        rw = fmt_ratio(pair_ratio(wall[r.name], wall["crun"])) if r.name not in ("crun", "native") \
            and "crun" in wall else ""
        print("| %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            (r.name,) + mmm(inside[r.name], 1000) + (ri,) + mmm(wall[r.name], 1000) + (rw,)))
    print("\n\"in sandbox\": fork + exec + exit of python3, timed by `iod_lat time` inside the sandbox; "
          "`run` wall: the whole `run` command (native: the host process), crun through its unshare wrapper.")
    for name in IOD_RUNNERS:
        if inside.get(name) and inside.get("crun"):
            ri, rw = pair_ratio(inside[name], inside["crun"]), pair_ratio(wall[name], wall["crun"])
            print("goal: %s ≤ %.1f × crun: in sandbox %s (%.2f), `run` wall %s (%.2f)"
                  % (name, GOAL_PY, verdict(ri <= GOAL_PY), ri, verdict(rw <= GOAL_PY), rw))
    line = iod_check(info, [n for n in IOD_RUNNERS if inside.get(n)],
                     100 * sum(len(inside.get(n, [])) for n in IOD_RUNNERS), "imports")
    if line:
        print(line)
    return {"inside": inside, "wall": wall, "info": info}


# ---- 3. fio ----

def fio_cmd(runtime):
    return [FIO, "--name=randread", "--filename=" + FIO_FILE, "--rw=randread", "--bs=4k",
            "--size=%dm" % FIO_MIB, "--ioengine=psync", "--runtime=%g" % runtime, "--time_based",
            "--ramp_time=%g" % min(1.0, runtime / 4), "--readonly", "--thread", "--invalidate=0",
            "--randrepeat=1", "--norandommap", "--disk_util=0", "--output-format=json"]


def fig_fio(b, runners):
    cmd = fio_cmd(b.args.fio_runtime)
    rs = [b.native] + [r for r in runners if r.name != "native"]

    def parse(res):
        out = res[1]
        j = json.loads(out[out.index("{"):])
        job = j["jobs"][0]
        if job.get("error"):
            raise BenchError("fio job error %s" % job["error"])
        return float(job["read"]["iops"])

    vals, info = b.rounds("3", rs, cmd, parse)
    header("3. fio 4 KiB random reads, psync, %d MiB file in the rootfs (page cache warm), %g s, kIOPS"
           % (FIO_MIB, b.args.fio_runtime), info, b.args)
    print("| runner | min | median | max | / crun | / native |")
    print("|---|---|---|---|---|---|")
    for r in rs:
        v = vals[r.name]
        print("| %s | %s | %s | %s | %s | %s |" % ((r.name,) + mmm(v, 1e-3) + (
            fmt_ratio(pair_ratio(v, vals["crun"])) if r.name not in ("crun", "native") and "crun" in vals else "",
            fmt_ratio(pair_ratio(v, vals["native"])) if r.name != "native" else "")))
    print("\ncommand: `%s`" % " ".join(cmd))
    for name in IOD_RUNNERS:
        if vals.get(name) and vals.get("crun"):
            x = pair_ratio(vals[name], vals["crun"])
            print("goal: %s ≥ %.2f × crun: %s (%.2f)" % (name, GOAL_FIO, verdict(x >= GOAL_FIO), x))
    if vals.get("quiver-offload"):
        ops = ops_by_op(info.get("iod"))
        preads = sum(v for k, v in ops.items() if k.startswith(("read", "pread")) and k != "readlink")
        if info.get("iod") is not None:
            print("iod's read ops during the rounds: %d (%s)" % (preads, ", ".join(
                "%s %d" % kv for kv in sorted(ops.items(), key=lambda kv: -kv[1])[:8])))
            if preads < 1000 * len(vals["quiver-offload"]):
                print("**quiver-offload's preads do not show in iod's counters: were they offloaded?**")
    return {"vals": vals, "info": info, "cmd": cmd}


# ---- 4. stat storm ----

def storm_round(b, r, bundle_for, k, n, lead):
    """k sandboxes of `iod_lat stat n START`; returns (stat/s, late count, spans)."""
    start = time.monotonic_ns() + int(lead * 1e9)
    cmd = ["/iod_lat", "stat", str(n), str(start)]
    bundle = bundle_for(cmd)
    t0 = time.perf_counter()
    procs = [r.start(bundle) for _ in range(k)]
    outs, errs = [], []
    for p in procs:
        try:
            # one deadline for all: 32 hung sandboxes must not cost 32 timeouts
            outs.append(r.finish(p, t0, max(1.0, t0 + lead + 120 - time.perf_counter()))[1])
        except BenchError as e:
            errs.append(str(e))
    if errs:
        raise BenchError("%d of %d sandboxes failed; first: %s" % (len(errs), k, errs[0]))
    kvs = [kv_line(o, "stat") for o in outs]
    t_first = min(int(x["start_ns"]) for x in kvs)
    t_last = max(int(x["end_ns"]) for x in kvs)
    late = sum(1 for x in kvs if int(x["late_ns"]) > 0)
    return k * n / ((t_last - t_first) / 1e9), late


def fig_storm(b, runners):
    k, n = b.args.sandboxes, b.args.stat_n
    modes = []
    for r in runners:
        if r.name == "crun" or r.name == "quiver":
            modes.append((r.name, r, None))
        elif r.name == "quiver-iod":
            modes += [("quiver-iod uring", r, "uring"), ("quiver-iod sync", r, "sync")]
    vals = {m[0]: [] for m in modes}
    lates = {m[0]: 0 for m in modes}
    hist = {}
    lead = {m[0]: max(2.0, 0.08 * k) for m in modes}
    live = list(modes)

    def bundle_for(r, cmd):
        # a new START in every round: one bundle dir per round.  Without the
        # guest's metadata cache: it would answer four of the five paths
        # itself, and this figure is about iod's batching.
        d = os.path.join(b.tmp, "bundles", "4-%s-%d" % (r.name, time.monotonic_ns()))
        ann = NOCACHE if r.name == "quiver-iod" else r.annotation
        return write_bundle(d, b.rootfs, b.mounts, cmd, ann)

    def one(mode, recorded):
        name, r, iodmode = mode
        if iodmode and (not b.iod.alive() or b.iod.mode != iodmode):
            p = b.iod.stop()
            if p:
                b.problems.append(p)
            b.iod.start(iodmode)
        m0 = b.metrics() if iodmode else None
        rate, late = storm_round(b, r, lambda cmd: bundle_for(r, cmd), k, n, lead[name])
        if late:
            lead[name] *= 1.5  # more time to start them all next round
        if recorded:
            vals[name].append(rate)
            lates[name] += late
            if iodmode:
                hist[name] = madd(hist.get(name), mdelta(m0, b.metrics()))

    for mode in list(live):
        try:
            one(mode, False)
        except (BenchError, subprocess.TimeoutExpired, ValueError, KeyError) as e:
            print("fig 4: %s failed in its warm-up, dropped: %s" % (mode[0], e), file=sys.stderr, flush=True)
            b.problems.append("fig 4, %s: warm-up: %s" % (mode[0], e))
            live.remove(mode)
    info = {"idle_before": wait_quiet(b.args.idle)}
    c0 = cpu_times()
    for i in range(b.args.rounds):
        for mode in list(live):
            try:
                one(mode, True)
            except (BenchError, subprocess.TimeoutExpired, ValueError, KeyError) as e:
                print("fig 4: %s failed, dropped: %s" % (mode[0], e), file=sys.stderr, flush=True)
                b.problems.append("fig 4, %s: round %d: %s" % (mode[0], i + 1, e))
                live.remove(mode)
        print("  fig 4: round %d/%d" % (i + 1, b.args.rounds), file=sys.stderr, flush=True)
    info["idle_during"] = idle_share(c0, cpu_times())
    # leave iod as figures 1-3 expect it
    if b.iod and b.iod.mode != "uring":
        p = b.iod.stop()
        if p:
            b.problems.append(p)
        try:
            b.iod.start("uring")
        except BenchError as e:
            b.problems.append(str(e))

    header("4. %d sandboxes at once, each %d stat() (`iod_lat stat`), total k stat/s" % (k, n), info, b.args)
    print("| runner | min | median | max | / crun | / quiver | late starts |")
    print("|---|---|---|---|---|---|---|")
    for name, _, _ in modes:
        v = vals[name]
        print("| %s | %s | %s | %s | %s | %s | %d |" % ((name,) + mmm(v, 1e-3) + (
            fmt_ratio(pair_ratio(v, vals["crun"])) if name != "crun" and "crun" in vals else "",
            fmt_ratio(pair_ratio(v, vals["quiver"])) if name.startswith("quiver-") and "quiver" in vals else "",
            lates[name])))
    print("\nThroughput = %d × %d / (last end − first start), CLOCK_MONOTONIC read inside the sandboxes; all start "
          "at one instant set ahead of the `run`s (a \"late start\": a sandbox that was not up by then)." % (k, n))
    if vals.get("quiver-iod uring") and vals.get("quiver-iod sync"):
        x = pair_ratio(vals["quiver-iod uring"], vals["quiver-iod sync"])
        print("io_uring's win: quiver-iod uring / sync = **%.2f**" % x)
    if hist:
        print("\n| iod --mode | io_uring_enter calls | SQEs | mean SQEs per enter | p50 | p90 | p99 | mean latency µs | "
              "latency p50 | p99 | iod ops (top) |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for name in ("quiver-iod uring", "quiver-iod sync"):
            d = hist.get(name)
            if d is None:
                continue
            hb = histogram(d, "quiver_iod_batch_size")
            hl = histogram(d, "quiver_iod_latency_seconds")
            ops = ops_by_op(d)
            top = ", ".join("%s %d" % kv for kv in sorted(ops.items(), key=lambda kv: -kv[1])[:4])
            nerr = sum(ops_by_op(d, "quiver_iod_errors_total").values())
            if nerr:
                top += "; %d errno answers" % nerr
            print("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                name.split()[-1],
                "%d" % hb["count"] if hb else "–", "%d" % hb["sum"] if hb else "–",
                "%.2f" % (hb["sum"] / hb["count"]) if hb and hb["count"] else "–",
                fmt_le(hquantile(hb, .5)), fmt_le(hquantile(hb, .9)), fmt_le(hquantile(hb, .99)),
                "%.1f" % (hl["sum"] / hl["count"] * 1e6) if hl and hl["count"] else "–",
                fmt_le(hquantile(hl, .5), 1e6, " µs"), fmt_le(hquantile(hl, .99), 1e6, " µs"), top or "none"))
            expect = k * n * len(vals[name])
            if sum(ops.values()) < expect:
                print("\n**%s: iod counted %d ops for %d stat() calls: were they served by iod?**"
                      % (name, sum(ops.values()), expect))
    return {"vals": vals, "lates": lates, "hist": {k2: {"%s%s" % (n2, dict(l2)): v for (n2, l2), v in d.items()}
                                                  for k2, d in hist.items() if d}, "info": info}


# ---- main ----

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=None, help="interleaved rounds per figure (15; --quick 3)")
    ap.add_argument("--quick", action="store_true", help="a smoke run: 3 rounds, small loops, 1 s of fio")
    ap.add_argument("--figs", default="1,2,3,4")
    ap.add_argument("--only", default=None, help="subset of " + ",".join(ALL_RUNNERS))
    ap.add_argument("--bin", default=None, help="dir with qctl, quiver-guest, quiver-vmmd[, quiver-iod]")
    ap.add_argument("--iod-args", default="", help="more arguments for quiver-iod (\"--spin-us 200\")")
    ap.add_argument("--open-n", type=int, default=None, help="openat+close per run (20000; --quick 2000)")
    ap.add_argument("--stat-n", type=int, default=None, help="stat() per sandbox in fig 4 (30000; --quick 2000)")
    ap.add_argument("--sandboxes", type=int, default=32)
    ap.add_argument("--fio-runtime", type=float, default=None, help="seconds (5; --quick 1)")
    ap.add_argument("--idle", type=float, default=85.0, help="%% idle to wait for before each figure")
    ap.add_argument("--json-out", default=None)
    ap.add_argument("--python-image", action="store_true",
                    help="fig 2: python3 copied into the read-only rootfs instead of the host's /usr bind-mounted")
    args = ap.parse_args()
    q = args.quick
    args.rounds = args.rounds or (3 if q else 15)
    args.open_n = args.open_n or (2000 if q else 20000)
    args.stat_n = args.stat_n or (2000 if q else 30000)
    args.fio_runtime = args.fio_runtime or (1.0 if q else 5.0)
    figs = set(args.figs.split(","))
    if os.geteuid() != 0:
        raise SystemExit("run as root (sudo /usr/bin/python3 bench/iod.py)")
    want = set(args.only.split(",")) if args.only else set(ALL_RUNNERS)
    if want - set(ALL_RUNNERS):
        raise SystemExit("--only: unknown runner(s) %s" % ", ".join(sorted(want - set(ALL_RUNNERS))))
    want |= {"crun"}  # every ratio is against crun
    if "3" in figs and not os.access(FIO, os.X_OK):
        raise SystemExit("%s missing (make deps installs fio)" % FIO)

    bindir = find_bindir(args.bin)
    iod_bin = os.path.join(bindir, "quiver-iod") if bindir else None
    if not bindir:
        print("no build*/bin with qctl: skipping the quiver runners", file=sys.stderr)
        want -= set(QUIVER_RUNNERS)
    elif not os.access(iod_bin, os.X_OK):
        print("no %s (issue 4 not built yet): skipping %s" % (iod_bin, ", ".join(IOD_RUNNERS)), file=sys.stderr)
        want -= set(IOD_RUNNERS)
        iod_bin = None
    if not iod_bin:
        want -= set(IOD_RUNNERS)

    tmp = tempfile.mkdtemp(prefix="quiver-iod-bench-")
    os.chmod(tmp, 0o755)
    qroot = os.path.join(tmp, "root-quiver")
    croot = os.path.join(tmp, "root-crun")
    runners, iod, b = [], None, None
    results = {"args": vars(args), "bin": bindir, "date": time.strftime("%Y-%m-%d %H:%M")}
    problems = []
    t_start = time.monotonic()
    try:
        iod_lat = compile_iod_lat(tmp)
        rootfs, mounts = make_rootfs(tmp, iod_lat, "3" in figs)
        native = Native(rootfs)
        qctl = os.path.join(bindir, "qctl") if bindir else None
        qenv = dict(os.environ, QUIVER_NO_WARM="1")
        runners.append(Runner("crun", CRUN_WRAPPER, croot))
        if "quiver" in want:
            runners.append(Runner("quiver", [qctl], qroot, None, qenv))
        if "quiver-iod" in want:
            runners.append(Runner("quiver-iod", [qctl], qroot, "on", qenv))
        if "quiver-iod-nocache" in want:
            runners.append(Runner("quiver-iod-nocache", [qctl], qroot, NOCACHE, qenv))
        if "quiver-offload" in want:
            runners.append(Runner("quiver-offload", [qctl], qroot, "offload-all", qenv))
        if iod_bin:
            os.makedirs(qroot, exist_ok=True)
            iod = Iod(iod_bin, qroot, os.path.join(tmp, "iod.log"), shlex.split(args.iod_args))
            iod.start("uring")
        b = Bench(args, tmp, rootfs, mounts, runners, native, iod)
        if args.python_image and "2" in figs:
            b.fig_rootfs["2"] = make_image_rootfs(tmp, iod_lat)
        print("## bench/iod.py, %s, `%s`\n" % (results["date"], " ".join(shlex.quote(a) for a in sys.argv)))
        print("bin %s; runners: %s; iod: %s" % (bindir, ", ".join(["native"] + [r.name for r in runners]),
                                                 iod_bin or "not built, iod runners skipped"))
        if "1" in figs:
            results["fig1"] = fig_open(b, runners)
        if "2" in figs:
            results["fig2"] = fig_python(b, runners)
        if "3" in figs:
            results["fig3"] = fig_fio(b, runners)
        if "4" in figs:
            results["fig4"] = fig_storm(b, runners)
    finally:
        for r in runners:
            r.cleanup()
        if bindir and os.path.isdir(qroot):
            subprocess.run([os.path.join(bindir, "qctl"), "--root", qroot, "daemons", "stop"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if iod:
            p = iod.stop()
            if p:
                problems.append(p)
            with open(iod.log, errors="replace") as f:
                bad = [ln.rstrip() for ln in f if re.search(r"\b(error|warn|warning|fatal)\b", ln, re.I)]
            if bad:
                problems.append("iod.log: %d error/warning lines, last: %s" % (len(bad), " | ".join(bad[-5:])))
        if b:
            problems = b.problems + problems
        tag = "iodb%d" % os.getpid()
        for root in (qroot, croot):
            lo = {}
            for _ in range(30):
                lo = burst.leftovers(tag, root, tmp)
                if not lo:
                    break
                time.sleep(0.1)
            if lo:
                problems.append("leftovers of %s: %s" % (os.path.basename(root), json.dumps(lo)[:600]))
        shutil.rmtree(tmp, ignore_errors=True)
    print("\n%.0f s in all." % (time.monotonic() - t_start))
    if problems:
        print("\n### Problems\n")
        for p in problems:
            print("- " + p.replace("\n", "\n  "))
    results["problems"] = problems
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(jsonable(results), f, indent=1, default=str)


def jsonable(o):
    """The results with every dict key a string (metrics are keyed by
    (name, labels) tuples)."""
    if isinstance(o, dict):
        return {k if isinstance(k, str) else repr(k): jsonable(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [jsonable(v) for v in o]
    return o


if __name__ == "__main__":
    main()
