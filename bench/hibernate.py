#!/usr/bin/python3
"""Hibernation (issue 7): a function sandbox's cold start, keep-warm and
wake from hibernation, latency to the first response and resident memory.

The function: Debian's python3 (the host's /usr bind-mounted read-only, as
bench/iod.py does) running a small HTTP handler (http.server) that has
imported a realistic set of libraries (json, email, http.server/client,
asyncio, ssl, decimal, sqlite3, xml, urllib, logging, zipfile/tarfile/
lzma, unittest, multiprocessing, ...) and holds a little state (an
in-memory sqlite table and a dict cache, 10000 rows each): about 25 MiB
resident.  Each GET answers a query on the table as JSON.

Where it listens: by default a unix socket in a host directory
bind-mounted into the sandbox (/run/fn/http.sock), HTTP/1.0 over it, for
every runtime alike: the client needs nothing from the runtime to reach the
function (no pid to look up for `nsenter --net=/proc/PID/ns/net`, which
would put a `state` call inside the timed cold path, different for each
runtime), so it can poll connect() from the instant the action starts, and
the sandbox keeps its own network namespace.  With --published, qctl's
function runs in netd's bridge mode instead and listens on TCP 8080,
published on the host's port 18080 (a netd on its own bridge and subnet,
torn down at the end); the client connects to the bridge's host address,
through the kernel's DNAT, as a platform's front end would.  crun and runc
keep the unix socket (they have no published ports of their own).

Per round (interleaved: qctl, crun, runc, qctl, ...; --rounds, one
unrecorded warm-up round first, a quiet-machine wait before each round):
 (a) cold: `run -d` of the bundle is forked and, from the same instant,
     the client polls connect() every 1 ms, then sends GET and reads the
     whole response: time to first response.
 (b) keep-warm: after --settle s idle, resident memory (the memory
     cgroup's memory.usage_in_bytes, memory.stat rss/cache/swap, and the
     PSS of every process in that cgroup from /proc/PID/smaps_rollup),
     then one request: first response of an already running sandbox.
 (c) hibernated (Quiver only): `qctl hibernate ID` (it waits until the
     memory is out; its wall time and vmmd's "hibernated in" are
     reported; --no-auto-wake, so that the connection below does not wake
     it first), --settle s, the same memory figures (and SwapPss, and
     inspect's swapped_bytes/resident_bytes), then `qctl wake ID` is
     (--no-prefetch) forked and, from the same instant, the client connects and sends its
     request (a frozen listener's backlog accepts the connection): time
     to the response.  `qctl wake` is spawned ahead, blocked in a shell's
     read, and released at that instant (Runtime.armed): the time counts
     its exec and its work, not the fork of a process by this script.  The wake command's own wall time and the memory
     right after the response (pages come back on demand) are reported.
 (d) after at least 1.5 s (vmmd records the pages touched in the second
     after a wake: the working set), hibernate again and wake with
     `qctl wake --prefetch`, which reads that working set back before the
     thaw (docs/hibernate.md): time to the response, as in (c).
 (e) after at least 1.5 s, hibernate again and only connect: vmmd watches
     a hibernated sandbox's listening sockets and wakes it for the
     connection, with prefetch (the bundle's io.quiver.wake-prefetch is
     "on", which is why (c) says --no-prefetch): time to the response.
     This is the platform's path: no wake command at all.
 Then kill and delete.

Quiver runs with a poold on its root whose only job is the swap area
(`"swap": {"mib": N}`, every pool's high 0, QUIVER_NO_WARM=1), so the cold
start is the cold path.  crun runs through its unshare wrapper (startup.py);
runc as installed.  The page cache holding python3 and its libraries is
warm in every case (the host's own /usr, used every round); caches are not
dropped.

    sudo /usr/bin/python3 bench/hibernate.py [--rounds 5] [--bin build/bin]
        [--only qctl,crun,runc] [--plot docs/hibernate.png] [--json-out F]
        [--swap-mib 512] [--settle 2] [--idle 85] [--quiet-wait 120] [--published]
    /usr/bin/python3 bench/hibernate.py --from-json F [--plot P]   (report and plot again)

Goals (after Quark): wake to first response <= 0.1 x cold start, memory
while hibernated <= 0.2 x keep-warm.
"""

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "tests", "system"))
from startup import CRUN_WRAPPER, cpu_times, idle_share, wait_quiet  # noqa: E402
from iod import find_bindir, host_mounts  # noqa: E402
from conftest import default_config  # noqa: E402  (the system tests' config.json)

# --published: netd's bridge, subnet and the host port of the function
PUB_BRIDGE = "qvhib0"
PUB_SUBNET = "10.216.0.0/24"
PUB_GATEWAY = "10.216.0.1"
PUB_PORT = 18080
GOAL_WAKE = 0.1
GOAL_MEM = 0.2
SOCK_IN = "/run/fn/http.sock"
REQUEST = b"GET /items HTTP/1.0\r\nHost: fn\r\n\r\n"
ENV = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm",
       "PYTHONDONTWRITEBYTECODE=1", "LANG=C.UTF-8"]

