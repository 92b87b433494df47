/* Offload-all (issue 4, docs/iod.md): the workload's reads, writes and
 * fsyncs of regular files, served by iod with io_uring, Quark-style.
 *
 * For a trapped read(fd, ...) the supervisor needs the workload's open file
 * on iod's side.  It takes it once (pidfd_getfd: the very open file, with
 * its position, flags and access mode, so O_APPEND, a read-only open and the
 * position behave as the kernel's own), sends it to iod (FILE_ADD, a handle
 * that is the index of this table) and keeps its own copy.  Later calls on
 * the same fd number check with kcmp(KCMP_FILE) that the number still
 * names that file, and send only READ/WRITE/FSYNC with the handle.  The
 * data moves through the data area: for a read iod reads into a slot and the
 * supervisor copies the bytes to the workload (process_vm_writev); for a
 * write the other way round.  Calls bigger than a slot go in slot-sized
 * steps, stopping at a short one.
 *
 * What is not a regular file (a pipe, a socket, a terminal) is left to the
 * kernel (SECCOMP_USER_NOTIF_FLAG_CONTINUE: a call on an fd the workload
 * holds, no path).  Holding a copy of those would keep a pipe's end open.
 *
 * The copies must not outlive the workload's: a file kept open by us keeps
 * a flock, keeps an unlinked file's space, and makes an exec of a file
 * once written ETXTBSY.  So close, dup2, dup3 and close_range (which close
 * fds), execve (close-on-exec) and exit_group trap too and drop the
 * copies of what they close, in iod as well (FILE_DROP, waited for) before
 * the kernel runs them; a process that dies without a call (a signal) is
 * seen through a pidfd in the supervisor's loop. */
#include <errno.h>
#include <fcntl.h>
#include <linux/kcmp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include "guest/iod_client.h"
#include "guest/policy.h"
#include "guest/trap.h"
#include "libcommon/log.h"

#define OFF_IOV_MAX 1024	  /* UIO_MAXIOV */
#define OFF_RW_MAX  0x7ffff000ull /* MAX_RW_COUNT: the most one read/write moves */

enum xkind { X_READ, X_WRITE, X_FSYNC };

/* One registered file: the handle is its index. */
static struct ofile {
	pid_t tgid;   /* 0: free */
	int fd;	      /* the workload's number for it */
	int local;    /* our copy */
	int pidfd;    /* on tgid: readable when the process is gone */
	uint32_t gen; /* of the handle: a call in steps stops when it changes */
	uint64_t used;
} files[IOD_FILES_MAX];
static uint32_t gens[IOD_FILES_MAX];
static unsigned nfiles;
static uint64_t clock_;
static int epfd = -1;
static uint8_t slots_busy; /* data slots, one bit each */
static struct sys_offload_stats st;
static struct iod_client *ic;

_Static_assert(IOD_DATA_SLOTS <= 8, "slots_busy has 8 bits");

static void forget_file(unsigned h)
{
	struct ofile *f = &files[h];

	if (!f->tgid)
		return;
	if (f->pidfd >= 0) {
		epoll_ctl(epfd, EPOLL_CTL_DEL, f->pidfd, NULL);
		close(f->pidfd);
	}
	close(f->local);
	*f = (struct ofile){0};
	nfiles--;
}

/* iod's connection ended: its copies are gone with it, ours go now. */
static void on_detached(void *arg)
{
	(void)arg;
	for (unsigned h = 0; h < IOD_FILES_MAX; h++)
		forget_file(h);
}

int sys_offload_init(struct iod_client *c)
{
	ic = c;
	c->detached = on_detached;
	c->detached_arg = NULL;
	epfd = epoll_create1(EPOLL_CLOEXEC);
	return epfd < 0 ? -errno : 0;
}

int sys_offload_fd(void)
{
	return epfd;
}

void sys_offload_stats(struct sys_offload_stats *out)
{
	*out = st;
	out->files = nfiles;
}

bool sys_offload_serves(int nr)
{
	switch (nr) {
	case SYS_read:
	case SYS_write:
	case SYS_pread64:
	case SYS_pwrite64:
	case SYS_readv:
	case SYS_writev:
	case SYS_preadv:
	case SYS_pwritev:
	case SYS_fsync:
	case SYS_fdatasync:
		return true;
	}
	return false;
}

