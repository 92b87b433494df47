"""Regressions found by running qctl under containerd 1.6 (`ctr run
--runc-binary`) and podman 4.3 (`podman --runtime`).  Each test replays what
the client does (its argv, its subreaper, its pid file, its JSON log)
without needing the client itself."""

import json
import os
import select
import subprocess

import pytest

from conftest import CMD_TIMEOUT, LOOP, REAPER_PAUSED, RUNTIME_PATH, SESSION_TAG, Runtime, vmmd_processes

CAPS = ["CAP_CHOWN", "CAP_FOWNER", "CAP_DAC_OVERRIDE"]


def test_dev_nodes_do_not_reach_the_hosts(runtime, bundle):
    """podman gives the container's root CAP_CHOWN and CAP_FOWNER: a chmod or
    chown of /dev/null inside must not change the host's /dev/null (a
    sandbox whose /dev/null is a plain bind of the host's node did, which
    left the host with a /dev/null that only root could write).  The
    attempt sets the mode and owner the node already has, so a failing run
    leaves the host as it was, apart from the inode's change time."""
    nodes = ["null", "zero", "full", "random", "urandom", "tty"]
    before = {n: os.stat("/dev/" + n) for n in nodes}
    for k in ("bounding", "effective", "permitted"):
        bundle.config["process"]["capabilities"][k] += CAPS
    script = "".join(
        "busybox chmod %o /dev/%s; busybox chown %d:%d /dev/%s; "
        % (before[n].st_mode & 0o7777, n, before[n].st_uid, before[n].st_gid, n)
        for n in nodes)
    bundle.shell(script + "echo x > /dev/null && head -c 3 /dev/zero | wc -c")
    r = runtime("run", "--bundle", bundle.path, runtime.new_id("dev"))
    assert r.stdout.split()[-1:] == ["3"], (r.stdout, r.stderr)
    for n in nodes:
        after = os.stat("/dev/" + n)
        assert after.st_ctime_ns == before[n].st_ctime_ns, "the sandbox changed the host's /dev/%s" % n


def test_missing_cwd_is_made(runtime, bundle):
    """`ctr run --cwd /work` and images whose WORKDIR has no directory in
    their layers: runc makes process.cwd (0755, owned by root) before the
    rootfs goes read-only, even for a non-root user."""
    bundle.set("process.cwd", "/work/dir")
    bundle.set("process.user", {"uid": 1234, "gid": 4321})
    bundle.shell("pwd; stat -c '%a %u' .")
    r = runtime("run", "--bundle", bundle.path, runtime.new_id("cwd"))
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["/work/dir", "755", "0"], r.stdout
    assert os.path.isdir(os.path.join(bundle.rootfs, "work", "dir"))


def test_containerd_shim_sequence(runtime, bundle, tmp_path):
    """`ctr run --rm IMAGE ID sh -c 'exit 3'` as containerd's runc v2 shim
    drives it: --log/--log-format json before every command, create with a
    pid file, start, waitpid() of that pid (the shim is a subreaper), then
    `kill --all ID 9` once it has exited (the shim's KillAll), `delete`, and
    the `delete --force` of its cleanup.  Every step but the last state
    succeeds, and errors reach the JSON log that the shim reads."""
    log = str(tmp_path / "log.json")
    pidfile = str(tmp_path / "init.pid")
    cid = runtime.new_id("shim")

    def shim(*args):
        return runtime("--log", log, "--log-format", "json", *args)

    bundle.shell("echo out; exit 3")
    REAPER_PAUSED[0] = True
    try:
        r = shim("create", "--bundle", bundle.path, "--pid-file", pidfile, cid)
        assert r.returncode == 0, r.stderr
        with open(pidfile) as f:
            pid = int(f.read())
        listed = json.loads(shim("list", "--format", "json").stdout)
        mine = [c for c in listed if c["id"] == cid]
        assert len(mine) == 1 and mine[0]["pid"] == pid and mine[0]["owner"] == "root", mine
        r = shim("start", cid)
        assert r.returncode == 0, r.stderr
        _, status = os.waitpid(pid, 0)
    finally:
        REAPER_PAUSED[0] = False
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 3, status
    assert runtime.wait_status(cid, "stopped")
    for args in (("kill", "--all", cid, "9"), ("delete", cid), ("delete", "--force", cid)):
        r = shim(*args)
        assert r.returncode == 0, (args, r.stderr)
    r = shim("state", cid)
    assert r.returncode != 0
    with open(log) as f:
        lines = [json.loads(l) for l in f if l.strip()]
    assert lines and lines[-1]["level"] == "error", lines
    assert "does not exist" in lines[-1]["msg"], lines[-1]


