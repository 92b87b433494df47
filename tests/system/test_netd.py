"""quiver-netd (issue 5), through the real binaries: sandboxes whose bundle
says "io.quiver.net": "bridge" get a veth into netd's bridge and an address
from its subnet; "quiver" adds the socket service, where a connect from one
sandbox to another on this node becomes an AF_UNIX stream pair handed to
both workloads, while they keep seeing TCP addresses.

One netd serves the session's root for the module, on its own bridge and
subnet (so that it cannot meet a real quiver0), and is torn down at the
end with `quiver-netd --teardown`, which must leave no bridge, veth, lease or
nftables table.  Every test checks that the veths and leases of its
sandboxes are gone after they are deleted.

- bridge: address, route and a TCP connection to the host; a published
  port reached from the host; nothing left after delete.
- quiver: sandbox-to-sandbox connects become direct channels (netd's
  counter says so, and the listener sees the connecting sandbox's address,
  not the doorbell's), for blocking, poll and epoll listeners; ordinary TCP
  clients (the host) still reach the listener; connects to the host take
  the kernel's path; bad socket-call arguments get the host kernel's errno.
- kill -9 of netd: an established channel keeps working; a new netd
  reconciles, the supervisors greet it again, and new connections are
  direct again.
- bad input: a bad mode, a bad port spec, no netd, no network namespace."""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time

import pytest

from conftest import (CMD_TIMEOUT, RUNTIME_PATH, SESSION_TAG, Runtime, SeqpacketPeers, SocketDaemon, assert_error,
                      compile_prog, poll_until, read_text, vmmd_pid, wait_gone)

pytestmark = pytest.mark.quiver_only

NETD_BIN = os.environ.get("QUIVER_NETD") or (
    os.path.join(os.path.dirname(RUNTIME_PATH), "quiver-netd") if RUNTIME_PATH else None)
RUN_TIMEOUT = 30
# A bridge name and subnet of the session's own, unlikely to meet another.
BRIDGE = "qvt%s" % SESSION_TAG[-6:]
SUBNET_OCTET = 100 + os.getpid() % 100
SUBNET = "10.214.%d.0/24" % SUBNET_OCTET
GATEWAY = "10.214.%d.1" % SUBNET_OCTET

read = read_text


def host_veths():
    out = subprocess.run(["ip", "-o", "link", "show"], stdout=subprocess.PIPE, text=True).stdout
    return sorted(set(re.findall(r"^\d+: (qv[0-9a-f]{10})[@:]", out, re.M)))


def nft_ruleset():
    return subprocess.run(["nft", "list", "ruleset"], stdout=subprocess.PIPE, text=True).stdout


class Netd(SocketDaemon):
    """quiver-netd on its own bridge and subnet."""

    name = "netd"

    def argv(self, *extra):
        return [NETD_BIN, "--root", self.root, "--bridge", BRIDGE, "--subnet", SUBNET, "--log", self.log] + list(extra)

    def teardown(self):
        r = subprocess.run(self.argv("--teardown"), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=CMD_TIMEOUT)
        assert r.returncode == 0, "quiver-netd --teardown exited %d: %s\n%s" % (r.returncode, r.stdout,
                                                                             self.logs())

    def logs(self, n=30):
        lines = read(self.log).splitlines()
        return "netd log (last %d lines):\n  %s" % (n, "\n  ".join(lines[-n:]))

    def connections(self, path):
        return self.metrics().get(("quiver_netd_connections_total", frozenset({("path", path)})), 0.0)

    def gateway(self, direction):
        return self.metrics().get(("quiver_netd_gateway_connections_total", frozenset({("direction", direction)})))

    def leases(self):
        d = self.path("netd")
        out = []
        for dirpath, _, files in os.walk(d):
            out += [os.path.join(dirpath, f) for f in files if re.match(r"^\d+\.\d+\.\d+\.\d+$", f)]
        return sorted(out)


@pytest.fixture(scope="module")
def netpeer(session):
    return compile_prog(session.tmp, "netpeer")


def make_bundle(bundle_factory, netpeer, mode, tmp_path, ports=None, out_name="out", peers=None):
    b = bundle_factory()
    shutil.copy2(netpeer, os.path.join(b.rootfs, "bin", "netpeer"))
    ann = {"io.quiver.net": mode}
    if ports:
        ann["io.quiver.net.ports"] = ports
    if peers:
        ann["io.quiver.net.peers"] = peers
    b.set("annotations", ann)
    host_out = os.path.join(str(tmp_path), out_name)
    os.makedirs(host_out, exist_ok=True)
    os.makedirs(os.path.join(b.rootfs, "out"), exist_ok=True)
    b.config["mounts"].append({"destination": "/out", "type": "bind", "source": host_out,
                               "options": ["rbind", "rw"]})
    b.write()
    b.out = host_out
    return b


class Server:
    """A detached sandbox running `netpeer serve`; its output in a file."""

    def __init__(self, runtime, bundle, port=7000, mode="block", n=1, name="srv", family="v4"):
        self.runtime = runtime
        self.bundle = bundle
        self.id = runtime.new_id(name)
        self.file = os.path.join(bundle.out, self.id + ".out")
        bundle.shell("exec /bin/netpeer serve %d %s %d %s > /out/%s.out 2>&1" % (port, mode, n, family, self.id))
        runtime.ok("run", "-d", "--bundle", bundle.path, self.id)
        assert poll_until(lambda: "listening" in self.text(), 15), "server never listened: %r" % self.text()
        m = re.search(r"^addr (\S+):0$", self.text(), re.M)
        assert m, "server printed no address: %r" % self.text()
        self.ip = m.group(1)

    def text(self):
        return read(self.file)

    def wait_closed(self, n=1):
        assert poll_until(lambda: self.text().count("closed") >= n, 15), "server output: %r" % self.text()

    def delete(self):
        self.runtime("kill", self.id, "KILL")
        self.runtime.wait_status(self.id, "stopped")
        self.runtime.ok("delete", self.id)


