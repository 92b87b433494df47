/* Writable rootfs layers: the store, the template, and layers cloned from it
 * (layer_pool.h).
 *
 * Everything in a layer may have been written by a sandbox, so a layer is
 * only ever walked through directory descriptors, never by path, with
 * O_NOFOLLOW and without crossing into another filesystem. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include <linux/fs.h>
#include <linux/loop.h>
#include <linux/magic.h>

#include "libcommon/cleanup.h"
#include "libcommon/log.h"
#include "libcommon/sandbox_id.h"
#include "services/poold/layer_pool.h"

#define TEMPLATE_NAME	  "@template"
#define TEMPLATE_TMP	  "@tmp-template"
#define POOL_PREFIX	  "@pool-"
#define LOOP_ATTACH_TRIES 8
#define UMOUNT_TRIES	  8
#define COPY_DEPTH_MAX	  64
/* Deeper directories are moved up to the layer's top before removal, so
 * removal holds at most this many descriptors whatever a sandbox nested. */
#define REMOVE_DEPTH_MAX 32
/* The legacy mount(2) data argument is one page. */
#define MOUNT_DATA_MAX 4096

extern char **environ;

enum backend { BACKEND_NONE, BACKEND_XFS, BACKEND_TMPFS };

static const char *const backend_names[] = {
    [BACKEND_NONE] = "none",
    [BACKEND_XFS] = "xfs-reflink",
    [BACKEND_TMPFS] = "tmpfs",
};

struct layer_pool {
	enum backend backend;
	int root_fd;
	int template_fd;
	dev_t dev;
	struct stat template_st;
	struct layer_pool_stats stats; /* updated with atomics */
	uint64_t deep_seq;
	char state[PATH_MAX];
	char root[PATH_MAX];
	char image[PATH_MAX];
};

struct copy_count {
	uint64_t cloned, copied;
};

static void count(uint64_t *counter, uint64_t n)
{
	__atomic_add_fetch(counter, n, __ATOMIC_RELAXED);
}

static bool is_dot(const char *name)
{
	return strcmp(name, ".") == 0 || strcmp(name, "..") == 0;
}

/* One path component that may name an entry of the store. */
static bool valid_name(const char *name)
{
	size_t n = strlen(name);

	return n > 0 && n <= NAME_MAX && !strchr(name, '/') && !is_dot(name);
}

/* A fresh description, so that readdir neither shares nor moves dfd's offset. */
static DIR *open_dir_stream(int dfd)
{
	int fd = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d;

	if (fd < 0)
		return NULL;
	d = fdopendir(fd);
	if (!d)
		close(fd);
	return d;
}

/* First line of a small (sysfs) file, without the newline. */
static int read_line(const char *path, char *buf, size_t size)
{
	cleanup_close int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return -errno;
	n = read(fd, buf, size - 1);
	if (n < 0)
		return -errno;
	buf[n] = '\0';
	buf[strcspn(buf, "\n")] = '\0';
	return 0;
}

/* 1 if path is the root of a mount, 0 if not, or -errno. */
static int mount_root_stat(const char *path, struct statx *stx)
{
	struct stat up;
	char parent[PATH_MAX + 4];

	if (statx(AT_FDCWD, path, AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT, STATX_INO, stx) < 0)
		return -errno;
	if (stx->stx_attributes_mask & STATX_ATTR_MOUNT_ROOT)
		return !!(stx->stx_attributes & STATX_ATTR_MOUNT_ROOT);
	/* Before Linux 5.8: a mount root is on another device than its parent. */
	snprintf(parent, sizeof(parent), "%s/..", path);
	if (stat(parent, &up) < 0)
		return -errno;
	return makedev(stx->stx_dev_major, stx->stx_dev_minor) != up.st_dev;
}

/* ---- loop devices ---- */

static bool loop_backed_by(const char *sysdir, const char *image)
{
	char path[PATH_MAX], backing[PATH_MAX];

	if (snprintf(path, sizeof(path), "%s/loop/backing_file", sysdir) >= (int)sizeof(path))
		return false;
	return read_line(path, backing, sizeof(backing)) == 0 && strcmp(backing, image) == 0;
}

/* The number of a loop device bound to image, or -ENOENT.  Found through
 * sysfs because lo_file_name holds only 63 bytes of the path. */
static int find_bound_loop(const char *image)
{
	cleanup_dir DIR *d = opendir("/sys/block");
	struct dirent *e;
	char sysdir[300];
	int n;

	if (!d)
		return -errno;
	while ((e = readdir(d))) {
		if (sscanf(e->d_name, "loop%d", &n) != 1)
			continue;
		snprintf(sysdir, sizeof(sysdir), "/sys/block/%s", e->d_name);
		if (loop_backed_by(sysdir, image))
			return n;
	}
	return -ENOENT;
}

/* A device left bound to our image by a poold killed between attach and
 * mount (without autoclear), or bound by hand: reuse it, made to free
 * itself on unmount like one of ours. */
