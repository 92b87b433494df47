/* One request, from its ring entry to its completion.
 *
 * Every path is resolved under the sandbox's root with openat2(
 * RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS), as the workload: a request runs
 * with the credentials it carries (an io_uring personality per set of
 * credentials; fscreds_enter around the steps done as plain syscalls).
 * Nothing is ever looked up by name except one component in a directory
 * that openat2 resolved:
 *
 *   resolve-then-act  open, stat, access, readlink, chmod, chown, utimens,
 *		truncate, chdir, statfs, getxattr, listxattr: openat2 the whole
 *		path (O_PATH, O_NOFOLLOW for the l- variants), then act on the fd
 *		(AT_EMPTY_PATH, or iod's own /proc/self/fd/N)
 *   parent-then-name  mkdir, mknod, unlink, rename, link, symlink: openat2
 *		the parent directory, then the *at call on the last name (one
 *		component, which these calls never follow)
 *
 * A job goes through stages; in io_uring mode a stage's steps are SQEs and
 * the job waits for their CQEs, in sync mode they run at once.  Steps that
 * io_uring has no opcode for (readlinkat, fchmodat2, fchownat, utimensat,
 * faccessat2, fstatfs, truncate, mknodat, getxattrat, listxattrat) are
 * plain syscalls in both modes.
 *
 * Offload-all requests name no path: FILE_ADD keeps a regular file the
 * guest took from the workload (the workload's own open file: the same
 * position, flags and access mode), READ, WRITE and FSYNC act on it with
 * the data in the sandbox's data area, FILE_DROP closes it. */
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "libcommon/fscreds.h"
#include "libcommon/launch_proto.h"
#include "libcommon/log.h"
#include "services/iod/iod.h"

#ifndef SYS_fchmodat2
#define SYS_fchmodat2 452
#endif

#define URING_ENTRIES	     256
#define PERSONALITIES	     64
#define RESOLVE_SANDBOX	     (RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)
#define RESOLVE_RETRIES	     64
#define IOWQ_BOUNDED_WORKERS 512

struct job {
	struct job *next; /* on its sandbox's overflow list */
	struct sbx *sb;
	int stage;
	int pending; /* SQEs in flight */
	bool done;
	const char *dotpath; /* the path whose last name is ".", ".." or none (the root) */
	int fd[2];	     /* what the first stage resolved */
	int64_t res[2];
	int personality; /* 0: none (sync mode or registration failed) */
	int retries;	 /* of the resolution, after a scoped ".." raced */
	bool no_xdev;	 /* RESOLVE_NO_XDEV added, for the guest's cache (IOD_REQ_CACHE) */
	bool created;	 /* open: the file did not exist, O_CREAT made it */
	bool unblock;	 /* open: O_NONBLOCK was added (sync mode, FIFO) */
	char reopen[64]; /* open: /proc/self/fd/N of the resolved file */
	struct timespec t0;
	struct open_how how[2];
	char *name[2]; /* last components, in split[] */
	char split[2][PATH_MAX + 2];
	struct statx stx;
	/* Both entries end in a flexible array, inside a union whose raw[]
	 * gives it its room: clang calls that a GNU extension. */
#ifdef __clang__
#pragma clang diagnostic push
#pragma clang diagnostic ignored "-Wgnu-variable-sized-type-not-at-end"
#endif
	union iod_req_entry in;
	union iod_resp_entry out;
#ifdef __clang__
#pragma clang diagnostic pop
#endif
};

static struct {
	struct iod_creds creds;
	int id;
	uint64_t used;
} pers[PERSONALITIES];
static uint64_t pers_clock;
static unsigned overflowing; /* sandboxes with completions waiting */

int exec_uring_fd(void)
{
	return iod.uring_ok ? iod.uring.ring_fd : -1;
}

int exec_init(struct qerr *err)
{
	int r;

	if (iod.mode == IOD_MODE_SYNC)
		return 0;
	r = io_uring_queue_init(URING_ENTRIES, &iod.uring, 0);
	if (r < 0)
		return qerr_sys(err, -r, "io_uring_queue_init");
	iod.uring_ok = true;
	/* Path lookups that cannot finish without blocking go to io-wq's
	 * bounded workers, by default 4 per CPU: eight FIFO opens waiting
	 * for a writer would stop every sandbox's lookups.  Each sandbox
	 * holds at most IOD_RING_ENTRIES; allow many more workers. */
	unsigned workers[2] = {IOWQ_BOUNDED_WORKERS, 0};
	r = io_uring_register_iowq_max_workers(&iod.uring, workers);
	if (r < 0)
		qlog_warn("io_uring: cannot raise io-wq's workers to %u: %s", IOWQ_BOUNDED_WORKERS,
			  strerror(-r));
	return 0;
}

void exec_fini(void)
{
	if (!iod.uring_ok)
		return;
	for (int i = 0; i < PERSONALITIES; i++)
		if (pers[i].id > 0)
			io_uring_unregister_personality(&iod.uring, pers[i].id);
	io_uring_queue_exit(&iod.uring);
	iod.uring_ok = false;
}

/* The personality for these credentials, registered on first use; 0 when
 * none can be had (the job then runs its steps as plain syscalls). */
static int personality_for(const struct iod_creds *c)
{
	int victim = 0, id;

	for (int i = 0; i < PERSONALITIES; i++) {
		if (pers[i].id > 0 && fscreds_equal(&pers[i].creds, c)) {
			pers[i].used = ++pers_clock;
			return pers[i].id;
		}
		if (pers[i].used < pers[victim].used)
			victim = i;
	}
	if (fscreds_enter(c) < 0)
		return 0;
	id = io_uring_register_personality(&iod.uring);
	fscreds_leave();
	if (id <= 0) {
		qlog_warn("io_uring personality: %s", strerror(-id));
		return 0;
	}
	if (pers[victim].id > 0)
		io_uring_unregister_personality(&iod.uring, pers[victim].id);
	pers[victim].creds = *c;
	pers[victim].id = id;
	pers[victim].used = ++pers_clock;
	return id;
}