def run_client(runtime, bundle, *args, timeout=RUN_TIMEOUT):
    bundle.args("/bin/netpeer", "connect", *args)
    cid = runtime.new_id("cli")
    r = runtime("run", "--bundle", bundle.path, cid, timeout=timeout)
    return r


def host_client_gets_in(srv, port, closed, accepted):
    """An ordinary TCP client (the host, through the bridge) still reaches
    srv's listener: echoed, and its accept line (the `closed`-th
    connection served) matches `accepted`."""
    with socket.create_connection((srv.ip, port), timeout=10) as c:
        c.sendall(b"tcp")
        assert c.recv(100) == b"tcp"
    srv.wait_closed(closed)
    assert re.search(r"^accepted %s" % accepted, srv.text(), re.M), srv.text()


def sandbox_gone_cleanly(netd, veths_before):
    assert poll_until(lambda: host_veths() == veths_before, 10), \
        "veths left: %s (before: %s)" % (host_veths(), veths_before)
    assert poll_until(lambda: not netd.leases(), 10), "leases left: %s" % netd.leases()


# ---------------------------------------------------------------------------
# before netd runs


def test_no_netd_is_a_clear_error(runtime, bundle_factory, netpeer, tmp_path):
    assert not os.path.exists(os.path.join(runtime.root, "netd.sock"))
    b = make_bundle(bundle_factory, netpeer, "bridge", tmp_path)
    b.args("true")
    assert_error(runtime("run", "--bundle", b.path, runtime.new_id("nonetd")), "netd", "not running")


@pytest.fixture(scope="module")
def netd(session):
    if not NETD_BIN or not os.access(NETD_BIN, os.X_OK):
        pytest.fail("quiver-netd is not built (%s)" % NETD_BIN, pytrace=False)
    veths = host_veths()
    d = Netd(session.root, os.path.join(session.tmp, "netd-%s.log" % SESSION_TAG))
    d.start()
    try:
        yield d
    finally:
        if d.alive():
            d.stop()
        d.teardown()
        # nothing of netd's may be left on the host
        left = []
        if subprocess.run(["ip", "link", "show", BRIDGE], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL).returncode == 0:
            left.append("bridge %s" % BRIDGE)
        if host_veths() != veths:
            left.append("veths %s" % host_veths())
        if d.leases():
            left.append("leases %s" % d.leases())
        if SUBNET.split("/")[0].rsplit(".", 1)[0] in nft_ruleset():
            left.append("nftables rules naming %s" % SUBNET)
        assert not left, "after netd --teardown: %s" % left


# ---------------------------------------------------------------------------
# bridge mode


def test_bridge_address_and_host_reach(runtime, bundle_factory, netpeer, netd, tmp_path):
    veths = host_veths()
    # a listener on the gateway address (the bridge's, on the host)
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((GATEWAY, 0))
    ls.listen(4)
    port = ls.getsockname()[1]
    got = {}

    def serve():
        c, peer = ls.accept()
        got["peer"] = peer
        data = c.recv(100)
        c.sendall(data)
        c.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    # Not granted (the default): refused, as in quiver mode.
    b = make_bundle(bundle_factory, netpeer, "bridge", tmp_path)
    r = run_client(runtime, b, GATEWAY, str(port), "hi")
    assert r.returncode == 1 and "connect: Connection refused" in r.stdout, r.stdout + r.stderr
    assert "peer" not in got
    b = make_bundle(bundle_factory, netpeer, "bridge", tmp_path, peers="%s:%d" % (GATEWAY, port))
    r = run_client(runtime, b, GATEWAY, str(port), "hi")
    t.join(5)
    ls.close()
    assert r.returncode == 0, "client: %s %s\n%s" % (r.stdout, r.stderr, netd.logs())
    assert "echo hi" in r.stdout
    m = re.search(r"^client local (\S+):(\d+) peer %s:%d" % (re.escape(GATEWAY), port), r.stdout, re.M)
    assert m, r.stdout
    assert m.group(1).startswith("10.214.%d." % SUBNET_OCTET) and m.group(1) != GATEWAY
    assert got.get("peer", ("",))[0] == m.group(1), "the host saw %r" % got
    sandbox_gone_cleanly(netd, veths)


def test_hostile_peers_on_netd_sock(runtime, bundle_factory, netpeer, netd, tmp_path):
    """Peers of netd.sock that hang up at once, send an empty message,
    garbage or a message too big, or connect and say nothing: netd turns
    each away, serves a sandbox meanwhile (its policy refuses the connect
    that was not granted) and keeps none of their fds."""
    veths = host_veths()
    fds = len(os.listdir("/proc/%d/fd" % netd.pid))
    with SeqpacketPeers(netd.path("netd.sock")) as peers:
        peers.hang_up()
        for payload in (b"", b"\xff" * 64, os.urandom(3000), os.urandom(65000)):
            peers.open().send(payload)
        peers.open()  # says nothing
        b = make_bundle(bundle_factory, netpeer, "bridge", tmp_path)
        r = run_client(runtime, b, GATEWAY, "9", "hi")
        assert r.returncode == 1 and "connect: Connection refused" in r.stdout, (r.stdout + r.stderr, netd.logs())
        assert netd.alive(), netd.logs()
    assert poll_until(lambda: len(os.listdir("/proc/%d/fd" % netd.pid)) <= fds, 10), (
        fds, os.listdir("/proc/%d/fd" % netd.pid))
    sandbox_gone_cleanly(netd, veths)


