/* qctl pool start [--config FILE] [--metrics ADDR] [--wait] [--timeout S]
 *	    | stop | status [--json]:
 * poold's pools (ROOT/poold.sock, docs/pools.md). */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "libcommon/cleanup.h"
#include "libcommon/sp_client.h"
#include "qctl/qctl.h"

extern char **environ;

/* *dialed (if not NULL) tells a poold that could not be reached from a
 * failure after the request went out. */
static int pool_call(const char *op, struct qmsg_in *reply, bool *dialed, struct qerr *err)
{
	char path[4200];
	struct qspc c = QSPC_INIT("quiver-poold");
	struct qmsg_out m;
	snprintf(path, sizeof(path), "%s/poold.sock", g.root);
	if (dialed)
		*dialed = false;
	if (qspc_dial(&c, path, err) < 0)
		return qerr_prefix(err, "poold is not running at %s/poold.sock", g.root);
	if (dialed)
		*dialed = true;
	qmsg_out_init(&m);
	qmsg_begin(&m, op, 0);
	int r = qspc_call(&c, &m, reply, 5000, err);
	qmsg_out_free(&m);
	qspc_close(&c);
	return r;
}

static json_t *pool_status(struct qerr *err)
{
	struct qmsg_in reply;
	if (pool_call("status", &reply, NULL, err) < 0)
		return NULL;
	json_t *j = reply_to_json(&reply);
	qmsg_in_free(&reply);
	return j;
}

/* The pools' fill as "cgroup 8/8  netns 4/4  ..." (ready of target); true
 * once every pool has reached its target with nothing starting.  A fresh
 * poold fills each pool to its high watermark, but warm guest kernels then
 * take cgroups and network namespaces from their pools, which refill only
 * below low: so the target is high for warm and layer, low for the others.
 * `shortof` gets the pools that are not there. */
static bool pools_ready(json_t *st, char *line, size_t len, char *shortof, size_t slen)
{
	const char *backend = json_string_value(json_object_get(st, "layer_backend"));
	size_t i, n = 0, m = 0;
	bool ready_all = true;
	json_t *p;

	line[0] = shortof[0] = '\0';
	json_array_foreach (json_object_get(st, "pools"), i, p) {
		const char *kind = json_string_value(json_object_get(p, "kind"));
		long long ready = json_integer_value(json_object_get(p, "ready"));
		long long starting = json_integer_value(json_object_get(p, "starting"));
		bool to_high = kind && (strcmp(kind, "warm") == 0 || strcmp(kind, "layer") == 0);
		long long target = json_integer_value(json_object_get(p, to_high ? "high" : "low"));
		if (!kind || (strcmp(kind, "layer") == 0 && backend && strcmp(backend, "off") == 0))
			continue;
		if (n < len)
			n += (size_t)snprintf(line + n, len - n, "%s%s %lld/%lld", n ? "  " : "",
					      kind, ready, target);
		if (ready < target || starting > 0) {
			ready_all = false;
			if (m < slen)
				m += (size_t)snprintf(shortof + m, slen - m, "%s%s %lld of %lld",
						      m ? ", " : "", kind, ready, target);
		}
	}
	return ready_all;
}

/* pool start --wait: poll status until the pools are ready, showing the
 * progress on stderr. */
static void wait_pools(double timeout)
{
	struct progress pr;
	char line[256], shortof[256];
	struct timespec t0, t;

	progress_init(&pr, stderr, "warming pools");
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		struct qerr err = {0};
		json_t *st = pool_status(&err);
		if (!st) {
			progress_done(&pr, "failed");
			die_err(&err);
		}
		bool full = pools_ready(st, line, sizeof(line), shortof, sizeof(shortof));
		const char *lerr = json_string_value(json_object_get(st, "layer_error"));
		char lerr_copy[256];
		snprintf(lerr_copy, sizeof(lerr_copy), "%s", lerr ? lerr : "");
		json_decref(st);
		if (full) {
			progress_done(&pr, "%s", line);
			return;
		}
		clock_gettime(CLOCK_MONOTONIC, &t);
		if ((double)(t.tv_sec - t0.tv_sec) + (double)(t.tv_nsec - t0.tv_nsec) / 1e9 >=
		    timeout) {
			progress_done(&pr, "%s", line);
			die("pools not ready after %g s: %s%s%s", timeout, shortof,
			    lerr_copy[0] ? "; layers: " : "", lerr_copy);
		}
		progress_update(&pr, "%s", line);
		nanosleep(&(struct timespec){.tv_nsec = 100000000}, NULL);
	}
}

/* quiver-poold detaches by itself: its first process exits 0 once the
 * daemon serves its socket, 1 (after printing why) if it could not start. */
