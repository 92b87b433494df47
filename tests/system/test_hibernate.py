"""Hibernate and wake (docs/hibernate.md): a hibernated sandbox is frozen
with its memory in swap, and comes back with nothing lost, whichever daemon
restarted in between.

The swap is a poold swap area made for this module (pools off, "swap":
{"mib": 256}) on a private root; the sandboxes run under the session's
root (vmmd only needs swap with room, whoever made it).  The workload
(progs/memhold.c) fills anonymous memory and a tmpfs file with a pattern
and checks both again at every SIGUSR1."""

import json
import os
import re
import signal
import socket
import subprocess

import pytest

from conftest import (RUNTIME_PATH, SESSION_TAG, Runtime, _id_counter, cgroup_paths_of, compile_prog, poll_until,
                      vmmd_pid, wait_gone)

pytestmark = pytest.mark.quiver_only

MIB = 48
SWAP_MIB = 256


def swaps():
    with open("/proc/swaps") as f:
        return [l.split()[0] for l in f.read().splitlines()[1:] if l.strip()]


@pytest.fixture(scope="module")
def memhold(session):
    return compile_prog(session.tmp, "memhold")


class SwapPoold:
    """A poold on a private root that keeps only a swap area."""

    def __init__(self, root, tmp):
        self.root = root
        self.rt = Runtime(RUNTIME_PATH, root, True)
        self.config = os.path.join(tmp, "swap-poold-%s-%d.json" % (SESSION_TAG, _id_counter()))
        off = {"low": 0, "high": 0}
        self.parent = "quiver-%s-swap" % SESSION_TAG
        with open(self.config, "w") as f:
            json.dump({"cgroup_parent": self.parent,
                       "pools": {k: dict(off) for k in ("cgroup", "netns", "layer", "warm")},
                       "swap": {"mib": SWAP_MIB}}, f)
        self.area = os.path.join(root, "poold", "swap.img")

    def start(self):
        r = self.rt("pool", "start", "--config", self.config)
        assert r.returncode == 0, (r.stdout, r.stderr)
        assert self.area in swaps(), "poold made no swap area: %s" % self.status()

    def pid(self):
        with open(os.path.join(self.root, "poold.pid")) as f:
            return int(f.read())

    def status(self):
        return json.loads(self.rt.ok("pool", "status", "--json").stdout)

    def stop(self):
        self.rt("pool", "stop")
        self.rt("daemons", "stop")
        # poold leaves its (empty) parent groups, shared by design; these
        # are this module's.
        for d in set(os.path.realpath(d) for d in cgroup_paths_of(os.getpid()).values()):
            try:
                os.rmdir(os.path.join(d, self.parent))
            except OSError:
                pass


@pytest.fixture(scope="module")
def swap_area(session):
    p = SwapPoold(os.path.join(session.tmp, "swaproot-%s" % SESSION_TAG), session.tmp)
    p.start()
    try:
        yield p
    finally:
        p.stop()
        assert p.area not in swaps(), "the swap area outlived poold's stop"
        assert not os.path.exists(p.area)


def memcg_usage(runtime, cid):
    info = json.loads(runtime.ok("inspect", cid).stdout)
    for cg in info["cgroups"]:
        if os.path.exists(os.path.join(cg, "memory.usage_in_bytes")):
            with open(os.path.join(cg, "memory.usage_in_bytes")) as f:
                return int(f.read())
    raise AssertionError("no memory cgroup in %s" % info["cgroups"])


