"""Shared fixtures of Quiver's system tests.

The tests drive an OCI runtime through runc's command grammar.  By default
the runtime is Quiver's `qctl` from $QUIVER_BIN; QUIVER_TEST_RUNTIME=/usr/sbin/runc
points the runtime-agnostic tests at another runtime, to check the tests
themselves.  Tests marked `quiver_only` are skipped unless the runtime is qctl.

Every test runs under a leak checker: mounts, cgroup directories, network
namespaces, loop devices, /dev/shm and processes are compared before and after,
and anything new that belongs to this session fails the test.  The machine
may be shared with other users of containers, so by default only what is
attributable to this session counts (the session tag in a name or path,
or a process descending from pytest, which makes itself a
child subreaper as a containerd shim does); QUIVER_TEST_LEAKS=strict counts
everything new.
"""

import ctypes
import errno
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import tempfile
import time
import urllib.request

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
PROGS = os.path.join(HERE, "progs")
BUSYBOX = os.environ.get("QUIVER_TEST_BUSYBOX", "/bin/busybox")
CMD_TIMEOUT = 60  # seconds: protection against a hung runtime, not an assertion

# Applets linked into every test rootfs.
APPLETS = [
    "sh", "true", "false", "echo", "cat", "id", "sleep", "touch", "ls", "env",
    "pwd", "hostname", "mkdir", "head", "grep", "kill", "ps", "wc", "readlink",
    "test", "ulimit", "printf", "stat", "dd", "rm", "mknod", "tty", "wait", "od",
]

SESSION_TAG = "qt%d" % os.getpid()


# ---------------------------------------------------------------------------
# runtime selection


def _runtime_path():
    env = os.environ.get("QUIVER_TEST_RUNTIME")
    if env:
        return env
    qbin = os.environ.get("QUIVER_BIN")
    if not qbin:
        return None
    return os.path.join(qbin, "qctl")


RUNTIME_PATH = _runtime_path()
IS_QUIVER = RUNTIME_PATH is not None and os.path.basename(RUNTIME_PATH).startswith("qctl")


def pytest_configure(config):
    config.addinivalue_line("markers", "quiver_only: needs Quiver (management commands, counters, policy)")


def pytest_collection_modifyitems(config, items):
    skip = pytest.mark.skip(reason="Quiver-only test; runtime is %s" % RUNTIME_PATH)
    for item in items:
        if "quiver_only" in item.keywords and not IS_QUIVER:
            item.add_marker(skip)


def pytest_report_header(config):
    return "runtime: %s (quiver=%s), session tag %s" % (RUNTIME_PATH, IS_QUIVER, SESSION_TAG)


# ---------------------------------------------------------------------------
# process helpers

_libc = ctypes.CDLL(None, use_errno=True)
PR_SET_CHILD_SUBREAPER = 36

# Pids of Popen objects still in use by a test: the reaper must not steal
# their exit status.
LIVE_POPEN = set()
# While true, reap nothing: a test is about to waitpid() a container init
# whose pid it does not know yet (it exits as soon as it starts).
REAPER_PAUSED = [False]


def make_subreaper():
    if _libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


def proc_stat(pid):
    """(comm, state, ppid) of pid, or None if it is gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            s = f.read()
    except OSError:
        return None
    lp, rp = s.index("("), s.rindex(")")
    rest = s[rp + 2:].split()
    return s[lp + 1:rp], rest[0], int(rest[1])


def proc_cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def proc_cgroup(pid):
    try:
        with open("/proc/%d/cgroup" % pid) as f:
            return f.read()
    except OSError:
        return ""


def all_pids():
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def reap_zombies():
    """Reap zombie children that no running Popen owns (orphans re-parented to us)."""
    if REAPER_PAUSED[0]:
        return
    me = os.getpid()
    for pid in all_pids():
        st = proc_stat(pid)
        if st and st[2] == me and st[1] == "Z" and pid not in LIVE_POPEN:
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass


def pid_alive(pid):
    st = proc_stat(pid)
    return st is not None and st[1] not in ("Z", "X")


def wait_gone(pid, seconds=10.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        reap_zombies()
        if not pid_alive(pid):
            return True
        time.sleep(0.02)
    return False


def read_text(path, default=""):
    """A file's text, or default when it cannot be read."""
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return default


_METRIC = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{([^}]*)\})? (\S+)$')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def scrape_metrics(url, who="a daemon"):
    """{(name, frozenset(labels)): value} from a Prometheus text endpoint."""
    with urllib.request.urlopen(url, timeout=CMD_TIMEOUT) as resp:
        assert resp.status == 200
        text = resp.read().decode()
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _METRIC.match(line)
        assert m, "not a sample line in %s's /metrics: %r" % (who, line)
        out[(m.group(1), frozenset(_LABEL.findall(m.group(2) or "")))] = float(m.group(3))
    return out


