/* services/poold/layer_pool.h on this machine: a real XFS store on a loop
 * device (skipped without mkfs.xfs or loop devices), layers cloned from the
 * template, an overlay over one, hostile content on destroy, restarts after
 * a crash and after kill -9, a stale loop device, the tmpfs fallback, and
 * the time it takes to make a layer.  Every test leaves no mount and no
 * loop device behind; the teardown checks. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <linux/fiemap.h>
#include <linux/fs.h>
#include <linux/loop.h>

#include <cmocka.h>

#include "libcommon/cleanup.h"
#include "libcommon/log.h"
#include "services/poold/layer_pool.h"

#define MIB	     (1024 * 1024)
#define BIG_BYTES    MIB
#define MEASURE_RUNS 50
#define DEEP_LEVELS  300
#define KILL_ROUNDS  6

static char base[] = "/tmp/quiver-test-layers-XXXXXX";
static int seq;

struct fixture {
	/* Short, so that paths made from them need no truncation checks. */
	char state[256];
	char src[256];
	char scratch[256]; /* lower dirs, mount targets, "outside" */
	struct layer_pool *pool;
};

/* ---- files ---- */

static void put(const char *path, const void *data, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, len), (ssize_t)len);
	assert_int_equal(close(fd), 0);
}

static void put_str(const char *path, const char *text)
{
	put(path, text, strlen(text));
}

/* Contents of path, NUL-terminated, in a static buffer; NULL if absent. */
static const char *get(const char *path)
{
	static char buf[4096];
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return NULL;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	buf[n < 0 ? 0 : n] = '\0';
	return buf;
}

static bool same_contents(const char *a, const char *b)
{
	static char x[65536], y[65536];
	FILE *fa = fopen(a, "re"), *fb = fopen(b, "re");
	bool same = fa && fb;
	size_t na, nb;

	while (same) {
		na = fread(x, 1, sizeof(x), fa);
		nb = fread(y, 1, sizeof(y), fb);
		same = na == nb && memcmp(x, y, na) == 0;
		if (na == 0)
			break;
	}
	if (fa)
		fclose(fa);
	if (fb)
		fclose(fb);
	return same;
}

static bool exists(const char *path)
{
	struct stat st;

	return lstat(path, &st) == 0;
}

static mode_t mode_of(const char *path)
{
	struct stat st;

	assert_int_equal(lstat(path, &st), 0);
	return st.st_mode;
}

/* The template source: a 1 MiB file, a nested file, a symlink, and an etc/
 * file that merges into the template's default etc/. */
static void make_template_src(const char *dir)
{
	char path[PATH_MAX + 32];
	char *big = malloc(BIG_BYTES);
	uint32_t x = 2463534242u;

	assert_non_null(big);
	/* xorshift: incompressible, so a copy cannot hide as a small one */
	for (size_t i = 0; i < BIG_BYTES; i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		big[i] = (char)x;
	}
	assert_int_equal(mkdir(dir, 0755), 0);
	snprintf(path, sizeof(path), "%s/big.bin", dir);
	put(path, big, BIG_BYTES);
	free(big);
	snprintf(path, sizeof(path), "%s/sub", dir);
	assert_int_equal(mkdir(path, 0750), 0);
	snprintf(path, sizeof(path), "%s/sub/nested.txt", dir);
	put_str(path, "nested\n");
	snprintf(path, sizeof(path), "%s/link", dir);
	assert_int_equal(symlink("sub/nested.txt", path), 0);
	snprintf(path, sizeof(path), "%s/etc", dir);
	assert_int_equal(mkdir(path, 0755), 0);
	snprintf(path, sizeof(path), "%s/etc/hostname", dir);
	put_str(path, "template\n");
}

/* ---- mounts and loop devices ---- */

struct mount_seen {
	int id;
	char fstype[64];
	char source[PATH_MAX];
	char superopts[512];
};

/* How many mounts have their mount point at path (or under it, if prefix);
 * the last one is described in last. */
static int mounts_at(const char *path, bool prefix, struct mount_seen *last)
{
	cleanup_fclose FILE *f = fopen("/proc/self/mountinfo", "re");
	char line[8192], mp[PATH_MAX];
	size_t plen = strlen(path);
	int id, n = 0;

	assert_non_null(f);
	while (fgets(line, sizeof(line), f)) {
		char *sep = strstr(line, " - ");

		if (!sep || sscanf(line, "%d %*d %*s %*s %4095s", &id, mp) != 2)
			continue;
		if (prefix ? strncmp(mp, path, plen) != 0 : strcmp(mp, path) != 0)
			continue;
		n++;
		if (last) {
			last->id = id;
			sscanf(sep + 3, "%63s %4095s %511s", last->fstype, last->source,
			       last->superopts);
		}
	}
	return n;
}

/* The number of each loop device whose backing file starts with path (or is
 * path), up to max; returns how many. */
