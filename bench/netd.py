#!/usr/bin/python3
"""netd (issue 5): Redis between two sandboxes on one node.

redis-server (Debian's: redis-tools ships it as redis-check-rdb, which
serves when its argv[0] says redis-server) in one sandbox, and
`redis-benchmark -t get,set -c 50` in another, both with the host's /usr
bind-mounted read-only, in three set-ups, interleaved round by round:

  quiver   both sandboxes in netd's quiver mode: the benchmark's 50
           connects become AF_UNIX stream pairs (the socket service)
  bridge   both in netd's bridge mode: veths into netd's bridge, TCP
  runc     runc, each container in a network namespace made here with a
           veth into a plain Linux bridge of this script's own (static
           addresses, no policy: netd's table refuses what its grants do
           not name, and these addresses have none): runc + veth, the
           baseline
  crun     the same with crun (--only to choose)
  nodes    two more: two "nodes" (network namespaces joined by a veth, each
           with its own vmmd and netd, as test_netd's two-node test makes
           them): redis-server in a quiver sandbox on node B and the
           benchmark in one on node A, every connection a channel of netd's
           transport (nodes-quiver), against plain TCP between the same
           namespaces, no sandboxes (nodes-tcp)

Each round runs redis-benchmark once per set-up (-n requests per test,
--csv) and records requests per second and p50 latency of GET and SET.
The table gives medians over the rounds and each set-up's ratio to
runc+veth.  Goals (issue 5): quiver >= 1.15 x runc+veth requests per
second, p50 latency <= 0.85 x.

    sudo /usr/bin/python3 bench/netd.py [--rounds 3] [--requests 200000]
        [--bin build/bin] [--only quiver,bridge,runc,crun,nodes] [--json-out F]
        [--idle 85] [--quiet-wait 120]
"""

import argparse
import csv
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "tests", "system"))
from iod import host_mounts  # noqa: E402
from startup import CRUN_WRAPPER, wait_quiet  # noqa: E402
from conftest import default_config  # noqa: E402  (the system tests' config.json)

BRIDGE = "qvbench0"
SUBNET = "10.215.0.0/24"
# runc/crun's containers: a bridge and addresses of their own.
STATIC_BRIDGE = "qvbenchr0"
STATIC_GATEWAY = "10.217.0.1"
STATIC = {"srv": "10.217.0.250", "cli": "10.217.0.251"}
REDIS_BIN = "/usr/bin/redis-check-rdb"
PORT = 6379


class BenchError(Exception):
    pass


def sh(*a, check=True, **kw):
    r = subprocess.run(list(a), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True, **kw)
    if check and r.returncode != 0:
        raise BenchError("%s: exit %d: %s" % (" ".join(a), r.returncode, r.stderr.strip()[-400:]))
    return r


def make_bundle(tmp, name, args, annotations=None, netns=None):
    rootfs = os.path.join(tmp, "rootfs-" + name)
    for d in ("proc", "sys", "dev", "tmp", "etc", "srv", "data"):
        os.makedirs(os.path.join(rootfs, d))
    mounts = host_mounts(rootfs)
    # redis-check-rdb serves when argv[0] names redis-server
    os.symlink(REDIS_BIN, os.path.join(rootfs, "srv", "redis-server"))
    with open(os.path.join(rootfs, "etc", "passwd"), "w") as f:
        f.write("root:x:0:0:root:/root:/bin/sh\n")
    mounts.append({"destination": "/data", "type": "tmpfs", "source": "tmpfs",
                   "options": ["nosuid", "nodev", "size=64m"]})
    cfg = default_config(list(args))
    cfg["root"] = {"path": rootfs, "readonly": True}
    cfg["process"]["cwd"] = "/data"
    cfg["mounts"] = cfg["mounts"] + mounts
    if annotations:
        cfg["annotations"] = annotations
    if netns:
        cfg["linux"]["namespaces"] = [n for n in cfg["linux"]["namespaces"] if n["type"] != "network"]
        cfg["linux"]["namespaces"].append({"type": "network", "path": netns})
    bundle = os.path.join(tmp, "bundle-" + name)
    os.makedirs(bundle)
    with open(os.path.join(bundle, "config.json"), "w") as f:
        json.dump(cfg, f, indent=1)
    return bundle


