"""quiver-poold (issue 3), through the real binaries: pools of cgroups,
network namespaces, writable rootfs layers and warm supervisors; vmmd's warm
and cold starts; kill -9 and restart; nothing outlives a stop.

Each test has a root of its own (its own vmmd and poold) and a cgroup parent
of its own, "quiver-<session tag>-N", so that the counts of "@pool-*" groups
are this poold's alone and whatever is left is visible to the leak checker
(poolds of different roots may share a parent: see
test_two_poolds_keep_their_own_pools).  Bundles are rootfs trees under /tmp;
the XFS layer store needs mkfs.xfs and loop devices (tests that need it skip
when poold reports the layer pool off)."""

import ctypes
import errno
import json
import os
import re
import signal
import struct
import subprocess
import tempfile
import time
import urllib.request

import pytest

from conftest import (CMD_TIMEOUT, LOOP, RUNTIME_PATH, SESSION_TAG, EventSubscriber, Runtime, VmmdClient, _id_counter,
                      all_pids, assert_error, cgroup_paths_of, hang_up_in_handshakes, pid_alive, poll_until, proc_cmdline, proc_stat, read_text,
                      reap_zombies, wait_gone)

pytestmark = pytest.mark.quiver_only

POOLD = os.environ.get("QUIVER_POOLD") or (
    os.path.join(os.path.dirname(RUNTIME_PATH), "quiver-poold") if RUNTIME_PATH else None)
OVERLAY = "io.quiver.rootfs.overlay"
LAYER = {"low": 1, "high": 2, "image_mib": 300}
OFF = {"low": 0, "high": 0}


def pools(cgroup=(1, 2), netns=(1, 2), layer=None, warm=(1, 2), rate=50):
    """A poold config; layer None means the layer pool is off."""
    return {
        "refill_per_second": rate,
        "pools": {
            "cgroup": {"low": cgroup[0], "high": cgroup[1]},
            "netns": {"low": netns[0], "high": netns[1]},
            "layer": dict(layer) if layer else dict(OFF),
            "warm": {"low": warm[0], "high": warm[1]},
        },
    }


def by_kind(status):
    return {p["kind"]: p for p in status["pools"]}


read = read_text


def mountpoints():
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            out.append(line.split()[4])
    return out


def mount_holders(prefix):
    """[(pid, command)] of one process per mount namespace other than ours
    that still has a mount at or under prefix."""
    mine = os.stat("/proc/self/ns/mnt").st_ino
    seen, out = {mine}, []
    for pid in all_pids():
        try:
            ns = os.stat("/proc/%d/ns/mnt" % pid).st_ino
            if ns in seen:
                continue
            seen.add(ns)
            with open("/proc/%d/mountinfo" % pid) as f:
                points = [line.split()[4] for line in f]
        except OSError:
            continue
        if any(m == prefix or m.startswith(prefix + "/") for m in points):
            out.append((pid, proc_cmdline(pid)[:120]))
    return out


