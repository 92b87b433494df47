/* libFuzzer target: a hostile guest's ring entries into iod's consumer
 * (services/iod/exec.c), in sync mode, as root.
 *
 * iod's state is set up as services/iod/main.c does it, for one sandbox
 * whose root is a scratch tree under $TMPDIR:
 *
 *	TOP/marker, TOP/outside/, TOP/jail/sibling	must never change
 *	TOP/jail/root/					the sandbox's root: files, dirs,
 *		a FIFO, and symlinks aiming out ("/", "../..", "../../marker",
 *		absolute paths to TOP's files), reset before every input
 *	TOP/jail/root/mnt/				a tmpfs (as root, in the
 *		fuzzer's own mount namespace): a mount for RESOLVE_NO_XDEV
 *		to meet
 *
 * The fuzzer plays the guest: it holds the submitter's side of the ring and
 * the other end of the sandbox's connection.  The input is a script; byte 0
 * picks the rings' first index (bits 0-1), then records, each led by a byte
 * whose low 3 bits say what it is:
 *
 *   0     raw entry: u16 n, n bytes = the entry from offset 0, header
 *	   included.  A hdr.len too big for ring_sq_push is pushed clamped and
 *	   then rewritten in the published slot, as a peer would.
 *   1-3   shaped entry: u16 n, n bytes (missing ones are zero):
 *	     0 opcode (mod the op count), 1 at_flags (bit i: at_bits[i]),
 *	     2-5 flags, 6-7 mode, 8-15 arg0 (also the times' seconds),
 *	     16-19 arg1 (also the times' nsec), 20 credentials (bits 0-2: a
 *	     preset, 3-4: the umask), 21.. path, NUL, path2;
 *	   for the offload-all ops instead: 8 handle (mod 8), 9 data slot
 *	     (mod 16: some out of range), 10 0xff: at the file position,
 *	     11-13 bytes (up to 256 KiB: some too many), 16-19 offset; a
 *	     FILE_ADD first sends the fd of byte 14 (mod 4): the root's file
 *	     read-write, dir/file read-only, a directory, the FIFO;
 *	   lengths, NULs and hdr are made to match, so it passes
 *	   iod_req_valid unless the fuzzer rewrites it afterwards.
 *   4     peer write into the region: u16 offset (into the SQ tail line,
 *	   the SQ head/flags line, the CQ head/flags line or the SQ entries),
 *	   u8 n, n bytes.
 *   5     peer moves the SQ tail: int8 delta from its current value.
 *   6     iod turns: exec_drain, the guest reads its socket and pops every
 *	   completion (exec_flush_overflow between, as main.c's loop does);
 *	   with bit 3 set the guest leaves its completions in the CQ.
 *   7     peer rewrites the last published entry: u16 offset in it, u8 n,
 *	   n bytes.
 *
 * The script ends with turns until nothing moves (unless bit 2 of byte 0
 * says the guest just goes away), then the connection closes and the
 * sandbox goes as main.c lets it go.  Bit 3 of byte 0 makes it an
 * offload-all sandbox (with a data area), bit 4 one whose root iod takes
 * for read-only (the metadata cache's walks with RESOLVE_NO_XDEV; bit 5 of
 * a shaped entry's byte 20 asks IOD_REQ_CACHE of a cacheable op).  Whatever the input:
 *   - every completion passes iod_resp_valid, and one with IOD_RESP_FD comes
 *     after an fd message for its user_data; stat/statfs/readlink data
 *     lengths match their result;
 *   - every fd iod sends is of a file under the sandbox's root, and every
 *     statx it returns is of an inode that is not one of TOP's;
 *   - nothing beside the root changed (stat and content of the watched
 *     files and directories);
 *   - iod's thread is back to its own credentials and holds no more fds
 *     (the files a guest registered are closed with its sandbox);
 *   - a READ or WRITE never moves more bytes than a data slot holds;
 *   - unless the peer wrote the CQ head, the guest's side of the ring never
 *     breaks (iod published nothing out of range).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/fsuid.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "libcommon/fscreds.h"
#include "libcommon/iod_proto.h"
#include "libcommon/launch_proto.h"
#include "libcommon/log.h"
#include "libcommon/ring.h"
#include "services/iod/iod.h"

#define PATHS_ROOM (IOD_PATHS_MAX - 2)

static void check_(bool ok, const char *what, int line)
{
	if (!ok) {
		fprintf(stderr, "fuzz_iod_ring:%d: %s\n", line, what);
		abort();
	}
}
#define check(x) check_((x), #x, __LINE__)

struct iod iod = {.rootfd = -1,
		  .listen_fd = -1,
		  .epfd = -1,
		  .mode = IOD_MODE_SYNC,
		  .budget = 4,
		  .lock = PTHREAD_MUTEX_INITIALIZER};

static struct sbx *sb;
static bool sb_freed;

/* main.c's, but for our one sandbox: after a turn, a dead sandbox drops
 * what waits in its overflow and goes once no job is left (the connection
 * and the root fd stay, for the next input).  It is heap memory, so ASan
 * sees any use of it afterwards. */