SERVER_ARGS = ["/srv/redis-server", "--port", str(PORT), "--bind", "0.0.0.0", "--protected-mode", "no",
               "--save", "", "--appendonly", "no", "--daemonize", "no", "--dir", "/data"]


def client_args(ip, n):
    return ["/usr/bin/redis-benchmark", "-h", ip, "-p", str(PORT), "-t", "get,set", "-c", "50", "-n", str(n),
            "--csv"]


def parse_csv(text):
    """{"GET": (rps, p50_ms), "SET": ...} from redis-benchmark --csv."""
    out = {}
    rows = list(csv.reader(io.StringIO(text)))
    if not rows or rows[0][:2] != ["test", "rps"]:
        raise BenchError("redis-benchmark printed no CSV: %r" % text[-400:])
    head = rows[0]
    for row in rows[1:]:
        if len(row) != len(head):
            continue
        d = dict(zip(head, row))
        out[d["test"]] = (float(d["rps"]), float(d["p50_latency_ms"]))
    for t in ("GET", "SET"):
        if t not in out:
            raise BenchError("redis-benchmark gave no %s row: %r" % (t, text[-400:]))
    return out


def wait_pong(name, ip, netns=None):
    """Until redis-server at ip answers PING (from the host, over the bridge,
    or from inside netns); returns ip."""
    prefix = ["ip", "netns", "exec", netns] if netns else []
    deadline = time.time() + 30
    while time.time() < deadline:
        r = sh(*prefix, "redis-cli", "-h", ip, "-p", str(PORT), "ping", check=False)
        if r.stdout.strip() == "PONG":
            return ip
        time.sleep(0.1)
    raise BenchError("%s: redis-server did not answer at %s" % (name, ip))


class Setup:
    """One way of running the two sandboxes."""

    def __init__(self, name, prefix, root, tmp, annotations=None, static=False):
        self.name, self.prefix, self.root, self.tmp = name, prefix, root, tmp
        self.annotations = annotations
        self.static = static
        self.log = os.path.join(tmp, name + ".log")
        self.netns = {}
        self.n = 0

    def cmd(self, *a, check=True, timeout=600):
        r = subprocess.run(self.prefix + ["--root", self.root] + list(a), stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise BenchError("%s %s: exit %d: %s" % (self.name, " ".join(a[:2]), r.returncode,
                                                     r.stderr.strip()[-400:]))
        return r

    def make_netns(self, role):
        """runc/crun: a netns with a veth into the bridge and a static address."""
        ns = "qvb-%s-%s" % (self.name, role)
        host, peer = "qvb%s%s" % (self.name[:2], role[0]), "qvbp%s%s" % (self.name[:2], role[0])
        sh("ip", "netns", "add", ns)
        sh("ip", "link", "add", host, "type", "veth", "peer", "name", peer)
        sh("ip", "link", "set", peer, "netns", ns)
        sh("ip", "link", "set", host, "master", STATIC_BRIDGE, "up")
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "-n", ns, "link", "set", peer, "name", "eth0")
        sh("ip", "-n", ns, "addr", "add", STATIC[role] + "/24", "dev", "eth0")
        sh("ip", "-n", ns, "link", "set", "eth0", "up")
        sh("ip", "-n", ns, "route", "add", "default", "via", STATIC_GATEWAY)
        self.netns[role] = (ns, host)
        return "/var/run/netns/" + ns

    def drop_netns(self):
        for ns, host in self.netns.values():
            sh("ip", "link", "del", host, check=False)
            sh("ip", "netns", "del", ns, check=False)
        self.netns = {}

    def start_server(self):
        self.n += 1
        netns = self.make_netns("srv") if self.static else None
        b = make_bundle(os.path.join(self.tmp, "%s-%d" % (self.name, self.n)), "srv", SERVER_ARGS,
                        self.annotations, netns)
        self.srv = "%s-srv-%d" % (self.name, self.n)
        logf = open(self.log, "a")
        subprocess.run(self.prefix + ["--root", self.root, "run", "-d", "--bundle", b, self.srv],
                       stdin=subprocess.DEVNULL, stdout=logf, stderr=logf, check=True, timeout=60)
        logf.close()
        ip = STATIC["srv"] if self.static else self.address(self.srv)
        # ready when redis answers PING (from the host, over the bridge)
        return wait_pong(self.name, ip)

    def address(self, cid):
        pid = json.loads(self.cmd("state", cid).stdout)["pid"]
        r = sh("nsenter", "--net=/proc/%d/ns/net" % pid, "ip", "-4", "-o", "addr", "show", "eth0")
        return r.stdout.split()[3].split("/")[0]

    def bench(self, ip, n):
        netns = self.make_netns("cli") if self.static else None
        ann = dict(self.annotations, **{"io.quiver.net.peers": self.srv}) if self.annotations else None
        b = make_bundle(os.path.join(self.tmp, "%s-%d" % (self.name, self.n)), "cli", client_args(ip, n),
                        ann, netns)
        r = self.cmd("run", "--bundle", b, "%s-cli-%d" % (self.name, self.n))
        return parse_csv(r.stdout)

    def stop_server(self):
        self.cmd("kill", self.srv, "KILL", check=False)
        for _ in range(50):
            if self.cmd("delete", "--force", self.srv, check=False).returncode == 0:
                break
            time.sleep(0.1)
        self.drop_netns()
        shutil.rmtree(os.path.join(self.tmp, "%s-%d" % (self.name, self.n)), ignore_errors=True)