class Holder:
    """A running memhold sandbox and its output file."""

    def __init__(self, runtime, bundle, memhold, tmp_path, name="hib", sock=False):
        self.rt = runtime
        dest = os.path.join(bundle.rootfs, "bin", "memhold")
        subprocess.run(["cp", memhold, dest], check=True)
        bundle.config["mounts"].append({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
                                        "options": ["nosuid", "nodev", "size=64m"]})
        bundle.write()
        self.out = str(tmp_path / ("%s.out" % name))
        outdir = os.path.dirname(self.out)
        bundle.config["mounts"].append({"destination": "/out", "type": "bind", "source": outdir,
                                        "options": ["rbind", "rw"]})
        bundle.write()
        self.sock = os.path.join(outdir, "%s.sock" % name) if sock else None
        bundle.shell("exec /bin/memhold %d /tmp/pattern %s > /out/%s.out" % (
            MIB, "/out/%s.sock" % name if sock else "", name))
        self.id = runtime.new_id(name)
        runtime.ok("run", "-d", "--bundle", bundle.path, self.id)
        assert poll_until(lambda: self.lines("ready"), 30), "memhold never got ready: %r" % self.text()
        self.ready = self.lines("ready")[0].split()[1:]

    def text(self):
        try:
            with open(self.out) as f:
                return f.read()
        except OSError:
            return ""

    def lines(self, word):
        return [l for l in self.text().splitlines() if l.startswith(word + " ")]

    def check(self, via_kill=True):
        """SIGUSR1 (through qctl kill, which wakes a hibernated sandbox) and
        the sums that come back."""
        n = len(self.lines("check"))
        self.rt.ok("kill", self.id, "USR1")
        assert poll_until(lambda: len(self.lines("check")) > n, 30), "no check line: %r" % self.text()
        return self.lines("check")[-1].split()[1:]

    def hibernation(self):
        return json.loads(self.rt.ok("inspect", self.id).stdout)["hibernation"]

    def connect(self):
        """A connection to the workload's socket (through a directory fd:
        tmp_path is longer than a sun_path)."""
        d = os.open(os.path.dirname(self.sock), os.O_PATH | os.O_DIRECTORY)
        try:
            c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            c.settimeout(30)
            c.connect("/proc/self/fd/%d/%s" % (d, os.path.basename(self.sock)))
            return c
        finally:
            os.close(d)

    @staticmethod
    def ping(c):
        c.sendall(b"ping\n")
        return c.recv(256).decode().split()


def test_hibernate_pages_out_and_wake_loses_nothing(runtime, bundle, memhold, swap_area, tmp_path):
    """hibernate: frozen (OCI: paused), most of the memory in swap, qctl ls
    says hibernated; a signal wakes it, and the memory and the tmpfs file
    have the same checksums as before."""
    h = Holder(runtime, bundle, memhold, tmp_path)
    try:
        before = memcg_usage(runtime, h.id)
        assert before >= MIB << 20, before
        r = runtime.ok("hibernate", h.id)
        assert re.match(r"^%s: hibernated: [\d.]+ MiB in swap, [\d.]+ MiB resident$" % h.id, r.stdout.strip()), r.stdout
        hib = h.hibernation()
        assert hib["state"] == "hibernated", hib
        assert hib["swapped_bytes"] >= (MIB - 4) << 20, hib
        after = memcg_usage(runtime, h.id)
        assert after < before / 5, "still resident: %d of %d bytes" % (after, before)
        assert runtime.status(h.id) == "paused"
        ls = {l.split()[0]: l.split()[1] for l in runtime.ok("ls").stdout.splitlines()[1:]}
        assert ls[h.id] == "hibernated", ls
        # the kill wakes it first
        assert h.check() == h.ready, h.text()
        assert runtime.status(h.id) == "running"
        assert h.hibernation() is None
        # again, woken by wake this time
        runtime.ok("hibernate", h.id)
        runtime.ok("wake", h.id)
        assert runtime.status(h.id) == "running"
        assert h.check() == h.ready, h.text()
    finally:
        runtime("delete", "--force", h.id)


