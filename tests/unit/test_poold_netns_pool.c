/* netns_pool.h: made namespaces are new, distinct and have lo up; destroy
 * leaves no mount and no file (here, nor in a copy another mount namespace
 * took); list finds what a crash left behind; and what a make and a destroy
 * cost, against the two other ways of making one.  Needs root (skipped
 * otherwise). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <net/if.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "libcommon/cleanup.h"
#include "services/poold/netns_pool.h"

#define ROUNDS 50

static char tmp[128];
static char pooldir[192];
static struct netns_pool *pool;
static const char *skip_why;

/* Exit codes of the child that joins a pooled netns. */
enum {
	J_OK,
	J_OPEN,
	J_SETNS,
	J_SAME_NS,
	J_NOT_THAT_NS,
	J_SOCKET,
	J_LO_DOWN,
};

static ino_t ino_of(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 ? st.st_ino : 0;
}

/* 1 up, 0 down, -1 no socket; in the caller's netns. */
static int lo_is_up(void)
{
	cleanup_close int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	struct ifreq ifr = {0};

	if (fd < 0)
		return -1;
	strcpy(ifr.ifr_name, "lo");
	if (ioctl(fd, SIOCGIFFLAGS, &ifr) < 0)
		return -1;
	return (ifr.ifr_flags & IFF_UP) != 0;
}

static int wait_exit(pid_t pid)
{
	int st;

	if (waitpid(pid, &st, 0) != pid)
		return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* Join path's netns in a child, as the launcher will, and check it. */
static int join_and_check(const char *path)
{
	ino_t ours = ino_of("/proc/self/ns/net");
	pid_t pid = fork();

	if (pid == 0) {
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			_exit(J_OPEN);
		if (setns(fd, CLONE_NEWNET) < 0)
			_exit(J_SETNS);
		if (ino_of("/proc/self/ns/net") == ours)
			_exit(J_SAME_NS);
		if (ino_of("/proc/self/ns/net") != ino_of(path))
			_exit(J_NOT_THAT_NS);
		int up = lo_is_up();
		_exit(up < 0 ? J_SOCKET : up ? J_OK : J_LO_DOWN);
	}
	return pid < 0 ? -1 : wait_exit(pid);
}

/* Is path a mount point in pid's mount namespace (0: ours)? */
static bool mounted_in(pid_t pid, const char *path)
{
	char mi[64], *line = NULL;
	size_t cap = 0;
	bool found = false;

	if (pid)
		snprintf(mi, sizeof(mi), "/proc/%d/mountinfo", (int)pid);
	else
		snprintf(mi, sizeof(mi), "/proc/self/mountinfo");
	cleanup_fclose FILE *f = fopen(mi, "re");
	assert_non_null(f);
	while (!found && getline(&line, &cap, f) > 0) {
		char target[PATH_MAX];
		/* id parent major:minor root mountpoint ... */
		if (sscanf(line, "%*s %*s %*s %*s %4095s", target) == 1)
			found = strcmp(target, path) == 0;
	}
	free(line);
	return found;
}

/* Any mount left under our temporary directory? */
static bool leftover_mounts(void)
{
	cleanup_fclose FILE *f = fopen("/proc/self/mountinfo", "re");
	char *line = NULL;
	size_t cap = 0;
	bool found = false;

	while (f && getline(&line, &cap, f) > 0)
		if (strstr(line, tmp))
			found = true;
	free(line);
	return found;
}

static bool can_unshare_net(void)
{
	pid_t pid = fork();

	if (pid == 0)
		_exit(unshare(CLONE_NEWNET) == 0 ? 0 : 1);
	return pid > 0 && wait_exit(pid) == 0;
}

static int group_setup(void **state)
{
	(void)state;
	if (geteuid() != 0) {
		skip_why = "needs root (CAP_SYS_ADMIN for CLONE_NEWNET and mount)";
		return 0;
	}
	if (access("/proc/self/ns/net", F_OK) < 0 || !can_unshare_net()) {
		skip_why = "cannot create network namespaces here";
		return 0;
	}
	snprintf(tmp, sizeof(tmp), "/tmp/quiver-test-netns-%d-XXXXXX", (int)getpid());
	if (!mkdtemp(tmp))
		return -1;
	snprintf(pooldir, sizeof(pooldir), "%s/netns", tmp);
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	char cmd[sizeof(tmp) + 16];

	if (!tmp[0])
		return 0;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmp);
	return system(cmd) == 0 ? 0 : -1;
}

static int setup(void **state)
{
	(void)state;
	struct qerr err = {0};

	if (skip_why)
		return 0;
	if (netns_pool_open(pooldir, &pool, &err) < 0) {
		print_error("netns_pool_open: %s\n", err.msg);
		return -1;
	}
	return 0;
}

