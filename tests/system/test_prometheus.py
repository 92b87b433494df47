"""Prometheus for real: vmmd, poold and iod serve /metrics on a private root;
`promtool check metrics` must find nothing to say about any of them, and
Debian's prometheus, scraping the three every second, must report the same
number of running sandboxes and the same trapped-syscall count as qctl.

netd is not built yet (services/netd has only its README): when it is, it
joins the scrape config below as a fourth job."""

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request

import pytest

from conftest import (CMD_TIMEOUT, LIVE_POPEN, LOOP, SESSION_TAG, Runtime, RUNTIME_PATH, poll_until,
                      reap_zombies)
from test_iod import ANNOTATION, Iod
from test_netd import Netd
from test_pool import POOLD, Poold, pools

pytestmark = pytest.mark.quiver_only

PROMETHEUS = "/usr/bin/prometheus"
PROMTOOL = "/usr/bin/promtool"


def get_text(url):
    with urllib.request.urlopen(url, timeout=CMD_TIMEOUT) as resp:
        assert resp.status == 200, url
        return resp.read().decode()


def promtool_check(name, text):
    r = subprocess.run([PROMTOOL, "check", "metrics"], input=text, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, timeout=CMD_TIMEOUT)
    assert r.returncode == 0 and not r.stdout.strip(), \
        "promtool check metrics on %s's /metrics (exit %d):\n%s" % (name, r.returncode, r.stdout)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def hostport(url):
    return urllib.parse.urlsplit(url).netloc


class Prometheus:
    """Debian's prometheus on a free loopback port, its data in a temporary
    directory, scraping the given jobs ({job: "host:port"}) every second."""

    def __init__(self, workdir, jobs):
        self.dir = tempfile.mkdtemp(prefix="prom-%s-" % SESSION_TAG, dir=workdir)
        self.port = free_port()
        self.api = "http://127.0.0.1:%d/api/v1/" % self.port
        self.log = os.path.join(self.dir, "prometheus.log")
        conf = os.path.join(self.dir, "prometheus.yml")
        with open(conf, "w") as f:
            f.write("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n"
                    "scrape_configs:\n")
            for job, target in jobs.items():
                f.write("  - job_name: %s\n    static_configs:\n      - targets: ['%s']\n" % (job, target))
        self.proc = subprocess.Popen(
            [PROMETHEUS, "--config.file", conf, "--storage.tsdb.path", os.path.join(self.dir, "data"),
             "--web.listen-address", "127.0.0.1:%d" % self.port, "--log.level", "warn"],
            stdin=subprocess.DEVNULL, stdout=open(self.log, "w"), stderr=subprocess.STDOUT, cwd=self.dir)
        LIVE_POPEN.add(self.proc.pid)

    def get(self, path, **params):
        url = self.api + path + ("?" + urllib.parse.urlencode(params) if params else "")
        try:
            body = json.loads(get_text(url))
        except OSError:
            return None  # not listening yet
        assert body.get("status") == "success", body
        return body["data"]

    def query(self, expr):
        """{frozenset(labels): value} of an instant query."""
        data = self.get("query", query=expr)
        if data is None:
            return {}
        assert data["resultType"] == "vector", data
        return {frozenset(r["metric"].items()): float(r["value"][1]) for r in data["result"]}

    def one(self, expr):
        res = self.query(expr)
        assert len(res) <= 1, (expr, res)
        return next(iter(res.values())) if res else None

    def targets_up(self):
        data = self.get("targets")
        if not data:
            return {}
        return {t["labels"]["job"]: t["health"] for t in data["activeTargets"]}

    def logs(self, n=20):
        with open(self.log) as f:
            return "prometheus log:\n  " + "\n  ".join(f.read().splitlines()[-n:])

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        LIVE_POPEN.discard(self.proc.pid)
        reap_zombies()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def daemons(session, private_root):
    """vmmd, poold, iod and netd on a private root, each with --metrics 127.0.0.1:0."""
    for prog in (PROMETHEUS, PROMTOOL):
        if not os.access(prog, os.X_OK):
            pytest.fail("%s missing: `make deps` installs Debian's prometheus" % prog, pytrace=False)
    if not POOLD or not os.access(POOLD, os.X_OK):
        pytest.fail("quiver-poold is not built", pytrace=False)
    root = private_root("prom")
    rt = Runtime(RUNTIME_PATH, root, True)
    rt.ok("daemons", "start", "--metrics", "127.0.0.1:0")
    p = Poold(root, session.tmp, pools(warm=(1, 2)))
    iod = Iod(root, os.path.join(session.tmp, "iod-prom-%s.log" % SESSION_TAG))
    netd = Netd(root, os.path.join(session.tmp, "netd-prom-%s.log" % SESSION_TAG))
    try:
        p.start("--metrics", "127.0.0.1:0")
        iod.start()
        netd.start()
        with open(os.path.join(root, "vmmd.metrics")) as f:
            urls = {"vmmd": f.read().strip()}
        with open(os.path.join(root, "poold.metrics")) as f:
            urls["poold"] = f.read().strip()
        urls["iod"] = iod.url
        urls["netd"] = netd.url
        rt.urls = urls
        yield rt
    finally:
        for cid in rt("list", "-q").stdout.split():
            rt("delete", "--force", cid)
        if iod.alive():
            iod.stop()
        if netd.alive():
            netd.stop()
        netd.teardown()
        problems = p.teardown()
        assert not problems, problems


