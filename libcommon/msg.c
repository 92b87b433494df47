/* Control messages (msg.h): building, validating parsing and typed getters;
 * the nng socket helpers are in nng.c.
 *
 * Parsing is two passes.  The first walks the raw bytes with our own bounds
 * (size, depth, container lengths, key and string lengths and contents)
 * before msgpack-c sees them, because msgpack-c allocates a container's
 * element array from its declared length: five hostile bytes declaring a
 * 2^32-entry map would otherwise ask for ~100 GB.  Only a message that
 * passes is handed to msgpack_unpack_next(). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "libcommon/cleanup.h"
#include "libcommon/log.h"
#include "libcommon/msg.h"

/* ---- building ---- */

/* The packer's sink.  An allocation failure would leave a silently
 * truncated message; with nothing sensible to do about it, stop. */
static int sbuffer_write_or_die(void *data, const char *buf, size_t len)
{
	if (msgpack_sbuffer_write(data, buf, len) != 0)
		fatalx("msg: out of memory building a message of %zu bytes",
		       ((msgpack_sbuffer *)data)->size + len);
	return 0;
}

void qmsg_out_init(struct qmsg_out *m)
{
	msgpack_sbuffer_init(&m->buf);
	msgpack_packer_init(&m->pk, &m->buf, sbuffer_write_or_die);
}

void qmsg_out_free(struct qmsg_out *m)
{
	msgpack_sbuffer_destroy(&m->buf);
	msgpack_sbuffer_init(&m->buf);
}

void qmsg_pack_cstr(msgpack_packer *pk, const char *s)
{
	size_t n;

	if (!s) {
		msgpack_pack_nil(pk);
		return;
	}
	n = strlen(s);
	msgpack_pack_str(pk, n);
	msgpack_pack_str_body(pk, s, n);
}

/* Starting a message clears the buffer, so one qmsg_out can be reused. */
void qmsg_begin(struct qmsg_out *m, const char *op, uint32_t nfields)
{
	msgpack_sbuffer_clear(&m->buf);
	msgpack_pack_map(&m->pk, 2 + nfields);
	qmsg_pack_cstr(&m->pk, "v");
	msgpack_pack_uint32(&m->pk, QMSG_VERSION);
	qmsg_pack_cstr(&m->pk, "op");
	qmsg_pack_cstr(&m->pk, op);
}

void qmsg_put_key(struct qmsg_out *m, const char *key)
{
	qmsg_pack_cstr(&m->pk, key);
}

void qmsg_put_str(struct qmsg_out *m, const char *key, const char *val)
{
	qmsg_put_key(m, key);
	qmsg_pack_cstr(&m->pk, val);
}

void qmsg_put_int(struct qmsg_out *m, const char *key, int64_t val)
{
	qmsg_put_key(m, key);
	msgpack_pack_int64(&m->pk, val);
}

void qmsg_put_uint(struct qmsg_out *m, const char *key, uint64_t val)
{
	qmsg_put_key(m, key);
	msgpack_pack_uint64(&m->pk, val);
}

void qmsg_put_bool(struct qmsg_out *m, const char *key, bool val)
{
	qmsg_put_key(m, key);
	if (val)
		msgpack_pack_true(&m->pk);
	else
		msgpack_pack_false(&m->pk);
}

void qmsg_error_reply(struct qmsg_out *m, const struct qerr *err)
{
	int code = err && err->code > 0 ? err->code : EIO;
	const char *msg = err && err->msg[0] ? err->msg : strerror(code);

	qmsg_begin(m, "error", 2);
	qmsg_put_int(m, "code", code);
	qmsg_put_str(m, "msg", msg);
}

/* ---- validation of the raw bytes ---- */

struct walk {
	const uint8_t *start;
	const uint8_t *p;
	const uint8_t *end;
	struct qerr *err;
};

static size_t walk_left(const struct walk *w)
{
	return (size_t)(w->end - w->p);
}

static int walk_need(struct walk *w, size_t n)
{
	if (walk_left(w) < n)
		return qerr_set(w->err, EBADMSG, "message truncated at byte %zu",
				(size_t)(w->p - w->start));
	return 0;
}

static int walk_skip(struct walk *w, size_t n)
{
	int r = walk_need(w, n);

	if (r == 0)
		w->p += n;
	return r;
}

