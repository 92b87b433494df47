/* The workload's file-path syscalls, served through iod (issue 4).
 *
 * For each trapped call: decode the arguments (decode()), copy each path
 * once out of the workload's memory, make it a path of the sandbox
 * (relative paths joined to the cwd or dirfd, as procfs shows them to the
 * supervisor, whose root is the sandbox's), rewrite what only this task
 * can mean (/proc/self, /proc/<pid>/{root,cwd,fd/N}), read the task's
 * credentials, send one request to iod, and answer: a result, bytes copied
 * back, or an fd injected with SECCOMP_IOCTL_NOTIF_ADDFD.
 *
 * Nothing here asks the host kernel to resolve a workload's path, with
 * three exceptions, each without a path: calls on an fd (AT_EMPTY_PATH with
 * "", utimensat with a NULL path) act on a copy of the workload's fd
 * (pidfd_getfd); chdir is checked by iod and then completed by the kernel
 * (SECCOMP_USER_NOTIF_FLAG_CONTINUE: the cwd is kernel state the
 * supervisor cannot set; the kernel's walk is still confined by the
 * pivoted root); and a /proc/<pid>/fd/N the workload opens is re-opened by
 * the supervisor through its own /proc/self/fd. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/time.h>
#include <unistd.h>
#include <utime.h>

#include "guest/iod_client.h"
#include "guest/meta_cache.h"
#include "guest/policy.h"
#include "guest/trap.h"
#include "libcommon/fscreds.h"

#ifndef SYS_fchmodat2
#define SYS_fchmodat2 452
#endif
#define OPEN_FLAGS_KNOWN                                                                           \
	(O_ACCMODE | O_CREAT | O_EXCL | O_NOCTTY | O_TRUNC | O_APPEND | O_NONBLOCK | O_DSYNC |     \
	 O_ASYNC | O_DIRECT | O_LARGEFILE | O_DIRECTORY | O_NOFOLLOW | O_NOATIME | O_CLOEXEC |     \
	 O_SYNC | O_PATH | __O_TMPFILE)
#define RESOLVE_KNOWN                                                                              \
	(RESOLVE_NO_XDEV | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_SYMLINKS | RESOLVE_BENEATH |         \
	 RESOLVE_IN_ROOT | RESOLVE_CACHED)

enum out_kind { OUT_NONE, OUT_STAT, OUT_STATX, OUT_BUF, OUT_STATFS };
enum times_kind { T_NONE, T_UTIMBUF, T_TIMEVAL, T_TIMESPEC };

/* A decoded call. */
struct fcall {
	unsigned op;
	int dirfd, dirfd2;
	uint64_t path, path2; /* addresses */
	bool has2;
	bool text1; /* path is symlink's text, not a place */
	bool real_creds;
	bool empty_path; /* AT_EMPTY_PATH was given */
	bool follow;	 /* the last component is followed */
	uint32_t flags, at_flags, mode;
	uint64_t arg0, arg1;
	enum out_kind out;
	uint64_t out_addr;
	uint64_t out_size;
	enum times_kind times;
	uint64_t times_addr;
};

bool sys_iod_serves(int nr)
{
	switch (nr) {
	case SYS_open:
	case SYS_creat:
	case SYS_openat:
	case SYS_openat2:
	case SYS_stat:
	case SYS_lstat:
	case SYS_newfstatat:
	case SYS_statx:
	case SYS_access:
	case SYS_faccessat:
	case SYS_faccessat2:
	case SYS_readlink:
	case SYS_readlinkat:
	case SYS_mkdir:
	case SYS_mkdirat:
	case SYS_mknod:
	case SYS_mknodat:
	case SYS_unlink:
	case SYS_rmdir:
	case SYS_unlinkat:
	case SYS_rename:
	case SYS_renameat:
	case SYS_renameat2:
	case SYS_link:
	case SYS_linkat:
	case SYS_symlink:
	case SYS_symlinkat:
	case SYS_chmod:
	case SYS_fchmodat:
	case SYS_fchmodat2:
	case SYS_chown:
	case SYS_lchown:
	case SYS_fchownat:
	case SYS_utime:
	case SYS_utimes:
	case SYS_futimesat:
	case SYS_utimensat:
	case SYS_truncate:
	case SYS_chdir:
	case SYS_statfs:
	case SYS_getxattr:
	case SYS_lgetxattr:
	case SYS_listxattr:
	case SYS_llistxattr:
		return true;
	}
	return false;
}

