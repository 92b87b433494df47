/* The network namespace pool (netns_pool.h).
 *
 * Making one: a short-lived child is cloned straight into a new netns
 * (CLONE_NEWNET) with CLONE_VM | CLONE_VFORK, brings lo up and bind-mounts
 * its own /proc/self/ns/net onto the pool file, then exits.
 *
 * Not unshare, mount and setns back in the calling thread, although that
 * works beside nng's threads (unshare moves only the caller) and is
 * cheaper: setns allocates, and if it failed poold's thread, and every
 * socket it opened afterwards, would be stranded in a pool netns.  Not
 * fork(): sharing the address space skips copying poold's page tables, and
 * the child touches nothing but its own stack and the args struct.  The
 * unit test measures all three (here: in-thread ~370 us, this ~530 us, fork
 * ~1.7 ms); the child's extra is its own creation and exit, paid off the
 * sandbox start path.
 *
 * Mount propagation: a plain bind mount in the host mount namespace, no
 * shared self-bind of the directory like `ip netns` makes of /run/netns.
 * poold and the launcher both live in the host mount namespace, and the
 * launcher opens the path there before it clones, so the mount only has to
 * exist there.  ip netns wants a shared peer group so that deleting a netns
 * also unmounts the copies that new mount namespaces took of it (which
 * would otherwise keep it alive); here unlink() does that instead: since
 * Linux 3.18, unlinking a file detaches the mounts on it in every other
 * mount namespace.  A sandbox's copies are dropped sooner still, with the
 * old root after pivot_root (guest/mounts.c).  This does require poold to
 * run in the host mount namespace (no systemd PrivateMounts=/PrivateTmp=).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <linux/magic.h>
#include <linux/nsfs.h>

#include "libcommon/cleanup.h"
#include "services/poold/netns_pool.h"

/* Bytes of randomness in a name; collisions are retried (O_EXCL). */
#define TOKEN_BYTES 8
/* The child runs socket/ioctl/mount only; ASan frames are larger. */
#define CHILD_STACK (64 * 1024)
/* A bind mount stacked on a pool file more often than this is not ours. */
#define MAX_STACKED 64

struct netns_pool {
	int dfd;
	char dir[PATH_MAX];
	void *stack; /* the child's, lowest page a guard */
};

/* Filled by the child in our memory (CLONE_VM); read after it exited. */
struct child_args {
	const char *target;
	const char *step;
	int err;
};

static bool name_ok(const char *name)
{
	size_t plen = strlen(NETNS_POOL_PREFIX);
	size_t n = strnlen(name, NAME_MAX + 1);

	return n > plen && n <= NAME_MAX && strncmp(name, NETNS_POOL_PREFIX, plen) == 0 &&
	       !strchr(name, '/');
}

static int check_dir(int dfd, const char *dir, struct qerr *err)
{
	struct stat st;

	if (fstat(dfd, &st) < 0)
		return qerr_sys(err, errno, "netns pool %s: stat", dir);
	if (st.st_uid != geteuid())
		return qerr_set(err, EPERM, "netns pool %s: owned by uid %u, not us", dir,
				(unsigned)st.st_uid);
	if (st.st_mode & 022)
		return qerr_set(err, EPERM, "netns pool %s: writable by others (mode %04o)", dir,
				(unsigned)(st.st_mode & 07777));
	return 0;
}

static void *alloc_stack(void)
{
	void *s = mmap(NULL, CHILD_STACK, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);

	if (s == MAP_FAILED)
		return NULL;
	if (mprotect(s, (size_t)sysconf(_SC_PAGESIZE), PROT_NONE) < 0) {
		munmap(s, CHILD_STACK);
		return NULL;
	}
	return s;
}

int netns_pool_open(const char *dir, struct netns_pool **out, struct qerr *err)
{
	cleanup_close int dfd = -1;
	char real[PATH_MAX];
	int r;

	*out = NULL;
	if (mkdir(dir, 0700) < 0 && errno != EEXIST)
		return qerr_sys(err, errno, "netns pool %s: mkdir", dir);
	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (dfd < 0)
		return qerr_sys(err, errno, "netns pool %s", dir);
	r = check_dir(dfd, dir, err);
	if (r < 0)
		return r;
	/* Canonical, so that the paths we hand out match /proc/self/mountinfo. */
	if (!realpath(dir, real))
		return qerr_sys(err, errno, "netns pool %s: realpath", dir);

	struct netns_pool *p = calloc(1, sizeof(*p));
	if (!p)
		return qerr_sys(err, ENOMEM, "netns pool %s", dir);
	p->stack = alloc_stack();
	if (!p->stack) {
		free(p);
		return qerr_sys(err, errno, "netns pool %s: child stack", dir);
	}
	memcpy(p->dir, real, sizeof(real));
	p->dfd = steal_fd(dfd);
	*out = p;
	return 0;
}

