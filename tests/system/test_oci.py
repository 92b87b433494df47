"""What containerd, conmon and a config.json can ask of an OCI runtime beyond
the basic lifecycle: user namespaces, an OCI seccomp profile, exec with a
process file or a terminal, runc's --log JSON, --preserve-fds, annotations."""

import json
import os
import subprocess

import pytest

from conftest import LOOP, running, CMD_TIMEOUT, LIVE_POPEN, assert_error, wait_gone
from test_terminal import ConsoleSocket, read_until

HOST_ID = 100000


def run_fg(runtime, bundle, *extra, **kw):
    cid = runtime.new_id("oci")
    return runtime("run", *extra, "--bundle", bundle.path, cid, **kw), cid



# --------------------------------------------------------------------------
# user namespace


def userns(bundle, host=HOST_ID, size=65536):
    bundle.config["linux"]["namespaces"].append({"type": "user"})
    bundle.config["linux"]["uidMappings"] = [{"containerID": 0, "hostID": host, "size": size}]
    bundle.config["linux"]["gidMappings"] = [{"containerID": 0, "hostID": host, "size": size}]
    bundle.write()


def bind(bundle, host_dir, dest):
    os.makedirs(os.path.join(bundle.rootfs, dest.lstrip("/")), exist_ok=True)
    bundle.config["mounts"].append({"destination": dest, "type": "bind", "source": str(host_dir),
                                    "options": ["rbind", "rw"]})
    bundle.write()