/* Destroy whatever a test left (a failed one too) and check nothing is
 * still mounted. */
static int teardown(void **state)
{
	(void)state;
	struct qerr err = {0};
	char **names;
	size_t n;
	int r = 0;

	if (!pool)
		return 0;
	if (netns_pool_list(pool, &names, &n, &err) < 0)
		return -1;
	for (size_t i = 0; i < n; i++)
		if (netns_pool_destroy(pool, names[i], &err) < 0)
			r = -1;
	netns_pool_names_free(names, n);
	netns_pool_close(pool);
	pool = NULL;
	if (leftover_mounts()) {
		print_error("mounts left under %s\n", tmp);
		r = -1;
	}
	return r;
}

#define SKIP_UNLESS_ABLE()                                                                         \
	do {                                                                                       \
		if (skip_why) {                                                                    \
			print_message("skipped: %s\n", skip_why);                                  \
			skip();                                                                    \
		}                                                                                  \
	} while (0)

static void make_one(char *name, char *path)
{
	struct qerr err = {0};
	int r = netns_pool_make(pool, name, NETNS_POOL_NAME_MAX, path, PATH_MAX, &err);

	if (r < 0)
		fail_msg("netns_pool_make: %s", err.msg);
}

static void test_open_checks_dir(void **state)
{
	(void)state;
	SKIP_UNLESS_ABLE();
	struct qerr err = {0};
	struct netns_pool *p = NULL;
	char path[PATH_MAX];
	struct stat st;

	assert_int_equal(stat(pooldir, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0700);
	assert_string_equal(netns_pool_dir(pool), pooldir);
	/* An existing, proper directory is fine. */
	assert_int_equal(netns_pool_open(pooldir, &p, &err), 0);
	netns_pool_close(p);

	snprintf(path, sizeof(path), "%s/open", tmp);
	assert_int_equal(mkdir(path, 0700), 0);
	assert_int_equal(chmod(path, 0777), 0);
	assert_int_equal(netns_pool_open(path, &p, &err), -EPERM);
	assert_null(p);
	assert_non_null(strstr(err.msg, "writable by others"));
	assert_int_equal(rmdir(path), 0);

	snprintf(path, sizeof(path), "%s/file", tmp);
	close(open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0600));
	assert_int_equal(netns_pool_open(path, &p, &err), -ENOTDIR);
	assert_int_equal(unlink(path), 0);

	snprintf(path, sizeof(path), "%s/missing/netns", tmp);
	assert_int_equal(netns_pool_open(path, &p, &err), -ENOENT);
}

static void test_make_and_join(void **state)
{
	(void)state;
	SKIP_UNLESS_ABLE();
	char name[3][NETNS_POOL_NAME_MAX], path[3][PATH_MAX], want[PATH_MAX];
	struct qerr err = {0};

	/* The check below can fail: lo starts down in a fresh netns. */
	pid_t pid = fork();
	if (pid == 0)
		_exit(unshare(CLONE_NEWNET) < 0 ? 2 : lo_is_up() == 0 ? 0 : 1);
	assert_int_equal(wait_exit(pid), 0);

	for (int i = 0; i < 3; i++) {
		make_one(name[i], path[i]);
		assert_int_equal(strncmp(name[i], NETNS_POOL_PREFIX, strlen(NETNS_POOL_PREFIX)), 0);
		snprintf(want, sizeof(want), "%s/%s", pooldir, name[i]);
		assert_string_equal(path[i], want);
		assert_true(mounted_in(0, path[i]));
		assert_int_equal(netns_pool_is_live(path[i], &err), 1);
		assert_int_equal(join_and_check(path[i]), J_OK);
	}
	/* Three namespaces, not one thrice. */
	assert_true(ino_of(path[0]) != ino_of(path[1]));
	assert_true(ino_of(path[1]) != ino_of(path[2]));
	assert_true(ino_of(path[0]) != ino_of(path[2]));
	/* Making them moved nothing of ours. */
	assert_int_equal(lo_is_up(), 1);
}