class SocketDaemon:
    """A daemon of the session's kind that serves ROOT/NAME.sock, writes
    ROOT/NAME.pid and (with --metrics) ROOT/NAME.metrics, and detaches once
    it serves: iod and netd.  Subclasses give name and argv()."""

    name = None

    def __init__(self, root, log):
        self.root = root
        self.log = log
        self.pid = None
        self.url = None

    def argv(self, *extra):
        raise NotImplementedError

    def path(self, name):
        return os.path.join(self.root, name)

    def start(self):
        prog = "quiver-" + self.name
        r = subprocess.run(self.argv("--metrics", "127.0.0.1:0"), stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=CMD_TIMEOUT)
        assert r.returncode == 0, "%s exited %d: %s\n%s" % (prog, r.returncode, r.stdout, self.logs())
        # Ready when the command returns: the socket, the pid and the URL are there.
        assert os.path.exists(self.path(self.name + ".sock")), "no %s.sock after start: %s" % (
            self.name, self.logs())
        self.pid = int(read_text(self.path(self.name + ".pid"), "0").strip() or 0)
        assert self.pid and pid_alive(self.pid), "no live %s after start (%s.pid %r): %s" % (
            self.name, self.name, read_text(self.path(self.name + ".pid")), self.logs())
        self.url = read_text(self.path(self.name + ".metrics")).strip()
        assert re.match(r"^http://127\.0\.0\.1:\d+/metrics$", self.url), "%s.metrics: %r" % (self.name, self.url)
        return self.pid

    def alive(self):
        return self.pid is not None and pid_alive(self.pid)

    def stop(self, seconds=20.0):
        """SIGTERM; it exits and removes its socket, pid file and URL file."""
        os.kill(self.pid, signal.SIGTERM)
        assert wait_gone(self.pid, seconds), "%s %d alive %.0fs after SIGTERM: %s" % (
            self.name, self.pid, seconds, self.logs())
        self.pid = None
        left = [n for n in (self.name + ".sock", self.name + ".pid", self.name + ".metrics")
                if os.path.exists(self.path(n))]
        assert not left, "%s left %s after SIGTERM" % (self.name, left)

    def kill9(self):
        os.kill(self.pid, signal.SIGKILL)
        assert wait_gone(self.pid), "%s %d survived SIGKILL" % (self.name, self.pid)
        self.pid = None

    def logs(self, n=30):
        lines = read_text(self.log).splitlines()
        return "%s log (last %d lines):\n  %s" % (self.name, n, "\n  ".join(lines[-n:]))

    def metrics(self):
        """{(name, frozenset(labels)): value} from /metrics."""
        return scrape_metrics(self.url, self.name)