def test_bridge_published_port(runtime, bundle_factory, netpeer, netd, tmp_path):
    veths = host_veths()
    hport = 20000 + os.getpid() % 20000
    b = make_bundle(bundle_factory, netpeer, "bridge", tmp_path, ports="%d:7000" % hport)
    srv = Server(runtime, b, 7000, "block", 1)
    try:
        assert re.search(r"dport %d\b" % hport, nft_ruleset()), "no rule for the published port:\n%s" % nft_ruleset()
        gateway_in = netd.gateway("in")
        assert gateway_in is not None, netd.logs()
        # from the host, to a host address: DNAT in the output chain
        with socket.create_connection((GATEWAY, hport), timeout=10) as c:
            c.sendall(b"published")
            assert c.recv(100) == b"published"
        assert netd.gateway("in") == gateway_in + 1
        srv.wait_closed()
        assert re.search(r"^accepted %s:\d+" % re.escape(GATEWAY), srv.text(), re.M), srv.text()
    finally:
        srv.delete()
    sandbox_gone_cleanly(netd, veths)
    assert not re.search(r"dport %d\b" % hport, nft_ruleset()), "the published port's rule outlived its sandbox"


def test_bridge_without_proc(runtime, bundle_factory, netpeer, netd, tmp_path):
    """The supervisor reaches netd without /proc in the sandbox (the socket
    is connected through a directory fd, not /proc/self/fd)."""
    veths = host_veths()
    b = make_bundle(bundle_factory, netpeer, "bridge", tmp_path)
    b.config["mounts"] = [m for m in b.config["mounts"] if m["destination"] != "/proc"]
    b.write()
    srv = Server(runtime, b, 7000, "block", 1)
    try:
        with socket.create_connection((srv.ip, 7000), timeout=10) as c:
            c.sendall(b"noproc")
            assert c.recv(100) == b"noproc"
    finally:
        srv.delete()
    sandbox_gone_cleanly(netd, veths)


# ---------------------------------------------------------------------------
# quiver mode


@pytest.mark.parametrize("mode", ["block", "poll", "epoll"])
def test_quiver_direct_channel(runtime, bundle_factory, netpeer, netd, tmp_path, mode):
    veths = host_veths()
    sb = make_bundle(bundle_factory, netpeer, "quiver", tmp_path, out_name="srv")
    srv = Server(runtime, sb, 7000, mode, 2)
    try:
        direct = netd.connections("direct")
        cb = make_bundle(bundle_factory, netpeer, "quiver", tmp_path, out_name="cli", peers=srv.id)
        r = run_client(runtime, cb, srv.ip, "7000", "hello", "world")
        assert r.returncode == 0, "client: %s %s\n%s" % (r.stdout, r.stderr, netd.logs())
        assert "echo hello" in r.stdout and "echo world" in r.stdout, r.stdout
        assert netd.connections("direct") == direct + 1, "not a direct channel:\n%s" % netd.logs()
        m = re.search(r"^client local (\S+):(\d+) peer %s:7000 family 2 len 16 nodelay-set 0 domain 1$" %
                      re.escape(srv.ip), r.stdout, re.M)
        assert m, r.stdout
        cip, cport = m.group(1), m.group(2)
        srv.wait_closed(1)
        text = srv.text()
        # the listener sees the connecting sandbox, not the doorbell (127.0.0.1)
        assert re.search(r"^accepted %s:%s len 16 nonblock %d cloexec %d$" % (
            re.escape(cip), cport, mode != "block", mode != "block"), text, re.M), text
        assert re.search(r"^server local %s:7000 peer %s:%s family 2 len 16 nodelay-set 0 domain 1$" % (
            re.escape(srv.ip), re.escape(cip), cport), text, re.M), text
        host_client_gets_in(srv, 7000, 2, r"%s:\d+ len 16" % re.escape(GATEWAY))
    finally:
        srv.delete()
    sandbox_gone_cleanly(netd, veths)


def test_quiver_ipv6_sockets(runtime, bundle_factory, netpeer, netd, tmp_path):
    """AF_INET6 sockets: a dual-stack listener on "::" (the default of Go's,
    Node's and Java's servers) gets direct channels from IPv4 connects and
    from IPv6 ones to the v4-mapped address (Java's clients), and every
    address reads back as the kernel shows it on such a socket: a 28-byte
    sockaddr_in6 holding ::ffff:a.b.c.d.  The policy is the same.  An
    IPV6_V6ONLY listener takes no IPv4 connection, so no channel either."""
    veths = host_veths()
    sb = make_bundle(bundle_factory, netpeer, "quiver", tmp_path, out_name="srv")
    srv = Server(runtime, sb, 7020, "epoll", 3, family="v6")
    try:
        sip = re.escape(srv.ip)
        for target in (srv.ip, "::ffff:" + srv.ip):
            direct = netd.connections("direct")
            cb = make_bundle(bundle_factory, netpeer, "quiver", tmp_path, out_name="cli", peers=srv.id)
            r = run_client(runtime, cb, target, "7020", "six")
            assert r.returncode == 0 and "echo six" in r.stdout, "%s: %s %s\n%s" % (target, r.stdout, r.stderr,
                                                                                netd.logs())
            assert netd.connections("direct") == direct + 1, "%s: not a direct channel" % target
            if ":" in target:
                m = re.search(r"^client local \[::ffff:([\d.]+)\]:(\d+) peer \[::ffff:%s\]:7020 family 10 len 28 "
                              r"nodelay-set 0 domain 1$" % sip, r.stdout, re.M)
            else:
                m = re.search(r"^client local ([\d.]+):(\d+) peer %s:7020 family 2 len 16 nodelay-set 0 domain 1$" %
                              sip, r.stdout, re.M)
            assert m, r.stdout
            cip, cport = re.escape(m.group(1)), m.group(2)
            n = 1 if ":" not in target else 2
            srv.wait_closed(n)
            text = srv.text()
            assert re.search(r"^accepted \[::ffff:%s\]:%s len 28 nonblock 1 cloexec 1$" % (cip, cport), text,
                             re.M), text
            assert re.search(r"^server local \[::ffff:%s\]:7020 peer \[::ffff:%s\]:%s family 10 len 28 "
                             r"nodelay-set 0 domain 1$" % (sip, cip, cport), text, re.M), text
        # not granted: refused, as for IPv4
        denied = netd.connections("denied")
        cb = make_bundle(bundle_factory, netpeer, "quiver", tmp_path, out_name="deny")
        r = run_client(runtime, cb, "::ffff:" + srv.ip, "7020", "x")
        assert r.returncode == 1 and "connect: Connection refused" in r.stdout, r.stdout + r.stderr
        assert netd.connections("denied") == denied + 1
        host_client_gets_in(srv, 7020, 3, r"\[::ffff:%s\]:\d+ len 28" % re.escape(GATEWAY))
    finally:
        srv.delete()
    sb6 = make_bundle(bundle_factory, netpeer, "quiver", tmp_path, out_name="srv6")
    srv6 = Server(runtime, sb6, 7021, "block", 1, family="v6only")
    try:
        for target in (srv6.ip, "::ffff:" + srv6.ip):
            direct = netd.connections("direct")
            cb = make_bundle(bundle_factory, netpeer, "quiver", tmp_path, out_name="cli6", peers=srv6.id)
            r = run_client(runtime, cb, target, "7021", "x")
            assert r.returncode == 1 and "connect: Connection refused" in r.stdout, (target, r.stdout, r.stderr)
            assert netd.connections("direct") == direct, target
    finally:
        srv6.delete()
    sandbox_gone_cleanly(netd, veths)