def make(rt, bundle_factory, script, name, annotations=None):
    b = bundle_factory()
    b.shell(script)
    if annotations:
        b.set("annotations", annotations)
    cid = rt.new_id(name)
    rt.ok("create", "--bundle", b.path, cid)
    rt.ok("start", cid)
    return cid


def test_prometheus_scrapes_what_qctl_reports(session, daemons, bundle_factory):
    rt = daemons
    run1 = make(rt, bundle_factory, LOOP, "pr")
    run2 = make(rt, bundle_factory, LOOP, "pr")
    atk = make(rt, bundle_factory, "/bin/attack mount; /bin/attack mount; /bin/attack ptrace_traceme", "patk")
    # Served by iod: its ops counters move.
    fio = make(rt, bundle_factory, "cat /etc/passwd >/dev/null; ls / >/dev/null; ls /etc", "pio",
               annotations={ANNOTATION: "on"})
    for cid in (atk, fio):
        assert rt.wait_status(cid, "stopped"), cid

    # What qctl says, with nothing changing any more but CPU and memory.
    listed = json.loads(rt.ok("ls", "--json").stdout)
    running = sorted(s["id"] for s in listed if s["status"] == "running")
    assert running == sorted([run1, run2]), listed
    stats = {s["id"]: s for s in json.loads(rt.ok("stats", "--json").stdout)}
    assert set(stats) == {run1, run2, atk, fio}, stats
    trapped = stats[atk]["syscalls_trapped"]
    assert trapped >= 3, stats[atk]
    inspected = json.loads(rt.ok("inspect", atk).stdout)
    assert trapped == sum(s["trapped"] for s in inspected["syscalls"]), inspected["syscalls"]
    t0 = time.time()

    # Every daemon's exposition passes promtool's checks and lint.
    iod_ops = None
    for name, url in rt.urls.items():
        text = get_text(url)
        promtool_check(name, text)
        if name == "iod":
            iod_ops = sum(float(l.split()[-1]) for l in text.splitlines()
                          if l.startswith("quiver_iod_ops_total{"))
    assert iod_ops and iod_ops > 0, "iod served nothing for the sandbox with %s" % ANNOTATION

    prom = Prometheus(session.tmp, {"quiver-" + n: hostport(u) for n, u in rt.urls.items()})
    try:
        want = {"quiver-vmmd", "quiver-poold", "quiver-iod", "quiver-netd"}
        up = poll_until(lambda: prom.proc.poll() is None and prom.targets_up() == dict.fromkeys(want, "up"),
                        30, 0.2)
        assert up, "targets %s; %s" % (prom.targets_up(), prom.logs())

        # Once every series comes from a scrape taken after qctl's numbers
        # (timestamp() is a sample's scrape time), they must be equal.
        series = ['quiver_sandboxes{state="running"}',
                  'quiver_sandbox_syscalls_trapped_total{id="%s"}' % atk,
                  "quiver_iod_ops_total", 'quiver_pool_ready{pool="warm"}']

        def fresh():
            ts = [prom.one("min(timestamp(%s))" % s) for s in series]
            return all(t is not None and t > t0 for t in ts)

        assert poll_until(fresh, 30, 0.2), "no scrape after qctl's numbers: %s; %s" % (
            {s: prom.query("timestamp(%s)" % s) for s in series}, prom.logs())
        assert prom.one(series[0]) == len(running)
        assert prom.one(series[1]) == trapped
        assert prom.one("sum(quiver_iod_ops_total)") == iod_ops
        assert prom.one(series[3]) is not None
        # Per-sandbox usage reaches Prometheus too.
        assert prom.one('quiver_sandbox_pids{id="%s"}' % run1) >= 1
        assert prom.one('quiver_sandbox_memory_working_set_bytes{id="%s"}' % run1) > 0
        for job in want:
            assert prom.one('up{job="%s"}' % job) == 1, job
    finally:
        prom.stop()
