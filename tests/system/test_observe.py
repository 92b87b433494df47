"""Watching sandboxes with qctl: `stats` (CPU, memory, pids and trapped
syscalls per sandbox, from vmmd's stats op) and `events` (vmmd's event
stream as lines, until a signal or the daemon's end)."""

import json
import os
import queue
import signal
import subprocess
import threading

import pytest

from conftest import (LIVE_POPEN, LOOP, CMD_TIMEOUT, Runtime, RUNTIME_PATH, IS_QUIVER, assert_error,
                      reap_zombies, running, vmmd_processes, wait_gone)

pytestmark = pytest.mark.quiver_only

READ_TIMEOUT = 15  # seconds: hang protection only


def stats(runtime, *ids):
    return json.loads(runtime.ok("stats", "--json", *ids).stdout)


def stopped_attack(runtime, bundle):
    bundle.shell("/bin/attack mount; /bin/attack mount; /bin/attack ptrace_traceme")
    cid = runtime.new_id("sta")
    runtime.ok("create", "--bundle", bundle.path, cid)
    runtime.ok("start", cid)
    assert runtime.wait_status(cid, "stopped")
    return cid


# --------------------------------------------------------------------------
# stats


def test_stats_running_and_stopped(runtime, bundle_factory):
    r = running(runtime, bundle_factory(), name="str")
    s = stopped_attack(runtime, bundle_factory())

    items = stats(runtime, r, s)
    assert [i["id"] for i in items] == [r, s], items
    run, stop = items
    assert set(run) == {"id", "status", "cpu_ns", "memory_bytes", "pids", "syscalls_trapped",
                        "syscalls_denied"}, run
    assert run["status"] == "running"
    assert run["pids"] >= 1, run  # the supervisor, the shell, its sleep
    assert run["memory_bytes"] > 0, run
    assert run["cpu_ns"] >= 0, run
    assert run["syscalls_trapped"] >= 0 and run["syscalls_denied"] >= 0, run

    # The trapped-syscall counts are inspect's, summed.
    assert stop["status"] == "stopped"
    calls = json.loads(runtime.ok("inspect", s).stdout)["syscalls"]
    assert stop["syscalls_trapped"] == sum(c["trapped"] for c in calls) >= 3, (stop, calls)
    assert stop["syscalls_denied"] == sum(c["denied"] for c in calls) >= 3, (stop, calls)
    assert stop["pids"] in (0, None), stop  # nothing left in its cgroup (or no cgroup)

    # Without ids: every sandbox of the root, ours among them.
    every = {i["id"]: i for i in stats(runtime)}
    assert {r, s} <= set(every), every
    assert every[s]["syscalls_trapped"] == stop["syscalls_trapped"]

    # The table says the same.
    lines = runtime.ok("stats", r, s).stdout.splitlines()
    assert lines[0].split() == ["ID", "STATUS", "CPU", "MEMORY", "PIDS", "SYSCALLS", "DENIED"], lines
    rows = {l.split()[0]: l.split() for l in lines[1:]}
    assert rows[r][1] == "running" and rows[r][2].endswith("s") and int(rows[r][4]) >= 1, rows[r]
    assert rows[s][1] == "stopped" and int(rows[s][5]) == stop["syscalls_trapped"], rows[s]


def test_stats_unknown_or_bad_id(runtime, bundle):
    r = running(runtime, bundle, name="stu")
    missing = runtime.new_id("nosuch")
    assert_error(runtime("stats", missing), 'container "%s" does not exist' % missing)
    # One unknown id among known ones fails the command, with nothing on stdout.
    res = runtime("stats", "--json", r, missing)
    assert_error(res, missing)
    assert res.stdout == ""
    assert_error(runtime("stats", "../etc"), "invalid container id")
    assert_error(runtime("stats", "--bogus"), "unknown option")


# --------------------------------------------------------------------------
# events


