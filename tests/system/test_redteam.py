"""Red-team attacks on a Quiver sandbox: each test runs an attack of
progs/attack.c inside a sandbox (a hostile root workload) and asserts that
it FAILS.  An open vulnerability is marked xfail(strict) with a reason that
says where and how to fix it; today there is none."""

import os
import re

import pytest

from conftest import poll_until

pytestmark = pytest.mark.quiver_only

DENY = {"EPERM", "EACCES", "ENOSYS"}
LINE = re.compile(r"^(\S+) (?:rc=(-?\d+) errno=(\w+)\(\d+\)|signal=(\d+))$")
# S's fds are small numbers; the directory fd it holds on the host's state
# dir is one of them (5 today).  Every attack below tries them all.
SUPERVISOR_FDS = range(3, 13)


def outcome_of(stdout, name):
    """"OK" (the attack worked), an errno name, "signal=N", or None."""
    for line in stdout.splitlines():
        m = LINE.match(line)
        if m and m.group(1) == name:
            if m.group(4):
                return "signal=" + m.group(4)
            return "OK" if int(m.group(2)) >= 0 else m.group(3)
    return None


def run_attack(runtime, bundle, name, arg=None):
    bundle.args(*(["/bin/attack", name] + ([arg] if arg else [])))
    r = runtime("run", "--bundle", bundle.path, runtime.new_id("rt"))
    assert r.returncode == 0, "attack exited %d: %s" % (r.returncode, r.stderr)
    out = outcome_of(r.stdout, name)
    assert out is not None, (r.stdout, r.stderr)
    return out, r.stdout.strip()


# ---------------------------------------------------------------------------
# host-kernel entry points with bits above the 32 the kernel reads


@pytest.mark.parametrize("name,arg,allowed", [
    ("socket", "packet", DENY | {"EAFNOSUPPORT"}),
    ("socket", "packet_hi", DENY | {"EAFNOSUPPORT"}),
    ("socket", "alg", DENY | {"EAFNOSUPPORT"}),
    ("socket", "alg_hi", DENY | {"EAFNOSUPPORT"}),
    ("socket", "vsock_hi", DENY | {"EAFNOSUPPORT"}),
    ("prctl_hi", None, DENY | {"EINVAL"}),
    ("write", "/proc/sysrq-trigger", DENY | {"EROFS", "ENOENT"}),  # ENOENT: no CONFIG_MAGIC_SYSRQ
])
def test_argument_checks(runtime, bundle, name, arg, allowed):
    out, text = run_attack(runtime, bundle, name, arg)
    assert out in allowed, "escape surface open: %s (want one of %s)" % (text, sorted(allowed))


# ---------------------------------------------------------------------------
# the supervisor (pid 1) from inside: non-dumpable, so /proc/1/{mem,fd,...}
# need CAP_SYS_PTRACE, which the workload does not have.  (Listing /proc/1/fd
# is allowed by the kernel: it shows fd numbers only, no link can be read or
# followed; that is what the fdN cases check.)


@pytest.mark.parametrize("what", ["mem", "environ", "root", "exe"] +
                         ["fd%d" % n for n in SUPERVISOR_FDS])
def test_supervisor_proc_entries(runtime, bundle, what):
    out, text = run_attack(runtime, bundle, "proc1", what)
    assert out in DENY | {"ENOENT"}, "the workload opened the supervisor's /proc/1/%s: %s" % (what, text)


# ---------------------------------------------------------------------------
# runc CVE-2024-21626: a host directory fd as the workload's cwd


def test_cwd_proc_self_fd(runtime, bundle):
    escaped = []
    for n in SUPERVISOR_FDS:
        bundle.set("process.cwd", "/proc/self/fd/%d" % n).args("/bin/attack", "cwd_outside")
        r = runtime("run", "--bundle", bundle.path, runtime.new_id("cwd"))
        # refusing to start is a fine outcome (ENOTDIR, or a cwd check)
        if r.returncode == 0 and outcome_of(r.stdout, "cwd_outside") == "OK":
            escaped.append(n)
    assert not escaped, "process.cwd /proc/self/fd/N put the workload outside its root for N in %s" % escaped


def test_exec_cwd_symlink_to_supervisor_fd(runtime, bundle):
    links = " ".join(str(n) for n in SUPERVISOR_FDS)
    bundle.shell("for n in %s; do ln -s /proc/1/fd/$n /dev/shm/d$n; done; "
                 "touch /dev/shm/ready; exec sleep 1000" % links)
    cid = runtime.new_id("xcwd")
    runtime.ok("run", "-d", "--bundle", bundle.path, cid)
    assert poll_until(lambda: runtime("exec", cid, "/bin/test", "-e", "/dev/shm/ready").returncode == 0)
    escaped = []
    for n in SUPERVISOR_FDS:
        r = runtime("exec", "--cwd", "/dev/shm/d%d" % n, cid, "/bin/attack", "cwd_outside")
        if r.returncode == 0 and outcome_of(r.stdout, "cwd_outside") == "OK":
            escaped.append(n)
    runtime("kill", cid, "KILL")
    assert runtime.wait_status(cid, "stopped")
    assert not escaped, "qctl exec --cwd (a symlink to /proc/1/fd/N) ran outside the root for N in %s" % escaped


# ---------------------------------------------------------------------------
# runc CVE-2016-9962: the joining `qctl exec` child is dumpable


@pytest.mark.parametrize("mode", ["nofilter", "runtime"])
def test_exec_child_memory(runtime, bundle, tmp_path, mode):
    marker = "/dev/shm/exec_mem.stop"
    arg = ("nofilter:" if mode == "nofilter" else "") + marker
    bundle.args("/bin/attack", "exec_mem", arg)
    cid = runtime.new_id("xmem")
    out_path = str(tmp_path / "w.out")
    with open(out_path, "w") as out:
        r = runtime("run", "-d", "--bundle", bundle.path, cid, stdout=out)
    assert r.returncode == 0, r.stderr
    for _ in range(40):
        if runtime("exec", cid, "/bin/true").returncode != 0:
            break  # the hunter won and exited: the sandbox stopped
    runtime("exec", cid, "/bin/touch", marker)
    assert runtime.wait_status(cid, "stopped")
    with open(out_path) as f:
        text = f.read()
    out = outcome_of(text, "exec_mem")
    assert out is not None, text
    assert out != "OK", "the workload opened a joining exec child's /proc/PID/mem for writing: %s" % text
