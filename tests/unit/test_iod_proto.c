/* Tests for iod's entry checks (libcommon/iod_proto.h) and the filesystem
 * credentials iod acts with (libcommon/fscreds.h): parsing /proc/<tid>/status,
 * the credentials of an operation, and taking them on in one thread. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/fsuid.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "libcommon/fscreds.h"
#include "libcommon/iod_proto.h"

union req_buf {
	struct iod_req r;
	unsigned char raw[IOD_ENTRY_SIZE];
};

union resp_buf {
	struct iod_resp r;
	unsigned char raw[IOD_ENTRY_SIZE];
};

static uint32_t req_base(void)
{
	return (uint32_t)(offsetof(struct iod_req, paths) - sizeof(struct ring_entry_hdr));
}

/* hdr.len as a correct producer computes it from the two lengths. */
static void fix_len(union req_buf *b)
{
	b->r.hdr.len = req_base() + b->r.path_len + b->r.path2_len;
}

static void make_req(union req_buf *b, unsigned op, const char *p1, const char *p2)
{
	size_t l1 = strlen(p1) + 1, l2 = p2 ? strlen(p2) + 1 : 0;

	memset(b, 0, sizeof(*b));
	b->r.hdr.opcode = (uint16_t)op;
	b->r.hdr.user_data = 42;
	b->r.creds.fsuid = 1000;
	b->r.creds.ngroups = 1;
	b->r.creds.groups[0] = 1000;
	memcpy(b->r.paths, p1, l1);
	if (p2)
		memcpy(b->r.paths + l1, p2, l2);
	b->r.path_len = (uint32_t)l1;
	b->r.path2_len = (uint32_t)l2;
	fix_len(b);
}

static bool two_paths(unsigned op)
{
	return op == IOD_OP_RENAME || op == IOD_OP_LINK || op == IOD_OP_SYMLINK ||
	       op == IOD_OP_GETXATTR;
}

/* ---- iod_req_valid ---- */

static void test_req_accepts_good(void **state)
{
	union req_buf b;

	(void)state;
	for (unsigned op = 1; op < IOD_OP_MAX_; op++) {
		if (two_paths(op))
			make_req(&b, op, "/a", "/dir/b");
		else
			make_req(&b, op, "/a/b", NULL);
		if (op == IOD_OP_FILE_ADD)
			b.r.hdr.flags = IOD_REQ_FD; /* its file comes ahead */
		assert_true(iod_req_valid(&b, NULL));
		assert_string_equal(b.r.paths, two_paths(op) ? "/a" : "/a/b");
		if (two_paths(op))
			assert_string_equal(iod_req_path2(&b.r), "/dir/b");
		else
			assert_null(iod_req_path2(&b.r));
		assert_string_not_equal(iod_op_name(op), "?");
	}
	assert_string_equal(iod_op_name(IOD_OP_OPEN), "open");
	assert_string_equal(iod_op_name(IOD_OP_RENAME), "rename");
	assert_string_equal(iod_op_name(0), "?");
	assert_string_equal(iod_op_name(IOD_OP_MAX_), "?");

	/* The relative name "", the root, every group slot. */
	make_req(&b, IOD_OP_STAT, "", NULL);
	assert_true(iod_req_valid(&b, NULL));
	make_req(&b, IOD_OP_STAT, "/", NULL);
	b.r.creds.ngroups = IOD_GROUPS_MAX;
	assert_true(iod_req_valid(&b, NULL));

	/* A path that fills the entry exactly, and two that do together. */
	static char big[IOD_PATHS_MAX];
	memset(big, 'x', sizeof(big));
	big[0] = '/';
	big[IOD_PATHS_MAX - 1] = '\0';
	make_req(&b, IOD_OP_OPEN, big, NULL);
	assert_int_equal(b.r.path_len, IOD_PATHS_MAX);
	assert_int_equal(b.r.hdr.len, IOD_ENTRY_SIZE - sizeof(struct ring_entry_hdr));
	assert_true(iod_req_valid(&b, NULL));
	big[IOD_PATHS_MAX - 3] = '\0';
	make_req(&b, IOD_OP_RENAME, big, "/");
	assert_int_equal(b.r.path_len + b.r.path2_len, IOD_PATHS_MAX);
	assert_true(iod_req_valid(&b, NULL));
}

