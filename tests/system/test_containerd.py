"""containerd 1.6 drives the runtime for real: `ctr run --runc-binary QCTL`
through containerd's io.containerd.runc.v2 shim, which calls the runtime
with runc's grammar (create with a pid file, start, kill, exec with a
process.json, delete, and their JSON logs).

The test starts a containerd of its own (CRI plugin disabled) whose root,
state, sockets and the image's snapshots all live under the session's
temporary directory, and imports a busybox image built on the spot.  Only
the shims' sockets (/run/containerd/s, fixed in containerd 1.6) and the
fifos of `ctr task exec` (/run/containerd/fifo) are made outside it:
/run/containerd is removed at the end if the test made it.

The runtime's root: the shim calls the runtime with `--root R/NAMESPACE`,
where R is the runc option Root (`ctr run --runc-root R`).  R is under the
test's directory, and the fixture runs `qctl --root R/NAMESPACE daemons
start` before any container, so that the vmmd is not started by a `qctl
create` under a shim (the shim is a subreaper: it would adopt it).  A
session poold (QUIVER_TEST_POOLD=1) serves the session's root, not this
one, and ctr always sets linux.cgroupsPath, which a warm supervisor cannot
take: these tests cover the cold path in every mode."""

import os
import signal
import subprocess

import pytest

from clients_support import (HostDirs, cgroup_hierarchies, client_fixture, make_cgroups, mounts_under, remove_cgroups, run_with_pty,
                             run_to_files, unmount_under, write_busybox_archive)
from conftest import (CMD_TIMEOUT, IS_QUIVER, LIVE_POPEN, LOOP, RUNTIME_PATH, SESSION_TAG, all_pids,
                      poll_until, proc_cmdline, reap_zombies, wait_gone)

# ctr puts each container in the cgroup /NAMESPACE/ID of every hierarchy:
# with the session's tag in the namespace the leak checker sees them.
NAMESPACE = "quiver-" + SESSION_TAG


class Containerd:
    def __init__(self, base):
        self.base = base
        self.address = os.path.join(base, "containerd.sock")
        self.config = os.path.join(base, "config.toml")
        self.log = os.path.join(base, "containerd.log")
        self.runc_root = os.path.join(base, "runc-root")
        self.qctl_root = os.path.join(self.runc_root, NAMESPACE)
        self.fifos = os.path.join(base, "fifo")
        self.proc = None
        self.image = None
        for d in (self.runc_root, self.fifos):
            os.makedirs(d, 0o700)
        with open(self.config, "w") as f:
            f.write('version = 2\n'
                    'root = "%s"\n'
                    'state = "%s"\n'
                    'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
                    '[grpc]\n  address = "%s"\n'
                    '[ttrpc]\n  address = "%s.ttrpc"\n'
                    '[debug]\n  address = ""\n'
                    '[metrics]\n  address = ""\n'
                    % (os.path.join(base, "root"), os.path.join(base, "state"), self.address, self.address))

    def ctr(self, *args, timeout=CMD_TIMEOUT):
        """One ctr command in the test's namespace.  Output goes to files: a
        detached task's shim must not hold a pipe of ours."""
        argv = ["ctr", "--address", self.address, "--namespace", NAMESPACE] + [str(a) for a in args]
        return run_to_files(argv, timeout)

    def ok(self, *args, **kw):
        r = self.ctr(*args, **kw)
        assert r.returncode == 0, "%s: exit %d\nstdout: %s\nstderr: %s" % (
            " ".join(r.args[4:]), r.returncode, r.stdout, r.stderr)
        return r

    def runtime_flags(self):
        return ["--runc-binary", RUNTIME_PATH, "--runc-root", self.runc_root, "--fifo-dir", self.fifos]

    def run(self, *args, **kw):
        """ctr run [args] with the runtime under test; args end with IMAGE ID CMD..."""
        return self.ctr("run", *self.runtime_flags(), *args, **kw)

    def run_ok(self, *args, **kw):
        r = self.run(*args, **kw)
        assert r.returncode == 0, "ctr run: exit %d\nstdout: %s\nstderr: %s\ncontainerd: %s" % (
            r.returncode, r.stdout, r.stderr, self.log_tail())
        return r

    def log_tail(self, n=30):
        try:
            with open(self.log) as f:
                return "".join(f.readlines()[-n:])
        except OSError as e:
            return str(e)

    def tasks(self):
        """{id: (pid, status)} from `ctr task ls`."""
        out = {}
        for line in self.ok("task", "ls").stdout.splitlines()[1:]:
            f = line.split()
            if len(f) == 3:
                out[f[0]] = (int(f[1]), f[2])
        return out

    def runtime_list(self):
        """Ids the runtime itself knows under the shim's root."""
        r = subprocess.run([RUNTIME_PATH, "--root", self.qctl_root, "list", "-q"], stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=CMD_TIMEOUT)
        assert r.returncode == 0, r.stderr
        return r.stdout.split()

    def shims(self):
        return [p for p in all_pids() if "containerd-shim" in proc_cmdline(p)
                and self.address in proc_cmdline(p)]