static int loops_on(const char *path, bool prefix, int *nums, int max)
{
	cleanup_dir DIR *d = opendir("/sys/block");
	char file[300], backing[PATH_MAX];
	struct dirent *e;
	int n, found = 0;

	assert_non_null(d);
	while ((e = readdir(d))) {
		cleanup_fclose FILE *f = NULL;

		if (sscanf(e->d_name, "loop%d", &n) != 1)
			continue;
		snprintf(file, sizeof(file), "/sys/block/%s/loop/backing_file", e->d_name);
		f = fopen(file, "re");
		if (!f || !fgets(backing, sizeof(backing), f))
			continue;
		backing[strcspn(backing, "\n")] = '\0';
		if (prefix ? strncmp(backing, path, strlen(path)) != 0 : strcmp(backing, path) != 0)
			continue;
		if (found < max)
			nums[found] = n;
		found++;
	}
	return found;
}

static int loop_of(const char *image)
{
	int n = -1;

	return loops_on(image, false, &n, 1) == 1 ? n : -1;
}

/* Loop devices with autoclear go when their filesystem's last user does,
 * which an exited child's mount namespace may delay a little. */
static bool loops_gone(const char *path, bool prefix)
{
	int n;

	for (int i = 0; i < 200; i++) {
		if (loops_on(path, prefix, &n, 1) == 0)
			return true;
		usleep(10000);
	}
	return false;
}

static int loop_flag(int n, const char *attr)
{
	char path[128];
	const char *v;

	snprintf(path, sizeof(path), "/sys/block/loop%d/loop/%s", n, attr);
	v = get(path);
	return v ? atoi(v) : -1;
}

/* ---- fixture ---- */

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (!f)
		return -1;
	seq++;
	snprintf(f->state, sizeof(f->state), "%s/state%d", base, seq);
	snprintf(f->src, sizeof(f->src), "%s/src%d", base, seq);
	snprintf(f->scratch, sizeof(f->scratch), "%s/scratch%d", base, seq);
	*state = f;
	if (mkdir(f->scratch, 0755) < 0)
		return -1;
	return 0;
}

/* Leftovers under base are removed, and make the teardown fail. */
static int clean_leftovers(void)
{
	char line[8192], mp[PATH_MAX];
	int loops[16], n, bad = 0;

	for (int pass = 0; pass < 16 && mounts_at(base, true, NULL) > 0; pass++) {
		cleanup_fclose FILE *f = fopen("/proc/self/mountinfo", "re");

		while (f && fgets(line, sizeof(line), f)) {
			if (sscanf(line, "%*d %*d %*s %*s %4095s", mp) != 1 ||
			    strncmp(mp, base, strlen(base)) != 0)
				continue;
			fprintf(stderr, "leftover mount %s\n", mp);
			umount2(mp, MNT_DETACH);
			bad++;
		}
	}
	if (loops_gone(base, true))
		return bad;
	n = loops_on(base, true, loops, (int)ARRAY_SIZE(loops));
	for (int i = 0; i < n && i < (int)ARRAY_SIZE(loops); i++) {
		char dev[32];
		int fd;

		snprintf(dev, sizeof(dev), "/dev/loop%d", loops[i]);
		fprintf(stderr, "leftover loop device %s\n", dev);
		fd = open(dev, O_RDWR | O_CLOEXEC);
		if (fd >= 0) {
			ioctl(fd, LOOP_CLR_FD, 0);
			close(fd);
		}
		bad++;
	}
	return bad;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	struct qerr err = {0};
	char cmd[PATH_MAX * 3 + 32];
	int bad = 0;

	if (f->pool) {
		if (layer_pool_close_store(f->pool, &err) < 0) {
			fprintf(stderr, "close_store: %s\n", err.msg);
			bad++;
		}
		layer_pool_close(f->pool);
	}
	bad += clean_leftovers();
	snprintf(cmd, sizeof(cmd), "rm -rf '%s' '%s' '%s'", f->state, f->src, f->scratch);
	if (system(cmd) != 0)
		bad++;
	free(f);
	return bad ? -1 : 0;
}

/* ---- opening ---- */

static bool xfs_possible(void)
{
	return (access("/usr/sbin/mkfs.xfs", X_OK) == 0 || access("/sbin/mkfs.xfs", X_OK) == 0) &&
	       access("/dev/loop-control", F_OK) == 0;
}

static int open_pool(struct fixture *f, bool force_tmpfs, const char *src, const char *mkfs)
{
	struct layer_pool_config c = {
	    .state_dir = f->state,
	    .image_bytes = 512ull * MIB,
	    .force_tmpfs = force_tmpfs,
	    .template_src = src,
	    .mkfs_xfs = mkfs,
	};
	struct qerr err = {0};
	int r = layer_pool_open(&c, &f->pool, &err);

	if (r < 0)
		print_error("layer_pool_open: %s\n", err.msg);
	return r;
}

/* Open an XFS store with the template source, or skip the test. */
static void open_xfs_or_skip(struct fixture *f)
{
	if (geteuid() != 0 || !xfs_possible()) {
		print_message("skipped: needs root, mkfs.xfs and /dev/loop-control\n");
		skip();
	}
	make_template_src(f->src);
	assert_int_equal(open_pool(f, false, f->src, NULL), 0);
	if (strcmp(layer_pool_backend(f->pool), "xfs-reflink") != 0) {
		print_message("skipped: the kernel refused XFS or loop devices (backend %s)\n",
			      layer_pool_backend(f->pool));
		skip();
	}
}