static uint32_t rd_be(const uint8_t *p, size_t n)
{
	uint32_t v = 0;

	for (size_t i = 0; i < n; i++)
		v = v << 8 | p[i];
	return v;
}

/* Read an n-byte big-endian length that follows the type byte. */
static int walk_len(struct walk *w, size_t n, uint32_t *len)
{
	int r = walk_need(w, n);

	if (r < 0)
		return r;
	*len = rd_be(w->p, n);
	w->p += n;
	return 0;
}

static int walk_str(struct walk *w, uint32_t len, bool is_key)
{
	size_t at = (size_t)(w->p - w->start);
	int r;

	if (is_key) {
		if (len == 0 || len > QMSG_MAX_KEY)
			return qerr_set(w->err, EBADMSG,
					"message: key at byte %zu is %u bytes (1 to %u allowed)",
					at, len, QMSG_MAX_KEY);
	} else if (len > QMSG_MAX_STR) {
		return qerr_set(w->err, EBADMSG,
				"message: string at byte %zu is %u bytes (at most %u allowed)", at,
				len, QMSG_MAX_STR);
	}
	r = walk_need(w, len);
	if (r < 0)
		return r;
	/* Keys are names, so printable ASCII without spaces.  No string may
	 * hold a NUL: every consumer is C, and "a\0b" would read as "a". */
	for (uint32_t i = 0; i < len; i++) {
		uint8_t c = w->p[i];

		if (c == 0 || (is_key && (c < 0x21 || c > 0x7e)))
			return qerr_set(w->err, EBADMSG,
					"message: %s at byte %zu has byte 0x%02x at offset %u",
					is_key ? "key" : "string", at, c, i);
	}
	w->p += len;
	return 0;
}

static int walk_obj(struct walk *w, unsigned depth, bool is_key);

static int walk_container(struct walk *w, unsigned depth, uint32_t n, bool map)
{
	size_t at = (size_t)(w->p - w->start);
	int r;

	if (depth + 1 > QMSG_MAX_DEPTH)
		return qerr_set(w->err, EBADMSG, "message: nesting deeper than %u at byte %zu",
				QMSG_MAX_DEPTH, at);
	if (n > QMSG_MAX_ENTRIES)
		return qerr_set(w->err, EBADMSG,
				"message: %s at byte %zu has %u entries (at most %u allowed)",
				map ? "map" : "array", at, n, QMSG_MAX_ENTRIES);
	/* Every element takes at least one byte: reject a lie before walking. */
	if ((uint64_t)n * (map ? 2 : 1) > walk_left(w))
		return qerr_set(w->err, EBADMSG,
				"message: %s at byte %zu declares %u entries, "
				"more than the bytes left",
				map ? "map" : "array", at, n);
	for (uint32_t i = 0; i < n; i++) {
		if (map && (r = walk_obj(w, depth + 1, true)) < 0)
			return r;
		if ((r = walk_obj(w, depth + 1, false)) < 0)
			return r;
	}
	return 0;
}

/* depth is the nesting level of the container holding this object (0 for
 * the root object itself). */
static int walk_obj(struct walk *w, unsigned depth, bool is_key)
{
	size_t at = (size_t)(w->p - w->start);
	uint32_t n;
	uint8_t b;
	int r;

	if ((r = walk_need(w, 1)) < 0)
		return r;
	b = *w->p++;

	if (b >= 0xa0 && b <= 0xbf)
		return walk_str(w, b & 0x1f, is_key);
	if (b == 0xd9 || b == 0xda || b == 0xdb) {
		if ((r = walk_len(w, (size_t)1 << (b - 0xd9), &n)) < 0)
			return r;
		return walk_str(w, n, is_key);
	}
	if (is_key)
		return qerr_set(w->err, EBADMSG, "message: key at byte %zu is not a string", at);

	if (b <= 0x7f || b >= 0xe0) /* fixints */
		return 0;
	if (b >= 0x80 && b <= 0x8f)
		return walk_container(w, depth, b & 0x0f, true);
	if (b >= 0x90 && b <= 0x9f)
		return walk_container(w, depth, b & 0x0f, false);
	switch (b) {
	case 0xc0: /* nil */
	case 0xc2: /* false */
	case 0xc3: /* true */
		return 0;
	case 0xc4: /* bin 8/16/32: bounded only by the message size */
	case 0xc5:
	case 0xc6:
		if ((r = walk_len(w, (size_t)1 << (b - 0xc4), &n)) < 0)
			return r;
		return walk_skip(w, n);
	case 0xca: /* float 32/64 */
		return walk_skip(w, 4);
	case 0xcb:
		return walk_skip(w, 8);
	case 0xcc: /* uint 8..64, int 8..64 */
	case 0xcd:
	case 0xce:
	case 0xcf:
	case 0xd0:
	case 0xd1:
	case 0xd2:
	case 0xd3:
		return walk_skip(w, (size_t)1 << (b & 3));
	case 0xdc:
	case 0xdd:
		if ((r = walk_len(w, b == 0xdc ? 2 : 4, &n)) < 0)
			return r;
		return walk_container(w, depth, n, false);
	case 0xde:
	case 0xdf:
		if ((r = walk_len(w, b == 0xde ? 2 : 4, &n)) < 0)
			return r;
		return walk_container(w, depth, n, true);
	default:
		/* 0xc1 (never used) and the ext types: no message has them. */
		return qerr_set(w->err, EBADMSG,
				"message: type byte 0x%02x at byte %zu not allowed", b, at);
	}
}