def compile_prog(outdir, name):
    """tests/system/progs/NAME.c, static (it runs inside sandboxes), once."""
    out = os.path.join(outdir, name)
    if not os.path.exists(out):
        r = subprocess.run(["gcc", "-static", "-O1", "-Wall", "-pthread", "-o", out, os.path.join(PROGS, name + ".c")],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert r.returncode == 0, "compiling %s.c failed:\n%s" % (name, r.stdout)
    return out


def poll_until(fn, seconds=10.0, interval=0.02):
    """Call fn until it returns a true value (hang protection, not a timed assertion)."""
    deadline = time.monotonic() + seconds
    while True:
        v = fn()
        if v or time.monotonic() > deadline:
            return v
        time.sleep(interval)


# ---------------------------------------------------------------------------
# the runtime


class Runtime:
    def __init__(self, path, root, is_quiver):
        self.path = path
        self.root = root
        self.is_quiver = is_quiver
        self.ids = []  # every id handed out, deleted --force at test end

    def new_id(self, name="c"):
        cid = "%s-%s-%d" % (SESSION_TAG, name, len(self.ids) + _id_counter())
        self.ids.append(cid)
        return cid

    def argv(self, *args):
        return [self.path, "--root", self.root] + [str(a) for a in args]

    def __call__(self, *args, input=None, timeout=CMD_TIMEOUT, check=False, **kw):
        """Run one runtime command; returns CompletedProcess with text stdout/stderr.

        stdout/stderr go to files, not pipes: after `create` or `run -d` the
        container holds them open, and nobody must wait for their EOF."""
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            kw.setdefault("stdout", out)
            kw.setdefault("stderr", err)
            if input is None:
                kw.setdefault("stdin", subprocess.DEVNULL)
            else:
                fin = tempfile.TemporaryFile()
                fin.write(input.encode())
                fin.seek(0)
                kw["stdin"] = fin
            argv = self.argv(*args)
            try:
                p = subprocess.Popen(argv, **kw)
                try:
                    rc = p.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
                    raise
            finally:
                if input is not None:
                    fin.close()
            out.seek(0)
            err.seek(0)
            r = subprocess.CompletedProcess(argv, rc, out.read().decode(errors="replace"),
                                            err.read().decode(errors="replace"))
        reap_zombies()
        if check and r.returncode != 0:
            raise AssertionError("%s failed with %d\nstdout: %s\nstderr: %s"
                                 % (" ".join(argv), r.returncode, r.stdout, r.stderr))
        return r

    def ok(self, *args, **kw):
        return self(*args, check=True, **kw)

    def state(self, cid):
        r = self.ok("state", cid)
        return json.loads(r.stdout)

    def status(self, cid):
        r = self("state", cid)
        if r.returncode != 0:
            return None
        return json.loads(r.stdout)["status"]

    def wait_status(self, cid, want, seconds=15.0):
        return poll_until(lambda: (reap_zombies(), self.status(cid) == want)[1], seconds)

    def cleanup(self):
        for cid in self.ids:
            try:
                self("delete", "--force", cid, timeout=30)
            except subprocess.TimeoutExpired:
                pass


_counter = [0]


def _id_counter():
    _counter[0] += 1
    return _counter[0]


def assert_error(r, *substrings, exit_code=1):
    """A failed command: exit status exit_code; for Quiver, exactly one line on
    stderr containing every substring (runc's format differs; only the status
    is checked for it)."""
    if IS_QUIVER:
        assert r.returncode == exit_code, "exit %d, want %d; stderr: %r" % (r.returncode, exit_code, r.stderr)
        lines = r.stderr.splitlines()
        assert len(lines) == 1, "want one line on stderr, got %d: %r" % (len(lines), r.stderr)
        for s in substrings:
            assert s in lines[0], "%r not in stderr %r" % (s, lines[0])
    else:
        assert r.returncode != 0, "exit 0; stderr: %r" % r.stderr
        assert r.stderr.strip(), "no error message on stderr"


# ---------------------------------------------------------------------------
# bundles


def default_config(args):
    """config.json as `runc spec` writes it, terminal false."""
    return {
        "ociVersion": "1.0.2-dev",
        "process": {
            "terminal": False,
            "user": {"uid": 0, "gid": 0},
            "args": list(args),
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"],
            "cwd": "/",
            "capabilities": {k: ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
                             for k in ("bounding", "effective", "permitted", "ambient")},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "runc",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
             "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
        ],
        "linux": {
            "resources": {"devices": [{"allow": False, "access": "rwm"}]},
            "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount")],
            "maskedPaths": ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
                            "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                            "/proc/sched_debug", "/sys/firmware", "/proc/scsi"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"],
        },
    }


class Bundle:
    def __init__(self, path, args=("true",)):
        self.path = path
        self.rootfs = os.path.join(path, "rootfs")
        self.config = default_config(args)
        self.write()

    @property
    def config_path(self):
        return os.path.join(self.path, "config.json")

    def write(self):
        with open(self.config_path, "w") as f:
            json.dump(self.config, f, indent=1)

    def set(self, dotted, value):
        """Set a field by dotted path ("process.cwd", "linux.resources.pids.limit"),
        creating maps on the way; value DELETE removes it.  Writes config.json."""
        keys = dotted.split(".")
        node = self.config
        for k in keys[:-1]:
            node = node.setdefault(k, {})
        if value is DELETE:
            node.pop(keys[-1], None)
        else:
            node[keys[-1]] = value
        self.write()
        return self

    def args(self, *args):
        return self.set("process.args", list(args))

    def shell(self, script):
        return self.args("sh", "-c", script)

    def writable(self):
        return self.set("root.readonly", False)


DELETE = object()


def build_rootfs_template(dest, attack_bin):
    os.makedirs(dest)
    for d in ("bin", "proc", "sys", "dev", "tmp", "etc", "root", "run", "var"):
        os.makedirs(os.path.join(dest, d), exist_ok=True)
    os.chmod(os.path.join(dest, "tmp"), 0o1777)
    shutil.copy2(BUSYBOX, os.path.join(dest, "bin", "busybox"))
    for a in APPLETS:
        os.symlink("busybox", os.path.join(dest, "bin", a))
    with open(os.path.join(dest, "etc", "passwd"), "w") as f:
        f.write("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n"
                "tester:x:1234:4321:tester:/:/bin/sh\n")
    with open(os.path.join(dest, "etc", "group"), "w") as f:
        f.write("root:x:0:\nnogroup:x:65534:\ntesters:x:4321:\n")
    if attack_bin:
        shutil.copy2(attack_bin, os.path.join(dest, "bin", "attack"))


