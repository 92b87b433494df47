/* msg.h: building, parsing hostile input, getters, and nng round trips. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "libcommon/cleanup.h"
#include "libcommon/msg.h"

#include <nng/protocol/pubsub0/pub.h>
#include <nng/protocol/reqrep0/rep.h>

/* ---- helpers ---- */

/* Raw msgpack for hostile messages the builder would never produce. */
struct raw {
	msgpack_sbuffer buf;
	msgpack_packer pk;
};

static void raw_init(struct raw *r)
{
	msgpack_sbuffer_init(&r->buf);
	msgpack_packer_init(&r->pk, &r->buf, msgpack_sbuffer_write);
}

static void raw_str(struct raw *r, const char *s, size_t n)
{
	msgpack_pack_str(&r->pk, n);
	msgpack_pack_str_body(&r->pk, s, n);
}

static void raw_cstr(struct raw *r, const char *s)
{
	raw_str(r, s, strlen(s));
}

/* Root map with v=1, op="x" and nextra more pairs to follow. */
static void raw_head(struct raw *r, uint32_t nextra)
{
	raw_init(r);
	msgpack_pack_map(&r->pk, 2 + nextra);
	raw_cstr(r, "v");
	msgpack_pack_int(&r->pk, 1);
	raw_cstr(r, "op");
	raw_cstr(r, "x");
}

static int parse_raw(struct raw *r)
{
	struct qmsg_in in;
	struct qerr err = {0};
	int rc = qmsg_parse(&in, r->buf.data, r->buf.size, &err);

	if (rc == 0)
		qmsg_in_free(&in);
	else
		assert_true(err.msg[0] != '\0');
	msgpack_sbuffer_destroy(&r->buf);
	return rc;
}

static int parse_bytes(const void *b, size_t n)
{
	struct qmsg_in in;
	struct qerr err = {0};
	int rc = qmsg_parse(&in, b, n, &err);

	if (rc == 0)
		qmsg_in_free(&in);
	return rc;
}

/* A message with one of every field kind. */
static void build_full(struct qmsg_out *m)
{
	qmsg_begin(m, "create", 7);
	qmsg_put_str(m, "id", "sb-1");
	qmsg_put_int(m, "neg", -42);
	qmsg_put_uint(m, "big", UINT64_MAX);
	qmsg_put_bool(m, "tty", true);
	qmsg_put_str(m, "nothing", NULL);
	qmsg_put_key(m, "limits");
	msgpack_pack_map(&m->pk, 1);
	qmsg_pack_cstr(&m->pk, "mem");
	msgpack_pack_uint64(&m->pk, 1 << 20);
	qmsg_put_key(m, "args");
	msgpack_pack_array(&m->pk, 2);
	qmsg_pack_cstr(&m->pk, "/bin/sh");
	qmsg_pack_cstr(&m->pk, "-c");
}

/* ---- building and getters ---- */