/* ---- checks on the unpacked tree ---- */

static int key_cmp(const void *a, const void *b)
{
	const msgpack_object_str *x = &(*(const msgpack_object_kv *const *)a)->key.via.str;
	const msgpack_object_str *y = &(*(const msgpack_object_kv *const *)b)->key.via.str;

	if (x->size != y->size)
		return x->size < y->size ? -1 : 1;
	return memcmp(x->ptr, y->ptr, x->size);
}

/* A map with the same key twice is ambiguous: a validator could check the
 * first and an actor use the second. */
static int check_unique_keys(const msgpack_object_map *m, struct qerr *err)
{
	cleanup_free const msgpack_object_kv **sorted = NULL;

	if (m->size < 2)
		return 0;
	sorted = malloc(m->size * sizeof(*sorted));
	if (!sorted)
		return qerr_set(err, ENOMEM, "message: out of memory");
	for (uint32_t i = 0; i < m->size; i++)
		sorted[i] = &m->ptr[i];
	qsort(sorted, m->size, sizeof(*sorted), key_cmp);
	for (uint32_t i = 1; i < m->size; i++)
		if (key_cmp(&sorted[i - 1], &sorted[i]) == 0)
			return qerr_set(err, EBADMSG, "message: key \"%.*s\" appears twice",
					(int)sorted[i]->key.via.str.size,
					sorted[i]->key.via.str.ptr);
	return 0;
}

static int check_tree(const msgpack_object *o, struct qerr *err)
{
	int r;

	if (o->type == MSGPACK_OBJECT_MAP) {
		if ((r = check_unique_keys(&o->via.map, err)) < 0)
			return r;
		for (uint32_t i = 0; i < o->via.map.size; i++)
			if ((r = check_tree(&o->via.map.ptr[i].val, err)) < 0)
				return r;
	} else if (o->type == MSGPACK_OBJECT_ARRAY) {
		for (uint32_t i = 0; i < o->via.array.size; i++)
			if ((r = check_tree(&o->via.array.ptr[i], err)) < 0)
				return r;
	}
	return 0;
}

/* ---- parsing ---- */

static void free_copy(void *p)
{
	free(p);
}