static void test_destroy(void **state)
{
	(void)state;
	SKIP_UNLESS_ABLE();
	static const char *bad[] = {"", "x", "@pool-", "@pool-a/../../x", "../@pool-a", "@pool"};
	char name[NETNS_POOL_NAME_MAX], path[PATH_MAX];
	struct qerr err = {0};

	make_one(name, path);
	assert_int_equal(netns_pool_destroy(pool, name, &err), 0);
	assert_false(mounted_in(0, path));
	assert_int_equal(access(path, F_OK), -1);
	assert_int_equal(errno, ENOENT);
	assert_int_equal(netns_pool_is_live(path, &err), -ENOENT);
	/* Idempotent, and a name never made is absent too. */
	assert_int_equal(netns_pool_destroy(pool, name, &err), 0);
	assert_int_equal(netns_pool_destroy(pool, "@pool-neverwas", &err), 0);

	for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
		assert_int_equal(netns_pool_destroy(pool, bad[i], &err), -EINVAL);

	/* Two mounts stacked on one file (a retried bind) both go. */
	make_one(name, path);
	assert_int_equal(mount(path, path, NULL, MS_BIND, NULL), 0);
	assert_int_equal(netns_pool_destroy(pool, name, &err), 0);
	assert_false(mounted_in(0, path));
	assert_int_equal(access(path, F_OK), -1);
}

/* A new mount namespace copies the pool's mounts (a sandbox's does until
 * pivot_root drops the old root); umount here leaves that copy, which
 * would keep the netns alive, and destroy's unlink removes it. */
static void test_destroy_detaches_copies(void **state)
{
	(void)state;
	SKIP_UNLESS_ABLE();
	char name[NETNS_POOL_NAME_MAX], path[PATH_MAX], c;
	struct qerr err = {0};
	int ready[2], hold[2];

	make_one(name, path);
	assert_int_equal(pipe2(ready, O_CLOEXEC), 0);
	assert_int_equal(pipe2(hold, O_CLOEXEC), 0);
	pid_t pid = fork();
	if (pid == 0) {
		if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL))
			_exit(1);
		close(hold[1]);
		(void)!write(ready[1], "r", 1);
		(void)!read(hold[0], &c, 1); /* until the parent closes hold[1] */
		_exit(0);
	}
	close(ready[1]);
	close(hold[0]);
	assert_int_equal(read(ready[0], &c, 1), 1);
	close(ready[0]);
	assert_true(mounted_in(pid, path));

	assert_int_equal(umount2(path, MNT_DETACH), 0);
	assert_false(mounted_in(0, path));
	assert_true(mounted_in(pid, path));

	assert_int_equal(netns_pool_destroy(pool, name, &err), 0);
	assert_false(mounted_in(pid, path));
	close(hold[1]);
	assert_int_equal(wait_exit(pid), 0);
}

static bool has_name(char **names, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(names[i], name) == 0)
			return true;
	return false;
}

static void test_list_after_crash(void **state)
{
	(void)state;
	SKIP_UNLESS_ABLE();
	char live[NETNS_POOL_NAME_MAX], path[PATH_MAX], other[PATH_MAX];
	struct qerr err = {0};
	char **names;
	size_t n;

	/* A crash loses poold's memory: forget the pool, open it again. */
	make_one(live, path);
	netns_pool_close(pool);
	assert_int_equal(netns_pool_open(pooldir, &pool, &err), 0);
	/* A file whose mount never happened, a symlink to a live netns (not
	 * ours to trust), a namespace of another type, and a file that is not
	 * the pool's. */
	snprintf(other, sizeof(other), "%s/@pool-orphan", pooldir);
	close(open(other, O_CREAT | O_WRONLY | O_CLOEXEC, 0600));
	assert_int_equal(netns_pool_is_live(other, &err), 0);
	snprintf(other, sizeof(other), "%s/@pool-link", pooldir);
	assert_int_equal(symlink("/proc/self/ns/net", other), 0);
	assert_int_equal(netns_pool_is_live(other, &err), 0);
	snprintf(other, sizeof(other), "%s/@pool-uts", pooldir);
	close(open(other, O_CREAT | O_WRONLY | O_CLOEXEC, 0600));
	assert_int_equal(mount("/proc/self/ns/uts", other, NULL, MS_BIND, NULL), 0);
	assert_int_equal(netns_pool_is_live(other, &err), 0);
	snprintf(other, sizeof(other), "%s/unrelated", pooldir);
	close(open(other, O_CREAT | O_WRONLY | O_CLOEXEC, 0600));

	assert_int_equal(netns_pool_list(pool, &names, &n, &err), 0);
	assert_int_equal(n, 4);
	assert_true(has_name(names, n, live));
	assert_true(has_name(names, n, "@pool-uts"));
	assert_true(has_name(names, n, "@pool-orphan"));
	assert_true(has_name(names, n, "@pool-link"));
	assert_int_equal(netns_pool_is_live(path, &err), 1);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(netns_pool_destroy(pool, names[i], &err), 0);
	netns_pool_names_free(names, n);

	assert_int_equal(netns_pool_list(pool, &names, &n, &err), 0);
	assert_int_equal(n, 0);
	netns_pool_names_free(names, n);
	assert_false(mounted_in(0, path));
	/* Not ours: left alone. */
	assert_int_equal(access(other, F_OK), 0);
	assert_int_equal(unlink(other), 0);
}