static int loop_reuse(int n, char *dev, size_t len, struct qerr *err)
{
	struct loop_info64 info;
	cleanup_close int fd = -1;

	snprintf(dev, len, "/dev/loop%d", n);
	fd = open(dev, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return qerr_sys(err, errno, "%s", dev);
	if (ioctl(fd, LOOP_GET_STATUS64, &info) < 0)
		return qerr_sys(err, errno, "%s: LOOP_GET_STATUS64", dev);
	if (!(info.lo_flags & LO_FLAGS_AUTOCLEAR)) {
		info.lo_flags |= LO_FLAGS_AUTOCLEAR;
		if (ioctl(fd, LOOP_SET_STATUS64, &info) < 0)
			return qerr_sys(err, errno, "%s: LOOP_SET_STATUS64", dev);
	}
	qlog_info("layer pool: reusing %s, still bound to %s", dev, (char *)info.lo_file_name);
	return steal_fd(fd);
}

static int loop_attach(const char *image, char *dev, size_t len, struct qerr *err)
{
	cleanup_close int ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
	cleanup_close int file = open(image, O_RDWR | O_CLOEXEC);
	struct loop_config cfg = {0};

	if (ctl < 0)
		return qerr_sys(err, errno, "/dev/loop-control");
	if (file < 0)
		return qerr_sys(err, errno, "%s", image);
	cfg.fd = (uint32_t)file;
	/* Unmounting the store, or closing our descriptor before it is mounted
	 * (a crash), detaches the device: nothing to reclaim. */
	cfg.info.lo_flags = LO_FLAGS_AUTOCLEAR;
	/* Truncated at 63 bytes: the full path is in sysfs. */
	memcpy(cfg.info.lo_file_name, image, strnlen(image, LO_NAME_SIZE - 1));
	for (int i = 0; i < LOOP_ATTACH_TRIES; i++) {
		int n = ioctl(ctl, LOOP_CTL_GET_FREE);
		cleanup_close int fd = -1;

		if (n < 0)
			return qerr_sys(err, errno, "LOOP_CTL_GET_FREE");
		snprintf(dev, len, "/dev/loop%d", n);
		fd = open(dev, O_RDWR | O_CLOEXEC);
		if (fd < 0)
			return qerr_sys(err, errno, "%s", dev);
		if (ioctl(fd, LOOP_CONFIGURE, &cfg) == 0)
			return steal_fd(fd);
		/* Another process took the free device between the two calls. */
		if (errno != EBUSY)
			return qerr_sys(err, errno, "%s: LOOP_CONFIGURE", dev);
	}
	return qerr_set(err, EBUSY, "no free loop device after %d tries", LOOP_ATTACH_TRIES);
}

/* ---- mkfs ---- */

static int spawn_mkfs(const char *mkfs, char *const argv[], int errfd, pid_t *pid)
{
	static const char *const known[] = {"/usr/sbin/mkfs.xfs", "/sbin/mkfs.xfs"};
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	sigset_t none;
	int r;

	sigemptyset(&none);
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, errfd, STDERR_FILENO);
	posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
	posix_spawnattr_init(&attr);
	/* A daemon's threads may block signals; mkfs should not inherit that. */
	posix_spawnattr_setsigmask(&attr, &none);
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK);
	if (mkfs) {
		r = posix_spawn(pid, mkfs, &fa, &attr, argv, environ);
	} else {
		/* A daemon's PATH often lacks the sbin directories. */
		r = posix_spawnp(pid, "mkfs.xfs", &fa, &attr, argv, environ);
		for (size_t i = 0; r == ENOENT && i < ARRAY_SIZE(known); i++)
			r = posix_spawn(pid, known[i], &fa, &attr, argv, environ);
	}
	posix_spawnattr_destroy(&attr);
	posix_spawn_file_actions_destroy(&fa);
	return -r;
}

/* Read fd to its end (so the writer never blocks), keeping the first line. */
static void read_head(int fd, char *buf, size_t size)
{
	char junk[256];
	size_t len = 0;
	ssize_t n;

	for (;;) {
		bool full = len == size - 1;

		n = read(fd, full ? junk : buf + len, full ? sizeof(junk) : size - 1 - len);
		if (n == 0 || (n < 0 && errno != EINTR))
			break;
		if (n > 0 && !full)
			len += (size_t)n;
	}
	buf[len] = '\0';
	buf[strcspn(buf, "\n")] = '\0';
}

static int run_mkfs(const char *mkfs, const char *image, struct qerr *err)
{
	char *const argv[] = {"mkfs.xfs", "-q", "-m", "reflink=1", (char *)image, NULL};
	const char *prog = mkfs ? mkfs : "mkfs.xfs";
	char out[256];
	int pipefd[2], status, r;
	pid_t pid;

	if (pipe2(pipefd, O_CLOEXEC) < 0)
		return qerr_sys(err, errno, "pipe");
	r = spawn_mkfs(mkfs, argv, pipefd[1], &pid);
	close(pipefd[1]);
	if (r < 0) {
		close(pipefd[0]);
		return qerr_sys(err, -r, "%s", prog);
	}
	read_head(pipefd[0], out, sizeof(out));
	close(pipefd[0]);
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return qerr_sys(err, errno, "waitpid %s", prog);
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return 0;
	return qerr_set(err, EIO, "%s %s: %s", prog, image, out[0] ? out : "failed");
}

