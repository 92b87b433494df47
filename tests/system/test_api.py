"""Hostile clients of ROOT/vmmd.sock: garbage frames, malformed and hostile
msgpack, wrong types, bad ids.  Each request that reaches the message layer
gets an error reply ({v:1, op:"error", code, msg}); what breaks the SP framing
itself costs the client its connection.  vmmd stays up throughout and serves
the next valid request."""

import os
import socket
import struct

import pytest

from conftest import SP_REP0, SP_REQ0, SPConn, VmmdClient, mp_pack, pid_alive, vmmd_pid

pytestmark = pytest.mark.quiver_only

EINVAL, ENOENT, ESRCH, EPROTO, EBADMSG, EMSGSIZE, ENOSYS = 22, 2, 3, 71, 74, 90, 38


def req(op, **fields):
    d = {"v": 1, "op": op}
    d.update(fields)
    return d


def mp_map_raw(pairs):
    """A map from already-packed key/value bytes (for duplicate keys)."""
    return bytes([0x80 | len(pairs)]) + b"".join(k + v for k, v in pairs)


def deep(n):
    return b"\x91" * n + b"\xc0"


# (name, request body (dict or raw bytes), acceptable error codes or None for any)
MALFORMED = [
    ("empty", b"", {EBADMSG}),
    ("nil", b"\xc0", {EBADMSG}),
    ("int", b"\x05", {EBADMSG}),
    ("array", mp_pack([1, 2, 3]), {EBADMSG}),
    ("string", mp_pack("ping"), {EBADMSG}),
    ("truncated-map", b"\x83\xa1v\x01", {EBADMSG}),
    ("truncated-str", b"\x82\xa1v\x01\xa2op\xdb\x00\x00\x00\x10pi", {EBADMSG}),
    ("trailing-bytes", mp_pack(req("ping")) + b"\xc0", {EBADMSG}),
    ("huge-str32", b"\x82\xa1v\x01\xa2op\xdb\xff\xff\xff\xffping", {EBADMSG}),
    ("huge-bin32", b"\x83\xa1v\x01\xa2op\xa4ping\xa1x\xc6\xff\xff\xff\xff", {EBADMSG}),
    ("huge-map32", b"\xdf\xff\xff\xff\xff\xa1v\x01", {EBADMSG}),
    ("huge-array32", b"\x83\xa1v\x01\xa2op\xa4list\xa1x\xdd\xff\xff\xff\xff", {EBADMSG}),
    ("huge-ext32", b"\x83\xa1v\x01\xa2op\xa4ping\xa1x\xc9\xff\xff\xff\xff\x01", {EBADMSG}),
    ("too-many-entries", mp_pack(dict(req("ping"), x=list(range(5000)))), {EBADMSG}),
    ("too-deep", b"\x83\xa1v\x01\xa2op\xa4ping\xa1x" + deep(100), {EBADMSG}),
    ("long-key", mp_pack(dict(req("ping"), **{"k" * 65: 1})), {EBADMSG}),
    ("non-string-key", b"\x83\xa1v\x01\xa2op\xa4ping\x07\x01", {EBADMSG}),
    ("duplicate-key", mp_map_raw([(mp_pack("v"), mp_pack(1)), (mp_pack("op"), mp_pack("ping")),
                                  (mp_pack("op"), mp_pack("shutdown"))]), {EBADMSG}),
    ("long-string", mp_pack(dict(req("state"), id="a" * 5000)), {EBADMSG, EINVAL}),
    ("nul-in-string", mp_pack(dict(req("state"), id="ab\0cd")), {EBADMSG, EINVAL}),
    ("no-version", mp_pack({"op": "ping"}), {EBADMSG}),
    ("version-2", mp_pack({"v": 2, "op": "ping"}), {EPROTO}),
    ("version-string", mp_pack({"v": "1", "op": "ping"}), {EBADMSG}),
    ("version-negative", mp_pack({"v": -1, "op": "ping"}), {EBADMSG, EPROTO}),
    ("no-op", mp_pack({"v": 1}), {EBADMSG}),
    ("op-int", mp_pack({"v": 1, "op": 7}), {EBADMSG}),
    ("op-empty", mp_pack({"v": 1, "op": ""}), {EBADMSG}),
    ("op-long", mp_pack({"v": 1, "op": "x" * 200}), {EBADMSG}),
    ("op-control-char", mp_pack({"v": 1, "op": "pi\nng"}), {EBADMSG}),
    ("op-unknown", req("frobnicate"), {ENOSYS}),
    ("op-error", req("error", code=1, msg="x"), {ENOSYS}),
    ("float-version", b"\x82\xa1v\xcb\x3f\xf0\x00\x00\x00\x00\x00\x00\xa2op\xa4ping", {EBADMSG}),
]