/* ---- completing ---- */

static double since(const struct timespec *t0)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)(t.tv_sec - t0->tv_sec) + (double)(t.tv_nsec - t0->tv_nsec) / 1e9;
}

static void job_free(struct job *j)
{
	struct sbx *sb = j->sb;

	for (int i = 0; i < 2; i++)
		if (j->fd[i] >= 0)
			close(j->fd[i]);
	free(j);
	sb->inflight--; /* the loop frees a dead sandbox once this is 0 */
}

/* The fd the guest sent ahead of request user_data (IOD_REQ_FD): it is
 * already queued on the connection, since the guest sends it before it
 * pushes the request.  Anything else is a broken guest. */
static int take_guest_fd(struct sbx *sb, uint64_t user_data)
{
	struct iod_fdmsg m;
	int fd = -1;
	ssize_t n = recv_fd(sb->conn, &m, sizeof(m), &fd);

	if (n != (ssize_t)sizeof(m) || fd < 0 || m.user_data != user_data) {
		if (fd >= 0)
			close(fd);
		sb->broken = true;
		return -EPROTO;
	}
	return fd;
}

/* Tell the guest its CQ has answers, if it is not polling for them. */
static void notify(struct sbx *sb)
{
	int r = ring_notify_peer(&sb->ring);

	if (r < 0)
		sb->broken = true;
	else if (r > 0)
		iod_metrics_wakeup();
}

static void push_or_queue(struct job *j)
{
	struct sbx *sb = j->sb;
	int r;

	if (sb->dead || sb->broken) {
		job_free(j);
		return;
	}
	if (!sb->overflow) {
		r = ring_cq_push(&sb->ring, &j->out);
		if (r == 0) {
			notify(sb);
			job_free(j);
			return;
		}
		if (r != -EAGAIN) {
			sb->broken = true;
			job_free(j);
			return;
		}
		overflowing++;
		sb->overflow_tail = &sb->overflow;
	}
	j->next = NULL;
	*sb->overflow_tail = j;
	sb->overflow_tail = &j->next;
}

void exec_flush_overflow(struct sbx *sb)
{
	bool pushed = false;

	while (sb->overflow) {
		struct job *j = sb->overflow;

		if (!sb->dead && !sb->broken) {
			int r = ring_cq_push(&sb->ring, &j->out);
			if (r == -EAGAIN)
				break;
			if (r < 0)
				sb->broken = true;
			else
				pushed = true;
		}
		sb->overflow = j->next;
		if (!sb->overflow)
			overflowing--;
		job_free(j);
		if (!sb->overflow)
			break;
	}
	if (pushed)
		notify(sb);
}

bool exec_has_overflow(void)
{
	return overflowing > 0;
}

/* Whether the guest may keep this answer: the walk never left the
 * sandbox's read-only root mount (RESOLVE_NO_XDEV held), and the answer
 * says something about the files there, not about this moment (a failed
 * credential switch, EAGAIN after the retries, memory). */
static bool cacheable(const struct job *j, int64_t res)
{
	if (!j->no_xdev)
		return false;
	if (res >= 0)
		return j->in.req.hdr.opcode != IOD_OP_OPEN;
	switch (-res) {
	case ENOENT:
	case ENOTDIR:
	case EACCES:
	case ELOOP:
	case EROFS:
	case EISDIR:
	case ENAMETOOLONG:
		return true;
	}
	return false;
}

/* Finish: res (>= 0 or -errno) plus data_len bytes already in out.data. */
static void complete(struct job *j, int64_t res, uint32_t data_len)
{
	struct iod_resp *o = &j->out.resp;
	unsigned op = j->in.req.hdr.opcode;

	j->done = true;
	o->hdr.opcode = (uint16_t)op;
	o->hdr.flags = cacheable(j, res) ? IOD_RESP_CACHEABLE : 0;
	o->hdr.user_data = j->in.req.hdr.user_data;
	if (op == IOD_OP_OPEN && res >= 0) {
		struct iod_fdmsg m = {.user_data = o->hdr.user_data};
		int fd = (int)res, r = send_with_fds(j->sb->conn, &m, sizeof(m), &fd, 1);

		close(fd);
		if (r < 0) {
			res = -EIO;
		} else {
			res = 0;
			o->hdr.flags = IOD_RESP_FD;
		}
		data_len = 0;
	}
	o->res = res;
	o->data_len = data_len;
	o->hdr.len = (uint32_t)(offsetof(struct iod_resp, data) - sizeof(o->hdr)) + data_len;
	iod_metrics_op(op, res, since(&j->t0));
	j->sb->ops++;
	/* advance() hands it on: the job must outlive the stage function. */
}

/* ---- steps ---- */

static struct io_uring_sqe *sqe_for(struct job *j, int slot)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&iod.uring);

	if (!sqe) {
		exec_submit();
		sqe = io_uring_get_sqe(&iod.uring);
	}
	if (!sqe)
		return NULL;
	io_uring_sqe_set_data(sqe, (void *)((uintptr_t)j | (uintptr_t)slot));
	iod.sq_pending++;
	j->pending++;
	return sqe;
}

/* After the prep helper, which zeroes sqe->personality: the step runs with
 * the workload's credentials, never iod's. */
static void as_workload(struct io_uring_sqe *sqe, const struct job *j)
{
	sqe->personality = (uint16_t)j->personality;
}

static bool use_uring(const struct job *j)
{
	return iod.uring_ok && j->personality > 0;
}

