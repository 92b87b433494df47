"""vmmd's /metrics: started with `qctl daemons start --metrics 127.0.0.1:0`
on a root of its own, scraped over HTTP, parsed as Prometheus text 0.0.4."""

import json
import os
import re
import urllib.request

import pytest

from conftest import LOOP, CMD_TIMEOUT, IS_QUIVER, RUNTIME_PATH, Runtime, vmmd_pid

pytestmark = pytest.mark.quiver_only

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$')
LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*(,|$)')


def parse_exposition(text):
    """{(name, frozenset(labels)): value}, checking the format as it goes:
    HELP and TYPE once per family, before its samples; no duplicate series."""
    types, helps, series = {}, {}, {}
    current = None
    assert text.endswith("\n"), "exposition must end with a newline"
    for line in text.splitlines():
        if not line.strip():
            continue
        if line.startswith("# HELP "):
            name = line.split()[2]
            assert name not in helps, "second HELP for %s" % name
            helps[name] = line
            current = name
            continue
        if line.startswith("# TYPE "):
            _, _, name, typ = line.split(None, 3)
            assert name not in types, "second TYPE for %s" % name
            assert typ in ("counter", "gauge", "histogram", "summary", "untyped"), line
            types[name] = typ
            current = name
            continue
        if line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        assert m, "not a sample line: %r" % line
        name, labels = m.group(1), {}
        if m.group(3):
            rest = m.group(3)
            while rest:
                lm = LABEL.match(rest)
                assert lm, "bad labels in %r" % line
                assert lm.group(1) not in labels, "label twice in %r" % line
                labels[lm.group(1)] = lm.group(2)
                rest = rest[lm.end():]
        family = name
        for suffix in ("_bucket", "_sum", "_count"):
            if name.endswith(suffix) and name[:-len(suffix)] in types:
                family = name[:-len(suffix)]
        assert family in types and family in helps, "sample %s before its HELP/TYPE" % name
        assert family == current, "sample %s outside its family block (%s)" % (name, current)
        key = (name, frozenset(labels.items()))
        assert key not in series, "duplicate series %r" % line
        series[key] = float(m.group(4))
    return types, series


def get(series, name, **labels):
    return series.get((name, frozenset(labels.items())))


@pytest.fixture
def mroot(private_root):
    root = private_root("metrics")
    rt = Runtime(RUNTIME_PATH, root, IS_QUIVER)
    r = rt.ok("daemons", "start", "--metrics", "127.0.0.1:0")
    with open(os.path.join(root, "vmmd.metrics")) as f:
        url = f.read().strip()
    assert re.match(r"^http://127\.0\.0\.1:\d+/metrics$", url), url
    assert url in r.stdout, r.stdout
    rt.url = url
    try:
        yield rt
    finally:
        rt.cleanup()


def scrape(rt):
    with urllib.request.urlopen(rt.url, timeout=CMD_TIMEOUT) as resp:
        assert resp.status == 200
        ctype = resp.headers.get("Content-Type", "")
        assert ctype.startswith("text/plain") and "0.0.4" in ctype, ctype
        return parse_exposition(resp.read().decode())


def make(rt, bundle_factory, script, name, start=True):
    b = bundle_factory()
    b.shell(script)
    cid = rt.new_id(name)
    rt.ok("create", "--bundle", b.path, cid)
    if start:
        rt.ok("start", cid)
    return cid


def test_metrics_families(mroot):
    types, series = scrape(mroot)
    want = {"quiver_vmmd_requests_total": "counter", "quiver_vmmd_request_errors_total": "counter",
            "quiver_sandbox_create_to_running_seconds": "histogram", "quiver_sandboxes": "gauge",
            "quiver_sandbox_syscalls_trapped_total": "counter", "quiver_syscalls_trapped_total": "counter",
            "quiver_syscalls_denied_total": "counter"}
    for name, typ in want.items():
        assert types.get(name) == typ, (name, types.get(name))
    for st in ("creating", "created", "running", "paused", "stopped"):
        assert get(series, "quiver_sandboxes", state=st) == 0, st


