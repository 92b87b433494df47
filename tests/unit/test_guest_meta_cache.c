/* Tests for the guest's metadata cache (guest/meta_cache.h): what it keeps,
 * what it gives back, what it keys on, and what it refuses. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "guest/meta_cache.h"

union req_buf {
	struct iod_req r;
	unsigned char raw[IOD_ENTRY_SIZE];
};

union resp_buf {
	struct iod_resp r;
	unsigned char raw[IOD_ENTRY_SIZE];
};

static void req(union req_buf *b, unsigned op, const char *path, uint32_t fsuid)
{
	memset(b, 0, sizeof(*b));
	b->r.hdr.opcode = (uint16_t)op;
	b->r.path_len = (uint32_t)strlen(path) + 1;
	memcpy(b->r.paths, path, b->r.path_len);
	b->r.creds.fsuid = fsuid;
	b->r.creds.fsgid = fsuid;
	b->r.creds.umask = 022;
}

static void resp(union resp_buf *b, unsigned op, int64_t res, uint64_t ino, bool cacheable)
{
	memset(b, 0, sizeof(*b));
	b->r.hdr.opcode = (uint16_t)op;
	b->r.hdr.flags = cacheable ? IOD_RESP_CACHEABLE : 0;
	b->r.res = res;
	if (op == IOD_OP_STAT && res == 0) {
		struct statx x = {.stx_ino = ino, .stx_mode = S_IFREG | 0644};
		memcpy(b->r.data, &x, sizeof(x));
		b->r.data_len = sizeof(x);
	}
}

static int setup(void **state)
{
	(void)state;
	meta_cache_clear();
	return 0;
}

static void test_keeps_stat_and_negative_answers(void **state)
{
	union req_buf q;
	union resp_buf a;
	struct statx x;
	int64_t res;

	(void)state;
	req(&q, IOD_OP_STAT, "/usr/lib/python3.11/os.py", 0);
	assert_false(meta_cache_get(&q.r, &res, &x));
	resp(&a, IOD_OP_STAT, 0, 4242, true);
	meta_cache_put(&q.r, &a.r);
	memset(&x, 0, sizeof(x));
	assert_true(meta_cache_get(&q.r, &res, &x));
	assert_int_equal(res, 0);
	assert_int_equal(x.stx_ino, 4242);

	req(&q, IOD_OP_OPEN, "/usr/lib/python3.11/nothere.py", 0);
	resp(&a, IOD_OP_OPEN, -ENOENT, 0, true);
	meta_cache_put(&q.r, &a.r);
	assert_true(meta_cache_get(&q.r, &res, &x));
	assert_int_equal(res, -ENOENT);

	req(&q, IOD_OP_ACCESS, "/etc/passwd", 0);
	q.r.mode = W_OK;
	resp(&a, IOD_OP_ACCESS, -EROFS, 0, true);
	meta_cache_put(&q.r, &a.r);
	assert_true(meta_cache_get(&q.r, &res, &x));
	assert_int_equal(res, -EROFS);
	q.r.mode = R_OK; /* another question */
	assert_false(meta_cache_get(&q.r, &res, &x));
}

static void test_keys_on_credentials_flags_and_path(void **state)
{
	union req_buf q;
	union resp_buf a;
	struct statx x;
	int64_t res;

	(void)state;
	req(&q, IOD_OP_STAT, "/secret/file", 0);
	resp(&a, IOD_OP_STAT, 0, 7, true);
	meta_cache_put(&q.r, &a.r);
	assert_true(meta_cache_get(&q.r, &res, &x));

	req(&q, IOD_OP_STAT, "/secret/file", 1000); /* another user */
	assert_false(meta_cache_get(&q.r, &res, &x));
	q.r.creds.fsuid = 0;
	q.r.creds.fsgid = 0;
	q.r.creds.cap_eff = 1; /* other capabilities */
	assert_false(meta_cache_get(&q.r, &res, &x));
	q.r.creds.cap_eff = 0;
	q.r.creds.umask = 077; /* umask does not matter for a lookup */
	assert_true(meta_cache_get(&q.r, &res, &x));
	q.r.creds.ngroups = 1; /* supplementary groups do */
	q.r.creds.groups[0] = 5;
	assert_false(meta_cache_get(&q.r, &res, &x));

	req(&q, IOD_OP_STAT, "/secret/file", 0);
	q.r.at_flags = AT_SYMLINK_NOFOLLOW; /* lstat is another question */
	assert_false(meta_cache_get(&q.r, &res, &x));
	req(&q, IOD_OP_STAT, "/secret/file2", 0);
	assert_false(meta_cache_get(&q.r, &res, &x));
	req(&q, IOD_OP_STAT, "/secret/fil", 0);
	assert_false(meta_cache_get(&q.r, &res, &x));
}