static int decode(const struct policy_call *c, struct fcall *f)
{
	const uint64_t *a = c->args;

	memset(f, 0, sizeof(*f));
	f->dirfd = f->dirfd2 = AT_FDCWD;
	f->follow = true;
	switch (c->nr) {
	case SYS_open:
	case SYS_creat:
	case SYS_openat:
	case SYS_openat2: {
		int i = c->nr == SYS_openat || c->nr == SYS_openat2;
		f->op = IOD_OP_OPEN;
		if (i)
			f->dirfd = (int)a[0];
		f->path = a[i];
		if (c->nr == SYS_creat) {
			f->flags = O_CREAT | O_WRONLY | O_TRUNC;
			f->mode = (uint32_t)a[1];
		} else if (c->nr == SYS_openat2) {
			struct open_how how;
			if (a[3] < 24)
				return -EINVAL;
			if (a[3] > 4096)
				return -E2BIG;
			if (sys_copy_from_user(c, &how, a[2], sizeof(how)) < 0)
				return -EFAULT;
			/* openat2 is strict where open(2) is lenient. */
			if (how.flags & ~(uint64_t)OPEN_FLAGS_KNOWN ||
			    how.mode & ~(uint64_t)07777 ||
			    (how.mode && !(how.flags & (O_CREAT | __O_TMPFILE))) ||
			    how.resolve & ~(uint64_t)RESOLVE_KNOWN)
				return -EINVAL;
			if ((how.flags & O_PATH) &&
			    (how.flags &
			     ~(uint64_t)(O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)))
				return -EINVAL;
			/* A scope of the caller's own (beneath or in a dirfd)
			 * is not carried to iod yet: callers fall back to
			 * openat on ENOSYS. */
			if (how.resolve & (RESOLVE_BENEATH | RESOLVE_IN_ROOT))
				return -ENOSYS;
			f->flags = (uint32_t)how.flags;
			f->mode = (uint32_t)how.mode;
			f->arg1 = how.resolve &
				  (RESOLVE_NO_XDEV | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS);
		} else {
			f->flags = (uint32_t)a[i + 1];
			f->mode = (uint32_t)a[i + 2];
		}
		f->follow = !(f->flags & O_NOFOLLOW);
		return 0;
	}
	case SYS_stat:
	case SYS_lstat:
		f->op = IOD_OP_STAT;
		f->path = a[0];
		f->out = OUT_STAT;
		f->out_addr = a[1];
		f->arg0 = STATX_BASIC_STATS;
		if (c->nr == SYS_lstat)
			f->at_flags = AT_SYMLINK_NOFOLLOW;
		break;
	case SYS_newfstatat:
		f->op = IOD_OP_STAT;
		f->dirfd = (int)a[0];
		f->path = a[1];
		f->out = OUT_STAT;
		f->out_addr = a[2];
		f->arg0 = STATX_BASIC_STATS;
		f->at_flags = (uint32_t)a[3];
		if (f->at_flags & ~(AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH | AT_NO_AUTOMOUNT))
			return -EINVAL;
		break;
	case SYS_statx:
		f->op = IOD_OP_STAT;
		f->dirfd = (int)a[0];
		f->path = a[1];
		f->at_flags = (uint32_t)a[2];
		f->arg0 = (uint32_t)a[3];
		f->out = OUT_STATX;
		f->out_addr = a[4];
		if (f->at_flags &
		    ~(AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH | AT_NO_AUTOMOUNT | AT_STATX_SYNC_TYPE))
			return -EINVAL;
		break;
	case SYS_access:
	case SYS_faccessat:
	case SYS_faccessat2: {
		int i = c->nr != SYS_access;
		f->op = IOD_OP_ACCESS;
		if (i)
			f->dirfd = (int)a[0];
		f->path = a[i];
		f->mode = (uint32_t)a[i + 1];
		if (c->nr == SYS_faccessat2)
			f->at_flags = (uint32_t)a[3];
		if (f->mode & ~(uint32_t)(R_OK | W_OK | X_OK) ||
		    f->at_flags & ~(AT_EACCESS | AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH))
			return -EINVAL;
		f->real_creds = !(f->at_flags & AT_EACCESS);
		break;
	}
	case SYS_readlink:
	case SYS_readlinkat: {
		int i = c->nr == SYS_readlinkat;
		f->op = IOD_OP_READLINK;
		if (i)
			f->dirfd = (int)a[0];
		f->path = a[i];
		f->out = OUT_BUF;
		f->out_addr = a[i + 1];
		f->out_size = f->arg0 = a[i + 2];
		if ((int)f->arg0 <= 0)
			return -EINVAL;
		f->follow = false;
		return 0;
	}
	case SYS_mkdir:
	case SYS_mkdirat: {
		int i = c->nr == SYS_mkdirat;
		f->op = IOD_OP_MKDIR;
		if (i)
			f->dirfd = (int)a[0];
		f->path = a[i];
		f->mode = (uint32_t)a[i + 1];
		f->follow = false;
		return 0;
	}
	case SYS_mknod:
	case SYS_mknodat: {
		int i = c->nr == SYS_mknodat;
		f->op = IOD_OP_MKNOD;
		if (i)
			f->dirfd = (int)a[0];
		f->path = a[i];
		f->mode = (uint32_t)a[i + 1];
		f->follow = false;
		return 0;
	}
	case SYS_unlink:
	case SYS_rmdir:
	case SYS_unlinkat:
		f->op = IOD_OP_UNLINK;
		if (c->nr == SYS_unlinkat) {
			f->dirfd = (int)a[0];
			f->path = a[1];
			f->at_flags = (uint32_t)a[2];
			if (f->at_flags & ~(uint32_t)AT_REMOVEDIR)
				return -EINVAL;
		} else {
			f->path = a[0];
			f->at_flags = c->nr == SYS_rmdir ? AT_REMOVEDIR : 0;
		}
		f->follow = false;
		return 0;
	case SYS_rename:
	case SYS_renameat:
	case SYS_renameat2:
		f->op = IOD_OP_RENAME;
		f->has2 = true;
		if (c->nr == SYS_rename) {
			f->path = a[0];
			f->path2 = a[1];
		} else {
			f->dirfd = (int)a[0];
			f->path = a[1];
			f->dirfd2 = (int)a[2];
			f->path2 = a[3];
			if (c->nr == SYS_renameat2)
				f->flags = (uint32_t)a[4];
		}
		f->follow = false;
		return 0;
	case SYS_link:
	case SYS_linkat:
		f->op = IOD_OP_LINK;
		f->has2 = true;
		if (c->nr == SYS_link) {
			f->path = a[0];
			f->path2 = a[1];
		} else {
			f->dirfd = (int)a[0];
			f->path = a[1];
			f->dirfd2 = (int)a[2];
			f->path2 = a[3];
			f->at_flags = (uint32_t)a[4];
			if (f->at_flags & ~(uint32_t)(AT_SYMLINK_FOLLOW | AT_EMPTY_PATH))
				return -EINVAL;
		}
		f->follow = f->at_flags & AT_SYMLINK_FOLLOW;
		return 0;
	case SYS_symlink:
	case SYS_symlinkat:
		f->op = IOD_OP_SYMLINK;
		f->has2 = true;
		f->text1 = true;
		f->path = a[0];
		if (c->nr == SYS_symlink) {
			f->path2 = a[1];
		} else {
			f->dirfd2 = (int)a[1];
			f->path2 = a[2];
		}
		f->follow = false;
		return 0;
	case SYS_chmod:
	case SYS_fchmodat:
	case SYS_fchmodat2: {
		int i = c->nr != SYS_chmod;
		f->op = IOD_OP_CHMOD;
		if (i)
			f->dirfd = (int)a[0];
		f->path = a[i];
		f->mode = (uint32_t)a[i + 1];
		if (c->nr == SYS_fchmodat2)
			f->at_flags = (uint32_t)a[3];
		if (f->at_flags & ~(uint32_t)(AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH))
			return -EINVAL;
		break;
	}
	case SYS_chown:
	case SYS_lchown:
	case SYS_fchownat: {
		int i = c->nr == SYS_fchownat;
		f->op = IOD_OP_CHOWN;
		if (i)
			f->dirfd = (int)a[0];
		f->path = a[i];
		f->arg0 = (uint32_t)a[i + 1];
		f->arg1 = (uint32_t)a[i + 2];
		if (c->nr == SYS_lchown)
			f->at_flags = AT_SYMLINK_NOFOLLOW;
		if (c->nr == SYS_fchownat)
			f->at_flags = (uint32_t)a[4];
		if (f->at_flags & ~(uint32_t)(AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH))
			return -EINVAL;
		break;
	}
	case SYS_utime:
	case SYS_utimes:
	case SYS_futimesat:
	case SYS_utimensat: {
		int i = c->nr == SYS_futimesat || c->nr == SYS_utimensat;
		f->op = IOD_OP_UTIMENS;
		if (i)
			f->dirfd = (int)a[0];
		f->path = a[i];
		f->times_addr = a[i + 1];
		f->times = c->nr == SYS_utime	    ? T_UTIMBUF
			   : c->nr == SYS_utimensat ? T_TIMESPEC
						    : T_TIMEVAL;
		if (c->nr == SYS_utimensat) {
			f->at_flags = (uint32_t)a[3];
			if (f->at_flags & ~(uint32_t)(AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH))
				return -EINVAL;
		}
		break;
	}
	case SYS_truncate:
		f->op = IOD_OP_TRUNCATE;
		f->path = a[0];
		f->arg0 = a[1];
		if ((int64_t)a[1] < 0)
			return -EINVAL;
		return 0;
	case SYS_chdir:
		f->op = IOD_OP_CHDIR;
		f->path = a[0];
		return 0;
	case SYS_statfs:
		f->op = IOD_OP_STATFS;
		f->path = a[0];
		f->out = OUT_STATFS;
		f->out_addr = a[1];
		return 0;
	case SYS_getxattr:
	case SYS_lgetxattr:
		f->op = IOD_OP_GETXATTR;
		f->path = a[0];
		f->has2 = true;
		f->text1 = false;
		f->path2 = a[1]; /* the name */
		f->out = OUT_BUF;
		f->out_addr = a[2];
		f->out_size = f->arg0 = a[3];
		if (c->nr == SYS_lgetxattr)
			f->at_flags = AT_SYMLINK_NOFOLLOW;
		break;
	case SYS_listxattr:
	case SYS_llistxattr:
		f->op = IOD_OP_LISTXATTR;
		f->path = a[0];
		f->out = OUT_BUF;
		f->out_addr = a[1];
		f->out_size = f->arg0 = a[2];
		if (c->nr == SYS_llistxattr)
			f->at_flags = AT_SYMLINK_NOFOLLOW;
		break;
	default:
		return -ENOSYS;
	}
	f->follow = !(f->at_flags & AT_SYMLINK_NOFOLLOW);
	return 0;
}