bool sys_offload_watches(int nr)
{
	switch (nr) {
	case SYS_close:
	case SYS_close_range:
	case SYS_dup2:
	case SYS_dup3:
	case SYS_exit_group:
		return true;
	}
	return false;
}

static bool notif_alive(void *arg)
{
	return sys_notif_valid(arg) == 0;
}

/* A request on handle h: no path (""), the rest zero. */
static void handle_req(struct iod_req *r, unsigned op, unsigned h)
{
	memset(r, 0, sizeof(*r));
	r->hdr.opcode = (uint16_t)op;
	r->arg0 = h;
	r->path_len = 1;
	r->paths[0] = '\0';
}

/* Tell iod to close its copy, and wait: the workload's close must find
 * the file released.  Then ours. */
static void drop_file(const struct policy_call *c, unsigned h)
{
	union iod_req_entry in;
	union iod_resp_entry out;
	int fd = -1;

	handle_req(&in.req, IOD_OP_FILE_DROP, h);
	if (ic->attached &&
	    iod_client_call(ic, &in.req, -1, &out.resp, &fd, c ? notif_alive : NULL, (void *)c) ==
		0 &&
	    fd >= 0)
		close(fd);
	forget_file(h);
	st.drops++;
}

void sys_offload_sweep(void)
{
	struct epoll_event ev[16];
	int n;

	while ((n = epoll_wait(epfd, ev, 16, 0)) > 0)
		for (int i = 0; i < n; i++)
			if (files[ev[i].data.u32].tgid)
				drop_file(NULL, ev[i].data.u32);
}

/* The registered file for the task's fd, checked to be the same open
 * file still: its handle, or -1. */
static int lookup(const struct policy_call *c, pid_t tgid, int fd)
{
	for (unsigned h = 0; h < IOD_FILES_MAX; h++) {
		struct ofile *f = &files[h];

		if (f->tgid != tgid || f->fd != fd)
			continue;
		if (syscall(SYS_kcmp, c->pid, getpid(), KCMP_FILE, fd, f->local) == 0) {
			f->used = ++clock_;
			return (int)h;
		}
		/* The number names another file now (or none): the old one
		 * was closed unseen (a race between threads); let it go. */
		drop_file(c, h);
		return -1;
	}
	return -1;
}

static unsigned victim(void)
{
	unsigned v = 0;

	for (unsigned h = 0; h < IOD_FILES_MAX; h++) {
		if (!files[h].tgid)
			return h;
		if (files[h].used < files[v].used)
			v = h;
	}
	return v;
}

/* Register the task's fd with iod: 0 with its handle in *hp,
 * POLICY_RC_CONTINUE when it is not a regular file (or iod will not take
 * it), or -errno (EBADF: no such fd, as the kernel would say). */
static int add_file(const struct policy_call *c, pid_t tgid, int fd, const struct iod_creds *cr,
		    unsigned *hp)
{
	union iod_req_entry in;
	union iod_resp_entry out;
	struct stat sb;
	struct statfs sfs;
	int pidfd, local, got = -1, r;
	unsigned h;

	pidfd = (int)syscall(SYS_pidfd_open, tgid, 0);
	if (pidfd < 0)
		return -ENOENT;
	local = (int)syscall(SYS_pidfd_getfd, pidfd, fd, 0);
	if (local < 0) {
		r = errno == EBADF ? -EBADF : -ENOENT;
		close(pidfd);
		return r;
	}
	if (fstat(local, &sb) < 0 || !S_ISREG(sb.st_mode) || fstatfs(local, &sfs) < 0 ||
	    !iod_fs_offloadable((long)sfs.f_type)) {
		close(local);
		close(pidfd);
		st.passed++;
		return POLICY_RC_CONTINUE;
	}
	h = victim();
	forget_file(h); /* iod replaces its copy at FILE_ADD */
	handle_req(&in.req, IOD_OP_FILE_ADD, h);
	in.req.creds = *cr;
	r = iod_client_call(ic, &in.req, local, &out.resp, &got, notif_alive, (void *)c);
	if (got >= 0)
		close(got);
	if (r < 0 || out.resp.res < 0) {
		close(local);
		close(pidfd);
		if (r == -ENOENT)
			return -ENOENT;
		if (r < 0)
			return -EIO;
		st.passed++;
		return POLICY_RC_CONTINUE; /* iod refused it: the kernel serves it */
	}
	files[h] = (struct ofile){.tgid = tgid,
				  .fd = fd,
				  .local = local,
				  .pidfd = pidfd,
				  .gen = ++gens[h],
				  .used = ++clock_};
	struct epoll_event ev = {.events = EPOLLIN, .data.u32 = h};
	if (epoll_ctl(epfd, EPOLL_CTL_ADD, pidfd, &ev) < 0) {
		close(pidfd);
		files[h].pidfd = -1;
	}
	nfiles++;
	st.added++;
	*hp = h;
	return 0;
}