def test_quiver_nonblocking_connect(runtime, bundle_factory, netpeer, netd, tmp_path):
    sb = make_bundle(bundle_factory, netpeer, "quiver", tmp_path, out_name="srv")
    srv = Server(runtime, sb, 7001, "epoll", 1)
    try:
        direct = netd.connections("direct")
        cb = make_bundle(bundle_factory, netpeer, "quiver", tmp_path, out_name="cli", peers=srv.id + ":7001")
        r = run_client(runtime, cb, srv.ip, "7001", "nb", "x" * 3000)
        assert r.returncode == 0, "client: %s %s" % (r.stdout, r.stderr)
        assert "echo " + "x" * 3000 in r.stdout
        assert netd.connections("direct") == direct + 1
    finally:
        srv.delete()


def test_quiver_to_host_takes_the_kernel_path(runtime, bundle_factory, netpeer, netd, tmp_path):
    ls = socket.socket()
    ls.bind((GATEWAY, 0))
    ls.listen(1)
    port = ls.getsockname()[1]

    def serve():
        c, _ = ls.accept()
        c.sendall(c.recv(100))
        c.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    kernel = netd.connections("kernel")
    b = make_bundle(bundle_factory, netpeer, "quiver", tmp_path, peers="%s:%d" % (GATEWAY, port))
    r = run_client(runtime, b, GATEWAY, str(port), "out")
    t.join(5)
    ls.close()
    assert r.returncode == 0 and "echo out" in r.stdout, "%s %s" % (r.stdout, r.stderr)
    assert netd.connections("kernel") == kernel + 1


def test_quiver_connect_nobody_listens(runtime, bundle_factory, netpeer, netd, tmp_path):
    # a sandbox's address, a port nobody listens on: the kernel's answer
    sb = make_bundle(bundle_factory, netpeer, "quiver", tmp_path, out_name="srv")
    srv = Server(runtime, sb, 7002, "block", 1)
    try:
        cb = make_bundle(bundle_factory, netpeer, "quiver", tmp_path, out_name="cli", peers=srv.id)
        r = run_client(runtime, cb, srv.ip, "7003", "x")
        assert r.returncode == 1 and "connect: Connection refused" in r.stdout, r.stdout + r.stderr
    finally:
        srv.delete()


def test_quiver_socket_errors_match_the_kernel(runtime, bundle_factory, netpeer, netd, tmp_path):
    # natively, in a network namespace of its own with lo up, as a sandbox has
    native = subprocess.run(["unshare", "--net", "sh", "-c", 'ip link set lo up && exec "$0" errors', netpeer],
                            stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, timeout=CMD_TIMEOUT)
    assert native.returncode == 0, native.stdout
    b = make_bundle(bundle_factory, netpeer, "quiver", tmp_path)
    b.args("/bin/netpeer", "errors")
    r = runtime("run", "--bundle", b.path, runtime.new_id("errs"), timeout=RUN_TIMEOUT)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.splitlines() == native.stdout.splitlines()


def test_kill9_keeps_channels_and_recovers(runtime, bundle_factory, netpeer, netd, tmp_path):
    veths = host_veths()
    sb = make_bundle(bundle_factory, netpeer, "quiver", tmp_path, out_name="srv")
    srv = Server(runtime, sb, 7004, "epoll", 2)
    cb = make_bundle(bundle_factory, netpeer, "quiver", tmp_path, out_name="cli", peers=srv.id)
    go = os.path.join(cb.out, "go")
    cb.shell("exec /bin/netpeer connect %s 7004 before wait:/out/go after > /out/c1.out 2>&1" % srv.ip)
    c1 = runtime.new_id("c1")
    c1_out = os.path.join(cb.out, "c1.out")
    try:
        direct = netd.connections("direct")
        runtime.ok("run", "-d", "--bundle", cb.path, c1)
        assert poll_until(lambda: "echo before" in read(c1_out), 15), read(c1_out)
        assert netd.connections("direct") == direct + 1
        netd.kill9()
        with open(go, "w"):
            pass
        # the channel is the kernel's: it does not need netd
        assert poll_until(lambda: "echo after" in read(c1_out), 15), read(c1_out)
        runtime.wait_status(c1, "stopped")
        runtime.ok("delete", c1)
        netd.start()
        # the supervisors come back (they retry every 0.5 s) with their listeners
        c2 = make_bundle(bundle_factory, netpeer, "quiver", tmp_path, out_name="cli2", peers=srv.id)
        time.sleep(1.5)
        r = run_client(runtime, c2, srv.ip, "7004", "again")
        assert r.returncode == 0 and "echo again" in r.stdout, r.stdout + r.stderr + netd.logs()
        assert netd.connections("direct") == 1, "after the restart: not direct\n%s" % netd.logs()
    finally:
        if os.path.exists(os.path.join(runtime.root, c1)):
            runtime("kill", c1, "KILL")
            runtime("delete", "--force", c1)
        srv.delete()
    sandbox_gone_cleanly(netd, veths)