static void test_roundtrip(void **state)
{
	(void)state;
	struct qmsg_out m;
	struct qmsg_in in;
	struct qerr err = {0};
	const msgpack_object *limits, *args;
	char id[16], arg[16];
	int64_t v = 7;
	bool tty = false;

	qmsg_out_init(&m);
	build_full(&m);
	assert_int_equal(qmsg_parse(&in, qmsg_data(&m), qmsg_size(&m), &err), 0);
	assert_string_equal(in.op, "create");
	assert_int_equal(qmsg_get_str(in.root, "id", id, sizeof(id), &err), 0);
	assert_string_equal(id, "sb-1");
	assert_int_equal(qmsg_get_int(in.root, "neg", -100, 100, &v, &err), 0);
	assert_int_equal(v, -42);
	assert_int_equal(qmsg_get_bool(in.root, "tty", &tty, &err), 0);
	assert_true(tty);
	assert_int_equal(qmsg_get_map(in.root, "limits", 8, &limits, &err), 0);
	assert_int_equal(qmsg_get_int(limits, "mem", 0, INT64_MAX, &v, &err), 0);
	assert_int_equal(v, 1 << 20);
	assert_int_equal(qmsg_get_array(in.root, "args", 8, &args, &err), 0);
	assert_int_equal(args->via.array.size, 2);
	assert_int_equal(qmsg_obj_str(&args->via.array.ptr[1], arg, sizeof(arg), &err), 0);
	assert_string_equal(arg, "-c");

	/* Absent and nil leave the default alone. */
	v = 7;
	assert_int_equal(qmsg_get_int(in.root, "missing", 0, 10, &v, &err), -ENOENT);
	assert_int_equal(qmsg_get_int(in.root, "nothing", 0, 10, &v, &err), -ENOENT);
	assert_int_equal(v, 7);
	assert_non_null(strstr(err.msg, "nothing"));

	/* Wrong types and ranges. */
	assert_int_equal(qmsg_get_int(in.root, "id", 0, 10, &v, &err), -EINVAL);
	assert_int_equal(qmsg_get_int(in.root, "neg", 0, 10, &v, &err), -EINVAL);
	assert_int_equal(qmsg_get_int(in.root, "big", 0, INT64_MAX, &v, &err), -EINVAL);
	assert_int_equal(v, 7);
	assert_int_equal(qmsg_get_str(in.root, "tty", id, sizeof(id), &err), -EINVAL);
	assert_int_equal(qmsg_get_str(in.root, "id", id, 4, &err), -EINVAL); /* "sb-1" needs 5 */
	assert_int_equal(qmsg_get_bool(in.root, "id", &tty, &err), -EINVAL);
	assert_int_equal(qmsg_get_map(in.root, "args", 8, &limits, &err), -EINVAL);
	assert_int_equal(qmsg_get_array(in.root, "args", 1, &args, &err), -EINVAL);
	assert_int_equal(qmsg_obj_str(&args->via.array.ptr[0], arg, 0, &err), -EINVAL);
	assert_null(qmsg_find(&args->via.array.ptr[0], "x")); /* not a map */
	assert_int_equal(qmsg_reply_error(&in, &err), 0);

	qmsg_in_free(&in);
	qmsg_in_free(&in); /* idempotent */

	/* The parsed message owns its bytes: the builder's buffer can go. */
	assert_int_equal(qmsg_parse(&in, qmsg_data(&m), qmsg_size(&m), &err), 0);
	qmsg_out_free(&m);
	assert_int_equal(qmsg_get_str(in.root, "id", id, sizeof(id), &err), 0);
	assert_string_equal(id, "sb-1");
	qmsg_in_free(&in);
}

static void test_reuse_builder(void **state)
{
	(void)state;
	struct qmsg_out m;
	struct qmsg_in in;
	struct qerr err = {0};

	qmsg_out_init(&m);
	build_full(&m);
	qmsg_begin(&m, "ping", 0); /* begin starts over */
	assert_int_equal(qmsg_parse(&in, qmsg_data(&m), qmsg_size(&m), &err), 0);
	assert_string_equal(in.op, "ping");
	assert_int_equal(in.root->via.map.size, 2);
	qmsg_in_free(&in);
	qmsg_out_free(&m);
}

static void test_error_reply(void **state)
{
	(void)state;
	struct qmsg_out m;
	struct qmsg_in in;
	struct qerr err = {0}, got = {0};

	qerr_set(&err, ENOENT, "sandbox %s: no such sandbox", "abc");
	qmsg_out_init(&m);
	qmsg_error_reply(&m, &err);
	assert_int_equal(qmsg_parse(&in, qmsg_data(&m), qmsg_size(&m), &got), 0);
	assert_string_equal(in.op, "error");
	assert_int_equal(qmsg_reply_error(&in, &got), -ENOENT);
	assert_int_equal(got.code, ENOENT);
	assert_string_equal(got.msg, "sandbox abc: no such sandbox");
	qmsg_in_free(&in);

	/* An error reply with a nonsense code still fails, as EPROTO. */
	qmsg_begin(&m, "error", 1);
	qmsg_put_int(&m, "code", -5);
	assert_int_equal(qmsg_parse(&in, qmsg_data(&m), qmsg_size(&m), &got), 0);
	assert_int_equal(qmsg_reply_error(&in, &got), -EPROTO);
	qmsg_in_free(&in);

	/* A NULL qerr still makes a well-formed reply. */
	qmsg_error_reply(&m, NULL);
	assert_int_equal(qmsg_parse(&in, qmsg_data(&m), qmsg_size(&m), &got), 0);
	assert_int_equal(qmsg_reply_error(&in, &got), -EIO);
	qmsg_in_free(&in);
	qmsg_out_free(&m);
}

/* ---- hostile input ---- */

