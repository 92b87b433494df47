/* S, the supervisor: pid 1 of the sandbox and its guest kernel.
 *
 * Cloned by G into the new namespaces, it waits for G's go (cgroups joined,
 * id maps written), builds the rootfs, forks W, then runs one epoll loop:
 *   signalfd     SIGCHLD (reap) and every other signal (forwarded to W)
 *   guest.sock   control requests (start, listener, killall, ping)
 *   listeners    seccomp notifications of W and of exec'd processes
 *   W's channel  its seccomp listener, then "prepared" or its error
 *   exec pipe    close-on-exec: EOF without data means W's execve worked
 * When W exits, S kills what is left, writes STATE_DIR/exit and exits with
 * W's status.
 */
#include <errno.h>
#include <inttypes.h>
#include <malloc.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "libcommon/cleanup.h"
#include "libcommon/log.h"
#include "libcommon/msg.h"
#include "libcommon/statefile.h"
#include "guest/guest.h"
#include "guest/hooks.h"
#include "guest/iod_client.h"
#include "guest/meta_cache.h"
#include "guest/net_client.h"
#include "guest/policy.h"
#include "guest/trap.h"

#define MAX_CONNS     16
#define MAX_LISTENERS 64
#define IDLE_SHED_MS  2000
/* How long the loop polls after a trapped call (adaptive, below). */
#define SPIN_MAX_NS (250 * 1000)
#define SPIN_MIN_NS (15 * 1000)

enum ev_kind {
	EV_SIGNAL = 1,
	EV_CTL,
	EV_CONN,
	EV_LISTENER,
	EV_WSOCK,
	EV_EXECPIPE,
	EV_IOD,
	EV_NET,
	EV_OFFLOAD,
};

/* Messages on S<->W's socketpair. */
/* W_LISTENER carries W's seccomp listener (SCM_RIGHTS), sent before any OCI
 * profile is loaded so that no profile can block it; W_PREPARED follows
 * with a plain write once W has everything but its execve. */
enum w_msg_type { W_LISTENER = 1, W_PREPARED, W_ERROR };
struct w_msg {
	int32_t type;
	int32_t code;
	char msg[QERR_MSG_MAX];
};

enum sup_state { ST_PREPARING, ST_CREATED, ST_STARTING, ST_RUNNING };

struct sup {
	struct sup_args *a;
	bool userns; /* the sandbox has its own user namespace */
	int epfd;
	int sigfd;
	int wsock;    /* S's end of the channel with W */
	int start_wr; /* W reads its start byte from the other end */
	int exec_rd;  /* W's close-on-exec error pipe */
	pid_t wpid;   /* W in our pid namespace */
	pid_t wpid_host;
	enum sup_state state;
	bool w_listener;   /* W handed over its seccomp listener */
	int pending_start; /* connection waiting for "started", or -1 */
	int conns[MAX_CONNS];
	int listeners[MAX_LISTENERS];
	struct trap_ctx trap;
	struct iod_client iodc;	 /* with io.quiver.iod: the sandbox's ring to iod */
	struct net_client *netc; /* with io.quiver.net bridge or quiver: netd */
	int exec_errno;
	char exec_msg[QERR_MSG_MAX];
};

static uint64_t ev_data(enum ev_kind k, int fd)
{
	return ((uint64_t)k << 32) | (uint32_t)fd;
}

static int ep_add(struct sup *s, enum ev_kind k, int fd)
{
	struct epoll_event ev = {.events = EPOLLIN, .data.u64 = ev_data(k, fd)};
	return epoll_ctl(s->epfd, EPOLL_CTL_ADD, fd, &ev);
}

/* iod's fds (its CQ eventfd and connection), as the client attaches and
 * detaches. */
static void iod_watch(void *arg, int fd, bool add)
{
	struct sup *s = arg;

	if (add) {
		/* The eventfd says "completions"; the connection matters only
		 * when it hangs up (its fd messages are read with their
		 * completions, and must not keep a level-triggered EPOLLIN
		 * spinning the loop meanwhile). */
		uint32_t events = fd == s->iodc.conn ? EPOLLRDHUP : EPOLLIN;
		struct epoll_event ev = {.events = events, .data.u64 = ev_data(EV_IOD, fd)};
		epoll_ctl(s->epfd, EPOLL_CTL_ADD, fd, &ev);
	} else {
		epoll_ctl(s->epfd, EPOLL_CTL_DEL, fd, NULL);
	}
}

/* netd's connection, and in quiver mode the sockets the service waits on. */
static void net_watch(void *arg, int fd, uint32_t events, bool add)
{
	struct sup *s = arg;

	if (add) {
		struct epoll_event ev = {.events = events, .data.u64 = ev_data(EV_NET, fd)};
		epoll_ctl(s->epfd, EPOLL_CTL_ADD, fd, &ev);
	} else {
		epoll_ctl(s->epfd, EPOLL_CTL_DEL, fd, NULL);
	}
}

static void ep_del_close(struct sup *s, int fd)
{
	epoll_ctl(s->epfd, EPOLL_CTL_DEL, fd, NULL);
	close(fd);
}

/* ---- W ---- */

static _Noreturn void w_fail(int sock, const struct qerr *err)
{
	struct w_msg m = {.type = W_ERROR, .code = err->code ? err->code : EINVAL};
	snprintf(m.msg, sizeof(m.msg), "%s", err->msg);
	(void)!write(sock, &m, sizeof(m));
	_exit(1);
}

static int send_listener_to_s(int listener, void *arg)
{
	struct w_msg m = {.type = W_LISTENER};
	return send_fd(*(int *)arg, listener, &m, sizeof(m));
}

/* oci: NULL to compile the OCI profile here (a forked W), else the one S
 * compiled (*oci, NULL if none; a W in S's memory, which S frees). */
