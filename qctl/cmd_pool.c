/* qctl pool status [--json]: poold's pools (ROOT/poold.sock). */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "libcommon/cleanup.h"
#include "qctl/qctl.h"

static json_t *pool_status(struct qerr *err)
{
	char url[4200];
	nng_socket s;
	struct qmsg_out m;
	struct qmsg_in reply;
	snprintf(url, sizeof(url), "ipc://%s/poold.sock", g.root);
	if (qnng_req_dial(&s, url, 5000, err) < 0) {
		qerr_prefix(err, "poold is not running at %s/poold.sock", g.root);
		return NULL;
	}
	qmsg_out_init(&m);
	qmsg_begin(&m, "status", 0);
	int r = qnng_call(s, &m, &reply, err);
	qmsg_out_free(&m);
	nng_close(s);
	if (r < 0)
		return NULL;
	json_t *j = reply_to_json(&reply);
	qmsg_in_free(&reply);
	return j;
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
}

int cmd_pool(int argc, char **argv)
{
	static const struct option opts[] = {{"json", no_argument, NULL, 'j'}, {NULL, 0, NULL, 0}};
	bool as_json = false;
	struct qerr err = {0};
	int c;
	if (argc < 2 || strcmp(argv[1], "status") != 0)
		usage_error(argv[0], "status [--json]");
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
