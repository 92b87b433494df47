"""The OCI lifecycle through runc's command grammar: create/start/state/kill/
delete, run, exec, list, ps, and what config.json says the workload gets."""

import json
import os
import subprocess
import tempfile

import pytest

from conftest import (LOOP, running, IS_QUIVER, LIVE_POPEN, CMD_TIMEOUT, SeqpacketPeers, assert_error, cgroup_paths_of,
                      pid_alive, poll_until, reap_zombies, wait_gone)



def created(runtime, bundle, name="c"):
    cid = runtime.new_id(name)
    runtime.ok("create", "--bundle", bundle.path, cid)
    return cid



def run_fg(runtime, bundle, **kw):
    cid = runtime.new_id("run")
    return runtime("run", "--bundle", bundle.path, cid, **kw), cid


# --------------------------------------------------------------------------
# create / start / state / kill / delete


def test_create_start_state_delete(runtime, bundle):
    bundle.shell(LOOP)
    cid = created(runtime, bundle)
    st = runtime.state(cid)
    assert st["id"] == cid
    assert st["status"] == "created"
    assert isinstance(st["ociVersion"], str) and st["ociVersion"]
    assert st["pid"] > 0 and pid_alive(st["pid"])
    assert os.path.isabs(st["bundle"])
    assert os.path.realpath(st["bundle"]) == os.path.realpath(bundle.path)

    runtime.ok("start", cid)
    st = runtime.state(cid)
    assert st["status"] == "running"
    assert st["pid"] > 0 and pid_alive(st["pid"])
    pid = st["pid"]
    cgroups = cgroup_paths_of(pid)

    runtime.ok("kill", cid, "TERM")
    assert runtime.wait_status(cid, "stopped"), runtime.status(cid)
    st = runtime.state(cid)
    assert st["status"] == "stopped"

    runtime.ok("delete", cid)
    assert runtime("state", cid).returncode != 0
    assert not os.path.exists(os.path.join(runtime.root, cid))
    assert wait_gone(pid)
    for ctrl, path in cgroups.items():
        if cid in path:
            assert not os.path.exists(path), "cgroup %s left after delete" % path


def test_start_twice_fails(runtime, bundle):
    cid = running(runtime, bundle)
    r = runtime("start", cid)
    assert_error(r)


@pytest.mark.parametrize("sig", ["TERM", "SIGTERM", "15"])
def test_kill_signal_forms(runtime, bundle, sig):
    cid = running(runtime, bundle)
    runtime.ok("kill", cid, sig)
    assert runtime.wait_status(cid, "stopped")


def test_kill_default_is_term(runtime, bundle):
    cid = running(runtime, bundle)
    runtime.ok("kill", cid)
    assert runtime.wait_status(cid, "stopped")


def test_kill_bad_signal(runtime, bundle):
    cid = running(runtime, bundle)
    r = runtime("kill", cid, "NOSUCHSIG")
    assert_error(r, "NOSUCHSIG")
    assert runtime.status(cid) == "running"


def test_kill_all(runtime, bundle):
    cid = running(runtime, bundle, script="sleep 1000 & sleep 1000 & wait")
    pids = json.loads(runtime.ok("ps", "--format", "json", cid).stdout)
    assert len(pids) >= 3, pids  # the shell and two sleeps (plus a supervisor for Quiver)
    runtime.ok("kill", "--all", cid, "KILL")
    assert runtime.wait_status(cid, "stopped")
    for p in pids:
        assert wait_gone(p), "pid %d survived kill --all" % p


def test_delete_refuses_running_then_force(runtime, bundle):
    cid = running(runtime, bundle)
    pid = runtime.state(cid)["pid"]
    r = runtime("delete", cid)
    assert_error(r, cid)
    assert runtime.status(cid) == "running"
    runtime.ok("delete", "--force", cid)
    assert runtime("state", cid).returncode != 0
    assert wait_gone(pid)
    assert not os.path.exists(os.path.join(runtime.root, cid))


