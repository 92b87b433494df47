/* The sandbox's rootfs, built by S in its own mount namespace.
 *
 * Every mount destination is resolved inside the rootfs with
 * openat2(RESOLVE_IN_ROOT) and mounted onto the /proc/self/fd path of that
 * O_PATH descriptor: a symlink planted in the image (or swapped in by a
 * concurrent container sharing a volume, runc CVE-2021-30465) can then not
 * redirect a mount to the host.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sched.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "libcommon/cleanup.h"
#include "libcommon/log.h"
#include "guest/guest.h"

#define PROPAGATION_FLAGS (MS_SHARED | MS_SLAVE | MS_PRIVATE | MS_UNBINDABLE)

static int openat2_in_root(int rootfd, const char *path, int flags)
{
	struct open_how how = {
	    .flags = (uint64_t)(flags | O_CLOEXEC),
	    .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
	};
	while (*path == '/')
		path++;
	if (*path == '\0')
		path = ".";
	int fd = (int)syscall(SYS_openat2, rootfd, path, &how, sizeof(how));
	return fd < 0 ? -errno : fd;
}

static void fd_path(char *buf, size_t len, int fd)
{
	snprintf(buf, len, "/proc/self/fd/%d", fd);
}

/* mkdir -p of path inside the rootfs; the last component is a directory, or
 * an empty file when as_file.  Returns an O_PATH fd of the result. */
static int mkpath_in_root(int rootfd, const char *path, bool as_file, struct qerr *err)
{
	int fd = openat2_in_root(rootfd, path, O_PATH);
	if (fd >= 0 || fd != -ENOENT)
		return fd >= 0 ? fd : qerr_sys(err, -fd, "%s", path);

	char buf[GUEST_CONFIG_PATH_MAX];
	if (snprintf(buf, sizeof(buf), "%s", path) >= (int)sizeof(buf))
		return qerr_set(err, ENAMETOOLONG, "%s: path too long", path);
	cleanup_close int dir = openat2_in_root(rootfd, "/", O_PATH | O_DIRECTORY);
	if (dir < 0)
		return qerr_sys(err, -dir, "rootfs");
	char *p = buf;
	while (*p == '/')
		p++;
	while (*p) {
		char *slash = strchr(p, '/');
		if (slash)
			*slash = '\0';
		bool last = slash == NULL || slash[1 + strspn(slash + 1, "/")] == '\0';
		if (strcmp(p, "..") == 0 || strcmp(p, ".") == 0)
			return qerr_set(err, EINVAL, "%s: '.' or '..' in a mount destination",
					path);
		/* Resolve the prefix again from the root, each step confined. */
		int next = openat2_in_root(rootfd, buf, O_PATH);
		if (next == -ENOENT) {
			if (last && as_file) {
				int f = openat(dir, p,
					       O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC | O_NOFOLLOW,
					       0644);
				if (f < 0 && errno != EEXIST)
					return qerr_sys(err, errno, "%s: create", path);
				if (f >= 0)
					close(f);
			} else if (mkdirat(dir, p, 0755) < 0 && errno != EEXIST) {
				return qerr_sys(err, errno, "%s: mkdir", path);
			}
			next = openat2_in_root(rootfd, buf, O_PATH);
		}
		if (next < 0)
			return qerr_sys(err, -next, "%s", path);
		close(dir);
		dir = next;
		if (last)
			break;
		*slash = '/';
		p = slash + 1 + strspn(slash + 1, "/");
	}
	return steal_fd(dir);
}

/* The flags a bind remount must keep: in a user namespace the kernel locks
 * nosuid/nodev/noexec/atime of mounts inherited from a more privileged
 * namespace, and a remount that drops them fails with EPERM. */
static unsigned long locked_flags(const char *target)
{
	struct statvfs s;
	unsigned long f = 0;
	if (statvfs(target, &s) < 0)
		return 0;
	if (s.f_flag & ST_NOSUID)
		f |= MS_NOSUID;
	if (s.f_flag & ST_NODEV)
		f |= MS_NODEV;
	if (s.f_flag & ST_NOEXEC)
		f |= MS_NOEXEC;
	if (s.f_flag & ST_NOATIME)
		f |= MS_NOATIME;
	if (s.f_flag & ST_NODIRATIME)
		f |= MS_NODIRATIME;
	if (s.f_flag & ST_RELATIME)
		f |= MS_RELATIME;
	return f;
}

/* A bind mount ignores ro/nosuid/nodev/noexec on its first mount(2); they
 * take effect only with a MS_REMOUNT|MS_BIND that follows. */
static int bind_remount(const char *target, unsigned long flags, unsigned long clear,
			const char *what, struct qerr *err)
{
	unsigned long want = flags & (MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_NOATIME |
				      MS_NODIRATIME | MS_RELATIME | MS_STRICTATIME);
	if (want == 0)
		return 0;
	unsigned long keep = locked_flags(target) & ~clear;
	if (mount(NULL, target, NULL, MS_REMOUNT | MS_BIND | want | keep, NULL) < 0)
		return qerr_sys(err, errno, "%s: remount", what);
	return 0;
}

static int set_propagation(const char *target, unsigned long prop, const char *what,
			   struct qerr *err)
{
	if (prop && mount(NULL, target, NULL, prop, NULL) < 0)
		return qerr_sys(err, errno, "%s: set propagation", what);
	return 0;
}