static void test_req_rejects_bad_opcode_and_flags(void **state)
{
	static const unsigned bad_ops[] = {0, IOD_OP_MAX_, IOD_OP_MAX_ + 1, 0x7fff, 0xffff};
	union req_buf b;

	(void)state;
	for (size_t i = 0; i < sizeof(bad_ops) / sizeof(bad_ops[0]); i++) {
		make_req(&b, IOD_OP_STAT, "/a", NULL);
		b.r.hdr.opcode = (uint16_t)bad_ops[i];
		assert_false(iod_req_valid(&b, NULL));
	}
	for (unsigned bit = 0; bit < 16; bit++) {
		make_req(&b, IOD_OP_STAT, "/a", NULL);
		b.r.hdr.flags = (uint16_t)(1u << bit);
		assert_int_equal(iod_req_valid(&b, NULL), (1u << bit) == IOD_REQ_CACHE);
	}
	/* IOD_REQ_CACHE: on the ops whose answers may be kept, and no other. */
	for (unsigned op = 1; op < IOD_OP_MAX_; op++) {
		if (two_paths(op))
			make_req(&b, op, "/a", "/dir/b");
		else
			make_req(&b, op, "/a", NULL);
		b.r.hdr.flags = IOD_REQ_CACHE;
		assert_int_equal(iod_req_valid(&b, NULL),
				 op == IOD_OP_STAT || op == IOD_OP_ACCESS || op == IOD_OP_OPEN);
	}
}

/* Offload-all: a handle in range, a data slot in range, no more bytes
 * than a slot, an offset that is a file offset or IOD_OFFSET_CURRENT. */
static void test_req_handle_ops(void **state)
{
	union req_buf b;
	union resp_buf o;

	(void)state;
	for (unsigned op = 1; op < IOD_OP_MAX_; op++)
		assert_int_equal(iod_op_on_handle(op), op >= IOD_OP_FILE_ADD && op <= IOD_OP_FSYNC);

	make_req(&b, IOD_OP_FILE_ADD, "", NULL);
	assert_false(iod_req_valid(&b, NULL)); /* no file with it */
	b.r.hdr.flags = IOD_REQ_FD;
	b.r.arg0 = IOD_FILES_MAX - 1;
	assert_true(iod_req_valid(&b, NULL));
	b.r.arg0 = IOD_FILES_MAX;
	assert_false(iod_req_valid(&b, NULL));
	/* IOD_REQ_FD on the other handle ops: no */
	for (unsigned op = IOD_OP_FILE_DROP; op <= IOD_OP_FSYNC; op++) {
		make_req(&b, op, "", NULL);
		assert_true(iod_req_valid(&b, NULL));
		b.r.hdr.flags = IOD_REQ_FD;
		assert_false(iod_req_valid(&b, NULL));
		make_req(&b, op, "", NULL);
		b.r.arg0 = 1ull << 40;
		assert_false(iod_req_valid(&b, NULL));
	}

	for (unsigned op = IOD_OP_READ; op <= IOD_OP_WRITE; op++) {
		make_req(&b, op, "", NULL);
		b.r.slot = IOD_DATA_SLOTS - 1;
		b.r.arg1 = IOD_OFFSET_CURRENT;
		b.r.arg2 = IOD_DATA_SLOT_SIZE;
		assert_true(iod_req_valid(&b, NULL));
		b.r.arg2 = IOD_DATA_SLOT_SIZE + 1;
		assert_false(iod_req_valid(&b, NULL));
		b.r.arg2 = 1;
		b.r.slot = IOD_DATA_SLOTS;
		assert_false(iod_req_valid(&b, NULL));
		b.r.slot = 0;
		b.r.arg1 = (uint64_t)INT64_MAX;
		assert_true(iod_req_valid(&b, NULL));
		b.r.arg1 = (uint64_t)INT64_MAX + 1; /* a negative offset */
		assert_false(iod_req_valid(&b, NULL));
	}
	make_req(&b, IOD_OP_FSYNC, "", NULL);
	b.r.flags = IOD_FSYNC_DATA;
	assert_true(iod_req_valid(&b, NULL));
	b.r.flags = 2;
	assert_false(iod_req_valid(&b, NULL));

	/* Plain data filesystems only: never one whose content depends on
	 * who reads it. */
	assert_true(iod_fs_offloadable(0x01021994));  /* tmpfs */
	assert_true(iod_fs_offloadable(0x794c7630));  /* overlayfs */
	assert_true(iod_fs_offloadable(0x58465342));  /* xfs */
	assert_true(iod_fs_offloadable(0xEF53));      /* ext4 */
	assert_false(iod_fs_offloadable(0x9fa0));     /* proc */
	assert_false(iod_fs_offloadable(0x62656572)); /* sysfs */
	assert_false(iod_fs_offloadable(0x27e0eb));   /* cgroup */
	assert_false(iod_fs_offloadable(0x63677270)); /* cgroup2 */
	assert_false(iod_fs_offloadable(0x65735546)); /* fuse */
	assert_false(iod_fs_offloadable(0x1373));     /* devfs */

	/* A completion never says more bytes than a slot holds. */
	memset(&o, 0, sizeof(o));
	o.r.hdr.opcode = IOD_OP_READ;
	o.r.hdr.len = (uint32_t)(offsetof(struct iod_resp, data) - sizeof(o.r.hdr));
	o.r.res = IOD_DATA_SLOT_SIZE;
	assert_true(iod_resp_valid(&o, NULL));
	o.r.res = IOD_DATA_SLOT_SIZE + 1;
	assert_false(iod_resp_valid(&o, NULL));
	o.r.hdr.opcode = IOD_OP_WRITE;
	assert_false(iod_resp_valid(&o, NULL));
	o.r.res = -EBADF;
	assert_true(iod_resp_valid(&o, NULL));
}