/* Run fn under the job's credentials. */
#define AS_WORKLOAD(j, expr)                                                                       \
	({                                                                                         \
		long rv_;                                                                          \
		if (fscreds_enter(&(j)->in.req.creds) < 0) {                                       \
			rv_ = -EPERM;                                                              \
		} else {                                                                           \
			rv_ = (expr);                                                              \
			rv_ = rv_ < 0 ? -errno : rv_;                                              \
			fscreds_leave();                                                           \
		}                                                                                  \
		rv_;                                                                               \
	})

static void step_openat2(struct job *j, int slot, const char *path, uint64_t flags, uint64_t mode)
{
	struct open_how *how = &j->how[slot];
	uint64_t extra = 0;

	/* What the workload's own openat2 asked, on top of ours. */
	if (j->in.req.hdr.opcode == IOD_OP_OPEN)
		extra = j->in.req.arg1 & (RESOLVE_NO_XDEV | RESOLVE_NO_SYMLINKS);
	if (j->no_xdev)
		extra |= RESOLVE_NO_XDEV;

	/* O_PATH takes no other flags (openat2 is strict); a terminal opened
	 * without O_NOCTTY could become iod's controlling terminal. */
	if (!(flags & O_PATH))
		flags |= O_NOCTTY;
	*how = (struct open_how){
	    .flags = flags | O_CLOEXEC, .mode = mode, .resolve = RESOLVE_SANDBOX | extra};
	if (use_uring(j)) {
		struct io_uring_sqe *sqe = sqe_for(j, slot);
		if (sqe) {
			io_uring_prep_openat2(sqe, j->sb->rootfd, path, how);
			as_workload(sqe, j);
			return;
		}
	}
	j->res[slot] = AS_WORKLOAD(j, syscall(SYS_openat2, j->sb->rootfd, path, how, sizeof(*how)));
}

/* Split path into split[slot] = parent and name[slot] = the last component
 * (with its trailing slash, if any: the *at call then insists on a
 * directory).  false when there is no plain last name. */
static bool split_path(struct job *j, int slot, const char *path)
{
	char *p = j->split[slot], *end, *last;
	size_t n = strlen(path);
	bool slash = false;

	if (n > PATH_MAX)
		n = PATH_MAX;
	memcpy(p, path, n);
	p[n] = '\0';
	while (n > 1 && p[n - 1] == '/') {
		p[--n] = '\0';
		slash = true;
	}
	end = p + n;
	last = strrchr(p, '/');
	last = last ? last + 1 : p;
	if (last == end || strcmp(last, ".") == 0 || strcmp(last, "..") == 0)
		return false;
	/* The name moves one byte right, to make room for the parent's NUL. */
	memmove(last + 1, last, (size_t)(end - last) + 1);
	if (slash) {
		end[1] = '/';
		end[2] = '\0';
	}
	*last = '\0';
	j->name[slot] = last + 1;
	if (p[0] == '\0') { /* "name": relative to the root */
		p[0] = '.';
		p[1] = '\0';
	}
	return true;
}

static bool is_split_op(unsigned op)
{
	return op == IOD_OP_MKDIR || op == IOD_OP_MKNOD || op == IOD_OP_UNLINK ||
	       op == IOD_OP_RENAME || op == IOD_OP_LINK || op == IOD_OP_SYMLINK;
}

/* The errno the kernel gives these calls on ".", ".." or "/" as the last
 * name (the path up to it resolved). */
static int dot_errno(const struct iod_req *r, const char *which)
{
	size_t n = strlen(which), blen;
	const char *b;

	while (n > 1 && which[n - 1] == '/')
		n--;
	for (b = which + n; b > which && b[-1] != '/';)
		b--;
	blen = (size_t)(which + n - b);
	switch (r->hdr.opcode) {
	case IOD_OP_UNLINK:
		if (!(r->at_flags & AT_REMOVEDIR))
			return EISDIR;
		if (blen == 0) /* the root */
			return EBUSY;
		return blen == 2 ? ENOTEMPTY : EINVAL;
	case IOD_OP_RENAME:
		return EBUSY;
	default:
		return EEXIST;
	}
}

static void stage_resolve(struct job *j)
{
	const struct iod_req *r = &j->in.req;
	const char *path = r->paths, *path2 = iod_req_path2(r);
	unsigned op = r->hdr.opcode;
	uint64_t nofollow = (r->at_flags & AT_SYMLINK_NOFOLLOW) ? O_NOFOLLOW : 0;

	if ((path[0] == '\0' && !(r->hdr.flags & IOD_REQ_FD)) || (path2 && path2[0] == '\0')) {
		complete(j, -ENOENT, 0);
		return;
	}
	if (is_split_op(op)) {
		/* symlink's first path is the link's text: only path2 is a place. */
		int first = op == IOD_OP_SYMLINK ? 1 : 0;
		bool follow_old = op == IOD_OP_LINK && (r->at_flags & AT_SYMLINK_FOLLOW);

		for (int s = first; s < (path2 ? 2 : 1); s++) {
			const char *p = s ? path2 : path;

			if (s == 0 && (r->hdr.flags & IOD_REQ_FD)) {
				j->res[0] = take_guest_fd(j->sb, r->hdr.user_data);
				continue;
			}
			if (s == 0 && follow_old) {
				step_openat2(j, 0, p, O_PATH, 0);
				continue;
			}
			if (!split_path(j, s, p)) {
				j->dotpath = p;
				step_openat2(j, s, p, O_PATH | O_DIRECTORY, 0);
				continue;
			}
			step_openat2(j, s, j->split[s], O_PATH | O_DIRECTORY, 0);
		}
		if (first)
			j->res[0] = 0;
		return;
	}
	switch (op) {
	case IOD_OP_OPEN:
		/* open(2) ignores other flags with O_PATH; openat2 refuses them.
		 * Anything else is first resolved without opening it, so that
		 * nothing is opened before it is known not to be a device the
		 * sandbox may not use (stage_act). */
		step_openat2(j, 0, path, O_PATH | (r->flags & (O_DIRECTORY | O_NOFOLLOW)), 0);
		break;
	case IOD_OP_READLINK:
		step_openat2(j, 0, path, O_PATH | O_NOFOLLOW, 0);
		break;
	case IOD_OP_CHDIR:
		step_openat2(j, 0, path, O_PATH | O_DIRECTORY, 0);
		break;
	default:
		step_openat2(j, 0, path, O_PATH | nofollow, 0);
		break;
	}
}