static void need_root(void)
{
	if (geteuid() != 0) {
		print_message("skipped: needs root to mount\n");
		skip();
	}
}

static void path_in(char *buf, size_t len, const char *dir, const char *rel)
{
	assert_true(snprintf(buf, len, "%s/%s", dir, rel) < (int)len);
}

static void make_layer(struct fixture *f, char *name)
{
	struct qerr err = {0};
	int r = layer_pool_make(f->pool, name, LAYER_POOL_NAME_MAX, &err);

	if (r < 0)
		print_error("layer_pool_make: %s\n", err.msg);
	assert_int_equal(r, 0);
}

static size_t list_count(struct fixture *f, const char *must_prefix)
{
	struct qerr err = {0};
	char **names;
	size_t n;

	assert_int_equal(layer_pool_list(f->pool, &names, &n, &err), 0);
	for (size_t i = 0; must_prefix && i < n; i++)
		assert_true(strncmp(names[i], must_prefix, strlen(must_prefix)) == 0);
	layer_pool_list_free(names, n);
	return n;
}

/* ---- the store ---- */

static void test_xfs_store(void **state)
{
	struct fixture *f = *state;
	const char *root;
	struct mount_seen m;
	char path[PATH_MAX + 64], image[PATH_MAX + 16];
	int loop;

	/* What a poold killed during mkfs leaves: redone, not used. */
	assert_int_equal(mkdir(f->state, 0700), 0);
	snprintf(image, sizeof(image), "%s/layers.img.tmp", f->state);
	put_str(image, "half an image");
	open_xfs_or_skip(f);
	root = layer_pool_root(f->pool);
	assert_int_equal(mounts_at(root, false, &m), 1);
	assert_string_equal(m.fstype, "xfs");
	snprintf(image, sizeof(image), "%s/layers.img", f->state);
	loop = loop_of(image);
	assert_true(loop >= 0);
	snprintf(path, sizeof(path), "/dev/loop%d", loop);
	assert_string_equal(m.source, path);
	assert_int_equal(loop_flag(loop, "autoclear"), 1);
	assert_true(strstr(m.superopts, "discard") != NULL);
	snprintf(path, sizeof(path), "%s.tmp", image);
	assert_false(exists(path));
	assert_int_equal(mode_of(root) & 07777, 0711);

	/* The template: defaults merged with the source. */
	path_in(path, sizeof(path), root, "@template/tmp");
	assert_int_equal(mode_of(path) & 07777, 01777);
	path_in(path, sizeof(path), root, "@template/etc/hostname");
	assert_string_equal(get(path), "template\n");
	path_in(path, sizeof(path), root, "@template/sub");
	assert_int_equal(mode_of(path) & 07777, 0750);
	assert_int_equal(list_count(f, NULL), 0);
}

static void check_layer_matches_template(struct fixture *f, const char *name)
{
	const char *root = layer_pool_root(f->pool);
	char rel[128], path[PATH_MAX + 64], src[PATH_MAX + 16], target[64];
	ssize_t n;

	snprintf(rel, sizeof(rel), "%s/upper/big.bin", name);
	path_in(path, sizeof(path), root, rel);
	snprintf(src, sizeof(src), "%s/big.bin", f->src);
	assert_true(same_contents(path, src));
	snprintf(rel, sizeof(rel), "%s/upper/link", name);
	path_in(path, sizeof(path), root, rel);
	n = readlink(path, target, sizeof(target) - 1);
	assert_true(n > 0);
	target[n] = '\0';
	assert_string_equal(target, "sub/nested.txt");
	snprintf(rel, sizeof(rel), "%s/upper/sub/nested.txt", name);
	path_in(path, sizeof(path), root, rel);
	assert_string_equal(get(path), "nested\n");
	snprintf(rel, sizeof(rel), "%s/upper/tmp", name);
	path_in(path, sizeof(path), root, rel);
	assert_int_equal(mode_of(path) & 07777, 01777);
	snprintf(rel, sizeof(rel), "%s/upper", name);
	path_in(path, sizeof(path), root, rel);
	assert_int_equal(mode_of(path) & 07777, 0755);
	snprintf(rel, sizeof(rel), "%s/work", name);
	path_in(path, sizeof(path), root, rel);
	assert_true(S_ISDIR(mode_of(path)));
}

/* Extents of path, and how many of them are shared with another file. */
static void extents(const char *path, unsigned *total, unsigned *shared)
{
	const unsigned max = 64;
	struct fiemap *fm = calloc(1, sizeof(*fm) + max * sizeof(struct fiemap_extent));
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	assert_non_null(fm);
	assert_true(fd >= 0);
	fm->fm_length = FIEMAP_MAX_OFFSET;
	fm->fm_flags = FIEMAP_FLAG_SYNC;
	fm->fm_extent_count = max;
	assert_int_equal(ioctl(fd, FS_IOC_FIEMAP, fm), 0);
	*total = fm->fm_mapped_extents;
	*shared = 0;
	for (unsigned i = 0; i < fm->fm_mapped_extents; i++)
		if (fm->fm_extents[i].fe_flags & FIEMAP_EXTENT_SHARED)
			(*shared)++;
	close(fd);
	free(fm);
}

