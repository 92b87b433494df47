"""From inside a Quiver sandbox, the host-kernel entry points of the threat
model must be closed, with the errno the policy documents (not just
"nonzero").  progs/attack.c makes each attempt with valid arguments."""

import json
import os
import re
import struct

import pytest

from conftest import CMD_TIMEOUT, LIVE_POPEN, REAPER_PAUSED

pytestmark = pytest.mark.quiver_only

ATTACK_TIMEOUT = 15  # seconds; hang protection only

DENY = {"EPERM", "EACCES", "ENOSYS"}
# (attack, argument, accepted outcomes).  "signal=31": killed by SIGSYS.
CASES = [
    ("mount", None, DENY),
    ("umount2", None, DENY),
    ("unshare", "user", DENY),
    ("unshare", "mnt", DENY),
    ("unshare", "pid", DENY),
    ("unshare", "net", DENY),
    ("unshare", "uts", DENY),
    ("unshare", "ipc", DENY),
    ("unshare", "cgroup", DENY),
    ("unshare", "time", DENY),
    ("setns", "net", DENY | {"ENOENT"}),
    ("setns", "mnt", DENY | {"ENOENT"}),
    ("ptrace_attach", None, DENY),
    ("ptrace_traceme", None, DENY),
    ("bpf", None, DENY),
    ("keyctl", None, DENY),
    ("add_key", None, DENY),
    ("io_uring_setup", None, DENY),
    ("perf_event_open", None, DENY),
    ("userfaultfd", None, DENY),
    ("kexec_load", None, DENY),
    ("init_module", None, DENY),
    ("finit_module", None, DENY),
    ("reboot", None, DENY),
    ("swapon", None, DENY),
    ("open_by_handle_at", None, DENY),
    ("clone", "mnt", DENY),
    ("clone", "pid", DENY),
    ("clone", "net", DENY),
    ("clone", "user", DENY),
    ("clone3", None, DENY),
    ("clone3", "user", DENY),
    ("tiocsti", None, DENY | {"EIO"}),
    ("write", "/proc/sys/vm/drop_caches", DENY | {"EROFS"}),
    ("write", "/proc/sys/kernel/core_pattern", DENY | {"EROFS"}),
    ("write", "/sys/kernel/mm/transparent_hugepage/enabled", DENY | {"EROFS", "ENOENT"}),
    ("write", "/sys/fs/cgroup/pids/pids.max", DENY | {"EROFS", "ENOENT"}),
    ("mknod", None, DENY),
    ("int80", None, DENY | {"signal=31"}),
    ("x32", None, DENY | {"signal=31"}),
]

LINE = re.compile(r"^(\S+) (?:rc=(-?\d+) errno=(\w+)\(\d+\)|signal=(\d+))$")


def attack(runtime, bundle, name, arg=None, terminal=False):
    bundle.args(*(["/bin/attack", name] + ([arg] if arg else [])))
    cid = runtime.new_id("atk")
    r = runtime("run", "--bundle", bundle.path, cid, timeout=ATTACK_TIMEOUT)
    assert r.returncode == 0, "attack exited %d: %s" % (r.returncode, r.stderr)
    lines = [l for l in r.stdout.splitlines() if l.startswith(name + " ")]
    assert len(lines) == 1, (r.stdout, r.stderr)
    m = LINE.match(lines[0])
    assert m, lines[0]
    if m.group(4):
        return "signal=" + m.group(4), lines[0]
    rc = int(m.group(2))
    return ("OK" if rc >= 0 else m.group(3)), lines[0]


def host_outcome(session, name):
    """What the kernel itself does with a harmless attempt (getpid through an
    ABI entry) outside any sandbox: if the host already refuses it, so may
    the sandbox."""
    import subprocess
    r = subprocess.run([session.attack, name], env=dict(os.environ, QUIVER_ATTACK_ON_HOST="1"),
                       stdout=subprocess.PIPE, text=True, timeout=CMD_TIMEOUT)
    return r.stdout.split()[1] if r.stdout.strip() else ""


@pytest.mark.parametrize("name,arg,allowed", CASES,
                         ids=["%s-%s" % (c[0], c[1].strip("/").replace("/", "_")) if c[1] else c[0] for c in CASES])
def test_denied(runtime, bundle, session, name, arg, allowed):
    if name in ("int80", "x32"):
        host = host_outcome(session, name)
        if host.startswith("signal="):
            allowed = allowed | {host}
    outcome, line = attack(runtime, bundle, name, arg)
    assert outcome in allowed, "sandbox escape surface open: %s (want one of %s)" % (line, sorted(allowed))