/* The device nodes a sandbox may open: the OCI defaults (null, zero, full,
 * random, urandom, tty, ptmx and the pty slaves).  iod is not in the
 * sandbox's device cgroup, so it checks itself: anything else, EPERM, as
 * the cgroup would answer. */
static bool device_allowed(const struct stat *st)
{
	unsigned ma = major(st->st_rdev), mi = minor(st->st_rdev);

	if (!S_ISCHR(st->st_mode) && !S_ISBLK(st->st_mode))
		return true;
	if (S_ISBLK(st->st_mode))
		return false;
	return (ma == 1 && (mi == 3 || mi == 5 || mi == 7 || mi == 8 || mi == 9)) ||
	       (ma == 5 && (mi == 0 || mi == 2)) || (ma >= 136 && ma <= 143);
}

/* A filesystem where an open or a stat of a file already found only waits
 * for the local disk, if at all (not NFS, not FUSE, whose daemon may be
 * the sandbox itself): that step may then run here, in iod's thread,
 * rather than in an io-wq worker.  io_uring cannot do it inline: an open
 * of /proc/self/fd/N always goes to io-wq (a magic link is not resolved
 * from the dcache alone), and so does every statx.  On this kind of
 * machine the hand-off to the worker and back costs more than the call
 * (docs/iod.md, "The supervisor's side of the wait"). */
static bool local_fs(int fd)
{
	struct statfs sfs;

	return fstatfs(fd, &sfs) == 0 && iod_fs_offloadable((long)sfs.f_type);
}

/* The open below, done here: a regular file or a directory on a local
 * filesystem, not truncated.  O_NONBLOCK so that a lease held on the file
 * answers EAGAIN rather than stopping iod for lease-break-time: that open
 * then goes to io-wq after all, where it may wait.  False: not done. */
static bool open_here(struct job *j, const struct stat *st, uint64_t flags, mode_t mode)
{
	long fd;

	if (!(S_ISREG(st->st_mode) || S_ISDIR(st->st_mode)) || (flags & (O_TRUNC | __O_TMPFILE)) ||
	    !local_fs(j->fd[0]))
		return false;
	fd = AS_WORKLOAD(
	    j, openat(AT_FDCWD, j->reopen, (int)(flags | O_CLOEXEC | O_NOCTTY | O_NONBLOCK), mode));
	if (fd == -EAGAIN && !(flags & O_NONBLOCK))
		return false;
	if (fd >= 0 && !(flags & O_NONBLOCK) && fcntl((int)fd, F_SETFL, (int)flags) < 0) {
		int e = errno;

		close((int)fd);
		fd = -e;
	}
	j->res[1] = fd;
	iod_metrics_inline();
	return true;
}

/* open, after the O_PATH resolution: check what it is, then open that very
 * inode (iod's own /proc/self/fd/N, so a rename in between changes
 * nothing), or create it when it was missing and O_CREAT says so. */
static void open_act(struct job *j)
{
	const struct iod_req *r = &j->in.req;
	uint64_t flags = r->flags & ~(uint64_t)(O_CLOEXEC | O_NOFOLLOW);
	struct io_uring_sqe *sqe;
	struct stat st;

	if (j->res[0] == -ENOENT && (r->flags & O_CREAT) && !(r->flags & O_PATH)) {
		uint64_t mode = r->mode & 07777 & ~r->creds.umask;

		j->created = true;
		if (!use_uring(j))
			flags |= O_NONBLOCK; /* it may have become a FIFO since */
		step_openat2(j, 1, r->paths, flags, mode);
		return;
	}
	if (j->res[0] < 0) {
		complete(j, j->res[0], 0);
		return;
	}
	j->fd[0] = (int)j->res[0];
	if (fstat(j->fd[0], &st) < 0) {
		complete(j, -errno, 0);
		return;
	}
	if (!device_allowed(&st)) {
		complete(j, -EPERM, 0);
		return;
	}
	if (r->flags & O_PATH) {
		/* The guest cannot hand an O_PATH file to the workload
		 * (SECCOMP_IOCTL_NOTIF_ADDFD takes only real files): a
		 * directory or a regular file is opened read-only instead;
		 * anything else cannot be had (docs/iod.md). */
		if (S_ISDIR(st.st_mode))
			flags = O_RDONLY | O_DIRECTORY;
		else if (S_ISREG(st.st_mode) || S_ISCHR(st.st_mode))
			flags = O_RDONLY | (S_ISCHR(st.st_mode) ? O_NONBLOCK : 0);
		else {
			complete(j, S_ISLNK(st.st_mode) ? -ELOOP : -ENXIO, 0);
			return;
		}
	}
	if (S_ISLNK(st.st_mode)) { /* O_NOFOLLOW met a symlink */
		complete(j, -ELOOP, 0);
		return;
	}
	if (!device_allowed(&st)) {
		complete(j, -EPERM, 0);
		return;
	}
	if ((r->flags & (O_CREAT | O_EXCL)) == (O_CREAT | O_EXCL)) {
		complete(j, -EEXIST, 0);
		return;
	}
	flags &= ~(uint64_t)(O_CREAT | O_EXCL);
	/* A FIFO's open waits for the other end: in sync mode it must not
	 * block iod, so it is opened non-blocking and the flag cleared after
	 * (a writer without a reader then gets ENXIO: docs/iod.md). */
	if (!use_uring(j) && S_ISFIFO(st.st_mode) && !(flags & O_NONBLOCK)) {
		flags |= O_NONBLOCK;
		j->unblock = true;
	}
	/* O_TMPFILE creates (in the directory resolved): it takes the mode. */
	mode_t mode = (flags & __O_TMPFILE) == __O_TMPFILE ? r->mode & 07777 & ~r->creds.umask : 0;

	snprintf(j->reopen, sizeof(j->reopen), "/proc/self/fd/%d", j->fd[0]);
	if (use_uring(j) && open_here(j, &st, flags, mode))
		return;
	if (use_uring(j) && (sqe = sqe_for(j, 1)) != NULL) {
		io_uring_prep_openat(sqe, AT_FDCWD, j->reopen, (int)(flags | O_CLOEXEC | O_NOCTTY),
				     mode);
		as_workload(sqe, j);
		return;
	}
	j->res[1] =
	    AS_WORKLOAD(j, openat(AT_FDCWD, j->reopen, (int)(flags | O_CLOEXEC | O_NOCTTY), mode));
}