static void test_make_refuses_short_buffers(void **state)
{
	(void)state;
	SKIP_UNLESS_ABLE();
	char name[NETNS_POOL_NAME_MAX], path[PATH_MAX];
	struct qerr err = {0};
	char **names;
	size_t n;

	assert_int_equal(netns_pool_make(pool, name, 8, path, sizeof(path), &err), -ENOBUFS);
	assert_int_equal(netns_pool_make(pool, name, sizeof(name), path, strlen(pooldir) + 8, &err),
			 -ENAMETOOLONG);
	assert_int_equal(netns_pool_list(pool, &names, &n, &err), 0);
	assert_int_equal(n, 0);
	netns_pool_names_free(names, n);
}

/* --- What a make costs, three ways (printed, never asserted) --- */

static double now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static double median(double *v, size_t n)
{
	qsort(v, n, sizeof(*v), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static void bring_lo_up(void)
{
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	struct ifreq ifr = {0};

	strcpy(ifr.ifr_name, "lo");
	if (fd < 0 || ioctl(fd, SIOCGIFFLAGS, &ifr) < 0)
		abort();
	ifr.ifr_flags |= IFF_UP;
	if (ioctl(fd, SIOCSIFFLAGS, &ifr) < 0)
		abort();
	close(fd);
}

static void bench_file(const char *how, int i, char *name, char *path)
{
	snprintf(name, NETNS_POOL_NAME_MAX, "@pool-%s-%d", how, i);
	snprintf(path, PATH_MAX, "%s/%s", pooldir, name);
	close(open(path, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600));
}

/* The alternative with a whole process: fork, unshare, mount, exit. */
static void make_by_fork(const char *path)
{
	pid_t pid = fork();

	if (pid == 0) {
		if (unshare(CLONE_NEWNET) < 0)
			_exit(1);
		bring_lo_up();
		_exit(mount("/proc/self/ns/net", path, NULL, MS_BIND, NULL) < 0 ? 2 : 0);
	}
	assert_int_equal(wait_exit(pid), 0);
}

/* The alternative in the calling thread: unshare, mount, setns back. */
static void make_in_thread(const char *path, int home)
{
	assert_int_equal(unshare(CLONE_NEWNET), 0);
	bring_lo_up();
	assert_int_equal(mount("/proc/thread-self/ns/net", path, NULL, MS_BIND, NULL), 0);
	if (setns(home, CLONE_NEWNET) < 0)
		abort(); /* the rest of the run would be in the wrong netns */
}

static void test_timing(void **state)
{
	(void)state;
	SKIP_UNLESS_ABLE();
	double t_clone[ROUNDS], t_fork[ROUNDS], t_thread[ROUNDS], t_destroy[ROUNDS];
	char name[NETNS_POOL_NAME_MAX], path[PATH_MAX];
	struct qerr err = {0};
	cleanup_close int home = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
	double t;

	assert_true(home >= 0);
	/* Each way's time includes creating the file to mount on.
	 * Interleaved, so that the kernel's asynchronous cleanup of destroyed
	 * namespaces weighs on each way alike. */
	for (int i = 0; i < ROUNDS; i++) {
		t = now_us();
		make_one(name, path);
		t_clone[i] = now_us() - t;
		t = now_us();
		assert_int_equal(netns_pool_destroy(pool, name, &err), 0);
		t_destroy[i] = now_us() - t;

		t = now_us();
		bench_file("fork", i, name, path);
		make_by_fork(path);
		t_fork[i] = now_us() - t;
		assert_int_equal(netns_pool_is_live(path, &err), 1);
		assert_int_equal(netns_pool_destroy(pool, name, &err), 0);

		t = now_us();
		bench_file("thread", i, name, path);
		make_in_thread(path, home);
		t_thread[i] = now_us() - t;
		assert_int_equal(netns_pool_is_live(path, &err), 1);
		assert_int_equal(netns_pool_destroy(pool, name, &err), 0);
	}
	print_message("netns make, median of %d (us):\n", ROUNDS);
	print_message("  %8.1f  clone(NEWNET|VM|VFORK) child (netns_pool_make)\n",
		      median(t_clone, ROUNDS));
	print_message("  %8.1f  fork + unshare child\n", median(t_fork, ROUNDS));
	print_message("  %8.1f  unshare + setns back in the calling thread\n",
		      median(t_thread, ROUNDS));
	print_message("netns destroy (umount MNT_DETACH + unlink), median: %.1f us\n",
		      median(t_destroy, ROUNDS));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_open_checks_dir, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_make_and_join, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_destroy, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_destroy_detaches_copies, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_list_after_crash, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_make_refuses_short_buffers, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_timing, setup, teardown),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