APP = r'''
import os, sys, time
t0 = time.monotonic()
import json, email, email.mime.multipart, email.mime.text, email.policy, http.server, http.client
import socketserver, asyncio, ssl, decimal, sqlite3, xml.etree.ElementTree, xml.dom.minidom
import urllib.request, urllib.parse, logging, logging.handlers, csv, zipfile, tarfile, gzip, bz2, lzma
import hashlib, hmac, uuid, datetime, zoneinfo, statistics, fractions, random, re, argparse, unittest
import concurrent.futures, multiprocessing, html.parser, base64, pickle, pprint, textwrap, string
import collections, dataclasses, typing, inspect, ast, tomllib, configparser, shutil, tempfile, glob
import fnmatch, difflib, heapq, bisect, ipaddress, mimetypes

db = sqlite3.connect(":memory:", check_same_thread=False)
db.execute("create table items(id integer primary key, name text, price text)")
db.executemany("insert into items(name, price) values (?, ?)",
               [("item%d" % i, str(decimal.Decimal(i) / 7)) for i in range(10000)])
cache = {i: {"id": i, "name": "item%d" % i, "tags": ["a", "b", "c"]} for i in range(10000)}
tls = ssl.create_default_context()


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        rows = db.execute("select id, name, price from items where id % 997 = 1").fetchall()
        body = json.dumps({"rows": rows, "cached": len(cache)}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def address_string(self):
        return "unix"

    def log_message(self, *a):
        pass


path = sys.argv[1]
if path.startswith("tcp:"):  # --published: a port netd publishes on the host
    socketserver.TCPServer.allow_reuse_address = True
    srv = socketserver.TCPServer(("0.0.0.0", int(path[4:])), Handler)  # bound and listening
else:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    srv = socketserver.UnixStreamServer(path + ".new", Handler)  # bound and listening
    os.rename(path + ".new", path)  # the client connects only once it can be answered
print("ready after %.1f ms of imports and setup" % ((time.monotonic() - t0) * 1e3), file=sys.stderr, flush=True)
srv.serve_forever()
'''


class BenchError(Exception):
    pass


def now():
    return time.perf_counter()