def test_hibernated_survives_daemon_restarts(runtime, bundle, memhold, swap_area, tmp_path):
    """kill -9 of vmmd and of poold while a sandbox is hibernated: vmmd
    still knows it hibernated, poold adopts its swap area (the pages are in
    it), and wake brings everything back."""
    h = Holder(runtime, bundle, memhold, tmp_path, "hibr")
    try:
        runtime.ok("hibernate", h.id)
        vpid = vmmd_pid(runtime.root)
        os.kill(vpid, signal.SIGKILL)
        assert wait_gone(vpid)
        ppid = swap_area.pid()
        os.kill(ppid, signal.SIGKILL)
        assert wait_gone(ppid)
        assert swap_area.area in swaps(), "poold's kill -9 took the swap area down"
        swap_area.start()  # adopts it
        assert swap_area.status()["swap"]["active"], swap_area.status()
        # (which area holds the pages is the kernel's choice: another
        # swap area on the machine may have them)
        hib = h.hibernation()  # a new vmmd, from state.json
        assert hib and hib["state"] == "hibernated", hib
        assert runtime.status(h.id) == "paused"
        runtime.ok("wake", h.id)
        assert h.check() == h.ready, h.text()
    finally:
        runtime("delete", "--force", h.id)


def test_hibernate_errors(runtime, bundle, memhold, swap_area, tmp_path):
    h = Holder(runtime, bundle, memhold, tmp_path, "hibe")
    try:
        r = runtime("wake", h.id)
        assert r.returncode == 1 and "is not hibernated" in r.stderr, r
        runtime.ok("pause", h.id)
        r = runtime("hibernate", h.id)
        assert r.returncode == 1 and "is paused" in r.stderr, r
        runtime.ok("resume", h.id)
        runtime.ok("hibernate", "--no-wait", h.id)
        assert poll_until(lambda: (h.hibernation() or {}).get("state") == "hibernated", 30)
        r = runtime("hibernate", h.id)
        assert r.returncode == 1 and "already hibernated" in r.stderr, r
        r = runtime("hibernate", "nosuchsandbox-%s" % SESSION_TAG)
        assert r.returncode == 1 and "does not exist" in r.stderr, r
        # delete --force of a hibernated sandbox: gone, nothing left frozen
        runtime.ok("delete", "--force", h.id)
        assert h.id not in runtime.ok("list", "-q").stdout.split()
    finally:
        runtime("delete", "--force", h.id)


def test_exec_wakes_a_hibernated_sandbox(runtime, bundle, memhold, swap_area, tmp_path):
    """qctl exec into a hibernated sandbox wakes it first (as a kill
    does); into a paused one it is refused, as runc refuses it."""
    h = Holder(runtime, bundle, memhold, tmp_path, "hibx")
    try:
        runtime.ok("pause", h.id)
        r = runtime("exec", h.id, "/bin/echo", "in")
        assert r.returncode != 0 and "cannot exec in a paused container" in r.stderr, r
        assert runtime.status(h.id) == "paused"
        runtime.ok("resume", h.id)
        runtime.ok("hibernate", h.id)
        r = runtime.ok("exec", h.id, "/bin/echo", "in")
        assert r.stdout.strip() == "in", r
        assert h.hibernation() is None and runtime.status(h.id) == "running"
        with open(os.path.join(runtime.root, "vmmd.log")) as f:
            assert "%s: woken (exec)" % h.id in f.read()
        assert h.check() == h.ready, h.text()
    finally:
        runtime("delete", "--force", h.id)


def test_hibernate_many_shows_progress(runtime, bundle_factory, memhold, swap_area, tmp_path):
    """Several ids at once: one progress line per second at most (stderr
    is not a terminal here), the last one the total."""
    hs = [Holder(runtime, bundle_factory(), memhold, tmp_path, "hibm%d" % i) for i in range(3)]
    try:
        r = runtime("hibernate", *[h.id for h in hs])
        assert r.returncode == 0, r
        assert r.stderr.strip().splitlines()[-1].startswith("hibernating: 3 of 3 hibernated"), r.stderr
        for h in hs:
            assert h.hibernation()["state"] == "hibernated"
        r = runtime("wake", *[h.id for h in hs])
        assert r.returncode == 0, r
        for h in hs:
            assert h.check() == h.ready, h.text()
    finally:
        for h in hs:
            runtime("delete", "--force", h.id)