def _qctl(root, *args):
    return subprocess.run([RUNTIME_PATH, "--root", root] + list(args), stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=CMD_TIMEOUT)


def _stop(cd):
    """Stop everything the fixture started; returns what had to be forced."""
    problems = []
    if cd.proc is not None and cd.proc.poll() is None:
        r = cd.ctr("containers", "ls", "-q")
        for cid in r.stdout.split():
            problems.append("container %s left" % cid)
            cd.ctr("task", "kill", "-s", "SIGKILL", cid)
            cd.ctr("task", "delete", "--force", cid)
            cd.ctr("containers", "delete", cid)
        if cd.image:
            cd.ctr("image", "rm", cd.image)
        cd.proc.send_signal(signal.SIGTERM)
        try:
            cd.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            problems.append("containerd ignored SIGTERM")
            cd.proc.kill()
            cd.proc.wait()
    if cd.proc is not None:
        LIVE_POPEN.discard(cd.proc.pid)
    for pid in cd.shims():
        problems.append("shim %d left" % pid)
        os.kill(pid, signal.SIGKILL)
        wait_gone(pid)
    if IS_QUIVER and os.path.exists(os.path.join(cd.qctl_root, "vmmd.sock")):
        for cid in _qctl(cd.qctl_root, "list", "-q").stdout.split():
            problems.append("sandbox %s left" % cid)
            _qctl(cd.qctl_root, "delete", "--force", cid)
        r = _qctl(cd.qctl_root, "daemons", "stop")
        if r.returncode != 0:
            problems.append("qctl daemons stop: %s" % r.stderr.strip())
    elif not IS_QUIVER and os.path.isdir(cd.qctl_root):
        for cid in _qctl(cd.qctl_root, "list", "-q").stdout.split():
            problems.append("container %s left in the runtime" % cid)
            _qctl(cd.qctl_root, "delete", "--force", cid)
    reap_zombies()
    left = unmount_under(cd.base)
    if left:
        problems.append("mounts left: %s" % left)
    return problems


@pytest.fixture(scope="module")
def containerd(session):
    yield from client_fixture(("containerd", "ctr", "containerd-shim-runc-v2"), _containerd, session)


def _containerd(session):
    base = os.path.join(session.tmp, "containerd")
    os.mkdir(base, 0o711)
    host_dirs = HostDirs("/run/containerd")
    cd = Containerd(base)
    ns_cgroups = []
    try:
        # The namespace's cgroup directories: containerd makes /NAMESPACE/ID
        # and no runtime removes /NAMESPACE (runc neither): the fixture owns them.
        ns_cgroups = make_cgroups(NAMESPACE)
        with open(cd.log, "w") as log:
            cd.proc = subprocess.Popen(["containerd", "--config", cd.config], stdin=subprocess.DEVNULL,
                                       stdout=log, stderr=log)
        LIVE_POPEN.add(cd.proc.pid)
        up = poll_until(lambda: cd.proc.poll() is not None
                        or (os.path.exists(cd.address) and cd.ctr("version").returncode == 0), 30)
        if not up or cd.proc.poll() is not None:
            pytest.fail("containerd did not start (exit %s); its log:\n%s" % (cd.proc.poll(), cd.log_tail()),
                        pytrace=False)
        archive = os.path.join(base, "busybox.tar")
        name = write_busybox_archive(archive)
        r = cd.ctr("image", "import", archive)
        if r.returncode != 0:
            pytest.fail("ctr image import: %s%s" % (r.stdout, r.stderr), pytrace=False)
        cd.image = name
        os.unlink(archive)
        if IS_QUIVER:
            r = _qctl(cd.qctl_root, "daemons", "start")
            if r.returncode != 0:
                pytest.fail("qctl daemons start: %s" % r.stderr, pytrace=False)
        yield cd
    finally:
        problems = _stop(cd)
        problems += remove_cgroups(ns_cgroups)
        subprocess.run(["rm", "-rf", "--one-file-system", base])
        host_dirs.remove()
        if problems:
            pytest.fail("containerd teardown: " + "; ".join(problems), pytrace=False)


def _assert_nothing_left(cd, cid):
    """After the container is deleted: no task, no sandbox, no shim, no
    process, no mount and no cgroup that names it."""
    assert cid not in cd.ctr("containers", "ls", "-q").stdout.split()
    assert poll_until(lambda: cid not in cd.runtime_list(), 10), cd.runtime_list()
    assert poll_until(lambda: not [p for p in cd.shims() if cid in proc_cmdline(p)], 10)
    assert poll_until(lambda: not [p for p in all_pids() if cid in proc_cmdline(p)], 10), \
        [proc_cmdline(p) for p in all_pids() if cid in proc_cmdline(p)]
    assert not [m for m in mounts_under(cd.base) if cid in m]
    assert not [h for h in cgroup_hierarchies() if os.path.exists(os.path.join(h, NAMESPACE, cid))]