static _Noreturn void workload_main(struct sup_args *a, int sock, int start_rd, int exec_wr,
				    void *const *oci)
{
	struct qerr err = {0};
	const struct guest_config *cfg = a->cfg;

	/* The first message on G's channel, from W itself: SO_PASSCRED there
	 * makes the kernel tell G our pid as G's namespace sees it. */
	struct gs_msg hello = {.type = GS_HELLO_W};
	if (write(a->g_sock, &hello, sizeof(hello)) < 0) {
		qerr_sys(&err, errno, "workload: hello");
		w_fail(sock, &err);
	}
	close(a->g_sock);

	struct workload_spec ws = {
	    .proc = &cfg->process,
	    .seccomp = cfg->seccomp,
	    .console_fd = a->console_fd,
	    .preserve_fds = a->opts->preserve_fds,
	    .keep_fds = {sock, start_rd, exec_wr},
	    .n_keep_fds = 3,
	    .in_user_ns = (cfg->clone_flags & CLONE_NEWUSER) || cfg->ns_present[GUEST_NS_USER],
	};
	/* startContainer's state is made now, before any filter is on */
	char *start_state = NULL;
	if (hooks_any(&cfg->hooks.start_container)) {
		start_state = hooks_state_json(cfg, a->opts->id, "created", a->host_pid, &err);
		if (!start_state)
			w_fail(sock, &err);
	}
	void *late_profile = NULL;
	if ((oci ? workload_prepare_compiled(&ws, *oci, send_listener_to_s, &sock, &late_profile,
					     &err)
		 : workload_prepare(&ws, send_listener_to_s, &sock, &late_profile, &err)) < 0)
		w_fail(sock, &err);
	struct w_msg ok = {.type = W_PREPARED};
	if (write(sock, &ok, sizeof(ok)) != (ssize_t)sizeof(ok)) {
		qerr_sys(&err, errno ? errno : EIO, "workload: report prepared");
		w_fail(sock, &err);
	}
	close(sock);

	/* Wait for start: one byte.  EOF means S gave up on us.  Spawned
	 * directly (start_rd -1), the start is now. */
	char c;
	ssize_t n = 1;
	while (start_rd >= 0 && (n = read(start_rd, &c, 1)) < 0 && errno == EINTR)
		;
	if (n != 1)
		_exit(1);

	/* startContainer: in the container, just before the execve; its
	 * failure fails `start` like a failed execve */
	if (start_state &&
	    hooks_run(&cfg->hooks.start_container, "startContainer", start_state, false, &err) == 0)
		workload_exec(&cfg->process, cfg->process.env, late_profile, &err);
	else if (!start_state)
		workload_exec(&cfg->process, cfg->process.env, late_profile, &err);
	struct w_msg m = {.type = W_ERROR, .code = err.code};
	snprintf(m.msg, sizeof(m.msg), "%s", err.msg);
	(void)!write(exec_wr, &m, sizeof(m));
	/* Started by itself, nobody asks S why: the caller (run) learns it
	 * here, where runc would have said it. */
	if (a->autostart)
		dprintf(2, "%s\n", err.msg);
	_exit(127);
}

/* ---- the workload's spawn without a copy of S ---- */

/* A warm start assigned with start needs no start byte: W can exec as soon
 * as it is prepared.  Then W is spawned like posix_spawn's child, sharing
 * S's memory on a stack of its own while S waits (CLONE_VM|CLONE_VFORK),
 * instead of fork()ing a copy of S: no page tables to copy, no
 * copy-on-write faults in W or, afterwards, in S (about 20 us each on
 * this VM), and nothing to tear down at W's execve.
 *
 * S is stopped until W execs or exits, so nothing W does before its
 * execve may wait for S: W's calls after its filter must all pass
 * (plain mode: no iod, no socket service; an OCI profile's load is a
 * seccomp(2) call, NOTIFY is refused in profiles), no startContainer
 * hook, no console.  S compiles the OCI profile and frees it after: W
 * only loads it, so nothing W allocates in S's heap outlives W's exec.
 * Nor under ASan, which warns on W's stderr about a stack it does not
 * know (and would leave W's redzones poisoned): sanitized builds test the
 * fork path. */
#define W_STACK_SIZE (256 * 1024)

static bool direct_spawn_fits(const struct sup_args *a, int iod_on, int net_mode)
{
	const struct guest_config *cfg = a->cfg;
#ifdef __SANITIZE_ADDRESS__
	return false;
#endif
	return a->autostart && !iod_on && net_mode != NET_MODE_QUIVER &&
	       !hooks_any(&cfg->hooks.start_container) && a->console_fd < 0 &&
	       !(cfg->clone_flags & CLONE_NEWUSER);
}

struct direct_w {
	struct sup_args *a;
	int sock, exec_wr;
	void *oci; /* compiled by S, or NULL */
};

static int direct_w_main(void *arg)
{
	struct direct_w *d = arg;
	workload_main(d->a, d->sock, -1, d->exec_wr, &d->oci);
}

/* Returns W's pid once W has exec'd or exited; -1 with errno set. */
static pid_t spawn_direct(struct direct_w *d)
{
	long page = sysconf(_SC_PAGESIZE);
	size_t len = W_STACK_SIZE + (size_t)page;
	char *stk =
	    mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
	if (stk == MAP_FAILED)
		return -1;
	/* a guard page below, so that an overflow faults instead of writing
	 * into S's memory */
	pid_t pid = -1;
	if (mprotect(stk, (size_t)page, PROT_NONE) == 0)
		pid = clone(direct_w_main, stk + len, CLONE_VM | CLONE_VFORK | SIGCHLD, d);
	int e = errno;
	munmap(stk, len);
	errno = e;
	return pid;
}

/* ---- replies ---- */

static void reply(int conn, struct qmsg_out *m)
{
	if (send(conn, qmsg_data(m), qmsg_size(m), MSG_NOSIGNAL) < 0)
		qlog_warn("control: reply: %s", strerror(errno));
}

static void reply_ok(int conn, const char *state)
{
	struct qmsg_out m;
	qmsg_out_init(&m);
	qmsg_begin(&m, "ok", state ? 1 : 0);
	if (state)
		qmsg_put_str(&m, "state", state);
	reply(conn, &m);
	qmsg_out_free(&m);
}