static void test_truncated(void **state)
{
	(void)state;
	struct qmsg_out m;

	qmsg_out_init(&m);
	build_full(&m);
	/* Every strict prefix must be refused, never read past. */
	for (size_t n = 0; n < qmsg_size(&m); n++) {
		cleanup_free char *copy = malloc(n ? n : 1);

		memcpy(copy, qmsg_data(&m), n);
		assert_true(parse_bytes(copy, n) < 0);
	}
	qmsg_out_free(&m);
}

static void test_trailing_bytes(void **state)
{
	(void)state;
	struct qmsg_out m;
	cleanup_free char *buf = NULL;

	qmsg_out_init(&m);
	qmsg_begin(&m, "ping", 0);
	buf = malloc(qmsg_size(&m) + 1);
	memcpy(buf, qmsg_data(&m), qmsg_size(&m));
	buf[qmsg_size(&m)] = (char)0xc0;
	assert_int_equal(parse_bytes(buf, qmsg_size(&m)), 0);
	assert_int_equal(parse_bytes(buf, qmsg_size(&m) + 1), -EBADMSG);
	qmsg_out_free(&m);
}

static void test_not_a_map(void **state)
{
	(void)state;
	static const uint8_t arr[] = {0x92, 0x01, 0x02};
	static const uint8_t num[] = {0x01};
	static const uint8_t str[] = {0xa1, 'x'};

	assert_int_equal(parse_bytes(arr, sizeof(arr)), -EBADMSG);
	assert_int_equal(parse_bytes(num, sizeof(num)), -EBADMSG);
	assert_int_equal(parse_bytes(str, sizeof(str)), -EBADMSG);
	assert_int_equal(parse_bytes("", 0), -EBADMSG);
	assert_int_equal(parse_bytes(NULL, 0), -EBADMSG);
}

static void test_version_and_op(void **state)
{
	(void)state;
	struct raw r;
	char longop[QMSG_MAX_OP + 2];

	/* no v */
	raw_init(&r);
	msgpack_pack_map(&r.pk, 1);
	raw_cstr(&r, "op");
	raw_cstr(&r, "x");
	assert_int_equal(parse_raw(&r), -EBADMSG);
	/* v from the future */
	raw_init(&r);
	msgpack_pack_map(&r.pk, 2);
	raw_cstr(&r, "v");
	msgpack_pack_int(&r.pk, 2);
	raw_cstr(&r, "op");
	raw_cstr(&r, "x");
	assert_int_equal(parse_raw(&r), -EPROTO);
	/* v of the wrong type */
	raw_init(&r);
	msgpack_pack_map(&r.pk, 2);
	raw_cstr(&r, "v");
	raw_cstr(&r, "1");
	raw_cstr(&r, "op");
	raw_cstr(&r, "x");
	assert_int_equal(parse_raw(&r), -EBADMSG);
	/* no op, empty op, op too long, op an integer, op with a space */
	raw_init(&r);
	msgpack_pack_map(&r.pk, 1);
	raw_cstr(&r, "v");
	msgpack_pack_int(&r.pk, 1);
	assert_int_equal(parse_raw(&r), -EBADMSG);
	memset(longop, 'a', sizeof(longop) - 1);
	longop[sizeof(longop) - 1] = '\0';
	const char *ops[] = {"", longop, "a b", "tab\t"};
	for (size_t i = 0; i < ARRAY_SIZE(ops); i++) {
		raw_init(&r);
		msgpack_pack_map(&r.pk, 2);
		raw_cstr(&r, "v");
		msgpack_pack_int(&r.pk, 1);
		raw_cstr(&r, "op");
		raw_cstr(&r, ops[i]);
		assert_int_equal(parse_raw(&r), -EBADMSG);
	}
	raw_init(&r);
	msgpack_pack_map(&r.pk, 2);
	raw_cstr(&r, "v");
	msgpack_pack_int(&r.pk, 1);
	raw_cstr(&r, "op");
	msgpack_pack_int(&r.pk, 3);
	assert_int_equal(parse_raw(&r), -EBADMSG);
	/* exactly QMSG_MAX_OP bytes is fine */
	longop[QMSG_MAX_OP] = '\0';
	raw_init(&r);
	msgpack_pack_map(&r.pk, 2);
	raw_cstr(&r, "v");
	msgpack_pack_int(&r.pk, 1);
	raw_cstr(&r, "op");
	raw_cstr(&r, longop);
	assert_int_equal(parse_raw(&r), 0);
}