def request(path, deadline, poll=0.001):
    """Connect (retrying until deadline), GET, read to EOF; the response.
    path: a unix socket's path, or (host, port) of a published port."""
    while True:
        s = socket.socket(socket.AF_INET if isinstance(path, tuple) else socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(path)
            break
        except (FileNotFoundError, ConnectionRefusedError, ConnectionResetError):
            s.close()
            if now() > deadline:
                raise BenchError("no function listening on %s" % path)
            time.sleep(poll)
    try:
        s.settimeout(max(0.1, deadline - now()))
        s.sendall(REQUEST)
        data = b""
        while True:
            b = s.recv(65536)
            if not b:
                break
            data += b
    finally:
        s.close()
    if not data.startswith(b"HTTP/1.0 200"):
        raise BenchError("bad response: %r" % data[:100])
    return data


# ---- memory ----

def read_int(p):
    with open(p) as f:
        return int(f.read().split()[0])


def memstat(cg):
    out = {}
    with open(os.path.join(cg, "memory.stat")) as f:
        for line in f:
            k, v = line.split()
            out[k] = int(v)
    return out


def smaps(pid):
    out = {}
    try:
        with open("/proc/%d/smaps_rollup" % pid) as f:
            for line in f:
                m = re.match(r"(\w+):\s+(\d+) kB", line)
                if m:
                    out[m.group(1)] = int(m.group(2)) * 1024
    except OSError:
        pass
    return out


def memory(cg):
    """The memory cgroup's usage and stat, and the PSS of its processes."""
    st = memstat(cg)
    with open(os.path.join(cg, "cgroup.procs")) as f:
        pids = [int(x) for x in f.read().split()]
    pss = pss_anon = pss_file = swappss = 0
    for p in pids:
        sm = smaps(p)
        pss += sm.get("Pss", 0)
        pss_anon += sm.get("Pss_Anon", 0)
        pss_file += sm.get("Pss_File", 0)
        swappss += sm.get("SwapPss", 0)
    return {"usage": read_int(os.path.join(cg, "memory.usage_in_bytes")),
            "rss": st.get("rss", 0), "cache": st.get("cache", 0), "swap": st.get("swap", 0),
            "pgmajfault": st.get("pgmajfault", 0),
            "pss": pss, "pss_anon": pss_anon, "pss_file": pss_file, "swappss": swappss,
            "procs": len(pids)}


def memcg_of_pid(pid):
    with open("/proc/%d/cgroup" % pid) as f:
        for line in f:
            _, ctrls, path = line.rstrip("\n").split(":", 2)
            if "memory" in ctrls.split(","):
                cg = "/sys/fs/cgroup/memory" + path
                if os.path.isdir(cg):
                    return cg
    raise BenchError("no memory cgroup found for pid %d" % pid)


# ---- bundle ----

def make_bundle(tmp):
    rootfs = os.path.join(tmp, "rootfs")
    for d in ("proc", "sys", "dev", "tmp", "etc", "srv", "run/fn"):
        os.makedirs(os.path.join(rootfs, d))
    mounts = host_mounts(rootfs)
    with open(os.path.join(rootfs, "srv", "app.py"), "w") as f:
        f.write(APP)
    with open(os.path.join(rootfs, "etc", "passwd"), "w") as f:
        f.write("root:x:0:0:root:/root:/bin/sh\n")
    sockdir = os.path.join(tmp, "sock")
    os.makedirs(sockdir)
    mounts += [{"destination": "/run/fn", "type": "bind", "source": sockdir,
                "options": ["rbind", "rw", "nosuid", "nodev", "noexec"]},
               {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
                "options": ["nosuid", "nodev", "mode=1777", "size=16m"]}]
    bundle = os.path.join(tmp, "bundle")
    os.makedirs(bundle)
    cfg = default_config(["/usr/bin/python3", "/srv/app.py", SOCK_IN])
    cfg["root"] = {"path": rootfs, "readonly": True}
    cfg["process"]["env"] = list(ENV)
    # (e) wakes by connection, with prefetch; (c) says --no-prefetch.
    cfg["annotations"] = {"io.quiver.wake-prefetch": "on"}
    cfg["mounts"] = cfg["mounts"] + mounts
    with open(os.path.join(bundle, "config.json"), "w") as f:
        json.dump(cfg, f, indent=1)
    return bundle, os.path.join(sockdir, "http.sock")


def published_bundle(tmp, bundle, hport):
    """The same function in netd's bridge mode, listening on TCP 8080,
    published on the host's port hport (--published, qctl only)."""
    with open(os.path.join(bundle, "config.json")) as f:
        cfg = json.load(f)
    cfg["process"]["args"][-1] = "tcp:8080"
    cfg["annotations"].update({"io.quiver.net": "bridge", "io.quiver.net.ports": "%d:8080" % hport})
    pub = os.path.join(tmp, "bundle-published")
    os.makedirs(pub)
    with open(os.path.join(pub, "config.json"), "w") as f:
        json.dump(cfg, f, indent=1)
    return pub


# ---- runtimes ----

class Runtime:
    def __init__(self, name, prefix, root, tmp, env=None):
        self.name, self.prefix, self.root, self.env = name, prefix, root, env
        self.log = os.path.join(tmp, "%s.log" % name)
        self.n = 0
        self.live = set()

    def cmd(self, *a, check=True, timeout=120):
        r = subprocess.run(self.prefix + ["--root", self.root] + list(a), stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=self.env,
                           timeout=timeout)
        if check and r.returncode != 0:
            raise BenchError("%s %s: exit %d: %s" % (self.name, " ".join(a), r.returncode, r.stderr.strip()[-400:]))
        return r

    def popen(self, *a):
        # The detached workload inherits stdout/stderr: a file, never a pipe.
        logf = open(self.log, "a")
        p = subprocess.Popen(self.prefix + ["--root", self.root] + list(a), stdin=subprocess.DEVNULL,
                             stdout=logf, stderr=logf, env=self.env)
        logf.close()
        return p

    def armed(self, *a):
        """The command, spawned now but exec'd only when fire() writes to
        it: what runs from fire() on is the exec of qctl and its work, as
        for a platform agent that is already running (Python's fork of a
        process here costs several ms of its own)."""
        logf = open(self.log, "a")
        argv = self.prefix + ["--root", self.root] + list(a)
        p = subprocess.Popen(["/bin/sh", "-c", 'read _ && exec "$@"', "sh"] + argv,
                             stdin=subprocess.PIPE, stdout=logf, stderr=logf, env=self.env)
        logf.close()
        time.sleep(0.05)  # the shell is in read(2)
        return p

    @staticmethod
    def fire(p):
        p.stdin.write(b"\n")
        p.stdin.flush()
        p.stdin.close()

    def pid(self, cid):
        return json.loads(self.cmd("state", cid).stdout)["pid"]

    def memcg(self, cid):
        return memcg_of_pid(self.pid(cid))

    def remove(self, cid):
        self.cmd("kill", cid, "KILL", check=False)
        for _ in range(50):
            if self.cmd("delete", "--force", cid, check=False).returncode == 0:
                break
            time.sleep(0.1)
        self.live.discard(cid)

    def leftovers(self):
        r = self.cmd("list", "-q", check=False)
        return r.stdout.split() if r.returncode == 0 else []


class Quiver(Runtime):
    def memcg(self, cid):
        j = json.loads(self.cmd("inspect", cid).stdout)
        for c in j["cgroups"]:
            if "/memory/" in c and os.path.exists(os.path.join(c, "memory.usage_in_bytes")):
                return c
        raise BenchError("%s: no memory cgroup in inspect" % cid)


def vmmd_hibernated_ms(root, cid, what="hibernated"):
    """vmmd's own "hibernated in X ms" (or "woken (...) in X ms") for cid
    (the last one)."""
    ms = None
    pat = r"info: (\S+): hibernated in ([\d.]+) ms" if what == "hibernated" else \
        r"info: (\S+): woken \([a-z]+\) in ([\d.]+) ms"
    try:
        with open(os.path.join(root, "vmmd.log"), errors="replace") as f:
            for line in f:
                m = re.search(pat, line)
                if m and m.group(1) == cid:
                    ms = float(m.group(2))
    except OSError:
        pass
    return ms


def count_woken(root, cid, why="connection"):
    """How many times vmmd logged cid "woken (why)"."""
    try:
        with open(os.path.join(root, "vmmd.log"), errors="replace") as f:
            return f.read().count("info: %s: woken (%s) in" % (cid, why))
    except OSError:
        return 0


def one_round(rt, args, tag):
    rt.n += 1
    cid = "%s-%s-%d" % (tag, rt.name, rt.n)
    bundle, sock = rt.bundle, rt.target
    res = {}
    if not isinstance(sock, tuple):
        try:
            os.unlink(sock)
        except FileNotFoundError:
            pass
    # (a) cold start to first response
    t0 = now()
    p = rt.popen("run", "-d", "--bundle", bundle, cid)
    rt.live.add(cid)
    request(sock, t0 + 30)
    res["cold_s"] = now() - t0
    if p.wait(30) != 0:
        raise BenchError("%s run -d %s: exit %d (see %s)" % (rt.name, cid, p.returncode, rt.log))
    cg = rt.memcg(cid)
    # (b) keep-warm
    time.sleep(args.settle)
    res["warm_mem"] = memory(cg)
    t0 = now()
    request(sock, t0 + 10)
    res["warm_s"] = now() - t0
    if isinstance(rt, Quiver):
        # (c) hibernate, then wake
        # (c) and (d) measure the wake command: the connection must not
        # wake it first.
        t0 = now()
        rt.cmd("hibernate", "--no-auto-wake", cid)
        res["hibernate_s"] = now() - t0
        res["hibernate_vmmd_ms"] = vmmd_hibernated_ms(rt.root, cid)
        h = json.loads(rt.cmd("inspect", cid).stdout)["hibernation"] or {}
        if h.get("state") != "hibernated":
            raise BenchError("%s: inspect says %r after hibernate" % (cid, h))
        res["inspect"] = {"swapped_bytes": h.get("swapped_bytes"), "resident_bytes": h.get("resident_bytes")}
        time.sleep(args.settle)
        res["hib_mem"] = memory(cg)
        exited = []
        w = rt.armed("wake", "--no-prefetch", cid)
        t0 = now()
        rt.fire(w)
        waiter = threading.Thread(target=lambda: (w.wait(30), exited.append(now())))
        waiter.start()
        request(sock, t0 + 30)
        res["wake_s"] = now() - t0
        waiter.join(30)
        if w.returncode != 0:
            raise BenchError("qctl wake %s: exit %s" % (cid, w.returncode))
        res["wake_cmd_s"] = exited[0] - t0  # release to exit of `qctl wake`
        res["wake_vmmd_ms"] = vmmd_hibernated_ms(rt.root, cid, "woken")
        res["after_wake_mem"] = memory(cg)
        res["wake_majflt"] = res["after_wake_mem"]["pgmajfault"] - res["hib_mem"]["pgmajfault"]
        t0 = now()
        request(sock, t0 + 10)
        res["second_s"] = now() - t0
        # (d) again, waking with prefetch: vmmd recorded the pages touched
        # in the second after the wake above (its working set)
        time.sleep(max(args.settle, 1.5))
        rt.cmd("hibernate", "--no-auto-wake", cid)
        time.sleep(args.settle)
        before = memory(cg)
        w = rt.armed("wake", "--prefetch", cid)
        t0 = now()
        rt.fire(w)
        request(sock, t0 + 30)
        res["wake_prefetch_s"] = now() - t0
        if w.wait(30) != 0:
            raise BenchError("qctl wake --prefetch %s: exit %s" % (cid, w.returncode))
        res["wake_prefetch_majflt"] = memory(cg)["pgmajfault"] - before["pgmajfault"]
        # (e) again, woken by the connection itself (vmmd watches a
        # hibernated sandbox's listeners), with prefetch by the annotation
        time.sleep(max(args.settle, 1.5))
        rt.cmd("hibernate", cid)
        time.sleep(args.settle)
        before = memory(cg)
        woken = count_woken(rt.root, cid)
        t0 = now()
        request(sock, t0 + 30)
        res["autowake_s"] = now() - t0
        if count_woken(rt.root, cid, "connection") != woken + 1:
            raise BenchError("%s: not woken by the connection (see %s/vmmd.log)" % (cid, rt.root))
        res["autowake_majflt"] = memory(cg)["pgmajfault"] - before["pgmajfault"]
    rt.remove(cid)
    return res


# ---- report ----

def mib(b):
    return b / 1048576.0


def mmm(xs, scale=1.0, fmt="%.1f"):
    xs = [x * scale for x in xs if x is not None]
    if not xs:
        return "– | – | –"
    return " | ".join(fmt % v for v in (min(xs), statistics.median(xs), max(xs)))


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def report(args, rts, results, meta):
    q = results.get("qctl", [])
    print("\n# %s, `%s`" % (meta["date"], meta["command"]))
    print("%d interleaved rounds (+1 warm-up), idle before rounds: min %.1f%% / median %.1f%%; "
          "during the rounds %.1f%% (per round: %s); %.0f s in all\n"
          % (args.rounds, min(meta["idle_before"]), statistics.median(meta["idle_before"]),
             meta["idle_during"], " ".join("%.0f%%" % x for x in meta.get("idle_rounds", [])),
             meta["seconds"]))
    print("| first response (ms) | min | median | max | / qctl cold (median of per-round ratios) |")
    print("|---|---|---|---|---|")
    qcold = [r["cold_s"] for r in q]

    def ratio(xs):
        if not qcold or len(xs) != len(qcold):
            return "–"
        return "%.3f" % statistics.median([a / b for a, b in zip(xs, qcold)])
    for rt in rts:
        rs = results[rt.name]
        print("| (a) cold start, %s `run -d` | %s | %s |" % (rt.name, mmm([r["cold_s"] for r in rs], 1e3),
                                                        ratio([r["cold_s"] for r in rs])))
    for rt in rts:
        rs = results[rt.name]
        print("| (b) keep-warm, %s | %s | %s |" % (rt.name, mmm([r["warm_s"] for r in rs], 1e3, "%.2f"),
                                                 ratio([r["warm_s"] for r in rs])))
    if q:
        print("| (c) wake to first response, qctl | %s | **%s** |" % (mmm([r["wake_s"] for r in q], 1e3),
                                                               ratio([r["wake_s"] for r in q])))
        if all("wake_prefetch_s" in r for r in q):
            print("| (d) wake with prefetch (`qctl wake --prefetch`) to first response, qctl | %s | **%s** |"
                  % (mmm([r["wake_prefetch_s"] for r in q], 1e3), ratio([r["wake_prefetch_s"] for r in q])))
            print("| major faults from wake --prefetch to first response | %s | |"
                  % mmm([r["wake_prefetch_majflt"] for r in q], 1.0, "%.0f"))
        if all("autowake_s" in r for r in q):
            print("| (e) woken by the connection itself (with prefetch) to first response, qctl | %s | **%s** |"
                  % (mmm([r["autowake_s"] for r in q], 1e3), ratio([r["autowake_s"] for r in q])))
            print("| major faults from connection to first response | %s | |"
                  % mmm([r["autowake_majflt"] for r in q], 1.0, "%.0f"))
        print("| `qctl wake` command alone (release to exit: exec, connect, thaw) | %s | |"
              % mmm([r["wake_cmd_s"] for r in q], 1e3))
        print("| major faults from wake to first response (memcg pgmajfault) | %s | |"
              % mmm([r["wake_majflt"] for r in q], 1.0, "%.0f"))
        print("| second request after wake | %s | |" % mmm([r["second_s"] for r in q], 1e3, "%.2f"))
        if all(r.get("wake_vmmd_ms") is not None for r in q):
            print("| vmmd: woken in (thaw, record) | %s | |" % mmm([r["wake_vmmd_ms"] for r in q], 1.0))
        print("| `qctl hibernate` (wall, until hibernated) | %s | |" % mmm([r["hibernate_s"] for r in q], 1e3))
        print("| vmmd: hibernated in (freeze + force_empty) | %s | |"
              % mmm([r["hibernate_vmmd_ms"] for r in q], 1.0))
    print()
    print("| resident memory (MiB) | memcg usage min | median | max | rss | cache | swap "
          "| PSS of its processes | PSS anon | PSS file | SwapPss | procs |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")

    def memrow(label, ms):
        print("| %s | %s | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %d |"
              % (label, mmm([m["usage"] for m in ms], 1 / 1048576.0),
                 mib(med([m["rss"] for m in ms])), mib(med([m["cache"] for m in ms])),
                 mib(med([m["swap"] for m in ms])), mib(med([m["pss"] for m in ms])),
                 mib(med([m["pss_anon"] for m in ms])), mib(med([m["pss_file"] for m in ms])),
                 mib(med([m["swappss"] for m in ms])), ms[0]["procs"]))
    for rt in rts:
        memrow("(b) keep-warm, %s" % rt.name, [r["warm_mem"] for r in results[rt.name]])
    if q:
        memrow("(c) hibernated, qctl", [r["hib_mem"] for r in q])
        memrow("right after wake + 1st response, qctl", [r["after_wake_mem"] for r in q])
        print("\ninspect while hibernated: swapped_bytes median %.1f MiB, resident_bytes median %.2f MiB"
              % (mib(med([r["inspect"]["swapped_bytes"] for r in q])),
                 mib(med([r["inspect"]["resident_bytes"] for r in q]))))
        wake_r = statistics.median([r["wake_s"] / r["cold_s"] for r in q])
        mem_r = statistics.median([r["hib_mem"]["usage"] / r["warm_mem"]["usage"] for r in q])
        pss_r = statistics.median([r["hib_mem"]["pss"] / r["warm_mem"]["pss"] for r in q])
        anon_r = statistics.median([r["hib_mem"]["pss_anon"] / r["warm_mem"]["pss_anon"] for r in q])
        print("\ngoal wake-to-first-response <= %.1f x cold start: %s (%.3f, median of per-round ratios)"
              % (GOAL_WAKE, "met" if wake_r <= GOAL_WAKE else "**NOT met**", wake_r))
        if all("wake_prefetch_s" in r for r in q):
            pre_r = statistics.median([r["wake_prefetch_s"] / r["cold_s"] for r in q])
            print("  with prefetch of the working set: %s (%.3f)"
                  % ("met" if pre_r <= GOAL_WAKE else "**NOT met**", pre_r))
        if all("autowake_s" in r for r in q):
            auto_r = statistics.median([r["autowake_s"] / r["cold_s"] for r in q])
            print("  woken by the connection, with prefetch (no wake command): %s (%.3f)"
                  % ("met" if auto_r <= GOAL_WAKE else "**NOT met**", auto_r))
        print("goal memory hibernated <= %.1f x keep-warm (memcg usage): %s (%.3f); by PSS: %s (%.3f)"
              % (GOAL_MEM, "met" if mem_r <= GOAL_MEM else "**NOT met**", mem_r,
                 "met" if pss_r <= GOAL_MEM else "**NOT met**", pss_r))
        print("  (PSS counts the host's page cache of python3 and its libraries that the frozen "
              "process still maps: charged to the host, not to the sandbox; PSS anon alone: %.3f)" % anon_r)
        for peer in ("crun", "runc"):
            if peer in results and results[peer]:
                rr = statistics.median([a["cold_s"] / b["cold_s"] for a, b in zip(q, results[peer])])
                print("qctl cold / %s cold: %.2f; qctl wake / %s cold: %.3f"
                      % (peer, rr, peer, statistics.median([a["wake_s"] / b["cold_s"]
                                                           for a, b in zip(q, results[peer])])))
    expect = 100.0 - 100.0 / (os.cpu_count() or 1)
    if meta["idle_during"] < expect - 15.0:
        print("warning: the machine was busy during the run (%.1f%% idle); repeat it" % meta["idle_during"])


def goal_line(y, text):
    """A dashed horizontal line, titled in the key."""
    return ", \\\n     %g with lines dt 2 lw 1.5 lc rgb '#aa3333' title '%s'" % (y, text)


def plot(path, rts, results):
    if not shutil.which("gnuplot"):
        print("no gnuplot: no plot (apt-get install gnuplot-nox)", file=sys.stderr)
        return
    q = results.get("qctl", [])
    lat, mem = [], []
    for rt in rts:
        rs = results[rt.name]
        xs = [r["cold_s"] * 1e3 for r in rs]
        lat.append(("(a) cold\\n%s" % rt.name, xs))
    if q:
        lat.append(("(b) keep-warm\\nqctl", [r["warm_s"] * 1e3 for r in q]))
        lat.append(("(c) wake\\nqctl", [r["wake_s"] * 1e3 for r in q]))
        if all("wake_prefetch_s" in r for r in q):
            lat.append(("(d) wake\\n+prefetch", [r["wake_prefetch_s"] * 1e3 for r in q]))
        if all("autowake_s" in r for r in q):
            lat.append(("(e) by conn.\\n+prefetch", [r["autowake_s"] * 1e3 for r in q]))
        lat.append(("(c) wake\\ncmd only", [r["wake_cmd_s"] * 1e3 for r in q]))
    for rt in rts:
        mem.append(("(b) keep-warm\\n%s" % rt.name, [mib(r["warm_mem"]["usage"]) for r in results[rt.name]],
                    [mib(r["warm_mem"]["pss"]) for r in results[rt.name]]))
    if q:
        mem.append(("(c) hibernated\\nqctl", [mib(r["hib_mem"]["usage"]) for r in q],
                    [mib(r["hib_mem"]["pss"]) for r in q]))
    with tempfile.TemporaryDirectory() as d:
        with open(os.path.join(d, "lat.dat"), "w") as f:
            for i, (label, xs) in enumerate(lat):
                f.write('%d "%s" %.3f %.3f %.3f\n' % (i, label, statistics.median(xs), min(xs), max(xs)))
        with open(os.path.join(d, "mem.dat"), "w") as f:
            for i, (label, us, ps) in enumerate(mem):
                f.write('%d "%s" %.3f %.3f %.3f %.3f\n' % (i, label, statistics.median(us), min(us), max(us),
                                                          statistics.median(ps)))
        script = """
set terminal pngcairo size 1500,560 font 'DejaVu Sans,10' noenhanced
set bmargin 4
set output '%(out)s'
set multiplot layout 1,2 title 'Function sandbox (python3 http.server, ~25 MiB): cold start, keep-warm, hibernated (medians, bars: min..max)'
set style fill solid 0.6 border -1
set boxwidth 0.6
set grid ytics
set xtics scale 0
set key top right
set title 'time to first response (ms, log scale)'
set logscale y
set yrange [0.5:%(ltop)g]
set xrange [-0.6:%(nl)d-0.4]
plot '%(d)s/lat.dat' using 1:3:xtic(2) with boxes lc rgb '#4477aa' notitle, \\
     '' using 1:3:4:5 with yerrorbars lc rgb 'black' lw 1.5 pt 7 ps 0.4 notitle, \\
     '' using 1:($5*1.3):(sprintf('%%.1f', $3)) with labels notitle%(lat_goal)s
unset logscale y
set title 'resident memory (MiB)'
set yrange [0:%(mtop).0f]
set key top right opaque
set xrange [-0.6:%(nm)d-0.4]
set boxwidth 0.35
plot '%(d)s/mem.dat' using ($1-0.18):3:xtic(2) with boxes lc rgb '#66aa55' title 'memory cgroup usage', \\
     '' using ($1-0.18):3:4:5 with yerrorbars lc rgb 'black' lw 1.5 pt 7 ps 0.4 notitle, \\
     '' using ($1+0.18):6 with boxes lc rgb '#cc6677' title 'PSS of its processes', \\
     '' using ($1-0.18):($3+1.2):(sprintf('%%.1f', $3)) with labels notitle, \\
     '' using ($1+0.18):($6+1.2):(sprintf('%%.1f', $6)) with labels notitle%(mem_goal)s
unset multiplot
""" % {"out": path, "d": d, "nl": len(lat), "nm": len(mem),
               "ltop": 4 * max(max(xs) for _, xs in lat),
               "mtop": 1.3 * max(max(u + p) for _, u, p in mem) + 3,
               "lat_goal": goal_line(GOAL_WAKE * statistics.median([r["cold_s"] * 1e3 for r in q]),
                                     "goal: %.1f x qctl cold" % GOAL_WAKE) if q else "",
               "mem_goal": goal_line(GOAL_MEM * statistics.median([mib(r["warm_mem"]["usage"]) for r in q]),
                                     "goal: %.1f x qctl keep-warm (memcg)" % GOAL_MEM) if q else ""}
        r = subprocess.run(["gnuplot"], input=script, text=True, stderr=subprocess.PIPE)
        if r.returncode != 0:
            print("gnuplot failed: %s" % r.stderr, file=sys.stderr)
        else:
            print("plot: %s" % path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--bin", default=None, help="directory with qctl, quiver-vmmd, ... (default: newest build*/bin)")
    ap.add_argument("--only", default="qctl,crun,runc")
    ap.add_argument("--published", action="store_true",
                    help="qctl's function in netd's bridge mode on a published port (crun and runc keep "
                         "the unix socket)")
    ap.add_argument("--plot", default=None, help="PNG to write with gnuplot")
    ap.add_argument("--json-out", default=None)
    ap.add_argument("--from-json", default=None, help="no run: print the report and plot of a --json-out file")
    ap.add_argument("--swap-mib", type=int, default=512)
    ap.add_argument("--settle", type=float, default=2.0, help="idle seconds before each memory reading")
    ap.add_argument("--idle", type=float, default=85.0)
    ap.add_argument("--quiet-wait", type=float, default=120.0,
                    help="seconds to wait for --idle before a round, then measure anyway")
    args = ap.parse_args()
    if args.from_json:
        with open(args.from_json) as f:
            saved = json.load(f)
        rts = [Runtime(n, [], "", "") for n in saved["results"]]
        args.rounds = len(next(iter(saved["results"].values())))
        report(args, rts, saved["results"], saved["meta"])
        if args.plot:
            plot(args.plot, rts, saved["results"])
        return 0
    if os.geteuid() != 0:
        raise SystemExit("run as root")
    want = args.only.split(",")
    bindir = find_bindir(args.bin)
    if "qctl" in want and not bindir:
        raise SystemExit("no build*/bin with qctl, quiver-guest, quiver-vmmd: make first, or --bin")

    t_start = time.monotonic()
    tmp = tempfile.mkdtemp(prefix="quiver-hibbench-")
    os.chmod(tmp, 0o755)
    tag = "hib%d" % os.getpid()
    bundle, sock = make_bundle(tmp)
    rts = []
    qroot = os.path.join(tmp, "root-qctl")
    netd = None
    if "qctl" in want:
        qctl = os.path.join(bindir, "qctl")
        if args.published:
            os.makedirs(qroot, 0o700)
            netd = [os.path.join(bindir, "quiver-netd"), "--root", qroot, "--bridge", PUB_BRIDGE,
                    "--subnet", PUB_SUBNET, "--log", os.path.join(tmp, "netd.log")]
            subprocess.run(netd, check=True)
        conf = os.path.join(tmp, "poold.json")
        with open(conf, "w") as f:
            json.dump({"pools": {k: {"low": 0, "high": 0} for k in ("cgroup", "netns", "layer", "warm")},
                       "swap": {"mib": args.swap_mib}}, f)
        q = Quiver("qctl", [qctl], qroot, tmp, env=dict(os.environ, QUIVER_NO_WARM="1"))
        q.cmd("pool", "start", "--config", conf)
        q.bundle, q.target = bundle, sock
        if args.published:
            q.bundle, q.target = published_bundle(tmp, bundle, PUB_PORT), (PUB_GATEWAY, PUB_PORT)
        rts.append(q)
    if "crun" in want:
        rts.append(Runtime("crun", list(CRUN_WRAPPER), os.path.join(tmp, "root-crun"), tmp))
    if "runc" in want:
        rts.append(Runtime("runc", ["runc"], os.path.join(tmp, "root-runc"), tmp))
    for rt in rts:
        if rt.name != "qctl":
            rt.bundle, rt.target = bundle, sock
    results = {rt.name: [] for rt in rts}
    meta = {"date": time.strftime("%Y-%m-%d %H:%M"), "command": " ".join(["/usr/bin/python3"] + sys.argv),
            "idle_before": []}
    problems = []
    try:
        for rt in rts:  # warm-up, not recorded
            one_round(rt, args, tag + "w")
        c0 = cpu_times()
        for i in range(args.rounds):
            meta["idle_before"].append(wait_quiet(args.idle, give_up=args.quiet_wait))
            r0 = cpu_times()
            for rt in rts:
                r = one_round(rt, args, tag)
                results[rt.name].append(r)
                line = "round %d %s: cold %.1f ms, warm %.2f ms, memcg %.1f MiB" % (
                    i + 1, rt.name, r["cold_s"] * 1e3, r["warm_s"] * 1e3, mib(r["warm_mem"]["usage"]))
                if "wake_s" in r:
                    line += "; hibernate %.0f ms, hibernated %.2f MiB, wake→response %.1f ms" % (
                        r["hibernate_s"] * 1e3, mib(r["hib_mem"]["usage"]), r["wake_s"] * 1e3)
                print(line, file=sys.stderr)
            meta.setdefault("idle_rounds", []).append(idle_share(r0, cpu_times()))
            print("round %d: %.1f%% idle" % (i + 1, meta["idle_rounds"][-1]), file=sys.stderr)
        meta["idle_during"] = idle_share(c0, cpu_times())
    finally:
        for rt in rts:
            for cid in list(rt.live) + [c for c in rt.leftovers() if c not in rt.live]:
                rt.remove(cid)
            left = rt.leftovers()
            if left:
                problems.append("%s: sandboxes left: %s" % (rt.name, left))
        if "qctl" in want:
            q = rts[0]
            q.cmd("pool", "stop", check=False)
            q.cmd("daemons", "stop", check=False)
            with open("/proc/swaps") as f:
                if tmp in f.read():
                    problems.append("swap area still active after pool stop: see /proc/swaps")
            if netd:
                try:
                    with open(os.path.join(qroot, "netd.pid")) as f:
                        os.kill(int(f.read()), 15)
                except (OSError, ValueError):
                    pass
                for _ in range(100):
                    if not os.path.exists(os.path.join(qroot, "netd.pid")):
                        break
                    time.sleep(0.05)
                if subprocess.run(netd + ["--teardown"]).returncode != 0:
                    problems.append("quiver-netd --teardown failed (see netd.log)")
            try:
                with open(os.path.join(qroot, "vmmd.log"), errors="replace") as f:
                    bad = [ln.rstrip() for ln in f if " warn" in ln or " error" in ln]
                if bad:
                    print("vmmd.log warnings/errors:\n  " + "\n  ".join(bad[-10:]), file=sys.stderr)
            except OSError:
                pass
        r = subprocess.run(["pgrep", "-f", tmp], stdout=subprocess.PIPE, text=True)
        if r.stdout.strip():
            problems.append("processes left mentioning %s: %s" % (tmp, r.stdout.split()))
        if not problems:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print("left %s for inspection" % tmp, file=sys.stderr)
    meta["seconds"] = time.monotonic() - t_start
    report(args, rts, results, meta)
    for p in problems:
        print("problem: " + p)
    if args.plot:
        plot(args.plot, rts, results)
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump({"meta": meta, "results": results}, f, indent=1)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