static void reply_err(int conn, int code, const char *msg)
{
	struct qerr e = {.code = code};
	snprintf(e.msg, sizeof(e.msg), "%s", msg);
	struct qmsg_out m;
	qmsg_out_init(&m);
	qmsg_error_reply(&m, &e);
	reply(conn, &m);
	qmsg_out_free(&m);
}

static void reply_started(struct sup *s)
{
	if (s->pending_start < 0)
		return;
	if (s->exec_errno) {
		reply_err(s->pending_start, s->exec_errno, s->exec_msg);
	} else {
		struct qmsg_out m;
		qmsg_out_init(&m);
		qmsg_begin(&m, "started", 1);
		qmsg_put_int(&m, "pid", s->wpid_host);
		reply(s->pending_start, &m);
		qmsg_out_free(&m);
	}
	close(s->pending_start);
	for (int i = 0; i < MAX_CONNS; i++)
		if (s->conns[i] == s->pending_start)
			s->conns[i] = -1;
	s->pending_start = -1;
}

/* ---- exit ---- */

static _Noreturn void sup_exit(struct sup *s, int status)
{
	/* As pid-namespace init, kill(-1) reaches every other process of the
	 * sandbox and nothing outside it. */
	if (kill(-1, SIGKILL) < 0 && errno != ESRCH)
		qlog_warn("kill(-1): %s", strerror(errno));
	int code = WIFEXITED(status) ? WEXITSTATUS(status)
				     : (WIFSIGNALED(status) ? 128 + WTERMSIG(status) : 255);
	int sig = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
	char buf[128];
	int n = snprintf(buf, sizeof(buf), "{\"status\":%d,\"exit_code\":%d,\"signal\":%d}\n",
			 status, code, sig);
	struct qerr err = {0};
	/* Atomic, not fsynced: vmmd reads it as soon as we are gone, from the
	 * page cache; a machine crash ends the sandbox and the report alike,
	 * and the two fsyncs would delay our exit, which the caller waits for. */
	if (statefile_write_atomic(s->a->state_dirfd, "exit", buf, (size_t)n, 0600, &err) < 0)
		qlog_error("write exit report: %s", err.msg);
	if (s->state == ST_STARTING)
		reply_started(s);
	qlog_info("workload exited: status %d, exit code %d", status, code);
	struct meta_cache_stats mc;
	meta_cache_stats(&mc);
	if (mc.hits + mc.misses > 0)
		qlog_info("iod metadata cache: %llu hits, %llu misses, %llu kept, %u entries, "
			  "%llu flushes",
			  (unsigned long long)mc.hits, (unsigned long long)mc.misses,
			  (unsigned long long)mc.inserts, mc.entries,
			  (unsigned long long)mc.flushes);
	struct sys_offload_stats os;
	sys_offload_stats(&os);
	if (os.hits + os.misses > 0)
		qlog_info("iod offload-all: %llu calls on registered files, %llu lookups "
			  "(%llu registered, %llu left to the kernel), %llu dropped, "
			  "%llu bytes read, %llu written",
			  (unsigned long long)os.hits, (unsigned long long)os.misses,
			  (unsigned long long)os.added, (unsigned long long)os.passed,
			  (unsigned long long)os.drops, (unsigned long long)os.bytes_read,
			  (unsigned long long)os.bytes_written);
	_exit(code);
}

/* ---- control requests ---- */

static bool is_seccomp_listener(int fd)
{
	/* Only a seccomp listener answers this ioctl with ENOENT (no such
	 * notification id); anything else gives ENOTTY or EINVAL. */
	uint64_t id = 0;
	return ioctl(fd, SECCOMP_IOCTL_NOTIF_ID_VALID, &id) < 0 && errno == ENOENT;
}

#ifndef SECCOMP_IOCTL_NOTIF_SET_FLAGS
#define SECCOMP_IOCTL_NOTIF_SET_FLAGS _IOW('!', 4, __u64)
#endif
#ifndef SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP
#define SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP 1ull
#endif

static int add_listener(struct sup *s, int fd)
{
	/* The trapped task and we take turns: ask the scheduler to switch
	 * straight to the other side (6.6+; older kernels say EINVAL, which
	 * only costs the speed-up). */
	(void)ioctl(fd, SECCOMP_IOCTL_NOTIF_SET_FLAGS, SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP);
	for (int i = 0; i < MAX_LISTENERS; i++) {
		if (s->listeners[i] < 0) {
			if (ep_add(s, EV_LISTENER, fd) < 0)
				return -errno;
			s->listeners[i] = fd;
			return 0;
		}
	}
	return -EMFILE;
}

static void drop_listener(struct sup *s, int fd)
{
	for (int i = 0; i < MAX_LISTENERS; i++)
		if (s->listeners[i] == fd)
			s->listeners[i] = -1;
	ep_del_close(s, fd);
}

static const char *state_name(enum sup_state st)
{
	return st == ST_CREATED ? "created" : "running";
}

/* Returns true when the connection stays open (a pending start).  Not
 * inlined, like signal_readable: inlined, their buffers (12 KiB) would be
 * part of serve's frame, live for the sandbox's whole life, instead of
 * below it where shed_stack gives them back. */