class Poold:
    """One quiver-poold serving root (a private root, with its own vmmd)."""

    def __init__(self, root, workdir, config):
        self.root = root
        self.state = os.path.join(root, "poold")
        self.config = dict(config)
        self.config.setdefault("cgroup_parent", "quiver-%s-%d" % (SESSION_TAG, _id_counter()))
        self.parent = self.config["cgroup_parent"]
        self.config_path = os.path.join(workdir, "poold-%s-%d.json" % (SESSION_TAG, _id_counter()))
        with open(self.config_path, "w") as f:
            json.dump(self.config, f)
        self.rt = Runtime(RUNTIME_PATH, root, True)
        self.pid = None
        # Where our own cgroups are: poold, our child, starts in them, and
        # its parent is relative to them (one directory per hierarchy).
        own = set(os.path.realpath(d) for d in cgroup_paths_of(os.getpid()).values())
        self.parent_dirs = sorted(os.path.join(d, self.parent) for d in own)

    # ---- the daemon

    def start(self, *extra, check=True):
        """Start the daemon (it detaches once it serves); returns its pid, or
        with check=False (exit status, output) when it fails."""
        with tempfile.TemporaryFile() as out:
            r = subprocess.run([POOLD, "--root", self.root, "--config", self.config_path] + list(extra),
                               stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                               timeout=CMD_TIMEOUT)
            out.seek(0)
            text = out.read().decode(errors="replace")
        if r.returncode != 0 and not check:
            return r.returncode, text
        assert r.returncode == 0, "quiver-poold exited %d: %s\n%s" % (r.returncode, text, self.logs())
        self.pid = int(read(os.path.join(self.root, "poold.pid"), "0").strip() or 0)
        assert self.pid and pid_alive(self.pid), "no live poold after start: %s" % self.logs()
        return self.pid

    def alive(self):
        return self.pid is not None and pid_alive(self.pid)

    def stop(self, seconds=20.0):
        """SIGTERM and wait for the exit (it drains the pools first)."""
        os.kill(self.pid, signal.SIGTERM)
        assert wait_gone(self.pid, seconds), "poold %d still alive %.0fs after SIGTERM" % (self.pid, seconds)

    def kill9(self):
        os.kill(self.pid, signal.SIGKILL)
        assert wait_gone(self.pid), "poold %d survived SIGKILL" % self.pid

    def status(self):
        return json.loads(self.rt.ok("pool", "status", "--json").stdout)

    def pools(self):
        return by_kind(self.status())

    def settled(self, full=False, seconds=20.0):
        """The status once the refill is over: nothing starting, every pool
        at or above its low watermark and no change over three looks.  A
        pool refills only once it falls below low, so after a take it may
        rest anywhere from low to high.  full: the first fill, where warm and
        layer (which nothing else draws from) reach high; warm supervisors
        draw on the cgroup and netns pools, which may rest lower."""
        last = [None, 0]

        def at_rest():
            st = self.status()
            rest = True
            for p in st["pools"]:
                if p["kind"] == "layer" and st["layer_backend"] == "off":
                    continue
                want = p["high"] if full and p["kind"] in ("warm", "layer") else p["low"]
                rest = rest and p["starting"] == 0 and p["ready"] >= want
            key = json.dumps([(p["kind"], p["ready"], p["made"]) for p in st["pools"]])
            last[1] = last[1] + 1 if rest and key == last[0] else 0
            last[0] = key
            return st if last[1] >= 2 else None

        st = poll_until(at_rest, seconds, interval=0.1)
        assert st, "pools did not settle within %.0fs: %s\n%s" % (seconds, self.status(), self.logs())
        return st

    # ---- what exists on the machine

    def existing_parent_dirs(self):
        return [d for d in self.parent_dirs if os.path.isdir(d)]

    @staticmethod
    def is_v2(d):
        """d, a cgroup directory, is in the unified hierarchy."""
        return os.path.exists(os.path.join(d, "cgroup.controllers"))

    def groups(self):
        """{parent dir: set of sub-directory names} in every hierarchy."""
        out = {}
        for d in self.existing_parent_dirs():
            out[d] = set(e for e in os.listdir(d) if os.path.isdir(os.path.join(d, e)))
        return out

    def pool_groups(self):
        return {d: set(n for n in names if n.startswith("@pool-")) for d, names in self.groups().items()}

    def warm_procs(self):
        """{pid: cmdline} of live `quiver-guest warm` processes of this root,
        assigned or not."""
        needle = " --sock %s/warm/" % self.state
        out = {}
        for pid in all_pids():
            st = proc_stat(pid)
            if not st or st[1] in ("Z", "X"):
                continue
            cmd = proc_cmdline(pid)
            if " warm " in cmd and needle in cmd:
                out[pid] = cmd
        return out

    def pooled_warm(self):
        """{pid: {controller: cgroup dir}} of warm supervisors still in the
        pool (their v1 groups still carry a pool name)."""
        out = {}
        for pid in self.warm_procs():
            cg = cgroup_paths_of(pid)
            if cg and all(os.path.basename(d).startswith("@pool-") for d in cg.values()):
                out[pid] = cg
        return out

    def netns_mounts(self):
        prefix = os.path.join(self.state, "netns") + "/"
        return [m for m in mountpoints() if m.startswith(prefix)]

    def root_mounts(self):
        return [m for m in mountpoints() if m == self.root or m.startswith(self.root + "/")]

    def loops(self):
        r = subprocess.run(["losetup", "-a"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        return [l for l in r.stdout.splitlines() if self.root + "/" in l]

    def layers(self):
        d = os.path.join(self.state, "layers")
        try:
            return sorted(e for e in os.listdir(d) if e != "@template")
        except OSError:
            return []

    def claims(self):
        try:
            return sorted(os.listdir(os.path.join(self.state, "claims")))
        except OSError:
            return []

    def logs(self, cid=None):
        parts = []
        files = ["poold.log", "vmmd.log", "poold/warm.log"]
        if cid:
            files += ["%s/guest.log" % cid, "%s/launcher.log" % cid]
        for name in files:
            text = read(os.path.join(self.root, name))
            if text:
                parts.append("--- %s\n%s" % (name, "\n".join(text.splitlines()[-25:])))
        return "\n".join(parts)

    # ---- end of a test

    def teardown(self):
        """Delete every sandbox, wait for poold to take back what they held,
        stop poold, remove our cgroup parents.  Returns what went wrong."""
        problems = []
        if os.path.exists(os.path.join(self.root, "vmmd.sock")):
            for cid in self.rt("list", "-q").stdout.split():
                self.rt("delete", "--force", cid)
        if self.alive():
            if not poll_until(lambda: not self.claims(), 5.0):
                problems.append("claims left after every delete: %s" % self.claims())
            os.kill(self.pid, signal.SIGTERM)
            if not wait_gone(self.pid, 20.0):
                problems.append("poold %d ignored SIGTERM for 20s" % self.pid)
                os.kill(self.pid, signal.SIGKILL)
                wait_gone(self.pid)
        for pid in self.warm_procs():
            problems.append("warm supervisor %d outlived poold" % pid)
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        reap_zombies()
        # poold leaves its parent groups (shared by design); ours are ours.
        for d in self.existing_parent_dirs():
            try:
                os.rmdir(d)
            except OSError:
                pass  # not empty: the leak checker names what is inside
        return problems


@pytest.fixture
def poold_factory(session, private_root):
    if not POOLD or not os.access(POOLD, os.X_OK):
        pytest.skip("no quiver-poold next to %s" % RUNTIME_PATH)
    made = []

    def make(config, name="pool"):
        p = Poold(private_root(name), session.tmp, config)
        made.append(p)
        return p

    yield make
    problems = []
    for p in made:
        problems += p.teardown()
    if problems:
        pytest.fail("poold teardown:\n  " + "\n  ".join(problems), pytrace=False)


def assert_all_gone(p):
    """After a stop: no pooled thing of p's is left on the machine.  The
    kernel frees a loop device asynchronously after the last unmount: give
    it a moment, as the leak checker does."""
    reap_zombies()
    assert not p.alive(), "poold %d still alive" % p.pid
    poll_until(lambda: not p.loops() and not p.root_mounts(), 5.0, interval=0.05)
    leftovers = {d: names for d, names in p.groups().items() if names}
    assert not leftovers, "cgroups left under %s: %s\n%s" % (p.parent, leftovers, p.logs())
    assert not p.root_mounts(), "mounts left: %s\n%s" % (p.root_mounts(), p.logs())
    assert not p.loops(), "loop devices left: %s; the store is still mounted in the mount namespaces of %s" % (
        p.loops(), mount_holders(os.path.join(p.state, "layers")))
    assert not p.warm_procs(), "warm supervisors left: %s" % p.warm_procs()
    for f in ("poold.sock", "poold.pid"):
        assert not os.path.exists(os.path.join(p.root, f)), "%s left after the stop" % f


def sandbox_pid(p, cid):
    return p.rt.state(cid)["pid"]


def children(pid):
    return [q for q in all_pids() if (proc_stat(q) or ("", "", 0))[2] == pid]


def assert_groups_released(p, cid, v2_name):
    """After delete: no group is named after cid any more, and the pool
    name its v2 group kept is either gone everywhere or back in the pool
    everywhere (poold resets and reuses a sandbox's groups)."""
    def released():
        g = p.groups()
        return all(cid not in names for names in g.values()) and not p.claims()
    ok = poll_until(released, 5.0)
    g = p.groups()
    assert ok, "cgroups of %s left after delete: %s; claims %s\n%s" % (
        cid, [os.path.join(d, cid) for d, n in g.items() if cid in n], p.claims(), p.logs(cid))
    holders = [d for d, names in g.items() if v2_name in names]
    assert not holders or len(holders) == len(g), \
        "%s is back in only some hierarchies: %s" % (v2_name, holders)


# ---------------------------------------------------------------------------
# 1. configuration errors

BAD_CONFIGS = [
    ("unknown-top-key", {"refil_per_second": 5}, "refil_per_second"),
    ("unknown-pool-key", {"pools": {"cgroup": {"low": 1, "hihg": 2}}}, "pools.cgroup.hihg"),
    ("unknown-pool", {"pools": {"gpu": {"low": 1, "high": 2}}}, "pools.gpu"),
    ("low-above-high", {"pools": {"warm": {"low": 5, "high": 2}}}, "pools.warm.low"),
    ("negative", {"pools": {"netns": {"low": 0, "high": -1}}}, "pools.netns.high"),
    ("too-high", {"pools": {"cgroup": {"high": 1 << 20}}}, "pools.cgroup.high"),
    ("wrong-type", {"refill_per_second": "fast"}, "refill_per_second"),
    ("float", {"pools": {"layer": {"high": 2.5}}}, "pools.layer.high"),
    ("pools-not-object", {"pools": [1]}, "pools"),
    ("refill-zero", {"refill_per_second": 0}, "refill_per_second"),
    ("release-after-too-long", {"release_after_ms": 3600001}, "release_after_ms"),
    ("image-too-small", {"pools": {"layer": {"image_mib": 299}}}, "pools.layer.image_mib"),
    ("bad-backend", {"pools": {"layer": {"backend": "btrfs"}}}, "pools.layer.backend"),
    ("relative-template", {"pools": {"layer": {"template": "rootfs"}}}, "pools.layer.template"),
    ("parent-dotdot", {"cgroup_parent": "quiver/../.."}, "cgroup_parent"),
    ("warm-without-cgroups", {"pools": {"cgroup": OFF, "warm": {"low": 1, "high": 2}}}, "pools.warm"),
    ("invalid-json", '{"pools": {"cgroup": ', "line 1"),
    ("duplicate-key", '{"refill_per_second": 1, "refill_per_second": 2}', "refill_per_second"),
    ("missing-file", None, "No such file"),
]


@pytest.mark.parametrize("name,config,want", BAD_CONFIGS, ids=[c[0] for c in BAD_CONFIGS])
def test_bad_config_exits_1_naming_the_key(session, name, config, want):
    if not POOLD or not os.access(POOLD, os.X_OK):
        pytest.skip("no quiver-poold next to %s" % RUNTIME_PATH)
    root = os.path.join(session.tmp, "badcfg-%s-%d" % (SESSION_TAG, _id_counter()))
    path = os.path.join(session.tmp, "bad-%s-%d.json" % (name, _id_counter()))
    if isinstance(config, dict):
        with open(path, "w") as f:
            json.dump(config, f)
    elif config is not None:
        with open(path, "w") as f:
            f.write(config)
    r = subprocess.run([POOLD, "--root", root, "--config", path], stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=CMD_TIMEOUT)
    assert r.returncode == 1, "exit %d for %s; stderr %r" % (r.returncode, name, r.stderr)
    lines = r.stderr.splitlines()
    assert len(lines) == 1, "want one line on stderr, got %r" % r.stderr
    assert lines[0].startswith("quiver-poold: "), lines[0]
    assert want in lines[0], "%r does not name %r" % (lines[0], want)
    assert path in lines[0], "%r does not name the file %s" % (lines[0], path)
    for f in ("poold.sock", "poold.pid", "poold"):
        assert not os.path.exists(os.path.join(root, f)), "%s left by a rejected config" % f
    assert not [q for q in all_pids() if root in proc_cmdline(q)], "a poold for %s is running" % root


# ---------------------------------------------------------------------------
# 2. status, table, JSON, metrics

METRIC = re.compile(r'^(quiver_pool_[a-z_]+)\{pool="([a-z]+)"\} (\S+)$')


def scrape(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        m = METRIC.match(line)
        if m:
            out[(m.group(1), m.group(2))] = float(m.group(3))
    return out


def parse_table(text):
    lines = text.splitlines()
    head = lines[0].split()
    assert head == ["POOL", "READY", "STARTING", "LOW", "HIGH", "HITS", "MISSES", "MADE", "REFILL/S"], lines[0]
    rows = {}
    for line in lines[1:-1]:
        cells = line.split()
        rows[cells[0]] = cells[1:]
    assert lines[-1].startswith("layers: "), lines[-1]
    return rows, lines[-1][len("layers: "):]


def test_status_fills_to_high_and_agrees_everywhere(poold_factory):
    p = poold_factory(pools(cgroup=(2, 3), netns=(1, 2), layer=LAYER, warm=(1, 2)))
    p.start("--metrics", "127.0.0.1:0")
    st = p.settled(full=True)
    k = by_kind(st)
    assert st["refill_per_second"] == 50
    for kind in ("cgroup", "netns", "warm"):
        assert k[kind]["low"] <= k[kind]["ready"] <= k[kind]["high"], k[kind]
    assert k["warm"]["ready"] == 2 and k["warm"]["made"] == 2, k["warm"]
    if st["layer_backend"] == "off":
        assert st["layer_error"], st
    else:
        assert st["layer_backend"] in ("xfs-reflink", "tmpfs"), st
        assert k["layer"]["ready"] == 2, k["layer"]

    # The table says what the JSON says.
    rows, layers = parse_table(p.rt.ok("pool", "status").stdout)
    assert sorted(rows) == ["cgroup", "layer", "netns", "warm"]
    for kind, cells in rows.items():
        want = [str(k[kind][f]) for f in ("ready", "starting", "low", "high", "hits", "misses", "made")]
        assert cells[:7] == want, (kind, cells, k[kind])
        assert float(cells[7]) == pytest.approx(k[kind]["refill_rate"], abs=0.05)
    assert layers.startswith(st["layer_backend"]), (layers, st)

    # The counts are the objects on the machine: each warm supervisor holds
    # one pooled cgroup (and a pooled netns when one was ready).
    groups = p.pool_groups()
    assert groups, "no cgroup parent %s made" % p.parent
    for d, names in groups.items():
        assert len(names) == k["cgroup"]["ready"] + k["warm"]["ready"], (d, names, k)
        # 0755 whatever poold's umask (077): a sandbox with a user namespace
        # must reach its own group through them (a cold start puts it there
        # too when the config names no path)
        for g in [d] + [os.path.join(d, n) for n in names]:
            assert os.stat(g).st_mode & 0o777 == 0o755, "%s: %o" % (g, os.stat(g).st_mode & 0o777)
    warm = p.pooled_warm()
    assert len(warm) == k["warm"]["ready"], (warm, k["warm"])
    with_ns = sum(1 for pid in warm if " --netns " in proc_cmdline(pid))
    assert len(p.netns_mounts()) == k["netns"]["ready"] + with_ns, (p.netns_mounts(), k["netns"])
    if st["layer_backend"] != "off":
        assert len(p.layers()) == k["layer"]["ready"], p.layers()

    # /metrics, at the URL in ROOT/poold.metrics
    url = read(os.path.join(p.root, "poold.metrics")).strip()
    assert re.match(r"^http://127\.0\.0\.1:\d+/metrics$", url), url
    m = scrape(url)
    for kind in ("cgroup", "netns", "layer", "warm"):
        for field, metric in (("ready", "quiver_pool_ready"), ("starting", "quiver_pool_starting"),
                              ("low", "quiver_pool_low"), ("high", "quiver_pool_high"),
                              ("hits", "quiver_pool_hits_total"), ("misses", "quiver_pool_misses_total"),
                              ("made", "quiver_pool_made_total")):
            assert m.get((metric, kind)) == k[kind][field], (metric, kind, m.get((metric, kind)), k[kind])
        assert ("quiver_pool_failed_total", kind) in m

    p.stop()
    assert not os.path.exists(os.path.join(p.root, "poold.metrics"))
    assert_all_gone(p)


def test_qctl_pool_start_status_stop(poold_factory):
    """qctl's wrapper: start (detached, with the config), status, stop
    (waits for the drain); errors are one line."""
    p = poold_factory(pools())
    r = p.rt("pool", "status")
    assert r.returncode == 1 and len(r.stderr.splitlines()) == 1, r
    assert "poold is not running" in r.stderr, r.stderr
    r = p.rt.ok("pool", "start", "--config", p.config_path)
    assert "poold: running" in r.stdout, r.stdout
    p.pid = int(read(os.path.join(p.root, "poold.pid")).strip())
    assert pid_alive(p.pid)
    assert by_kind(p.settled(full=True))["warm"]["ready"] == 2
    r = p.rt.ok("pool", "stop")
    assert "poold: stopped" in r.stdout, r.stdout
    assert wait_gone(p.pid)
    assert_all_gone(p)
    assert "not running" in p.rt.ok("pool", "stop").stdout


def test_qctl_pool_start_bad_config_is_one_line(session):
    """qctl's errors are one line (conftest.assert_error); poold's own
    message names the key and nothing else is needed."""
    root = os.path.join(session.tmp, "badstart-%s-%d" % (SESSION_TAG, _id_counter()))
    bad = os.path.join(session.tmp, "bad-%s-%d.json" % (SESSION_TAG, _id_counter()))
    with open(bad, "w") as f:
        json.dump({"pools": {"warm": {"low": 3, "high": 1}}}, f)
    r = Runtime(RUNTIME_PATH, root, True)("pool", "start", "--config", bad)
    for f in ("poold.sock", "poold.pid"):
        assert not os.path.exists(os.path.join(root, f)), f
    assert_error(r, "pools.warm.low")


# ---------------------------------------------------------------------------
# 3. warm hit


def test_warm_hit_runs_the_workload(poold_factory, bundle_factory):
    p = poold_factory(pools())
    p.start()
    before = p.settled(full=True)
    b = bundle_factory()
    b.shell("echo hi; echo err >&2; exit 3")
    cid = p.rt.new_id("hit")
    r = p.rt("run", "--bundle", b.path, cid)
    assert (r.returncode, r.stdout, r.stderr) == (3, "hi\n", "err\n"), (r, p.logs(cid))
    k0, k1 = by_kind(before), p.pools()
    assert k1["warm"]["hits"] == k0["warm"]["hits"] + 1, (k0["warm"], k1["warm"], p.logs(cid))
    assert k1["warm"]["misses"] == k0["warm"]["misses"]
    assert p.rt("state", cid).returncode != 0, "run left %s behind" % cid

    # run -d: S is a supervisor from the pool, in its pooled groups, which
    # now carry the sandbox's id (v1: renamed; v2 keeps the pool name).
    p.settled()
    warm = p.pooled_warm()
    b2 = bundle_factory()
    b2.shell(LOOP)
    cid2 = p.rt.new_id("hitd")
    p.rt.ok("run", "-d", "--bundle", b2.path, cid2)
    spid = sandbox_pid(p, cid2)
    assert spid in warm, "S %d is not one of the pooled supervisors %s\n%s" % (spid, sorted(warm), p.logs(cid2))
    was, now = warm[spid], cgroup_paths_of(spid)
    assert set(now) == set(was), (was, now)
    v2_name = None
    for ctrl, d in now.items():
        assert os.path.dirname(d) == os.path.dirname(was[ctrl]), (ctrl, was[ctrl], d)
        assert os.path.basename(os.path.dirname(d)) == p.parent, d
        if Poold.is_v2(d):
            assert d == was[ctrl], "v2 group renamed: %s -> %s" % (was[ctrl], d)
            v2_name = os.path.basename(d)
        else:
            assert os.path.basename(d) == cid2, (ctrl, d)
            assert os.path.isdir(d) and not os.path.exists(was[ctrl]), (was[ctrl], d)
    kids = poll_until(lambda: children(spid), 5.0)
    assert kids, "S %d has no workload" % spid
    for w in kids:
        assert cgroup_paths_of(w) == now, "workload %d not in S's groups" % w

    p.rt.ok("delete", "--force", cid2)
    assert wait_gone(spid)
    assert_groups_released(p, cid2, v2_name)
    # an assigned supervisor's socket and premade state files are gone: what
    # is left in ROOT/poold/warm belongs to the supervisors still pooled
    p.settled()
    left = sorted(os.listdir(os.path.join(p.state, "warm")))
    socks = [n for n in left if n.endswith(".sock")]
    assert len(socks) == len(p.pooled_warm()), left
    premade = sorted(s + "." + k for s in socks for k in ("counters", "ctl", "log"))
    assert sorted(n for n in left if n not in socks) == premade, left


def test_warm_sandbox_logs_to_its_guest_log(poold_factory, bundle_factory):
    """A taken warm supervisor logs to the sandbox's guest.log.  It used to
    close poold's warm.log with every fd it did not keep, so opening
    guest.log reused that number and closed it as "the old log": every
    line after that (the workload's exit, any warning) went nowhere."""
    p = poold_factory(pools(warm=(1, 1)))
    p.start()
    k0 = by_kind(p.settled(full=True))
    b = bundle_factory()
    b.shell("exit 5")
    cid = p.rt.new_id("wlog")
    p.rt.ok("run", "-d", "--bundle", b.path, cid)
    assert p.rt.wait_status(cid, "stopped", 10.0), p.logs(cid)
    assert p.pools()["warm"]["hits"] == k0["warm"]["hits"] + 1, p.logs(cid)
    log = read_text(os.path.join(p.root, cid, "guest.log"))
    assert re.search(r"info: workload exited: status \d+, exit code 5$", log, re.M), p.logs(cid)
    p.rt.ok("delete", cid)


def mount_table(text, cid):
    """A sandbox's /proc/self/mountinfo without what differs between two
    sandboxes of one bundle: mount ids, device numbers, peer groups, the
    cgroup parent and name in its cgroup paths (poold's, or the sandbox's);
    sorted by mount point (a tree built while warm has the lower ids)."""
    rows = []
    for line in text.splitlines():
        f = line.split()
        sep = f.index("-")
        opt = [o for o in f[6:sep] if not re.match(r"(shared|master|propagate_from):", o)]
        root = re.sub(r"/[^/]+/(%s|@pool-[0-9a-f-]+)$" % re.escape(cid), "/PARENT/ID", f[3])
        rows.append((f[4], root, f[5], " ".join(opt), " ".join(f[sep + 1:])))
    return sorted(rows)


def mount_unique_id(path):
    """statx(2)'s STATX_MNT_ID_UNIQUE of the mount path is on: never reused,
    so it orders mounts by when they were made."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    buf = ctypes.create_string_buffer(256)
    STATX_MNT_ID_UNIQUE, AT_FDCWD = 0x4000, -100
    if libc.statx(AT_FDCWD, path.encode(), 0, STATX_MNT_ID_UNIQUE, buf) != 0:
        raise OSError(ctypes.get_errno(), path)
    mask = int.from_bytes(buf.raw[0:4], "little")
    assert mask & STATX_MNT_ID_UNIQUE, "no unique mount id for %s" % path
    return int.from_bytes(buf.raw[144:152], "little")


def test_warm_dev_sys_proc_are_the_cold_ones(poold_factory, bundle_factory):
    """A warm supervisor builds the default /dev (tmpfs, devpts, shm,
    mqueue, six nodes, links), /sys (sysfs, the cgroup tmpfs and binds of
    its own groups) and /proc (with runc's read-only and masked paths)
    while it waits (guest/mounts.c) and attaches each in one move_mount, so
    all three are older than the sandbox's root; what the workload sees is
    the mount table of a cold sandbox of the same bundle, option for
    option.  A config whose /dev differs, or that sets a sysctl, gets its
    own /dev or /proc, warm or not."""
    p = poold_factory(pools(warm=(1, 1)))
    p.start()
    for how in ("warm", "cold"):
        b = bundle_factory()
        b.shell(LOOP)
        p.settled(full=True)
        cid = p.rt.new_id("age" + how)
        env = dict(os.environ, QUIVER_NO_WARM="1") if how == "cold" else None
        p.rt.ok("run", "-d", "--bundle", b.path, cid, env=env)
        kids = poll_until(lambda: children(sandbox_pid(p, cid)), 5.0)
        assert kids, p.logs(cid)
        root = "/proc/%d/root" % kids[0]
        age = {d: mount_unique_id(root + d) for d in ("/", "/dev", "/sys", "/proc")}
        prebuilt = {d: age[d] < age["/"] for d in ("/dev", "/sys", "/proc")}
        assert prebuilt == dict.fromkeys(prebuilt, how == "warm"), (how, age, p.logs(cid))
        p.rt.ok("delete", "--force", cid)

    b = bundle_factory()
    b.args("cat", "/proc/self/mountinfo")
    tables = {}
    for how in ("warm", "cold"):
        p.settled(full=True)
        k0 = p.pools()
        cid = p.rt.new_id(how)
        env = dict(os.environ, QUIVER_NO_WARM="1") if how == "cold" else None
        r = p.rt("run", "--bundle", b.path, cid, env=env)
        assert r.returncode == 0, (r, p.logs(cid))
        hits = p.pools()["warm"]["hits"] - k0["warm"]["hits"]
        assert hits == (1 if how == "warm" else 0), (how, hits)
        tables[how] = mount_table(r.stdout, cid)
    assert any(m[0] == "/dev/pts" for m in tables["warm"]), tables["warm"]
    assert tables["warm"] == tables["cold"], "\n".join(
        "%s %s" % ("warm" if t is tables["warm"] else "cold", m)
        for t in (tables["warm"], tables["cold"]) for m in t if m not in (tables["cold"] if t is tables["warm"] else tables["warm"]))

    # a /dev of 1 MiB: not the prebuilt one, and still a warm hit
    mounts = b.config["mounts"]
    for m in mounts:
        if m["destination"] == "/dev":
            m["options"] = [o if not o.startswith("size=") else "size=1m" for o in m["options"]]
    b.set("mounts", mounts)
    p.settled(full=True)
    k0 = p.pools()
    cid = p.rt.new_id("devsize")
    r = p.rt("run", "--bundle", b.path, cid)
    assert r.returncode == 0, (r, p.logs(cid))
    assert p.pools()["warm"]["hits"] == k0["warm"]["hits"] + 1
    dev = [m for m in mount_table(r.stdout, cid) if m[0] == "/dev"]
    assert len(dev) == 1 and "size=1024k" in dev[0][4], dev

    # a sysctl is written before /proc/sys goes read-only: no warm /proc,
    # and the same /proc as a cold sandbox's
    b.set("linux.sysctl", {"kernel.shm_rmid_forced": "1"})
    tables = {}
    for how in ("warm", "cold"):
        p.settled(full=True)
        cid = p.rt.new_id("sysctl" + how)
        env = dict(os.environ, QUIVER_NO_WARM="1") if how == "cold" else None
        k0 = p.pools()
        r = p.rt("run", "--bundle", b.path, cid, env=env)
        assert r.returncode == 0, (r, p.logs(cid))
        assert p.pools()["warm"]["hits"] - k0["warm"]["hits"] == (how == "warm"), how
        tables[how] = [m for m in mount_table(r.stdout, cid) if m[0].startswith("/proc")]
    assert tables["warm"] == tables["cold"] and len(tables["warm"]) > 4, tables


# ---------------------------------------------------------------------------
# 4. exhaustion


def test_warm_start_reports_quick_exits_and_exec_failures(poold_factory, bundle_factory):
    """A warm start with start spawns its workload without a copy of the
    supervisor (CLONE_VM|CLONE_VFORK; guest/supervisor.c), with or without
    an OCI seccomp profile (S compiles it, W loads it: early, and late with
    noNewPrivileges).  A workload that exits at once reports its own
    status, a failed execve is 127 with the runtime's message, the profile
    is in force; every run is a warm hit."""
    p = poold_factory(pools(warm=(2, 2)))
    p.start()
    k0 = by_kind(p.settled(full=True))
    runs = 0
    deny_uname = {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"],
                  "syscalls": [{"names": ["uname"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]}
    for profile, nnp in ((None, True), (deny_uname, True), (deny_uname, False)):
        b = bundle_factory()
        b.set("process.noNewPrivileges", nnp)
        if profile:
            b.set("linux.seccomp", profile)
        b.args("/bin/attack", "uname")
        p.settled(full=True)
        cid = p.rt.new_id("prof")
        r = p.rt("run", "--bundle", b.path, cid)
        runs += 1
        want = "uname rc=-1 errno=EPERM" if profile else "uname rc=0 "
        assert r.returncode == 0 and r.stdout.startswith(want), (profile, nnp, r, p.logs(cid))
        for code, args in ((0, ["true"]), (7, ["sh", "-c", "exit 7"]), (0, ["sh", "-c", "echo out"]),
                           (127, ["/nonexistent"])):
            b.args(*args)
            p.settled(full=True)
            cid = p.rt.new_id("quick")
            r = p.rt("run", "--bundle", b.path, cid)
            runs += 1
            assert r.returncode == code, (profile, args, r, p.logs(cid))
            if args[-1] == "echo out":
                assert r.stdout == "out\n", r
            if code == 127:
                assert "exec: /nonexistent: No such file or directory" in r.stderr, r.stderr
            assert p.rt("state", cid).returncode != 0, "run left %s behind" % cid
    k1 = p.pools()
    assert k1["warm"]["hits"] == k0["warm"]["hits"] + runs, (k0["warm"], k1["warm"])
    assert k1["warm"]["misses"] == k0["warm"]["misses"], (k0["warm"], k1["warm"])


def mapping_kib(pid, name, field):
    """A field ("Size:", "Rss:") of pid's mapping name ("[heap]") in
    /proc/PID/smaps, in KiB (0 if no such mapping)."""
    with open("/proc/%d/smaps" % pid) as f:
        lines = f.read().splitlines()
    for i, l in enumerate(lines):
        if l.endswith(name):
            return next(int(x.split()[1]) for x in lines[i + 1:] if x.startswith(field))
    return 0


def heap_kib(pid):
    return mapping_kib(pid, "[heap]", "Size:")


def test_idle_supervisor_gives_back_its_config(poold_factory, bundle_factory):
    """The supervisor frees the config it no longer reads, and trims its
    heap, once the running sandbox has been quiet for 2 s (not during the
    start, where the trim's TLB flushes cost the burst; guest/supervisor.c)."""
    p = poold_factory(pools())
    p.start()
    p.settled(full=True)
    b = bundle_factory()
    b.shell(LOOP)
    cid = p.rt.new_id("idle")
    p.rt.ok("run", "-d", "--bundle", b.path, cid)
    try:
        spid = sandbox_pid(p, cid)
        sizes = []
        # the config's heap (about 130 KiB here) comes down to about 50
        assert poll_until(lambda: sizes.append(heap_kib(spid)) or sizes[-1] <= 96, 10.0), sizes
    finally:
        p.rt("delete", "--force", cid)


@pytest.mark.parametrize("how", ["cold", "warm"])
def test_idle_supervisor_keeps_a_small_stack(poold_factory, bundle_factory, how):
    """Once quiet, the supervisor gives back the stack below its serving
    loop; what stays is the frames down to the loop.  Buffers of the
    request and signal handlers inlined into the loop's frame, and a warm
    supervisor's 16 KiB assignment buffer above it, used to stay resident
    for the sandbox's life: 44 KiB cold, 54 KiB warm, against 24 and 28
    since (guest/supervisor.c, guest/warm.c)."""
    p = poold_factory(pools(netns=(0, 0), warm=(1, 2)))
    p.start()
    p.settled(full=True)
    b = bundle_factory()
    b.shell(LOOP)
    cid = p.rt.new_id("stk")
    env = dict(os.environ, QUIVER_NO_WARM="1") if how == "cold" else None
    hits = p.pools()["warm"]["hits"]
    r = p.rt("run", "-d", "--bundle", b.path, cid, env=env)
    assert r.returncode == 0, (r.stderr, p.logs())
    try:
        assert p.pools()["warm"]["hits"] == hits + (how == "warm"), p.status()
        for _ in range(2):  # requests and a child's SIGCHLD for the supervisor
            assert p.rt("exec", cid, "true").returncode == 0
        spid = sandbox_pid(p, cid)
        sizes = []

        def small():
            sizes.append(mapping_kib(spid, "[stack]", "Rss:"))
            return sizes[-1] <= 36

        assert poll_until(small, 10.0), sizes
    finally:
        p.rt("delete", "--force", cid)


def test_exhausted_pool_falls_back_cold(poold_factory, bundle_factory):
    p = poold_factory(pools(cgroup=(1, 2), netns=(0, 0), warm=(1, 2), rate=4))
    p.start()
    k0 = by_kind(p.settled(full=True))
    assert k0["warm"]["ready"] == 2
    n = 5
    bundles = []
    for i in range(n):
        b = bundle_factory()
        b.shell(LOOP)
        bundles.append((p.rt.new_id("ex"), b))
    # All at once: the refill (4/s) cannot keep up.  Output goes to files:
    # the sandboxes keep it open.
    procs = []
    for cid, b in bundles:
        err = tempfile.TemporaryFile()
        procs.append((cid, err, subprocess.Popen(p.rt.argv("run", "-d", "--bundle", b.path, cid),
                                                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                                 stderr=err)))
    for cid, err, proc in procs:
        rc = proc.wait(timeout=CMD_TIMEOUT)
        err.seek(0)
        msg = err.read().decode(errors="replace")
        err.close()
        assert rc == 0, "run -d %s: %d %s\n%s" % (cid, rc, msg, p.logs(cid))
    reap_zombies()
    k1 = p.pools()
    hits = k1["warm"]["hits"] - k0["warm"]["hits"]
    misses = k1["warm"]["misses"] - k0["warm"]["misses"]
    made = k1["warm"]["made"] - k0["warm"]["made"]
    assert hits + misses == n, (k0["warm"], k1["warm"])
    assert 2 <= hits <= 2 + made, (hits, made, k1["warm"])
    assert misses >= 1, k1["warm"]

    # Warm ones live in the pool's parent, cold ones where a cold start
    # puts them (<own cgroup>/quiver/ID); every one works.
    placed = {"warm": 0, "cold": 0}
    warm_ids = set()
    for cid, _ in bundles:
        assert p.rt.status(cid) == "running", (cid, p.logs(cid))
        pids_dir = cgroup_paths_of(sandbox_pid(p, cid))["pids"]
        assert os.path.basename(pids_dir) == cid, pids_dir
        parent = os.path.basename(os.path.dirname(pids_dir))
        assert parent in (p.parent, "quiver"), pids_dir
        placed["warm" if parent == p.parent else "cold"] += 1
        if parent == p.parent:
            warm_ids.add(cid)
        r = p.rt("exec", cid, "echo", "alive")
        assert (r.returncode, r.stdout) == (0, "alive\n"), (cid, r, p.logs(cid))
    assert placed == {"warm": hits, "cold": misses}, (placed, hits, misses)
    # and the pool comes back
    assert by_kind(p.settled())["warm"]["ready"] >= 1
    for cid, _ in bundles:
        p.rt.ok("kill", cid, "TERM")
    for cid, _ in bundles:
        assert p.rt.wait_status(cid, "stopped"), cid
        assert json.loads(p.rt.ok("inspect", cid).stdout)["exit"]["exit_code"] == 42, cid
        p.rt.ok("delete", cid)
    # A miss holds nothing, but must not leave a claim either: claims keep
    # the layer store mounted at stop.
    assert poll_until(lambda: not p.claims(), 5.0), \
        "claims left after delete: %s (cold: %s)" % (p.claims(), sorted(
            c for c, _ in bundles if c not in warm_ids))


# ---------------------------------------------------------------------------
# 5. configs a warm supervisor cannot serve


def with_hook(b):
    b.config["hooks"] = {"createRuntime": [{"path": "/bin/true", "args": ["true"]}]}
    b.write()


def with_userns(b):
    b.config["linux"]["namespaces"].append({"type": "user"})
    b.config["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 0, "size": 65536}]
    b.config["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 0, "size": 65536}]
    b.write()


def without_netns(b):
    b.config["linux"]["namespaces"] = [n for n in b.config["linux"]["namespaces"] if n["type"] != "network"]
    b.write()


INELIGIBLE = [("createRuntime-hook", with_hook), ("user-namespace", with_userns), ("host-network", without_netns)]


def test_refill_waits_while_every_cpu_is_busy(poold_factory, bundle_factory):
    """A pool that still has something is not refilled while other tasks
    want every CPU: the supervisors just taken and the sandboxes running come
    first.  Busy loops, one more than there are CPUs, keep every CPU wanted;
    once they stop, the pool fills again."""
    p = poold_factory(pools(warm=(2, 2)))
    p.start()
    p.settled(full=True)
    b = bundle_factory()
    b.shell(LOOP)
    cid = p.rt.new_id("busy")
    hogs = [subprocess.Popen(["/bin/sh", "-c", "while :; do :; done"]) for _ in range(os.cpu_count() + 1)]
    try:
        p.rt.ok("run", "-d", "--bundle", b.path, cid)
        k0 = p.pools()
        # 50 refill ticks, well past the pause poold waits for after a take
        time.sleep(1.0)
        k1 = p.pools()
        assert k0["warm"]["hits"] >= 1, k0["warm"]
        assert (k1["warm"]["ready"], k1["warm"]["starting"], k1["warm"]["made"]) == (1, 0, k0["warm"]["made"]), \
            "refilled while every CPU was busy: %s -> %s" % (k0["warm"], k1["warm"])
    finally:
        for h in hogs:
            h.kill()
            h.wait()
        p.rt("delete", "--force", cid)
    assert by_kind(p.settled())["warm"]["ready"] == 2


@pytest.mark.parametrize("name,change", INELIGIBLE, ids=[c[0] for c in INELIGIBLE])
def test_ineligible_config_goes_cold(poold_factory, bundle_factory, name, change):
    p = poold_factory(pools())
    p.start()
    k0 = by_kind(p.settled(full=True))
    warm0 = set(p.pooled_warm())
    b = bundle_factory()
    b.shell("echo cold-ok; grep pids /proc/self/cgroup")
    change(b)
    cid = p.rt.new_id("cold")
    r = p.rt("run", "--bundle", b.path, cid)
    assert r.returncode == 0, (r, p.logs(cid))
    lines = r.stdout.splitlines()
    assert lines[0] == "cold-ok", r.stdout
    # a cold start's group: <own cgroup>/quiver/ID, not the pool's
    assert lines[1].endswith("/quiver/%s" % cid), lines[1]
    k1 = p.pools()
    for f in ("hits", "misses"):
        assert k1["warm"][f] == k0["warm"][f], (f, k0["warm"], k1["warm"])
    assert set(p.pooled_warm()) == warm0, "a warm supervisor was used or lost"


# ---------------------------------------------------------------------------
# 6. kill -9 during the refill, restart


def assert_no_orphans(p, old_warm, old_pid):
    st = p.settled(full=True)
    k = by_kind(st)
    for pid in old_warm:
        assert not pid_alive(pid), "warm %d of the killed poold alive: %s" % (pid, proc_cmdline(pid))
    warm = p.warm_procs()
    assert not [c for c in warm.values() if "/@warm-%d-" % old_pid in c], warm
    pooled = p.pooled_warm()
    assert len(pooled) == k["warm"]["ready"], (sorted(pooled), k["warm"])
    groups = p.pool_groups()
    names = set().union(*groups.values())
    for d, n in groups.items():
        assert n == names, "half-made groups: %s has %s of %s" % (d, sorted(n), sorted(names))
    assert len(names) == k["cgroup"]["ready"] + k["warm"]["ready"], (len(names), k)
    mounts = p.netns_mounts()
    assert len(mounts) == len(set(mounts)), "stacked netns mounts: %s" % mounts
    with_ns = sum(1 for pid in pooled if " --netns " in proc_cmdline(pid))
    assert len(mounts) == k["netns"]["ready"] + with_ns, (mounts, k["netns"], with_ns)
    files = os.listdir(os.path.join(p.state, "netns"))
    assert sorted(os.path.join(p.state, "netns", f) for f in files) == sorted(mounts), "unmounted netns files"
    if st["layer_backend"] != "off":
        assert len(p.layers()) == k["layer"]["ready"], (p.layers(), k["layer"])
    assert not p.claims(), p.claims()


def test_kill9_during_refill_leaves_no_orphans(poold_factory):
    p = poold_factory(pools(cgroup=(5, 50), netns=(2, 6), layer=LAYER, warm=(2, 20), rate=20))
    p.start()

    def refilling_warm():
        k = p.pools()
        return 3 <= k["warm"]["ready"] + k["warm"]["starting"] < k["warm"]["high"]

    assert poll_until(refilling_warm, 20.0, interval=0.01), "warm refill not seen: %s" % p.status()
    old_pid = p.pid
    old_warm = set(p.warm_procs())
    assert old_warm
    p.kill9()
    # Unowned warm supervisors exit by themselves; the new poold reclaims
    # their groups, the netns mounts and the layers.
    p.start()
    assert p.pid != old_pid
    assert_no_orphans(p, old_warm, old_pid)
    assert "reclaimed" in read(os.path.join(p.root, "poold.log"))
    p.stop()
    assert_all_gone(p)


def test_stop_during_refill_logs_no_errors(poold_factory):
    """poold stopped while warm supervisors are still starting: their
    launchers find poold gone and say so at info level, not as errors (they
    logged "sync socket: Broken pipe" and "warm supervisor died while
    starting" as errors on every such stop), and nothing is left behind.
    Stops are repeated until one catches a launcher mid-start."""
    caught = 0
    for attempt in range(10):
        p = poold_factory(pools(cgroup=(5, 50), netns=(0, 0), warm=(30, 30), rate=500), name="stop%d" % attempt)
        p.start()
        assert poll_until(lambda: p.pools()["warm"]["starting"] > 0, 10.0, interval=0.002), p.status()
        p.stop()
        logs = {f: read(os.path.join(p.root, f)) for f in ("poold.log", "poold/warm.log")}
        bad = ["%s: %s" % (f, l) for f, text in logs.items() for l in text.splitlines()
               if ": error: " in l or ": warn: " in l]
        assert not bad, "errors on a stop during the refill:\n" + "\n".join(bad)
        assert_all_gone(p)
        caught += logs["poold/warm.log"].count("poold dropped this supervisor while it was starting")
        if caught:
            break
    assert caught, "no stop in 10 caught a warm supervisor starting: the test proved nothing"


def test_hung_poold_costs_one_timeout_not_one_per_start(poold_factory, bundle_factory):
    """A poold that stops answering (SIGSTOP, as a hung one would): the
    first take times out and the start goes cold; the starts after it go
    cold at once, without asking poold (vmmd's loop waited out the take's
    timeout for every start before); a delete meanwhile is answered; once
    poold answers again, starts are warm again, and every claim is given
    back."""
    p = poold_factory(pools(netns=(0, 0), warm=(2, 3)))
    p.start()
    p.settled(full=True)
    b = bundle_factory()
    b.shell(LOOP)
    first = p.rt.new_id("hung")
    p.rt.ok("run", "-d", "--bundle", b.path, first)  # vmmd runs and has dialled poold
    k0 = by_kind(p.status())["warm"]
    ids = [p.rt.new_id("hung") for _ in range(4)]
    os.kill(p.pid, signal.SIGSTOP)
    try:
        for cid in ids:
            p.rt.ok("run", "-d", "--bundle", b.path, cid)
        for cid in ids:
            r = p.rt("exec", cid, "echo", "alive")
            assert (r.returncode, r.stdout) == (0, "alive\n"), (cid, r, p.logs(cid))
        # the take that timed out: pooled (poold may still carry it out),
        # cold cgroups of vmmd's own, which its delete removes
        dirs = [d for d in set(cgroup_paths_of(sandbox_pid(p, ids[0])).values())
                if os.path.basename(d) == ids[0]]
        assert dirs
        p.rt.ok("delete", "--force", ids[0])
        left = [d for d in dirs if os.path.isdir(d)]
        assert not left, "cgroups of a cold start left after its delete: %s" % left
        log = read(os.path.join(p.root, "vmmd.log"))
        assert log.count("starts go cold until it answers") == 1, log
    finally:
        os.kill(p.pid, signal.SIGCONT)
    # poold now works through what reached it while it was stopped: the
    # take that timed out (and the release of ids[0] that followed it).
    assert poll_until(lambda: not any(c == ids[0] for c in p.claims()), 10.0), (p.claims(), p.logs())
    k1 = by_kind(p.status())["warm"]
    reached = (k1["hits"] + k1["misses"]) - (k0["hits"] + k0["misses"])
    assert reached == 1, "takes that reached the stopped poold: %d of %d (want 1)\n%s" % (
        reached, len(ids), p.logs())

    # poold answers again: a start after the next one or two is warm
    warm_again = []

    def one_more_warm():
        cid = p.rt.new_id("back")
        before = by_kind(p.status())["warm"]["hits"]
        p.rt.ok("run", "-d", "--bundle", b.path, cid)
        warm_again.append(cid)
        return by_kind(p.status())["warm"]["hits"] > before

    assert poll_until(one_more_warm, 10.0, interval=0.1), (warm_again, p.logs())
    assert len(warm_again) <= 3, (warm_again, p.logs())
    for cid in [first] + ids[1:] + warm_again:
        p.rt.ok("delete", "--force", cid)
    assert poll_until(lambda: not p.claims(), 10.0), "claims left: %s\n%s" % (p.claims(), p.logs())


def test_starts_without_poold_say_so_once(poold_factory, bundle_factory):
    """poold is optional: with none running every start is cold, and vmmd
    says so once, not once per start (bench/idle.py's cold round of 500
    starts logged 500 warnings); once poold is back, a start is warm again
    and vmmd says that once too."""
    p = poold_factory(pools(netns=(0, 0), warm=(1, 2)))
    p.start()
    p.settled(full=True)
    b = bundle_factory()
    b.shell(LOOP)
    vmmd_log = os.path.join(p.root, "vmmd.log")

    def run(prefix):
        cid = p.rt.new_id(prefix)
        p.rt.ok("run", "-d", "--bundle", b.path, cid)
        return cid

    p.rt.ok("delete", "--force", run("pooled"))  # vmmd runs and has asked poold
    p.stop()
    cold = [run("nopoold") for _ in range(3)]
    log = read(vmmd_log)
    assert log.count("poold is not running") == 1, log[-3000:]
    assert "cold start: poold" not in log and " warn: " not in log, log[-3000:]

    p.start()
    p.settled(full=True)
    hits = p.pools()["warm"]["hits"]
    back = run("back")
    assert p.pools()["warm"]["hits"] == hits + 1, (p.status(), p.logs(back))
    log = read(vmmd_log)
    assert log.count("poold.sock is back") == 1 and log.count("poold is not running") == 1, log[-3000:]
    for cid in cold + [back]:
        p.rt.ok("delete", "--force", cid)
    assert poll_until(lambda: not p.claims(), 10.0), "claims left: %s\n%s" % (p.claims(), p.logs())


def test_peer_hanging_up_in_the_handshake_does_not_wedge_poold(poold_factory, bundle_factory):
    """As for vmmd (test_daemon.py): after bare connect/close on poold.sock,
    nng 1.5.2's REP listener left poold answering nothing.  poold serves
    its socket without nng now (libcommon/sp.c): it answers at once, and
    starts stay warm."""
    p = poold_factory(pools(netns=(0, 0), warm=(1, 2)))
    p.start()
    p.settled(full=True)
    hang_up_in_handshakes(os.path.join(p.root, "poold.sock"))
    r = p.rt("pool", "status", "--json", timeout=10)
    assert r.returncode == 0, (r.stderr, p.logs())
    assert p.alive(), p.logs()
    b = bundle_factory()
    b.shell(LOOP)
    cid = p.rt.new_id("hupw")
    hits = by_kind(p.status())["warm"]["hits"]
    p.rt.ok("run", "-d", "--bundle", b.path, cid)
    assert by_kind(p.status())["warm"]["hits"] == hits + 1, p.logs(cid)
    p.rt.ok("delete", "--force", cid)
    assert poll_until(lambda: not p.claims(), 10.0), (p.claims(), p.logs())
    text = read(os.path.join(p.root, "poold.log"))
    assert "wedged" not in text and "re-executing" not in text, p.logs()
    p.stop()
    assert_all_gone(p)


def test_malformed_request_to_poold_is_answered_and_logged(poold_factory):
    """Garbage on poold.sock (from a peer of our uid: sp.c checks that) gets
    an error reply on a connection that goes on working, and one warning in
    poold.log per request, as vmmd does for its socket."""
    p = poold_factory(pools(netns=(0, 0), warm=(0, 0)))
    p.start()
    cl = VmmdClient(p.root, sock="poold.sock")
    try:
        for body in (b"\xc1", b"\x93\x01\x02\x03", b"\x81\xa1v\x01"):
            rep = cl.call_raw(body)
            assert rep.get("op") == "error" and rep.get("code", 0) > 0, (body, rep)
        assert cl.call({"v": 1, "op": "status"}).get("op") != "error"
    finally:
        cl.close()
    assert p.alive(), p.logs()
    text = read(os.path.join(p.root, "poold.log"))
    assert text.count("malformed request") == 3, text[-2000:]
    p.stop()
    assert_all_gone(p)


def run_with_layer(p, bundle_factory, prefix):
    """Start poold p, wait for its pools, `run -d` a sandbox with a writable
    layer that writes /kept; its id.  Skips without a layer store."""
    p.start()
    st = p.settled(full=True)
    if st["layer_backend"] == "off":
        pytest.skip("no layer store here: %s" % st["layer_error"])
    b = bundle_factory()
    b.writable().set("annotations", {OVERLAY: "true"})
    b.shell("echo kept > /kept; " + LOOP)
    cid = p.rt.new_id(prefix)
    p.rt.ok("run", "-d", "--bundle", b.path, cid)
    return cid


def test_cold_start_takes_no_layer(poold_factory, bundle_factory):
    """The warm pool empty, the layer pool not: the start is cold, and a
    cold start has no use for a writable layer, so poold hands none out
    (it did, and the layer sat unused until the delete) and counts it as
    neither hit nor miss.  The sandbox holds nothing of poold's; its
    delete removes its cgroups."""
    p = poold_factory(pools(netns=(0, 0), layer=LAYER, warm=(0, 0)))
    cid = run_with_layer(p, bundle_factory, "nolayer")
    k = p.pools()
    assert k["warm"]["misses"] == 1, (k, p.logs(cid))
    assert (k["layer"]["hits"], k["layer"]["misses"]) == (0, 0), (k["layer"], p.logs(cid))
    assert k["layer"]["ready"] == LAYER["high"], k["layer"]
    assert not p.claims() and cid not in p.layers(), (p.claims(), p.layers())
    spid = sandbox_pid(p, cid)
    dirs = sorted(set(cgroup_paths_of(spid).values()))
    assert all(os.path.basename(d) == cid for d in dirs if not Poold.is_v2(d)), dirs
    p.rt.ok("delete", "--force", cid)
    assert wait_gone(spid)
    left = [d for d in dirs if os.path.basename(d) == cid and os.path.isdir(d)]
    assert not left, "cgroups left after delete: %s\n%s" % (left, p.logs())


# ---------------------------------------------------------------------------
# 7. kill -9 with a sandbox from a warm start


def test_kill9_with_warm_sandbox_then_delete_releases_claim(poold_factory, bundle_factory):
    p = poold_factory(pools(layer=LAYER))
    cid = run_with_layer(p, bundle_factory, "k9")
    spid = sandbox_pid(p, cid)
    k = p.pools()
    assert k["warm"]["hits"] == 1 and k["layer"]["hits"] == 1, (k, p.logs(cid))
    v2 = [d for d in cgroup_paths_of(spid).values() if Poold.is_v2(d)]
    v2_name = os.path.basename(v2[0]) if v2 else None
    assert p.claims() == [cid]
    assert cid in p.layers()

    p.kill9()
    p.start()
    p.settled(full=True)
    # The sandbox keeps everything it holds across the restart.
    assert p.rt.status(cid) == "running"
    assert pid_alive(spid)
    assert p.claims() == [cid], "claim of a live sandbox dropped: %s\n%s" % (p.claims(), p.logs())
    assert cid in p.layers(), "layer of a live sandbox reclaimed\n%s" % p.logs()
    for d, names in p.groups().items():
        assert (v2_name if Poold.is_v2(d) else cid) in names, "groups of %s lost in %s" % (cid, d)
    kept = os.path.join(p.state, "layers", cid, "upper", "kept")
    assert poll_until(lambda: os.path.exists(kept), 5.0), "the workload's write is not in %s" % kept

    p.rt.ok("delete", "--force", cid)
    assert wait_gone(spid)
    assert_groups_released(p, cid, v2_name)
    assert poll_until(lambda: cid not in p.layers(), 5.0), "layer %s left: %s\n%s" % (cid, p.layers(), p.logs())
    p.stop()
    assert_all_gone(p)


def test_release_is_answered_at_once_and_done_later(poold_factory, bundle_factory):
    """release_after_ms holds a deleted sandbox's resources: the claim and
    its groups wait (status "releasing"); a run that reuses the id has them
    released first and still starts warm; a kill -9 leaves the claim to
    the next start; poold's stop does every waiting release."""
    cfg = pools(warm=(2, 3))
    cfg["release_after_ms"] = 600000
    p = poold_factory(cfg)
    p.start()
    k0 = by_kind(p.settled(full=True))
    b = bundle_factory()
    b.shell(LOOP)

    def run_and_delete(cid):
        p.rt.ok("run", "-d", "--bundle", b.path, cid)
        spid = sandbox_pid(p, cid)
        p.rt.ok("delete", "--force", cid)
        assert wait_gone(spid)
        # vmmd sends the release from a background thread
        assert poll_until(lambda: p.status().get("releasing") == 1, 5.0), (p.status(), p.logs(cid))

    cid = p.rt.new_id("later")
    run_and_delete(cid)
    time.sleep(0.2)  # ten ticks: still held
    assert p.claims() == [cid] and p.status()["releasing"] == 1, (p.claims(), p.status())
    assert any(cid in names for names in p.groups().values()), p.groups()
    assert "releasing: 1 " in p.rt.ok("pool", "status").stdout

    # the same id again: the waiting release is done first, the take is warm
    p.rt.ok("run", "-d", "--bundle", b.path, cid)
    k1 = p.pools()
    assert k1["warm"]["hits"] == k0["warm"]["hits"] + 2, (k0["warm"], k1["warm"], p.logs(cid))
    assert k1["warm"]["misses"] == k0["warm"]["misses"], (k1["warm"], p.logs(cid))
    assert p.claims() == [cid] and p.status()["releasing"] == 0, (p.claims(), p.status())
    spid = sandbox_pid(p, cid)
    p.rt.ok("delete", "--force", cid)
    assert wait_gone(spid)
    assert poll_until(lambda: p.status().get("releasing") == 1, 5.0), p.status()

    # kill -9 with the release waiting: the next start releases the claim
    # (the sandbox's directory is gone)
    p.kill9()
    p.start()
    p.settled()
    assert not p.claims(), "claim of a deleted sandbox kept: %s\n%s" % (p.claims(), p.logs())
    assert all(cid not in names for names in p.groups().values()), p.groups()

    # SIGTERM with a release waiting: done before poold exits
    cid2 = p.rt.new_id("later2")
    run_and_delete(cid2)
    p.stop()
    assert not p.claims(), "claims left by a stopped poold: %s\n%s" % (p.claims(), p.logs())
    assert all(cid2 not in names for names in p.groups().values()), p.groups()
    assert_all_gone(p)


class ConfigOpens:
    """inotify on one file (ctypes: the standard library has none): count()
    is how many times it was opened since the watch began."""
    IN_OPEN, IN_NONBLOCK, IN_CLOEXEC = 0x20, 0o4000, 0o2000000

    def __init__(self, path):
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.fd = self.libc.inotify_init1(self.IN_NONBLOCK | self.IN_CLOEXEC)
        assert self.fd >= 0, os.strerror(ctypes.get_errno())
        wd = self.libc.inotify_add_watch(self.fd, path.encode(), self.IN_OPEN)
        assert wd >= 0, os.strerror(ctypes.get_errno())
        self.opens = 0

    def count(self):
        while True:
            try:
                buf = os.read(self.fd, 4096)
            except BlockingIOError:
                return self.opens
            off = 0
            while off + 16 <= len(buf):
                _wd, mask, _cookie, nlen = struct.unpack_from("iIII", buf, off)
                self.opens += bool(mask & self.IN_OPEN)
                off += 16 + nlen

    def close(self):
        os.close(self.fd)


def test_taken_supervisor_reads_the_named_bundle_before_its_assignment(poold_factory, bundle_factory):
    """vmmd's take names the bundle; poold passes it on with "taken", and
    the warm supervisor reads the bundle's config.json at once, before any
    assignment (while vmmd records the sandbox and sends it).  A bundle that
    is not an absolute path is refused.  Release takes the unassigned
    supervisor back with its groups."""
    p = poold_factory(pools(warm=(1, 1)))
    p.start()
    p.settled(full=True)
    b = bundle_factory()
    b.shell(LOOP)
    opens = ConfigOpens(os.path.join(b.path, "config.json"))
    cid = p.rt.new_id("early")
    cl = VmmdClient(p.root, "poold.sock")
    try:
        rep = cl.call({"v": 1, "op": "take", "id": cid, "kinds": ["warm"], "bundle": "rel/bundle"})
        assert rep.get("op") == "error" and rep.get("code") == errno.EINVAL, rep
        assert "field bundle" in rep.get("msg", ""), rep
        rep = cl.call({"v": 1, "op": "take", "id": cid, "kinds": ["warm"], "bundle": b.path})
        assert rep.get("op") == "taken" and rep.get("warm"), rep
        spid = rep["warm"]["pid"]
        assert poll_until(lambda: opens.count() > 0, 5.0), ("config.json not read", p.logs())
        assert pid_alive(spid), p.logs()
        rep = cl.call({"v": 1, "op": "release", "id": cid})
        assert rep.get("op") == "ok", rep
    finally:
        cl.close()
        opens.close()
    assert wait_gone(spid), "taken supervisor %d outlived its release\n%s" % (spid, p.logs())
    assert poll_until(lambda: not p.claims(), 5.0), "claims left: %s\n%s" % (p.claims(), p.logs())


def test_api_delete_then_create_of_the_same_id_stays_warm(poold_factory, bundle_factory):
    """vmmd sends a deleted sandbox's release to poold from a background
    thread; a create of the same id right after the delete's reply waits
    for that release, so poold never sees the take before it (it would
    refuse it while the old claim exists, and the start would go cold)."""
    rounds = 10
    p = poold_factory(pools(warm=(4, rounds + 2)))
    p.start()
    k0 = by_kind(p.settled(full=True))
    b = bundle_factory()
    b.shell("exit 3")
    cid = p.rt.new_id("again")
    p.rt.ok("daemons", "start")
    cl = VmmdClient(p.root)
    sub = EventSubscriber(p.root)
    try:
        for i in range(rounds):
            rep = cl.call({"v": 1, "op": "create", "id": cid, "bundle": b.path, "start": True,
                           "transient": True})
            assert rep.get("op") == "accepted" and rep.get("path") == "warm", (i, rep, p.logs(cid))
            while True:
                ev = sub.next()
                assert ev is not None, ("no exited event", i, p.logs(cid))
                if ev.get("id") == cid and ev.get("type") in ("exited", "failed"):
                    break
            assert (ev.get("type"), ev.get("exit_code")) == ("exited", 3), (i, ev, p.logs(cid))
            rep = cl.call({"v": 1, "op": "delete", "id": cid})
            assert rep.get("op") == "ok", (i, rep)
    finally:
        sub.close()
        cl.close()
    k1 = p.pools()
    assert k1["warm"]["hits"] - k0["warm"]["hits"] == rounds, (k0["warm"], k1["warm"], p.logs())
    assert k1["warm"]["misses"] == k0["warm"]["misses"], (k1["warm"], p.logs())
    vmmd_log = read(os.path.join(p.root, "vmmd.log"))
    assert "already holds pooled resources" not in vmmd_log and "still pending" not in vmmd_log, p.logs()
    assert poll_until(lambda: not p.claims(), 5.0), "claims left: %s\n%s" % (p.claims(), p.logs())


# ---------------------------------------------------------------------------
# 8. writable layer


def test_writable_layer_keeps_the_bundle_clean(poold_factory, bundle_factory):
    p = poold_factory(pools(layer=LAYER))
    p.start()
    st = p.settled(full=True)
    if st["layer_backend"] == "off":
        pytest.skip("no layer store here: %s" % st["layer_error"])
    b = bundle_factory()
    b.writable().set("annotations", {OVERLAY: "true"})
    b.shell("echo layered > /newfile && cat /newfile")
    cid = p.rt.new_id("ly")
    r = p.rt("run", "--bundle", b.path, cid)
    assert (r.returncode, r.stdout) == (0, "layered\n"), (r, p.logs(cid))
    assert not os.path.exists(os.path.join(b.rootfs, "newfile")), "the write reached the bundle"
    assert by_kind(p.status())["layer"]["hits"] == 1

    # While it runs the write is in ROOT/poold/layers/ID/upper; after
    # delete the layer is gone.
    p.settled()
    b.shell("echo layered > /newfile2; " + LOOP)
    cid2 = p.rt.new_id("lyd")
    p.rt.ok("run", "-d", "--bundle", b.path, cid2)
    upper = os.path.join(p.state, "layers", cid2, "upper")
    assert poll_until(lambda: os.path.exists(os.path.join(upper, "newfile2")), 10.0), \
        "no /newfile2 in %s\n%s" % (upper, p.logs(cid2))
    assert read(os.path.join(upper, "newfile2")) == "layered\n"
    assert not os.path.exists(os.path.join(b.rootfs, "newfile2"))
    p.rt.ok("delete", "--force", cid2)
    assert poll_until(lambda: not os.path.exists(os.path.join(p.state, "layers", cid2)), 5.0), \
        "layer dir of %s left\n%s" % (cid2, p.logs())
    assert cid not in p.layers() and cid2 not in p.layers(), p.layers()


# ---------------------------------------------------------------------------
# 9. a mix, then stop: nothing outlives


def test_mix_then_stop_leaves_nothing(poold_factory, bundle_factory):
    p = poold_factory(pools(cgroup=(1, 3), netns=(1, 3), layer=LAYER, warm=(1, 3)))
    p.start()
    k0 = by_kind(p.settled(full=True))
    ids = []

    def bundle(script, change=None):
        b = bundle_factory()
        b.shell(script)
        if change:
            change(b)
        return b

    # warm, foreground
    cid = p.rt.new_id("mixa")
    ids.append(cid)
    r = p.rt("run", "--bundle", bundle("echo a").path, cid)
    assert (r.returncode, r.stdout) == (0, "a\n"), (r, p.logs(cid))
    # warm, detached, with a layer
    cid = p.rt.new_id("mixb")
    ids.append(cid)
    p.rt.ok("run", "-d", "--bundle", bundle(LOOP, lambda b: b.writable().set("annotations", {OVERLAY: "true"})).path,
            cid)
    # cold by request
    cid = p.rt.new_id("mixc")
    ids.append(cid)
    r = p.rt("run", "--bundle", bundle("echo c").path, cid, env=dict(os.environ, QUIVER_NO_WARM="1"))
    assert (r.returncode, r.stdout) == (0, "c\n"), (r, p.logs(cid))
    # cold: ineligible
    cid = p.rt.new_id("mixd")
    ids.append(cid)
    p.rt.ok("run", "-d", "--bundle", bundle(LOOP, without_netns).path, cid)
    # warm through the API's create
    cid = p.rt.new_id("mixe")
    ids.append(cid)
    cl = VmmdClient(p.root)
    try:
        rep = cl.call({"v": 1, "op": "create", "id": cid, "bundle": bundle(LOOP).path, "start": True})
    finally:
        cl.close()
    assert rep.get("op") == "accepted" and rep.get("path") == "warm", (rep, p.logs(cid))
    assert p.rt.wait_status(cid, "running"), (p.rt.status(cid), p.logs(cid))
    # create + start: never warm
    cid = p.rt.new_id("mixf")
    ids.append(cid)
    p.rt.ok("create", "--bundle", bundle(LOOP).path, cid)
    p.rt.ok("start", cid)

    k1 = p.pools()
    assert k1["warm"]["hits"] - k0["warm"]["hits"] == 3, (k0["warm"], k1["warm"], p.logs())
    assert k1["warm"]["misses"] == k0["warm"]["misses"], k1["warm"]
    spids = [sandbox_pid(p, c) for c in ids if p.rt.status(c) == "running"]
    assert len(spids) == 4, [(c, p.rt.status(c)) for c in ids]

    for c in ids:
        p.rt("delete", "--force", c)
    for s in spids:
        assert wait_gone(s)
    assert poll_until(lambda: not p.claims(), 5.0), "claims left: %s\n%s" % (p.claims(), p.logs())
    p.stop()
    p.rt.ok("daemons", "stop")
    assert_all_gone(p)
    leftovers = [os.path.join(d, c) for d in set(os.path.dirname(x) for x in p.parent_dirs)
                 for c in ids if os.path.exists(os.path.join(d, "quiver", c))]
    assert not leftovers, leftovers
    mine = [q for q in all_pids() if p.root in proc_cmdline(q) or any(c in proc_cmdline(q) for c in ids)]
    assert not [q for q in mine if pid_alive(q)], [(q, proc_cmdline(q)) for q in mine]


# ---------------------------------------------------------------------------
# two poolds, one cgroup parent


def test_two_poolds_keep_their_own_pools(poold_factory):
    """A second poold (another root) whose cgroup parent is the first one's
    must not destroy the first one's pooled groups and warm supervisors."""
    a = poold_factory(pools(netns=(0, 0)))
    a.start()
    ka = by_kind(a.settled(full=True))
    warm_a = set(a.pooled_warm())
    groups_a = a.pool_groups()
    b = poold_factory(dict(pools(netns=(0, 0)), cgroup_parent=a.parent), name="pool2")
    r = b.start(check=False)
    if isinstance(r, tuple):
        # refusing a parent in use is fine, if it says so
        assert a.parent in r[1], "second poold failed without naming the parent: %r" % (r,)
    else:
        b.settled(full=True)
    gone = [pid for pid in warm_a if not pid_alive(pid)]
    assert not gone, "poold b killed a's warm supervisors %s\n%s" % (gone, b.logs())
    now = a.pool_groups()
    lost = {d: sorted(names - now.get(d, set())) for d, names in groups_a.items() if names - now.get(d, set())}
    assert not lost, "poold b removed a's groups: %s" % lost
    assert by_kind(a.status())["warm"]["ready"] == ka["warm"]["ready"]


# ---------------------------------------------------------------------------
# the layer store and other mount namespaces


def test_stopped_layer_store_is_not_pinned_by_other_mount_namespaces(poold_factory):
    """Every mount namespace made while the layer store is mounted (warm
    supervisors of any poold, containers before they pivot) gets a copy of
    the store's mount; where "/" is a private mount (no propagation, as
    here), poold's unmount at stop does not reach those copies, and the XFS
    filesystem and its loop device live on until they exit."""
    a = poold_factory(pools(netns=(0, 0), layer=LAYER, warm=(0, 0)))
    a.start()
    st = a.settled(full=True)
    if st["layer_backend"] == "off":
        pytest.skip("no layer store here: %s" % st["layer_error"])
    store = os.path.join(a.state, "layers")
    # Another root's poold: its warm supervisors are cloned with the store mounted.
    b = poold_factory(pools(netns=(0, 0), warm=(1, 2)), name="other")
    b.start()
    b.settled(full=True)
    assert b.pooled_warm()
    a.stop()
    gone = poll_until(lambda: not a.loops() and not mount_holders(store), 5.0, interval=0.05)
    assert gone, "after poold's stop, its store %s is still mounted in %s; loop devices: %s" % (
        store, mount_holders(store), a.loops())



def _pty_run(argv, seconds=CMD_TIMEOUT):
    """Run argv with stderr on a pty (stdout a pipe); returns (status,
    stdout, what the pty showed)."""
    import pty
    master, slave = pty.openpty()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave)
    os.close(slave)
    shown = b""
    try:
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the last holder of the slave closed it
                break
            if not chunk:
                break
            shown += chunk
        out = proc.stdout.read()
        proc.wait(seconds)
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, out.decode(), shown.decode(errors="replace")


def test_qctl_pool_start_wait_shows_progress(poold_factory):
    """`pool start --wait` returns once the pools are ready (warm at high,
    cgroup and netns at least at low, nothing starting); on a terminal the
    progress is one line redrawn with \\r, in a log a line at most every
    second plus the final one."""
    p = poold_factory(pools(cgroup=(2, 4), netns=(1, 2), warm=(2, 3)))
    code, out, shown = _pty_run([RUNTIME_PATH, "--root", p.root, "pool", "start",
                                 "--config", p.config_path, "--wait"])
    assert code == 0, (out, shown, p.logs())
    p.pid = int(read(os.path.join(p.root, "poold.pid")).strip())
    pools_now = p.pools()
    assert pools_now["warm"]["ready"] == 3 and pools_now["warm"]["starting"] == 0, pools_now
    assert pools_now["cgroup"]["ready"] >= 2 and pools_now["netns"]["ready"] >= 1, pools_now
    assert "poold: running" in out, out
    assert shown.startswith("\rwarming pools: "), repr(shown)
    final = shown.rstrip("\r\n").split("\r")[-1]
    assert "warm 3/3" in final and "cgroup" in final and "netns" in final, repr(shown)
    assert "\n" not in shown.rstrip("\r\n"), "a terminal gets one line, redrawn: %r" % shown
    p.rt.ok("pool", "stop")
    assert wait_gone(p.pid)

    # Not a terminal: plain lines, the last one the ready state.
    r = p.rt("pool", "start", "--config", p.config_path, "--wait")
    assert r.returncode == 0, r
    p.pid = int(read(os.path.join(p.root, "poold.pid")).strip())
    lines = r.stderr.splitlines()
    assert lines and all(l.startswith("warming pools: ") for l in lines), r.stderr
    assert "\r" not in r.stderr and "warm 3/3" in lines[-1], r.stderr
    p.rt.ok("pool", "stop")
    assert wait_gone(p.pid)
    assert_all_gone(p)


def test_qctl_pool_start_wait_times_out_naming_the_pool(poold_factory):
    """A pool that cannot fill (refill rate 1/s, 50 warm guest kernels)
    makes --wait fail after --timeout, naming it; poold keeps running."""
    p = poold_factory(pools(warm=(50, 50), cgroup=(1, 60), netns=(1, 60), rate=1))
    r = p.rt("pool", "start", "--config", p.config_path, "--wait", "--timeout", "0.5")
    p.pid = int(read(os.path.join(p.root, "poold.pid")).strip())
    assert r.returncode == 1, r
    assert "pools not ready after 0.5 s: " in r.stderr and "warm " in r.stderr, r.stderr
    assert "of 50" in r.stderr.splitlines()[-1], r.stderr
    assert pid_alive(p.pid)
    p.rt.ok("pool", "stop")
    assert wait_gone(p.pid)
    assert_all_gone(p)
    r = p.rt("pool", "start", "--wait", "--timeout", "0")
    assert r.returncode == 1 and "invalid --timeout" in r.stderr, r