# ---------------------------------------------------------------------------
# policy: io.quiver.net.peers


def test_quiver_policy(runtime, bundle_factory, netpeer, netd, tmp_path):
    """A quiver sandbox reaches itself and what it was granted; the rest is
    refused, ECONNREFUSED for this node's sandboxes (and subnet),
    ENETUNREACH for anything else."""
    sb = make_bundle(bundle_factory, netpeer, "quiver", tmp_path, out_name="srv")
    srv = Server(runtime, sb, 7005, "epoll", 2)
    try:
        cases = [
            (None, srv.ip, 7005, "connect: Connection refused"),             # nothing granted
            ("other-sandbox", srv.ip, 7005, "connect: Connection refused"),  # someone else granted
            (srv.id + ":7006", srv.ip, 7005, "connect: Connection refused"),  # another port granted
            (None, "192.0.2.1", 80, "connect: Network is unreachable"),       # outside, not granted
            (None, GATEWAY, 9, "connect: Connection refused"),                # the host, on our subnet
        ]
        for peers, ip, port, want in cases:
            denied = netd.connections("denied")
            cb = make_bundle(bundle_factory, netpeer, "quiver", tmp_path, out_name="deny", peers=peers)
            r = run_client(runtime, cb, ip, str(port), "x")
            assert r.returncode == 1 and want in r.stdout, (peers, ip, port, r.stdout, r.stderr)
            assert netd.connections("denied") == denied + 1, (peers, ip, port)
        # granted by network, and by id and port: direct channels
        for peers in ("10.214.%d.0/24" % SUBNET_OCTET, "%s:7005,192.0.2.0/24" % srv.id):
            direct = netd.connections("direct")
            cb = make_bundle(bundle_factory, netpeer, "quiver", tmp_path, out_name="allow", peers=peers)
            r = run_client(runtime, cb, srv.ip, "7005", "ok")
            assert r.returncode == 0 and "echo ok" in r.stdout, (peers, r.stdout, r.stderr)
            assert netd.connections("direct") == direct + 1, peers
    finally:
        srv.delete()


def test_bridge_policy(runtime, bundle_factory, netpeer, netd, tmp_path):
    """The same policy for bridge-mode sandboxes, in the kernel: their
    traffic passes netd's forward and input chains (through br_netfilter
    here), which accept what io.quiver.net.peers grants and refuse the
    rest with the socket service's errnos. A published port stays open to
    every sandbox."""
    veths = host_veths()
    hport = 20000 + (os.getpid() + 13) % 20000
    sb = make_bundle(bundle_factory, netpeer, "bridge", tmp_path, out_name="srv", ports="%d:7008" % hport)
    srv = Server(runtime, sb, 7008, "block", 3)
    try:
        for peers, ip, port, want in [
            (None, srv.ip, 7008, "connect: Connection refused"),              # nothing granted
            (srv.id + ":7009", srv.ip, 7008, "connect: Connection refused"),  # another port granted
            ("other-sandbox", srv.ip, 7008, "connect: Connection refused"),   # someone else granted
            (None, "192.0.2.1", 80, "connect: Network is unreachable"),       # outside, not granted
        ]:
            cb = make_bundle(bundle_factory, netpeer, "bridge", tmp_path, out_name="deny", peers=peers)
            r = run_client(runtime, cb, ip, str(port), "x")
            assert r.returncode == 1 and want in r.stdout, (peers, ip, port, r.stdout, r.stderr)
        # granted by id and port, by network; and the published port, ungranted
        for peers, ip, port in [(srv.id + ":7008", srv.ip, 7008),
                                ("10.214.%d.0/24" % SUBNET_OCTET, srv.ip, 7008),
                                (None, GATEWAY, hport)]:
            cb = make_bundle(bundle_factory, netpeer, "bridge", tmp_path, out_name="allow", peers=peers)
            r = run_client(runtime, cb, ip, str(port), "ok")
            assert r.returncode == 0 and "echo ok" in r.stdout, (peers, r.stdout, r.stderr)
        srv.wait_closed(3)
        # IPv4 only: no IPv6 address on eth0, not even link-local, that
        # would let a listener on [::] take connections past the table.
        cb = make_bundle(bundle_factory, netpeer, "bridge", tmp_path, out_name="v6")
        cb.shell("cat /proc/net/if_inet6; echo v6-listed")
        r = runtime("run", "--bundle", cb.path, runtime.new_id("v6"), timeout=RUN_TIMEOUT)
        assert r.returncode == 0 and "v6-listed" in r.stdout, r.stdout + r.stderr
        assert "eth0" not in r.stdout, r.stdout
        log = netd.logs(100)
        assert ("policy sees bridged traffic through br_netfilter" in log or
                "no br_netfilter: sandbox ports isolated" in log), log
    finally:
        srv.delete()
    sandbox_gone_cleanly(netd, veths)


@pytest.mark.parametrize("peers", ["10.0.0.0/33", "host:0", "a b", ",", "x" * 100, "1.2.3.4:99999"])
def test_bad_peers_are_refused(runtime, bundle_factory, netpeer, netd, tmp_path, peers):
    veths = host_veths()
    b = make_bundle(bundle_factory, netpeer, "quiver", tmp_path, peers=peers)
    b.args("true")
    assert_error(runtime("run", "--bundle", b.path, runtime.new_id("badpeers")), "io.quiver.net.peers")
    sandbox_gone_cleanly(netd, veths)