/* ---- the task ---- */

struct task {
	pid_t tid, tgid;
	int pidfd; /* the calling thread's, while read_task's cache holds it; 0: none */
	struct fscreds_task creds;
};

/* The same caller, acting on another process's fds (/proc/<pid>/fd/N). */
static struct task task_other(const struct task *t, pid_t pid)
{
	struct task o = *t;

	o.tgid = pid;
	o.pidfd = 0;
	return o;
}

/* Credentials are read from /proc/<tid>/status once per thread and kept
 * while that thread lives (a pidfd on it says when it is gone, so a reused
 * tid is never taken for its predecessor) and until a call that can change
 * credentials traps (sys_iod_watches: set*id, setgroups, capset, umask,
 * execve), which forgets them all. */
#define TASK_CACHE    64
#define PIDFD_THREAD_ O_EXCL

static struct {
	pid_t tid;
	int pidfd;
	uint64_t used;
	struct task t;
} cache[TASK_CACHE];
static uint64_t cache_clock;

static void forget(int i)
{
	if (cache[i].pidfd > 0)
		close(cache[i].pidfd);
	cache[i].pidfd = 0;
	cache[i].tid = 0;
	cache[i].used = 0;
}

void sys_iod_forget_creds(void)
{
	for (int i = 0; i < TASK_CACHE; i++)
		if (cache[i].tid)
			forget(i);
}

bool sys_iod_watches(int nr)
{
	switch (nr) {
	case SYS_setuid:
	case SYS_setgid:
	case SYS_setreuid:
	case SYS_setregid:
	case SYS_setresuid:
	case SYS_setresgid:
	case SYS_setfsuid:
	case SYS_setfsgid:
	case SYS_setgroups:
	case SYS_capset:
	case SYS_umask:
	case SYS_execve:
	case SYS_execveat:
		return true;
	}
	return false;
}

static int read_task_status(const struct policy_call *c, struct task *t);

static bool alive(int pidfd)
{
	struct pollfd p = {.fd = pidfd, .events = POLLIN};

	return poll(&p, 1, 0) == 0;
}

