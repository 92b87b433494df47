/* quiver-guest: the guest kernel's command line (docs/guest-protocol.md).
 *
 *   quiver-guest create ...   G: build the sandbox, report on the sync socket
 *   quiver-guest exec ...     start one more process in a running sandbox
 *   quiver-guest policy       print the syscall policy table
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "libcommon/log.h"
#include "guest/guest.h"
#include "guest/policy.h"
#include "guest/trap.h"

static _Noreturn void usage(void)
{
	fprintf(
	    stderr,
	    "usage: quiver-guest create --id ID --bundle DIR --state-dir DIR --sync-fd N\n"
	    "                           [--console-socket PATH] [--preserve-fds N]\n"
	    "                           [--cgroup-parent PATH] [--systemd-cgroup]\n"
	    "                           [--log PATH] [--log-format text|json] [--debug]\n"
	    "       quiver-guest exec --id ID --state-dir DIR --bundle DIR --pid S_PID "
	    "--sync-fd N\n"
	    "                         (--process FILE | -- ARGS...) [--env K=V]... [--cwd DIR]\n"
	    "                         [--tty] [--console-socket PATH] [--preserve-fds N] "
	    "[--detach]\n"
	    "       quiver-guest warm --sock PATH --sync-fd N [--cgroup DIR]... [--netns PATH]\n"
	    "                         [--log PATH]   (spawned by quiver-poold)\n"
	    "       quiver-guest policy [--format table|json|markdown|bpf-c|check-bpf]\n");
	exit(2);
}

static int parse_int(const char *s, int min, int max, const char *what)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno || *end || end == s || v < min || v > max) {
		fprintf(stderr, "quiver-guest: %s: bad number \"%s\"\n", what, s);
		exit(2);
	}
	return (int)v;
}

enum {
	OPT_ID = 256,
	OPT_BUNDLE,
	OPT_STATE_DIR,
	OPT_SYNC_FD,
	OPT_CONSOLE_SOCKET,
	OPT_PRESERVE_FDS,
	OPT_CGROUP_PARENT,
	OPT_SYSTEMD_CGROUP,
	OPT_LOG,
	OPT_LOG_FORMAT,
	OPT_DEBUG,
	OPT_PID,
	OPT_PROCESS,
	OPT_ENV,
	OPT_CWD,
	OPT_TTY,
	OPT_DETACH,
	OPT_FORMAT,
	OPT_SOCK,
	OPT_CGROUP,
	OPT_NETNS,
};

static const struct option long_opts[] = {
    {"id", required_argument, NULL, OPT_ID},
    {"bundle", required_argument, NULL, OPT_BUNDLE},
    {"state-dir", required_argument, NULL, OPT_STATE_DIR},
    {"sync-fd", required_argument, NULL, OPT_SYNC_FD},
    {"console-socket", required_argument, NULL, OPT_CONSOLE_SOCKET},
    {"preserve-fds", required_argument, NULL, OPT_PRESERVE_FDS},
    {"cgroup-parent", required_argument, NULL, OPT_CGROUP_PARENT},
    {"systemd-cgroup", no_argument, NULL, OPT_SYSTEMD_CGROUP},
    {"log", required_argument, NULL, OPT_LOG},
    {"log-format", required_argument, NULL, OPT_LOG_FORMAT},
    {"debug", no_argument, NULL, OPT_DEBUG},
    {"pid", required_argument, NULL, OPT_PID},
    {"process", required_argument, NULL, OPT_PROCESS},
    {"env", required_argument, NULL, OPT_ENV},
    {"cwd", required_argument, NULL, OPT_CWD},
    {"tty", no_argument, NULL, OPT_TTY},
    {"detach", no_argument, NULL, OPT_DETACH},
    {"format", required_argument, NULL, OPT_FORMAT},
    {"sock", required_argument, NULL, OPT_SOCK},
    {"cgroup", required_argument, NULL, OPT_CGROUP},
    {"netns", required_argument, NULL, OPT_NETNS},
    {NULL, 0, NULL, 0},
};

int main(int argc, char **argv)
{
	if (argc < 2)
		usage();
	const char *cmd = argv[1];
	struct create_opts c = {.sync_fd = -1};
	struct exec_opts x = {.sync_fd = -1};
	struct warm_opts w = {.sync_fd = -1};
	const char *log_path = NULL, *format = "table";
	enum qlog_format log_format = QLOG_TEXT;
	enum qlog_level level = QLOG_INFO;
	char **env = calloc((size_t)argc + 1, sizeof(char *));
	if (!env)
		return 1;
	size_t n_env = 0;

	optind = 2;
	int ch;
	while ((ch = getopt_long(argc, argv, "", long_opts, NULL)) != -1) {
		switch (ch) {
		case OPT_ID:
			c.id = x.id = optarg;
			break;
		case OPT_BUNDLE:
			c.bundle = x.bundle = optarg;
			break;
		case OPT_STATE_DIR:
			c.state_dir = x.state_dir = optarg;
			break;
		case OPT_SYNC_FD:
			c.sync_fd = x.sync_fd = w.sync_fd =
			    parse_int(optarg, 0, 1 << 20, "--sync-fd");
			break;
		case OPT_CONSOLE_SOCKET:
			c.console_socket = x.console_socket = optarg;
			break;
		case OPT_PRESERVE_FDS:
			c.preserve_fds = x.preserve_fds =
			    parse_int(optarg, 0, 1 << 16, "--preserve-fds");
			break;
		case OPT_CGROUP_PARENT:
			c.cgroup_parent = optarg;
			break;
		case OPT_SYSTEMD_CGROUP:
			c.systemd_cgroup = true;
			break;
		case OPT_LOG:
			log_path = optarg;
			break;
		case OPT_LOG_FORMAT:
			if (qlog_parse_format(optarg, &log_format) < 0)
				usage();
			break;
		case OPT_DEBUG:
			level = QLOG_DEBUG;
			break;
		case OPT_PID:
			x.pid = parse_int(optarg, 1, 1 << 30, "--pid");
			break;
		case OPT_PROCESS:
			x.process_file = optarg;
			break;
		case OPT_ENV:
			env[n_env++] = optarg;
			break;
		case OPT_CWD:
			x.cwd = optarg;
			break;
		case OPT_TTY:
			x.tty = true;
			break;
		case OPT_DETACH:
			x.detach = true;
			break;
		case OPT_FORMAT:
			format = optarg;
			break;
		case OPT_SOCK:
			w.sock = optarg;
			break;
		case OPT_CGROUP:
			if (w.n_cgroups == CGROUPS_HIER_MAX)
				usage();
			w.cgroups[w.n_cgroups++] = optarg;
			break;
		case OPT_NETNS:
			w.netns = optarg;
			break;
		default:
			usage();
		}
	}
	struct qerr err = {0};
	/* create and exec report their errors to the caller over the sync
	 * socket, and the caller prints them (once) where the user looks; the
	 * guest's own log goes to the sandbox's guest.log unless --log says
	 * otherwise, never to the caller's stderr. */
	char default_log[4096];
	const char *state_dir = strcmp(cmd, "create") == 0 ? c.state_dir
				: strcmp(cmd, "exec") == 0 ? x.state_dir
							   : NULL;
	if (!log_path && state_dir &&
	    (size_t)snprintf(default_log, sizeof(default_log), "%s/guest.log", state_dir) <
		sizeof(default_log))
		log_path = default_log;
	if (qlog_init("quiver-guest", log_path, log_format, level, &err) < 0) {
		fprintf(stderr, "quiver-guest: %s\n", err.msg);
		return 1;
	}

	if (strcmp(cmd, "create") == 0) {
		if (!c.id || !c.bundle || !c.state_dir || c.sync_fd < 0 || optind != argc)
			usage();
		free(env);
		return launcher_main(&c);
	}
	if (strcmp(cmd, "warm") == 0) {
		if (!w.sock || w.sync_fd < 0 || optind != argc)
			usage();
		free(env);
		return warm_main(&w);
	}
	if (strcmp(cmd, "exec") == 0) {
		if (!x.id || !x.state_dir || !x.bundle || !x.pid || x.sync_fd < 0)
			usage();
		if (!x.process_file == (optind == argc))
			usage(); /* exactly one of --process and ARGS */
		x.args = optind < argc ? argv + optind : NULL;
		x.env = env;
		x.n_env = n_env;
		return exec_main(&x);
	}
	free(env); /* only exec uses it */
	if (strcmp(cmd, "policy") == 0) {
		int r;
		if (strcmp(format, "bpf-c") == 0)
			r = trap_export_c(stdout, &err);
		else if (strcmp(format, "check-bpf") == 0)
			r = trap_check_embedded(&err);
		else
			r = policy_print(stdout, format, &err);
		if (r >= 0 && strcmp(format, "check-bpf") == 0)
			printf("embedded filter matches the policy table (%d instructions)\n", r);
		if (r < 0) {
			fprintf(stderr, "quiver-guest: %s\n", err.msg);
			return 1;
		}
		return 0;
	}
	usage();
}