# ---------------------------------------------------------------------------
# bad input


def test_bad_mode_is_refused(runtime, bundle_factory, netpeer, netd, tmp_path):
    b = make_bundle(bundle_factory, netpeer, "tcp", tmp_path)
    b.args("true")
    assert_error(runtime("run", "--bundle", b.path, runtime.new_id("bad")), "io.quiver.net", "tcp")


@pytest.mark.parametrize("spec", ["70000:80", "80", "1:2:3:4", "8080:80/sctp", "x:80"])
def test_bad_ports_are_refused(runtime, bundle_factory, netpeer, netd, tmp_path, spec):
    veths = host_veths()
    b = make_bundle(bundle_factory, netpeer, "bridge", tmp_path, ports=spec)
    b.args("true")
    assert_error(runtime("run", "--bundle", b.path, runtime.new_id("badports")), "netd")
    sandbox_gone_cleanly(netd, veths)


def test_host_network_is_refused(runtime, bundle_factory, netpeer, netd, tmp_path):
    b = make_bundle(bundle_factory, netpeer, "bridge", tmp_path)
    b.set("linux.namespaces", [{"type": t} for t in ("pid", "ipc", "uts", "mount")])
    b.args("true")
    assert_error(runtime("run", "--bundle", b.path, runtime.new_id("hostnet")), "network namespace")


# ---------------------------------------------------------------------------
# two nodes: two network namespaces, each with its own netd (and vmmd)


class Node:
    """A "node": a network namespace joined to the other's by a veth, a
    runtime root, and a netd running inside the namespace."""

    def __init__(self, tmp, name, me, peer, k):
        self.ns = "qvn%s%s" % (name, SESSION_TAG[-6:])
        self.root = os.path.join(tmp, "root" + name)
        os.makedirs(self.root, 0o700)
        self.log = os.path.join(tmp, "netd-%s.log" % name)
        self.bridge = "qvb%s%s" % (name, SESSION_TAG[-6:])
        self.subnet = "10.%d.%d.0/24" % (222 + me - 1, k)
        self.addr = "10.250.%d.%d" % (k, me)
        self.args = ["--root", self.root, "--bridge", self.bridge, "--subnet", self.subnet]
        self.node = ["--node-id", str(me), "--node-listen", "%s:7070" % self.addr,
                     "--peer", "%d,10.250.%d.%d:7070,10.%d.%d.0/24" % (peer, k, peer, 222 + peer - 1, k)]
        self.runtime = Runtime(RUNTIME_PATH, self.root, True)

    def netd(self, *extra):
        return subprocess.run(["ip", "netns", "exec", self.ns, NETD_BIN] + self.args + list(extra),
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, timeout=CMD_TIMEOUT)

    def start(self):
        r = self.netd("--log", self.log, *self.node)
        assert r.returncode == 0, "netd in %s: %s\n%s" % (self.ns, r.stdout, read(self.log))

    def metric(self, name, **labels):
        url = read(os.path.join(self.root, "netd.metrics")).strip()
        r = subprocess.run(["ip", "netns", "exec", self.ns, "/usr/bin/python3", "-c",
                            "import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1]).read().decode())",
                            url], stdout=subprocess.PIPE, text=True, timeout=CMD_TIMEOUT)
        want = name + ("{%s}" % ",".join('%s="%s"' % kv for kv in sorted(labels.items())) if labels else "")
        for line in r.stdout.splitlines():
            if line.startswith(want + " "):
                return float(line.split()[1])
        return 0.0

    def stop(self):
        self.runtime.cleanup()
        subprocess.run([RUNTIME_PATH, "--root", self.root, "daemons", "stop"], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=CMD_TIMEOUT)
        pid = int(read(os.path.join(self.root, "netd.pid"), "0").strip() or 0)
        if pid:
            os.kill(pid, signal.SIGTERM)
            wait_gone(pid, 20)
        vpid = int(read(os.path.join(self.root, "vmmd.pid"), "0").strip() or 0)
        if vpid:
            wait_gone(vpid, 20)
        return self.netd("--teardown", "--log", self.log)