BAD_FIELDS = [
    ("state-no-id", req("state"), {EINVAL}),
    ("state-id-int", req("state", id=5), {EINVAL}),
    ("state-id-nil", req("state", id=None), {EINVAL}),
    ("state-id-array", req("state", id=["a"]), {EINVAL}),
    ("state-id-map", req("state", id={"a": "b"}), {EINVAL}),
    ("state-id-bin", req("state", id=b"abc"), {EINVAL}),
    ("state-id-dotdot", req("state", id="../x"), {EINVAL}),
    ("state-id-slash", req("state", id="a/../../etc"), {EINVAL}),
    ("state-id-dot", req("state", id="."), {EINVAL}),
    ("state-id-hidden", req("state", id=".hidden"), {EINVAL}),
    ("state-id-empty", req("state", id=""), {EINVAL}),
    ("state-id-300", req("state", id="a" * 300), {EINVAL}),
    ("state-id-space", req("state", id="a b"), {EINVAL}),
    ("state-id-utf8", req("state", id="caf\u00e9"), {EINVAL}),
    ("state-unknown", req("state", id="qt-no-such-sandbox"), {ENOENT}),
    ("reserve-dotdot", req("reserve", id="..", bundle="/tmp"), {EINVAL}),
    ("reserve-relative-bundle", req("reserve", id="qt-api-rel", bundle="tmp/b"), {EINVAL}),
    ("reserve-bundle-int", req("reserve", id="qt-api-int", bundle=1), {EINVAL}),
    ("reserve-no-bundle", req("reserve", id="qt-api-nob"), {EINVAL}),
    ("reserve-huge-bundle", req("reserve", id="qt-api-huge", bundle="/" + "b" * 5000), {EINVAL, EBADMSG}),
    ("kill-unknown", req("kill", id="qt-no-such-sandbox", signal=9), {ENOENT}),
    ("delete-force-string", req("delete", id="qt-no-such-sandbox", force="yes"), {EINVAL, ENOENT}),
    ("created-unknown", req("created", id="qt-no-such-sandbox", pid=1, pid_start=0), {ENOENT}),
    ("inspect-id-int", req("inspect", id=-1), {EINVAL}),
    ("abort-unknown", req("abort", id="qt-no-such-sandbox"), {ENOENT}),
    ("stats-unknown", req("stats", id="qt-no-such-sandbox"), {ENOENT}),
    ("stats-id-int", req("stats", id=7), {EINVAL}),
    ("stats-id-nil", req("stats", id=None), {EINVAL}),
    ("stats-id-dotdot", req("stats", id="../x"), {EINVAL}),
]


@pytest.fixture
def client(runtime):
    runtime.ok("daemons", "start")
    pid = vmmd_pid(runtime.root)
    cl = VmmdClient(runtime.root)
    try:
        yield cl
    finally:
        cl.close()
    # Still the same daemon, and still serving.
    assert vmmd_pid(runtime.root) == pid and pid_alive(pid), "vmmd restarted or died"
    runtime.ok("list")


def check_error(rep, codes, name):
    assert isinstance(rep, dict), (name, rep)
    assert rep.get("v") == 1 and rep.get("op") == "error", (name, rep)
    assert isinstance(rep.get("code"), int) and rep["code"] > 0, (name, rep)
    assert isinstance(rep.get("msg"), str) and rep["msg"] and "\n" not in rep["msg"], (name, rep)
    if codes is not None:
        assert rep["code"] in codes, "%s: code %d (%s), want one of %s" % (name, rep["code"], rep["msg"], codes)