static void test_req_rejects_too_many_groups(void **state)
{
	static const uint32_t bad[] = {IOD_GROUPS_MAX + 1, 1000, UINT32_MAX};
	union req_buf b;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		make_req(&b, IOD_OP_OPEN, "/a", NULL);
		b.r.creds.ngroups = bad[i];
		assert_false(iod_req_valid(&b, NULL));
	}
}

static void test_req_rejects_bad_strings(void **state)
{
	union req_buf b;

	(void)state;
	/* No NUL at the end of the first path. */
	make_req(&b, IOD_OP_STAT, "/abc", NULL);
	b.r.path_len = 4;
	fix_len(&b);
	assert_false(iod_req_valid(&b, NULL));
	/* Not even one byte. */
	make_req(&b, IOD_OP_STAT, "/abc", NULL);
	b.r.path_len = 0;
	fix_len(&b);
	assert_false(iod_req_valid(&b, NULL));
	/* A NUL inside: "/a\0b\0" as one 5-byte path. */
	make_req(&b, IOD_OP_STAT, "/a_b", NULL);
	b.r.paths[2] = '\0';
	assert_false(iod_req_valid(&b, NULL));
	/* The same in the second path, and a second path without its NUL. */
	make_req(&b, IOD_OP_RENAME, "/a", "/b_c");
	b.r.paths[b.r.path_len + 2] = '\0';
	assert_false(iod_req_valid(&b, NULL));
	make_req(&b, IOD_OP_RENAME, "/a", "/bc");
	b.r.paths[b.r.path_len + b.r.path2_len - 1] = 'x';
	assert_false(iod_req_valid(&b, NULL));
	/* Both paths counted as the first: a NUL inside it. */
	make_req(&b, IOD_OP_RENAME, "/a", "/b");
	b.r.path_len += b.r.path2_len;
	b.r.path2_len = 0;
	assert_false(iod_req_valid(&b, NULL));
}

static void test_req_rejects_lengths_not_matching(void **state)
{
	union req_buf b;

	(void)state;
	for (int delta = -3; delta <= 3; delta++) {
		if (delta == 0)
			continue;
		make_req(&b, IOD_OP_OPEN, "/file", NULL);
		b.r.hdr.len = (uint32_t)((int64_t)b.r.hdr.len + delta);
		assert_false(iod_req_valid(&b, NULL));
		make_req(&b, IOD_OP_LINK, "/old", "/new");
		b.r.hdr.len = (uint32_t)((int64_t)b.r.hdr.len + delta);
		assert_false(iod_req_valid(&b, NULL));
	}
	/* path_len says more than there is (hdr.len agrees): bytes past the
	 * paths are not a string's. */
	make_req(&b, IOD_OP_OPEN, "/file", NULL);
	b.r.path_len += 8;
	fix_len(&b);
	assert_false(iod_req_valid(&b, NULL));
	/* Lengths past the entry, and ones whose sum wraps to a small total
	 * that hdr.len matches. */
	make_req(&b, IOD_OP_OPEN, "/file", NULL);
	b.r.path_len = IOD_PATHS_MAX + 1;
	fix_len(&b);
	assert_false(iod_req_valid(&b, NULL));
	make_req(&b, IOD_OP_RENAME, "/a", "/b");
	b.r.path_len = IOD_PATHS_MAX;
	b.r.path2_len = 3;
	fix_len(&b);
	assert_false(iod_req_valid(&b, NULL));
	make_req(&b, IOD_OP_RENAME, "/a", "/b");
	b.r.path_len = UINT32_MAX;
	b.r.path2_len = 4; /* UINT32_MAX + 4 == 3 */
	fix_len(&b);
	assert_false(iod_req_valid(&b, NULL));
	make_req(&b, IOD_OP_RENAME, "/a", "/b");
	b.r.path_len = 3;
	b.r.path2_len = UINT32_MAX;
	fix_len(&b);
	assert_false(iod_req_valid(&b, NULL));
}

static void test_req_rejects_wrong_path_count(void **state)
{
	union req_buf b;

	(void)state;
	for (unsigned op = 1; op < IOD_OP_MAX_; op++) {
		if (two_paths(op))
			make_req(&b, op, "/a", NULL);
		else
			make_req(&b, op, "/a", "/b");
		assert_false(iod_req_valid(&b, NULL));
	}
}

/* ---- iod_resp_valid ---- */

