"""Quiver's management commands: ls, inspect (cgroups, pids, exit status,
syscall counters), policy (and the doc generated from it), pause/resume, and
the lifecycle events vmmd publishes on ROOT/events.sock."""

import json
import os
import re
import subprocess
import time

import pytest

from conftest import (LOOP, running, CMD_TIMEOUT, EventSubscriber, assert_error, cgroup_paths_of,
                      hang_up_in_handshakes, pid_alive, poll_until, vmmd_pid, wait_gone)

pytestmark = pytest.mark.quiver_only

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
SYS_mount, SYS_ptrace, SYS_sysinfo = 165, 101, 99


def guest_bin(runtime):
    # The one qctl runs: $QUIVER_GUEST, or qctl's sibling.
    return os.environ.get("QUIVER_GUEST") or os.path.join(os.path.dirname(runtime.path), "quiver-guest")



def run_to_stop(runtime, bundle, name="c"):
    cid = runtime.new_id(name)
    runtime.ok("create", "--bundle", bundle.path, cid)
    runtime.ok("start", cid)
    assert runtime.wait_status(cid, "stopped")
    return cid


def inspect(runtime, cid):
    return json.loads(runtime.ok("inspect", cid).stdout)


# --------------------------------------------------------------------------
# ls


def test_ls_table_and_json(runtime, bundle_factory):
    a = running(runtime, bundle_factory(), name="lsr")
    c = runtime.new_id("lsc")
    runtime.ok("create", "--bundle", bundle_factory().path, c)
    pa = runtime.state(a)["pid"]

    lines = runtime.ok("ls").stdout.splitlines()
    assert lines[0].split() == ["ID", "STATUS", "PID", "CREATED", "BUNDLE"], lines[0]
    rows = {l.split()[0]: l.split() for l in lines[1:]}
    assert rows[a][1:3] == ["running", str(pa)], rows[a]
    assert rows[c][1] == "created", rows[c]

    items = {s["id"]: s for s in json.loads(runtime.ok("ls", "--json").stdout)}
    assert items[a]["status"] == "running" and items[a]["pid"] == pa
    assert items[c]["status"] == "created"
    for s in (items[a], items[c]):
        assert os.path.isabs(s["bundle"]) and re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$", s["created"])
    assert_error(runtime("ls", "extra"))
    assert_error(runtime("ls", "--bogus"))


# --------------------------------------------------------------------------
# inspect


def test_inspect_running(runtime, bundle):
    cid = running(runtime, bundle, name="insp")
    st = runtime.state(cid)
    info = inspect(runtime, cid)
    assert info["id"] == cid and info["status"] == "running"
    assert info["pid"] == info["supervisor_pid"] == st["pid"]
    assert isinstance(info["pid_start"], int) and info["pid_start"] > 0
    # init_pid is the workload W: a child of S.
    assert info["init_pid"] > 0 and pid_alive(info["init_pid"])
    with open("/proc/%d/stat" % info["init_pid"]) as f:
        assert int(f.read().rsplit(")", 1)[1].split()[1]) == st["pid"]
    assert info["state_dir"] == os.path.join(runtime.root, cid)
    assert info["exit"] is None and info["exited"] is None
    assert info["reserved"] <= info["created"] <= info["started"], info
    # The cgroups recorded are the ones the supervisor lives in.
    assert info["cgroups"], info
    actual = set(cgroup_paths_of(st["pid"]).values())
    for cg in info["cgroups"]:
        assert os.path.isabs(cg) and os.path.isdir(cg) and cid in cg, cg
        assert cg in actual, (cg, sorted(actual))
    assert info["console"] is None
    assert isinstance(info["syscalls"], list)


def test_inspect_exit_status(runtime, bundle_factory):
    b = bundle_factory()
    b.shell("exit 3")
    cid = run_to_stop(runtime, b, "ex3")
    info = inspect(runtime, cid)
    assert info["exit"] == {"status": 3 << 8, "exit_code": 3, "signal": 0}, info["exit"]
    assert info["pid"] == 0 and info["exited"] >= info["started"]

    cid = running(runtime, bundle_factory(), script="exec sleep 1000", name="ex9")
    runtime.ok("kill", cid, "KILL")
    assert runtime.wait_status(cid, "stopped")
    info = inspect(runtime, cid)
    assert info["exit"]["exit_code"] == 137 and info["exit"]["signal"] == 9, info["exit"]

    assert_error(runtime("inspect", runtime.new_id("nosuch")), "does not exist")
    assert_error(runtime("inspect", "../etc"), "invalid container id")


def _counts(info):
    return {s["name"]: (s["trapped"], s["denied"]) for s in info["syscalls"]}