void sbx_maybe_free(struct sbx *s)
{
	check(s == sb && !sb_freed);
	if (!s->dead)
		return;
	exec_flush_overflow(s);
	if (s->inflight > 0)
		return;
	ring_destroy(&s->ring);
	exec_files_close(s);
	if (s->data)
		munmap(s->data, IOD_DATA_SIZE);
	free(s);
	sb_freed = true;
}

/* ---- the scratch tree ---- */

static char top[PATH_MAX], rootpath[PATH_MAX + 16];
static int topfd = -1, rootfd = -1;
static bool as_root;

/* What must never change, by path under TOP. */
static const char *const watched[] = {".", "marker", "outside", "jail", "jail/sibling"};
#define NWATCHED (sizeof(watched) / sizeof(watched[0]))
static struct stat watched_st[NWATCHED];
static const char marker_text[] = "iod must never touch this file\n";

/* Inodes a statx or an fd from iod must never be: TOP's, its parent's, /. */
static struct {
	dev_t dev;
	ino_t ino;
} forbidden[NWATCHED + 2];
static size_t nforbidden;

static void write_file(int dfd, const char *name, const char *text, mode_t mode)
{
	int fd = openat(dfd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
	check(fd >= 0);
	check(write(fd, text, strlen(text)) == (ssize_t)strlen(text));
	close(fd);
}

/* Empty the directory dfd, never following a symlink. */
static bool mnt_mounted; /* ROOT/mnt is a tmpfs: kept, only emptied */

static void wipe(int dfd)
{
	bool again = true;

	while (again) {
		int fd = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		DIR *d;
		struct dirent *e;

		check(fd >= 0);
		d = fdopendir(fd);
		check(d != NULL);
		again = false;
		while ((e = readdir(d)) != NULL) {
			if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
				continue;
			if (dfd == rootfd && mnt_mounted && strcmp(e->d_name, "mnt") == 0)
				continue;
			again = true;
			if (unlinkat(dfd, e->d_name, 0) == 0)
				continue;
			check(errno == EISDIR);
			int sub =
			    openat(dfd, e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			check(sub >= 0);
			wipe(sub);
			close(sub);
			check(unlinkat(dfd, e->d_name, AT_REMOVEDIR) == 0);
		}
		closedir(d);
	}
}

/* The sandbox's root as every input finds it. */
static void tree_reset(void)
{
	char target[PATH_MAX + 32];

	wipe(rootfd);
	if (mnt_mounted) {
		int m = openat(rootfd, "mnt", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

		check(m >= 0);
		wipe(m);
		close(m);
		write_file(rootfd, "mnt/file", "mounted\n", 0644);
		check(symlinkat("/dir/file", rootfd, "mnt/back") == 0);
	}
	check(fchmod(rootfd, 0755) == 0);
	if (as_root)
		check(fchown(rootfd, 0, 0) == 0);
	write_file(rootfd, "file", "hello\n", 0644);
	check(mkdirat(rootfd, "dir", 0755) == 0);
	write_file(rootfd, "dir/file", "inner\n", 0600);
	check(symlinkat("../../..", rootfd, "dir/up2") == 0);
	check(mkdirat(rootfd, "ro", 0555) == 0);
	check(mkdirat(rootfd, "userdir", 0700) == 0);
	if (as_root)
		check(fchownat(rootfd, "userdir", 1000, 1000, 0) == 0);
	check(mknodat(rootfd, "fifo", S_IFIFO | 0666, 0) == 0);
	check(symlinkat("/", rootfd, "slash") == 0);
	check(symlinkat("../..", rootfd, "up") == 0);
	check(symlinkat("../../marker", rootfd, "upmarker") == 0);
	check(symlinkat(".", rootfd, "self") == 0);
	check(symlinkat("loop", rootfd, "loop") == 0);
	check(symlinkat("/proc/self/root", rootfd, "procroot") == 0);
	snprintf(target, sizeof(target), "%s/marker", top);
	check(symlinkat(target, rootfd, "absmarker") == 0);
	snprintf(target, sizeof(target), "%s/outside", top);
	check(symlinkat(target, rootfd, "absout") == 0);
	snprintf(target, sizeof(target), "%s/jail/sibling", top);
	check(symlinkat(target, rootfd, "abssib") == 0);
}

static bool same_stat(const struct stat *a, const struct stat *b)
{
	return a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_mode == b->st_mode &&
	       a->st_uid == b->st_uid && a->st_gid == b->st_gid && a->st_nlink == b->st_nlink &&
	       a->st_size == b->st_size && a->st_mtim.tv_sec == b->st_mtim.tv_sec &&
	       a->st_mtim.tv_nsec == b->st_mtim.tv_nsec && a->st_ctim.tv_sec == b->st_ctim.tv_sec &&
	       a->st_ctim.tv_nsec == b->st_ctim.tv_nsec;
}

static void check_outside(void)
{
	char buf[sizeof(marker_text) + 8];
	struct stat st;
	int fd;

	for (size_t i = 0; i < NWATCHED; i++) {
		check(fstatat(topfd, watched[i], &st, AT_SYMLINK_NOFOLLOW) == 0);
		if (!same_stat(&st, &watched_st[i])) {
			fprintf(stderr, "fuzz_iod_ring: %s/%s changed\n", top, watched[i]);
			abort();
		}
	}
	fd = openat(topfd, "marker", O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	check(fd >= 0);
	check(read(fd, buf, sizeof(buf)) == (ssize_t)strlen(marker_text));
	check(memcmp(buf, marker_text, strlen(marker_text)) == 0);
	close(fd);
}

static bool is_forbidden(dev_t dev, ino_t ino)
{
	for (size_t i = 0; i < nforbidden; i++)
		if (forbidden[i].dev == dev && forbidden[i].ino == ino)
			return true;
	return false;
}

static void cleanup(void)
{
	if (mnt_mounted) {
		char mnt[PATH_MAX + 8];

		snprintf(mnt, sizeof(mnt), "%s/mnt", rootpath);
		umount2(mnt, MNT_DETACH);
		mnt_mounted = false;
	}
	if (topfd >= 0) {
		wipe(topfd);
		close(topfd);
		topfd = -1;
		rmdir(top);
	}
}

/* ---- the thread's own credentials, to check iod gave them back ---- */

static struct __user_cap_data_struct own_caps[2];
static gid_t own_groups[64];
static int own_ngroups;

static void caps_now(struct __user_cap_data_struct d[2])
{
	struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
	check(syscall(SYS_capget, &h, d) == 0);
}

static void check_creds(void)
{
	struct __user_cap_data_struct d[2];
	gid_t g[64];
	int n;

	check((uid_t)setfsuid((uid_t)-1) == geteuid());
	check((gid_t)setfsgid((gid_t)-1) == getegid());
	caps_now(d);
	check(memcmp(d, own_caps, sizeof(d)) == 0);
	n = getgroups(64, g);
	check(n == own_ngroups && memcmp(g, own_groups, sizeof(g[0]) * (size_t)n) == 0);
}

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;

	check(d != NULL);
	while (readdir(d))
		n++;
	closedir(d);
	return n;
}

/* ---- the sandbox and the guest's side ---- */

static struct ring sub;	    /* the guest's view */
static unsigned char *peer; /* the guest's raw mapping, to tamper with */
static size_t region;
static int guest_conn = -1;  /* the sandbox's end, iod's sb->conn */
static int guest_sock = -1;  /* the guest's end */
static bool cq_head_written; /* the peer moved what iod reads as CQ space */
static bool sub_broken;
static uint64_t next_user_data;
static bool trace; /* QUIVER_FUZZ_TRACE=1: print each completion (for reproducing) */

/* fd messages not yet matched by an IOD_RESP_FD completion */
#define FDMSG_MAX 1024
static uint64_t fdmsg[FDMSG_MAX];
static unsigned nfdmsg;
static bool fdmsg_lost;

static void check_fd_inside(int fd)
{
	char proc[64], link[PATH_MAX + 64];
	size_t rl = strlen(rootpath);
	struct stat st;
	ssize_t n;

	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
	n = readlink(proc, link, sizeof(link) - 1);
	check(n > 0);
	link[n] = '\0';
	if (strncmp(link, rootpath, rl) != 0 || (link[rl] != '/' && link[rl] != '\0')) {
		fprintf(stderr, "fuzz_iod_ring: iod sent an fd of %s, outside %s\n", link,
			rootpath);
		abort();
	}
	check(fstat(fd, &st) == 0);
	check(!is_forbidden(st.st_dev, st.st_ino));
}

static void guest_read_socket(void)
{
	for (;;) {
		struct iod_fdmsg m;
		struct iovec iov = {.iov_base = &m, .iov_len = sizeof(m)};
		union {
			char buf[CMSG_SPACE(sizeof(int) * 8)];
			struct cmsghdr align;
		} u;
		struct msghdr mh = {.msg_iov = &iov,
				    .msg_iovlen = 1,
				    .msg_control = u.buf,
				    .msg_controllen = sizeof(u.buf)};
		int nfds = 0, fd = -1;
		ssize_t n = recvmsg(guest_sock, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);

		if (n < 0) {
			check(errno == EAGAIN);
			return;
		}
		for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
			if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
				continue;
			for (size_t i = 0; i < (c->cmsg_len - CMSG_LEN(0)) / sizeof(int); i++) {
				int x;
				memcpy(&x, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
				if (nfds++ == 0)
					fd = x;
				else
					close(x);
			}
		}
		/* One message per opened file: 8 bytes and exactly one fd. */
		check(n == (ssize_t)sizeof(m) && nfds == 1 &&
		      !(mh.msg_flags & (MSG_CTRUNC | MSG_TRUNC)));
		check_fd_inside(fd);
		close(fd);
		if (nfdmsg == FDMSG_MAX) {
			memmove(fdmsg, fdmsg + 1, sizeof(fdmsg[0]) * (FDMSG_MAX - 1));
			nfdmsg--;
			fdmsg_lost = true;
		}
		fdmsg[nfdmsg++] = m.user_data;
	}
}

static void check_completion(const struct iod_resp *r)
{
	if (trace)
		fprintf(stderr, "completion: %s user_data %llu res %lld%s data_len %u\n",
			iod_op_name(r->hdr.opcode), (unsigned long long)r->hdr.user_data,
			(long long)r->res, (r->hdr.flags & IOD_RESP_FD) ? " (fd)" : "",
			r->data_len);
	if (r->hdr.flags & IOD_RESP_FD) {
		unsigned i;

		for (i = 0; i < nfdmsg && fdmsg[i] != r->hdr.user_data; i++)
			;
		if (i == nfdmsg) {
			check(fdmsg_lost);
			return;
		}
		memmove(fdmsg + i, fdmsg + i + 1, sizeof(fdmsg[0]) * (nfdmsg - i - 1));
		nfdmsg--;
		return;
	}
	if (r->res < 0)
		check(r->data_len == 0);
	switch (r->hdr.opcode) {
	case IOD_OP_STAT:
		if (r->res == 0) {
			struct statx stx;

			check(r->data_len == sizeof(stx));
			memcpy(&stx, r->data, sizeof(stx));
			if (stx.stx_mask & STATX_INO)
				check(!is_forbidden(makedev(stx.stx_dev_major, stx.stx_dev_minor),
						    stx.stx_ino));
		}
		break;
	case IOD_OP_STATFS:
		check(r->res != 0 || r->data_len == sizeof(struct statfs));
		break;
	case IOD_OP_READLINK:
		check(r->res < 0 || (uint64_t)r->res == r->data_len);
		break;
	case IOD_OP_OPEN:
		check(r->res < 0); /* success always comes as IOD_RESP_FD */
		break;
	case IOD_OP_READ:
	case IOD_OP_WRITE:
		check(r->res <= (int64_t)IOD_DATA_SLOT_SIZE);
		break;
	default:
		break;
	}
}

static int guest_pop(void)
{
	int popped = 0;

	for (;;) {
		union iod_resp_entry c;
		int r = ring_cq_pop(&sub, &c, iod_resp_valid, NULL);

		if (r == -EAGAIN)
			break;
		if (r == -EPROTO) {
			/* The guest's side breaks when the peer broke it itself
			 * (its pushes found iod's SQ head past them, after the
			 * peer moved its SQ tail), or when it lied about its CQ
			 * head; never because iod published past the CQ's room. */
			check(cq_head_written || sub_broken);
			sub_broken = true;
			break;
		}
		if (r == -EBADMSG) {
			fprintf(stderr,
				"fuzz_iod_ring: invalid completion: op %u flags %#x len %u "
				"res %lld data_len %u\n",
				c.resp.hdr.opcode, c.resp.hdr.flags, c.resp.hdr.len,
				(long long)c.resp.res, c.resp.data_len);
			abort();
		}
		check(r == 0);
		popped++;
		check_completion(&c.resp);
	}
	return popped;
}

/* One turn of main.c's loop for our sandbox, after its drain. */
static void turn_end(void)
{
	if (sb->overflow)
		exec_flush_overflow(sb);
	if (sb->broken)
		sb->dead = true; /* sbx_kill */
	sbx_maybe_free(sb);
}

/* iod's loop turns until nothing moves; the guest reads its completions
 * between them, or (pop false) leaves them.  A sandbox whose ring broke is
 * killed and freed, as main.c does; the guest goes on writing to a ring
 * nobody reads. */
static void turns(int max, bool pop)
{
	for (int i = 0; i < max && !sb_freed; i++) {
		uint64_t ops = sb->ops;
		int popped = 0;
		bool gone;

		exec_drain(sb);
		check(sb->inflight <= IOD_RING_ENTRIES);
		turn_end();
		gone = sb_freed;
		guest_read_socket();
		if (pop)
			popped = guest_pop();
		if (gone || (sb->ops == ops && popped == 0))
			break;
	}
}

static uint32_t shared_u32(size_t off)
{
	return __atomic_load_n((uint32_t *)(peer + off), __ATOMIC_ACQUIRE);
}

static void peer_write(size_t off, const uint8_t *p, size_t n)
{
	if (n > region - off)
		n = region - off;
	/* The guest's mapping; iod copies with relaxed atomics, so a plain
	 * write from this thread is what a racing peer would leave. */
	memcpy(peer + off, p, n);
	if (off < RING_OFF_CQ_HEAD + 4 && off + n > RING_OFF_CQ_HEAD)
		cq_head_written = true;
}

static unsigned char *last_slot(void)
{
	uint32_t tail = shared_u32(RING_OFF_SQ_TAIL);
	return peer + RING_OFF_SQ_ENTRIES +
	       (size_t)((tail - 1) & (IOD_RING_ENTRIES - 1)) * IOD_ENTRY_SIZE;
}

/* Publish one entry; a full SQ gets iod a turn first. */
static void push(const unsigned char *entry)
{
	int r = ring_sq_push(&sub, entry);

	if (r == -EAGAIN) {
		turns(4, true);
		r = ring_sq_push(&sub, entry);
	}
	/* -EPROTO: the peer broke its own side (wrote the SQ head, or moved
	 * its SQ tail ahead and iod consumed past what it pushed). */
	check(r == 0 || r == -EAGAIN || r == -EPROTO);
	if (r == -EPROTO)
		sub_broken = true;
}

static void push_raw(const uint8_t *p, size_t n)
{
	static unsigned char e[IOD_ENTRY_SIZE];
	struct ring_entry_hdr h;
	uint32_t len;

	memset(e, 0, sizeof(e));
	memcpy(e, p, n < sizeof(e) ? n : sizeof(e));
	memcpy(&h, e, sizeof(h));
	len = h.len;
	if (len <= IOD_ENTRY_SIZE - sizeof(h)) {
		push(e);
		return;
	}
	/* ring_sq_push refuses it; a peer writes it anyway. */
	h.len = IOD_ENTRY_SIZE - sizeof(h);
	memcpy(e, &h, sizeof(h));
	uint32_t tail = shared_u32(RING_OFF_SQ_TAIL);
	push(e);
	if (shared_u32(RING_OFF_SQ_TAIL) != tail)
		memcpy(last_slot() + offsetof(struct ring_entry_hdr, len), &len, sizeof(len));
}

static const uint32_t at_bits[8] = {
    AT_SYMLINK_NOFOLLOW, AT_REMOVEDIR,	      AT_SYMLINK_FOLLOW,  AT_EMPTY_PATH,
    AT_NO_AUTOMOUNT,	 AT_STATX_FORCE_SYNC, AT_STATX_DONT_SYNC, AT_RECURSIVE,
};

static void set_creds(struct iod_creds *c, uint8_t sel)
{
	static const uint32_t umasks[4] = {0, 022, 077, 0777};

	memset(c, 0, sizeof(*c));
	c->umask = umasks[(sel >> 3) & 3];
	switch (sel & 7) {
	case 0: /* root with every capability */
		c->cap_eff = ~0ull;
		break;
	case 1: /* root without capabilities */
		break;
	case 2:
		c->fsuid = c->fsgid = 1000;
		c->ngroups = 1;
		c->groups[0] = 1000;
		break;
	case 3:
		c->fsuid = c->fsgid = 1000;
		c->cap_eff = (1u << 0) | (1u << 1) | (1u << 3); /* CHOWN, DAC_OVERRIDE, FOWNER */
		break;
	case 4: /* an unprivileged user in group 0 */
		c->fsuid = c->fsgid = 1000;
		c->ngroups = 2;
		c->groups[0] = 0;
		c->groups[1] = 27;
		break;
	case 5:
		c->fsuid = c->fsgid = 65534;
		break;
	case 6: /* every group slot, the file capabilities */
		c->fsgid = 1000;
		c->cap_eff = (1u << 0) | (1u << 1) | (1u << 2) | (1u << 3) | (1u << 4) | (1u << 27);
		c->ngroups = IOD_GROUPS_MAX;
		for (uint32_t i = 0; i < IOD_GROUPS_MAX; i++)
			c->groups[i] = 2000 + i;
		break;
	default: /* ids the kernel will not take */
		c->fsuid = c->fsgid = (uint32_t)-1;
		break;
	}
}

static bool two_paths(unsigned op)
{
	return op == IOD_OP_RENAME || op == IOD_OP_LINK || op == IOD_OP_SYMLINK ||
	       op == IOD_OP_GETXATTR;
}

/* The offload-all ops: a handle, a slot, a size and an offset; FILE_ADD
 * sends its file ahead, as the guest does. */
static void shape_handle_op(struct iod_req *r, const uint8_t *f)
{
	static const struct {
		const char *path;
		int flags;
	} files[4] = {{"file", O_RDWR},
		      {"dir/file", O_RDONLY},
		      {"dir", O_RDONLY | O_DIRECTORY},
		      {"fifo", O_RDWR | O_NONBLOCK}};
	uint32_t off;

	r->arg0 = f[8] % 8;
	r->slot = f[9] % 16;
	memcpy(&off, f + 16, 4);
	r->arg1 = f[10] == 0xff ? IOD_OFFSET_CURRENT : off;
	r->arg2 = (uint64_t)f[11] | (uint64_t)f[12] << 8 | (uint64_t)(f[13] & 3) << 16;
	if (r->hdr.opcode == IOD_OP_FILE_ADD) {
		struct iod_fdmsg m = {.user_data = r->hdr.user_data};
		int fd = openat(rootfd, files[f[14] % 4].path, files[f[14] % 4].flags | O_CLOEXEC);

		check(fd >= 0);
		/* Full (fds left queued by requests iod never took): the
		 * request then goes without its file, as a broken guest's. */
		if (send_with_fds(guest_sock, &m, sizeof(m), &fd, 1) == 0)
			r->hdr.flags |= IOD_REQ_FD;
		close(fd);
	}
}

static void push_shaped(const uint8_t *p, size_t n)
{
	static union iod_req_entry e;
	uint8_t f[21] = {0};
	const uint8_t *paths = n > sizeof(f) ? p + sizeof(f) : NULL;
	size_t plen = n > sizeof(f) ? n - sizeof(f) : 0, l1, l2 = 0;
	const uint8_t *nul;
	uint32_t u32;
	uint64_t u64;

	memcpy(f, p, n < sizeof(f) ? n : sizeof(f));
	memset(&e, 0, sizeof(e));
	e.req.hdr.opcode = (uint16_t)(f[0] % (IOD_OP_MAX_ - 1) + 1);
	e.req.hdr.user_data = ++next_user_data;
	for (int i = 0; i < 8; i++)
		if (f[1] & (1u << i))
			e.req.at_flags |= at_bits[i];
	memcpy(&u32, f + 2, 4);
	e.req.flags = u32;
	e.req.mode = (uint32_t)f[6] | (uint32_t)f[7] << 8;
	memcpy(&u64, f + 8, 8);
	e.req.arg0 = u64;
	memcpy(&u32, f + 16, 4);
	e.req.arg1 = u32;
	e.req.times[0] = e.req.times[2] = (int64_t)u64;
	e.req.times[1] = e.req.times[3] = u32;
	set_creds(&e.req.creds, f[20]);
	if ((f[20] & 0x20) && iod_op_cacheable(e.req.hdr.opcode))
		e.req.hdr.flags |= IOD_REQ_CACHE;
	if (iod_op_on_handle(e.req.hdr.opcode))
		shape_handle_op(&e.req, f);

	if (plen > PATHS_ROOM)
		plen = PATHS_ROOM;
	nul = plen ? memchr(paths, '\0', plen) : NULL;
	l1 = nul ? (size_t)(nul - paths) : plen;
	if (l1)
		memcpy(e.req.paths, paths, l1);
	e.req.path_len = (uint32_t)l1 + 1;
	if (two_paths(e.req.hdr.opcode)) {
		const uint8_t *p2 = nul ? nul + 1 : NULL;
		size_t rest = nul ? plen - l1 - 1 : 0;
		const uint8_t *end = rest ? memchr(p2, '\0', rest) : NULL;

		l2 = end ? (size_t)(end - p2) : rest;
		if (l2)
			memcpy(e.req.paths + l1 + 1, p2, l2);
		e.req.path2_len = (uint32_t)l2 + 1;
	}
	e.req.hdr.len = (uint32_t)(offsetof(struct iod_req, paths) - sizeof(e.req.hdr)) +
			e.req.path_len + e.req.path2_len;
	/* The offload-all fields are shaped out of range at times. */
	check(iod_req_valid(&e, NULL) || iod_op_on_handle(e.req.hdr.opcode));
	push(e.raw);
}

/* The three index lines a peer may write (its own SQ tail, iod's SQ head
 * and flags, its own CQ head and flags), then the SQ's entries.  The CQ's
 * tail and entries are iod's output, which the guest's checks read. */
static size_t tamper_offset(uint16_t x)
{
	static const size_t lines[3] = {RING_OFF_SQ_TAIL, RING_OFF_SQ_HEAD, RING_OFF_CQ_HEAD};
	size_t v = x % (3 * 64 + IOD_RING_ENTRIES * IOD_ENTRY_SIZE);

	if (v < 3 * 64)
		return lines[v / 64] + v % 64;
	return RING_OFF_SQ_ENTRIES + (v - 3 * 64);
}

static size_t tamper_end(size_t off)
{
	if (off >= RING_OFF_SQ_ENTRIES)
		return RING_OFF_SQ_ENTRIES + IOD_RING_ENTRIES * IOD_ENTRY_SIZE;
	return (off & ~(size_t)63) + 64;
}

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static void run_script(const uint8_t *d, size_t size)
{
	size_t i = 0;

	while (i < size) {
		uint8_t op = d[i++];

		switch (op & 7) {
		case 0:
		case 1:
		case 2:
		case 3: {
			size_t n;

			if (size - i < 2)
				return;
			n = get16(d + i);
			i += 2;
			if (n > size - i)
				n = size - i;
			if (op & 7)
				push_shaped(d + i, n);
			else
				push_raw(d + i, n);
			i += n;
			break;
		}
		case 4: {
			size_t off, n;

			if (size - i < 3)
				return;
			off = tamper_offset(get16(d + i));
			n = d[i + 2];
			i += 3;
			if (n > size - i)
				n = size - i;
			if (n > tamper_end(off) - off)
				n = tamper_end(off) - off;
			peer_write(off, d + i, n);
			i += n;
			break;
		}
		case 5: {
			uint32_t t;

			if (i >= size)
				return;
			t = shared_u32(RING_OFF_SQ_TAIL) + (uint32_t)(int32_t)(int8_t)d[i++];
			__atomic_store_n((uint32_t *)(peer + RING_OFF_SQ_TAIL), t,
					 __ATOMIC_RELEASE);
			break;
		}
		case 6:
			turns(16, !(op & 8));
			break;
		default: {
			size_t off, n;

			if (size - i < 3)
				return;
			off = get16(d + i) % IOD_ENTRY_SIZE;
			n = d[i + 2];
			i += 3;
			if (n > size - i)
				n = size - i;
			if (n > IOD_ENTRY_SIZE - off)
				n = IOD_ENTRY_SIZE - off;
			memcpy(last_slot() + off, d + i, n);
			i += n;
			break;
		}
		}
	}
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *tmp = getenv("TMPDIR");
	struct qerr err = {0};
	int sp[2];
	struct stat st;

	(void)argc;
	(void)argv;
	as_root = geteuid() == 0;
	trace = getenv("QUIVER_FUZZ_TRACE") != NULL;
	if (!as_root)
		fprintf(stderr, "fuzz_iod_ring: not root: iod cannot take on credentials\n");
	/* As main.c: iod applies the workload's umask itself. */
	umask(0);
	signal(SIGPIPE, SIG_IGN);
	check(qlog_init("fuzz_iod_ring", NULL, QLOG_TEXT, QLOG_ERROR, &err) == 0);

	snprintf(top, sizeof(top), "%s/quiver-fuzz-iod-XXXXXX", tmp && *tmp ? tmp : "/tmp");
	check(mkdtemp(top) != NULL);
	topfd = open(top, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	check(topfd >= 0);
	atexit(cleanup);
	write_file(topfd, "marker", marker_text, 0644);
	check(mkdirat(topfd, "outside", 0755) == 0);
	check(mkdirat(topfd, "jail", 0755) == 0);
	write_file(topfd, "jail/sibling", marker_text, 0644);
	check(mkdirat(topfd, "jail/root", 0755) == 0);
	snprintf(rootpath, sizeof(rootpath), "%s/jail/root", top);
	/* As the supervisor hands it over: a directory fd. */
	/* A mount inside the root, in a mount namespace of our own (as root;
	 * without it no walk meets a mount).  The root is opened after: a
	 * directory opened before the unshare is on the old namespace's
	 * mount, where the tmpfs is not. */
	if (as_root && unshare(CLONE_NEWNS) == 0 &&
	    mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) == 0) {
		char mnt[PATH_MAX + 8];

		snprintf(mnt, sizeof(mnt), "%s/mnt", rootpath);
		check(mkdir(mnt, 0755) == 0);
		mnt_mounted = mount("tmpfs", mnt, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m") == 0;
	}
	rootfd = open(rootpath, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	check(rootfd >= 0);
	for (size_t i = 0; i < NWATCHED; i++) {
		check(fstatat(topfd, watched[i], &watched_st[i], AT_SYMLINK_NOFOLLOW) == 0);
		forbidden[nforbidden].dev = watched_st[i].st_dev;
		forbidden[nforbidden++].ino = watched_st[i].st_ino;
	}
	check(fstatat(topfd, "..", &st, 0) == 0);
	forbidden[nforbidden].dev = st.st_dev;
	forbidden[nforbidden++].ino = st.st_ino;
	check(stat("/", &st) == 0);
	forbidden[nforbidden].dev = st.st_dev;
	forbidden[nforbidden++].ino = st.st_ino;

	/* iod's end is non-blocking, as the daemon's accepted connections are
	 * (a request with IOD_REQ_FD and no fd sent must fail, not wait). */
	check(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sp) == 0);
	guest_conn = sp[0];
	guest_sock = sp[1];
	check(fcntl(guest_sock, F_SETFL, O_NONBLOCK) == 0);

	caps_now(own_caps);
	own_ngroups = getgroups(64, own_groups);
	check(own_ngroups >= 0);
	region = ring_region_size(IOD_RING_ENTRIES, IOD_ENTRY_SIZE);
	check(exec_init(&err) == 0);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint32_t first[4] = {0, UINT32_MAX - 2, 0x7ffffffeu, UINT32_MAX - 7};
	int fds;

	if (size < 1 || size > 64 * 1024)
		return 0;
	tree_reset();
	fds = count_fds();

	/* iod's side, as on_hello leaves it; then the guest's. */
	struct ring_params p = {.entries = IOD_RING_ENTRIES,
				.entry_size = IOD_ENTRY_SIZE,
				.first_index = first[data[0] & 3]};
	sb = calloc(1, sizeof(*sb));
	check(sb != NULL);
	sb_freed = false;
	sb->conn = guest_conn;
	sb->rootfd = rootfd;
	sb->root_ro = data[0] & 0x10;
	for (unsigned h = 0; h < IOD_FILES_MAX; h++)
		sb->files[h] = -1;
	if (data[0] & 8) {
		sb->data = mmap(NULL, IOD_DATA_SIZE, PROT_READ | PROT_WRITE,
				MAP_SHARED | MAP_ANONYMOUS, -1, 0);
		check(sb->data != MAP_FAILED);
	}
	snprintf(sb->id, sizeof(sb->id), "fuzz");
	check(ring_create(&sb->ring, RING_SERVER, &p) == 0);
	check(ring_attach(&sub, RING_SUBMITTER, sb->ring.memfd, sb->ring.sq_efd, sb->ring.cq_efd) ==
	      0);
	peer = mmap(NULL, region, PROT_READ | PROT_WRITE, MAP_SHARED, sb->ring.memfd, 0);
	check(peer != MAP_FAILED);
	close(sb->ring.memfd);
	sb->ring.memfd = -1;
	cq_head_written = sub_broken = fdmsg_lost = false;
	nfdmsg = 0;

	run_script(data + 1, size - 1);
	if (!(data[0] & 4)) {
		turns(64, true);
		/* Unless a ring broke or the peer lied about CQ room, every file
		 * iod sent was announced by a completion the guest read. */
		if (!sb_freed && !sb->broken && !sub_broken && !cq_head_written && !sb->overflow)
			check(nfdmsg == 0);
	}

	/* The connection closes: sbx_kill, then the loop's turn.  In sync mode
	 * no job outlives its drain, so the sandbox goes at once. */
	if (!sb_freed) {
		sb->dead = true;
		turn_end();
	}
	check(sb_freed && !exec_has_overflow());
	sb = NULL;
	munmap(peer, region);
	ring_destroy(&sub);
	guest_read_socket();
	/* Files the guest sent for requests iod never took: the connection
	 * would close with the sandbox; here it stays, so empty it. */
	for (;;) {
		struct iod_fdmsg m;
		int fd = -1;
		ssize_t n = recv_fd(guest_conn, &m, sizeof(m), &fd);

		if (fd >= 0)
			close(fd);
		if (n < 0)
			break;
	}

	check_outside();
	check_creds();
	check(count_fds() == fds);
	return 0;
}