static int parse_checked(struct qmsg_in *in, const void *buf, size_t len, struct qerr *err)
{
	struct walk w = {.start = buf, .p = buf, .end = (const uint8_t *)buf + len, .err = err};
	cleanup_free char *copy = NULL;
	size_t off = 0;
	int64_t v;
	int r;

	if (len == 0)
		return qerr_set(err, EBADMSG, "message is empty");
	if (len > QMSG_MAX_BYTES)
		return qerr_set(err, EMSGSIZE, "message is %zu bytes (at most %u allowed)", len,
				QMSG_MAX_BYTES);
	if (*(const uint8_t *)buf != 0xde && *(const uint8_t *)buf != 0xdf &&
	    (*(const uint8_t *)buf & 0xf0) != 0x80)
		return qerr_set(err, EBADMSG, "message is not a map");
	if ((r = walk_obj(&w, 0, false)) < 0)
		return r;
	if (w.p != w.end)
		return qerr_set(err, EBADMSG, "message has %zu trailing bytes", walk_left(&w));

	/* msgpack-c points string objects into the buffer it parses; parse a
	 * private copy so the message outlives the caller's buffer. */
	copy = malloc(len);
	if (!copy)
		return qerr_set(err, ENOMEM, "message: out of memory");
	memcpy(copy, buf, len);
	switch (msgpack_unpack_next(&in->up, copy, len, &off)) {
	case MSGPACK_UNPACK_SUCCESS:
		break;
	case MSGPACK_UNPACK_NOMEM_ERROR:
		return qerr_set(err, ENOMEM, "message: out of memory");
	default:
		return qerr_set(err, EBADMSG, "message: msgpack rejected it");
	}
	/* A map with v and op always allocates, so the zone exists; it frees
	 * the copy when the message is freed. */
	if (off != len || !in->up.zone)
		return qerr_set(err, EBADMSG, "message: msgpack read %zu of %zu bytes", off, len);
	if (!msgpack_zone_push_finalizer(in->up.zone, free_copy, copy))
		return qerr_set(err, ENOMEM, "message: out of memory");
	copy = NULL;

	in->root = &in->up.data;
	if (in->root->type != MSGPACK_OBJECT_MAP)
		return qerr_set(err, EBADMSG, "message is not a map");
	if ((r = check_tree(in->root, err)) < 0)
		return r;
	r = qmsg_get_int(in->root, "v", 0, INT64_MAX, &v, err);
	if (r == -ENOENT)
		return qerr_set(err, EBADMSG, "message has no version (v)");
	if (r < 0)
		return qerr_set(err, EBADMSG, "message: v is not a version number");
	if (v != QMSG_VERSION)
		return qerr_set(err, EPROTO, "message version %lld, this build speaks %d",
				(long long)v, QMSG_VERSION);
	r = qmsg_get_str(in->root, "op", in->op, sizeof(in->op), err);
	if (r == -ENOENT)
		return qerr_set(err, EBADMSG, "message has no op");
	if (r < 0)
		return qerr_set(err, EBADMSG, "message: op is not a string of at most %d bytes",
				QMSG_MAX_OP);
	if (!in->op[0])
		return qerr_set(err, EBADMSG, "message: op is empty");
	for (const char *c = in->op; *c; c++)
		if (*c < 0x21 || *c > 0x7e)
			return qerr_set(err, EBADMSG, "message: op has byte 0x%02x",
					(unsigned char)*c);
	return 0;
}

int qmsg_parse(struct qmsg_in *in, const void *buf, size_t len, struct qerr *err)
{
	int r;

	msgpack_unpacked_init(&in->up);
	in->root = NULL;
	in->op[0] = '\0';
	if (!buf && len)
		return qerr_set(err, EINVAL, "message: NULL buffer");
	r = parse_checked(in, buf, len, err);
	if (r < 0)
		qmsg_in_free(in);
	return r;
}

void qmsg_in_free(struct qmsg_in *in)
{
	msgpack_unpacked_destroy(&in->up);
	msgpack_unpacked_init(&in->up);
	in->root = NULL;
	in->op[0] = '\0';
}

int qmsg_reply_error(const struct qmsg_in *in, struct qerr *err)
{
	char msg[QERR_MSG_MAX];
	int64_t code = EPROTO;

	if (!in->root || strcmp(in->op, "error") != 0)
		return 0;
	/* A peer's malformed error reply is still a failure; keep what we can. */
	if (qmsg_get_int(in->root, "code", 1, 4095, &code, NULL) < 0)
		code = EPROTO;
	if (qmsg_get_str(in->root, "msg", msg, sizeof(msg), NULL) < 0)
		snprintf(msg, sizeof(msg), "peer error without a message");
	return qerr_set(err, (int)code, "%s", msg);
}

/* ---- getters ---- */

const msgpack_object *qmsg_find(const msgpack_object *map, const char *key)
{
	size_t n;

	if (!map || map->type != MSGPACK_OBJECT_MAP || !key)
		return NULL;
	n = strlen(key);
	for (uint32_t i = 0; i < map->via.map.size; i++) {
		const msgpack_object *k = &map->via.map.ptr[i].key;

		if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == n &&
		    memcmp(k->via.str.ptr, key, n) == 0)
			return &map->via.map.ptr[i].val;
	}
	return NULL;
}