static uint64_t used_bytes(const char *path)
{
	struct statfs s;

	assert_int_equal(statfs(path, &s), 0);
	return (uint64_t)(s.f_blocks - s.f_bfree) * (uint64_t)s.f_bsize;
}

static void test_make_clones_template(void **state)
{
	struct fixture *f = *state;
	char name[LAYER_POOL_NAME_MAX], path[PATH_MAX + 64], rel[128], tiny[8];
	struct layer_pool_stats st;
	struct qerr err = {0};
	unsigned total, shared;
	uint64_t before, after;

	open_xfs_or_skip(f);
	make_layer(f, name);
	assert_true(strncmp(name, "@pool-", 6) == 0);
	check_layer_matches_template(f, name);

	snprintf(rel, sizeof(rel), "%s/upper/big.bin", name);
	path_in(path, sizeof(path), layer_pool_root(f->pool), rel);
	extents(path, &total, &shared);
	assert_true(total > 0);
	assert_int_equal(shared, total);
	layer_pool_get_stats(f->pool, &st);
	assert_int_equal(st.made, 1);
	assert_int_equal(st.cloned, 3); /* big.bin, sub/nested.txt, etc/hostname */
	assert_int_equal(st.copied, 0);

	/* Twenty copies would use 20 MiB more; clones use metadata only. */
	before = used_bytes(layer_pool_root(f->pool));
	for (int i = 0; i < 20; i++)
		make_layer(f, name);
	after = used_bytes(layer_pool_root(f->pool));
	print_message("20 layers of a 1 MiB template: %" PRIu64 " KiB more used on the store\n",
		      (after - before) / 1024);
	assert_true(after - before < 2 * MIB);
	assert_int_equal(list_count(f, "@pool-"), 21);

	assert_int_equal(layer_pool_make(f->pool, tiny, sizeof(tiny), &err), -ERANGE);
}

/* ---- take, and an overlay over a taken layer ---- */

enum child_fail { CF_UNSHARE = 10, CF_PRIVATE, CF_MOUNT, CF_WRITE, CF_APPEND, CF_UNLINK, CF_READ };

static int append_file(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return -1;
	n = write(fd, text, strlen(text));
	close(fd);
	return n == (ssize_t)strlen(text) ? 0 : -1;
}

/* In a private mount namespace, so the overlay vanishes with the child. */
static int overlay_child(const char *lower, const char *upper, const char *work, const char *target)
{
	char path[PATH_MAX + 32];
	struct qerr err = {0};
	int fd;

	if (unshare(CLONE_NEWNS) < 0)
		return CF_UNSHARE;
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
		return CF_PRIVATE;
	if (layer_overlay_mount(lower, upper, work, target, 0, &err) < 0) {
		fprintf(stderr, "overlay: %s\n", err.msg);
		return CF_MOUNT;
	}
	snprintf(path, sizeof(path), "%s/new.txt", target);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd < 0 || write(fd, "new\n", 4) != 4 || close(fd) < 0)
		return CF_WRITE;
	snprintf(path, sizeof(path), "%s/keep.txt", target);
	if (append_file(path, "more\n") < 0)
		return CF_APPEND;
	snprintf(path, sizeof(path), "%s/gone.txt", target);
	if (unlink(path) < 0)
		return CF_UNLINK;
	/* The template's files show through too. */
	snprintf(path, sizeof(path), "%s/etc", target);
	if (access(path, F_OK) < 0)
		return CF_READ;
	return 0;
}

static void check_overlay(struct fixture *f, const char *upper, const char *work)
{
	char lower[PATH_MAX + 16], target[PATH_MAX + 16], path[PATH_MAX * 2];
	struct stat st;
	int status;
	pid_t pid;

	snprintf(lower, sizeof(lower), "%s/lower", f->scratch);
	snprintf(target, sizeof(target), "%s/rootfs", f->scratch);
	assert_int_equal(mkdir(lower, 0755), 0);
	assert_int_equal(mkdir(target, 0755), 0);
	path_in(path, sizeof(path), lower, "keep.txt");
	put_str(path, "lower\n");
	path_in(path, sizeof(path), lower, "gone.txt");
	put_str(path, "gone\n");

	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		_exit(overlay_child(lower, upper, work, target));
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	assert_int_equal(mounts_at(target, false, NULL), 0);

	/* Writes landed in upper; lower is as it was. */
	path_in(path, sizeof(path), upper, "new.txt");
	assert_string_equal(get(path), "new\n");
	path_in(path, sizeof(path), lower, "new.txt");
	assert_false(exists(path));
	path_in(path, sizeof(path), upper, "keep.txt");
	assert_string_equal(get(path), "lower\nmore\n");
	path_in(path, sizeof(path), lower, "keep.txt");
	assert_string_equal(get(path), "lower\n");
	path_in(path, sizeof(path), upper, "gone.txt"); /* a whiteout */
	assert_int_equal(lstat(path, &st), 0);
	assert_true(S_ISCHR(st.st_mode) && st.st_rdev == makedev(0, 0));
	path_in(path, sizeof(path), lower, "gone.txt");
	assert_string_equal(get(path), "gone\n");
}