def test_inspect_syscall_counters(runtime, bundle_factory):
    quiet = bundle_factory()
    quiet.args("true")
    base = _counts(inspect(runtime, run_to_stop(runtime, quiet, "cnt0")))
    assert all(d == 0 for _, d in base.values()), base

    b = bundle_factory()
    b.shell("/bin/attack mount; /bin/attack mount; /bin/attack mount; /bin/attack ptrace_traceme; "
            "busybox free >/dev/null")
    cid = run_to_stop(runtime, b, "cnt")
    info = inspect(runtime, cid)
    assert info["exit"]["exit_code"] == 0, info["exit"]
    c = _counts(info)
    # Every denied syscall was trapped first; the counts are exact.
    assert c.get("mount") == (3, 3), info["syscalls"]
    assert c.get("ptrace") == (1, 1), info["syscalls"]
    # sysinfo is emulated: trapped, not denied.
    assert c.get("sysinfo", (0, 0))[0] >= 1 and c["sysinfo"][1] == 0, info["syscalls"]
    for s in info["syscalls"]:
        assert s["trapped"] >= s["denied"] >= 0 and (s["trapped"] or s["denied"]), s
        assert {"mount": SYS_mount, "ptrace": SYS_ptrace, "sysinfo": SYS_sysinfo}.get(s["name"], s["nr"]) == s["nr"]


# --------------------------------------------------------------------------
# policy


def test_policy_formats(runtime):
    table = runtime.ok("policy").stdout
    assert table.splitlines()[0].split()[:3] == ["NR", "SYSCALL", "TODAY"], table[:200]
    assert re.search(r"^165\s+mount\s+DENY\(EPERM\)", table, re.M), "mount not denied in the table"
    assert runtime.ok("policy", "--format", "table").stdout == table

    pol = json.loads(runtime.ok("policy", "--format", "json").stdout)
    by_name = {s["name"]: s for s in pol["syscalls"]}
    assert by_name["mount"]["nr"] == SYS_mount and by_name["mount"]["action"].startswith("DENY")
    assert by_name["read"]["action"] == "PASS"
    assert by_name["sysinfo"]["action"] == "EMULATE"
    nrs = [s["nr"] for s in pol["syscalls"]]
    assert nrs == sorted(set(nrs)), "duplicate or unsorted syscall numbers"
    # The table and the JSON agree row for row.
    rows = [l.split()[:2] for l in table.splitlines()[1:] if re.match(r"^\d+\s", l)]
    assert [(int(n), name) for n, name in rows] == [(s["nr"], s["name"]) for s in pol["syscalls"]]

    md = runtime.ok("policy", "--format", "markdown").stdout
    assert "| 165 | `mount` | DENY(EPERM) |" in md
    assert len([l for l in md.splitlines() if re.match(r"^\| \d+ \|", l)]) == len(pol["syscalls"])

    assert_error(runtime("policy", "--format", "yaml"))


def test_policy_embedded_bpf_matches_table(runtime):
    r = subprocess.run([guest_bin(runtime), "policy", "--format", "check-bpf"], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, timeout=CMD_TIMEOUT)
    assert r.returncode == 0, r.stderr
    assert "matches" in r.stdout, r.stdout