@pytest.mark.quiver_only
def test_stopped_on_the_exit_report_and_delete_waits_for_the_supervisor(runtime, bundle):
    """vmmd stops a sandbox when its supervisor's exit report lands in
    ROOT/ID (inotify), not when the supervisor is gone: that exit tears the
    namespaces down first.  A report is written here by hand while the
    workload still loops, so the supervisor outlives it for good: the
    sandbox is stopped with the report's exit code all the same, and a
    plain delete then waits for the supervisor (SIGKILL after a moment)
    before anything of the sandbox goes."""
    cid = running(runtime, bundle)
    pid = runtime.state(cid)["pid"]
    d = os.path.join(runtime.root, cid)
    with open(os.path.join(d, ".exit.tmp.test"), "w") as f:
        json.dump({"status": 42 << 8, "exit_code": 42, "signal": 0}, f)
    os.rename(os.path.join(d, ".exit.tmp.test"), os.path.join(d, "exit"))
    assert runtime.wait_status(cid, "stopped"), runtime.state(cid)
    assert pid_alive(pid), "the supervisor exited: nothing shows the report was read first"
    assert json.loads(runtime.ok("inspect", cid).stdout)["exit"]["exit_code"] == 42
    r = runtime("delete", cid)
    assert r.returncode == 0, r.stderr
    assert wait_gone(pid, 0.5), "supervisor %d outlived the delete" % pid
    assert runtime("state", cid).returncode != 0
    assert not os.path.exists(d)


def test_delete_created_force(runtime, bundle):
    cid = created(runtime, bundle)
    pid = runtime.state(cid)["pid"]
    runtime.ok("delete", "--force", cid)
    assert wait_gone(pid)
    assert not os.path.exists(os.path.join(runtime.root, cid))


# --------------------------------------------------------------------------
# run


@pytest.mark.parametrize("code", [0, 3])
def test_run_exit_status(runtime, bundle, code):
    bundle.shell("exit %d" % code)
    r, cid = run_fg(runtime, bundle)
    assert r.returncode == code, r.stderr
    # A foreground run deletes the container when it ends.
    assert runtime("state", cid).returncode != 0