def test_two_nodes_over_the_transport(bundle_factory, netpeer, tmp_path):
    k = os.getpid() % 250
    a, b = Node(str(tmp_path), "A", 1, 2, k), Node(str(tmp_path), "B", 2, 1, k)
    made = []
    try:
        for n in (a, b):
            subprocess.run(["ip", "netns", "add", n.ns], check=True)
            made.append(n)
            subprocess.run(["ip", "-n", n.ns, "link", "set", "lo", "up"], check=True)
        subprocess.run(["ip", "link", "add", "qvxA" + SESSION_TAG[-6:], "netns", a.ns, "type", "veth",
                        "peer", "name", "qvxB" + SESSION_TAG[-6:], "netns", b.ns], check=True)
        for n, dev in ((a, "qvxA"), (b, "qvxB")):
            dev += SESSION_TAG[-6:]
            subprocess.run(["ip", "-n", n.ns, "addr", "add", n.addr + "/24", "dev", dev], check=True)
            subprocess.run(["ip", "-n", n.ns, "link", "set", dev, "up"], check=True)
        for n in (a, b):
            n.args += ["--metrics", "127.0.0.1:0"]
            n.start()
        # a server on node B, a client on node A
        sb = make_bundle(bundle_factory, netpeer, "quiver", tmp_path, out_name="srv")
        srv = Server(b.runtime, sb, 7000, "epoll", 1)
        assert srv.ip.startswith(b.subnet.rsplit(".", 1)[0] + "."), srv.ip
        cb = make_bundle(bundle_factory, netpeer, "quiver", tmp_path, out_name="cli", peers=b.subnet)
        # 8 MiB both ways: many times a channel's window (256 KiB) and the relays' buffers
        r = run_client(a.runtime, cb, srv.ip, "7000", "hello", "bulk:8388608", "bye")
        assert r.returncode == 0, "client: %s %s\n%s\n%s" % (r.stdout[:2000], r.stderr, read(a.log)[-3000:],
                                                            read(b.log)[-3000:])
        assert "echo hello" in r.stdout and "bulk 8388608 ok" in r.stdout and "echo bye" in r.stdout, r.stdout
        m = re.search(r"^client local (\S+):(\d+) peer %s:7000 family 2" % re.escape(srv.ip), r.stdout, re.M)
        assert m and m.group(1).startswith(a.subnet.rsplit(".", 1)[0] + "."), r.stdout[:500]
        srv.wait_closed(1)
        # the listener on B sees the connecting sandbox on A
        assert re.search(r"^accepted %s:%s len 16" % (re.escape(m.group(1)), m.group(2)), srv.text(), re.M), \
            srv.text()
        assert a.metric("quiver_netd_connections_total", path="transport") == 1
        assert b.metric("quiver_netd_connections_total", path="transport-in") == 1
        # 8 MiB each way went through the transport's one connection
        for n in (a, b):
            assert n.metric("quiver_netd_transport_connections") == 1
            for d in ("in", "out"):
                assert n.metric("quiver_netd_transport_bytes_total", direction=d) > 8 * 1024 * 1024
        # nobody listens on that port of B: B's refusal stands on A
        r = run_client(a.runtime, cb, srv.ip, "7001", "x")
        assert r.returncode == 1 and "connect: Connection refused" in r.stdout, r.stdout + r.stderr
        srv.delete()
        # 50 connections at once, request/response rounds interleaved on all
        # of them (redis-benchmark's shape): every byte back in order on its
        # own connection, and the frames of many channels went out together
        # (netd corks the transport and flushes once per loop turn)
        sb2 = make_bundle(bundle_factory, netpeer, "quiver", tmp_path, out_name="srv2")
        many_srv = Server(b.runtime, sb2, 7002, "fork", 50, name="msrv")
        frames0 = a.metric("quiver_netd_transport_frames_sent_total")
        sends0 = a.metric("quiver_netd_transport_sends_total")
        cb.args("/bin/netpeer", "many", many_srv.ip, "7002", "50", "20", "100")
        r = a.runtime("run", "--bundle", cb.path, a.runtime.new_id("many"), timeout=RUN_TIMEOUT)
        assert r.returncode == 0 and "many 50 x 20 x 100 ok" in r.stdout, \
            "many: %s %s\n%s" % (r.stdout[-2000:], r.stderr[-1000:], read(a.log)[-2000:])
        assert poll_until(lambda: "served 50" in many_srv.text(), 15), many_srv.text()
        frames = a.metric("quiver_netd_transport_frames_sent_total") - frames0
        sends = a.metric("quiver_netd_transport_sends_total") - sends0
        assert frames >= 50 * 20, (frames, sends)
        assert sends < frames / 2, "the transport sent frame by frame: %d frames, %d sends" % (frames, sends)
        many_srv.delete()
    finally:
        problems = []
        for n in made:
            t = n.stop()
            if t.returncode != 0:
                problems.append("netd --teardown in %s: %s" % (n.ns, t.stdout))
            subprocess.run(["ip", "netns", "del", n.ns])
        assert not problems, problems


def test_netd_state_dir_is_not_a_sandbox(runtime, bundle, netd):
    """ROOT/netd is netd's: vmmd neither takes the id nor recovers it."""
    assert os.path.isdir(os.path.join(runtime.root, "netd"))
    assert_error(runtime("run", "--bundle", bundle.path, "netd"), "reserved", "netd")
    assert os.path.isdir(os.path.join(runtime.root, "netd", "leases"))
    log = read(os.path.join(runtime.root, "vmmd.log"))
    assert "netd: not recovered" not in log, log[-2000:]


def test_connect_wakes_a_hibernated_listener(runtime, bundle_factory, netpeer, netd, tmp_path):
    """issue 7's automatic wake, for the socket service: a hibernated
    sandbox's supervisor is frozen with it; netd asks vmmd to wake it when
    an incoming channel is not taken, and the connect completes."""
    from test_hibernate import SwapPoold  # its swap area serves every root of the host
    swap = SwapPoold(os.path.join(str(tmp_path), "swaproot"), str(tmp_path))
    swap.start()
    sb = make_bundle(bundle_factory, netpeer, "quiver", tmp_path, out_name="srv")
    srv = Server(runtime, sb, 7007, "block", 2)
    try:
        runtime.ok("hibernate", srv.id)

        def hibernation():
            return json.loads(runtime.ok("inspect", srv.id).stdout)["hibernation"]

        assert (hibernation() or {}).get("state") == "hibernated", hibernation()
        direct = netd.connections("direct")
        cb = make_bundle(bundle_factory, netpeer, "quiver", tmp_path, out_name="cli", peers=srv.id)
        r = run_client(runtime, cb, srv.ip, "7007", "awake")
        assert r.returncode == 0 and "echo awake" in r.stdout, r.stdout + r.stderr + netd.logs()
        assert netd.connections("direct") == direct + 1
        assert hibernation() is None and runtime.status(srv.id) == "running", runtime.state(srv.id)
        assert "woken (connection)" in read(os.path.join(runtime.root, "vmmd.log"))
    finally:
        srv.delete()
        swap.stop()