/* Make, take as id, check the failure cases, mount an overlay over it. */
static void take_and_overlay(struct fixture *f)
{
	char name[LAYER_POOL_NAME_MAX], other[LAYER_POOL_NAME_MAX], id[32];
	char upper[PATH_MAX], work[PATH_MAX], want[PATH_MAX + 64], small[16];
	const char *root = layer_pool_root(f->pool);
	struct qerr err = {0};

	snprintf(id, sizeof(id), "sb-%d", (int)getpid());
	make_layer(f, name);
	make_layer(f, other);
	assert_int_equal(layer_pool_take(f->pool, name, id, upper, work, sizeof(upper), &err), 0);
	snprintf(want, sizeof(want), "%s/%s/upper", root, id);
	assert_string_equal(upper, want);
	snprintf(want, sizeof(want), "%s/%s/work", root, id);
	assert_string_equal(work, want);
	path_in(want, sizeof(want), root, name);
	assert_false(exists(want));

	assert_int_equal(layer_pool_take(f->pool, name, "sb-x", upper, work, sizeof(upper), &err),
			 -ENOENT);
	assert_int_equal(layer_pool_take(f->pool, other, id, small, small, sizeof(small), &err),
			 -ENAMETOOLONG);
	assert_int_equal(layer_pool_take(f->pool, other, id, upper, work, sizeof(upper), &err),
			 -EEXIST);
	assert_int_equal(layer_pool_take(f->pool, other, "../x", upper, work, sizeof(upper), &err),
			 -EINVAL);
	assert_int_equal(
	    layer_pool_take(f->pool, other, "@pool-y", upper, work, sizeof(upper), &err), -EINVAL);
	assert_int_equal(
	    layer_pool_take(f->pool, "@template", "sb-y", upper, work, sizeof(upper), &err),
	    -EINVAL);
	assert_int_equal(layer_pool_take(f->pool, "@pool-../@template", "sb-y", upper, work,
					 sizeof(upper), &err),
			 -EINVAL);

	check_overlay(f, upper, work);
	assert_int_equal(layer_overlay_mount("/a,b", upper, work, f->scratch, 0, &err), -EINVAL);

	assert_int_equal(layer_pool_destroy(f->pool, id, &err), 0);
	assert_int_equal(layer_pool_destroy(f->pool, other, &err), 0);
	path_in(want, sizeof(want), root, id);
	assert_false(exists(want));
	assert_int_equal(list_count(f, NULL), 0);
}

static void test_take_and_overlay_xfs(void **state)
{
	struct fixture *f = *state;

	open_xfs_or_skip(f);
	take_and_overlay(f);
}

/* ---- destroy, whatever a sandbox left ---- */

static void set_flags(const char *path, int add)
{
	int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	int flags;

	assert_true(fd >= 0);
	assert_int_equal(ioctl(fd, FS_IOC_GETFLAGS, &flags), 0);
	flags |= add;
	assert_int_equal(ioctl(fd, FS_IOC_SETFLAGS, &flags), 0);
	close(fd);
}

/* DEEP_LEVELS directories, each named d, with a symlink out at the bottom. */
static void make_deep(const char *dir, const char *outside)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	assert_true(fd >= 0);
	for (int i = 0; i < DEEP_LEVELS; i++) {
		int sub;

		assert_int_equal(mkdirat(fd, "d", 0755), 0);
		sub = openat(fd, "d", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		assert_true(sub >= 0);
		close(fd);
		fd = sub;
	}
	assert_int_equal(symlinkat(outside, fd, "out"), 0);
	close(fd);
}

static void fill_hostile(const char *upper, const char *outside)
{
	char path[PATH_MAX + 32], precious[PATH_MAX + 16];

	snprintf(precious, sizeof(precious), "%s/precious", outside);
	path_in(path, sizeof(path), upper, "escape");
	assert_int_equal(symlink(outside, path), 0);
	path_in(path, sizeof(path), upper, "escape-file");
	assert_int_equal(symlink(precious, path), 0);
	path_in(path, sizeof(path), upper, "root");
	assert_int_equal(symlink("/", path), 0);
	path_in(path, sizeof(path), upper, "hard");
	assert_int_equal(link(precious, path) == 0 || errno == EXDEV, true);
	path_in(path, sizeof(path), upper, "pipe");
	assert_int_equal(mkfifo(path, 0600), 0);
	path_in(path, sizeof(path), upper, "null");
	assert_int_equal(mknod(path, S_IFCHR | 0666, makedev(1, 3)), 0);
	path_in(path, sizeof(path), upper, "locked");
	put_str(path, "x");
	set_flags(path, FS_IMMUTABLE_FL);
	path_in(path, sizeof(path), upper, "logonly");
	put_str(path, "x");
	set_flags(path, FS_APPEND_FL);
	path_in(path, sizeof(path), upper, "frozen");
	assert_int_equal(mkdir(path, 0755), 0);
	path_in(path, sizeof(path), upper, "frozen/inside");
	put_str(path, "x");
	path_in(path, sizeof(path), upper, "frozen");
	set_flags(path, FS_IMMUTABLE_FL);
	make_deep(upper, outside);
}

