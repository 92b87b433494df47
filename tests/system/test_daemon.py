"""quiver-vmmd's life: restart safety after kill -9 (re-adoption of live
supervisors, exits that happened while it was down), embedded start-up races,
and `qctl daemons start|stop|status`."""

import json
import os
import signal
import subprocess

import pytest

from conftest import (LIVE_POPEN, LOOP, running, CMD_TIMEOUT, IS_QUIVER, RUNTIME_PATH, Runtime, pid_alive,
                      poll_until, hang_up_in_handshakes, read_text, vmmd_pid, vmmd_processes, wait_gone)

pytestmark = pytest.mark.quiver_only




def list_by_id(runtime):
    out = runtime.ok("list", "-f", "json").stdout.strip()
    return {c["id"]: c for c in (json.loads(out) or [])}


def kill9_vmmd(root):
    pid = vmmd_pid(root)
    assert pid and pid_alive(pid), "no live vmmd for %s (pid file: %s)" % (root, pid)
    os.kill(pid, signal.SIGKILL)
    assert wait_gone(pid), "vmmd %d survived SIGKILL" % pid
    return pid


def test_kill9_restart_recovers_every_sandbox(runtime, bundle_factory):
    a = running(runtime, bundle_factory(), name="a")          # stays running
    b = running(runtime, bundle_factory(), name="b")          # exits (TERM → 42) while vmmd is down
    k = running(runtime, bundle_factory(), name="k")          # SIGKILLed while vmmd is down: no exit report
    cb = bundle_factory()
    cb.shell("echo started-late; " + LOOP)
    c = runtime.new_id("created")
    runtime.ok("create", "--bundle", cb.path, c)              # created, started after the restart
    pids = {cid: runtime.state(cid)["pid"] for cid in (a, b, k, c)}

    old = kill9_vmmd(runtime.root)
    os.kill(pids[b], signal.SIGTERM)
    os.kill(pids[k], signal.SIGKILL)
    assert wait_gone(pids[b]) and wait_gone(pids[k])
    assert pid_alive(pids[a]) and pid_alive(pids[c])

    # The next call starts a new vmmd (embedded mode), which re-reads the registry.
    items = list_by_id(runtime)
    new = vmmd_pid(runtime.root)
    assert new and new != old and pid_alive(new)
    assert vmmd_processes(runtime.root) == [new]
    want = {a: "running", b: "stopped", k: "stopped", c: "created"}
    assert {cid: items[cid]["status"] for cid in want} == want, items
    assert items[a]["pid"] == pids[a] and items[c]["pid"] == pids[c]
    assert items[b]["pid"] == 0 and items[k]["pid"] == 0

    info_b = json.loads(runtime.ok("inspect", b).stdout)
    assert info_b["exit"] == {"status": 42 << 8, "exit_code": 42, "signal": 0}, info_b["exit"]
    info_k = json.loads(runtime.ok("inspect", k).stdout)
    assert info_k["exit"]["exit_code"] == 128 + 9 and info_k["exit"]["signal"] == 9, info_k["exit"]

    # The re-adopted sandboxes are fully managed: start, exec, exit noticed.
    runtime.ok("start", c)
    assert runtime.status(c) == "running"
    r = runtime.ok("exec", a, "echo", "still-here")
    assert r.stdout == "still-here\n"
    runtime.ok("kill", a, "TERM")
    assert runtime.wait_status(a, "stopped")
    assert json.loads(runtime.ok("inspect", a).stdout)["exit"]["exit_code"] == 42

    for cid in (a, b, k, c):
        runtime.ok("delete", "--force", cid)
        assert not os.path.exists(os.path.join(runtime.root, cid))
    assert not set(list_by_id(runtime)) & {a, b, k, c}
    for p in pids.values():
        assert wait_gone(p)


