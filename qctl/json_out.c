/* Output: vmmd's msgpack replies as JSON, and tables laid out like Go's
 * text/tabwriter does for runc (minwidth 12, padding 3, spaces). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qctl/qctl.h"

json_t *msgpack_to_json(const msgpack_object *o)
{
	switch (o->type) {
	case MSGPACK_OBJECT_NIL:
		return json_null();
	case MSGPACK_OBJECT_BOOLEAN:
		return json_boolean(o->via.boolean);
	case MSGPACK_OBJECT_POSITIVE_INTEGER:
		return json_integer((json_int_t)o->via.u64);
	case MSGPACK_OBJECT_NEGATIVE_INTEGER:
		return json_integer((json_int_t)o->via.i64);
	case MSGPACK_OBJECT_FLOAT32:
	case MSGPACK_OBJECT_FLOAT64:
		return json_real(o->via.f64);
	case MSGPACK_OBJECT_STR:
		return json_stringn(o->via.str.ptr, o->via.str.size);
	case MSGPACK_OBJECT_ARRAY: {
		json_t *a = json_array();
		for (uint32_t i = 0; i < o->via.array.size; i++)
			json_array_append_new(a, msgpack_to_json(&o->via.array.ptr[i]));
		return a;
	}
	case MSGPACK_OBJECT_MAP: {
		json_t *m = json_object();
		for (uint32_t i = 0; i < o->via.map.size; i++) {
			const msgpack_object_kv *kv = &o->via.map.ptr[i];
			char key[QMSG_MAX_KEY + 1];
			if (kv->key.type != MSGPACK_OBJECT_STR ||
			    kv->key.via.str.size > QMSG_MAX_KEY)
				continue;
			memcpy(key, kv->key.via.str.ptr, kv->key.via.str.size);
			key[kv->key.via.str.size] = '\0';
			json_object_set_new(m, key, msgpack_to_json(&kv->val));
		}
		return m;
	}
	default:
		return json_null();
	}
}

json_t *reply_to_json(const struct qmsg_in *reply)
{
	json_t *j = msgpack_to_json(reply->root);

	json_object_del(j, "v");
	json_object_del(j, "op");
	return j;
}

void print_json(json_t *j)
{
	char *s = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);

	if (s) {
		fputs(s, stdout);
		fputc('\n', stdout);
		free(s);
	}
}

struct table {
	size_t ncols, nrows, cap;
	char **cells; /* nrows * ncols */
};

struct table *table_new(size_t ncols)
{
	struct table *t = calloc(1, sizeof(*t));

	if (!t)
		die("out of memory");
	t->ncols = ncols;
	return t;
}

void table_add(struct table *t, const char *const *cells)
{
	if (t->nrows == t->cap) {
		t->cap = t->cap ? t->cap * 2 : 16;
		t->cells = realloc(t->cells, t->cap * t->ncols * sizeof(char *));
		if (!t->cells)
			die("out of memory");
	}
	for (size_t c = 0; c < t->ncols; c++)
		t->cells[t->nrows * t->ncols + c] = strdup(cells[c] ? cells[c] : "");
	t->nrows++;
}

void table_print(struct table *t)
{
	size_t *w = calloc(t->ncols, sizeof(size_t));

	if (!w)
		die("out of memory");
	for (size_t r = 0; r < t->nrows; r++)
		for (size_t c = 0; c < t->ncols; c++) {
			size_t n = strlen(t->cells[r * t->ncols + c]) + 3;
			if (n > w[c])
				w[c] = n;
		}
	for (size_t c = 0; c < t->ncols; c++)
		if (w[c] < 12)
			w[c] = 12;
	for (size_t r = 0; r < t->nrows; r++) {
		for (size_t c = 0; c < t->ncols; c++) {
			const char *s = t->cells[r * t->ncols + c];
			if (c + 1 < t->ncols)
				printf("%-*s", (int)w[c], s);
			else
				printf("%s\n", s);
			free(t->cells[r * t->ncols + c]);
		}
	}
	free(w);
	free(t->cells);
	free(t);
}

bool parse_json_flag(int argc, char **argv)
{
	static const struct option opts[] = {{"json", no_argument, NULL, 'j'}, {NULL, 0, NULL, 0}};
	bool as_json = false;
	int c;

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (c != 'j')
			usage_error(argv[0], "unknown option %s", argv[optind - 1]);
		as_json = true;
	}
	return as_json;
}