static void make_resp(union resp_buf *b, unsigned op, unsigned flags, int64_t res,
		      uint32_t data_len)
{
	memset(b, 0, sizeof(*b));
	b->r.hdr.opcode = (uint16_t)op;
	b->r.hdr.flags = (uint16_t)flags;
	b->r.hdr.user_data = 7;
	b->r.res = res;
	b->r.data_len = data_len;
	b->r.hdr.len =
	    (uint32_t)(offsetof(struct iod_resp, data) - sizeof(struct ring_entry_hdr)) + data_len;
}

static void test_resp_accepts_good(void **state)
{
	union resp_buf b;

	(void)state;
	make_resp(&b, IOD_OP_STAT, 0, 0, 256);
	assert_true(iod_resp_valid(&b, NULL));
	make_resp(&b, IOD_OP_OPEN, IOD_RESP_FD, 0, 0);
	assert_true(iod_resp_valid(&b, NULL));
	make_resp(&b, IOD_OP_OPEN, 0, -ENOENT, 0);
	assert_true(iod_resp_valid(&b, NULL));
	make_resp(&b, IOD_OP_MKDIR, 0, -4095, 0);
	assert_true(iod_resp_valid(&b, NULL));
	make_resp(&b, IOD_OP_READLINK, 0, 5, 5);
	assert_true(iod_resp_valid(&b, NULL));
	make_resp(&b, IOD_OP_STATFS, 0, 0, IOD_RESP_DATA_MAX);
	assert_true(iod_resp_valid(&b, NULL));
	/* Size queries: the result is the size, no data. */
	make_resp(&b, IOD_OP_GETXATTR, 0, 100, 0);
	assert_true(iod_resp_valid(&b, NULL));
	make_resp(&b, IOD_OP_READLINK, 0, 100, 0);
	assert_true(iod_resp_valid(&b, NULL));
	/* xattr results may exceed what came back. */
	make_resp(&b, IOD_OP_GETXATTR, 0, 100, 10);
	assert_true(iod_resp_valid(&b, NULL));
	make_resp(&b, IOD_OP_LISTXATTR, 0, 65536, 10);
	assert_true(iod_resp_valid(&b, NULL));
	/* Cacheable: a stat, an access, a failed open. */
	make_resp(&b, IOD_OP_STAT, IOD_RESP_CACHEABLE, 0, 256);
	assert_true(iod_resp_valid(&b, NULL));
	make_resp(&b, IOD_OP_ACCESS, IOD_RESP_CACHEABLE, -EROFS, 0);
	assert_true(iod_resp_valid(&b, NULL));
	make_resp(&b, IOD_OP_OPEN, IOD_RESP_CACHEABLE, -ENOENT, 0);
	assert_true(iod_resp_valid(&b, NULL));
}

static void test_resp_rejects_bad(void **state)
{
	union resp_buf b;

	(void)state;
	make_resp(&b, 0, 0, 0, 0);
	assert_false(iod_resp_valid(&b, NULL));
	make_resp(&b, IOD_OP_MAX_, 0, 0, 0);
	assert_false(iod_resp_valid(&b, NULL));
	make_resp(&b, 0xffff, 0, 0, 0);
	assert_false(iod_resp_valid(&b, NULL));
	for (unsigned bit = 1; bit < 16; bit++) {
		make_resp(&b, IOD_OP_OPEN, 1u << bit, 0, 0);
		assert_false(iod_resp_valid(&b, NULL));
	}
	/* Cacheable, but an opened file or an op that changes things. */
	make_resp(&b, IOD_OP_OPEN, IOD_RESP_CACHEABLE | IOD_RESP_FD, 0, 0);
	assert_false(iod_resp_valid(&b, NULL));
	make_resp(&b, IOD_OP_MKDIR, IOD_RESP_CACHEABLE, -EROFS, 0);
	assert_false(iod_resp_valid(&b, NULL));
	make_resp(&b, IOD_OP_READLINK, IOD_RESP_CACHEABLE, 3, 3);
	assert_false(iod_resp_valid(&b, NULL));
	/* Data past the entry (hdr.len agreeing), hdr.len not agreeing. */
	make_resp(&b, IOD_OP_STAT, 0, 0, IOD_RESP_DATA_MAX + 1);
	assert_false(iod_resp_valid(&b, NULL));
	make_resp(&b, IOD_OP_STAT, 0, 0, UINT32_MAX);
	assert_false(iod_resp_valid(&b, NULL));
	make_resp(&b, IOD_OP_STAT, 0, 0, 256);
	b.r.hdr.len++;
	assert_false(iod_resp_valid(&b, NULL));
	make_resp(&b, IOD_OP_STAT, 0, 0, 256);
	b.r.hdr.len--;
	assert_false(iod_resp_valid(&b, NULL));
	/* An fd announced for anything but a successful open. */
	static const unsigned not_open[] = {IOD_OP_STAT, IOD_OP_READLINK, IOD_OP_MKDIR,
					    IOD_OP_CHDIR, IOD_OP_LISTXATTR};
	for (size_t i = 0; i < sizeof(not_open) / sizeof(not_open[0]); i++) {
		make_resp(&b, not_open[i], IOD_RESP_FD, 0, 0);
		assert_false(iod_resp_valid(&b, NULL));
	}
	make_resp(&b, IOD_OP_OPEN, IOD_RESP_FD, -EACCES, 0);
	assert_false(iod_resp_valid(&b, NULL));
	make_resp(&b, IOD_OP_OPEN, IOD_RESP_FD, 3, 0);
	assert_false(iod_resp_valid(&b, NULL));
	/* Not an errno. */
	make_resp(&b, IOD_OP_OPEN, 0, -4096, 0);
	assert_false(iod_resp_valid(&b, NULL));
	make_resp(&b, IOD_OP_OPEN, 0, INT64_MIN, 0);
	assert_false(iod_resp_valid(&b, NULL));
	/* More link bytes claimed than sent. */
	make_resp(&b, IOD_OP_READLINK, 0, 6, 5);
	assert_false(iod_resp_valid(&b, NULL));
}

