"""systemd integration (issue 6): `make install`, the units, and the
readiness and watchdog protocol, through the real binaries.

PID 1 here is not systemd, so nothing is started by systemd itself:

- install: `make install DESTDIR=tmp PREFIX=/usr` (the build under test:
  QUIVER_BIN's) puts every file where it belongs; the installed qctl (a
  symlink on the PATH) runs a sandbox, which proves each program finds the
  others in the installed layout.
- units: `systemd-analyze verify --root=DESTDIR` on every installed unit
  (the host's units are copied in for the dependencies it resolves): no
  error and no warning.  Broken copies show the check can fail, including
  the mistakes verify only warns about.  The capability names are checked
  against the kernel headers (verify ignores unknown ones silently), and
  the bounding set is tried for real: a vmmd under exactly that set runs a
  sandbox with Docker's default capabilities and refuses one that asks for
  more.
- protocol: each daemon runs with --foreground and what systemd would set
  (NOTIFY_SOCKET, a datagram socket bound here; WATCHDOG_USEC and
  WATCHDOG_PID, its own pid): READY=1 comes first and only once the
  daemon's socket answers, WATCHDOG=1 follows repeatedly, STOPPING=1 on
  SIGTERM, all from the daemon's own pid (NotifyAccess=main).  A wrong
  WATCHDOG_PID gives no pings; a detached daemon (no --foreground) sends
  nothing."""

import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import tempfile

import pytest

from conftest import (CMD_TIMEOUT, RUNTIME_PATH, SESSION_TAG, _id_counter, cgroup_paths_of, pid_alive, poll_until,
                      read_text, reap_zombies, wait_gone)

pytestmark = pytest.mark.quiver_only

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
BIN = os.path.dirname(RUNTIME_PATH) if RUNTIME_PATH else None
UNITS = ["quiver-vmmd.service", "quiver-poold.service", "quiver-iod.service", "quiver-netd.service", "quiver.target"]
PROGRAMS = ["qctl", "quiver-guest", "quiver-vmmd", "quiver-poold", "quiver-iod", "quiver-netd"]
DAEMONS = ["quiver-vmmd", "quiver-poold", "quiver-iod", "quiver-netd"]
# A notified netd's own bridge and subnet (it is torn down after): never the
# host's quiver0.
NETD_ARGS = ["--bridge", "qvsd%s" % SESSION_TAG[-6:], "--subnet", "10.219.%d.0/24" % (os.getpid() % 250)]
HOST_UNITS = "/usr/lib/systemd/system"
WATCHDOG_USEC = 200000  # pings every 100 ms
MSG_TIMEOUT = 15.0  # seconds: hang protection, not an assertion

# Docker's (and runc spec's) default capabilities.
DOCKER_CAPS = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
               "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
               "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"]


