/* Management commands: the daemons (embedded mode), ls, inspect, policy. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "qctl/qctl.h"

json_t *list_sandboxes(void);

/* How long `daemons stop` waits for vmmd to exit once it accepted shutdown. */
#define STOP_WAIT_MS 10000

static int ping(struct qerr *err, int64_t *pid, int64_t *count, char *ver, size_t verlen)
{
	struct qmsg_out m;
	struct qmsg_in reply;
	int r;

	qmsg_out_init(&m);
	qmsg_begin(&m, "ping", 0);
	r = vmmd_call(&m, &reply, err);
	qmsg_out_free(&m);
	if (r < 0)
		return r;
	qmsg_get_int(reply.root, "pid", 0, INT32_MAX, pid, NULL);
	qmsg_get_int(reply.root, "sandboxes", 0, INT64_MAX, count, NULL);
	qmsg_get_str(reply.root, "version", ver, verlen, NULL);
	qmsg_in_free(&reply);
	return 0;
}

/* The URL vmmd serves /metrics on (ROOT/vmmd.metrics), or "" when off. */
static void metrics_url(char *buf, size_t len)
{
	char path[PATH_MAX + 32];
	FILE *f;

	buf[0] = '\0';
	snprintf(path, sizeof(path), "%s/vmmd.metrics", g.root);
	f = fopen(path, "re");
	if (!f)
		return;
	if (!fgets(buf, (int)len, f))
		buf[0] = '\0';
	buf[strcspn(buf, "\n")] = '\0';
	fclose(f);
}