/* ---- fscreds_parse_status ---- */

static const char status_text[] = "Name:\tcat\n"
				  "Umask:\t0027\n"
				  "State:\tR (running)\n"
				  "Tgid:\t4242\n"
				  "Pid:\t4242\n"
				  "PPid:\t1\n"
				  "Uid:\t1000\t1001\t1002\t1003\n"
				  "Gid:\t2000\t2001\t2002\t2003\n"
				  "FDSize:\t64\n"
				  "Groups:\t4 24 27 \n"
				  "NSpid:\t4242\n"
				  "CapInh:\t0000000000000000\n"
				  "CapPrm:\t000001ffffffffff\n"
				  "CapEff:\t0000000000000003\n"
				  "CapBnd:\t000001ffffffffff\n"
				  "Seccomp:\t0\n";

/* status_text with the line starting with key replaced by line (NULL:
 * removed). */
static char *status_with(const char *key, const char *line)
{
	static char buf[4096];
	const char *p = status_text;
	size_t n = strlen(key);

	buf[0] = '\0';
	while (*p) {
		const char *nl = strchr(p, '\n');
		size_t len = (size_t)(nl - p) + 1;

		if (strncmp(p, key, n) == 0 && p[n] == ':') {
			if (line)
				strcat(buf, line);
		} else {
			strncat(buf, p, len);
		}
		p += len;
	}
	return buf;
}

static void test_parse_synthetic(void **state)
{
	struct fscreds_task t;

	(void)state;
	assert_int_equal(fscreds_parse_status(status_text, &t), 0);
	assert_int_equal(t.ruid, 1000);
	assert_int_equal(t.fsuid, 1003); /* the 4th value */
	assert_int_equal(t.rgid, 2000);
	assert_int_equal(t.fsgid, 2003);
	assert_int_equal(t.cap_prm, 0x1ffffffffffull);
	assert_int_equal(t.cap_eff, 3);
	assert_int_equal(t.umask, 027);
	assert_int_equal(t.ngroups, 3);
	assert_int_equal(t.groups[0], 4);
	assert_int_equal(t.groups[1], 24);
	assert_int_equal(t.groups[2], 27);

	/* No supplementary groups: "Groups:" and nothing, at the end or not. */
	assert_int_equal(fscreds_parse_status(status_with("Groups", "Groups:\t\n"), &t), 0);
	assert_int_equal(t.ngroups, 0);
	assert_int_equal(t.fsuid, 1003);
	static const char last[] = "Uid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\nCapPrm:\t0\n"
				   "CapEff:\t0\nUmask:\t0022\nGroups:";
	assert_int_equal(fscreds_parse_status(last, &t), 0);
	assert_int_equal(t.ngroups, 0);
	assert_int_equal(t.umask, 022);

	/* Exactly IOD_GROUPS_MAX fits. */
	char line[512] = "Groups:\t";
	for (int i = 0; i < (int)IOD_GROUPS_MAX; i++)
		snprintf(line + strlen(line), sizeof(line) - strlen(line), "%d ", 100 + i);
	strcat(line, "\n");
	assert_int_equal(fscreds_parse_status(status_with("Groups", line), &t), 0);
	assert_int_equal(t.ngroups, IOD_GROUPS_MAX);
	assert_int_equal(t.groups[IOD_GROUPS_MAX - 1], 100 + IOD_GROUPS_MAX - 1);
}