void netns_pool_close(struct netns_pool *p)
{
	if (!p)
		return;
	close(p->dfd);
	munmap(p->stack, CHILD_STACK);
	free(p);
}

const char *netns_pool_dir(const struct netns_pool *p)
{
	return p->dir;
}

int netns_pool_path(const struct netns_pool *p, const char *name, char *path, size_t plen,
		    struct qerr *err)
{
	if (!name_ok(name))
		return qerr_set(err, EINVAL, "netns pool: %.64s: not a pool name", name);
	int n = snprintf(path, plen, "%s/%s", p->dir, name);
	if (n < 0 || (size_t)n >= plen)
		return qerr_set(err, ENAMETOOLONG, "netns pool %s/%s: path too long", p->dir, name);
	return 0;
}

/* Create <dir>/@pool-<token> as an empty file to mount on. */
static int create_file(struct netns_pool *p, char *name, size_t nlen, struct qerr *err)
{
	for (int attempt = 0; attempt < 8; attempt++) {
		unsigned char rnd[TOKEN_BYTES];
		size_t off;

		if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
			return qerr_sys(err, errno ? errno : EIO, "netns pool: getrandom");
		off = (size_t)snprintf(name, nlen, "%s", NETNS_POOL_PREFIX);
		for (size_t i = 0; i < sizeof(rnd); i++)
			off += (size_t)snprintf(name + off, nlen - off, "%02x", rnd[i]);

		int fd = openat(p->dfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
				0600);
		if (fd >= 0) {
			close(fd);
			return 0;
		}
		if (errno != EEXIST)
			return qerr_sys(err, errno, "netns pool %s/%s: create", p->dir, name);
	}
	return qerr_set(err, EEXIST, "netns pool %s: no free name", p->dir);
}

static int lo_up(void)
{
	cleanup_close int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	struct ifreq ifr;

	if (fd < 0)
		return -errno;
	memset(&ifr, 0, sizeof(ifr));
	memcpy(ifr.ifr_name, "lo", 3);
	if (ioctl(fd, SIOCGIFFLAGS, &ifr) < 0)
		return -errno;
	ifr.ifr_flags |= IFF_UP;
	if (ioctl(fd, SIOCSIFFLAGS, &ifr) < 0)
		return -errno;
	return 0;
}

/* Runs in the new netns on p->stack, in our address space, while the
 * parent thread is suspended (CLONE_VFORK): only syscalls, no allocation,
 * no locks. */
static int child_main(void *arg)
{
	struct child_args *a = arg;
	int r;

	a->step = "bring lo up";
	r = lo_up();
	if (r < 0) {
		a->err = -r;
		return 1;
	}
	a->step = "bind-mount /proc/self/ns/net";
	if (mount("/proc/self/ns/net", a->target, NULL, MS_BIND, NULL) < 0) {
		a->err = errno;
		return 1;
	}
	a->err = 0;
	return 0;
}

/* Exit signal 0 makes it a "clone" child: waitpid(-1, ...) without __WALL
 * (libuv's, poold's SIGCHLD handling) neither sees nor reaps it. */
static int spawn_child(struct netns_pool *p, struct child_args *a, struct qerr *err)
{
	sigset_t all, old;
	int status = 0;
	pid_t pid;

	/* A signal handler must not run in the child: it would share our
	 * memory with a handler written for the parent (glibc's posix_spawn
	 * blocks them likewise). */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	/* CLONE_FILES: no copy of poold's fd table; the child closes the one
	 * socket it opens. */
	pid = clone(child_main, (char *)p->stack + CHILD_STACK,
		    CLONE_NEWNET | CLONE_VM | CLONE_VFORK | CLONE_FILES, a);
	int saved = errno;
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (pid < 0)
		return qerr_sys(err, saved, "clone(CLONE_NEWNET)");

	while (waitpid(pid, &status, __WALL) < 0 && errno == EINTR)
		;
	if (WIFSIGNALED(status))
		return qerr_set(err, EIO, "new netns: child killed by signal %d", WTERMSIG(status));
	/* a->err starts nonzero, so a child that stopped short fails too. */
	if (a->err)
		return qerr_sys(err, a->err, "new netns: %s", a->step);
	return 0;
}

/* Umount every mount stacked on the file, then unlink it.  ENOENT and
 * "not a mount point" (EINVAL) are what absent looks like. */