def test_security_model_doc_is_up_to_date(runtime):
    r = subprocess.run(["sh", os.path.join(REPO, "scripts", "gen-policy-doc.sh"), guest_bin(runtime), "--check"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=CMD_TIMEOUT)
    assert r.returncode == 0, r.stderr


# --------------------------------------------------------------------------
# pause / resume


def counter_bundle(bundle, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    os.makedirs(os.path.join(bundle.rootfs, "out"), exist_ok=True)
    bundle.config["mounts"].append({"destination": "/out", "type": "bind", "source": str(out),
                                    "options": ["rbind", "rw"]})
    # One byte per step: the file's size is the progress.
    bundle.shell("while :; do printf x >> /out/count; sleep 0.01; done")
    return out / "count"


def size(path):
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def test_pause_resume(runtime, bundle, tmp_path):
    count = counter_bundle(bundle, tmp_path)
    cid = runtime.new_id("pause")
    runtime.ok("create", "--bundle", bundle.path, cid)
    runtime.ok("start", cid)
    assert poll_until(lambda: size(count) >= 3), "the counter does not count"

    runtime.ok("pause", cid)
    assert runtime.status(cid) == "paused"
    assert inspect(runtime, cid)["status"] == "paused"
    frozen = size(count)
    # Frozen tasks cannot write: however long we look, nothing moves.
    time.sleep(0.3)
    assert size(count) == frozen
    assert_error(runtime("pause", cid), "already paused")
    # Still listed, with its pid.
    st = runtime.state(cid)
    assert st["pid"] > 0 and pid_alive(st["pid"])

    runtime.ok("resume", cid)
    assert runtime.status(cid) == "running"
    assert poll_until(lambda: size(count) > frozen + 2), "no progress after resume"
    assert_error(runtime("resume", cid), "not paused")

    # A paused sandbox can be killed and deleted.
    runtime.ok("pause", cid)
    runtime.ok("delete", "--force", cid)
    assert wait_gone(st["pid"])
    assert runtime("state", cid).returncode != 0


def test_pause_created_resumes_to_created(runtime, bundle):
    bundle.shell(LOOP)
    cid = runtime.new_id("pausec")
    runtime.ok("create", "--bundle", bundle.path, cid)
    runtime.ok("pause", cid)
    assert runtime.status(cid) == "paused"
    runtime.ok("resume", cid)
    assert runtime.status(cid) == "created"
    runtime.ok("start", cid)
    assert runtime.status(cid) == "running"


def test_pause_stopped_fails(runtime, bundle):
    bundle.args("true")
    cid = run_to_stop(runtime, bundle, "pauses")
    assert_error(runtime("pause", cid), "not running")
    assert_error(runtime("resume", cid), "not paused")


# --------------------------------------------------------------------------
# events


class Events:
    """Events of the ids we care about, in order."""

    def __init__(self, root):
        self.sub = EventSubscriber(root)
        self.seen = []

    def until(self, cid, typ, seconds=CMD_TIMEOUT):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            ev = self.sub.next(max(0.05, deadline - time.monotonic()))
            if ev is None:
                break
            self.seen.append(ev)
            if ev.get("id") == cid and ev.get("type") == typ:
                return ev
        return None

    def of(self, cid):
        return [e for e in self.seen if e.get("id") == cid]

    def close(self):
        self.sub.close()


def sync_events(runtime, bundle_factory, ev):
    """The publisher takes our subscription after the handshake, in its own
    time: pause and resume a probe sandbox until an event gets through."""
    probe = runtime.new_id("probe")
    pb = bundle_factory()
    pb.shell(LOOP)
    runtime.ok("create", "--bundle", pb.path, probe)
    synced = None
    for _ in range(50):
        runtime.ok("pause", probe)
        runtime.ok("resume", probe)
        synced = ev.until(probe, "resumed", seconds=0.5)
        if synced:
            break
    runtime.ok("delete", probe)
    assert synced, "no event on events.sock: %r" % ev.seen
    assert ev.until(probe, "deleted")


def cpu_seconds(pid):
    """User + system CPU time pid has used."""
    with open("/proc/%d/stat" % pid) as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return (int(rest[11]) + int(rest[12])) / os.sysconf("SC_CLK_TCK")


def test_events(runtime, bundle_factory):
    runtime.ok("daemons", "start")
    ev = Events(runtime.root)
    try:
        sync_events(runtime, bundle_factory, ev)
        b = bundle_factory()
        b.shell("exit 7")
        cid = runtime.new_id("ev")
        runtime.ok("create", "--bundle", b.path, cid)
        runtime.ok("start", cid)
        assert ev.until(cid, "exited"), ev.seen
        runtime.ok("delete", cid)
        assert ev.until(cid, "deleted"), ev.seen
        mine = ev.of(cid)
        assert [e["type"] for e in mine] == ["created", "started", "exited", "deleted"], mine
        for e in mine:
            assert e["v"] == 1 and e["op"] == "event"
            assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z$", e["time"]), e
            assert ("exit_code" in e) == (e["type"] == "exited"), e
        assert mine[2]["exit_code"] == 7
        assert [e["time"] for e in mine] == sorted(e["time"] for e in mine)
    finally:
        ev.close()


def test_subscriber_hanging_up_in_the_handshake_cuts_off_no_one(runtime, bundle_factory):
    """Debian 12's nng (1.5.2, its issue #1518) broke its PUB listener when
    a peer hung up during the SP handshake: after three bare connect/close on
    events.sock no later subscriber got an event, and vmmd spun a CPU for
    good.  vmmd publishes without nng now (libcommon/sp.c)."""
    runtime.ok("daemons", "start")
    pid = vmmd_pid(runtime.root)
    hang_up_in_handshakes(os.path.join(runtime.root, "events.sock"))
    ev = Events(runtime.root)
    try:
        sync_events(runtime, bundle_factory, ev)
        cid = run_to_stop(runtime, bundle_factory(), name="hup")
        assert ev.until(cid, "exited"), ev.seen
        runtime.ok("delete", cid)
        assert [e["type"] for e in ev.of(cid)] == ["created", "started", "exited"], ev.seen
    finally:
        ev.close()
    before, t0 = cpu_seconds(pid), time.monotonic()
    time.sleep(1.0)
    busy = (cpu_seconds(pid) - before) / (time.monotonic() - t0)
    assert busy < 0.3, "vmmd used %.0f%% of a CPU while idle" % (busy * 100)
    assert vmmd_pid(runtime.root) == pid