static void test_parse_malformed(void **state)
{
	static const char *const fields[] = {"Uid", "Gid", "CapEff", "CapPrm", "Umask", "Groups"};
	static const struct {
		const char *key, *line;
	} bad[] = {
	    {"Uid", "Uid:\t1000\t1001\t1002\n"}, /* three values */
	    {"Uid", "Uid:\t1000\tx\t1002\t1003\n"},
	    {"Uid", "Uid:\t99999999999\t0\t0\t0\n"}, /* more than 32 bits */
	    {"Gid", "Gid:\n"},
	    {"CapEff", "CapEff:\tzz\n"},
	    {"CapEff", "CapEff:\t0000000000000003 junk\n"},
	    {"CapPrm", "CapPrm:\t\n"},
	    {"Umask", "Umask:\t0999\n"}, /* not octal */
	    {"Umask", "Umask:\t1000\n"}, /* more than 0777 */
	    {"Groups", "Groups:\t4 x 27\n"},
	};
	struct fscreds_task t;

	(void)state;
	for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
		assert_int_equal(fscreds_parse_status(status_with(fields[i], NULL), &t), -EINVAL);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(fscreds_parse_status(status_with(bad[i].key, bad[i].line), &t),
				 -EINVAL);
	assert_int_equal(fscreds_parse_status("", &t), -EINVAL);

	char line[512] = "Groups:\t";
	for (int i = 0; i < (int)IOD_GROUPS_MAX + 1; i++)
		snprintf(line + strlen(line), sizeof(line) - strlen(line), "%d ", 100 + i);
	strcat(line, "\n");
	assert_int_equal(fscreds_parse_status(status_with("Groups", line), &t), -E2BIG);
}

static void caps_get(struct __user_cap_data_struct d[2])
{
	struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};

	memset(d, 0, 2 * sizeof(*d));
	assert_int_equal(syscall(SYS_capget, &h, d), 0);
}

static void test_parse_proc_self(void **state)
{
	static char text[16384];
	struct __user_cap_data_struct d[2];
	struct fscreds_task t;
	gid_t groups[64];
	mode_t um = umask(0027);
	size_t len = 0;
	ssize_t n;
	int fd, ng;

	(void)state;
	fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	while ((n = read(fd, text + len, sizeof(text) - 1 - len)) > 0)
		len += (size_t)n;
	close(fd);
	umask(um);
	text[len] = '\0';
	ng = getgroups(64, groups);
	assert_true(ng >= 0);
	if (ng > (int)IOD_GROUPS_MAX) {
		assert_int_equal(fscreds_parse_status(text, &t), -E2BIG);
		return;
	}
	assert_int_equal(fscreds_parse_status(text, &t), 0);
	assert_int_equal(t.ruid, getuid());
	assert_int_equal(t.fsuid, (uint32_t)setfsuid((uid_t)-1));
	assert_int_equal(t.rgid, getgid());
	assert_int_equal(t.fsgid, (uint32_t)setfsgid((gid_t)-1));
	assert_int_equal(t.umask, 0027);
	caps_get(d);
	assert_int_equal(t.cap_eff, (uint64_t)d[0].effective | (uint64_t)d[1].effective << 32);
	assert_int_equal(t.cap_prm, (uint64_t)d[0].permitted | (uint64_t)d[1].permitted << 32);
	assert_int_equal(t.ngroups, ng);
	for (int i = 0; i < ng; i++)
		assert_int_equal(t.groups[i], groups[i]);
}

/* ---- fscreds_for_op, fscreds_equal ---- */

static void test_for_op(void **state)
{
	struct fscreds_task t = {.ruid = 0,
				 .fsuid = 1000,
				 .rgid = 0,
				 .fsgid = 1001,
				 .cap_eff = 0x3,
				 .cap_prm = 0x1ffffffffffull,
				 .umask = 022,
				 .ngroups = 2,
				 .groups = {5, 6}};
	struct iod_creds c, c2;

	(void)state;
	/* The fs ids and the effective set. */
	fscreds_for_op(&t, false, &c);
	assert_int_equal(c.fsuid, 1000);
	assert_int_equal(c.fsgid, 1001);
	assert_int_equal(c.cap_eff, 0x3);
	assert_int_equal(c.umask, 022);
	assert_int_equal(c.ngroups, 2);
	assert_int_equal(c.groups[0], 5);
	assert_int_equal(c.groups[1], 6);

	/* access(2) without AT_EACCESS: the real ids; real uid 0 has its
	 * permitted set, as the kernel's access() gives it. */
	fscreds_for_op(&t, true, &c);
	assert_int_equal(c.fsuid, 0);
	assert_int_equal(c.fsgid, 0);
	assert_int_equal(c.cap_eff, t.cap_prm);
	assert_int_equal(c.umask, 022);
	assert_int_equal(c.ngroups, 2);

	/* Any other real uid: no capabilities at all. */
	t.ruid = 1000;
	t.rgid = 1000;
	t.cap_eff = 0x1ffffffffffull;
	fscreds_for_op(&t, true, &c);
	assert_int_equal(c.fsuid, 1000);
	assert_int_equal(c.fsgid, 1000);
	assert_int_equal(c.cap_eff, 0);

	fscreds_for_op(&t, false, &c);
	fscreds_for_op(&t, false, &c2);
	assert_true(fscreds_equal(&c, &c2));
	c2.umask = 0777; /* not a credential the kernel checks */
	assert_true(fscreds_equal(&c, &c2));
	c2 = c;
	c2.fsgid++;
	assert_false(fscreds_equal(&c, &c2));
	c2 = c;
	c2.groups[1]++;
	assert_false(fscreds_equal(&c, &c2));
	c2 = c;
	c2.ngroups = 1;
	assert_false(fscreds_equal(&c, &c2));
	c2 = c;
	c2.cap_eff ^= 1u << 1; /* DAC_OVERRIDE */
	assert_false(fscreds_equal(&c, &c2));
}

