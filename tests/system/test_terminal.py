"""process.terminal with --console-socket: the runtime sends the pty master
over SCM_RIGHTS on a unix socket the caller listens on."""

import array
import os
import select
import socket
import subprocess
import termios
import threading
import time

from conftest import CMD_TIMEOUT, LIVE_POPEN


class ConsoleSocket:
    """Listens on a unix socket; a thread accepts one connection and keeps
    the first fd received."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(1)
        self.sock.settimeout(CMD_TIMEOUT)
        self.master = None
        self.error = None
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        try:
            conn, _ = self.sock.accept()
            with conn:
                _, fds, _, _ = socket.recv_fds(conn, 4096, 4)
                if fds:
                    self.master = fds[0]
                    for extra in fds[1:]:
                        os.close(extra)
        except Exception as e:  # reported by get()
            self.error = e

    def get(self):
        self.thread.join(CMD_TIMEOUT)
        assert self.master is not None, "no pty master received: %r" % self.error
        return self.master

    def close(self):
        self.sock.close()
        if self.master is not None:
            os.close(self.master)
            self.master = None


def read_until(fd, needle, seconds=CMD_TIMEOUT):
    buf = b""
    deadline = time.monotonic() + seconds
    while needle not in buf and time.monotonic() < deadline:
        r, _, _ = select.select([fd], [], [], 0.2)
        if r:
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # EIO: the other side closed
                break
            if not chunk:
                break
            buf += chunk
    return buf


def wait_exit(pid, seconds=CMD_TIMEOUT):
    """waitpid() the container's init, re-parented to us (a subreaper, as a
    containerd shim is): its status is the workload's."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        wpid, status = os.waitpid(pid, os.WNOHANG)
        if wpid == pid:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.02)
    raise AssertionError("pid %d did not exit" % pid)


def test_console_socket(runtime, bundle, tmp_path):
    bundle.set("process.terminal", True).args("sh")
    cs = ConsoleSocket(str(tmp_path / "console.sock"))
    cid = runtime.new_id("tty")
    pid = None
    try:
        pidfile = str(tmp_path / "init.pid")
        runtime.ok("run", "-d", "--pid-file", pidfile, "--console-socket", cs.path, "--bundle", bundle.path, cid)
        # the pid file, not `state`: the workload may already have exited
        pid = int(open(pidfile).read())
        LIVE_POPEN.add(pid)
        master = cs.get()
        os.write(master, b"echo hi-from-$((6*7)); exit 7\n")
        out = read_until(master, b"hi-from-42")
        assert b"hi-from-42" in out, out
        assert wait_exit(pid) == 7
    finally:
        if pid is not None:
            LIVE_POPEN.discard(pid)
        cs.close()


def test_console_socket_create_start(runtime, bundle, tmp_path):
    bundle.set("process.terminal", True).args("sh")
    cs = ConsoleSocket(str(tmp_path / "console.sock"))
    cid = runtime.new_id("tty")
    try:
        runtime.ok("create", "--console-socket", cs.path, "--bundle", bundle.path, cid)
        master = cs.get()
        runtime.ok("start", cid)
        os.write(master, b"tty; echo done-$((1+1))\n")
        out = read_until(master, b"done-2")
        assert b"/dev/" in out and b"done-2" in out, out
        os.write(master, b"exit 0\n")
        assert runtime.wait_status(cid, "stopped")
    finally:
        cs.close()


def test_terminal_without_console_socket_detached(runtime, bundle):
    # runc's rule: a detached container with a terminal needs a console socket.
    bundle.set("process.terminal", True).args("sh")
    cid = runtime.new_id("tty")
    r = runtime("create", "--bundle", bundle.path, cid)
    assert r.returncode != 0
    assert runtime("state", cid).returncode != 0


def test_console_modes_left_to_the_receiver(runtime, bundle, tmp_path):
    """The pty sent to --console-socket keeps the kernel's default modes, ONLCR
    among them, as runc leaves it: the receiver (containerd's shim, conmon)
    sets what it wants.  A sandbox that cleared ONLCR printed bare newlines
    under `ctr run -t`, unlike runc."""
    bundle.set("process.terminal", True).args("sh", "-c", "printf 'a\\nb\\n'; sleep 0.2")
    cs = ConsoleSocket(str(tmp_path / "console.sock"))
    cid = runtime.new_id("tty")
    try:
        runtime.ok("create", "--console-socket", cs.path, "--bundle", bundle.path, cid)
        master = cs.get()
        assert termios.tcgetattr(master)[1] & termios.ONLCR, "ONLCR cleared"
        runtime.ok("start", cid)
        out = read_until(master, b"b\r\n")
        assert b"a\r\nb\r\n" in out, out
        assert runtime.wait_status(cid, "stopped")
    finally:
        cs.close()