static void nest(struct raw *r, int arrays)
{
	raw_head(r, 1);
	raw_cstr(r, "a");
	for (int i = 0; i < arrays; i++)
		msgpack_pack_array(&r->pk, 1);
	msgpack_pack_nil(&r->pk);
}

static void test_depth(void **state)
{
	(void)state;
	struct raw r;

	nest(&r, QMSG_MAX_DEPTH - 1); /* root map + 3 arrays = depth 4 */
	assert_int_equal(parse_raw(&r), 0);
	nest(&r, QMSG_MAX_DEPTH);
	assert_int_equal(parse_raw(&r), -EBADMSG);
	nest(&r, 1000);
	assert_int_equal(parse_raw(&r), -EBADMSG);
}

static void test_key_limits(void **state)
{
	(void)state;
	struct raw r;
	char key[QMSG_MAX_KEY + 2];

	memset(key, 'k', sizeof(key));
	raw_head(&r, 1);
	raw_str(&r, key, QMSG_MAX_KEY);
	msgpack_pack_nil(&r.pk);
	assert_int_equal(parse_raw(&r), 0);
	raw_head(&r, 1);
	raw_str(&r, key, QMSG_MAX_KEY + 1);
	msgpack_pack_nil(&r.pk);
	assert_int_equal(parse_raw(&r), -EBADMSG);
	/* empty key, key with NUL, key with a space, integer key */
	raw_head(&r, 1);
	raw_str(&r, "", 0);
	msgpack_pack_nil(&r.pk);
	assert_int_equal(parse_raw(&r), -EBADMSG);
	raw_head(&r, 1);
	raw_str(&r, "a\0b", 3);
	msgpack_pack_nil(&r.pk);
	assert_int_equal(parse_raw(&r), -EBADMSG);
	raw_head(&r, 1);
	raw_cstr(&r, "a b");
	msgpack_pack_nil(&r.pk);
	assert_int_equal(parse_raw(&r), -EBADMSG);
	raw_head(&r, 1);
	msgpack_pack_int(&r.pk, 5);
	msgpack_pack_nil(&r.pk);
	assert_int_equal(parse_raw(&r), -EBADMSG);
	/* nested maps are checked too */
	raw_head(&r, 1);
	raw_cstr(&r, "m");
	msgpack_pack_map(&r.pk, 1);
	msgpack_pack_true(&r.pk);
	msgpack_pack_nil(&r.pk);
	assert_int_equal(parse_raw(&r), -EBADMSG);
}

static void test_string_limits(void **state)
{
	(void)state;
	struct raw r;
	cleanup_free char *big = malloc(QMSG_MAX_STR + 1);

	memset(big, 's', QMSG_MAX_STR + 1);
	raw_head(&r, 1);
	raw_cstr(&r, "s");
	raw_str(&r, big, QMSG_MAX_STR);
	assert_int_equal(parse_raw(&r), 0);
	raw_head(&r, 1);
	raw_cstr(&r, "s");
	raw_str(&r, big, QMSG_MAX_STR + 1);
	assert_int_equal(parse_raw(&r), -EBADMSG);
	/* embedded NUL in a value: C would read "ab" as "a" */
	raw_head(&r, 1);
	raw_cstr(&r, "s");
	raw_str(&r, "a\0b", 3);
	assert_int_equal(parse_raw(&r), -EBADMSG);
	/* inside an array as well */
	raw_head(&r, 1);
	raw_cstr(&r, "s");
	msgpack_pack_array(&r.pk, 1);
	raw_str(&r, "\0", 1);
	assert_int_equal(parse_raw(&r), -EBADMSG);
}

static void test_obj_str_nul(void **state)
{
	(void)state;
	/* Objects built by hand (not through qmsg_parse) get the same check. */
	msgpack_object o = {.type = MSGPACK_OBJECT_STR, .via.str = {.size = 3, .ptr = "a\0b"}};
	struct qerr err = {0};
	char dst[8] = "keep";

	assert_int_equal(qmsg_obj_str(&o, dst, sizeof(dst), &err), -EINVAL);
	assert_non_null(strstr(err.msg, "NUL"));
	assert_string_equal(dst, "keep");
}

