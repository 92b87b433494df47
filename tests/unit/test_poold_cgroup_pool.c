/* services/poold/cgroup_pool.h on this host's real cgroups, under a parent
 * "quiver-test-<pid>" of our own cgroup in every hierarchy.  The group
 * teardown removes that parent everywhere (killing anything left), so a
 * failed assertion leaves nothing behind.  Needs root; skips otherwise. */
#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h> /* struct clone_args, CLONE_INTO_CGROUP */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "guest/cgroups.h"
#include "libcommon/cleanup.h"
#include "services/poold/cgroup_pool.h"

static char parent[64];
static struct cgroup_pool *pool;
static struct cgroups *ref; /* the parent in every hierarchy, resolved here */
static pid_t kids[8];
static size_t n_kids;

#define OK(call)                                                                                   \
	do {                                                                                       \
		struct qerr ok_err_ = {0};                                                         \
		struct qerr *err = &ok_err_;                                                       \
		if ((call) < 0)                                                                    \
			fail_msg("%s: %s", #call, ok_err_.msg);                                    \
	} while (0)

/* ---- fixtures ---- */

static int setup(void **state)
{
	struct cgroups_host *host = NULL;
	struct qerr err = {0};

	(void)state;
	if (geteuid() != 0 || access("/sys/fs/cgroup", F_OK) < 0)
		return 0; /* every test skips */
	snprintf(parent, sizeof(parent), "quiver-test-%d", (int)getpid());
	if (cgroups_host_detect(&host, &err) < 0 ||
	    cgroups_resolve(host, parent, "x", false, &ref, &err) < 0) {
		fprintf(stderr, "setup: %s\n", err.msg);
		cgroups_host_free(host);
		return -1;
	}
	cgroups_host_free(host);
	if (cgroup_pool_open(parent, &pool, &err) < 0) {
		fprintf(stderr, "setup: %s\n", err.msg);
		(void)cgroups_remove(ref->dirs, ref->n, NULL);
		return -1;
	}
	return 0;
}

static int teardown(void **state)
{
	struct qerr err = {0};
	struct stat st;
	int bad = 0;

	(void)state;
	for (size_t i = 0; i < n_kids; i++) {
		kill(kids[i], SIGKILL);
		waitpid(kids[i], NULL, 0);
	}
	cgroup_pool_close(pool);
	if (!ref)
		return 0;
	if (cgroups_remove(ref->dirs, ref->n, &err) < 0) {
		fprintf(stderr, "teardown: %s\n", err.msg);
		bad = -1;
	}
	for (size_t i = 0; i < ref->n; i++)
		if (stat(ref->dirs[i], &st) == 0) {
			fprintf(stderr, "teardown: %s left behind\n", ref->dirs[i]);
			bad = -1;
		}
	cgroups_free(ref);
	return bad;
}

/* ---- helpers ---- */

static bool in_hier(size_t i, const char *name)
{
	char path[4200];
	struct stat st;

	snprintf(path, sizeof(path), "%s/%s", ref->dirs[i], name);
	return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static int hier_of(const char *ctrl)
{
	for (size_t i = 0; i < ref->n; i++)
		if (!ref->v2[i] && strcmp(ref->controllers[i], ctrl) == 0)
			return (int)i;
	return -1;
}

static int v2_hier(void)
{
	for (size_t i = 0; i < ref->n; i++)
		if (ref->v2[i])
			return (int)i;
	return -1;
}

/* Contents of dir/file without trailing newlines; "<absent>" if missing. */
static char *rd(const char *dir, const char *file, char *buf, size_t size)
{
	char path[4200];
	FILE *f;
	size_t n;

	snprintf(path, sizeof(path), "%s/%s", dir, file);
	f = fopen(path, "re");
	if (!f)
		return strcpy(buf, "<absent>");
	n = fread(buf, 1, size - 1, f);
	fclose(f);
	buf[n] = '\0';
	while (n && buf[n - 1] == '\n')
		buf[--n] = '\0';
	return buf;
}

static void wr(const char *dir, const char *file, const char *value)
{
	char path[4200];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", dir, file);
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		fail_msg("open %s: %s", path, strerror(errno));
	if (write(fd, value, strlen(value)) != (ssize_t)strlen(value))
		fail_msg("write \"%s\" to %s: %s", value, path, strerror(errno));
	close(fd);
}

static void track(pid_t pid)
{
	assert_true(pid > 0);
	assert_true(n_kids < ARRAY_SIZE(kids));
	kids[n_kids++] = pid;
}

static pid_t spawn(void)
{
	pid_t pid = fork();

	assert_true(pid >= 0);
	if (pid == 0)
		for (;;)
			pause();
	track(pid);
	return pid;
}

static void reap(pid_t pid)
{
	for (size_t i = 0; i < n_kids; i++)
		if (kids[i] == pid) {
			kids[i] = kids[--n_kids];
			break;
		}
	assert_int_equal(kill(pid, SIGKILL), 0);
	assert_int_equal(waitpid(pid, NULL, 0), pid);
}

/* Does pid's cgroup in the hierarchy with controllers ctrls ("" is the
 * unified one) end with suffix? */
static bool cgroup_line_ends(pid_t pid, const char *ctrls, const char *suffix)
{
	char path[64], line[1024];
	bool found = false;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/cgroup", (int)pid);
	f = fopen(path, "re");
	assert_non_null(f);
	while (fgets(line, sizeof(line), f)) {
		char *c = strchr(line, ':'), *p = c ? strchr(c + 1, ':') : NULL;
		size_t n, sl = strlen(suffix);

		if (!p || (size_t)(p - c - 1) != strlen(ctrls) ||
		    strncmp(c + 1, ctrls, strlen(ctrls)) != 0)
			continue;
		line[strcspn(line, "\n")] = '\0';
		n = strlen(p + 1);
		found = n >= sl && strcmp(p + 1 + n - sl, suffix) == 0;
	}
	fclose(f);
	return found;
}

static char *major_minor_of_a_disk(char *buf, size_t size)
{
	static const char *const disks[] = {"vda", "sda", "nvme0n1", "xvda"};

	for (size_t i = 0; i < ARRAY_SIZE(disks); i++) {
		char dir[64];

		snprintf(dir, sizeof(dir), "/sys/block/%s", disks[i]);
		if (strcmp(rd(dir, "dev", buf, size), "<absent>") != 0)
			return buf;
	}
	return NULL;
}

/* ---- tests ---- */

/* Files a sandbox's limits change; after give_back they must read as in a
 * group that was never used. */
static const struct {
	const char *ctrl; /* NULL: the v2 hierarchy */
	const char *file;
	bool must_change; /* the test sets it; false: only if the host allows */
} watched[] = {
    {"memory", "memory.limit_in_bytes", true},
    {"memory", "memory.memsw.limit_in_bytes", false}, /* needs swap accounting */
    {"memory", "memory.soft_limit_in_bytes", true},
    {"cpu", "cpu.shares", true},
    {"cpu", "cpu.cfs_quota_us", true},
    {"cpu", "cpu.cfs_period_us", true},
    {"cpuset", "cpuset.cpus", false}, /* "0" is all cpus on a 1-cpu host */
    {"cpuset", "cpuset.mems", false},
    {"pids", "pids.max", true},
    {"devices", "devices.list", true},
    {"freezer", "freezer.state", true},
    {"blkio", "blkio.throttle.read_bps_device", false}, /* needs a known disk */
    {NULL, "cgroup.freeze", true},
};

static const char *watched_dir(size_t w, char *const *dirs, char *buf, size_t size,
			       const char *name)
{
	int i = watched[w].ctrl ? hier_of(watched[w].ctrl) : v2_hier();

	if (i < 0)
		return NULL;
	if (name)
		snprintf(buf, size, "%s/%s", ref->dirs[i], name);
	else
		snprintf(buf, size, "%s", dirs[i]);
	return buf;
}

static void limit_everything(struct cgroups *cg)
{
	struct guest_resources res = {0};
	char mm[64], val[96];
	int b = hier_of("blkio"), f = hier_of("freezer"), v2 = v2_hier();

	res.has_memory_limit = true;
	res.memory_limit = 64 << 20;
	res.has_memory_swap = true;
	res.memory_swap = 128 << 20;
	res.has_memory_reservation = true;
	res.memory_reservation = 32 << 20;
	res.has_cpu_shares = true;
	res.cpu_shares = 512;
	res.has_cpu_period = true;
	res.cpu_period = 200000;
	res.has_cpu_quota = true;
	res.cpu_quota = 50000;
	res.has_pids_limit = true;
	res.pids_limit = 32;
	res.cpu_cpus = "0";
	OK(cgroups_apply(cg, &res, err)); /* and the default device list */
	if (b >= 0 && major_minor_of_a_disk(mm, sizeof(mm))) {
		snprintf(val, sizeof(val), "%s 1048576", mm);
		wr(cg->dirs[b], "blkio.throttle.read_bps_device", val);
	}
	/* Empty groups freeze at once. */
	if (f >= 0)
		wr(cg->dirs[f], "freezer.state", "FROZEN");
	if (v2 >= 0)
		wr(cg->dirs[v2], "cgroup.freeze", "1");
}

/* make, take, join, limit, give back (reset and renamed), destroy. */
static void test_lifecycle(void **state)
{
	char name[CGROUP_POOL_NAME_MAX], fresh[CGROUP_POOL_NAME_MAX], back[CGROUP_POOL_NAME_MAX];
	char id[64], expect[4200], a[4200], b[4200], va[4096], vb[4096];
	struct cgroups *cg = NULL;
	int cs = -1;
	pid_t child;

	(void)state;
	if (!pool)
		skip();
	OK(cgroup_pool_make(pool, name, sizeof(name), err));
	OK(cgroup_pool_make(pool, fresh, sizeof(fresh), err)); /* never used: the reference */
	assert_int_equal(strncmp(name, CGROUP_POOL_PREFIX, strlen(CGROUP_POOL_PREFIX)), 0);
	assert_string_not_equal(name, fresh);
	for (size_t i = 0; i < ref->n; i++)
		assert_true(in_hier(i, name));
	if ((cs = hier_of("cpuset")) >= 0) {
		snprintf(a, sizeof(a), "%s/%s", ref->dirs[cs], name);
		assert_string_not_equal(rd(a, "cpuset.cpus", va, sizeof(va)), "");
	}

	snprintf(id, sizeof(id), "life-%d", (int)getpid());
	OK(cgroup_pool_take(pool, name, id, &cg, err));
	assert_int_equal(cg->n, ref->n);
	for (size_t i = 0; i < ref->n; i++) {
		snprintf(expect, sizeof(expect), "%s/%s", ref->dirs[i], ref->v2[i] ? name : id);
		assert_string_equal(cg->dirs[i], expect);
		/* v2 keeps the pool name: no rename attempted there. */
		assert_true(in_hier(i, ref->v2[i] ? name : id));
		assert_false(in_hier(i, ref->v2[i] ? id : name));
	}

	child = spawn();
	OK(cgroups_join(cg, child, err));
	snprintf(expect, sizeof(expect), "/%s/%s", parent, id);
	assert_true(cgroup_line_ends(child, "memory", expect));
	snprintf(expect, sizeof(expect), "/%s/%s", parent, name);
	if (v2_hier() >= 0)
		assert_true(cgroup_line_ends(child, "", expect));
	reap(child);
	limit_everything(cg);

	for (size_t w = 0; w < ARRAY_SIZE(watched); w++) {
		if (!watched_dir(w, cg->dirs, a, sizeof(a), NULL) ||
		    !watched_dir(w, NULL, b, sizeof(b), fresh))
			continue;
		rd(a, watched[w].file, va, sizeof(va));
		rd(b, watched[w].file, vb, sizeof(vb));
		if (watched[w].must_change && strcmp(va, vb) == 0)
			fail_msg("%s: the test's limit did not take (%s)", watched[w].file, va);
	}

	OK(cgroup_pool_give_back(pool, cg->dirs, cg->n, back, sizeof(back), err));
	if (v2_hier() >= 0)
		assert_string_equal(back, name);
	for (size_t i = 0; i < ref->n; i++) {
		assert_true(in_hier(i, back));
		assert_false(in_hier(i, id));
	}
	for (size_t w = 0; w < ARRAY_SIZE(watched); w++) {
		if (!watched_dir(w, NULL, a, sizeof(a), back) ||
		    !watched_dir(w, NULL, b, sizeof(b), fresh))
			continue;
		if (strcmp(rd(a, watched[w].file, va, sizeof(va)),
			   rd(b, watched[w].file, vb, sizeof(vb))) != 0)
			fail_msg("%s: \"%s\" after give_back, \"%s\" in a new group",
				 watched[w].file, va, vb);
	}
	cgroups_free(cg);

	/* Reusable: a second sandbox can take it and run in it. */
	OK(cgroup_pool_take(pool, back, id, &cg, err));
	child = spawn();
	OK(cgroups_join(cg, child, err));
	reap(child);
	OK(cgroup_pool_give_back(pool, cg->dirs, cg->n, back, sizeof(back), err));
	cgroups_free(cg);

	OK(cgroup_pool_destroy(pool, back, err));
	OK(cgroup_pool_destroy(pool, fresh, err));
	for (size_t i = 0; i < ref->n; i++)
		assert_false(in_hier(i, back) || in_hier(i, fresh));
	OK(cgroup_pool_destroy(pool, back, err)); /* absent is fine */
}

static void test_take_errors(void **state)
{
	char name[CGROUP_POOL_NAME_MAX], half[CGROUP_POOL_NAME_MAX], id[64], path[4200];
	struct cgroups *cg = NULL;
	struct qerr e = {0};
	int v1 = -1;

	(void)state;
	if (!pool)
		skip();
	snprintf(id, sizeof(id), "taken-%d", (int)getpid());
	assert_int_equal(cgroup_pool_take(pool, "@pool-0000000000000000", id, &cg, &e), -ENOENT);
	assert_non_null(strstr(e.msg, "no such group"));
	assert_int_equal(cgroup_pool_take(pool, "nopool", id, &cg, &e), -EINVAL);

	OK(cgroup_pool_make(pool, name, sizeof(name), err));
	assert_int_equal(cgroup_pool_take(pool, name, "a/b", &cg, &e), -EINVAL);
	assert_int_equal(cgroup_pool_take(pool, name, "@pool-x", &cg, &e), -EINVAL);

	/* id already exists in one hierarchy (the last v1 one): nothing moves. */
	for (size_t i = 0; i < ref->n; i++)
		if (!ref->v2[i])
			v1 = (int)i;
	assert_true(v1 >= 0);
	snprintf(path, sizeof(path), "%s/%s", ref->dirs[v1], id);
	assert_int_equal(mkdir(path, 0755), 0);
	assert_int_equal(cgroup_pool_take(pool, name, id, &cg, &e), -EEXIST);
	assert_null(cg);
	for (size_t i = 0; i < ref->n; i++) {
		assert_true(in_hier(i, name));
		assert_int_equal(in_hier(i, id), (int)i == v1);
	}
	assert_non_null(strstr(e.msg, "already exists"));
	assert_int_equal(rmdir(path), 0);

	/* The group is missing in the last v1 hierarchy (a crashed make): the
	 * renames done before it are undone. */
	OK(cgroup_pool_make(pool, half, sizeof(half), err));
	snprintf(path, sizeof(path), "%s/%s", ref->dirs[v1], half);
	assert_int_equal(rmdir(path), 0);
	assert_int_equal(cgroup_pool_take(pool, half, id, &cg, &e), -ENOENT);
	assert_null(cg);
	for (size_t i = 0; i < ref->n; i++) {
		assert_int_equal(in_hier(i, half), (int)i != v1);
		assert_false(in_hier(i, id));
	}
	OK(cgroup_pool_destroy(pool, half, err));

	OK(cgroup_pool_take(pool, name, id, &cg, err));
	OK(cgroup_pool_give_back(pool, cg->dirs, cg->n, name, sizeof(name), err));
	cgroups_free(cg);
	OK(cgroup_pool_destroy(pool, name, err));
}

static void test_give_back_busy(void **state)
{
	char name[CGROUP_POOL_NAME_MAX], back[CGROUP_POOL_NAME_MAX], id[64], sub[4200];
	char *outside[CGROUPS_HIER_MAX];
	struct cgroups *cg = NULL;
	struct qerr e = {0};
	pid_t child;

	(void)state;
	if (!pool)
		skip();
	snprintf(id, sizeof(id), "busy-%d", (int)getpid());
	OK(cgroup_pool_make(pool, name, sizeof(name), err));
	OK(cgroup_pool_take(pool, name, id, &cg, err));

	child = spawn();
	OK(cgroups_join(cg, child, err));
	assert_int_equal(cgroup_pool_give_back(pool, cg->dirs, cg->n, back, sizeof(back), &e),
			 -EBUSY);
	assert_non_null(strstr(e.msg, "still has processes"));
	for (size_t i = 0; i < ref->n; i++)
		assert_true(in_hier(i, ref->v2[i] ? name : id));
	reap(child);

	snprintf(sub, sizeof(sub), "%s/sub", cg->dirs[0]);
	assert_int_equal(mkdir(sub, 0755), 0);
	assert_int_equal(cgroup_pool_give_back(pool, cg->dirs, cg->n, back, sizeof(back), &e),
			 -EBUSY);
	assert_int_equal(rmdir(sub), 0);

	/* Not the pool's: a hierarchy missing, or a directory elsewhere. */
	assert_int_equal(cgroup_pool_give_back(pool, cg->dirs, cg->n - 1, back, sizeof(back), &e),
			 -EINVAL);
	memcpy(outside, cg->dirs, sizeof(outside));
	outside[0] = "/tmp/x";
	assert_int_equal(cgroup_pool_give_back(pool, outside, cg->n, back, sizeof(back), &e),
			 -EINVAL);
	for (size_t i = 0; i < ref->n; i++)
		assert_true(in_hier(i, ref->v2[i] ? name : id));

	OK(cgroup_pool_give_back(pool, cg->dirs, cg->n, back, sizeof(back), err));
	cgroups_free(cg);
	OK(cgroup_pool_destroy(pool, back, err));
}

static int cmp_str(const void *x, const void *y)
{
	return strcmp(*(const char *const *)x, *(const char *const *)y);
}

static void test_list(void **state)
{
	char a[CGROUP_POOL_NAME_MAX], b[CGROUP_POOL_NAME_MAX], left[4200], other[4200];
	const char *want[3];
	char **names = NULL;
	size_t n = 0;

	(void)state;
	if (!pool)
		skip();
	OK(cgroup_pool_make(pool, a, sizeof(a), err));
	OK(cgroup_pool_make(pool, b, sizeof(b), err));
	/* What a crash in the middle of make leaves: one hierarchy only. */
	snprintf(left, sizeof(left), "%s/@pool-leftover", ref->dirs[ref->n - 1]);
	snprintf(other, sizeof(other), "%s/other", ref->dirs[0]);
	assert_int_equal(mkdir(left, 0755), 0);
	assert_int_equal(mkdir(other, 0755), 0);

	OK(cgroup_pool_list(pool, &names, &n, err));
	want[0] = "@pool-leftover";
	want[1] = a;
	want[2] = b;
	qsort(want, ARRAY_SIZE(want), sizeof(want[0]), cmp_str);
	assert_int_equal(n, 3);
	for (size_t i = 0; i < n; i++)
		assert_string_equal(names[i], want[i]);
	cgroup_pool_names_free(names, n);

	OK(cgroup_pool_destroy(pool, "@pool-leftover", err));
	OK(cgroup_pool_destroy(pool, a, err));
	OK(cgroup_pool_destroy(pool, b, err));
	assert_int_equal(rmdir(other), 0);
	OK(cgroup_pool_list(pool, &names, &n, err));
	assert_int_equal(n, 0);
	cgroup_pool_names_free(names, n);
}

/* The dirs of a ready group, and removal through them with a process in it
 * (what poold does with a warm guest's group). */
static void test_dirs(void **state)
{
	char name[CGROUP_POOL_NAME_MAX], expect[4200];
	struct cgroups *cg = NULL;
	struct qerr e = {0};
	pid_t child;
	int status;

	(void)state;
	if (!pool)
		skip();
	assert_int_equal(cgroup_pool_dirs(pool, "../x", &cg, &e), -EINVAL);
	OK(cgroup_pool_make(pool, name, sizeof(name), err));
	OK(cgroup_pool_dirs(pool, name, &cg, err));
	assert_int_equal(cg->n, ref->n);
	for (size_t i = 0; i < ref->n; i++) {
		snprintf(expect, sizeof(expect), "%s/%s", ref->dirs[i], name);
		assert_string_equal(cg->dirs[i], expect);
		assert_int_equal(cg->v2[i], ref->v2[i]);
	}
	child = spawn();
	OK(cgroups_join(cg, child, err));
	assert_int_equal(cgroup_pool_destroy(pool, name, &e), -EBUSY);
	OK(cgroups_remove(cg->dirs, cg->n, err));
	for (size_t k = 0; k < n_kids; k++)
		if (kids[k] == child)
			kids[k] = kids[--n_kids];
	assert_int_equal(waitpid(child, &status, 0), child);
	assert_true(WIFSIGNALED(status));
	for (size_t i = 0; i < ref->n; i++)
		assert_false(in_hier(i, name));
	cgroups_free(cg);
}

static pid_t clone_into(int cgroup_fd)
{
	struct clone_args args = {
	    .flags = CLONE_INTO_CGROUP,
	    .exit_signal = SIGCHLD,
	    .cgroup = (uint64_t)cgroup_fd,
	};
	long pid = syscall(SYS_clone3, &args, sizeof(args));

	if (pid == 0)
		for (;;)
			pause();
	return (pid_t)pid;
}

static void test_v2_clone_into_cgroup(void **state)
{
	char name[CGROUP_POOL_NAME_MAX], id[64], expect[256];
	struct cgroups *cg = NULL;
	struct qerr e = {0};
	int fd;
	pid_t child;

	(void)state;
	if (!pool)
		skip();
	if (!cgroup_pool_has_v2(pool)) {
		print_message("no cgroup v2 hierarchy on this host: skipped\n");
		skip();
	}
	OK(cgroup_pool_make(pool, name, sizeof(name), err));
	fd = cgroup_pool_v2_dirfd(pool, name, &e);
	if (fd < 0)
		fail_msg("%s", e.msg);
	child = clone_into(fd);
	close(fd);
	if (child < 0)
		fail_msg("clone3(CLONE_INTO_CGROUP): %s", strerror(errno));
	track(child);
	snprintf(expect, sizeof(expect), "/%s/%s", parent, name);
	assert_true(cgroup_line_ends(child, "", expect));

	/* Taken, the v2 directory keeps its name and still opens. */
	snprintf(id, sizeof(id), "clone-%d", (int)getpid());
	OK(cgroup_pool_take(pool, name, id, &cg, err));
	fd = cgroup_pool_v2_dirfd(pool, name, &e);
	assert_true(fd >= 0);
	close(fd);
	assert_true(cgroup_line_ends(child, "", expect));
	assert_int_equal(cgroup_pool_v2_dirfd(pool, "@pool-missing", &e), -ENOENT);
	reap(child);

	OK(cgroup_pool_give_back(pool, cg->dirs, cg->n, name, sizeof(name), err));
	cgroups_free(cg);
	OK(cgroup_pool_destroy(pool, name, err));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_lifecycle),	   cmocka_unit_test(test_take_errors),
	    cmocka_unit_test(test_give_back_busy), cmocka_unit_test(test_list),
	    cmocka_unit_test(test_dirs),	   cmocka_unit_test(test_v2_clone_into_cgroup),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