/* The image is renamed into place only once mkfs is done: an image that
 * exists is a complete filesystem, and a poold killed during mkfs leaves
 * only the .tmp, which is redone. */
static int create_image(const struct layer_pool *p, const struct layer_pool_config *c,
			struct qerr *err)
{
	uint64_t bytes = c->image_bytes ? c->image_bytes : LAYER_POOL_IMAGE_DEFAULT;
	char tmp[PATH_MAX + 8];
	int fd, r = 0;

	snprintf(tmp, sizeof(tmp), "%s.tmp", p->image);
	if (unlink(tmp) < 0 && errno != ENOENT)
		return qerr_sys(err, errno, "%s", tmp);
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return qerr_sys(err, errno, "%s", tmp);
	if (ftruncate(fd, (off_t)bytes) < 0)
		r = qerr_sys(err, errno, "%s: size %" PRIu64, tmp, bytes);
	close(fd);
	if (r == 0)
		r = run_mkfs(c->mkfs_xfs, tmp, err);
	if (r == 0 && rename(tmp, p->image) < 0)
		r = qerr_sys(err, errno, "%s", p->image);
	if (r < 0)
		unlink(tmp);
	return r;
}

/* ---- the store ---- */

/* The backend of a store already mounted at root, BACKEND_NONE, or -errno. */
static int mounted_backend(const struct layer_pool *p, struct qerr *err)
{
	struct statx stx;
	struct statfs sfs;
	char sysdir[64];
	int r = mount_root_stat(p->root, &stx);

	if (r < 0)
		return qerr_sys(err, -r, "%s", p->root);
	if (r == 0)
		return BACKEND_NONE;
	if (statfs(p->root, &sfs) < 0)
		return qerr_sys(err, errno, "%s", p->root);
	if (sfs.f_type == TMPFS_MAGIC)
		return BACKEND_TMPFS;
	snprintf(sysdir, sizeof(sysdir), "/sys/dev/block/%u:%u", stx.stx_dev_major,
		 stx.stx_dev_minor);
	if (sfs.f_type != XFS_SUPER_MAGIC || !loop_backed_by(sysdir, p->image))
		return qerr_set(err, EBUSY, "%s: a mount that is not our store is there", p->root);
	return BACKEND_XFS;
}

static int open_xfs(const struct layer_pool *p, const struct layer_pool_config *c, struct qerr *err)
{
	cleanup_close int fd = -1;
	char dev[32];
	int n, r;

	if (access(p->image, F_OK) < 0) {
		if (errno != ENOENT)
			return qerr_sys(err, errno, "%s", p->image);
		r = create_image(p, c, err);
		if (r < 0)
			return r;
	}
	n = find_bound_loop(p->image);
	fd = n >= 0 ? loop_reuse(n, dev, sizeof(dev), err)
		    : loop_attach(p->image, dev, sizeof(dev), err);
	if (fd < 0)
		return fd;
	/* discard: what destroyed layers freed is punched out of the sparse
	 * image, so the image's use of the host disk follows the store's. */
	if (mount(dev, p->root, "xfs", MS_NOSUID | MS_NODEV, "discard") < 0)
		return qerr_sys(err, errno, "mount %s on %s", dev, p->root);
	/* The mount holds the device now; closing fd does not detach it. */
	return 0;
}

static int mount_tmpfs(const struct layer_pool *p, const struct layer_pool_config *c,
		       struct qerr *err)
{
	uint64_t bytes = c->image_bytes ? c->image_bytes : LAYER_POOL_IMAGE_DEFAULT;
	char opts[64];

	snprintf(opts, sizeof(opts), "size=%" PRIu64 ",mode=0711", bytes);
	if (mount("quiver-layers", p->root, "tmpfs", MS_NOSUID | MS_NODEV, opts) < 0)
		return qerr_sys(err, errno, "mount tmpfs on %s", p->root);
	return 0;
}

static int open_store(struct layer_pool *p, const struct layer_pool_config *c, struct qerr *err)
{
	struct qerr xerr = {0};
	int r = mounted_backend(p, err);

	if (r < 0)
		return r;
	if (r != BACKEND_NONE) {
		p->backend = (enum backend)r;
		qlog_info("layer pool: reusing the %s store at %s", backend_names[r], p->root);
		return 0;
	}
	if (!c->force_tmpfs) {
		if (open_xfs(p, c, &xerr) == 0) {
			p->backend = BACKEND_XFS;
			qlog_info("layer pool: xfs-reflink store at %s", p->root);
			return 0;
		}
		qlog_warn("layer pool: no XFS store (%s); using tmpfs, where layers are copied",
			  xerr.msg);
	}
	r = mount_tmpfs(p, c, err);
	if (r < 0)
		return r;
	p->backend = BACKEND_TMPFS;
	qlog_info("layer pool: tmpfs store at %s", p->root);
	return 0;
}

/* ---- copying a tree (the template, and layers from it) ---- */

