"""podman 4.3 (rootful) drives the runtime for real: `podman --runtime R`
runs it through conmon, with runc's grammar.

Everything podman keeps lives under a temporary directory of the test: its
storage and run root, its containers.conf (CONTAINERS_CONF), storage.conf
(CONTAINERS_STORAGE_CONF) and registries.conf (no registry: the busybox
image is built by the test and loaded with `podman load`), its events
file, its tmp dir and its network configuration.  The exceptions are
netavark's IP allocation database, which podman 4.3 keeps at the fixed
/run/containers/networks (removed at the end if the test made it), and
netavark's firewall chains, which it creates on the first bridge container
and never removes (removed at the end if they were not there before).

The runtime is a two-line wrapper, `exec qctl --root ROOT "$@"`: podman's
`--runtime-flag root=ROOT` reaches the runtime calls podman makes itself,
but not the `podman container cleanup` that conmon runs when the container
exits, whose `delete` would address the default root.  The fixture starts
the root's vmmd first (`qctl daemons start`): conmon waits for all its
children before it exits.  As under containerd, podman sets
linux.cgroupsPath, which a warm supervisor cannot take, so a session poold
(QUIVER_TEST_POOLD=1) does not change what these tests cover.

Root here lacks CAP_SYS_RESOURCE, and podman's default for RLIMIT_NOFILE
and RLIMIT_NPROC (1048576 and 4194304) is above the hard limits:
containers.conf sets default_ulimits under them."""

import hashlib
import json
import os
import resource
import signal
import socket
import subprocess
import tempfile
import threading

import pytest

from clients_support import (HostDirs, cgroup_hierarchies, client_fixture, make_cgroups, mounts_under, remove_cgroups, run_with_pty,
                             run_to_files, unmount_under, write_busybox_archive)
from conftest import (CMD_TIMEOUT, IS_QUIVER, LOOP, RUNTIME_PATH, SESSION_TAG, all_pids,
                      poll_until, proc_cmdline, proc_stat, reap_zombies, wait_gone)

# With cgroupfs, podman puts each container in PARENT/libpod-ID and every
# conmon in PARENT/conmon: the session's tag in PARENT makes them visible
# to the leak checker.
CGROUP_PARENT = "/quiver-podman-" + SESSION_TAG
NETWORK = "quiver-" + SESSION_TAG
BRIDGE = ("qb" + SESSION_TAG)[:15]
SUBNET = "10.254.%d" % (os.getpid() % 250)
NETAVARK_RUN = "/run/containers/networks"


def _links():
    out = subprocess.run(["ip", "-o", "link", "show"], stdout=subprocess.PIPE, text=True).stdout
    return set(l.split(":")[1].strip().split("@")[0] for l in out.splitlines())