def _new_id(name):
    _new_id.n += 1
    return "%s-%s-%d" % (SESSION_TAG, name, _new_id.n)


_new_id.n = 0


def test_run_rm_output_and_status(containerd):
    """`ctr run --rm`: the workload's stdout and stderr reach ctr's, and
    ctr exits with the workload's status."""
    cid = _new_id("rm")
    r = containerd.run("--rm", containerd.image, cid, "sh", "-c",
                       "echo out; echo err >&2; cat /etc/hostname 2>/dev/null; exit 3")
    assert r.returncode == 3, (r.stdout, r.stderr, containerd.log_tail())
    assert r.stdout.splitlines()[0] == "out", r.stdout
    assert "err" in r.stderr.splitlines(), r.stderr
    _assert_nothing_left(containerd, cid)


def test_detached_task_exec_pause_kill_delete(containerd):
    """`ctr run -d`, then `task ls` (RUNNING), `task exec` (its output and
    status), `task pause`/`resume`, `task kill` (SIGTERM: the workload's trap
    exits 42, and containerd reports that status), `task delete` and
    `container delete`: nothing is left."""
    cid = _new_id("detached")
    containerd.run_ok("-d", containerd.image, cid, "sh", "-c", LOOP)
    pid, status = containerd.tasks()[cid]
    assert status == "RUNNING" and pid > 0
    assert cid in containerd.runtime_list()

    r = containerd.ctr("task", "exec", "--exec-id", "e1", cid, "sh", "-c", "echo in-exec; echo $$; exit 5")
    assert r.returncode == 5, (r.stdout, r.stderr)
    assert r.stdout.splitlines()[0] == "in-exec", r.stdout

    containerd.ok("task", "pause", cid)
    assert containerd.tasks()[cid][1] == "PAUSED"
    containerd.ok("task", "resume", cid)
    assert containerd.tasks()[cid][1] == "RUNNING"

    containerd.ok("task", "kill", cid)
    assert poll_until(lambda: containerd.tasks()[cid][1] == "STOPPED", 15), containerd.tasks()
    r = containerd.ok("task", "delete", cid)
    assert "exit code 42" in r.stderr, r.stderr
    containerd.ok("containers", "delete", cid)
    _assert_nothing_left(containerd, cid)


# ctr sets no process.consoleSize: it resizes the pty once the task has
# started, so the workload may see 0x0 first (under runc as well).
WAIT_FOR_SIZE = "n=0; while [ \"$(stty size 2>/dev/null)\" != '33 91' ] && [ $n -lt 100 ]; do sleep 0.05; n=$((n+1)); done; "


def test_terminal(containerd):
    """`ctr run -t` from a terminal: the workload's stdio is a pty of the
    sandbox's own, with the caller's window size and the kernel's default
    modes (as runc leaves them: ONLCR on), and the exit status still comes
    back; `ctr task exec -t` into a running task gets one too."""
    cid = _new_id("tty")
    rc, out = run_with_pty(["ctr", "--address", containerd.address, "--namespace", NAMESPACE, "run", "-t",
                            "--rm"] + containerd.runtime_flags()
                           + [containerd.image, cid, "sh", "-c",
                              "tty; [ -t 0 ] && [ -t 1 ] && echo is-a-tty; " + WAIT_FOR_SIZE + "stty size; "
                              "stty -a | grep -o -- '-*onlcr'; exit 7"], rows=33, cols=91)
    assert rc == 7, out
    lines = out.replace("\r", "").splitlines()
    assert lines[0].startswith("/dev/pts/") and lines[1:] == ["is-a-tty", "33 91", "onlcr"], out
    _assert_nothing_left(containerd, cid)

    cid = _new_id("exec-tty")
    containerd.run_ok("-d", containerd.image, cid, "sh", "-c", LOOP)
    rc, out = run_with_pty(["ctr", "--address", containerd.address, "--namespace", NAMESPACE, "task", "exec",
                            "-t", "--exec-id", "t1", cid, "sh", "-c", "[ -t 0 ] && echo exec-tty; exit 6"])
    assert rc == 6 and "exec-tty" in out, (rc, out)
    containerd.ok("task", "kill", "-s", "SIGKILL", cid)
    assert poll_until(lambda: containerd.tasks()[cid][1] == "STOPPED", 15)
    containerd.ok("task", "delete", cid)
    containerd.ok("containers", "delete", cid)
    _assert_nothing_left(containerd, cid)


def test_task_delete_force_of_a_running_task(containerd):
    """`ctr task delete --force` of a running task (containerd kills it
    first), as a client cleaning up after itself does."""
    cid = _new_id("force")
    containerd.run_ok("-d", containerd.image, cid, "sh", "-c", LOOP)
    assert containerd.tasks()[cid][1] == "RUNNING"
    containerd.ok("task", "delete", "--force", cid)
    containerd.ok("containers", "delete", cid)
    _assert_nothing_left(containerd, cid)
