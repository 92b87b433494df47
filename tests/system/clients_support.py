"""What the tests that drive Quiver through containerd and podman share: a
busybox OCI image archive built on the spot (no registry), a client run
under a pseudo-terminal, and clean-up of the mounts a client left under
its directory.

The archive is an OCI image layout in a tar (oci-layout, index.json, and
blobs/sha256/ holding the manifest, the config and one uncompressed layer
with /bin/busybox and its applet links).  `ctr image import` names the
image after the index entry's io.containerd.image.name annotation; podman's
oci-archive transport after its org.opencontainers.image.ref.name."""

import fcntl
import hashlib
import io
import json
import os
import pty
import pytest
import select
import shutil
import struct
import subprocess
import tarfile
import tempfile
import termios
import time

from conftest import APPLETS, BUSYBOX, CMD_TIMEOUT, LIVE_POPEN, reap_zombies

IMAGE_NAME = "localhost/quiver-test/busybox:latest"
IMAGE_ENV = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]


def _add_bytes(tar, name, data, mode=0o644):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    tar.addfile(info, io.BytesIO(data))


def _layer():
    """The rootfs layer: busybox, its applets, and the directories an image has."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for d, mode in (("bin", 0o755), ("dev", 0o755), ("etc", 0o755), ("proc", 0o555),
                        ("root", 0o700), ("run", 0o755), ("sys", 0o555), ("tmp", 0o1777),
                        ("var", 0o755)):
            info = tarfile.TarInfo(d)
            info.type = tarfile.DIRTYPE
            info.mode = mode
            tar.addfile(info)
        with open(BUSYBOX, "rb") as f:
            _add_bytes(tar, "bin/busybox", f.read(), 0o755)
        for a in APPLETS + ["uname", "ip", "nc", "seq", "yes"]:
            info = tarfile.TarInfo("bin/" + a)
            info.type = tarfile.SYMTYPE
            info.linkname = "busybox"
            info.mode = 0o777
            tar.addfile(info)
        _add_bytes(tar, "etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n"
                   b"nobody:x:65534:65534:nobody:/:/bin/false\n")
        _add_bytes(tar, "etc/group", b"root:x:0:\nnogroup:x:65534:\n")
    return buf.getvalue()


def _blob(tar, data):
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    _add_bytes(tar, "blobs/sha256/" + digest.split(":")[1], data)
    return digest


def write_busybox_archive(path, name=IMAGE_NAME):
    """Write the image archive to path; returns the image's name."""
    layer = _layer()
    layer_digest = "sha256:" + hashlib.sha256(layer).hexdigest()
    config = json.dumps({
        "architecture": "amd64",
        "os": "linux",
        "created": "2026-01-01T00:00:00Z",
        "config": {"Env": IMAGE_ENV, "Cmd": ["sh"], "WorkingDir": "/"},
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        "history": [{"created": "2026-01-01T00:00:00Z", "created_by": "quiver tests"}],
    }, sort_keys=True).encode()
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        _add_bytes(tar, "oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode())
        _blob(tar, layer)
        config_digest = _blob(tar, config)
        manifest = json.dumps({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": config_digest, "size": len(config)},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                        "digest": layer_digest, "size": len(layer)}],
        }, sort_keys=True).encode()
        manifest_digest = _blob(tar, manifest)
        index = {
            "schemaVersion": 2,
            "manifests": [{
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": manifest_digest,
                "size": len(manifest),
                "platform": {"architecture": "amd64", "os": "linux"},
                "annotations": {"io.containerd.image.name": name,
                                "org.opencontainers.image.ref.name": name},
            }],
        }
        _add_bytes(tar, "index.json", json.dumps(index).encode())
    return name



def run_with_pty(argv, seconds=CMD_TIMEOUT, env=None, rows=33, cols=91):
    """Run argv with a pseudo-terminal of rows x cols as its stdin, stdout
    and stderr, as from an interactive shell; returns (exit status,
    everything it wrote)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    try:
        p = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env,
                             start_new_session=True)
    finally:
        os.close(slave)
    LIVE_POPEN.add(p.pid)
    out = b""
    try:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            r, _, _ = select.select([master], [], [], 0.2)
            if not r:
                if p.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: every holder of the slave closed it
                break
            if not chunk:
                break
            out += chunk
        try:
            rc = p.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            raise
    finally:
        LIVE_POPEN.discard(p.pid)
        os.close(master)
    reap_zombies()
    return rc, out.decode(errors="replace")


def mounts_under(path):
    """Mount points at or under path, deepest first."""
    out = []
    prefix = path.rstrip("/") + "/"
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mp = line.split()[4].replace("\\040", " ")
            if mp == path or mp.startswith(prefix):
                out.append(mp)
    return sorted(set(out), key=len, reverse=True)


def unmount_under(path):
    """Unmount whatever is left under path; returns what was there."""
    left = mounts_under(path)
    for mp in left:
        subprocess.run(["umount", "-l", mp], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return left


CGROUP_ROOT = "/sys/fs/cgroup"


def cgroup_hierarchies():
    return [os.path.join(CGROUP_ROOT, h) for h in sorted(os.listdir(CGROUP_ROOT))
            if os.path.isdir(os.path.join(CGROUP_ROOT, h))
            and not os.path.islink(os.path.join(CGROUP_ROOT, h))]


def make_cgroups(*relpaths):
    """mkdir each relative cgroup path in every hierarchy, ahead of a client
    that makes them and never removes them; a new cpuset gets its parent's
    cpus and mems, without which no task can join it."""
    made = []
    for h in cgroup_hierarchies():
        for rel in relpaths:
            parent = h
            for part in rel.strip("/").split("/"):
                d = os.path.join(parent, part)
                if not os.path.isdir(d):
                    os.mkdir(d)
                    made.append(d)
                    for knob in ("cpuset.cpus", "cpuset.mems"):
                        if os.path.exists(os.path.join(parent, knob)):
                            with open(os.path.join(parent, knob)) as f:
                                v = f.read()
                            with open(os.path.join(d, knob), "w") as f:
                                f.write(v)
                parent = d
    return made


def remove_cgroups(dirs):
    """rmdir dirs and anything left below them; returns what would not go."""
    problems = []
    for top in sorted(dirs, key=len, reverse=True):
        for sub, _, _ in sorted(os.walk(top), key=lambda w: -len(w[0])):
            try:
                os.rmdir(sub)
            except FileNotFoundError:
                pass
            except OSError as e:
                problems.append("cgroup %s: %s" % (sub, e))
    return problems


class MachineLock:
    """Held by a client's fixture for its whole module: other sessions on
    this machine (another worktree's `make test`) wait.  containerd's
    /run/containerd and netavark's /run/containers, firewall chains and
    ip_forward are shared by every client on the machine; a session only
    removes what it made, which is only sound if no other session's client
    runs meanwhile.  The lock file stays (removing it would break the lock
    for a session waiting on it)."""

    PATH = "/run/lock/quiver-tests-clients.lock"

    def __init__(self, seconds=300):
        self.fd = os.open(self.PATH, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        deadline = time.monotonic() + seconds
        while True:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    os.close(self.fd)
                    raise TimeoutError("%s: held by another session for %ds" % (self.PATH, seconds))
                time.sleep(0.1)

    def release(self):
        if self.fd >= 0:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = -1


class HostDirs:
    """Directories a client insists on making at a fixed place outside the
    test's directory (containerd's shims put their sockets in
    /run/containerd/s; netavark keeps its IP allocations in
    /run/containers/networks): noted before the client runs, and removed
    afterwards if the client made them."""

    def __init__(self, *paths):
        self.made = [p for p in paths if not os.path.lexists(p)]

    def remove(self):
        for p in self.made:
            shutil.rmtree(p, ignore_errors=True)


if __name__ == "__main__":
    import sys
    print(write_busybox_archive(sys.argv[1]))


def run_to_files(argv, timeout=CMD_TIMEOUT, env=None):
    """Run a client command with its output in files, not pipes: what it
    leaves running (a shim, conmon) must not hold a pipe of ours.  Killed
    (and TimeoutExpired raised) after timeout."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env)
        try:
            rc = p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            raise
        out.seek(0)
        err.seek(0)
        r = subprocess.CompletedProcess(argv, rc, out.read().decode(errors="replace"),
                                        err.read().decode(errors="replace"))
    reap_zombies()
    return r


def client_fixture(programs, body, session):
    """A module fixture's body for a client: fail (not skip) when one of its
    programs is missing, hold the machine-wide lock while body(session)
    runs (a generator that yields the client)."""
    for prog in programs:
        if not shutil.which(prog):
            pytest.fail("%s is not installed (`make deps` installs it)" % prog, pytrace=False)
    try:
        lock = MachineLock()
    except TimeoutError as e:
        pytest.fail(str(e), pytrace=False)
    try:
        yield from body(session)
    finally:
        lock.release()
