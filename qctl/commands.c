/* qctl's commands: what runs each one and the text that documents it.
 *
 * This table is the one source of `qctl help`, `qctl COMMAND --help` and
 * the man page (`qctl help --man`, built into $(BUILD)/man/qctl.1), so the
 * three cannot disagree.  Text is plain: paragraphs separated by a blank
 * line; help.c wraps it for a terminal and escapes it for roff. */
#include <stddef.h>
#include <string.h>

#include "qctl/qctl.h"

#define ID_ARG                                                                                     \
	{                                                                                          \
		"ID", "the sandbox (container) id: 1-64 of [A-Za-z0-9_.-], starting with a "       \
		      "letter or digit"                                                            \
	}
#define CREATE_OPTS                                                                                \
	{"-b, --bundle DIR", "the OCI bundle (config.json and its rootfs); default the current "   \
			     "directory"},                                                         \
	    {"--pid-file FILE", "write the workload's host pid there (atomically)"},               \
	    {"--console-socket SOCKET",                                                            \
	     "with process.terminal: send the pty's master to this unix socket (SCM_RIGHTS), as "  \
	     "runc does"},                                                                         \
	{                                                                                          \
		"--preserve-fds N", "pass fds 3..3+N-1 of qctl on to the workload"                 \
	}

const struct command commands[] = {
    {"create",
     cmd_create,
     "create [-b DIR] [--pid-file F] [--console-socket S] [--preserve-fds N] ID",
     "make a sandbox from a bundle, stopped before the workload's exec",
     "Reads BUNDLE/config.json, makes the sandbox's namespaces, cgroups and root filesystem "
     "and starts its guest kernel, which stops before the workload's program is executed. "
     "`qctl start` runs it. The sandbox is recorded by quiver-vmmd (started on demand for the "
     "runtime directory, see --root).\n\n"
     "Prestart, createRuntime and createContainer hooks run before create returns; their "
     "failure fails create and leaves nothing behind.",
     {CREATE_OPTS, ID_ARG}},
    {"start",
     cmd_start,
     "start ID",
     "run the workload of a created sandbox",
     "Lets the guest kernel execute process.args and runs the poststart hooks. Exits once the "
     "workload runs; `qctl state` then reports \"running\".",
     {ID_ARG}},
    {"run",
     cmd_run,
     "run [-d] [-b DIR] [--pid-file F] [--console-socket S] [--preserve-fds N] ID",
     "create, start, wait for the workload, delete",
     "create and start in one command. Without -d qctl forwards the signals it receives to the "
     "workload, waits for it and exits with its status (128+N when signal N killed it), then "
     "deletes the sandbox. With -d it returns once the workload runs and the sandbox stays "
     "until `qctl delete`.\n\n"
     "When a pool daemon runs (`qctl pool start`) and the config fits, the sandbox starts from "
     "a warm guest kernel; QUIVER_NO_WARM=1 forces the cold path.",
     {{"-d, --detach", "return once the workload runs; do not wait or delete"},
      CREATE_OPTS,
      ID_ARG}},
    {"state",
     cmd_state,
     "state ID",
     "print the OCI state of a sandbox as JSON",
     "The OCI runtime-spec state: ociVersion, id, status (creating, created, running, paused, "
     "stopped), pid, bundle, annotations, plus created and owner as runc prints them.",
     {ID_ARG}},
    {"kill",
     cmd_kill,
     "kill [--all|-a] ID [SIGNAL]",
     "send a signal to the workload",
     "SIGNAL is a name (TERM, SIGKILL, RTMIN+3) or a number; the default is TERM. Signals "
     "reach the workload's init process, or with --all every process of the sandbox.",
     {{"-a, --all", "signal every process in the sandbox, not just its init"},
      ID_ARG,
      {"SIGNAL", "default TERM"}}},
    {"delete",
     cmd_delete,
     "delete [--force|-f] ID",
     "remove a stopped sandbox",
     "Removes the sandbox's cgroups, mounts, state directory and record, and runs the poststop "
     "hooks. A sandbox that still runs is refused unless --force, which kills it (SIGKILL) "
     "first. With --force, an id that does not exist is not an error (as in runc).",
     {{"-f, --force", "kill the sandbox first if it still runs"}, ID_ARG}},
    {"list",
     cmd_list,
     "list [-f table|json] [-q]",
     "list sandboxes as runc does",
     "runc's list: a table of ID, PID, STATUS, BUNDLE, CREATED, OWNER, or JSON.",
     {{"-f, --format table|json", "output format (default table)"},
      {"-q, --quiet", "print only the ids"}}},
    {"ps",
     cmd_ps,
     "ps [-f table|json] ID [PS OPTIONS...]",
     "list the processes of a sandbox",
     "With -f json, a JSON array of host pids; otherwise ps(1) is run with PS OPTIONS (default "
     "-ef) and its output filtered to the sandbox's processes.",
     {{"-f, --format table|json", "output format (default table)"},
      ID_ARG,
      {"PS OPTIONS", "passed to ps(1)"}},
     true},
    {"exec",
     cmd_exec,
     "exec [--process F] [-d] [-e K=V]... [--cwd D] [-t] [--console-socket S] [--pid-file F] "
     "[--preserve-fds N] ID [--] ARGS...",
     "run another process inside a running sandbox",
     "The new process joins the sandbox's namespaces and cgroups, gets its syscall policy and "
     "is served by its guest kernel like the workload. Without -d qctl waits for it and exits "
     "with its status.",
     {{"-p, --process FILE", "an OCI process object (JSON) instead of ARGS"},
      {"-d, --detach", "do not wait for the process"},
      {"-e, --env K=V", "add an environment variable (repeatable)"},
      {"--cwd DIR", "working directory inside the sandbox"},
      {"-t, --tty", "give the process a terminal; its master goes to --console-socket"},
      {"--console-socket SOCKET", "send the pty's master to this unix socket"},
      {"--pid-file FILE", "write the process's host pid there"},
      {"--preserve-fds N", "pass fds 3..3+N-1 on to the process"},
      ID_ARG,
      {"ARGS", "the program and its arguments"}},
     true},
    {"pause",
     cmd_pause,
     "pause ID",
     "freeze every process of a sandbox",
     "Uses the cgroup freezer; the state becomes \"paused\".",
     {ID_ARG}},
    {"resume", cmd_resume, "resume ID", "thaw a paused sandbox", "The reverse of pause.", {ID_ARG}},
    {"features",
     cmd_features,
     "features",
     "print what this runtime supports (runc's features JSON)",
     "Namespaces, capabilities, mount options, hooks and annotations this build supports, in "
     "the runtime-spec features format that containerd and podman read.",
     {{NULL, NULL}}},
    {"spec",
     cmd_spec,
     "spec [-b DIR]",
     "write a default config.json",
     "Writes a config.json for a busybox-style rootfs in DIR (default the current directory); "
     "refuses to overwrite one.",
     {{"-b, --bundle DIR", "where to write config.json"}}},
    {"version",
     cmd_version,
     "version",
     "print qctl's and the runtime spec's versions",
     "Also `qctl --version`.",
     {{NULL, NULL}}},
    {"daemons",
     cmd_daemons,
     "daemons start [--metrics ADDR] [--hibernate-idle SECONDS] | stop | status",
     "start, stop or show quiver-vmmd for this runtime directory",
     "qctl starts quiver-vmmd on demand; start it first under podman or containerd so that it "
     "is not the child of a shim or of conmon. stop leaves sandboxes running: a restarted "
     "vmmd adopts them. status prints the pid and the metrics URL.",
     {{"--metrics ADDR", "with start: serve Prometheus metrics on host:port (port 0: any)"},
      {"--hibernate-idle SECONDS",
       "with start: hibernate running sandboxes that used no CPU and trapped no call for that "
       "long (docs/hibernate.md); 0 or absent: never"}}},
    {"ls",
     cmd_ls,
     "ls [--json]",
     "list sandboxes with their status, pid and bundle",
     "Quiver's own listing (list is runc's).",
     {{"--json", "JSON array of OCI states"}}},
    {"pool",
     cmd_pool,
     "pool start [--config FILE] [--metrics ADDR] [--wait] [--timeout S] | stop | status [--json]",
     "start, stop or show the pool daemon (quiver-poold)",
     "poold keeps ready cgroups, network namespaces, writable layers and warm guest kernels "
     "between a low and a high watermark (docs/pools.md). start returns once poold serves its "
     "socket; with --wait it then shows the pools filling (a line redrawn on a terminal, at "
     "most a line a second otherwise) until they are ready: warm guest kernels and layers at "
     "their high watermark, cgroups and network namespaces (which warm guest kernels draw "
     "on) at least at their low one, nothing starting. stop drains the pools "
     "and waits for poold to exit. status prints each pool's size, hits, misses and refill "
     "rate.",
     {{"--config FILE", "with start: pool sizes (see docs/pools.md)"},
      {"--metrics ADDR", "with start: serve Prometheus metrics on host:port"},
      {"--wait", "with start: wait until the pools are ready, showing their progress"},
      {"--timeout S", "with --wait: give up after S seconds (default 120), naming the pools "
		      "still short"},
      {"--json", "with status: JSON instead of a table"}}},
    {"stats",
     cmd_stats,
     "stats [--json] [ID...]",
     "per sandbox: CPU, memory, pids and trapped syscalls",
     "Asks vmmd (its stats op) for every sandbox, or for each ID given. CPU is the seconds "
     "its processes used (cpuacct.usage); memory is its working set (memory usage minus "
     "inactive file cache, as kubelet counts it); pids the processes and threads; syscalls "
     "the calls its guest kernel trapped and denied. An unknown ID fails the command.",
     {{"--json", "the op's items as they are (cpu_ns, memory_bytes, ...), null where a value "
		 "is missing"},
      {"ID...", "only these sandboxes"}}},
    {"events",
     cmd_events,
     "events [--json] [--id ID]",
     "follow vmmd's lifecycle events live",
     "Subscribes to ROOT/events.sock (starting vmmd if none serves ROOT) and prints one line "
     "per event, TIME TYPE ID [exit_code=N], until SIGINT or SIGTERM (status 0). If vmmd goes "
     "away it says so and exits 1. Events a new subscriber is not yet attached for are "
     "missed: follow, do not count on the first.",
     {{"--json", "one JSON object per line"}, {"--id ID", "only this sandbox's events"}}},
    {"hibernate",
     cmd_hibernate,
     "hibernate [--no-wait] [--auto-wake|--no-auto-wake] ID...",
     "freeze sandboxes and move their memory out to swap",
     "Freezes each sandbox (cgroup freezer) and has vmmd page its memory out: anonymous and "
     "shared memory to swap, clean page cache dropped. Processes, namespaces, sockets and "
     "files stay; `qctl wake`, `qctl resume`, any `qctl kill` or `qctl exec`, or a new "
     "connection to one of its listening sockets brings it back, and pages "
     "return on demand. Needs swap with room: poold's swap area (\"swap\" in its config) or "
     "the host's. OCI clients see the sandbox as paused; `qctl ls` and `inspect` say "
     "hibernated.\n\n"
     "qctl waits until every sandbox is paged out (a progress line for several) and prints "
     "what went to swap.",
     {{"--no-wait", "return once the sandboxes are frozen; the paging out goes on"},
      {"--no-auto-wake", "a connection waits until something else wakes them (default: the "
			 "annotation io.quiver.wake-on-connection, \"off\" or on)"},
      {"--auto-wake", "a new connection to a listening socket wakes them"},
      {"ID...", "the sandboxes"}}},
    {"wake",
     cmd_wake,
     "wake [--prefetch|--no-prefetch] ID...",
     "bring hibernated sandboxes back to running",
     "Thaws each sandbox; its pages come back from swap as they are touched. A second after "
     "each wake vmmd records which pages the sandbox touched (its working set); with "
     "--prefetch, the next wake asks the kernel to read those back before the thaw instead "
     "of one fault at a time. Without either flag, the sandbox's annotation "
     "io.quiver.wake-prefetch (\"on\") decides; it also decides for the wakes a kill or a "
     "resume makes.",
     {{"--prefetch", "read the recorded working set back in first"},
      {"--no-prefetch", "do not, whatever the annotation says"},
      {"ID...", "the sandboxes"}}},
    {"inspect",
     cmd_inspect,
     "inspect ID",
     "print everything vmmd knows about a sandbox",
     "JSON: the OCI state, the guest kernel's pid, cgroups, times, exit status and the "
     "per-syscall counts of trapped and denied calls.",
     {ID_ARG}},
    {"policy",
     cmd_policy,
     "policy [--format table|json|markdown]",
     "print the syscall policy every sandbox gets",
     "Each syscall's verdict (passed to the host kernel, served by the guest kernel, or denied "
     "with an errno) and why; docs/security-model.md is generated from it.",
     {{"--format table|json|markdown", "output format (default table)"}}},
    {"help",
     cmd_help,
     "help [COMMAND] | help --man",
     "show this help or a command's",
     "`qctl COMMAND --help` is the same as `qctl help COMMAND`. --man prints the manual page "
     "(roff) that make builds and installs as qctl(1).",
     {{"--man", "print the man page source"}}},
};