def _firewall():
    """The filter and nat tables of iptables and ip6tables, without counters."""
    out = []
    for cmd in ("iptables-save", "ip6tables-save"):
        for table in ("filter", "nat"):
            r = subprocess.run([cmd, "-t", table], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            out += ["%s %s %s" % (cmd, table, l.rsplit(" [", 1)[0] if l.startswith(":") else l)
                    for l in r.stdout.splitlines() if l and not l.startswith("#")]
    return out


# netavark 1.4's chains shared by every bridge network, and the jumps to
# them from the built-in chains: made on the first bridge container, kept.
NETAVARK_JUMPS = [
    ("filter", "FORWARD", ["-m", "comment", "--comment", "netavark firewall plugin rules",
                           "-j", "NETAVARK_FORWARD"]),
    ("nat", "PREROUTING", ["-m", "addrtype", "--dst-type", "LOCAL", "-j", "NETAVARK-HOSTPORT-DNAT"]),
    ("nat", "OUTPUT", ["-m", "addrtype", "--dst-type", "LOCAL", "-j", "NETAVARK-HOSTPORT-DNAT"]),
    ("nat", "POSTROUTING", ["-j", "NETAVARK-HOSTPORT-MASQ"]),
]
NETAVARK_CHAINS = [("filter", "NETAVARK_FORWARD"), ("nat", "NETAVARK-HOSTPORT-DNAT"),
                   ("nat", "NETAVARK-HOSTPORT-MASQ"), ("nat", "NETAVARK-HOSTPORT-SETMARK")]


def _remove_netavark_chains():
    for cmd in ("iptables", "ip6tables"):
        for table, chain, rule in NETAVARK_JUMPS:
            subprocess.run([cmd, "-t", table, "-D", chain] + rule, stderr=subprocess.DEVNULL)
        for table, chain in NETAVARK_CHAINS:
            subprocess.run([cmd, "-t", table, "-F", chain], stderr=subprocess.DEVNULL)
            subprocess.run([cmd, "-t", table, "-X", chain], stderr=subprocess.DEVNULL)


def _under_hard_limit(kind, want):
    hard = resource.getrlimit(kind)[1]
    return want if hard == resource.RLIM_INFINITY else min(want, hard)


NOFILE = _under_hard_limit(resource.RLIMIT_NOFILE, 1024)
NPROC = _under_hard_limit(resource.RLIMIT_NPROC, 4096)


class Podman:
    def __init__(self, base):
        self.base = base
        self.qctl_root = os.path.join(base, "qctl-root")
        self.storage = os.path.join(base, "storage")
        self.runroot = os.path.join(base, "runroot")
        self.wrapper = os.path.join(base, "qctl")
        self.image = None
        os.mkdir(self.qctl_root, 0o700)
        env_line = ""
        if os.environ.get("ASAN_OPTIONS"):
            # conmon runs the runtime with an environment of its own
            # (containers.conf's conmon_env_vars): without this line, a
            # sanitized qctl under conmon would run with LSan on.
            env_line = "export ASAN_OPTIONS='%s'\n" % os.environ["ASAN_OPTIONS"]
        with open(self.wrapper, "w") as f:
            f.write("#!/bin/sh\n%sexec %s --root %s \"$@\"\n" % (env_line, RUNTIME_PATH, self.qctl_root))
        os.chmod(self.wrapper, 0o755)
        conf = os.path.join(base, "containers.conf")
        with open(conf, "w") as f:
            f.write('[containers]\n'
                    'default_ulimits = ["nofile=%d:%d", "nproc=%d:%d"]\n'
                    'log_driver = "k8s-file"\n'
                    '[engine]\n'
                    'cgroup_manager = "cgroupfs"\n'
                    'events_logger = "file"\n'
                    'events_logfile_path = "%s/events.log"\n'
                    'tmp_dir = "%s/tmp"\n'
                    'static_dir = "%s/libpod"\n'
                    'volume_path = "%s/volumes"\n'
                    '[network]\n'
                    'network_backend = "netavark"\n'
                    'network_config_dir = "%s/networks"\n'
                    'default_network = "%s"\n'
                    'default_subnet = "%s.0/24"\n'
                    % (NOFILE, NOFILE, NPROC, NPROC, base, base, self.storage, self.storage, base, NETWORK, SUBNET))
        with open(os.path.join(base, "storage.conf"), "w") as f:
            f.write('[storage]\ndriver = "overlay"\ngraphroot = "%s"\nrunroot = "%s"\n'
                    % (self.storage, self.runroot))
        with open(os.path.join(base, "registries.conf"), "w") as f:
            f.write('unqualified-search-registries = []\n')
        # The default network: a bridge with this session's name on it.
        os.mkdir(os.path.join(base, "networks"))
        with open(os.path.join(base, "networks", NETWORK + ".json"), "w") as f:
            json.dump({"name": NETWORK, "id": hashlib.sha256(NETWORK.encode()).hexdigest(),
                       "driver": "bridge", "network_interface": BRIDGE,
                       "created": "2026-01-01T00:00:00Z",
                       "subnets": [{"subnet": SUBNET + ".0/24", "gateway": SUBNET + ".1"}],
                       "ipv6_enabled": False, "internal": False, "dns_enabled": False,
                       "ipam_options": {"driver": "host-local"}}, f)
        self.env = dict(os.environ, CONTAINERS_CONF=conf,
                        CONTAINERS_STORAGE_CONF=os.path.join(base, "storage.conf"),
                        CONTAINERS_REGISTRIES_CONF=os.path.join(base, "registries.conf"))

    def argv(self, *args):
        return ["podman", "--root", self.storage, "--runroot", self.runroot, "--cgroup-manager", "cgroupfs",
                "--events-backend", "file", "--runtime", self.wrapper] + [str(a) for a in args]

    def __call__(self, *args, timeout=CMD_TIMEOUT):
        """One podman command; output to files, as `run -d` leaves conmon
        holding what it inherited."""
        return run_to_files(self.argv(*args), timeout, self.env)

    def ok(self, *args, **kw):
        r = self(*args, **kw)
        assert r.returncode == 0, "podman %s: exit %d\nstdout: %s\nstderr: %s" % (
            " ".join(str(a) for a in args), r.returncode, r.stdout, r.stderr)
        return r

    def run(self, *args, **kw):
        return self("run", "--cgroup-parent", CGROUP_PARENT, *args, **kw)

    def runtime_list(self):
        r = subprocess.run([RUNTIME_PATH, "--root", self.qctl_root, "list", "-q"], stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=CMD_TIMEOUT)
        assert r.returncode == 0, r.stderr
        return r.stdout.split()

    def conmons(self):
        return [p for p in all_pids() if (proc_stat(p) or ("",))[0] == "conmon"
                and self.base in proc_cmdline(p)]


def _qctl(root, *args):
    return subprocess.run([RUNTIME_PATH, "--root", root] + list(args), stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=CMD_TIMEOUT)


def _stop(pm):
    problems = []
    left = pm("ps", "-a", "-q").stdout.split()
    if left:
        problems.append("containers left: %s" % left)
        pm("rm", "--force", "--time", "0", *left)
    pm("rmi", "--all", "--force")
    for pid in pm.conmons():
        problems.append("conmon %d left" % pid)
        os.kill(pid, signal.SIGKILL)
        wait_gone(pid)
    if os.path.isdir(pm.qctl_root) and (not IS_QUIVER or os.path.exists(os.path.join(pm.qctl_root, "vmmd.sock"))):
        for cid in _qctl(pm.qctl_root, "list", "-q").stdout.split():
            problems.append("sandbox %s left" % cid)
            _qctl(pm.qctl_root, "delete", "--force", cid)
    if IS_QUIVER:
        r = _qctl(pm.qctl_root, "daemons", "stop")
        if r.returncode != 0:
            problems.append("qctl daemons stop: %s" % r.stderr.strip())
    reap_zombies()
    unmount_under(pm.base)
    return problems


@pytest.fixture(scope="module")
def podman(session):
    yield from client_fixture(("podman", "conmon", "iptables-save"), _podman, session)


def _podman(session):
    # Not under session.tmp: podman refuses a run root longer than 50
    # characters.  The session's tag in the name still marks it as ours.
    base = tempfile.mkdtemp(prefix="qpm-%s-" % SESSION_TAG)
    os.chmod(base, 0o711)
    host_dirs = HostDirs("/run/containers")
    # podman's lock segment: one fixed name for every podman on the host
    # (its shm lock manager), made by the first and never removed.
    shm_lock = "/dev/shm/libpod_lock"
    shm_lock_before = os.path.exists(shm_lock)
    links_before = _links()
    firewall_before = _firewall()
    with open("/proc/sys/net/ipv4/ip_forward") as f:
        ip_forward = f.read()
    pm = Podman(base)
    cgroups = []
    try:
        cgroups = make_cgroups(CGROUP_PARENT + "/conmon")
        archive = os.path.join(base, "busybox.tar")
        name = write_busybox_archive(archive)
        r = pm("load", "--input", archive)
        if r.returncode != 0:
            pytest.fail("podman load: exit %d: %s%s" % (r.returncode, r.stdout, r.stderr), pytrace=False)
        pm.image = name
        os.unlink(archive)
        # c/storage's overlay driver bind-mounts its directory on itself
        # (private) when it first mounts a layer, and leaves it mounted for
        # the life of the store: made here, so that the first test that runs
        # a container does not own it; unmounted at the end.
        overlay = os.path.join(pm.storage, "overlay")
        if overlay not in mounts_under(overlay):
            for argv in (["mount", "--bind", overlay, overlay], ["mount", "--make-private", overlay]):
                subprocess.run(argv, check=True)
        if IS_QUIVER:
            r = _qctl(pm.qctl_root, "daemons", "start")
            if r.returncode != 0:
                pytest.fail("qctl daemons start: %s" % r.stderr, pytrace=False)
        yield pm
    finally:
        problems = _stop(pm)
        problems += remove_cgroups(cgroups)
        subprocess.run(["rm", "-rf", "--one-file-system", base])
        host_dirs.remove()
        if not shm_lock_before:
            try:
                os.unlink(shm_lock)  # ours: no podman was using it before
            except FileNotFoundError:
                pass
        if not any("NETAVARK" in l for l in firewall_before):
            _remove_netavark_chains()
        with open("/proc/sys/net/ipv4/ip_forward", "w") as f:
            f.write(ip_forward)
        new_links = _links() - links_before
        if new_links:
            problems.append("interfaces left: %s" % sorted(new_links))
        firewall = _firewall()
        if firewall != firewall_before:
            problems.append("firewall changed: +%s -%s" % (
                [l for l in firewall if l not in firewall_before],
                [l for l in firewall_before if l not in firewall]))
        if problems:
            pytest.fail("podman teardown: " + "; ".join(problems), pytrace=False)


def _assert_nothing_left(pm, cid):
    """After `podman rm`: no sandbox, no conmon, no process, no mount and
    no cgroup that names the container."""
    assert cid not in pm("ps", "-a", "-q", "--no-trunc").stdout.split()
    assert poll_until(lambda: cid not in pm.runtime_list(), 10), pm.runtime_list()
    assert poll_until(lambda: not [p for p in all_pids() if cid in proc_cmdline(p)], 10), \
        [proc_cmdline(p) for p in all_pids() if cid in proc_cmdline(p)]
    assert not [m for m in mounts_under(pm.base) if cid in m]
    assert not [h for h in cgroup_hierarchies()
                if os.path.exists(os.path.join(h, CGROUP_PARENT.lstrip("/"), "libpod-" + cid))]


def _container_id(pm, name):
    return pm.ok("inspect", "--format", "{{.Id}}", name).stdout.strip()


def test_run_rm_output_and_status(podman):
    """`podman run --rm`: the workload's stdout and stderr reach podman's,
    podman exits with the workload's status, the ulimits are the ones
    asked for, and the sandbox is deleted (by the `podman container
    cleanup` that conmon runs)."""
    name = SESSION_TAG + "-rm"
    r = podman.run("--rm", "--name", name, "--network", "none", podman.image, "sh", "-c",
                   "echo out; echo err >&2; ulimit -n; exit 3")
    assert r.returncode == 3, (r.stdout, r.stderr)
    assert r.stdout.split() == ["out", str(NOFILE)], r.stdout
    assert "err" in r.stderr.splitlines(), r.stderr
    assert poll_until(lambda: not podman.runtime_list(), 10), podman.runtime_list()
    assert poll_until(lambda: name not in podman("ps", "-a", "--format", "{{.Names}}").stdout.split(), 10)


def test_detached_exec_logs_stop_rm(podman):
    """`podman run -d`, `exec` (output and status), `logs`, `stop` (SIGTERM:
    the workload's trap exits 42, and podman records it) and `rm`."""
    name = SESSION_TAG + "-detached"
    r = podman.run("-d", "--name", name, "--network", "none", podman.image, "sh", "-c", "echo started; " + LOOP)
    assert r.returncode == 0, (r.stdout, r.stderr)
    cid = r.stdout.strip()
    assert cid == _container_id(podman, name)
    assert podman.ok("inspect", "--format", "{{.State.Status}}", name).stdout.strip() == "running"
    assert cid in podman.runtime_list()

    r = podman("exec", name, "sh", "-c", "echo in-exec; exit 5")
    assert r.returncode == 5 and r.stdout.split() == ["in-exec"], (r.returncode, r.stdout, r.stderr)
    assert poll_until(lambda: "started" in podman.ok("logs", name).stdout, 10)

    podman.ok("stop", "--time", "10", name)
    state = podman.ok("inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", name).stdout.split()
    assert state == ["exited", "42"], state
    podman.ok("rm", name)
    _assert_nothing_left(podman, cid)


def test_network_none(podman):
    """--network none: the sandbox has its own network namespace with only
    the loopback."""
    r = podman.run("--rm", "--network", "none", podman.image, "sh", "-c", "ip -o link | wc -l; ip -o link")
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert r.stdout.split()[0] == "1" and " lo:" in r.stdout, r.stdout


def test_privileged(podman):
    """`podman run --privileged` lists every host device in linux.devices,
    /dev/null among them, and allows them all in the devices cgroup."""
    r = podman.run("--rm", "--network", "none", "--privileged", podman.image, "sh", "-c",
                   "echo x > /dev/null && echo null-ok; [ -c /dev/full ] && echo has-full")
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert r.stdout.split() == ["null-ok", "has-full"], r.stdout


def test_default_bridge(podman):
    """The default network (netavark's bridge): the sandbox gets an address
    on the subnet and a default route, and a TCP connection from it reaches
    a listener on the host side of the bridge.  The bridge and the veth go
    when the container does."""
    links_before = _links()
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("0.0.0.0", 0))
    listener.listen(1)
    listener.settimeout(CMD_TIMEOUT)
    port = listener.getsockname()[1]
    got = []

    def accept():
        try:
            conn, peer = listener.accept()
            with conn:
                conn.settimeout(10)
                got.append((peer[0], conn.recv(100)))
        except OSError as e:
            got.append(("error", str(e).encode()))

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    try:
        r = podman.run("--rm", podman.image, "sh", "-c",
                       "ip -4 -o addr show eth0; ip route; echo hello-from-podman | nc %s.1 %d" % (SUBNET, port))
        t.join(CMD_TIMEOUT)
    finally:
        listener.close()
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert "inet %s." % SUBNET in r.stdout and "default via %s.1" % SUBNET in r.stdout, r.stdout
    assert got and got[0][0].startswith(SUBNET + ".") and got[0][1] == b"hello-from-podman\n", got
    assert poll_until(lambda: not podman.runtime_list(), 10), podman.runtime_list()
    assert poll_until(lambda: not (_links() - links_before), 10), _links() - links_before


