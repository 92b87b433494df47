"""Malformed or meaningless config.json files: each must fail `create` with
exactly one line on stderr naming config.json and the field, exit status 1,
and leave nothing behind (no state, cgroup, mount or process; the leak
checker sees to the last three)."""

import os

import pytest

from conftest import DELETE, IS_QUIVER, assert_error


def setp(path, value):
    def f(b):
        b.set(path, value)
    return f


def raw(text):
    def f(b):
        with open(b.config_path, "w") as fh:
            fh.write(text)
    return f


def mutate(fn):
    def f(b):
        fn(b.config)
        b.write()
    return f


def add_mount(m):
    return mutate(lambda c: c["mounts"].append(m))


def add_ns(t):
    return mutate(lambda c: c["linux"]["namespaces"].append({"type": t}))


def root_file(b):
    with open(os.path.join(b.path, "afile"), "w") as fh:
        fh.write("x")
    b.set("root.path", "afile")


# (name, how to break the config, substring the message must contain)
CASES = [
    ("not-json", raw("{ this is not json"), "config.json"),
    ("not-an-object", raw("[1, 2, 3]"), "config.json"),
    ("empty-file", raw(""), "config.json"),
    ("args-empty", setp("process.args", []), "process.args"),
    ("args-not-strings", setp("process.args", ["sh", 5]), "process.args"),
    ("args-not-array", setp("process.args", "sh -c true"), "process.args"),
    ("cwd-relative", setp("process.cwd", "tmp"), "process.cwd"),
    ("cwd-missing", setp("process.cwd", DELETE), "process.cwd"),
    ("env-not-strings", setp("process.env", ["A=1", {"B": 2}]), "process.env"),
    ("ns-unknown", add_ns("bogus"), "linux.namespaces"),
    ("ns-duplicate", add_ns("pid"), "linux.namespaces"),
    ("mount-dest-relative", add_mount({"destination": "tmp", "type": "tmpfs", "source": "tmpfs"}), "mounts"),
    ("mount-options-not-array", add_mount({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
                                           "options": "nosuid,nodev"}), "mounts"),
    ("mount-options-not-strings", add_mount({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
                                             "options": ["nosuid", 7]}), "mounts"),
    ("root-path-missing", setp("root.path", DELETE), "root.path"),
    ("root-path-not-dir", root_file, "root.path"),
    ("root-path-nonexistent", setp("root.path", "no-such-rootfs"), "root.path"),
    ("cap-unknown", setp("process.capabilities.bounding", ["CAP_KILL", "CAP_FLY"]), "process.capabilities"),
    ("rlimit-unknown", setp("process.rlimits", [{"type": "RLIMIT_BOGUS", "soft": 1, "hard": 1}]), "process.rlimits"),
    ("rlimit-soft-gt-hard", setp("process.rlimits", [{"type": "RLIMIT_NOFILE", "soft": 2048, "hard": 1024}]),
     "process.rlimits"),
    ("memory-negative", setp("linux.resources.memory", {"limit": -5}), "linux.resources.memory"),
    ("memory-not-number", setp("linux.resources.memory", {"limit": "64M"}), "linux.resources.memory"),
    ("uid-not-number", setp("process.user", {"uid": "root", "gid": 0}), "process.user.uid"),
    ("gid-negative", setp("process.user", {"uid": 0, "gid": -1}), "process.user.gid"),
    ("uidmap-without-userns", setp("linux.uidMappings", [{"containerID": 0, "hostID": 100000, "size": 65536}]),
     "linux.uidMappings"),
    ("seccomp-action-unknown", setp("linux.seccomp", {"defaultAction": "SCMP_ACT_ALLOW",
                                                      "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_EXPLODE"}]}),
     "linux.seccomp"),
    ("seccomp-default-unknown", setp("linux.seccomp", {"defaultAction": "SCMP_ACT_NOPE"}), "linux.seccomp"),
    ("huge-string", setp("process.args", ["echo", "x" * (1 << 20)]), "process.args"),
    ("huge-hostname", setp("hostname", "h" * 5000), "hostname"),
    ("hostname-without-uts", mutate(lambda c: c["linux"].__setitem__(
        "namespaces", [n for n in c["linux"]["namespaces"] if n["type"] != "uts"])), "hostname"),
    ("terminal-not-bool", setp("process.terminal", "yes"), "process.terminal"),
    ("oci-version-missing", setp("ociVersion", DELETE), "ociVersion"),
    ("process-not-object", setp("process", ["sh"]), "process"),
    ("masked-relative", setp("linux.maskedPaths", ["proc/kcore"]), "linux.maskedPaths"),
    ("device-bad-type", setp("linux.devices", [{"path": "/dev/x", "type": "z", "major": 1, "minor": 3}]),
     "linux.devices"),
    ("cgroups-path-dotdot", setp("linux.cgroupsPath", "/../../escape"), "linux.cgroupsPath"),
]


@pytest.mark.parametrize("name,breaker,field", CASES, ids=[c[0] for c in CASES])
def test_bad_config(runtime, bundle, name, breaker, field):
    breaker(bundle)
    cid = runtime.new_id("bad")
    r = runtime("create", "--bundle", bundle.path, cid)
    if not IS_QUIVER and r.returncode == 0:
        runtime("delete", "--force", cid)
        pytest.skip("%s accepts this config" % os.path.basename(runtime.path))
    assert_error(r, "config.json", field)
    assert runtime("state", cid).returncode != 0, "a failed create left a container behind"
    assert not os.path.exists(os.path.join(runtime.root, cid)), "a failed create left its state directory"