def test_only_sandbox_pids_visible(runtime, bundle):
    bundle.args("/bin/attack", "procpids")
    r = runtime("run", "--bundle", bundle.path, runtime.new_id("atk"))
    assert r.returncode == 0, r.stderr
    pids = [int(p) for p in r.stdout.split()[1].split(",")]
    # The supervisor, the workload and the child attack forks, nothing more.
    assert len(pids) <= 4 and max(pids) < 16, pids


def test_kill_host_pid(runtime, bundle):
    outcome, line = attack(runtime, bundle, "kill", str(os.getpid()))
    assert outcome == "ESRCH", line
    outcome, line = attack(runtime, bundle, "kill", "1")
    # pid 1 is the supervisor: signalling it from inside is refused or ignored,
    # never a way out; kill(1, 0) may report it exists.
    assert outcome in {"OK", "EPERM"}, line


def test_tiocsti_on_controlling_terminal(runtime, bundle, tmp_path):
    from test_terminal import ConsoleSocket, read_until, wait_exit

    bundle.set("process.terminal", True).args("/bin/attack", "tiocsti", "stdin")
    cs = ConsoleSocket(str(tmp_path / "console.sock"))
    cid = runtime.new_id("atk")
    pid = None
    REAPER_PAUSED[0] = True
    try:
        pidfile = str(tmp_path / "init.pid")
        runtime.ok("run", "-d", "--pid-file", pidfile, "--console-socket", cs.path, "--bundle", bundle.path, cid)
        # the pid file, not `state`: the workload may already have exited
        pid = int(open(pidfile).read())
        LIVE_POPEN.add(pid)
        REAPER_PAUSED[0] = False
        out = read_until(cs.get(), b"errno=").decode(errors="replace")
        wait_exit(pid)
    finally:
        REAPER_PAUSED[0] = False
        if pid is not None:
            LIVE_POPEN.discard(pid)
        cs.close()
    m = re.search(r"tiocsti rc=(-?\d+) errno=(\w+)", out)
    assert m, out
    assert int(m.group(1)) < 0 and m.group(2) in DENY | {"EIO"}, out


# ---------------------------------------------------------------------------
# denied counters


def _sum_denied(obj):
    """Sum every number found under a key containing "denied" in inspect's JSON."""
    total = 0
    if isinstance(obj, dict):
        for k, v in obj.items():
            if "denied" in k.lower():
                total += _numbers(v)
            else:
                total += _sum_denied(v)
    elif isinstance(obj, list):
        for v in obj:
            total += _sum_denied(v)
    return total


def _numbers(v):
    if isinstance(v, bool):
        return 0
    if isinstance(v, (int, float)):
        return v
    if isinstance(v, dict):
        return sum(_numbers(x) for x in v.values())
    if isinstance(v, list):
        return sum(_numbers(x) for x in v)
    return 0


def _counters_file(runtime, cid):
    """denied[] from ROOT/ID/counters (guest/counters.h), or None."""
    path = os.path.join(runtime.root, cid, "counters")
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return None
    magic, version, nr_max, _ = struct.unpack_from("<IIII", data, 0)
    assert magic == 0x51564354 and version == 1, (hex(magic), version)
    off = 16 + 8 * nr_max
    return struct.unpack_from("<%dQ" % nr_max, data, off)


def denied_after(runtime, bundle, args):
    bundle.args(*args)
    cid = runtime.new_id("cnt")
    runtime.ok("create", "--bundle", bundle.path, cid)
    runtime.ok("start", cid)
    assert runtime.wait_status(cid, "stopped")
    r = runtime.ok("inspect", cid)
    info = json.loads(r.stdout)
    return _sum_denied(info), _counters_file(runtime, cid), r.stdout


def test_denied_counters(runtime, bundle):
    base, base_file, _ = denied_after(runtime, bundle, ["/bin/true"])
    after, after_file, text = denied_after(runtime, bundle, ["/bin/attack", "ptrace_traceme"])
    assert after > base, "qctl inspect shows no more denials after a denied ptrace: %s" % text[:2000]
    if after_file is not None:
        SYS_ptrace = 101
        assert after_file[SYS_ptrace] >= 1, "counters file: denied[ptrace] = %d" % after_file[SYS_ptrace]
