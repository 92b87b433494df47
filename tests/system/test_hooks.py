"""OCI hooks (runtime-spec config.md, "POSIX-platform Hooks"): each kind runs
at its point of the lifecycle, in the right namespace, with the container's
state on stdin, its args and env, and its timeout; a failing
createRuntime/createContainer/startContainer hook fails the operation with
one line, a failing poststart/poststop hook does not."""

import json
import os

import pytest

from conftest import assert_error

pytestmark = pytest.mark.quiver_only

LOOP = "trap 'exit 0' TERM; while :; do sleep 0.05; done"

# Runs on the host (with the host's /bin/sh) and in the container (busybox):
# a hook's environment is only its own `env`, hence the absolute paths.
SCRIPT = r"""#!/bin/sh
kind=$1
shift
state=$(/bin/cat)
mnt=$(/bin/readlink /proc/self/ns/mnt)
{
  echo "argv0=$0"
  echo "args=$*"
  echo "var=$HOOK_VAR"
  echo "mnt=$mnt"
  echo "state=$state"
} > "$HOOK_DIR/$kind.rec"
echo "$kind" >> "$HOOK_DIR/order"
exit ${HOOK_EXIT:-0}
"""

KINDS = ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"]


class Hooks:
    """A host directory with the hook script, bind-mounted at /hooks so that
    startContainer (which runs in the container) finds it too."""

    def __init__(self, bundle, tmp_path):
        self.dir = str(tmp_path / "hooks")
        os.mkdir(self.dir)
        self.script = os.path.join(self.dir, "hook.sh")
        with open(self.script, "w") as f:
            f.write(SCRIPT)
        os.chmod(self.script, 0o755)
        self.bundle = bundle
        os.makedirs(os.path.join(bundle.rootfs, "hooks"), exist_ok=True)
        bundle.config["mounts"].append({"destination": "/hooks", "type": "bind", "source": self.dir,
                                        "options": ["rbind", "rw"]})
        bundle.config["hooks"] = {}
        bundle.write()

    def add(self, kind, extra_args=(), env=(), timeout=None, exit=0):
        in_container = kind == "startContainer"
        path = "/hooks/hook.sh" if in_container else self.script
        hook = {"path": path, "args": ["hook.sh", kind] + list(extra_args),
                "env": ["HOOK_DIR=%s" % ("/hooks" if in_container else self.dir),
                        "HOOK_EXIT=%d" % exit] + list(env)}
        if timeout is not None:
            hook["timeout"] = timeout
        self.bundle.config["hooks"].setdefault(kind, []).append(hook)
        self.bundle.write()
        return hook

    def add_raw(self, kind, hook):
        self.bundle.config["hooks"].setdefault(kind, []).append(hook)
        self.bundle.write()

    def record(self, kind):
        path = os.path.join(self.dir, kind + ".rec")
        if not os.path.exists(path):
            return None
        out = {}
        with open(path) as f:
            for line in f:
                k, _, v = line.rstrip("\n").partition("=")
                out[k] = v
        out["state"] = json.loads(out["state"])
        return out

    def order(self):
        try:
            with open(os.path.join(self.dir, "order")) as f:
                return f.read().split()
        except FileNotFoundError:
            return []


def host_mnt():
    return os.readlink("/proc/self/ns/mnt")