static int read_task(const struct policy_call *c, struct task *t)
{
	int victim = 0, r;

	for (int i = 0; i < TASK_CACHE; i++) {
		if (cache[i].tid == c->pid) {
			if (alive(cache[i].pidfd)) {
				cache[i].used = ++cache_clock;
				*t = cache[i].t;
				t->pidfd = cache[i].pidfd;
				return 0;
			}
			forget(i);
		}
		if (cache[i].used < cache[victim].used)
			victim = i;
	}
	r = read_task_status(c, t);
	if (r < 0)
		return r;
	if (cache[victim].tid)
		forget(victim);
	cache[victim].pidfd = (int)syscall(SYS_pidfd_open, c->pid, PIDFD_THREAD_);
	if (cache[victim].pidfd <= 0) {
		cache[victim].pidfd = 0;
		return 0;
	}
	/* The status was read before the pidfd was opened: if the tid was
	 * reused in between, the pidfd is the new task's.  Check again. */
	if (sys_notif_valid(c) < 0) {
		forget(victim);
		return -ENOENT;
	}
	cache[victim].tid = c->pid;
	cache[victim].used = ++cache_clock;
	cache[victim].t = *t;
	t->pidfd = cache[victim].pidfd;
	return 0;
}

int sys_iod_task(const struct policy_call *c, pid_t *tgid, struct iod_creds *creds)
{
	struct task t;
	int r = read_task(c, &t);

	if (r < 0)
		return r;
	*tgid = t.tgid;
	fscreds_for_op(&t.creds, false, creds);
	return 0;
}

