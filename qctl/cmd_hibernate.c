/* qctl hibernate [--no-wait] [--auto-wake|--no-auto-wake] ID...
 * | qctl wake [--prefetch|--no-prefetch] ID...
 * (docs/hibernate.md).
 *
 * vmmd freezes a sandbox at once and pages its memory out in the
 * background; hibernate then follows each sandbox's inspect until it says
 * hibernated, with a progress line when there are several. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "qctl/qctl.h"

#define HIBERNATE_WAIT_S 300.0

static double now_s(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* The sandbox's hibernation object from inspect (a new reference), or NULL
 * with err filled. */
static json_t *hibernation_of(const char *id, struct qerr *err)
{
	struct qmsg_in reply;
	json_t *j, *h;

	if (vmmd_call_id("inspect", id, &reply, err) < 0)
		return NULL;
	j = reply_to_json(&reply);
	qmsg_in_free(&reply);
	h = json_incref(json_object_get(j, "hibernation"));
	json_decref(j);
	if (!h)
		h = json_null();
	return h;
}

/* After the options: at least one id, and every one well formed. */
static int ids_from(int argc, char **argv)
{
	struct qerr err;

	if (optind >= argc)
		usage_error(argv[0], "requires at least one container id");
	for (int i = optind; i < argc; i++)
		if (sandbox_id_check(argv[i], &err) < 0)
			die_err(&err);
	return optind;
}

int cmd_hibernate(int argc, char **argv)
{
	static const struct option opts[] = {{"no-wait", no_argument, NULL, 'n'},
					     {"auto-wake", no_argument, NULL, 'a'},
					     {"no-auto-wake", no_argument, NULL, 'm'},
					     {NULL, 0, NULL, 0}};
	bool no_wait = false;
	int c, auto_wake = -1;

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (c == 'n')
			no_wait = true;
		else if (c == 'a' || c == 'm')
			auto_wake = c == 'a';
		else
			usage_error(argv[0], "unknown option %s", argv[optind - 1]);
	}
	int first = ids_from(argc, argv), n = argc - first, done = 0, failed = 0;
	bool finished[n];
	struct progress pr;
	struct qerr err;
	double t0 = now_s();

	memset(finished, 0, sizeof(finished));
	for (int i = 0; i < n; i++) {
		struct qmsg_out m;

		qmsg_out_init(&m);
		qmsg_begin(&m, "hibernate", auto_wake < 0 ? 1 : 2);
		qmsg_put_str(&m, "id", argv[first + i]);
		if (auto_wake >= 0)
			qmsg_put_bool(&m, "auto_wake", auto_wake);
		if (vmmd_send(&m, &err) < 0) {
			fprintf(stderr, "%s: %s\n", argv[first + i], err.msg);
			finished[i] = true;
			failed++;
		}
	}
	if (no_wait)
		return failed ? 1 : 0;
	progress_init(&pr, stderr, "hibernating");
	while (done + failed < n) {
		for (int i = 0; i < n; i++) {
			json_t *h;
			if (finished[i])
				continue;
			if (!(h = hibernation_of(argv[first + i], &err))) {
				fprintf(stderr, "%s: %s\n", argv[first + i], err.msg);
				finished[i] = true;
				failed++;
				continue;
			}
			const char *st = json_string_value(json_object_get(h, "state"));
			if (!st) {
				/* woken, killed or deleted meanwhile */
				fprintf(stderr, "%s: no longer hibernating\n", argv[first + i]);
				finished[i] = true;
				failed++;
			} else if (strcmp(st, "hibernated") == 0) {
				finished[i] = true;
				done++;
				if (n == 1)
					printf(
					    "%s: hibernated: %.1f MiB in swap, %.1f MiB resident\n",
					    argv[first + i],
					    (double)json_integer_value(
						json_object_get(h, "swapped_bytes")) /
						1048576.0,
					    (double)json_integer_value(
						json_object_get(h, "resident_bytes")) /
						1048576.0);
			}
			json_decref(h);
		}
		if (n > 1)
			progress_update(&pr, "%d of %d done%s", done, n,
					failed ? ", some failed" : "");
		if (done + failed == n)
			break;
		if (now_s() - t0 > HIBERNATE_WAIT_S)
			die("hibernate: %d of %d sandboxes still paging out after %.0f s",
			    n - done - failed, n, HIBERNATE_WAIT_S);
		nanosleep(&(struct timespec){.tv_nsec = 10000000}, NULL);
	}
	if (n > 1)
		progress_done(&pr, "%d of %d hibernated%s", done, n, failed ? " (see above)" : "");
	return failed ? 1 : 0;
}

int cmd_wake(int argc, char **argv)
{
	static const struct option opts[] = {{"prefetch", no_argument, NULL, 'p'},
					     {"no-prefetch", no_argument, NULL, 'n'},
					     {NULL, 0, NULL, 0}};
	int prefetch = -1, failed = 0, c;
	struct qerr err;

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (c == 'p' || c == 'n')
			prefetch = c == 'p';
		else
			usage_error(argv[0], "unknown option %s", argv[optind - 1]);
	}
	for (int i = ids_from(argc, argv); i < argc; i++) {
		struct qmsg_out m;

		qmsg_out_init(&m);
		qmsg_begin(&m, "wake", prefetch < 0 ? 1 : 2);
		qmsg_put_str(&m, "id", argv[i]);
		if (prefetch >= 0)
			qmsg_put_bool(&m, "prefetch", prefetch);
		if (vmmd_send(&m, &err) < 0) {
			fprintf(stderr, "%s: %s\n", argv[i], err.msg);
			failed++;
		}
	}
	return failed ? 1 : 0;
}