def clean_env(**extra):
    """The environment without anything that would point a program at the
    build tree or at systemd."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("QUIVER_") and k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")}
    env.update(extra)
    return env


def run(argv, **kw):
    kw.setdefault("stdin", subprocess.DEVNULL)
    kw.setdefault("stdout", subprocess.PIPE)
    kw.setdefault("stderr", subprocess.STDOUT)
    kw.setdefault("timeout", CMD_TIMEOUT)
    return subprocess.run(argv, text=True, **kw)


def unit_settings(path):
    """{key: [values]} of a unit file (sections merged; enough here)."""
    out = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line[0] in "#;[":
                continue
            k, _, v = line.partition("=")
            out.setdefault(k.strip(), []).append(v.strip())
    return out


# ---------------------------------------------------------------------------
# make install


@pytest.fixture(scope="module")
def installed():
    """DESTDIR of `make install PREFIX=/usr` of the build under test."""
    build = os.path.dirname(BIN)
    if os.path.basename(BIN) != "bin" or not os.path.exists(os.path.join(REPO, "Makefile")):
        pytest.skip("QUIVER_BIN %s is not a build tree of %s" % (BIN, REPO))
    tmp = tempfile.mkdtemp(prefix="quiver-install-%s-" % SESSION_TAG)
    os.chmod(tmp, 0o755)
    dest = os.path.join(tmp, "dest")
    argv = ["make", "-C", REPO, "--no-print-directory", "install", "DESTDIR=" + dest, "PREFIX=/usr",
            "BUILD=" + build, "SAN=%d" % (os.path.basename(build) == "build-san")]
    # Not the make that may run these tests (`make system-test`): its
    # jobserver and command-line variables are not ours.
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES")}
    try:
        r = run(argv, timeout=600, env=env)
        assert r.returncode == 0, "%s failed:\n%s" % (" ".join(argv), r.stdout)
        yield dest
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def test_install_layout(installed):
    d = installed
    for p in PROGRAMS:
        path = os.path.join(d, "usr/libexec/quiver", p)
        assert os.path.isfile(path) and os.access(path, os.X_OK), path
        # The very binaries under test, not a rebuild with other flags.
        with open(path, "rb") as a, open(os.path.join(BIN, p), "rb") as b:
            assert a.read() == b.read(), "%s differs from %s" % (path, os.path.join(BIN, p))
    link = os.path.join(d, "usr/bin/qctl")
    assert os.path.islink(link) and os.readlink(link) == "../libexec/quiver/qctl"
    assert os.path.realpath(link) == os.path.join(os.path.realpath(d), "usr/libexec/quiver/qctl")
    for u in UNITS:
        path = os.path.join(d, "usr/lib/systemd/system", u)
        assert os.path.isfile(path), path
        assert oct(os.stat(path).st_mode & 0o777) == "0o644", path
        text = open(path).read()
        assert "@" not in re.sub(r"(?m)^#.*$", "", text), "placeholder left in %s" % path
    for doc in ("README.md", "api.md", "architecture.md", "systemd.md"):
        assert os.path.isfile(os.path.join(d, "usr/share/doc/quiver", doc)), doc
    # The man page, as the installed qctl prints it.
    page = os.path.join(d, "usr/share/man/man1/qctl.1")
    man = run([os.path.join(d, "usr/bin/qctl"), "help", "--man"])
    assert os.path.isfile(page) and open(page).read() == man.stdout, page
    # Nothing outside PREFIX.
    assert sorted(os.listdir(d)) == ["usr"]
    assert sorted(os.listdir(os.path.join(d, "usr"))) == ["bin", "lib", "libexec", "share"]


def test_unit_settings(installed):
    sysdir = os.path.join(installed, "usr/lib/systemd/system")
    for name in DAEMONS:
        s = unit_settings(os.path.join(sysdir, name + ".service"))
        assert s["Type"] == ["notify"] and s["NotifyAccess"] == ["main"], name
        assert s["ExecStart"][0].split()[:2] == ["/usr/libexec/quiver/" + name, "--foreground"], name
        assert "--log -" in s["ExecStart"][0], name
        assert s["WatchdogSec"] and s["Restart"] == ["on-failure"], name
        assert s["RuntimeDirectoryPreserve"] == ["yes"], name
        assert s["WantedBy"] == ["quiver.target"], name
        if name in ("quiver-vmmd", "quiver-poold"):
            # Sandboxes (and warm supervisors) outlive a daemon restart,
            # and the daemon shares the host's mount namespace.
            assert s["KillMode"] == ["process"] and s["Delegate"] == ["yes"], name
            for k in ("ProtectSystem", "PrivateTmp", "ProtectHome", "PrivateDevices", "NoNewPrivileges",
                      "ReadWritePaths", "SystemCallFilter"):
                assert k not in s, "%s: %s" % (name, k)
    t = unit_settings(os.path.join(sysdir, "quiver.target"))
    assert set(t["Wants"][0].split()) == {d + ".service" for d in DAEMONS}


def kernel_caps():
    """{name: number} from the kernel headers."""
    with open("/usr/include/linux/capability.h") as f:
        return {n: int(v) for n, v in re.findall(r"^#define (CAP_[A-Z_]+)\s+(\d+)\s*$", f.read(), re.M)}


def cap_bounding(pid):
    with open("/proc/%d/status" % pid) as f:
        return int(re.search(r"^CapBnd:\s*([0-9a-f]+)", f.read(), re.M).group(1), 16)


def bounding_set(installed, name="quiver-vmmd.service"):
    s = unit_settings(os.path.join(installed, "usr/lib/systemd/system", name))
    return s["CapabilityBoundingSet"][0].split()


def test_capability_names(installed):
    known = set(kernel_caps())
    assert len(known) > 30
    for name in (d + ".service" for d in DAEMONS):
        caps = bounding_set(installed, name)
        assert caps and not set(caps) - known, "%s: unknown %s" % (name, set(caps) - known)
        if name == "quiver-netd.service":
            # netd configures networks; it takes on no workload's credentials
            assert set(caps) == {"CAP_NET_ADMIN", "CAP_SYS_ADMIN", "CAP_DAC_OVERRIDE"}, caps
            continue
        # iod takes on the workloads' capabilities: never fewer than vmmd's.
        assert set(caps) == set(bounding_set(installed)), name
    assert not set(DOCKER_CAPS) - set(bounding_set(installed))


@pytest.fixture(scope="module")
def verify_root(installed):
    """installed, with the host's units beside ours for verify's lookups."""
    if not shutil.which("systemd-analyze") or not os.path.isdir(HOST_UNITS):
        pytest.skip("no systemd-analyze or no %s" % HOST_UNITS)
    dst = os.path.join(installed, "lib/systemd/system")
    if not os.path.isdir(dst):
        shutil.copytree(HOST_UNITS, dst, symlinks=True)
    return installed


def verify(root, unit_path):
    """(exit status, output) of systemd-analyze verify: both matter, since
    verify exits 0 on settings it ignores."""
    r = run(["systemd-analyze", "verify", "--root=" + root, unit_path],
            env=clean_env(SYSTEMD_LOG_COLOR="0", SYSTEMD_PAGER=""))
    return r.returncode, r.stdout.strip()


def test_systemd_analyze_verify(verify_root):
    for u in UNITS:
        rc, out = verify(verify_root, os.path.join(verify_root, "usr/lib/systemd/system", u))
        assert rc == 0 and out == "", "%s: exit %d\n%s" % (u, rc, out)


@pytest.mark.parametrize("edit,fails", [
    (("ExecStart=/usr/libexec/quiver/quiver-vmmd", "ExecStart=/usr/libexec/quiver/quiver-vmmdx"), "exit"),
    (("[Service]", "[Servic]"), "exit"),
    (("Type=notify", "Type=notfy"), "output"),
    (("KillMode=process", "KillMode=proces"), "output"),
    (("WatchdogSec=20s", "WatchdogSec=20x"), "output"),
    (("Delegate=yes", "Delgate=yes"), "output"),
])
def test_verify_catches_broken_units(verify_root, tmp_path, edit, fails):
    """The check above fails on a real mistake: a broken copy of the vmmd unit."""
    sysdir = os.path.join(verify_root, "usr/lib/systemd/system")
    text = open(os.path.join(sysdir, "quiver-vmmd.service")).read()
    assert edit[0] in text
    broken = os.path.join(sysdir, "quiver-broken-%s.service" % SESSION_TAG)
    with open(broken, "w") as f:
        f.write(text.replace(edit[0], edit[1], 1))
    try:
        rc, out = verify(verify_root, broken)
    finally:
        os.unlink(broken)
    assert not (rc == 0 and out == ""), "verify passed %s" % (edit,)
    if fails == "exit":
        assert rc != 0, out
    else:
        assert out, rc


# ---------------------------------------------------------------------------
# the installed binaries at work


def test_installed_qctl_runs_a_sandbox(installed, bundle, private_root):
    qctl = os.path.join(installed, "usr/bin/qctl")
    root = private_root("installed")
    cid = "%s-inst-%d" % (SESSION_TAG, _id_counter())
    bundle.shell("echo installed-ok")
    r = run([qctl, "--root", root, "run", "-b", bundle.path, cid], env=clean_env())
    assert r.returncode == 0 and "installed-ok" in r.stdout, r.stdout
    # The vmmd qctl started is the installed one (found next to qctl's real
    # file), and so is the guest it spawned.
    pid = int(open(os.path.join(root, "vmmd.pid")).read())
    libexec = os.path.join(os.path.realpath(installed), "usr/libexec/quiver")
    assert os.readlink("/proc/%d/exe" % pid) == os.path.join(libexec, "quiver-vmmd")
    launcher_log = open(os.path.join(root, "vmmd.log")).read()
    assert "cannot" not in launcher_log.lower(), launcher_log
    run([qctl, "--root", root, "delete", "--force", cid], env=clean_env())
    r = run([qctl, "--root", root, "daemons", "stop"], env=clean_env())
    assert r.returncode == 0, r.stdout
    assert wait_gone(pid)


def test_bounding_set_is_enough_and_a_ceiling(installed, bundle_factory, private_root, runtime):
    """vmmd under exactly the unit's CapabilityBoundingSet (setpriv: what
    systemd would apply) runs a sandbox with Docker's default capabilities,
    and refuses one that asks for a capability outside the set."""
    if not shutil.which("setpriv"):
        pytest.skip("no setpriv")
    caps = bounding_set(installed)
    spec = "-all," + ",".join("+" + c[4:].lower() for c in caps)
    qctl = os.path.join(installed, "usr/bin/qctl")
    root = private_root("bounded")
    env = clean_env()

    def qrun(b, cid):
        return run(["setpriv", "--bounding-set", spec, qctl, "--root", root, "run", "-b", b.path, cid], env=env)

    ok = bundle_factory()
    ok.shell("grep CapBnd /proc/self/status; echo bounded-ok")
    for k in ("bounding", "effective", "permitted"):
        ok.set("process.capabilities." + k, DOCKER_CAPS)
    cid = "%s-bnd-%d" % (SESSION_TAG, _id_counter())
    r = qrun(ok, cid)
    assert r.returncode == 0 and "bounded-ok" in r.stdout, r.stdout
    # (What this machine gives us at most: a container may hold fewer.)
    nums = kernel_caps()
    want = sum(1 << nums[c] for c in caps) & cap_bounding(os.getpid())
    pid = int(open(os.path.join(root, "vmmd.pid")).read())
    assert cap_bounding(pid) == want, "vmmd's bounding set is not the unit's"

    too_much = bundle_factory()
    for k in ("bounding", "effective", "permitted"):
        too_much.set("process.capabilities." + k, DOCKER_CAPS + ["CAP_SYS_MODULE"])
    cid2 = "%s-bnd-%d" % (SESSION_TAG, _id_counter())
    r = qrun(too_much, cid2)
    assert r.returncode != 0 and "capset" in r.stdout, r.stdout
    # ... which is the ceiling's doing: the session's vmmd runs it.
    if cap_bounding(os.getpid()) & (1 << nums["CAP_SYS_MODULE"]):
        r = runtime("run", "-b", too_much.path, runtime.new_id("bnd"))
        assert r.returncode == 0, r.stderr
    for c in (cid, cid2):
        run([qctl, "--root", root, "delete", "--force", c], env=env)


# ---------------------------------------------------------------------------
# sd_notify: readiness, watchdog, stopping


class Notify:
    """A datagram socket where a daemon's sd_notify messages arrive, with
    the sender's pid (SO_PASSCRED, as systemd checks NotifyAccess=main)."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)

    def recv(self, timeout=MSG_TIMEOUT):
        """(pid, {key: value}) of the next message, or None after timeout."""
        self.sock.settimeout(timeout)
        try:
            data, anc, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(12))
        except socket.timeout:
            return None
        pid = None
        for level, kind, payload in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                pid = struct.unpack("iII", payload[:12])[0]
        fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
        return pid, fields

    def until(self, key, timeout=MSG_TIMEOUT):
        """Messages up to and including the first with key; the list."""
        got = []
        while True:
            m = self.recv(timeout)
            assert m is not None, "no %s within %ss; got %s" % (key, timeout, got)
            got.append(m)
            if key in m[1]:
                return got

    def close(self):
        self.sock.close()


