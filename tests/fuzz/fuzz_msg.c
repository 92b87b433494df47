/* libFuzzer target: hostile bytes into qmsg_parse, then every getter on
 * every field of whatever parsed.  The invariants: no crash, no leak, no
 * read past the input, and getters never accept what the parser should have
 * refused. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "libcommon/msg.h"

static void poke_map(const msgpack_object *map, int depth);

static void poke_value(const msgpack_object *map, const char *key, int depth)
{
	char small[8], big[QMSG_MAX_STR + 1];
	const msgpack_object *sub;
	struct qerr err;
	int64_t i;
	bool b;

	qmsg_get_str(map, key, small, sizeof(small), &err);
	if (qmsg_get_str(map, key, big, sizeof(big), &err) == 0 && strlen(big) > QMSG_MAX_STR)
		abort();
	qmsg_get_int(map, key, INT64_MIN, INT64_MAX, &i, &err);
	qmsg_get_int(map, key, -1, 1, &i, &err);
	qmsg_get_bool(map, key, &b, &err);
	if (qmsg_get_map(map, key, QMSG_MAX_ENTRIES, &sub, &err) == 0)
		poke_map(sub, depth + 1);
	if (qmsg_get_array(map, key, QMSG_MAX_ENTRIES, &sub, &err) == 0)
		for (uint32_t k = 0; k < sub->via.array.size; k++) {
			qmsg_obj_str(&sub->via.array.ptr[k], big, sizeof(big), &err);
			if (sub->via.array.ptr[k].type == MSGPACK_OBJECT_MAP)
				poke_map(&sub->via.array.ptr[k], depth + 1);
		}
}

static void poke_map(const msgpack_object *map, int depth)
{
	char key[QMSG_MAX_KEY + 1];
	struct qerr err;

	if (depth > QMSG_MAX_DEPTH)
		abort(); /* the parser let a too-deep message through */
	for (uint32_t k = 0; k < map->via.map.size; k++) {
		if (qmsg_obj_str(&map->via.map.ptr[k].key, key, sizeof(key), &err) != 0)
			abort(); /* keys are validated strings */
		if (qmsg_find(map, key) == NULL)
			abort();
		poke_value(map, key, depth);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct qmsg_in in;
	struct qerr err;

	if (qmsg_parse(&in, data, size, &err) != 0)
		return 0;
	if (in.root->type != MSGPACK_OBJECT_MAP || in.op[0] == '\0')
		abort();
	poke_map(in.root, 1);
	qmsg_reply_error(&in, &err);
	qmsg_in_free(&in);
	return 0;
}