def test_kill9_during_creating_reservation(runtime, bundle):
    """A reservation (creating) survives a vmmd restart while it is young; the
    id stays taken, and delete --force drops it."""
    from conftest import VmmdClient
    runtime.ok("daemons", "start")
    cid = runtime.new_id("rsv")
    cl = VmmdClient(runtime.root)
    try:
        rep = cl.call({"v": 1, "op": "reserve", "id": cid, "bundle": bundle.path})
        assert rep.get("op") == "reserved", rep
    finally:
        cl.close()
    kill9_vmmd(runtime.root)
    assert runtime.status(cid) == "creating"
    r = runtime("create", "--bundle", bundle.path, cid)
    assert r.returncode == 1 and "already exists" in r.stderr, r.stderr
    runtime.ok("delete", "--force", cid)
    assert runtime("state", cid).returncode != 0
    assert not os.path.exists(os.path.join(runtime.root, cid))


def test_run_outlives_kill9_of_vmmd(runtime, bundle_factory):
    """`qctl run` waits for its sandbox on the supervisor's pidfd, not on
    vmmd: a vmmd killed meanwhile is started again when run next calls it,
    and run still returns the workload's status and deletes the sandbox.
    (It failed with "send to quiver-vmmd: Broken pipe" and left the sandbox
    stopped, until qctl learned to dial again.)"""
    b = bundle_factory()
    b.shell("trap 'exit 3' USR1; while :; do sleep 0.05; done")
    cid = runtime.new_id("runk")
    p = subprocess.Popen(runtime.argv("run", "--bundle", b.path, cid), stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    LIVE_POPEN.add(p.pid)  # ours to wait for: not reaped as an orphan by the next command
    try:
        assert poll_until(lambda: runtime.status(cid) == "running", 10), runtime.state(cid)
        old = kill9_vmmd(runtime.root)
        runtime.ok("kill", cid, "USR1")  # through a new vmmd, which re-adopted it
        _, err = p.communicate(timeout=CMD_TIMEOUT)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        LIVE_POPEN.discard(p.pid)
    assert p.returncode == 3, err
    assert vmmd_pid(runtime.root) not in (None, old)
    assert runtime("state", cid).returncode != 0, "run left %s behind" % cid


def _disk_status(root, cid):
    with open(os.path.join(root, cid, "state.json")) as f:
        return json.load(f)["status"]


def test_transient_sandbox_has_no_stopped_record_and_recovers(runtime, bundle_factory):
    """create {transient} (what qctl run asks): once the supervisor exits,
    vmmd answers stopped but writes no stopped record (state.json still says
    running); after a kill -9 of vmmd, recovery takes the exit from the
    supervisor's report.  A sandbox without transient gets its record."""
    from conftest import VmmdClient
    runtime.ok("daemons", "start")
    b = bundle_factory()
    b.shell("exit 7")
    t, p = runtime.new_id("tr"), runtime.new_id("pe")
    cl = VmmdClient(runtime.root)
    try:
        for cid, transient in ((t, True), (p, False)):
            rep = cl.call({"v": 1, "op": "create", "id": cid, "bundle": b.path, "start": True,
                           "transient": transient})
            assert rep.get("op") == "accepted", rep
        rep = cl.call({"v": 1, "op": "create", "id": runtime.new_id("bad"), "bundle": b.path,
                       "transient": "yes"})
        assert rep.get("op") == "error" and rep.get("code") == 22, rep
    finally:
        cl.close()
    for cid in (t, p):
        assert runtime.wait_status(cid, "stopped"), runtime.state(cid)
        assert json.loads(runtime.ok("inspect", cid).stdout)["exit"]["exit_code"] == 7
    assert _disk_status(runtime.root, p) == "stopped"
    assert _disk_status(runtime.root, t) == "running"

    kill9_vmmd(runtime.root)
    items = list_by_id(runtime)
    assert items[t]["status"] == "stopped" and items[t]["pid"] == 0, items[t]
    assert json.loads(runtime.ok("inspect", t).stdout)["exit"]["exit_code"] == 7
    assert _disk_status(runtime.root, t) == "stopped"
    for cid in (t, p):
        runtime.ok("delete", cid)
        assert not os.path.exists(os.path.join(runtime.root, cid))


def _concurrent(root, n, *args):
    procs = [subprocess.Popen([RUNTIME_PATH, "--root", root] + list(args), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
             for _ in range(n)]
    out = []
    for p in procs:
        o, e = p.communicate(timeout=CMD_TIMEOUT)
        out.append((p.returncode, o, e))
    return out


def test_concurrent_first_calls_start_one_vmmd(private_root):
    for i in range(4):
        root = private_root("race")
        results = _concurrent(root, 3, "list", "-f", "json")
        for rc, out, err in results:
            assert rc == 0, err
            assert out.strip() == "null", out
        daemons = vmmd_processes(root)
        assert len(daemons) == 1, "round %d: %d vmmds serve %s: %s" % (i, len(daemons), root, daemons)
        assert vmmd_pid(root) == daemons[0]


def test_daemons_status_start_stop(private_root):
    root = private_root("dm")
    rt = Runtime(RUNTIME_PATH, root, IS_QUIVER)
    r = rt("daemons", "status")
    assert r.returncode == 3 and "not running" in r.stdout, (r.returncode, r.stdout, r.stderr)
    assert vmmd_processes(root) == []

    r = rt.ok("daemons", "start")
    pid = vmmd_pid(root)
    assert pid and vmmd_processes(root) == [pid]
    assert "running" in r.stdout and "pid %d" % pid in r.stdout, r.stdout
    # Idempotent: a second start finds the running one.
    r = rt.ok("daemons", "start")
    assert "pid %d" % pid in r.stdout and vmmd_processes(root) == [pid]
    r = rt.ok("daemons", "status")
    assert "pid %d" % pid in r.stdout and "0 sandboxes" in r.stdout, r.stdout

    r = rt.ok("daemons", "stop")
    assert "stopped" in r.stdout
    # Stopped means exited, not only asked: its files are gone too.
    assert not pid_alive(pid)
    for f in ("vmmd.sock", "events.sock", "vmmd.pid"):
        assert not os.path.exists(os.path.join(root, f)), f
    r = rt("daemons", "status")
    assert r.returncode == 3, r.stdout
    r = rt.ok("daemons", "stop")
    assert "not running" in r.stdout
    assert vmmd_processes(root) == []


def test_daemons_bad_usage(runtime):
    for args in (["daemons"], ["daemons", "restart"], ["daemons", "status", "x"],
                 ["daemons", "start", "--metrics"], ["daemons", "start", "--bogus"]):
        r = runtime(*args)
        assert r.returncode == 1 and len(r.stderr.splitlines()) == 1, (args, r.stderr)


def test_daemons_stop_keeps_sandboxes_and_readopts(runtime, bundle_factory):
    a = running(runtime, bundle_factory(), name="keep")
    c = runtime.new_id("keepc")
    runtime.ok("create", "--bundle", bundle_factory().path, c)
    pa, pc = runtime.state(a)["pid"], runtime.state(c)["pid"]
    old = vmmd_pid(runtime.root)
    runtime.ok("daemons", "stop")
    assert wait_gone(old)
    assert pid_alive(pa) and pid_alive(pc)

    st = runtime.state(a)   # starts a new vmmd
    assert st["status"] == "running" and st["pid"] == pa
    assert vmmd_pid(runtime.root) not in (None, old)
    assert runtime.status(c) == "created"
    runtime.ok("kill", a, "TERM")
    assert runtime.wait_status(a, "stopped")
    runtime.ok("delete", a)
    runtime.ok("delete", c)   # created: killed and deleted without --force, as runc
    assert wait_gone(pa) and wait_gone(pc)


def test_state_json_survives_restart_byte_for_byte_fields(runtime, bundle):
    """What vmmd persists is what it serves after a restart."""
    bundle.set("annotations", {"org.quiver.test": "kept"})
    cid = running(runtime, bundle, name="persist")
    before = json.loads(runtime.ok("inspect", cid).stdout)
    kill9_vmmd(runtime.root)
    after = json.loads(runtime.ok("inspect", cid).stdout)
    for k in ("id", "status", "pid", "bundle", "annotations", "created", "supervisor_pid", "pid_start",
              "init_pid", "cgroups", "reserved", "started", "state_dir"):
        assert before[k] == after[k], (k, before[k], after[k])
    assert after["annotations"] == {"org.quiver.test": "kept"}
    runtime.ok("delete", "--force", cid)
    assert poll_until(lambda: not pid_alive(before["pid"]))


def test_vmmd_is_not_capped_by_a_low_soft_fd_limit(private_root, bundle):
    # vmmd holds a pidfd per sandbox; started with a soft limit of 32 open
    # files it must still adopt 40 sandboxes (it raises its soft limit to the
    # hard one).
    root = private_root("fd")
    rt = Runtime(RUNTIME_PATH, root, IS_QUIVER)
    r = subprocess.run(["sh", "-c", 'ulimit -S -n 32 && exec "$@"', "sh"] + rt.argv("daemons", "start"),
                       capture_output=True, text=True, timeout=CMD_TIMEOUT)
    assert r.returncode == 0, r.stderr
    pid = vmmd_pid(root)
    with open("/proc/%d/limits" % pid) as f:
        soft, hard = next(l.split()[3:5] for l in f if l.startswith("Max open files"))
    assert soft == hard, (soft, hard)
    bundle.args("sleep", "1000")
    ids = [rt.new_id("fd") for _ in range(40)]
    try:
        for cid in ids:
            rt.ok("run", "-d", "--bundle", bundle.path, cid)
        listed = json.loads(rt.ok("list", "-f", "json").stdout)
        assert sorted(c["id"] for c in listed if c["status"] == "running") == sorted(ids)
    finally:
        for cid in ids:
            rt("delete", "--force", cid)


def test_deleted_dirs_left_by_a_crash_are_removed_at_start(private_root, bundle):
    """delete renames ROOT/ID to ROOT/.gone-ID-… and removes it after the
    reply; one that a crash left is removed when vmmd starts again."""
    root = private_root("gone")
    rt = Runtime(RUNTIME_PATH, root, IS_QUIVER)
    cid = rt.new_id("gone")
    rt.ok("run", "--bundle", bundle.path, cid)
    assert not os.path.exists(os.path.join(root, cid))
    assert poll_until(lambda: not [n for n in os.listdir(root) if n.startswith(".gone-")])
    rt.ok("daemons", "stop")
    left = os.path.join(root, ".gone-%s-1-1" % cid)
    os.makedirs(os.path.join(left, "sub"))
    with open(os.path.join(left, "sub", "state.json"), "w") as f:
        f.write("{}")
    rt.ok("list")
    assert not os.path.exists(left)
    assert rt.ok("list", "-q").stdout.split() == []


def test_peer_hanging_up_in_the_handshake_does_not_wedge_vmmd(runtime, bundle_factory):
    """Debian 12's nng (1.5.2, its issue #1518) stopped answering on a REP
    listener for good once a peer hung up during the SP handshake: after
    three bare connect/close, vmmd answered no request again.  vmmd serves
    its socket without nng now (libcommon/sp.c): it answers at once, with
    the same image."""
    a = running(runtime, bundle_factory(), name="hup")
    pa = runtime.state(a)["pid"]
    pid = vmmd_pid(runtime.root)
    hang_up_in_handshakes(os.path.join(runtime.root, "vmmd.sock"))
    r = runtime("list", "-f", "json", timeout=10)
    assert r.returncode == 0 and a in r.stdout, r.stderr
    assert vmmd_pid(runtime.root) == pid and pid_alive(pid)
    assert runtime.state(a)["status"] == "running" and pid_alive(pa)
    runtime.ok("kill", a, "TERM")
    assert runtime.wait_status(a, "stopped")
    runtime.ok("delete", a)
    assert wait_gone(pa)
    text = read_text(os.path.join(runtime.root, "vmmd.log"))
    assert "re-executing" not in text, text[-2000:]
