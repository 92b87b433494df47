/* qctl: global flags, the command table, and the one way to fail.
 *
 *	qctl [--root DIR] [--log FILE] [--log-format text|json] [--debug]
 *	     [--systemd-cgroup] COMMAND [ARGS...]
 *
 * Errors are one line on stderr and, with --log, one entry in the log file
 * (runc's JSON when --log-format json: containerd reads the last one). */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "libcommon/cleanup.h"
#include "libcommon/log.h"
#include "libcommon/daemon.h"
#include "qctl/qctl.h"

struct qctl_global g = {.root = DEFAULT_ROOT, .log_format = "text"};
static bool log_ready;

static void vreport(const char *fmt, va_list ap)
{
	char msg[QERR_MSG_MAX * 2];

	vsnprintf(msg, sizeof(msg), fmt, ap);
	/* One line, whatever the message carried. */
	for (char *p = msg; *p; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
	fprintf(stderr, "%s\n", msg);
	if (log_ready)
		qlog_error("%s", msg);
}

void die(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vreport(fmt, ap);
	va_end(ap);
	exit(1);
}

void die_err(const struct qerr *err)
{
	die("%s", err->msg[0] ? err->msg : strerror(err->code ? err->code : EIO));
}

void usage_error(const char *cmd, const char *fmt, ...)
{
	char msg[QERR_MSG_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	die("%s: %s (see qctl help)", cmd, msg);
}

void sibling_path(const char *prog, const char *env, char *buf, size_t len)
{
	if (daemon_sibling(prog, env, buf, len) < 0)
		snprintf(buf, len, "%s", prog);
}

static const struct {
	const char *name;
	int sig;
} signames[] = {
    {"HUP", SIGHUP},	   {"INT", SIGINT},   {"QUIT", SIGQUIT},     {"ILL", SIGILL},
    {"TRAP", SIGTRAP},	   {"ABRT", SIGABRT}, {"IOT", SIGIOT},	     {"BUS", SIGBUS},
    {"FPE", SIGFPE},	   {"KILL", SIGKILL}, {"USR1", SIGUSR1},     {"SEGV", SIGSEGV},
    {"USR2", SIGUSR2},	   {"PIPE", SIGPIPE}, {"ALRM", SIGALRM},     {"TERM", SIGTERM},
    {"STKFLT", SIGSTKFLT}, {"CHLD", SIGCHLD}, {"CONT", SIGCONT},     {"STOP", SIGSTOP},
    {"TSTP", SIGTSTP},	   {"TTIN", SIGTTIN}, {"TTOU", SIGTTOU},     {"URG", SIGURG},
    {"XCPU", SIGXCPU},	   {"XFSZ", SIGXFSZ}, {"VTALRM", SIGVTALRM}, {"PROF", SIGPROF},
    {"WINCH", SIGWINCH},   {"IO", SIGIO},     {"POLL", SIGPOLL},     {"PWR", SIGPWR},
    {"SYS", SIGSYS},
};

int parse_signal(const char *s, int *sig)
{
	char *end;
	long n;

	if (isdigit((unsigned char)s[0])) {
		errno = 0;
		n = strtol(s, &end, 10);
		if (errno || *end || n < 1 || n > 64)
			return -EINVAL;
		*sig = (int)n;
		return 0;
	}
	if (strncasecmp(s, "SIG", 3) == 0)
		s += 3;
	for (size_t i = 0; i < ARRAY_SIZE(signames); i++) {
		if (strcasecmp(s, signames[i].name) == 0) {
			*sig = signames[i].sig;
			return 0;
		}
	}
	if (strncasecmp(s, "RTMIN", 5) == 0 || strncasecmp(s, "RTMAX", 5) == 0) {
		int base = strncasecmp(s, "RTMIN", 5) == 0 ? SIGRTMIN : SIGRTMAX;
		n = 0;
		if (s[5]) {
			n = strtol(s + 5, &end, 10);
			if (*end)
				return -EINVAL;
		}
		if (base + n < SIGRTMIN || base + n > SIGRTMAX)
			return -EINVAL;
		*sig = (int)(base + n);
		return 0;
	}
	return -EINVAL;
}

/* Atomically, like runc: a reader never sees a half-written pid file. */
int write_pid_file(const char *path, pid_t pid, struct qerr *err)
{
	char tmp[PATH_MAX], buf[32];
	cleanup_close int fd = -1;
	int n;

	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int)getpid()) >= sizeof(tmp))
		return qerr_set(err, ENAMETOOLONG, "pid file %s: name too long", path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
	if (fd < 0)
		return qerr_sys(err, errno, "pid file %s", path);
	n = snprintf(buf, sizeof(buf), "%d", (int)pid);
	if (write(fd, buf, (size_t)n) != n || rename(tmp, path) < 0) {
		int e = errno;
		unlink(tmp);
		return qerr_sys(err, e, "pid file %s", path);
	}
	return 0;
}