static void test_destroy_hostile(void **state)
{
	struct fixture *f = *state;
	char name[LAYER_POOL_NAME_MAX], upper[PATH_MAX], work[PATH_MAX], id[32];
	char outside[300], path[PATH_MAX * 2], mnt[PATH_MAX + 16];
	const char *root;
	struct layer_pool_stats st;
	struct qerr err = {0};

	open_xfs_or_skip(f);
	root = layer_pool_root(f->pool);
	snprintf(outside, sizeof(outside), "%s/outside", f->scratch);
	assert_int_equal(mkdir(outside, 0755), 0);
	path_in(path, sizeof(path), outside, "precious");
	put_str(path, "keep me\n");

	snprintf(id, sizeof(id), "hostile-%d", (int)getpid());
	make_layer(f, name);
	assert_int_equal(layer_pool_take(f->pool, name, id, upper, work, sizeof(upper), &err), 0);
	fill_hostile(upper, outside);

	/* A mount inside a layer is not crossed: its contents survive. */
	snprintf(mnt, sizeof(mnt), "%s/mnt", upper);
	assert_int_equal(mkdir(mnt, 0755), 0);
	assert_int_equal(mount(outside, mnt, NULL, MS_BIND, NULL), 0);
	assert_int_equal(layer_pool_destroy(f->pool, id, &err), -EXDEV);
	assert_true(strstr(err.msg, "not crossed") != NULL);
	assert_int_equal(umount2(mnt, 0), 0);
	path_in(path, sizeof(path), outside, "precious");
	assert_string_equal(get(path), "keep me\n");

	assert_int_equal(layer_pool_destroy(f->pool, id, &err), 0);
	path_in(path, sizeof(path), root, id);
	assert_false(exists(path));
	path_in(path, sizeof(path), outside, "precious");
	assert_string_equal(get(path), "keep me\n");
	assert_true(exists("/etc/passwd"));

	/* Absent is fine; names that are not layers are refused. */
	assert_int_equal(layer_pool_destroy(f->pool, id, &err), 0);
	assert_int_equal(layer_pool_destroy(f->pool, "@template", &err), -EINVAL);
	assert_int_equal(layer_pool_destroy(f->pool, "..", &err), -EINVAL);
	assert_int_equal(layer_pool_destroy(f->pool, "a/b", &err), -EINVAL);
	assert_int_equal(layer_pool_destroy(f->pool, "", &err), -EINVAL);
	path_in(path, sizeof(path), root, "@template/big.bin");
	assert_true(exists(path));
	layer_pool_get_stats(f->pool, &st);
	assert_int_equal(st.destroyed, 1);
	assert_int_equal(list_count(f, NULL), 0);
}

/* ---- restarts ---- */

/* A poold that makes, takes and destroys layers until it is killed. */
static _Noreturn void churn(struct fixture *f, int round)
{
	char name[LAYER_POOL_NAME_MAX], upper[PATH_MAX], work[PATH_MAX], id[32];
	struct qerr err = {0};
	struct layer_pool *p;
	struct layer_pool_config c = {.state_dir = f->state};

	if (layer_pool_open(&c, &p, &err) < 0)
		_exit(1);
	for (int i = 0;; i++) {
		if (layer_pool_make(p, name, sizeof(name), &err) < 0)
			_exit(2);
		snprintf(id, sizeof(id), "k%d-%d", round, i);
		if (i % 2 && layer_pool_take(p, name, id, upper, work, sizeof(upper), &err) < 0)
			_exit(3);
		if (i % 3 == 0 && layer_pool_destroy(p, i % 2 ? id : name, &err) < 0)
			_exit(4);
	}
}

static void only_template_left(struct fixture *f)
{
	cleanup_dir DIR *d = opendir(layer_pool_root(f->pool));
	struct dirent *e;

	assert_non_null(d);
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") &&
		    strcmp(e->d_name, "@template"))
			fail_msg("left in the store: %s", e->d_name);
}

/* What a restarted poold does: destroy every layer it does not know.
 * Returns how many there were. */
static size_t reclaim(struct fixture *f)
{
	struct qerr err = {0};
	char **names;
	size_t n;

	assert_int_equal(layer_pool_list(f->pool, &names, &n, &err), 0);
	for (size_t i = 0; i < n; i++) {
		assert_true(strncmp(names[i], "@pool-", 6) == 0 ||
			    strncmp(names[i], "@tmp-", 5) == 0 || names[i][0] == 'k');
		if (layer_pool_destroy(f->pool, names[i], &err) < 0)
			fail_msg("destroy %s: %s", names[i], err.msg);
	}
	layer_pool_list_free(names, n);
	only_template_left(f);
	return n;
}