class Events:
    """`qctl events` as a subprocess; lines() reads what it printed."""

    def __init__(self, rt, *args):
        self.p = subprocess.Popen(rt.argv("events", *args), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        LIVE_POPEN.add(self.p.pid)
        self.q = queue.Queue()
        self.t = threading.Thread(target=self._read, daemon=True)
        self.t.start()

    def _read(self):
        for line in self.p.stdout:
            self.q.put(line.rstrip("\n"))
        self.q.put(None)

    def next(self, seconds=READ_TIMEOUT):
        try:
            return self.q.get(timeout=seconds)
        except queue.Empty:
            return None

    def until(self, pred, seconds=READ_TIMEOUT):
        """Lines up to and including the first one pred accepts (None at EOF or timeout)."""
        seen = []
        while True:
            line = self.next(seconds)
            if line is None:
                return None, seen
            seen.append(line)
            if pred(line):
                return line, seen

    def wait(self, seconds=CMD_TIMEOUT):
        if self.p.stderr.closed:
            return self.p.returncode, ""
        try:
            rc = self.p.wait(timeout=seconds)
        finally:
            LIVE_POPEN.discard(self.p.pid)
        self.t.join(5)
        err = self.p.stderr.read()
        self.p.stderr.close()
        self.p.stdout.close()
        reap_zombies()
        return rc, err

    def kill(self):
        if self.p.poll() is None:
            self.p.kill()
        self.wait()


def synced(rt, ev_list, cid, as_json):
    """Pause and resume cid until every stream has shown its `paused`: from
    then on each one is subscribed (a SUB that just connected may not be
    yet, and misses what is published before)."""
    def is_paused(line):
        if as_json:
            e = json.loads(line)
            return e["type"] == "paused" and e["id"] == cid
        return line.split()[1:3] == ["paused", cid]
    pending = list(ev_list)
    for _ in range(50):
        rt.ok("pause", cid)
        rt.ok("resume", cid)
        still = []
        for ev in pending:
            line, _ = ev.until(is_paused, seconds=0.2)
            if line is None:
                still.append(ev)
        pending = still
        if not pending:
            return
    raise AssertionError("qctl events never showed a pause of %s" % cid)


@pytest.fixture
def evroot(private_root):
    rt = Runtime(RUNTIME_PATH, private_root("events"), IS_QUIVER)
    made = []
    rt.events = lambda *a: made.append(Events(rt, *a)) or made[-1]
    try:
        yield rt
    finally:
        for e in made:
            e.kill()
        rt.cleanup()


def test_events_stream_in_order(evroot, bundle_factory):
    rt = evroot
    # Embedded mode: `qctl events` starts the daemon of an empty root.
    every = rt.events("--json")
    anchor = running(rt, bundle_factory(), name="eva")
    only = rt.events("--id", anchor)
    synced(rt, [every], anchor, True)
    synced(rt, [only], anchor, False)

    b = bundle_factory()
    b.shell("exit 3")
    cid = rt.new_id("evb")
    assert rt("run", "--bundle", b.path, cid).returncode == 3  # and deletes it, as runc does

    got = []
    while len(got) < 4:
        line, _ = every.until(lambda l: json.loads(l)["id"] == cid)
        assert line is not None, "events so far for %s: %s" % (cid, got)
        got.append(json.loads(line))
    assert [e["type"] for e in got] == ["created", "started", "exited", "deleted"], got
    assert got[2]["exit_code"] == 3 and "exit_code" not in got[0], got
    assert all(set(e) >= {"type", "id", "time"} for e in got), got

    # --id: only the anchor's events, as human lines; SIGINT ends it with 0.
    rt.ok("kill", anchor, "TERM")
    line, seen = only.until(lambda l: "exited" in l)
    assert line is not None, seen
    f = line.split()
    assert f[1:] == ["exited", anchor, "exit_code=42"] and f[0].endswith("Z"), line
    assert all(cid not in l for l in seen), seen
    only.p.send_signal(signal.SIGINT)
    rc, err = only.wait()
    assert rc == 0 and err == "", (rc, err)

    # The daemon goes away: a clear error, non-zero.
    pids = vmmd_processes(rt.root)
    rt.ok("daemons", "stop")
    rc, err = every.wait()
    assert rc == 1, (rc, err)
    lines = err.splitlines()
    assert len(lines) == 1 and "went away" in lines[0], err
    for pid in pids:
        assert wait_gone(pid)


def test_events_bad_arguments(runtime):
    assert_error(runtime("events", "--id", "../x"), "invalid container id")
    assert_error(runtime("events", "extra"), "takes no arguments")
    assert_error(runtime("events", "--id"), "needs a value")