def poold_config(tmpdir):
    off = {"low": 0, "high": 0}
    path = os.path.join(tmpdir, "poold.json")
    with open(path, "w") as f:
        json.dump({"cgroup_parent": "quiver-%s-sd" % SESSION_TAG,
                   "pools": {"cgroup": off, "netns": off, "layer": off, "warm": off}}, f)
    return path


def answers(daemon, root):
    """Does the daemon's socket answer (a real request where there is one)?"""
    if daemon == "quiver-vmmd":
        return run([RUNTIME_PATH, "--root", root, "daemons", "status"]).returncode == 0
    if daemon == "quiver-poold":
        return run([RUNTIME_PATH, "--root", root, "pool", "status"]).returncode == 0
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        s.connect(os.path.join(root, daemon.split("-")[1] + ".sock"))
        return True
    except OSError:
        return False
    finally:
        s.close()


@pytest.fixture
def notified(tmp_path):
    """start(daemon, watchdog_pid=...) runs a daemon with --foreground as a
    Type=notify unit would; stopped and cleaned up at the end."""
    started = []
    tmp = tempfile.mkdtemp(prefix="quiver-sd-%s-" % SESSION_TAG)
    os.chmod(tmp, 0o755)
    note = Notify(os.path.join(tmp, "notify.sock"))

    def start(daemon, foreground=True, watchdog_pid="self"):
        root = os.path.join(tmp, "root%d" % len(started))
        argv = [os.path.join(BIN, daemon), "--root", root, "--log", os.path.join(tmp, daemon + ".log")]
        if foreground:
            argv.append("--foreground")
        if daemon == "quiver-poold":
            argv += ["--config", poold_config(tmp)]
        if daemon == "quiver-netd":
            argv += NETD_ARGS
        env = clean_env(NOTIFY_SOCKET=note.path, WATCHDOG_USEC=str(WATCHDOG_USEC))
        # WATCHDOG_PID must be the daemon's own pid: the shell's, kept by exec.
        pidexpr = "$$" if watchdog_pid == "self" else str(watchdog_pid)
        wrapper = ["/bin/sh", "-c", 'WATCHDOG_PID=%s exec "$@"' % pidexpr, "sh"] + argv
        logf = open(os.path.join(tmp, daemon + ".out"), "w")
        p = subprocess.Popen(wrapper, env=env, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT)
        logf.close()
        started.append((p, root, daemon))
        return p, root

    def log(daemon):
        try:
            return open(os.path.join(tmp, daemon + ".log")).read()
        except OSError:
            return ""

    start.note = note
    start.log = log
    try:
        yield start
    finally:
        for p, root, daemon in started:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(20)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
            if daemon == "quiver-netd":  # its bridge and table stay after a stop
                run([os.path.join(BIN, daemon), "--root", root, "--teardown"] + NETD_ARGS)
            if daemon == "quiver-vmmd":  # a detached one
                # The pid before the stop: the stopping daemon removes its file.
                pid = read_text(os.path.join(root, "vmmd.pid"), "").strip()
                run([RUNTIME_PATH, "--root", root, "daemons", "stop"])
                if pid:
                    wait_gone(int(pid))
        note.close()
        # poold's cgroup parent, one per hierarchy, below our own cgroups.
        for d in set(os.path.realpath(x) for x in cgroup_paths_of(os.getpid()).values()):
            try:
                os.rmdir(os.path.join(d, "quiver-%s-sd" % SESSION_TAG))
            except OSError:
                pass
        reap_zombies()
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.mark.parametrize("daemon", DAEMONS)
def test_ready_watchdog_stopping(notified, daemon):
    p, root = notified(daemon)
    note = notified.note
    first = note.recv()
    assert first is not None, "no message from %s: %s" % (daemon, notified.log(daemon))
    pid, msg = first
    # READY=1 is the first word, from the daemon itself, and the socket
    # answers by then.
    assert msg.get("READY") == "1", first
    assert pid == p.pid, "sent by %s, not the daemon %d" % (pid, p.pid)
    assert root in msg.get("STATUS", ""), first
    assert answers(daemon, root), "READY=1 but %s does not answer" % daemon
    # The watchdog: pings, again and again, only from the daemon.
    pings = 0
    while pings < 4:
        m = note.recv()
        assert m is not None, "pings stopped after %d" % pings
        assert m[0] == p.pid and m[1] == {"WATCHDOG": "1"}, m
        pings += 1
    p.send_signal(signal.SIGTERM)
    got = note.until("STOPPING")
    assert got[-1][0] == p.pid and got[-1][1]["STOPPING"] == "1", got
    assert all(m[1] == {"WATCHDOG": "1"} for m in got[:-1]), got
    assert p.wait(20) == 0, notified.log(daemon)
    assert not os.path.exists(os.path.join(root, daemon.split("-")[1] + ".sock"))


def test_watchdog_pid_of_another_process(notified):
    """WATCHDOG_PID names someone else: ready, but no watchdog pings (the
    variable is for the process systemd started, nobody else)."""
    p, root = notified("quiver-iod", watchdog_pid=1)
    pid, msg = notified.note.recv()
    assert msg.get("READY") == "1" and pid == p.pid
    assert notified.note.recv(timeout=3 * WATCHDOG_USEC / 1e6) is None
    p.send_signal(signal.SIGTERM)
    assert notified.note.until("STOPPING")[-1][1]["STOPPING"] == "1"
    assert p.wait(20) == 0


def test_detached_daemon_does_not_notify(notified):
    """Without --foreground the daemon is not the unit's main process (qctl
    starts it so from anywhere): it tells no one, its first process exits
    once it serves."""
    p, root = notified("quiver-vmmd", foreground=False)
    assert p.wait(CMD_TIMEOUT) == 0
    assert answers("quiver-vmmd", root)
    assert notified.note.recv(timeout=3 * WATCHDOG_USEC / 1e6) is None
    assert pid_alive(int(open(os.path.join(root, "vmmd.pid")).read()))