static __attribute__((noinline)) bool handle_request(struct sup *s, int conn)
{
	char buf[8192];
	int fd = -1;
	ssize_t n = recv_fd(conn, buf, sizeof(buf), &fd);
	cleanup_close int passed = fd;
	if (n <= 0)
		return false;
	struct qerr err = {0};
	struct qmsg_in in;
	if (qmsg_parse(&in, buf, (size_t)n, &err) < 0) {
		reply_err(conn, err.code, err.msg);
		return false;
	}
	bool keep = false;
	if (strcmp(in.op, "start") == 0) {
		if (s->state != ST_CREATED) {
			reply_err(conn, EBUSY,
				  s->state == ST_PREPARING ? "start: sandbox not created yet"
							   : "start: already started");
		} else {
			char c = 1;
			if (write(s->start_wr, &c, 1) != 1) {
				reply_err(conn, errno, "start: workload is gone");
			} else {
				close(s->start_wr);
				s->start_wr = -1;
				s->state = ST_STARTING;
				/* the reply waits for the exec pipe; a client that hangs
				 * up meanwhile must not spin the loop */
				epoll_ctl(s->epfd, EPOLL_CTL_DEL, conn, NULL);
				s->pending_start = conn;
				keep = true;
				if (ep_add(s, EV_EXECPIPE, s->exec_rd) < 0)
					qlog_error("epoll_ctl exec pipe: %s", strerror(errno));
			}
		}
	} else if (strcmp(in.op, "listener") == 0) {
		if (passed < 0 || !is_seccomp_listener(passed)) {
			reply_err(conn, EINVAL, "listener: no seccomp listener fd attached");
		} else {
			int r = add_listener(s, passed);
			if (r < 0) {
				reply_err(conn, -r, "listener: too many listeners");
			} else {
				passed = -1;
				reply_ok(conn, NULL);
			}
		}
	} else if (strcmp(in.op, "killall") == 0) {
		int64_t sig = SIGKILL;
		if (qmsg_get_int(in.root, "signal", 1, SIGRTMAX, &sig, &err) == -EINVAL) {
			reply_err(conn, EINVAL, err.msg);
		} else if (kill(-1, (int)sig) < 0 && errno != ESRCH) {
			reply_err(conn, errno, "killall: kill failed");
		} else {
			reply_ok(conn, NULL);
		}
	} else if (strcmp(in.op, "ping") == 0) {
		reply_ok(conn, state_name(s->state));
	} else {
		char msg[96];
		snprintf(msg, sizeof(msg), "unknown op \"%s\"", in.op);
		reply_err(conn, EINVAL, msg);
	}
	qmsg_in_free(&in);
	return keep;
}