static void test_refuses_what_iod_did_not_mark(void **state)
{
	union req_buf q;
	union resp_buf a;
	struct statx x;
	int64_t res;

	(void)state;
	/* not marked: a walk that crossed a mount */
	req(&q, IOD_OP_STAT, "/tmp/f", 0);
	resp(&a, IOD_OP_STAT, -ENOENT, 0, false);
	meta_cache_put(&q.r, &a.r);
	assert_false(meta_cache_get(&q.r, &res, &x));
	/* an answer to another op */
	resp(&a, IOD_OP_ACCESS, -ENOENT, 0, true);
	meta_cache_put(&q.r, &a.r);
	assert_false(meta_cache_get(&q.r, &res, &x));
	/* a successful stat without its statx */
	resp(&a, IOD_OP_STAT, 0, 1, true);
	a.r.data_len = 8;
	meta_cache_put(&q.r, &a.r);
	assert_false(meta_cache_get(&q.r, &res, &x));
	/* ops that change things are never kept */
	req(&q, IOD_OP_MKDIR, "/d", 0);
	resp(&a, IOD_OP_MKDIR, -EROFS, 0, true);
	meta_cache_put(&q.r, &a.r);
	assert_false(meta_cache_get(&q.r, &res, &x));
}

static void test_many_credentials_and_the_flush(void **state)
{
	union req_buf q;
	union resp_buf a;
	struct meta_cache_stats st;
	struct statx x;
	int64_t res;
	char path[64];

	(void)state;
	/* Past META_CREDS_MAX credential sets nothing new is kept. */
	for (uint32_t u = 0; u < META_CREDS_MAX + 2; u++) {
		req(&q, IOD_OP_STAT, "/x", u);
		resp(&a, IOD_OP_STAT, -ENOENT, 0, true);
		meta_cache_put(&q.r, &a.r);
		assert_int_equal(meta_cache_get(&q.r, &res, &x), u < META_CREDS_MAX);
	}
	meta_cache_clear();
	/* Filling it empties it, then it fills again. */
	meta_cache_stats(&st);
	uint64_t flushes = st.flushes;
	for (unsigned i = 0; i < META_CACHE_SLOTS; i++) {
		snprintf(path, sizeof(path), "/lib/m%u", i);
		req(&q, IOD_OP_STAT, path, 0);
		resp(&a, IOD_OP_STAT, -ENOENT, 0, true);
		meta_cache_put(&q.r, &a.r);
		assert_true(meta_cache_get(&q.r, &res, &x));
	}
	meta_cache_stats(&st);
	assert_int_equal(st.flushes, flushes + 1);
	assert_true(st.entries < META_CACHE_SLOTS / 4 * 3);
	req(&q, IOD_OP_STAT, "/lib/m0", 0); /* gone with the flush */
	assert_false(meta_cache_get(&q.r, &res, &x));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup(test_keeps_stat_and_negative_answers, setup),
	    cmocka_unit_test_setup(test_keys_on_credentials_flags_and_path, setup),
	    cmocka_unit_test_setup(test_refuses_what_iod_did_not_mark, setup),
	    cmocka_unit_test_setup(test_many_credentials_and_the_flush, setup),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