/* ---- one call ---- */

struct xfer {
	struct policy_call c;
	enum xkind kind;
	unsigned h, slot;
	uint32_t gen; /* files[h].gen when the call began */
	bool datasync;
	uint64_t offset; /* IOD_OFFSET_CURRENT: the file position */
	uint64_t total, done;
	uint64_t chunk; /* of the step in flight */
	struct iod_creds creds;
	unsigned niov;
	struct iovec iov[]; /* the workload's buffers */
};

static void xfer_finish(struct xfer *x, int64_t rc)
{
	slots_busy &= (uint8_t) ~(1u << x->slot);
	if (x->kind == X_READ)
		st.bytes_read += x->done;
	else if (x->kind == X_WRITE)
		st.bytes_written += x->done;
	trap_respond(x->c.listener, x->c.id, rc < 0 ? (int)-rc : 0, rc < 0 ? 0 : rc, false);
	free(x);
}

/* The workload's buffers from byte off, len bytes of them. */
static unsigned slice(const struct xfer *x, uint64_t off, uint64_t len, struct iovec *out)
{
	unsigned n = 0;

	for (unsigned i = 0; i < x->niov && len > 0; i++) {
		uint64_t l = x->iov[i].iov_len;

		if (off >= l) {
			off -= l;
			continue;
		}
		uint64_t take = l - off < len ? l - off : len;
		out[n].iov_base = (char *)x->iov[i].iov_base + off;
		out[n].iov_len = take;
		n++;
		len -= take;
		off = 0;
	}
	return n;
}

/* Copy between the slot and the workload: bytes moved, or -errno. */
static int64_t copy_user(struct xfer *x, bool to_user, uint64_t off, uint64_t len)
{
	struct iovec remote[OFF_IOV_MAX];
	struct iovec local = {.iov_base = ic->data + (size_t)x->slot * IOD_DATA_SLOT_SIZE,
			      .iov_len = len};
	unsigned n = slice(x, off, len, remote);
	ssize_t got;

	if (sys_notif_valid(&x->c) < 0)
		return -ENOENT;
	if (to_user)
		got = process_vm_writev(x->c.pid, &local, 1, remote, n, 0);
	else
		got = process_vm_readv(x->c.pid, &local, 1, remote, n, 0);
	if (got < 0)
		return errno == ESRCH ? -ENOENT : -EFAULT;
	if (sys_notif_valid(&x->c) < 0)
		return -ENOENT;
	return got;
}

static void xfer_step_done(void *arg, const struct iod_resp *resp, int fd);

/* Send the next step; on failure the call is answered. */
static void xfer_step(struct xfer *x)
{
	union iod_req_entry in;
	struct iod_req *r = &in.req;
	uint64_t left = x->total - x->done;
	int rc;

	/* iod went away (its data area with it) since the call began. */
	if (!ic->attached || !ic->data) {
		xfer_finish(x, x->done ? (int64_t)x->done : -EIO);
		return;
	}
	/* The fd was closed (and the handle maybe given to another file)
	 * while an earlier step ran: what was done is the answer. */
	if (files[x->h].gen != x->gen || !files[x->h].tgid) {
		xfer_finish(x, x->done ? (int64_t)x->done : -EBADF);
		return;
	}

	handle_req(r,
		   x->kind == X_FSYNC  ? IOD_OP_FSYNC
		   : x->kind == X_READ ? IOD_OP_READ
				       : IOD_OP_WRITE,
		   x->h);
	r->creds = x->creds;
	if (x->kind == X_FSYNC) {
		r->flags = x->datasync ? IOD_FSYNC_DATA : 0;
	} else {
		x->chunk = left < IOD_DATA_SLOT_SIZE ? left : IOD_DATA_SLOT_SIZE;
		r->slot = x->slot;
		r->arg1 =
		    x->offset == IOD_OFFSET_CURRENT ? IOD_OFFSET_CURRENT : x->offset + x->done;
		r->arg2 = x->chunk;
		if (x->kind == X_WRITE) {
			int64_t got = copy_user(x, false, x->done, x->chunk);
			if (got < 0 || (uint64_t)got < x->chunk) {
				/* The kernel writes what it could copy; so do we,
				 * as long as there is something. */
				if (got <= 0) {
					xfer_finish(x, x->done
							   ? (int64_t)x->done
							   : (got == -ENOENT ? -ENOENT : -EFAULT));
					return;
				}
				x->chunk = (uint64_t)got;
				x->total = x->done + x->chunk;
				r->arg2 = x->chunk;
			}
		}
	}
	rc = iod_client_submit(ic, r, -1, xfer_step_done, x);
	if (rc < 0)
		xfer_finish(x, x->done ? (int64_t)x->done : -EIO);
}