static void accept_conn(struct sup *s, int ctl)
{
	int c = accept4(ctl, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
	if (c < 0)
		return;
	struct ucred cr;
	socklen_t len = sizeof(cr);
	/* Host root only.  In a user namespace the peer's uid is seen through
	 * our mapping; there the 0700 state directory is the gate. */
	if (getsockopt(c, SOL_SOCKET, SO_PEERCRED, &cr, &len) < 0 || (!s->userns && cr.uid != 0)) {
		qlog_warn("control: refused a connection from uid %u", (unsigned)cr.uid);
		close(c);
		return;
	}
	for (int i = 0; i < MAX_CONNS; i++) {
		if (s->conns[i] < 0) {
			if (ep_add(s, EV_CONN, c) < 0)
				break;
			s->conns[i] = c;
			return;
		}
	}
	close(c);
}

static void conn_readable(struct sup *s, int conn)
{
	if (handle_request(s, conn))
		return;
	for (int i = 0; i < MAX_CONNS; i++)
		if (s->conns[i] == conn)
			s->conns[i] = -1;
	ep_del_close(s, conn);
}

/* S idles for the sandbox's whole life, one per sandbox: what it needed
 * only to build the sandbox goes back to the kernel.  The stack pages
 * below the caller that the rootfs code and the start touched (madvise:
 * they read as zero if touched again), at the start of the idle life. */
static void shed_stack(void)
{
	static uintptr_t lo, hi;
	char line[256], here;
	FILE *f = lo ? NULL : fopen("/proc/self/maps", "re");
	while (f && fgets(line, sizeof(line), f))
		if (strstr(line, "[stack]") &&
		    sscanf(line, "%" SCNxPTR "-%" SCNxPTR, &lo, &hi) == 2)
			break;
	if (f)
		fclose(f);
	uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
	/* One page below ours for madvise's own frame; whatever the loop
	 * touches below that comes back as zero pages when it runs again. */
	uintptr_t top = (((uintptr_t)&here) & ~(page - 1)) - page;
	if (lo && top > lo && top < hi && madvise((void *)lo, top - lo, MADV_DONTNEED) < 0)
		qlog_debug("madvise stack: %s", strerror(errno));
}

/* The config, which nothing reads once W is spawned (a forked W has its
 * own copy), and the heap it leaves free: with the stack, once the running
 * sandbox has been quiet for IDLE_SHED_MS.  Not at the start: the trim
 * (brk, madvise) flushes the TLBs of every CPU that ran S's memory, W's
 * among them when W was spawned in it, with IPIs that are dear on this VM
 * (a few percent of a burst's CPU), and the start does not need it. */
static void shed_config(struct sup_args *a)
{
	if (!a->cfg)
		return;
	guest_config_free(a->cfg);
	a->cfg = NULL;
	malloc_trim(0);
}

/* ---- W's channel ---- */

static void report_g(struct sup *s, int type, const struct qerr *err)
{
	if (s->a->g_sock >= 0 && gs_send(s->a->g_sock, type, err) < 0)
		qlog_warn("report to launcher: %s", strerror(errno));
}

static _Noreturn void fail_prepare(struct sup *s, const struct qerr *err)
{
	qlog_error("%s", err->msg);
	report_g(s, GS_ERROR, err);
	kill(-1, SIGKILL);
	_exit(1);
}

/* S is no longer anyone's pipe: stdio goes to /dev/null, the caller's
 * preserved fds and the console socket are W's alone. */
static void drop_caller_fds(struct sup *s, int devnull)
{
	for (int i = 0; i <= 2; i++)
		if (dup2(devnull, i) < 0)
			qlog_warn("dup2 /dev/null: %s", strerror(errno));
	for (int i = 0; i < s->a->opts->preserve_fds; i++)
		close(3 + i);
	if (s->a->console_fd >= 0)
		close(s->a->console_fd);
	s->a->console_fd = -1;
}

/* A warm start assigned with start: the workload goes on as soon as it is
 * prepared; nobody waits for a "started" reply (an exec failure ends the
 * sandbox with status 127, which vmmd reports). */
static void autostart(struct sup *s)
{
	char c = 1;
	/* spawned directly (start_wr -1), W needs no start byte */
	if (s->start_wr >= 0 && write(s->start_wr, &c, 1) != 1) {
		qlog_error("start: workload is gone");
		return;
	}
	if (s->start_wr >= 0)
		close(s->start_wr);
	s->start_wr = -1;
	s->state = ST_STARTING;
	if (ep_add(s, EV_EXECPIPE, s->exec_rd) < 0)
		qlog_error("epoll_ctl exec pipe: %s", strerror(errno));
}

static void wsock_readable(struct sup *s, int devnull)
{
	struct w_msg m;
	int fd = -1;
	ssize_t n = recv_fd(s->wsock, &m, sizeof(m), &fd);
	struct qerr err = {0};
	if (n <= 0 || (size_t)n != sizeof(m)) {
		if (fd >= 0)
			close(fd);
		ep_del_close(s, s->wsock);
		s->wsock = -1;
		if (s->state == ST_PREPARING) {
			qerr_set(&err, EIO, "workload: died while being prepared");
			fail_prepare(s, &err);
		}
		return;
	}
	m.msg[sizeof(m.msg) - 1] = '\0';
	switch (m.type) {
	case W_ERROR:
		err.code = m.code ? m.code : EIO;
		snprintf(err.msg, sizeof(err.msg), "%s", m.msg);
		fail_prepare(s, &err);
	case W_LISTENER:
		if (fd < 0 || s->w_listener || add_listener(s, fd) < 0) {
			if (fd >= 0)
				close(fd);
			qerr_set(&err, EIO, "workload: bad seccomp listener");
			fail_prepare(s, &err);
		}
		s->w_listener = true;
		return;
	case W_PREPARED: {
		if (fd >= 0)
			close(fd);
		if (!s->w_listener) {
			qerr_set(&err, EIO, "workload: prepared without a seccomp listener");
			fail_prepare(s, &err);
		}
		/* G told us W's host pid right after W's hello, before this. */
		struct gs_msg g;
		ssize_t r;
		do
			r = read(s->a->g_sock, &g, sizeof(g));
		while (r < 0 && errno == EINTR);
		if (r == (ssize_t)sizeof(g) && g.type == GS_HELLO_W)
			s->wpid_host = g.code;
		s->state = ST_CREATED;
		report_g(s, GS_READY, NULL);
		close(s->a->g_sock);
		s->a->g_sock = -1;
		ep_del_close(s, s->wsock);
		s->wsock = -1;
		drop_caller_fds(s, devnull);
		qlog_debug("created: workload pid %d", (int)s->wpid_host);
		if (s->a->autostart)
			autostart(s);
		return;
	}
	default:
		if (fd >= 0)
			close(fd);
		qerr_set(&err, EIO, "workload: bad message %d", m.type);
		fail_prepare(s, &err);
	}
}

static void execpipe_readable(struct sup *s)
{
	struct w_msg m;
	ssize_t n = read(s->exec_rd, &m, sizeof(m));
	if (n < 0 && errno == EINTR)
		return;
	if (n == (ssize_t)sizeof(m) && m.type == W_ERROR) {
		m.msg[sizeof(m.msg) - 1] = '\0';
		s->exec_errno = m.code ? m.code : EIO;
		snprintf(s->exec_msg, sizeof(s->exec_msg), "%s", m.msg);
		qlog_error("%s", m.msg);
	}
	/* EOF (the close-on-exec end went away) or an error report: done. */
	ep_del_close(s, s->exec_rd);
	s->exec_rd = -1;
	s->state = ST_RUNNING;
	reply_started(s);
	shed_stack();
}

/* ---- signals ---- */

static __attribute__((noinline)) void signal_readable(struct sup *s)
{
	struct signalfd_siginfo si[16];
	ssize_t n = read(s->sigfd, si, sizeof(si));
	if (n <= 0)
		return;
	for (size_t i = 0; i < (size_t)n / sizeof(si[0]); i++) {
		if (si[i].ssi_signo != SIGCHLD) {
			if (kill(s->wpid, (int)si[i].ssi_signo) < 0 && errno != ESRCH)
				qlog_warn("forward signal %u: %s", si[i].ssi_signo,
					  strerror(errno));
		}
	}
	/* Reap everything: orphans of the sandbox are re-parented to us. */
	for (;;) {
		int status;
		pid_t p = waitpid(-1, &status, WNOHANG);
		if (p <= 0)
			break;
		if (p != s->wpid)
			continue;
		if (s->state == ST_PREPARING) {
			struct qerr err = {0};
			/* a W_ERROR may still be queued on the channel */
			if (s->wsock >= 0) {
				struct w_msg m;
				int fd = -1;
				if (recv_fd(s->wsock, &m, sizeof(m), &fd) == (ssize_t)sizeof(m) &&
				    m.type == W_ERROR) {
					m.msg[sizeof(m.msg) - 1] = '\0';
					qerr_set(&err, m.code ? m.code : EIO, "%s", m.msg);
					fail_prepare(s, &err);
				}
			}
			qerr_set(&err, EIO, "workload: exited while being prepared (status %d)",
				 status);
			fail_prepare(s, &err);
		}
		if (s->state == ST_STARTING && s->exec_rd >= 0)
			execpipe_readable(s);
		sup_exit(s, status);
	}
}

/* ---- entry ---- */

/* G's go: the cgroups are made and we are in them (and our id maps are
 * written).  Anything else means G failed and is about to kill us. */
static int wait_go(void *arg)
{
	struct sup_args *a = arg;
	if (a->go)
		return 0;
	struct gs_msg go;
	ssize_t n;
	do
		n = read(a->g_sock, &go, sizeof(go));
	while (n < 0 && errno == EINTR);
	if (n != (ssize_t)sizeof(go) || go.type != GS_GO)
		_exit(1); /* G failed and is cleaning up */
	a->go = true;
	a->host_pid = go.code;
	return 0;
}

/* createContainer: in our mount namespace, before pivot_root, so that the
 * hook's path is still the runtime namespace's. */
static int create_container_hooks(void *arg, struct qerr *err)
{
	struct sup_args *a = arg;
	const struct guest_hook_list *l = &a->cfg->hooks.create_container;
	if (!hooks_any(l))
		return 0;
	wait_go(a); /* our host pid comes with it */
	cleanup_free char *state =
	    hooks_state_json(a->cfg, a->opts->id, "creating", a->host_pid, err);
	if (!state)
		return -err->code;
	return hooks_run(l, "createContainer", state, false, err);
}

/* The user namespace's root, for the rootfs helper: files it creates (mount
 * points in a tmpfs of the sandbox) need an owner the namespace maps, which
 * our host uid 0 is not (EOVERFLOW).  G wrote the gid map without denying
 * setgroups, so the groups may be cleared. */
static int become_ns_root(void *arg)
{
	(void)arg;
	if (setresgid(0, 0, 0) < 0 || setgroups(0, NULL) < 0 || setresuid(0, 0, 0) < 0)
		return -errno;
	return 0;
}

/* In a new user namespace the rootfs is built by a short-lived child as the
 * namespace's root (runc's init does the same), while S keeps its host
 * credentials: the exit report goes into the host's root-only state
 * directory.  pivot_root moves S's root along with the child's. */
static int rootfs_setup_as_ns_root(struct sup_args *a, struct qerr *err)
{
	int p[2];
	if (pipe2(p, O_CLOEXEC) < 0)
		return qerr_sys(err, errno, "pipe");
	pid_t pid = fork();
	if (pid < 0) {
		close(p[0]);
		close(p[1]);
		return qerr_sys(err, errno, "fork rootfs helper");
	}
	if (pid == 0) {
		close(p[0]);
		struct qerr e = {0};
		struct rootfs_calls calls = {.cgroups_ready = wait_go,
					     .become_root = become_ns_root,
					     .before_pivot = create_container_hooks,
					     .arg = a};
		if (rootfs_setup(a->cfg, a->cg, &calls, &e) == 0)
			_exit(0);
		(void)!write(p[1], &e, sizeof(e));
		_exit(1);
	}
	close(p[1]);
	struct qerr e = {0};
	ssize_t n;
	do
		n = read(p[0], &e, sizeof(e));
	while (n < 0 && errno == EINTR);
	close(p[0]);
	int status = 0;
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (n == (ssize_t)sizeof(e)) {
		e.msg[sizeof(e.msg) - 1] = '\0';
		*err = e;
		return -(e.code ? e.code : EIO);
	}
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		return qerr_set(err, EIO, "rootfs helper died (status %d)", status);
	/* our cwd is still the caller's, in the old root */
	if (chdir("/") < 0)
		return qerr_sys(err, errno, "chdir /");
	return 0;
}

static int setup_ns_and_rootfs(struct sup_args *a, struct qerr *err)
{
	const struct guest_config *cfg = a->cfg;
	int r;
	/* Without a user namespace nothing here needs G's go until the cgroup
	 * mount: the rootfs is built while G makes the cgroups.  G's
	 * createRuntime hooks must run before we mount anything. */
	if ((cfg->clone_flags & CLONE_NEWUSER) || hooks_any(&cfg->hooks.prestart) ||
	    hooks_any(&cfg->hooks.create_runtime))
		wait_go(a);
	if (cfg->clone_flags & CLONE_NEWUSER) {
		r = rootfs_setup_as_ns_root(a, err);
	} else {
		struct rootfs_calls calls = {.cgroups_ready = wait_go,
					     .before_pivot = create_container_hooks,
					     .arg = a,
					     .layer_upper = a->layer_upper,
					     .layer_work = a->layer_work,
					     .dev_tree = &a->dev_tree,
					     .sys_tree = &a->sys_tree,
					     .proc_tree = &a->proc_tree};
		r = rootfs_setup(cfg, a->cg, &calls, err);
	}
	if (r < 0)
		return r;
	/* Before W is forked, G must have put us in our cgroups: W is born
	 * in them, and our cgroup namespace's root is the sandbox's cgroup,
	 * not G's. */
	wait_go(a);
	if ((cfg->clone_flags & CLONE_NEWCGROUP) && unshare(CLONE_NEWCGROUP) < 0)
		return qerr_sys(err, errno, "unshare cgroup namespace");
	return 0;
}

static void sup_init(struct sup *s, struct sup_args *a)
{
	*s = (struct sup){.a = a, .pending_start = -1, .start_wr = -1, .exec_rd = -1, .wsock = -1};
	for (int i = 0; i < MAX_CONNS; i++)
		s->conns[i] = -1;
	for (int i = 0; i < MAX_LISTENERS; i++)
		s->listeners[i] = -1;
}

static _Noreturn void serve(struct sup *s, int devnull);

/* The annotation io.quiver.iod: "on" sends the workload's file-path calls
 * to iod (docs/iod.md), "offload-all" its reads and writes of regular
 * files too.  1 on, 2 offload-all, 0 off, -errno with err filled. */
static int want_iod(const struct guest_config *cfg, struct qerr *err)
{
	int mode = 0;

	for (size_t i = 0; i < cfg->n_annotations; i++) {
		const char *v = cfg->annotations[i].value;

		if (strcmp(cfg->annotations[i].key, "io.quiver.iod") != 0)
			continue;
		if (strcmp(v, "off") == 0)
			return 0;
		if (strcmp(v, "on") == 0)
			mode = 1;
		else if (strcmp(v, "offload-all") == 0)
			mode = 2;
		else
			return qerr_set(err, EINVAL,
					"annotation io.quiver.iod: \"%s\" is not \"on\", "
					"\"offload-all\" or \"off\"",
					v);
		break;
	}
	if (!mode)
		return 0;
	if (cfg->clone_flags & CLONE_NEWUSER)
		return qerr_set(err, ENOTSUP,
				"annotation io.quiver.iod: sandboxes with a user namespace are not "
				"served by iod yet");
	/* The supervisor reads the workload's cwd, fds and credentials there. */
	if (access("/proc/self/status", R_OK) < 0)
		return qerr_set(err, EINVAL,
				"annotation io.quiver.iod: the sandbox needs /proc mounted");
	return mode;
}

/* The annotation io.quiver.iod.cache: "on" (the default) lets the guest
 * keep iod's answers about a read-only root (guest/meta_cache.h); "off"
 * asks iod every time.  1, 0, or -EINVAL with err filled. */
static int want_meta_cache(const struct guest_config *cfg, struct qerr *err)
{
	for (size_t i = 0; i < cfg->n_annotations; i++) {
		const char *v = cfg->annotations[i].value;

		if (strcmp(cfg->annotations[i].key, "io.quiver.iod.cache") != 0)
			continue;
		if (strcmp(v, "on") == 0 || strcmp(v, "off") == 0)
			return strcmp(v, "on") == 0;
		return qerr_set(err, EINVAL,
				"annotation io.quiver.iod.cache: \"%s\" is not \"on\" or \"off\"",
				v);
	}
	return 1;
}

int supervisor_main(void *arg)
{
	struct sup_args *a = arg;
	struct qerr err = {0};
	struct sup s;
	sup_init(&s, a);

	/* The caller waits for EOF on the sync socket: only G holds it. */
	close(a->opts->sync_fd);

	/* Whatever else the caller left open (fds without close-on-exec, G's
	 * --log file) is not the sandbox's: keep only the preserved fds and
	 * ours.  The log goes to stderr while its old fd is closed. */
	(void)qlog_init("quiver-guest", NULL, QLOG_TEXT, QLOG_INFO, &err);
	int keep[] = {a->state_dirfd, a->ctl_fd, a->g_sock, a->console_fd};
	if (close_all_but(3 + a->opts->preserve_fds, keep, (int)ARRAY_SIZE(keep), &err) < 0)
		fail_prepare(&s, &err);
	for (int i = 0; i < GUEST_NS_COUNT; i++)
		a->ns_fds[i] = -1;
	if (qlog_init("quiver-guest", a->log_path, QLOG_TEXT, QLOG_INFO, &err) < 0)
		fail_prepare(&s, &err);
	/* Nothing in the sandbox may ptrace or read the memory of its kernel. */
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0) {
		qerr_sys(&err, errno, "prctl(PR_SET_DUMPABLE)");
		fail_prepare(&s, &err);
	}

	/* Opened while the host's /dev is still visible. */
	int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (devnull < 0) {
		qerr_sys(&err, errno, "open /dev/null");
		fail_prepare(&s, &err);
	}
	serve(&s, devnull);
}