static void open_done(struct job *j)
{
	int fd = (int)j->res[1];
	struct stat st;

	if (j->res[1] < 0) {
		complete(j, j->res[1], 0);
		return;
	}
	if (j->created) {
		/* Created, or found after all (a race): the same checks. */
		if (fstat(fd, &st) < 0 || !device_allowed(&st)) {
			close(fd);
			complete(j, -EPERM, 0);
			return;
		}
		j->unblock = !use_uring(j) && !(j->in.req.flags & O_NONBLOCK);
	}
	if (j->unblock) {
		int fl = fcntl(fd, F_GETFL);
		if (fl >= 0)
			fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
	}
	complete(j, fd, 0);
}

static void fd_path(int fd, char *buf, size_t len)
{
	snprintf(buf, len, "/proc/self/fd/%d", fd);
}

/* Drop what the first stage resolved and resolve again; back in
 * stage_act when that is done. */
static void resolve_again(struct job *j)
{
	for (int s = 0; s < 2; s++)
		if (j->res[s] > 0)
			close((int)j->res[s]);
	j->res[0] = j->res[1] = 0;
	j->dotpath = NULL;
	j->stage = 1;
	stage_resolve(j);
}

/* Lookups under a bind mount (a host /usr, a volume) never give a
 * cacheable answer, and trying costs twice: the walk with RESOLVE_NO_XDEV
 * leaves the kernel's lockless walk where it meets the mount, which
 * io_uring cannot do inline, so an io-wq worker takes it only to say
 * EXDEV, and the lookup is walked again.  So each sandbox remembers the
 * first names of the paths that met a mount ("usr" for /usr/lib/x, "lib"
 * for a /lib that is a symlink into it), and lookups below one are not
 * tried for the cache again.  That only ever makes fewer answers
 * cacheable, never more: a wrong guess costs speed, not correctness. */
static size_t first_name(const char *path, const char **name)
{
	size_t n;

	while (*path == '/')
		path++;
	n = strcspn(path, "/");
	*name = path;
	return n;
}

static bool crossing(const struct sbx *sb, const char *path)
{
	const char *name;
	size_t n = first_name(path, &name);

	if (n >= IOD_CROSSING_NAME) /* never kept */
		return false;
	for (unsigned i = 0; i < sb->n_crossing; i++)
		if (strncmp(sb->crossing[i], name, n) == 0 && sb->crossing[i][n] == '\0')
			return true;
	return false;
}

static void note_crossing(struct sbx *sb, const char *path)
{
	const char *name;
	size_t n = first_name(path, &name);

	if (n == 0 || n >= IOD_CROSSING_NAME || sb->n_crossing == IOD_CROSSING_MAX ||
	    crossing(sb, path))
		return;
	memcpy(sb->crossing[sb->n_crossing], name, n);
	sb->crossing[sb->n_crossing][n] = '\0';
	sb->n_crossing++;
}