const size_t n_commands = sizeof(commands) / sizeof(commands[0]);

const struct command *command_find(const char *name)
{
	for (size_t i = 0; i < n_commands; i++)
		if (strcmp(commands[i].name, name) == 0)
			return &commands[i];
	return NULL;
}

const char qctl_description[] =
    "Quiver is a secure container runtime: each sandbox gets its own guest kernel, a small "
    "supervisor that is the sandbox's pid 1 and serves the workload's trapped syscalls "
    "through seccomp user notification, inside namespaces, cgroups and a pivoted root.\n\n"
    "qctl speaks runc's command grammar, so containerd's runc shim (`ctr run --runc-binary`, "
    "a RuntimeClass) and podman (`--runtime`) drive it unchanged; its other commands manage "
    "Quiver's daemons and show what they know. Sandboxes are recorded by quiver-vmmd, which "
    "qctl starts for its runtime directory when it does not answer.";

const struct help_opt global_opts[] = {
    {"--root DIR", "the runtime directory: sockets, state and each sandbox's records (default "
		   "/run/quiver)"},
    {"--log FILE", "also write errors (and with --debug, more) to FILE"},
    {"--log-format text|json", "json: one runc-style JSON object per line, which containerd's "
			       "shim reads"},
    {"--debug", "log at debug level"},
    {"--systemd-cgroup", "read cgroupsPath as systemd's slice:prefix:name"},
    {"-v, --version", "print the version"},
    {"-h, --help", "print this help"},
    {NULL, NULL},
};