static int pool_start(int argc, char **argv)
{
	static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
					     {"metrics", required_argument, NULL, 'm'},
					     {"wait", no_argument, NULL, 'w'},
					     {"timeout", required_argument, NULL, 't'},
					     {NULL, 0, NULL, 0}};
	const char *args[10];
	char prog[4096], *end;
	int n = 0, c, status;
	bool wait = false;
	double timeout = 120;
	pid_t pid;
	sibling_path("quiver-poold", "QUIVER_POOLD", prog, sizeof(prog));
	args[n++] = prog;
	args[n++] = "--root";
	args[n++] = g.root;
	optind = 1;
	while ((c = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
		case 'm':
			args[n++] = c == 'c' ? "--config" : "--metrics";
			args[n++] = optarg;
			break;
		case 'w':
			wait = true;
			break;
		case 't':
			timeout = strtod(optarg, &end);
			if (*end || end == optarg || !(timeout > 0 && timeout <= 86400))
				usage_error("pool start", "invalid --timeout \"%s\" (seconds, > 0)",
					    optarg);
			break;
		case ':':
			usage_error("pool start", "option %s needs a value", argv[optind - 1]);
		default:
			usage_error("pool start", "unknown option %s", argv[optind - 1]);
		}
	}
	if (optind != argc)
		usage_error("pool start", "takes no arguments");
	args[n] = NULL;
	int rc = posix_spawn(&pid, prog, NULL, NULL, (char *const *)args, environ);
	if (rc != 0)
		die("cannot start %s: %s", prog, strerror(rc));
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	/* exit 1: quiver-poold has said why on our stderr */
	if (WIFEXITED(status) && WEXITSTATUS(status) == 1)
		exit(1);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		die("quiver-poold did not start (status %d; see %s/poold.log)", status, g.root);
	printf("poold: running (%s/poold.sock)\n", g.root);
	fflush(stdout);
	if (wait)
		wait_pools(timeout);
	return 0;
}

static int pool_stop(void)
{
	struct qmsg_in reply;
	struct qerr err = {0};
	char pidfile[4200];
	bool dialed;
	if (pool_call("shutdown", &reply, &dialed, &err) < 0) {
		if (!dialed) {
			printf("poold: not running\n");
			return 0;
		}
		/* poold closes its socket as soon as it has queued the reply to
		 * a shutdown, and the reply can be lost with the connection: the
		 * pid file below, not the reply, says whether it stopped. */
	} else {
		qmsg_in_free(&reply);
	}
	/* it drains its pools before it removes its pid file */
	snprintf(pidfile, sizeof(pidfile), "%s/poold.pid", g.root);
	for (int i = 0; i < 600 && access(pidfile, F_OK) == 0; i++)
		nanosleep(&(struct timespec){.tv_nsec = 50000000}, NULL);
	if (access(pidfile, F_OK) == 0)
		die("poold did not stop within 30 s");
	printf("poold: stopped\n");
	return 0;
}

static void print_table(json_t *st)
{
	static const char *const head[] = {"POOL", "READY",  "STARTING", "LOW",	    "HIGH",
					   "HITS", "MISSES", "MADE",	 "REFILL/S"};
	struct table *t = table_new(ARRAY_SIZE(head));
	table_add(t, head);
	size_t i;
	json_t *p;
	json_array_foreach (json_object_get(st, "pools"), i, p) {
		char cells[9][32];
		const char *row[9];
		static const char *const keys[] = {"ready", "starting", "low", "high",
						   "hits",  "misses",	"made"};
		snprintf(cells[0], sizeof(cells[0]), "%s",
			 json_string_value(json_object_get(p, "kind")));
		for (size_t k = 0; k < ARRAY_SIZE(keys); k++)
			snprintf(cells[k + 1], sizeof(cells[k + 1]), "%lld",
				 (long long)json_integer_value(json_object_get(p, keys[k])));
		snprintf(cells[8], sizeof(cells[8]), "%.1f",
			 json_number_value(json_object_get(p, "refill_rate")));
		for (int k = 0; k < 9; k++)
			row[k] = cells[k];
		table_add(t, row);
	}
	table_print(t);
	const char *err = json_string_value(json_object_get(st, "layer_error"));
	printf("layers: %s%s%s\n", json_string_value(json_object_get(st, "layer_backend")),
	       err ? ": " : "", err ? err : "");
	json_int_t releasing = json_integer_value(json_object_get(st, "releasing"));
	if (releasing > 0)
		printf("releasing: %lld deleted sandboxes' resources (done when takes pause)\n",
		       (long long)releasing);
}

int cmd_pool(int argc, char **argv)
{
	static const struct option opts[] = {{"json", no_argument, NULL, 'j'}, {NULL, 0, NULL, 0}};
	bool as_json = false;
	struct qerr err = {0};
	int c;
	if (argc >= 2 && strcmp(argv[1], "start") == 0)
		return pool_start(argc - 1, argv + 1);
	if (argc == 2 && strcmp(argv[1], "stop") == 0)
		return pool_stop();
	if (argc < 2 || strcmp(argv[1], "status") != 0)
		usage_error(argv[0],
			    "start [--config FILE] [--metrics ADDR] [--wait] [--timeout S] | stop "
			    "| status [--json]");
	optind = 2;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (c != 'j')
			usage_error(argv[0], "unknown option %s", argv[optind - 1]);
		as_json = true;
	}
	if (optind != argc)
		usage_error(argv[0], "status takes no arguments");
	json_t *st = pool_status(&err);
	if (!st)
		die_err(&err);
	if (as_json)
		print_json(st);
	else
		print_table(st);
	json_decref(st);
	return 0;
}