def test_every_hook_runs_in_order_with_its_state(runtime, bundle, tmp_path):
    h = Hooks(bundle, tmp_path)
    bundle.config["annotations"] = {"org.example.k": "v"}
    bundle.shell(LOOP)
    for k in KINDS:
        h.add(k, extra_args=["x1"], env=["HOOK_VAR=%s-var" % k])
    cid = runtime.new_id("hk")

    runtime.ok("create", "--bundle", bundle.path, cid)
    spid = runtime.state(cid)["pid"]
    smnt = os.readlink("/proc/%d/ns/mnt" % spid)
    assert smnt != host_mnt()
    assert h.order() == ["prestart", "createRuntime", "createContainer"]

    runtime.ok("start", cid)
    assert h.order() == ["prestart", "createRuntime", "createContainer", "startContainer", "poststart"]
    runtime.ok("kill", cid, "KILL")
    assert runtime.wait_status(cid, "stopped")
    runtime.ok("delete", cid)
    assert h.order() == KINDS

    bundle_dir = os.path.realpath(bundle.path)
    want = {"prestart": ("creating", host_mnt()), "createRuntime": ("creating", host_mnt()),
            "createContainer": ("creating", smnt), "startContainer": ("created", smnt),
            "poststart": ("running", host_mnt()), "poststop": ("stopped", host_mnt())}
    for k in KINDS:
        rec = h.record(k)
        status, mnt = want[k]
        assert rec["argv0"] == ("/hooks/hook.sh" if k == "startContainer" else h.script), (k, rec)
        assert rec["args"] == "x1", (k, rec)
        assert rec["var"] == "%s-var" % k, (k, rec)
        assert rec["mnt"] == mnt, (k, rec)
        st = rec["state"]
        assert st["id"] == cid and st["status"] == status, (k, st)
        assert st["bundle"] == bundle_dir, (k, st)
        assert st["annotations"] == {"org.example.k": "v"}, (k, st)
        assert st["ociVersion"], (k, st)
        if k == "poststop":
            assert "pid" not in st, st
        else:
            assert st["pid"] == spid, (k, st)


def test_run_runs_the_hooks(runtime, bundle, tmp_path):
    h = Hooks(bundle, tmp_path)
    for k in KINDS:
        h.add(k)
    cid = runtime.new_id("hk")
    r = runtime("run", "--bundle", bundle.path, cid)
    assert r.returncode == 0, r.stderr
    # run deletes the container once the workload is gone, as runc does
    assert h.order() == KINDS
    assert runtime("state", cid).returncode != 0


@pytest.mark.parametrize("kind", ["prestart", "createRuntime", "createContainer"])
def test_failing_create_hook_fails_create(runtime, bundle, tmp_path, kind):
    h = Hooks(bundle, tmp_path)
    h.add(kind)
    h.add(kind, exit=3)
    h.add("poststop")
    cid = runtime.new_id("hk")
    assert_error(runtime("create", "--bundle", bundle.path, cid),
                 "hook %s[1] %s: exit status 3" % (kind, h.script))
    assert runtime("state", cid).returncode != 0
    assert h.order() == [kind, kind]


def test_missing_hook_binary(runtime, bundle, tmp_path):
    h = Hooks(bundle, tmp_path)
    h.add_raw("createRuntime", {"path": "/nonexistent/hook"})
    cid = runtime.new_id("hk")
    assert_error(runtime("create", "--bundle", bundle.path, cid),
                 "hook createRuntime[0] /nonexistent/hook: No such file or directory")
    assert runtime("state", cid).returncode != 0


def test_failing_start_container_hook_fails_start(runtime, bundle, tmp_path):
    h = Hooks(bundle, tmp_path)
    bundle.shell("echo workload-ran > /hooks/workload")
    h.add("startContainer", exit=4)
    h.add("poststart")
    cid = runtime.new_id("hk")
    runtime.ok("create", "--bundle", bundle.path, cid)
    assert_error(runtime("start", cid), "hook startContainer[0] /hooks/hook.sh: exit status 4")
    assert not os.path.exists(os.path.join(h.dir, "workload"))
    assert h.order() == ["startContainer"]
    runtime.ok("delete", "--force", cid)


def test_failing_post_hooks_are_not_fatal(runtime, bundle, tmp_path):
    h = Hooks(bundle, tmp_path)
    bundle.shell(LOOP)
    h.add("poststart", exit=1)
    h.add("poststart")
    h.add("poststop", exit=1)
    h.add("poststop")
    cid = runtime.new_id("hk")
    runtime.ok("create", "--bundle", bundle.path, cid)
    runtime.ok("start", cid)
    assert runtime.status(cid) == "running"
    runtime.ok("delete", "--force", cid)
    assert h.order() == ["poststart", "poststart", "poststop", "poststop"]


def test_hook_timeout(runtime, bundle, tmp_path):
    h = Hooks(bundle, tmp_path)
    h.add_raw("createRuntime", {"path": "/bin/sleep", "args": ["sleep", "60"], "timeout": 1})
    cid = runtime.new_id("hk")
    assert_error(runtime("create", "--bundle", bundle.path, cid, timeout=30),
                 "hook createRuntime[0] /bin/sleep: timed out after 1 s")
    assert runtime("state", cid).returncode != 0