static int read_task_status(const struct policy_call *c, struct task *t)
{
	char path[64], buf[4096];
	const char *p;
	ssize_t n;
	int fd;

	t->tid = c->pid;
	t->pidfd = 0;
	snprintf(path, sizeof(path), "/proc/%d/status", (int)c->pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -ESRCH;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -ESRCH;
	buf[n] = '\0';
	p = strstr(buf, "\nTgid:");
	if (!p)
		return -ESRCH;
	t->tgid = (pid_t)strtol(p + 6, NULL, 10);
	return fscreds_parse_status(buf, &t->creds) < 0 ? -EPERM : 0;
}

/* ---- paths ---- */

static int read_path(const struct policy_call *c, uint64_t addr, char *buf, size_t size)
{
	size_t got = 0;

	if (!addr)
		return -EFAULT;
	while (got < size) {
		size_t chunk = 4096 - ((addr + got) & 4095);
		int r;

		if (chunk > size - got)
			chunk = size - got;
		r = sys_copy_from_user(c, buf + got, addr + got, chunk);
		if (r < 0)
			return r == -ENOENT ? r : -EFAULT;
		if (memchr(buf + got, '\0', chunk))
			return 0;
		got += chunk;
	}
	return -ENAMETOOLONG;
}

/* What a procfs link's text (n bytes, NUL-terminated) names: 0 a path,
 * -ENOTDIR a pipe, socket or anon inode, -ESTALE a deleted file (the caller
 * decides: ENOENT for a path). */
static int link_text(const char *t, size_t n)
{
	if (t[0] != '/')
		return -ENOTDIR;
	if (n > 10 && strcmp(t + n - 10, " (deleted)") == 0)
		return -ESTALE;
	return 0;
}

/* readlink of a procfs link, as a directory of the sandbox. */
static int proc_link(char *out, size_t size, const char *link)
{
	ssize_t n;

	n = readlink(link, out, size - 1);
	if (n < 0)
		return -errno;
	if ((size_t)n >= size - 1)
		return -ENAMETOOLONG;
	out[n] = '\0';
	return link_text(out, (size_t)n);
}

/* The call being served, for proc_link_as. */
static struct {
	struct iod_client *ic;
	const struct policy_call *c;
	const struct task *t;
} cur;

static bool notif_alive(void *arg);

/* proc_link for a link of process pid.  Our own readlink for the caller's
 * own process; for any other, iod reads it as the workload, so that
 * procfs's ptrace check (pid 1 is this supervisor) is the workload's. */
static int proc_link_as(int pid, char *out, size_t size, const char *link)
{
	union iod_req_entry in;
	union iod_resp_entry o;
	size_t l = strlen(link) + 1;
	int fd = -1, r;

	if (pid == cur.t->tgid)
		return proc_link(out, size, link);
	memset(&in.req, 0, sizeof(in.req));
	in.req.hdr.opcode = IOD_OP_READLINK;
	in.req.arg0 = size - 1;
	in.req.path_len = (uint32_t)l;
	memcpy(in.req.paths, link, l);
	fscreds_for_op(&cur.t->creds, false, &in.req.creds);
	r = iod_client_call(cur.ic, &in.req, -1, &o.resp, &fd, notif_alive, (void *)cur.c);
	if (fd >= 0)
		close(fd);
	if (r < 0)
		return r == -ENOENT ? -ENOENT : -EIO;
	if (o.resp.res < 0)
		return (int)o.resp.res;
	if (o.resp.data_len >= size || o.resp.data_len != (uint64_t)o.resp.res)
		return -ENAMETOOLONG;
	memcpy(out, o.resp.data, o.resp.data_len);
	out[o.resp.data_len] = '\0';
	return link_text(out, o.resp.data_len);
}

static int join(char *out, size_t size, const char *base, const char *rest)
{
	size_t bl = strlen(base);
	int n;

	while (bl > 1 && base[bl - 1] == '/')
		bl--;
	n = snprintf(out, size, "%.*s%s%s", (int)bl, base, (bl == 1 && base[0] == '/') ? "" : "/",
		     rest);
	return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
}

/* A number followed by '/' or the end; *end after it. */
static bool number(const char *s, int *v, const char **end)
{
	char *e;
	long x;

	if (*s < '0' || *s > '9')
		return false;
	x = strtol(s, &e, 10);
	if ((*e != '/' && *e != '\0') || x > 1 << 22)
		return false;
	*v = (int)x;
	*end = e;
	return true;
}

/* The pid of the task whose fd to re-open (fd_out >= 0) for an exact
 * /proc/<pid>/fd/<n>, else 0 with path rewritten in place where it names
 * this task's view (self, root, cwd, fd/<n>/...). */
static int proc_rewrite(char *path, size_t size, const struct task *t, bool follow, int *fd_out)
{
	char tmp[PATH_MAX + 1], base[PATH_MAX + 1];
	const char *p = path, *rest;
	int pid, tid, fd, r;

	*fd_out = -1;
	while (p[0] == '/' && p[1] == '/')
		p++;
	if (strncmp(p, "/proc/", 6) != 0)
		return 0;
	rest = p + 6;
	if (strncmp(rest, "self", 4) == 0 && (rest[4] == '/' || rest[4] == '\0')) {
		snprintf(tmp, sizeof(tmp), "/proc/%d%s", (int)t->tgid, rest + 4);
	} else if (strncmp(rest, "thread-self", 11) == 0 && (rest[11] == '/' || rest[11] == '\0')) {
		snprintf(tmp, sizeof(tmp), "/proc/%d/task/%d%s", (int)t->tgid, (int)t->tid,
			 rest + 11);
	} else {
		snprintf(tmp, sizeof(tmp), "%s", p);
	}
	if (strlen(tmp) >= size)
		return -ENAMETOOLONG;
	strcpy(path, tmp);
	rest = path + 6;
	if (!number(rest, &pid, &rest))
		return 0;
	tid = pid;
	if (strncmp(rest, "/task/", 6) == 0 && !number(rest + 6, &tid, &rest))
		return 0;
	/* Every link below is read with proc_link_as: another process's root,
	 * cwd and fds are behind the kernel's ptrace check, which must be the
	 * workload's, not ours.  /proc/<pid>/root: the sandbox's root (no
	 * process here can chroot), once the check passed. */
	if (strncmp(rest, "/root", 5) == 0 && (rest[5] == '/' || rest[5] == '\0')) {
		snprintf(tmp, sizeof(tmp), "/proc/%d/task/%d/root", pid, tid);
		r = proc_link_as(pid, base, sizeof(base), tmp);
		if (r < 0)
			return r == -ESTALE ? -ENOENT : r;
		if (rest[5] == '\0' || rest[6] == '\0') {
			snprintf(tmp, sizeof(tmp), "/");
		} else {
			snprintf(tmp, sizeof(tmp), "%s", rest + 5);
		}
		strcpy(path, tmp);
		return 0;
	}
	if (strncmp(rest, "/cwd", 4) == 0 && (rest[4] == '/' || rest[4] == '\0')) {
		snprintf(tmp, sizeof(tmp), "/proc/%d/task/%d/cwd", pid, tid);
		r = proc_link_as(pid, base, sizeof(base), tmp);
		if (r < 0)
			return r == -ESTALE ? -ENOENT : r;
		return join(path, size, base, rest[4] ? rest + 5 : "");
	}
	if (strncmp(rest, "/exe", 4) == 0 && rest[4] == '\0' && follow) {
		snprintf(tmp, sizeof(tmp), "/proc/%d/exe", pid);
		r = proc_link_as(pid, base, sizeof(base), tmp);
		if (r < 0)
			return r == -ESTALE ? -ENOENT : r;
		snprintf(path, size, "%s", base);
		return 0;
	}
	if (strncmp(rest, "/fd/", 4) == 0 && number(rest + 4, &fd, &rest)) {
		if (*rest == '\0' && !follow)
			return 0; /* readlink, lstat: iod's O_PATH|O_NOFOLLOW */
		snprintf(tmp, sizeof(tmp), "/proc/%d/fd/%d", pid, fd);
		r = proc_link_as(pid, base, sizeof(base), tmp);
		if (*rest == '\0') {
			/* Re-opened from the fd itself: a pipe or socket
			 * (ENOTDIR) or a deleted file (ESTALE) is fine, as
			 * long as the link could be read as the workload. */
			if (r < 0 && r != -ENOTDIR && r != -ESTALE)
				return r;
			*fd_out = fd;
			return pid;
		}
		if (r < 0)
			return r;
		return join(path, size, base, rest + 1);
	}
	return 0;
}

/* The path of the call's path argument, as the sandbox sees it. */
static int sandbox_path(const struct task *t, int dirfd, const char *p, char *out, size_t size)
{
	char base[PATH_MAX + 1], l[64];
	int r;

	if (p[0] == '/') {
		if (strlen(p) >= size)
			return -ENAMETOOLONG;
		strcpy(out, p);
		return 0;
	}
	if (dirfd == AT_FDCWD) {
		snprintf(l, sizeof(l), "/proc/%d/task/%d/cwd", (int)t->tgid, (int)t->tid);
		r = proc_link(base, sizeof(base), l);
	} else {
		if (dirfd < 0)
			return -EBADF;
		snprintf(l, sizeof(l), "/proc/%d/fd/%d", (int)t->tgid, dirfd);
		r = proc_link(base, sizeof(base), l);
		if (r == -ENOENT && faccessat(AT_FDCWD, l, F_OK, AT_SYMLINK_NOFOLLOW) < 0)
			return -EBADF;
	}
	if (r < 0)
		return r == -ESTALE ? -ENOENT : r;
	return join(out, size, base, p);
}

/* ---- acting on the workload's fds ---- */

/* The caller's own fd n: through its thread's pidfd when the cache still
 * holds it (its fd table, even after an unshare(CLONE_FILES)), else a pidfd
 * opened for the process. */
static int task_fd(const struct task *t, int fd)
{
	int pidfd = 0, got;

	for (int i = 0; t->pidfd > 0 && i < TASK_CACHE && !pidfd; i++)
		if (cache[i].tid == t->tid && cache[i].pidfd == t->pidfd)
			pidfd = t->pidfd;
	if (!pidfd && (pidfd = (int)syscall(SYS_pidfd_open, t->tgid, 0)) < 0)
		return -ESRCH;
	got = (int)syscall(SYS_pidfd_getfd, pidfd, fd, 0);
	if (got < 0)
		got = errno == EBADF ? -EBADF : -errno;
	if (pidfd != t->pidfd)
		close(pidfd);
	return got;
}

static int inject(const struct policy_call *c, int fd, bool cloexec)
{
	int r = trap_inject_fd(c->listener, c->id, fd, cloexec);

	return r < 0 ? r : POLICY_RC_ANSWERED;
}

/* Re-open the file behind the task's fd n, as /proc/<pid>/fd/<n> does,
 * through our own /proc/self/fd. */
static int reopen_fd(const struct policy_call *c, const struct task *t, int pid, int n,
		     const struct fcall *f)
{
	struct task other = task_other(t, pid);
	struct iod_creds cr;
	char self[64];
	int got, fd, r;

	got = task_fd(&other, n);
	if (got < 0)
		return got == -EBADF ? -ENOENT : got;
	fscreds_for_op(&t->creds, false, &cr);
	snprintf(self, sizeof(self), "/proc/self/fd/%d", got);
	if (fscreds_enter(&cr) < 0) {
		close(got);
		return -EPERM;
	}
	fd = open(self, (int)(f->flags | O_CLOEXEC | O_NOCTTY) & ~O_CREAT, 0);
	r = fd < 0 ? -errno : 0;
	fscreds_leave();
	close(got);
	if (r < 0)
		return r;
	r = inject(c, fd, f->flags & O_CLOEXEC);
	close(fd);
	return r;
}

/* ---- answering ---- */

static int put_stat(const struct policy_call *c, uint64_t addr, const struct statx *x)
{
	struct stat st;

	memset(&st, 0, sizeof(st));
	st.st_dev = makedev(x->stx_dev_major, x->stx_dev_minor);
	st.st_ino = x->stx_ino;
	st.st_nlink = x->stx_nlink;
	st.st_mode = x->stx_mode;
	st.st_uid = x->stx_uid;
	st.st_gid = x->stx_gid;
	st.st_rdev = makedev(x->stx_rdev_major, x->stx_rdev_minor);
	st.st_size = (off_t)x->stx_size;
	st.st_blksize = x->stx_blksize;
	st.st_blocks = (blkcnt_t)x->stx_blocks;
	st.st_atim.tv_sec = x->stx_atime.tv_sec;
	st.st_atim.tv_nsec = x->stx_atime.tv_nsec;
	st.st_mtim.tv_sec = x->stx_mtime.tv_sec;
	st.st_mtim.tv_nsec = x->stx_mtime.tv_nsec;
	st.st_ctim.tv_sec = x->stx_ctime.tv_sec;
	st.st_ctim.tv_nsec = x->stx_ctime.tv_nsec;
	return sys_copy_to_user(c, addr, &st, sizeof(st));
}

/* Calls on an fd (AT_EMPTY_PATH and ""): done here on a copy of the fd. */
static int on_fd(const struct policy_call *c, const struct task *t, const struct fcall *f,
		 int64_t *val)
{
	struct iod_creds cr;
	struct statx x;
	int fd, r;

	fd = f->dirfd == AT_FDCWD ? open(".", O_PATH | O_CLOEXEC) : task_fd(t, f->dirfd);
	if (f->dirfd == AT_FDCWD) {
		/* The task's cwd, not ours. */
		char p[64];
		if (fd >= 0)
			close(fd);
		snprintf(p, sizeof(p), "/proc/%d/task/%d/cwd", (int)t->tgid, (int)t->tid);
		fd = open(p, O_PATH | O_CLOEXEC);
		if (fd < 0)
			return -errno;
	}
	if (fd < 0)
		return fd;
	/* A stat of an fd checks no permission: no credentials to take on. */
	fscreds_for_op(&t->creds, f->real_creds, &cr);
	if (f->op != IOD_OP_STAT && fscreds_enter(&cr) < 0) {
		close(fd);
		return -EPERM;
	}
	switch (f->op) {
	case IOD_OP_STAT:
		r = statx(fd, "", AT_EMPTY_PATH | (f->at_flags & AT_STATX_SYNC_TYPE),
			  (unsigned)f->arg0, &x);
		break;
	case IOD_OP_ACCESS:
		r = (int)syscall(SYS_faccessat2, fd, "", (int)f->mode, AT_EMPTY_PATH | AT_EACCESS);
		break;
	case IOD_OP_CHMOD:
		r = (int)syscall(SYS_fchmodat2, fd, "", (mode_t)f->mode, AT_EMPTY_PATH);
		break;
	case IOD_OP_CHOWN:
		r = fchownat(fd, "", (uid_t)f->arg0, (gid_t)f->arg1, AT_EMPTY_PATH);
		break;
	default:
		r = -1;
		errno = EOPNOTSUPP;
		break;
	}
	r = r < 0 ? -errno : 0;
	if (f->op != IOD_OP_STAT)
		fscreds_leave();
	close(fd);
	if (r < 0)
		return r;
	*val = 0;
	if (f->op == IOD_OP_STAT)
		return f->out == OUT_STATX ? sys_copy_to_user(c, f->out_addr, &x, sizeof(x))
					   : put_stat(c, f->out_addr, &x);
	return 0;
}

static int read_times(const struct policy_call *c, const struct fcall *f, struct iod_req *r)
{
	if (!f->times_addr) {
		r->flags |= IOD_UTIME_NULL;
		return 0;
	}
	switch (f->times) {
	case T_UTIMBUF: {
		struct utimbuf u;
		if (sys_copy_from_user(c, &u, f->times_addr, sizeof(u)) < 0)
			return -EFAULT;
		r->times[0] = u.actime;
		r->times[2] = u.modtime;
		return 0;
	}
	case T_TIMEVAL: {
		struct timeval tv[2];
		if (sys_copy_from_user(c, tv, f->times_addr, sizeof(tv)) < 0)
			return -EFAULT;
		for (int i = 0; i < 2; i++) {
			if (tv[i].tv_usec < 0 || tv[i].tv_usec >= 1000000)
				return -EINVAL;
			r->times[2 * i] = tv[i].tv_sec;
			r->times[2 * i + 1] = tv[i].tv_usec * 1000;
		}
		return 0;
	}
	case T_TIMESPEC: {
		struct timespec ts[2];
		if (sys_copy_from_user(c, ts, f->times_addr, sizeof(ts)) < 0)
			return -EFAULT;
		for (int i = 0; i < 2; i++) {
			r->times[2 * i] = ts[i].tv_sec;
			r->times[2 * i + 1] = ts[i].tv_nsec;
		}
		return 0;
	}
	case T_NONE:
		break;
	}
	return 0;
}

static bool notif_alive(void *arg)
{
	return sys_notif_valid(arg) == 0;
}

/* The answer to a call from its completion: 0 with *val, -errno, or
 * POLICY_RC_ANSWERED (an fd was injected) / POLICY_RC_CONTINUE. */
static int answer_from(const struct policy_call *c, const struct fcall *f,
		       const struct iod_resp *resp, int fd, int64_t *val)
{
	int rc;

	*val = 0;
	if (resp->res < 0) {
		if (fd >= 0)
			close(fd);
		return (int)resp->res;
	}
	if (fd >= 0) {
		rc = inject(c, fd, f->flags & O_CLOEXEC);
		close(fd);
		return rc;
	}
	*val = resp->res;
	switch (f->out) {
	case OUT_STAT:
		if (resp->data_len < sizeof(struct statx))
			return -EIO;
		*val = 0;
		return put_stat(c, f->out_addr, (const struct statx *)resp->data);
	case OUT_STATX:
		if (resp->data_len < sizeof(struct statx))
			return -EIO;
		*val = 0;
		return sys_copy_to_user(c, f->out_addr, resp->data, sizeof(struct statx));
	case OUT_STATFS:
		if (resp->data_len < sizeof(struct statfs))
			return -EIO;
		*val = 0;
		return sys_copy_to_user(c, f->out_addr, resp->data, sizeof(struct statfs));
	case OUT_BUF:
		if (resp->data_len > f->out_size)
			return -EIO;
		if (resp->data_len && f->out_size)
			return sys_copy_to_user(c, f->out_addr, resp->data, resp->data_len);
		return 0;
	case OUT_NONE:
		break;
	}
	if (f->op == IOD_OP_CHDIR)
		return POLICY_RC_CONTINUE;
	return 0;
}

/* A call answered when its completion comes (iod_client_submit). */
struct pending_call {
	struct policy_call c;
	struct fcall f;
	struct iod_req *key; /* the request, when its answer may be cached */
};

static void finish_call(void *arg, const struct iod_resp *resp, int fd)
{
	struct pending_call *pc = arg;
	int64_t val = 0;
	int rc = resp ? answer_from(&pc->c, &pc->f, resp, fd, &val) : -EIO;

	if (resp && pc->key)
		meta_cache_put(pc->key, resp);

	if (rc != POLICY_RC_ANSWERED)
		trap_respond(pc->c.listener, pc->c.id, rc < 0 ? -rc : 0, val,
			     rc == POLICY_RC_CONTINUE);
	free(pc);
}

static int sys_iod_send(const struct policy_call *c, struct iod_client *ic, struct fcall *fp,
			const struct task *tp, const char *p1, const char *p2, int link_fd,
			int64_t *val);

int sys_iod(const struct policy_call *c, int64_t *val)
{
	struct iod_client *ic = c->ctx ? c->ctx->iod : NULL;
	char p1[PATH_MAX + 1], p2[PATH_MAX + 1];
	struct fcall f;
	struct task t;
	int rc, link_fd = -1;

	*val = 0;
	if (!ic)
		return -ENOSYS;
	cur.ic = ic;
	cur.c = c;
	cur.t = &t;
	rc = decode(c, &f);
	if (rc < 0)
		return rc;
	/* utimensat(fd, NULL, ...): futimens, no path at all. */
	if (c->nr == SYS_utimensat && !f.path)
		return POLICY_RC_CONTINUE;
	if ((rc = read_path(c, f.path, p1, sizeof(p1))) < 0)
		return rc;
	if (f.has2 && (rc = read_path(c, f.path2, p2, sizeof(p2))) < 0)
		return rc;
	if ((rc = read_task(c, &t)) < 0)
		return rc;
	if (p1[0] == '\0' && !f.text1 && f.op == IOD_OP_LINK && (f.at_flags & AT_EMPTY_PATH)) {
		/* linkat(fd, "", ..., AT_EMPTY_PATH): the file goes to iod with
		 * the request.  The kernel asks for CAP_DAC_READ_SEARCH unless
		 * the caller opened the file itself (6.10+); since any fd can be
		 * linked through /proc/self/fd/N without a capability anyway,
		 * that check guards nothing here and is not repeated. */
		if (f.dirfd == AT_FDCWD)
			return -EPERM; /* the cwd is a directory */
		link_fd = task_fd(&t, f.dirfd);
		if (link_fd < 0)
			return link_fd;
		f.at_flags |= AT_SYMLINK_FOLLOW;
	} else if (p1[0] == '\0' && !f.text1) {
		if (!(f.at_flags & AT_EMPTY_PATH) || f.has2)
			return -ENOENT;
		return on_fd(c, &t, &f, val);
	}
	rc = sys_iod_send(c, ic, &f, &t, p1, p2, link_fd, val);
	if (link_fd >= 0)
		close(link_fd);
	return rc;
}

/* The rest of sys_iod: the paths, the request, its answer.  link_fd >= 0:
 * the file to link (p1 is then ""). */
static int sys_iod_send(const struct policy_call *c, struct iod_client *ic, struct fcall *fp,
			const struct task *tp, const char *p1, const char *p2, int link_fd,
			int64_t *val)
{
	union iod_req_entry in;
	union iod_resp_entry out;
	char s1[PATH_MAX + 1], s2[PATH_MAX + 1];
	struct iod_req *r = &in.req;
	struct fcall f = *fp;
	struct task t = *tp;
	struct pending_call *pc;
	int rc, fd = -1, reopen_pid;
	size_t l1, l2 = 0;

	if (f.op == IOD_OP_GETXATTR) {
		/* path2 is the attribute's name, not a place */
		strcpy(s2, p2);
	} else if (f.has2) {
		if (p2[0] == '\0')
			return -ENOENT;
		if ((rc = sandbox_path(&t, f.dirfd2, p2, s2, sizeof(s2))) < 0 ||
		    (rc = proc_rewrite(s2, sizeof(s2), &t, false, &fd)) < 0)
			return rc;
	}
	if (f.text1 || link_fd >= 0) {
		strcpy(s1, p1);
	} else {
		if ((rc = sandbox_path(&t, f.dirfd, p1, s1, sizeof(s1))) < 0)
			return rc;
		reopen_pid = proc_rewrite(s1, sizeof(s1), &t, f.follow, &fd);
		if (reopen_pid < 0)
			return reopen_pid;
		if (reopen_pid > 0) {
			if (f.op == IOD_OP_OPEN)
				return reopen_fd(c, &t, reopen_pid, fd, &f);
			if (f.op == IOD_OP_STAT) {
				struct task other = task_other(&t, reopen_pid);
				f.dirfd = fd;
				return on_fd(c, &other, &f, val);
			}
			if (f.op == IOD_OP_LINK) {
				/* The O_TMPFILE idiom: link /proc/self/fd/N. */
				struct task other = task_other(&t, reopen_pid);
				link_fd = task_fd(&other, fd);
				if (link_fd < 0)
					return link_fd == -EBADF ? -ENOENT : link_fd;
				rc = sys_iod_send(c, ic, &f, &t, "", p2, link_fd, val);
				close(link_fd);
				return rc;
			}
			return -EOPNOTSUPP;
		}
	}
	l1 = strlen(s1) + 1;
	if (f.has2)
		l2 = strlen(s2) + 1;
	if (l1 + l2 > IOD_PATHS_MAX)
		return -ENAMETOOLONG;
	memset(r, 0, sizeof(*r));
	r->hdr.opcode = (uint16_t)f.op;
	r->flags = f.flags;
	r->at_flags = f.at_flags;
	r->mode = f.mode;
	r->arg0 = f.arg0;
	r->arg1 = f.arg1;
	r->path_len = (uint32_t)l1;
	r->path2_len = (uint32_t)l2;
	memcpy(r->paths, s1, l1);
	if (l2)
		memcpy(r->paths + l1, s2, l2);
	if (f.op == IOD_OP_UTIMENS && (rc = read_times(c, &f, r)) < 0)
		return rc;
	if (f.op == IOD_OP_OPEN) {
		/* open(2) ignores unknown flags; openat2 refuses them. */
		r->flags &= OPEN_FLAGS_KNOWN;
		r->flags |= O_LARGEFILE;
	}
	if (f.op == IOD_OP_MKNOD) {
		mode_t type = f.mode & S_IFMT;
		if (type != 0 && type != S_IFREG && type != S_IFIFO)
			return -EPERM;
	}
	fscreds_for_op(&t.creds, f.real_creds, &r->creds);

	r->hdr.flags = 0;
	if (ic->cache > 0 && ic->root_ro && link_fd < 0 && iod_op_cacheable(f.op)) {
		union {
			struct iod_resp resp;
			unsigned char raw[sizeof(struct iod_resp) + sizeof(struct statx)];
		} hit;
		int64_t res;

		if (meta_cache_get(r, &res, hit.resp.data)) {
			hit.resp.res = res;
			hit.resp.data_len =
			    f.op == IOD_OP_STAT && res == 0 ? sizeof(struct statx) : 0;
			return answer_from(c, &f, &hit.resp, -1, val);
		}
		r->hdr.flags = IOD_REQ_CACHE;
	}
	size_t keep = r->hdr.flags & IOD_REQ_CACHE ? offsetof(struct iod_req, paths) + l1 : 0;
	pc = malloc(sizeof(*pc) + keep);
	if (!pc)
		return -ENOMEM;
	pc->c = *c;
	pc->f = f;
	pc->key = NULL;
	if (keep) {
		pc->key = (struct iod_req *)(pc + 1);
		memcpy(pc->key, r, keep);
	}
	rc = iod_client_submit(ic, r, link_fd, finish_call, pc);
	if (rc == -EAGAIN) {
		/* Every slot is taken (by opens blocked in iod, say): wait
		 * for this one instead. */
		free(pc);
		rc = iod_client_call(ic, r, link_fd, &out.resp, &fd, notif_alive, (void *)c);
		if (rc < 0)
			return rc == -ENOENT ? -ENOENT : -EIO;
		if (r->hdr.flags & IOD_REQ_CACHE)
			meta_cache_put(r, &out.resp);
		return answer_from(c, &f, &out.resp, fd, val);
	}
	if (rc < 0) {
		free(pc);
		return -EIO;
	}
	/* Usually iod answers within microseconds: wait that long here, so
	 * that the answer goes out now rather than after another turn of the
	 * supervisor's loop. */
	iod_client_dispatch(ic, true);
	return POLICY_RC_ANSWERED;
}