/* ---- fscreds_enter / fscreds_leave, in a thread of their own ---- */

/* cmocka's asserts longjmp: the thread notes its first failure instead. */
struct enter_run {
	char dir[64]; /* root-owned, 0755 */
	char tmpfile[128];
	const char *fail;
	int line;
	pthread_barrier_t entered, checked;
};

#define T_CHECK(run, x)                                                                            \
	do {                                                                                       \
		if (!(x) && !(run)->fail) {                                                        \
			(run)->fail = #x;                                                          \
			(run)->line = __LINE__;                                                    \
		}                                                                                  \
	} while (0)

static uint64_t eff_now(void)
{
	struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
	struct __user_cap_data_struct d[2];

	if (syscall(SYS_capget, &h, d) < 0)
		return UINT64_MAX;
	return (uint64_t)d[0].effective | (uint64_t)d[1].effective << 32;
}

static gid_t own_groups[64]; /* the thread's, when it started */

/* Back to what the thread was: ids, groups, capabilities. */
static bool is_own(const struct __user_cap_data_struct before[2], int ngroups)
{
	struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
	struct __user_cap_data_struct d[2];
	gid_t groups[64];

	return setfsuid((uid_t)-1) == 0 && setfsgid((gid_t)-1) == 0 &&
	       syscall(SYS_capget, &h, d) == 0 && memcmp(d, before, sizeof(d)) == 0 &&
	       getgroups(64, groups) == ngroups &&
	       memcmp(groups, own_groups, sizeof(gid_t) * (size_t)ngroups) == 0;
}