_Noreturn void supervisor_serve(struct sup_args *a, int devnull)
{
	struct sup s;
	sup_init(&s, a);
	serve(&s, devnull);
}

/* From the rootfs on: the same for a cold start and a warm one. */
static _Noreturn void serve(struct sup *sp, int devnull)
{
	struct sup_args *a = sp->a;
	struct sup s = *sp;
	struct qerr err = {0};
	/* What the rootfs code makes (a missing cwd, mount points) gets the
	 * modes runc gives it, whatever the umask of whoever started us (poold
	 * runs with 077). */
	umask(022);
	if (setup_ns_and_rootfs(a, &err) < 0)
		fail_prepare(&s, &err);
	s.iodc.conn = s.iodc.rundir = s.iodc.rootfd = -1;
	int iod_on = want_iod(a->cfg, &err);
	if (iod_on < 0 || (iod_on && iod_client_open(&s.iodc, a->state_dirfd, a->opts->id,
						     iod_on == 2, &err) < 0))
		fail_prepare(&s, &err);
	if (iod_on == 2) {
		if (sys_offload_init(&s.iodc) < 0) {
			qerr_sys(&err, errno, "offload-all: epoll");
			fail_prepare(&s, &err);
		}
		trap_use_offload(true);
	}
	if (iod_on) {
		trap_use_iod(true);
		s.trap.iod = &s.iodc;
		if ((s.iodc.cache = want_meta_cache(a->cfg, &err)) < 0)
			fail_prepare(&s, &err);
	}
	/* The network before the workload exists: it starts with its address. */
	int net_mode = net_mode_from_config(a->cfg, &err);
	if (net_mode < 0 ||
	    (net_mode != NET_MODE_NONE &&
	     net_client_open(&s.netc, a->state_dirfd, a->opts->id, a->cfg, net_mode, &err) < 0))
		fail_prepare(&s, &err);
	if (net_mode == NET_MODE_QUIVER) {
		trap_use_net(true);
		s.trap.net = s.netc;
	}

	/* Every catchable signal is read from a signalfd; W unblocks them. */
	sigset_t all;
	sigfillset(&all);
	if (sigprocmask(SIG_BLOCK, &all, NULL) < 0) {
		qerr_sys(&err, errno, "sigprocmask");
		fail_prepare(&s, &err);
	}
	s.sigfd = signalfd(-1, &all, SFD_CLOEXEC | SFD_NONBLOCK);
	s.epfd = epoll_create1(EPOLL_CLOEXEC);
	/* spawned directly, W has no start pipe */
	bool direct = direct_spawn_fits(a, iod_on, net_mode);
	int wsp[2], startp[2] = {-1, -1}, execp[2];
	if (s.sigfd < 0 || s.epfd < 0 ||
	    socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, wsp) < 0 ||
	    (!direct && pipe2(startp, O_CLOEXEC) < 0) || pipe2(execp, O_CLOEXEC) < 0) {
		qerr_sys(&err, errno, "supervisor setup");
		fail_prepare(&s, &err);
	}

	pid_t w;
	if (direct) {
		struct direct_w d = {.a = a, .sock = wsp[1], .exec_wr = execp[1]};
		if (trap_oci_compile(a->cfg->seccomp, &d.oci, &err) < 0)
			fail_prepare(&s, &err);
		w = spawn_direct(&d);
		trap_oci_free(d.oci);
	} else if ((w = fork()) == 0) {
		close(wsp[0]);
		close(startp[1]);
		close(execp[0]);
		workload_main(a, wsp[1], startp[0], execp[1], NULL);
	}
	if (w < 0) {
		qerr_sys(&err, errno, "spawn workload");
		fail_prepare(&s, &err);
	}
	close(wsp[1]);
	if (startp[0] >= 0)
		close(startp[0]);
	close(execp[1]);
	s.wpid = w;
	s.wsock = wsp[0];
	s.start_wr = startp[1];
	s.exec_rd = execp[0];
	s.trap.counters = a->counters;
	s.trap.memory_limit = a->cfg->has_resources && a->cfg->resources.has_memory_limit
				  ? a->cfg->resources.memory_limit
				  : 0;
	s.userns = a->cfg->clone_flags & CLONE_NEWUSER;

	if (ep_add(&s, EV_SIGNAL, s.sigfd) < 0 || ep_add(&s, EV_CTL, a->ctl_fd) < 0 ||
	    ep_add(&s, EV_WSOCK, s.wsock) < 0) {
		qerr_sys(&err, errno, "epoll_ctl");
		fail_prepare(&s, &err);
	}
	if (iod_on)
		iod_client_set_watch(&s.iodc, iod_watch, &s);
	if (iod_on == 2 && ep_add(&s, EV_OFFLOAD, sys_offload_fd()) < 0) {
		qerr_sys(&err, errno, "epoll_ctl");
		fail_prepare(&s, &err);
	}
	if (s.netc)
		net_client_set_watch(s.netc, net_watch, &s);
	/* Spawned directly, W has exec'd or exited by now and its messages
	 * are all queued: take them before the loop, where its SIGCHLD could
	 * come first and find it still "being prepared". */
	while (direct && s.state == ST_PREPARING && s.wsock >= 0)
		wsock_readable(&s, devnull);

	bool busy = false;		/* events since the stack was last shed */
	uint64_t spin_until = 0;	/* poll without sleeping until then (ns) */
	uint64_t spin_ns = SPIN_MAX_NS; /* how long, after the next call */
	uint64_t served_at = 0;		/* when the last trapped call was served */
	for (;;) {
		struct epoll_event evs[16];
		int ne;
		/* After a trapped call the next one usually follows soon (an
		 * interpreter's start-up is hundreds of them): poll for it for
		 * a moment rather than sleep, since a wake-up of an idle CPU
		 * costs more than the call here (docs/iod.md).  Yielding
		 * between polls lets the workload run on this CPU, where its
		 * answer put it.  The window adapts: halved each time it ends
		 * with nothing, doubled back when a call comes in it, so that
		 * a sandbox whose calls are sparse costs little polling. */
		for (bool polled = false;; polled = true) {
			uint64_t now;
			ne = epoll_wait(s.epfd, evs, 16, 0);
			if (ne != 0) {
				if (polled && spin_ns < SPIN_MAX_NS)
					spin_ns *= 2;
				break;
			}
			if ((now = mono_ns()) >= spin_until) {
				/* A call is in iod: its answer is on the way,
				 * and sleeping now would put a wake-up in its
				 * path.  Wait for it up to the longest window,
				 * without taking the wait for quiet. */
				if (spin_until && s.iodc.attached && s.iodc.npend > 0 &&
				    now < served_at + SPIN_MAX_NS) {
					sched_yield();
					continue;
				}
				if (polled && spin_ns > SPIN_MIN_NS)
					spin_ns /= 2;
				spin_until = 0;
				break;
			}
			sched_yield();
		}
		/* a running sandbox that has been quiet for a while gives back
		 * the stack its last requests touched */
		if (ne == 0) {
			trap_sched_restore(); /* woken from sleep, preempt again */
			ne = epoll_wait(s.epfd, evs, 16,
					busy && s.state == ST_RUNNING ? IDLE_SHED_MS : -1);
		}
		if (ne == 0) {
			shed_config(a);
			shed_stack();
			busy = false;
			continue;
		}
		if (ne < 0) {
			if (errno == EINTR)
				continue;
			fatal("epoll_wait");
		}
		busy = true;
		for (int i = 0; i < ne; i++) {
			enum ev_kind k = (enum ev_kind)(evs[i].data.u64 >> 32);
			int fd = (int)(uint32_t)evs[i].data.u64;
			switch (k) {
			case EV_SIGNAL:
				signal_readable(&s);
				break;
			case EV_CTL:
				accept_conn(&s, fd);
				break;
			case EV_CONN:
				if (fd != s.pending_start)
					conn_readable(&s, fd);
				break;
			case EV_WSOCK:
				if (fd == s.wsock)
					wsock_readable(&s, devnull);
				break;
			case EV_EXECPIPE:
				/* only read once W was told to start; before,
				 * a hangup means W died (SIGCHLD handles it) */
				if (fd == s.exec_rd && s.state == ST_STARTING)
					execpipe_readable(&s);
				break;
			case EV_IOD:
				iod_client_dispatch(&s.iodc, false);
				break;
			case EV_OFFLOAD:
				sys_offload_sweep();
				break;
			case EV_NET:
				if (s.netc)
					net_client_event(s.netc, fd, evs[i].events);
				break;
			case EV_LISTENER: {
				struct qerr terr = {0};
				int r = trap_serve(&s.trap, fd, &terr);
				/* With iod or the socket service most calls
				 * trap, and come in runs. */
				if (s.trap.iod || s.trap.net) {
					served_at = mono_ns();
					spin_until = served_at + spin_ns;
				}
				if (r == -EPIPE)
					drop_listener(&s, fd);
				else if (r < 0)
					qlog_warn("trap: %s", terr.msg);
				break;
			}
			}
		}
	}
}