def test_terminal(podman):
    """`podman run -it` and `podman exec -it` from a terminal: the workload's
    stdio is a pty of the sandbox's own, with the caller's window size, and
    the exit status comes back (through conmon's console socket)."""
    script = ("tty; [ -t 0 ] && [ -t 1 ] && echo is-a-tty; "
              "n=0; while [ \"$(stty size 2>/dev/null)\" != '33 91' ] && [ $n -lt 100 ]; do sleep 0.05; n=$((n+1)); done; "
              "stty size; exit %d")
    rc, out = run_with_pty(podman.argv("run", "--cgroup-parent", CGROUP_PARENT, "-it", "--rm", "--network", "none",
                                       podman.image, "sh", "-c", script % 9), env=podman.env, rows=33, cols=91)
    assert rc == 9, out
    lines = out.replace("\r", "").splitlines()
    assert lines[0].startswith("/dev/pts/") and lines[1:] == ["is-a-tty", "33 91"], out

    name = SESSION_TAG + "-exec-tty"
    r = podman.run("-d", "--name", name, "--network", "none", podman.image, "sh", "-c", LOOP)
    assert r.returncode == 0, (r.stdout, r.stderr)
    cid = r.stdout.strip()
    rc, out = run_with_pty(podman.argv("exec", "-it", name, "sh", "-c", script % 6), env=podman.env, rows=33, cols=91)
    assert rc == 6, out
    lines = out.replace("\r", "").splitlines()
    assert lines[0].startswith("/dev/pts/") and lines[1:] == ["is-a-tty", "33 91"], out
    podman.ok("rm", "--force", "--time", "0", name)
    _assert_nothing_left(podman, cid)