static void test_entries_and_dups(void **state)
{
	(void)state;
	struct raw r;

	raw_head(&r, 1);
	raw_cstr(&r, "a");
	msgpack_pack_array(&r.pk, QMSG_MAX_ENTRIES);
	for (int i = 0; i < QMSG_MAX_ENTRIES; i++)
		msgpack_pack_nil(&r.pk);
	assert_int_equal(parse_raw(&r), 0);
	raw_head(&r, 1);
	raw_cstr(&r, "a");
	msgpack_pack_array(&r.pk, QMSG_MAX_ENTRIES + 1);
	for (int i = 0; i < QMSG_MAX_ENTRIES + 1; i++)
		msgpack_pack_nil(&r.pk);
	assert_int_equal(parse_raw(&r), -EBADMSG);
	/* duplicate keys: small map and a sorted (large) map */
	raw_head(&r, 1);
	raw_cstr(&r, "op");
	raw_cstr(&r, "kill");
	assert_int_equal(parse_raw(&r), -EBADMSG);
	raw_head(&r, 1);
	raw_cstr(&r, "m");
	msgpack_pack_map(&r.pk, 40);
	for (int i = 0; i < 40; i++) {
		char k[8];

		snprintf(k, sizeof(k), "k%d", i == 39 ? 3 : i);
		raw_cstr(&r, k);
		msgpack_pack_int(&r.pk, i);
	}
	assert_int_equal(parse_raw(&r), -EBADMSG);
}

static void test_huge_lengths(void **state)
{
	(void)state;
	/* Headers declaring far more than the bytes present.  msgpack-c alone
	 * would try to allocate for these. */
	static const uint8_t map32[] = {0xdf, 0xff, 0xff, 0xff, 0xff, 0xa1, 'v', 0x01};
	static const uint8_t prefix[] = {0x83, 0xa1, 'v', 0x01, 0xa2, 'o',
					 'p',  0xa1, 'x', 0xa1, 'a'};
	static const uint8_t tails[][6] = {
	    {0xdd, 0xff, 0xff, 0xff, 0xff, 0xc0}, /* array32 */
	    {0xdf, 0x00, 0x01, 0x00, 0x00, 0xc0}, /* map32, 65536 */
	    {0xdb, 0xff, 0xff, 0xff, 0xff, 'x'},  /* str32 */
	    {0xc6, 0xff, 0xff, 0xff, 0xff, 0x00}, /* bin32 */
	    {0xde, 0xff, 0xff, 0xc0, 0xc0, 0xc0}, /* map16 */
	    {0xc7, 0x05, 0x01, 0, 0, 0},	  /* ext8: never allowed */
	    {0xc1, 0, 0, 0, 0, 0},		  /* reserved byte */
	};
	uint8_t buf[sizeof(prefix) + 6];

	assert_int_equal(parse_bytes(map32, sizeof(map32)), -EBADMSG);
	memcpy(buf, prefix, sizeof(prefix));
	for (size_t i = 0; i < ARRAY_SIZE(tails); i++) {
		memcpy(buf + sizeof(prefix), tails[i], 6);
		assert_int_equal(parse_bytes(buf, sizeof(buf)), -EBADMSG);
	}
}

static void test_too_big(void **state)
{
	(void)state;
	size_t n = QMSG_MAX_BYTES + 1;
	cleanup_free uint8_t *buf = calloc(1, n);

	buf[0] = 0x80;
	assert_int_equal(parse_bytes(buf, n), -EMSGSIZE);
}

/* ---- nng ---- */

struct server {
	char url[256];
	nng_socket rep;
	int served;
};

/* Echo id back as op "ok"; answer a request without id with an error
 * reply, and a malformed request with an EBADMSG error reply. */
static void *serve(void *arg)
{
	struct server *srv = arg;

	for (int i = 0; i < 3; i++) {
		struct qmsg_in in;
		struct qmsg_out out;
		struct qerr err = {0};
		char id[32];
		int rc = qnng_recv(srv->rep, &in, &err);

		qmsg_out_init(&out);
		if (rc == 0)
			rc = qmsg_get_str(in.root, "id", id, sizeof(id), &err);
		if (rc < 0) {
			qmsg_error_reply(&out, &err);
		} else {
			qmsg_begin(&out, "ok", 1);
			qmsg_put_str(&out, "id", id);
		}
		qnng_send(srv->rep, &out, &err);
		qmsg_out_free(&out);
		qmsg_in_free(&in);
		srv->served++;
	}
	return NULL;
}