def test_idle_policy_hibernates_quiet_sandboxes(bundle_factory, memhold, swap_area, private_root, tmp_path):
    """vmmd --hibernate-idle 1 (qctl daemons start --hibernate-idle 1): a
    sandbox that sleeps is hibernated within a few seconds, one that
    spins is not; a kill wakes the sleeper with nothing lost."""
    rt = Runtime(RUNTIME_PATH, private_root("idle"), True)
    r = rt("daemons", "start", "--hibernate-idle", "x")
    assert r.returncode == 1 and "invalid --hibernate-idle" in r.stderr, r
    rt.ok("daemons", "start", "--hibernate-idle", "1")
    quiet = Holder(rt, bundle_factory(), memhold, tmp_path, "idleq")
    busy = bundle_factory().shell("while :; do :; done")
    bid = rt.new_id("idleb")
    rt.ok("run", "-d", "--bundle", busy.path, bid)
    try:
        assert poll_until(lambda: (quiet.hibernation() or {}).get("state") == "hibernated", 20), (
            "the idle sandbox was not hibernated: %s" % rt.ok("ls").stdout)
        assert rt.status(bid) == "running" and json.loads(rt.ok("inspect", bid).stdout)["hibernation"] is None
        assert quiet.check() == quiet.ready, quiet.text()
        assert rt.status(quiet.id) == "running"
    finally:
        rt("delete", "--force", bid)
        rt("delete", "--force", quiet.id)


def test_wake_prefetch_reads_the_working_set_back(runtime, bundle, memhold, swap_area, tmp_path):
    """A second after a wake vmmd records the pages the sandbox touched
    (ROOT/ID/workingset); wake --prefetch reads them back before the thaw,
    so the memory is resident before the workload touches it.  Without
    prefetch it stays out until touched."""
    h = Holder(runtime, bundle, memhold, tmp_path, "hibp")
    ws = os.path.join(runtime.root, h.id, "workingset")
    try:
        runtime.ok("hibernate", h.id)
        assert h.check() == h.ready  # the wake, and every page touched
        assert poll_until(lambda: os.path.exists(ws), 10), "no working set recorded after the wake"
        with open(ws) as f:
            ranges = [l.split() for l in f.read().splitlines()]
        recorded = sum(int(r[2], 16) for r in ranges)
        assert recorded >= (MIB - 2) << 20, (recorded, ranges[:5])

        runtime.ok("hibernate", h.id)
        runtime.ok("wake", "--no-prefetch", h.id)
        cold = memcg_usage(runtime, h.id)
        assert cold < 8 << 20, "resident without prefetch, before any touch: %d" % cold
        runtime.ok("hibernate", h.id)
        runtime.ok("wake", "--prefetch", h.id)
        # the reads are asynchronous: give them a moment, not a touch
        assert poll_until(lambda: memcg_usage(runtime, h.id) >= (MIB - 8) << 20, 10), (
            "prefetch brought back only %d bytes" % memcg_usage(runtime, h.id))
        assert h.check() == h.ready, h.text()
    finally:
        runtime("delete", "--force", h.id)


def test_sockets_survive_hibernation(runtime, bundle, memhold, swap_area, tmp_path):
    """A connection made before hibernation answers after the wake, and the
    listening socket takes new ones; the answers carry the memory's sum."""
    h = Holder(runtime, bundle, memhold, tmp_path, "hibs", sock=True)
    old = None
    try:
        assert poll_until(lambda: os.path.exists(h.sock), 10)
        old = h.connect()
        assert h.ping(old) == ["pong", h.ready[0]]
        runtime.ok("hibernate", h.id)
        assert h.hibernation()["state"] == "hibernated"
        runtime.ok("wake", h.id)
        assert h.ping(old) == ["pong", h.ready[0]], "the old connection"
        new = h.connect()
        assert h.ping(new) == ["pong", h.ready[0]], "a new connection"
        new.close()
    finally:
        if old:
            old.close()
        runtime("delete", "--force", h.id)