static void stage_act(struct job *j)
{
	const struct iod_req *r = &j->in.req;
	unsigned op = r->hdr.opcode;
	unsigned char *data = j->out.resp.data;
	struct io_uring_sqe *sqe = NULL;
	char proc[64];
	long rv;
	int fd0, fd1;

	/* openat2 with RESOLVE_IN_ROOT answers EAGAIN when a rename or mount
	 * anywhere on the machine raced its walk of "..": it cannot prove the
	 * walk stayed inside.  The kernel's own lookups just retry; so do we. */
	if ((j->res[0] == -EAGAIN || j->res[1] == -EAGAIN) && j->retries < RESOLVE_RETRIES) {
		j->retries++;
		resolve_again(j);
		return;
	}
	/* The walk for the guest's cache met a mount (a bind mount, /tmp, a
	 * symlink into one): walk again without RESOLVE_NO_XDEV, unless the
	 * workload asked for it itself; that answer is not cacheable. */
	if (j->no_xdev && (j->res[0] == -EXDEV || j->res[1] == -EXDEV)) {
		note_crossing(j->sb, r->paths);
		if (!(op == IOD_OP_OPEN && (r->arg1 & RESOLVE_NO_XDEV))) {
			j->no_xdev = false;
			iod_metrics_xdev_walk();
			resolve_again(j);
			return;
		}
	}
	if (op == IOD_OP_OPEN) {
		open_act(j);
		return;
	}
	/* Take ownership of what resolved, first error wins. */
	for (int s = 0; s < 2; s++)
		if (j->res[s] > 0)
			j->fd[s] = (int)j->res[s];
	for (int s = 0; s < 2; s++) {
		if (j->res[s] < 0) {
			complete(j, j->res[s], 0);
			return;
		}
	}
	fd0 = j->fd[0];
	fd1 = j->fd[1];
	if (j->dotpath) {
		complete(j, -dot_errno(r, j->dotpath), 0);
		return;
	}
	switch (op) {
	case IOD_OP_STAT:
		/* statx of the fd checks no permission (the walk did, as the
		 * workload): on a local filesystem, here, as iod. */
		if (use_uring(j) && local_fs(fd0)) {
			j->res[0] =
			    statx(fd0, "", AT_EMPTY_PATH | (r->at_flags & AT_STATX_SYNC_TYPE),
				  (unsigned)r->arg0, &j->stx) < 0
				? -errno
				: 0;
			iod_metrics_inline();
			return;
		}
		if (use_uring(j) && (sqe = sqe_for(j, 0)) != NULL) {
			io_uring_prep_statx(sqe, fd0, "",
					    AT_EMPTY_PATH | (r->at_flags & AT_STATX_SYNC_TYPE),
					    (unsigned)r->arg0, &j->stx);
			as_workload(sqe, j);
			j->res[0] = 0;
			return;
		}
		rv = AS_WORKLOAD(j,
				 statx(fd0, "", AT_EMPTY_PATH | (r->at_flags & AT_STATX_SYNC_TYPE),
				       (unsigned)r->arg0, &j->stx));
		j->res[0] = rv;
		return; /* stage_done copies it out */
	case IOD_OP_ACCESS:
		rv = AS_WORKLOAD(
		    j, syscall(SYS_faccessat2, fd0, "", (int)r->mode, AT_EMPTY_PATH | AT_EACCESS));
		break;
	case IOD_OP_CHDIR:
		rv = AS_WORKLOAD(
		    j, syscall(SYS_faccessat2, fd0, "", X_OK, AT_EMPTY_PATH | AT_EACCESS));
		break;
	case IOD_OP_READLINK: {
		size_t n = r->arg0 < IOD_RESP_DATA_MAX ? (size_t)r->arg0 : IOD_RESP_DATA_MAX;

		struct stat st;

		/* readlinkat(fd, "") of a non-link says ENOENT; readlink(2) of
		 * the path says EINVAL. */
		if (fstat(fd0, &st) == 0 && !S_ISLNK(st.st_mode)) {
			complete(j, -EINVAL, 0);
			return;
		}
		rv = AS_WORKLOAD(j, readlinkat(fd0, "", (char *)data, n));
		complete(j, rv, rv > 0 ? (uint32_t)rv : 0);
		return;
	}
	case IOD_OP_CHMOD:
		rv = AS_WORKLOAD(
		    j, syscall(SYS_fchmodat2, fd0, "", (mode_t)(r->mode & 07777), AT_EMPTY_PATH));
		break;
	case IOD_OP_CHOWN:
		rv = AS_WORKLOAD(j,
				 fchownat(fd0, "", (uid_t)r->arg0, (gid_t)r->arg1, AT_EMPTY_PATH));
		break;
	case IOD_OP_UTIMENS: {
		struct timespec ts[2] = {{.tv_sec = r->times[0], .tv_nsec = r->times[1]},
					 {.tv_sec = r->times[2], .tv_nsec = r->times[3]}};

		rv = AS_WORKLOAD(
		    j, utimensat(fd0, "", (r->flags & IOD_UTIME_NULL) ? NULL : ts, AT_EMPTY_PATH));
		break;
	}
	case IOD_OP_TRUNCATE:
		fd_path(fd0, proc, sizeof(proc));
		rv = AS_WORKLOAD(j, truncate(proc, (off_t)r->arg0));
		break;
	case IOD_OP_STATFS: {
		struct statfs sfs;

		rv = AS_WORKLOAD(j, fstatfs(fd0, &sfs));
		if (rv == 0) {
			memcpy(data, &sfs, sizeof(sfs));
			complete(j, 0, sizeof(sfs));
			return;
		}
		break;
	}
	case IOD_OP_GETXATTR: {
		/* getxattrat(fd, "", AT_EMPTY_PATH) refuses an O_PATH fd
		 * (EBADF): go through iod's own /proc/self/fd/N, whose magic
		 * link lands on the resolved inode (the symlink itself for
		 * lgetxattr) and goes no further. */
		size_t n = r->arg0 < IOD_RESP_DATA_MAX ? (size_t)r->arg0 : IOD_RESP_DATA_MAX;

		fd_path(fd0, proc, sizeof(proc));
		rv = AS_WORKLOAD(j, getxattr(proc, iod_req_path2(r), data, n));
		complete(j, rv, rv > 0 && r->arg0 ? (uint32_t)rv : 0);
		return;
	}
	case IOD_OP_LISTXATTR: {
		size_t n = r->arg0 < IOD_RESP_DATA_MAX ? (size_t)r->arg0 : IOD_RESP_DATA_MAX;

		fd_path(fd0, proc, sizeof(proc));
		rv = AS_WORKLOAD(j, listxattr(proc, (char *)data, n));
		complete(j, rv, rv > 0 && r->arg0 ? (uint32_t)rv : 0);
		return;
	}
	case IOD_OP_MKDIR:
		if (use_uring(j) && (sqe = sqe_for(j, 0)) != NULL) {
			io_uring_prep_mkdirat(sqe, fd0, j->name[0],
					      r->mode & 07777 & ~r->creds.umask);
			as_workload(sqe, j);
			return;
		}
		rv = AS_WORKLOAD(j, mkdirat(fd0, j->name[0], r->mode & 07777 & ~r->creds.umask));
		break;
	case IOD_OP_MKNOD: {
		mode_t type = r->mode & S_IFMT;

		if (type != 0 && type != S_IFREG && type != S_IFIFO) {
			rv = -EPERM;
			break;
		}
		rv = AS_WORKLOAD(
		    j, mknodat(fd0, j->name[0], type | (r->mode & 07777 & ~r->creds.umask), 0));
		break;
	}
	case IOD_OP_UNLINK:
		if (use_uring(j) && (sqe = sqe_for(j, 0)) != NULL) {
			io_uring_prep_unlinkat(sqe, fd0, j->name[0],
					       (int)(r->at_flags & AT_REMOVEDIR));
			as_workload(sqe, j);
			return;
		}
		rv = AS_WORKLOAD(j, unlinkat(fd0, j->name[0], (int)(r->at_flags & AT_REMOVEDIR)));
		break;
	case IOD_OP_RENAME:
		if (use_uring(j) && (sqe = sqe_for(j, 0)) != NULL) {
			io_uring_prep_renameat(sqe, fd0, j->name[0], fd1, j->name[1], r->flags);
			as_workload(sqe, j);
			return;
		}
		rv = AS_WORKLOAD(j, renameat2(fd0, j->name[0], fd1, j->name[1], r->flags));
		break;
	case IOD_OP_LINK: {
		/* Following: link what openat2 resolved, through our own
		 * /proc/self/fd (a magic link of iod's, never the sandbox's). */
		bool follow = r->at_flags & AT_SYMLINK_FOLLOW;
		int olddir = follow ? AT_FDCWD : fd0;
		const char *oldname = follow ? proc : j->name[0];

		if (follow)
			fd_path(fd0, proc, sizeof(proc));
		if (use_uring(j) && (sqe = sqe_for(j, 0)) != NULL) {
			/* liburing copies nothing: proc must live in the job. */
			if (follow) {
				memcpy(j->split[0], proc, strlen(proc) + 1);
				oldname = j->split[0];
			}
			io_uring_prep_linkat(sqe, olddir, oldname, fd1, j->name[1],
					     follow ? AT_SYMLINK_FOLLOW : 0);
			as_workload(sqe, j);
			return;
		}
		rv = AS_WORKLOAD(
		    j, linkat(olddir, oldname, fd1, j->name[1], follow ? AT_SYMLINK_FOLLOW : 0));
		break;
	}
	case IOD_OP_SYMLINK:
		if (use_uring(j) && (sqe = sqe_for(j, 0)) != NULL) {
			io_uring_prep_symlinkat(sqe, r->paths, fd1, j->name[1]);
			as_workload(sqe, j);
			return;
		}
		rv = AS_WORKLOAD(j, symlinkat(r->paths, fd1, j->name[1]));
		break;
	default:
		rv = -ENOSYS;
		break;
	}
	complete(j, rv, 0);
}

