/* Watching sandboxes: `stats` (what each one uses, from vmmd's stats op)
 * and `events` (vmmd's event stream, ROOT/events.sock, as lines). */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "libcommon/sp_client.h"
#include "qctl/qctl.h"

/* ---- stats ---- */

/* The items of a stats reply, appended to arr. */
static void stats_call(const char *id, json_t *arr)
{
	struct qmsg_out m;
	struct qmsg_in reply;
	struct qerr err;
	json_t *j, *items, *it;
	size_t i;

	qmsg_out_init(&m);
	qmsg_begin(&m, "stats", id ? 1 : 0);
	if (id)
		qmsg_put_str(&m, "id", id);
	if (vmmd_call(&m, &reply, &err) < 0)
		die_err(&err);
	qmsg_out_free(&m);
	j = reply_to_json(&reply);
	qmsg_in_free(&reply);
	items = json_object_get(j, "sandboxes");
	if (!json_is_array(items))
		die("quiver-vmmd's stats reply has no sandboxes");
	json_array_foreach (items, i, it)
		json_array_append(arr, it);
	json_decref(j);
}

static void fmt_bytes(json_t *v, char *buf, size_t len)
{
	static const char *const unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
	double b;
	int u = 0;

	if (!json_is_integer(v)) {
		snprintf(buf, len, "-");
		return;
	}
	b = (double)json_integer_value(v);
	while (b >= 1024 && u < 4) {
		b /= 1024;
		u++;
	}
	snprintf(buf, len, u ? "%.1f%s" : "%.0f%s", b, unit[u]);
}

static void fmt_int(json_t *v, char *buf, size_t len)
{
	if (json_is_integer(v))
		snprintf(buf, len, "%lld", (long long)json_integer_value(v));
	else
		snprintf(buf, len, "-");
}

int cmd_stats(int argc, char **argv)
{
	struct qerr err;
	json_t *arr, *sb;
	size_t i;
	bool as_json = parse_json_flag(argc, argv);

	for (int k = optind; k < argc; k++)
		if (sandbox_id_check(argv[k], &err) < 0)
			die_err(&err);
	arr = json_array();
	if (!arr)
		die("out of memory");
	if (optind == argc)
		stats_call(NULL, arr);
	for (int k = optind; k < argc; k++)
		stats_call(argv[k], arr);
	if (as_json) {
		print_json(arr);
		json_decref(arr);
		return 0;
	}
	struct table *t = table_new(7);
	table_add(t,
		  (const char *[]){"ID", "STATUS", "CPU", "MEMORY", "PIDS", "SYSCALLS", "DENIED"});
	json_array_foreach (arr, i, sb) {
		char cpu[32], mem[32], pids[24], trapped[24], denied[24];
		json_t *ns = json_object_get(sb, "cpu_ns");
		if (json_is_integer(ns))
			snprintf(cpu, sizeof(cpu), "%.3fs", (double)json_integer_value(ns) / 1e9);
		else
			snprintf(cpu, sizeof(cpu), "-");
		fmt_bytes(json_object_get(sb, "memory_bytes"), mem, sizeof(mem));
		fmt_int(json_object_get(sb, "pids"), pids, sizeof(pids));
		fmt_int(json_object_get(sb, "syscalls_trapped"), trapped, sizeof(trapped));
		fmt_int(json_object_get(sb, "syscalls_denied"), denied, sizeof(denied));
		table_add(t, (const char *[]){json_string_value(json_object_get(sb, "id")),
					      json_string_value(json_object_get(sb, "status")), cpu,
					      mem, pids, trapped, denied});
	}
	table_print(t);
	json_decref(arr);
	return 0;
}

/* ---- events ---- */

static volatile sig_atomic_t stop_signal;

static void on_stop(int sig)
{
	stop_signal = sig;
}

static void print_event(const struct qmsg_in *ev, bool as_json)
{
	char type[32] = "?", id[SANDBOX_ID_MAX + 1] = "?", when[64] = "?";
	int64_t code = -1;

	if (as_json) {
		json_t *j = reply_to_json(ev);
		char *s = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
		if (s)
			printf("%s\n", s);
		free(s);
		json_decref(j);
		return;
	}
	qmsg_get_str(ev->root, "type", type, sizeof(type), NULL);
	qmsg_get_str(ev->root, "id", id, sizeof(id), NULL);
	qmsg_get_str(ev->root, "time", when, sizeof(when), NULL);
	qmsg_get_int(ev->root, "exit_code", 0, 255, &code, NULL);
	if (code >= 0)
		printf("%s %-8s %s exit_code=%lld\n", when, type, id, (long long)code);
	else
		printf("%s %-8s %s\n", when, type, id);
}

int cmd_events(int argc, char **argv)
{
	static const struct option opts[] = {{"json", no_argument, NULL, 'j'},
					     {"id", required_argument, NULL, 'i'},
					     {NULL, 0, NULL, 0}};
	struct qspc w = QSPC_INIT("quiver-vmmd");
	const char *only = NULL;
	bool as_json = false;
	char path[PATH_MAX + 32];
	struct sigaction sa = {.sa_handler = on_stop};
	sigset_t block, waitmask;
	struct qerr err;
	int c;

	while ((c = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
		if (c == 'j')
			as_json = true;
		else if (c == 'i')
			only = optarg;
		else if (c == ':')
			usage_error(argv[0], "option %s needs a value", argv[optind - 1]);
		else
			usage_error(argv[0], "unknown option %s", argv[optind - 1]);
	}
	if (optind != argc)
		usage_error(argv[0], "takes no arguments but --json and --id ID");
	if (only && sandbox_id_check(only, &err) < 0)
		die_err(&err);
	/* Embedded mode: the events come from a vmmd, so there must be one. */
	if (vmmd_connect(true, &err) < 0)
		die_err(&err);
	snprintf(path, sizeof(path), "%s/events.sock", g.root);
	if (qspc_dial_sub(&w, path, &err) < 0)
		die_err(&err);

	/* SIGINT/SIGTERM end the stream (exit 0); they are only delivered
	 * inside ppoll, so none is lost between the check and the wait. */
	sigemptyset(&block);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGTERM);
	sigprocmask(SIG_BLOCK, &block, &waitmask);
	sigdelset(&waitmask, SIGINT);
	sigdelset(&waitmask, SIGTERM);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	setvbuf(stdout, NULL, _IOLBF, 0);

	while (!stop_signal) {
		struct pollfd p = {.fd = w.fd, .events = POLLIN};
		struct qmsg_in ev;
		char id[SANDBOX_ID_MAX + 1] = "";

		if (ppoll(&p, 1, NULL, &waitmask) < 0) {
			if (errno == EINTR)
				continue;
			die("events: poll: %s", strerror(errno));
		}
		/* A message is sent whole: once it starts, the rest follows. */
		if (qspc_recv(&w, &ev, 5000, &err) < 0) {
			if (err.code == ECONNRESET)
				die("quiver-vmmd at %s went away: no more events", g.root);
			die_err(&err);
		}
		qmsg_get_str(ev.root, "id", id, sizeof(id), NULL);
		if (strcmp(ev.op, "event") == 0 && (!only || strcmp(id, only) == 0))
			print_event(&ev, as_json);
		qmsg_in_free(&ev);
		if (ferror(stdout))
			break; /* the reader is gone (`qctl events | head`) */
	}
	qspc_close(&w);
	return 0;
}