static int release(struct netns_pool *p, const char *name, const char *path, struct qerr *err)
{
	int i;

	for (i = 0; i < MAX_STACKED; i++) {
		if (umount2(path, MNT_DETACH | UMOUNT_NOFOLLOW) == 0)
			continue;
		if (errno == EINVAL || errno == ENOENT)
			break;
		return qerr_sys(err, errno, "netns pool %s: umount", path);
	}
	if (i == MAX_STACKED)
		return qerr_set(err, EBUSY, "netns pool %s: more than %d mounts on it", path,
				MAX_STACKED);
	if (unlinkat(p->dfd, name, 0) < 0 && errno != ENOENT)
		return qerr_sys(err, errno, "netns pool %s: unlink", path);
	return 0;
}

int netns_pool_make(struct netns_pool *p, char *name, size_t nlen, char *path, size_t plen,
		    struct qerr *err)
{
	struct child_args a = {.step = "start", .err = EIO};
	int r;

	if (nlen < NETNS_POOL_NAME_MAX)
		return qerr_set(err, ENOBUFS, "netns pool: name buffer of %zu bytes, need %d", nlen,
				NETNS_POOL_NAME_MAX);
	/* Checked before anything exists, with a name of the final length. */
	if (strlen(p->dir) + 1 + strlen(NETNS_POOL_PREFIX) + 2 * TOKEN_BYTES >= plen)
		return qerr_set(err, ENAMETOOLONG, "netns pool %s: path buffer of %zu bytes",
				p->dir, plen);
	r = create_file(p, name, nlen, err);
	if (r < 0)
		return r;
	r = netns_pool_path(p, name, path, plen, err);
	if (r < 0) {
		unlinkat(p->dfd, name, 0);
		return r;
	}
	a.target = path;
	r = spawn_child(p, &a, err);
	if (r < 0) {
		release(p, name, path, NULL);
		return qerr_prefix(err, "netns pool %s", path);
	}
	return 0;
}

int netns_pool_destroy(struct netns_pool *p, const char *name, struct qerr *err)
{
	char path[PATH_MAX];
	int r = netns_pool_path(p, name, path, sizeof(path), err);

	if (r < 0)
		return r;
	return release(p, name, path, err);
}

void netns_pool_names_free(char **names, size_t n)
{
	if (!names)
		return;
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
}

static int push_name(char ***names, size_t *n, size_t *cap, const char *name)
{
	if (*n == *cap) {
		size_t ncap = *cap ? *cap * 2 : 16;
		char **v = realloc(*names, ncap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		*names = v;
		*cap = ncap;
	}
	(*names)[*n] = strdup(name);
	if (!(*names)[*n])
		return -ENOMEM;
	(*n)++;
	return 0;
}

int netns_pool_list(struct netns_pool *p, char ***names, size_t *n, struct qerr *err)
{
	/* A fresh open file description: a dup of dfd would share (and move)
	 * its directory offset. */
	int fd = openat(p->dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	char **v = NULL;
	size_t cnt = 0, cap = 0;
	struct dirent *de;

	*names = NULL;
	*n = 0;
	if (fd < 0)
		return qerr_sys(err, errno, "netns pool %s", p->dir);
	cleanup_dir DIR *d = fdopendir(fd);
	if (!d) {
		close(fd);
		return qerr_sys(err, errno, "netns pool %s", p->dir);
	}
	errno = 0;
	while ((de = readdir(d))) {
		if (name_ok(de->d_name) && push_name(&v, &cnt, &cap, de->d_name) < 0) {
			netns_pool_names_free(v, cnt);
			return qerr_sys(err, ENOMEM, "netns pool %s: list", p->dir);
		}
		errno = 0;
	}
	if (errno) {
		int e = errno;
		netns_pool_names_free(v, cnt);
		return qerr_sys(err, e, "netns pool %s: readdir", p->dir);
	}
	*names = v;
	*n = cnt;
	return 0;
}

int netns_pool_is_live(const char *path, struct qerr *err)
{
	/* O_PATH: statfs needs no open of whatever the file is (a FIFO would
	 * block, a device could act on it). */
	cleanup_close int pfd = open(path, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	cleanup_close int fd = -1;
	char proc[64];
	struct statfs sfs;

	if (pfd < 0)
		return qerr_sys(err, errno, "%s", path);
	if (fstatfs(pfd, &sfs) < 0)
		return qerr_sys(err, errno, "%s: statfs", path);
	if (sfs.f_type != NSFS_MAGIC)
		return 0;
	/* NS_GET_NSTYPE needs a real open; nsfs files have no side effects. */
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", pfd);
	fd = open(proc, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return qerr_sys(err, errno, "%s", path);
	int type = ioctl(fd, NS_GET_NSTYPE);
	if (type < 0)
		return qerr_sys(err, errno, "%s: NS_GET_NSTYPE", path);
	return type == CLONE_NEWNET;
}