static void xfer_step_done(void *arg, const struct iod_resp *resp, int fd)
{
	struct xfer *x = arg;
	int64_t res;

	if (fd >= 0)
		close(fd);
	if (!resp) {
		xfer_finish(x, x->done ? (int64_t)x->done : -EIO);
		return;
	}
	res = resp->res;
	if (x->kind == X_FSYNC || res < 0) {
		xfer_finish(x, x->done && res < 0 ? (int64_t)x->done : res);
		return;
	}
	if ((uint64_t)res > x->chunk) {
		xfer_finish(x, x->done ? (int64_t)x->done : -EIO);
		return;
	}
	if (x->kind == X_READ && res > 0) {
		int64_t got = copy_user(x, true, x->done, (uint64_t)res);
		if (got < res) {
			uint64_t moved = x->done + (got > 0 ? (uint64_t)got : 0);
			/* The kernel stops where the copy failed: so does the
			 * file position (ours is the workload's open file). */
			if (x->offset == IOD_OFFSET_CURRENT && files[x->h].gen == x->gen &&
			    files[x->h].tgid)
				lseek(files[x->h].local, -(res - (got > 0 ? got : 0)), SEEK_CUR);
			xfer_finish(x,
				    moved ? (int64_t)moved : (got == -ENOENT ? -ENOENT : -EFAULT));
			return;
		}
	}
	x->done += (uint64_t)res;
	if ((uint64_t)res < x->chunk || x->done >= x->total) {
		xfer_finish(x, (int64_t)x->done);
		return;
	}
	xfer_step(x);
}

/* A free data slot, waiting for one if all are taken (every one is then in
 * a request in flight, so a completion frees one soon). */
static int take_slot(const struct policy_call *c)
{
	for (;;) {
		for (unsigned s = 0; s < IOD_DATA_SLOTS; s++)
			if (!(slots_busy & (1u << s))) {
				slots_busy |= (uint8_t)(1u << s);
				return (int)s;
			}
		if (!ic->attached)
			return -EIO;
		if (sys_notif_valid(c) < 0)
			return -ENOENT;
		iod_client_dispatch(ic, true);
	}
}

/* Decode: the fd, the buffers (into x), the offset.  0, POLICY_RC_CONTINUE
 * for a call the kernel may as well run (no bytes), or -errno. */