def _check_busybox():
    out = subprocess.run(["file", "-L", BUSYBOX], stdout=subprocess.PIPE, text=True).stdout
    if "statically linked" not in out:
        pytest.exit("%s is not static (%s); install busybox-static" % (BUSYBOX, out.strip()), 2)


# ---------------------------------------------------------------------------
# leak checking

_LOOP_RE = re.compile(r"^(/dev/loop\d+):")


def _mounts():
    out = set()
    with open("/proc/self/mountinfo") as f:
        for line in f:
            pre, post = line.split(" - ", 1)
            fields = pre.split()
            p = post.split()
            out.add("%s %s %s" % (fields[4], p[0], p[1]))
    return out


def _cgroups():
    out = set()
    base = "/sys/fs/cgroup"
    for h in os.listdir(base):
        top = os.path.join(base, h)
        if os.path.islink(top) or not os.path.isdir(top):
            continue
        for d, subdirs, _ in os.walk(top):
            for s in subdirs:
                out.add(os.path.join(d, s))
    return out


def _netns():
    out = set()
    r = subprocess.run(["ip", "netns", "list"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    for line in r.stdout.splitlines():
        if line.strip():
            out.add("name " + line.split()[0])
    holders = {}
    for pid in all_pids():
        try:
            ino = os.stat("/proc/%d/ns/net" % pid).st_ino
        except OSError:
            continue
        holders.setdefault(ino, []).append(pid)
    for ino, pids in holders.items():
        out.add("inode %d" % ino)
    return out, holders


def _loops():
    r = subprocess.run(["losetup", "-a"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    return set(l.strip() for l in r.stdout.splitlines() if l.strip())


def _shm():
    try:
        return set(os.listdir("/dev/shm"))
    except OSError:
        return set()


DAEMON_COMMS = ("quiver-vmmd", "quiver-poold", "quiver-iod", "quiver-netd")


def scrub(leaks):
    """Remove what a failed test left so that the next tests start clean
    (only what names this session: never touch other users' objects)."""
    leaks = [l for l in leaks if l.startswith("process: ") or SESSION_TAG in l]
    for line in leaks:
        kind, _, item = line.partition(": ")
        if kind == "process":
            try:
                os.kill(int(item.split()[0]), signal.SIGKILL)
            except (OSError, ValueError):
                pass
    reap_zombies()
    for line in sorted(leaks, key=len, reverse=True):
        kind, _, item = line.partition(": ")
        if kind == "cgroups":
            try:
                os.rmdir(item)
            except OSError:
                pass
        elif kind == "mounts":
            subprocess.run(["umount", "-l", item.split()[0]], stderr=subprocess.DEVNULL)


def _is_daemon(pid):
    st = proc_stat(pid)
    if not st:
        return False
    if st[0] in DAEMON_COMMS:
        return True
    cmd = proc_cmdline(pid).split(" ")[0]
    if os.path.basename(cmd) in DAEMON_COMMS:
        return True
    return _in_pool(pid)


def _in_pool(pid):
    """A warm supervisor still in poold's pool (its cgroup has a pool name;
    once assigned to a sandbox it is the sandbox's, and counts)."""
    if " warm " not in proc_cmdline(pid) + " ":
        return False
    for line in proc_cgroup(pid).splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3 and "pids" in parts[1].split(","):
            return os.path.basename(parts[2]).startswith("@pool-")
    return False


def _descends_from(pid, ancestor, stop_at_daemons=True):
    seen = 0
    while pid > 1 and seen < 256:
        if stop_at_daemons and _is_daemon(pid):
            return False
        st = proc_stat(pid)
        if not st:
            return False
        if st[2] == ancestor:
            return True
        pid = st[2]
        seen += 1
    return False


class Session:
    def __init__(self, tmp, root):
        self.tmp = tmp
        self.root = root
        # Other users of this machine run containers (and Quiver's own unit
        # tests) at the same time: count only what names this session.
        self.markers = [SESSION_TAG, tmp]
        # With a session poold (QUIVER_TEST_POOLD=1), what its pools hold
        # comes and goes with refills: it is checked when poold stops.
        self.pool_state = os.path.join(root, "poold") + "/"

    def ours_text(self, s):
        low = s.lower()
        return any(m.lower() in low for m in self.markers)

    def our_processes(self, include_daemons=False):
        """Live processes that belong to this session: descendants of pytest
        (daemons excluded unless asked), and processes whose command line or
        cgroup names this session."""
        me = os.getpid()
        out = {}
        for pid in all_pids():
            if pid == me:
                continue
            st = proc_stat(pid)
            if not st or st[1] in ("Z", "X"):
                continue
            cmd = proc_cmdline(pid)
            daemon = _is_daemon(pid)
            if daemon and not include_daemons:
                continue
            mine = (_descends_from(pid, me, stop_at_daemons=not include_daemons)
                    or SESSION_TAG in cmd or self.root in cmd
                    or SESSION_TAG in proc_cgroup(pid))
            if mine:
                out[pid] = "%s [%s] %s" % (pid, st[0], cmd[:200])
        return out

    def snapshot(self, include_daemons=False):
        netns, holders = _netns()
        return {
            "mounts": _mounts(),
            "cgroups": _cgroups(),
            "netns": netns,
            "loop": _loops(),
            "shm": _shm(),
            "procs": self.our_processes(include_daemons),
            "_holders": holders,
        }

    def diff(self, before, after, include_daemons=False):
        strict = os.environ.get("QUIVER_TEST_LEAKS") == "strict"
        leaks = []
        ours_pids = set(after["procs"])
        for kind in ("mounts", "cgroups", "loop", "shm"):
            for item in sorted(after[kind] - before[kind]):
                if SESSION_POOLD and not include_daemons and (
                        self.pool_state in item or "/@pool-" in item):
                    continue
                if strict or self.ours_text(item):
                    leaks.append("%s: %s" % (kind, item))
        for item in sorted(after["netns"] - before["netns"]):
            if item.startswith("inode "):
                ino = int(item.split()[1])
                holders = after["_holders"].get(ino, [])
                if not holders:
                    continue
                daemon_only = all(_is_daemon(p) for p in holders)
                if daemon_only and not include_daemons:
                    continue
                if strict or any(p in ours_pids for p in holders):
                    leaks.append("netns: %s held by %s" % (item, holders))
            elif strict or self.ours_text(item):
                leaks.append("netns: %s" % item)
        for pid in sorted(set(after["procs"]) - set(before["procs"])):
            leaks.append("process: %s" % after["procs"][pid])
        return leaks

    def settle_and_diff(self, before, include_daemons=False, seconds=5.0):
        # Teardown is asynchronous in places (a dying pid namespace, a daemon
        # removing a cgroup after the reply): look again for a short while
        # before calling anything a leak.
        deadline = time.monotonic() + seconds
        while True:
            reap_zombies()
            leaks = self.diff(before, self.snapshot(include_daemons), include_daemons)
            if not leaks or time.monotonic() > deadline:
                return leaks
            time.sleep(0.1)


# ---------------------------------------------------------------------------
# fixtures


def _compile_attack(outdir):
    src = os.path.join(PROGS, "attack.c")
    if not os.path.exists(src):
        return None
    out = os.path.join(outdir, "attack")
    r = subprocess.run(["gcc", "-static", "-O1", "-Wall", "-o", out, src],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0:
        pytest.exit("compiling %s failed:\n%s" % (src, r.stdout), 2)
    return out


# QUIVER_TEST_POOLD=1: the session's root gets a poold with a small warm
# pool, so that `qctl run` starts sandboxes from warm supervisors (the
# attacks and lifecycle tests then cover the warm path too).
SESSION_POOLD = IS_QUIVER and os.environ.get("QUIVER_TEST_POOLD") == "1"


def _start_session_poold(s):
    conf = os.path.join(s.tmp, "poold.json")
    with open(conf, "w") as f:
        json.dump({"refill_per_second": 100,
                   "pools": {"warm": {"low": 3, "high": 6}, "cgroup": {"low": 3, "high": 6},
                             "netns": {"low": 2, "high": 6}, "layer": {"low": 0, "high": 0}}}, f)
    r = subprocess.run([RUNTIME_PATH, "--root", s.root, "pool", "start", "--config", conf],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       timeout=CMD_TIMEOUT, stdin=subprocess.DEVNULL)
    if r.returncode != 0:
        pytest.exit("qctl pool start: %s" % r.stderr.strip(), 2)


def _session_poold_used(root):
    """A warm pass that never took a warm supervisor covered nothing."""
    r = subprocess.run([RUNTIME_PATH, "--root", root, "pool", "status", "--json"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       timeout=CMD_TIMEOUT, stdin=subprocess.DEVNULL)
    if r.returncode != 0:
        return ["`qctl pool status` exited %d: %s" % (r.returncode, r.stderr.strip())]
    warm = [p for p in json.loads(r.stdout)["pools"] if p["kind"] == "warm"][0]
    print("\nsession poold: %d warm hits, %d misses" % (warm["hits"], warm["misses"]))
    return [] if warm["hits"] > 0 else ["QUIVER_TEST_POOLD=1, but no sandbox started warm"]


@pytest.fixture(scope="session")
def session():
    if RUNTIME_PATH is None:
        pytest.exit("set QUIVER_BIN (directory of qctl) or QUIVER_TEST_RUNTIME", 2)
    if not os.access(RUNTIME_PATH, os.X_OK):
        pytest.exit("runtime %s is not executable" % RUNTIME_PATH, 2)
    _check_busybox()
    make_subreaper()
    tmp = tempfile.mkdtemp(prefix="quiver-systest-%s-" % SESSION_TAG)
    os.chmod(tmp, 0o755)
    root = os.path.join(tmp, "root")
    os.mkdir(root, 0o700)
    s = Session(tmp, root)
    s.attack = _compile_attack(tmp)
    s.template = os.path.join(tmp, "rootfs-template")
    build_rootfs_template(s.template, s.attack)
    baseline = s.snapshot(include_daemons=True)
    if SESSION_POOLD:
        _start_session_poold(s)
    try:
        yield s
    finally:
        problems = []
        if SESSION_POOLD:
            problems += _session_poold_used(root)
            r = subprocess.run([RUNTIME_PATH, "--root", root, "pool", "stop"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               timeout=CMD_TIMEOUT, stdin=subprocess.DEVNULL)
            if r.returncode != 0:
                problems.append("`qctl pool stop` exited %d: %s" % (r.returncode, r.stderr.strip()))
        if IS_QUIVER:
            r = subprocess.run([RUNTIME_PATH, "--root", root, "daemons", "stop"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               timeout=CMD_TIMEOUT, stdin=subprocess.DEVNULL)
            if r.returncode != 0:
                problems.append("`qctl daemons stop` exited %d: %s" % (r.returncode, r.stderr.strip()))
        leaks = s.settle_and_diff(baseline, include_daemons=True, seconds=10.0)
        # Whatever is left, remove it so that the machine is clean for the next run.
        scrub(leaks)
        shutil.rmtree(tmp, ignore_errors=True)
        problems += leaks
        if problems:
            pytest.fail("session teardown: leftovers after stopping the daemons:\n  " + "\n  ".join(problems),
                        pytrace=False)


@pytest.fixture
def runtime(session):
    rt = Runtime(RUNTIME_PATH, session.root, IS_QUIVER)
    try:
        yield rt
    finally:
        rt.cleanup()


@pytest.fixture(autouse=True)
def leak_check(request):
    if "session" not in request.fixturenames:
        yield
        return
    s = request.getfixturevalue("session")
    before = s.snapshot()
    yield
    # runs after the function-scoped fixtures requested by the test were torn
    # down? No: autouse fixtures are set up first, so they are torn down last.
    leaks = s.settle_and_diff(before)
    if leaks:
        scrub(leaks)
        pytest.fail("leaked by this test:\n  " + "\n  ".join(leaks), pytrace=False)


@pytest.fixture
def bundle_factory(session, tmp_path):
    made = []

    def make(args=("true",)):
        path = os.path.join(str(tmp_path), "bundle%d" % len(made))
        os.mkdir(path)
        shutil.copytree(session.template, os.path.join(path, "rootfs"), symlinks=True,
                        copy_function=os.link)
        b = Bundle(path, args)
        made.append(b)
        return b

    return make


@pytest.fixture
def bundle(bundle_factory):
    return bundle_factory()


def cgroup_paths_of(pid):
    """{controller: absolute cgroup directory} for a host pid (v1 hierarchies)."""
    out = {}
    for line in proc_cgroup(pid).splitlines():
        _, ctrls, path = line.split(":", 2)
        for c in ctrls.split(","):
            c = c.replace("name=", "") if c else "unified"
            out[c] = os.path.join("/sys/fs/cgroup", c, path.lstrip("/"))
    return out


# ---------------------------------------------------------------------------
# vmmd's sockets, spoken directly: nng's SP-over-IPC framing and a minimal
# msgpack (tests for the control API, events and hostile clients).

import socket as _socket
import struct as _struct

SP_REQ0, SP_REP0, SP_PUB0, SP_SUB0 = 0x30, 0x31, 0x20, 0x21


def mp_pack(obj):
    """msgpack of None/bool/int/str/bytes/list/dict (enough for requests)."""
    if obj is None:
        return b"\xc0"
    if obj is True:
        return b"\xc3"
    if obj is False:
        return b"\xc2"
    if isinstance(obj, int):
        if 0 <= obj < 0x80:
            return bytes([obj])
        if -32 <= obj < 0:
            return _struct.pack("b", obj)
        if 0 <= obj < 1 << 64:
            return b"\xcf" + _struct.pack(">Q", obj)
        return b"\xd3" + _struct.pack(">q", obj)
    if isinstance(obj, str):
        b = obj.encode("utf-8", "surrogateescape")
        if len(b) < 32:
            return bytes([0xA0 | len(b)]) + b
        return b"\xdb" + _struct.pack(">I", len(b)) + b
    if isinstance(obj, bytes):
        return b"\xc6" + _struct.pack(">I", len(obj)) + obj
    if isinstance(obj, (list, tuple)):
        return b"\xdd" + _struct.pack(">I", len(obj)) + b"".join(mp_pack(x) for x in obj)
    if isinstance(obj, dict):
        return b"\xdf" + _struct.pack(">I", len(obj)) + b"".join(
            mp_pack(k) + mp_pack(v) for k, v in obj.items())
    raise TypeError(type(obj))


def mp_unpack(data):
    """Decode one msgpack object that must fill data exactly; ValueError if not."""
    obj, off = _mp_obj(data, 0)
    if off != len(data):
        raise ValueError("%d trailing bytes" % (len(data) - off))
    return obj


def _mp_take(data, off, n):
    if off + n > len(data):
        raise ValueError("truncated at %d" % off)
    return data[off:off + n], off + n


def _mp_obj(data, off):
    b, off = _mp_take(data, off, 1)
    t = b[0]
    fixed = {0xCC: ">B", 0xCD: ">H", 0xCE: ">I", 0xCF: ">Q", 0xD0: ">b", 0xD1: ">h", 0xD2: ">i",
             0xD3: ">q", 0xCA: ">f", 0xCB: ">d"}
    if t < 0x80:
        return t, off
    if t >= 0xE0:
        return t - 0x100, off
    if t in fixed:
        fmt = fixed[t]
        raw, off = _mp_take(data, off, _struct.calcsize(fmt))
        return _struct.unpack(fmt, raw)[0], off
    if t == 0xC0:
        return None, off
    if t in (0xC2, 0xC3):
        return t == 0xC3, off
    if 0xA0 <= t <= 0xBF or t in (0xD9, 0xDA, 0xDB, 0xC4, 0xC5, 0xC6):
        if 0xA0 <= t <= 0xBF:
            n = t & 0x1F
        else:
            w = {0xD9: 1, 0xDA: 2, 0xDB: 4, 0xC4: 1, 0xC5: 2, 0xC6: 4}[t]
            raw, off = _mp_take(data, off, w)
            n = int.from_bytes(raw, "big")
        raw, off = _mp_take(data, off, n)
        return (raw if t in (0xC4, 0xC5, 0xC6) else raw.decode("utf-8", "replace")), off
    if 0x90 <= t <= 0x9F or t in (0xDC, 0xDD):
        if t <= 0x9F:
            n = t & 0x0F
        else:
            raw, off = _mp_take(data, off, 2 if t == 0xDC else 4)
            n = int.from_bytes(raw, "big")
        out = []
        for _ in range(n):
            v, off = _mp_obj(data, off)
            out.append(v)
        return out, off
    if 0x80 <= t <= 0x8F or t in (0xDE, 0xDF):
        if t <= 0x8F:
            n = t & 0x0F
        else:
            raw, off = _mp_take(data, off, 2 if t == 0xDE else 4)
            n = int.from_bytes(raw, "big")
        out = {}
        for _ in range(n):
            k, off = _mp_obj(data, off)
            v, off = _mp_obj(data, off)
            out[k] = v
        return out, off
    raise ValueError("msgpack type byte 0x%02x not supported" % t)


class SPConn:
    """One nng SP connection over a unix stream socket (nng's ipc:// transport):
    an 8-byte greeting each way (0, 'S', 'P', 0, protocol id big-endian, 0, 0),
    then frames of 0x01, a 64-bit big-endian length and the message."""

    def __init__(self, path, proto, timeout=CMD_TIMEOUT):
        self.sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.peer_proto = None

    def handshake(self, proto):
        self.sock.sendall(b"\0SP\0" + _struct.pack(">H", proto) + b"\0\0")
        hdr = self.recv_exact(8)
        if hdr[:4] != b"\0SP\0":
            raise ValueError("not an SP peer: %r" % hdr)
        self.peer_proto = _struct.unpack(">H", hdr[4:6])[0]
        return self.peer_proto

    def recv_exact(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise EOFError("peer closed after %d of %d bytes" % (len(buf), n))
            buf += chunk
        return buf

    def send_frame(self, payload):
        self.sock.sendall(b"\x01" + _struct.pack(">Q", len(payload)) + payload)

    def recv_frame(self):
        hdr = self.recv_exact(9)
        if hdr[0] != 1:
            raise ValueError("frame type %d" % hdr[0])
        n = _struct.unpack(">Q", hdr[1:])[0]
        if n > (1 << 20) + 64:
            raise ValueError("frame of %d bytes" % n)
        return self.recv_exact(n)

    def closed_by_peer(self, seconds=CMD_TIMEOUT):
        """True once the peer has closed the connection (EOF or reset)."""
        self.sock.settimeout(seconds)
        try:
            while True:
                if not self.sock.recv(4096):
                    return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except _socket.timeout:
            return False

    def close(self):
        self.sock.close()


def hang_up_in_handshakes(path, n=3):
    """Connect to a daemon's nng socket and close before the SP handshake,
    n times: what a client killed while it dials, or a dial that gave up,
    does (nng 1.5.2 can stop answering on that listener: libcommon/nng.c)."""
    for _ in range(n):
        s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        s.connect(path)
        s.close()
        time.sleep(0.2)


class SeqpacketPeers:
    """Raw peers of a SOCK_SEQPACKET socket (iod.sock, guest.sock): open()
    connects one more; all are closed when the with block ends."""

    def __init__(self, path):
        self.path = path
        self.held = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for s in self.held:
            s.close()
        return False

    def open(self):
        s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_SEQPACKET)
        s.connect(self.path)
        self.held.append(s)
        return s

    def hang_up(self, n=3):
        for _ in range(n):
            self.open().close()


class VmmdClient:
    """A REQ client of ROOT/vmmd.sock (or another daemon's ROOT/SOCK): call()
    sends one request (a dict, or raw msgpack bytes) and returns the decoded
    reply."""

    def __init__(self, root, sock="vmmd.sock"):
        self.conn = SPConn(os.path.join(root, sock), SP_REQ0)
        peer = self.conn.handshake(SP_REQ0)
        assert peer == SP_REP0, "%s speaks protocol 0x%x, not REP0" % (sock, peer)
        self.next_id = 1

    def call_raw(self, body):
        rid = 0x80000000 | self.next_id
        self.next_id += 1
        self.conn.send_frame(_struct.pack(">I", rid) + body)
        while True:
            frame = self.conn.recv_frame()
            if _struct.unpack(">I", frame[:4])[0] == rid:
                return mp_unpack(frame[4:])

    def call(self, req):
        if isinstance(req, dict):
            req = mp_pack(req)
        return self.call_raw(req)

    def close(self):
        self.conn.close()


class EventSubscriber:
    """A SUB socket on ROOT/events.sock: PUB sends every message whole, with
    no header; each is one msgpack map."""

    def __init__(self, root):
        self.conn = SPConn(os.path.join(root, "events.sock"), SP_SUB0)
        peer = self.conn.handshake(SP_SUB0)
        assert peer == SP_PUB0, "events.sock speaks protocol 0x%x, not PUB0" % peer

    def next(self, seconds=CMD_TIMEOUT):
        """The next event, or None if none came within seconds (hang protection)."""
        self.conn.sock.settimeout(seconds)
        try:
            return mp_unpack(self.conn.recv_frame())
        except _socket.timeout:
            return None

    def close(self):
        self.conn.close()


def vmmd_pid(root):
    try:
        with open(os.path.join(root, "vmmd.pid")) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def vmmd_processes(root):
    """Live quiver-vmmd processes serving root (by their --root argument)."""
    out = []
    for pid in all_pids():
        st = proc_stat(pid)
        if not st or st[1] in ("Z", "X") or st[0] != "quiver-vmmd":
            continue
        try:
            with open("/proc/%d/cmdline" % pid, "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if root.encode() in argv:
            out.append(pid)
    return out


@pytest.fixture
def private_root(session):
    """A fresh runtime root of its own (its own vmmd), stopped at the end."""
    made = []

    def make(name="root"):
        root = os.path.join(session.tmp, "%s-%s-%d" % (name, SESSION_TAG, _id_counter()))
        made.append(root)
        return root

    yield make
    for root in made:
        rt = Runtime(RUNTIME_PATH, root, IS_QUIVER)
        if os.path.exists(os.path.join(root, "vmmd.sock")):
            for cid in rt("list", "-q").stdout.split():
                rt("delete", "--force", cid)
        pids = vmmd_processes(root)
        subprocess.run([RUNTIME_PATH, "--root", root, "daemons", "stop"], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, timeout=CMD_TIMEOUT)
        for pid in pids:
            if not wait_gone(pid):
                os.kill(pid, signal.SIGKILL)
                wait_gone(pid)
        shutil.rmtree(root, ignore_errors=True)


# A workload that runs until TERM, then exits 42.
LOOP = "trap 'exit 42' TERM; while :; do sleep 0.05; done"


def running(runtime, bundle, script=LOOP, name="c"):
    """Create and start a sandbox running script; returns its id."""
    bundle.shell(script)
    cid = runtime.new_id(name)
    runtime.ok("create", "--bundle", bundle.path, cid)
    runtime.ok("start", cid)
    assert runtime.status(cid) == "running"
    return cid