static int set_rec_attr(int fd, const struct guest_mount *m, struct qerr *err)
{
	if (!m->rec_attr_set && !m->rec_attr_clr)
		return 0;
	struct mount_attr attr = {.attr_set = m->rec_attr_set, .attr_clr = m->rec_attr_clr};
	if (mount_setattr(fd, "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, sizeof(attr)) < 0)
		return qerr_sys(err, errno, "%s: mount_setattr", m->destination);
	return 0;
}

/* runc mounts each v1 controller itself; we instead put a tmpfs at the
 * destination and bind, read-only, the sandbox's own directory of every
 * hierarchy (the ones G made, so nothing is re-derived here).  The workload
 * sees its limits and usage, nothing above them. */
static int mount_cgroups(int rootfd, const struct guest_mount *m, const struct cgroups *cg,
			 const char *target, struct qerr *err)
{
	unsigned long base = MS_NOSUID | MS_NODEV | MS_NOEXEC;
	if (mount("tmpfs", target, "tmpfs", base, "mode=755") < 0)
		return qerr_sys(err, errno, "%s: mount tmpfs", m->destination);
	/* target names the directory under the tmpfs: reopen the tmpfs itself */
	cleanup_close int top = openat2_in_root(rootfd, m->destination, O_PATH);
	if (top < 0)
		return qerr_sys(err, -top, "%s", m->destination);
	char tpath[64];
	fd_path(tpath, sizeof(tpath), top);

	for (size_t i = 0; cg && i < cg->n; i++) {
		/* /sys/fs/cgroup/memory -> DEST/memory; a pure v2 host mounts its
		 * one hierarchy at /sys/fs/cgroup itself -> DEST */
		const char *name = strrchr(cg->mountpoint[i], '/');
		name = (name && strcmp(cg->mountpoint[i], "/sys/fs/cgroup") != 0) ? name + 1 : "";
		char dst[GUEST_CONFIG_PATH_MAX + 64];
		if ((size_t)snprintf(dst, sizeof(dst), "%s/%s", m->destination, name) >=
		    sizeof(dst))
			return qerr_set(err, ENAMETOOLONG, "%s: path too long", m->destination);
		/* The tmpfs is ours alone (fresh, in our private mount namespace,
		 * W not born yet): one plain component under it, nothing the image
		 * could have planted. */
		cleanup_close int dfd = -1;
		if (*name) {
			if (mkdirat(top, name, 0755) < 0 && errno != EEXIST)
				return qerr_sys(err, errno, "%s: mkdir", dst);
			dfd = openat(top, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (dfd < 0)
				return qerr_sys(err, errno, "%s", dst);
		} else {
			dfd = mkpath_in_root(rootfd, dst, false, err);
			if (dfd < 0)
				return dfd;
		}
		char dpath[64];
		fd_path(dpath, sizeof(dpath), dfd);
		if (mount(cg->dirs[i], dpath, NULL, MS_BIND, NULL) < 0)
			return qerr_sys(err, errno, "%s: bind %s", dst, cg->dirs[i]);
		/* the remount must name the new mount's root, not what dfd saw */
		close(dfd);
		dfd = *name ? openat(top, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
			    : openat2_in_root(rootfd, dst, O_PATH);
		if (dfd < 0)
			return qerr_sys(err, *name ? errno : -dfd, "%s", dst);
		fd_path(dpath, sizeof(dpath), dfd);
		int r = bind_remount(dpath, (m->flags & ~MS_BIND) | base, m->clear_flags, dst, err);
		if (r < 0)
			return r;
	}
	/* the tmpfs itself is made read-only (when asked) once populated */
	if ((m->flags & MS_RDONLY) &&
	    mount(NULL, tpath, NULL, MS_REMOUNT | MS_RDONLY | base, "mode=755") < 0)
		return qerr_sys(err, errno, "%s: remount ro", m->destination);
	return 0;
}

static bool is_bind(const struct guest_mount *m)
{
	return m->is_bind || (m->type && strcmp(m->type, "bind") == 0);
}

/* O_PATH fds of the rootfs and of every bind source, opened before the
 * mounts: in a user namespace the mounts are made as the namespace's root,
 * whose host uid may not be allowed to walk the host paths to them (a 0700
 * directory of the host's root).  Mounting from /proc/self/fd needs no
 * search permission on the way (runc passes its mount sources the same
 * way). */
struct rootfs_sources {
	int root;
	int *bind; /* one per cfg->mounts[i], -1 when not a bind mount */
	size_t n;
};

static void sources_close(struct rootfs_sources *s)
{
	if (s->root >= 0)
		close(s->root);
	for (size_t i = 0; s->bind && i < s->n; i++)
		if (s->bind[i] >= 0)
			close(s->bind[i]);
	free(s->bind);
}

static int sources_open(const struct guest_config *cfg, struct rootfs_sources *s, struct qerr *err)
{
	*s = (struct rootfs_sources){.root = -1, .n = cfg->n_mounts};
	s->root = open(cfg->root_path, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (s->root < 0)
		return qerr_sys(err, errno, "open rootfs %s", cfg->root_path);
	s->bind = calloc(cfg->n_mounts ? cfg->n_mounts : 1, sizeof(int));
	if (!s->bind)
		return qerr_sys(err, ENOMEM, "calloc");
	for (size_t i = 0; i < cfg->n_mounts; i++)
		s->bind[i] = -1;
	for (size_t i = 0; i < cfg->n_mounts; i++) {
		const struct guest_mount *m = &cfg->mounts[i];
		if (!is_bind(m))
			continue;
		if (!m->source)
			return qerr_set(err, EINVAL, "config.json: mounts: %s: bind without source",
					m->destination);
		/* relative bind sources are relative to the bundle (runc) */
		char src[GUEST_CONFIG_PATH_MAX * 2];
		if (m->source[0] == '/')
			snprintf(src, sizeof(src), "%s", m->source);
		else
			snprintf(src, sizeof(src), "%s/%s", cfg->bundle_dir, m->source);
		s->bind[i] = open(src, O_PATH | O_CLOEXEC);
		if (s->bind[i] < 0)
			return qerr_sys(err, errno, "mount %s: source %s", m->destination, src);
	}
	return 0;
}

static int do_mount(int rootfd, int srcfd, const struct cgroups *cg, const struct guest_mount *m,
		    bool *dev_is_tmpfs, struct qerr *err)
{
	char src[64];
	const char *type = m->type;
	bool as_file = false;

	if (is_bind(m)) {
		struct stat st;
		if (fstat(srcfd, &st) < 0)
			return qerr_sys(err, errno, "mount %s: source %s", m->destination,
					m->source);
		as_file = !S_ISDIR(st.st_mode);
		fd_path(src, sizeof(src), srcfd);
	}
	cleanup_close int fd = mkpath_in_root(rootfd, m->destination, as_file, err);
	if (fd < 0)
		return qerr_prefix(err, "mount %s", m->destination);
	char target[64];
	fd_path(target, sizeof(target), fd);

	unsigned long flags = m->flags & ~(PROPAGATION_FLAGS | MS_REC | MS_BIND);
	int r;
	if (is_bind(m)) {
		if (mount(src, target, NULL, MS_BIND | (m->flags & MS_REC), NULL) < 0)
			return qerr_sys(err, errno, "mount %s: bind %s", m->destination, m->source);
		/* the bind replaced what fd pointed to: reopen the new mount */
		close(fd);
		fd = openat2_in_root(rootfd, m->destination, O_PATH);
		if (fd < 0)
			return qerr_sys(err, -fd, "mount %s", m->destination);
		fd_path(target, sizeof(target), fd);
		r = bind_remount(target, flags, m->clear_flags, m->destination, err);
	} else if (type && strcmp(type, "cgroup") == 0) {
		r = mount_cgroups(rootfd, m, cg, target, err);
	} else if (type && strcmp(type, "sysfs") == 0) {
		r = 0;
		if (mount(m->source ? m->source : "sysfs", target, "sysfs", flags, m->data) < 0) {
			/* sysfs needs a network namespace owned by our user namespace
			 * (EPERM otherwise, e.g. with the host netns): bind the host's
			 * /sys instead, as runc does. */
			if (errno != EPERM && errno != EBUSY)
				return qerr_sys(err, errno, "mount %s: sysfs", m->destination);
			if (mount("/sys", target, NULL, MS_BIND | MS_REC, NULL) < 0)
				return qerr_sys(err, errno, "mount %s: bind /sys", m->destination);
			close(fd);
			fd = openat2_in_root(rootfd, m->destination, O_PATH);
			if (fd < 0)
				return qerr_sys(err, -fd, "mount %s", m->destination);
			fd_path(target, sizeof(target), fd);
			r = bind_remount(target, flags, m->clear_flags, m->destination, err);
		}
	} else {
		if (!type)
			return qerr_set(err, EINVAL, "config.json: mounts: %s: no type",
					m->destination);
		if (mount(m->source ? m->source : type, target, type, flags, m->data) < 0)
			return qerr_sys(err, errno, "mount %s (%s)", m->destination, type);
		if (strcmp(type, "tmpfs") == 0 && strcmp(m->destination, "/dev") == 0)
			*dev_is_tmpfs = true;
		r = 0;
	}
	if (r < 0)
		return r;
	if (m->propagation || m->rec_attr_set || m->rec_attr_clr) {
		/* operate on the mount now on top, not the one fd was opened on */
		cleanup_close int top = openat2_in_root(rootfd, m->destination, O_PATH);
		if (top < 0)
			return qerr_sys(err, -top, "mount %s", m->destination);
		char tpath[64];
		fd_path(tpath, sizeof(tpath), top);
		r = set_propagation(tpath, m->propagation, m->destination, err);
		if (r < 0)
			return r;
		r = set_rec_attr(top, m, err);
	}
	return r;
}

/* With /dev a fresh tmpfs, give it the devices every program expects.  They
 * are bind mounts of the host's nodes, not mknod: mknod needs CAP_MKNOD and
 * does not work in a user namespace.  Each bind is remounted read-only: the
 * node is the host's inode, so a chmod, chown or utimes by the sandbox's
 * root would change the host's /dev/null (a read-only mount still lets
 * programs read and write the device itself). */
/* Bind the host's device node host onto rel (a path in the rootfs), then
 * remount the bind read-only: the device still reads and writes, but a
 * container root can no longer chmod or chown the host's node through it. */
static int bind_dev_node(int rootfd, const char *host, const char *rel, struct qerr *err)
{
	cleanup_close int fd = mkpath_in_root(rootfd, rel, true, err);
	if (fd < 0)
		return fd;
	char target[64];
	fd_path(target, sizeof(target), fd);
	if (mount(host, target, NULL, MS_BIND, NULL) < 0)
		return qerr_sys(err, errno, "bind %s", host);
	/* fd names the node under the bind: reopen the bind itself */
	cleanup_close int top = openat2_in_root(rootfd, rel, O_PATH);
	if (top < 0)
		return qerr_sys(err, -top, "bind %s", host);
	fd_path(target, sizeof(target), top);
	return bind_remount(target, MS_RDONLY | MS_NOSUID | MS_NOEXEC, 0, host, err);
}

static bool lists_device(const struct guest_config *cfg, const char *path)
{
	for (size_t i = 0; i < cfg->n_devices; i++)
		if (strcmp(cfg->devices[i].path, path) == 0)
			return true;
	return false;
}

/* The default nodes, but for those linux.devices names: as in runc, the
 * config's node takes the place of the default one (podman --privileged
 * lists every host device, /dev/null and /dev/full among them; binding the
 * default first left make_devices a mount point it could not replace). */
static const char *const dev_nodes[] = {"null", "zero", "full", "random", "urandom", "tty"};
static const char *const dev_links[][2] = {
    {"fd", "/proc/self/fd"},	   {"stdin", "/proc/self/fd/0"}, {"stdout", "/proc/self/fd/1"},
    {"stderr", "/proc/self/fd/2"}, {"ptmx", "pts/ptmx"},
};

static int populate_dev(int rootfd, const struct guest_config *cfg, struct qerr *err)
{
	cleanup_close int dev = openat2_in_root(rootfd, "/dev", O_PATH | O_DIRECTORY);
	if (dev < 0)
		return qerr_sys(err, -dev, "/dev");
	for (size_t i = 0; i < ARRAY_SIZE(dev_nodes); i++) {
		char path[32];
		snprintf(path, sizeof(path), "/dev/%s", dev_nodes[i]);
		if (lists_device(cfg, path))
			continue;
		int r = bind_dev_node(rootfd, path, path, err);
		if (r < 0)
			return r;
	}
	for (size_t i = 0; i < ARRAY_SIZE(dev_links); i++) {
		if (symlinkat(dev_links[i][1], dev, dev_links[i][0]) < 0 && errno != EEXIST)
			return qerr_sys(err, errno, "/dev/%s: symlink", dev_links[i][0]);
	}
	return 0;
}

/* linux.devices, as runc makes them: mknod with the given type, numbers,
 * mode and owner; in a user namespace, where mknod of a device is not
 * allowed, a bind of the host's node at the same path.  What the workload
 * may then open is up to the devices cgroup (linux.resources.devices). */
static int make_devices(int rootfd, const struct guest_config *cfg, bool in_userns,
			struct qerr *err)
{
	for (size_t i = 0; i < cfg->n_devices; i++) {
		const struct guest_device_node *d = &cfg->devices[i];
		int r;
		if (in_userns) {
			r = bind_dev_node(rootfd, d->path, d->path, err);
			if (r < 0)
				return qerr_prefix(err, "config.json: linux.devices[%zu]", i);
			continue;
		}
		mode_t type = d->type == 'b' ? S_IFBLK : d->type == 'p' ? S_IFIFO : S_IFCHR;
		char dir[GUEST_CONFIG_PATH_MAX];
		snprintf(dir, sizeof(dir), "%s", d->path);
		char *slash = strrchr(dir, '/');
		const char *name = slash + 1; /* path is absolute: there is a slash */
		*slash = '\0';
		cleanup_close int dfd = mkpath_in_root(rootfd, dir[0] ? dir : "/", false, err);
		if (dfd < 0)
			return qerr_prefix(err, "config.json: linux.devices[%zu]", i);
		/* replace whatever the image has there; a directory stays an error */
		if (unlinkat(dfd, name, 0) < 0 && errno != ENOENT)
			return qerr_sys(err, errno, "config.json: linux.devices[%zu]: %s", i,
					d->path);
		mode_t perm = d->has_file_mode ? d->file_mode : 0666;
		dev_t num = makedev((unsigned)d->major, (unsigned)d->minor);
		if (mknodat(dfd, name, type | perm, type == S_IFIFO ? 0 : num) < 0 ||
		    fchmodat(dfd, name, perm, 0) < 0 ||
		    fchownat(dfd, name, d->has_uid ? d->uid : 0, d->has_gid ? d->gid : 0,
			     AT_SYMLINK_NOFOLLOW) < 0)
			return qerr_sys(err, errno, "config.json: linux.devices[%zu]: %s", i,
					d->path);
	}
	return 0;
}

static int pivot_into(int rootfd, const char *root, struct qerr *err)
{
	/* pivot_root(".", ".") stacks the old root under the new one at the
	 * same place; unmounting "." then drops it (runc's trick: no temporary
	 * directory in the image). */
	if (fchdir(rootfd) < 0)
		return qerr_sys(err, errno, "chdir %s", root);
	if (syscall(SYS_pivot_root, ".", ".") < 0)
		return qerr_sys(err, errno, "pivot_root");
	/* The old root may be shared with the host: make it a slave first so
	 * that the unmount does not propagate to the host. */
	if (mount(NULL, ".", NULL, MS_SLAVE | MS_REC, NULL) < 0)
		return qerr_sys(err, errno, "make old root rslave");
	if (umount2(".", MNT_DETACH) < 0)
		return qerr_sys(err, errno, "umount old root");
	if (chdir("/") < 0)
		return qerr_sys(err, errno, "chdir /");
	return 0;
}

static int write_sysctls(const struct guest_config *cfg, struct qerr *err)
{
	for (size_t i = 0; i < cfg->n_sysctl; i++) {
		const char *k = cfg->sysctl[i].key;
		char path[512];
		int n = snprintf(path, sizeof(path), "/proc/sys/%s", k);
		if (n < 0 || (size_t)n >= sizeof(path) || strstr(k, ".."))
			return qerr_set(err, EINVAL, "config.json: linux.sysctl: %s: bad key", k);
		for (char *p = path + 10; *p; p++)
			if (*p == '.')
				*p = '/';
		cleanup_close int fd = open(path, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
		if (fd < 0)
			return qerr_sys(err, errno, "config.json: linux.sysctl: %s", k);
		const char *v = cfg->sysctl[i].value;
		if (write(fd, v, strlen(v)) < 0)
			return qerr_sys(err, errno, "config.json: linux.sysctl: %s=%s", k, v);
	}
	return 0;
}

static int readonly_path(const char *p, struct qerr *err)
{
	if (mount(p, p, NULL, MS_BIND | MS_REC, NULL) < 0) {
		if (errno == ENOENT)
			return 0;
		return qerr_sys(err, errno, "readonlyPaths: %s", p);
	}
	unsigned long keep = locked_flags(p);
	if (mount(NULL, p, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_REC | keep, NULL) < 0)
		return qerr_sys(err, errno, "readonlyPaths: %s: remount ro", p);
	return 0;
}

static int masked_path(const char *p, struct qerr *err)
{
	struct stat st;
	if (lstat(p, &st) < 0) {
		if (errno == ENOENT)
			return 0;
		return qerr_sys(err, errno, "maskedPaths: %s", p);
	}
	if (S_ISDIR(st.st_mode)) {
		if (mount("tmpfs", p, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
			  "size=0,mode=0000") < 0)
			return qerr_sys(err, errno, "maskedPaths: %s", p);
		return 0;
	}
	if (mount("/dev/null", p, NULL, MS_BIND, NULL) < 0)
		return qerr_sys(err, errno, "maskedPaths: %s", p);
	return 0;
}

/* The cgroup mount, or a bind of something under a cgroup hierarchy (the
 * sandbox's own directories may not exist yet: G makes them while we
 * mount). */
static bool needs_cgroups(const struct guest_mount *m, const struct cgroups *cg)
{
	bool bind = m->is_bind || (m->type && strcmp(m->type, "bind") == 0);
	if (!bind)
		return m->type && strcmp(m->type, "cgroup") == 0;
	if (!m->source || m->source[0] != '/')
		return false;
	for (size_t i = 0; cg && i < cg->n; i++) {
		size_t n = strlen(cg->mountpoint[i]);
		if (strncmp(m->source, cg->mountpoint[i], n) == 0 &&
		    (m->source[n] == '/' || m->source[n] == '\0'))
			return true;
	}
	return false;
}

/* A detached overlay: the bundle's rootfs as its only lower layer (never
 * written), poold's layer as upper.  fsconfig takes each path whole, but
 * overlayfs still splits lowerdir on ':' (and the kernel unescapes '\\'),
 * so such paths are refused rather than misread. */
static int overlay_open(const char *lower, const char *upper, const char *work, struct qerr *err)
{
	const char *paths[] = {lower, upper, work};
	for (size_t i = 0; i < ARRAY_SIZE(paths); i++)
		if (strpbrk(paths[i], ":,\\"))
			return qerr_set(err, EINVAL, "writable layer: path %s has ':', ',' or '\\'",
					paths[i]);
	cleanup_close int fsfd = fsopen("overlay", FSOPEN_CLOEXEC);
	if (fsfd < 0)
		return qerr_sys(err, errno, "writable layer: fsopen overlay");
	if (fsconfig(fsfd, FSCONFIG_SET_STRING, "lowerdir", lower, 0) < 0 ||
	    fsconfig(fsfd, FSCONFIG_SET_STRING, "upperdir", upper, 0) < 0 ||
	    fsconfig(fsfd, FSCONFIG_SET_STRING, "workdir", work, 0) < 0 ||
	    fsconfig(fsfd, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0)
		return qerr_sys(err, errno, "writable layer: overlay of %s with %s", lower, upper);
	int mfd = fsmount(fsfd, FSMOUNT_CLOEXEC, 0);
	if (mfd < 0)
		return qerr_sys(err, errno, "writable layer: fsmount");
	return mfd;
}

/* ---- /dev, built while warm ------------------------------------------------
 *
 * A warm S builds, before it is taken, the /dev of runc's and containerd's
 * default specs as a detached tree: the four mounts and the six default
 * nodes were ~35 system calls of the start, a tenth of S's setup.  A
 * config whose mounts at and under /dev are exactly these gets the tree in
 * one move_mount, at the place of its /dev entry; any other gets its own,
 * as a cold start does.  The tree is made with the new mount API (mount(2)
 * cannot mount into a detached tree), mount for mount what do_mount and
 * populate_dev make: the same options (test_pool.py compares the mount
 * tables of a warm and a cold sandbox). */

struct tmpl_mount {
	const char *dest, *type, *source;
	unsigned long flags; /* as the config parser sets them */
	const char *data;
	uint64_t attrs; /* the same flags for fsmount */
};

static const struct tmpl_mount dev_mounts[] = {
    {"/dev", "tmpfs", "tmpfs", MS_NOSUID | MS_STRICTATIME, "mode=755,size=65536k",
     MOUNT_ATTR_NOSUID | MOUNT_ATTR_STRICTATIME},
    {"/dev/pts", "devpts", "devpts", MS_NOSUID | MS_NOEXEC,
     "newinstance,ptmxmode=0666,mode=0620,gid=5", MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC},
    {"/dev/shm", "tmpfs", "shm", MS_NOSUID | MS_NOEXEC | MS_NODEV, "mode=1777,size=65536k",
     MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC | MOUNT_ATTR_NODEV},
    {"/dev/mqueue", "mqueue", "mqueue", MS_NOSUID | MS_NOEXEC | MS_NODEV, "",
     MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC | MOUNT_ATTR_NODEV},
};

/* A detached mount of fs type t, configured from its comma-separated
 * data ("k=v" strings and bare flags). */
static int tmpl_fsmount(const struct tmpl_mount *t, struct qerr *err)
{
	cleanup_close int fs = fsopen(t->type, FSOPEN_CLOEXEC);
	if (fs < 0)
		return qerr_sys(err, errno, "%s: fsopen %s", t->dest, t->type);
	if (fsconfig(fs, FSCONFIG_SET_STRING, "source", t->source, 0) < 0)
		return qerr_sys(err, errno, "%s: source", t->dest);
	/* mount(2) with MS_RDONLY makes a new superblock read-only too */
	if ((t->attrs & MOUNT_ATTR_RDONLY) && fsconfig(fs, FSCONFIG_SET_FLAG, "ro", NULL, 0) < 0)
		return qerr_sys(err, errno, "%s: ro", t->dest);
	char data[128];
	snprintf(data, sizeof(data), "%s", t->data);
	char *save = NULL;
	for (char *o = strtok_r(data, ",", &save); o; o = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(o, '=');
		if (eq)
			*eq = '\0';
		if (fsconfig(fs, eq ? FSCONFIG_SET_STRING : FSCONFIG_SET_FLAG, o,
			     eq ? eq + 1 : NULL, 0) < 0)
			return qerr_sys(err, errno, "%s: option %s", t->dest, o);
	}
	if (fsconfig(fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0)
		return qerr_sys(err, errno, "%s: create %s", t->dest, t->type);
	int m = fsmount(fs, FSMOUNT_CLOEXEC, (unsigned int)t->attrs);
	if (m < 0)
		return qerr_sys(err, errno, "%s: fsmount", t->dest);
	return m;
}

/* Attach the detached mount m at name under the tree dev; an empty file
 * or a directory is made for it first. */
static int dev_attach(int dev, int m, const char *name, bool as_file, struct qerr *err)
{
	if (as_file) {
		int f =
		    openat(dev, name, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0644);
		if (f < 0)
			return qerr_sys(err, errno, "/dev/%s: create", name);
		close(f);
	} else if (mkdirat(dev, name, 0755) < 0) {
		return qerr_sys(err, errno, "/dev/%s: mkdir", name);
	}
	if (move_mount(m, "", dev, name, MOVE_MOUNT_F_EMPTY_PATH) < 0)
		return qerr_sys(err, errno, "/dev/%s: attach", name);
	return 0;
}

int rootfs_dev_prebuild(struct qerr *err)
{
	cleanup_close int dev = tmpl_fsmount(&dev_mounts[0], err);
	if (dev < 0)
		return dev;
	for (size_t i = 1; i < ARRAY_SIZE(dev_mounts); i++) {
		cleanup_close int m = tmpl_fsmount(&dev_mounts[i], err);
		if (m < 0)
			return m;
		int r = dev_attach(dev, m, dev_mounts[i].dest + 5, false, err);
		if (r < 0)
			return r;
	}
	/* populate_dev's binds: the host's node, read-only (the bind keeps
	 * the flags of the host's /dev, as the remount there does) */
	struct mount_attr ro = {.attr_set =
				    MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC};
	for (size_t i = 0; i < ARRAY_SIZE(dev_nodes); i++) {
		char host[32];
		snprintf(host, sizeof(host), "/dev/%s", dev_nodes[i]);
		cleanup_close int m =
		    open_tree(AT_FDCWD, host, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
		if (m < 0)
			return qerr_sys(err, errno, "bind %s", host);
		if (mount_setattr(m, "", AT_EMPTY_PATH, &ro, sizeof(ro)) < 0)
			return qerr_sys(err, errno, "bind %s: read-only", host);
		int r = dev_attach(dev, m, dev_nodes[i], true, err);
		if (r < 0)
			return r;
	}
	for (size_t i = 0; i < ARRAY_SIZE(dev_links); i++)
		if (symlinkat(dev_links[i][1], dev, dev_links[i][0]) < 0)
			return qerr_sys(err, errno, "/dev/%s: symlink", dev_links[i][0]);
	return steal_fd(dev);
}

/* At or under top ("/dev", "/sys"), or a destination that is not plainly
 * spelled (a "//", ".", ".." or trailing "/" might still name something
 * there). */
static bool maybe_under(const char *d, const char *top)
{
	size_t t = strlen(top);
	if (strncmp(d, top, t) == 0 && (d[t] == '\0' || d[t] == '/'))
		return true;
	size_t n = strlen(d);
	return strstr(d, "//") || strstr(d, "/./") || strstr(d, "/../") ||
	       (n >= 2 && strcmp(d + n - 2, "/.") == 0) ||
	       (n >= 3 && strcmp(d + n - 3, "/..") == 0) || (n > 1 && d[n - 1] == '/');
}

static const struct tmpl_mount *tmpl_of(const struct guest_mount *m, const struct tmpl_mount *tmpl,
					size_t n)
{
	for (size_t i = 0; i < n; i++) {
		const struct tmpl_mount *t = &tmpl[i];
		if (strcmp(m->destination, t->dest) == 0 && m->type &&
		    strcmp(m->type, t->type) == 0 && m->source &&
		    strcmp(m->source, t->source) == 0 && m->flags == t->flags &&
		    m->clear_flags == 0 && m->data && strcmp(m->data, t->data) == 0 &&
		    !m->propagation && !m->rec_attr_set && !m->rec_attr_clr && !m->is_bind &&
		    !m->tmpcopyup)
			return t;
	}
	return NULL;
}

/* cfg's mounts at and under top are tmpl's, one each, top's own first
 * (what goes on it comes after it), and all of them. */
static bool mounts_are(const struct guest_config *cfg, const char *top,
		       const struct tmpl_mount *tmpl, size_t n)
{
	bool seen[8] = {false};
	if (n > ARRAY_SIZE(seen))
		return false;
	for (size_t i = 0; i < cfg->n_mounts; i++) {
		const struct guest_mount *m = &cfg->mounts[i];
		if (!maybe_under(m->destination, top))
			continue;
		const struct tmpl_mount *t = tmpl_of(m, tmpl, n);
		size_t k = t ? (size_t)(t - tmpl) : 0;
		if (!t || seen[k] || (k > 0 && !seen[0]))
			return false;
		seen[k] = true;
	}
	for (size_t k = 0; k < n; k++)
		if (!seen[k])
			return false;
	return true;
}

bool rootfs_dev_fits(const struct guest_config *cfg)
{
	if (!mounts_are(cfg, "/dev", dev_mounts, ARRAY_SIZE(dev_mounts)))
		return false;
	for (size_t i = 0; i < ARRAY_SIZE(dev_nodes); i++) {
		char path[32];
		snprintf(path, sizeof(path), "/dev/%s", dev_nodes[i]);
		if (lists_device(cfg, path))
			return false;
	}
	return true;
}

/* ---- /sys, built while warm ------------------------------------------------
 *
 * The same for /sys: sysfs (read-only, of S's network namespace, which a
 * warm S keeps) with, at fs/cgroup, mount_cgroups' tmpfs and read-only
 * binds of S's own groups.  Those are the groups the sandbox gets: poold
 * renames the v1 ones to the sandbox's id on the take, and a bind follows
 * the directory, not its name (rootfs_sys_fits checks the inodes).  Only
 * where every hierarchy has a name under /sys/fs/cgroup (v1 or hybrid; a
 * pure v2 host binds its one group onto the tmpfs itself). */

static const struct tmpl_mount sys_mounts[] = {
    {"/sys", "sysfs", "sysfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "",
     MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC},
    {"/sys/fs/cgroup", "cgroup", "cgroup",
     MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RELATIME, "", 0},
};

static const char *hier_name(const struct cgroups *cg, size_t i)
{
	const char *name = strrchr(cg->mountpoint[i], '/');
	return (name && strcmp(cg->mountpoint[i], "/sys/fs/cgroup") != 0) ? name + 1 : "";
}

int rootfs_sys_prebuild(const struct cgroups *cg, struct qerr *err)
{
	if (!cg || cg->n == 0)
		return qerr_set(err, ENOENT, "no cgroup hierarchies");
	for (size_t i = 0; i < cg->n; i++)
		if (!*hier_name(cg, i))
			return qerr_set(err, ENOTSUP,
					"a cgroup hierarchy at /sys/fs/cgroup itself");
	cleanup_close int sys = tmpl_fsmount(&sys_mounts[0], err);
	if (sys < 0)
		return sys;

	/* mount_cgroups' tmpfs, its binds, then the tmpfs read-only */
	static const struct tmpl_mount cg_tmpfs = {
	    "/sys/fs/cgroup", "tmpfs",
	    "tmpfs",	      0,
	    "mode=755",	      MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC};
	cleanup_close int top = tmpl_fsmount(&cg_tmpfs, err);
	if (top < 0)
		return top;
	struct mount_attr ro = {.attr_set = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID |
					    MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC |
					    MOUNT_ATTR_RELATIME,
				.attr_clr = MOUNT_ATTR__ATIME};
	for (size_t i = 0; i < cg->n; i++) {
		cleanup_close int m =
		    open_tree(AT_FDCWD, cg->dirs[i], OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
		if (m < 0)
			return qerr_sys(err, errno, "bind %s", cg->dirs[i]);
		if (mount_setattr(m, "", AT_EMPTY_PATH, &ro, sizeof(ro)) < 0)
			return qerr_sys(err, errno, "bind %s: read-only", cg->dirs[i]);
		int r = dev_attach(top, m, hier_name(cg, i), false, err);
		if (r < 0)
			return r;
	}
	cleanup_close int ctx = fspick(top, "", FSPICK_EMPTY_PATH | FSPICK_CLOEXEC);
	struct mount_attr top_ro = {.attr_set = MOUNT_ATTR_RDONLY};
	if (ctx < 0 || fsconfig(ctx, FSCONFIG_SET_FLAG, "ro", NULL, 0) < 0 ||
	    fsconfig(ctx, FSCONFIG_CMD_RECONFIGURE, NULL, NULL, 0) < 0 ||
	    mount_setattr(top, "", AT_EMPTY_PATH, &top_ro, sizeof(top_ro)) < 0)
		return qerr_sys(err, errno, "/sys/fs/cgroup: read-only");
	if (move_mount(top, "", sys, "fs/cgroup", MOVE_MOUNT_F_EMPTY_PATH) < 0)
		return qerr_sys(err, errno, "/sys/fs/cgroup: attach");
	return steal_fd(sys);
}

bool rootfs_sys_fits(const struct guest_config *cfg, const struct cgroups *cg, int tree)
{
	if (!cg || !mounts_are(cfg, "/sys", sys_mounts, ARRAY_SIZE(sys_mounts)))
		return false;
	/* the sandbox's groups are the ones bound: same hierarchies, same
	 * directories (renamed or not), nothing more */
	cleanup_close int dir = openat(tree, "fs/cgroup", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dir < 0)
		return false;
	size_t n = 0;
	for (size_t i = 0; i < cg->n; i++) {
		struct stat want, have;
		if (!*hier_name(cg, i) || stat(cg->dirs[i], &want) < 0 ||
		    fstatat(dir, hier_name(cg, i), &have, AT_SYMLINK_NOFOLLOW) < 0 ||
		    want.st_dev != have.st_dev || want.st_ino != have.st_ino)
			return false;
		n++;
	}
	cleanup_dir DIR *d = fdopendir(dup(dir));
	size_t entries = 0;
	for (struct dirent *e; d && (e = readdir(d));)
		entries += e->d_name[0] != '.';
	return d && entries == n;
}

/* ---- /proc, built while warm -----------------------------------------------
 *
 * And /proc: S is pid 1 of the sandbox's pid namespace, so its proc is the
 * sandbox's.  With it, runc's readonlyPaths and maskedPaths under /proc as
 * rootfs_setup applies them after the pivot: a read-only bind of each
 * readonly path onto itself, a read-only empty tmpfs on each masked
 * directory and a bind of /dev/null (the sandbox's, itself a read-only
 * bind of the host's: only with the default /dev) on each masked file;
 * paths the kernel lacks are skipped, as there.  Not with linux.sysctl:
 * those are written before the paths go read-only. */

static const struct tmpl_mount proc_mounts[] = {{"/proc", "proc", "proc", 0, "", 0}};
static const char *const proc_readonly[] = {"bus", "fs", "irq", "sys", "sysrq-trigger"};
static const char *const proc_masked[] = {"acpi",	 "asound",	  "kcore",
					  "keys",	 "latency_stats", "timer_list",
					  "timer_stats", "sched_debug",	  "scsi"};

int rootfs_proc_prebuild(struct qerr *err)
{
	static const struct tmpl_mount mask = {"/proc",
					       "tmpfs",
					       "tmpfs",
					       0,
					       "size=0,mode=0000",
					       MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID |
						   MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC};
	cleanup_close int proc = tmpl_fsmount(&proc_mounts[0], err);
	if (proc < 0)
		return proc;
	struct mount_attr ro = {.attr_set = MOUNT_ATTR_RDONLY};
	for (size_t i = 0; i < ARRAY_SIZE(proc_readonly); i++) {
		const char *p = proc_readonly[i];
		cleanup_close int m =
		    open_tree(proc, p, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE);
		if (m < 0 && errno == ENOENT)
			continue;
		if (m < 0 || mount_setattr(m, "", AT_EMPTY_PATH, &ro, sizeof(ro)) < 0 ||
		    move_mount(m, "", proc, p, MOVE_MOUNT_F_EMPTY_PATH) < 0)
			return qerr_sys(err, errno, "readonlyPaths: /proc/%s", p);
	}
	struct mount_attr null_ro = {.attr_set =
					 MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC};
	for (size_t i = 0; i < ARRAY_SIZE(proc_masked); i++) {
		const char *p = proc_masked[i];
		struct stat st;
		if (fstatat(proc, p, &st, AT_SYMLINK_NOFOLLOW) < 0) {
			if (errno == ENOENT)
				continue;
			return qerr_sys(err, errno, "maskedPaths: /proc/%s", p);
		}
		cleanup_close int m = -1;
		if (S_ISDIR(st.st_mode)) {
			m = tmpl_fsmount(&mask, err);
			if (m < 0)
				return m;
		} else {
			m = open_tree(AT_FDCWD, "/dev/null", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
			if (m < 0 ||
			    mount_setattr(m, "", AT_EMPTY_PATH, &null_ro, sizeof(null_ro)) < 0)
				return qerr_sys(err, errno, "maskedPaths: /proc/%s: /dev/null", p);
		}
		if (move_mount(m, "", proc, p, MOVE_MOUNT_F_EMPTY_PATH) < 0)
			return qerr_sys(err, errno, "maskedPaths: /proc/%s", p);
	}
	return steal_fd(proc);
}

/* paths' entries under /proc are exactly "/proc/" + each of names, once. */
static bool proc_paths_are(char *const *paths, size_t n, const char *const *names, size_t nn)
{
	size_t found = 0;
	for (size_t i = 0; i < n; i++) {
		if (!maybe_under(paths[i], "/proc"))
			continue;
		size_t k = nn;
		for (size_t j = 0; j < nn; j++)
			if (strncmp(paths[i], "/proc/", 6) == 0 &&
			    strcmp(paths[i] + 6, names[j]) == 0)
				k = j;
		if (k == nn)
			return false;
		for (size_t j = 0; j < i; j++)
			if (strcmp(paths[j], paths[i]) == 0)
				return false;
		found++;
	}
	return found == nn;
}

bool rootfs_proc_fits(const struct guest_config *cfg)
{
	/* the masks bind the sandbox's /dev/null: the default one */
	return cfg->n_sysctl == 0 && rootfs_dev_fits(cfg) &&
	       mounts_are(cfg, "/proc", proc_mounts, ARRAY_SIZE(proc_mounts)) &&
	       proc_paths_are(cfg->readonly_paths, cfg->n_readonly_paths, proc_readonly,
			      ARRAY_SIZE(proc_readonly)) &&
	       proc_paths_are(cfg->masked_paths, cfg->n_masked_paths, proc_masked,
			      ARRAY_SIZE(proc_masked));
}

static int tree_attach(int rootfd, int tree, const char *dest, struct qerr *err)
{
	cleanup_close int fd = mkpath_in_root(rootfd, dest, false, err);
	if (fd < 0)
		return qerr_prefix(err, "mount %s", dest);
	if (move_mount(tree, "", fd, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0)
		return qerr_sys(err, errno, "mount %s: attach the warm tree", dest);
	return 0;
}

/* Take a tree from calls (*p set to -1): its fd if fits, else -1 (closed). */
static int take_tree(int *p, bool fits)
{
	if (!p || *p < 0)
		return -1;
	int fd = *p;
	*p = -1;
	if (!fits) {
		close(fd);
		return -1;
	}
	return fd;
}

static int mount_all(const struct guest_config *cfg, const struct cgroups *cg,
		     const struct rootfs_calls *calls, bool *proc_done, struct qerr *err)
{
	/* Our copy of the host's mounts must not propagate back.  A shared
	 * rootfs would make pivot_root fail (EINVAL), so "shared" is applied
	 * after the pivot. */
	unsigned long prop =
	    cfg->rootfs_propagation ? cfg->rootfs_propagation : MS_PRIVATE | MS_REC;
	unsigned long first = (prop & MS_SHARED) ? (MS_SLAVE | MS_REC) : (prop | MS_REC);
	if (mount(NULL, "/", NULL, first, NULL) < 0)
		return qerr_sys(err, errno, "make / %s", (prop & MS_SLAVE) ? "rslave" : "rprivate");

	struct rootfs_sources srcs;
	cleanup_close int rootfd = -1;
	/* the trees a warm S built; -1 when there is none or it does not fit */
	struct {
		const char *top;
		int fd;
	} trees[] = {{"/dev", -1}, {"/proc", -1}, {"/sys", -1}};
	int r = sources_open(cfg, &srcs, err);
	if (r < 0)
		goto out;
	if (calls->become_root && (r = calls->become_root(calls->arg)) < 0) {
		qerr_sys(err, -r, "become the user namespace's root");
		goto out;
	}

	/* The rootfs must be a mount point for pivot_root: a recursive bind
	 * of it onto itself (or an overlay over it), whose root rootfd names. */
	if (calls->layer_upper) {
		rootfd = overlay_open(cfg->root_path, calls->layer_upper, calls->layer_work, err);
		if (rootfd < 0) {
			r = rootfd;
			goto out;
		}
	} else {
		rootfd =
		    open_tree(srcs.root, "",
			      OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE | AT_EMPTY_PATH);
		if (rootfd < 0) {
			r = qerr_sys(err, errno, "bind rootfs %s", cfg->root_path);
			goto out;
		}
	}
	if (move_mount(rootfd, "", srcs.root, "",
		       MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0) {
		r = qerr_sys(err, errno, "bind rootfs %s", cfg->root_path);
		goto out;
	}

	bool dev_tmpfs = false;
	trees[0].fd = take_tree(calls->dev_tree, rootfs_dev_fits(cfg));
	trees[1].fd = take_tree(calls->proc_tree, rootfs_proc_fits(cfg));
	trees[2].fd = take_tree(calls->sys_tree, calls->sys_tree && *calls->sys_tree >= 0 &&
						     rootfs_sys_fits(cfg, cg, *calls->sys_tree));
	*proc_done = trees[1].fd >= 0;
	for (size_t i = 0; i < cfg->n_mounts; i++) {
		const struct guest_mount *m = &cfg->mounts[i];
		/* rootfs_*_fits: the top's own entry comes first, what goes on
		 * it after: the tree stands in for all of them */
		size_t t = 0;
		while (t < ARRAY_SIZE(trees) &&
		       !(trees[t].fd >= 0 && maybe_under(m->destination, trees[t].top)))
			t++;
		if (t < ARRAY_SIZE(trees)) {
			if (strcmp(m->destination, trees[t].top) == 0 &&
			    (r = tree_attach(rootfd, trees[t].fd, trees[t].top, err)) < 0)
				goto out;
			continue;
		}
		if (needs_cgroups(m, cg) && (r = calls->cgroups_ready(calls->arg)) < 0) {
			qerr_set(err, -r, "cgroups not made");
			goto out;
		}
		r = do_mount(rootfd, srcs.bind[i], cg, m, &dev_tmpfs, err);
		if (r < 0)
			goto out;
	}
	if (dev_tmpfs && (r = populate_dev(rootfd, cfg, err)) < 0)
		goto out;
	if ((r = make_devices(rootfd, cfg,
			      (cfg->clone_flags & CLONE_NEWUSER) || cfg->ns_present[GUEST_NS_USER],
			      err)) < 0)
		goto out;
	/* runc makes a missing process.cwd (mode 0755, before the rootfs goes
	 * read-only), and images whose WORKDIR has no directory rely on it.  A
	 * failure here is reported by the workload's chdir. */
	if (cfg->process.cwd) {
		struct qerr ignored = {0};
		int cwd = mkpath_in_root(rootfd, cfg->process.cwd, false, &ignored);
		if (cwd >= 0)
			close(cwd);
	}
	if (calls->before_pivot && (r = calls->before_pivot(calls->arg, err)) < 0)
		goto out;
	r = pivot_into(rootfd, cfg->root_path, err);
out:
	for (size_t t = 0; t < ARRAY_SIZE(trees); t++)
		if (trees[t].fd >= 0)
			close(trees[t].fd);
	sources_close(&srcs);
	return r;
}

int rootfs_setup(const struct guest_config *cfg, const struct cgroups *cg,
		 const struct rootfs_calls *calls, struct qerr *err)
{
	unsigned long prop =
	    cfg->rootfs_propagation ? cfg->rootfs_propagation : MS_PRIVATE | MS_REC;
	bool proc_done = false; /* /proc came with its paths from a warm tree */
	int r = mount_all(cfg, cg, calls, &proc_done, err);
	if (r < 0)
		return r;
	if ((prop & MS_SHARED) && mount(NULL, "/", NULL, prop, NULL) < 0)
		return qerr_sys(err, errno, "rootfsPropagation");

	if (cfg->hostname && sethostname(cfg->hostname, strlen(cfg->hostname)) < 0)
		return qerr_sys(err, errno, "sethostname %s", cfg->hostname);
	if (cfg->domainname && setdomainname(cfg->domainname, strlen(cfg->domainname)) < 0)
		return qerr_sys(err, errno, "setdomainname %s", cfg->domainname);

	r = write_sysctls(cfg, err);
	if (r < 0)
		return r;
	for (size_t i = 0; i < cfg->n_readonly_paths; i++) {
		if (proc_done && maybe_under(cfg->readonly_paths[i], "/proc"))
			continue;
		r = readonly_path(cfg->readonly_paths[i], err);
		if (r < 0)
			return r;
	}
	for (size_t i = 0; i < cfg->n_masked_paths; i++) {
		if (proc_done && maybe_under(cfg->masked_paths[i], "/proc"))
			continue;
		r = masked_path(cfg->masked_paths[i], err);
		if (r < 0)
			return r;
	}
	if (cfg->root_readonly) {
		unsigned long keep = locked_flags("/");
		if (mount(NULL, "/", NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | keep, NULL) < 0)
			return qerr_sys(err, errno, "remount / read-only");
	}
	return 0;
}