/* ---- offload-all ---- */

/* io_uring takes its own reference to a file when the SQE is issued, at
 * submit: submit what is prepared before closing a registered file, so an
 * SQE prepared on it never meets its number reused by another file. */
static void file_close(struct sbx *sb, unsigned h)
{
	if (sb->files[h] < 0)
		return;
	exec_submit();
	close(sb->files[h]);
	sb->files[h] = -1;
}

void exec_files_close(struct sbx *sb)
{
	for (unsigned h = 0; h < IOD_FILES_MAX; h++)
		file_close(sb, h);
}

/* A regular file of a plain-data filesystem (iod_fs_offloadable): iod
 * reads what the workload would, never content made for its reader. */
static void file_add(struct job *j)
{
	const struct iod_req *r = &j->in.req;
	struct stat st;
	struct statfs sfs;
	int fd = take_guest_fd(j->sb, r->hdr.user_data);

	/* Whatever the handle held goes, even if the new file is refused. */
	file_close(j->sb, (unsigned)r->arg0);
	if (fd < 0) {
		complete(j, fd, 0);
		return;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || fstatfs(fd, &sfs) < 0 ||
	    !iod_fs_offloadable((long)sfs.f_type)) {
		close(fd);
		complete(j, -EBADFD, 0);
		return;
	}
	j->sb->files[r->arg0] = fd;
	complete(j, 0, 0);
}

/* READ, WRITE, FSYNC: one step on the registered file, as the workload
 * (a write clears set-id bits unless the writer may keep them). */
static void stage_handle(struct job *j)
{
	const struct iod_req *r = &j->in.req;
	unsigned op = r->hdr.opcode;
	unsigned char *buf;
	struct io_uring_sqe *sqe;
	int fd;

	if (!j->sb->data) { /* not an offload-all sandbox */
		if (op == IOD_OP_FILE_ADD && (fd = take_guest_fd(j->sb, r->hdr.user_data)) >= 0)
			close(fd);
		complete(j, -EOPNOTSUPP, 0);
		return;
	}
	if (op == IOD_OP_FILE_ADD) {
		file_add(j);
		return;
	}
	if (op == IOD_OP_FILE_DROP) {
		file_close(j->sb, (unsigned)r->arg0);
		complete(j, 0, 0);
		return;
	}
	fd = j->sb->files[r->arg0];
	if (fd < 0) {
		complete(j, -EBADF, 0);
		return;
	}
	buf = j->sb->data + (size_t)r->slot * IOD_DATA_SLOT_SIZE;
	if (use_uring(j) && (sqe = sqe_for(j, 0)) != NULL) {
		/* An offset of -1 (IOD_OFFSET_CURRENT) is the file position. */
		if (op == IOD_OP_READ)
			io_uring_prep_read(sqe, fd, buf, (unsigned)r->arg2, r->arg1);
		else if (op == IOD_OP_WRITE)
			io_uring_prep_write(sqe, fd, buf, (unsigned)r->arg2, r->arg1);
		else
			io_uring_prep_fsync(sqe, fd,
					    r->flags & IOD_FSYNC_DATA ? IORING_FSYNC_DATASYNC : 0);
		as_workload(sqe, j);
		return;
	}
	bool cur = r->arg1 == IOD_OFFSET_CURRENT;
	off_t off = (off_t)r->arg1;
	size_t n = (size_t)r->arg2;

	if (op == IOD_OP_READ)
		j->res[0] = AS_WORKLOAD(j, cur ? read(fd, buf, n) : pread(fd, buf, n, off));
	else if (op == IOD_OP_WRITE)
		j->res[0] = AS_WORKLOAD(j, cur ? write(fd, buf, n) : pwrite(fd, buf, n, off));
	else
		j->res[0] = AS_WORKLOAD(j, r->flags & IOD_FSYNC_DATA ? fdatasync(fd) : fsync(fd));
}