static int decode(const struct policy_call *c, struct xfer **out)
{
	const uint64_t *a = c->args;
	struct xfer *x;
	uint64_t niov = 1, total = 0;
	bool vec = false, pos = false;
	enum xkind kind = X_READ;

	switch (c->nr) {
	case SYS_fsync:
	case SYS_fdatasync:
		kind = X_FSYNC;
		niov = 0;
		break;
	case SYS_write:
	case SYS_pwrite64:
	case SYS_writev:
	case SYS_pwritev:
		kind = X_WRITE;
		break;
	}
	vec = c->nr == SYS_readv || c->nr == SYS_writev || c->nr == SYS_preadv ||
	      c->nr == SYS_pwritev;
	pos = c->nr == SYS_pread64 || c->nr == SYS_pwrite64 || c->nr == SYS_preadv ||
	      c->nr == SYS_pwritev;
	if (vec) {
		niov = (uint32_t)a[2];
		if ((int)a[2] < 0 || niov > OFF_IOV_MAX)
			return -EINVAL;
		if (niov == 0)
			return POLICY_RC_CONTINUE;
	}
	x = calloc(1, sizeof(*x) + niov * sizeof(struct iovec));
	if (!x)
		return -ENOMEM;
	x->c = *c;
	x->kind = kind;
	x->niov = (unsigned)niov;
	x->offset = IOD_OFFSET_CURRENT;
	x->datasync = c->nr == SYS_fdatasync;
	if (pos) {
		int64_t off = (int64_t)a[3];
		if (off < 0) {
			free(x);
			return -EINVAL;
		}
		x->offset = (uint64_t)off;
	}
	if (vec) {
		int r = sys_copy_from_user(c, x->iov, a[1], niov * sizeof(struct iovec));
		if (r < 0) {
			free(x);
			return r;
		}
	} else if (niov) {
		x->iov[0].iov_base = (void *)(uintptr_t)a[1];
		x->iov[0].iov_len = a[2];
	}
	for (unsigned i = 0; i < x->niov; i++) {
		/* The kernel refuses a length that does not fit ssize_t, and
		 * moves at most MAX_RW_COUNT bytes in one call. */
		if ((int64_t)x->iov[i].iov_len < 0 || total + x->iov[i].iov_len < total) {
			free(x);
			return -EINVAL;
		}
		total += x->iov[i].iov_len;
		if ((int64_t)total < 0) {
			free(x);
			return -EINVAL;
		}
	}
	x->total = total < OFF_RW_MAX ? total : OFF_RW_MAX;
	if (kind != X_FSYNC && x->total == 0) {
		free(x);
		return POLICY_RC_CONTINUE; /* the kernel's checks, no bytes */
	}
	*out = x;
	return 0;
}

int sys_offload(const struct policy_call *c, int64_t *val)
{
	struct xfer *x = NULL;
	struct iod_creds cr;
	pid_t tgid;
	int fd = (int)c->args[0], h, rc, slot;
	unsigned added;

	*val = 0;
	if (!ic)
		return POLICY_RC_CONTINUE;
	if (fd < 0)
		return -EBADF;
	if ((rc = decode(c, &x)) != 0)
		return rc;
	if ((rc = sys_iod_task(c, &tgid, &cr)) < 0) {
		free(x);
		return rc;
	}
	h = lookup(c, tgid, fd);
	if (h >= 0) {
		st.hits++;
	} else {
		st.misses++;
		rc = add_file(c, tgid, fd, &cr, &added);
		if (rc != 0) {
			free(x);
			return rc;
		}
		h = (int)added;
	}
	x->h = (unsigned)h;
	x->gen = files[h].gen;
	x->creds = cr;
	slot = take_slot(c);
	if (slot < 0) {
		free(x);
		return slot;
	}
	x->slot = (unsigned)slot;
	xfer_step(x);
	/* iod usually answers within microseconds: wait that long here. */
	if (ic->attached)
		iod_client_dispatch(ic, true);
	return POLICY_RC_ANSWERED;
}

/* ---- what closes fds ---- */

void sys_offload_forget(const struct policy_call *c)
{
	struct iod_creds cr;
	pid_t tgid;
	unsigned lo = 0, hi = 0;
	bool all = false;

	if (!ic || nfiles == 0)
		return;
	switch (c->nr) {
	case SYS_close:
		lo = hi = (unsigned)c->args[0];
		break;
	case SYS_dup2:
	case SYS_dup3:
		if (c->args[0] == c->args[1])
			return;
		lo = hi = (unsigned)c->args[1];
		break;
	case SYS_close_range:
		lo = (unsigned)c->args[0];
		hi = (unsigned)c->args[1];
		break;
	case SYS_exit_group:
	case SYS_execve: /* closes the close-on-exec fds */
	case SYS_execveat:
		all = true;
		break;
	default: /* the other credential calls sys_iod watches */
		return;
	}
	if (sys_iod_task(c, &tgid, &cr) < 0)
		return;
	for (unsigned h = 0; h < IOD_FILES_MAX; h++) {
		struct ofile *f = &files[h];

		if (f->tgid == tgid && (all || ((unsigned)f->fd >= lo && (unsigned)f->fd <= hi)))
			drop_file(c, h);
	}
}