static void *enter_thread(void *arg)
{
	struct enter_run *run = arg;
	struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
	struct __user_cap_data_struct before[2];
	struct iod_creds c = {.fsuid = 1000, .fsgid = 1000};
	gid_t gid = 0;
	char path[128];
	struct stat st;
	int ngroups, fd;

	/* One group of its own (this thread only: the raw call), so that a
	 * workload's one group is a change of content, not of count. */
	gid = 7;
	T_CHECK(run, syscall(SYS_setgroups, 1, &gid) == 0);
	ngroups = getgroups(0, NULL);
	T_CHECK(run, syscall(SYS_capget, &h, before) == 0);
	T_CHECK(run, ngroups >= 0 && ngroups <= 64 && getgroups(64, own_groups) == ngroups);

	/* An unprivileged user: no capabilities, no groups. */
	T_CHECK(run, fscreds_enter(&c) == 0);
	T_CHECK(run, setfsuid((uid_t)-1) == 1000);
	T_CHECK(run, setfsgid((gid_t)-1) == 1000);
	T_CHECK(run, eff_now() == 0);
	T_CHECK(run, getgroups(0, NULL) == 0);
	/* Credentials are per thread: the main thread checks its own now. */
	pthread_barrier_wait(&run->entered);
	pthread_barrier_wait(&run->checked);
	snprintf(path, sizeof(path), "%s/denied", run->dir);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	T_CHECK(run, fd < 0 && errno == EACCES);
	if (fd >= 0)
		close(fd);
	fd = open(run->tmpfile, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	T_CHECK(run, fd >= 0);
	if (fd >= 0) {
		T_CHECK(run, fstat(fd, &st) == 0 && st.st_uid == 1000 && st.st_gid == 1000);
		close(fd);
	}
	fscreds_leave();
	T_CHECK(run, is_own(before, ngroups));

	/* The same user with CAP_DAC_OVERRIDE may write the root-owned dir. */
	c.cap_eff = 1u << 1;
	c.ngroups = 3;
	c.groups[0] = 1000;
	c.groups[1] = 27;
	c.groups[2] = 4;
	T_CHECK(run, fscreds_enter(&c) == 0);
	T_CHECK(run, eff_now() == (1u << 1));
	T_CHECK(run, getgroups(0, NULL) == 3);
	snprintf(path, sizeof(path), "%s/allowed", run->dir);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	T_CHECK(run, fd >= 0);
	if (fd >= 0) {
		T_CHECK(run, fstat(fd, &st) == 0 && st.st_uid == 1000);
		close(fd);
	}
	fscreds_leave();
	T_CHECK(run, is_own(before, ngroups));

	/* A root workload: only what differs is set (the ids and groups are
	 * this thread's), and every part still comes back, also after an
	 * enter of ids alone and one of groups alone in between. */
	c = (struct iod_creds){.fsuid = 0, .fsgid = 0, .cap_eff = 1u << 0};
	c.ngroups = (uint32_t)getgroups(IOD_GROUPS_MAX, (gid_t *)c.groups);
	T_CHECK(run, c.ngroups == (uint32_t)ngroups);
	T_CHECK(run, fscreds_enter(&c) == 0);
	T_CHECK(run, eff_now() == (1u << 0));
	T_CHECK(run, setfsuid((uid_t)-1) == 0 && setfsgid((gid_t)-1) == 0);
	T_CHECK(run, getgroups(0, NULL) == ngroups);
	fscreds_leave();
	T_CHECK(run, is_own(before, ngroups));
	c.cap_eff = eff_now();
	c.fsgid = 1001;
	T_CHECK(run, fscreds_enter(&c) == 0);
	T_CHECK(run, setfsgid((gid_t)-1) == 1001 && setfsuid((uid_t)-1) == 0);
	fscreds_leave();
	T_CHECK(run, is_own(before, ngroups));
	c.fsgid = 0;
	c.ngroups = 1;
	c.groups[0] = 4242;
	T_CHECK(run, fscreds_enter(&c) == 0);
	T_CHECK(run, getgroups(1, &gid) == 1 && gid == 4242 && setfsgid((gid_t)-1) == 0);
	fscreds_leave();
	T_CHECK(run, is_own(before, ngroups));

	/* What the kernel will not take leaves the thread as it was. */
	c = (struct iod_creds){.fsuid = (uint32_t)-1, .fsgid = 1000};
	T_CHECK(run, fscreds_enter(&c) == -EPERM);
	T_CHECK(run, is_own(before, ngroups));
	c = (struct iod_creds){.fsuid = 1000, .fsgid = 1000, .ngroups = IOD_GROUPS_MAX + 1};
	T_CHECK(run, fscreds_enter(&c) == -EPERM);
	T_CHECK(run, is_own(before, ngroups));

	/* fscreds_leave without an enter does nothing. */
	fscreds_leave();
	T_CHECK(run, is_own(before, ngroups));
	return NULL;
}

static void test_enter_leave(void **state)
{
	struct __user_cap_data_struct before[2], during[2];
	struct enter_run run;
	char path[128];
	pthread_t th;

	(void)state;
	if (geteuid() != 0)
		skip();
	memset(&run, 0, sizeof(run));
	/* In /tmp itself (1777), not $TMPDIR: uid 1000 must be able to reach
	 * the directory for the EACCES to be about the directory. */
	snprintf(run.dir, sizeof(run.dir), "/tmp/quiver-test-fscreds-XXXXXX");
	assert_non_null(mkdtemp(run.dir));
	assert_int_equal(chmod(run.dir, 0755), 0);
	assert_int_equal(chown(run.dir, 0, 0), 0);
	snprintf(run.tmpfile, sizeof(run.tmpfile), "/tmp/quiver-test-fscreds-%d.owned",
		 (int)getpid());
	unlink(run.tmpfile);
	pthread_barrier_init(&run.entered, NULL, 2);
	pthread_barrier_init(&run.checked, NULL, 2);
	caps_get(before);

	assert_int_equal(pthread_create(&th, NULL, enter_thread, &run), 0);
	pthread_barrier_wait(&run.entered);
	/* The other thread is uid 1000 now; this one is still itself. */
	assert_int_equal(setfsuid((uid_t)-1), 0);
	assert_int_equal(setfsgid((gid_t)-1), 0);
	caps_get(during);
	assert_memory_equal(during, before, sizeof(before));
	pthread_barrier_wait(&run.checked);
	assert_int_equal(pthread_join(th, NULL), 0);

	unlink(run.tmpfile);
	snprintf(path, sizeof(path), "%s/denied", run.dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/allowed", run.dir);
	unlink(path);
	assert_int_equal(rmdir(run.dir), 0);
	pthread_barrier_destroy(&run.entered);
	pthread_barrier_destroy(&run.checked);
	if (run.fail)
		fail_msg("enter_thread, line %d: %s", run.line, run.fail);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_req_accepts_good),
	    cmocka_unit_test(test_req_rejects_bad_opcode_and_flags),
	    cmocka_unit_test(test_req_handle_ops),
	    cmocka_unit_test(test_req_rejects_too_many_groups),
	    cmocka_unit_test(test_req_rejects_bad_strings),
	    cmocka_unit_test(test_req_rejects_lengths_not_matching),
	    cmocka_unit_test(test_req_rejects_wrong_path_count),
	    cmocka_unit_test(test_resp_accepts_good),
	    cmocka_unit_test(test_resp_rejects_bad),
	    cmocka_unit_test(test_parse_synthetic),
	    cmocka_unit_test(test_parse_malformed),
	    cmocka_unit_test(test_parse_proc_self),
	    cmocka_unit_test(test_for_op),
	    cmocka_unit_test(test_enter_leave),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