static void stage_done(struct job *j)
{
	if (j->in.req.hdr.opcode == IOD_OP_OPEN) {
		open_done(j);
		return;
	}
	if (j->in.req.hdr.opcode == IOD_OP_STAT && j->res[0] == 0) {
		memcpy(j->out.resp.data, &j->stx, sizeof(j->stx));
		complete(j, 0, sizeof(j->stx));
		return;
	}
	complete(j, j->res[0] < 0 ? j->res[0] : 0, 0);
}

/* Run stages until one waits for io_uring or the job completes; a
 * completed job goes to its sandbox's CQ (and is freed). */
static void advance(struct job *j)
{
	while (!j->done && j->pending == 0) {
		if (iod_op_on_handle(j->in.req.hdr.opcode)) {
			if (j->stage++ == 0)
				stage_handle(j);
			else
				complete(j, j->res[0], 0);
			continue;
		}
		switch (j->stage++) {
		case 0:
			stage_resolve(j);
			break;
		case 1:
			stage_act(j);
			break;
		default:
			stage_done(j);
			break;
		}
	}
	if (j->done)
		push_or_queue(j);
}

static void start(struct sbx *sb, struct job *j)
{
	clock_gettime(CLOCK_MONOTONIC, &j->t0);
	j->sb = sb;
	j->fd[0] = j->fd[1] = -1;
	j->no_xdev =
	    sb->root_ro && (j->in.req.hdr.flags & IOD_REQ_CACHE) && !crossing(sb, j->in.req.paths);
	sb->inflight++;
	if (iod.uring_ok)
		j->personality = personality_for(&j->in.req.creds);
	advance(j);
}

unsigned exec_drain(struct sbx *sb)
{
	/* A job is ~17 KiB.  iod drains every sandbox on every turn of its
	 * loop, also while it polls: a zeroed job is kept for the next turn
	 * when the ring was empty, instead of a calloc and free each time
	 * (its memset was a tenth of iod's time under a stream of opens). */
	static struct job *spare;
	unsigned taken = 0;

	for (unsigned n = 0; n < iod.budget && !sb->dead && !sb->broken; n++) {
		struct job *j;
		int r;

		/* Never more in flight than the CQ can take. */
		if (sb->inflight >= IOD_RING_ENTRIES || sb->overflow)
			break;
		j = spare ? spare : calloc(1, sizeof(*j));
		spare = NULL;
		if (!j) {
			qlog_warn("sandbox %s: out of memory", sb->id);
			break;
		}
		r = ring_sq_pop(&sb->ring, &j->in, iod_req_valid, NULL);
		if (r == -EAGAIN) {
			spare = j; /* untouched: an empty ring copies nothing out */
			break;
		}
		if (r == -EBADMSG) {
			/* Consumed but malformed: answer it, so the guest is
			 * not left waiting, and count it. */
			j->sb = sb;
			j->fd[0] = j->fd[1] = -1;
			sb->inflight++;
			clock_gettime(CLOCK_MONOTONIC, &j->t0);
			if (j->in.req.hdr.opcode == 0 || j->in.req.hdr.opcode >= IOD_OP_MAX_)
				j->in.req.hdr.opcode = IOD_OP_STAT;
			complete(j, -EINVAL, 0);
			push_or_queue(j);
			taken++;
			continue;
		}
		if (r < 0) {
			free(j);
			qlog_warn("sandbox %s: ring: %s; dropping it", sb->id, strerror(-r));
			sb->broken = true;
			break;
		}
		taken++;
		start(sb, j);
	}
	return taken;
}

void exec_submit(void)
{
	int r;

	if (!iod.uring_ok || iod.sq_pending == 0)
		return;
	r = io_uring_submit(&iod.uring);
	if (r > 0)
		iod_metrics_batch((unsigned)r);
	if (r < 0)
		qlog_warn("io_uring_submit: %s", strerror(-r));
	iod.sq_pending = 0;
}

unsigned exec_reap(void)
{
	struct io_uring_cqe *cqe;
	unsigned n = 0;

	if (!iod.uring_ok)
		return 0;
	while (io_uring_peek_cqe(&iod.uring, &cqe) == 0) {
		n++;
		uintptr_t ud = (uintptr_t)io_uring_cqe_get_data(cqe);
		struct job *j = (struct job *)(ud & ~(uintptr_t)1);
		int slot = (int)(ud & 1);
		int res = cqe->res;

		io_uring_cqe_seen(&iod.uring, cqe);
		if (!j)
			continue;
		j->res[slot] = res;
		if (--j->pending == 0)
			advance(j);
	}
	return n;
}
