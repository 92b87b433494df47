"""qctl's help: `qctl help`, `qctl COMMAND --help` and the man page come
from one table (qctl/commands.c), so every command has all three and the
man page is well-formed roff."""

import os
import re
import subprocess

import pytest

from conftest import CMD_TIMEOUT, RUNTIME_PATH

pytestmark = pytest.mark.quiver_only


def qctl(*args, root=None):
    argv = [RUNTIME_PATH] + (["--root", root] if root else []) + list(args)
    return subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=CMD_TIMEOUT)


def commands():
    r = qctl("help")
    assert r.returncode == 0, r
    block = r.stdout.split("\ncommands:\n", 1)[1].split("\n\n", 1)[0]
    names = [line.split()[0] for line in block.splitlines()]
    assert len(names) >= 20 and "run" in names and "help" in names, names
    return names


def test_every_command_has_help():
    """`qctl CMD --help`, `qctl CMD -h` and `qctl help CMD` print the same
    text, starting with the command's usage line, and exit 0 without doing
    anything else."""
    for name in commands():
        ref = qctl("help", name)
        assert ref.returncode == 0 and ref.stderr == "", (name, ref)
        assert ref.stdout.startswith("usage: qctl %s" % name), (name, ref.stdout)
        if name == "help":
            continue
        for flag in ("--help", "-h"):
            r = qctl(name, flag)
            assert r.returncode == 0 and r.stdout == ref.stdout and r.stderr == "", (name, flag, r)
        assert max(len(l) for l in ref.stdout.splitlines()) <= 80, (name, ref.stdout)


def test_help_among_options_but_not_the_workloads(tmp_path):
    """--help after another option is still help (`exec -e X=1 --help`,
    `run -b DIR --help`), but after exec's container id it belongs to the
    program run inside: exec goes on (and fails: there is no sandbox)."""
    assert qctl("exec", "-e", "X=1", "--cwd", "/", "--help").stdout == qctl("help", "exec").stdout
    assert qctl("run", "-b", "/nonexistent", "--help").stdout == qctl("help", "run").stdout
    root = str(tmp_path / "root")
    try:
        r = qctl("exec", "nosuchsandbox", "sh", "--help", root=root)
        assert r.returncode == 1 and "usage: qctl exec" not in r.stdout, r
        assert 'container "nosuchsandbox" does not exist' in r.stderr, r
    finally:
        qctl("daemons", "stop", root=root)


def test_unknown_command_and_help_topic():
    r = qctl("nosuchcommand")
    assert r.returncode == 1 and r.stderr.strip() == 'unknown command "nosuchcommand" (qctl help lists them)', r
    r = qctl("help", "nosuchcommand")
    assert r.returncode == 1 and "unknown command" in r.stderr, r
    r = qctl()
    assert r.returncode == 1 and r.stderr.startswith("usage: qctl"), r


def test_man_page_is_clean_roff_and_documents_every_command():
    """groff with all warnings on says nothing about the page; every
    command has its subsection and every option its tagged paragraph; the
    page that make built (build/man/qctl.1) is the one qctl prints."""
    r = qctl("help", "--man")
    assert r.returncode == 0, r
    page = r.stdout
    lint = subprocess.run(["groff", "-man", "-ww", "-z", "-Tutf8"], input=page, capture_output=True,
                          text=True, timeout=CMD_TIMEOUT)
    assert lint.returncode == 0 and lint.stderr == "", lint.stderr
    for name in commands():
        assert ".SS %s\n" % name in page, name
        for line in qctl("help", name).stdout.split("\noptions:\n", 1)[-1].splitlines():
            m = re.match(r"  (--?[a-z][\w-]*)", line)
            if m:
                assert "\\fB" + m.group(1).replace("-", "\\-") in page, (name, m.group(1))
    built = os.path.join(os.path.dirname(RUNTIME_PATH), "..", "man", "qctl.1")
    assert os.path.exists(built), "make did not build %s" % built
    with open(built) as f:
        assert f.read() == page, "%s is stale: rebuild" % built
    text = subprocess.run(["man", "-l", "-P", "cat", built], capture_output=True, text=True,
                          env=dict(os.environ, MANWIDTH="80"), timeout=CMD_TIMEOUT)
    assert text.returncode == 0 and "qctl create" in text.stdout and "EXIT STATUS" in text.stdout, text


@pytest.mark.parametrize("name", ["create", "run", "exec", "kill", "delete", "list", "ps", "spec",
                                  "policy", "ls"])
def test_documented_options_are_accepted(name, tmp_path):
    """No option in the help is made up: each is accepted by the command
    (given a value when the help names one), whatever else then fails."""
    helptext = qctl("help", name).stdout
    opts = helptext.split("\noptions:\n", 1)[1] if "\noptions:\n" in helptext else ""
    tried = 0
    for line in opts.splitlines():
        m = re.match(r"  ((?:-\w, )?--?[\w-]+)( \S+)?(?:  |$)", line)
        if not m:
            continue
        for flag in m.group(1).split(", "):
            value = "json" if "json" in (m.group(2) or "") else str(tmp_path / "v")
            argv = [name, flag] + ([value] if m.group(2) else [])
            r = qctl(*argv, root=str(tmp_path / "root"))
            assert "unknown option" not in r.stderr and "needs a value" not in r.stderr, (argv, r)
            tried += 1
    assert tried, helptext
    qctl("daemons", "stop", root=str(tmp_path / "root"))