static void test_reopen_after_crash(void **state)
{
	struct fixture *f = *state;
	char name[LAYER_POOL_NAME_MAX], other[PATH_MAX + 16], path[PATH_MAX + 64], image[PATH_MAX];
	struct mount_seen before, after;
	size_t reclaimed = 0;
	char root[PATH_MAX]; /* kept across closes of the pool */
	int status;

	open_xfs_or_skip(f);
	make_layer(f, name);
	make_layer(f, name);
	snprintf(root, sizeof(root), "%s", layer_pool_root(f->pool));
	assert_int_equal(mounts_at(root, false, &before), 1);

	/* Memory only, as a kill would; the next open reuses the mount, and
	 * keeps the template rather than copying another source in. */
	layer_pool_close(f->pool);
	f->pool = NULL;
	snprintf(other, sizeof(other), "%s/other-src", f->scratch);
	assert_int_equal(mkdir(other, 0755), 0);
	path_in(path, sizeof(path), other, "other.txt");
	put_str(path, "other\n");
	assert_int_equal(open_pool(f, false, other, NULL), 0);
	assert_string_equal(layer_pool_backend(f->pool), "xfs-reflink");
	assert_string_equal(layer_pool_root(f->pool), root);
	assert_int_equal(mounts_at(root, false, &after), 1);
	assert_int_equal(after.id, before.id);
	assert_int_equal(list_count(f, "@pool-"), 2);
	path_in(path, sizeof(path), root, "@template/other.txt");
	assert_false(exists(path));

	/* kill -9 at several moments of make/take/destroy, then restart. */
	for (int round = 0; round < KILL_ROUNDS; round++) {
		pid_t pid = fork();

		assert_true(pid >= 0);
		if (pid == 0)
			churn(f, round);
		usleep(3000 + (useconds_t)round * 7000);
		assert_int_equal(kill(pid, SIGKILL), 0);
		assert_int_equal(waitpid(pid, &status, 0), pid);
		assert_true(WIFSIGNALED(status));
		layer_pool_close(f->pool);
		f->pool = NULL;
		assert_int_equal(open_pool(f, false, NULL, NULL), 0);
		reclaimed += reclaim(f);
	}
	print_message("reclaimed %zu layers left by %d killed processes\n", reclaimed, KILL_ROUNDS);
	assert_true(reclaimed > 0);
	snprintf(image, sizeof(image), "%s/layers.img", f->state);
	assert_int_equal(mounts_at(layer_pool_root(f->pool), false, NULL), 1);
	assert_int_equal(loops_on(image, false, &status, 1), 1);

	/* Killed while building the template: the half-built one is redone. */
	layer_pool_close(f->pool);
	f->pool = NULL;
	path_in(path, sizeof(path), root, "@template");
	path_in(image, sizeof(image), root, "@tmp-template");
	assert_int_equal(rename(path, image), 0);
	assert_int_equal(open_pool(f, false, other, NULL), 0);
	path_in(path, sizeof(path), root, "@template/other.txt");
	assert_string_equal(get(path), "other\n");
	assert_false(exists(image));
	assert_int_equal(list_count(f, NULL), 0);
}

/* A loop device bound to the image without autoclear and not mounted, as a
 * crash between attach and mount could leave (or an admin's losetup). */
static int bind_loop_by_hand(const char *image)
{
	struct loop_config cfg = {0};
	int ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
	int file = open(image, O_RDWR | O_CLOEXEC);
	char dev[32];
	int n, fd;

	assert_true(ctl >= 0 && file >= 0);
	n = ioctl(ctl, LOOP_CTL_GET_FREE);
	assert_true(n >= 0);
	snprintf(dev, sizeof(dev), "/dev/loop%d", n);
	fd = open(dev, O_RDWR | O_CLOEXEC);
	assert_true(fd >= 0);
	cfg.fd = (uint32_t)file;
	assert_int_equal(ioctl(fd, LOOP_CONFIGURE, &cfg), 0);
	close(fd);
	close(file);
	close(ctl);
	return n;
}

static void test_stale_loop_device(void **state)
{
	struct fixture *f = *state;
	char image[PATH_MAX], dev[32];
	struct qerr err = {0};
	struct mount_seen m;
	int n;

	open_xfs_or_skip(f);
	snprintf(image, sizeof(image), "%s/layers.img", f->state);
	assert_int_equal(layer_pool_close_store(f->pool, &err), 0);
	assert_int_equal(mounts_at(layer_pool_root(f->pool), false, NULL), 0);
	assert_true(loops_gone(image, false));
	layer_pool_close(f->pool);
	f->pool = NULL;

	n = bind_loop_by_hand(image);
	assert_int_equal(loop_flag(n, "autoclear"), 0);
	assert_int_equal(open_pool(f, false, NULL, NULL), 0);
	assert_string_equal(layer_pool_backend(f->pool), "xfs-reflink");
	assert_int_equal(mounts_at(layer_pool_root(f->pool), false, &m), 1);
	snprintf(dev, sizeof(dev), "/dev/loop%d", n);
	assert_string_equal(m.source, dev);
	assert_int_equal(loop_flag(n, "autoclear"), 1);
	assert_int_equal(loops_on(image, false, &n, 1), 1);

	assert_int_equal(layer_pool_close_store(f->pool, &err), 0);
	assert_int_equal(mounts_at(layer_pool_root(f->pool), false, NULL), 0);
	assert_true(loops_gone(image, false));
}