static void test_reqrep_ipc(void **state)
{
	(void)state;
	char dir[] = "/tmp/quiver-test-msg-XXXXXX";
	struct server srv = {.served = 0};
	struct qerr err = {0};
	struct qmsg_out m;
	struct qmsg_in reply;
	nng_socket req;
	pthread_t th;
	char path[200], id[32];

	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/ctl.sock", dir);
	snprintf(srv.url, sizeof(srv.url), "ipc://%s", path);

	/* Nobody listening yet: an immediate, explained failure. */
	assert_true(qnng_req_dial(&req, srv.url, 1000, &err) < 0);
	assert_non_null(strstr(err.msg, path));

	/* the client side's test: a plain nng REP stands in for the daemons'
	 * (libcommon/sp.c, tests/unit/test_sp.c) */
	assert_int_equal(nng_rep0_open(&srv.rep), 0);
	assert_int_equal(nng_listen(srv.rep, srv.url, NULL, 0), 0);
	assert_int_equal(pthread_create(&th, NULL, serve, &srv), 0);
	assert_int_equal(qnng_req_dial(&req, srv.url, 5000, &err), 0);

	qmsg_out_init(&m);
	qmsg_begin(&m, "state", 1);
	qmsg_put_str(&m, "id", "sb-42");
	assert_int_equal(qnng_call(req, &m, &reply, &err), 0);
	assert_string_equal(reply.op, "ok");
	assert_int_equal(qmsg_get_str(reply.root, "id", id, sizeof(id), &err), 0);
	assert_string_equal(id, "sb-42");
	qmsg_in_free(&reply);

	/* The server's error reply comes back as the call's error. */
	qmsg_begin(&m, "state", 0);
	assert_int_equal(qnng_call(req, &m, &reply, &err), -ENOENT);
	assert_non_null(strstr(err.msg, "field id"));

	/* Garbage on the wire gets an error reply, not a dead server. */
	assert_int_equal(nng_send(req, "\x92\x01\x02", 3, 0), 0);
	assert_int_equal(qnng_recv(req, &reply, &err), 0);
	assert_int_equal(qmsg_reply_error(&reply, &err), -EBADMSG);
	qmsg_in_free(&reply);

	pthread_join(th, NULL);
	assert_int_equal(srv.served, 3);

	/* No server answering: the call times out instead of hanging. */
	nng_close(req);
	assert_int_equal(qnng_req_dial(&req, srv.url, 200, &err), 0);
	qmsg_begin(&m, "state", 0);
	assert_int_equal(qnng_call(req, &m, &reply, &err), -ETIMEDOUT);

	qmsg_out_free(&m);
	nng_close(req);
	nng_close(srv.rep);
	unlink(path);
	rmdir(dir);
}

static void test_send_limits(void **state)
{
	(void)state;
	struct qerr err = {0};
	struct qmsg_out m;
	nng_socket s;

	assert_int_equal(nng_pub0_open(&s), 0);
	qmsg_out_init(&m);
	assert_int_equal(qnng_send(s, &m, &err), -EINVAL); /* nothing built */
	qmsg_out_free(&m);
	nng_close(s);
	assert_int_equal(qnng_errno(NNG_ETIMEDOUT), ETIMEDOUT);
	assert_int_equal(qnng_errno(-NNG_ECONNREFUSED), ECONNREFUSED);
	assert_int_equal(qnng_errno(NNG_ESYSERR | EACCES), EACCES);
	assert_int_equal(qnng_errno(9999), EIO);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_roundtrip),	   cmocka_unit_test(test_reuse_builder),
	    cmocka_unit_test(test_error_reply),	   cmocka_unit_test(test_truncated),
	    cmocka_unit_test(test_trailing_bytes), cmocka_unit_test(test_not_a_map),
	    cmocka_unit_test(test_version_and_op), cmocka_unit_test(test_depth),
	    cmocka_unit_test(test_key_limits),	   cmocka_unit_test(test_string_limits),
	    cmocka_unit_test(test_obj_str_nul),	   cmocka_unit_test(test_entries_and_dups),
	    cmocka_unit_test(test_huge_lengths),   cmocka_unit_test(test_too_big),
	    cmocka_unit_test(test_reqrep_ipc),	   cmocka_unit_test(test_send_limits),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