static int daemons_start(int argc, char **argv)
{
	static const struct option opts[] = {{"metrics", required_argument, NULL, 'm'},
					     {"hibernate-idle", required_argument, NULL, 'I'},
					     {NULL, 0, NULL, 0}};
	char url[256];
	struct qerr err;
	int64_t pid = 0, count = 0;
	char ver[32] = "?";
	int c;

	while ((c = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
		if (c == 'm')
			g.metrics = optarg;
		else if (c == 'I')
			g.hibernate_idle = optarg;
		else if (c == ':')
			usage_error("daemons start", "option %s needs a value", argv[optind - 1]);
		else
			usage_error("daemons start", "unknown option %s", argv[optind - 1]);
	}
	if (optind != argc)
		usage_error("daemons start",
			    "takes no arguments but --metrics ADDR and --hibernate-idle SECONDS");
	if (g.hibernate_idle) {
		char *end;
		double v = strtod(g.hibernate_idle, &end);
		if (*end || end == g.hibernate_idle || !(v >= 0 && v <= 86400 * 365))
			usage_error("daemons start", "invalid --hibernate-idle \"%s\" (seconds)",
				    g.hibernate_idle);
	}
	/* A running vmmd keeps its settings: they only reach one we start. */
	if ((g.metrics || g.hibernate_idle) && vmmd_connect(false, &err) == 0) {
		if (ping(&err, &pid, &count, ver, sizeof(ver)) < 0)
			die_err(&err);
		metrics_url(url, sizeof(url));
		die("vmmd already serves %s (pid %lld, metrics %s); `qctl daemons stop` it to "
		    "change --metrics or --hibernate-idle",
		    g.root, (long long)pid, url[0] ? url : "off");
	}
	if (vmmd_connect(true, &err) < 0 || ping(&err, &pid, &count, ver, sizeof(ver)) < 0)
		die_err(&err);
	metrics_url(url, sizeof(url));
	printf("vmmd: running (pid %lld, %s/vmmd.sock, metrics %s)\n", (long long)pid, g.root,
	       url[0] ? url : "off");
	return 0;
}

int cmd_daemons(int argc, char **argv)
{
	struct qerr err;
	int64_t pid = 0, count = 0;
	char ver[32] = "?", url[256];
	const char *what;

	if (argc < 2)
		usage_error(argv[0], "start [--metrics ADDR]|stop|status");
	what = argv[1];
	if (strcmp(what, "start") == 0)
		return daemons_start(argc - 1, argv + 1);
	if (argc != 2)
		usage_error(argv[0], "%s takes no arguments", what);
	if (strcmp(what, "status") == 0) {
		if (vmmd_connect(false, &err) < 0) {
			printf("vmmd: not running (%s)\n", g.root);
			return 3; /* LSB: program is not running */
		}
		if (ping(&err, &pid, &count, ver, sizeof(ver)) < 0)
			die_err(&err);
		metrics_url(url, sizeof(url));
		printf("vmmd: running (pid %lld, version %s, %lld sandboxes, %s/vmmd.sock, "
		       "metrics %s)\n",
		       (long long)pid, ver, (long long)count, g.root, url[0] ? url : "off");
		return 0;
	}
	if (strcmp(what, "stop") == 0) {
		struct qmsg_out m;
		struct qmsg_in reply;
		struct pollfd pfd = {.fd = -1, .events = POLLIN};

		if (vmmd_connect(false, &err) < 0) {
			printf("vmmd: not running\n");
			return 0;
		}
		/* Stopped means gone: the caller may start another at once. */
		if (ping(&err, &pid, &count, ver, sizeof(ver)) < 0)
			die_err(&err);
		pfd.fd = (int)syscall(SYS_pidfd_open, (pid_t)pid, 0);
		qmsg_out_init(&m);
		qmsg_begin(&m, "shutdown", 0);
		if (vmmd_call(&m, &reply, &err) < 0)
			die_err(&err);
		qmsg_in_free(&reply);
		qmsg_out_free(&m);
		if (pfd.fd >= 0 && poll(&pfd, 1, STOP_WAIT_MS) == 0)
			die("vmmd (pid %lld) accepted shutdown but has not exited after %d s",
			    (long long)pid, STOP_WAIT_MS / 1000);
		printf("vmmd: stopped (sandboxes keep running)\n");
		return 0;
	}
	usage_error(argv[0], "unknown subcommand \"%s\" (start|stop|status)", what);
}

int cmd_ls(int argc, char **argv)
{
	json_t *arr, *sb;
	size_t i;
	bool as_json = parse_json_flag(argc, argv);

	if (optind != argc)
		usage_error(argv[0], "takes no arguments");
	arr = list_sandboxes();
	if (as_json) {
		print_json(arr);
	} else {
		struct table *t = table_new(5);
		table_add(t, (const char *[]){"ID", "STATUS", "PID", "CREATED", "BUNDLE"});
		json_array_foreach (arr, i, sb) {
			char pid[24];
			const char *s[5];
			snprintf(pid, sizeof(pid), "%lld",
				 (long long)json_integer_value(json_object_get(sb, "pid")));
			s[0] = json_string_value(json_object_get(sb, "id"));
			/* hibernated (or hibernating) rather than OCI's paused */
			s[1] = json_string_value(json_object_get(sb, "hibernation"));
			if (!s[1])
				s[1] = json_string_value(json_object_get(sb, "status"));
			s[2] = pid;
			s[3] = json_string_value(json_object_get(sb, "created"));
			s[4] = json_string_value(json_object_get(sb, "bundle"));
			table_add(t, s);
		}
		table_print(t);
	}
	json_decref(arr);
	return 0;
}

int cmd_inspect(int argc, char **argv)
{
	struct qmsg_in reply;
	struct qerr err;
	json_t *j;

	if (argc != 2)
		usage_error(argv[0], "requires exactly 1 argument (the container id)");
	if (sandbox_id_check(argv[1], &err) < 0)
		die_err(&err);
	if (vmmd_call_id("inspect", argv[1], &reply, &err) < 0)
		die_err(&err);
	j = reply_to_json(&reply);
	qmsg_in_free(&reply);
	print_json(j);
	json_decref(j);
	return 0;
}

int cmd_policy(int argc, char **argv)
{
	char prog[PATH_MAX];
	const char *args[8];
	int n = 0;

	sibling_path("quiver-guest", "QUIVER_GUEST", prog, sizeof(prog));
	args[n++] = prog;
	args[n++] = "policy";
	for (int i = 1; i < argc && n < 7; i++)
		args[n++] = argv[i];
	if (argc > 6)
		usage_error(argv[0], "too many arguments");
	args[n] = NULL;
	signal(SIGPIPE, SIG_DFL); /* ours is ignored; `qctl policy | head` */
	execv(prog, (char *const *)args);
	die("exec %s: %s", prog, strerror(errno));
}