def test_user_namespace(runtime, bundle, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    os.chmod(str(data), 0o777)
    userns(bundle)
    bind(bundle, data, "/data")
    bundle.shell("id -u; id -g; cat /proc/self/uid_map /proc/self/gid_map; touch /data/made-inside")
    r, _ = run_fg(runtime, bundle)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[:2] == ["0", "0"], r.stdout
    assert lines[2].split() == ["0", str(HOST_ID), "65536"], r.stdout
    assert lines[3].split() == ["0", str(HOST_ID), "65536"], r.stdout
    st = os.stat(str(data / "made-inside"))
    assert (st.st_uid, st.st_gid) == (HOST_ID, HOST_ID), (st.st_uid, st.st_gid)


def test_user_namespace_exec(runtime, bundle, tmp_path):
    # The bundle sits in pytest's 0700 temp directory, which the mapped
    # host uid cannot walk: the runtime must still reach the rootfs and the
    # bind source, and `exec` must enter the user namespace first.
    data = tmp_path / "data"
    data.mkdir()
    os.chmod(str(data), 0o777)
    userns(bundle)
    bind(bundle, data, "/data")
    cid = running(runtime, bundle, name="uns")
    try:
        r = runtime.ok("exec", cid, "sh", "-c",
                       "id -u; id -g; cat /proc/self/uid_map; touch /data/made-by-exec; "
                       "readlink /proc/self/ns/user")
        lines = r.stdout.splitlines()
        assert lines[:2] == ["0", "0"], r.stdout
        assert lines[2].split() == ["0", str(HOST_ID), "65536"], r.stdout
        # the sandbox's user namespace (its init's), not the host's
        assert lines[3] == os.readlink("/proc/%d/ns/user" % runtime.state(cid)["pid"]), r.stdout
        assert lines[3] != os.readlink("/proc/self/ns/user"), r.stdout
        st = os.stat(str(data / "made-by-exec"))
        assert (st.st_uid, st.st_gid) == (HOST_ID, HOST_ID), (st.st_uid, st.st_gid)
    finally:
        runtime.ok("kill", cid, "KILL")
        runtime.wait_status(cid, "stopped")
        runtime.ok("delete", cid)


def test_user_namespace_needs_mappings(runtime, bundle):
    bundle.config["linux"]["namespaces"].append({"type": "user"})
    bundle.write()
    cid = runtime.new_id("uns")
    assert_error(runtime("create", "--bundle", bundle.path, cid), "uidMappings")
    assert runtime("state", cid).returncode != 0


# --------------------------------------------------------------------------
# linux.seccomp


def profile(default, rules):
    return {"defaultAction": default, "architectures": ["SCMP_ARCH_X86_64"], "syscalls": rules}


def test_oci_seccomp_narrows(runtime, bundle_factory):
    plain = bundle_factory()
    plain.args("/bin/attack", "uname")
    r, _ = run_fg(runtime, plain)
    assert r.returncode == 0 and r.stdout.startswith("uname rc=0 "), (r.stdout, r.stderr)

    b = bundle_factory()
    b.set("linux.seccomp", profile("SCMP_ACT_ALLOW",
                                   [{"names": ["uname"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]))
    b.args("/bin/attack", "uname")
    r, _ = run_fg(runtime, b)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("uname rc=-1 errno=EPERM"), r.stdout


def test_oci_seccomp_never_widens(runtime, bundle):
    bundle.set("linux.seccomp", profile("SCMP_ACT_ALLOW",
                                        [{"names": ["mount", "ptrace", "unshare"], "action": "SCMP_ACT_ALLOW"}]))
    bundle.shell("/bin/attack mount; /bin/attack ptrace_traceme; /bin/attack unshare mnt")
    r, _ = run_fg(runtime, bundle)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert [l.split()[0] for l in lines] == ["mount", "ptrace_traceme", "unshare"], r.stdout
    for l in lines:
        assert "rc=-1 errno=EPERM" in l, r.stdout


def test_oci_seccomp_default_errno(runtime, bundle):
    # A Docker-style profile: a long allowlist (here everything Quiver's own
    # table lets through but mkdir), and an errno for everything else.
    pol = json.loads(runtime.ok("policy", "--format", "json").stdout)
    allowed = [s["name"] for s in pol["syscalls"] if s["action"] != "DENY" and s["name"] not in ("mkdir", "mkdirat")]
    bundle.set("linux.seccomp", dict(profile("SCMP_ACT_ERRNO", [{"names": allowed, "action": "SCMP_ACT_ALLOW"}]),
                                     defaultErrnoRet=13))
    bundle.shell("busybox mkdir /tmp/x; echo mkdir=$?; echo still-running")
    r, _ = run_fg(runtime, bundle)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["mkdir=1", "still-running"], r.stdout
    assert "Permission denied" in r.stderr, r.stderr


def test_oci_seccomp_allowlist_without_sendmsg(runtime, bundle):
    # An allow-list that leaves out sendmsg/recvmsg (the workload needs
    # neither): the guest hands its seccomp listener over before the profile
    # is loaded, so the profile cannot break sandbox start, and it still
    # applies to the workload (mkdir gets the profile's errno).
    pol = json.loads(runtime.ok("policy", "--format", "json").stdout)
    left_out = ("sendmsg", "recvmsg", "mkdir", "mkdirat")
    allowed = [s["name"] for s in pol["syscalls"] if s["action"] != "DENY" and s["name"] not in left_out]
    bundle.set("linux.seccomp", dict(profile("SCMP_ACT_ERRNO", [{"names": allowed, "action": "SCMP_ACT_ALLOW"}]),
                                     defaultErrnoRet=13))
    for nnp in (False, True):
        bundle.set("process.noNewPrivileges", nnp)
        bundle.shell("busybox mkdir /tmp/x; echo mkdir=$?; echo still-running")
        r, _ = run_fg(runtime, bundle)
        assert r.returncode == 0, (nnp, r.stderr)
        assert r.stdout.splitlines() == ["mkdir=1", "still-running"], (nnp, r.stdout)
        assert "Permission denied" in r.stderr, (nnp, r.stderr)


def test_oci_seccomp_bad_profile(runtime, bundle):
    bundle.set("linux.seccomp", profile("SCMP_ACT_NOTIFY", []))
    cid = runtime.new_id("sc")
    assert_error(runtime("create", "--bundle", bundle.path, cid), "linux.seccomp")
    assert runtime("state", cid).returncode != 0


# --------------------------------------------------------------------------
# exec


def test_exec_process_file(runtime, bundle, tmp_path):
    cid = running(runtime, bundle, name="xp")
    proc = {"terminal": False, "user": {"uid": 1234, "gid": 4321, "additionalGids": [5]},
            "args": ["sh", "-c", "id -u; id -g; pwd; echo $FOO; ulimit -n; cat"],
            "env": ["PATH=/bin", "FOO=from file"], "cwd": "/etc",
            "rlimits": [{"type": "RLIMIT_NOFILE", "soft": 321, "hard": 321}]}
    pf = tmp_path / "process.json"
    pf.write_text(json.dumps(proc))
    r = runtime("exec", "--process", str(pf), cid, input="stdin-data\n")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["1234", "4321", "/etc", "from file", "321", "stdin-data"], r.stdout

    pf.write_text(json.dumps(dict(proc, args=["sh", "-c", "exit 9"])))
    assert runtime("exec", "--process", str(pf), cid).returncode == 9

    pf.write_text("{not json")
    assert_error(runtime("exec", "--process", str(pf), cid), "process.json")
    pf.write_text(json.dumps(dict(proc, args=[])))
    assert_error(runtime("exec", "--process", str(pf), cid), "args")
    assert_error(runtime("exec", "--process", str(tmp_path / "missing.json"), cid), "missing.json")
    assert runtime.status(cid) == "running"


def test_exec_tty_console_socket(runtime, bundle, tmp_path):
    cid = running(runtime, bundle, name="xt")
    cs = ConsoleSocket(str(tmp_path / "exec-console.sock"))
    p = subprocess.Popen(runtime.argv("exec", "-t", "--console-socket", cs.path, cid,
                                      "sh", "-c", "tty; echo exec-tty-$((6*7))"),
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    LIVE_POPEN.add(p.pid)
    try:
        master = cs.get()
        out = read_until(master, b"exec-tty-42")
        assert b"exec-tty-42" in out and b"/dev/pts/" in out, out
        rc = p.wait(timeout=CMD_TIMEOUT)
        assert rc == 0, p.stderr.read()
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        LIVE_POPEN.discard(p.pid)
        cs.close()
    assert runtime.status(cid) == "running"


def test_exec_tty_without_console_socket(runtime, bundle):
    cid = running(runtime, bundle, name="xt2")
    r = runtime("exec", "-t", cid, "true")
    assert_error(r, "console")


# --------------------------------------------------------------------------
# --log / --log-format json


def log_lines(path):
    with open(path) as f:
        text = f.read()
    assert text.endswith("\n"), "log does not end with a newline: %r" % text[-200:]
    return [json.loads(l) for l in text.splitlines() if l.strip()]


def test_log_json_on_failed_create(runtime, bundle, tmp_path):
    log = str(tmp_path / "runtime.log")
    cid = runtime.new_id("log")
    missing = str(tmp_path / "no-such-bundle")
    r = runtime("--log", log, "--log-format", "json", "create", "--bundle", missing, cid)
    assert_error(r, "no-such-bundle")
    entries = log_lines(log)
    last = entries[-1]
    assert last["level"] == "error" and "no-such-bundle" in last["msg"], last
    assert r.stderr.strip() == last["msg"]
    assert set(last) >= {"level", "msg", "time"}

    # A config error found by the guest: the last line is the one qctl printed.
    bundle.set("process.args", [])
    cid = runtime.new_id("log")
    r = runtime("--log", log, "--log-format", "json", "create", "--bundle", bundle.path, cid)
    assert r.returncode == 1
    entries = log_lines(log)
    assert entries[-1]["level"] == "error" and entries[-1]["msg"] == r.stderr.strip(), (entries[-1], r.stderr)
    assert "process.args" in entries[-1]["msg"]
    assert runtime("state", cid).returncode != 0


def test_log_text(runtime, tmp_path):
    log = str(tmp_path / "runtime.log")
    r = runtime("--log", log, "state", runtime.new_id("nosuch"))
    assert r.returncode == 1
    with open(log) as f:
        text = f.read()
    assert r.stderr.strip() in text


# --------------------------------------------------------------------------
# terminal without a console socket


def test_run_terminal_without_console_socket(runtime, bundle):
    """runc run -t in the foreground proxies the pty to its own terminal, and
    fails when it has none; Quiver has no proxy and says so, at once."""
    bundle.set("process.terminal", True).args("sh")
    r, cid = run_fg(runtime, bundle, timeout=CMD_TIMEOUT)
    assert_error(r, "terminal", "console-socket")
    assert runtime("state", cid).returncode != 0
    assert not os.path.exists(os.path.join(runtime.root, cid))


# --------------------------------------------------------------------------
# --preserve-fds


def test_preserve_fds(runtime, bundle, tmp_path):
    out = tmp_path / "fd3.out"
    bundle.shell("echo through-fd3 >&3 || exit 5; ls /proc/self/fd")
    cid = runtime.new_id("pfd")
    argv = runtime.argv("run", "--preserve-fds", "1", "--bundle", bundle.path, cid)
    # fd 3 of qctl is the file; nothing else beyond stdio leaks in.
    r = subprocess.run(["sh", "-c", 'exec "$@" 3>"$0"', str(out)] + argv, stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=CMD_TIMEOUT)
    assert r.returncode == 0, r.stderr
    assert out.read_text() == "through-fd3\n"
    fds = sorted(int(x) for x in r.stdout.split())
    assert fds[:4] == [0, 1, 2, 3], fds
    assert len(fds) == 5, "fds in the workload: %s (0-3 and ls's own directory fd expected)" % fds

    # Without --preserve-fds, fd 3 is not passed.
    cid = runtime.new_id("pfd")
    argv = runtime.argv("run", "--bundle", bundle.path, cid)
    r = subprocess.run(["sh", "-c", 'exec "$@" 3>>"$0"', str(out)] + argv, stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=CMD_TIMEOUT)
    assert r.returncode == 5, (r.returncode, r.stderr)
    assert out.read_text() == "through-fd3\n"


# --------------------------------------------------------------------------
# annotations


def test_annotations_in_state(runtime, bundle):
    ann = {"org.opencontainers.image.ref.name": "busybox:latest", "io.quiver.test": "a value with spaces"}
    bundle.set("annotations", ann).shell(LOOP)
    cid = runtime.new_id("ann")
    runtime.ok("create", "--bundle", bundle.path, cid)
    assert runtime.state(cid)["annotations"] == ann
    runtime.ok("start", cid)
    assert runtime.state(cid)["annotations"] == ann
    items = {c["id"]: c for c in json.loads(runtime.ok("list", "-f", "json").stdout)}
    assert items[cid]["annotations"] == ann
    pid = runtime.state(cid)["pid"]
    runtime.ok("delete", "--force", cid)
    assert wait_gone(pid)


def test_no_annotations_key_when_none(runtime, bundle):
    bundle.shell(LOOP)
    cid = runtime.new_id("ann")
    runtime.ok("create", "--bundle", bundle.path, cid)
    assert "annotations" not in runtime.state(cid)


def test_linux_devices_are_made(runtime, bundle):
    # podman --device: linux.devices names the node, the devices cgroup
    # (linux.resources.devices) says whether it may be opened.
    bundle.set("linux.devices", [
        {"path": "/dev/mynull", "type": "c", "major": 1, "minor": 3, "fileMode": 0o620},
        {"path": "/dev/sub/myzero", "type": "c", "major": 1, "minor": 5, "fileMode": 0o664, "uid": 1, "gid": 2},
        {"path": "/dev/mypipe", "type": "p", "fileMode": 0o600},
        {"path": "/dev/myloop", "type": "b", "major": 7, "minor": 0, "fileMode": 0o666},
    ])
    bundle.set("linux.resources.devices", [{"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"}])
    bundle.shell("busybox stat -c '%n %F %t:%T %a %u %g' /dev/mynull /dev/sub/myzero /dev/mypipe; "
                 "echo x > /dev/mynull && echo null-writable; "
                 "busybox head -c1 /dev/sub/myzero >/dev/null 2>&1 && echo zero-readable || echo zero-denied; "
                 "busybox head -c1 /dev/myloop >/dev/null 2>&1 && echo loop-readable || echo loop-denied")
    r, _ = run_fg(runtime, bundle)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "/dev/mynull character special file 1:3 620 0 0", r.stdout
    assert lines[1] == "/dev/sub/myzero character special file 1:5 664 1 2", r.stdout
    assert lines[2].startswith("/dev/mypipe fifo ") and " 600 0 0" in lines[2], r.stdout
    # The owner (root) may write the 0620 node; the 0664 node of uid 1 is
    # readable by others, and /dev/zero's default allow rule is appended
    # after the config's (as runc does), so the cgroup lets it be read.
    # A node is no key by itself: the block device is not in the cgroup's
    # allow-list, so it cannot be opened.
    assert lines[3:] == ["null-writable", "zero-readable", "loop-denied"], r.stdout