def test_metrics_sandboxes_by_state(mroot, bundle_factory):
    make(mroot, bundle_factory, LOOP, "mr")
    make(mroot, bundle_factory, LOOP, "mr")
    make(mroot, bundle_factory, LOOP, "mc", start=False)
    s = make(mroot, bundle_factory, "exit 0", "ms")
    assert mroot.wait_status(s, "stopped")
    p = make(mroot, bundle_factory, LOOP, "mp")
    mroot.ok("pause", p)

    listed = json.loads(mroot.ok("list", "-f", "json").stdout)
    by_state = {}
    for c in listed:
        by_state[c["status"]] = by_state.get(c["status"], 0) + 1
    assert by_state == {"running": 2, "created": 1, "stopped": 1, "paused": 1}, by_state
    _, series = scrape(mroot)
    for st in ("creating", "created", "running", "paused", "stopped"):
        assert get(series, "quiver_sandboxes", state=st) == by_state.get(st, 0), st


def test_metrics_create_to_running_histogram(mroot, bundle_factory):
    _, before = scrape(mroot)
    n0 = get(before, "quiver_sandbox_create_to_running_seconds_count")
    assert n0 == 0
    make(mroot, bundle_factory, LOOP, "h1")
    make(mroot, bundle_factory, LOOP, "h2")
    _, after = scrape(mroot)
    name = "quiver_sandbox_create_to_running_seconds"
    assert get(after, name + "_count") == n0 + 2
    assert get(after, name + "_sum") > 0
    assert get(after, name + "_bucket", le="+Inf") == get(after, name + "_count")
    buckets = sorted((float(dict(k[1])["le"]), v) for k, v in after.items() if k[0] == name + "_bucket")
    assert [v for _, v in buckets] == sorted(v for _, v in buckets), "buckets not cumulative"
    # Requests are counted by op.
    assert get(after, "quiver_vmmd_requests_total", op="start") >= 2
    assert get(after, "quiver_vmmd_requests_total", op="reserve") >= 2


def test_metrics_syscall_counters(mroot, bundle_factory):
    b = bundle_factory()
    b.shell("/bin/attack mount; /bin/attack mount; /bin/attack ptrace_traceme")
    cid = mroot.new_id("atk")
    mroot.ok("create", "--bundle", b.path, cid)
    mroot.ok("start", cid)
    assert mroot.wait_status(cid, "stopped")
    _, series = scrape(mroot)
    assert get(series, "quiver_syscalls_denied_total", syscall="mount", nr="165") == 2
    assert get(series, "quiver_syscalls_trapped_total", syscall="mount", nr="165") == 2
    assert get(series, "quiver_syscalls_denied_total", syscall="ptrace", nr="101") == 1
    assert get(series, "quiver_sandbox_syscalls_trapped_total", id=cid) >= 3
    # A deleted sandbox leaves the sums.
    mroot.ok("delete", cid)
    _, series = scrape(mroot)
    assert get(series, "quiver_syscalls_denied_total", syscall="mount", nr="165") is None
    assert get(series, "quiver_sandbox_syscalls_trapped_total", id=cid) is None


def test_metrics_errors_counted(mroot):
    _, before = scrape(mroot)
    r = mroot("state", mroot.new_id("nosuch"))
    assert r.returncode == 1
    _, after = scrape(mroot)
    e0 = get(before, "quiver_vmmd_request_errors_total", op="state") or 0
    assert get(after, "quiver_vmmd_request_errors_total", op="state") == e0 + 1


def test_metrics_not_changed_on_running_vmmd(mroot):
    pid = vmmd_pid(mroot.root)
    r = mroot("daemons", "start", "--metrics", "127.0.0.1:0")
    assert r.returncode == 1 and "already" in r.stderr and len(r.stderr.splitlines()) == 1, r.stderr
    assert vmmd_pid(mroot.root) == pid
    r = mroot.ok("daemons", "status")
    assert mroot.url in r.stdout, r.stdout