/* Absent and nil are the same: "no value, keep your default". */
static const msgpack_object *find_value(const msgpack_object *map, const char *key)
{
	const msgpack_object *o = qmsg_find(map, key);

	return o && o->type != MSGPACK_OBJECT_NIL ? o : NULL;
}

static int copy_str(const msgpack_object *o, char *dst, size_t dstlen, const char *what,
		    struct qerr *err)
{
	if (!o || o->type != MSGPACK_OBJECT_STR)
		return qerr_set(err, EINVAL, "%s: not a string", what);
	if (dstlen == 0 || o->via.str.size > dstlen - 1)
		return qerr_set(err, EINVAL, "%s: longer than %zu bytes", what,
				dstlen ? dstlen - 1 : 0);
	if (memchr(o->via.str.ptr, '\0', o->via.str.size))
		return qerr_set(err, EINVAL, "%s: contains a NUL byte", what);
	memcpy(dst, o->via.str.ptr, o->via.str.size);
	dst[o->via.str.size] = '\0';
	return 0;
}

int qmsg_get_str(const msgpack_object *map, const char *key, char *dst, size_t dstlen,
		 struct qerr *err)
{
	const msgpack_object *o = find_value(map, key);
	char what[QMSG_MAX_KEY + 16];

	if (!o)
		return qerr_set(err, ENOENT, "field %s: missing", key);
	snprintf(what, sizeof(what), "field %s", key);
	return copy_str(o, dst, dstlen, what, err);
}

int qmsg_obj_str(const msgpack_object *o, char *dst, size_t dstlen, struct qerr *err)
{
	return copy_str(o, dst, dstlen, "value", err);
}

int qmsg_get_int(const msgpack_object *map, const char *key, int64_t min, int64_t max, int64_t *out,
		 struct qerr *err)
{
	const msgpack_object *o = find_value(map, key);
	int64_t v;

	if (!o)
		return qerr_set(err, ENOENT, "field %s: missing", key);
	if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
		if (o->via.u64 > INT64_MAX)
			return qerr_set(err, EINVAL, "field %s: %llu out of range", key,
					(unsigned long long)o->via.u64);
		v = (int64_t)o->via.u64;
	} else if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
		v = o->via.i64;
	} else {
		return qerr_set(err, EINVAL, "field %s: not an integer", key);
	}
	if (v < min || v > max)
		return qerr_set(err, EINVAL, "field %s: %lld not in [%lld, %lld]", key,
				(long long)v, (long long)min, (long long)max);
	*out = v;
	return 0;
}

int qmsg_get_bool(const msgpack_object *map, const char *key, bool *out, struct qerr *err)
{
	const msgpack_object *o = find_value(map, key);

	if (!o)
		return qerr_set(err, ENOENT, "field %s: missing", key);
	if (o->type != MSGPACK_OBJECT_BOOLEAN)
		return qerr_set(err, EINVAL, "field %s: not a boolean", key);
	*out = o->via.boolean;
	return 0;
}

static int get_container(const msgpack_object *map, const char *key, msgpack_object_type type,
			 uint32_t max, const msgpack_object **out, struct qerr *err)
{
	const msgpack_object *o = find_value(map, key);
	const char *what = type == MSGPACK_OBJECT_MAP ? "map" : "array";
	uint32_t n;

	if (!o)
		return qerr_set(err, ENOENT, "field %s: missing", key);
	if (o->type != type)
		return qerr_set(err, EINVAL, "field %s: not a %s", key, what);
	n = type == MSGPACK_OBJECT_MAP ? o->via.map.size : o->via.array.size;
	if (n > max)
		return qerr_set(err, EINVAL, "field %s: %u entries (at most %u allowed)", key, n,
				max);
	*out = o;
	return 0;
}

int qmsg_get_map(const msgpack_object *map, const char *key, uint32_t max,
		 const msgpack_object **out, struct qerr *err)
{
	return get_container(map, key, MSGPACK_OBJECT_MAP, max, out, err);
}

int qmsg_get_array(const msgpack_object *map, const char *key, uint32_t max,
		   const msgpack_object **out, struct qerr *err)
{
	return get_container(map, key, MSGPACK_OBJECT_ARRAY, max, out, err);
}

/* ---- nng ---- */