@pytest.mark.parametrize("name,body,codes", MALFORMED + BAD_FIELDS, ids=[c[0] for c in MALFORMED + BAD_FIELDS])
def test_malformed_request_gets_error(client, name, body, codes):
    rep = client.call(body)
    check_error(rep, codes, name)
    # The same connection still works.
    pong = client.call(req("ping"))
    assert pong.get("op") == "pong", pong


def test_bad_field_values_on_a_live_sandbox(runtime, bundle, client):
    bundle.shell("trap 'exit 42' TERM; while :; do sleep 0.05; done")
    cid = runtime.new_id("api")
    runtime.ok("create", "--bundle", bundle.path, cid)
    runtime.ok("start", cid)
    for sig in (0, 65, -1, 1 << 40, "9", True, [9]):
        check_error(client.call(req("kill", id=cid, signal=sig)), {EINVAL}, "kill signal=%r" % (sig,))
    check_error(client.call(req("kill", id=cid, all="yes")), {EINVAL}, "kill all=yes")
    check_error(client.call(req("delete", id=cid, force=1)), {EINVAL}, "delete force=1")
    check_error(client.call(req("created", id=cid, pid=1, pid_start=0)), None, "created twice")
    check_error(client.call(req("reserve", id=cid, bundle="/tmp")), {17}, "reserve duplicate")
    assert runtime.status(cid) == "running"
    runtime.ok("kill", cid, "TERM")
    assert runtime.wait_status(cid, "stopped")


def test_hostile_created_fields(runtime, bundle, client):
    """A reservation fed bad `created` fields stays a reservation, with no
    cgroup recorded that delete would then remove."""
    cid = runtime.new_id("apic")
    rep = client.call(req("reserve", id=cid, bundle=bundle.path))
    assert rep.get("op") == "reserved", rep
    cases = [
        dict(pid=0, pid_start=0),
        dict(pid=-5, pid_start=0),
        dict(pid=1 << 40, pid_start=0),
        dict(pid="1", pid_start=0),
        dict(pid=1),
        dict(pid=os.getpid(), pid_start=-1),
        dict(pid=os.getpid(), pid_start=0, cgroups=["/sys/fs/cgroup/pids/../../../etc"]),
        dict(pid=os.getpid(), pid_start=0, cgroups=["relative/path"]),
        dict(pid=os.getpid(), pid_start=0, cgroups="notalist"),
        dict(pid=os.getpid(), pid_start=0, cgroups=["/x"] * 17),
        dict(pid=os.getpid(), pid_start=0, cgroups=[5]),
        dict(pid=os.getpid(), pid_start=0, annotations={"k": 5}),
        dict(pid=os.getpid(), pid_start=0, annotations=["k"]),
        dict(pid=os.getpid(), pid_start=0, start="yes"),
        # A live pid that is not a supervisor: its start time does not match.
        dict(pid=os.getpid(), pid_start=1, cgroups=["/sys/fs/cgroup/pids"]),
    ]
    for fields in cases:
        check_error(client.call(req("created", id=cid, **fields)), {EINVAL, ESRCH}, "created %r" % fields)
        assert runtime.status(cid) == "creating"
    info = client.call(req("inspect", id=cid))
    assert info.get("status") == "creating" and info.get("cgroups") == [], info
    rep = client.call(req("delete", id=cid, force=True))
    assert rep.get("op") == "ok", rep
    assert not os.path.exists(os.path.join(runtime.root, cid))
    assert os.path.isdir("/sys/fs/cgroup/pids")


def _raw_conn(root, proto=SP_REQ0):
    c = SPConn(os.path.join(root, "vmmd.sock"), proto)
    return c


@pytest.mark.parametrize("what", ["http", "wrong-protocol", "zero-greeting", "huge-frame", "over-limit-frame",
                                  "bad-frame-type", "short-request-id", "no-reply-bit", "half-frame-close"])