void trace_point(const char *what)
{
	static int on = -1;
	static struct timespec t0;
	struct timespec t;

	if (on < 0) {
		on = getenv("QCTL_TRACE") != NULL;
		clock_gettime(CLOCK_MONOTONIC, &t0);
	}
	if (!on)
		return;
	clock_gettime(CLOCK_MONOTONIC, &t);
	fprintf(stderr, "qctl: %8.3f ms %s\n",
		(double)(t.tv_sec - t0.tv_sec) * 1e3 + (double)(t.tv_nsec - t0.tv_nsec) / 1e6,
		what);
}

static int cmd_help(int argc, char **argv);

static const struct command {
	const char *name;
	int (*fn)(int, char **);
	const char *usage;
} commands[] = {
    {"create", cmd_create,
     "create [-b DIR] [--pid-file F] [--console-socket S] [--preserve-fds N] ID"},
    {"start", cmd_start, "start ID"},
    {"run", cmd_run, "run [-d] [-b DIR] [--pid-file F] [--console-socket S] [--preserve-fds N] ID"},
    {"state", cmd_state, "state ID"},
    {"kill", cmd_kill, "kill [--all|-a] ID [SIGNAL]"},
    {"delete", cmd_delete, "delete [--force|-f] ID"},
    {"list", cmd_list, "list [-f table|json] [-q]"},
    {"ps", cmd_ps, "ps [-f table|json] ID [PS OPTIONS...]"},
    {"exec", cmd_exec,
     "exec [--process F] [-d] [-e K=V]... [--cwd D] [-t] [--console-socket S] "
     "[--pid-file F] [--preserve-fds N] ID [--] ARGS..."},
    {"pause", cmd_pause, "pause ID"},
    {"resume", cmd_resume, "resume ID"},
    {"features", cmd_features, "features"},
    {"spec", cmd_spec, "spec [-b DIR]"},
    {"version", cmd_version, "version"},
    {"daemons", cmd_daemons, "daemons start [--metrics ADDR] | stop | status"},
    {"ls", cmd_ls, "ls [--json]"},
    {"pool", cmd_pool, "pool start [--config FILE] [--metrics ADDR] | stop | status [--json]"},
    {"inspect", cmd_inspect, "inspect ID"},
    {"stats", cmd_stats, "stats [--json] [ID...]"},
    {"events", cmd_events, "events [--json] [--id ID]"},
    {"policy", cmd_policy, "policy [--format table|json|markdown]"},
    {"help", cmd_help, "help"},
};

static int cmd_help(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	printf("usage: qctl [--root DIR] [--log FILE] [--log-format text|json] [--debug] "
	       "[--systemd-cgroup] COMMAND\n\ncommands:\n");
	for (size_t i = 0; i < ARRAY_SIZE(commands); i++)
		printf("   %s\n", commands[i].usage);
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"root", required_argument, NULL, 'r'},
	    {"log", required_argument, NULL, 'l'},
	    {"log-format", required_argument, NULL, 'F'},
	    {"debug", no_argument, NULL, 'd'},
	    {"systemd-cgroup", no_argument, NULL, 's'},
	    {"version", no_argument, NULL, 'v'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	enum qlog_format fmt;
	struct qerr err;
	int c;

	trace_point("main");
	opterr = 0;
	while ((c = getopt_long(argc, argv, "+vh", opts, NULL)) != -1) {
		switch (c) {
		case 'r':
			g.root = optarg;
			break;
		case 'l':
			g.log = optarg;
			break;
		case 'F':
			if (qlog_parse_format(optarg, &fmt) < 0)
				die("invalid log format \"%s\"", optarg);
			g.log_format = optarg;
			break;
		case 'd':
			g.debug = true;
			break;
		case 's':
			g.systemd_cgroup = true;
			break;
		case 'v':
			return cmd_version(0, NULL);
		case 'h':
			return cmd_help(0, NULL);
		default:
			die("unknown global option %s", argv[optind - 1]);
		}
	}
	if (g.log) {
		qlog_parse_format(g.log_format, &fmt);
		if (qlog_init("qctl", g.log, fmt, g.debug ? QLOG_DEBUG : QLOG_INFO, &err) < 0)
			die_err(&err);
		log_ready = true;
	}
	signal(SIGPIPE, SIG_IGN);
	if (optind >= argc)
		return cmd_help(0, NULL), 1;
	for (size_t i = 0; i < ARRAY_SIZE(commands); i++) {
		if (strcmp(argv[optind], commands[i].name) == 0) {
			/* Each command parses its own options, argv[0] being its
			 * name; optind = 0 re-initializes glibc's getopt. */
			int base = optind;
			optind = 0;
			return commands[i].fn(argc - base, argv + base);
		}
	}
	die("unknown command \"%s\"", argv[optind]);
}