/* ---- tmpfs ---- */

static void test_mkfs_missing_falls_back(void **state)
{
	struct fixture *f = *state;
	char path[PATH_MAX + 16], name[LAYER_POOL_NAME_MAX];
	struct layer_pool_stats st;
	struct mount_seen m;

	need_root();
	make_template_src(f->src);
	assert_int_equal(open_pool(f, false, f->src, "/nonexistent/mkfs.xfs"), 0);
	assert_string_equal(layer_pool_backend(f->pool), "tmpfs");
	assert_int_equal(mounts_at(layer_pool_root(f->pool), false, &m), 1);
	assert_string_equal(m.fstype, "tmpfs");
	snprintf(path, sizeof(path), "%s/layers.img", f->state);
	assert_false(exists(path));
	snprintf(path, sizeof(path), "%s/layers.img.tmp", f->state);
	assert_false(exists(path));
	make_layer(f, name);
	check_layer_matches_template(f, name);
	layer_pool_get_stats(f->pool, &st);
	assert_int_equal(st.cloned, 0);
	assert_int_equal(st.copied, 3);
}

static void test_tmpfs_backend(void **state)
{
	struct fixture *f = *state;
	struct qerr err = {0};
	struct mount_seen m;

	need_root();
	make_template_src(f->src);
	assert_int_equal(open_pool(f, true, f->src, NULL), 0);
	assert_string_equal(layer_pool_backend(f->pool), "tmpfs");
	assert_int_equal(mounts_at(layer_pool_root(f->pool), false, &m), 1);
	assert_string_equal(m.fstype, "tmpfs");
	assert_true(strstr(m.superopts, "size=524288k") != NULL);
	take_and_overlay(f);
	assert_int_equal(layer_pool_close_store(f->pool, &err), 0);
	assert_int_equal(mounts_at(layer_pool_root(f->pool), false, NULL), 0);
}

/* ---- bad configurations ---- */

static void test_bad_config(void **state)
{
	struct fixture *f = *state;
	struct layer_pool_config c = {.state_dir = f->state, .template_src = "/nonexistent"};
	struct layer_pool *p = NULL;
	struct qerr err = {0};

	assert_int_equal(layer_pool_open(&c, &p, &err), -ENOENT);
	assert_null(p);
	assert_true(strstr(err.msg, "/nonexistent") != NULL);
	assert_int_equal(mounts_at(f->state, true, NULL), 0);
	c.state_dir = "";
	assert_int_equal(layer_pool_open(&c, &p, &err), -EINVAL);
}

/* ---- how long a layer takes ---- */

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void measure(struct fixture *f)
{
	static char names[MEASURE_RUNS][LAYER_POOL_NAME_MAX];
	uint64_t make_ns[MEASURE_RUNS], destroy_ns[MEASURE_RUNS], t;
	struct qerr err = {0};

	for (int i = 0; i < MEASURE_RUNS; i++) {
		t = now_ns();
		make_layer(f, names[i]);
		make_ns[i] = now_ns() - t;
	}
	for (int i = 0; i < MEASURE_RUNS; i++) {
		t = now_ns();
		assert_int_equal(layer_pool_destroy(f->pool, names[i], &err), 0);
		destroy_ns[i] = now_ns() - t;
	}
	qsort(make_ns, MEASURE_RUNS, sizeof(make_ns[0]), cmp_u64);
	qsort(destroy_ns, MEASURE_RUNS, sizeof(destroy_ns[0]), cmp_u64);
	print_message("%-11s make: median %" PRIu64 " us, p90 %" PRIu64
		      " us; destroy: median %" PRIu64 " us (%d layers, 1 MiB template file)\n",
		      layer_pool_backend(f->pool), make_ns[MEASURE_RUNS / 2] / 1000,
		      make_ns[MEASURE_RUNS * 9 / 10] / 1000, destroy_ns[MEASURE_RUNS / 2] / 1000,
		      MEASURE_RUNS);
}

static void test_measure_xfs(void **state)
{
	struct fixture *f = *state;

	open_xfs_or_skip(f);
	measure(f);
}

static void test_measure_tmpfs(void **state)
{
	struct fixture *f = *state;

	need_root();
	make_template_src(f->src);
	assert_int_equal(open_pool(f, true, f->src, NULL), 0);
	measure(f);
}

static int group_setup(void **state)
{
	struct qerr err = {0};

	(void)state;
	qlog_init("test_poold_layer_pool", NULL, QLOG_TEXT, QLOG_WARN, &err);
	return mkdtemp(base) ? 0 : -1;
}

static int group_teardown(void **state)
{
	(void)state;
	if (mounts_at(base, true, NULL) || !loops_gone(base, true))
		return -1;
	return rmdir(base) == 0 ? 0 : -1;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_xfs_store, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_make_clones_template, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_take_and_overlay_xfs, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_destroy_hostile, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_reopen_after_crash, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_stale_loop_device, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_mkfs_missing_falls_back, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_tmpfs_backend, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_bad_config, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_measure_xfs, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_measure_tmpfs, setup, teardown),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