const struct help_section man_sections[] = {
    {"ENVIRONMENT",
     "QUIVER_GUEST, QUIVER_VMMD, QUIVER_POOLD: the path of quiver-guest, quiver-vmmd, "
     "quiver-poold (default: next to qctl).\n\n"
     "QUIVER_NO_WARM=1: never start a sandbox from a warm guest kernel.\n\n"
     "QCTL_TRACE=1: print the time of each step of a command on stderr."},
    {"FILES", "ROOT/vmmd.sock: vmmd's API (nng, msgpack). ROOT/events.sock: its lifecycle events. "
	      "ROOT/vmmd.metrics: the URL of its Prometheus metrics. ROOT/poold.sock: poold's API. "
	      "ROOT/ID/: a sandbox's state directory (state.json, its exit report, its syscall "
	      "counters). ROOT is /run/quiver unless --root says otherwise."},
    {"EXIT STATUS",
     "0 on success; 1 on an error, reported as one line on stderr (and in --log). run and "
     "exec without -d exit with the workload's status: its exit code, or 128+N when signal N "
     "killed it."},
    {"SEE ALSO",
     "runc(8), containerd(8), podman(1); docs/api.md, docs/security-model.md and docs/pools.md "
     "in Quiver's source."},
    {NULL, NULL},
};