def test_published_port_wakes_a_hibernated_sandbox(runtime, bundle_factory, netpeer, netd, tmp_path):
    """issue 7's automatic wake, through a published port: the kernel's
    DNAT brings the connection to the frozen listener's backlog, which
    netd never sees; vmmd watches the hibernated sandbox's listening
    sockets and wakes it. A hibernated sandbox deleted with the watch in
    place leaves its veth and lease (and netns) behind no more than any
    other."""
    from test_hibernate import SwapPoold
    swap = SwapPoold(os.path.join(str(tmp_path), "swaproot"), str(tmp_path))
    swap.start()
    veths = host_veths()
    hport = 20000 + (os.getpid() + 7) % 20000
    b = make_bundle(bundle_factory, netpeer, "bridge", tmp_path, ports="%d:7000" % hport)
    srv = Server(runtime, b, 7000, "block", 5)
    vmmd_log = os.path.join(runtime.root, "vmmd.log")

    def hibernation():
        return json.loads(runtime.ok("inspect", srv.id).stdout)["hibernation"]

    watching = "%s: a connection to any of its 1 listening sockets wakes it" % srv.id

    def knock(word):
        with socket.create_connection((GATEWAY, hport), timeout=10) as c:
            c.sendall(word)
            c.settimeout(10)
            assert c.recv(100) == word, srv.text()
        assert hibernation() is None and runtime.status(srv.id) == "running", runtime.state(srv.id)

    try:
        runtime.ok("hibernate", srv.id)
        assert poll_until(lambda: (hibernation() or {}).get("state") == "hibernated", 15), hibernation()
        assert hibernation()["auto_wake"] is True, hibernation()
        # Not the supervisor's guest.sock: only the workload's listener.
        assert watching in read(vmmd_log), read(vmmd_log)[-3000:]
        knock(b"knock")
        assert read(vmmd_log).count("%s: woken (connection)" % srv.id) == 1

        # A new vmmd (kill -9) watches what the old one watched.
        runtime.ok("hibernate", srv.id)
        assert poll_until(lambda: (hibernation() or {}).get("state") == "hibernated", 15), hibernation()
        vpid = vmmd_pid(runtime.root)
        os.kill(vpid, signal.SIGKILL)
        assert wait_gone(vpid)
        assert (hibernation() or {}).get("state") == "hibernated"  # a new vmmd
        assert read(vmmd_log).count(watching) == 3, read(vmmd_log)[-3000:]
        knock(b"again")
        assert read(vmmd_log).count("%s: woken (connection)" % srv.id) == 2
        srv.wait_closed(2)

        # A connection that comes while no vmmd runs: the next vmmd finds
        # it waiting and wakes the sandbox for it.
        runtime.ok("hibernate", srv.id)
        assert poll_until(lambda: (hibernation() or {}).get("state") == "hibernated", 15), hibernation()
        vpid = vmmd_pid(runtime.root)
        os.kill(vpid, signal.SIGKILL)
        assert wait_gone(vpid)
        with socket.create_connection((GATEWAY, hport), timeout=10) as c:
            c.sendall(b"meanwhile")
            runtime.ok("state", srv.id)  # starts a vmmd
            c.settimeout(10)
            assert c.recv(100) == b"meanwhile", srv.text()
        assert read(vmmd_log).count("%s: woken (connection)" % srv.id) == 3
        srv.wait_closed(3)

        # --no-auto-wake: the connection waits in the backlog for a wake.
        runtime.ok("hibernate", "--no-auto-wake", srv.id)
        assert hibernation()["auto_wake"] is False, hibernation()
        with socket.create_connection((GATEWAY, hport), timeout=10) as c:
            c.sendall(b"later")
            c.settimeout(1.0)
            with pytest.raises(socket.timeout):
                c.recv(100)
            assert hibernation()["state"] == "hibernated"
            runtime.ok("wake", srv.id)
            c.settimeout(10)
            assert c.recv(100) == b"later"
        assert read(vmmd_log).count("%s: woken (connection)" % srv.id) == 3

        # Hibernated again, then deleted by force: the copies of its
        # listener go with it.
        runtime.ok("hibernate", srv.id)
        assert poll_until(lambda: (hibernation() or {}).get("state") == "hibernated", 15), hibernation()
        runtime.ok("delete", "--force", srv.id)
    finally:
        if srv.id in runtime.ok("list", "-q").stdout.split():
            srv.delete()
        swap.stop()
    sandbox_gone_cleanly(netd, veths)
    assert not re.search(r"dport %d\b" % hport, nft_ruleset())


def test_a_waiting_backlog_does_not_undo_hibernation(runtime, bundle_factory, netpeer, netd, tmp_path):
    """A connection already waiting in the backlog when the sandbox
    hibernates (the workload was busy with another) does not wake it at
    once, or an idle policy would hibernate and wake such a sandbox over
    and over; the next new connection does."""
    from test_hibernate import SwapPoold
    swap = SwapPoold(os.path.join(str(tmp_path), "swaproot"), str(tmp_path))
    swap.start()
    veths = host_veths()
    hport = 20000 + (os.getpid() + 11) % 20000
    b = make_bundle(bundle_factory, netpeer, "bridge", tmp_path, ports="%d:7000" % hport)
    srv = Server(runtime, b, 7000, "block", 3)  # one connection at a time
    conns = []

    def hibernation():
        return json.loads(runtime.ok("inspect", srv.id).stdout)["hibernation"]

    def connect(word):
        c = socket.create_connection((GATEWAY, hport), timeout=10)
        conns.append(c)
        c.sendall(word)
        return c

    try:
        busy = connect(b"busy")
        assert busy.recv(100) == b"busy"
        waiting = connect(b"waiting")  # in the backlog: the server echoes busy
        runtime.ok("hibernate", srv.id)
        time.sleep(1.0)
        assert (hibernation() or {}).get("state") == "hibernated", hibernation()
        late = connect(b"late")  # a new edge: woken
        assert poll_until(lambda: hibernation() is None, 10), hibernation()
        busy.close()
        waiting.settimeout(10)
        assert waiting.recv(100) == b"waiting"
        waiting.close()
        late.settimeout(10)
        assert late.recv(100) == b"late"
    finally:
        for c in conns:
            c.close()
        srv.delete()
        swap.stop()
    sandbox_gone_cleanly(netd, veths)