@pytest.mark.quiver_only
def test_embedded_vmmd_keeps_no_fd_of_its_caller(private_root):
    """The vmmd that qctl starts in the background outlives its caller, so it
    must hold none of the caller's descriptors: a write end of a pipe that
    conmon or a shim handed the runtime would keep its reader from ever
    seeing EOF."""
    root = private_root("fds")
    rfd, wfd = os.pipe()
    try:
        r = subprocess.run([RUNTIME_PATH, "--root", root, "list"], pass_fds=(wfd,),
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=CMD_TIMEOUT)
        assert r.returncode == 0, r.stderr
        assert len(vmmd_processes(root)) == 1
        os.close(wfd)
        wfd = -1
        ready, _, _ = select.select([rfd], [], [], 5)
        assert ready and os.read(rfd, 1) == b"", "the daemon kept the caller's pipe open"
    finally:
        os.close(rfd)
        if wfd >= 0:
            os.close(wfd)


def test_device_file_mode_with_type_bits(runtime, bundle):
    """`podman run --device /dev/fuse` writes the host node's whole st_mode
    as fileMode (0o20600: S_IFCHR|0600); runc takes it."""
    bundle.set("linux.devices", [{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229,
                                  "fileMode": 0o20600, "uid": 0, "gid": 0}])
    r = runtime("run", "--bundle", bundle.path, runtime.new_id("devmode"))
    assert r.returncode == 0, r.stderr


@pytest.mark.quiver_only
def test_long_root_and_id(private_root, bundle):
    """podman and containerd name containers with 64 hex digits, and the
    root is theirs to choose: ROOT/ID/guest.sock can pass the 107 bytes of
    a unix socket's sun_path (podman under a temporary directory did), and
    start, exec, kill and delete still reach the sandbox's supervisor."""
    rt = Runtime(RUNTIME_PATH, private_root("long"), True)
    cid = SESSION_TAG + "0123456789abcdef" * 4
    cid = cid[:64]
    assert len(os.path.join(rt.root, cid, "guest.sock")) > 107
    bundle.shell(LOOP)
    rt.ok("create", "--bundle", bundle.path, cid)
    try:
        rt.ok("start", cid)
        r = rt("exec", cid, "sh", "-c", "echo in-exec; exit 4")
        assert r.returncode == 4 and r.stdout == "in-exec\n", (r.returncode, r.stdout, r.stderr)
        rt.ok("kill", cid, "TERM")
        assert rt.wait_status(cid, "stopped")
        assert rt.state(cid)["status"] == "stopped"
    finally:
        rt("delete", "--force", cid)
    assert rt("state", cid).returncode != 0


def test_devices_that_replace_the_default_nodes(runtime, bundle):
    """`podman run --privileged` lists every host device in linux.devices,
    /dev/null and /dev/full among them: as in runc, the config's node takes
    the place of the default one (a sandbox that had bound the default node
    first failed with EBUSY replacing it)."""
    bundle.set("linux.devices", [
        {"path": "/dev/null", "type": "c", "major": 1, "minor": 3, "fileMode": 0o20666, "uid": 0, "gid": 0},
        {"path": "/dev/full", "type": "c", "major": 1, "minor": 7, "fileMode": 0o20640, "uid": 0, "gid": 0}])
    bundle.set("linux.resources.devices", [{"allow": False, "access": "rwm"},
                                           {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
                                           {"allow": True, "type": "c", "major": 1, "minor": 7, "access": "rwm"}])
    bundle.shell("echo x > /dev/null && echo null-ok; echo x 2>/dev/null > /dev/full || echo full-refused; "
                 "stat -c '%t:%T %a' /dev/full")
    r = runtime("run", "--bundle", bundle.path, runtime.new_id("devs"))
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["null-ok", "full-refused", "1:7", "640"], r.stdout