# ---- two nodes: two network namespaces joined by a veth, a netd in each ----

NODE_NET = "10.250.200"
NODE_SUBNETS = {"A": "10.226.0.0/24", "B": "10.227.0.0/24"}


class TwoNodes:
    """Node A and node B as network namespaces, each with its own root,
    vmmd and netd (whose transport joins them), as test_netd's two-node
    test builds them."""

    def __init__(self, tmp, bindir):
        self.tmp, self.bindir = tmp, bindir
        self.ns = {n: "qvbench%s" % n for n in "AB"}
        self.root = {n: os.path.join(tmp, "root-node" + n) for n in "AB"}
        self.made = []

    def netd_argv(self, n):
        me, peer = ("1", "2") if n == "A" else ("2", "1")
        other = "B" if n == "A" else "A"
        return [os.path.join(self.bindir, "quiver-netd"), "--root", self.root[n], "--bridge", "qvbn" + n,
                "--subnet", NODE_SUBNETS[n]], ["--node-id", me, "--node-listen", "%s.%s:7070" % (NODE_NET, me),
                                               "--peer", "%s,%s.%s:7070,%s" % (peer, NODE_NET, peer,
                                                                                NODE_SUBNETS[other])]

    def start(self):
        for n in "AB":
            sh("ip", "netns", "add", self.ns[n])
            self.made.append(n)
            sh("ip", "-n", self.ns[n], "link", "set", "lo", "up")
            os.makedirs(self.root[n], 0o700)
        sh("ip", "link", "add", "qvbxA", "netns", self.ns["A"], "type", "veth", "peer", "name", "qvbxB", "netns",
           self.ns["B"])
        for n, me in (("A", "1"), ("B", "2")):
            sh("ip", "-n", self.ns[n], "addr", "add", "%s.%s/24" % (NODE_NET, me), "dev", "qvbx" + n)
            sh("ip", "-n", self.ns[n], "link", "set", "qvbx" + n, "up")
            base, node = self.netd_argv(n)
            sh("ip", "netns", "exec", self.ns[n], *base, *node, "--log", os.path.join(self.tmp, "netd-%s.log" % n))

    def stop(self):
        for n in self.made:
            root = self.root[n]
            subprocess.run([os.path.join(self.bindir, "qctl"), "--root", root, "daemons", "stop"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            pidf = os.path.join(root, "netd.pid")
            if os.path.exists(pidf):
                subprocess.run(["kill", open(pidf).read().strip()])
                for _ in range(100):
                    if not os.path.exists(pidf):
                        break
                    time.sleep(0.05)
            base, _ = self.netd_argv(n)
            subprocess.run(["ip", "netns", "exec", self.ns[n], *base, "--teardown", "--log",
                            os.path.join(self.tmp, "netd-%s.log" % n)])
            sh("ip", "netns", "del", self.ns[n], check=False)
        self.made = []


class NodesQuiver(Setup):
    """redis-server in a quiver-mode sandbox on node B, the benchmark in one
    on node A: every connection a channel of the transport."""

    def __init__(self, nodes, qctl, tmp):
        super().__init__("nodes-quiver", [qctl], nodes.root["B"], tmp, {"io.quiver.net": "quiver"})
        self.nodes = nodes

    def start_server(self):
        self.n += 1
        b = make_bundle(os.path.join(self.tmp, "%s-%d" % (self.name, self.n)), "srv", SERVER_ARGS,
                        self.annotations)
        self.srv = "%s-srv-%d" % (self.name, self.n)
        self.root = self.nodes.root["B"]
        # the detached workload inherits stdout/stderr: a file, never a pipe
        logf = open(self.log, "a")
        subprocess.run(self.prefix + ["--root", self.root, "run", "-d", "--bundle", b, self.srv],
                       stdin=subprocess.DEVNULL, stdout=logf, stderr=logf, check=True, timeout=60)
        logf.close()
        ip = self.address(self.srv)
        return wait_pong(self.name, ip, self.nodes.ns["B"])

    def bench(self, ip, n):
        ann = dict(self.annotations, **{"io.quiver.net.peers": NODE_SUBNETS["B"]})
        b = make_bundle(os.path.join(self.tmp, "%s-%d" % (self.name, self.n)), "cli", client_args(ip, n), ann)
        self.root = self.nodes.root["A"]
        try:
            return parse_csv(self.cmd("run", "--bundle", b, "%s-cli-%d" % (self.name, self.n)).stdout)
        finally:
            self.root = self.nodes.root["B"]


class NodesTCP(Setup):
    """The same two namespaces, no sandboxes: redis-server in node B's
    namespace on its node address, redis-benchmark in node A's, plain TCP
    over the veth between them."""

    def __init__(self, nodes, tmp):
        super().__init__("nodes-tcp", [], None, tmp)
        self.nodes = nodes
        self.proc = None
        # argv[0] must name redis-server
        self.server_bin = os.path.join(tmp, "redis-server")
        if not os.path.exists(self.server_bin):
            os.symlink(REDIS_BIN, self.server_bin)

    def start_server(self):
        self.n += 1
        d = os.path.join(self.tmp, "%s-%d" % (self.name, self.n))
        os.makedirs(d)
        args = [self.server_bin] + SERVER_ARGS[1:]
        args[args.index("/data")] = d
        logf = open(self.log, "a")
        self.proc = subprocess.Popen(["ip", "netns", "exec", self.nodes.ns["B"]] + args, stdin=subprocess.DEVNULL,
                                     stdout=logf, stderr=logf)
        logf.close()
        ip = NODE_NET + ".2"
        return wait_pong(self.name, ip, self.nodes.ns["B"])

    def bench(self, ip, n):
        r = sh("ip", "netns", "exec", self.nodes.ns["A"], *client_args(ip, n), timeout=600)
        return parse_csv(r.stdout)

    def stop_server(self):
        if self.proc:
            self.proc.kill()
            self.proc.wait()
            self.proc = None
        shutil.rmtree(os.path.join(self.tmp, "%s-%d" % (self.name, self.n)), ignore_errors=True)


def med(xs):
    return statistics.median(xs) if xs else float("nan")


def report(results, setups):
    base = "runc" if "runc" in results else None
    print("\nRedis, redis-benchmark -c 50 in one sandbox, redis-server in another (medians of %d rounds)" %
          len(next(iter(results.values()))["GET"]))
    print("%-12s %12s %10s %12s %10s   %s" % ("setup", "GET req/s", "GET p50", "SET req/s", "SET p50",
                                              "ratios vs runc+veth (rps, p50)"))
    for s in setups:
        r = results[s.name]
        row = []
        for t in ("GET", "SET"):
            row += [med([x[0] for x in r[t]]), med([x[1] for x in r[t]])]
        ratios = ""
        if base and s.name != base:
            b = results[base]
            parts = []
            for t in ("GET", "SET"):
                parts.append("%s %.2fx, %.2fx" % (t, med([x[0] for x in r[t]]) / med([x[0] for x in b[t]]),
                                                 med([x[1] for x in r[t]]) / med([x[1] for x in b[t]])))
            ratios = "; ".join(parts)
        print("%-12s %12.0f %8.3fms %12.0f %8.3fms   %s" % (s.name, row[0], row[1], row[2], row[3], ratios))
    print("goal: quiver >= 1.15x runc+veth requests/s, p50 <= 0.85x")
    if "nodes-quiver" in results and "nodes-tcp" in results:
        q, t_ = results["nodes-quiver"], results["nodes-tcp"]
        print("\nTwo nodes (network namespaces joined by a veth): quiver sandboxes over netd's transport "
              "vs plain TCP between the same namespaces")
        for t in ("GET", "SET"):
            print("  %s: %.2fx the requests/s, p50 %.2fx" % (
                t, med([x[0] for x in q[t]]) / med([x[0] for x in t_[t]]),
                med([x[1] for x in q[t]]) / med([x[1] for x in t_[t]])))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--requests", type=int, default=200000)
    ap.add_argument("--bin", default=os.path.join(os.path.dirname(HERE), "build", "bin"))
    ap.add_argument("--only", default="quiver,bridge,runc")
    ap.add_argument("--json-out")
    ap.add_argument("--idle", type=float, default=85.0, help="percent idle that counts as quiet")
    ap.add_argument("--quiet-wait", type=float, default=120.0, help="seconds to wait for it at most")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/netd.py: run as root")
    for tool in ("redis-benchmark", "redis-cli", REDIS_BIN):
        if not shutil.which(tool):
            sys.exit("bench/netd.py: %s missing (make deps installs redis-tools)" % tool)
    tmp = tempfile.mkdtemp(prefix="quiver-bench-netd-")
    os.chmod(tmp, 0o755)
    qroot = os.path.join(tmp, "root-qctl")
    os.makedirs(qroot, 0o700)
    qctl = os.path.join(os.path.abspath(args.bin), "qctl")
    netd = [os.path.join(os.path.abspath(args.bin), "quiver-netd"), "--root", qroot, "--bridge", BRIDGE,
            "--subnet", SUBNET]
    sh(*netd, "--log", os.path.join(tmp, "netd.log"))
    want = args.only.split(",")
    setups = []
    if "quiver" in want:
        setups.append(Setup("quiver", [qctl], qroot, tmp, {"io.quiver.net": "quiver"}))
    if "bridge" in want:
        setups.append(Setup("bridge", [qctl], qroot, tmp, {"io.quiver.net": "bridge"}))
    if "runc" in want:
        setups.append(Setup("runc", ["runc"], os.path.join(tmp, "root-runc"), tmp, static=True))
    if "crun" in want:
        setups.append(Setup("crun", list(CRUN_WRAPPER), os.path.join(tmp, "root-crun"), tmp, static=True))
    if "runc" in want or "crun" in want:
        sh("ip", "link", "add", STATIC_BRIDGE, "type", "bridge")
        sh("ip", "addr", "add", STATIC_GATEWAY + "/24", "dev", STATIC_BRIDGE)
        sh("ip", "link", "set", STATIC_BRIDGE, "up")
    nodes = None
    if "nodes" in want:
        nodes = TwoNodes(tmp, os.path.abspath(args.bin))
        setups += [NodesQuiver(nodes, qctl, tmp), NodesTCP(nodes, tmp)]
    results = {s.name: {"GET": [], "SET": []} for s in setups}
    try:
        if nodes:
            nodes.start()
        for rnd in range(args.rounds):
            for s in setups:
                # every measurement starts on a quiet machine (BENCHMARKING.md)
                idle = wait_quiet(args.idle, give_up=args.quiet_wait)
                ip = s.start_server()
                try:
                    r = s.bench(ip, args.requests)
                finally:
                    s.stop_server()
                for t in ("GET", "SET"):
                    results[s.name][t].append(r[t])
                print("round %d %-12s GET %8.0f/s p50 %.3f ms   SET %8.0f/s p50 %.3f ms   (%.0f%% idle before)" % (
                    rnd + 1, s.name, r["GET"][0], r["GET"][1], r["SET"][0], r["SET"][1], idle), flush=True)
        report(results, setups)
        if args.json_out:
            with open(args.json_out, "w") as f:
                json.dump({"rounds": args.rounds, "requests": args.requests, "results": results}, f, indent=1)
    finally:
        for s in setups:
            s.drop_netns()
        sh("ip", "link", "del", STATIC_BRIDGE, check=False)
        if nodes:
            nodes.stop()
        subprocess.run([qctl, "--root", qroot, "daemons", "stop"], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        pid = open(os.path.join(qroot, "netd.pid")).read().strip() if os.path.exists(
            os.path.join(qroot, "netd.pid")) else None
        if pid:
            subprocess.run(["kill", pid])
            for _ in range(100):
                if not os.path.exists(os.path.join(qroot, "netd.pid")):
                    break
                time.sleep(0.05)
        subprocess.run(netd + ["--teardown", "--log", os.path.join(tmp, "netd.log")])
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