def test_run_killed_by_signal(runtime, bundle):
    bundle.shell("echo ready; exec sleep 1000")
    cid = runtime.new_id("run")
    p = subprocess.Popen(runtime.argv("run", "--bundle", bundle.path, cid), stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    LIVE_POPEN.add(p.pid)
    try:
        assert p.stdout.readline().strip() == "ready"
        assert runtime.wait_status(cid, "running")
        runtime.ok("kill", cid, "KILL")
        rc = p.wait(timeout=CMD_TIMEOUT)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        LIVE_POPEN.discard(p.pid)
    assert rc == 128 + 9, p.stderr.read()


def test_run_detached_and_pid_file(runtime, bundle, tmp_path):
    bundle.shell(LOOP)
    cid = runtime.new_id("det")
    pidfile = str(tmp_path / "pid")
    r = runtime("run", "-d", "--pid-file", pidfile, "--bundle", bundle.path, cid)
    assert r.returncode == 0, r.stderr
    with open(pidfile) as f:
        pid = int(f.read().strip())
    assert pid > 0 and pid_alive(pid)
    st = runtime.state(cid)
    assert st["status"] == "running"
    assert st["pid"] == pid
    runtime.ok("kill", cid, "KILL")
    assert runtime.wait_status(cid, "stopped")
    runtime.ok("delete", cid)
    assert wait_gone(pid)


def test_create_pid_file(runtime, bundle, tmp_path):
    pidfile = str(tmp_path / "pid")
    cid = runtime.new_id()
    runtime.ok("create", "--pid-file", pidfile, "--bundle", bundle.path, cid)
    with open(pidfile) as f:
        pid = int(f.read().strip())
    assert pid_alive(pid)
    assert runtime.state(cid)["pid"] == pid


def test_stdout_stderr(runtime, bundle):
    bundle.shell("echo to-out; echo to-err >&2")
    r, _ = run_fg(runtime, bundle)
    assert r.returncode == 0
    assert r.stdout == "to-out\n"
    assert "to-err\n" in r.stderr


def test_stdin(runtime, bundle):
    bundle.args("cat")
    r, _ = run_fg(runtime, bundle, input="hello through stdin\n")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "hello through stdin\n"


def test_large_output(runtime, bundle):
    # More than a pipe buffer: the runtime must not block or truncate.
    bundle.shell("i=0; while [ $i -lt 4000 ]; do echo line-$i; i=$((i+1)); done")
    r, _ = run_fg(runtime, bundle)
    assert r.returncode == 0
    lines = r.stdout.splitlines()
    assert len(lines) == 4000 and lines[-1] == "line-3999"


# --------------------------------------------------------------------------
# what the config gives the workload


def test_hostname(runtime, bundle):
    bundle.set("hostname", "quiver-test-host").args("hostname")
    r, _ = run_fg(runtime, bundle)
    assert r.stdout.strip() == "quiver-test-host", r.stderr


def test_user(runtime, bundle):
    bundle.set("process.user", {"uid": 1234, "gid": 4321, "additionalGids": [5, 65534]}).args("id")
    r, _ = run_fg(runtime, bundle)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "uid=1234" in out and "gid=4321" in out, out
    assert "5" in out.split("groups=")[1] and "65534" in out.split("groups=")[1], out


def test_env(runtime, bundle):
    bundle.set("process.env", ["PATH=/bin", "FOO=bar baz", "EMPTY="]).args("env")
    r, _ = run_fg(runtime, bundle)
    env = set(r.stdout.splitlines())
    assert "FOO=bar baz" in env and "EMPTY=" in env and "PATH=/bin" in env, r.stdout


def test_cwd(runtime, bundle):
    bundle.set("process.cwd", "/etc").args("pwd")
    r, _ = run_fg(runtime, bundle)
    assert r.stdout.strip() == "/etc", r.stderr


def test_readonly_root(runtime, bundle):
    bundle.shell("touch /x")
    r, _ = run_fg(runtime, bundle)
    assert r.returncode != 0
    assert "Read-only file system" in r.stderr
    assert not os.path.exists(os.path.join(bundle.rootfs, "x"))


def test_writable_root(runtime, bundle):
    bundle.writable().shell("touch /x")
    r, _ = run_fg(runtime, bundle)
    assert r.returncode == 0, r.stderr
    assert os.path.exists(os.path.join(bundle.rootfs, "x"))


def test_masked_paths(runtime, bundle):
    bundle.shell("cat /proc/kcore | wc -c; ls /sys/firmware | wc -l")
    r, _ = run_fg(runtime, bundle)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["0", "0"], r.stdout


def test_readonly_paths(runtime, bundle):
    # domainname is UTS-namespaced: harmless if the write ever got through.
    bundle.shell("echo x > /proc/sys/kernel/domainname")
    r, _ = run_fg(runtime, bundle)
    assert r.returncode != 0
    assert "Read-only file system" in r.stderr, r.stderr


def test_rlimits(runtime, bundle):
    bundle.set("process.rlimits", [{"type": "RLIMIT_NOFILE", "soft": 777, "hard": 888},
                                   {"type": "RLIMIT_NPROC", "soft": 1000, "hard": 1000}])
    bundle.shell("ulimit -n; ulimit -Hn; ulimit -u")
    r, _ = run_fg(runtime, bundle)
    assert r.stdout.split() == ["777", "888", "1000"], (r.stdout, r.stderr)


def test_rlimit_above_hard_limit(runtime, bundle):
    # Root here lacks CAP_SYS_RESOURCE; the host's hard nofile is 20000.
    with open("/proc/self/limits") as f:
        hard = [l for l in f if l.startswith("Max open files")][0].split()[4]
    if hard == "unlimited":
        pytest.skip("hard nofile is unlimited here")
    over = int(hard) + 10000
    bundle.set("process.rlimits", [{"type": "RLIMIT_NOFILE", "soft": over, "hard": over}])
    cid = runtime.new_id()
    r = runtime("run", "--bundle", bundle.path, cid)
    assert_error(r, "RLIMIT_NOFILE")
    assert runtime("state", cid).returncode != 0
    assert not os.path.exists(os.path.join(runtime.root, cid))


def test_memory_and_pids_limits(runtime, bundle):
    bundle.set("linux.resources.memory", {"limit": 64 << 20})
    bundle.set("linux.resources.pids", {"limit": 50})
    cid = running(runtime, bundle)
    pid = runtime.state(cid)["pid"]
    cg = cgroup_paths_of(pid)
    with open(os.path.join(cg["memory"], "memory.limit_in_bytes")) as f:
        assert int(f.read()) == 64 << 20
    with open(os.path.join(cg["pids"], "pids.max")) as f:
        assert f.read().strip() == "50"


def test_pids_limit_enforced(runtime, bundle):
    bundle.set("linux.resources.pids", {"limit": 8})
    bundle.shell("for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16; do sleep 5 & done; echo all-started")
    r, _ = run_fg(runtime, bundle)
    assert "all-started" not in r.stdout, (r.stdout, r.stderr)
    assert "fork" in r.stderr, r.stderr


# --------------------------------------------------------------------------
# exec


@pytest.mark.quiver_only
def test_hostile_peers_on_guest_sock(runtime, bundle):
    """Peers of a running sandbox's guest.sock (its supervisor's control
    socket) that hang up at once, send an empty message, garbage or a
    message too big, or connect and say nothing: the supervisor turns each
    away, and exec, kill and the exit report work as before."""
    cid = running(runtime, bundle)
    spid = runtime.state(cid)["pid"]
    fds = len(os.listdir("/proc/%d/fd" % spid))
    with SeqpacketPeers(os.path.join(runtime.root, cid, "guest.sock")) as peers:
        peers.hang_up()
        for payload in (b"", b"\xff" * 64, os.urandom(3000), os.urandom(65000)):
            peers.open().send(payload)
        peers.open()  # says nothing
        r = runtime("exec", cid, "echo", "still")
        assert r.returncode == 0 and r.stdout == "still\n", r.stderr
        assert runtime.status(cid) == "running"
    assert poll_until(lambda: len(os.listdir("/proc/%d/fd" % spid)) <= fds, 10), (
        fds, os.listdir("/proc/%d/fd" % spid))
    runtime.ok("kill", cid, "TERM")
    assert runtime.wait_status(cid, "stopped")
    assert json.loads(runtime.ok("inspect", cid).stdout)["exit"]["exit_code"] == 42
    runtime.ok("delete", cid)


def test_exec(runtime, bundle, tmp_path):
    cid = running(runtime, bundle)
    r = runtime("exec", cid, "echo", "a b", "c")
    assert r.returncode == 0 and r.stdout == "a b c\n", r.stderr
    r = runtime("exec", "--env", "FOO=from-exec", cid, "sh", "-c", "echo $FOO")
    assert r.stdout == "from-exec\n", r.stderr
    r = runtime("exec", "--cwd", "/etc", cid, "pwd")
    assert r.stdout == "/etc\n", r.stderr
    r = runtime("exec", cid, "sh", "-c", "exit 5")
    assert r.returncode == 5
    r = runtime("exec", cid, "cat", input="exec stdin\n")
    assert r.stdout == "exec stdin\n"

    proc = {"terminal": False, "user": {"uid": 1234, "gid": 4321}, "args": ["sh", "-c", "id -u; pwd; echo $X"],
            "env": ["PATH=/bin", "X=from-process-file"], "cwd": "/tmp"}
    pf = tmp_path / "process.json"
    pf.write_text(json.dumps(proc))
    r = runtime("exec", "--process", str(pf), cid)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["1234", "/tmp", "from-process-file"]


def test_exec_detached(runtime, bundle):
    cid = running(runtime, bundle)
    before = set(json.loads(runtime.ok("ps", "-f", "json", cid).stdout))
    runtime.ok("exec", "-d", cid, "sleep", "1000")
    after = poll_until(lambda: set(json.loads(runtime.ok("ps", "-f", "json", cid).stdout)) - before)
    assert after, "the detached exec'd process is not in ps"
    runtime.ok("kill", "--all", cid, "KILL")
    assert runtime.wait_status(cid, "stopped")
    runtime.ok("delete", cid)
    for p in after:
        assert wait_gone(p)


def test_exec_not_running(runtime, bundle):
    bundle.args("true")
    cid = created(runtime, bundle)
    runtime.ok("start", cid)
    assert runtime.wait_status(cid, "stopped")
    r = runtime("exec", cid, "true")
    assert_error(r)


# --------------------------------------------------------------------------
# list / ps / features / spec


def test_list(runtime, bundle):
    cid = running(runtime, bundle)
    r = runtime.ok("list")
    assert cid in r.stdout
    r = runtime.ok("list", "-f", "json")
    items = {c["id"]: c for c in json.loads(r.stdout)}
    assert cid in items
    c = items[cid]
    assert c["status"] == "running"
    assert c["pid"] == runtime.state(cid)["pid"]
    assert os.path.realpath(c["bundle"]) == os.path.realpath(bundle.path)
    r = runtime.ok("list", "-q")
    assert cid in r.stdout.split()


def test_ps(runtime, bundle):
    cid = running(runtime, bundle)
    st = runtime.state(cid)
    r = runtime.ok("ps", cid)
    assert "PID" in r.stdout.splitlines()[0]
    pids = json.loads(runtime.ok("ps", "-f", "json", cid).stdout)
    assert isinstance(pids, list) and all(isinstance(p, int) for p in pids)
    assert st["pid"] in pids


def test_features(runtime):
    r = runtime.ok("features")
    f = json.loads(r.stdout)
    assert "ociVersionMin" in f and "ociVersionMax" in f
    assert isinstance(f.get("mountOptions", []), list)


def test_spec_is_loadable(runtime, bundle):
    d = tempfile.mkdtemp(dir=os.path.dirname(bundle.path))
    runtime.ok("spec", "--bundle", d)
    with open(os.path.join(d, "config.json")) as f:
        spec = json.load(f)
    assert spec["ociVersion"] and spec["process"]["args"] and spec["root"]["path"] == "rootfs"
    # Use it as is apart from the workload and the terminal.
    spec["process"]["args"] = ["sh", "-c", "exit 0"]
    spec["process"]["terminal"] = False
    bundle.config = spec
    bundle.write()
    r, _ = run_fg(runtime, bundle)
    assert r.returncode == 0, r.stderr


# --------------------------------------------------------------------------
# errors


def test_duplicate_id(runtime, bundle):
    cid = created(runtime, bundle)
    r = runtime("create", "--bundle", bundle.path, cid)
    assert_error(r, cid)
    assert runtime.status(cid) == "created"


@pytest.mark.parametrize("cmd", [["state"], ["start"], ["kill"], ["delete"], ["ps"], ["exec", "--", "true"]])
def test_unknown_id(runtime, cmd):
    cid = runtime.new_id("nosuch")
    args = list(cmd)
    if args[0] == "exec":
        args = ["exec", cid, "true"]
    else:
        args.append(cid)
    r = runtime(*args)
    assert_error(r, cid)


def test_missing_bundle(runtime, tmp_path):
    cid = runtime.new_id()
    missing = str(tmp_path / "no-such-bundle")
    r = runtime("create", "--bundle", missing, cid)
    assert_error(r, "no-such-bundle")
    assert runtime("state", cid).returncode != 0
    assert not os.path.exists(os.path.join(runtime.root, cid))


def test_exec_missing_binary(runtime, bundle):
    bundle.args("/bin/no-such-binary")
    cid = runtime.new_id()
    r = runtime("run", "--bundle", bundle.path, cid)
    assert r.returncode != 0
    if IS_QUIVER:
        assert "no-such-binary" in r.stderr and len(r.stderr.splitlines()) == 1, r.stderr