def test_broken_framing_drops_connection_only(runtime, what):
    runtime.ok("daemons", "start")
    pid = vmmd_pid(runtime.root)
    c = _raw_conn(runtime.root)
    try:
        if what == "http":
            c.sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            assert c.closed_by_peer()
        elif what == "wrong-protocol":
            c.sock.sendall(b"\0SP\0\x00\x21\0\0")   # SUB0 talking to REP0
            assert c.closed_by_peer()
        elif what == "zero-greeting":
            c.sock.sendall(b"\0" * 8)
            assert c.closed_by_peer()
        else:
            assert c.handshake(SP_REQ0) == SP_REP0
            if what == "huge-frame":
                c.sock.sendall(b"\x01" + struct.pack(">Q", 1 << 62) + b"\x80\0\0\1")
                assert c.closed_by_peer()
            elif what == "over-limit-frame":
                c.sock.sendall(b"\x01" + struct.pack(">Q", (1 << 20) + 4096) + b"\x80\0\0\1" + b"\0" * 4096)
                assert c.closed_by_peer()
            elif what == "bad-frame-type":
                body = b"\x80\0\0\1" + mp_pack(req("ping"))
                c.sock.sendall(b"\x02" + struct.pack(">Q", len(body)) + body)
                assert c.closed_by_peer()
            elif what == "short-request-id":
                # No room for a request id: nng's REP kicks a peer speaking garbage.
                c.send_frame(b"\x80\0")
                assert c.closed_by_peer()
            elif what == "no-reply-bit":
                # A backtrace hop without the end bit, and nothing after it.
                c.send_frame(b"\0\0\0\1")
                assert c.closed_by_peer()
            elif what == "half-frame-close":
                c.sock.sendall(b"\x01" + struct.pack(">Q", 100) + b"\x80\0\0\1" + b"\x82")
    finally:
        c.close()
    assert vmmd_pid(runtime.root) == pid and pid_alive(pid)
    assert runtime.ok("list", "-q") is not None


def test_stalled_clients_do_not_block_others(runtime):
    """Clients that connect and stall (no greeting, half a frame) do not keep
    vmmd from serving anyone else."""
    runtime.ok("daemons", "start")
    stalled = []
    try:
        for i in range(16):
            c = _raw_conn(runtime.root)
            if i % 2:
                c.handshake(SP_REQ0)
                c.sock.sendall(b"\x01" + struct.pack(">Q", 200) + b"\x80\0\0\1\x82")
            stalled.append(c)
        for _ in range(5):
            assert runtime("list", "-q", timeout=20).returncode == 0
        cl = VmmdClient(runtime.root)
        try:
            assert cl.call(req("ping")).get("op") == "pong"
        finally:
            cl.close()
    finally:
        for c in stalled:
            c.close()


def test_pipelined_requests_all_answered(client):
    """Requests sent before any reply is read: every one is answered, in order
    (vmmd used to drop a reply with EAGAIN while the previous one was still
    being written to the same pipe)."""
    n = 50
    for i in range(n):
        op = "ping" if i % 2 else "nope%d" % i
        client.conn.send_frame(struct.pack(">I", 0x80000000 | (1000 + i)) + mp_pack(req(op)))
    got = []
    for i in range(n):
        frame = client.conn.recv_frame()
        got.append(struct.unpack(">I", frame[:4])[0] & 0x7FFFFFFF)
    assert got == list(range(1000, 1000 + n)), got


def test_client_that_never_reads_is_dropped(runtime):
    """A client that pipelines requests and never reads its replies cannot
    stall vmmd: once its pipe is full it is disconnected, and others are served."""
    runtime.ok("daemons", "start")
    pid = vmmd_pid(runtime.root)
    c = _raw_conn(runtime.root)
    try:
        c.handshake(SP_REQ0)
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        body = mp_pack(req("policy-does-not-exist-" + "x" * 8))
        c.sock.settimeout(5)
        sent = 0
        try:
            # Replies pile up unread: vmmd's socket buffer toward us fills.
            for i in range(20000):
                c.sock.sendall(b"\x01" + struct.pack(">Q", len(body) + 4) + struct.pack(">I", 0x80000000 | i) + body)
                sent += 1
        except (BrokenPipeError, ConnectionResetError, socket.timeout):
            pass
        assert runtime("list", "-q", timeout=30).returncode == 0
        assert vmmd_pid(runtime.root) == pid and pid_alive(pid)
    finally:
        c.close()