/* Owner before mode, as chown clears set-id bits; times last. */
static int set_attrs(int fd, const struct stat *st)
{
	struct timespec ts[2] = {st->st_atim, st->st_mtim};

	if (fchown(fd, st->st_uid, st->st_gid) < 0 || fchmod(fd, st->st_mode & 07777) < 0 ||
	    futimens(fd, ts) < 0)
		return -errno;
	return 0;
}

static int copy_data(int in, int out)
{
	char buf[65536];
	ssize_t n;

	for (;;) {
		n = copy_file_range(in, NULL, out, NULL, SSIZE_MAX, 0);
		if (n == 0)
			return 0;
		if (n < 0 && errno != EINTR)
			break;
	}
	/* Across filesystems on older kernels; the offsets are where it stopped. */
	if (errno != EXDEV && errno != EINVAL && errno != EOPNOTSUPP && errno != ENOSYS)
		return -errno;
	while ((n = read(in, buf, sizeof(buf))) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		for (ssize_t off = 0, w; off < n; off += w) {
			w = write(out, buf + off, (size_t)(n - off));
			if (w < 0 && errno != EINTR)
				return -errno;
			w = w < 0 ? 0 : w;
		}
	}
	return 0;
}

static int copy_file(int sdir, int ddir, const char *name, const struct stat *st,
		     struct copy_count *cnt)
{
	cleanup_close int in = openat(sdir, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	cleanup_close int out = -1;
	int r;

	if (in < 0)
		return -errno;
	out = openat(ddir, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (out < 0)
		return -errno;
	if (ioctl(out, FICLONE, in) == 0) {
		cnt->cloned++;
	} else if (errno == EOPNOTSUPP || errno == EXDEV || errno == EINVAL || errno == ENOTTY) {
		r = copy_data(in, out);
		if (r < 0)
			return r;
		cnt->copied++;
	} else {
		return -errno;
	}
	return set_attrs(out, st);
}

static int copy_symlink(int sdir, int ddir, const char *name, const struct stat *st)
{
	struct timespec ts[2] = {st->st_atim, st->st_mtim};
	char target[PATH_MAX];
	ssize_t n = readlinkat(sdir, name, target, sizeof(target) - 1);

	if (n < 0)
		return -errno;
	target[n] = '\0';
	if (symlinkat(target, ddir, name) < 0 ||
	    fchownat(ddir, name, st->st_uid, st->st_gid, AT_SYMLINK_NOFOLLOW) < 0 ||
	    utimensat(ddir, name, ts, AT_SYMLINK_NOFOLLOW) < 0)
		return -errno;
	return 0;
}

static int copy_tree(int sdir, int ddir, int depth, struct copy_count *cnt, struct qerr *err);

/* An existing directory is merged into, so a template source may add to
 * the default etc/ and tmp/. */
static int copy_dir(int sdir, int ddir, const char *name, const struct stat *st, int depth,
		    struct copy_count *cnt, struct qerr *err)
{
	cleanup_close int s = -1;
	cleanup_close int d = -1;
	int r;

	if (mkdirat(ddir, name, 0700) < 0 && errno != EEXIST)
		return qerr_sys(err, errno, "%s", name);
	s = openat(sdir, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	d = openat(ddir, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (s < 0 || d < 0)
		return qerr_sys(err, errno, "%s", name);
	r = copy_tree(s, d, depth + 1, cnt, err);
	if (r < 0)
		return qerr_prefix(err, "%s", name);
	if (set_attrs(d, st) < 0)
		return qerr_sys(err, errno, "%s", name);
	return 0;
}

static int copy_entry(int sdir, int ddir, const char *name, int depth, struct copy_count *cnt,
		      struct qerr *err)
{
	struct stat st;
	int r;

	if (fstatat(sdir, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return qerr_sys(err, errno, "%s", name);
	switch (st.st_mode & S_IFMT) {
	case S_IFDIR:
		return copy_dir(sdir, ddir, name, &st, depth, cnt, err);
	case S_IFREG:
		r = copy_file(sdir, ddir, name, &st, cnt);
		break;
	case S_IFLNK:
		r = copy_symlink(sdir, ddir, name, &st);
		break;
	default:
		qlog_warn("layer template: %s: not a file, directory or symlink; left out", name);
		return 0;
	}
	return r < 0 ? qerr_sys(err, -r, "%s", name) : 0;
}

static int copy_tree(int sdir, int ddir, int depth, struct copy_count *cnt, struct qerr *err)
{
	cleanup_dir DIR *d = NULL;
	struct dirent *e;
	int r;

	if (depth > COPY_DEPTH_MAX)
		return qerr_set(err, ELOOP, "more than %d directories deep", COPY_DEPTH_MAX);
	d = open_dir_stream(sdir);
	if (!d)
		return qerr_sys(err, errno, "opendir");
	for (errno = 0; (e = readdir(d)); errno = 0) {
		if (is_dot(e->d_name))
			continue;
		r = copy_entry(sdir, ddir, e->d_name, depth, cnt, err);
		if (r < 0)
			return r;
	}
	return errno ? qerr_sys(err, errno, "readdir") : 0;
}

/* ---- removing a tree a sandbox wrote ---- */

/* A sandbox may have set these through the overlay; they make unlink fail
 * with EPERM even for root. */
static void clear_inode_flags(int fd)
{
	int flags;

	if (ioctl(fd, FS_IOC_GETFLAGS, &flags) < 0 || !(flags & (FS_IMMUTABLE_FL | FS_APPEND_FL)))
		return;
	flags &= ~(FS_IMMUTABLE_FL | FS_APPEND_FL);
	(void)ioctl(fd, FS_IOC_SETFLAGS, &flags);
}

static int unlink_entry(int dfd, const char *name, int flags)
{
	int fd;

	if (unlinkat(dfd, name, flags) == 0)
		return 0;
	if (errno != EPERM)
		return -errno;
	clear_inode_flags(dfd);
	/* O_NONBLOCK: a FIFO must not hang us; device nodes do not open on
	 * the nodev store; symlinks fail on O_NOFOLLOW. */
	fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	if (fd >= 0) {
		clear_inode_flags(fd);
		close(fd);
	}
	return unlinkat(dfd, name, flags) == 0 ? 0 : -errno;
}

/* Deep trees are moved up rather than followed down, so a sandbox's
 * nesting costs neither stack nor descriptors. */
static int move_to_top(struct layer_pool *p, int top, int dfd, const char *name, struct qerr *err)
{
	char flat[32];

	for (;;) {
		uint64_t seq = __atomic_fetch_add(&p->deep_seq, 1, __ATOMIC_RELAXED);

		snprintf(flat, sizeof(flat), "@deep-%" PRIu64, seq);
		if (renameat2(dfd, name, top, flat, RENAME_NOREPLACE) == 0)
			return 1;
		if (errno != EEXIST)
			return qerr_sys(err, errno, "%s", name);
	}
}

static int empty_dir(struct layer_pool *p, int top, int dfd, int depth, struct qerr *err);

/* Returns how many entries went (progress), or -errno. */
static int remove_entry(struct layer_pool *p, int top, int dfd, const struct dirent *e, int depth,
			struct qerr *err)
{
	cleanup_close int sub = -1;
	struct stat st;
	int r, done;

	if (e->d_type != DT_DIR && e->d_type != DT_UNKNOWN) {
		r = unlink_entry(dfd, e->d_name, 0);
		return r < 0 ? qerr_sys(err, -r, "%s", e->d_name) : 1;
	}
	if (depth >= REMOVE_DEPTH_MAX)
		return move_to_top(p, top, dfd, e->d_name, err);
	sub = openat(dfd, e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (sub < 0 && (errno == ENOTDIR || errno == ELOOP)) {
		r = unlink_entry(dfd, e->d_name, 0);
		return r < 0 ? qerr_sys(err, -r, "%s", e->d_name) : 1;
	}
	if (sub < 0 || fstat(sub, &st) < 0)
		return qerr_sys(err, errno, "%s", e->d_name);
	if (st.st_dev != p->dev)
		return qerr_set(err, EXDEV, "%s: a mount point; not crossed", e->d_name);
	done = empty_dir(p, top, sub, depth + 1, err);
	if (done < 0)
		return qerr_prefix(err, "%s", e->d_name);
	r = unlink_entry(dfd, e->d_name, AT_REMOVEDIR);
	/* readdir may miss entries moved in behind it; the next pass gets them. */
	if (r == -ENOTEMPTY)
		return done;
	return r < 0 ? qerr_sys(err, -r, "%s", e->d_name) : done + 1;
}

static int empty_dir(struct layer_pool *p, int top, int dfd, int depth, struct qerr *err)
{
	cleanup_dir DIR *d = open_dir_stream(dfd);
	struct dirent *e;
	int done = 0, r;

	if (!d)
		return qerr_sys(err, errno, "opendir");
	for (errno = 0; (e = readdir(d)); errno = 0) {
		if (is_dot(e->d_name))
			continue;
		r = remove_entry(p, top, dfd, e, depth, err);
		if (r < 0)
			return r;
		done = done > INT_MAX - r ? INT_MAX : done + r;
	}
	return errno ? qerr_sys(err, errno, "readdir") : done;
}

/* 1 if the store's entry name was removed, 0 if it was not there. */
static int remove_layer(struct layer_pool *p, const char *name, struct qerr *err)
{
	cleanup_close int fd =
	    openat(p->root_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	struct stat st;
	int done, r;

	if (fd < 0 && errno == ENOENT)
		return 0;
	if (fd < 0 && (errno == ENOTDIR || errno == ELOOP)) {
		r = unlink_entry(p->root_fd, name, 0);
		return r < 0 ? qerr_sys(err, -r, "%s", name) : 1;
	}
	if (fd < 0 || fstat(fd, &st) < 0)
		return qerr_sys(err, errno, "%s", name);
	if (st.st_dev != p->dev)
		return qerr_set(err, EXDEV, "%s: a mount point; not crossed", name);
	/* Passes until empty: each one removes what lies within
	 * REMOVE_DEPTH_MAX and moves what is deeper up to the top. */
	for (;;) {
		done = empty_dir(p, fd, fd, 0, err);
		if (done < 0)
			return qerr_prefix(err, "%s", name);
		r = unlink_entry(p->root_fd, name, AT_REMOVEDIR);
		if (r == 0)
			return 1;
		if (r != -ENOTEMPTY || done == 0)
			return qerr_sys(err, -r, "%s", name);
	}
}

/* ---- the template ---- */

static int build_template(struct layer_pool *p, int src, struct qerr *err)
{
	struct copy_count cnt = {0};
	cleanup_close int fd = -1;
	int r;

	if (mkdirat(p->root_fd, TEMPLATE_TMP, 0755) < 0)
		return qerr_sys(err, errno, TEMPLATE_TMP);
	fd = openat(p->root_fd, TEMPLATE_TMP, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return qerr_sys(err, errno, TEMPLATE_TMP);
	/* What every sandbox writes to first; chmod because of the umask. */
	if (mkdirat(fd, "etc", 0755) < 0 || mkdirat(fd, "tmp", 0700) < 0 ||
	    fchmodat(fd, "etc", 0755, 0) < 0 || fchmodat(fd, "tmp", 01777, 0) < 0 ||
	    fchmod(fd, 0755) < 0)
		return qerr_sys(err, errno, TEMPLATE_TMP);
	if (src >= 0) {
		r = copy_tree(src, fd, 0, &cnt, err);
		if (r < 0)
			return r;
	}
	if (renameat2(p->root_fd, TEMPLATE_TMP, p->root_fd, TEMPLATE_NAME, RENAME_NOREPLACE) < 0)
		return qerr_sys(err, errno, TEMPLATE_NAME);
	return 0;
}

/* An existing template is kept: src is copied in only when one is made. */
static int open_template(struct layer_pool *p, int src, struct qerr *err)
{
	const int flags = O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC;
	struct qerr ignored;
	int r;

	p->template_fd = openat(p->root_fd, TEMPLATE_NAME, flags);
	if (p->template_fd < 0 && errno != ENOENT)
		return qerr_sys(err, errno, TEMPLATE_NAME);
	if (p->template_fd < 0) {
		/* Left by a poold killed while it built the template. */
		r = remove_layer(p, TEMPLATE_TMP, err);
		if (r >= 0)
			r = build_template(p, src, err);
		if (r < 0) {
			remove_layer(p, TEMPLATE_TMP, &ignored);
			return qerr_prefix(err, "layer template");
		}
		p->template_fd = openat(p->root_fd, TEMPLATE_NAME, flags);
		if (p->template_fd < 0)
			return qerr_sys(err, errno, TEMPLATE_NAME);
	}
	if (fstat(p->template_fd, &p->template_st) < 0)
		return qerr_sys(err, errno, TEMPLATE_NAME);
	return 0;
}

/* ---- opening ---- */

static int init_paths(struct layer_pool *p, const char *state_dir, struct qerr *err)
{
	if (mkdir(state_dir, 0711) < 0 && errno != EEXIST)
		return qerr_sys(err, errno, "mkdir %s", state_dir);
	/* Absolute and free of symlinks: the image is found in sysfs by its path. */
	if (!realpath(state_dir, p->state))
		return qerr_sys(err, errno, "%s", state_dir);
	if (strlen(p->state) > PATH_MAX - 64)
		return qerr_set(err, ENAMETOOLONG, "%s: path too long", p->state);
	snprintf(p->root, sizeof(p->root), "%s/layers", p->state);
	snprintf(p->image, sizeof(p->image), "%s/layers.img", p->state);
	if (mkdir(p->root, 0711) < 0 && errno != EEXIST)
		return qerr_sys(err, errno, "mkdir %s", p->root);
	return 0;
}

static int open_root(struct layer_pool *p, int src, struct qerr *err)
{
	struct stat st;

	p->root_fd = open(p->root, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (p->root_fd < 0 || fstat(p->root_fd, &st) < 0)
		return qerr_sys(err, errno, "%s", p->root);
	p->dev = st.st_dev;
	/* Traversable, not listable: a guest in a user namespace must reach
	 * its own layer's directories. */
	if (fchmod(p->root_fd, 0711) < 0)
		return qerr_sys(err, errno, "%s", p->root);
	return open_template(p, src, err);
}

int layer_pool_open(const struct layer_pool_config *c, struct layer_pool **out, struct qerr *err)
{
	cleanup_close int src = -1;
	struct layer_pool *p;
	int r;

	*out = NULL;
	if (!c->state_dir || !c->state_dir[0])
		return qerr_set(err, EINVAL, "layer pool: no state directory");
	/* Before anything is mounted: a bad source must not leave a store behind. */
	if (c->template_src) {
		src = open(c->template_src, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (src < 0)
			return qerr_sys(err, errno, "layer pool: template %s", c->template_src);
	}
	p = calloc(1, sizeof(*p));
	if (!p)
		return qerr_sys(err, ENOMEM, "layer pool");
	p->root_fd = p->template_fd = -1;
	r = init_paths(p, c->state_dir, err);
	if (r == 0)
		r = open_store(p, c, err);
	if (r == 0)
		r = open_root(p, src, err);
	if (r < 0) {
		layer_pool_close(p);
		return qerr_prefix(err, "layer pool %s", c->state_dir);
	}
	*out = p;
	return 0;
}

void layer_pool_close(struct layer_pool *p)
{
	if (!p)
		return;
	if (p->template_fd >= 0)
		close(p->template_fd);
	if (p->root_fd >= 0)
		close(p->root_fd);
	free(p);
}

int layer_pool_close_store(struct layer_pool *p, struct qerr *err)
{
	struct statx stx;
	int r;

	/* Our own descriptors would make the unmount fail with EBUSY. */
	if (p->template_fd >= 0)
		close(p->template_fd);
	if (p->root_fd >= 0)
		close(p->root_fd);
	p->template_fd = p->root_fd = -1;
	for (int i = 0; i < UMOUNT_TRIES; i++) {
		r = mount_root_stat(p->root, &stx);
		if (r == -ENOENT)
			return 0; /* closed before: the mount point is gone too */
		if (r < 0)
			return qerr_sys(err, -r, "%s", p->root);
		/* Every mount namespace made while the store was mounted (warm
		 * supervisors) holds a copy of it, which our umount does not
		 * reach: removing the mount point detaches those copies too,
		 * and with the last of them the loop device goes. */
		if (r == 0) {
			if (rmdir(p->root) < 0 && errno != ENOENT)
				qlog_warn("layer pool: rmdir %s: %s", p->root, strerror(errno));
			return 0;
		}
		if (umount2(p->root, UMOUNT_NOFOLLOW) == 0)
			continue;
		if (errno != EBUSY)
			return qerr_sys(err, errno, "umount %s", p->root);
		/* Still in use (a shell, an open file): the store goes, and
		 * its loop device with the last user. */
		qlog_warn("layer pool: %s busy; detaching it", p->root);
		if (umount2(p->root, MNT_DETACH | UMOUNT_NOFOLLOW) < 0)
			return qerr_sys(err, errno, "umount %s", p->root);
	}
	return qerr_set(err, EBUSY, "%s: still mounted after %d unmounts", p->root, UMOUNT_TRIES);
}

const char *layer_pool_backend(const struct layer_pool *p)
{
	return backend_names[p->backend];
}

const char *layer_pool_root(const struct layer_pool *p)
{
	return p->root;
}

void layer_pool_get_stats(const struct layer_pool *p, struct layer_pool_stats *out)
{
	out->made = __atomic_load_n(&p->stats.made, __ATOMIC_RELAXED);
	out->cloned = __atomic_load_n(&p->stats.cloned, __ATOMIC_RELAXED);
	out->copied = __atomic_load_n(&p->stats.copied, __ATOMIC_RELAXED);
	out->destroyed = __atomic_load_n(&p->stats.destroyed, __ATOMIC_RELAXED);
}

/* ---- layers ---- */

/* Make <root>/@tmp-<token>, and the name it will have when complete. */
static int new_layer_dir(struct layer_pool *p, char *tmp, char *final, struct qerr *err)
{
	uint64_t token;

	for (int i = 0; i < 4; i++) {
		if (getrandom(&token, sizeof(token), 0) != (ssize_t)sizeof(token))
			return qerr_sys(err, errno, "getrandom");
		snprintf(tmp, LAYER_POOL_NAME_MAX, "@tmp-%016" PRIx64, token);
		snprintf(final, LAYER_POOL_NAME_MAX, POOL_PREFIX "%016" PRIx64, token);
		if (mkdirat(p->root_fd, tmp, 0711) == 0)
			return 0;
		if (errno != EEXIST)
			return qerr_sys(err, errno, "%s", tmp);
	}
	return qerr_set(err, EEXIST, "no unused layer name after 4 tries");
}

static int fill_layer(struct layer_pool *p, const char *tmp, struct copy_count *cnt,
		      struct qerr *err)
{
	cleanup_close int fd =
	    openat(p->root_fd, tmp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	cleanup_close int upper = -1;
	int r;

	if (fd < 0 || fchmod(fd, 0711) < 0 || mkdirat(fd, "work", 0700) < 0 ||
	    mkdirat(fd, "upper", 0700) < 0)
		return qerr_sys(err, errno, "%s", tmp);
	upper = openat(fd, "upper", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (upper < 0)
		return qerr_sys(err, errno, "%s/upper", tmp);
	r = copy_tree(p->template_fd, upper, 0, cnt, err);
	if (r < 0)
		return qerr_prefix(err, "%s/upper", tmp);
	/* The upper directory's owner and mode are those of the sandbox's / */
	if (set_attrs(upper, &p->template_st) < 0)
		return qerr_sys(err, errno, "%s/upper", tmp);
	return 0;
}

/* Built under @tmp- and renamed when complete, so that every @pool- layer
 * found after a crash is whole. */
int layer_pool_make(struct layer_pool *p, char *name, size_t len, struct qerr *err)
{
	char tmp[LAYER_POOL_NAME_MAX], final[LAYER_POOL_NAME_MAX];
	struct copy_count cnt = {0};
	struct qerr ignored;
	int r;

	if (len < LAYER_POOL_NAME_MAX)
		return qerr_set(err, ERANGE, "layer name buffer of %zu bytes; need %d", len,
				LAYER_POOL_NAME_MAX);
	r = new_layer_dir(p, tmp, final, err);
	if (r < 0)
		return qerr_prefix(err, "make layer");
	r = fill_layer(p, tmp, &cnt, err);
	if (r == 0 && renameat2(p->root_fd, tmp, p->root_fd, final, RENAME_NOREPLACE) < 0)
		r = qerr_sys(err, errno, "%s", final);
	count(&p->stats.cloned, cnt.cloned);
	count(&p->stats.copied, cnt.copied);
	if (r < 0) {
		remove_layer(p, tmp, &ignored);
		return qerr_prefix(err, "make layer");
	}
	count(&p->stats.made, 1);
	memcpy(name, final, sizeof(final));
	return 0;
}

int layer_pool_take(struct layer_pool *p, const char *name, const char *id, char *upper, char *work,
		    size_t len, struct qerr *err)
{
	int r;

	if (strncmp(name, POOL_PREFIX, strlen(POOL_PREFIX)) != 0 || !valid_name(name))
		return qerr_set(err, EINVAL, "take layer %s: not an unused layer's name", name);
	r = sandbox_id_check(id, err);
	if (r < 0)
		return qerr_prefix(err, "take layer %s", name);
	if (snprintf(upper, len, "%s/%s/upper", p->root, id) >= (int)len ||
	    snprintf(work, len, "%s/%s/work", p->root, id) >= (int)len)
		return qerr_set(err, ENAMETOOLONG, "take layer %s: path buffer too small", name);
	/* NOREPLACE: a sandbox id is never given a second layer over its first. */
	if (renameat2(p->root_fd, name, p->root_fd, id, RENAME_NOREPLACE) < 0)
		return qerr_sys(err, errno, "take layer %s as %s", name, id);
	return 0;
}

int layer_pool_destroy(struct layer_pool *p, const char *name_or_id, struct qerr *err)
{
	int r;

	if (!valid_name(name_or_id) || strcmp(name_or_id, TEMPLATE_NAME) == 0)
		return qerr_set(err, EINVAL, "destroy layer \"%s\": not a layer's name",
				name_or_id);
	r = remove_layer(p, name_or_id, err);
	if (r < 0)
		return qerr_prefix(err, "destroy layer");
	count(&p->stats.destroyed, (uint64_t)r);
	return 0;
}

void layer_pool_list_free(char **names, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
}

static int list_add(char ***names, size_t *n, size_t *cap, const char *name)
{
	char **grown;

	if (*n == *cap) {
		*cap = *cap ? *cap * 2 : 16;
		grown = realloc(*names, *cap * sizeof(*grown));
		if (!grown)
			return -ENOMEM;
		*names = grown;
	}
	(*names)[*n] = strdup(name);
	if (!(*names)[*n])
		return -ENOMEM;
	(*n)++;
	return 0;
}

int layer_pool_list(struct layer_pool *p, char ***names, size_t *n, struct qerr *err)
{
	cleanup_dir DIR *d = open_dir_stream(p->root_fd);
	struct dirent *e;
	char **v = NULL;
	size_t cnt = 0, cap = 0;

	*names = NULL;
	*n = 0;
	if (!d)
		return qerr_sys(err, errno, "list layers: %s", p->root);
	for (errno = 0; (e = readdir(d)); errno = 0) {
		if (is_dot(e->d_name) || strcmp(e->d_name, TEMPLATE_NAME) == 0)
			continue;
		if (list_add(&v, &cnt, &cap, e->d_name) < 0) {
			layer_pool_list_free(v, cnt);
			return qerr_sys(err, ENOMEM, "list layers");
		}
	}
	if (errno) {
		int saved = errno;

		layer_pool_list_free(v, cnt);
		return qerr_sys(err, saved, "list layers: %s", p->root);
	}
	*names = v;
	*n = cnt;
	return 0;
}

/* ---- overlay ---- */

static bool overlay_safe(const char *path)
{
	return path && path[0] && !strpbrk(path, ",:\\");
}

int layer_overlay_mount(const char *lower, const char *upper, const char *work, const char *target,
			unsigned long flags, struct qerr *err)
{
	char opts[MOUNT_DATA_MAX];

	if (!overlay_safe(lower) || !overlay_safe(upper) || !overlay_safe(work))
		return qerr_set(err, EINVAL,
				"overlay on %s: a path that is empty or has ',' ':' '\\'", target);
	if (snprintf(opts, sizeof(opts), "lowerdir=%s,upperdir=%s,workdir=%s", lower, upper,
		     work) >= (int)sizeof(opts))
		return qerr_set(err, ENAMETOOLONG, "overlay on %s: options over one page", target);
	if (mount("overlay", target, "overlay", flags, opts) < 0)
		return qerr_sys(err, errno, "mount overlay on %s", target);
	return 0;
}
